//! Error types, one `thiserror` enum per layer. Classification lives on the error: which side
//! caused it (`side()`), whether it is just a disconnect (`is_disconnect()`), and what — if
//! anything — the client should be told (`to_client_response()`).

use std::io;
use std::path::PathBuf;

use bytes::BytesMut;

use crate::protocol::responses;

/// Configuration could not be loaded or is invalid. The message always names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Load(String),
    #[error("invalid configuration: `{key}` {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn from_config(e: config::ConfigError) -> Self {
        ConfigError::Load(e.to_string())
    }
}

/// Who is at fault for a session ending, used for logs and (later) metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client i/o: {0}")]
    ClientIo(#[source] io::Error),
    #[error("upstream i/o: {0}")]
    UpstreamIo(#[source] io::Error),
    #[error("could not connect to upstream {address}: {reason}")]
    UpstreamConnect { address: String, reason: String },
    #[error("client protocol violation: {0}")]
    ClientProtocol(String),
    #[error("client message too large: {len} bytes for message type {tag:?} (limit {limit})")]
    MessageTooLarge { tag: char, len: usize, limit: usize },
    #[error("upstream protocol violation: {0}")]
    UpstreamProtocol(String),
    #[error("client did not finish startup within {0:?}")]
    LoginTimeout(std::time::Duration),
    #[error("client did not send its startup packet within {0:?}")]
    StartupTimeout(std::time::Duration),
    #[error("too many clients (limit {0})")]
    TooManyClients(usize),
    #[error("too many connections logging in (limit {0})")]
    TooManyUnauthenticated(usize),
    #[error("plaintext client refused: tls.mode is \"require\"")]
    TlsRequired,
    #[error("client sent unencrypted data after its SSL request")]
    PlaintextAfterSslRequest,
    #[error("TLS handshake with the client failed: {0}")]
    ClientTlsHandshake(#[source] io::Error),
    #[error("TLS to upstream {address} failed: {reason}")]
    UpstreamTls { address: String, reason: String },
    #[error(
        "client offered SCRAM channel binding, which cannot pass through ddlgate's TLS termination"
    )]
    ChannelBinding,
    #[error("ddlgate is shutting down")]
    Shutdown,
}

impl From<crate::protocol::preauth::Refusal> for SessionError {
    fn from(r: crate::protocol::preauth::Refusal) -> Self {
        use crate::protocol::preauth::Refusal;
        match r {
            Refusal::BadLength { tag, declared } => SessionError::ClientProtocol(format!(
                "invalid message length {declared} for message type '{}'",
                tag.escape_ascii()
            )),
            Refusal::TooLarge { tag, len, limit } => SessionError::MessageTooLarge {
                tag: tag as char,
                len,
                limit,
            },
        }
    }
}

impl SessionError {
    pub fn side(&self) -> Side {
        match self {
            SessionError::ClientIo(_)
            | SessionError::ClientProtocol(_)
            | SessionError::MessageTooLarge { .. }
            | SessionError::LoginTimeout(_)
            | SessionError::StartupTimeout(_)
            | SessionError::TooManyClients(_)
            | SessionError::TooManyUnauthenticated(_)
            | SessionError::TlsRequired
            | SessionError::PlaintextAfterSslRequest
            | SessionError::ClientTlsHandshake(_) => Side::Client,
            SessionError::UpstreamIo(_)
            | SessionError::UpstreamConnect { .. }
            | SessionError::UpstreamTls { .. }
            | SessionError::UpstreamProtocol(_) => Side::Upstream,
            SessionError::Shutdown | SessionError::ChannelBinding => Side::Proxy,
        }
    }

    /// A peer simply went away: logged at debug, not as an error.
    pub fn is_disconnect(&self) -> bool {
        let io = match self {
            SessionError::ClientIo(e) | SessionError::UpstreamIo(e) => e,
            _ => return false,
        };
        matches!(
            io.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        )
    }

    /// The FATAL ErrorResponse the client gets before ddlgate closes its connection, if the
    /// client can still be told anything.
    pub fn to_client_response(&self) -> Option<BytesMut> {
        match self {
            // Nothing can be said to a client whose TLS handshake failed.
            SessionError::ClientIo(_) | SessionError::ClientTlsHandshake(_) => None,
            SessionError::UpstreamIo(_) => Some(responses::upstream_lost()),
            SessionError::UpstreamConnect { address, reason } => {
                Some(responses::upstream_unreachable(address, reason))
            }
            SessionError::ClientProtocol(what) => Some(responses::protocol_violation(what)),
            SessionError::MessageTooLarge { tag, len, limit } => {
                Some(responses::message_too_large(*tag, *len, *limit))
            }
            SessionError::UpstreamProtocol(what) => {
                Some(responses::upstream_protocol_violation(what))
            }
            SessionError::LoginTimeout(_) => Some(responses::login_timeout()),
            SessionError::StartupTimeout(_) => Some(responses::startup_timeout()),
            SessionError::TooManyClients(_) => Some(responses::too_many_clients()),
            SessionError::TooManyUnauthenticated(_) => Some(responses::too_many_unauthenticated()),
            SessionError::Shutdown => Some(responses::admin_shutdown()),
            SessionError::TlsRequired => Some(responses::tls_required()),
            SessionError::PlaintextAfterSslRequest => {
                Some(responses::unencrypted_after_ssl_request())
            }
            SessionError::UpstreamTls { address, reason } => {
                Some(responses::upstream_tls_failed(address, reason))
            }
            SessionError::ChannelBinding => Some(responses::channel_binding_unavailable()),
        }
    }
}
