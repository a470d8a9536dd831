//! `using-new-enum-value-in-transaction`: `ALTER TYPE t ADD VALUE 'v'` followed, in the same
//! multi-statement Query (or the same migration unit `ddlgate check` reads), by a statement
//! that uses `'v'`.
//!
//! - **Lock:** none on tables (ADD VALUE locks the type).
//! - **Risk:** from PostgreSQL 12 ADD VALUE may run in a transaction block, but the new value
//!   cannot be used until that transaction commits: the statement that uses it fails with
//!   55P04 (unsafe use of new value "v" of enum type t), and the whole migration rolls back.
//!   Before 12, ADD VALUE itself is refused there (`adding-enum-value-in-transaction`).
//! - **Safe alternative:** add the value in its own migration (committed), and use it in a
//!   later one.
//! - **How it is found:** the text after the statement is searched for the value's string
//!   literal (`'v'`, quotes doubled as SQL writes them) — one byte search, nothing parsed. A
//!   comment or an unrelated string that happens to hold the same text is flagged too (it is
//!   only a warning). An explicit transaction that uses the value in a later message is not
//!   seen here; PostgreSQL's own 55P04 stops it.
//! - **Rewrite:** no. Default: warn.
//!
//! <https://www.postgresql.org/docs/current/sql-altertype.html#SQL-ALTERTYPE-NOTES>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "using-new-enum-value-in-transaction",
    lock: "none on tables; the statement using the value fails (55P04) and the migration rolls back",
    summary: "ALTER TYPE … ADD VALUE 'v' and a later statement of the same transaction that uses 'v'",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTypeAddValue {
        type_name,
        value: Some(value),
        ..
    } = &ddl.kind
    else {
        return None;
    };
    if !ctx.in_transaction_block() || !ctx.at_least(12) || ctx.later.is_empty() {
        return None;
    }
    let literal = format!("'{}'", value.replace('\'', "''"));
    memchr::memmem::find(ctx.later, literal.as_bytes())?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{literal} is added to {type_name} and used later in the same transaction: PostgreSQL refuses to use a new enum value before the transaction that added it commits (55P04, unsafe use of new value), so that statement fails and the whole migration rolls back."
        ),
        hint: format!(
            "Add the value in a migration of its own, committed, and use {literal} in a later migration (or COMMIT between the two)."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run};

    fn ctx(later: &str, shares_unit: bool, version: u32) -> Ctx {
        Ctx {
            later: later.to_owned(),
            shares_unit,
            version: Some(version),
            ..Ctx::default()
        }
    }

    #[test]
    fn flags_a_value_used_later_in_the_same_transaction() {
        let add = "ALTER TYPE mood ADD VALUE 'meh'";
        let cases: &[(&str, &str, bool, u32, bool)] = &[
            // (statement, later text, shares its unit, server version, flagged)
            (add, "; UPDATE t SET m = 'meh'", true, 150_000, true),
            (
                add,
                "; ALTER TABLE t ALTER m SET DEFAULT 'meh'",
                true,
                150_000,
                true,
            ),
            (
                "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' BEFORE 'ok'",
                ";\nINSERT INTO t VALUES ('meh')",
                true,
                170_000,
                true,
            ),
            (
                "ALTER TYPE mood ADD VALUE 'it''s'",
                "; SELECT 'it''s'::mood",
                true,
                150_000,
                true,
            ),
            // Not used, or used as another value.
            (add, "; UPDATE t SET m = 'ok'", true, 150_000, false),
            (add, "; UPDATE t SET m = 'mehx'", true, 150_000, false),
            // Alone (autocommit): nothing follows in its transaction.
            (add, "", false, 150_000, false),
            // Before 12 ADD VALUE itself fails in a block (another rule says so).
            (add, "; UPDATE t SET m = 'meh'", true, 110_000, false),
        ];
        for &(sql, later, shares, version, flagged) in cases {
            let found = run(&RULE, sql, &ctx(later, shares, version));
            assert_eq!(found.is_some(), flagged, "{sql} then {later:?}");
            if let Some(f) = found {
                assert!(f.message.contains("55P04") && !f.hint.is_empty());
            }
        }
        // An explicit transaction counts as a block too.
        let mut c = ctx("; UPDATE t SET m = 'meh'", false, 150_000);
        c.tx = crate::protocol::TxStatus::InTransaction;
        assert!(run(&RULE, add, &c).is_some());
    }
}
