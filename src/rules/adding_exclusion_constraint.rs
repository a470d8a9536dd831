//! `adding-exclusion-constraint`: `ALTER TABLE … ADD [CONSTRAINT n] EXCLUDE …`.
//!
//! - **Lock:** ACCESS EXCLUSIVE while the exclusion index is built and every row is checked —
//!   every read and write waits for the whole build.
//! - **Safe alternative:** none in place: exclusion constraints have no `NOT VALID` form and no
//!   `USING INDEX` form. Create a new table with the constraint and copy the data over (then
//!   swap names in one short transaction), or run it in a maintenance window.
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-ADD-TABLE-CONSTRAINT>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-exclusion-constraint",
    lock: "ACCESS EXCLUSIVE while the exclusion index is built: blocks every read and write",
    summary: "ALTER TABLE … ADD EXCLUDE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    // The small-table allowance: on a table the catalog shows small the scan/rewrite
    // finishes in milliseconds, so the statement runs as written.
    if ctx.is_small(table) {
        return None;
    }
    ops.iter().any(|op| matches!(op, AlterOp::AddConstraint(AddConstraint { kind: ConstraintKind::Exclusion, .. }))).then(|| Finding {
        rule: RULE.id,
        message: format!(
            "Adding an exclusion constraint to {table} builds its index and checks every row under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole build."
        ),
        hint: "Exclusion constraints have no NOT VALID or USING INDEX form. Create a new table with the constraint, copy the data, and swap the names in one short transaction; or run this in a maintenance window.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_exclusion_constraints() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
                "ALTER TABLE t DROP CONSTRAINT ex",
                "CREATE TABLE t (r tsrange, EXCLUDE USING gist (r WITH &&))",
            ],
            &[
                "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
                "alter table s.t add exclude using gist (room with =, during with &&)",
                "ALTER TABLE t ADD COLUMN r tsrange, ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
            ],
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
                &ctx
            ),
            None
        );
        assert!(
            run(
                &RULE,
                "ALTER TABLE other ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
                &ctx
            )
            .is_some()
        );
    }
}
