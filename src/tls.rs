//! TLS on both sides of the proxy: the certificates and keys loaded once at start
//! ([`TlsContext`]), the byte stream that is either plain TCP or TLS ([`Conn`]), and what SCRAM
//! channel binding can and cannot survive ([`ChannelBinding`]).
//!
//! Where it sits in the flow: `session` negotiates TLS with the client (SSLRequest answered `S`,
//! or a direct TLS ClientHello) and with the upstream (ddlgate sends SSLRequest first), using the
//! acceptor and connector built here, then hands both [`Conn`]s to the relay, which splits them
//! into boxed halves. The relay's framing code never knows which kind of stream it reads.
//!
//! Client-facing TLS is *terminated*: ddlgate decrypts, inspects and re-encrypts (or forwards in
//! plaintext). That is why SCRAM channel binding (`SCRAM-SHA-256-PLUS`, binding to the server
//! certificate's hash) cannot pass through unless both legs present the same certificate.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{ClientTlsMode, Config, UpstreamTlsMode};
use crate::error::{ConfigError, SessionError};
use crate::protocol::sasl;

/// The ALPN protocol name PostgreSQL 17 registered. libpq 17 offers it on every TLS connection
/// and a direct TLS connection (`sslnegotiation=direct`) must carry it.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The first byte of a TLS handshake record. An initial packet starts with its length, whose
/// first byte is 0 for any length up to PostgreSQL's 10,000-byte limit, so a connection whose
/// first byte is 0x16 is a direct TLS ClientHello.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The read half of a client or upstream stream, plain or TLS (see [`BoxRead`]'s `poll_read`
/// for what it adds to a plain TCP half).
pub struct BoxRead {
    inner: ReadInner,
    /// Plain TCP only: the last poll of this half returned `Pending` after the runtime's reactor
    /// took this waker (identified by its data and vtable pointers) to wake when the socket
    /// turns readable.
    armed: Option<WakerId>,
}

enum ReadInner {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    Other(Box<dyn AsyncRead + Send + Unpin>),
    /// The socket was taken out ([`detach_plain`]): every read fails.
    Detached,
}

/// A waker's identity, compared without cloning it (the reactor holds a clone while it is
/// registered, so the pointers cannot be reused meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WakerId(usize, usize);

impl WakerId {
    fn of(waker: &std::task::Waker) -> WakerId {
        WakerId(
            waker.data() as usize,
            std::ptr::from_ref(waker.vtable()) as usize,
        )
    }
}

impl BoxRead {
    fn tcp(half: tokio::net::tcp::OwnedReadHalf) -> BoxRead {
        BoxRead {
            inner: ReadInner::Tcp(half),
            armed: None,
        }
    }

    fn other(half: impl AsyncRead + Send + Unpin + 'static) -> BoxRead {
        BoxRead {
            inner: ReadInner::Other(Box::new(half)),
            armed: None,
        }
    }

    /// The reactor holds `waker` for this half and has seen no readiness since: a poll with it
    /// would return `Pending` (see `poll_read`). Lets a caller skip setting up a read.
    pub fn is_waiting(&self, waker: &std::task::Waker) -> bool {
        match &self.inner {
            ReadInner::Tcp(half) => self.armed == Some(WakerId::of(waker)) && !seen_readable(half),
            ReadInner::Other(_) | ReadInner::Detached => false,
        }
    }
}

/// The reactor has seen the socket readable (or closed) since a read last found it empty. Only
/// looks: `try_io` with an operation that does nothing reads the readiness, without a system
/// call and without clearing it.
fn seen_readable(half: &tokio::net::tcp::OwnedReadHalf) -> bool {
    half.as_ref()
        .try_io(tokio::io::Interest::READABLE, || Ok(()))
        .is_ok()
}

impl AsyncRead for BoxRead {
    /// A plain TCP half polled again with the waker the reactor already holds for it, while
    /// the reactor has seen no readiness since, is `Pending` at once: the waker will be woken
    /// when the socket turns readable, so the poll would only take the registration's lock to
    /// find that out. The relay polls both halves on every turn and one of them is usually
    /// still waiting, so this saves a registration per turn (two or three per round trip).
    ///
    /// Sound because the reactor sets a socket's readiness before it wakes the reader's waker
    /// and keeps it set until a read finds the socket empty (`seen_readable` only looks at it),
    /// and because the half is armed only when the `Pending` came from the reactor: a
    /// `Pending` forced by the task's cooperative budget registers nothing. Any other waker
    /// polls for real.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.inner {
            ReadInner::Tcp(half) => {
                let id = WakerId::of(cx.waker());
                if this.armed == Some(id) && !seen_readable(half) {
                    return Poll::Pending;
                }
                let polled = Pin::new(half).poll_read(cx, buf);
                this.armed = (polled.is_pending() && tokio::task::coop::has_budget_remaining())
                    .then_some(id);
                polled
            }
            ReadInner::Other(half) => Pin::new(half).poll_read(cx, buf),
            ReadInner::Detached => Poll::Ready(Err(detached_error())),
        }
    }
}
/// The write half of a client or upstream stream, plain or TLS.
pub struct BoxWrite {
    inner: WriteInner,
}

enum WriteInner {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Other(Box<dyn AsyncWrite + Send + Unpin>),
    /// The socket was taken out ([`detach_plain`]): every write fails.
    Detached,
}

impl BoxWrite {
    fn tcp(half: tokio::net::tcp::OwnedWriteHalf) -> BoxWrite {
        BoxWrite {
            inner: WriteInner::Tcp(half),
        }
    }

    fn other(half: impl AsyncWrite + Send + Unpin + 'static) -> BoxWrite {
        BoxWrite {
            inner: WriteInner::Other(Box::new(half)),
        }
    }
}

/// Takes a plain TCP stream out of its two halves, deregistered from the runtime's reactor,
/// for the steady-state relay (`crate::fastpath`); the halves are left detached (every read and
/// write fails). `None`, and nothing changed, for a TLS stream.
pub fn detach_plain(
    r: &mut BoxRead,
    w: &mut BoxWrite,
) -> Option<std::io::Result<std::net::TcpStream>> {
    if !is_plain(r, w) {
        return None;
    }
    let (ReadInner::Tcp(rh), WriteInner::Tcp(wh)) = (
        std::mem::replace(&mut r.inner, ReadInner::Detached),
        std::mem::replace(&mut w.inner, WriteInner::Detached),
    ) else {
        return None;
    };
    r.armed = None;
    Some(
        rh.reunite(wh)
            .map_err(|_| io::Error::other("halves of different streams"))
            .and_then(tokio::net::TcpStream::into_std),
    )
}

/// Both halves of one plain TCP stream, attached: what [`detach_plain`] takes.
pub fn is_plain(r: &BoxRead, w: &BoxWrite) -> bool {
    matches!(r.inner, ReadInner::Tcp(_)) && matches!(w.inner, WriteInner::Tcp(_))
}

/// The reverse of [`detach_plain`]: registers `stream` with the current runtime's reactor and
/// splits it into the halves the relay uses.
pub fn attach_plain(stream: std::net::TcpStream) -> std::io::Result<(BoxRead, BoxWrite)> {
    let (r, w) = tokio::net::TcpStream::from_std(stream)?.into_split();
    Ok((BoxRead::tcp(r), BoxWrite::tcp(w)))
}

fn detached_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "socket detached from this half",
    )
}

impl BoxWrite {
    /// Not detached ([`detach_plain`]): writes reach a socket.
    pub fn is_attached(&self) -> bool {
        match &self.inner {
            WriteInner::Tcp(_) | WriteInner::Other(_) => true,
            WriteInner::Detached => false,
        }
    }
}

impl AsyncWrite for BoxWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            WriteInner::Tcp(h) => Pin::new(h).poll_write(cx, buf),
            WriteInner::Other(h) => Pin::new(h).poll_write(cx, buf),
            WriteInner::Detached => Poll::Ready(Err(detached_error())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            WriteInner::Tcp(h) => Pin::new(h).poll_write_vectored(cx, bufs),
            WriteInner::Other(h) => Pin::new(h).poll_write_vectored(cx, bufs),
            WriteInner::Detached => Poll::Ready(Err(detached_error())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            WriteInner::Tcp(h) => h.is_write_vectored(),
            WriteInner::Other(h) => h.is_write_vectored(),
            WriteInner::Detached => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            WriteInner::Tcp(h) => Pin::new(h).poll_flush(cx),
            WriteInner::Other(h) => Pin::new(h).poll_flush(cx),
            WriteInner::Detached => Poll::Ready(Err(detached_error())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            WriteInner::Tcp(h) => Pin::new(h).poll_shutdown(cx),
            WriteInner::Other(h) => Pin::new(h).poll_shutdown(cx),
            WriteInner::Detached => Poll::Ready(Err(detached_error())),
        }
    }
}

/// The TLS material of one proxy, loaded once at start (a bad file is a start-up error naming
/// its key, never a per-session surprise).
#[derive(Clone, Default)]
pub struct TlsContext {
    /// `tls.mode`: whether plaintext clients are still accepted.
    pub client_mode: ClientTlsMode,
    /// Client-facing TLS; `None` when `tls.mode = "disable"` (SSLRequest is answered `N`).
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// ddlgate's own certificate, to tell whether channel binding survives: an upstream that
    /// presents the very same certificate gives the same `tls-server-end-point` hash.
    own_cert: Option<CertificateDer<'static>>,
    /// `upstream.tls`.
    pub upstream_mode: UpstreamTlsMode,
    /// Upstream TLS; `None` when `upstream.tls = "disable"`.
    connector: Option<tokio_rustls::TlsConnector>,
    /// The name the upstream certificate must carry (verify-full): the host of
    /// `upstream.address`, a DNS name or an IP address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("client_mode", &self.client_mode)
            .field("upstream_mode", &self.upstream_mode)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Builds the acceptor and connector the configuration asks for, reading every file once.
    /// Errors name the configuration key whose file is missing or unusable.
    pub fn load(config: &Config) -> Result<TlsContext, ConfigError> {
        let mut ctx = TlsContext {
            client_mode: config.tls.mode,
            upstream_mode: config.upstream.tls,
            ..TlsContext::default()
        };
        if config.tls.mode != ClientTlsMode::Disable {
            let certs = load_certs(&config.tls.cert_file, "tls.cert_file")?;
            let key = load_key(&config.tls.key_file)?;
            ctx.own_cert = certs.first().cloned();
            let mut server = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid("tls.mode", e))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| invalid("tls.key_file", format!("does not fit tls.cert_file: {e}")))?;
            server.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
            ctx.acceptor = Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)));
        }
        if config.upstream.tls != UpstreamTlsMode::Disable {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid("upstream.tls", e))?;
            let client = if config.upstream.tls == UpstreamTlsMode::VerifyFull {
                let mut roots = RootCertStore::empty();
                for cert in load_certs(&config.upstream.tls_ca_file, "upstream.tls_ca_file")? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid("upstream.tls_ca_file", e))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            } else {
                // prefer/require encrypt but do not authenticate the server, exactly like
                // libpq's sslmode of the same names.
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
                    .with_no_client_auth()
            };
            ctx.connector = Some(tokio_rustls::TlsConnector::from(Arc::new(client)));
            ctx.server_name = Some(upstream_server_name(&config.upstream.address)?);
        }
        Ok(ctx)
    }

    /// Client-facing TLS is configured (`tls.mode` is `allow` or `require`).
    pub fn accepts_tls(&self) -> bool {
        self.acceptor.is_some()
    }

    /// Upstream connections start with an SSLRequest (`upstream.tls` is not `disable`).
    pub fn upstream_tls(&self) -> bool {
        self.connector.is_some()
    }

    /// How SCRAM channel binding fares between this client and its upstream connection.
    pub fn channel_binding(&self, client: &Conn, upstream: &Conn) -> ChannelBinding {
        let same_cert = client.is_tls()
            && self
                .own_cert
                .as_ref()
                .is_some_and(|own| upstream.peer_end_entity() == Some(own));
        if same_cert {
            ChannelBinding::PassThrough
        } else {
            ChannelBinding::Strip {
                upstream_tls: upstream.is_tls(),
                awaiting_initial_response: false,
            }
        }
    }

    /// Server side of a TLS handshake on a client connection.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<Conn> {
        let acceptor = self
            .acceptor
            .as_ref()
            .ok_or_else(|| io::Error::other("client-facing TLS is not configured"))?;
        let tls = acceptor.accept(tcp).await?;
        Ok(Conn::Tls(Box::new(tls.into())))
    }

    /// Client side of a TLS handshake on an upstream connection (after its `S`).
    pub(crate) async fn connect(&self, tcp: TcpStream) -> io::Result<Conn> {
        let (Some(connector), Some(name)) = (&self.connector, &self.server_name) else {
            return Err(io::Error::other("upstream TLS is not configured"));
        };
        let tls = connector.connect(name.clone(), tcp).await?;
        Ok(Conn::Tls(Box::new(tls.into())))
    }
}

/// ring: a small, C-only build (no cmake), and one explicit provider so that nothing depends on
/// rustls' process-wide default.
/// TLS for ddlgate's own client tools (`ddlgate backfill`): with `ca_file`, the server's
/// certificate must chain to one of its certificates and name the host (libpq's
/// `verify-full`); without, the connection is encrypted but the server not authenticated
/// (libpq's `require`), as `upstream.tls` does.
pub fn tool_client_config(ca_file: Option<&Path>) -> Result<ClientConfig, ConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("--ca-file", e))?;
    Ok(match ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path, "--ca-file")? {
                roots.add(cert).map_err(|e| invalid("--ca-file", e))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
            .with_no_client_auth(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

fn load_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        invalid(
            key,
            format!("{}: cannot read PEM certificates: {e}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{}: no PEM certificate found", path.display()),
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        invalid(
            "tls.key_file",
            format!("{}: cannot read a PEM private key: {e}", path.display()),
        )
    })
}

/// The host part of `host:port` (an IPv6 literal in brackets loses them), as a TLS server name.
fn upstream_server_name(address: &str) -> Result<ServerName<'static>, ConfigError> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|e| {
        invalid(
            "upstream.address",
            format!("host {host:?} is not a valid TLS server name: {e}"),
        )
    })
}

/// `upstream.tls = "prefer" | "require"`: any certificate is accepted, but the handshake
/// signatures are still checked (so the peer holds the key of the certificate it presents).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One side's byte stream: plain TCP, or TLS over TCP (client- or server-side handshake).
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// Between giving the TCP stream to a TLS handshake and getting it back; reads and writes
    /// fail (a login timeout in the middle of a handshake has nothing it could say).
    Upgrading,
}

impl Conn {
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Conn::Tls(s) => s.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }

    /// The peer's end-entity certificate (upstream connections: the server's).
    pub fn peer_end_entity(&self) -> Option<&CertificateDer<'static>> {
        match self {
            Conn::Tls(s) => s.get_ref().1.peer_certificates()?.first(),
            _ => None,
        }
    }

    /// The plain TCP stream, for the TLS handshake; leaves `Upgrading` behind.
    pub(crate) fn take_tcp(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Conn::Upgrading) {
            Conn::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Splits into independently usable halves for the relay. Plain TCP splits without a lock
    /// (`into_split`); a TLS session is one state machine, so its halves share it through
    /// `tokio::io::split` — uncontended, since one task drives both.
    pub fn into_split(self) -> (BoxRead, BoxWrite) {
        match self {
            Conn::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (BoxRead::tcp(r), BoxWrite::tcp(w))
            }
            Conn::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (BoxRead::other(TlsEof(r)), BoxWrite::other(w))
            }
            Conn::Upgrading => (
                BoxRead::other(tokio::io::empty()),
                BoxWrite::other(tokio::io::sink()),
            ),
        }
    }
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake in progress")
}

/// A TLS peer that closes TCP without a close_notify alert ends the stream like an orderly
/// close, as PostgreSQL treats it: the protocol is self-delimiting, so truncation cannot go
/// unnoticed, and libpq does not always send the alert.
fn eof_tolerant(r: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
    match r {
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
        other => other,
    }
}

struct TlsEof<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for TlsEof<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        eof_tolerant(Pin::new(&mut self.0).poll_read(cx, buf))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => eof_tolerant(Pin::new(s.as_mut()).poll_read(cx, buf)),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

/// What happens to SCRAM channel binding in one session. Binding data is the hash of the
/// server certificate the *client* saw (`tls-server-end-point`), and PostgreSQL checks it
/// against its own certificate — so it only survives TLS termination when ddlgate presents the
/// upstream's own certificate. Everything else must look like a server without channel binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// The client is on TLS and the upstream presented ddlgate's own certificate: the binding
    /// data is identical on both legs, so SCRAM-SHA-256-PLUS is relayed untouched.
    PassThrough,
    /// SCRAM-SHA-256-PLUS is removed from the AuthenticationSASL mechanism list, so the client
    /// picks SCRAM-SHA-256 (a plaintext libpq client would otherwise give up: "server offered
    /// SCRAM-SHA-256-PLUS authentication over a non-SSL connection").
    Strip {
        /// The upstream connection is TLS. PostgreSQL then refuses a client that says it
        /// supports channel binding but thinks the server does not (gs2 flag `y`) as a
        /// downgrade attack; ddlgate refuses it first, with an explanation.
        upstream_tls: bool,
        /// The list was stripped; the next PasswordMessage is the SASLInitialResponse.
        awaiting_initial_response: bool,
    },
}

impl ChannelBinding {
    /// Whether AuthenticationSASL messages must be looked at.
    pub fn filters(&self) -> bool {
        matches!(self, ChannelBinding::Strip { .. })
    }

    /// An upstream Authentication message body (during startup). Returns the frame to send the
    /// client instead, when SCRAM-SHA-256-PLUS was offered and must not be.
    pub fn on_authentication(&mut self, body: &[u8]) -> Option<Bytes> {
        let ChannelBinding::Strip {
            upstream_tls,
            awaiting_initial_response,
        } = self
        else {
            return None;
        };
        let frame = sasl::without_scram_plus(body)?;
        *awaiting_initial_response = *upstream_tls;
        Some(frame)
    }

    /// The next client PasswordMessage is a SASLInitialResponse that must be checked.
    pub fn awaits_initial_response(&self) -> bool {
        matches!(
            self,
            ChannelBinding::Strip {
                awaiting_initial_response: true,
                ..
            }
        )
    }

    /// A client PasswordMessage body while `awaits_initial_response`: refuses the gs2 flag `y`
    /// that the TLS upstream would refuse less helpfully. Only the flag byte is looked at; the
    /// message is never logged.
    pub fn on_initial_response(&mut self, body: &[u8]) -> Result<(), SessionError> {
        if let ChannelBinding::Strip {
            awaiting_initial_response,
            ..
        } = self
        {
            *awaiting_initial_response = false;
        }
        match sasl::initial_response_gs2_flag(body) {
            Some(sasl::Gs2Flag::ClientSupportsBinding) => Err(SessionError::ChannelBinding),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_the_host_of_the_upstream_address() {
        assert_eq!(
            upstream_server_name("db.internal:5432").expect("dns"),
            ServerName::try_from("db.internal").expect("name")
        );
        assert!(matches!(
            upstream_server_name("127.0.0.1:5432").expect("ip"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            upstream_server_name("[::1]:5432").expect("ipv6"),
            ServerName::IpAddress(_)
        ));
        let err = upstream_server_name("bad_name!:5432").expect_err("invalid");
        assert!(err.to_string().contains("upstream.address"), "{err}");
    }

    #[test]
    fn missing_files_are_named_by_their_key() {
        let mut cfg = Config::default();
        cfg.tls.mode = ClientTlsMode::Require;
        cfg.tls.cert_file = "/nonexistent/server.crt".into();
        cfg.tls.key_file = "/nonexistent/server.key".into();
        let err = TlsContext::load(&cfg).expect_err("missing cert");
        assert!(err.to_string().contains("tls.cert_file"), "{err}");
        assert!(err.to_string().contains("/nonexistent/server.crt"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let mut cfg = Config::default();
        cfg.upstream.tls = UpstreamTlsMode::VerifyFull;
        cfg.upstream.tls_ca_file = empty;
        let err = TlsContext::load(&cfg).expect_err("no certificate");
        assert!(err.to_string().contains("upstream.tls_ca_file"), "{err}");
    }

    #[test]
    fn disabled_tls_loads_nothing() {
        let ctx = TlsContext::load(&Config::default()).expect("defaults");
        assert!(!ctx.accepts_tls());
        assert!(!ctx.upstream_tls());
    }

    #[test]
    fn strip_refuses_a_downgrade_only_towards_a_tls_upstream() {
        let mut offer = 10u32.to_be_bytes().to_vec();
        offer.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let mut initial = b"SCRAM-SHA-256\0".to_vec();
        let data = b"y,,n=,r=abc";
        initial.extend_from_slice(&(data.len() as u32).to_be_bytes());
        initial.extend_from_slice(data);

        let mut cb = ChannelBinding::Strip {
            upstream_tls: true,
            awaiting_initial_response: false,
        };
        assert!(cb.on_authentication(&offer).is_some());
        assert!(cb.awaits_initial_response());
        assert!(matches!(
            cb.on_initial_response(&initial),
            Err(SessionError::ChannelBinding)
        ));
        assert!(!cb.awaits_initial_response());

        let mut cb = ChannelBinding::Strip {
            upstream_tls: false,
            awaiting_initial_response: false,
        };
        assert!(cb.on_authentication(&offer).is_some());
        assert!(!cb.awaits_initial_response());

        let mut cb = ChannelBinding::PassThrough;
        assert!(cb.on_authentication(&offer).is_none());
    }

    /// A waker that counts its wake-ups.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counting>, std::task::Waker) {
        let c = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
        (c.clone(), std::task::Waker::from(c))
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = TcpStream::connect(listener.local_addr().expect("addr"));
        let (a, b) = tokio::join!(a, listener.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    fn poll_once(r: &mut BoxRead, waker: &std::task::Waker, out: &mut [u8]) -> Poll<usize> {
        let mut cx = Context::from_waker(waker);
        let mut buf = ReadBuf::new(out);
        match Pin::new(r).poll_read(&mut cx, &mut buf) {
            Poll::Ready(r) => {
                r.expect("read");
                Poll::Ready(buf.filled().len())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Lets the reactor run until `counter` was woken (at most 5 s).
    async fn woken(counter: &Counting) {
        for _ in 0..5000 {
            if counter.0.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("the waker was never woken");
    }

    #[tokio::test]
    async fn a_plain_half_polled_again_while_waiting_is_still_woken_by_data_and_by_close() {
        use tokio::io::AsyncWriteExt;
        let (mut peer, ours) = tcp_pair().await;
        let (mut r, _w) = Conn::Plain(ours).into_split();
        let mut out = [0u8; 64];
        let (first, w1) = counting();
        assert!(poll_once(&mut r, &w1, &mut out).is_pending());
        // The same waker again, twice: still waiting, and still registered.
        assert!(poll_once(&mut r, &w1, &mut out).is_pending());
        assert!(poll_once(&mut r, &w1, &mut out).is_pending());
        peer.write_all(b"hello").await.expect("write");
        woken(&first).await;
        assert_eq!(poll_once(&mut r, &w1, &mut out), Poll::Ready(5));
        assert_eq!(&out[..5], b"hello");
        // Waiting again, then polled by another waker: that one is registered instead and is
        // the one woken.
        assert!(poll_once(&mut r, &w1, &mut out).is_pending());
        let (second, w2) = counting();
        assert!(poll_once(&mut r, &w2, &mut out).is_pending());
        assert!(poll_once(&mut r, &w2, &mut out).is_pending());
        peer.write_all(b"again").await.expect("write");
        woken(&second).await;
        assert_eq!(poll_once(&mut r, &w2, &mut out), Poll::Ready(5));
        // The peer closing wakes a waiting half too, and reads as the end of the stream.
        let (third, w3) = counting();
        assert!(poll_once(&mut r, &w3, &mut out).is_pending());
        assert!(poll_once(&mut r, &w3, &mut out).is_pending());
        drop(peer);
        woken(&third).await;
        assert_eq!(poll_once(&mut r, &w3, &mut out), Poll::Ready(0));
    }

    #[tokio::test]
    async fn a_pending_forced_by_the_task_budget_does_not_count_as_waiting() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Another socket with plenty to read uses up the task's budget, one byte a poll.
        let (mut busy_peer, busy) = tcp_pair().await;
        busy_peer.write_all(&[0u8; 4096]).await.expect("write");
        busy.readable().await.expect("readable");
        let (mut busy, _bw) = Conn::Plain(busy).into_split();
        let (mut peer, ours) = tcp_pair().await;
        let (mut r, _w) = Conn::Plain(ours).into_split();
        let mut byte = [0u8; 1];
        let mut out = [0u8; 64];
        // A read that empties the socket: the reactor's readiness for it is cleared.
        peer.write_all(b"warm").await.expect("write");
        assert_eq!(r.read(&mut out).await.expect("read"), 4);
        std::future::poll_fn(|cx| {
            while tokio::task::coop::has_budget_remaining() {
                let _ = poll_once(&mut busy, cx.waker(), &mut byte);
            }
            // Refused by the budget before the reactor is asked: nothing is registered, so
            // the next poll with this task's waker must not be skipped.
            assert!(poll_once(&mut r, cx.waker(), &mut out).is_pending());
            Poll::Ready(())
        })
        .await;
        tokio::task::yield_now().await;
        let read = async {
            let n = r.read(&mut out).await.expect("read");
            assert_eq!(&out[..n], b"late");
        };
        let write = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            peer.write_all(b"late").await.expect("write");
        };
        tokio::select! {
            biased;
            _ = tokio::time::sleep(std::time::Duration::from_secs(3)) => {
                panic!("the read was never woken by the data")
            }
            _ = async { tokio::join!(read, write) } => {}
        }
    }
}
