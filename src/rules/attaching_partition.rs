//! `attaching-partition`: `ALTER TABLE parent ATTACH PARTITION p FOR VALUES …`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on `p` — and on the parent's DEFAULT partition, if it has one —
//!   while every row is scanned to prove it fits the bounds, unless a valid CHECK constraint
//!   already proves it; the parent itself takes SHARE UPDATE EXCLUSIVE from PostgreSQL 12
//!   (ACCESS EXCLUSIVE before). Every query on the scanned tables waits for the scan.
//! - **Safe alternative (R14):** `ADD CONSTRAINT … CHECK (<bounds>) NOT VALID` on `p`,
//!   `VALIDATE CONSTRAINT` in its own transaction, then ATTACH (no scan) and drop the CHECK;
//!   with a DEFAULT partition, first add a validated CHECK to it that excludes the new range.
//! - **Rewrite:** no. Whether a matching valid CHECK exists needs the catalog; once ddlgate
//!   reads it, those ATTACHes will pass. Default: warn.
//! - **Not flagged:** a partition and parent both created earlier in the same transaction
//!   (then the parent's DEFAULT partition is new too).
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the attached table and the parent's whole tree (any DEFAULT partition included) shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-ATTACH-PARTITION>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "attaching-partition",
    lock: "ACCESS EXCLUSIVE on the partition and the DEFAULT partition for a validation scan (on the parent too before PostgreSQL 12)",
    summary: "ALTER TABLE … ATTACH PARTITION",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTable {
        name: parent, ops, ..
    } = &ddl.kind
    else {
        return None;
    };
    let partition = ops.iter().find_map(|op| match op {
        AlterOp::AttachPartition { partition }
            if !(ctx.is_new(parent) && ctx.is_new(partition)) =>
        {
            Some(partition)
        }
        _ => None,
    })?;
    // The small-table allowance: the scanned partition and the parent's tree (which holds
    // any DEFAULT partition, also scanned) both shown small.
    if ctx.is_small(parent) && ctx.is_small_referenced(partition) {
        return None;
    }
    let parent_lock = if ctx.at_least(12) {
        String::new()
    } else {
        format!(" Before PostgreSQL 12 the whole of {parent} is locked ACCESS EXCLUSIVE meanwhile.")
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "ATTACH PARTITION {partition} scans {partition} (and {parent}'s DEFAULT partition, if any) under an ACCESS EXCLUSIVE lock unless a valid CHECK already proves the bounds: every query on them waits for the scan.{parent_lock}"
        ),
        hint: format!(
            "First ALTER TABLE {partition} ADD CONSTRAINT … CHECK (<partition bounds, with IS NOT NULL>) NOT VALID and VALIDATE CONSTRAINT in its own transaction; then ATTACH skips the scan, and the CHECK can be dropped. With a DEFAULT partition, add a validated CHECK excluding the new range to it too."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    const ATTACH: &str = "ALTER TABLE measurements ATTACH PARTITION m_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')";

    #[test]
    fn flags_attach() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE m DETACH PARTITION p",
                "CREATE TABLE p PARTITION OF m DEFAULT",
                "ALTER TABLE p ADD CONSTRAINT b CHECK (ts >= '2027-01-01') NOT VALID",
            ],
            &[
                ATTACH,
                "alter table s.m attach partition s.p default",
                "ALTER TABLE m OWNER TO bob, ATTACH PARTITION p FOR VALUES IN (1)",
            ],
        );
    }

    #[test]
    fn parent_lock_is_mentioned_before_pg_12() {
        let f = run(&RULE, ATTACH, &Ctx::version(110_000)).expect("flagged");
        assert!(f.message.contains("Before PostgreSQL 12"), "{}", f.message);
        let f = run(&RULE, ATTACH, &Ctx::version(120_000)).expect("flagged");
        assert!(
            !f.message.contains("Before PostgreSQL 12") && f.message.contains("m_2027"),
            "{}",
            f.message
        );
    }

    #[test]
    fn only_all_new_tables_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh_parent"));
        ctx.created.insert(Name::bare("fresh_part"));
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh_parent ATTACH PARTITION fresh_part DEFAULT",
                &ctx
            ),
            None
        );
        // an existing table attached to a new parent is still scanned
        assert!(
            run(
                &RULE,
                "ALTER TABLE fresh_parent ATTACH PARTITION old DEFAULT",
                &ctx
            )
            .is_some()
        );
        // a new partition attached to an existing parent: its DEFAULT partition is scanned
        assert!(
            run(
                &RULE,
                "ALTER TABLE measurements ATTACH PARTITION fresh_part DEFAULT",
                &ctx
            )
            .is_some()
        );
    }
}
