//! The small-table allowance against a real PostgreSQL (issue 10, items 1 and 2).
//!
//! Tables made by an earlier migration are never analyzed (`reltuples = -1`); ddlgate decides
//! their size on the exact heap bound (pages × tuples per page) and `pg_total_relation_size`.
//! Every rule whose danger is a lock held through a scan or rewrite lets the statement through
//! as written on such a small table, inside a transaction block too — and the same statements
//! on a table populated above the thresholds are still refused (or warned about) as before.
//! A size that could not be measured because another session holds ACCESS EXCLUSIVE is never
//! small.

mod common;

use std::time::Duration;

use common::*;
use tokio_postgres::Client;

/// One statement under test.
struct Case {
    name: &'static str,
    /// Extra objects the statement needs, made straight on the server after `e` and `r`.
    setup: &'static str,
    /// Sent through ddlgate as one simple Query.
    sql: &'static str,
    /// A query returning one boolean: the statement's effect, exactly as written, is there.
    effect: &'static str,
    /// What ddlgate does with the statement on a table above the thresholds.
    big: Big,
}

/// ddlgate's answer on a big table, as before the allowance.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Big {
    /// Refused with DG001; the table is unchanged.
    Refused,
    /// Run in its safe form (outside a transaction block), with ddlgate's rewrite notice.
    Rewritten,
    /// The rule's default action is warn: run as written, with ddlgate's warning.
    Warned,
}

const CASES: &[Case] = &[
    Case {
        name: "create index (the issue's example)",
        setup: "",
        sql: "BEGIN; CREATE INDEX ON e (x); COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = 'e'::regclass AND indisvalid)",
        big: Big::Refused,
    },
    Case {
        name: "create index outside a transaction runs as written",
        setup: "",
        sql: "CREATE INDEX e_x_idx ON e (x)",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('e_x_idx'))",
        big: Big::Rewritten,
    },
    Case {
        name: "drop index",
        setup: "CREATE INDEX e_x_idx ON e (x)",
        sql: "BEGIN; DROP INDEX e_x_idx; COMMIT;",
        effect: "SELECT to_regclass('e_x_idx') IS NULL",
        big: Big::Refused,
    },
    Case {
        name: "reindex table",
        setup: "CREATE INDEX e_x_idx ON e (x); CREATE TABLE seen AS SELECT relfilenode FROM pg_class WHERE relname = 'e_x_idx'",
        sql: "BEGIN; REINDEX TABLE e; COMMIT;",
        effect: "SELECT relfilenode <> (SELECT relfilenode FROM seen) FROM pg_class WHERE relname = 'e_x_idx'",
        big: Big::Refused,
    },
    Case {
        name: "foreign key, validated",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD CONSTRAINT e_fk FOREIGN KEY (x) REFERENCES r (id); COMMIT;",
        effect: "SELECT coalesce((SELECT convalidated FROM pg_constraint WHERE conname = 'e_fk'), false)",
        big: Big::Refused,
    },
    Case {
        name: "check, validated",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD CONSTRAINT e_chk CHECK (x > 0); COMMIT;",
        effect: "SELECT coalesce((SELECT convalidated FROM pg_constraint WHERE conname = 'e_chk'), false)",
        big: Big::Refused,
    },
    Case {
        name: "set not null",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ALTER COLUMN x SET NOT NULL; COMMIT;",
        effect: "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'e'::regclass AND attname = 'x'",
        big: Big::Refused,
    },
    Case {
        name: "unique constraint",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD CONSTRAINT e_uq UNIQUE (x); COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'e_uq')",
        big: Big::Refused,
    },
    Case {
        name: "primary key",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD PRIMARY KEY (id); COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'e'::regclass AND contype = 'p')",
        big: Big::Refused,
    },
    Case {
        name: "exclusion constraint",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD CONSTRAINT e_ex EXCLUDE USING btree (x WITH =); COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'e_ex')",
        big: Big::Refused,
    },
    Case {
        name: "type change that rewrites",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ALTER COLUMN x TYPE bigint; COMMIT;",
        effect: "SELECT atttypid = 'int8'::regtype FROM pg_attribute WHERE attrelid = 'e'::regclass AND attname = 'x'",
        big: Big::Refused,
    },
    Case {
        name: "volatile default",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD COLUMN u float8 DEFAULT random(); COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'e'::regclass AND attname = 'u')",
        big: Big::Refused,
    },
    Case {
        name: "serial column",
        setup: "",
        sql: "BEGIN; ALTER TABLE e ADD COLUMN s bigserial; COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'e'::regclass AND attname = 's')",
        big: Big::Refused,
    },
    Case {
        name: "vacuum full",
        setup: "CREATE TABLE seen AS SELECT relfilenode FROM pg_class WHERE relname = 'e'",
        sql: "VACUUM FULL e",
        effect: "SELECT relfilenode <> (SELECT relfilenode FROM seen) FROM pg_class WHERE relname = 'e'",
        big: Big::Refused,
    },
    Case {
        name: "cluster",
        setup: "CREATE INDEX e_x_idx ON e (x); CREATE TABLE seen AS SELECT relfilenode FROM pg_class WHERE relname = 'e'",
        sql: "BEGIN; CLUSTER e USING e_x_idx; COMMIT;",
        effect: "SELECT relfilenode <> (SELECT relfilenode FROM seen) FROM pg_class WHERE relname = 'e'",
        big: Big::Refused,
    },
    Case {
        name: "attach partition",
        setup: "CREATE TABLE p (id int, x int) PARTITION BY RANGE (x); ALTER TABLE p OWNER TO trust_user",
        sql: "BEGIN; ALTER TABLE p ATTACH PARTITION e FOR VALUES FROM (MINVALUE) TO (MAXVALUE); COMMIT;",
        effect: "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = 'e'::regclass)",
        big: Big::Warned,
    },
];

/// Fresh `e (id, x)` and `r (id primary key)` with `rows` rows each, never analyzed, owned by
/// the client's user, then the case's own objects. Autovacuum is off for both so the test
/// decides on the sizes it made, not on a background ANALYZE.
async fn set_up(admin: &Client, case: &Case, rows: u32) {
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS e, r, p, seen CASCADE;
             CREATE TABLE r (id int PRIMARY KEY) WITH (autovacuum_enabled = off);
             CREATE TABLE e (id int, x int) WITH (autovacuum_enabled = off);
             INSERT INTO r SELECT g FROM generate_series(1, {rows}) g;
             INSERT INTO e SELECT g, g FROM generate_series(1, {rows}) g;
             ALTER TABLE r OWNER TO trust_user; ALTER TABLE e OWNER TO trust_user;
             {setup}",
            setup = case.setup
        ))
        .await
        .unwrap_or_else(|e| panic!("{}: setup: {e}", case.name));
    if case.setup.contains("INDEX") {
        // CREATE INDEX stores the row count it saw in reltuples, like ANALYZE.
        return;
    }
    let never_analyzed: bool = admin
        .query_one(
            "SELECT reltuples < 0 OR relpages = 0 FROM pg_class WHERE oid = 'e'::regclass",
            &[],
        )
        .await
        .expect("reltuples")
        .get(0);
    assert!(never_analyzed, "{}: e must be never analyzed", case.name);
}

async fn effect(admin: &Client, case: &Case) -> bool {
    admin
        .query_one(case.effect, &[])
        .await
        .unwrap_or_else(|e| panic!("{}: effect query: {e}", case.name))
        .get(0)
}

/// Another session through the proxy still works.
async fn proxy_healthy(env: &Env) {
    let other = env.proxy_client("trust_user").await;
    let one: i32 = other
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn fresh_small_tables_run_every_size_rule_as_written() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    for case in CASES {
        set_up(&admin, case, 0).await;
        assert!(!effect(&admin, case).await, "{}: effect before", case.name);
        let (client, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
        client
            .batch_execute(case.sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {} must pass: {e:?}", case.name, case.sql));
        assert!(effect(&admin, case).await, "{}: ran as written", case.name);
        drop(client);
        let mut said = Vec::new();
        while let Ok(n) = notices.try_recv() {
            said.push(notice_line(&n));
        }
        assert!(
            said.iter().all(|n| !n.contains("ddlgate")),
            "{}: no ddlgate notice expected: {said:?}",
            case.name
        );
    }
    // A few rows, still never analyzed: the heap bound proves it small.
    set_up(&admin, &CASES[0], 300).await;
    let client = env.proxy_client("trust_user").await;
    client
        .batch_execute(CASES[0].sql)
        .await
        .expect("300 never-analyzed rows are small");
    assert!(effect(&admin, &CASES[0]).await);
    proxy_healthy(&env).await;
}

/// Small thresholds (100 rows) so that 2000 rows are "big" without a slow fill.
fn small_thresholds(c: &mut ddlgate::config::Config) {
    c.catalog.small_table_rows = 100;
    c.catalog.small_table_bytes = 10 << 20;
}

#[tokio::test]
async fn tables_above_the_thresholds_are_still_refused() {
    let env = Env::start_with(small_thresholds).await;
    let admin = env.direct_client("ddlgate_admin").await;
    for case in CASES {
        set_up(&admin, case, 2000).await;
        let (client, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
        let got = client.batch_execute(case.sql).await;
        if case.big != Big::Refused {
            got.unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
            let n = tokio::time::timeout(Duration::from_secs(5), notices.recv())
                .await
                .expect("a notice in time")
                .expect("a notice");
            let expected = match case.big {
                Big::Rewritten => "ddlgate rewrote this statement",
                _ => "ATTACH PARTITION",
            };
            assert!(
                notice_line(&n).contains(expected),
                "{}: {}",
                case.name,
                notice_line(&n)
            );
            continue;
        }
        let err = got.expect_err(case.sql);
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("DG001"),
            "{}: {err:?}",
            case.name
        );
        assert!(
            !effect(&admin, case).await,
            "{}: the table must be unchanged",
            case.name
        );
        drop(client);
        proxy_healthy(&env).await;
    }
}

#[tokio::test]
async fn a_size_a_lock_kept_from_being_measured_is_not_small() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    set_up(&admin, &CASES[0], 0).await;
    // Another session holds ACCESS EXCLUSIVE on r, the referenced table: r's size cannot be
    // measured without queueing behind it, so it is unknown and the FK is not "small".
    let mut locker = env.direct_client("ddlgate_admin").await;
    let tx = locker.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE r IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let client = env.proxy_client("trust_user").await;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        client.batch_execute(
            "BEGIN; ALTER TABLE e ADD CONSTRAINT e_fk FOREIGN KEY (x) REFERENCES r (id); COMMIT;",
        ),
    )
    .await
    .expect("decided without waiting for the lock")
    .expect_err("unmeasured size is not small");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    tx.rollback().await.expect("rollback");
    let fk: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'e_fk')",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(!fk, "no foreign key was added");
    proxy_healthy(&env).await;
}

/// `DROP INDEX a, b` in a transaction (issue 10: a Lemmy migration drops several indexes in one
/// statement): every index's table is resolved by the server and sized, and the statement runs
/// as written only when all of them are small or were created in this transaction.
#[tokio::test]
async fn dropping_several_indexes_is_decided_on_every_table() {
    let env = Env::start_with(small_thresholds).await;
    let admin = env.direct_client("ddlgate_admin").await;
    let indexes = "CREATE INDEX e_x_idx ON e (x); CREATE INDEX r_x_idx ON r (id)";
    let gone = "SELECT to_regclass('e_x_idx') IS NULL AND to_regclass('r_x_idx') IS NULL";
    let both = "SELECT to_regclass('e_x_idx') IS NOT NULL AND to_regclass('r_x_idx') IS NOT NULL";
    let fresh = |rows_e: u32, rows_r: u32| {
        format!(
            "DROP TABLE IF EXISTS e, r, n CASCADE;
             CREATE TABLE r (id int) WITH (autovacuum_enabled = off);
             CREATE TABLE e (id int, x int) WITH (autovacuum_enabled = off);
             INSERT INTO r SELECT g FROM generate_series(1, {rows_r}) g;
             INSERT INTO e SELECT g, g FROM generate_series(1, {rows_e}) g;
             ALTER TABLE r OWNER TO trust_user; ALTER TABLE e OWNER TO trust_user;
             {indexes}"
        )
    };
    // Both tables small (never analyzed; the heap bound decides): runs as written.
    admin.batch_execute(&fresh(0, 50)).await.expect("setup");
    let client = env.proxy_client("trust_user").await;
    client
        .batch_execute("BEGIN; DROP INDEX e_x_idx, r_x_idx; COMMIT;")
        .await
        .expect("two indexes on small tables pass in a transaction");
    assert!(one_bool(&admin, gone).await, "both dropped");

    // The second index's table is big: refused, nothing dropped. Before issue 10 only the
    // first index was read, so this order matters.
    for (rows_e, rows_r) in [(0, 2000), (2000, 0)] {
        admin
            .batch_execute(&fresh(rows_e, rows_r))
            .await
            .expect("setup");
        let err = client
            .batch_execute("BEGIN; DROP INDEX e_x_idx, r_x_idx; COMMIT;")
            .await
            .expect_err("one big table among them");
        assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
        client.batch_execute("ROLLBACK").await.expect("rollback");
        assert!(one_bool(&admin, both).await, "both indexes still there");
    }

    // Outside a transaction block a list of indexes runs as its safe form, one DROP INDEX
    // CONCURRENTLY per index (issue 12; before, it was refused), small tables or not.
    admin.batch_execute(&fresh(0, 0)).await.expect("setup");
    client
        .batch_execute("DROP INDEX e_x_idx, r_x_idx")
        .await
        .expect("a list outside a transaction is split");
    assert!(one_bool(&admin, gone).await);

    // An index on a table this transaction created (and filled: big) counts like a small one;
    // the other index's table is small.
    admin.batch_execute(&fresh(0, 0)).await.expect("setup");
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("CREATE TABLE n AS SELECT g AS x FROM generate_series(1, 5000) g")
        .await
        .expect("create");
    client
        .batch_execute("CREATE INDEX n_x_idx ON n (x)")
        .await
        .expect("index on a new table");
    client
        .batch_execute("DROP INDEX n_x_idx, e_x_idx")
        .await
        .expect("new table's index and a small table's index");
    client.batch_execute("COMMIT").await.expect("commit");
    assert!(
        one_bool(
            &admin,
            "SELECT to_regclass('n_x_idx') IS NULL AND to_regclass('e_x_idx') IS NULL"
        )
        .await
    );
    proxy_healthy(&env).await;
}

async fn one_bool(admin: &Client, sql: &str) -> bool {
    admin
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}
