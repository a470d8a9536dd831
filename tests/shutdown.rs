//! Graceful and fast shutdown: a drain lets open transactions finish and closes idle sessions
//! with FATAL 57P01; terminating closes everything and cancels running statements; the binary
//! maps SIGTERM and SIGINT onto the two.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

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
