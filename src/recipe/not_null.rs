//! Recipe family R7: `ALTER COLUMN c SET NOT NULL` without a full scan under ACCESS EXCLUSIVE —
//! a NOT VALID not-null constraint on PostgreSQL 18, a temporary validated CHECK before it.
//! Also the first part of the primary-key recipe (`index`).

use super::constraint::validate;
use super::{Context, PG18, Precheck, Step, StepKind, Target};
use crate::sql::naming::object_name;
use crate::sql::quote;
use crate::sql::statement::LockMode;

/// R7: make `column` NOT NULL without a scan under ACCESS EXCLUSIVE.
///
/// PostgreSQL 18 has NOT VALID not-null constraints: add one named exactly as `SET NOT NULL`
/// would name it (`<table>_<column>_not_null`), then validate it — the catalog then holds the
/// same validated constraint `SET NOT NULL` creates. Partitioned tables keep the CHECK route
/// on 18 too, which works on every supported version.
///
/// Before 18 (12+): a temporary `CHECK (column IS NOT NULL) NOT VALID`, validated under SHARE
/// UPDATE EXCLUSIVE, lets `SET NOT NULL` skip its scan; the CHECK is dropped afterwards. Its
/// name carries `ddlgate` so it can never be mistaken for (or collide on 18 with) the
/// `_not_null` name PostgreSQL itself uses.
pub(super) fn not_null_steps(t: &Target, column: &str, ctx: &Context<'_>) -> Vec<Step> {
    let col = quote::ident_if_needed(column);
    if ctx.server_version_num >= PG18 && ctx.partitions.is_none() {
        let name = object_name(t.relname(), Some(column), "not_null");
        return vec![
            Step {
                sql: format!(
                    "{} ADD CONSTRAINT {} NOT NULL {col} NOT VALID",
                    t.alter(),
                    quote::ident_if_needed(&name)
                ),
                kind: StepKind::AddConstraintNotValid,
                lock: LockMode::AccessExclusive,
                locked: t.name.clone(),
                long_running: false,
                skip_if: Some(Precheck::ColumnHasNotNullConstraint {
                    table: t.name.clone(),
                    column: column.to_owned(),
                }),
            },
            validate(
                t,
                &name,
                Precheck::Not(Box::new(Precheck::NotNullPending {
                    table: t.name.clone(),
                    column: column.to_owned(),
                })),
            ),
        ];
    }
    let check = object_name(t.relname(), Some(column), "ddlgate_nn");
    let not_null = || Precheck::ColumnNotNull {
        table: t.name.clone(),
        column: column.to_owned(),
    };
    let check_exists = || Precheck::NotNullCheckExists {
        table: t.name.clone(),
        name: check.clone(),
        column: column.to_owned(),
    };
    vec![
        Step {
            sql: format!(
                "{} ADD CONSTRAINT {} CHECK ({col} IS NOT NULL) NOT VALID",
                t.alter(),
                quote::ident_if_needed(&check)
            ),
            kind: StepKind::AddConstraintNotValid,
            lock: LockMode::AccessExclusive,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(Precheck::Any(vec![not_null(), check_exists()])),
        },
        validate(
            t,
            &check,
            Precheck::Any(vec![
                not_null(),
                Precheck::ConstraintValidated {
                    table: t.name.clone(),
                    name: check.clone(),
                },
            ]),
        ),
        Step {
            sql: format!("{} ALTER COLUMN {col} SET NOT NULL", t.alter()),
            kind: StepKind::SetNotNull,
            lock: LockMode::AccessExclusive,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(not_null()),
        },
        Step {
            sql: format!(
                "{} DROP CONSTRAINT IF EXISTS {}",
                t.alter(),
                quote::ident_if_needed(&check)
            ),
            kind: StepKind::DropConstraint,
            lock: LockMode::AccessExclusive,
            locked: t.name.clone(),
            long_running: false,
            skip_if: Some(Precheck::Not(Box::new(check_exists()))),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Partition;
    use crate::recipe::tests::{PG15, ctx, plan_with, steps, steps_on};
    use crate::sql::statement::Name;

    #[test]
    fn set_not_null_before_18_uses_a_temporary_check() {
        assert_eq!(
            steps("ALTER TABLE public.users ALTER COLUMN email SET NOT NULL"),
            [
                "ALTER TABLE public.users ADD CONSTRAINT users_email_ddlgate_nn CHECK (email IS \
                 NOT NULL) NOT VALID",
                "ALTER TABLE public.users VALIDATE CONSTRAINT users_email_ddlgate_nn",
                "ALTER TABLE public.users ALTER COLUMN email SET NOT NULL",
                "ALTER TABLE public.users DROP CONSTRAINT IF EXISTS users_email_ddlgate_nn",
            ]
        );
        let r = plan_with("ALTER TABLE users ALTER email SET NOT NULL", &ctx(PG15)).expect("r");
        assert_eq!(
            r.steps[2].skip_if,
            Some(Precheck::ColumnNotNull {
                table: Name::bare("users"),
                column: "email".into()
            })
        );
        assert_eq!(
            r.steps.iter().map(|s| s.lock).collect::<Vec<_>>(),
            [
                LockMode::AccessExclusive,
                LockMode::ShareUpdateExclusive,
                LockMode::AccessExclusive,
                LockMode::AccessExclusive
            ]
        );
    }

    #[test]
    fn set_not_null_on_18_uses_a_not_valid_not_null_constraint() {
        assert_eq!(
            steps_on(
                "ALTER TABLE public.users ALTER COLUMN email SET NOT NULL",
                180_001
            ),
            [
                "ALTER TABLE public.users ADD CONSTRAINT users_email_not_null NOT NULL email NOT \
                 VALID",
                "ALTER TABLE public.users VALIDATE CONSTRAINT users_email_not_null",
            ]
        );
        // Partitioned tables keep the CHECK route on 18.
        let parts = [Partition::leaf(Name::bare("p1"))];
        let r = plan_with(
            "ALTER TABLE p ALTER COLUMN v SET NOT NULL",
            &Context {
                server_version_num: 180_001,
                partitions: Some(&parts),
                partition_of: None,
            },
        )
        .expect("recipe");
        assert_eq!(r.steps.len(), 4);
    }

    #[test]
    fn primary_key_using_index_runs_the_not_null_recipe_first() {
        let plan = |sql: &str, nullable: &[&str], version: u32| {
            let ddl = crate::sql::parse::understand(
                sql.as_bytes(),
                0,
                sql.len(),
                crate::sql::lexer::LexOptions::default(),
            );
            crate::recipe::plan_primary_key_using_index(
                sql.as_bytes(),
                0,
                sql.len(),
                crate::sql::lexer::LexOptions::default(),
                &ddl,
                nullable,
                &ctx(version),
            )
        };
        // (statement, nullable key columns, server, steps)
        let cases: [(&str, &[&str], u32, &[&str]); 3] = [
            (
                "ALTER TABLE big ADD CONSTRAINT big_email_pk PRIMARY KEY USING INDEX big_email_u;",
                &["email"],
                PG15,
                &[
                    "ALTER TABLE big ADD CONSTRAINT big_email_ddlgate_nn CHECK (email IS NOT NULL) NOT VALID",
                    "ALTER TABLE big VALIDATE CONSTRAINT big_email_ddlgate_nn",
                    "ALTER TABLE big ALTER COLUMN email SET NOT NULL",
                    "ALTER TABLE big DROP CONSTRAINT IF EXISTS big_email_ddlgate_nn",
                    "ALTER TABLE big ADD CONSTRAINT big_email_pk PRIMARY KEY USING INDEX big_email_u",
                ],
            ),
            (
                "alter table only s.big add primary key using index \"Big U\" deferrable",
                &["a", "B"],
                PG15,
                &[
                    "ALTER TABLE ONLY s.big ADD CONSTRAINT big_a_ddlgate_nn CHECK (a IS NOT NULL) NOT VALID",
                    "ALTER TABLE ONLY s.big VALIDATE CONSTRAINT big_a_ddlgate_nn",
                    "ALTER TABLE ONLY s.big ALTER COLUMN a SET NOT NULL",
                    "ALTER TABLE ONLY s.big DROP CONSTRAINT IF EXISTS big_a_ddlgate_nn",
                    "ALTER TABLE ONLY s.big ADD CONSTRAINT \"big_B_ddlgate_nn\" CHECK (\"B\" IS NOT NULL) NOT VALID",
                    "ALTER TABLE ONLY s.big VALIDATE CONSTRAINT \"big_B_ddlgate_nn\"",
                    "ALTER TABLE ONLY s.big ALTER COLUMN \"B\" SET NOT NULL",
                    "ALTER TABLE ONLY s.big DROP CONSTRAINT IF EXISTS \"big_B_ddlgate_nn\"",
                    "alter table only s.big add primary key using index \"Big U\" deferrable",
                ],
            ),
            (
                "ALTER TABLE big ADD PRIMARY KEY USING INDEX big_u",
                &["email"],
                180_001,
                &[
                    "ALTER TABLE big ADD CONSTRAINT big_email_not_null NOT NULL email NOT VALID",
                    "ALTER TABLE big VALIDATE CONSTRAINT big_email_not_null",
                    "ALTER TABLE big ADD PRIMARY KEY USING INDEX big_u",
                ],
            ),
        ];
        for (sql, nullable, version, expected) in cases {
            let r = plan(sql, nullable, version).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(r.kind, crate::recipe::RecipeKind::PrimaryKeyUsingIndex);
            let got: Vec<&str> = r.steps.iter().map(|s| s.sql.as_str()).collect();
            assert_eq!(got, expected, "{sql}");
            let last = r.steps.last().expect("steps");
            assert_eq!(last.kind, StepKind::AddConstraintUsingIndex);
            assert!(
                last.skip_if
                    .as_ref()
                    .is_some_and(|p| p.sql().contains("contype = 'p'")),
                "{sql}"
            );
        }
        // The constraint name the precheck looks for: CONSTRAINT n, else the index's.
        let r = plan(
            "ALTER TABLE big ADD PRIMARY KEY USING INDEX big_u",
            &["e"],
            PG15,
        )
        .expect("recipe");
        assert!(
            r.describe()
                .contains("PRIMARY KEY constraint big_u exists on big"),
            "{}",
            r.describe()
        );
        // Anything else is refused.
        for sql in [
            "ALTER TABLE big ADD PRIMARY KEY (id)",
            "ALTER TABLE big ADD CONSTRAINT u UNIQUE USING INDEX big_u",
            "ALTER TABLE IF EXISTS big ADD PRIMARY KEY USING INDEX big_u",
            "ALTER TABLE big ADD PRIMARY KEY USING INDEX big_u, ADD COLUMN c int",
        ] {
            assert!(plan(sql, &["e"], PG15).is_err(), "{sql}");
        }
    }
}
