//! `require-enum-value-ordering` (opt-in style rule, as in squawk): `ALTER TYPE … ADD VALUE`
//! without `BEFORE` or `AFTER`. The new label goes last, and enum comparisons (`<`, `ORDER
//! BY`, `max`) follow the declared order: queries such as `status < 'approved'` silently
//! change meaning when the value belongs in the middle.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/sql-altertype.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "require-enum-value-ordering",
    lock: "style only: no lock of its own",
    summary: "ALTER TYPE … ADD VALUE without BEFORE or AFTER",
    default_action: Action::Allow,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTypeAddValue {
        type_name,
        positioned: false,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "The new value of {type_name} goes after every existing one: comparisons and ORDER BY on {type_name} follow that order, so a query like `status < 'approved'` changes meaning if the value belongs elsewhere."
        ),
        hint: "Say where it goes: ADD VALUE 'v' BEFORE 'w' or AFTER 'w' (AFTER the last value if last is meant).".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_unplaced_values() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok'",
                "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'sad'",
                "ALTER TYPE mood RENAME VALUE 'a' TO 'b'",
            ],
            &[
                "ALTER TYPE mood ADD VALUE 'meh'",
                "alter type s.mood add value if not exists 'meh'",
            ],
        );
    }
}
