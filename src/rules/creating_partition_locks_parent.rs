//! `creating-partition-locks-parent`: `CREATE TABLE p PARTITION OF parent …`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the parent: every query on the whole partitioned table —
//!   reads included — waits while the CREATE waits for the lock and runs.
//! - **Safe alternative (R15 + R14):** create the table standalone with
//!   `CREATE TABLE p (LIKE parent INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, add a CHECK
//!   matching the partition bounds `NOT VALID` and `VALIDATE` it, then
//!   `ALTER TABLE parent ATTACH PARTITION p FOR VALUES …` (SHARE UPDATE EXCLUSIVE on the parent
//!   from PostgreSQL 12, no scan thanks to the CHECK) and drop the CHECK.
//! - **Rewrite:** no — not yet (a split into several statements; LIKE + ATTACH is not exactly
//!   equivalent for identity columns and indexes). Default: warn.
//! - **Not flagged:** parents created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-createtable.html#SQL-CREATETABLE-PARTITION>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "creating-partition-locks-parent",
    lock: "ACCESS EXCLUSIVE on the partitioned parent: blocks every read and write on the whole table",
    summary: "CREATE TABLE … PARTITION OF an existing parent",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::CreateTable {
        name,
        partition_of: Some(parent),
        ..
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(parent) {
        return None;
    }
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Creating {name} as a partition of {parent} takes an ACCESS EXCLUSIVE lock on {parent}: every query on the whole partitioned table, reads included, waits while it waits and runs."
        ),
        hint: format!(
            "Create {name} standalone (CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)), add a CHECK matching the partition bounds NOT VALID and VALIDATE it, then ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES … (no scan thanks to the CHECK) and drop the CHECK."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_partition_of() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE TABLE t (c int)",
                "CREATE TABLE m (ts timestamptz) PARTITION BY RANGE (ts)",
                "CREATE TABLE p (LIKE m INCLUDING DEFAULTS)",
            ],
            &[
                "CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
                "create table s.m_default partition of s.m default",
            ],
        );
        let f = run(
            &RULE,
            "CREATE TABLE m_2027 PARTITION OF measurements FOR VALUES FROM (1) TO (2)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("m_2027") && f.hint.contains("LIKE measurements"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn parents_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "CREATE TABLE p PARTITION OF fresh DEFAULT", &ctx),
            None
        );
        assert!(run(&RULE, "CREATE TABLE p PARTITION OF other DEFAULT", &ctx).is_some());
    }
}
