//! The analysis hook: every statement's SQL text (from a simple Query or a Parse) passes through
//! here before it is forwarded, together with its context (transaction status, how many
//! statements share its protocol unit, server version, relations the server confirmed the
//! transaction created — see `created`).
//!
//! 1. The lexer splits the message into statements exactly where the server will.
//! 2. The keyword prefilter classifies each one; ordinary traffic stops here — no full parse.
//! 3. DDL candidates (and only they) are understood (`sql::parse`: sqlparser, with the
//!    token-based fallback classifier behind it), checked by the rules and decided by the
//!    session's policy profile.
//! 4. The result is a [`Plan`]: forward the message untouched (the common case), or forward it
//!    with statements replaced — by their rewritten safe form, or by a `DO` block that raises
//!    ddlgate's error (see `act`) — and with notices for the client.
//!
//! Everything is counted here (in `metrics::Counters`) and logged (decisions at info, SQL at debug).

use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::act::{self, BlockError};
use crate::guard::{GuardPlan, Retry};
use crate::metrics::{Counters, understood_index};
use crate::policy::{self, Decision, Profile};
use crate::protocol::TxStatus;
use crate::rewrite;
use crate::rules::{self, Action};
use crate::sql::lexer::{self, LexOptions, StatementSpan, TokenKind};
use crate::sql::parse;
use crate::sql::prefilter::{self, StatementClass};
use crate::sql::statement::{DdlKind, Name, Understood};

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

/// What the session does with the message.
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
    /// A decision rests on facts that only hold right now (what depends on the objects of a
    /// `DROP … CASCADE`): a prepared statement must not be executed on it in a later protocol
    /// unit, when other statements may have created dependents.
    pub fresh_facts_only: bool,
}

impl Plan {
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

/// The analysis step, owned by a session.
#[derive(Debug)]
pub struct Analyzer {
    /// Reused span buffer, so the hot path does not allocate per message. Holds only the
    /// non-empty statements (PostgreSQL discards empty ones), at most `max_statements`: a
    /// message of millions of `;` costs no memory here.
    spans: Vec<StatementSpan>,
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
    /// What the last split counted beyond `spans`.
    split_stats: SplitStats,
    /// Each kept statement's class, from one prefilter pass (reused buffer, like `spans`).
    classes: Vec<StatementClass>,
    /// At most this many statements of one message are analysed; a message with more that
    /// holds a DDL candidate fails closed as unverifiable.
    max_statements: usize,
    /// Catalog facts for the next message's DDL statements, by byte offset of the statement's
    /// start; consumed by the next [`Analyzer::analyze`].
    facts: Vec<(usize, crate::catalog::Facts)>,
    /// What the last analysed message may do to the session's settings.
    effects: Effects,
    /// `spans` already holds the split of this text (address, length, options), so the
    /// `analyze` that follows a `has_ddl_candidate` of the same message does not lex it again.
    split_of: Option<(usize, usize, LexOptions)>,
    /// Each DDL candidate of that split, understood once (by statement start): the catalog
    /// request, the created-in-transaction read and the decision share one parse.
    understood: Vec<(usize, crate::sql::statement::Ddl)>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            spans: Vec::new(),
            split_stats: SplitStats::default(),
            classes: Vec::new(),
            max_statements: crate::config::DEFAULT_MAX_STATEMENTS_PER_MESSAGE,
            created: Default::default(),
            identity_request: None,
            identity: None,
            max_created: 0,
            facts: Vec::new(),
            effects: Effects::default(),
            split_of: None,
            understood: Vec::new(),
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
fn statement_effects(
    sql: &[u8],
    span: &StatementSpan,
    lex: LexOptions,
    class: StatementClass,
    out: &mut Effects,
) {
    let mut words = lexer::Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment());
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
    if !out.lexing && crate::sql::side_effects::may_call_set_config(sql, span.start, span.end, lex)
    {
        out.settings = true;
        out.lexing = true;
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

/// Counted while splitting, over every statement of the message (kept in `spans` or not).
#[derive(Debug, Clone, Copy, Default)]
struct SplitStats {
    /// Non-empty statements.
    statements: usize,
    /// Any of them is a DDL candidate.
    ddl: bool,
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

    /// Whether `sql` holds any DDL candidate. Cheap (lexing only); the session uses it to wait
    /// for the server to be idle before a decision that depends on the transaction status.
    pub fn has_ddl_candidate(&mut self, sql: &[u8], lex: LexOptions) -> bool {
        self.split(sql, lex);
        self.split_stats.ddl
    }

    /// The last split found more statements than are analysed, DDL among them.
    fn unverifiable(&self) -> bool {
        self.split_stats.ddl && self.split_stats.statements > self.max_statements
    }

    /// The catalog queries the DDL statements of `sql` need: (statement start offset, query).
    /// Ordinary traffic needs none and is never parsed here either.
    pub fn catalog_requests(&mut self, sql: &[u8], lex: LexOptions) -> Vec<(usize, String)> {
        self.split(sql, lex);
        if self.unverifiable() {
            // Refused whole without being understood: nothing to look up.
            return Vec::new();
        }
        let cache = &mut self.understood;
        self.spans
            .iter()
            .filter(|s| prefilter::classify(sql, s) == StatementClass::DdlCandidate)
            .filter_map(|s| {
                let ddl = Self::understood(cache, sql, s, lex);
                crate::catalog::facts_query(&ddl).map(|q| (s.start, q))
            })
            .collect()
    }

    /// The statement at `span` of the current split, understood: parsed the first time it is
    /// asked for, then taken from the cache.
    fn understood(
        cache: &mut Vec<(usize, crate::sql::statement::Ddl)>,
        sql: &[u8],
        span: &StatementSpan,
        lex: LexOptions,
    ) -> crate::sql::statement::Ddl {
        match cache.binary_search_by_key(&span.start, |(at, _)| *at) {
            Ok(i) => cache[i].1.clone(),
            Err(i) => {
                let ddl = parse::understand(sql, span.start, span.end, lex);
                cache.insert(i, (span.start, ddl.clone()));
                ddl
            }
        }
    }

    /// Splits `sql` into `spans`, unless they already hold its split.
    fn split(&mut self, sql: &[u8], lex: LexOptions) {
        let key = (sql.as_ptr() as usize, sql.len(), lex);
        if self.split_of == Some(key) {
            return;
        }
        self.spans.clear();
        self.understood.clear();
        let (spans, max) = (&mut self.spans, self.max_statements);
        let mut stats = SplitStats::default();
        lexer::each_statement(sql, lex, |span| {
            if span.is_empty() {
                return;
            }
            stats.statements += 1;
            // A word that starts no command counts too: against a server newer than the command
            // list it is decided as a DDL candidate (`prefilter::for_server`).
            if !stats.ddl
                && matches!(
                    prefilter::classify(sql, &span),
                    StatementClass::DdlCandidate | StatementClass::NotACommand
                )
            {
                stats.ddl = true;
            }
            if spans.len() < max {
                spans.push(span);
            }
        });
        self.split_stats = stats;
        self.split_of = Some(key);
    }

    /// Gives back the span buffer a large message grew.
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
        self.split(sql, lex);
        self.max_created = max_created;
        let cache = &mut self.understood;
        let ddls: Vec<crate::sql::statement::Ddl> = self
            .spans
            .iter()
            .filter(|s| {
                !s.is_empty() && prefilter::classify(sql, s) == StatementClass::DdlCandidate
            })
            .map(|s| Self::understood(cache, sql, s, lex))
            .collect();
        self.identity_request = crate::created::request(&self.created, &ddls, max_names);
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

    /// Splits, classifies, decides, counts and logs the SQL of one Query or Parse message.
    pub fn analyze(
        &mut self,
        counters: &Counters,
        profile: &Profile,
        source: Source,
        sql: &[u8],
        ctx: &Context,
    ) -> (Summary, Plan) {
        self.split(sql, ctx.lex);
        self.split_of = None;
        self.effects = Effects::default();
        if self.split_stats.statements > self.spans.len() {
            // Not every statement was kept: assume the worst of those not looked at.
            self.effects.settings = true;
            self.effects.lexing = true;
        }
        if self.unverifiable() {
            let out = self.refuse_unverifiable(counters, profile, source, sql, ctx);
            self.shrink();
            return out;
        }
        let spans = std::mem::take(&mut self.spans);
        let facts = std::mem::take(&mut self.facts);
        self.identity_request = None;
        let mut scope = crate::created::Scope::begin(
            &mut self.created,
            self.identity.take(),
            self.max_created,
            ctx.lex,
        );
        // Only non-empty statements are kept (see `split`), all of them unless the message
        // has more than are analysed and none of them is DDL.
        let statements = spans.len();
        let mut classes = std::mem::take(&mut self.classes);
        classes.clear();
        classes.extend(
            spans
                .iter()
                .map(|s| prefilter::for_server(prefilter::classify(sql, s), ctx.server_version)),
        );
        // What a message does to names and facts matters only to its own DDL and to relations
        // the transaction created: ordinary traffic in a transaction that created nothing
        // changes nothing there, and is not looked at again (the hot path).
        let scoped = !self.created.is_empty() || classes.contains(&StatementClass::DdlCandidate);
        let mut summary = Summary {
            statements: self.split_stats.statements,
            ..Summary::default()
        };
        let mut plan = Plan::default();
        // Replacement text per statement, by span index.
        let mut replacements: Vec<(usize, Vec<u8>)> = Vec::new();
        // The transaction status as it evolves through a multi-statement Query.
        let mut tx = ctx.tx;
        // Transaction-control statements, for deciding how a guarded Query can be retried.
        let mut tx_control = Vec::new();
        for (i, (span, &class)) in spans.iter().zip(&classes).enumerate() {
            counters.statements[class.index()].increment(1);
            let mut understood = None;
            let mut runs = true;
            statement_effects(sql, span, ctx.lex, class, &mut self.effects);
            match class {
                StatementClass::Transaction => {
                    let before = tx;
                    tx = transaction_effect(sql, span, ctx.lex, tx);
                    tx_control.push((i, before, tx));
                }
                StatementClass::DdlCandidate => {
                    summary.ddl_candidates += 1;
                    // Only DDL candidates are ever parsed; ordinary traffic stops at the
                    // prefilter.
                    let ddl = Self::understood(&mut self.understood, sql, span, ctx.lex);
                    // Facts read before the message, unless an earlier statement of it may
                    // have changed them (a SET TimeZone, a rename, …): then the worst case.
                    // In statement order, as `catalog_requests` produced them.
                    let facts = facts
                        .binary_search_by_key(&span.start, |(at, _)| *at)
                        .ok()
                        .map(|k| &facts[k].1)
                        .filter(|_| scope.facts_hold(&ddl));
                    let mut resized = None;
                    let facts = scope.sized(facts, &mut resized);
                    let mut emptied = None;
                    let facts = scope.with_empty_new(&ddl, facts, &mut emptied);
                    let created = scope.new_names(&mut self.created, &ddl);
                    if let Some(replacement) = self.decide(
                        counters,
                        profile,
                        sql,
                        span,
                        &ddl,
                        facts,
                        &created,
                        ctx,
                        tx,
                        statements,
                        &mut summary,
                        &mut plan,
                    ) {
                        replacements.push((i, replacement));
                        runs = false;
                    }
                    understood = Some(ddl);
                }
                StatementClass::Dml => summary.dml += 1,
                // Forwarded: the server answers it with its own syntax error (42601).
                StatementClass::Session | StatementClass::NotACommand => {}
            }
            if scoped {
                scope.after(
                    &mut self.created,
                    sql,
                    span,
                    class,
                    understood.as_ref(),
                    runs,
                );
            }
        }
        if scoped {
            scope.finish(&mut self.created);
        }
        self.classes = classes;
        if !replacements.is_empty() {
            plan.sql = Some(splice(sql, &spans, &replacements));
        }
        if let Some(guard) = plan.guard.as_mut() {
            guard.retry = retry_mode(ctx.tx, source, &tx_control, statements);
        }
        self.spans = spans;
        self.shrink();
        match source {
            Source::Query => {
                counters.queries.fetch_add(1, Ordering::Relaxed);
                if summary.statements > 1 {
                    counters
                        .multi_statement_queries
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Source::Parse => {
                counters.parses.fetch_add(1, Ordering::Relaxed);
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                source = ?source,
                statements = summary.statements,
                ddl_candidates = summary.ddl_candidates,
                tx = ctx.tx.as_str(),
                sql = %loggable(sql, ctx.lex, 200),
                "statement analysed"
            );
        }
        (summary, plan)
    }

    /// A message with more statements than are analysed, DDL among them: it cannot be
    /// verified, so it fails closed as a whole (counted as not understood) — blocked in
    /// enforce mode, a warning in warn mode, only logged in observe mode. Ordinary traffic
    /// never gets here: a message without any DDL candidate is forwarded however long it is.
    fn refuse_unverifiable(
        &mut self,
        counters: &Counters,
        profile: &Profile,
        source: Source,
        sql: &[u8],
        ctx: &Context,
    ) -> (Summary, Plan) {
        let stats = self.split_stats;
        counters.ddl_understood[understood_index(Understood::Unknown)].increment(1);
        match source {
            Source::Query => counters.queries.fetch_add(1, Ordering::Relaxed),
            Source::Parse => counters.parses.fetch_add(1, Ordering::Relaxed),
        };
        let summary = Summary {
            statements: stats.statements,
            ddl_candidates: 1,
            dml: 0,
            ddl_unknown: 1,
        };
        let err = BlockError {
            code: act::sqlstate::UNPARSED,
            message: format!(
                "ddlgate cannot verify this message: it holds {} statements, DDL among them, and ddlgate analyses at most {} per message",
                stats.statements, self.max_statements
            ),
            detail: "A message ddlgate cannot check completely is refused as a whole; none of its statements ran.".to_owned(),
            hint: "Send the DDL in smaller messages (e.g. one statement per Query), or raise limits.max_statements_per_message.".to_owned(),
        };
        tracing::warn!(
            statements = stats.statements,
            limit = self.max_statements,
            mode = profile.mode.as_str(),
            "message with DDL has too many statements to analyse; unverifiable"
        );
        let mut plan = Plan::default();
        let action = match profile.mode {
            crate::config::Mode::Enforce => {
                plan.sql = Some(err.to_sql());
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
        (summary, plan)
    }

    /// Understands, checks and decides one DDL candidate; returns its replacement text when it
    /// is rewritten or blocked, and adds any notices to the plan.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        counters: &Counters,
        profile: &Profile,
        sql: &[u8],
        span: &StatementSpan,
        ddl: &crate::sql::statement::Ddl,
        facts: Option<&crate::catalog::Facts>,
        created: &std::collections::HashSet<Name>,
        ctx: &Context,
        tx: TxStatus,
        statements: usize,
        summary: &mut Summary,
        plan: &mut Plan,
    ) -> Option<Vec<u8>> {
        counters.ddl_understood[understood_index(ddl.understood)].increment(1);
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
        let decision = policy::evaluate(profile, sql, span.start, span.end, ctx.lex, ddl, &rctx);
        if matches!(ddl.kind, DdlKind::DropCascade { .. })
            && facts.is_some_and(|f| !f.drops.is_empty())
        {
            plan.fresh_facts_only = true;
        }
        counters.decisions.record(&decision);
        log_decision(&decision, &ddl.kind, sql, span, ctx.lex);

        let mut rewritten = None;
        let replacement = match decision.effective {
            Action::Allow => None,
            Action::Warn => {
                plan.notices.extend(warnings(&decision, profile));
                None
            }
            Action::Block => Some(block_error(&decision, profile, ctx.tool).to_sql()),
            Action::Rewrite => match realize(
                decision.rewrite,
                sql,
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
                    counters.rewrite_failures.increment(1);
                    tracing::warn!(error = %why, "rewrite refused; blocking the statement instead");
                    let mut err = block_error(&decision, profile, ctx.tool);
                    err.detail = format!("{} {why}", err.detail);
                    Some(err.to_sql())
                }
            },
        };
        // The audit log's record of the decision (its outcome is added by the session).
        plan.audit.push(crate::audit::Draft {
            sql: loggable(
                sql.get(span.start..span.end).unwrap_or_default(),
                ctx.lex,
                AUDIT_SQL_MAX,
            ),
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
        replacement
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
        .and_then(|r| rewrite::apply(sql, from, span.end, lex, ddl, r, rctx))
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

fn log_decision(d: &Decision, kind: &DdlKind, sql: &[u8], span: &StatementSpan, lex: LexOptions) {
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
            kind = kind.label(),
            sql = %loggable(sql.get(span.start..span.end).unwrap_or_default(), lex, 200),
            "DDL decision"
        );
    }
}

/// SQL for logs: at most `max` bytes (see [`truncated`]), and with every string literal
/// replaced by `'***'` when the SQL mentions a password (`CREATE ROLE … PASSWORD '…'`,
/// `ALTER USER … PASSWORD`): ddlgate never logs passwords.
pub fn loggable(sql: &[u8], lex: LexOptions, max: usize) -> String {
    let tokens = || lexer::Lexer::new(sql, lex).filter(|t| !t.is_comment());
    if !tokens().any(|t| t.is_word(sql, "PASSWORD")) {
        return truncated(sql, max);
    }
    let mut out = Vec::with_capacity(sql.len().min(max));
    let mut at = 0;
    for t in tokens().filter(|t| matches!(t.kind, TokenKind::String | TokenKind::DollarString)) {
        out.extend_from_slice(sql.get(at..t.start).unwrap_or_default());
        out.extend_from_slice(b"'***'");
        at = t.end;
    }
    out.extend_from_slice(sql.get(at..).unwrap_or_default());
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
        assert!(a.spans.capacity() <= SPANS_KEPT);
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
        let Some(text) = p.sql else {
            panic!("{sql}: not blocked: {:?} {:?}", p.recipe, p.notices)
        };
        String::from_utf8(text).expect("utf-8")
    }

    /// Issue 11: the proxy path understands a DDL statement once. One `CREATE INDEX` as a
    /// simple Query goes through every call the session makes for it — the prefilter check,
    /// the catalog request, the created-in-transaction read, the decision — and sqlparser runs
    /// once for it, plus once for the CONCURRENTLY text the rewrite checks (whose parse the
    /// guard plan reuses).
    #[test]
    fn the_proxy_path_parses_a_ddl_statement_once() {
        let policy = Policy::from_config(&Config::default());
        let profile = policy.profile_for("", "", "");
        let sql: &[u8] = b"CREATE INDEX i ON t (x)";
        let lex = LexOptions::default();
        let mut a = Analyzer::default();
        crate::sql::counting::reset();
        assert!(a.has_ddl_candidate(sql, lex));
        assert_eq!(a.catalog_requests(sql, lex).len(), 1);
        let _ = a.identity_query(sql, lex, 256, 1024);
        a.provide_identity(None);
        let (_, plan) = a.analyze(
            &Counters::default(),
            profile,
            Source::Query,
            sql,
            &ctx(TxStatus::Idle),
        );
        let (parses, lexes) = crate::sql::counting::get();
        assert_eq!(
            String::from_utf8(plan.sql.expect("rewritten")).expect("utf-8"),
            "CREATE INDEX CONCURRENTLY i ON t (x)"
        );
        assert!(
            plan.guard.is_some(),
            "the rewritten statement runs under the guard"
        );
        assert_eq!(
            parses, 2,
            "sqlparser runs: the statement once, its rewrite once"
        );
        // Lexer passes: the split, the prefilter's look at the first words, the complexity
        // pre-check and readers of the statement; measured, and held from growing.
        assert!(lexes <= 12, "{lexes} lexer passes");
        eprintln!("parses {parses}, lexer passes {lexes}");
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
