//! `ban-drop-table`: `DROP TABLE` of a table that existed before the transaction.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the table, and on the tables it references through foreign
//!   keys (their FK triggers are dropped); dropping a partition also locks its parent.
//! - **Risk:** destructive and irreversible; running code that still uses the table fails, and
//!   the locks on the referenced tables queue their traffic while the DROP waits.
//! - **Safe alternative:** stop the application using the table, drop its foreign keys first
//!   (each a brief lock), then drop it under a short `lock_timeout`; detach a partition
//!   CONCURRENTLY before dropping it.
//! - **Partitions:** when the catalog shows a partition, the message says whether ddlgate
//!   detaches it concurrently first (`require-concurrent-partition-detach` runs those steps)
//!   or exactly why it cannot (several tables, CASCADE, a DEFAULT partition, PostgreSQL < 14,
//!   a transaction block). The warning stands either way: the data is destroyed.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-droptable.html>

use super::require_concurrent_partition_detach::{DropPartition, drop_partition};
use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-drop-table",
    lock: "ACCESS EXCLUSIVE on the table and on the tables it references by foreign key",
    summary: "DROP TABLE of an existing table",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::DropTable { names, cascade } = &ddl.kind else {
        return None;
    };
    let list = ctx.existing_tables(names.iter())?;
    let cascaded = if *cascade {
        " CASCADE also drops every view and foreign key that depends on it."
    } else {
        ""
    };
    // A partition: its parent is locked too; detached concurrently first when possible
    // (require-concurrent-partition-detach runs that), else say exactly why not.
    let partition = match drop_partition(names, *cascade, ctx) {
        DropPartition::NotAPartition => String::new(),
        DropPartition::Steps { partition, of } => format!(
            " {partition} is a partition of {}: ddlgate detaches it CONCURRENTLY before dropping it, so {} is not locked exclusively.",
            of.parent, of.parent
        ),
        DropPartition::Impossible { partition, of, why } => format!(
            " {partition} is a partition of {parent}: dropping it takes ACCESS EXCLUSIVE on {parent} too, blocking every query on the whole partitioned table while it waits and runs. ddlgate cannot detach it concurrently first: {why}.",
            parent = of.parent
        ),
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "DROP TABLE {list} destroys the data and breaks any code still using it; it takes ACCESS EXCLUSIVE on the tables it references by foreign key too, queueing their traffic while it waits.{cascaded}{partition}"
        ),
        hint: "Stop the application using the table first, drop its foreign keys in separate short statements, then drop it under a short lock_timeout (detach a partition CONCURRENTLY first).".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_drop_table() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DROP INDEX i",
                "DROP VIEW v",
                "TRUNCATE t",
                "ALTER TABLE t DROP COLUMN c",
            ],
            &[
                "DROP TABLE t",
                "drop table if exists s.t",
                "DROP TABLE a, b CASCADE",
            ],
        );
        let f = run(&RULE, "DROP TABLE a, b CASCADE", &Ctx::default()).expect("flagged");
        assert!(
            f.message.contains("a, b") && f.message.contains("CASCADE"),
            "{}",
            f.message
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        // The set holds names as the statement writes them (`crate::created`).
        ctx.created.insert(Name::new(Some("public"), "fresh"));
        assert_eq!(run(&RULE, "DROP TABLE fresh", &ctx), None);
        assert_eq!(run(&RULE, "DROP TABLE public.fresh", &ctx), None);
        let f = run(&RULE, "DROP TABLE fresh, old", &ctx).expect("flagged");
        assert!(f.message.starts_with("DROP TABLE old "), "{}", f.message);
    }
}
