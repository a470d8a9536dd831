//! Recipe for `REFRESH MATERIALIZED VIEW`: the client's statement with `CONCURRENTLY` spliced
//! in, so reads of the view continue during the refresh.

use super::{Recipe, RecipeError, RecipeKind, Step, StepKind};
use crate::sql::reader::Stmt;
use crate::sql::statement::{LockMode, Name};

/// R19: `REFRESH MATERIALIZED VIEW` → `… CONCURRENTLY`, spliced into the client's text.
/// Whether the view qualifies (a unique index on plain columns, already populated) is the
/// caller's catalog check.
pub(super) fn refresh(
    st: &Stmt<'_>,
    name: &Name,
    concurrently: bool,
) -> Result<Recipe, RecipeError> {
    if concurrently {
        return Err(RecipeError::AlreadySafe("REFRESH … CONCURRENTLY"));
    }
    let at = st.refresh_insertion_point()?;
    if st.contains_words(&["WITH", "NO", "DATA"]) {
        return Err(RecipeError::Unsupported(
            "REFRESH … WITH NO DATA (CONCURRENTLY cannot empty a view)",
        ));
    }
    let sql = format!(
        "{} CONCURRENTLY{}",
        st.slice(st.start, at)?,
        st.slice(at, st.end)?
    );
    Ok(Recipe {
        kind: RecipeKind::RefreshMaterializedView,
        target: name.clone(),
        steps: vec![Step {
            sql,
            kind: StepKind::RefreshConcurrently,
            lock: LockMode::Exclusive,
            locked: name.clone(),
            long_running: true,
            skip_if: None,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::tests::{PG15, ctx, plan_with, refused, steps};

    #[test]
    fn refresh_materialized_view_splices_concurrently() {
        assert_eq!(
            steps("REFRESH MATERIALIZED VIEW /* keep */ s.\"MV\""),
            ["REFRESH MATERIALIZED VIEW CONCURRENTLY /* keep */ s.\"MV\""]
        );
        let r = plan_with("REFRESH MATERIALIZED VIEW mv", &ctx(PG15)).expect("r");
        assert_eq!(r.steps[0].lock, LockMode::Exclusive);
        assert!(r.steps[0].long_running);
        assert!(matches!(
            refused("REFRESH MATERIALIZED VIEW CONCURRENTLY mv"),
            RecipeError::AlreadySafe(_)
        ));
        assert!(matches!(
            refused("REFRESH MATERIALIZED VIEW mv WITH NO DATA"),
            RecipeError::Unsupported(_)
        ));
    }
}
