//! `require-concurrent-index-deletion`: `DROP INDEX` without `CONCURRENTLY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the index's table. The drop itself is quick, but while it
//!   waits for the lock every later query on the table queues behind it — reads included.
//! - **Safe alternative:** `DROP INDEX CONCURRENTLY`, one index per statement, without CASCADE,
//!   outside a transaction block.
//! - **Rewrite:** yes, without CASCADE, alone outside a transaction block: one index gets
//!   `CONCURRENTLY` spliced in; a list `DROP INDEX a, b, …` runs as steps, one
//!   `DROP INDEX CONCURRENTLY` per index in the order written (`crate::recipe`), each skipped
//!   when its index is already gone — unless the catalog says one of them is an index on a
//!   partitioned table, which PostgreSQL cannot drop `CONCURRENTLY` ("cannot drop partitioned
//!   index concurrently"); the hint then says so instead of offering a rewrite that would
//!   fail. CASCADE and a transaction block keep the block, and the hint says why no split is
//!   possible there.
//! - **Small tables:** not flagged — the lock is held for milliseconds and nobody waits long
//!   behind it — when one index, on a table the catalog shows small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`) or
//!   created in this transaction (invisible to every other session). `DROP INDEX a, b, …`
//!   inside a transaction block, where it could not run `CONCURRENTLY` anyway, is not flagged
//!   when *every* index named is so: each one's table is resolved by the server (the index's
//!   OID, then `pg_index.indrelid`), never guessed from the names. Outside a transaction block
//!   a list of indexes is still flagged, and split: one `DROP INDEX CONCURRENTLY` per index.
//!
//! <https://www.postgresql.org/docs/current/sql-dropindex.html>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::sql::statement::{Ddl, DdlKind, Name};

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
    // The small-table allowance: an index whose table the server shows small, or which was
    // created in this transaction.
    let harmless = |n: &Name| ctx.is_new(n) || ctx.is_small(n) || ctx.is_small_referenced(n);
    match names.as_slice() {
        [name] if harmless(name) => return None,
        [_, _, ..] if ctx.in_transaction_block() && names.iter().all(harmless) => return None,
        _ => {}
    }
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "DROP INDEX {list} takes an ACCESS EXCLUSIVE lock on the table: while it waits for the lock, every query on the table — reads included — queues behind it."
    );
    let hint_base = "Use DROP INDEX CONCURRENTLY, one index per statement and without CASCADE";
    // Each index as the server resolved it (the first is the facts' relation, the others
    // their referenced relations): one on a partitioned table cannot be dropped CONCURRENTLY.
    let partitioned: Vec<&Name> = names
        .iter()
        .filter(|name| {
            ctx.catalog.is_some_and(|f| {
                f.relation_for(name)
                    .or_else(|| f.referenced(name))
                    .is_some_and(|r| r.exists && r.is_partitioned())
            })
        })
        .collect();
    let several = names.len() > 1;
    let (hint, rewrite) = if let Some(first) = partitioned.first() {
        let why = if several {
            format!(
                "{first} is an index on a partitioned table, which PostgreSQL cannot drop CONCURRENTLY, so ddlgate cannot split this statement into concurrent drops. Drop {first} in a statement of its own"
            )
        } else {
            format!(
                "{list} is an index on a partitioned table, which PostgreSQL cannot drop CONCURRENTLY. Drop it"
            )
        };
        (
            format!(
                "{why} at a quiet moment with a short lock_timeout, so that it gives up instead of queueing every query on the table behind it, and retry."
            ),
            None,
        )
    } else if ctx.in_transaction_block() {
        (
            format!(
                "{hint_base}; it cannot run {}{}. {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description(),
                if several {
                    " (sent alone outside a transaction, ddlgate splits the list into one DROP INDEX CONCURRENTLY per index itself)"
                } else {
                    ""
                }
            ),
            None,
        )
    } else if *cascade {
        (
            format!(
                "{hint_base}: PostgreSQL refuses CASCADE with CONCURRENTLY, so ddlgate cannot run it safely. Drop the dependent objects explicitly first, then the index{} without CASCADE.",
                if several { "es" } else { "" }
            ),
            None,
        )
    } else if several {
        (
            format!(
                "{hint_base}: ddlgate runs this statement as one DROP INDEX CONCURRENTLY per index, in the order written."
            ),
            Some(Rewrite::Steps),
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
    use crate::catalog::testing::{facts, table as existing};
    use crate::catalog::{RelKind, Relation};
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

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
            Some(Rewrite::Steps)
        );
        assert_eq!(
            run(&RULE, "DROP INDEX a, b CASCADE", &Ctx::default()).and_then(|f| f.rewrite),
            None
        );
        assert_eq!(
            run(&RULE, "DROP INDEX a, b", &Ctx::in_tx()).and_then(|f| f.rewrite),
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

    #[test]
    fn partitioned_indexes_get_no_concurrent_rewrite() {
        let index = |kind| Relation {
            kind: Some(kind),
            ..existing("i", 1_000_000, 1 << 30)
        };
        let ctx = |r: Relation| Ctx {
            catalog: Some(facts(r, vec![])),
            ..Ctx::default()
        };
        let f = run(
            &RULE,
            "DROP INDEX i",
            &ctx(index(RelKind::PartitionedIndex)),
        )
        .expect("flagged");
        assert_eq!(f.rewrite, None);
        assert!(f.hint.contains("cannot drop CONCURRENTLY"), "{}", f.hint);
        for (sql, relation) in [
            ("DROP INDEX i", index(RelKind::Index)),
            // facts about another index
            (
                "DROP INDEX i",
                Relation {
                    asked: Name::bare("j"),
                    ..index(RelKind::PartitionedIndex)
                },
            ),
            // a missing index
            ("DROP INDEX i", Relation::missing(Name::bare("i"))),
        ] {
            assert_eq!(
                run(&RULE, sql, &ctx(relation)).and_then(|f| f.rewrite),
                Some(Rewrite::Concurrently),
                "{sql}"
            );
        }
    }

    #[test]
    fn several_indexes_pass_in_a_transaction_only_when_every_table_is_small_or_new() {
        let small = |n: &str| Relation {
            kind: Some(RelKind::Index),
            ..existing(n, 0, 8192)
        };
        let big = |n: &str| Relation {
            kind: Some(RelKind::Index),
            ..existing(n, 1_000_000, 1 << 30)
        };
        let ctx = |tx: Ctx, first: Relation, rest: Vec<Relation>| Ctx {
            catalog: Some(crate::catalog::Facts {
                referenced: rest,
                ..facts(first, vec![])
            }),
            ..tx
        };
        let sql = "DROP INDEX a, b, c";
        // Every index's table small: passes in a transaction.
        assert_eq!(
            run(
                &RULE,
                sql,
                &ctx(Ctx::in_tx(), small("a"), vec![small("b"), small("c")])
            ),
            None
        );
        // One big table among them, or one index the facts do not cover: flagged.
        for rest in [
            vec![small("b"), big("c")],
            vec![big("b"), small("c")],
            vec![small("b")],
            vec![small("b"), Relation::missing(Name::bare("c"))],
        ] {
            assert!(
                run(&RULE, sql, &ctx(Ctx::in_tx(), small("a"), rest.clone())).is_some(),
                "{rest:?}"
            );
        }
        assert!(
            run(
                &RULE,
                sql,
                &ctx(Ctx::in_tx(), big("a"), vec![small("b"), small("c")])
            )
            .is_some()
        );
        // Outside a transaction block the list is still flagged, and split into one
        // concurrent drop per index.
        let f = run(
            &RULE,
            sql,
            &ctx(Ctx::default(), small("a"), vec![small("b"), small("c")]),
        )
        .expect("flagged outside a transaction");
        assert_eq!(f.rewrite, Some(Rewrite::Steps));
        // Without facts: flagged.
        assert!(run(&RULE, sql, &Ctx::in_tx()).is_some());
        // An index the server confirmed new to this transaction counts like a small one.
        let mut with_new = ctx(Ctx::in_tx(), small("a"), vec![small("b"), big("c")]);
        with_new.created.insert(Name::bare("c"));
        assert_eq!(run(&RULE, sql, &with_new), None);
        let mut one_new = Ctx::in_tx();
        one_new.created.insert(Name::bare("i"));
        assert_eq!(run(&RULE, "DROP INDEX i", &one_new), None);
    }

    #[test]
    fn a_list_is_split_unless_an_index_is_partitioned_cascade_or_in_a_transaction() {
        let index = |n: &str, kind| Relation {
            kind: Some(kind),
            ..existing(n, 1_000_000, 1 << 30)
        };
        let with = |first: Relation, rest: Vec<Relation>, tx: Ctx| Ctx {
            catalog: Some(crate::catalog::Facts {
                referenced: rest,
                ..facts(first, vec![])
            }),
            ..tx
        };
        // (statement, facts, context, rewrite, words the hint must hold)
        let cases: Vec<(&str, Ctx, Option<Rewrite>, &str)> = vec![
            (
                "DROP INDEX a, b",
                Ctx::default(),
                Some(Rewrite::Steps),
                "one DROP INDEX CONCURRENTLY per index",
            ),
            (
                "DROP INDEX a, b",
                with(
                    index("a", RelKind::Index),
                    vec![index("b", RelKind::Index)],
                    Ctx::default(),
                ),
                Some(Rewrite::Steps),
                "in the order written",
            ),
            (
                "DROP INDEX a, b",
                with(
                    index("a", RelKind::Index),
                    vec![index("b", RelKind::PartitionedIndex)],
                    Ctx::default(),
                ),
                None,
                "b is an index on a partitioned table",
            ),
            (
                "DROP INDEX a, b",
                with(
                    index("a", RelKind::PartitionedIndex),
                    vec![index("b", RelKind::Index)],
                    Ctx::default(),
                ),
                None,
                "cannot split this statement",
            ),
            (
                "DROP INDEX a, b CASCADE",
                Ctx::default(),
                None,
                "refuses CASCADE with CONCURRENTLY",
            ),
            (
                "DROP INDEX a CASCADE",
                Ctx::default(),
                None,
                "then the index without CASCADE",
            ),
            (
                "DROP INDEX a, b",
                Ctx::in_tx(),
                None,
                "ddlgate splits the list",
            ),
        ];
        for (sql, ctx, rewrite, words) in cases {
            let f = run(&RULE, sql, &ctx).expect("flagged");
            assert_eq!(f.rewrite, rewrite, "{sql}");
            assert!(f.hint.contains(words), "{sql}: {}", f.hint);
        }
    }
}
