//! `prefer-bigint-over-smallint` (opt-in style rule, as in squawk): a 16-bit integer column: it overflows at 32,767, and widening later rewrites the table.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/datatype-numeric.html#DATATYPE-INT>

use super::style::type_finding;
use super::{Action, Context, Finding, Rule};
use crate::sql::statement::Ddl;

pub static RULE: Rule = Rule {
    id: "prefer-bigint-over-smallint",
    lock: "style only: no lock of its own",
    summary: "a column of type smallint (int2, smallserial)",
    default_action: Action::Allow,
    check,
};

/// The types flagged, without modifiers.
const TYPES: &[&str] = &["smallint", "int2", "smallserial", "serial2"];

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    type_finding(ddl, RULE.id, TYPES, |c| {
        (
            format!(
                "{}.{} is {}: a 16-bit integer overflows at 32,767, and widening it later rewrites the whole table under ACCESS EXCLUSIVE.",
                c.table, c.column, c.base
            ),
            format!("Use bigint (or integer at the least) for {}.", c.column),
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
                "CREATE TABLE t (id bigint)",
                "ALTER TABLE t ADD COLUMN c int",
                "CREATE TABLE t (c text)",
            ],
            &[
                "CREATE TABLE t (c smallint)",
                "ALTER TABLE t ADD COLUMN c int2",
                "CREATE TABLE t (id smallserial)",
                "ALTER TABLE t ALTER COLUMN c TYPE smallint",
            ],
        );
    }
}
