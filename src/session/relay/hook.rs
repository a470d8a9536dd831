//! The analysis hook: every Query's and Parse's SQL passes here before it is forwarded, and
//! every Bind of a tracked prepared DDL statement. It asks the analyzer for a decision in the
//! session's context (transaction status, lexing, server version, pipelining, migration tool,
//! policy profile), remembers what prepared statements decided (`prepared`), and says what the
//! relay must do instead of forwarding: notices, a replacement frame, a guard plan, a recipe.
//! It writes no SQL: replacement texts come from the analyzer and from `act`'s refusals, frames
//! from `protocol::frontend`.

use bytes::{Bytes, BytesMut};

use super::State;
use super::prepared::{self, DecidedIn};
use crate::analysis::{Context, Source};
use crate::metrics::UnitKind;
use crate::protocol::{framing, frontend};
use crate::state::Shared;

/// What the analysis hook wants done with one Query or Parse.
pub(super) struct Hooked {
    pub(super) notices: Vec<BytesMut>,
    /// Replacement frame, if the SQL changed.
    pub(super) frame: Option<Bytes>,
    pub(super) guard: Option<crate::guard::GuardPlan>,
    pub(super) recipe: Option<crate::recipe::Recipe>,
    /// Its DDL's inverses go to the undo journal: a simple Query or a lone extended-protocol
    /// unit runs in the DDL lane (which writes them before the client hears back) even when
    /// the guard has nothing to do.
    pub(super) journal: bool,
}

/// Hands each audit draft the undo snapshot read for its statement (`crate::undo::capture`),
/// matched on the statement as understood, in order.
fn attach_before(
    drafts: &mut [crate::audit::Draft],
    mut before: Vec<(crate::sql::statement::Ddl, crate::undo::Before)>,
) {
    for d in drafts {
        let Some((original, _)) = d.ddl.as_deref() else {
            continue;
        };
        if let Some(i) = before.iter().position(|(ddl, _)| ddl == original) {
            d.before = Some(Box::new(before.remove(i).1));
        }
    }
}

/// What a Bind of prepared DDL runs with: the guard's plan, and the safe steps that run
/// instead of the statement when it was prepared to run as them.
#[derive(Default)]
pub(super) struct Bound {
    pub(super) plan: Option<crate::guard::GuardPlan>,
    pub(super) recipe: Option<crate::recipe::Recipe>,
}

/// Whether lexing `body` (a Query's or Parse's) depends on `standard_conforming_strings` or
/// `client_encoding`: only a backslash (in a string literal) or a byte outside ASCII (every
/// client encoding PostgreSQL accepts is ASCII-compatible) can be read differently.
pub(super) fn lexing_sensitive(body: &[u8]) -> bool {
    memchr::memchr(b'\\', body).is_some() || !body.is_ascii()
}

/// A Query/Parse that cannot be lexed with certainty, replaced by an error the server raises.
pub(super) fn lexing_refusal(tag: u8, body: &[u8]) -> Hooked {
    let err = crate::act::BlockError::lexing_unknown();
    Hooked {
        notices: Vec::new(),
        frame: frontend::Statement::decode(tag, body).map(|s| s.with_sql(&err.to_sql())),
        guard: None,
        recipe: None,
        journal: false,
    }
}

/// The statement name a refused Bind is pointed at: one that cannot exist (it names the
/// refused statement and carries a per-session random part), so that the server itself fails
/// the Bind with 26000 and discards the unit up to Sync — the protocol state stays exactly the
/// server's.
pub(super) fn refused_statement_name(statement: &[u8], nonce: u64) -> String {
    format!(
        "ddlgate refused prepared DDL {} (see the warning before this error) #{nonce:016x}",
        String::from_utf8_lossy(statement).replace('\0', "")
    )
}

/// The frame with its statement replaced by an error: the statement needs to run as safe
/// steps, which ddlgate does only for a statement sent alone as a simple Query.
pub(super) fn refusal_frame(tag: u8, body: &[u8], recipe: &crate::recipe::Recipe) -> Bytes {
    let err =
        crate::act::BlockError::steps_need_simple_query(recipe.kind.title(), &recipe.describe());
    match frontend::Statement::decode(tag, body) {
        Some(s) => s.with_sql(&err.to_sql()),
        None => Bytes::copy_from_slice(body),
    }
}

impl State {
    /// The analysis hook: every Query's and Parse's SQL passes here before it is forwarded.
    /// Returns `None` to forward the frame untouched (the common case), or the notices to send
    /// and the frame to forward instead.
    pub(super) fn on_client_sql(
        &mut self,
        shared: &Shared,
        counters: &crate::analysis::Counters,
        tag: u8,
        body: &[u8],
    ) -> Option<Hooked> {
        self.refresh_live(shared);
        let source = if tag == frontend::QUERY {
            Source::Query
        } else {
            Source::Parse
        };
        // A body without its terminator is malformed; the server will reject it, and there is
        // no SQL to analyse.
        let statement = frontend::Statement::decode(tag, body)?;
        let (sql, name) = (statement.sql(), statement.name());
        // A simple Query, and any Parse of it, drop the unnamed statement.
        if name.is_none_or(<[u8]>::is_empty) {
            self.prepared.unnamed_dropped();
        }
        if self.tool.is_none() && self.tool_search_left > 0 {
            self.tool_search_left -= 1;
            self.tool = crate::tools::Tool::from_sql(sql);
        }
        let ctx = Context {
            tx: self.proto.tx(),
            lex: self.server.lex,
            server_version: self.server.version_num,
            pipelined: source == Source::Parse && self.proto.pipelined(),
            tool: self.tool,
        };
        let (summary, mut plan) = self
            .analyzer
            .analyze(counters, &self.profile, source, sql, &ctx);
        attach_before(&mut plan.audit, std::mem::take(&mut self.lane.before));
        let journal =
            self.live.config.journal.enabled && plan.audit.iter().any(|d| d.ddl.is_some());
        self.units.audit_pending.append(&mut plan.audit);
        self.last_parse_ddl = summary.ddl_candidates > 0;
        self.last_parse_fresh = plan.fresh_facts_only;
        self.note_effects(name);
        let kind = UnitKind::of(summary.ddl_candidates, summary.dml);
        match source {
            Source::Query => self.last_kind = kind,
            Source::Parse => self.proto.note_unit_kind(kind),
        }
        if plan.is_forward() && !journal {
            return None;
        }
        let frame = plan.sql.map(|new_sql| statement.with_sql(&new_sql));
        Some(Hooked {
            notices: plan.notices,
            frame,
            // A Parse gets the lane only as a lone unit, which the relay recognises.
            guard: if journal && source == Source::Query {
                Some(plan.guard.unwrap_or_default())
            } else {
                plan.guard
            },
            recipe: plan.recipe,
            journal,
        })
    }

    /// After a configuration reload: the new limits and settings, and the profile the new policy
    /// gives this session, from its next statement on.
    pub(in crate::session) fn refresh_live(&mut self, shared: &Shared) {
        // The common case, no reload since the last statement: one atomic read.
        if shared.generation.load(std::sync::atomic::Ordering::Acquire) == self.live.generation {
            return;
        }
        let live = shared.live.load();
        if live.generation == self.live.generation {
            return;
        }
        self.live = arc_swap::Guard::into_inner(live);
        self.analyzer
            .set_max_statements(self.live.config.limits.max_statements_per_message);
        self.profile = self
            .live
            .policy
            .profile_for(
                &self.who.user,
                &self.who.database,
                &self.who.application_name,
            )
            .clone();
        self.analyzer.set_backfill(self.profile.backfill.enabled);
        let _entered = self.span.enter();
        tracing::info!(profile = %self.profile.name, generation = self.live.generation, "policy reloaded for this session");
    }

    /// What the message just analysed may do to settings: a simple Query does it now, a
    /// Parse when its statement is executed (remembered for its Binds, and assumed now too,
    /// as it may be executed in this very unit).
    fn note_effects(&mut self, parse_name: Option<&[u8]>) {
        let effects = self.analyzer.effects().clone();
        let cap = self.live.config.guard.max_tracked_statements;
        if effects.settings {
            self.settings_gen += 1;
        }
        if effects.lexing {
            self.lex_barrier = true;
        }
        if let Some(name) = parse_name {
            if effects.settings {
                self.prepared.note_settings(name, effects.lexing, cap);
            } else if self.prepared.settings_effect(name).is_some() {
                // An unnamed statement replaced (a named one cannot be).
                self.units
                    .untrack_pending
                    .push(self.prepared.untrack_request(Some(name)));
            }
        }
        for name in &effects.deallocates {
            self.units
                .untrack_pending
                .push(self.prepared.untrack_request(name.as_deref()));
        }
    }

    fn decided_in(&self) -> DecidedIn {
        DecidedIn {
            tx: self.proto.tx(),
            settings: self.settings_gen,
            transactions: self.proto.transactions_ended(),
        }
    }

    /// Tracks the statement a Parse prepares when it holds DDL, with what was decided and the
    /// SQL the server will hold; past `guard.max_tracked_statements` the Parse is refused
    /// instead (never run untracked).
    pub(super) fn track_parse(
        &mut self,
        body: &[u8],
        hooked: Option<Hooked>,
        cap: usize,
    ) -> Option<Hooked> {
        let Some(parse) = frontend::Parse::decode(body) else {
            return hooked;
        };
        let (name, sql) = (parse.name, parse.sql);
        if !self.last_parse_ddl {
            if self.prepared.tracks_ddl(name) {
                // An unnamed statement replaced (a named one cannot be: its Parse fails).
                self.units
                    .untrack_pending
                    .push(self.prepared.untrack_request(Some(name)));
            }
            return hooked;
        }
        let replaced = hooked.as_ref().and_then(|h| h.frame.as_ref());
        let held_sql = replaced
            .and_then(|f| frontend::Parse::decode(framing::body(f)).map(|p| p.sql))
            .unwrap_or(sql);
        let plan = hooked.as_ref().and_then(|h| h.guard.clone());
        let decided_in = self.decided_in();
        let fresh_unit = self.last_parse_fresh.then_some(self.proto.units_begun());
        match self
            .prepared
            .track(name, plan, held_sql, decided_in, fresh_unit, cap)
        {
            Ok(()) => hooked,
            Err(prepared::Full) => {
                let _entered = self.span.enter();
                tracing::warn!(
                    cap,
                    "too many prepared DDL statements tracked; Parse refused"
                );
                let err = crate::act::BlockError::too_many_prepared(cap);
                Some(Hooked {
                    notices: Vec::new(),
                    frame: frontend::Statement::decode(frontend::PARSE, body)
                        .map(|s| s.with_sql(&err.to_sql())),
                    guard: None,
                    recipe: None,
                    journal: false,
                })
            }
        }
    }

    /// The Parse of a lone unit (`parse`, a frame) prepared DDL as written that runs as
    /// `recipe`'s steps: a later Bind runs the steps again, or is refused.
    pub(in crate::session) fn remember_recipe(
        &mut self,
        parse: &[u8],
        recipe: &crate::recipe::Recipe,
    ) {
        if let Some(p) = frontend::Parse::decode(framing::body(parse)) {
            self.prepared.steps_confirmed(p.name, recipe);
        }
    }

    /// A Parse (`parse_body`) prepares DDL as written, to run as `recipe`'s steps when a lone
    /// unit executes it: remembered once the server confirms the Parse (its unit succeeds).
    pub(super) fn recipe_when_prepared(
        &mut self,
        parse_body: &[u8],
        recipe: &crate::recipe::Recipe,
    ) {
        if let Some(p) = frontend::Parse::decode(parse_body)
            && self.prepared.tracks_ddl(p.name)
        {
            let change = self.prepared.steps_request(p.name, recipe.clone());
            self.units.untrack_pending.push(change);
        }
    }

    /// A Bind of prepared DDL: its guard plan, and the steps that run instead of it when it
    /// was prepared for them, decided again first when the context changed since its Parse;
    /// `Err` when the new decision no longer allows it as prepared.
    pub(super) fn on_bind(
        &mut self,
        shared: &Shared,
        counters: &crate::analysis::Counters,
        statement: &[u8],
    ) -> Result<Bound, crate::act::BlockError> {
        self.refresh_live(shared);
        let now = self.decided_in();
        let Some(entry) = self.prepared.ddl_mut(statement) else {
            return Ok(Bound::default());
        };
        // A decision on facts that hold only now (what depends on a dropped object) is good
        // for the unit of its Parse only: in a later unit it is taken again, without them.
        let fresh = entry
            .fresh_unit
            .is_none_or(|u| u == self.proto.units_begun());
        if entry.decided_in == now && fresh {
            return Ok(Bound {
                plan: entry.plan.clone(),
                recipe: entry.recipe.clone(),
            });
        }
        let was = entry.decided_in;
        let entry_recipe = entry.recipe.is_some();
        let refusal = |why: &str| {
            crate::act::BlockError::prepared_no_longer_allowed(statement, was.tx.as_str(), why)
        };
        let Some(sql) = entry.sql.clone() else {
            return Err(refusal(
                "it is too long to be decided again in the current context",
            ));
        };
        let ctx = Context {
            tx: self.proto.tx(),
            lex: self.server.lex,
            server_version: self.server.version_num,
            pipelined: self.proto.pipelined(),
            tool: self.tool,
        };
        let (_, mut plan) =
            self.analyzer
                .analyze(counters, &self.profile, Source::Parse, &sql, &ctx);
        self.units.audit_pending.append(&mut plan.audit);
        // Steps decided without catalog facts are not run, and the statement they stand for
        // never runs as written.
        if plan.sql.is_some() || plan.recipe.is_some() || entry_recipe {
            let _entered = self.span.enter();
            tracing::info!("prepared DDL decided again at Bind: no longer allowed as prepared");
            return Err(refusal(
                "decided again in the current context, it is no longer allowed as prepared",
            ));
        }
        if let Some(entry) = self.prepared.ddl_mut(statement) {
            entry.plan = plan.guard.clone();
            entry.decided_in = now;
        }
        Ok(Bound {
            plan: plan.guard,
            recipe: None,
        })
    }

    /// The statement and portal name of ddlgate's own extended-protocol units (every query of
    /// its own, the backfill guard's bound EXPLAIN, its refusals): never the unnamed ones, the
    /// client's; unique to the session and unpredictable, so that it is no name the client
    /// chose.
    pub(in crate::session) fn own_statement_name(&self) -> String {
        format!("ddlgate_own_{:016x}", self.refusal_nonce)
    }

    /// Keeps the UPDATE/DELETE/MERGE with parameters a Parse (`body`) prepares, its statement
    /// starting at `at`, for the Binds that execute it later; false when it is not kept.
    pub(super) fn remember_bound(&mut self, body: &[u8], at: usize) -> bool {
        let cap = self.live.config.guard.max_tracked_statements;
        frontend::Parse::decode(body).is_some_and(|p| {
            self.prepared
                .note_bound(p.name, p.sql, p.param_types, at, cap)
        })
    }

    /// A kept UPDATE/DELETE/MERGE with parameters: its SQL, parameter types, statement start.
    pub(in crate::session) fn bound_of(&self, name: &[u8]) -> Option<(Vec<u8>, Vec<u8>, usize)> {
        self.prepared
            .bound(name)
            .map(|b| (b.sql.clone(), b.param_types.clone(), b.at))
    }

    /// Whether `name` is a kept UPDATE/DELETE/MERGE with parameters, while the guard is on.
    pub(super) fn examines_bind(&self, name: &[u8]) -> bool {
        self.profile.backfill.enabled && self.prepared.tracks_bound(name)
    }

    /// The decision on a kept statement (`sql`) bound with values whose estimates were read:
    /// the warnings to send, and the raising text when it is blocked.
    pub(in crate::session) fn decide_bound(
        &mut self,
        shared: &Shared,
        counters: &crate::analysis::Counters,
        sql: &[u8],
        estimates: Vec<(usize, crate::catalog::estimate::Answer)>,
    ) -> (Vec<bytes::BytesMut>, Option<Vec<u8>>) {
        self.refresh_live(shared);
        let ctx = Context {
            tx: self.proto.tx(),
            lex: self.server.lex,
            server_version: self.server.version_num,
            pipelined: false,
            tool: self.tool,
        };
        self.analyzer.provide_estimates(sql, estimates);
        let (_, mut plan) =
            self.analyzer
                .analyze(counters, &self.profile, Source::Parse, sql, &ctx);
        self.units.audit_pending.append(&mut plan.audit);
        (plan.notices, plan.sql)
    }

    /// Whether a Query/Parse must wait for the server to finish earlier requests before it is
    /// decided: only when it holds DDL, or an UPDATE/DELETE the backfill guard estimates
    /// (ordinary pipelined traffic never waits).
    pub(super) fn must_wait_for_idle(&mut self, tag: u8, body: &[u8]) -> bool {
        let sql = frontend::statement_sql(tag, body);
        sql.is_some_and(|sql| self.analyzer.needs_lane(sql, self.server.lex))
    }
}
