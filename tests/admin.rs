//! The admin endpoint against real traffic: `/metrics` parses as Prometheus text and its values
//! move with what clients do (statements, DDL decisions, a lock wait and its retries, sessions
//! by transaction state); `/healthz`, `/readyz`, `/status`; the bearer token.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` on the admin endpoint: (status code, body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: ddlgate\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked bodies: good enough to strip the chunk-size lines for these small answers.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .filter(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_hexdigit()))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        body
    };
    (status, body)
}

/// Scrapes and parses `/metrics`: (name + sorted labels) → value.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (code, body) = get(addr, "/metrics", None).await;
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text exposition");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), v);
    }
    out
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_ddl_and_lock_waits() {
    let env = Env::start_with(|c| {
        c.guard.lock_timeout_ms = Duration::from_millis(100);
        c.guard.backoff_initial_ms = Duration::from_millis(20);
        c.guard.backoff_max_ms = Duration::from_millis(50);
        c.guard.max_attempts = 100;
    })
    .await;
    let admin_addr = env.proxy.admin_addr().expect("admin endpoint");
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE TABLE t (id int); ALTER TABLE t OWNER TO trust_user")
        .await
        .expect("setup");
    let before = scrape(admin_addr).await;

    let p = env.proxy_client("trust_user").await;
    for _ in 0..10 {
        p.simple_query("SELECT 1").await.expect("select");
    }
    let _ = p.batch_execute("SELECT 1/0").await;
    p.batch_execute("BEGIN").await.expect("begin");
    // A blocked DDL decision, in the transaction.
    let _ = p.batch_execute("CREATE INDEX i ON t (id)").await;
    p.batch_execute("ROLLBACK").await.expect("rollback");
    // A lock wait: the guard retries until the blocker commits.
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let alter = tokio::spawn(async move {
        p.batch_execute("ALTER TABLE t ADD COLUMN c int")
            .await
            .map(|_| p)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // While it waits, /status shows it with its blocker.
    let (code, status) = get(admin_addr, "/status", None).await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let ddl = status["ddl"].as_array().expect("ddl list");
    assert_eq!(ddl.len(), 1, "{status}");
    assert_eq!(ddl[0]["tables"][0], "t");
    assert!(
        ddl[0]["blockers"][0]
            .as_str()
            .unwrap_or("")
            .contains("AccessShareLock"),
        "{status}"
    );
    assert!(status["sessions"]["active"].as_u64() >= Some(1));
    blocker.batch_execute("COMMIT").await.expect("commit");
    let p = alter.await.expect("join").expect("alter");
    p.batch_execute("BEGIN").await.expect("begin");

    let after = scrape(admin_addr).await;
    let moved = |key: &str| value(&after, key) - value(&before, key);
    assert!(moved("ddlgate_statements_completed_total{kind=dml,outcome=ok}") >= 10.0);
    assert!(moved("ddlgate_statements_completed_total{kind=dml,outcome=error}") >= 1.0);
    assert!(moved("ddlgate_statements_completed_total{kind=ddl,outcome=ok}") >= 1.0);
    assert!(
        moved("ddlgate_statement_duration_seconds_count{kind=dml}") >= 10.0
            || moved("ddlgate_statement_duration_seconds{kind=dml}") >= 10.0
    );
    assert_eq!(
        moved("ddlgate_ddl_decisions_total{action=block,rule=require-concurrent-index-creation}"),
        1.0
    );
    assert!(moved("ddlgate_lock_retries_total{}") >= 1.0);
    assert!(moved("ddlgate_guard_runs_total{}") >= 1.0);
    assert!(value(&after, "ddlgate_sessions{tx_state=in_transaction}") >= 1.0);
    assert!(value(&after, "ddlgate_connections_active{}") >= 1.0);
    assert!(moved("ddlgate_connections_accepted_total{}") >= 1.0);
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("ddlgate_lock_wait_seconds")),
        "{:?}",
        after.keys()
    );
    // Label values are bounded sets: never SQL, tables or users.
    for k in after.keys() {
        assert!(
            !k.contains("ALTER") && !k.contains("trust_user") && !k.contains("=t,"),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_the_bearer_token() {
    let env = Env::start_with(|c| c.admin.token = "s3cret".to_owned()).await;
    let addr = env.proxy.admin_addr().expect("admin endpoint");
    assert_eq!(get(addr, "/healthz", None).await.0, 401);
    assert_eq!(get(addr, "/healthz", Some("wrong")).await.0, 401);
    let (code, body) = get(addr, "/healthz", Some("s3cret")).await;
    assert_eq!((code, body.trim()), (200, "ok"));
    assert_eq!(get(addr, "/readyz", Some("s3cret")).await.0, 200);
    // Upstream gone: not ready, and says why.
    env.pg.stop_immediate();
    let (code, body) = get(addr, "/readyz", Some("s3cret")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("unreachable"), "{body}");
}
