//! The analysis hook: every statement's SQL text (from a simple Query or a Parse) passes through
//! here before it is forwarded, together with its context (transaction status, how many
//! statements share its protocol unit, server version, relations the server confirmed the
//! transaction created — see `created`). Two pure calls:
//!
//! 1. [`prepare`] reads the message once: the lexer splits it exactly where the server will,
//!    the keyword prefilter classifies each statement (ordinary traffic stops here — no full
//!    parse), and each DDL candidate is understood once (`sql::parse`: sqlparser, with the
//!    token-based fallback classifier behind it) from the tokens the split kept. The result is
//!    a [`Prepared`], which also gives the catalog queries its DDL needs.
//! 2. [`decide`] takes the [`Prepared`] message, the facts read for it ([`Facts`]: catalog facts
//!    and the created-in-transaction answer) and its [`Context`], runs the rules, lets the
//!    session's policy profile decide, and returns a [`Decided`]: the [`Plan`] — forward the
//!    message untouched (the common case), or forward it with statements replaced (by their
//!    rewritten safe form, or by a `DO` block that raises ddlgate's error, see `act`), run it
//!    under the lock guard with its final retry policy, or run a recipe's steps instead — with
//!    notices for the client, and what to count ([`Tally`]).
//!
//! [`record`] is the one place that counts (`Counters`) and logs (decisions at info, SQL at
//! debug). The session holds an [`Analyzer`]: the prepared message and the created-in-
//! transaction tracker between the calls it makes. `ddlgate check` calls [`prepare`] and
//! [`decide`] itself.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;

use crate::act::{self, BlockError};
use crate::guard::{GuardPlan, Retry};
use crate::policy::{self, Decision, DecisionCounters, Profile};
use crate::protocol::TxStatus;
use crate::rewrite;
use crate::rules::{self, Action};
use crate::sql::lexer::{self, LexOptions, StatementSpan, Token, TokenKind};
use crate::sql::parse;
use crate::sql::prefilter::{self, StatementClass};
use crate::sql::statement::{Ddl, DdlKind, Name, Understood};

/// Counters for everything the hook sees, kept in one place (the metrics endpoint exports them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Simple Query messages analysed.
    pub queries: AtomicU64,
    /// Parse messages analysed.
    pub parses: AtomicU64,
    /// Statements by prefilter class (indexed by `StatementClass::index`).
    pub statements: [AtomicU64; StatementClass::ALL.len()],
    /// Simple Queries that carried more than one statement (one implicit transaction).
    pub multi_statement_queries: AtomicU64,
    /// Extended-protocol units (messages up to a Sync) that ran more than one Execute, i.e.
    /// pipelines, which PostgreSQL also runs as one implicit transaction.
    pub pipelined_units: AtomicU64,
    /// Extended-protocol units completed (Syncs seen).
    pub extended_units: AtomicU64,
    /// DDL candidates by how they were understood (indexed by `understood_index`): parsed by
    /// sqlparser, recognised by the fallback classifier, or not understood at all (the
    /// `unparsed-ddl` case the policy fails closed on).
    pub ddl_understood: [AtomicU64; 3],
    /// Policy decisions per rule and action, overrides, invalid overrides.
    pub decisions: DecisionCounters,
    /// Rewrites that were refused after re-parsing or re-checking (the statement was blocked
    /// instead).
    pub rewrite_failures: AtomicU64,
    /// The lock guard.
    pub guard: GuardCounters,
}

/// What the lock guard did.
#[derive(Debug, Default)]
pub struct GuardCounters {
    /// Queries run under the guard.
    pub runs: AtomicU64,
    /// Attempts retried after a lock timeout.
    pub retries: AtomicU64,
    /// Queries that spent their attempt or time budget.
    pub exhausted: AtomicU64,
    /// Queries that had to wait for another DDL on the same table.
    pub queue_waits: AtomicU64,
    /// Queries that gave up waiting for their turn.
    pub queue_timeouts: AtomicU64,
}

/// Index into `Counters::ddl_understood`.
pub fn understood_index(u: Understood) -> usize {
    match u {
        Understood::Parsed => 0,
        Understood::Fallback => 1,
        Understood::Unknown => 2,
    }
}

impl Counters {
    pub fn statements(&self, class: StatementClass) -> u64 {
        self.statements[class.index()].load(Ordering::Relaxed)
    }

    pub fn ddl_understood(&self, u: Understood) -> u64 {
        self.ddl_understood[understood_index(u)].load(Ordering::Relaxed)
    }
}

/// Where a message's statements are about to run.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Transaction status from the last ReadyForQuery before this message.
    pub tx: TxStatus,
    /// How the server lexes this session's SQL (`standard_conforming_strings`, client encoding).
    pub lex: LexOptions,
    /// `server_version_num`-style version, from the `server_version` ParameterStatus.
    pub server_version: Option<u32>,
    /// For a Parse: an Execute already ran earlier in the same extended-protocol unit, so the
    /// statement will share an implicit transaction with it.
    pub pipelined: bool,
    /// The migration tool driving the session, when known: refusals name its way out.
    pub tool: Option<crate::tools::Tool>,
}

/// What the hook learned about one message's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Non-empty statements the server will execute.
    pub statements: usize,
    /// Of those, how many the prefilter marked as possible DDL.
    pub ddl_candidates: usize,
    /// Of those, how many read or write rows (prefilter class `dml`); the rest are transaction
    /// control and session settings.
    pub dml: usize,
    /// Of those, how many neither sqlparser nor the fallback classifier understood.
    pub ddl_unknown: usize,
}

/// What the session does with the message: exactly one [`Execution`] (see
/// [`Plan::execution`]), plus the notices to send first and the audit records to complete.
#[derive(Debug, Default)]
pub struct Plan {
    /// The message's new SQL text, when a statement was rewritten or blocked. Everything else
    /// in the text — other statements, comments, separators — is the client's original bytes.
    pub sql: Option<Vec<u8>>,
    /// NoticeResponses to send the client before the statement's results.
    pub notices: Vec<BytesMut>,
    /// What the lock guard must do around the message, when it holds DDL that will run.
    pub guard: Option<GuardPlan>,
    /// The message's single statement runs as these safe steps instead (a multi-step rewrite).
    pub recipe: Option<crate::recipe::Recipe>,
    /// The DDL decisions taken, for the audit log (completed with their outcome by the session).
    pub audit: Vec<crate::audit::Draft>,
    /// The rules that stopped the statements replaced by ddlgate's error (blocked, or a rewrite
    /// that could not be carried out), in statement order; `unparsed-ddl` for a message
    /// refused whole.
    pub blocked: Vec<&'static str>,
    /// A decision rests on facts that only hold right now (what depends on the objects of a
    /// `DROP … CASCADE`): a prepared statement must not be executed on it in a later protocol
    /// unit, when other statements may have created dependents.
    pub fresh_facts_only: bool,
}

/// What happens to a message, read from its [`Plan`].
#[derive(Debug, Clone, Copy)]
pub enum Execution<'a> {
    /// Forward the client's original bytes (after the plan's notices, if any).
    Forward,
    /// Forward this text instead: statements rewritten to their safe form, or blocked (replaced
    /// by a `DO` block that raises ddlgate's error; [`Plan::blocked`] names the rules).
    Replace(&'a [u8]),
    /// Run under the lock guard, whose `retry` is final; with the text replaced or not.
    Guard {
        sql: Option<&'a [u8]>,
        guard: &'a GuardPlan,
    },
    /// Run the recipe's safe steps instead of the message's single statement.
    Steps(&'a crate::recipe::Recipe),
}

impl Plan {
    /// What happens to the message.
    pub fn execution(&self) -> Execution<'_> {
        match (&self.recipe, &self.guard, &self.sql) {
            (Some(recipe), _, _) => Execution::Steps(recipe),
            (None, Some(guard), sql) => Execution::Guard {
                sql: sql.as_deref(),
                guard,
            },
            (None, None, Some(sql)) => Execution::Replace(sql),
            (None, None, None) => Execution::Forward,
        }
    }

    /// Nothing to change and nothing to say: forward the original bytes.
    pub fn is_forward(&self) -> bool {
        self.sql.is_none()
            && self.notices.is_empty()
            && self.guard.is_none()
            && self.recipe.is_none()
    }
}

/// Span capacity kept between messages: enough for ordinary multi-statement Queries without
/// reallocating, while the buffer a large message needed is given back.
const SPANS_KEPT: usize = 256;

/// One message's SQL, read once by [`prepare`]: where its statements are, what each one is,
/// and — for each DDL candidate — the statement understood, with the catalog query its
/// decision needs. Everything [`decide`] and the session's catalog reads use comes from here:
/// nothing is split, classified or parsed twice.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The non-empty statements the server will execute (PostgreSQL discards empty ones), at
    /// most `max_statements`: a message of millions of `;` costs no memory here.
    pub spans: Vec<StatementSpan>,
    /// Each kept statement's prefilter class, as the lexer sees it (before
    /// `prefilter::for_server`, which needs the server version and is applied by [`decide`]).
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
    pub fn catalog_requests(&self) -> Vec<(usize, String)> {
        self.ddl_candidates()
            .filter_map(|c| {
                crate::catalog::facts_query(&c.ddl).map(|q| (self.spans[c.index].start, q))
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
    fn shrink(&mut self) {
        if self.spans.capacity() > SPANS_KEPT {
            self.spans.clear();
            self.spans.shrink_to(SPANS_KEPT);
        }
        if self.classes.capacity() > SPANS_KEPT {
            self.classes.clear();
            self.classes.shrink_to(SPANS_KEPT);
        }
    }
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
    out.spans.clear();
    out.classes.clear();
    out.candidates.clear();
    out.statements = 0;
    out.ddl = false;
    out.max_statements = max_statements;
    // The tokens of the statements kept and marked DDL, by span index.
    let mut kept: Vec<(usize, Vec<Token>)> = Vec::new();
    let Prepared {
        spans,
        classes,
        statements,
        ddl,
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
                kept.push((spans.len(), tokens.to_vec()));
            }
            spans.push(span);
            classes.push(class);
        }
    });
    if !out.ddl || out.unverifiable() {
        // Refused whole without being understood, or nothing to understand.
        return;
    }
    for (index, mut tokens) in kept {
        let span = &out.spans[index];
        if tokens.is_empty() {
            tokens = lexer::tokens(sql, span.start, span.end, lex);
        }
        // Only DDL candidates are ever parsed; ordinary traffic stops at the prefilter.
        let ddl = parse::understand_tokens(sql, &tokens, span.start, span.end, lex);
        out.candidates.push(Candidate { index, ddl, tokens });
    }
}

/// What the server and the session know that the SQL does not: the inputs of [`decide`]
/// besides the [`Prepared`] message and its [`Context`].
#[derive(Debug, Default)]
pub struct Facts {
    /// Catalog facts for the message's DDL statements, by byte offset of the statement's
    /// start (as [`Prepared::catalog_requests`] asked for them).
    pub catalog: Vec<(usize, crate::catalog::Facts)>,
    /// The answer to the created-in-transaction read (`created`); `None`: nothing is new.
    pub identity: Option<crate::created::Identity>,
}

/// Which relations count as created in the current transaction (invisible to other sessions,
/// so locking them is harmless).
#[derive(Debug)]
pub enum Created<'a> {
    /// The proxy: relations the server confirmed the transaction created, by OID (see
    /// `created`), with `catalog.max_created_relations`.
    Session {
        tracker: &'a mut crate::created::Tracker,
        max_created: usize,
    },
    /// `ddlgate check`: tables the file created by name inside its transaction (or its
    /// multi-statement Query), forgotten when that ends.
    Offline(&'a mut HashSet<Name>),
}

/// Everything [`decide`] concluded about one message.
#[derive(Debug, Default)]
pub struct Decided {
    pub summary: Summary,
    pub plan: Plan,
    /// What the message may do to the session's settings.
    pub effects: Effects,
    /// What to count (see [`record`]).
    pub tally: Tally,
    /// The decision on each DDL candidate, in statement order.
    pub decisions: Vec<StatementDecision>,
    /// The message had more statements than are analysed, DDL among them (statements,
    /// limit): it was refused whole.
    pub unverifiable: Option<(usize, usize)>,
}

/// The decision on one DDL candidate.
#[derive(Debug)]
pub struct StatementDecision {
    /// The statement.
    pub span: StatementSpan,
    /// What the policy decided from the rules' findings.
    pub decision: Decision,
    /// Kind of the statement, for logs (`DdlKind::label`).
    pub kind: &'static str,
    /// A rewrite that could not be carried out (the statement is blocked instead): why.
    pub refused: Option<String>,
}

/// What one message adds to [`Counters`], computed by [`decide`] and recorded by [`record`]:
/// the decision itself counts nothing.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// A simple Query or a Parse.
    pub source: Source,
    /// Statements by class (indexed by `StatementClass::index`).
    pub statements: [u64; StatementClass::ALL.len()],
    /// DDL candidates by how they were understood (indexed by `understood_index`).
    pub ddl_understood: [u64; 3],
    /// Rewrites refused after re-parsing or re-checking.
    pub rewrite_failures: u64,
    /// A simple Query that carried more than one statement.
    pub multi_statement: bool,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            source: Source::Query,
            statements: [0; StatementClass::ALL.len()],
            ddl_understood: [0; 3],
            rewrite_failures: 0,
            multi_statement: false,
        }
    }
}

/// Records what [`decide`] concluded: counters, and the log lines of its decisions. The one
/// place the analysis counts.
pub fn record(counters: &Counters, decided: &Decided, sql: &[u8], ctx: &Context) {
    let t = &decided.tally;
    for (counter, n) in counters.statements.iter().zip(t.statements) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
    for (counter, n) in counters.ddl_understood.iter().zip(t.ddl_understood) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
    if t.rewrite_failures > 0 {
        counters
            .rewrite_failures
            .fetch_add(t.rewrite_failures, Ordering::Relaxed);
    }
    match t.source {
        Source::Query => counters.queries.fetch_add(1, Ordering::Relaxed),
        Source::Parse => counters.parses.fetch_add(1, Ordering::Relaxed),
    };
    if t.multi_statement {
        counters
            .multi_statement_queries
            .fetch_add(1, Ordering::Relaxed);
    }
    for d in &decided.decisions {
        counters.decisions.record(&d.decision);
        log_decision(&d.decision, d.kind, sql, &d.span, ctx.lex);
        if let Some(why) = &d.refused {
            tracing::warn!(error = %why, "rewrite refused; blocking the statement instead");
        }
    }
    if let Some((statements, limit)) = decided.unverifiable {
        tracing::warn!(
            statements,
            limit,
            action = decided.plan.audit.first().map_or("", |a| a.action),
            "message with DDL has too many statements to analyse; unverifiable"
        );
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            source = ?t.source,
            statements = decided.summary.statements,
            ddl_candidates = decided.summary.ddl_candidates,
            tx = ctx.tx.as_str(),
            sql = %loggable(sql, ctx.lex, 200),
            "statement analysed"
        );
    }
}

/// Decides one prepared message: pure — no counters, no I/O, no logs (see [`record`]). The
/// proxy and `ddlgate check` both call it.
pub fn decide(
    prepared: &Prepared,
    sql: &[u8],
    facts: Facts,
    ctx: &Context,
    profile: &Profile,
    source: Source,
    created: Created<'_>,
) -> Decided {
    let mut decided = Decided {
        tally: Tally {
            source,
            ..Tally::default()
        },
        ..Decided::default()
    };
    if prepared.statements > prepared.spans.len() {
        // Not every statement was kept: assume the worst of those not looked at.
        decided.effects.settings = true;
        decided.effects.lexing = true;
    }
    if prepared.unverifiable() {
        refuse_unverifiable(prepared, profile, sql, ctx, &mut decided);
        return decided;
    }
    let spans = &prepared.spans;
    // Only non-empty statements are kept (see `prepare`), all of them unless the message
    // has more than are analysed and none of them is DDL.
    let statements = spans.len();
    let classes = prepared
        .classes
        .iter()
        .map(|&c| prefilter::for_server(c, ctx.server_version));
    let any_ddl = prepared
        .classes
        .iter()
        .any(|&c| prefilter::for_server(c, ctx.server_version) == StatementClass::DdlCandidate);
    let Facts { catalog, identity } = facts;
    // The created-in-transaction bookkeeping: the session's (by OID, from the server's
    // answer) or the file's (by name).
    let (mut session, mut offline) = match created {
        Created::Session {
            tracker,
            max_created,
        } => {
            let scope = crate::created::Scope::begin(tracker, identity, max_created, ctx.lex);
            (Some((tracker, scope)), None)
        }
        Created::Offline(names) => (None, Some(names)),
    };
    // What a message does to names and facts matters only to its own DDL and to relations
    // the transaction created: ordinary traffic in a transaction that created nothing
    // changes nothing there, and is not looked at again (the hot path).
    let scoped = session
        .as_ref()
        .is_some_and(|(tracker, _)| !tracker.is_empty() || any_ddl);
    decided.summary.statements = prepared.statements;
    let summary = &mut decided.summary;
    let plan = &mut decided.plan;
    // Replacement text per statement, by span index.
    let mut replacements: Vec<(usize, Vec<u8>)> = Vec::new();
    // The transaction status as it evolves through a multi-statement Query.
    let mut tx = ctx.tx;
    // Transaction-control statements, for deciding how a guarded Query can be retried.
    let mut tx_control = Vec::new();
    for (i, (span, class)) in spans.iter().zip(classes).enumerate() {
        decided.tally.statements[class.index()] += 1;
        let unprepared;
        let mut understood = None;
        let mut runs = true;
        let tokens = prepared.candidate(i).map(|c| c.tokens.as_slice());
        statement_effects(sql, span, ctx.lex, class, tokens, &mut decided.effects);
        match class {
            StatementClass::Transaction => {
                let before = tx;
                tx = transaction_effect(sql, span, ctx.lex, tx);
                tx_control.push((i, before, tx));
                if let Some(names) = offline.as_deref_mut()
                    && ends_transaction(sql, span, ctx.lex, tx)
                {
                    names.clear();
                }
            }
            StatementClass::DdlCandidate => {
                summary.ddl_candidates += 1;
                // `prepare` understood every DDL candidate; a `Prepared` built otherwise gets
                // its statement understood here rather than waved through.
                let candidate = match prepared.candidate(i) {
                    Some(c) => c,
                    None => {
                        let tokens = lexer::tokens(sql, span.start, span.end, ctx.lex);
                        unprepared = Candidate {
                            index: i,
                            ddl: parse::understand_tokens(
                                sql, &tokens, span.start, span.end, ctx.lex,
                            ),
                            tokens,
                        };
                        &unprepared
                    }
                };
                let ddl = &candidate.ddl;
                let mut resized = None;
                let mut emptied = None;
                let (facts, created) = match session.as_mut() {
                    Some((tracker, scope)) => {
                        // Facts read before the message, unless an earlier statement of it
                        // may have changed them (a SET TimeZone, a rename, …): then the worst
                        // case. In statement order, as `catalog_requests` produced them.
                        let facts = catalog
                            .binary_search_by_key(&span.start, |(at, _)| *at)
                            .ok()
                            .map(|k| &catalog[k].1)
                            .filter(|_| scope.facts_hold(ddl));
                        let facts = scope.sized(facts, &mut resized);
                        let facts = scope.with_empty_new(ddl, facts, &mut emptied);
                        (facts, scope.new_names(tracker, ddl))
                    }
                    None => (None, offline.as_deref().cloned().unwrap_or_default()),
                };
                let one = DdlInput {
                    span,
                    tokens: &candidate.tokens,
                    ddl,
                    facts,
                    created: &created,
                    tx,
                    statements,
                };
                if let Some(replacement) = decide_statement(
                    profile,
                    sql,
                    &one,
                    ctx,
                    &mut decided.tally,
                    summary,
                    plan,
                    &mut decided.decisions,
                ) {
                    replacements.push((i, replacement));
                    runs = false;
                }
                if let Some(names) = offline.as_deref_mut()
                    && let DdlKind::CreateTable { name, .. } = &ddl.kind
                    && (tx != TxStatus::Idle || statements > 1 || ctx.pipelined)
                {
                    names.insert(name.clone());
                }
                understood = Some(ddl);
            }
            StatementClass::Dml => summary.dml += 1,
            // Forwarded: the server answers it with its own syntax error (42601).
            StatementClass::Session | StatementClass::NotACommand => {}
        }
        if scoped && let Some((tracker, scope)) = session.as_mut() {
            scope.after(tracker, sql, span, class, understood, tokens, runs);
        }
    }
    if let Some((tracker, scope)) = session
        && scoped
    {
        scope.finish(tracker);
    }
    if !replacements.is_empty() {
        plan.sql = Some(splice(sql, spans, &replacements));
    }
    if let Some(guard) = plan.guard.as_mut() {
        guard.retry = retry_mode(ctx.tx, source, &tx_control, statements);
    }
    decided.tally.multi_statement = source == Source::Query && summary.statements > 1;
    decided
}

/// A transaction-control statement that ends the file's transaction (what `ddlgate check`
/// forgets its created tables at): COMMIT, END, ABORT, and a ROLLBACK that leaves the block
/// (not ROLLBACK TO SAVEPOINT inside one).
fn ends_transaction(sql: &[u8], span: &StatementSpan, lex: LexOptions, after: TxStatus) -> bool {
    let Some(first) = span.first else {
        return false;
    };
    if first.is_word(sql, "ROLLBACK") {
        return after == TxStatus::Idle || !is_rollback_to(sql, span, lex);
    }
    ["COMMIT", "END", "ABORT"]
        .iter()
        .any(|k| first.is_word(sql, k))
}

/// `ROLLBACK TO …`.
fn is_rollback_to(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> bool {
    lexer::Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment())
        .nth(1)
        .is_some_and(|t| t.is_word(sql, "TO"))
}

/// A message with more statements than are analysed, DDL among them: it cannot be
/// verified, so it fails closed as a whole (counted as not understood) — blocked in
/// enforce mode, a warning in warn mode, only logged in observe mode. Ordinary traffic
/// never gets here: a message without any DDL candidate is forwarded however long it is.
fn refuse_unverifiable(
    prepared: &Prepared,
    profile: &Profile,
    sql: &[u8],
    ctx: &Context,
    decided: &mut Decided,
) {
    decided.tally.ddl_understood[understood_index(Understood::Unknown)] += 1;
    decided.unverifiable = Some((prepared.statements, prepared.max_statements));
    decided.summary = Summary {
        statements: prepared.statements,
        ddl_candidates: 1,
        dml: 0,
        ddl_unknown: 1,
    };
    let err = BlockError {
        code: act::sqlstate::UNPARSED,
        message: format!(
            "ddlgate cannot verify this message: it holds {} statements, DDL among them, and ddlgate analyses at most {} per message",
            prepared.statements, prepared.max_statements
        ),
        detail: "A message ddlgate cannot check completely is refused as a whole; none of its statements ran.".to_owned(),
        hint: "Send the DDL in smaller messages (e.g. one statement per Query), or raise limits.max_statements_per_message.".to_owned(),
    };
    let plan = &mut decided.plan;
    let action = match profile.mode {
        crate::config::Mode::Enforce => {
            plan.sql = Some(err.to_sql());
            plan.blocked.push("unparsed-ddl");
            Action::Block
        }
        crate::config::Mode::Warn => {
            plan.notices.push(act::notice(
                "WARNING",
                &err.message,
                Some(&err.detail),
                Some(&err.hint),
            ));
            Action::Warn
        }
        crate::config::Mode::Observe => Action::Allow,
    };
    plan.audit.push(crate::audit::Draft {
        sql: loggable(sql, ctx.lex, AUDIT_SQL_MAX),
        profile: profile.name.clone(),
        action: action.as_str(),
        intended: Action::Block.as_str(),
        rules: vec!["unparsed-ddl"],
        rewritten: None,
        steps: Vec::new(),
        override_reasons: Vec::new(),
    });
}

/// One DDL candidate with what its decision rests on.
struct DdlInput<'a> {
    span: &'a StatementSpan,
    /// Its tokens, from the split.
    tokens: &'a [Token],
    ddl: &'a Ddl,
    facts: Option<&'a crate::catalog::Facts>,
    created: &'a HashSet<Name>,
    /// The transaction status where it runs.
    tx: TxStatus,
    /// Statements of its message.
    statements: usize,
}

/// Checks and decides one DDL candidate; returns its replacement text when it is rewritten or
/// blocked, and adds any notices, audit record and guard work to the plan.
#[allow(clippy::too_many_arguments)]
fn decide_statement(
    profile: &Profile,
    sql: &[u8],
    input: &DdlInput<'_>,
    ctx: &Context,
    tally: &mut Tally,
    summary: &mut Summary,
    plan: &mut Plan,
    decisions: &mut Vec<StatementDecision>,
) -> Option<Vec<u8>> {
    let DdlInput {
        span,
        tokens,
        ddl,
        facts,
        created,
        tx,
        statements,
    } = *input;
    tally.ddl_understood[understood_index(ddl.understood)] += 1;
    if ddl.understood == Understood::Unknown {
        summary.ddl_unknown += 1;
    }
    let rctx = rules::Context {
        tx,
        shares_unit: statements > 1 || ctx.pipelined,
        in_function_body: false,
        server_version: ctx.server_version,
        created_in_tx: created,
        catalog: facts,
    };
    let decision = policy::evaluate_tokens(profile, sql, tokens, ddl, &rctx);
    if matches!(ddl.kind, DdlKind::DropCascade { .. }) && facts.is_some_and(|f| !f.drops.is_empty())
    {
        plan.fresh_facts_only = true;
    }

    let mut rewritten = None;
    let mut refused = None;
    let replacement = match decision.effective {
        Action::Allow => None,
        Action::Warn => {
            plan.notices.extend(warnings(&decision, profile));
            None
        }
        Action::Block => {
            plan.blocked.extend(stopping_rules(&decision));
            Some(block_error(&decision, profile, ctx.tool).to_sql())
        }
        Action::Rewrite => match realize(
            decision.rewrite,
            sql,
            tokens,
            span,
            ddl,
            facts,
            &rctx,
            ctx.lex,
            ctx.server_version,
            statements == 1 && !ctx.pipelined,
        ) {
            Realized::Text(new, again) => {
                plan.notices.push(rewrite_notice(&decision, profile, &new));
                rewritten = Some(again);
                Some(new)
            }
            Realized::Steps(recipe) => {
                plan.notices.push(rewrite_notice(
                    &decision,
                    profile,
                    recipe.describe().as_bytes(),
                ));
                plan.recipe = Some(recipe);
                None
            }
            Realized::Refused(why) => {
                tally.rewrite_failures += 1;
                plan.blocked.extend(stopping_rules(&decision));
                let mut err = block_error(&decision, profile, ctx.tool);
                err.detail = format!("{} {why}", err.detail);
                refused = Some(why);
                Some(err.to_sql())
            }
        },
    };
    // The audit log's record of the decision (its outcome is added by the session).
    plan.audit.push(crate::audit::Draft {
        sql: loggable_tokens(sql, tokens, span.start, span.end, AUDIT_SQL_MAX),
        profile: profile.name.clone(),
        action: decision.effective.as_str(),
        intended: decision.intended.as_str(),
        rules: decision.verdicts.iter().map(|v| v.finding.rule).collect(),
        rewritten: match (&replacement, decision.effective) {
            (Some(new), Action::Rewrite) => Some(String::from_utf8_lossy(new).into_owned()),
            _ => None,
        },
        steps: plan
            .recipe
            .as_ref()
            .filter(|_| decision.rewrite == Some(rules::Rewrite::Steps))
            .map(|r| r.steps.iter().map(|s| s.sql.clone()).collect())
            .unwrap_or_default(),
        override_reasons: decision
            .verdicts
            .iter()
            .filter_map(|v| v.overridden.clone())
            .collect(),
    });
    // What the statement that will run locks: the guard runs around it.
    // Observe mode changes nothing a client can see, the guard included.
    if decision.effective != Action::Block && profile.mode != crate::config::Mode::Observe {
        // A rewrite's text was parsed once, when it was checked: that is what runs.
        let ran = rewritten.as_ref().unwrap_or(ddl);
        let mut guard = plan.guard.take().unwrap_or_default();
        guard.add(ran, |t| rctx.is_new(t));
        plan.guard = (!guard.is_empty()).then_some(guard);
    }
    decisions.push(StatementDecision {
        span: *span,
        decision,
        kind: ddl.kind.label(),
        refused,
    });
    replacement
}

/// The analysis step, owned by a session: the thin holder of the message being prepared and
/// of what outlives a message (relations the transaction created). The work is done by
/// [`prepare`] and [`decide`].
#[derive(Debug)]
pub struct Analyzer {
    /// The message last prepared (reused buffers, so the hot path does not allocate).
    prepared: Prepared,
    /// `prepared` holds this text (address, length, options), so the calls the session makes
    /// for one message — [`Analyzer::has_ddl_candidate`], the catalog reads,
    /// [`Analyzer::analyze`] — prepare it once. Cleared by `analyze`: the next message may
    /// reuse the same buffer.
    prepared_of: Option<(usize, usize, LexOptions)>,
    /// Relations the server confirmed the current transaction created (by OID, never by name):
    /// invisible to other sessions, so locking them is harmless. Cleared when the session is
    /// idle again.
    created: crate::created::Tracker,
    /// The created-in-transaction read for the message whose catalog facts are being read.
    identity_request: Option<crate::created::Request>,
    /// Its answer, consumed by the next [`Analyzer::analyze`]; `None` means nothing is new.
    identity: Option<crate::created::Identity>,
    /// `catalog.max_created_relations`, as of the last read.
    max_created: usize,
    /// At most this many statements of one message are analysed; a message with more that
    /// holds a DDL candidate fails closed as unverifiable.
    max_statements: usize,
    /// Catalog facts for the next message's DDL statements, by byte offset of the statement's
    /// start; consumed by the next [`Analyzer::analyze`].
    facts: Vec<(usize, crate::catalog::Facts)>,
    /// What the last analysed message may do to the session's settings.
    effects: Effects,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            prepared: Prepared::default(),
            prepared_of: None,
            max_statements: crate::config::DEFAULT_MAX_STATEMENTS_PER_MESSAGE,
            created: Default::default(),
            identity_request: None,
            identity: None,
            max_created: 0,
            facts: Vec::new(),
            effects: Effects::default(),
        }
    }
}

/// What a message may do to the session's settings when it runs, read from its statements'
/// first words (and any call of `set_config`). Where it cannot be ruled out, it is assumed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// It may change a setting (SET, RESET, DISCARD, `set_config(…)`, a transaction end that
    /// undoes a SET, a DO block, CALL or EXECUTE that may run any of them): names may resolve
    /// differently afterwards (`search_path`, …).
    pub settings: bool,
    /// It may change how the server lexes SQL (`standard_conforming_strings`,
    /// `client_encoding`): later messages must not be lexed before the server has answered it.
    pub lexing: bool,
    /// Prepared statements it deallocates (`DEALLOCATE name`, `DEALLOCATE ALL` and `DISCARD
    /// ALL` as `None`).
    pub deallocates: Vec<Option<Vec<u8>>>,
}

/// Settings that change how the server lexes SQL, and `SET NAMES` (client_encoding).
const LEXING_SETTINGS: [&str; 4] = [
    "standard_conforming_strings",
    "client_encoding",
    "names",
    "all",
];

/// The effects of one statement on the session's settings (see [`Effects`]).
/// `tokens`: the statement's tokens when the split kept them (DDL), else its first words are
/// lexed here.
fn statement_effects(
    sql: &[u8],
    span: &StatementSpan,
    lex: LexOptions,
    class: StatementClass,
    tokens: Option<&[Token]>,
    out: &mut Effects,
) {
    match tokens {
        Some(tokens) => words_effects(sql, tokens.iter().copied(), class, out),
        None => words_effects(
            sql,
            lexer::Lexer::at(sql, span.start, lex).take_while(|t| t.start < span.end),
            class,
            out,
        ),
    }
    if !out.lexing && crate::sql::side_effects::may_call_set_config(sql, span.start, span.end, lex)
    {
        out.settings = true;
        out.lexing = true;
    }
}

/// The effects [`statement_effects`] reads from a statement's first words.
fn words_effects(
    sql: &[u8],
    tokens: impl Iterator<Item = Token>,
    class: StatementClass,
    out: &mut Effects,
) {
    let mut words = tokens.filter(|t| !t.is_comment());
    let Some(first) = words.next() else { return };
    let is = |t: &Option<lexer::Token>, kw: &str| t.is_some_and(|t| t.is_word(sql, kw));
    let mut second = words.next();
    match class {
        StatementClass::Session => {
            out.settings = true;
            // `SET [SESSION | LOCAL] name`, `RESET name`: only a few names change lexing.
            if is(&second, "SESSION") || is(&second, "LOCAL") {
                second = words.next();
            }
            let name = second.map(|t| guc_name(t.text(sql), t.kind));
            let neutral = name.as_deref().is_some_and(|n| {
                !n.is_empty() && !LEXING_SETTINGS.iter().any(|l| l.as_bytes() == n)
            });
            out.lexing |= !neutral;
        }
        StatementClass::Transaction => {
            // A transaction's end (or a rollback to a savepoint) undoes its SETs.
            if !(first.is_word(sql, "BEGIN")
                || first.is_word(sql, "START")
                || first.is_word(sql, "SAVEPOINT")
                || first.is_word(sql, "RELEASE"))
            {
                out.settings = true;
                out.lexing = true;
            }
        }
        // The server refuses the whole message: nothing of it runs.
        StatementClass::NotACommand => {}
        StatementClass::Dml | StatementClass::DdlCandidate => {
            let runs_anything = ["DISCARD", "EXECUTE", "CALL", "DO", "PREPARE"]
                .iter()
                .any(|k| first.is_word(sql, k));
            if runs_anything {
                out.settings = true;
                out.lexing = true;
            }
            if first.is_word(sql, "DEALLOCATE") {
                if is(&second, "PREPARE") {
                    second = words.next();
                }
                if let Some(t) = second {
                    out.deallocates.push(if t.is_word(sql, "ALL") {
                        None
                    } else {
                        Some(statement_name(t.text(sql), t.kind))
                    });
                }
            } else if first.is_word(sql, "DISCARD") && is(&second, "ALL") {
                out.deallocates.push(None);
            }
        }
    }
}

/// A setting's name as the server looks it up: case-insensitively, quoted or not.
fn guc_name(text: &[u8], kind: TokenKind) -> Vec<u8> {
    let mut n = if kind == TokenKind::QuotedIdent {
        unquote(text)
    } else {
        text.to_vec()
    };
    n.make_ascii_lowercase();
    n
}

/// A prepared statement's name as the server stores it: unquoted names folded to lower case.
fn statement_name(text: &[u8], kind: TokenKind) -> Vec<u8> {
    if kind == TokenKind::QuotedIdent {
        unquote(text)
    } else {
        text.to_ascii_lowercase()
    }
}

/// `"a""b"` → `a"b`; a `U&"…"` identifier is not decoded (its name then matches nothing,
/// which only keeps a tracking slot taken).
fn unquote(text: &[u8]) -> Vec<u8> {
    let inner = text
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        out.push(inner[i]);
        i += if inner[i] == b'"' && inner.get(i + 1) == Some(&b'"') {
            2
        } else {
            1
        };
    }
    out
}

/// Where the SQL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Query,
    Parse,
}

impl Analyzer {
    /// The session's transaction ended (ReadyForQuery `I`).
    pub fn transaction_ended(&mut self) {
        self.created.clear();
    }

    /// What the message last given to [`Analyzer::analyze`] may do to the session's settings.
    pub fn effects(&self) -> &Effects {
        &self.effects
    }

    /// The most statements of one message analysed (`limits.max_statements_per_message`).
    pub fn set_max_statements(&mut self, max: usize) {
        self.max_statements = max;
    }

    /// Whether `sql` holds any DDL candidate; the session uses it to wait for the server to
    /// be idle before a decision that depends on the transaction status. Prepares the message
    /// (ordinary traffic: lexing only), for the calls that follow.
    pub fn has_ddl_candidate(&mut self, sql: &[u8], lex: LexOptions) -> bool {
        self.prepare(sql, lex).ddl
    }

    /// The catalog queries the DDL statements of `sql` need: (statement start offset, query).
    /// Ordinary traffic needs none and is never parsed here either.
    pub fn catalog_requests(&mut self, sql: &[u8], lex: LexOptions) -> Vec<(usize, String)> {
        self.prepare(sql, lex).catalog_requests()
    }

    /// Prepares `sql`, unless `prepared` already holds it.
    fn prepare(&mut self, sql: &[u8], lex: LexOptions) -> &Prepared {
        let key = (sql.as_ptr() as usize, sql.len(), lex);
        if self.prepared_of != Some(key) {
            prepare_into(&mut self.prepared, sql, lex, self.max_statements);
            self.prepared_of = Some(key);
        }
        &self.prepared
    }

    /// The created-in-transaction read `sql` needs (see `created`), run after the catalog facts
    /// at the same statement boundary; `None` when nothing in it can be new. The answer goes
    /// to [`Analyzer::provide_identity`].
    pub fn identity_query(
        &mut self,
        sql: &[u8],
        lex: LexOptions,
        max_names: usize,
        max_created: usize,
    ) -> Option<String> {
        self.max_created = max_created;
        self.prepare(sql, lex);
        self.identity_request = crate::created::request(
            &self.created,
            self.prepared.ddl_candidates().map(|c| &c.ddl),
            max_names,
        );
        self.identity_request.as_ref().map(|r| r.sql.clone())
    }

    /// The answer to [`Analyzer::identity_query`] (`None`: the read failed), for the next
    /// [`Analyzer::analyze`].
    pub fn provide_identity(&mut self, json: Option<&str>) {
        let request = self.identity_request.take();
        self.identity = request
            .zip(json)
            .and_then(|(r, j)| crate::created::Identity::parse(&r, j));
    }

    /// Catalog facts for the next [`Analyzer::analyze`] call (see [`Analyzer::catalog_requests`]).
    pub fn provide_facts(&mut self, facts: Vec<(usize, crate::catalog::Facts)>) {
        self.facts = facts;
    }

    /// Prepares (unless already prepared), decides, counts and logs the SQL of one Query or
    /// Parse message.
    pub fn analyze(
        &mut self,
        counters: &Counters,
        profile: &Profile,
        source: Source,
        sql: &[u8],
        ctx: &Context,
    ) -> (Summary, Plan) {
        self.prepare(sql, ctx.lex);
        self.prepared_of = None;
        self.identity_request = None;
        let facts = Facts {
            catalog: std::mem::take(&mut self.facts),
            identity: self.identity.take(),
        };
        let decided = decide(
            &self.prepared,
            sql,
            facts,
            ctx,
            profile,
            source,
            Created::Session {
                tracker: &mut self.created,
                max_created: self.max_created,
            },
        );
        self.prepared.shrink();
        record(counters, &decided, sql, ctx);
        self.effects = decided.effects;
        (decided.summary, decided.plan)
    }
}

/// What a rewrite verdict becomes.
#[derive(Debug)]
pub enum Realized {
    /// The statement's new text (CONCURRENTLY inserted, …), parsed and checked again, with
    /// what that parse understood.
    Text(Vec<u8>, crate::sql::statement::Ddl),
    /// The safe steps that run instead of the statement.
    Steps(crate::recipe::Recipe),
    /// Neither could be built: the statement is blocked, and this sentence says why.
    Refused(String),
}

/// Turns a rewrite verdict into the text or the steps that run instead, or into the reason it
/// cannot be done. The proxy and `ddlgate check` both call it, so they decide alike.
/// `alone`: the statement is the only one of a simple Query (multi-step rewrites need that).
#[allow(clippy::too_many_arguments)]
pub fn realize(
    rewrite: Option<rules::Rewrite>,
    sql: &[u8],
    tokens: &[Token],
    span: &StatementSpan,
    ddl: &crate::sql::statement::Ddl,
    facts: Option<&crate::catalog::Facts>,
    rctx: &rules::Context,
    lex: LexOptions,
    server_version: Option<u32>,
    alone: bool,
) -> Realized {
    if rewrite == Some(rules::Rewrite::Steps) {
        return match steps(sql, span, ddl, facts, lex, server_version, alone) {
            Ok(recipe) => Realized::Steps(recipe),
            Err(why) => {
                Realized::Refused(format!("ddlgate could not run it as safe steps: {why}."))
            }
        };
    }
    // From the first token: leading comments stay where they are (see `splice`).
    let from = span.first.map_or(span.start, |t| t.start);
    match rewrite
        .ok_or(rewrite::RewriteError::NoInsertionPoint)
        .and_then(|r| rewrite::apply_tokens(sql, tokens, from, span.end, lex, ddl, r, rctx))
    {
        Ok((new, again)) => Realized::Text(new, again),
        Err(e) => Realized::Refused(format!("ddlgate could not rewrite it safely: {e}.")),
    }
}

/// The safe steps for a statement the policy decided to run as a multi-step rewrite: only a
/// statement alone in a simple Query, outside a transaction (the rule offers the rewrite only
/// there), with the partition tree from the catalog when the table is partitioned.
fn steps(
    sql: &[u8],
    span: &StatementSpan,
    ddl: &crate::sql::statement::Ddl,
    facts: Option<&crate::catalog::Facts>,
    lex: LexOptions,
    server_version: Option<u32>,
    alone: bool,
) -> Result<crate::recipe::Recipe, String> {
    if !alone {
        return Err("it does not run alone".to_owned());
    }
    let version = server_version.ok_or_else(|| "the server version is unknown".to_owned())?;
    let tree = facts
        .and_then(|f| f.relation.as_ref())
        .filter(|r| r.is_partitioned())
        .map(|r| partition_tree(r.name.as_ref().unwrap_or(&r.asked), &r.partitions, 0))
        .transpose()?;
    let rctx = crate::recipe::Context {
        server_version_num: version,
        partitions: tree.as_deref(),
    };
    let from = span.first.map_or(span.start, |t| t.start);
    crate::recipe::plan(sql, from, span.end, lex, ddl, &rctx).map_err(|e| e.to_string())
}

/// The catalog's flat partition list (parents before children) as the recipe's tree.
fn partition_tree(
    parent: &Name,
    all: &[crate::catalog::Partition],
    depth: usize,
) -> Result<Vec<crate::recipe::Partition>, String> {
    // The catalog's list is the server's, but the tree is built (and later walked by the
    // recipe) recursively: bound its depth so no catalog answer can exhaust the stack.
    if depth > MAX_PARTITION_DEPTH {
        return Err(format!(
            "its partition tree is more than {MAX_PARTITION_DEPTH} levels deep"
        ));
    }
    all.iter()
        .filter(|p| &p.parent == parent)
        .map(|p| {
            Ok(if p.is_leaf() {
                crate::recipe::Partition::leaf(p.name.clone())
            } else {
                crate::recipe::Partition::partitioned(
                    p.name.clone(),
                    partition_tree(&p.name, all, depth + 1)?,
                )
            })
        })
        .collect()
}

/// Deepest partition tree a multi-step rewrite is planned for; deeper ones are refused (the
/// statement is blocked with the reason). Real hierarchies have a handful of levels.
const MAX_PARTITION_DEPTH: usize = 32;

/// Longest SQL text an audit record holds.
const AUDIT_SQL_MAX: usize = 64 * 1024;

/// How a guarded message can be retried after a lock timeout (see [`Retry`]).
fn retry_mode(
    start: TxStatus,
    source: Source,
    tx_control: &[(usize, TxStatus, TxStatus)],
    statements: usize,
) -> Retry {
    if source != Source::Query {
        return Retry::No;
    }
    match start {
        TxStatus::InTransaction if tx_control.is_empty() => Retry::Savepoint,
        TxStatus::Idle if tx_control.is_empty() => Retry::Whole,
        // `BEGIN; …; COMMIT` as one Query: atomic, and a failure leaves a failed block that
        // a ROLLBACK clears.
        TxStatus::Idle => match tx_control {
            [
                (b, TxStatus::Idle, TxStatus::InTransaction),
                (c, TxStatus::InTransaction, TxStatus::Idle),
            ] if *b == 0 && *c + 1 == statements => Retry::Whole,
            _ => Retry::No,
        },
        _ => Retry::No,
    }
}

/// BEGIN/START open a transaction block; COMMIT/END/ROLLBACK/ABORT close it (ROLLBACK TO
/// SAVEPOINT does not).
fn transaction_effect(sql: &[u8], span: &StatementSpan, lex: LexOptions, tx: TxStatus) -> TxStatus {
    let mut words = lexer::Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment());
    let Some(first) = words.next() else { return tx };
    let second = words.next();
    if first.is_word(sql, "BEGIN") || first.is_word(sql, "START") {
        TxStatus::InTransaction
    } else if first.is_word(sql, "ROLLBACK") && second.is_some_and(|t| t.is_word(sql, "TO")) {
        tx
    } else if ["COMMIT", "END", "ROLLBACK", "ABORT"]
        .iter()
        .any(|k| first.is_word(sql, k))
    {
        // PREPARE TRANSACTION / COMMIT PREPARED are not in this class.
        TxStatus::Idle
    } else {
        tx
    }
}

/// Replaces the given statements' spans in `sql`, keeping every other byte.
fn splice(sql: &[u8], spans: &[StatementSpan], replacements: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(sql.len() + replacements.iter().map(|(_, r)| r.len()).sum::<usize>());
    let mut at = 0;
    for (i, new) in replacements {
        let span = &spans[*i];
        // Keep comments before the statement's first token (override comments stay visible in
        // the server's logs and pg_stat_activity); replace from the first token to the end.
        let from = span.first.map_or(span.start, |t| t.start);
        out.extend_from_slice(&sql[at..from]);
        out.extend_from_slice(new);
        at = span.end;
    }
    out.extend_from_slice(&sql[at..]);
    out
}

/// The rules that stop a statement (see [`block_error`]): those that block it, or, when a
/// rewrite or recipe could not be applied, those that asked for it; `invalid-override` for a
/// refused override comment.
fn stopping_rules(d: &Decision) -> Vec<&'static str> {
    if d.error.is_some() {
        return vec!["invalid-override"];
    }
    let of = |action| {
        let mut ids: Vec<&'static str> = Vec::new();
        for v in d.verdicts.iter().filter(|v| v.action == action) {
            if !ids.contains(&v.finding.rule) {
                ids.push(v.finding.rule);
            }
        }
        ids
    };
    let blocking = of(Action::Block);
    if blocking.is_empty() {
        of(Action::Rewrite)
    } else {
        blocking
    }
}

/// The error the server raises in place of a blocked statement.
fn block_error(d: &Decision, profile: &Profile, tool: Option<crate::tools::Tool>) -> BlockError {
    if let Some(e) = &d.error {
        return BlockError {
            code: act::sqlstate::INVALID_OVERRIDE,
            message: format!("ddlgate refused the statement: {e}"),
            detail: format!(
                "Policy profile `{}` checks every ddlgate:allow comment before it takes effect.",
                d.profile
            ),
            hint: OVERRIDE_HINT.to_owned(),
        };
    }
    // The rules that stop the statement: those that block it, or, when a rewrite or recipe
    // could not be applied, those that asked for it. Naming them all is what lets the user
    // write the one override comment that runs the statement as written.
    let mut stopping: Vec<&crate::policy::Verdict> = d
        .verdicts
        .iter()
        .filter(|v| v.action == Action::Block)
        .collect();
    if stopping.is_empty() {
        stopping = d
            .verdicts
            .iter()
            .filter(|v| v.action == Action::Rewrite)
            .collect();
    }
    let Some(v) = stopping.first() else {
        // Every path that blocks has a finding behind it; should one ever not, the user still
        // learns that, and what to do, rather than a bare refusal.
        return BlockError {
            code: act::sqlstate::BLOCKED,
            message: "ddlgate blocked this statement (no rule named it)".to_owned(),
            detail: format!("Policy profile `{}` blocks it.", d.profile),
            hint: "The ddlgate log records the decision; report the statement.".to_owned(),
        };
    };
    let mut ids: Vec<&str> = Vec::with_capacity(stopping.len());
    for s in &stopping {
        if !ids.contains(&s.finding.rule) {
            ids.push(s.finding.rule);
        }
    }
    let names = ids
        .iter()
        .map(|id| match rules::rule(id) {
            Some(r) => format!("{id}: {}", r.summary),
            None => (*id).to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut hint = v.finding.hint.clone();
    // The way out of the transaction, in the message too: most tools print only the message.
    // Offered exactly where the rule's hint offers it (inside a transaction block or a shared
    // unit), so it is never advice that would not help.
    let mut way_out = String::new();
    if hint.contains(rules::OUTSIDE_TRANSACTION_HINT) {
        match tool {
            Some(tool) => {
                hint = hint.replace(
                    rules::OUTSIDE_TRANSACTION_HINT,
                    &format!(
                        "Run it as its own statement outside any transaction: with {}, {}.",
                        tool.name(),
                        tool.outside_transaction()
                    ),
                );
                // Said once: in the HINT for a tool that shows it, else in the message.
                if !tool.shows_hint() {
                    way_out = format!(
                        ". Safe way with {}: {} (ddlgate then runs its safe form)",
                        tool.name(),
                        tool.outside_transaction()
                    );
                }
            }
            None => {
                way_out = ". Safe way: run it as its own statement outside any transaction (ddlgate then runs its safe form); the HINT names each migration tool's switch".to_owned();
            }
        }
    }
    let forbidden: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !profile.may_override_rule(id))
        .collect();
    if forbidden.is_empty() {
        hint.push_str(&format!(
            " If you are sure it is safe, prefix the statement with {}",
            override_comment(&ids)
        ));
    } else {
        hint.push_str(&format!(
            " Policy profile `{}` does not allow overriding {}.",
            d.profile,
            forbidden.join(", ")
        ));
    }
    let mut detail = v.finding.message.clone();
    for s in stopping.iter().skip(1) {
        if !detail.contains(&s.finding.message) {
            detail.push('\n');
            detail.push_str(&s.finding.message);
        }
    }
    BlockError {
        code: if ids.contains(&"unparsed-ddl") {
            act::sqlstate::UNPARSED
        } else {
            act::sqlstate::BLOCKED
        },
        message: format!(
            "ddlgate blocked this statement ({} {names}){way_out}{}",
            if ids.len() == 1 { "rule" } else { "rules" },
            match tool {
                Some(tool) if !tool.shows_hint() && forbidden.is_empty() =>
                    format!(". To run it as written: {}", override_comment(&ids)),
                _ => String::new(),
            }
        ),
        detail,
        hint,
    }
}

/// The comment that allows `ids` exactly as the policy parses it.
fn override_comment(ids: &[&str]) -> String {
    format!("/* ddlgate:allow {} reason=\"…\" */", ids.join(","))
}

fn warnings(d: &Decision, profile: &Profile) -> Vec<BytesMut> {
    let mut out: Vec<BytesMut> = d
        .verdicts
        .iter()
        .filter(|v| v.action != Action::Allow)
        .map(|v| {
            let would = if d.intended != Action::Warn && v.action != Action::Warn {
                format!(" (in enforce mode ddlgate would {} it)", v.action.as_str())
            } else {
                String::new()
            };
            act::notice(
                "WARNING",
                &format!(
                    "ddlgate rule {}{would}: {}",
                    v.finding.rule, v.finding.message
                ),
                None,
                Some(&v.finding.hint),
            )
        })
        .collect();
    if let Some(e) = &d.error {
        out.push(act::notice(
            "WARNING",
            &format!("ddlgate ({} profile): {e}", profile.name),
            None,
            Some(OVERRIDE_HINT),
        ));
    }
    out
}

const OVERRIDE_HINT: &str = "Name existing rule ids and give a reason: /* ddlgate:allow rule-id reason=\"why this is safe\" */";

fn rewrite_notice(d: &Decision, profile: &Profile, new: &[u8]) -> BytesMut {
    let rule = d
        .verdicts
        .iter()
        .find(|v| v.action == Action::Rewrite)
        .map_or("", |v| v.finding.rule);
    let reason = d
        .verdicts
        .iter()
        .find(|v| v.action == Action::Rewrite)
        .map_or(String::new(), |v| v.finding.message.clone());
    act::notice(
        "NOTICE",
        &format!(
            "ddlgate rewrote this statement to its safe form (rule {rule}): {}",
            String::from_utf8_lossy(new).trim()
        ),
        Some(&reason),
        Some(&if profile.may_override_rule(rule) {
            format!(
                "Write the safe form yourself and this notice goes away; to run the statement exactly as written, prefix it with /* ddlgate:allow {rule} reason=\"…\" */."
            )
        } else {
            "Write the safe form yourself and this notice goes away.".to_owned()
        }),
    )
}

fn log_decision(d: &Decision, kind: &str, sql: &[u8], span: &StatementSpan, lex: LexOptions) {
    let rules: Vec<&str> = d.verdicts.iter().map(|v| v.finding.rule).collect();
    for v in d.verdicts.iter().filter(|v| v.overridden.is_some()) {
        tracing::info!(rule = v.finding.rule, reason = v.overridden.as_deref().unwrap_or(""), profile = %d.profile, "override applied");
    }
    if d.intended == Action::Allow && d.error.is_none() {
        tracing::debug!(?rules, profile = %d.profile, "DDL allowed");
    } else {
        tracing::info!(
            ?rules,
            intended = d.intended.as_str(),
            action = d.effective.as_str(),
            mode = d.mode.as_str(),
            profile = %d.profile,
            error = d.error.as_ref().map(ToString::to_string),
            kind,
            sql = %loggable(sql.get(span.start..span.end).unwrap_or_default(), lex, 200),
            "DDL decision"
        );
    }
}

/// SQL for logs: at most `max` bytes (see [`truncated`]), and with every string literal
/// replaced by `'***'` when the SQL mentions a password (`CREATE ROLE … PASSWORD '…'`,
/// `ALTER USER … PASSWORD`): ddlgate never logs passwords.
pub fn loggable(sql: &[u8], lex: LexOptions, max: usize) -> String {
    let tokens = lexer::tokens(sql, 0, sql.len(), lex);
    loggable_tokens(sql, &tokens, 0, sql.len(), max)
}

/// [`loggable`] for the statement `sql[start..end]` whose tokens the caller has.
fn loggable_tokens(sql: &[u8], tokens: &[Token], start: usize, end: usize, max: usize) -> String {
    let text = sql.get(start..end).unwrap_or_default();
    let words = || tokens.iter().filter(|t| !t.is_comment());
    if !words().any(|t| t.is_word(sql, "PASSWORD")) {
        return truncated(text, max);
    }
    let mut out = Vec::with_capacity(text.len().min(max));
    let mut at = start;
    for t in words().filter(|t| matches!(t.kind, TokenKind::String | TokenKind::DollarString)) {
        out.extend_from_slice(sql.get(at..t.start).unwrap_or_default());
        out.extend_from_slice(b"'***'");
        at = t.end;
    }
    out.extend_from_slice(sql.get(at..end).unwrap_or_default());
    truncated(&out, max)
}

/// SQL for logs: at most `max` bytes, lossy UTF-8, marked when cut.
pub fn truncated(sql: &[u8], max: usize) -> String {
    if sql.len() <= max {
        String::from_utf8_lossy(sql).into_owned()
    } else {
        format!(
            "{}… ({} bytes)",
            String::from_utf8_lossy(&sql[..max]),
            sql.len()
        )
    }
}

/// `server_version` as PostgreSQL reports it ("15.18 (Debian 15.18-0+deb12u1)", "18beta1",
/// "9.6.24") → `server_version_num` style (150018, 180000, 90624).
pub fn parse_server_version(v: &str) -> Option<u32> {
    let digits: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        Some(major * 10_000 + minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        Some(major * 10_000 + minor * 100 + patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::created::{Identity, Resolved};
    use crate::policy::Policy;

    fn ctx(tx: TxStatus) -> Context {
        Context {
            tx,
            lex: LexOptions::default(),
            server_version: Some(150_000),
            pipelined: false,
            tool: None,
        }
    }

    fn run(sql: &str, tx: TxStatus) -> (Summary, Plan, Counters) {
        let counters = Counters::default();
        let policy = Policy::from_config(&Config::default());
        let (s, p) = Analyzer::default().analyze(
            &counters,
            policy.profile_for("", "", ""),
            Source::Query,
            sql.as_bytes(),
            &ctx(tx),
        );
        (s, p, counters)
    }

    #[test]
    fn partition_trees_are_bounded_in_depth() {
        use crate::catalog::{Partition, RelKind};
        let chain = |levels: usize| -> Vec<Partition> {
            (1..=levels)
                .map(|l| Partition {
                    name: Name::bare(&format!("p{l}")),
                    parent: Name::bare(&format!("p{}", l - 1)),
                    kind: if l == levels {
                        RelKind::Table
                    } else {
                        RelKind::PartitionedTable
                    },
                    level: l as u32,
                })
                .collect()
        };
        let shallow = partition_tree(&Name::bare("p0"), &chain(5), 0).expect("5 levels");
        assert_eq!(shallow.len(), 1);
        let deep = partition_tree(&Name::bare("p0"), &chain(MAX_PARTITION_DEPTH + 5), 0);
        assert!(deep.is_err(), "a tree deeper than the bound is refused");
    }

    #[test]
    fn empty_statements_cost_nothing_and_statements_are_capped() {
        let counters = Counters::default();
        let policy = Policy::from_config(&Config::default());
        let profile = policy.profile_for("", "", "");
        let mut a = Analyzer::default();
        a.set_max_statements(3);
        // A million `;`: nothing kept, nothing to decide.
        let semis = ";".repeat(1_000_000);
        let (s, p) = a.analyze(
            &counters,
            profile,
            Source::Query,
            semis.as_bytes(),
            &ctx(TxStatus::Idle),
        );
        assert!(p.is_forward());
        assert_eq!(s.statements, 0);
        assert!(a.prepared.spans.capacity() <= SPANS_KEPT);
        // Many statements, none DDL: forwarded untouched however many.
        let dml = "SELECT 1;".repeat(10);
        let (s, p) = a.analyze(
            &counters,
            profile,
            Source::Query,
            dml.as_bytes(),
            &ctx(TxStatus::Idle),
        );
        assert!(p.is_forward());
        assert_eq!(s.statements, 10);
        // DDL past the limit: refused whole as unverifiable, counted as not understood.
        let hidden = format!("{dml} DROP TABLE victim");
        assert!(a.has_ddl_candidate(hidden.as_bytes(), LexOptions::default()));
        let (s, p) = a.analyze(
            &counters,
            profile,
            Source::Query,
            hidden.as_bytes(),
            &ctx(TxStatus::Idle),
        );
        assert_eq!(s.ddl_unknown, 1);
        let sql = String::from_utf8(p.sql.expect("replaced")).expect("utf8");
        assert!(
            sql.starts_with("DO $ddlgate$") && sql.contains("DG002"),
            "{sql}"
        );
        assert!(!sql.contains("DROP TABLE victim"));
        assert_eq!(counters.ddl_understood(Understood::Unknown), 1);
        // Within the limit, the same DDL is decided as usual.
        let (s, _) = a.analyze(
            &counters,
            profile,
            Source::Query,
            b"SELECT 1; DROP TABLE victim",
            &ctx(TxStatus::Idle),
        );
        assert_eq!((s.statements, s.ddl_candidates, s.ddl_unknown), (2, 1, 0));
    }

    #[test]
    fn settings_effects_are_assumed_unless_ruled_out() {
        let effects = |sql: &str| {
            let counters = Counters::default();
            let policy = Policy::from_config(&Config::default());
            let mut a = Analyzer::default();
            a.analyze(
                &counters,
                policy.profile_for("", "", ""),
                Source::Query,
                sql.as_bytes(),
                &ctx(TxStatus::Idle),
            );
            let e = a.effects().clone();
            (e.settings, e.lexing)
        };
        for neutral in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "BEGIN",
            "SAVEPOINT a",
        ] {
            assert_eq!(effects(neutral), (false, false), "{neutral}");
        }
        for other in [
            "SET search_path = s",
            "SET LOCAL application_name = 'x'",
            "RESET TimeZone",
        ] {
            assert_eq!(effects(other), (true, false), "{other}");
        }
        for lexing in [
            "SET standard_conforming_strings = off",
            "set session \"Standard_Conforming_Strings\" to on",
            "SET NAMES 'SJIS'",
            "SET client_encoding = 'BIG5'",
            "RESET ALL",
            "RESET standard_conforming_strings",
            "DISCARD ALL",
            "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false)",
            "SELECT \"set_config\"('standard_conforming_strings', 'off', false)",
            "SELECT pg_catalog.SET_CONFIG('standard_conforming_strings', 'off', false)",
            "COMMIT",
            "ROLLBACK TO SAVEPOINT a",
            "EXECUTE p",
            "CALL p()",
            "DO $$ BEGIN PERFORM 1; END $$",
            "SET",
        ] {
            assert_eq!(effects(lexing), (true, true), "{lexing}");
        }
        let counters = Counters::default();
        let policy = Policy::from_config(&Config::default());
        let mut a = Analyzer::default();
        a.analyze(
            &counters,
            policy.profile_for("", "", ""),
            Source::Query,
            b"DEALLOCATE PREPARE \"S1\"; DEALLOCATE s2; DEALLOCATE ALL",
            &ctx(TxStatus::Idle),
        );
        assert_eq!(
            a.effects().deallocates,
            vec![Some(b"S1".to_vec()), Some(b"s2".to_vec()), None]
        );
    }

    #[test]
    fn ordinary_traffic_is_forwarded_untouched() {
        let (s, p, c) = run("SELECT 1; INSERT INTO t VALUES (';')", TxStatus::Idle);
        assert!(p.is_forward());
        assert_eq!(
            s,
            Summary {
                statements: 2,
                ddl_candidates: 0,
                dml: 2,
                ddl_unknown: 0
            }
        );
        assert_eq!(c.statements(StatementClass::Dml), 2);
        assert_eq!(c.multi_statement_queries.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn rewrite_splices_the_statement_and_announces_it() {
        let (_, p, _) = run("/* keep me */ CREATE INDEX i ON t (x)", TxStatus::Idle);
        assert_eq!(
            p.sql.as_deref(),
            Some(&b"/* keep me */ CREATE INDEX CONCURRENTLY i ON t (x)"[..])
        );
        assert_eq!(p.notices.len(), 1);
    }

    #[test]
    fn blocks_are_replaced_by_a_raising_do_block_in_place() {
        let (_, p, c) = run(
            "INSERT INTO log VALUES (1); CREATE INDEX i ON t (x); SELECT 2",
            TxStatus::Idle,
        );
        let sql = String::from_utf8(p.sql.expect("replaced")).expect("utf-8");
        assert!(
            sql.starts_with("INSERT INTO log VALUES (1); DO $ddlgate$"),
            "{sql}"
        );
        assert!(sql.ends_with("$ddlgate$; SELECT 2"), "{sql}");
        assert!(
            sql.contains("DG001") && sql.contains("require-concurrent-index-creation"),
            "{sql}"
        );
        assert_eq!(
            c.decisions
                .rule_action("require-concurrent-index-creation", Action::Block),
            1
        );
    }

    /// The text of the block that replaced the only statement of `sql`.
    fn block_text(sql: &str, tx: TxStatus) -> String {
        let (_, p, _) = run(sql, tx);
        // A rewrite that could not be carried out is blocked, still under the guard.
        assert!(
            matches!(
                p.execution(),
                Execution::Replace(_) | Execution::Guard { sql: Some(_), .. }
            ),
            "{sql}"
        );
        assert!(!p.blocked.is_empty(), "{sql}: the plan names its rules");
        let Some(text) = p.sql else {
            panic!("{sql}: not blocked: {:?} {:?}", p.recipe, p.notices)
        };
        String::from_utf8(text).expect("utf-8")
    }

    /// Issue 11: the proxy path reads a DDL statement once. Each statement goes through every
    /// call the session makes for it — the prefilter check, the catalog request, the
    /// created-in-transaction read, the decision — and sqlparser runs once for it, the lexer
    /// once (the split, whose tokens every later reader shares). A rewrite is a new statement:
    /// its text is lexed and parsed once more, and that parse is what the guard plan uses.
    #[test]
    fn the_proxy_path_parses_and_lexes_a_ddl_statement_once() {
        let policy = Policy::from_config(&Config::default());
        let profile = policy.profile_for("", "", "");
        let lex = LexOptions::default();
        let count = |sql: &[u8]| {
            let mut a = Analyzer::default();
            crate::sql::counting::reset();
            assert!(a.has_ddl_candidate(sql, lex));
            let _ = a.catalog_requests(sql, lex);
            let _ = a.identity_query(sql, lex, 256, 1024);
            a.provide_identity(None);
            let (_, plan) = a.analyze(
                &Counters::default(),
                profile,
                Source::Query,
                sql,
                &ctx(TxStatus::Idle),
            );
            (crate::sql::counting::get(), plan)
        };
        // Decided as written: one parse, one lexing pass.
        let ((parses, lexes), plan) = count(b"ALTER TABLE t ADD COLUMN c int");
        assert!(plan.sql.is_none(), "{:?}", plan.sql);
        assert_eq!((parses, lexes), (1, 1), "sqlparser runs, lexer passes");
        // Rewritten: the statement once, its CONCURRENTLY text once.
        let ((parses, lexes), plan) = count(b"CREATE INDEX i ON t (x)");
        assert_eq!(
            String::from_utf8(plan.sql.clone().expect("rewritten")).expect("utf-8"),
            "CREATE INDEX CONCURRENTLY i ON t (x)"
        );
        assert!(
            matches!(plan.execution(), Execution::Guard { sql: Some(_), .. }),
            "the rewritten statement runs under the guard"
        );
        assert_eq!(
            (parses, lexes),
            (2, 2),
            "sqlparser runs and lexer passes: the statement once, its rewrite once"
        );
        // Override comments are read from the split's tokens too.
        let ((parses, lexes), plan) = count(
            b"/* ddlgate:allow require-concurrent-index-creation reason=\"tiny\" */ CREATE INDEX i ON t (x)",
        );
        assert!(plan.sql.is_none(), "{:?}", plan.sql);
        assert_eq!((parses, lexes), (1, 1));
        // A table the server says is free, created in the transaction: what the created-in-
        // transaction bookkeeping reads of it (IF NOT EXISTS, AS) comes from the same tokens.
        let mut a = Analyzer {
            identity: Some(Identity::of(vec![free("n")], vec![11, 2200], Some(2200))),
            max_created: 10,
            ..Analyzer::default()
        };
        crate::sql::counting::reset();
        let (_, plan) = a.analyze(
            &Counters::default(),
            profile,
            Source::Query,
            b"CREATE TABLE n (id int)",
            &ctx(TxStatus::InTransaction),
        );
        assert!(plan.sql.is_none(), "{:?}", plan.sql);
        assert_eq!(crate::sql::counting::get(), (1, 1));
    }

    /// A refusal in a session whose migration tool is known names that tool's way out in the
    /// message (most tools print nothing else), and the override too when the tool hides HINTs.
    #[test]
    fn refusals_name_the_sessions_tool_and_its_way_out() {
        let blocked = |tool: Option<crate::tools::Tool>| {
            let policy = Policy::from_config(&Config::default());
            let (_, p) = Analyzer::default().analyze(
                &Counters::default(),
                policy.profile_for("", "", ""),
                Source::Query,
                b"ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id)",
                &Context {
                    tool,
                    ..ctx(TxStatus::InTransaction)
                },
            );
            String::from_utf8(p.sql.expect("blocked")).expect("utf-8")
        };
        let sqlx = blocked(Some(crate::tools::Tool::Sqlx));
        assert!(
            sqlx.contains("Safe way with sqlx: put `-- no-transaction` as the first line"),
            "{sqlx}"
        );
        assert!(
            sqlx.contains("To run it as written: /* ddlgate:allow adding-foreign-key-constraint"),
            "{sqlx}"
        );
        // psql shows the HINT: its way out is said there, once, and the override too.
        let psql = blocked(Some(crate::tools::Tool::Psql));
        assert!(
            psql.contains("outside any transaction: with psql, run it"),
            "{psql}"
        );
        assert!(!psql.contains("Safe way with"), "{psql}");
        assert!(!psql.contains("To run it as written"), "{psql}");
        // An unknown tool: the way out in general words, the HINT listing every tool's switch.
        let unknown = blocked(None);
        assert!(
            unknown.contains("Safe way: run it as its own statement outside any transaction"),
            "{unknown}"
        );
        assert!(
            unknown.contains("node-pg-migrate `pgm.noTransaction()`"),
            "{unknown}"
        );
    }

    #[test]
    fn every_block_names_its_rules_and_the_override_that_allows_it() {
        let sql =
            "ALTER TABLE t DROP CONSTRAINT x, ADD CONSTRAINT x FOREIGN KEY (a) REFERENCES p(id)";
        // Outside a transaction the rule asks for safe steps and no recipe fits two actions;
        // inside one the rule blocks outright. Both name the rule and the override.
        for tx in [TxStatus::Idle, TxStatus::InTransaction] {
            let text = block_text(sql, tx);
            assert!(
                text.contains("MESSAGE = E'ddlgate blocked this statement (rule adding-foreign-key-constraint: "),
                "{text}"
            );
            let comment = text
                .split("/* ddlgate:allow ")
                .nth(1)
                .and_then(|rest| rest.split(" */").next())
                .unwrap_or_else(|| panic!("no override comment in {text}"));
            assert_eq!(comment, "adding-foreign-key-constraint reason=\"…\"");
            // The comment named in the hint allows the statement as written.
            let overridden = format!("/* ddlgate:allow {comment} */ {sql}");
            let (_, p, _) = run(&overridden, tx);
            assert!(
                p.sql.is_none() && p.recipe.is_none(),
                "{overridden}: {:?}",
                p.sql
            );
        }
        // Several blocking rules: all named, one comment.
        let text = block_text("ALTER TABLE t RENAME COLUMN a TO b", TxStatus::Idle);
        assert!(
            text.contains("/* ddlgate:allow renaming-column reason="),
            "{text}"
        );
        // unparsed-ddl states the override once.
        let text = block_text("ALTER FROBNICATE t", TxStatus::InTransaction);
        assert_eq!(text.matches("ddlgate:allow").count(), 1, "{text}");
        assert!(text.contains("DG002"), "{text}");
    }

    #[test]
    fn typos_are_forwarded_and_counted_not_blocked() {
        let (s, p, c) = run("selec 1", TxStatus::Idle);
        assert!(p.sql.is_none() && p.audit.is_empty(), "{:?}", p.sql);
        assert_eq!((s.ddl_candidates, s.ddl_unknown), (0, 0));
        assert_eq!(c.statements(StatementClass::NotACommand), 1);
        // Next to DDL, the DDL is still decided.
        let (_, p, c) = run("selec 1; ALTER FROBNICATE t", TxStatus::Idle);
        assert!(
            p.sql
                .is_some_and(|sql| sql.starts_with(b"selec 1; DO $ddlgate$"))
        );
        assert_eq!(c.statements(StatementClass::NotACommand), 1);
        assert_eq!(c.statements(StatementClass::DdlCandidate), 1);
        // A server newer than the command list (or of unknown version) may know the word.
        for version in [Some(200_000), None] {
            let policy = Policy::from_config(&Config::default());
            let (_, p) = Analyzer::default().analyze(
                &Counters::default(),
                policy.profile_for("", "", ""),
                Source::Query,
                b"selec 1",
                &Context {
                    server_version: version,
                    ..ctx(TxStatus::Idle)
                },
            );
            assert!(
                p.sql
                    .is_some_and(|sql| sql.windows(5).any(|w| w == b"DG002")),
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_profile_that_forbids_the_override_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[policy]\noverridable = [\"ban-drop-column\"]\n").expect("write");
        let cfg = Config::load_with_env(Some(&path), &Default::default(), Vec::new())
            .expect("valid config");
        let policy = Policy::from_config(&cfg);
        let (_, p) = Analyzer::default().analyze(
            &Counters::default(),
            policy.profile_for("", "", ""),
            Source::Query,
            b"CREATE INDEX i ON t (x)",
            &ctx(TxStatus::InTransaction),
        );
        let text = String::from_utf8(p.sql.expect("blocked")).expect("utf-8");
        assert!(!text.contains("ddlgate:allow"), "{text}");
        assert!(text.contains("does not allow overriding"), "{text}");
    }

    /// Runs `sql` after a created-in-transaction read that resolved `names` (public is OID
    /// 2200, the creation schema; pg_catalog 11).
    fn run_with(sql: &str, tx: TxStatus, names: &[(Name, Resolved)]) -> Plan {
        let counters = Counters::default();
        let policy = Policy::from_config(&Config::default());
        let mut a = Analyzer {
            identity: Some(Identity::of(names.to_vec(), vec![11, 2200], Some(2200))),
            max_created: 10,
            ..Analyzer::default()
        };
        a.analyze(
            &counters,
            policy.profile_for("", "", ""),
            Source::Query,
            sql.as_bytes(),
            &ctx(tx),
        )
        .1
    }

    fn free(name: &str) -> (Name, Resolved) {
        (Name::bare(name), Resolved::default())
    }

    fn existing(name: &str, oid: u32) -> (Name, Resolved) {
        let r = Resolved {
            oid: Some(oid),
            at_creation: Some(oid),
            ..Resolved::default()
        };
        (Name::bare(name), r)
    }

    #[test]
    fn transaction_status_evolves_through_a_query() {
        // BEGIN inside the same Query: the CREATE INDEX runs in a transaction block, on a
        // table the server said did not exist before the CREATE TABLE of the same Query.
        let p = run_with(
            "BEGIN; CREATE TABLE n (x int); CREATE INDEX i ON n (x)",
            TxStatus::Idle,
            &[free("n")],
        );
        assert!(
            p.is_forward(),
            "an index on a table created in the same transaction is fine"
        );
        // Without the server's word, nothing is new.
        let (_, p, _) = run(
            "BEGIN; CREATE TABLE n (x int); CREATE INDEX i ON n (x)",
            TxStatus::Idle,
        );
        assert!(p.sql.is_some(), "blocked without a catalog read");
    }

    #[test]
    fn names_as_written_never_make_a_table_new() {
        // The table exists: IF NOT EXISTS creates nothing, the DROP drops the real one.
        let p = run_with(
            "CREATE TABLE IF NOT EXISTS victim (id int); DROP TABLE victim",
            TxStatus::InTransaction,
            &[existing("victim", 500)],
        );
        assert!(
            p.audit.iter().any(|d| d.rules.contains(&"ban-drop-table")),
            "{:?}",
            p.audit
        );
        // Free at the read, but IF NOT EXISTS may have found another session's table by the
        // time it ran: not trusted inside the Query.
        let p = run_with(
            "CREATE TABLE IF NOT EXISTS n (id int); CREATE INDEX i ON n (id)",
            TxStatus::InTransaction,
            &[free("n")],
        );
        assert!(p.sql.is_some());
        // A changed search_path in between voids it.
        let p = run_with(
            "CREATE TABLE n (id int); SET search_path = other; CREATE INDEX i ON n (id)",
            TxStatus::InTransaction,
            &[free("n")],
        );
        assert!(p.sql.is_some());
        // Another spelling is another name: `public.n` is not asked about, so it is not new.
        let p = run_with(
            "CREATE TABLE n (id int); CREATE INDEX i ON public.n (id)",
            TxStatus::InTransaction,
            &[free("n")],
        );
        assert!(p.sql.is_some());
    }

    #[test]
    fn rows_written_earlier_in_the_query_make_table_sizes_unknown() {
        let small = crate::catalog::Facts {
            relation: Some(crate::catalog::Relation {
                exists: true,
                name: Some(Name::new(Some("public"), "t")),
                kind: Some(crate::catalog::RelKind::Table),
                rows: Some(10),
                bytes: Some(8192),
                ..crate::catalog::Relation::missing(Name::bare("t"))
            }),
            ..crate::catalog::Facts::default()
        };
        let decide = |sql: &str| {
            // Facts are keyed by the statement span's start, just after the `;`.
            let at = sql.find(';').expect("two statements") + 1;
            let counters = Counters::default();
            let policy = Policy::from_config(&Config::default());
            let mut a = Analyzer::default();
            a.provide_facts(vec![(at, small.clone())]);
            a.analyze(
                &counters,
                policy.profile_for("", "", ""),
                Source::Query,
                sql.as_bytes(),
                &ctx(TxStatus::InTransaction),
            )
            .1
        };
        // A plain index build on a small table is fine inside a transaction…
        let p = decide("SHOW work_mem; CREATE INDEX i ON t (x)");
        assert!(p.sql.is_none(), "{:?}", p.audit);
        // …but not after a statement that may have filled it.
        for sql in [
            "INSERT INTO t SELECT generate_series(1, 10000000); CREATE INDEX i ON t (x)",
            "SELECT fill(); CREATE INDEX i ON t (x)",
        ] {
            assert!(
                decide(sql).sql.is_some(),
                "{sql}: decided as on a table of unknown size"
            );
        }
    }

    #[test]
    fn passwords_never_reach_the_log() {
        let lex = LexOptions::default();
        let out = loggable(
            b"ALTER ROLE app WITH LOGIN PASSWORD 'hunter2' VALID UNTIL 'infinity'",
            lex,
            200,
        );
        assert_eq!(
            out,
            "ALTER ROLE app WITH LOGIN PASSWORD '***' VALID UNTIL '***'"
        );
        let out = loggable(b"create user u password $p$hunter2$p$", lex, 200);
        assert!(!out.contains("hunter2"), "{out}");
        // Comments do not trigger it; other SQL is kept as is.
        let sql = b"CREATE INDEX i ON t (x) /* password */ WHERE k = 'v'";
        assert_eq!(loggable(sql, lex, 200), String::from_utf8_lossy(sql));
    }

    #[test]
    fn server_versions_parse() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            Some(150_018)
        );
        assert_eq!(parse_server_version("18beta1"), Some(180_000));
        assert_eq!(parse_server_version("9.6.24"), Some(90_624));
        assert_eq!(parse_server_version("x"), None);
    }
}
