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

/// A composite primary key over text with quotes, commas and braces in a quoted schema and
/// table, `"App"."Order Lines"`, and a partitioned table `p` (the key spans the partitions;
/// changed through the parent), each with a copy (`ref`, `p_ref`) for the single statement.
const KEYED_TABLES: &str = r#"CREATE SCHEMA "App";
     CREATE TABLE "App"."Order Lines" (tenant text, line int, qty int, note text,
                                       PRIMARY KEY (tenant, line));
     INSERT INTO "App"."Order Lines" SELECT t, g, g % 7, NULL
       FROM unnest(ARRAY['a', 'o''neil, "x"', 'b{}', 'Z']) t, generate_series(1, 300) g;
     CREATE TABLE ref AS TABLE "App"."Order Lines";
     CREATE TABLE p (region int, id int, v int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
     CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
     CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2);
     INSERT INTO p SELECT r, g, g FROM generate_series(1, 2) r, generate_series(1, 200) g;
     CREATE TABLE p_ref AS TABLE p;"#;

/// Runs `args` without a pause on `table`: it must exit 0 and leave `table` equal to
/// `reference`, which had the single statement.
async fn equals_one_statement(
    pg: &PgCluster,
    c: &tokio_postgres::Client,
    table: &str,
    reference: &str,
    args: &[&str],
) -> Output {
    let mut all = vec!["--table", table, "--pause", "0ms"];
    all.extend(args);
    let out = backfill(pg.port(), &all).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(differences(c, table, reference).await, 0, "{}", text(&out));
    out
}

#[tokio::test]
async fn composite_quoted_and_unique_index_keys() {
    let (pg, c) = cluster().await;
    c.batch_execute(KEYED_TABLES).await.expect("setup");
    c.batch_execute(
        "UPDATE ref SET note = tenant || ':' || line WHERE qty % 2 = 0;
         -- No primary key: a unique index over NOT NULL columns serves.
         CREATE TABLE u (code text NOT NULL, other int UNIQUE, v int);
         CREATE UNIQUE INDEX u_code ON u (code);
         INSERT INTO u SELECT 'c' || g, NULL, g FROM generate_series(1, 500) g;
         CREATE TABLE u_ref AS TABLE u;
         UPDATE u_ref SET v = -v;
         UPDATE p_ref SET v = v * 10 WHERE id % 2 = 1;",
    )
    .await
    .expect("setup");
    let set = ["--set", "note = tenant || ':' || line"];
    let rest = ["--where", "qty % 2 = 0", "--batch-size", "77"];
    equals_one_statement(
        &pg,
        &c,
        r#""App"."Order Lines""#,
        "ref",
        &[&set[..], &rest].concat(),
    )
    .await;

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

    let args = [
        "--set",
        "v = v * 10",
        "--where",
        "id % 2 = 1",
        "--batch-size",
        "50",
    ];
    equals_one_statement(&pg, &c, "p", "p_ref", &args).await;
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

/// A table without a key and one with, 100 rows each, `b` NULL.
const REFUSAL_TABLES: &str = "CREATE TABLE nokey (a int, b text);
     INSERT INTO nokey SELECT g, NULL FROM generate_series(1, 100) g;
     CREATE TABLE x (id int PRIMARY KEY, b text);
     INSERT INTO x SELECT g, NULL FROM generate_series(1, 100) g;";

/// Neither of `REFUSAL_TABLES` changed, and not even the progress table exists.
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
    c.batch_execute(REFUSAL_TABLES).await.expect("setup");

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
    let w = with_concurrent_writer(
        &pg,
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
        15000,
    )
    .await;
    assert_eq!(
        one_i64(
            &c,
            "SELECT count(*) FROM t WHERE filled IS DISTINCT FROM id * 2"
        )
        .await,
        0
    );
    assert!(w.writes.iter().all(|&(_, n)| n == 1));
    assert_eq!(
        one_i64(&c, "SELECT sum(hits) FROM t").await,
        w.writes.len() as i64
    );
    // 30 batches with 100 ms pauses: the run lasts seconds. A single UPDATE would hold the
    // writer for all of it.
    w.waited_about_one_batch("concurrent writer");
}

/// A writer's updates of random rows while a backfill ran.
struct WriterRun {
    /// Every update: the id and the rows it changed.
    writes: Vec<(i32, u64)>,
    /// The longest an update took.
    max: Duration,
    /// The backfill's run, start to exit.
    run: Duration,
}

/// Runs `args` (pausing between batches) while one writer updates random rows `1..=rows` of
/// `t` (`hits = hits + 1`) back to back until the backfill exits; it must exit 0.
async fn with_concurrent_writer(pg: &PgCluster, args: &[&str], rows: i32) -> WriterRun {
    let started = Instant::now();
    let mut child = command(pg.port(), args)
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
    let mut writes = Vec::new();
    while child.try_wait().expect("try_wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "backfill hangs"
        );
        let id = fastrand::i32(1..=rows);
        let t = Instant::now();
        let n = writer
            .execute(&update, &[&id])
            .await
            .expect("writer update");
        max = max.max(t.elapsed());
        writes.push((id, n));
    }
    let run = started.elapsed();
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    WriterRun { writes, max, run }
}

impl WriterRun {
    /// The run lasted seconds (30-odd batches with 100 ms pauses) and the writer's longest wait
    /// was about one batch (a few ms), far below it.
    fn waited_about_one_batch(&self, what: &str) {
        let (run, max, writes) = (self.run, self.max, self.writes.len());
        assert!(run > Duration::from_secs(3), "run took {run:?}");
        assert!(writes > 100, "{writes} writes");
        assert!(
            max < Duration::from_millis(750),
            "the writer waited {max:?} (run {run:?}, {writes} writes)"
        );
        eprintln!("{what}: {writes} updates, longest {max:?}, backfill run {run:?}");
    }
}

const DONE_BATCHES: &str =
    "SELECT COALESCE((SELECT batches_done FROM ddlgate.backfill_progress), 0)";

/// Runs `args` with `--pause 100ms`, SIGKILLs it once five batches are recorded, and waits
/// until its backend is gone (a COMMIT already sent still lands). Returns the batches then
/// recorded.
async fn kill_after_five_batches(pg: &PgCluster, c: &tokio_postgres::Client, args: &[&str]) -> i64 {
    let mut slow: Vec<&str> = args.to_vec();
    slow.extend(["--pause", "100ms"]);
    let mut child: Child = command(pg.port(), &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backfill");
    let ok = common::eventually(Duration::from_secs(60), || async {
        c.query_one(
            "SELECT to_regclass('ddlgate.backfill_progress') IS NOT NULL",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, bool>(0))
            && one_i64(c, DONE_BATCHES).await >= 5
    })
    .await;
    assert!(ok, "five batches done");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        common::eventually(Duration::from_secs(30), || async {
            one_i64(
                c,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddlgate_backfill'",
            )
            .await
                == 0
        })
        .await,
        "the killed run's backend ends"
    );
    one_i64(c, DONE_BATCHES).await
}

/// Runs `args` (batches of 100 over `COUNTED_TABLE`, `rows` of them matching) and SIGKILLs it
/// after five batches: each committed batch is recorded with its rows. Then `args` again,
/// without a pause: it resumes after the recorded batches and changes the rest, no row twice.
/// Returns the rerun's output and the batches done before the kill.
async fn killed_then_resumed(
    pg: &PgCluster,
    c: &tokio_postgres::Client,
    args: &[&str],
    rows: i64,
) -> (Output, i64) {
    let before = kill_after_five_batches(pg, c, args).await;
    assert_eq!(
        one_i64(c, "SELECT count(*) FROM touched").await,
        before * 100,
        "each committed batch recorded"
    );
    assert!(before < rows / 100, "killed mid-run ({before} batches)");

    let mut fast: Vec<&str> = args.to_vec();
    fast.extend(["--pause", "0ms"]);
    let out = backfill(pg.port(), &fast).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("resumed after {before} batches")),
        "{}",
        text(&out)
    );
    assert_eq!(one_i64(c, "SELECT count(*) FROM touched").await, rows);
    assert_eq!(
        one_i64(c, "SELECT count(DISTINCT id) FROM touched").await,
        rows,
        "no row changed twice"
    );
    assert_eq!(
        one_i64(c, "SELECT rows_done FROM ddlgate.backfill_progress").await,
        rows
    );
    (out, before)
}

/// `t`: 6,000 rows (ids 3, 6, …; `v` NULL; `keep` on every fifth), and `touched`, where a
/// trigger writes the id of every committed row update or deletion, once per change.
const COUNTED_TABLE: &str = "CREATE TABLE t (id bigint PRIMARY KEY, v text, keep bool NOT NULL);
     INSERT INTO t SELECT g * 3, NULL, g % 5 = 0 FROM generate_series(1, 6000) g;
     CREATE TABLE touched (id bigint NOT NULL);
     CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN INSERT INTO touched VALUES (COALESCE(NEW.id, OLD.id)); RETURN NULL; END $$;
     CREATE TRIGGER touch AFTER UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION log_touch();";

#[tokio::test]
async fn killed_run_resumes_without_redoing_batches() {
    let (pg, c) = cluster().await;
    c.batch_execute(COUNTED_TABLE).await.expect("setup");
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
    killed_then_resumed(&pg, &c, &args, 6000).await;
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v IS NULL").await,
        0
    );
}

/// 50 rows in `t (id int PRIMARY KEY, v text)`, all `v` NULL, and a writer's open transaction
/// holding row 3, changed so that it no longer matches `v IS NULL`.
async fn row_3_held(pg: &PgCluster, c: &tokio_postgres::Client) -> tokio_postgres::Client {
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
    holder
}

/// `args` (batches of 10 over `row_3_held`'s table) with a 100 ms lock_timeout and at most 2
/// retries: exit 1 after three attempts of batch 1, naming the server's 55P03.
async fn gives_up_after_three_attempts(pg: &PgCluster, args: &[&str]) {
    let mut few = args.to_vec();
    few.extend([
        "--batch-size",
        "10",
        "--pause",
        "0ms",
        "--lock-timeout",
        "100ms",
        "--max-retries",
        "2",
    ]);
    let out = backfill(pg.port(), &few).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("batch 1 failed 3 times in a row") && text(&out).contains("55P03"),
        "{}",
        text(&out)
    );
}

/// `args` again with up to 20 retries; `holder` commits once the run has printed its first
/// retry (no sleep: the retry line is the signal). It must finish; returns its standard output.
async fn finishes_once_released(
    pg: &PgCluster,
    args: &[&str],
    holder: tokio_postgres::Client,
) -> String {
    let mut many = args.to_vec();
    many.extend([
        "--batch-size",
        "10",
        "--pause",
        "0ms",
        "--lock-timeout",
        "100ms",
        "--max-retries",
        "20",
        "--progress",
        "plain",
    ]);
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains(" 0 retries"), "{stdout}\n{stderr}");
    stdout
}

#[tokio::test]
async fn a_batch_that_meets_lock_timeout_is_retried_a_bounded_number_of_times() {
    let (pg, c) = cluster().await;
    let holder = row_3_held(&pg, &c).await;
    let args = [
        "--table",
        "t",
        "--set",
        "v = 'done'",
        "--where",
        "v IS NULL",
    ];
    gives_up_after_three_attempts(&pg, &args).await;
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE v = 'done'").await,
        0
    );
    // The lock holder ends while the next run backs off: it goes on and finishes.
    let stdout = finishes_once_released(&pg, &args, holder).await;
    assert!(stdout.contains("49 rows updated"), "{stdout}");
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
    c.batch_execute(KEYED_TABLES).await.expect("setup");
    c.batch_execute(
        "DELETE FROM ref WHERE qty % 2 = 0;
         DELETE FROM p_ref WHERE id % 2 = 1;",
    )
    .await
    .expect("setup");
    let args = ["--delete", "--where", "qty % 2 = 0", "--batch-size", "77"];
    let out = equals_one_statement(&pg, &c, r#""App"."Order Lines""#, "ref", &args).await;
    let gone = 1200 - one_i64(&c, "SELECT count(*) FROM ref").await;
    assert!(
        text(&out).contains(&format!("{gone} rows deleted")),
        "{}",
        text(&out)
    );
    let key: Vec<String> = c
        .query_one("SELECT key_columns FROM ddlgate.backfill_progress", &[])
        .await
        .expect("progress")
        .get(0);
    assert_eq!(key, ["tenant", "line"]);

    let args = ["--delete", "--where", "id % 2 = 1", "--batch-size", "50"];
    let p = equals_one_statement(&pg, &c, "p", "p_ref", &args).await;
    assert!(deleted(&p, 200, 5), "{}", text(&p));
}

#[tokio::test]
async fn killed_delete_resumes_without_deleting_twice_or_skipping() {
    let (pg, c) = cluster().await;
    c.batch_execute(COUNTED_TABLE).await.expect("setup");
    let args = [
        "--table",
        "t",
        "--delete",
        "--where",
        "NOT keep",
        "--batch-size",
        "100",
    ];
    let (out, before) = killed_then_resumed(&pg, &c, &args, 4800).await;
    assert!(
        text(&out).contains(&format!("{} rows deleted", 4800 - before * 100)),
        "{}",
        text(&out)
    );
    assert_eq!(
        one_i64(
            &c,
            "SELECT count(*) FROM touched g JOIN generate_series(1, 6000) s ON g.id = s * 3
              WHERE s % 5 <> 0"
        )
        .await,
        4800,
        "only matching rows deleted"
    );
    // None skipped: exactly the rows to keep are left.
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE NOT keep").await,
        0
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 1200);
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
    let w = with_concurrent_writer(
        &pg,
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
        15000,
    )
    .await;
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE id % 2 = 0").await,
        0
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 7500);
    // A row the DELETE keeps is always there for the writer; its updates all count.
    let kept: Vec<u64> = w
        .writes
        .iter()
        .filter(|&&(id, _)| id % 2 == 1)
        .map(|&(_, n)| n)
        .collect();
    assert!(kept.iter().all(|&n| n == 1));
    assert_eq!(
        one_i64(&c, "SELECT sum(hits) FROM t").await,
        kept.len() as i64
    );
    // 30 batches with 100 ms pauses. A single DELETE would hold the even rows for all of it.
    w.waited_about_one_batch("concurrent writer vs --delete");
}

#[tokio::test]
async fn a_delete_batch_that_meets_lock_timeout_is_retried_a_bounded_number_of_times() {
    let (pg, c) = cluster().await;
    let holder = row_3_held(&pg, &c).await;
    let args = ["--table", "t", "--delete", "--where", "v IS NULL"];
    gives_up_after_three_attempts(&pg, &args).await;
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 50);
    // The holder commits while the next run backs off: it finishes, and row 3 (no longer
    // matching when the batch gets its lock) is kept.
    let stdout = finishes_once_released(&pg, &args, holder).await;
    assert!(stdout.contains("49 rows deleted"), "{stdout}");
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM t WHERE id = 3 AND v = 'writer'").await,
        1
    );
    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn delete_refusals_and_injections_change_nothing() {
    let (pg, c) = cluster().await;
    c.batch_execute(REFUSAL_TABLES).await.expect("setup");

    for (args, code, says) in [
        // --delete and --set together: refused by the command line.
        (
            &["--delete", "--set", "b = 'x'", "--where", "true"][..],
            2,
            "cannot be used with",
        ),
        // Neither: nothing to do.
        (&["--where", "true"], 2, "<--set <SET>|--delete>"),
        // --delete without --where: every row must be asked for.
        (&["--delete"], 2, "--delete needs --where"),
        (&["--delete"], 2, "--where true"),
        (
            &["--delete", "--where", "nosuchcol"],
            1,
            r#"column "nosuchcol" does not exist"#,
        ),
        (&["--delete", "--where", "false; DROP TABLE x"], 2, "`;`"),
        (
            &["--delete", "--where", "false) OR (true"],
            2,
            "did not open",
        ),
        (
            &["--delete", "--where", "id < 0) OR (id > 0"],
            2,
            "did not open",
        ),
        (&["--delete", "--where", "false)) --"], 2, "did not open"),
        (&["--delete", "--where", "false /* "], 2, "unterminated"),
        (&["--delete", "--where", "'"], 2, "unterminated"),
        (&["--delete", "--where", "false OR id = $1"], 2, "parameter"),
    ] {
        let out = backfill(pg.port(), &[&["--table", "x"][..], args].concat()).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        untouched(&c).await;
    }
    let out = backfill(
        pg.port(),
        &["--table", "nokey", "--delete", "--where", "true"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no primary key"), "{}", text(&out));
    untouched(&c).await;

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

#[tokio::test]
async fn delete_leaves_foreign_keys_to_the_server() {
    let (pg, c) = cluster().await;
    c.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY);
         INSERT INTO parent SELECT g FROM generate_series(1, 100) g;
         CREATE TABLE cascaded (id int PRIMARY KEY,
                                parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE);
         INSERT INTO cascaded SELECT g, g % 100 + 1 FROM generate_series(1, 1000) g;
         CREATE TABLE kept (parent_id int NOT NULL REFERENCES parent);
         INSERT INTO kept VALUES (75);",
    )
    .await
    .expect("setup");
    // ON DELETE CASCADE: the children go in the same batch; a referenced row (NO ACTION) fails
    // its batch with the server's 23503, not retried, after the earlier batches committed.
    let out = backfill(
        pg.port(),
        &[
            "--table",
            "parent",
            "--delete",
            "--where",
            "true",
            "--batch-size",
            "10",
            "--pause",
            "0ms",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("batch 8 failed: ") && text(&out).contains("23503"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("70 rows in 7 batches were committed"),
        "{}",
        text(&out)
    );
    assert_eq!(one_i64(&c, "SELECT min(id)::int8 FROM parent").await, 71);
    assert_eq!(one_i64(&c, "SELECT count(*) FROM cascaded").await, 300);
    assert_eq!(
        one_i64(&c, "SELECT count(*) FROM cascaded WHERE parent_id <= 70").await,
        0
    );
}
