//! `ddlgate trace` against a real PostgreSQL: the built binary runs a known migration on a
//! scratch database and reports the locks and rewrites PostgreSQL really takes and does, the
//! statements it cannot run in a transaction, and ddlgate's decisions; nothing persists; a
//! database without the scratch mark is refused unless the flag says otherwise.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

use common::binary::run_cli as ddlgate;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Key=value connection string of `db` on the cluster, as the superuser.
fn db_url(pg: &PgCluster, db: &str) -> String {
    pg.admin_conn_str()
        .replace("dbname=postgres", &format!("dbname={db}"))
}

/// Creates database `db` (marked scratch or not) with `parent (id)` and `t (id, x, parent_id)`
/// of 20,000 rows, analysed (so not a small table for the rules).
async fn scratch_db(pg: &PgCluster, db: &str, marked: bool) -> tokio_postgres::Client {
    let admin = connect(&pg.admin_conn_str()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create database");
    if marked {
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {db} IS 'ddlgate:scratch copy of the app schema'"
            ))
            .await
            .expect("mark");
    }
    let c = connect(&db_url(pg, db)).await;
    c.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY);
         INSERT INTO parent SELECT g FROM generate_series(1, 100) g;
         CREATE TABLE t (id int PRIMARY KEY, x int, parent_id int);
         INSERT INTO t SELECT g, g, 1 + g % 100 FROM generate_series(1, 20000) g;
         ANALYZE parent; ANALYZE t;",
    )
    .await
    .expect("schema");
    c
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(o)))
}

/// The `new_locks` of statement `i` as (mode, object) pairs.
fn locks(doc: &Value, i: usize) -> Vec<(String, String)> {
    doc["statements"][i]["new_locks"]
        .as_array()
        .expect("new_locks")
        .iter()
        .map(|l| {
            (
                l["mode"].as_str().expect("mode").to_owned(),
                l["object"].as_str().expect("object").to_owned(),
            )
        })
        .collect()
}

fn has(locks: &[(String, String)], mode: &str, object: &str) -> bool {
    locks.iter().any(|(m, o)| m == mode && o == object)
}

fn rewritten(doc: &Value, i: usize) -> Vec<String> {
    doc["statements"][i]["rewritten"]
        .as_array()
        .expect("rewritten")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_migration_gives_the_known_locks_and_rewrites() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster");
    let c = scratch_db(&pg, "scratch", true).await;
    let before = catalog_dump(&c).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("001.sql"),
        "ALTER TABLE t ADD COLUMN c int;\n\
         CREATE INDEX t_x ON t (x);\n\
         ALTER TABLE t ALTER COLUMN x TYPE bigint;\n\
         ALTER TABLE t ADD CONSTRAINT t_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id);\n\
         CREATE INDEX CONCURRENTLY t_c ON t (c);\n\
         CREATE TABLE n (id int);\n\
         SELECT pg_advisory_xact_lock(42);\n",
    )
    .expect("write");
    let url = db_url(&pg, "scratch");
    let out = ddlgate(
        &["trace", "--database", &url, "--format", "json", "001.sql"],
        dir.path(),
    );
    let doc = json(&out);
    let s = &doc["statements"];
    assert_eq!(s.as_array().map(Vec::len), Some(7), "{}", text(&out));

    // ADD COLUMN (nullable, no default): ACCESS EXCLUSIVE on t, nothing rewritten.
    let l0 = locks(&doc, 0);
    assert!(has(&l0, "AccessExclusiveLock", "public.t"), "{l0:?}");
    assert!(rewritten(&doc, 0).is_empty(), "{}", s[0]);
    assert_eq!(s[0]["status"], "traced");
    assert!(s[0]["duration_ms"].as_f64().is_some());
    let ae = s[0]["new_locks"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["object"] == "public.t"))
        .expect("lock on t");
    assert_eq!(
        (&ae["blocks_reads"], &ae["blocks_writes"]),
        (&true.into(), &true.into())
    );

    // CREATE INDEX: SHARE on t (blocks writes, not reads); ddlgate rewrites it CONCURRENTLY.
    let l2 = locks(&doc, 1);
    assert!(has(&l2, "ShareLock", "public.t"), "{l2:?}");
    let share = s[1]["new_locks"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["mode"] == "ShareLock"))
        .expect("share lock");
    assert_eq!(share["blocks_writes"], true);
    assert_eq!(share["blocks_reads"], false);
    assert_eq!(s[1]["decision"]["action"], "rewrite", "{}", s[1]);
    let rw = s[1]["decision"]["rewritten_sql"].as_str().expect("rewrite");
    assert!(rw.contains("CONCURRENTLY"), "{rw}");
    assert_eq!(s[1]["created"][0]["name"], "public.t_x");

    // int → bigint: t and both its indexes get new storage. Its ACCESS EXCLUSIVE lock on t
    // is held since statement 1, the SHARE lock its index rebuilds take since statement 2:
    // neither is new.
    let r2 = rewritten(&doc, 2);
    for rel in ["public.t", "public.t_pkey", "public.t_x"] {
        assert!(r2.contains(&rel.to_owned()), "{rel}: {r2:?}");
    }
    let l2 = locks(&doc, 2);
    assert!(!has(&l2, "AccessExclusiveLock", "public.t"), "{l2:?}");
    assert_eq!(s[2]["decision"]["action"], "block", "{}", s[2]);

    // A foreign key: SHARE ROW EXCLUSIVE on both tables.
    let l3 = locks(&doc, 3);
    assert!(has(&l3, "ShareRowExclusiveLock", "public.t"), "{l3:?}");
    assert!(has(&l3, "ShareRowExclusiveLock", "public.parent"), "{l3:?}");

    // CREATE INDEX CONCURRENTLY cannot run in the transaction: reported, not run.
    assert_eq!(s[4]["status"], "not_traced", "{}", s[4]);
    assert!(
        s[4]["documented_lock"]
            .as_str()
            .is_some_and(|l| l.contains("ShareUpdateExclusiveLock")),
        "{}",
        s[4]
    );
    assert!(locks(&doc, 4).is_empty());

    // Other lock types are listed too.
    let l6 = locks(&doc, 6);
    assert!(
        l6.iter()
            .any(|(m, o)| m == "ExclusiveLock" && o.contains("42")),
        "{l6:?}"
    );
    assert_eq!(s[6]["new_locks"][0]["locktype"], "advisory");

    // The cumulative set holds them all.
    let end: Vec<(String, String)> = doc["locks_at_end"]
        .as_array()
        .expect("locks_at_end")
        .iter()
        .map(|l| {
            (
                l["mode"].as_str().unwrap().to_owned(),
                l["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (mode, object) in [
        ("AccessExclusiveLock", "public.t"),
        ("ShareLock", "public.t"),
        ("ShareRowExclusiveLock", "public.parent"),
    ] {
        assert!(has(&end, mode, object), "{mode} {object}: {end:?}");
    }
    // The ALTER COLUMN TYPE is blocked by ddlgate: exit 1, though every statement ran.
    assert_eq!(doc["failed"], false);
    assert_eq!(doc["blocked"], true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Nothing persisted.
    assert_eq!(catalog_dump(&c).await, before);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname IN ('n', 't_x', 't_c')",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);

    // The same trace as a table and as markdown.
    let table = ddlgate(&["trace", "--database", &url, "001.sql"], dir.path());
    let t = String::from_utf8_lossy(&table.stdout).into_owned();
    assert_eq!(table.status.code(), Some(1), "{}", text(&table));
    assert!(
        t.contains("AccessExclusiveLock on table public.t [blocks reads+writes]"),
        "{t}"
    );
    assert!(
        t.contains("ShareLock on table public.t [blocks writes]"),
        "{t}"
    );
    assert!(t.contains("NOT TRACED"), "{t}");
    assert!(
        t.contains("rewrite (require-concurrent-index-creation)"),
        "{t}"
    );
    let md = ddlgate(
        &[
            "trace",
            "--database",
            &url,
            "--format",
            "markdown",
            "001.sql",
        ],
        dir.path(),
    );
    let m = String::from_utf8_lossy(&md.stdout).into_owned();
    assert!(m.contains("| # | statement | status |"), "{m}");
    let rows = m
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
        .count();
    assert_eq!(rows, 7, "{m}");
    assert!(
        m.contains("ShareRowExclusiveLock on table public.parent [blocks writes]"),
        "{m}"
    );
    assert_eq!(catalog_dump(&c).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_databases_are_refused_and_failures_stop_the_trace() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster");
    let c = scratch_db(&pg, "plain", false).await;
    let before = catalog_dump(&c).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ok.sql"),
        "BEGIN;\nALTER TABLE t ADD COLUMN c int;\nCOMMIT;\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("bad.sql"),
        "CLUSTER;\nALTER TABLE t ADD COLUMN d int;\nALTER TABLE missing ADD COLUMN e int;\nDROP TABLE t;\n",
    )
    .expect("write");
    let url = db_url(&pg, "plain");

    let refused = ddlgate(&["trace", "--database", &url, "ok.sql"], dir.path());
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("COMMENT ON DATABASE plain IS 'ddlgate:scratch'")
            && err.contains("--allow-non-scratch"),
        "{err}"
    );

    let allowed = ddlgate(
        &[
            "trace",
            "--database",
            &url,
            "--allow-non-scratch",
            "--format",
            "json",
            "ok.sql",
        ],
        dir.path(),
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
    let doc = json(&allowed);
    assert_eq!(doc["scratch"], false);
    // BEGIN and COMMIT of the file are not run: the trace's transaction is never ended.
    assert_eq!(doc["statements"][0]["status"], "skipped");
    assert_eq!(doc["statements"][2]["status"], "skipped");
    assert!(has(&locks(&doc, 1), "AccessExclusiveLock", "public.t"));
    assert_eq!(
        catalog_dump(&c).await,
        before,
        "COMMIT in the file must not commit"
    );

    // A statement the server rejects: its error, the trace stops, exit 1.
    let failed = ddlgate(
        &[
            "trace",
            "--database",
            &url,
            "--allow-non-scratch",
            "--format",
            "json",
            "bad.sql",
        ],
        dir.path(),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let doc = json(&failed);
    assert_eq!(doc["failed"], true);
    let s = doc["statements"].as_array().expect("statements");
    assert_eq!(s.len(), 3, "stops at the failure: {doc}");
    // CLUSTER without a table is not on the list of statements refused in a transaction: the
    // server's SQLSTATE 25001 says so, and the trace goes on.
    assert_eq!(s[0]["status"], "not_traced", "{}", s[0]);
    assert!(
        s[0]["documented_lock"]
            .as_str()
            .is_some_and(|l| l.contains("ACCESS EXCLUSIVE")),
        "{}",
        s[0]
    );
    assert_eq!(s[1]["status"], "traced");
    assert_eq!(s[2]["status"], "failed");
    assert_eq!(s[2]["error"]["sqlstate"], "42P01");
    assert!(
        s[2]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing"))
    );
    assert_eq!(catalog_dump(&c).await, before);

    // The decision takes the migration tool's transaction, with facts from the database: in
    // psql -1's transaction the index on the 20,000-row table created there is fine (the
    // server confirms it is new), the one on the 20,000-row t cannot be built CONCURRENTLY
    // (blocked); run statement by statement (psql -f) both builds are rewritten (n was
    // committed by then).
    std::fs::write(
        dir.path().join("ctx.sql"),
        "CREATE TABLE n AS SELECT g AS id FROM generate_series(1, 20000) g;\n\
         CREATE INDEX n_id ON n (id);\nCREATE INDEX t_x ON t (x);\n",
    )
    .expect("write");
    let action = |tool: &str| {
        let o = ddlgate(
            &[
                "trace",
                "--database",
                &url,
                "--allow-non-scratch",
                "--format",
                "json",
                "--tool",
                tool,
                "ctx.sql",
            ],
            dir.path(),
        );
        let doc = json(&o);
        let actions: Vec<String> = (0..3)
            .map(|i| {
                doc["statements"][i]["decision"]["action"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        (o.status.code(), actions)
    };
    assert_eq!(
        action("psql-1"),
        (
            Some(1),
            vec!["allow".to_owned(), "allow".to_owned(), "block".to_owned()]
        )
    );
    assert_eq!(
        action("psql"),
        (
            Some(0),
            vec![
                "allow".to_owned(),
                "rewrite".to_owned(),
                "rewrite".to_owned()
            ]
        )
    );
    assert_eq!(catalog_dump(&c).await, before);

    // golang-migrate sends the file as one Query: decided whole, as the proxy decides that
    // message (CREATE INDEX CONCURRENTLY cannot run in it), as `ddlgate check` says too.
    std::fs::write(
        dir.path().join("gm.sql"),
        "ALTER TABLE t ADD COLUMN z int;\nCREATE INDEX CONCURRENTLY t_z ON t (z);\n",
    )
    .expect("write");
    let gm = ddlgate(
        &[
            "trace",
            "--database",
            &url,
            "--allow-non-scratch",
            "--format",
            "json",
            "--tool",
            "golang-migrate",
            "gm.sql",
        ],
        dir.path(),
    );
    assert_eq!(gm.status.code(), Some(1), "{}", text(&gm));
    let doc = json(&gm);
    assert_eq!(doc["statements"][0]["decision"]["action"], "allow");
    assert_eq!(doc["statements"][1]["status"], "not_traced");
    assert_eq!(doc["statements"][1]["decision"]["action"], "block");
    assert_eq!(
        doc["statements"][1]["decision"]["findings"][0]["rule"],
        "ban-concurrent-index-creation-in-transaction"
    );
    let check = ddlgate(&["check", "--tool", "golang-migrate", "gm.sql"], dir.path());
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));

    // Usage and connection errors: 2.
    let nowhere = ddlgate(
        &[
            "trace",
            "--database",
            "host=127.0.0.1 port=1 user=x dbname=x",
            "ok.sql",
        ],
        dir.path(),
    );
    assert_eq!(nowhere.status.code(), Some(2), "{}", text(&nowhere));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot connect"));
}
