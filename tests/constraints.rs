//! Issue 12, constraints, against real PostgreSQL through the proxy: an `IF NOT EXISTS` index
//! build over an INVALID leftover, `ADD PRIMARY KEY USING INDEX` over nullable columns, and
//! `ADD … NOT VALID` + `VALIDATE` in one transaction or one Query. For each, the end state (read
//! from the catalog) equals the direct statement's on a twin table in another database, and a
//! writer inserting all along never waits longer than the guard's `lock_timeout`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::Client;

/// The guard's `lock_timeout` in these tests: the bound on any writer's wait.
const LOCK_TIMEOUT: Duration = Duration::from_millis(500);

/// ~1 ms per call: makes a validation scan or index build over a few thousand rows take
/// seconds, several times [`LOCK_TIMEOUT`], so a step that blocked writes would be caught.
const SLOW_FN: &str = "CREATE FUNCTION slow(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE \
     AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN v; END $$;";

fn config(c: &mut ddlgate::config::Config) {
    c.guard.lock_timeout_ms = LOCK_TIMEOUT;
    c.guard.backoff_initial_ms = Duration::from_millis(50);
    c.guard.backoff_max_ms = Duration::from_millis(200);
    c.guard.max_attempts = 100;
    c.guard.max_wait_ms = Duration::from_secs(30);
    // The recipes are under test: the small-table allowance would let these tables through.
    c.catalog.small_table_rows = 0;
}

/// The proxy, a `twin` database for the direct statements, and `setup` run in both (as the
/// superuser, objects then owned by `trust_user`).
struct Twins {
    env: Env,
    admin: Client,
    twin: Client,
}

async fn twins(setup: &str) -> Twins {
    let env = Env::start_with(config).await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE DATABASE twin")
        .await
        .expect("create twin");
    let twin = connect(
        &env.direct_conn("ddlgate_admin")
            .replace("dbname=postgres", "dbname=twin"),
    )
    .await;
    for c in [&admin, &twin] {
        c.batch_execute(&format!(
            "GRANT ALL ON SCHEMA public TO trust_user; SET ROLE trust_user; {SLOW_FN} {setup} RESET ROLE;"
        ))
        .await
        .expect("setup");
    }
    Twins { env, admin, twin }
}

async fn assert_same_schema(t: &Twins) -> Vec<String> {
    let via = catalog_dump(&t.admin).await;
    let direct = catalog_dump(&t.twin).await;
    assert_eq!(
        via, direct,
        "schema through ddlgate (left) vs after the direct statement (right)"
    );
    assert!(
        !via.iter().any(|l| l.contains("ddlgate")),
        "no temporary object is left behind: {via:#?}"
    );
    via
}

/// Every notice the proxy sent so far, one line each.
fn drain(
    notices: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(n) = notices.try_recv() {
        out.push(format!(
            "{} {} {}",
            n.message(),
            n.detail().unwrap_or(""),
            n.hint().unwrap_or("")
        ));
    }
    out
}

async fn one_bool(c: &Client, sql: &str) -> bool {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_not_exists_over_an_invalid_leftover_drops_it_and_builds_again() {
    let t = twins(
        "CREATE TABLE inv (id serial PRIMARY KEY, x int);
         INSERT INTO inv (x) SELECT g FROM generate_series(1, 1000) g;
         CREATE TABLE inv2 (id serial PRIMARY KEY, x int);
         INSERT INTO inv2 (x) SELECT g FROM generate_series(1, 1000) g;",
    )
    .await;
    // A failed concurrent build (a duplicate) leaves INVALID indexes behind, in the proxy's
    // database only; then the data is fixed.
    for (table, index) in [("inv", "inv_x"), ("inv2", "inv2_x")] {
        t.admin
            .batch_execute(&format!("INSERT INTO {table} (x) VALUES (1)"))
            .await
            .expect("duplicate");
        let err = t
            .admin
            .batch_execute(&format!(
                "CREATE UNIQUE INDEX CONCURRENTLY {index} ON {table} (slow(x))"
            ))
            .await
            .expect_err("the build fails on the duplicate");
        assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
        t.admin
            .batch_execute(&format!(
                "DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})"
            ))
            .await
            .expect("fix the data");
        assert!(
            !one_bool(
                &t.admin,
                &format!("SELECT indisvalid FROM pg_index WHERE indexrelid = '{index}'::regclass")
            )
            .await
        );
    }
    let (p, mut notices) = client_with_notices(&t.env.proxy_conn("trust_user")).await;

    // Inside a transaction neither step can run: blocked, with the leftover and the fix named.
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .batch_execute("CREATE UNIQUE INDEX IF NOT EXISTS inv_x ON inv (slow(x))")
        .await
        .expect_err("blocked in a transaction");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "DG001", "{db:?}");
    assert!(
        db.detail()
            .unwrap_or("")
            .contains("INVALID index public.inv_x"),
        "{:?}",
        db.detail()
    );
    assert!(
        db.hint()
            .unwrap_or("")
            .contains("DROP INDEX CONCURRENTLY IF EXISTS public.inv_x"),
        "{:?}",
        db.hint()
    );
    p.batch_execute("ROLLBACK").await.expect("rollback");
    drain(&mut notices);

    // Outside: the CONCURRENTLY form and the plain form are both rebuilt, while writes go on.
    let writer = Writer::start(
        &t.env.direct_conn("trust_user"),
        "INSERT INTO inv (x) VALUES (NULL); INSERT INTO inv2 (x) VALUES (NULL)",
    )
    .await;
    let started = Instant::now();
    for sql in [
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS inv_x ON inv (slow(x))",
        "CREATE UNIQUE INDEX IF NOT EXISTS inv2_x ON inv2 (slow(x))",
    ] {
        p.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let said = drain(&mut notices).join("\n");
        assert!(said.contains("INVALID index"), "{said}");
        assert!(said.contains("as 2 steps"), "{said}");
        assert!(
            said.contains("DROP INDEX CONCURRENTLY IF EXISTS public."),
            "{said}"
        );
    }
    let took = started.elapsed();
    let worst = writer.finish(LOCK_TIMEOUT).await.worst();
    // The builds read 2 × 1000 rows, twice each, at ~1 ms a row: the writer really wrote through them.
    assert!(took > LOCK_TIMEOUT * 4, "the builds took {took:?}");
    eprintln!("invalid-leftover rebuilds took {took:?}; the writer's worst wait: {worst:?}");
    // The twin: the direct statements on tables without a leftover.
    for sql in [
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS inv_x ON inv (slow(x))",
        "CREATE UNIQUE INDEX IF NOT EXISTS inv2_x ON inv2 (slow(x))",
    ] {
        t.twin.batch_execute(sql).await.expect("direct");
    }
    let lines = assert_same_schema(&t).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public.inv index inv_x valid=t")),
        "{lines:#?}"
    );

    // A VALID index of that name: unchanged behaviour (PostgreSQL skips, ddlgate says nothing
    // about a leftover).
    p.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS inv_x ON inv (slow(x))")
        .await
        .expect("valid index: skipped");
    assert!(!drain(&mut notices).iter().any(|n| n.contains("INVALID")));
    still_serves(&t.env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_key_using_index_over_a_nullable_column_runs_the_not_null_recipe_first() {
    let t = twins(
        "CREATE TABLE big (id int NOT NULL, email text);
         INSERT INTO big SELECT g, 'u' || g FROM generate_series(1, 30000) g;
         CREATE UNIQUE INDEX big_email_u ON big (email);
         CREATE TABLE big2 (id int NOT NULL, email text);
         INSERT INTO big2 SELECT g, 'u' || g FROM generate_series(1, 30000) g;
         CREATE UNIQUE INDEX big2_id_u ON big2 (id);
         ANALYZE big; ANALYZE big2;",
    )
    .await;
    let (p, mut notices) = client_with_notices(&t.env.proxy_conn("trust_user")).await;
    let sql = "ALTER TABLE big ADD CONSTRAINT big_email_pk PRIMARY KEY USING INDEX big_email_u";

    // Inside a transaction: blocked, with the NOT NULL steps named.
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .batch_execute(sql)
        .await
        .expect_err("blocked in a transaction");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "DG001", "{db:?}");
    assert!(
        db.detail()
            .unwrap_or("")
            .contains("key column(s) email allow NULLs"),
        "{:?}",
        db.detail()
    );
    assert!(
        db.hint().unwrap_or("").contains("SET NOT NULL"),
        "{:?}",
        db.hint()
    );
    p.batch_execute("ROLLBACK").await.expect("rollback");
    drain(&mut notices);

    // Outside: the NOT NULL recipe, then the statement, while writes go on.
    let writer = Writer::start(
        &t.env.direct_conn("trust_user"),
        "INSERT INTO big VALUES (0, md5(random()::text || clock_timestamp()::text))",
    )
    .await;
    p.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let worst = writer.finish(LOCK_TIMEOUT).await.worst();
    let said = drain(&mut notices).join("\n");
    assert!(said.contains("as 5 steps"), "{said}");
    assert!(
        said.contains("CHECK (email IS NOT NULL) NOT VALID"),
        "{said}"
    );
    assert!(
        said.contains("ALTER TABLE big VALIDATE CONSTRAINT big_email_ddlgate_nn"),
        "{said}"
    );
    eprintln!("PRIMARY KEY USING INDEX recipe: the writer's worst wait {worst:?}");
    t.twin.batch_execute(sql).await.expect("direct");
    // Key columns already NOT NULL: allowed as written, nothing said about it.
    let ok = "ALTER TABLE big2 ADD PRIMARY KEY USING INDEX big2_id_u";
    p.batch_execute(ok).await.expect("not-null key");
    assert!(
        !drain(&mut notices)
            .iter()
            .any(|n| n.contains("allow NULLs"))
    );
    t.twin.batch_execute(ok).await.expect("direct");
    let lines = assert_same_schema(&t).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public.big constraint big_email_pk type=p validated=t")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "public.big column email text notnull=t default="),
        "{lines:#?}"
    );
    still_serves(&t.env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn not_valid_then_validate_in_one_query_runs_as_two_steps_and_is_blocked_in_a_transaction() {
    let t = twins(
        "CREATE TABLE r (id int PRIMARY KEY); INSERT INTO r SELECT g FROM generate_series(1, 10) g;
         CREATE TABLE big (id serial PRIMARY KEY, a int, rid int);
         INSERT INTO big (a, rid) SELECT g, 1 + g % 10 FROM generate_series(1, 3000) g;
         ANALYZE big;",
    )
    .await;
    let (p, mut notices) = client_with_notices(&t.env.proxy_conn("trust_user")).await;
    let check_pair = "ALTER TABLE big ADD CONSTRAINT big_chk2 CHECK (slow(a) > 0) NOT VALID; \
                      ALTER TABLE big VALIDATE CONSTRAINT big_chk2";
    let fk_pair = "ALTER TABLE big ADD CONSTRAINT big_rid_fk FOREIGN KEY (rid) REFERENCES r (id) NOT VALID;\n\
                   ALTER TABLE big VALIDATE CONSTRAINT big_rid_fk;";

    // Inside a transaction block: blocked, whether the VALIDATE comes in the same Query or in
    // a later one (then known from the catalog: the constraint's row is this transaction's).
    for (setup, sql) in [
        (
            "",
            "BEGIN; ALTER TABLE big ADD CONSTRAINT big_chk3 CHECK (a > 0) NOT VALID; ALTER TABLE big VALIDATE CONSTRAINT big_chk3; COMMIT",
        ),
        (
            "BEGIN; ALTER TABLE big ADD CONSTRAINT big_chk3 CHECK (a > 0) NOT VALID",
            "ALTER TABLE big VALIDATE CONSTRAINT big_chk3",
        ),
    ] {
        if !setup.is_empty() {
            p.batch_execute(setup).await.expect("setup");
        }
        let err = p.batch_execute(sql).await.expect_err("blocked");
        let db = err.as_db_error().expect("server error");
        assert_eq!(db.code().code(), "DG001", "{sql}: {db:?}");
        assert!(
            db.message().contains("validate-in-same-transaction"),
            "{sql}: {}",
            db.message()
        );
        assert!(
            db.hint().unwrap_or("").contains("Commit between the two"),
            "{sql}: {:?}",
            db.hint()
        );
        p.batch_execute("ROLLBACK").await.expect("rollback");
    }
    drain(&mut notices);

    // The pair alone in one Query: two steps, each committed on its own, while writes go on.
    let writer = Writer::start(
        &t.env.direct_conn("trust_user"),
        "INSERT INTO big (a, rid) VALUES (1, 1)",
    )
    .await;
    let started = Instant::now();
    for sql in [check_pair, fk_pair] {
        p.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let said = drain(&mut notices).join("\n");
        assert!(said.contains("validate-in-same-transaction"), "{said}");
        assert!(said.contains("as 2 steps"), "{said}");
    }
    let took = started.elapsed();
    let worst = writer.finish(LOCK_TIMEOUT).await.worst();
    // The CHECK's validation reads 3000 rows at ~1 ms each: in one transaction every INSERT
    // would have waited for all of it.
    assert!(took > LOCK_TIMEOUT * 4, "the validations took {took:?}");
    eprintln!("NOT VALID + VALIDATE pair: {took:?}; the writer's worst wait {worst:?}");
    // The simple protocol got one CommandComplete per statement: the session is in step.
    let rows = p
        .simple_query("SELECT 1")
        .await
        .expect("the session is in step");
    let values: Vec<Option<&str>> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0)),
            _ => None,
        })
        .collect();
    assert_eq!(values, [Some("1")], "{rows:?}");
    // A validation that fails: the ADD stayed committed (NOT VALID, enforced for new rows),
    // the client gets the server's SQLSTATE and which step failed; after fixing the data the
    // same Query finishes the job (the ADD is skipped).
    let bad_pair = "ALTER TABLE big ADD CONSTRAINT big_chk4 CHECK (a < 2900) NOT VALID; \
                    ALTER TABLE big VALIDATE CONSTRAINT big_chk4";
    let err = p
        .batch_execute(bad_pair)
        .await
        .expect_err("rows violate it");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "23514", "{db:?}");
    assert!(db.message().contains("step 2 of 2"), "{}", db.message());
    p.batch_execute("DELETE FROM big WHERE a >= 2900")
        .await
        .expect("fix the data");
    drain(&mut notices);
    p.batch_execute(bad_pair).await.expect("resumed");
    let said = drain(&mut notices).join("\n");
    assert!(said.contains("as 2 steps"), "{said}");
    t.twin
        .batch_execute("DELETE FROM big WHERE a >= 2900")
        .await
        .expect("twin data");
    for sql in [check_pair, fk_pair, bad_pair] {
        t.twin.batch_execute(sql).await.expect("direct");
    }
    let lines = assert_same_schema(&t).await;
    for c in ["big_chk2", "big_rid_fk", "big_chk4"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("public.big constraint {c} "))
                    && l.contains("validated=t")),
            "{lines:#?}"
        );
    }
    still_serves(&t.env).await;
}
