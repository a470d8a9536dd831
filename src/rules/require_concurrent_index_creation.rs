//! `require-concurrent-index-creation`: a plain `CREATE INDEX` on an existing table.
//!
//! - **Lock:** SHARE on the table for the whole build — INSERT, UPDATE and DELETE wait until it
//!   finishes (reads continue). On a partitioned table, on the parent and every partition.
//! - **Safe alternative:** `CREATE INDEX CONCURRENTLY`, which takes SHARE UPDATE EXCLUSIVE and
//!   lets writes proceed; it cannot run inside a transaction block. PostgreSQL rejects it on a
//!   partitioned table: there the index is built in steps (R2) — `CREATE INDEX … ON ONLY
//!   parent` (no build), `CREATE INDEX CONCURRENTLY` on each leaf partition, `ALTER INDEX …
//!   ATTACH PARTITION` for each; the parent index turns valid after the last attach.
//! - **Rewrite:** yes — `CONCURRENTLY` is inserted into the client's own text when the
//!   statement runs alone outside a transaction block, unless the catalog says the table is
//!   partitioned: then the finding carries no single-statement rewrite and its hint names the
//!   step-wise build ddlgate runs instead.
//! - **With the catalog:** a table known to be small (rows and total size under
//!   [`crate::catalog::Thresholds`], see [`crate::catalog::Relation::is_small`]) is not
//!   flagged, inside or outside a transaction block — a plain build on it takes milliseconds.
//! - **`CONCURRENTLY` on a partitioned parent:** PostgreSQL refuses it (0A000), whatever the
//!   table's size. When the catalog confirms the table is partitioned (relkind `p`), the finding
//!   says so and carries the step-wise build (R2) outside a transaction block; inside one the
//!   statement is refused with the steps named (they cannot run there either).
//! - **An INVALID leftover:** `CREATE [UNIQUE] INDEX [CONCURRENTLY] IF NOT EXISTS i ON t …`
//!   when the catalog shows an INVALID index `i` on `t` (a failed concurrent build left it):
//!   as written PostgreSQL finds the name and skips, keeping the broken index. Flagged whatever
//!   the table's size, CONCURRENTLY or not: outside a transaction block ddlgate drops the
//!   leftover concurrently and builds again (a recipe, `recipe::plan_rebuild_invalid_index`);
//!   inside one it is blocked with both steps in the hint. A VALID `i`: unchanged.
//! - **Not flagged:** tables created earlier in the same transaction (nobody else can see them)
//!   and `CREATE INDEX … ON ONLY parent` when the catalog confirms `parent` is partitioned
//!   (relkind `p`): that builds nothing. On a plain table `ON ONLY` builds a normal index, so
//!   it is checked like any CREATE INDEX; without the catalog it is flagged, without a rewrite
//!   (CONCURRENTLY would fail if the table is partitioned after all).
//!
//! <https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::catalog::Relation;
use crate::sql::statement::{Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "require-concurrent-index-creation",
    lock: "SHARE on the table for the whole build: blocks INSERT, UPDATE and DELETE",
    summary: "CREATE INDEX without CONCURRENTLY on an existing table; CONCURRENTLY on a partitioned parent (PostgreSQL refuses it: built partition by partition)",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::CreateIndex {
        table,
        concurrently,
        only,
        name,
        if_not_exists,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    // Before anything about locks: `IF NOT EXISTS` over an INVALID leftover does nothing at
    // all, whatever the table's size and with or without CONCURRENTLY.
    if *if_not_exists
        && let Some(index) = name
        && let Some(schema) = ctx
            .catalog
            .and_then(|f| f.invalid_index_leftover(table, &index.name))
    {
        return Some(invalid_leftover(table, &index.name, schema, ctx));
    }
    if *concurrently {
        return concurrent_on_partitioned(table, *only, ctx);
    }
    if ctx.is_new(table) {
        return None;
    }
    let relation = ctx.catalog.and_then(|f| {
        f.relation_for(table)
            .filter(|r| r.exists)
            .map(|r| (r, f.thresholds))
    });
    if *only {
        match relation {
            // The partitioned parent's own index: nothing is built.
            Some((r, _)) if r.kind == Some(crate::catalog::RelKind::PartitionedTable) => {
                return None;
            }
            Some(_) => {}
            None => return Some(only_unconfirmed(table)),
        }
    }
    // The small-table allowance, inside or outside a transaction block: the build takes
    // milliseconds, so it runs as written (no CONCURRENTLY rewrite needed either).
    if let Some((r, thresholds)) = relation
        && r.is_small(&thresholds)
    {
        return None;
    }
    if let Some((r, _)) = relation
        && r.is_partitioned()
    {
        return Some(partitioned(table, r, ctx));
    }
    let message = format!(
        "CREATE INDEX on {table} takes a SHARE lock for the whole index build: every INSERT, UPDATE and DELETE on {table} waits until it finishes."
    );
    if ctx.in_transaction_block() {
        return Some(Finding {
            rule: RULE.id,
            message,
            hint: format!(
                "Use CREATE INDEX CONCURRENTLY, which builds without blocking writes but cannot run {}. {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description()
            ),
            rewrite: None,
        });
    }
    Some(Finding {
        rule: RULE.id,
        message,
        hint: "Use CREATE INDEX CONCURRENTLY, which builds the index without blocking writes."
            .to_owned(),
        rewrite: Some(Rewrite::Concurrently),
    })
}

/// `IF NOT EXISTS` over an INVALID index of that name on the table: PostgreSQL would skip the
/// build and keep the broken index. Outside a transaction block ddlgate drops the leftover
/// concurrently and builds again (a recipe); inside one neither step can run.
fn invalid_leftover(table: &Name, index: &str, schema: &str, ctx: &Context) -> Finding {
    let qualified = crate::sql::quote::name_if_needed(&Name {
        schema: Some(schema.to_owned()),
        name: index.to_owned(),
    });
    let steps = format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {qualified}, then CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {table} …, each on its own",
        crate::sql::quote::ident_if_needed(index)
    );
    let message = format!(
        "An INVALID index {qualified} on {table} is left from a failed concurrent build: with IF NOT EXISTS PostgreSQL finds it and skips the build (\"relation already exists, skipping\"), so the index stays broken — never used by queries, yet still updated by every write."
    );
    if ctx.in_transaction_block() {
        return Finding {
            rule: RULE.id,
            message,
            hint: format!(
                "Drop the leftover and build the index again outside any transaction block: {steps}. Neither can run {}. {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description()
            ),
            rewrite: None,
        };
    }
    Finding {
        rule: RULE.id,
        message,
        hint: format!("ddlgate runs {steps}."),
        rewrite: Some(Rewrite::Steps),
    }
}

/// `ON ONLY` on a table the catalog did not describe: it builds a whole index unless the table
/// is partitioned, and CONCURRENTLY would fail if it is, so no rewrite.
fn only_unconfirmed(table: &Name) -> Finding {
    Finding {
        rule: RULE.id,
        message: format!(
            "CREATE INDEX … ON ONLY {table} builds a normal index under a SHARE lock, blocking every INSERT, UPDATE and DELETE on {table} for the whole build, unless {table} is partitioned — which ddlgate could not confirm from the catalog."
        ),
        hint: format!(
            "If {table} is not partitioned, use CREATE INDEX CONCURRENTLY without ONLY. If it is, run the statement where ddlgate can read the catalog."
        ),
        rewrite: None,
    }
}

/// `CREATE INDEX CONCURRENTLY` on a table the catalog shows partitioned (relkind `p`):
/// PostgreSQL refuses it ("cannot create index on partitioned table … concurrently", 0A000),
/// so the client's intent — an index built without blocking writes — is carried out by the
/// step-wise build (R2). Whatever the table's size: a forwarded statement can only fail.
/// `ON ONLY` with `CONCURRENTLY` is refused by PostgreSQL as well, with nothing to build
/// instead: forwarded, the server's own error explains it.
fn concurrent_on_partitioned(table: &Name, only: bool, ctx: &Context) -> Option<Finding> {
    if only {
        return None;
    }
    let r = ctx
        .catalog?
        .relation_for(table)
        .filter(|r| r.exists && r.kind == Some(crate::catalog::RelKind::PartitionedTable))?;
    let leaves = r.leaf_partitions().count();
    let hint = partitioned_steps(table, leaves, ctx);
    let then = if ctx.in_transaction_block() {
        format!(
            "ddlgate can build it partition by partition, but not {}: the statement is refused.",
            ctx.block_description()
        )
    } else {
        "ddlgate builds it partition by partition instead, each partition's index concurrently."
            .to_owned()
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "PostgreSQL refuses CREATE INDEX CONCURRENTLY on the partitioned table {table} (\"cannot create index on partitioned table concurrently\", SQLSTATE 0A000); {then}"
        ),
        hint,
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    })
}

/// The step-wise build (R2) in words, for the hint; inside a transaction block, with why the
/// steps cannot run there and how to send the statement so that they can.
fn partitioned_steps(table: &Name, leaves: usize, ctx: &Context) -> String {
    let steps = format!(
        "PostgreSQL rejects CREATE INDEX CONCURRENTLY on a partitioned table, so ddlgate builds it in steps: CREATE INDEX … ON ONLY {table} (the parent index, invalid, nothing built), then for each of the {leaves} leaf partition(s) CREATE INDEX CONCURRENTLY on the partition and ALTER INDEX … ATTACH PARTITION to the parent index, which becomes valid after the last attach."
    );
    if ctx.in_transaction_block() {
        format!(
            "{steps} These steps cannot run {}. {OUTSIDE_TRANSACTION_HINT}",
            ctx.block_description()
        )
    } else {
        steps
    }
}

/// A partitioned parent: CONCURRENTLY is rejected there, so no single-statement rewrite; the
/// hint describes the step-wise build (R2).
fn partitioned(table: &Name, r: &Relation, ctx: &Context) -> Finding {
    let leaves = r.leaf_partitions().count();
    let size = r.size_description();
    let hint = partitioned_steps(table, leaves, ctx);
    Finding {
        rule: RULE.id,
        message: format!(
            "CREATE INDEX on the partitioned table {table} ({size}) takes a SHARE lock on it and on every partition for the whole build: every INSERT, UPDATE and DELETE on {table} waits until it finishes."
        ),
        hint,
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{facts, partitioned, table};
    use crate::catalog::{Facts, Thresholds};
    use crate::protocol::TxStatus;
    use crate::rules::OUTSIDE_TRANSACTION_HINT;
    use crate::rules::testing::{self, Ctx, run};

    #[test]
    fn flags_plain_builds_only() {
        testing::table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE INDEX CONCURRENTLY i ON t (x)",
                "create unique index concurrently if not exists i on s.t using gin (x)",
                "CREATE TABLE t (x int)",
            ],
            &[
                "CREATE INDEX i ON ONLY events (tenant_id)",
                "CREATE INDEX i ON t (x)",
                "CREATE UNIQUE INDEX IF NOT EXISTS i ON public.\"T\" (lower(x)) WHERE y",
                "/* c */ create index on t(x)",
            ],
        );
    }

    #[test]
    fn on_only_is_exempt_only_on_a_partitioned_table_the_catalog_confirms() {
        let sql = "CREATE INDEX i ON ONLY events (tenant_id)";
        let with = |relation| Ctx {
            catalog: Some(facts(relation, vec![])),
            ..Ctx::default()
        };
        assert_eq!(
            run(&RULE, sql, &with(partitioned("events", 3, 1000, 1 << 30))),
            None
        );
        // A plain table: ON ONLY builds a normal index, checked (and rewritten) as usual.
        let f = run(&RULE, sql, &with(table("events", 1_000_000, 1 << 30))).expect("flagged");
        assert_eq!(f.rewrite, Some(Rewrite::Concurrently));
        // Facts about another name, or none: flagged, but no CONCURRENTLY (it would fail on a
        // partitioned table).
        for ctx in [with(partitioned("other", 3, 1000, 1 << 30)), Ctx::default()] {
            let f = run(&RULE, sql, &ctx).expect("flagged");
            assert_eq!(f.rewrite, None);
            assert!(f.message.contains("could not confirm"), "{}", f.message);
        }
    }

    #[test]
    fn rewrites_only_outside_transaction_blocks() {
        let f = run(&RULE, "CREATE INDEX i ON t (x)", &Ctx::default()).expect("flagged");
        assert_eq!(f.rewrite, Some(Rewrite::Concurrently));
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
            let f = run(&RULE, "CREATE INDEX i ON t (x)", &ctx).expect("flagged");
            assert_eq!(f.rewrite, None);
            assert!(f.hint.contains("disable_ddl_transaction!"), "{}", f.hint);
        }
    }

    #[test]
    fn if_not_exists_over_an_invalid_leftover_is_rebuilt_or_blocked() {
        use crate::catalog::IndexFacts;
        use TxStatus::{Idle, InTransaction};
        let leftover = |asked: &str, exists, on_table, valid| IndexFacts {
            asked: asked.to_owned(),
            exists,
            on_table,
            valid,
            key_columns: Vec::new(),
        };
        let with = |relation: Relation, index: Option<IndexFacts>, tx| Ctx {
            tx,
            catalog: Some(Facts {
                index,
                ..facts(relation, vec![])
            }),
            ..Ctx::default()
        };
        let big = table("inv", 2_000_000, 400 << 20);
        let small = table("inv", 20, 16 << 10);
        let invalid = Some(leftover("inv_x", true, true, false));
        let plain = "CREATE INDEX IF NOT EXISTS inv_x ON inv (x)";
        let unique_cic = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS inv_x ON inv (x)";
        // (case, sql, context, None = passes / Some(rewrite offered), about the leftover)
        type Case<'a> = (&'a str, &'a str, Ctx, Option<Option<Rewrite>>, bool);
        let cases: Vec<Case> = vec![
            (
                "invalid, plain, outside",
                plain,
                with(big.clone(), invalid.clone(), Idle),
                Some(Some(Rewrite::Steps)),
                true,
            ),
            (
                "invalid, CIC, outside",
                unique_cic,
                with(big.clone(), invalid.clone(), Idle),
                Some(Some(Rewrite::Steps)),
                true,
            ),
            (
                "invalid, small table: still rebuilt",
                plain,
                with(small.clone(), invalid.clone(), Idle),
                Some(Some(Rewrite::Steps)),
                true,
            ),
            (
                "invalid, plain, in tx",
                plain,
                with(big.clone(), invalid.clone(), InTransaction),
                Some(None),
                true,
            ),
            (
                "invalid, CIC, in tx",
                unique_cic,
                with(big.clone(), invalid.clone(), InTransaction),
                Some(None),
                true,
            ),
            // A valid index of that name: unchanged (CONCURRENTLY rewrite for the plain form,
            // nothing for CIC).
            (
                "valid, plain",
                plain,
                with(big.clone(), Some(leftover("inv_x", true, true, true)), Idle),
                Some(Some(Rewrite::Concurrently)),
                false,
            ),
            (
                "valid, CIC",
                unique_cic,
                with(big.clone(), Some(leftover("inv_x", true, true, true)), Idle),
                None,
                false,
            ),
            // The name belongs to something else (another table's index, a table): unchanged.
            (
                "other table's",
                unique_cic,
                with(
                    big.clone(),
                    Some(leftover("inv_x", true, false, false)),
                    Idle,
                ),
                None,
                false,
            ),
            (
                "absent",
                unique_cic,
                with(
                    big.clone(),
                    Some(leftover("inv_x", false, false, false)),
                    Idle,
                ),
                None,
                false,
            ),
            // Facts about another name, no IF NOT EXISTS, no facts: unchanged.
            (
                "facts for another name",
                unique_cic,
                with(
                    big.clone(),
                    Some(leftover("other", true, true, false)),
                    Idle,
                ),
                None,
                false,
            ),
            (
                "no IF NOT EXISTS",
                "CREATE INDEX CONCURRENTLY inv_x ON inv (x)",
                with(big.clone(), invalid.clone(), Idle),
                None,
                false,
            ),
            ("no facts", unique_cic, Ctx::default(), None, false),
            // A partitioned table has no concurrent build: CONCURRENTLY there gets the
            // step-wise build, which drops each partition's INVALID leftover itself.
            (
                "partitioned",
                unique_cic,
                with(partitioned("inv", 2, 1000, 1 << 30), invalid.clone(), Idle),
                Some(Some(Rewrite::Steps)),
                false,
            ),
        ];
        for (case, sql, ctx, expected, about_leftover) in cases {
            let f = run(&RULE, sql, &ctx);
            assert_eq!(f.as_ref().map(|f| f.rewrite), expected, "{case}");
            if let Some(f) = f {
                assert_eq!(
                    f.message.contains("INVALID index public.inv_x"),
                    about_leftover,
                    "{case}: {}",
                    f.message
                );
                if about_leftover {
                    assert!(
                        f.hint
                            .contains("DROP INDEX CONCURRENTLY IF EXISTS public.inv_x"),
                        "{case}: {}",
                        f.hint
                    );
                }
            }
        }
    }

    fn on(relation: Relation, tx: TxStatus) -> Ctx {
        Ctx {
            tx,
            catalog: Some(facts(relation, vec![])),
            ..Ctx::default()
        }
    }

    #[test]
    fn catalog_size_and_partitioning_decide() {
        use TxStatus::{Idle, InTransaction};
        let small = table("t", 200, 64 << 10);
        let big = table("t", 2_000_000, 400 << 20);
        let unknown_rows = Relation {
            rows: None,
            ..small.clone()
        };
        let missing = Relation::missing(Name::bare("t"));
        let tiny_tree = partitioned("t", 3, 30, 48 << 10);
        let big_tree = partitioned("t", 3, 9_000_000, 3 << 30);
        let strict = Ctx {
            catalog: Some(Facts {
                thresholds: Thresholds {
                    small_table_rows: 100,
                    ..Thresholds::default()
                },
                ..facts(small.clone(), vec![])
            }),
            ..Ctx::in_tx()
        };
        // (context, None = passes / Some(rewrite offered))
        let cases: Vec<(&str, Ctx, Option<Option<Rewrite>>)> = vec![
            ("small, in tx", on(small.clone(), InTransaction), None),
            ("small, outside", on(small.clone(), Idle), None),
            ("big, in tx", on(big.clone(), InTransaction), Some(None)),
            (
                "big, outside",
                on(big, Idle),
                Some(Some(Rewrite::Concurrently)),
            ),
            (
                "unknown rows, in tx",
                on(unknown_rows, InTransaction),
                Some(None),
            ),
            (
                "missing, in tx",
                on(missing.clone(), InTransaction),
                Some(None),
            ),
            (
                "missing, outside",
                on(missing, Idle),
                Some(Some(Rewrite::Concurrently)),
            ),
            (
                "tiny tree, in tx",
                on(tiny_tree.clone(), InTransaction),
                None,
            ),
            ("tiny tree, outside", on(tiny_tree, Idle), None),
            (
                "big tree, outside",
                on(big_tree.clone(), Idle),
                Some(Some(Rewrite::Steps)),
            ),
            ("big tree, in tx", on(big_tree, InTransaction), Some(None)),
            ("over a stricter row limit", strict, Some(None)),
        ];
        for (case, ctx, expected) in cases {
            let got = run(&RULE, "CREATE INDEX i ON t (x)", &ctx);
            assert_eq!(got.as_ref().map(|f| f.rewrite), expected, "{case}");
        }
    }

    #[test]
    fn partitioned_parents_get_the_step_wise_recipe() {
        let tree = partitioned("events", 4, 9_000_000, 3 << 30);
        let f = run(
            &RULE,
            "CREATE INDEX events_tenant_idx ON events (tenant_id)",
            &on(tree.clone(), TxStatus::Idle),
        )
        .expect("flagged");
        assert_eq!(f.rewrite, Some(Rewrite::Steps));
        assert!(
            f.message.contains("partitioned table events") && f.message.contains("every partition"),
            "{}",
            f.message
        );
        for part in [
            "rejects CREATE INDEX CONCURRENTLY on a partitioned table",
            "ON ONLY events",
            "each of the 4 leaf partition(s) CREATE INDEX CONCURRENTLY",
            "ATTACH PARTITION",
        ] {
            assert!(f.hint.contains(part), "{part}: {}", f.hint);
        }
        let f = run(
            &RULE,
            "CREATE INDEX events_tenant_idx ON events (tenant_id)",
            &on(tree, TxStatus::InTransaction),
        )
        .expect("flagged");
        assert!(
            f.hint.contains("ON ONLY events") && f.hint.contains("disable_ddl_transaction!"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn concurrently_on_a_partitioned_parent_becomes_the_step_wise_build() {
        use TxStatus::{Idle, InTransaction};
        let tree = partitioned("ev", 3, 30_000, 3 << 20);
        let tiny_tree = partitioned("ev", 2, 10, 16 << 10);
        let plain = table("ev", 2_000_000, 400 << 20);
        let mut new_tree = on(tree.clone(), Idle);
        new_tree.created.insert(Name::bare("ev"));
        // (case, SQL, context, None = passes / Some(rewrite offered))
        let cases: Vec<(&str, &str, Ctx, Option<Option<Rewrite>>)> = vec![
            (
                "partitioned, outside",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                on(tree.clone(), Idle),
                Some(Some(Rewrite::Steps)),
            ),
            (
                "IF NOT EXISTS, unique",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ev_id ON ev (id, tenant)",
                on(tree.clone(), Idle),
                Some(Some(Rewrite::Steps)),
            ),
            // PostgreSQL refuses it whatever the size: the steps are the only way it runs.
            (
                "tiny tree",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                on(tiny_tree, Idle),
                Some(Some(Rewrite::Steps)),
            ),
            (
                "created in this session's unit",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                new_tree,
                Some(Some(Rewrite::Steps)),
            ),
            (
                "partitioned, in tx",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                on(tree.clone(), InTransaction),
                Some(None),
            ),
            (
                "multi-statement query",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                Ctx {
                    shares_unit: true,
                    ..on(tree.clone(), Idle)
                },
                Some(None),
            ),
            // ON ONLY … CONCURRENTLY: nothing to build instead; the server's error stands.
            (
                "ON ONLY",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ONLY ev (tenant)",
                on(tree.clone(), Idle),
                None,
            ),
            (
                "plain table",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                on(plain, Idle),
                None,
            ),
            (
                "facts about another table",
                "CREATE INDEX CONCURRENTLY ev_tenant ON other (tenant)",
                on(tree.clone(), Idle),
                None,
            ),
            (
                "no catalog",
                "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
                Ctx::default(),
                None,
            ),
        ];
        for (case, sql, ctx, expected) in cases {
            let got = run(&RULE, sql, &ctx);
            assert_eq!(got.as_ref().map(|f| f.rewrite), expected, "{case}");
        }
        let f = run(
            &RULE,
            "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
            &on(tree.clone(), Idle),
        )
        .expect("flagged");
        for part in [
            "PostgreSQL refuses CREATE INDEX CONCURRENTLY on the partitioned table ev",
            "0A000",
            "partition by partition instead",
        ] {
            assert!(f.message.contains(part), "{part}: {}", f.message);
        }
        assert!(f.hint.contains("ON ONLY ev"), "{}", f.hint);
        let f = run(
            &RULE,
            "CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)",
            &on(tree, InTransaction),
        )
        .expect("flagged");
        assert!(
            f.message.contains("but not inside a transaction block")
                && f.hint.contains("ON ONLY ev")
                && f.hint.contains("ATTACH PARTITION")
                && f.hint.ends_with(OUTSIDE_TRANSACTION_HINT),
            "{} / {}",
            f.message,
            f.hint
        );
    }

    #[test]
    fn facts_about_another_table_are_ignored() {
        let ctx = on(table("other", 1, 8192), TxStatus::InTransaction);
        assert!(run(&RULE, "CREATE INDEX i ON t (x)", &ctx).is_some());
        let ctx = on(partitioned("other", 2, 1, 1), TxStatus::Idle);
        assert_eq!(
            run(&RULE, "CREATE INDEX i ON t (x)", &ctx).and_then(|f| f.rewrite),
            Some(Rewrite::Concurrently)
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        // The set holds names as the statement writes them (`crate::created`).
        ctx.created.insert(Name::new(Some("public"), "fresh"));
        assert_eq!(run(&RULE, "CREATE INDEX i ON fresh (x)", &ctx), None);
        assert_eq!(run(&RULE, "CREATE INDEX i ON public.fresh (x)", &ctx), None);
        assert!(run(&RULE, "CREATE INDEX i ON other (x)", &ctx).is_some());
    }
}
