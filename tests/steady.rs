//! The steady relay (`server.steady_relay`): a logged-in session is relayed outside the async
//! runtime, and goes back to its event loop for whatever is asynchronous — a DDL to decide and
//! guard, a large statement to analyse off the loop, the end of the session — then returns.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_relays_on_the_steady_loop_and_goes_back_to_its_loop_for_ddl() {
    let env = Env::start().await;
    let admin = env.table_t(1_000).await;
    let p = env.proxy_client("trust_user").await;
    for i in 0..50i32 {
        let n: i32 = p
            .query_one("SELECT $1::int + 1", &[&i])
            .await
            .expect("select")
            .get(0);
        assert_eq!(n, i + 1);
    }
    let (steady, back) = (
        steady_handoffs(&env, "steady"),
        steady_handoffs(&env, "loop"),
    );
    assert!(steady >= 1, "the session never went to the steady relay");
    // One session, still open: it went once and, between DDL, stays.
    assert_eq!(steady, back + 1, "steady {steady} back {back}");

    // A plain CREATE INDEX is rewritten to CONCURRENTLY on the event loop (the DDL lane),
    // then the session returns to the steady relay.
    p.batch_execute("CREATE INDEX t_x ON t (x)")
        .await
        .expect("create index through the lane");
    let valid: bool = admin
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass",
            &[],
        )
        .await
        .expect("index exists")
        .get(0);
    assert!(valid);
    let sum: i64 = p
        .query_one("SELECT sum(x)::bigint FROM t", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(sum, 500_500);
    // Back on the steady relay once the DDL's epilogue has run (the client does not wait for
    // its reply).
    let on_steady = || steady_handoffs(&env, "steady") == steady_handoffs(&env, "loop") + 1;
    assert!(
        eventually(Duration::from_secs(5), || async { on_steady() }).await,
        "the session did not come back to the steady relay"
    );
    let (steady2, back2) = (
        steady_handoffs(&env, "steady"),
        steady_handoffs(&env, "loop"),
    );
    assert!(
        back2 > back,
        "the DDL was decided without leaving the steady relay"
    );
    assert!(steady2 > steady);

    // A statement large enough to be analysed off the loop goes back too, and its result is
    // the direct one.
    let long = format!("SELECT length('{}')", "z".repeat(3 * 1024 * 1024));
    let n: i32 = p
        .query_one(long.as_str(), &[])
        .await
        .expect("long statement")
        .get(0);
    assert_eq!(n, 3 * 1024 * 1024);
    assert!(steady_handoffs(&env, "loop") > back2);

    // Large results and a slow reader: the relay stops reading the server while the client
    // is behind, and everything arrives.
    let rows = p
        .query(
            "SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 100000) g",
            &[],
        )
        .await
        .expect("many rows");
    assert_eq!(rows.len(), 100_000);
    let last: String = rows[99_999].get(1);
    assert_eq!(last.len(), 256);

    // The session ends from the steady relay: it goes back to its loop, which closes it.
    drop(p);
    assert!(
        eventually(Duration::from_secs(10), || async {
            steady_handoffs(&env, "loop") == steady_handoffs(&env, "steady")
        })
        .await,
        "the closed session left the steady relay"
    );
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_steady_relay_off_sessions_stay_on_their_event_loop() {
    let env = Env::start_with(|c| c.server.steady_relay = false).await;
    let p = env.proxy_client("trust_user").await;
    for _ in 0..20 {
        p.simple_query("SELECT 1").await.expect("select");
    }
    p.batch_execute("CREATE TABLE s (a int)")
        .await
        .expect("ddl");
    assert_eq!(steady_handoffs(&env, "steady"), 0);
    assert_eq!(steady_handoffs(&env, "loop"), 0);
}
