//! `prefer-robust-stmts` (opt-in style rule, as in squawk): outside a transaction, a statement
//! that fails when run a second time — `CREATE TABLE` / `CREATE INDEX` without `IF NOT
//! EXISTS`, `DROP INDEX` without `IF EXISTS`.
//!
//! A migration that runs outside a transaction (needed for CONCURRENTLY) can fail half-way;
//! its statements that already ran then fail the rerun. In a transaction block nothing is
//! half-applied and nothing is flagged. Off in the proxy unless a profile sets an action for
//! it; on with `ddlgate check --style`. Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/sql-createindex.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "prefer-robust-stmts",
    lock: "style only: no lock of its own",
    summary: "outside a transaction: CREATE TABLE / CREATE INDEX without IF NOT EXISTS, DROP INDEX without IF EXISTS",
    default_action: Action::Allow,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    if ctx.in_transaction_block() {
        return None;
    }
    let (what, fix) = match &ddl.kind {
        DdlKind::CreateTable {
            name,
            if_not_exists: false,
            temporary: false,
            ..
        } => (format!("CREATE TABLE {name}"), "CREATE TABLE IF NOT EXISTS"),
        DdlKind::CreateIndex {
            name: Some(name),
            if_not_exists: false,
            ..
        } => (
            format!("CREATE INDEX {name}"),
            "CREATE INDEX … IF NOT EXISTS",
        ),
        DdlKind::DropIndex {
            names,
            if_exists: false,
            ..
        } => (
            format!(
                "DROP INDEX {}",
                names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "DROP INDEX … IF EXISTS",
        ),
        _ => return None,
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{what} runs outside a transaction and fails when run again: if the migration stops half-way, its rerun fails here instead of carrying on."
        ),
        hint: format!(
            "Write {fix}, so that a rerun after a partial failure passes this statement."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_statements_that_fail_on_a_rerun() {
        let ok = [
            "CREATE TABLE IF NOT EXISTS t (id bigint)",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c)",
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "CREATE TEMP TABLE t (id bigint)",
            "ALTER TABLE t ADD COLUMN c int",
        ];
        let flagged = [
            "CREATE TABLE t (id bigint)",
            "CREATE INDEX CONCURRENTLY i ON t (c)",
            "CREATE UNIQUE INDEX i ON t (c)",
            "DROP INDEX CONCURRENTLY i",
            "DROP INDEX a, b",
        ];
        table(&RULE, &Ctx::default(), &ok, &flagged);
        // In a transaction block nothing is half-applied.
        table(&RULE, &Ctx::in_tx(), &flagged, &[]);
    }
}
