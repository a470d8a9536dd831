//! A minimal raw-protocol client for tests that must send what no driver would: malformed
//! lengths, oversized messages, garbage, or a startup that never finishes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    startup_packet_with(user, database, &[])
}

/// A protocol 3.0 StartupMessage with further parameters (e.g. `client_encoding`).
pub fn startup_packet_with(user: &str, database: &str, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)]
        .iter()
        .chain(params)
    {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// Reads one tagged message; `None` on EOF or timeout.
pub async fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut header = [0u8; 5];
        s.read_exact(&mut header).await.ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        s.read_exact(&mut body).await.ok()?;
        Some((header[0], body))
    })
    .await
    .ok()
    .flatten()
}

/// Reads messages until ReadyForQuery (inclusive), an error followed by EOF, or EOF.
pub async fn read_until_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((tag, body)) = read_message(s).await {
        out.push((tag, body));
        if tag == b'Z' {
            break;
        }
    }
    out
}

/// Connects and completes a trust-auth startup; returns the stream at ReadyForQuery.
pub async fn connect_trust(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet("trust_user", "postgres"))
        .await
        .expect("startup");
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(
        msgs.last().map(|m| m.0),
        Some(b'Z'),
        "startup must end with ReadyForQuery: {msgs:?}"
    );
    s
}

/// The (severity, code, message) of an ErrorResponse body.
pub fn error_fields(body: &[u8]) -> (String, String, String) {
    let mut out = (String::new(), String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        let Some((&k, v)) = field.split_first() else {
            continue;
        };
        let v = String::from_utf8_lossy(v).into_owned();
        match k {
            b'V' => out.0 = v,
            b'C' => out.1 = v,
            b'M' => out.2 = v,
            _ => {}
        }
    }
    out
}

/// Reads until EOF and returns the first ErrorResponse's fields, if any.
pub async fn expect_error_then_close(s: &mut TcpStream) -> Option<(String, String, String)> {
    let mut first = None;
    while let Some((tag, body)) = read_message(s).await {
        if tag == b'E' && first.is_none() {
            first = Some(error_fields(&body));
        }
    }
    first
}
