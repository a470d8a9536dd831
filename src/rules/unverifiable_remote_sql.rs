//! `unverifiable-remote-sql`: a statement that runs SQL from a string on another connection —
//! `dblink_exec(…)`, `dblink(…)`, `dblink_send_query(…)`, … — inside a SELECT, a CTE, a
//! PREPARE, an EXPLAIN ANALYZE, `CREATE TABLE … AS`, `ALTER TABLE … USING`, ….
//!
//! - **Lock:** unknown: whatever the string does, on a connection ddlgate never sees.
//! - **Risk:** the string is an arbitrary statement (a `DROP TABLE`, an `ALTER TABLE` that
//!   rewrites a large table, a `LOCK`) executed by the server on a new connection — a loophole
//!   around every rule, the lock guard and the audit log. ddlgate cannot read it with
//!   certainty (it may be built at run time), so it fails closed.
//! - **Safe alternative:** send the statement itself through ddlgate, where it is checked; use
//!   dblink for reading remote data only through a connection that does not pass a string of
//!   DDL (and allow it explicitly with an override where that is the intent).
//! - **Rewrite:** no.
//!
//! Detection: the prefilter sends statements whose bytes mention `dblink` (or use a `U&"…"`
//! identifier, which is then unparsed) on to the analysis, which reads the tokens
//! (`sql::side_effects`). DDL that runs or stores a query (CREATE TABLE … AS, USING and DEFAULT
//! expressions, views, policies, rules, triggers) and DO / function bodies are read the same
//! way: a wrapper created through ddlgate would hide every later call. Bodies are lexed as
//! their string content reads (escape-string decoding is `rules::body`'s concern). A function that wraps dblink, created out of ddlgate's sight, is
//! indistinguishable from any other function call.
//!
//! <https://www.postgresql.org/docs/current/contrib-dblink-exec.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::lexer::LexOptions;
use crate::sql::side_effects;
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "unverifiable-remote-sql",
    lock: "unknown: the SQL runs on another connection ddlgate never sees",
    summary: "dblink_exec / dblink / dblink_send_query … calls, which run SQL from a string on another connection",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let function = match &ddl.kind {
        DdlKind::RemoteSql { function } => function.clone(),
        // A DO block runs its body now; a function runs it whenever it is called — a wrapper
        // around dblink created here would hide every later call.
        DdlKind::Do { body, .. }
        | DdlKind::CreateFunction {
            body: Some(body), ..
        } => side_effects::remote_call(body.as_bytes(), 0, body.len(), LexOptions::default())?,
        _ => return None,
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{function}(…) runs SQL from a string on another connection: ddlgate cannot see or check what it does there, so it could change any table outside every rule and the lock guard."
        ),
        hint: "Send the statement itself through ddlgate, where it is checked. If a remote read is intended, allow it explicitly with an override comment stating why.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_dblink_calls() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE EXTENSION dblink",
                "CREATE TABLE dblink_log (id int)",
                "DROP FUNCTION my_dblink_wrapper(text)",
                "GRANT EXECUTE ON FUNCTION dblink_exec(text, text) TO app",
                "DO $$ BEGIN RAISE NOTICE 'dblink'; END $$",
                "CREATE FUNCTION dblink_free() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ],
            &[
                "SELECT dblink_exec('dbname=app', 'DROP TABLE victim')",
                "SELECT * FROM dblink('dbname=app', 'SELECT 1') AS t(x int)",
                "SELECT dblink_send_query('c', 'ALTER TABLE victim DROP COLUMN x')",
                "WITH x AS (SELECT public.dblink_exec('c', 'x')) SELECT * FROM x",
                "EXPLAIN ANALYZE SELECT dblink_exec('c', 'x')",
                "PREPARE p AS SELECT dblink_exec('c', $1)",
                "CREATE TABLE x AS SELECT dblink_exec('c', 'DROP TABLE victim')",
                "ALTER TABLE t ALTER COLUMN c TYPE text USING dblink_exec('c', 'x')",
                "CREATE VIEW v AS SELECT dblink_exec('c', 'DROP TABLE victim')",
                "CREATE OR REPLACE VIEW v AS SELECT * FROM dblink('c', 'x') AS t(a int)",
                "CREATE POLICY p ON t USING (dblink_exec('c', 'x') IS NOT NULL)",
                "DO $$ BEGIN PERFORM dblink_exec('c', 'DROP TABLE victim'); END $$",
                "CREATE FUNCTION w() RETURNS text LANGUAGE sql AS $$ SELECT dblink_exec('c', 'DROP TABLE victim') $$",
                "CREATE FUNCTION w() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT dblink_exec('c', 'x'); END",
            ],
        );
    }
}
