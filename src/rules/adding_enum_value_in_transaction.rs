//! `adding-enum-value-in-transaction`: `ALTER TYPE … ADD VALUE` inside a transaction block on
//! PostgreSQL older than 12.
//!
//! - **Lock:** the type only, not tables. The problem is that before PostgreSQL 12 the server
//!   refuses the statement inside a transaction block ("ALTER TYPE … ADD cannot run inside a
//!   transaction block") unless the type was created in the same transaction: the migration
//!   fails.
//! - **PostgreSQL 12+:** allowed in a transaction, so not flagged — but the new value "cannot be
//!   used until after the transaction has been committed" (unless the type is new in the
//!   transaction); a later statement of the same transaction that uses it fails. Detecting
//!   that needs the transaction's later statements.
//! - **Safe alternative:** run it as its own statement outside any transaction.
//! - **Rewrite:** no.
//! - **Not flagged:** outside transaction blocks; types created earlier in the same transaction
//!   (when the session records them in `created_in_tx`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertype.html>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "adding-enum-value-in-transaction",
    lock: "none on tables: before PostgreSQL 12 the server refuses it inside a transaction block",
    summary: "ALTER TYPE … ADD VALUE inside a transaction block before PostgreSQL 12",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTypeAddValue { type_name, .. } = &ddl.kind else {
        return None;
    };
    if !ctx.in_transaction_block() || ctx.at_least(12) || ctx.is_new(type_name) {
        return None;
    }
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "ALTER TYPE {type_name} ADD VALUE cannot run {} before PostgreSQL 12: the server would refuse it and fail the migration.",
            ctx.block_description()
        ),
        hint: OUTSIDE_TRANSACTION_HINT.to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    const ADDS: &[&str] = &[
        "ALTER TYPE mood ADD VALUE 'meh'",
        "alter type s.mood add value if not exists 'meh' before 'ok'",
    ];

    #[test]
    fn flags_only_inside_blocks_before_pg_12() {
        let v11 = |ctx: Ctx| Ctx {
            version: Some(110_000),
            ..ctx
        };
        table(&RULE, &v11(Ctx::default()), ADDS, &[]);
        table(
            &RULE,
            &v11(Ctx::in_tx()),
            &[
                "ALTER TYPE mood RENAME VALUE 'a' TO 'b'",
                "CREATE TYPE mood AS ENUM ('a')",
            ],
            ADDS,
        );
        table(
            &RULE,
            &v11(Ctx {
                shares_unit: true,
                ..Ctx::default()
            }),
            &[],
            ADDS,
        );
        table(
            &RULE,
            &v11(Ctx {
                in_function_body: true,
                ..Ctx::default()
            }),
            &[],
            ADDS,
        );
        table(
            &RULE,
            &Ctx {
                version: Some(120_000),
                ..Ctx::in_tx()
            },
            ADDS,
            &[],
        );
        table(&RULE, &Ctx::in_tx(), ADDS, &[]);
        let f = run(&RULE, ADDS[0], &v11(Ctx::in_tx())).expect("flagged");
        assert!(
            f.message.contains("mood") && f.message.contains("inside a transaction block"),
            "{}",
            f.message
        );
    }

    #[test]
    fn types_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx {
            version: Some(110_000),
            ..Ctx::in_tx()
        };
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "ALTER TYPE fresh ADD VALUE 'x'", &ctx), None);
        assert!(run(&RULE, "ALTER TYPE other ADD VALUE 'x'", &ctx).is_some());
    }
}
