//! `changing-column-type`: `ALTER COLUMN … TYPE`.
//!
//! - **Lock:** ACCESS EXCLUSIVE. Unless the old type is binary-coercible to the new one, the
//!   table and all its indexes are rewritten while the lock is held — every read and write
//!   waits. Clients may also break on the new type.
//! - **Known-safe changes:** `varchar(n)` → `varchar(m ≥ n)` / `text`, a `numeric` precision
//!   increase, `cidr` → `inet` and a few more need no rewrite, but telling them apart needs the
//!   column's current type from the catalog. Until ddlgate reads the catalog every type change
//!   is flagged (as squawk does) and the message says "may rewrite"; with the catalog the
//!   known-safe changes will pass.
//! - **Safe alternative:** expand/contract (R11): add a new column, keep it in sync with a
//!   trigger, backfill in batches, build indexes and constraints concurrently, switch the
//!   application over, then drop the old column.
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "changing-column-type",
    lock: "ACCESS EXCLUSIVE, with a table and index rewrite unless the types are binary-coercible: blocks every read and write",
    summary: "ALTER COLUMN … TYPE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTable {
        name: table, ops, ..
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(table) {
        return None;
    }
    let (column, data_type) = ops.iter().find_map(|op| match op {
        AlterOp::AlterColumnType {
            column, data_type, ..
        } => Some((column, data_type)),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Changing {table}.{column} to {data_type} may rewrite {table} and all its indexes under an ACCESS EXCLUSIVE lock, blocking every read and write for the whole rewrite; clients may also break on the new type."
        ),
        hint: format!(
            "Use expand/contract: add a new column of type {data_type}, keep it in sync with a trigger, backfill in batches, build its indexes and constraints concurrently, switch the application over, then drop {column}. Changes PostgreSQL needs no rewrite for (varchar(n) to varchar(m ≥ n) or text, a larger numeric precision) will pass once ddlgate reads the catalog."
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
    fn flags_every_type_change() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT 0",
                "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
                "ALTER TABLE t ADD COLUMN c bigint",
                "CREATE TABLE t (c bigint)",
            ],
            &[
                "ALTER TABLE t ALTER COLUMN c TYPE bigint",
                "alter table s.t alter c type text",
                "ALTER TABLE t ALTER COLUMN c SET DATA TYPE varchar(200)",
                "ALTER TABLE t ALTER COLUMN c TYPE bigint USING c::bigint",
                "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1, ALTER COLUMN c TYPE numeric(12,2)",
            ],
        );
    }

    #[test]
    fn message_says_may_rewrite_and_names_the_column() {
        let f = run(
            &RULE,
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message
                .contains("orders.total to numeric(12,2) may rewrite"),
            "{}",
            f.message
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh ALTER COLUMN c TYPE bigint", &ctx),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other ALTER COLUMN c TYPE bigint", &ctx).is_some());
    }
}
