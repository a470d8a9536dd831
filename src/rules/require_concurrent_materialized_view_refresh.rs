//! `require-concurrent-materialized-view-refresh`: `REFRESH MATERIALIZED VIEW` without
//! `CONCURRENTLY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE on the view for the whole refresh — every read of it waits
//!   until the query behind it has run again.
//! - **Safe alternative (R19):** `REFRESH MATERIALIZED VIEW CONCURRENTLY`, which takes
//!   EXCLUSIVE instead, so reads continue. It needs a unique index on the view (on plain
//!   columns, without WHERE) and an already-populated view, and cannot be combined with
//!   `WITH NO DATA`.
//! - **Rewrite:** not yet: whether the view has a suitable unique index and is populated
//!   (`pg_matviews.ispopulated`) needs the catalog. Once ddlgate reads it, it will insert
//!   `CONCURRENTLY` where that is possible. Default: warn.
//! - **Not flagged:** views created earlier in the same transaction (when the session records
//!   them in `created_in_tx`).
//!
//! <https://www.postgresql.org/docs/current/sql-refreshmaterializedview.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "require-concurrent-materialized-view-refresh",
    lock: "ACCESS EXCLUSIVE on the materialized view for the whole refresh: blocks every read of it",
    summary: "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
    default_action: Action::Warn,
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
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "REFRESH MATERIALIZED VIEW {name} holds an ACCESS EXCLUSIVE lock on {name} for the whole refresh: every query reading {name} waits until it finishes."
        ),
        hint: format!(
            "Use REFRESH MATERIALIZED VIEW CONCURRENTLY {name}, which lets reads continue; it needs a unique index on {name} and a view that is already populated."
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
}
