//! `require-concurrent-reindex`: `REINDEX` without `CONCURRENTLY`.
//!
//! - **Lock:** SHARE on the table and ACCESS EXCLUSIVE on each index being rebuilt; because the
//!   planner needs every index, "REINDEX blocks virtually any queries" for its duration.
//! - **Safe alternative:** `REINDEX … CONCURRENTLY` (PostgreSQL 12+), outside a transaction
//!   block. `REINDEX SYSTEM` has no concurrent form.
//! - **Rewrite:** yes, on PostgreSQL 12 or later, alone outside a transaction block. A
//!   partitioned table or index can only be reindexed from PostgreSQL 14 (each partition in
//!   its own transaction); before that the catalog-aware verdict offers no rewrite.
//! - **With the catalog:** `REINDEX INDEX`/`TABLE` on a table known to be small (rows and size
//!   under [`crate::catalog::Thresholds`]) is not flagged, inside or outside a transaction
//!   block: the rebuild takes milliseconds.
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
        name,
        concurrently: false,
    } = &ddl.kind
    else {
        return None;
    };
    let relation = match (target, name) {
        (ReindexTarget::Index | ReindexTarget::Table, Some(name)) => ctx.catalog.and_then(|f| {
            f.relation_for(name)
                .filter(|r| r.exists)
                .map(|r| (r, f.thresholds))
        }),
        _ => None,
    };
    // The small-table allowance, inside or outside a transaction block.
    if let Some((r, thresholds)) = relation
        && r.is_small(&thresholds)
    {
        return None;
    }
    let partitioned = relation.is_some_and(|(r, _)| r.is_partitioned());
    let message = "REINDEX rebuilds under an ACCESS EXCLUSIVE lock on the indexes and a SHARE lock on the table: nearly every query on the table waits for the whole rebuild.".to_owned();
    let (hint, rewrite) = if *target == ReindexTarget::System {
        (
            "REINDEX SYSTEM has no concurrent form; run it in a maintenance window.".to_owned(),
            None,
        )
    } else if !ctx.at_least(12) {
        ("REINDEX CONCURRENTLY needs PostgreSQL 12 or later; on older servers build a new index CONCURRENTLY and drop the old one.".to_owned(), None)
    } else if partitioned && !ctx.at_least(14) {
        ("PostgreSQL reindexes partitioned tables and indexes only from version 14; reindex each partition with REINDEX … CONCURRENTLY instead.".to_owned(), None)
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
    use crate::catalog::Relation;
    use crate::catalog::testing::{facts, partitioned, table as existing};
    use crate::protocol::TxStatus;
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

    #[test]
    fn catalog_size_and_partitioning_decide() {
        let ctx = |r: Relation, tx: TxStatus, version: u32| Ctx {
            tx,
            version: Some(version),
            catalog: Some(facts(r, vec![])),
            ..Ctx::default()
        };
        let small = existing("t", 50, 16 << 10);
        let big = existing("t", 5_000_000, 1 << 30);
        let tree = partitioned("t", 2, 5_000_000, 1 << 30);
        // (statement, context, None = passes / Some(rewrite offered))
        let cases: Vec<(&str, Ctx, Option<Option<Rewrite>>)> = vec![
            (
                "REINDEX TABLE t",
                ctx(small.clone(), TxStatus::InTransaction, 170_000),
                None,
            ),
            (
                "REINDEX INDEX t",
                ctx(small.clone(), TxStatus::InTransaction, 170_000),
                None,
            ),
            (
                "REINDEX TABLE t",
                ctx(small.clone(), TxStatus::Idle, 170_000),
                None,
            ),
            (
                "REINDEX TABLE t",
                ctx(big.clone(), TxStatus::InTransaction, 170_000),
                Some(None),
            ),
            // facts about another table
            (
                "REINDEX TABLE u",
                ctx(small, TxStatus::InTransaction, 170_000),
                Some(None),
            ),
            (
                "REINDEX TABLE t",
                ctx(tree.clone(), TxStatus::Idle, 140_000),
                Some(Some(Rewrite::Concurrently)),
            ),
            (
                "REINDEX TABLE t",
                ctx(tree, TxStatus::Idle, 130_000),
                Some(None),
            ),
            (
                "REINDEX TABLE t",
                ctx(big, TxStatus::Idle, 130_000),
                Some(Some(Rewrite::Concurrently)),
            ),
        ];
        for (sql, ctx, expected) in cases {
            assert_eq!(
                run(&RULE, sql, &ctx).map(|f| f.rewrite),
                expected,
                "{sql} on {:?}",
                ctx.version
            );
        }
    }
}
