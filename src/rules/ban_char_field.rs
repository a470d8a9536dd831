//! `ban-char-field` (opt-in style rule, as in squawk): a blank-padded `char(n)` column: values are padded with spaces, comparisons ignore trailing spaces, and it is no faster than text.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/datatype-character.html>

use super::style::type_finding;
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
    type_finding(ddl, RULE.id, TYPES, |c| {
        (
            format!(
                "{}.{} is {}: values are padded with spaces to the length, trailing spaces are ignored in comparisons, and it is no faster than text or varchar.",
                c.table, c.column, c.base
            ),
            format!(
                "Use text for {} (with a CHECK on its length if it matters).",
                c.column
            ),
        )
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
