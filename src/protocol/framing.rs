//! Frame boundaries: splitting a byte stream into messages without decoding them.
//!
//! A tagged message is `tag (1) | length (4, big-endian, counts itself) | body`. ddlgate reads
//! only the 5-byte header of most messages and forwards their bytes untouched; the few it
//! inspects are taken whole into an isolated slice first. Every length is checked before it is
//! trusted, so a hostile length can produce an error but never a large allocation or a panic.

/// Tag byte plus the 4-byte length.
pub const HEADER_LEN: usize = 5;

/// What the scanner found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Fewer than [`HEADER_LEN`] bytes are buffered.
    NeedHeader,
    /// A header is present; the whole frame is `total` bytes (tag + length + body).
    Header { tag: u8, total: usize },
}

/// A declared length that cannot be a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below 4 (it counts itself).
    BadLength { tag: u8, declared: u32 },
    /// The message is larger than the configured limit.
    TooLarge { tag: u8, len: usize, limit: usize },
}

/// Reads the header at the start of `buf`, checking the declared length against `limit`
/// (the largest allowed body + 4, as in the protocol's length field).
#[inline]
pub fn scan(buf: &[u8], limit: usize) -> Result<Frame, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(Frame::NeedHeader);
    }
    let tag = buf[0];
    let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if declared < 4 {
        return Err(FrameError::BadLength { tag, declared });
    }
    let len = declared as usize;
    if len > limit {
        return Err(FrameError::TooLarge { tag, len, limit });
    }
    Ok(Frame::Header {
        tag,
        total: len + 1,
    })
}

/// The body of a complete frame (everything after tag and length).
#[inline]
pub fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or(&[])
}

/// Appends a tagged message with the given body to `out`.
pub fn put_message(out: &mut bytes::BytesMut, tag: u8, body: &[u8]) {
    use bytes::BufMut;
    out.reserve(HEADER_LEN + body.len());
    out.put_u8(tag);
    out.put_u32((body.len() + 4) as u32);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_reads_headers_and_rejects_bad_lengths() {
        assert_eq!(scan(b"Q\0\0", 100), Ok(Frame::NeedHeader));
        assert_eq!(
            scan(b"Q\0\0\0\x0dSELECT 1\0", 100),
            Ok(Frame::Header {
                tag: b'Q',
                total: 14
            })
        );
        assert_eq!(
            scan(b"S\0\0\0\x04", 100),
            Ok(Frame::Header {
                tag: b'S',
                total: 5
            })
        );
        assert_eq!(
            scan(b"S\0\0\0\x02", 100),
            Err(FrameError::BadLength {
                tag: b'S',
                declared: 2
            })
        );
        assert_eq!(
            scan(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::TooLarge {
                tag: b'Q',
                len: 0xffff_ffff,
                limit: 100
            })
        );
    }

    #[test]
    fn put_message_round_trips() {
        let mut out = bytes::BytesMut::new();
        put_message(&mut out, b'Q', b"SELECT 1\0");
        assert_eq!(
            scan(&out, 100),
            Ok(Frame::Header {
                tag: b'Q',
                total: out.len()
            })
        );
        assert_eq!(body(&out), b"SELECT 1\0");
    }
}
