//! `renaming-object`: `RENAME TO` of an object running code refers to by name — a view or
//! materialized view (`ALTER [MATERIALIZED] VIEW … RENAME TO`), a sequence, a function,
//! procedure, routine or aggregate, a type or a domain. (Tables: `renaming-table`; columns:
//! `renaming-column`; schemas: `renaming-schema`; enum labels: `renaming-enum-value`.)
//!
//! - **Lock:** ACCESS EXCLUSIVE on a view or sequence, briefly; the object's catalog row
//!   otherwise.
//! - **Risk:** every running query, call, cast or `nextval('old_name')` that uses the old name
//!   fails from the moment the rename commits; deploys are never atomic with a migration.
//! - **Safe alternative (expand/contract):** create the object under the new name beside the
//!   old one (a view over the old view, a wrapper function, …), move the code over, then drop
//!   the old name.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** a materialized view created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-alterview.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "renaming-object",
    lock: "ACCESS EXCLUSIVE on a view or sequence, briefly; breaks running code using the old name",
    summary: "RENAME TO of a view, materialized view, sequence, function, procedure, aggregate, type or domain",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (what, name, to) = match &ddl.kind {
        DdlKind::RenameView {
            name,
            materialized,
            column: None,
            to,
        } => {
            if ctx.is_new(name) {
                return None;
            }
            let what = if *materialized {
                "materialized view"
            } else {
                "view"
            };
            (what, name, to)
        }
        DdlKind::RenameObject { tag, name, to } => {
            let what = match tag.as_str() {
                "ALTER SEQUENCE" => "sequence",
                "ALTER FUNCTION" => "function",
                "ALTER PROCEDURE" => "procedure",
                "ALTER ROUTINE" => "routine",
                "ALTER AGGREGATE" => "aggregate",
                "ALTER TYPE" => "type",
                "ALTER DOMAIN" => "domain",
                _ => "object",
            };
            (what, name, to)
        }
        _ => return None,
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Renaming the {what} {name} to {to} breaks every running query, call or cast that still uses {name}: it fails from the moment the rename commits."
        ),
        hint: format!(
            "Expand/contract: create {to} beside {name} (for a view, a view over it; for a function, a wrapper), move the code to {to}, then drop {name} once nothing uses it."
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
    fn flags_renames_of_objects_code_uses() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER VIEW v RENAME COLUMN a TO b",
                "ALTER SEQUENCE s RESTART",
                "ALTER FUNCTION f(int) OWNER TO bob",
                "ALTER TYPE mood RENAME VALUE 'a' TO 'b'",
                "ALTER TYPE mood ADD VALUE 'c'",
                "ALTER TABLE t RENAME TO u",
                "ALTER INDEX i RENAME TO j",
            ],
            &[
                "ALTER VIEW v RENAME TO w",
                "ALTER MATERIALIZED VIEW IF EXISTS s.mv RENAME TO mv2",
                "ALTER SEQUENCE s RENAME TO s2",
                "alter sequence if exists public.s rename to s2",
                "ALTER FUNCTION f(int, text) RENAME TO g",
                "ALTER FUNCTION f RENAME TO g",
                "ALTER PROCEDURE p() RENAME TO q",
                "ALTER ROUTINE r RENAME TO q",
                "ALTER AGGREGATE agg(int) RENAME TO agg2",
                "ALTER TYPE mood RENAME TO feeling",
                "ALTER DOMAIN email RENAME TO mail",
            ],
        );
        let f = run(&RULE, "ALTER SEQUENCE s RENAME TO s2", &Ctx::default()).expect("flagged");
        assert!(f.message.contains("sequence s to s2"), "{}", f.message);
    }

    #[test]
    fn a_materialized_view_created_in_the_transaction_is_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("mv"));
        table(
            &RULE,
            &ctx,
            &["ALTER MATERIALIZED VIEW mv RENAME TO mv2"],
            &["ALTER VIEW v RENAME TO w"],
        );
    }
}
