//! The prechecks of recipe steps: the catalog condition under which a step is already done
//! (so a re-run after a failure resumes instead of failing), as SQL and as words for people.

use crate::sql::quote;
use crate::sql::statement::Name;

/// `pg_constraint.contype` of the constraints recipes add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintType {
    Check,
    ForeignKey,
    Unique,
    PrimaryKey,
    /// A not-null constraint (PostgreSQL 18 records them in `pg_constraint`).
    NotNull,
}

impl ConstraintType {
    fn contype(self) -> char {
        match self {
            ConstraintType::Check => 'c',
            ConstraintType::ForeignKey => 'f',
            ConstraintType::Unique => 'u',
            ConstraintType::PrimaryKey => 'p',
            ConstraintType::NotNull => 'n',
        }
    }

    fn words(self) -> &'static str {
        match self {
            ConstraintType::Check => "CHECK",
            ConstraintType::ForeignKey => "FOREIGN KEY",
            ConstraintType::Unique => "UNIQUE",
            ConstraintType::PrimaryKey => "PRIMARY KEY",
            ConstraintType::NotNull => "NOT NULL",
        }
    }
}

/// A catalog question a step's executor asks before running it. [`Precheck::sql`] is one
/// `SELECT` returning exactly one row with one boolean column. Tables are resolved with
/// `to_regclass` on the name as the statement wrote it, i.e. through the session's
/// `search_path` exactly like the step itself; a table that does not exist makes every
/// question `false`, so the step runs and fails with PostgreSQL's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// A constraint `name` of that type exists on `table` (validated or not).
    ConstraintExists {
        table: Name,
        name: String,
        contype: ConstraintType,
    },
    /// A constraint `name` of any type exists on `table`.
    ConstraintNamed { table: Name, name: String },
    /// Constraint `name` on `table` exists and is validated.
    ConstraintValidated { table: Name, name: String },
    /// Constraint `name` on `table` is a CHECK on exactly `column` — the recipe's temporary
    /// `CHECK (column IS NOT NULL)`; a different constraint of that name is never touched.
    NotNullCheckExists {
        table: Name,
        name: String,
        column: String,
    },
    /// Column `column` of `table` exists.
    ColumnExists { table: Name, column: String },
    /// `column` is NOT NULL and the constraint behind it is validated. Before PostgreSQL 18
    /// that is `attnotnull`; from 18 on `attnotnull` is also set by a NOT VALID not-null
    /// constraint, which must not count.
    ColumnNotNull { table: Name, column: String },
    /// `column` has a not-null constraint, validated or not (`attnotnull`).
    ColumnHasNotNullConstraint { table: Name, column: String },
    /// `column` has a NOT VALID not-null constraint still waiting for validation (PG 18+;
    /// always `false` before).
    NotNullPending { table: Name, column: String },
    /// An index `index` on `table` exists (valid or not).
    IndexExists { table: Name, index: String },
    /// An index `index` on `table` exists and is valid.
    IndexValid { table: Name, index: String },
    /// An index `index` on `table` exists and is INVALID: what a failed concurrent build
    /// leaves behind.
    IndexInvalid { table: Name, index: String },
    /// Index `index` on `table` is attached as a partition of index `parent_index` on
    /// `parent_table`.
    IndexAttached {
        parent_table: Name,
        parent_index: String,
        table: Name,
        index: String,
    },
    /// `partition` is attached to `parent` (`pg_inherits`, a pending detach included).
    PartitionOf { parent: Name, partition: Name },
    /// A concurrent detach of `partition` from `parent` was interrupted and awaits `DETACH …
    /// FINALIZE` (`pg_inherits.inhdetachpending`, PostgreSQL 14+).
    DetachPending { parent: Name, partition: Name },
    /// A relation `name` exists (`to_regclass`).
    RelationExists { name: Name },
    /// No relation of that name exists (`to_regclass` finds nothing): the index a step drops
    /// is already gone.
    RelationGone { name: Name },
    /// Any of these holds.
    Any(Vec<Precheck>),
    /// This does not hold.
    Not(Box<Precheck>),
}

impl Precheck {
    /// The query: one row, one boolean column (`t` / `f` in the text format).
    pub fn sql(&self) -> String {
        format!("SELECT {}", self.condition())
    }

    /// The boolean SQL expression behind [`Precheck::sql`].
    pub fn condition(&self) -> String {
        match self {
            Precheck::ConstraintExists {
                table,
                name,
                contype,
            } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = {} \
                 AND conname = {} AND contype = '{}')",
                regclass(table),
                quote::literal(name),
                contype.contype()
            ),
            Precheck::ConstraintNamed { table, name } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = {} \
                 AND conname = {})",
                regclass(table),
                quote::literal(name)
            ),
            Precheck::ConstraintValidated { table, name } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = {} \
                 AND conname = {} AND convalidated)",
                regclass(table),
                quote::literal(name)
            ),
            Precheck::NotNullCheckExists {
                table,
                name,
                column,
            } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attname = {} \
                 WHERE c.conrelid = {} AND c.conname = {} AND c.contype = 'c' \
                 AND c.conkey = ARRAY[a.attnum])",
                quote::literal(column),
                regclass(table),
                quote::literal(name)
            ),
            Precheck::ColumnExists { table, column } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = {} \
                 AND attname = {} AND attnum > 0 AND NOT attisdropped)",
                regclass(table),
                quote::literal(column)
            ),
            Precheck::ColumnNotNull { table, column } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = {rel} \
                 AND a.attname = {col} AND a.attnotnull AND NOT a.attisdropped \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
                 WHERE c.conrelid = a.attrelid AND c.contype = 'n' \
                 AND c.conkey = ARRAY[a.attnum] AND NOT c.convalidated))",
                rel = regclass(table),
                col = quote::literal(column)
            ),
            Precheck::ColumnHasNotNullConstraint { table, column } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = {} \
                 AND attname = {} AND attnotnull AND NOT attisdropped)",
                regclass(table),
                quote::literal(column)
            ),
            Precheck::NotNullPending { table, column } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attname = {} \
                 WHERE c.conrelid = {} AND c.contype = 'n' AND c.conkey = ARRAY[a.attnum] \
                 AND NOT c.convalidated)",
                quote::literal(column),
                regclass(table)
            ),
            Precheck::IndexExists { table, index } => index_condition(table, index, ""),
            Precheck::IndexValid { table, index } => {
                index_condition(table, index, " AND i.indisvalid")
            }
            Precheck::IndexInvalid { table, index } => {
                index_condition(table, index, " AND NOT i.indisvalid")
            }
            Precheck::IndexAttached {
                parent_table,
                parent_index,
                table,
                index,
            } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h \
                 JOIN pg_catalog.pg_index ci ON ci.indexrelid = h.inhrelid \
                 JOIN pg_catalog.pg_class cc ON cc.oid = h.inhrelid \
                 JOIN pg_catalog.pg_index pi ON pi.indexrelid = h.inhparent \
                 JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent \
                 WHERE ci.indrelid = {} AND cc.relname = {} \
                 AND pi.indrelid = {} AND pc.relname = {})",
                regclass(table),
                quote::literal(index),
                regclass(parent_table),
                quote::literal(parent_index)
            ),
            Precheck::PartitionOf { parent, partition } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = {} \
                 AND inhrelid = {})",
                regclass(parent),
                regclass(partition)
            ),
            Precheck::DetachPending { parent, partition } => format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = {} \
                 AND inhrelid = {} AND inhdetachpending)",
                regclass(parent),
                regclass(partition)
            ),
            Precheck::RelationExists { name } => format!("{} IS NOT NULL", regclass(name)),
            Precheck::RelationGone { name } => format!("{} IS NULL", regclass(name)),
            Precheck::Any(list) => {
                if list.is_empty() {
                    return "false".to_owned();
                }
                let parts: Vec<String> = list
                    .iter()
                    .map(|p| format!("({})", p.condition()))
                    .collect();
                parts.join(" OR ")
            }
            Precheck::Not(p) => format!("NOT ({})", p.condition()),
        }
    }

    /// The question in words, for the NOTICE.
    pub fn describe(&self) -> String {
        match self {
            Precheck::ConstraintExists {
                table,
                name,
                contype,
            } => format!(
                "{} constraint {} exists on {}",
                contype.words(),
                quote::ident_if_needed(name),
                quote::name_if_needed(table)
            ),
            Precheck::ConstraintNamed { table, name } => format!(
                "a constraint {} exists on {}",
                quote::ident_if_needed(name),
                quote::name_if_needed(table)
            ),
            Precheck::ConstraintValidated { table, name } => format!(
                "constraint {} on {} is validated",
                quote::ident_if_needed(name),
                quote::name_if_needed(table)
            ),
            Precheck::NotNullCheckExists {
                table,
                name,
                column,
            } => format!(
                "CHECK constraint {} on column {} of {} exists",
                quote::ident_if_needed(name),
                quote::ident_if_needed(column),
                quote::name_if_needed(table)
            ),
            Precheck::ColumnExists { table, column } => format!(
                "column {} exists on {}",
                quote::ident_if_needed(column),
                quote::name_if_needed(table)
            ),
            Precheck::ColumnNotNull { table, column } => format!(
                "column {} of {} is already NOT NULL",
                quote::ident_if_needed(column),
                quote::name_if_needed(table)
            ),
            Precheck::ColumnHasNotNullConstraint { table, column } => format!(
                "column {} of {} has a not-null constraint",
                quote::ident_if_needed(column),
                quote::name_if_needed(table)
            ),
            Precheck::NotNullPending { table, column } => format!(
                "column {} of {} has a not-null constraint awaiting validation",
                quote::ident_if_needed(column),
                quote::name_if_needed(table)
            ),
            Precheck::IndexExists { table, index } => format!(
                "index {} exists on {}",
                quote::ident_if_needed(index),
                quote::name_if_needed(table)
            ),
            Precheck::IndexValid { table, index } => format!(
                "index {} on {} exists and is valid",
                quote::ident_if_needed(index),
                quote::name_if_needed(table)
            ),
            Precheck::IndexInvalid { table, index } => format!(
                "index {} on {} exists and is INVALID",
                quote::ident_if_needed(index),
                quote::name_if_needed(table)
            ),
            Precheck::IndexAttached {
                parent_index,
                index,
                ..
            } => format!(
                "index {} is already attached to {}",
                quote::ident_if_needed(index),
                quote::ident_if_needed(parent_index)
            ),
            Precheck::PartitionOf { parent, partition } => format!(
                "{} is a partition of {}",
                quote::name_if_needed(partition),
                quote::name_if_needed(parent)
            ),
            Precheck::DetachPending { parent, partition } => format!(
                "{} is pending detach from {}",
                quote::name_if_needed(partition),
                quote::name_if_needed(parent)
            ),
            Precheck::RelationExists { name } => {
                format!("{} exists", quote::name_if_needed(name))
            }
            Precheck::RelationGone { name } => {
                format!("{} no longer exists", quote::name_if_needed(name))
            }
            Precheck::Any(list) => list
                .iter()
                .map(Precheck::describe)
                .collect::<Vec<_>>()
                .join(", or "),
            Precheck::Not(p) => match p.as_ref() {
                Precheck::IndexInvalid { table, index } => format!(
                    "there is no INVALID index {} on {}",
                    quote::ident_if_needed(index),
                    quote::name_if_needed(table)
                ),
                Precheck::NotNullCheckExists { table, name, .. }
                | Precheck::ConstraintNamed { table, name } => format!(
                    "constraint {} is already gone from {}",
                    quote::ident_if_needed(name),
                    quote::name_if_needed(table)
                ),
                Precheck::NotNullPending { table, column } => format!(
                    "no not-null constraint on column {} of {} awaits validation",
                    quote::ident_if_needed(column),
                    quote::name_if_needed(table)
                ),
                Precheck::PartitionOf { parent, partition } => format!(
                    "{} is no longer a partition of {}",
                    quote::name_if_needed(partition),
                    quote::name_if_needed(parent)
                ),
                Precheck::DetachPending { parent, partition } => format!(
                    "no detach of {} from {} is pending",
                    quote::name_if_needed(partition),
                    quote::name_if_needed(parent)
                ),
                Precheck::RelationExists { name } => {
                    format!("{} is already gone", quote::name_if_needed(name))
                }
                Precheck::ColumnExists { table, column } => format!(
                    "column {} is already gone from {}",
                    quote::ident_if_needed(column),
                    quote::name_if_needed(table)
                ),
                other => format!("not ({})", other.describe()),
            },
        }
    }
}

fn regclass(table: &Name) -> String {
    format!(
        "pg_catalog.to_regclass({})",
        quote::literal(&quote::name_if_needed(table))
    )
}

fn index_condition(table: &Name, index: &str, extra: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = {} AND c.relname = {}{extra})",
        regclass(table),
        quote::literal(index)
    )
}
