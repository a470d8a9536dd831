//! Catalog facts against a real PostgreSQL: `catalog::facts_query` runs through the simple
//! protocol (as the session runs it, inside the client's transaction), `catalog::parse_facts`
//! reads the answer, and the rules decide with it. The type-change model is checked against
//! what the server really does (a rewrite gives the table a new relfilenode; a rebuilt index
//! gets one too), names that need quoting and missing objects are facts, never errors, and the
//! query never waits behind another session's ACCESS EXCLUSIVE lock.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use ddlgate::catalog::{self, Facts, RelKind, TypeChange, Volatility};
use ddlgate::protocol::TxStatus;
use ddlgate::rules::{self, Context, Finding, Rewrite};
use ddlgate::sql::LexOptions;
use ddlgate::sql::parse;
use ddlgate::sql::statement::{Ddl, Name};
use tokio_postgres::{Client, SimpleQueryMessage};

fn understand(sql: &str) -> Ddl {
    parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default())
}

/// The single text value a query returns.
async fn one_value(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| {
        let head: String = sql.chars().take(120).collect();
        let why = e
            .as_db_error()
            .map_or(e.to_string(), |d| d.message().to_owned());
        panic!("{head}…: {why}")
    });
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "{sql} must return one row");
    rows[0].get(0).expect("a non-NULL value").to_owned()
}

/// Reads the facts for `sql` the way the session does.
async fn facts_for(client: &Client, sql: &str) -> (Ddl, Facts) {
    let ddl = understand(sql);
    let query = catalog::facts_query(&ddl).unwrap_or_else(|| panic!("{sql} needs facts"));
    let json = one_value(client, &query).await;
    let facts = catalog::parse_facts(&json).unwrap_or_else(|e| panic!("{sql}: {e}\n{json}"));
    (ddl, facts)
}

async fn server_version(client: &Client) -> u32 {
    one_value(client, "SHOW server_version_num")
        .await
        .parse()
        .expect("server_version_num")
}

/// Every rule's findings for `ddl` with `facts`, in transaction state `tx`, with the
/// small-table allowance off: these tests check what the server does to their (small) tables.
fn check(ddl: &Ddl, facts: &Facts, tx: TxStatus, version: u32) -> Vec<Finding> {
    let mut facts = facts.clone();
    facts.thresholds.small_table_rows = 0;
    check_sized(ddl, &facts, tx, version)
}

/// [`check`] with the thresholds the facts carry (the defaults): the small-table allowance on.
fn check_sized(ddl: &Ddl, facts: &Facts, tx: TxStatus, version: u32) -> Vec<Finding> {
    let created = HashSet::new();
    let ctx = Context {
        tx,
        shares_unit: false,
        in_function_body: false,
        server_version: Some(version),
        created_in_tx: &created,
        catalog: Some(facts),
        later: &[],
        added_not_valid: &[],
    };
    rules::check(ddl, &ctx)
}

fn finding<'a>(findings: &'a [Finding], rule: &str) -> Option<&'a Finding> {
    findings.iter().find(|f| f.rule == rule)
}

async fn filenode(client: &Client, relation: &str) -> String {
    one_value(
        client,
        &format!(
            "SELECT pg_relation_filenode({})::text",
            ddlgate::sql::quote::literal(relation)
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_change_verdicts_match_what_the_server_does() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    let version = server_version(&db).await;
    db.batch_execute("CREATE EXTENSION citext")
        .await
        .expect("citext");
    // (column type, new type, session TimeZone)
    let cases: &[(&str, &str, &str)] = &[
        ("varchar(20)", "varchar(50)", "UTC"),
        ("varchar(20)", "character varying", "UTC"),
        ("varchar(20)", "text", "UTC"),
        ("varchar(20)", "varchar(10)", "UTC"),
        ("varchar(20)", "bpchar", "UTC"),
        ("varchar(20)", "citext", "UTC"),
        ("text", "varchar", "UTC"),
        ("text", "varchar(100)", "UTC"),
        ("text", "citext", "UTC"),
        ("citext", "text", "UTC"),
        ("numeric(10,2)", "numeric(12,2)", "UTC"),
        ("numeric(10,2)", "numeric", "UTC"),
        ("numeric(10,2)", "numeric(12,3)", "UTC"),
        ("numeric(10,2)", "numeric(8,2)", "UTC"),
        ("numeric(10,2)", "bigint", "UTC"),
        ("numeric", "numeric(10,2)", "UTC"),
        ("timestamp(3)", "timestamp(6)", "UTC"),
        ("timestamp(3)", "timestamp", "UTC"),
        ("timestamp(3)", "timestamp(2)", "UTC"),
        ("timestamp", "timestamptz", "UTC"),
        ("timestamp", "timestamp with time zone", "Etc/UTC"),
        ("timestamp", "timestamptz", "Europe/Berlin"),
        ("timestamptz", "timestamp", "UTC"),
        ("timestamp", "timestamptz(3)", "UTC"),
        ("time(2)", "time(4)", "UTC"),
        ("interval(3)", "interval(5)", "UTC"),
        ("interval(3)", "interval(2)", "UTC"),
        ("interval year", "interval(0)", "UTC"),
        ("cidr", "inet", "UTC"),
        ("inet", "cidr", "UTC"),
        ("bit(3)", "varbit", "UTC"),
        ("bit(3)", "bit(4)", "UTC"),
        ("varbit(5)", "varbit(10)", "UTC"),
        ("varbit(5)", "bit varying(4)", "UTC"),
        ("char(5)", "char(6)", "UTC"),
        ("char(5)", "bpchar", "UTC"),
        ("char(5)", "text", "UTC"),
        ("int", "bigint", "UTC"),
        ("int", "integer", "UTC"),
        ("real", "float(20)", "UTC"),
        ("bigint", "int", "UTC"),
    ];
    for (i, (from, to, tz)) in cases.iter().enumerate() {
        let table = format!("tc_{i}");
        db.batch_execute(&format!(
            "SET TimeZone = {}; CREATE TABLE {table} (c {from}); INSERT INTO {table} VALUES (NULL); CREATE INDEX {table}_c ON {table} (c);",
            ddlgate::sql::quote::literal(tz)
        ))
        .await
        .unwrap_or_else(|e| panic!("{from}: {e}"));
        let alter = format!("ALTER TABLE {table} ALTER COLUMN c TYPE {to}");
        let (ddl, facts) = facts_for(&db, &alter).await;
        let column = facts
            .column(&Name::bare(&table), "c")
            .expect("column facts");
        let data_type = column.data_type.as_ref().expect("existing column");
        let predicted = catalog::type_change(data_type, to, Some(tz));
        assert_ne!(
            predicted,
            TypeChange::Unknown,
            "{from} -> {to}: every case here is one ddlgate knows"
        );
        let flagged = finding(
            &check(&ddl, &facts, TxStatus::Idle, version),
            "changing-column-type",
        )
        .is_some();
        let (heap, index) = (
            filenode(&db, &table).await,
            filenode(&db, &format!("{table}_c")).await,
        );
        db.batch_execute(&alter)
            .await
            .unwrap_or_else(|e| panic!("{alter}: {e}"));
        let rewritten = filenode(&db, &table).await != heap;
        let index_rebuilt = filenode(&db, &format!("{table}_c")).await != index;
        let what = format!(
            "{from} -> {to} (TimeZone {tz}): predicted {predicted:?}, server rewrote table {rewritten}, index {index_rebuilt}"
        );
        match predicted {
            TypeChange::Free => assert!(!rewritten && !index_rebuilt && !flagged, "{what}"),
            TypeChange::RebuildsIndexes => {
                assert!(!rewritten && index_rebuilt && flagged, "{what}")
            }
            TypeChange::Rewrites => assert!(rewritten && flagged, "{what}"),
            TypeChange::Unknown => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_describe_columns_constraints_indexes_and_functions() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    let version = server_version(&db).await;
    db.batch_execute(
        r#"CREATE SCHEMA "App";
           CREATE TABLE "App"."Orders" (
               id int PRIMARY KEY,
               "Email" varchar(20) CONSTRAINT email_present CHECK ("Email" IS NOT NULL),
               total numeric(10,2) CHECK (total >= 0),
               note text COLLATE "C",
               "it's" varchar(5),
               "Flag" boolean);
           CREATE INDEX orders_lower_email ON "App"."Orders" (lower("Email"));
           CREATE INDEX orders_total ON "App"."Orders" (total);
           CREATE INDEX orders_note ON "App"."Orders" (note);
           ALTER TABLE "App"."Orders" ADD CONSTRAINT quote_present CHECK ("it's" IS NOT NULL AND length("it's") > 0) NOT VALID;
           INSERT INTO "App"."Orders" SELECT g, 'x' || g, g, 'n', 'q', true FROM generate_series(1, 500) g;
           ANALYZE "App"."Orders";
           CREATE FUNCTION app_stable() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
           CREATE FUNCTION app_volatile() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
           CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
           CREATE FUNCTION "App".twice(text) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 2';
           CREATE TABLE customers (id int PRIMARY KEY);"#,
    )
    .await
    .expect("setup");

    let (ddl, facts) = facts_for(
        &db,
        r#"ALTER TABLE "App"."Orders" ALTER COLUMN "Email" TYPE varchar(50), ALTER COLUMN total TYPE numeric(12,2), ALTER COLUMN note TYPE text, ALTER COLUMN "it's" SET NOT NULL, ALTER COLUMN "Email" SET NOT NULL, ALTER COLUMN nope TYPE text, ADD COLUMN a int DEFAULT app_stable(), ADD COLUMN b int DEFAULT twice(2), ADD COLUMN c int DEFAULT app_volatile(), ADD CONSTRAINT fk_c FOREIGN KEY (id) REFERENCES customers (id), ADD CONSTRAINT fk_m FOREIGN KEY (id) REFERENCES "App".missing (id)"#,
    )
    .await;
    let orders = Name::new(Some("App"), "Orders");
    let r = facts.relation_for(&orders).expect("relation");
    assert!(r.exists && !r.is_partitioned());
    assert_eq!(r.kind, Some(RelKind::Table));
    assert_eq!(r.name, Some(orders.clone()));
    assert_eq!(r.rows, Some(500));
    assert!(r.bytes.is_some_and(|b| b > 8192), "{:?}", r.bytes);
    assert!(r.is_small(&facts.thresholds));
    assert!(facts.timezone.is_some());

    let email = facts.column(&orders, "Email").expect("Email");
    assert!(email.exists && email.valid_not_null_check && !email.not_null);
    assert_eq!(email.checks, ["email_present"]);
    assert_eq!(
        email
            .data_type
            .as_ref()
            .map(|t| (t.formatted.as_str(), t.oid, t.typmod)),
        Some(("character varying(20)", 1043, 24))
    );
    assert_eq!(email.indexes.len(), 1);
    assert!(email.indexes[0].name == "orders_lower_email" && !email.indexes[0].plain);
    let total = facts.column(&orders, "total").expect("total");
    assert_eq!(total.checks, ["Orders_total_check"]);
    assert!(total.indexes[0].plain && !total.valid_not_null_check);
    let note = facts.column(&orders, "note").expect("note");
    assert_eq!(note.collation.as_deref(), Some("C"));
    // NOT VALID constraints prove nothing.
    let quote = facts.column(&orders, "it's").expect("it's");
    assert!(quote.exists && !quote.valid_not_null_check && quote.checks.is_empty());
    let nope = facts.column(&orders, "nope").expect("asked");
    assert!(!nope.exists);
    assert_eq!(
        facts.volatility("app_stable"),
        Some(&[Volatility::Stable][..])
    );
    let twice = facts.volatility("twice").expect("twice");
    assert!(twice.contains(&Volatility::Immutable) && twice.contains(&Volatility::Volatile));
    assert_eq!(
        facts.volatility("app_volatile"),
        Some(&[Volatility::Volatile][..])
    );
    assert!(
        facts
            .referenced(&Name::bare("customers"))
            .expect("customers")
            .exists
    );
    assert!(
        !facts
            .referenced(&Name::new(Some("App"), "missing"))
            .expect("missing")
            .exists
    );
    // Only the first offending sub-command is reported per rule; here the Email type change
    // rebuilds its expression index, `it's` has only a NOT VALID check, and twice() has a
    // volatile overload.
    let findings = check(&ddl, &facts, TxStatus::Idle, version);
    let f = finding(&findings, "changing-column-type").expect("type change flagged");
    assert!(
        f.message
            .contains("rebuilds the index(es) orders_lower_email"),
        "{}",
        f.message
    );
    let f = finding(&findings, "adding-not-nullable-field").expect("SET NOT NULL flagged");
    assert!(f.message.contains("App.Orders.it's"), "{}", f.message);
    let f = finding(&findings, "adding-field-with-default").expect("default flagged");
    assert!(
        f.message.contains("volatile function twice()"),
        "{}",
        f.message
    );

    // Each of those, one at a time.
    for (sql, rule, flagged) in [
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN total TYPE numeric(14,2)"#,
            "changing-column-type",
            true,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN "Flag" TYPE boolean"#,
            "changing-column-type",
            false,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN note TYPE text"#,
            "changing-column-type",
            true,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN "it's" TYPE varchar(9)"#,
            "changing-column-type",
            false,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN "Email" SET NOT NULL"#,
            "adding-not-nullable-field",
            false,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN id SET NOT NULL"#,
            "adding-not-nullable-field",
            false,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ALTER COLUMN "it's" SET NOT NULL"#,
            "adding-not-nullable-field",
            true,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ADD COLUMN a int DEFAULT app_stable()"#,
            "adding-field-with-default",
            false,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ADD COLUMN a int DEFAULT app_volatile()"#,
            "adding-field-with-default",
            true,
        ),
        (
            r#"ALTER TABLE "App"."Orders" ADD COLUMN a timestamptz DEFAULT now()"#,
            "adding-field-with-default",
            false,
        ),
    ] {
        let (ddl, facts) = facts_for(&db, sql).await;
        let found = finding(&check(&ddl, &facts, TxStatus::Idle, version), rule).is_some();
        assert_eq!(found, flagged, "{sql}");
    }
    // total has a CHECK: a type change re-checks it, and says so.
    let (ddl, facts) = facts_for(
        &db,
        r#"ALTER TABLE "App"."Orders" ALTER COLUMN total TYPE numeric(14,2)"#,
    )
    .await;
    let findings = check(&ddl, &facts, TxStatus::Idle, version);
    let f = finding(&findings, "changing-column-type").expect("flagged");
    assert!(
        f.message
            .contains("re-checks the CHECK constraint(s) Orders_total_check with a full scan"),
        "{}",
        f.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_hostile_names_are_facts_not_errors() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    db.batch_execute(
        r#"CREATE SCHEMA "we'ird";
           CREATE TABLE "we'ird"."Ta""ble\x" (v varchar(3));
           CREATE TABLE plain_t (v int);"#,
    )
    .await
    .expect("setup");
    // The session runs the query inside the client's transaction: it must leave it usable,
    // with nothing stronger than ACCESS SHARE held, under either string-literal syntax.
    for conforming in ["on", "off"] {
        db.batch_execute(&format!(
            "SET standard_conforming_strings = {conforming}; BEGIN"
        ))
        .await
        .expect("begin");
        for (sql, exists) in [
            (r#"CREATE INDEX i ON "we'ird"."Ta""ble\x" (v)"#, true),
            (
                r#"ALTER TABLE "we'ird"."Ta""ble\x" ALTER COLUMN v TYPE varchar(5)"#,
                true,
            ),
            ("CREATE INDEX i ON nosuch (x)", false),
            ("CREATE INDEX i ON nosuch_schema.t (x)", false),
            ("DROP INDEX nosuch_index", false),
            ("REINDEX TABLE nosuch", false),
            ("REFRESH MATERIALIZED VIEW nosuch.mv", false),
            ("REFRESH MATERIALIZED VIEW plain_t", true),
            (
                r#"ALTER TABLE "x'); DROP TABLE plain_t; --" ALTER COLUMN c SET NOT NULL"#,
                false,
            ),
            (r#"CREATE INDEX i ON "a\\'b" (x)"#, false),
            (&format!("CREATE INDEX i ON {} (x)", "l".repeat(100)), false),
        ] {
            let (ddl, facts) = facts_for(&db, sql).await;
            let relation = facts.relation.as_ref().expect("relation facts");
            assert_eq!(relation.exists, exists, "{sql} (scs {conforming})");
            if !exists {
                assert!(relation.rows.is_none() && relation.bytes.is_none(), "{sql}");
                // Unknown size: the verdicts stay those of a linter without the catalog.
                assert!(
                    !check(&ddl, &facts, TxStatus::InTransaction, 150_000).is_empty(),
                    "{sql}"
                );
            }
            let locks = one_value(
                &db,
                "SELECT string_agg(DISTINCT mode, ',') FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'",
            )
            .await;
            assert_eq!(locks, "AccessShareLock", "{sql}");
        }
        assert_eq!(
            one_value(&db, "SELECT 'still usable'").await,
            "still usable"
        );
        db.batch_execute("COMMIT").await.expect("commit");
    }
    let plain = one_value(&db, "SELECT count(*)::text FROM plain_t").await;
    assert_eq!(plain, "0");
    // The quoted name resolved to the table, not to a look-alike.
    let (_, facts) = facts_for(&db, r#"CREATE INDEX i ON "we'ird"."Ta""ble\x" (v)"#).await;
    assert_eq!(
        facts.relation.and_then(|r| r.name),
        Some(Name::new(Some("we'ird"), "Ta\"ble\\x"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_and_temporary_tables_resolve_like_the_server() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    db.batch_execute(
        "CREATE SCHEMA app; CREATE TABLE app.items (v int); INSERT INTO app.items SELECT generate_series(1, 20000); ANALYZE app.items;
         SET search_path = app, public;",
    )
    .await
    .expect("setup");
    let (_, facts) = facts_for(&db, "CREATE INDEX i ON items (v)").await;
    let r = facts.relation_for(&Name::bare("items")).expect("items");
    assert_eq!(r.name, Some(Name::new(Some("app"), "items")));
    assert_eq!(r.rows, Some(20000));
    // A temporary table shadows it, as it would for the statement itself.
    db.batch_execute("CREATE TEMP TABLE items (v int)")
        .await
        .expect("temp");
    let (_, facts) = facts_for(&db, "CREATE INDEX i ON items (v)").await;
    let r = facts.relation_for(&Name::bare("items")).expect("items");
    assert!(
        r.name.as_ref().is_some_and(|n| n
            .schema
            .as_deref()
            .is_some_and(|s| s.starts_with("pg_temp"))),
        "{:?}",
        r.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_verdicts_follow_size_and_partitioning() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    let version = server_version(&db).await;
    db.batch_execute(
        "CREATE TABLE tiny (v int); INSERT INTO tiny SELECT generate_series(1, 10); ANALYZE tiny;
         CREATE TABLE big (v int); INSERT INTO big SELECT generate_series(1, 20000); ANALYZE big;
         CREATE TABLE never_analyzed (v int) WITH (autovacuum_enabled = off); INSERT INTO never_analyzed VALUES (1);
         CREATE TABLE never_analyzed_big (v int) WITH (autovacuum_enabled = off);
         INSERT INTO never_analyzed_big SELECT generate_series(1, 20000);
         CREATE INDEX tiny_v ON tiny (v);
         CREATE TABLE events (tenant int, day date) PARTITION BY RANGE (day);
         CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (tenant);
         CREATE TABLE events_2026_t1 PARTITION OF events_2026 FOR VALUES IN (1);
         CREATE TABLE events_2026_t2 PARTITION OF events_2026 FOR VALUES IN (2);
         CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         INSERT INTO events SELECT 1 + g % 2, '2026-03-01' FROM generate_series(1, 30) g;
         ANALYZE events;
         CREATE INDEX events_day ON events (day);",
    )
    .await
    .expect("setup");
    let creation = "require-concurrent-index-creation";
    for (sql, tx, expected) in [
        ("CREATE INDEX i ON tiny (v)", TxStatus::InTransaction, None),
        // Small: runs as written outside a transaction too.
        ("CREATE INDEX i ON tiny (v)", TxStatus::Idle, None),
        (
            "CREATE INDEX i ON big (v)",
            TxStatus::InTransaction,
            Some(None),
        ),
        (
            "CREATE INDEX i ON big (v)",
            TxStatus::Idle,
            Some(Some(Rewrite::Concurrently)),
        ),
        // reltuples = -1, but one heap page cannot hold 10 000 rows: small.
        (
            "CREATE INDEX i ON never_analyzed (v)",
            TxStatus::InTransaction,
            None,
        ),
        // reltuples = -1 and a heap that can hold more than the limit: not small.
        (
            "CREATE INDEX i ON never_analyzed_big (v)",
            TxStatus::InTransaction,
            Some(None),
        ),
        // The whole partition tree is small.
        (
            "CREATE INDEX i ON events (tenant)",
            TxStatus::InTransaction,
            None,
        ),
        // Small outside a transaction too (the step-wise build for big trees is checked
        // below with the allowance off).
        ("CREATE INDEX i ON events (tenant)", TxStatus::Idle, None),
    ] {
        let (ddl, facts) = facts_for(&db, sql).await;
        let found = check_sized(&ddl, &facts, tx, version);
        assert_eq!(
            finding(&found, creation).map(|f| f.rewrite),
            expected,
            "{sql} in {tx:?}"
        );
    }
    let (ddl, facts) = facts_for(&db, "CREATE INDEX i ON events (tenant)").await;
    let events = facts.relation_for(&Name::bare("events")).expect("events");
    assert!(events.is_partitioned());
    // events_2027 is empty: reltuples 0 with relpages 0 reads as "no estimate" (what
    // PostgreSQL before 14 shows for a never-analyzed table), so the exact heap bound decides.
    assert_eq!(events.rows, None);
    assert!(
        events.max_rows.is_some_and(|m| (30..10_000).contains(&m)),
        "{:?}",
        events.max_rows
    );
    let tree: Vec<(String, u32, bool)> = events
        .partitions
        .iter()
        .map(|p| (p.name.to_string(), p.level, p.is_leaf()))
        .collect();
    assert_eq!(
        tree,
        [
            ("public.events_2026".to_owned(), 1, false),
            ("public.events_2027".to_owned(), 1, true),
            ("public.events_2026_t1".to_owned(), 2, true),
            ("public.events_2026_t2".to_owned(), 2, true),
        ]
    );
    assert_eq!(
        events.partitions[2].parent,
        Name::new(Some("public"), "events_2026")
    );
    let findings = check(&ddl, &facts, TxStatus::Idle, version);
    let f = finding(&findings, creation).expect("flagged");
    assert!(
        f.hint.contains("ON ONLY events") && f.hint.contains("3 leaf partition(s)"),
        "{}",
        f.hint
    );

    // DROP INDEX: a partitioned index cannot be dropped CONCURRENTLY; the plain drop runs
    // under the guard, whichever form was written.
    let deletion = "require-concurrent-index-deletion";
    for sql in [
        "DROP INDEX events_day",
        "DROP INDEX CONCURRENTLY events_day",
    ] {
        let (ddl, facts) = facts_for(&db, sql).await;
        let r = facts.relation.as_ref().expect("index");
        assert_eq!(r.kind, Some(RelKind::PartitionedIndex));
        assert_eq!(r.table, Some(Name::new(Some("public"), "events")));
        assert_eq!(
            finding(&check(&ddl, &facts, TxStatus::Idle, version), deletion).map(|f| f.rewrite),
            Some(Some(Rewrite::Guarded)),
            "{sql}"
        );
    }
    let (ddl, facts) = facts_for(&db, "DROP INDEX tiny_v").await;
    let r = facts.relation.as_ref().expect("index");
    assert_eq!((r.kind, r.rows), (Some(RelKind::Index), Some(10)));
    assert_eq!(
        finding(&check(&ddl, &facts, TxStatus::Idle, version), deletion).map(|f| f.rewrite),
        Some(Some(Rewrite::Concurrently))
    );
    // The server agrees: CONCURRENTLY is refused on the partitioned index.
    let refused = db
        .simple_query("DROP INDEX CONCURRENTLY events_day")
        .await
        .expect_err("partitioned");
    assert_eq!(sqlstate(&refused).as_deref(), Some("0A000"));

    // REINDEX of an index on a small table inside a transaction block is harmless.
    let (ddl, facts) = facts_for(&db, "REINDEX INDEX tiny_v").await;
    assert!(
        finding(
            &check_sized(&ddl, &facts, TxStatus::InTransaction, version),
            "require-concurrent-reindex"
        )
        .is_none()
    );
    let (ddl, facts) = facts_for(&db, "REINDEX TABLE big").await;
    assert!(
        finding(
            &check_sized(&ddl, &facts, TxStatus::InTransaction, version),
            "require-concurrent-reindex"
        )
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_views_know_whether_concurrent_refresh_works() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    let version = server_version(&db).await;
    db.batch_execute(
        "CREATE MATERIALIZED VIEW keyed AS SELECT g AS id, g * 2 AS v FROM generate_series(1, 10) g;
         CREATE UNIQUE INDEX keyed_id ON keyed (id);
         CREATE MATERIALIZED VIEW partial AS SELECT g AS id FROM generate_series(1, 10) g;
         CREATE UNIQUE INDEX partial_id ON partial (id) WHERE id > 5;
         CREATE UNIQUE INDEX partial_expr ON partial ((id + 1));
         CREATE INDEX partial_plain ON partial (id);
         CREATE MATERIALIZED VIEW empty AS SELECT 1 AS id WITH NO DATA;
         CREATE UNIQUE INDEX empty_id ON empty (id);",
    )
    .await
    .expect("setup");
    let rule = "require-concurrent-materialized-view-refresh";
    let (ddl, facts) = facts_for(&db, "REFRESH MATERIALIZED VIEW keyed").await;
    let r = facts.relation.as_ref().expect("keyed");
    assert_eq!(
        (r.kind, r.populated, r.refresh_index.as_deref()),
        (
            Some(RelKind::MaterializedView),
            Some(true),
            Some("keyed_id")
        )
    );
    let findings = check(&ddl, &facts, TxStatus::Idle, version);
    let f = finding(&findings, rule).expect("flagged");
    assert!(
        f.hint.contains("has the unique index keyed_id"),
        "{}",
        f.hint
    );
    db.batch_execute("REFRESH MATERIALIZED VIEW CONCURRENTLY keyed")
        .await
        .expect("the server agrees");

    let (ddl, facts) = facts_for(&db, "REFRESH MATERIALIZED VIEW partial").await;
    assert_eq!(
        facts
            .relation
            .as_ref()
            .and_then(|r| r.refresh_index.clone()),
        None
    );
    let findings = check(&ddl, &facts, TxStatus::Idle, version);
    assert!(
        finding(&findings, rule)
            .expect("flagged")
            .hint
            .contains("Add one first")
    );
    db.batch_execute("REFRESH MATERIALIZED VIEW CONCURRENTLY partial")
        .await
        .expect_err("the server agrees: no usable index");

    let (ddl, facts) = facts_for(&db, "REFRESH MATERIALIZED VIEW empty").await;
    assert_eq!(
        facts.relation.as_ref().and_then(|r| r.populated),
        Some(false)
    );
    assert!(finding(&check(&ddl, &facts, TxStatus::Idle, version), rule).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_not_null_follows_the_check_constraint_recipe() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    let version = server_version(&db).await;
    db.batch_execute(
        "CREATE TABLE users (email text, name text); INSERT INTO users VALUES ('a', 'b');
         ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;",
    )
    .await
    .expect("setup");
    let sql = "ALTER TABLE users ALTER COLUMN email SET NOT NULL";
    let rule = "adding-not-nullable-field";
    let flagged = |ddl: &Ddl, facts: &Facts| {
        finding(&check(ddl, facts, TxStatus::Idle, version), rule).is_some()
    };
    let (ddl, facts) = facts_for(&db, sql).await;
    assert!(flagged(&ddl, &facts), "a NOT VALID check proves nothing");
    db.batch_execute("ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null")
        .await
        .expect("validate");
    let (ddl, facts) = facts_for(&db, sql).await;
    assert!(
        !flagged(&ddl, &facts),
        "the validated check makes it instant"
    );
    db.batch_execute(sql).await.expect("set not null");
    let (ddl, facts) = facts_for(&db, sql).await;
    assert!(
        facts
            .column(&Name::bare("users"), "email")
            .is_some_and(|c| c.not_null)
    );
    assert!(!flagged(&ddl, &facts), "already NOT NULL: a no-op");
    let (ddl, facts) = facts_for(&db, "ALTER TABLE users ALTER COLUMN name SET NOT NULL").await;
    assert!(flagged(&ddl, &facts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_never_wait_behind_another_sessions_access_exclusive_lock() {
    let env = Env::start().await;
    let db = env.direct_client("ddlgate_admin").await;
    let holder = env.direct_client("ddlgate_admin").await;
    db.batch_execute(
        "CREATE TABLE busy (v int); CREATE INDEX busy_v ON busy (v); INSERT INTO busy VALUES (1); ANALYZE busy;",
    )
        .await
        .expect("setup");
    holder
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let (_, facts) = tokio::time::timeout(
        Duration::from_secs(20),
        facts_for(&db, "CREATE INDEX i ON busy (v)"),
    )
    .await
    .expect("the facts query must not wait for the lock");
    let r = facts.relation.as_ref().expect("busy");
    assert!(r.exists && r.bytes.is_none(), "{r:?}");
    assert!(!r.is_small(&facts.thresholds));
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    let (_, facts) = facts_for(&db, "CREATE INDEX i ON busy (v)").await;
    assert!(facts.relation.as_ref().is_some_and(|r| r.bytes.is_some()));
    // A plain REINDEX holds ACCESS EXCLUSIVE on the index only (SHARE on the table), and
    // measuring the table's size would open that index too.
    holder
        .batch_execute("BEGIN; REINDEX INDEX busy_v")
        .await
        .expect("reindex");
    let (_, facts) = tokio::time::timeout(
        Duration::from_secs(20),
        facts_for(&db, "ALTER TABLE busy ALTER COLUMN v TYPE bigint"),
    )
    .await
    .expect("the facts query must not wait for the index lock");
    let r = facts.relation.as_ref().expect("busy");
    assert!(r.exists && r.bytes.is_none(), "{r:?}");
    holder.batch_execute("ROLLBACK").await.expect("rollback");
}

/// The facts behind issue 12's constraint verdicts, read from the server: a named index in the
/// table's schema (there? on that table? valid? key columns' NOT NULL by attnum), and the
/// constraint of a VALIDATE (validated? written by this transaction? locks already held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_about_named_indexes_and_validated_constraints() {
    let env = Env::start().await;
    let c = env.direct_client("ddlgate_admin").await;
    c.batch_execute(
        "CREATE TABLE inv (id int NOT NULL, \"E mail\" text, x int);
         INSERT INTO inv VALUES (1, 'a', 1), (2, 'b', 1);
         CREATE TABLE other (id int);
         CREATE UNIQUE INDEX inv_pk_u ON inv (id, \"E mail\") INCLUDE (x);
         CREATE INDEX other_i ON other (id);
         ALTER TABLE inv ADD CONSTRAINT inv_old CHECK (x > 0) NOT VALID;",
    )
    .await
    .expect("setup");
    // An INVALID leftover of a failed concurrent build.
    c.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY inv_x ON inv (x)")
        .await
        .expect_err("duplicate");

    // (statement, expected index facts: exists, on_table, valid, key columns)
    type Expected<'a> = (bool, bool, bool, Vec<(Option<&'a str>, bool)>);
    let cases: Vec<(&str, Expected)> = vec![
        (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS inv_x ON inv (x)",
            (true, true, false, vec![(Some("x"), false)]),
        ),
        (
            "CREATE UNIQUE INDEX IF NOT EXISTS inv_pk_u ON inv (id)",
            (
                true,
                true,
                true,
                vec![(Some("id"), true), (Some("E mail"), false)],
            ),
        ),
        (
            "CREATE INDEX IF NOT EXISTS other_i ON inv (x)",
            (true, false, true, vec![(Some("id"), false)]),
        ),
        (
            "CREATE INDEX IF NOT EXISTS nope ON inv (x)",
            (false, false, false, vec![]),
        ),
        (
            "ALTER TABLE inv ADD CONSTRAINT inv_pk PRIMARY KEY USING INDEX inv_pk_u",
            (
                true,
                true,
                true,
                vec![(Some("id"), true), (Some("E mail"), false)],
            ),
        ),
    ];
    for (sql, (exists, on_table, valid, columns)) in cases {
        let (_, facts) = facts_for(&c, sql).await;
        let i = facts
            .index
            .as_ref()
            .unwrap_or_else(|| panic!("{sql}: no index facts"));
        assert_eq!(
            (i.exists, i.on_table, i.valid),
            (exists, on_table, valid),
            "{sql}"
        );
        let got: Vec<(Option<&str>, bool)> = i
            .key_columns
            .iter()
            .map(|k| (k.name.as_deref(), k.not_null))
            .collect();
        assert_eq!(got, columns, "{sql}");
    }
    let (_, facts) = facts_for(&c, "CREATE INDEX IF NOT EXISTS inv_x ON inv (x)").await;
    assert_eq!(
        facts.invalid_index_leftover(&Name::bare("inv"), "inv_x"),
        Some("public")
    );
    let (_, facts) = facts_for(&c, "CREATE INDEX IF NOT EXISTS inv_pk_u ON inv (x)").await;
    assert_eq!(
        facts.invalid_index_leftover(&Name::bare("inv"), "inv_pk_u"),
        None
    );
    // CONCURRENTLY without IF NOT EXISTS: the table is asked about (a partitioned parent
    // gets the step-wise build), the index of that name is not.
    let (_, facts) = facts_for(&c, "CREATE INDEX CONCURRENTLY inv_x ON inv (x)").await;
    assert_eq!(
        facts.invalid_index_leftover(&Name::bare("inv"), "inv_x"),
        None
    );

    // VALIDATE: an older NOT VALID constraint, outside and inside a transaction.
    let validate = "ALTER TABLE inv VALIDATE CONSTRAINT inv_old";
    let (_, facts) = facts_for(&c, validate).await;
    let k = facts.constraint.clone().expect("constraint facts");
    assert_eq!(
        (
            k.exists,
            k.validated,
            k.contype,
            k.own_transaction,
            k.held_lock
        ),
        (true, false, Some('c'), false, None)
    );
    c.batch_execute("BEGIN; ALTER TABLE inv ADD CONSTRAINT inv_new CHECK (x > 0) NOT VALID")
        .await
        .expect("begin");
    let (_, facts) = facts_for(&c, "ALTER TABLE inv VALIDATE CONSTRAINT inv_new").await;
    let k = facts.constraint.clone().expect("constraint facts");
    assert_eq!(
        (
            k.exists,
            k.validated,
            k.own_transaction,
            k.held_lock.as_deref()
        ),
        (true, false, true, Some("AccessExclusiveLock"))
    );
    let (_, mut facts) = facts_for(&c, validate).await;
    let k = facts.constraint.clone().expect("constraint facts");
    assert_eq!(
        (k.own_transaction, k.held_lock.as_deref()),
        (false, Some("AccessExclusiveLock")),
        "an older constraint, on a table this transaction has locked"
    );
    // The rule decides on these facts: blocked (no rewrite) in the transaction — the table
    // counted as large (two rows would otherwise be the small-table allowance).
    facts.thresholds.small_table_rows = 0;
    let ddl = understand(validate);
    let created = HashSet::new();
    let ctx = Context {
        tx: TxStatus::InTransaction,
        shares_unit: false,
        in_function_body: false,
        server_version: Some(server_version(&c).await),
        created_in_tx: &created,
        catalog: Some(&facts),
        later: &[],
        added_not_valid: &[],
    };
    let f = finding(&rules::check(&ddl, &ctx), "validate-in-same-transaction")
        .cloned()
        .expect("flagged");
    assert_eq!(f.rewrite, None);
    c.batch_execute("ROLLBACK").await.expect("rollback");
    let (_, facts) = facts_for(&c, "ALTER TABLE inv VALIDATE CONSTRAINT inv_new").await;
    assert!(!facts.constraint.expect("asked").exists, "rolled back");
}
