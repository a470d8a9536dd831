//! # ddlgate
//!
//! A PostgreSQL wire-protocol proxy that makes schema changes safe. It sits between any
//! PostgreSQL client and PostgreSQL, relays the protocol untouched, and looks at every statement
//! on the way so that DDL can be allowed, rewritten into its safe form, blocked with an
//! explanation, or queued — while everything that is not DDL passes as if ddlgate were not there.
//!
//! ## Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | serde structs behind `config/ddlgate.toml`, defaults, env/CLI layering, validation |
//! | [`server`] | accept loop, admission ([`server::admission`]: unauthenticated and client slots), state shared by sessions ([`server::Shared`]) |
//! | [`shutdown`] | SIGTERM drain / SIGINT terminate phases |
//! | [`session`] | one connection: startup negotiation, admission, upstream connect, the relay loop — the only code that writes to both sockets |
//! | [`tls`] | client-facing TLS termination and upstream TLS: certificates loaded at start, the plain-or-TLS stream, what SCRAM channel binding survives |
//! | [`protocol`] | frame headers (bounded), the startup packets, the pre-authentication gate ([`protocol::preauth`]), the few decoded messages, [`protocol::responses`] with every message ddlgate itself says |
//! | [`sql`] | PostgreSQL-accurate lexer and splitter, keyword prefilter, statement model, sqlparser front end, token classifier |
//! | [`analysis`] | the hook every statement passes through: split, prefilter, understand, decide; its counters |
//! | [`rules`], [`policy`] | the rule catalog, and profiles/modes/overrides turning findings into decisions |
//! | [`catalog`] | catalog facts for verdicts (one read-only query per DDL statement) |
//! | [`created`] | "created in this transaction" from server facts (relation OIDs), never from names |
//! | [`guard`], [`recipe`] | the lock guard's plan and SQL; multi-step rewrites as data |
//! | [`rewrite`], [`act`] | single-statement rewrites; block errors and notices |
//! | [`check`] | `ddlgate check`: the engine over migration files |
//! | [`error`] | one error enum per layer, classified by side |
//!
//! ## Statement flow
//!
//! 1. The client's bytes are cut into frames by their 5-byte headers (`protocol::framing`);
//!    lengths are checked against `limits` before anything is buffered.
//! 2. `Query` and `Parse` frames are taken whole; their SQL is split into statements by the
//!    lexer (`sql::lexer`), exactly where PostgreSQL would split it.
//! 3. Each statement's first keyword classifies it (`sql::prefilter`): DML, transaction
//!    control, session settings, or DDL candidate. Only DDL candidates will ever be parsed.
//! 4. The analysis hook (`analysis`) counts and logs, with the context a decision needs: the
//!    transaction status from the last ReadyForQuery and the number of statements in the
//!    protocol unit (a multi-statement Query, or Executes before a Sync).
//! 5. Frames are forwarded as the original bytes, in zero-copy batches; everything not
//!    inspected (DataRow, CopyData, Bind, auth exchanges) streams through undecoded.
//! 6. Upstream `ReadyForQuery`, `ParameterStatus`, `BackendKeyData` and `ErrorResponse` are
//!    read on the way back to keep the session state current.

pub mod act;
pub mod admin;
pub mod analysis;
pub mod audit;
pub mod catalog;
pub mod check;
pub mod config;
pub mod created;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod monitor;
pub mod policy;
pub mod protocol;
pub mod recipe;
pub mod rewrite;
pub mod rules;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sql;
pub mod tls;
pub mod tools;
