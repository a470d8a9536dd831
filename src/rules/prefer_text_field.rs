//! `prefer-text-field` (opt-in style rule, as in squawk): a length-limited `varchar(n)` column: raising the limit later is free, but lowering it rewrites, and the limit is better a CHECK you can add NOT VALID.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/datatype-character.html>

use super::style::type_finding;
use super::{Action, Context, Finding, Rule};
use crate::sql::statement::Ddl;

pub static RULE: Rule = Rule {
    id: "prefer-text-field",
    lock: "style only: no lock of its own",
    summary: "a varchar(n) / character varying(n) column",
    default_action: Action::Allow,
    check,
};

/// The types flagged, without modifiers.
const TYPES: &[&str] = &["varchar", "character varying"];

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    type_finding(ddl, RULE.id, TYPES, |c| {
        (
            format!(
                "{}.{} is {}: the length limit is part of the type, and changing it to a smaller one later rewrites the table; it is no faster than text.",
                c.table, c.column, c.base
            ),
            format!(
                "Use text for {}, with CHECK (char_length({}) <= n) if the limit matters: a CHECK can be added NOT VALID and validated without blocking writes.",
                c.column, c.column
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
                "ALTER TABLE t ADD COLUMN c text",
                "CREATE TABLE t (c char(2))",
            ],
            &[
                "CREATE TABLE t (c varchar(20))",
                "ALTER TABLE t ADD COLUMN c character varying(255)",
                "ALTER TABLE t ALTER COLUMN c TYPE varchar(10)",
            ],
        );
    }
}
