//! The backfill guard (`[policy.backfill]`, rule `large-backfill`) end to end on a real
//! PostgreSQL: the planner's estimate read at a statement boundary on the session's own
//! connection, warn and block through tokio-postgres (simple and extended protocol) and psql,
//! inside and outside transactions, an EXPLAIN that fails inside a transaction, the override
//! comment, profiles, and a session whose policy has the guard off examining nothing; statements
//! with parameters planned with the client's own values (tokio-postgres `execute` and
//! `execute_typed`, and raw extended-protocol units), the protocol state after a block exactly
//! a real server's.

mod common;

use common::{Env, client_with_notices, connect, sqlstate};
use ddlgate::config::{BackfillAction, BackfillOverrides, Config, ProfileConfig, Selector};
use tokio_postgres::types::ToSql;

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

    // A statement with parameters (prepared, then bound and executed) is examined at its
    // Bind with the values bound: warned, and run.
    let bound = estimates(&env, "bound");
    let n = c
        .execute("UPDATE t SET x = x + $1", &[&0i32])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    warned_once(&mut notices, "parameters");
    // The same in one unit with its Parse (the WARNING before the unit's replies).
    let n = c
        .execute_typed(
            "UPDATE t SET x = x - $1",
            &[(&0i32, tokio_postgres::types::Type::INT4)],
        )
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    warned_once(&mut notices, "parameters, one unit");
    assert_eq!(estimates(&env, "bound"), bound + 2.0);
    assert_eq!(estimates(&env, "parameters"), 0.0);

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
            async move { warned_records(&text) == 6 }
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
        .execute("UPDATE t SET x = x + $1", &[&1i32])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    let n = c
        .execute("DELETE FROM t WHERE x > 0", &[])
        .await
        .expect("runs");
    assert_eq!(n, u64::from(ROWS));
    assert!(notices.try_recv().is_err(), "no warning");
    assert!(notices.try_recv().is_err(), "no warning");
    for outcome in ["estimated", "bound", "failed", "parameters"] {
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

    // The same for a statement with parameters, its EXPLAIN bound with the client's values
    // (`execute_typed`: Parse to Sync in one unit, held before its Parse, which would wait for
    // the lock itself): the unit fails with 57014, the session goes on.
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN SHARE MODE")
        .await
        .expect("lock");
    let c = as_app(&env, "human-ops").await;
    let cancel = c.cancel_token();
    let update = tokio::spawn(async move {
        let r = c
            .execute_typed(
                "UPDATE t SET x = -1 WHERE id = $1",
                &[(&1i32, tokio_postgres::types::Type::INT4)],
            )
            .await;
        (c, r)
    });
    assert!(
        common::wait_active(
            &admin,
            "EXPLAIN (FORMAT JSON) UPDATE t%",
            1,
            std::time::Duration::from_secs(10)
        )
        .await,
        "the bound estimate waits for the lock"
    );
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let (c, r) = tokio::time::timeout(std::time::Duration::from_secs(10), update)
        .await
        .expect("the statement ends at the cancel")
        .expect("task");
    let e = r.expect_err("cancelled");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e:?}");
    holder.batch_execute("COMMIT").await.expect("release");
    assert_eq!(c.execute("SELECT 1", &[]).await.expect("usable"), 1);
    let x: i32 = admin
        .query_one("SELECT x FROM t WHERE id = 1", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(x, 1, "the cancelled UPDATE never ran");
}

/// Statements with parameters are planned with the values the client binds: `id > $1` is a
/// full-table UPDATE/DELETE with 0 and a small one with a value near the end (a generic plan
/// would estimate a third of the table, above the threshold, for both). tokio-postgres
/// `execute` prepares a named statement, then binds it in a unit of its own (examined at that
/// Bind); `execute_typed` sends Parse, Bind, Describe, Execute and Sync of the unnamed
/// statement in one unit (examined before its Parse is forwarded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_planned_with_the_clients_values() {
    let env = Env::start_with(profiles).await;
    let admin = setup(&env).await;
    let before = sum_x(&admin).await;
    let c = as_app(&env, "human-ops").await;
    let update = "UPDATE t SET x = x + 1 WHERE id > $1";
    let near_end = ROWS as i32 - 10;
    let int4 = tokio_postgres::types::Type::INT4;

    for in_tx in [false, true] {
        let what = |s: &str| format!("{s}, in a transaction: {in_tx}");
        if in_tx {
            c.batch_execute("BEGIN").await.expect("begin");
        }
        // Small: runs, in the transaction too.
        let n = c.execute(update, &[&near_end]).await.expect("small runs");
        assert_eq!(n, 10, "{}", what("execute"));
        let n = c
            .execute_typed(update, &[(&near_end, int4.clone())])
            .await
            .expect("small runs");
        assert_eq!(n, 10, "{}", what("execute_typed"));
        let n = c
            .execute("DELETE FROM t WHERE id > $1 AND x < 0", &[&near_end])
            .await
            .expect("small runs");
        assert_eq!(n, 0, "{}", what("DELETE"));
        // Large: blocked, through both shapes.
        let e = if in_tx {
            c.execute_typed(update, &[(&0i32, int4.clone())])
                .await
                .expect_err("blocked")
        } else {
            c.execute(update, &[&0i32]).await.expect_err("blocked")
        };
        assert_blocked(&e, &what("large UPDATE"));
        if in_tx {
            // The transaction is failed as after a server error, and ROLLBACK ends it.
            let e = c.execute("SELECT 1", &[]).await.expect_err("failed tx");
            assert_eq!(sqlstate(&e).as_deref(), Some("25P02"), "{e:?}");
            c.batch_execute("ROLLBACK").await.expect("rollback");
        } else {
            let e = c
                .execute_typed(update, &[(&0i32, int4.clone())])
                .await
                .expect_err("blocked");
            assert_blocked(&e, &what("large UPDATE, execute_typed"));
            let e = c
                .execute("DELETE FROM t WHERE id > $1", &[&0i32])
                .await
                .expect_err("blocked");
            assert_blocked(&e, &what("large DELETE"));
        }
        // The session goes on, idle.
        assert_eq!(c.execute("SELECT 1", &[]).await.expect("usable"), 1);
    }
    // Pipelined (tokio-postgres sends the second unit before the first is answered): each Bind
    // waits for the server to be idle and is examined with its own values.
    let (small_values, large_values): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
        ([&near_end], [&0i32]);
    let (small, large) = tokio::join!(
        c.execute(update, &small_values),
        c.execute(update, &large_values)
    );
    assert_eq!(small.expect("small runs"), 10);
    assert_blocked(&large.expect_err("blocked"), "pipelined");
    // Outside the transaction the small UPDATEs ran (10 rows each), inside they rolled back.
    assert_eq!(sum_x(&admin).await, before + 30);
    assert_eq!(decisions(&env, "block"), 5.0);
    assert_eq!(estimates(&env, "parameters"), 0.0);
    assert_eq!(estimates(&env, "bound"), 12.0);

    // Values beyond `limits.max_statement_bytes` are not copied for an EXPLAIN: the statement
    // runs unexamined, counted (both shapes).
    let mut cfg = env.proxy.shared().live.load().config.as_ref().clone();
    cfg.limits.max_statement_bytes = 4096;
    env.proxy.shared().reload(cfg);
    let big = "y".repeat(8192);
    let wide = "UPDATE t SET x = x WHERE id > $1 AND $2::text <> ''";
    let n = c
        .execute(wide, &[&0i32, &big])
        .await
        .expect("runs unexamined");
    assert_eq!(n, u64::from(ROWS));
    let n = c
        .execute_typed(
            wide,
            &[
                (&0i32, int4.clone()),
                (&big, tokio_postgres::types::Type::TEXT),
            ],
        )
        .await
        .expect("runs unexamined");
    assert_eq!(n, u64::from(ROWS));
    assert_eq!(estimates(&env, "parameters"), 2.0);
    assert_eq!(sum_x(&admin).await, before + 30);
    let count: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, i64::from(ROWS), "no row deleted");
}

/// Raw extended-protocol frames for units with parameters (what psql 16's `\bind` sends:
/// unspecified types, text values).
mod raw {
    use super::common::wire;

    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = format!("{name}\0{sql}\0").into_bytes();
        b.extend_from_slice(&0u16.to_be_bytes());
        wire::message(b'P', &b)
    }

    pub fn bind(statement: &str, values: &[&str]) -> Vec<u8> {
        let mut b = format!("\0{statement}\0").into_bytes();
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for v in values {
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b.extend_from_slice(&0u16.to_be_bytes());
        wire::message(b'B', &b)
    }

    pub fn describe_portal() -> Vec<u8> {
        wire::message(b'D', b"P\0")
    }

    pub fn execute() -> Vec<u8> {
        wire::message(b'E', &[0, 0, 0, 0, 0])
    }

    pub fn sync() -> Vec<u8> {
        wire::message(b'S', &[])
    }

    /// `[Parse] Bind Describe Execute Sync` of `statement` with `values`.
    pub fn unit(parse_sql: Option<(&str, &str)>, statement: &str, values: &[&str]) -> Vec<u8> {
        let mut out = parse_sql.map(|(n, s)| parse(n, s)).unwrap_or_default();
        out.extend(bind(statement, values));
        out.extend(describe_portal());
        out.extend(execute());
        out.extend(sync());
        out
    }
}

/// Sends `bytes` and reads the replies up to ReadyForQuery: their tags, the status, and the
/// first error's code.
async fn exchange(s: &mut tokio::net::TcpStream, bytes: &[u8]) -> (String, char, Option<String>) {
    use tokio::io::AsyncWriteExt;
    s.write_all(bytes).await.expect("send");
    let msgs = common::wire::read_until_ready(s).await;
    let tags: String = msgs.iter().map(|(t, _)| *t as char).collect();
    let status = msgs
        .last()
        .filter(|(t, _)| *t == b'Z')
        .and_then(|(_, b)| b.first())
        .map_or('?', |&b| b as char);
    let code = msgs
        .iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| common::wire::error_fields(b).1);
    (tags, status, code)
}

/// Raw units with parameter values: a block is answered exactly as PostgreSQL answers a unit
/// whose first message fails (ErrorResponse, nothing for the rest, ReadyForQuery 'I', or 'E'
/// in a transaction block, which the server holds failed too); an allowed unit gets the
/// server's own replies; the client's unnamed statement survives ddlgate's EXPLAIN (inside a
/// transaction block too); an EXPLAIN that fails (a bad text value) leaves the unit to fail
/// with the server's own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_units_with_parameters_end_as_a_real_server_leaves_them() {
    let env = Env::start_with(profiles).await;
    let admin = setup(&env).await;
    let before = sum_x(&admin).await;
    let mut s = tokio::net::TcpStream::connect(env.proxy_addr())
        .await
        .expect("connect");
    {
        use tokio::io::AsyncWriteExt;
        s.write_all(&common::wire::startup_packet_with(
            "trust_user",
            "postgres",
            &[("application_name", "human-raw")],
        ))
        .await
        .expect("startup");
    }
    let (_, status, _) = exchange(&mut s, &[]).await;
    assert_eq!(status, 'I');
    let update = "UPDATE t SET x = x + 1 WHERE id > $1";
    let small = (ROWS - 10).to_string();

    // The client's unnamed statement, prepared first.
    let (tags, _, _) = exchange(&mut s, &[raw::parse("", "SELECT 42"), raw::sync()].concat()).await;
    assert_eq!(tags, "1Z");
    let unnamed_is_intact = |tags: &str| tags == "2TDCZ";
    let bind_unnamed = [
        raw::bind("", &[]),
        raw::describe_portal(),
        raw::execute(),
        raw::sync(),
    ]
    .concat();

    // Blocked: the error, then ReadyForQuery, nothing else.
    let (tags, status, code) =
        exchange(&mut s, &raw::unit(Some(("s1", update)), "s1", &["0"])).await;
    assert_eq!(
        (tags.as_str(), status, code.as_deref()),
        ("EZ", 'I', Some("DG001"))
    );
    // Its Parse never reached the server: no statement s1, as after a failed Parse.
    let (_, _, code) = exchange(&mut s, &raw::unit(None, "s1", &["0"])).await;
    assert_eq!(code.as_deref(), Some("26000"));
    // Allowed: the server's replies to the whole unit.
    let (tags, status, _) =
        exchange(&mut s, &raw::unit(Some(("s2", update)), "s2", &[&small])).await;
    assert_eq!((tags.as_str(), status), ("12nCZ", 'I'));
    let (tags, _, _) = exchange(&mut s, &bind_unnamed).await;
    assert!(unnamed_is_intact(&tags), "{tags}");

    // Inside a transaction block.
    let (_, status, _) = exchange(&mut s, &common::wire::query("BEGIN")).await;
    assert_eq!(status, 'T');
    // (A simple Query drops the unnamed statement: prepared again.)
    let (tags, _, _) = exchange(&mut s, &[raw::parse("", "SELECT 42"), raw::sync()].concat()).await;
    assert_eq!(tags, "1Z");
    let (tags, status, _) =
        exchange(&mut s, &raw::unit(Some(("s3", update)), "s3", &[&small])).await;
    assert_eq!((tags.as_str(), status), ("12nCZ", 'T'));
    let (tags, _, _) = exchange(&mut s, &bind_unnamed).await;
    assert!(
        unnamed_is_intact(&tags),
        "the savepoint steps leave it: {tags}"
    );
    let (tags, status, code) = exchange(&mut s, &raw::unit(Some(("", update)), "", &["0"])).await;
    assert_eq!(
        (tags.as_str(), status, code.as_deref()),
        ("EZ", 'E', Some("DG001"))
    );
    // The failed Parse left no unnamed statement, and the server's transaction is failed too.
    let (tags, status, code) = exchange(&mut s, &bind_unnamed).await;
    assert_eq!(
        (tags.as_str(), status, code.as_deref()),
        ("EZ", 'E', Some("26000"))
    );
    let (_, status, code) = exchange(&mut s, &common::wire::query("SELECT 1")).await;
    assert_eq!((status, code.as_deref()), ('E', Some("25P02")));
    let (_, status, _) = exchange(&mut s, &common::wire::query("ROLLBACK")).await;
    assert_eq!(status, 'I');

    // A value the EXPLAIN cannot bind: the unit fails with the server's own error at its Bind,
    // outside and inside a transaction block.
    let failed = estimates(&env, "failed");
    let (tags, status, code) = exchange(&mut s, &raw::unit(Some(("", update)), "", &["abc"])).await;
    assert_eq!(
        (tags.as_str(), status, code.as_deref()),
        ("1EZ", 'I', Some("22P02"))
    );
    exchange(&mut s, &common::wire::query("BEGIN")).await;
    let (tags, status, code) = exchange(&mut s, &raw::unit(Some(("", update)), "", &["abc"])).await;
    assert_eq!(
        (tags.as_str(), status, code.as_deref()),
        ("1EZ", 'E', Some("22P02"))
    );
    // ddlgate's savepoint was rolled back and released after its failed EXPLAIN.
    let no_savepoint = common::wire::query("ROLLBACK TO SAVEPOINT ddlgate_estimate");
    let (_, status, code) = exchange(&mut s, &no_savepoint).await;
    assert_eq!((status, code.as_deref()), ('E', Some("3B001")));
    let (_, status, _) = exchange(&mut s, &common::wire::query("ROLLBACK")).await;
    assert_eq!(status, 'I');
    // And after an EXPLAIN that succeeded.
    exchange(&mut s, &common::wire::query("BEGIN")).await;
    let (tags, status, _) = exchange(&mut s, &raw::unit(Some(("", update)), "", &[&small])).await;
    assert_eq!((tags.as_str(), status), ("12nCZ", 'T'));
    let (_, status, code) = exchange(&mut s, &no_savepoint).await;
    assert_eq!((status, code.as_deref()), ('E', Some("3B001")));
    let (_, status, _) = exchange(&mut s, &common::wire::query("ROLLBACK")).await;
    assert_eq!(status, 'I');
    assert_eq!(estimates(&env, "failed"), failed + 2.0);

    // Nothing of ddlgate's is left on the server: no prepared statement, no open portal.
    {
        use tokio::io::AsyncWriteExt;
        s.write_all(&common::wire::query(
            "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'ddlgate%') + (SELECT count(*) FROM pg_cursors)",
        ))
        .await
        .expect("send");
    }
    let msgs = common::wire::read_until_ready(&mut s).await;
    let row = msgs.iter().find(|(t, _)| *t == b'D').expect("a row");
    assert_eq!(&row.1[6..], b"0", "{msgs:?}");
    assert_eq!(
        sum_x(&admin).await,
        before + 10,
        "only the allowed unit outside the block ran"
    );
    assert_eq!(estimates(&env, "parameters"), 0.0);
}
