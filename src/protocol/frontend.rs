//! Frontend (client → server) messages: the tags ddlgate looks at, and the few messages it
//! decodes or writes, typed. This is the one place that knows where a Query's or a Parse's SQL
//! text is, and how a frame is rebuilt around new text with every other field kept byte for
//! byte.
//!
//! Each decoder takes an isolated, length-checked body (`framing::body`) and returns `None` for
//! a malformed one (a missing terminator): the server rejects such a message itself.

use bytes::{Bytes, BytesMut};

use super::{framing, read_cstr};

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const EXECUTE: u8 = b'E';
pub const DESCRIBE: u8 = b'D';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const FUNCTION_CALL: u8 = b'F';
pub const TERMINATE: u8 = b'X';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
/// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse all share `p`.
pub const PASSWORD: u8 = b'p';

/// A simple-protocol Query: one SQL string (raw client-encoding bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub sql: &'a [u8],
    /// Whatever follows the terminator (nothing in a well-formed message), kept on a rebuild.
    rest: &'a [u8],
}

impl<'a> Query<'a> {
    pub fn decode(body: &'a [u8]) -> Option<Query<'a>> {
        let (sql, rest) = read_cstr(body)?;
        Some(Query { sql, rest })
    }

    /// The Query message for SQL ddlgate wrote itself; `None` when the text holds a NUL, where
    /// the server would end it (then nothing may be sent).
    pub fn frame(sql: &[u8]) -> Option<Bytes> {
        if memchr::memchr(0, sql).is_some() {
            return None;
        }
        let mut out = BytesMut::with_capacity(sql.len() + 1 + framing::HEADER_LEN);
        put_with_nul(&mut out, QUERY, &[sql]);
        Some(out.freeze())
    }
}

/// An extended-protocol Parse: statement name, SQL text, parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub sql: &'a [u8],
    /// The parameter type count and OIDs, undecoded.
    pub param_types: &'a [u8],
}

impl<'a> Parse<'a> {
    pub fn decode(body: &'a [u8]) -> Option<Parse<'a>> {
        let (name, rest) = read_cstr(body)?;
        let (sql, param_types) = read_cstr(rest)?;
        Some(Parse {
            name,
            sql,
            param_types,
        })
    }

    /// Whether the Parse declares no parameter types, or only unspecified ones (OID 0): a
    /// statement that takes no parameters is prepared the same way with or without them.
    pub fn types_unspecified(&self) -> bool {
        let Some((count, oids)) = self.param_types.split_first_chunk::<2>() else {
            return false;
        };
        let n = usize::from(u16::from_be_bytes(*count));
        oids.len() == n * 4 && oids.iter().all(|&b| b == 0)
    }

    /// A Parse frame of `name` with `sql` and the parameter types of `self`.
    pub fn frame(&self) -> Bytes {
        let mut out = BytesMut::new();
        put_with_nul(&mut out, PARSE, &[self.name, self.sql]);
        extend_last(&mut out, self.param_types);
        out.freeze()
    }
}

/// A Query or a Parse: a message that carries SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement<'a> {
    Query(Query<'a>),
    Parse(Parse<'a>),
}

impl<'a> Statement<'a> {
    /// `None` for another message or a malformed body.
    pub fn decode(tag: u8, body: &'a [u8]) -> Option<Statement<'a>> {
        match tag {
            QUERY => Query::decode(body).map(Statement::Query),
            PARSE => Parse::decode(body).map(Statement::Parse),
            _ => None,
        }
    }

    pub fn sql(&self) -> &'a [u8] {
        match self {
            Statement::Query(q) => q.sql,
            Statement::Parse(p) => p.sql,
        }
    }

    /// A Parse's statement name.
    pub fn name(&self) -> Option<&'a [u8]> {
        match self {
            Statement::Query(_) => None,
            Statement::Parse(p) => Some(p.name),
        }
    }

    /// The same message with its SQL text replaced; every other field (a Parse's statement
    /// name and parameter types) is kept byte for byte.
    pub fn with_sql(&self, new_sql: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Statement::Query(q) => {
                put_with_nul(&mut out, QUERY, &[new_sql]);
                extend_last(&mut out, q.rest);
            }
            Statement::Parse(p) => {
                put_with_nul(&mut out, PARSE, &[p.name, new_sql]);
                extend_last(&mut out, p.param_types);
            }
        }
        out.freeze()
    }
}

/// The SQL text of a Query (`Q`) or Parse (`P`) body. `None` for another message or a
/// malformed body (no terminator).
pub fn statement_sql(tag: u8, body: &[u8]) -> Option<&[u8]> {
    Statement::decode(tag, body).map(|s| s.sql())
}

/// A Bind: the portal, the prepared statement it binds, and the rest (parameter formats and
/// values, result formats) undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Option<Bind<'a>> {
        let (portal, rest) = read_cstr(body)?;
        let (statement, rest) = read_cstr(rest)?;
        Some(Bind {
            portal,
            statement,
            rest,
        })
    }

    /// How many parameter values it binds; `None` when the body is malformed.
    pub fn param_count(&self) -> Option<u16> {
        let (formats, rest) = self.rest.split_first_chunk::<2>()?;
        let skip = usize::from(u16::from_be_bytes(*formats)) * 2;
        let (count, _) = rest.get(skip..)?.split_first_chunk::<2>()?;
        Some(u16::from_be_bytes(*count))
    }

    /// The same Bind pointed at another statement (parameters and formats kept byte for byte).
    /// NUL bytes in `statement` are dropped.
    pub fn pointed_at(&self, statement: &[u8]) -> Bytes {
        let statement: Vec<u8> = statement.iter().copied().filter(|&b| b != 0).collect();
        let mut out = BytesMut::new();
        put_with_nul(&mut out, BIND, &[self.portal, &statement]);
        extend_last(&mut out, self.rest);
        out.freeze()
    }

    /// Its parameter format codes and values, undecoded (what follows the statement name up to
    /// the result format codes); `None` when the body is malformed.
    pub fn params(&self) -> Option<&'a [u8]> {
        let (formats, rest) = self.rest.split_first_chunk::<2>()?;
        let skip = usize::from(u16::from_be_bytes(*formats)) * 2;
        let (count, mut values) = rest.get(skip..)?.split_first_chunk::<2>()?;
        for _ in 0..u16::from_be_bytes(*count) {
            let (len, after) = values.split_first_chunk::<4>()?;
            // -1: NULL, no bytes follow.
            let len = usize::try_from(i32::from_be_bytes(*len)).unwrap_or(0);
            values = after.get(len..)?;
        }
        let end = self.rest.len() - values.len();
        Some(&self.rest[..end])
    }

    /// A Bind of `portal` to `statement` with `params` (as [`Bind::params`] returns them) and
    /// every result column in text format.
    pub fn frame_of(portal: &[u8], statement: &[u8], params: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(portal.len() + statement.len() + params.len() + 9);
        put_with_nul(&mut out, BIND, &[portal, statement]);
        extend_last(&mut out, params);
        extend_last(&mut out, &0u16.to_be_bytes());
        out.freeze()
    }

    /// A Parse of the unnamed statement as `sql` (no parameter types), then a Bind of `portal`
    /// to it with no parameters and text results. `None` when `sql` holds a NUL.
    pub fn to_new_statement(portal: &[u8], sql: &[u8]) -> Option<Bytes> {
        if memchr::memchr(0, sql).is_some() {
            return None;
        }
        let mut out = BytesMut::new();
        let mut parse = Vec::with_capacity(sql.len() + 4);
        parse.push(0);
        parse.extend_from_slice(sql);
        parse.push(0);
        parse.extend_from_slice(&0u16.to_be_bytes());
        framing::put_message(&mut out, PARSE, &parse);
        let mut bind = Vec::with_capacity(portal.len() + 8);
        bind.extend_from_slice(portal);
        // Unnamed statement; no parameter formats, no parameters, no result formats.
        bind.extend_from_slice(&[0, 0]);
        bind.extend_from_slice(&[0; 6]);
        framing::put_message(&mut out, BIND, &bind);
        Some(out.freeze())
    }
}

/// A Close of a prepared statement (`S`) or a portal (`P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

impl<'a> Close<'a> {
    pub const STATEMENT: u8 = b'S';
    pub const PORTAL: u8 = b'P';

    pub fn decode(body: &'a [u8]) -> Option<Close<'a>> {
        let (&kind, rest) = body.split_first()?;
        let (name, _) = read_cstr(rest)?;
        Some(Close { kind, name })
    }
}

/// A Describe of a prepared statement (`S`) or a portal (`P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

impl<'a> Describe<'a> {
    pub const STATEMENT: u8 = b'S';
    pub const PORTAL: u8 = b'P';

    pub fn decode(body: &'a [u8]) -> Option<Describe<'a>> {
        let (&kind, rest) = body.split_first()?;
        let (name, _) = read_cstr(rest)?;
        Some(Describe { kind, name })
    }
}

/// An Execute: the portal it runs (the row limit is not looked at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a [u8],
}

impl<'a> Execute<'a> {
    pub fn decode(body: &'a [u8]) -> Option<Execute<'a>> {
        let (portal, _) = read_cstr(body)?;
        Some(Execute { portal })
    }
}

/// A Close of the prepared statement `name` (its reply, CloseComplete, comes even when no such
/// statement exists).
pub fn close_statement(name: &[u8]) -> Bytes {
    close(Close::STATEMENT, name)
}

/// A Close of the portal `name`.
pub fn close_portal(name: &[u8]) -> Bytes {
    close(Close::PORTAL, name)
}

fn close(kind: u8, name: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    let mut body = Vec::with_capacity(name.len() + 2);
    body.push(kind);
    body.extend_from_slice(name);
    body.push(0);
    framing::put_message(&mut out, CLOSE, &body);
    out.freeze()
}

/// An Execute of the portal `name`, every row.
pub fn execute(name: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    put_with_nul(&mut out, EXECUTE, &[name]);
    extend_last(&mut out, &0u32.to_be_bytes());
    out.freeze()
}

/// The Sync message.
pub fn sync() -> Bytes {
    let mut out = BytesMut::with_capacity(framing::HEADER_LEN);
    framing::put_message(&mut out, SYNC, &[]);
    out.freeze()
}

/// The Terminate message.
pub fn terminate() -> Bytes {
    let mut out = BytesMut::with_capacity(framing::HEADER_LEN);
    framing::put_message(&mut out, TERMINATE, &[]);
    out.freeze()
}

/// Appends a message of `tag` whose body is `fields`, each followed by its NUL.
fn put_with_nul(out: &mut BytesMut, tag: u8, fields: &[&[u8]]) {
    let mut body = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
    for f in fields {
        body.extend_from_slice(f);
        body.push(0);
    }
    framing::put_message(out, tag, &body);
}

/// Appends `extra` to the body of the one message in `out`, fixing its length.
fn extend_last(out: &mut BytesMut, extra: &[u8]) {
    if extra.is_empty() {
        return;
    }
    out.extend_from_slice(extra);
    let len = u32::try_from(out.len() - 1).expect("invariant: a rebuilt frame fits its length");
    out[1..framing::HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_of_a_lone_unit() {
        // Parse: no types, unspecified ones, a declared one, a count that lies.
        for (types, unspecified) in [
            (&b"\0\0"[..], true),
            (b"\0\x02\0\0\0\0\0\0\0\0", true),
            (b"\0\x01\0\0\0\x17", false),
            (b"\0\x02\0\0\0\0", false),
            (b"", false),
        ] {
            let mut body = b"s1\0ALTER TABLE t ADD c int\0".to_vec();
            body.extend_from_slice(types);
            let p = Parse::decode(&body).expect("parse");
            assert_eq!(p.types_unspecified(), unspecified, "{types:?}");
            assert_eq!(
                framing::body(&p.frame()),
                &body[..],
                "rebuilt byte for byte"
            );
        }
        // Bind: parameter count after the format codes.
        let no_params = b"\0s1\0\0\x01\0\0\0\0\0\0";
        assert_eq!(
            Bind::decode(no_params).and_then(|b| b.param_count()),
            Some(0)
        );
        let one = b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0";
        assert_eq!(Bind::decode(one).and_then(|b| b.param_count()), Some(1));
        assert_eq!(
            Bind::decode(b"\0s1\0\0\x05").and_then(|b| b.param_count()),
            None
        );
        assert_eq!(
            Describe::decode(b"Ps1\0"),
            Some(Describe {
                kind: Describe::PORTAL,
                name: b"s1"
            })
        );
        assert_eq!(
            Execute::decode(b"\0\0\0\0\0").map(|e| e.portal),
            Some(&b""[..])
        );
        let close = close_statement(b"S_1");
        assert_eq!(
            Close::decode(framing::body(&close)),
            Some(Close {
                kind: Close::STATEMENT,
                name: b"S_1"
            })
        );
        assert_eq!(&sync()[..], b"S\0\0\0\x04");
    }

    #[test]
    fn a_binds_parameters_are_bound_again_elsewhere() {
        // One binary format code; two values, the second NULL; one result format (binary).
        let body = b"p\0s1\0\0\x01\0\x01\0\x02\0\0\0\x04\0\0\0\x07\xff\xff\xff\xff\0\x01\0\x01";
        let b = Bind::decode(body).expect("bind");
        let params = b.params().expect("params");
        assert_eq!(params, &body[5..body.len() - 4]);
        let again = Bind::frame_of(b"q", b"s2", params);
        let again = Bind::decode(framing::body(&again)).expect("rebuilt");
        assert_eq!((again.portal, again.statement), (&b"q"[..], &b"s2"[..]));
        assert_eq!(again.params(), Some(params));
        assert_eq!(again.param_count(), Some(2));
        // Text results: no result format codes.
        assert!(framing::body(&Bind::frame_of(b"", b"", params)).ends_with(b"\0\0"));
        // A value longer than the message is malformed.
        assert_eq!(
            Bind::decode(b"\0s1\0\0\0\0\x01\0\0\0\x09ab").and_then(|b| b.params()),
            None
        );
        assert_eq!(
            Execute::decode(framing::body(&execute(b"p"))).map(|e| e.portal),
            Some(&b"p"[..])
        );
        assert_eq!(
            Close::decode(framing::body(&close_portal(b"p"))).map(|c| c.kind),
            Some(b'P')
        );
        // Arbitrary bodies: never read beyond them, and what is read binds again the same.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let n = rng.usize(0..48);
            let mut body: Vec<u8> = (0..n)
                .map(|_| *rng.choice(&[0u8, 1, 2, 0xff, b'x']).expect("non-empty"))
                .collect();
            body.splice(0..0, *b"\0s\0");
            if let Some(b) = Bind::decode(&body)
                && let Some(params) = b.params()
            {
                assert!(params.len() <= body.len());
                let again = Bind::frame_of(b"", b"", params);
                assert_eq!(
                    Bind::decode(framing::body(&again)).and_then(|b| b.params()),
                    Some(params)
                );
            }
        }
    }

    #[test]
    fn query_and_parse_bodies() {
        assert_eq!(
            Query::decode(b"SELECT 1\0").map(|q| q.sql),
            Some(&b"SELECT 1"[..])
        );
        assert_eq!(Query::decode(b"SELECT 1"), None);
        let p = Parse::decode(b"s1\0SELECT $1\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!((p.name, p.sql), (&b"s1"[..], &b"SELECT $1"[..]));
        assert_eq!(p.param_types, b"\0\x01\0\0\0\x17");
        assert_eq!(Parse::decode(b"s1\0SELECT"), None);
        assert_eq!(
            statement_sql(PARSE, b"s1\0SELECT $1\0\0\0"),
            Some(&b"SELECT $1"[..])
        );
        assert_eq!(statement_sql(QUERY, b"SELECT 1\0"), Some(&b"SELECT 1"[..]));
        assert_eq!(statement_sql(BIND, b"\0\0"), None);
    }

    #[test]
    fn rebuilt_statements_keep_every_other_field() {
        let body = b"s1\0SELECT $1\0\0\x01\0\0\0\x17";
        let s = Statement::decode(PARSE, body).unwrap();
        let f = s.with_sql(b"SELECT 2, $1");
        assert_eq!(f[0], PARSE);
        assert_eq!(framing::body(&f), b"s1\0SELECT 2, $1\0\0\x01\0\0\0\x17");
        assert_eq!(
            u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
            f.len() - 1
        );
        let q = Statement::decode(QUERY, b"SELECT 1\0").unwrap();
        assert_eq!(&q.with_sql(b"SELECT 22")[..], b"Q\0\0\0\x0eSELECT 22\0");
        assert_eq!(
            &Query::frame(b"SELECT 22").unwrap()[..],
            b"Q\0\0\0\x0eSELECT 22\0"
        );
        assert_eq!(Query::frame(b"SELECT\x001"), None);
    }

    #[test]
    fn binds_are_repointed_or_replaced() {
        let body = b"p1\0s1\0\0\0\0\x01\0\0\0\x011\0\0";
        let b = Bind::decode(body).unwrap();
        assert_eq!((b.portal, b.statement), (&b"p1"[..], &b"s1"[..]));
        let f = b.pointed_at(b"other\0name");
        assert_eq!(
            framing::body(&f),
            b"p1\0othername\0\0\0\0\x01\0\0\0\x011\0\0"
        );
        let f = Bind::to_new_statement(b"p1", b"DO $$ $$").unwrap();
        let Ok(framing::Frame::Header { tag, total }) = framing::scan(&f, usize::MAX) else {
            panic!("a frame")
        };
        assert_eq!(tag, PARSE);
        assert_eq!(framing::body(&f[..total]), b"\0DO $$ $$\0\0\0");
        assert_eq!(f[total], BIND);
        assert_eq!(framing::body(&f[total..]), b"p1\0\0\0\0\0\0\0\0");
        assert_eq!(Bind::to_new_statement(b"", b"x\0"), None);
        assert_eq!(
            Close::decode(b"Ss1\0"),
            Some(Close {
                kind: Close::STATEMENT,
                name: b"s1"
            })
        );
        assert_eq!(&terminate()[..], b"X\0\0\0\x04");
    }
}
