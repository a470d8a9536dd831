//! `ban-drop-not-null`: `ALTER COLUMN … DROP NOT NULL`.
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly (catalog only).
//! - **Risk:** application code, reports and PL/pgSQL written against the column may not expect
//!   NULLs once they start appearing.
//! - **Safe alternative:** make sure every reader handles NULL before relaxing the constraint.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction, and a column the catalog
//!   shows without any NOT NULL (nothing to drop: knex's `.alter()` sends `DROP NOT NULL` before
//!   every column change).
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
    let nullable = ctx
        .catalog
        .and_then(|f| f.column(table, column))
        .is_some_and(|c| c.exists && c.nullable);
    if nullable {
        return None;
    }
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

    /// Nothing to drop on a column the catalog shows without any NOT NULL (knex's `.alter()`);
    /// a NOT NULL column, or one the catalog did not describe, is flagged.
    #[test]
    fn a_column_without_not_null_has_nothing_to_drop() {
        use crate::catalog::ColumnFacts;
        use crate::catalog::testing::{column, facts, table as existing};
        let ctx = |c: ColumnFacts| Ctx {
            catalog: Some(facts(existing("orders", 3_000_000, 1 << 30), vec![c])),
            ..Ctx::default()
        };
        let sql = "ALTER TABLE orders ALTER COLUMN total DROP NOT NULL";
        let total = || column("total", "numeric(12,2)", 1700, 786_438);
        let nullable = ColumnFacts {
            nullable: true,
            ..total()
        };
        let not_null = ColumnFacts {
            not_null: true,
            ..total()
        };
        assert_eq!(run(&RULE, sql, &ctx(nullable)), None);
        assert!(run(&RULE, sql, &ctx(not_null)).is_some());
        // PostgreSQL 18: a NOT VALID not-null constraint is neither.
        assert!(run(&RULE, sql, &ctx(total())).is_some());
        assert!(run(&RULE, sql, &Ctx::default()).is_some());
    }
}
