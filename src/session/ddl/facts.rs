//! Phase 0 of the DDL lane: the catalog facts a DDL statement's decision needs (what the
//! analyzer asks for: tables, sizes, constraints, and which relations the transaction created),
//! read with ddlgate's own queries before the relay decides the message.

use crate::error::SessionError;
use crate::protocol::framing::{self, Frame};
use crate::protocol::frontend;
use crate::session::relay::Relay;

impl Relay {
    /// Reads the catalog facts for the DDL of the Query/Parse at the front of the client
    /// buffer and hands them to the analyzer for its decision.
    pub(in crate::session) async fn read_facts(&mut self) -> Result<(), SessionError> {
        // The catalog settings of a reload apply to this statement's facts too, not only from
        // the next one (the decision itself refreshes them again, at no cost).
        self.st.refresh_live(&self.shared);
        // The lane may be here for the backfill guard alone (`[catalog] enabled = false`).
        if self.st.live.config.catalog.enabled {
            self.read_catalog_facts().await?;
        }
        if self.st.profile.backfill.enabled {
            self.read_estimates().await?;
        }
        Ok(())
    }

    /// The backfill guard's part of the facts: the planner's estimate for each UPDATE/DELETE of
    /// the front message (`catalog::estimate`), inside a transaction block under a savepoint
    /// that is always rolled back. Never in a failed transaction (the lane is not entered).
    async fn read_estimates(&mut self) -> Result<(), SessionError> {
        let Some((tag, sql)) = front_statement(&self.io.cbuf) else {
            return Ok(());
        };
        let lex = self.st.server.lex;
        let (requests, with_parameters) = self.st.analyzer.estimate_requests(sql, lex);
        let shared = self.shared.clone();
        let counters = &shared.counters;
        let mut estimates = Vec::with_capacity(requests.len());
        match with_parameters[..] {
            [] => {}
            // A Parse of one statement with parameters: planned with the values of the Bind
            // in its unit, when the unit is here whole (`bound`); else kept for the Binds
            // that execute it later (the relay counts it `parameters` when it is not).
            [at] if tag == frontend::PARSE && requests.is_empty() => {
                self.st.lane.bound_later = Some(at);
                if let Some(answer) = self.estimate_front_unit().await? {
                    estimates.push((at, answer));
                }
            }
            ref all => counters.backfill.parameters.increment(all.len() as u64),
        }
        for (at, explain) in requests {
            let in_tx = self.st.proto.tx() == crate::protocol::TxStatus::InTransaction;
            if in_tx {
                let reply = self.inject(&[crate::catalog::estimate::SAVEPOINT]).await?;
                if reply.error.is_some() {
                    counters.backfill.failed.increment(1);
                    continue;
                }
            }
            let reply = self.inject_bytes(&[&explain], false, true).await?;
            if reply.skipped {
                tracing::debug!(
                    "EXPLAIN answer larger than its room; deciding without an estimate"
                );
            }
            let answer = reply
                .value()
                .filter(|_| reply.error.is_none())
                .map(crate::catalog::estimate::parse_estimate);
            // Stopped as the statement would have been (a cancel, a timeout): it fails so.
            let stopped = reply
                .error
                .as_ref()
                .and_then(|e| crate::catalog::estimate::Answer::stopped(&e.code, &e.message));
            if in_tx {
                // Failed or not, the EXPLAIN is undone: the transaction is as the client left
                // it, and the locks planning took are released.
                self.inject(&crate::catalog::estimate::UNDO_STEPS).await?;
            }
            if let Some(stopped) = stopped {
                counters.backfill.failed.increment(1);
                estimates.push((at, stopped));
                // The message fails at this statement: what follows it does not run.
                break;
            }
            match answer {
                Some(Ok(Some(e))) => {
                    counters.backfill.estimated.increment(1);
                    estimates.push((at, crate::catalog::estimate::Answer::Rows(e)));
                }
                // A plan that modifies nothing by UPDATE or DELETE.
                Some(Ok(None)) => counters.backfill.estimated.increment(1),
                Some(Err(e)) => {
                    counters.backfill.failed.increment(1);
                    tracing::warn!(error = %e, "unreadable EXPLAIN answer; deciding without an estimate");
                }
                None => counters.backfill.failed.increment(1),
            }
        }
        // The client buffer may have moved (more bytes read) during the queries: the text is
        // looked up again.
        if let Some((_, sql)) = front_statement(&self.io.cbuf) {
            self.st.analyzer.provide_estimates(sql, estimates);
        }
        Ok(())
    }

    /// The estimate of the Parse at the front of the client buffer with the parameter values
    /// of its unit's Bind, when the unit (`Parse Bind [Describe] Execute Sync`) is here whole
    /// and its values within `limits.max_statement_bytes`; the unit is then answered by
    /// ddlgate if it is blocked (`Lane::bound_unit`).
    async fn estimate_front_unit(
        &mut self,
    ) -> Result<Option<crate::catalog::estimate::Answer>, SessionError> {
        let limits = &self.st.live.config.limits;
        let Some(unit) =
            crate::session::relay::bound::recognise(&self.io.cbuf, limits.max_message_bytes)
                .filter(|u| u.parse_len > 0 && u.bind.1 <= limits.max_statement_bytes)
        else {
            return Ok(None);
        };
        let cbuf = &self.io.cbuf;
        let (at, len) = unit.bind;
        let (Some(parse), Some(params)) = (
            frontend::Parse::decode(framing::body(&cbuf[..unit.parse_len])),
            frontend::Bind::decode(framing::body(&cbuf[at..at + len])).and_then(|b| b.params()),
        ) else {
            return Ok(None);
        };
        // Copies, bounded as above: the client buffer may move during the EXPLAIN.
        let (sql, types, params) = (
            parse.sql.to_vec(),
            parse.param_types.to_vec(),
            params.to_vec(),
        );
        self.st.lane.bound_unit = Some(unit.len);
        self.estimate_bound(&sql, &types, &params).await
    }

    /// The catalog facts (and created-in-transaction answer) for the front message's DDL.
    async fn read_catalog_facts(&mut self) -> Result<(), SessionError> {
        // Parsing every DDL statement of a large message is heavy: off the I/O worker (or
        // already done on the blocking pool, see `Relay::facts_are_heavy`).
        let requests = match self.precomputed_requests.take() {
            Some(r) => r,
            None => {
                let heavy = self.facts_are_heavy();
                crate::session::relay::offload(heavy, || self.catalog_requests())
            }
        };
        let Some((_, sql)) = front_statement(&self.io.cbuf) else {
            return Ok(());
        };
        let lex = self.st.server.lex;
        let capture = capture_query(&mut self.st, self.shared.audit.enabled(), sql, lex);
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
            let reply = self.inject(&[&query]).await?;
            if reply.error.is_some() {
                continue;
            }
            let Some(json) = reply.value() else {
                continue;
            };
            match crate::catalog::parse_facts(json) {
                Ok(mut f) => {
                    f.set_thresholds(thresholds);
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
            let reply = self.inject(&[query]).await?;
            let json = reply.value().filter(|_| reply.error.is_none());
            self.st.analyzer.provide_identity(json);
        }
        self.capture_before(capture).await?;
        Ok(())
    }

    /// Reads the undo snapshot: one more read-only query at this boundary.
    async fn capture_before(
        &mut self,
        capture: Option<(String, crate::undo::capture::Statements)>,
    ) -> Result<(), SessionError> {
        let Some((query, ddls)) = capture else {
            return Ok(());
        };
        // Inside the client's transaction, a failure must not abort it.
        let in_tx = self.st.proto.tx() == crate::protocol::TxStatus::InTransaction;
        let reply = if in_tx {
            let reply = self
                .inject(&crate::undo::journal::in_savepoint(vec![query]))
                .await?;
            if reply.error.is_some() {
                self.inject(&crate::undo::journal::rollback_savepoint())
                    .await?;
            }
            reply
        } else {
            self.inject(&[query]).await?
        };
        match reply.value().filter(|_| reply.error.is_none()) {
            Some(json) => {
                let befores = crate::undo::capture::parse(json);
                self.st.lane.before = ddls.into_iter().map(|(d, _)| d).zip(befores).collect();
            }
            None => tracing::warn!(
                error = ?reply.error.map(|e| e.message),
                "the undo snapshot could not be read; inverses are recorded without it"
            ),
        }
        Ok(())
    }

    /// Finding the catalog questions of the front statement means parsing every DDL statement
    /// in it: heavy for a large message.
    pub(in crate::session) fn facts_are_heavy(&self) -> bool {
        front_statement(&self.io.cbuf)
            .is_some_and(|(_, sql)| sql.len() >= self.st.live.config.limits.offload_analysis_bytes)
    }

    /// The catalog questions the analyzer has about the front statement's DDL (CPU only).
    pub(in crate::session) fn catalog_requests(&mut self) -> Vec<(usize, String)> {
        let Some((tag, sql)) = front_statement(&self.io.cbuf) else {
            return Vec::new();
        };
        let source = if tag == frontend::QUERY {
            crate::analysis::Source::Query
        } else {
            crate::analysis::Source::Parse
        };
        let lex = self.st.server.lex;
        self.st.analyzer.catalog_requests(sql, lex, source)
    }
}

/// The undo snapshot query of the message's DDL (`crate::undo::capture`), with the statements
/// it is of, when their inverses are recorded anywhere (audit log or journal).
fn capture_query(
    st: &mut crate::session::relay::State,
    audit: bool,
    sql: &[u8],
    lex: crate::sql::lexer::LexOptions,
) -> Option<(String, crate::undo::capture::Statements)> {
    st.lane.before.clear();
    let journal = &st.live.config.journal;
    if !audit && !journal.enabled {
        return None;
    }
    let max = journal.max_statements;
    let ddls = st.analyzer.understood(sql, lex);
    crate::undo::capture::query(&ddls, max).map(|q| (q, ddls))
}

/// The SQL of the Query/Parse at the front of the client buffer, and its message tag.
fn front_statement(cbuf: &[u8]) -> Option<(u8, &[u8])> {
    let Ok(Frame::Header { tag, total }) = framing::scan(cbuf, usize::MAX) else {
        return None;
    };
    let frame = cbuf.get(..total)?;
    frontend::statement_sql(tag, framing::body(frame)).map(|sql| (tag, sql))
}
