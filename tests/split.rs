//! Statements with several actions, split by ddlgate into safe steps (issue 12, item 2), against
//! real PostgreSQL through the proxy: `DROP INDEX a, b` as one `DROP INDEX CONCURRENTLY` per
//! index, and multi-action `ALTER TABLE` as one step (or one recipe) per action. Each scenario
//! runs on two databases with the same setup: `orig` gets the client's statement directly,
//! `via` gets it through ddlgate, and the schemas must come out identical in the catalog.
//! Meanwhile a writer keeps inserting into `via` and must never wait longer than the guard's
//! `lock_timeout`, while another session keeps a transaction open on the table (what makes a
//! plain `DROP INDEX` or a validating `ALTER TABLE` queue every later query behind it).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::Client;

/// The guard's `lock_timeout` in these tests, and so the longest any INSERT may wait.
const LOCK_TIMEOUT: Duration = Duration::from_millis(1000);

async fn start() -> Env {
    Env::start_with(|c| {
        c.guard.lock_timeout_ms = LOCK_TIMEOUT;
    })
    .await
}

fn conn_to(conn: &str, db: &str) -> String {
    conn.replace("dbname=postgres", &format!("dbname={db}"))
}

/// Two databases owned by `trust_user` with the same setup (run as `trust_user`).
async fn twins(env: &Env, setup: &str) -> (Client, Client) {
    let admin = env.direct_client("ddlgate_admin").await;
    let mut out = Vec::new();
    for db in ["orig", "via"] {
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db} OWNER trust_user"),
        ] {
            admin.batch_execute(&sql).await.expect("database");
        }
        let c = connect(&conn_to(&env.direct_conn("trust_user"), db)).await;
        c.batch_execute(setup).await.expect("setup");
        c.batch_execute("ANALYZE").await.expect("analyze");
        out.push(c);
    }
    let via = out.pop().expect("via");
    let orig = out.pop().expect("orig");
    (orig, via)
}

async fn assert_same_schema(orig: &Client, via: &Client) -> Vec<String> {
    let (o, v) = (catalog_dump(orig).await, catalog_dump(via).await);
    assert_eq!(
        o, v,
        "schema after the direct statement (left) vs through ddlgate (right)"
    );
    assert!(!v.iter().any(|l| l.contains("ddlgate")), "{v:#?}");
    v
}

/// A session that keeps a transaction open on `table` (a row written, not committed) for
/// `hold`, then commits: a plain DROP INDEX or ALTER TABLE would queue behind it and every
/// later query behind that.
async fn open_transaction(
    conn: &str,
    insert: &'static str,
    hold: Duration,
) -> tokio::task::JoinHandle<()> {
    let client = connect(conn).await;
    client
        .batch_execute(&format!("BEGIN; {insert}"))
        .await
        .expect("open transaction");
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        client.batch_execute("COMMIT").await.expect("commit");
    })
}

async fn one_bool(client: &Client, sql: &str) -> bool {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Tables of 30,000 rows: above the small-table thresholds (10,000 rows by default), so
/// nothing is waved through as small.
const INDEX_SETUP: &str = "
    CREATE SCHEMA s;
    CREATE TABLE big (id serial PRIMARY KEY, a int, b int, c int);
    INSERT INTO big (a, b, c) SELECT g, g, g FROM generate_series(1, 30000) g;
    CREATE TABLE s.other (id int, d int);
    INSERT INTO s.other SELECT g, g FROM generate_series(1, 30000) g;
    CREATE INDEX big_a ON big (a);
    CREATE INDEX big_b ON big (b);
    CREATE INDEX big_c ON big (c);
    CREATE INDEX other_d ON s.other (d);";

/// `DROP INDEX a, b` outside a transaction: one `DROP INDEX CONCURRENTLY` per index, in order,
/// each on the name the server resolved; the same end state as the direct statement; writes
/// never wait; a rerun after one index is already gone skips it; CASCADE, a transaction block
/// and a partitioned index keep the block and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_index_list_runs_as_one_concurrent_drop_per_index() {
    let env = start().await;
    let (orig, via) = twins(&env, INDEX_SETUP).await;
    let via_direct = conn_to(&env.direct_conn("trust_user"), "via");
    let (client, mut notices) =
        client_with_notices(&conn_to(&env.proxy_conn("trust_user"), "via")).await;
    // The session's search_path finds other_d in s: the steps must name s.other_d.
    client
        .batch_execute("SET search_path = public, s")
        .await
        .expect("search_path");
    let insert = "INSERT INTO big (a, b, c) VALUES (1, 2, 3)";
    // The control: the direct statement with the same open transaction and writer makes the
    // writer wait behind its queued ACCESS EXCLUSIVE, past the bound.
    let orig_direct = conn_to(&env.direct_conn("trust_user"), "orig");
    let control = Writer::start(&orig_direct, insert).await;
    let holder = open_transaction(&orig_direct, insert, Duration::from_millis(1500)).await;
    orig.batch_execute("SET search_path = public, s; DROP INDEX big_a, other_d, big_b")
        .await
        .expect("direct");
    holder.await.expect("holder");
    let direct = control.stop().await.worst();
    assert!(
        direct >= LOCK_TIMEOUT,
        "the direct DROP blocked writes only {direct:?}"
    );

    let writer = Writer::start(&via_direct, insert).await;
    let holder = open_transaction(&via_direct, insert, Duration::from_millis(1500)).await;
    let t0 = Instant::now();
    client
        .batch_execute("DROP INDEX big_a, other_d, big_b")
        .await
        .expect("the list runs as steps");
    let took = t0.elapsed();
    holder.await.expect("holder");
    writer.finish(LOCK_TIMEOUT).await;
    // DROP INDEX CONCURRENTLY waited for the open transaction (without blocking the writer).
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    let n = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice in time")
        .expect("a notice");
    let text = notice_line(&n);
    for want in [
        "require-concurrent-index-deletion",
        "as 3 steps",
        "1. DROP INDEX CONCURRENTLY public.big_a",
        "2. DROP INDEX CONCURRENTLY s.other_d",
        "3. DROP INDEX CONCURRENTLY public.big_b",
        "skipped if s.other_d no longer exists",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let end = assert_same_schema(&orig, &via).await;
    assert!(end.iter().any(|l| l.contains("index big_c")), "{end:#?}");

    // Resumable: an index already gone (a previous run dropped it) is skipped.
    for c in [&orig, &via] {
        c.batch_execute("CREATE INDEX big_a ON big (a); CREATE INDEX big_b ON big (b)")
            .await
            .expect("again");
    }
    via.batch_execute("DROP INDEX big_a")
        .await
        .expect("half done");
    client
        .batch_execute("DROP INDEX big_a, big_b")
        .await
        .expect("resumes");
    orig.batch_execute("DROP INDEX big_a, big_b")
        .await
        .expect("direct");
    assert_same_schema(&orig, &via).await;

    // What cannot be split keeps its block, with the reason.
    let cases = [
        (
            "DROP INDEX big_c, pk CASCADE",
            "refuses CASCADE with CONCURRENTLY",
        ),
        (
            "BEGIN; DROP INDEX big_c, other_d; COMMIT",
            "inside a transaction block",
        ),
        // A table among them: the statement would drop nothing, nor may the steps.
        ("DROP INDEX big_c, big", "big is not an index"),
    ];
    for (sql, why) in cases {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
        let db = err.as_db_error().expect("db error");
        assert!(
            db.hint().unwrap_or("").contains(why)
                || db.message().contains(why)
                || db.detail().unwrap_or("").contains(why),
            "{sql}: {db:?}"
        );
        let _ = client.batch_execute("ROLLBACK").await;
    }
    assert!(
        one_bool(
            &via,
            "SELECT to_regclass('big_c') IS NOT NULL AND to_regclass('s.other_d') IS NULL"
        )
        .await
    );
    // An index on a partitioned table among them: no concurrent drop exists, so no split.
    via.batch_execute(
        "CREATE TABLE parted (k int) PARTITION BY RANGE (k);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100000);
         INSERT INTO parted SELECT g FROM generate_series(1, 30000) g;
         CREATE INDEX parted_k ON parted (k); ANALYZE parted_1;",
    )
    .await
    .expect("partitioned");
    let err = client
        .batch_execute("DROP INDEX big_c, parted_k")
        .await
        .expect_err("partitioned index in the list");
    let db = err.as_db_error().expect("db error");
    assert!(
        db.hint()
            .unwrap_or("")
            .contains("parted_k is an index on a partitioned table"),
        "{db:?}"
    );
    assert!(
        one_bool(
            &via,
            "SELECT to_regclass('big_c') IS NOT NULL AND to_regclass('parted_k') IS NOT NULL"
        )
        .await
    );
}

/// `slow` sleeps 1 ms on every tenth row: a validation scan of 30,000 rows takes about three
/// seconds, long enough that a validation under ACCESS EXCLUSIVE would make the writer wait
/// past the bound.
const ALTER_SETUP: &str = "
    CREATE FUNCTION slow(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE
        AS $$ BEGIN IF v % 10 = 0 THEN PERFORM pg_sleep(0.001); END IF; RETURN v; END $$;
    CREATE TABLE refd (id int PRIMARY KEY);
    INSERT INTO refd SELECT g FROM generate_series(1, 30000) g;
    CREATE TABLE big (id serial PRIMARY KEY, a int, b int,
                      CONSTRAINT big_fk FOREIGN KEY (a) REFERENCES refd (id));
    INSERT INTO big (a, b) SELECT g, g FROM generate_series(1, 30000) g;";

/// A multi-action ALTER TABLE through the proxy: split into one step (or one recipe) per
/// action, in order; the same end state as the direct statement; writes never wait past the
/// guard's lock_timeout while a validation scans for seconds; a re-run after a partial run
/// skips what is done; an unsafe action keeps the block and is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_action_alter_table_runs_one_action_at_a_time() {
    let env = start().await;
    let (orig, via) = twins(&env, ALTER_SETUP).await;
    let via_direct = conn_to(&env.direct_conn("trust_user"), "via");
    let (client, mut notices) =
        client_with_notices(&conn_to(&env.proxy_conn("trust_user"), "via")).await;
    let statements = [
        // (statement, steps the NOTICE must list, in order)
        (
            "ALTER TABLE big ADD COLUMN c int, ADD CONSTRAINT big_a_chk CHECK (slow(a) > 0)",
            &[
                "1. ALTER TABLE big ADD COLUMN c int",
                "2. ALTER TABLE big ADD CONSTRAINT big_a_chk CHECK (slow(a) > 0) NOT VALID",
                "3. ALTER TABLE big VALIDATE CONSTRAINT big_a_chk",
            ][..],
        ),
        (
            "ALTER TABLE big DROP CONSTRAINT big_fk, ADD CONSTRAINT big_fk FOREIGN KEY (a) REFERENCES refd (id) ON DELETE CASCADE",
            &[
                "1. ALTER TABLE big DROP CONSTRAINT big_fk",
                "2. ALTER TABLE big ADD CONSTRAINT big_fk FOREIGN KEY (a) REFERENCES refd (id) ON DELETE CASCADE NOT VALID",
                "3. ALTER TABLE big VALIDATE CONSTRAINT big_fk",
            ][..],
        ),
        (
            "ALTER TABLE big ADD COLUMN e text DEFAULT 'x', ALTER COLUMN b SET NOT NULL, ADD CONSTRAINT big_e_key UNIQUE (id, e)",
            &[
                "1. ALTER TABLE big ADD COLUMN e text DEFAULT 'x'",
                "CHECK (b IS NOT NULL) NOT VALID",
                "ALTER TABLE big ALTER COLUMN b SET NOT NULL",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS big_e_key ON big (id, e)",
                "ALTER TABLE big ADD CONSTRAINT big_e_key UNIQUE USING INDEX big_e_key",
            ][..],
        ),
    ];
    let writer = Writer::start(&via_direct, "INSERT INTO big (a, b) VALUES (1, 1)").await;
    // The control: the same writer on the database that gets the direct statements.
    let control = Writer::start(
        &conn_to(&env.direct_conn("trust_user"), "orig"),
        "INSERT INTO big (a, b) VALUES (1, 1)",
    )
    .await;
    for (sql, steps) in statements {
        orig.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("direct {sql}: {e}"));
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("through ddlgate {sql}: {e:?}"));
        let n = tokio::time::timeout(Duration::from_secs(5), notices.recv())
            .await
            .expect("a notice in time")
            .expect("a notice");
        let text = notice_line(&n);
        assert!(text.contains("ALTER TABLE of several actions"), "{text}");
        let mut at = 0;
        for step in steps {
            let found = text[at..]
                .find(step)
                .unwrap_or_else(|| panic!("{step:?} after byte {at} in {text}"));
            at += found + step.len();
        }
    }
    writer.finish(LOCK_TIMEOUT).await;
    // The direct statements did block writes for longer (the validation under ACCESS
    // EXCLUSIVE): the bound above means something.
    let direct = control.stop().await.worst();
    assert!(
        direct >= LOCK_TIMEOUT,
        "direct statements blocked writes only {direct:?}"
    );
    // The writer's rows differ; the schema must not.
    assert_same_schema(&orig, &via).await;

    // Resumable: the first action already done (a run that stopped after it) is skipped.
    via.batch_execute("ALTER TABLE big ADD COLUMN f int")
        .await
        .expect("half done");
    let sql = "ALTER TABLE big ADD COLUMN f int, ADD CONSTRAINT big_f_chk CHECK (f > 0)";
    client.batch_execute(sql).await.expect("resumes");
    orig.batch_execute(sql).await.expect("direct");
    assert_same_schema(&orig, &via).await;

    // A step that fails (rows violate the CHECK): the error names the step and those done;
    // after the rows are fixed, the same statement resumes and finishes the job.
    let sql = "ALTER TABLE big ADD COLUMN h int, ADD CONSTRAINT big_b_chk CHECK (b < 100)";
    let err = client
        .batch_execute(sql)
        .await
        .expect_err("validation fails");
    let db = err.as_db_error().expect("db error");
    assert_eq!(db.code().code(), "23514", "{db:?}");
    assert!(
        db.message()
            .contains("step 3 of 3 of the safe rewrite failed"),
        "{db:?}"
    );
    for c in [&orig, &via] {
        c.batch_execute("UPDATE big SET b = 1")
            .await
            .expect("fix rows");
    }
    client
        .batch_execute(sql)
        .await
        .expect("resumes after the fix");
    orig.batch_execute(sql).await.expect("direct");
    assert_same_schema(&orig, &via).await;

    // An action that cannot run on its own safely: blocked, named, nothing done.
    let sql = "ALTER TABLE big ALTER COLUMN a TYPE bigint, ADD CONSTRAINT big_g_chk CHECK (a > 0)";
    let err = client.batch_execute(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    let db = err.as_db_error().expect("db error");
    assert!(
        db.message()
            .contains("action 1 `ALTER COLUMN a TYPE bigint` (changing-column-type)"),
        "{db:?}"
    );
    assert_same_schema(&orig, &via).await;
    // The same in a transaction block, where no split is possible: each unsafe action named.
    let err = client
        .batch_execute("BEGIN; ALTER TABLE big ADD COLUMN g int, ADD CONSTRAINT big_g_chk CHECK (g > 0); COMMIT")
        .await
        .expect_err("in a transaction");
    let db = err.as_db_error().expect("db error");
    assert!(
        db.message().contains(
            "action 2 `ADD CONSTRAINT big_g_chk CHECK (g > 0)` (constraint-missing-not-valid)"
        ),
        "{db:?}"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_same_schema(&orig, &via).await;
}
