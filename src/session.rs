//! One client connection, from accept to close. The only code that writes to both sockets.
//!
//! Phases:
//! 1. **Negotiation** (`negotiate`): read the untagged initial packets. SSLRequest is answered
//!    `S` and the TLS handshake follows when `tls.mode` allows it (`N` otherwise); a direct TLS
//!    ClientHello (PostgreSQL 17 `sslnegotiation=direct`) is accepted too. GSSENCRequest is
//!    answered `N`. A CancelRequest (plain or inside TLS) is forwarded to the upstream that owns
//!    the key and the connection ends; a StartupMessage moves on — unless `tls.mode = require`
//!    and the connection is plaintext (FATAL 28000).
//! 2. **Admission** (`server::admission`): the connection came with an unauthenticated slot,
//!    which it may lose to a newer connection until its startup packet arrives (then it simply
//!    closes); one admitted without a slot gets FATAL 53300 after its startup packet, as
//!    PostgreSQL does, so SSL negotiation is not confused by it. So does one that finds every
//!    `limits.max_clients` slot taken already, before an upstream connection is opened for it.
//! 3. **Upstream connect**: a fresh connection per client (1:1, no pooling), with an SSLRequest
//!    and a TLS handshake first when `upstream.tls` asks for it; failure is FATAL 08001 naming
//!    the upstream. The startup packet is forwarded byte for byte.
//! 4. **Relay** (`relay`): authentication is relayed untouched both ways — ddlgate never knows a
//!    password — but until the first ReadyForQuery only authentication messages are read from
//!    the client (`protocol::preauth`); at AuthenticationOk the session trades its
//!    unauthenticated slot for one of `max_clients` (FATAL 53300 if none is free). Then
//!    everything is relayed, with SQL handed to the analysis hook on the way.
//!
//! Phase 1 is bounded by `limits.startup_timeout_ms`, the whole of phases 1–4 up to the first
//! ReadyForQuery by `limits.login_timeout_ms`.

mod ddl;
mod outq;
mod relay;
pub(crate) mod steady;
mod tracker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::admission::Admission;
use crate::config::{ClientTlsMode, UpstreamTlsMode};
use crate::error::SessionError;
use crate::protocol::startup::{self, CancelKey, InitialPacket, Startup};
use crate::state::Shared;
use crate::tls::{self, Conn};

/// Runs one connection to completion. Never panics on client input; every error ends the
/// session with the right message to the client, if it can still be told one.
pub async fn handle(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut admission: Admission,
    _alive: mpsc::Sender<()>,
) {
    let id = shared.next_session_id();
    let quiet_flag = Arc::new(AtomicBool::new(false));
    let quiet = quiet_flag.clone();
    let span = tracing::info_span!(
        "session",
        session = id,
        %peer,
        user = tracing::field::Empty,
        database = tracing::field::Empty,
        application_name = tracing::field::Empty,
    );
    async move {
        // Small request/response messages dominate; never let Nagle delay them.
        let _ = stream.set_nodelay(true);
        // Timeouts as of the accept (reloadable); the login deadline bounds everything up to
        // the first ReadyForQuery, the startup deadline the negotiation within it.
        let (startup_timeout, login_timeout) = {
            let live = shared.live.load();
            let l = &live.config.limits;
            (l.startup_timeout_ms, l.login_timeout_ms)
        };
        let accepted = tokio::time::Instant::now();
        let login_deadline = accepted + login_timeout;
        let startup_deadline = (accepted + startup_timeout).min(login_deadline);
        let mut stream = Conn::Plain(stream);
        let negotiated = {
            let negotiation =
                crate::timer::timeout_at(startup_deadline, negotiate(&shared, &mut stream));
            match &mut admission {
                Admission::Admitted(ticket) => tokio::select! {
                    r = negotiation => Some(r),
                    () = ticket.evicted() => None,
                },
                Admission::Reject(_) => Some(negotiation.await),
            }
        };
        let startup = match negotiated {
            None => {
                // Its slot went to a newer connection. Its startup packet may already be on the
                // way (a flood of real clients evicts its own members): it is told why, as
                // PostgreSQL tells a client past max_connections, rather than cut off mute.
                tracing::debug!("evicted before its startup packet to make room");
                let limit = shared.config.limits.max_unauthenticated;
                return say_fatal(&mut stream, &SessionError::TooManyUnauthenticated(limit)).await;
            }
            Some(Err(_)) => {
                shared.connections.startup_timeouts.increment(1);
                // The slot is free before the client hears why it is closed.
                drop(admission);
                return say_fatal(&mut stream, &SessionError::StartupTimeout(startup_timeout))
                    .await;
            }
            Some(Ok(Err(e))) => {
                drop(admission);
                return say_fatal(&mut stream, &e).await;
            }
            Some(Ok(Ok(Negotiated::Cancel(key)))) => return forward_cancel(&shared, &key).await,
            Some(Ok(Ok(Negotiated::Startup(startup)))) => startup,
        };
        let span = tracing::Span::current();
        span.record("user", startup.user());
        span.record("database", startup.database());
        span.record("application_name", startup.application_name());
        let slot = match admission {
            Admission::Admitted(ticket) => match ticket.claim() {
                Some(slot) => slot,
                None => {
                    tracing::debug!("evicted just before its startup packet");
                    let limit = shared.config.limits.max_unauthenticated;
                    return say_fatal(&mut stream, &SessionError::TooManyUnauthenticated(limit))
                        .await;
                }
            },
            Admission::Reject(_rejection) => {
                let limit = shared.config.limits.max_unauthenticated;
                tracing::warn!(limit, "too many connections logging in; rejected");
                return say_fatal(&mut stream, &SessionError::TooManyUnauthenticated(limit)).await;
            }
        };
        // Every client slot is taken by an authenticated session: say so now rather than open an
        // upstream connection for a login that would be refused at AuthenticationOk anyway.
        if shared.slots.clients_full() {
            drop(slot);
            return too_many_clients(&shared, &mut stream).await;
        }
        let connected = crate::timer::timeout_at(login_deadline, connect_upstream(&shared)).await;
        let (upstream, upstream_addr) = match connected {
            Err(_) => {
                shared.connections.login_timeouts.increment(1);
                drop(slot);
                return say_fatal(&mut stream, &SessionError::LoginTimeout(login_timeout)).await;
            }
            Ok(Err(e)) => {
                shared.connections.upstream_connect_failures.increment(1);
                tracing::warn!(error = %e, "upstream unreachable");
                return say_fatal(&mut stream, &e).await;
            }
            Ok(Ok(pair)) => pair,
        };
        shared.connections.active.increment(1.0);
        tracing::debug!(
            upstream = %upstream_addr,
            client_tls = stream.is_tls(),
            upstream_tls = upstream.is_tls(),
            "connected upstream"
        );
        let who = crate::audit::SessionInfo {
            session: id,
            user: startup.user().to_owned(),
            database: startup.database().to_owned(),
            application_name: startup.application_name().to_owned(),
            peer: peer.to_string(),
        };
        let relay = relay::Relay::new(
            shared.clone(),
            stream,
            upstream,
            upstream_addr,
            login_deadline,
            who,
            slot,
        );
        // Relaying, the span is entered only around what can log at INFO and above, unless
        // DEBUG events are on (then on every poll, as here).
        quiet.store(!tracing::enabled!(tracing::Level::DEBUG), Ordering::Relaxed);
        let outcome = relay.run(startup.raw).await;
        quiet.store(false, Ordering::Relaxed);
        // This poll began quiet: what follows logs inside the session's span all the same.
        let _in_session = span.enter();
        shared.connections.active.decrement(1.0);
        match outcome {
            Ok(()) => tracing::debug!("session closed"),
            Err(SessionError::LoginTimeout(_)) => {
                shared.connections.login_timeouts.increment(1);
                tracing::info!("login timed out")
            }
            Err(e @ SessionError::TooManyClients(_)) => {
                shared.connections.rejected_too_many.increment(1);
                tracing::warn!(error = %e, "too many clients; rejected at authentication")
            }
            Err(e) if e.is_disconnect() => {
                tracing::debug!(error = %e, side = ?e.side(), "session ended by disconnect")
            }
            Err(e) => tracing::info!(error = %e, side = ?e.side(), "session ended"),
        }
    }
    .in_session(span, quiet_flag)
    .await
}

/// The session's span around the session's future: entered on every poll, except while
/// `quiet` is set. Entering a span costs a few hundred instructions per poll (the subscriber
/// keeps a per-thread stack of entered spans); while relaying at INFO, a poll is one message in
/// each direction and logs nothing, so the relay enters the span itself around what can log
/// (deciding DDL, the lock guard, the end of the session).
struct SessionSpan<F> {
    inner: std::pin::Pin<Box<F>>,
    span: tracing::Span,
    quiet: Arc<AtomicBool>,
}

impl<F: Future> Future for SessionSpan<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if self.quiet.load(Ordering::Relaxed) {
            return self.inner.as_mut().poll(cx);
        }
        let this = &mut *self;
        let _entered = this.span.enter();
        this.inner.as_mut().poll(cx)
    }
}

trait InSession: Future + Sized {
    fn in_session(self, span: tracing::Span, quiet: Arc<AtomicBool>) -> SessionSpan<Self> {
        SessionSpan {
            inner: Box::pin(self),
            span,
            quiet,
        }
    }
}

impl<F: Future> InSession for F {}

/// FATAL 53300 for a client that found every `max_clients` slot taken, counted.
async fn too_many_clients(shared: &Shared, stream: &mut Conn) {
    shared.connections.rejected_too_many.increment(1);
    let limit = shared.slots.max_clients();
    tracing::warn!(limit, "too many clients; rejected");
    say_fatal(stream, &SessionError::TooManyClients(limit)).await
}

enum Negotiated {
    Startup(Startup),
    Cancel(CancelKey),
}

/// Reads initial packets until a StartupMessage or CancelRequest arrives, upgrading `client`
/// to TLS on the way when the client asks and `tls.mode` allows it.
async fn negotiate(shared: &Shared, client: &mut Conn) -> Result<Negotiated, SessionError> {
    let tls = &shared.tls;
    // Direct TLS (PostgreSQL 17 `sslnegotiation=direct`): the first byte is a TLS handshake
    // record instead of a packet length. PostgreSQL insists on ALPN there, so that a TLS
    // connection meant for another protocol can never be mistaken for a PostgreSQL client.
    if starts_with_tls_record(client).await? {
        if !tls.accepts_tls() {
            return Err(SessionError::ClientProtocol(
                "received direct TLS connection request, but ddlgate's tls.mode is \"disable\""
                    .to_owned(),
            ));
        }
        upgrade(shared, client).await?;
        if client.alpn() != Some(tls::ALPN_POSTGRESQL) {
            return Err(SessionError::ClientProtocol(
                "received direct SSL connection request without ALPN protocol negotiation extension"
                    .to_owned(),
            ));
        }
    }
    let (mut ssl_asked, mut gss_asked) = (client.is_tls(), false);
    loop {
        let packet = read_initial_packet(client).await?;
        match startup::parse_initial(packet).map_err(SessionError::ClientProtocol)? {
            InitialPacket::SslRequest if !ssl_asked => {
                ssl_asked = true;
                refuse_pipelined(client)?;
                if tls.accepts_tls() {
                    client
                        .write_all(b"S")
                        .await
                        .map_err(SessionError::ClientIo)?;
                    upgrade(shared, client).await?;
                } else {
                    // `N`: continue in plaintext (or give up, if the client's sslmode requires
                    // TLS).
                    client
                        .write_all(b"N")
                        .await
                        .map_err(SessionError::ClientIo)?;
                }
            }
            InitialPacket::GssEncRequest if !gss_asked => {
                gss_asked = true;
                refuse_pipelined(client)?;
                client
                    .write_all(b"N")
                    .await
                    .map_err(SessionError::ClientIo)?;
            }
            InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                return Err(SessionError::ClientProtocol(
                    "duplicate SSL or GSS encryption request".to_owned(),
                ));
            }
            // Cancels are accepted in plaintext even with `tls.mode = require`, as PostgreSQL
            // does: libpq before 17 never encrypts them, and the key is the credential.
            InitialPacket::Cancel(key) => return Ok(Negotiated::Cancel(key)),
            InitialPacket::Startup(_)
                if tls.client_mode == ClientTlsMode::Require && !client.is_tls() =>
            {
                return Err(SessionError::TlsRequired);
            }
            InitialPacket::Startup(s) => return Ok(Negotiated::Startup(s)),
        }
    }
}

/// Whether the connection opens with a TLS record (direct TLS). Waits for the first byte
/// without consuming it; a connection closed before sending anything reads as "no".
async fn starts_with_tls_record(client: &mut Conn) -> Result<bool, SessionError> {
    let Conn::Plain(tcp) = client else {
        return Ok(false);
    };
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await.map_err(SessionError::ClientIo)?;
    Ok(n == 1 && first[0] == tls::TLS_HANDSHAKE_RECORD)
}

/// The TLS handshake on a client connection. Nothing can be said to a client whose handshake
/// failed, so a failure only ends the session.
async fn upgrade(shared: &Shared, client: &mut Conn) -> Result<(), SessionError> {
    let tcp = client.take_tcp().ok_or_else(|| {
        SessionError::ClientProtocol("duplicate SSL or GSS encryption request".to_owned())
    })?;
    *client = shared
        .tls
        .accept(tcp)
        .await
        .map_err(SessionError::ClientTlsHandshake)?;
    Ok(())
}

/// A client that asked for encryption sends nothing more until it has the answer. Bytes
/// already waiting were sent in plaintext before any handshake and may have been injected by a
/// man-in-the-middle (CVE-2021-23214): refuse them, as PostgreSQL and PgBouncer do. ddlgate
/// reads initial packets with exact lengths, so such bytes can only still be in the socket.
fn refuse_pipelined(client: &mut Conn) -> Result<(), SessionError> {
    let Conn::Plain(tcp) = client else {
        return Ok(());
    };
    match tcp.try_read(&mut [0u8; 1]) {
        Ok(n) if n > 0 => Err(SessionError::PlaintextAfterSslRequest),
        // Nothing there (WouldBlock), or the client already closed: the next read says so.
        _ => Ok(()),
    }
}

/// Reads one length-prefixed initial packet, bounded by PostgreSQL's 10,000-byte limit before
/// any allocation.
async fn read_initial_packet(stream: &mut Conn) -> Result<Bytes, SessionError> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(SessionError::ClientIo)?;
    let len = startup::packet_len(header).map_err(SessionError::ClientProtocol)?;
    let mut packet = BytesMut::zeroed(len);
    packet[..4].copy_from_slice(&header);
    stream
        .read_exact(&mut packet[4..])
        .await
        .map_err(SessionError::ClientIo)?;
    Ok(packet.freeze())
}

/// Resolves `upstream.address` and connects, trying each resolved address in turn, then sets
/// up TLS when `upstream.tls` asks for it.
pub(crate) async fn connect_upstream(shared: &Shared) -> Result<(Conn, SocketAddr), SessionError> {
    let address = &shared.config.upstream.address;
    let timeout = shared.config.upstream.connect_timeout_ms;
    let fail = |reason: String| SessionError::UpstreamConnect {
        address: address.clone(),
        reason,
    };
    let addrs = tokio::net::lookup_host(address.as_str())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut last = fail("no address resolved".to_owned());
    for addr in addrs {
        match crate::timer::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let conn = secure_upstream(shared, stream).await.map_err(|reason| {
                    SessionError::UpstreamTls {
                        address: address.clone(),
                        reason,
                    }
                })?;
                return Ok((conn, addr));
            }
            Ok(Err(e)) => last = fail(e.to_string()),
            Err(_) => last = fail(format!("timed out after {} ms", timeout.as_millis())),
        }
    }
    Err(last)
}

/// libpq's SSL negotiation towards the upstream: SSLRequest, then on `S` the TLS handshake; on
/// `N` plaintext for `prefer`, an error otherwise. Bounded by `upstream.connect_timeout_ms`.
async fn secure_upstream(shared: &Shared, mut tcp: TcpStream) -> Result<Conn, String> {
    if !shared.tls.upstream_tls() {
        return Ok(Conn::Plain(tcp));
    }
    let mode = shared.tls.upstream_mode;
    let timeout = shared.config.upstream.connect_timeout_ms;
    let negotiate = async {
        let mut request = Vec::with_capacity(8);
        request.extend_from_slice(&8u32.to_be_bytes());
        request.extend_from_slice(&startup::SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&request)
            .await
            .map_err(|e| format!("sending SSLRequest: {e}"))?;
        // Exactly one byte: anything after an `S` belongs to the handshake, so plaintext an
        // attacker slipped in makes the handshake fail instead of being read as the server's.
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| format!("reading the answer to SSLRequest: {e}"))?;
        match answer[0] {
            b'S' => shared
                .tls
                .connect(tcp)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}")),
            b'N' if mode == UpstreamTlsMode::Prefer => Ok(Conn::Plain(tcp)),
            b'N' => Err(
                "the server does not support TLS (answered N to SSLRequest), and upstream.tls requires it"
                    .to_owned(),
            ),
            other => Err(format!(
                "unexpected answer to SSLRequest: {:?}",
                (other as char).escape_default().to_string()
            )),
        }
    };
    crate::timer::timeout(timeout, negotiate)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "TLS set-up timed out after {} ms",
                timeout.as_millis()
            ))
        })
}

/// Forwards a client's CancelRequest to the upstream server that owns the key. PostgreSQL sends
/// no reply to a cancel request, so neither does ddlgate; unknown keys are dropped silently.
async fn forward_cancel(shared: &Shared, key: &CancelKey) {
    let Some(addr) = shared.cancel_keys.get(key).map(|e| *e.value()) else {
        tracing::debug!(pid = key.pid, "cancel request for an unknown key ignored");
        return;
    };
    shared.connections.cancels_forwarded.increment(1);
    tracing::info!(pid = key.pid, upstream = %addr, "forwarding cancel request");
    send_cancel(shared, addr, key).await;
}

/// Sends a CancelRequest for `key` to `addr` — over TLS when sessions use TLS upstream, so the
/// key is never sent in the clear where sessions are not — and waits (bounded by
/// `upstream.connect_timeout_ms`) for the server to close the connection, which it does once the
/// request is processed.
pub(crate) async fn send_cancel(shared: &Shared, addr: SocketAddr, key: &CancelKey) {
    let timeout = shared.config.upstream.connect_timeout_ms;
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut s = secure_upstream(shared, tcp)
            .await
            .map_err(std::io::Error::other)?;
        s.write_all(&key.request_packet()).await?;
        s.flush().await?;
        let mut sink = [0u8; 16];
        while s.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    match crate::timer::timeout(timeout, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, upstream = %addr, "could not send cancel request"),
        Err(_) => tracing::warn!(upstream = %addr, "cancel request timed out"),
    }
}

/// Tells the client why it is being disconnected (best effort, bounded) and logs it.
async fn say_fatal(stream: &mut Conn, error: &SessionError) {
    if error.is_disconnect() {
        tracing::debug!(error = %error, "client went away during startup");
    } else {
        tracing::info!(error = %error, side = ?error.side(), "session refused");
    }
    if let Some(msg) = error.to_client_response() {
        let _ = crate::timer::timeout(Duration::from_secs(1), async {
            stream.write_all(&msg).await?;
            stream.shutdown().await
        })
        .await;
    }
}
