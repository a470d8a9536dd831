//! `adding-not-nullable-field`: `ALTER COLUMN … SET NOT NULL` on an existing table, and the
//! PostgreSQL 18 form `ADD CONSTRAINT n NOT NULL c` without `NOT VALID`.
//!
//! - **Lock:** ACCESS EXCLUSIVE for a full scan of the table that proves no row holds NULL —
//!   every read and write waits for the scan. From PostgreSQL 12 the scan is skipped when a
//!   valid `CHECK (c IS NOT NULL)` constraint already proves it.
//! - **Safe alternative (R7):** on PostgreSQL 12–17, `ADD CONSTRAINT … CHECK (c IS NOT NULL)
//!   NOT VALID`, `VALIDATE CONSTRAINT` in a separate transaction (SHARE UPDATE EXCLUSIVE, reads
//!   and writes continue), then `SET NOT NULL` (no scan) and drop the CHECK. On PostgreSQL 18,
//!   `ADD CONSTRAINT … NOT NULL c NOT VALID` then `VALIDATE CONSTRAINT`. Before 12 the scan
//!   cannot be avoided; the validated CHECK alone enforces the same rule.
//! - **Rewrite:** no, not yet: the recipe spans several transactions.
//! - **With the catalog:** `SET NOT NULL` is not flagged when it cannot scan: on PostgreSQL 12+
//!   a validated CHECK constraint already proves the column non-NULL (`CHECK (c IS NOT NULL)`,
//!   alone or AND-ed with other tests — the last step of R7), or the column already is NOT
//!   NULL with a validated constraint (the command is then a no-op).
//! - **Not flagged:** tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-DROP-NOT-NULL>

use super::{Action, Context, Finding, Rewrite, Rule, steps_hint};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-not-nullable-field",
    lock: "ACCESS EXCLUSIVE for a full table scan: blocks every read and write",
    summary: "ALTER COLUMN … SET NOT NULL on an existing table",
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
    // Facts read for this statement prove some columns need no scan.
    let proven = |column: &str| {
        ctx.catalog
            .and_then(|f| f.column(table, column))
            .is_some_and(|c| {
                c.exists && (c.not_null || (c.valid_not_null_check && ctx.at_least(12)))
            })
    };
    let (column, what) = ops.iter().find_map(|op| match op {
        AlterOp::SetNotNull { column } if proven(column) => None,
        AlterOp::SetNotNull { column } => {
            Some((column.as_str(), format!("SET NOT NULL on {table}.{column}")))
        }
        // PostgreSQL 18: the model keeps the constraint's name, not its column.
        AlterOp::AddConstraint(AddConstraint {
            name,
            kind: ConstraintKind::NotNull,
            not_valid: false,
            ..
        }) => {
            let name = name.as_deref().unwrap_or("…");
            Some((
                "<column>",
                format!("Adding the NOT NULL constraint {name} to {table}"),
            ))
        }
        _ => None,
    })?;
    let hint = if ctx.at_least(18) {
        format!(
            "Run ALTER TABLE {table} ADD CONSTRAINT {column}_not_null NOT NULL {column} NOT VALID (brief lock, no scan), then in a separate transaction ALTER TABLE {table} VALIDATE CONSTRAINT {column}_not_null, which scans without blocking reads or writes."
        )
    } else if ctx.at_least(12) {
        format!(
            "Run ALTER TABLE {table} ADD CONSTRAINT {column}_not_null CHECK ({column} IS NOT NULL) NOT VALID; then, each in its own transaction, VALIDATE CONSTRAINT {column}_not_null (scans without blocking reads or writes), ALTER COLUMN {column} SET NOT NULL (skips the scan thanks to the valid CHECK), and DROP CONSTRAINT {column}_not_null."
        )
    } else {
        format!(
            "Before PostgreSQL 12 SET NOT NULL always scans under ACCESS EXCLUSIVE. Enforce the rule with ADD CONSTRAINT {column}_not_null CHECK ({column} IS NOT NULL) NOT VALID followed by VALIDATE CONSTRAINT in a separate transaction, and SET NOT NULL after upgrading."
        )
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{what} scans the whole table under an ACCESS EXCLUSIVE lock: every read and write on {table} waits until the scan finishes."
        ),
        hint: steps_hint(hint, ctx),
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnFacts;
    use crate::catalog::testing::{column, facts, table as existing};
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::DdlKind;
    use crate::sql::statement::Name;

    #[test]
    fn flags_set_not_null() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
                "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0",
                "ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID",
                "ALTER TABLE t VALIDATE CONSTRAINT c_nn",
            ],
            &[
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                "alter table s.t alter c set not null",
                "ALTER TABLE t OWNER TO bob, ALTER COLUMN c SET NOT NULL",
            ],
        );
    }

    #[test]
    fn hint_follows_the_server_version() {
        let hint = |v: u32| {
            run(
                &RULE,
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                &Ctx::version(v),
            )
            .expect("flagged")
            .hint
        };
        assert!(
            hint(180_000).contains("NOT NULL email NOT VALID"),
            "{}",
            hint(180_000)
        );
        let h17 = hint(170_004);
        assert!(
            h17.contains("CHECK (email IS NOT NULL) NOT VALID") && h17.contains("skips the scan"),
            "{h17}"
        );
        assert!(hint(120_000).contains("skips the scan"));
        assert!(
            hint(110_000).contains("Before PostgreSQL 12"),
            "{}",
            hint(110_000)
        );
    }

    #[test]
    fn flags_validated_not_null_constraints() {
        // PostgreSQL 18 syntax sqlparser 0.64 rejects; the token classifier builds these.
        let add = |not_valid| Ddl {
            kind: DdlKind::AlterTable {
                name: Name::bare("users"),
                only: false,
                if_exists: false,
                ops: vec![AlterOp::AddConstraint(AddConstraint {
                    name: Some("email_nn".into()),
                    kind: ConstraintKind::NotNull,
                    not_valid,
                    index: None,
                })],
            },
            understood: crate::sql::statement::Understood::Fallback,
        };
        let f = (RULE.check)(&add(false), &Ctx::default().get()).expect("flagged");
        assert!(
            f.message
                .starts_with("Adding the NOT NULL constraint email_nn to users"),
            "{}",
            f.message
        );
        assert_eq!((RULE.check)(&add(true), &Ctx::default().get()), None);
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh ALTER COLUMN c SET NOT NULL", &ctx),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other ALTER COLUMN c SET NOT NULL", &ctx).is_some());
    }

    #[test]
    fn a_valid_not_null_check_makes_it_instant() {
        let email = || column("email", "text", 25, -1);
        let ctx = |columns: Vec<ColumnFacts>, version: u32| Ctx {
            catalog: Some(facts(existing("users", 3_000_000, 1 << 30), columns)),
            ..Ctx::version(version)
        };
        let checked = ColumnFacts {
            valid_not_null_check: true,
            checks: vec!["users_email_not_null".into()],
            ..email()
        };
        let already = ColumnFacts {
            not_null: true,
            ..email()
        };
        // (statement, context, None = passes / Some(the flagged table.column))
        let cases: Vec<(&str, Ctx, Option<&str>)> = vec![
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                ctx(vec![checked.clone()], 170_000),
                None,
            ),
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                ctx(vec![checked.clone()], 120_000),
                None,
            ),
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                ctx(vec![already.clone()], 110_000),
                None,
            ),
            // Before 12 the CHECK does not spare the scan.
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                ctx(vec![checked.clone()], 110_000),
                Some("users.email"),
            ),
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                ctx(vec![email()], 170_000),
                Some("users.email"),
            ),
            // Facts about another column or table prove nothing.
            (
                "ALTER TABLE users ALTER COLUMN name SET NOT NULL",
                ctx(vec![checked.clone()], 170_000),
                Some("users.name"),
            ),
            (
                "ALTER TABLE admins ALTER COLUMN email SET NOT NULL",
                ctx(vec![checked.clone()], 170_000),
                Some("admins.email"),
            ),
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                ctx(
                    vec![ColumnFacts {
                        exists: false,
                        ..already
                    }],
                    170_000,
                ),
                Some("users.email"),
            ),
            // Every SET NOT NULL counts.
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL, ALTER COLUMN name SET NOT NULL",
                ctx(vec![checked, column("name", "text", 25, -1)], 170_000),
                Some("users.name"),
            ),
        ];
        for (sql, ctx, expected) in cases {
            let got = run(&RULE, sql, &ctx);
            match expected {
                None => assert_eq!(got, None, "{sql} must pass"),
                Some(column) => {
                    let f = got.unwrap_or_else(|| panic!("{sql} must be flagged"));
                    assert!(
                        f.message.starts_with(&format!("SET NOT NULL on {column} ")),
                        "{sql}: {}",
                        f.message
                    );
                }
            }
        }
    }
}
