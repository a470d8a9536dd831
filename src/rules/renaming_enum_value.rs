//! `renaming-enum-value`: `ALTER TYPE … RENAME VALUE 'a' TO 'b'`.
//!
//! - **Lock:** the type only, briefly; no table is locked or rewritten.
//! - **Risk:** application compatibility: running code that writes or compares the old label
//!   fails or silently stops matching as soon as the rename commits.
//! - **Safe alternative:** add the new value, make the application handle both, backfill rows
//!   to the new value, then stop using the old one.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** types created earlier in the same transaction (when the session records
//!   them in `created_in_tx`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertype.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "renaming-enum-value",
    lock: "the type only, briefly; breaks clients using the old label",
    summary: "ALTER TYPE … RENAME VALUE",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTypeRenameValue { type_name } = &ddl.kind else {
        return None;
    };
    if ctx.is_new(type_name) {
        return None;
    }
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Renaming a value of {type_name} breaks running code that still writes or compares the old label: its INSERTs fail and its comparisons stop matching as soon as the rename commits."
        ),
        hint: format!(
            "Add the new value with ALTER TYPE {type_name} ADD VALUE, make the application accept both, backfill rows to the new value, then stop using the old one."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_value_renames() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TYPE mood ADD VALUE 'meh'",
                "ALTER TYPE mood RENAME TO feeling",
                "CREATE TYPE mood AS ENUM ('a')",
            ],
            &[
                "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'",
                "alter type s.mood rename value 'a' to 'b'",
            ],
        );
    }
}
