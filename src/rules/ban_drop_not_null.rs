//! `ban-drop-not-null`: `ALTER COLUMN … DROP NOT NULL`.
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly (catalog only).
//! - **Risk:** application code, reports and PL/pgSQL written against the column may not expect
//!   NULLs once they start appearing.
//! - **Safe alternative:** make sure every reader handles NULL before relaxing the constraint.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-DROP-NOT-NULL>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "ban-drop-not-null",
    lock: "ACCESS EXCLUSIVE, briefly; code may not expect NULLs afterwards",
    summary: "ALTER COLUMN … DROP NOT NULL",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let column = ops.iter().find_map(|op| match op {
        AlterOp::DropNotNull { column } => Some(column),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Dropping NOT NULL on {table}.{column} lets NULLs in: application code, reports and functions that assume {column} always has a value may break."
        ),
        hint: format!(
            "Check that every reader of {table}.{column} handles NULL before relaxing the constraint."
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
    fn flags_drop_not_null() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
                "ALTER TABLE t ADD COLUMN c int NULL",
            ],
            &[
                "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
                "alter table s.t alter c drop not null",
                "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0, ALTER COLUMN c DROP NOT NULL",
            ],
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ALTER COLUMN c DROP NOT NULL",
                &ctx
            ),
            None
        );
        assert!(
            run(
                &RULE,
                "ALTER TABLE other ALTER COLUMN c DROP NOT NULL",
                &ctx
            )
            .is_some()
        );
    }
}
