//! The relay: a full-duplex event loop over the client and upstream sockets.
//!
//! One task owns both sockets. Each turn of the loop waits for the first of: shutdown, the login
//! deadline, writing either outbound queue, and reading either socket (each read only while the
//! opposite queue is below its high-water mark — that is the backpressure that bounds memory).
//! Bytes read are cut into frames by their 5-byte headers; frames are forwarded as zero-copy
//! slices of the read buffer, in batches, and only a few kinds are decoded:
//!
//! - client `Query` and `Parse`: taken whole (bounded by `limits.max_statement_bytes`) and their
//!   SQL handed to the analysis hook (`relay/hook.rs`) before they are forwarded — a large one
//!   off the event loop (`limits.offload_analysis_bytes`), and one whose lexing depends on a
//!   setting an earlier, unanswered statement may have changed (`standard_conforming_strings`,
//!   `client_encoding`) only once the server has answered that statement;
//! - client `Bind` of a tracked prepared statement (`relay/prepared.rs`): guarded, or decided
//!   again when its context changed since the Parse; `Close`: frees a tracking slot;
//! - a Parse or Bind of DDL that starts a lone unit (`relay/lone.rs`: one statement, no
//!   parameters, up to its Sync, outside a transaction block): the whole unit is handed to the
//!   DDL lane, which runs it like a simple Query (retries, steps) and answers it itself;
//! - backfill guard on: a Parse of an UPDATE/DELETE/MERGE with parameters that starts a unit
//!   `Parse Bind [Describe] Execute Sync`, and a Bind of such a statement prepared earlier
//!   (kept in `relay/prepared.rs`) that starts a unit `Bind [Describe] Execute Sync`
//!   (`relay/bound.rs`): held until the lane has the planner's estimate with the Bind's values
//!   (`ddl::bound`); forwarded untouched, or, blocked, taken whole and answered by the lane;
//! - client `Sync`, `Execute`, `FunctionCall`, `CopyDone`/`CopyFail`, `Terminate`: only their tag,
//!   to know how many ReadyForQuery messages are owed and where protocol units end;
//! - after the DDL lane answered the first message of a longer unit with an error (`ddl::Sent`):
//!   only the headers of the client's messages up to its Sync, dropped as they arrive, as the
//!   server skips them after an error; the Sync gets the one ReadyForQuery;
//! - upstream `ReadyForQuery` (transaction status), `ParameterStatus` (server version,
//!   `standard_conforming_strings`, client encoding), `BackendKeyData` (cancel key),
//!   `ErrorResponse` (FATAL or not);
//! - before the first ReadyForQuery: every client frame's header, through the pre-authentication
//!   gate (`protocol::preauth`): only authentication messages are read, anything else is left
//!   unread and the client is not read again until the session is ready; upstream
//!   AuthenticationOk, at which the session takes one of `limits.max_clients`;
//! - during authentication only, and only when SCRAM channel binding cannot survive TLS
//!   termination (`tls::ChannelBinding`): upstream AuthenticationSASL, to withhold
//!   `SCRAM-SHA-256-PLUS`, and the client's SASLInitialResponse, for its one-byte binding flag.
//!
//! Protocol state (stage, replies owed, units, transaction status) is kept by the tracker
//! (`session::tracker`), fed the tag of every client message forwarded and every
//! ReadyForQuery. Messages are decoded through `protocol::frontend` and `protocol::backend`; no
//! SQL is written here. A DDL message stops the loop at a statement boundary and is handed to
//! the DDL lane (`session::ddl`): its catalog facts first, then, once decided, the guard or a
//! recipe, with ddlgate's own queries on the upstream connection.
//!
//! Either side may be plain TCP or TLS: the sockets are boxed halves of a `tls::Conn`.
//!
//! Everything else — DataRow, CopyData, Bind, authentication exchanges — streams through
//! undecoded, even when a single message is larger than the read buffer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;
use tracing::Instrument;

pub(super) mod bound;
mod hook;
pub(super) mod lone;
mod prepared;
mod units;

use self::hook::{Hooked, lexing_refusal, lexing_sensitive, refusal_frame, refused_statement_name};
use self::lone::{LoneUnit, Shape};
use self::prepared::Prepared;
use self::units::Units;
use super::ddl::{Lane, PendingGuard, Step};
use super::outq::OutQueue;
use super::tracker::{ClientEvent, ServerParams, Tracker};
use crate::admission::Slot;
use crate::analysis::Analyzer;
use crate::error::SessionError;
use crate::metrics::UnitKind;
use crate::policy::Profile;
use crate::protocol::framing::{self, Frame, FrameError};
use crate::protocol::preauth::{self, Gate, MAX_AUTH_MESSAGE};
use crate::protocol::startup::CancelKey;
use crate::protocol::{ErrorFields, TxStatus, backend, frontend, responses};
use crate::shutdown::Phase;
use crate::state::Shared;
use crate::tls::{BoxRead, BoxWrite, ChannelBinding, Conn};

/// Stop reading a peer while this much is queued for the other one.
pub(super) const HIGH_WATER: usize = 256 * 1024;
/// Read buffers grow by at least this much before a read.
const READ_CHUNK: usize = 64 * 1024;
/// Time allowed for last words (a FATAL, a Terminate) when a session ends.
const LAST_WORDS_TIMEOUT: Duration = Duration::from_secs(1);
/// A read buffer that grew beyond this for a large message is given back once the message is
/// gone, so that an idle session holds its ordinary buffers only.
const BUFFER_KEPT_MAX: usize = 4 * READ_CHUNK;

/// Why the loop stopped without an error.
pub(super) enum End {
    /// The client closed its socket.
    ClientClosed,
    /// The upstream server closed its socket.
    UpstreamClosed,
    /// ddlgate is shutting down and this session's turn has come.
    Shutdown,
}

/// What a turn of the loop waited for and got first.
enum Woke {
    PhaseChanged,
    LoginExpired,
    WroteClient(std::io::Result<()>),
    WroteUpstream(std::io::Result<()>),
    ReadUpstream(std::io::Result<usize>),
    ReadClient(std::io::Result<usize>),
}

/// How a turn of the loop ended.
enum Turn {
    /// Served a socket; go on.
    Continue,
    /// The shutdown phase changed: look at it again.
    PhaseChanged,
    /// Heavy work is due on the blocking pool (`Relay::pending`).
    Offload,
    /// The session ends.
    End(End),
}

/// CPU-heavy work a session on an event loop does on the blocking pool instead, so the other
/// sessions of its loop go on meanwhile (on a multi-thread runtime `block_in_place` does that
/// in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heavy {
    /// Cutting and analysing client bytes that hold a large Query/Parse.
    ClientBytes,
    /// Finding the catalog questions of a large DDL message.
    CatalogRequests,
}

/// Sockets, buffers and queues.
pub(super) struct Io {
    /// Plain TCP or TLS on either side, behind boxed halves: the framing code never knows which.
    pub(super) cr: BoxRead,
    pub(super) cw: BoxWrite,
    pub(super) ur: BoxRead,
    pub(super) uw: BoxWrite,
    /// Bytes from the client not yet forwarded (at most one partial frame between turns).
    pub(super) cbuf: BytesMut,
    /// Bytes from the upstream not yet forwarded.
    pub(super) ubuf: BytesMut,
    pub(super) to_up: OutQueue,
    pub(super) to_client: OutQueue,
    /// A large Query/Parse was analysed: once it is gone, free memory goes back to the OS.
    pub(super) large_message_seen: bool,
}

/// What the relay knows about the session's protocol state.
pub(super) struct State {
    /// Protocol state from message tags: stage, replies owed, units, transaction status.
    pub(super) proto: Tracker,
    /// The migration tool driving the session, once known (`crate::tools`), and how many more
    /// statements may be searched for its version table.
    pub(super) tool: Option<crate::tools::Tool>,
    pub(super) tool_search_left: u32,
    /// Prepared DDL statements (by name) with what their Parse decided, and statements that
    /// change settings when executed: a later Bind of one of them is guarded, decided again
    /// or marks a settings change. Bounded by `guard.max_tracked_statements`.
    prepared: Prepared,
    /// The session's tracing span: entered around what can log at INFO and above (the relay
    /// does not enter it per message; see `session::SessionSpan`).
    pub(super) span: tracing::Span,
    /// The last Parse analysed holds a DDL candidate.
    pub(super) last_parse_ddl: bool,
    /// The last Parse's decision rests on facts that hold only now (`Plan::fresh_facts_only`):
    /// its statement may be executed only in the same protocol unit.
    pub(super) last_parse_fresh: bool,
    /// A statement that may change how SQL is lexed (`standard_conforming_strings`,
    /// `client_encoding`) was forwarded and the server has not answered it yet: a later
    /// message whose lexing depends on those settings waits for its ReadyForQuery (the
    /// ParameterStatus comes before it).
    pub(super) lex_barrier: bool,
    /// Bumped by every ParameterStatus and every statement that may change a setting.
    pub(super) settings_gen: u64,
    /// Unpredictable part of the statement name a refused Bind is pointed at, and of the name
    /// of ddlgate's own statements and portals.
    pub(super) refusal_nonce: u64,
    /// The client has sent a Parse or a Bind: it may hold an unnamed prepared statement or
    /// portal, so ddlgate's own queries run as named extended-protocol units, which leave them
    /// alone (before that, as simple Queries: cheaper for the server, and nothing to drop).
    pub(in crate::session) extended_used: bool,
    /// ddlgate sent a Parse of its own (a refused Bind's raising statement): the client must
    /// not see its ParseComplete.
    pub(super) swallow_parse_complete: bool,
    /// ddlgate sent one of its raising `DO` blocks in this session (a prepared one may raise in
    /// any later unit): from then on its errors lose the server's where, file, line and
    /// routine fields (see `act::without_raise_context`).
    pub(super) raised_block: bool,
    /// The protocol unit (`Tracker::units_begun`) whose Parse the backfill guard examined with
    /// the values of the unit's own Bind: that Bind is not examined again.
    pub(super) bound_examined_unit: Option<u64>,
    /// Bytes of a client message still streaming through to the upstream.
    pub(super) c_stream_left: usize,
    /// Bytes of an upstream message still streaming through to the client.
    pub(super) u_stream_left: usize,
    /// The upstream already sent a FATAL error (e.g. idle-session timeout, admin shutdown):
    /// its disconnect needs no further explanation.
    pub(super) upstream_sent_fatal: bool,
    /// The backend's cancel key from BackendKeyData.
    pub(super) cancel_key: Option<CancelKey>,
    /// What the server reported in ParameterStatus: how to lex SQL, its version.
    pub(super) server: ServerParams,
    pub(super) analyzer: Analyzer,
    /// The session's policy profile, chosen from user, database and application — again after
    /// every configuration reload (`generation`).
    pub(super) profile: Profile,
    pub(super) who: crate::audit::SessionInfo,
    /// The live configuration this session last read (limits, guard, catalog, policy).
    pub(super) live: Arc<crate::state::Live>,
    /// A Query or Parse with DDL arrived while earlier requests were still running: it waits
    /// (unread, in the buffer) until the server is idle, so that its decision sees the true
    /// transaction status and ddlgate's notices are not interleaved with earlier results.
    pub(super) held: bool,
    /// The DDL lane's state: where the message at the front of the client buffer is in it,
    /// what is still to be put back, the guarded statement's timing.
    pub(super) lane: Lane,
    /// Protocol units in flight, with what each carries to its ReadyForQuery (timing, audit
    /// drafts, tracking slots it frees, its error).
    pub(super) units: Units,
    /// Kind of the Query just analysed.
    pub(super) last_kind: UnitKind,
    /// The session's slot in the `ddlgate_sessions{tx_state}` gauge.
    pub(super) gauge_state: Option<usize>,
    /// A DDL statement took SHARE or stronger in the still-open transaction, at this time.
    pub(super) dangerous_since: Option<std::time::Instant>,
    /// Whether SCRAM-SHA-256-PLUS may be offered to this client (TLS termination breaks the
    /// binding unless both legs present the same certificate).
    pub(super) channel_binding: ChannelBinding,
}

pub(super) struct Relay {
    pub(super) shared: Arc<Shared>,
    pub(super) io: Io,
    pub(super) st: State,
    pub(super) upstream_addr: SocketAddr,
    pub(super) login_deadline: Instant,
    /// Unauthenticated until AuthenticationOk, then one of `limits.max_clients`.
    pub(super) slot: Slot,
    /// A client frame other than an authentication message arrived before the session was
    /// ready: it stays unread, and so does the client, until the first ReadyForQuery.
    pub(super) preauth_held: bool,
    /// Heavy work to do on the blocking pool before anything else (event loops only).
    pub(super) pending: Option<Heavy>,
    /// What the blocking pool's `on_client_bytes` returned, to act on back on the loop.
    offloaded: Option<Result<(), SessionError>>,
    /// The catalog questions the blocking pool found (`Heavy::CatalogRequests`).
    pub(super) precomputed_requests: Option<Vec<(usize, String)>>,
    /// Back from the steady relay with what follows upstream bytes still to do
    /// (`after_upstream_bytes`).
    upstream_due: bool,
}

/// A Sync's whole frame: tag and length, no body.
const SYNC_FRAME: usize = 5;

impl Relay {
    pub(super) fn new(
        shared: Arc<Shared>,
        client: Conn,
        upstream: Conn,
        upstream_addr: SocketAddr,
        login_deadline: Instant,
        who: crate::audit::SessionInfo,
        slot: Slot,
    ) -> Relay {
        tune_allocator();
        let live = shared.live.load_full();
        let profile = live
            .policy
            .profile_for(&who.user, &who.database, &who.application_name)
            .clone();
        tracing::debug!(profile = %profile.name, mode = profile.mode.as_str(), "policy profile");
        let channel_binding = shared.tls.channel_binding(&client, &upstream);
        let (cr, cw) = client.into_split();
        let (ur, uw) = upstream.into_split();
        let mut analyzer = Analyzer::default();
        analyzer.set_max_statements(live.config.limits.max_statements_per_message);
        analyzer.set_backfill(profile.backfill.enabled);
        analyzer.set_span(tracing::Span::current());
        Relay {
            shared,
            io: Io {
                cr,
                cw,
                ur,
                uw,
                cbuf: BytesMut::with_capacity(READ_CHUNK),
                ubuf: BytesMut::with_capacity(READ_CHUNK),
                to_up: OutQueue::default(),
                to_client: OutQueue::default(),
                large_message_seen: false,
            },
            st: State {
                proto: Tracker::default(),
                tool: crate::tools::Tool::from_application_name(&who.application_name),
                tool_search_left: crate::tools::STATEMENTS_SEARCHED,
                prepared: Prepared::default(),
                span: tracing::Span::current(),
                last_parse_ddl: false,
                last_parse_fresh: false,
                lex_barrier: false,
                settings_gen: 0,
                refusal_nonce: fastrand::u64(..),
                extended_used: false,
                swallow_parse_complete: false,
                raised_block: false,
                bound_examined_unit: None,
                c_stream_left: 0,
                u_stream_left: 0,
                upstream_sent_fatal: false,
                cancel_key: None,
                server: ServerParams::default(),
                analyzer,
                profile,
                who,
                live,
                held: false,
                lane: Lane::default(),
                units: Units::default(),
                last_kind: UnitKind::Dml,
                gauge_state: None,
                dangerous_since: None,
                channel_binding,
            },
            upstream_addr,
            login_deadline,
            slot,
            preauth_held: false,
            pending: None,
            offloaded: None,
            precomputed_requests: None,
            upstream_due: false,
        }
    }

    /// Forwards the startup packet, relays until either side ends, then cleans up: a statement
    /// whose client vanished is cancelled upstream, and the client is told why it is being
    /// disconnected when it can still be told.
    pub(super) async fn run(mut self, startup: Bytes) -> Result<(), SessionError> {
        self.io.to_up.push(startup);
        let outcome = loop {
            // `None`: the relay leaves the loop for a while. Heavy analysis is due
            // (`Relay::pending`): it goes to the blocking pool for it and comes back. Or it
            // has reached its steady state: it goes to the steady relay until something
            // asynchronous is due again.
            match self.pump().await {
                Ok(None) if self.pending.is_some() => self = self.offload_heavy().await,
                Ok(None) => match self.go_steady().await {
                    Ok((relay, exit)) => {
                        self = relay;
                        match exit {
                            super::steady::Exit::Resume => {}
                            super::steady::Exit::End(end) => break Ok(end),
                            super::steady::Exit::Failed(e) => break Err(e),
                        }
                    }
                    // The steady relay lost the session (a bug, logged there, which also
                    // released its bookkeeping).
                    Err(e) => return Err(e),
                },
                Ok(Some(end)) => break Ok(end),
                Err(e) => break Err(e),
            }
        };
        let span = self.st.span.clone();
        let result = self.finish(outcome).instrument(span).await;
        self.forget();
        result
    }

    /// Releases what the server keeps for this session: its place in the sessions gauge and
    /// its cancel key.
    pub(super) fn forget(&mut self) {
        self.shared
            .metrics
            .session_state(self.st.gauge_state.take(), None);
        if let Some(key) = self.st.cancel_key.take() {
            self.shared.cancel_keys.remove(&key);
        }
    }

    /// Nothing asynchronous is left to do, and both sockets are plain TCP: the session can go
    /// to the steady relay (`super::steady`). Checked before each turn on the event loop.
    fn may_go_steady(&self, phase: Phase) -> bool {
        phase == Phase::Running
            && self.st.proto.is_ready()
            && self.slot.is_authenticated()
            && !self.preauth_held
            && !self.st.held
            && self.pending.is_none()
            && self.offloaded.is_none()
            && !self.upstream_due
            && matches!(self.st.lane.step, Step::Relay)
            && self.st.lane.epilogue.is_none()
            && crate::tls::is_plain(&self.io.cr, &self.io.cw)
            && crate::tls::is_plain(&self.io.ur, &self.io.uw)
            && super::steady::available()
    }

    /// Hands the session, its sockets taken off this loop's reactor, to the steady relay, and
    /// takes it back (its sockets on this loop's reactor again) when it leaves.
    async fn go_steady(mut self) -> Result<(Relay, super::steady::Exit), SessionError> {
        use super::steady::Exit;
        let Some(steady) = super::steady::current() else {
            return Ok((self, Exit::Resume));
        };
        let client = match crate::tls::detach_plain(&mut self.io.cr, &mut self.io.cw) {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Ok((self, Exit::Failed(SessionError::ClientIo(e)))),
            None => return Ok((self, Exit::Resume)),
        };
        let upstream = match crate::tls::detach_plain(&mut self.io.ur, &mut self.io.uw) {
            Some(Ok(s)) => s,
            other => {
                let exit = match other {
                    Some(Err(e)) => Exit::Failed(SessionError::UpstreamIo(e)),
                    _ => Exit::Resume,
                };
                return Ok(match crate::tls::attach_plain(client) {
                    Ok((r, w)) => {
                        (self.io.cr, self.io.cw) = (r, w);
                        (self, exit)
                    }
                    Err(e) => (self, Exit::Failed(SessionError::ClientIo(e))),
                });
            }
        };
        let connections = &self.shared.connections;
        connections.to_steady.increment(1);
        let to_loop = connections.to_loop.clone();
        let back = steady.adopt(self, client, upstream).await.map_err(|_| {
            SessionError::UpstreamIo(std::io::Error::other(
                "the steady relay lost the session after an internal error",
            ))
        })?;
        to_loop.increment(1);
        let mut relay = back.relay;
        let mut exit = back.exit;
        match crate::tls::attach_plain(back.client) {
            Ok((r, w)) => (relay.io.cr, relay.io.cw) = (r, w),
            Err(e) => exit = Exit::Failed(SessionError::ClientIo(e)),
        }
        match crate::tls::attach_plain(back.upstream) {
            Ok((r, w)) => (relay.io.ur, relay.io.uw) = (r, w),
            Err(e) => exit = Exit::Failed(SessionError::UpstreamIo(e)),
        }
        Ok((relay, exit))
    }

    /// Up to `budget` turns of the steady relay: the event loop's `turn`, in the same order,
    /// on sockets whose readiness the steady loop tracks, without awaiting anything.
    pub(super) fn steady_turns(
        &mut self,
        s: &mut super::steady::Sockets,
        budget: u32,
    ) -> super::steady::Flow {
        use super::steady::{Exit, Flow};
        // As on the event loop (`session::SessionSpan`): relaying, the session's span is
        // entered only around what can log at INFO and above, unless DEBUG events are on.
        let _in_session =
            tracing::enabled!(tracing::Level::DEBUG).then(|| self.st.span.clone().entered());
        for _ in 0..budget {
            match self.steady_turn(s) {
                Ok(Some(true)) => {}
                Ok(Some(false)) => return Flow::Idle,
                Ok(None) => return Flow::Leave(Exit::Resume),
                Err(Left::End(end)) => return Flow::Leave(Exit::End(end)),
                Err(Left::Failed(e)) => return Flow::Leave(Exit::Failed(e)),
            }
        }
        Flow::Again
    }

    /// One turn: `Some(true)` if something moved, `Some(false)` if nothing can until a
    /// socket is ready again, `None` when something asynchronous is due (the event loop does
    /// it: `offloaded`, `pending` or `upstream_due` says what).
    fn steady_turn(&mut self, s: &mut super::steady::Sockets) -> Result<Option<bool>, Left> {
        // Writes first: a chunk written releases its slice of the read buffer, so the buffer
        // is uniquely owned again when `prepare_turn` grows it.
        if self.io.to_client.has_work() && s.c.writable() {
            match self.io.to_client.write_to(&s.client) {
                Ok(()) => return Ok(Some(true)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.c.write_full(),
                Err(e) => return Err(Left::Failed(SessionError::ClientIo(e))),
            }
        }
        if self.io.to_up.has_work() && s.u.writable() {
            match self.io.to_up.write_to(&s.upstream) {
                Ok(()) => {
                    if self.io.to_up.is_empty() {
                        self.st.units.forwarded();
                    }
                    return Ok(Some(true));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.u.write_full(),
                Err(e) => return Err(Left::Failed(SessionError::UpstreamIo(e))),
            }
        }
        self.prepare_turn();
        if self.io.to_client.bytes() < HIGH_WATER && s.u.readable() {
            match recv_into(&s.upstream, &mut self.io.ubuf) {
                Ok(Recv::Closed) => return Err(Left::End(End::UpstreamClosed)),
                Ok(Recv::Got { drained }) => {
                    if drained {
                        s.u.read_drained();
                    }
                    self.on_upstream_bytes().map_err(Left::Failed)?;
                    self.check_admitted().map_err(Left::Failed)?;
                    if self.upstream_tail_due() {
                        self.upstream_due = true;
                        return Ok(None);
                    }
                    return Ok(Some(true));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.u.read_drained(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(Some(true)),
                Err(e) => return Err(Left::Failed(SessionError::UpstreamIo(e))),
            }
        }
        if self.io.to_up.bytes() < HIGH_WATER
            && !self.st.held
            && !self.preauth_held
            && s.c.readable()
        {
            match recv_into(&s.client, &mut self.io.cbuf) {
                Ok(Recv::Closed) => return Err(Left::End(End::ClientClosed)),
                Ok(Recv::Got { drained }) => {
                    if drained {
                        s.c.read_drained();
                    }
                    // Tests arm it to panic here (`tests/steady_panic.rs`).
                    #[cfg(feature = "failpoints")]
                    fail::fail_point!("steady-client-bytes");
                    self.st.units.bytes_read();
                    return self.steady_client_input().map_err(Left::Failed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.c.read_drained(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(Some(true)),
                Err(e) => return Err(Left::Failed(SessionError::ClientIo(e))),
            }
        }
        Ok(Some(false))
    }

    /// `client_input` up to the first thing that needs the event loop: a large statement to
    /// analyse off the loop, or work for the DDL lane. `None` then.
    fn steady_client_input(&mut self) -> Result<Option<bool>, SessionError> {
        let heavy = holds_large_sql(
            &self.io.cbuf,
            self.st.c_stream_left,
            self.st.live.config.limits.offload_analysis_bytes,
        );
        self.io.large_message_seen |= heavy;
        if heavy {
            self.pending = Some(Heavy::ClientBytes);
            return Ok(None);
        }
        self.on_client_bytes()?;
        if matches!(
            self.st.lane.step,
            Step::Relay | Step::FactsRead | Step::BoundRead
        ) {
            Ok(Some(true))
        } else {
            // What `after_client_bytes` does next is asynchronous: the event loop resumes
            // there, as after analysis on the blocking pool.
            self.offloaded = Some(Ok(()));
            Ok(None)
        }
    }

    async fn pump(&mut self) -> Result<Option<End>, SessionError> {
        // Created once, not per turn: a turn is one message in each direction, and these
        // futures cost a registration each. The shutdown phase change registers this task's
        // waker once per phase. The login deadline, until the session is ready (then no timer
        // is left registered on the loop: an idle timer wheel costs nothing per turn).
        let mut login = (!self.st.proto.is_ready())
            .then(|| Box::pin(crate::timer::sleep_until(self.login_deadline)));
        'phase: loop {
            let current = self.shared.shutdown.phase();
            let mut changed = self.shared.shutdown.change_from(current);
            loop {
                match current {
                    Phase::Running => {}
                    Phase::Draining if !self.st.proto.is_ready() || self.is_idle() => {
                        return Ok(Some(End::Shutdown));
                    }
                    Phase::Draining => {}
                    Phase::Terminating => return Ok(Some(End::Shutdown)),
                }
                if login.is_some() && self.st.proto.is_ready() {
                    login = None;
                }
                if self.may_go_steady(current) {
                    return Ok(None);
                }
                match self.turn(&mut changed, &mut login).await? {
                    Turn::Continue => {}
                    Turn::PhaseChanged => continue 'phase,
                    Turn::Offload => return Ok(None),
                    Turn::End(end) => return Ok(Some(end)),
                }
            }
        }
    }

    /// One turn of the loop: first what came back from the blocking pool, then waits for the
    /// first of the shutdown phase, the login deadline and the sockets, and serves it.
    async fn turn(
        &mut self,
        changed: &mut crate::shutdown::PhaseChange,
        login: &mut Option<std::pin::Pin<Box<crate::timer::Sleep>>>,
    ) -> Result<Turn, SessionError> {
        if self.offloaded.is_some() {
            self.resume_after_offload().await?;
        }
        if self.upstream_due {
            self.upstream_due = false;
            self.after_upstream_bytes().await?;
        }
        if self.pending.is_some() {
            return Ok(Turn::Offload);
        }
        let read_client = self.io.to_up.bytes() < HIGH_WATER && !self.st.held && !self.preauth_held;
        let read_upstream = self.io.to_client.bytes() < HIGH_WATER;
        self.prepare_turn();
        let ready = self.st.proto.is_ready();
        let io = &mut self.io;
        // The first of these that is ready, in this order (a biased `select!` that polls the
        // sockets and queues directly: this runs several times per round trip).
        let woke = std::future::poll_fn(|cx| {
            if Pin::new(&mut *changed).poll(cx).is_ready() {
                return Poll::Ready(Woke::PhaseChanged);
            }
            if !ready
                && let Some(deadline) = login.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Woke::LoginExpired);
            }
            if io.to_client.has_work()
                && let Poll::Ready(r) = io.to_client.poll_progress(cx, &mut io.cw)
            {
                return Poll::Ready(Woke::WroteClient(r));
            }
            if io.to_up.has_work()
                && let Poll::Ready(r) = io.to_up.poll_progress(cx, &mut io.uw)
            {
                return Poll::Ready(Woke::WroteUpstream(r));
            }
            // A half still waiting with this task's waker is not set up for a read at all.
            if read_upstream
                && !io.ur.is_waiting(cx.waker())
                && let Poll::Ready(r) = poll_read_buf(Pin::new(&mut io.ur), cx, &mut io.ubuf)
            {
                return Poll::Ready(Woke::ReadUpstream(r));
            }
            if read_client
                && !io.cr.is_waiting(cx.waker())
                && let Poll::Ready(r) = poll_read_buf(Pin::new(&mut io.cr), cx, &mut io.cbuf)
            {
                return Poll::Ready(Woke::ReadClient(r));
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::PhaseChanged => return Ok(Turn::PhaseChanged),
            Woke::LoginExpired => {
                return Err(SessionError::LoginTimeout(
                    self.shared.config.limits.login_timeout_ms,
                ));
            }
            Woke::WroteClient(r) => r.map_err(SessionError::ClientIo)?,
            Woke::WroteUpstream(r) => {
                r.map_err(SessionError::UpstreamIo)?;
                if self.io.to_up.is_empty() {
                    self.st.units.forwarded();
                }
            }
            Woke::ReadUpstream(r) => {
                if r.map_err(SessionError::UpstreamIo)? == 0 {
                    return Ok(Turn::End(End::UpstreamClosed));
                }
                self.on_upstream_bytes()?;
                self.check_admitted()?;
                self.after_upstream_bytes().await?;
            }
            Woke::ReadClient(r) => {
                if r.map_err(SessionError::ClientIo)? == 0 {
                    return Ok(Turn::End(End::ClientClosed));
                }
                self.st.units.bytes_read();
                self.client_input().await?;
            }
        }
        Ok(Turn::Continue)
    }

    /// Grows the read buffers before a read and gives back what a burst grew.
    fn prepare_turn(&mut self) {
        if self.io.cbuf.capacity() - self.io.cbuf.len() < READ_CHUNK / 4 {
            self.io.cbuf.reserve(READ_CHUNK);
        }
        if self.io.ubuf.capacity() - self.io.ubuf.len() < READ_CHUNK / 4 {
            self.io.ubuf.reserve(READ_CHUNK);
        }
        self.io.shrink_after_large_messages();
        self.st.shrink_after_large_messages();
    }

    /// Fail closed: a session is never relayed without having been admitted.
    fn check_admitted(&self) -> Result<(), SessionError> {
        if self.st.proto.is_ready() && !self.slot.is_authenticated() {
            return Err(SessionError::UpstreamProtocol(
                "ReadyForQuery without AuthenticationOk".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether upstream bytes just relayed leave something for `after_upstream_bytes`.
    fn upstream_tail_due(&self) -> bool {
        (self.preauth_held && self.st.proto.is_ready())
            || self.epilogue_due()
            || (self.st.held && self.st.proto.owed() == 0)
    }

    /// A DDL's epilogue is waiting and may run now: everything forwarded was answered.
    fn epilogue_due(&self) -> bool {
        self.st.proto.all_answered()
            && self
                .st
                .lane
                .epilogue
                .as_ref()
                .is_some_and(|e| e.can_run(self.st.proto.tx()))
    }

    /// What follows upstream bytes: client bytes held until login completed are looked at, a
    /// DDL's epilogue runs once its statement is answered, and a message held until the
    /// server is idle is decided.
    async fn after_upstream_bytes(&mut self) -> Result<(), SessionError> {
        if self.preauth_held && self.st.proto.is_ready() {
            // Authenticated and ready (server parameters known): what the client sent
            // meanwhile is read and analysed now.
            self.preauth_held = false;
            self.client_input().await?;
        }
        if self.epilogue_due()
            && let Some(epilogue) = self.st.lane.epilogue.take()
        {
            self.io.drain_client().await?;
            let span = self.st.span.clone();
            self.run_epilogue(epilogue).instrument(span).await?;
            // Client bytes that arrived meanwhile were kept for the relay.
            if !self.st.held && !self.io.cbuf.is_empty() {
                self.client_input().await?;
            }
        }
        if self.st.held && self.st.proto.owed() == 0 {
            // The server is idle: decide the held message now.
            self.st.held = false;
            self.client_input().await?;
        }
        Ok(())
    }

    /// Processes buffered client bytes; a DDL Query that must run under the lock guard is run
    /// here, to completion, before the bytes after it are looked at.
    async fn client_input(&mut self) -> Result<(), SessionError> {
        loop {
            // A large Query/Parse is analysed whole off the event loop, so that other
            // sessions on this loop are not delayed by it.
            let heavy = holds_large_sql(
                &self.io.cbuf,
                self.st.c_stream_left,
                self.st.live.config.limits.offload_analysis_bytes,
            );
            self.io.large_message_seen |= heavy;
            if heavy && !in_place_offload() {
                self.pending = Some(Heavy::ClientBytes);
                return Ok(());
            }
            offload(heavy, || self.on_client_bytes())?;
            if !self.after_client_bytes().await? {
                return Ok(());
            }
        }
    }

    /// Acts on what `on_client_bytes` left to do: read catalog facts, run a DDL under the lock
    /// guard. True when the client bytes are to be looked at again.
    async fn after_client_bytes(&mut self) -> Result<bool, SessionError> {
        if matches!(
            self.st.lane.step,
            Step::Relay | Step::FactsRead | Step::BoundRead
        ) {
            // Nothing for the lane (the common case, checked without moving the step out).
            return Ok(false);
        }
        let pending = match std::mem::take(&mut self.st.lane.step) {
            Step::NeedsFacts => {
                if self.precomputed_requests.is_none()
                    && !in_place_offload()
                    && self.facts_are_heavy()
                {
                    self.st.lane.step = Step::NeedsFacts;
                    self.pending = Some(Heavy::CatalogRequests);
                    return Ok(false);
                }
                let span = self.st.span.clone();
                self.read_facts().instrument(span).await?;
                self.st.lane.step = Step::FactsRead;
                return Ok(true);
            }
            Step::Guard(pending) => pending,
            Step::BoundBind(unit) => {
                let span = self.st.span.clone();
                self.examine_bind(unit).instrument(span).await?;
                return Ok(true);
            }
            Step::Refuse(refusal) => {
                let span = self.st.span.clone();
                self.refuse_unit(refusal).instrument(span).await?;
                return Ok(true);
            }
            step => {
                self.st.lane.step = step;
                return Ok(false);
            }
        };
        // Whatever was queued (notices) goes out first.
        self.io.drain_client().await?;
        let span = self.st.span.clone();
        self.run_guarded(pending).instrument(span).await?;
        if !self.io.to_client.is_empty() {
            self.io
                .to_client
                .write_now(&mut self.io.cw)
                .map_err(SessionError::ClientIo)?;
        }
        Ok(true)
    }

    /// Does the pending heavy work on the runtime's blocking pool, the whole relay moved there
    /// and back: the event loop serves its other sessions meanwhile.
    async fn offload_heavy(mut self) -> Relay {
        let Some(heavy) = self.pending.take() else {
            return self;
        };
        let joined = tokio::task::spawn_blocking(move || {
            match heavy {
                Heavy::ClientBytes => self.offloaded = Some(self.on_client_bytes()),
                Heavy::CatalogRequests => {
                    self.precomputed_requests = Some(self.catalog_requests());
                    self.offloaded = Some(Ok(()));
                }
            }
            self
        })
        .await;
        match joined {
            Ok(relay) => relay,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Back from the blocking pool: acts on the result, then goes on with the client's bytes.
    async fn resume_after_offload(&mut self) -> Result<(), SessionError> {
        if let Some(result) = self.offloaded.take() {
            result?;
            if self.after_client_bytes().await? {
                self.client_input().await?;
            }
        }
        Ok(())
    }

    /// The server is waiting for the client and nothing is in flight: a safe point to close.
    fn is_idle(&self) -> bool {
        self.st.proto.is_ready()
            && self.st.proto.tx() == TxStatus::Idle
            && self.st.proto.owed() == 0
            && self.st.u_stream_left == 0
            && self.io.to_up.is_empty()
    }

    /// A statement may be executing upstream on the client's behalf.
    fn statement_running(&self) -> bool {
        self.st.proto.is_ready() && self.st.proto.owed() > 0
    }

    /// The byte stream to the client is at a message boundary, so a message may be appended.
    fn client_at_boundary(&self) -> bool {
        self.st.u_stream_left == 0
    }

    /// Cuts client bytes into frames, analyses SQL, counts protocol units, and queues the frames
    /// for the upstream as one zero-copy chunk.
    fn on_client_bytes(&mut self) -> Result<(), SessionError> {
        // Reloadable settings, as of this session's last look at the live configuration. The
        // configuration itself is shared by every session: values are read out of it, and its
        // reference count is never touched per message (an atomic on a cache line every loop
        // writes).
        let (max_message_bytes, max_statement_bytes) = {
            let limits = &self.st.live.config.limits;
            (limits.max_message_bytes, limits.max_statement_bytes)
        };
        let counters = &self.shared.counters;
        let (io, st) = (&mut self.io, &mut self.st);
        let mut run = 0usize;
        loop {
            if st.c_stream_left > 0 {
                let n = st.c_stream_left.min(io.cbuf.len() - run);
                run += n;
                st.c_stream_left -= n;
                if st.c_stream_left > 0 {
                    break;
                }
                continue;
            }
            if let Some(left) = st.lane.skip_to_sync.as_mut()
                && *left > 0
            {
                // The rest of a message of a unit being skipped (below), dropped as it arrives.
                let n = (*left).min(io.cbuf.len());
                io.cbuf.advance(n);
                *left -= n;
                if *left > 0 {
                    break;
                }
                continue;
            }
            if !st.proto.is_ready() {
                // Before the session is ready only authentication messages are read; nothing
                // else is analysed, forwarded or buffered beyond this one read.
                match preauth::gate(&io.cbuf[run..]) {
                    Gate::Pass { .. } => {}
                    Gate::NeedHeader => break,
                    Gate::Hold => {
                        self.preauth_held = true;
                        break;
                    }
                    Gate::Refuse(refusal) => return Err(refusal.into()),
                }
            }
            let rest = &io.cbuf[run..];
            let (tag, total) = match framing::scan(rest, max_message_bytes) {
                Ok(Frame::NeedHeader) => break,
                Ok(Frame::Header { tag, total }) => (tag, total),
                Err(FrameError::TooLarge { tag, len, limit }) => {
                    return Err(SessionError::MessageTooLarge {
                        tag: tag as char,
                        len,
                        limit,
                    });
                }
                Err(FrameError::BadLength { tag, declared }) => {
                    return Err(SessionError::ClientProtocol(format!(
                        "invalid message length {declared} for message type '{}'",
                        tag.escape_ascii()
                    )));
                }
            };
            let body_len = total - 1;
            let available = rest.len();
            if let Some(left) = st.lane.skip_to_sync.as_mut() {
                // The lane answered this unit's first message with an error (`ddl::Sent`): the
                // server would skip everything up to Sync, so ddlgate drops it, unread and
                // unforwarded, as it arrives (a Terminate still ends the session). The skip
                // began at the front of the buffer and forwards nothing: `run` is 0.
                debug_assert_eq!(run, 0, "nothing is forwarded while a unit is skipped");
                match tag {
                    frontend::TERMINATE => st.lane.skip_to_sync = None,
                    // A Sync has no body. One declaring a length is malformed (a server refuses
                    // it too); it is not waited for whole, which would hold up to
                    // `limits.max_message_bytes` of a message that is only dropped.
                    frontend::SYNC if total != SYNC_FRAME => {
                        return Err(SessionError::ClientProtocol(format!(
                            "invalid message length {} for message type 'S'",
                            total - 1
                        )));
                    }
                    frontend::SYNC if available < total => {
                        io.cbuf.reserve(total - available);
                        break;
                    }
                    frontend::SYNC => {
                        io.cbuf.advance(total);
                        st.lane.skip_to_sync = None;
                        // The unit was the lane's to answer, as a lone unit taken whole is.
                        st.proto.unit_taken();
                        counters.extended_units.increment(1);
                        io.to_client
                            .push(responses::ready_for_query(st.proto.tx()).freeze());
                        continue;
                    }
                    _ => {
                        let n = total.min(available);
                        io.cbuf.advance(n);
                        *left = total - n;
                        continue;
                    }
                }
            }
            st.extended_used |= tag == frontend::PARSE || tag == frontend::BIND;
            match tag {
                frontend::QUERY | frontend::PARSE => {
                    if body_len > max_statement_bytes {
                        return Err(SessionError::MessageTooLarge {
                            tag: tag as char,
                            len: body_len,
                            limit: max_statement_bytes,
                        });
                    }
                    // Read now, as of before the analysis below refreshes the configuration
                    // (no reference count taken: `live` is shared by every session).
                    let catalog_enabled = st.live.config.catalog.enabled;
                    let max_tracked = st.live.config.guard.max_tracked_statements;
                    if available < total {
                        io.cbuf.reserve(total - available);
                        break;
                    }
                    let frame = &rest[..total];
                    // After a statement that may change how SQL is lexed, a message whose
                    // lexing depends on it waits until the server has answered.
                    if st.proto.all_answered() {
                        // Everything forwarded was answered (also by the guard's own loop).
                        st.lex_barrier = false;
                    }
                    let lexing_unknown = st.lex_barrier && lexing_sensitive(framing::body(frame));
                    if lexing_unknown && st.proto.owed() > 0 {
                        st.held = true;
                        break;
                    }
                    if st.proto.owed() > 0 && st.must_wait_for_idle(tag, framing::body(frame)) {
                        st.held = true;
                        break;
                    }
                    // The guard runs its own statements first: only with the server idle and
                    // able to run them (not in a failed transaction).
                    // DDL at a statement boundary: read the catalog facts its decision needs
                    // first (`client_input` does, then comes back here).
                    if !matches!(st.lane.step, Step::FactsRead)
                        && run == 0
                        && st.may_inject()
                        && (catalog_enabled || st.profile.backfill.enabled)
                        && st.must_wait_for_idle(tag, framing::body(frame))
                    {
                        st.lane.step = Step::NeedsFacts;
                        break;
                    }
                    // Facts read, or none needed: the message is decided now.
                    st.lane.step = Step::Relay;
                    let bound_unit = st.lane.bound_unit.take();
                    let bound_later = st.lane.bound_later.take();
                    let may_guard = run == 0 && st.may_inject();
                    let hooked = if lexing_unknown {
                        // Inside an open extended-protocol unit the server answers nothing
                        // before Sync: the settings cannot be known, so refuse.
                        Some(lexing_refusal(tag, framing::body(frame)))
                    } else {
                        let hooked =
                            st.on_client_sql(&self.shared, counters, tag, framing::body(frame));
                        if tag == frontend::PARSE {
                            st.track_parse(framing::body(frame), hooked, max_tracked)
                        } else {
                            hooked
                        }
                    };
                    // The backfill guard read the estimate with the unit's own parameter
                    // values and blocks it: the whole unit is answered by ddlgate, nothing of it
                    // forwarded (`ddl::bound`).
                    if let (Some(len), Some(h)) = (bound_unit, hooked.as_ref())
                        && tag == frontend::PARSE
                        && may_guard
                        && len <= io.cbuf.len()
                        && let Some(raise) = h.frame.as_ref().and_then(|f| {
                            frontend::Parse::decode(framing::body(f)).map(|p| p.sql.to_vec())
                        })
                    {
                        let unnamed = frontend::Parse::decode(framing::body(frame))
                            .is_some_and(|p| p.name.is_empty());
                        for n in hooked.map(|h| h.notices).unwrap_or_default() {
                            io.to_client.push(n.freeze());
                        }
                        let _ = io.cbuf.split_to(len);
                        st.proto.unit_taken();
                        st.proto.command_taken();
                        counters.extended_units.increment(1);
                        st.lane.step = Step::Refuse(super::ddl::Refusal {
                            sql: raise,
                            unnamed,
                        });
                        break;
                    }
                    // A statement with parameters prepared for later Binds: kept, so that
                    // each Bind executing it is examined with its values.
                    if bound_unit.is_some() {
                        st.bound_examined_unit = Some(st.proto.units_begun());
                    }
                    if let Some(at) = bound_later {
                        let as_is = hooked.as_ref().is_none_or(|h| h.frame.is_none());
                        let kept = as_is && st.remember_bound(framing::body(frame), at);
                        if !kept && bound_unit.is_none() {
                            counters.backfill.parameters.increment(1);
                        }
                    }
                    if let Some(Hooked {
                        notices,
                        frame: replacement,
                        guard,
                        recipe,
                        journal,
                    }) = hooked
                    {
                        // A Parse that starts a lone unit outside a transaction block runs in
                        // the DDL lane like a simple Query (`relay/lone.rs`); only a message
                        // the hook acts on is looked at, ordinary traffic never.
                        let shape = if tag == frontend::PARSE
                            && may_guard
                            && st.proto.tx() == TxStatus::Idle
                        {
                            lone::recognise(&io.cbuf[run..], max_message_bytes)
                        } else {
                            Shape::Other
                        };
                        // Say the notices, forward what came before unchanged, then the
                        // replacement instead of the client's frame (or the frame itself when
                        // there are only notices).
                        for n in notices {
                            io.to_client.push(n.freeze());
                        }
                        if run > 0 {
                            io.to_up.push(io.cbuf.split_to(run).freeze());
                            run = 0;
                        }
                        let original = io.cbuf.split_to(total).freeze();
                        // A replaced statement may be a raising block (rewrites are not, and
                        // their errors are not ddlgate's: see `without_raise_context`).
                        st.raised_block |= replacement.is_some() || recipe.is_some();
                        let mut frame = replacement.unwrap_or(original);
                        let prepare_only = matches!(shape, Shape::PrepareOnly { .. });
                        let lone = match shape {
                            Shape::Lone(u) => Some(u),
                            _ => None,
                        };
                        if let Some(recipe) = recipe {
                            if may_guard && (tag == frontend::QUERY || lone.is_some()) {
                                // The steps run instead of the statement (`run_guarded`).
                                let unit = lone.map(|u| take_unit(io, st, counters, &mut frame, u));
                                st.proto.command_taken();
                                st.lane.step = Step::Guard(PendingGuard {
                                    frame,
                                    plan: guard.unwrap_or_default(),
                                    tag,
                                    recipe: Some(recipe),
                                    unit,
                                });
                                break;
                            }
                            if prepare_only {
                                // Prepared, not executed: the statement is prepared as written
                                // and its steps run when a lone unit executes it
                                // (`prepared`), or it is refused then.
                                st.recipe_when_prepared(framing::body(&frame), &recipe);
                            } else {
                                // Steps need an idle server and a unit of their own: refuse
                                // rather than run the statement as written.
                                frame = refusal_frame(tag, framing::body(&frame), &recipe);
                            }
                        }
                        // The undo journal is written in the lane: a simple Query or a lone
                        // unit goes there even when the guard has nothing to do.
                        let journal = journal && (tag == frontend::QUERY || lone.is_some());
                        let guard = if journal {
                            Some(guard.unwrap_or_default())
                        } else {
                            guard
                        };
                        match guard.filter(|g| {
                            may_guard && (journal || g.is_needed(&st.live.config.guard))
                        }) {
                            Some(plan) => {
                                // The relay stops here; `client_input` runs it under the guard.
                                let unit = lone.map(|u| take_unit(io, st, counters, &mut frame, u));
                                st.proto.command_taken();
                                st.lane.step = Step::Guard(PendingGuard {
                                    frame,
                                    plan,
                                    tag,
                                    recipe: None,
                                    unit,
                                });
                                break;
                            }
                            None => {
                                st.on_client_tag(counters, tag);
                                io.to_up.push(frame);
                            }
                        }
                        continue;
                    }
                    st.on_client_tag(counters, tag);
                    run += total;
                    continue;
                }
                frontend::BIND if available >= total && !st.prepared.is_empty() => {
                    let statement = frontend::Bind::decode(framing::body(&rest[..total]))
                        .map(|bind| bind.statement.to_vec());
                    if let Some(statement) = statement {
                        if let Some(lexing) = st.prepared.settings_effect(&statement) {
                            st.settings_gen += 1;
                            st.lex_barrier |= lexing;
                        }
                        // A kept UPDATE/DELETE/MERGE with parameters: its estimate is read with
                        // the values bound, before anything of the unit is forwarded.
                        let examined = matches!(st.lane.step, Step::BoundRead);
                        if examined {
                            // Examined and allowed (`ddl::bound`): forwarded.
                            st.lane.step = Step::Relay;
                        } else if st.examines_bind(&statement) {
                            if run == 0 && st.may_inject() {
                                match bound::recognise(rest, max_message_bytes) {
                                    Some(u)
                                        if u.parse_len == 0 && u.bind.1 <= max_statement_bytes =>
                                    {
                                        st.lane.step = Step::BoundBind(u);
                                        break;
                                    }
                                    _ => counters.backfill.parameters.increment(1),
                                }
                            } else if !st.proto.unit_open() && st.proto.owed() > 0 {
                                // It begins a unit while earlier ones still run: it waits for
                                // the server to be idle.
                                st.held = true;
                                break;
                            } else if (st.proto.unit_open()
                                && st.bound_examined_unit == Some(st.proto.units_begun()))
                                || st.proto.tx() == TxStatus::Failed
                            {
                                // The Bind of a unit whose Parse was examined with its values;
                                // in a failed transaction the server refuses it.
                            } else {
                                counters.backfill.parameters.increment(1);
                            }
                        }
                        let may_guard = run == 0 && st.may_inject();
                        // A Bind that starts a lone unit outside a transaction block runs in
                        // the DDL lane like a simple Query (`relay/lone.rs`).
                        let lone = match may_guard
                            && st.proto.tx() == TxStatus::Idle
                            && st.prepared.tracks_ddl(&statement)
                        {
                            true => match lone::recognise(rest, max_message_bytes) {
                                Shape::Lone(u) if u.parse_len == 0 => Some(u),
                                _ => None,
                            },
                            false => None,
                        };
                        let bound = match st.on_bind(&self.shared, counters, &statement) {
                            Ok(hook::Bound {
                                recipe: Some(recipe),
                                ..
                            }) if lone.is_none() => {
                                Err(crate::act::BlockError::steps_need_simple_query(
                                    recipe.kind.title(),
                                    &recipe.describe(),
                                ))
                            }
                            other => other,
                        };
                        match bound {
                            Err(err) => {
                                // The server fails the unit itself and discards up to Sync, so
                                // the protocol state stays exactly the server's.
                                let fresh = run == 0 && st.proto.all_answered();
                                if run > 0 {
                                    io.to_up.push(io.cbuf.split_to(run).freeze());
                                    run = 0;
                                }
                                let original = io.cbuf.split_to(total);
                                let bind = frontend::Bind::decode(framing::body(&original))
                                    .expect("invariant: this Bind was decoded above");
                                if fresh {
                                    // First in its unit, nothing else unanswered: the portal
                                    // is bound to ddlgate's raising statement (in the unnamed
                                    // statement), whose ParseComplete — the next reply — the
                                    // client does not see. Its Execute fails with the error.
                                    io.to_up.push(
                                        frontend::Bind::to_new_statement(
                                            bind.portal,
                                            &err.to_sql(),
                                        )
                                        .expect("invariant: a raise block holds no NUL"),
                                    );
                                    st.raised_block = true;
                                    st.swallow_parse_complete = true;
                                } else {
                                    // Replies of earlier messages are still due: the Bind is
                                    // pointed at a statement that does not exist (26000); the
                                    // notice says why.
                                    io.to_client.push(
                                        crate::act::notice(
                                            "WARNING",
                                            &err.message,
                                            Some(&err.detail),
                                            Some(&err.hint),
                                        )
                                        .freeze(),
                                    );
                                    io.to_up.push(
                                        bind.pointed_at(
                                            refused_statement_name(&statement, st.refusal_nonce)
                                                .as_bytes(),
                                        ),
                                    );
                                }
                                st.on_client_tag(counters, tag);
                                continue;
                            }
                            Ok(hook::Bound { plan, recipe }) => {
                                // A Bind of a prepared DDL statement starts a unit the guard
                                // runs around (all of it, when it is a lone unit), or whose
                                // statement runs as safe steps.
                                let needed = plan.as_ref().is_some_and(|g| {
                                    may_guard && g.is_needed(&st.live.config.guard)
                                });
                                if needed || recipe.is_some() {
                                    st.proto.note_unit_kind(UnitKind::Ddl);
                                    let (frame, unit) = match lone {
                                        Some(u) => {
                                            st.proto.unit_taken();
                                            counters.extended_units.increment(1);
                                            (io.cbuf.split_to(u.len).freeze(), Some(u))
                                        }
                                        None => (io.cbuf.split_to(total).freeze(), None),
                                    };
                                    st.proto.command_taken();
                                    st.lane.step = Step::Guard(PendingGuard {
                                        frame,
                                        plan: plan.unwrap_or_default(),
                                        tag,
                                        recipe,
                                        unit,
                                    });
                                    break;
                                }
                            }
                        }
                    }
                }
                frontend::CLOSE if available >= total => {
                    // Close('S', name) frees the statement's tracking slot once it succeeds.
                    if let Some(close) = frontend::Close::decode(framing::body(&rest[..total]))
                        && close.kind == frontend::Close::STATEMENT
                        && (st.prepared.tracks_ddl(close.name)
                            || st.prepared.settings_effect(close.name).is_some())
                    {
                        st.units
                            .untrack_pending
                            .push(st.prepared.untrack_request(Some(close.name)));
                    }
                }
                frontend::PASSWORD if body_len > MAX_AUTH_MESSAGE + 4 => {
                    return Err(SessionError::MessageTooLarge {
                        tag: 'p',
                        len: body_len,
                        limit: MAX_AUTH_MESSAGE + 4,
                    });
                }
                frontend::PASSWORD if st.channel_binding.awaits_initial_response() => {
                    // The SASLInitialResponse after a stripped mechanism list: only its
                    // channel-binding flag is read.
                    if available < total {
                        io.cbuf.reserve(total - available);
                        break;
                    }
                    st.channel_binding
                        .on_initial_response(framing::body(&rest[..total]))?;
                }
                _ => {}
            }
            st.on_client_tag(counters, tag);
            if available >= total {
                run += total;
            } else {
                // Stream the rest of this message as it arrives; it is never held whole.
                run += available;
                st.c_stream_left = total - available;
                break;
            }
        }
        if run > 0 {
            io.to_up.push(io.cbuf.split_to(run).freeze());
            // On the steady relay (halves detached) its next turn writes.
            if io.uw.is_attached() {
                io.to_up
                    .write_now(&mut io.uw)
                    .map_err(SessionError::UpstreamIo)?;
                if io.to_up.is_empty() {
                    st.units.forwarded();
                }
            }
        }
        Ok(())
    }

    /// Cuts upstream bytes into frames, tracks transaction status and parameters, and queues the
    /// frames for the client as one zero-copy chunk.
    fn on_upstream_bytes(&mut self) -> Result<(), SessionError> {
        let limit = self.st.live.config.limits.max_message_bytes;
        let (io, st) = (&mut self.io, &mut self.st);
        let mut run = 0usize;
        loop {
            if st.u_stream_left > 0 {
                let n = st.u_stream_left.min(io.ubuf.len() - run);
                run += n;
                st.u_stream_left -= n;
                if st.u_stream_left > 0 {
                    break;
                }
                continue;
            }
            let rest = &io.ubuf[run..];
            let (tag, total) = match framing::scan(rest, limit) {
                Ok(Frame::NeedHeader) => break,
                Ok(Frame::Header { tag, total }) => (tag, total),
                Err(e) => return Err(SessionError::UpstreamProtocol(format!("{e:?}"))),
            };
            let available = rest.len();
            if tag == backend::AUTHENTICATION
                && !st.proto.is_ready()
                && total == preauth::AUTHENTICATION_OK_FRAME
                && !self.slot.is_authenticated()
            {
                if available < total {
                    io.ubuf.reserve(total - available);
                    break;
                }
                if preauth::is_authentication_ok(framing::body(&rest[..total])) {
                    // The client is who it says: it now counts against `max_clients`, or, when
                    // those are all taken, gets FATAL 53300 instead of its AuthenticationOk.
                    self.slot
                        .authenticate(&self.shared.slots)
                        .map_err(SessionError::TooManyClients)?;
                    tracing::debug!("authenticated");
                }
            }
            if tag == backend::AUTHENTICATION
                && !st.proto.is_ready()
                && st.channel_binding.filters()
                && total <= MAX_AUTH_MESSAGE
            {
                if available < total {
                    io.ubuf.reserve(total - available);
                    break;
                }
                let body = framing::body(&rest[..total]);
                if let Some(frame) = st.channel_binding.on_authentication(body) {
                    // SCRAM-SHA-256-PLUS removed: what came before goes as is, then the
                    // rewritten list instead of the server's.
                    if run > 0 {
                        io.to_client.push(io.ubuf.split_to(run).freeze());
                        run = 0;
                    }
                    io.ubuf.advance(total);
                    io.to_client.push(frame);
                    continue;
                }
            }
            if st.swallow_parse_complete {
                match tag {
                    backend::PARSE_COMPLETE if available < total => {
                        io.ubuf.reserve(total - available);
                        break;
                    }
                    backend::PARSE_COMPLETE => {
                        st.swallow_parse_complete = false;
                        if run > 0 {
                            io.to_client.push(io.ubuf.split_to(run).freeze());
                            run = 0;
                        }
                        io.ubuf.advance(total);
                        continue;
                    }
                    // The Parse failed (e.g. in a failed transaction): the error is the
                    // client's to see, and there is no ParseComplete.
                    backend::ERROR_RESPONSE | backend::READY_FOR_QUERY => {
                        st.swallow_parse_complete = false
                    }
                    // Asynchronous messages (notices, notifications, parameter status) may
                    // come first.
                    _ => {}
                }
            }
            if tag == backend::ERROR_RESPONSE && st.raised_block {
                if available < total {
                    io.ubuf.reserve(total - available);
                    break;
                }
                let body = framing::body(&rest[..total]);
                if let Some(frame) = crate::act::without_raise_context(body) {
                    st.on_upstream_message(&self.shared, self.upstream_addr, tag, body)?;
                    if run > 0 {
                        io.to_client.push(io.ubuf.split_to(run).freeze());
                        run = 0;
                    }
                    io.ubuf.advance(total);
                    io.to_client.push(frame.freeze());
                    continue;
                }
            }
            let inspected = matches!(
                tag,
                backend::READY_FOR_QUERY
                    | backend::PARAMETER_STATUS
                    | backend::BACKEND_KEY_DATA
                    | backend::ERROR_RESPONSE
            );
            if inspected {
                if available < total {
                    io.ubuf.reserve(total - available);
                    break;
                }
                st.on_upstream_message(
                    &self.shared,
                    self.upstream_addr,
                    tag,
                    framing::body(&rest[..total]),
                )?;
                run += total;
            } else if available >= total {
                run += total;
            } else {
                run += available;
                st.u_stream_left = total - available;
                break;
            }
        }
        if run > 0 {
            io.to_client.push(io.ubuf.split_to(run).freeze());
            if io.cw.is_attached() {
                io.to_client
                    .write_now(&mut io.cw)
                    .map_err(SessionError::ClientIo)?;
            }
        }
        Ok(())
    }

    /// Ends the session according to how the loop stopped.
    async fn finish(&mut self, outcome: Result<End, SessionError>) -> Result<(), SessionError> {
        match outcome {
            Ok(End::ClientClosed) => {
                if self.st.proto.terminated() {
                    // Orderly: make sure the Terminate itself reaches the server.
                    self.last_words_upstream().await;
                } else {
                    self.client_vanished().await;
                }
                Ok(())
            }
            Ok(End::UpstreamClosed) => {
                if self.st.proto.terminated() || self.st.upstream_sent_fatal {
                    self.last_words_client(None).await;
                    return Ok(());
                }
                let partial = !self.io.ubuf.is_empty();
                self.last_words_client(if partial {
                    None
                } else {
                    Some(responses::upstream_lost())
                })
                .await;
                Err(SessionError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            // The guard's waits and ddlgate's own queries end with this error on termination.
            Ok(End::Shutdown) | Err(SessionError::Shutdown) => {
                tracing::info!(
                    tx = self.st.proto.tx().as_str(),
                    running = self.statement_running(),
                    "closing session for shutdown"
                );
                self.cancel_if_running("shutdown").await;
                self.last_words_client(Some(responses::admin_shutdown()))
                    .await;
                self.say_terminate_upstream().await;
                Ok(())
            }
            Err(e @ SessionError::ClientIo(_)) => {
                self.client_vanished().await;
                Err(e)
            }
            Err(e @ SessionError::UpstreamIo(_)) => {
                // After the server's own FATAL (relayed by the side channel) nothing is added.
                let lost = (!self.st.upstream_sent_fatal).then(responses::upstream_lost);
                self.last_words_client(lost).await;
                Err(e)
            }
            Err(e) => {
                // The client broke the protocol or a limit: it gets a FATAL, and whatever it had
                // running is cancelled so no lock outlives the session.
                self.cancel_if_running("client error").await;
                self.last_words_client(e.to_client_response()).await;
                self.say_terminate_upstream().await;
                Err(e)
            }
        }
    }

    /// The client disappeared without Terminate. PostgreSQL does not notice a vanished client
    /// while it executes a statement, so a running statement (and its locks) would outlive the
    /// client: cancel it, then close the upstream so any open transaction rolls back.
    async fn client_vanished(&mut self) {
        self.cancel_if_running("client disconnected").await;
        self.say_terminate_upstream().await;
    }

    async fn cancel_if_running(&mut self, why: &str) {
        if !self.statement_running() {
            return;
        }
        let Some(key) = self.st.cancel_key.clone() else {
            return;
        };
        tracing::info!(
            reason = why,
            pid = key.pid,
            "cancelling the statement running upstream"
        );
        self.shared.connections.cancels_on_client_loss.increment(1);
        super::send_cancel(&self.shared, self.upstream_addr, &key).await;
    }

    /// Best effort: queue `msg` (if the client stream is at a message boundary) and write
    /// everything queued for the client, bounded in time.
    async fn last_words_client(&mut self, msg: Option<BytesMut>) {
        if let Some(msg) = msg.filter(|_| self.client_at_boundary()) {
            self.io.to_client.push(msg.freeze());
        }
        let io = &mut self.io;
        let _ = crate::timer::timeout(LAST_WORDS_TIMEOUT, async {
            io.to_client.drain_to(&mut io.cw).await?;
            io.cw.shutdown().await
        })
        .await;
    }

    /// Best effort: write what is queued for the upstream, bounded in time.
    async fn last_words_upstream(&mut self) {
        let io = &mut self.io;
        let _ = crate::timer::timeout(LAST_WORDS_TIMEOUT, io.to_up.drain_to(&mut io.uw)).await;
    }

    /// Ends the upstream session politely with Terminate when the stream is at a message
    /// boundary, so the server logs no "unexpected EOF"; the socket is closed either way.
    async fn say_terminate_upstream(&mut self) {
        if self.st.proto.is_ready() && self.st.c_stream_left == 0 {
            self.io.to_up.push(frontend::terminate());
        }
        self.last_words_upstream().await;
        let _ = self.io.uw.shutdown().await;
        // Wait briefly for the server to close, so the backend is gone when the session ends.
        let mut sink = [0u8; 1024];
        let _ = crate::timer::timeout(LAST_WORDS_TIMEOUT, async {
            while self.io.ur.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        })
        .await;
    }
}

impl Io {
    /// Writes everything queued for the client, and waits until it is written: before the
    /// session does something of its own that the client must not see ahead of it.
    pub(in crate::session) async fn drain_client(&mut self) -> Result<(), SessionError> {
        self.to_client
            .drain_to(&mut self.cw)
            .await
            .map_err(SessionError::ClientIo)
    }

    /// Gives back read buffers a large message grew, once it is gone (a `BytesMut` keeps its
    /// largest allocation otherwise, and reuses it for every later message of the session),
    /// and the queues' chunk lists.
    fn shrink_after_large_messages(&mut self) {
        let mut released = false;
        // What is left of the read buffer after a large message was split off still points
        // into that message's allocation and keeps all of it alive: start a fresh buffer once
        // the message itself has been written.
        if self.large_message_seen && self.cbuf.len() < READ_CHUNK && self.to_up.is_empty() {
            self.large_message_seen = false;
            self.cbuf = fresh_buffer(&self.cbuf);
            released = true;
        }
        for buf in [&mut self.cbuf, &mut self.ubuf] {
            if buf.capacity() > BUFFER_KEPT_MAX && buf.len() < READ_CHUNK {
                *buf = fresh_buffer(buf);
                released = true;
            }
        }
        self.to_up.shrink();
        self.to_client.shrink();
        if released {
            release_free_memory();
        }
    }
}

/// A read buffer of the ordinary size holding a copy of `old`'s bytes.
fn fresh_buffer(old: &[u8]) -> BytesMut {
    let mut small = BytesMut::with_capacity(READ_CHUNK.max(old.len()));
    small.extend_from_slice(old);
    small
}

/// Allocations at least this large are always mapped on their own by glibc, and unmapped when
/// freed. Read buffers (`READ_CHUNK`) and ordinary messages stay below it.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Makes glibc give large allocations back to the OS when they are freed. By default glibc
/// raises its mmap threshold to the size of each large block freed (up to 32 MiB), so after
/// one 10 MB message the next ones come from the heap, whose freed memory stays resident.
/// Measured with the real binary: three sessions kept ~31 MB after 10 MB messages with the
/// default, under 1 MB with a fixed threshold. Setting it fixes the threshold (no dynamic
/// adjustment); done once per process, before the first session allocates anything large.
fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe and has no
        // preconditions.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    });
}

/// Asks the allocator to return free memory to the operating system: what a large message's
/// buffers and analysis left free in the heap below the mmap threshold. Called only after a
/// large message, so its cost (a walk of the heap) is rare.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heap; it has no
    // preconditions and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes the rest of a lone unit whose first message (`frame`, the Parse as it is to be
/// sent) was split off already: `frame` becomes the whole unit, the protocol state counts the
/// unit as begun, and the unit's description says how long its Parse now is.
fn take_unit(
    io: &mut Io,
    st: &mut State,
    counters: &crate::analysis::Counters,
    frame: &mut Bytes,
    mut u: LoneUnit,
) -> LoneUnit {
    let rest = io.cbuf.split_to(u.len - u.parse_len);
    let mut whole = BytesMut::with_capacity(frame.len() + rest.len());
    whole.extend_from_slice(frame);
    whole.extend_from_slice(&rest);
    u.parse_len = frame.len();
    u.len = whole.len();
    *frame = whole.freeze();
    st.proto.unit_taken();
    counters.extended_units.increment(1);
    u
}

/// Whether the client bytes in `buf` (from `at`, past the rest of a message streaming through)
/// hold a complete Query or Parse of at least `threshold` bytes: one whose analysis is heavy.
/// Only frame headers are read.
fn holds_large_sql(buf: &[u8], mut at: usize, threshold: usize) -> bool {
    while let Some(rest) = buf.get(at..) {
        match framing::scan(rest, usize::MAX) {
            Ok(Frame::Header { tag, total }) if total <= rest.len() => {
                if matches!(tag, frontend::QUERY | frontend::PARSE) && total >= threshold {
                    return true;
                }
                at += total;
            }
            // Incomplete (not analysed before it is whole), or not a frame at all.
            _ => return false,
        }
    }
    false
}

/// Why the steady relay gives a session back for good.
enum Left {
    End(End),
    Failed(SessionError),
}

/// What a read from a non-blocking socket got.
enum Recv {
    /// Bytes, appended to the buffer; `drained`: fewer than it had room for, so the socket is
    /// empty (edge-triggered readiness: new bytes are a new event).
    Got { drained: bool },
    /// The peer closed its side.
    Closed,
}

/// One `recv` into the spare capacity of `buf` (which the caller has made non-empty).
fn recv_into(sock: &std::net::TcpStream, buf: &mut BytesMut) -> std::io::Result<Recv> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let room = spare.len();
    // SAFETY: `recv` writes at most `room` bytes into the spare capacity, memory owned by
    // `buf` that nothing else refers to, and reports how many it wrote; only those are then
    // counted as initialised.
    let n = unsafe { libc::recv(sock.as_raw_fd(), spare.as_mut_ptr().cast(), room, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n.unsigned_abs();
    if n == 0 {
        return Ok(Recv::Closed);
    }
    // SAFETY: `recv` initialised the first `n <= room` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(Recv::Got { drained: n < room })
}

/// Runs `f`, a piece of CPU-bound work on the session's task, off the I/O worker when it is
/// `heavy`: `block_in_place` hands this worker's other tasks to another thread first, so other
/// sessions are not stalled while it runs. Only a multi-thread runtime can do that; on a
/// current-thread runtime (some tests) `f` runs in place.
pub(super) fn offload<R>(heavy: bool, f: impl FnOnce() -> R) -> R {
    if heavy && in_place_offload() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Waits for the login deadline, if there is one still.
/// Heavy work can leave the worker in place (`block_in_place`): a multi-thread runtime. On an
/// event loop (a current-thread runtime) the relay moves to the blocking pool instead
/// ([`Relay::offload_heavy`]).
fn in_place_offload() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl State {
    /// Per-message bookkeeping that a burst of messages grew, given back once it is idle.
    fn shrink_after_large_messages(&mut self) {
        self.units.shrink();
    }

    /// The server is idle at a statement boundary and can run a query of ddlgate's own: no
    /// reply owed, no extended-protocol unit open, the transaction not failed, no guard
    /// settings still to restore.
    fn may_inject(&self) -> bool {
        self.proto.all_answered()
            && self.proto.tx() != TxStatus::Failed
            && self.c_stream_left == 0
            && self
                .lane
                .epilogue
                .as_ref()
                .is_none_or(|e| e.settings_restored())
    }

    /// The transaction status from a ReadyForQuery, with what depends on it: the analyzer's
    /// per-transaction state, the sessions gauge, the dangerous-lock hold time.
    pub(super) fn set_tx_status(&mut self, shared: &Shared, status: TxStatus) {
        self.proto.set_tx(status);
        let idx = match status {
            TxStatus::Idle => 0,
            TxStatus::InTransaction => 1,
            TxStatus::Failed => 2,
        };
        shared.metrics.session_state(self.gauge_state, Some(idx));
        self.gauge_state = Some(idx);
        if status == TxStatus::Idle {
            self.analyzer.transaction_ended();
            if let Some(since) = self.dangerous_since.take() {
                shared
                    .metrics
                    .dangerous_lock_held_seconds
                    .record(since.elapsed().as_secs_f64());
            }
        }
    }

    /// Protocol bookkeeping from a client message's tag (`Tracker`), and what depends on it:
    /// settings a FunctionCall may change, unit timing, the protocol counters.
    pub(super) fn on_client_tag(&mut self, counters: &crate::analysis::Counters, tag: u8) {
        match self.proto.client(tag) {
            ClientEvent::None => {}
            ClientEvent::Query => self.units.started(self.last_kind),
            ClientEvent::FunctionCall => {
                // A function called by OID may change any setting.
                self.settings_gen += 1;
                self.lex_barrier = true;
                self.units.started(UnitKind::Dml);
            }
            ClientEvent::Sync { kind, executes } => {
                self.units.started(kind);
                counters.extended_units.increment(1);
                if executes > 1 {
                    counters.pipelined_units.increment(1);
                }
                tracing::trace!(
                    executes,
                    tx = self.proto.tx().as_str(),
                    "extended-protocol unit complete"
                );
            }
            ClientEvent::CopyEnded { ignored_syncs } => {
                self.units.forget_last(ignored_syncs);
            }
        }
    }

    /// Decodes the few upstream messages ddlgate tracks.
    pub(super) fn on_upstream_message(
        &mut self,
        shared: &Shared,
        upstream_addr: SocketAddr,
        tag: u8,
        body: &[u8],
    ) -> Result<(), SessionError> {
        match tag {
            backend::READY_FOR_QUERY => {
                let status = backend::ready_for_query(body).ok_or_else(|| {
                    SessionError::UpstreamProtocol(
                        "ReadyForQuery with an invalid transaction status".to_owned(),
                    )
                })?;
                self.set_tx_status(shared, status);
                if self.proto.is_ready()
                    && let Some((mut u, error)) = self.units.answered()
                {
                    // The server confirms what the unit closed or deallocated only by
                    // succeeding; after an error it may have skipped it.
                    if !u.error {
                        for x in std::mem::take(&mut u.untrack) {
                            self.prepared.apply(x);
                        }
                    }
                    let now = units::Tick::now();
                    shared.metrics.unit_done(
                        u.kind,
                        u.error,
                        now.since(u.received),
                        now.since(u.sent),
                    );
                    let outcome = if u.error { "error" } else { "ok" };
                    for d in u.audit {
                        shared.audit.write(&d.finish(
                            &self.who,
                            outcome,
                            error.clone(),
                            now.since(u.received),
                            std::time::Duration::ZERO,
                        ));
                    }
                }
                if self.proto.ready_for_query() {
                    tracing::debug!(
                        server_version = self.server.version.as_deref().unwrap_or("?"),
                        "session ready"
                    );
                }
                if self.proto.all_answered() {
                    // Everything forwarded was answered, ParameterStatus included.
                    self.lex_barrier = false;
                }
            }
            backend::PARAMETER_STATUS => {
                self.settings_gen += 1;
                if let Some((name, value)) = backend::parameter_status(body) {
                    self.server.on_parameter_status(name, value);
                }
            }
            backend::BACKEND_KEY_DATA => {
                if let Some(key) = CancelKey::from_backend_key_data(body) {
                    shared.cancel_keys.insert(key.clone(), upstream_addr);
                    if let Some(old) = self.cancel_key.replace(key) {
                        shared.cancel_keys.remove(&old);
                    }
                }
            }
            backend::ERROR_RESPONSE => {
                self.units.error(body);
                if ErrorFields::parse(body).is_fatal() {
                    self.upstream_sent_fatal = true
                }
            }
            _ => {}
        }
        Ok(())
    }
}
