//! The relay: a full-duplex event loop over the client and upstream sockets.
//!
//! One task owns both sockets. Each turn of the loop `select!`s over: shutdown, the login
//! deadline, writing either outbound queue, and reading either socket (each read only while the
//! opposite queue is below its high-water mark — that is the backpressure that bounds memory).
//! Bytes read are cut into frames by their 5-byte headers; frames are forwarded as zero-copy
//! slices of the read buffer, in batches, and only a few kinds are decoded:
//!
//! - client `Query` and `Parse`: taken whole (bounded by `limits.max_statement_bytes`) and their
//!   SQL handed to the analysis hook before they are forwarded — a large one off the I/O worker
//!   (`limits.offload_analysis_bytes`), and one whose lexing depends on a setting an earlier,
//!   unanswered statement may have changed (`standard_conforming_strings`, `client_encoding`)
//!   only once the server has answered that statement;
//! - client `Bind` of a tracked prepared statement (`relay/prepared.rs`): guarded, or decided
//!   again when its context changed since the Parse; `Close`: frees a tracking slot;
//! - client `Sync`, `Execute`, `FunctionCall`, `CopyDone`/`CopyFail`, `Terminate`: only their tag,
//!   to know how many ReadyForQuery messages are owed and where protocol units end;
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
//! Either side may be plain TCP or TLS: the sockets are boxed halves of a `tls::Conn`.
//!
//! Everything else — DataRow, CopyData, Bind, authentication exchanges — streams through
//! undecoded, even when a single message is larger than the read buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

mod guarded;
mod prepared;

use self::guarded::{Epilogue, PendingGuard};
use self::prepared::{DecidedIn, Prepared, Untrack};
use super::outq::OutQueue;
use crate::admission::Slot;
use crate::analysis::{self, Analyzer, Context, Source};
use crate::error::SessionError;
use crate::metrics::UnitKind;
use crate::policy::Profile;
use crate::protocol::framing::{self, Frame, FrameError};
use crate::protocol::preauth::{self, Gate, MAX_AUTH_MESSAGE};
use crate::protocol::startup::CancelKey;
use crate::protocol::{self, ErrorFields, TxStatus, backend, frontend, responses};
use crate::shutdown::Phase;
use crate::sql::{ClientEncoding, LexOptions};
use crate::state::Shared;
use crate::tls::{BoxRead, BoxWrite, ChannelBinding, Conn};

/// Stop reading a peer while this much is queued for the other one.
const HIGH_WATER: usize = 256 * 1024;
/// Read buffers grow by at least this much before a read.
const READ_CHUNK: usize = 64 * 1024;
/// Time allowed for last words (a FATAL, a Terminate) when a session ends.
const LAST_WORDS_TIMEOUT: Duration = Duration::from_secs(1);
/// A read buffer that grew beyond this for a large message is given back once the message is
/// gone, so that an idle session holds its ordinary buffers only.
const BUFFER_KEPT_MAX: usize = 4 * READ_CHUNK;

/// Why the loop stopped without an error.
enum End {
    /// The client closed its socket.
    ClientClosed,
    /// The upstream server closed its socket.
    UpstreamClosed,
    /// ddlgate is shutting down and this session's turn has come.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Startup sent; authentication messages flow until the first ReadyForQuery.
    Auth,
    /// Normal operation.
    Ready,
}

/// Sockets, buffers and queues.
struct Io {
    /// Plain TCP or TLS on either side, behind boxed halves: the framing code never knows which.
    cr: BoxRead,
    cw: BoxWrite,
    ur: BoxRead,
    uw: BoxWrite,
    /// Bytes from the client not yet forwarded (at most one partial frame between turns).
    cbuf: BytesMut,
    /// Bytes from the upstream not yet forwarded.
    ubuf: BytesMut,
    to_up: OutQueue,
    to_client: OutQueue,
    /// A large Query/Parse was analysed: once it is gone, free memory goes back to the OS.
    large_message_seen: bool,
}

/// What the relay knows about the session's protocol state.
struct State {
    stage: Stage,
    /// From the last ReadyForQuery.
    tx: TxStatus,
    /// ReadyForQuery messages owed by the server: one per Query, Sync and FunctionCall
    /// forwarded, minus Syncs the server ignores during COPY FROM STDIN. Zero means the server
    /// is idle, waiting for the client.
    outstanding: u32,
    /// Syncs forwarded since the last Query/Execute/FunctionCall. PostgreSQL ignores Sync while
    /// in copy-in mode (libpq sends one right after the COPY's Execute and another after
    /// CopyDone), so when the client ends a COPY these Syncs are owed no ReadyForQuery.
    syncs_since_command: u32,
    /// Executes in the current extended-protocol unit (up to Sync). More than one means a
    /// pipeline, which the server runs as one implicit transaction.
    unit_executes: u32,
    /// The migration tool driving the session, once known (`crate::tools`), and how many more
    /// statements may be searched for its version table.
    tool: Option<crate::tools::Tool>,
    tool_search_left: u32,
    /// An extended-protocol unit is open: messages sent since the last Sync. ddlgate never
    /// slips a query of its own into an open unit.
    unit_open: bool,
    /// Prepared DDL statements (by name) with what their Parse decided, and statements that
    /// change settings when executed: a later Bind of one of them is guarded, decided again
    /// or marks a settings change. Bounded by `guard.max_tracked_statements`.
    prepared: Prepared,
    /// The last Parse analysed holds a DDL candidate.
    last_parse_ddl: bool,
    /// The last Parse's decision rests on facts that hold only now (`Plan::fresh_facts_only`):
    /// its statement may be executed only in the same protocol unit.
    last_parse_fresh: bool,
    /// Protocol units begun (each Sync and each simple Query ends one): a prepared statement
    /// whose decision rests on fresh facts is decided again when bound in a later one.
    unit_gen: u64,
    /// Slot removals (Close, DEALLOCATE, …) of the message being forwarded, until its unit is
    /// timed; applied when that unit ends without an error.
    untrack_pending: Vec<Untrack>,
    /// A statement that may change how SQL is lexed (`standard_conforming_strings`,
    /// `client_encoding`) was forwarded and the server has not answered it yet: a later
    /// message whose lexing depends on those settings waits for its ReadyForQuery (the
    /// ParameterStatus comes before it).
    lex_barrier: bool,
    /// Bumped by every ParameterStatus and every statement that may change a setting.
    settings_gen: u64,
    /// Bumped whenever a transaction ends.
    tx_gen: u64,
    /// Unpredictable part of the statement name a refused Bind is pointed at.
    refusal_nonce: u64,
    /// ddlgate sent a Parse of its own (a refused Bind's raising statement): the client must
    /// not see its ParseComplete.
    swallow_parse_complete: bool,
    /// ddlgate sent one of its raising `DO` blocks in this session (a prepared one may raise in
    /// any later unit): from then on its errors lose the server's where, file, line and
    /// routine fields (see `act::without_raise_context`).
    raised_block: bool,
    /// Bytes of a client message still streaming through to the upstream.
    c_stream_left: usize,
    /// Bytes of an upstream message still streaming through to the client.
    u_stream_left: usize,
    /// The client said Terminate: a following disconnect is orderly.
    client_terminated: bool,
    /// The upstream already sent a FATAL error (e.g. idle-session timeout, admin shutdown):
    /// its disconnect needs no further explanation.
    upstream_sent_fatal: bool,
    /// The backend's cancel key from BackendKeyData.
    cancel_key: Option<CancelKey>,
    /// How to lex SQL the way the server will, from ParameterStatus.
    lex: LexOptions,
    server_version: Option<String>,
    /// `server_version` as a number, for version-aware rules.
    server_version_num: Option<u32>,
    analyzer: Analyzer,
    /// The session's policy profile, chosen from user, database and application — again after
    /// every configuration reload (`generation`).
    profile: Profile,
    who: crate::audit::SessionInfo,
    /// The live configuration this session last read (limits, guard, catalog, policy).
    live: Arc<crate::state::Live>,
    /// A Query or Parse with DDL arrived while earlier requests were still running: it waits
    /// (unread, in the buffer) until the server is idle, so that its decision sees the true
    /// transaction status and ddlgate's notices are not interleaved with earlier results.
    held: bool,
    /// A decided DDL Query waiting to run under the lock guard.
    pending_guard: Option<PendingGuard>,
    /// Protocol units in flight (one per ReadyForQuery owed), for latency metrics; bounded.
    units: std::collections::VecDeque<UnitTiming>,
    /// Kind of the Query just analysed.
    last_kind: UnitKind,
    /// Kind of the open extended-protocol unit, from its Parse messages so far.
    unit_kind: Option<UnitKind>,
    /// Audit drafts of the message being forwarded, until its unit is timed.
    audit_pending: Vec<crate::audit::Draft>,
    /// The first error of the unit at the front, for the audit log.
    unit_error: Option<String>,
    /// The guarded Query being run: when it arrived, and time lost to lock timeouts.
    guard_timing: (std::time::Instant, std::time::Duration),
    /// The session's slot in the `ddlgate_sessions{tx_state}` gauge.
    gauge_state: Option<usize>,
    /// A DDL statement took SHARE or stronger in the still-open transaction, at this time.
    dangerous_since: Option<std::time::Instant>,
    /// The Query/Parse at the front of the client buffer holds DDL: read the catalog facts
    /// its decision needs first.
    pending_facts: bool,
    /// Facts for the message at the front of the buffer were read (or cannot be): decide it.
    facts_ready: bool,
    /// Settings and advisory locks to put back once the server can run statements again
    /// (after a guarded Query left the transaction failed, or handed over a COPY).
    pending_epilogue: Option<Epilogue>,
    /// Whether SCRAM-SHA-256-PLUS may be offered to this client (TLS termination breaks the
    /// binding unless both legs present the same certificate).
    channel_binding: ChannelBinding,
}

/// At most this many protocol units are timed at once (a client pipelining more is not timed
/// beyond it; nothing else depends on it).
const MAX_TIMED_UNITS: usize = 100_000;

/// One protocol unit on its way, for the latency metrics and the audit log.
#[derive(Debug)]
struct UnitTiming {
    /// DDL decisions taken in it, written to the audit log with its outcome.
    audit: Vec<crate::audit::Draft>,
    /// Tracking slots it frees if it succeeds.
    untrack: Vec<Untrack>,
    kind: UnitKind,
    /// When ddlgate received the client's message.
    received: std::time::Instant,
    /// When its message was written to the upstream socket (`received` until then).
    sent: std::time::Instant,
    /// `sent` is set.
    forwarded: bool,
    /// An ErrorResponse arrived for it.
    error: bool,
}

/// What the analysis hook wants done with one Query or Parse.
struct Hooked {
    notices: Vec<BytesMut>,
    /// Replacement frame, if the SQL changed.
    frame: Option<Bytes>,
    guard: Option<crate::guard::GuardPlan>,
    recipe: Option<crate::recipe::Recipe>,
}

pub(super) struct Relay {
    shared: Arc<Shared>,
    io: Io,
    st: State,
    upstream_addr: SocketAddr,
    login_deadline: Instant,
    /// Unauthenticated until AuthenticationOk, then one of `limits.max_clients`.
    slot: Slot,
    /// A client frame other than an authentication message arrived before the session was
    /// ready: it stays unread, and so does the client, until the first ReadyForQuery.
    preauth_held: bool,
}

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
                stage: Stage::Auth,
                tx: TxStatus::Idle,
                outstanding: 0,
                syncs_since_command: 0,
                unit_executes: 0,
                tool: crate::tools::Tool::from_application_name(&who.application_name),
                tool_search_left: crate::tools::STATEMENTS_SEARCHED,
                unit_open: false,
                prepared: Prepared::default(),
                last_parse_ddl: false,
                last_parse_fresh: false,
                unit_gen: 0,
                untrack_pending: Vec::new(),
                lex_barrier: false,
                settings_gen: 0,
                tx_gen: 0,
                refusal_nonce: fastrand::u64(..),
                swallow_parse_complete: false,
                raised_block: false,
                c_stream_left: 0,
                u_stream_left: 0,
                client_terminated: false,
                upstream_sent_fatal: false,
                cancel_key: None,
                lex: LexOptions::default(),
                server_version: None,
                server_version_num: None,
                analyzer,
                profile,
                who,
                live,
                held: false,
                pending_guard: None,
                units: Default::default(),
                last_kind: UnitKind::Dml,
                unit_kind: None,
                audit_pending: Vec::new(),
                unit_error: None,
                guard_timing: (std::time::Instant::now(), std::time::Duration::ZERO),
                gauge_state: None,
                dangerous_since: None,
                pending_facts: false,
                facts_ready: false,
                pending_epilogue: None,
                channel_binding,
            },
            upstream_addr,
            login_deadline,
            slot,
            preauth_held: false,
        }
    }

    /// Forwards the startup packet, relays until either side ends, then cleans up: a statement
    /// whose client vanished is cancelled upstream, and the client is told why it is being
    /// disconnected when it can still be told.
    pub(super) async fn run(mut self, startup: Bytes) -> Result<(), SessionError> {
        self.io.to_up.push(startup);
        let mut phase = self.shared.shutdown.subscribe();
        let outcome = self.pump(&mut phase).await;
        let result = self.finish(outcome).await;
        self.shared
            .metrics
            .session_state(self.st.gauge_state.take(), None);
        if let Some(key) = self.st.cancel_key.take() {
            self.shared.cancel_keys.remove(&key);
        }
        result
    }

    async fn pump(&mut self, phase: &mut watch::Receiver<Phase>) -> Result<End, SessionError> {
        loop {
            match *phase.borrow_and_update() {
                Phase::Running => {}
                Phase::Draining if self.st.stage == Stage::Auth || self.is_idle() => {
                    return Ok(End::Shutdown);
                }
                Phase::Draining => {}
                Phase::Terminating => return Ok(End::Shutdown),
            }
            let read_client =
                self.io.to_up.bytes() < HIGH_WATER && !self.st.held && !self.preauth_held;
            let read_upstream = self.io.to_client.bytes() < HIGH_WATER;
            if self.io.cbuf.capacity() - self.io.cbuf.len() < READ_CHUNK / 4 {
                self.io.cbuf.reserve(READ_CHUNK);
            }
            if self.io.ubuf.capacity() - self.io.ubuf.len() < READ_CHUNK / 4 {
                self.io.ubuf.reserve(READ_CHUNK);
            }
            self.io.shrink_after_large_messages();
            self.st.shrink_after_large_messages();
            let io = &mut self.io;
            tokio::select! {
                biased;
                _ = phase.changed() => {}
                _ = tokio::time::sleep_until(self.login_deadline), if self.st.stage == Stage::Auth => {
                    return Err(SessionError::LoginTimeout(self.shared.config.limits.login_timeout_ms));
                }
                r = io.to_client.progress(&mut io.cw), if io.to_client.has_work() => r.map_err(SessionError::ClientIo)?,
                r = io.to_up.progress(&mut io.uw), if io.to_up.has_work() => {
                    r.map_err(SessionError::UpstreamIo)?;
                    if io.to_up.is_empty() {
                        self.st.units_forwarded();
                    }
                }
                r = io.ur.read_buf(&mut io.ubuf), if read_upstream => {
                    if r.map_err(SessionError::UpstreamIo)? == 0 {
                        return Ok(End::UpstreamClosed);
                    }
                    self.on_upstream_bytes()?;
                    if self.st.stage == Stage::Ready && !self.slot.is_authenticated() {
                        // Fail closed: a session is never relayed without having been admitted.
                        return Err(SessionError::UpstreamProtocol(
                            "ReadyForQuery without AuthenticationOk".to_owned(),
                        ));
                    }
                    if self.preauth_held && self.st.stage == Stage::Ready {
                        // Authenticated and ready (server parameters known): what the client
                        // sent meanwhile is read and analysed now.
                        self.preauth_held = false;
                        self.client_input().await?;
                    }
                    if self.st.outstanding == 0
                        && !self.st.unit_open
                        && self.st.pending_epilogue.as_ref().is_some_and(|e| e.can_run(self.st.tx))
                        && let Some(epilogue) = self.st.pending_epilogue.take()
                    {
                        self.io.to_client.drain_to(&mut self.io.cw).await.map_err(SessionError::ClientIo)?;
                        self.run_epilogue(epilogue).await?;
                        // Client bytes that arrived meanwhile were kept for the relay.
                        if !self.st.held && !self.io.cbuf.is_empty() {
                            self.client_input().await?;
                        }
                    }
                    if self.st.held && self.st.outstanding == 0 {
                        // The server is idle: decide the held message now.
                        self.st.held = false;
                        self.client_input().await?;
                    }
                }
                r = io.cr.read_buf(&mut io.cbuf), if read_client => {
                    if r.map_err(SessionError::ClientIo)? == 0 {
                        return Ok(End::ClientClosed);
                    }
                    self.client_input().await?;
                }
            }
        }
    }

    /// Processes buffered client bytes; a DDL Query that must run under the lock guard is run
    /// here, to completion, before the bytes after it are looked at.
    async fn client_input(&mut self) -> Result<(), SessionError> {
        loop {
            // A large Query/Parse is analysed whole here: off the I/O worker, so that other
            // sessions on this worker are not delayed by it.
            let heavy = holds_large_sql(
                &self.io.cbuf,
                self.st.c_stream_left,
                self.st.live.config.limits.offload_analysis_bytes,
            );
            self.io.large_message_seen |= heavy;
            offload(heavy, || self.on_client_bytes())?;
            if std::mem::take(&mut self.st.pending_facts) {
                self.read_facts().await?;
                self.st.facts_ready = true;
                continue;
            }
            let Some(pending) = self.st.pending_guard.take() else {
                return Ok(());
            };
            // Whatever was queued (notices) goes out first.
            self.io
                .to_client
                .drain_to(&mut self.io.cw)
                .await
                .map_err(SessionError::ClientIo)?;
            self.run_guarded(pending).await?;
            if !self.io.to_client.is_empty() {
                self.io
                    .to_client
                    .write_now(&mut self.io.cw)
                    .map_err(SessionError::ClientIo)?;
            }
        }
    }

    /// The server is waiting for the client and nothing is in flight: a safe point to close.
    fn is_idle(&self) -> bool {
        self.st.stage == Stage::Ready
            && self.st.tx == TxStatus::Idle
            && self.st.outstanding == 0
            && self.st.u_stream_left == 0
            && self.io.to_up.is_empty()
    }

    /// A statement may be executing upstream on the client's behalf.
    fn statement_running(&self) -> bool {
        self.st.stage == Stage::Ready && self.st.outstanding > 0
    }

    /// The byte stream to the client is at a message boundary, so a message may be appended.
    fn client_at_boundary(&self) -> bool {
        self.st.u_stream_left == 0
    }

    /// Cuts client bytes into frames, analyses SQL, counts protocol units, and queues the frames
    /// for the upstream as one zero-copy chunk.
    fn on_client_bytes(&mut self) -> Result<(), SessionError> {
        // Reloadable settings, as of this session's last look at the live configuration.
        let live = self.st.live.clone();
        let limits = &live.config.limits;
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
            if st.stage == Stage::Auth {
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
            let (tag, total) = match framing::scan(rest, limits.max_message_bytes) {
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
            match tag {
                frontend::QUERY | frontend::PARSE => {
                    if body_len > limits.max_statement_bytes {
                        return Err(SessionError::MessageTooLarge {
                            tag: tag as char,
                            len: body_len,
                            limit: limits.max_statement_bytes,
                        });
                    }
                    if available < total {
                        io.cbuf.reserve(total - available);
                        break;
                    }
                    let frame = &rest[..total];
                    // After a statement that may change how SQL is lexed, a message whose
                    // lexing depends on it waits until the server has answered.
                    if st.outstanding == 0 && !st.unit_open {
                        // Everything forwarded was answered (also by the guard's own loop).
                        st.lex_barrier = false;
                    }
                    let lexing_unknown = st.lex_barrier && lexing_sensitive(framing::body(frame));
                    if lexing_unknown && st.outstanding > 0 {
                        st.held = true;
                        break;
                    }
                    if st.outstanding > 0 && st.must_wait_for_idle(tag, framing::body(frame)) {
                        st.held = true;
                        break;
                    }
                    // The guard runs its own statements first: only with the server idle and
                    // able to run them (not in a failed transaction).
                    // DDL at a statement boundary: read the catalog facts its decision needs
                    // first (`client_input` does, then comes back here).
                    if !st.facts_ready
                        && run == 0
                        && st.may_inject()
                        && live.config.catalog.enabled
                        && st.must_wait_for_idle(tag, framing::body(frame))
                    {
                        st.pending_facts = true;
                        break;
                    }
                    st.facts_ready = false;
                    let may_guard = run == 0 && st.may_inject();
                    let hooked = if lexing_unknown {
                        // Inside an open extended-protocol unit the server answers nothing
                        // before Sync: the settings cannot be known, so refuse.
                        Some(lexing_refusal(tag, framing::body(frame)))
                    } else {
                        let hooked =
                            st.on_client_sql(&self.shared, counters, tag, framing::body(frame));
                        if tag == frontend::PARSE {
                            st.track_parse(
                                framing::body(frame),
                                hooked,
                                live.config.guard.max_tracked_statements,
                            )
                        } else {
                            hooked
                        }
                    };
                    if let Some(Hooked {
                        notices,
                        frame: replacement,
                        guard,
                        recipe,
                    }) = hooked
                    {
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
                        if let Some(recipe) = recipe {
                            if may_guard && tag == frontend::QUERY {
                                // The steps run instead of the statement (`run_guarded`).
                                st.syncs_since_command = 0;
                                st.pending_guard = Some(PendingGuard {
                                    frame,
                                    plan: guard.unwrap_or_default(),
                                    tag,
                                    recipe: Some(recipe),
                                });
                                break;
                            }
                            // Steps need the simple protocol and an idle server: refuse
                            // rather than run the statement as written.
                            frame = refusal_frame(tag, framing::body(&frame), &recipe);
                        }
                        match guard.filter(|g| may_guard && g.is_needed(&live.config.guard)) {
                            Some(plan) => {
                                // The relay stops here; `client_input` runs it under the guard.
                                st.syncs_since_command = 0;
                                st.pending_guard = Some(PendingGuard {
                                    frame,
                                    plan,
                                    tag,
                                    recipe: None,
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
                    let body = framing::body(&rest[..total]);
                    let statement = protocol::read_cstr(body)
                        .and_then(|(_, rest)| protocol::read_cstr(rest))
                        .map(|(statement, _)| statement.to_vec());
                    if let Some(statement) = statement {
                        if let Some(lexing) = st.prepared.settings_effect(&statement) {
                            st.settings_gen += 1;
                            st.lex_barrier |= lexing;
                        }
                        match st.on_bind(&self.shared, counters, &statement) {
                            Err(err) => {
                                // The server fails the unit itself and discards up to Sync, so
                                // the protocol state stays exactly the server's.
                                let fresh = run == 0 && st.outstanding == 0 && !st.unit_open;
                                if run > 0 {
                                    io.to_up.push(io.cbuf.split_to(run).freeze());
                                    run = 0;
                                }
                                let original = io.cbuf.split_to(total);
                                if fresh {
                                    // First in its unit, nothing else unanswered: the portal
                                    // is bound to ddlgate's raising statement (in the unnamed
                                    // statement), whose ParseComplete — the next reply — the
                                    // client does not see. Its Execute fails with the error.
                                    io.to_up.push(raising_bind(framing::body(&original), &err));
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
                                    io.to_up.push(refused_bind(
                                        framing::body(&original),
                                        &statement,
                                        st.refusal_nonce,
                                    ));
                                }
                                st.on_client_tag(counters, tag);
                                continue;
                            }
                            Ok(plan) => {
                                // A Bind of a prepared DDL statement starts a unit the guard
                                // runs around.
                                let may_guard = run == 0 && st.may_inject();
                                if let Some(plan) =
                                    plan.filter(|g| may_guard && g.is_needed(&live.config.guard))
                                {
                                    st.unit_kind = Some(UnitKind::Ddl);
                                    let frame = io.cbuf.split_to(total).freeze();
                                    st.pending_guard = Some(PendingGuard {
                                        frame,
                                        plan,
                                        tag,
                                        recipe: None,
                                    });
                                    break;
                                }
                            }
                        }
                    }
                }
                frontend::CLOSE if available >= total => {
                    // Close('S', name) frees the statement's tracking slot once it succeeds.
                    if let Some((b'S', rest)) = framing::body(&rest[..total]).split_first()
                        && let Some((name, _)) = protocol::read_cstr(rest)
                        && (st.prepared.ddl_mut(name).is_some()
                            || st.prepared.settings_effect(name).is_some())
                    {
                        st.untrack_pending
                            .push(st.prepared.untrack_request(Some(name)));
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
            io.to_up
                .write_now(&mut io.uw)
                .map_err(SessionError::UpstreamIo)?;
            if io.to_up.is_empty() {
                st.units_forwarded();
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
                && st.stage == Stage::Auth
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
                && st.stage == Stage::Auth
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
            io.to_client
                .write_now(&mut io.cw)
                .map_err(SessionError::ClientIo)?;
        }
        Ok(())
    }

    /// Ends the session according to how the loop stopped.
    async fn finish(&mut self, outcome: Result<End, SessionError>) -> Result<(), SessionError> {
        match outcome {
            Ok(End::ClientClosed) => {
                if self.st.client_terminated {
                    // Orderly: make sure the Terminate itself reaches the server.
                    self.last_words_upstream().await;
                } else {
                    self.client_vanished().await;
                }
                Ok(())
            }
            Ok(End::UpstreamClosed) => {
                if self.st.client_terminated || self.st.upstream_sent_fatal {
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
                    tx = self.st.tx.as_str(),
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
                self.last_words_client(Some(responses::upstream_lost()))
                    .await;
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
        let _ = tokio::time::timeout(LAST_WORDS_TIMEOUT, async {
            io.to_client.drain_to(&mut io.cw).await?;
            io.cw.shutdown().await
        })
        .await;
    }

    /// Best effort: write what is queued for the upstream, bounded in time.
    async fn last_words_upstream(&mut self) {
        let io = &mut self.io;
        let _ = tokio::time::timeout(LAST_WORDS_TIMEOUT, io.to_up.drain_to(&mut io.uw)).await;
    }

    /// Ends the upstream session politely with Terminate when the stream is at a message
    /// boundary, so the server logs no "unexpected EOF"; the socket is closed either way.
    async fn say_terminate_upstream(&mut self) {
        if self.st.stage == Stage::Ready && self.st.c_stream_left == 0 {
            let mut x = BytesMut::new();
            framing::put_message(&mut x, frontend::TERMINATE, &[]);
            self.io.to_up.push(x.freeze());
        }
        self.last_words_upstream().await;
        let _ = self.io.uw.shutdown().await;
        // Wait briefly for the server to close, so the backend is gone when the session ends.
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(LAST_WORDS_TIMEOUT, async {
            while self.io.ur.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        })
        .await;
    }
}

impl Io {
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

/// Whether lexing `body` (a Query's or Parse's) depends on `standard_conforming_strings` or
/// `client_encoding`: only a backslash (in a string literal) or a byte outside ASCII (every
/// client encoding PostgreSQL accepts is ASCII-compatible) can be read differently.
fn lexing_sensitive(body: &[u8]) -> bool {
    memchr::memchr(b'\\', body).is_some() || !body.is_ascii()
}

/// A Query/Parse that cannot be lexed with certainty, replaced by an error the server raises.
fn lexing_refusal(tag: u8, body: &[u8]) -> Hooked {
    let err = crate::act::BlockError {
        code: crate::act::sqlstate::UNPARSED,
        message: "ddlgate cannot read this statement: an earlier statement of this unit may have changed standard_conforming_strings or client_encoding".to_owned(),
        detail: "The server reports such changes only at the end of the unit (Sync); until then ddlgate cannot know how the server reads backslashes and multibyte characters.".to_owned(),
        hint: "Send Sync after the statement that changes the setting, before this one.".to_owned(),
    };
    let sql = crate::protocol::statement_sql(tag, body);
    Hooked {
        notices: Vec::new(),
        frame: sql.map(|old| rebuild_frame(tag, body, old, &err.to_sql())),
        guard: None,
        recipe: None,
    }
}

/// The client's Bind replaced by a Parse of the unnamed statement as ddlgate's raising `DO`
/// block and a Bind of the client's portal to it (no parameters, text results).
fn raising_bind(body: &[u8], err: &crate::act::BlockError) -> Bytes {
    let portal = protocol::read_cstr(body).map_or(&b""[..], |(p, _)| p);
    let mut parse = Vec::new();
    parse.push(0);
    parse.extend_from_slice(&err.to_sql());
    parse.push(0);
    parse.extend_from_slice(&0u16.to_be_bytes());
    let mut bind = Vec::with_capacity(portal.len() + 8);
    bind.extend_from_slice(portal);
    bind.extend_from_slice(&[0, 0]);
    bind.extend_from_slice(&[0; 6]);
    let mut out = BytesMut::with_capacity(parse.len() + bind.len() + 2 * framing::HEADER_LEN);
    framing::put_message(&mut out, frontend::PARSE, &parse);
    framing::put_message(&mut out, frontend::BIND, &bind);
    out.freeze()
}

/// The client's Bind pointed at a statement name that cannot exist (it names the refused
/// statement and carries a per-session random part), so that the server itself fails it with
/// 26000 and discards the unit up to Sync — the protocol state stays exactly the server's.
fn refused_bind(body: &[u8], statement: &[u8], nonce: u64) -> Bytes {
    let Some((portal, rest)) = protocol::read_cstr(body) else {
        return Bytes::copy_from_slice(body);
    };
    let Some((_, params)) = protocol::read_cstr(rest) else {
        return Bytes::copy_from_slice(body);
    };
    let name = format!(
        "ddlgate refused prepared DDL {} (see the warning before this error) #{nonce:016x}",
        String::from_utf8_lossy(statement).replace('\0', "")
    );
    let mut new_body = Vec::with_capacity(body.len() + name.len());
    new_body.extend_from_slice(portal);
    new_body.push(0);
    new_body.extend_from_slice(name.as_bytes());
    new_body.push(0);
    new_body.extend_from_slice(params);
    let mut out = BytesMut::with_capacity(new_body.len() + framing::HEADER_LEN);
    framing::put_message(&mut out, frontend::BIND, &new_body);
    out.freeze()
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

/// Runs `f`, a piece of CPU-bound work on the session's task, off the I/O worker when it is
/// `heavy`: `block_in_place` hands this worker's other tasks to another thread first, so other
/// sessions are not stalled while it runs. Only a multi-thread runtime can do that; on a
/// current-thread runtime (some tests) `f` runs in place.
fn offload<R>(heavy: bool, f: impl FnOnce() -> R) -> R {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if heavy && multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

impl State {
    /// Per-message bookkeeping that a burst of messages grew, given back once it is idle.
    fn shrink_after_large_messages(&mut self) {
        if self.units.is_empty() && self.units.capacity() > 1024 {
            self.units.shrink_to(64);
        }
        if self.audit_pending.is_empty() && self.audit_pending.capacity() > 1024 {
            self.audit_pending.shrink_to(16);
        }
    }

    /// The analysis hook: every Query's and Parse's SQL passes here before it is forwarded.
    /// Returns `None` to forward the frame untouched (the common case), or the notices to send
    /// and the frame to forward instead.
    fn on_client_sql(
        &mut self,
        shared: &Shared,
        counters: &crate::metrics::Counters,
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
        let sql = protocol::statement_sql(tag, body)?;
        let name = match source {
            Source::Parse => protocol::parse_message(body).map(|(n, _)| n),
            Source::Query => None,
        };
        if self.tool.is_none() && self.tool_search_left > 0 {
            self.tool_search_left -= 1;
            self.tool = crate::tools::Tool::from_sql(sql);
        }
        let ctx = Context {
            tx: self.tx,
            lex: self.lex,
            server_version: self.server_version_num,
            pipelined: source == Source::Parse && self.unit_executes > 0,
            tool: self.tool,
        };
        let (summary, mut plan) = self
            .analyzer
            .analyze(counters, &self.profile, source, sql, &ctx);
        self.audit_pending.append(&mut plan.audit);
        self.last_parse_ddl = summary.ddl_candidates > 0;
        self.last_parse_fresh = plan.fresh_facts_only;
        self.note_effects(name);
        let kind = UnitKind::of(summary.ddl_candidates, summary.dml);
        match source {
            Source::Query => self.last_kind = kind,
            Source::Parse => self.unit_kind = Some(kind.merge(self.unit_kind)),
        }
        if plan.is_forward() {
            return None;
        }
        let frame = plan
            .sql
            .map(|new_sql| rebuild_frame(tag, body, sql, &new_sql));
        Some(Hooked {
            notices: plan.notices,
            frame,
            guard: plan.guard,
            recipe: plan.recipe,
        })
    }

    /// The server is idle at a statement boundary and can run a query of ddlgate's own: no
    /// reply owed, no extended-protocol unit open, the transaction not failed, no guard
    /// settings still to restore.
    fn may_inject(&self) -> bool {
        self.outstanding == 0
            && !self.unit_open
            && self.tx != TxStatus::Failed
            && self.c_stream_left == 0
            && self
                .pending_epilogue
                .as_ref()
                .is_none_or(|e| e.settings_restored())
    }

    /// After a configuration reload: the new limits and settings, and the profile the new policy
    /// gives this session, from its next statement on.
    fn refresh_live(&mut self, shared: &Shared) {
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
        tracing::info!(profile = %self.profile.name, generation = self.live.generation, "policy reloaded for this session");
    }

    /// Everything queued for the upstream is written: units not yet marked were sent now.
    fn units_forwarded(&mut self) {
        let now = std::time::Instant::now();
        for u in self.units.iter_mut().rev().take_while(|u| !u.forwarded) {
            u.sent = now;
            u.forwarded = true;
        }
    }

    /// A protocol unit was forwarded: time it until its ReadyForQuery.
    fn unit_started(&mut self, kind: UnitKind) {
        if self.units.len() < MAX_TIMED_UNITS {
            let now = std::time::Instant::now();
            self.units.push_back(UnitTiming {
                audit: std::mem::take(&mut self.audit_pending),
                untrack: std::mem::take(&mut self.untrack_pending),
                kind,
                received: now,
                sent: now,
                forwarded: false,
                error: false,
            });
        }
    }

    /// The transaction status from a ReadyForQuery, with what depends on it: the analyzer's
    /// per-transaction state, the sessions gauge, the dangerous-lock hold time.
    fn set_tx_status(&mut self, shared: &Shared, status: TxStatus) {
        if status == TxStatus::Idle && self.tx != TxStatus::Idle {
            self.tx_gen += 1;
        }
        self.tx = status;
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
                self.untrack_pending
                    .push(self.prepared.untrack_request(Some(name)));
            }
        }
        for name in &effects.deallocates {
            self.untrack_pending
                .push(self.prepared.untrack_request(name.as_deref()));
        }
    }

    fn decided_in(&self) -> DecidedIn {
        DecidedIn {
            tx: self.tx,
            settings: self.settings_gen,
            transactions: self.tx_gen,
        }
    }

    /// Tracks the statement a Parse prepares when it holds DDL, with what was decided and the
    /// SQL the server will hold; past `guard.max_tracked_statements` the Parse is refused
    /// instead (never run untracked).
    fn track_parse(&mut self, body: &[u8], hooked: Option<Hooked>, cap: usize) -> Option<Hooked> {
        let Some((name, sql)) = protocol::parse_message(body) else {
            return hooked;
        };
        if !self.last_parse_ddl {
            if self.prepared.ddl_mut(name).is_some() {
                // An unnamed statement replaced (a named one cannot be: its Parse fails).
                self.untrack_pending
                    .push(self.prepared.untrack_request(Some(name)));
            }
            return hooked;
        }
        let replaced = hooked.as_ref().and_then(|h| h.frame.as_ref());
        let held_sql = replaced
            .and_then(|f| protocol::statement_sql(frontend::PARSE, framing::body(f)))
            .unwrap_or(sql);
        let plan = hooked.as_ref().and_then(|h| h.guard.clone());
        let decided_in = self.decided_in();
        let fresh_unit = self.last_parse_fresh.then_some(self.unit_gen);
        match self
            .prepared
            .track(name, plan, held_sql, decided_in, fresh_unit, cap)
        {
            Ok(()) => hooked,
            Err(prepared::Full) => {
                tracing::warn!(
                    cap,
                    "too many prepared DDL statements tracked; Parse refused"
                );
                let err = crate::act::BlockError {
                    code: crate::act::sqlstate::BLOCKED,
                    message: format!(
                        "ddlgate refused to prepare this DDL statement: this session already has {cap} prepared DDL statements (guard.max_tracked_statements)"
                    ),
                    detail: "ddlgate checks every prepared DDL statement again when it runs, so it must remember each one until it is closed.".to_owned(),
                    hint: "Close prepared statements you no longer need (Close message, DEALLOCATE or DISCARD ALL), or send the DDL as a simple query.".to_owned(),
                };
                Some(Hooked {
                    notices: Vec::new(),
                    frame: Some(rebuild_frame(frontend::PARSE, body, sql, &err.to_sql())),
                    guard: None,
                    recipe: None,
                })
            }
        }
    }

    /// A Bind of prepared DDL: its guard plan, decided again first when the context changed
    /// since its Parse; `Err` when the new decision no longer allows it as prepared.
    fn on_bind(
        &mut self,
        shared: &Shared,
        counters: &crate::metrics::Counters,
        statement: &[u8],
    ) -> Result<Option<crate::guard::GuardPlan>, crate::act::BlockError> {
        self.refresh_live(shared);
        let now = self.decided_in();
        let Some(entry) = self.prepared.ddl_mut(statement) else {
            return Ok(None);
        };
        // A decision on facts that hold only now (what depends on a dropped object) is good
        // for the unit of its Parse only: in a later unit it is taken again, without them.
        let fresh = entry.fresh_unit.is_none_or(|u| u == self.unit_gen);
        if entry.decided_in == now && fresh {
            return Ok(entry.plan.clone());
        }
        let was = entry.decided_in;
        let refusal = |why: &str| {
            crate::act::BlockError {
            code: crate::act::sqlstate::BLOCKED,
            message: format!(
                "ddlgate refused to execute prepared DDL statement \"{}\": {why}",
                String::from_utf8_lossy(statement)
            ),
            detail: format!(
                "It was decided at its Parse (transaction {}); since then the transaction status, a transaction end or a settings change may make its names mean other objects, and for a DROP … CASCADE other statements may have created dependents.",
                was.tx.as_str()
            ),
            hint: "Prepare the statement again (Parse) right before executing it, or send it as a simple query.".to_owned(),
        }
        };
        let Some(sql) = entry.sql.clone() else {
            return Err(refusal(
                "it is too long to be decided again in the current context",
            ));
        };
        let ctx = Context {
            tx: self.tx,
            lex: self.lex,
            server_version: self.server_version_num,
            pipelined: self.unit_executes > 0,
            tool: self.tool,
        };
        let (_, mut plan) =
            self.analyzer
                .analyze(counters, &self.profile, Source::Parse, &sql, &ctx);
        self.audit_pending.append(&mut plan.audit);
        if plan.sql.is_some() || plan.recipe.is_some() {
            tracing::info!("prepared DDL decided again at Bind: no longer allowed as prepared");
            return Err(refusal(
                "decided again in the current context, it is no longer allowed as prepared",
            ));
        }
        if let Some(entry) = self.prepared.ddl_mut(statement) {
            entry.plan = plan.guard.clone();
            entry.decided_in = now;
        }
        Ok(plan.guard)
    }

    /// Whether a Query/Parse must wait for the server to finish earlier requests before it is
    /// decided: only when it holds DDL (ordinary pipelined traffic never waits).
    fn must_wait_for_idle(&mut self, tag: u8, body: &[u8]) -> bool {
        let sql = crate::protocol::statement_sql(tag, body);
        sql.is_some_and(|sql| self.analyzer.has_ddl_candidate(sql, self.lex))
    }

    /// Protocol bookkeeping from a client message's tag.
    fn on_client_tag(&mut self, counters: &crate::metrics::Counters, tag: u8) {
        match tag {
            frontend::QUERY | frontend::FUNCTION_CALL => {
                self.unit_gen += 1;
                if tag == frontend::FUNCTION_CALL {
                    // A function called by OID may change any setting.
                    self.settings_gen += 1;
                    self.lex_barrier = true;
                }
                self.outstanding += 1;
                self.syncs_since_command = 0;
                let kind = if tag == frontend::QUERY {
                    self.last_kind
                } else {
                    UnitKind::Dml
                };
                self.unit_started(kind);
            }
            frontend::EXECUTE => {
                self.unit_executes += 1;
                self.syncs_since_command = 0;
                self.unit_open = true;
            }
            frontend::PARSE
            | frontend::BIND
            | frontend::DESCRIBE
            | frontend::CLOSE
            | frontend::FLUSH => {
                self.unit_open = true;
            }
            frontend::SYNC => {
                self.unit_gen += 1;
                self.outstanding += 1;
                // A unit that only binds and executes statements prepared earlier counts as
                // DML: what they are is not looked at again.
                let kind = self.unit_kind.take().unwrap_or(UnitKind::Dml);
                self.unit_started(kind);
                self.syncs_since_command += 1;
                counters.extended_units.fetch_add(1, Ordering::Relaxed);
                if self.unit_executes > 1 {
                    counters.pipelined_units.fetch_add(1, Ordering::Relaxed);
                }
                tracing::trace!(
                    executes = self.unit_executes,
                    tx = self.tx.as_str(),
                    "extended-protocol unit complete"
                );
                self.unit_executes = 0;
                self.unit_open = false;
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                // Only a client in copy-in mode sends these; the Syncs it sent since the COPY
                // started were ignored by the server.
                self.outstanding = self.outstanding.saturating_sub(self.syncs_since_command);
                for _ in 0..self.syncs_since_command {
                    self.units.pop_back();
                }
                self.syncs_since_command = 0;
            }
            frontend::TERMINATE => self.client_terminated = true,
            _ => {}
        }
    }

    /// Decodes the few upstream messages ddlgate tracks.
    fn on_upstream_message(
        &mut self,
        shared: &Shared,
        upstream_addr: SocketAddr,
        tag: u8,
        body: &[u8],
    ) -> Result<(), SessionError> {
        match tag {
            backend::READY_FOR_QUERY => {
                let status = body
                    .first()
                    .copied()
                    .and_then(TxStatus::from_byte)
                    .ok_or_else(|| {
                        SessionError::UpstreamProtocol(
                            "ReadyForQuery with an invalid transaction status".to_owned(),
                        )
                    })?;
                self.set_tx_status(shared, status);
                if self.stage == Stage::Ready
                    && let Some(mut u) = self.units.pop_front()
                {
                    // The server confirms what the unit closed or deallocated only by
                    // succeeding; after an error it may have skipped it.
                    if !u.error {
                        for x in std::mem::take(&mut u.untrack) {
                            self.prepared.apply(x);
                        }
                    }
                    let now = std::time::Instant::now();
                    shared.metrics.unit_done(
                        u.kind,
                        u.error,
                        now.duration_since(u.received).as_secs_f64(),
                        now.duration_since(u.sent).as_secs_f64(),
                    );
                    let error = self.unit_error.take();
                    let outcome = if u.error { "error" } else { "ok" };
                    for d in u.audit {
                        shared.audit.write(&d.finish(
                            &self.who,
                            outcome,
                            error.clone(),
                            now.duration_since(u.received),
                            std::time::Duration::ZERO,
                        ));
                    }
                }
                if self.stage == Stage::Auth {
                    self.stage = Stage::Ready;
                    tracing::debug!(
                        server_version = self.server_version.as_deref().unwrap_or("?"),
                        "session ready"
                    );
                } else {
                    self.outstanding = self.outstanding.saturating_sub(1);
                }
                if self.outstanding == 0 && !self.unit_open {
                    // Everything forwarded was answered, ParameterStatus included.
                    self.lex_barrier = false;
                }
            }
            backend::PARAMETER_STATUS => {
                self.settings_gen += 1;
                if let Some((name, value)) = protocol::parse_parameter_status(body) {
                    match name {
                        b"standard_conforming_strings" => {
                            self.lex.standard_conforming_strings = value == b"on"
                        }
                        b"client_encoding" => {
                            self.lex.encoding =
                                ClientEncoding::from_pg_name(&String::from_utf8_lossy(value));
                        }
                        b"server_version" => {
                            let v = String::from_utf8_lossy(value).into_owned();
                            self.server_version_num = analysis::parse_server_version(&v);
                            self.server_version = Some(v);
                        }
                        _ => {}
                    }
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
                if let Some(u) = self.units.front_mut() {
                    u.error = true;
                    if !u.audit.is_empty() && self.unit_error.is_none() {
                        let e = ErrorFields::parse(body);
                        self.unit_error = Some(format!("{}: {}", e.code, e.message));
                    }
                }
                if ErrorFields::parse(body).is_fatal() {
                    self.upstream_sent_fatal = true
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The frame with its statement replaced by an error: the statement needs to run as safe
/// steps, which ddlgate does only for a statement sent alone as a simple Query.
fn refusal_frame(tag: u8, body: &[u8], recipe: &crate::recipe::Recipe) -> Bytes {
    let err = crate::act::BlockError {
        code: crate::act::sqlstate::BLOCKED,
        message: format!("ddlgate must run this statement as safe steps ({})", recipe.kind.title()),
        detail: format!("Planned: {}", recipe.describe()),
        hint: "Send the statement alone as a simple query (psql, or your driver's simple-query/execute-without-parameters mode) so ddlgate can run the steps, or run the steps yourself.".to_owned(),
    };
    let sql = crate::protocol::statement_sql(tag, body);
    match sql {
        Some(old) => rebuild_frame(tag, body, old, &err.to_sql()),
        None => Bytes::copy_from_slice(body),
    }
}

/// The client's Query or Parse frame with its SQL text replaced; every other field (statement
/// name, parameter types) is kept byte for byte.
fn rebuild_frame(tag: u8, body: &[u8], old_sql: &[u8], new_sql: &[u8]) -> Bytes {
    // `old_sql` is a subslice of `body`: everything before it (a Parse's statement name) and
    // after it (its NUL, then a Parse's parameter types) is copied unchanged.
    let start = old_sql.as_ptr() as usize - body.as_ptr() as usize;
    let end = start + old_sql.len();
    let mut new_body = Vec::with_capacity(body.len() - old_sql.len() + new_sql.len());
    new_body.extend_from_slice(&body[..start]);
    new_body.extend_from_slice(new_sql);
    new_body.extend_from_slice(&body[end..]);
    let mut out = BytesMut::with_capacity(new_body.len() + framing::HEADER_LEN);
    framing::put_message(&mut out, tag, &new_body);
    out.freeze()
}
