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
//! - **Not flagged:** `… PRIMARY KEY USING INDEX` (whether its columns are already NOT NULL
//!   needs the catalog) and tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-ADD-TABLE-CONSTRAINT-USING-INDEX>

use super::{Action, Context, Finding, Rewrite, Rule, steps_hint};
use crate::sql::statement::{AddConstraint, AlterOp, ConstraintKind, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-serial-primary-key-field",
    lock: "ACCESS EXCLUSIVE while the index is built and the key columns are checked for NULLs: blocks every read and write",
    summary: "ADD PRIMARY KEY without USING INDEX, or ADD COLUMN … PRIMARY KEY",
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
