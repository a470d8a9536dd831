//! `ban-create-rule`: `CREATE RULE` on an existing table.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the table, briefly (catalog only).
//! - **Risk:** a rule rewrites every later query on the table, invisibly to the clients and to
//!   ddlgate. `CREATE RULE "_RETURN" AS ON SELECT … DO INSTEAD SELECT …` turns an empty table
//!   into a view (PostgreSQL 15 and earlier): its storage is gone and every read returns what
//!   the rule says. `DO INSTEAD` on INSERT / UPDATE / DELETE replaces what writes do (or
//!   discards them with `NOTHING`); `DO ALSO` adds hidden writes to every one.
//! - **Safe alternative:** a view with `INSTEAD OF` triggers, or a trigger on the table: both
//!   visible, reviewable and documented as the supported way.
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/rules.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-create-rule",
    lock: "ACCESS EXCLUSIVE on the table, briefly; changes what every later query on it does",
    summary: "CREATE RULE on a table (ON SELECT turns it into a view; DO INSTEAD replaces writes)",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::CreateRule {
        table,
        event,
        instead,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(table) {
        return None;
    }
    let message = if event == "SELECT" {
        format!(
            "A rule ON SELECT on {table} turns the table into a view: its storage is dropped and every read of {table} returns what the rule's query says."
        )
    } else if *instead {
        format!(
            "A DO INSTEAD rule on {event} to {table} replaces what every {event} on {table} does — or discards it — invisibly to the clients."
        )
    } else {
        format!(
            "A DO ALSO rule on {event} to {table} adds hidden statements to every {event} on {table}, invisibly to the clients."
        )
    };
    Some(Finding {
        rule: RULE.id,
        message,
        hint: format!(
            "Use a trigger on {table}, or a view with INSTEAD OF triggers in front of it; rules are kept for compatibility and rewrite queries in ways clients cannot see."
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
    fn flags_rules_on_tables() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DROP RULE r ON t",
                "CREATE VIEW v AS SELECT 1",
                "ALTER RULE r ON t RENAME TO s",
            ],
            &[
                "CREATE RULE \"_RETURN\" AS ON SELECT TO victim DO INSTEAD SELECT 1 AS id",
                "CREATE RULE \"_RETxyz\" AS ON SELECT TO victim DO INSTEAD SELECT 1 AS id",
                "CREATE OR REPLACE RULE r AS ON INSERT TO t DO INSTEAD NOTHING",
                "CREATE RULE r AS ON UPDATE TO t WHERE old.a <> new.a DO ALSO INSERT INTO log VALUES (1)",
                "CREATE RULE r AS ON DELETE TO s.t DO (DELETE FROM a; DELETE FROM b)",
            ],
        );
        let f = run(
            &RULE,
            "CREATE RULE \"_RETURN\" AS ON SELECT TO victim DO INSTEAD SELECT 1 AS id",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(f.message.contains("into a view"), "{}", f.message);
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(
                &RULE,
                "CREATE RULE r AS ON INSERT TO fresh DO INSTEAD NOTHING",
                &ctx
            ),
            None
        );
    }
}
