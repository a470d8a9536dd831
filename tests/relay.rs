//! The relay against real PostgreSQL: everything a client does through ddlgate must give what
//! it gives directly — simple and extended queries, pipelines, COPY both ways, large results,
//! LISTEN/NOTIFY, cancel, every auth method, errors inside transactions, FunctionCall.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ddlgate::sql::StatementClass;
use ddlgate::sql::statement::Understood;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_give_the_direct_results() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    let d = env.direct_client("trust_user").await;

    // A multi-statement simple Query: one implicit transaction, three statements.
    p.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric, ts timestamptz DEFAULT '2020-01-01');
         INSERT INTO t (id, v, n) SELECT g, md5(g::text), g / 7.0 FROM generate_series(1, 500) g;
         ANALYZE t",
    )
    .await
    .expect("batch through proxy");

    let sql = "SELECT id, v, n::text, ts::text, NULL::text AS nothing FROM t WHERE id % 50 = 0 ORDER BY id";
    let via_proxy = simple_rows(&p.simple_query(sql).await.expect("simple via proxy"));
    let direct = simple_rows(&d.simple_query(sql).await.expect("simple direct"));
    assert_eq!(via_proxy.len(), 10);
    assert_eq!(via_proxy, direct);

    // Extended protocol: unnamed and named statements, parameters, binary results.
    let q = "SELECT id, v FROM t WHERE id > $1 AND v LIKE $2 ORDER BY id";
    let pr: Vec<(i32, String)> = p
        .query(q, &[&400i32, &"%a%"])
        .await
        .expect("extended via proxy")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let dr: Vec<(i32, String)> = d
        .query(q, &[&400i32, &"%a%"])
        .await
        .expect("extended direct")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!pr.is_empty());
    assert_eq!(pr, dr);
    let stmt = p
        .prepare("SELECT count(*) FROM t WHERE id <= $1")
        .await
        .expect("prepare");
    for n in [1i32, 10, 500] {
        let c: i64 = p
            .query_one(&stmt, &[&n])
            .await
            .expect("execute prepared")
            .get(0);
        assert_eq!(c, i64::from(n));
    }
    let updated = p
        .execute("UPDATE t SET v = 'x' WHERE id <= $1", &[&5i32])
        .await
        .expect("update");
    assert_eq!(updated, 5);

    // The hook saw it all: statements by class and one multi-statement Query.
    let c = &env.proxy.shared().counters;
    assert!(
        c.statements(StatementClass::DdlCandidate) >= 2,
        "CREATE TABLE and ANALYZE are DDL candidates"
    );
    assert!(
        c.statements(StatementClass::Dml) >= 5,
        "INSERT, SELECT (simple), SELECT, SELECT count (parsed), UPDATE"
    );
    assert_eq!(c.value("ddlgate_multi_statement_queries_total", &[]), 1);
    // DDL candidates (and only they) were understood; none was left unknown.
    assert!(
        c.ddl_understood(Understood::Parsed) >= 2,
        "CREATE TABLE and ANALYZE parse"
    );
    assert_eq!(c.ddl_understood(Understood::Unknown), 0);
    assert!(c.value("ddlgate_messages_analysed_total", &[("source", "parse")]) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_extended_queries_come_back_in_order() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    let stmt = p
        .prepare("SELECT $1::int * 2, pg_backend_pid()")
        .await
        .expect("prepare");
    // tokio-postgres pipelines requests whose futures are polled together: many Bind/Execute/
    // Sync units are in flight at once, without waiting for each other's results.
    let futures = (0..200i32).map(|i| {
        let p = &p;
        let stmt = &stmt;
        async move {
            p.query_one(stmt, &[&i])
                .await
                .map(|r| (i, r.get::<_, i32>(0)))
        }
    });
    let results = futures_util::future::try_join_all(futures)
        .await
        .expect("pipeline");
    assert_eq!(results.len(), 200);
    for (i, doubled) in results {
        assert_eq!(doubled, i * 2);
    }
    assert!(
        env.proxy
            .shared()
            .counters
            .value("ddlgate_extended_units_total", &[])
            >= 200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_both_ways_with_100k_rows_matches_direct() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    let d = env.direct_client("trust_user").await;
    p.batch_execute("CREATE TABLE c (id int, payload text, f float8)")
        .await
        .expect("create");

    // COPY FROM STDIN through ddlgate, in uneven chunks.
    let mut data = Vec::new();
    for i in 0..100_000 {
        data.extend_from_slice(
            format!("{i}\trow-{i}-{}\t{}.5\n", "x".repeat(i % 17), i % 1000).as_bytes(),
        );
    }
    let sink = p.copy_in("COPY c FROM STDIN").await.expect("copy in");
    futures_util::pin_mut!(sink);
    for chunk in data.chunks(7919) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .expect("send chunk");
    }
    let n = sink.finish().await.expect("finish copy");
    assert_eq!(n, 100_000);

    // COPY TO STDOUT through ddlgate and directly: byte-identical, and equal to what went in.
    async fn copy_out(c: &tokio_postgres::Client) -> Vec<u8> {
        let stream = c
            .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT")
            .await
            .expect("copy out");
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("collect");
        chunks.concat()
    }
    let via_proxy = copy_out(&p).await;
    let direct = copy_out(&d).await;
    assert_eq!(via_proxy.len(), direct.len());
    assert!(
        via_proxy == direct,
        "COPY TO STDOUT differs through ddlgate"
    );
    assert!(via_proxy == data, "COPY round trip changed the data");

    // The server's own checksum agrees, and the session is still in sync afterwards.
    let sum = "SELECT md5(string_agg(id || payload || f, ',' ORDER BY id)) FROM c";
    let a: String = p.query_one(sum, &[]).await.expect("sum proxy").get(0);
    let b: String = d.query_one(sum, &[]).await.expect("sum direct").get(0);
    assert_eq!(a, b);

    // A failing COPY FROM STDIN leaves the session usable.
    let sink = p.copy_in("COPY c (id) FROM STDIN").await.expect("copy in");
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\nnot-a-number\n"))
        .await
        .ok();
    let err = sink.finish().await.expect_err("bad row must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"));
    let one: i32 = p
        .query_one("SELECT 1", &[])
        .await
        .expect("usable after failed copy")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_and_values_stream_through() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    let d = env.direct_client("trust_user").await;
    // Many rows.
    let q = "SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g";
    let rows = p.query(q, &[]).await.expect("many rows");
    assert_eq!(rows.len(), 200_000);
    let last: String = rows[199_999].get(1);
    let direct_last: String = d
        .query_one("SELECT repeat(md5('200000'), 4)", &[])
        .await
        .expect("direct")
        .get(0);
    assert_eq!(last, direct_last);
    // One 48 MiB value: a single DataRow far larger than any buffer, streamed not held.
    let big: String = p
        .query_one("SELECT repeat('ab', 24 * 1024 * 1024)", &[])
        .await
        .expect("big value")
        .get(0);
    assert_eq!(big.len(), 48 * 1024 * 1024);
    assert!(big.starts_with("abab") && big.ends_with("abab"));
    // A 2 MiB statement sent through (well below max_statement_bytes).
    let long_in = format!("SELECT length('{}')", "z".repeat(2 * 1024 * 1024));
    let n: i32 = p
        .query_one(long_in.as_str(), &[])
        .await
        .expect("long statement")
        .get(0);
    assert_eq!(n, 2 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_arrive_while_the_client_is_idle() {
    let env = Env::start().await;
    let (client, mut connection) =
        tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client.batch_execute("LISTEN jobs").await.expect("listen");
    // The listener is idle now; the notification comes from another session, straight to PG.
    let d = env.direct_client("trust_user").await;
    d.batch_execute("NOTIFY jobs, 'hello'; SELECT pg_notify('jobs', 'world')")
        .await
        .expect("notify");
    for expected in ["hello", "world"] {
        let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("notification within 5 s")
            .expect("channel open");
        assert_eq!((channel.as_str(), payload.as_str()), ("jobs", expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_tokio_postgres_stops_the_statement() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    let token = p.cancel_token();
    let started = tokio::time::Instant::now();
    let running = tokio::spawn(async move { p.simple_query("SELECT pg_sleep(30)").await });
    let admin = env.direct_client("ddlgate_admin").await;
    assert!(
        wait_active(&admin, "SELECT pg_sleep(30)", 1, Duration::from_secs(10)).await,
        "the statement must be running"
    );
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel through ddlgate");
    let err = running
        .await
        .expect("join")
        .expect_err("cancelled statement fails");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_cancels_forwarded_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_psql_cancels_through_libpq() {
    let env = Env::start().await;
    let port = env.proxy_addr().port();
    let child = pg::spawn_psql(port, "trust_user", &["-c", "SELECT pg_sleep(30)"]);
    let admin = env.direct_client("ddlgate_admin").await;
    assert!(wait_active(&admin, "SELECT pg_sleep(30)", 1, Duration::from_secs(10)).await);
    // What Ctrl-C does: SIGINT to psql, whose handler sends a CancelRequest via libpq.
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "psql said: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_method_works_without_ddlgate_knowing_passwords() {
    let env = Env::start().await;
    for user in ["trust_user", "md5_user", "scram_user"] {
        let c = env.proxy_client(user).await;
        let me: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .expect("whoami")
            .get(0);
        assert_eq!(me, user);
        // psql (libpq) too, with the password from PGPASSWORD.
        let out = env
            .psql(
                env.proxy_addr().port(),
                user,
                &["-tAc", "SELECT current_user"],
                None,
            )
            .await;
        assert!(
            out.status.success(),
            "psql as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);
    }
    // A wrong password is refused by PostgreSQL, and the refusal is relayed as is.
    for user in ["md5_user", "scram_user"] {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres password=wrong",
            env.proxy_addr().port()
        );
        let err = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .err()
            .expect("wrong password fails");
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
    }
    // The methods really were md5 and SCRAM.
    let admin = env.direct_client("ddlgate_admin").await;
    let kinds: Vec<(String, String)> = admin
        .query("SELECT rolname::text, left(rolpassword, 5) FROM pg_authid WHERE rolname IN ('md5_user', 'scram_user') ORDER BY 1", &[])
        .await
        .expect("authid")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        kinds[0].0 == "md5_user" && kinds[0].1.starts_with("md5"),
        "{kinds:?}"
    );
    assert!(
        kinds[1].0 == "scram_user" && kinds[1].1 == "SCRAM",
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_inside_transactions_then_rollback() {
    let env = Env::start().await;
    let p = env.proxy_client("trust_user").await;
    p.batch_execute("CREATE TABLE e (id int PRIMARY KEY)")
        .await
        .expect("create");
    p.batch_execute("BEGIN; INSERT INTO e VALUES (1)")
        .await
        .expect("begin");
    let err = p
        .batch_execute("INSERT INTO e VALUES (1)")
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
    let err = p
        .simple_query("SELECT 1")
        .await
        .expect_err("aborted transaction");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    // Extended protocol inside the failed transaction fails the same way.
    let err = p
        .query("SELECT $1::int", &[&1i32])
        .await
        .expect_err("aborted transaction, extended");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    p.batch_execute("ROLLBACK").await.expect("rollback");
    let n: i64 = p
        .query_one("SELECT count(*) FROM e", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "the rolled-back insert must not be there");
    // An error in the middle of a multi-statement Query rolls back the whole implicit transaction.
    let err = p
        .batch_execute("INSERT INTO e VALUES (5); SELECT 1/0; INSERT INTO e VALUES (6)")
        .await
        .expect_err("div by zero");
    assert_eq!(sqlstate(&err).as_deref(), Some("22012"));
    let n: i64 = p
        .query_one("SELECT count(*) FROM e", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_protocol_via_large_objects() {
    // libpq's lo_import/lo_export use the FunctionCall ('F') message, which ddlgate relays
    // without decoding.
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&input, &content).expect("write input");
    let port = env.proxy_addr().port();
    let import = format!("\\lo_import {}", input.display());
    let out = env.psql(port, "trust_user", &["-c", &import], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let oid = stdout
        .trim()
        .strip_prefix("lo_import ")
        .expect("lo_import prints the oid")
        .to_owned();
    let export = format!("\\lo_export {oid} {}", output.display());
    let out = env.psql(port, "trust_user", &["-c", &export], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&output).expect("read output") == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_gets_replies_before_sync() {
    // Some drivers send Parse/Bind/Execute followed by Flush and wait for the replies before
    // they send Sync; a proxy that buffers until Sync would hang them.
    use common::wire::{message, read_message, read_until_ready};
    use tokio::io::AsyncWriteExt;
    let env = Env::start().await;
    let mut s = common::wire::connect_trust(env.proxy_addr()).await;
    s.write_all(
        &[
            message(b'P', b"s1\0SELECT 40 + 2\0\0\0"),
            message(b'H', b""),
        ]
        .concat(),
    )
    .await
    .expect("parse+flush");
    assert_eq!(
        read_message(&mut s).await.map(|m| m.0),
        Some(b'1'),
        "ParseComplete before any Sync"
    );
    s.write_all(
        &[
            message(b'B', b"\0s1\0\0\0\0\0\0\0"),
            message(b'E', b"\0\0\0\0\0"),
            message(b'H', b""),
        ]
        .concat(),
    )
    .await
    .expect("bind+execute+flush");
    assert_eq!(
        read_message(&mut s).await.map(|m| m.0),
        Some(b'2'),
        "BindComplete"
    );
    let (tag, row) = read_message(&mut s).await.expect("DataRow");
    assert_eq!(tag, b'D');
    assert!(row.ends_with(b"42"));
    assert_eq!(read_message(&mut s).await.map(|m| m.0), Some(b'C'));
    s.write_all(&message(b'S', b"")).await.expect("sync");
    let rest = read_until_ready(&mut s).await;
    assert_eq!(
        rest.last().map(|m| (m.0, m.1.clone())),
        Some((b'Z', b"I".to_vec()))
    );
}
