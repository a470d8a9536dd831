//! `ban-create-domain-with-constraint`: `CREATE DOMAIN … CHECK (…)` (or NOT NULL).
//!
//! - **Lock:** none on existing tables when the domain is created. The cost comes later: every
//!   later change to the domain's constraints validates every column of every table that uses
//!   it, and adding a column of a constrained domain rewrites the table under ACCESS EXCLUSIVE
//!   (squawk's reasoning for the same rule id).
//! - **Safe alternative:** use the base type and put the CHECK on each table's column, where it
//!   can be added `NOT VALID` and validated separately.
//! - **Rewrite:** no. Default: warn.
//!
//! <https://www.postgresql.org/docs/current/sql-createdomain.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-create-domain-with-constraint",
    lock: "none now; later constraint changes scan every table using the domain, and adding such a column rewrites the table",
    summary: "CREATE DOMAIN with a constraint",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::CreateDomainWithConstraint { name } = &ddl.kind else {
        return None;
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Domain {name} carries a constraint: adding a column of type {name} to an existing table rewrites it under ACCESS EXCLUSIVE, and changing the constraint later scans every table that uses it."
        ),
        hint: format!(
            "Use the base type of {name} and put the CHECK on each table's column instead, where it can be added NOT VALID and validated separately."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};
    use crate::sql::statement::{Name, Understood};

    #[test]
    fn flags_constrained_domains() {
        // sqlparser 0.64 maps CREATE DOMAIN to its command tag only; the classifier builds this.
        let ddl = Ddl {
            kind: DdlKind::CreateDomainWithConstraint {
                name: Name::bare("positive"),
            },
            understood: Understood::Fallback,
        };
        let f = (RULE.check)(&ddl, &Ctx::default().get()).expect("flagged");
        assert!(f.message.contains("positive"), "{}", f.message);
        let other = Ddl {
            kind: DdlKind::Other {
                tag: "CREATE DOMAIN".into(),
            },
            understood: Understood::Parsed,
        };
        assert_eq!((RULE.check)(&other, &Ctx::default().get()), None);
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE DOMAIN d AS int",
                "CREATE TYPE mood AS ENUM ('a')",
                "CREATE TABLE t (c int CHECK (c > 0))",
            ],
            &[],
        );
    }
}
