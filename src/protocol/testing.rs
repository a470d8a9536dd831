//! Frontend message builders for unit tests: whole frames (tag, length, body) as a client
//! would send them.

use super::frontend;
use crate::protocol::framing::put_message;

/// One message: `tag`, its length, `body`.
pub(crate) fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    put_message(&mut out, tag, body);
    out.to_vec()
}

/// Parse of `sql` into statement `name`, with parameter type OIDs `types`.
pub(crate) fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = format!("{name}\0{sql}\0").into_bytes();
    b.extend_from_slice(&(types.len() as u16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    frame(frontend::PARSE, &b)
}

/// Bind of statement `stmt` into `portal`: text parameters (no format codes) and results.
pub(crate) fn bind(portal: &str, stmt: &str, params: &[&[u8]]) -> Vec<u8> {
    let mut b = format!("{portal}\0{stmt}\0").into_bytes();
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        b.extend_from_slice(&(p.len() as u32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    frame(frontend::BIND, &b)
}

/// Describe of a statement (`b'S'`) or portal (`b'P'`).
pub(crate) fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    frame(frontend::DESCRIBE, &b)
}

/// Execute of `portal`, every row.
pub(crate) fn execute(portal: &str) -> Vec<u8> {
    let mut b = format!("{portal}\0").into_bytes();
    b.extend_from_slice(&0u32.to_be_bytes());
    frame(frontend::EXECUTE, &b)
}

pub(crate) fn sync() -> Vec<u8> {
    frame(frontend::SYNC, &[])
}
