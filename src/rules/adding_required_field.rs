//! `adding-required-field`: `ADD COLUMN … NOT NULL` without a DEFAULT (and not serial, identity
//! or generated, which supply their own values).
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly — but the statement fails outright on a non-empty
//!   table ("column contains null values"), and once it has succeeded on an empty one, old
//!   application code that does not know the column can no longer INSERT.
//! - **Safe alternative:** add the column nullable, deploy code that writes it, backfill in
//!   batches, then the SET NOT NULL recipe (CHECK … NOT VALID, VALIDATE, SET NOT NULL); or give
//!   it a non-volatile DEFAULT, which on PostgreSQL 11+ adds without a rewrite.
//! - **Rewrite:** no — choosing a default is an application decision.
//! - **Not flagged:** tables created earlier in the same transaction (empty, and no old code
//!   writes them). An inline `PRIMARY KEY` implies NOT NULL and is flagged too, since it fails
//!   the same way.
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-ADD-COLUMN>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-required-field",
    lock: "ACCESS EXCLUSIVE, briefly; fails on a non-empty table and breaks INSERTs from old code",
    summary: "ADD COLUMN … NOT NULL without a DEFAULT",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let column = ops.iter().find_map(|op| match op {
        AlterOp::AddColumn(c)
            if c.not_null
                && c.default.is_none()
                && !c.serial
                && !c.identity
                && !c.generated_stored
                && !c.generated_virtual =>
        {
            Some(&c.name)
        }
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Adding {column} as NOT NULL without a DEFAULT fails if {table} has any rows, and once it exists, application code that does not set {column} can no longer INSERT into {table}."
        ),
        hint: format!(
            "Add {column} as a nullable column, deploy code that writes it, backfill existing rows in batches, then ADD CONSTRAINT … CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, and SET NOT NULL. Or give it a non-volatile DEFAULT, which adds without a rewrite on PostgreSQL 11+."
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
    fn flags_not_null_without_default() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD COLUMN c int",
                "ALTER TABLE t ADD COLUMN c int NULL",
                "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0",
                "ALTER TABLE t ADD COLUMN c int DEFAULT 0 NOT NULL",
                "ALTER TABLE t ADD COLUMN c bigserial NOT NULL",
                "ALTER TABLE t ADD COLUMN c bigint NOT NULL GENERATED ALWAYS AS IDENTITY",
                "ALTER TABLE t ADD COLUMN c int NOT NULL GENERATED ALWAYS AS (a + 1) STORED",
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                "CREATE TABLE t (c int NOT NULL)",
            ],
            &[
                "ALTER TABLE t ADD COLUMN c int NOT NULL",
                "alter table s.t add c text not null",
                "ALTER TABLE t ADD COLUMN c int PRIMARY KEY",
                "ALTER TABLE t ADD COLUMN c int NOT NULL REFERENCES r (id)",
                "ALTER TABLE t ADD COLUMN a int DEFAULT 0, ADD COLUMN c int NOT NULL",
            ],
        );
    }

    #[test]
    fn message_names_table_and_column() {
        let f = run(
            &RULE,
            "ALTER TABLE users ADD COLUMN email text NOT NULL",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("email") && f.message.contains("users"),
            "{}",
            f.message
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh ADD COLUMN c int NOT NULL", &ctx),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other ADD COLUMN c int NOT NULL", &ctx).is_some());
    }
}
