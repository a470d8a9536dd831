//! Catalog facts about the objects a DDL statement touches, read from the live database.
//!
//! The rules are pure functions of a statement and its [`crate::rules::Context`]; the facts
//! here enter through `Context::catalog`. `None` means "not known" (offline `ddlgate check`, or
//! no catalog read for this statement): rules then assume the worst case, as a static linter
//! must. With the facts, the verdicts most linters get wrong become exact: a `varchar(20)` →
//! `varchar(50)` change that rewrites nothing, a DEFAULT calling a user function declared
//! STABLE, a `SET NOT NULL` already proven by a valid CHECK, an index build on a ten-row table,
//! a partitioned parent where `CONCURRENTLY` is rejected.
//!
//! The flow, for one statement:
//!
//! 1. [`facts_query`] turns the statement model into **one** read-only `SELECT` returning one
//!    row with one column: a JSON document (`json_build_object` / `json_agg`). `None` when no
//!    rule needs facts for the statement, so ordinary DDL costs no round trip.
//! 2. The session runs it on the client's own upstream connection, in the client's
//!    transaction (simple protocol, text result) — so it sees tables created earlier in that
//!    transaction, the client's `search_path` and `TimeZone`, exactly as the statement will.
//! 3. [`parse_facts`] turns the JSON into [`Facts`]; the session adds its [`Thresholds`].
//!
//! Why the query is safe to run there:
//!
//! - It only reads catalogs: no locks beyond ACCESS SHARE on catalogs, except
//!   `pg_total_relation_size`, which opens the table, its indexes and its TOAST table with
//!   ACCESS SHARE (held, like any lock, to the end of the client's transaction). That lock
//!   conflicts only with ACCESS EXCLUSIVE, and the size is only asked for when `pg_locks`
//!   shows no other session holding or awaiting ACCESS EXCLUSIVE on any of them (a plain
//!   `REINDEX` holds it on an index); otherwise the size is reported unknown and the table
//!   counts as large. A lock requested in the instant between that check and the measurement
//!   can still make the query wait; the session's timeouts bound that.
//! - It cannot fail on user input: names are resolved with `to_regclass` (missing objects give
//!   `exists: false`, never an error), every name is passed as a correctly quoted literal
//!   ([`quote::literal`] of a [`quote::ident`]-quoted qualified name), and names PostgreSQL
//!   could not hold (empty, NUL) are never sent. An error here would abort the client's
//!   transaction, so this matters more than elegance.
//! - It needs PostgreSQL 10 or later (`relkind 'p'`, `relispartition`) — every supported
//!   release. Its text is UTF-8: send it as is only when the session's `client_encoding` is
//!   UTF8 or the text is ASCII (`str::is_ascii`).
//!
//! The JSON document (every key always present; `null` where a fact does not apply):
//!
//! ```text
//! { "timezone": "UTC",
//!   "relation": null | { "asked_schema", "asked_name", "exists", "schema", "name", "relkind",
//!       "table_schema", "table_name",            -- an index's table
//!       "rows", "max_rows", "bytes",              -- the table (or whole partition tree)
//!       "populated", "refresh_index",             -- materialized views
//!       "partitions": [{ "schema", "name", "parent_schema", "parent_name", "relkind", "level" }] },
//!   "columns":   [{ "name", "exists", "type", "type_oid", "typmod", "not_null", "nullable", "collation",
//!                   "checks": [{ "name", "definition" }], "indexes": [{ "name", "plain" }] }],
//!   "functions": [{ "name", "volatility": ["i" | "s" | "v", …] }],
//!   "referenced": [{ "asked_schema", "asked_name", "exists", "schema", "name", "relkind",
//!                    "table_schema", "table_name",  -- an index's table (DROP INDEX a, b)
//!                    "rows", "max_rows", "bytes" }],
//!   "types":     [{ "asked", "oid", "citext" }],
//!   "drops":     [{ "asked_schema", "asked_name", "candidates", "anywhere",   -- DROP … CASCADE
//!                   "dependents", "escapes", "names": ["view v", …] }] }
//! ```

use serde::Deserialize;

use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind, matching_paren};
use crate::sql::quote;
use crate::sql::statement::{
    AddConstraint, AlterOp, ConstraintKind, Ddl, DdlKind, DropObject, Name, ReindexTarget,
};

/// What the catalog says about the objects one statement touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The relation the statement acts on: the table of `CREATE INDEX` and `ALTER TABLE`, the
    /// index of `DROP INDEX` (the first one named; the others are in `referenced`) and
    /// `REINDEX INDEX`, the materialized view of `REFRESH`.
    pub relation: Option<Relation>,
    /// The columns the statement names (`ALTER COLUMN … TYPE`, `SET NOT NULL`) on `relation`.
    pub columns: Vec<ColumnFacts>,
    /// Every function called by a column DEFAULT the statement adds.
    pub functions: Vec<FunctionFacts>,
    /// Tables referenced by foreign keys the statement adds, the table an `ATTACH PARTITION`
    /// attaches (it is scanned), and the second and later indexes of a `DROP INDEX a, b, …`
    /// (sized by their tables): identity and size, read like `relation`'s.
    pub referenced: Vec<Relation>,
    /// The types `ALTER COLUMN … TYPE` names, resolved by the server with the session's
    /// search_path (`to_regtype`): a name written like a built-in may be a user's domain.
    pub types: Vec<TypeFacts>,
    /// The session's `TimeZone` setting: a `timestamp` ↔ `timestamptz` change rewrites the
    /// table unless it is UTC (PostgreSQL 12+).
    pub timezone: Option<String>,
    /// For `DROP <kind> … CASCADE`: each object named, in order, with what depends on it
    /// (`pg_depend`). Empty when not read.
    pub drops: Vec<DropFacts>,
    /// Where "small" ends. Not read from the catalog: the session fills it from its config.
    pub thresholds: Thresholds,
}

impl Facts {
    /// The facts about `name`, if these facts were read for it. Rules look relations up by
    /// the name in the statement they check, so facts read for another statement (a DO block
    /// around it, say) are never applied to the wrong object.
    pub fn relation_for(&self, name: &Name) -> Option<&Relation> {
        self.relation.as_ref().filter(|r| r.asked == *name)
    }

    /// The facts about `column` of `table`, if these facts were read for that table.
    pub fn column(&self, table: &Name, column: &str) -> Option<&ColumnFacts> {
        self.relation_for(table)?;
        self.columns.iter().find(|c| c.name == column)
    }

    /// The volatility of every overload of the function `name` (any schema), when the
    /// catalog found at least one. `None` when the name was not asked about or no function of
    /// that name exists (`coalesce`, `cast` and the like are syntax, not functions).
    pub fn volatility(&self, name: &str) -> Option<&[Volatility]> {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.volatility.as_slice())
            .filter(|v| !v.is_empty())
    }

    /// The facts about a table referenced by a foreign key, if read.
    pub fn referenced(&self, name: &Name) -> Option<&Relation> {
        self.referenced.iter().find(|r| r.asked == *name)
    }
}

/// One object of a `DROP <kind> … CASCADE`, as the server resolves it, and what CASCADE would
/// drop beyond what RESTRICT drops.
///
/// The server resolves the name to OIDs — every object of that name on the search path (or
/// in the schema written), never a guess from the text — and walks `pg_depend` from each one
/// as `DROP … RESTRICT` would: through the dependencies PostgreSQL drops without CASCADE
/// (`a`uto, `i`nternal, `e`xtension membership, `x` auto-extension, `P`/`S` partition: a
/// type's array type, a domain's constraints, an extension's members, …). A **dependent** is
/// an object outside that set with any other dependency (`n`ormal, or a kind this ddlgate
/// does not know) on something in it: exactly what RESTRICT refuses for and CASCADE drops —
/// a column of the type (or of its array type), a view or trigger using the function, a table
/// in the schema, a column of an extension's type. An **escape** is an object in the set that
/// is an internal or extension part of something outside it (PostgreSQL would then drop or
/// refuse for the owner): never taken as harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropFacts {
    /// The name as the statement wrote it (folded).
    pub asked: Name,
    /// How many objects the name may mean: on the search path (functions: every overload),
    /// or in the schema written. Each is checked on its own.
    pub candidates: u64,
    /// An object of that name exists in some schema (any), for telling "missing" apart.
    pub anywhere: bool,
    /// Dependents over all candidates (see above).
    pub dependents: u64,
    /// Escapes over all candidates (see above).
    pub escapes: u64,
    /// A few of the dependents, as `pg_describe_object` names them.
    pub names: Vec<String>,
}

/// One type name, as the server resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFacts {
    /// The name as ddlgate reads the statement's type ([`type_lookup_name`]), e.g.
    /// `character varying`, `pg_catalog.text`, `citext`.
    pub asked: String,
    /// `to_regtype(asked)`: `None` when no such type is visible.
    pub oid: Option<u32>,
    /// The type is the `citext` extension's own (its OID differs per database).
    pub citext: bool,
}

/// Where a table stops being small enough for a blocking operation on it to be harmless.
///
/// A scan or rewrite under lock (an index build, a constraint validation, a table rewrite) on a
/// table under both limits finishes in milliseconds; on anything else it may hold its lock for
/// minutes. See [`Relation::is_small`] for how the two are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Rows below which a table is small: the estimate (`pg_class.reltuples`), or for a table
    /// never analyzed the exact heap bound ([`Relation::max_rows`]). Default 10 000.
    pub small_table_rows: u64,
    /// Total size in bytes (`pg_total_relation_size`: heap, TOAST and indexes) below which a
    /// table is small. Default 10 MiB.
    pub small_table_bytes: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            small_table_rows: 10_000,
            small_table_bytes: 10 * 1024 * 1024,
        }
    }
}

/// `pg_class.relkind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    /// `r`
    Table,
    /// `p`
    PartitionedTable,
    /// `v`
    View,
    /// `m`
    MaterializedView,
    /// `i`
    Index,
    /// `I`: an index on a partitioned table.
    PartitionedIndex,
    /// `S`
    Sequence,
    /// `f`
    ForeignTable,
    /// `t`
    Toast,
    /// `c`
    CompositeType,
    /// A relkind this version of ddlgate does not know.
    Other(char),
}

impl RelKind {
    pub fn from_char(c: char) -> RelKind {
        match c {
            'r' => RelKind::Table,
            'p' => RelKind::PartitionedTable,
            'v' => RelKind::View,
            'm' => RelKind::MaterializedView,
            'i' => RelKind::Index,
            'I' => RelKind::PartitionedIndex,
            'S' => RelKind::Sequence,
            'f' => RelKind::ForeignTable,
            't' => RelKind::Toast,
            'c' => RelKind::CompositeType,
            other => RelKind::Other(other),
        }
    }

    /// A partitioned table or an index on one: no storage of its own, and `CONCURRENTLY`
    /// (CREATE INDEX, DROP INDEX) is rejected on it.
    pub fn is_partitioned(self) -> bool {
        matches!(self, RelKind::PartitionedTable | RelKind::PartitionedIndex)
    }
}

/// One relation, as `to_regclass` resolved the statement's name for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// The name as the statement wrote it (folded): what rules look it up by.
    pub asked: Name,
    /// `to_regclass` found it.
    pub exists: bool,
    /// Its schema-qualified name, when it exists.
    pub name: Option<Name>,
    pub kind: Option<RelKind>,
    /// For an index: the table it indexes.
    pub table: Option<Name>,
    /// Estimated rows of the table (for an index, of its table; for a partitioned table, the
    /// sum over its leaf partitions). `None` when unknown: never analyzed (`reltuples = -1` on
    /// PostgreSQL 14+, `reltuples = 0` with `relpages = 0` before 14, which also reads so after
    /// a vacuum of an empty table) in any leaf.
    pub rows: Option<u64>,
    /// The most rows the table's heap (main fork, summed over the partition tree) can hold as
    /// measured now: its pages × PostgreSQL's `MaxHeapTuplesPerPage` (line pointers per page,
    /// `(block_size - 24) / 28`, 291 for 8 kB pages). Exact whatever the statistics say, so it
    /// decides "small" for tables never analyzed (every table a previous migration created).
    /// `None` when not measured, under the same `pg_locks` precaution as `bytes`.
    pub max_rows: Option<u64>,
    /// Total size in bytes of the table with its TOAST and indexes, summed over the whole
    /// partition tree; for an index, its table's. `None` when unknown, including when another
    /// session held or awaited ACCESS EXCLUSIVE on it (measuring would have waited).
    pub bytes: Option<u64>,
    /// For a table (or an index's table) that is partitioned: every partition below it, sub-
    /// partitions included, parents before children — what the partitioned-index recipe
    /// (`ON ONLY` + `CONCURRENTLY` per leaf + `ATTACH`) walks.
    pub partitions: Vec<Partition>,
    /// For a materialized view: `pg_class.relispopulated` (false after `WITH NO DATA`).
    pub populated: Option<bool>,
    /// For a materialized view: a unique index `REFRESH … CONCURRENTLY` can use (unique,
    /// immediate, valid, b-tree, no WHERE, plain columns only), if there is one.
    pub refresh_index: Option<String>,
}

impl Relation {
    /// What the catalog says about a name it does not know: nothing but "it does not exist".
    /// The starting point for facts built by hand (tests, tools).
    pub fn missing(asked: Name) -> Relation {
        Relation {
            asked,
            exists: false,
            name: None,
            kind: None,
            table: None,
            rows: None,
            max_rows: None,
            bytes: None,
            partitions: Vec::new(),
            populated: None,
            refresh_index: None,
        }
    }

    /// A partitioned table, or an index on one.
    pub fn is_partitioned(&self) -> bool {
        self.kind.is_some_and(RelKind::is_partitioned)
    }

    /// Known to exist and known to be under both thresholds. Unknown sizes are never small.
    ///
    /// Bytes must be measured (`pg_total_relation_size`, never taken when another session held
    /// or awaited ACCESS EXCLUSIVE, so "not measured because of a lock" is never small) and under
    /// `small_table_bytes`. Rows are under `small_table_rows` when the heap cannot hold that many
    /// ([`Relation::max_rows`], exact: an empty heap of 0 pages holds none), or else when the
    /// planner's estimate (`reltuples`) says so; a table never analyzed has no estimate, and
    /// then only the heap bound can make it small.
    pub fn is_small(&self, t: &Thresholds) -> bool {
        self.exists
            && self.bytes.is_some_and(|b| b < t.small_table_bytes)
            && (self.max_rows.is_some_and(|m| m < t.small_table_rows)
                || self.rows.is_some_and(|r| r < t.small_table_rows))
    }

    /// Forgets every size: after a statement that may have written rows, sizes read before it
    /// no longer hold (never small again until measured anew).
    pub fn forget_size(&mut self) {
        self.rows = None;
        self.max_rows = None;
        self.bytes = None;
    }

    /// The leaf partitions (those holding data), for the partitioned-index recipe.
    pub fn leaf_partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.iter().filter(|p| p.is_leaf())
    }

    /// Size and rows for messages: "about 1200000 rows, 85 MiB", or "size unknown".
    pub fn size_description(&self) -> String {
        match (self.rows, self.bytes) {
            (Some(r), Some(b)) => format!("about {r} rows, {}", human_bytes(b)),
            (None, Some(b)) => human_bytes(b),
            (Some(r), None) => format!("about {r} rows"),
            (None, None) => "size unknown".to_owned(),
        }
    }
}

/// One partition in a partition tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub name: Name,
    /// The partitioned table it is attached to.
    pub parent: Name,
    pub kind: RelKind,
    /// 1 for a direct partition of the table, 2 for a sub-partition, …
    pub level: u32,
}

impl Partition {
    /// Holds data (anything but a partitioned table).
    pub fn is_leaf(&self) -> bool {
        self.kind != RelKind::PartitionedTable
    }
}

/// A column's type as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// `format_type(atttypid, atttypmod)`: `character varying(20)`, `numeric(10,2)`,
    /// `timestamp(3) without time zone`, `citext`, `public.citext`.
    pub formatted: String,
    /// `pg_attribute.atttypid`.
    pub oid: u32,
    /// `pg_attribute.atttypmod` (-1: no modifier).
    pub typmod: i32,
}

/// A column named by the statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnFacts {
    pub name: String,
    pub exists: bool,
    pub data_type: Option<ColumnType>,
    /// Already NOT NULL, with the constraint validated (PostgreSQL 18 can have NOT VALID NOT
    /// NULL constraints, which `SET NOT NULL` validates with a scan).
    pub not_null: bool,
    /// No NOT NULL of any kind (neither `attnotnull` nor a NOT VALID not-null constraint):
    /// `DROP NOT NULL` changes nothing.
    pub nullable: bool,
    /// A validated CHECK constraint proves the column holds no NULL (`CHECK (c IS NOT NULL)`,
    /// or such a test AND-ed with others): from PostgreSQL 12, `SET NOT NULL` then skips its
    /// scan.
    pub valid_not_null_check: bool,
    /// Names of the validated CHECK constraints that use the column. A type change re-checks
    /// them all with a full scan, even when it rewrites nothing.
    pub checks: Vec<String>,
    /// Indexes that use the column (as a key, in an expression or in a predicate).
    pub indexes: Vec<ColumnIndex>,
    /// The column's collation when it is not the database default (`"C"`, …). A type change
    /// without `COLLATE` resets it to the default and so rebuilds its indexes.
    pub collation: Option<String>,
    /// The column's type is the citext extension's own (not merely a type or domain called
    /// `citext`); `None` when not read.
    pub type_is_citext: Option<bool>,
}

/// An index using a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnIndex {
    pub name: String,
    /// Valid, no expressions, no WHERE: the kind a type change can keep without rebuilding.
    /// PostgreSQL never keeps expression or partial indexes across a type change.
    pub plain: bool,
}

/// `pg_proc.provolatile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

/// A function called by a column DEFAULT, with every overload found by that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFacts {
    pub name: String,
    /// The distinct volatilities of its overloads, in any schema; empty when none exists.
    pub volatility: Vec<Volatility>,
}

/// Why catalog facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The document is not the JSON `facts_query` produces.
    #[error("catalog facts are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON holds a value out of range for its fact.
    #[error("catalog facts hold an invalid {0}")]
    Invalid(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Quoting
// ---------------------------------------------------------------------------------------------

/// A name PostgreSQL could store: not empty, no NUL (the simple protocol ends the query text
/// at a NUL, and `""` is a syntax error inside `to_regclass`).
fn storable(part: &str) -> bool {
    !part.is_empty() && !part.contains('\0')
}

/// `to_regclass('"schema"."name"')::oid`, or a NULL oid for a name no relation can have.
fn regclass_expr(name: &Name) -> String {
    let schema_ok = name.schema.as_deref().is_none_or(storable);
    if !schema_ok || !storable(&name.name) {
        return "NULL::pg_catalog.oid".to_owned();
    }
    let qualified = match &name.schema {
        Some(s) => format!("{}.{}", quote::ident(s), quote::ident(&name.name)),
        None => quote::ident(&name.name),
    };
    format!(
        "pg_catalog.to_regclass({}::pg_catalog.text)::pg_catalog.oid",
        quote::literal(&qualified)
    )
}

/// A text literal, or `NULL::text` for a value that cannot be sent.
fn text_literal(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.contains('\0') => format!("{}::pg_catalog.text", quote::literal(s)),
        _ => "NULL::pg_catalog.text".to_owned(),
    }
}

/// `ARRAY[…]::text[]` of the storable names.
fn text_array(items: &[&str]) -> String {
    let items: Vec<String> = items
        .iter()
        .filter(|s| storable(s))
        .map(|s| quote::literal(s))
        .collect();
    format!("ARRAY[{}]::pg_catalog.text[]", items.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The query
// ---------------------------------------------------------------------------------------------

/// What one statement needs to know.
#[derive(Debug, Default)]
struct Request<'a> {
    relation: Option<&'a Name>,
    columns: Vec<&'a str>,
    functions: Vec<&'a str>,
    referenced: Vec<&'a Name>,
    /// Type names to resolve ([`type_lookup_name`] of each `ALTER COLUMN … TYPE`).
    types: Vec<String>,
    /// The objects of a `DROP <kind> … CASCADE` and the catalog they live in.
    drops: Option<(DropCatalog, &'a [DropObject])>,
}

/// The catalog a dropped object's name is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropCatalog {
    Proc,
    Type,
    Namespace,
    Extension,
}

fn push_unique<'a, T: PartialEq + ?Sized>(v: &mut Vec<&'a T>, item: &'a T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// The facts the rules can use for `ddl`, or `None` when no rule would look at any.
fn request(ddl: &Ddl) -> Option<Request<'_>> {
    let mut req = Request::default();
    match &ddl.kind {
        // `ON ONLY` too: only a partitioned table (relkind 'p') makes it build nothing.
        DdlKind::CreateIndex {
            table,
            concurrently: false,
            ..
        } => req.relation = Some(table),
        // ALTER INDEX … RENAME renames a table too: the relkind decides. For a view's column
        // rename it tells a view from a table in the message.
        DdlKind::AlterIndex { name, action } if action == "RENAME" => req.relation = Some(name),
        DdlKind::RenameView {
            name,
            column: Some(_),
            ..
        } => req.relation = Some(name),
        // Every index named: the first as the relation, the others as referenced relations
        // (each with its own table's size), so that a DROP INDEX of several indexes is
        // decided on every one of them.
        DdlKind::DropIndex {
            names,
            concurrently: false,
            ..
        } => {
            let (first, rest) = names.split_first()?;
            req.relation = Some(first);
            for n in rest {
                push_unique(&mut req.referenced, n);
            }
        }
        DdlKind::Reindex {
            target: ReindexTarget::Index | ReindexTarget::Table,
            name: Some(name),
            concurrently: false,
        } => req.relation = Some(name),
        DdlKind::RefreshMaterializedView {
            name,
            concurrently: false,
        } => req.relation = Some(name),
        // The small-table allowance of VACUUM FULL / CLUSTER: one named table only (a list or
        // the whole database is never "one small table").
        DdlKind::Vacuum { full: true, tables } if tables.len() == 1 => {
            req.relation = tables.first();
        }
        DdlKind::Cluster { table: Some(t) } => req.relation = Some(t),
        DdlKind::DropCascade {
            tag,
            objects: Some(objects),
            ..
        } => {
            let catalog = match tag.as_str() {
                "DROP FUNCTION" | "DROP PROCEDURE" | "DROP ROUTINE" | "DROP AGGREGATE" => {
                    DropCatalog::Proc
                }
                "DROP TYPE" | "DROP DOMAIN" => DropCatalog::Type,
                "DROP SCHEMA" => DropCatalog::Namespace,
                "DROP EXTENSION" => DropCatalog::Extension,
                _ => return None,
            };
            req.drops = Some((catalog, objects));
        }
        DdlKind::AlterTable { name, ops, .. } => {
            // Actions whose lock lasts as long as a scan or rewrite of the table: their rules
            // allow them on a table the catalog shows small, so its size is read.
            let mut sized = false;
            for op in ops {
                match op {
                    AlterOp::AddColumn(_) | AlterOp::AddConstraint(_) => sized = true,
                    AlterOp::AttachPartition { partition } => {
                        sized = true;
                        push_unique(&mut req.referenced, partition);
                    }
                    _ => {}
                }
                match op {
                    AlterOp::AlterColumnType {
                        column, data_type, ..
                    } => {
                        push_unique(&mut req.columns, column.as_str());
                        if let Some(t) = type_lookup_name(data_type)
                            && !req.types.contains(&t)
                        {
                            req.types.push(t);
                        }
                    }
                    AlterOp::SetNotNull { column } | AlterOp::DropNotNull { column } => {
                        push_unique(&mut req.columns, column.as_str());
                    }
                    AlterOp::AddColumn(c) => {
                        for f in c.default.iter().flat_map(|d| &d.functions) {
                            push_unique(&mut req.functions, f.as_str());
                        }
                        for k in &c.constraints {
                            if let ConstraintKind::ForeignKey { references } = k {
                                push_unique(&mut req.referenced, references);
                            }
                        }
                    }
                    AlterOp::AddConstraint(AddConstraint {
                        kind: ConstraintKind::ForeignKey { references },
                        ..
                    }) => push_unique(&mut req.referenced, references),
                    _ => {}
                }
            }
            if !sized
                && req.columns.is_empty()
                && req.functions.is_empty()
                && req.referenced.is_empty()
            {
                return None;
            }
            req.relation = Some(name);
        }
        _ => return None,
    }
    Some(req)
}

/// The one `SELECT` that reads every fact the rules need for `ddl`, or `None` when the
/// statement needs none. See the module docs for the JSON it returns and why it is safe to
/// run inside the client's transaction.
pub fn facts_query(ddl: &Ddl) -> Option<String> {
    let req = request(ddl)?;
    let target = req
        .relation
        .map_or_else(|| "NULL::pg_catalog.oid".to_owned(), regclass_expr);
    let relation = req
        .relation
        .map_or_else(|| "NULL::pg_catalog.json".to_owned(), relation_json);
    let columns = columns_json(&req.columns);
    let functions = functions_json(&req.functions);
    let referenced: Vec<String> = req.referenced.iter().map(|n| referenced_json(n)).collect();
    Some(format!(
        "/* ddlgate catalog facts */ WITH RECURSIVE \
target AS (SELECT {target} AS oid), \
heap AS (SELECT coalesce((SELECT x.indrelid FROM pg_catalog.pg_index x WHERE x.indexrelid = target.oid), target.oid) AS oid FROM target), \
tree(relid, parent, level) AS (\
SELECT heap.oid, 0::pg_catalog.oid, 0 FROM heap WHERE heap.oid IS NOT NULL \
UNION ALL \
SELECT i.inhrelid, i.inhparent, tree.level + 1 FROM tree \
JOIN pg_catalog.pg_inherits i ON i.inhparent = tree.relid \
JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid WHERE k.relispartition), \
measured(relid) AS (\
SELECT tree.relid FROM tree \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_index x ON x.indrelid = tree.relid \
UNION SELECT k.reltoastrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
JOIN pg_catalog.pg_index x ON x.indrelid = k.reltoastrelid) \
SELECT pg_catalog.json_build_object(\
'timezone', pg_catalog.current_setting('TimeZone'), \
'relation', {relation}, \
'columns', {columns}, \
'functions', {functions}, \
'referenced', pg_catalog.json_build_array({referenced}), \
'types', {types}, \
'drops', pg_catalog.json_build_array({drops}))",
        referenced = referenced.join(", "),
        types = types_json(&req.types),
        drops = req
            .drops
            .map(|(catalog, objects)| {
                objects
                    .iter()
                    .filter_map(|o| drop_json(catalog, o))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
    ))
}

/// Each type name resolved with the session's search_path, and whether it is citext's type.
/// Only names [`type_lookup_name`] produced are sent: words from ddlgate's own list of
/// built-in spellings and a quoted schema, which `to_regtype` cannot fail to parse (before
/// PostgreSQL 16 it raises on a syntax error, which would abort the client's transaction).
fn types_json(types: &[String]) -> String {
    if types.is_empty() {
        return "'[]'::pg_catalog.json".to_owned();
    }
    let resolvable: Vec<String> = types.iter().map(|t| type_regtype_text(t)).collect();
    let asked: Vec<&str> = types.iter().map(String::as_str).collect();
    let resolvable: Vec<&str> = resolvable.iter().map(String::as_str).collect();
    format!(
        "(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'asked', q.asked, 'oid', t.oid::pg_catalog.int8, \
'citext', t.oid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid \
AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e' \
AND e.extname = 'citext')) ORDER BY q.ord), '[]'::pg_catalog.json) \
FROM ROWS FROM (pg_catalog.unnest({asked}), pg_catalog.unnest({resolvable})) WITH ORDINALITY AS q(asked, resolvable, ord) \
LEFT JOIN LATERAL (SELECT pg_catalog.to_regtype(q.resolvable)::pg_catalog.oid AS oid) t ON true)",
        asked = text_array(&asked),
        resolvable = text_array(&resolvable),
    )
}

/// The statement's relation: identity, kind, size of its table (tree), partitions, and for a
/// materialized view whether `REFRESH … CONCURRENTLY` can work.
fn relation_json(asked: &Name) -> String {
    format!(
        "(SELECT pg_catalog.json_build_object(\
'asked_schema', {asked_schema}, 'asked_name', {asked_name}, \
'exists', c.oid IS NOT NULL, 'schema', n.nspname, 'name', c.relname, 'relkind', c.relkind::pg_catalog.text, \
'table_schema', CASE WHEN c.relkind IN ('i', 'I') THEN hn.nspname END, \
'table_name', CASE WHEN c.relkind IN ('i', 'I') THEN hc.relname END, \
'rows', CASE WHEN c.oid IS NOT NULL THEN (\
SELECT CASE WHEN pg_catalog.bool_or({unanalyzed}) THEN NULL \
ELSE coalesce(pg_catalog.sum(k.reltuples), 0)::pg_catalog.int8 END \
FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid WHERE k.relkind NOT IN ('p', 'I')) END, \
'bytes', CASE WHEN c.oid IS NULL THEN NULL \
WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN measured ON l.relation = measured.relid \
WHERE {foreign_access_exclusive}) THEN NULL \
ELSE (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(tree.relid))::pg_catalog.int8 FROM tree) END, \
'max_rows', CASE WHEN c.oid IS NULL THEN NULL \
WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN measured ON l.relation = measured.relid \
WHERE {foreign_access_exclusive}) THEN NULL \
ELSE (SELECT {heap_capacity} FROM tree) END, \
'populated', CASE WHEN c.relkind = 'm' THEN c.relispopulated END, \
'refresh_index', CASE WHEN c.relkind = 'm' THEN (\
SELECT ic.relname FROM pg_catalog.pg_index x \
JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid \
JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
WHERE x.indrelid = c.oid AND x.indisunique AND x.indimmediate AND x.indisvalid \
AND x.indpred IS NULL AND x.indexprs IS NULL AND am.amname = 'btree' AND x.indnatts > 0 \
AND 0 < ALL (x.indkey::pg_catalog.int2[]) \
ORDER BY ic.relname LIMIT 1) END, \
'partitions', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'schema', pn.nspname, 'name', k.relname, 'parent_schema', ppn.nspname, 'parent_name', pk.relname, \
'relkind', k.relkind::pg_catalog.text, 'level', tree.level) \
ORDER BY tree.level, pn.nspname, k.relname), '[]'::pg_catalog.json) \
FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
JOIN pg_catalog.pg_namespace pn ON pn.oid = k.relnamespace \
JOIN pg_catalog.pg_class pk ON pk.oid = tree.parent \
JOIN pg_catalog.pg_namespace ppn ON ppn.oid = pk.relnamespace \
WHERE tree.level > 0)) \
FROM target LEFT JOIN pg_catalog.pg_class c ON c.oid = target.oid \
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN heap ON true \
LEFT JOIN pg_catalog.pg_class hc ON hc.oid = heap.oid \
LEFT JOIN pg_catalog.pg_namespace hn ON hn.oid = hc.relnamespace)",
        asked_schema = text_literal(asked.schema.as_deref()),
        asked_name = text_literal(Some(&asked.name)),
        unanalyzed = UNANALYZED,
        foreign_access_exclusive = FOREIGN_ACCESS_EXCLUSIVE,
        heap_capacity = HEAP_CAPACITY,
    )
}

/// A leaf `k` (a `pg_class` row) has no row estimate: never analyzed or vacuumed (`reltuples`
/// is -1 on PostgreSQL 14+; before 14 it is 0 with `relpages` 0, which a vacuumed empty table
/// also shows — then the exact heap bound decides instead, so nothing is lost).
const UNANALYZED: &str = "k.reltuples < 0 OR (k.reltuples = 0 AND k.relpages = 0)";

/// A `pg_locks` row `l` is ACCESS EXCLUSIVE held or awaited by another session in this
/// database: measuring a relation it is on would queue behind it (see the module docs).
const FOREIGN_ACCESS_EXCLUSIVE: &str = "l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()";

/// The most tuples the heaps of a `tree` (relid column) can hold: main-fork pages times
/// `MaxHeapTuplesPerPage` = (BLCKSZ - page header 24) / (tuple header 24 + line pointer 4).
/// A partitioned parent has no storage (size 0), so the sum is over the leaves.
const HEAP_CAPACITY: &str = "pg_catalog.sum(pg_catalog.pg_relation_size(tree.relid))::pg_catalog.int8 \
/ pg_catalog.current_setting('block_size')::pg_catalog.int8 \
* ((pg_catalog.current_setting('block_size')::pg_catalog.int8 - 24) / 28)";

/// `'rows', …, 'max_rows', …, 'bytes', …` for the relation whose OID is the SQL expression
/// `root` (NULL when it does not exist): the same facts, read the same way, as the statement's
/// own relation gets, for a second table a size-dependent rule needs (the referenced table of a
/// foreign key, the table an ATTACH PARTITION scans). Self-contained: its own partition tree.
fn tree_sizes_json(root: &str) -> String {
    let tree = format!(
        "WITH RECURSIVE tree(relid) AS (SELECT {root} WHERE {root} IS NOT NULL \
UNION ALL SELECT i.inhrelid FROM tree JOIN pg_catalog.pg_inherits i ON i.inhparent = tree.relid \
JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid WHERE k.relispartition), \
measured(relid) AS (\
SELECT tree.relid FROM tree \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_index x ON x.indrelid = tree.relid \
UNION SELECT k.reltoastrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
JOIN pg_catalog.pg_index x ON x.indrelid = k.reltoastrelid)"
    );
    let unlocked = format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN measured ON l.relation = measured.relid \
WHERE {FOREIGN_ACCESS_EXCLUSIVE})"
    );
    format!(
        "'rows', CASE WHEN {root} IS NOT NULL THEN ({tree} \
SELECT CASE WHEN pg_catalog.bool_or({UNANALYZED}) THEN NULL \
ELSE coalesce(pg_catalog.sum(k.reltuples), 0)::pg_catalog.int8 END \
FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid WHERE k.relkind NOT IN ('p', 'I')) END, \
'max_rows', CASE WHEN {root} IS NOT NULL THEN ({tree} \
SELECT CASE WHEN {unlocked} THEN (SELECT {HEAP_CAPACITY} FROM tree) END) END, \
'bytes', CASE WHEN {root} IS NOT NULL THEN ({tree} \
SELECT CASE WHEN {unlocked} THEN \
(SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(tree.relid))::pg_catalog.int8 FROM tree) END) END"
    )
}

/// Dependencies PostgreSQL follows when it drops an object even under RESTRICT: auto,
/// internal, extension membership, auto-extension, partition. Any other `deptype` from an
/// object outside the dropped set is a dependent CASCADE would drop (see [`DropFacts`]).
const SILENT_DEPTYPES: &str = "('a', 'i', 'e', 'x', 'P', 'S')";

/// A `pg_depend` row `d` refers to an object in the closure row `{c}` (a whole object covers
/// its sub-objects, such as a relation's columns).
fn depends_on(c: &str) -> String {
    format!(
        "d.refclassid = {c}.classid AND d.refobjid = {c}.objid AND ({c}.objsubid = 0 OR d.refobjsubid = {c}.objsubid)"
    )
}

/// One dropped object: its candidates by name, and the dependents and escapes of each (see
/// [`DropFacts`]). `None` for a name no object can have (then the object has no facts, and
/// the rule assumes the worst).
fn drop_json(catalog: DropCatalog, object: &DropObject) -> Option<String> {
    let name = &object.name;
    // Only ASCII names are asked about (as in `created`): a name the server would read or fold
    // differently (another client_encoding, a single-byte server encoding's case folding)
    // could resolve to nothing here while the DROP finds it — and "nothing there" can allow
    // an `IF EXISTS`.
    let askable = |s: &str| storable(s) && s.is_ascii();
    if !askable(&name.name) || !name.schema.as_deref().is_none_or(askable) {
        return None;
    }
    let lit = |s: &str| format!("{}::pg_catalog.name", quote::literal(s));
    let in_path = match &name.schema {
        Some(s) => format!("n.nspname = {}", lit(s)),
        None => "n.nspname = ANY (pg_catalog.current_schemas(true))".to_owned(),
    };
    let named = lit(&name.name);
    let (candidates, anywhere) = match catalog {
        DropCatalog::Proc => (
            format!(
                "SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid, p.oid FROM pg_catalog.pg_proc p \
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = {named} AND {in_path}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_proc p WHERE p.proname = {named}"),
        ),
        DropCatalog::Type => (
            format!(
                "SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, t.oid FROM pg_catalog.pg_type t \
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = {named} AND {in_path}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_type t WHERE t.typname = {named}"),
        ),
        // Schemas and extensions have unqualified names only.
        DropCatalog::Namespace | DropCatalog::Extension if name.schema.is_some() => return None,
        DropCatalog::Namespace => (
            format!(
                "SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid, n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = {named}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = {named}"),
        ),
        DropCatalog::Extension => (
            format!(
                "SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid, e.oid FROM pg_catalog.pg_extension e WHERE e.extname = {named}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = {named}"),
        ),
    };
    let inside = |class: &str, id: &str, sub: &str| {
        format!(
            "EXISTS (SELECT 1 FROM closure o WHERE o.root = c.root AND o.classid = {class} \
AND o.objid = {id} AND (o.objsubid = 0 OR o.objsubid = {sub}))"
        )
    };
    Some(format!(
        "(WITH RECURSIVE cand(classid, objid) AS ({candidates}), \
closure(root, classid, objid, objsubid) AS (\
SELECT cand.objid, cand.classid, cand.objid, 0 FROM cand \
UNION SELECT c.root, d.classid, d.objid, d.objsubid FROM closure c \
JOIN pg_catalog.pg_depend d ON {down} WHERE d.deptype IN {SILENT_DEPTYPES}), \
blockers AS (SELECT DISTINCT c.root, d.classid, d.objid, d.objsubid FROM closure c \
JOIN pg_catalog.pg_depend d ON {down} \
WHERE d.deptype NOT IN {SILENT_DEPTYPES} AND NOT {dependent_inside}), \
escapes AS (SELECT DISTINCT c.root, d.refclassid, d.refobjid FROM closure c \
JOIN pg_catalog.pg_depend d ON d.classid = c.classid AND d.objid = c.objid AND (c.objsubid = 0 OR d.objsubid = c.objsubid) \
WHERE d.deptype IN ('i', 'e', 'P', 'S') AND NOT {owner_inside}) \
SELECT pg_catalog.json_build_object(\
'asked_schema', {asked_schema}, 'asked_name', {asked_name}, \
'candidates', (SELECT pg_catalog.count(*) FROM cand), \
'anywhere', EXISTS ({anywhere}), \
'dependents', (SELECT pg_catalog.count(*) FROM blockers), \
'escapes', (SELECT pg_catalog.count(*) FROM escapes), \
'names', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.pg_describe_object(b.classid, b.objid, b.objsubid) \
ORDER BY b.classid, b.objid, b.objsubid), '[]'::pg_catalog.json) FROM \
(SELECT DISTINCT x.classid, x.objid, x.objsubid FROM blockers x ORDER BY 1, 2, 3 LIMIT 5) b)))",
        down = depends_on("c"),
        dependent_inside = inside("d.classid", "d.objid", "d.objsubid"),
        owner_inside = inside("d.refclassid", "d.refobjid", "d.refobjsubid"),
        asked_schema = text_literal(name.schema.as_deref()),
        asked_name = text_literal(Some(&name.name)),
    ))
}

/// The named columns of the target relation: type, nullability, CHECKs and indexes on them.
fn columns_json(columns: &[&str]) -> String {
    format!(
        "(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', q.name, 'exists', a.attnum IS NOT NULL, \
'type', pg_catalog.format_type(a.atttypid, a.atttypmod), \
'type_oid', a.atttypid::pg_catalog.int8, 'typmod', a.atttypmod, \
'not_null', a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND NOT k.convalidated AND a.attnum = ANY (k.conkey)), \
'nullable', NOT a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND a.attnum = ANY (k.conkey)), \
'collation', (SELECT l.collname FROM pg_catalog.pg_collation l WHERE l.oid = a.attcollation AND l.oid <> 100), \
'citext', a.atttypid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = a.atttypid \
AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e' \
AND e.extname = 'citext'), \
'checks', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', k.conname, 'definition', pg_catalog.pg_get_constraintdef(k.oid)) ORDER BY k.conname), '[]'::pg_catalog.json) \
FROM pg_catalog.pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'c' AND k.convalidated \
AND a.attnum = ANY (k.conkey)), \
'indexes', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', ic.relname, 'plain', x.indexprs IS NULL AND x.indpred IS NULL AND x.indisvalid) ORDER BY ic.relname), '[]'::pg_catalog.json) \
FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid \
WHERE x.indrelid = a.attrelid AND (a.attnum = ANY (x.indkey::pg_catalog.int2[]) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = x.indexrelid \
AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = a.attrelid \
AND d.refobjsubid = a.attnum)))\
) ORDER BY q.ord), '[]'::pg_catalog.json) \
FROM pg_catalog.unnest({names}) WITH ORDINALITY AS q(name, ord) \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = (SELECT target.oid FROM target) \
AND a.attname = q.name::pg_catalog.name AND a.attnum > 0 AND NOT a.attisdropped)",
        names = text_array(columns)
    )
}

/// Every overload's volatility for each function name, in any schema: the model has only the
/// unqualified name, so a volatile overload anywhere counts (assume volatile when unsure).
fn functions_json(functions: &[&str]) -> String {
    format!(
        "(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', q.name, 'volatility', (SELECT coalesce(pg_catalog.json_agg(DISTINCT p.provolatile::pg_catalog.text), '[]'::pg_catalog.json) \
FROM pg_catalog.pg_proc p WHERE p.proname = q.name::pg_catalog.name)) ORDER BY q.ord), '[]'::pg_catalog.json) \
FROM pg_catalog.unnest({names}) WITH ORDINALITY AS q(name, ord))",
        names = text_array(functions)
    )
}

/// A table referenced by a foreign key (or attached as a partition), or a further index of a
/// `DROP INDEX a, b`: does it exist, what is it, and how big is its table (its whole
/// partition tree). For an index, the server's `pg_index.indrelid` names the table measured —
/// never the index itself, whose own size says nothing about the lock's reach.
fn referenced_json(asked: &Name) -> String {
    format!(
        "(SELECT pg_catalog.json_build_object(\
'asked_schema', {asked_schema}, 'asked_name', {asked_name}, \
'exists', c.oid IS NOT NULL, 'schema', n.nspname, 'name', c.relname, 'relkind', c.relkind::pg_catalog.text, \
'table_schema', hn.nspname, 'table_name', hc.relname, \
{sizes}) \
FROM (SELECT {oid} AS oid) r LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid \
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid \
LEFT JOIN pg_catalog.pg_class hc ON hc.oid = x.indrelid \
LEFT JOIN pg_catalog.pg_namespace hn ON hn.oid = hc.relnamespace)",
        asked_schema = text_literal(asked.schema.as_deref()),
        asked_name = text_literal(Some(&asked.name)),
        oid = regclass_expr(asked),
        sizes = tree_sizes_json("coalesce(x.indrelid, c.oid)"),
    )
}

// ---------------------------------------------------------------------------------------------
// Parsing the answer
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawType {
    asked: String,
    oid: Option<i64>,
    #[serde(default)]
    citext: bool,
}

#[derive(Deserialize)]
struct RawDrop {
    asked_schema: Option<String>,
    asked_name: String,
    candidates: i64,
    anywhere: bool,
    dependents: i64,
    escapes: i64,
    #[serde(default)]
    names: Option<Vec<Option<String>>>,
}

#[derive(Deserialize)]
struct RawFacts {
    #[serde(default)]
    drops: Option<Vec<RawDrop>>,
    #[serde(default)]
    types: Option<Vec<RawType>>,
    timezone: Option<String>,
    relation: Option<RawRelation>,
    #[serde(default)]
    columns: Option<Vec<RawColumn>>,
    #[serde(default)]
    functions: Option<Vec<RawFunction>>,
    #[serde(default)]
    referenced: Option<Vec<RawRelation>>,
}

#[derive(Deserialize)]
struct RawRelation {
    asked_schema: Option<String>,
    asked_name: String,
    exists: bool,
    schema: Option<String>,
    name: Option<String>,
    relkind: Option<String>,
    #[serde(default)]
    table_schema: Option<String>,
    #[serde(default)]
    table_name: Option<String>,
    #[serde(default)]
    rows: Option<i64>,
    #[serde(default)]
    max_rows: Option<i64>,
    #[serde(default)]
    bytes: Option<i64>,
    #[serde(default)]
    populated: Option<bool>,
    #[serde(default)]
    refresh_index: Option<String>,
    #[serde(default)]
    partitions: Option<Vec<RawPartition>>,
}

#[derive(Deserialize)]
struct RawPartition {
    schema: String,
    name: String,
    parent_schema: String,
    parent_name: String,
    relkind: String,
    level: i64,
}

#[derive(Deserialize)]
struct RawColumn {
    name: String,
    exists: bool,
    #[serde(rename = "type")]
    data_type: Option<String>,
    type_oid: Option<i64>,
    typmod: Option<i64>,
    not_null: Option<bool>,
    #[serde(default)]
    nullable: Option<bool>,
    collation: Option<String>,
    #[serde(default)]
    citext: Option<bool>,
    #[serde(default)]
    checks: Option<Vec<RawCheck>>,
    #[serde(default)]
    indexes: Option<Vec<RawIndex>>,
}

#[derive(Deserialize)]
struct RawCheck {
    name: String,
    definition: String,
}

#[derive(Deserialize)]
struct RawIndex {
    name: String,
    plain: bool,
}

#[derive(Deserialize)]
struct RawFunction {
    name: String,
    #[serde(default)]
    volatility: Option<Vec<String>>,
}

/// Reads the document [`facts_query`] returned. Thresholds are left at their defaults.
pub fn parse_facts(json: &str) -> Result<Facts, CatalogError> {
    let raw: RawFacts = serde_json::from_str(json)?;
    let mut columns = Vec::new();
    for c in raw.columns.unwrap_or_default() {
        columns.push(column(c)?);
    }
    let mut referenced = Vec::new();
    for r in raw.referenced.unwrap_or_default() {
        referenced.push(relation(r)?);
    }
    Ok(Facts {
        relation: raw.relation.map(relation).transpose()?,
        columns,
        functions: raw
            .functions
            .unwrap_or_default()
            .into_iter()
            .map(|f| FunctionFacts {
                volatility: volatilities(f.volatility.unwrap_or_default()),
                name: f.name,
            })
            .collect(),
        referenced,
        types: raw
            .types
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                Ok(TypeFacts {
                    asked: t.asked,
                    oid: t
                        .oid
                        .map(u32::try_from)
                        .transpose()
                        .map_err(|_| CatalogError::Invalid("type oid"))?,
                    citext: t.citext,
                })
            })
            .collect::<Result<_, CatalogError>>()?,
        timezone: raw.timezone,
        drops: raw
            .drops
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let count = |v: i64| u64::try_from(v).map_err(|_| CatalogError::Invalid("count"));
                Ok(DropFacts {
                    asked: Name {
                        schema: d.asked_schema,
                        name: d.asked_name,
                    },
                    candidates: count(d.candidates)?,
                    anywhere: d.anywhere,
                    dependents: count(d.dependents)?,
                    escapes: count(d.escapes)?,
                    names: d.names.unwrap_or_default().into_iter().flatten().collect(),
                })
            })
            .collect::<Result<_, CatalogError>>()?,
        thresholds: Thresholds::default(),
    })
}

fn one_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

fn relkind(s: &str) -> Result<RelKind, CatalogError> {
    one_char(s)
        .map(RelKind::from_char)
        .ok_or(CatalogError::Invalid("relkind"))
}

fn relation(r: RawRelation) -> Result<Relation, CatalogError> {
    let qualified =
        |schema: Option<String>, name: Option<String>| name.map(|n| Name { schema, name: n });
    let mut partitions = Vec::new();
    for p in r.partitions.unwrap_or_default() {
        partitions.push(Partition {
            name: Name {
                schema: Some(p.schema),
                name: p.name,
            },
            parent: Name {
                schema: Some(p.parent_schema),
                name: p.parent_name,
            },
            kind: relkind(&p.relkind)?,
            level: u32::try_from(p.level).map_err(|_| CatalogError::Invalid("partition level"))?,
        });
    }
    Ok(Relation {
        asked: Name {
            schema: r.asked_schema,
            name: r.asked_name,
        },
        exists: r.exists,
        name: qualified(r.schema, r.name),
        kind: r.relkind.as_deref().map(relkind).transpose()?,
        table: qualified(r.table_schema, r.table_name),
        // Negative values cannot come from the query; treat them as unknown, not as an error.
        rows: r.rows.and_then(|v| u64::try_from(v).ok()),
        max_rows: r.max_rows.and_then(|v| u64::try_from(v).ok()),
        bytes: r.bytes.and_then(|v| u64::try_from(v).ok()),
        partitions,
        populated: r.populated,
        refresh_index: r.refresh_index,
    })
}

fn column(c: RawColumn) -> Result<ColumnFacts, CatalogError> {
    let data_type = match (c.data_type, c.type_oid, c.typmod) {
        (Some(formatted), Some(oid), Some(typmod)) => Some(ColumnType {
            formatted,
            oid: u32::try_from(oid).map_err(|_| CatalogError::Invalid("type oid"))?,
            typmod: i32::try_from(typmod).map_err(|_| CatalogError::Invalid("typmod"))?,
        }),
        _ => None,
    };
    let checks = c.checks.unwrap_or_default();
    Ok(ColumnFacts {
        valid_not_null_check: checks
            .iter()
            .any(|k| check_proves_not_null(&k.definition, &c.name)),
        checks: checks.into_iter().map(|k| k.name).collect(),
        indexes: c
            .indexes
            .unwrap_or_default()
            .into_iter()
            .map(|i| ColumnIndex {
                name: i.name,
                plain: i.plain,
            })
            .collect(),
        exists: c.exists && data_type.is_some(),
        not_null: c.not_null.unwrap_or(false),
        nullable: c.nullable.unwrap_or(false),
        collation: c.collation,
        type_is_citext: c.citext,
        data_type,
        name: c.name,
    })
}

fn volatilities(v: Vec<String>) -> Vec<Volatility> {
    let mut out = Vec::new();
    for s in v {
        let vol = match s.as_str() {
            "i" => Volatility::Immutable,
            "s" => Volatility::Stable,
            // 'v', and anything a future server might add: assume volatile when unsure.
            _ => Volatility::Volatile,
        };
        if !out.contains(&vol) {
            out.push(vol);
        }
    }
    out
}

/// Whether a CHECK constraint, as `pg_get_constraintdef` prints it, proves `column` is never
/// NULL — the test PostgreSQL 12+ makes before skipping the `SET NOT NULL` scan: the whole
/// expression is `column IS NOT NULL`, or an AND with such a conjunct (a CHECK passes when its
/// expression is NULL, so `CHECK (c > 0)` proves nothing). Works on tokens, so string
/// literals and parentheses inside other conjuncts cannot confuse it.
pub fn check_proves_not_null(definition: &str, column: &str) -> bool {
    let sql = definition.as_bytes();
    let tokens: Vec<Token> = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .collect();
    let Some((first, rest)) = tokens.split_first() else {
        return false;
    };
    if !first.is_word(sql, "CHECK") {
        return false;
    }
    // `CHECK ( expr )` optionally followed by `NO INHERIT` / `NOT VALID`.
    let Some(close) = matching_paren(rest, 0) else {
        return false;
    };
    conjunct_proves(sql, &rest[1..close], column, 0)
}

/// AND groups nested deeper than this prove nothing (the conservative answer): the definition
/// comes from the server, but whoever created the constraint chose its nesting, and the reader
/// recurses once per level.
const MAX_CONJUNCT_DEPTH: usize = 32;

fn conjunct_proves(sql: &[u8], mut expr: &[Token], column: &str, nesting: usize) -> bool {
    if nesting > MAX_CONJUNCT_DEPTH {
        return false;
    }
    // Strip parentheses around the whole expression.
    while matching_paren(expr, 0).is_some_and(|c| c + 1 == expr.len()) {
        expr = &expr[1..expr.len() - 1];
    }
    // Split at top-level AND.
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0usize, 0usize);
    for (i, t) in expr.iter().enumerate() {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            _ if depth == 0 && t.is_word(sql, "AND") => {
                parts.push(&expr[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    if from > 0 {
        parts.push(&expr[from..]);
        return parts
            .iter()
            .any(|p| conjunct_proves(sql, p, column, nesting + 1));
    }
    match expr {
        [ident, is, not, null] => {
            is.is_word(sql, "IS")
                && not.is_word(sql, "NOT")
                && null.is_word(sql, "NULL")
                && identifier_is(sql, ident, column)
        }
        _ => false,
    }
}

/// `token` names `column`: a bare word folded to lower case, or a `"quoted"` identifier.
fn identifier_is(sql: &[u8], token: &Token, column: &str) -> bool {
    let text = String::from_utf8_lossy(token.text(sql));
    match token.kind {
        TokenKind::Word => text.to_ascii_lowercase() == column,
        TokenKind::QuotedIdent => text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .is_some_and(|inner| inner.replace("\"\"", "\"") == column),
        _ => false,
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = b;
    let mut unit = 0;
    // PostgreSQL's pg_size_pretty rounding: switch units once the value reaches 10 240.
    while value >= 10 * 1024 && unit + 1 < UNITS.len() {
        value = value / 1024 + u64::from(value % 1024 >= 512);
        unit += 1;
    }
    format!("{value} {}", UNITS[unit])
}

// ---------------------------------------------------------------------------------------------
// Type changes
// ---------------------------------------------------------------------------------------------

/// What `ALTER COLUMN … TYPE` does to the data, decided the way PostgreSQL decides it
/// (`ATColumnChangeRequiresRewrite` after the typmod support functions have simplified the
/// conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChange {
    /// Binary-coercible and the length coercion (if any) is a no-op: no rewrite, and plain
    /// indexes on the column are kept.
    Free,
    /// No table rewrite, but the index operator class changes (`text` ↔ `citext`,
    /// `timestamp` ↔ `timestamptz`, `text` → `bpchar`): every index on the column is rebuilt
    /// under the ACCESS EXCLUSIVE lock.
    RebuildsIndexes,
    /// The table and all its indexes are rewritten.
    Rewrites,
    /// ddlgate cannot tell (an unrecognised type, an array, a domain): assume a rewrite.
    Unknown,
}

/// Whether changing a column of type `from` to the type written `to` (the statement model's
/// lower-cased `data_type`) avoids a table rewrite: `Some(true)` no rewrite, `Some(false)` a
/// rewrite, `None` unknown (assume a rewrite). `timestamp` ↔ `timestamptz` depends on the
/// session time zone and is `None` here; see [`type_change`].
pub fn is_binary_coercible(from: &ColumnType, to: &str) -> Option<bool> {
    match type_change(from, to, None) {
        TypeChange::Free | TypeChange::RebuildsIndexes => Some(true),
        TypeChange::Rewrites => Some(false),
        TypeChange::Unknown => None,
    }
}

/// Whether the type written `to` has a collation (text-like types). A type change to one
/// without `COLLATE` gives the column the type's default collation. Unrecognised types count
/// as collatable, the cautious answer.
pub fn is_collatable(to: &str) -> bool {
    match parse_type(to) {
        Some(t) => matches!(t.ty, Ty::Citext | Ty::Oid(TEXT | VARCHAR | BPCHAR)),
        None => true,
    }
}

/// What changing a column of type `from` to the type written `to` does. `timezone` is the
/// session's `TimeZone`; pass it only on PostgreSQL 12+ (before 12 `timestamp` ↔
/// `timestamptz` always rewrote).
pub fn type_change(from: &ColumnType, to: &str, timezone: Option<&str>) -> TypeChange {
    let (Some(target), Some(source)) = (parse_type(to), source_type(from)) else {
        return TypeChange::Unknown;
    };
    // The typmod the length coercion sees: a relabelled value (binary cast to another type)
    // has none.
    let (source_typmod, rebuilds_indexes) = if source == target.ty {
        (from.typmod, false)
    } else if let Some(rebuilds) = binary_cast(source, target.ty) {
        (-1, rebuilds)
    } else if matches!(
        (source, target.ty),
        (Ty::Oid(TIMESTAMP), Ty::Oid(TIMESTAMPTZ)) | (Ty::Oid(TIMESTAMPTZ), Ty::Oid(TIMESTAMP))
    ) {
        // PostgreSQL 12+: a no-op when the session time zone is UTC
        // (TimestampTimestampTzRequiresRewrite). The opclass changes, so indexes are rebuilt.
        match timezone {
            None => return TypeChange::Unknown,
            Some(tz) if is_utc(tz) => (-1, true),
            Some(_) => return TypeChange::Rewrites,
        }
    } else {
        return TypeChange::Rewrites;
    };
    let no_op = target.typmod < 0
        || target.typmod == source_typmod
        || length_coercion_is_noop(target.ty, source_typmod, target.typmod);
    match (no_op, rebuilds_indexes) {
        (false, _) => TypeChange::Rewrites,
        (true, false) => TypeChange::Free,
        (true, true) => TypeChange::RebuildsIndexes,
    }
}

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const JSON: u32 = 114;
const XML: u32 = 142;
const CIDR: u32 = 650;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const MACADDR8: u32 = 774;
const MONEY: u32 = 790;
const MACADDR: u32 = 829;
const INET: u32 = 869;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const TIMETZ: u32 = 1266;
const BIT: u32 = 1560;
const VARBIT: u32 = 1562;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

/// Built-in types whose conversions ddlgate knows (fixed OIDs since PostgreSQL 7).
const KNOWN: &[u32] = &[
    BOOL,
    BYTEA,
    INT8,
    INT2,
    INT4,
    TEXT,
    JSON,
    XML,
    CIDR,
    FLOAT4,
    FLOAT8,
    MACADDR8,
    MONEY,
    MACADDR,
    INET,
    BPCHAR,
    VARCHAR,
    DATE,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    INTERVAL,
    TIMETZ,
    BIT,
    VARBIT,
    NUMERIC,
    UUID,
    JSONB,
];

/// A type ddlgate can reason about: a known built-in, or the `citext` extension type (whose
/// OID differs per database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Oid(u32),
    Citext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    ty: Ty,
    typmod: i32,
}

fn source_type(from: &ColumnType) -> Option<Ty> {
    if KNOWN.contains(&from.oid) {
        return Some(Ty::Oid(from.oid));
    }
    let unqualified = from.formatted.rsplit('.').next().unwrap_or_default();
    (unqualified == "citext").then_some(Ty::Citext)
}

/// Binary-coercible casts between different known types (`pg_cast.castmethod = 'b'`, and
/// citext's `WITHOUT FUNCTION` casts), with whether the index operator class changes.
fn binary_cast(from: Ty, to: Ty) -> Option<bool> {
    use Ty::{Citext, Oid};
    match (from, to) {
        // varchar has no operator classes of its own (it uses text's); cidr uses inet's.
        (Oid(TEXT), Oid(VARCHAR))
        | (Oid(VARCHAR), Oid(TEXT))
        | (Oid(CIDR), Oid(INET))
        | (Oid(XML), Oid(TEXT))
        | (Oid(XML), Oid(VARCHAR)) => Some(false),
        (Oid(TEXT), Oid(BPCHAR))
        | (Oid(VARCHAR), Oid(BPCHAR))
        | (Oid(XML), Oid(BPCHAR))
        | (Oid(BIT), Oid(VARBIT))
        | (Oid(VARBIT), Oid(BIT))
        | (Oid(TEXT), Citext)
        | (Oid(VARCHAR), Citext)
        | (Citext, Oid(TEXT))
        | (Citext, Oid(VARCHAR))
        | (Citext, Oid(BPCHAR)) => Some(true),
        _ => None,
    }
}

/// Whether the length-coercion function's planner support simplifies `old → new` typmod to
/// a relabel (varchar_support, numeric_support, varbit_support, timestamp_support,
/// time_support, interval_support). Types without support (bpchar, bit) always coerce.
fn length_coercion_is_noop(ty: Ty, old: i32, new: i32) -> bool {
    const VARHDRSZ: i32 = 4;
    const MAX_TEMPORAL_PRECISION: i32 = 6;
    match ty {
        Ty::Oid(VARCHAR) => new < 0 || (old >= 0 && old <= new),
        Ty::Oid(VARBIT) => new <= 0 || (old > 0 && old <= new),
        Ty::Oid(NUMERIC) => {
            if new < VARHDRSZ {
                true
            } else if old < VARHDRSZ {
                false
            } else {
                numeric_scale(old) == numeric_scale(new)
                    && numeric_precision(new) >= numeric_precision(old)
            }
        }
        Ty::Oid(TIMESTAMP | TIMESTAMPTZ | TIME | TIMETZ) => {
            new < 0 || new == MAX_TEMPORAL_PRECISION || (old >= 0 && new >= old)
        }
        Ty::Oid(INTERVAL) => interval_noop(old, new),
        _ => false,
    }
}

fn numeric_precision(typmod: i32) -> i32 {
    ((typmod - 4) >> 16) & 0xffff
}

/// The scale, sign-extended from 11 bits (PostgreSQL 15 allows negative scales).
fn numeric_scale(typmod: i32) -> i32 {
    (((typmod - 4) & 0x7ff) ^ 1024) - 1024
}

const INTERVAL_FULL_RANGE: i32 = 0x7fff;
const INTERVAL_FULL_PRECISION: i32 = 0xffff;

/// interval_support: a no-op when the least field stays or decreases while the sub-second
/// precision stays or increases.
fn interval_noop(old: i32, new: i32) -> bool {
    if new < 0 {
        return true;
    }
    let (Some(old_least), Some(new_least)) = (interval_least_field(old), interval_least_field(new))
    else {
        return false;
    };
    let old_precision = if old < 0 {
        INTERVAL_FULL_PRECISION
    } else {
        old & 0xffff
    };
    let new_precision = new & 0xffff;
    new_least <= old_least
        && (old_least > 0 || new_precision >= 6 || new_precision >= old_precision)
}

/// intervaltypmodleastfield: 0 SECOND, 1 MINUTE, 2 HOUR, 3 DAY, 4 MONTH, 5 YEAR.
fn interval_least_field(typmod: i32) -> Option<u8> {
    if typmod < 0 {
        return Some(0);
    }
    const fn m(bit: u32) -> i32 {
        1 << bit
    }
    // datetime.h field numbers.
    const MONTH: i32 = m(1);
    const YEAR: i32 = m(2);
    const DAY: i32 = m(3);
    const HOUR: i32 = m(10);
    const MINUTE: i32 = m(11);
    const SECOND: i32 = m(12);
    let range = (typmod >> 16) & 0x7fff;
    Some(match range {
        YEAR => 5,
        MONTH => 4,
        DAY => 3,
        HOUR => 2,
        MINUTE => 1,
        SECOND => 0,
        r if r == YEAR | MONTH => 4,
        r if r == DAY | HOUR => 2,
        r if r == DAY | HOUR | MINUTE => 1,
        r if r == DAY | HOUR | MINUTE | SECOND => 0,
        r if r == HOUR | MINUTE => 1,
        r if r == HOUR | MINUTE | SECOND => 0,
        r if r == MINUTE | SECOND => 0,
        INTERVAL_FULL_RANGE => 0,
        _ => return None,
    })
}

/// Zone names with a fixed zero offset, for which `pg_get_timezone_offset` reports 0.
fn is_utc(tz: &str) -> bool {
    const UTC: &[&str] = &[
        "utc",
        "etc/utc",
        "uct",
        "etc/uct",
        "gmt",
        "etc/gmt",
        "gmt0",
        "etc/gmt0",
        "gmt+0",
        "etc/gmt+0",
        "gmt-0",
        "etc/gmt-0",
        "greenwich",
        "etc/greenwich",
        "universal",
        "etc/universal",
        "zulu",
        "etc/zulu",
    ];
    UTC.contains(&tz.to_ascii_lowercase().as_str())
}

/// A type name as written, split into its schema, its words (lower-cased, space-joined) and its
/// numeric modifiers; `None` for arrays, quoted names and anything not of that shape.
fn split_type(text: &str) -> Option<(Option<String>, String, Option<Vec<i64>>)> {
    if text.contains('[') || text.contains('"') {
        return None;
    }
    let sql = text.as_bytes();
    let tokens: Vec<Token> = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .collect();
    let mut schema: Option<String> = None;
    let mut words: Vec<String> = Vec::new();
    let mut args: Option<Vec<i64>> = None;
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        match t.kind {
            TokenKind::Word => {
                let word = String::from_utf8_lossy(t.text(sql)).to_ascii_lowercase();
                let dot = tokens
                    .get(i + 1)
                    .is_some_and(|d| d.kind == TokenKind::Operator && d.text(sql) == b".");
                if dot {
                    if schema.is_some() || !words.is_empty() {
                        return None;
                    }
                    schema = Some(word);
                    i += 2;
                    continue;
                }
                words.push(word);
                i += 1;
            }
            TokenKind::LParen if args.is_none() => {
                let (list, next) = type_args(sql, &tokens, i)?;
                args = Some(list);
                i = next;
            }
            _ => return None,
        }
    }
    Some((schema, words.join(" "), args))
}

/// The name under which the catalog facts resolve the type written `to` (`varchar(20)` →
/// `varchar`, `pg_catalog.text`, `timestamp(3) with time zone` → `timestamp with time zone`):
/// `None` when ddlgate does not know the type anyway (then it assumes a rewrite, facts or not).
pub fn type_lookup_name(to: &str) -> Option<String> {
    parse_type(to)?;
    let (schema, mut words, args) = split_type(to)?;
    // `float(p)` is real or double precision depending on p: the modifier picks the type.
    if words == "float"
        && let Some([p]) = args.as_deref()
    {
        words = format!("float({p})");
    }
    Some(match schema {
        Some(s) => format!("{s}.{words}"),
        None => words,
    })
}

/// The text handed to `to_regtype` for a [`type_lookup_name`]: the schema quoted, so that no
/// word can be a keyword the type grammar rejects.
fn type_regtype_text(lookup: &str) -> String {
    match lookup.split_once('.') {
        Some((schema, words)) => format!("{}.{words}", quote::ident(schema)),
        None => lookup.to_owned(),
    }
}

/// Whether the column's current type is what ddlgate reads it as: a known built-in by OID, or
/// — for a type whose name says `citext` — the extension's own type as the catalog confirmed.
/// Any other type is unknown to ddlgate anyway.
pub fn column_type_is_as_named(col: &ColumnFacts) -> bool {
    match col.data_type.as_ref().and_then(source_type) {
        Some(Ty::Citext) => col.type_is_citext == Some(true),
        _ => true,
    }
}

/// Whether the server resolved the type written `to` to the very type ddlgate reads it as: the
/// built-in of that OID (a domain or type of the same name earlier in search_path is not), or
/// citext's own type. `false` without facts about it — the caller then assumes a rewrite.
pub fn type_resolves_as_written(facts: &Facts, to: &str) -> bool {
    let (Some(target), Some(asked)) = (parse_type(to), type_lookup_name(to)) else {
        return false;
    };
    let Some(resolved) = facts.types.iter().find(|t| t.asked == asked) else {
        return false;
    };
    match target.ty {
        Ty::Oid(oid) => resolved.oid == Some(oid),
        Ty::Citext => resolved.citext,
    }
}

/// Reads a type as the statement model writes it (`varchar(20)`, `character varying(20)`,
/// `numeric(10,2)`, `timestamp(3) with time zone`, `pg_catalog.text`, `public.citext`).
/// `None` for anything else: arrays, quoted names (`"char"` is not `char`), other schemas,
/// interval field restrictions, out-of-range modifiers.
fn parse_type(text: &str) -> Option<Target> {
    let (schema, name, args) = split_type(text)?;
    if name == "citext" {
        return args.is_none().then_some(Target {
            ty: Ty::Citext,
            typmod: -1,
        });
    }
    if schema.as_deref().is_some_and(|s| s != "pg_catalog") {
        return None;
    }
    let args = args.unwrap_or_default();
    let one = |lo: i64, hi: i64| -> Option<Option<i32>> {
        match args.as_slice() {
            [] => Some(None),
            [n] if (lo..=hi).contains(n) => i32::try_from(*n).ok().map(Some),
            _ => None,
        }
    };
    let none = || args.is_empty();
    let fixed = |oid: u32| none().then_some((oid, -1));
    // Precision above 6 is accepted with a warning and reduced to 6.
    let precision = || one(0, i64::from(i32::MAX)).map(|p| p.map_or(-1, |p| p.min(6)));
    let (oid, typmod) = match name.as_str() {
        "varchar" | "character varying" | "char varying" => {
            (VARCHAR, one(1, 10_485_760)?.map_or(-1, |n| n + 4))
        }
        "char" | "character" => (BPCHAR, one(1, 10_485_760)?.map_or(5, |n| n + 4)),
        "bpchar" => (BPCHAR, one(1, 10_485_760)?.map_or(-1, |n| n + 4)),
        "numeric" | "decimal" | "dec" => match args.as_slice() {
            [] => (NUMERIC, -1),
            [p] if (1..=1000).contains(p) => (NUMERIC, numeric_typmod(*p, 0)?),
            [p, s] if (1..=1000).contains(p) && (-1000..=1000).contains(s) => {
                (NUMERIC, numeric_typmod(*p, *s)?)
            }
            _ => return None,
        },
        "timestamp" | "timestamp without time zone" => (TIMESTAMP, precision()?),
        "timestamptz" | "timestamp with time zone" => (TIMESTAMPTZ, precision()?),
        "time" | "time without time zone" => (TIME, precision()?),
        "timetz" | "time with time zone" => (TIMETZ, precision()?),
        "interval" => match precision()? {
            p if p < 0 => (INTERVAL, -1),
            p => (INTERVAL, (INTERVAL_FULL_RANGE << 16) | p),
        },
        "bit" => (BIT, one(1, i64::from(i32::MAX))?.unwrap_or(1)),
        "varbit" | "bit varying" => (VARBIT, one(1, i64::from(i32::MAX))?.unwrap_or(-1)),
        "float" => match one(1, 53)? {
            None => (FLOAT8, -1),
            Some(p) if p <= 24 => (FLOAT4, -1),
            Some(_) => (FLOAT8, -1),
        },
        "text" => fixed(TEXT)?,
        "smallint" | "int2" => fixed(INT2)?,
        "int" | "integer" | "int4" => fixed(INT4)?,
        "bigint" | "int8" => fixed(INT8)?,
        "real" | "float4" => fixed(FLOAT4)?,
        "double precision" | "float8" => fixed(FLOAT8)?,
        "bool" | "boolean" => fixed(BOOL)?,
        "bytea" => fixed(BYTEA)?,
        "date" => fixed(DATE)?,
        "uuid" => fixed(UUID)?,
        "json" => fixed(JSON)?,
        "jsonb" => fixed(JSONB)?,
        "xml" => fixed(XML)?,
        "inet" => fixed(INET)?,
        "cidr" => fixed(CIDR)?,
        "macaddr" => fixed(MACADDR)?,
        "macaddr8" => fixed(MACADDR8)?,
        "money" => fixed(MONEY)?,
        _ => return None,
    };
    Some(Target {
        ty: Ty::Oid(oid),
        typmod,
    })
}

/// `( n [, n] )` starting at the `(` at `open`: the numbers (a leading `-` allowed) and the
/// index after the `)`.
fn type_args(sql: &[u8], tokens: &[Token], open: usize) -> Option<(Vec<i64>, usize)> {
    let mut out = Vec::new();
    let mut i = open + 1;
    loop {
        let mut negative = false;
        let mut t = tokens.get(i)?;
        if t.kind == TokenKind::Operator && t.text(sql) == b"-" {
            negative = true;
            i += 1;
            t = tokens.get(i)?;
        }
        if t.kind != TokenKind::Number {
            return None;
        }
        let n: i64 = std::str::from_utf8(t.text(sql)).ok()?.parse().ok()?;
        out.push(if negative { -n } else { n });
        i += 1;
        match tokens.get(i)?.kind {
            TokenKind::Comma => i += 1,
            TokenKind::RParen => return Some((out, i + 1)),
            _ => return None,
        }
    }
}

fn numeric_typmod(precision: i64, scale: i64) -> Option<i32> {
    let p = i32::try_from(precision).ok()?;
    let s = i32::try_from(scale).ok()?;
    Some(((p << 16) | (s & 0x7ff)) + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse;

    fn ddl(sql: &str) -> Ddl {
        parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }

    fn ty(formatted: &str, oid: u32, typmod: i32) -> ColumnType {
        ColumnType {
            formatted: formatted.to_owned(),
            oid,
            typmod,
        }
    }

    fn numeric(p: i32, s: i32) -> ColumnType {
        ty(&format!("numeric({p},{s})"), NUMERIC, ((p << 16) | s) + 4)
    }

    #[test]
    fn quoting_round_trips_any_name() {
        assert_eq!(quote::ident("Users"), "\"Users\"");
        assert_eq!(quote::ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote::literal("it's"), "'it''s'");
        assert_eq!(quote::literal("a\\b'c"), "E'a\\\\b''c'");
        assert_eq!(
            regclass_expr(&Name::new(Some("My Schema"), "it's \"x\"")),
            "pg_catalog.to_regclass('\"My Schema\".\"it''s \"\"x\"\"\"'::pg_catalog.text)::pg_catalog.oid"
        );
        // Names no relation can have are never sent.
        for bad in [Name::bare(""), Name::new(Some(""), "t"), Name::bare("a\0b")] {
            assert_eq!(regclass_expr(&bad), "NULL::pg_catalog.oid");
        }
        assert_eq!(text_literal(Some("x\0")), "NULL::pg_catalog.text");
        assert_eq!(
            text_array(&["a", "", "b'c", "\0"]),
            "ARRAY['a', 'b''c']::pg_catalog.text[]"
        );
    }

    #[test]
    fn type_names_are_resolved_by_the_server() {
        assert_eq!(type_lookup_name("varchar(20)").as_deref(), Some("varchar"));
        assert_eq!(
            type_lookup_name("timestamp(3) with time zone").as_deref(),
            Some("timestamp with time zone")
        );
        assert_eq!(
            type_lookup_name("pg_catalog.text").as_deref(),
            Some("pg_catalog.text")
        );
        assert_eq!(type_lookup_name("s.text"), None);
        assert_eq!(type_lookup_name("float(20)").as_deref(), Some("float(20)"));
        assert_eq!(type_lookup_name("my_domain"), None);
        assert_eq!(type_regtype_text("select.citext"), "\"select\".citext");
        let q = facts_query(&ddl(
            "ALTER TABLE t ALTER COLUMN c TYPE varchar(50), ALTER COLUMN d TYPE character varying",
        ))
        .expect("query");
        assert!(
            q.contains("ROWS FROM (pg_catalog.unnest(ARRAY['varchar', 'character varying']::pg_catalog.text[]), pg_catalog.unnest(ARRAY['varchar', 'character varying']::pg_catalog.text[]))"),
            "{q}"
        );
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": null, "columns": [], "functions": [], "referenced": [],
               "types": [{"asked": "text", "oid": 16500, "citext": false}, {"asked": "varchar", "oid": 1043, "citext": false}]}"#,
        )
        .expect("facts");
        assert!(!type_resolves_as_written(&facts, "text"));
        assert!(type_resolves_as_written(&facts, "varchar(50)"));
        assert!(!type_resolves_as_written(&facts, "int"));
        assert!(
            parse_facts(
                r#"{"timezone": null, "relation": null, "types": [{"asked": "x", "oid": -1}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn every_index_of_a_drop_index_list_is_asked_about_by_its_table() {
        let q = facts_query(&ddl("DROP INDEX a, s.\"B\", a")).expect("facts");
        // The first index is the relation, the others referenced relations, each once.
        assert!(q.contains("'asked_name', 'a'::pg_catalog.text"), "{q}");
        assert_eq!(
            q.matches("to_regclass('\"s\".\"B\"'::pg_catalog.text)")
                .count(),
            1,
            "{q}"
        );
        // A referenced index is measured by its table (pg_index.indrelid), never by itself.
        assert!(q.contains("coalesce(x.indrelid, c.oid)"), "{q}");
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": null, "referenced": [{"asked_schema": "s",
                "asked_name": "B", "exists": true, "schema": "s", "name": "B", "relkind": "i",
                "table_schema": "s", "table_name": "t", "rows": 0, "max_rows": 0, "bytes": 8192}]}"#,
        )
        .expect("facts");
        let b = facts
            .referenced(&Name::new(Some("s"), "B"))
            .expect("referenced");
        assert_eq!(b.table, Some(Name::new(Some("s"), "t")));
        assert!(b.is_small(&Thresholds::default()));
    }

    #[test]
    fn drop_cascade_asks_for_the_dependents_of_each_object() {
        let q = facts_query(&ddl(
            "DROP FUNCTION IF EXISTS f(int), \"S\".\"it's\" CASCADE",
        ))
        .expect("facts");
        assert!(
            q.contains("'drops', pg_catalog.json_build_array((WITH RECURSIVE cand"),
            "{q}"
        );
        assert!(q.contains("p.proname = 'f'::pg_catalog.name AND n.nspname = ANY (pg_catalog.current_schemas(true))"), "{q}");
        assert!(
            q.contains("p.proname = 'it''s'::pg_catalog.name AND n.nspname = 'S'::pg_catalog.name"),
            "{q}"
        );
        assert!(q.contains("pg_catalog.pg_describe_object"), "{q}");
        for sql in [
            "DROP TYPE t CASCADE",
            "DROP DOMAIN d CASCADE",
            "DROP SCHEMA s CASCADE",
            "DROP EXTENSION e CASCADE",
            "DROP PROCEDURE p CASCADE",
        ] {
            assert!(
                facts_query(&ddl(sql)).is_some_and(|q| q.contains("closure")),
                "{sql}"
            );
        }
        // Kinds whose dependents are not counted, forms not understood, and no CASCADE.
        for sql in [
            "DROP VIEW v CASCADE",
            "DROP TYPE mood[] CASCADE",
            "DROP FUNCTION f(int)",
            "DROP OPERATOR === (int, int) CASCADE",
        ] {
            assert_eq!(facts_query(&ddl(sql)), None, "{sql}");
        }
        // Non-ASCII names are not asked about: no facts for that object.
        let q = facts_query(&ddl("DROP TYPE IF EXISTS \"tÿpe\" CASCADE"));
        assert!(q.is_none_or(|q| !q.contains("closure")));
        // A schema has no schema: no facts for that object (the rule then assumes the worst).
        let q = facts_query(&ddl("DROP SCHEMA a.b CASCADE"));
        assert!(q.is_none_or(|q| !q.contains("closure")));
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": null, "drops": [{"asked_schema": null, "asked_name": "f",
                "candidates": 2, "anywhere": true, "dependents": 1, "escapes": 0,
                "names": ["view v", null]}]}"#,
        )
        .expect("facts");
        assert_eq!(
            facts.drops,
            vec![DropFacts {
                asked: Name::bare("f"),
                candidates: 2,
                anywhere: true,
                dependents: 1,
                escapes: 0,
                names: vec!["view v".to_owned()],
            }]
        );
        assert!(
            parse_facts(
                r#"{"timezone": null, "relation": null, "drops": [{"asked_schema": null, "asked_name": "f",
                    "candidates": -1, "anywhere": true, "dependents": 0, "escapes": 0}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn only_statements_rules_use_facts_for_get_a_query() {
        for sql in [
            "CREATE TABLE t (id int REFERENCES other (id))",
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "DROP INDEX CONCURRENTLY i",
            "ALTER INDEX i SET TABLESPACE x",
            "ALTER VIEW v OWNER TO bob",
            "ALTER VIEW v RENAME TO w",
            "REINDEX INDEX CONCURRENTLY i",
            "REINDEX SCHEMA public",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "ALTER TABLE t OWNER TO bob",
            "VACUUM FULL",
            "VACUUM FULL a, b",
            "CLUSTER",
            "DROP TABLE t",
            "VACUUM t",
        ] {
            assert_eq!(facts_query(&ddl(sql)), None, "{sql}");
        }
        for sql in [
            "CREATE INDEX i ON t (x)",
            "CREATE INDEX i ON ONLY t (x)",
            "ALTER INDEX i RENAME TO j",
            "ALTER MATERIALIZED VIEW v RENAME COLUMN a TO b",
            "DROP INDEX i",
            "REINDEX TABLE t",
            "REFRESH MATERIALIZED VIEW mv",
            "ALTER TABLE t ALTER COLUMN c TYPE text",
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
            // ban-drop-not-null: nothing to drop on a column without NOT NULL.
            "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
            "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()",
            "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES o (id) NOT VALID",
            // Sizes for the small-table allowance.
            "ALTER TABLE t ADD COLUMN c int",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0)",
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "ALTER TABLE t ATTACH PARTITION p FOR VALUES IN (1)",
            "VACUUM FULL t",
            "CLUSTER t",
        ] {
            let q = facts_query(&ddl(sql)).unwrap_or_else(|| panic!("{sql} needs facts"));
            assert!(
                q.starts_with("/* ddlgate catalog facts */ WITH RECURSIVE"),
                "{q}"
            );
        }
    }

    #[test]
    fn query_carries_every_name_as_a_quoted_literal() {
        let q = facts_query(&ddl(
            "ALTER TABLE \"App\".\"it's\" ALTER COLUMN \"Col\"\"1\" TYPE text, ALTER COLUMN \"Col\"\"1\" SET NOT NULL, \
             ADD COLUMN d int DEFAULT \"My_Fn\"(), ADD CONSTRAINT fk FOREIGN KEY (d) REFERENCES s.\"Ref\" (id)",
        ))
        .expect("facts");
        assert!(
            q.contains("pg_catalog.to_regclass('\"App\".\"it''s\"'::pg_catalog.text)"),
            "{q}"
        );
        assert!(q.contains("'asked_schema', 'App'::pg_catalog.text"), "{q}");
        assert!(q.contains("'asked_name', 'it''s'::pg_catalog.text"), "{q}");
        // The column is asked for once, although two sub-commands name it.
        assert!(q.contains("ARRAY['Col\"1']::pg_catalog.text[]"), "{q}");
        assert!(q.contains("ARRAY['My_Fn']::pg_catalog.text[]"), "{q}");
        assert!(
            q.contains("pg_catalog.to_regclass('\"s\".\"Ref\"'::pg_catalog.text)"),
            "{q}"
        );
        // Statements are lexed like any client SQL: the query is one statement.
        assert_eq!(
            crate::sql::lexer::count_statements(q.as_bytes(), LexOptions::default()),
            1
        );
    }

    #[test]
    fn type_changes_follow_the_server() {
        use TypeChange::*;
        let varchar20 = ty("character varying(20)", VARCHAR, 24);
        let varchar = ty("character varying", VARCHAR, -1);
        let text = ty("text", TEXT, -1);
        let ts3 = ty("timestamp(3) without time zone", TIMESTAMP, 3);
        let tstz = ty("timestamp with time zone", TIMESTAMPTZ, -1);
        let citext = ty("citext", 16_450, -1);
        let cases: Vec<(ColumnType, &str, Option<&str>, TypeChange)> = vec![
            (varchar20.clone(), "varchar(50)", None, Free),
            (varchar20.clone(), "character varying(50)", None, Free),
            (varchar20.clone(), "char varying(20)", None, Free),
            (varchar20.clone(), "pg_catalog.varchar(30)", None, Free),
            (varchar20.clone(), "varchar", None, Free),
            (varchar20.clone(), "text", None, Free),
            (varchar20.clone(), "varchar(10)", None, Rewrites),
            (varchar20.clone(), "citext", None, RebuildsIndexes),
            (varchar20.clone(), "public.citext", None, RebuildsIndexes),
            (varchar20.clone(), "bpchar", None, RebuildsIndexes),
            (varchar20.clone(), "char(30)", None, Rewrites),
            (varchar20.clone(), "int", None, Rewrites),
            (varchar20.clone(), "varchar(20)[]", None, Unknown),
            (varchar20.clone(), "\"mytype\"", None, Unknown),
            (varchar20.clone(), "app.varchar(30)", None, Unknown),
            (varchar20.clone(), "varchar(0)", None, Unknown),
            (varchar.clone(), "varchar(10)", None, Rewrites),
            (varchar.clone(), "text", None, Free),
            (text.clone(), "varchar", None, Free),
            (text.clone(), "character varying", None, Free),
            (text.clone(), "varchar(100)", None, Rewrites),
            (text.clone(), "citext", None, RebuildsIndexes),
            (text.clone(), "text", None, Free),
            (numeric(10, 2), "numeric(12,2)", None, Free),
            (numeric(10, 2), "decimal(12, 2)", None, Free),
            (numeric(10, 2), "numeric", None, Free),
            (numeric(10, 2), "numeric(10,2)", None, Free),
            (numeric(10, 2), "numeric(12,3)", None, Rewrites),
            (numeric(10, 2), "numeric(8,2)", None, Rewrites),
            (numeric(10, 2), "numeric(12)", None, Rewrites),
            (ty("numeric", NUMERIC, -1), "numeric(10,2)", None, Rewrites),
            (ts3.clone(), "timestamp(6)", None, Free),
            (ts3.clone(), "timestamp", None, Free),
            (ts3.clone(), "timestamp(3) without time zone", None, Free),
            (ts3.clone(), "timestamp(9)", None, Free),
            (ts3.clone(), "timestamp(2)", None, Rewrites),
            (ts3.clone(), "timestamptz", None, Unknown),
            (ts3.clone(), "timestamptz", Some("UTC"), RebuildsIndexes),
            (
                ts3.clone(),
                "timestamp with time zone",
                Some("Etc/UTC"),
                RebuildsIndexes,
            ),
            (
                ts3.clone(),
                "timestamp(3) with time zone",
                Some("UTC"),
                Rewrites,
            ),
            (ts3.clone(), "timestamptz", Some("Europe/Berlin"), Rewrites),
            (tstz.clone(), "timestamp", Some("utc"), RebuildsIndexes),
            (
                ty("time(2) without time zone", TIME, 2),
                "time(4)",
                None,
                Free,
            ),
            (
                ty("time with time zone", TIMETZ, -1),
                "timetz(3)",
                None,
                Rewrites,
            ),
            (ty("cidr", CIDR, -1), "inet", None, Free),
            (ty("inet", INET, -1), "cidr", None, Rewrites),
            (ty("bit(3)", BIT, 3), "varbit", None, RebuildsIndexes),
            (ty("bit(3)", BIT, 3), "bit varying(5)", None, Rewrites),
            (ty("bit(3)", BIT, 3), "bit(3)", None, Free),
            (ty("bit(3)", BIT, 3), "bit(4)", None, Rewrites),
            (ty("bit varying(5)", VARBIT, 5), "varbit(10)", None, Free),
            (ty("bit varying(5)", VARBIT, 5), "varbit(4)", None, Rewrites),
            (ty("character(5)", BPCHAR, 9), "char(6)", None, Rewrites),
            (ty("character(5)", BPCHAR, 9), "character(5)", None, Free),
            (ty("character(5)", BPCHAR, 9), "char", None, Rewrites),
            (ty("character(5)", BPCHAR, 9), "bpchar", None, Free),
            (ty("character(5)", BPCHAR, 9), "text", None, Rewrites),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval(5)",
                None,
                Free,
            ),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval",
                None,
                Free,
            ),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval(2)",
                None,
                Rewrites,
            ),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval day to second",
                None,
                Unknown,
            ),
            (
                ty("interval year", INTERVAL, 327_679),
                "interval(0)",
                None,
                Free,
            ),
            (ty("interval", INTERVAL, -1), "interval(3)", None, Rewrites),
            (ty("integer", INT4, -1), "bigint", None, Rewrites),
            (ty("integer", INT4, -1), "int", None, Free),
            (ty("integer", INT4, -1), "integer", None, Free),
            (ty("real", FLOAT4, -1), "float(20)", None, Free),
            (ty("real", FLOAT4, -1), "float", None, Rewrites),
            (ty("json", JSON, -1), "jsonb", None, Rewrites),
            (citext.clone(), "text", None, RebuildsIndexes),
            (citext.clone(), "varchar(10)", None, Rewrites),
            (citext.clone(), "citext", None, Free),
            (citext.clone(), "public.citext", None, Free),
            (ty("mytype", 99_999, -1), "text", None, Unknown),
            (ty("integer[]", 1007, -1), "bigint[]", None, Unknown),
        ];
        for (from, to, tz, expected) in cases {
            assert_eq!(
                type_change(&from, to, tz),
                expected,
                "{} -> {to} (TimeZone {tz:?})",
                from.formatted
            );
        }
        assert_eq!(is_binary_coercible(&varchar20, "text"), Some(true));
        assert_eq!(is_binary_coercible(&varchar20, "citext"), Some(true));
        assert_eq!(is_binary_coercible(&varchar20, "varchar(5)"), Some(false));
        assert_eq!(is_binary_coercible(&ts3, "timestamptz"), None);
        assert_eq!(is_binary_coercible(&varchar20, "my_domain"), None);
    }

    #[test]
    fn type_text_parsing_tolerates_spacing_but_not_garbage() {
        for (text, ok) in [
            ("numeric( 10 , 2 )", true),
            ("NUMERIC(10,2)", true),
            ("numeric(10,-2)", true),
            ("numeric(10.5)", false),
            ("numeric(10,2,3)", false),
            ("numeric(", false),
            ("varchar(20) collate", false),
            ("text(3)", false),
            ("a.b.text", false),
            ("", false),
            ("timestamp(-1)", false),
        ] {
            assert_eq!(parse_type(text).is_some(), ok, "{text:?}");
        }
        assert!(is_collatable("varchar(3)") && is_collatable("citext") && is_collatable("??"));
        assert!(!is_collatable("numeric(3)"));
    }

    #[test]
    fn not_null_checks_are_recognised_on_tokens() {
        for (def, column, proves) in [
            ("CHECK ((email IS NOT NULL))", "email", true),
            ("CHECK ((email IS NOT NULL)) NO INHERIT", "email", true),
            (
                "CHECK (((email IS NOT NULL) AND (length((email)::text) > 0)))",
                "email",
                true,
            ),
            (
                "CHECK (((note = 'x) AND (y IS NOT NULL'::text) AND (y IS NOT NULL)))",
                "y",
                true,
            ),
            (
                "CHECK (((note = 'x) AND (y IS NOT NULL'::text) AND (z > 0)))",
                "y",
                false,
            ),
            ("CHECK (((email IS NOT NULL) OR (x > 0)))", "email", false),
            ("CHECK ((length((email)::text) > 0))", "email", false),
            ("CHECK ((NOT (email IS NULL)))", "email", false),
            ("CHECK ((other IS NOT NULL))", "email", false),
            ("CHECK ((\"Email\" IS NOT NULL))", "Email", true),
            ("CHECK ((\"Email\" IS NOT NULL))", "email", false),
            ("CHECK ((\"a\"\"b\" IS NOT NULL))", "a\"b", true),
            ("CHECK ((email IS NOT NULL)", "email", false),
            ("FOREIGN KEY (email) REFERENCES t(email)", "email", false),
            ("", "email", false),
        ] {
            assert_eq!(
                check_proves_not_null(def, column),
                proves,
                "{def} for {column}"
            );
        }
        // Hostile nesting of AND groups: bounded, and the answer is the conservative one.
        let deep = format!(
            "CHECK ({}(email IS NOT NULL){})",
            "(x AND ".repeat(100_000),
            ")".repeat(100_000)
        );
        let worker = std::thread::Builder::new().stack_size(2 << 20);
        let proves = worker
            .spawn(move || check_proves_not_null(&deep, "email"))
            .expect("spawn")
            .join()
            .expect("no overflow");
        assert!(!proves);
    }

    const DOCUMENT: &str = r#"{
        "timezone": "UTC",
        "relation": {"asked_schema": null, "asked_name": "events", "exists": true,
            "schema": "public", "name": "events", "relkind": "p",
            "table_schema": null, "table_name": null, "rows": 1200, "bytes": 65536,
            "populated": null, "refresh_index": null,
            "partitions": [
                {"schema": "public", "name": "events_2026", "parent_schema": "public",
                 "parent_name": "events", "relkind": "p", "level": 1},
                {"schema": "public", "name": "events_2026_01", "parent_schema": "public",
                 "parent_name": "events_2026", "relkind": "r", "level": 2}]},
        "columns": [
            {"name": "email", "exists": true, "type": "character varying(20)", "type_oid": 1043,
             "typmod": 24, "not_null": false, "collation": "C",
             "checks": [{"name": "email_nn", "definition": "CHECK ((email IS NOT NULL))"},
                        {"name": "email_len", "definition": "CHECK ((length((email)::text) > 3))"}],
             "indexes": [{"name": "events_email_idx", "plain": true}]},
            {"name": "gone", "exists": false, "type": null, "type_oid": null, "typmod": null,
             "not_null": null, "collation": null, "checks": [], "indexes": []}],
        "functions": [{"name": "now", "volatility": ["s"]},
                      {"name": "f", "volatility": ["s", "v"]},
                      {"name": "nope", "volatility": []}],
        "referenced": [{"asked_schema": "s", "asked_name": "Ref", "exists": false,
            "schema": null, "name": null, "relkind": null}]
    }"#;

    #[test]
    fn parses_the_document() {
        let facts = parse_facts(DOCUMENT).expect("parses");
        let events = Name::bare("events");
        let r = facts.relation_for(&events).expect("relation");
        assert!(r.exists && r.is_partitioned());
        assert_eq!(r.kind, Some(RelKind::PartitionedTable));
        assert_eq!(r.name, Some(Name::new(Some("public"), "events")));
        assert_eq!((r.rows, r.bytes), (Some(1200), Some(65536)));
        assert!(r.is_small(&Thresholds::default()));
        assert!(!r.is_small(&Thresholds {
            small_table_rows: 1000,
            ..Thresholds::default()
        }));
        assert_eq!(r.size_description(), "about 1200 rows, 64 kB");
        let leaves: Vec<_> = r.leaf_partitions().map(|p| p.name.to_string()).collect();
        assert_eq!(leaves, ["public.events_2026_01"]);
        assert_eq!(
            r.partitions[1].parent,
            Name::new(Some("public"), "events_2026")
        );
        assert_eq!(r.partitions[1].level, 2);
        // Facts are only handed out for the name they were read for.
        assert!(
            facts
                .relation_for(&Name::new(Some("public"), "events"))
                .is_none()
        );
        assert!(facts.column(&Name::bare("other"), "email").is_none());

        let email = facts.column(&events, "email").expect("column");
        assert!(email.exists && email.valid_not_null_check && !email.not_null);
        assert_eq!(email.checks, ["email_nn", "email_len"]);
        assert_eq!(email.collation.as_deref(), Some("C"));
        assert_eq!(
            email.data_type,
            Some(ColumnType {
                formatted: "character varying(20)".into(),
                oid: 1043,
                typmod: 24
            })
        );
        assert_eq!(email.indexes[0].name, "events_email_idx");
        let gone = facts.column(&events, "gone").expect("asked");
        assert!(!gone.exists && gone.data_type.is_none());

        assert_eq!(facts.volatility("now"), Some(&[Volatility::Stable][..]));
        assert_eq!(
            facts.volatility("f"),
            Some(&[Volatility::Stable, Volatility::Volatile][..])
        );
        assert_eq!(facts.volatility("nope"), None);
        assert_eq!(facts.volatility("never_asked"), None);
        let referenced = facts
            .referenced(&Name::new(Some("s"), "Ref"))
            .expect("referenced");
        assert!(!referenced.exists);
        assert_eq!(facts.timezone.as_deref(), Some("UTC"));
        assert_eq!(facts.thresholds, Thresholds::default());
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        for bad in [
            "",
            "null",
            "[]",
            "{\"relation\": 3}",
            "{\"relation\": {\"asked_name\": \"t\", \"exists\": true, \"schema\": null, \"name\": null, \"relkind\": \"rr\", \"asked_schema\": null}}",
            "{\"columns\": [{\"name\": \"c\", \"exists\": true, \"type\": \"x\", \"type_oid\": -1, \"typmod\": 0, \"not_null\": true, \"collation\": null}]}",
            "{\"columns\": [{\"name\": \"c\", \"exists\": true, \"type\": \"x\", \"type_oid\": 1, \"typmod\": 99999999999, \"not_null\": true, \"collation\": null}]}",
        ] {
            assert!(parse_facts(bad).is_err(), "{bad}");
        }
        // Unknown relkinds and volatilities from a newer server are kept, cautiously.
        let f = parse_facts(
            r#"{"relation": {"asked_schema": null, "asked_name": "t", "exists": true, "schema": "public",
                "name": "t", "relkind": "Z", "rows": -5, "bytes": null},
                "functions": [{"name": "g", "volatility": ["x"]}]}"#,
        )
        .expect("parses");
        let r = f.relation.expect("relation");
        assert_eq!(r.kind, Some(RelKind::Other('Z')));
        assert_eq!(r.rows, None);
        assert_eq!(f.functions[0].volatility, [Volatility::Volatile]);
        assert_eq!(parse_facts("{}").expect("empty").relation, None);
    }

    #[test]
    fn size_decision_uses_the_exact_heap_bound_when_rows_are_unknown() {
        let t = Thresholds {
            small_table_rows: 10_000,
            small_table_bytes: 10 << 20,
        };
        let base = Relation {
            exists: true,
            kind: Some(RelKind::Table),
            ..Relation::missing(Name::bare("e"))
        };
        let sized = |rows: Option<u64>, max_rows: Option<u64>, bytes: Option<u64>| Relation {
            rows,
            max_rows,
            bytes,
            ..base.clone()
        };
        // (case, relation, small)
        let cases = [
            // Never analyzed, heap of 0 pages: empty, small.
            ("fresh empty", sized(None, Some(0), Some(8192)), true),
            // Never analyzed, a few pages: cannot hold 10 000 rows.
            (
                "fresh, 4 pages",
                sized(None, Some(4 * 291), Some(48 << 10)),
                true,
            ),
            // Never analyzed, a heap that could hold the limit: unknown, not small.
            (
                "fresh, heap at the limit",
                sized(None, Some(10_000), Some(400 << 10)),
                false,
            ),
            // Under the row bound but over the byte limit (big TOAST or indexes).
            (
                "fresh, big toast",
                sized(None, Some(291), Some(10 << 20)),
                false,
            ),
            // Not measured (a lock blocked it): never small, whatever else is known.
            ("lock blocked", sized(None, None, None), false),
            ("lock blocked, analyzed", sized(Some(5), None, None), false),
            ("bytes only", sized(None, None, Some(8192)), false),
            // Analyzed: the estimate still counts, as before.
            (
                "analyzed small",
                sized(Some(200), Some(20_000), Some(1 << 20)),
                true,
            ),
            (
                "analyzed big",
                sized(Some(2_000_000), None, Some(1 << 20)),
                false,
            ),
            (
                "analyzed big, tiny heap",
                sized(Some(2_000_000), Some(291), Some(8192)),
                true,
            ),
            ("missing", Relation::missing(Name::bare("e")), false),
        ];
        for (case, r, small) in cases {
            assert_eq!(r.is_small(&t), small, "{case}");
        }
        let mut r = sized(Some(1), Some(0), Some(0));
        r.forget_size();
        assert!(!r.is_small(&t));
    }

    #[test]
    fn parses_heap_bounds_and_referenced_sizes() {
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": {"asked_schema": null, "asked_name": "e",
                "exists": true, "schema": "public", "name": "e", "relkind": "r",
                "rows": null, "max_rows": 0, "bytes": 8192},
              "referenced": [{"asked_schema": null, "asked_name": "p", "exists": true,
                "schema": "public", "name": "p", "relkind": "r",
                "rows": null, "max_rows": 582, "bytes": 16384}]}"#,
        )
        .expect("parses");
        let e = facts.relation.as_ref().expect("relation");
        assert_eq!((e.rows, e.max_rows, e.bytes), (None, Some(0), Some(8192)));
        assert!(e.is_small(&facts.thresholds));
        let p = facts.referenced(&Name::bare("p")).expect("referenced");
        assert_eq!((p.max_rows, p.bytes), (Some(582), Some(16384)));
        assert!(p.is_small(&facts.thresholds));
    }

    #[test]
    fn sizes_read_like_pg_size_pretty() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(10 * 1024 - 1), "10239 bytes");
        assert_eq!(human_bytes(10 * 1024), "10 kB");
        assert_eq!(human_bytes(85 * 1024 * 1024), "85 MB");
        assert_eq!(
            human_bytes(u64::MAX),
            format!("{} TB", (u64::MAX >> 40) + 1)
        );
    }
}

/// Hand-built facts for the rules' table-driven tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// An existing plain table with the given size.
    pub fn table(name: &str, rows: u64, bytes: u64) -> Relation {
        Relation {
            exists: true,
            name: Some(Name::new(Some("public"), name)),
            kind: Some(RelKind::Table),
            rows: Some(rows),
            bytes: Some(bytes),
            ..Relation::missing(Name::bare(name))
        }
    }

    /// A partitioned table with `leaves` leaf partitions holding `rows` rows in `bytes` bytes.
    pub fn partitioned(name: &str, leaves: usize, rows: u64, bytes: u64) -> Relation {
        let parent = Name::new(Some("public"), name);
        Relation {
            kind: Some(RelKind::PartitionedTable),
            partitions: (0..leaves)
                .map(|i| Partition {
                    name: Name::new(Some("public"), &format!("{name}_{i}")),
                    parent: parent.clone(),
                    kind: RelKind::Table,
                    level: 1,
                })
                .collect(),
            ..table(name, rows, bytes)
        }
    }

    /// An existing column of the given type, without constraints or indexes.
    pub fn column(name: &str, formatted: &str, oid: u32, typmod: i32) -> ColumnFacts {
        ColumnFacts {
            name: name.to_owned(),
            exists: true,
            data_type: Some(ColumnType {
                formatted: formatted.to_owned(),
                oid,
                typmod,
            }),
            type_is_citext: Some(formatted.rsplit('.').next() == Some("citext")),
            ..ColumnFacts::default()
        }
    }

    /// Facts about `relation` (and its `columns`), read in a UTC session whose search_path
    /// resolves every built-in type name to the built-in (see [`builtin_types`]).
    pub fn facts(relation: Relation, columns: Vec<ColumnFacts>) -> Facts {
        Facts {
            relation: Some(relation),
            columns,
            timezone: Some("UTC".to_owned()),
            types: builtin_types(),
            ..Facts::default()
        }
    }

    /// Every type spelling ddlgate knows, resolved to itself (citext as the extension's).
    pub fn builtin_types() -> Vec<TypeFacts> {
        const SPELLINGS: &[&str] = &[
            "varchar",
            "character varying",
            "char varying",
            "char",
            "character",
            "bpchar",
            "numeric",
            "decimal",
            "dec",
            "timestamp",
            "timestamp without time zone",
            "timestamptz",
            "timestamp with time zone",
            "time",
            "time without time zone",
            "timetz",
            "time with time zone",
            "interval",
            "bit",
            "varbit",
            "bit varying",
            "float",
            "text",
            "smallint",
            "int2",
            "int",
            "integer",
            "int4",
            "bigint",
            "int8",
            "real",
            "float4",
            "double precision",
            "float8",
            "bool",
            "boolean",
            "bytea",
            "date",
            "uuid",
            "json",
            "jsonb",
            "xml",
            "inet",
            "cidr",
            "macaddr",
            "macaddr8",
            "money",
            "citext",
            "pg_catalog.text",
            "pg_catalog.varchar",
            "pg_catalog.int8",
            "public.citext",
        ];
        SPELLINGS
            .iter()
            .filter_map(|s| {
                let t = parse_type(s)?;
                Some(TypeFacts {
                    asked: (*s).to_owned(),
                    oid: match t.ty {
                        Ty::Oid(oid) => Some(oid),
                        Ty::Citext => Some(16_385),
                    },
                    citext: t.ty == Ty::Citext,
                })
            })
            .collect()
    }
}
