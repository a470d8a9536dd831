//! "Created in this transaction", decided on what the server created — never on names.
//!
//! Locks on a table nobody else can see yet harm no one, so the rules and the lock guard exempt
//! tables created earlier in the client's transaction (the migration-tool pattern: `CREATE
//! TABLE n …; CREATE INDEX ON n (…); ALTER TABLE n ADD CONSTRAINT …`). Taking that from the
//! text walked around every rule: `CREATE TABLE IF NOT EXISTS victim …` creates nothing when
//! `victim` exists, a TEMP table of the same name makes `public.victim` look new, a CREATE
//! undone by `ROLLBACK TO SAVEPOINT` leaves its name "new". So in the proxy the exemption rests
//! on facts the server confirms, read by one side-channel query ([`Request::sql`]) on the
//! client's own connection, in its transaction, at the statement boundary before each DDL
//! message (the same place as the catalog facts, `session::ddl::facts`):
//!
//! 1. **Creating.** A `CREATE TABLE` (with or without `AS`; a `CREATE MATERIALIZED VIEW` is
//!    parsed as one) counts only if, at the read before its message, nothing
//!    was at its target (namespace OID and name, with the session's `search_path`; the temp
//!    schema for `TEMP`). Its target is remembered as *pending*.
//! 2. **Confirmed.** At the next read (before the next DDL message of the transaction), the
//!    relation now at a pending target is taken as created by this transaction only if its
//!    `pg_class` row was written by one of the transaction's own xids (its `xmin` is a
//!    transaction id this backend holds a lock on: the top-level xid and every live
//!    subtransaction's; a row from a rolled-back savepoint is gone, another session's has
//!    another xid). `xmin` alone proves nothing — an ALTER or a rename also rewrites the row —
//!    which is why only a target that was empty before the CREATE can be confirmed, and why
//!    pending targets are dropped when anything that could move an existing relation there ran
//!    in between (a rename or `SET SCHEMA` in the same message, `ROLLBACK TO`, a DDL message
//!    decided without a read, anything ddlgate cannot see through: DO, CALL, EXECUTE, …).
//!    The relation's **OID** is what is remembered.
//! 3. **Exempt.** A later statement's name counts as new only if, at the read before its
//!    message, it resolved (with the session's `search_path`, temp schema first) to a
//!    remembered OID whose row is still the transaction's own — so a `ROLLBACK TO` that undid
//!    the CREATE also undoes the exemption.
//!
//! One read serves a whole multi-statement Query, so inside one message a name can also count
//! as new when it resolved to *nothing* at the read and an earlier `CREATE TABLE` of the same
//! message (without `IF NOT EXISTS`, so it either created exactly that target or failed and
//! ended the Query) targets exactly what the name will resolve to. Any statement that can
//! change what names resolve to or what the facts say — SET/RESET of a setting outside a short
//! harmless list, `set_config`, DISCARD, a rename, `SET SCHEMA`, `CREATE TEMP`, `ROLLBACK TO`,
//! transaction end, anything not understood — makes every later statement of the message be
//! decided with no exemption and without the catalog facts read before it (rules then assume
//! the worst case). Two statements change resolution in a way that is followed instead:
//! - a DROP (without CASCADE) voids the exemption of names that resolved, at the read, to a
//!   relation it dropped — only those may now resolve further down the search path — and the
//!   catalog facts of every later statement; with CASCADE, or a name not asked, every name that
//!   resolved to something loses its exemption, and after a DROP TABLE no partition (its
//!   parent's DROP takes it along, unnamed) and no renamed table below stays new;
//! - `ALTER TABLE n RENAME TO y` (alone) of a table new to this transaction moves nothing
//!   existing: the new table is followed under `y` (its pending target too). Later, `s.y` is
//!   it when `s` is its schema; an unqualified `y` is it when at the read nothing of that name
//!   was on the search path and its schema is, or when the first `y` was in the creation
//!   schema where the rename put it (the rename succeeded, so that relation had gone).
//!
//! A DDL statement makes the facts of later statements about the same relation (or column)
//! stale; and a statement that may write rows (anything but SHOW, LISTEN, …) makes every table
//! size read before it unknown, so no small-table exemption rests on it — a table created
//! empty (not from a query) earlier in the message, with nothing written since, is known to be
//! empty ([`Scope::empty_new`]). When in doubt, nothing is new.
//!
//! Known limits: `SELECT … INTO t` creates a table ddlgate does not follow (SELECTs are never
//! parsed), so `t` is not new; inside one Query, a concurrent session that renames a schema or a table into
//! an earlier place on the search path in the milliseconds between the read and the statement
//! is not seen (the CREATE's own uniqueness check covers its exact target only); SQL run by
//! functions ddlgate cannot see (`SELECT f()`) is not followed; a name that is not ASCII, or
//! past `catalog.max_resolved_names`, is never new.
//!
//! Offline, `ddlgate check` has no server to ask: it keeps the textual notion (a table named in
//! an earlier CREATE TABLE of the file), which a linter can do no better than.

use std::collections::HashSet;

use serde::Deserialize;

use crate::sql::lexer::{LexOptions, Lexer, StatementSpan, Token, TokenKind};
use crate::sql::prefilter::StatementClass;
use crate::sql::quote;
use crate::sql::statement::{AlterOp, ConstraintKind, Ddl, DdlKind, Name};

/// Where a `CREATE TABLE` puts its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A schema, by OID (a later schema rename changes nothing), and the table name.
    Schema { nsp: u32, name: String },
    /// The session's own temp schema (created on first use, so not known by OID beforehand).
    Temp { name: String },
}

/// What the session knows about relations its current transaction created.
#[derive(Debug, Default)]
pub struct Tracker {
    /// OIDs of relations confirmed created in this transaction (step 2 of the module docs).
    created: HashSet<u32>,
    /// Targets of CREATE TABLE statements sent since the last read, to confirm at the next.
    pending: Vec<Target>,
}

impl Tracker {
    /// The transaction ended: nothing it created is new any more.
    pub fn clear(&mut self) {
        self.created.clear();
        self.pending.clear();
    }

    /// Nothing remembered: no read is needed unless a message creates a table.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.pending.is_empty()
    }

    /// Relations confirmed created in this transaction.
    pub fn created_count(&self) -> usize {
        self.created.len()
    }
}

/// The read for one message: the names its DDL statements touch, and the pending targets.
#[derive(Debug, Clone)]
pub struct Request {
    /// Names as written, each asked once, in the order of the answer's `names`.
    names: Vec<Name>,
    /// Pending targets, in the order of the answer's `pending`.
    pending: Vec<Target>,
    /// The read-only query; it cannot fail on any input (names are literals, compared as
    /// `name`s or resolved by `to_regclass`, which returns NULL for what does not exist).
    pub sql: String,
}

/// What the read said, for one message.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    names: Vec<(Name, Resolved)>,
    /// Each pending target asked, with the OID of the relation there if its row is the
    /// transaction's own.
    pending: Vec<(Target, Option<u32>)>,
    /// The effective search path (`current_schemas(true)`), as namespace OIDs.
    path: Vec<u32>,
    /// Where an unqualified CREATE TABLE creates (`current_schemas(false)[1]`), if anywhere.
    creation: Option<u32>,
}

/// What one name resolved to at the read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Resolved {
    /// The relation the name resolves to (a qualified name: in that schema; an unqualified
    /// one: through the search path, temp schema first).
    pub oid: Option<u32>,
    /// That relation's `pg_class` row was written by this transaction.
    pub mine: bool,
    /// A qualified name's schema OID.
    pub nsp: Option<u32>,
    /// An unqualified name: the relation of that name in the creation schema.
    pub at_creation: Option<u32>,
    /// An unqualified name: the relation of that name in the session's temp schema.
    pub at_temp: Option<u32>,
    /// The relation is a partition: a DROP TABLE of its parent drops it too, unnamed.
    #[serde(default)]
    pub part: bool,
    /// The relation is an index: its table (`pg_index.indrelid`), as the server resolves it.
    #[serde(default)]
    pub table: Option<u32>,
    /// That table's `pg_class` row was written by this transaction.
    #[serde(default)]
    pub table_mine: bool,
}

#[derive(Deserialize)]
struct RawIdentity {
    creation: Option<u32>,
    path: Vec<u32>,
    names: Vec<Resolved>,
    pending: Vec<Option<u32>>,
}

impl Identity {
    /// Parses the read's JSON answer to `request`; `None` when it does not fit (then nothing
    /// counts as new).
    pub fn parse(request: &Request, json: &str) -> Option<Identity> {
        let raw: RawIdentity = match serde_json::from_str(json) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable created-in-transaction facts; nothing counts as new");
                return None;
            }
        };
        if raw.names.len() != request.names.len() || raw.pending.len() != request.pending.len() {
            return None;
        }
        Some(Identity {
            names: request.names.iter().cloned().zip(raw.names).collect(),
            pending: request.pending.iter().cloned().zip(raw.pending).collect(),
            path: raw.path,
            creation: raw.creation,
        })
    }

    /// A hand-made answer, for tests and tools: these names resolved so, this search path and
    /// creation schema, no pending targets.
    pub fn of(names: Vec<(Name, Resolved)>, path: Vec<u32>, creation: Option<u32>) -> Identity {
        Identity {
            names,
            pending: Vec::new(),
            path,
            creation,
        }
    }

    fn get(&self, name: &Name) -> Option<&Resolved> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// Where a CREATE TABLE of `name` would create, and whether something is already there.
    fn target(&self, name: &Name, temporary: bool) -> Option<(Target, bool)> {
        let r = self.get(name)?;
        match (&name.schema, temporary) {
            (None, true) => Some((
                Target::Temp {
                    name: name.name.clone(),
                },
                r.at_temp.is_some(),
            )),
            (None, false) => Some((
                Target::Schema {
                    nsp: self.creation?,
                    name: name.name.clone(),
                },
                r.at_creation.is_some(),
            )),
            // `CREATE TEMP TABLE s.n` is an error unless `s` is the temp schema; not followed.
            (Some(_), true) => None,
            (Some(_), false) => Some((
                Target::Schema {
                    nsp: r.nsp?,
                    name: name.name.clone(),
                },
                r.oid.is_some(),
            )),
        }
    }
}

/// The relations a statement's rules and lock guard may ask "created in this transaction?"
/// about, as written. A name not listed is never new (the safe default for a new rule).
pub fn relation_names(ddl: &Ddl) -> Vec<&Name> {
    let mut out: Vec<&Name> = Vec::new();
    match &ddl.kind {
        DdlKind::CreateIndex { table, .. } => out.push(table),
        DdlKind::DropIndex { names, .. }
        | DdlKind::DropTable { names, .. }
        | DdlKind::Truncate { names, .. } => out.extend(names),
        DdlKind::Reindex { name: Some(n), .. } => out.push(n),
        DdlKind::AlterIndex { name, .. } | DdlKind::RefreshMaterializedView { name, .. } => {
            out.push(name)
        }
        DdlKind::CreateTable {
            partition_of,
            references,
            ..
        } => {
            out.extend(partition_of);
            out.extend(references);
        }
        DdlKind::AlterTable { name, ops, .. } => {
            out.push(name);
            for op in ops {
                match op {
                    AlterOp::AttachPartition { partition }
                    | AlterOp::DetachPartition { partition, .. } => out.push(partition),
                    AlterOp::AddConstraint(c) => {
                        if let ConstraintKind::ForeignKey { references } = &c.kind {
                            out.push(references);
                        }
                    }
                    AlterOp::AddColumn(c) => {
                        for k in &c.constraints {
                            if let ConstraintKind::ForeignKey { references } = k {
                                out.push(references);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        DdlKind::Vacuum { tables, .. } | DdlKind::Lock { tables, .. } => out.extend(tables),
        DdlKind::Cluster { table: Some(t) } => out.push(t),
        _ => {}
    }
    out
}

/// The read a message needs, or `None` when nothing in it can be new and it creates nothing
/// (the common case: no round trip). At most `max_names` names are asked; the rest are not
/// new.
pub fn request<'a>(
    tracker: &Tracker,
    ddls: impl IntoIterator<Item = &'a Ddl>,
    max_names: usize,
) -> Option<Request> {
    let mut names: Vec<Name> = Vec::new();
    let mut creates = false;
    for ddl in ddls {
        if let DdlKind::CreateTable { name, .. } = &ddl.kind {
            creates = true;
            push_name(&mut names, name, max_names);
        }
        for n in relation_names(ddl) {
            push_name(&mut names, n, max_names);
        }
    }
    if !creates && tracker.is_empty() {
        return None;
    }
    let pending = tracker.pending.clone();
    if names.is_empty() && pending.is_empty() {
        // Nothing to resolve, nothing to confirm (`CREATE SCHEMA s` after a CREATE TABLE).
        return None;
    }
    let sql = query(&names, &pending);
    Some(Request {
        names,
        pending,
        sql,
    })
}

/// Only ASCII names are asked about: the query is sent as UTF-8 whatever the session's
/// `client_encoding`, and a name the server read differently would resolve to nothing — which
/// here would look like "free". A non-ASCII name is therefore never new (the rules apply).
fn push_name(names: &mut Vec<Name>, name: &Name, max: usize) {
    let storable = |s: &str| !s.is_empty() && !s.contains('\0') && s.is_ascii();
    if names.len() < max
        && storable(&name.name)
        && name.schema.as_deref().is_none_or(storable)
        && !names.contains(name)
    {
        names.push(name.clone());
    }
}

/// `'…'::name`: PostgreSQL truncates it to NAMEDATALEN exactly as it truncates the identifier
/// in the statement.
fn name_literal(s: &str) -> String {
    format!("{}::pg_catalog.name", quote::literal(s))
}

/// The relation `oid` has a `pg_class` row written by one of this transaction's xids.
fn mine(oid: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class k JOIN xids ON xids.xid = k.xmin WHERE k.oid = {oid})"
    )
}

/// `'table', …, 'table_mine', …` for the relation `oid`: when it is an index, its table
/// (`pg_index.indrelid`) and whether that table's row is this transaction's own.
fn index_table(oid: &str) -> String {
    format!(
        "'table', (SELECT x.indrelid::pg_catalog.int8 FROM pg_catalog.pg_index x WHERE x.indexrelid = {oid}), \
'table_mine', {}",
        mine(&format!(
            "(SELECT x.indrelid FROM pg_catalog.pg_index x WHERE x.indexrelid = {oid})"
        ))
    )
}

fn query(names: &[Name], pending: &[Target]) -> String {
    let names: Vec<String> = names.iter().map(name_json).collect();
    let pending: Vec<String> = pending
        .iter()
        .map(|t| {
            let (nsp, name) = match t {
                Target::Schema { nsp, name } => (format!("{nsp}::pg_catalog.oid"), name),
                Target::Temp { name } => ("pg_catalog.pg_my_temp_schema()".to_owned(), name),
            };
            format!(
                "(SELECT c.oid::pg_catalog.int8 FROM pg_catalog.pg_class c WHERE c.relnamespace = {nsp} \
AND c.relname = {} AND {})",
                name_literal(name),
                mine("c.oid")
            )
        })
        .collect();
    format!(
        "/* ddlgate created-in-transaction facts */ WITH \
xids AS (SELECT l.transactionid AS xid FROM pg_catalog.pg_locks l WHERE l.locktype = 'transactionid' \
AND l.mode = 'ExclusiveLock' AND l.granted AND l.pid = pg_catalog.pg_backend_pid()), \
creation AS (SELECT (SELECT n.oid FROM pg_catalog.pg_namespace n \
WHERE n.nspname = (pg_catalog.current_schemas(false))[1]) AS oid) \
SELECT pg_catalog.json_build_object(\
'creation', (SELECT creation.oid::pg_catalog.int8 FROM creation), \
'path', (SELECT coalesce(pg_catalog.json_agg(n.oid::pg_catalog.int8 ORDER BY s.ord), '[]'::pg_catalog.json) \
FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS s(nspname, ord) \
JOIN pg_catalog.pg_namespace n ON n.nspname = s.nspname), \
'names', pg_catalog.json_build_array({names}), \
'pending', pg_catalog.json_build_array({pending}))",
        names = names.join(", "),
        pending = pending.join(", ")
    )
}

/// One name's resolution. A qualified name is looked up in the catalogs directly (the schema
/// by name, never an error for a schema the user may not use); an unqualified one through
/// `to_regclass`, exactly as the statement will resolve it.
fn name_json(name: &Name) -> String {
    let at = |nsp: &str| {
        format!(
            "(SELECT c.oid::pg_catalog.int8 FROM pg_catalog.pg_class c WHERE c.relnamespace = {nsp} AND c.relname = {})",
            name_literal(&name.name)
        )
    };
    match &name.schema {
        None => format!(
            "(SELECT pg_catalog.json_build_object('oid', r.oid::pg_catalog.int8, 'mine', {mine}, 'nsp', NULL, \
'at_creation', {at_creation}, 'at_temp', {at_temp}, 'part', coalesce((SELECT k.relispartition \
FROM pg_catalog.pg_class k WHERE k.oid = r.oid), false), {table}) \
FROM (SELECT pg_catalog.to_regclass({regclass}::pg_catalog.text)::pg_catalog.oid AS oid) r)",
            mine = mine("r.oid"),
            table = index_table("r.oid"),
            at_creation = at("(SELECT creation.oid FROM creation)"),
            at_temp = at("pg_catalog.pg_my_temp_schema()"),
            regclass = quote::literal(&quote::ident(&name.name)),
        ),
        Some(schema) => format!(
            "(SELECT pg_catalog.json_build_object('oid', c.oid::pg_catalog.int8, 'mine', {mine}, \
'nsp', ns.oid::pg_catalog.int8, 'at_creation', NULL, 'at_temp', NULL, \
'part', coalesce(c.relispartition, false), {table}) \
FROM (SELECT 1) d LEFT JOIN pg_catalog.pg_namespace ns ON ns.nspname = {schema} \
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = {name})",
            mine = mine("c.oid"),
            table = index_table("c.oid"),
            schema = name_literal(schema),
            name = name_literal(&name.name),
        ),
    }
}

/// What a statement does to the facts read before its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Effect {
    /// Changes neither name resolution nor the settings the facts depend on.
    Neutral,
    /// Removes relations (DROP): a name that resolved to one may now resolve further down the
    /// search path, so later statements lose the facts and the exemptions read for names that
    /// resolved to something. A name that resolved to nothing still resolves to nothing (or to
    /// a table this message created), so a CREATE of the same message still counts (`DROP
    /// TABLE IF EXISTS x; CREATE TABLE x …; CREATE INDEX ON x …`).
    Drops,
    /// May change what names resolve to or what the facts say: later statements of the
    /// message get no exemption and no facts.
    Stale,
    /// May also move an existing relation to where a CREATE was (a rename, `SET SCHEMA`,
    /// `ROLLBACK TO`, anything ddlgate cannot see through): the message's CREATE targets are
    /// not confirmed either.
    Moves,
}

/// Settings a `SET`/`RESET` may change without affecting name resolution or any catalog fact
/// (`search_path`, `TimeZone`, the role and everything else count as affecting them).
const HARMLESS_SETTINGS: &[&str] = &[
    "lock_timeout",
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "application_name",
    "client_min_messages",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "synchronous_commit",
    "transaction",
    "constraints",
];

fn session_effect(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> Effect {
    let mut words = Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment());
    let _set_or_reset = words.next();
    let mut setting = words.next();
    if setting.is_some_and(|t| t.is_word(sql, "SESSION") || t.is_word(sql, "LOCAL")) {
        setting = words.next();
    }
    match setting {
        Some(t) if t.kind == TokenKind::Word => {
            let harmless = HARMLESS_SETTINGS.iter().any(|s| t.is_word(sql, s));
            // `SET SESSION CHARACTERISTICS AS TRANSACTION …` also only sets transaction modes.
            if harmless || t.is_word(sql, "CHARACTERISTICS") {
                Effect::Neutral
            } else {
                Effect::Stale
            }
        }
        _ => Effect::Stale,
    }
}

fn dml_effect(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> Effect {
    let mut tokens = Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment());
    let Some(first) = tokens.next() else {
        return Effect::Neutral;
    };
    // Statements that run SQL ddlgate does not see (a prepared statement, a procedure, a
    // library's initialiser, an EXPLAIN ANALYZE of any of them).
    if ["EXECUTE", "CALL", "LOAD", "EXPLAIN"]
        .iter()
        .any(|w| first.is_word(sql, w))
    {
        return Effect::Moves;
    }
    if first.is_word(sql, "DISCARD") {
        return Effect::Stale;
    }
    let changes_settings =
        crate::sql::side_effects::may_call_set_config(sql, span.start, span.end, lex);
    if changes_settings {
        Effect::Stale
    } else {
        Effect::Neutral
    }
}

/// Everything but the statements that certainly write no rows may write some (a SELECT may
/// call a function that does).
fn may_write(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> bool {
    let first = Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .find(|t| !t.is_comment());
    !first.is_some_and(|t| {
        [
            "SHOW",
            "LISTEN",
            "NOTIFY",
            "UNLISTEN",
            "CLOSE",
            "PREPARE",
            "DEALLOCATE",
            "CHECKPOINT",
            "TABLE",
        ]
        .iter()
        .any(|w| t.is_word(sql, w))
    })
}

fn ddl_effect(ddl: &Ddl) -> Effect {
    match &ddl.kind {
        DdlKind::CreateTable {
            temporary: false, ..
        }
        | DdlKind::CreateIndex { .. } => Effect::Neutral,
        // A temp table shadows every same-named relation for unqualified names.
        DdlKind::CreateTable {
            temporary: true, ..
        } => Effect::Stale,
        DdlKind::AlterTable { ops, .. } => {
            if ops
                .iter()
                .any(|op| matches!(op, AlterOp::RenameTable { .. } | AlterOp::SetSchema))
            {
                Effect::Moves
            } else {
                Effect::Neutral
            }
        }
        // Frees a name: an unqualified one may now resolve further down the search path.
        DdlKind::DropTable { .. } | DdlKind::DropIndex { .. } => Effect::Drops,
        DdlKind::Other { tag }
            if ["COMMENT", "GRANT", "REVOKE", "CREATE SEQUENCE"].contains(&tag.as_str()) =>
        {
            Effect::Neutral
        }
        _ => Effect::Moves,
    }
}

/// `ddl` changes neither what names resolve to nor what the facts of other relations say
/// (what `rules::body::facts_plan` asks of a statement inside a `DO` body before the next gets
/// facts). This says nothing about what is created: a `DO` block stays opaque here.
pub(crate) fn keeps_facts(ddl: &Ddl) -> bool {
    ddl_effect(ddl) == Effect::Neutral
}

/// `sql[start..end]` (a CREATE TABLE) is made from a query, which runs whatever it calls.
pub(crate) fn made_from_query(sql: &[u8], start: usize, end: usize, lex: LexOptions) -> bool {
    from_query_in(
        sql,
        Lexer::at(sql, start, lex).take_while(|t| t.start < end),
    )
}

/// What earlier DDL statements of a message (or of a `DO` body, `rules::body::facts_plan`)
/// changed, by bare relation name: one column (`Some`) or anything about the relation
/// (`None`). Facts read before the message about it are stale.
#[derive(Debug, Default)]
pub(crate) struct Touched(HashSet<(String, Option<String>)>);

impl Touched {
    /// Nothing `ddl` names (its relations, the columns it changes) was changed.
    pub(crate) fn holds(&self, ddl: &Ddl) -> bool {
        let columns = column_names(ddl);
        relation_names(ddl).iter().all(|n| {
            !self.0.contains(&(n.name.clone(), None))
                && columns
                    .iter()
                    .all(|c| !self.0.contains(&(n.name.clone(), Some((*c).to_owned()))))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records what `ddl` may change.
    pub(crate) fn touch(&mut self, ddl: &Ddl) {
        match &ddl.kind {
            DdlKind::AlterTable { name, ops, .. } => {
                for op in ops {
                    let column = match op {
                        AlterOp::AddColumn(c) => Some(c.name.clone()),
                        AlterOp::DropColumn { name } => Some(name.clone()),
                        AlterOp::AlterColumnType { column, .. }
                        | AlterOp::SetNotNull { column }
                        | AlterOp::DropNotNull { column }
                        | AlterOp::SetDefault { column }
                        | AlterOp::DropDefault { column } => Some(column.clone()),
                        AlterOp::RenameColumn { from, to } => {
                            self.0.insert((name.name.clone(), Some(to.clone())));
                            Some(from.clone())
                        }
                        _ => None,
                    };
                    self.0.insert((name.name.clone(), column));
                }
                for n in relation_names(ddl).into_iter().skip(1) {
                    self.0.insert((n.name.clone(), None));
                }
            }
            _ => {
                for n in relation_names(ddl) {
                    self.0.insert((n.name.clone(), None));
                }
                if let DdlKind::CreateTable { name, .. }
                | DdlKind::CreateIndex {
                    name: Some(name), ..
                } = &ddl.kind
                {
                    self.0.insert((name.name.clone(), None));
                }
            }
        }
    }
}

/// One message's walk through its statements (see the module docs).
#[derive(Debug)]
pub struct Scope {
    identity: Option<Identity>,
    /// A statement that may change resolution or facts has run earlier in the message.
    stale: bool,
    /// A DROP has run earlier in the message (see [`Effect::Drops`]).
    dropped: bool,
    /// A statement that may write rows has run earlier in the message: table sizes read
    /// before it no longer hold (an INSERT of millions of rows, then an index build that the
    /// read thought small).
    wrote: bool,
    /// A statement that may move a relation runs in the message: its creates are not pending.
    moves: bool,
    /// The transaction ended inside the message.
    ended: bool,
    /// CREATE TABLE statements of this message that create exactly their target (no IF NOT
    /// EXISTS, target empty at the read, no change of resolution before them), and whether the
    /// table they create is empty (not made from a query).
    creates: Vec<(Name, Target, bool)>,
    /// Targets to confirm at the next read.
    candidates: Vec<Target>,
    /// Where tables new to this transaction were renamed to earlier in the message (`ALTER
    /// TABLE new RENAME TO y`; schema OID and new name): the rename succeeded or ended the
    /// Query, so what is there now is the new table.
    renamed: Vec<(u32, String)>,
    /// OIDs of the relations the message's DROPs removed (as resolved at the read): only names
    /// that resolved to one of them may now resolve elsewhere.
    dropped_oids: Vec<u32>,
    /// A DROP removed something not known by OID (CASCADE, a name not asked): every name that
    /// resolved to something loses its exemption.
    dropped_unknown: bool,
    /// A DROP TABLE ran: it may have taken partitions along.
    dropped_tables: bool,
    /// What earlier DDL statements of the message changed, by bare relation name: one column
    /// (`Some`) or anything about the relation (`None`). Facts read before the message about
    /// it are stale.
    touched: Touched,
    /// A DDL statement was met; its decision used this scope.
    saw_ddl: bool,
    /// A DDL statement ran (or was replaced) earlier in the message: it may have created a
    /// dependent of anything (a view on a function, a column of a type), so dependency facts
    /// read before the message no longer hold.
    ran_ddl: bool,
    /// How the message is lexed.
    lex: LexOptions,
}

impl Scope {
    /// Starts a message: confirms the pending targets the read answered for.
    pub fn begin(
        tracker: &mut Tracker,
        identity: Option<Identity>,
        max_created: usize,
        lex: LexOptions,
    ) -> Scope {
        if let Some(id) = &identity {
            for (_, oid) in &id.pending {
                if let Some(oid) = oid
                    && tracker.created.len() < max_created
                {
                    tracker.created.insert(*oid);
                }
            }
            tracker.pending.clear();
        }
        Scope {
            identity,
            stale: false,
            dropped: false,
            wrote: false,
            moves: false,
            ended: false,
            creates: Vec::new(),
            candidates: Vec::new(),
            renamed: Vec::new(),
            dropped_oids: Vec::new(),
            dropped_unknown: false,
            dropped_tables: false,
            touched: Touched::default(),
            saw_ddl: false,
            ran_ddl: false,
            lex,
        }
    }

    /// The names of `ddl` that are relations created in this transaction, for its rules and
    /// its lock guard.
    pub fn new_names(&mut self, tracker: &mut Tracker, ddl: &Ddl) -> HashSet<Name> {
        if !self.saw_ddl {
            self.saw_ddl = true;
            if self.identity.is_none() {
                // A DDL message decided without a read: what it does cannot be followed, so
                // targets still pending can never be confirmed.
                tracker.pending.clear();
            }
        }
        let mut out = HashSet::new();
        let Some(id) = self.identity.as_ref().filter(|_| !self.stale) else {
            return out;
        };
        let drops_index = matches!(ddl.kind, DdlKind::DropIndex { .. });
        for name in relation_names(ddl) {
            let Some(r) = id.get(name) else { continue };
            let new = self.renamed_here(id, name, r)
                || match r.oid {
                    Some(_) => {
                        self.confirmed(tracker, r)
                            || (drops_index && self.index_on_confirmed(tracker, r))
                    }
                    None => self.created_here(id, name, r).is_some(),
                };
            if new {
                out.insert(name.clone());
            }
        }
        out
    }

    /// The CREATE of this message that `name` (which resolved to nothing at the read) now
    /// finds, and whether that table was created empty.
    fn created_here(&self, id: &Identity, name: &Name, r: &Resolved) -> Option<bool> {
        if r.oid.is_some() {
            return None;
        }
        self.creates
            .iter()
            .find(|(created, target, _)| {
                let Target::Schema { nsp, name: n } = target else {
                    return false;
                };
                // Qualified: the same schema. Unqualified: nothing of that name was on the
                // search path at the read, so it finds the new table if its schema is on it.
                created.name == name.name
                    && *n == name.name
                    && match &name.schema {
                        Some(_) => r.nsp == Some(*nsp),
                        None => id.path.contains(nsp),
                    }
            })
            .map(|(_, _, empty)| *empty)
    }

    /// `name` now finds a table new to this transaction that an earlier statement of the
    /// message renamed to it. Qualified: the same schema. Unqualified: at the read nothing of
    /// that name was on the search path and the schema is on it, or the first relation of that
    /// name was in the creation schema (no temp one) and the rename went there — it succeeded,
    /// so that relation had left.
    fn renamed_here(&self, id: &Identity, name: &Name, r: &Resolved) -> bool {
        self.renamed.iter().any(|(nsp, to)| {
            *to == name.name
                && match &name.schema {
                    Some(_) => r.nsp == Some(*nsp),
                    None => match r.oid {
                        None => id.path.contains(nsp),
                        Some(oid) => {
                            r.at_creation == Some(oid)
                                && r.at_temp.is_none()
                                && id.creation == Some(*nsp)
                        }
                    },
                }
        })
    }

    /// The relation a name resolved to at the read is one this transaction created (its OID
    /// confirmed, its row still the transaction's own), and no DROP of this message may have
    /// removed it: not dropped by name, nothing dropped with CASCADE or unasked, and not a
    /// partition after any DROP TABLE (a parent's DROP takes its partitions along).
    /// `r` is an index (it resolved to a relation at the read) whose table is confirmed new
    /// to this transaction, exactly as [`Scope::confirmed`] decides it for the table itself:
    /// dropping it locks only that table, which no other session can see.
    fn index_on_confirmed(&self, tracker: &Tracker, r: &Resolved) -> bool {
        r.oid.is_some()
            && r.table.is_some_and(|table| {
                self.confirmed(
                    tracker,
                    &Resolved {
                        oid: Some(table),
                        mine: r.table_mine,
                        // Whether it is a partition was not read: after a DROP TABLE in
                        // the message, assume it may have gone with its parent.
                        part: true,
                        ..Resolved::default()
                    },
                )
            })
    }

    fn confirmed(&self, tracker: &Tracker, r: &Resolved) -> bool {
        r.oid.is_some_and(|oid| {
            let maybe_dropped = self.dropped_unknown
                || self.dropped_oids.contains(&oid)
                || (r.part && self.dropped_tables);
            r.mine && tracker.created.contains(&oid) && !maybe_dropped
        })
    }

    /// The schema OID of the relation `name` resolved to at the read, when it is known to be a
    /// table new to this transaction (`new_names` said so) and not temporary.
    fn new_table_schema(&self, tracker: &Tracker, id: &Identity, name: &Name) -> Option<u32> {
        let r = id.get(name)?;
        if let Some((nsp, _)) = self.renamed.iter().find(|(_, to)| *to == name.name)
            && self.renamed_here(id, name, r)
        {
            return Some(*nsp);
        }
        match r.oid {
            None => self
                .creates
                .iter()
                .find_map(|(created, target, _)| match target {
                    Target::Schema { nsp, .. } if created.name == name.name => {
                        self.created_here(id, name, r).map(|_| *nsp)
                    }
                    _ => None,
                }),
            Some(oid) => {
                if !self.confirmed(tracker, r) {
                    return None;
                }
                match &name.schema {
                    Some(_) => r.nsp,
                    None if r.at_creation == Some(oid) && r.at_temp.is_none() => id.creation,
                    None => None,
                }
            }
        }
    }

    /// A rename of a table new to this transaction (`ALTER TABLE n RENAME TO y`, alone): it
    /// moves nothing existing, so the message's other facts stand; the new table is followed
    /// under its new name (and a pending CREATE target with it). `false`: not such a rename.
    fn follow_rename(&mut self, tracker: &Tracker, ddl: &Ddl) -> bool {
        let DdlKind::AlterTable { name, ops, .. } = &ddl.kind else {
            return false;
        };
        let [AlterOp::RenameTable { to }] = ops.as_slice() else {
            return false;
        };
        if self.stale || to.is_empty() || to.len() >= 64 || !to.is_ascii() {
            return false;
        }
        let Some(id) = self.identity.as_ref() else {
            return false;
        };
        let Some(nsp) = self.new_table_schema(tracker, id, name) else {
            return false;
        };
        // A CREATE of this message: its pending target moves with it.
        for t in &mut self.candidates {
            if let Target::Schema { nsp: n, name: c } = t
                && *n == nsp
                && *c == name.name
            {
                *c = to.clone();
            }
        }
        for (_, target, _) in &mut self.creates {
            if let Target::Schema { nsp: n, name: c } = target
                && *n == nsp
                && *c == name.name
            {
                // The old name finds nothing now; the new one is followed by `renamed`.
                *c = String::new();
            }
        }
        self.renamed
            .retain(|(n, t)| !(*n == nsp && *t == name.name));
        self.renamed.push((nsp, to.clone()));
        self.touched.0.insert((to.clone(), None));
        true
    }

    /// `name` is a table an earlier CREATE TABLE of this message created empty (not from a
    /// query), and nothing that may write rows ran since: it holds no rows. (A table confirmed
    /// by an earlier message is sized by the catalog read instead.)
    pub fn empty_new(&self, name: &Name) -> bool {
        let Some(id) = self
            .identity
            .as_ref()
            .filter(|_| !self.stale && !self.wrote)
        else {
            return false;
        };
        id.get(name)
            .and_then(|r| self.created_here(id, name, r))
            .unwrap_or(false)
    }

    /// Nothing earlier in the message could have changed anything the facts read before it
    /// say (no setting, resolution, DDL, write, transaction end): a `DO` block's statements
    /// get their facts only then (`analysis::decide`).
    pub fn untouched(&self) -> bool {
        !(self.stale || self.dropped || self.wrote || self.moves || self.ended || self.ran_ddl)
            && self.touched.is_empty()
    }

    /// Whether the catalog facts read before the message still hold for `ddl`: nothing earlier
    /// in the message changed settings or resolution, the relations it names as a whole, or
    /// the columns it names.
    pub fn facts_hold(&self, ddl: &Ddl) -> bool {
        !(self.stale || self.dropped) && self.touched.holds(ddl)
    }

    /// Records what a statement did, after its decision. `ddl` is set for DDL candidates, and
    /// `tokens` when the split kept the statement's tokens (then it is not lexed again);
    /// `runs` is false when ddlgate replaced the statement (it was blocked or rewritten).
    #[allow(clippy::too_many_arguments)]
    pub fn after(
        &mut self,
        tracker: &mut Tracker,
        sql: &[u8],
        span: &StatementSpan,
        class: StatementClass,
        ddl: Option<&Ddl>,
        tokens: Option<&[Token]>,
        runs: bool,
    ) {
        let lex = self.lex;
        let effect = match (class, ddl) {
            (StatementClass::Transaction, _) => {
                let mut words = Lexer::at(sql, span.start, lex)
                    .take_while(|t| t.start < span.end)
                    .filter(|t| !t.is_comment());
                let first = words.next();
                let second = words.next();
                let is = |w: &str| first.is_some_and(|t| t.is_word(sql, w));
                if is("ROLLBACK") && second.is_some_and(|t| t.is_word(sql, "TO")) {
                    // Undoes creates (and renames) after the savepoint: what was pending
                    // may now hold something else.
                    tracker.pending.clear();
                    Effect::Moves
                } else if ["COMMIT", "END", "ROLLBACK", "ABORT"].iter().any(|w| is(w)) {
                    self.ended = true;
                    Effect::Moves
                } else {
                    Effect::Neutral
                }
            }
            (StatementClass::Session, _) => session_effect(sql, span, lex),
            (StatementClass::Dml, _) => {
                self.wrote |= may_write(sql, span, lex);
                dml_effect(sql, span, lex)
            }
            (StatementClass::DdlCandidate, Some(ddl)) => {
                self.ran_ddl = true;
                if let DdlKind::CreateTable {
                    name, temporary, ..
                } = &ddl.kind
                    && runs
                    && !self.stale
                    && let Some(id) = &self.identity
                    && let Some((target, taken)) = id.target(name, *temporary)
                    && !taken
                {
                    // The statement's tokens when the split kept them, else lexed here.
                    let words = || -> Box<dyn Iterator<Item = Token> + '_> {
                        match tokens {
                            Some(t) => Box::new(t.iter().copied()),
                            None => Box::new(
                                Lexer::at(sql, span.start, lex).take_while(|t| t.start < span.end),
                            ),
                        }
                    };
                    if !if_not_exists_in(sql, words()) && !*temporary {
                        let empty = !from_query_in(sql, words());
                        self.creates.push((name.clone(), target.clone(), empty));
                    }
                    self.candidates.push(target);
                }
                self.touch(ddl);
                if runs && self.follow_rename(tracker, ddl) {
                    Effect::Neutral
                } else {
                    self.note_drops(ddl);
                    ddl_effect(ddl)
                }
            }
            (StatementClass::DdlCandidate, None) => Effect::Moves,
            // The server rejects the message before running any of it; assume the worst anyway.
            (StatementClass::NotACommand, _) => Effect::Moves,
        };
        if effect == Effect::Drops {
            self.dropped = true;
        }
        if effect >= Effect::Stale {
            self.stale = true;
        }
        if effect == Effect::Moves {
            self.moves = true;
        }
    }

    /// The facts to decide with: `facts` as read, or — after a statement that may have written
    /// rows — a copy with every table size unknown (never small); and after any statement that
    /// may have created or changed objects (any DDL, anything that may write or change
    /// resolution), without the dependency facts of `DROP … CASCADE` (a `CREATE VIEW` on a
    /// function earlier in the same Query would not be among them).
    pub fn sized<'f>(
        &self,
        facts: Option<&'f crate::catalog::Facts>,
        copy: &'f mut Option<crate::catalog::Facts>,
    ) -> Option<&'f crate::catalog::Facts> {
        let facts = facts?;
        let dependents_hold =
            !(self.ran_ddl || self.wrote || self.stale || self.dropped || self.moves);
        if !self.wrote && (dependents_hold || facts.drops.is_empty()) {
            return Some(facts);
        }
        let mut f = facts.clone();
        if self.wrote {
            for r in f.relation.iter_mut().chain(f.referenced.iter_mut()) {
                r.forget_size();
            }
        }
        if !dependents_hold {
            f.drops.clear();
        }
        Some(copy.insert(f))
    }

    /// The facts to decide an ALTER TABLE with when its table was created empty earlier in
    /// this message ([`Scope::empty_new`]): the read before the message found nothing there,
    /// but the table is known to exist with no rows. Otherwise `facts` unchanged.
    pub fn with_empty_new<'f>(
        &self,
        ddl: &Ddl,
        facts: Option<&'f crate::catalog::Facts>,
        copy: &'f mut Option<crate::catalog::Facts>,
    ) -> Option<&'f crate::catalog::Facts> {
        let DdlKind::AlterTable { name, .. } = &ddl.kind else {
            return facts;
        };
        if !self.empty_new(name) {
            return facts;
        }
        let mut f = facts.cloned().unwrap_or_default();
        f.relation = Some(crate::catalog::Relation {
            exists: true,
            rows: Some(0),
            bytes: Some(0),
            ..crate::catalog::Relation::missing(name.clone())
        });
        Some(copy.insert(f))
    }

    /// Records which relations a DROP removes, for [`Scope::new_names`].
    fn note_drops(&mut self, ddl: &Ddl) {
        let (DdlKind::DropTable { names, cascade } | DdlKind::DropIndex { names, cascade, .. }) =
            &ddl.kind
        else {
            return;
        };
        if matches!(ddl.kind, DdlKind::DropTable { .. }) {
            self.dropped_tables = true;
            // A table followed under a new name may be among what it dropped (a partition
            // whose parent it is): renamed names are no longer followed.
            self.renamed.clear();
        }
        let Some(id) = self.identity.as_ref().filter(|_| !*cascade && !self.stale) else {
            self.dropped_unknown = true;
            return;
        };
        for name in names {
            match id.get(name) {
                Some(r) => self.dropped_oids.extend(r.oid),
                None => self.dropped_unknown = true,
            }
        }
    }

    /// Records what `ddl` may change, for [`Scope::facts_hold`].
    fn touch(&mut self, ddl: &Ddl) {
        self.touched.touch(ddl);
    }

    /// Ends the message: its CREATE targets become pending unless something in it could have
    /// moved an existing relation there.
    pub fn finish(self, tracker: &mut Tracker) {
        if self.ended {
            tracker.clear();
        } else if !self.moves {
            tracker.pending.extend(self.candidates);
        }
    }
}

/// The columns an ALTER TABLE names (what its column facts are about).
fn column_names(ddl: &Ddl) -> Vec<&str> {
    let DdlKind::AlterTable { ops, .. } = &ddl.kind else {
        return Vec::new();
    };
    ops.iter()
        .filter_map(|op| match op {
            AlterOp::AddColumn(c) => Some(c.name.as_str()),
            AlterOp::DropColumn { name } => Some(name.as_str()),
            AlterOp::AlterColumnType { column, .. }
            | AlterOp::SetNotNull { column }
            | AlterOp::DropNotNull { column }
            | AlterOp::SetDefault { column }
            | AlterOp::DropDefault { column } => Some(column.as_str()),
            AlterOp::RenameColumn { from, .. } => Some(from.as_str()),
            _ => None,
        })
        .collect()
}

/// `CREATE [GLOBAL|LOCAL] [TEMP|TEMPORARY|UNLOGGED] TABLE IF NOT EXISTS …`, `CREATE
/// MATERIALIZED VIEW IF NOT EXISTS …`.
#[cfg(test)]
fn if_not_exists(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> bool {
    if_not_exists_in(
        sql,
        Lexer::at(sql, span.start, lex).take_while(|t| t.start < span.end),
    )
}

/// [`if_not_exists`] over the statement's tokens.
fn if_not_exists_in(sql: &[u8], tokens: impl Iterator<Item = Token>) -> bool {
    let mut words = tokens.filter(|t| !t.is_comment());
    words
        .by_ref()
        .take(6)
        .any(|t| t.is_word(sql, "TABLE") || t.is_word(sql, "VIEW"))
        && words.next().is_some_and(|t| t.is_word(sql, "IF"))
}

/// The CREATE makes its table from a query (`CREATE TABLE … AS`, `CREATE MATERIALIZED VIEW`):
/// a word `AS` outside parentheses. Such a table may hold any number of rows at once.
#[cfg(test)]
fn from_query(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> bool {
    from_query_in(
        sql,
        Lexer::at(sql, span.start, lex).take_while(|t| t.start < span.end),
    )
}

/// [`from_query`] over the statement's tokens.
fn from_query_in(sql: &[u8], tokens: impl Iterator<Item = Token>) -> bool {
    let mut depth = 0usize;
    for t in tokens {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            TokenKind::Word if depth == 0 && t.is_word(sql, "AS") => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::split_statements;
    use crate::sql::parse;
    use crate::sql::prefilter;

    const LEX: LexOptions = LexOptions {
        standard_conforming_strings: true,
        encoding: crate::sql::lexer::ClientEncoding::AsciiSafe,
    };

    /// Runs one message through a scope as `analysis` does; returns the new names of each DDL
    /// statement.
    fn message(tracker: &mut Tracker, sql: &str, identity: Option<Identity>) -> Vec<Vec<Name>> {
        let sql = sql.as_bytes();
        let mut scope = Scope::begin(tracker, identity, 100, LEX);
        let mut out = Vec::new();
        for span in split_statements(sql, LEX).iter().filter(|s| !s.is_empty()) {
            let class = prefilter::classify(sql, span);
            let ddl = (class == StatementClass::DdlCandidate)
                .then(|| parse::understand(sql, span.start, span.end, LEX));
            if let Some(ddl) = &ddl {
                let mut names: Vec<Name> = scope.new_names(tracker, ddl).into_iter().collect();
                names.sort();
                out.push(names);
            }
            scope.after(tracker, sql, span, class, ddl.as_ref(), None, true);
        }
        scope.finish(tracker);
        out
    }

    /// The read before `sql`, answered with `json` (`names` and `pending` in request order).
    fn read(tracker: &Tracker, sql: &str, names: &str, pending: &str) -> Option<Identity> {
        let ddls: Vec<Ddl> = split_statements(sql.as_bytes(), LEX)
            .iter()
            .filter(|s| {
                !s.is_empty()
                    && prefilter::classify(sql.as_bytes(), s) == StatementClass::DdlCandidate
            })
            .map(|s| parse::understand(sql.as_bytes(), s.start, s.end, LEX))
            .collect();
        let req = request(tracker, &ddls, 100)?;
        assert!(
            req.sql
                .starts_with("/* ddlgate created-in-transaction facts */")
        );
        // An empty `names`: every name asked is free.
        let free = vec![FREE; req.names.len()].join(", ");
        let names = if names.is_empty() {
            free.as_str()
        } else {
            names
        };
        let json = format!(
            r#"{{"creation": 2200, "path": [11, 2200], "names": [{names}], "pending": [{pending}]}}"#
        );
        Identity::parse(&req, &json)
    }

    const FREE: &str =
        r#"{"oid": null, "mine": false, "nsp": null, "at_creation": null, "at_temp": null}"#;
    const NEW: &str =
        r#"{"oid": 777, "mine": true, "nsp": null, "at_creation": 777, "at_temp": null}"#;

    #[test]
    fn a_create_is_confirmed_by_the_next_read_and_then_exempt() {
        let mut t = Tracker::default();
        let sql = "CREATE TABLE n (id int)";
        let id = read(&t, sql, "", "");
        message(&mut t, sql, id);
        assert_eq!(t.pending.len(), 1);
        let sql = "CREATE INDEX ON n (id)";
        let id = read(&t, sql, NEW, "777");
        assert_eq!(message(&mut t, sql, id), [vec![Name::bare("n")]]);
        assert!(t.created.contains(&777));
        // Its row no longer the transaction's own (rolled back): not new.
        let gone =
            r#"{"oid": 777, "mine": false, "nsp": null, "at_creation": 777, "at_temp": null}"#;
        let id = read(&t, sql, gone, "");
        assert_eq!(message(&mut t, sql, id), [Vec::<Name>::new()]);
        // Nothing asked, nothing known: not new.
        assert_eq!(message(&mut t, sql, None), [Vec::<Name>::new()]);
    }

    #[test]
    fn pending_targets_are_dropped_when_something_could_move_a_table_there() {
        for (between, first) in [
            // A rename in the CREATE's own message.
            (
                "",
                "CREATE TABLE IF NOT EXISTS n (id int); ALTER TABLE victim RENAME TO n",
            ),
            // ROLLBACK TO in a message of its own (no read before it).
            ("ROLLBACK TO SAVEPOINT s", "CREATE TABLE n (id int)"),
            // A DDL message decided without a read.
            ("ALTER TABLE victim RENAME TO n", "CREATE TABLE n (id int)"),
        ] {
            let mut t = Tracker::default();
            let id = read(&t, first, "", "");
            message(&mut t, first, id);
            if !between.is_empty() {
                message(&mut t, between, None);
            }
            assert!(t.pending.is_empty(), "{first} / {between}");
        }
    }

    #[test]
    fn inside_one_message_only_an_exact_create_counts() {
        let mut t = Tracker::default();
        let sql = "DROP TABLE IF EXISTS n; CREATE TABLE n (id int); CREATE INDEX ON n (id)";
        let id = read(&t, sql, "", "");
        assert_eq!(
            message(&mut t, sql, id),
            [vec![], vec![], vec![Name::bare("n")]]
        );
        // A name that resolved to a new table loses its exemption after a DROP: it may now
        // resolve further down the search path.
        let mut t = Tracker::default();
        t.created.insert(777);
        let sql = "DROP TABLE n; DROP TABLE n";
        let id = read(&t, sql, NEW, "");
        assert_eq!(message(&mut t, sql, id), [vec![Name::bare("n")], vec![]]);
        // Anything changing resolution voids the CREATE for what follows.
        let mut t = Tracker::default();
        let sql = "CREATE TABLE n (id int); SET search_path = s; CREATE INDEX ON n (id)";
        let id = read(&t, sql, "", "");
        assert_eq!(message(&mut t, sql, id), [vec![], vec![]]);
        let mut t = Tracker::default();
        let sql = "CREATE TABLE IF NOT EXISTS n (id int); CREATE INDEX ON n (id)";
        let id = read(&t, sql, "", "");
        assert_eq!(message(&mut t, sql, id), [vec![], vec![]]);
    }

    #[test]
    fn a_new_table_renamed_into_place_stays_new_and_drops_void_only_what_they_drop() {
        // One message: create, drop the old table (OID 500), rename the new one into place.
        let mut t = Tracker::default();
        let sql = "CREATE TABLE n (id int); DROP TABLE acc; ALTER TABLE n RENAME TO acc; \
                   CREATE INDEX ON acc (id)";
        let old =
            r#"{"oid": 500, "mine": false, "nsp": null, "at_creation": 500, "at_temp": null}"#;
        let id = read(&t, sql, &format!("{FREE}, {old}"), "");
        assert_eq!(
            message(&mut t, sql, id),
            [
                vec![],
                vec![],
                vec![Name::bare("n")],
                vec![Name::bare("acc")]
            ]
        );
        // The pending target moved with the rename.
        assert_eq!(
            t.pending,
            [Target::Schema {
                nsp: 2200,
                name: "acc".into()
            }]
        );
        // A table confirmed earlier (777) survives a DROP of another table in the message.
        let mut t = Tracker::default();
        t.created.insert(777);
        let sql = "DROP TABLE acc; ALTER TABLE n RENAME TO acc; CREATE INDEX ON acc (id)";
        let id = read(&t, sql, &format!("{old}, {NEW}"), "");
        assert_eq!(
            message(&mut t, sql, id),
            [vec![], vec![Name::bare("n")], vec![Name::bare("acc")]]
        );
        // A partition goes with its parent's DROP TABLE, unnamed.
        let mut t = Tracker::default();
        t.created.insert(777);
        let part = r#"{"oid": 777, "mine": true, "nsp": null, "at_creation": 777, "at_temp": null, "part": true}"#;
        let sql = "DROP TABLE par; CREATE INDEX ON acc (id)";
        let id = read(&t, sql, &format!("{FREE}, {part}"), "");
        assert_eq!(message(&mut t, sql, id), [vec![], vec![]]);
        // CASCADE may drop what is not named: nothing that resolved to something is new.
        let mut t = Tracker::default();
        t.created.insert(777);
        let sql = "DROP TABLE acc CASCADE; ALTER TABLE n RENAME TO acc";
        let id = read(&t, sql, &format!("{old}, {NEW}"), "");
        assert_eq!(message(&mut t, sql, id), [vec![], vec![]]);
        // An existing table renamed: nothing after it is new, nothing pending is confirmed.
        let mut t = Tracker::default();
        let sql = "CREATE TABLE n (id int); ALTER TABLE acc RENAME TO m; CREATE INDEX ON n (id)";
        let id = read(&t, sql, &format!("{FREE}, {old}"), "");
        assert_eq!(message(&mut t, sql, id), [vec![], vec![], vec![]]);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn tables_made_from_a_query_are_not_empty() {
        let from = |sql: &str| {
            let span = split_statements(sql.as_bytes(), LEX)[0];
            from_query(sql.as_bytes(), &span, LEX)
        };
        assert!(from("CREATE TABLE c AS SELECT 1"));
        assert!(from("CREATE TABLE c (a) AS VALUES (1)"));
        assert!(from("CREATE MATERIALIZED VIEW m AS SELECT 1"));
        assert!(!from(
            "CREATE TABLE c (a int GENERATED ALWAYS AS (1) STORED)"
        ));
        assert!(!from("CREATE TABLE c (a int)"));
    }

    #[test]
    fn statement_effects() {
        let effect = |sql: &str| {
            let span = split_statements(sql.as_bytes(), LEX)[0];
            match prefilter::classify(sql.as_bytes(), &span) {
                StatementClass::Session => session_effect(sql.as_bytes(), &span, LEX),
                StatementClass::Dml => dml_effect(sql.as_bytes(), &span, LEX),
                _ => ddl_effect(&parse::understand(
                    sql.as_bytes(),
                    span.start,
                    span.end,
                    LEX,
                )),
            }
        };
        assert_eq!(effect("DROP TABLE t"), Effect::Drops);
        for sql in [
            "SET lock_timeout = '1s'",
            "SET LOCAL statement_timeout TO 0",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SELECT 1",
            "INSERT INTO t VALUES ('set_config')",
            "CREATE INDEX ON t (x)",
            "ALTER TABLE t ADD COLUMN c int",
            "COMMENT ON TABLE t IS 'x'",
        ] {
            assert_eq!(effect(sql), Effect::Neutral, "{sql}");
        }
        for sql in [
            "SET search_path = a",
            "SET TIME ZONE 'Europe/Berlin'",
            "SET SESSION TimeZone = 'UTC'",
            "SET ROLE other",
            "SET SESSION AUTHORIZATION other",
            "RESET ALL",
            "SELECT set_config('search_path', 'a', false)",
            "SELECT pg_catalog.\"set_config\"('TimeZone', 'x', false)",
            "DISCARD TEMP",
            "CREATE TEMP TABLE t (x int)",
        ] {
            assert_eq!(effect(sql), Effect::Stale, "{sql}");
        }
        for sql in [
            "EXECUTE p",
            "CALL proc()",
            "ALTER TABLE t RENAME TO u",
            "ALTER TABLE t SET SCHEMA s",
            "ALTER SCHEMA s RENAME TO u",
            "DO $$ BEGIN END $$",
            "CREATE SCHEMA s",
        ] {
            assert_eq!(effect(sql), Effect::Moves, "{sql}");
        }
    }

    #[test]
    fn if_not_exists_is_read_from_the_tokens() {
        let ine = |sql: &str| {
            let span = split_statements(sql.as_bytes(), LEX)[0];
            if_not_exists(sql.as_bytes(), &span, LEX)
        };
        assert!(ine("CREATE TABLE IF NOT EXISTS t (x int)"));
        assert!(ine("create global temporary table if not exists t (x int)"));
        assert!(ine("CREATE /* c */ UNLOGGED TABLE IF NOT EXISTS t (x int)"));
        assert!(!ine("CREATE TABLE t (x int)"));
        assert!(!ine("CREATE TABLE \"if\" (x int)"));
        assert!(ine("CREATE MATERIALIZED VIEW IF NOT EXISTS m AS SELECT 1"));
        assert!(!ine("CREATE MATERIALIZED VIEW m AS SELECT 1"));
    }
}
