//! The lock guard against real PostgreSQL: DDL behind a long transaction never makes readers
//! wait longer than the lock timeout, is retried with the blockers named, succeeds once they
//! are gone (or fails cleanly when the budget is spent), inside and outside transactions; the
//! session's settings are left as they were; DDL on one table runs one at a time, across
//! sessions and across two ddlgate instances.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use ddlgate::config::Config;

fn fast_guard(c: &mut Config) {
    c.guard.lock_timeout_ms = Duration::from_millis(200);
    c.guard.backoff_initial_ms = Duration::from_millis(50);
    c.guard.backoff_max_ms = Duration::from_millis(200);
    c.guard.max_attempts = 100;
    c.guard.max_wait_ms = Duration::from_secs(30);
}

/// Runs `SELECT count(*) FROM t` in a loop on a direct connection until stopped; returns the
/// longest time one of them took.
fn spawn_reader(
    conn: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let c = connect(&conn).await;
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            c.query_one("SELECT count(*) FROM t", &[])
                .await
                .expect("reader");
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_behind_a_long_transaction_retries_without_stalling_readers() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.table_t(100).await;
    // A long transaction holding a weak lock on t: an ALTER TABLE would queue behind it and
    // every reader would queue behind the ALTER.
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("SET application_name = 'long-report'; BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = spawn_reader(env.direct_conn("trust_user"), stop.clone());

    let (p, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    p.batch_execute("SET lock_timeout = 0")
        .await
        .expect("client setting");
    let alter = tokio::spawn(async move {
        p.batch_execute("ALTER TABLE t ADD COLUMN c int")
            .await
            .map(|_| p)
    });
    // Let it retry a few times, then end the long transaction.
    let first = tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("a retry notice")
        .map(|n| notice_line(&n))
        .expect("open");
    assert!(
        first.contains("retrying")
            && first.contains("long-report")
            && first.contains("AccessShareLock"),
        "{first}"
    );
    assert!(
        guard_retried(&env, 2).await,
        "the guard never retried again"
    );
    blocker.batch_execute("COMMIT").await.expect("commit");
    let p = tokio::time::timeout(Duration::from_secs(10), alter)
        .await
        .expect("alter finishes")
        .expect("join")
        .expect("alter succeeds");
    stop.store(true, Ordering::Relaxed);
    let worst = reader.await.expect("reader");
    assert!(
        worst < Duration::from_millis(1000),
        "a reader waited {worst:?}"
    );
    let n: i64 = admin
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'", &[])
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(n, 1);
    // The client's own lock_timeout is back.
    let rows = p.simple_query("SHOW lock_timeout").await.expect("show");
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("0"));
    let metrics = &env.proxy.shared().metrics;
    assert!(metrics.value("ddlgate_lock_retries_total", &[]) >= 1.0);
    assert_eq!(
        metrics.value("ddlgate_lock_budget_exhausted_total", &[]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_transaction_each_attempt_is_a_savepoint() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.table_t(100).await;
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("BEGIN; INSERT INTO t (x) VALUES (-1)")
        .await
        .expect("begin");
    let alter = tokio::spawn(async move {
        let r = p.batch_execute("ALTER TABLE t ADD COLUMN c int").await;
        (p, r)
    });
    // Two attempts under savepoints have timed out before the blocker lets go.
    assert!(guard_retried(&env, 2).await, "the guard never retried");
    blocker.batch_execute("COMMIT").await.expect("commit");
    let (p, r) = tokio::time::timeout(Duration::from_secs(10), alter)
        .await
        .expect("finishes")
        .expect("join");
    r.expect("the ALTER succeeds after retries");
    // The work before it in the transaction survived the retries.
    p.batch_execute("UPDATE t SET c = 1 WHERE x = -1; COMMIT")
        .await
        .expect("commit");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t WHERE x = -1 AND c = 1", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    assert!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_lock_retries_total", &[])
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_fails_cleanly_with_the_blockers_named() {
    let env = Env::start_with(|c| {
        fast_guard(c);
        c.guard.max_attempts = 3;
    })
    .await;
    let admin = env.table_t(100).await;
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("SET application_name = 'stuck-job'; BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let p = env.proxy_client("trust_user").await;

    // Outside a transaction: 55P03, the session stays usable, settings restored.
    let err = p
        .batch_execute("ALTER TABLE t ADD COLUMN c int")
        .await
        .expect_err("budget spent");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "55P03");
    assert!(db.message().contains("3 attempt"), "{}", db.message());
    assert!(
        db.detail().unwrap_or("").contains("stuck-job"),
        "{:?}",
        db.detail()
    );
    // ddlgate's own error: no CONTEXT line about the DO block that raised it.
    assert_eq!(db.where_(), None, "{db:?}");
    let one: i32 = p.query_one("SELECT 1", &[]).await.expect("usable").get(0);
    assert_eq!(one, 1);

    // Inside one: the transaction is failed, as the server's own lock timeout would leave it.
    p.batch_execute("BEGIN; INSERT INTO t (x) VALUES (-5)")
        .await
        .expect("begin");
    let err = p
        .batch_execute("ALTER TABLE t ADD COLUMN c int")
        .await
        .expect_err("budget spent");
    assert_eq!(sqlstate(&err).as_deref(), Some("55P03"));
    let err = p.batch_execute("SELECT 1").await.expect_err("aborted");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    p.batch_execute("ROLLBACK").await.expect("rollback");

    // A migration tool's `BEGIN; …; COMMIT` in one Query: the block is left failed too.
    let err = p
        .batch_execute("BEGIN; ALTER TABLE t ADD COLUMN c int; COMMIT")
        .await
        .expect_err("budget spent");
    assert_eq!(sqlstate(&err).as_deref(), Some("55P03"));
    let err = p.batch_execute("SELECT 1").await.expect_err("block failed");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    p.batch_execute("ROLLBACK").await.expect("rollback");

    let n: i64 = admin
        .query_one("SELECT count(*) FROM t WHERE x = -5", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    let rows = p.simple_query("SHOW lock_timeout").await.expect("show");
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("0"))
        )
    );
    assert_eq!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_lock_budget_exhausted_total", &[]),
        3.0
    );
    blocker.batch_execute("COMMIT").await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_client_lock_timeout_wins_and_is_kept() {
    let env = Env::start_with(fast_guard).await;
    env.table_t(100).await;
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("SET lock_timeout = '50ms'; SET statement_timeout = '40s'")
        .await
        .expect("set");
    p.batch_execute("ALTER TABLE t ADD COLUMN c int")
        .await
        .expect("alter");
    p.batch_execute("CREATE INDEX CONCURRENTLY t_c ON t (c)")
        .await
        .expect("cic");
    let show = |name: &'static str| {
        let p = &p;
        async move {
            p.simple_query(&format!("SHOW {name}"))
                .await
                .expect("show")
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
        }
    };
    assert_eq!(show("lock_timeout").await.as_deref(), Some("50ms"));
    assert_eq!(show("statement_timeout").await.as_deref(), Some("40s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_one_table_runs_one_at_a_time_across_sessions_and_instances() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.table_t(100).await;
    // A second ddlgate in front of the same database.
    let other = start_proxy(env.pg.port(), fast_guard).await;
    let a = env.proxy_client("trust_user").await;
    let (b, mut b_notices) =
        client_with_notices(&conn_str(other.local_addr().port(), "trust_user")).await;
    let (c, mut c_notices) = client_with_notices(&env.proxy_conn("trust_user")).await;

    // Session A holds its DDL turn on t inside a transaction.
    a.batch_execute("BEGIN; ALTER TABLE t ADD COLUMN a1 int")
        .await
        .expect("a");
    let b_task =
        tokio::spawn(async move { b.batch_execute("ALTER TABLE t ADD COLUMN b1 int").await });
    let c_task =
        tokio::spawn(async move { c.batch_execute("ALTER TABLE t ADD COLUMN c1 int").await });
    for notices in [&mut b_notices, &mut c_notices] {
        let n = tokio::time::timeout(Duration::from_secs(10), notices.recv())
            .await
            .expect("queue notice")
            .map(|n| notice_line(&n))
            .expect("open");
        assert!(n.contains("waiting for another DDL statement on t"), "{n}");
    }
    // While they wait their turn, neither sits in PostgreSQL's lock queue for t.
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE relation = 't'::regclass AND NOT granted",
            &[],
        )
        .await
        .expect("pg_locks")
        .get(0);
    assert_eq!(waiting, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_task.is_finished() && !c_task.is_finished());
    a.batch_execute("COMMIT").await.expect("commit");
    tokio::time::timeout(Duration::from_secs(10), b_task)
        .await
        .expect("b finishes")
        .expect("join")
        .expect("b");
    tokio::time::timeout(Duration::from_secs(10), c_task)
        .await
        .expect("c finishes")
        .expect("join")
        .expect("c");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name IN ('a1', 'b1', 'c1')", &[])
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(n, 3);
    // Nobody holds ddlgate's advisory locks any more. The last session's epilogue gives its
    // turn back while the client already has its reply (the client does not wait for it), so
    // it is released within moments, not necessarily before that reply.
    let began = std::time::Instant::now();
    loop {
        let held: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                &[],
            )
            .await
            .expect("pg_locks")
            .get(0);
        if held == 0 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{held} advisory lock(s) still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_ddl_queue_waits_total", &[])
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_ddl_is_bounded_by_the_lock_timeout() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.table_t(100).await;
    let p = env.proxy_client("trust_user").await;
    // tokio-postgres runs this as Parse/Describe/Sync, then Bind/Execute/Sync.
    p.execute("ALTER TABLE t ADD COLUMN c int", &[])
        .await
        .expect("no blocker: runs");
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = spawn_reader(env.direct_conn("trust_user"), stop.clone());
    // Alone outside a transaction block the unit is retried like a simple Query
    // (tests/extended.rs); inside one the unit is the client's, and is bounded, not retried.
    p.batch_execute("BEGIN").await.expect("begin");
    let started = Instant::now();
    let err = p
        .execute("ALTER TABLE t ADD COLUMN d int", &[])
        .await
        .expect_err("lock timeout");
    p.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(sqlstate(&err).as_deref(), Some("55P03"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let worst = reader.await.expect("reader");
    assert!(
        worst < Duration::from_millis(1000),
        "a reader waited {worst:?}"
    );
    // The session is usable and its settings are its own again.
    let rows = p.simple_query("SHOW lock_timeout").await.expect("show");
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("0"))
        )
    );
    blocker.batch_execute("COMMIT").await.expect("commit");
    // A statement prepared once runs under the guard at every execution.
    let stmt = p
        .prepare("ALTER TABLE t ADD COLUMN IF NOT EXISTS e int")
        .await
        .expect("prepare");
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p.execute(&stmt, &[]).await.expect_err("lock timeout");
    assert_eq!(sqlstate(&err).as_deref(), Some("55P03"), "{err}");
    p.batch_execute("ROLLBACK").await.expect("rollback");
    blocker.batch_execute("COMMIT").await.expect("commit");
    p.execute(&stmt, &[])
        .await
        .expect("runs once the blocker is gone");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name IN ('c', 'e')", &[])
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_step_rewrites_reach_the_same_schema_and_resume_after_failure() {
    // The recipes themselves are under test: the small-table allowance would let these
    // 100-row tables through as written.
    let env = Env::start_with(|c| {
        fast_guard(c);
        c.catalog.small_table_rows = 0;
    })
    .await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent SELECT g FROM generate_series(1, 100) g;
             CREATE TABLE child (id int, pid int, email text); INSERT INTO child SELECT g, g, 'u' || g FROM generate_series(1, 100) g;
             INSERT INTO child VALUES (1000, 1000, 'orphan');
             CREATE TABLE parted (id int, k int) PARTITION BY RANGE (id);
             CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
             CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
             ALTER TABLE parent OWNER TO trust_user; ALTER TABLE child OWNER TO trust_user;
             ALTER TABLE parted OWNER TO trust_user; ALTER TABLE parted_1 OWNER TO trust_user; ALTER TABLE parted_2 OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    let (p, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;

    // A foreign key over data that violates it: step 1 (NOT VALID) runs, step 2 (VALIDATE)
    // fails with the server's own SQLSTATE, and the error says which steps ran.
    let fk =
        "ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) REFERENCES parent (id)";
    let err = p.batch_execute(fk).await.expect_err("orphan row");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "23503", "{db:?}");
    assert!(db.message().contains("step 2 of 2"), "{}", db.message());
    assert!(
        db.detail()
            .unwrap_or("")
            .contains("Steps completed before it: 1"),
        "{:?}",
        db.detail()
    );
    let plan = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("notice")
        .map(|n| notice_line(&n))
        .expect("open");
    assert!(
        plan.contains("NOT VALID") && plan.contains("VALIDATE"),
        "{plan}"
    );
    // Fix the data and run the same statement again: the NOT VALID step is skipped.
    admin
        .batch_execute("DELETE FROM child WHERE id = 1000")
        .await
        .expect("fix");
    p.batch_execute(fk).await.expect("resumed");
    let valid: bool = admin
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'child_pid_fkey'",
            &[],
        )
        .await
        .expect("constraint")
        .get(0);
    assert!(valid);

    // SET NOT NULL through a CHECK: same end state as the direct statement, no helper left.
    p.batch_execute("ALTER TABLE child ALTER COLUMN email SET NOT NULL")
        .await
        .expect("set not null");
    let row = admin
        .query_one(
            "SELECT attnotnull, (SELECT count(*) FROM pg_constraint WHERE conrelid = 'child'::regclass AND contype = 'c') \
             FROM pg_attribute WHERE attrelid = 'child'::regclass AND attname = 'email'",
            &[],
        )
        .await
        .expect("attribute");
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i64>(1), 0);

    // UNIQUE through a concurrent unique index.
    p.batch_execute("ALTER TABLE child ADD CONSTRAINT child_email_key UNIQUE (email)")
        .await
        .expect("unique");
    let row = admin
        .query_one(
            "SELECT c.contype::text, i.indisvalid FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid WHERE c.conname = 'child_email_key'",
            &[],
        )
        .await
        .expect("unique constraint");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("u".to_owned(), true)
    );

    // An index on a partitioned table: ON ONLY, a concurrent build per partition, ATTACH.
    p.batch_execute("CREATE INDEX parted_k ON parted (k)")
        .await
        .expect("partitioned index");
    let row = admin
        .query_one(
            "SELECT i.indisvalid, (SELECT count(*) FROM pg_inherits WHERE inhparent = 'parted_k'::regclass) \
             FROM pg_index i WHERE i.indexrelid = 'parted_k'::regclass",
            &[],
        )
        .await
        .expect("index");
    assert!(
        row.get::<_, bool>(0),
        "the parent index is valid once every partition is attached"
    );
    assert_eq!(row.get::<_, i64>(1), 2);

    // Inside a transaction the steps are impossible: the rule's verdict is a block.
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .batch_execute("ALTER TABLE child ADD CONSTRAINT child_id_check CHECK (id > 0)")
        .await
        .expect_err("blocked in a transaction");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    p.batch_execute("ROLLBACK").await.expect("rollback");
    // The session is intact and its settings are its own.
    let rows = p.simple_query("SHOW lock_timeout").await.expect("show");
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("0"))
        )
    );
}
