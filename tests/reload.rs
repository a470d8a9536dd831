//! Live reload: under load, `POST /reload` (and SIGHUP on the real binary) swaps the policy
//! without dropping a session, the next statement of every session follows the new policy, a
//! bad configuration is rejected with the reason while the old one stays in force; and
//! `ddlgate config check`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    s.write_all(format!("POST {path} HTTP/1.1\r\nHost: ddlgate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("response");
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, raw)
}

// The small-table allowance is off: these tables are small, and the test needs a verdict
// that the reloaded policy changes.
const BASE: &str = "[policy]\nmode = \"enforce\"\n[catalog]\nsmall_table_rows = 0\n";
const STRICT: &str = "[policy]\nmode = \"enforce\"\n[policy.rules]\n\"require-concurrent-index-creation\" = \"block\"\n[catalog]\nsmall_table_rows = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_keeps_sessions_and_applies_to_the_next_statement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ddlgate.toml");
    std::fs::write(&file, BASE).expect("write config");
    let env = Env::start_with(|c| c.catalog.small_table_rows = 0).await;
    *env.proxy.shared().reload_source.lock().expect("lock") = Some(ddlgate::state::ReloadSource {
        file: Some(file.clone()),
        overrides: Default::default(),
    });
    let admin_addr = env.proxy.admin_addr().expect("admin");
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100); ALTER TABLE t OWNER TO trust_user")
        .await
        .expect("setup");

    // Load: four sessions querying in a loop; none may see an error.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let c = env.proxy_client("trust_user").await;
        let (stop, done) = (stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                c.query_one("SELECT count(*) FROM t", &[])
                    .await
                    .expect("no session is disturbed by a reload");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("CREATE INDEX t_a ON t (x)")
        .await
        .expect("rewritten to CONCURRENTLY under the old policy");

    std::fs::write(&file, STRICT).expect("write config");
    let (code, body) = post(admin_addr, "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":2"), "{body}");
    // The same session's next statement follows the new policy.
    let err = p
        .batch_execute("CREATE INDEX t_b ON t (x)")
        .await
        .expect_err("blocked now");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");

    // A bad configuration is rejected with the reason; the running one stays.
    std::fs::write(&file, "[policy]\nmode = \"loud\"\n").expect("write config");
    let (code, body) = post(admin_addr, "/reload").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("mode"), "{body}");
    let err = p
        .batch_execute("CREATE INDEX t_c ON t (x)")
        .await
        .expect_err("still the strict policy");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");

    let before = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every session is still connected (checked before the workers end and drop theirs).
    assert_eq!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_connections_active", &[]),
        5.0
    );
    // What only a restart can change is named, not silently ignored.
    let mut audit_on = (*env.proxy.shared().live.load().config).clone();
    audit_on.audit.enabled = true;
    assert!(env.proxy.shared().reload(audit_on).contains(&"audit"));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert!(done.load(Ordering::Relaxed) > before, "load kept flowing");
}

#[test]
fn config_check_validates_and_prints_the_effective_policy() {
    let bin = env!("CARGO_BIN_EXE_ddlgate");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(bin)
        .args(["config", "check", &format!("{root}/config/guardrail.toml")])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("profile humans") && text.contains("overridable: none"),
        "{text}"
    );
    assert!(
        text.contains("ban-drop-table") && text.contains("block  (changed)"),
        "{text}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[guard]\nlock_timeout_ms = 0\n").expect("write");
    let out = std::process::Command::new(bin)
        .args(["config", "check", bad.to_str().expect("path")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("guard.lock_timeout_ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_real_binary() {
    init_tracing();
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ddlgate.toml");
    std::fs::write(&file, BASE).expect("write config");
    let port = common::pg::free_port();
    let admin_listen = format!("127.0.0.1:{}", common::pg::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args([
            "--config",
            file.to_str().expect("path"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &format!("127.0.0.1:{}", pg.port()),
        ])
        .env("DDLGATE__ADMIN__LISTEN", &admin_listen)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start ddlgate");
    // Killed however the test ends, so a failure leaves no process behind.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = KillOnDrop(child);
    let conn = conn_str(port, "trust_user");
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .is_ok()
        })
        .await
    );
    let admin = connect(&pg.conn_str("ddlgate_admin", None)).await;
    admin
        .batch_execute("CREATE TABLE t (x int); ALTER TABLE t OWNER TO trust_user")
        .await
        .expect("setup");
    let p = connect(&conn).await;
    p.batch_execute("CREATE INDEX t_a ON t (x)")
        .await
        .expect("rewritten");
    std::fs::write(&file, STRICT).expect("write config");
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let blocked = eventually(Duration::from_secs(5), || async {
        p.batch_execute("CREATE INDEX IF NOT EXISTS t_b ON t (x)")
            .await
            .is_err_and(|e| sqlstate(&e).as_deref() == Some("DG001"))
    })
    .await;
    assert!(blocked, "the next statement follows the reloaded policy");
    let one: i32 = p
        .query_one("SELECT 1", &[])
        .await
        .expect("session alive")
        .get(0);
    assert_eq!(one, 1);

    // `ddlgate reload` finds the instance's admin endpoint from the same configuration.
    let reload = |env_listen: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
            .args(["--config", file.to_str().expect("path"), "reload"])
            .env("DDLGATE__ADMIN__LISTEN", env_listen)
            .output()
            .expect("run ddlgate reload")
    };
    std::fs::write(&file, BASE).expect("write config");
    let out = reload(&admin_listen);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"generation\":3"));
    p.batch_execute("CREATE INDEX t_c ON t (x)")
        .await
        .expect("rewritten again under the base policy");
    // A bad file is refused before it is sent (exit 2, the reason on stderr), and the running
    // policy stays.
    std::fs::write(&file, "[guard]\nlock_timeout_ms = 0\n").expect("write config");
    let out = reload(&admin_listen);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lock_timeout_ms"));
    p.batch_execute("CREATE INDEX t_d ON t (x)")
        .await
        .expect("still the base policy");
}
