//! `ban-drop-owned`: `DROP OWNED BY role`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on every table the roles own, and on whatever depends on them
//!   — tables the statement never names, so ddlgate cannot guard them one by one (the guard
//!   still runs it under the short `lock_timeout`).
//! - **Risk:** drops every object the roles own in the current database — tables and their
//!   data included — and revokes their privileges. Meant for retiring a role, not for the
//!   application or migration path.
//! - **Safe alternative:** `REASSIGN OWNED BY old TO new` first (then `DROP OWNED` only removes
//!   privileges), or drop the objects one by one by name where each is reviewed.
//! - **Rewrite:** no.
//!
//! <https://www.postgresql.org/docs/current/sql-drop-owned.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-drop-owned",
    lock: "ACCESS EXCLUSIVE on every table the roles own, none of them named",
    summary: "DROP OWNED BY (drops every object of the roles, tables included)",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    matches!(ddl.kind, DdlKind::DropOwned).then(|| Finding {
        rule: RULE.id,
        message: "DROP OWNED BY drops every object the role owns in this database — tables and all their rows included — without naming any of them.".to_owned(),
        hint: "Run REASSIGN OWNED BY the role TO another role first, so that DROP OWNED only revokes privileges; or drop the objects you mean to drop by name.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_drop_owned() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "REASSIGN OWNED BY a TO b",
                "DROP ROLE a",
                "DROP TABLE owned",
            ],
            &["DROP OWNED BY app", "drop owned by a, CURRENT_USER cascade"],
        );
    }
}
