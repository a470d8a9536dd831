//! `constraint-missing-not-valid`: a validated CHECK constraint — `ADD [CONSTRAINT n] CHECK
//! (…)` without `NOT VALID`, or `ADD COLUMN … CHECK (…)`.
//!
//! - **Lock:** ACCESS EXCLUSIVE while every row is checked — every read and write waits for
//!   the whole scan.
//! - **Safe alternative (R6):** `ADD CONSTRAINT … CHECK (…) NOT VALID` (brief lock, no scan),
//!   commit, then `VALIDATE CONSTRAINT` in a separate transaction (SHARE UPDATE EXCLUSIVE, reads
//!   and writes continue). Both in one transaction throws the benefit away: squawk also
//!   reports that case, which needs the transaction's earlier statements (not in the rule
//!   context yet).
//! - **Rewrite:** no (the recipe spans two transactions).
//! - **Not flagged:** tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-ADD-TABLE-CONSTRAINT>

use super::{Action, Context, Finding, Rewrite, Rule, steps_hint};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl};

pub static RULE: Rule = Rule {
    id: "constraint-missing-not-valid",
    lock: "ACCESS EXCLUSIVE for the validation scan: blocks every read and write",
    summary: "ADD CHECK without NOT VALID, or ADD COLUMN … CHECK",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    // The small-table allowance: on a table the catalog shows small the scan/rewrite
    // finishes in milliseconds, so the statement runs as written.
    if ctx.is_small(table) {
        return None;
    }
    let (message, hint) = ops.iter().find_map(|op| match op {
        AlterOp::AddConstraint(AddConstraint { name, kind: ConstraintKind::Check, not_valid: false, .. }) => {
            let name = name.as_deref().unwrap_or("<name>");
            Some((
                format!(
                    "Adding a CHECK constraint to {table} checks every row while holding an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole scan."
                ),
                format!(
                    "Add the constraint with NOT VALID (a brief lock, no scan), commit, then run ALTER TABLE {table} VALIDATE CONSTRAINT {name} in a separate transaction; it scans without blocking reads or writes."
                ),
            ))
        }
        AlterOp::AddColumn(c) if c.constraints.contains(&ConstraintKind::Check) => {
            let column = &c.name;
            Some((
                format!(
                    "Adding {table}.{column} with an inline CHECK checks every row while holding an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole scan."
                ),
                format!(
                    "Add {column} without the CHECK, then ALTER TABLE {table} ADD CONSTRAINT … CHECK (…) NOT VALID, commit, and VALIDATE CONSTRAINT in a separate transaction."
                ),
            ))
        }
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message,
        hint: steps_hint(hint, ctx),
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_validated_checks() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD CONSTRAINT ck CHECK (c > 0) NOT VALID",
                "ALTER TABLE t VALIDATE CONSTRAINT ck",
                "ALTER TABLE t ADD COLUMN c int",
                "ALTER TABLE t ADD COLUMN c int REFERENCES r UNIQUE",
                "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES r",
                "CREATE TABLE t (c int CHECK (c > 0))",
            ],
            &[
                "ALTER TABLE t ADD CONSTRAINT ck CHECK (c > 0)",
                "alter table s.t add check (c is not null)",
                "ALTER TABLE t ADD COLUMN c int CHECK (c > 0)",
                "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 1 CONSTRAINT pos CHECK (c > 0)",
                "ALTER TABLE t ADD CONSTRAINT a CHECK (a > 0) NOT VALID, ADD CONSTRAINT b CHECK (b > 0)",
            ],
        );
    }

    #[test]
    fn hints_name_the_constraint_or_column() {
        let f = run(&RULE, "ALTER TABLE t ADD CONSTRAINT a CHECK (a > 0) NOT VALID, ADD CONSTRAINT b CHECK (b > 0)", &Ctx::default()).expect("flagged");
        assert!(f.hint.contains("VALIDATE CONSTRAINT b"), "{}", f.hint);
        let f = run(
            &RULE,
            "ALTER TABLE t ADD COLUMN qty int CHECK (qty > 0)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("t.qty") && f.hint.contains("Add qty without the CHECK"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD CONSTRAINT ck CHECK (c > 0)",
                &ctx
            ),
            None
        );
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD COLUMN c int CHECK (c > 0)",
                &ctx
            ),
            None
        );
        assert!(
            run(
                &RULE,
                "ALTER TABLE other ADD CONSTRAINT ck CHECK (c > 0)",
                &ctx
            )
            .is_some()
        );
    }
}
