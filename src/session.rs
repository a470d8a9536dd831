//! One client connection, from accept to close. The only code that writes to both sockets.
//!
//! Phases:
//! 1. **Negotiation** (`negotiate`): read the untagged initial packets. SSLRequest and
//!    GSSENCRequest are answered `N`; a CancelRequest is forwarded to the upstream that owns the
//!    key and the connection ends; a StartupMessage moves on.
//! 2. **Admission**: past `limits.max_clients` the client gets FATAL 53300 (after its startup
//!    packet, as PostgreSQL does, so SSL negotiation is not confused by it).
//! 3. **Upstream connect**: a fresh connection per client (1:1, no pooling); failure is FATAL
//!    08001 naming the upstream. The startup packet is forwarded byte for byte.
//! 4. **Relay** (`relay`): authentication is relayed untouched both ways — ddlgate never knows a
//!    password — then everything is relayed, with SQL handed to the analysis hook on the way.
//!
//! The whole of phases 1–4 up to the first ReadyForQuery is bounded by `limits.login_timeout_ms`.

mod outq;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::Instrument;

use crate::error::SessionError;
use crate::protocol::startup::{self, CancelKey, InitialPacket, Startup};
use crate::server::Shared;

/// Whether the accept loop had room for this client.
pub enum Admission {
    /// Holds one of `max_clients` permits for the session's lifetime.
    Admitted(OwnedSemaphorePermit),
    /// Over the limit: finish negotiation only to say FATAL 53300 (holds a rejection permit).
    Reject(OwnedSemaphorePermit),
}

/// Runs one connection to completion. Never panics on client input; every error ends the
/// session with the right message to the client, if it can still be told one.
pub async fn handle(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    _alive: mpsc::Sender<()>,
) {
    let id = shared.next_session_id();
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
        let login_deadline = tokio::time::Instant::now() + shared.config.limits.login_timeout_ms;
        let mut stream = stream;
        let negotiated = tokio::time::timeout_at(login_deadline, negotiate(&mut stream)).await;
        let startup = match negotiated {
            Err(_) => {
                return say_fatal(
                    &mut stream,
                    &SessionError::LoginTimeout(shared.config.limits.login_timeout_ms),
                )
                .await;
            }
            Ok(Err(e)) => return say_fatal(&mut stream, &e).await,
            Ok(Ok(Negotiated::Cancel(key))) => return forward_cancel(&shared, &key).await,
            Ok(Ok(Negotiated::Startup(startup))) => startup,
        };
        let span = tracing::Span::current();
        span.record("user", startup.user());
        span.record("database", startup.database());
        span.record("application_name", startup.application_name());
        let _permit = match admission {
            Admission::Admitted(permit) => permit,
            Admission::Reject(_rejection) => {
                shared
                    .connections
                    .rejected_too_many
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    limit = shared.config.limits.max_clients,
                    "too many clients; rejected"
                );
                return say_fatal(
                    &mut stream,
                    &SessionError::TooManyClients(shared.config.limits.max_clients),
                )
                .await;
            }
        };
        let connected = tokio::time::timeout_at(login_deadline, connect_upstream(&shared)).await;
        let (upstream, upstream_addr) = match connected {
            Err(_) => {
                return say_fatal(
                    &mut stream,
                    &SessionError::LoginTimeout(shared.config.limits.login_timeout_ms),
                )
                .await;
            }
            Ok(Err(e)) => {
                shared
                    .connections
                    .upstream_connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "upstream unreachable");
                return say_fatal(&mut stream, &e).await;
            }
            Ok(Ok(pair)) => pair,
        };
        shared.connections.active.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(upstream = %upstream_addr, "connected upstream");
        let profile = shared
            .policy
            .profile_for(
                startup.user(),
                startup.database(),
                startup.application_name(),
            )
            .clone();
        tracing::debug!(profile = %profile.name, mode = profile.mode.as_str(), "policy profile");
        let outcome = relay::Relay::new(
            shared.clone(),
            stream,
            upstream,
            upstream_addr,
            login_deadline,
            profile,
        )
        .run(startup.raw)
        .await;
        shared.connections.active.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(()) => tracing::debug!("session closed"),
            Err(e) if e.is_disconnect() => {
                tracing::debug!(error = %e, side = ?e.side(), "session ended by disconnect")
            }
            Err(e) => tracing::info!(error = %e, side = ?e.side(), "session ended"),
        }
    }
    .instrument(span)
    .await
}

enum Negotiated {
    Startup(Startup),
    Cancel(CancelKey),
}

/// Reads initial packets until a StartupMessage or CancelRequest arrives.
async fn negotiate(stream: &mut TcpStream) -> Result<Negotiated, SessionError> {
    let (mut ssl_asked, mut gss_asked) = (false, false);
    loop {
        let packet = read_initial_packet(stream).await?;
        match startup::parse_initial(packet).map_err(SessionError::ClientProtocol)? {
            InitialPacket::SslRequest if !ssl_asked => {
                ssl_asked = true;
                // No TLS on the client side yet: `N` tells the client to continue in plaintext
                // (or to give up, if its sslmode requires TLS).
                stream
                    .write_all(b"N")
                    .await
                    .map_err(SessionError::ClientIo)?;
            }
            InitialPacket::GssEncRequest if !gss_asked => {
                gss_asked = true;
                stream
                    .write_all(b"N")
                    .await
                    .map_err(SessionError::ClientIo)?;
            }
            InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                return Err(SessionError::ClientProtocol(
                    "duplicate SSL or GSS encryption request".to_owned(),
                ));
            }
            InitialPacket::Cancel(key) => return Ok(Negotiated::Cancel(key)),
            InitialPacket::Startup(s) => return Ok(Negotiated::Startup(s)),
        }
    }
}

/// Reads one length-prefixed initial packet, bounded by PostgreSQL's 10,000-byte limit before
/// any allocation.
async fn read_initial_packet(stream: &mut TcpStream) -> Result<Bytes, SessionError> {
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

/// Resolves `upstream.address` and connects, trying each resolved address in turn.
async fn connect_upstream(shared: &Shared) -> Result<(TcpStream, SocketAddr), SessionError> {
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
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(e)) => last = fail(e.to_string()),
            Err(_) => last = fail(format!("timed out after {} ms", timeout.as_millis())),
        }
    }
    Err(last)
}

/// Forwards a client's CancelRequest to the upstream server that owns the key. PostgreSQL sends
/// no reply to a cancel request, so neither does ddlgate; unknown keys are dropped silently.
async fn forward_cancel(shared: &Shared, key: &CancelKey) {
    let Some(addr) = shared.cancel_keys.get(key).map(|e| *e.value()) else {
        tracing::debug!(pid = key.pid, "cancel request for an unknown key ignored");
        return;
    };
    shared
        .connections
        .cancels_forwarded
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(pid = key.pid, upstream = %addr, "forwarding cancel request");
    send_cancel(addr, key, shared.config.upstream.connect_timeout_ms).await;
}

/// Sends a CancelRequest for `key` to `addr` and waits (bounded) for the server to close the
/// connection, which it does once the request is processed.
pub(crate) async fn send_cancel(addr: SocketAddr, key: &CancelKey, timeout: Duration) {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&key.request_packet()).await?;
        let mut sink = [0u8; 16];
        while s.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, upstream = %addr, "could not send cancel request"),
        Err(_) => tracing::warn!(upstream = %addr, "cancel request timed out"),
    }
}

/// Tells the client why it is being disconnected (best effort, bounded) and logs it.
async fn say_fatal(stream: &mut TcpStream, error: &SessionError) {
    if error.is_disconnect() {
        tracing::debug!(error = %error, "client went away during startup");
    } else {
        tracing::info!(error = %error, side = ?error.side(), "session refused");
    }
    if let Some(msg) = error.to_client_response() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&msg).await?;
            stream.shutdown().await
        })
        .await;
    }
}
