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
//! rolled back, each step a named statement too, all in one unit: one round trip, and one more
//! when it fails inside a transaction block (the savepoint's undo).
//!
//! Every other query of ddlgate's own is such a unit too once the client has sent a Parse or
//! a Bind ([`own_unit`], run by `Relay::inject`): a simple Query would drop the client's
//! unnamed statement and portal.
//!
//! Blocked, the unit is answered as a real server answers a unit whose first message fails: the
//! server itself raises the error (a `DO` block, as every block of ddlgate's), so that a
//! transaction block is left failed on the server as the client is told ('E'), and outside one
//! nothing is left behind ('I'); the client gets that ErrorResponse (without the raise's
//! context) and the ReadyForQuery, and nothing for the rest of its unit.

use bytes::{Bytes, BytesMut};
use tracing::Instrument;

use super::Refusal;
use super::channel::Reply;
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
        // The plan's size follows the statement's and its values' (an IN list is printed
        // back): room for four times them, a larger row skipped.
        let room = sql.len().saturating_add(params.len()).saturating_mul(4);
        unit.extend_from_slice(&frontend::sync());
        let reply = self.inject_unit(unit.freeze(), 1, room).await?;
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

    /// After the estimate failed: its statement and portal are closed ([`close_own_unit`]),
    /// and with `undo` its savepoint is rolled back and released (`ROLLBACK TO` may be
    /// prepared and run in a failed transaction; `RELEASE` then runs in the restored one).
    async fn close_own(&mut self, name: &[u8], undo: bool) -> Result<(), SessionError> {
        let mut unit = close_own_unit(name, name);
        if undo {
            for step in estimate::UNDO_STEPS {
                unit.extend_from_slice(&own_statement(name, step.as_bytes()));
            }
        }
        unit.extend_from_slice(&frontend::sync());
        let reply = self.inject_unit(unit.freeze(), 1, 0).await?;
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
        // The raising statement and portal are closed after its Sync, in the same write: after
        // a failed Parse of the unnamed statement a real server holds none.
        let unit = raising_unit(
            raising_statement(name, statement, &refusal.sql),
            name,
            statement,
        );
        let reply = self.raise_in_unit(unit).await?;
        self.io
            .to_client
            .push(crate::protocol::responses::ready_for_query(reply.status).freeze());
        let e = reply.error.as_ref();
        self.audit_guarded("error", e.map(|e| format!("{}: {}", e.code, e.message)));
        self.io.drain_client().await
    }

    /// Runs `unit` (of ddlgate's own, ended by [`raising_unit`]), whose statement raises the
    /// error the client must see, and queues for the client that error (without the raise's
    /// context): the error and the transaction state it leaves are the server's. The
    /// ReadyForQuery (`Reply::status`) is the caller's to queue, now or at the client's Sync.
    pub(super) async fn raise_in_unit(&mut self, unit: Bytes) -> Result<Reply, SessionError> {
        let reply = self.inject_unit(unit, 2, 0).await?;
        let Some(error) = reply.error_frame.as_ref() else {
            return Err(SessionError::UpstreamProtocol(
                "ddlgate's raising statement raised no error".to_owned(),
            ));
        };
        let error: Bytes = crate::act::without_raise_context(framing::body(error))
            .map_or_else(|| error.clone(), BytesMut::freeze);
        let shared = self.shared.clone();
        self.st.set_tx_status(&shared, reply.status);
        self.io.to_client.push(error);
        Ok(reply)
    }
}

/// A unit of ddlgate's own: each of `statements` (one statement each, no parameters) prepared,
/// run and closed under the statement and portal `name` ([`own_statement`]), and one Sync for
/// them all (outside a transaction block one implicit transaction, an error skipping the rest,
/// as in a simple Query of them). A named statement outlives an error (Parse is not
/// transactional) and the server skips every message after an error up to Sync, the Closes of
/// the failed statement's own included: after an error the caller closes them
/// ([`close_own_unit`]). Refused if a text holds a NUL, where the server would end it: names
/// come from NUL-terminated statements and from the catalog, so this never happens unless
/// something upstream of here is wrong — then nothing is sent.
pub(super) fn own_unit(name: &[u8], statements: &[&[u8]]) -> Result<Bytes, SessionError> {
    let mut unit = own_statements(name, statements)?;
    unit.extend_from_slice(&frontend::sync());
    Ok(unit.freeze())
}

/// [`own_unit`] of `before`, then `sql`, which raises an error (it always fails), prepared as
/// `statement` (ddlgate's own name `name`, or the unnamed statement, which a server drops when
/// a Parse of it fails) and run in the portal `name` ([`raising_statement`]), ended by
/// [`raising_unit`]. Refused if a text holds a NUL (see [`own_unit`]).
pub(super) fn raising_unit_from(
    name: &[u8],
    statement: &[u8],
    before: &[&[u8]],
    sql: &[u8],
) -> Result<Bytes, SessionError> {
    if crate::sql::quote::has_nul(sql) {
        return Err(super::channel::nul_refused());
    }
    let mut unit = own_statements(name, before)?;
    unit.extend_from_slice(&raising_statement(name, statement, sql));
    Ok(raising_unit(unit, name, statement))
}

/// Prepares `sql` (no parameters) as `statement` and runs it in the portal `name`, neither
/// closed: the statement fails, and the server skips everything after it up to Sync
/// ([`raising_unit`] closes both after it).
fn raising_statement(name: &[u8], statement: &[u8], sql: &[u8]) -> BytesMut {
    let mut unit = BytesMut::new();
    unit.extend_from_slice(
        &Parse {
            name: statement,
            sql,
            param_types: NO_TYPES,
        }
        .frame(),
    );
    unit.extend_from_slice(&Bind::frame_of(name, statement, NO_PARAMS));
    unit.extend_from_slice(&frontend::execute(name));
    unit
}

/// [`own_statement`] of each of `statements`; refused if one holds a NUL (see [`own_unit`]).
fn own_statements(name: &[u8], statements: &[&[u8]]) -> Result<BytesMut, SessionError> {
    let mut unit = BytesMut::new();
    for sql in statements {
        if crate::sql::quote::has_nul(sql) {
            return Err(super::channel::nul_refused());
        }
        unit.extend_from_slice(&own_statement(name, sql));
    }
    Ok(unit)
}

/// A Close of the portal and of the statement a unit of ddlgate's own left open when it
/// failed (a Close is no error when the name does not exist, and runs in a failed transaction
/// too); the caller ends the unit with a Sync.
pub(super) fn close_own_unit(portal: &[u8], statement: &[u8]) -> BytesMut {
    let mut unit = BytesMut::new();
    unit.extend_from_slice(&frontend::close_portal(portal));
    unit.extend_from_slice(&frontend::close_statement(statement));
    unit
}

/// Ends `unit`, whose statement raises an error (it always fails): one Sync, then
/// [`close_own_unit`] of `portal` and `statement` (ddlgate's own name, or the unnamed
/// statement a refusal raises from) and a second Sync, in the same write — one round trip, and
/// nothing of ddlgate's left behind.
pub(super) fn raising_unit(mut unit: BytesMut, portal: &[u8], statement: &[u8]) -> Bytes {
    unit.extend_from_slice(&frontend::sync());
    unit.extend_from_slice(&close_own_unit(portal, statement));
    unit.extend_from_slice(&frontend::sync());
    unit.freeze()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framing::Frame;
    use crate::protocol::frontend::{Close, Execute};

    /// The frames of `unit`: tag and, for the named messages, the name (and a Parse's text).
    fn frames(mut unit: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Frame::Header { tag, total }) = framing::scan(unit, usize::MAX) {
            let body = framing::body(&unit[..total]);
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            out.push(match tag {
                frontend::PARSE => {
                    let p = Parse::decode(body).expect("parse");
                    format!("P {} {}", text(p.name), text(p.sql))
                }
                frontend::BIND => {
                    let b = Bind::decode(body).expect("bind");
                    assert_eq!(b.param_count(), Some(0));
                    format!("B {} {}", text(b.portal), text(b.statement))
                }
                frontend::EXECUTE => {
                    format!("E {}", text(Execute::decode(body).expect("e").portal))
                }
                frontend::CLOSE => {
                    let c = Close::decode(body).expect("close");
                    format!("C{} {}", c.kind as char, text(c.name))
                }
                other => (other as char).to_string(),
            });
            unit = &unit[total..];
        }
        assert!(unit.is_empty(), "whole frames only");
        out
    }

    #[test]
    fn own_units_run_every_statement_under_one_sync() {
        let unit = own_unit(b"n", &[b"SAVEPOINT s", b"SELECT 1"]).expect("no NUL");
        assert_eq!(
            frames(&unit),
            [
                "P n SAVEPOINT s",
                "B n n",
                "E n",
                "CP n",
                "CS n",
                "P n SELECT 1",
                "B n n",
                "E n",
                "CP n",
                "CS n",
                "S",
            ]
        );
        assert!(own_unit(b"n", &[b"SELECT 1", b"SELECT '\0'"]).is_err());
        // A raising unit closes after its Sync, in the same write: the unnamed statement a
        // refusal raises from is the one closed.
        let raising = raising_unit(BytesMut::new(), b"n", b"");
        assert_eq!(frames(&raising), ["S", "CP n", "CS ", "S"]);
        // An error raised in place of a unit's first message: after the steps before it, from
        // ddlgate's own statement or from the unnamed one.
        let from = |statement: &[u8]| {
            raising_unit_from(b"n", statement, &[b"BEGIN"], b"DO $$ $$").expect("no NUL")
        };
        assert_eq!(
            frames(&from(b"n")),
            [
                "P n BEGIN",
                "B n n",
                "E n",
                "CP n",
                "CS n",
                "P n DO $$ $$",
                "B n n",
                "E n",
                "S",
                "CP n",
                "CS n",
                "S"
            ]
        );
        assert_eq!(
            frames(&from(b""))[5..],
            ["P  DO $$ $$", "B n ", "E n", "S", "CP n", "CS ", "S"]
        );
        assert!(raising_unit_from(b"n", b"n", &[], b"DO '\0'").is_err());
    }
}
