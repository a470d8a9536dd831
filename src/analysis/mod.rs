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

use bytes::BytesMut;

use crate::guard::GuardPlan;
use crate::policy::{Decision, Profile};
use crate::protocol::TxStatus;
use crate::sql::lexer::{LexOptions, StatementSpan};
use crate::sql::prefilter::StatementClass;
use crate::sql::statement::Name;

mod decide;
mod effects;
mod prepare;
mod respond;
mod split;

pub use decide::{Realized, decide, realize};
pub use effects::Effects;
use effects::*;
pub use prepare::{Candidate, Prepared, prepare, prepare_into, prepare_with};
use respond::*;
pub use respond::{loggable, truncated};

pub use crate::metrics::{Counters, GuardCounters, understood_index};

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

/// What the server and the session know that the SQL does not: the inputs of [`decide`]
/// besides the [`Prepared`] message and its [`Context`].
#[derive(Debug, Default)]
pub struct Facts {
    /// Catalog facts for the message's DDL statements, by byte offset of the statement's
    /// start (as [`Prepared::catalog_requests`] asked for them).
    pub catalog: Vec<(usize, crate::catalog::Facts)>,
    /// The answer to the created-in-transaction read (`created`); `None`: nothing is new.
    pub identity: Option<crate::created::Identity>,
    /// The planner's estimates for the backfill guard's statements, by byte offset of the
    /// statement's start (as [`Prepared::estimate_requests`] asked for them).
    pub estimates: Vec<(usize, crate::catalog::estimate::Answer)>,
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
    /// multi-statement Query), forgotten when that ends; and the constraints it added NOT
    /// VALID there (what the proxy reads from the catalog, `validate-in-same-transaction`).
    Offline(
        &'a mut HashSet<Name>,
        &'a mut Vec<crate::rules::AddedNotValid>,
    ),
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
            counter.increment(n);
        }
    }
    for (counter, n) in counters.ddl_understood.iter().zip(t.ddl_understood) {
        if n > 0 {
            counter.increment(n);
        }
    }
    if t.rewrite_failures > 0 {
        counters.rewrite_failures.increment(t.rewrite_failures);
    }
    match t.source {
        Source::Query => counters.queries.increment(1),
        Source::Parse => counters.parses.increment(1),
    };
    if t.multi_statement {
        counters.multi_statement_queries.increment(1);
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

/// The analysis step, owned by a session: the thin holder of the message being prepared and
/// of what outlives a message (relations the transaction created). The work is done by
/// [`prepare`] and [`decide`].
#[derive(Debug)]
pub struct Analyzer {
    /// The message last prepared (reused buffers, so the hot path does not allocate).
    prepared: Prepared,
    /// Look for the backfill guard's statements (the session's profile has it on).
    backfill: bool,
    /// `prepared` holds this text (address, length, options, backfill), so the calls the session makes
    /// for one message — [`Analyzer::has_ddl_candidate`], the catalog reads,
    /// [`Analyzer::analyze`] — prepare it once. Cleared by `analyze`: the next message may
    /// reuse the same buffer.
    prepared_of: Option<(usize, usize, LexOptions, bool)>,
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
    /// The planner's estimates for the next message's backfill candidates; consumed by the
    /// next [`Analyzer::analyze`], and used only if that message is the one they were read
    /// for (`estimates_of`: a hash of its text): a message decided without analysis in
    /// between (a refusal) must not pass its estimates on to the next.
    estimates: Vec<(usize, crate::catalog::estimate::Answer)>,
    estimates_of: u64,
    /// What the last analysed message may do to the session's settings.
    effects: Effects,
    /// The session's tracing span, entered while a message holding DDL is decided: the hot
    /// path does not enter it at all (see `session::SessionSpan`).
    span: tracing::Span,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            prepared: Prepared::default(),
            prepared_of: None,
            backfill: false,
            estimates: Vec::new(),
            estimates_of: 0,
            max_statements: crate::config::DEFAULT_MAX_STATEMENTS_PER_MESSAGE,
            created: Default::default(),
            identity_request: None,
            identity: None,
            max_created: 0,
            facts: Vec::new(),
            effects: Effects::default(),
            span: tracing::Span::none(),
        }
    }
}

/// Where the SQL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Query,
    Parse,
}

impl Analyzer {
    /// The span what this analyzer logs about DDL belongs to (the session's).
    pub fn set_span(&mut self, span: tracing::Span) {
        self.span = span;
    }

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

    /// Whether the backfill guard examines this session's UPDATE and DELETE (its profile's
    /// `backfill.enabled`). Off, they are ordinary traffic.
    pub fn set_backfill(&mut self, on: bool) {
        self.backfill = on;
    }

    /// Whether `sql` needs the DDL lane at a statement boundary before it is decided: it holds
    /// a DDL candidate, or (backfill guard on) an UPDATE/DELETE to estimate.
    pub fn needs_lane(&mut self, sql: &[u8], lex: LexOptions) -> bool {
        self.prepare(sql, lex).needs_lane()
    }

    /// The backfill guard's EXPLAINs for `sql` (see [`Prepared::estimate_requests`]).
    pub fn estimate_requests(
        &mut self,
        sql: &[u8],
        lex: LexOptions,
    ) -> (Vec<(usize, Vec<u8>)>, Vec<usize>) {
        self.prepare(sql, lex).estimate_requests(sql, lex)
    }

    /// The planner's estimates for the next [`Analyzer::analyze`] call, read for `sql`.
    pub fn provide_estimates(
        &mut self,
        sql: &[u8],
        estimates: Vec<(usize, crate::catalog::estimate::Answer)>,
    ) {
        self.estimates_of = text_hash(sql);
        self.estimates = estimates;
    }

    /// Whether `sql` holds any DDL candidate; the session uses it to wait for the server to
    /// be idle before a decision that depends on the transaction status. Prepares the message
    /// (ordinary traffic: lexing only), for the calls that follow.
    pub fn has_ddl_candidate(&mut self, sql: &[u8], lex: LexOptions) -> bool {
        self.prepare(sql, lex).ddl
    }

    /// The catalog queries the DDL statements of `sql` need: (statement start offset, query).
    /// Ordinary traffic needs none and is never parsed here either. `source`: a simple Query
    /// or a Parse (see [`Prepared::catalog_requests`]).
    pub fn catalog_requests(
        &mut self,
        sql: &[u8],
        lex: LexOptions,
        source: Source,
    ) -> Vec<(usize, String)> {
        self.prepare(sql, lex).catalog_requests(source)
    }

    /// The DDL statements of `sql` as understood, in statement order (for the undo snapshot,
    /// `crate::undo::capture`; the message is prepared once for this and the decision).
    pub fn understood(
        &mut self,
        sql: &[u8],
        lex: LexOptions,
    ) -> Vec<(
        crate::sql::statement::Ddl,
        Vec<crate::undo::capture::Object>,
    )> {
        let p = self.prepare(sql, lex);
        p.ddl_candidates()
            .map(|c| {
                let span = p.spans[c.index];
                let objects = crate::undo::capture::objects(sql, span.start, span.end, lex, &c.ddl);
                (c.ddl.clone(), objects)
            })
            .collect()
    }

    /// Prepares `sql`, unless `prepared` already holds it.
    fn prepare(&mut self, sql: &[u8], lex: LexOptions) -> &Prepared {
        let key = (sql.as_ptr() as usize, sql.len(), lex, self.backfill);
        if self.prepared_of != Some(key) {
            prepare_with(
                &mut self.prepared,
                sql,
                lex,
                self.max_statements,
                self.backfill,
            );
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
        let ddl = self.prepare(sql, ctx.lex).ddl;
        // What deciding DDL logs belongs to the session.
        let _entered = ddl.then(|| self.span.enter());
        self.prepared_of = None;
        self.identity_request = None;
        let facts = Facts {
            catalog: std::mem::take(&mut self.facts),
            identity: self.identity.take(),
            estimates: Some(std::mem::take(&mut self.estimates))
                .filter(|e| !e.is_empty() && text_hash(sql) == self.estimates_of)
                .unwrap_or_default(),
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

/// A hash of a message's text, to tie the estimates read for it to it.
fn text_hash(sql: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    sql.hash(&mut h);
    h.finish()
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
    use super::decide::{MAX_PARTITION_DEPTH, partition_tree};
    use super::prepare::SPANS_KEPT;
    use super::*;
    use crate::config::Config;
    use crate::created::{Identity, Resolved};
    use crate::policy::Policy;
    use crate::rules::Action;
    use crate::sql::statement::Understood;

    fn ctx(tx: TxStatus) -> Context {
        Context {
            tx,
            lex: LexOptions::default(),
            server_version: Some(150_000),
            pipelined: false,
            tool: None,
        }
    }

    /// `a`'s plan for the Query `sql` under the default policy, in transaction status `tx`.
    fn analyze_query(a: &mut Analyzer, sql: &str, tx: TxStatus) -> Plan {
        let counters = Counters::default();
        let policy = Policy::from_config(&Config::default());
        a.analyze(
            &counters,
            policy.profile_for("", "", ""),
            Source::Query,
            sql.as_bytes(),
            &ctx(tx),
        )
        .1
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

    /// The rules that search what follows a statement (`rules::Context::later`) get a bounded
    /// window, for a bounded number of statements: a message of thousands of statements that
    /// each trigger a search costs linear time, not quadratic (9,000 of them searching all
    /// the text after them lexed about 2.2 GB before the bound).
    #[test]
    fn searching_later_statements_is_bounded_per_message() {
        let n = 9_000;
        let mut sql: String = (0..n)
            .map(|i| format!("ALTER TABLE t ADD COLUMN c{i} int NOT NULL DEFAULT 0;\n"))
            .collect();
        // Near the start: found. Past the window: not looked for.
        sql.push_str("ALTER TABLE t ALTER COLUMN c1 DROP DEFAULT;");
        let started = std::time::Instant::now();
        let (summary, plan, _) = run(&sql, TxStatus::Idle);
        let took = started.elapsed();
        assert_eq!(summary.statements, n + 1);
        assert!(
            took < std::time::Duration::from_secs(20),
            "{n} statements took {took:?}"
        );
        // Blocked (ADD COLUMN NOT NULL in a multi-statement Query is fine; none is flagged
        // for the DROP DEFAULT past the window).
        let warned = plan
            .notices
            .iter()
            .filter(|n| String::from_utf8_lossy(n).contains("dropping-required-column-default"))
            .count();
        assert_eq!(warned, 0, "the DROP DEFAULT is past the window");
        assert_eq!(crate::rules::later_window(sql.as_bytes(), 0, 65), b"");
        assert_eq!(
            crate::rules::later_window(sql.as_bytes(), 10, 1).len(),
            crate::rules::LATER_WINDOW
        );
        assert_eq!(crate::rules::later_window(b"abc", 1, 1), b"bc");
        assert_eq!(crate::rules::later_window(b"abc", 9, 1), b"");
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

    /// A DDL statement too long to hold its tokens is not understood (it fails closed), and its
    /// audit text still masks the password it carries.
    #[test]
    fn statements_past_the_token_bound_fail_closed_and_mask_passwords() {
        let policy = Policy::from_config(&Config::default());
        let profile = policy.profile_for("", "", "");
        let sql = format!(
            "ALTER ROLE r PASSWORD 'hunter2' {}",
            "/**/".repeat(crate::sql::lexer::MAX_KEPT_TOKENS)
        );
        let counters = Counters::default();
        let (s, p) = Analyzer::default().analyze(
            &counters,
            profile,
            Source::Query,
            sql.as_bytes(),
            &ctx(TxStatus::Idle),
        );
        assert_eq!((s.ddl_candidates, s.ddl_unknown), (1, 1));
        assert!(p.sql.is_some(), "blocked as unparsed-ddl");
        let audit = &p.audit[0].sql;
        assert!(audit.starts_with("ALTER ROLE r PASSWORD '***'"), "{audit}");
        assert!(!audit.contains("hunter2"));

        // The bound is the message's: two statements of 60% of it each, the second not read.
        let pad = "/**/".repeat(crate::sql::lexer::MAX_KEPT_TOKENS * 3 / 5);
        let sql = format!("CREATE TABLE a (x int {pad}); CREATE TABLE b (y int {pad})");
        let (s, _) = Analyzer::default().analyze(
            &counters,
            profile,
            Source::Query,
            sql.as_bytes(),
            &ctx(TxStatus::Idle),
        );
        assert_eq!((s.ddl_candidates, s.ddl_unknown), (2, 1));
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
        assert_eq!(c.value("ddlgate_multi_statement_queries_total", &[]), 1);
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
    fn not_valid_then_validate_in_one_transaction() {
        // (message, transaction status, outcome: Some(steps) = a recipe, None = blocked,
        // "" = forwarded untouched)
        let add = "ALTER TABLE big ADD CONSTRAINT big_chk2 CHECK (a > 0) NOT VALID";
        let validate = "ALTER TABLE big VALIDATE CONSTRAINT big_chk2";
        let fk =
            "ALTER TABLE big ADD CONSTRAINT big_fk FOREIGN KEY (r) REFERENCES r (id) NOT VALID";
        let pair = format!("{add}; {validate};");
        type Case<'a> = (String, TxStatus, Option<Option<Vec<&'a str>>>);
        let cases: Vec<Case> = vec![
            (
                pair.clone(),
                TxStatus::Idle,
                Some(Some(vec![add, validate])),
            ),
            (
                format!("{fk};\n  ALTER TABLE big VALIDATE CONSTRAINT big_fk"),
                TxStatus::Idle,
                Some(Some(vec![fk, "ALTER TABLE big VALIDATE CONSTRAINT big_fk"])),
            ),
            // Inside BEGIN, in a longer Query, or with BEGIN … COMMIT around it: blocked.
            (pair.clone(), TxStatus::InTransaction, Some(None)),
            (format!("BEGIN; {pair} COMMIT"), TxStatus::Idle, Some(None)),
            (format!("{pair} SELECT 1"), TxStatus::Idle, Some(None)),
            // Another constraint, or a COMMIT in between: nothing to say.
            (
                format!("{add}; ALTER TABLE big VALIDATE CONSTRAINT other"),
                TxStatus::Idle,
                None,
            ),
            (
                format!("BEGIN; {add}; COMMIT; {validate}"),
                TxStatus::Idle,
                None,
            ),
            (validate.to_owned(), TxStatus::Idle, None),
        ];
        for (sql, tx, expected) in cases {
            let (_, p, _) = run(&sql, tx);
            match expected {
                Some(Some(steps)) => {
                    let recipe = p
                        .recipe
                        .as_ref()
                        .unwrap_or_else(|| panic!("{sql}: no recipe"));
                    assert_eq!(
                        recipe.kind,
                        crate::recipe::RecipeKind::ValidateApart,
                        "{sql}"
                    );
                    assert_eq!(recipe.kind.statements(), 2);
                    let got: Vec<&str> = recipe.steps.iter().map(|s| s.sql.as_str()).collect();
                    assert_eq!(got, steps, "{sql}");
                    assert!(p.sql.is_none(), "{sql}: nothing else is replaced");
                    assert!(
                        p.notices
                            .iter()
                            .any(|n| String::from_utf8_lossy(n)
                                .contains("validate-in-same-transaction")),
                        "{sql}"
                    );
                }
                Some(None) => {
                    assert!(p.recipe.is_none(), "{sql}");
                    assert!(
                        p.blocked.contains(&"validate-in-same-transaction"),
                        "{sql}: {:?}",
                        p.blocked
                    );
                }
                None => assert!(
                    !p.blocked.contains(&"validate-in-same-transaction") && p.recipe.is_none(),
                    "{sql}"
                ),
            }
        }
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

    /// A DROP TABLE asks whether it drops a partition only when it is the message's only
    /// statement (the only case its facts change anything but a sentence): a message of many
    /// DROP TABLEs costs no catalog query.
    #[test]
    fn drop_table_facts_are_asked_for_a_lone_statement_only() {
        let lex = LexOptions::default();
        // (message, source, statements that get a catalog query)
        let cases: [(&str, Source, usize); 7] = [
            ("DROP TABLE ev_2025", Source::Query, 1),
            ("DROP TABLE IF EXISTS a, b", Source::Query, 1),
            ("BEGIN; DROP TABLE ev_2025; COMMIT", Source::Query, 0),
            ("DROP TABLE a; DROP TABLE b", Source::Query, 0),
            // Other statements' facts are still read in a longer message.
            ("DROP TABLE a; CREATE INDEX i ON t (x)", Source::Query, 1),
            // Prepared: no steps run there, the plain warning stays.
            ("DROP TABLE ev_2025", Source::Parse, 0),
            ("CREATE INDEX i ON t (x)", Source::Parse, 1),
        ];
        for (sql, source, expected) in cases {
            let mut a = Analyzer::default();
            let requests = a.catalog_requests(sql.as_bytes(), lex, source);
            assert_eq!(requests.len(), expected, "{sql}");
        }
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
            let _ = a.catalog_requests(sql, lex, Source::Query);
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
        // Outside a transaction the statement is split into safe steps (issue 12); inside one
        // the rule blocks outright, naming the rule and the override.
        let (_, p, _) = run(sql, TxStatus::Idle);
        assert!(p.sql.is_none() && p.recipe.is_some(), "{:?}", p.sql);
        {
            let tx = TxStatus::InTransaction;
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

    /// The backfill guard's candidates: UPDATE and DELETE (after comments, in any case), a
    /// WITH holding either word; only with the guard on, and never DDL or other DML.
    #[test]
    fn backfill_candidates_are_found_only_with_the_guard_on() {
        let sql = "select 1; /* c */ update t set x = 1; DELETE FROM t; WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d; \
                   WITH s AS (SELECT 1) SELECT * FROM s; INSERT INTO t VALUES (1); ALTER TABLE t ADD c int; \
                   UPDATE t SET x = $1; EXPLAIN ANALYZE UPDATE t SET x = 1; \
                   merge into t using s on t.id = s.id when matched then delete";
        let lex = LexOptions::default();
        let mut off = Prepared::default();
        prepare_with(&mut off, sql.as_bytes(), lex, 100, false);
        assert!(off.backfill.is_empty());
        assert!(off.needs_lane(), "the ALTER");
        let mut on = Prepared::default();
        prepare_with(&mut on, sql.as_bytes(), lex, 100, true);
        assert_eq!(on.backfill, [1, 2, 3, 7, 9]);
        let (requests, with_parameters) = on.estimate_requests(sql.as_bytes(), lex);
        assert_eq!(with_parameters.len(), 1, "UPDATE … $1 is not examined here");
        let texts: Vec<String> = requests
            .iter()
            .map(|(_, q)| String::from_utf8(q.clone()).expect("utf-8"))
            .collect();
        assert_eq!(
            texts,
            [
                "EXPLAIN (FORMAT JSON)  /* c */ update t set x = 1\n",
                "EXPLAIN (FORMAT JSON)  DELETE FROM t\n",
                "EXPLAIN (FORMAT JSON)  WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d\n",
                "EXPLAIN (FORMAT JSON)  merge into t using s on t.id = s.id when matched then delete\n",
            ]
        );
        // A message of ordinary DML alone needs the lane only with the guard on.
        let dml = b"UPDATE t SET x = 1";
        let mut p = Prepared::default();
        prepare_with(&mut p, dml, lex, 100, false);
        assert!(!p.needs_lane());
        prepare_with(&mut p, dml, lex, 100, true);
        assert!(p.needs_lane());
        // The analyzer keys its prepared message on the switch too.
        let mut a = Analyzer::default();
        assert!(!a.needs_lane(dml, lex));
        a.set_backfill(true);
        assert!(a.needs_lane(dml, lex));
    }

    /// Above the threshold the finding is decided like any rule's: warn, block (the numbers in
    /// the message), the override comment, the mode; at or under it nothing happens.
    #[test]
    fn estimates_above_the_threshold_are_decided_by_the_policy() {
        use crate::catalog::estimate::{Answer, Estimate};
        let run = |sql: &str, rows: u64, toml: &str, tx: TxStatus| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("b.toml");
            std::fs::write(&path, toml).expect("write");
            let cfg = Config::load_with_env(Some(&path), &Default::default(), Vec::new())
                .expect("valid config");
            let policy = Policy::from_config(&cfg);
            let mut a = Analyzer::default();
            a.set_backfill(true);
            let at = sql.find("UPDATE").expect("an UPDATE");
            let at = sql[..at].rfind(';').map_or(0, |i| i + 1);
            a.provide_estimates(
                sql.as_bytes(),
                vec![(
                    at,
                    Answer::Rows(Estimate {
                        rows,
                        table: Some("t".into()),
                        op: crate::catalog::estimate::Modification::Update,
                    }),
                )],
            );
            let counters = Counters::default();
            let (_, plan) = a.analyze(
                &counters,
                policy.profile_for("", "", ""),
                Source::Query,
                sql.as_bytes(),
                &ctx(tx),
            );
            (plan, counters)
        };
        let block = "[policy.backfill]\nenabled = true\nmax_rows = 100\naction = \"block\"\n";
        let (p, c) = run("UPDATE t SET x = 1", 101, block, TxStatus::Idle);
        let text = String::from_utf8(p.sql.expect("blocked")).expect("utf-8");
        assert!(text.contains("DG001"), "{text}");
        assert!(text.contains("estimated 101 rows, threshold 100"), "{text}");
        assert_eq!(p.blocked, ["large-backfill"]);
        assert_eq!(p.audit[0].rules, ["large-backfill"]);
        assert_eq!(p.audit[0].action, "block");
        assert_eq!(c.decisions.rule_action("large-backfill", Action::Block), 1);
        // Estimates read for another message (one refused without analysis in between) are
        // not used, even at the same offset.
        {
            let mut cfg = Config::default();
            cfg.policy.backfill.enabled = true;
            let policy = Policy::from_config(&cfg);
            let mut a = Analyzer::default();
            a.set_backfill(true);
            let estimate = Estimate {
                rows: 1 << 40,
                table: None,
                op: crate::catalog::estimate::Modification::Update,
            };
            a.provide_estimates(
                b"UPDATE t SET x = 1",
                vec![(0, Answer::Rows(estimate.clone()))],
            );
            let (_, p) = a.analyze(
                &Counters::default(),
                policy.profile_for("", "", ""),
                Source::Query,
                b"UPDATE t SET x = 2",
                &ctx(TxStatus::Idle),
            );
            assert!(p.is_forward() && p.audit.is_empty());
            // The same text: used.
            a.provide_estimates(b"UPDATE t SET x = 2", vec![(0, Answer::Rows(estimate))]);
            let (_, p) = a.analyze(
                &Counters::default(),
                policy.profile_for("", "", ""),
                Source::Query,
                b"UPDATE t SET x = 2",
                &ctx(TxStatus::Idle),
            );
            assert_eq!(p.notices.len(), 1);
        }
        // At the threshold: nothing.
        let (p, _) = run("UPDATE t SET x = 1", 100, block, TxStatus::Idle);
        assert!(p.is_forward() && p.audit.is_empty());
        // The second statement of a Query is replaced, the first kept.
        let (p, _) = run(
            "SELECT 1; UPDATE t SET x = 1",
            5000,
            block,
            TxStatus::InTransaction,
        );
        let text = String::from_utf8(p.sql.expect("blocked")).expect("utf-8");
        assert!(text.starts_with("SELECT 1; DO $"), "{text}");
        // The override comment.
        let (p, c) = run(
            "/* ddlgate:allow large-backfill reason=\"off-peak\" */ UPDATE t SET x = 1",
            5000,
            block,
            TxStatus::Idle,
        );
        assert!(p.sql.is_none() && p.notices.is_empty());
        assert_eq!(p.audit[0].override_reasons, ["off-peak"]);
        assert_eq!(c.decisions.overrides("large-backfill"), 1);
        // warn: a NOTICE; warn mode turns the block into one; observe shows nothing.
        let warn = "[policy.backfill]\nenabled = true\nmax_rows = 100\n";
        let (p, _) = run("UPDATE t SET x = 1", 5000, warn, TxStatus::Idle);
        assert!(p.sql.is_none() && p.notices.len() == 1);
        let (p, _) = run(
            "UPDATE t SET x = 1",
            5000,
            &format!("[policy]\nmode = \"warn\"\n{block}"),
            TxStatus::Idle,
        );
        assert!(p.sql.is_none() && p.notices.len() == 1);
        let (p, _) = run(
            "UPDATE t SET x = 1",
            5000,
            &format!("[policy]\nmode = \"observe\"\n{block}"),
            TxStatus::Idle,
        );
        assert!(p.sql.is_none() && p.notices.is_empty());
        assert_eq!(p.audit[0].intended, "block");
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
        let mut a = Analyzer {
            identity: Some(Identity::of(names.to_vec(), vec![11, 2200], Some(2200))),
            max_created: 10,
            ..Analyzer::default()
        };
        analyze_query(&mut a, sql, tx)
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
            let mut a = Analyzer::default();
            a.provide_facts(vec![(at, small.clone())]);
            analyze_query(&mut a, sql, TxStatus::InTransaction)
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

    /// A DO block's statements get the facts read for them only when nothing earlier in the
    /// message could have changed them (`rules::body::facts_plan` judges the body itself).
    #[test]
    fn do_body_facts_hold_only_at_the_start_of_the_message() {
        let block = "DO $$ BEGIN CREATE INDEX i ON t (x); END $$";
        let decide = |sql: &str| {
            // Facts are keyed by the statement span's start, just after the `;`.
            let do_at = sql.find("DO $$").expect("a DO");
            let at = sql[..do_at].rfind(';').map_or(0, |i| i + 1);
            // The body starts right after `DO $$`.
            let body_at = block.find("CREATE").expect("CREATE") - "DO $$".len();
            let body = crate::catalog::BodyFacts {
                start: body_at,
                end: body_at + "CREATE INDEX i ON t (x)".len(),
                facts: crate::catalog::testing::facts(
                    crate::catalog::testing::table("t", 10, 8192),
                    Vec::new(),
                ),
            };
            let mut a = Analyzer::default();
            a.provide_facts(vec![(
                at,
                crate::catalog::Facts {
                    body: vec![body],
                    ..Default::default()
                },
            )]);
            analyze_query(&mut a, sql, TxStatus::InTransaction)
        };
        assert!(decide(block).sql.is_none(), "small table: passes");
        assert!(
            decide(&format!("SET lock_timeout = '1s'; {block}"))
                .sql
                .is_none()
        );
        for before in [
            "SELECT fill()",
            "INSERT INTO t SELECT generate_series(1, 1000000)",
            "SET search_path = evil",
            "ALTER TABLE big RENAME TO t",
            "CREATE INDEX j ON u (y)",
        ] {
            let sql = format!("{before}; {block}");
            assert!(decide(&sql).sql.is_some(), "{sql}: decided without facts");
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
