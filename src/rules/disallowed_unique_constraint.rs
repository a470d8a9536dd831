//! `disallowed-unique-constraint`: `ADD [CONSTRAINT n] UNIQUE (cols)` without `USING INDEX`,
//! or `ADD COLUMN … UNIQUE`.
//!
//! - **Lock:** ACCESS EXCLUSIVE while the unique index is built — every read and write waits
//!   for the whole build.
//! - **Safe alternative (R8):** `CREATE UNIQUE INDEX CONCURRENTLY n ON t (cols)`, then
//!   `ALTER TABLE t ADD CONSTRAINT n UNIQUE USING INDEX n` (brief lock). The index must be a
//!   plain b-tree (no expressions, not partial, default sort order). `USING INDEX` is not
//!   supported on partitioned tables, only on their partitions.
//! - **Rewrite:** no (two statements, the first outside any transaction).
//! - **Not flagged:** `… USING INDEX` and tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-ADD-TABLE-CONSTRAINT-USING-INDEX>

use super::{Action, Context, Finding, Rewrite, Rule, steps_hint};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl};

pub static RULE: Rule = Rule {
    id: "disallowed-unique-constraint",
    lock: "ACCESS EXCLUSIVE while the unique index is built: blocks every read and write",
    summary: "ADD UNIQUE without USING INDEX, or ADD COLUMN … UNIQUE",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    // The small-table allowance: on a table the catalog shows small the scan/rewrite
    // finishes in milliseconds, so the statement runs as written.
    if ctx.is_small(table) {
        return None;
    }
    let (message, hint) = ops.iter().find_map(|op| match op {
        AlterOp::AddConstraint(AddConstraint { name, kind: ConstraintKind::Unique { using_index: false }, .. }) => {
            let name = name.clone().unwrap_or_else(|| format!("{}_key", table.name));
            Some((
                format!(
                    "Adding a UNIQUE constraint to {table} builds its index under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole build."
                ),
                format!(
                    "Run CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} (…) first, then ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}, which takes only a brief lock."
                ),
            ))
        }
        AlterOp::AddColumn(c) if c.constraints.iter().any(|k| matches!(k, ConstraintKind::Unique { .. })) => {
            let column = &c.name;
            let name = format!("{}_{column}_key", table.name);
            Some((
                format!(
                    "Adding {table}.{column} as UNIQUE builds its index under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole build."
                ),
                format!(
                    "Add {column} without UNIQUE, run CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({column}), then ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}."
                ),
            ))
        }
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message,
        hint: steps_hint(hint, ctx),
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_unique_without_using_index() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD CONSTRAINT k UNIQUE USING INDEX k",
                "CREATE UNIQUE INDEX CONCURRENTLY k ON t (c)",
                "ALTER TABLE t ADD COLUMN c int",
                "ALTER TABLE t ADD COLUMN c int PRIMARY KEY",
                "CREATE TABLE t (c int UNIQUE)",
            ],
            &[
                "ALTER TABLE t ADD CONSTRAINT k UNIQUE (c)",
                "alter table s.t add unique (a, b)",
                "ALTER TABLE t ADD COLUMN c int UNIQUE",
                "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0 REFERENCES r CONSTRAINT u UNIQUE",
                "ALTER TABLE t ADD CONSTRAINT a UNIQUE USING INDEX a, ADD CONSTRAINT b UNIQUE (b)",
            ],
        );
    }

    #[test]
    fn hints_give_the_two_steps() {
        let f = run(
            &RULE,
            "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.hint
                .contains("CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users")
                && f.hint.contains("UNIQUE USING INDEX users_email_key"),
            "{}",
            f.hint
        );
        let f = run(
            &RULE,
            "ALTER TABLE users ADD COLUMN email text UNIQUE",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.hint.contains("users_email_key ON users (email)"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "ALTER TABLE fresh ADD UNIQUE (c)", &ctx), None);
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh ADD COLUMN c int UNIQUE", &ctx),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other ADD UNIQUE (c)", &ctx).is_some());
    }
}
