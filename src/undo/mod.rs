//! Reversibility (issue 16): for every DDL statement ddlgate lets through, the statement that
//! undoes it, computed from the statement as understood and from the catalog read just before
//! it ran — and `ddlgate undo`, which applies those inverses newest first.
//!
//! - [`capture`]: the `Before` snapshot: one read-only query of ddlgate's own at the statement
//!   boundary where the DDL lane reads its catalog facts (`session::ddl::facts`), answering only
//!   what an inverse needs (the target's OID and schema, a dropped index's or constraint's saved
//!   definition, a column's previous default and nullability, the OIDs of a table's indexes or
//!   constraints before an unnamed one is created) — and `created_query`, read right after the
//!   statement ran, naming what an unnamed `CREATE INDEX` / `ADD CONSTRAINT` created (new OIDs);
//! - [`inverse`](mod@inverse): pure: statement + snapshot → [`Inverse`] (SQL, or irreversible with a reason);
//! - [`journal`]: the SQL of `ddlgate.journal` (created on first use) and of the fingerprint
//!   that tells `ddlgate undo` whether an object changed since its entry was recorded;
//! - [`cli`]: `ddlgate undo`, a client of a running ddlgate, so every inverse passes the same
//!   rules, rewrites and lock guard as any other DDL.

pub mod capture;
pub mod cli;
pub mod inverse;
pub mod journal;

pub use capture::Before;
pub use inverse::{Inverse, inverse};
