//! `adding-field-with-time-default`: `ALTER TABLE … ADD COLUMN c … DEFAULT now()` (or
//! `CURRENT_TIMESTAMP`, `CURRENT_DATE`, `LOCALTIMESTAMP`, `transaction_timestamp()`, …) on a
//! table that has rows.
//!
//! - **Lock:** ACCESS EXCLUSIVE, briefly: these functions are STABLE, so PostgreSQL 11+
//!   evaluates the default once and stores it in the catalog — no rewrite.
//! - **Risk:** not a lock but the data: *every existing row* gets the migration's time as its
//!   value, as if all of them had been created (or updated) at that moment. Code that reads
//!   the column as "when this row was created" is wrong for all old rows, silently.
//! - **Safe alternative:** add the column with no default (NULL for old rows) or backfill it
//!   with a meaningful value in batches, then `SET DEFAULT now()` for new rows only:
//!   `ALTER TABLE t ADD COLUMN c timestamptz; ALTER TABLE t ALTER COLUMN c SET DEFAULT now();`.
//! - **Rewrite:** no (the meaning is the client's to choose). Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction, and tables the catalog
//!   shows empty (a heap of 0 pages).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>

use super::{Action, Context, Finding, Rule};
use crate::sql::lexer::{LexOptions, Lexer, TokenKind};
use crate::sql::statement::{AlterOp, Ddl};

pub static RULE: Rule = Rule {
    id: "adding-field-with-time-default",
    lock: "ACCESS EXCLUSIVE, briefly (no rewrite); every existing row gets the migration's time",
    summary: "ADD COLUMN … DEFAULT now() / CURRENT_TIMESTAMP / CURRENT_DATE / … on a table with rows",
    default_action: Action::Warn,
    check,
};

/// SQL value functions written without parentheses.
const TIME_KEYWORDS: &[&str] = &[
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
];

/// STABLE built-ins returning the transaction's (or statement's) time.
const TIME_FUNCTIONS: &[&str] = &["now", "transaction_timestamp", "statement_timestamp"];

/// The first time function or keyword the default expression uses, as written lower-cased.
fn time_source(default: &str) -> Option<String> {
    let sql = default.as_bytes();
    let mut tokens = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .peekable();
    while let Some(t) = tokens.next() {
        if t.kind != TokenKind::Word {
            continue;
        }
        let word = String::from_utf8_lossy(t.text(sql)).to_ascii_lowercase();
        let call = tokens.peek().is_some_and(|n| n.kind == TokenKind::LParen);
        if TIME_KEYWORDS.contains(&word.as_str())
            || (call && TIME_FUNCTIONS.contains(&word.as_str()))
        {
            return Some(if call { format!("{word}()") } else { word });
        }
    }
    None
}

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    let empty = ctx
        .catalog
        .and_then(|f| f.relation_for(table))
        .is_some_and(|r| r.exists && r.max_rows == Some(0));
    if empty {
        return None;
    }
    let (column, source) = ops.iter().find_map(|op| match op {
        AlterOp::AddColumn(c) => c
            .default
            .as_ref()
            .and_then(|d| time_source(&d.text))
            .map(|s| (&c.name, s)),
        _ => None,
    })?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "The default {source} of the new column {table}.{column} is evaluated once, when the migration runs: every existing row of {table} gets that same time as its {column}, as if all of them had been written at that moment."
        ),
        hint: format!(
            "Add the column without a default (old rows keep NULL) or backfill old rows with a meaningful value, then set the default for new rows only: ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {source}."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Relation;
    use crate::catalog::testing::{facts, table as relation};
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_time_defaults_on_existing_tables() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ADD COLUMN c timestamptz",
                "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT '2020-01-01'",
                "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT now()",
                "ALTER TABLE t ADD COLUMN now_ok text DEFAULT 'now'",
                "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
            ],
            &[
                "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()",
                "ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP",
                "alter table t add column d date default current_date",
                "ALTER TABLE t ADD c timestamp DEFAULT LOCALTIMESTAMP",
                "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now() - interval '1 day'",
                "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT transaction_timestamp()",
            ],
        );
        let f = run(
            &RULE,
            "ALTER TABLE t ADD COLUMN created_at timestamptz DEFAULT now()",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(f.message.contains("now()") && f.hint.contains("SET DEFAULT now()"));
    }

    #[test]
    fn new_and_empty_tables_are_exempt() {
        let sql = "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()";
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("t"));
        table(&RULE, &ctx, &[sql], &[]);
        let empty = Relation {
            max_rows: Some(0),
            ..relation("t", 0, 8192)
        };
        let ctx = Ctx {
            catalog: Some(facts(empty, Vec::new())),
            ..Ctx::default()
        };
        table(&RULE, &ctx, &[sql], &[]);
        let full = Relation {
            max_rows: Some(291),
            ..relation("t", 10, 8192)
        };
        let ctx = Ctx {
            catalog: Some(facts(full, Vec::new())),
            ..Ctx::default()
        };
        table(&RULE, &ctx, &[], &[sql]);
    }
}
