//! `unverifiable-dynamic-sql`: a `DO` block that runs SQL ddlgate cannot read — `EXECUTE` of a
//! string built at run time that may be DDL, a nested `DO`, or a body in a language other than
//! PL/pgSQL.
//!
//! - **Lock:** unknown — whatever the generated statement takes, inside the caller's
//!   transaction.
//! - **Default:** blocked, for the same reason as `unparsed-ddl`: a guard that waves through
//!   what it cannot read is bypassed by wrapping the statement in `DO $$ … EXECUTE … $$`.
//!   `EXECUTE 'literal'` and `EXECUTE pg_catalog.format('template', …)` (with `%I` / `%L`
//!   placeholders only; an unqualified `format` may be a user's function earlier on the
//!   search_path) are read and checked by the other rules instead. Any other expression is flagged,
//!   whatever its first literal looks like: `substr('SELECT DROP TABLE t', 8)` or
//!   `'SELECT 1; ' || 'DROP TABLE t'` start with `SELECT` and run `DROP`.
//! - **Safe alternative:** send the statements themselves, one per statement, so each is
//!   checked; or allow the block with an override comment naming this rule.
//!
//! <https://www.postgresql.org/docs/current/plpgsql-statements.html#PLPGSQL-STATEMENTS-EXECUTING-DYN>

use super::{Action, Context, Finding, Rule, body};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "unverifiable-dynamic-sql",
    lock: "unknown: the SQL is built when the block runs",
    summary: "a DO block running SQL ddlgate cannot read (dynamic EXECUTE, nested DO, other languages)",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::Do { language, body } = &ddl.kind else {
        return None;
    };
    let report = body::inspect(language.as_deref(), body, ctx);
    let what = report.unverifiable.first()?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "This DO block runs SQL ddlgate cannot check: {what}{}. It could take any lock, inside the caller's transaction.",
            match report.unverifiable.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            }
        ),
        hint: "Send the statements themselves, one by one, so ddlgate can check each.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_dynamic_sql_it_cannot_read() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DO $$ BEGIN EXECUTE 'CREATE INDEX i ON t (x)'; END $$",
                "DO $$ BEGIN RAISE NOTICE 'hi'; END $$",
                "DO $$ BEGIN EXECUTE pg_catalog.format('UPDATE %I SET x = %L', t, n); END $$",
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$",
            ],
            &[
                "DO $$ BEGIN EXECUTE 'ALTER TABLE ' || t || ' DROP COLUMN c'; END $$",
                "DO $$ DECLARE q text := 'DROP TABLE t'; BEGIN EXECUTE q; END $$",
                "DO LANGUAGE plperl $$ spi_exec_query('DROP TABLE t') $$",
                "DO $$ BEGIN EXECUTE 'UPDATE t SET x = ' || n; END $$",
                "DO $$ BEGIN EXECUTE substr('SELECT DROP TABLE t', 8); END $$",
                "DO $$ BEGIN EXECUTE 'SELECT 1; ' || 'DROP TABLE t'; END $$",
                "DO $$ BEGIN EXECUTE 'SELECT 1' 
 'DROP TABLE t'; END $$",
                "DO $$ BEGIN EXECUTE pg_catalog.format('SELECT %s', x); END $$",
                "DO $$ BEGIN EXECUTE pg_catalog.format('SELECT 1 WHERE a = ''%I''', x); END $$",
                "DO $$ BEGIN EXECUTE pg_catalog.format('SELECT %I', x) || pg_catalog.format('; DROP TABLE t'); END $$",
                "DO LANGUAGE plpgsql_alias $$ BEGIN NULL; END $$",
                "DO $$ BEGIN EXECUTE format('UPDATE %I SET x = 1', t); END $$",
            ],
        );
    }
}
