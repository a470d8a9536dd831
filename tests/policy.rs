//! The policy acting through ddlgate against real PostgreSQL: rewrites really run concurrently,
//! blocks change nothing and leave the session usable (simple and extended protocol, inside and
//! outside transactions), overrides work, and attempts to slip a blocked statement past the
//! guard fail.

mod common;

use std::time::Duration;

use common::*;
use ddlgate::config::Mode;

async fn index_exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    admin
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = $1",
            &[&name],
        )
        .await
        .map(|r| r.get::<_, i64>(0) == 1)
        .expect("pg_indexes")
}

/// The tests below exercise index rules on a 1,000-row table: with the catalog's small-table
/// exemption it would (rightly) be allowed inside transactions, depending on when autovacuum
/// last analysed it. Turn the exemption off so the verdicts do not depend on that.
fn no_small_tables(c: &mut ddlgate::config::Config) {
    c.catalog.small_table_rows = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_create_index_builds_concurrently_while_writes_proceed() {
    let env = Env::start_with(no_small_tables).await;
    let admin = env.table_t(1000).await;
    // An index expression that takes ~1 ms per row makes the build last a few seconds, so the
    // writes below certainly overlap it.
    admin
        .batch_execute(
            "CREATE FUNCTION slow(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN v; END $$;
             GRANT EXECUTE ON FUNCTION slow(int) TO trust_user;",
        )
        .await
        .expect("slow()");
    let (client, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    let build = tokio::spawn(async move {
        client
            .simple_query("CREATE INDEX t_slow ON t (slow(x))")
            .await
            .map(|_| ())
    });
    assert!(
        wait_active(
            &admin,
            "CREATE INDEX CONCURRENTLY t_slow%",
            1,
            Duration::from_secs(10)
        )
        .await,
        "the rewritten statement runs"
    );
    // A plain CREATE INDEX holds SHARE, which would make these inserts wait and hit their lock
    // timeout; CONCURRENTLY lets them through.
    let writer = env.direct_client("trust_user").await;
    writer
        .batch_execute("SET lock_timeout = '300ms'")
        .await
        .expect("lock_timeout");
    for i in 0..5 {
        writer
            .execute("INSERT INTO t (x) VALUES ($1)", &[&(5000 + i)])
            .await
            .expect("write during the build");
    }
    build
        .await
        .expect("join")
        .expect("the rewritten build succeeds");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("notice")
        .expect("open");
    assert!(
        notice
            .message()
            .contains("CREATE INDEX CONCURRENTLY t_slow"),
        "{}",
        notice.message()
    );
    let valid: bool = admin
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_slow'::regclass",
            &[],
        )
        .await
        .expect("pg_index")
        .get(0);
    assert!(valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_inside_a_transaction_fails_it_on_both_sides() {
    let env = Env::start_with(no_small_tables).await;
    let admin = env.table_t(1000).await;
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("BEGIN; INSERT INTO t (x) VALUES (-1)")
        .await
        .expect("begin");
    let err = p
        .batch_execute("CREATE INDEX t_x ON t (x)")
        .await
        .expect_err("blocked");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "DG001");
    assert!(
        db.message().contains("require-concurrent-index-creation"),
        "{}",
        db.message()
    );
    assert!(
        db.detail().is_some_and(|d| d.contains("SHARE lock")),
        "{:?}",
        db.detail()
    );
    let hint = db.hint().expect("hint");
    assert!(
        hint.contains("CONCURRENTLY")
            && hint.contains("ddlgate:allow require-concurrent-index-creation"),
        "{hint}"
    );
    // The transaction is failed: nothing else runs, and COMMIT rolls back the earlier insert.
    let err = p.simple_query("SELECT 1").await.expect_err("aborted");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    p.batch_execute("COMMIT").await.expect("commit answers");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t WHERE x = -1", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "work before the blocked statement must not commit");
    assert!(!index_exists(&admin, "t_x").await);
    p.simple_query("SELECT 1").await.expect("session usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_rewrites_outside_and_blocks_inside_transactions() {
    let env = Env::start_with(no_small_tables).await;
    let admin = env.table_t(1000).await;
    let mut p = env.proxy_client("trust_user").await;
    // Outside a transaction: Parse is rewritten, the statement runs concurrently.
    p.execute("CREATE INDEX t_x ON t (x)", &[])
        .await
        .expect("rewritten via extended protocol");
    assert!(index_exists(&admin, "t_x").await);
    // Inside one: blocked; the transaction is failed and rolls back.
    let tx = p.transaction().await.expect("begin");
    tx.execute("INSERT INTO t (x) VALUES (-2)", &[])
        .await
        .expect("insert");
    let err = tx
        .execute("CREATE INDEX t_x2 ON t (x)", &[])
        .await
        .expect_err("blocked");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    let err = tx
        .query_one("SELECT 1", &[])
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"), "{err}");
    // COMMIT of a failed transaction rolls back (the server answers ROLLBACK, not an error).
    tx.commit().await.expect("commit answers");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t WHERE x = -2", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    assert!(!index_exists(&admin, "t_x2").await);
    let one: i32 = p.query_one("SELECT 1", &[]).await.expect("usable").get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_allow_named_rules_and_are_checked() {
    let env = Env::start_with(no_small_tables).await;
    let admin = env.table_t(1000).await;
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("BEGIN").await.expect("begin");
    p.batch_execute("/* ddlgate:allow require-concurrent-index-creation reason=\"1000 rows\" */ CREATE INDEX t_x ON t (x)")
        .await
        .expect("override lets it through");
    p.batch_execute("COMMIT").await.expect("commit");
    assert!(index_exists(&admin, "t_x").await);
    // An unknown rule id is an error, not a silent pass.
    let err = p
        .batch_execute("/* ddlgate:allow require-concurrent-index-creatoin reason=\"typo\" */ CREATE INDEX t_y ON t (x)")
        .await
        .expect_err("unknown rule");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG003"), "{err}");
    assert!(!index_exists(&admin, "t_y").await);
    assert_eq!(
        env.proxy
            .shared()
            .counters
            .decisions
            .overrides("require-concurrent-index-creation"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_by_application_name_forbid_overrides_for_humans() {
    let env = Env::start_with(|c| {
        no_small_tables(c);
        c.profiles.push(ddlgate::config::ProfileConfig {
            name: "humans".into(),
            selector: ddlgate::config::Selector {
                application_name: Some("psql".into()),
                ..Default::default()
            },
            mode: None,
            overridable: Some(vec![]),
            rules: Default::default(),
            backfill: Default::default(),
        })
    })
    .await;
    let admin = env.table_t(1000).await;
    let sql = "BEGIN; SAVEPOINT s; /* ddlgate:allow require-concurrent-index-creation reason=\"trust me\" */ CREATE INDEX t_x ON t (x); COMMIT";
    let out = env
        .psql(env.proxy_addr().port(), "trust_user", &["-c", sql], None)
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("does not allow overriding"),
        "{stderr}"
    );
    assert!(!index_exists(&admin, "t_x").await);
    // The same statement from an application is allowed by its override.
    let p = env.proxy_client("trust_user").await;
    p.batch_execute(sql)
        .await
        .expect("applications may override");
    assert!(index_exists(&admin, "t_x").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_lets_statements_run_with_a_warning() {
    let env = Env::start_with(|c| {
        no_small_tables(c);
        c.policy.mode = Mode::Warn;
    })
    .await;
    let admin = env.table_t(1000).await;
    let (client, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    client
        .batch_execute("BEGIN; CREATE INDEX t_x ON t (x); COMMIT")
        .await
        .expect("warn never blocks");
    assert!(index_exists(&admin, "t_x").await);
    let n = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("warning")
        .expect("open");
    assert!(n.message().contains("would block"), "{}", n.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_to_slip_past_the_guard_fail() {
    let env = Env::start_with(no_small_tables).await;
    let admin = env.table_t(1000).await;
    let p = env.proxy_client("trust_user").await;
    // Each is a plain CREATE INDEX that must not run as written: inside a transaction it is
    // blocked; in a multi-statement string (an implicit transaction) it cannot be rewritten
    // and is blocked.
    let attempts = [
        "BEGIN; create index t_a on t (x)",
        "BEGIN; CrEaTe InDeX t_a ON t (x)",
        "BEGIN; CREATE /* sneaky */ INDEX -- more\n t_a ON t (x)",
        "BEGIN; CREATE INDEX \"t_a\" ON \"t\" (\"x\")",
        "SELECT 1; CREATE INDEX t_a ON t (x)",
        "SELECT ';'; CREATE INDEX t_a ON t (x)",
        "SELECT E'\\''; CREATE INDEX t_a ON t (x)",
        "SELECT $q$ ; $$ ' $q$; CREATE INDEX t_a ON t (x)",
        "SELECT /* ; */ 1; CREATE INDEX t_a ON t (x)",
        "/* ddlgate:allow unparsed-ddl reason=\"wrong rule\" */ SELECT 1; CREATE INDEX t_a ON t (x)",
        // Wrapped in DO blocks: the body runs inside the caller's transaction, so the
        // statement is checked there and cannot be rewritten.
        "DO $$ BEGIN CREATE INDEX t_a ON t (x); END $$",
        "DO $body$ DECLARE n int; BEGIN IF true THEN create index t_a on t (x); END IF; END $body$",
        "DO LANGUAGE plpgsql 'BEGIN EXECUTE ''CREATE INDEX t_a ON t (x)''; END'",
        "DO $$ BEGIN EXECUTE format('CREATE INDEX %I ON %I (x)', 't_a', 't'); END $$",
        "DO $$ BEGIN EXECUTE 'CREATE INDEX t_a ' || 'ON t (x)'; END $$",
        "DO $$ DECLARE q text := 'CREATE INDEX t_a ON t (x)'; BEGIN EXECUTE q; END $$",
    ];
    for sql in attempts {
        let err = p.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{sql}: {err}");
        assert!(!index_exists(&admin, "t_a").await, "{sql}");
        let _ = p.batch_execute("ROLLBACK").await;
    }
    // Through the extended protocol inside a transaction.
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .execute("CREATE INDEX t_a ON t (x)", &[])
        .await
        .expect_err("extended");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"));
    p.batch_execute("ROLLBACK").await.expect("rollback");
    // A command keyword in a form ddlgate cannot read fails closed.
    let err = p
        .batch_execute("ALTER FROBNICATE TABLE t")
        .await
        .expect_err("unknown");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG002"), "{err}");
    // A word that starts no command is the server's to reject (syntax error).
    let err = p
        .batch_execute("FROBNICATE TABLE t")
        .await
        .expect_err("not a command");
    assert_eq!(sqlstate(&err).as_deref(), Some("42601"), "{err}");
    assert!(!index_exists(&admin, "t_a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_facts_decide_what_a_linter_cannot() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, name varchar(20), n int, d numeric(10,2));
             INSERT INTO big SELECT g, 'x', g, g FROM generate_series(1, 20000) g; ANALYZE big;
             CREATE TABLE small (id int, name text); INSERT INTO small VALUES (1, 'a'); ANALYZE small;
             CREATE TABLE parted (id int, k int) PARTITION BY RANGE (id);
             CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
             CREATE FUNCTION stable_now() RETURNS timestamptz LANGUAGE sql STABLE AS 'SELECT now()';
             ALTER TABLE big OWNER TO trust_user; ALTER TABLE small OWNER TO trust_user; ALTER TABLE parted OWNER TO trust_user;
             ALTER TABLE parted_1 OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    let p = env.proxy_client("trust_user").await;
    // Binary-coercible type changes rewrite nothing: allowed, even inside a transaction.
    p.batch_execute("BEGIN; ALTER TABLE big ALTER COLUMN name TYPE varchar(50); ALTER TABLE big ALTER COLUMN d TYPE numeric(12,2); COMMIT")
        .await
        .expect("binary-coercible changes are allowed");
    // A rewriting one is blocked.
    let err = p
        .batch_execute("ALTER TABLE big ALTER COLUMN n TYPE bigint")
        .await
        .expect_err("rewrites");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    // A default calling a STABLE function is instant on PG >= 11; a volatile one is not.
    p.batch_execute("ALTER TABLE big ADD COLUMN at timestamptz DEFAULT stable_now()")
        .await
        .expect("stable default");
    let err = p
        .batch_execute("ALTER TABLE big ADD COLUMN r float8 DEFAULT random()")
        .await
        .expect_err("volatile");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    // A plain index build inside a transaction: fine on a tiny table, not on a large one.
    p.batch_execute("BEGIN; CREATE INDEX small_name ON small (name); COMMIT")
        .await
        .expect("small table");
    let err = p
        .batch_execute("BEGIN; CREATE INDEX big_name ON big (name)")
        .await
        .expect_err("large table");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    p.batch_execute("ROLLBACK").await.expect("rollback");
    // SET NOT NULL with a validated CHECK (col IS NOT NULL) is allowed as is.
    admin
        .batch_execute("ALTER TABLE big ADD CONSTRAINT n_nn CHECK (n IS NOT NULL)")
        .await
        .expect("check");
    p.batch_execute("BEGIN; ALTER TABLE big ALTER COLUMN n SET NOT NULL; COMMIT")
        .await
        .expect("proven by the check");
    // REFRESH MATERIALIZED VIEW becomes CONCURRENTLY when the view has a usable unique index;
    // without one there is no safe form and it is blocked.
    admin
        .batch_execute(
            "CREATE MATERIALIZED VIEW mv_keyed AS SELECT id, n FROM big; CREATE UNIQUE INDEX ON mv_keyed (id);
             CREATE MATERIALIZED VIEW mv_plain AS SELECT n FROM big;
             ALTER MATERIALIZED VIEW mv_keyed OWNER TO trust_user; ALTER MATERIALIZED VIEW mv_plain OWNER TO trust_user;",
        )
        .await
        .expect("views");
    let (c, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    c.batch_execute("REFRESH MATERIALIZED VIEW mv_keyed")
        .await
        .expect("refreshed concurrently");
    let n = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("notice")
        .expect("open");
    assert!(
        n.message()
            .contains("REFRESH MATERIALIZED VIEW CONCURRENTLY mv_keyed"),
        "{}",
        n.message()
    );
    let err = c
        .batch_execute("REFRESH MATERIALIZED VIEW mv_plain")
        .await
        .expect_err("no unique index");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    // Without the facts (a failed transaction) nothing is assumed safe.
    let verdicts = &env.proxy.shared().counters.decisions;
    assert!(verdicts.rule_action("changing-column-type", ddlgate::rules::Action::Block) >= 1);
}
