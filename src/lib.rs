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
//! | [`server`] | accept loop and background tasks (admin, monitor, metrics upkeep) |
//! | [`eventloop`] | the session event loops: one thread and poller per core, sessions spread over them |
//! | [`state`] | what sessions, the admin endpoint and the monitor share ([`state::Shared`]); a module of its own so none of them imports another in a cycle |
//! | [`admission`] | unauthenticated and client slots |
//! | [`shutdown`] | SIGTERM drain / SIGINT terminate phases |
//! | [`session`] | one connection: startup negotiation, admission, upstream connect, the relay loop (bytes, and protocol state through a tracker), the DDL lane (catalog facts, guard, recipe steps, ddlgate's own queries on one side channel) — the only code that writes to both sockets |
//! | [`tls`] | client-facing TLS termination and upstream TLS: certificates loaded at start, the plain-or-TLS stream, what SCRAM channel binding survives |
//! | [`protocol`] | frame headers (bounded), the startup packets, the pre-authentication gate ([`protocol::preauth`]), the few typed messages ([`protocol::frontend`]: Query, Parse, Bind, Close; [`protocol::backend`]: DataRow, ReadyForQuery, ParameterStatus), [`protocol::responses`] with every message ddlgate itself says |
//! | [`sql`] | PostgreSQL-accurate lexer and splitter, keyword prefilter, statement model, sqlparser front end, token classifier, quoting of every SQL ddlgate writes ([`sql::quote`]) |
//! | [`analysis`] | the hook every statement passes through, as two pure calls — [`analysis::prepare`] (split, prefilter, understand once) and [`analysis::decide`] (the plan) — and [`analysis::record`], where it counts |
//! | [`rules`], [`policy`] | the rule catalog, and profiles/modes/overrides turning findings into decisions |
//! | [`catalog`] | catalog facts for verdicts (one read-only query per DDL statement), and the planner's row estimate of an UPDATE/DELETE/MERGE for the backfill guard ([`catalog::estimate`]) |
//! | [`created`] | "created in this transaction" from server facts (relation OIDs), never from names |
//! | [`guard`], [`recipe`] | the lock guard's plan and SQL; multi-step rewrites as data |
//! | [`rewrite`], [`act`] | single-statement rewrites; block errors and notices |
//! | [`check`] | `ddlgate check`: the engine over migration files |
//! | [`backfill`] | `ddlgate backfill`: an UPDATE or DELETE in keyset batches, each its own short transaction, throttled and resumable |
//! | [`trace`] | `ddlgate trace`: a migration run on a scratch database in one rolled-back transaction, with each statement's locks, rewrites, time and decision |
//! | [`undo`] | reversibility: each DDL statement's inverse from a catalog snapshot read before it ran, the undo journal, `ddlgate undo` |
//! | [`tools`] | which migration tool drives a session, so refusals name its way out |
//! | [`error`] | one error enum per layer, classified by side |
//! | [`metrics`] | every Prometheus metric, defined once (name, unit, HELP text, label sets), and the handles it is recorded through where it happens |
//!
//! ## Statement flow
//!
//! 1. The client's bytes are cut into frames by their 5-byte headers (`protocol::framing`);
//!    lengths are checked against `limits` before anything is buffered. Until the first
//!    ReadyForQuery only password messages pass, within PostgreSQL's own caps
//!    ([`protocol::preauth`]): nothing an unauthenticated client sends is analysed.
//! 2. `Query` and `Parse` frames are taken whole. Their SQL is split once by the lexer
//!    (`sql::lexer`), exactly where PostgreSQL would split it, and each statement's first
//!    keyword classifies it once (`sql::prefilter`): DML, transaction control, session
//!    settings, or DDL candidate (plus the DML that can run SQL out of sight:
//!    `sql::side_effects`). Only DDL candidates are ever parsed; ordinary traffic is forwarded
//!    as the original bytes, in zero-copy batches. A session whose profile turns on the
//!    backfill guard (`[policy.backfill]`) also marks its UPDATE, DELETE and MERGE statements:
//!    they take the DDL lane's facts step for their planner estimate (rule `large-backfill`).
//! 3. A message with a DDL candidate first gets its facts: when the server is idle at a
//!    statement boundary, the DDL lane (`session::ddl::facts`) runs one read-only query of
//!    ddlgate's own for the catalog facts of each statement ([`catalog`]: sizes, partitions,
//!    types, dependents) and for what this transaction created ([`created`], on OIDs); and,
//!    for the backfill guard, `EXPLAIN (FORMAT JSON)` of each UPDATE/DELETE/MERGE (under a
//!    savepoint that is always rolled back inside a transaction block) — one with parameters
//!    planned with the values of the client's Bind, its unit held until then
//!    (`session::ddl::bound`; a prepared one at each Bind that executes it).
//! 4. [`analysis`] decides each statement: understand it (sqlparser, else the token
//!    classifier), run every rule in its context (transaction status, the protocol unit, the
//!    server version, the facts), let the profile's [`policy`] turn findings into a decision,
//!    and turn a rewrite into the new text or the safe steps ([`recipe`]) — or, when neither can
//!    be built, a block. The message was read once by [`analysis::prepare`] (one lexing pass,
//!    one parse per DDL statement, shared by the catalog request and the decision);
//!    [`analysis::decide`] is pure, and `ddlgate check` makes the same two calls. A block
//!    becomes a `DO` block raising the error in place ([`act`], [`sql::quote`]), so the server
//!    fails it and leaves the protocol state a real error leaves; warnings become NOTICEs;
//!    refusals name the session's migration tool's way out ([`tools`]).
//! 5. What runs is acted on: forwarded as is, forwarded with the statement replaced, or run
//!    under the lock guard ([`guard`] plans it, `session::ddl` carries it out): one DDL per table
//!    at a time (advisory locks; for one table, tried in the same query that sets the guard's
//!    timeouts, [`guard::prelude_sql`]), a short `lock_timeout`, retries by the pure policy
//!    [`guard::after_lock_timeout`] (after a SAVEPOINT inside a transaction), blockers named
//!    to the client; recipe steps run one by one the same way. Every wait watches the client
//!    and shutdown. What a statement that ran changed can be undone: its inverse ([`undo`]),
//!    computed from a catalog snapshot read with its facts, goes to the audit log and — with
//!    `[journal]` — into the database's `ddlgate.journal`, written in the lane before the
//!    client hears back (`session::ddl::journal`).
//! 6. A prepared DDL statement is decided again at Bind in the context it then runs in
//!    (`session::relay::prepared`). A DDL statement alone in an extended-protocol unit
//!    (`[Parse] / Bind / [Describe] / Execute / Sync`, no parameters, outside a transaction
//!    block: `session::relay::lone`) is taken whole into the DDL lane and run like a simple
//!    Query — retried, or run as steps — with the replies the server gives that unit.
//! 7. Upstream `ReadyForQuery`, `ParameterStatus`, `BackendKeyData` and `ErrorResponse` are
//!    read on the way back to keep the protocol state current (`session::tracker`: replies
//!    owed, units, transaction status, server parameters); ddlgate's own errors lose the
//!    fields that describe its `RAISE` rather than the client's statement.

pub mod act;
pub mod admin;
pub mod admission;
pub mod analysis;
pub mod audit;
pub mod backfill;
pub mod catalog;
pub mod check;
pub mod client;
pub mod config;
pub mod created;
pub mod error;
pub mod eventloop;
#[doc(hidden)]
pub mod fuzzing;
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
pub mod state;
pub mod timer;
pub mod tls;
pub mod tools;
pub mod trace;
pub mod undo;
