//! The statements inside a `DO` block or a function body, checked by the same rules.
//!
//! A `DO` block runs its statements now, in the caller's transaction, where ddlgate cannot see
//! them as separate statements: without this, wrapping a blocked statement in
//! `DO $$ BEGIN … END $$` would walk past the guard. A function body runs later, whenever the
//! function is called, from statements (`SELECT f()`) that look like ordinary traffic.
//!
//! The PL/pgSQL reader here is deliberately small: it splits the body into statements with the
//! SQL lexer (PL/pgSQL uses the core scanner, so quoting and comments follow the same rules),
//! strips the block structure in front of each statement (`<<label>>`, `DECLARE … BEGIN`,
//! `BEGIN`, `IF … THEN`, `ELSIF … THEN`, `ELSE`, `CASE … WHEN … THEN`, `WHILE/FOR/FOREACH …
//! LOOP`, `EXCEPTION WHEN … THEN`), skips PL/pgSQL's own statements (assignments, `PERFORM`,
//! `RAISE`, `RETURN`, …) and hands every remaining DDL candidate to the statement model and the
//! rules, in a context that is always a transaction block (`in_function_body`).
//!
//! `EXECUTE 'literal'` is read as the SQL it runs, every statement of it; `EXECUTE
//! pg_catalog.format('… %I … %L …', …)` is read with every placeholder replaced by a dummy name
//! or literal, which is enough for every rule that looks at the statement's shape — but only
//! when the template provably keeps its structure whatever the arguments (no `%s`, every
//! placeholder a token of its own), and only qualified: an unqualified `format` is whichever
//! function the search_path finds first. Any other dynamic SQL (concatenation, a variable,
//! `substr(…)`, whatever its first literal looks like), a nested `DO`, and bodies in languages
//! other than `plpgsql` and `sql` are reported as unverifiable.
//!
//! The body arrives decoded (`E'…'`, `U&'…'` escapes processed by the SQL layer, which refuses
//! what it cannot decode with certainty). It is lexed as the server will lex it when it runs:
//! in the server encoding (ASCII-compatible), under a `standard_conforming_strings` that may
//! differ from the session's now, so a body with a backslash is read both ways.
//!
//! <https://www.postgresql.org/docs/current/plpgsql-structure.html>

use std::collections::HashSet;

use super::{Context, Finding};
use crate::sql::lexer::{self, LexOptions, Lexer, Token, TokenKind};
use crate::sql::parse;
use crate::sql::prefilter::{self, StatementClass};
use crate::sql::statement::{Ddl, DdlKind, Name};

/// How long a statement may be when quoted in a message.
const SNIPPET: usize = 80;

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
        None | Some("plpgsql") => walker.plpgsql(body.as_bytes()),
        Some("sql") => walker.sql(body.as_bytes()),
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

impl Walker<'_> {
    /// A `LANGUAGE sql` body: plain statements. SQL-standard bodies (`BEGIN ATOMIC … END`,
    /// `RETURN expr`) cannot hold utility statements at all.
    fn sql(&mut self, body: &[u8]) {
        let tokens = words(body, 0, body.len(), self.opts);
        if tokens.first().is_some_and(|t| t.is_word(body, "RETURN"))
            || (tokens.first().is_some_and(|t| t.is_word(body, "BEGIN"))
                && tokens.get(1).is_some_and(|t| t.is_word(body, "ATOMIC")))
        {
            return;
        }
        self.plain_sql(body);
    }

    /// Every DDL candidate of a string of plain SQL statements (an `EXECUTE`d literal, a SQL
    /// function's body).
    fn plain_sql(&mut self, sql: &[u8]) {
        for span in lexer::split_statements(sql, self.opts) {
            if !span.is_empty() && prefilter::classify(sql, &span) == StatementClass::DdlCandidate {
                self.statement(sql, span.start, span.end);
            }
        }
    }

    fn plpgsql(&mut self, body: &[u8]) {
        let mut declaring = false;
        for (n, span) in lexer::split_statements(body, self.opts).iter().enumerate() {
            let tokens = words(body, span.start, span.end, self.opts);
            let mut i = 0;
            // Compiler options, only in front of the body's block (`pl_function: comp_options
            // pl_block`): `#variable_conflict use_column`, `#print_strict_params on`,
            // `#option dump`, each a `#`, a name and a value.
            while n == 0
                && tokens
                    .get(i)
                    .is_some_and(|t| t.kind == TokenKind::Operator && t.text(body) == b"#")
                && tokens.get(i + 1).is_some_and(|t| t.kind == TokenKind::Word)
            {
                i += 3;
            }
            if declaring {
                // Declarations run no SQL (their default expressions are evaluated, but
                // cannot be utility statements); the block proper starts after BEGIN.
                match find_word(body, &tokens, 0, "BEGIN") {
                    Some(b) => {
                        declaring = false;
                        i = b + 1;
                    }
                    None => continue,
                }
            }
            let Some(start) = self.strip_structure(body, &tokens, i, &mut declaring) else {
                continue;
            };
            self.plpgsql_statement(body, &tokens[start..], span.end);
        }
    }

    /// Skips the block structure in front of a statement; returns the index of the statement's
    /// first token, or `None` when the piece holds no statement.
    fn strip_structure(
        &mut self,
        sql: &[u8],
        tokens: &[Token],
        mut i: usize,
        declaring: &mut bool,
    ) -> Option<usize> {
        loop {
            let t = *tokens.get(i)?;
            let is = |kw: &str| t.is_word(sql, kw);
            if t.kind == TokenKind::Operator && t.text(sql).starts_with(b"<<") {
                // <<label>>
                i = tokens[i..]
                    .iter()
                    .position(|t| t.kind == TokenKind::Operator && t.text(sql).ends_with(b">>"))
                    .map(|p| i + p + 1)?;
            } else if is("DECLARE") {
                match find_word(sql, tokens, i + 1, "BEGIN") {
                    Some(b) => i = b + 1,
                    None => {
                        *declaring = true;
                        return None;
                    }
                }
            } else if is("BEGIN") || is("ELSE") || is("LOOP") || is("THEN") || is("EXCEPTION") {
                i += 1;
            } else if is("IF") || is("ELSIF") || is("ELSEIF") || is("WHEN") {
                i = find_word(sql, tokens, i + 1, "THEN")? + 1;
            } else if is("CASE") {
                i = find_word(sql, tokens, i + 1, "WHEN")?;
            } else if is("WHILE") || is("FOR") || is("FOREACH") {
                let lp = find_word(sql, tokens, i + 1, "LOOP")?;
                // FOR r IN EXECUTE expr LOOP runs dynamic SQL too.
                if let Some(e) = find_word(sql, &tokens[..lp], i + 1, "EXECUTE") {
                    self.execute(sql, &tokens[e + 1..lp]);
                }
                i = lp + 1;
            } else if is("END") {
                // END [IF | LOOP | CASE] [label]
                return None;
            } else {
                return Some(i);
            }
        }
    }

    /// One PL/pgSQL statement, its block structure stripped.
    fn plpgsql_statement(&mut self, sql: &[u8], tokens: &[Token], end: usize) {
        let Some(first) = tokens.first() else { return };
        // Assignments: `x := …`, `x = …`, `r.f := …`, `a[1] := …`.
        if let Some(second) = tokens.get(1)
            && (second.kind == TokenKind::Operator
                && [&b":="[..], b"=", b"."]
                    .iter()
                    .any(|op| second.text(sql).starts_with(op))
                || second.text(sql) == b"[")
        {
            return;
        }
        if first.kind != TokenKind::Word {
            // Not a statement PL/pgSQL knows; what the server makes of it is not certain.
            self.report.unverifiable.push(format!(
                "`{}` is not a statement ddlgate can read",
                snippet(&String::from_utf8_lossy(
                    sql.get(first.start..end).unwrap_or_default()
                ))
            ));
            return;
        }
        const PLPGSQL: &[&str] = &[
            "PERFORM", "RAISE", "RETURN", "ASSERT", "GET", "OPEN", "FETCH", "MOVE", "CLOSE",
            "NULL", "EXIT", "CONTINUE", "CALL", "COMMIT", "ROLLBACK",
        ];
        if first.is_word(sql, "EXECUTE") {
            let stop = tokens
                .iter()
                .position(|t| t.is_word(sql, "INTO") || t.is_word(sql, "USING"))
                .unwrap_or(tokens.len());
            self.execute(sql, &tokens[1..stop]);
        } else if PLPGSQL.iter().any(|kw| first.is_word(sql, kw)) {
        } else if prefilter::classify_word(first.text(sql)) == StatementClass::DdlCandidate {
            self.statement(sql, first.start, end);
        }
    }

    /// `EXECUTE expr`: the SQL it runs, when ddlgate can know it for certain — the expression
    /// is exactly one string literal, or exactly one `format()` call whose template keeps its
    /// statement structure whatever the arguments (see [`fill_format`]). Every statement of
    /// that SQL is checked. Anything else (a variable, a concatenation, any other function,
    /// whatever its first literal looks like) is unverifiable.
    fn execute(&mut self, sql: &[u8], expr: &[Token]) {
        let text = || snippet(&String::from_utf8_lossy(expr_text(sql, expr)));
        match expr {
            [lit] if is_string(lit) => {
                if let Some(s) = crate::sql::fallback::string_content(sql, *lit, self.opts) {
                    self.plain_sql(s.as_bytes());
                    return;
                }
            }
            // Only `pg_catalog.format`: an unqualified `format` is whichever function the
            // search_path finds first when the body runs (`SET search_path = mine,
            // pg_catalog` puts a user's own `format` in front), so its result is not known.
            [schema, dot, f, open, lit, next, ..]
                if schema.kind == TokenKind::Word
                    && schema.text(sql).eq_ignore_ascii_case(b"pg_catalog")
                    && dot.kind == TokenKind::Operator
                    && dot.text(sql) == b"."
                    && f.is_word(sql, "format")
                    && open.kind == TokenKind::LParen
                    && is_string(lit)
                    && matches!(next.kind, TokenKind::Comma | TokenKind::RParen)
                    // The call is the whole expression: `format(…) || '; DROP …'` is not.
                    && lexer::matching_paren(expr, 3) == Some(expr.len() - 1) =>
            {
                if let Some(template) = crate::sql::fallback::string_content(sql, *lit, self.opts)
                    && let Some(filled) = fill_format(&template)
                {
                    let (findings, unverifiable) =
                        (self.report.findings.len(), self.report.unverifiable.len());
                    // Dummy names say nothing about which table is meant: none of them counts
                    // as a table created in this transaction.
                    self.filled_template = true;
                    self.plain_sql(filled.as_bytes());
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
                        return;
                    }
                    self.report.findings.truncate(findings);
                    self.report.unverifiable.truncate(unverifiable);
                }
            }
            _ => {}
        }
        let qualify = if expr.first().is_some_and(|f| f.is_word(sql, "format")) {
            " (write `pg_catalog.format(…)` with `%I` / `%L` placeholders for a template ddlgate can read)"
        } else {
            ""
        };
        self.report.unverifiable.push(format!(
            "`EXECUTE {}` runs SQL built at run time, which ddlgate cannot check{qualify}",
            text()
        ));
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
        let ctx = Context {
            in_function_body: true,
            created_in_tx: &self.created,
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

/// The non-comment, non-`;` tokens of `sql[start..end]`.
fn words(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Vec<Token> {
    Lexer::at(sql, start, opts)
        .take_while(|t| t.start < end)
        .filter(|t| !t.is_comment() && t.kind != TokenKind::Semicolon)
        .collect()
}

/// The first `kw` at parenthesis depth 0 from `from`, outside nested `CASE … END`.
fn find_word(sql: &[u8], tokens: &[Token], from: usize, kw: &str) -> Option<usize> {
    let (mut parens, mut cases) = (0usize, 0usize);
    for (i, t) in tokens.iter().enumerate().skip(from) {
        match t.kind {
            TokenKind::LParen => parens += 1,
            TokenKind::RParen => parens = parens.saturating_sub(1),
            _ if parens > 0 => {}
            _ if cases == 0 && t.is_word(sql, kw) => return Some(i),
            _ if t.is_word(sql, "CASE") => cases += 1,
            _ if t.is_word(sql, "END") => cases = cases.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn is_string(t: &Token) -> bool {
    matches!(t.kind, TokenKind::String | TokenKind::DollarString)
}

fn expr_text<'s>(sql: &'s [u8], expr: &[Token]) -> &'s [u8] {
    match (expr.first(), expr.last()) {
        (Some(a), Some(b)) => sql.get(a.start..b.end).unwrap_or_default(),
        _ => b"",
    }
}

/// The dummy a `format()` placeholder is replaced with.
const FORMAT_ARG: &str = "ddlgate_arg";

/// `text` (a message about a filled template) with the dummies shown as the placeholders they
/// stand for: `'ddlgate_arg'` as `%L`, `ddlgate_arg` as `%I`. The template never contains the
/// dummy (see [`fill_format`]), so every occurrence is one ddlgate put there.
fn unfill(text: &str) -> String {
    if !text.contains(FORMAT_ARG) {
        return text.to_owned();
    }
    text.replace(&format!("'{FORMAT_ARG}'"), "%L")
        .replace(&format!("\"{FORMAT_ARG}\""), "%I")
        .replace(FORMAT_ARG, "%I")
}

/// `format()`'s template with each `%I` replaced by a dummy name and each `%L` by a dummy
/// literal (with optional `n$`, `-` and width), `%%` by `%`; `None` unless the result provably
/// has the statement structure the server will run, whatever the arguments:
///
/// - `%s` inserts its argument as raw text (`format('SELECT %s', '1; DROP TABLE t')`): refused.
/// - `%I` (`quote_ident`) and `%L` (`quote_literal`) insert exactly one identifier or literal
///   token, but only where a token can start: inside a literal, a quoted identifier or a
///   comment a quoted argument can close it (`'… ''%I'' …'` with an identifier containing a
///   quote). So every dummy must come out as a token of its own, under either
///   `standard_conforming_strings` setting, and the template must not contain the dummy.
fn fill_format(template: &str) -> Option<String> {
    if template.contains(FORMAT_ARG) {
        return None;
    }
    let mut out = String::with_capacity(template.len() + 16);
    let (mut idents, mut literals) = (0usize, 0usize);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // Argument position `n$`, flags, width (`n`, `*` or `*n$`): skip them.
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '$' | '-' | '*'))
        {
            chars.next();
        }
        match chars.next()? {
            'I' => {
                out.push_str(FORMAT_ARG);
                idents += 1;
            }
            'L' => {
                out.push('\'');
                out.push_str(FORMAT_ARG);
                out.push('\'');
                literals += 1;
            }
            _ => return None,
        }
    }
    let quoted = format!("'{FORMAT_ARG}'");
    for scs in [true, false] {
        let opts = LexOptions {
            standard_conforming_strings: scs,
            encoding: lexer::ClientEncoding::AsciiSafe,
        };
        let (mut i, mut l) = (0usize, 0usize);
        for t in Lexer::new(out.as_bytes(), opts) {
            if t.unterminated {
                return None;
            }
            let text = t.text(out.as_bytes());
            if t.kind == TokenKind::Word && text == FORMAT_ARG.as_bytes() {
                i += 1;
            } else if t.kind == TokenKind::String && text == quoted.as_bytes() {
                l += 1;
            }
        }
        if (i, l) != (idents, literals) {
            return None;
        }
    }
    Some(out)
}

fn snippet(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= SNIPPET {
        s
    } else {
        let mut t: String = s.chars().take(SNIPPET).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::Ctx;

    fn report(language: Option<&str>, body: &str) -> BodyReport {
        let ctx = Ctx::default();
        inspect(language, body, &ctx.get())
    }

    fn rules(r: &BodyReport) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.rule).collect()
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

    #[test]
    fn format_templates() {
        assert_eq!(
            fill_format("ALTER TABLE %I ADD %1$I %-10L 100%%").as_deref(),
            Some("ALTER TABLE ddlgate_arg ADD ddlgate_arg 'ddlgate_arg' 100%")
        );
        for bad in [
            "bad %q",
            "trailing %",
            // Raw text can be anything, statements included.
            "SELECT %s",
            // A quoted argument inside a literal, identifier, comment or dollar quote can close it.
            "SELECT 'x%I'",
            "SELECT '%I'",
            "SELECT \"%L\"",
            "SELECT 1 /* %I */",
            "SELECT 1 -- %L",
            "SELECT $q$ %I $q$",
            // Glued to another token: not a token of its own.
            "SELECT x%I",
            "SELECT %I%I",
            "SELECT e%L",
            "SELECT %L%L",
            // The dummy itself in the template.
            "SELECT ddlgate_arg, %I",
        ] {
            assert_eq!(fill_format(bad), None, "{bad}");
        }
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
