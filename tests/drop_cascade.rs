//! `DROP <kind> … CASCADE` when nothing depends on the object (issue 10: Lemmy's migrations drop
//! functions `CASCADE` out of habit). ddlgate asks the server — the objects resolved to OIDs,
//! `pg_depend` walked as RESTRICT would — and lets the statement run as written only when
//! CASCADE would drop nothing more than RESTRICT. Every way to make CASCADE reach further is
//! tried: a view or an SQL-standard function body using the function, a column of the type's
//! array type, a table in the schema, a column of an extension's type, a dependent created
//! earlier in the same Query, a Unicode-escaped name, an ambiguous function name, a type found
//! only in the temp schema, a view read by another view, a materialized view or an SQL-standard
//! function body, a sequence a column default calls.
//! Each is first shown to drop the dependent straight on the server (rolled back), then refused
//! through ddlgate with the dependents named, leaving everything in place.

mod common;

use common::*;
use tokio_postgres::Client;

async fn exists(admin: &Client, sql: &str) -> bool {
    admin
        .query_one(&format!("SELECT {sql}"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn refused(p: &Client, sql: &str) -> String {
    let err = p
        .simple_query(sql)
        .await
        .map(|_| ())
        .expect_err(&format!("must be refused: {sql}"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not an ErrorResponse: {err}"));
    assert_eq!(db.code().code(), "DG001", "{sql}: {}", db.message());
    assert!(
        db.message().contains("ban-drop-cascade"),
        "{sql}: {}",
        db.message()
    );
    format!("{} {}", db.message(), db.detail().unwrap_or_default())
}

#[tokio::test]
async fn cascade_runs_as_written_only_when_nothing_depends_on_the_object() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE EXTENSION citext;
             SET ROLE trust_user;
             CREATE FUNCTION lonely(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION lonely2() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION lonely3() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE TYPE unused AS ENUM ('a');
             CREATE DOMAIN pos AS int CHECK (VALUE > 0);
             CREATE TYPE comp AS (a int, b text);
             
             CREATE SCHEMA empty_s;
             CREATE FUNCTION used() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE VIEW uses AS SELECT used() AS u;
             CREATE FUNCTION base(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION caller() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT base(1); END;
             CREATE TYPE mood AS ENUM ('ok');
             CREATE TABLE victim (id int, moods mood[]);
             CREATE SCHEMA full_s;
             CREATE TABLE full_s.data (id int);
             CREATE FUNCTION amb(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION amb(text) RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE TABLE names (n citext);
             CREATE TYPE data_t AS ENUM ('a');
             CREATE TABLE uses_data (c data_t);
             CREATE VIEW lone_v AS SELECT 1 AS a;
             CREATE VIEW lone_v2 AS SELECT 1 AS a;
             CREATE TABLE base_t (id int);
             CREATE MATERIALIZED VIEW lone_mv AS SELECT id FROM base_t;
             CREATE UNIQUE INDEX lone_mv_ix ON lone_mv (id);
             CREATE SEQUENCE lone_seq;
             CREATE VIEW inner_v AS SELECT 1 AS a;
             CREATE VIEW outer_v AS SELECT a FROM inner_v;
             CREATE VIEW mv_src AS SELECT 1 AS a;
             CREATE MATERIALIZED VIEW mv_on AS SELECT a FROM mv_src;
             CREATE VIEW fn_src AS SELECT 1 AS a;
             CREATE FUNCTION reads_v() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a FROM fn_src; END;
             CREATE SEQUENCE used_seq;
             CREATE TABLE seq_user (id int DEFAULT nextval('used_seq'));
             CREATE VIEW pair_a AS SELECT 1 AS a;
             CREATE VIEW pair_b AS SELECT a FROM pair_a;
             CREATE VIEW tri_a AS SELECT 1 AS a;
             CREATE VIEW tri_b AS SELECT a FROM tri_a;
             CREATE VIEW tri_c AS SELECT a FROM tri_b;
             RESET ROLE;",
        )
        .await
        .expect("setup");
    let p = env.proxy_client("trust_user").await;

    // Nothing depends on them: each runs as written, inside a transaction block or not.
    for (sql, gone) in [
        (
            "DROP FUNCTION lonely(int) CASCADE",
            "to_regprocedure('lonely(int)') IS NULL",
        ),
        (
            "BEGIN; DROP FUNCTION lonely2 CASCADE; COMMIT",
            "to_regprocedure('lonely2()') IS NULL",
        ),
        (
            "DROP TYPE unused CASCADE",
            "to_regtype('unused') IS NULL AND to_regtype('_unused') IS NULL",
        ),
        ("DROP DOMAIN pos CASCADE", "to_regtype('pos') IS NULL"),
        (
            "DROP TYPE comp CASCADE",
            "to_regtype('comp') IS NULL AND to_regclass('comp') IS NULL",
        ),
        (
            "DROP SCHEMA empty_s CASCADE",
            "NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'empty_s')",
        ),
        ("DROP TYPE IF EXISTS nowhere CASCADE", "true"),
        // A view nothing reads; a materialized view whose only dependent is its own index
        // (dropped with it under RESTRICT too); a sequence no default calls.
        ("DROP VIEW lone_v CASCADE", "to_regclass('lone_v') IS NULL"),
        (
            "DROP MATERIALIZED VIEW lone_mv CASCADE",
            "to_regclass('lone_mv') IS NULL AND to_regclass('lone_mv_ix') IS NULL",
        ),
        (
            "DROP SEQUENCE lone_seq CASCADE",
            "to_regclass('lone_seq') IS NULL",
        ),
        // A view read only by another view the same statement drops: PostgreSQL drops the
        // objects of one statement together, so RESTRICT would drop both too.
        (
            "DROP VIEW pair_a, pair_b CASCADE",
            "to_regclass('pair_a') IS NULL AND to_regclass('pair_b') IS NULL",
        ),
    ] {
        p.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql} must run as written: {e:?}"));
        assert!(exists(&admin, gone).await, "{sql}: dropped");
    }

    // Something depends on them: shown to drop it on the server, refused through ddlgate.
    let cases = [
        (
            "DROP FUNCTION used() CASCADE",
            "to_regclass('uses') IS NOT NULL AND to_regprocedure('used()') IS NOT NULL",
            "view uses",
        ),
        (
            "DROP FUNCTION base(int) CASCADE",
            "to_regprocedure('caller()') IS NOT NULL",
            "function caller()",
        ),
        (
            // The column is of the array type, which depends on mood internally.
            "DROP TYPE mood CASCADE",
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'victim'::regclass AND attname = 'moods')",
            "column moods of table victim",
        ),
        (
            "DROP SCHEMA full_s CASCADE",
            "to_regclass('full_s.data') IS NOT NULL",
            "table full_s.data",
        ),
        (
            "DROP EXTENSION citext CASCADE",
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'names'::regclass AND attname = 'n')",
            "column n of table names",
        ),
        (
            // A Unicode-escaped name: looked up undecoded it would be "missing everywhere",
            // and IF EXISTS of a missing object passes.
            "DROP TYPE IF EXISTS U&\"d\\0061ta_t\" CASCADE",
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'uses_data'::regclass AND attname = 'c')",
            "",
        ),
        (
            // A dependent created earlier in the same Query is not in the facts read before it.
            "CREATE VIEW late AS SELECT lonely3() AS l; DROP FUNCTION lonely3() CASCADE",
            "to_regprocedure('lonely3()') IS NOT NULL AND to_regclass('late') IS NULL",
            "",
        ),
        (
            "DROP VIEW inner_v CASCADE",
            "to_regclass('outer_v') IS NOT NULL AND to_regclass('inner_v') IS NOT NULL",
            "view outer_v",
        ),
        (
            "DROP VIEW mv_src CASCADE",
            "to_regclass('mv_on') IS NOT NULL",
            "materialized view mv_on",
        ),
        (
            "DROP VIEW fn_src CASCADE",
            "to_regprocedure('reads_v()') IS NOT NULL",
            "function reads_v()",
        ),
        (
            // CASCADE drops the column's default, and inserts then fail or get NULL.
            "DROP SEQUENCE used_seq CASCADE",
            "EXISTS (SELECT 1 FROM pg_attrdef WHERE adrelid = 'seq_user'::regclass)",
            "default value for column id of table seq_user",
        ),
        (
            // tri_b is dropped by the statement, but tri_c, which reads it, is not.
            "DROP VIEW tri_a, tri_b CASCADE",
            "to_regclass('tri_c') IS NOT NULL AND to_regclass('tri_a') IS NOT NULL",
            "view tri_c",
        ),
        (
            "CREATE VIEW late_v AS SELECT a FROM lone_v2; DROP VIEW lone_v2 CASCADE",
            "to_regclass('lone_v2') IS NOT NULL AND to_regclass('late_v') IS NULL",
            "",
        ),
        (
            // The same with a CREATE TABLE, which changes no name resolution: still refused.
            "CREATE TABLE late2 (c int DEFAULT lonely3()); DROP FUNCTION lonely3() CASCADE",
            "to_regprocedure('lonely3()') IS NOT NULL AND to_regclass('late2') IS NULL",
            "",
        ),
    ];
    for (sql, kept, named) in cases {
        let direct = env.direct_client("ddlgate_admin").await;
        direct
            .batch_execute(&format!("BEGIN; {sql}; ROLLBACK"))
            .await
            .unwrap_or_else(|e| panic!("{sql} must run on the server itself: {e}"));
        let said = refused(&p, sql).await;
        assert!(said.contains(named), "{sql}: names {named}: {said}");
        assert!(exists(&admin, kept).await, "{sql}: nothing dropped");
    }

    // A function name without arguments that two functions share: PostgreSQL refuses it as
    // not unique; ddlgate cannot resolve it either, so it stays refused.
    refused(&p, "DROP FUNCTION amb CASCADE").await;

    // A type only in the session's temp schema, named through the `pg_temp` alias: the
    // catalog finds no schema called `pg_temp`, but the type exists, so it is not "missing".
    p.batch_execute("CREATE TYPE pg_temp.tt AS ENUM ('a'); CREATE TEMP TABLE tmp_t (c pg_temp.tt)")
        .await
        .expect("temp objects");
    refused(&p, "DROP TYPE IF EXISTS pg_temp.tt CASCADE").await;
    let still: bool = p
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'tmp_t'::regclass AND attname = 'c')",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(still, "the temp table keeps its column");

    // A prepared DROP … CASCADE decided at its Parse, when nothing depended on the function,
    // and executed in a later protocol unit after a dependent appeared: decided again then,
    // without the facts, so refused. (tokio-postgres prepares in a unit of its own.)
    admin
        .batch_execute(
            "SET ROLE trust_user; CREATE FUNCTION later() RETURNS int LANGUAGE sql AS 'SELECT 1'; RESET ROLE",
        )
        .await
        .expect("setup");
    let stmt = p
        .prepare("DROP FUNCTION later() CASCADE")
        .await
        .expect("prepared while nothing depends on it");
    admin
        .batch_execute(
            "SET ROLE trust_user; CREATE VIEW uses_later AS SELECT later() AS l; RESET ROLE",
        )
        .await
        .expect("a dependent appears");
    let err = p
        .execute(&stmt, &[])
        .await
        .expect_err("executed in a later unit");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    assert!(
        exists(&admin, "to_regclass('uses_later') IS NOT NULL").await,
        "the view survives"
    );

    // The same in one unit (Parse/Bind/Execute/Sync in one write, as libpq's PQexecParams and
    // pgJDBC send it): decided on fresh facts, runs as written.
    admin
        .batch_execute(
            "SET ROLE trust_user; CREATE FUNCTION at_once() RETURNS int LANGUAGE sql AS 'SELECT 1'; RESET ROLE",
        )
        .await
        .expect("setup");
    let mut raw = wire::connect_trust(env.proxy_addr()).await;
    let mut parse = b"\0DROP FUNCTION at_once() CASCADE\0".to_vec();
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut unit = wire::message(b'P', &parse);
    unit.extend(wire::message(b'B', b"\0\0\0\0\0\0\0\0"));
    unit.extend(wire::message(b'E', b"\0\0\0\0\0"));
    unit.extend(wire::message(b'S', b""));
    tokio::io::AsyncWriteExt::write_all(&mut raw, &unit)
        .await
        .expect("send the unit");
    let replies = wire::read_until_ready(&mut raw).await;
    assert!(
        replies.iter().all(|(tag, _)| *tag != b'E'),
        "no error: {replies:?}"
    );
    assert!(
        exists(&admin, "to_regprocedure('at_once()') IS NULL").await,
        "dropped in its own unit"
    );

    p.simple_query("SELECT 1").await.expect("session usable");
    env.proxy_client("trust_user")
        .await
        .simple_query("SELECT 1")
        .await
        .expect("another session works");
}
