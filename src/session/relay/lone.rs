//! Recognising a lone extended-protocol unit: one prepared DDL statement executed alone,
//! exactly as a simple Query would run it, so that the DDL lane can give it the same treatment
//! (guard retries, recipes). Drivers send a parameterless statement this way: pgJDBC, libpq's
//! `PQexecParams` and node-postgres as `Parse / Bind / [Describe] / Execute / Sync` in one
//! unit; tokio-postgres (and pgJDBC's named statements once prepared) as a `Parse /
//! [Describe] / Sync` unit, then `Bind / [Describe] / Execute / Sync` units.
//!
//! Only complete frames already in the client buffer are read (at most [`MAX_FRAMES`] headers,
//! each bounded by `limits.max_message_bytes` as every client frame is): a unit still arriving
//! is not a lone unit, and keeps the ordinary path.

use crate::protocol::framing::{self, Frame};
use crate::protocol::frontend::{self, Bind, Describe, Execute, Parse};

/// Frames a lone unit has at most: Parse, Bind, Describe, Execute, Sync.
const MAX_FRAMES: usize = 5;

/// A unit that executes one statement, alone, with no parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::session) struct LoneUnit {
    /// Bytes of the unit at the front of the buffer, Sync included.
    pub len: usize,
    /// Bytes of its Parse (the first frame), or 0 when it binds a statement prepared earlier.
    pub parse_len: usize,
    /// The statement it binds (the Parse's, when it has one).
    pub statement: Vec<u8>,
    /// The kind of its Describe (`S` or `P`), if it has one.
    pub describe: Option<u8>,
}

/// What the complete frames at the front of the client buffer are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::session) enum Shape {
    /// `[Parse] Bind [Describe] Execute Sync` of one statement with no parameters.
    Lone(LoneUnit),
    /// `Parse [Describe S] Sync`: a statement prepared and not executed (`len` bytes).
    PrepareOnly { len: usize },
    /// Anything else (a pipeline, parameters, Flush, a unit not yet complete, …).
    Other,
}

/// Reads the frames at the front of `buf` (client bytes, at a frame boundary).
pub(in crate::session) fn recognise(buf: &[u8], limit: usize) -> Shape {
    let mut frames: Vec<(u8, &[u8])> = Vec::with_capacity(MAX_FRAMES);
    let mut at = 0usize;
    loop {
        if frames.len() == MAX_FRAMES {
            return Shape::Other;
        }
        let rest = &buf[at..];
        let Ok(Frame::Header { tag, total }) = framing::scan(rest, limit) else {
            return Shape::Other;
        };
        if total > rest.len() {
            return Shape::Other;
        }
        frames.push((tag, &rest[..total]));
        at += total;
        if tag == frontend::SYNC {
            break;
        }
    }
    let mut it = frames.iter().copied().peekable();
    let parse = match it.peek() {
        Some(&(frontend::PARSE, f)) => {
            it.next();
            match Parse::decode(framing::body(f)) {
                Some(p) if p.types_unspecified() => Some((p, f.len())),
                _ => return Shape::Other,
            }
        }
        _ => None,
    };
    let bind = match it.next() {
        Some((frontend::BIND, f)) => match Bind::decode(framing::body(f)) {
            Some(b) if b.param_count() == Some(0) => b,
            _ => return Shape::Other,
        },
        Some((frontend::DESCRIBE, f)) => {
            // Parse, Describe of that statement, Sync.
            let described = Describe::decode(framing::body(f)).is_some_and(|d| {
                d.kind == Describe::STATEMENT && Some(d.name) == parse.map(|p| p.0.name)
            });
            return match (parse, it.next(), described) {
                (Some(_), Some((frontend::SYNC, _)), true) => Shape::PrepareOnly { len: at },
                _ => Shape::Other,
            };
        }
        Some((frontend::SYNC, _)) if parse.is_some() => return Shape::PrepareOnly { len: at },
        _ => return Shape::Other,
    };
    if parse.is_some_and(|(p, _)| p.name != bind.statement) {
        return Shape::Other;
    }
    let mut describe = None;
    if let Some(&(frontend::DESCRIBE, f)) = it.peek() {
        it.next();
        match Describe::decode(framing::body(f)) {
            Some(d) if d.kind == Describe::STATEMENT && d.name == bind.statement => {
                describe = Some(d.kind)
            }
            Some(d) if d.kind == Describe::PORTAL && d.name == bind.portal => {
                describe = Some(d.kind)
            }
            _ => return Shape::Other,
        }
    }
    match (it.next(), it.next(), it.next()) {
        (Some((frontend::EXECUTE, f)), Some((frontend::SYNC, _)), None)
            if Execute::decode(framing::body(f)).is_some_and(|e| e.portal == bind.portal) =>
        {
            Shape::Lone(LoneUnit {
                len: at,
                parse_len: parse.map_or(0, |(_, n)| n),
                statement: bind.statement.to_vec(),
                describe,
            })
        }
        _ => Shape::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{bind, describe, execute, frame, parse, sync};

    const DDL: &str = "ALTER TABLE t ADD COLUMN c int";

    #[test]
    fn lone_units_and_everything_else() {
        let lone = |parse_len: usize, statement: &str, describe: Option<u8>, len: usize| {
            Shape::Lone(LoneUnit {
                len,
                parse_len,
                statement: statement.as_bytes().to_vec(),
                describe,
            })
        };
        let p = parse("", DDL, &[]);
        let named = parse("S_1", DDL, &[0]);
        type Case = (&'static str, Vec<Vec<u8>>, Option<Shape>);
        let cases: Vec<Case> = vec![
            (
                "pgJDBC / PQexecParams",
                vec![
                    p.clone(),
                    bind("", "", &[]),
                    describe(b'P', ""),
                    execute(""),
                    sync(),
                ],
                Some(lone(p.len(), "", Some(b'P'), 0)),
            ),
            (
                "no Describe",
                vec![p.clone(), bind("", "", &[]), execute(""), sync()],
                Some(lone(p.len(), "", None, 0)),
            ),
            (
                "named, one unspecified type, Describe of the statement",
                vec![
                    named.clone(),
                    bind("", "S_1", &[]),
                    describe(b'S', "S_1"),
                    execute(""),
                    sync(),
                ],
                Some(lone(named.len(), "S_1", Some(b'S'), 0)),
            ),
            (
                "a later Bind of a named statement",
                vec![
                    bind("", "S_1", &[]),
                    describe(b'P', ""),
                    execute(""),
                    sync(),
                ],
                Some(lone(0, "S_1", Some(b'P'), 0)),
            ),
            (
                "tokio-postgres prepare",
                vec![parse("s0", DDL, &[]), describe(b'S', "s0"), sync()],
                Some(Shape::PrepareOnly { len: 0 }),
            ),
            (
                "Parse, Sync",
                vec![p.clone(), sync()],
                Some(Shape::PrepareOnly { len: 0 }),
            ),
            (
                "a typed parameter",
                vec![
                    parse("", DDL, &[23]),
                    bind("", "", &[]),
                    execute(""),
                    sync(),
                ],
                None,
            ),
            (
                "a parameter value",
                vec![p.clone(), bind("", "", &[b"1"]), execute(""), sync()],
                None,
            ),
            (
                "Bind of another statement",
                vec![p.clone(), bind("", "other", &[]), execute(""), sync()],
                None,
            ),
            (
                "Execute of another portal",
                vec![p.clone(), bind("a", "", &[]), execute("b"), sync()],
                None,
            ),
            (
                "Describe of another portal",
                vec![
                    p.clone(),
                    bind("", "", &[]),
                    describe(b'P', "x"),
                    execute(""),
                    sync(),
                ],
                None,
            ),
            (
                "two Executes (a pipeline)",
                vec![
                    p.clone(),
                    bind("", "", &[]),
                    execute(""),
                    bind("", "", &[]),
                    execute(""),
                    sync(),
                ],
                None,
            ),
            (
                "Flush instead of Sync",
                vec![
                    p.clone(),
                    bind("", "", &[]),
                    execute(""),
                    frame(frontend::FLUSH, &[]),
                ],
                None,
            ),
            (
                "no Sync yet",
                vec![p.clone(), bind("", "", &[]), execute("")],
                None,
            ),
            (
                "Describe of another statement",
                vec![p.clone(), describe(b'S', "x"), sync()],
                None,
            ),
            (
                "a simple Query",
                vec![frame(frontend::QUERY, b"SELECT 1\0")],
                None,
            ),
            ("Bind, Sync", vec![bind("", "", &[]), sync()], None),
        ];
        for (what, frames, want) in cases {
            let buf: Vec<u8> = frames.concat();
            let want = match want {
                Some(Shape::Lone(mut u)) => {
                    u.len = buf.len();
                    Shape::Lone(u)
                }
                Some(Shape::PrepareOnly { .. }) => Shape::PrepareOnly { len: buf.len() },
                _ => Shape::Other,
            };
            assert_eq!(recognise(&buf, 1 << 20), want, "{what}");
            // Whatever follows the unit is not read; a unit cut short is not one.
            let mut more = buf.clone();
            more.extend_from_slice(&frame(frontend::QUERY, b"SELECT 1\0"));
            assert_eq!(recognise(&more, 1 << 20), want, "{what}, followed by more");
            if want != Shape::Other {
                assert_eq!(
                    recognise(&buf[..buf.len() - 1], 1 << 20),
                    Shape::Other,
                    "{what}, cut"
                );
            }
        }
        // Frames beyond the limit are not read.
        let buf = [p.clone(), bind("", "", &[]), execute(""), sync()].concat();
        assert_eq!(recognise(&buf, 8), Shape::Other);
    }
}
