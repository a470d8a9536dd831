//! The statements inside a `DO` block or a function body, checked by the same rules.
//!
//! A `DO` block runs its statements now, in the caller's transaction, where ddlgate cannot see
//! them as separate statements: without this, wrapping a blocked statement in
//! `DO $$ BEGIN … END $$` would walk past the guard. A function body runs later, whenever the
//! function is called, from statements (`SELECT f()`) that look like ordinary traffic.
//!
//! The PL/pgSQL reader (`crate::sql::plpgsql`) finds the statements a body runs; this module
//! is its [`plpgsql::Visitor`]: it hands every DDL candidate to the statement model and the
//! rules, in a context that is always a transaction block (`in_function_body`), shows a filled
//! `format()` template's findings with the placeholders the user wrote, and reports as
//! unverifiable what the reader cannot read, a nested `DO`, and bodies in languages other than
//! `plpgsql` and `sql`.
//!
//! The body arrives decoded (`E'…'`, `U&'…'` escapes processed by the SQL layer, which refuses
//! what it cannot decode with certainty). It is lexed as the server will lex it when it runs:
//! in the server encoding (ASCII-compatible), under a `standard_conforming_strings` that may
//! differ from the session's now, so a body with a backslash is read both ways.
//!
//! <https://www.postgresql.org/docs/current/plpgsql-structure.html>

use std::collections::HashSet;

use super::{Context, Finding};
use crate::sql::lexer::{self, LexOptions};
use crate::sql::parse;
use crate::sql::plpgsql::{self, snippet, unfill};
use crate::sql::statement::{Ddl, DdlKind, Name};

/// What a body does, as far as the rules are concerned.
#[derive(Debug, Default)]
pub struct BodyReport {
    /// Findings of the rules on the body's statements, with the statement quoted in front of
    /// the message. They carry the inner rule's id, so profiles and overrides apply to them
    /// as to the same statement sent on its own; none carries a rewrite.
    pub findings: Vec<Finding>,
    /// SQL the body runs that ddlgate cannot check, described for a human.
    pub unverifiable: Vec<String>,
}

impl BodyReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.unverifiable.is_empty()
    }
}

/// Checks the statements of a body written in `language` (`None` is PL/pgSQL, the default of
/// both `DO` and `CREATE FUNCTION`), as the reader folded it: only the languages named exactly
/// `plpgsql` and `sql` are read. Any other name — PL/Perl, C, or a language created under
/// another name with PL/pgSQL's own handler — is a body ddlgate cannot read, reported as such.
///
/// The server reads the body when the block runs or the function is first called, under the
/// `standard_conforming_strings` in effect then (a `SET` earlier in the same Query, or the
/// calling session's, not necessarily this one's). A body with a backslash anywhere is
/// therefore read both ways and everything either reading finds is reported: without a
/// backslash both readings are the same.
pub fn inspect(language: Option<&str>, body: &str, ctx: &Context) -> BodyReport {
    let mut report = read(language, body, ctx, true);
    if body.contains('\\') {
        let other = read(language, body, ctx, false);
        for f in other.findings {
            if !report
                .findings
                .iter()
                .any(|g| g.rule == f.rule && g.message == f.message)
            {
                report.findings.push(f);
            }
        }
        for u in other.unverifiable {
            if !report.unverifiable.contains(&u) {
                report.unverifiable.push(u);
            }
        }
    }
    report
}

fn read(language: Option<&str>, body: &str, ctx: &Context, scs: bool) -> BodyReport {
    let mut walker = Walker {
        ctx: *ctx,
        created: ctx.created_in_tx.clone(),
        filled_template: false,
        // The body reaches the server's parser already converted to the server encoding,
        // which is always ASCII-compatible; here it is UTF-8, decoded from the statement.
        opts: LexOptions {
            standard_conforming_strings: scs,
            encoding: lexer::ClientEncoding::AsciiSafe,
        },
        report: BodyReport::default(),
    };
    match language {
        None | Some("plpgsql") => plpgsql::read_plpgsql(body.as_bytes(), walker.opts, &mut walker),
        Some("sql") => plpgsql::read_sql(body.as_bytes(), walker.opts, &mut walker),
        Some(other) => walker.report.unverifiable.push(format!(
            "the body is written in LANGUAGE {other}, which ddlgate cannot read"
        )),
    }
    walker.report
}

struct Walker<'a> {
    ctx: Context<'a>,
    /// Relations created earlier in the transaction, as the caller knows them.
    created: HashSet<Name>,
    /// Checking a `format()` template filled with dummy names.
    filled_template: bool,
    /// How the body is lexed (see [`inspect`]).
    opts: LexOptions,
    report: BodyReport,
}

impl plpgsql::Visitor for Walker<'_> {
    type Mark = (usize, usize);

    fn unverifiable(&mut self, what: String) {
        self.report.unverifiable.push(what);
    }

    fn template_start(&mut self) -> (usize, usize) {
        let mark = (self.report.findings.len(), self.report.unverifiable.len());
        // Dummy names say nothing about which table is meant: none of them counts
        // as a table created in this transaction.
        self.filled_template = true;
        mark
    }

    fn template_end(&mut self, (findings, unverifiable): (usize, usize)) -> bool {
        self.filled_template = false;
        // What the user reads shows the placeholders they wrote, never the dummy.
        for f in &mut self.report.findings[findings..] {
            f.message = unfill(&f.message);
            f.hint = unfill(&f.hint);
        }
        for u in &mut self.report.unverifiable[unverifiable..] {
            *u = unfill(u);
        }
        // A template that does not parse once filled in is no better than a
        // variable: say what ddlgate could not check.
        if self.report.unverifiable.len() == unverifiable
            && self.report.findings[findings..]
                .iter()
                .all(|f| f.rule != "unparsed-ddl")
        {
            return true;
        }
        self.report.findings.truncate(findings);
        self.report.unverifiable.truncate(unverifiable);
        false
    }

    /// One DDL candidate at `sql[start..end]`: understood and checked like a top-level statement
    /// inside a transaction block.
    fn statement(&mut self, sql: &[u8], start: usize, end: usize) {
        let ddl: Ddl = parse::understand(sql, start, end, self.opts);
        let quoted = snippet(&String::from_utf8_lossy(
            sql.get(start..end).unwrap_or_default(),
        ));
        match &ddl.kind {
            DdlKind::Do { .. } => {
                self.report.unverifiable.push(format!(
                    "`{quoted}` nests a DO block, which ddlgate does not follow"
                ));
                return;
            }
            // A function defined by a body never passes through ddlgate on its own, so it is
            // checked here like one sent directly (`ddl-in-function-body` reads its body). One
            // level only: a definition inside that body again is not followed, so hostile
            // nesting cannot recurse.
            DdlKind::CreateFunction { .. } if self.ctx.in_function_body => {
                self.report.unverifiable.push(format!(
                    "`{quoted}` defines a function inside a function body, which ddlgate does not follow"
                ));
                return;
            }
            _ => {}
        }
        // A template's dummy names stand for tables ddlgate cannot know: none of them is new,
        // whatever the transaction created under that name.
        let none = HashSet::new();
        let ctx = Context {
            in_function_body: true,
            later: &[],
            created_in_tx: if self.filled_template {
                &none
            } else {
                &self.created
            },
            ..self.ctx
        };
        for mut f in super::check(&ddl, &ctx) {
            f.message = format!("`{quoted}`: {}", f.message);
            f.rewrite = None;
            self.report.findings.push(f);
        }
        // A CREATE TABLE in the body does not make its name new for the statements after it:
        // `IF NOT EXISTS`, an exception handler or a branch may mean nothing was created, and
        // no catalog read happens inside the body (see `crate::created`).
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::Ctx;
    use crate::sql::plpgsql::FORMAT_ARG;

    fn report(language: Option<&str>, body: &str) -> BodyReport {
        let ctx = Ctx::default();
        inspect(language, body, &ctx.get())
    }

    fn rules(r: &BodyReport) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.rule).collect()
    }

    /// A `format()` template is checked with a dummy name in place of each `%I`: a table of
    /// that name created earlier in the transaction must not make the real, unknown target
    /// count as new (it would exempt a plain CREATE INDEX on any table from the lock rules).
    #[test]
    fn a_template_dummy_name_never_counts_as_a_new_table() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::new(None, FORMAT_ARG));
        let r = inspect(
            None,
            "BEGIN EXECUTE pg_catalog.format('CREATE INDEX ON %I (x)', victim); END",
            &ctx.get(),
        );
        assert_eq!(rules(&r), ["require-concurrent-index-creation"]);
        // Written out, the same name created in the transaction is new, as it should be.
        let r = inspect(
            None,
            &format!("BEGIN CREATE INDEX ON {FORMAT_ARG} (x); END"),
            &ctx.get(),
        );
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
    }

    #[test]
    fn statements_behind_block_structure_are_checked() {
        let r = report(
            None,
            "<<main>> DECLARE n int := 0; s text; BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'i') THEN
                 CREATE INDEX i ON t (x);
               ELSIF n = (CASE WHEN n > 1 THEN 2 ELSE 3 END) THEN
                 NULL;
               ELSE ALTER TABLE t DROP COLUMN c;
               END IF;
               FOR r IN SELECT * FROM u LOOP DROP INDEX j; END LOOP;
               n := n + 1; s = 'CREATE INDEX';
               PERFORM pg_sleep(0); RAISE NOTICE 'CREATE INDEX x ON y (z)';
             EXCEPTION WHEN duplicate_object THEN TRUNCATE t;
             END main",
        );
        assert_eq!(
            rules(&r),
            [
                "require-concurrent-index-creation",
                "ban-drop-column",
                "require-concurrent-index-deletion",
                "truncating-table"
            ]
        );
        assert!(r.unverifiable.is_empty(), "{:?}", r.unverifiable);
        assert!(r.findings.iter().all(|f| f.rewrite.is_none()));
        assert!(
            r.findings[0]
                .message
                .starts_with("`CREATE INDEX i ON t (x)`: "),
            "{}",
            r.findings[0].message
        );
        assert!(
            r.findings[0].hint.contains("function body or DO block"),
            "{}",
            r.findings[0].hint
        );
    }

    #[test]
    fn harmless_bodies_are_clean() {
        for body in [
            "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN CREATE TYPE mood AS ENUM ('a'); END IF; END",
            "BEGIN CREATE TABLE n (id int); ALTER TABLE n ADD COLUMN v text; END",
            "BEGIN INSERT INTO t VALUES (1); UPDATE t SET x = 2; EXECUTE 'SELECT 1'; EXECUTE pg_catalog.format('DELETE FROM %I', tbl); END",
            "BEGIN EXECUTE PG_CATALOG.format('CREATE INDEX CONCURRENTLY %I ON %I.%I (x)', a, b, c) ; END",
        ] {
            let r = report(None, body);
            // (the last one is flagged by its own rule, not as unverifiable)
            assert!(r.unverifiable.is_empty(), "{body}: {:?}", r.unverifiable);
            if !body.contains("CONCURRENTLY") {
                assert!(r.findings.is_empty(), "{body}: {:?}", rules(&r));
            } else {
                assert_eq!(rules(&r), ["ban-concurrent-index-creation-in-transaction"]);
            }
        }
        // A CREATE TABLE in a body does not make the name new (IF NOT EXISTS, an exception
        // handler): the index on it is checked as on an existing table.
        let r = report(
            None,
            "BEGIN CREATE TABLE IF NOT EXISTS n (id int); CREATE INDEX ON n (id); END",
        );
        assert_eq!(rules(&r), ["require-concurrent-index-creation"]);
        assert!(report(Some("sql"), "SELECT 1; INSERT INTO t VALUES (1)").is_clean());
        assert!(report(Some("sql"), "BEGIN ATOMIC SELECT 1; END").is_clean());
        assert!(report(Some("sql"), "RETURN a + 1").is_clean());
    }

    #[test]
    fn messages_show_format_placeholders_not_the_dummy() {
        let r = report(
            None,
            "BEGIN EXECUTE pg_catalog.format('DROP INDEX %I', i); EXECUTE pg_catalog.format('ALTER TABLE %I RENAME TO %I', a, b); END",
        );
        assert_eq!(
            rules(&r),
            ["require-concurrent-index-deletion", "renaming-table"]
        );
        let text: Vec<&str> = r
            .findings
            .iter()
            .flat_map(|f| [f.message.as_str(), f.hint.as_str()])
            .chain(r.unverifiable.iter().map(String::as_str))
            .collect();
        assert!(text.iter().all(|t| !t.contains(FORMAT_ARG)), "{text:?}");
        assert!(text.iter().any(|t| t.contains("%I")), "{text:?}");
        assert_eq!(
            unfill("x 'ddlgate_arg' \"ddlgate_arg\" ddlgate_arg"),
            "x %L %I %I"
        );
    }

    #[test]
    fn dynamic_sql_is_read_when_possible_and_reported_otherwise() {
        let r = report(None, "BEGIN EXECUTE 'CREATE INDEX i ON t (x)'; END");
        assert_eq!(rules(&r), ["require-concurrent-index-creation"]);
        let r = report(None, "BEGIN EXECUTE $q$DROP INDEX i$q$ INTO n; END");
        assert_eq!(rules(&r), ["require-concurrent-index-deletion"]);
        let r = report(
            None,
            "BEGIN EXECUTE pg_catalog.format('ALTER TABLE %I ALTER COLUMN %I TYPE bigint', t, c); END",
        );
        assert_eq!(rules(&r), ["changing-column-type"]);
        // A table created from a template is not known to be the one indexed next.
        let r = report(
            None,
            "BEGIN EXECUTE pg_catalog.format('CREATE TABLE %I (x int)', a); EXECUTE pg_catalog.format('CREATE INDEX ON %I (x)', b); END",
        );
        assert_eq!(rules(&r), ["require-concurrent-index-creation"]);
        for body in [
            "BEGIN EXECUTE 'CREATE INDEX i ON ' || quote_ident(t) || ' (x)'; END",
            "BEGIN EXECUTE stmt; END",
            "BEGIN EXECUTE pg_catalog.format('%s', stmt); END",
            "BEGIN EXECUTE format('DELETE FROM %I', tbl); END",
            "BEGIN EXECUTE myschema.format('DELETE FROM %I', tbl); END",
            "BEGIN FOR r IN EXECUTE q LOOP NULL; END LOOP; END",
            "BEGIN DO $x$ BEGIN NULL; END $x$; END",
        ] {
            let r = report(None, body);
            assert_eq!(
                r.unverifiable.len(),
                1,
                "{body}: {:?} {:?}",
                r.unverifiable,
                rules(&r)
            );
        }
        assert_eq!(
            report(Some("plpython3u"), "plpy.execute('DROP TABLE t')")
                .unverifiable
                .len(),
            1
        );
    }

    #[test]
    fn compiler_options_do_not_hide_the_block() {
        for body in [
            "#variable_conflict use_variable BEGIN DROP TABLE victim; END",
            "#print_strict_params on\n#option dump\nDECLARE x int; BEGIN DROP TABLE victim; END",
        ] {
            let r = report(None, body);
            assert_eq!(rules(&r), ["ban-drop-table"], "{body}");
        }
        // Anything else that does not start with a word is not read as harmless.
        let r = report(None, "BEGIN #junk DROP TABLE victim; END");
        assert_eq!(r.unverifiable.len(), 1, "{:?}", rules(&r));
    }

    #[test]
    fn functions_defined_in_a_body_are_checked_one_level_deep() {
        let r = report(
            None,
            "BEGIN CREATE FUNCTION k() RETURNS void LANGUAGE plpgsql AS 'BEGIN DROP TABLE victim; END'; END",
        );
        assert_eq!(rules(&r), ["ddl-in-function-body"]);
        assert!(
            r.findings[0].message.contains("DROP TABLE victim"),
            "{:?}",
            r.findings
        );
        let r = report(
            None,
            "BEGIN CREATE FUNCTION k() RETURNS void LANGUAGE plpgsql AS 'BEGIN NULL; END'; END",
        );
        assert!(r.is_clean(), "{:?} {:?}", rules(&r), r.unverifiable);
        // A definition inside that definition is not followed.
        let r = report(
            None,
            "BEGIN CREATE FUNCTION k() RETURNS void LANGUAGE plpgsql AS $a$ BEGIN CREATE FUNCTION j() RETURNS void LANGUAGE sql AS 'SELECT 1'; END $a$; END",
        );
        assert_eq!(rules(&r), ["ddl-in-function-body"]);
        assert!(
            r.findings[0].message.contains("does not follow"),
            "{:?}",
            r.findings
        );
        // Hostile nesting of definitions costs two levels, not one per definition.
        let mut body = "SELECT 1".to_owned();
        for i in 0..5_000 {
            body =
                format!("CREATE FUNCTION f{i}() RETURNS void LANGUAGE sql AS $q{i}$ {body} $q{i}$");
        }
        let r = report(Some("sql"), &body);
        assert_eq!(rules(&r), ["ddl-in-function-body"]);
    }

    #[test]
    fn sql_function_bodies_are_plain_statements() {
        let r = report(
            Some("sql"),
            "ALTER TABLE t ADD COLUMN c int NOT NULL; SELECT 1",
        );
        assert_eq!(rules(&r), ["adding-required-field"]);
        // Language names are compared as the reader folded them: a quoted "SQL" is another
        // language.
        let r = report(Some("SQL"), "SELECT 1");
        assert_eq!(r.unverifiable.len(), 1);
    }

    /// What a statement comes to once understood and checked.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        /// Not understood at all: `unparsed-ddl`.
        Unknown,
        /// Understood, and this rule among the findings.
        Finds(&'static str),
    }

    fn outcome(sql: &[u8], opts: LexOptions, rule: &'static str) -> Outcome {
        let ddl = parse::understand(sql, 0, sql.len(), opts);
        if ddl.understood == crate::sql::statement::Understood::Unknown {
            return Outcome::Unknown;
        }
        let ctx = Ctx::default();
        let findings = crate::rules::check(&ddl, &ctx.get());
        assert!(
            findings.iter().any(|f| f.rule == rule),
            "{}: {:?}",
            String::from_utf8_lossy(sql),
            findings
        );
        Outcome::Finds(rule)
    }

    #[test]
    fn escaped_bodies_are_decoded_before_they_are_read() {
        use Outcome::*;
        let drop = Finds("ban-drop-table");
        let fn_body = Finds("ddl-in-function-body");
        for (sql, expected) in [
            (r"DO E'BEGIN \x44ROP TABLE victim; END'", &drop),
            (r"DO e'BEGIN \104ROP TABLE victim; END'", &drop),
            (r"DO E'BEGIN \u0044ROP TABLE victim; END'", &drop),
            (r"DO E'BEGIN \U00000044ROP TABLE victim; END'", &drop),
            (r"DO E'BEGIN D\ROP TABLE victim; END'", &drop),
            (r"DO U&'BEGIN \0044ROP TABLE victim; END'", &drop),
            (r"DO u&'BEGIN \+000044ROP TABLE victim; END'", &drop),
            (
                r"DO U&'BEGIN !0044ROP TABLE victim; END' UESCAPE '!'",
                &drop,
            ),
            (
                r"DO LANGUAGE plpgsql E'BEGIN EXECUTE ''\x44ROP TABLE victim''; END'",
                &drop,
            ),
            (
                r"DO $$ BEGIN EXECUTE E'\x44ROP TABLE victim'; END $$",
                &drop,
            ),
            (
                r"DO $$ BEGIN EXECUTE U&'\0044ROP TABLE victim'; END $$",
                &drop,
            ),
            // Read under either standard_conforming_strings: with it off, the literal ends
            // early and DROP is a statement.
            (
                r"DO $$ BEGIN RAISE NOTICE 'a\''; DROP TABLE victim; --'; END $$",
                &drop,
            ),
            (
                r"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS E'BEGIN \x44ROP TABLE victim; END'",
                &fn_body,
            ),
            // What PostgreSQL rejects, or an escape ddlgate refuses to guess at: not understood.
            (r"DO E'BEGIN \vROP TABLE victim; END'", &Unknown),
            (r"DO E'BEGIN \u004 END'", &Unknown),
            (r"DO E'BEGIN \uD83D END'", &Unknown),
            (r"DO E'BEGIN \0 END'", &Unknown),
            (r"DO U&'BEGIN \004 END'", &Unknown),
            (r"DO U&'BEGIN NULL; END' UESCAPE '+'", &Unknown),
            (r"DO U&'BEGIN NULL; END' UESCAPE 'ab'", &Unknown),
            (r"DO U&'BEGIN NULL; END' UESCAPE", &Unknown),
            // A language name that cannot be read would leave the body read as PL/pgSQL.
            (
                r"CREATE FUNCTION f() RETURNS void LANGUAGE E'pl\vsql' AS $$ BEGIN NULL; END $$",
                &Unknown,
            ),
            // A body continued on the next line is joined by the server: not read in part.
            (
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS 'BEGIN NULL; '\n'DROP TABLE victim; END'",
                &Unknown,
            ),
        ] {
            let rule = match expected {
                Finds(r) => r,
                Unknown => "",
            };
            assert_eq!(
                &outcome(sql.as_bytes(), LexOptions::default(), rule),
                expected,
                "{sql}"
            );
        }
    }

    #[test]
    fn bodies_follow_the_statement_lex_options() {
        // standard_conforming_strings off: a plain literal is an escape string.
        let off = LexOptions {
            standard_conforming_strings: false,
            ..LexOptions::default()
        };
        let sql = br"DO 'BEGIN DROP TABLE victim; END'";
        assert_eq!(
            outcome(sql, off, "ban-drop-table"),
            Outcome::Finds("ban-drop-table")
        );
        // U&'' is an error with it off.
        let sql = br"DO U&'BEGIN NULL; END'";
        assert_eq!(outcome(sql, off, ""), Outcome::Unknown);
        // SJIS: 0x95 0x5C is one character whose second byte is a backslash. The server
        // converts it before reading the body, so the quote after it closes the literal and
        // DROP runs; read the same way here.
        let sjis = LexOptions {
            encoding: crate::sql::lexer::ClientEncoding::Sjis,
            ..LexOptions::default()
        };
        for sql in [
            &b"DO $$ BEGIN RAISE NOTICE E'\x95\x5c'; DROP TABLE victim; --'; END $$"[..],
            b"DO E'BEGIN RAISE NOTICE E''\x95\x5c''; DROP TABLE victim; --''; END'",
            // A dollar tag with a multibyte character in it.
            b"DO $\x95\x5c$ BEGIN DROP TABLE victim; END $\x95\x5c$",
        ] {
            assert_eq!(
                outcome(sql, sjis, "ban-drop-table"),
                Outcome::Finds("ban-drop-table")
            );
        }
        // ASCII-only bodies read the same in any encoding.
        let sql = b"DO $$ BEGIN DROP TABLE victim; END $$";
        assert_eq!(
            outcome(sql, sjis, "ban-drop-table"),
            Outcome::Finds("ban-drop-table")
        );
    }
}
