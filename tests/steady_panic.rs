//! A panic inside a session's turn on the steady relay. Nothing a client sends causes one (the
//! relay's code is fuzzed); a bug might. A fail point provokes it (built with
//! `--features failpoints`, as `scripts/test.sh` does): that session is closed and everything it
//! held is released, and the steady thread goes on relaying the other sessions and taking new
//! ones. A file of its own: fail points are per process.
#![cfg(feature = "failpoints")]

mod common;

use std::time::Duration;

use common::*;

fn sessions(env: &Env) -> i64 {
    env.proxy.shared().metrics.sessions_by_state().iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_steady_turn_closes_that_session_and_the_relay_goes_on() {
    // One event loop, so one steady thread: the sessions that live on are on the thread the
    // panic happened on.
    let env = Env::start_with(|c| c.server.event_loops = 1).await;
    let shared = env.proxy.shared();
    let survivor = env.proxy_client("trust_user").await;
    let victim = env.proxy_client("trust_user").await;
    for c in [&survivor, &victim] {
        c.simple_query("SELECT 1").await.expect("select");
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            steady_handoffs(&env, "steady") == 2
        })
        .await,
        "both sessions on the steady relay"
    );
    assert_eq!(steady_handoffs(&env, "loop"), 0);
    assert_eq!((sessions(&env), shared.cancel_keys.len()), (2, 2));
    assert_eq!(shared.slots.clients_in_use(), 2);

    // The next client bytes the steady relay reads panic its turn: only the victim sends any.
    fail::cfg("steady-client-bytes", "1*panic").expect("fail point");
    let err = victim
        .simple_query("SELECT 2")
        .await
        .expect_err("the session whose turn panicked is closed");
    assert!(
        eventually(Duration::from_secs(5), || async { victim.is_closed() }).await,
        "the victim's connection stayed open: {err}"
    );
    fail::remove("steady-client-bytes");

    // Its session gauge, cancel key and client slot are released; nothing went back to a loop.
    assert!(
        eventually(Duration::from_secs(5), || async {
            sessions(&env) == 1 && shared.cancel_keys.len() == 1
        })
        .await,
        "sessions {} cancel keys {}",
        sessions(&env),
        shared.cancel_keys.len()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            shared.slots.clients_in_use() == 1
        })
        .await,
        "the client slot was not released"
    );
    assert_eq!(steady_handoffs(&env, "loop"), 0);

    // The other session goes on, still on the steady relay.
    for i in 0..20i32 {
        let n: i32 = survivor
            .query_one("SELECT $1::int * 2", &[&i])
            .await
            .expect("the other session still works")
            .get(0);
        assert_eq!(n, i * 2);
    }
    assert_eq!(steady_handoffs(&env, "loop"), 0);

    // A new session is taken by the same thread and served.
    let newcomer = env.proxy_client("trust_user").await;
    newcomer.simple_query("SELECT 3").await.expect("newcomer");
    assert!(
        eventually(Duration::from_secs(5), || async {
            steady_handoffs(&env, "steady") == 3
        })
        .await,
        "the newcomer went to the steady relay"
    );
    newcomer
        .simple_query("SELECT 4")
        .await
        .expect("newcomer on the steady relay");
    still_serves(&env).await;
}
