//! `ddlgate trace`: a migration run for real on a scratch database, statement by statement
//! inside one transaction that is rolled back at the end, recording after each statement what
//! no linter can know: the locks it took (`pg_locks` of the trace's own backend, names resolved
//! by OID on the server), the tables and indexes it rewrote (a relfilenode that changed), the
//! time it took, and the decision the proxy would take on it live — `analysis::prepare` and
//! `analysis::decide`, as `ddlgate check` calls them, but with the catalog facts read from the
//! scratch database right before the statement (the proxy's own facts query and
//! created-in-transaction read) and the server's version.
//!
//! The flow, per file: the file is read and cut into units as `ddlgate check` does
//! ([`check::tool::plan`]: the migration tool's transaction handling decides the context each
//! statement is *decided* in), then each statement, in order:
//!
//! 1. Transaction control of the file (`BEGIN`, `COMMIT`, `PREPARE TRANSACTION`, …) is not
//!    run — the trace owns the one transaction, and nothing may end it — only followed for the
//!    decision context. SAVEPOINT / RELEASE / ROLLBACK TO run as written.
//! 2. A DDL statement's facts are read inside a savepoint that is rolled back, so the locks the
//!    facts query takes (`pg_total_relation_size` opens the table) are not the statement's.
//! 3. A statement PostgreSQL refuses in a transaction block (`CREATE INDEX CONCURRENTLY`,
//!    `VACUUM`, …: [`not_in_transaction`]) is not run: reported as not traced with the lock it
//!    is documented to take. One the list misses is run in a savepoint and, when the server
//!    answers SQLSTATE 25001, reported the same way.
//! 4. Anything else runs as one simple Query in a savepoint (released after, except after DDL:
//!    see `Trace::statement`), timed; then the transaction's start time is checked (the
//!    statement did not end the trace's transaction), and `pg_locks` and the relfilenode of
//!    every user relation are read again and compared with the read after the previous
//!    statement: new locks, rewritten, created and dropped relations.
//! 5. A statement that fails stops the trace (what follows depends on it).
//!
//! At the end the transaction is rolled back: nothing persists — except what PostgreSQL never
//! rolls back (sequence values, see README "Known limits").
//!
//! The database must carry the scratch mark, a comment on the database whose first word is
//! `ddlgate:scratch` ([`SCRATCH_MARK`]), unless `--allow-non-scratch` says otherwise. A
//! comment rather than a setting: `ALTER DATABASE … SET` values can also come from the
//! connection string (`options=-c …`) or a role, so a setting would not prove which database
//! it is; the comment is stored with that database's OID (a database cloned from it with
//! `CREATE DATABASE … TEMPLATE` does not inherit it), needs its owner to set, and shows in
//! `\l+`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::analysis::{self, Source};
use crate::check::tool::{self, Tool};
use crate::check::{self, RunMode};
use crate::client::describe;
use crate::policy::Profile;
use crate::protocol::TxStatus;
use crate::rules::Action;
use crate::sql::lexer::{LexOptions, StatementSpan};
use crate::sql::prefilter::StatementClass;

mod classify;
mod render;
pub mod snapshot;

pub use classify::not_in_transaction;
use classify::{is_savepoint_control, transaction_end_or_begin};

pub use render::{Format, render};
pub use snapshot::{Lock, Relation};

/// The first word of the comment that marks a database as scratch.
pub const SCRATCH_MARK: &str = "ddlgate:scratch";

/// The savepoint every traced statement runs in (released after it, unless it is DDL).
const STATEMENT_SAVEPOINT: &str = "ddlgate_trace_statement";
/// The savepoint ddlgate's facts queries run in (rolled back after them).
const FACTS_SAVEPOINT: &str = "ddlgate_trace_facts";

/// How to run the trace.
#[derive(Debug, Clone)]
pub struct Options {
    /// libpq connection URL or key=value string of the scratch database.
    pub database: String,
    /// Run on a database without the scratch mark.
    pub allow_non_scratch: bool,
    /// The migration tool whose transaction handling the decisions assume (as `ddlgate check`).
    pub tool: Tool,
    pub assume_in_transaction: bool,
    /// `lock_timeout` of the trace's session: a statement waiting this long for another
    /// session's lock fails instead of hanging the trace.
    pub lock_timeout: Duration,
    /// For connecting and logging in, unless the connection string sets `connect_timeout`.
    pub connect_timeout: Duration,
    /// CA certificates (PEM) that must have signed the server's certificate (libpq's
    /// `verify-full`); without it, TLS as the connection string's `sslmode` says, unverified.
    pub ca_file: Option<PathBuf>,
}

/// One migration file.
#[derive(Debug, Clone)]
pub struct Input {
    /// As reported (`<stdin>` for standard input).
    pub name: String,
    /// The file, for its migration tool's layout and side files (`None` for standard input).
    pub path: Option<PathBuf>,
    pub source: Vec<u8>,
}

/// Why there is no trace: the command line, the connection, the mark, or ddlgate's own
/// queries. All exit with status 2.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(
        "database {database} is not marked as a scratch database: the trace runs the migration \
         on it (and rolls it back). Mark it with: COMMENT ON DATABASE {quoted} IS '{SCRATCH_MARK}'; \
         or pass --allow-non-scratch"
    )]
    NotScratch { database: String, quoted: String },
    #[error("ddlgate's own query on the scratch database failed: {0}")]
    Internal(String),
}

/// The whole trace.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The database traced on (as the server names it).
    pub database: String,
    /// `server_version` of the scratch database.
    pub server_version: String,
    /// The database carries the scratch mark.
    pub scratch: bool,
    /// Every statement of the files, in order, up to the first that failed.
    pub statements: Vec<Traced>,
    /// Every lock the transaction held after the last statement: what the migration holds
    /// at its end when it runs in one transaction.
    pub locks_at_end: Vec<Lock>,
    /// A statement failed (the trace stopped there).
    pub failed: bool,
    /// ddlgate would block at least one statement.
    pub blocked: bool,
    /// Always true: the transaction was rolled back.
    pub rolled_back: bool,
}

impl Report {
    /// Exit status: 1 when a statement failed or would be blocked, else 0.
    pub fn fails(&self) -> bool {
        self.failed || self.blocked
    }
}

/// What happened to a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran; its locks and rewrites are recorded.
    Traced,
    /// Not run: PostgreSQL refuses it in a transaction block.
    NotTraced,
    /// Transaction control of the file, not run: the trace holds one transaction.
    Skipped,
    /// The server rejected it; the trace stopped.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Traced => "traced",
            Status::NotTraced => "not traced",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// One statement of the migration.
#[derive(Debug, Clone, Serialize)]
pub struct Traced {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The statement, whitespace folded, cut at 120 characters.
    pub statement: String,
    pub status: Status,
    /// Why it was not traced or skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the statement, as the client saw it.
    pub duration_ms: Option<f64>,
    /// Locks the statement took (held before it: not repeated).
    pub new_locks: Vec<Lock>,
    /// Relations whose storage it replaced (a new relfilenode: rewritten or rebuilt).
    pub rewritten: Vec<Relation>,
    /// Relations it created.
    pub created: Vec<Relation>,
    /// Relations it dropped.
    pub dropped: Vec<Relation>,
    /// For a statement not traced: the lock it is documented to take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documented_lock: Option<String>,
    /// What ddlgate would do with it live.
    pub decision: DecisionReport,
    /// The server's error, for a failed statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ServerError>,
}

/// ddlgate's decision on a statement, as the proxy would take it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecisionReport {
    /// The statement is DDL (or may be): the rules looked at it. Other statements pass as is.
    pub ddl: bool,
    /// `allow` (forwarded as is), `warn`, `rewrite` or `block`.
    pub action: String,
    /// The rules that flagged it.
    pub findings: Vec<FindingReport>,
    /// The statement the proxy would run instead, for a single-statement rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten_sql: Option<String>,
    /// The safe steps the proxy would run instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// The proxy would run it under its lock guard (short lock_timeout, retries).
    pub lock_guard: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingReport {
    pub rule: String,
    pub action: String,
    pub message: String,
    pub hint: String,
}

/// An error the server returned for a statement.
#[derive(Debug, Clone, Serialize)]
pub struct ServerError {
    pub sqlstate: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Runs the trace of `inputs` on the scratch database of `opts`, deciding with `profile` and
/// the catalog settings of `config`.
pub async fn run(
    inputs: &[Input],
    opts: &Options,
    profile: &Profile,
    config: &crate::config::Config,
) -> Result<Report, TraceError> {
    let client = connect(opts).await?;
    let (database, scratch) = snapshot::scratch_mark(&client).await?;
    if !scratch && !opts.allow_non_scratch {
        return Err(TraceError::NotScratch {
            quoted: crate::sql::quote::ident_if_needed(&database),
            database,
        });
    }
    let server_version: String = client
        .query_one("SELECT pg_catalog.current_setting('server_version')", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(snapshot::internal)?;
    let queries = snapshot::Queries::prepare(&client).await?;
    let mut trace = Trace {
        client: &client,
        queries,
        profile,
        config,
        version: analysis::parse_server_version(&server_version),
        tracker: Default::default(),
        locks: Vec::new(),
        storage: Default::default(),
        out: Vec::new(),
        failed: false,
        started: String::new(),
    };
    // Session-level, before the transaction: a migration's own SET lock_timeout still wins.
    let timeout = format!(
        "SET lock_timeout = {}",
        crate::sql::quote::literal(&format!("{}ms", opts.lock_timeout.as_millis()))
    );
    client
        .batch_execute(&timeout)
        .await
        .map_err(snapshot::internal)?;
    client
        .batch_execute("BEGIN")
        .await
        .map_err(snapshot::internal)?;
    trace.started = snapshot::transaction_start(&client, &trace.queries).await?;
    let traced = trace.files(inputs, opts).await;
    // Whatever happened, nothing persists; a failure to roll back is a failure of the trace
    // (the connection closing rolls back anyway).
    let rolled = client.batch_execute("ROLLBACK").await;
    traced?;
    rolled.map_err(snapshot::internal)?;
    let blocked = trace.out.iter().any(|t| t.decision.action == "block");
    Ok(Report {
        database,
        server_version,
        scratch,
        locks_at_end: trace.locks,
        failed: trace.failed,
        blocked,
        statements: trace.out,
        rolled_back: true,
    })
}

/// The trace in progress.
struct Trace<'a> {
    client: &'a Client,
    /// The reads after each statement, prepared once.
    queries: snapshot::Queries,
    profile: &'a Profile,
    config: &'a crate::config::Config,
    /// `server_version_num` style, for the decisions.
    version: Option<u32>,
    /// Relations the server confirmed the (simulated) transaction created, by OID.
    tracker: crate::created::Tracker,
    /// Locks held after the previous statement.
    locks: Vec<Lock>,
    /// Storage after the previous statement.
    storage: snapshot::Storage,
    out: Vec<Traced>,
    /// A statement failed: stop.
    failed: bool,
    /// `transaction_timestamp()` of the trace's transaction.
    started: String,
}

/// One statement's place, for the report.
struct Place<'s> {
    file: &'s str,
    line: usize,
    column: usize,
    text: &'s [u8],
}

impl Trace<'_> {
    async fn files(&mut self, inputs: &[Input], opts: &Options) -> Result<(), TraceError> {
        self.storage = snapshot::storage(self.client, &self.queries).await?;
        self.locks = snapshot::locks(self.client, &self.queries, &self.storage).await?;
        for input in inputs {
            let pg_major = self.version.map(|v| v / 10_000);
            let (_, units) = tool::plan(
                opts.tool,
                input.path.as_deref(),
                &input.source,
                opts.assume_in_transaction,
                pg_major,
            )
            .map_err(TraceError::Usage)?;
            let mut positions = check::Positions::default();
            for unit in &units {
                let Some(text) = input.source.get(unit.range.clone()) else {
                    continue;
                };
                self.unit(input, text, unit.range.start, unit.mode, &mut positions)
                    .await?;
                self.tracker.clear();
                if self.failed {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn context(&self, tx: TxStatus) -> analysis::Context {
        analysis::Context {
            tx,
            lex: LexOptions::default(),
            server_version: self.version,
            pipelined: false,
            tool: None,
        }
    }

    /// One unit of a file: its statements decided as its tool sends them (one message per
    /// statement, or the whole unit as one Query) and each run and traced.
    async fn unit(
        &mut self,
        input: &Input,
        source: &[u8],
        base: usize,
        mode: RunMode,
        positions: &mut check::Positions,
    ) -> Result<(), TraceError> {
        let lex = LexOptions::default();
        let prepared = analysis::prepare(source, lex, usize::MAX);
        let base_tx = if mode == RunMode::OneTransaction {
            TxStatus::InTransaction
        } else {
            TxStatus::Idle
        };
        // A unit sent as one Query is decided once, as the proxy decides that message.
        let whole = if mode == RunMode::OneQuery && prepared.ddl {
            let facts = self.facts(&prepared).await?;
            Some(self.decide(&prepared, source, facts, base_tx))
        } else {
            None
        };
        let mut tx = base_tx;
        let mut ddl_in_tx = 0usize;
        for (i, (span, &class)) in prepared.spans.iter().zip(&prepared.classes).enumerate() {
            let Some(first) = span.first else { continue };
            let (line, column) = positions.at(&input.source, base + first.start);
            let place = Place {
                file: &input.name,
                line,
                column,
                text: &source[first.start..span.end],
            };
            if let Some(word) = transaction_end_or_begin(source, span) {
                ddl_in_tx = 0;
                match word {
                    "BEGIN" => tx = TxStatus::InTransaction,
                    _ => {
                        tx = base_tx;
                        if tx == TxStatus::Idle {
                            self.tracker.clear();
                        }
                    }
                }
                self.out.push(skipped(
                    &place,
                    "transaction control of the file: the trace runs every statement in one \
                     transaction, rolled back at the end",
                ));
                continue;
            }
            let decision = match (&whole, class) {
                (Some(decided), StatementClass::DdlCandidate) => {
                    decision_report(decided, source, span.start, false)
                }
                (None, StatementClass::DdlCandidate) => {
                    ddl_in_tx += 1;
                    let end = if tx == TxStatus::Idle || ddl_in_tx > crate::rules::LATER_STATEMENTS
                    {
                        span.end
                    } else {
                        check::transaction_end(source, &prepared, i)
                            .min(span.end.saturating_add(crate::rules::LATER_WINDOW))
                    };
                    let text = &source[..end];
                    let one = prepared.single(i);
                    let facts = self.facts(&one).await?;
                    let decided = self.decide(&one, text, facts, tx);
                    decision_report(&decided, text, span.start, true)
                }
                _ => DecisionReport {
                    action: Action::Allow.as_str().to_owned(),
                    ..DecisionReport::default()
                },
            };
            let keep = class == StatementClass::DdlCandidate;
            self.statement(place, span, source, decision, keep).await?;
            if self.failed {
                return Ok(());
            }
            if tx == TxStatus::Idle && mode == RunMode::Statements {
                // Each statement is its own transaction live: nothing stays "new".
                self.tracker.clear();
            }
        }
        Ok(())
    }

    fn decide(
        &mut self,
        prepared: &analysis::Prepared,
        text: &[u8],
        facts: analysis::Facts,
        tx: TxStatus,
    ) -> analysis::Decided {
        let ctx = self.context(tx);
        analysis::decide(
            prepared,
            text,
            facts,
            &ctx,
            self.profile,
            Source::Query,
            analysis::Created::Session {
                tracker: &mut self.tracker,
                max_created: self.config.catalog.max_created_relations,
            },
        )
    }

    /// The facts the proxy reads before deciding `prepared` (catalog facts, the
    /// created-in-transaction read), read in a savepoint that is rolled back: the locks they
    /// take are not the statement's.
    async fn facts(
        &mut self,
        prepared: &analysis::Prepared,
    ) -> Result<analysis::Facts, TraceError> {
        let cfg = &self.config.catalog;
        let mut facts = analysis::Facts::default();
        if !cfg.enabled {
            return Ok(facts);
        }
        let requests = prepared.catalog_requests(Source::Query);
        let identity = crate::created::request(
            &self.tracker,
            prepared.ddl_candidates().map(|c| &c.ddl),
            cfg.max_resolved_names,
        );
        if requests.is_empty() && identity.is_none() {
            return Ok(facts);
        }
        self.exec(&format!("SAVEPOINT {FACTS_SAVEPOINT}")).await?;
        let thresholds = crate::catalog::Thresholds {
            small_table_rows: cfg.small_table_rows,
            small_table_bytes: cfg.small_table_bytes,
        };
        for (at, query) in requests {
            // An error (as in the proxy) means deciding without these facts.
            if let Ok(Some(json)) = self.value(&query).await {
                match crate::catalog::parse_facts(&json) {
                    Ok(mut f) => {
                        f.set_thresholds(thresholds);
                        facts.catalog.push((at, f));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable catalog facts; deciding without them")
                    }
                }
            }
        }
        if let Some(request) = identity
            && let Ok(Some(json)) = self.value(&request.sql).await
        {
            facts.identity = crate::created::Identity::parse(&request, &json);
        }
        self.exec(&format!(
            "ROLLBACK TO SAVEPOINT {FACTS_SAVEPOINT}; RELEASE SAVEPOINT {FACTS_SAVEPOINT}"
        ))
        .await?;
        Ok(facts)
    }

    /// The one text value of a query of ddlgate's own; after an error, the facts savepoint is
    /// set again (the error aborted it).
    async fn value(&self, sql: &str) -> Result<Option<String>, TraceError> {
        match self.client.simple_query(sql).await {
            Ok(messages) => Ok(messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })),
            Err(e) => {
                tracing::warn!(error = %describe(&e), "catalog facts query failed; deciding without them");
                self.exec(&format!(
                    "ROLLBACK TO SAVEPOINT {FACTS_SAVEPOINT}; RELEASE SAVEPOINT {FACTS_SAVEPOINT}; \
                     SAVEPOINT {FACTS_SAVEPOINT}"
                ))
                .await?;
                Ok(None)
            }
        }
    }

    async fn exec(&self, sql: &str) -> Result<(), TraceError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(snapshot::internal)
    }

    /// Runs one statement (or reports why not) and records what it did.
    async fn statement(
        &mut self,
        place: Place<'_>,
        span: &StatementSpan,
        source: &[u8],
        decision: DecisionReport,
        keep_savepoint: bool,
    ) -> Result<(), TraceError> {
        let mut traced = traced_at(&place, Status::Traced, decision);
        if let Some(lock) = not_in_transaction(source, span, self.version) {
            traced.status = Status::NotTraced;
            traced.reason = Some(NOT_IN_TRANSACTION.to_owned());
            traced.documented_lock = Some(lock.to_owned());
            self.out.push(traced);
            return Ok(());
        }
        // tokio-postgres speaks UTF-8 to the server: other bytes cannot be sent as written.
        let Ok(sql) = std::str::from_utf8(&source[span.start..span.end]) else {
            return Err(TraceError::Usage(format!(
                "{}:{}:{}: the statement is not valid UTF-8",
                traced.file, traced.line, traced.column
            )));
        };
        // SAVEPOINT / RELEASE / ROLLBACK TO of the file run as they are: a savepoint of ours
        // around them would change what they name.
        let own_savepoint = !is_savepoint_control(source, span);
        if own_savepoint {
            self.exec(&format!("SAVEPOINT {STATEMENT_SAVEPOINT}"))
                .await?;
        }
        let started = Instant::now();
        let result = self.client.batch_execute(sql).await;
        let took = started.elapsed();
        match result {
            Ok(()) => {
                // Transaction control never runs (it is skipped by its first word), but should a
                // statement end the transaction anyway, the trace stops at once and says so.
                if snapshot::transaction_start(self.client, &self.queries).await? != self.started {
                    return Err(TraceError::Internal(format!(
                        "{}:{}:{}: the statement ended the trace's transaction; what the statements \
                     before it did may have been committed",
                        traced.file, traced.line, traced.column
                    )));
                }
                // A DDL statement's savepoint stays open: the catalog rows it wrote keep an
                // xid this backend holds a lock on, which is how the created-in-transaction
                // read (`created`) recognises the transaction's own relations — a released
                // savepoint's xid is no longer listed in pg_locks. Other statements' are
                // released (each open one holds a lock-table slot until the end).
                if own_savepoint && !keep_savepoint {
                    self.exec(&format!("RELEASE SAVEPOINT {STATEMENT_SAVEPOINT}"))
                        .await?;
                }
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_owned());
                if own_savepoint && code.as_deref() == Some("25001") {
                    // Refused in a transaction block: a statement the list does not know.
                    self.exec(&format!(
                        "ROLLBACK TO SAVEPOINT {STATEMENT_SAVEPOINT}; \
                         RELEASE SAVEPOINT {STATEMENT_SAVEPOINT}"
                    ))
                    .await?;
                    traced.status = Status::NotTraced;
                    traced.reason = Some(NOT_IN_TRANSACTION.to_owned());
                    traced.documented_lock = Some(documented_from_rules(&traced.decision));
                    self.out.push(traced);
                    return Ok(());
                }
                let Some(db) = e.as_db_error() else {
                    return Err(TraceError::Internal(describe(&e)));
                };
                traced.status = Status::Failed;
                traced.duration_ms = Some(millis(took));
                traced.error = Some(ServerError {
                    sqlstate: db.code().code().to_owned(),
                    message: db.message().to_owned(),
                    detail: db.detail().map(str::to_owned),
                    hint: db.hint().map(str::to_owned),
                });
                self.failed = true;
                self.out.push(traced);
                return Ok(());
            }
        }
        traced.duration_ms = Some(millis(took));
        let locks = snapshot::locks(self.client, &self.queries, &self.storage).await?;
        let storage = snapshot::storage(self.client, &self.queries).await?;
        traced.new_locks = locks
            .iter()
            .filter(|l| !self.locks.iter().any(|old| old.key == l.key))
            .cloned()
            .collect();
        let changes = snapshot::changes(&self.storage, &storage);
        traced.rewritten = changes.rewritten;
        traced.created = changes.created;
        traced.dropped = changes.dropped;
        self.locks = locks;
        self.storage = storage;
        self.out.push(traced);
        Ok(())
    }
}

const NOT_IN_TRANSACTION: &str = "not traced: cannot run in a transaction block";

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

fn skipped(place: &Place<'_>, why: &str) -> Traced {
    let decision = DecisionReport {
        action: Action::Allow.as_str().to_owned(),
        ..DecisionReport::default()
    };
    Traced {
        reason: Some(why.to_owned()),
        ..traced_at(place, Status::Skipped, decision)
    }
}

/// The record of the statement at `place`, with nothing observed yet.
fn traced_at(place: &Place<'_>, status: Status, decision: DecisionReport) -> Traced {
    Traced {
        file: place.file.to_owned(),
        line: place.line,
        column: place.column,
        statement: check::statement_excerpt(place.text),
        status,
        reason: None,
        duration_ms: None,
        new_locks: Vec::new(),
        rewritten: Vec::new(),
        created: Vec::new(),
        dropped: Vec::new(),
        documented_lock: None,
        decision,
        error: None,
    }
}

/// The decision on the statement starting at `start` of a decided message. `single`: the
/// message is that statement (plus, in a transaction, the text after it the rules search), so
/// the plan's rewrite and steps are its own.
fn decision_report(
    decided: &analysis::Decided,
    text: &[u8],
    start: usize,
    single: bool,
) -> DecisionReport {
    let mut report = DecisionReport {
        ddl: true,
        action: Action::Allow.as_str().to_owned(),
        ..DecisionReport::default()
    };
    if decided.unverifiable.is_some() {
        report.action = Action::Block.as_str().to_owned();
        return report;
    }
    let Some(d) = decided.decisions.iter().find(|d| d.span.start == start) else {
        return report;
    };
    let refused = d.refused.is_some();
    let action = if refused || (d.decision.error.is_some() && d.decision.effective == Action::Block)
    {
        Action::Block
    } else {
        d.decision.effective
    };
    report.action = action.as_str().to_owned();
    if let Some(error) = &d.decision.error {
        report.findings.push(FindingReport {
            rule: "invalid-override".to_owned(),
            action: Action::Block.as_str().to_owned(),
            message: error.to_string(),
            hint: "Fix the ddlgate:allow comment: name existing rule ids and give reason=\"…\"."
                .to_owned(),
        });
    }
    for v in &d.decision.verdicts {
        let (action, message) = match &d.refused {
            Some(why) if v.action == Action::Rewrite => {
                (Action::Block, format!("{} {why}", v.finding.message))
            }
            _ => (v.action, v.finding.message.clone()),
        };
        report.findings.push(FindingReport {
            rule: v.finding.rule.to_owned(),
            action: action.as_str().to_owned(),
            message,
            hint: v.finding.hint.clone(),
        });
    }
    if single && action == Action::Rewrite {
        let plan = &decided.plan;
        report.lock_guard = plan.guard.is_some();
        if let Some(recipe) = &plan.recipe {
            report.steps = recipe.steps.iter().map(|s| s.sql.clone()).collect();
        } else if let Some(new) = &plan.sql {
            // The plan is the message's text with the statement spliced: the statement is what
            // lies between the same start and its end moved by the change in length.
            let end = (d.span.end + new.len()).checked_sub(text.len());
            if let Some(stmt) = end.and_then(|end| new.get(d.span.start..end)) {
                report.rewritten_sql = Some(check::statement_excerpt(stmt));
            }
        }
    } else if single {
        report.lock_guard = decided.plan.guard.is_some();
    }
    report
}

/// The lock the rules document for a statement PostgreSQL refused in a transaction block.
fn documented_from_rules(decision: &DecisionReport) -> String {
    decision
        .findings
        .iter()
        .find_map(|f| crate::rules::rule(&f.rule).map(|r| r.lock.to_owned()))
        .unwrap_or_else(|| "not documented by ddlgate".to_owned())
}

/// Connects to the scratch database (`crate::client`: TLS as `sslmode` and `--ca-file` say).
async fn connect(opts: &Options) -> Result<Client, TraceError> {
    let config = crate::client::config(&opts.database, "ddlgate_trace")?;
    Ok(crate::client::connect(config, opts.ca_file.as_deref(), opts.connect_timeout).await?)
}

impl From<crate::client::ConnectError> for TraceError {
    fn from(e: crate::client::ConnectError) -> TraceError {
        match e {
            crate::client::ConnectError::Usage(m) => TraceError::Usage(m),
            crate::client::ConnectError::Failed(m) => TraceError::Connect(m),
        }
    }
}

/// Reads the files (`-` is standard input).
pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, TraceError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| TraceError::Usage(format!("reading standard input: {e}")))?;
            out.push(Input {
                name: "<stdin>".to_owned(),
                path: None,
                source: buf,
            });
        } else {
            let source = std::fs::read(path)
                .map_err(|e| TraceError::Usage(format!("{}: {e}", path.display())))?;
            out.push(Input {
                name: path.display().to_string(),
                path: Some(path.clone()),
                source,
            });
        }
    }
    Ok(out)
}
