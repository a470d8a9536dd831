//! The backfill guard (`[policy.backfill]`, rule `large-backfill`) end to end on a real
//! PostgreSQL: the planner's estimate read at a statement boundary on the session's own
//! connection, warn and block through tokio-postgres (simple and extended protocol) and psql,
//! inside and outside transactions, an EXPLAIN that fails inside a transaction, the override
//! comment, profiles, and a session whose policy has the guard off examining nothing.

mod common;

use common::{Env, client_with_notices, connect, sqlstate};
use ddlgate::config::{BackfillAction, BackfillOverrides, Config, ProfileConfig, Selector};

/// Rows of `t`; the profiles' threshold is well below, a small UPDATE well under it.
const ROWS: u32 = 5000;
const MAX_ROWS: u64 = 1000;

/// `[policy]` leaves the guard off (the default); "humans" (psql, `human*`) block above
/// [`MAX_ROWS`], "migrations" (`migrat*`) warn.
fn profiles(c: &mut Config) {
    let profile = |name: &str, apps: &[&str], action| ProfileConfig {
        name: name.into(),
        selector: Selector {
            application_name: Some(ddlgate::config::Patterns(
                apps.iter().map(|s| s.to_string()).collect(),
            )),
            ..Default::default()
        },
        mode: None,
        overridable: None,
        rules: Default::default(),
        backfill: BackfillOverrides {
            enabled: Some(true),
            max_rows: Some(MAX_ROWS),
            action: Some(action),
        },
    };
    c.profiles = vec![
        profile("humans", &["psql", "human*"], BackfillAction::Block),
        profile("migrations", &["migrat*"], BackfillAction::Warn),
    ];
}

/// `t` with [`ROWS`] rows, analyzed (the planner's estimate is then exact for a full-table
/// UPDATE); returns the superuser's direct client.
async fn setup(env: &Env) -> tokio_postgres::Client {
    let admin = env.table_t(ROWS).await;
    admin.batch_execute("ANALYZE t").await.expect("analyze");
    admin
}

async fn as_app(env: &Env, app: &str) -> tokio_postgres::Client {
    connect(&format!(
        "{} application_name={app}",
        env.proxy_conn("trust_user")
    ))
    .await
}

async fn sum_x(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one("SELECT sum(x)::bigint FROM t", &[])
        .await
        .expect("sum")
        .get(0)
}

fn estimates(env: &Env, outcome: &str) -> f64 {
    env.proxy
        .shared()
        .metrics
        .value("ddlgate_backfill_estimates_total", &[("outcome", outcome)])
}

fn decisions(env: &Env, action: &str) -> f64 {
    env.proxy.shared().metrics.value(
        "ddlgate_ddl_decisions_total",
        &[("rule", "large-backfill"), ("action", action)],
    )
}

/// The block as the client sees it: DG001, the estimate and the threshold in the message and
/// detail, the batched alternative in the hint.
fn assert_blocked(e: &tokio_postgres::Error, what: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("DG001"), "{what}: {e:?}");
    let db = e.as_db_error().expect("server error");
    assert!(
        db.message().contains("rule large-backfill")
            && db.message().contains(&format!("threshold {MAX_ROWS}")),
        "{what}: {}",
        db.message()
    );
    assert!(
        db.detail()
            .is_some_and(|d| d.contains(&format!("backfill threshold is {MAX_ROWS}"))),
        "{what}: {:?}",
        db.detail()
    );
    assert!(
        db.hint().is_some_and(
            |h| h.contains(" in batches, each its own short transaction")
                && h.contains("/* ddlgate:allow large-backfill reason=")
        ),
        "{what}: {:?}",
        db.hint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn humans_are_blocked_above_the_threshold_and_small_changes_pass() {
    let env = Env::start_with(profiles).await;
    let admin = setup(&env).await;
    let before = sum_x(&admin).await;
    let c = as_app(&env, "human-ops").await;

    // Simple protocol, outside a transaction.
    let e = c
        .simple_query("UPDATE t SET x = x + 1")
        .await
        .expect_err("blocked");
    assert_blocked(&e, "simple UPDATE");
    let db = e.as_db_error().expect("db");
    assert!(
        db.message().contains(&format!("estimated {ROWS} rows")),
        "{}",
        db.message()
    );
    assert!(
        db.hint().is_some_and(|h| h.contains(
            "ddlgate backfill --database URL --table t --set \"…\" --where \"…\" [--batch-size N]"
        )),
        "{:?}",
        db.hint()
    );
    // Extended protocol (Parse without parameters; tokio-postgres prepares, then executes).
    let e = c
        .execute("UPDATE t SET x = x + 1 WHERE x > 0", &[])
        .await
        .expect_err("blocked");
    assert_blocked(&e, "extended UPDATE");
    // DELETE, and a DELETE in a WITH.
    let e = c.simple_query("DELETE FROM t").await.expect_err("blocked");
    assert_blocked(&e, "DELETE");
    let e = c
        .simple_query("WITH d AS (DELETE FROM t WHERE x > 0 RETURNING id) SELECT count(*) FROM d")
        .await
        .expect_err("blocked");
    assert_blocked(&e, "WITH … DELETE");
    // MERGE (every row of t matched by the one source row).
    let e = c
        .simple_query(
            "MERGE INTO t USING (SELECT 1 AS one) s ON true WHEN MATCHED THEN UPDATE SET x = t.x + 1",
        )
        .await
        .expect_err("blocked");
    assert_blocked(&e, "MERGE");
    // Under the threshold: runs.
    let n = c
        .execute("UPDATE t SET x = x WHERE id < 10", &[])
        .await
        .expect("small UPDATE runs");
    assert_eq!(n, 9);

    // Inside a transaction block: the block fails the transaction exactly as a server error
    // does (the next statement gets 25P02), and ROLLBACK ends it.
    c.batch_execute("BEGIN").await.expect("begin");
    let e = c
        .simple_query("UPDATE t SET x = x + 1")
        .await
        .expect_err("blocked");
    assert_blocked(&e, "UPDATE in a transaction");
    let e = c.simple_query("SELECT 1").await.expect_err("failed tx");
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    // In the failed transaction nothing is examined (and nothing is run by ddlgate).
    let estimated = estimates(&env, "estimated");
    let e = c
        .simple_query("UPDATE t SET x = x + 1")
        .await
        .expect_err("failed tx");
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    assert_eq!(estimates(&env, "estimated"), estimated);
    c.batch_execute("ROLLBACK").await.expect("rollback");
    // The same through the extended protocol: the error comes at Execute, the transaction is
    // failed, ROLLBACK ends it and the session goes on.
    c.batch_execute("BEGIN").await.expect("begin");
    let e = c
        .execute("UPDATE t SET x = x + 1", &[])
        .await
        .expect_err("blocked");
    assert_blocked(&e, "extended UPDATE in a transaction");
    let e = c.execute("SELECT 1", &[]).await.expect_err("failed tx");
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(c.execute("SELECT 1", &[]).await.expect("idle again"), 1);

    // A multi-statement Query: each UPDATE examined; the large one stops the Query (its
    // implicit transaction rolls back the small one before it).
    let e = c
        .simple_query("UPDATE t SET x = x WHERE id < 5; UPDATE t SET x = x + 1")
        .await
        .expect_err("blocked");
    assert_blocked(&e, "second statement of a Query");

    // psql is a human too (application_name psql).
    let out = env
        .psql(
            env.proxy_addr().port(),
            "trust_user",
            &["-c", "UPDATE t SET x = x + 1"],
            None,
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rule large-backfill"), "{stderr}");
    assert!(stderr.contains("HINT:  Backfill in batches"), "{stderr}");

    assert_eq!(
        sum_x(&admin).await,
        before,
        "no blocked statement changed a row"
    );
    assert!(
        decisions(&env, "block") == 9.0,
        "{}",
        decisions(&env, "block")
    );

    // The override comment allows it as written, and the session goes on normally.
    let n = c
        .execute(
            "/* ddlgate:allow large-backfill reason=\"one-off fix, off-peak\" */ UPDATE t SET x = x + 1",
            &[],
        )
        .await
        .expect("overridden");
    assert_eq!(n, u64::from(ROWS));
    assert_eq!(sum_x(&admin).await, before + i64::from(ROWS));
}

/// Exactly one WARNING of `large-backfill` was received, with the threshold and the batched
/// way (the estimate grows with the dead rows each UPDATE leaves, so it is not asserted).
fn warned_once(
    notices: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
    what: &str,
) {
    let n = notices
        .try_recv()
        .unwrap_or_else(|_| panic!("{what}: no warning"));
    assert_eq!(n.severity(), "WARNING", "{what}");
    assert!(
        n.message().contains("ddlgate rule large-backfill")
            && n.message()
                .contains(&format!("backfill threshold is {MAX_ROWS}")),
        "{what}: {}",
        n.message()
    );
    assert!(
        n.hint()
            .is_some_and(|h| h.contains("ddlgate backfill --database URL --table t")),
        "{what}: {:?}",
        n.hint()
    );
    assert!(notices.try_recv().is_err(), "{what}: one warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_warned_and_transactions_stay_the_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.jsonl");
    let path = audit.clone();
    let env = Env::start_with(move |c| {
        profiles(c);
        c.audit.enabled = true;
        c.audit.path = path.to_string_lossy().into_owned();
    })
    .await;
    let admin = setup(&env).await;
    let before = sum_x(&admin).await;
    let (c, mut notices) = client_with_notices(&format!(
        "{} application_name=migrate",
        env.proxy_conn("trust_user")
    ))
    .await;
    let mut warned = |what: &str| warned_once(&mut notices, what);
    // Warned, and run: simple and extended protocol.
    c.simple_query("UPDATE t SET x = x + 1")
        .await
        .expect("runs");
    warned("simple");
    let n = c
        .execute("UPDATE t SET x = x - 1", &[])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    warned("extended");

    // Inside a transaction: warned, run, and the transaction is the client's — its own
    // savepoints work, it commits.
    c.batch_execute("BEGIN").await.expect("begin");
    c.batch_execute("SAVEPOINT mine").await.expect("savepoint");
    c.simple_query("UPDATE t SET x = x + 1")
        .await
        .expect("runs");
    warned("in a transaction");
    c.batch_execute("ROLLBACK TO SAVEPOINT mine")
        .await
        .expect("the client's savepoint is intact");
    let n = c
        .execute("UPDATE t SET x = x + 0", &[])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    warned("extended, in a transaction");
    // An EXPLAIN that fails inside the transaction (the table does not exist before the
    // Query's own CREATE TABLE runs) leaves the transaction usable, and the statements run.
    let failed = estimates(&env, "failed");
    c.simple_query("CREATE TABLE n (id int); INSERT INTO n VALUES (1); UPDATE n SET id = 2")
        .await
        .expect("the Query runs");
    assert_eq!(estimates(&env, "failed"), failed + 1.0);
    let id: i32 = c
        .query_one("SELECT id FROM n", &[])
        .await
        .expect("transaction usable")
        .get(0);
    assert_eq!(id, 2);
    // A statement that fails gets the server's own error, not ddlgate's.
    c.batch_execute("SAVEPOINT s2").await.expect("savepoint");
    let e = c
        .simple_query("UPDATE t SET nosuch = 1")
        .await
        .expect_err("no such column");
    assert_eq!(sqlstate(&e).as_deref(), Some("42703"), "{e:?}");
    c.batch_execute("ROLLBACK TO SAVEPOINT s2; COMMIT")
        .await
        .expect("commit");
    assert!(notices.try_recv().is_err(), "no other warning");
    let committed: i64 = admin
        .query_one("SELECT count(*) FROM n WHERE id = 2", &[])
        .await
        .expect("n")
        .get(0);
    assert_eq!(committed, 1);
    // ddlgate's savepoint is gone: nothing of its own is left in the session.
    let e = c
        .batch_execute("BEGIN; ROLLBACK TO SAVEPOINT ddlgate_estimate")
        .await
        .expect_err("no such savepoint");
    assert_eq!(sqlstate(&e).as_deref(), Some("3B001"));
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(sum_x(&admin).await, before);
    assert_eq!(decisions(&env, "warn"), 4.0);

    // A statement with parameters is not examined, and counted.
    let params = estimates(&env, "parameters");
    let n = c
        .execute("UPDATE t SET x = x + $1", &[&0i32])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    assert_eq!(estimates(&env, "parameters"), params + 1.0);
    assert!(notices.try_recv().is_err());

    // Each warning is in the audit log like any rule's decision.
    let warned_records = |text: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| {
                r["rules"] == serde_json::json!(["large-backfill"])
                    && r["action"] == "warn"
                    && r["profile"] == "migrations"
            })
            .count()
    };
    assert!(
        common::eventually(std::time::Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&audit).unwrap_or_default();
            async move { warned_records(&text) == 4 }
        })
        .await,
        "{}",
        std::fs::read_to_string(&audit).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_policy_has_the_guard_off_examines_nothing() {
    let env = Env::start_with(profiles).await;
    let admin = setup(&env).await;
    let (c, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    c.simple_query("UPDATE t SET x = x + 1")
        .await
        .expect("runs");
    let n = c
        .execute("DELETE FROM t WHERE x > 0", &[])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    assert!(notices.try_recv().is_err(), "no warning");
    for outcome in ["estimated", "failed", "parameters"] {
        assert_eq!(estimates(&env, outcome), 0.0, "{outcome}");
    }
    // The same session after a reload that turns the guard on for everyone (and the catalog
    // reads off) examines its next statements.
    let mut cfg = env.proxy.shared().live.load().config.as_ref().clone();
    cfg.policy.backfill.enabled = true;
    cfg.policy.backfill.max_rows = MAX_ROWS;
    cfg.policy.backfill.action = BackfillAction::Block;
    // The lane runs for the guard alone when catalog reads are off.
    cfg.catalog.enabled = false;
    env.proxy.shared().reload(cfg);
    // A session takes a reload from its next message on.
    c.simple_query("SELECT 1").await.expect("select");
    admin
        .batch_execute("INSERT INTO t (x) SELECT g FROM generate_series(1, 5000) g; ANALYZE t")
        .await
        .expect("refill");
    let e = c
        .simple_query("UPDATE t SET x = x + 1")
        .await
        .expect_err("blocked after the reload");
    assert_blocked(&e, "after reload");
    assert_eq!(estimates(&env, "estimated"), 1.0);
    // A plan far larger than the statement (a view whose definition lists 300,000 values, all
    // printed back in the plan's Filter): the answer is skipped, the statement runs
    // unexamined, and the session lives on.
    let list: Vec<String> = (0..300_000).map(|i| (-i - 1).to_string()).collect();
    admin
        .batch_execute(&format!(
            "CREATE VIEW v AS SELECT * FROM t WHERE x NOT IN ({}); GRANT ALL ON v TO trust_user",
            list.join(",")
        ))
        .await
        .expect("view");
    let failed = estimates(&env, "failed");
    c.simple_query("UPDATE v SET x = x WHERE id = 1")
        .await
        .expect("runs unexamined");
    assert_eq!(estimates(&env, "failed"), failed + 1.0);
    common::still_serves(&env).await;
    c.simple_query("SELECT 1")
        .await
        .expect("the session lives on");
}

/// Planning waits for the statement's lock: a client's cancel reaches ddlgate's EXPLAIN, and
/// the statement then fails with the server's 57014 rather than being sent after it (where it
/// would wait again, the cancel lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_the_estimate_waits_for_the_lock_cancels_the_statement() {
    let env = Env::start_with(profiles).await;
    let admin = setup(&env).await;
    let holder = env.direct_client("ddlgate_admin").await;
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN SHARE MODE")
        .await
        .expect("lock");
    let c = as_app(&env, "human-ops").await;
    let cancel = c.cancel_token();
    let update =
        tokio::spawn(async move { c.simple_query("UPDATE t SET x = -1 WHERE id = 1").await });
    assert!(
        common::wait_active(
            &admin,
            "EXPLAIN (FORMAT JSON) UPDATE t%",
            1,
            std::time::Duration::from_secs(10)
        )
        .await,
        "the estimate waits for the lock"
    );
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), update)
        .await
        .expect("the statement ends at the cancel, not when the lock is released")
        .expect("task")
        .expect_err("cancelled");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e:?}");
    holder.batch_execute("COMMIT").await.expect("release");
    let x: i32 = admin
        .query_one("SELECT x FROM t WHERE id = 1", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(x, 1, "the cancelled UPDATE never ran");
}
