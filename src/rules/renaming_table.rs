//! `renaming-table`: `ALTER TABLE … RENAME TO` and `ALTER TABLE … SET SCHEMA`.
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly (catalog only).
//! - **Risk:** every client still using the old name — or the old schema — fails the moment the
//!   change commits; deploys are never atomic with a migration.
//! - **Safe alternative (R12):** expand/contract; or rename and leave an updatable view under
//!   the old name in the same short transaction, dropping it once no client uses it; or a
//!   schema-versioned view layer (pgroll, reshape).
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-RENAME>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "renaming-table",
    lock: "ACCESS EXCLUSIVE, briefly; breaks every client using the old name",
    summary: "ALTER TABLE … RENAME TO or SET SCHEMA",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let message = ops.iter().find_map(|op| match op {
        AlterOp::RenameTable { to } => Some(format!(
            "Renaming {table} to {to} breaks every client still using {table}: running application code fails as soon as the rename commits."
        )),
        AlterOp::SetSchema => Some(format!(
            "Moving {table} to another schema breaks every client that refers to it as {table} or finds it through search_path: running application code fails as soon as the change commits."
        )),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message,
        hint: format!(
            "Use expand/contract, or in one short transaction rename the table and create an updatable view under the old name {table}; drop the view once no client uses it."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::DdlKind;
    use crate::sql::statement::{Name, Understood};

    fn set_schema(table: &str) -> Ddl {
        // sqlparser 0.64 rejects SET SCHEMA; the token classifier builds this.
        Ddl {
            kind: DdlKind::AlterTable {
                name: Name::bare(table),
                only: false,
                if_exists: false,
                ops: vec![AlterOp::SetSchema],
            },
            understood: Understood::Fallback,
        }
    }

    #[test]
    fn flags_renames() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t RENAME COLUMN a TO b",
                "ALTER INDEX i RENAME TO j",
                "ALTER TABLE t ADD COLUMN c int",
            ],
            &[
                "ALTER TABLE t RENAME TO u",
                "alter table if exists s.t rename to u",
                "ALTER TABLE t ADD COLUMN c int, RENAME TO u",
            ],
        );
        let f = run(
            &RULE,
            "ALTER TABLE users RENAME TO accounts",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("Renaming users to accounts"),
            "{}",
            f.message
        );
    }

    #[test]
    fn set_schema_has_its_own_message() {
        let f = (RULE.check)(&set_schema("users"), &Ctx::default().get()).expect("flagged");
        assert!(
            f.message.contains("Moving users to another schema"),
            "{}",
            f.message
        );
        assert_eq!(f.rule, RULE.id);
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "ALTER TABLE fresh RENAME TO u", &ctx), None);
        assert_eq!((RULE.check)(&set_schema("fresh"), &ctx.get()), None);
        assert!(run(&RULE, "ALTER TABLE other RENAME TO u", &ctx).is_some());
    }
}
