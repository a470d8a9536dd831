//! `renaming-column`: `ALTER TABLE … RENAME COLUMN a TO b`, and the other spellings that
//! rename a table's column: `ALTER VIEW / MATERIALIZED VIEW / FOREIGN TABLE … RENAME COLUMN`
//! (PostgreSQL's renameatt applies them to tables too — checked on PostgreSQL 15; on a real view
//! the rename breaks its readers just the same) and `ALTER
//! TYPE … RENAME ATTRIBUTE` (on a table's row type it renames the table's column; on a
//! composite type it breaks every reader of the attribute).
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
use crate::catalog::RelKind;
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "renaming-column",
    lock: "ACCESS EXCLUSIVE, briefly; breaks every client using the old name",
    summary: "ALTER TABLE / VIEW / MATERIALIZED VIEW / FOREIGN TABLE … RENAME COLUMN, ALTER TYPE … RENAME ATTRIBUTE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    match &ddl.kind {
        DdlKind::RenameView {
            name,
            column: Some(from),
            to,
            ..
        } if !ctx.is_new(name) => {
            let is_view = ctx
                .catalog
                .and_then(|f| f.relation_for(name))
                .filter(|r| r.exists)
                .and_then(|r| r.kind)
                .is_some_and(|k| matches!(k, RelKind::View | RelKind::MaterializedView));
            let what = if is_view {
                format!("Renaming column {from} of view {name} to {to}")
            } else {
                format!(
                    "Renaming column {from} of {name} to {to} (a table's column if {name} is a table: PostgreSQL applies ALTER VIEW … RENAME COLUMN to tables too)"
                )
            };
            return Some(finding(what, from, to));
        }
        DdlKind::AlterTypeRenameAttribute {
            type_name,
            from,
            to,
        } if !ctx.is_new(type_name) => {
            return Some(finding(
                format!(
                    "Renaming attribute {from} of type {type_name} to {to} (column {from} of table {type_name} when it is a table's row type)"
                ),
                from,
                to,
            ));
        }
        _ => {}
    }
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let (from, to) = ops.iter().find_map(|op| match op {
        AlterOp::RenameColumn { from, to } => Some((from, to)),
        _ => None,
    })?;
    Some(finding(
        format!("Renaming {table}.{from} to {to}"),
        from,
        to,
    ))
}

fn finding(what: String, from: &str, to: &str) -> Finding {
    Finding {
        rule: RULE.id,
        message: format!(
            "{what} breaks every client still using {from}: running application code fails as soon as the rename commits."
        ),
        hint: format!(
            "Use expand/contract: add {to}, write both columns, backfill, switch reads to {to}, then drop {from}. Or expose the new shape through a view while clients migrate."
        ),
        rewrite: None,
    }
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
                "ALTER VIEW t RENAME COLUMN a TO b",
                "ALTER VIEW t RENAME a TO b",
                "ALTER MATERIALIZED VIEW IF EXISTS s.t RENAME COLUMN a TO b",
                "ALTER TYPE t RENAME ATTRIBUTE a TO b",
                "ALTER FOREIGN TABLE t RENAME COLUMN a TO b",
                "ALTER TYPE s.t RENAME ATTRIBUTE a TO b CASCADE",
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
