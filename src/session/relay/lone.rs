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
        let Some(frame) = next_frame(&buf[at..], limit) else {
            return Shape::Other;
        };
        frames.push(frame);
        at += frame.1.len();
        if frame.0 == frontend::SYNC {
            break;
        }
    }
    let Some((_, unit)) = frames.split_last() else {
        return Shape::Other;
    };
    if let Some(u) = executed(unit) {
        return Shape::Lone(LoneUnit { len: at, ..u });
    }
    // Parse [Describe of that statement] Sync.
    fn prepared(f: &[u8]) -> Option<Parse<'_>> {
        Parse::decode(framing::body(f)).filter(|p| p.types_unspecified())
    }
    match unit {
        [(frontend::PARSE, p)] if prepared(p).is_some() => Shape::PrepareOnly { len: at },
        [(frontend::PARSE, p), (frontend::DESCRIBE, d)]
            if prepared(p).is_some_and(|p| {
                Describe::decode(framing::body(d))
                    .is_some_and(|d| d.kind == Describe::STATEMENT && d.name == p.name)
            }) =>
        {
            Shape::PrepareOnly { len: at }
        }
        _ => Shape::Other,
    }
}

/// The front of a unit that is not a lone unit (more follows before its Sync: another
/// statement, a Flush — or the unit is inside a transaction block) when it executes one
/// statement as a lone unit does: `[Parse] Bind [Describe] Execute` of it, no parameters.
/// `first` is the unit's first frame (the Parse or Bind the relay stopped at, as it will be
/// sent), `rest` the client bytes after it; `len` counts the frames up to the Execute. The DDL
/// lane answers that front as a server does (`answer_up_to_execute`) before an error in place
/// of the Execute's.
pub(in crate::session) fn opening(first: &[u8], rest: &[u8], limit: usize) -> Option<LoneUnit> {
    let mut frames = Vec::with_capacity(MAX_FRAMES - 1);
    frames.push(next_frame(first, limit).filter(|f| f.1.len() == first.len())?);
    let mut at = 0usize;
    while frames.last().map(|f| f.0) != Some(frontend::EXECUTE) {
        if frames.len() == MAX_FRAMES - 1 {
            return None;
        }
        let frame = next_frame(&rest[at..], limit)?;
        frames.push(frame);
        at += frame.1.len();
    }
    executed(&frames)
}

/// `[Parse] Bind [Describe] Execute` of one statement with no parameters, exactly these
/// frames (`len`: their bytes).
fn executed(frames: &[(u8, &[u8])]) -> Option<LoneUnit> {
    let mut it = frames.iter().copied().peekable();
    let parse = match it.peek() {
        Some(&(frontend::PARSE, f)) => {
            it.next();
            let p = Parse::decode(framing::body(f)).filter(|p| p.types_unspecified())?;
            Some((p, f.len()))
        }
        _ => None,
    };
    let bind = match it.next() {
        Some((frontend::BIND, f)) => {
            Bind::decode(framing::body(f)).filter(|b| b.param_count() == Some(0))?
        }
        _ => return None,
    };
    if parse.is_some_and(|(p, _)| p.name != bind.statement) {
        return None;
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
            _ => return None,
        }
    }
    match (it.next(), it.next()) {
        (Some((frontend::EXECUTE, f)), None)
            if Execute::decode(framing::body(f)).is_some_and(|e| e.portal == bind.portal) =>
        {
            Some(LoneUnit {
                len: frames.iter().map(|f| f.1.len()).sum(),
                parse_len: parse.map_or(0, |(_, n)| n),
                statement: bind.statement.to_vec(),
                describe,
            })
        }
        _ => None,
    }
}

/// The complete frame at the front of `buf` (tag and bytes); `None` when it is not all there
/// (or its length is invalid or beyond `limit`).
fn next_frame(buf: &[u8], limit: usize) -> Option<(u8, &[u8])> {
    match framing::scan(buf, limit) {
        Ok(Frame::Header { tag, total }) if total <= buf.len() => Some((tag, &buf[..total])),
        _ => None,
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

    #[test]
    fn the_lone_front_of_a_longer_unit() {
        let p = parse("", DDL, &[]);
        let flush = frame(frontend::FLUSH, &[]);
        let select = parse("", "SELECT 1", &[]);
        let front = |first: &[u8], rest: &[Vec<u8>]| opening(first, &rest.concat(), 1 << 20);
        let b = bind("", "", &[]);
        let u = front(&p, &[b.clone(), execute(""), flush.clone()]).expect("P B E, Flush");
        assert_eq!(
            (u.len, u.parse_len, u.describe),
            (p.len() + b.len() + execute("").len(), p.len(), None)
        );
        let u = front(
            &p,
            &[
                b.clone(),
                describe(b'P', ""),
                execute(""),
                select.clone(),
                b.clone(),
                execute(""),
                sync(),
            ],
        )
        .expect("P B D E, then another statement");
        assert_eq!(u.describe, Some(b'P'));
        // A Bind of a statement prepared earlier, in a transaction block.
        let b1 = bind("", "S_1", &[]);
        let u = front(&b1, &[execute(""), sync()]).expect("B E S");
        assert_eq!((u.parse_len, u.statement.as_slice()), (0, &b"S_1"[..]));
        // No Execute yet, a parameter, a Sync before the Execute, two frames in `first`.
        assert_eq!(front(&p, std::slice::from_ref(&b)), None);
        assert_eq!(front(&p, &[bind("", "", &[b"1"]), execute("")]), None);
        assert_eq!(front(&p, &[sync(), b.clone(), execute("")]), None);
        assert_eq!(
            front(&[p.clone(), b.clone()].concat(), &[execute("")]),
            None
        );
        assert_eq!(front(&p, &[describe(b'S', "x"), b, execute("")]), None);
    }
}
