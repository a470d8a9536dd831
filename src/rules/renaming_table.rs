//! `renaming-table`: `ALTER TABLE … RENAME TO` and `ALTER TABLE … SET SCHEMA` — and `ALTER
//! INDEX … RENAME TO` used on a table, which PostgreSQL accepts and carries out as a table
//! rename (`RenameRelation` lets ALTER INDEX rename any relation; ALTER VIEW, ALTER MATERIALIZED
//! VIEW, ALTER SEQUENCE and ALTER FOREIGN TABLE … RENAME TO check the relkind and refuse — checked
//! on PostgreSQL 15).
//!
//! - **Which relation:** for `ALTER INDEX` the keyword proves nothing; the relation kind is
//!   read from the catalog (`pg_class.relkind`, resolved with the session's search_path). Only
//!   a relation the catalog confirms is an index passes; without facts, or when the name does
//!   not resolve, it counts as a table rename (the worst case).
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
use crate::catalog::RelKind;
use crate::sql::statement::{AlterOp, Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "renaming-table",
    lock: "ACCESS EXCLUSIVE, briefly; breaks every client using the old name",
    summary: "ALTER TABLE … RENAME TO or SET SCHEMA; ALTER INDEX … RENAME TO unless the catalog confirms an index",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    match &ddl.kind {
        DdlKind::AlterIndex { name, action } if action == "RENAME" => {
            return relation_rename(name, "ALTER INDEX", ctx, |k| {
                matches!(k, RelKind::Index | RelKind::PartitionedIndex)
            });
        }
        _ => {}
    }
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

/// `ALTER INDEX name RENAME TO …`: harmless only when the catalog confirms `name` is what the
/// statement says (`is_written_kind`).
fn relation_rename(
    name: &Name,
    written: &str,
    ctx: &Context,
    is_written_kind: impl Fn(RelKind) -> bool,
) -> Option<Finding> {
    if ctx.is_new(name) {
        return None;
    }
    let known = ctx
        .catalog
        .and_then(|f| f.relation_for(name))
        .filter(|r| r.exists)
        .and_then(|r| r.kind);
    let message = match known {
        Some(kind) if is_written_kind(kind) => return None,
        Some(RelKind::Table | RelKind::PartitionedTable) => format!(
            "{name} is a table: {written} … RENAME renames it, and every client still using {name} fails as soon as the rename commits."
        ),
        Some(_) => format!(
            "{name} is not what {written} names, and PostgreSQL renames it anyway: every client still using {name} fails as soon as the rename commits."
        ),
        None => format!(
            "{written} … RENAME also renames a table when {name} is one, and ddlgate could not confirm from the catalog that it is not: every client still using {name} would fail as soon as the rename commits."
        ),
    };
    Some(Finding {
        rule: RULE.id,
        message,
        hint: format!(
            "Rename tables with ALTER TABLE and expand/contract (an updatable view under the old name {name} until no client uses it); use {written} only on what it names."
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
                "ALTER INDEX i SET TABLESPACE x",
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

    fn facts(asked: &str, kind: Option<char>) -> crate::catalog::Facts {
        let mut rel = crate::catalog::Relation::missing(Name::bare(asked));
        if let Some(k) = kind {
            rel.exists = true;
            rel.kind = Some(RelKind::from_char(k));
        }
        crate::catalog::Facts {
            relation: Some(rel),
            ..Default::default()
        }
    }

    #[test]
    fn index_and_view_renames_pass_only_when_the_catalog_confirms_them() {
        let without = Ctx::default();
        let f = run(&RULE, "ALTER INDEX victim RENAME TO v2", &without).expect("flagged");
        assert!(f.message.contains("could not confirm"), "{}", f.message);
        // PostgreSQL itself refuses these on anything but a view / materialized view.
        for sql in [
            "ALTER VIEW victim RENAME TO v2",
            "ALTER MATERIALIZED VIEW victim RENAME TO v2",
        ] {
            assert_eq!(run(&RULE, sql, &without), None, "{sql}");
        }
        let cases = [
            ("ALTER INDEX victim RENAME TO v2", 'i', false),
            ("ALTER INDEX victim RENAME TO v2", 'I', false),
            ("ALTER INDEX victim RENAME TO v2", 'r', true),
            ("ALTER INDEX victim RENAME TO v2", 'p', true),
            ("ALTER INDEX victim RENAME TO v2", 'v', true),
            ("ALTER INDEX victim RENAME TO v2", 'S', true),
        ];
        for (sql, kind, flagged) in cases {
            let ctx = Ctx {
                catalog: Some(facts("victim", Some(kind))),
                ..Ctx::default()
            };
            assert_eq!(
                run(&RULE, sql, &ctx).is_some(),
                flagged,
                "{sql} on relkind {kind}"
            );
        }
        // A name the catalog does not resolve, or facts read for another name: the worst case.
        for catalog in [facts("victim", None), facts("other", Some('i'))] {
            let ctx = Ctx {
                catalog: Some(catalog),
                ..Ctx::default()
            };
            assert!(run(&RULE, "ALTER INDEX victim RENAME TO v2", &ctx).is_some());
        }
        let ctx = Ctx {
            catalog: Some(facts("victim", Some('r'))),
            ..Ctx::default()
        };
        let f = run(&RULE, "ALTER INDEX victim RENAME TO v2", &ctx).expect("flagged");
        assert!(f.message.contains("victim is a table"), "{}", f.message);
        // Column renames of views are renaming-column's.
        assert_eq!(
            run(&RULE, "ALTER VIEW victim RENAME COLUMN a TO b", &without),
            None
        );
    }
}
