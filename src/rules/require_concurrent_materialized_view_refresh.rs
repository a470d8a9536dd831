//! `require-concurrent-materialized-view-refresh`: `REFRESH MATERIALIZED VIEW` without
//! `CONCURRENTLY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the view for the whole refresh — every read of it waits
//!   until the query behind it has run again.
//! - **Safe alternative (R19):** `REFRESH MATERIALIZED VIEW CONCURRENTLY`, which takes
//!   EXCLUSIVE instead, so reads continue. It needs a unique index on the view that is valid,
//!   a b-tree, on plain columns only and without WHERE, and an already-populated view.
//! - **With the catalog:** the hint says whether `CONCURRENTLY` works right now (naming the
//!   usable unique index) or which index to add first. A view that is not populated yet
//!   (`WITH NO DATA`) is not flagged: nothing can read it until this refresh, and
//!   `CONCURRENTLY` is impossible on it.
//! - **Rewrite:** `CONCURRENTLY` is inserted when the catalog shows a usable unique index (it
//!   works inside transactions too). Without one — or without the catalog — there is no safe
//!   form, and the default action (rewrite) blocks.
//! - **Not flagged:** views created earlier in the same transaction (when the session records
//!   them in `created_in_tx`).
//!
//! <https://www.postgresql.org/docs/current/sql-refreshmaterializedview.html>

use super::{Action, Context, Finding, Rewrite, Rule};
use crate::catalog::RelKind;
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "require-concurrent-materialized-view-refresh",
    lock: "ACCESS EXCLUSIVE on the materialized view for the whole refresh: blocks every read of it",
    summary: "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::RefreshMaterializedView {
        name,
        concurrently: false,
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(name) {
        return None;
    }
    let view = ctx
        .catalog
        .and_then(|f| f.relation_for(name))
        .filter(|r| r.exists && r.kind == Some(RelKind::MaterializedView));
    let rewrite = view
        .and_then(|v| v.refresh_index.as_ref())
        .map(|_| Rewrite::Concurrently);
    let hint = match view {
        Some(v) if v.populated == Some(false) => return None,
        Some(v) => match &v.refresh_index {
            Some(index) => format!(
                "Use REFRESH MATERIALIZED VIEW CONCURRENTLY {name}: {name} has the unique index {index} it needs, so the refresh can let reads continue."
            ),
            None => format!(
                "{name} has no unique index REFRESH MATERIALIZED VIEW CONCURRENTLY can use. Add one first — CREATE UNIQUE INDEX CONCURRENTLY on {name}'s key columns: plain columns, no expressions, no WHERE — then use REFRESH MATERIALIZED VIEW CONCURRENTLY {name}, which lets reads continue."
            ),
        },
        None => format!(
            "Use REFRESH MATERIALIZED VIEW CONCURRENTLY {name}, which lets reads continue; it needs a unique index on {name} and a view that is already populated."
        ),
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "REFRESH MATERIALIZED VIEW {name} holds an ACCESS EXCLUSIVE lock on {name} for the whole refresh: every query reading {name} waits until it finishes."
        ),
        hint,
        rewrite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Relation;
    use crate::catalog::testing::{facts, table as existing};
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_plain_refresh() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
                "CREATE MATERIALIZED VIEW mv AS SELECT 1",
                "CREATE VIEW v AS SELECT 1",
            ],
            &[
                "REFRESH MATERIALIZED VIEW mv",
                "refresh materialized view s.mv with data",
            ],
        );
        let f = run(
            &RULE,
            "REFRESH MATERIALIZED VIEW daily_totals",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("daily_totals") && f.hint.contains("CONCURRENTLY daily_totals"),
            "{}",
            f.hint
        );
        assert_eq!(f.rewrite, None);
    }

    #[test]
    fn views_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "REFRESH MATERIALIZED VIEW fresh", &ctx), None);
        assert!(run(&RULE, "REFRESH MATERIALIZED VIEW other", &ctx).is_some());
    }

    #[test]
    fn catalog_tells_whether_concurrently_works() {
        let view = |index: Option<&str>, populated: bool| Relation {
            kind: Some(RelKind::MaterializedView),
            populated: Some(populated),
            refresh_index: index.map(str::to_owned),
            ..existing("daily", 400, 1 << 20)
        };
        let ctx = |r: Relation| Ctx {
            catalog: Some(facts(r, vec![])),
            ..Ctx::default()
        };
        // (facts, None = passes / Some(text the hint must contain))
        let cases: Vec<(Relation, Option<&str>)> = vec![
            (
                view(Some("daily_key"), true),
                Some("daily has the unique index daily_key it needs"),
            ),
            (
                view(None, true),
                Some(
                    "daily has no unique index REFRESH MATERIALIZED VIEW CONCURRENTLY can use. Add one first",
                ),
            ),
            // WITH NO DATA: nothing can read it yet, and CONCURRENTLY is impossible.
            (view(Some("daily_key"), false), None),
            // Not a materialized view, or facts about another one: the generic hint.
            (
                existing("daily", 1, 1),
                Some("it needs a unique index on daily"),
            ),
            (
                Relation {
                    asked: Name::bare("weekly"),
                    ..view(None, false)
                },
                Some("it needs a unique index on daily"),
            ),
        ];
        for (relation, expected) in cases {
            let got = run(
                &RULE,
                "REFRESH MATERIALIZED VIEW daily",
                &ctx(relation.clone()),
            );
            match expected {
                None => assert_eq!(got, None, "{relation:?}"),
                Some(text) => {
                    let f = got.unwrap_or_else(|| panic!("{relation:?} must be flagged"));
                    assert!(f.hint.contains(text), "{}", f.hint);
                    assert!(f.message.contains("ACCESS EXCLUSIVE"));
                    // The rewrite is offered exactly when a usable unique index is known.
                    let usable =
                        relation.refresh_index.is_some() && relation.asked == Name::bare("daily");
                    assert_eq!(f.rewrite.is_some(), usable, "{relation:?}");
                }
            }
        }
    }
}
