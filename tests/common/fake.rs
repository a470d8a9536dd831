//! A scripted fake upstream, only for faults a real PostgreSQL cannot produce on demand: a
//! server that vanishes mid-session without sending a FATAL, or in the middle of a message, or
//! in the middle of authentication.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the fake does: the first two after answering startup and receiving the first Query,
/// the last two during authentication.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Close the socket at a message boundary, without an error message.
    CloseSilently,
    /// Send half of a DataRow, then close.
    CloseMidMessage,
    /// Ask for a cleartext password, read the client's PasswordMessage, then close without a
    /// word (a server that dies right after a given authentication message).
    DieAfterPassword,
    /// Send the first 7 of AuthenticationMD5Password's 13 bytes, then close.
    DieMidAuthRequest,
    /// Start a SCRAM-SHA-256 exchange (AuthenticationSASL, the client's SASLInitialResponse,
    /// AuthenticationSASLContinue), read the client's SASLResponse, then close without a word:
    /// a server dying in the middle of a SASL exchange.
    DieMidSasl,
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Starts the fake on a free port; it serves one connection per accept with `fault`.
pub async fn start(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                if s.read_exact(&mut rest).await.is_err() {
                    return;
                }
                match fault {
                    Fault::DieAfterPassword => {
                        if s.write_all(&msg(b'R', &3u32.to_be_bytes())).await.is_err() {
                            return;
                        }
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf).await;
                        return;
                    }
                    Fault::DieMidAuthRequest => {
                        let request = msg(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]);
                        let _ = s.write_all(&request[..7]).await;
                        return;
                    }
                    Fault::DieMidSasl => {
                        let sasl = msg(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0");
                        if s.write_all(&sasl).await.is_err() || read_message(&mut s).await.is_none()
                        {
                            return;
                        }
                        let server_first = b"\0\0\0\x0br=clientnonceservernonce,s=c2FsdA==,i=4096";
                        if s.write_all(&msg(b'R', server_first)).await.is_err() {
                            return;
                        }
                        let _ = read_message(&mut s).await;
                        return;
                    }
                    Fault::CloseSilently | Fault::CloseMidMessage => {}
                }
                let mut hello = msg(b'R', &0u32.to_be_bytes());
                hello.extend(msg(b'S', b"server_version\x0015.0\0"));
                hello.extend(msg(b'K', &[0, 0, 0, 7, 1, 2, 3, 4]));
                hello.extend(msg(b'Z', b"I"));
                if s.write_all(&hello).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                match fault {
                    Fault::CloseSilently
                    | Fault::DieAfterPassword
                    | Fault::DieMidAuthRequest
                    | Fault::DieMidSasl => {}
                    Fault::CloseMidMessage => {
                        let mut out = msg(
                            b'T',
                            b"\0\x01a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
                        );
                        let row = msg(b'D', b"\0\x01\0\0\0\x0aabcdefghij");
                        out.extend_from_slice(&row[..row.len() - 4]);
                        let _ = s.write_all(&out).await;
                    }
                }
                // Dropping the socket closes it.
            });
        }
    });
    addr
}

/// Reads one tagged message (`None` at end of stream).
async fn read_message(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}
