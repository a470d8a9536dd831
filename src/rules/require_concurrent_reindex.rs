//! `require-concurrent-reindex`: `REINDEX` without `CONCURRENTLY`.
//!
//! - **Lock:** SHARE on the table and ACCESS EXCLUSIVE on each index being rebuilt; because the
//!   planner needs every index, "REINDEX blocks virtually any queries" for its duration.
//! - **Safe alternative:** `REINDEX … CONCURRENTLY` (PostgreSQL 12+), outside a transaction
//!   block. `REINDEX SYSTEM` has no concurrent form.
//! - **Rewrite:** yes, on PostgreSQL 12 or later, alone outside a transaction block.
//!
//! <https://www.postgresql.org/docs/current/sql-reindex.html>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::sql::statement::{Ddl, DdlKind, ReindexTarget};

pub static RULE: Rule = Rule {
    id: "require-concurrent-reindex",
    lock: "SHARE on the table and ACCESS EXCLUSIVE on the indexes: blocks nearly every query for the rebuild",
    summary: "REINDEX without CONCURRENTLY",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::Reindex {
        target,
        concurrently: false,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    let message = "REINDEX rebuilds under an ACCESS EXCLUSIVE lock on the indexes and a SHARE lock on the table: nearly every query on the table waits for the whole rebuild.".to_owned();
    let (hint, rewrite) = if *target == ReindexTarget::System {
        (
            "REINDEX SYSTEM has no concurrent form; run it in a maintenance window.".to_owned(),
            None,
        )
    } else if !ctx.at_least(12) {
        ("REINDEX CONCURRENTLY needs PostgreSQL 12 or later; on older servers build a new index CONCURRENTLY and drop the old one.".to_owned(), None)
    } else if ctx.in_transaction_block() {
        (
            format!(
                "Use REINDEX … CONCURRENTLY, which cannot run {}. {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description()
            ),
            None,
        )
    } else {
        (
            "Use REINDEX … CONCURRENTLY, which rebuilds without blocking queries.".to_owned(),
            Some(Rewrite::Concurrently),
        )
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
    fn flags_plain_reindex() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "REINDEX INDEX CONCURRENTLY i",
                "REINDEX (VERBOSE, CONCURRENTLY) TABLE t",
                "REINDEX TABLE CONCURRENTLY public.users",
            ],
            &[
                "REINDEX INDEX i",
                "reindex table public.users",
                "REINDEX SYSTEM postgres",
                "REINDEX (VERBOSE) TABLE t",
            ],
        );
    }

    #[test]
    fn rewrite_is_version_and_context_aware() {
        let rw = |sql: &str, ctx: &Ctx| run(&RULE, sql, ctx).and_then(|f| f.rewrite);
        assert_eq!(
            rw("REINDEX INDEX i", &Ctx::version(120_000)),
            Some(Rewrite::Concurrently)
        );
        assert_eq!(rw("REINDEX INDEX i", &Ctx::version(110_012)), None);
        assert_eq!(rw("REINDEX INDEX i", &Ctx::in_tx()), None);
        assert_eq!(rw("REINDEX SYSTEM postgres", &Ctx::default()), None);
    }
}
