//! Self-test of the PostgreSQL test harness (`tests/common/pg.rs`): roles and
//! auth methods, isolation of concurrent clusters, crash/restart, psql.

mod common;

use common::pg::{self, PgCluster};
use tokio_postgres::{Client, NoTls, error::SqlState};

async fn connect(conn_str: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn_str, NoTls).await?;
    tokio::spawn(async move {
        // Ends with an error when the server goes away; tests notice that
        // through the client.
        let _ = connection.await;
    });
    Ok(client)
}

async fn current_user(client: &Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("SELECT current_user")
        .get(0)
}

#[tokio::test]
async fn every_role_logs_in_with_its_auth_method() {
    let pg = PgCluster::start();
    assert!(
        pg.major_version() >= 10,
        "unexpected version {}",
        pg.major_version()
    );

    for user in [pg::ADMIN_USER, pg::TRUST_USER, pg::MD5_USER, pg::SCRAM_USER] {
        let client = connect(&pg.conn_str(user, pg::password_for(user)))
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}\n{}", pg.log()));
        assert_eq!(current_user(&client).await, user);
    }

    // The hba method only matters if the stored hash matches it: md5 auth
    // needs an MD5 hash, and scram-sha-256 auth needs a SCRAM verifier.
    let admin = connect(&pg.admin_conn_str())
        .await
        .expect("connect as admin");
    let row = admin
        .query_one(
            "SELECT (SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'md5_user'),
                    (SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'scram_user'),
                    (SELECT rolsuper FROM pg_roles WHERE rolname = 'ddlgate_admin')",
            &[],
        )
        .await
        .expect("query pg_authid");
    assert!(
        row.get::<_, bool>(0),
        "md5_user password is not an MD5 hash"
    );
    assert!(
        row.get::<_, bool>(1),
        "scram_user password is not a SCRAM verifier"
    );
    assert!(row.get::<_, bool>(2), "ddlgate_admin is not a superuser");

    // The users can create objects (PG15+ revoked CREATE on schema public).
    let scram = connect(&pg.conn_str(pg::SCRAM_USER, pg::password_for(pg::SCRAM_USER)))
        .await
        .expect("connect as scram_user");
    scram
        .batch_execute("CREATE TABLE t (id int); CREATE SCHEMA s; DROP TABLE t;")
        .await
        .expect("scram_user can create in public and create schemas");

    for user in [pg::MD5_USER, pg::SCRAM_USER] {
        let err = match connect(&pg.conn_str(user, Some("wrong"))).await {
            Ok(_) => panic!("{user} logged in with a wrong password"),
            Err(e) => e,
        };
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{user} with wrong password: {err}"
        );
    }
    assert!(
        pg.log()
            .contains("password authentication failed for user \"md5_user\""),
        "server log should record the failed md5 login:\n{}",
        pg.log()
    );
}

#[tokio::test]
async fn concurrent_clusters_are_independent() {
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(PgCluster::start),
        tokio::task::spawn_blocking(PgCluster::start)
    );
    let (a, b) = (a.expect("start cluster a"), b.expect("start cluster b"));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());

    let ca = connect(&a.admin_conn_str()).await.expect("connect to a");
    let cb = connect(&b.admin_conn_str()).await.expect("connect to b");
    ca.batch_execute("CREATE TABLE only_in_a (x int)")
        .await
        .expect("create in a");
    let in_b: i64 = cb
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'",
            &[],
        )
        .await
        .expect("query b")
        .get(0);
    assert_eq!(in_b, 0, "clusters share state");
}

#[tokio::test]
async fn stop_immediate_then_restart_on_same_port() {
    let pg = PgCluster::start();
    let port = pg.port();
    let client = connect(&pg.admin_conn_str()).await.expect("connect");
    // The clusters run with synchronous_commit = off, so a commit may still
    // sit in WAL buffers when the server is killed; ask for this one to be
    // written out (fsync = off still makes that cheap) so it survives.
    client
        .batch_execute(
            "SET synchronous_commit = on;
             CREATE TABLE survives (x int); INSERT INTO survives VALUES (1)",
        )
        .await
        .expect("create table");

    pg.stop_immediate();
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "server still answers"
    );
    assert!(
        connect(&pg.admin_conn_str()).await.is_err(),
        "server still accepts"
    );

    pg.restart();
    assert_eq!(pg.port(), port);
    let client = connect(&pg.admin_conn_str())
        .await
        .expect("reconnect after restart");
    let n: i64 = client
        .query_one("SELECT count(*) FROM survives", &[])
        .await
        .expect("table survives crash recovery")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn psql_runs_against_the_cluster() {
    let pg = PgCluster::start();
    for user in [pg::ADMIN_USER, pg::MD5_USER, pg::SCRAM_USER] {
        let out = pg.psql(pg.port(), user, &["-At", "-c", "SELECT 1"], None);
        assert!(
            out.status.success(),
            "psql as {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    }

    let out = pg.psql(
        pg.port(),
        pg::TRUST_USER,
        &["-At", "-v", "ON_ERROR_STOP=1"],
        Some(b"SELECT current_user;\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pg::TRUST_USER);
    assert!(PgCluster::psql_path().is_file());
    assert!(PgCluster::bindir().join("postgres").is_file());
}
