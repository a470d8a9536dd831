//! `ddlgate backfill` as a user runs it: the real binary against a throwaway cluster. The
//! result equals the single UPDATE; composite and quoted keys; a concurrent writer waits about
//! one batch at most; a SIGKILL mid-run then a rerun resumes without redoing a batch; a table
//! without a key, a fragment the server rejects and an injection attempt change nothing.
//! The same for `--delete` (the result equals the single DELETE, composite and partitioned
//! keys, a killed run resumes deleting no row twice and skipping none, a concurrent writer,
//! lock_timeout retries), and its own refusals: with `--set`, without `--where`.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{PgCluster, conn_str, connect};

async fn cluster() -> (PgCluster, tokio_postgres::Client) {
    common::init_tracing();
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster start");
    let c = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    (pg, c)
}

fn command(port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddlgate"));
    cmd.arg("backfill")
        .arg("--database")
        .arg(conn_str(port, "ddlgate_admin"))
        .args(args)
        .env_remove("DDLGATE_CONFIG")
        .stdin(Stdio::null());
    cmd
}

async fn backfill(port: u16, args: &[&str]) -> Output {
    let mut cmd = command(port, args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run ddlgate backfill"))
        .await
        .expect("thread")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Rows in one table and not the other, both ways.
async fn differences(c: &tokio_postgres::Client, a: &str, b: &str) -> i64 {
    c.query_one(
        &format!(
            "SELECT (SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x)
                  + (SELECT count(*) FROM (TABLE {b} EXCEPT ALL TABLE {a}) y)"
        ),
        &[],
    )
    .await
    .expect("compare")
    .get(0)
}

async fn one_i64(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn result_equals_the_single_update() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, phone text, n int NOT NULL DEFAULT 0);
         INSERT INTO users (id, phone) SELECT g, CASE WHEN g % 3 = 0 THEN '555' END
           FROM generate_series(1, 3000) g;
         CREATE TABLE users_ref AS TABLE users;
         UPDATE users_ref SET phone = 'p' || id, n = n + 1 WHERE phone IS NULL;
         UPDATE users_ref SET n = n + 1;",
    )
    .await
    .expect("setup");
    let set = "phone = 'p' || id, n = n + 1 -- a comment ends with its line";
    let out = backfill(
        pg.port(),
        &[
            "--table",
            "users",
            "--set",
            set,
            "--where",
            "phone IS NULL",
            "--batch-size",
            "250",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("2000 rows updated in 9 batches"),
        "{}",
        text(&out)
    );
    // Every row, no condition: `n = n + 1` would show any row visited twice.
    let all = backfill(
        pg.port(),
        &[
            "--table",
            "public.users",
            "--set",
            "n = n + 1",
            "--batch-size",
            "333",
            "--pause",
            "0ms",
            "--progress",
            "plain",
            "--report-every",
            "0s",
        ],
    )
    .await;
    assert_eq!(all.status.code(), Some(0), "{}", text(&all));
    // Not a terminal: plain progress lines (here after every batch) with the planner's estimate.
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert!(
        stderr.contains("backfill of public.users: 333 rows in 1 batches")
            && stderr.contains("(planner estimate), ETA"),
        "{stderr}"
    );
    assert_eq!(differences(&c, "users", "users_ref").await, 0);

    let row = c
        .query_one(
            "SELECT rows_done, batches_done, finished_at IS NOT NULL, key_columns
               FROM ddlgate.backfill_progress WHERE set_sql = $1",
            &[&set],
        )
        .await
        .expect("progress row");
    assert_eq!(row.get::<_, i64>(0), 2000);
    assert_eq!(row.get::<_, i64>(1), 9);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, Vec<String>>(3), ["id"]);

    // The same arguments again: finished, says so, changes nothing.
    let again = backfill(
        pg.port(),
        &[
            "--table",
            "users",
            "--set",
            set,
            "--where",
            "phone IS NULL",
            "--batch-size",
            "250",
        ],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("already finished"),
        "{}",
        text(&again)
    );
    assert_eq!(differences(&c, "users", "users_ref").await, 0);
}

#[tokio::test]
async fn composite_quoted_and_unique_index_keys() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        r#"CREATE SCHEMA "App";
         CREATE TABLE "App"."Order Lines" (tenant text, line int, qty int, note text,
                                           PRIMARY KEY (tenant, line));
         INSERT INTO "App"."Order Lines" SELECT t, g, g % 7, NULL
           FROM unnest(ARRAY['a', 'o''neil, "x"', 'b{}', 'Z']) t, generate_series(1, 300) g;
         CREATE TABLE ref AS TABLE "App"."Order Lines";
         UPDATE ref SET note = tenant || ':' || line WHERE qty % 2 = 0;
         -- No primary key: a unique index over NOT NULL columns serves.
         CREATE TABLE u (code text NOT NULL, other int UNIQUE, v int);
         CREATE UNIQUE INDEX u_code ON u (code);
         INSERT INTO u SELECT 'c' || g, NULL, g FROM generate_series(1, 500) g;
         CREATE TABLE u_ref AS TABLE u;
         UPDATE u_ref SET v = -v;
         -- Partitioned: updated through the parent, the key spans the partitions.
         CREATE TABLE p (region int, id int, v int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
         CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
         CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2);
         INSERT INTO p SELECT r, g, g FROM generate_series(1, 2) r, generate_series(1, 200) g;
         CREATE TABLE p_ref AS TABLE p;
         UPDATE p_ref SET v = v * 10 WHERE id % 2 = 1;"#,
    )
    .await
    .expect("setup");
    let out = backfill(
        pg.port(),
        &[
            "--table",
            r#""App"."Order Lines""#,
            "--set",
            "note = tenant || ':' || line",
            "--where",
            "qty % 2 = 0",
            "--batch-size",
            "77",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(differences(&c, r#""App"."Order Lines""#, "ref").await, 0);

    let u = backfill(
        pg.port(),
        &[
            "--table",
            "u",
            "--set",
            "v = -v",
            "--batch-size",
            "64",
            "--pause",
            "0ms",
            // No replicas here: the lag check runs and never waits.
            "--max-lag",
            "1s",
        ],
    )
    .await;
    assert_eq!(u.status.code(), Some(0), "{}", text(&u));
    assert_eq!(differences(&c, "u", "u_ref").await, 0);
    let key: Vec<String> = c
        .query_one(
            "SELECT key_columns FROM ddlgate.backfill_progress WHERE table_name = 'public.u'",
            &[],
        )
        .await
        .expect("progress")
        .get(0);
    assert_eq!(
        key,
        ["code"],
        "the NOT NULL unique index, not the nullable one"
    );

    let p = backfill(
        pg.port(),
        &[
            "--table",
            "p",
            "--set",
            "v = v * 10",
            "--where",
            "id % 2 = 1",
            "--batch-size",
            "50",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(p.status.code(), Some(0), "{}", text(&p));
    assert_eq!(differences(&c, "p", "p_ref").await, 0);
}

#[tokio::test]
async fn a_row_changed_while_its_batch_waits_does_not_end_the_run() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, NULL FROM generate_series(1, 40) g;",
    )
    .await
    .expect("setup");
    // A writer holds row 5 and changes it so that it no longer matches.
    let holder = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    holder
        .batch_execute("BEGIN; UPDATE t SET v = 'writer' WHERE id = 5")
        .await
        .expect("writer");
    let child = command(
        pg.port(),
        &[
            "--table",
            "t",
            "--set",
            "v = 'done'",
            "--where",
            "v IS NULL",
            "--batch-size",
            "10",
            "--pause",
            "0ms",
            "--lock-timeout",
            "30s",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start backfill");
    assert!(
        common::eventually(Duration::from_secs(30), || async {
            one_i64(
                &c,
                "SELECT count(*) FROM pg_stat_activity
                  WHERE application_name = 'ddlgate_backfill' AND wait_event_type = 'Lock'",
            )
            .await
                == 1
        })
        .await,
        "the first batch waits for row 5"
    );
    holder.batch_execute("COMMIT").await.expect("commit");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("output"))
        .await
        .expect("thread");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Row 5 dropped out of the first batch while it waited; every other row is done.
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v IS NULL").await,
        0
    );
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v = 'done'").await,
        39
    );
}

/// Neither table of `refusals_change_nothing` changed, and not even the progress table exists.
async fn untouched(c: &tokio_postgres::Client) {
    assert_eq!(
        one_i64(c, "SELECT count(*) FROM nokey WHERE b IS NOT NULL").await
            + one_i64(c, "SELECT count(*) FROM x WHERE b IS NOT NULL").await,
        0
    );
    assert_eq!(one_i64(c, "SELECT count(*) FROM x").await, 100);
    assert_eq!(
        one_i64(
            c,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'ddlgate'"
        )
        .await,
        0,
        "not even the progress table was created"
    );
}

#[tokio::test]
async fn refusals_change_nothing() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE nokey (a int, b text);
         INSERT INTO nokey SELECT g, NULL FROM generate_series(1, 100) g;
         CREATE TABLE x (id int PRIMARY KEY, b text);
         INSERT INTO x SELECT g, NULL FROM generate_series(1, 100) g;",
    )
    .await
    .expect("setup");

    let out = backfill(pg.port(), &["--table", "nokey", "--set", "b = 'x'"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no primary key"), "{}", text(&out));
    untouched(&c).await;

    let out = backfill(pg.port(), &["--table", "x", "--set", "b = nosuchcol"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(r#"column "nosuchcol" does not exist"#),
        "{}",
        text(&out)
    );
    untouched(&c).await;

    let out = backfill(pg.port(), &["--table", "nosuchtable", "--set", "b = 'x'"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));

    for (flag, value) in [
        ("--where", "true; DROP TABLE x"),
        ("--where", "true) OR (true"),
        ("--where", "true)) --"),
        ("--set", "b = 'x' WHERE true OR id > 0"),
        ("--set", "b = 'x'; DROP TABLE x"),
        ("--set", "id = id + 1000"),
    ] {
        let other = if flag == "--set" { "--where" } else { "--set" };
        let other_value = if flag == "--set" { "true" } else { "b = 'x'" };
        let out = backfill(
            pg.port(),
            &["--table", "x", flag, value, other, other_value],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", text(&out));
        untouched(&c).await;
    }
    let out = backfill(pg.port(), &["--table", "x", "--set", "id = id + 1000"]).await;
    assert!(text(&out).contains("column of the key"), "{}", text(&out));
}

#[tokio::test]
async fn a_concurrent_writer_waits_about_one_batch_at_most() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, filled int, hits int NOT NULL DEFAULT 0);
         INSERT INTO t (id) SELECT g FROM generate_series(1, 15000) g;",
    )
    .await
    .expect("setup");
    let mut cmd = command(
        pg.port(),
        &[
            "--table",
            "t",
            "--set",
            "filled = id * 2",
            "--where",
            "filled IS NULL",
            "--batch-size",
            "500",
            "--pause",
            "100ms",
        ],
    );
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backfill");
    let writer = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    let update = writer
        .prepare("UPDATE t SET hits = hits + 1 WHERE id = $1")
        .await
        .expect("prepare");
    let mut max = Duration::ZERO;
    let mut writes = 0u32;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "backfill hangs"
        );
        let id = fastrand::i32(1..=15000);
        let t = Instant::now();
        writer
            .execute(&update, &[&id])
            .await
            .expect("writer update");
        max = max.max(t.elapsed());
        writes += 1;
    }
    let run = started.elapsed();
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        one_i64(
            &c,
            "SELECT count(*) FROM t WHERE filled IS DISTINCT FROM id * 2"
        )
        .await,
        0
    );
    assert_eq!(
        one_i64(&c, "SELECT sum(hits) FROM t").await,
        i64::from(writes)
    );
    // 30 batches with 100 ms pauses: the run lasts seconds; the writer's longest wait is about
    // one batch (a few ms), far below the run. A single UPDATE would hold it for all of it.
    assert!(run > Duration::from_secs(3), "run took {run:?}");
    assert!(writes > 100, "{writes} writes");
    assert!(
        max < Duration::from_millis(750),
        "the writer waited {max:?} (run {run:?}, {writes} writes)"
    );
    eprintln!("concurrent writer: {writes} updates, longest {max:?}, backfill run {run:?}");
}

#[tokio::test]
async fn killed_run_resumes_without_redoing_batches() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);
         INSERT INTO t (id) SELECT g * 3 FROM generate_series(1, 6000) g;
         -- Every committed row update, once per update.
         CREATE TABLE touched (id bigint NOT NULL);
         CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO touched VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER touch AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION log_touch();",
    )
    .await
    .expect("setup");
    let args = [
        "--table",
        "t",
        "--set",
        "v = 'done'",
        "--where",
        "v IS NULL",
        "--batch-size",
        "100",
    ];
    let mut slow: Vec<&str> = args.to_vec();
    slow.extend(["--pause", "100ms"]);
    let mut child: Child = command(pg.port(), &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backfill");
    let done_batches = "SELECT COALESCE((SELECT batches_done FROM ddlgate.backfill_progress), 0)";
    let ok = common::eventually(Duration::from_secs(60), || async {
        c.query_one(
            "SELECT to_regclass('ddlgate.backfill_progress') IS NOT NULL",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, bool>(0))
            && one_i64(&c, done_batches).await >= 5
    })
    .await;
    assert!(ok, "five batches done");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // A COMMIT already sent still lands: read once the killed run's backend is gone.
    assert!(
        common::eventually(Duration::from_secs(30), || async {
            one_i64(
                &c,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddlgate_backfill'",
            )
            .await
                == 0
        })
        .await,
        "the killed run's backend ends"
    );
    let before = one_i64(&c, done_batches).await;
    let touched_before = one_i64(&c, "SELECT count(*) FROM touched").await;
    assert_eq!(
        touched_before,
        before * 100,
        "each committed batch recorded"
    );
    assert!(before < 60, "killed mid-run ({before} batches)");

    let mut fast: Vec<&str> = args.to_vec();
    fast.extend(["--pause", "0ms"]);
    let out = backfill(pg.port(), &fast).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("resumed after {before} batches")),
        "{}",
        text(&out)
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM touched").await, 6000);
    assert_eq!(
        one_i64(&c, "SELECT count(DISTINCT id) FROM touched").await,
        6000,
        "no row updated twice"
    );
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v IS NULL").await,
        0
    );
    assert_eq!(
        one_i64(&c, "SELECT rows_done FROM ddlgate.backfill_progress").await,
        6000
    );
}

#[tokio::test]
async fn a_batch_that_meets_lock_timeout_is_retried_a_bounded_number_of_times() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, NULL FROM generate_series(1, 50) g;",
    )
    .await
    .expect("setup");
    let holder = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    holder
        .batch_execute("BEGIN; UPDATE t SET v = 'writer' WHERE id = 3")
        .await
        .expect("writer");
    let args = [
        "--table",
        "t",
        "--set",
        "v = 'done'",
        "--where",
        "v IS NULL",
        "--batch-size",
        "10",
        "--pause",
        "0ms",
        "--lock-timeout",
        "100ms",
    ];
    let mut few = args.to_vec();
    few.extend(["--max-retries", "2"]);
    let out = backfill(pg.port(), &few).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("batch 1 failed 3 times in a row") && text(&out).contains("55P03"),
        "{}",
        text(&out)
    );
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v = 'done'").await,
        0
    );

    // The lock holder ends while the next run backs off: it goes on and finishes.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        holder.batch_execute("COMMIT").await.expect("commit");
    });
    let mut many = args.to_vec();
    many.extend(["--max-retries", "20"]);
    let out = backfill(pg.port(), &many).await;
    release.await.expect("release");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("49 rows updated") && !stdout.contains(" 0 retries"),
        "{}",
        text(&out)
    );
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v IS NULL").await,
        0
    );
}

#[tokio::test]
async fn tls_encrypts_and_with_a_ca_file_verifies_the_server() {
    let server_pki = common::pki::Pki::new("server");
    let leaf = server_pki.leaf("server");
    let (ca_file, cert, key) = (server_pki.ca_file.clone(), leaf.cert_pem, leaf.key_pem);
    let other_pki = common::pki::Pki::new("other");
    let other_ca = other_pki.ca_file.clone();
    let pg = tokio::task::spawn_blocking(move || PgCluster::start_with_ssl(&cert, &key))
        .await
        .expect("cluster start");
    let c = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, NULL FROM generate_series(1, 30) g;",
    )
    .await
    .expect("setup");
    let run = |database: String, ca: Option<std::path::PathBuf>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddlgate"));
        cmd.args([
            "backfill",
            "--database",
            &database,
            "--table",
            "t",
            "--pause",
            "0ms",
        ])
        .args([
            "--set",
            "v = 'done'",
            "--where",
            "v IS NULL",
            "--batch-size",
            "10",
        ])
        .stdin(Stdio::null());
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        async move {
            tokio::task::spawn_blocking(move || cmd.output().expect("run"))
                .await
                .expect("thread")
        }
    };
    let base = conn_str(pg.port(), "ddlgate_admin");
    // A CA that did not sign the server's certificate: refused in the handshake.
    let out = run(base.clone(), Some(other_ca)).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot connect"), "{}", text(&out));
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v IS NULL").await,
        30
    );
    // The right one: verified, and done.
    let out = run(format!("{base} sslmode=require"), Some(ca_file)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v IS NULL").await,
        0
    );
    // sslmode=require without a CA: encrypted, not verified (libpq's require).
    let out = run(format!("{base} sslmode=require"), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("already finished"), "{}", text(&out));
}

// --- `--delete`: the same walk, each batch deleting its keys ---------------------------------

/// The summary line's count of deleted rows and batches, e.g. `960 rows deleted in 4 batches`.
fn deleted(o: &Output, rows: u64, batches: u64) -> bool {
    String::from_utf8_lossy(&o.stdout)
        .contains(&format!("{rows} rows deleted in {batches} batches"))
}

#[tokio::test]
async fn delete_result_equals_the_single_delete() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE events (id int PRIMARY KEY, kind text, at int NOT NULL);
         INSERT INTO events SELECT g, CASE WHEN g % 4 = 0 THEN 'debug' ELSE 'info' END, g % 100
           FROM generate_series(1, 3000) g;
         CREATE TABLE events_ref AS TABLE events;
         DELETE FROM events_ref WHERE kind = 'debug' OR at < 10;
         -- The progress table as ddlgate created it before --delete: no operation column.
         CREATE SCHEMA ddlgate;
         CREATE TABLE ddlgate.backfill_progress (
             table_oid oid NOT NULL, job text NOT NULL, table_name text NOT NULL,
             key_columns text[] NOT NULL, set_sql text NOT NULL, where_sql text NOT NULL,
             last_key text[], rows_done bigint NOT NULL DEFAULT 0,
             batches_done bigint NOT NULL DEFAULT 0,
             started_at timestamptz NOT NULL DEFAULT now(),
             updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz,
             PRIMARY KEY (table_oid, job));",
    )
    .await
    .expect("setup");
    let condition = "kind = 'debug' OR at < 10 -- a comment ends with its line";
    // An UPDATE job with the same condition first: the DELETE job must not take its progress.
    let update = backfill(
        pg.port(),
        &[
            "--table", "events", "--set", "at = at", "--where", condition, "--pause", "0ms",
        ],
    )
    .await;
    assert_eq!(update.status.code(), Some(0), "{}", text(&update));
    assert!(
        text(&update).contains("960 rows updated"),
        "{}",
        text(&update)
    );

    let args = [
        "--table",
        "events",
        "--delete",
        "--where",
        condition,
        "--batch-size",
        "250",
        "--pause",
        "0ms",
    ];
    let out = backfill(pg.port(), &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(deleted(&out, 960, 4), "{}", text(&out));
    assert_eq!(differences(&c, "events", "events_ref").await, 0);

    let jobs = c
        .query(
            "SELECT operation, set_sql, rows_done, finished_at IS NOT NULL
               FROM ddlgate.backfill_progress ORDER BY operation DESC",
            &[],
        )
        .await
        .expect("progress rows");
    let jobs: Vec<(String, String, i64, bool)> = jobs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        jobs,
        [
            ("update".to_owned(), "at = at".to_owned(), 960, true),
            ("delete".to_owned(), String::new(), 960, true)
        ],
        "two jobs; the old table gained its operation column"
    );

    // The same arguments again: finished, says so, deletes nothing.
    let again = backfill(pg.port(), &args).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("already finished"),
        "{}",
        text(&again)
    );
    assert_eq!(differences(&c, "events", "events_ref").await, 0);

    // Every row, asked for explicitly.
    let all = backfill(
        pg.port(),
        &[
            "--table",
            "events",
            "--delete",
            "--where",
            "true",
            "--batch-size",
            "1000",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(all.status.code(), Some(0), "{}", text(&all));
    assert!(deleted(&all, 2040, 3), "{}", text(&all));
    assert_eq!(one_i64(&c, "SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn delete_walks_composite_quoted_and_partitioned_keys() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        r#"CREATE SCHEMA "App";
         CREATE TABLE "App"."Order Lines" (tenant text, line int, qty int,
                                           PRIMARY KEY (tenant, line));
         INSERT INTO "App"."Order Lines" SELECT t, g, g % 7
           FROM unnest(ARRAY['a', 'o''neil, "x"', 'b{}', 'Z']) t, generate_series(1, 300) g;
         CREATE TABLE ref AS TABLE "App"."Order Lines";
         DELETE FROM ref WHERE qty % 2 = 0;
         CREATE TABLE p (region int, id int, v int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
         CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
         CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2);
         INSERT INTO p SELECT r, g, g FROM generate_series(1, 2) r, generate_series(1, 200) g;
         CREATE TABLE p_ref AS TABLE p;
         DELETE FROM p_ref WHERE id % 2 = 1;"#,
    )
    .await
    .expect("setup");
    let out = backfill(
        pg.port(),
        &[
            "--table",
            r#""App"."Order Lines""#,
            "--delete",
            "--where",
            "qty % 2 = 0",
            "--batch-size",
            "77",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let gone = 1200 - one_i64(&c, "SELECT count(*) FROM ref").await;
    assert!(
        text(&out).contains(&format!("{gone} rows deleted")),
        "{}",
        text(&out)
    );
    assert_eq!(differences(&c, r#""App"."Order Lines""#, "ref").await, 0);
    let key: Vec<String> = c
        .query_one("SELECT key_columns FROM ddlgate.backfill_progress", &[])
        .await
        .expect("progress")
        .get(0);
    assert_eq!(key, ["tenant", "line"]);

    let p = backfill(
        pg.port(),
        &[
            "--table",
            "p",
            "--delete",
            "--where",
            "id % 2 = 1",
            "--batch-size",
            "50",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(p.status.code(), Some(0), "{}", text(&p));
    assert!(deleted(&p, 200, 5), "{}", text(&p));
    assert_eq!(differences(&c, "p", "p_ref").await, 0);
}

#[tokio::test]
async fn killed_delete_resumes_without_deleting_twice_or_skipping() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, keep bool NOT NULL);
         INSERT INTO t SELECT g * 3, g % 5 = 0 FROM generate_series(1, 6000) g;
         -- Every committed row deletion, once per deletion.
         CREATE TABLE gone (id bigint NOT NULL);
         CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO gone VALUES (OLD.id); RETURN OLD; END $$;
         CREATE TRIGGER gone AFTER DELETE ON t FOR EACH ROW EXECUTE FUNCTION log_delete();",
    )
    .await
    .expect("setup");
    let args = [
        "--table",
        "t",
        "--delete",
        "--where",
        "NOT keep",
        "--batch-size",
        "100",
    ];
    let mut slow: Vec<&str> = args.to_vec();
    slow.extend(["--pause", "100ms"]);
    let mut child: Child = command(pg.port(), &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backfill");
    let done_batches = "SELECT COALESCE((SELECT batches_done FROM ddlgate.backfill_progress), 0)";
    let ok = common::eventually(Duration::from_secs(60), || async {
        c.query_one(
            "SELECT to_regclass('ddlgate.backfill_progress') IS NOT NULL",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, bool>(0))
            && one_i64(&c, done_batches).await >= 5
    })
    .await;
    assert!(ok, "five batches done");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // A COMMIT already sent still lands: read once the killed run's backend is gone.
    assert!(
        common::eventually(Duration::from_secs(30), || async {
            one_i64(
                &c,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddlgate_backfill'",
            )
            .await
                == 0
        })
        .await,
        "the killed run's backend ends"
    );
    let before = one_i64(&c, done_batches).await;
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM gone").await,
        before * 100,
        "each committed batch recorded"
    );
    assert!(before < 48, "killed mid-run ({before} batches)");

    let mut fast: Vec<&str> = args.to_vec();
    fast.extend(["--pause", "0ms"]);
    let out = backfill(pg.port(), &fast).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("resumed after {before} batches")),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("{} rows deleted", 4800 - before * 100)),
        "{}",
        text(&out)
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM gone").await, 4800);
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM gone g JOIN generate_series(1, 6000) s ON g.id = s * 3 WHERE s % 5 <> 0").await,
        4800,
        "only matching rows deleted"
    );
    assert_eq!(
        one_i64(&c, "SELECT count(DISTINCT id) FROM gone").await,
        4800,
        "no row deleted twice"
    );
    // None skipped: exactly the rows to keep are left.
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE NOT keep").await,
        0
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 1200);
    assert_eq!(
        one_i64(&c, "SELECT rows_done FROM ddlgate.backfill_progress").await,
        4800
    );
}

#[tokio::test]
async fn a_concurrent_writer_waits_about_one_delete_batch_at_most() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0);
         INSERT INTO t (id) SELECT g FROM generate_series(1, 15000) g;",
    )
    .await
    .expect("setup");
    let mut cmd = command(
        pg.port(),
        &[
            "--table",
            "t",
            "--delete",
            "--where",
            "id % 2 = 0",
            "--batch-size",
            "250",
            "--pause",
            "100ms",
        ],
    );
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backfill");
    let writer = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    let update = writer
        .prepare("UPDATE t SET hits = hits + 1 WHERE id = $1")
        .await
        .expect("prepare");
    let mut max = Duration::ZERO;
    let (mut writes, mut kept_writes) = (0u32, 0i64);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "backfill hangs"
        );
        let id = fastrand::i32(1..=15000);
        let t = Instant::now();
        let n = writer
            .execute(&update, &[&id])
            .await
            .expect("writer update");
        max = max.max(t.elapsed());
        writes += 1;
        if id % 2 == 1 {
            assert_eq!(n, 1, "a row the delete keeps is always there");
            kept_writes += 1;
        }
    }
    let run = started.elapsed();
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(deleted(&out, 7500, 31), "{}", text(&out));
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE id % 2 = 0").await,
        0
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 7500);
    assert_eq!(one_i64(&c, "SELECT sum(hits) FROM t").await, kept_writes);
    // 30 batches with 100 ms pauses: the run lasts seconds; the writer's longest wait is about
    // one batch. A single DELETE would hold the even rows for all of it.
    assert!(run > Duration::from_secs(3), "run took {run:?}");
    assert!(writes > 100, "{writes} writes");
    assert!(
        max < Duration::from_millis(750),
        "the writer waited {max:?} (run {run:?}, {writes} writes)"
    );
    eprintln!(
        "concurrent writer vs --delete: {writes} updates, longest {max:?}, backfill run {run:?}"
    );
}

#[tokio::test]
async fn a_delete_batch_that_meets_lock_timeout_is_retried_a_bounded_number_of_times() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, NULL FROM generate_series(1, 50) g;",
    )
    .await
    .expect("setup");
    // A writer holds row 3 and changes it so that it no longer matches.
    let holder = connect(&conn_str(pg.port(), "ddlgate_admin")).await;
    holder
        .batch_execute("BEGIN; UPDATE t SET v = 'writer' WHERE id = 3")
        .await
        .expect("writer");
    let args = [
        "--table",
        "t",
        "--delete",
        "--where",
        "v IS NULL",
        "--batch-size",
        "10",
        "--pause",
        "0ms",
        "--lock-timeout",
        "100ms",
        "--progress",
        "plain",
    ];
    let mut few = args.to_vec();
    few.extend(["--max-retries", "2"]);
    let out = backfill(pg.port(), &few).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("batch 1 failed 3 times in a row") && text(&out).contains("55P03"),
        "{}",
        text(&out)
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 50);

    // The lock holder commits once the next run has retried: it goes on and finishes, and row 3
    // (no longer matching when the batch gets its lock) is kept.
    let mut many = args.to_vec();
    many.extend(["--max-retries", "20"]);
    let mut child = command(pg.port(), &many)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backfill");
    let stderr = child.stderr.take().expect("stderr piped");
    let (retried, seen) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut retried = Some(retried);
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("retried")
                && let Some(tx) = retried.take()
            {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .expect("a retry within 30 s")
        .expect("stderr reader");
    holder.batch_execute("COMMIT").await.expect("commit");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("output"))
        .await
        .expect("thread");
    let stderr = reader.join().expect("reader");
    assert_eq!(out.status.code(), Some(0), "{}\n{stderr}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("49 rows deleted") && !stdout.contains(" 0 retries"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE id = 3 AND v = 'writer'").await,
        1
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn delete_refusals_and_injections_change_nothing() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE nokey (a int, b text);
         INSERT INTO nokey SELECT g, NULL FROM generate_series(1, 100) g;
         CREATE TABLE x (id int PRIMARY KEY, b text);
         INSERT INTO x SELECT g, NULL FROM generate_series(1, 100) g;",
    )
    .await
    .expect("setup");

    // --delete and --set together: refused by the command line.
    let out = backfill(
        pg.port(),
        &[
            "--table", "x", "--delete", "--set", "b = 'x'", "--where", "true",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    untouched(&c).await;
    // Neither: nothing to do.
    let out = backfill(pg.port(), &["--table", "x", "--where", "true"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    untouched(&c).await;
    // --delete without --where: every row must be asked for.
    let out = backfill(pg.port(), &["--table", "x", "--delete"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--delete needs --where") && text(&out).contains("--where true"),
        "{}",
        text(&out)
    );
    untouched(&c).await;

    let out = backfill(
        pg.port(),
        &["--table", "nokey", "--delete", "--where", "true"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no primary key"), "{}", text(&out));
    untouched(&c).await;
    let out = backfill(
        pg.port(),
        &["--table", "x", "--delete", "--where", "nosuchcol"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(r#"column "nosuchcol" does not exist"#),
        "{}",
        text(&out)
    );
    untouched(&c).await;

    for value in [
        "false; DROP TABLE x",
        "false) OR (true",
        "id < 0) OR (id > 0",
        "false)) --",
        "false /* ",
        "false OR id = $1",
        "'",
    ] {
        let out = backfill(pg.port(), &["--table", "x", "--delete", "--where", value]).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "--where {value}: {}",
            text(&out)
        );
        untouched(&c).await;
    }
    // A trailing comment ends with its line: the condition stays `false`.
    let out = backfill(
        pg.port(),
        &["--table", "x", "--delete", "--where", "false --"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(deleted(&out, 0, 1), "{}", text(&out));
    assert_eq!(one_i64(&c, "SELECT count(*) FROM x").await, 100);
}
