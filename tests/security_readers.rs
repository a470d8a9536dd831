//! Issue 9, items 1 and 7, as an attacker tries them: statements too deep or too long to read
//! must neither crash the proxy nor `ddlgate check` (they are refused as unparsed), and DO
//! blocks and function bodies written to be misread (escape strings, Unicode strings, dynamic
//! SQL that starts like a SELECT, a language ddlgate cannot read) must not change the protected
//! table. Every attack is checked on the server directly, and the session and another one stay
//! usable.

mod common;

use common::*;
use ddlgate::rules::{Action, RULES};

/// The SQLSTATE of a statement ddlgate blocked for a rule, and of one it could not read.
const BLOCKED: &str = "DG001";
const UNPARSED: &str = "DG002";

/// Every rule that only warns by default blocks here, as in the issue's attack setup.
fn every_warning_blocks(c: &mut ddlgate::config::Config) {
    for r in RULES.iter().filter(|r| r.default_action == Action::Warn) {
        c.policy.rules.insert(r.id.to_owned(), Action::Block);
    }
}

/// Creates `victim` (10 rows, owned by `trust_user`); returns the superuser's direct client.
async fn victim(env: &Env) -> tokio_postgres::Client {
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE TABLE victim (id int); INSERT INTO victim SELECT generate_series(1, 10);
             ALTER TABLE victim OWNER TO trust_user;",
        )
        .await
        .expect("victim");
    admin
}

/// The victim's rows, read on the server directly; `None` once it is gone.
async fn victim_rows(admin: &tokio_postgres::Client) -> Option<i64> {
    admin
        .query_one("SELECT count(*) FROM victim", &[])
        .await
        .ok()
        .map(|r| r.get(0))
}

async fn function_exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    admin
        .query_one("SELECT count(*) FROM pg_proc WHERE proname = $1", &[&name])
        .await
        .map(|r| r.get::<_, i64>(0) > 0)
        .expect("pg_proc")
}

/// Runs `sql` through the proxy, expects ddlgate's refusal with `code`, and checks that the
/// session is still usable afterwards.
async fn refused(client: &tokio_postgres::Client, sql: &str, code: &str) {
    let err = client
        .simple_query(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("must be refused: {}", excerpt(sql)));
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some(code),
        "{}: {err:?}",
        excerpt(sql)
    );
    let one = client
        .simple_query("SELECT 1")
        .await
        .expect("the session stays usable");
    assert!(!one.is_empty());
}

fn excerpt(sql: &str) -> String {
    sql.chars().take(120).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_long_statements_are_refused_as_unparsed_and_nothing_crashes() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    let bystander = env.proxy_client("trust_user").await;
    let client = env.proxy_client("trust_user").await;
    let n = 35_000;
    for sql in [
        format!("CREATE VIEW v AS SELECT 1{}", "+1".repeat(n)),
        format!("CREATE VIEW v AS SELECT 'a'{}", "||'a'".repeat(n)),
        format!("CREATE VIEW v AS SELECT true{}", " OR true".repeat(n)),
        format!("CREATE VIEW v AS SELECT 1{}", " UNION SELECT 1".repeat(n)),
        format!(
            "CREATE VIEW v AS SELECT {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
    ] {
        refused(&client, &sql, UNPARSED).await;
    }
    // Nothing was created.
    let views: i64 = admin
        .query_one("SELECT count(*) FROM pg_views WHERE viewname = 'v'", &[])
        .await
        .expect("pg_views")
        .get(0);
    assert_eq!(views, 0);
    // Deeply nested blocks and dollar quotes are read without recursion: the proxy forwards
    // them and the server answers (PL/pgSQL itself gives up on this nesting).
    let nested = format!(
        "DO $$ {}NULL;{} $$",
        "BEGIN ".repeat(20_000),
        " END;".repeat(20_000)
    );
    let _ = client.simple_query(&nested).await;
    // DO blocks nested through dynamic SQL, each in its own dollar quotes: ddlgate does not
    // follow a nested DO (so it does not recurse either) and refuses what it cannot check.
    let mut body = "NULL;".to_owned();
    for i in (1..2_000).rev() {
        body = format!("BEGIN EXECUTE $q{i}$ DO $d{i}$ {body} $d{i}$ $q{i}$; END");
    }
    refused(&client, &format!("DO $q0$ {body} $q0$"), BLOCKED).await;
    // The longest chain ddlgate still reads (just under its bound) is parsed on a worker
    // thread without overflowing; the server decides about it.
    let under = format!(
        "CREATE VIEW v2 AS SELECT 1{}",
        "+1".repeat(ddlgate::sql::parse::MAX_CHAIN - 10)
    );
    if let Err(e) = client.simple_query(&under).await {
        assert_ne!(sqlstate(&e).as_deref(), Some(UNPARSED), "{e:?}");
        assert_ne!(sqlstate(&e).as_deref(), Some(BLOCKED), "{e:?}");
    }
    // The proxy and the other session are fine.
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("another session stays usable");
    env.proxy_client("trust_user")
        .await
        .simple_query("SELECT 1")
        .await
        .expect("new sessions are accepted");
}

use common::binary::run_cli as ddlgate;

#[test]
fn check_refuses_deep_statements_without_crashing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 350_000;
    let files = [
        (
            "plus.sql",
            format!("CREATE VIEW v AS SELECT 1{};\n", "+1".repeat(n)),
        ),
        (
            "concat.sql",
            format!("CREATE VIEW v AS SELECT 'a'{};\n", "||'a'".repeat(n)),
        ),
        (
            "or.sql",
            format!("CREATE VIEW v AS SELECT true{};\n", " OR true".repeat(n)),
        ),
        (
            "parens.sql",
            format!(
                "CREATE VIEW v AS SELECT {}1{};\n",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
    ];
    for (name, sql) in &files {
        std::fs::write(dir.path().join(name), sql).expect("write");
        let out = ddlgate(&["check", name], dir.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Exit status 1 is "would be blocked"; a crash has no status (killed by a signal).
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("unparsed-ddl"), "{name}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_written_to_be_misread_do_not_change_the_victim() {
    let env = Env::start_with(every_warning_blocks).await;
    let admin = victim(&env).await;
    // A language under another name with PL/pgSQL's own handler.
    admin
        .batch_execute(
            "CREATE TRUSTED LANGUAGE plpgsql_alias HANDLER plpgsql_call_handler
               INLINE plpgsql_inline_handler VALIDATOR plpgsql_validator;
             GRANT USAGE ON LANGUAGE plpgsql_alias TO trust_user;",
        )
        .await
        .expect("language alias");
    let bystander = env.proxy_client("trust_user").await;
    let client = env.proxy_client("trust_user").await;
    // A `format` of the attacker's own, found before pg_catalog's on the search_path.
    admin
        .batch_execute(
            "CREATE SCHEMA evil AUTHORIZATION trust_user;
             CREATE FUNCTION evil.format(text, text) RETURNS text LANGUAGE sql
               AS $$ SELECT 'DROP TABLE victim' $$;
             GRANT EXECUTE ON FUNCTION evil.format(text, text) TO trust_user;",
        )
        .await
        .expect("shadowing format");
    // The shadow is real: on the server, that search_path makes format() the attacker's.
    let direct = env.direct_client("trust_user").await;
    direct
        .batch_execute("SET search_path = evil, pg_catalog")
        .await
        .expect("search_path");
    let shadowed: String = direct
        .query_one("SELECT format('SELECT %I', 'x')", &[])
        .await
        .expect("shadowed format")
        .get(0);
    assert_eq!(shadowed, "DROP TABLE victim");
    // Harmless blocks are still allowed: the refusals below are not blanket ones.
    client
        .batch_execute(r"DO E'BEGIN EXECUTE ''SELECT 1''; PERFORM 1; END'")
        .await
        .expect("a harmless escaped block runs");
    client
        .batch_execute("DO $$ BEGIN EXECUTE pg_catalog.format('SELECT %L', 'x'); END $$")
        .await
        .expect("a qualified format() template is read and runs");
    for (sql, code) in [
        (r"DO E'BEGIN \x44ROP TABLE victim; END'", BLOCKED),
        (r"DO E'BEGIN \104ROP TABLE victim; END'", BLOCKED),
        (r"DO E'BEGIN \u0044ROP TABLE victim; END'", BLOCKED),
        (r"DO U&'BEGIN \0044ROP TABLE victim; END'", BLOCKED),
        (
            r"DO U&'BEGIN !0044ROP TABLE victim; END' UESCAPE '!'",
            BLOCKED,
        ),
        (
            r"DO $$ BEGIN EXECUTE E'\x44ROP TABLE victim'; END $$",
            BLOCKED,
        ),
        (
            "DO $$ BEGIN EXECUTE substr('SELECT DROP TABLE victim', 8); END $$",
            BLOCKED,
        ),
        (
            "DO $$ BEGIN EXECUTE 'SELECT 1; ' || 'DROP TABLE victim'; END $$",
            BLOCKED,
        ),
        (
            "DO $$ BEGIN EXECUTE format('SELECT 1; %s', 'DROP TABLE victim'); END $$",
            BLOCKED,
        ),
        (
            "DO $$ BEGIN EXECUTE format('SELECT %I', 'x') || format('; DROP TABLE victim'); END $$",
            BLOCKED,
        ),
        (
            "DO LANGUAGE plpgsql_alias $$ BEGIN DROP TABLE victim; END $$",
            BLOCKED,
        ),
        (
            "DO $$ #variable_conflict use_variable\nBEGIN DROP TABLE victim; END $$",
            BLOCKED,
        ),
        // An escape ddlgate refuses to guess at (`\v`): not read at all.
        (r"DO E'BEGIN \vROP TABLE victim; END'", UNPARSED),
    ] {
        refused(&client, sql, code).await;
        assert_eq!(victim_rows(&admin).await, Some(10), "{sql}");
    }
    // Functions: the definition is refused, so no call can run the body later.
    for (name, sql) in [
        (
            "kill_escaped",
            r"CREATE FUNCTION kill_escaped() RETURNS void LANGUAGE plpgsql AS E'BEGIN \x44ROP TABLE victim; END'",
        ),
        (
            "kill_unicode",
            r"CREATE FUNCTION kill_unicode() RETURNS void LANGUAGE plpgsql AS U&'BEGIN \0044ROP TABLE victim; END'",
        ),
        (
            "kill_alias",
            "CREATE FUNCTION kill_alias() RETURNS void LANGUAGE plpgsql_alias AS $$ BEGIN DROP TABLE victim; END $$",
        ),
        (
            "kill_nested",
            "DO $$ BEGIN CREATE FUNCTION kill_nested() RETURNS void LANGUAGE plpgsql AS 'BEGIN DROP TABLE victim; END'; END $$",
        ),
        (
            "kill_dynamic",
            "CREATE FUNCTION kill_dynamic() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SELECT 1; ' || 'DROP TABLE victim'; END $$",
        ),
    ] {
        refused(&client, sql, BLOCKED).await;
        assert!(!function_exists(&admin, name).await, "{name} was created");
        assert_eq!(victim_rows(&admin).await, Some(10), "{name}");
    }
    client
        .batch_execute("SET search_path = evil, pg_catalog, public")
        .await
        .expect("search_path");
    refused(
        &client,
        "DO $$ BEGIN EXECUTE format('SELECT %I', 'x'); END $$",
        BLOCKED,
    )
    .await;
    assert_eq!(victim_rows(&admin).await, Some(10));
    client
        .batch_execute("RESET search_path")
        .await
        .expect("search_path");
    // With standard_conforming_strings off, a plain literal is an escape string too.
    client
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .expect("scs off");
    refused(&client, r"DO 'BEGIN \x44ROP TABLE victim; END'", BLOCKED).await;
    assert_eq!(victim_rows(&admin).await, Some(10));
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("another session stays usable");
}

/// Runs one simple Query on a raw connection; returns the SQLSTATE of its error, if any.
async fn raw_query(s: &mut tokio::net::TcpStream, sql: &[u8]) -> Option<String> {
    use tokio::io::AsyncWriteExt;
    let mut body = sql.to_vec();
    body.push(0);
    s.write_all(&wire::message(b'Q', &body))
        .await
        .expect("send query");
    let msgs = wire::read_until_ready(s).await;
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'), "{msgs:?}");
    msgs.iter()
        .find(|m| m.0 == b'E')
        .map(|m| wire::error_fields(&m.1).1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multibyte_client_encoding_cannot_hide_a_statement_in_a_body() {
    let env = Env::start_with(every_warning_blocks).await;
    let admin = victim(&env).await;
    let mut s = wire::connect_trust(env.proxy_addr()).await;
    assert_eq!(
        raw_query(&mut s, b"SET client_encoding = 'SJIS'").await,
        None
    );
    // 0x95 0x5C is one SJIS character; read as bytes, its 0x5C would escape the quote after
    // it and hide the DROP inside the literal.
    for sql in [
        &b"DO $$ BEGIN RAISE NOTICE E'\x95\x5c'; DROP TABLE victim; --'; END $$"[..],
        b"DO E'BEGIN RAISE NOTICE E''\x95\x5c''; DROP TABLE victim; --''; END'",
    ] {
        assert_eq!(
            raw_query(&mut s, sql).await.as_deref(),
            Some(BLOCKED),
            "{}",
            String::from_utf8_lossy(sql)
        );
        assert_eq!(victim_rows(&admin).await, Some(10));
    }
    // The session and the proxy are fine; the same character in a harmless body runs.
    assert_eq!(
        raw_query(&mut s, b"DO $$ BEGIN RAISE NOTICE E'\x95\x5c'; END $$").await,
        None
    );
    assert_eq!(raw_query(&mut s, b"SELECT 1").await, None);
}
