//! Recipe for `ADD [COLUMN] c type …` with REFERENCES, CHECK, UNIQUE or PRIMARY KEY on the
//! column: the column is added bare (idempotently), then each constraint goes through its own
//! family's recipe (`constraint`, `index`).

use super::ConstraintType;
use super::constraint::{check_name, foreign_key_steps, not_valid_then_validate};
use super::index::{index_constraint_allowed, index_constraint_steps};
use super::read::{ColumnConstraint, ColumnConstraintSpec, ColumnDef};
use super::{Context, Precheck, Recipe, RecipeError, RecipeKind, Step, StepKind, Target};
use crate::sql::naming::{object_name, truncate};
use crate::sql::quote;
use crate::sql::statement::{ConstraintKind, LockMode, Name};

/// `ADD COLUMN c type … REFERENCES / UNIQUE / PRIMARY KEY / CHECK`: the column without those
/// constraints (so the ACCESS EXCLUSIVE of ADD COLUMN covers no scan and no index build), then
/// each constraint's own recipe, in the order written.
///
/// `ADD COLUMN IF NOT EXISTS` keeps a re-run idempotent. The price: if the column already
/// existed before the recipe ran, the constraints are added to it, where the original
/// statement would have failed (or, with the client's own `IF NOT EXISTS`, skipped them).
pub(super) fn add_column(
    t: &Target,
    table: &Name,
    def: &ColumnDef,
    model: &[ConstraintKind],
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    let handled: Vec<&ColumnConstraint> = def.constraints.iter().collect();
    let model_handled: Vec<&ConstraintKind> = model
        .iter()
        .filter(|k| {
            matches!(
                k,
                ConstraintKind::ForeignKey { .. }
                    | ConstraintKind::Check
                    | ConstraintKind::Unique { .. }
                    | ConstraintKind::PrimaryKey { .. }
            )
        })
        .collect();
    if handled.is_empty() {
        return Err(RecipeError::NoRecipe(
            "ADD COLUMN without REFERENCES, UNIQUE, PRIMARY KEY or CHECK",
        ));
    }
    let agrees = handled.len() == model_handled.len()
        && handled.iter().zip(&model_handled).all(|(c, k)| {
            matches!(
                (&c.spec, k),
                (
                    ColumnConstraintSpec::References,
                    ConstraintKind::ForeignKey { .. }
                ) | (ColumnConstraintSpec::Check { .. }, ConstraintKind::Check)
                    | (
                        ColumnConstraintSpec::Index(_),
                        ConstraintKind::Unique { .. }
                    )
                    | (
                        ColumnConstraintSpec::Index(_),
                        ConstraintKind::PrimaryKey { .. }
                    )
            )
        });
    if !agrees {
        return Err(RecipeError::Unreadable("the column's constraints"));
    }
    let column = truncate(&def.name);
    let mut steps = vec![Step {
        sql: format!(
            "{} ADD COLUMN IF NOT EXISTS {} {}",
            t.alter(),
            quote::ident_if_needed(&column),
            def.rest
        ),
        kind: StepKind::AddColumn,
        lock: LockMode::AccessExclusive,
        locked: t.name.clone(),
        long_running: false,
        skip_if: Some(Precheck::ColumnExists {
            table: t.name.clone(),
            column: column.clone(),
        }),
    }];
    let single = std::slice::from_ref(&column);
    for c in handled {
        let name = c.name.as_deref().map(truncate);
        match &c.spec {
            ColumnConstraintSpec::References => {
                let name = name.unwrap_or_else(|| object_name(t.relname(), Some(&column), "fkey"));
                let body = format!(
                    "FOREIGN KEY ({}) {}",
                    quote::ident_if_needed(&column),
                    c.body
                );
                steps.extend(foreign_key_steps(t, &name, &body, ctx)?);
            }
            ColumnConstraintSpec::Check { columns } => {
                let name = match name {
                    Some(n) => n,
                    None => check_name(t.relname(), columns.clone())?,
                };
                steps.extend(not_valid_then_validate(
                    t,
                    &name,
                    &c.body,
                    ConstraintType::Check,
                ));
            }
            ColumnConstraintSpec::Index(spec) => {
                index_constraint_allowed(ctx)?;
                let mut spec = spec.clone();
                spec.columns = single.to_vec();
                steps.extend(index_constraint_steps(t, name, &spec, ctx));
            }
        }
    }
    Ok(Recipe {
        kind: RecipeKind::AddColumn,
        target: table.clone(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::tests::{refused, steps};

    #[test]
    fn add_column_with_constraints() {
        assert_eq!(
            steps(
                "ALTER TABLE orders ADD COLUMN owner_id bigint DEFAULT 0 NOT NULL REFERENCES \
                 owners (id) ON DELETE SET NULL CONSTRAINT pos CHECK (owner_id >= 0) UNIQUE"
            ),
            [
                "ALTER TABLE orders ADD COLUMN IF NOT EXISTS owner_id bigint DEFAULT 0 NOT NULL",
                "ALTER TABLE orders ADD CONSTRAINT orders_owner_id_fkey FOREIGN KEY (owner_id) \
                 REFERENCES owners (id) ON DELETE SET NULL NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT orders_owner_id_fkey",
                "ALTER TABLE orders ADD CONSTRAINT pos CHECK (owner_id >= 0) NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT pos",
                "DROP INDEX CONCURRENTLY IF EXISTS orders_owner_id_key",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_owner_id_key ON orders \
                 (owner_id)",
                "ALTER TABLE orders ADD CONSTRAINT orders_owner_id_key UNIQUE USING INDEX \
                 orders_owner_id_key",
            ]
        );
        assert_eq!(
            steps("ALTER TABLE t ADD c timestamp with time zone CHECK (c > '2020-01-01')")[..3],
            [
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS c timestamp with time zone",
                "ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c > '2020-01-01') NOT VALID",
                "ALTER TABLE t VALIDATE CONSTRAINT t_c_check",
            ]
        );
        assert!(matches!(
            refused("ALTER TABLE t ADD COLUMN c int DEFAULT 0"),
            RecipeError::NoRecipe(_)
        ));
        assert!(matches!(
            refused("ALTER TABLE t ADD COLUMN id bigserial PRIMARY KEY"),
            RecipeError::Unsupported(_)
        ));
    }
}
