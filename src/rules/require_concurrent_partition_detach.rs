//! `require-concurrent-partition-detach`: `ALTER TABLE parent DETACH PARTITION p` without
//! `CONCURRENTLY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the parent (and SHARE on tables referencing it by foreign
//!   key): every query on the whole partitioned table — reads included — waits, and while the
//!   DETACH waits for the lock everything queues behind it.
//! - **Safe alternative (R13):** `DETACH PARTITION p CONCURRENTLY` (PostgreSQL 14+), which
//!   takes only SHARE UPDATE EXCLUSIVE on the parent. It cannot run inside a transaction block,
//!   must be the only sub-command, and is refused when the parent has a DEFAULT partition; if
//!   it is interrupted, finish with `DETACH PARTITION p FINALIZE`.
//! - **Rewrite:** yes — `CONCURRENTLY` is inserted on PostgreSQL 14+ when the statement runs
//!   alone outside a transaction block and DETACH is its only sub-command. Whether the parent
//!   has a DEFAULT partition needs the catalog; until then the hint warns about it.
//! - **`DROP TABLE` of a partition (E4):** it takes ACCESS EXCLUSIVE on the parent too. When
//!   the catalog shows the table is a partition (`relispartition`), the statement names one
//!   table without CASCADE, runs alone outside a transaction block on PostgreSQL 14+, and the
//!   parent has no DEFAULT partition, it runs as steps: `DETACH PARTITION … FINALIZE` when an
//!   interrupted concurrent detach is pending, `DETACH PARTITION … CONCURRENTLY`, `DROP TABLE`.
//!   Otherwise this rule says nothing: `ban-drop-table` keeps its verdict and its message says
//!   which condition stops the concurrent detach ([`drop_partition`]).
//! - **Not flagged:** parents created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DETACH-PARTITION>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::catalog::PartitionOf;
use crate::sql::statement::{AlterOp, Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "require-concurrent-partition-detach",
    lock: "ACCESS EXCLUSIVE on the partitioned parent: blocks every read and write on the whole table",
    summary: "ALTER TABLE … DETACH PARTITION without CONCURRENTLY; DROP TABLE of a partition (detached CONCURRENTLY first)",
    default_action: Action::Rewrite,
    check,
};

const DEFAULT_PARTITION_CAVEAT: &str = "CONCURRENTLY is refused if the parent has a DEFAULT partition; if it is interrupted, finish with DETACH PARTITION … FINALIZE.";

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    if let DdlKind::DropTable { names, cascade } = &ddl.kind {
        return drop_table(names, *cascade, ctx);
    }
    let DdlKind::AlterTable {
        name: parent, ops, ..
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(parent) {
        return None;
    }
    let partition = ops.iter().find_map(|op| match op {
        AlterOp::DetachPartition {
            partition,
            concurrently: false,
        } => Some(partition),
        _ => None,
    })?;
    let message = format!(
        "DETACH PARTITION {partition} takes an ACCESS EXCLUSIVE lock on {parent}: every query on the whole partitioned table, reads included, waits while it waits and runs."
    );
    let (hint, rewrite) = if !ctx.at_least(14) {
        (
            "DETACH PARTITION … CONCURRENTLY needs PostgreSQL 14 or later; on older servers run it under a short lock_timeout at a quiet time.".to_owned(),
            None,
        )
    } else if ctx.in_transaction_block() {
        (
            format!(
                "Use DETACH PARTITION {partition} CONCURRENTLY, which cannot run {}. {DEFAULT_PARTITION_CAVEAT} {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description()
            ),
            None,
        )
    } else if ops.len() != 1 {
        (
            format!(
                "Run DETACH PARTITION {partition} CONCURRENTLY as its own ALTER TABLE statement (it must be the only sub-command) and the other sub-commands separately. {DEFAULT_PARTITION_CAVEAT}"
            ),
            None,
        )
    } else {
        (
            format!(
                "Use DETACH PARTITION {partition} CONCURRENTLY, which takes only SHARE UPDATE EXCLUSIVE on {parent}. {DEFAULT_PARTITION_CAVEAT}"
            ),
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

/// `DROP TABLE p` where the catalog shows `p` is a partition: PostgreSQL takes ACCESS
/// EXCLUSIVE on the parent too (E4). When it can (see [`drop_partition`]), ddlgate detaches the
/// partition concurrently first, then drops it (R13 + DROP). When it cannot, this rule says
/// nothing and `ban-drop-table` keeps its verdict, with the reason in its message.
fn drop_table(names: &[Name], cascade: bool, ctx: &Context) -> Option<Finding> {
    let DropPartition::Steps { partition, of } = drop_partition(names, cascade, ctx) else {
        return None;
    };
    let parent = &of.parent;
    let pending = if of.detach_pending {
        format!(
            " An interrupted DETACH … CONCURRENTLY left {partition} pending detach: ddlgate finishes it with DETACH PARTITION … FINALIZE."
        )
    } else {
        String::new()
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "DROP TABLE {partition} drops a partition of {parent}, which takes ACCESS EXCLUSIVE on {parent} too: every query on the whole partitioned table, reads included, would wait while it waits and runs. ddlgate first detaches it with ALTER TABLE {parent} DETACH PARTITION {partition} CONCURRENTLY (SHARE UPDATE EXCLUSIVE on {parent}: reads and writes continue), then drops the detached table.{pending}"
        ),
        hint: format!(
            "Nothing to change: ddlgate runs ALTER TABLE {parent} DETACH PARTITION {partition} CONCURRENTLY, then DROP TABLE {partition}, each step resumable."
        ),
        rewrite: Some(Rewrite::Steps),
    })
}

/// What `DROP TABLE` becomes when it names a partition (by the catalog's `relispartition`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DropPartition<'a> {
    /// No table named is known to be a partition (or it was created in this transaction).
    NotAPartition,
    /// `partition` of `of.parent` can be detached concurrently, then dropped.
    Steps {
        partition: &'a Name,
        of: &'a PartitionOf,
    },
    /// It cannot, and `why` says so in words.
    Impossible {
        partition: &'a Name,
        of: &'a PartitionOf,
        why: String,
    },
}

/// Whether a `DROP TABLE names [CASCADE]` of a partition can run as `DETACH PARTITION …
/// CONCURRENTLY` then `DROP TABLE`: one table only, without CASCADE, on PostgreSQL 14+, alone
/// outside a transaction block (DETACH … CONCURRENTLY cannot run in one), and a parent without
/// a DEFAULT partition (PostgreSQL refuses the concurrent detach then).
pub(super) fn drop_partition<'a>(
    names: &'a [Name],
    cascade: bool,
    ctx: &Context<'a>,
) -> DropPartition<'a> {
    let Some(facts) = ctx.catalog else {
        return DropPartition::NotAPartition;
    };
    let found = names.iter().filter(|n| !ctx.is_new(n)).find_map(|n| {
        facts
            .relation_for(n)
            .or_else(|| facts.referenced(n))
            .filter(|r| r.exists)
            .and_then(|r| r.partition_of.as_ref())
            .map(|of| (n, of))
    });
    let Some((partition, of)) = found else {
        return DropPartition::NotAPartition;
    };
    let parent = &of.parent;
    let why = match ctx.server_version {
        None => Some(
            "the server's version is unknown (DETACH PARTITION … CONCURRENTLY needs PostgreSQL 14)"
                .to_owned(),
        ),
        Some(v) if v < 140_000 => Some(format!(
            "DETACH PARTITION … CONCURRENTLY needs PostgreSQL 14 or later (the server is {v})"
        )),
        _ if names.len() > 1 => Some(format!(
            "the statement drops several tables; drop {partition} in a DROP TABLE of its own"
        )),
        _ if cascade => Some(format!(
            "CASCADE also drops what depends on {partition}; drop those objects explicitly, then DROP TABLE {partition} without CASCADE"
        )),
        _ if of.parent_has_default => Some(format!(
            "{parent} has a DEFAULT partition, and PostgreSQL refuses DETACH PARTITION … CONCURRENTLY then"
        )),
        _ if ctx.in_transaction_block() => Some(format!(
            "DETACH PARTITION … CONCURRENTLY cannot run {}",
            ctx.block_description()
        )),
        _ => None,
    };
    match why {
        Some(why) => DropPartition::Impossible { partition, of, why },
        None => DropPartition::Steps { partition, of },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    const PLAIN: &str = "ALTER TABLE measurements DETACH PARTITION measurements_2020";

    #[test]
    fn flags_plain_detach() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE m DETACH PARTITION m_2020 CONCURRENTLY",
                "ALTER TABLE m ATTACH PARTITION m_2020 FOR VALUES FROM (1) TO (2)",
                "DROP TABLE m_2020",
            ],
            &[
                PLAIN,
                "alter table s.m detach partition s.m_2020",
                "ALTER TABLE m OWNER TO bob, DETACH PARTITION m_2020",
            ],
        );
    }

    #[test]
    fn rewrite_is_version_and_context_aware() {
        let f = |ctx: &Ctx| run(&RULE, PLAIN, ctx).expect("flagged");
        let ok = f(&Ctx::version(140_000));
        assert_eq!(ok.rewrite, Some(Rewrite::Concurrently));
        assert!(ok.hint.contains("DEFAULT partition"), "{}", ok.hint);
        let old = f(&Ctx::version(130_010));
        assert_eq!(old.rewrite, None);
        assert!(old.hint.contains("PostgreSQL 14"), "{}", old.hint);
        for ctx in [
            Ctx::in_tx(),
            Ctx {
                shares_unit: true,
                ..Ctx::default()
            },
            Ctx {
                in_function_body: true,
                ..Ctx::default()
            },
        ] {
            let f = f(&ctx);
            assert_eq!(f.rewrite, None);
            assert!(f.hint.contains("disable_ddl_transaction!"), "{}", f.hint);
        }
        let multi = run(
            &RULE,
            "ALTER TABLE m OWNER TO bob, DETACH PARTITION m_2020",
            &Ctx::default(),
        )
        .expect("flagged");
        assert_eq!(multi.rewrite, None);
        assert!(multi.hint.contains("only sub-command"), "{}", multi.hint);
    }

    #[test]
    fn parents_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh DETACH PARTITION p", &ctx),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other DETACH PARTITION p", &ctx).is_some());
    }

    /// Facts for `DROP TABLE`: `ev_2025` a partition of `public.ev` (with or without a DEFAULT
    /// partition, a pending detach), and a plain table `other`.
    fn dropping(has_default: bool, pending: bool, tx: Ctx) -> Ctx {
        use crate::catalog::testing::{facts, table};
        use crate::catalog::{Facts, Relation};
        let part = Relation {
            partition_of: Some(PartitionOf {
                parent: Name::new(Some("public"), "ev"),
                parent_has_default: has_default,
                detach_pending: pending,
            }),
            ..table("ev_2025", 10_000, 1 << 20)
        };
        Ctx {
            catalog: Some(Facts {
                referenced: vec![table("other", 10, 8192)],
                ..facts(part, vec![])
            }),
            version: Some(150_004),
            ..tx
        }
    }

    #[test]
    fn dropping_a_partition_detaches_it_concurrently_first() {
        let with_version = |v: Option<u32>| Ctx {
            version: v,
            ..dropping(false, false, Ctx::default())
        };
        let mut new_partition = dropping(false, false, Ctx::default());
        new_partition.created.insert(Name::bare("ev_2025"));
        // (case, SQL, context, rewrite into steps, or the reason it is impossible)
        let cases: Vec<(&str, &str, Ctx, Result<(), &str>)> = vec![
            (
                "alone",
                "DROP TABLE ev_2025",
                dropping(false, false, Ctx::default()),
                Ok(()),
            ),
            (
                "IF EXISTS, RESTRICT",
                "DROP TABLE IF EXISTS ev_2025 RESTRICT",
                dropping(false, false, Ctx::default()),
                Ok(()),
            ),
            (
                "pending detach",
                "DROP TABLE ev_2025",
                dropping(false, true, Ctx::default()),
                Ok(()),
            ),
            (
                "DEFAULT partition",
                "DROP TABLE ev_2025",
                dropping(true, false, Ctx::default()),
                Err("has a DEFAULT partition"),
            ),
            (
                "in a transaction",
                "DROP TABLE ev_2025",
                dropping(false, false, Ctx::in_tx()),
                Err("cannot run inside a transaction block"),
            ),
            (
                "multi-statement query",
                "DROP TABLE ev_2025",
                dropping(
                    false,
                    false,
                    Ctx {
                        shares_unit: true,
                        ..Ctx::default()
                    },
                ),
                Err("in a multi-statement query"),
            ),
            (
                "several tables",
                "DROP TABLE other, ev_2025",
                dropping(false, false, Ctx::default()),
                Err("drops several tables"),
            ),
            (
                "CASCADE",
                "DROP TABLE ev_2025 CASCADE",
                dropping(false, false, Ctx::default()),
                Err("CASCADE also drops"),
            ),
            (
                "PostgreSQL 13",
                "DROP TABLE ev_2025",
                with_version(Some(130_000)),
                Err("needs PostgreSQL 14 or later (the server is 130000)"),
            ),
            (
                "version unknown",
                "DROP TABLE ev_2025",
                with_version(None),
                Err("version is unknown"),
            ),
        ];
        for (case, sql, ctx, expected) in cases {
            let ddl = crate::rules::testing::understand(sql);
            let DdlKind::DropTable { names, cascade } = &ddl.kind else {
                panic!("{case}");
            };
            let got = drop_partition(names, *cascade, &ctx.get());
            let finding = run(&RULE, sql, &ctx);
            match expected {
                Ok(()) => {
                    assert!(
                        matches!(got, DropPartition::Steps { .. }),
                        "{case}: {got:?}"
                    );
                    let f = finding.expect(case);
                    assert_eq!(f.rewrite, Some(Rewrite::Steps), "{case}");
                    assert!(
                        f.message.contains(
                            "ALTER TABLE public.ev DETACH PARTITION ev_2025 CONCURRENTLY"
                        ) && f.message.contains("ACCESS EXCLUSIVE on public.ev"),
                        "{case}: {}",
                        f.message
                    );
                    assert_eq!(f.message.contains("FINALIZE"), case == "pending detach");
                }
                Err(why) => {
                    assert!(
                        matches!(&got, DropPartition::Impossible { why: w, .. } if w.contains(why)),
                        "{case}: {got:?}"
                    );
                    // Today's verdict stays: ban-drop-table's warning, with the reason.
                    assert_eq!(finding, None, "{case}");
                    let warned = run(&crate::rules::ban_drop_table::RULE, sql, &ctx)
                        .expect("ban-drop-table");
                    assert!(
                        warned.message.contains("ACCESS EXCLUSIVE on public.ev too")
                            && warned.message.contains(why),
                        "{case}: {}",
                        warned.message
                    );
                }
            }
        }
        // Not a partition, no facts, created in this transaction: nothing to say.
        for (sql, ctx) in [
            ("DROP TABLE other", dropping(false, false, Ctx::default())),
            ("DROP TABLE ev_2025", Ctx::default()),
            ("DROP TABLE ev_2025", new_partition),
        ] {
            assert_eq!(run(&RULE, sql, &ctx), None, "{sql}");
        }
    }
}
