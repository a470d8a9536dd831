//! `renaming-column`: `ALTER TABLE … RENAME COLUMN a TO b`.
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly (catalog only).
//! - **Risk:** every client still using the old name — running application servers, reports,
//!   views in other tools — fails the moment the rename commits. Deploys are never atomic
//!   with a migration.
//! - **Safe alternative (R12):** expand/contract — add the new column, dual-write, backfill,
//!   switch reads, drop the old one; or put an updatable view under the old name; or a
//!   schema-versioned view layer (pgroll, reshape).
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction (no client knows them).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-RENAME>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "renaming-column",
    lock: "ACCESS EXCLUSIVE, briefly; breaks every client using the old name",
    summary: "ALTER TABLE … RENAME COLUMN",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let (from, to) = ops.iter().find_map(|op| match op {
        AlterOp::RenameColumn { from, to } => Some((from, to)),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Renaming {table}.{from} to {to} breaks every client still using {from}: running application code fails as soon as the rename commits."
        ),
        hint: format!(
            "Use expand/contract: add {to}, write both columns, backfill, switch reads to {to}, then drop {from}. Or expose the new shape through a view while clients migrate."
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
    fn flags_column_renames() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t RENAME TO u",
                "ALTER TABLE t ADD COLUMN b int",
                "ALTER INDEX i RENAME TO j",
            ],
            &[
                "ALTER TABLE t RENAME COLUMN a TO b",
                "alter table s.t rename a to b",
                "ALTER TABLE t ADD COLUMN n int, RENAME COLUMN a TO b",
            ],
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh RENAME COLUMN a TO b", &ctx),
            None
        );
        let f = run(&RULE, "ALTER TABLE users RENAME COLUMN mail TO email", &ctx).expect("flagged");
        assert!(f.message.contains("users.mail to email"), "{}", f.message);
    }
}
