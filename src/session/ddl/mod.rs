//! The DDL lane: what happens to a DDL Query (or a lone extended-protocol unit, run the same
//! way, or the first message of another unit) once the relay has stopped at it, with the
//! server idle. ddlgate drives the client's own upstream connection itself here, with queries
//! of its own whose replies the client never sees (`channel`): each an extended-protocol unit
//! under ddlgate's own named statement and portal (`bound::own_unit`), so the client's unnamed
//! prepared statement and portal are left as they are (a simple Query while the client has
//! sent no Parse or Bind: it holds none). In fixed phases:
//!
//! 0. facts (`facts`): before the decision, the catalog facts it needs are read and handed to
//!    the analyzer (and the backfill guard's estimates, with the client's parameter values when
//!    the statement has parameters: `bound`, in extended-protocol units of ddlgate's own under
//!    named statements); the relay then decides the message and, when the plan says so, hands it
//!    here as a [`PendingGuard`], or, a unit the backfill guard blocked, as a [`Refusal`];
//! 1. serialization (`guard`): take the tables' advisory locks, in key order, waiting (with
//!    NOTICEs) for another session's DDL on the same table to finish; optionally wait for old
//!    transactions on the table to end. For a statement on one table (the common case) one
//!    query (`crate::guard::prelude_sql`) tries its turn and sets the guard's settings of phase
//!    2 in the same round trip;
//! 2. the statement: either the guard (`guard`) — `lock_timeout` / `statement_timeout` set,
//!    then attempts (`SAVEPOINT` inside a transaction), the client's Query, its replies held
//!    back; on SQLSTATE 55P03 the attempt is undone (`ROLLBACK TO SAVEPOINT`, or `ROLLBACK` of
//!    a failed `BEGIN … COMMIT` block), the blockers are read and told to the client in a
//!    NOTICE, and after a jittered backoff the Query is sent again, within the attempt and time
//!    budget — or a recipe's safe steps instead of the statement (`recipe`). Then the undo
//!    journal (`journal`): the inverses of what succeeded, written on this
//!    connection (under a savepoint inside a transaction) before the client has its replies;
//! 3. epilogue (here): settings restored, savepoint released, advisory locks released — at once,
//!    or, when the client's transaction is left failed, at the first moment it can run again;
//! 4. the client gets the held-back replies of the last attempt and its ReadyForQuery, written
//!    while the server runs the epilogue's query (sent first, its reply read before the client's
//!    next message; `epilogue_behind_replies`) — or, when
//!    the budget is spent, an error raised by the server itself (so the transaction state is the
//!    server's), naming the blockers. The first message of a longer unit the turn is not had for
//!    gets that error in place of its (or its Execute's) answer, and the rest of the unit is
//!    skipped up to its Sync, which gets the ReadyForQuery ([`Sent::Opening`]).
//!
//! Every SQL text run here comes from the module that owns the concept (`crate::guard`,
//! `crate::recipe`, the analyzer's catalog requests, `sql::quote`); every wait ends when ddlgate
//! terminates (`channel`).

mod bound;
mod channel;
mod facts;
mod guard;
mod journal;
mod recipe;

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use self::channel::query_frame;
use super::relay::Relay;
use super::relay::lone::LoneUnit;
use crate::error::SessionError;
use crate::guard::GuardPlan;
use crate::protocol::TxStatus;

/// A decided Query waiting for the guard.
pub(in crate::session) struct PendingGuard {
    /// The Query frame to send (the client's, or its rewritten form).
    pub frame: Bytes,
    pub plan: GuardPlan,
    /// `Q` (a simple Query, run and retried here) or the first message of an
    /// extended-protocol unit (`P`arse or `B`ind): the guard's settings and turn are put in
    /// place, then the relay forwards the unit and the epilogue runs when it is done.
    pub tag: u8,
    /// Run these safe steps instead of the statement (a simple Query, or a lone unit).
    pub recipe: Option<crate::recipe::Recipe>,
    /// `frame` is a whole lone extended-protocol unit (`relay/lone.rs`), run and retried here
    /// like a simple Query, its replies the server's to that unit.
    pub unit: Option<LoneUnit>,
}

/// The DDL lane's part of the session state.
pub(in crate::session) struct Lane {
    /// Where the message at the front of the client buffer is in the lane.
    pub step: Step,
    /// Settings and advisory locks to put back once the server can run statements again
    /// (after a guarded Query left the transaction failed, or handed over a COPY).
    pub epilogue: Option<Epilogue>,
    /// The guarded statement being run: when it arrived, and time lost to lock timeouts.
    pub timing: (std::time::Instant, Duration),
    /// The undo snapshots (`crate::undo::capture`) read with the facts of the message about
    /// to be decided, each with the statement it is of; handed to its audit drafts.
    pub before: Vec<(crate::sql::statement::Ddl, crate::undo::Before)>,
    /// The undo journal table is known to exist (checked once per session, again after a
    /// failed write).
    pub journal_ready: bool,
    /// The backfill guard read the front Parse's estimate with the parameter values of its
    /// unit (`bound`): blocked, that whole unit (these many bytes) is answered by ddlgate.
    pub bound_unit: Option<usize>,
    /// The front Parse prepares one UPDATE/DELETE/MERGE with parameters, starting at this
    /// offset of its text: kept for the Binds that execute it later (`bound`).
    pub bound_later: Option<usize>,
    /// The lane answered the first message of a unit the client is still sending with an
    /// error ([`Sent::Opening`]): the client's messages up to its Sync are dropped as they
    /// arrive (never forwarded, never analysed), as a server skips them after an error, and
    /// that Sync gets the one ReadyForQuery, with the server's transaction status. The value:
    /// bytes still to drop of a message that arrived in part.
    pub skip_to_sync: Option<usize>,
}

impl Default for Lane {
    fn default() -> Lane {
        Lane {
            step: Step::Relay,
            epilogue: None,
            timing: (std::time::Instant::now(), Duration::ZERO),
            before: Vec::new(),
            journal_ready: false,
            bound_unit: None,
            bound_later: None,
            skip_to_sync: None,
        }
    }
}

/// The lane's steps for the message at the front of the client buffer.
#[derive(Default)]
pub(in crate::session) enum Step {
    /// Nothing for the lane: the relay reads and decides what comes.
    #[default]
    Relay,
    /// The Query/Parse at the front holds DDL: read the catalog facts its decision needs
    /// first (`facts`).
    NeedsFacts,
    /// Facts for the message at the front were read (or cannot be): decide it.
    FactsRead,
    /// A decided message waiting to run under the guard, or as a recipe.
    Guard(PendingGuard),
    /// The Bind at the front executes a kept UPDATE/DELETE/MERGE with parameters: read its
    /// estimate with the values it binds (`bound`).
    BoundBind(super::relay::bound::BoundUnit),
    /// That estimate was read and the unit allowed: forward it.
    BoundRead,
    /// A unit blocked by the backfill guard, taken from the client buffer: answer it with the
    /// error the server raises (`bound`).
    Refuse(Refusal),
}

/// A unit the backfill guard blocked, answered as the server answers a unit that fails at
/// its first message.
pub(in crate::session) struct Refusal {
    /// The raising statement (the analyzer's replacement text).
    pub sql: Vec<u8>,
    /// The unit began with a Parse of the unnamed statement: a real server drops the old one
    /// even when that Parse fails, so the error is raised from the unnamed statement too.
    pub unnamed: bool,
}

/// How the client sent the statement the lane runs: what ddlgate runs in its place (a
/// recipe's steps, the error it raises) leaves the client's unnamed prepared statement as that
/// message would have on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::session) enum Sent {
    /// A simple Query, which drops the unnamed statement and portal itself: ddlgate's
    /// replacement runs as a simple Query too.
    Query,
    /// A lone extended-protocol unit, taken whole up to its Sync: ddlgate's replacement runs
    /// under its own named statement and portal, so the unnamed statement is the client's
    /// Parse's, or untouched; an error ddlgate raises comes with the unit's ReadyForQuery.
    Extended,
    /// The first message (a Parse or a Bind) of a unit that is not a lone unit, the rest of
    /// which the client still sends: an error ddlgate raises in its place answers that message
    /// as a server's error would, in a unit of ddlgate's own whose ReadyForQuery is held back;
    /// the client's messages up to its Sync are then skipped as a server skips them after an
    /// error ([`Lane::skip_to_sync`]), and its Sync gets that ReadyForQuery — one per Sync.
    Opening {
        /// The message is a Parse of the unnamed statement: a server drops the old one even
        /// when that Parse fails, so the error is raised from the unnamed statement.
        unnamed_parse: bool,
    },
}

impl Sent {
    /// How the client sent `frame` (tag `tag`), `lone` when it is a whole lone unit.
    fn of(tag: u8, frame: &[u8], lone: bool) -> Sent {
        use crate::protocol::{framing, frontend};
        match (tag, lone) {
            (frontend::QUERY, _) => Sent::Query,
            (_, true) => Sent::Extended,
            (_, false) => Sent::Opening {
                unnamed_parse: tag == frontend::PARSE
                    && frontend::Parse::decode(framing::body(frame))
                        .is_some_and(|p| p.name.is_empty()),
            },
        }
    }
}

/// What must be put back after a guarded Query.
#[derive(Debug, Default)]
pub(in crate::session) struct Epilogue {
    /// `lock_timeout` and `statement_timeout` as they were.
    settings: Option<(String, String)>,
    /// Session-level advisory locks to release.
    unlock: Vec<i64>,
}

impl Epilogue {
    fn is_empty(&self) -> bool {
        self.settings.is_none() && self.unlock.is_empty()
    }

    /// Only DDL turns are left to release (settings were restored).
    pub(in crate::session) fn settings_restored(&self) -> bool {
        self.settings.is_none()
    }

    /// Whether it can run with the server in `tx`: nothing runs in a failed transaction, and a
    /// table's DDL turn lasts until the transaction holding the DDL's locks ends (a Query may
    /// open one with `BEGIN` and leave it open).
    pub(in crate::session) fn can_run(&self, tx: TxStatus) -> bool {
        match tx {
            TxStatus::Idle => true,
            TxStatus::InTransaction => self.unlock.is_empty(),
            TxStatus::Failed => false,
        }
    }
}

impl Relay {
    /// Runs a decided Query under the guard. Returns when the client has its replies (or the
    /// relay must take over a COPY).
    pub(in crate::session) async fn run_guarded(
        &mut self,
        pending: PendingGuard,
    ) -> Result<(), SessionError> {
        let cfg = self.st.live.config.guard.clone();
        let shared = self.shared.clone();
        let counters = &shared.counters;
        counters.guard.runs.increment(1);
        let plan = pending.plan;
        self.st.lane.timing = (std::time::Instant::now(), Duration::ZERO);
        // Shown by `/status` while it runs; gone when this function returns, whichever way.
        let _activity = Activity::enter(&shared, self.st.cancel_key.as_ref().map(|k| k.pid), &plan);
        let mut sent = Sent::of(pending.tag, &pending.frame, pending.unit.is_some());
        let start_tx = self.st.proto.tx();
        let in_tx = start_tx == TxStatus::InTransaction;
        // DDL turns still held from an earlier Query of this transaction are released with
        // this one's.
        let mut epilogue = Epilogue {
            settings: None,
            unlock: self
                .st
                .lane
                .epilogue
                .take()
                .map(|e| e.unlock)
                .unwrap_or_default(),
        };
        let began = Instant::now();

        // The guard's settings, decided now: for a statement on at most one table they are
        // set in the same round trip as its DDL turn is tried (`guard::prelude_sql`), else
        // after the turns (`run_statement`).
        let (lock_ms, statement_ms) = crate::guard::timeouts(&plan, &cfg);
        let fused = pending.recipe.is_none()
            && plan.tables.len() <= 1
            && (lock_ms.is_some() || statement_ms.is_some());

        // 1. One DDL per table at a time.
        let mut turns: Vec<(i64, String)> = Vec::new();
        if fused {
            let table = plan.tables.first().filter(|_| cfg.serialize);
            let reply = self
                .inject(&[crate::guard::prelude_sql(
                    table,
                    in_tx,
                    lock_ms,
                    statement_ms,
                )])
                .await?;
            if let Some(p) = reply
                .rows
                .first()
                .and_then(|r| crate::guard::Prelude::from_row(r))
            {
                epilogue.settings = Some(p.settings);
                match p.turn {
                    Some((key, _, true)) if !in_tx => epilogue.unlock.push(key),
                    Some((key, table, false)) => turns.push((key, table)),
                    _ => {}
                }
            }
        } else if cfg.serialize
            && let Some(q) = crate::guard::keys_query(&plan.tables)
        {
            turns = self
                .inject(&[&q])
                .await?
                .rows
                .iter()
                .filter_map(|r| {
                    let k = r.first()?.as_deref()?.parse().ok()?;
                    Some((k, r.get(1).cloned().flatten().unwrap_or_default()))
                })
                .collect();
        }
        for (key, table) in turns {
            if !self
                .take_turn(key, &table, in_tx, &cfg, &mut epilogue)
                .await?
            {
                let message = format!(
                    "ddlgate: another DDL statement on {table} has been running for longer than guard.queue_timeout_ms ({} ms)",
                    cfg.queue_timeout_ms.as_millis()
                );
                let blockers = self.blockers(&plan).await?;
                counters.guard.queue_timeouts.increment(1);
                // A lone unit, or a longer unit that begins as one (`lone::opening`): the
                // error in place of the Execute's, after what the server says first. Any other
                // unit: the error in place of its first message's answer.
                let front = pending.unit.clone().or_else(|| {
                    let limit = self.st.live.config.limits.max_message_bytes;
                    crate::session::relay::lone::opening(&pending.frame, &self.io.cbuf, limit)
                });
                if let Some(u) = &front {
                    match self
                        .answer_up_to_execute(u, &pending.frame, epilogue, sent)
                        .await?
                    {
                        Some(e) => epilogue = e,
                        None => return Ok(()),
                    }
                    if let Sent::Opening { unnamed_parse } = &mut sent {
                        // Its Parse went through, as on the server: the error is the
                        // Execute's, and the statement stays prepared.
                        *unnamed_parse = false;
                    }
                }
                return self
                    .give_up(epilogue, sent, false, message, &blockers, "ddlgate runs one DDL statement per table at a time. Wait for the other one to finish, or raise guard.queue_timeout_ms.")
                    .await;
            }
        }

        // Optional: let old transactions on the table finish before asking for ACCESS EXCLUSIVE.
        if plan.access_exclusive
            && !cfg.precheck_transaction_age_ms.is_zero()
            && let Some(q) = crate::guard::old_transaction_query(
                &plan.tables,
                cfg.precheck_transaction_age_ms.as_millis(),
            )
        {
            let mut told = false;
            while began.elapsed() < cfg.precheck_max_wait_ms {
                if !self.inject(&[&q]).await?.is_true() {
                    break;
                }
                if !told {
                    let blockers = self.blockers(&plan).await?;
                    self.tell(
                        &format!(
                            "ddlgate: waiting up to {} s for transactions older than {} s to release the table before taking ACCESS EXCLUSIVE: {}",
                            cfg.precheck_max_wait_ms.as_secs(),
                            cfg.precheck_transaction_age_ms.as_secs(),
                            crate::guard::describe_blockers(&blockers)
                        ),
                        None,
                    )
                    .await?;
                    told = true;
                }
                self.pause(Duration::from_millis(250)).await?;
            }
        }

        if let Some(recipe) = pending.recipe {
            let unit = pending.unit.map(|u| (u, pending.frame));
            return self
                .run_recipe(recipe, unit, epilogue, &cfg, &plan, began)
                .await;
        }
        self.run_statement(
            pending.frame,
            pending.tag,
            pending.unit,
            plan,
            epilogue,
            &cfg,
            began,
        )
        .await
    }

    /// Writes the audit records of the guarded Query with its outcome.
    fn audit_guarded(&mut self, outcome: &'static str, error: Option<String>) {
        let drafts = std::mem::take(&mut self.st.units.audit_pending);
        let (began, lock_wait) = self.st.lane.timing;
        for d in drafts {
            self.shared.audit.write(&d.finish(
                &self.st.who,
                outcome,
                error.clone(),
                began.elapsed(),
                lock_wait,
            ));
        }
    }

    /// Runs the epilogue now if the transaction can run statements, else when it can.
    async fn epilogue_or_later(
        &mut self,
        mut epilogue: Epilogue,
        status: TxStatus,
    ) -> Result<(), SessionError> {
        if epilogue.is_empty() {
            return Ok(());
        }
        if epilogue.can_run(status) {
            return self.run_epilogue(epilogue).await;
        }
        if status != TxStatus::Failed
            && let Some((lock, statement)) = epilogue.settings.take()
        {
            // Settings now; the DDL turn when the transaction ends.
            self.inject(&[crate::guard::restore_sql(Some((&lock, &statement)), &[])])
                .await?;
        }
        self.st.lane.epilogue = Some(epilogue);
        Ok(())
    }

    /// Puts settings back and releases session-level advisory locks.
    pub(in crate::session) async fn run_epilogue(
        &mut self,
        epilogue: Epilogue,
    ) -> Result<(), SessionError> {
        self.restore(epilogue, false).await
    }

    /// [`Relay::epilogue_or_later`] after a guarded statement whose replies are queued for the
    /// client: when the epilogue can run now, its query is sent first and the replies are
    /// written while the server runs it — the client does not wait a round trip for ddlgate's
    /// clean-up, and its next message is read only after the epilogue's reply.
    async fn epilogue_behind_replies(
        &mut self,
        epilogue: Epilogue,
        status: TxStatus,
    ) -> Result<(), SessionError> {
        if epilogue.can_run(status) {
            return self.restore(epilogue, true).await;
        }
        self.epilogue_or_later(epilogue, status).await
    }

    async fn restore(
        &mut self,
        epilogue: Epilogue,
        flush_client: bool,
    ) -> Result<(), SessionError> {
        if epilogue.is_empty() {
            return Ok(());
        }
        let settings = epilogue
            .settings
            .as_ref()
            .map(|(l, s)| (l.as_str(), s.as_str()));
        self.inject_flushing(
            &[crate::guard::restore_sql(settings, &epilogue.unlock)],
            flush_client,
        )
        .await?;
        Ok(())
    }

    /// Puts things back and ends the Query with an error raised by the server itself.
    async fn fail_with(
        &mut self,
        epilogue: Epilogue,
        sent: Sent,
        code: &str,
        message: String,
        detail: String,
        hint: &str,
    ) -> Result<(), SessionError> {
        let status = self.st.proto.tx();
        self.epilogue_or_later(epilogue, status).await?;
        let sql = crate::sql::quote::raise_block(code, &message, &detail, hint);
        self.audit_guarded("error", Some(format!("{code}: {message}")));
        self.raise_on_server(sql.as_bytes(), false, sent).await
    }

    /// Runs a statement that raises the error the client must see (with `reopen_block`, in a
    /// transaction block it opens first, which the error leaves failed), and relays the
    /// server's answer, so the error and the transaction state it leaves are the server's own.
    /// For a statement sent through the extended protocol it runs in a unit of ddlgate's own
    /// (`bound::raise_in_unit`): the client's unnamed statement stays as its unit left it (or,
    /// for a Parse of it, is dropped as that failing Parse drops it). For the first message of
    /// a unit the client is still sending ([`Sent::Opening`]) the ReadyForQuery is held back
    /// for the client's Sync, and what the client sends up to it is skipped.
    async fn raise_on_server(
        &mut self,
        sql: &[u8],
        reopen_block: bool,
        sent: Sent,
    ) -> Result<(), SessionError> {
        self.st.raised_block = true;
        if sent != Sent::Query {
            let name = self.st.own_statement_name();
            // ddlgate's own statement, or the unnamed one a failing Parse of it drops.
            let statement: &[u8] = match sent {
                Sent::Opening {
                    unnamed_parse: true,
                } => b"",
                _ => name.as_bytes(),
            };
            let before: &[&[u8]] = if reopen_block {
                &[crate::guard::BEGIN.as_bytes()]
            } else {
                &[]
            };
            let unit = bound::raising_unit_from(name.as_bytes(), statement, before, sql)?;
            let reply = self.raise_in_unit(unit).await?;
            if matches!(sent, Sent::Opening { .. }) {
                // The error answers the unit's first message; its Sync is still to come.
                self.st.lane.skip_to_sync = Some(0);
            } else {
                self.io
                    .to_client
                    .push(crate::protocol::responses::ready_for_query(reply.status).freeze());
            }
            return Ok(());
        }
        let sql = if reopen_block {
            crate::guard::in_reopened_block(sql)
        } else {
            sql.to_vec()
        };
        let a = self.attempt(&query_frame(&sql)?, usize::MAX).await?;
        for f in a.held {
            self.io.to_client.push(f);
        }
        if let Some(rfq) = a.rfq {
            self.io.to_client.push(rfq);
        }
        self.set_tx(a.status);
        Ok(())
    }

    /// Sends the client a NOTICE now (it may be waiting for a while).
    async fn tell(&mut self, message: &str, hint: Option<&str>) -> Result<(), SessionError> {
        self.io
            .to_client
            .push(crate::act::notice("NOTICE", message, None, hint).freeze());
        self.io.drain_client().await
    }

    fn set_tx(&mut self, status: TxStatus) {
        let shared = self.shared.clone();
        self.st.set_tx_status(&shared, status);
    }
}

/// A session's guarded DDL as `/status` shows it, removed when dropped.
pub(super) struct Activity {
    shared: std::sync::Arc<crate::state::Shared>,
    pid: Option<u32>,
}

impl Activity {
    pub(super) fn enter(
        shared: &std::sync::Arc<crate::state::Shared>,
        pid: Option<u32>,
        plan: &GuardPlan,
    ) -> Activity {
        if let Some(pid) = pid {
            shared.ddl_activity.insert(
                pid,
                crate::state::DdlActivity {
                    state: "running",
                    tables: plan.tables.iter().map(ToString::to_string).collect(),
                    since: std::time::Instant::now(),
                    attempts: 1,
                    blockers: Vec::new(),
                },
            );
        }
        Activity {
            shared: shared.clone(),
            pid,
        }
    }

    pub(super) fn update(
        shared: &crate::state::Shared,
        pid: Option<u32>,
        f: impl FnOnce(&mut crate::state::DdlActivity),
    ) {
        if let Some(mut a) = pid.and_then(|p| shared.ddl_activity.get_mut(&p)) {
            f(&mut a);
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            self.shared.ddl_activity.remove(&pid);
        }
    }
}
