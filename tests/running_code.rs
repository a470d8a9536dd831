//! Never break running code (issue 12, item 4), and the opt-in style rules being off in the
//! proxy (item 6), against a real PostgreSQL through real clients.
//!
//! Each statement goes through ddlgate while a twin table (or object) gets the same statement
//! straight on the server: a warned statement runs exactly as written, so the two end states are
//! compared from the catalog; the warning names the rule and says what breaks. Where the
//! consequence can be shown (a `json` column breaking `SELECT DISTINCT *`, an enum value used
//! before commit) the test shows it.

mod common;

use std::time::Duration;

use common::*;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Client;
use tokio_postgres::error::DbError;

/// The notices received so far, as `rule-id: message` lines (`rule` as the message says it).
fn drain(rx: &mut UnboundedReceiver<DbError>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(n) = rx.try_recv() {
        out.push(format!("{} | {}", n.message(), n.hint().unwrap_or("")));
    }
    out
}

/// One row per column of `table`: name, type, NOT NULL, default (as the catalog shows them).
async fn columns(c: &Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull::text || ' ' \
         || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') \
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[&table],
    )
    .await
    .expect("columns")
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

/// Runs `sql` (with `{t}` standing for the table) through ddlgate on `orders` and directly on
/// `twin`; returns the notices ddlgate sent. The two tables must end up alike.
async fn both(
    proxy: &Client,
    rx: &mut UnboundedReceiver<DbError>,
    direct: &Client,
    sql: &str,
) -> Vec<String> {
    proxy
        .batch_execute(&sql.replace("{t}", "orders"))
        .await
        .unwrap_or_else(|e| panic!("{sql} through ddlgate: {e:?}"));
    direct
        .batch_execute(&sql.replace("{t}", "twin"))
        .await
        .unwrap_or_else(|e| panic!("{sql} directly: {e:?}"));
    // A round trip after the statement: every notice of it has arrived.
    proxy.simple_query("SELECT 1").await.expect("sync");
    let through = columns(direct, "orders").await;
    let straight = columns(direct, "twin").await;
    assert_eq!(
        through, straight,
        "{sql}: end state through ddlgate differs"
    );
    drain(rx)
}

fn warned(notices: &[String], rule: &str) -> bool {
    notices
        .iter()
        .any(|n| n.contains(&format!("ddlgate rule {rule}")))
}

/// The guard's `lock_timeout` in these tests.
const LOCK_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_for_changes_that_break_running_code() {
    let env = Env::start_with(|c| c.guard.lock_timeout_ms = LOCK_TIMEOUT).await;
    let direct = env.direct_client("ddlgate_admin").await;
    direct
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, x int);
             INSERT INTO orders SELECT g, g FROM generate_series(1, 20000) g;
             CREATE TABLE twin (LIKE orders INCLUDING ALL);
             INSERT INTO twin SELECT * FROM orders;
             CREATE TABLE empty_t (id bigint);
             ANALYZE;",
        )
        .await
        .expect("setup");
    let (proxy, mut rx) = client_with_notices(&env.proxy_conn("ddlgate_admin")).await;
    // The application keeps writing to the table all along: every warned statement runs under
    // the guard, so no UPDATE waits for as long as the guard's lock_timeout.
    let writer = Writer::start(
        &env.direct_conn("ddlgate_admin"),
        "UPDATE orders SET x = x + 1 WHERE id = 1",
    )
    .await;

    // Adding a required column with a default: fine. Dropping that default: old code's
    // INSERTs (which do not name the column) start failing.
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ADD COLUMN status text NOT NULL DEFAULT 'new'",
    )
    .await;
    assert!(
        n.is_empty(),
        "adding a NOT NULL column with a default: {n:?}"
    );
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ALTER COLUMN status DROP DEFAULT",
    )
    .await;
    assert!(warned(&n, "dropping-required-column-default"), "{n:?}");
    assert!(
        n.iter()
            .any(|l| l.contains("23502") && l.contains("Expand/contract"))
    );
    // What the warning says would happen does: old code's INSERT fails.
    let old_code = proxy
        .batch_execute("INSERT INTO orders (id, x) VALUES (-1, 0)")
        .await
        .expect_err("an INSERT without status now fails");
    assert_eq!(sqlstate(&old_code).as_deref(), Some("23502"));
    // Both in one Query (a sqlx or golang-migrate file): the catalog read before the message
    // cannot know the column yet; the ADD COLUMN is flagged from the text after it.
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ADD COLUMN kind text NOT NULL DEFAULT 'a'; ALTER TABLE {t} ALTER COLUMN kind DROP DEFAULT",
    )
    .await;
    assert!(warned(&n, "dropping-required-column-default"), "{n:?}");
    // knex's `.alter()` drops the default of a column that has none: nothing to warn about.
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ALTER COLUMN x DROP DEFAULT",
    )
    .await;
    assert!(!warned(&n, "dropping-required-column-default"), "{n:?}");

    // A now() default: every existing row gets the migration's time.
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ADD COLUMN created_at timestamptz DEFAULT now()",
    )
    .await;
    assert!(warned(&n, "adding-field-with-time-default"), "{n:?}");
    let same: bool = direct
        .query_one("SELECT count(DISTINCT created_at) = 1 FROM orders", &[])
        .await
        .expect("count")
        .get(0);
    assert!(same, "every existing row got one time, as the warning says");
    // On an empty table there is nothing to mislabel.
    proxy
        .batch_execute("ALTER TABLE empty_t ADD COLUMN created_at timestamptz DEFAULT now()")
        .await
        .expect("empty table");
    proxy.simple_query("SELECT 1").await.expect("sync");
    let n = drain(&mut rx);
    assert!(!warned(&n, "adding-field-with-time-default"), "{n:?}");

    // A json column: whole-row comparisons of running queries break; jsonb does not.
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ADD COLUMN doc jsonb",
    )
    .await;
    assert!(!warned(&n, "adding-json-field"), "{n:?}");
    proxy
        .simple_query("SELECT DISTINCT * FROM orders LIMIT 1")
        .await
        .expect("DISTINCT * over jsonb works");
    let n = both(
        &proxy,
        &mut rx,
        &direct,
        "ALTER TABLE {t} ADD COLUMN raw json",
    )
    .await;
    assert!(warned(&n, "adding-json-field"), "{n:?}");
    let broken = proxy
        .simple_query("SELECT DISTINCT * FROM orders LIMIT 1")
        .await
        .expect_err("DISTINCT * over a json column fails");
    assert_eq!(sqlstate(&broken).as_deref(), Some("42883"));
    writer.finish(LOCK_TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_for_objects_running_code_uses() {
    let env = Env::start().await;
    let direct = env.direct_client("ddlgate_admin").await;
    direct
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('a', 'b');
             CREATE TABLE feelings (m mood);
             CREATE VIEW v AS SELECT 1 AS one;
             CREATE VIEW v2 AS SELECT 2 AS two;
             CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE SEQUENCE s;
             CREATE SCHEMA gone; CREATE TABLE gone.keep (a int); INSERT INTO gone.keep VALUES (1);",
        )
        .await
        .expect("setup");
    let (proxy, mut rx) = client_with_notices(&env.proxy_conn("ddlgate_admin")).await;
    let run = |sql: &'static str| {
        let proxy = &proxy;
        async move {
            let r = proxy.batch_execute(sql).await;
            proxy.simple_query("SELECT 1").await.expect("sync");
            r
        }
    };

    // An enum value added and used in one Query: the warning comes first, then PostgreSQL's
    // own 55P04, and nothing of the Query stays.
    let err = run("ALTER TYPE mood ADD VALUE 'c'; INSERT INTO feelings VALUES ('c')")
        .await
        .expect_err("the server refuses the new value before commit");
    assert_eq!(sqlstate(&err).as_deref(), Some("55P04"));
    let n = drain(&mut rx);
    assert!(warned(&n, "using-new-enum-value-in-transaction"), "{n:?}");
    // Added alone, then used: no warning, and it works.
    run("ALTER TYPE mood ADD VALUE 'c'").await.expect("add");
    run("INSERT INTO feelings VALUES ('c')").await.expect("use");
    let n = drain(&mut rx);
    assert!(!warned(&n, "using-new-enum-value-in-transaction"), "{n:?}");

    // Drops and renames of objects code uses by name: run as written, with a warning.
    for (sql, rule, gone) in [
        (
            "DROP VIEW v",
            "ban-drop-view",
            "SELECT to_regclass('v') IS NULL",
        ),
        (
            "DROP FUNCTION f()",
            "ban-drop-function",
            "SELECT to_regprocedure('f()') IS NULL",
        ),
        (
            "ALTER SEQUENCE s RENAME TO s2",
            "renaming-object",
            "SELECT to_regclass('s') IS NULL AND to_regclass('s2') IS NOT NULL",
        ),
        (
            "ALTER VIEW v2 RENAME TO v3",
            "renaming-object",
            "SELECT to_regclass('v3') IS NOT NULL",
        ),
        (
            "ALTER TYPE mood RENAME TO feeling",
            "renaming-object",
            "SELECT to_regtype('feeling') IS NOT NULL",
        ),
    ] {
        run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let n = drain(&mut rx);
        assert!(warned(&n, rule), "{sql}: {n:?}");
        let done: bool = direct.query_one(gone, &[]).await.expect("effect").get(0);
        assert!(done, "{sql} ran as written");
    }

    // A CASCADE that takes a table with it is blocked, and the schema and its rows stay.
    let err = run("DROP SCHEMA gone CASCADE").await.expect_err("blocked");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"));
    let kept: i64 = direct
        .query_one("SELECT count(*) FROM gone.keep", &[])
        .await
        .expect("table kept")
        .get(0);
    assert_eq!(kept, 1);
}

/// The opt-in style rules say nothing in the default proxy, and warn once a profile turns one on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn style_rules_are_off_in_the_proxy_until_a_profile_turns_them_on() {
    let env = Env::start().await;
    let (proxy, mut rx) = client_with_notices(&env.proxy_conn("ddlgate_admin")).await;
    proxy
        .batch_execute("CREATE TABLE s1 (id serial PRIMARY KEY, name varchar(20), at timestamp)")
        .await
        .expect("create");
    proxy.simple_query("SELECT 1").await.expect("sync");
    let n = drain(&mut rx);
    assert!(n.is_empty(), "no style warnings by default: {n:?}");

    let styled = start_proxy(env.pg.port(), |c| {
        c.policy
            .rules
            .insert("prefer-identity".to_owned(), ddlgate::rules::Action::Warn);
    })
    .await;
    let (proxy, mut rx) =
        client_with_notices(&conn_str(styled.local_addr().port(), "ddlgate_admin")).await;
    proxy
        .batch_execute("CREATE TABLE s2 (id serial PRIMARY KEY, name varchar(20))")
        .await
        .expect("create, warned");
    proxy.simple_query("SELECT 1").await.expect("sync");
    let n = drain(&mut rx);
    assert!(warned(&n, "prefer-identity"), "{n:?}");
    // Only the rule the profile turned on: prefer-text-field stays off.
    assert!(!warned(&n, "prefer-text-field"), "{n:?}");
}
