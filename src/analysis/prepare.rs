//! [`prepare`](super::prepare): one message's SQL read once — split, prefilter, each DDL
//! candidate understood once from the tokens the split kept.

use crate::sql::lexer::{self, LexOptions, StatementSpan, Token, TokenKind};
use crate::sql::parse;
use crate::sql::prefilter::{self, StatementClass};
use crate::sql::statement::{Ddl, DdlKind, Understood};

/// Span capacity kept between messages: enough for ordinary multi-statement Queries without
/// reallocating, while the buffer a large message needed is given back.
pub(super) const SPANS_KEPT: usize = 256;

/// One message's SQL, read once by [`prepare`]: where its statements are, what each one is,
/// and — for each DDL candidate — the statement understood, with the catalog query its
/// decision needs. Everything [`decide`](super::decide) and the session's catalog reads use comes from here:
/// nothing is split, classified or parsed twice.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The non-empty statements the server will execute (PostgreSQL discards empty ones), at
    /// most `max_statements`: a message of millions of `;` costs no memory here.
    pub spans: Vec<StatementSpan>,
    /// Each kept statement's prefilter class, as the lexer sees it (before
    /// `prefilter::for_server`, which needs the server version and is applied by [`decide`](super::decide)).
    pub classes: Vec<StatementClass>,
    /// Non-empty statements of the whole message, kept in `spans` or not.
    pub statements: usize,
    /// Any statement of the message (kept or not) is a DDL candidate, or a word that starts no
    /// command (a DDL candidate against a server newer than the command list).
    pub ddl: bool,
    /// `limits.max_statements_per_message` the split was cut at.
    pub max_statements: usize,
    /// The DDL candidates (and words that start no command), understood once, in statement
    /// order. Empty when the message is [`Prepared::unverifiable`].
    pub candidates: Vec<Candidate>,
    /// The backfill guard's candidates (span indices, in order): DML statements that are an
    /// UPDATE or a DELETE, or a `WITH` with the word UPDATE or DELETE in it. Only looked for
    /// when the session's profile has the guard on ([`prepare_with`]); empty otherwise.
    pub backfill: Vec<usize>,
}

/// One DDL candidate of a [`Prepared`] message.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its index in `Prepared::spans`.
    pub index: usize,
    /// What sqlparser (or the fallback classifier) understood.
    pub ddl: Ddl,
    /// Every token of the statement (comments included), from the split's one lexing pass:
    /// the readers after it (parse, override comments, rewrite, settings effects, audit text)
    /// share them instead of lexing the statement again.
    pub tokens: Vec<Token>,
}

impl Prepared {
    /// The message needs the DDL lane at a statement boundary: it holds DDL, or a statement
    /// the backfill guard examines.
    pub fn needs_lane(&self) -> bool {
        self.ddl || !self.backfill.is_empty()
    }

    /// The backfill guard's EXPLAINs for this message: (statement start offset, EXPLAIN text),
    /// and the start offsets of the candidates that hold parameters (`$1`): those are planned
    /// only with the client's values, bound at its Bind (`session::ddl::bound`).
    pub fn estimate_requests(
        &self,
        sql: &[u8],
        lex: LexOptions,
    ) -> (Vec<(usize, Vec<u8>)>, Vec<usize>) {
        let mut with_parameters = Vec::new();
        let mut out = Vec::with_capacity(self.backfill.len());
        for &i in &self.backfill {
            let span = &self.spans[i];
            let has_param = lexer::Lexer::at(sql, span.start, lex)
                .take_while(|t| t.start < span.end)
                .any(|t| t.kind == TokenKind::Param);
            if has_param {
                with_parameters.push(span.start);
                continue;
            }
            let text = sql.get(span.start..span.end).unwrap_or_default();
            out.push((span.start, crate::catalog::estimate::explain_sql(text)));
        }
        (out, with_parameters)
    }

    /// More statements than are analysed, DDL among them: refused whole, never understood.
    pub fn unverifiable(&self) -> bool {
        self.ddl && self.statements > self.max_statements
    }

    /// The DDL candidate at span `index`.
    pub fn candidate(&self, index: usize) -> Option<&Candidate> {
        self.candidates
            .binary_search_by_key(&index, |c| c.index)
            .ok()
            .map(|i| &self.candidates[i])
    }

    /// The statements the prefilter marked as DDL candidates, understood.
    pub fn ddl_candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .iter()
            .filter(|c| self.classes[c.index] == StatementClass::DdlCandidate)
    }

    /// The catalog queries of its DDL statements: (statement start offset, query), built from
    /// the statements as understood (the session asks once per message, and only when it
    /// reads facts for it).
    ///
    /// A `DROP TABLE`'s facts (is it a partition, of which parent) decide what it becomes
    /// only when it is the only statement of a simple Query: then a partition is detached
    /// concurrently first (or the warning says why not). Elsewhere they are not asked for: a
    /// message of thousands of DROP TABLEs costs no catalog query, and a prepared DROP TABLE
    /// (extended protocol, where ddlgate does not run steps) keeps its plain warning rather
    /// than being refused for steps it cannot run.
    pub fn catalog_requests(&self, source: super::Source) -> Vec<(usize, String)> {
        let alone = source == super::Source::Query && self.statements == 1;
        self.ddl_candidates()
            .filter(|c| alone || !matches!(c.ddl.kind, DdlKind::DropTable { .. }))
            .filter_map(|c| {
                let query = match &c.ddl.kind {
                    DdlKind::Do { language, body } => do_query(language.as_deref(), body),
                    _ => crate::catalog::facts_query(&c.ddl),
                };
                query.map(|q| (self.spans[c.index].start, q))
            })
            .collect()
    }

    /// The statement at span `index` as a message of its own (what a tool that sends a file
    /// statement by statement sends), understood as it was here: nothing is parsed again.
    pub fn single(&self, index: usize) -> Prepared {
        Prepared {
            spans: vec![self.spans[index]],
            classes: vec![self.classes[index]],
            statements: 1,
            ddl: matches!(
                self.classes[index],
                StatementClass::DdlCandidate | StatementClass::NotACommand
            ),
            max_statements: self.max_statements.max(1),
            backfill: if self.backfill.contains(&index) {
                vec![0]
            } else {
                Vec::new()
            },
            candidates: self
                .candidate(index)
                .map(|c| Candidate {
                    index: 0,
                    ..c.clone()
                })
                .into_iter()
                .collect(),
        }
    }

    /// Gives back the buffers a large message grew.
    pub(super) fn shrink(&mut self) {
        if self.spans.capacity() > SPANS_KEPT {
            self.spans.clear();
            self.spans.shrink_to(SPANS_KEPT);
        }
        if self.classes.capacity() > SPANS_KEPT {
            self.classes.clear();
            self.classes.shrink_to(SPANS_KEPT);
        }
        if self.backfill.capacity() > SPANS_KEPT {
            self.backfill.clear();
            self.backfill.shrink_to(SPANS_KEPT);
        }
    }
}

/// A `DO` block's one read: the facts of the body's statements that may use them
/// (`rules::body::facts_plan`), or `None` when none may or none needs any.
fn do_query(language: Option<&str>, body: &str) -> Option<String> {
    let plan = crate::rules::body::facts_plan(language, body)?;
    let statements: Vec<(usize, usize, String)> = plan
        .statements
        .iter()
        .filter_map(|(start, end, ddl)| crate::catalog::facts_query(ddl).map(|q| (*start, *end, q)))
        .collect();
    (!statements.is_empty())
        .then(|| crate::catalog::do_facts_query(plan.conditions, &plan.catalog_names, &statements))
}

/// Whether a DML statement may UPDATE or DELETE rows: it starts with UPDATE, DELETE or MERGE,
/// or it is a `WITH` in which one of those words appears (a data-modifying CTE or the main
/// statement; a word that is only a column name costs one EXPLAIN that finds no modification).
fn modifies_rows(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> bool {
    let Some(first) = span.first else {
        return false;
    };
    let modifies =
        |t: &Token| t.is_word(sql, "UPDATE") || t.is_word(sql, "DELETE") || t.is_word(sql, "MERGE");
    if modifies(&first) {
        return true;
    }
    first.is_word(sql, "WITH")
        && lexer::Lexer::at(sql, first.start, lex)
            .take_while(|t| t.start < span.end)
            .any(|t| modifies(&t))
}

/// Reads one message's SQL (see [`Prepared`]): one split, one prefilter pass per statement,
/// and each DDL candidate understood once. Ordinary traffic stops at the prefilter.
pub fn prepare(sql: &[u8], lex: LexOptions, max_statements: usize) -> Prepared {
    let mut out = Prepared::default();
    prepare_into(&mut out, sql, lex, max_statements);
    out
}

/// [`prepare`] into a reused value, so the hot path does not allocate per message.
pub fn prepare_into(out: &mut Prepared, sql: &[u8], lex: LexOptions, max_statements: usize) {
    prepare_with(out, sql, lex, max_statements, false)
}

/// [`prepare_into`], also finding the backfill guard's candidates when `backfill` is on (the
/// session's profile has `[backfill] enabled`). Off, the only cost is one test of the flag per
/// DML statement.
pub fn prepare_with(
    out: &mut Prepared,
    sql: &[u8],
    lex: LexOptions,
    max_statements: usize,
    backfill: bool,
) {
    out.backfill.clear();
    out.spans.clear();
    out.classes.clear();
    out.candidates.clear();
    out.statements = 0;
    out.ddl = false;
    out.max_statements = max_statements;
    // Ordinary traffic: one statement the byte scan can delimit, which is not DDL. It is
    // classified on its first token, exactly as the split below would, and not lexed further.
    if let Some(span) = lexer::single_statement(sql, lex) {
        let class = prefilter::classify(sql, &span);
        if !matches!(
            class,
            StatementClass::DdlCandidate | StatementClass::NotACommand
        ) {
            out.statements = 1;
            if max_statements > 0 {
                if backfill && class == StatementClass::Dml && modifies_rows(sql, &span, lex) {
                    out.backfill.push(0);
                }
                out.spans.push(span);
                out.classes.push(class);
            }
            return;
        }
    }
    // The tokens of the statements kept and marked DDL, by span index; `None` for a statement
    // of more than `lexer::MAX_KEPT_TOKENS` tokens.
    let mut kept: Vec<(usize, Option<Vec<Token>>)> = Vec::new();
    // Tokens the message may still keep (`lexer::MAX_KEPT_TOKENS` in all).
    let mut budget = lexer::MAX_KEPT_TOKENS;
    let Prepared {
        spans,
        classes,
        statements,
        ddl,
        backfill: modifies,
        ..
    } = out;
    // Statements whose first word may make them DDL keep their tokens; ordinary traffic
    // keeps none (a DML statement the byte check marks as DDL is lexed again below).
    let may_be_ddl = |t: &Token| match t.kind {
        TokenKind::Word => prefilter::classify_word(t.text(sql)) == StatementClass::DdlCandidate,
        TokenKind::LParen => false,
        _ => true,
    };
    lexer::each_statement_tokens(sql, lex, may_be_ddl, |span, tokens| {
        if span.is_empty() {
            return;
        }
        *statements += 1;
        let class = prefilter::classify(sql, &span);
        // A word that starts no command counts too: against a server newer than the command
        // list it is decided as a DDL candidate (`prefilter::for_server`).
        if matches!(
            class,
            StatementClass::DdlCandidate | StatementClass::NotACommand
        ) {
            *ddl = true;
        }
        if spans.len() < max_statements {
            if matches!(
                class,
                StatementClass::DdlCandidate | StatementClass::NotACommand
            ) {
                // The bound holds for the whole message, not per statement.
                let tokens = tokens.filter(|t| t.len() <= budget);
                budget -= tokens.map_or(0, <[Token]>::len);
                kept.push((spans.len(), tokens.map(<[Token]>::to_vec)));
            }
            if backfill && class == StatementClass::Dml && modifies_rows(sql, &span, lex) {
                modifies.push(spans.len());
            }
            spans.push(span);
            classes.push(class);
        }
    });
    if !out.ddl || out.unverifiable() {
        // Refused whole without being understood, or nothing to understand.
        return;
    }
    for (index, tokens) in kept {
        let span = &out.spans[index];
        // A DML statement the byte check marked as DDL kept no tokens: lexed here, as far as
        // the same bound.
        let tokens = match tokens {
            Some(t) if t.is_empty() => {
                let t: Vec<Token> = lexer::Lexer::at(sql, span.start, lex)
                    .take_while(|t| t.start < span.end)
                    .take(budget + 1)
                    .collect();
                let fits = t.len() <= budget;
                budget -= if fits { t.len() } else { 0 };
                fits.then_some(t)
            }
            t => t,
        };
        let Some(tokens) = tokens else {
            // Too long to hold its tokens: not understood, so it fails closed (`unparsed-ddl`)
            // without costing memory in proportion to its length.
            let ddl = Ddl {
                kind: DdlKind::Unknown,
                understood: Understood::Unknown,
            };
            out.candidates.push(Candidate {
                index,
                ddl,
                tokens: Vec::new(),
            });
            continue;
        };
        // Only DDL candidates are ever parsed; ordinary traffic stops at the prefilter.
        let ddl = parse::understand_tokens(sql, &tokens, span.start, span.end, lex);
        out.candidates.push(Candidate { index, ddl, tokens });
    }
}
