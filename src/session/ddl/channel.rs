//! The side channel: ddlgate's own queries on the client's upstream connection, at a
//! statement boundary (named extended-protocol units, so the client's unnamed statement and
//! portal stay as they are; simple Queries while it has sent no Parse or Bind), and the
//! guarded Query's attempts — sent, and their replies read up to
//! ReadyForQuery, without the client seeing them (except notifications, parameter changes, and
//! replies too large to hold). Every wait here has a shutdown arm: when ddlgate terminates, the
//! wait ends with `SessionError::Shutdown` and the session cancels what runs upstream. While it
//! waits, the client is watched: what it sends is kept for the relay, and its disconnect ends
//! the session.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::error::SessionError;
use crate::protocol::framing::{self, Frame};
use crate::protocol::{ErrorFields, TxStatus, backend, frontend};
use crate::session::relay::Relay;
use crate::shutdown::Phase;

/// One reply of the upstream to a query of ddlgate's own.
pub(super) struct Reply {
    pub(super) rows: Vec<Vec<Option<String>>>,
    pub(super) error: Option<ErrorFields>,
    pub(super) status: TxStatus,
    /// A row larger than the query's room was skipped (only for a query holding the client's
    /// text, see [`Relay::inject_bytes`]): `rows` lacks it.
    pub(super) skipped: bool,
    /// The first ErrorResponse as the server sent it (an extended-protocol unit of ddlgate's
    /// own, [`Relay::inject_unit`], whose raised error is the client's to see).
    pub(super) error_frame: Option<Bytes>,
}

impl Reply {
    /// The first column of the first row, unless there is none or it is NULL.
    pub(super) fn value(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }

    /// Whether the first column of the first row is boolean true.
    pub(super) fn is_true(&self) -> bool {
        self.value() == Some("t")
    }

    /// The first two columns of the first row, when both are set.
    pub(super) fn pair(&self) -> Option<(String, String)> {
        match self.rows.first().map(|r| (r.first(), r.get(1))) {
            Some((Some(Some(a)), Some(Some(b)))) => Some((a.clone(), b.clone())),
            _ => None,
        }
    }
}

/// How one attempt of the client's Query ended.
pub(super) struct Attempt {
    /// Replies held back for the client (everything before ReadyForQuery).
    pub(super) held: Vec<Bytes>,
    /// The ReadyForQuery frame.
    pub(super) rfq: Option<Bytes>,
    pub(super) status: TxStatus,
    /// The Query failed with 55P03 lock_not_available.
    pub(super) lock_timeout: bool,
    /// Replies outgrew `guard.max_buffered_bytes` and were forwarded: no retry possible.
    pub(super) spilled: bool,
    /// The server asked for COPY data: the relay must take over.
    pub(super) copy_in: bool,
    /// The first error the Query raised.
    pub(super) error: Option<ErrorFields>,
}

/// Injected replies are small rows; a bigger frame is a protocol surprise.
const MAX_INJECTED_FRAME: usize = 1 << 20;

/// What [`Relay::next_frame`] does with a frame larger than it may hold whole.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Oversized {
    /// A protocol surprise: the session ends.
    Refuse,
    /// Streamed to the client as it arrives (the guarded Query's own replies).
    Stream,
    /// Read and dropped (an EXPLAIN of the client's statement: its size follows the client's
    /// text, and too big a plan only leaves the statement unexamined).
    Skip,
}

impl Relay {
    /// Runs SQL of ddlgate's own: `statements`, each one statement, in one extended-protocol
    /// unit of ddlgate's own named statement and portal (`bound::own_unit`), so that the
    /// client's unnamed statement and portal are left as they are (a simple Query would drop
    /// both). One Sync ends them all: outside a transaction block they run as one implicit
    /// transaction, and an error skips the rest, exactly as a simple Query of them would; an
    /// error is followed by a Close of what it left open (one more round trip, only then).
    /// For a client that never sent a Parse or a Bind (no unnamed statement or portal can
    /// exist) they run as one simple Query instead, which costs the server less. Rows come
    /// back in text format; their replies are not the client's. Asynchronous notifications and
    /// parameter changes that arrive meanwhile are passed on.
    pub(super) async fn inject<S: AsRef<[u8]>>(
        &mut self,
        statements: &[S],
    ) -> Result<Reply, SessionError> {
        self.inject_flushing(statements, false).await
    }

    /// [`Relay::inject`]; with `flush_client`, the replies queued for the client are written to
    /// it while the server runs the statements, so the client does not wait for them.
    pub(super) async fn inject_flushing<S: AsRef<[u8]>>(
        &mut self,
        statements: &[S],
        flush_client: bool,
    ) -> Result<Reply, SessionError> {
        let statements: Vec<&[u8]> = statements.iter().map(AsRef::as_ref).collect();
        self.inject_bytes(&statements, flush_client, false).await
    }

    /// [`Relay::inject_flushing`] of SQL text that may not be UTF-8: the client's own statement
    /// in the session's `client_encoding` (the backfill guard's EXPLAIN). `client_text`: the
    /// statements stand for the client's (its EXPLAIN, a lone unit's recipe step), whose
    /// failure is expected (the statement's own error, the client's to see) and is logged at
    /// debug without its text; ddlgate's own queries failing is a warning.
    pub(super) async fn inject_bytes(
        &mut self,
        statements: &[&[u8]],
        flush_client: bool,
        client_text: bool,
    ) -> Result<Reply, SessionError> {
        if tracing::enabled!(tracing::Level::TRACE) {
            for sql in statements {
                let sql = String::from_utf8_lossy(sql);
                tracing::trace!(sql = %sql, "guard query");
            }
        }
        // A client that never sent a Parse or a Bind holds no unnamed statement or portal: one
        // simple Query of the statements drops nothing of its, and costs the server less than
        // prepared statements (no plan cache, no copies of the query trees).
        let name = self.st.extended_used.then(|| self.st.own_statement_name());
        match &name {
            Some(name) => {
                let unit = super::bound::own_unit(name.as_bytes(), statements)?;
                self.send_own(unit, 1).await?;
            }
            None => {
                let sql = statements.join(&b"; "[..]);
                self.send_own(query_frame(&sql)?, 1).await?;
            }
        }
        // The EXPLAIN of the client's statement answers with a plan whose size follows the
        // statement's (an IN list of thousands of values is printed back): room for four times
        // it, and a larger row is skipped rather than ending the session.
        let len: usize = statements.iter().map(|s| s.len()).sum();
        let (room, oversized) = if client_text {
            (
                MAX_INJECTED_FRAME.max(len.saturating_mul(4)),
                Oversized::Skip,
            )
        } else {
            (MAX_INJECTED_FRAME, Oversized::Refuse)
        };
        if flush_client {
            self.io.drain_client().await?;
        }
        let reply = self
            .collect_reply(room, oversized, client_text, statements, 1)
            .await?;
        if let Some(name) = name.filter(|_| reply.error.is_some()) {
            // The failed statement's Closes were skipped: nothing of ddlgate's is left behind.
            let mut close = super::bound::close_own_unit(name.as_bytes(), name.as_bytes());
            close.extend_from_slice(&frontend::sync());
            self.send_own(close.freeze(), 1).await?;
            self.collect_reply(MAX_INJECTED_FRAME, Oversized::Refuse, false, &[], 1)
                .await?;
        }
        Ok(reply)
    }

    /// Runs an extended-protocol unit of ddlgate's own (`frames`, holding `syncs` Syncs, the
    /// last at its end; its statements and portals named so that the client's unnamed ones
    /// are left alone) and reads its replies up to the last ReadyForQuery, as
    /// [`Relay::inject_bytes`] does. `room`: the largest row held (a larger one is skipped).
    pub(super) async fn inject_unit(
        &mut self,
        frames: Bytes,
        syncs: usize,
        room: usize,
    ) -> Result<Reply, SessionError> {
        self.send_own(frames, syncs).await?;
        self.collect_reply(
            room.max(MAX_INJECTED_FRAME),
            Oversized::Skip,
            true,
            &[],
            syncs,
        )
        .await
    }

    /// The replies to what was just sent, up to its `syncs`-th ReadyForQuery (ParseComplete,
    /// BindComplete, CloseComplete, NoData and CommandComplete are dropped).
    async fn collect_reply(
        &mut self,
        room: usize,
        oversized: Oversized,
        client_text: bool,
        sql: &[&[u8]],
        mut syncs: usize,
    ) -> Result<Reply, SessionError> {
        let mut reply = Reply {
            rows: Vec::new(),
            error: None,
            status: self.st.proto.tx(),
            skipped: false,
            error_frame: None,
        };
        loop {
            let Some(frame) = self.next_frame(room, oversized).await? else {
                if oversized == Oversized::Skip {
                    reply.skipped = true;
                    continue;
                }
                return Err(SessionError::UpstreamProtocol(
                    "oversized reply to a ddlgate query".to_owned(),
                ));
            };
            let tag = frame[0];
            let body = framing::body(&frame);
            match tag {
                backend::DATA_ROW => reply.rows.push(backend::data_row(body)),
                backend::ERROR_RESPONSE => {
                    let e = ErrorFields::parse(body);
                    if e.is_fatal() {
                        // The server is ending the session (terminated backend, shutdown): its
                        // own FATAL, not a bare 08006 once the socket closes, tells the client why.
                        self.st.upstream_sent_fatal = true;
                        self.io.to_client.push(frame.clone());
                    }
                    if client_text {
                        tracing::debug!(code = %e.code, message = %e.message, "a statement standing for the client's failed");
                    } else {
                        tracing::warn!(code = %e.code, message = %e.message, sql = %String::from_utf8_lossy(&sql.join(&b"; "[..])), "a ddlgate query failed");
                    }
                    if reply.error.is_none() {
                        reply.error = Some(e);
                        reply.error_frame = Some(frame);
                    }
                }
                backend::READY_FOR_QUERY => {
                    reply.status = backend::ready_for_query(body).unwrap_or(self.st.proto.tx());
                    // A transaction that ends here has prepared DDL decided again (`prepared`).
                    self.st.proto.own_query_answered(reply.status);
                    syncs = syncs.saturating_sub(1);
                    if syncs == 0 {
                        return Ok(reply);
                    }
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
    pub(super) async fn attempt(
        &mut self,
        frame: &Bytes,
        max_held: usize,
    ) -> Result<Attempt, SessionError> {
        self.send_upstream(frame.clone()).await?;
        let mut a = Attempt {
            held: Vec::new(),
            rfq: None,
            status: self.st.proto.tx(),
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
            let Some(frame) = self
                .next_frame(room.max(MAX_INJECTED_FRAME), Oversized::Stream)
                .await?
            else {
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
                    a.status = backend::ready_for_query(body).unwrap_or(self.st.proto.tx());
                    // A transaction that ends here has prepared DDL decided again (`prepared`).
                    self.st.proto.own_query_answered(a.status);
                    a.rfq = Some(frame);
                    return Ok(a);
                }
                backend::NOTIFICATION_RESPONSE => {
                    self.io.to_client.push(frame);
                    continue;
                }
                backend::ERROR_RESPONSE => {
                    let e = ErrorFields::parse(body);
                    let fatal = e.is_fatal();
                    a.lock_timeout |= e.code == "55P03";
                    a.error.get_or_insert(e);
                    if fatal {
                        // No ReadyForQuery follows: what was held and the server's FATAL go to
                        // the client now (a step terminated mid-recipe shows 57P01, not 08006).
                        self.st.upstream_sent_fatal = true;
                        a.spilled = true;
                        for f in a.held.drain(..) {
                            self.io.to_client.push(f);
                        }
                        self.io.to_client.push(frame);
                        continue;
                    }
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
                self.io.drain_client().await?;
            } else {
                a.held.push(frame);
            }
        }
    }

    /// Sends one Query frame (or a unit ending with one Sync); it is owed a ReadyForQuery, so
    /// while it runs the session counts as running a statement (a vanishing client gets it
    /// cancelled).
    pub(super) async fn send_upstream(&mut self, frame: Bytes) -> Result<(), SessionError> {
        self.send_own(frame, 1).await
    }

    /// Sends frames of ddlgate's own holding `syncs` Syncs: each is owed a ReadyForQuery.
    async fn send_own(&mut self, frames: Bytes, syncs: usize) -> Result<(), SessionError> {
        for _ in 0..syncs {
            self.st.proto.own_query_sent();
        }
        self.io.to_up.push(frames);
        self.io
            .to_up
            .drain_to(&mut self.io.uw)
            .await
            .map_err(SessionError::UpstreamIo)
    }

    /// The next upstream frame, whole when it is at most `max_whole` bytes; a larger one is
    /// streamed to the client or skipped as `oversized` says (returns `None`), else is an
    /// error.
    pub(super) async fn next_frame(
        &mut self,
        max_whole: usize,
        oversized: Oversized,
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
                Ok(Frame::Header { total, .. }) if oversized == Oversized::Skip => {
                    let mut left = total;
                    while left > 0 {
                        if self.io.ubuf.is_empty() {
                            self.read_upstream().await?;
                        }
                        let n = left.min(self.io.ubuf.len());
                        bytes::Buf::advance(&mut self.io.ubuf, n);
                        left -= n;
                    }
                    return Ok(None);
                }
                Ok(Frame::Header { total, .. }) if oversized == Oversized::Stream => {
                    let mut left = total;
                    while left > 0 {
                        if self.io.ubuf.is_empty() {
                            self.read_upstream().await?;
                        }
                        let n = left.min(self.io.ubuf.len());
                        self.io.to_client.push(self.io.ubuf.split_to(n).freeze());
                        left -= n;
                        self.io.drain_client().await?;
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
    pub(super) async fn read_upstream(&mut self) -> Result<(), SessionError> {
        if self.io.ubuf.capacity() - self.io.ubuf.len() < 8192 {
            self.io.ubuf.reserve(64 * 1024);
        }
        self.watching_client(None).await
    }

    /// Sleeps between attempts, watching the client as [`Self::read_upstream`] does.
    pub(super) async fn pause(&mut self, d: Duration) -> Result<(), SessionError> {
        self.watching_client(Some(Instant::now() + d)).await
    }

    /// Until `until` passes (`Some`) or upstream bytes arrive (`None`), keeps what the client
    /// sends (bounded) and ends with an error when it goes away or ddlgate terminates.
    async fn watching_client(&mut self, until: Option<Instant>) -> Result<(), SessionError> {
        let mut phase = self.shared.shutdown.subscribe();
        // Never reached when `until` is `None`: that arm is disabled. Set once, not per turn
        // (each timer set takes the lock of `crate::timer`'s map).
        let mut pause = std::pin::pin!(crate::timer::sleep_until(
            until.unwrap_or_else(Instant::now)
        ));
        loop {
            let io = &mut self.io;
            let client_room = io.cbuf.len() < crate::session::relay::HIGH_WATER;
            if io.cbuf.capacity() - io.cbuf.len() < 1024 {
                io.cbuf.reserve(8192);
            }
            terminating(&mut phase)?;
            tokio::select! {
                _ = phase.changed() => {}
                _ = &mut pause, if until.is_some() => return Ok(()),
                r = io.ur.read_buf(&mut io.ubuf), if until.is_none() => {
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

/// The Query message for SQL ddlgate wrote itself (a recipe's step, an error raised for a
/// client's simple Query). Refused if the text holds a NUL, where the server would end it:
/// names come from NUL-terminated statements and from the catalog, so this never happens
/// unless something upstream of here is wrong — then nothing is sent.
pub(super) fn query_frame(sql: &[u8]) -> Result<Bytes, SessionError> {
    if crate::sql::quote::has_nul(sql) {
        return Err(nul_refused());
    }
    frontend::Query::frame(sql).ok_or_else(nul_refused)
}

pub(super) fn nul_refused() -> SessionError {
    SessionError::ClientProtocol("a name in the statement holds a NUL byte".to_owned())
}
