//! Multi-step recipes: one risky DDL statement turned into an ordered list of steps that reach
//! the same schema without holding a strong lock for long.
//!
//! Some statements have a safe form that is a single edit of the client's text (`CREATE INDEX`
//! → `CREATE INDEX CONCURRENTLY`, see `rewrite`). Others only become safe as a *sequence*:
//! a validated foreign key is added `NOT VALID` (brief lock, no scan) and validated in a second
//! transaction under SHARE UPDATE EXCLUSIVE, which lets reads and writes continue while the table
//! is scanned; a UNIQUE constraint is built as a concurrent index and then attached with
//! `USING INDEX`; an index on a partitioned table is built partition by partition. This module
//! owns those sequences (recipes R2, R5–R9 and R19 of the DDL-safety reference) — as data, so
//! that the executor can show them to the client, run them one by one, and resume them.
//!
//! Where it sits: after the policy decided that a statement should be split (outside any
//! transaction block: every step must commit on its own, or the lock of the first is held
//! through the scan of the second and nothing is gained), [`plan`] turns the statement's
//! original text and its [`Ddl`] into a [`Recipe`]. The executor runs each [`Step`]: first its
//! [`Precheck`] (a catalog query returning one boolean; `true` means "already done, skip"),
//! then the step's SQL as its own statement. Everything here is pure: no I/O, no panics on any
//! input.
//!
//! Why the steps look the way they do:
//! - **Resumable.** A recipe can fail half-way (a validation finds bad rows, a unique build
//!   finds duplicates, a lock timeout, a lost connection). Every step is guarded by a precheck
//!   or is itself idempotent (`ADD COLUMN IF NOT EXISTS`, `DROP … IF EXISTS`), so re-running
//!   the whole recipe after fixing the cause finishes the job. A failed `CREATE INDEX
//!   CONCURRENTLY` leaves an INVALID index behind that `IF NOT EXISTS` would happily "find";
//!   every concurrent build is therefore preceded by a step that drops an INVALID index of that
//!   name (`DROP INDEX CONCURRENTLY`), run only when the catalog shows one.
//! - **The same end state.** Names the client did not give are generated exactly as PostgreSQL
//!   generates them (`makeObjectName`, `ChooseIndexColumnNames`, `FigureColname` ported
//!   below), so a table migrated through a recipe is indistinguishable in the catalog from one
//!   migrated with the original statement — `pg_dump` diffs and later migrations that refer to
//!   `orders_customer_id_fkey` keep working. Where ddlgate cannot be certain which name
//!   PostgreSQL would choose (an unnamed CHECK over an expression it does not fully read, an
//!   index over an unusual expression), [`plan`] refuses and asks for an explicit name instead
//!   of guessing. PostgreSQL appends a digit when the generated name is already taken in the
//!   schema; a recipe cannot know that without the catalog and uses the plain name (the step
//!   then fails visibly rather than doing something else).
//! - **The client's own text where it matters.** Expressions, `REFERENCES …` clauses, column
//!   types, index definitions are copied byte for byte from the statement (via the lexer, so
//!   quotes and comments are respected); object names are rebuilt from the model and quoted
//!   exactly as PostgreSQL's `quote_ident` would. Step SQL must be sent on the same session as
//!   the original statement (same `client_encoding`), since it carries the client's bytes.
//! - **Locks are stated.** Each step says which lock it takes and on what, and whether it is
//!   long-running under a lock that does not block ordinary traffic (VALIDATE, CREATE INDEX
//!   CONCURRENTLY, …), so the executor can lift `statement_timeout` for exactly those steps and
//!   keep `lock_timeout` on every step.

use std::fmt;

use crate::sql::keywords::RESERVED;
use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind};
use crate::sql::quote;
use crate::sql::statement::{AlterOp, ConstraintKind, Ddl, DdlKind, LockMode, Name, Understood};

/// PostgreSQL's `NAMEDATALEN - 1`: identifiers longer than this are truncated by the server.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Oldest server the recipes are written for. PostgreSQL 12 is the first release in which
/// `SET NOT NULL` trusts a validated `CHECK (c IS NOT NULL)` instead of scanning, and the
/// support floor of strong_migrations and reshape.
pub const MIN_SERVER_VERSION: u32 = 120_000;

/// First release with `ADD CONSTRAINT … NOT NULL c NOT VALID` and `VALIDATE` of not-null
/// constraints, and with NOT VALID foreign keys on partitioned tables.
pub const PG18: u32 = 180_000;

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// What the caller knows about where the recipe will run (read from the session and the
/// catalog; this module does no I/O).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The upstream's `server_version_num` (e.g. `150004`). Decides the NOT NULL recipe and
    /// which NOT VALID forms the server accepts.
    pub server_version_num: u32,
    /// `Some` when the statement's table is partitioned (`pg_class.relkind = 'p'`): its direct
    /// partitions. `None` for an ordinary table. CREATE INDEX recipes need it to build the
    /// index partition by partition; ALTER TABLE recipes need it because several safe forms are
    /// not accepted on partitioned tables.
    pub partitions: Option<&'a [Partition]>,
}

/// One partition of a partitioned table, as found in `pg_inherits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Schema-qualified name, as it should appear in SQL.
    pub name: Name,
    /// `Some` when the partition is itself partitioned (`relkind = 'p'`): its own partitions.
    pub partitions: Option<Vec<Partition>>,
}

impl Partition {
    /// A leaf partition (an ordinary table).
    pub fn leaf(name: Name) -> Partition {
        Partition {
            name,
            partitions: None,
        }
    }

    /// A partition that is partitioned again.
    pub fn partitioned(name: Name, partitions: Vec<Partition>) -> Partition {
        Partition {
            name,
            partitions: Some(partitions),
        }
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Which recipe a statement became (bounded label for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipeKind {
    /// `ADD FOREIGN KEY` → `NOT VALID` + `VALIDATE` (R5).
    ForeignKey,
    /// `ADD CHECK` → `NOT VALID` + `VALIDATE` (R6).
    Check,
    /// `ALTER COLUMN … SET NOT NULL` (R7).
    SetNotNull,
    /// `ADD UNIQUE` → concurrent unique index + `USING INDEX` (R8).
    Unique,
    /// `ADD PRIMARY KEY` → NOT NULL recipe per column + concurrent index + `USING INDEX` (R9).
    PrimaryKey,
    /// `ADD COLUMN … REFERENCES / UNIQUE / PRIMARY KEY / CHECK`: the bare column, then the
    /// constraint recipes.
    AddColumn,
    /// `REFRESH MATERIALIZED VIEW` → `… CONCURRENTLY` (R19).
    RefreshMaterializedView,
    /// `CREATE INDEX` on a partitioned table → `ON ONLY` + per-partition concurrent builds +
    /// `ATTACH PARTITION` (R2).
    PartitionedIndex,
}

impl RecipeKind {
    /// Stable snake_case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            RecipeKind::ForeignKey => "foreign_key",
            RecipeKind::Check => "check",
            RecipeKind::SetNotNull => "set_not_null",
            RecipeKind::Unique => "unique",
            RecipeKind::PrimaryKey => "primary_key",
            RecipeKind::AddColumn => "add_column",
            RecipeKind::RefreshMaterializedView => "refresh_materialized_view",
            RecipeKind::PartitionedIndex => "partitioned_index",
        }
    }

    /// What the client asked for, in words, for the NOTICE.
    pub fn title(self) -> &'static str {
        match self {
            RecipeKind::ForeignKey => "ADD FOREIGN KEY",
            RecipeKind::Check => "ADD CHECK",
            RecipeKind::SetNotNull => "SET NOT NULL",
            RecipeKind::Unique => "ADD UNIQUE",
            RecipeKind::PrimaryKey => "ADD PRIMARY KEY",
            RecipeKind::AddColumn => "ADD COLUMN with constraints",
            RecipeKind::RefreshMaterializedView => "REFRESH MATERIALIZED VIEW",
            RecipeKind::PartitionedIndex => "CREATE INDEX on a partitioned table",
        }
    }
}

/// A statement as a sequence of steps, each to run as its own autocommit statement, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub kind: RecipeKind,
    /// The table (or materialized view) the statement changes, as written (folded).
    pub target: Name,
    pub steps: Vec<Step>,
}

impl Recipe {
    /// The client-facing NOTICE text: what ddlgate will run instead, step by step, with the
    /// lock each step takes and when it is skipped.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "ddlgate runs this {} on {} as {} steps, each committed on its own; \
             a step is skipped when the catalog shows it is already done, so re-running \
             after a failure resumes:",
            self.kind.title(),
            quote::name_if_needed(&self.target),
            self.steps.len()
        );
        for (i, step) in self.steps.iter().enumerate() {
            out.push_str(&format!(
                "\n  {}. {}\n     {}",
                i + 1,
                step.sql,
                step.describe()
            ));
        }
        out
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What a step does (bounded label for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// `ALTER TABLE … ADD COLUMN IF NOT EXISTS …` without the column's constraints.
    AddColumn,
    /// `ALTER TABLE … ADD CONSTRAINT … NOT VALID`: catalog only, enforced for new rows at once.
    AddConstraintNotValid,
    /// `ALTER TABLE … VALIDATE CONSTRAINT …`: scans the table under SHARE UPDATE EXCLUSIVE
    /// (plus ROW SHARE on the referenced table of a foreign key).
    ValidateConstraint,
    /// `ALTER TABLE … ALTER COLUMN … SET NOT NULL`, after a validated CHECK made its scan
    /// unnecessary (PostgreSQL 12+).
    SetNotNull,
    /// `ALTER TABLE … DROP CONSTRAINT IF EXISTS …` of the recipe's own temporary CHECK.
    DropConstraint,
    /// `DROP INDEX CONCURRENTLY IF EXISTS …` of an INVALID index left by a failed build.
    DropInvalidIndex,
    /// `CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS …`.
    CreateIndexConcurrently,
    /// `ALTER TABLE … ADD CONSTRAINT … {UNIQUE | PRIMARY KEY} USING INDEX …`.
    AddConstraintUsingIndex,
    /// `CREATE [UNIQUE] INDEX IF NOT EXISTS … ON ONLY partitioned_table …`: catalog only.
    CreateParentIndex,
    /// `ALTER INDEX parent_index ATTACH PARTITION partition_index`.
    AttachIndex,
    /// `REFRESH MATERIALIZED VIEW CONCURRENTLY …`.
    RefreshConcurrently,
}

impl StepKind {
    pub fn label(self) -> &'static str {
        match self {
            StepKind::AddColumn => "add_column",
            StepKind::AddConstraintNotValid => "add_constraint_not_valid",
            StepKind::ValidateConstraint => "validate_constraint",
            StepKind::SetNotNull => "set_not_null",
            StepKind::DropConstraint => "drop_constraint",
            StepKind::DropInvalidIndex => "drop_invalid_index",
            StepKind::CreateIndexConcurrently => "create_index_concurrently",
            StepKind::AddConstraintUsingIndex => "add_constraint_using_index",
            StepKind::CreateParentIndex => "create_parent_index",
            StepKind::AttachIndex => "attach_index",
            StepKind::RefreshConcurrently => "refresh_concurrently",
        }
    }
}

/// One statement of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The statement to run, alone, outside any transaction block.
    pub sql: String,
    pub kind: StepKind,
    /// The strongest lock the step takes ([`Step::locked`] says on what). Steps that are not
    /// [`long_running`](Step::long_running) hold it only for a catalog change, but still queue
    /// behind long transactions: run them under `lock_timeout`. Foreign-key steps also lock
    /// the referenced table: SHARE ROW EXCLUSIVE to add, ROW SHARE to validate.
    pub lock: LockMode,
    /// The object that lock is taken on.
    pub locked: Name,
    /// The step scans or builds for as long as the data takes. Its lock does not block
    /// ordinary reads and writes of the table (SHARE UPDATE EXCLUSIVE; EXCLUSIVE on a
    /// materialized view, which only blocks other refreshes), so the executor should lift
    /// `statement_timeout` for it rather than abort a healthy scan.
    pub long_running: bool,
    /// Run this catalog query first; when it returns `true` the step is already done (or must
    /// not run) and is skipped.
    pub skip_if: Option<Precheck>,
}

impl Step {
    /// One line for the NOTICE: lock, duration, skip condition.
    pub fn describe(&self) -> String {
        let duration = if self.long_running {
            "for as long as it runs (ordinary reads and writes continue)"
        } else {
            "briefly (catalog change only)"
        };
        let mut out = format!(
            "takes {} on {} {}",
            self.lock.as_str(),
            quote::name_if_needed(&self.locked),
            duration
        );
        if let Some(p) = &self.skip_if {
            out.push_str("; skipped if ");
            out.push_str(&p.describe());
        }
        out
    }
}

/// `pg_constraint.contype` of the constraints recipes add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintType {
    Check,
    ForeignKey,
    Unique,
    PrimaryKey,
}

impl ConstraintType {
    fn contype(self) -> char {
        match self {
            ConstraintType::Check => 'c',
            ConstraintType::ForeignKey => 'f',
            ConstraintType::Unique => 'u',
            ConstraintType::PrimaryKey => 'p',
        }
    }

    fn words(self) -> &'static str {
        match self {
            ConstraintType::Check => "CHECK",
            ConstraintType::ForeignKey => "FOREIGN KEY",
            ConstraintType::Unique => "UNIQUE",
            ConstraintType::PrimaryKey => "PRIMARY KEY",
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
                Precheck::NotNullCheckExists { table, name, .. } => format!(
                    "constraint {} is already gone from {}",
                    quote::ident_if_needed(name),
                    quote::name_if_needed(table)
                ),
                Precheck::NotNullPending { table, column } => format!(
                    "no not-null constraint on column {} of {} awaits validation",
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

/// Why a statement has no recipe. Every variant is a refusal, not a fault: the statement is
/// left as it is and the policy decides what to do with it (block, warn, forward).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error("ddlgate has no multi-step recipe for this statement ({0})")]
    NoRecipe(&'static str),
    #[error(
        "the ALTER TABLE has {0} actions; a recipe replaces exactly one (split it into one \
         ALTER TABLE per action)"
    )]
    SeveralActions(usize),
    #[error("the statement is already in its safe form ({0})")]
    AlreadySafe(&'static str),
    #[error("the statement was not understood well enough to be split")]
    NotUnderstood,
    #[error("ddlgate could not read {0} from the statement text")]
    Unreadable(&'static str),
    #[error("{0} is not supported in a multi-step recipe")]
    Unsupported(&'static str),
    #[error("{0}")]
    NameNeeded(&'static str),
    #[error("{what} on a partitioned table is not accepted by this PostgreSQL version")]
    Partitioned { what: &'static str },
    #[error("{what} needs PostgreSQL {needs} or later (the server is {server})")]
    ServerTooOld {
        what: &'static str,
        needs: u32,
        server: u32,
    },
}

// ---------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------

/// Turns one statement (`sql[start..end]`, understood as `ddl`) into a recipe, or says why not.
///
/// Handled, each only as the statement's single action:
/// `ALTER TABLE … ADD [CONSTRAINT n] FOREIGN KEY … / CHECK (…)` (validated),
/// `ALTER TABLE … ALTER [COLUMN] c SET NOT NULL`,
/// `ALTER TABLE … ADD [CONSTRAINT n] UNIQUE (…) / PRIMARY KEY (…)`,
/// `ALTER TABLE … ADD [COLUMN] c type … {REFERENCES | UNIQUE | PRIMARY KEY | CHECK}…`,
/// `REFRESH MATERIALIZED VIEW mv` (the caller checks that `mv` has a unique index and is
/// populated), and `CREATE [UNIQUE] INDEX … ON t (…)` when `ctx.partitions` says `t` is
/// partitioned.
pub fn plan(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    if ddl.understood == Understood::Unknown {
        return Err(RecipeError::NotUnderstood);
    }
    if ctx.server_version_num < MIN_SERVER_VERSION {
        return Err(RecipeError::ServerTooOld {
            what: "a multi-step recipe",
            needs: MIN_SERVER_VERSION,
            server: ctx.server_version_num,
        });
    }
    let st = Stmt::new(sql, start, end, lex)?;
    match &ddl.kind {
        DdlKind::AlterTable {
            name,
            only,
            if_exists,
            ops,
        } => alter_table(&st, name, *only, *if_exists, ops, ctx),
        DdlKind::RefreshMaterializedView { name, concurrently } => {
            refresh(&st, name, *concurrently)
        }
        DdlKind::CreateIndex {
            name,
            table,
            unique,
            only,
            ..
        } => partitioned_index(&st, name.as_ref(), table, *unique, *only, ctx),
        other => Err(RecipeError::NoRecipe(other.label())),
    }
}

/// The table every ALTER TABLE step names, with the client's `ONLY`.
struct Target {
    name: Name,
    only: bool,
}

impl Target {
    fn alter(&self) -> String {
        format!(
            "ALTER TABLE {}{}",
            if self.only { "ONLY " } else { "" },
            quote::name_if_needed(&self.name)
        )
    }

    fn relname(&self) -> &str {
        &self.name.name
    }
}

fn alter_table(
    st: &Stmt<'_>,
    table: &Name,
    only: bool,
    if_exists: bool,
    ops: &[AlterOp],
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    let op = match ops {
        [op] => op,
        [] => return Err(RecipeError::NoRecipe("ALTER TABLE without an action")),
        _ => return Err(RecipeError::SeveralActions(ops.len())),
    };
    if if_exists {
        // The concurrent index builds have no IF EXISTS form, and a recipe that half-runs on a
        // missing table would not be the no-op the client asked for.
        return Err(RecipeError::Unsupported("ALTER TABLE IF EXISTS"));
    }
    let head = st.alter_head()?;
    if head.table != *table || head.only != only {
        return Err(RecipeError::Unreadable("the table name"));
    }
    let target = Target {
        name: truncate_name(table),
        only,
    };
    match op {
        AlterOp::AddConstraint(c) => {
            match c.kind {
                ConstraintKind::Unique { using_index: true }
                | ConstraintKind::PrimaryKey { using_index: true } => {
                    return Err(RecipeError::AlreadySafe("ADD CONSTRAINT … USING INDEX"));
                }
                ConstraintKind::Exclusion => {
                    return Err(RecipeError::NoRecipe(
                        "an exclusion constraint has no NOT VALID or USING INDEX form",
                    ));
                }
                ConstraintKind::NotNull => {
                    return Err(RecipeError::NoRecipe(
                        "ADD CONSTRAINT … NOT NULL; use ALTER COLUMN … SET NOT NULL",
                    ));
                }
                _ => {}
            }
            if c.not_valid {
                return Err(RecipeError::AlreadySafe("NOT VALID"));
            }
            let parsed = st.table_constraint(head.action)?;
            if parsed.name.as_deref() != c.name.as_deref() {
                return Err(RecipeError::Unreadable("the constraint name"));
            }
            let name = parsed.name.as_deref().map(truncate);
            match (&c.kind, parsed.spec) {
                (ConstraintKind::ForeignKey { .. }, ConstraintSpec::ForeignKey { columns }) => {
                    foreign_key_allowed(ctx)?;
                    let name = name.unwrap_or_else(|| {
                        object_name(target.relname(), Some(&name_addition(&columns)), "fkey")
                    });
                    Ok(Recipe {
                        kind: RecipeKind::ForeignKey,
                        target: table.clone(),
                        steps: not_valid_then_validate(
                            &target,
                            &name,
                            &parsed.body,
                            ConstraintType::ForeignKey,
                        )
                        .to_vec(),
                    })
                }
                (ConstraintKind::Check, ConstraintSpec::Check { columns }) => {
                    let name = match name {
                        Some(n) => n,
                        None => check_name(target.relname(), columns)?,
                    };
                    Ok(Recipe {
                        kind: RecipeKind::Check,
                        target: table.clone(),
                        steps: not_valid_then_validate(
                            &target,
                            &name,
                            &parsed.body,
                            ConstraintType::Check,
                        )
                        .to_vec(),
                    })
                }
                (
                    ConstraintKind::Unique { using_index: false }
                    | ConstraintKind::PrimaryKey { using_index: false },
                    ConstraintSpec::Index(spec),
                ) => {
                    index_constraint_allowed(ctx)?;
                    let kind = if spec.primary {
                        RecipeKind::PrimaryKey
                    } else {
                        RecipeKind::Unique
                    };
                    if matches!(c.kind, ConstraintKind::PrimaryKey { .. }) != spec.primary {
                        return Err(RecipeError::Unreadable("the constraint"));
                    }
                    Ok(Recipe {
                        kind,
                        target: table.clone(),
                        steps: index_constraint_steps(&target, name, &spec, ctx),
                    })
                }
                _ => Err(RecipeError::Unreadable("the constraint")),
            }
        }
        AlterOp::SetNotNull { column } => {
            st.expect_set_not_null(head.action)?;
            Ok(Recipe {
                kind: RecipeKind::SetNotNull,
                target: table.clone(),
                steps: not_null_steps(&target, &truncate(column), ctx),
            })
        }
        AlterOp::AddColumn(col) => {
            if col.serial || col.identity || col.generated_stored {
                return Err(RecipeError::Unsupported(
                    "a serial, identity or stored generated column (it rewrites the table \
                     under ACCESS EXCLUSIVE whatever the constraints)",
                ));
            }
            let def = st.column_definition(head.action)?;
            if def.name != col.name {
                return Err(RecipeError::Unreadable("the column name"));
            }
            add_column(&target, table, &def, &col.constraints, ctx)
        }
        other => Err(RecipeError::NoRecipe(op_label(other))),
    }
}

fn op_label(op: &AlterOp) -> &'static str {
    match op {
        AlterOp::DropColumn { .. } => "DROP COLUMN",
        AlterOp::AlterColumnType { .. } => "ALTER COLUMN TYPE",
        AlterOp::ValidateConstraint { .. } => "VALIDATE CONSTRAINT",
        AlterOp::AttachPartition { .. } => "ATTACH PARTITION",
        AlterOp::DetachPartition { .. } => "DETACH PARTITION",
        _ => "this ALTER TABLE action",
    }
}

fn foreign_key_allowed(ctx: &Context<'_>) -> Result<(), RecipeError> {
    if ctx.partitions.is_some() && ctx.server_version_num < PG18 {
        return Err(RecipeError::Partitioned {
            what: "a NOT VALID foreign key (PostgreSQL 18 lifted this)",
        });
    }
    Ok(())
}

fn index_constraint_allowed(ctx: &Context<'_>) -> Result<(), RecipeError> {
    if ctx.partitions.is_some() {
        return Err(RecipeError::Partitioned {
            what: "ADD CONSTRAINT … USING INDEX",
        });
    }
    Ok(())
}

/// R5/R6: `ADD CONSTRAINT n <body> NOT VALID`, then `VALIDATE CONSTRAINT n`.
fn not_valid_then_validate(
    t: &Target,
    name: &str,
    body: &str,
    contype: ConstraintType,
) -> [Step; 2] {
    // ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables; every other ADD CONSTRAINT
    // takes ACCESS EXCLUSIVE. NOT VALID makes either a catalog change.
    let add_lock = match contype {
        ConstraintType::ForeignKey => LockMode::ShareRowExclusive,
        _ => LockMode::AccessExclusive,
    };
    [
        Step {
            sql: format!(
                "{} ADD CONSTRAINT {} {body} NOT VALID",
                t.alter(),
                quote::ident_if_needed(name)
            ),
            kind: StepKind::AddConstraintNotValid,
            lock: add_lock,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(Precheck::ConstraintExists {
                table: t.name.clone(),
                name: name.to_owned(),
                contype,
            }),
        },
        validate(
            t,
            name,
            Precheck::ConstraintValidated {
                table: t.name.clone(),
                name: name.to_owned(),
            },
        ),
    ]
}

fn validate(t: &Target, name: &str, skip_if: Precheck) -> Step {
    Step {
        sql: format!(
            "{} VALIDATE CONSTRAINT {}",
            t.alter(),
            quote::ident_if_needed(name)
        ),
        kind: StepKind::ValidateConstraint,
        lock: LockMode::ShareUpdateExclusive,
        locked: t.name.clone(),
        long_running: true,
        skip_if: Some(skip_if),
    }
}

/// R7: make `column` NOT NULL without a scan under ACCESS EXCLUSIVE.
///
/// PostgreSQL 18 has NOT VALID not-null constraints: add one named exactly as `SET NOT NULL`
/// would name it (`<table>_<column>_not_null`), then validate it — the catalog then holds the
/// same validated constraint `SET NOT NULL` creates. Partitioned tables keep the CHECK route
/// on 18 too, which works on every supported version.
///
/// Before 18 (12+): a temporary `CHECK (column IS NOT NULL) NOT VALID`, validated under SHARE
/// UPDATE EXCLUSIVE, lets `SET NOT NULL` skip its scan; the CHECK is dropped afterwards. Its
/// name carries `ddlgate` so it can never be mistaken for (or collide on 18 with) the
/// `_not_null` name PostgreSQL itself uses.
fn not_null_steps(t: &Target, column: &str, ctx: &Context<'_>) -> Vec<Step> {
    let col = quote::ident_if_needed(column);
    if ctx.server_version_num >= PG18 && ctx.partitions.is_none() {
        let name = object_name(t.relname(), Some(column), "not_null");
        return vec![
            Step {
                sql: format!(
                    "{} ADD CONSTRAINT {} NOT NULL {col} NOT VALID",
                    t.alter(),
                    quote::ident_if_needed(&name)
                ),
                kind: StepKind::AddConstraintNotValid,
                lock: LockMode::AccessExclusive,
                locked: t.name.clone(),
                long_running: false,
                skip_if: Some(Precheck::ColumnHasNotNullConstraint {
                    table: t.name.clone(),
                    column: column.to_owned(),
                }),
            },
            validate(
                t,
                &name,
                Precheck::Not(Box::new(Precheck::NotNullPending {
                    table: t.name.clone(),
                    column: column.to_owned(),
                })),
            ),
        ];
    }
    let check = object_name(t.relname(), Some(column), "ddlgate_nn");
    let not_null = || Precheck::ColumnNotNull {
        table: t.name.clone(),
        column: column.to_owned(),
    };
    let check_exists = || Precheck::NotNullCheckExists {
        table: t.name.clone(),
        name: check.clone(),
        column: column.to_owned(),
    };
    vec![
        Step {
            sql: format!(
                "{} ADD CONSTRAINT {} CHECK ({col} IS NOT NULL) NOT VALID",
                t.alter(),
                quote::ident_if_needed(&check)
            ),
            kind: StepKind::AddConstraintNotValid,
            lock: LockMode::AccessExclusive,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(Precheck::Any(vec![not_null(), check_exists()])),
        },
        validate(
            t,
            &check,
            Precheck::Any(vec![
                not_null(),
                Precheck::ConstraintValidated {
                    table: t.name.clone(),
                    name: check.clone(),
                },
            ]),
        ),
        Step {
            sql: format!("{} ALTER COLUMN {col} SET NOT NULL", t.alter()),
            kind: StepKind::SetNotNull,
            lock: LockMode::AccessExclusive,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(not_null()),
        },
        Step {
            sql: format!(
                "{} DROP CONSTRAINT IF EXISTS {}",
                t.alter(),
                quote::ident_if_needed(&check)
            ),
            kind: StepKind::DropConstraint,
            lock: LockMode::AccessExclusive,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(Precheck::Not(Box::new(check_exists()))),
        },
    ]
}

/// The parts of `UNIQUE …` / `PRIMARY KEY …` a concurrent index and `USING INDEX` need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexSpec {
    primary: bool,
    /// Key columns, folded.
    columns: Vec<String>,
    /// `INCLUDE (…)` columns, folded.
    include: Vec<String>,
    /// `NULLS DISTINCT` / `NULLS NOT DISTINCT`, as keywords.
    nulls: Option<&'static str>,
    /// `WITH (…)` storage parameters, the client's text including the parentheses.
    with: Option<String>,
    /// `USING INDEX TABLESPACE ts`: the tablespace, folded.
    tablespace: Option<String>,
    /// `DEFERRABLE` / `INITIALLY …` attributes, the client's text.
    attributes: Option<String>,
}

/// R8/R9: an INVALID leftover is dropped, the unique index is built concurrently, then
/// attached as the constraint. A primary key first gets the NOT NULL recipe on every column:
/// `ADD PRIMARY KEY USING INDEX` would otherwise run `SET NOT NULL` with a full scan under
/// ACCESS EXCLUSIVE.
fn index_constraint_steps(
    t: &Target,
    name: Option<String>,
    spec: &IndexSpec,
    ctx: &Context<'_>,
) -> Vec<Step> {
    let name = name.unwrap_or_else(|| {
        if spec.primary {
            object_name(t.relname(), None, "pkey")
        } else {
            let all: Vec<String> = spec.columns.iter().chain(&spec.include).cloned().collect();
            object_name(t.relname(), Some(&name_addition(&all)), "key")
        }
    });
    let mut steps = Vec::new();
    if spec.primary {
        for column in &spec.columns {
            steps.extend(not_null_steps(t, column, ctx));
        }
    }
    let mut create = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})",
        quote::ident_if_needed(&name),
        quote::name_if_needed(&t.name),
        quote_list(&spec.columns)
    );
    if !spec.include.is_empty() {
        create.push_str(&format!(" INCLUDE ({})", quote_list(&spec.include)));
    }
    if let Some(nulls) = spec.nulls {
        create.push(' ');
        create.push_str(nulls);
    }
    if let Some(with) = &spec.with {
        create.push_str(" WITH ");
        create.push_str(with);
    }
    if let Some(ts) = &spec.tablespace {
        create.push_str(" TABLESPACE ");
        create.push_str(&quote::ident_if_needed(ts));
    }
    steps.extend(concurrent_build(&t.name, &name, create));
    let mut attach = format!(
        "{} ADD CONSTRAINT {} {} USING INDEX {}",
        t.alter(),
        quote::ident_if_needed(&name),
        if spec.primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        },
        quote::ident_if_needed(&name)
    );
    if let Some(attributes) = &spec.attributes {
        attach.push(' ');
        attach.push_str(attributes);
    }
    steps.push(Step {
        sql: attach,
        kind: StepKind::AddConstraintUsingIndex,
        lock: LockMode::AccessExclusive,
        locked: t.name.clone(),
        long_running: false,
        skip_if: Some(Precheck::ConstraintExists {
            table: t.name.clone(),
            name,
            contype: if spec.primary {
                ConstraintType::PrimaryKey
            } else {
                ConstraintType::Unique
            },
        }),
    });
    steps
}

/// Drop an INVALID leftover of `index` on `table`, then run `create` (a `CREATE … INDEX
/// CONCURRENTLY IF NOT EXISTS`) unless a valid index of that name is there.
fn concurrent_build(table: &Name, index: &str, create: String) -> [Step; 2] {
    let qualified = Name {
        schema: table.schema.clone(),
        name: index.to_owned(),
    };
    [
        Step {
            sql: format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                quote::name_if_needed(&qualified)
            ),
            kind: StepKind::DropInvalidIndex,
            lock: LockMode::ShareUpdateExclusive,
            locked: table.clone(),
            // It waits for every transaction that might use the index.
            long_running: true,
            skip_if: Some(Precheck::Not(Box::new(Precheck::IndexInvalid {
                table: table.clone(),
                index: index.to_owned(),
            }))),
        },
        Step {
            sql: create,
            kind: StepKind::CreateIndexConcurrently,
            lock: LockMode::ShareUpdateExclusive,
            locked: table.clone(),
            long_running: true,
            skip_if: Some(Precheck::IndexValid {
                table: table.clone(),
                index: index.to_owned(),
            }),
        },
    ]
}

/// `ADD COLUMN c type … REFERENCES / UNIQUE / PRIMARY KEY / CHECK`: the column without those
/// constraints (so the ACCESS EXCLUSIVE of ADD COLUMN covers no scan and no index build), then
/// each constraint's own recipe, in the order written.
///
/// `ADD COLUMN IF NOT EXISTS` keeps a re-run idempotent. The price: if the column already
/// existed before the recipe ran, the constraints are added to it, where the original
/// statement would have failed (or, with the client's own `IF NOT EXISTS`, skipped them).
fn add_column(
    t: &Target,
    table: &Name,
    def: &ColumnDef,
    model: &[ConstraintKind],
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    let handled: Vec<&ColumnConstraint> = def.constraints.iter().collect();
    let model_handled: Vec<&ConstraintKind> = model
        .iter()
        .filter(|k| {
            matches!(
                k,
                ConstraintKind::ForeignKey { .. }
                    | ConstraintKind::Check
                    | ConstraintKind::Unique { .. }
                    | ConstraintKind::PrimaryKey { .. }
            )
        })
        .collect();
    if handled.is_empty() {
        return Err(RecipeError::NoRecipe(
            "ADD COLUMN without REFERENCES, UNIQUE, PRIMARY KEY or CHECK",
        ));
    }
    let agrees = handled.len() == model_handled.len()
        && handled.iter().zip(&model_handled).all(|(c, k)| {
            matches!(
                (&c.spec, k),
                (
                    ColumnConstraintSpec::References,
                    ConstraintKind::ForeignKey { .. }
                ) | (ColumnConstraintSpec::Check { .. }, ConstraintKind::Check)
                    | (
                        ColumnConstraintSpec::Index(_),
                        ConstraintKind::Unique { .. }
                    )
                    | (
                        ColumnConstraintSpec::Index(_),
                        ConstraintKind::PrimaryKey { .. }
                    )
            )
        });
    if !agrees {
        return Err(RecipeError::Unreadable("the column's constraints"));
    }
    let column = truncate(&def.name);
    let mut steps = vec![Step {
        sql: format!(
            "{} ADD COLUMN IF NOT EXISTS {} {}",
            t.alter(),
            quote::ident_if_needed(&column),
            def.rest
        ),
        kind: StepKind::AddColumn,
        lock: LockMode::AccessExclusive,
        locked: t.name.clone(),
        long_running: false,
        skip_if: Some(Precheck::ColumnExists {
            table: t.name.clone(),
            column: column.clone(),
        }),
    }];
    let single = std::slice::from_ref(&column);
    for c in handled {
        let name = c.name.as_deref().map(truncate);
        match &c.spec {
            ColumnConstraintSpec::References => {
                foreign_key_allowed(ctx)?;
                let name = name.unwrap_or_else(|| object_name(t.relname(), Some(&column), "fkey"));
                let body = format!(
                    "FOREIGN KEY ({}) {}",
                    quote::ident_if_needed(&column),
                    c.body
                );
                steps.extend(not_valid_then_validate(
                    t,
                    &name,
                    &body,
                    ConstraintType::ForeignKey,
                ));
            }
            ColumnConstraintSpec::Check { columns } => {
                let name = match name {
                    Some(n) => n,
                    None => check_name(t.relname(), columns.clone())?,
                };
                steps.extend(not_valid_then_validate(
                    t,
                    &name,
                    &c.body,
                    ConstraintType::Check,
                ));
            }
            ColumnConstraintSpec::Index(spec) => {
                index_constraint_allowed(ctx)?;
                let mut spec = spec.clone();
                spec.columns = single.to_vec();
                steps.extend(index_constraint_steps(t, name, &spec, ctx));
            }
        }
    }
    Ok(Recipe {
        kind: RecipeKind::AddColumn,
        target: table.clone(),
        steps,
    })
}

/// R19: `REFRESH MATERIALIZED VIEW` → `… CONCURRENTLY`, spliced into the client's text.
/// Whether the view qualifies (a unique index on plain columns, already populated) is the
/// caller's catalog check.
fn refresh(st: &Stmt<'_>, name: &Name, concurrently: bool) -> Result<Recipe, RecipeError> {
    if concurrently {
        return Err(RecipeError::AlreadySafe("REFRESH … CONCURRENTLY"));
    }
    let at = st.refresh_insertion_point()?;
    if st.contains_words(&["WITH", "NO", "DATA"]) {
        return Err(RecipeError::Unsupported(
            "REFRESH … WITH NO DATA (CONCURRENTLY cannot empty a view)",
        ));
    }
    let sql = format!(
        "{} CONCURRENTLY{}",
        st.slice(st.start, at)?,
        st.slice(at, st.end)?
    );
    Ok(Recipe {
        kind: RecipeKind::RefreshMaterializedView,
        target: name.clone(),
        steps: vec![Step {
            sql,
            kind: StepKind::RefreshConcurrently,
            lock: LockMode::Exclusive,
            locked: name.clone(),
            long_running: true,
            skip_if: None,
        }],
    })
}

/// R2: an index on a partitioned table, built without SHARE on the whole tree.
///
/// `CREATE INDEX … ON ONLY parent` records the index on the parent alone (INVALID while
/// partitions lack theirs). Each leaf partition gets its index concurrently and is attached;
/// a partition that is partitioned again gets its own `ON ONLY` index, its partitions are
/// handled the same way, and then it is attached. PostgreSQL marks each level valid once all
/// of its partitions are attached. Partition index names are chosen exactly as `CREATE INDEX`
/// on the parent chooses them (`<partition>_<columns>_idx`).
fn partitioned_index(
    st: &Stmt<'_>,
    name: Option<&Name>,
    table: &Name,
    unique: bool,
    only: bool,
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    if only {
        return Err(RecipeError::AlreadySafe("CREATE INDEX … ON ONLY"));
    }
    let Some(partitions) = ctx.partitions else {
        return Err(RecipeError::NoRecipe(
            "CREATE INDEX on an ordinary table (a single-statement CONCURRENTLY rewrite)",
        ));
    };
    let parsed = st.create_index()?;
    if parsed.table != *table || parsed.name.as_ref() != name.map(|n| &n.name) {
        return Err(RecipeError::Unreadable("the index or table name"));
    }
    let columns = index_column_names(st, &parsed.elements, &parsed.include)?;
    let addition = name_addition(&columns);
    let parent = truncate_name(table);
    let index = match &parsed.name {
        Some(n) => truncate(n),
        None => object_name(&parent.name, Some(&addition), "idx"),
    };
    let plan = IndexPlan {
        unique,
        tail: parsed.tail,
        addition,
    };
    let mut steps = vec![plan.parent_step(&parent, &index)];
    plan.partition_steps(&parent, &index, partitions, &mut steps);
    Ok(Recipe {
        kind: RecipeKind::PartitionedIndex,
        target: table.clone(),
        steps,
    })
}

/// What every level of a partitioned index build shares.
struct IndexPlan {
    unique: bool,
    /// The client's text after the table name: `[USING m] (…) [INCLUDE …] [WHERE …]`.
    tail: String,
    /// `ChooseIndexNameAddition` of the index columns.
    addition: String,
}

impl IndexPlan {
    fn create(&self) -> &'static str {
        if self.unique {
            "CREATE UNIQUE INDEX"
        } else {
            "CREATE INDEX"
        }
    }

    fn parent_step(&self, table: &Name, index: &str) -> Step {
        Step {
            sql: format!(
                "{} IF NOT EXISTS {} ON ONLY {} {}",
                self.create(),
                quote::ident_if_needed(index),
                quote::name_if_needed(table),
                self.tail
            ),
            kind: StepKind::CreateParentIndex,
            // CREATE INDEX takes SHARE; with ONLY nothing is built, so it is held briefly.
            lock: LockMode::Share,
            locked: table.clone(),
            long_running: false,
            skip_if: Some(Precheck::IndexExists {
                table: table.clone(),
                index: index.to_owned(),
            }),
        }
    }

    fn partition_steps(
        &self,
        parent: &Name,
        parent_index: &str,
        partitions: &[Partition],
        steps: &mut Vec<Step>,
    ) {
        for p in partitions {
            let table = truncate_name(&p.name);
            let index = object_name(&table.name, Some(&self.addition), "idx");
            match &p.partitions {
                Some(children) => {
                    steps.push(self.parent_step(&table, &index));
                    self.partition_steps(&table, &index, children, steps);
                }
                None => {
                    let create = format!(
                        "{} CONCURRENTLY IF NOT EXISTS {} ON {} {}",
                        self.create(),
                        quote::ident_if_needed(&index),
                        quote::name_if_needed(&table),
                        self.tail
                    );
                    steps.extend(concurrent_build(&table, &index, create));
                }
            }
            let parent_qualified = Name {
                schema: parent.schema.clone(),
                name: parent_index.to_owned(),
            };
            let child_qualified = Name {
                schema: table.schema.clone(),
                name: index.clone(),
            };
            steps.push(Step {
                sql: format!(
                    "ALTER INDEX {} ATTACH PARTITION {}",
                    quote::name_if_needed(&parent_qualified),
                    quote::name_if_needed(&child_qualified)
                ),
                kind: StepKind::AttachIndex,
                // ACCESS EXCLUSIVE on the partition's index (SHARE UPDATE EXCLUSIVE on the
                // parent index, ACCESS SHARE on both tables), for a catalog change.
                lock: LockMode::AccessExclusive,
                locked: child_qualified,
                long_running: false,
                skip_if: Some(Precheck::IndexAttached {
                    parent_table: parent.clone(),
                    parent_index: parent_index.to_owned(),
                    table: table.clone(),
                    index: index.clone(),
                }),
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the statement text
// ---------------------------------------------------------------------------

/// The statement's code tokens (comments dropped) and the bytes they index.
struct Stmt<'a> {
    sql: &'a [u8],
    toks: Vec<Token>,
    /// Byte range of the statement proper: first token start to last token end (so trailing
    /// comments, which would swallow an appended `NOT VALID`, are never copied).
    start: usize,
    end: usize,
}

/// `ALTER TABLE [IF EXISTS] [ONLY] name [*]` and where the action starts.
struct AlterHead {
    table: Name,
    only: bool,
    action: usize,
}

/// A table constraint of `ADD [CONSTRAINT n] …`.
struct TableConstraint {
    name: Option<String>,
    /// From the constraint keyword to the end of the statement, the client's text.
    body: String,
    spec: ConstraintSpec,
}

enum ConstraintSpec {
    ForeignKey {
        columns: Vec<String>,
    },
    /// `columns`: the columns the expression references, if ddlgate can tell (for naming).
    Check {
        columns: Option<Vec<String>>,
    },
    Index(IndexSpec),
}

/// `ADD [COLUMN] [IF NOT EXISTS] c type …` with its recipe-handled constraints taken out.
struct ColumnDef {
    name: String,
    /// The type and every option the recipe leaves on the column (DEFAULT, NOT NULL,
    /// COLLATE, GENERATED …), the client's text.
    rest: String,
    constraints: Vec<ColumnConstraint>,
}

struct ColumnConstraint {
    name: Option<String>,
    /// From the constraint keyword to the end of its attributes, the client's text.
    body: String,
    spec: ColumnConstraintSpec,
}

enum ColumnConstraintSpec {
    References,
    Check { columns: Option<Vec<String>> },
    Index(IndexSpec),
}

/// `CREATE [UNIQUE] INDEX … [name] ON table <tail>`.
struct CreateIndex {
    name: Option<String>,
    table: Name,
    tail: String,
    /// Token ranges of the index elements inside the column parentheses.
    elements: Vec<(usize, usize)>,
    /// `INCLUDE (…)` columns, folded: PostgreSQL names the index after them too.
    include: Vec<String>,
}

impl<'a> Stmt<'a> {
    fn new(sql: &'a [u8], start: usize, end: usize, lex: LexOptions) -> Result<Self, RecipeError> {
        let end = end.min(sql.len());
        let mut toks: Vec<Token> = Lexer::at(sql, start, lex)
            .take_while(|t| t.start < end)
            .filter(|t| !t.is_comment())
            .collect();
        while toks.last().is_some_and(|t| t.kind == TokenKind::Semicolon) {
            toks.pop();
        }
        if toks
            .iter()
            .any(|t| t.unterminated || t.end > end || t.kind == TokenKind::Semicolon)
        {
            return Err(RecipeError::Unreadable(
                "the statement (unterminated or several)",
            ));
        }
        let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
            return Err(RecipeError::NotUnderstood);
        };
        if std::str::from_utf8(sql.get(first.start..last.end).unwrap_or_default()).is_err() {
            return Err(RecipeError::Unsupported(
                "a statement that is not valid UTF-8",
            ));
        }
        let (start, end) = (first.start, last.end);
        Ok(Stmt {
            sql,
            toks,
            start,
            end,
        })
    }

    fn tok(&self, i: usize) -> Option<Token> {
        self.toks.get(i).copied()
    }

    fn last(&self) -> usize {
        self.toks.len().saturating_sub(1)
    }

    fn word(&self, i: usize, kw: &str) -> bool {
        self.tok(i).is_some_and(|t| t.is_word(self.sql, kw))
    }

    fn kind(&self, i: usize) -> Option<TokenKind> {
        self.tok(i).map(|t| t.kind)
    }

    fn is_op(&self, i: usize, op: &str) -> bool {
        self.tok(i)
            .is_some_and(|t| t.kind == TokenKind::Operator && t.text(self.sql) == op.as_bytes())
    }

    /// Lower-cased text of a `Word` token.
    fn lower(&self, i: usize) -> Option<String> {
        let t = self.tok(i)?;
        (t.kind == TokenKind::Word)
            .then(|| String::from_utf8_lossy(t.text(self.sql)).to_ascii_lowercase())
    }

    /// The client's bytes `[from, to)` as text.
    fn slice(&self, from: usize, to: usize) -> Result<&'a str, RecipeError> {
        self.sql
            .get(from..to)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(RecipeError::Unreadable("the statement text"))
    }

    /// Tokens `first..=last` as the client wrote them (including comments in between).
    fn text(&self, first: usize, last: usize) -> Result<String, RecipeError> {
        let (Some(a), Some(b)) = (self.tok(first), self.tok(last)) else {
            return Err(RecipeError::Unreadable("the statement text"));
        };
        if a.start > b.end {
            return Err(RecipeError::Unreadable("the statement text"));
        }
        self.slice(a.start, b.end).map(str::to_owned)
    }

    /// An identifier folded like PostgreSQL: unquoted → ASCII lower case, `"…"` → as written
    /// with `""` unescaped. Reserved keywords and `U&"…"` identifiers are not accepted.
    fn ident(&self, i: usize) -> Option<String> {
        let t = self.tok(i)?;
        let text = t.text(self.sql);
        match t.kind {
            TokenKind::Word => {
                let lower = String::from_utf8_lossy(text).to_ascii_lowercase();
                (!in_list(&lower, RESERVED)).then_some(lower)
            }
            TokenKind::QuotedIdent if text.first() == Some(&b'"') && text.len() >= 3 => {
                let inner = std::str::from_utf8(text.get(1..text.len() - 1)?).ok()?;
                Some(inner.replace("\"\"", "\""))
            }
            _ => None,
        }
    }

    /// `ident [. ident [. ident]]` at `i`: the folded parts and the index after the name.
    fn dotted(&self, i: usize) -> Option<(Vec<String>, usize)> {
        let mut parts = vec![self.ident(i)?];
        let mut j = i + 1;
        while self.is_op(j, ".") {
            // After a dot any keyword is a valid label.
            let part = self.ident(j + 1).or_else(|| self.lower(j + 1))?;
            parts.push(part);
            j += 2;
        }
        Some((parts, j))
    }

    /// A relation name (`db.schema.rel` keeps the last two parts, like the model).
    fn relation(&self, i: usize) -> Option<(Name, usize)> {
        let (parts, j) = self.dotted(i)?;
        let name = match parts.as_slice() {
            [rel] => Name::bare(rel),
            [schema, rel] | [_, schema, rel] => Name::new(Some(schema), rel),
            _ => return None,
        };
        Some((name, j))
    }

    /// Index of the `)` matching the `(` at `open`.
    fn close_paren(&self, open: usize) -> Option<usize> {
        crate::sql::lexer::matching_paren(&self.toks, open)
    }

    /// `( ident [, ident …] )` at `open`: folded names and the index of `)`.
    fn column_list(&self, open: usize) -> Option<(Vec<String>, usize)> {
        let close = self.close_paren(open)?;
        let mut names = Vec::new();
        let mut i = open + 1;
        while i < close {
            names.push(self.ident(i)?);
            i += 1;
            if i < close {
                if self.kind(i)? != TokenKind::Comma {
                    return None;
                }
                i += 1;
            }
        }
        (!names.is_empty()).then_some((names, close))
    }

    /// `ALTER TABLE [IF EXISTS] [ONLY] name [*]`.
    fn alter_head(&self) -> Result<AlterHead, RecipeError> {
        let bad = RecipeError::Unreadable("the ALTER TABLE head");
        if !(self.word(0, "ALTER") && self.word(1, "TABLE")) {
            return Err(bad);
        }
        let mut i = 2;
        if self.word(i, "IF") && self.word(i + 1, "EXISTS") {
            i += 2;
        }
        let only = self.word(i, "ONLY");
        if only {
            i += 1;
        }
        let (table, mut j) = self.relation(i).ok_or(bad)?;
        if self.is_op(j, "*") {
            j += 1;
        }
        Ok(AlterHead {
            table,
            only,
            action: j,
        })
    }

    /// Constraint attributes at depth 0 in tokens `from..to`: NOT VALID / NOT ENFORCED make
    /// the split pointless.
    fn check_attributes(&self, from: usize, to: usize) -> Result<(), RecipeError> {
        let mut depth = 0usize;
        for i in from..to.min(self.toks.len()) {
            match self.kind(i) {
                Some(TokenKind::LParen) => depth += 1,
                Some(TokenKind::RParen) => depth = depth.saturating_sub(1),
                _ if depth == 0 && self.word(i, "NOT") => {
                    if self.word(i + 1, "VALID") {
                        return Err(RecipeError::AlreadySafe("NOT VALID"));
                    }
                    if self.word(i + 1, "ENFORCED") {
                        return Err(RecipeError::AlreadySafe(
                            "NOT ENFORCED (such a constraint is never validated)",
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `ADD [CONSTRAINT n] {FOREIGN KEY | CHECK | UNIQUE | PRIMARY KEY} …` at `action`.
    fn table_constraint(&self, action: usize) -> Result<TableConstraint, RecipeError> {
        let bad = RecipeError::Unreadable("the constraint");
        if !self.word(action, "ADD") {
            return Err(bad);
        }
        let mut i = action + 1;
        let mut name = None;
        if self.word(i, "CONSTRAINT") {
            name = Some(
                self.ident(i + 1)
                    .ok_or(RecipeError::Unreadable("the constraint name"))?,
            );
            i += 2;
        }
        let body = self.text(i, self.last())?;
        let spec = if self.word(i, "FOREIGN") && self.word(i + 1, "KEY") {
            let (columns, close) = self.column_list(i + 2).ok_or(bad)?;
            if !self.word(close + 1, "REFERENCES") {
                return Err(RecipeError::Unreadable("the REFERENCES clause"));
            }
            self.check_attributes(close + 1, self.toks.len())?;
            ConstraintSpec::ForeignKey { columns }
        } else if self.word(i, "CHECK") {
            let close = self.close_paren(i + 1).ok_or(bad)?;
            self.check_attributes(close + 1, self.toks.len())?;
            ConstraintSpec::Check {
                columns: check_columns(self, i + 1, close),
            }
        } else if self.word(i, "UNIQUE") || (self.word(i, "PRIMARY") && self.word(i + 1, "KEY")) {
            let primary = self.word(i, "PRIMARY");
            let mut j = if primary { i + 2 } else { i + 1 };
            if self.word(j, "USING") && self.word(j + 1, "INDEX") {
                return Err(RecipeError::AlreadySafe("ADD CONSTRAINT … USING INDEX"));
            }
            let nulls = if primary {
                None
            } else {
                self.nulls_clause(&mut j)
            };
            let (columns, close) = self.column_list(j).ok_or(RecipeError::Unsupported(
                "a UNIQUE / PRIMARY KEY over expressions",
            ))?;
            let mut spec = self.index_tail(close + 1, self.toks.len(), primary)?;
            spec.columns = columns;
            spec.nulls = nulls;
            ConstraintSpec::Index(spec)
        } else {
            return Err(bad);
        };
        Ok(TableConstraint { name, body, spec })
    }

    /// `NULLS [NOT] DISTINCT` at `*j` (PostgreSQL 15+), advancing past it.
    fn nulls_clause(&self, j: &mut usize) -> Option<&'static str> {
        if !self.word(*j, "NULLS") {
            return None;
        }
        if self.word(*j + 1, "DISTINCT") {
            *j += 2;
            Some("NULLS DISTINCT")
        } else if self.word(*j + 1, "NOT") && self.word(*j + 2, "DISTINCT") {
            *j += 3;
            Some("NULLS NOT DISTINCT")
        } else {
            None
        }
    }

    /// `[INCLUDE (…)] [WITH (…)] [USING INDEX TABLESPACE ts] [attributes]` in `from..to`.
    fn index_tail(&self, from: usize, to: usize, primary: bool) -> Result<IndexSpec, RecipeError> {
        let mut spec = IndexSpec {
            primary,
            columns: Vec::new(),
            include: Vec::new(),
            nulls: None,
            with: None,
            tablespace: None,
            attributes: None,
        };
        let mut i = from;
        if self.word(i, "INCLUDE") {
            let (include, close) = self
                .column_list(i + 1)
                .ok_or(RecipeError::Unreadable("the INCLUDE list"))?;
            spec.include = include;
            i = close + 1;
        }
        if self.word(i, "WITH") && self.kind(i + 1) == Some(TokenKind::LParen) {
            let close = self
                .close_paren(i + 1)
                .ok_or(RecipeError::Unreadable("the WITH options"))?;
            spec.with = Some(self.text(i + 1, close)?);
            i = close + 1;
        }
        if self.word(i, "USING") && self.word(i + 1, "INDEX") && self.word(i + 2, "TABLESPACE") {
            spec.tablespace = Some(
                self.ident(i + 3)
                    .ok_or(RecipeError::Unreadable("the tablespace"))?,
            );
            i += 4;
        }
        if i < to {
            let mut j = i;
            while j < to {
                let attr = self.word(j, "DEFERRABLE")
                    || (self.word(j, "NOT") && self.word(j + 1, "DEFERRABLE"))
                    || self.word(j, "INITIALLY")
                    || self.word(j, "DEFERRED")
                    || self.word(j, "IMMEDIATE");
                if !attr {
                    return Err(RecipeError::Unsupported(
                        "this clause of a UNIQUE / PRIMARY KEY constraint",
                    ));
                }
                j += 1;
            }
            spec.attributes = Some(self.text(i, to - 1)?);
        }
        Ok(spec)
    }

    /// `ALTER [COLUMN] c SET NOT NULL` at `action`.
    fn expect_set_not_null(&self, action: usize) -> Result<(), RecipeError> {
        let mut i = action + 1;
        if self.word(i, "COLUMN") {
            i += 1;
        }
        let ok = self.word(action, "ALTER")
            && self.ident(i).is_some()
            && self.word(i + 1, "SET")
            && self.word(i + 2, "NOT")
            && self.word(i + 3, "NULL")
            && i + 3 == self.last();
        ok.then_some(())
            .ok_or(RecipeError::Unreadable("ALTER COLUMN … SET NOT NULL"))
    }

    /// Is `i` the first token of a new item in a column definition (depth 0)?
    fn starts_column_item(&self, i: usize) -> bool {
        let after = |kw: &str| i > 0 && self.word(i - 1, kw);
        if self.word(i, "NOT") {
            return self.word(i + 1, "NULL");
        }
        if self.word(i, "NULL") {
            // `ON DELETE SET NULL` belongs to REFERENCES; `NOT NULL` started at NOT.
            return !after("SET") && !after("NOT");
        }
        if self.word(i, "DEFAULT") {
            // `ON DELETE SET DEFAULT`, `GENERATED BY DEFAULT`.
            return !after("SET") && !after("BY");
        }
        // Reserved words can only be what they are; the unreserved ones could be a function
        // name inside a DEFAULT expression.
        let reserved = [
            "CONSTRAINT",
            "CHECK",
            "UNIQUE",
            "PRIMARY",
            "REFERENCES",
            "COLLATE",
        ];
        let unreserved = ["GENERATED", "COMPRESSION", "STORAGE"];
        reserved.iter().any(|kw| self.word(i, kw))
            || (unreserved.iter().any(|kw| self.word(i, kw))
                && self.kind(i + 1) != Some(TokenKind::LParen))
    }

    /// `ADD [COLUMN] [IF NOT EXISTS] c type [options and constraints]` at `action`.
    fn column_definition(&self, action: usize) -> Result<ColumnDef, RecipeError> {
        let bad = RecipeError::Unreadable("the column definition");
        if !self.word(action, "ADD") {
            return Err(bad);
        }
        let mut i = action + 1;
        if self.word(i, "COLUMN") {
            i += 1;
        }
        if self.word(i, "IF") && self.word(i + 1, "NOT") && self.word(i + 2, "EXISTS") {
            i += 3;
        }
        let name = self
            .ident(i)
            .ok_or(RecipeError::Unreadable("the column name"))?;
        let type_start = i + 1;
        // Items: the type first, then one item per option/constraint at depth 0.
        let mut bounds = vec![type_start];
        let mut depth = 0usize;
        for j in type_start..self.toks.len() {
            match self.kind(j) {
                Some(TokenKind::LParen) => depth += 1,
                Some(TokenKind::RParen) => depth = depth.saturating_sub(1),
                _ if depth == 0 && j > type_start && self.starts_column_item(j) => {
                    // `CONSTRAINT n KEYWORD`: the keyword is part of the CONSTRAINT item.
                    let named = bounds
                        .last()
                        .is_some_and(|&b| self.word(b, "CONSTRAINT") && j == b + 2);
                    if !named {
                        bounds.push(j);
                    }
                }
                _ => {}
            }
        }
        if bounds.len() == 1 && type_start > self.last() {
            return Err(bad);
        }
        let mut kept = Vec::new();
        let mut constraints = Vec::new();
        for (k, &b) in bounds.iter().enumerate() {
            let last = bounds.get(k + 1).map_or(self.last(), |&n| n - 1);
            if last < b {
                return Err(bad);
            }
            if k == 0 {
                kept.push(self.text(b, last)?);
                continue;
            }
            let (cname, kw) = if self.word(b, "CONSTRAINT") {
                (
                    Some(
                        self.ident(b + 1)
                            .ok_or(RecipeError::Unreadable("the constraint name"))?,
                    ),
                    b + 2,
                )
            } else {
                (None, b)
            };
            let spec = if self.word(kw, "REFERENCES") {
                self.check_attributes(kw, last + 1)?;
                Some(ColumnConstraintSpec::References)
            } else if self.word(kw, "CHECK") {
                let close = self.close_paren(kw + 1).ok_or(bad.clone())?;
                if close > last {
                    return Err(bad);
                }
                self.check_attributes(close + 1, last + 1)?;
                Some(ColumnConstraintSpec::Check {
                    columns: check_columns(self, kw + 1, close),
                })
            } else if self.word(kw, "UNIQUE")
                || (self.word(kw, "PRIMARY") && self.word(kw + 1, "KEY"))
            {
                let primary = self.word(kw, "PRIMARY");
                let mut j = if primary { kw + 2 } else { kw + 1 };
                let nulls = if primary {
                    None
                } else {
                    self.nulls_clause(&mut j)
                };
                let mut spec = self.index_tail(j, last + 1, primary)?;
                spec.nulls = nulls;
                Some(ColumnConstraintSpec::Index(spec))
            } else {
                None
            };
            match spec {
                Some(spec) => constraints.push(ColumnConstraint {
                    name: cname,
                    body: self.text(kw, last)?,
                    spec,
                }),
                None => kept.push(self.text(b, last)?),
            }
        }
        Ok(ColumnDef {
            name,
            rest: kept.join(" "),
            constraints,
        })
    }

    /// Where `CONCURRENTLY` goes in `REFRESH MATERIALIZED VIEW name`: after `VIEW`.
    fn refresh_insertion_point(&self) -> Result<usize, RecipeError> {
        if self.word(0, "REFRESH")
            && self.word(1, "MATERIALIZED")
            && self.word(2, "VIEW")
            && let Some(t) = self.tok(2)
        {
            return Ok(t.end);
        }
        Err(RecipeError::Unreadable("REFRESH MATERIALIZED VIEW"))
    }

    /// The words appear consecutively somewhere in the statement.
    fn contains_words(&self, words: &[&str]) -> bool {
        (0..self.toks.len()).any(|i| words.iter().enumerate().all(|(k, w)| self.word(i + k, w)))
    }

    /// `CREATE [UNIQUE] INDEX [CONCURRENTLY] [[IF NOT EXISTS] name] ON table <tail>`.
    fn create_index(&self) -> Result<CreateIndex, RecipeError> {
        let bad = RecipeError::Unreadable("the CREATE INDEX statement");
        if !self.word(0, "CREATE") {
            return Err(bad);
        }
        let mut i = 1;
        if self.word(i, "UNIQUE") {
            i += 1;
        }
        if !self.word(i, "INDEX") {
            return Err(bad);
        }
        i += 1;
        if self.word(i, "CONCURRENTLY") {
            i += 1;
        }
        if self.word(i, "IF") && self.word(i + 1, "NOT") && self.word(i + 2, "EXISTS") {
            i += 3;
        }
        let mut name = None;
        if !self.word(i, "ON") {
            name = Some(self.ident(i).ok_or(bad.clone())?);
            i += 1;
        }
        if !self.word(i, "ON") {
            return Err(bad);
        }
        i += 1;
        if self.word(i, "ONLY") {
            return Err(RecipeError::AlreadySafe("CREATE INDEX … ON ONLY"));
        }
        let (table, j) = self.relation(i).ok_or(bad.clone())?;
        if self.is_op(j, "*") {
            return Err(RecipeError::Unsupported("CREATE INDEX … ON table*"));
        }
        let tail = self.text(j, self.last())?;
        let mut open = j;
        if self.word(open, "USING") {
            open += 2;
        }
        let close = self.close_paren(open).ok_or(bad)?;
        let mut elements = Vec::new();
        let mut from = open + 1;
        let mut depth = 0usize;
        for k in open + 1..=close {
            match self.kind(k) {
                Some(TokenKind::LParen) => depth += 1,
                Some(TokenKind::RParen) if depth > 0 => depth -= 1,
                Some(TokenKind::Comma | TokenKind::RParen) if depth == 0 => {
                    if k == from {
                        return Err(RecipeError::Unreadable("the index columns"));
                    }
                    elements.push((from, k));
                    from = k + 1;
                }
                _ => {}
            }
        }
        let include = if self.word(close + 1, "INCLUDE") {
            self.column_list(close + 2)
                .ok_or(RecipeError::Unreadable("the INCLUDE list"))?
                .0
        } else {
            Vec::new()
        };
        Ok(CreateIndex {
            name,
            table,
            tail,
            elements,
            include,
        })
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL's naming rules
// ---------------------------------------------------------------------------

/// Truncates an identifier to 63 bytes at a character boundary, as the server does.
pub fn truncate(ident: &str) -> String {
    ident[..clip(ident, MAX_IDENTIFIER_BYTES)].to_owned()
}

fn truncate_name(n: &Name) -> Name {
    Name {
        schema: n.schema.as_deref().map(truncate),
        name: truncate(&n.name),
    }
}

/// The longest prefix of `s` of at most `limit` bytes that ends on a character boundary
/// (`pg_mbcliplen`).
fn clip(s: &str, limit: usize) -> usize {
    let mut n = limit.min(s.len());
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// PostgreSQL's `makeObjectName`: `name1[_name2]_label` within 63 bytes, shortening the longer
/// of the two names first, never the label.
pub fn object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let overhead = usize::from(name2.is_some()) + label.len() + 1;
    let avail = MAX_IDENTIFIER_BYTES.saturating_sub(overhead);
    let mut n1 = name1.len();
    let mut n2 = name2.map_or(0, str::len);
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 -= 1;
        }
    }
    let mut out = name1[..clip(name1, n1)].to_owned();
    if let Some(name2) = name2 {
        out.push('_');
        out.push_str(&name2[..clip(name2, n2)]);
    }
    out.push('_');
    out.push_str(label);
    out
}

/// `ChooseIndexNameAddition` / `ChooseForeignKeyConstraintNameAddition`: column names joined
/// with `_`, stopping once the result reaches NAMEDATALEN bytes.
fn name_addition(columns: &[String]) -> String {
    let mut buf = String::new();
    for c in columns {
        if !buf.is_empty() {
            buf.push('_');
        }
        buf.push_str(&c[..clip(c, MAX_IDENTIFIER_BYTES)]);
        if buf.len() > MAX_IDENTIFIER_BYTES {
            break;
        }
    }
    buf
}

/// The name of an unnamed CHECK: `<table>_<column>_check` when the expression references
/// exactly one column, `<table>_check` otherwise (`AddRelationNewConstraints`).
fn check_name(table: &str, columns: Option<Vec<String>>) -> Result<String, RecipeError> {
    let columns = columns.ok_or(RecipeError::NameNeeded(
        "ddlgate cannot tell which columns this CHECK expression references, so it cannot \
         know the name PostgreSQL would give the constraint; name it (ADD CONSTRAINT name \
         CHECK …) to have it run in steps",
    ))?;
    Ok(match columns.as_slice() {
        [one] => object_name(table, Some(one), "check"),
        _ => object_name(table, None, "check"),
    })
}

/// Words that are expression syntax, never a column, in a CHECK expression.
const EXPRESSION_WORDS: &str = "and or not is null true false in between like ilike similar to \
    distinct from case when then else end any all some array isnull notnull symmetric \
    asymmetric current_date current_time current_timestamp localtime localtimestamp \
    current_user session_user current_role user current_catalog current_schema";

/// Unreserved words that belong to expression syntax (`AT TIME ZONE`, interval fields,
/// `IS NORMALIZED`, …). Seen where a column could be, they make the reading uncertain.
const UNSURE_WORDS: &str = "at zone year month day hour minute second value normalized nfc nfd \
    nfkc nfkd document uescape operator";

/// Special-syntax functions whose arguments are not plain expressions.
const SPECIAL_FUNCTIONS: &str = "cast extract position substring overlay trim normalize treat \
    collation xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse \
    xmlpi xmlroot xmlserialize xmltable json json_array json_arrayagg json_exists \
    json_object json_objectagg json_query json_scalar json_serialize json_table json_value";

/// The distinct columns a CHECK expression (tokens `open..=close`, the parentheses) refers to,
/// in first-seen order — PostgreSQL's `pull_var_clause` as far as the tokens allow. `None`
/// when the expression uses syntax this reading does not cover.
fn check_columns(st: &Stmt<'_>, open: usize, close: usize) -> Option<Vec<String>> {
    let mut columns: Vec<String> = Vec::new();
    let mut i = open + 1;
    while i < close {
        let t = st.tok(i)?;
        match t.kind {
            TokenKind::Number
            | TokenKind::String
            | TokenKind::DollarString
            | TokenKind::Param
            | TokenKind::LParen
            | TokenKind::RParen
            | TokenKind::Comma => i += 1,
            TokenKind::Operator if st.is_op(i, "::") => i = skip_type(st, i + 1, close)?,
            TokenKind::Operator if st.is_op(i, ".") => return None,
            TokenKind::Operator => i += 1,
            TokenKind::Word | TokenKind::QuotedIdent => {
                if t.kind == TokenKind::Word && !st.is_op(i + 1, ".") {
                    let w = st.lower(i).unwrap_or_default();
                    if st.kind(i + 1) == Some(TokenKind::LParen) {
                        // A function call; special syntax has non-expression arguments.
                        if in_list(&w, SPECIAL_FUNCTIONS) {
                            return None;
                        }
                        i += 1;
                        continue;
                    }
                    if w == "collate" {
                        i = st.dotted(i + 1)?.1;
                        continue;
                    }
                    if w == "escape" && st.kind(i + 1) == Some(TokenKind::String) {
                        i += 2;
                        continue;
                    }
                    if in_list(&w, EXPRESSION_WORDS) {
                        i += 1;
                        continue;
                    }
                    if st.kind(i + 1) == Some(TokenKind::String) {
                        // A typed literal (`date '…'`). Interval fields after it (`DAY`) are
                        // unsure words and stop the reading when the loop reaches them.
                        i += 2;
                        continue;
                    }
                    if in_list(&w, UNSURE_WORDS) || quote::is_keyword(&w) {
                        return None;
                    }
                }
                let (parts, next) = st.dotted(i)?;
                if st.kind(next) == Some(TokenKind::LParen) {
                    // A qualified or quoted function name.
                    i = next;
                    continue;
                }
                if parts.len() > 3 {
                    return None;
                }
                let column = truncate(parts.last()?);
                if !columns.contains(&column) {
                    columns.push(column);
                }
                i = next;
            }
            TokenKind::Semicolon | TokenKind::LineComment | TokenKind::BlockComment => {
                return None;
            }
        }
    }
    Some(columns)
}

/// Skips a type name after `::` (qualified, multi-word, with typmods and array brackets);
/// returns the index after it.
fn skip_type(st: &Stmt<'_>, i: usize, limit: usize) -> Option<usize> {
    let (_, mut j) = st.dotted(i).or_else(|| Some((vec![st.lower(i)?], i + 1)))?;
    loop {
        if j >= limit {
            return Some(j);
        }
        if st.kind(j) == Some(TokenKind::LParen) {
            j = st.close_paren(j)? + 1;
        } else if st.is_op(j, "[") {
            while j < limit && !st.is_op(j, "]") {
                j += 1;
            }
            j += 1;
        } else if st
            .lower(j)
            .is_some_and(|w| in_list(&w, "precision varying with without time zone"))
        {
            j += 1;
        } else {
            return Some(j);
        }
    }
}

/// `ChooseIndexColumnNames` over the key elements then the `INCLUDE` columns: each element's
/// name (`FigureIndexColname`, `expr` when it has none), made unique by appending digits.
fn index_column_names(
    st: &Stmt<'_>,
    elements: &[(usize, usize)],
    include: &[String],
) -> Result<Vec<String>, RecipeError> {
    let unsure = RecipeError::NameNeeded(
        "ddlgate cannot tell which names PostgreSQL would give the partition indexes for \
         this index expression, so it cannot build them partition by partition",
    );
    let mut names = Vec::with_capacity(elements.len() + include.len());
    for &(from, to) in elements {
        names.push(
            element_name(st, from, to)
                .ok_or(unsure.clone())?
                .unwrap_or_else(|| "expr".to_owned()),
        );
    }
    names.extend(include.iter().map(|c| truncate(c)));
    let mut out: Vec<String> = Vec::new();
    for orig in names {
        let mut name = orig.clone();
        let mut n = 1u32;
        while out.contains(&name) {
            let digits = n.to_string();
            let keep = clip(&orig, MAX_IDENTIFIER_BYTES - digits.len());
            name = format!("{}{digits}", &orig[..keep]);
            n += 1;
        }
        out.push(name);
    }
    Ok(out)
}

/// The name of one index element (tokens `from..to`): `Some(None)` for an expression without
/// one, `None` when unsure.
fn element_name(st: &Stmt<'_>, from: usize, to: usize) -> Option<Option<String>> {
    match st.kind(from)? {
        TokenKind::LParen => {
            let close = st.close_paren(from)?;
            (close < to).then_some(())?;
            figure(st, from + 1, close).map(|(_, n)| n)
        }
        TokenKind::Word | TokenKind::QuotedIdent => {
            let (parts, next) = st.dotted(from)?;
            if st.kind(next) == Some(TokenKind::LParen) {
                let close = st.close_paren(next)?;
                (close < to).then_some(())?;
                function_name(st, from, &parts).map(|n| Some(Some(n)))?
            } else if parts.len() == 1 {
                // A plain column, followed by COLLATE / opclass / ASC / NULLS …
                Some(Some(truncate(&parts[0])))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The name `FigureColname` gives a function call `parts(…)` starting at token `at`.
fn function_name(st: &Stmt<'_>, at: usize, parts: &[String]) -> Option<String> {
    let last = parts.last()?;
    if parts.len() == 1 && st.kind(at) == Some(TokenKind::Word) {
        let w = last.as_str();
        if in_list(w, SPECIAL_FUNCTIONS) || in_list(w, UNSURE_WORDS) {
            return None;
        }
        if quote::is_keyword(w) && !in_list(w, "coalesce greatest least nullif row grouping") {
            return None;
        }
    }
    Some(truncate(last))
}

/// How deep `figure` follows nested parentheses, casts and COLLATE before calling the
/// expression unsure: real index expressions are shallow, hostile ones must not exhaust the
/// stack.
const MAX_FIGURE_DEPTH: usize = 32;

/// `FigureColnameInternal` over tokens `from..to`: (strength, name). Strength 2 is a column
/// or function name, 1 a type name from a cast, 0 no name. `None` when unsure.
fn figure(st: &Stmt<'_>, from: usize, to: usize) -> Option<(u8, Option<String>)> {
    figure_at(st, from, to, 0)
}

fn figure_at(st: &Stmt<'_>, from: usize, to: usize, level: usize) -> Option<(u8, Option<String>)> {
    if from >= to || level > MAX_FIGURE_DEPTH {
        return None;
    }
    let figure = |from: usize, to: usize| figure_at(st, from, to, level + 1);
    // Top-level structure: operators and keywords outside parentheses and brackets.
    let mut depth = 0usize;
    let mut brackets = 0usize;
    let mut last_cast = None;
    let mut collate = None;
    let mut operator = false;
    let mut comma = false;
    for i in from..to {
        match st.kind(i)? {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.checked_sub(1)?,
            _ if depth > 0 => {}
            TokenKind::Operator if st.is_op(i, "[") => brackets += 1,
            TokenKind::Operator if st.is_op(i, "]") => brackets = brackets.checked_sub(1)?,
            _ if brackets > 0 => {}
            TokenKind::Operator if st.is_op(i, "::") => last_cast = Some(i),
            TokenKind::Operator if st.is_op(i, ".") => {}
            TokenKind::Operator => operator = true,
            TokenKind::Comma => comma = true,
            TokenKind::Word => {
                let w = st.lower(i)?;
                if w == "collate" {
                    collate = collate.or(Some(i));
                } else if in_list(
                    &w,
                    "and or not is in like ilike similar between isnull notnull escape",
                ) {
                    operator = true;
                } else if in_list(&w, "at overlaps case") {
                    return None;
                }
            }
            _ => {}
        }
    }
    if comma {
        return None;
    }
    if operator {
        // A_Expr, BoolExpr, NullTest, …: no name.
        return Some((0, None));
    }
    if let Some(c) = collate {
        return figure(from, c);
    }
    if let Some(k) = last_cast {
        let (strength, name) = figure(from, k)?;
        if strength == 2 {
            return Some((2, name));
        }
        return Some((1, Some(type_name(st, k + 1, to)?)));
    }
    let first = st.tok(from)?;
    match first.kind {
        TokenKind::LParen => {
            let close = st.close_paren(from)?;
            if close + 1 == to {
                return figure(from + 1, close);
            }
            None
        }
        TokenKind::Number | TokenKind::String | TokenKind::DollarString | TokenKind::Param => {
            (from + 1 == to).then_some((0, None))
        }
        TokenKind::Word | TokenKind::QuotedIdent => {
            let lower = st.lower(from);
            if lower.as_deref() == Some("array") && st.is_op(from + 1, "[") {
                return Some((2, Some("array".to_owned())));
            }
            if lower
                .as_deref()
                .is_some_and(|w| in_list(w, "true false null"))
                && from + 1 == to
            {
                return Some((0, None));
            }
            let (parts, next) = st.dotted(from)?;
            if next == to {
                if parts.len() == 1 && first.kind == TokenKind::Word {
                    let w = parts[0].as_str();
                    if quote::is_keyword(w) || in_list(w, UNSURE_WORDS) {
                        return None;
                    }
                }
                return Some((2, Some(truncate(parts.last()?))));
            }
            if st.kind(next) == Some(TokenKind::LParen) {
                let close = st.close_paren(next)?;
                if close + 1 == to {
                    return function_name(st, from, &parts).map(|n| (2, Some(n)));
                }
                return None;
            }
            if st.is_op(next, "[") {
                // Subscripts only: the name of what is subscripted.
                return figure(from, next);
            }
            if parts.len() == 1 && st.kind(next) == Some(TokenKind::String) && next + 1 == to {
                // A typed literal, `date '2020-01-01'`.
                return Some((1, Some(type_name(st, from, next)?)));
            }
            None
        }
        _ => None,
    }
}

/// The last name of a type (`TypeName.names`), mapping SQL-standard spellings to the internal
/// names PostgreSQL's grammar gives them.
fn type_name(st: &Stmt<'_>, from: usize, to: usize) -> Option<String> {
    let (parts, next) = st
        .dotted(from)
        .or_else(|| Some((vec![st.lower(from)?], from + 1)))?;
    let quoted = st.kind(from) == Some(TokenKind::QuotedIdent);
    let words: Vec<String> = (next..to).filter_map(|i| st.lower(i)).collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    if parts.len() > 1 || quoted {
        return Some(truncate(parts.last()?));
    }
    let first = parts.first()?.as_str();
    let tz = has("with") && !has("without");
    Some(
        match first {
            "int" | "integer" => "int4",
            "smallint" => "int2",
            "bigint" => "int8",
            "real" => "float4",
            "double" if has("precision") => "float8",
            "float" if st.kind(next) != Some(TokenKind::LParen) => "float8",
            "decimal" | "dec" | "numeric" => "numeric",
            "boolean" => "bool",
            "char" | "character" | "nchar" if has("varying") => "varchar",
            "char" | "character" | "nchar" => "bpchar",
            "varchar" => "varchar",
            "bit" if has("varying") => "varbit",
            "bit" => "bit",
            "time" if tz => "timetz",
            "time" => "time",
            "timestamp" if tz => "timestamptz",
            "timestamp" => "timestamp",
            "interval" if words.is_empty() => "interval",
            "json" => "json",
            w if !quote::is_keyword(w) && !in_list(w, UNSURE_WORDS) => w,
            _ => return None,
        }
        .to_owned(),
    )
}

// ---------------------------------------------------------------------------
// Quoting
// ---------------------------------------------------------------------------

fn in_list(word: &str, list: &str) -> bool {
    crate::sql::keywords::in_list(word.as_bytes(), list)
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote::ident_if_needed(n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse;

    const PG15: u32 = 150_004;

    fn ctx(version: u32) -> Context<'static> {
        Context {
            server_version_num: version,
            partitions: None,
        }
    }

    fn plan_with(sql: &str, ctx: &Context<'_>) -> Result<Recipe, RecipeError> {
        let ddl = parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default());
        plan(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default(),
            &ddl,
            ctx,
        )
    }

    fn steps(sql: &str) -> Vec<String> {
        steps_on(sql, PG15)
    }

    fn steps_on(sql: &str, version: u32) -> Vec<String> {
        match plan_with(sql, &ctx(version)) {
            Ok(r) => r.steps.into_iter().map(|s| s.sql).collect(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    fn refused(sql: &str) -> RecipeError {
        match plan_with(sql, &ctx(PG15)) {
            Ok(r) => panic!("{sql} should be refused, got {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn foreign_key_becomes_not_valid_then_validate() {
        assert_eq!(
            steps(
                "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY \
                 (customer_id) REFERENCES customers (id) ON DELETE CASCADE"
            ),
            [
                "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY \
                 (customer_id) REFERENCES customers (id) ON DELETE CASCADE NOT VALID",
                "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_fk",
            ]
        );
        // Unnamed: PostgreSQL's own name, from the table and the key columns.
        assert_eq!(
            steps("ALTER TABLE orders ADD FOREIGN KEY (a, b) REFERENCES r -- trailing comment"),
            [
                "ALTER TABLE orders ADD CONSTRAINT orders_a_b_fkey FOREIGN KEY (a, b) \
                 REFERENCES r NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT orders_a_b_fkey",
            ]
        );
    }

    #[test]
    fn steps_carry_locks_and_prechecks() {
        let r = plan_with(
            "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES r (id)",
            &ctx(PG15),
        )
        .expect("recipe");
        assert_eq!(r.kind, RecipeKind::ForeignKey);
        assert_eq!(r.steps[0].lock, LockMode::ShareRowExclusive);
        assert!(!r.steps[0].long_running);
        assert_eq!(
            r.steps[0].skip_if.as_ref().map(Precheck::sql).as_deref(),
            Some(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = \
                 pg_catalog.to_regclass('t') AND conname = 'fk' AND contype = 'f')"
            )
        );
        assert_eq!(r.steps[1].kind, StepKind::ValidateConstraint);
        assert_eq!(r.steps[1].lock, LockMode::ShareUpdateExclusive);
        assert!(r.steps[1].long_running);
        let text = r.describe();
        assert!(text.contains("as 2 steps"), "{text}");
        assert!(
            text.contains("takes SHARE UPDATE EXCLUSIVE on t for as long as it runs"),
            "{text}"
        );
        assert!(
            text.contains("skipped if FOREIGN KEY constraint fk exists on t"),
            "{text}"
        );
    }

    #[test]
    fn check_constraint_names() {
        assert_eq!(
            steps("ALTER TABLE t ADD CHECK (price > 0)"),
            [
                "ALTER TABLE t ADD CONSTRAINT t_price_check CHECK (price > 0) NOT VALID",
                "ALTER TABLE t VALIDATE CONSTRAINT t_price_check",
            ]
        );
        assert_eq!(
            steps("ALTER TABLE t ADD CHECK (a > b)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_check CHECK (a > b) NOT VALID"
        );
        assert_eq!(
            steps("ALTER TABLE t ADD CHECK (t.a::numeric(10,2) > 1 AND a IS NOT NULL)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (t.a::numeric(10,2) > 1 AND a IS NOT \
             NULL) NOT VALID"
        );
        assert_eq!(
            steps("ALTER TABLE t ADD CHECK (lower(\"Mixed Col\") <> '' COLLATE \"C\")")[0],
            "ALTER TABLE t ADD CONSTRAINT \"t_Mixed Col_check\" CHECK (lower(\"Mixed Col\") <> \
             '' COLLATE \"C\") NOT VALID"
        );
        assert_eq!(
            steps("ALTER TABLE t ADD CHECK (d < date '2030-01-01' AND d > current_date)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_d_check CHECK (d < date '2030-01-01' AND d > \
             current_date) NOT VALID"
        );
        // NO INHERIT stays; NOT VALID goes after it.
        assert_eq!(
            steps("ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NO INHERIT")[0],
            "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NO INHERIT NOT VALID"
        );
        // Unsure which columns AT TIME ZONE references: ask for a name instead of guessing.
        assert!(matches!(
            refused("ALTER TABLE t ADD CHECK (ts AT TIME ZONE 'UTC' > now())"),
            RecipeError::NameNeeded(_)
        ));
        // …but with a name it runs.
        assert_eq!(
            steps(
                "ALTER TABLE t ADD CONSTRAINT ts_utc CHECK (ts AT TIME ZONE 'UTC' > '2020-01-01')"
            )[1],
            "ALTER TABLE t VALIDATE CONSTRAINT ts_utc"
        );
    }

    #[test]
    fn set_not_null_before_18_uses_a_temporary_check() {
        assert_eq!(
            steps("ALTER TABLE public.users ALTER COLUMN email SET NOT NULL"),
            [
                "ALTER TABLE public.users ADD CONSTRAINT users_email_ddlgate_nn CHECK (email IS \
                 NOT NULL) NOT VALID",
                "ALTER TABLE public.users VALIDATE CONSTRAINT users_email_ddlgate_nn",
                "ALTER TABLE public.users ALTER COLUMN email SET NOT NULL",
                "ALTER TABLE public.users DROP CONSTRAINT IF EXISTS users_email_ddlgate_nn",
            ]
        );
        let r = plan_with("ALTER TABLE users ALTER email SET NOT NULL", &ctx(PG15)).expect("r");
        assert_eq!(
            r.steps[2].skip_if,
            Some(Precheck::ColumnNotNull {
                table: Name::bare("users"),
                column: "email".into()
            })
        );
        assert_eq!(
            r.steps.iter().map(|s| s.lock).collect::<Vec<_>>(),
            [
                LockMode::AccessExclusive,
                LockMode::ShareUpdateExclusive,
                LockMode::AccessExclusive,
                LockMode::AccessExclusive
            ]
        );
    }

    #[test]
    fn set_not_null_on_18_uses_a_not_valid_not_null_constraint() {
        assert_eq!(
            steps_on(
                "ALTER TABLE public.users ALTER COLUMN email SET NOT NULL",
                180_001
            ),
            [
                "ALTER TABLE public.users ADD CONSTRAINT users_email_not_null NOT NULL email NOT \
                 VALID",
                "ALTER TABLE public.users VALIDATE CONSTRAINT users_email_not_null",
            ]
        );
        // Partitioned tables keep the CHECK route on 18.
        let parts = [Partition::leaf(Name::bare("p1"))];
        let r = plan_with(
            "ALTER TABLE p ALTER COLUMN v SET NOT NULL",
            &Context {
                server_version_num: 180_001,
                partitions: Some(&parts),
            },
        )
        .expect("recipe");
        assert_eq!(r.steps.len(), 4);
    }

    #[test]
    fn unique_and_primary_key_use_concurrent_indexes() {
        assert_eq!(
            steps("ALTER TABLE users ADD UNIQUE (email)"),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS users_email_key",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email)",
                "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX \
                 users_email_key",
            ]
        );
        assert_eq!(
            steps(
                "ALTER TABLE s.t ADD CONSTRAINT t_uq UNIQUE NULLS NOT DISTINCT (a, b) INCLUDE (c) \
                 WITH (fillfactor = 90) USING INDEX TABLESPACE pg_default DEFERRABLE INITIALLY \
                 DEFERRED"
            ),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS s.t_uq",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_uq ON s.t (a, b) INCLUDE (c) \
                 NULLS NOT DISTINCT WITH (fillfactor = 90) TABLESPACE pg_default",
                "ALTER TABLE s.t ADD CONSTRAINT t_uq UNIQUE USING INDEX t_uq DEFERRABLE \
                 INITIALLY DEFERRED",
            ]
        );
        // INCLUDE columns are part of PostgreSQL's generated name.
        assert_eq!(
            steps("ALTER TABLE t ADD UNIQUE (a) INCLUDE (b)")[1],
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_b_key ON t (a) INCLUDE (b)"
        );
        assert_eq!(
            steps("ALTER TABLE accounts ADD PRIMARY KEY (id)"),
            [
                "ALTER TABLE accounts ADD CONSTRAINT accounts_id_ddlgate_nn CHECK (id IS NOT \
                 NULL) NOT VALID",
                "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_id_ddlgate_nn",
                "ALTER TABLE accounts ALTER COLUMN id SET NOT NULL",
                "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_id_ddlgate_nn",
                "DROP INDEX CONCURRENTLY IF EXISTS accounts_pkey",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_pkey ON accounts (id)",
                "ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX \
                 accounts_pkey",
            ]
        );
        let r = plan_with("ALTER TABLE t ADD UNIQUE (a)", &ctx(PG15)).expect("r");
        assert_eq!(
            r.steps[0].skip_if,
            Some(Precheck::Not(Box::new(Precheck::IndexInvalid {
                table: Name::bare("t"),
                index: "t_a_key".into()
            })))
        );
        assert_eq!(r.steps[0].kind, StepKind::DropInvalidIndex);
        assert!(r.steps[1].long_running);
        assert_eq!(r.steps[1].lock, LockMode::ShareUpdateExclusive);
    }

    #[test]
    fn names_needing_quotes_are_quoted() {
        assert_eq!(
            steps("ALTER TABLE \"My Schema\".\"Order\"\"s\" ADD UNIQUE (\"Email\", \"user\")"),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS \"My Schema\".\"Order\"\"s_Email_user_key\"",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"Order\"\"s_Email_user_key\" ON \
                 \"My Schema\".\"Order\"\"s\" (\"Email\", \"user\")",
                "ALTER TABLE \"My Schema\".\"Order\"\"s\" ADD CONSTRAINT \
                 \"Order\"\"s_Email_user_key\" UNIQUE USING INDEX \"Order\"\"s_Email_user_key\"",
            ]
        );
        // A user-given constraint name that needs quoting, and a keyword column.
        assert_eq!(
            steps("ALTER TABLE t ALTER COLUMN \"Select\" SET NOT NULL")[2],
            "ALTER TABLE t ALTER COLUMN \"Select\" SET NOT NULL"
        );
        assert_eq!(
            steps("ALTER TABLE t ADD CONSTRAINT \"FK \"\"x\"\"\" FOREIGN KEY (a) REFERENCES r")[1],
            "ALTER TABLE t VALIDATE CONSTRAINT \"FK \"\"x\"\"\""
        );
        // Unquoted names are folded to lower case.
        assert_eq!(
            steps("ALTER TABLE Public.Users ALTER COLUMN Email SET NOT NULL")[2],
            "ALTER TABLE public.users ALTER COLUMN email SET NOT NULL"
        );
        // Prechecks quote names inside string literals.
        let r =
            plan_with("ALTER TABLE \"it's\" ADD CHECK (\"a\\b\" > 0)", &ctx(PG15)).expect("recipe");
        assert_eq!(
            r.steps[0].skip_if.as_ref().map(Precheck::sql).as_deref(),
            Some(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = \
                 pg_catalog.to_regclass('\"it''s\"') AND conname = E'it''s_a\\\\b_check' AND \
                 contype = 'c')"
            )
        );
    }

    #[test]
    fn quoting_follows_quote_ident() {
        assert_eq!(quote::ident_if_needed("users"), "users");
        assert_eq!(quote::ident_if_needed("_x1"), "_x1");
        assert_eq!(quote::ident_if_needed("Users"), "\"Users\"");
        assert_eq!(quote::ident_if_needed("1x"), "\"1x\"");
        assert_eq!(quote::ident_if_needed("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote::ident_if_needed("select"), "\"select\"");
        assert_eq!(quote::ident_if_needed("time"), "\"time\"");
        assert_eq!(quote::ident_if_needed("name"), "name");
        assert_eq!(quote::ident_if_needed("é"), "\"é\"");
        assert_eq!(quote::literal("a'b"), "'a''b'");
        assert_eq!(quote::literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn generated_names_fit_in_63_bytes() {
        let long = "a".repeat(60);
        let name = object_name(&long, Some("customer_id"), "fkey");
        assert_eq!(name.len(), 63);
        // The longer name is shortened first.
        assert_eq!(
            name,
            format!(
                "{}_customer_id_fkey",
                "a".repeat(63 - "_customer_id_fkey".len())
            )
        );
        let both = object_name(&"t".repeat(40), Some(&"c".repeat(40)), "key");
        assert_eq!(both, format!("{}_{}_key", "t".repeat(29), "c".repeat(29)));
        // Never splits a multibyte character.
        let multi = object_name(&"é".repeat(40), Some("c"), "check");
        assert!(multi.len() <= 63 && multi.ends_with("_c_check"));
        let sql = format!("ALTER TABLE {} ADD UNIQUE (x)", "t".repeat(70));
        let r = steps(&sql);
        assert!(r[2].ends_with(&format!("UNIQUE USING INDEX {}_x_key", "t".repeat(57))));
    }

    #[test]
    fn add_column_with_constraints() {
        assert_eq!(
            steps(
                "ALTER TABLE orders ADD COLUMN owner_id bigint DEFAULT 0 NOT NULL REFERENCES \
                 owners (id) ON DELETE SET NULL CONSTRAINT pos CHECK (owner_id >= 0) UNIQUE"
            ),
            [
                "ALTER TABLE orders ADD COLUMN IF NOT EXISTS owner_id bigint DEFAULT 0 NOT NULL",
                "ALTER TABLE orders ADD CONSTRAINT orders_owner_id_fkey FOREIGN KEY (owner_id) \
                 REFERENCES owners (id) ON DELETE SET NULL NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT orders_owner_id_fkey",
                "ALTER TABLE orders ADD CONSTRAINT pos CHECK (owner_id >= 0) NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT pos",
                "DROP INDEX CONCURRENTLY IF EXISTS orders_owner_id_key",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_owner_id_key ON orders \
                 (owner_id)",
                "ALTER TABLE orders ADD CONSTRAINT orders_owner_id_key UNIQUE USING INDEX \
                 orders_owner_id_key",
            ]
        );
        assert_eq!(
            steps("ALTER TABLE t ADD c timestamp with time zone CHECK (c > '2020-01-01')")[..3],
            [
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS c timestamp with time zone",
                "ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c > '2020-01-01') NOT VALID",
                "ALTER TABLE t VALIDATE CONSTRAINT t_c_check",
            ]
        );
        assert!(matches!(
            refused("ALTER TABLE t ADD COLUMN c int DEFAULT 0"),
            RecipeError::NoRecipe(_)
        ));
        assert!(matches!(
            refused("ALTER TABLE t ADD COLUMN id bigserial PRIMARY KEY"),
            RecipeError::Unsupported(_)
        ));
    }

    #[test]
    fn refresh_materialized_view_splices_concurrently() {
        assert_eq!(
            steps("REFRESH MATERIALIZED VIEW /* keep */ s.\"MV\""),
            ["REFRESH MATERIALIZED VIEW CONCURRENTLY /* keep */ s.\"MV\""]
        );
        let r = plan_with("REFRESH MATERIALIZED VIEW mv", &ctx(PG15)).expect("r");
        assert_eq!(r.steps[0].lock, LockMode::Exclusive);
        assert!(r.steps[0].long_running);
        assert!(matches!(
            refused("REFRESH MATERIALIZED VIEW CONCURRENTLY mv"),
            RecipeError::AlreadySafe(_)
        ));
        assert!(matches!(
            refused("REFRESH MATERIALIZED VIEW mv WITH NO DATA"),
            RecipeError::Unsupported(_)
        ));
    }

    #[test]
    fn partitioned_index_is_built_partition_by_partition() {
        let parts = [
            Partition::leaf(Name::new(Some("s"), "m_2025")),
            Partition::partitioned(
                Name::new(Some("s"), "m_2026"),
                vec![Partition::leaf(Name::new(Some("s"), "m_2026_q1"))],
            ),
        ];
        let c = Context {
            server_version_num: PG15,
            partitions: Some(&parts),
        };
        let r = plan_with(
            "CREATE INDEX ON s.m USING btree (tenant, lower(email)) WHERE x",
            &c,
        )
        .expect("recipe");
        let sql: Vec<&str> = r.steps.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE INDEX IF NOT EXISTS m_tenant_lower_idx ON ONLY s.m USING btree (tenant, \
                 lower(email)) WHERE x",
                "DROP INDEX CONCURRENTLY IF EXISTS s.m_2025_tenant_lower_idx",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS m_2025_tenant_lower_idx ON s.m_2025 \
                 USING btree (tenant, lower(email)) WHERE x",
                "ALTER INDEX s.m_tenant_lower_idx ATTACH PARTITION s.m_2025_tenant_lower_idx",
                "CREATE INDEX IF NOT EXISTS m_2026_tenant_lower_idx ON ONLY s.m_2026 USING \
                 btree (tenant, lower(email)) WHERE x",
                "DROP INDEX CONCURRENTLY IF EXISTS s.m_2026_q1_tenant_lower_idx",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS m_2026_q1_tenant_lower_idx ON \
                 s.m_2026_q1 USING btree (tenant, lower(email)) WHERE x",
                "ALTER INDEX s.m_2026_tenant_lower_idx ATTACH PARTITION \
                 s.m_2026_q1_tenant_lower_idx",
                "ALTER INDEX s.m_tenant_lower_idx ATTACH PARTITION s.m_2026_tenant_lower_idx",
            ]
        );
        assert_eq!(r.steps[0].lock, LockMode::Share);
        assert_eq!(r.steps[3].kind, StepKind::AttachIndex);
        // A user-given name is used for the parent; partitions still get PostgreSQL's names.
        let r = plan_with("CREATE UNIQUE INDEX \"Idx\" ON s.m (id)", &c).expect("recipe");
        assert_eq!(
            r.steps[0].sql,
            "CREATE UNIQUE INDEX IF NOT EXISTS \"Idx\" ON ONLY s.m (id)"
        );
        assert_eq!(
            r.steps[3].sql,
            "ALTER INDEX s.\"Idx\" ATTACH PARTITION s.m_2025_id_idx"
        );
        // Not partitioned: that is the single-statement CONCURRENTLY rewrite, not a recipe.
        assert!(matches!(
            refused("CREATE INDEX i ON t (x)"),
            RecipeError::NoRecipe(_)
        ));
    }

    #[test]
    fn index_column_names_follow_figure_colname() {
        let names = |cols: &str| {
            let sql = format!("CREATE INDEX ON t ({cols})");
            let st = Stmt::new(sql.as_bytes(), 0, sql.len(), LexOptions::default()).expect("stmt");
            let ci = st.create_index().expect("create index");
            index_column_names(&st, &ci.elements, &ci.include)
        };
        // Verified against PostgreSQL 15: p_v_expr_lower_expr1_k_text_coalesce_v1_idx.
        assert_eq!(
            names(
                "(v::text), (k + 1), lower(v::text), (v::text || 'x'), ((k)), ('a'::text), \
                 coalesce(k, v), v"
            )
            .expect("names"),
            ["v", "expr", "lower", "expr1", "k", "text", "coalesce", "v1"]
        );
        assert_eq!(
            names("x COLLATE \"C\" text_pattern_ops DESC NULLS LAST, s.f(y), (a.b)")
                .expect("names"),
            ["x", "f", "b"]
        );
        assert_eq!(
            names("((k + 1)::bigint), (1::int)").expect("names"),
            ["int8", "int4"]
        );
        // INCLUDE columns count (verified: m_a_id_tenant_idx).
        assert_eq!(
            names("id) INCLUDE (tenant, id").expect("names"),
            ["id", "tenant", "id1"]
        );
        assert!(names("(CASE WHEN a THEN 1 END)").is_err());
        assert!(names("(extract(year FROM ts))").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_split() {
        assert_eq!(
            refused("ALTER TABLE t ADD CHECK (a > 0), ADD CHECK (b > 0)"),
            RecipeError::SeveralActions(2)
        );
        assert_eq!(
            refused("ALTER TABLE t ADD COLUMN c int, ALTER COLUMN d SET NOT NULL"),
            RecipeError::SeveralActions(2)
        );
        assert!(matches!(
            refused("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID"),
            RecipeError::AlreadySafe(_)
        ));
        assert!(matches!(
            refused("ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX i"),
            RecipeError::AlreadySafe(_)
        ));
        assert!(matches!(
            refused("ALTER TABLE IF EXISTS t ADD CHECK (a > 0)"),
            RecipeError::Unsupported(_)
        ));
        assert!(matches!(
            refused("ALTER TABLE t DROP COLUMN c"),
            RecipeError::NoRecipe(_)
        ));
        assert!(matches!(
            refused("ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&)"),
            RecipeError::NoRecipe(_)
        ));
        assert!(matches!(refused("DROP TABLE t"), RecipeError::NoRecipe(_)));
        assert!(matches!(
            refused("ALTER TABLE t ADD UNIQUE (lower(a))"),
            RecipeError::Unsupported(_) | RecipeError::NotUnderstood | RecipeError::Unreadable(_)
        ));
        // A partitioned table: NOT VALID FKs only from 18, USING INDEX never.
        let parts = [Partition::leaf(Name::bare("p1"))];
        let part = |v| Context {
            server_version_num: v,
            partitions: Some(&parts),
        };
        assert!(matches!(
            plan_with(
                "ALTER TABLE p ADD FOREIGN KEY (k) REFERENCES r",
                &part(PG15)
            ),
            Err(RecipeError::Partitioned { .. })
        ));
        assert!(
            plan_with(
                "ALTER TABLE p ADD FOREIGN KEY (k) REFERENCES r",
                &part(180_000)
            )
            .is_ok()
        );
        assert!(matches!(
            plan_with("ALTER TABLE p ADD UNIQUE (k)", &part(PG15)),
            Err(RecipeError::Partitioned { .. })
        ));
        assert!(matches!(
            plan_with("ALTER TABLE t ADD CHECK (a > 0)", &ctx(110_000)),
            Err(RecipeError::ServerTooOld { .. })
        ));
    }

    #[test]
    fn only_is_carried_to_every_alter_table_step() {
        assert_eq!(
            steps("ALTER TABLE ONLY t ADD CONSTRAINT c CHECK (a > 0)"),
            [
                "ALTER TABLE ONLY t ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
                "ALTER TABLE ONLY t VALIDATE CONSTRAINT c",
            ]
        );
    }

    #[test]
    fn every_step_reparses_as_what_it_claims() {
        let statements = [
            "ALTER TABLE s.t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES r (id)",
            "ALTER TABLE t ADD CHECK (a > 0)",
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "ALTER TABLE t ADD COLUMN c int REFERENCES r UNIQUE",
        ];
        for sql in statements {
            for step in steps(sql) {
                let ddl = parse::understand(step.as_bytes(), 0, step.len(), LexOptions::default());
                assert_ne!(ddl.understood, Understood::Unknown, "{step}");
                match (&ddl.kind, step.split_whitespace().next()) {
                    (DdlKind::AlterTable { ops, .. }, Some("ALTER")) => assert_eq!(ops.len(), 1),
                    (DdlKind::CreateIndex { concurrently, .. }, Some("CREATE")) => {
                        assert!(concurrently, "{step}")
                    }
                    (DdlKind::DropIndex { concurrently, .. }, Some("DROP")) => {
                        assert!(concurrently, "{step}")
                    }
                    (other, _) => panic!("{step}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let parts = [Partition::leaf(Name::bare("p1"))];
        let c = Context {
            server_version_num: PG15,
            partitions: Some(&parts),
        };
        let deep = format!(
            "CREATE INDEX i ON p ({}x{})",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(plan_with(&deep, &c).is_err());
        let check = format!(
            "ALTER TABLE t ADD CHECK ({}x{})",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let _ = plan_with(&check, &ctx(PG15));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs = [
            "",
            "ALTER",
            "ALTER TABLE",
            "ALTER TABLE t ADD",
            "ALTER TABLE t ADD CONSTRAINT",
            "ALTER TABLE t ADD CHECK (",
            "ALTER TABLE t ADD FOREIGN KEY (a REFERENCES",
            "ALTER TABLE t ADD COLUMN",
            "ALTER TABLE t ADD COLUMN \"",
            "ALTER TABLE t ALTER COLUMN SET NOT NULL",
            "CREATE INDEX ON",
            "CREATE INDEX ON t (",
            "REFRESH MATERIALIZED VIEW",
            "ALTER TABLE t ADD UNIQUE ()",
            "ALTER TABLE t ADD CHECK ((((((",
            "ALTER TABLE é ADD CHECK (é > 0)",
        ];
        let parts = [Partition::leaf(Name::bare("p"))];
        for sql in inputs {
            for partitions in [None, Some(&parts[..])] {
                let c = Context {
                    server_version_num: PG15,
                    partitions,
                };
                let _ = plan_with(sql, &c);
                // Also with a model that does not match the text at all.
                let ddl = Ddl {
                    kind: DdlKind::AlterTable {
                        name: Name::bare("t"),
                        only: false,
                        if_exists: false,
                        ops: vec![AlterOp::SetNotNull { column: "c".into() }],
                    },
                    understood: Understood::Parsed,
                };
                let _ = plan(
                    sql.as_bytes(),
                    0,
                    sql.len(),
                    LexOptions::default(),
                    &ddl,
                    &c,
                );
                let _ = plan(sql.as_bytes(), 5, 3, LexOptions::default(), &ddl, &c);
            }
        }
    }
}
