//! `prefer-timestamptz` (opt-in style rule, as in squawk): a `timestamp without time zone` column: it stores wall-clock time with no zone, so the same instant reads differently across sessions and DST changes.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/datatype-datetime.html>

use super::style::type_finding;
use super::{Action, Context, Finding, Rule};
use crate::sql::statement::Ddl;

pub static RULE: Rule = Rule {
    id: "prefer-timestamptz",
    lock: "style only: no lock of its own",
    summary: "a timestamp (without time zone) column",
    default_action: Action::Allow,
    check,
};

/// The types flagged, without modifiers.
const TYPES: &[&str] = &["timestamp", "timestamp without time zone"];

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    type_finding(ddl, RULE.id, TYPES, |c| {
        (
            format!(
                "{}.{} is {}: it stores a wall-clock reading without its time zone, so instants are ambiguous across sessions' TimeZone settings and DST changes.",
                c.table, c.column, c.base
            ),
            format!(
                "Use timestamptz (timestamp with time zone) for {}: it stores an absolute instant and shows it in each session's zone.",
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
                "CREATE TABLE t (c timestamptz)",
                "ALTER TABLE t ADD COLUMN c timestamp with time zone",
                "CREATE TABLE t (c date)",
            ],
            &[
                "CREATE TABLE t (c timestamp)",
                "ALTER TABLE t ADD COLUMN c timestamp(3)",
                "ALTER TABLE t ADD COLUMN c timestamp without time zone",
                "ALTER TABLE t ALTER COLUMN c TYPE timestamp",
            ],
        );
    }
}
