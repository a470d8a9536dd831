//! The catalog facts as the rules see them: [`Facts`] about one statement's objects, the
//! [`Relation`]s, [`Partition`]s, columns and functions in it, the size [`Thresholds`], and
//! [`CatalogError`]. Plain data: `query` asks for it, `parse` fills it in.

use crate::sql::statement::Name;

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
    /// The index a statement names inside its table's schema: the one `CREATE INDEX … IF NOT
    /// EXISTS name` would find there (and then skip), the one `ADD … USING INDEX name` takes
    /// over. `None` when not read.
    pub index: Option<IndexFacts>,
    /// The constraint `VALIDATE CONSTRAINT name` validates, on `relation`. `None` when not
    /// read.
    pub constraint: Option<ConstraintFacts>,
    /// Where "small" ends. Not read from the catalog: the session fills it from its config
    /// ([`Facts::set_thresholds`]).
    pub thresholds: Thresholds,
    /// For a `DO` block: the facts of the statements of its body that may be decided with
    /// facts read before the block runs (`rules::body::facts_plan`), each by the statement's
    /// byte span in the body. Empty for every other statement, and for a block whose
    /// conditions the read could not prove to read only the system catalogs.
    pub body: Vec<BodyFacts>,
}

/// The facts of one statement inside a `DO` block's body (see [`Facts::body`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BodyFacts {
    /// The statement's span in the body, as the PL/pgSQL reader hands it to the rules.
    pub start: usize,
    pub end: usize,
    pub facts: Facts,
}

impl Facts {
    /// Sets where "small" ends, for these facts and those of a `DO` block's statements.
    pub fn set_thresholds(&mut self, t: Thresholds) {
        self.thresholds = t;
        for b in &mut self.body {
            b.facts.set_thresholds(t);
        }
    }

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

    /// The schema of `table` (as the catalog resolved it) when these facts show an INVALID
    /// index named `index` on it — what a failed `CREATE INDEX CONCURRENTLY` leaves, and what
    /// `CREATE INDEX … IF NOT EXISTS index` would find and keep. `None` otherwise, and for a
    /// partitioned table (its indexes are never built concurrently).
    pub fn invalid_index_leftover(&self, table: &Name, index: &str) -> Option<&str> {
        let r = self.relation_for(table).filter(|r| r.exists)?;
        if r.is_partitioned() {
            return None;
        }
        let i = self.index.as_ref()?;
        let index = crate::sql::naming::truncate(index);
        (i.asked == index && i.exists && i.on_table && !i.valid)
            .then(|| r.name.as_ref()?.schema.as_deref())
            .flatten()
    }

    /// The key columns of index `index` that are not (validly) NOT NULL, when these facts show
    /// it is an index on `table`: what `ADD PRIMARY KEY USING INDEX index` would run `SET NOT
    /// NULL` on, scanning the table under ACCESS EXCLUSIVE. `None` when not known; an empty
    /// list when every key column is NOT NULL already. Expression columns (which a primary
    /// key refuses anyway) are not listed.
    pub fn nullable_key_columns(&self, table: &Name, index: &str) -> Option<Vec<&str>> {
        self.relation_for(table).filter(|r| r.exists)?;
        let index = crate::sql::naming::truncate(index);
        let i = self
            .index
            .as_ref()
            .filter(|i| i.asked == index && i.exists && i.on_table)?;
        Some(
            i.key_columns
                .iter()
                .filter(|c| !c.not_null)
                .filter_map(|c| c.name.as_deref())
                .collect(),
        )
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
///
/// When one statement drops several objects, PostgreSQL drops them together, so a dependent
/// that is (or is part of) another object of the same statement is not one — but only objects
/// whose name has a single candidate, and no function, are taken as dropped for that
/// (`query::dropped_ctes`): a candidate the statement may not drop never excuses a dependent.
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
    /// A few of the dependents, as `pg_describe_object` names them (a view's `_RETURN` rule as
    /// the view or materialized view it defines).
    pub names: Vec<String>,
}

/// A named index, looked up in the schema of the statement's table (where PostgreSQL puts a
/// new index and looks for the index of `USING INDEX`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFacts {
    /// The name as the statement wrote it (folded, truncated to 63 bytes as PostgreSQL does).
    pub asked: String,
    /// A relation of that name exists in the table's schema (of any kind: `CREATE INDEX … IF
    /// NOT EXISTS` skips for any).
    pub exists: bool,
    /// It is an index on the statement's table (`pg_index.indrelid` is the table's OID).
    pub on_table: bool,
    /// `pg_index.indisvalid`: false for what a failed `CREATE INDEX CONCURRENTLY` leaves.
    pub valid: bool,
    /// Its key columns in order (not its INCLUDE columns).
    pub key_columns: Vec<IndexColumn>,
}

/// One key column of an index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexColumn {
    /// The column, or `None` for an expression.
    pub name: Option<String>,
    /// NOT NULL with a validated constraint (`attnotnull`, and no NOT VALID not-null
    /// constraint on PostgreSQL 18): `ADD PRIMARY KEY USING INDEX` does not scan for it.
    pub not_null: bool,
}

/// The constraint a `VALIDATE CONSTRAINT` names, on the statement's table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConstraintFacts {
    /// The name as the statement wrote it (folded, truncated to 63 bytes).
    pub asked: String,
    pub exists: bool,
    /// `pg_constraint.convalidated`.
    pub validated: bool,
    /// `pg_constraint.contype` (`c`, `f`, `n`, …).
    pub contype: Option<char>,
    /// Its `pg_constraint` row was written by the client's own transaction (its `xmin` is one
    /// of the xids this backend holds: see `crate::created`): it was added (or altered) earlier
    /// in this transaction, whose locks from then are still held.
    pub own_transaction: bool,
    /// The strongest lock the client's session already holds on the table that a validation
    /// scan would then keep (`AccessExclusiveLock`, `ExclusiveLock`,
    /// `ShareRowExclusiveLock`), as `pg_locks.mode` names it.
    pub held_lock: Option<String>,
}

/// One type name, as the server resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFacts {
    /// The name as ddlgate reads the statement's type ([`type_lookup_name`](super::type_lookup_name)), e.g.
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
    /// For a partition (`relispartition`): its parent and what decides whether it can be
    /// detached concurrently. `None` for anything else.
    pub partition_of: Option<PartitionOf>,
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
            partition_of: None,
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

/// Where a partition is attached (`pg_inherits`), for `DROP TABLE partition`: detached
/// `CONCURRENTLY` first (PostgreSQL 14+) unless the parent has a DEFAULT partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOf {
    /// The partitioned table it is a partition of, schema-qualified.
    pub parent: Name,
    /// The parent has a DEFAULT partition (`pg_partitioned_table.partdefid`): PostgreSQL then
    /// refuses `DETACH PARTITION … CONCURRENTLY`.
    pub parent_has_default: bool,
    /// A `DETACH … CONCURRENTLY` of it was interrupted (`pg_inherits.inhdetachpending`,
    /// PostgreSQL 14+; `false` before): it must be finished with `DETACH … FINALIZE`.
    pub detach_pending: bool,
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
    /// Has a default expression (`atthasdef`, not a generated column's expression).
    pub has_default: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn named_index_facts_decide_leftovers_and_nullable_keys() {
        let long = "i".repeat(70);
        let stored = "i".repeat(63);
        let table = Relation {
            exists: true,
            name: Some(Name::new(Some("app"), "t")),
            kind: Some(RelKind::Table),
            ..Relation::missing(Name::bare("t"))
        };
        let with = |relation: Relation, index: IndexFacts| Facts {
            relation: Some(relation),
            index: Some(index),
            ..Facts::default()
        };
        let index = |asked: &str, on_table, valid| IndexFacts {
            asked: asked.to_owned(),
            exists: true,
            on_table,
            valid,
            key_columns: vec![
                IndexColumn {
                    name: Some("a".into()),
                    not_null: true,
                },
                IndexColumn {
                    name: Some("b".into()),
                    not_null: false,
                },
                IndexColumn {
                    name: None,
                    not_null: false,
                },
            ],
        };
        let t = Name::bare("t");
        // (case, facts, asked index, leftover schema, nullable key columns)
        type Case<'a> = (
            &'a str,
            Facts,
            &'a str,
            Option<&'a str>,
            Option<Vec<&'a str>>,
        );
        let cases: Vec<Case> = vec![
            (
                "invalid on t",
                with(table.clone(), index("i", true, false)),
                "i",
                Some("app"),
                Some(vec!["b"]),
            ),
            (
                "valid on t",
                with(table.clone(), index("i", true, true)),
                "i",
                None,
                Some(vec!["b"]),
            ),
            (
                "on another table",
                with(table.clone(), index("i", false, false)),
                "i",
                None,
                None,
            ),
            (
                "facts for another name",
                with(table.clone(), index("j", true, false)),
                "i",
                None,
                None,
            ),
            (
                "a name PostgreSQL truncates",
                with(table.clone(), index(&stored, true, false)),
                &long,
                Some("app"),
                Some(vec!["b"]),
            ),
            (
                "partitioned: no concurrent rebuild",
                with(
                    Relation {
                        kind: Some(RelKind::PartitionedTable),
                        ..table.clone()
                    },
                    index("i", true, false),
                ),
                "i",
                None,
                Some(vec!["b"]),
            ),
            (
                "table missing",
                with(Relation::missing(t.clone()), index("i", true, false)),
                "i",
                None,
                None,
            ),
        ];
        for (case, facts, asked, leftover, nullable) in cases {
            assert_eq!(facts.invalid_index_leftover(&t, asked), leftover, "{case}");
            assert_eq!(facts.nullable_key_columns(&t, asked), nullable, "{case}");
        }
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
