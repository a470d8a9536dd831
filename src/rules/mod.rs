//! The rule catalog: one file per rule, registered in [`RULES`].
//!
//! A rule is a pure function of a statement (ddlgate's model, `sql::statement`) and an explicit
//! [`Context`] — transaction status, whether the statement shares its protocol unit, server
//! version, tables created earlier in the transaction. No I/O, no globals. It returns findings:
//! the consequence (message), the safe alternative (hint) and, where ddlgate can do it, a
//! rewrite. What to *do* about a finding (allow, warn, rewrite, block) is the policy's call.
//!
//! Rule ids are stable and kebab-case; where squawk has a rule for the same concern its name is
//! used, so users coming from it recognise them. Adding a rule is one file plus one line in
//! `RULES`; a test checks ids are unique and documented.

use std::collections::HashSet;

use crate::protocol::TxStatus;
use crate::sql::statement::{AlterOp, Ddl, DdlKind, Name};

mod adding_auto_increment_column;
mod adding_enum_value_in_transaction;
mod adding_exclusion_constraint;
mod adding_field_with_default;
mod adding_field_with_time_default;
mod adding_foreign_key_constraint;
mod adding_json_field;
mod adding_not_nullable_field;
mod adding_required_field;
mod adding_serial_primary_key_field;
mod attaching_partition;
mod ban_alter_domain_with_add_constraint;
mod ban_concurrent_index_creation_in_transaction;
mod ban_copy_program;
mod ban_create_domain_with_constraint;
mod ban_create_rule;
mod ban_drop_cascade;
mod ban_drop_column;
mod ban_drop_database;
mod ban_drop_function;
mod ban_drop_not_null;
mod ban_drop_owned;
mod ban_drop_table;
mod ban_drop_view;
mod ban_truncate_cascade;
pub mod body;
mod changing_column_type;
mod changing_table_persistence;
mod changing_tablespace;
mod constraint_missing_not_valid;
mod creating_partition_locks_parent;
mod ddl_in_function_body;
mod disallowed_unique_constraint;
mod dropping_required_column_default;
pub mod large_backfill;
mod locking_table;
mod prefer_repack;
mod renaming_column;
mod renaming_enum_value;
mod renaming_object;
mod renaming_schema;
mod renaming_table;
mod require_concurrent_index_creation;
mod require_concurrent_index_deletion;
mod require_concurrent_materialized_view_refresh;
mod require_concurrent_partition_detach;
mod require_concurrent_reindex;
mod truncating_table;
mod unparsed_ddl;
mod unverifiable_dynamic_sql;
mod unverifiable_remote_sql;
pub mod validate_in_same_transaction;

// Opt-in style rules (`STYLE_RULES`).
mod ban_char_field;
mod identifier_too_long;
mod prefer_bigint_over_int;
mod prefer_bigint_over_smallint;
mod prefer_identity;
mod prefer_robust_stmts;
mod prefer_text_field;
mod prefer_timestamptz;
mod require_enum_value_ordering;
mod require_table_schema;
mod style;
mod using_new_enum_value_in_transaction;

/// What the default policy does with a rule's findings (a profile may change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Warn,
    /// Rewrite into the safe form when the finding carries a rewrite and the context allows
    /// it; otherwise block.
    Rewrite,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Warn => "warn",
            Action::Rewrite => "rewrite",
            Action::Block => "block",
        }
    }
}

/// A rule: identity, documentation and the check.
pub struct Rule {
    /// Stable kebab-case id, used in config, overrides, logs and metrics labels.
    pub id: &'static str,
    /// The lock the flagged statement takes and what that blocks.
    pub lock: &'static str,
    /// One line: what the rule detects.
    pub summary: &'static str,
    /// What the built-in enforce policy does with its findings.
    pub default_action: Action,
    /// The check itself.
    pub check: fn(&Ddl, &Context) -> Option<Finding>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("id", &self.id).finish()
    }
}

/// A safe form ddlgate can produce by editing the client's own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Insert `CONCURRENTLY` (CREATE INDEX, DROP INDEX, REINDEX, DETACH PARTITION).
    Concurrently,
    /// Run the statement as a sequence of safe steps (`crate::recipe`): NOT VALID + VALIDATE,
    /// the SET NOT NULL recipe, UNIQUE/PRIMARY KEY through a concurrent index, a partitioned
    /// index built partition by partition, … Only for a statement alone outside a transaction.
    Steps,
    /// Run the statement without `CONCURRENTLY` (removed from the client's text when written)
    /// under the lock guard: for a statement PostgreSQL can never run concurrently on its
    /// object (`DROP INDEX` of an index of a partitioned table), whose lock is held only for
    /// a catalog change, so the danger is only the wait in the lock queue — which the guard's
    /// short `lock_timeout` and retries remove. Only for a statement alone outside a
    /// transaction block.
    Guarded,
}

/// One problem with one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    /// The consequence, for a human: what running this would do to the application.
    pub message: String,
    /// The safe alternative.
    pub hint: String,
    /// Set when ddlgate can rewrite the statement into its safe form *in this context*.
    pub rewrite: Option<Rewrite>,
}

/// Where a statement is about to run.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Transaction status before the statement (from the last ReadyForQuery).
    pub tx: TxStatus,
    /// The statement shares its protocol unit with others (a multi-statement simple Query, or
    /// several Executes before one Sync): PostgreSQL runs the unit as one implicit transaction.
    pub shares_unit: bool,
    /// The statement sits inside a DO block or a function body.
    pub in_function_body: bool,
    /// `server_version_num`-style version (e.g. 150004), when known.
    pub server_version: Option<u32>,
    /// The names, as this statement writes them, of relations created earlier in the current
    /// transaction: invisible to every other session, so locking them blocks nobody. In the
    /// proxy only names the server confirmed resolve to a relation this transaction created
    /// (see `crate::created`); offline (`ddlgate check`) the tables of earlier CREATE TABLE
    /// statements in the file.
    pub created_in_tx: &'a HashSet<Name>,
    /// What the live catalog says about the objects the statement touches, when ddlgate read
    /// it; `None` offline or when unknown (rules then assume the worst case).
    pub catalog: Option<&'a crate::catalog::Facts>,
    /// The text after this statement in its message (the rest of a multi-statement Query, or
    /// of the unit `ddlgate check` reads), which runs in the same transaction when the
    /// statement is in one; empty in a function body. Searched, never parsed; bounded by
    /// [`later_window`].
    pub later: &'a [u8],
    /// Constraints added `NOT VALID` by earlier statements of the same message (a
    /// multi-statement Query runs as one transaction, and so does `BEGIN; …` inside it).
    pub added_not_valid: &'a [AddedNotValid],
}

/// A constraint an earlier statement of the same message added `NOT VALID` (see
/// [`Context::added_not_valid`]): `validate-in-same-transaction` looks for its VALIDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedNotValid {
    /// The table as that statement wrote it (folded).
    pub table: Name,
    /// The table as the catalog resolved it for that statement (schema-qualified), when read.
    pub resolved: Option<Name>,
    /// The constraint's name as written (folded). Only named constraints are followed.
    pub constraint: String,
    /// `CHECK`, `FOREIGN KEY` or `NOT NULL`, for messages.
    pub kind: &'static str,
    /// The catalog showed the table small for that statement (the small-table allowance: a
    /// scan of it takes milliseconds).
    pub small: bool,
    /// That statement and the one being checked are the whole of a lone simple Query outside
    /// a transaction block, and nothing else of it was rewritten or blocked: the two can run
    /// as two steps, each committed on its own.
    pub pair: bool,
}

impl Context<'_> {
    /// True when the statement runs inside a transaction block of any kind — explicit,
    /// implicit (multi-statement Query, pipeline) or a function body. CONCURRENTLY and the
    /// multi-step recipes are impossible there.
    pub fn in_transaction_block(&self) -> bool {
        self.tx != TxStatus::Idle || self.shares_unit || self.in_function_body
    }

    /// The small-table allowance: the live catalog shows `table` (the statement's relation,
    /// looked up by the name the statement wrote; for an index, its table) small — size
    /// measured and both [`crate::catalog::Thresholds`] met (see
    /// [`crate::catalog::Relation::is_small`]). Rules whose only danger is how long a lock is
    /// held while PostgreSQL scans or rewrites the table allow the statement as written then,
    /// inside or outside a transaction block. False offline and whenever a size is unknown.
    pub fn is_small(&self, table: &Name) -> bool {
        self.catalog.is_some_and(|f| {
            f.relation_for(table)
                .is_some_and(|r| r.is_small(&f.thresholds))
        })
    }

    /// [`Context::is_small`] for a second table the statement scans or locks: a foreign key's
    /// referenced table, a partition being attached.
    pub fn is_small_referenced(&self, table: &Name) -> bool {
        self.catalog.is_some_and(|f| {
            f.referenced(table)
                .is_some_and(|r| r.is_small(&f.thresholds))
        })
    }

    /// Whether the server is at least `major` (e.g. 12). Unknown versions count as recent, the
    /// version the rules assume when checking files offline without `--pg-version`.
    pub fn at_least(&self, major: u32) -> bool {
        self.server_version.is_none_or(|v| v >= major * 10_000)
    }

    /// An ALTER TABLE's table and actions, unless the table was created earlier in this
    /// transaction (nobody else can see it yet, so its locks harm no one).
    pub fn altered_existing_table<'a>(&self, ddl: &'a Ddl) -> Option<(&'a Name, &'a [AlterOp])> {
        match &ddl.kind {
            DdlKind::AlterTable { name, ops, .. } if !self.is_new(name) => Some((name, ops)),
            _ => None,
        }
    }

    /// The tables among `tables` that existed before this transaction, as `a, b` for a message;
    /// `None` when there are none (all created in it).
    pub fn existing_tables<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a Name>,
    ) -> Option<String> {
        let existing: Vec<String> = tables
            .into_iter()
            .filter(|t| !self.is_new(t))
            .map(ToString::to_string)
            .collect();
        (!existing.is_empty()).then(|| existing.join(", "))
    }

    /// The table was created earlier in this transaction: exactly this name, as written, is
    /// in the set. No guessing across spellings — `public.t` is not `t`, which may resolve to
    /// a temp table of that name.
    pub fn is_new(&self, table: &Name) -> bool {
        self.created_in_tx.contains(table)
    }

    /// Words for where the statement is, for messages: "inside a transaction block", …
    pub fn block_description(&self) -> &'static str {
        if self.in_function_body {
            "inside a function body or DO block"
        } else if self.tx != TxStatus::Idle {
            "inside a transaction block"
        } else {
            "in a multi-statement query or pipeline, which runs as one implicit transaction"
        }
    }
}

/// How far past a statement [`Context::later`] reaches: the text a rule may search for what
/// the same transaction does next (a DROP DEFAULT of the column just added, a use of the enum
/// value just added) — the statements that follow closely, as a migration writes them.
pub const LATER_WINDOW: usize = 64 * 1024;

/// How many DDL statements of one message get a [`Context::later`] at all. With the window,
/// this bounds what one message can make the rules search (64 × 64 KiB), whatever its size: a
/// message of thousands of `ADD COLUMN … NOT NULL DEFAULT` statements would otherwise have each
/// one search all the text after it (quadratic). Later statements are checked without it.
pub const LATER_STATEMENTS: usize = 64;

/// The text after `end` in `sql` that DDL statement number `ddl_number` (counted from one) of
/// its message may search: at most [`LATER_WINDOW`] bytes, and nothing past the first
/// [`LATER_STATEMENTS`] DDL statements.
pub fn later_window(sql: &[u8], end: usize, ddl_number: usize) -> &[u8] {
    if ddl_number > LATER_STATEMENTS {
        return &[];
    }
    let stop = end.saturating_add(LATER_WINDOW).min(sql.len());
    sql.get(end..stop).unwrap_or_default()
}

/// Every rule, in catalog order.
pub static RULES: &[&Rule] = &[
    // indexes
    &require_concurrent_index_creation::RULE,
    &require_concurrent_index_deletion::RULE,
    &require_concurrent_reindex::RULE,
    &ban_concurrent_index_creation_in_transaction::RULE,
    // columns
    &adding_field_with_default::RULE,
    &adding_field_with_time_default::RULE,
    &adding_json_field::RULE,
    &adding_auto_increment_column::RULE,
    &adding_required_field::RULE,
    &changing_column_type::RULE,
    &adding_not_nullable_field::RULE,
    &ban_drop_column::RULE,
    &renaming_column::RULE,
    &ban_drop_not_null::RULE,
    &dropping_required_column_default::RULE,
    // constraints
    &adding_foreign_key_constraint::RULE,
    &constraint_missing_not_valid::RULE,
    &disallowed_unique_constraint::RULE,
    &adding_serial_primary_key_field::RULE,
    &adding_exclusion_constraint::RULE,
    &validate_in_same_transaction::RULE,
    // tables and maintenance
    &ban_drop_table::RULE,
    &ban_truncate_cascade::RULE,
    &truncating_table::RULE,
    &renaming_table::RULE,
    &changing_tablespace::RULE,
    &changing_table_persistence::RULE,
    &prefer_repack::RULE,
    &locking_table::RULE,
    &ban_drop_database::RULE,
    // objects whose drop or rename reaches tables the statement does not name
    &ban_drop_owned::RULE,
    &ban_drop_cascade::RULE,
    &renaming_schema::RULE,
    &ban_create_rule::RULE,
    // objects running code uses by name
    &ban_drop_view::RULE,
    &ban_drop_function::RULE,
    &renaming_object::RULE,
    // partitions
    &require_concurrent_partition_detach::RULE,
    &creating_partition_locks_parent::RULE,
    &attaching_partition::RULE,
    // types, enums, domains
    &adding_enum_value_in_transaction::RULE,
    &using_new_enum_value_in_transaction::RULE,
    &renaming_enum_value::RULE,
    &ban_create_domain_with_constraint::RULE,
    &ban_alter_domain_with_add_constraint::RULE,
    // materialized views
    &require_concurrent_materialized_view_refresh::RULE,
    // DO blocks and function bodies (DO bodies are also checked by every rule above)
    &unverifiable_dynamic_sql::RULE,
    &ddl_in_function_body::RULE,
    // SQL and programs run where ddlgate cannot look
    &unverifiable_remote_sql::RULE,
    &ban_copy_program::RULE,
    // anything not understood
    &unparsed_ddl::RULE,
    // row changes the planner estimates large (the opt-in backfill guard)
    &large_backfill::RULE,
];

/// The backfill guard's rule id (`large-backfill`).
pub const LARGE_BACKFILL: &str = "large-backfill";

/// Opt-in style rules (squawk's type and naming preferences). Their default action is allow
/// and they are not even run unless a profile gives one of them another action
/// (`[policy.rules] prefer-identity = "warn"`) or `ddlgate check --style` turns them on: they
/// say nothing about locks or running code, only about what a team may prefer.
pub static STYLE_RULES: &[&Rule] = &[
    &prefer_bigint_over_int::RULE,
    &prefer_bigint_over_smallint::RULE,
    &prefer_identity::RULE,
    &prefer_text_field::RULE,
    &prefer_timestamptz::RULE,
    &ban_char_field::RULE,
    &prefer_robust_stmts::RULE,
    &identifier_too_long::RULE,
    &require_table_schema::RULE,
    &require_enum_value_ordering::RULE,
];

/// Whether `id` is one of the [`STYLE_RULES`].
pub fn is_style(id: &str) -> bool {
    STYLE_RULES.iter().any(|r| r.id == id)
}

/// The catalog as Markdown tables (`ddlgate rules --format markdown`; the README embeds it,
/// and a test keeps the two identical): the rules, then the opt-in style rules.
pub fn catalog_markdown() -> String {
    let mut out = table_markdown(RULES);
    out.push_str("\nOpt-in style rules (off unless a profile sets an action for them; on with `ddlgate check --style`):\n\n");
    out.push_str(&table_markdown(STYLE_RULES));
    out
}

fn table_markdown(rules: &[&Rule]) -> String {
    let mut out = String::from("| Rule | Default | Lock | Flags |\n|---|---|---|---|\n");
    for r in rules {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.id,
            r.default_action.as_str(),
            r.lock.replace('|', "\\|"),
            r.summary.replace('|', "\\|")
        ));
    }
    out
}

/// The catalog as plain text (`ddlgate rules`).
pub fn catalog_text() -> String {
    let mut out = String::new();
    for r in RULES.iter().chain(STYLE_RULES) {
        out.push_str(&format!(
            "{} [{}]\n    flags: {}\n    lock:  {}\n",
            r.id,
            r.default_action.as_str(),
            r.summary,
            r.lock
        ));
    }
    out
}

/// Looks a rule up by id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .chain(STYLE_RULES)
        .copied()
        .find(|r| r.id == id)
}

/// Runs every rule over one statement.
///
/// A `DO` block's statements run now, inside it: they are checked by the same rules, and their
/// findings (under the inner rule's id, the statement quoted) count as the block's own.
pub fn check(ddl: &Ddl, ctx: &Context) -> Vec<Finding> {
    let mut findings: Vec<Finding> = RULES.iter().filter_map(|r| (r.check)(ddl, ctx)).collect();
    if let DdlKind::Do { language, body } = &ddl.kind {
        findings.extend(body::inspect(language.as_deref(), body, ctx).findings);
    }
    findings
}

/// Runs the opt-in [`STYLE_RULES`] for which `enabled(id)` holds (those the profile turned
/// on) over one statement.
pub fn check_style(ddl: &Ddl, ctx: &Context, enabled: impl Fn(&str) -> bool) -> Vec<Finding> {
    STYLE_RULES
        .iter()
        .filter(|r| enabled(r.id))
        .filter_map(|r| (r.check)(ddl, ctx))
        .collect()
}

/// How to run a CONCURRENTLY statement outside a transaction with each migration tool; used
/// in hints when the statement arrives inside one.
pub const OUTSIDE_TRANSACTION_HINT: &str = "Run it as its own statement outside any transaction: \
Rails `disable_ddl_transaction!`; Django `atomic = False` on the migration; Alembic \
`with op.get_context().autocommit_block():` and `transaction_per_migration=True` in env.py; \
Flyway `executeInTransaction=false`; sqlx `-- no-transaction` as the first line of a file \
holding only this statement; diesel `run_in_transaction = false` in the migration's \
`metadata.toml`, with only this statement in its `up.sql`; golang-migrate a file with only \
this statement; knex `exports.config = { transaction: false }`; node-pg-migrate \
`pgm.noTransaction()`; dbmate `-- migrate:up transaction:false` on a migration holding only \
this statement; psql without `-1` and not in a `-c` string with other statements.";

/// The hint of a rule whose safe form is several steps (`Rewrite::Steps`), completed when the
/// statement arrives inside a transaction block, where ddlgate cannot run them: outside one,
/// alone, ddlgate runs those steps itself, so the tool's way to send it so is the shorter way
/// out than writing the steps by hand (which also need separate transactions).
pub fn steps_hint(hint: String, ctx: &Context) -> String {
    if ctx.in_transaction_block() {
        format!(
            "{hint} Or let ddlgate run these steps: they cannot run {}, but ddlgate runs them itself when the statement arrives alone, outside any transaction, as a simple query or as one Parse/Bind/Execute/Sync unit without parameters. {OUTSIDE_TRANSACTION_HINT}",
            ctx.block_description()
        )
    } else {
        hint
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the table-driven rule tests.
    use super::*;
    use crate::sql::lexer::LexOptions;
    use crate::sql::parse;

    pub fn understand(sql: &str) -> Ddl {
        parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }

    pub struct Ctx {
        pub tx: TxStatus,
        pub shares_unit: bool,
        pub in_function_body: bool,
        pub version: Option<u32>,
        pub created: HashSet<Name>,
        pub catalog: Option<crate::catalog::Facts>,
        pub later: String,
        pub added_not_valid: Vec<AddedNotValid>,
    }

    impl Default for Ctx {
        fn default() -> Self {
            Ctx {
                tx: TxStatus::Idle,
                shares_unit: false,
                in_function_body: false,
                version: Some(170_000),
                created: HashSet::new(),
                catalog: None,
                later: String::new(),
                added_not_valid: Vec::new(),
            }
        }
    }

    impl Ctx {
        pub fn in_tx() -> Ctx {
            Ctx {
                tx: TxStatus::InTransaction,
                ..Ctx::default()
            }
        }

        pub fn version(v: u32) -> Ctx {
            Ctx {
                version: Some(v),
                ..Ctx::default()
            }
        }

        pub fn get(&self) -> Context<'_> {
            Context {
                tx: self.tx,
                shares_unit: self.shares_unit,
                in_function_body: self.in_function_body,
                server_version: self.version,
                created_in_tx: &self.created,
                catalog: self.catalog.as_ref(),
                later: self.later.as_bytes(),
                added_not_valid: &self.added_not_valid,
            }
        }
    }

    /// Runs one rule over `sql` in `ctx`.
    pub fn run(rule: &Rule, sql: &str, ctx: &Ctx) -> Option<Finding> {
        (rule.check)(&understand(sql), &ctx.get())
    }

    /// Asserts `rule` passes every statement in `ok` and flags every one in `flagged`.
    pub fn table(rule: &Rule, ctx: &Ctx, ok: &[&str], flagged: &[&str]) {
        for sql in ok {
            assert_eq!(run(rule, sql, ctx), None, "{} must pass: {sql}", rule.id);
        }
        for sql in flagged {
            let f = run(rule, sql, ctx).unwrap_or_else(|| panic!("{} must flag: {sql}", rule.id));
            assert_eq!(f.rule, rule.id);
            assert!(
                !f.message.is_empty() && !f.hint.is_empty(),
                "{sql}: message and hint are required"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_documented() {
        let mut seen = HashSet::new();
        for r in RULES.iter().chain(STYLE_RULES) {
            assert!(seen.insert(r.id), "duplicate rule id {}", r.id);
            assert!(
                r.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                    && !r.id.starts_with('-')
                    && !r.id.ends_with('-'),
                "{} is not kebab-case",
                r.id
            );
            assert!(
                !r.summary.is_empty() && !r.lock.is_empty(),
                "{} must document its summary and lock",
                r.id
            );
            let file = format!(
                "{}/src/rules/{}.rs",
                env!("CARGO_MANIFEST_DIR"),
                r.id.replace('-', "_")
            );
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|_| panic!("rule {} must live in {file}", r.id));
            assert!(source.starts_with("//!"), "{file} must open with a //! doc");
            assert!(
                source.contains("postgresql.org/docs"),
                "{file} must link the PostgreSQL docs"
            );
        }
        assert!(rule("unparsed-ddl").is_some());
        assert_eq!(
            catalog_text().lines().count(),
            (RULES.len() + STYLE_RULES.len()) * 3
        );
        assert!(
            STYLE_RULES
                .iter()
                .all(|r| r.default_action == Action::Allow)
        );
        assert!(rule("no-such-rule").is_none());
    }

    #[test]
    fn readme_lists_the_catalog() {
        let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR")))
            .expect("README.md");
        assert!(
            readme.contains(&catalog_markdown()),
            "README.md must contain the output of `ddlgate rules --format markdown`:\n{}",
            catalog_markdown()
        );
    }

    /// Inside a transaction the multi-step rules cannot have ddlgate run their steps: their
    /// hints say so and give each tool's way out (knex, node-pg-migrate, dbmate and the rest),
    /// which the steps alone never told (tests/e2e/node_pg_migrate.rs prints the hint).
    #[test]
    fn steps_hints_give_the_way_out_of_a_transaction() {
        use testing::{Ctx, run};
        let cases: [(&Rule, &str); 5] = [
            (
                &adding_foreign_key_constraint::RULE,
                "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id)",
            ),
            (
                &disallowed_unique_constraint::RULE,
                "ALTER TABLE accounts ADD CONSTRAINT k UNIQUE (email)",
            ),
            (
                &adding_not_nullable_field::RULE,
                "ALTER TABLE orders ALTER COLUMN total SET NOT NULL",
            ),
            (
                &constraint_missing_not_valid::RULE,
                "ALTER TABLE orders ADD CONSTRAINT ck CHECK (total > 0)",
            ),
            (
                &adding_serial_primary_key_field::RULE,
                "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id)",
            ),
        ];
        for (rule, sql) in cases {
            let inside = run(rule, sql, &Ctx::in_tx()).expect("flagged in a transaction");
            assert!(
                inside.hint.ends_with(OUTSIDE_TRANSACTION_HINT)
                    && inside.hint.contains("Or let ddlgate run these steps"),
                "{}: {}",
                rule.id,
                inside.hint
            );
            let alone = run(rule, sql, &Ctx::default()).expect("flagged");
            assert_eq!(alone.rewrite, Some(Rewrite::Steps), "{}", rule.id);
            assert!(
                !alone.hint.contains(OUTSIDE_TRANSACTION_HINT),
                "{}: {}",
                rule.id,
                alone.hint
            );
        }
    }
}
