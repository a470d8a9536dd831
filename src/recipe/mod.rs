//! Multi-step recipes: one risky DDL statement turned into an ordered list of steps that reach
//! the same schema without holding a strong lock for long.
//!
//! Some statements have a safe form that is a single edit of the client's text (`CREATE INDEX`
//! → `CREATE INDEX CONCURRENTLY`, see `rewrite`). Others only become safe as a *sequence*:
//! a validated foreign key is added `NOT VALID` (brief lock, no scan) and validated in a second
//! transaction under SHARE UPDATE EXCLUSIVE, which lets reads and writes continue while the table
//! is scanned; a UNIQUE constraint is built as a concurrent index and then attached with
//! `USING INDEX`; an index on a partitioned table is built partition by partition; a partition
//! is detached concurrently before it is dropped. This module owns those sequences (recipes
//! R2, R3 for a list of indexes, R5–R9, R13 and R19 of the DDL-safety reference) — as data, so
//! that the executor can show them to the client, run them one by one, and resume them. A
//! multi-action `ALTER TABLE` is cut into its actions by [`split`]; the policy decides each
//! one (`analysis`), and the recipes here plan the risky ones.
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
//!   generates them (`makeObjectName`, `ChooseIndexColumnNames`, `FigureColname`, ported in
//!   `sql::naming`), so a table migrated through a recipe is indistinguishable in the catalog
//!   from one migrated with the original statement — `pg_dump` diffs and later migrations that
//!   refer to `orders_customer_id_fkey` keep working. Where ddlgate cannot be certain which name
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

mod column;
mod constraint;
mod drop_index;
mod index;
mod not_null;
mod partition;
mod precheck;
mod read;
mod refresh;
pub mod split;

use crate::sql::lexer::LexOptions;
use crate::sql::naming::{name_addition, object_name, truncate, truncate_name};
use crate::sql::quote;
use crate::sql::reader::{ReadError, Stmt};
use crate::sql::statement::{AlterOp, ConstraintKind, Ddl, DdlKind, LockMode, Name, Understood};
use column::add_column;
use constraint::{check_name, foreign_key_steps, not_valid_then_validate};
use drop_index::drop_indexes;
use index::{index_constraint_allowed, index_constraint_steps, partitioned_index, rebuild_invalid};
use not_null::not_null_steps;
use partition::drop_partition;
pub use precheck::{ConstraintType, Precheck};
use read::ConstraintSpec;
use refresh::refresh;

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
    /// `Some` when the statement's table is a partition (`pg_class.relispartition`): its
    /// parent, schema-qualified. `DROP TABLE` of a partition detaches it concurrently first.
    pub partition_of: Option<&'a Name>,
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
    /// `DROP TABLE partition` → `DETACH PARTITION … CONCURRENTLY` (R13) + `DROP TABLE`.
    DropPartition,
    /// `DROP INDEX a, b, …` → one `DROP INDEX CONCURRENTLY` per index (R3, split).
    DropIndexes,
    /// An `ALTER TABLE` of several actions → one `ALTER TABLE` per action, each as written or
    /// through its own recipe (`split`).
    SplitAlterTable,
    /// `CREATE INDEX … IF NOT EXISTS` over an INVALID leftover of a failed concurrent build →
    /// `DROP INDEX CONCURRENTLY` of the leftover + `CREATE INDEX CONCURRENTLY`.
    RebuildInvalidIndex,
    /// `ADD PRIMARY KEY USING INDEX` over nullable key columns → the NOT NULL recipe for each,
    /// then the statement (R9's tail, C8).
    PrimaryKeyUsingIndex,
    /// `ADD CONSTRAINT c … NOT VALID; VALIDATE CONSTRAINT c` sent as one Query (one implicit
    /// transaction) → the two statements, each committed on its own.
    ValidateApart,
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
            RecipeKind::DropPartition => "drop_partition",
            RecipeKind::DropIndexes => "drop_indexes",
            RecipeKind::SplitAlterTable => "split_alter_table",
            RecipeKind::RebuildInvalidIndex => "rebuild_invalid_index",
            RecipeKind::PrimaryKeyUsingIndex => "primary_key_using_index",
            RecipeKind::ValidateApart => "validate_apart",
        }
    }

    /// The CommandComplete tag of the statement the client sent, which it sees when the steps
    /// ran instead.
    pub fn command_tag(self) -> &'static str {
        match self {
            RecipeKind::RefreshMaterializedView => "REFRESH MATERIALIZED VIEW",
            RecipeKind::PartitionedIndex | RecipeKind::RebuildInvalidIndex => "CREATE INDEX",
            RecipeKind::DropPartition => "DROP TABLE",
            RecipeKind::DropIndexes => "DROP INDEX",
            _ => "ALTER TABLE",
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
            RecipeKind::DropPartition => "DROP TABLE of a partition",
            RecipeKind::DropIndexes => "DROP INDEX of several indexes",
            RecipeKind::SplitAlterTable => "ALTER TABLE of several actions",
            RecipeKind::RebuildInvalidIndex => "CREATE INDEX IF NOT EXISTS over an INVALID index",
            RecipeKind::PrimaryKeyUsingIndex => "ADD PRIMARY KEY USING INDEX",
            RecipeKind::ValidateApart => "ADD … NOT VALID followed by VALIDATE in one Query",
        }
    }

    /// How many statements of the client's the recipe replaces: one CommandComplete each.
    pub fn statements(self) -> usize {
        match self {
            RecipeKind::ValidateApart => 2,
            _ => 1,
        }
    }
}

/// The most steps [`Recipe::describe`] lists one by one: a recipe's length follows the client's
/// statement (5,000 actions in one ALTER TABLE, a table with 5,000 partitions), and the NOTICE
/// must stay readable and bounded. The rest are counted; the audit record keeps every step.
pub const MAX_LISTED_STEPS: usize = 20;

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
        // A list of indexes has no one object to name: the steps name each.
        let on = match self.kind {
            RecipeKind::DropIndexes => String::new(),
            _ => format!(" on {}", quote::name_if_needed(&self.target)),
        };
        let mut out = format!(
            "ddlgate runs this {}{on} as {} steps, each committed on its own; \
             a step is skipped when the catalog shows it is already done, so re-running \
             after a failure resumes:",
            self.kind.title(),
            self.steps.len()
        );
        for (i, step) in self.steps.iter().enumerate().take(MAX_LISTED_STEPS) {
            out.push_str(&format!(
                "\n  {}. {}\n     {}",
                i + 1,
                step.sql,
                step.describe()
            ));
        }
        if self.steps.len() > MAX_LISTED_STEPS {
            out.push_str(&format!(
                "\n  … and {} more steps (the audit log lists every step)",
                self.steps.len() - MAX_LISTED_STEPS
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
    /// `ALTER TABLE partitioned ADD CONSTRAINT … FOREIGN KEY …` after every leaf partition has
    /// the same constraint validated: PostgreSQL attaches those, no scan (catalog only).
    AttachConstraint,
    /// `REFRESH MATERIALIZED VIEW CONCURRENTLY …`.
    RefreshConcurrently,
    /// `ALTER TABLE parent DETACH PARTITION p FINALIZE`: completes a concurrent detach that
    /// was interrupted.
    FinalizeDetach,
    /// `ALTER TABLE parent DETACH PARTITION p CONCURRENTLY`.
    DetachConcurrently,
    /// `DROP TABLE p` of a table no longer attached to a parent.
    DropTable,
    /// `DROP INDEX CONCURRENTLY [IF EXISTS] …` of an index the client's statement drops.
    DropIndexConcurrently,
    /// One action of the client's multi-action `ALTER TABLE`, run as written on its own.
    AlterTableAction,
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
            StepKind::AttachConstraint => "attach_constraint",
            StepKind::RefreshConcurrently => "refresh_concurrently",
            StepKind::FinalizeDetach => "finalize_detach",
            StepKind::DetachConcurrently => "detach_concurrently",
            StepKind::DropTable => "drop_table",
            StepKind::DropIndexConcurrently => "drop_index_concurrently",
            StepKind::AlterTableAction => "alter_table_action",
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

impl From<ReadError> for RecipeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotUnderstood => RecipeError::NotUnderstood,
            ReadError::Unreadable(what) => RecipeError::Unreadable(what),
            ReadError::Unsupported(what) => RecipeError::Unsupported(what),
        }
    }
}

// ---------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------

/// What every recipe needs: a statement ddlgate understood, on a server the recipes are
/// written for.
fn plannable(ddl: &Ddl, ctx: &Context<'_>) -> Result<(), RecipeError> {
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
    Ok(())
}

/// Turns one statement (`sql[start..end]`, understood as `ddl`) into a recipe, or says why not.
///
/// Handled, each only as the statement's single action:
/// `ALTER TABLE … ADD [CONSTRAINT n] FOREIGN KEY … / CHECK (…)` (validated),
/// `ALTER TABLE … ALTER [COLUMN] c SET NOT NULL`,
/// `ALTER TABLE … ADD [CONSTRAINT n] UNIQUE (…) / PRIMARY KEY (…)`,
/// `ALTER TABLE … ADD [COLUMN] c type … {REFERENCES | UNIQUE | PRIMARY KEY | CHECK}…`,
/// `REFRESH MATERIALIZED VIEW mv` (the caller checks that `mv` has a unique index and is
/// populated), `CREATE [UNIQUE] INDEX … ON t (…)` when `ctx.partitions` says `t` is
/// partitioned, `DROP TABLE p` when `ctx.partition_of` says `p` is a partition, and `DROP
/// INDEX a, b, …` (one `DROP INDEX CONCURRENTLY` per index, named as in `ddl`: the caller puts
/// the server's schema-qualified names there).
pub fn plan(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    plannable(ddl, ctx)?;
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
        DdlKind::DropTable { names, cascade } => drop_partition(&st, names, *cascade, ctx),
        DdlKind::DropIndex {
            names,
            concurrently,
            if_exists,
            cascade,
        } => drop_indexes(names, *concurrently, *if_exists, *cascade),
        other => Err(RecipeError::NoRecipe(other.label())),
    }
}

/// [`plan`] for a `CREATE [UNIQUE] INDEX [CONCURRENTLY] IF NOT EXISTS name ON t …` when the
/// catalog shows an INVALID index `name` on `t` (left by a failed concurrent build), which
/// `IF NOT EXISTS` would keep: drop it concurrently, build again concurrently. `schema` is
/// `t`'s schema as the catalog resolved it. The caller checks the catalog fact; an ordinary
/// table only (a partitioned one has no concurrent build).
pub fn plan_rebuild_invalid_index(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    schema: &str,
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    if ddl.understood == Understood::Unknown {
        return Err(RecipeError::NotUnderstood);
    }
    if ctx.partitions.is_some() {
        return Err(RecipeError::Partitioned {
            what: "rebuilding an INVALID index concurrently",
        });
    }
    let DdlKind::CreateIndex {
        name: Some(name),
        table,
        unique,
        if_not_exists: true,
        only: false,
        ..
    } = &ddl.kind
    else {
        return Err(RecipeError::NoRecipe(ddl.kind.label()));
    };
    let st = Stmt::new(sql, start, end, lex)?;
    rebuild_invalid(&st, name, table, *unique, schema)
}

/// [`plan`] for `ALTER TABLE t ADD [CONSTRAINT n] PRIMARY KEY USING INDEX i` when the catalog
/// shows key columns of `i` that are not NOT NULL (`nullable`, as the catalog names them):
/// as written PostgreSQL would run `SET NOT NULL` on them, a full scan under ACCESS EXCLUSIVE.
/// The SET NOT NULL recipe runs for each of them first, then the client's statement as
/// written (skipped when the primary key is already there).
pub fn plan_primary_key_using_index(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    nullable: &[&str],
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    plannable(ddl, ctx)?;
    let DdlKind::AlterTable {
        name: table,
        only,
        if_exists: false,
        ops,
    } = &ddl.kind
    else {
        return Err(RecipeError::NoRecipe(ddl.kind.label()));
    };
    let [
        AlterOp::AddConstraint(crate::sql::statement::AddConstraint {
            name,
            kind: ConstraintKind::PrimaryKey { using_index: true },
            index: Some(index),
            ..
        }),
    ] = ops.as_slice()
    else {
        return Err(RecipeError::NoRecipe("this ALTER TABLE action"));
    };
    index_constraint_allowed(ctx)?;
    let st = Stmt::new(sql, start, end, lex)?;
    let head = st.alter_head()?;
    if head.table != *table || head.only != *only {
        return Err(RecipeError::Unreadable("the table name"));
    }
    let target = Target {
        name: truncate_name(table),
        only: *only,
    };
    let statement = st.text(0, st.last())?;
    let mut steps = Vec::new();
    for column in nullable {
        steps.extend(not_null_steps(&target, column, ctx));
    }
    steps.push(Step {
        sql: statement,
        kind: StepKind::AddConstraintUsingIndex,
        lock: LockMode::AccessExclusive,
        locked: target.name.clone(),
        long_running: false,
        skip_if: Some(Precheck::ConstraintExists {
            table: target.name.clone(),
            // With CONSTRAINT n PostgreSQL renames the index to n; without, the constraint
            // takes the index's name.
            name: truncate(name.as_deref().unwrap_or(index)),
            contype: ConstraintType::PrimaryKey,
        }),
    });
    Ok(Recipe {
        kind: RecipeKind::PrimaryKeyUsingIndex,
        target: table.clone(),
        steps,
    })
}

/// `ALTER TABLE t ADD CONSTRAINT c {CHECK | FOREIGN KEY | NOT NULL} … NOT VALID` followed by
/// `ALTER TABLE t VALIDATE CONSTRAINT c`, sent as one Query: in one transaction the lock of the
/// ADD would be held through the whole scan of the VALIDATE. The two statements, exactly as
/// the client wrote them, become two steps, each committed on its own — the ADD skipped when
/// the constraint is already there (a re-run after a failed validation), the VALIDATE when it
/// is already validated. `first` and `second` are each statement's `(start, end)` in `sql`
/// and its model.
pub fn plan_validate_apart(
    sql: &[u8],
    lex: LexOptions,
    first: ((usize, usize), &Ddl),
    second: ((usize, usize), &Ddl),
    server_version_num: u32,
) -> Result<Recipe, RecipeError> {
    let (((a_start, a_end), add), ((v_start, v_end), validate)) = (first, second);
    if add.understood == Understood::Unknown || validate.understood == Understood::Unknown {
        return Err(RecipeError::NotUnderstood);
    }
    let (
        DdlKind::AlterTable {
            name: table,
            ops: add_ops,
            ..
        },
        DdlKind::AlterTable {
            name: validated_table,
            ops: validate_ops,
            ..
        },
    ) = (&add.kind, &validate.kind)
    else {
        return Err(RecipeError::NoRecipe("not two ALTER TABLE statements"));
    };
    let (
        [
            AlterOp::AddConstraint(crate::sql::statement::AddConstraint {
                name: Some(constraint),
                kind,
                not_valid: true,
                ..
            }),
        ],
        [AlterOp::ValidateConstraint { name: validated }],
    ) = (add_ops.as_slice(), validate_ops.as_slice())
    else {
        return Err(RecipeError::NoRecipe(
            "not ADD CONSTRAINT … NOT VALID followed by VALIDATE CONSTRAINT",
        ));
    };
    if validated != constraint || validated_table != table {
        return Err(RecipeError::NoRecipe(
            "the VALIDATE names another constraint or table than the ADD",
        ));
    }
    let (contype, lock) = match kind {
        ConstraintKind::Check => (ConstraintType::Check, LockMode::AccessExclusive),
        ConstraintKind::ForeignKey { .. } => {
            (ConstraintType::ForeignKey, LockMode::ShareRowExclusive)
        }
        ConstraintKind::NotNull if server_version_num >= PG18 => {
            (ConstraintType::NotNull, LockMode::AccessExclusive)
        }
        _ => {
            return Err(RecipeError::NoRecipe(
                "a constraint that cannot be added NOT VALID",
            ));
        }
    };
    let add_sql = Stmt::new(sql, a_start, a_end, lex)?;
    let validate_sql = Stmt::new(sql, v_start, v_end, lex)?;
    let target = truncate_name(table);
    let name = truncate(constraint);
    Ok(Recipe {
        kind: RecipeKind::ValidateApart,
        target: table.clone(),
        steps: vec![
            Step {
                sql: add_sql.text(0, add_sql.last())?,
                kind: StepKind::AddConstraintNotValid,
                lock,
                locked: target.clone(),
                long_running: false,
                skip_if: Some(Precheck::ConstraintExists {
                    table: target.clone(),
                    name: name.clone(),
                    contype,
                }),
            },
            Step {
                sql: validate_sql.text(0, validate_sql.last())?,
                kind: StepKind::ValidateConstraint,
                lock: LockMode::ShareUpdateExclusive,
                locked: target.clone(),
                long_running: true,
                skip_if: Some(Precheck::ConstraintValidated {
                    table: target,
                    name,
                }),
            },
        ],
    })
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
                    let name = name.unwrap_or_else(|| {
                        object_name(target.relname(), Some(&name_addition(&columns)), "fkey")
                    });
                    Ok(Recipe {
                        kind: RecipeKind::ForeignKey,
                        target: table.clone(),
                        steps: foreign_key_steps(&target, &name, &parsed.body, ctx)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse;

    pub(super) const PG15: u32 = 150_004;

    pub(super) fn ctx(version: u32) -> Context<'static> {
        Context {
            server_version_num: version,
            partitions: None,
            partition_of: None,
        }
    }

    pub(super) fn plan_with(sql: &str, ctx: &Context<'_>) -> Result<Recipe, RecipeError> {
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

    pub(super) fn steps(sql: &str) -> Vec<String> {
        steps_on(sql, PG15)
    }

    pub(super) fn steps_on(sql: &str, version: u32) -> Vec<String> {
        match plan_with(sql, &ctx(version)) {
            Ok(r) => r.steps.into_iter().map(|s| s.sql).collect(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    pub(super) fn refused(sql: &str) -> RecipeError {
        match plan_with(sql, &ctx(PG15)) {
            Ok(r) => panic!("{sql} should be refused, got {r:?}"),
            Err(e) => e,
        }
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
        // A partitioned table: NOT VALID FKs only from 18 (before, per partition: see
        // `partitioned_foreign_key_is_validated_partition_by_partition`), USING INDEX never.
        let parts = [Partition::leaf(Name::bare("p1"))];
        let part = |v| Context {
            server_version_num: v,
            partitions: Some(&parts),
            partition_of: None,
        };
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
    fn partitioned_foreign_key_is_validated_partition_by_partition() {
        let parts = [
            Partition::leaf(Name::new(Some("public"), "ev_2024")),
            Partition::partitioned(
                Name::new(Some("public"), "ev_2026"),
                vec![Partition::leaf(Name::new(Some("public"), "ev_2026a"))],
            ),
        ];
        let on = |v| Context {
            server_version_num: v,
            partitions: Some(&parts),
            partition_of: None,
        };
        let none: [Partition; 0] = [];
        let empty = Context {
            server_version_num: PG15,
            partitions: Some(&none),
            partition_of: None,
        };
        let sql = |r: Result<Recipe, RecipeError>| -> Vec<String> {
            r.expect("recipe")
                .steps
                .into_iter()
                .map(|s| s.sql)
                .collect()
        };
        // (statement, context, steps)
        let (pg15, pg18) = (on(PG15), on(PG18));
        let cases: Vec<(&str, &Context<'_>, Vec<&str>)> = vec![
            (
                "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
                &pg15,
                vec![
                    "ALTER TABLE public.ev_2024 ADD CONSTRAINT ev_fk FOREIGN KEY (rid) \
                     REFERENCES refd (id) NOT VALID",
                    "ALTER TABLE public.ev_2024 VALIDATE CONSTRAINT ev_fk",
                    "ALTER TABLE public.ev_2026a ADD CONSTRAINT ev_fk FOREIGN KEY (rid) \
                     REFERENCES refd (id) NOT VALID",
                    "ALTER TABLE public.ev_2026a VALIDATE CONSTRAINT ev_fk",
                    "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
                ],
            ),
            // PostgreSQL's generated name, the parent's, on every partition.
            (
                "ALTER TABLE ev ADD FOREIGN KEY (rid, tenant) REFERENCES refd ON DELETE CASCADE",
                &pg15,
                vec![
                    "ALTER TABLE public.ev_2024 ADD CONSTRAINT ev_rid_tenant_fkey FOREIGN KEY \
                     (rid, tenant) REFERENCES refd ON DELETE CASCADE NOT VALID",
                    "ALTER TABLE public.ev_2024 VALIDATE CONSTRAINT ev_rid_tenant_fkey",
                    "ALTER TABLE public.ev_2026a ADD CONSTRAINT ev_rid_tenant_fkey FOREIGN KEY \
                     (rid, tenant) REFERENCES refd ON DELETE CASCADE NOT VALID",
                    "ALTER TABLE public.ev_2026a VALIDATE CONSTRAINT ev_rid_tenant_fkey",
                    "ALTER TABLE ev ADD CONSTRAINT ev_rid_tenant_fkey FOREIGN KEY (rid, tenant) \
                     REFERENCES refd ON DELETE CASCADE",
                ],
            ),
            // ADD COLUMN … REFERENCES: the column on the parent, then the same steps.
            (
                "ALTER TABLE ev ADD COLUMN oid2 int REFERENCES refd (id)",
                &pg15,
                vec![
                    "ALTER TABLE ev ADD COLUMN IF NOT EXISTS oid2 int",
                    "ALTER TABLE public.ev_2024 ADD CONSTRAINT ev_oid2_fkey FOREIGN KEY (oid2) \
                     REFERENCES refd (id) NOT VALID",
                    "ALTER TABLE public.ev_2024 VALIDATE CONSTRAINT ev_oid2_fkey",
                    "ALTER TABLE public.ev_2026a ADD CONSTRAINT ev_oid2_fkey FOREIGN KEY (oid2) \
                     REFERENCES refd (id) NOT VALID",
                    "ALTER TABLE public.ev_2026a VALIDATE CONSTRAINT ev_oid2_fkey",
                    "ALTER TABLE ev ADD CONSTRAINT ev_oid2_fkey FOREIGN KEY (oid2) REFERENCES \
                     refd (id)",
                ],
            ),
            // No partitions: nothing to scan, the parent's step alone.
            (
                "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
                &empty,
                vec!["ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)"],
            ),
            // PostgreSQL 18 accepts NOT VALID on the parent.
            (
                "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
                &pg18,
                vec![
                    "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id) \
                     NOT VALID",
                    "ALTER TABLE ev VALIDATE CONSTRAINT ev_fk",
                ],
            ),
        ];
        for (statement, c, expected) in cases {
            assert_eq!(sql(plan_with(statement, c)), expected, "{statement}");
        }
        let r = plan_with(
            "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
            &on(PG15),
        )
        .expect("recipe");
        let last = r.steps.last().expect("steps");
        assert_eq!(last.kind, StepKind::AttachConstraint);
        assert_eq!(last.lock, LockMode::ShareRowExclusive);
        assert!(!last.long_running);
        assert_eq!(
            last.skip_if,
            Some(Precheck::ConstraintExists {
                table: Name::bare("ev"),
                name: "ev_fk".into(),
                contype: ConstraintType::ForeignKey,
            })
        );
        assert!(r.steps[1].long_running);
        // ONLY is refused by PostgreSQL on a partitioned table's foreign key.
        assert!(matches!(
            plan_with(
                "ALTER TABLE ONLY ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
                &on(PG15)
            ),
            Err(RecipeError::Unsupported(_))
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
            partition_of: None,
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
                    partition_of: None,
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
