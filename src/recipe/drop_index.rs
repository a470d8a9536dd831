//! Recipe for `DROP INDEX a, b, …`: one `DROP INDEX CONCURRENTLY` per index, in the order
//! written. PostgreSQL drops only one index per `DROP INDEX CONCURRENTLY`, so a list has no
//! single-statement safe form; as separate statements each drop takes SHARE UPDATE EXCLUSIVE
//! (reads and writes continue) instead of ACCESS EXCLUSIVE on every table at once.
//!
//! The names are the caller's: `analysis` hands the schema-qualified names the server resolved
//! for each index (`to_regclass` on the session's search_path, read with the catalog facts), so
//! every step drops the index the statement meant whatever happens to the search path, and the
//! precheck asks about that same qualified name.

use super::{Precheck, Recipe, RecipeError, RecipeKind, Step, StepKind};
use crate::sql::quote;
use crate::sql::statement::{LockMode, Name};

/// `DROP INDEX [IF EXISTS] a, b, …` → `DROP INDEX CONCURRENTLY [IF EXISTS] a`; … Each step is
/// skipped when its index is already gone (a re-run after a failure resumes; an index missing
/// on the first run is taken as already dropped, as the re-run must).
pub(super) fn drop_indexes(
    names: &[Name],
    concurrently: bool,
    if_exists: bool,
    cascade: bool,
) -> Result<Recipe, RecipeError> {
    if concurrently {
        return Err(RecipeError::AlreadySafe("DROP INDEX CONCURRENTLY"));
    }
    if cascade {
        return Err(RecipeError::Unsupported(
            "DROP INDEX … CASCADE (DROP INDEX CONCURRENTLY does not accept CASCADE; drop the \
             dependent objects first)",
        ));
    }
    let Some(first) = names.first() else {
        return Err(RecipeError::NoRecipe("DROP INDEX without an index"));
    };
    let steps = names
        .iter()
        .map(|name| Step {
            sql: format!(
                "DROP INDEX CONCURRENTLY {}{}",
                if if_exists { "IF EXISTS " } else { "" },
                quote::name_if_needed(name)
            ),
            kind: StepKind::DropIndexConcurrently,
            // On the index and its table; it waits for every transaction that may use the
            // index, without blocking reads or writes meanwhile.
            lock: LockMode::ShareUpdateExclusive,
            locked: name.clone(),
            long_running: true,
            skip_if: Some(Precheck::RelationGone { name: name.clone() }),
        })
        .collect();
    Ok(Recipe {
        kind: RecipeKind::DropIndexes,
        target: first.clone(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::tests::{PG15, ctx, plan_with, refused, steps};

    #[test]
    fn one_concurrent_drop_per_index_in_order() {
        let cases: &[(&str, &[&str])] = &[
            (
                "DROP INDEX a, s.b",
                &["DROP INDEX CONCURRENTLY a", "DROP INDEX CONCURRENTLY s.b"],
            ),
            (
                "drop index if exists \"B\", a RESTRICT",
                &[
                    "DROP INDEX CONCURRENTLY IF EXISTS \"B\"",
                    "DROP INDEX CONCURRENTLY IF EXISTS a",
                ],
            ),
            ("DROP INDEX a", &["DROP INDEX CONCURRENTLY a"]),
        ];
        for (sql, want) in cases {
            assert_eq!(steps(sql), *want, "{sql}");
        }
        let r = plan_with("DROP INDEX a, \"it's\"", &ctx(PG15)).expect("recipe");
        assert_eq!(r.kind, RecipeKind::DropIndexes);
        assert_eq!(r.kind.command_tag(), "DROP INDEX");
        for step in &r.steps {
            assert_eq!(step.kind, StepKind::DropIndexConcurrently);
            assert_eq!(step.lock, LockMode::ShareUpdateExclusive);
            assert!(step.long_running);
        }
        assert_eq!(
            r.steps[1].skip_if.as_ref().map(Precheck::sql).as_deref(),
            Some("SELECT pg_catalog.to_regclass('\"it''s\"') IS NULL")
        );
        let text = r.describe();
        assert!(
            text.contains("skipped if \"it's\" no longer exists"),
            "{text}"
        );
        assert!(
            text.starts_with("ddlgate runs this DROP INDEX of several indexes as 2 steps"),
            "{text}"
        );
    }

    #[test]
    fn what_cannot_be_split_is_refused() {
        assert!(matches!(
            refused("DROP INDEX a, b CASCADE"),
            RecipeError::Unsupported(_)
        ));
        assert!(matches!(
            refused("DROP INDEX CONCURRENTLY a"),
            RecipeError::AlreadySafe(_)
        ));
    }
}
