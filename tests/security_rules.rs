//! Ways around the rules through statements ddlgate used not to check (issue 9, items 8 and 9):
//! each attack is first shown to work straight on the server (in a transaction rolled back, or on
//! a decoy), then sent through ddlgate in enforce mode with every warn-by-default rule set to
//! block — and must fail there, leaving the protected objects unchanged on the server while the
//! proxy and other sessions stay healthy.

mod common;

use common::*;
use ddlgate::rules::{Action, RULES};

/// Enforce mode with every warn-by-default rule blocking, as the attacker faced it.
fn strict(c: &mut ddlgate::config::Config) {
    for rule in RULES.iter().filter(|r| r.default_action == Action::Warn) {
        c.policy.rules.insert(rule.id.to_owned(), Action::Block);
    }
    // Verdicts must not depend on when autovacuum last analysed the small test tables.
    c.catalog.small_table_rows = 0;
}

/// Runs `sql` through ddlgate and asserts ddlgate blocked it under `rule`.
async fn assert_blocked(p: &tokio_postgres::Client, sql: &str, rule: &str) {
    assert_blocked_as(p, sql, rule, "DG001").await;
}

/// The same, with ddlgate's SQLSTATE for the block (DG002: not understood).
async fn assert_blocked_as(p: &tokio_postgres::Client, sql: &str, rule: &str, code: &str) {
    let err = p
        .simple_query(sql)
        .await
        .map(|_| ())
        .expect_err(&format!("must be blocked: {sql}"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not an ErrorResponse: {err}"));
    assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
    assert!(
        db.message().contains(rule),
        "{sql}: expected {rule}, got {}",
        db.message()
    );
    assert!(db.hint().is_some_and(|h| !h.is_empty()), "{sql}: a hint");
}

/// Shows that `sql` really does its damage when sent straight to the server, then undoes it.
async fn assert_works_directly(direct: &tokio_postgres::Client, sql: &str) {
    direct
        .batch_execute(&format!("BEGIN; {sql}; ROLLBACK"))
        .await
        .unwrap_or_else(|e| panic!("{sql} must run on the server itself: {e}"));
}

/// What must survive: the victim's kind, columns, the schema and the table in it.
async fn fingerprint(admin: &tokio_postgres::Client) -> String {
    admin
        .query_one(
            "SELECT (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) \
                     FROM pg_class WHERE relname IN ('victim', 'victim2')) || ' | ' || \
                    (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) \
                     FROM pg_attribute WHERE attrelid = 'public.victim'::regclass AND attnum > 0 AND NOT attisdropped) || ' | ' || \
                    (SELECT count(*) FROM pg_rewrite WHERE ev_class = 'public.victim'::regclass)::text || ' | ' || \
                    (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname LIKE 'app%')",
            &[],
        )
        .await
        .expect("fingerprint")
        .get(0)
}

async fn assert_healthy(env: &Env, p: &tokio_postgres::Client) {
    p.simple_query("SELECT 1")
        .await
        .expect("the session stays usable");
    let other = env.proxy_client("trust_user").await;
    other
        .simple_query("SELECT 1")
        .await
        .expect("another session through the proxy works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_renames_and_rules_that_reach_a_table_indirectly_are_blocked() {
    let env = Env::start_with(strict).await;
    let admin = env.direct_client("ddlgate_admin").await;
    // An empty table without indexes (so a "_RETURN" rule could turn it into a view), with a
    // column of an enum type and of a domain; a schema holding another table.
    admin
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok', 'sad');
             CREATE DOMAIN pos AS int CHECK (VALUE > 0);
             CREATE TYPE unused AS (a int);
             CREATE TABLE victim (id int, name text, m mood, p pos);
             CREATE SCHEMA app; CREATE TABLE app.victim2 (id int); CREATE INDEX v2_idx ON app.victim2 (id);
             ALTER TYPE mood OWNER TO trust_user; ALTER DOMAIN pos OWNER TO trust_user;
             ALTER TYPE unused OWNER TO trust_user; ALTER TABLE victim OWNER TO trust_user;
             ALTER SCHEMA app OWNER TO trust_user; ALTER TABLE app.victim2 OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    let before = fingerprint(&admin).await;
    // As a superuser: ALTER SCHEMA … RENAME needs CREATE on the database, too.
    let direct = env.direct_client("ddlgate_admin").await;
    let p = env.proxy_client("ddlgate_admin").await;
    let attacks = [
        ("DROP OWNED BY trust_user", "ban-drop-owned"),
        ("DROP TYPE mood CASCADE", "ban-drop-cascade"),
        ("DROP DOMAIN pos CASCADE", "ban-drop-cascade"),
        ("DROP SCHEMA app CASCADE", "ban-drop-cascade"),
        (
            "ALTER TYPE victim RENAME ATTRIBUTE name TO nm",
            "renaming-column",
        ),
        ("ALTER SCHEMA app RENAME TO app_old", "renaming-schema"),
        (
            "CREATE RULE \"_RETURN\" AS ON SELECT TO victim DO INSTEAD \
             SELECT 1::int AS id, 'x'::text AS name, 'ok'::mood AS m, 1::pos AS p",
            "ban-create-rule",
        ),
        (
            "CREATE RULE swallow AS ON INSERT TO victim DO INSTEAD NOTHING",
            "ban-create-rule",
        ),
        ("ALTER INDEX victim RENAME TO victim_x", "renaming-table"),
        (
            "ALTER VIEW victim RENAME COLUMN id TO ident",
            "renaming-column",
        ),
        (
            "ALTER MATERIALIZED VIEW victim RENAME COLUMN id TO ident",
            "renaming-column",
        ),
        (
            "ALTER FOREIGN TABLE victim RENAME COLUMN id TO ident",
            "renaming-column",
        ),
    ];
    for (sql, rule) in attacks {
        assert_works_directly(&direct, sql).await;
        assert_blocked(&p, sql, rule).await;
        assert_eq!(fingerprint(&admin).await, before, "after {sql}");
    }
    // The same statements on what they name pass: the rules decide on the catalog's facts.
    p.simple_query("ALTER INDEX app.v2_idx RENAME TO v2_idx_renamed")
        .await
        .expect("renaming a real index is allowed");
    p.simple_query("DROP TYPE unused")
        .await
        .expect("a DROP TYPE without CASCADE is allowed");
    assert_eq!(fingerprint(&admin).await, before);
    assert_healthy(&env, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dblink_and_copy_program_are_blocked_even_inside_dml() {
    let env = Env::start_with(strict).await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE EXTENSION dblink;
             CREATE TABLE victim (id int); INSERT INTO victim VALUES (1);
             CREATE TABLE decoy (id int); CREATE TABLE decoy2 (id int);",
        )
        .await
        .expect("setup");
    let remote = format!(
        "host=127.0.0.1 port={} dbname=postgres user=ddlgate_admin",
        env.pg.port()
    );
    // Straight on the server, dblink_exec drops a table from inside a SELECT, and COPY runs a
    // program.
    admin
        .execute(
            "SELECT dblink_exec($1, 'DROP TABLE decoy')",
            &[&remote.as_str()],
        )
        .await
        .expect("dblink works directly");
    admin
        .batch_execute("COPY decoy2 FROM PROGRAM 'echo 5'")
        .await
        .expect("COPY FROM PROGRAM works directly");
    let p = env.proxy_client("ddlgate_admin").await;
    let drop = format!("SELECT dblink_exec('{remote}', 'DROP TABLE victim')");
    assert_blocked(&p, &drop, "unverifiable-remote-sql").await;
    let spellings = [
        format!(
            "select * from public.DBLINK('{remote}', 'DROP TABLE victim; SELECT 1') AS t(x int)"
        ),
        format!(
            "WITH x AS (SELECT \"dblink_exec\"('{remote}', 'DROP TABLE victim')) SELECT * FROM x"
        ),
        format!(
            "SELECT dblink_connect('c', '{remote}'), dblink_send_query('c', 'DROP TABLE victim')"
        ),
        format!("CREATE TABLE loot AS SELECT dblink_exec('{remote}', 'DROP TABLE victim')"),
        format!("DO $$ BEGIN PERFORM dblink_exec('{remote}', 'DROP TABLE victim'); END $$"),
        // A wrapper would hide every later call.
        format!("CREATE VIEW trap AS SELECT dblink_exec('{remote}', 'DROP TABLE victim')"),
    ];
    for sql in &spellings {
        assert_blocked(&p, sql, "unverifiable-remote-sql").await;
    }
    // A function around it: its body's statement is reported first, by the body rule.
    let wrapper = format!(
        "CREATE FUNCTION trap() RETURNS text LANGUAGE sql AS $f$ SELECT dblink_exec('{remote}', 'DROP TABLE victim') $f$"
    );
    assert_blocked(&p, &wrapper, "ddl-in-function-body").await;
    // A Unicode-escaped identifier could spell dblink_exec: not understood, blocked.
    let escaped = format!("SELECT U&\"\\0064blink_exec\"('{remote}', 'DROP TABLE victim')");
    assert_blocked_as(&p, &escaped, "unparsed-ddl", "DG002").await;
    // The extended protocol (Parse) is checked the same way: the statement is replaced by
    // ddlgate's raising one (so no parameters here: the replacement takes none).
    let err = p
        .query(drop.as_str(), &[])
        .await
        .expect_err("blocked at Parse");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    assert_blocked(&p, "COPY victim FROM PROGRAM 'echo 2'", "ban-copy-program").await;
    let marker = std::env::temp_dir().join(format!("ddlgate-copy-{}", std::process::id()));
    let to_program = format!("COPY (SELECT 1) TO PROGRAM 'cat > {}'", marker.display());
    assert_blocked(&p, &to_program, "ban-copy-program").await;
    assert!(!marker.exists(), "the program must not have run");
    let rows: Vec<i32> = admin
        .query("SELECT id FROM victim ORDER BY id", &[])
        .await
        .expect("victim is still there")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1], "victim unchanged");
    // The word in a string, a comment or a column name is ordinary traffic.
    p.simple_query("SELECT 'dblink_exec(x)' /* dblink_exec( */, 1 AS dblink_id")
        .await
        .expect("mentions pass");
    let out = p
        .copy_out("COPY (SELECT 'program') TO STDOUT")
        .await
        .expect("COPY TO STDOUT passes");
    let chunks: Vec<_> = futures_util::TryStreamExt::try_collect(out)
        .await
        .expect("copy data");
    assert_eq!(chunks.concat(), b"program\n".to_vec());
    assert_healthy(&env, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_names_and_on_only_are_decided_on_server_facts() {
    let env = Env::start_with(strict).await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE SCHEMA s; CREATE DOMAIN s.text AS pg_catalog.text CHECK (VALUE <> ''); GRANT USAGE ON SCHEMA s TO trust_user;
             CREATE TABLE tv (c varchar(20)); INSERT INTO tv SELECT g::text FROM generate_series(1, 100) g;
             CREATE TABLE tv2 (c varchar(20)); INSERT INTO tv2 VALUES ('a');
             CREATE TABLE plain (x int); INSERT INTO plain SELECT generate_series(1, 100);
             CREATE TABLE parted (x int) PARTITION BY RANGE (x);
             CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);
             ALTER TABLE tv OWNER TO trust_user; ALTER TABLE tv2 OWNER TO trust_user;
             ALTER TABLE plain OWNER TO trust_user; ALTER TABLE parted OWNER TO trust_user;
             ALTER TABLE parted_1 OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    let column_type = |table: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = $1::text::regclass AND attname = 'c'",
                    &[&table],
                )
                .await
                .expect("column type")
                .get::<_, String>(0)
        }
    };
    let p = env.proxy_client("trust_user").await;
    // With s before pg_catalog, `text` is the domain with a CHECK: a full rewrite.
    p.simple_query("SET search_path = s, pg_catalog, public")
        .await
        .expect("search_path");
    let attack = "ALTER TABLE tv ALTER COLUMN c TYPE text";
    let direct = env.direct_client("trust_user").await;
    // On the server itself the statement rewrites the table (a new relfilenode).
    direct
        .batch_execute(&format!(
            "BEGIN; SET LOCAL search_path = s, pg_catalog, public; \
             CREATE TEMP TABLE before AS SELECT pg_catalog.pg_relation_filenode('public.tv') AS f; {attack}; \
             DO $$ BEGIN IF (SELECT f FROM before) = pg_catalog.pg_relation_filenode('public.tv') \
             THEN RAISE 'no rewrite'; END IF; END $$; ROLLBACK"
        ))
        .await
        .expect("on the server, `text` is the domain and the table is rewritten");
    assert_blocked(&p, attack, "changing-column-type").await;
    assert_eq!(column_type("tv").await, "character varying(20)");
    // With the default search_path `text` is the built-in: binary-coercible, allowed.
    p.simple_query("RESET search_path").await.expect("reset");
    p.simple_query("ALTER TABLE tv2 ALTER COLUMN c TYPE text")
        .await
        .expect("varchar → built-in text rewrites nothing");
    assert_eq!(column_type("tv2").await, "text");

    // ON ONLY on a plain table builds a normal index under SHARE: not exempt.
    p.batch_execute("BEGIN").await.expect("begin");
    assert_blocked(
        &p,
        "CREATE INDEX plain_x ON ONLY plain (x)",
        "require-concurrent-index-creation",
    )
    .await;
    p.batch_execute("ROLLBACK").await.expect("rollback");
    let exists = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one("SELECT count(*) FROM pg_class WHERE relname = $1", &[&name])
                .await
                .expect("pg_class")
                .get::<_, i64>(0)
                == 1
        }
    };
    assert!(!exists("plain_x").await);
    // On the partitioned parent it builds nothing and stays exempt, in a transaction too.
    p.batch_execute("BEGIN; CREATE INDEX parted_x ON ONLY parted (x); COMMIT")
        .await
        .expect("ON ONLY on a partitioned table is allowed");
    assert!(exists("parted_x").await);
    assert_healthy(&env, &p).await;
}
