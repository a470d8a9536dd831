//! `require-concurrent-index-deletion`: `DROP INDEX` without `CONCURRENTLY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the index's table. The drop itself is quick, but while it
//!   waits for the lock every later query on the table queues behind it — reads included.
//! - **Safe alternative:** `DROP INDEX CONCURRENTLY`, one index per statement, without CASCADE,
//!   outside a transaction block.
//! - **Rewrite:** yes, for a single index without CASCADE, alone outside a transaction block.
//!
//! <https://www.postgresql.org/docs/current/sql-dropindex.html>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "require-concurrent-index-deletion",
    lock: "ACCESS EXCLUSIVE on the table: blocks every read and write while it waits and runs",
    summary: "DROP INDEX without CONCURRENTLY",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::DropIndex {
        names,
        concurrently: false,
        cascade,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "DROP INDEX {list} takes an ACCESS EXCLUSIVE lock on the table: while it waits for the lock, every query on the table — reads included — queues behind it."
    );
    let hint_base = "Use DROP INDEX CONCURRENTLY, one index per statement and without CASCADE";
    let (hint, rewrite) = if ctx.in_transaction_block() {
        (
            format!(
                "{hint_base}; it cannot run {}. {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description()
            ),
            None,
        )
    } else if names.len() != 1 || *cascade {
        (
            format!(
                "{hint_base}: split this statement into one DROP INDEX CONCURRENTLY per index and drop dependent objects explicitly."
            ),
            None,
        )
    } else {
        (format!("{hint_base}."), Some(Rewrite::Concurrently))
    };
    Some(Finding {
        rule: RULE.id,
        message,
        hint,
        rewrite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};

    #[test]
    fn flags_plain_drops() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DROP INDEX CONCURRENTLY i",
                "DROP INDEX CONCURRENTLY IF EXISTS s.\"I\"",
                "DROP TABLE t",
            ],
            &[
                "DROP INDEX i",
                "drop index if exists a, b",
                "DROP INDEX i CASCADE",
            ],
        );
    }

    #[test]
    fn rewrites_a_single_index_outside_transactions() {
        assert_eq!(
            run(&RULE, "DROP INDEX i", &Ctx::default()).and_then(|f| f.rewrite),
            Some(Rewrite::Concurrently)
        );
        assert_eq!(
            run(&RULE, "DROP INDEX a, b", &Ctx::default()).and_then(|f| f.rewrite),
            None
        );
        assert_eq!(
            run(&RULE, "DROP INDEX a CASCADE", &Ctx::default()).and_then(|f| f.rewrite),
            None
        );
        assert_eq!(
            run(&RULE, "DROP INDEX a", &Ctx::in_tx()).and_then(|f| f.rewrite),
            None
        );
    }
}
