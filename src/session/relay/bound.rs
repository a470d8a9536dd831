//! Recognising a unit the backfill guard can examine with the client's own parameter values:
//! `[Parse] Bind [Describe] Execute Sync` of one statement, its Bind carrying the values. The
//! estimate is read with them (`session::ddl::bound`) before anything of the unit is
//! forwarded; blocked, the whole unit is answered by ddlgate as the server answers a unit that
//! fails at its first message.
//!
//! As for a lone unit (`relay/lone.rs`), only complete frames already in the client buffer are
//! read (at most [`MAX_FRAMES`] headers, each bounded by `limits.max_message_bytes`): a unit
//! still arriving is not examined, and keeps the ordinary path.

use crate::protocol::framing::{self, Frame};
use crate::protocol::frontend::{self, Bind, Describe, Execute, Parse};

/// Frames such a unit has at most: Parse, Bind, Describe, Execute, Sync.
const MAX_FRAMES: usize = 5;

/// A unit that binds one statement with parameter values and executes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::session) struct BoundUnit {
    /// Bytes of the unit at the front of the buffer, Sync included.
    pub len: usize,
    /// Bytes of its Parse (the first frame), or 0 when it binds a statement prepared earlier.
    pub parse_len: usize,
    /// Where its Bind frame starts, and its length.
    pub bind: (usize, usize),
}

/// Reads the frames at the front of `buf` (client bytes, at a frame boundary).
pub(in crate::session) fn recognise(buf: &[u8], limit: usize) -> Option<BoundUnit> {
    let mut frames: Vec<(u8, usize, &[u8])> = Vec::with_capacity(MAX_FRAMES);
    let mut at = 0usize;
    loop {
        if frames.len() == MAX_FRAMES {
            return None;
        }
        let rest = &buf[at..];
        let Ok(Frame::Header { tag, total }) = framing::scan(rest, limit) else {
            return None;
        };
        if total > rest.len() {
            return None;
        }
        frames.push((tag, at, &rest[..total]));
        at += total;
        if tag == frontend::SYNC {
            break;
        }
    }
    let mut it = frames.iter().copied().peekable();
    let parse = match it.peek() {
        Some(&(frontend::PARSE, _, f)) => {
            it.next();
            Some((Parse::decode(framing::body(f))?, f.len()))
        }
        _ => None,
    };
    let (bind, bind_at, bind_len) = match it.next() {
        Some((frontend::BIND, at, f)) => (Bind::decode(framing::body(f))?, at, f.len()),
        _ => return None,
    };
    bind.params()?;
    if parse.is_some_and(|(p, _)| p.name != bind.statement) {
        return None;
    }
    if let Some(&(frontend::DESCRIBE, _, f)) = it.peek() {
        it.next();
        match Describe::decode(framing::body(f)) {
            Some(d) if d.kind == Describe::STATEMENT && d.name == bind.statement => {}
            Some(d) if d.kind == Describe::PORTAL && d.name == bind.portal => {}
            _ => return None,
        }
    }
    match (it.next(), it.next(), it.next()) {
        (Some((frontend::EXECUTE, _, f)), Some((frontend::SYNC, _, _)), None)
            if Execute::decode(framing::body(f)).is_some_and(|e| e.portal == bind.portal) =>
        {
            Some(BoundUnit {
                len: at,
                parse_len: parse.map_or(0, |(_, n)| n),
                bind: (bind_at, bind_len),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{bind, describe, execute, frame, parse, sync};

    #[test]
    fn units_with_values_and_everything_else() {
        let p = parse("", "UPDATE t SET x = $1", &[23]);
        let b = bind("", "", &[b"1"]);
        let whole = [
            p.clone(),
            b.clone(),
            describe(b'P', ""),
            execute(""),
            sync(),
        ]
        .concat();
        assert_eq!(
            recognise(&whole, 1 << 20),
            Some(BoundUnit {
                len: whole.len(),
                parse_len: p.len(),
                bind: (p.len(), b.len()),
            })
        );
        // A later Bind of a named statement, followed by more.
        let named = bind("", "s0", &[b"1"]);
        let mut later = [named.clone(), execute(""), sync()].concat();
        let len = later.len();
        later.extend_from_slice(&frame(frontend::QUERY, b"SELECT 1\0"));
        assert_eq!(
            recognise(&later, 1 << 20),
            Some(BoundUnit {
                len,
                parse_len: 0,
                bind: (0, named.len()),
            })
        );
        for (what, frames) in [
            ("no Sync yet", vec![p.clone(), b.clone(), execute("")]),
            (
                "cut",
                vec![p.clone(), b.clone(), execute(""), sync()[..3].to_vec()],
            ),
            (
                "Bind of another statement",
                vec![p.clone(), bind("", "x", &[b"1"]), execute(""), sync()],
            ),
            (
                "another portal",
                vec![p.clone(), b.clone(), execute("x"), sync()],
            ),
            (
                "two Executes",
                vec![p.clone(), b.clone(), execute(""), execute(""), sync()],
            ),
            (
                "Describe of another portal",
                vec![
                    p.clone(),
                    b.clone(),
                    describe(b'P', "x"),
                    execute(""),
                    sync(),
                ],
            ),
            (
                "Flush",
                vec![
                    p.clone(),
                    b.clone(),
                    execute(""),
                    frame(frontend::FLUSH, &[]),
                ],
            ),
            ("prepare only", vec![p.clone(), describe(b'S', ""), sync()]),
            (
                "malformed values",
                vec![
                    p.clone(),
                    frame(frontend::BIND, b"\0\0\0\0\0\x01\0\0\0\x09"),
                    execute(""),
                    sync(),
                ],
            ),
        ] {
            assert_eq!(recognise(&frames.concat(), 1 << 20), None, "{what}");
        }
        assert_eq!(recognise(&whole, 8), None, "frames beyond the limit");
    }
}
