//! `prefer-repack`: `VACUUM FULL` and `CLUSTER`, which rebuild a table in place.
//!
//! - **Lock:** ACCESS EXCLUSIVE for a full rewrite of the table and its indexes — every read and
//!   write waits for the whole rewrite. Without a table they process every table in the
//!   database (CLUSTER: every previously clustered table) one after another.
//! - **Safe alternative (R18):** `pg_repack`, which rebuilds online and holds ACCESS EXCLUSIVE
//!   only briefly at the start and end; on PostgreSQL 19, `REPACK (CONCURRENTLY) t [USING INDEX
//!   i]`.
//! - **Rewrite:** no.
//! - **Not flagged:** plain `VACUUM` (SHARE UPDATE EXCLUSIVE), and a table created earlier in the
//!   same transaction (only CLUSTER can run in one).
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when one named table, shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-cluster.html>,
//! <https://www.postgresql.org/docs/current/sql-vacuum.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "prefer-repack",
    lock: "ACCESS EXCLUSIVE for a full table rewrite: blocks every read and write",
    summary: "VACUUM FULL or CLUSTER",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (what, tables): (&str, Vec<&Name>) = match &ddl.kind {
        DdlKind::Vacuum { full: true, tables } => ("VACUUM FULL", tables.iter().collect()),
        DdlKind::Cluster { table } => ("CLUSTER", table.iter().collect()),
        _ => return None,
    };
    // The small-table allowance: one named table, shown small.
    if let [table] = tables.as_slice()
        && ctx.is_small(table)
    {
        return None;
    }
    let message = if tables.is_empty() {
        format!(
            "{what} without a table rewrites every eligible table in the database, one after another, each under an ACCESS EXCLUSIVE lock: every read and write on the table being rewritten waits."
        )
    } else {
        let list = ctx.existing_tables(tables.iter().copied())?;
        format!(
            "{what} rewrites {list} under an ACCESS EXCLUSIVE lock: every read and write on {list} waits for the whole rewrite."
        )
    };
    let hint = if ctx.server_version.is_some_and(|_| ctx.at_least(19)) {
        "Use REPACK (CONCURRENTLY) table [USING INDEX index], which rebuilds without blocking reads or writes."
    } else {
        "Use pg_repack, which rebuilds the table online and locks it only briefly (on PostgreSQL 19: REPACK (CONCURRENTLY) table)."
    };
    Some(Finding {
        rule: RULE.id,
        message,
        hint: hint.to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};
    use crate::sql::statement::Understood;

    // sqlparser 0.64 rejects CLUSTER and `VACUUM FULL` reaches the token classifier; build the
    // model directly.
    fn ddl(kind: DdlKind) -> Ddl {
        Ddl {
            kind,
            understood: Understood::Fallback,
        }
    }

    fn vacuum(full: bool, tables: &[&str]) -> Ddl {
        ddl(DdlKind::Vacuum {
            full,
            tables: tables.iter().map(|t| Name::bare(t)).collect(),
        })
    }

    fn cluster(table: Option<&str>) -> Ddl {
        ddl(DdlKind::Cluster {
            table: table.map(Name::bare),
        })
    }

    #[test]
    fn flags_vacuum_full_and_cluster() {
        let ctx = Ctx::default();
        let check = |d: &Ddl| (RULE.check)(d, &ctx.get());
        assert_eq!(check(&vacuum(false, &["t"])), None);
        assert_eq!(check(&vacuum(false, &[])), None);
        let f = check(&vacuum(true, &["events"])).expect("flagged");
        assert!(
            f.message.starts_with("VACUUM FULL rewrites events"),
            "{}",
            f.message
        );
        assert!(f.hint.contains("pg_repack"), "{}", f.hint);
        assert!(
            check(&vacuum(true, &[]))
                .expect("flagged")
                .message
                .contains("every eligible table")
        );
        assert!(
            check(&cluster(Some("events")))
                .expect("flagged")
                .message
                .starts_with("CLUSTER rewrites events")
        );
        assert!(check(&cluster(None)).is_some());
        table(
            &RULE,
            &ctx,
            &[
                "ANALYZE t",
                "CREATE INDEX i ON t (x)",
                "ALTER TABLE t SET LOGGED",
            ],
            &[],
        );
    }

    #[test]
    fn hint_mentions_repack_concurrently_on_pg_19() {
        let ctx = Ctx::version(190_000);
        let f = (RULE.check)(&cluster(Some("t")), &ctx.get()).expect("flagged");
        assert!(
            f.hint.starts_with("Use REPACK (CONCURRENTLY)"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!((RULE.check)(&cluster(Some("fresh")), &ctx.get()), None);
        assert!((RULE.check)(&cluster(Some("other")), &ctx.get()).is_some());
    }
}
