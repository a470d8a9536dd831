//! The PL/pgSQL reader: the SQL statements a `DO` block or a function body runs.
//!
//! The reader here is deliberately small: it splits the body into statements with the SQL
//! lexer (PL/pgSQL uses the core scanner, so quoting and comments follow the same rules),
//! strips the block structure in front of each statement (`<<label>>`, `DECLARE … BEGIN`,
//! `BEGIN`, `IF … THEN`, `ELSIF … THEN`, `ELSE`, `CASE … WHEN … THEN`, `WHILE/FOR/FOREACH …
//! LOOP`, `EXCEPTION WHEN … THEN`), skips PL/pgSQL's own statements (assignments, `PERFORM`,
//! `RAISE`, `RETURN`, …) and hands every remaining DDL candidate to a [`Visitor`] (the rules'
//! body check, `crate::rules::body`).
//!
//! `EXECUTE 'literal'` is read as the SQL it runs, every statement of it; `EXECUTE
//! pg_catalog.format('… %I … %L …', …)` is read with every placeholder replaced by a dummy name
//! or literal, which is enough for every rule that looks at the statement's shape — but only
//! when the template provably keeps its structure whatever the arguments (no `%s`, every
//! placeholder a token of its own), and only qualified: an unqualified `format` is whichever
//! function the search_path finds first. Any other dynamic SQL (concatenation, a variable,
//! `substr(…)`, whatever its first literal looks like) is reported to the visitor as
//! unverifiable.
//!
//! <https://www.postgresql.org/docs/current/plpgsql-structure.html>

use super::lexer::{self, LexOptions, Lexer, Token, TokenKind};
use super::prefilter::{self, StatementClass};

/// How long a statement may be when quoted in a message.
const SNIPPET: usize = 80;

/// What the reader finds in a body, handed to whoever checks it.
pub trait Visitor {
    /// What [`Visitor::template_start`] hands back to [`Visitor::template_end`].
    type Mark;
    /// One DDL candidate at `sql[start..end]` (`sql` is the body or SQL an `EXECUTE` runs).
    fn statement(&mut self, sql: &[u8], start: usize, end: usize);
    /// SQL the body runs that cannot be read, described for a human.
    fn unverifiable(&mut self, what: String);
    /// The statements of a `format()` template filled with dummies follow (`unfill` shows the
    /// dummies as the placeholders they stand for).
    fn template_start(&mut self) -> Self::Mark;
    /// The filled template's statements are over: whether what was found stands (`false`: the
    /// reader reports the `EXECUTE` as unverifiable instead).
    fn template_end(&mut self, mark: Self::Mark) -> bool;
}

/// Reads a PL/pgSQL body lexed with `opts`, handing what it finds to `visitor`.
pub fn read_plpgsql(body: &[u8], opts: LexOptions, visitor: &mut impl Visitor) {
    Reader { opts, visitor }.plpgsql(body);
}

/// Reads a `LANGUAGE sql` body lexed with `opts`, handing what it finds to `visitor`.
pub fn read_sql(body: &[u8], opts: LexOptions, visitor: &mut impl Visitor) {
    Reader { opts, visitor }.sql(body);
}

struct Reader<'v, V> {
    /// How the body is lexed.
    opts: LexOptions,
    visitor: &'v mut V,
}

impl<V: Visitor> Reader<'_, V> {
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
                self.visitor.statement(sql, span.start, span.end);
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
        if is_assignment(sql, tokens) {
            return;
        }
        if first.kind != TokenKind::Word {
            // Not a statement PL/pgSQL knows; what the server makes of it is not certain.
            self.visitor.unverifiable(format!(
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
            self.visitor.statement(sql, first.start, end);
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
                if let Some(s) = super::fallback::string_content(sql, *lit, self.opts) {
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
                if let Some(template) = super::fallback::string_content(sql, *lit, self.opts)
                    && let Some(filled) = fill_format(&template)
                {
                    let mark = self.visitor.template_start();
                    self.plain_sql(filled.as_bytes());
                    if self.visitor.template_end(mark) {
                        return;
                    }
                }
            }
            _ => {}
        }
        let qualify = if expr.first().is_some_and(|f| f.is_word(sql, "format")) {
            " (write `pg_catalog.format(…)` with `%I` / `%L` placeholders for a template ddlgate can read)"
        } else {
            ""
        };
        self.visitor.unverifiable(format!(
            "`EXECUTE {}` runs SQL built at run time, which ddlgate cannot check{qualify}",
            text()
        ));
    }
}

/// One step of a `DO` body of the plain shape [`plain_steps`] reads, in the order the block
/// runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An `IF` / `ELSIF` condition that calls no function and reads only relations named
    /// `pg_catalog.x`, `information_schema.x`, or these names without a schema (folded): the
    /// catalog read must confirm they resolve into `pg_catalog`.
    Condition { tables: Vec<String> },
    /// Runs no SQL: `NULL`, a `RAISE` of literals only, an exception handler's conditions.
    Nothing,
    /// A DDL candidate at `body[start..end]`, exactly as the reader hands it to its visitor.
    Statement { start: usize, end: usize },
    /// Anything else — an assignment, DML, `PERFORM`, `EXECUTE`, `CALL`, a condition calling
    /// a function or reading a user's table: it may do anything.
    Opaque,
}

/// The steps of a PL/pgSQL `DO` body, when it has the plain shape whose statements each run at
/// most once, in the order written: blocks (`BEGIN … [EXCEPTION WHEN … THEN …] END`), `IF …
/// THEN … [ELSIF …] [ELSE …] END IF`, and statements. `None` for anything else — `DECLARE`
/// (its defaults run before the first statement), loops, `CASE`, labels, compiler options,
/// a piece ddlgate cannot place. The caller decides what the steps allow (`rules::body::facts_plan`).
pub fn plain_steps(body: &[u8], opts: LexOptions) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for (n, span) in lexer::split_statements(body, opts).iter().enumerate() {
        let tokens = words(body, span.start, span.end, opts);
        if n == 0 && !tokens.first().is_some_and(|t| t.is_word(body, "BEGIN")) {
            return None;
        }
        let mut i = 0;
        while let Some(t) = tokens.get(i) {
            let is = |kw: &str| t.is_word(body, kw);
            if is("BEGIN") || is("THEN") || is("ELSE") || is("EXCEPTION") {
                i += 1;
            } else if is("IF") || is("ELSIF") || is("ELSEIF") {
                let then = find_word(body, &tokens, i + 1, "THEN")?;
                steps.push(condition(body, &tokens[i + 1..then]));
                i = then + 1;
            } else if is("WHEN") {
                // An exception handler's conditions: names and `SQLSTATE 'xxxxx'`, `OR`.
                let then = find_word(body, &tokens, i + 1, "THEN")?;
                let names = tokens[i + 1..then]
                    .iter()
                    .all(|t| matches!(t.kind, TokenKind::Word | TokenKind::String));
                if !names {
                    return None;
                }
                steps.push(Step::Nothing);
                i = then + 1;
            } else if is("END") {
                // `END`, `END IF`, `END label`: never `END LOOP` / `END CASE` (not accepted).
                let rest = &tokens[i + 1..];
                let fine = match rest {
                    [] => true,
                    [w] => {
                        w.kind == TokenKind::Word
                            && !w.is_word(body, "LOOP")
                            && !w.is_word(body, "CASE")
                    }
                    _ => false,
                };
                if !fine {
                    return None;
                }
                break;
            } else if t.kind != TokenKind::Word
                || ["DECLARE", "LOOP", "WHILE", "FOR", "FOREACH", "CASE"]
                    .iter()
                    .any(|kw| is(kw))
            {
                return None;
            } else {
                steps.push(plain_statement(body, &tokens[i..], span.end));
                break;
            }
        }
    }
    Some(steps)
}

/// A PL/pgSQL assignment: `x := …`, `x = …`, `r.f := …`, `a[1] := …`.
fn is_assignment(sql: &[u8], tokens: &[Token]) -> bool {
    tokens.get(1).is_some_and(|second| {
        second.kind == TokenKind::Operator
            && [&b":="[..], b"=", b"."]
                .iter()
                .any(|op| second.text(sql).starts_with(op))
            || second.text(sql) == b"["
    })
}

/// One statement of a plain body, its block structure stripped (see [`Reader::plpgsql_statement`],
/// whose order of tests this follows so the spans are the ones the reader hands on).
fn plain_statement(sql: &[u8], tokens: &[Token], end: usize) -> Step {
    let Some(first) = tokens.first() else {
        return Step::Nothing;
    };
    if is_assignment(sql, tokens) {
        return Step::Opaque;
    }
    if first.is_word(sql, "NULL") && tokens.len() == 1 {
        return Step::Nothing;
    }
    // `RAISE [level] ['message' | condition]`: no parameter, no USING expression.
    if first.is_word(sql, "RAISE")
        && tokens[1..].iter().all(|t| {
            matches!(t.kind, TokenKind::Word | TokenKind::String) && !t.is_word(sql, "USING")
        })
    {
        return Step::Nothing;
    }
    const PLPGSQL: &[&str] = &[
        "EXECUTE", "PERFORM", "RAISE", "RETURN", "ASSERT", "GET", "OPEN", "FETCH", "MOVE", "CLOSE",
        "NULL", "EXIT", "CONTINUE", "CALL", "COMMIT", "ROLLBACK",
    ];
    if PLPGSQL.iter().any(|kw| first.is_word(sql, kw)) {
        return Step::Opaque;
    }
    if prefilter::classify_word(first.text(sql)) == StatementClass::DdlCandidate {
        Step::Statement {
            start: first.start,
            end,
        }
    } else {
        Step::Opaque
    }
}

/// An `IF` condition: [`Step::Condition`] when it calls no function and reads only catalog
/// relations (see [`Step::Condition`]), else [`Step::Opaque`].
fn condition(sql: &[u8], tokens: &[Token]) -> Step {
    // Words that may stand before `(` without being a function call.
    const NOT_CALLS: &[&str] = &[
        "EXISTS", "IN", "NOT", "AND", "OR", "ANY", "ALL", "SOME", "SELECT", "WHERE", "FROM",
        "JOIN", "ON", "ARRAY", "DISTINCT",
    ];
    // Words that end a relation in FROM and cannot be its alias.
    const CLAUSES: &[&str] = &[
        "WHERE",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "CROSS",
        "NATURAL",
        "ON",
        "USING",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "FETCH",
        "HAVING",
        "WINDOW",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "FOR",
    ];
    // Words that read a relation other than after FROM / JOIN, or write (a data-modifying
    // WITH is refused by the server inside an expression, but the condition is not the place
    // to find out).
    const FORBIDDEN: &[&str] = &[
        "TABLE", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE", "INTO", "LATERAL", "ONLY", "ROWS",
    ];
    if tokens
        .iter()
        .any(|t| FORBIDDEN.iter().any(|w| t.is_word(sql, w)))
    {
        return Step::Opaque;
    }
    let word = |k: usize| tokens.get(k).filter(|t| t.kind == TokenKind::Word);
    let is_dot = |k: usize| {
        tokens
            .get(k)
            .is_some_and(|t| t.kind == TokenKind::Operator && t.text(sql) == b".")
    };
    // A cast to a type, or a literal of it (`'x'::t`, `t 'x'`), runs the type's code: a
    // domain's CHECK can call any function. Only built-in types whose names resolve into
    // `pg_catalog` (first on the search path, as the read confirms) or are qualified with it.
    let builtin = |k: usize| {
        word(k).is_some_and(|w| BUILTIN_TYPES.iter().any(|b| w.is_word(sql, b))) && !is_dot(k + 1)
            || word(k).is_some_and(|w| w.is_word(sql, "pg_catalog"))
                && is_dot(k + 1)
                && word(k + 2).is_some()
    };
    let mut tables = Vec::new();
    let mut k = 0;
    while let Some(t) = tokens.get(k) {
        if t.kind == TokenKind::Operator
            && t.text(sql).windows(2).any(|w| w == b"::")
            && !builtin(k + 1)
        {
            return Step::Opaque;
        }
        let literal_of = tokens
            .get(k + 1)
            .is_some_and(|n| matches!(n.kind, TokenKind::String | TokenKind::DollarString));
        if t.kind == TokenKind::Word
            && literal_of
            && !BEFORE_LITERAL.iter().any(|w| t.is_word(sql, w))
            && !builtin(k)
        {
            return Step::Opaque;
        }
        let calls = tokens
            .get(k + 1)
            .is_some_and(|n| n.kind == TokenKind::LParen);
        match t.kind {
            TokenKind::Word if calls && !NOT_CALLS.iter().any(|w| t.is_word(sql, w)) => {
                return Step::Opaque;
            }
            TokenKind::Word | TokenKind::LParen | TokenKind::RParen | TokenKind::Comma => {}
            TokenKind::Operator
            | TokenKind::String
            | TokenKind::DollarString
            | TokenKind::Number => {}
            // Quoted identifiers (a quoted function or relation name), parameters, anything else.
            _ => return Step::Opaque,
        }
        if t.is_word(sql, "FROM") || t.is_word(sql, "JOIN") {
            let mut at = k + 1;
            loop {
                if tokens.get(at).is_some_and(|n| n.kind == TokenKind::LParen) {
                    // A subquery: its own FROM is read as the walk goes on.
                    break;
                }
                let Some(first) = word(at) else {
                    return Step::Opaque;
                };
                if is_dot(at + 1) {
                    let Some(_) = word(at + 2) else {
                        return Step::Opaque;
                    };
                    if !(first.is_word(sql, "pg_catalog")
                        || first.is_word(sql, "information_schema"))
                    {
                        return Step::Opaque;
                    }
                    at += 3;
                } else {
                    tables.push(String::from_utf8_lossy(first.text(sql)).to_ascii_lowercase());
                    at += 1;
                }
                // An alias, with or without AS.
                if word(at).is_some_and(|w| w.is_word(sql, "AS")) {
                    at += 2;
                } else if word(at).is_some_and(|w| !CLAUSES.iter().any(|c| w.is_word(sql, c))) {
                    at += 1;
                }
                if t.is_word(sql, "FROM")
                    && tokens.get(at).is_some_and(|n| n.kind == TokenKind::Comma)
                {
                    at += 1;
                    continue;
                }
                break;
            }
        }
        k += 1;
    }
    Step::Condition { tables }
}

/// Built-in types a condition may cast to (see [`condition`]).
const BUILTIN_TYPES: &[&str] = &[
    "regclass",
    "regtype",
    "regnamespace",
    "regproc",
    "regprocedure",
    "regoper",
    "regrole",
    "regconfig",
    "oid",
    "name",
    "text",
    "varchar",
    "bpchar",
    "int",
    "int2",
    "int4",
    "int8",
    "integer",
    "smallint",
    "bigint",
    "bool",
    "boolean",
    "numeric",
    "float4",
    "float8",
    "real",
    "date",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "bytea",
];

/// Words a string literal may follow in a condition without being a literal of a type named
/// by the word.
const BEFORE_LITERAL: &[&str] = &[
    "AND", "OR", "NOT", "LIKE", "ILIKE", "SIMILAR", "TO", "ESCAPE", "SELECT", "WHEN", "THEN",
    "ELSE", "BETWEEN", "IS",
];

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
pub(crate) const FORMAT_ARG: &str = "ddlgate_arg";

/// `text` (a message about a filled template) with the dummies shown as the placeholders they
/// stand for: `'ddlgate_arg'` as `%L`, `ddlgate_arg` as `%I`. The template never contains the
/// dummy (see [`fill_format`]), so every occurrence is one ddlgate put there.
pub(crate) fn unfill(text: &str) -> String {
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

pub(crate) fn snippet(s: &str) -> String {
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
}
