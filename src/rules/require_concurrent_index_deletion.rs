//! `require-concurrent-index-deletion`: `DROP INDEX` without `CONCURRENTLY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the index's table. The drop itself is quick, but while it
//!   waits for the lock every later query on the table queues behind it — reads included.
//! - **Safe alternative:** `DROP INDEX CONCURRENTLY`, one index per statement, without CASCADE,
//!   outside a transaction block.
//! - **Rewrite:** yes, without CASCADE, alone outside a transaction block: one index gets
//!   `CONCURRENTLY` spliced in; a list `DROP INDEX a, b, …` runs as steps, one
//!   `DROP INDEX CONCURRENTLY` per index in the order written (`crate::recipe`), each skipped
//!   when its index is already gone. An index on a partitioned table (relkind `I`) cannot be
//!   dropped `CONCURRENTLY` ("cannot drop partitioned index concurrently", 0A000): alone,
//!   `DROP INDEX` and `DROP INDEX CONCURRENTLY` of it (the latter would only fail) both run as
//!   the plain `DROP INDEX` under the lock guard ([`Rewrite::Guarded`]: short `lock_timeout`,
//!   retried), and the notice says why; inside a transaction block, where the lock would last
//!   until COMMIT, they are refused; in a list, the hint says to drop it in a statement of its
//!   own. CASCADE and a transaction block keep the block, and the hint says why no split is
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
use crate::catalog::RelKind;
use crate::sql::statement::{Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "require-concurrent-index-deletion",
    lock: "ACCESS EXCLUSIVE on the table: blocks every read and write while it waits and runs",
    summary: "DROP INDEX without CONCURRENTLY; DROP INDEX [CONCURRENTLY] of an index of a partitioned table (run plainly under the guard)",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::DropIndex {
        names,
        concurrently,
        cascade,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    if *concurrently {
        // Only the partitioned index is a problem here: PostgreSQL refuses CONCURRENTLY on it.
        // CONCURRENTLY with several indexes or CASCADE is refused by the server itself.
        return match names.as_slice() {
            [name] if !*cascade => {
                partitioned_index(name, ctx).map(|table| partitioned(name, &table, true, ctx))
            }
            _ => None,
        };
    }
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
    if let [name] = names.as_slice()
        && let Some(table) = partitioned_index(name, ctx)
    {
        if !*cascade {
            return Some(partitioned(name, &table, false, ctx));
        }
        return Some(Finding {
            rule: RULE.id,
            message,
            hint: format!(
                "{name} is an index of the partitioned table {table}, which PostgreSQL cannot drop CONCURRENTLY. Drop the objects that depend on it explicitly, then DROP INDEX {name} without CASCADE, alone and outside a transaction block: ddlgate then runs it under the lock guard."
            ),
            rewrite: None,
        });
    }
    // Each index of a list as the server resolved it (the first is the facts' relation, the
    // others their referenced relations): one on a partitioned table cannot be dropped
    // CONCURRENTLY, so the list cannot be split into concurrent drops.
    let several = names.len() > 1;
    let partitioned_in_list = names.iter().find(|name| {
        several
            && ctx.catalog.is_some_and(|f| {
                f.relation_for(name)
                    .or_else(|| f.referenced(name))
                    .is_some_and(|r| r.exists && r.is_partitioned())
            })
    });
    let (hint, rewrite) = if let Some(first) = partitioned_in_list {
        (
            format!(
                "{first} is an index on a partitioned table, which PostgreSQL cannot drop CONCURRENTLY, so ddlgate cannot split this statement into concurrent drops. Drop {first} in a statement of its own (alone, outside a transaction block, ddlgate runs it under the lock guard) and the other indexes in another."
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

/// The table of `name` when the catalog shows `name` is an index of a partitioned table
/// (relkind `I`), which PostgreSQL cannot drop `CONCURRENTLY`.
fn partitioned_index(name: &Name, ctx: &Context) -> Option<Name> {
    let r = ctx.catalog?.relation_for(name)?;
    (r.exists && r.kind == Some(RelKind::PartitionedIndex))
        .then(|| r.table.clone().unwrap_or_else(|| name.clone()))
}

/// `DROP INDEX [CONCURRENTLY]` of one index of a partitioned table, without CASCADE. Its lock
/// (ACCESS EXCLUSIVE on the parent table and each partition and their indexes) is held only
/// for the catalog change; the danger is the wait for it, which the guard removes. Outside a
/// transaction block it runs as a plain DROP INDEX under the guard; inside one, the lock would
/// be held until COMMIT: refused.
fn partitioned(name: &Name, table: &Name, concurrently: bool, ctx: &Context) -> Finding {
    let written = if concurrently {
        format!("DROP INDEX CONCURRENTLY {name}")
    } else {
        format!("DROP INDEX {name}")
    };
    let cannot = format!(
        "PostgreSQL cannot drop an index of a partitioned table concurrently ({name} is one, on {table}; it answers \"cannot drop partitioned index concurrently\", SQLSTATE 0A000)"
    );
    if ctx.in_transaction_block() {
        return Finding {
            rule: RULE.id,
            message: format!(
                "{written}: {cannot}, and a plain DROP INDEX {} holds ACCESS EXCLUSIVE on {table} and every partition until the transaction ends, blocking every query on them.",
                ctx.block_description()
            ),
            hint: format!(
                "Send DROP INDEX {name} alone, outside any transaction block: ddlgate then runs it under the lock guard (a short lock_timeout, retried with backoff), so it never queues traffic. {OUTSIDE_TRANSACTION_HINT}"
            ),
            rewrite: None,
        };
    }
    Finding {
        rule: RULE.id,
        message: format!(
            "{cannot}; ddlgate runs the plain DROP INDEX {name} under the lock guard: a short lock_timeout, retried with backoff, so it never queues traffic on {table} behind it."
        ),
        hint: format!(
            "Nothing to change: DROP INDEX {name} (without CONCURRENTLY) is the only form PostgreSQL accepts, and ddlgate runs it guarded."
        ),
        rewrite: Some(Rewrite::Guarded),
    }
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
    fn partitioned_indexes_are_dropped_plainly_under_the_guard() {
        let index = |kind| Relation {
            kind: Some(kind),
            table: Some(Name::new(Some("public"), "ev")),
            ..existing("i", 1_000_000, 1 << 30)
        };
        let ctx = |r: Relation, tx: Ctx| Ctx {
            catalog: Some(facts(r, vec![])),
            ..tx
        };
        let part = || index(RelKind::PartitionedIndex);
        let mut tiny = part();
        (tiny.rows, tiny.bytes) = (Some(10), Some(8192));
        // (SQL, context, None = passes / Some(rewrite offered))
        let cases: Vec<(&str, Ctx, Option<Option<Rewrite>>)> = vec![
            (
                "DROP INDEX i",
                ctx(part(), Ctx::default()),
                Some(Some(Rewrite::Guarded)),
            ),
            (
                "DROP INDEX IF EXISTS i",
                ctx(part(), Ctx::default()),
                Some(Some(Rewrite::Guarded)),
            ),
            (
                "DROP INDEX CONCURRENTLY i",
                ctx(part(), Ctx::default()),
                Some(Some(Rewrite::Guarded)),
            ),
            (
                "DROP INDEX CONCURRENTLY IF EXISTS i",
                ctx(part(), Ctx::default()),
                Some(Some(Rewrite::Guarded)),
            ),
            // Inside a transaction block the lock would last until COMMIT.
            ("DROP INDEX i", ctx(part(), Ctx::in_tx()), Some(None)),
            (
                "DROP INDEX CONCURRENTLY i",
                ctx(part(), Ctx::in_tx()),
                Some(None),
            ),
            (
                "DROP INDEX i",
                ctx(
                    part(),
                    Ctx {
                        shares_unit: true,
                        ..Ctx::default()
                    },
                ),
                Some(None),
            ),
            // CASCADE drops dependents: named in the hint, not run.
            (
                "DROP INDEX i CASCADE",
                ctx(part(), Ctx::default()),
                Some(None),
            ),
            // The server refuses these itself.
            (
                "DROP INDEX CONCURRENTLY i CASCADE",
                ctx(part(), Ctx::default()),
                None,
            ),
            // A small tree: harmless as written (the guard still runs it).
            ("DROP INDEX i", ctx(tiny, Ctx::in_tx()), None),
            // An ordinary index: the CONCURRENTLY rewrite, or nothing to do.
            (
                "DROP INDEX i",
                ctx(index(RelKind::Index), Ctx::default()),
                Some(Some(Rewrite::Concurrently)),
            ),
            (
                "DROP INDEX CONCURRENTLY i",
                ctx(index(RelKind::Index), Ctx::default()),
                None,
            ),
            // Facts about another index, a missing index, no facts.
            (
                "DROP INDEX i",
                ctx(
                    Relation {
                        asked: Name::bare("j"),
                        ..part()
                    },
                    Ctx::default(),
                ),
                Some(Some(Rewrite::Concurrently)),
            ),
            (
                "DROP INDEX i",
                ctx(Relation::missing(Name::bare("i")), Ctx::default()),
                Some(Some(Rewrite::Concurrently)),
            ),
            (
                "DROP INDEX CONCURRENTLY i",
                ctx(Relation::missing(Name::bare("i")), Ctx::default()),
                None,
            ),
            ("DROP INDEX CONCURRENTLY i", Ctx::default(), None),
        ];
        for (sql, ctx, expected) in cases {
            let got = run(&RULE, sql, &ctx);
            assert_eq!(got.as_ref().map(|f| f.rewrite), expected, "{sql}: {got:?}");
        }
        let f = run(
            &RULE,
            "DROP INDEX CONCURRENTLY i",
            &ctx(part(), Ctx::default()),
        )
        .expect("flagged");
        for text in [
            "PostgreSQL cannot drop an index of a partitioned table concurrently",
            "on public.ev",
            "0A000",
            "under the lock guard",
            "retried with backoff",
        ] {
            assert!(f.message.contains(text), "{text}: {}", f.message);
        }
        let f = run(&RULE, "DROP INDEX i", &ctx(part(), Ctx::in_tx())).expect("flagged");
        assert!(
            f.message.contains("until the transaction ends")
                && f.hint.contains("alone, outside any transaction block")
                && f.hint.ends_with(OUTSIDE_TRANSACTION_HINT),
            "{} / {}",
            f.message,
            f.hint
        );
        let f = run(&RULE, "DROP INDEX i CASCADE", &ctx(part(), Ctx::default())).expect("flagged");
        assert!(f.hint.contains("without CASCADE"), "{}", f.hint);
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
