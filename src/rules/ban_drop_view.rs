//! `ban-drop-view`: `DROP VIEW` / `DROP MATERIALIZED VIEW`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the view, briefly.
//! - **Risk:** running code that reads the view fails (42P01, relation does not exist) from
//!   the moment the drop commits until a new version exists; deploys are never atomic with a
//!   migration. Dropping and re-creating the view in one transaction (to change its columns)
//!   leaves no gap and is fine; dropping it for good while code still reads it is not.
//! - **Safe alternative (expand/contract):** stop every reader first (deploy the code that no
//!   longer uses it), then drop it; to change a view's definition, `CREATE OR REPLACE VIEW`
//!   where the columns allow, or drop and re-create it in the same transaction.
//! - **Rewrite:** no. Default: warn. With CASCADE, `ban-drop-cascade` decides too.
//!
//! <https://www.postgresql.org/docs/current/sql-dropview.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-drop-view",
    lock: "ACCESS EXCLUSIVE on the view, briefly; running code reading it fails",
    summary: "DROP VIEW / DROP MATERIALIZED VIEW",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let tag = match &ddl.kind {
        DdlKind::Other { tag } | DdlKind::DropCascade { tag, .. } => tag.as_str(),
        _ => return None,
    };
    let what = match tag {
        "DROP VIEW" => "view",
        "DROP MATERIALIZED VIEW" => "materialized view",
        _ => return None,
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{tag} breaks running code that still reads the {what}: its queries fail with 42P01 (relation does not exist) from the moment the drop commits until a new version of the {what} exists."
        ),
        hint: format!(
            "Deploy the code that no longer reads the {what} first, then drop it. To change its definition, use CREATE OR REPLACE where the columns allow, or drop and re-create it in the same transaction (no gap)."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_view_drops() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DROP TABLE v",
                "DROP FUNCTION f()",
                "CREATE VIEW v AS SELECT 1",
                "DROP INDEX v",
            ],
            &[
                "DROP VIEW v",
                "drop view if exists s.v, w",
                "DROP MATERIALIZED VIEW mv",
                "DROP VIEW v CASCADE",
            ],
        );
    }
}
