//! `dropping-required-column-default`: `ALTER TABLE … ALTER COLUMN c DROP DEFAULT` where the
//! catalog shows `c` NOT NULL with a default — the second half of the "add a required column"
//! pattern (`ADD COLUMN c … NOT NULL DEFAULT x`, then `DROP DEFAULT`).
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly (catalog only).
//! - **Risk:** running application code that does not know the column yet inserts rows
//!   without it; the default filled it in, and from the moment the drop commits every such
//!   INSERT fails with 23502 (null value violates not-null constraint). Deploys are never
//!   atomic with a migration.
//! - **Safe alternative (expand/contract):** deploy the code that sets the column on every
//!   INSERT first, and drop the default in a later migration.
//! - **Decided on facts:** only when the server says the column is NOT NULL (validated) and
//!   has a default (`atthasdef`, not a generated column's expression). knex's `.alter()` sends
//!   `DROP DEFAULT` before every column change; on a column without a default it changes
//!   nothing and is not flagged.
//! - **In one message:** the facts are read before a message, so a multi-statement Query that
//!   adds the column and drops its default (a sqlx or golang-migrate file) is seen at the
//!   `ADD COLUMN c … NOT NULL … DEFAULT`: the text after it (`Context::later`) is searched for
//!   `ALTER [COLUMN] c DROP DEFAULT`. The same search serves `ddlgate check`, which has no
//!   catalog, for the rest of a transaction.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction (no running code uses
//!   them).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-DROP-DEFAULT>

use super::{Action, Context, Finding, Rule};
use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind};
use crate::sql::statement::{AlterOp, Name};

pub static RULE: Rule = Rule {
    id: "dropping-required-column-default",
    lock: "ACCESS EXCLUSIVE, briefly; INSERTs of running code that omit the column fail afterwards",
    summary: "ALTER COLUMN … DROP DEFAULT of a NOT NULL column that has a default (catalog)",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &crate::sql::statement::Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    if let Some(column) = ops.iter().find_map(|op| match op {
        AlterOp::AddColumn(c)
            if c.not_null && c.default.is_some() && drops_default_later(ctx.later, &c.name) =>
        {
            Some(&c.name)
        }
        _ => None,
    }) {
        return Some(finding(
            table,
            column,
            " (a later statement of this migration drops it)",
        ));
    }
    let facts = ctx.catalog?;
    let column = ops.iter().find_map(|op| match op {
        AlterOp::DropDefault { column } => facts
            .column(table, column)
            .filter(|c| c.exists && c.not_null && c.has_default)
            .map(|_| column),
        _ => None,
    })?;
    Some(finding(table, column, ""))
}

/// `ALTER [ COLUMN ] column DROP DEFAULT` somewhere in `later` (tokens, comments skipped).
fn drops_default_later(later: &[u8], column: &str) -> bool {
    if later.is_empty() {
        return false;
    }
    let names_column = |t: &Token| {
        let text = t.text(later);
        match t.kind {
            TokenKind::Word => text.eq_ignore_ascii_case(column.as_bytes()),
            TokenKind::QuotedIdent => {
                text.len() >= 2
                    && text.get(1..text.len() - 1).is_some_and(|inner| {
                        String::from_utf8_lossy(inner).replace("\"\"", "\"") == column
                    })
            }
            _ => false,
        }
    };
    let is = |t: &Token, word: &str| {
        t.kind == TokenKind::Word && t.text(later).eq_ignore_ascii_case(word.as_bytes())
    };
    // A sliding window of the last five code tokens.
    let mut window: [Option<Token>; 5] = [None; 5];
    for t in Lexer::new(later, LexOptions::default()).filter(|t| !t.is_comment()) {
        window.rotate_left(1);
        window[4] = Some(t);
        let [a, b, c, d, e] = window;
        let (Some(d), Some(e)) = (d, e) else { continue };
        if !(is(&d, "DROP") && is(&e, "DEFAULT")) {
            continue;
        }
        let short = matches!((b, c), (Some(b), Some(c)) if is(&b, "ALTER") && names_column(&c));
        let long = matches!((a, b, c), (Some(a), Some(b), Some(c)) if is(&a, "ALTER") && is(&b, "COLUMN") && names_column(&c));
        if short || long {
            return true;
        }
    }
    false
}

fn finding(table: &Name, column: &str, later: &str) -> Finding {
    Finding {
        rule: RULE.id,
        message: format!(
            "{table}.{column} is NOT NULL and its default fills it in for INSERTs that do not name it{later}: once the default is dropped, every INSERT of running code that omits {column} fails (23502, null value violates not-null constraint)."
        ),
        hint: format!(
            "Expand/contract: deploy the code that sets {column} on every INSERT first, then drop the default in a later migration; until then leave the default in place. (A transaction that sets a new default before it commits — knex's .alter() drops and re-sets it — leaves no gap.)"
        ),
        rewrite: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{column, facts, table as relation};
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    fn ctx_with(not_null: bool, has_default: bool) -> Ctx {
        let mut c = column("status", "text", 25, -1);
        c.not_null = not_null;
        c.nullable = !not_null;
        c.has_default = has_default;
        Ctx {
            catalog: Some(facts(relation("orders", 1_000_000, 1 << 30), vec![c])),
            ..Ctx::default()
        }
    }

    #[test]
    fn flags_only_a_required_column_that_has_a_default() {
        let drop = "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT";
        table(
            &RULE,
            &ctx_with(true, true),
            &[
                "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'new'",
                "ALTER TABLE orders ALTER COLUMN other DROP DEFAULT",
                "ALTER TABLE other ALTER COLUMN status DROP DEFAULT",
            ],
            &[drop, "alter table orders alter status drop default"],
        );
        // Nullable: old code's INSERTs store NULL instead of the default, and succeed.
        table(&RULE, &ctx_with(false, true), &[drop], &[]);
        // No default (knex's `.alter()` drops it before every change): nothing changes.
        table(&RULE, &ctx_with(true, false), &[drop], &[]);
        // Offline: no facts, nothing claimed.
        table(&RULE, &Ctx::default(), &[drop], &[]);
        let f = run(&RULE, drop, &ctx_with(true, true)).expect("flagged");
        assert!(f.message.contains("23502") && f.hint.contains("Expand/contract"));
    }

    #[test]
    fn adding_then_dropping_the_default_in_one_message_is_seen_at_the_add() {
        let add = "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new'";
        let later = |text: &str| Ctx {
            later: text.to_owned(),
            shares_unit: true,
            ..Ctx::default()
        };
        for (text, flagged) in [
            (
                "; ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;",
                true,
            ),
            ("; alter table orders alter status drop default", true),
            (
                "; ALTER TABLE orders ALTER COLUMN \"status\" DROP DEFAULT",
                true,
            ),
            (
                "; ALTER TABLE orders ALTER COLUMN /* c */ status DROP DEFAULT",
                true,
            ),
            (
                "; ALTER TABLE orders ALTER COLUMN other DROP DEFAULT",
                false,
            ),
            (
                "; ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'x'",
                false,
            ),
            (
                "; ALTER TABLE orders ALTER COLUMN \"Status\" DROP DEFAULT",
                false,
            ),
            ("", false),
        ] {
            assert_eq!(run(&RULE, add, &later(text)).is_some(), flagged, "{text}");
        }
        // Nullable, or without a default: dropping it later breaks nothing.
        let drop = "; ALTER TABLE orders ALTER COLUMN status DROP DEFAULT";
        for sql in [
            "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new'",
            "ALTER TABLE orders ADD COLUMN status text NOT NULL",
        ] {
            assert!(run(&RULE, sql, &later(drop)).is_none(), "{sql}");
        }
        let f = run(&RULE, add, &later(drop)).expect("flagged");
        assert!(f.message.contains("a later statement"), "{}", f.message);
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = ctx_with(true, true);
        ctx.tx = crate::protocol::TxStatus::InTransaction;
        ctx.created.insert(Name::bare("orders"));
        table(
            &RULE,
            &ctx,
            &["ALTER TABLE orders ALTER COLUMN status DROP DEFAULT"],
            &[],
        );
    }
}
