//! `ban-truncate-cascade`: `TRUNCATE … CASCADE`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on every named table and on every table that references them,
//!   recursively.
//! - **Risk:** CASCADE silently empties every table with a foreign key to the named ones, and
//!   the tables referencing those — far more data than the statement names (squawk cites a
//!   production incident).
//! - **Safe alternative:** name every table to empty explicitly, without CASCADE; PostgreSQL
//!   then refuses if a referencing table was forgotten.
//! - **Rewrite:** no.
//! - **Tables created in the same transaction are not exempt:** the tables CASCADE reaches are
//!   not known without the catalog.
//!
//! <https://www.postgresql.org/docs/current/sql-truncate.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-truncate-cascade",
    lock: "ACCESS EXCLUSIVE on the named tables and on every table referencing them",
    summary: "TRUNCATE … CASCADE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::Truncate {
        names,
        cascade: true,
    } = &ddl.kind
    else {
        return None;
    };
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "TRUNCATE {list} CASCADE also empties every table that references {list} by foreign key, recursively — data the statement does not name is silently deleted."
        ),
        hint: "List every table to empty explicitly and drop CASCADE; PostgreSQL then refuses if a referencing table was forgotten.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_cascade_only() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "TRUNCATE t",
                "TRUNCATE a, b RESTART IDENTITY",
                "DROP TABLE t CASCADE",
            ],
            &[
                "TRUNCATE t CASCADE",
                "truncate table only s.t cascade",
                "TRUNCATE a, b RESTART IDENTITY CASCADE",
            ],
        );
    }

    #[test]
    fn new_tables_are_not_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        let f = run(&RULE, "TRUNCATE fresh CASCADE", &ctx).expect("flagged");
        assert!(f.message.contains("fresh"), "{}", f.message);
    }
}
