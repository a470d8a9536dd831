//! `ban-char-field` (opt-in style rule, as in squawk): a blank-padded `char(n)` column: values are padded with spaces, comparisons ignore trailing spaces, and it is no faster than text.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/datatype-character.html>

use super::style::{typed_columns, without_modifiers};
use super::{Action, Context, Finding, Rule};
use crate::sql::statement::Ddl;

pub static RULE: Rule = Rule {
    id: "ban-char-field",
    lock: "style only: no lock of its own",
    summary: "a char(n) / character(n) column",
    default_action: Action::Allow,
    check,
};

/// The types flagged, without modifiers.
const TYPES: &[&str] = &["char", "character", "bpchar"];

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let c = typed_columns(ddl)
        .into_iter()
        .find(|c| TYPES.contains(&without_modifiers(c.base).as_str()))?;
    let (table, column, written) = (c.table, c.column, c.base);
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{table}.{column} is {written}: values are padded with spaces to the length, trailing spaces are ignored in comparisons, and it is no faster than text or varchar."
        ),
        hint: format!("Use text for {column} (with a CHECK on its length if it matters)."),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_the_type() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE TABLE t (c text)",
                "ALTER TABLE t ADD COLUMN c varchar(3)",
                "CREATE TABLE t (c \"char\")",
            ],
            &[
                "CREATE TABLE t (c char(2))",
                "ALTER TABLE t ADD COLUMN c character(10)",
                "CREATE TABLE t (c char)",
                "ALTER TABLE t ALTER COLUMN c TYPE char(5)",
            ],
        );
    }
}
