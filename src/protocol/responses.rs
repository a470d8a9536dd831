//! Every message ddlgate itself says to a client, each from a named constructor with its
//! SQLSTATE, severity, a message a human understands and, where there is one, a hint.
//!
//! Messages are built with pgwire's message types and encoded once; ddlgate never re-encodes a
//! message it relays. A FATAL response is always the last thing a client receives before ddlgate
//! closes the connection, exactly as PostgreSQL behaves, so no ReadyForQuery follows it.

use bytes::BytesMut;
use pgwire::error::ErrorInfo;
use pgwire::messages::Message;
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};

use super::TxStatus;

/// SQLSTATE codes ddlgate uses, named as in PostgreSQL's errcodes.txt.
pub mod sqlstate {
    pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: &str = "08001";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
}

/// A message under construction: severity, code, message, optional detail and hint.
struct Say {
    info: ErrorInfo,
}

impl Say {
    fn new(severity: &str, code: &str, message: impl Into<String>) -> Say {
        let mut info = ErrorInfo::new(severity.to_owned(), code.to_owned(), message.into());
        // The non-localized severity (V) lets drivers that look for it (libpq ≥ 9.6) classify us.
        info.severity_nonlocalized = Some(severity.to_owned());
        Say { info }
    }

    fn detail(mut self, detail: impl Into<String>) -> Say {
        self.info.detail = Some(detail.into());
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Say {
        self.info.hint = Some(hint.into());
        self
    }

    fn error(self) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&ErrorResponse::from(self.info), &mut out);
        out
    }

    fn notice(self) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&NoticeResponse::from(self.info), &mut out);
        out
    }
}

fn encode<M: Message>(msg: &M, out: &mut BytesMut) {
    // Encoding only fails when a message exceeds pgwire's per-type size limit; ddlgate's
    // messages are short, human-written text, far below it.
    if let Err(e) = msg.encode(out) {
        tracing::error!(error = %e, "could not encode a ddlgate response");
    }
}

/// `CommandComplete` with the given tag, for a statement ddlgate ran on the client's behalf as
/// other statements (a recipe's steps): the client sees the tag of the statement it sent.
pub fn command_complete(tag: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(tag.len() + 6);
    encode(&CommandComplete::new(tag.to_owned()), &mut out);
    out
}

/// `ReadyForQuery` with the given status.
pub fn ready_for_query(status: TxStatus) -> BytesMut {
    let status = match status {
        TxStatus::Idle => TransactionStatus::Idle,
        TxStatus::InTransaction => TransactionStatus::Transaction,
        TxStatus::Failed => TransactionStatus::Error,
    };
    let mut out = BytesMut::with_capacity(6);
    encode(&ReadyForQuery::new(status), &mut out);
    out
}

/// The replies the server gives to the Bind and Describe of a utility statement (no
/// parameters, no rows) before it is executed: what a client sees of a unit whose statement
/// ddlgate ran as a recipe's steps. `describe` is the Describe's kind (`S` statement: a
/// ParameterDescription of no parameters and NoData; `P` portal: NoData), if the unit has one.
pub fn bound_utility(describe: Option<u8>) -> BytesMut {
    let mut out = BytesMut::with_capacity(16);
    super::framing::put_message(&mut out, super::backend::BIND_COMPLETE, &[]);
    if describe == Some(super::frontend::Describe::STATEMENT) {
        super::framing::put_message(&mut out, super::backend::PARAMETER_DESCRIPTION, &[0, 0]);
    }
    if describe.is_some() {
        super::framing::put_message(&mut out, super::backend::NO_DATA, &[]);
    }
    out
}

/// FATAL 08001: the upstream PostgreSQL could not be reached when the session started.
pub fn upstream_unreachable(address: &str, reason: &str) -> BytesMut {
    Say::new("FATAL", sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        format!("ddlgate could not connect to the upstream PostgreSQL server at {address}: {reason}"))
        .hint("Check that PostgreSQL is running and accepting TCP connections there, and that `upstream.address` in ddlgate's configuration is right.")
        .error()
}

/// FATAL 08006: the upstream connection broke while the session was in use.
pub fn upstream_lost() -> BytesMut {
    Say::new("FATAL", sqlstate::CONNECTION_FAILURE, "ddlgate lost its connection to the upstream PostgreSQL server")
        .detail("The server closed the connection unexpectedly or the network failed. The statement in progress, if any, may or may not have completed; an open transaction was rolled back by the server.")
        .hint("Reconnect and check the PostgreSQL server log.")
        .error()
}

/// FATAL 08P01: the client broke the protocol (malformed packet, bad length, …).
pub fn protocol_violation(what: &str) -> BytesMut {
    Say::new("FATAL", sqlstate::PROTOCOL_VIOLATION, what.to_owned())
        .hint("This is a bug in the client or its driver; ddlgate closed the connection rather than guess.")
        .error()
}

/// FATAL 08P01: the upstream server sent something ddlgate cannot relay.
pub fn upstream_protocol_violation(what: &str) -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::PROTOCOL_VIOLATION,
        format!("ddlgate received an invalid message from the upstream server: {what}"),
    )
    .error()
}

/// FATAL 54000: a message exceeded a configured size limit.
pub fn message_too_large(tag: char, len: usize, limit: usize) -> BytesMut {
    if tag == 'p' {
        // Not configurable: PostgreSQL's own cap on authentication messages.
        return Say::new(
            "FATAL",
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("authentication message is {len} bytes, more than the limit of {limit} bytes"),
        )
        .hint("PostgreSQL accepts password, SASL and GSS messages of at most 65,535 bytes.")
        .error();
    }
    let key = if tag == 'Q' || tag == 'P' {
        "limits.max_statement_bytes"
    } else {
        "limits.max_message_bytes"
    };
    Say::new(
        "FATAL",
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "message of type '{tag}' is {len} bytes, more than ddlgate's limit of {limit} bytes"
        ),
    )
    .hint(format!(
        "Send smaller statements (COPY for bulk data), or raise `{key}` in ddlgate's configuration."
    ))
    .error()
}

/// FATAL 08006: startup/authentication did not finish in time.
pub fn login_timeout() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::CONNECTION_FAILURE,
        "canceling authentication due to timeout",
    )
    .hint("The client did not complete startup within ddlgate's `limits.login_timeout_ms`.")
    .error()
}

/// FATAL 08006: no startup packet within `limits.startup_timeout_ms`.
pub fn startup_timeout() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::CONNECTION_FAILURE,
        "canceling startup due to timeout",
    )
    .hint(
        "The client did not send its startup packet within ddlgate's `limits.startup_timeout_ms`.",
    )
    .error()
}

/// FATAL 53300: too many connections are still logging in.
pub fn too_many_unauthenticated() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already",
    )
    .detail("Too many connections are still logging in.")
    .hint("ddlgate's `limits.max_unauthenticated` is reached; try again in a moment.")
    .error()
}

/// FATAL 53300: the configured client limit is reached.
pub fn too_many_clients() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already",
    )
    .hint("ddlgate's `limits.max_clients` is reached; close idle sessions or raise the limit.")
    .error()
}

/// FATAL 57P01: ddlgate is shutting down.
pub fn admin_shutdown() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command",
    )
    .detail("ddlgate is shutting down.")
    .hint("Reconnect in a moment; your open transaction, if any, was rolled back.")
    .error()
}

/// A NoticeResponse from ddlgate (policy warnings, rewrite announcements). `severity` is
/// `NOTICE` or `WARNING`.
pub fn notice(
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) -> BytesMut {
    let mut say = Say::new(severity, code, message.to_owned());
    if let Some(d) = detail {
        say = say.detail(d);
    }
    if let Some(h) = hint {
        say = say.hint(h);
    }
    say.notice()
}

/// FATAL 28000: `tls.mode = "require"` and the client did not ask for TLS (what PostgreSQL says
/// when only a `hostssl` line would match, in ddlgate's words).
pub fn tls_required() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
        "ddlgate requires TLS: connect with sslmode=require",
    )
    .hint("ddlgate's `tls.mode` is \"require\": plaintext connections are refused. Use sslmode=require, verify-ca or verify-full.")
    .error()
}

/// FATAL 08P01: bytes arrived after an SSLRequest/GSSENCRequest before ddlgate answered it.
/// They were sent in plaintext before any handshake and may have been injected by a
/// man-in-the-middle (PostgreSQL's CVE-2021-23214 check).
pub fn unencrypted_after_ssl_request() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::PROTOCOL_VIOLATION,
        "received unencrypted data after SSL request",
    )
    .detail("This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.")
    .error()
}

/// FATAL 08001: the TLS connection to the upstream could not be set up.
pub fn upstream_tls_failed(address: &str, reason: &str) -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        format!("ddlgate could not set up TLS to the upstream PostgreSQL server at {address}: {reason}"),
    )
    .hint("Check `upstream.tls` and `upstream.tls_ca_file` in ddlgate's configuration against the server's `ssl` settings and certificate.")
    .error()
}

/// FATAL 08P01: the client wants SCRAM channel binding, which cannot survive ddlgate's TLS
/// termination towards a TLS upstream (the server would refuse the login as a downgrade).
pub fn channel_binding_unavailable() -> BytesMut {
    Say::new(
        "FATAL",
        sqlstate::PROTOCOL_VIOLATION,
        "SCRAM channel binding cannot pass through ddlgate",
    )
    .detail("ddlgate terminates TLS and presents a different certificate than the PostgreSQL server, which is reached over TLS and refuses a client that supports channel binding but does not use it.")
    .hint("Connect with channel_binding=disable, give ddlgate the same certificate and key as the PostgreSQL server (channel binding then passes through), or set upstream.tls = \"disable\".")
    .error()
}

/// FATAL 0A000: the client asked for a feature ddlgate cannot relay.
pub fn unsupported(what: &str) -> BytesMut {
    Say::new("FATAL", sqlstate::FEATURE_NOT_SUPPORTED, what.to_owned()).error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorFields, framing};

    fn decode(buf: &[u8]) -> (u8, ErrorFields) {
        let framing::Frame::Header { tag, total } = framing::scan(buf, 1 << 20).expect("valid")
        else {
            panic!("incomplete")
        };
        assert_eq!(total, buf.len(), "exactly one message");
        (tag, ErrorFields::parse(framing::body(buf)))
    }

    #[test]
    fn every_fatal_carries_severity_code_and_message() {
        for (msg, code) in [
            (
                upstream_unreachable("127.0.0.1:5432", "Connection refused"),
                "08001",
            ),
            (upstream_lost(), "08006"),
            (protocol_violation("bad"), "08P01"),
            (message_too_large('Q', 10, 5), "54000"),
            (login_timeout(), "08006"),
            (too_many_clients(), "53300"),
            (admin_shutdown(), "57P01"),
            (unsupported("x"), "0A000"),
            (tls_required(), "28000"),
            (unencrypted_after_ssl_request(), "08P01"),
            (upstream_tls_failed("db:5432", "handshake"), "08001"),
            (channel_binding_unavailable(), "08P01"),
        ] {
            let (tag, f) = decode(&msg);
            assert_eq!(tag, b'E');
            assert_eq!(f.severity, "FATAL");
            assert_eq!(f.code, code);
            assert!(!f.message.is_empty());
        }
    }

    #[test]
    fn unreachable_names_the_upstream() {
        let (_, f) = decode(&upstream_unreachable("db:5432", "Connection refused"));
        assert!(f.message.contains("db:5432"), "{}", f.message);
    }

    #[test]
    fn ready_for_query_encodes_status() {
        assert_eq!(&ready_for_query(TxStatus::Idle)[..], b"Z\0\0\0\x05I");
        assert_eq!(&ready_for_query(TxStatus::Failed)[..], b"Z\0\0\0\x05E");
    }

    #[test]
    fn command_complete_encodes_tag() {
        assert_eq!(
            &command_complete("ALTER TABLE")[..],
            b"C\0\0\0\x10ALTER TABLE\0"
        );
    }
}
