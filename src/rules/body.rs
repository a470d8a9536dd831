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
        body: body.as_bytes(),
        // Read for this block's statements (`facts_plan`), in the reading they were planned
        // for; a function body never has any.
        body_facts: match ctx.catalog {
            Some(f) if scs && !ctx.in_function_body => &f.body,
            _ => &[],
        },
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
    /// The body being read: a statement of it (not of SQL an `EXECUTE` runs) may have facts.
    body: &'a [u8],
    /// Catalog facts read before the block for some of its statements, by span in `body`
    /// (see [`facts_plan`]); the others are decided without facts.
    body_facts: &'a [crate::catalog::BodyFacts],
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
        // The block's own facts (`catalog`) say nothing about its statements: each gets those
        // read for it, when `facts_plan` found that nothing before it in the block (nor in the
        // message, `analysis::decide`) could have changed them.
        let facts = if std::ptr::eq(sql, self.body) && !self.filled_template {
            self.body_facts
                .iter()
                .find(|b| b.start == start && b.end == end)
                .map(|b| &b.facts)
        } else {
            None
        };
        let ctx = Context {
            in_function_body: true,
            catalog: facts,
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

/// At most this many statements of one block are asked about (the rest are decided without
/// facts): the read stays one bounded query.
pub const MAX_BODY_FACTS: usize = 16;

/// Which statements of a `DO` block's body may be decided with catalog facts read before the
/// block runs, and what the read must confirm about the block's conditions.
#[derive(Debug, Default)]
pub struct FactsPlan {
    /// The block has `IF` conditions: the read must confirm they run only built-in code.
    pub conditions: bool,
    /// Relations the block's `IF` conditions read without a schema: the read must find each
    /// in `pg_catalog` (`catalog::do_facts_query`).
    pub catalog_names: Vec<String>,
    /// The statements, by span in the body (as the reader hands them to the rules), with the
    /// statement understood.
    pub statements: Vec<(usize, usize, Ddl)>,
}

/// The statements of a `DO` body that get catalog facts, or `None` when none does — the same
/// rule as for a message's statements (`crate::created`), applied in body order: facts read
/// before the block hold for a statement only if nothing that runs before it could have
/// changed them. So:
///
/// - the body is PL/pgSQL (the default language), without a backslash (read one way only),
///   and of the plain shape [`plpgsql::plain_steps`] reads: blocks, `IF`/`ELSIF`/`ELSE`,
///   exception handlers, statements — no `DECLARE`, no loop, no `CASE`, no label, so every
///   statement runs at most once and in the order written;
/// - conditions call no function and read only catalog relations (checked again by the read:
///   `pg_catalog` first on the search path, unqualified names resolving there, no user
///   operator on the path); `NULL` and `RAISE` of literals run nothing;
/// - anything else (an assignment, DML, `PERFORM`, `EXECUTE`, `CALL`, a condition calling a
///   function) ends the plan: no statement from there on gets facts;
/// - a DDL statement gets facts unless an earlier statement of the body changed a relation it
///   names or a column it changes (`created::Touched`, as between a message's statements);
///   after it, a statement that
///   may change what names resolve to or what the facts say (anything but CREATE TABLE,
///   CREATE INDEX, ALTER TABLE without RENAME TO / SET SCHEMA, COMMENT, GRANT, REVOKE,
///   CREATE SEQUENCE — `created::keeps_facts`), or a CREATE TABLE … AS (it runs a query),
///   ends the plan;
/// - a nested `DO` never gets facts (it is unverifiable), a DROP TABLE neither (its facts
///   decide steps a body cannot run), nor a DROP …
///   CASCADE after another DDL statement (it may have created dependents).
///
/// Statements of a branch that does not run are asked about too, which is harmless. Whether
/// the message before the block changed anything is `analysis::decide`'s part.
pub fn facts_plan(language: Option<&str>, body: &str) -> Option<FactsPlan> {
    if !matches!(language, None | Some("plpgsql")) || body.contains('\\') {
        return None;
    }
    let opts = LexOptions {
        standard_conforming_strings: true,
        encoding: lexer::ClientEncoding::AsciiSafe,
    };
    let sql = body.as_bytes();
    let mut plan = FactsPlan::default();
    let mut touched = crate::created::Touched::default();
    let mut ran_ddl = false;
    for step in plpgsql::plain_steps(sql, opts)? {
        match step {
            plpgsql::Step::Nothing => {}
            plpgsql::Step::Opaque => break,
            plpgsql::Step::Condition { tables } => {
                plan.conditions = true;
                plan.catalog_names.extend(tables);
            }
            plpgsql::Step::Statement { start, end } => {
                let ddl = parse::understand(sql, start, end, opts);
                let eligible = touched.holds(&ddl)
                    && plan.statements.len() < MAX_BODY_FACTS
                    && !matches!(ddl.kind, DdlKind::DropTable { .. } | DdlKind::Do { .. })
                    && !(ran_ddl && matches!(ddl.kind, DdlKind::DropCascade { .. }));
                touched.touch(&ddl);
                ran_ddl = true;
                let keeps = crate::created::keeps_facts(&ddl)
                    && !(matches!(ddl.kind, DdlKind::CreateTable { .. })
                        && crate::created::made_from_query(sql, start, end, opts));
                if eligible {
                    plan.statements.push((start, end, ddl));
                }
                if !keeps {
                    break;
                }
            }
        }
    }
    plan.catalog_names.sort();
    plan.catalog_names.dedup();
    (!plan.statements.is_empty()).then_some(plan)
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

    fn planned(body: &str) -> Vec<String> {
        facts_plan(None, body)
            .map(|p| {
                p.statements
                    .iter()
                    .map(|(s, e, _)| body[*s..*e].to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Facts for a DO body's statements: only while nothing before them in the body could
    /// have changed what the read says.
    #[test]
    fn facts_are_planned_only_for_statements_nothing_before_could_change() {
        let idem = "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'i') THEN CREATE INDEX i ON t (x); END IF; END";
        assert_eq!(planned(idem), ["CREATE INDEX i ON t (x)"]);
        let p = facts_plan(None, idem).expect("a plan");
        assert_eq!(p.catalog_names, ["pg_indexes"]);
        // Exception handlers and literal RAISEs run nothing before the statement.
        assert_eq!(
            planned(
                "begin alter table auth.users alter column phone type text; exception when SQLSTATE '0A000' then raise notice 'x'; when others then null; end"
            ),
            ["alter table auth.users alter column phone type text"]
        );
        // Qualified catalogs are fine; two statements on different tables both get facts.
        assert_eq!(
            planned(
                "BEGIN IF EXISTS (SELECT FROM information_schema.columns c, pg_catalog.pg_class AS k WHERE c.table_name = 'u') THEN CREATE INDEX ON a (x); ELSE CREATE INDEX ON b (x); END IF; END"
            ),
            ["CREATE INDEX ON a (x)", "CREATE INDEX ON b (x)"]
        );
        // A statement on a table an earlier statement changed as a whole gets none; one that
        // changed a column only makes that column's facts stale (as between a message's
        // statements, `created::Touched`).
        assert_eq!(
            planned(
                "BEGIN ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0); CREATE INDEX ON t (c); CREATE INDEX ON u (c); END"
            ),
            [
                "ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0)",
                "CREATE INDEX ON u (c)"
            ]
        );
        assert_eq!(
            planned(
                "BEGIN ALTER TABLE t ADD COLUMN c int; CREATE INDEX ON t (c); ALTER TABLE t ALTER COLUMN c SET NOT NULL; END"
            ),
            ["ALTER TABLE t ADD COLUMN c int", "CREATE INDEX ON t (c)"]
        );
        // What may change names or facts ends the plan: settings, renames, temp tables,
        // writes, dynamic SQL, calls, assignments, a nested DO, a condition calling a function.
        for (body, expected) in [
            (
                "BEGIN SET search_path = evil; CREATE INDEX ON t (x); END",
                &[][..],
            ),
            (
                "BEGIN PERFORM set_config('search_path', 'evil', true); CREATE INDEX ON t (x); END",
                &[],
            ),
            (
                "BEGIN CREATE TABLE x (a int); ALTER TABLE x RENAME TO t; CREATE INDEX ON t (x); END",
                &["CREATE TABLE x (a int)"],
            ),
            (
                "BEGIN ALTER TABLE big RENAME TO t; CREATE INDEX ON t (x); END",
                &["ALTER TABLE big RENAME TO t"],
            ),
            (
                "BEGIN ALTER TABLE big SET SCHEMA s; CREATE INDEX ON t (x); END",
                &["ALTER TABLE big SET SCHEMA s"],
            ),
            (
                "BEGIN CREATE TEMP TABLE t (x int); CREATE INDEX ON t (x); END",
                &["CREATE TEMP TABLE t (x int)"],
            ),
            (
                "BEGIN INSERT INTO t SELECT generate_series(1, 1000000); CREATE INDEX ON t (x); END",
                &[],
            ),
            (
                "BEGIN TRUNCATE u; CREATE INDEX ON t (x); END",
                &["TRUNCATE u"],
            ),
            (
                "BEGIN EXECUTE 'SET search_path = evil'; CREATE INDEX ON t (x); END",
                &[],
            ),
            ("BEGIN CALL p(); CREATE INDEX ON t (x); END", &[]),
            ("BEGIN n := f(); CREATE INDEX ON t (x); END", &[]),
            (
                "BEGIN DO $i$ BEGIN SET search_path = evil; END $i$; CREATE INDEX ON t (x); END",
                &[],
            ),
            ("BEGIN DROP TABLE t; CREATE INDEX ON t (x); END", &[]),
            (
                "BEGIN CREATE TABLE t2 AS SELECT f(); CREATE INDEX ON t (x); END",
                &["CREATE TABLE t2 AS SELECT f()"],
            ),
            ("BEGIN IF f() THEN CREATE INDEX ON t (x); END IF; END", &[]),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM mine) THEN NULL; END IF; CREATE INDEX ON t (x); END",
                &["CREATE INDEX ON t (x)"],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM public.mine) THEN NULL; END IF; CREATE INDEX ON t (x); END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM \"pg_class\") THEN NULL; END IF; CREATE INDEX ON t (x); END",
                &[],
            ),
            (
                "BEGIN RAISE NOTICE '%', f(); CREATE INDEX ON t (x); END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (TABLE mine) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE EXISTS (SELECT 1 FROM ONLY mine)) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class k JOIN public.mine m ON true) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE 1 OPERATOR(public.===) 1) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            // A cast to, or a literal of, a type that is not built in runs its code: a
            // domain's CHECK may call any function.
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE 'x'::public.d IS NOT NULL) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE 'x'::d IS NOT NULL) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE d 'x' IS NOT NULL) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'x'::text::d) THEN CREATE INDEX ON t (x); END IF; END",
                &[],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'auth.sessions'::regclass AND conname LIKE 'x%' AND contype = pg_catalog.text 'f') THEN CREATE INDEX ON t (x); END IF; END",
                &["CREATE INDEX ON t (x)"],
            ),
            (
                "BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE oid = 'x'::pg_catalog.regclass) THEN CREATE INDEX ON t (x); END IF; END",
                &["CREATE INDEX ON t (x)"],
            ),
        ] {
            assert_eq!(planned(body), expected, "{body}");
        }
        // An unqualified relation in a condition must be confirmed in pg_catalog by the read.
        let p = facts_plan(
            None,
            "BEGIN IF EXISTS (SELECT 1 FROM mine) THEN NULL; END IF; CREATE INDEX ON t (x); END",
        )
        .expect("plan");
        assert_eq!(p.catalog_names, ["mine"]);
        // Shapes outside the plain subset get no facts at all: loops (the DDL may run again
        // after an INSERT in the same loop), DECLARE (defaults run first), CASE, labels,
        // other languages, a backslash (read two ways).
        for body in [
            "BEGIN FOR i IN 1..3 LOOP INSERT INTO t VALUES (i); CREATE INDEX ON t (x); END LOOP; END",
            "BEGIN LOOP CREATE INDEX ON t (x); END LOOP; END",
            "BEGIN WHILE true LOOP CREATE INDEX ON t (x); END LOOP; END",
            "DECLARE n int := f(); BEGIN CREATE INDEX ON t (x); END",
            "BEGIN CASE WHEN true THEN CREATE INDEX ON t (x); END CASE; END",
            "<<l>> BEGIN CREATE INDEX ON t (x); END",
            "#variable_conflict use_column BEGIN CREATE INDEX ON t (x); END",
            "BEGIN CREATE INDEX ON t (x) WHERE y <> E'\\n'; END",
        ] {
            assert!(planned(body).is_empty(), "{body}");
        }
        assert!(facts_plan(Some("plperl"), "BEGIN CREATE INDEX ON t (x); END").is_none());
    }

    /// The facts read for a body statement reach its rules, by its span; other statements of
    /// the body, and SQL an EXECUTE runs, get none.
    #[test]
    fn body_facts_reach_only_their_statement() {
        use crate::catalog::testing::{facts as with, table};
        let small = with(table("t", 10, 8192), Vec::new());
        let body = "BEGIN CREATE INDEX i ON t (x); CREATE INDEX j ON t (y); EXECUTE 'CREATE INDEX k ON t (z)'; END";
        let start = body.find("CREATE INDEX i").expect("i");
        let end = body.find("; CREATE INDEX j").expect("end");
        let facts = crate::catalog::Facts {
            body: vec![crate::catalog::BodyFacts {
                start,
                end,
                facts: small,
            }],
            ..Default::default()
        };
        let mut ctx = Ctx::in_tx();
        ctx.catalog = Some(facts);
        let r = inspect(None, body, &ctx.get());
        let flagged: Vec<&str> = r.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(r.findings.len(), 2, "{flagged:?}");
        assert!(
            flagged.iter().all(|m| !m.contains("CREATE INDEX i ")),
            "{flagged:?}"
        );
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
