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
//! - **Not flagged:** parents created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DETACH-PARTITION>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "require-concurrent-partition-detach",
    lock: "ACCESS EXCLUSIVE on the partitioned parent: blocks every read and write on the whole table",
    summary: "ALTER TABLE … DETACH PARTITION without CONCURRENTLY",
    default_action: Action::Rewrite,
    check,
};

const DEFAULT_PARTITION_CAVEAT: &str = "CONCURRENTLY is refused if the parent has a DEFAULT partition; if it is interrupted, finish with DETACH PARTITION … FINALIZE.";

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
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
}
