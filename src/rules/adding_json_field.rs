//! `adding-json-field`: a `json` column added to an existing table (`ADD COLUMN c json`, or
//! `ALTER COLUMN c TYPE json`).
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly for ADD COLUMN (a type change has its own rule).
//! - **Risk:** `json` has no equality operator. Queries that already run against the table and
//!   compare whole rows — `SELECT DISTINCT *`, `UNION` (without ALL), `GROUP BY` or `DISTINCT
//!   ON` over the row, `EXCEPT`/`INTERSECT` — fail from the moment the column exists (42883,
//!   could not identify an equality operator for type json).
//! - **Safe alternative:** `jsonb`: it has equality, indexes (GIN) and is what PostgreSQL
//!   recommends unless key order and duplicate keys must be kept verbatim.
//! - **Rewrite:** no (the type is visible to the application). Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/datatype-json.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-json-field",
    lock: "ACCESS EXCLUSIVE, briefly; queries comparing whole rows of the table start failing",
    summary: "ADD COLUMN … json (or ALTER COLUMN … TYPE json) on an existing table",
    default_action: Action::Warn,
    check,
};

/// `json`, `pg_catalog.json`, `json[]`, … as the parser writes the type (lower-cased).
fn is_json(data_type: &str) -> bool {
    let base = data_type.trim_end_matches("[]").trim();
    let base = base.strip_prefix("pg_catalog.").unwrap_or(base);
    base == "json"
}

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let column = ops.iter().find_map(|op| match op {
        AlterOp::AddColumn(c) if is_json(&c.data_type) => Some(&c.name),
        AlterOp::AlterColumnType {
            column, data_type, ..
        } if is_json(data_type) => Some(column),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "The json type has no equality operator: once {table}.{column} exists, every running query that compares whole rows of {table} (SELECT DISTINCT *, UNION, GROUP BY or DISTINCT ON over the row, EXCEPT, INTERSECT) fails with 42883 (could not identify an equality operator for type json)."
        ),
        hint: format!(
            "Use jsonb for {column}: it has equality and GIN indexes. Keep json only if the exact text (key order, duplicate keys, whitespace) must be stored verbatim."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_new_json_columns() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD COLUMN c jsonb",
                "ALTER TABLE t ADD COLUMN json text",
                "ALTER TABLE t ALTER COLUMN c TYPE jsonb USING c::jsonb",
                "CREATE TABLE t (c json)",
            ],
            &[
                "ALTER TABLE t ADD COLUMN c json",
                "alter table t add column c JSON not null default '{}'",
                "ALTER TABLE t ADD COLUMN c json[]",
                "ALTER TABLE t ALTER COLUMN c TYPE json USING c::json",
            ],
        );
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("t"));
        table(&RULE, &ctx, &["ALTER TABLE t ADD COLUMN c json"], &[]);
    }
}
