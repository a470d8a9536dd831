//! `ban-drop-column`: `ALTER TABLE … DROP COLUMN`.
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly (the column is only hidden; no rewrite). Indexes and
//!   constraints that use the column are dropped with it, non-concurrently.
//! - **Risk:** destructive, and running application code that still reads or writes the column
//!   (ORMs cache column lists) fails as soon as it is gone.
//! - **Safe alternative (R17):** stop the application using the column first (Rails
//!   `ignored_columns`, GitLab's `ignore_column` over several releases), drop dependent indexes
//!   with `DROP INDEX CONCURRENTLY`, then `DROP COLUMN IF EXISTS` under a short `lock_timeout`.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction (no code uses them yet).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-DROP-COLUMN>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "ban-drop-column",
    lock: "ACCESS EXCLUSIVE, briefly; dependent indexes and constraints are dropped non-concurrently",
    summary: "ALTER TABLE … DROP COLUMN",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let column = ops.iter().find_map(|op| match op {
        AlterOp::DropColumn { name } => Some(name),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Dropping {table}.{column} destroys its data, and running application code that still reads or writes {column} fails; indexes and constraints on it are dropped under the same ACCESS EXCLUSIVE lock."
        ),
        hint: format!(
            "First deploy code that no longer uses {column} (e.g. Rails ignored_columns), drop its indexes with DROP INDEX CONCURRENTLY, then DROP COLUMN IF EXISTS {column} under a short lock_timeout."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_drop_column() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t DROP CONSTRAINT c",
                "ALTER TABLE t ADD COLUMN c int",
                "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
                "DROP TABLE t",
            ],
            &[
                "ALTER TABLE t DROP COLUMN c",
                "alter table s.t drop c",
                "ALTER TABLE t DROP COLUMN IF EXISTS c CASCADE",
                "ALTER TABLE t ADD COLUMN n int, DROP COLUMN c",
            ],
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "ALTER TABLE fresh DROP COLUMN c", &ctx), None);
        let f = run(&RULE, "ALTER TABLE other DROP COLUMN legacy", &ctx).expect("flagged");
        assert!(f.message.contains("other.legacy"), "{}", f.message);
    }
}
