//! Graceful and fast shutdown: a drain lets open transactions finish and closes idle sessions
//! with FATAL 57P01; terminating closes everything and cancels running statements; the binary
//! maps SIGTERM and SIGINT onto the two.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Sessions on the steady relay now (handed there and not back): the drain and terminate
/// below reach them there, through the relay's shutdown wake-up.
fn on_steady_relay(env: &Env) -> i64 {
    steady_handoffs(env, "steady") as i64 - steady_handoffs(env, "loop") as i64
}

async fn is_closed(c: &tokio_postgres::Client) -> bool {
    eventually(Duration::from_secs(5), || async {
        c.is_closed() || c.simple_query("SELECT 1").await.is_err()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_open_transactions_finish_and_closes_idle_sessions() {
    let env = Env::start().await;
    let idle = env.proxy_client("trust_user").await;
    let busy = env.proxy_client("trust_user").await;
    busy.batch_execute("CREATE TABLE d (id int)")
        .await
        .expect("create");
    busy.batch_execute("BEGIN; INSERT INTO d VALUES (1)")
        .await
        .expect("begin");
    let addr = env.proxy_addr();
    assert!(
        eventually(Duration::from_secs(5), || async {
            on_steady_relay(&env) == 2
        })
        .await,
        "both sessions on the steady relay"
    );
    let Env { pg, proxy } = env;
    proxy.drain();
    // The idle session is closed at once with 57P01.
    assert!(
        is_closed(&idle).await,
        "idle session must be closed by the drain"
    );
    // New connections are refused.
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await,
        "the listener must be closed"
    );
    // The transaction runs to completion, then its session is closed too.
    busy.batch_execute("INSERT INTO d VALUES (2)")
        .await
        .expect("still in the transaction");
    busy.batch_execute("COMMIT")
        .await
        .expect("commit during drain");
    assert!(is_closed(&busy).await);
    tokio::time::timeout(Duration::from_secs(10), proxy.join())
        .await
        .expect("proxy stops once sessions are done");
    let direct = connect(&conn_str(pg.port(), "trust_user")).await;
    let n: i64 = direct
        .query_one("SELECT count(*) FROM d", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2, "the drained transaction committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_closes_everything_and_cancels_running_statements() {
    let env = Env::start().await;
    let busy = env.proxy_client("trust_user").await;
    let admin = env.direct_client("ddlgate_admin").await;
    let running = tokio::spawn(async move {
        let r = busy.simple_query("BEGIN; SELECT pg_sleep(60)").await;
        (r, busy)
    });
    assert!(
        wait_active(
            &admin,
            "BEGIN; SELECT pg_sleep(60)",
            1,
            Duration::from_secs(10)
        )
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            on_steady_relay(&env) == 1
        })
        .await,
        "the running session on the steady relay"
    );
    let Env { pg: _pg, proxy } = env;
    proxy.terminate();
    let (r, _busy) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("prompt")
        .expect("join");
    let err = r.expect_err("terminated");
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    assert!(
        wait_active(
            &admin,
            "BEGIN; SELECT pg_sleep(60)",
            0,
            Duration::from_secs(5)
        )
        .await,
        "the running statement must be cancelled upstream"
    );
    tokio::time::timeout(Duration::from_secs(10), proxy.join())
        .await
        .expect("stops");
}

struct Binary(Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_binary(upstream_port: u16, listen_port: u16, drain_ms: u64) -> Binary {
    let child = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{listen_port}"),
            "--upstream",
            &format!("127.0.0.1:{upstream_port}"),
        ])
        .env("DDLGATE__SERVER__DRAIN_TIMEOUT_MS", drain_ms.to_string())
        // Tests run side by side: the admin endpoint on a free port.
        .env("DDLGATE__ADMIN__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ddlgate binary");
    Binary(child)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

async fn wait_exit(b: &mut Binary, within: Duration) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = b.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ddlgate did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drains_on_sigterm_and_stops_fast_on_sigint() {
    init_tracing();
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster");
    let port = pg::free_port();
    let mut bin = start_binary(pg.port(), port, 20_000);
    let conn = conn_str(port, "trust_user");
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .is_ok()
        })
        .await
    );

    // SIGTERM with a transaction open: the transaction may finish, then the process exits 0.
    let c = connect(&conn).await;
    c.batch_execute("CREATE TABLE s (id int); BEGIN; INSERT INTO s VALUES (1)")
        .await
        .expect("begin");
    signal(&bin.0, "-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.batch_execute("COMMIT")
        .await
        .expect("commit while draining");
    let status = wait_exit(&mut bin, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");

    // SIGINT with a transaction open: exits at once, well before the 20 s drain timeout.
    let mut bin = start_binary(pg.port(), port, 20_000);
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .is_ok()
        })
        .await
    );
    let c = connect(&conn).await;
    c.batch_execute("BEGIN; INSERT INTO s VALUES (2)")
        .await
        .expect("begin");
    let started = tokio::time::Instant::now();
    signal(&bin.0, "-INT");
    let status = wait_exit(&mut bin, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        c.simple_query("SELECT 1").await.is_err(),
        "the session was closed"
    );
}

#[test]
fn binary_rejects_bad_configuration_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[limits]\nmax_clinets = 5\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["--config", file.to_str().expect("path")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_clinets"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .env("DDLGATE__UPSTREAM__CONNECT_TIMEOUT_MS", "soon")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connect_timeout_ms"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A binary in front of a fresh cluster with table `s`, ready to accept; returns the cluster,
/// the binary and the connection string through it.
async fn binary_with_table(drain_ms: u64) -> (PgCluster, Binary, String) {
    init_tracing();
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster");
    let port = pg::free_port();
    let bin = start_binary(pg.port(), port, drain_ms);
    let conn = conn_str(port, "trust_user");
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .is_ok()
        })
        .await
    );
    connect(&conn_str(pg.port(), "trust_user"))
        .await
        .batch_execute("CREATE TABLE s (id int)")
        .await
        .expect("create");
    (pg, bin, conn)
}

/// Starts `sql` through the proxy on its own connection; the handle yields its result.
async fn start_ddl(
    conn: &str,
    sql: &'static str,
) -> tokio::task::JoinHandle<Result<(), tokio_postgres::Error>> {
    let c = connect(conn).await;
    tokio::spawn(async move { c.batch_execute(sql).await })
}

/// Holds ACCESS SHARE on `s` in an open transaction straight on the server, so any DDL needing
/// ACCESS EXCLUSIVE waits in the guard (lock_timeout, backoff, retry) for up to max_wait_ms.
async fn hold_table(pg: &PgCluster) -> tokio_postgres::Client {
    let holder = connect(&conn_str(pg.port(), "trust_user")).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE s IN ACCESS SHARE MODE")
        .await
        .expect("lock");
    holder
}

/// The guarded ALTER (seen by the server as ddlgate's retried statement) has started.
async fn guard_is_retrying(pg: &PgCluster) {
    let admin = connect(&pg.admin_conn_str()).await;
    assert!(
        wait_active(&admin, "%ALTER TABLE s%", 1, Duration::from_secs(10)).await,
        "the ALTER never reached the server"
    );
}

/// Issue 11: SIGINT while a DDL statement waits in the guard (retrying on lock_timeout, for up
/// to guard.max_wait_ms = 60 s) ends the process within about a second, and the client is told
/// why (57P01) instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigint_ends_a_guard_wait_at_once() {
    let (pg, mut bin, conn) = binary_with_table(20_000).await;
    let _holder = hold_table(&pg).await;
    let ddl = start_ddl(&conn, "ALTER TABLE s ADD COLUMN y int").await;
    guard_is_retrying(&pg).await;
    let started = tokio::time::Instant::now();
    signal(&bin.0, "-INT");
    let status = wait_exit(&mut bin, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!("SIGINT during a guard wait: exited after {took:?}");
    assert!(took < Duration::from_millis(1500), "exit took {took:?}");
    let err = ddl
        .await
        .expect("task")
        .expect_err("the DDL cannot complete");
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
}

/// SIGINT while a DDL statement waits for its turn in the per-table queue (for up to
/// guard.queue_timeout_ms = 60 s) ends the process within about a second too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigint_ends_a_queue_wait_at_once() {
    let (pg, mut bin, conn) = binary_with_table(20_000).await;
    // The first DDL holds the table's turn until its transaction ends.
    let first = connect(&conn).await;
    first
        .batch_execute("BEGIN; ALTER TABLE s ADD COLUMN z int")
        .await
        .expect("first DDL");
    let (second, mut notices) = client_with_notices(&conn).await;
    let ddl =
        tokio::spawn(async move { second.batch_execute("ALTER TABLE s ADD COLUMN w int").await });
    let queued = tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("a queue notice")
        .expect("notice");
    assert!(
        notice_line(&queued).contains("one DDL per table at a time"),
        "{}",
        notice_line(&queued)
    );
    let started = tokio::time::Instant::now();
    signal(&bin.0, "-INT");
    let status = wait_exit(&mut bin, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!("SIGINT during a queue wait: exited after {took:?}");
    assert!(took < Duration::from_millis(1500), "exit took {took:?}");
    let err = ddl
        .await
        .expect("task")
        .expect_err("the DDL cannot complete");
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    drop(pg);
}

/// SIGTERM drains: a DDL statement waiting in the guard may go on until
/// server.drain_timeout_ms, not longer; then the process ends, the statement is cancelled on
/// the server and nothing of it is left waiting there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigterm_drain_is_bounded_with_a_guard_wait() {
    let (pg, mut bin, conn) = binary_with_table(1_500).await;
    let holder = hold_table(&pg).await;
    let ddl = start_ddl(&conn, "ALTER TABLE s ADD COLUMN y int").await;
    guard_is_retrying(&pg).await;
    let started = tokio::time::Instant::now();
    signal(&bin.0, "-TERM");
    let status = wait_exit(&mut bin, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!("SIGTERM (drain 1.5 s) during a guard wait: exited after {took:?}");
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_millis(3_000),
        "exit took {took:?}"
    );
    let err = ddl
        .await
        .expect("task")
        .expect_err("the DDL cannot complete");
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    holder.batch_execute("COMMIT").await.expect("commit");
    let admin = connect(&pg.admin_conn_str()).await;
    assert!(
        wait_active(&admin, "%ALTER TABLE s%", 0, Duration::from_secs(5)).await,
        "the ALTER must not be left running on the server"
    );
    let cols: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 's'::regclass AND attname = 'y'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(cols, 0, "the cancelled ALTER did not run");
}
