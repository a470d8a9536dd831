//! What a client reads when ddlgate blocks a statement, through real clients on real
//! PostgreSQL: every block carries its SQLSTATE, a message naming its rule(s), a hint with the
//! exact override comment (which then works), and no CONTEXT line about ddlgate's DO block —
//! while the server's own errors keep theirs. A typo is answered by the server's own syntax
//! error (42601), and a typo cannot carry anything past ddlgate.

mod common;

use common::*;

/// Tables `p (id pk)` and `c (a int, constraint x unique (a))`, owned by `trust_user`, with
/// enough rows that nothing counts as small; the small-table exemption is off besides, so the
/// verdicts do not depend on statistics.
async fn setup() -> (Env, tokio_postgres::Client) {
    let env = Env::start_with(|c| c.catalog.small_table_rows = 0).await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT g FROM generate_series(1, 100) g;
             CREATE TABLE c (a int, CONSTRAINT x UNIQUE (a)); INSERT INTO c SELECT g FROM generate_series(1, 100) g;
             ALTER TABLE p OWNER TO trust_user; ALTER TABLE c OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    (env, admin)
}

/// The definition of constraint `x`, read straight on the server.
async fn constraint_x(admin: &tokio_postgres::Client) -> String {
    admin
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'x' AND conrelid = 'c'::regclass",
            &[],
        )
        .await
        .expect("constraint x")
        .get(0)
}

/// The override comment a hint names: `/* ddlgate:allow … */`.
fn override_in(hint: &str) -> String {
    let start = hint
        .find("/* ddlgate:allow ")
        .unwrap_or_else(|| panic!("no override comment in hint: {hint}"));
    let end = hint[start..]
        .find("*/")
        .unwrap_or_else(|| panic!("unterminated comment in hint: {hint}"));
    hint[start..start + end + 2].to_owned()
}

/// Two actions with ONLY: ddlgate splits a multi-action ALTER TABLE into safe steps outside a
/// transaction (issue 12), but not one with ONLY, so this stays blocked on every path.
const SWAP: &str =
    "ALTER TABLE ONLY c DROP CONSTRAINT x, ADD CONSTRAINT x FOREIGN KEY (a) REFERENCES p(id)";

async fn still_healthy(env: &Env) {
    let other = env.proxy_client("trust_user").await;
    other
        .simple_query("SELECT 1")
        .await
        .expect("another session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_names_its_rule_and_override_and_shows_no_context() {
    let (env, admin) = setup().await;
    let before = constraint_x(&admin).await;
    let client = env.proxy_client("trust_user").await;
    // Simple protocol outside a transaction (no split: ONLY), extended
    // protocol, and inside a transaction block: the same readable error each time.
    let mut errors = Vec::new();
    errors.push(client.simple_query(SWAP).await.expect_err("blocked"));
    errors.push(client.execute(SWAP, &[]).await.expect_err("blocked"));
    client.batch_execute("BEGIN").await.expect("begin");
    errors.push(client.simple_query(SWAP).await.expect_err("blocked"));
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let mut comment = None;
    for e in &errors {
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(db.code().code(), "DG001", "{db:?}");
        assert!(
            db.message().starts_with(
                "ddlgate blocked this statement (rule adding-foreign-key-constraint: "
            ),
            "{db:?}"
        );
        let hint = db.hint().unwrap_or_default();
        let c = override_in(hint);
        assert_eq!(
            c,
            "/* ddlgate:allow adding-foreign-key-constraint reason=\"…\" */"
        );
        assert_eq!(hint.matches("ddlgate:allow").count(), 1, "{hint}");
        assert_eq!(db.where_(), None, "no CONTEXT: {db:?}");
        comment = Some(c);
    }
    assert_eq!(constraint_x(&admin).await, before, "nothing changed");
    still_healthy(&env).await;

    // The server's own errors keep their CONTEXT, in the same session.
    let e = client
        .simple_query("DO $$ BEGIN RAISE EXCEPTION 'mine'; END $$")
        .await
        .expect_err("raises");
    let db = e.as_db_error().expect("db error");
    assert_eq!(db.code().code(), "P0001");
    assert!(
        db.where_().is_some_and(|w| w.contains("inline_code_block")),
        "{db:?}"
    );

    // The comment from the hint allows the statement as written.
    let comment = comment.expect("a comment").replace('…', "checked by hand");
    client
        .simple_query(&format!("{comment} {SWAP}"))
        .await
        .expect("overridden");
    assert_eq!(
        constraint_x(&admin).await,
        "FOREIGN KEY (a) REFERENCES p(id)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_the_rule_and_the_override_but_no_context() {
    let (env, admin) = setup().await;
    let before = constraint_x(&admin).await;
    let port = env.proxy_addr().port();
    let out = env.psql(port, "trust_user", &["-c", SWAP], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("ERROR:  ddlgate blocked this statement (rule adding-foreign-key-constraint"),
        "{stderr}"
    );
    assert!(
        stderr.contains("HINT:")
            && stderr.contains("/* ddlgate:allow adding-foreign-key-constraint reason=\"…\" */"),
        "{stderr}"
    );
    assert!(!stderr.contains("CONTEXT"), "{stderr}");
    assert_eq!(constraint_x(&admin).await, before, "nothing changed");

    // unparsed DDL: the override is stated once, and there is no CONTEXT either.
    let out = env
        .psql(port, "trust_user", &["-c", "ALTER FROBNICATE c"], None)
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DG002") || stderr.contains("unparsed-ddl"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("ddlgate:allow").count(), 1, "{stderr}");
    assert!(!stderr.contains("CONTEXT"), "{stderr}");

    // A typo: the server's own syntax error.
    let out = env.psql(port, "trust_user", &["-c", "selec 1"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("syntax error at or near \"selec\""),
        "{stderr}"
    );
    still_healthy(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_get_the_servers_syntax_error_and_carry_nothing_past_ddlgate() {
    let (env, admin) = setup().await;
    let client = env.proxy_client("trust_user").await;
    for sql in [
        "selec 1",
        "/* note */ -- typo\n  SELEC 1",
        "créate table z ()",
    ] {
        let e = client.simple_query(sql).await.expect_err("syntax error");
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"), "{sql}: {e:?}");
        let e = client.execute(sql, &[]).await.expect_err("syntax error");
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"), "{sql}: {e:?}");
    }
    // A typo next to DDL in one message: the server rejects the whole message before running
    // any of it, and ddlgate still checks the DDL.
    for sql in [
        "selec 1; DROP TABLE c",
        "DROP TABLE c; selec 1",
        "droptable c; ALTER TABLE c DROP COLUMN a",
    ] {
        let e = client.simple_query(sql).await.expect_err("refused");
        let code = sqlstate(&e).unwrap_or_default();
        assert!(code == "42601" || code.starts_with("DG"), "{sql}: {e:?}");
    }
    // A quoted identifier or U& identifier is no way around: those stay DDL candidates.
    for sql in ["\"DROP\" TABLE c", "U&\"DROP\" TABLE c"] {
        let e = client.simple_query(sql).await.expect_err("refused");
        let code = sqlstate(&e).unwrap_or_default();
        assert!(code == "42601" || code.starts_with("DG"), "{sql}: {e:?}");
    }
    let n: i64 = admin
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .expect("c is still there")
        .get(0);
    assert_eq!(n, 100);
    let cols: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'c'::regclass AND attname = 'a' AND NOT attisdropped",
            &[],
        )
        .await
        .expect("attribute")
        .get(0);
    assert_eq!(cols, 1, "column a is still there");
    client
        .simple_query("SELECT 1")
        .await
        .expect("session healthy");
    still_healthy(&env).await;
}
