//! Backend (server → client) messages: the tags ddlgate looks at, and typed decoders for the
//! few it reads — ReadyForQuery's transaction status and the DataRows that answer ddlgate's own
//! queries.

use bytes::Buf;

use super::{TxStatus, read_cstr};

pub const AUTHENTICATION: u8 = b'R';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const PARAMETER_STATUS: u8 = b'S';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const PARSE_COMPLETE: u8 = b'1';
pub const BIND_COMPLETE: u8 = b'2';
pub const CLOSE_COMPLETE: u8 = b'3';
pub const NO_DATA: u8 = b'n';
pub const PARAMETER_DESCRIPTION: u8 = b't';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const NOTIFICATION_RESPONSE: u8 = b'A';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const DATA_ROW: u8 = b'D';
pub const COPY_DATA: u8 = b'd';
pub const COPY_IN_RESPONSE: u8 = b'G';
pub const COPY_OUT_RESPONSE: u8 = b'H';
pub const COPY_BOTH_RESPONSE: u8 = b'W';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';

/// The transaction status of a ReadyForQuery body; `None` when it is missing or invalid.
pub fn ready_for_query(body: &[u8]) -> Option<TxStatus> {
    body.first().copied().and_then(TxStatus::from_byte)
}

/// A ParameterStatus body as (name, value).
pub fn parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, rest) = read_cstr(body)?;
    let (value, _) = read_cstr(rest)?;
    Some((name, value))
}

/// A DataRow's columns as text (`None` for NULL). A malformed row ends early: it never panics
/// and never reads past its frame.
pub fn data_row(mut body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    if body.len() < 2 {
        return out;
    }
    let n = body.get_u16();
    for _ in 0..n {
        if body.len() < 4 {
            break;
        }
        let len = body.get_i32();
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            break;
        }
        out.push(Some(String::from_utf8_lossy(&body[..len]).into_owned()));
        body.advance(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn data_rows_decode_and_never_panic() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&3u16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(b"t");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"ok");
        assert_eq!(
            data_row(&b),
            vec![Some("t".into()), None, Some("ok".into())]
        );
        for cut in 0..b.len() {
            let _ = data_row(&b[..cut]);
        }
        let _ = data_row(&[0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn parameter_status_bodies() {
        assert_eq!(
            parameter_status(b"server_version\x0015.4\0"),
            Some((&b"server_version"[..], &b"15.4"[..]))
        );
        assert_eq!(parameter_status(b"server_version\x0015.4"), None);
    }

    #[test]
    fn ready_for_query_status() {
        assert_eq!(ready_for_query(b"T"), Some(TxStatus::InTransaction));
        assert_eq!(ready_for_query(b"x"), None);
        assert_eq!(ready_for_query(b""), None);
    }
}
