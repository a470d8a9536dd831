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
        // The empty table would be small: the test needs a blocked decision.
        c.catalog.small_table_rows = 0;
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
    // While it waits, /status shows it with its blocker (once the guard has named one).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let (code, body) = get(admin_addr, "/status", None).await;
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        if status["ddl"][0]["blockers"][0].is_string() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/status never showed the waiting DDL's blocker: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    // BEGIN and ROLLBACK: transaction control only.
    assert!(moved("ddlgate_statements_completed_total{kind=other,outcome=ok}") >= 2.0);
    assert!(moved("ddlgate_proxy_overhead_seconds{kind=dml}") >= 10.0);
    // The split is measured: ddlgate's share is above zero and below the whole.
    let overhead = moved("ddlgate_proxy_overhead_seconds_sum{kind=dml}");
    let total = moved("ddlgate_statement_duration_seconds_sum{kind=dml}");
    let upstream = moved("ddlgate_statement_upstream_seconds_sum{kind=dml}");
    assert!(
        overhead > 0.0 && upstream > 0.0 && upstream < total,
        "overhead {overhead} upstream {upstream} total {total}"
    );
    assert!(moved("ddlgate_statement_upstream_seconds{kind=dml}") >= 10.0);
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
    let env =
        Env::start_with(|c| c.admin.token = ddlgate::config::Secret("s3cret".to_owned())).await;
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
    // Draining: out of rotation at once, while /healthz still answers.
    env.proxy.drain();
    let (code, body) = get(addr, "/readyz", Some("s3cret")).await;
    assert_eq!((code, body.trim()), (503, "shutting down"));
    assert_eq!(get(addr, "/healthz", Some("s3cret")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_lines_are_json_with_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let p2 = path.clone();
    let env = Env::start_with(move |c| {
        c.audit.enabled = true;
        c.audit.path = p2.to_string_lossy().into_owned();
        c.catalog.small_table_rows = 0;
        c.guard.lock_timeout_ms = Duration::from_millis(100);
        c.guard.backoff_initial_ms = Duration::from_millis(20);
        c.guard.backoff_max_ms = Duration::from_millis(50);
    })
    .await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE TABLE t (id int); ALTER TABLE t OWNER TO trust_user")
        .await
        .expect("setup");
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("CREATE INDEX t_id ON t (id)")
        .await
        .expect("rewritten");
    let _ = p.batch_execute("BEGIN; CREATE INDEX t_id2 ON t (id)").await;
    p.batch_execute("ROLLBACK").await.expect("rollback");
    p.batch_execute("ALTER TABLE t ADD COLUMN x int")
        .await
        .expect("allowed");
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let alter = tokio::spawn(async move {
        p.batch_execute(
            "/* ddlgate:allow ban-drop-column reason=\"unused since v2\" */ ALTER TABLE t DROP COLUMN x",
        )
        .await
    });
    // The blocker commits once the guard has timed out on the lock at least once (the audit
    // record below then has a lock wait).
    assert!(
        guard_retried(&env, 1).await,
        "the guard never retried the DROP COLUMN"
    );
    blocker.batch_execute("COMMIT").await.expect("commit");
    alter
        .await
        .expect("join")
        .expect("drop column runs (overridden) after the lock wait");

    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let m = &env.proxy.shared().metrics;
    assert_eq!(
        m.value("ddlgate_audit_records_total", &[("outcome", "written")]),
        4.0,
        "each record is counted where it is queued"
    );
    assert_eq!(
        m.value("ddlgate_audit_records_total", &[("outcome", "dropped")]),
        0.0
    );
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for r in &records {
        for field in [
            "time",
            "session",
            "user",
            "database",
            "application_name",
            "client_addr",
            "profile",
            "sql",
            "action",
            "intended",
            "rules",
            "outcome",
            "duration_ms",
            "lock_wait_ms",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert_eq!(r["user"], "trust_user");
        assert!(
            r["client_addr"]
                .as_str()
                .unwrap_or("")
                .starts_with("127.0.0.1:"),
            "{r}"
        );
    }
    assert_eq!(records[0]["action"], "rewrite");
    assert!(
        records[0]["rewritten"]
            .as_str()
            .unwrap_or("")
            .contains("CONCURRENTLY"),
        "{}",
        records[0]
    );
    assert_eq!(records[0]["outcome"], "ok");
    assert_eq!(
        (
            records[1]["action"].as_str(),
            records[1]["outcome"].as_str()
        ),
        (Some("block"), Some("blocked"))
    );
    assert_eq!(records[1]["rules"][0], "require-concurrent-index-creation");
    assert_eq!(records[2]["outcome"], "ok");
    assert_eq!(records[3]["action"], "allow");
    assert_eq!(records[3]["rules"][0], "ban-drop-column");
    assert_eq!(records[3]["override_reasons"][0], "unused since v2");
    assert!(
        records[3]["lock_wait_ms"].as_f64().unwrap_or(0.0) >= 100.0,
        "{}",
        records[3]
    );
}

/// Polls `/metrics` until `ok` holds (5 s at most); returns the scrape that satisfied it.
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    ok: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(addr).await;
        if ok(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never seen; last scrape: {:?}",
            m.iter()
                .filter(|(k, _)| k.starts_with("ddlgate_lock_monitor"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_monitor_sees_waits_and_sessions_blocked_by_ddl() {
    // A SCRAM login without pg_monitor: pg_locks and pg_blocking_pids() are enough.
    let env = Env::start_with(|c| {
        c.monitor.enabled = true;
        c.monitor.interval_ms = Duration::from_millis(100);
        c.monitor.user = pg::SCRAM_USER.to_owned();
        c.monitor.password = ddlgate::config::Secret("scrampass".to_owned());
    })
    .await;
    let addr = env.proxy.admin_addr().expect("admin endpoint");
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE TABLE m (id int)")
        .await
        .expect("setup");
    let waiting = "ddlgate_lock_monitor_waiting_sessions{}";
    let by_ddl = "ddlgate_lock_monitor_blocked_by_ddl_sessions{}";
    let oldest = "ddlgate_lock_monitor_oldest_wait_seconds{}";
    let up = "ddlgate_lock_monitor_up{}";
    scrape_until(addr, "a first sample", |m| {
        value(m, up) == 1.0 && value(m, waiting) == 0.0
    })
    .await;

    // A long transaction reads m; an ALTER queues behind it (directly, not through ddlgate's
    // guard); a reader queues behind the ALTER.
    let holder = env.direct_client("ddlgate_admin").await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM m")
        .await
        .expect("holder");
    let alter_client = env.direct_client("ddlgate_admin").await;
    let alter = tokio::spawn(async move {
        alter_client
            .batch_execute("ALTER TABLE m ADD COLUMN c int")
            .await
    });
    // The reader only once the ALTER waits: started together, the reader's lock may be
    // granted before the ALTER asks for its own, and nothing then queues behind the DDL.
    scrape_until(addr, "the ALTER waiting", |m| value(m, waiting) == 1.0).await;
    let reader_client = env.direct_client("ddlgate_admin").await;
    let reader = tokio::spawn(async move {
        reader_client
            .simple_query("SELECT count(*) FROM m")
            .await
            .map(|_| ())
    });
    let m = scrape_until(addr, "two waiting, one behind the DDL", |m| {
        value(m, waiting) == 2.0 && value(m, by_ddl) == 1.0 && value(m, oldest) >= 0.3
    })
    .await;
    assert!(value(&m, oldest) < 10.0, "{}", value(&m, oldest));
    let (code, status) = get(addr, "/status", None).await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["lock_monitor"]["last"]["waiting"], 2, "{status}");
    assert_eq!(
        status["lock_monitor"]["last"]["blocked_by_ddl"], 1,
        "{status}"
    );

    // Its connection killed, the monitor says so and reconnects on its own.
    let errors = value(&m, "ddlgate_lock_monitor_samples_total{outcome=error}");
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'ddlgate_monitor'",
        )
        .await
        .expect("terminate the monitor");
    let m = scrape_until(addr, "a failed sample", |m| {
        value(m, "ddlgate_lock_monitor_samples_total{outcome=error}") > errors
    })
    .await;
    let oks = value(&m, "ddlgate_lock_monitor_samples_total{outcome=ok}");
    scrape_until(addr, "samples again after reconnecting", |m| {
        value(m, "ddlgate_lock_monitor_samples_total{outcome=ok}") > oks
            && value(m, up) == 1.0
            && value(m, waiting) == 2.0
    })
    .await;

    holder.batch_execute("COMMIT").await.expect("commit");
    alter.await.expect("join").expect("alter");
    reader.await.expect("join").expect("reader");
    scrape_until(addr, "nobody waiting", |m| {
        value(m, waiting) == 0.0 && value(m, by_ddl) == 0.0 && value(m, oldest) == 0.0
    })
    .await;

    // Reloadable: turned off, the monitor closes its connection.
    let mut off = (*env.proxy.shared().live.load().config).clone();
    off.monitor.enabled = false;
    env.proxy.shared().reload(off);
    scrape_until(addr, "monitor down after the reload", |m| {
        value(m, up) == 0.0
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = admin
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'ddlgate_monitor'",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        if rows.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "monitor connection still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
