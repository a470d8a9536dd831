//! Faults and hostile input: each gets a clear, protocol-correct error, and none affects other
//! sessions or the proxy itself.

mod common;

use std::time::Duration;

use common::fake::{self, Fault};
use common::wire::{
    self, connect_trust, expect_error_then_close, query, read_message, read_until_ready,
    startup_packet,
};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_fatal_08001_naming_it() {
    init_tracing();
    let dead = pg::free_port();
    let proxy = start_proxy(dead, |_| {}).await;
    let conn = conn_str(proxy.local_addr().port(), "trust_user");
    let err = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err}");
    let db = err.as_db_error().expect("db error");
    assert!(
        db.message().contains(&format!("127.0.0.1:{dead}")),
        "{}",
        db.message()
    );
    assert!(db.hint().is_some());
    assert_eq!(
        proxy.shared().connections.rejected("upstream_unreachable"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_query_is_an_error_not_a_hang() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    let running = tokio::spawn(async move { p.simple_query("SELECT pg_sleep(60)").await });
    let admin = env.direct_client("ddlgate_admin").await;
    assert!(
        wait_active(&admin, "SELECT pg_sleep(60)", 1, Duration::from_secs(10)).await,
        "the query never started"
    );
    let pg = &env.pg;
    pg.stop_immediate();
    let res = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("no hang")
        .expect("join");
    assert!(res.is_err(), "the client must get an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_vanishing_silently_gets_fatal_08006() {
    init_tracing();
    let addr = fake::start(Fault::CloseSilently).await;
    let proxy = start_proxy(addr.port(), |_| {}).await;
    let mut s = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    s.write_all(&startup_packet("u", "d"))
        .await
        .expect("startup");
    let hello = read_until_ready(&mut s).await;
    assert_eq!(hello.last().map(|m| m.0), Some(b'Z'));
    s.write_all(&query("SELECT 1")).await.expect("query");
    let (severity, code, message) = expect_error_then_close(&mut s)
        .await
        .expect("an error, then close");
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("FATAL", "08006"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_vanishing_mid_message_closes_the_client() {
    init_tracing();
    let addr = fake::start(Fault::CloseMidMessage).await;
    let proxy = start_proxy(addr.port(), |_| {}).await;
    let mut s = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    s.write_all(&startup_packet("u", "d"))
        .await
        .expect("startup");
    read_until_ready(&mut s).await;
    s.write_all(&query("SELECT 1")).await.expect("query");
    // RowDescription arrives whole; the half DataRow must not be followed by an ErrorResponse
    // glued onto it (that would corrupt the stream): the client sees the connection close.
    let (tag, _) = read_message(&mut s).await.expect("row description");
    assert_eq!(tag, b'T');
    assert!(
        read_message(&mut s).await.is_none(),
        "then EOF, no further message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_client_gets_its_statement_cancelled_and_locks_released() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE TABLE hot (id int); GRANT ALL ON hot TO trust_user")
        .await
        .expect("create");
    let (client, connection) =
        tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    let conn_task = tokio::spawn(connection);
    // One Query = one implicit transaction holding ACCESS EXCLUSIVE on `hot` while it sleeps.
    tokio::spawn(async move {
        let _ = client
            .simple_query("LOCK TABLE hot IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60)")
            .await;
    });
    assert!(wait_active(&admin, "LOCK TABLE hot%", 1, Duration::from_secs(10)).await);
    // The client vanishes: its socket closes without a Terminate.
    conn_task.abort();
    // PostgreSQL alone would keep sleeping (and holding the lock) for a minute; through ddlgate
    // the statement is cancelled and the lock released within moments.
    assert!(
        wait_active(&admin, "LOCK TABLE hot%", 0, Duration::from_secs(5)).await,
        "the abandoned statement must be cancelled"
    );
    admin
        .batch_execute("BEGIN; LOCK TABLE hot IN ACCESS EXCLUSIVE MODE NOWAIT; COMMIT")
        .await
        .expect("the lock must be free");
    assert_eq!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_cancels_on_client_loss_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_get_fatal_errors() {
    let env = Env::start_with(|c| c.limits.max_statement_bytes = 4096).await;
    let addr = env.proxy_addr();

    // A startup packet over PostgreSQL's 10,000-byte limit: refused before it is read.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&20_000u32.to_be_bytes()).await.expect("len");
    let (sev, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "08P01"));

    // A startup packet that is not one (protocol 2, garbage code).
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).await.expect("v2");
    let (_, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!(code, "08P01");

    // After startup: a length field below 4.
    let mut s = connect_trust(addr).await;
    s.write_all(&[b'Q', 0, 0, 0, 2]).await.expect("bad len");
    let (sev, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "08P01"));

    // A declared 2 GiB message: refused from the header alone, nothing allocated.
    let mut s = connect_trust(addr).await;
    s.write_all(&[b'd', 0x7f, 0xff, 0xff, 0xff])
        .await
        .expect("huge");
    let (_, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!(code, "54000");

    // A Query over limits.max_statement_bytes.
    let mut s = connect_trust(addr).await;
    s.write_all(&query(&format!("SELECT '{}'", "x".repeat(5000))))
        .await
        .expect("big query");
    let (_, code, message) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!(code, "54000", "{message}");

    // An unknown message type is relayed; PostgreSQL itself refuses it.
    let mut s = connect_trust(addr).await;
    s.write_all(&wire::message(b'z', b"junk"))
        .await
        .expect("unknown");
    let (sev, code, _) = expect_error_then_close(&mut s)
        .await
        .expect("fatal from server");
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "08P01"));

    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_never_takes_the_proxy_down() {
    let env = Env::start().await;
    let addr = env.proxy_addr();
    let mut rng = fastrand::Rng::with_seed(0xdd1_9a7e);
    for round in 0..60 {
        let len = rng.usize(1..2000);
        let garbage: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let mut s = if round % 2 == 0 {
            TcpStream::connect(addr).await.expect("connect")
        } else {
            connect_trust(addr).await
        };
        let _ = s.write_all(&garbage).await;
        let _ = s.shutdown().await;
        // Whatever comes back, the connection must end rather than hang.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while read_message(&mut s).await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "round {round}: connection hung");
    }
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timeout_closes_silent_and_stuck_clients() {
    let env = Env::start_with(|c| c.limits.login_timeout_ms = Duration::from_millis(400)).await;
    let addr = env.proxy_addr();
    // Says nothing at all.
    let started = tokio::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let (_, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!(code, "08006");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Starts, is asked for a password, never answers.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet("md5_user", "postgres"))
        .await
        .expect("startup");
    let (tag, _) = read_message(&mut s).await.expect("auth request");
    assert_eq!(tag, b'R');
    let (_, code, _) = expect_error_then_close(&mut s).await.expect("fatal");
    assert_eq!(code, "08006");
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_the_limit_get_fatal_53300() {
    let env = Env::start_with(|c| c.limits.max_clients = 2).await;
    let a = env.proxy_client("trust_user").await;
    let b = env.proxy_client("trust_user").await;
    let err = tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("third refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    // Cancel requests are not sessions: they still get through at the limit.
    let token = a.cancel_token();
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel at the limit");
    drop(a);
    let shared = env.proxy.shared().clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.metrics.value("ddlgate_connections_active", &[]) == 1.0
        })
        .await
    );
    let c = env.proxy_client("trust_user").await;
    c.simple_query("SELECT 1").await.expect("room again");
    b.simple_query("SELECT 1").await.expect("b unaffected");
    assert_eq!(
        env.proxy.shared().connections.rejected("too_many_clients"),
        1
    );
}
