//! `ban-alter-domain-with-add-constraint`: `ALTER DOMAIN … ADD CONSTRAINT` without `NOT VALID`.
//!
//! - **Lock:** the new constraint is checked against every column, in every table, that uses
//!   the domain — a scan of each such table while it is locked against writes (the exact lock
//!   level is not documented). One statement can stall many tables.
//! - **Safe alternative:** `ALTER DOMAIN … ADD CONSTRAINT … NOT VALID` (new values only), then
//!   `ALTER DOMAIN … VALIDATE CONSTRAINT …` in a separate transaction; or better, avoid
//!   constrained domains (see `ban-create-domain-with-constraint`).
//! - **Rewrite:** no.
//! - **Not flagged:** `… NOT VALID`.
//!
//! <https://www.postgresql.org/docs/current/sql-alterdomain.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-alter-domain-with-add-constraint",
    lock: "scans every table with a column of the domain while holding locks on them",
    summary: "ALTER DOMAIN … ADD CONSTRAINT without NOT VALID",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterDomainAddConstraint {
        name,
        not_valid: false,
    } = &ddl.kind
    else {
        return None;
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Adding a constraint to domain {name} checks every column of every table that uses {name}, scanning each of those tables while it is locked: writes to all of them can stall."
        ),
        hint: format!(
            "Add it with NOT VALID (checks new values only), then run ALTER DOMAIN {name} VALIDATE CONSTRAINT … in a separate transaction. Better still, put CHECK constraints on table columns instead of domains."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};
    use crate::sql::statement::{Name, Understood};

    // sqlparser 0.64 rejects ALTER DOMAIN; the token classifier builds these.
    fn alter_domain(not_valid: bool) -> Ddl {
        Ddl {
            kind: DdlKind::AlterDomainAddConstraint {
                name: Name::bare("positive"),
                not_valid,
            },
            understood: Understood::Fallback,
        }
    }

    #[test]
    fn flags_validated_domain_constraints() {
        let ctx = Ctx::default();
        let f = (RULE.check)(&alter_domain(false), &ctx.get()).expect("flagged");
        assert!(
            f.message.contains("positive") && f.hint.contains("NOT VALID"),
            "{}",
            f.message
        );
        assert_eq!((RULE.check)(&alter_domain(true), &ctx.get()), None);
        table(
            &RULE,
            &ctx,
            &[
                "ALTER TABLE t ADD CONSTRAINT c CHECK (c > 0)",
                "CREATE DOMAIN d AS int CHECK (VALUE > 0)",
            ],
            &[],
        );
    }
}
