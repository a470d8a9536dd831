//! The gate client bytes pass before authentication has completed: which frames the relay may
//! read, forward or must leave unread while the upstream is still deciding who the client is.
//!
//! PostgreSQL itself reads only `p` messages (password, SASL, GSS) during authentication, each
//! at most `PG_MAX_AUTH_TOKEN_LENGTH` bytes; everything else waits in the socket until the
//! backend is ready. ddlgate does the same: the relay calls [`gate`] on every client frame until
//! the first ReadyForQuery, forwards only what it passes, and stops reading the client at the
//! first frame it holds. So an unauthenticated client can make ddlgate neither analyse SQL
//! (parsing is the expensive, attackable part) nor buffer more than one read — and a Query
//! pipelined behind the startup packet is never forwarded unexamined either: with trust
//! authentication the server may have authenticated the client already and would run it.
//!
//! A pure function of the buffered bytes, so the fuzz target (`fuzz/`) drives exactly what the
//! relay runs.

use super::framing::{self, Frame, FrameError};
use super::frontend;

/// PostgreSQL's `PG_MAX_AUTH_TOKEN_LENGTH`: the largest password/SASL/GSS message it accepts.
pub const MAX_AUTH_MESSAGE: usize = 65_535;

/// The largest length field (which counts itself) a `p` message may declare.
pub const MAX_AUTH_LENGTH: usize = MAX_AUTH_MESSAGE + 4;

/// Length of an upstream `AuthenticationOk` frame: tag, length 8, the code 0.
pub const AUTHENTICATION_OK_FRAME: usize = 9;

/// What the relay does with the client frame at the front of its buffer before authentication
/// has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Not even a whole header is buffered: read more.
    NeedHeader,
    /// An authentication message (`p`) or a bare Terminate, `total` bytes with its header:
    /// relay it. A `p` message may be streamed if it is not all buffered yet; its size is
    /// already bounded.
    Pass { tag: u8, total: usize },
    /// Anything else: leave it unread, in the buffer, and read nothing more from the client
    /// until the session is authenticated and ready.
    Hold,
    /// The header itself is invalid (a length below 4, or a `p` message larger than
    /// PostgreSQL accepts): end the session with a FATAL.
    Refuse(Refusal),
}

/// Why [`gate`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The length field is below 4 (it counts itself).
    BadLength { tag: u8, declared: u32 },
    /// A `p` message over [`MAX_AUTH_LENGTH`].
    TooLarge { tag: u8, len: usize, limit: usize },
}

/// Decides the frame at the start of `buf` (see [`Gate`]). Reads at most its 5-byte header.
pub fn gate(buf: &[u8]) -> Gate {
    // Every tag is scanned without a size limit first, so that a message the relay will hold
    // is never refused for its size: it is simply left unread, as PostgreSQL would leave it.
    let (tag, total) = match framing::scan(buf, usize::MAX) {
        Ok(Frame::NeedHeader) => return Gate::NeedHeader,
        Ok(Frame::Header { tag, total }) => (tag, total),
        Err(FrameError::BadLength { tag, declared }) => {
            return Gate::Refuse(Refusal::BadLength { tag, declared });
        }
        // Unreachable with an unbounded limit; refusing keeps the function total anyway.
        Err(FrameError::TooLarge { tag, len, limit }) => {
            return Gate::Refuse(Refusal::TooLarge { tag, len, limit });
        }
    };
    match tag {
        frontend::PASSWORD if total - 1 > MAX_AUTH_LENGTH => Gate::Refuse(Refusal::TooLarge {
            tag,
            len: total - 1,
            limit: MAX_AUTH_LENGTH,
        }),
        frontend::PASSWORD => Gate::Pass { tag, total },
        // A client giving up (e.g. libpq without a password) says Terminate: relaying it lets
        // the server end the session now instead of at the login timeout. It has no body.
        frontend::TERMINATE if total == framing::HEADER_LEN => Gate::Pass { tag, total },
        _ => Gate::Hold,
    }
}

/// Whether an upstream Authentication (`R`) message body is AuthenticationOk (code 0).
pub fn is_authentication_ok(body: &[u8]) -> bool {
    body == [0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body_len: usize) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&((body_len + 4) as u32).to_be_bytes());
        f.resize(f.len() + body_len.min(16), b'x');
        f
    }

    #[test]
    fn only_bounded_auth_messages_and_terminate_pass() {
        assert_eq!(gate(b"p\0\0"), Gate::NeedHeader);
        assert_eq!(
            gate(&frame(b'p', 10)),
            Gate::Pass {
                tag: b'p',
                total: 15
            }
        );
        // The largest token PostgreSQL accepts passes, one byte more does not.
        assert_eq!(
            gate(&frame(b'p', MAX_AUTH_MESSAGE)),
            Gate::Pass {
                tag: b'p',
                total: MAX_AUTH_MESSAGE + 5
            }
        );
        assert!(matches!(
            gate(&frame(b'p', MAX_AUTH_MESSAGE + 1)),
            Gate::Refuse(Refusal::TooLarge { tag: b'p', .. })
        ));
        assert_eq!(
            gate(&frame(b'X', 0)),
            Gate::Pass {
                tag: b'X',
                total: 5
            }
        );
        assert_eq!(gate(&frame(b'X', 3)), Gate::Hold);
    }

    #[test]
    fn everything_else_is_held_whatever_its_size() {
        for tag in [b'Q', b'P', b'B', b'E', b'S', b'd', b'F', 0, 0xff] {
            assert_eq!(gate(&frame(tag, 12)), Gate::Hold, "{}", tag as char);
        }
        // A 64 MiB Query header is held, not refused and not reserved for.
        let mut huge = vec![b'Q'];
        huge.extend_from_slice(&(64u32 << 20).to_be_bytes());
        assert_eq!(gate(&huge), Gate::Hold);
        let mut max = vec![b'Q'];
        max.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(gate(&max), Gate::Hold);
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert_eq!(
            gate(b"p\0\0\0\x03"),
            Gate::Refuse(Refusal::BadLength {
                tag: b'p',
                declared: 3
            })
        );
        assert!(matches!(gate(b"Q\0\0\0\0"), Gate::Refuse(_)));
    }

    #[test]
    fn authentication_ok_is_code_zero_only() {
        assert!(is_authentication_ok(&[0, 0, 0, 0]));
        assert!(!is_authentication_ok(&[0, 0, 0, 5]));
        assert!(!is_authentication_ok(&[0, 0, 0]));
    }
}
