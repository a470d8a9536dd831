//! `adding-serial-primary-key-field`: `ADD [CONSTRAINT n] PRIMARY KEY (cols)` without
//! `USING INDEX`, or `ADD COLUMN … PRIMARY KEY`.
//!
//! - **Lock:** ACCESS EXCLUSIVE while the unique index is built, plus an implicit
//!   `SET NOT NULL` scan of every key column that is still nullable — every read and write
//!   waits for both.
//! - **Safe alternative (R9):** first make every key column NOT NULL with the SET NOT NULL
//!   recipe (otherwise `USING INDEX` runs SET NOT NULL with a full scan under ACCESS
//!   EXCLUSIVE), then `CREATE UNIQUE INDEX CONCURRENTLY n ON t (cols)` and
//!   `ALTER TABLE t ADD CONSTRAINT n PRIMARY KEY USING INDEX n`.
//! - **Rewrite:** no (several statements, the index build outside any transaction).
//! - **`… PRIMARY KEY USING INDEX i` (C8):** flagged only when the catalog shows key columns
//!   of `i` that are not NOT NULL (by the index's attnums, `attnotnull`, and no NOT VALID
//!   not-null constraint on PostgreSQL 18): PostgreSQL then runs `SET NOT NULL` on them, a
//!   full scan under ACCESS EXCLUSIVE. ddlgate runs the SET NOT NULL recipe for each such
//!   column first, then the statement (a recipe); inside a transaction block it is blocked
//!   with those steps named. Key columns all NOT NULL, or no catalog: not flagged.
//! - **Not flagged:** tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-ADD-TABLE-CONSTRAINT-USING-INDEX>

use super::{Action, Context, Finding, Rewrite, Rule, steps_hint};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-serial-primary-key-field",
    lock: "ACCESS EXCLUSIVE while the index is built and the key columns are checked for NULLs: blocks every read and write",
    summary: "ADD PRIMARY KEY without USING INDEX, or USING INDEX over key columns the catalog shows nullable, or ADD COLUMN … PRIMARY KEY",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    // The small-table allowance: on a table the catalog shows small the scan/rewrite
    // finishes in milliseconds, so the statement runs as written.
    if ctx.is_small(table) {
        return None;
    }
    let pkey = format!("{}_pkey", table.name);
    let (message, hint) = ops.iter().find_map(|op| match op {
        AlterOp::AddConstraint(AddConstraint { name, kind: ConstraintKind::PrimaryKey { using_index: false }, .. }) => {
            let name = name.as_deref().unwrap_or(&pkey);
            Some((
                format!(
                    "Adding a PRIMARY KEY to {table} builds its index and checks the key columns for NULLs under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for both."
                ),
                format!(
                    "Make the key columns NOT NULL first with the CHECK … NOT VALID / VALIDATE / SET NOT NULL recipe, then run CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} (…) and ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}."
                ),
            ))
        }
        AlterOp::AddConstraint(AddConstraint { kind: ConstraintKind::PrimaryKey { using_index: true }, index: Some(index), .. }) => {
            let nullable = ctx.catalog.and_then(|f| f.nullable_key_columns(table, index))?;
            if nullable.is_empty() {
                return None;
            }
            let columns = nullable.join(", ");
            Some((
                format!(
                    "ADD PRIMARY KEY USING INDEX {index} on {table}: the key column(s) {columns} allow NULLs, so PostgreSQL first runs SET NOT NULL on them — a full scan of {table} under an ACCESS EXCLUSIVE lock, during which every read and write on {table} waits."
                ),
                format!(
                    "Make {columns} NOT NULL first without that scan — for each column: ALTER TABLE {table} ADD CONSTRAINT … CHECK (column IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT …; ALTER COLUMN column SET NOT NULL; DROP CONSTRAINT … — then run the ADD PRIMARY KEY USING INDEX {index}."
                ),
            ))
        }
        AlterOp::AddColumn(c) if c.constraints.iter().any(|k| matches!(k, ConstraintKind::PrimaryKey { .. })) => {
            let column = &c.name;
            Some((
                format!(
                    "Adding {table}.{column} as PRIMARY KEY fills the column, builds its index and checks it for NULLs under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for all of it."
                ),
                format!(
                    "Add {column} as a plain nullable column, backfill it in batches, make it NOT NULL with the CHECK … NOT VALID recipe, then CREATE UNIQUE INDEX CONCURRENTLY {pkey} ON {table} ({column}) and ALTER TABLE {table} ADD CONSTRAINT {pkey} PRIMARY KEY USING INDEX {pkey}."
                ),
            ))
        }
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message,
        hint: steps_hint(hint, ctx),
        rewrite: (!ctx.in_transaction_block()).then_some(Rewrite::Steps),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn using_index_over_nullable_key_columns_is_flagged_from_the_catalog() {
        use crate::catalog::testing::{facts, table as relation};
        use crate::catalog::{Facts, IndexColumn, IndexFacts};
        use crate::protocol::TxStatus;
        let index = |asked: &str, on_table, columns: &[(&str, bool)]| IndexFacts {
            asked: asked.to_owned(),
            exists: true,
            on_table,
            valid: true,
            key_columns: columns
                .iter()
                .map(|(c, not_null)| IndexColumn {
                    name: Some((*c).to_owned()),
                    not_null: *not_null,
                })
                .collect(),
        };
        let with = |rows: u64, i: IndexFacts, tx| Ctx {
            tx,
            catalog: Some(Facts {
                index: Some(i),
                ..facts(relation("big", rows, rows * 100), vec![])
            }),
            ..Ctx::default()
        };
        let sql = "ALTER TABLE big ADD CONSTRAINT big_email_pk PRIMARY KEY USING INDEX big_email_u";
        let nullable = index("big_email_u", true, &[("tenant", true), ("email", false)]);
        let not_null = index("big_email_u", true, &[("tenant", true), ("email", true)]);
        type Case<'a> = (&'a str, Ctx, Option<Option<Rewrite>>);
        let cases: Vec<Case> = vec![
            (
                "nullable, outside",
                with(1_000_000, nullable.clone(), TxStatus::Idle),
                Some(Some(Rewrite::Steps)),
            ),
            (
                "nullable, in tx",
                with(1_000_000, nullable.clone(), TxStatus::InTransaction),
                Some(None),
            ),
            (
                "all NOT NULL",
                with(1_000_000, not_null, TxStatus::Idle),
                None,
            ),
            (
                "small table",
                with(10, nullable.clone(), TxStatus::Idle),
                None,
            ),
            (
                "facts for another index",
                with(
                    1_000_000,
                    index("other", true, &[("email", false)]),
                    TxStatus::Idle,
                ),
                None,
            ),
            (
                "an index on another table",
                with(
                    1_000_000,
                    index("big_email_u", false, &[("email", false)]),
                    TxStatus::Idle,
                ),
                None,
            ),
            ("no catalog", Ctx::default(), None),
        ];
        for (case, ctx, expected) in cases {
            let f = run(&RULE, sql, &ctx);
            assert_eq!(f.as_ref().map(|f| f.rewrite), expected, "{case}");
            if let Some(f) = f {
                assert!(
                    f.message.contains("key column(s) email allow NULLs"),
                    "{case}: {}",
                    f.message
                );
                assert!(f.hint.contains("SET NOT NULL"), "{case}: {}", f.hint);
            }
        }
    }

    #[test]
    fn flags_primary_keys_built_in_place() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pkey",
                "ALTER TABLE t ADD PRIMARY KEY USING INDEX i",
                "ALTER TABLE t ADD COLUMN id bigint",
                "ALTER TABLE t ADD COLUMN id bigint UNIQUE",
                "CREATE TABLE t (id bigint PRIMARY KEY)",
            ],
            &[
                "ALTER TABLE t ADD PRIMARY KEY (id)",
                "alter table s.t add constraint k primary key (a, b)",
                "ALTER TABLE t ADD COLUMN id bigserial PRIMARY KEY",
                "ALTER TABLE t ADD COLUMN id bigint CONSTRAINT k PRIMARY KEY",
                "ALTER TABLE t ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY",
                "ALTER TABLE t ADD COLUMN n int, ADD PRIMARY KEY (id)",
            ],
        );
    }

    #[test]
    fn hints_give_the_using_index_recipe() {
        let f = run(
            &RULE,
            "ALTER TABLE accounts ADD PRIMARY KEY (id)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.hint.contains("CONCURRENTLY accounts_pkey ON accounts")
                && f.hint.contains("PRIMARY KEY USING INDEX accounts_pkey"),
            "{}",
            f.hint
        );
        let f = run(
            &RULE,
            "ALTER TABLE accounts ADD COLUMN id bigserial PRIMARY KEY",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("accounts.id") && f.hint.contains("ON accounts (id)"),
            "{}",
            f.hint
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh ADD PRIMARY KEY (id)", &ctx),
            None
        );
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD COLUMN id bigserial PRIMARY KEY",
                &ctx
            ),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other ADD PRIMARY KEY (id)", &ctx).is_some());
    }
}
