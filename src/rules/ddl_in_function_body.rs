//! `ddl-in-function-body`: `CREATE FUNCTION` / `CREATE PROCEDURE` whose body runs DDL another
//! rule flags, or dynamic SQL ddlgate cannot read.
//!
//! - **Lock:** nothing now; each call later takes whatever the body's statements take, inside
//!   the caller's transaction.
//! - **Why it matters:** the call arrives as `SELECT f()` or `CALL p()`, which is ordinary
//!   traffic to a proxy: ddlgate cannot see the statements the function runs. A cron job calling
//!   a partition-maintenance function that runs a plain `CREATE INDEX` stalls writes exactly as
//!   if the statement had been sent directly.
//! - **Default:** warn (the definition itself is harmless; a `DO` block, which runs at once, is
//!   checked statement by statement under the inner rules' own ids instead).
//! - **Safe alternative:** keep schema changes out of functions, or write the body with the safe
//!   forms (`CONCURRENTLY` is impossible in a function, so index maintenance belongs in a
//!   migration or a job that sends statements itself).
//!
//! <https://www.postgresql.org/docs/current/sql-createfunction.html>

use super::{Action, Context, Finding, Rule, body};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ddl-in-function-body",
    lock: "none now; every call takes the locks of the body's statements",
    summary: "a function or procedure whose body runs risky DDL ddlgate will not see when it is called",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::CreateFunction {
        name,
        language,
        body: Some(body),
    } = &ddl.kind
    else {
        return None;
    };
    // A body in any other language (PL/Python, PL/Perl, a language created under another name
    // with PL/pgSQL's handler, C) is opaque to ddlgate: reported as unverifiable, never taken
    // as harmless. C and `internal` functions name a compiled symbol, which can run any SQL
    // through SPI; they need a superuser to create, so flagging them costs little.
    let report = body::inspect(language.as_deref(), body, ctx);
    if report.is_clean() {
        return None;
    }
    let mut problems: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{} [{}]", f.message, f.rule))
        .collect();
    problems.extend(report.unverifiable.iter().cloned());
    let first_hint = report
        .findings
        .first()
        .map(|f| format!(" For the statement flagged first: {}", f.hint));
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Every call of {name} will run: {}. Calls reach the server as ordinary statements, so ddlgate cannot check or guard them then.",
            problems.join("; ")
        ),
        hint: format!(
            "Keep schema changes out of functions: run them as plain statements through ddlgate (in a migration or a job).{}",
            first_hint.unwrap_or_default()
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_bodies_with_risky_ddl() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := now(); RETURN NEW; END $$",
                "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql IMMUTABLE RETURN a + 1",
                "CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN CREATE TABLE IF NOT EXISTS x (id int); END $$",
                "DO $$ BEGIN CREATE INDEX i ON t (x); END $$",
            ],
            &[
                "CREATE FUNCTION f() RETURNS void LANGUAGE c AS 'lib', 'sym'",
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql_alias AS $$ BEGIN DROP TABLE t; END $$",
                "CREATE FUNCTION f() RETURNS void LANGUAGE \"PLPGSQL\" AS $$ BEGIN NULL; END $$",
                r"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS E'BEGIN \x44ROP TABLE t; END'",
                r"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS U&'BEGIN \0044ROP TABLE t; END'",
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS U&'BEGIN !0044ROP TABLE t; END' UESCAPE '!'",
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CREATE INDEX i ON t (x); END $$",
                "CREATE PROCEDURE p() LANGUAGE sql AS 'TRUNCATE t'",
                "CREATE FUNCTION maint(t text) RETURNS void AS $$ BEGIN EXECUTE 'LOCK TABLE ' || t; END $$ LANGUAGE plpgsql",
            ],
        );
    }
}
