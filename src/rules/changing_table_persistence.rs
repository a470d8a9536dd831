//! `changing-table-persistence`: `ALTER TABLE … SET LOGGED`, `SET UNLOGGED` and
//! `SET ACCESS METHOD` (PostgreSQL 15+).
//!
//! - **Lock:** ACCESS EXCLUSIVE for a full rewrite of the table (SET LOGGED also writes it all
//!   to the WAL) — every read and write waits for the whole rewrite.
//! - **Safe alternative:** avoid it on a live table: create a new table with the wanted
//!   persistence or access method, copy the data, and swap the names in one short
//!   transaction; or run it in a maintenance window.
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-LOGGED-UNLOGGED>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "changing-table-persistence",
    lock: "ACCESS EXCLUSIVE for a full table rewrite: blocks every read and write",
    summary: "ALTER TABLE … SET LOGGED / SET UNLOGGED / SET ACCESS METHOD",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let what = ops.iter().find_map(|op| match op {
        AlterOp::SetLogged => Some("SET LOGGED"),
        AlterOp::SetUnlogged => Some("SET UNLOGGED"),
        AlterOp::SetAccessMethod => Some("SET ACCESS METHOD"),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{what} rewrites all of {table} under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole rewrite."
        ),
        hint: "Create a new table with the wanted setting, copy the data, and swap the names in one short transaction; or run this in a maintenance window.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::DdlKind;
    use crate::sql::statement::{Name, Understood};

    #[test]
    fn flags_persistence_changes() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD COLUMN c int",
                "ALTER TABLE t RENAME TO u",
                "CREATE UNLOGGED TABLE t (c int)",
            ],
            &[
                "ALTER TABLE t SET LOGGED",
                "alter table s.t set unlogged",
                "ALTER TABLE t ADD COLUMN c int, SET UNLOGGED",
            ],
        );
        let f = run(&RULE, "ALTER TABLE events SET UNLOGGED", &Ctx::default()).expect("flagged");
        assert!(
            f.message.starts_with("SET UNLOGGED rewrites all of events"),
            "{}",
            f.message
        );
    }

    #[test]
    fn flags_set_access_method() {
        // sqlparser 0.64 rejects SET ACCESS METHOD; the token classifier builds this.
        let ddl = Ddl {
            kind: DdlKind::AlterTable {
                name: Name::bare("events"),
                only: false,
                if_exists: false,
                ops: vec![AlterOp::SetAccessMethod],
            },
            understood: Understood::Fallback,
        };
        let f = (RULE.check)(&ddl, &Ctx::default().get()).expect("flagged");
        assert!(f.message.starts_with("SET ACCESS METHOD"), "{}", f.message);
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "ALTER TABLE fresh SET LOGGED", &ctx), None);
        assert!(run(&RULE, "ALTER TABLE other SET LOGGED", &ctx).is_some());
    }
}
