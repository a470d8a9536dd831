//! Running a statement under the lock guard (phase 2 of the DDL lane): one DDL per table at a
//! time (advisory-lock turns, the per-table queue), the guard's settings, the attempts and their
//! retries after SQLSTATE 55P03, and giving up with an error the server raises. The retry policy
//! itself is `crate::guard::after_lock_timeout`; the SQL texts are `crate::guard`'s.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{Activity, Epilogue, Sent};
use crate::act::BlockError;
use crate::config::GuardConfig;
use crate::error::SessionError;
use crate::guard::{self, Blocker, GuardPlan, Retry};
use crate::protocol::{TxStatus, backend, frontend};
use crate::session::relay::Relay;
use crate::session::relay::lone::LoneUnit;

impl Relay {
    /// Phase 2 for a statement run as written (or rewritten): the guard's settings, then the
    /// client's Query in attempts, retried after a lock timeout while the budget lasts; the
    /// epilogue and the client's replies. An extended-protocol unit gets the settings only: the
    /// relay forwards it, and the epilogue runs at its ReadyForQuery.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_statement(
        &mut self,
        frame: Bytes,
        tag: u8,
        unit: Option<LoneUnit>,
        plan: GuardPlan,
        mut epilogue: Epilogue,
        cfg: &GuardConfig,
        began: Instant,
    ) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        // 2a. The guard's settings, unless phase 1's prelude set them (then the epilogue holds
        // the session's own values already).
        let (lock_ms, statement_ms) = guard::timeouts(&plan, cfg);
        if epilogue.settings.is_none() && (lock_ms.is_some() || statement_ms.is_some()) {
            let reply = self
                .inject(&[guard::settings_sql(lock_ms, statement_ms)])
                .await?;
            if let Some(old) = reply.pair() {
                epilogue.settings = Some(old);
            }
        }

        if tag != frontend::QUERY && unit.is_none() {
            // Extended protocol, beyond a lone unit: the unit is the client's to drive; its
            // Sync's ReadyForQuery tells the relay when to put things back. No retry: a lock
            // timeout reaches the client as the server's own 55P03 — after at most
            // lock_timeout, not in the queue.
            self.st.on_client_tag(&shared.counters, tag);
            self.io.to_up.push(frame);
            self.st.lane.epilogue = Some(epilogue).filter(|e| !e.is_empty());
            return Ok(());
        }

        // 2b. Attempts.
        let mut upstream_time = std::time::Duration::ZERO;
        // A lone unit outside a transaction block is atomic like a Query: the server's
        // implicit transaction ends at its Sync, failed or not, and it is simply sent again.
        let retry = match (plan.short_lock_timeout, &unit) {
            (false, _) => Retry::No,
            (true, Some(_)) => Retry::Whole,
            (true, None) => plan.retry,
        };
        // A unit's named statement outlives its failed attempt: a retry closes it first, and
        // the client does not see that CloseComplete.
        let named = unit
            .as_ref()
            .filter(|u| u.parse_len > 0 && !u.statement.is_empty())
            .map(|u| u.statement.clone());
        let mut attempt_no = 0u32;
        loop {
            attempt_no += 1;
            if retry == Retry::Savepoint {
                self.inject(&[guard::SAVEPOINT]).await?;
            }
            let attempt_began = Instant::now();
            let mut a = match (&named, attempt_no) {
                (Some(name), 2..) => {
                    let mut again = BytesMut::from(&frontend::close_statement(name)[..]);
                    again.extend_from_slice(&frame);
                    let mut a = self
                        .attempt(&again.freeze(), cfg.max_buffered_bytes)
                        .await?;
                    if a.held
                        .first()
                        .is_some_and(|f| f.first() == Some(&backend::CLOSE_COMPLETE))
                    {
                        a.held.remove(0);
                    }
                    a
                }
                _ => self.attempt(&frame, cfg.max_buffered_bytes).await?,
            };
            // An error before the unit's statement was prepared is the Parse's own: no retry.
            let parsed = unit.as_ref().is_none_or(|u| {
                u.parse_len == 0
                    || a.held
                        .iter()
                        .any(|f| f.first() == Some(&backend::PARSE_COMPLETE))
            });
            a.lock_timeout &= parsed;
            let attempt = attempt_began.elapsed();
            upstream_time += attempt;
            let attempt_time = attempt.as_secs_f64();
            if a.lock_timeout {
                shared.metrics.lock_wait_seconds.record(attempt_time);
                self.st.lane.timing.1 += attempt_began.elapsed();
            }
            if a.copy_in {
                self.audit_guarded("ok", None);
                // The relay streams the COPY; the epilogue waits for the server to be idle.
                self.st.proto.copy_handed_over();
                self.st.lane.epilogue = Some(epilogue).filter(|e| !e.is_empty());
                return Ok(());
            }
            if a.lock_timeout && retry != Retry::No && !a.spilled {
                // Undo the attempt: nothing of it may remain.
                match retry {
                    Retry::Savepoint => {
                        self.inject(&[guard::ROLLBACK_TO_SAVEPOINT]).await?;
                    }
                    Retry::Whole if a.status != TxStatus::Idle => {
                        self.inject(&[guard::ROLLBACK]).await?;
                    }
                    _ => {}
                }
                let blockers = self.blockers(&plan).await?;
                let next =
                    guard::after_lock_timeout(cfg, attempt_no, began.elapsed(), fastrand::f64());
                let guard::AfterLockTimeout::RetryAfter(wait) = next else {
                    counters.guard.exhausted.increment(1);
                    let message = format!(
                        "ddlgate: could not get the lock within lock_timeout {} ms in {attempt_no} attempt(s) over {:.1} s",
                        cfg.lock_timeout_ms.as_millis(),
                        began.elapsed().as_secs_f64()
                    );
                    // A `BEGIN …` Query leaves its block failed, as the server would have.
                    let reopen = retry == Retry::Whole && a.status != TxStatus::Idle;
                    if unit.is_some() {
                        // A server sends a lone unit its Parse's, Bind's and Describe's replies
                        // before the Execute's error: the last attempt's, the server's own (its
                        // statement stays prepared, its portal is gone with the Sync).
                        for f in a
                            .held
                            .iter()
                            .take_while(|f| f.first() != Some(&backend::ERROR_RESPONSE))
                        {
                            self.io.to_client.push(f.clone());
                        }
                    }
                    return self
                        .give_up(epilogue, Sent::of(tag, &frame, unit.is_some()), reopen, message, &blockers, "End or wait out the blocking transactions (pg_terminate_backend(pid) for a stuck one), then run the statement again; guard.max_attempts and guard.max_wait_ms set how long ddlgate keeps trying.")
                        .await;
                };
                counters.guard.retries.increment(1);
                Activity::update(&shared, self.st.cancel_key.as_ref().map(|k| k.pid), |a| {
                    a.state = "waiting_for_lock";
                    a.attempts = attempt_no;
                    a.blockers = blockers.iter().map(ToString::to_string).collect();
                });
                self.tell(
                    &format!(
                        "ddlgate: lock not available within {} ms (attempt {attempt_no} of {}); retrying in {} ms. Blocked by: {}",
                        cfg.lock_timeout_ms.as_millis(),
                        cfg.max_attempts,
                        wait.as_millis(),
                        guard::describe_blockers(&blockers)
                    ),
                    Some("ddlgate retries DDL that cannot get its lock quickly instead of letting it wait in the lock queue, where it would block every query on the table."),
                )
                .await?;
                self.pause(wait).await?;
                continue;
            }
            // 3. Done: success, another error, or a lock timeout that cannot be retried.
            if retry == Retry::Savepoint && a.status == TxStatus::InTransaction {
                self.inject(&[guard::RELEASE_SAVEPOINT]).await?;
            }
            if a.error.is_none() {
                shared.metrics.ddl_execution_seconds.record(attempt_time);
                if plan.short_lock_timeout {
                    if a.status == TxStatus::Idle {
                        shared
                            .metrics
                            .dangerous_lock_held_seconds
                            .record(attempt_time);
                    } else {
                        self.st
                            .dangerous_since
                            .get_or_insert(attempt_began.into_std());
                    }
                }
            }
            if a.error.is_none() {
                // The inverse, recorded before the client hears the statement succeeded —
                // unless the Query rolled a transaction back after its DDL (`BEGIN; …;
                // ROLLBACK` in one Query): what it undid is not told apart, so nothing of it
                // is journaled (the audit log has it).
                if rolled_back(&a.held) {
                    tracing::warn!(
                        "the Query rolled back a transaction: its DDL is not journaled (audit log only)"
                    );
                } else {
                    self.write_journal(a.status).await?;
                }
            }
            shared.metrics.unit_done(
                crate::metrics::UnitKind::Ddl,
                a.error.is_some(),
                began.elapsed(),
                upstream_time,
            );
            self.audit_guarded(
                if a.error.is_some() { "error" } else { "ok" },
                a.error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.code, e.message)),
            );
            // 4. The client's replies, queued before the epilogue: they are written while the
            // server runs it.
            for f in a.held {
                self.io.to_client.push(f);
            }
            if let Some(rfq) = a.rfq {
                self.io.to_client.push(rfq);
            }
            self.epilogue_behind_replies(epilogue, a.status).await?;
            self.set_tx(a.status);
            return Ok(());
        }
    }

    /// The replies a server gives lone unit `u` (`frame`: its frames) before its Execute's,
    /// when ddlgate does not send the unit as it is (its recipe's steps run instead, or the
    /// guard gives up before an attempt): its Parse's own answer — the statement is prepared
    /// upstream as written, so a Parse error arrives where the server's would and the prepared
    /// statement exists afterwards as it would — then BindComplete and what its Describe says of
    /// a utility statement. `None` when the Parse failed: the server discards the rest of the
    /// unit up to Sync, and the client has that error and the ReadyForQuery (the epilogue run,
    /// or kept for later). `sent` says whether the unit was taken whole ([`Sent::Extended`]) or
    /// is the front of a longer one ([`Sent::Opening`], `relay/lone.rs`'s `opening`): then the
    /// ReadyForQuery after a Parse error waits for the client's Sync, the rest skipped.
    pub(super) async fn answer_up_to_execute(
        &mut self,
        u: &LoneUnit,
        frame: &Bytes,
        epilogue: Epilogue,
        sent: Sent,
    ) -> Result<Option<Epilogue>, SessionError> {
        if u.parse_len > 0 {
            let a = self.prepare_upstream(&frame.slice(..u.parse_len)).await?;
            for f in a.held {
                self.io.to_client.push(f);
            }
            if a.error.is_some() {
                if matches!(sent, Sent::Opening { .. }) {
                    self.st.lane.skip_to_sync = Some(0);
                } else if let Some(rfq) = a.rfq {
                    self.io.to_client.push(rfq);
                }
                self.epilogue_behind_replies(epilogue, a.status).await?;
                self.set_tx(a.status);
                self.audit_guarded(
                    "error",
                    a.error.map(|e| format!("{}: {}", e.code, e.message)),
                );
                return Ok(None);
            }
        }
        self.io
            .to_client
            .push(crate::protocol::responses::bound_utility(u.describe).freeze());
        Ok(Some(epilogue))
    }

    /// Sends `parse` (a Parse frame) and a Sync, and returns the server's answer.
    pub(super) async fn prepare_upstream(
        &mut self,
        parse: &Bytes,
    ) -> Result<super::channel::Attempt, SessionError> {
        let mut unit = BytesMut::from(&parse[..]);
        unit.extend_from_slice(&frontend::sync());
        let a = self.attempt(&unit.freeze(), usize::MAX).await?;
        if let Some(e) = &a.error {
            tracing::warn!(code = %e.code, message = %e.message, "preparing the client's statement again failed");
        }
        Ok(a)
    }

    /// Waits for this table's turn; false when the queue timeout passed.
    pub(super) async fn take_turn(
        &mut self,
        key: i64,
        table: &str,
        in_tx: bool,
        cfg: &crate::config::GuardConfig,
        epilogue: &mut Epilogue,
    ) -> Result<bool, SessionError> {
        let since = Instant::now();
        let mut waiting: Option<QueueSlot> = None;
        let mut round = 0u32;
        loop {
            let got = self.inject(&[guard::try_lock_sql(key, in_tx)]).await?;
            if got.is_true() {
                if !in_tx {
                    epilogue.unlock.push(key);
                }
                return Ok(true);
            }
            if since.elapsed() >= cfg.queue_timeout_ms {
                return Ok(false);
            }
            if waiting.is_none() {
                Activity::update(
                    &self.shared,
                    self.st.cancel_key.as_ref().map(|k| k.pid),
                    |a| {
                        a.state = "queued";
                    },
                );
                // Counted in the queue until this function returns, whichever way.
                waiting = Some(QueueSlot::enter(self.shared.clone()));
                self.shared.counters.guard.queue_waits.increment(1);
                self.tell(
                    &format!("ddlgate: waiting for another DDL statement on {table} to finish (one DDL per table at a time)"),
                    None,
                )
                .await?;
            }
            round += 1;
            let wait = guard::backoff(cfg, round, fastrand::f64()).min(Duration::from_secs(1));
            self.pause(wait).await?;
        }
    }

    /// Ends a guarded Query with an error raised by the server itself.
    pub(super) async fn give_up(
        &mut self,
        epilogue: Epilogue,
        sent: Sent,
        reopen_block: bool,
        message: String,
        blockers: &[Blocker],
        hint: &str,
    ) -> Result<(), SessionError> {
        let status = self.st.proto.tx();
        self.epilogue_or_later(epilogue, status).await?;
        let err =
            BlockError::lock_not_available(message, &guard::describe_blockers(blockers), hint);
        self.audit_guarded("error", Some(format!("55P03: {}", err.message)));
        self.raise_on_server(&err.to_sql(), reopen_block, sent)
            .await
    }

    pub(super) async fn blockers(
        &mut self,
        plan: &GuardPlan,
    ) -> Result<Vec<Blocker>, SessionError> {
        let reply = self.inject(&[guard::blockers_query(&plan.tables)]).await?;
        Ok(reply
            .rows
            .iter()
            .filter_map(|r| Blocker::from_row(r))
            .collect())
    }
}

/// A DDL statement waiting for its table's turn, for the queue metrics: leaves the queue when
/// dropped (turn taken, timeout, or the session ending).
struct QueueSlot {
    shared: std::sync::Arc<crate::state::Shared>,
    since: Instant,
}

impl QueueSlot {
    fn enter(shared: std::sync::Arc<crate::state::Shared>) -> QueueSlot {
        shared.metrics.queue_depth.increment(1.0);
        QueueSlot {
            shared,
            since: Instant::now(),
        }
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.shared.metrics.queue_depth.decrement(1.0);
        self.shared
            .metrics
            .queue_wait_seconds
            .record(self.since.elapsed().as_secs_f64());
    }
}

/// Whether the server's replies to a Query include a `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`,
/// whose command tag is the same).
fn rolled_back(held: &[Bytes]) -> bool {
    held.iter().any(|f| {
        f.first() == Some(&backend::COMMAND_COMPLETE)
            && crate::protocol::framing::body(f).starts_with(b"ROLLBACK")
    })
}
