//! Issue 14's fault matrix, against real PostgreSQL (a scripted fake upstream only for a server
//! dying mid-authentication): the upstream killed (a backend terminated or killed -9, the
//! postmaster itself killed -9, the server stopped immediately) mid-query, mid-COPY,
//! mid-authentication (after a password, in the middle of a SASL exchange, in the middle of a
//! message), between the steps of a recipe and in the middle of the client's own foreign-key
//! `VALIDATE CONSTRAINT`; the upstream restarted, and down after a crash (new sessions refused,
//! an orphaned backend answering late, the lock monitor down and back); the client vanishing
//! while its DDL waits on a lock, while a recipe runs or mid-`VALIDATE`; slowloris at startup
//! and mid-message; a connection flood above the limits, with the admin endpoint answering under
//! it. Each case asserts what the client sees (a proper ErrorResponse with its SQLSTATE, or a
//! closed connection; every wait is bounded), that the proxy keeps serving new sessions, and
//! that nothing is left behind (no active statement, no lock, no advisory lock, no half-built
//! or half-validated object left unexplained).
//! `tests/faults.rs` holds the earlier cases (upstream unreachable, vanishing silently or
//! mid-message, malformed input, login timeout, `max_clients`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fake::{self, Fault};
use common::wire::{
    connect_trust, expect_error_then_close, message, query, read_message, startup_packet,
};
use common::*;
use ddlgate::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::Client;

/// Bound on every wait for a client to see its error.
const PROMPT: Duration = Duration::from_secs(5);

/// ~1 ms per call: index builds and validations over a few hundred rows take about a second,
/// long enough to be interrupted in the middle.
const SLOW_FN: &str = "CREATE FUNCTION slow(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE \
     AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN v; END $$;";

fn fast_guard(c: &mut Config) {
    c.guard.lock_timeout_ms = Duration::from_millis(200);
    c.guard.backoff_initial_ms = Duration::from_millis(50);
    c.guard.backoff_max_ms = Duration::from_millis(100);
    c.guard.max_attempts = 1000;
    c.guard.max_wait_ms = Duration::from_secs(60);
    // The recipes are under test: the small-table allowance would let these tables through.
    c.catalog.small_table_rows = 0;
}

async fn backend_pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Waits until every client connection has ended in the proxy (nothing left behind).
async fn no_connections_left(env: &Env) {
    let shared = env.proxy.shared().clone();
    assert!(
        eventually(PROMPT, || async {
            shared.metrics.value("ddlgate_connections_active", &[]) == 0.0
        })
        .await,
        "a connection was left open in the proxy"
    );
}

/// Waits until the backend `pid` is gone or idle holding no lock, and no advisory lock is held
/// anywhere; returns how long that took.
async fn released(admin: &Client, pid: i32, within: Duration) -> Duration {
    let started = Instant::now();
    let clean = eventually(within, || async {
        let sql = "SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state <> 'idle')
                        + (SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype <> 'virtualxid')
                        + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')";
        admin
            .query_one(sql, &[&pid])
            .await
            .map(|r| r.get::<_, i64>(0) == 0)
            .unwrap_or(false)
    })
    .await;
    let took = started.elapsed();
    let left: Vec<String> = admin
        .query(
            "SELECT format('%s %s %s %s', pid, locktype, mode, relation::regclass) FROM pg_locks WHERE pid = $1 OR locktype = 'advisory'",
            &[&pid],
        )
        .await
        .expect("locks")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(clean, "after {took:?}, still held: {left:?}");
    took
}

/// The error a spawned client statement ended with, bounded by [`PROMPT`].
/// Sends `sql` through ddlgate on a connection of its own and, once the server runs a query
/// like `running` with ddlgate's advisory lock held, drops the client's socket without a
/// Terminate: how long until the statement was cancelled and everything released (at most
/// 1 s, asserted).
async fn vanish_while_running(
    env: &Env,
    admin: &Client,
    sql: &'static str,
    running: &str,
) -> Duration {
    let (client, connection) =
        tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    let conn_task = tokio::spawn(connection);
    let pid = backend_pid(&client).await;
    tokio::spawn(async move {
        let _ = client.batch_execute(sql).await;
    });
    assert!(
        wait_active(admin, running, 1, PROMPT).await,
        "{running} never ran"
    );
    assert!(
        advisory_held(admin).await,
        "ddlgate's advisory lock is taken"
    );
    conn_task.abort();
    released(admin, pid, Duration::from_secs(1)).await
}

async fn error_of<T: std::fmt::Debug>(
    task: tokio::task::JoinHandle<Result<T, tokio_postgres::Error>>,
) -> tokio_postgres::Error {
    tokio::time::timeout(PROMPT, task)
        .await
        .expect("the client must not hang")
        .expect("join")
        .expect_err("the client must get an error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminated_mid_query_gives_57p01_and_the_proxy_serves_on() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    let p = env.proxy_client("trust_user").await;
    let pid = backend_pid(&p).await;
    let running = tokio::spawn(async move { p.simple_query("SELECT pg_sleep(60)").await });
    assert!(wait_active(&admin, "SELECT pg_sleep(60)", 1, PROMPT).await);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    let err = error_of(running).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    still_serves(&env).await;
    no_connections_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_9_mid_query_closes_every_session_and_new_ones_work_after_recovery() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    let p = env.proxy_client("trust_user").await;
    let idle = env.proxy_client("trust_user").await;
    let pid = backend_pid(&p).await;
    let running = tokio::spawn(async move { p.simple_query("SELECT pg_sleep(60)").await });
    assert!(wait_active(&admin, "SELECT pg_sleep(60)", 1, PROMPT).await);
    // SIGKILL: the backend says nothing; the postmaster then resets every other session.
    let out = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .output()
        .expect("kill");
    assert!(out.status.success(), "{out:?}");
    let err = error_of(running).await;
    // The killed backend sent nothing: ddlgate's own FATAL 08006 (tokio-postgres may also just
    // see the connection close after it).
    let code = sqlstate(&err);
    assert!(
        code.as_deref() == Some("08006") || err.is_closed(),
        "{err:?}"
    );
    // The idle session is ended by the postmaster's reset (the server's WARNING 57P02, then
    // the socket closes: ddlgate's FATAL 08006), not left open. The reset follows the crash by
    // a moment, in which the idle backend may still answer.
    let err = tokio::time::timeout(PROMPT, async {
        loop {
            match idle.simple_query("SELECT 1").await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the reset ends the idle session");
    assert!(
        sqlstate(&err).as_deref() == Some("08006") || err.is_closed(),
        "{err:?}"
    );
    // Crash recovery takes a moment; then new sessions through the proxy work.
    let conn = env.proxy_conn("trust_user");
    assert!(
        eventually(Duration::from_secs(20), || async {
            match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(connection);
                    c.simple_query("SELECT 1").await.is_ok()
                }
                Err(_) => false,
            }
        })
        .await,
        "new sessions after recovery"
    );
    no_connections_left(&env).await;
}

/// The lock monitor's `ddlgate_lock_monitor_up`, as `/metrics` shows it (the endpoint must
/// answer 200).
async fn monitor_up(admin_addr: SocketAddr) -> Option<f64> {
    let (code, body) = admin_fetch(admin_addr, "/metrics").await;
    assert_eq!(code, 200, "/metrics must answer: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix("ddlgate_lock_monitor_up "))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU-bound for a second or more, and it never waits on anything: the kind of statement an
/// orphaned backend runs to its end.
const BUSY: &str = "SELECT count(*) FROM generate_series(1, 3000) a, generate_series(1, 20000) b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_killed_9_ends_sessions_refuses_new_ones_with_08001_and_all_recovers_on_restart()
{
    let env = Env::start_with(|c| {
        c.monitor.enabled = true;
        c.monitor.interval_ms = Duration::from_millis(100);
        c.monitor.user = "ddlgate_admin".to_owned();
    })
    .await;
    let admin_addr = env.proxy.admin_addr().expect("admin endpoint");
    assert!(
        eventually(PROMPT, || async {
            monitor_up(admin_addr).await == Some(1.0)
        })
        .await,
        "the lock monitor never sampled"
    );
    let admin = env.direct_client("ddlgate_admin").await;
    // Three sessions, each connection's end watched (what ends them arrives between queries):
    // one idle, one sleeping in a query, one computing.
    let session = || async {
        let (c, connection) =
            tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
                .await
                .expect("connect");
        (c, tokio::spawn(connection))
    };
    let (idle, idle_end) = session().await;
    idle.simple_query("SELECT 1").await.expect("idle works");
    let (sleeper, _sleeper_end) = session().await;
    let sleeping = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(60)").await });
    let (busy, busy_end) = session().await;
    // The client is handed back: dropping it would end its session with a Terminate.
    let computing = tokio::spawn(async move {
        let r = busy.query_one(BUSY, &[]).await;
        (busy, r)
    });
    assert!(wait_active(&admin, "SELECT pg_sleep(60)", 1, PROMPT).await);
    assert!(wait_active(&admin, BUSY, 1, PROMPT).await);
    drop(admin);
    let pg = &env.pg;
    let crashed = Instant::now();
    pg.kill_postmaster_9();

    // Each backend learns of its postmaster's death at once (Linux's parent-death signal) and
    // exits when it next waits. The sleeping one exits without a word: ddlgate's FATAL 08006.
    let err = error_of(sleeping).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    // The idle one says why: the server's FATAL 57P01, relayed.
    let end = tokio::time::timeout(PROMPT, idle_end)
        .await
        .expect("the idle session must end")
        .expect("join")
        .expect_err("ended by an error");
    let db = end.as_db_error().expect("the server's FATAL");
    assert_eq!(
        (db.code().code(), db.message()),
        (
            "57P01",
            "terminating connection due to unexpected postmaster exit"
        )
    );
    eprintln!(
        "sessions sleeping and idle ended {:?} after the kill",
        crashed.elapsed()
    );

    // While no server listens (the computing backend lives on, orphaned): a new session is
    // refused promptly with FATAL 08001 naming the upstream, and the admin endpoint answers.
    let started = Instant::now();
    let err = tokio::time::timeout(
        PROMPT,
        tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls),
    )
    .await
    .expect("no hang")
    .err()
    .expect("no server: the login must fail");
    eprintln!(
        "a new session while down: refused in {:?}",
        started.elapsed()
    );
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err}");
    let upstream = format!("127.0.0.1:{}", pg.port());
    let db = err.as_db_error().expect("ddlgate's FATAL");
    assert!(db.message().contains(&upstream), "{}", db.message());
    assert!(
        eventually(PROMPT, || async {
            monitor_up(admin_addr).await == Some(0.0)
        })
        .await,
        "the lock monitor must report itself down"
    );

    // Started again, but only once the orphan has exited (a server does not start while a
    // process still has the old shared memory attached): the start waits for its statement.
    let waited = Instant::now();
    tokio::task::block_in_place(|| pg.start_after_crash());
    eprintln!(
        "serving again {:?} after the kill (the start waited {:?})",
        crashed.elapsed(),
        waited.elapsed()
    );

    // The orphan ran its statement to the end: the client got the answer, then the server's
    // FATAL 57P01 when the backend next waited for a message.
    let (busy, answer) = tokio::time::timeout(Duration::from_secs(20), computing)
        .await
        .expect("the orphan's statement ends")
        .expect("join");
    let total: i64 = answer.expect("an orphaned backend still answers").get(0);
    assert_eq!(total, 60_000_000);
    let end = tokio::time::timeout(PROMPT, busy_end)
        .await
        .expect("the orphan's session must end")
        .expect("join")
        .expect_err("ended by an error");
    assert_eq!(sqlstate(&end).as_deref(), Some("57P01"), "{end}");
    eprintln!(
        "the orphan answered and ended {:?} after the kill",
        crashed.elapsed()
    );

    // New sessions work, the lock monitor reconnects.
    still_serves(&env).await;
    assert!(
        eventually(PROMPT, || async {
            monitor_up(admin_addr).await == Some(1.0)
        })
        .await,
        "the lock monitor must reconnect"
    );
    assert!(
        env.proxy
            .shared()
            .connections
            .rejected("upstream_unreachable")
            >= 1,
        "the refusal is counted"
    );
    drop((idle, busy));
    no_connections_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_immediate_mid_query_then_started_serves_again() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    let (p, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    let running = tokio::spawn(async move { p.simple_query("SELECT pg_sleep(60)").await });
    assert!(wait_active(&admin, "SELECT pg_sleep(60)", 1, PROMPT).await);
    drop(admin);
    let pg = &env.pg;
    // Like a crash: the backends only warn (57P01 "immediate shutdown") and exit.
    pg.stop_immediate();
    let err = error_of(running).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    let warned = tokio::time::timeout(PROMPT, notices.recv())
        .await
        .expect("the server's warning")
        .expect("relayed");
    assert_eq!(warned.code().code(), "57P01", "{warned:?}");
    pg.restart();
    still_serves(&env).await;
    no_connections_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_ends_existing_sessions_with_57p01_and_new_ones_work() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    let idle = env.proxy_client("trust_user").await;
    let busy = env.proxy_client("trust_user").await;
    let running = tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(60)").await });
    assert!(wait_active(&admin, "SELECT pg_sleep(60)", 1, PROMPT).await);
    drop(admin);
    let started = Instant::now();
    let pg = &env.pg;
    // pg_ctl restart = stop -m fast, then start.
    pg.stop_fast();
    let err = error_of(running).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    pg.restart();
    let err = tokio::time::timeout(PROMPT, idle.simple_query("SELECT 1"))
        .await
        .expect("no hang")
        .expect_err("the restart ended the idle session");
    assert!(
        sqlstate(&err).as_deref() == Some("57P01") || err.is_closed(),
        "{err:?}"
    );
    still_serves(&env).await;
    eprintln!("restart and a new session took {:?}", started.elapsed());
    no_connections_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminated_mid_copy_in_gives_57p01_and_nothing_is_half_loaded() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("CREATE TABLE landing (id int); GRANT ALL ON landing TO trust_user")
        .await
        .expect("create");
    let mut s = connect_trust(env.proxy_addr()).await;
    s.write_all(&query("COPY landing FROM STDIN"))
        .await
        .expect("copy");
    let (tag, _) = read_message(&mut s).await.expect("CopyInResponse");
    assert_eq!(tag, b'G');
    for i in 0..100 {
        s.write_all(&message(b'd', format!("{i}\n").as_bytes()))
            .await
            .expect("row");
    }
    assert!(wait_active(&admin, "COPY landing FROM STDIN", 1, PROMPT).await);
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'COPY landing FROM STDIN'",
        )
        .await
        .expect("terminate");
    let (severity, code, message) = tokio::time::timeout(PROMPT, expect_error_then_close(&mut s))
        .await
        .expect("no hang")
        .expect("an error, then close");
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("FATAL", "57P01"),
        "{message}"
    );
    assert_eq!(count(&admin, "SELECT count(*) FROM landing").await, 0);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_locks WHERE relation = 'landing'::regclass"
        )
        .await,
        0
    );
    still_serves(&env).await;
    no_connections_left(&env).await;
}

/// Connects through the proxy to a fake upstream that fails during authentication; returns what
/// the client saw: the first ErrorResponse's fields, if any, once the connection closed, and how
/// many authentication requests it answered.
async fn login_against(fault: Fault) -> (ddlgate::server::Handle, Option<(String, String)>, usize) {
    init_tracing();
    let addr = fake::start(fault).await;
    let proxy = start_proxy(addr.port(), |_| {}).await;
    let mut s = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    s.write_all(&startup_packet("u", "d"))
        .await
        .expect("startup");
    let (saw, answered) = tokio::time::timeout(PROMPT, async {
        let mut error = None;
        let mut answered = 0;
        while let Some((tag, body)) = read_message(&mut s).await {
            match tag {
                // Authentication requests: answer them (whole messages only are relayed).
                b'R' => {
                    let reply = match body.get(..4) {
                        // AuthenticationCleartextPassword.
                        Some([0, 0, 0, 3]) if body.len() == 4 => message(b'p', b"secret\0"),
                        // AuthenticationSASL: SASLInitialResponse with SCRAM's client-first.
                        Some([0, 0, 0, 10]) => {
                            assert_eq!(&body[4..], b"SCRAM-SHA-256\0\0");
                            let first = b"n,,n=,r=clientnonce";
                            let mut m = b"SCRAM-SHA-256\0".to_vec();
                            m.extend_from_slice(&(first.len() as u32).to_be_bytes());
                            m.extend_from_slice(first);
                            message(b'p', &m)
                        }
                        // AuthenticationSASLContinue: SASLResponse with a client-final.
                        Some([0, 0, 0, 11]) => message(
                            b'p',
                            b"c=biws,r=clientnonceservernonce,p=cHJvb2Zwcm9vZnByb29mcHJvb2Y=",
                        ),
                        _ => panic!("unexpected authentication request {body:?}"),
                    };
                    s.write_all(&reply).await.expect("authentication reply");
                    answered += 1;
                }
                b'E' => {
                    let (severity, code, _) = common::wire::error_fields(&body);
                    error = Some((severity, code));
                }
                other => panic!("unexpected message {:?}", other as char),
            }
        }
        (error, answered)
    })
    .await
    .expect("no hang");
    (proxy, saw, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_authentication_is_fatal_08006_and_frees_the_slot() {
    // Dying at a message boundary: ddlgate's FATAL 08006. Dying in the middle of a message:
    // its first bytes were relayed, so the connection just closes (an error appended there would
    // corrupt the stream).
    let fatal = Some(("FATAL".to_owned(), "08006".to_owned()));
    for (fault, expected, requests) in [
        (Fault::DieAfterPassword, fatal.clone(), 1),
        (Fault::DieMidSasl, fatal, 2),
        (Fault::DieMidAuthRequest, None, 0),
    ] {
        let (proxy, saw, answered) = login_against(fault).await;
        assert_eq!(saw, expected, "{fault:?}");
        assert_eq!(
            answered, requests,
            "{fault:?}: authentication requests relayed"
        );
        let shared = proxy.shared().clone();
        assert!(
            eventually(PROMPT, || async {
                shared.metrics.value("ddlgate_connections_active", &[]) == 0.0
                    && shared.slots.unauthenticated_in_use() == 0
            })
            .await,
            "{fault:?}: the login slot must be freed"
        );
    }
}

/// `CREATE TABLE chk` with 600 rows, `slow()`, owned by `trust_user`.
async fn slow_table(env: &Env) -> Client {
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(&format!(
            "GRANT ALL ON SCHEMA public TO trust_user; SET ROLE trust_user; {SLOW_FN}
             CREATE TABLE chk (id serial PRIMARY KEY, x int);
             INSERT INTO chk (x) SELECT g FROM generate_series(1, 600) g; ANALYZE chk; RESET ROLE;"
        ))
        .await
        .expect("setup");
    admin
}

/// Runs `sql` through ddlgate on `p`, waits until a recipe step like `step` runs, terminates the
/// session's backend there, and checks the client got 57P01 and the backend's locks are gone.
async fn terminate_at_step(
    admin: &tokio_postgres::Client,
    p: tokio_postgres::Client,
    sql: &'static str,
    step: &str,
) {
    let pid = backend_pid(&p).await;
    let running = tokio::spawn(async move { p.batch_execute(sql).await });
    assert!(
        wait_active(admin, step, 1, PROMPT).await,
        "the step {step} never ran"
    );
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    let err = error_of(running).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    released(admin, pid, PROMPT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminated_between_recipe_steps_leaves_a_not_valid_constraint_a_rerun_validates() {
    let env = Env::start_with(fast_guard).await;
    let admin = slow_table(&env).await;
    const ADD: &str = "ALTER TABLE chk ADD CONSTRAINT chk_x_positive CHECK (slow(x) > 0)";
    let (p, _notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    // Step 1 (ADD … NOT VALID) is done when step 2 (VALIDATE, a ~1 s scan) is seen running.
    terminate_at_step(&admin, p, ADD, "%VALIDATE CONSTRAINT chk_x_positive%").await;
    // Half-applied: the constraint exists, NOT VALID (new rows are checked; old ones not yet).
    const VALID: &str =
        "SELECT count(*) FROM pg_constraint WHERE conname = 'chk_x_positive' AND convalidated";
    const ANY: &str = "SELECT count(*) FROM pg_constraint WHERE conname = 'chk_x_positive'";
    assert_eq!(
        (count(&admin, ANY).await, count(&admin, VALID).await),
        (1, 0)
    );
    // The same statement again, in a new session: it finishes the job.
    let (p, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    let rerun = p.batch_execute(ADD).await;
    let mut said = Vec::new();
    while let Ok(n) = notices.try_recv() {
        said.push(notice_line(&n));
    }
    rerun.expect("the rerun completes");
    let said = said.join("\n");
    assert!(
        said.contains("skipped if CHECK constraint chk_x_positive exists"),
        "{said}"
    );
    assert_eq!(
        (count(&admin, ANY).await, count(&admin, VALID).await),
        (1, 1)
    );
    no_advisory_locks(&admin).await;
}

const ADVISORY: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";

/// Waits (bounded) until an advisory lock is seen held: the release checked later is real.
async fn advisory_held(admin: &Client) -> bool {
    eventually(PROMPT, || async { count(admin, ADVISORY).await > 0 }).await
}

async fn no_advisory_locks(admin: &Client) {
    assert_eq!(count(admin, ADVISORY).await, 0);
}

/// After a guarded statement succeeded: ddlgate releases its advisory lock while the client
/// reads its replies (the epilogue runs behind them), so the release is awaited, briefly.
async fn advisory_released(admin: &Client) {
    assert!(
        eventually(Duration::from_secs(1), || async {
            count(admin, ADVISORY).await == 0
        })
        .await,
        "ddlgate's advisory lock was not released"
    );
}

/// A partitioned table, 3 leaves of 300 rows: each leaf's concurrent build of an index on
/// `slow(x)` takes about a second.
const TREE: &str = "CREATE TABLE ev (id int NOT NULL, x int) PARTITION BY RANGE (id);
    CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM (0) TO (300);
    CREATE TABLE ev_b PARTITION OF ev FOR VALUES FROM (300) TO (600);
    CREATE TABLE ev_c PARTITION OF ev FOR VALUES FROM (600) TO (900);
    INSERT INTO ev SELECT g, g FROM generate_series(0, 899) g; ANALYZE ev;";

const INDEX_EV: &str = "CREATE INDEX CONCURRENTLY IF NOT EXISTS ev_slow ON ev (slow(x))";

/// The index tree is whole: `ev_slow` valid with every leaf's index attached and valid.
async fn index_tree_is_whole(admin: &Client) {
    let sql = "SELECT count(*) FROM pg_inherits h JOIN pg_index i ON i.indexrelid = h.inhrelid
               WHERE h.inhparent = 'ev_slow'::regclass AND i.indisvalid";
    assert_eq!(count(admin, sql).await, 3);
    assert_eq!(
        count(
            admin,
            "SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready"
        )
        .await,
        0,
        "no INVALID index left"
    );
    assert_eq!(
        count(
            admin,
            "SELECT count(*) FROM pg_index WHERE indexrelid = 'ev_slow'::regclass AND indisvalid"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminated_mid_partition_build_leaves_an_invalid_index_a_rerun_rebuilds() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(&format!(
            "GRANT ALL ON SCHEMA public TO trust_user; SET ROLE trust_user; {SLOW_FN} {TREE} RESET ROLE;"
        ))
        .await
        .expect("setup");
    let (p, _n) = client_with_notices(&env.proxy_conn("trust_user")).await;
    // The second leaf's build: the parent's index and the first leaf's are done.
    terminate_at_step(&admin, p, INDEX_EV, "%CONCURRENTLY IF NOT EXISTS ev_b_%").await;
    let invalid = count(
        &admin,
        "SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid::regclass::text LIKE 'ev_b%'",
    )
    .await;
    assert_eq!(
        invalid, 1,
        "the interrupted leaf build leaves an INVALID index"
    );
    // The same statement again: the leftover is reported, dropped and built again.
    let (p, mut notices) = client_with_notices(&env.proxy_conn("trust_user")).await;
    p.batch_execute(INDEX_EV)
        .await
        .expect("the rerun completes");
    let mut said = Vec::new();
    while let Ok(n) = notices.try_recv() {
        said.push(notice_line(&n));
    }
    let said = said.join("\n");
    assert!(
        said.contains("DROP INDEX CONCURRENTLY IF EXISTS public.ev_b_slow_idx"),
        "{said}"
    );
    index_tree_is_whole(&admin).await;
    no_advisory_locks(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_while_its_ddl_waits_on_a_lock_is_cancelled_and_unlocked() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.table_t(10).await;
    // A reader holds ACCESS SHARE: the ALTER cannot get its lock; the guard retries.
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let (client, connection) =
        tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    let conn_task = tokio::spawn(connection);
    let pid = backend_pid(&client).await;
    tokio::spawn(async move {
        let _ = client
            .batch_execute("ALTER TABLE t ADD COLUMN gone int")
            .await;
    });
    assert!(guard_retried(&env, 2).await, "the DDL never waited");
    assert!(
        advisory_held(&admin).await,
        "ddlgate's advisory lock is taken"
    );
    // The client vanishes: its socket closes without a Terminate.
    conn_task.abort();
    let took = released(&admin, pid, Duration::from_secs(1)).await;
    eprintln!("client gone while waiting on a lock: released in {took:?}");
    blocker.batch_execute("COMMIT").await.expect("commit");
    // The abandoned DDL never runs once the lock is free.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'gone'"
        )
        .await,
        0
    );
    no_connections_left(&env).await;
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_recipe_is_cancelled_within_1s_and_a_rerun_completes() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(&format!(
            "GRANT ALL ON SCHEMA public TO trust_user; SET ROLE trust_user; {SLOW_FN} {TREE} RESET ROLE;"
        ))
        .await
        .expect("setup");
    let took =
        vanish_while_running(&env, &admin, INDEX_EV, "%CONCURRENTLY IF NOT EXISTS ev_a_%").await;
    eprintln!("client gone mid-recipe: released in {took:?}");
    assert!(
        wait_active(&admin, "%CONCURRENTLY%", 0, Duration::from_millis(100)).await,
        "no later step may start"
    );
    let p = env.proxy_client("trust_user").await;
    p.batch_execute(INDEX_EV)
        .await
        .expect("the rerun completes");
    index_tree_is_whole(&admin).await;
    no_advisory_locks(&admin).await;
}

/// A foreign key whose validation takes about a second: `child.p` references `parent.id`
/// through a unique index whose operator class compares with `slow()` (the RI check's join can
/// neither hash nor merge on `===`, so every one of the 300 child rows costs an index lookup of
/// a few slow comparisons). Memoize, off for `trust_user`, would cache the one lookup. Both
/// tables are owned by `trust_user`; the constraint is added NOT VALID, left for the client to
/// validate. Returns the superuser's direct client.
async fn slow_fk(env: &Env) -> Client {
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(&format!(
            "{SLOW_FN}
             CREATE FUNCTION slow_cmp(a int, b int) RETURNS int LANGUAGE plpgsql IMMUTABLE
                 AS $$ BEGIN RETURN btint4cmp(slow(a), b); END $$;
             CREATE FUNCTION slow_eq(a int, b int) RETURNS bool LANGUAGE plpgsql IMMUTABLE
                 AS $$ BEGIN RETURN slow(a) = b; END $$;
             CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = slow_eq);
             CREATE OPERATOR CLASS slow_int_ops FOR TYPE int USING btree AS OPERATOR 1 <,
                 OPERATOR 2 <=, OPERATOR 3 ===, OPERATOR 4 >=, OPERATOR 5 >,
                 FUNCTION 1 slow_cmp(int, int);
             ALTER ROLE trust_user SET enable_memoize = off;
             CREATE TABLE parent (id int NOT NULL);
             CREATE UNIQUE INDEX parent_id ON parent (id slow_int_ops);
             INSERT INTO parent VALUES (1);
             CREATE TABLE child (id int, p int);
             INSERT INTO child SELECT g, 1 FROM generate_series(1, 300) g; ANALYZE parent, child;
             ALTER TABLE parent OWNER TO trust_user; ALTER TABLE child OWNER TO trust_user;
             SET ROLE trust_user;
             ALTER TABLE child ADD CONSTRAINT child_p_fk FOREIGN KEY (p) REFERENCES parent (id)
                 NOT VALID;
             RESET ROLE;"
        ))
        .await
        .expect("setup");
    admin
}

const VALIDATE_FK: &str = "ALTER TABLE child VALIDATE CONSTRAINT child_p_fk";

/// `child_p_fk` exists (one row in pg_constraint) and whether it is validated.
async fn fk_state(admin: &Client) -> (i64, i64) {
    (
        count(
            admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'child_p_fk'",
        )
        .await,
        count(
            admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'child_p_fk' AND convalidated",
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminated_mid_fk_validate_gives_57p01_leaves_it_not_valid_a_rerun_validates() {
    let env = Env::start_with(fast_guard).await;
    let admin = slow_fk(&env).await;
    let p = env.proxy_client("trust_user").await;
    // The client's own VALIDATE, outside any recipe: terminated while it scans.
    terminate_at_step(&admin, p, VALIDATE_FK, "%VALIDATE CONSTRAINT child_p_fk%").await;
    // VALIDATE is one catalog update at its end: interrupted, nothing of it applies.
    assert_eq!(
        fk_state(&admin).await,
        (1, 0),
        "still there, still NOT VALID"
    );
    no_advisory_locks(&admin).await;
    let p = env.proxy_client("trust_user").await;
    let started = Instant::now();
    p.batch_execute(VALIDATE_FK)
        .await
        .expect("the rerun validates");
    eprintln!("the rerun's VALIDATE took {:?}", started.elapsed());
    assert_eq!(fk_state(&admin).await, (1, 1));
    advisory_released(&admin).await;
    drop(p);
    no_connections_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_fk_validate_is_cancelled_within_1s_and_leaves_it_not_valid() {
    let env = Env::start_with(fast_guard).await;
    let admin = slow_fk(&env).await;
    let took = vanish_while_running(
        &env,
        &admin,
        VALIDATE_FK,
        "%VALIDATE CONSTRAINT child_p_fk%",
    )
    .await;
    eprintln!("client gone mid-VALIDATE: cancelled and released in {took:?}");
    assert_eq!(
        fk_state(&admin).await,
        (1, 0),
        "still there, still NOT VALID"
    );
    no_connections_left(&env).await;
    let p = env.proxy_client("trust_user").await;
    p.batch_execute(VALIDATE_FK)
        .await
        .expect("the rerun validates");
    assert_eq!(fk_state(&admin).await, (1, 1));
    advisory_released(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_startup_is_cut_by_the_login_timeout() {
    let env = Env::start_with(|c| c.limits.login_timeout_ms = Duration::from_millis(500)).await;
    let s = TcpStream::connect(env.proxy_addr()).await.expect("connect");
    let (mut read, mut write) = s.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for b in startup_packet("trust_user", "postgres") {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    tokio::time::timeout(PROMPT, read.read_to_end(&mut got))
        .await
        .expect("cut, not left hanging")
        .expect("read");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(got.first(), Some(&b'E'), "{got:?}");
    let (severity, code, _) = common::wire::error_fields(&got[5..]);
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "08006"));
    trickle.abort();
    no_connections_left(&env).await;
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_mid_message_holds_one_session_and_the_servers_idle_timeout_ends_it() {
    let env = Env::start().await;
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute("ALTER ROLE trust_user SET idle_session_timeout = '1s'")
        .await
        .expect("idle_session_timeout");
    let mut s = connect_trust(env.proxy_addr()).await;
    // Half a Query: 9 of its 5 + 30 bytes.
    let q = query("SELECT 'a stalled message'");
    s.write_all(&q[..9]).await.expect("half");
    // Other sessions are unaffected meanwhile.
    still_serves(&env).await;
    // ddlgate holds the partial message (bounded by limits.max_statement_bytes) and forwards
    // nothing of it, so the server sees an idle session and its idle_session_timeout applies.
    let started = Instant::now();
    let (severity, code, _) = tokio::time::timeout(PROMPT, expect_error_then_close(&mut s))
        .await
        .expect("no hang")
        .expect("the server's FATAL, then close");
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "57P05"));
    eprintln!("stalled mid-message: ended after {:?}", started.elapsed());
    admin
        .batch_execute("ALTER ROLE trust_user RESET idle_session_timeout")
        .await
        .expect("reset");
    // Without a server timeout the session stays open like an idle one, until the client
    // closes: then everything is freed.
    let mut s = connect_trust(env.proxy_addr()).await;
    s.write_all(&q[..9]).await.expect("half");
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut byte))
            .await
            .is_err(),
        "held open, like an idle session"
    );
    drop(s);
    no_connections_left(&env).await;
}

/// GET `path` on the admin endpoint: its status code.
async fn admin_get(addr: SocketAddr, path: &str) -> u16 {
    admin_fetch(addr, path).await.0
}

/// GET `path` on the admin endpoint: its status code and body.
async fn admin_fetch(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect admin");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: ddlgate\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("response");
    let text = String::from_utf8_lossy(&raw);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_gets_53300_promptly_while_admitted_sessions_and_admin_work() {
    let env = Env::start_with(|c| {
        c.limits.max_clients = 2;
        c.limits.max_unauthenticated = 4;
    })
    .await;
    let a = env.proxy_client("trust_user").await;
    let b = env.proxy_client("trust_user").await;
    let addr = env.proxy_addr();
    let admin_addr = env.proxy.admin_addr().expect("admin endpoint");

    // 40 silent connections (no startup packet): the oldest are evicted to keep at most 4.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // 40 logins at once, above both limits: each gets FATAL 53300, promptly.
    let started = Instant::now();
    let flood: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                s.write_all(&startup_packet("trust_user", "postgres"))
                    .await
                    .expect("startup");
                let saw = tokio::time::timeout(PROMPT, expect_error_then_close(&mut s))
                    .await
                    .expect("no hang");
                (saw, Instant::now())
            })
        })
        .collect();
    // The admin endpoint answers under the flood.
    for path in ["/healthz", "/metrics", "/status"] {
        let t = Instant::now();
        let code = tokio::time::timeout(Duration::from_secs(2), admin_get(admin_addr, path))
            .await
            .expect("admin answers under the flood");
        assert_eq!(code, 200, "{path}");
        eprintln!("{path} under the flood: {:?}", t.elapsed());
    }
    // Admitted sessions keep working.
    a.simple_query("SELECT 1").await.expect("a works");
    b.simple_query("SELECT 1").await.expect("b works");
    let (mut slowest, mut refused) = (Duration::ZERO, 0);
    for f in flood {
        let (saw, at) = f.await.expect("join");
        slowest = slowest.max(at - started);
        // Refused after its startup packet, or evicted by a later login before ddlgate read it:
        // either way told 53300, never cut off mute.
        let (severity, code, message) = saw.expect("an ErrorResponse, not a mute close");
        assert_eq!(
            (severity.as_str(), code.as_str()),
            ("FATAL", "53300"),
            "{message}"
        );
        refused += 1;
    }
    eprintln!("40 logins: {refused} refused with 53300 within {slowest:?}");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    // Evicted silent connections were closed; at most 4 logging-in slots were ever held.
    let mut closed = 0;
    for mut s in silent {
        let mut byte = [0u8; 64];
        // Ended: EOF, a reset, or a last message (not a timeout).
        if tokio::time::timeout(Duration::from_millis(20), s.read(&mut byte))
            .await
            .is_ok()
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 36,
        "only {closed} of 40 silent connections evicted"
    );
    a.simple_query("SELECT 1").await.expect("a still works");
    drop((a, b));
    no_connections_left(&env).await;
    still_serves(&env).await;
}
