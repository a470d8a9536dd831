//! The lock guard: what a DDL statement locks, and the SQL ddlgate runs around it so that it
//! never waits in the lock queue for long.
//!
//! The classic migration outage is a *waiting* statement: an `ALTER TABLE` queues for ACCESS
//! EXCLUSIVE behind a long transaction, and every query on the table queues behind it. So DDL
//! that takes SHARE or stronger on an existing relation runs under a short `lock_timeout`; on
//! SQLSTATE 55P03 it is rolled back (its implicit transaction, or a savepoint inside the
//! client's transaction) and retried with jittered exponential backoff, and the client is told
//! who is in the way. DDL on one table is serialized across sessions and ddlgate instances by
//! PostgreSQL advisory locks, keyed by the table's OID — the database coordinates, not ddlgate.
//!
//! This module is pure: the plan for one Query, and the SQL texts. The session's DDL lane
//! (`session::ddl`) runs them on the client's own upstream connection, at a
//! statement boundary, and leaves the session's settings as it found them.

use std::time::Duration;

use crate::config::GuardConfig;
use crate::sql::quote;
use crate::sql::statement::{AlterOp, ConstraintKind, Ddl, DdlKind, LockMode, Name};

/// How a guarded Query is retried after a lock timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Cannot be retried (transaction control inside that ddlgate cannot replay): the guard
    /// still bounds the wait, and the lock timeout reaches the client.
    No,
    /// Started outside a transaction, and the Query is atomic: an implicit transaction, or one
    /// `BEGIN … COMMIT` block. After a lock timeout nothing of it remains (a block left in the
    /// failed state is rolled back), so it is simply sent again.
    Whole,
    /// Inside the client's transaction: each attempt runs after a SAVEPOINT, and a lock
    /// timeout rolls back to it, undoing only the attempt.
    Savepoint,
}

/// What ddlgate does around one Query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPlan {
    /// Existing relations the Query's DDL touches: their DDL is serialized.
    pub tables: Vec<Name>,
    /// Some statement takes a lock that conflicts with ordinary traffic: short `lock_timeout`.
    pub short_lock_timeout: bool,
    /// Some statement takes ACCESS EXCLUSIVE (for the optional old-transaction pre-check).
    pub access_exclusive: bool,
    /// A long statement under SHARE UPDATE EXCLUSIVE: `statement_timeout` lifted.
    pub long_running: bool,
    pub retry: Retry,
}

impl GuardPlan {
    /// Whether running this plan changes anything at all.
    pub fn is_needed(&self, cfg: &GuardConfig) -> bool {
        cfg.enabled
            && (self.short_lock_timeout
                || (cfg.serialize && !self.tables.is_empty())
                || (cfg.lift_statement_timeout && self.long_running))
    }

    /// Nothing to do for this plan.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && !self.short_lock_timeout && !self.long_running
    }

    /// Adds one DDL statement's locks, except on relations `is_new` says were created in the
    /// current transaction (nobody else can see them, so nobody waits for them).
    pub fn add(&mut self, ddl: &Ddl, is_new: impl Fn(&Name) -> bool) {
        let locks = relation_locks(ddl);
        match &locks {
            Locks::Known(list) => {
                for (name, mode) in list.iter().filter(|(n, _)| !is_new(n)) {
                    if !self.tables.contains(name) {
                        self.tables.push(name.clone());
                    }
                    self.short_lock_timeout |= mode.blocks_traffic();
                    self.access_exclusive |= *mode == LockMode::AccessExclusive;
                }
            }
            Locks::Unknown => self.short_lock_timeout = true,
            Locks::None => {}
        }
        self.long_running |= is_long_running(ddl);
    }
}

impl Default for GuardPlan {
    fn default() -> Self {
        GuardPlan {
            tables: Vec::new(),
            short_lock_timeout: false,
            access_exclusive: false,
            long_running: false,
            retry: Retry::No,
        }
    }
}

/// What a statement locks, as far as the guard is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locks {
    /// These relations (tables, indexes, materialized views), in these modes.
    Known(Vec<(Name, LockMode)>),
    /// Locks that cannot conflict with ordinary traffic on existing relations (new objects,
    /// types, functions, roles, …).
    None,
    /// Unknown targets (a DO block, a command ddlgate only knows by its tag): assume the worst,
    /// run it under the short `lock_timeout`, but there is no table to serialize on.
    Unknown,
}

/// The heavyweight locks a statement takes on existing relations (PostgreSQL's
/// "Explicit Locking" table and each command's reference page).
pub fn relation_locks(ddl: &Ddl) -> Locks {
    use LockMode::*;
    let one = |name: &Name, mode| Locks::Known(vec![(name.clone(), mode)]);
    let all = |names: &[Name], mode: LockMode| {
        Locks::Known(names.iter().map(|n| (n.clone(), mode)).collect())
    };
    match &ddl.kind {
        DdlKind::CreateIndex {
            table,
            concurrently,
            ..
        } => one(
            table,
            if *concurrently {
                ShareUpdateExclusive
            } else {
                Share
            },
        ),
        DdlKind::DropIndex {
            names,
            concurrently,
            ..
        } => all(
            names,
            if *concurrently {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            },
        ),
        DdlKind::Reindex {
            name: Some(name),
            concurrently,
            ..
        } => one(
            name,
            if *concurrently {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            },
        ),
        // REINDEX SCHEMA / DATABASE / SYSTEM: many tables, unnamed here.
        DdlKind::Reindex { .. } => Locks::Unknown,
        DdlKind::AlterIndex { name, .. } => one(name, AccessExclusive),
        DdlKind::CreateTable {
            partition_of,
            references,
            ..
        } => {
            let mut list: Vec<(Name, LockMode)> = references
                .iter()
                .map(|r| (r.clone(), ShareRowExclusive))
                .collect();
            if let Some(parent) = partition_of {
                list.push((parent.clone(), AccessExclusive));
            }
            if list.is_empty() {
                Locks::None
            } else {
                Locks::Known(list)
            }
        }
        DdlKind::AlterTable { name, ops, .. } => {
            let mut list = Vec::new();
            let mut mode = ops
                .iter()
                .map(alter_op_lock)
                .max()
                .unwrap_or(AccessExclusive);
            for op in ops {
                match op {
                    AlterOp::AddConstraint(c) => {
                        if let ConstraintKind::ForeignKey { references } = &c.kind {
                            list.push((references.clone(), ShareRowExclusive));
                        }
                    }
                    AlterOp::AddColumn(c) => {
                        for k in &c.constraints {
                            if let ConstraintKind::ForeignKey { references } = k {
                                list.push((references.clone(), ShareRowExclusive));
                            }
                        }
                    }
                    AlterOp::AttachPartition { partition } => {
                        list.push((partition.clone(), AccessExclusive));
                    }
                    AlterOp::DetachPartition {
                        partition,
                        concurrently,
                    } => list.push((
                        partition.clone(),
                        if *concurrently {
                            ShareUpdateExclusive
                        } else {
                            AccessExclusive
                        },
                    )),
                    _ => {}
                }
            }
            if ops.is_empty() {
                mode = AccessExclusive;
            }
            list.insert(0, (name.clone(), mode));
            Locks::Known(list)
        }
        DdlKind::DropTable { names, .. } | DdlKind::Truncate { names, .. } => {
            all(names, AccessExclusive)
        }
        DdlKind::Vacuum { full, tables } => {
            if tables.is_empty() {
                if *full { Locks::Unknown } else { Locks::None }
            } else {
                all(
                    tables,
                    if *full {
                        AccessExclusive
                    } else {
                        ShareUpdateExclusive
                    },
                )
            }
        }
        DdlKind::Cluster { table: Some(t) } => one(t, AccessExclusive),
        DdlKind::Cluster { table: None } => Locks::Unknown,
        DdlKind::Lock { tables, mode } => all(tables, *mode),
        DdlKind::RefreshMaterializedView { name, concurrently } => one(
            name,
            if *concurrently {
                Exclusive
            } else {
                AccessExclusive
            },
        ),
        DdlKind::AlterTypeAddValue { .. }
        | DdlKind::AlterTypeRenameValue { .. }
        | DdlKind::CreateEnum { .. }
        | DdlKind::CreateDomainWithConstraint { .. }
        | DdlKind::CreateFunction { .. }
        | DdlKind::DropDatabase => Locks::None,
        // ALTER DOMAIN … ADD CONSTRAINT scans every table using the domain.
        DdlKind::AlterDomainAddConstraint { .. } | DdlKind::Do { .. } | DdlKind::Unknown => {
            Locks::Unknown
        }
        // Dependent tables (DROP … CASCADE, DROP OWNED) and a table whose row type it is
        // (RENAME ATTRIBUTE) are not named in the statement: ACCESS EXCLUSIVE on tables
        // ddlgate cannot list. A remote connection's locks are out of this session's reach
        // altogether; the short lock_timeout is the most that can be done here.
        DdlKind::DropOwned
        | DdlKind::DropCascade { .. }
        | DdlKind::AlterTypeRenameAttribute { .. }
        | DdlKind::RemoteSql { .. } => Locks::Unknown,
        // ALTER VIEW … RENAME takes ACCESS EXCLUSIVE on the relation, a table included.
        DdlKind::RenameView { name, .. } => one(name, AccessExclusive),
        // A sequence is a relation (RenameRelation: ACCESS EXCLUSIVE, which nextval's ROW
        // EXCLUSIVE waits for). A function's rename locks only its own row (as every ALTER
        // FUNCTION, a harmless tag); the other kinds stay what their command tag was before
        // renames had a kind of their own: unknown, so guarded.
        DdlKind::RenameObject { tag, name, .. } => match tag.as_str() {
            "ALTER SEQUENCE" => one(name, AccessExclusive),
            "ALTER FUNCTION" => Locks::None,
            _ => Locks::Unknown,
        },
        // CREATE RULE takes ACCESS EXCLUSIVE on its table (DefineQueryRewrite).
        DdlKind::CreateRule { table, .. } => one(table, AccessExclusive),
        // Only the schema's own catalog row; COPY takes ROW EXCLUSIVE (FROM) or ACCESS SHARE
        // (TO), which conflict with no ordinary traffic.
        DdlKind::RenameSchema { .. } | DdlKind::CopyProgram { .. } => Locks::None,
        DdlKind::Other { tag } => {
            // A DML statement the prefilter sent on only because its bytes mentioned dblink or
            // PROGRAM, and that turned out to be ordinary traffic.
            let dml = crate::sql::prefilter::classify_word(tag.as_bytes())
                == crate::sql::prefilter::StatementClass::Dml;
            if dml || HARMLESS_TAGS.iter().any(|t| tag.eq_ignore_ascii_case(t)) {
                Locks::None
            } else {
                Locks::Unknown
            }
        }
    }
}

/// Commands that take no lock conflicting with ordinary traffic on an existing relation.
const HARMLESS_TAGS: &[&str] = &[
    "CREATE VIEW",
    "CREATE SEQUENCE",
    "CREATE SCHEMA",
    "CREATE EXTENSION",
    "CREATE TYPE",
    "CREATE DOMAIN",
    "CREATE ROLE",
    "CREATE USER",
    "CREATE COLLATION",
    "CREATE STATISTICS",
    "ALTER ROLE",
    "ALTER USER",
    "ALTER SEQUENCE",
    "ALTER FUNCTION",
    "ALTER DEFAULT PRIVILEGES",
    "DROP VIEW",
    "DROP SEQUENCE",
    "DROP FUNCTION",
    "DROP TYPE",
    "DROP ROLE",
    "DROP USER",
    "DROP SCHEMA",
    "DROP EXTENSION",
    "COMMENT",
    "GRANT",
    "REVOKE",
    "ANALYZE",
    "SECURITY LABEL",
];

fn alter_op_lock(op: &AlterOp) -> LockMode {
    use LockMode::*;
    match op {
        AlterOp::ValidateConstraint { .. } => ShareUpdateExclusive,
        AlterOp::DetachPartition {
            concurrently: true, ..
        } => ShareUpdateExclusive,
        // PostgreSQL 12+: the parent only needs SHARE UPDATE EXCLUSIVE (the partition is
        // locked ACCESS EXCLUSIVE, listed separately).
        AlterOp::AttachPartition { .. } => ShareUpdateExclusive,
        AlterOp::AddConstraint(c) if matches!(c.kind, ConstraintKind::ForeignKey { .. }) => {
            ShareRowExclusive
        }
        _ => AccessExclusive,
    }
}

/// Statements that may run for a long time under SHARE UPDATE EXCLUSIVE only.
fn is_long_running(ddl: &Ddl) -> bool {
    match &ddl.kind {
        DdlKind::CreateIndex { concurrently, .. } | DdlKind::Reindex { concurrently, .. } => {
            *concurrently
        }
        DdlKind::AlterTable { ops, .. } => {
            !ops.is_empty()
                && ops.iter().all(|op| {
                    matches!(
                        op,
                        AlterOp::ValidateConstraint { .. }
                            | AlterOp::DetachPartition {
                                concurrently: true,
                                ..
                            }
                    )
                })
        }
        DdlKind::Vacuum { full: false, .. } => true,
        _ => false,
    }
}

/// `'"schema"."name"'`: the text `to_regclass` resolves exactly as the server resolves the
/// statement's name (search_path for unqualified ones).
fn regclass_text(n: &Name) -> String {
    quote::literal(&quote::name(n))
}

/// Namespace of ddlgate's advisory-lock keys: "ddlg" in the high 32 bits, the table OID in the
/// low 32, so keys never collide with another table's, and rarely with an application's.
const KEY_SPACE: i64 = 0x6464_6c67;

/// The advisory-lock keys for `tables`, one row each, sorted (acquiring in one global order
/// cannot deadlock). An index resolves to its table; relations that do not exist are skipped.
pub fn keys_query(tables: &[Name]) -> Option<String> {
    if tables.is_empty() {
        return None;
    }
    let values: Vec<String> = tables
        .iter()
        .map(|t| format!("(to_regclass({}))", regclass_text(t)))
        .collect();
    Some(format!(
        "SELECT DISTINCT {KEY_SPACE}::bigint * 4294967296 + COALESCE(i.indrelid, c.oid)::bigint AS k, \
         COALESCE(i.indrelid, c.oid)::regclass::text \
         FROM (VALUES {}) AS v(r) JOIN pg_catalog.pg_class c ON c.oid = v.r \
         LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid ORDER BY 1",
        values.join(", ")
    ))
}

/// Tries to take one key: session-level outside a transaction (released by ddlgate after the
/// Query), transaction-level inside one (released when the client's transaction ends).
pub fn try_lock_sql(key: i64, in_transaction: bool) -> String {
    if in_transaction {
        format!("SELECT pg_catalog.pg_try_advisory_xact_lock({key})")
    } else {
        format!("SELECT pg_catalog.pg_try_advisory_lock({key})")
    }
}

/// Reads the session's `lock_timeout` and `statement_timeout` (as `current_setting` shows them,
/// e.g. `0`, `50ms`, `2s`) and sets the guard's values in the same statement: `lock_timeout` to
/// `lock_ms` unless the session's own is lower (and not 0), `statement_timeout` to
/// `statement_ms` when given. Returns one row: old lock_timeout, old statement_timeout. The old
/// values are read in a subquery the planner cannot flatten (`OFFSET 0`), before any change.
pub fn settings_sql(lock_ms: Option<u128>, statement_ms: Option<u128>) -> String {
    let lock = match lock_ms {
        Some(ms) => format!(
            ", pg_catalog.set_config('lock_timeout', CASE WHEN o.l::interval > '0' AND o.l::interval < '{ms} ms' \
             THEN o.l ELSE '{ms}ms' END, false)"
        ),
        None => String::new(),
    };
    let statement = match statement_ms {
        Some(ms) => format!(", pg_catalog.set_config('statement_timeout', '{ms}ms', false)"),
        None => String::new(),
    };
    format!(
        "SELECT o.l, o.s{lock}{statement} FROM (SELECT pg_catalog.current_setting('lock_timeout') AS l, \
         pg_catalog.current_setting('statement_timeout') AS s OFFSET 0) AS o"
    )
}

/// The guard's `lock_timeout` (for statements that must not wait in the lock queue) and
/// `statement_timeout` (lifted for long statements that take only weak locks), in
/// milliseconds, for `plan` under `cfg`; `None` leaves the session's own.
pub fn timeouts(
    plan: &GuardPlan,
    cfg: &crate::config::GuardConfig,
) -> (Option<u128>, Option<u128>) {
    (
        plan.short_lock_timeout
            .then_some(cfg.lock_timeout_ms.as_millis()),
        (plan.long_running && cfg.lift_statement_timeout)
            .then_some(cfg.long_statement_timeout_ms.as_millis()),
    )
}

/// One round trip before a guarded statement on at most one table: [`settings_sql`]'s read
/// and change of the session's timeouts, and, for `table`, its DDL turn tried as
/// [`keys_query`] and [`try_lock_sql`] would (an index resolves to its table; a relation that
/// does not exist has no turn). The row is read by [`Prelude::from_row`]. The settings are
/// changed whether or not the turn is free: while the session waits for its turn it runs only
/// ddlgate's own reads, which take no lock, and whichever way the wait ends the epilogue puts
/// them back.
pub fn prelude_sql(
    table: Option<&Name>,
    in_transaction: bool,
    lock_ms: Option<u128>,
    statement_ms: Option<u128>,
) -> String {
    let settings = settings_sql(lock_ms, statement_ms);
    let Some(table) = table else {
        return settings.replacen(
            "SELECT o.l, o.s",
            "SELECT NULL::bigint, NULL::text, NULL::boolean, o.l, o.s",
            1,
        );
    };
    let lock = if in_transaction {
        "pg_try_advisory_xact_lock"
    } else {
        "pg_try_advisory_lock"
    };
    // The table's key as `keys_query` computes it (an index resolves to its table), in a form
    // the server plans in a fraction of the time of that query's joins: the whole statement is
    // planned for every guarded statement. The lock function runs at most once, and never when
    // the relation does not exist.
    let key = format!("{KEY_SPACE}::bigint * 4294967296 + v.t::bigint");
    settings.replacen("SELECT o.l, o.s", "SELECT t.k, t.t, t.taken, o.l, o.s", 1)
        + &format!(
            " LEFT JOIN (SELECT {key} AS k, v.t::regclass::text AS t, pg_catalog.{lock}({key}) AS taken \
         FROM (SELECT COALESCE((SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = r.r), r.r) AS t \
         FROM (SELECT pg_catalog.to_regclass({})::oid AS r OFFSET 0) AS r WHERE r.r IS NOT NULL OFFSET 0) AS v) AS t ON true",
            regclass_text(table)
        )
}

/// What [`prelude_sql`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelude {
    /// The session's `lock_timeout` and `statement_timeout` before the guard changed them.
    pub settings: (String, String),
    /// The table's DDL turn (key, table as the server names it, taken now), when it has one.
    pub turn: Option<(i64, String, bool)>,
}

impl Prelude {
    /// Reads [`prelude_sql`]'s row; `None` when it is not that row.
    pub fn from_row(row: &[Option<String>]) -> Option<Prelude> {
        let [key, table, taken, lock, statement, ..] = row else {
            return None;
        };
        let settings = (lock.clone()?, statement.clone()?);
        let turn = match key {
            None => None,
            Some(k) => Some((
                k.parse().ok()?,
                table.clone().unwrap_or_default(),
                taken.as_deref() == Some("t"),
            )),
        };
        Some(Prelude { settings, turn })
    }
}

/// A time setting as `current_setting` shows it (`0`, `250ms`, `2s`, `1min`, `1h`, `1d`, `10us`)
/// in milliseconds; a bare number is milliseconds, as for `lock_timeout`.
pub fn setting_ms(s: &str) -> Option<u128> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u128 = n.parse().ok()?;
    Some(match unit.trim() {
        "" | "ms" => n,
        "us" => n / 1000,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    })
}

/// Puts the session's settings back as they were and releases session-level advisory locks, in
/// one statement.
pub fn restore_sql(settings: Option<(&str, &str)>, unlock: &[i64]) -> String {
    let mut calls: Vec<String> = Vec::new();
    if let Some((lock, statement)) = settings {
        calls.push(format!(
            "pg_catalog.set_config('lock_timeout', {}, false)",
            quote::literal(lock)
        ));
        calls.push(format!(
            "pg_catalog.set_config('statement_timeout', {}, false)",
            quote::literal(statement)
        ));
    }
    calls.extend(
        unlock
            .iter()
            .map(|k| format!("pg_catalog.pg_advisory_unlock({k})")),
    );
    format!("SELECT {}", calls.join(", "))
}

/// The `lock_timeout` and `statement_timeout` values (as `set_config` takes them) for one step
/// of a recipe, from the session's own (`old`): a step whose lock blocks traffic runs under the
/// guard's short `lock_timeout` unless the session's own is shorter (and not 0); a long step
/// has its `statement_timeout` lifted when the guard is configured to.
pub fn step_settings(
    cfg: &GuardConfig,
    old: (&str, &str),
    guarded: bool,
    long_running: bool,
) -> (String, String) {
    let (old_lock, old_statement) = old;
    let lock = if guarded {
        let short = cfg.lock_timeout_ms.as_millis();
        match setting_ms(old_lock) {
            Some(own) if own > 0 && own < short => old_lock.to_owned(),
            _ => format!("{short}ms"),
        }
    } else {
        old_lock.to_owned()
    };
    let statement = if cfg.enabled && long_running && cfg.lift_statement_timeout {
        format!("{}ms", cfg.long_statement_timeout_ms.as_millis())
    } else {
        old_statement.to_owned()
    };
    (lock, statement)
}

/// Undoes a guarded `BEGIN …` Query whose attempt left the block open (retry of the whole).
pub const ROLLBACK: &str = "ROLLBACK";

/// Opens the block a `BEGIN …` Query given up on is failed in (see [`in_reopened_block`]).
pub const BEGIN: &str = "BEGIN";

/// `raise` (a raising statement) run as the server would have run a `BEGIN …` Query given up
/// on: in a block it opens ([`BEGIN`]), which the error leaves failed.
pub fn in_reopened_block(raise: &[u8]) -> Vec<u8> {
    let mut sql = format!("{BEGIN}; ").into_bytes();
    sql.extend_from_slice(raise);
    sql
}

pub const SAVEPOINT: &str = "SAVEPOINT ddlgate_guard";
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT ddlgate_guard";
pub const RELEASE_SAVEPOINT: &str = "RELEASE SAVEPOINT ddlgate_guard";

/// The sessions holding locks on `tables` (or, when no table is known, the oldest transactions
/// holding any relation lock in this database): pid, application, state, transaction age in
/// seconds, start of their current query, lock modes. At most five, oldest first.
pub fn blockers_query(tables: &[Name]) -> String {
    let filter = if tables.is_empty() {
        "l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"
            .to_owned()
    } else {
        let list: Vec<String> = tables
            .iter()
            .map(|t| format!("to_regclass({})", regclass_text(t)))
            .collect();
        format!(
            "(l.relation IN ({0}) OR l.relation IN (SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid IN ({0})))",
            list.join(", ")
        )
    };
    format!(
        "SELECT a.pid, COALESCE(a.application_name, ''), COALESCE(a.state, ''), \
         COALESCE(EXTRACT(EPOCH FROM (now() - a.xact_start))::bigint::text, ''), \
         LEFT(regexp_replace(COALESCE(a.query, ''), '\\s+', ' ', 'g'), 80), string_agg(DISTINCT l.mode, ', ') \
         FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid() AND {filter} \
         GROUP BY a.pid, a.application_name, a.state, a.xact_start, a.query ORDER BY a.xact_start NULLS LAST LIMIT 5"
    )
}

/// Whether a transaction older than `age_ms` holds a lock on `tables`.
pub fn old_transaction_query(tables: &[Name], age_ms: u128) -> Option<String> {
    if tables.is_empty() {
        return None;
    }
    let list: Vec<String> = tables
        .iter()
        .map(|t| format!("to_regclass({})", regclass_text(t)))
        .collect();
    Some(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.pid <> pg_catalog.pg_backend_pid() AND l.relation IN ({}) \
         AND a.xact_start < now() - interval '{age_ms} milliseconds')",
        list.join(", ")
    ))
}

/// One session in the way, as read by [`blockers_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub pid: String,
    pub application: String,
    pub state: String,
    pub xact_age_s: String,
    pub query: String,
    pub modes: String,
}

impl Blocker {
    /// From one row of [`blockers_query`].
    pub fn from_row(row: &[Option<String>]) -> Option<Blocker> {
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        if row.len() < 6 {
            return None;
        }
        Some(Blocker {
            pid: get(0),
            application: get(1),
            state: get(2),
            xact_age_s: get(3),
            query: get(4),
            modes: get(5),
        })
    }
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application.is_empty() {
            write!(f, " ({})", self.application)?;
        }
        if !self.state.is_empty() {
            write!(f, ", {}", self.state)?;
        }
        if !self.xact_age_s.is_empty() {
            write!(f, ", transaction open {} s", self.xact_age_s)?;
        }
        write!(f, ", holding {}", self.modes)?;
        if !self.query.is_empty() {
            write!(f, ", query: {}", self.query)?;
        }
        Ok(())
    }
}

/// Describes blockers for a message: "pid 12 (psql, idle in transaction, …); pid 13 …".
pub fn describe_blockers(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "no session holds a lock on the table any more (the blocker just finished, or \
                the lock was on another object)"
            .to_owned();
    }
    blockers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The wait before attempt `attempt + 1` (attempt counts from 1): `initial · 2^(attempt-1)`
/// capped at `max`, jittered uniformly to between half and all of it.
pub fn backoff(cfg: &GuardConfig, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let base = cfg
        .backoff_initial_ms
        .saturating_mul(1u32 << exp)
        .min(cfg.backoff_max_ms);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// What the guard does after attempt `attempt` of a statement timed out on its lock,
/// `elapsed` after the guard began: wait and try again, or give up. The whole retry policy, as
/// one pure function: the session only carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLockTimeout {
    /// Wait this long (watching the client and shutdown), then send the statement again.
    RetryAfter(Duration),
    /// `guard.max_attempts` reached, or the next wait would end past `guard.max_wait_ms`.
    GiveUp,
}

/// The retry policy (see [`AfterLockTimeout`]); `jitter` in `0..=1` picks the wait within
/// the backoff's range.
pub fn after_lock_timeout(
    cfg: &GuardConfig,
    attempt: u32,
    elapsed: Duration,
    jitter: f64,
) -> AfterLockTimeout {
    let wait = backoff(cfg, attempt, jitter);
    if attempt >= cfg.max_attempts || elapsed + wait > cfg.max_wait_ms {
        AfterLockTimeout::GiveUp
    } else {
        AfterLockTimeout::RetryAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::LexOptions;
    use crate::sql::parse::understand;

    fn plan(sql: &str) -> GuardPlan {
        let mut p = GuardPlan::default();
        let ddl = understand(sql.as_bytes(), 0, sql.len(), LexOptions::default());
        p.add(&ddl, |_| false);
        p
    }

    #[test]
    fn locks_by_statement() {
        let p = plan("ALTER TABLE s.t ADD COLUMN c int");
        assert_eq!(p.tables, vec![Name::new(Some("s"), "t")]);
        assert!(p.short_lock_timeout && p.access_exclusive && !p.long_running);
        let p = plan("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES r (id) NOT VALID");
        assert_eq!(p.tables, vec![Name::bare("t"), Name::bare("r")]);
        assert!(p.short_lock_timeout && !p.access_exclusive);
        let p = plan("CREATE INDEX CONCURRENTLY i ON t (x)");
        assert!(!p.short_lock_timeout && p.long_running);
        assert_eq!(p.tables, vec![Name::bare("t")]);
        let p = plan("ALTER TABLE t VALIDATE CONSTRAINT f");
        assert!(!p.short_lock_timeout && p.long_running);
        let p = plan("CREATE TABLE n (id int)");
        assert!(p.tables.is_empty() && !p.short_lock_timeout);
        let p = plan("CREATE TABLE n (id int REFERENCES t (id))");
        assert_eq!(p.tables, vec![Name::bare("t")]);
        assert!(p.short_lock_timeout);
        let p = plan("DO $$ BEGIN ALTER TABLE t ADD COLUMN c int; END $$");
        assert!(p.short_lock_timeout && p.tables.is_empty());
        let p = plan("CREATE VIEW v AS SELECT 1");
        assert!(!p.short_lock_timeout && p.tables.is_empty());
        let p = plan("LOCK TABLE a, b IN SHARE UPDATE EXCLUSIVE MODE");
        assert!(!p.short_lock_timeout && p.tables.len() == 2);
    }

    #[test]
    fn locks_of_statements_that_reach_tables_indirectly() {
        for sql in [
            "DROP TYPE mood CASCADE",
            "DROP SCHEMA s CASCADE",
            "DROP FUNCTION f(int) CASCADE",
            "DROP OWNED BY app",
            "ALTER TYPE t RENAME ATTRIBUTE a TO b",
        ] {
            let p = plan(sql);
            assert!(p.short_lock_timeout && p.tables.is_empty(), "{sql}");
        }
        let p = plan("DROP TYPE mood");
        assert!(
            !p.short_lock_timeout,
            "a plain DROP TYPE fails if anything depends on it"
        );
        for sql in [
            "ALTER VIEW t RENAME TO u",
            "ALTER MATERIALIZED VIEW t RENAME COLUMN a TO b",
            "CREATE RULE \"_RETURN\" AS ON SELECT TO t DO INSTEAD SELECT 1",
        ] {
            let p = plan(sql);
            assert_eq!(p.tables, vec![Name::bare("t")], "{sql}");
            assert!(p.short_lock_timeout && p.access_exclusive, "{sql}");
        }
        let p = plan("ALTER SCHEMA s RENAME TO t");
        assert!(p.is_empty());
        // Renames keep the guard their command tag had before they got a kind of their own.
        let p = plan("ALTER SEQUENCE s RENAME TO s2");
        assert_eq!(p.tables, vec![Name::bare("s")]);
        assert!(p.short_lock_timeout && p.access_exclusive);
        assert!(plan("ALTER FUNCTION f(int) RENAME TO g").is_empty());
        for sql in [
            "ALTER TYPE mood RENAME TO feeling",
            "ALTER DOMAIN email RENAME TO mail",
            "ALTER PROCEDURE p() RENAME TO q",
        ] {
            let p = plan(sql);
            assert!(p.short_lock_timeout && p.tables.is_empty(), "{sql}");
        }
        let p = plan("SELECT 'dblink_exec(' AS dblink_id");
        assert!(p.is_empty(), "a mere mention is ordinary traffic");
        let p = plan("SELECT dblink_exec('c', 'DROP TABLE t')");
        assert!(p.short_lock_timeout);
    }

    #[test]
    fn sql_quotes_names_from_clients() {
        let q = keys_query(&[Name::new(Some("we'ird"), "Ta\"ble")]).expect("query");
        assert!(q.contains(r#"to_regclass('"we''ird"."Ta""ble"')"#), "{q}");
        assert_eq!(quote::literal(r"a\b'c"), r"E'a\\b''c'");
        assert_eq!(
            restore_sql(Some(("0", "30s")), &[7]),
            "SELECT pg_catalog.set_config('lock_timeout', '0', false), pg_catalog.set_config('statement_timeout', '30s', false), pg_catalog.pg_advisory_unlock(7)"
        );
    }

    #[test]
    fn the_prelude_reads_settings_changes_them_and_tries_the_turn_in_one_statement() {
        let q = prelude_sql(Some(&Name::bare("t")), false, Some(2000), None);
        assert!(
            q.starts_with(
                "SELECT t.k, t.t, t.taken, o.l, o.s, pg_catalog.set_config('lock_timeout'"
            ),
            "{q}"
        );
        assert!(
            q.contains(
                "pg_catalog.pg_try_advisory_lock(1684302951::bigint * 4294967296 + v.t::bigint)"
            ),
            "{q}"
        );
        assert!(q.contains(r#"to_regclass('"t"')"#), "{q}");
        let q = prelude_sql(Some(&Name::bare("t")), true, None, Some(60_000));
        assert!(q.contains("pg_try_advisory_xact_lock(1684302951"), "{q}");
        assert!(
            q.contains("set_config('statement_timeout', '60000ms', false)"),
            "{q}"
        );
        let q = prelude_sql(None, false, Some(2000), None);
        assert!(
            q.starts_with("SELECT NULL::bigint, NULL::text, NULL::boolean, o.l, o.s,"),
            "{q}"
        );
        assert!(!q.contains("advisory"), "{q}");

        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            Prelude::from_row(&[
                s("42"),
                s("public.t"),
                s("t"),
                s("0"),
                s("30s"),
                s("2000ms")
            ]),
            Some(Prelude {
                settings: ("0".into(), "30s".into()),
                turn: Some((42, "public.t".into(), true)),
            })
        );
        assert_eq!(
            Prelude::from_row(&[s("42"), s("t"), s("f"), s("0"), s("0")]).and_then(|p| p.turn),
            Some((42, "t".into(), false))
        );
        assert_eq!(
            Prelude::from_row(&[None, None, None, s("1s"), s("0"), s("1s")]).map(|p| p.turn),
            Some(None)
        );
        assert_eq!(
            Prelude::from_row(&[s("x"), None, None, s("0"), s("0")]),
            None
        );
        assert_eq!(Prelude::from_row(&[None, None, None, None, s("0")]), None);
        assert_eq!(Prelude::from_row(&[s("1")]), None);
    }

    #[test]
    fn recipe_steps_take_the_shorter_lock_timeout() {
        let cfg = GuardConfig::default();
        let short = format!("{}ms", cfg.lock_timeout_ms.as_millis());
        assert_eq!(
            step_settings(&cfg, ("0", "0"), true, false),
            (short.clone(), "0".into())
        );
        assert_eq!(
            step_settings(&cfg, ("1ms", "5s"), true, false),
            ("1ms".into(), "5s".into())
        );
        assert_eq!(
            step_settings(&cfg, ("1ms", "5s"), false, false),
            ("1ms".into(), "5s".into())
        );
        let lifted = step_settings(&cfg, ("0", "5s"), true, true).1;
        if cfg.enabled && cfg.lift_statement_timeout {
            assert_eq!(
                lifted,
                format!("{}ms", cfg.long_statement_timeout_ms.as_millis())
            );
        } else {
            assert_eq!(lifted, "5s");
        }
        assert_eq!(in_reopened_block(b"DO $$ $$"), b"BEGIN; DO $$ $$");
    }

    #[test]
    fn time_settings_read_in_milliseconds() {
        assert_eq!(setting_ms("0"), Some(0));
        assert_eq!(setting_ms("250ms"), Some(250));
        assert_eq!(setting_ms("2s"), Some(2000));
        assert_eq!(setting_ms("1min"), Some(60_000));
        assert_eq!(setting_ms("1d"), Some(86_400_000));
        assert_eq!(setting_ms("x"), None);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let cfg = GuardConfig::default();
        assert_eq!(backoff(&cfg, 1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(&cfg, 2, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&cfg, 3, 0.0), Duration::from_millis(400));
        assert_eq!(backoff(&cfg, 30, 1.0), Duration::from_secs(5));
    }

    /// The retry policy on a paused clock: every attempt waits the whole lock_timeout (the
    /// worst case, a lock never released), then the policy's wait. With the defaults (2 s
    /// lock_timeout, 10 attempts, 200 ms doubling to 5 s, 60 s max_wait) the guard gives up
    /// after attempt 10, never past max_wait_ms; with a short max_wait it gives up earlier, by
    /// time.
    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_by_attempts_and_by_time() {
        async fn run(cfg: &GuardConfig, jitter: f64) -> (u32, Duration) {
            let began = tokio::time::Instant::now();
            let mut attempt = 0;
            loop {
                attempt += 1;
                tokio::time::sleep(cfg.lock_timeout_ms).await;
                match after_lock_timeout(cfg, attempt, began.elapsed(), jitter) {
                    AfterLockTimeout::RetryAfter(wait) => tokio::time::sleep(wait).await,
                    AfterLockTimeout::GiveUp => return (attempt, began.elapsed()),
                }
            }
        }
        let cfg = GuardConfig::default();
        for jitter in [0.0, 0.5, 1.0] {
            let (attempts, took) = run(&cfg, jitter).await;
            assert_eq!(attempts, cfg.max_attempts, "jitter {jitter}");
            assert!(took <= cfg.max_wait_ms, "jitter {jitter}: {took:?}");
        }
        // Full waits: 10 × 2 s of lock_timeout + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 4 × 5 s = 46.2 s.
        assert_eq!(run(&cfg, 1.0).await.1, Duration::from_millis(46_200));
        let short = GuardConfig {
            max_wait_ms: Duration::from_secs(7),
            ..GuardConfig::default()
        };
        let (attempts, took) = run(&short, 1.0).await;
        assert!(attempts < short.max_attempts, "{attempts}");
        assert!(took <= short.max_wait_ms, "{took:?}");
        // 2 + 0.2 + 2 + 0.4 + 2 = 6.6 s; another 0.8 s wait would end past 7 s.
        assert_eq!((attempts, took), (3, Duration::from_millis(6_600)));
    }
}
