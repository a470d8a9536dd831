//! Catalog facts for the statements inside a `DO` block, against a real PostgreSQL.
//!
//! Migration histories wrap DDL in `DO $$ BEGIN IF NOT EXISTS (SELECT … FROM pg_indexes …)
//! THEN CREATE INDEX … END IF; END $$` for idempotency. The body's statements are decided with
//! the facts read at the block's statement boundary — as the same statement sent on its own
//! would be — but only while nothing that runs before them, in the body or in the message,
//! could have changed those facts (`rules::body::facts_plan`, `analysis::decide`). Every
//! hostile body here targets an empty table, where facts would let the index through: each
//! must still be refused.

mod common;

use common::*;
use tokio_postgres::Client;

/// Small thresholds (100 rows) so that 2000 rows are "big" without a slow fill.
fn small_thresholds(c: &mut ddlgate::config::Config) {
    c.catalog.small_table_rows = 100;
    c.catalog.small_table_bytes = 10 << 20;
}

/// Fresh `e (id, x)` with `rows` rows and `big (id, x)` with 2000, never analyzed, owned by
/// the client's user, autovacuum off; `evil.e` too, big, for the search_path cases.
async fn set_up(admin: &Client, rows: u32) {
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS e, e_old, big CASCADE; DROP SCHEMA IF EXISTS evil CASCADE;
             DROP VIEW IF EXISTS public.pg_indexes; DROP FUNCTION IF EXISTS yes();
             DROP DOMAIN IF EXISTS filling; DROP FUNCTION IF EXISTS fill_e();
             CREATE TABLE e (id int, x int) WITH (autovacuum_enabled = off);
             CREATE TABLE big (id int, x int) WITH (autovacuum_enabled = off);
             INSERT INTO e SELECT g, g FROM generate_series(1, {rows}) g;
             INSERT INTO big SELECT g, g FROM generate_series(1, 2000) g;
             CREATE SCHEMA evil AUTHORIZATION trust_user;
             CREATE TABLE evil.e (id int, x int) WITH (autovacuum_enabled = off);
             INSERT INTO evil.e SELECT g, g FROM generate_series(1, 2000) g;
             ALTER TABLE e OWNER TO trust_user; ALTER TABLE big OWNER TO trust_user;
             ALTER TABLE evil.e OWNER TO trust_user;
             CREATE FUNCTION yes() RETURNS boolean LANGUAGE sql AS 'SELECT true';
             CREATE FUNCTION fill_e() RETURNS boolean LANGUAGE plpgsql AS
               'BEGIN INSERT INTO public.e SELECT g, g FROM generate_series(1, 5000) g; RETURN true; END';
             CREATE DOMAIN filling AS text CHECK (fill_e());
             GRANT CREATE ON SCHEMA public TO trust_user;"
        ))
        .await
        .expect("setup");
}

/// How many indexes `e` (the one in public) and `evil.e` have.
async fn indexes(admin: &Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid IN ('public.e'::regclass, 'evil.e'::regclass, 'big'::regclass)",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

/// The idempotent shape of real histories.
const IDEMPOTENT: &str = "DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'e' AND indexname = 'e_x_idx') THEN
    CREATE INDEX e_x_idx ON e (x);
  END IF;
END $$";

/// supabase/auth's shape: the statement guarded by an exception handler.
const HANDLED: &str = "DO $$ BEGIN
  CREATE INDEX e_id_idx ON e (id);
EXCEPTION WHEN duplicate_table THEN RAISE NOTICE 'already there';
END $$";

#[tokio::test]
async fn do_blocks_on_empty_tables_pass_and_on_big_tables_are_refused() {
    let env = Env::start_with(small_thresholds).await;
    let admin = env.direct_client("ddlgate_admin").await;
    set_up(&admin, 0).await;
    let client = env.proxy_client("trust_user").await;
    client
        .batch_execute(IDEMPOTENT)
        .await
        .expect("an index on an empty table inside a DO block passes");
    assert_eq!(indexes(&admin).await, 1);
    // Run again: the condition is false now, nothing happens, and it still passes.
    client.batch_execute(IDEMPOTENT).await.expect("again");
    client
        .batch_execute(&format!("BEGIN; {HANDLED}; COMMIT"))
        .await
        .expect("inside a transaction block, with an exception handler");
    assert_eq!(indexes(&admin).await, 2);
    // A foreign key to an empty table, as a top-level statement would be decided.
    client
        .batch_execute("DO $$ BEGIN ALTER TABLE e ADD CONSTRAINT e_pk PRIMARY KEY (id); END $$")
        .await
        .expect("a primary key on an empty table inside a DO block passes");
    let fk = "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.table_constraints WHERE constraint_name = 'e_self') THEN
               ALTER TABLE e ADD CONSTRAINT e_self FOREIGN KEY (x) REFERENCES e (id); END IF; END $$";
    // After another DDL statement in the same message, the facts read before it no longer
    // hold: refused, as a top-level statement after a DO block would be.
    let err = client
        .batch_execute(&format!("CREATE INDEX e_id2 ON e (id); {fk}"))
        .await
        .expect_err("no facts after DDL in the same message");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    client
        .batch_execute(fk)
        .await
        .expect("a foreign key to an empty table inside a DO block passes");

    // The same blocks on a table above the thresholds: refused, nothing created.
    set_up(&admin, 2000).await;
    for sql in [IDEMPOTENT, HANDLED] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{sql}: {err:?}");
        let text = format!("{err:?}");
        assert!(text.contains("require-concurrent-index-creation"), "{text}");
    }
    assert_eq!(indexes(&admin).await, 0);
    still_serves(&env).await;
}

#[tokio::test]
async fn bodies_that_may_change_the_facts_are_decided_without_them() {
    let env = Env::start_with(small_thresholds).await;
    let admin = env.direct_client("ddlgate_admin").await;
    set_up(&admin, 0).await;
    let client = env.proxy_client("trust_user").await;
    let hostile = [
        // The name resolves elsewhere once the body has changed the search_path.
        "DO $$ BEGIN SET search_path = evil, public; CREATE INDEX ON e (x); END $$",
        "DO $$ BEGIN PERFORM set_config('search_path', 'evil, public', true); CREATE INDEX ON e (x); END $$",
        // A big table renamed into the place of the empty one.
        "DO $$ BEGIN ALTER TABLE e RENAME TO e_old; ALTER TABLE big RENAME TO e; CREATE INDEX ON e (x); END $$",
        "DO $$ BEGIN CREATE TABLE e_old (id int); ALTER TABLE big RENAME TO e_new; CREATE INDEX ON e (x); END $$",
        // A temp table shadows it.
        "DO $$ BEGIN CREATE TEMP TABLE e AS SELECT * FROM big; CREATE INDEX ON e (x); END $$",
        // Rows written before the index build.
        "DO $$ BEGIN INSERT INTO e SELECT g, g FROM generate_series(1, 5000) g; CREATE INDEX ON e (x); END $$",
        "DO $$ BEGIN FOR i IN 1..3 LOOP INSERT INTO e SELECT g, g FROM generate_series(1, 2000) g; CREATE INDEX ON e (x); END LOOP; END $$",
        "DO $$ BEGIN EXECUTE 'INSERT INTO e SELECT g, g FROM generate_series(1, 5000) g'; CREATE INDEX ON e (x); END $$",
        "DO $$ BEGIN DO $i$ BEGIN INSERT INTO e SELECT g, g FROM generate_series(1, 5000) g; END $i$; CREATE INDEX ON e (x); END $$",
        // A condition that runs a user's function.
        "DO $$ BEGIN IF yes() THEN CREATE INDEX ON e (x); END IF; END $$",
        // A condition casting to a domain, whose CHECK runs a user's function (here one that
        // fills the table), or naming a literal of it.
        "DO $$ BEGIN IF 'x'::filling IS NOT NULL THEN CREATE INDEX ON e (x); END IF; END $$",
        "DO $$ BEGIN IF filling 'x' IS NOT NULL THEN CREATE INDEX ON e (x); END IF; END $$",
        // Rows written earlier in the same message.
        "INSERT INTO e SELECT g, g FROM generate_series(1, 5000) g; DO $$ BEGIN CREATE INDEX ON e (x); END $$",
        "SET search_path = evil, public; DO $$ BEGIN CREATE INDEX ON e (x); END $$",
    ];
    for sql in hostile {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{sql}: {err:?}");
        assert_eq!(indexes(&admin).await, 0, "{sql}: nothing may have run");
        client
            .batch_execute("RESET search_path")
            .await
            .expect("reset");
    }
    // A condition reading `pg_indexes` when the search_path puts a user's view of that name
    // first: the read cannot prove the condition harmless, so no facts. (On a fresh `e`: the
    // rows the refused INSERTs above rolled back still fill its heap, which is not small.)
    set_up(&admin, 0).await;
    admin
        .batch_execute(
            "CREATE VIEW public.pg_indexes AS SELECT 'e'::name AS tablename, 'z'::name AS indexname WHERE yes()",
        )
        .await
        .expect("view");
    client
        .batch_execute("SET search_path = public, pg_catalog")
        .await
        .expect("set");
    let err = client.batch_execute(IDEMPOTENT).await.expect_err("refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    // With pg_catalog first again, the same block passes.
    client
        .batch_execute("RESET search_path")
        .await
        .expect("reset");
    client.batch_execute(IDEMPOTENT).await.expect("passes");
    assert_eq!(indexes(&admin).await, 1);
    still_serves(&env).await;
}
