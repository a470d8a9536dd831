//! Attacks that need no credentials (issue 9, "Before login"): SQL that would exhaust the
//! stack, messages that would exhaust memory, and connections that would exhaust the slots.
//! Each must fail: ddlgate analyses and buffers nothing before authentication, silent
//! connections cannot lock authenticated clients out, and the proxy and other sessions stay
//! healthy. Plus the legitimate case the pre-authentication gate must not break: a client that
//! pipelines its first Query behind the startup packet.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::wire::{
    error_fields, expect_error_then_close, message, query, read_message, read_until_ready,
    startup_packet,
};
use common::*;
use ddlgate::rules::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Messages analysed by the proxy so far (simple Queries and Parses).
fn analysed(env: &Env) -> u64 {
    let c = &env.proxy.shared().counters;
    c.value("ddlgate_messages_analysed_total", &[("source", "query")])
        + c.value("ddlgate_messages_analysed_total", &[("source", "parse")])
}

/// Starts a password user's login and waits for the server's password request: the session is
/// then in the middle of authentication, as long as the client likes.
async fn stalled_login(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet("md5_user", "postgres"))
        .await
        .expect("startup");
    let (tag, body) = read_message(&mut s).await.expect("auth request");
    assert_eq!(tag, b'R', "expected an authentication request");
    assert_eq!(
        body.get(..4),
        Some(&[0, 0, 0, 5][..]),
        "MD5 password request"
    );
    s
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Deeply nested SQL from clients that have not authenticated: a 70 KB `CREATE VIEW v AS
/// SELECT 1+1+…` crashed ddlgate with a stack overflow, and so did long `||` and `OR` chains.
/// None of it may even be looked at before authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_sql_before_authentication_is_never_analysed() {
    let env = Env::start_with(|c| c.limits.login_timeout_ms = Duration::from_secs(2)).await;
    let admin = env.table_t(10).await;
    let addr = env.proxy_addr();
    let payloads = [
        format!(
            "CREATE VIEW v AS SELECT 1{}; DROP TABLE t",
            "+1".repeat(35_000)
        ),
        format!(
            "CREATE VIEW v AS SELECT 'a'{}; DROP TABLE t",
            " || 'a'".repeat(20_000)
        ),
        format!(
            "CREATE VIEW v AS SELECT true{}; DROP TABLE t",
            " OR true".repeat(20_000)
        ),
    ];
    for sql in &payloads {
        // An unknown user, the Query pipelined behind the startup packet: the server refuses
        // the login (no pg_hba.conf entry) and the Query is never read.
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut bytes = startup_packet("no_such_user", "postgres");
        bytes.extend(query(sql));
        s.write_all(&bytes).await.expect("send");
        let (sev, code, msg) = expect_error_then_close(&mut s).await.expect("fatal");
        assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "28000"), "{msg}");

        // A password user in the middle of authentication sends it instead of its password:
        // held unread until the login times out.
        let mut s = stalled_login(addr).await;
        s.write_all(&query(sql)).await.expect("send");
        let (sev, code, msg) = expect_error_then_close(&mut s).await.expect("fatal");
        assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "08006"), "{msg}");
        // And the same as an extended-protocol Parse.
        let mut s = stalled_login(addr).await;
        let mut parse = b"\0".to_vec();
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(b"\0\0\0");
        s.write_all(&message(b'P', &parse)).await.expect("send");
        let (_, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
        assert_eq!(code, "08006");
    }
    assert_eq!(
        analysed(&env),
        0,
        "nothing is analysed before authentication"
    );
    let shared = env.proxy.shared();
    // Counted when the session has closed its upstream side too, just after the client's.
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.connections.rejected("login_timeout") == 6
        })
        .await,
        "login timeouts: {}",
        shared.connections.rejected("login_timeout")
    );
    // Nothing ran, and the table is untouched.
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("t is still there")
        .get(0);
    assert_eq!(rows, 10);
    let views: i64 = admin
        .query_one("SELECT count(*) FROM pg_class WHERE relname = 'v'", &[])
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(views, 0);
    still_serves(&env).await;
}

/// One connection's attempt to make ddlgate buffer a 50 MB Query before authenticating: the
/// header, then zeros in 64 KiB writes until the proxy stops reading (writes stall) or closes.
/// Returns how many body bytes got out, and the ErrorResponse that ended the connection.
async fn push_huge_query(addr: SocketAddr, len: usize) -> (usize, Option<(String, String)>) {
    let s = stalled_login(addr).await;
    let (mut r, mut w) = s.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut header = vec![b'Q'];
            header.extend_from_slice(&((len + 4) as u32).to_be_bytes());
            if w.write_all(&header).await.is_err() {
                return;
            }
            let chunk = vec![0u8; 64 * 1024];
            let mut left = len;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                let n = chunk.len().min(left);
                if w.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        })
    };
    let mut first_error = None;
    loop {
        let mut header = [0u8; 5];
        let read = tokio::time::timeout(Duration::from_secs(20), r.read_exact(&mut header)).await;
        let Ok(Ok(_)) = read else { break };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if r.read_exact(&mut body).await.is_err() {
            break;
        }
        if header[0] == b'E' && first_error.is_none() {
            let (_, code, msg) = error_fields(&body);
            first_error = Some((code, msg));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.abort();
    (sent.load(Ordering::Relaxed) as usize, first_error)
}

/// Several connections each send a ~50 MB message before authentication. ddlgate neither reads
/// nor buffers it (it took 620 MB for ten such connections, 3 GB for one 60 MB Query of `;`):
/// the senders stall, the connections end with FATAL at the login timeout, and a healthy
/// session is served meanwhile. An oversized password message is refused from its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_before_authentication_are_not_buffered() {
    const CONNECTIONS: usize = 6;
    const LEN: usize = 50 << 20;
    let env = Env::start_with(|c| c.limits.login_timeout_ms = Duration::from_secs(4)).await;
    let admin = env.table_t(10).await;
    let addr = env.proxy_addr();
    still_serves(&env).await;
    let before_rss = vm_rss_kib();
    let before_analysed = analysed(&env);
    let attacks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(push_huge_query(addr, LEN)))
        .collect();
    // While they push, a healthy session works normally.
    let c = env.proxy_client("trust_user").await;
    let rows: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("healthy session")
        .get(0);
    assert_eq!(rows, 10);
    let mut peak_rss = vm_rss_kib();
    let mut total_sent = 0;
    for a in attacks {
        let (sent, error) = a.await.expect("attack task");
        peak_rss = peak_rss.max(vm_rss_kib());
        total_sent += sent;
        // ddlgate stopped reading: what got out is what the kernel's socket buffers hold.
        assert!(
            sent < LEN,
            "the whole 50 MB message was read ({sent} bytes)"
        );
        let (code, msg) = error.expect("the connection ends with a FATAL");
        assert_eq!(code, "08006", "{msg}");
    }
    let grown_mib = peak_rss.saturating_sub(before_rss) / 1024;
    eprintln!(
        "pre-auth memory: {CONNECTIONS} x {} MiB offered, {} MiB accepted by sockets, VmRSS grew {grown_mib} MiB",
        LEN >> 20,
        total_sent >> 20
    );
    // Buffering even one of the messages would add 50 MiB.
    assert!(grown_mib < 40, "VmRSS grew {grown_mib} MiB");
    assert_eq!(
        analysed(&env),
        before_analysed + 1,
        "only the healthy session's query"
    );

    // A password message larger than PostgreSQL accepts: refused from its header, at once.
    let mut s = stalled_login(addr).await;
    let mut header = vec![b'p'];
    header.extend_from_slice(&(50u32 << 20).to_be_bytes());
    s.write_all(&header).await.expect("header");
    let (sev, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "54000"));

    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("t")
        .get(0);
    assert_eq!(rows, 10);
    still_serves(&env).await;
}

/// `GET /metrics` from the admin endpoint.
async fn admin_metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: ddlgate\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body))
        .await
        .expect("admin answers")
        .expect("read");
    body
}

/// Closes after the connection ends; returns the FATAL's SQLSTATE if one was said.
async fn ends_with(s: &mut TcpStream) -> Option<String> {
    expect_error_then_close(s).await.map(|(_, code, _)| code)
}

/// 100 silent TCP connections used to lock every new client out for the 60 s login timeout.
/// Now they only compete for `max_unauthenticated` slots, where each new connection evicts the
/// oldest one that has not sent a startup packet, and the rest are closed at
/// `startup_timeout_ms`. Connections that have started logging in are not evicted: past the
/// pool, a newcomer gets FATAL 53300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_clients_out() {
    const UNAUTH: usize = 4;
    let env = Env::start_with(|c| {
        c.limits.max_clients = 5;
        c.limits.max_unauthenticated = UNAUTH;
        c.limits.startup_timeout_ms = Duration::from_secs(3);
        c.limits.login_timeout_ms = Duration::from_secs(30);
    })
    .await;
    let admin = env.table_t(10).await;
    let addr = env.proxy_addr();
    let shared = env.proxy.shared().clone();
    let counter = |reason: &str| shared.connections.rejected(reason);

    // More silent connections than the pool holds: the six past it evict the six oldest.
    let mut silent = Vec::new();
    for _ in 0..UNAUTH + 6 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            counter("evicted_before_startup") == 6
        })
        .await
    );
    // An authenticated client still gets in, evicting one more silent connection; once it is
    // authenticated its unauthenticated slot is free again, so up to max_clients get in.
    let mut clients = Vec::new();
    for _ in 0..5 {
        let c = env.proxy_client("trust_user").await;
        c.simple_query("SELECT 1").await.expect("client works");
        clients.push(c);
    }
    assert_eq!(counter("evicted_before_startup"), 7);
    // The evicted were told 53300 (a real client's startup packet may have been on its way);
    // the rest were closed at startup_timeout_ms with 08006.
    let mut evicted = 0;
    let mut timed_out = 0;
    for s in &mut silent {
        match ends_with(s).await.as_deref() {
            Some("53300") => evicted += 1,
            Some("08006") => timed_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((evicted, timed_out), (7, UNAUTH - 1));
    assert_eq!(counter("startup_timeout"), (UNAUTH - 1) as u64);

    // A sixth authenticated client finds max_clients taken: 53300, before any upstream login.
    let err = tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("over max_clients");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    assert_eq!(counter("too_many_clients"), 1);
    drop(clients.pop());
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.slots.clients_in_use() == 4
        })
        .await
    );

    // Silent connections that nothing evicts are closed at startup_timeout_ms.
    let started = tokio::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(ends_with(&mut s).await.as_deref(), Some("08006"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(counter("startup_timeout"), UNAUTH as u64);

    // Logins in progress fill the pool: they are not evicted, a newcomer gets 53300 after its
    // startup packet, and a silent newcomer times out.
    let mut stalled = Vec::new();
    for _ in 0..UNAUTH {
        stalled.push(stalled_login(addr).await);
    }
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet("trust_user", "postgres"))
        .await
        .expect("startup");
    let (sev, code, msg) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "53300"), "{msg}");
    assert_eq!(counter("too_many_unauthenticated"), 1);
    // Operators see it on /metrics: the pool is full of logins, 4 authenticated sessions.
    let exposition = admin_metrics(env.proxy.admin_addr().expect("admin endpoint")).await;
    for line in [
        format!("ddlgate_connections_unauthenticated {UNAUTH}"),
        "ddlgate_connections_authenticated 4".to_owned(),
    ] {
        assert!(exposition.contains(&line), "{line} missing:\n{exposition}");
    }
    // Once they give up, there is room again.
    drop(stalled);
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.slots.unauthenticated_in_use() == 0
        })
        .await
    );
    still_serves(&env).await;

    let text = shared.metrics.render();
    for line in [
        "ddlgate_connections_rejected_total{reason=\"evicted_before_startup\"} 7",
        "ddlgate_connections_rejected_total{reason=\"too_many_unauthenticated\"} 1",
        "ddlgate_connections_rejected_total{reason=\"too_many_clients\"} 1",
        "ddlgate_connections_rejected_total{reason=\"startup_timeout\"} 4",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("t")
        .get(0);
    assert_eq!(rows, 10);
}

/// A scripted upstream that asks every client for a cleartext password, accepts any, and
/// answers every Query with an empty result: a login whose AuthenticationOk the test controls.
async fn password_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).await.ok()?;
                let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).checked_sub(4)?];
                s.read_exact(&mut rest).await.ok()?;
                s.write_all(&message(b'R', &3u32.to_be_bytes()))
                    .await
                    .ok()?;
                let (tag, _) = read_message(&mut s).await?;
                assert_eq!(tag, b'p');
                let mut hello = message(b'R', &0u32.to_be_bytes());
                hello.extend(message(b'S', b"server_version\x0015.0\0"));
                hello.extend(message(b'K', &[0, 0, 0, 9, 1, 2, 3, 4]));
                hello.extend(message(b'Z', b"I"));
                s.write_all(&hello).await.ok()?;
                while let Some((tag, _)) = read_message(&mut s).await {
                    match tag {
                        b'Q' => {
                            let mut out = message(b'I', b"");
                            out.extend(message(b'Z', b"I"));
                            s.write_all(&out).await.ok()?;
                        }
                        b'X' => break,
                        _ => {}
                    }
                }
                Some(())
            });
        }
    });
    addr
}

fn password_message() -> Vec<u8> {
    message(b'p', b"secret\0")
}

/// A full login against [`password_upstream`]; returns the stream at ReadyForQuery.
async fn login(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet("someone", "postgres"))
        .await
        .expect("startup");
    assert_eq!(read_message(&mut s).await.map(|m| m.0), Some(b'R'));
    s.write_all(&password_message()).await.expect("password");
    let msgs = read_until_ready(&mut s).await;
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'), "{msgs:?}");
    s
}

/// The client slot is taken at AuthenticationOk: a client that started logging in while there
/// was room, but whose credentials are accepted when `max_clients` sessions are running, gets
/// FATAL 53300 instead of its AuthenticationOk, and never a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_slot_is_taken_at_authentication() {
    init_tracing();
    let upstream = password_upstream().await;
    let proxy = start_proxy(upstream.port(), |c| {
        c.limits.max_clients = 2;
        c.admin.enabled = false;
        c.monitor.enabled = false;
        c.catalog.enabled = false;
    })
    .await;
    let addr = proxy.local_addr();
    let shared = proxy.shared().clone();

    // Started while there was room; asked for its password.
    let mut late = TcpStream::connect(addr).await.expect("connect");
    late.write_all(&startup_packet("someone", "postgres"))
        .await
        .expect("startup");
    assert_eq!(read_message(&mut late).await.map(|m| m.0), Some(b'R'));
    assert_eq!(shared.slots.unauthenticated_in_use(), 1);
    // Two others log in fully meanwhile: max_clients is reached.
    let mut a = login(addr).await;
    let _b = login(addr).await;
    assert_eq!(shared.slots.clients_in_use(), 2);
    // Now its password is accepted upstream: no AuthenticationOk for it, a FATAL 53300.
    late.write_all(&password_message()).await.expect("password");
    let mut seen = Vec::new();
    while let Some((tag, body)) = read_message(&mut late).await {
        seen.push((tag, body));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (sev, code, _) = error_fields(&seen[0].1);
    assert_eq!(
        (seen[0].0, sev.as_str(), code.as_str()),
        (b'E', "FATAL", "53300")
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.connections.rejected("too_many_clients") == 1
                && shared.slots.unauthenticated_in_use() == 0
        })
        .await
    );

    // The admitted sessions are unaffected; when one ends there is room again.
    a.write_all(&query("SELECT 1")).await.expect("query");
    let msgs = read_until_ready(&mut a).await;
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'));
    a.write_all(&message(b'X', b"")).await.expect("terminate");
    drop(a);
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.slots.clients_in_use() == 1
        })
        .await
    );
    let _c = login(addr).await;
}

/// A legitimate client may pipeline its first Query behind the startup packet (trust
/// authentication needs no round trip). It is held until the session is ready, then analysed
/// and answered as usual — and a DDL sent that way is decided like any other, never forwarded
/// unexamined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_pipelined_behind_the_startup_packet_is_answered_and_checked() {
    let env = Env::start_with(|c| {
        c.policy
            .rules
            .insert("ban-drop-table".to_owned(), Action::Block);
    })
    .await;
    let admin = env.table_t(10).await;
    let addr = env.proxy_addr();

    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = startup_packet("trust_user", "postgres");
    bytes.extend(query("SELECT 41 + 1 AS answer"));
    s.write_all(&bytes).await.expect("one write");
    let login = read_until_ready(&mut s).await;
    assert_eq!(login.first().map(|m| m.0), Some(b'R'));
    assert_eq!(login.last().map(|m| m.0), Some(b'Z'));
    let answer = read_until_ready(&mut s).await;
    let tags: Vec<u8> = answer.iter().map(|m| m.0).collect();
    assert_eq!(tags, b"TDCZ", "{answer:?}");
    // DataRow: one column, 2 bytes, "42".
    assert_eq!(answer[1].1, b"\0\x01\0\0\0\x0242");

    // The same with a DROP TABLE the policy blocks.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = startup_packet("trust_user", "postgres");
    bytes.extend(query("DROP TABLE t"));
    s.write_all(&bytes).await.expect("one write");
    let login = read_until_ready(&mut s).await;
    assert_eq!(login.last().map(|m| m.0), Some(b'Z'));
    let answer = read_until_ready(&mut s).await;
    let error = answer
        .iter()
        .find(|m| m.0 == b'E')
        .map(|m| error_fields(&m.1))
        .unwrap_or_else(|| panic!("blocked: {answer:?}"));
    assert_eq!(error.1, "DG001", "{error:?}");
    assert_eq!(answer.last().map(|m| m.0), Some(b'Z'));
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("t is still there")
        .get(0);
    assert_eq!(rows, 10);
    still_serves(&env).await;
}
