//! Partitioned tables through ddlgate against real PostgreSQL: statements PostgreSQL refuses or
//! runs under a lock on the whole tree get their safe form — `CREATE INDEX CONCURRENTLY` on a
//! parent is built partition by partition, `DROP INDEX [CONCURRENTLY]` of a partitioned index
//! runs plainly under the guard — and end in the same catalog state as the direct statement
//! (compared from the catalog, in two databases), while a concurrent writer never waits longer
//! than about the guard's lock_timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ddlgate::config::Config;
use tokio_postgres::Client;

/// The guard's lock_timeout in these tests.
const LOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// The longest an INSERT may wait while ddlgate works: the guard's lock_timeout plus scheduling
/// slack on a busy 2-core machine.
const WRITE_BOUND: Duration = Duration::from_millis(1000);

fn fast_guard(c: &mut Config) {
    c.guard.lock_timeout_ms = LOCK_TIMEOUT;
    c.guard.backoff_initial_ms = Duration::from_millis(50);
    c.guard.backoff_max_ms = Duration::from_millis(200);
    c.guard.max_attempts = 200;
    c.guard.max_wait_ms = Duration::from_secs(60);
}

/// Two databases with the same `setup`: `orig` gets the direct statements (superuser, straight
/// to PostgreSQL), `via` gets them through ddlgate.
struct Dbs {
    orig: Client,
    /// Superuser, straight to PostgreSQL, on `via`.
    admin: Client,
    via_direct: String,
    via_proxy: String,
}

async fn two_databases(env: &Env, setup: &str) -> Dbs {
    let admin = env.direct_client("ddlgate_admin").await;
    for db in ["orig", "via"] {
        admin
            .simple_query(&format!("CREATE DATABASE {db} OWNER trust_user"))
            .await
            .expect("create database");
    }
    let on = |conn: String, db: &str| conn.replace("dbname=postgres", &format!("dbname={db}"));
    let orig = connect(&on(env.direct_conn("trust_user"), "orig")).await;
    let via_direct = on(env.direct_conn("trust_user"), "via");
    let via = connect(&via_direct).await;
    for c in [&orig, &via] {
        c.batch_execute(setup).await.expect("setup");
    }
    Dbs {
        orig,
        admin: connect(&on(env.direct_conn("ddlgate_admin"), "via")).await,
        via_direct,
        via_proxy: on(env.proxy_conn("trust_user"), "via"),
    }
}

async fn assert_same_schema(dbs: &Dbs) -> Vec<String> {
    let orig = catalog_dump(&dbs.orig).await;
    let via = catalog_dump(&dbs.admin).await;
    assert_eq!(
        orig, via,
        "schema after the direct statement (left) vs through ddlgate (right)"
    );
    via
}

async fn next_notice(
    notices: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) -> String {
    tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("a notice")
        .map(|n| notice_line(&n))
        .expect("open")
}

/// 30,000 rows over two leaf partitions and a sub-partitioned one.
const TREE: &str = "
    CREATE TABLE ev (id int NOT NULL, tenant int, rid int) PARTITION BY RANGE (id);
    CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM (0) TO (10000);
    CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM (10000) TO (20000);
    CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM (20000) TO (1000000) PARTITION BY RANGE (id);
    CREATE TABLE ev_2026a PARTITION OF ev_2026 FOR VALUES FROM (20000) TO (1000000);
    INSERT INTO ev SELECT g, g % 13, 1 + g % 100 FROM generate_series(0, 29999) g;
    ANALYZE ev;";

/// Writes into the newest partition.
const INSERT: &str = "INSERT INTO ev SELECT 100000 + (txid_current() % 800000)::int, 1, 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_concurrently_on_a_parent_is_built_partition_by_partition() {
    let env = Env::start_with(fast_guard).await;
    let dbs = two_databases(&env, TREE).await;
    let writer = Writer::start(&dbs.via_direct, INSERT).await;
    // PostgreSQL refuses CONCURRENTLY on the parent: the direct equivalent is the plain build.
    dbs.orig
        .batch_execute("CREATE INDEX ev_tenant ON ev (tenant)")
        .await
        .expect("direct");
    let refused = dbs
        .orig
        .batch_execute("CREATE INDEX CONCURRENTLY ev_tenant2 ON ev (tenant)")
        .await
        .expect_err("PostgreSQL refuses it");
    assert_eq!(sqlstate(&refused).as_deref(), Some("0A000"), "{refused}");
    let (p, mut notices) = client_with_notices(&dbs.via_proxy).await;
    p.batch_execute("CREATE INDEX CONCURRENTLY ev_tenant ON ev (tenant)")
        .await
        .expect("built in steps");
    let notice = next_notice(&mut notices).await;
    for part in [
        "PostgreSQL refuses CREATE INDEX CONCURRENTLY on the partitioned table ev",
        "partition by partition",
        "CREATE INDEX IF NOT EXISTS ev_tenant ON ONLY ev (tenant)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ev_2026a_tenant_idx ON public.ev_2026a (tenant)",
        "ALTER INDEX public.ev_2026_tenant_idx ATTACH PARTITION public.ev_2026a_tenant_idx",
    ] {
        assert!(notice.contains(part), "{part}: {notice}");
    }
    // Sent again (IF NOT EXISTS): every step is found done.
    p.batch_execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ev_tenant ON ev (tenant)")
        .await
        .expect("re-run");
    writer.finish(WRITE_BOUND).await;
    let lines = assert_same_schema(&dbs).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public.ev index ev_tenant valid=t")),
        "{lines:#?}"
    );
    // Inside a transaction block it cannot run either way: refused, naming the steps.
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .batch_execute("CREATE INDEX CONCURRENTLY ev_rid ON ev (rid)")
        .await
        .expect_err("refused in a transaction");
    let db = err.as_db_error().expect("ddlgate's error");
    assert_eq!(db.code().code(), "DG001", "{db:?}");
    let hint = db.hint().unwrap_or("");
    assert!(
        hint.contains("ON ONLY ev") && hint.contains("ATTACH PARTITION"),
        "{hint}"
    );
    p.batch_execute("ROLLBACK").await.expect("rollback");
    assert_same_schema(&dbs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_index_is_dropped_plainly_under_the_guard() {
    let env = Env::start_with(|c| {
        fast_guard(c);
        c.catalog.small_table_rows = 0;
    })
    .await;
    let setup =
        format!("{TREE} CREATE INDEX ev_t_idx ON ev (tenant); CREATE INDEX ev_r_idx ON ev (rid);");
    let dbs = two_databases(&env, &setup).await;
    for sql in ["DROP INDEX ev_t_idx", "DROP INDEX ev_r_idx"] {
        dbs.orig.batch_execute(sql).await.expect("direct");
    }
    // A long transaction reading ev: a DROP INDEX waiting for ACCESS EXCLUSIVE behind it
    // would queue every INSERT.
    let blocker = connect(&dbs.via_direct).await;
    blocker
        .batch_execute("SET application_name = 'long-report'; BEGIN; SELECT count(*) FROM ev")
        .await
        .expect("blocker");
    let writer = Writer::start(&dbs.via_direct, INSERT).await;
    let (p, mut notices) = client_with_notices(&dbs.via_proxy).await;
    let drop = tokio::spawn(async move {
        p.batch_execute("DROP INDEX CONCURRENTLY ev_t_idx")
            .await
            .map(|_| p)
    });
    let notice = next_notice(&mut notices).await;
    for part in [
        "ddlgate runs this statement under the lock guard (rule require-concurrent-index-deletion): DROP INDEX ev_t_idx",
        "PostgreSQL cannot drop an index of a partitioned table concurrently",
    ] {
        assert!(notice.contains(part), "{part}: {notice}");
    }
    assert!(guard_retried(&env, 3).await, "the guard retried the drop");
    // The writer kept going while the drop retried.
    tokio::time::sleep(LOCK_TIMEOUT * 3).await;
    blocker.batch_execute("COMMIT").await.expect("commit");
    let p = tokio::time::timeout(Duration::from_secs(20), drop)
        .await
        .expect("the drop finishes")
        .expect("join")
        .expect("the drop succeeds");
    // The plain form: the same, without a blocker.
    p.batch_execute("DROP INDEX ev_r_idx")
        .await
        .expect("plain drop");
    writer.finish(WRITE_BOUND).await;
    let lines = assert_same_schema(&dbs).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("ev_t_idx") || l.contains("ev_r_idx"))
    );
    // Inside a transaction block the lock would last until COMMIT: refused.
    dbs.admin
        .batch_execute("CREATE INDEX ev_x_idx ON ev (tenant, rid)")
        .await
        .expect("index");
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .batch_execute("DROP INDEX ev_x_idx")
        .await
        .expect_err("refused in a transaction");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    p.batch_execute("ROLLBACK").await.expect("rollback");
    let left: i64 = dbs
        .admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'ev_x_idx'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_on_a_parent_before_18_is_validated_partition_by_partition() {
    let env = Env::start_with(|c| {
        fast_guard(c);
        c.catalog.small_table_rows = 0;
    })
    .await;
    let setup = format!(
        "CREATE TABLE refd (id int PRIMARY KEY); INSERT INTO refd SELECT g FROM generate_series(1, 100) g;
         {TREE}"
    );
    let dbs = two_databases(&env, &setup).await;
    let version: i32 = dbs
        .orig
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("version")
        .get(0);
    let statements = [
        "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)",
        "ALTER TABLE ev ADD FOREIGN KEY (rid) REFERENCES refd ON DELETE CASCADE",
    ];
    for sql in statements {
        dbs.orig.batch_execute(sql).await.expect("direct");
    }
    let writer = Writer::start(&dbs.via_direct, INSERT).await;
    let (p, mut notices) = client_with_notices(&dbs.via_proxy).await;
    for sql in statements {
        p.batch_execute(sql).await.expect("through ddlgate");
        let notice = next_notice(&mut notices).await;
        if version < 180_000 {
            assert!(
                notice.contains("ALTER TABLE public.ev_2026a VALIDATE CONSTRAINT")
                    && notice.contains("before 18 does not accept NOT VALID"),
                "{notice}"
            );
        }
    }
    // Sent again: every step is found done (the statement itself would fail: the name exists).
    p.batch_execute(statements[0])
        .await
        .expect("re-run skips every step");
    writer.finish(WRITE_BOUND).await;
    let lines = assert_same_schema(&dbs).await;
    for expected in [
        (
            "public.ev constraint ev_fk type=f validated=t",
            "inherited=f",
        ),
        (
            "public.ev_2026 constraint ev_fk type=f validated=t",
            "inherited=t",
        ),
        (
            "public.ev_2026a constraint ev_fk type=f validated=t",
            "inherited=t",
        ),
        (
            "public.ev_2024 constraint ev_rid_fkey type=f validated=t",
            "inherited=t",
        ),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(expected.0) && l.ends_with(expected.1)),
            "{expected:?}: {lines:#?}"
        );
    }
    // A row the constraint forbids fails on a partition, as after the direct statement.
    let err = dbs
        .admin
        .batch_execute("INSERT INTO ev VALUES (5, 1, 1000)")
        .await
        .expect_err("violates the foreign key");
    assert_eq!(sqlstate(&err).as_deref(), Some("23503"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_partition_detaches_it_concurrently_first() {
    let env = Env::start_with(fast_guard).await;
    let dbs = two_databases(&env, TREE).await;
    for sql in ["DROP TABLE ev_2025", "DROP TABLE ev_2024"] {
        dbs.orig.batch_execute(sql).await.expect("direct");
    }
    // A long transaction reading ev: a plain DROP TABLE ev_2025 would wait for ACCESS
    // EXCLUSIVE on ev behind it, and every INSERT into ev would queue behind the DROP.
    let blocker = connect(&dbs.via_direct).await;
    blocker
        .batch_execute("SET application_name = 'long-report'; BEGIN; SELECT count(*) FROM ev")
        .await
        .expect("blocker");
    let writer = Writer::start(&dbs.via_direct, INSERT).await;
    let (p, mut notices) = client_with_notices(&dbs.via_proxy).await;
    let drop = tokio::spawn(async move { p.batch_execute("DROP TABLE ev_2025").await.map(|_| p) });
    let steps = next_notice(&mut notices).await;
    for part in [
        "ALTER TABLE public.ev DETACH PARTITION ev_2025 CONCURRENTLY",
        "DROP TABLE ev_2025",
        "ACCESS EXCLUSIVE on public.ev too",
    ] {
        assert!(steps.contains(part), "{part}: {steps}");
    }
    let warning = next_notice(&mut notices).await;
    assert!(
        warning.contains("ban-drop-table") && warning.contains("destroys the data"),
        "{warning}"
    );
    // The detach waits for the long transaction; the writer does not.
    assert!(
        wait_active(
            &dbs.admin,
            "ALTER TABLE public.ev DETACH PARTITION ev_2025 CONCURRENTLY",
            1,
            Duration::from_secs(10)
        )
        .await,
        "the detach runs"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    blocker.batch_execute("COMMIT").await.expect("commit");
    let p = tokio::time::timeout(Duration::from_secs(30), drop)
        .await
        .expect("the drop finishes")
        .expect("join")
        .expect("the steps succeed");

    // A concurrent detach interrupted half-way (here by its statement_timeout while it waits
    // for a reader) leaves the partition pending detach: the recipe finishes it (FINALIZE).
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM ev")
        .await
        .expect("blocker");
    let interrupted = connect(&dbs.via_direct).await;
    interrupted
        .batch_execute("SET statement_timeout = '500ms'")
        .await
        .expect("statement_timeout");
    let err = interrupted
        .batch_execute("ALTER TABLE ev DETACH PARTITION ev_2024 CONCURRENTLY")
        .await
        .expect_err("interrupted");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    blocker.batch_execute("COMMIT").await.expect("commit");
    let pending: bool = dbs
        .admin
        .query_one(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'ev_2024'::regclass",
            &[],
        )
        .await
        .expect("pending")
        .get(0);
    assert!(pending, "the detach is left pending");
    p.batch_execute("DROP TABLE ev_2024")
        .await
        .expect("finalized and dropped");
    let steps = next_notice(&mut notices).await;
    assert!(
        steps.contains("FINALIZE") && steps.contains("pending detach"),
        "{steps}"
    );
    let warning = next_notice(&mut notices).await;
    assert!(warning.contains("ban-drop-table"), "{warning}");
    writer.finish(WRITE_BOUND).await;
    assert_same_schema(&dbs).await;

    // Prepared (extended protocol), where ddlgate runs no steps: today's verdict, the plain
    // warning, and the statement runs.
    for c in [&dbs.orig, &dbs.admin] {
        c.batch_execute(
            "CREATE TABLE ev_2027 PARTITION OF ev FOR VALUES FROM (1000000) TO (2000000)",
        )
        .await
        .expect("partition");
    }
    p.execute("DROP TABLE ev_2027", &[])
        .await
        .expect("prepared DROP TABLE runs as written");
    let warning = next_notice(&mut notices).await;
    assert!(
        warning.contains("ban-drop-table") && !warning.contains("rewrote"),
        "{warning}"
    );
    dbs.orig
        .batch_execute("DROP TABLE ev_2027")
        .await
        .expect("direct");

    // With a DEFAULT partition PostgreSQL refuses the concurrent detach: today's verdict (a
    // warning) stays, and it says why.
    for c in [&dbs.orig, &dbs.admin] {
        c.batch_execute("CREATE TABLE ev_rest PARTITION OF ev DEFAULT")
            .await
            .expect("default partition");
    }
    assert_eq!(next_notice_or_none(&mut notices).await, None);
    // A sub-partition: detached from its own parent, which has no DEFAULT partition.
    p.batch_execute("DROP TABLE ev_2026a")
        .await
        .expect("detached and dropped");
    let steps = next_notice(&mut notices).await;
    assert!(
        steps.contains("ALTER TABLE public.ev_2026 DETACH PARTITION ev_2026a CONCURRENTLY"),
        "{steps}"
    );
    let warning = next_notice(&mut notices).await;
    assert!(
        warning.contains("ban-drop-table")
            && warning.contains("ev_2026a is a partition of public.ev_2026")
            && warning.contains("detaches it CONCURRENTLY before dropping it"),
        "{warning}"
    );
    dbs.orig
        .batch_execute("DROP TABLE ev_2026a")
        .await
        .expect("direct");
    // The DEFAULT partition itself: its parent has one, so no concurrent detach.
    p.batch_execute("DROP TABLE ev_rest")
        .await
        .expect("dropped as written");
    let warning = next_notice(&mut notices).await;
    assert!(
        warning.contains("ev_rest is a partition of public.ev")
            && warning.contains("cannot detach it concurrently first")
            && warning.contains("has a DEFAULT partition"),
        "{warning}"
    );
    dbs.orig
        .batch_execute("DROP TABLE ev_rest")
        .await
        .expect("direct");
    // Inside a transaction block: the same.
    p.batch_execute("BEGIN").await.expect("begin");
    p.batch_execute("DROP TABLE ev_2026")
        .await
        .expect("dropped as written");
    p.batch_execute("COMMIT").await.expect("commit");
    let warning = next_notice(&mut notices).await;
    assert!(
        warning.contains("cannot run inside a transaction block"),
        "{warning}"
    );
    dbs.orig
        .batch_execute("DROP TABLE ev_2026")
        .await
        .expect("direct");
    assert_same_schema(&dbs).await;
}

/// Drains a notice if one is already there.
async fn next_notice_or_none(
    notices: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) -> Option<String> {
    notices.try_recv().ok().map(|n| notice_line(&n))
}

/// The point of the per-partition foreign-key recipe, shown so that it can fail: once every
/// leaf holds the validated constraint, the parent's `ADD CONSTRAINT` attaches them and does
/// not scan. A row that violates the key is slipped into a leaf behind its check trigger's
/// back: a scan would find it (as it does where the leaf has no constraint), an attach does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parents_step_attaches_the_validated_partition_keys_without_a_scan() {
    use ddlgate::recipe::{self, Context, Partition};
    use ddlgate::sql::LexOptions;
    use ddlgate::sql::parse;
    use ddlgate::sql::statement::Name;

    let env = Env::start().await;
    let setup = format!(
        "CREATE TABLE refd (id int PRIMARY KEY); INSERT INTO refd SELECT g FROM generate_series(1, 100) g;
         {TREE}"
    );
    let dbs = two_databases(&env, &setup).await;
    let version: i32 = dbs
        .admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("version")
        .get(0);
    if version >= 180_000 {
        return; // NOT VALID on the parent: no per-partition recipe to check.
    }
    let sql = "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (rid) REFERENCES refd (id)";
    let public = |n: &str| Name::new(Some("public"), n);
    let tree = [
        Partition::leaf(public("ev_2024")),
        Partition::leaf(public("ev_2025")),
        Partition::partitioned(public("ev_2026"), vec![Partition::leaf(public("ev_2026a"))]),
    ];
    let ddl = parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default());
    let r = recipe::plan(
        sql.as_bytes(),
        0,
        sql.len(),
        LexOptions::default(),
        &ddl,
        &Context {
            server_version_num: u32::try_from(version).expect("version"),
            partitions: Some(&tree),
            partition_of: None,
        },
    )
    .expect("recipe");
    let (last, leaves) = r.steps.split_last().expect("steps");
    assert_eq!(last.sql, sql);
    for step in leaves {
        dbs.admin.batch_execute(&step.sql).await.expect(&step.sql);
    }
    let smuggle = "ALTER TABLE ev_2024 DISABLE TRIGGER ALL;
                   INSERT INTO ev VALUES (5, 1, 1000);
                   ALTER TABLE ev_2024 ENABLE TRIGGER ALL;";
    dbs.admin
        .batch_execute(smuggle)
        .await
        .expect("smuggled row");
    let t = Instant::now();
    dbs.admin
        .batch_execute(&last.sql)
        .await
        .expect("attached without a scan: the smuggled row is not seen");
    println!("the parent's step took {:?}", t.elapsed());
    // Where the leaves hold no constraint, the same statement scans and finds the row.
    let orig_admin = connect(
        &env.direct_conn("ddlgate_admin")
            .replace("dbname=postgres", "dbname=orig"),
    )
    .await;
    orig_admin
        .batch_execute(smuggle)
        .await
        .expect("smuggled row");
    let err = dbs
        .orig
        .batch_execute(sql)
        .await
        .expect_err("the direct statement scans");
    assert_eq!(sqlstate(&err).as_deref(), Some("23503"), "{err}");
}
