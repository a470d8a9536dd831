//! `ban-drop-function`: `DROP FUNCTION` / `DROP PROCEDURE` / `DROP ROUTINE`.
//!
//! - **Lock:** none on tables (the routine's own catalog row).
//! - **Risk:** running code that calls the routine fails (42883, function does not exist) from
//!   the moment the drop commits; so do triggers, defaults and views that use it (PostgreSQL
//!   refuses those without CASCADE — and `ban-drop-cascade` blocks CASCADE that takes them).
//! - **Safe alternative (expand/contract):** deploy the code that no longer calls it first,
//!   then drop it; to change its body, `CREATE OR REPLACE FUNCTION` (same signature and
//!   return type), which never leaves a gap.
//! - **Rewrite:** no. Default: warn.
//!
//! <https://www.postgresql.org/docs/current/sql-dropfunction.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-drop-function",
    lock: "none on tables; running code calling the routine fails",
    summary: "DROP FUNCTION / DROP PROCEDURE / DROP ROUTINE",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let tag = match &ddl.kind {
        DdlKind::Other { tag } | DdlKind::DropCascade { tag, .. } => tag.as_str(),
        _ => return None,
    };
    let what = match tag {
        "DROP FUNCTION" => "function",
        "DROP PROCEDURE" => "procedure",
        "DROP ROUTINE" => "routine",
        _ => return None,
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{tag} breaks running code that still calls the {what}: every call fails with 42883 (function does not exist) from the moment the drop commits."
        ),
        hint: format!(
            "Deploy the code that no longer calls the {what} first, then drop it. To change its body, use CREATE OR REPLACE with the same signature and return type, which leaves no gap."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_routine_drops() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DROP VIEW f",
                "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'",
                "DROP TABLE f",
                "DROP TRIGGER t ON x",
            ],
            &[
                "DROP FUNCTION f()",
                "drop function if exists s.f(int, text), g",
                "DROP PROCEDURE p",
                "DROP ROUTINE r(int)",
                "DROP FUNCTION f CASCADE",
            ],
        );
    }
}
