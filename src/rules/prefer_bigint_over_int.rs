//! `prefer-bigint-over-int` (opt-in style rule, as in squawk): a 32-bit integer column: ids and counters overflow at 2,147,483,647, and widening later rewrites the table.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/datatype-numeric.html#DATATYPE-INT>

use super::style::type_finding;
use super::{Action, Context, Finding, Rule};
use crate::sql::statement::Ddl;

pub static RULE: Rule = Rule {
    id: "prefer-bigint-over-int",
    lock: "style only: no lock of its own",
    summary: "a column of type integer (int, int4, serial)",
    default_action: Action::Allow,
    check,
};

/// The types flagged, without modifiers.
const TYPES: &[&str] = &["int", "integer", "int4", "serial", "serial4"];

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    type_finding(ddl, RULE.id, TYPES, |c| {
        (
            format!(
                "{}.{} is {}: a 32-bit integer overflows at 2,147,483,647, and changing it to bigint later rewrites the whole table under ACCESS EXCLUSIVE.",
                c.table, c.column, c.base
            ),
            format!(
                "Use bigint (or bigserial / bigint GENERATED … AS IDENTITY) for {}: 4 more bytes per row, no overflow.",
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
                "CREATE TABLE t (id bigint, n numeric)",
                "ALTER TABLE t ADD COLUMN c bigint",
                "ALTER TABLE t ADD COLUMN c interval",
                "CREATE TABLE t (c text)",
            ],
            &[
                "CREATE TABLE t (id int)",
                "CREATE TABLE t (id integer PRIMARY KEY)",
                "ALTER TABLE t ADD COLUMN c int4",
                "ALTER TABLE t ALTER COLUMN c TYPE integer",
                "CREATE TABLE t (id serial)",
                "ALTER TABLE t ADD COLUMN c int[]",
            ],
        );
    }
}
