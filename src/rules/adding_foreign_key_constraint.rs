//! `adding-foreign-key-constraint`: a validated foreign key — `ADD [CONSTRAINT n] FOREIGN KEY
//! … REFERENCES r` without `NOT VALID`, or `ADD COLUMN … REFERENCES r`.
//!
//! - **Lock:** SHARE ROW EXCLUSIVE on the table *and* on the referenced table `r` while every
//!   row is checked: INSERT, UPDATE and DELETE on both wait for the whole scan (the inline
//!   `ADD COLUMN … REFERENCES` form holds ACCESS EXCLUSIVE on the table meanwhile).
//! - **Safe alternative (R5):** `ADD CONSTRAINT … FOREIGN KEY … NOT VALID` (brief lock on both
//!   tables, no scan), commit, then `VALIDATE CONSTRAINT` in a separate transaction, which
//!   scans under SHARE UPDATE EXCLUSIVE on the table and ROW SHARE on `r`, so writes continue.
//!   Before PostgreSQL 18 `NOT VALID` foreign keys are rejected on partitioned tables. There,
//!   when the catalog shows the table partitioned (`relkind = 'p'`), the safe form is per
//!   partition: the constraint (same name) `NOT VALID` then `VALIDATE` on each leaf partition,
//!   then `ADD CONSTRAINT` on the parent, which attaches the partitions' validated constraints
//!   without scanning them (`tryAttachPartitionForeignKey`); the hint says exactly that.
//! - **Tables created in the same transaction:** a foreign key between two of them passes. A
//!   foreign key from a new table to an existing one takes the same SHARE ROW EXCLUSIVE lock on
//!   the existing table as `CREATE TABLE … REFERENCES` (which passes, its lock under the
//!   guard), so it passes too while its validation scan is short: while the new table is, by
//!   the catalog read before the statement, under `catalog.small_table_bytes` (and, if it was
//!   analyzed, `small_table_rows`), or was created empty earlier in the same message with
//!   nothing written since. Filled by a big `INSERT … SELECT` — or its size unknown, as after
//!   any write earlier in the same message — the scan holds the existing table's lock for its
//!   whole length, and the finding says so.
//! - **Rewrite:** no (the recipe spans two transactions).
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the referencing table and every referenced table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>

use super::{Action, Context, Finding, Rewrite, Rule, steps_hint};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "adding-foreign-key-constraint",
    lock: "SHARE ROW EXCLUSIVE on the table and the referenced table for the validation scan: blocks writes to both",
    summary: "ADD FOREIGN KEY without NOT VALID, or ADD COLUMN … REFERENCES",
    default_action: Action::Rewrite,
    check,
};

/// One offending foreign key.
struct Fk<'a> {
    references: &'a Name,
    /// The constraint name, when the statement gives one.
    constraint: Option<&'a str>,
    /// The column, for the inline `ADD COLUMN … REFERENCES` form.
    column: Option<&'a str>,
}

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTable {
        name: table, ops, ..
    } = &ddl.kind
    else {
        return None;
    };
    let new_table = ctx.is_new(table);
    if new_table && short_scan(table, ctx) {
        return None;
    }
    let fk = ops
        .iter()
        .flat_map(foreign_keys)
        .find(|fk| !(new_table && ctx.is_new(fk.references)))?;
    let r = fk.references;
    // The small-table allowance: validation scans the referencing table and probes the
    // referenced one, so every table involved must be shown small.
    if !new_table
        && ctx.is_small(table)
        && ops
            .iter()
            .flat_map(foreign_keys)
            .all(|fk| ctx.is_small_referenced(fk.references))
    {
        return None;
    }
    if new_table {
        return Some(Finding {
            rule: RULE.id,
            message: format!(
                "{table} was created in this transaction but is not known to be small ({size}): validating the foreign key scans it while holding SHARE ROW EXCLUSIVE on the existing table {r}, so every INSERT, UPDATE and DELETE on {r} waits for the scan (and until COMMIT).",
                size = ctx
                    .catalog
                    .and_then(|f| f.relation_for(table))
                    .filter(|t| t.exists)
                    .map_or_else(|| "size unknown".to_owned(), |t| t.size_description())
            ),
            hint: format!(
                "Add the foreign key right after CREATE TABLE, before filling {table} (or in CREATE TABLE itself with REFERENCES), or add it NOT VALID and run VALIDATE CONSTRAINT in a later transaction."
            ),
            rewrite: None,
        });
    }
    // Before PostgreSQL 18 NOT VALID is refused on a partitioned table: the hint names what
    // works on this version instead.
    let partitioned = ctx.server_version.is_some_and(|v| v < 180_000)
        && ctx
            .catalog
            .and_then(|f| f.relation_for(table))
            .is_some_and(|r| r.exists && r.kind == Some(crate::catalog::RelKind::PartitionedTable));
    if partitioned {
        let name = fk.constraint.map_or_else(
            || "the constraint (named as PostgreSQL would name it on the parent)".to_owned(),
            |n| n.to_owned(),
        );
        let first = fk.column.map_or_else(String::new, |c| {
            format!("Add {c} without REFERENCES first (it reaches every partition). ")
        });
        return Some(Finding {
            rule: RULE.id,
            message: format!(
                "Adding a foreign key from the partitioned table {table} to {r} checks every row of every partition while holding SHARE ROW EXCLUSIVE on them and on {r}: every INSERT, UPDATE and DELETE on {table} and {r} waits for the whole scan. PostgreSQL before 18 does not accept NOT VALID on a partitioned table."
            ),
            hint: steps_hint(
                format!(
                    "{first}On each leaf partition, ADD CONSTRAINT {name} with the same FOREIGN KEY NOT VALID (a brief lock, no scan) and VALIDATE CONSTRAINT {name} in a separate transaction (writes continue); then add the constraint on {table} itself: PostgreSQL attaches the partitions' validated constraints instead of scanning again, so that step is a brief lock."
                ),
                ctx,
            ),
            rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
        });
    }
    let (message, hint) = match fk.column {
        Some(column) => (
            format!(
                "Adding {table}.{column} with REFERENCES {r} validates the foreign key while holding ACCESS EXCLUSIVE on {table} and SHARE ROW EXCLUSIVE on {r}: every query on {table} and every write to {r} waits for the scan."
            ),
            format!(
                "Add {column} without REFERENCES, then ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey FOREIGN KEY ({column}) REFERENCES {r} NOT VALID, commit, and run ALTER TABLE {table} VALIDATE CONSTRAINT {table}_{column}_fkey in a separate transaction; it scans without blocking writes."
            ),
        ),
        None => {
            let name = fk.constraint.unwrap_or("<name>");
            (
                format!(
                    "Adding a foreign key from {table} to {r} checks every row of {table} while holding SHARE ROW EXCLUSIVE on both tables: every INSERT, UPDATE and DELETE on {table} and {r} waits for the whole scan."
                ),
                format!(
                    "Add the constraint with NOT VALID (a brief lock, no scan), commit, then run ALTER TABLE {table} VALIDATE CONSTRAINT {name} in a separate transaction; it scans without blocking writes."
                ),
            )
        }
    };
    Some(Finding {
        rule: RULE.id,
        message,
        hint: steps_hint(hint, ctx),
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    })
}

/// The new table's validation scan is short, by the facts read (or known) before the
/// statement: empty, or under the small-table limits. Unknown is not short.
fn short_scan(table: &Name, ctx: &Context) -> bool {
    let Some(facts) = ctx.catalog else {
        return false;
    };
    let t = &facts.thresholds;
    facts.relation_for(table).is_some_and(|r| {
        r.exists
            && (r.bytes == Some(0)
                || (r.bytes.is_some_and(|b| b < t.small_table_bytes)
                    // `reltuples` is -1 (unknown) until the table is analyzed; the size in
                    // bytes bounds the scan then.
                    && r.rows.is_none_or(|n| n == 0 || n < t.small_table_rows)))
    })
}

fn foreign_keys(op: &AlterOp) -> Vec<Fk<'_>> {
    match op {
        AlterOp::AddConstraint(AddConstraint {
            name,
            kind: ConstraintKind::ForeignKey { references },
            not_valid: false,
            ..
        }) => {
            vec![Fk {
                references,
                constraint: name.as_deref(),
                column: None,
            }]
        }
        AlterOp::AddColumn(c) => c
            .constraints
            .iter()
            .filter_map(|k| match k {
                ConstraintKind::ForeignKey { references } => Some(Fk {
                    references,
                    constraint: None,
                    column: Some(&c.name),
                }),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};

    #[test]
    fn flags_validated_foreign_keys() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id) NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT fk",
                "ALTER TABLE orders ADD COLUMN c int",
                "ALTER TABLE orders ADD CONSTRAINT ck CHECK (c > 0)",
                "CREATE TABLE orders (c int REFERENCES customers (id))",
            ],
            &[
                "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id)",
                "alter table s.orders add foreign key (c) references s.customers",
                "ALTER TABLE orders ADD COLUMN c int REFERENCES customers (id)",
                "ALTER TABLE orders ADD COLUMN c int NOT NULL DEFAULT 0 REFERENCES customers (id) ON DELETE CASCADE",
                "ALTER TABLE orders ADD CONSTRAINT a FOREIGN KEY (a) REFERENCES x (id) NOT VALID, ADD CONSTRAINT b FOREIGN KEY (b) REFERENCES y (id)",
            ],
        );
    }

    #[test]
    fn messages_name_both_tables() {
        let f = run(
            &RULE,
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("orders") && f.message.contains("customers"),
            "{}",
            f.message
        );
        assert!(
            f.hint.contains("NOT VALID") && f.hint.contains("VALIDATE CONSTRAINT fk"),
            "{}",
            f.hint
        );
        let f = run(
            &RULE,
            "ALTER TABLE orders ADD COLUMN customer_id int REFERENCES customers",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.hint.contains(
                "orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers NOT VALID"
            ),
            "{}",
            f.hint
        );
        // the multi-op case reports the offending (second) constraint
        let f = run(&RULE, "ALTER TABLE o ADD CONSTRAINT a FOREIGN KEY (a) REFERENCES x NOT VALID, ADD CONSTRAINT b FOREIGN KEY (b) REFERENCES y", &Ctx::default())
            .expect("flagged");
        assert!(
            f.message.contains("from o to y") && f.hint.contains("VALIDATE CONSTRAINT b"),
            "{} / {}",
            f.message,
            f.hint
        );
    }

    #[test]
    fn inside_a_transaction_the_hint_names_the_tools_way_out() {
        let sql = "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id)";
        let f = run(&RULE, sql, &Ctx::in_tx()).expect("flagged");
        assert_eq!(f.rewrite, None);
        assert!(
            f.hint.contains("VALIDATE CONSTRAINT fk")
                && f.hint.contains("ddlgate run these steps")
                && f.hint.contains("Django `atomic = False`")
                && f.hint.contains("transaction_per_migration=True"),
            "{}",
            f.hint
        );
        // Outside one, ddlgate runs the steps: the hint gives them alone.
        let f = run(&RULE, sql, &Ctx::default()).expect("flagged");
        assert_eq!(f.rewrite, Some(Rewrite::Steps));
        assert!(!f.hint.contains("ddlgate run these steps"), "{}", f.hint);
    }

    #[test]
    fn partitioned_tables_before_18_get_the_per_partition_hint() {
        use crate::catalog::testing::{facts, partitioned, table as plain};
        let on = |relation, version: u32, tx: Ctx| Ctx {
            catalog: Some(facts(relation, vec![])),
            version: Some(version),
            ..tx
        };
        let tree = || partitioned("ev", 3, 9_000_000, 3 << 30);
        let sql = "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)";
        // (case, SQL, context, per-partition hint expected, rewrite offered)
        let cases: Vec<(&str, &str, Ctx, bool, Option<Rewrite>)> = vec![
            (
                "PG 15",
                sql,
                on(tree(), 150_004, Ctx::default()),
                true,
                Some(Rewrite::Steps),
            ),
            (
                "PG 17",
                sql,
                on(tree(), 170_000, Ctx::default()),
                true,
                Some(Rewrite::Steps),
            ),
            (
                "PG 15, in tx",
                sql,
                on(tree(), 150_004, Ctx::in_tx()),
                true,
                None,
            ),
            (
                "inline REFERENCES",
                "ALTER TABLE ev ADD COLUMN oid2 int REFERENCES refd (id)",
                on(tree(), 150_004, Ctx::default()),
                true,
                Some(Rewrite::Steps),
            ),
            // PostgreSQL 18 accepts NOT VALID on the parent: the usual hint.
            (
                "PG 18",
                sql,
                on(tree(), 180_000, Ctx::default()),
                false,
                Some(Rewrite::Steps),
            ),
            (
                "plain table",
                sql,
                on(plain("ev", 9_000_000, 3 << 30), 150_004, Ctx::default()),
                false,
                Some(Rewrite::Steps),
            ),
            (
                "no catalog",
                sql,
                Ctx::version(150_004),
                false,
                Some(Rewrite::Steps),
            ),
        ];
        for (case, sql, ctx, per_partition, rewrite) in cases {
            let f = run(&RULE, sql, &ctx).expect(case);
            assert_eq!(f.rewrite, rewrite, "{case}");
            assert_eq!(
                f.hint.contains("On each leaf partition"),
                per_partition,
                "{case}: {}",
                f.hint
            );
            // Never the NOT VALID-on-the-parent advice where the server refuses it.
            assert_eq!(
                f.hint.starts_with("Add the constraint with NOT VALID"),
                !per_partition && !sql.contains("ADD COLUMN"),
                "{case}: {}",
                f.hint
            );
        }
        let f = run(&RULE, sql, &on(tree(), 150_004, Ctx::default())).expect("flagged");
        assert!(
            f.message
                .contains("before 18 does not accept NOT VALID on a partitioned table")
                && f.hint.contains("VALIDATE CONSTRAINT ev_fk")
                && f.hint
                    .contains("attaches the partitions' validated constraints"),
            "{} / {}",
            f.message,
            f.hint
        );
        let f = run(
            &RULE,
            "ALTER TABLE ev ADD COLUMN oid2 int REFERENCES refd (id)",
            &on(tree(), 150_004, Ctx::default()),
        )
        .expect("flagged");
        assert!(
            f.hint.starts_with("Add oid2 without REFERENCES first"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn a_new_table_still_locks_the_referenced_one() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        ctx.created.insert(Name::bare("fresh_parent"));
        let f = run(
            &RULE,
            "ALTER TABLE fresh ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id)",
            &ctx,
        )
        .expect("flagged");
        assert!(
            f.message.contains("created in this transaction") && f.message.contains("customers"),
            "{}",
            f.message
        );
        assert!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD COLUMN c int REFERENCES public.customers",
                &ctx
            )
            .is_some()
        );
        // The new table small or empty by the facts: the scan is short, as for CREATE TABLE …
        // REFERENCES; big, or of unknown size: flagged.
        let sized = |rows: Option<u64>, bytes: Option<u64>| {
            let mut c = Ctx::in_tx();
            c.created.insert(Name::bare("fresh"));
            c.catalog = Some(crate::catalog::Facts {
                relation: Some(crate::catalog::Relation {
                    exists: true,
                    rows,
                    bytes,
                    ..crate::catalog::Relation::missing(Name::bare("fresh"))
                }),
                ..Default::default()
            });
            run(
                &RULE,
                "ALTER TABLE fresh ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id)",
                &c,
            )
        };
        assert_eq!(sized(None, Some(0)), None);
        assert_eq!(sized(None, Some(24 << 10)), None);
        assert_eq!(sized(Some(20), Some(24 << 10)), None);
        assert!(sized(None, Some(200 << 20)).is_some());
        assert!(sized(Some(5_000_000), Some(1 << 20)).is_some());
        assert!(sized(None, None).is_some());
        // both ends new: nobody else can see either table
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES fresh_parent (id)",
                &ctx
            ),
            None
        );
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD COLUMN p int REFERENCES fresh",
                &ctx
            ),
            None
        );
        // NOT VALID is fine either way
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers NOT VALID",
                &ctx
            ),
            None
        );
    }
}
