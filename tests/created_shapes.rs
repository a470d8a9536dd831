//! Common migration shapes count as "created in this transaction" (issue 10, item 3): tables
//! and materialized views made by `CREATE MATERIALIZED VIEW` and `CREATE TABLE … AS`, a new
//! table renamed into place, the same new table named qualified and unqualified, and a
//! foreign key from a new table to an existing one. Each runs through the proxy as one Query
//! (as migration runners send a file) and as separate Queries (as `psql -1 -f` sends it), with
//! every warn-by-default rule blocking and the small-table allowance off, so only the
//! created-in-transaction exemption can let it through: nothing may be blocked, and nothing
//! may wait in the lock guard. The exemption still rests on OIDs the server confirms (the
//! attacks are in tests/security_created.rs).

mod common;

use std::time::Duration;

use common::*;
use ddlgate::config::Config;
use ddlgate::rules::{Action, RULES};

/// Every warn-by-default rule blocks (except `ban-drop-table`, which the rename shape uses on
/// the old table), no small-table allowance, and a guard that gives up after one 200 ms try.
fn strict(c: &mut Config) {
    for r in RULES
        .iter()
        .filter(|r| r.default_action == Action::Warn && r.id != "ban-drop-table")
    {
        c.policy.rules.insert(r.id.to_owned(), Action::Block);
    }
    c.catalog.small_table_rows = 0;
    c.guard.lock_timeout_ms = Duration::from_millis(200);
    c.guard.max_attempts = 1;
}

/// `public.acc (id int PRIMARY KEY)` with three rows, owned by `trust_user`, and the
/// superuser's direct client.
async fn setup(env: &Env) -> tokio_postgres::Client {
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE TABLE acc (id int PRIMARY KEY);
             INSERT INTO acc SELECT g FROM generate_series(1, 3) g;
             ALTER TABLE acc OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    admin
}

/// Runs `statements` (without BEGIN/COMMIT) in one transaction, each through the extended
/// protocol (Parse/Bind/Execute), as an ORM or a driver-based migration tool sends them.
async fn run_extended(p: &tokio_postgres::Client, statements: &[String]) {
    let mut all = vec!["BEGIN".to_owned()];
    all.extend(statements.iter().cloned());
    all.push("COMMIT".to_owned());
    for s in &all {
        if let Err(e) = p.execute(s.as_str(), &[]).await {
            let _ = p.batch_execute("ROLLBACK").await;
            panic!("{s}: {}", describe(&e));
        }
    }
}

/// Runs `statements` (without BEGIN/COMMIT) in one transaction: as one Query when `one`, else
/// as one Query per statement.
async fn run(p: &tokio_postgres::Client, statements: &[String], one: bool) {
    let mut all = vec!["BEGIN".to_owned()];
    all.extend(statements.iter().cloned());
    all.push("COMMIT".to_owned());
    if one {
        let sql = all.join(";\n");
        p.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    } else {
        for s in &all {
            if let Err(e) = p.batch_execute(s).await {
                let _ = p.batch_execute("ROLLBACK").await;
                panic!("{s}: {}", describe(&e));
            }
        }
    }
}

/// The server's (or ddlgate's) error code and message.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Nothing was blocked and the guard neither ran (when `guarded` is 0) nor waited.
fn assert_no_block_no_wait(env: &Env, guarded: u64) {
    let shared = env.proxy.shared();
    let counters = &shared.counters;
    for r in RULES {
        assert_eq!(
            counters.decisions.rule_action(r.id, Action::Block),
            0,
            "{} blocked",
            r.id
        );
    }
    assert_eq!(
        shared.metrics.value("ddlgate_guard_runs_total", &[]),
        guarded as f64,
        "guard runs"
    );
    assert_eq!(
        shared.metrics.value("ddlgate_lock_retries_total", &[]),
        0 as f64,
        "guard retries"
    );
    assert_eq!(
        shared
            .metrics
            .value("ddlgate_lock_budget_exhausted_total", &[]),
        0 as f64,
        "guard gave up"
    );
    assert_eq!(
        shared.metrics.value("ddlgate_ddl_queue_waits_total", &[]),
        0 as f64,
        "guard queue"
    );
}

/// The session and a fresh one still work through the proxy.
async fn assert_healthy(env: &Env, p: &tokio_postgres::Client) {
    p.simple_query("SELECT 1").await.expect("session usable");
    let other = env.proxy_client("trust_user").await;
    other.simple_query("SELECT 1").await.expect("proxy healthy");
}

async fn count(admin: &tokio_postgres::Client, sql: &str) -> i64 {
    admin
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_views_and_tables_made_by_create_table_as_are_new() {
    let env = Env::start_with(strict).await;
    let admin = setup(&env).await;
    let p = env.proxy_client("trust_user").await;
    let statements = |n: &str| {
        vec![
            format!(
                "CREATE TABLE {n}_c AS SELECT g AS id, g % 7 AS x FROM generate_series(1, 50) g"
            ),
            format!("CREATE INDEX {n}_c_x ON {n}_c (x)"),
            format!("ALTER TABLE {n}_c ADD PRIMARY KEY (id)"),
            format!("ALTER TABLE {n}_c ALTER COLUMN x SET NOT NULL"),
            format!(
                "CREATE MATERIALIZED VIEW {n}_mv AS SELECT x, count(*) AS n FROM {n}_c GROUP BY x"
            ),
            format!("CREATE UNIQUE INDEX {n}_mv_x ON {n}_mv (x)"),
            format!("REFRESH MATERIALIZED VIEW {n}_mv"),
        ]
    };
    run(&p, &statements("one"), true).await;
    run(&p, &statements("sep"), false).await;
    run_extended(&p, &statements("ext")).await;
    for n in ["one", "sep", "ext"] {
        assert_eq!(
            count(
                &admin,
                &format!("SELECT count(*) FROM pg_indexes WHERE indexname IN ('{n}_c_x', '{n}_mv_x', '{n}_c_pkey')")
            )
            .await,
            3,
            "{n}: indexes built"
        );
        assert_eq!(
            count(&admin, &format!("SELECT count(*) FROM {n}_mv")).await,
            7
        );
    }
    assert_no_block_no_wait(&env, 0);
    assert_healthy(&env, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_renamed_into_place_stays_new() {
    let env = Env::start_with(strict).await;
    let admin = setup(&env).await;
    let p = env.proxy_client("trust_user").await;
    // Create the new table, fill it, put it in place of the old one, then finish it: the
    // statements after the rename name the new table by the old one's name.
    let statements = |old: &str| {
        vec![
            "CREATE TABLE acc_new (id int, x int)".to_owned(),
            "INSERT INTO acc_new SELECT id, id * 2 FROM acc".to_owned(),
            old.to_owned(),
            "ALTER TABLE acc_new RENAME TO acc".to_owned(),
            "CREATE INDEX acc_x ON acc (x)".to_owned(),
            "ALTER TABLE acc ALTER COLUMN x SET NOT NULL".to_owned(),
            "ALTER TABLE acc ADD PRIMARY KEY (id)".to_owned(),
        ]
    };
    // Separate Queries, the old table dropped (a guarded DROP: one guard run).
    run(&p, &statements("DROP TABLE acc"), false).await;
    assert_no_block_no_wait(&env, 1);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'acc' AND indexname IN ('acc_x', 'acc_pkey')"
        )
        .await,
        2
    );
    assert_eq!(count(&admin, "SELECT sum(x) FROM acc").await, 12);
    // One Query: the whole message runs under the guard because of the DROP; the DROP voids
    // only what resolved to the dropped table, and the rename carries the new table's
    // exemption to its new name for the rest of the message.
    admin
        .batch_execute(
            "DROP TABLE acc; CREATE TABLE acc (id int PRIMARY KEY);
             INSERT INTO acc VALUES (1), (2), (3); ALTER TABLE acc OWNER TO trust_user",
        )
        .await
        .expect("reset");
    run(&p, &statements("DROP TABLE acc"), true).await;
    assert_no_block_no_wait(&env, 2);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'acc' AND indexname IN ('acc_x', 'acc_pkey')"
        )
        .await,
        2
    );
    // The new table created in one Query, put in place in the next (the DROP in the same
    // Query as the rename).
    admin
        .batch_execute(
            "DROP TABLE acc; CREATE TABLE acc (id int PRIMARY KEY);
             INSERT INTO acc VALUES (1), (2), (3); ALTER TABLE acc OWNER TO trust_user",
        )
        .await
        .expect("reset");
    let all = statements("DROP TABLE acc");
    p.batch_execute(&format!("BEGIN; {}; {}", all[0], all[1]))
        .await
        .expect("create and fill");
    p.batch_execute(&format!("{}; COMMIT", all[2..].join("; ")))
        .await
        .unwrap_or_else(|e| panic!("put in place: {}", describe(&e)));
    assert_no_block_no_wait(&env, 3);
    assert_eq!(count(&admin, "SELECT sum(x) FROM acc").await, 12);
    assert_healthy(&env, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_named_qualified_and_unqualified_is_the_same_new_table() {
    let env = Env::start_with(strict).await;
    let admin = setup(&env).await;
    let p = env.proxy_client("trust_user").await;
    let statements = |n: &str| {
        vec![
            format!("CREATE TABLE public.{n} (id int, x int)"),
            format!("CREATE INDEX {n}_x ON {n} (x)"),
            format!("ALTER TABLE public.{n} ALTER COLUMN x SET NOT NULL"),
            format!("CREATE TABLE {n}_b (id int)"),
            format!("CREATE INDEX {n}_b_id ON public.{n}_b (id)"),
            format!("ALTER TABLE public.{n}_b ADD CONSTRAINT {n}_b_uq UNIQUE (id)"),
        ]
    };
    run(&p, &statements("one"), true).await;
    run(&p, &statements("sep"), false).await;
    run_extended(&p, &statements("ext")).await;
    for n in ["one", "sep", "ext"] {
        assert_eq!(
            count(
                &admin,
                &format!(
                    "SELECT count(*) FROM pg_indexes WHERE indexname IN ('{n}_x', '{n}_b_id')"
                )
            )
            .await,
            2,
            "{n}"
        );
    }
    assert_no_block_no_wait(&env, 0);
    assert_healthy(&env, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_from_a_new_table_to_an_existing_one_is_allowed_while_the_new_table_is_small()
{
    let env = Env::start_with(|c| {
        strict(c);
        // Small ends at 256 kB: the big fill below is well past it.
        c.catalog.small_table_bytes = 256 << 10;
    })
    .await;
    let admin = setup(&env).await;
    let p = env.proxy_client("trust_user").await;
    // Filled before the foreign key: sized by the read before the ALTER's own Query. In one
    // Query a write before the ALTER makes the size unknown, so there the table is linked
    // first (created empty in the same Query, nothing written since) and filled after.
    let statements = |n: &str, fill_first: bool| {
        let fill = format!("INSERT INTO {n} VALUES (1, 1), (2, 2)");
        let fk = format!(
            "ALTER TABLE {n} ADD CONSTRAINT {n}_acc_fkey FOREIGN KEY (acc_id) REFERENCES acc (id)"
        );
        let create = format!("CREATE TABLE {n} (id int PRIMARY KEY, acc_id int)");
        if fill_first {
            vec![create, fill, fk]
        } else {
            vec![create, fk, fill]
        }
    };
    // Like CREATE TABLE … REFERENCES, the lock on the existing table runs under the guard
    // (one guarded message per run), which gets it at once.
    run(&p, &statements("one", false), true).await;
    run(&p, &statements("sep", true), false).await;
    run(&p, &statements("sep2", false), false).await;
    for n in ["one", "sep", "sep2"] {
        assert_eq!(
            count(
                &admin,
                &format!("SELECT count(*) FROM pg_constraint WHERE conname = '{n}_acc_fkey' AND convalidated")
            )
            .await,
            1,
            "{n}"
        );
    }
    let guarded = env
        .proxy
        .shared()
        .metrics
        .value("ddlgate_guard_runs_total", &[]) as u64;
    assert_no_block_no_wait(&env, guarded);
    assert!(guarded <= 3, "one guarded message per run: {guarded}");

    // Filled past the threshold in the same transaction: the validation scan is long, so the
    // rule applies — in a later Query (the size read says so) and in the same Query (a write
    // before it makes the size unknown).
    let big = |n: &str| {
        vec![
            format!("CREATE TABLE {n} (id int PRIMARY KEY, acc_id int)"),
            format!("INSERT INTO {n} SELECT g, 1 + g % 3 FROM generate_series(1, 20000) g"),
            format!(
                "ALTER TABLE {n} ADD CONSTRAINT {n}_acc_fkey FOREIGN KEY (acc_id) REFERENCES acc (id)"
            ),
        ]
    };
    let sql = format!("BEGIN; {}; COMMIT", big("big_one").join("; "));
    let err = p.batch_execute(&sql).await.expect_err("big, one Query");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    assert!(
        format!("{err:?}").contains("adding-foreign-key-constraint"),
        "{err:?}"
    );
    p.batch_execute("ROLLBACK").await.expect("rollback");
    p.batch_execute("BEGIN").await.expect("begin");
    for s in &big("big_sep")[..2] {
        p.batch_execute(s).await.expect(s);
    }
    let err = p
        .batch_execute(&big("big_sep")[2])
        .await
        .expect_err("big, separate");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err}");
    p.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'big%'"
        )
        .await,
        0,
        "nothing of the refused transactions remains"
    );
    assert_eq!(count(&admin, "SELECT count(*) FROM acc").await, 3);
    assert_healthy(&env, &p).await;
}

/// Following a rename or a DROP never makes the existing table new: each attempt is refused,
/// the table gets no index, and the proxy stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_and_drops_never_make_an_existing_table_new() {
    let env = Env::start_with(strict).await;
    let admin = setup(&env).await;
    admin
        .batch_execute("CREATE SCHEMA scratch AUTHORIZATION trust_user")
        .await
        .expect("schema");
    let p = env.proxy_client("trust_user").await;
    let refused = |sql: String| {
        let p = &p;
        async move {
            let err = p.batch_execute(&sql).await.expect_err(&sql);
            assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{sql}: {err}");
            let _ = p.batch_execute("ROLLBACK").await;
        }
    };
    let attack = "CREATE INDEX acc_attack ON acc (id)";
    // A new table renamed to the existing one's name in a schema off the search path.
    refused(format!(
        "BEGIN; CREATE TABLE scratch.n (id int); ALTER TABLE scratch.n RENAME TO acc; {attack}"
    ))
    .await;
    // The same across Queries.
    p.batch_execute("BEGIN; CREATE TABLE scratch.n (id int)")
        .await
        .expect("create");
    refused(format!("ALTER TABLE scratch.n RENAME TO acc; {attack}")).await;
    // A new table renamed away: the existing table is not what was renamed.
    refused(format!(
        "BEGIN; CREATE TABLE n (id int); DROP TABLE IF EXISTS nothing; ALTER TABLE n RENAME TO n2; {attack}"
    ))
    .await;
    // A new table shadowing the existing one, dropped: the name now finds the existing one.
    p.batch_execute("SET search_path = scratch, public")
        .await
        .expect("path");
    p.batch_execute("BEGIN; CREATE TABLE acc (id int)")
        .await
        .expect("shadow");
    refused(format!("DROP TABLE acc; {attack}")).await;
    // The shadow a partition of a new table, dropped with its parent (not named).
    p.batch_execute(
        "BEGIN; CREATE TABLE scratch.par (id int) PARTITION BY RANGE (id);
         CREATE TABLE scratch.acc PARTITION OF scratch.par FOR VALUES FROM (0) TO (10)",
    )
    .await
    .expect("partitioned shadow");
    refused(format!("DROP TABLE scratch.par; {attack}")).await;
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'acc_attack'"
        )
        .await,
        0,
        "the existing table got no index"
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'scratch'"
        )
        .await,
        0
    );
    assert_eq!(count(&admin, "SELECT count(*) FROM public.acc").await, 3);
    assert_healthy(&env, &p).await;
}
