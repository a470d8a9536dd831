//! `ddlgate backfill`: runs an `UPDATE <table> SET <set> WHERE <where>` (or, with `--delete`, a
//! `DELETE FROM <table> WHERE <where>`) over a large table in small keyset batches, each its own
//! short transaction, throttled, resumable after a kill.
//!
//! It talks to PostgreSQL directly (tokio-postgres), not through the proxy. The flow:
//! 1. connect; fix the session settings that shape text I/O of key values, the timeouts, and
//!    READ COMMITTED (each statement of a batch sees what committed before it: a row a writer
//!    holds is waited for and re-checked, and the end-of-job check sees the latest rows);
//! 2. resolve the table through the server (`regclass` → OID) and its walking key from the
//!    catalog ([`key`]): the primary key, else the narrowest valid unique index without
//!    expressions or predicate over NOT NULL columns;
//! 3. check the fragments with the lexer ([`fragment`]) and prepare both batch statements, so a
//!    fragment the server rejects is refused with its message before anything changes;
//! 4. create `<schema>.backfill_progress` if needed and find or start this job's row (one job
//!    per table OID and hash of key, change (SET list, or DELETE) and WHERE);
//! 5. loop: one transaction per batch that locks the job's row, selects the next `batch_size`
//!    matching keys after the last one (in key order, `FOR NO KEY UPDATE` for an UPDATE, `FOR
//!    UPDATE` for a DELETE), updates or deletes exactly those rows and records the new last key
//!    and counts — so a kill loses or repeats no batch. A batch
//!    that meets `lock_timeout` (or a deadlock) is retried with backoff, a bounded number of
//!    times; between batches the pause, and the replicas' replay lag when `--max-lag` is set.

pub mod fragment;
pub mod key;
mod report;

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use crate::client::describe;
use crate::sql::lexer::LexOptions;
use crate::sql::quote;
pub use key::{Key, TableRef};
pub use report::ProgressMode;
use report::Reporter;

/// What the command line asks for.
#[derive(Clone, Debug)]
pub struct Options {
    /// libpq-style URI (`postgresql://…`) or `key=value` string.
    pub database: String,
    /// PEM CA certificates the server's certificate must chain to (TLS required, host name
    /// checked); without it `sslmode=prefer|require` encrypt without authenticating the server.
    pub ca_file: Option<std::path::PathBuf>,
    /// The table, as SQL would name it (`users`, `app.users`, `"Odd Name"`).
    pub table: String,
    /// What each batch does to its rows.
    pub change: Change,
    /// The row condition; `None` means every row (refused for [`Change::Delete`]: a DELETE of
    /// every row is asked for with `--where true`).
    pub condition: Option<String>,
    pub batch_size: u32,
    pub pause: Duration,
    /// Wait before a batch while a replica's replay lag is above this.
    pub max_lag: Option<Duration>,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// Attempts of one batch after lock timeouts or deadlocks before giving up.
    pub max_retries: u32,
    /// Start over even when a run with the same arguments finished or is part way.
    pub restart: bool,
    /// Schema of `backfill_progress`.
    pub schema: String,
    pub progress: ProgressMode,
    /// Plain progress lines this often.
    pub report_every: Duration,
}

/// What a backfill does to the rows a batch selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `UPDATE … SET <list>` (`--set`).
    Update(String),
    /// `DELETE` (`--delete`).
    Delete,
}

impl Change {
    /// The SET list, for an UPDATE.
    fn set_list(&self) -> Option<&str> {
        match self {
            Change::Update(set) => Some(set),
            Change::Delete => None,
        }
    }

    /// The word the progress table and the summary use (`operation` column).
    fn operation(&self) -> &'static str {
        match self {
            Change::Update(_) => "update",
            Change::Delete => "delete",
        }
    }

    /// The row lock a batch takes on its rows before changing them: the one the change itself
    /// takes, so the lock is never upgraded mid-batch (an upgrade could deadlock with a
    /// foreign key check's KEY SHARE). UPDATE of non-key columns: `FOR NO KEY UPDATE`, which
    /// lets inserts referencing the rows go on; DELETE: `FOR UPDATE`.
    fn row_lock(&self) -> &'static str {
        match self {
            Change::Update(_) => "FOR NO KEY UPDATE",
            Change::Delete => "FOR UPDATE",
        }
    }

    /// The statement that changes the rows whose keys the batch selected (`{rows}`: the
    /// condition that names them).
    fn statement(&self, target: &str, rows: &str) -> String {
        match self {
            Change::Update(set) => format!("UPDATE {target} SET\n{set}\n WHERE {rows}"),
            Change::Delete => format!("DELETE FROM {target}\n WHERE {rows}"),
        }
    }
}

/// Largest batch accepted: one batch is one transaction holding its rows' locks.
pub const MAX_BATCH: u32 = 100_000;

/// How a run ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub table: String,
    /// An UPDATE or a DELETE job.
    pub delete: bool,
    /// Rows updated (or deleted) by this run.
    pub rows: u64,
    pub batches: u64,
    pub retries: u64,
    pub elapsed: Duration,
    /// Rows and batches done by earlier runs of the same job that this run resumed.
    pub resumed_rows: u64,
    pub resumed_batches: u64,
    /// The job had finished before; nothing ran.
    pub already_finished: bool,
}

impl Summary {
    pub fn describe(&self) -> String {
        if self.already_finished {
            return format!(
                "backfill of {} already finished: {} rows in {} batches. Pass --restart to run it again.",
                self.table, self.resumed_rows, self.resumed_batches
            );
        }
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.rows as f64 / secs
        } else {
            0.0
        };
        let mut s = format!(
            "backfill of {} done: {} rows {} in {} batches, {:.1}s ({:.0} rows/s), {} retries",
            self.table,
            self.rows,
            if self.delete { "deleted" } else { "updated" },
            self.batches,
            secs,
            rate,
            self.retries
        );
        if self.resumed_batches > 0 {
            s.push_str(&format!(
                "; resumed after {} batches ({} rows) done by an earlier run",
                self.resumed_batches, self.resumed_rows
            ));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments cannot make a safe backfill (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The server said no, or the connection failed (exit 1).
    #[error("{0}")]
    Server(String),
    /// The table cannot be walked in key order (exit 1).
    #[error("{0}")]
    NoKey(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Server(_) | Error::NoKey(_) => 1,
        }
    }
}

fn server(context: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| Error::Server(format!("{context}: {}", describe(&e)))
}

/// Checks the numbers a user gives before anything connects.
pub fn validate(opts: &Options) -> Result<(), Error> {
    if opts.batch_size == 0 || opts.batch_size > MAX_BATCH {
        return Err(Error::Usage(format!(
            "--batch-size must be between 1 and {MAX_BATCH}"
        )));
    }
    if opts.lock_timeout.is_zero() || opts.statement_timeout.is_zero() {
        return Err(Error::Usage(
            "--lock-timeout and --statement-timeout must be above zero (zero would mean no limit)"
                .into(),
        ));
    }
    let most = Duration::from_millis(i32::MAX as u64);
    if opts.lock_timeout > most || opts.statement_timeout > most {
        return Err(Error::Usage(format!(
            "--lock-timeout and --statement-timeout can be at most {} ms (PostgreSQL's limit)",
            i32::MAX
        )));
    }
    if opts.schema.is_empty() {
        return Err(Error::Usage("--schema must not be empty".into()));
    }
    if opts.change == Change::Delete && opts.condition.is_none() {
        return Err(Error::Usage(
            "--delete needs --where: name the rows to delete (\"--where 'created_at < …'\"); \
             to delete every row of the table, say so with --where true"
                .into(),
        ));
    }
    Ok(())
}

/// Runs the backfill to the end (or to the first error).
pub async fn run(opts: &Options) -> Result<Summary, Error> {
    validate(opts)?;
    let client = connect(&opts.database, opts.ca_file.as_deref()).await?;
    let settings = format!(
        "SET lock_timeout = {}; SET statement_timeout = {}; SET extra_float_digits = 3; \
         SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; \
         SET default_transaction_isolation = 'read committed'",
        opts.lock_timeout.as_millis(),
        opts.statement_timeout.as_millis()
    );
    client
        .batch_execute(&settings)
        .await
        .map_err(server("setting up the session"))?;
    let scs: String = client
        .query_one("SELECT current_setting('standard_conforming_strings')", &[])
        .await
        .map_err(server("reading standard_conforming_strings"))?
        .get(0);
    let lex = LexOptions {
        standard_conforming_strings: scs == "on",
        ..LexOptions::default()
    };
    let targets = match opts.change.set_list() {
        Some(set) => fragment::check(fragment::Place::SetList, set, lex).map_err(Error::Usage)?,
        None => Vec::new(),
    };
    let condition = opts.condition.as_deref().unwrap_or("true");
    fragment::check(fragment::Place::Condition, condition, lex).map_err(Error::Usage)?;

    let table = key::resolve(&client, &opts.table).await?;
    let key = key::walking_key(&client, &table).await?;
    if let Some(col) = targets.iter().find(|t| key.columns.contains(t)) {
        return Err(Error::Usage(format!(
            "--set assigns {}, a column of the key the batches walk ({}): rows would be skipped or \
             visited twice. Backfill key columns with a plain UPDATE in a maintenance window",
            quote::ident(col),
            key.describe()
        )));
    }

    let sql = BatchSql::new(&table, &key, &opts.change, condition, opts.batch_size);
    // Prepared before anything changes: a fragment the server cannot parse or type-check is
    // refused with the server's message, and the tables are untouched.
    let statements = Statements::prepare(&client, &sql).await?;

    let progress = Progress::new(&opts.schema);
    progress.ensure(&client).await?;
    let job: String = client
        .query_one(
            "SELECT encode(sha256(convert_to($1::text, 'UTF8')), 'hex')",
            &[&job_text(&key, &opts.change, condition)],
        )
        .await
        .map_err(server("hashing the job"))?
        .get(0);
    let state = progress
        .start(
            &client,
            &table,
            &key,
            &job,
            &opts.change,
            condition,
            opts.restart,
        )
        .await?;
    let mut summary = Summary {
        table: table.display.clone(),
        delete: opts.change == Change::Delete,
        rows: 0,
        batches: 0,
        retries: 0,
        elapsed: Duration::ZERO,
        resumed_rows: state.rows,
        resumed_batches: state.batches,
        already_finished: state.finished,
    };
    if state.finished {
        return Ok(summary);
    }

    let estimate = estimate_remaining(&client, &sql, state.last_key.as_ref()).await;
    let mut reporter = Reporter::new(
        opts.progress,
        &table.display,
        estimate,
        opts.report_every,
        state.batches,
    );
    let started = Instant::now();
    let mut client = client;
    loop {
        if let Some(max) = opts.max_lag {
            wait_for_replicas(&client, max, &mut reporter).await?;
        }
        let mut attempt = 0u32;
        let outcome = loop {
            match run_batch(
                &mut client,
                &progress,
                &table,
                &job,
                &statements,
                opts.batch_size,
            )
            .await
            {
                Ok(o) => break o,
                Err(e) if retryable(&e) && attempt < opts.max_retries => {
                    attempt += 1;
                    summary.retries += 1;
                    let wait = backoff(attempt);
                    reporter.note(&format!(
                        "batch {} retried ({attempt}/{}) in {} ms: {}",
                        summary.resumed_batches + summary.batches + 1,
                        opts.max_retries,
                        wait.as_millis(),
                        describe(&e)
                    ));
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    reporter.finish();
                    let what = if retryable(&e) {
                        format!(
                            "batch {} failed {} times in a row",
                            summary.resumed_batches + summary.batches + 1,
                            attempt + 1
                        )
                    } else {
                        format!(
                            "batch {} failed",
                            summary.resumed_batches + summary.batches + 1
                        )
                    };
                    return Err(Error::Server(format!(
                        "{what}: {}\n{} rows in {} batches were committed by this run; rerun the \
                         same command to resume",
                        describe(&e),
                        summary.rows,
                        summary.batches
                    )));
                }
            }
        };
        if outcome.counted {
            summary.rows += outcome.changed;
            summary.batches += 1;
        }
        reporter.advance(outcome.changed);
        if outcome.finished {
            break;
        }
        if !opts.pause.is_zero() {
            tokio::time::sleep(opts.pause).await;
        }
    }
    reporter.finish();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

async fn connect(url: &str, ca_file: Option<&std::path::Path>) -> Result<Client, Error> {
    let config = crate::client::config(url, "ddlgate_backfill")?;
    Ok(crate::client::connect(config, ca_file, Duration::from_secs(30)).await?)
}

impl From<crate::client::ConnectError> for Error {
    fn from(e: crate::client::ConnectError) -> Error {
        match e {
            crate::client::ConnectError::Usage(m) => Error::Usage(m),
            crate::client::ConnectError::Failed(m) => Error::Server(format!("cannot connect: {m}")),
        }
    }
}

/// The text a job is known by: the key it walks and the fragments it runs. An UPDATE's is the
/// three-element array it always was (jobs part way through when ddlgate was upgraded still
/// resume); a DELETE's has four, so no UPDATE job ever shares a DELETE job's progress.
fn job_text(key: &Key, change: &Change, condition: &str) -> String {
    match change {
        Change::Update(set) => serde_json::json!([key.columns, set, condition]),
        Change::Delete => serde_json::json!([key.columns, null, condition, "delete"]),
    }
    .to_string()
}

/// The two batch statements: the first batch (no key yet) and every later one (after `$1`,
/// the last key as text values).
pub struct BatchSql {
    pub first: String,
    pub next: String,
    /// `SELECT 1 FROM <table> WHERE [<after key> AND] (<where>)`, for the planner's estimate.
    count_first: String,
    count_next: String,
}

impl BatchSql {
    pub fn new(
        table: &TableRef,
        key: &Key,
        change: &Change,
        condition: &str,
        limit: u32,
    ) -> BatchSql {
        let cols: Vec<String> = key.columns.iter().map(|c| quote::ident(c)).collect();
        let list = cols.join(", ");
        let after = format!(
            "({list}) > ({})",
            key.types
                .iter()
                .enumerate()
                .map(|(i, ty)| format!("($1::text[])[{}]::{ty}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let desc = cols
            .iter()
            .map(|c| format!("{c} DESC"))
            .collect::<Vec<_>>()
            .join(", ");
        let texts = cols
            .iter()
            .map(|c| format!("{c}::text"))
            .collect::<Vec<_>>()
            .join(", ");
        let target = table.target();
        let lock = change.row_lock();
        let modify = change.statement(
            &target,
            &format!("({list}) IN (SELECT {list} FROM ddlgate_batch)"),
        );
        // Fragments stand on lines of their own: a trailing `--` comment ends with its line.
        let build = |after: &str| {
            format!(
                "WITH ddlgate_batch AS (\n SELECT {list} FROM {target}\n WHERE {after}(\n{condition}\n)\n \
                 ORDER BY {list}\n LIMIT {limit}\n {lock}\n), ddlgate_changed AS (\n \
                 {modify}\n RETURNING 1\n)\nSELECT (SELECT count(*) FROM ddlgate_changed)::int8,\n \
                 (SELECT count(*) FROM ddlgate_batch)::int8,\n \
                 (SELECT ARRAY[{texts}] FROM ddlgate_batch ORDER BY {desc} LIMIT 1)"
            )
        };
        let count =
            |after: &str| format!("SELECT 1 FROM {target}\n WHERE {after}(\n{condition}\n)");
        let after_and = format!("{after} AND ");
        BatchSql {
            first: build(""),
            next: build(&after_and),
            count_first: count(""),
            count_next: count(&after_and),
        }
    }
}

/// The batch statements, prepared once: the first and the following batches, and whether
/// any matching row is left after a short batch.
struct Statements {
    first: Statement,
    next: Statement,
    more_first: Statement,
    more_next: Statement,
}

impl Statements {
    /// Prepared before anything changes: a fragment the server cannot parse or type-check is
    /// refused with the server's message, and the tables are untouched.
    async fn prepare(client: &Client, sql: &BatchSql) -> Result<Statements, Error> {
        let prep = |text: String| async move {
            client.prepare(&text).await.map_err(|e| {
                Error::Server(format!(
                    "the server rejected the batch statement built from --set/--delete/--where: {}",
                    describe(&e)
                ))
            })
        };
        Ok(Statements {
            first: prep(sql.first.clone()).await?,
            next: prep(sql.next.clone()).await?,
            more_first: prep(format!("SELECT EXISTS ({})", sql.count_first)).await?,
            more_next: prep(format!("SELECT EXISTS ({})", sql.count_next)).await?,
        })
    }
}

/// The planner's estimate of the rows left to update (no scan: EXPLAIN without ANALYZE);
/// `None` when it cannot be had.
async fn estimate_remaining(
    client: &Client,
    sql: &BatchSql,
    last: Option<&Vec<String>>,
) -> Option<u64> {
    let rows = match last {
        None => {
            client
                .query(&format!("EXPLAIN {}", sql.count_first), &[])
                .await
        }
        Some(k) => {
            client
                .query(&format!("EXPLAIN {}", sql.count_next), &[k])
                .await
        }
    }
    .ok()?;
    let line: String = rows.first()?.try_get(0).ok()?;
    let at = line.find("rows=")? + 5;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Waits while any replica's replay lag is above `max` (a no-op without replicas: the view is
/// empty; without the pg_monitor role the lag columns read NULL, counted as no lag).
async fn wait_for_replicas(
    client: &Client,
    max: Duration,
    reporter: &mut Reporter,
) -> Result<(), Error> {
    let mut said = false;
    loop {
        let lag: f64 = client
            .query_one(
                "SELECT COALESCE(EXTRACT(epoch FROM max(replay_lag))::float8, 0) FROM pg_stat_replication",
                &[],
            )
            .await
            .map_err(server("reading replication lag"))?
            .get(0);
        if lag <= max.as_secs_f64() {
            return Ok(());
        }
        if !said {
            reporter.note(&format!(
                "replica replay lag {lag:.1}s is above --max-lag {:.1}s: waiting",
                max.as_secs_f64()
            ));
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// SQLSTATEs after which the same batch is tried again: it waited for a lock too long, or was
/// chosen as a deadlock victim. Nothing of it was committed.
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Wait before retry `attempt` (1-based): 100 ms doubling to at most 5 s, with up to 50% jitter
/// so two backfills that collided do not collide again in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(6))
        .min(5_000);
    Duration::from_millis(base + fastrand::u64(0..=base / 2))
}

struct BatchOutcome {
    /// Rows updated or deleted.
    changed: u64,
    finished: bool,
    /// A batch ran (false when the job was found finished by another run).
    counted: bool,
}

async fn run_batch(
    client: &mut Client,
    progress: &Progress,
    table: &TableRef,
    job: &str,
    st: &Statements,
    batch_size: u32,
) -> Result<BatchOutcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // The job's row, locked: its last key is the truth (another run of the same job waits here
    // for this batch to end instead of redoing it).
    let row = tx
        .query_one(&progress.lock_sql, &[&table.oid, &job])
        .await?;
    let last: Option<Vec<String>> = row.get(0);
    let finished: bool = row.get(1);
    if finished {
        tx.commit().await?;
        return Ok(BatchOutcome {
            changed: 0,
            finished: true,
            counted: false,
        });
    }
    let r = match &last {
        None => tx.query_one(&st.first, &[]).await?,
        Some(k) => tx.query_one(&st.next, &[k]).await?,
    };
    let changed: i64 = r.get(0);
    let selected: i64 = r.get(1);
    let last = r.get::<_, Option<Vec<String>>>(2).or(last);
    // A short batch ends the job only when, with a fresh snapshot, no matching row is left
    // after its last key. (A row the batch waited for and found changed so that it no longer
    // matches is skipped by the lock step below LIMIT, which then takes the next row; the check
    // also catches rows a writer committed to match beyond the last key while the batch ran.)
    let done = selected < i64::from(batch_size)
        && !match &last {
            None => tx.query_one(&st.more_first, &[]).await?,
            Some(k) => tx.query_one(&st.more_next, &[k]).await?,
        }
        .get::<_, bool>(0);
    tx.execute(
        &progress.advance_sql,
        &[&table.oid, &job, &last, &changed, &done],
    )
    .await?;
    tx.commit().await?;
    Ok(BatchOutcome {
        changed: u64::try_from(changed).unwrap_or(0),
        finished: done,
        counted: true,
    })
}

/// `<schema>.backfill_progress`: one row per job.
struct Progress {
    table: String,
    schema: String,
    lock_sql: String,
    advance_sql: String,
}

struct JobState {
    last_key: Option<Vec<String>>,
    rows: u64,
    batches: u64,
    finished: bool,
}

impl Progress {
    fn new(schema: &str) -> Progress {
        let table = format!("{}.backfill_progress", quote::ident(schema));
        Progress {
            lock_sql: format!(
                "SELECT last_key, finished_at IS NOT NULL FROM {table} \
                 WHERE table_oid = $1 AND job = $2 FOR UPDATE"
            ),
            advance_sql: format!(
                "UPDATE {table} SET last_key = $3, rows_done = rows_done + $4, \
                 batches_done = batches_done + 1, updated_at = now(), \
                 finished_at = CASE WHEN $5 THEN now() END \
                 WHERE table_oid = $1 AND job = $2"
            ),
            schema: schema.to_owned(),
            table,
        }
    }

    async fn ensure(&self, client: &Client) -> Result<(), Error> {
        let ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {table} (
                 table_oid oid NOT NULL,
                 job text NOT NULL,
                 table_name text NOT NULL,
                 key_columns text[] NOT NULL,
                 operation text NOT NULL DEFAULT 'update',
                 set_sql text NOT NULL,
                 where_sql text NOT NULL,
                 last_key text[],
                 rows_done bigint NOT NULL DEFAULT 0,
                 batches_done bigint NOT NULL DEFAULT 0,
                 started_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 finished_at timestamptz,
                 PRIMARY KEY (table_oid, job)
             )",
            schema = quote::ident(&self.schema),
            table = self.table
        );
        let failed = |e: tokio_postgres::Error| {
            Error::Server(format!(
                "cannot create {} for the backfill's progress: {}\nHINT: grant CREATE on the \
                 database, create the schema beforehand, or name another with --schema",
                self.table,
                describe(&e)
            ))
        };
        client.batch_execute(&ddl).await.map_err(failed)?;
        // A table created before `--delete` existed has no `operation` column: its rows are all
        // UPDATE jobs, which the default says. Altered once, only when the column is missing
        // (ALTER TABLE's ACCESS EXCLUSIVE lock would otherwise queue behind every running job's
        // batch on each start).
        let has_operation: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass \
                 AND attname = 'operation' AND NOT attisdropped)",
                &[&self.table],
            )
            .await
            .map_err(server("reading the progress table's columns"))?
            .get(0);
        if !has_operation {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS operation text NOT NULL DEFAULT 'update'",
                    self.table
                ))
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        client: &Client,
        table: &TableRef,
        key: &Key,
        job: &str,
        change: &Change,
        condition: &str,
        restart: bool,
    ) -> Result<JobState, Error> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (table_oid, job, table_name, key_columns, operation, set_sql, \
                     where_sql) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (table_oid, job) DO NOTHING",
                    self.table
                ),
                &[
                    &table.oid,
                    &job,
                    &table.display,
                    &key.columns,
                    &change.operation(),
                    // A DELETE has no SET list: empty (an UPDATE's never is).
                    &change.set_list().unwrap_or(""),
                    &condition,
                ],
            )
            .await
            .map_err(server("recording the job"))?;
        if restart {
            client
                .execute(
                    &format!(
                        "UPDATE {} SET last_key = NULL, rows_done = 0, batches_done = 0, \
                         started_at = now(), updated_at = now(), finished_at = NULL \
                         WHERE table_oid = $1 AND job = $2",
                        self.table
                    ),
                    &[&table.oid, &job],
                )
                .await
                .map_err(server("restarting the job"))?;
        }
        let row = client
            .query_one(
                &format!(
                    "SELECT last_key, rows_done, batches_done, finished_at IS NOT NULL FROM {} \
                     WHERE table_oid = $1 AND job = $2",
                    self.table
                ),
                &[&table.oid, &job],
            )
            .await
            .map_err(server("reading the job"))?;
        let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        Ok(JobState {
            last_key: row.get(0),
            rows: count(1),
            batches: count(2),
            finished: row.get(3),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_bound_with_jitter() {
        for attempt in 1..40 {
            let w = backoff(attempt).as_millis() as u64;
            let base = (100u64 << (attempt - 1).min(6)).min(5_000);
            assert!((base..=base + base / 2).contains(&w), "{attempt}: {w}");
        }
    }

    #[test]
    fn batch_sql_quotes_names_and_compares_the_key_as_a_row() {
        let table = TableRef {
            oid: 1,
            schema: "App".into(),
            name: "Order \"Lines\"".into(),
            display: String::new(),
            partitioned: false,
        };
        let key = Key {
            index: "k".into(),
            primary: true,
            columns: vec!["tenant".into(), "Line".into()],
            types: vec!["text".into(), "integer".into()],
        };
        let sql = BatchSql::new(
            &table,
            &key,
            &Change::Update("note = 'x' -- c".into()),
            "qty > 0 -- c",
            50,
        );
        assert!(
            sql.next.contains(r#"FROM ONLY "App"."Order ""Lines""""#),
            "{}",
            sql.next
        );
        assert!(
            sql.next.contains(
                r#"("tenant", "Line") > (($1::text[])[1]::text, ($1::text[])[2]::integer) AND ("#
            ),
            "{}",
            sql.next
        );
        assert!(!sql.first.contains("$1"), "{}", sql.first);
        // Each fragment ends its line, so a trailing comment cannot swallow ddlgate's SQL.
        assert!(sql.first.contains("note = 'x' -- c\n"), "{}", sql.first);
        assert!(sql.first.contains("qty > 0 -- c\n)"), "{}", sql.first);
        assert!(
            sql.first.contains("LIMIT 50\n FOR NO KEY UPDATE"),
            "{}",
            sql.first
        );

        // DELETE: the same walk, the lock DELETE itself takes, no SET list.
        let del = BatchSql::new(&table, &key, &Change::Delete, "qty > 0 -- c", 50);
        assert!(del.next.contains("LIMIT 50\n FOR UPDATE\n"), "{}", del.next);
        assert!(
            del.next.contains(
                r#"DELETE FROM ONLY "App"."Order ""Lines"""
 WHERE ("tenant", "Line") IN (SELECT "tenant", "Line" FROM ddlgate_batch)"#
            ),
            "{}",
            del.next
        );
        assert!(!del.next.contains(" SET"), "{}", del.next);
        assert_eq!(
            del.next
                .replace("DELETE FROM", "UPDATE")
                .replace("\n FOR UPDATE\n", "\n FOR NO KEY UPDATE\n"),
            sql.next.replace(" SET\nnote = 'x' -- c\n", "\n"),
            "the same walk"
        );
    }

    #[test]
    fn delete_and_update_jobs_never_share_a_hash_input() {
        let key = Key {
            index: "k".into(),
            primary: true,
            columns: vec!["id".into()],
            types: vec!["integer".into()],
        };
        // The UPDATE job's text is what it was before --delete (running jobs still resume).
        assert_eq!(
            job_text(&key, &Change::Update("v = 1".into()), "true"),
            r#"[["id"],"v = 1","true"]"#
        );
        assert_eq!(
            job_text(&key, &Change::Delete, "true"),
            r#"[["id"],null,"true","delete"]"#
        );
    }

    #[test]
    fn delete_without_where_is_refused_before_connecting() {
        let opts = Options {
            database: "host=/nonexistent".into(),
            ca_file: None,
            table: "t".into(),
            change: Change::Delete,
            condition: None,
            batch_size: 10,
            pause: Duration::ZERO,
            max_lag: None,
            lock_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(1),
            max_retries: 1,
            restart: false,
            schema: "ddlgate".into(),
            progress: ProgressMode::None,
            report_every: Duration::from_secs(1),
        };
        let e = validate(&opts).expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--where true"), "{e}");
        assert!(
            validate(&Options {
                condition: Some("true".into()),
                ..opts.clone()
            })
            .is_ok()
        );
        assert!(
            validate(&Options {
                change: Change::Update("v = 1".into()),
                ..opts
            })
            .is_ok()
        );
    }
}
