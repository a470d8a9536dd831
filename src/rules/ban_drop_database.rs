//! `ban-drop-database`: `DROP DATABASE`.
//!
//! - **Lock:** needs exclusive use of the database: it fails while anyone else is connected,
//!   and `WITH (FORCE)` terminates their sessions.
//! - **Risk:** destroys every table, every row and every object in the database, irreversibly.
//!   A migration or application should never do this through the proxy.
//! - **Safe alternative:** none; do it deliberately, by hand, outside the application path.
//! - **Rewrite:** no.
//!
//! <https://www.postgresql.org/docs/current/sql-dropdatabase.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-drop-database",
    lock: "exclusive use of the database: every other session must be gone (FORCE terminates them)",
    summary: "DROP DATABASE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    matches!(ddl.kind, DdlKind::DropDatabase).then(|| Finding {
        rule: RULE.id,
        message: "DROP DATABASE irreversibly destroys the whole database — every table, every row, every object — and terminates or fails on every other connection to it.".to_owned(),
        hint: "Drop databases deliberately, by hand, outside the application and migration path.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_drop_database() {
        table(
            &RULE,
            &Ctx::default(),
            &["DROP TABLE t", "DROP SCHEMA s", "CREATE DATABASE d"],
            &["DROP DATABASE d", "drop database if exists d"],
        );
    }
}
