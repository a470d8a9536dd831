//! Running one DDL Query under the lock guard, on the client's own upstream connection.
//!
//! The relay hands over a decided Query (its final text) with its [`GuardPlan`] when the server
//! is idle. ddlgate then drives the upstream itself, with simple-protocol queries of its own
//! whose replies the client never sees:
//!
//! 1. serialization: take the tables' advisory locks, in key order, waiting (with NOTICEs) for
//!    another session's DDL on the same table to finish;
//! 2. settings: remember `lock_timeout` / `statement_timeout` and set the guard's values;
//! 3. attempts: (`SAVEPOINT` inside a transaction), the client's Query, its replies held back;
//!    on SQLSTATE 55P03 the attempt is undone (`ROLLBACK TO SAVEPOINT`, or `ROLLBACK` of a
//!    failed `BEGIN … COMMIT` block), the blockers are read and told to the client in a NOTICE,
//!    and after a jittered backoff the Query is sent again — within the attempt and time budget;
//! 4. epilogue: settings restored, savepoint released, advisory locks released — at once, or,
//!    when the client's transaction is left failed, at the first moment it can run again;
//! 5. the client gets the held-back replies of the last attempt and its ReadyForQuery — or,
//!    when the budget is spent, an error raised by the server itself (so the transaction state
//!    is the server's), naming the blockers.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::Relay;
use crate::act::BlockError;
use crate::error::SessionError;
use crate::guard::{self, Blocker, GuardPlan, Retry};
use crate::protocol::framing::{self, Frame};
use crate::protocol::{ErrorFields, TxStatus, backend, frontend};
use crate::shutdown::Phase;

/// A decided Query waiting for the guard.
pub(in crate::session) struct PendingGuard {
    /// The Query frame to send (the client's, or its rewritten form).
    pub frame: Bytes,
    pub plan: GuardPlan,
    /// `Q` (a simple Query, run and retried here) or the first message of an
    /// extended-protocol unit (`P`arse or `B`ind): the guard's settings and turn are put in
    /// place, then the relay forwards the unit and the epilogue runs when it is done.
    pub tag: u8,
    /// Run these safe steps instead of the statement (a simple Query only).
    pub recipe: Option<crate::recipe::Recipe>,
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
    pub(super) fn settings_restored(&self) -> bool {
        self.settings.is_none()
    }

    /// Whether it can run with the server in `tx`: nothing runs in a failed transaction, and a
    /// table's DDL turn lasts until the transaction holding the DDL's locks ends (a Query may
    /// open one with `BEGIN` and leave it open).
    pub(super) fn can_run(&self, tx: TxStatus) -> bool {
        match tx {
            TxStatus::Idle => true,
            TxStatus::InTransaction => self.unlock.is_empty(),
            TxStatus::Failed => false,
        }
    }
}

/// One reply of the upstream to a query of ddlgate's own.
struct Reply {
    rows: Vec<Vec<Option<String>>>,
    error: Option<ErrorFields>,
    status: TxStatus,
}

/// How one attempt of the client's Query ended.
struct Attempt {
    /// Replies held back for the client (everything before ReadyForQuery).
    held: Vec<Bytes>,
    /// The ReadyForQuery frame.
    rfq: Option<Bytes>,
    status: TxStatus,
    /// The Query failed with 55P03 lock_not_available.
    lock_timeout: bool,
    /// Replies outgrew `guard.max_buffered_bytes` and were forwarded: no retry possible.
    spilled: bool,
    /// The server asked for COPY data: the relay must take over.
    copy_in: bool,
    /// The first error the Query raised.
    error: Option<ErrorFields>,
}

/// Injected replies are small rows; a bigger frame is a protocol surprise.
const MAX_INJECTED_FRAME: usize = 1 << 20;

impl Relay {
    /// Runs a decided Query under the guard. Returns when the client has its replies (or the
    /// relay must take over a COPY).
    pub(super) async fn run_guarded(&mut self, pending: PendingGuard) -> Result<(), SessionError> {
        let cfg = self.st.live.config.guard.clone();
        let shared = self.shared.clone();
        let counters = &shared.counters;
        counters.guard.runs.increment(1);
        let plan = pending.plan;
        self.st.guard_timing = (std::time::Instant::now(), Duration::ZERO);
        // Shown by `/status` while it runs; gone when this function returns, whichever way.
        let _activity = Activity::enter(&shared, self.st.cancel_key.as_ref().map(|k| k.pid), &plan);
        let start_tx = self.st.tx;
        let in_tx = start_tx == TxStatus::InTransaction;
        // DDL turns still held from an earlier Query of this transaction are released with
        // this one's.
        let mut epilogue = Epilogue {
            settings: None,
            unlock: self
                .st
                .pending_epilogue
                .take()
                .map(|e| e.unlock)
                .unwrap_or_default(),
        };
        let began = Instant::now();

        // The guard's settings (step 2), decided now: for a statement on at most one table
        // they are set in the same round trip as its DDL turn is tried (`guard::prelude_sql`).
        let lock_ms = plan
            .short_lock_timeout
            .then_some(cfg.lock_timeout_ms.as_millis());
        let statement_ms = (plan.long_running && cfg.lift_statement_timeout)
            .then_some(cfg.long_statement_timeout_ms.as_millis());
        let fused = pending.recipe.is_none()
            && plan.tables.len() <= 1
            && (lock_ms.is_some() || statement_ms.is_some());

        // 1. One DDL per table at a time.
        let mut turns: Vec<(i64, String)> = Vec::new();
        if fused {
            let table = plan.tables.first().filter(|_| cfg.serialize);
            let reply = self
                .inject(&guard::prelude_sql(table, in_tx, lock_ms, statement_ms))
                .await?;
            if let Some(p) = reply.rows.first().and_then(|r| guard::Prelude::from_row(r)) {
                epilogue.settings = Some(p.settings);
                match p.turn {
                    Some((key, _, true)) if !in_tx => epilogue.unlock.push(key),
                    Some((key, table, false)) => turns.push((key, table)),
                    _ => {}
                }
            }
        } else if cfg.serialize
            && let Some(q) = guard::keys_query(&plan.tables)
        {
            turns = self
                .inject(&q)
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
                return self
                    .give_up(epilogue, false, message, &blockers, "ddlgate runs one DDL statement per table at a time. Wait for the other one to finish, or raise guard.queue_timeout_ms.")
                    .await;
            }
        }

        // Optional: let old transactions on the table finish before asking for ACCESS EXCLUSIVE.
        if plan.access_exclusive
            && !cfg.precheck_transaction_age_ms.is_zero()
            && let Some(q) = guard::old_transaction_query(
                &plan.tables,
                cfg.precheck_transaction_age_ms.as_millis(),
            )
        {
            let mut told = false;
            while began.elapsed() < cfg.precheck_max_wait_ms {
                let old = self
                    .inject(&q)
                    .await?
                    .rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten());
                if old.as_deref() != Some("t") {
                    break;
                }
                if !told {
                    let blockers = self.blockers(&plan).await?;
                    self.tell(
                        &format!(
                            "ddlgate: waiting up to {} s for transactions older than {} s to release the table before taking ACCESS EXCLUSIVE: {}",
                            cfg.precheck_max_wait_ms.as_secs(),
                            cfg.precheck_transaction_age_ms.as_secs(),
                            guard::describe_blockers(&blockers)
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
            return self.run_recipe(recipe, epilogue, &cfg, &plan, began).await;
        }

        // 2. The guard's settings, unless the prelude set them.
        if !fused && (lock_ms.is_some() || statement_ms.is_some()) {
            let reply = self
                .inject(&guard::settings_sql(lock_ms, statement_ms))
                .await?;
            if let Some(row) = reply.rows.first()
                && let (Some(Some(l)), Some(Some(s))) = (row.first(), row.get(1))
            {
                epilogue.settings = Some((l.clone(), s.clone()));
            }
        }

        if pending.tag != frontend::QUERY {
            // Extended protocol: the unit is the client's to drive; its Sync's ReadyForQuery
            // tells the relay when to put things back. No retry: a lock timeout reaches the
            // client as the server's own 55P03 — after at most lock_timeout, not in the queue.
            self.st.on_client_tag(&shared.counters, pending.tag);
            self.io.to_up.push(pending.frame);
            self.st.pending_epilogue = Some(epilogue).filter(|e| !e.is_empty());
            return Ok(());
        }

        // 3. Attempts.
        let mut upstream_time = 0f64;
        let retry = if plan.short_lock_timeout {
            plan.retry
        } else {
            Retry::No
        };
        let mut attempt_no = 0u32;
        loop {
            attempt_no += 1;
            if retry == Retry::Savepoint {
                self.inject(guard::SAVEPOINT).await?;
            }
            let attempt_began = Instant::now();
            let a = self.attempt(&pending.frame, cfg.max_buffered_bytes).await?;
            let attempt_time = attempt_began.elapsed().as_secs_f64();
            upstream_time += attempt_time;
            if a.lock_timeout {
                shared.metrics.lock_wait_seconds.record(attempt_time);
                self.st.guard_timing.1 += attempt_began.elapsed();
            }
            if a.copy_in {
                self.audit_guarded("ok", None);
                // The relay streams the COPY; the epilogue waits for the server to be idle.
                self.st.outstanding = 1;
                self.st.pending_epilogue = Some(epilogue).filter(|e| !e.is_empty());
                return Ok(());
            }
            if a.lock_timeout && retry != Retry::No && !a.spilled {
                // Undo the attempt: nothing of it may remain.
                match retry {
                    Retry::Savepoint => {
                        self.inject(guard::ROLLBACK_TO_SAVEPOINT).await?;
                    }
                    Retry::Whole if a.status != TxStatus::Idle => {
                        self.inject("ROLLBACK").await?;
                    }
                    _ => {}
                }
                let blockers = self.blockers(&plan).await?;
                let next =
                    guard::after_lock_timeout(&cfg, attempt_no, began.elapsed(), fastrand::f64());
                let guard::AfterLockTimeout::RetryAfter(wait) = next else {
                    counters.guard.exhausted.increment(1);
                    let message = format!(
                        "ddlgate: could not get the lock within lock_timeout {} ms in {attempt_no} attempt(s) over {:.1} s",
                        cfg.lock_timeout_ms.as_millis(),
                        began.elapsed().as_secs_f64()
                    );
                    // A `BEGIN …` Query leaves its block failed, as the server would have.
                    let reopen = retry == Retry::Whole && a.status != TxStatus::Idle;
                    return self
                        .give_up(epilogue, reopen, message, &blockers, "End or wait out the blocking transactions (pg_terminate_backend(pid) for a stuck one), then run the statement again; guard.max_attempts and guard.max_wait_ms set how long ddlgate keeps trying.")
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
            // 4. Done: success, another error, or a lock timeout that cannot be retried.
            if retry == Retry::Savepoint && a.status == TxStatus::InTransaction {
                self.inject(guard::RELEASE_SAVEPOINT).await?;
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
            shared.metrics.unit_done(
                crate::metrics::UnitKind::Ddl,
                a.error.is_some(),
                began.elapsed().as_secs_f64(),
                upstream_time,
            );
            self.audit_guarded(
                if a.error.is_some() { "error" } else { "ok" },
                a.error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.code, e.message)),
            );
            self.epilogue_or_later(epilogue, a.status).await?;
            // 5. The client's replies.
            for f in a.held {
                self.io.to_client.push(f);
            }
            if let Some(rfq) = a.rfq {
                self.io.to_client.push(rfq);
            }
            self.set_tx(a.status);
            return Ok(());
        }
    }

    /// Reads the catalog facts for the DDL of the Query/Parse at the front of the client
    /// buffer and hands them to the analyzer for its decision.
    pub(super) async fn read_facts(&mut self) -> Result<(), SessionError> {
        // The catalog settings of a reload apply to this statement's facts too, not only from
        // the next one (the decision itself refreshes them again, at no cost).
        self.st.refresh_live(&self.shared);
        let Ok(Frame::Header { tag, total }) = framing::scan(&self.io.cbuf, usize::MAX) else {
            return Ok(());
        };
        let Some(frame) = self.io.cbuf.get(..total) else {
            return Ok(());
        };
        let body = framing::body(frame);
        let sql = crate::protocol::statement_sql(tag, body);
        let Some(sql) = sql else { return Ok(()) };
        let lex = self.st.lex;
        // Parsing every DDL statement of a large message is heavy: off the I/O worker.
        let heavy = sql.len() >= self.st.live.config.limits.offload_analysis_bytes;
        let analyzer = &mut self.st.analyzer;
        let requests = super::offload(heavy, || analyzer.catalog_requests(sql, lex));
        let cfg = &self.st.live.config.catalog;
        let identity = self.st.analyzer.identity_query(
            sql,
            lex,
            cfg.max_resolved_names,
            cfg.max_created_relations,
        );
        let thresholds = crate::catalog::Thresholds {
            small_table_rows: cfg.small_table_rows,
            small_table_bytes: cfg.small_table_bytes,
        };
        let mut facts = Vec::with_capacity(requests.len());
        for (at, query) in requests {
            let reply = self.inject(&query).await?;
            if reply.error.is_some() {
                continue;
            }
            let Some(json) = reply
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
            else {
                continue;
            };
            match crate::catalog::parse_facts(&json) {
                Ok(mut f) => {
                    f.thresholds = thresholds;
                    facts.push((at, f));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable catalog facts; deciding without them")
                }
            }
        }
        // Offsets are relative to the SQL text, so they hold even if the buffer moves.
        self.st.analyzer.provide_facts(facts);
        // Which relations the transaction created (`created`): an error means nothing is new.
        if let Some(query) = identity {
            let reply = self.inject(&query).await?;
            let json = reply
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .filter(|_| reply.error.is_none());
            self.st.analyzer.provide_identity(json.as_deref());
        }
        Ok(())
    }

    /// Runs a multi-step rewrite: each step after its precheck (already done → skipped), under
    /// the guard (short `lock_timeout` and retries for steps whose lock blocks traffic, the
    /// `statement_timeout` lifted for long SHARE UPDATE EXCLUSIVE ones). The client gets the
    /// CommandComplete of its own statement — or, when a step fails, an error saying exactly
    /// which steps ran.
    async fn run_recipe(
        &mut self,
        recipe: crate::recipe::Recipe,
        mut epilogue: Epilogue,
        cfg: &crate::config::GuardConfig,
        plan: &GuardPlan,
        began: Instant,
    ) -> Result<(), SessionError> {
        let counters = self.shared.clone();
        let old = self.inject(&guard::settings_sql(None, None)).await?;
        let (old_lock, old_statement) = match old.rows.first().map(|r| (r.first(), r.get(1))) {
            Some((Some(Some(l)), Some(Some(s)))) => (l.clone(), s.clone()),
            _ => ("0".to_owned(), "0".to_owned()),
        };
        epilogue.settings = Some((old_lock.clone(), old_statement.clone()));
        let total = recipe.steps.len();
        let mut done: Vec<String> = Vec::new();
        for (i, step) in recipe.steps.iter().enumerate() {
            let k = i + 1;
            if let Some(pre) = &step.skip_if {
                let r = self.inject(&pre.sql()).await?;
                if r.rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .as_deref()
                    == Some("t")
                {
                    done.push(format!("{k} (already done: {})", pre.describe()));
                    continue;
                }
            }
            let guarded = cfg.enabled && step.lock.blocks_traffic();
            let lock = if guarded {
                let short = cfg.lock_timeout_ms.as_millis();
                match guard::setting_ms(&old_lock) {
                    Some(own) if own > 0 && own < short => old_lock.clone(),
                    _ => format!("{short}ms"),
                }
            } else {
                old_lock.clone()
            };
            let statement = if cfg.enabled && step.long_running && cfg.lift_statement_timeout {
                format!("{}ms", cfg.long_statement_timeout_ms.as_millis())
            } else {
                old_statement.clone()
            };
            self.inject(&guard::restore_sql(Some((&lock, &statement)), &[]))
                .await?;
            let mut attempt_no = 0u32;
            let failure = loop {
                attempt_no += 1;
                let a = self
                    .attempt(&query_frame(step.sql.as_bytes())?, usize::MAX)
                    .await?;
                let Some(error) = a.error else { break None };
                if a.lock_timeout && guarded {
                    let blockers = self.blockers(plan).await?;
                    let wait = guard::backoff(cfg, attempt_no, fastrand::f64());
                    if attempt_no < cfg.max_attempts && began.elapsed() + wait <= cfg.max_wait_ms {
                        counters.counters.guard.retries.increment(1);
                        self.tell(
                            &format!(
                                "ddlgate: step {k} of {total} could not get its lock within {} ms (attempt {attempt_no}); retrying in {} ms. Blocked by: {}",
                                cfg.lock_timeout_ms.as_millis(),
                                wait.as_millis(),
                                guard::describe_blockers(&blockers)
                            ),
                            None,
                        )
                        .await?;
                        self.pause(wait).await?;
                        continue;
                    }
                    counters.counters.guard.exhausted.increment(1);
                    break Some((error, guard::describe_blockers(&blockers)));
                }
                break Some((error, String::new()));
            };
            if let Some((error, blockers)) = failure {
                let ran = if done.is_empty() {
                    "none".to_owned()
                } else {
                    done.join(", ")
                };
                let message = format!(
                    "ddlgate: step {k} of {total} of the safe rewrite failed: {}",
                    error.message
                );
                let detail = format!(
                    "Failed step: {}. Steps completed before it: {ran}. {}",
                    step.sql,
                    if blockers.is_empty() {
                        String::new()
                    } else {
                        format!("Blocking sessions: {blockers}.")
                    }
                );
                let code = if error.code.len() == 5 {
                    error.code.clone()
                } else {
                    "XX000".to_owned()
                };
                return self
                    .fail_with(epilogue, &code, message, detail, "Fix the cause and run the original statement again: the steps already done are detected and skipped.")
                    .await;
            }
            done.push(k.to_string());
        }
        let status = self.st.tx;
        self.epilogue_or_later(epilogue, status).await?;
        let tag = match recipe.kind {
            crate::recipe::RecipeKind::RefreshMaterializedView => "REFRESH MATERIALIZED VIEW",
            crate::recipe::RecipeKind::PartitionedIndex => "CREATE INDEX",
            _ => "ALTER TABLE",
        }
        .to_owned();
        let mut out = BytesMut::new();
        let mut body = tag.into_bytes();
        body.push(0);
        framing::put_message(&mut out, backend::COMMAND_COMPLETE, &body);
        self.io.to_client.push(out.freeze());
        self.io
            .to_client
            .push(crate::protocol::responses::ready_for_query(self.st.tx).freeze());
        self.set_tx(self.st.tx);
        self.audit_guarded("ok", None);
        Ok(())
    }

    /// Puts things back and ends the Query with an error raised by the server itself.
    async fn fail_with(
        &mut self,
        epilogue: Epilogue,
        code: &str,
        message: String,
        detail: String,
        hint: &str,
    ) -> Result<(), SessionError> {
        let status = self.st.tx;
        self.epilogue_or_later(epilogue, status).await?;
        let sql = crate::sql::quote::raise_block(code, &message, &detail, hint);
        self.audit_guarded("error", Some(format!("{code}: {message}")));
        self.raise_on_server(sql.as_bytes()).await
    }

    /// Runs a statement that raises the error the client must see, and relays the server's
    /// answer, so the error and the transaction state it leaves are the server's own.
    async fn raise_on_server(&mut self, sql: &[u8]) -> Result<(), SessionError> {
        self.st.raised_block = true;
        let a = self.attempt(&query_frame(sql)?, usize::MAX).await?;
        for f in a.held {
            self.io.to_client.push(f);
        }
        if let Some(rfq) = a.rfq {
            self.io.to_client.push(rfq);
        }
        self.set_tx(a.status);
        Ok(())
    }

    /// Writes the audit records of the guarded Query with its outcome.
    fn audit_guarded(&mut self, outcome: &'static str, error: Option<String>) {
        let drafts = std::mem::take(&mut self.st.audit_pending);
        let (began, lock_wait) = self.st.guard_timing;
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

    /// Waits for this table's turn; false when the queue timeout passed.
    async fn take_turn(
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
            let got = self.inject(&guard::try_lock_sql(key, in_tx)).await?;
            if got
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .as_deref()
                == Some("t")
            {
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
    async fn give_up(
        &mut self,
        epilogue: Epilogue,
        reopen_block: bool,
        message: String,
        blockers: &[Blocker],
        hint: &str,
    ) -> Result<(), SessionError> {
        let status = self.st.tx;
        self.epilogue_or_later(epilogue, status).await?;
        let err = BlockError {
            code: "55P03",
            message,
            detail: format!("Blocking sessions: {}.", guard::describe_blockers(blockers)),
            hint: hint.to_owned(),
        };
        self.audit_guarded("error", Some(format!("55P03: {}", err.message)));
        let mut sql = err.to_sql();
        if reopen_block {
            let mut s = b"BEGIN; ".to_vec();
            s.append(&mut sql);
            sql = s;
        }
        self.raise_on_server(&sql).await
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
            self.inject(&guard::restore_sql(Some((&lock, &statement)), &[]))
                .await?;
        }
        self.st.pending_epilogue = Some(epilogue);
        Ok(())
    }

    /// Puts settings back and releases session-level advisory locks.
    pub(super) async fn run_epilogue(&mut self, epilogue: Epilogue) -> Result<(), SessionError> {
        if epilogue.is_empty() {
            return Ok(());
        }
        let settings = epilogue
            .settings
            .as_ref()
            .map(|(l, s)| (l.as_str(), s.as_str()));
        self.inject(&guard::restore_sql(settings, &epilogue.unlock))
            .await?;
        Ok(())
    }

    async fn blockers(&mut self, plan: &GuardPlan) -> Result<Vec<Blocker>, SessionError> {
        let reply = self.inject(&guard::blockers_query(&plan.tables)).await?;
        Ok(reply
            .rows
            .iter()
            .filter_map(|r| Blocker::from_row(r))
            .collect())
    }

    /// Sends the client a NOTICE now (it may be waiting for a while).
    async fn tell(&mut self, message: &str, hint: Option<&str>) -> Result<(), SessionError> {
        self.io
            .to_client
            .push(crate::act::notice("NOTICE", message, None, hint).freeze());
        self.io
            .to_client
            .drain_to(&mut self.io.cw)
            .await
            .map_err(SessionError::ClientIo)
    }

    fn set_tx(&mut self, status: TxStatus) {
        let shared = self.shared.clone();
        self.st.set_tx_status(&shared, status);
    }

    /// Runs one query of ddlgate's own; its replies are not the client's. Asynchronous
    /// notifications and parameter changes that arrive meanwhile are passed on.
    async fn inject(&mut self, sql: &str) -> Result<Reply, SessionError> {
        tracing::trace!(sql, "guard query");
        self.send_upstream(query_frame(sql.as_bytes())?).await?;
        let mut reply = Reply {
            rows: Vec::new(),
            error: None,
            status: self.st.tx,
        };
        loop {
            let Some(frame) = self.next_frame(MAX_INJECTED_FRAME, false).await? else {
                return Err(SessionError::UpstreamProtocol(
                    "oversized reply to a ddlgate query".to_owned(),
                ));
            };
            let tag = frame[0];
            let body = framing::body(&frame);
            match tag {
                backend::DATA_ROW => reply.rows.push(data_row(body)),
                backend::ERROR_RESPONSE => {
                    let e = ErrorFields::parse(body);
                    if e.is_fatal() {
                        self.st.upstream_sent_fatal = true;
                    }
                    tracing::warn!(code = %e.code, message = %e.message, sql, "a ddlgate query failed");
                    reply.error = Some(e);
                }
                backend::READY_FOR_QUERY => {
                    self.st.outstanding = self.st.outstanding.saturating_sub(1);
                    reply.status = body
                        .first()
                        .copied()
                        .and_then(TxStatus::from_byte)
                        .unwrap_or(self.st.tx);
                    if reply.status == TxStatus::Idle && self.st.tx != TxStatus::Idle {
                        // A transaction ended: prepared DDL is decided again (`prepared`).
                        self.st.tx_gen += 1;
                    }
                    self.st.tx = reply.status;
                    return Ok(reply);
                }
                backend::NOTIFICATION_RESPONSE => self.io.to_client.push(frame),
                backend::PARAMETER_STATUS => {
                    self.st
                        .on_upstream_message(&self.shared, self.upstream_addr, tag, body)?;
                    self.io.to_client.push(frame);
                }
                _ => {}
            }
        }
    }

    /// Sends one attempt of a Query and collects its replies up to ReadyForQuery.
    async fn attempt(&mut self, frame: &Bytes, max_held: usize) -> Result<Attempt, SessionError> {
        self.send_upstream(frame.clone()).await?;
        let mut a = Attempt {
            held: Vec::new(),
            rfq: None,
            status: self.st.tx,
            lock_timeout: false,
            spilled: false,
            copy_in: false,
            error: None,
        };
        let mut held_bytes = 0usize;
        loop {
            let room = if a.spilled {
                0
            } else {
                max_held.saturating_sub(held_bytes)
            };
            let Some(frame) = self.next_frame(room.max(MAX_INJECTED_FRAME), true).await? else {
                // Streamed straight to the client: it was bigger than what may be held.
                a.spilled = true;
                continue;
            };
            // An error of ddlgate's own raising block loses the server's where, file, line and
            // routine fields.
            let frame = match frame.first() {
                Some(&backend::ERROR_RESPONSE) if self.st.raised_block => {
                    crate::act::without_raise_context(framing::body(&frame))
                        .map_or(frame, BytesMut::freeze)
                }
                _ => frame,
            };
            let tag = frame[0];
            let body = framing::body(&frame);
            match tag {
                backend::READY_FOR_QUERY => {
                    self.st.outstanding = self.st.outstanding.saturating_sub(1);
                    a.status = body
                        .first()
                        .copied()
                        .and_then(TxStatus::from_byte)
                        .unwrap_or(self.st.tx);
                    if a.status == TxStatus::Idle && self.st.tx != TxStatus::Idle {
                        // A transaction ended: prepared DDL is decided again (`prepared`).
                        self.st.tx_gen += 1;
                    }
                    self.st.tx = a.status;
                    a.rfq = Some(frame);
                    return Ok(a);
                }
                backend::NOTIFICATION_RESPONSE => {
                    self.io.to_client.push(frame);
                    continue;
                }
                backend::ERROR_RESPONSE => {
                    let e = ErrorFields::parse(body);
                    if e.is_fatal() {
                        self.st.upstream_sent_fatal = true;
                    }
                    a.lock_timeout |= e.code == "55P03";
                    a.error.get_or_insert(e);
                }
                backend::PARAMETER_STATUS => {
                    self.st
                        .on_upstream_message(&self.shared, self.upstream_addr, tag, body)?;
                }
                backend::COPY_IN_RESPONSE | backend::COPY_BOTH_RESPONSE => {
                    for f in a.held.drain(..) {
                        self.io.to_client.push(f);
                    }
                    self.io.to_client.push(frame);
                    a.copy_in = true;
                    return Ok(a);
                }
                _ => {}
            }
            held_bytes += frame.len();
            if a.spilled || held_bytes > max_held {
                if !a.spilled {
                    a.spilled = true;
                    for f in a.held.drain(..) {
                        self.io.to_client.push(f);
                    }
                }
                self.io.to_client.push(frame);
                self.io
                    .to_client
                    .drain_to(&mut self.io.cw)
                    .await
                    .map_err(SessionError::ClientIo)?;
            } else {
                a.held.push(frame);
            }
        }
    }

    /// Sends one Query frame; it is owed a ReadyForQuery, so while it runs the session counts
    /// as running a statement (a vanishing client gets it cancelled).
    async fn send_upstream(&mut self, frame: Bytes) -> Result<(), SessionError> {
        self.st.outstanding += 1;
        self.io.to_up.push(frame);
        self.io
            .to_up
            .drain_to(&mut self.io.uw)
            .await
            .map_err(SessionError::UpstreamIo)
    }

    /// The next upstream frame, whole when it is at most `max_whole` bytes; a larger one is
    /// streamed to the client when `stream` allows it (returns `None`), else is an error.
    async fn next_frame(
        &mut self,
        max_whole: usize,
        stream: bool,
    ) -> Result<Option<Bytes>, SessionError> {
        let limit = self.st.live.config.limits.max_message_bytes;
        loop {
            match framing::scan(&self.io.ubuf, limit) {
                Ok(Frame::NeedHeader) => self.read_upstream().await?,
                Ok(Frame::Header { total, .. }) if total <= max_whole => {
                    while self.io.ubuf.len() < total {
                        self.io.ubuf.reserve(total - self.io.ubuf.len());
                        self.read_upstream().await?;
                    }
                    return Ok(Some(self.io.ubuf.split_to(total).freeze()));
                }
                Ok(Frame::Header { total, .. }) if stream => {
                    let mut left = total;
                    while left > 0 {
                        if self.io.ubuf.is_empty() {
                            self.read_upstream().await?;
                        }
                        let n = left.min(self.io.ubuf.len());
                        self.io.to_client.push(self.io.ubuf.split_to(n).freeze());
                        left -= n;
                        self.io
                            .to_client
                            .drain_to(&mut self.io.cw)
                            .await
                            .map_err(SessionError::ClientIo)?;
                    }
                    return Ok(None);
                }
                Ok(Frame::Header { tag, total }) => {
                    return Err(SessionError::UpstreamProtocol(format!(
                        "unexpected {total}-byte '{}' reply to a ddlgate query",
                        tag.escape_ascii()
                    )));
                }
                Err(e) => return Err(SessionError::UpstreamProtocol(format!("{e:?}"))),
            }
        }
    }

    /// Reads more upstream bytes. Meanwhile the client is watched: bytes it sends are kept
    /// (bounded) for the relay, and if it goes away the error ends the session, whose clean-up
    /// cancels whatever runs upstream.
    async fn read_upstream(&mut self) -> Result<(), SessionError> {
        if self.io.ubuf.capacity() - self.io.ubuf.len() < 8192 {
            self.io.ubuf.reserve(64 * 1024);
        }
        let mut phase = self.shared.shutdown.subscribe();
        loop {
            let io = &mut self.io;
            let client_room = io.cbuf.len() < super::HIGH_WATER;
            if io.cbuf.capacity() - io.cbuf.len() < 1024 {
                io.cbuf.reserve(8192);
            }
            terminating(&mut phase)?;
            tokio::select! {
                _ = phase.changed() => {}
                r = io.ur.read_buf(&mut io.ubuf) => {
                    if r.map_err(SessionError::UpstreamIo)? == 0 {
                        return Err(SessionError::UpstreamIo(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    return Ok(());
                }
                r = io.cr.read_buf(&mut io.cbuf), if client_room => {
                    if r.map_err(SessionError::ClientIo)? == 0 {
                        return Err(SessionError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
    }

    /// Sleeps between attempts, watching the client as [`Self::read_upstream`] does.
    async fn pause(&mut self, d: Duration) -> Result<(), SessionError> {
        let until = Instant::now() + d;
        let mut phase = self.shared.shutdown.subscribe();
        loop {
            let io = &mut self.io;
            let client_room = io.cbuf.len() < super::HIGH_WATER;
            if io.cbuf.capacity() - io.cbuf.len() < 1024 {
                io.cbuf.reserve(8192);
            }
            terminating(&mut phase)?;
            tokio::select! {
                _ = phase.changed() => {}
                _ = tokio::time::sleep_until(until) => return Ok(()),
                r = io.cr.read_buf(&mut io.cbuf), if client_room => {
                    if r.map_err(SessionError::ClientIo)? == 0 {
                        return Err(SessionError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
    }
}

/// The guard's waits (queue turns, retries, ddlgate's own queries) end when ddlgate terminates,
/// as the relay loop does: the session then cancels what runs upstream and closes with 57P01,
/// instead of keeping the process alive for up to `guard.max_wait_ms`. A drain (SIGTERM) lets
/// guarded DDL go on until `server.drain_timeout_ms` turns it into termination.
fn terminating(phase: &mut tokio::sync::watch::Receiver<Phase>) -> Result<(), SessionError> {
    // A closed channel means the server is gone: stop too.
    if phase.has_changed().is_err() || *phase.borrow_and_update() >= Phase::Terminating {
        return Err(SessionError::Shutdown);
    }
    Ok(())
}

/// A session's guarded DDL as `/status` shows it, removed when dropped.
struct Activity {
    shared: std::sync::Arc<crate::state::Shared>,
    pid: Option<u32>,
}

impl Activity {
    fn enter(
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

    fn update(
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

/// A simple-protocol Query frame.
/// The Query message for SQL ddlgate wrote itself. Refused if the text holds a NUL, where the
/// server would end it: names come from NUL-terminated statements and from the catalog, so
/// this never happens unless something upstream of here is wrong — then nothing is sent.
fn query_frame(sql: &[u8]) -> Result<Bytes, SessionError> {
    if crate::sql::quote::has_nul(sql) {
        return Err(SessionError::ClientProtocol(
            "a name in the statement holds a NUL byte".to_owned(),
        ));
    }
    let mut body = Vec::with_capacity(sql.len() + 1);
    body.extend_from_slice(sql);
    body.push(0);
    let mut out = BytesMut::with_capacity(body.len() + framing::HEADER_LEN);
    framing::put_message(&mut out, frontend::QUERY, &body);
    Ok(out.freeze())
}

/// A DataRow's columns as text (`None` for NULL); malformed rows end early.
fn data_row(mut body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    if body.len() < 2 {
        return out;
    }
    let n = body.get_u16();
    for _ in 0..n {
        if body.len() < 4 {
            break;
        }
        let len = body.get_i32();
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            break;
        }
        out.push(Some(String::from_utf8_lossy(&body[..len]).into_owned()));
        body.advance(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows_decode_and_never_panic() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&3u16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(b"t");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"ok");
        assert_eq!(
            data_row(&b),
            vec![Some("t".into()), None, Some("ok".into())]
        );
        for cut in 0..b.len() {
            let _ = data_row(&b[..cut]);
        }
        let _ = data_row(&[0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    }
}
