//! The backfill guard with the client's own parameter values: an UPDATE/DELETE/MERGE with
//! parameters (`$1`) is planned by `EXPLAIN (FORMAT JSON)` bound with exactly the values and
//! formats of the client's Bind, before anything of its unit reaches the server
//! (`catalog::estimate`). Two shapes are examined (`relay/bound.rs`): a unit `Parse Bind
//! [Describe] Execute Sync` (the Parse held at its facts, `facts`), and a unit `Bind [Describe]
//! Execute Sync` of a statement prepared earlier and kept (`relay/prepared.rs`).
//!
//! The EXPLAIN is an extended-protocol unit of ddlgate's own under a per-session statement and
//! portal name (never the unnamed ones: the client's unnamed statement and portal are left as
//! they are), closed after; inside a transaction block it runs under a savepoint that is always
//! rolled back, each step a named statement too (a simple Query would drop the client's
//! unnamed statement), all in one unit: one round trip, and one more when it fails.
//!
//! Blocked, the unit is answered as a real server answers a unit whose first message fails: the
//! server itself raises the error (a `DO` block, as every block of ddlgate's), so that a
//! transaction block is left failed on the server as the client is told ('E'), and outside one
//! nothing is left behind ('I'); the client gets that ErrorResponse (without the raise's
//! context) and the ReadyForQuery, and nothing for the rest of its unit.

use bytes::{Bytes, BytesMut};
use tracing::Instrument;

use super::Refusal;
use crate::catalog::estimate::{self, Answer};
use crate::error::SessionError;
use crate::protocol::frontend::{self, Bind, Parse};
use crate::protocol::{TxStatus, framing};
use crate::session::relay::Relay;
use crate::session::relay::bound::BoundUnit;

/// A Bind's parameter section with no parameters: no format codes, no values.
const NO_PARAMS: &[u8] = &[0, 0, 0, 0];
/// A Parse's parameter types: none.
const NO_TYPES: &[u8] = &[0, 0];

impl Relay {
    /// The estimate of `sql` (a Parse's text, holding one statement with parameters) planned
    /// with `param_types` (its Parse's) and `params` (a Bind's parameter section, as
    /// `Bind::params` gives it). `None`: no estimate (the EXPLAIN failed, its plan modifies
    /// nothing by UPDATE/DELETE/MERGE, or could not be read); counted.
    pub(in crate::session) async fn estimate_bound(
        &mut self,
        sql: &[u8],
        param_types: &[u8],
        params: &[u8],
    ) -> Result<Option<Answer>, SessionError> {
        let shared = self.shared.clone();
        let counters = &shared.counters.backfill;
        let name = self.st.own_statement_name();
        let name = name.as_bytes();
        let in_tx = self.st.proto.tx() == TxStatus::InTransaction;
        // One unit, one round trip: inside a transaction block the savepoint, the EXPLAIN and
        // the savepoint's undo, each its own named statement (no client text can make one
        // swallow another, as it could in one Query). After an error the server skips the rest
        // up to Sync: what was left open is closed and the undo sent again (`close_own`).
        let mut unit = BytesMut::new();
        if in_tx {
            unit.extend_from_slice(&own_statement(name, estimate::SAVEPOINT.as_bytes()));
        }
        unit.extend_from_slice(&own_statement_with(
            name,
            &estimate::explain_sql(sql),
            param_types,
            params,
        ));
        if in_tx {
            for step in estimate::UNDO_STEPS {
                unit.extend_from_slice(&own_statement(name, step.as_bytes()));
            }
        }
        unit.extend_from_slice(&frontend::sync());
        // The plan's size follows the statement's and its values' (an IN list is printed
        // back): room for four times them, a larger row skipped.
        let room = sql.len().saturating_add(params.len()).saturating_mul(4);
        let reply = self.inject_unit(unit.freeze(), room).await?;
        if reply.error.is_some() {
            // Failed, the EXPLAIN is undone all the same inside a transaction block (the locks
            // planning took released), and what the failure left open is closed.
            self.close_own(name, in_tx).await?;
        }
        if reply.skipped {
            tracing::debug!("EXPLAIN answer larger than its room; deciding without an estimate");
        }
        if let Some(e) = reply.error.as_ref() {
            counters.failed.increment(1);
            // Stopped as the statement would have been (a cancel, a timeout): it fails so.
            return Ok(Answer::stopped(&e.code, &e.message));
        }
        match reply.value().map(estimate::parse_estimate) {
            Some(Ok(e)) => {
                counters.bound.increment(1);
                Ok(e.map(Answer::Rows))
            }
            Some(Err(e)) => {
                counters.failed.increment(1);
                tracing::warn!(error = %e, "unreadable EXPLAIN answer; deciding without an estimate");
                Ok(None)
            }
            None => {
                counters.failed.increment(1);
                Ok(None)
            }
        }
    }

    /// After a unit of ddlgate's own failed: its statement and portal are closed (a Close of
    /// a name that does not exist is no error), and with `undo` the estimate's savepoint is
    /// rolled back and released (`ROLLBACK TO` may be prepared and run in a failed
    /// transaction; `RELEASE` then runs in the restored one).
    async fn close_own(&mut self, name: &[u8], undo: bool) -> Result<(), SessionError> {
        let mut unit = BytesMut::new();
        unit.extend_from_slice(&frontend::close_portal(name));
        unit.extend_from_slice(&frontend::close_statement(name));
        if undo {
            for step in estimate::UNDO_STEPS {
                unit.extend_from_slice(&own_statement(name, step.as_bytes()));
            }
        }
        unit.extend_from_slice(&frontend::sync());
        let reply = self.inject_unit(unit.freeze(), 0).await?;
        if let Some(e) = reply.error {
            tracing::warn!(code = %e.code, message = %e.message, "undoing the backfill estimate failed");
        }
        Ok(())
    }

    /// The Bind at the front of the client buffer (`unit`) executes a kept UPDATE/DELETE/MERGE
    /// with parameters: its estimate with the values bound, then the decision. Allowed, the
    /// unit is forwarded as it is (after the warnings); blocked, it is taken and refused.
    pub(in crate::session) async fn examine_bind(
        &mut self,
        unit: BoundUnit,
    ) -> Result<(), SessionError> {
        let (at, len) = unit.bind;
        let Some(bind) = self
            .io
            .cbuf
            .get(at..at + len)
            .and_then(|f| Bind::decode(framing::body(f)))
        else {
            self.st.lane.step = super::Step::BoundRead;
            return Ok(());
        };
        let (Some((sql, types, offset)), Some(params)) =
            (self.st.bound_of(bind.statement), bind.params())
        else {
            self.st.lane.step = super::Step::BoundRead;
            return Ok(());
        };
        let params = params.to_vec();
        let answer = self.estimate_bound(&sql, &types, &params).await?;
        let estimates = answer.map(|a| vec![(offset, a)]).unwrap_or_default();
        let shared = self.shared.clone();
        let (notices, raise) = self
            .st
            .decide_bound(&shared, &shared.counters, &sql, estimates);
        for n in notices {
            self.io.to_client.push(n.freeze());
        }
        match raise {
            None => self.st.lane.step = super::Step::BoundRead,
            Some(sql) => {
                // The unit is the client's no more: nothing of it is forwarded. (It was read
                // at the front of the client buffer, which only grew since.)
                if unit.len > self.io.cbuf.len() {
                    return Err(SessionError::ClientProtocol(
                        "the examined unit is no longer in the client buffer".to_owned(),
                    ));
                }
                let _ = self.io.cbuf.split_to(unit.len);
                self.st.proto.unit_taken();
                self.st.proto.command_taken();
                shared.counters.extended_units.increment(1);
                let span = self.st.span.clone();
                self.refuse_unit(Refusal {
                    sql,
                    unnamed: false,
                })
                .instrument(span)
                .await?;
            }
        }
        Ok(())
    }

    /// Answers a blocked unit (already taken from the client buffer): the server raises the
    /// error in a unit of ddlgate's own, the client gets it and the ReadyForQuery.
    pub(in crate::session) async fn refuse_unit(
        &mut self,
        refusal: Refusal,
    ) -> Result<(), SessionError> {
        self.st.lane.timing = (std::time::Instant::now(), std::time::Duration::ZERO);
        if memchr::memchr(0, &refusal.sql).is_some() {
            // The server would end the text there: nothing is sent (never the case, the text is
            // the client's Parse's, NUL-terminated, with ddlgate's block spliced in).
            return Err(SessionError::ClientProtocol(
                "a refused statement holds a NUL byte".to_owned(),
            ));
        }
        self.st.raised_block = true;
        let name = self.st.own_statement_name();
        let name = name.as_bytes();
        let statement: &[u8] = if refusal.unnamed { b"" } else { name };
        let mut unit = BytesMut::new();
        unit.extend_from_slice(
            &Parse {
                name: statement,
                sql: &refusal.sql,
                param_types: NO_TYPES,
            }
            .frame(),
        );
        unit.extend_from_slice(&Bind::frame_of(name, statement, NO_PARAMS));
        unit.extend_from_slice(&frontend::execute(name));
        unit.extend_from_slice(&frontend::sync());
        let reply = self.inject_unit(unit.freeze(), 0).await?;
        let Some(error) = reply.error_frame.as_ref() else {
            return Err(SessionError::UpstreamProtocol(
                "ddlgate's refusal of a unit raised no error".to_owned(),
            ));
        };
        let error: Bytes = crate::act::without_raise_context(framing::body(error))
            .map_or_else(|| error.clone(), BytesMut::freeze);
        // The raising statement and portal are closed: after a failed Parse of the unnamed
        // statement a real server holds none.
        let mut close = BytesMut::new();
        close.extend_from_slice(&frontend::close_portal(name));
        close.extend_from_slice(&frontend::close_statement(statement));
        close.extend_from_slice(&frontend::sync());
        let closed = self.inject_unit(close.freeze(), 0).await?;
        let status = closed.status;
        let shared = self.shared.clone();
        self.st.set_tx_status(&shared, status);
        let e = reply.error.as_ref();
        self.audit_guarded("error", e.map(|e| format!("{}: {}", e.code, e.message)));
        self.io.to_client.push(error);
        self.io
            .to_client
            .push(crate::protocol::responses::ready_for_query(status).freeze());
        self.io
            .to_client
            .drain_to(&mut self.io.cw)
            .await
            .map_err(SessionError::ClientIo)
    }
}

/// Prepares, runs and closes `sql` (no parameters) under ddlgate's statement and portal
/// `name`: a step of ddlgate's own that leaves the client's unnamed statement alone.
fn own_statement(name: &[u8], sql: &[u8]) -> BytesMut {
    own_statement_with(name, sql, NO_TYPES, NO_PARAMS)
}

/// [`own_statement`] with parameter types (a Parse's) and values (a Bind's parameter section).
fn own_statement_with(name: &[u8], sql: &[u8], param_types: &[u8], params: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(
        &Parse {
            name,
            sql,
            param_types,
        }
        .frame(),
    );
    out.extend_from_slice(&Bind::frame_of(name, name, params));
    out.extend_from_slice(&frontend::execute(name));
    out.extend_from_slice(&frontend::close_portal(name));
    out.extend_from_slice(&frontend::close_statement(name));
    out
}
