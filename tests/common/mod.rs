//! Shared integration-test support: a throwaway PostgreSQL cluster per test (`pg`) and ddlgate
//! started in-process on port 0 in front of it. Every test gets its own cluster and proxy, so
//! tests never share server state or ports.

#![allow(dead_code)] // each test binary uses a different subset

pub mod binary;
pub mod fake;
pub mod pg;
pub mod pki;
pub mod schema;
pub mod wire;
pub mod writer;
#[allow(unused_imports)] // not every test binary runs a writer
pub use writer::Writer;

use std::net::SocketAddr;
use std::time::Duration;

use ddlgate::config::Config;
use ddlgate::server::Handle;
pub use pg::PgCluster;
#[allow(unused_imports)] // not every test binary compares end states
pub use schema::catalog_dump;

/// The proxy still serves a normal session: `SELECT 1` through it as `trust_user`.
pub async fn still_serves(env: &Env) {
    let c = env.proxy_client("trust_user").await;
    let one: i32 = c
        .query_one("SELECT 1", &[])
        .await
        .expect("proxy still works")
        .get(0);
    assert_eq!(one, 1);
}

/// A cluster with ddlgate in front of it.
pub struct Env {
    pub pg: PgCluster,
    pub proxy: Handle,
}

impl Env {
    /// Starts a fresh cluster and a proxy with default settings (adjusted by `tweak`).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Env {
        init_tracing();
        let pg = tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster start");
        let proxy = start_proxy(pg.port(), tweak).await;
        Env { pg, proxy }
    }

    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// libpq-style connection string through ddlgate.
    pub fn proxy_conn(&self, user: &str) -> String {
        conn_str(self.proxy_addr().port(), user)
    }

    /// The same, straight to PostgreSQL.
    pub fn direct_conn(&self, user: &str) -> String {
        conn_str(self.pg.port(), user)
    }

    pub async fn proxy_client(&self, user: &str) -> tokio_postgres::Client {
        connect(&self.proxy_conn(user)).await
    }

    pub async fn direct_client(&self, user: &str) -> tokio_postgres::Client {
        connect(&self.direct_conn(user)).await
    }

    /// Creates table `t (id serial PRIMARY KEY, x int)` with `rows` rows, owned by `trust_user`;
    /// returns the superuser's direct client that created it.
    pub async fn table_t(&self, rows: u32) -> tokio_postgres::Client {
        let admin = self.direct_client("ddlgate_admin").await;
        admin
            .batch_execute(&format!(
                "CREATE TABLE t (id serial PRIMARY KEY, x int); INSERT INTO t (x) SELECT g FROM generate_series(1, {rows}) g;
                 ALTER TABLE t OWNER TO trust_user; GRANT ALL ON SEQUENCE t_id_seq TO trust_user;"
            ))
            .await
            .expect("setup");
        admin
    }

    /// Runs psql (on a blocking thread) against `port` as `user`.
    pub async fn psql(
        &self,
        port: u16,
        user: &str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> std::process::Output {
        let user = user.to_owned();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pg::run_psql(port, &user, &args, stdin.as_deref())
        })
        .await
        .expect("psql thread")
    }
}

/// Starts ddlgate on 127.0.0.1:0 in front of `upstream_port`.
pub async fn start_proxy(upstream_port: u16, tweak: impl FnOnce(&mut Config)) -> Handle {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.upstream.address = format!("127.0.0.1:{upstream_port}");
    config.server.drain_timeout_ms = Duration::from_secs(5);
    tweak(&mut config);
    config.validate().expect("test config is valid");
    ddlgate::server::start(config).await.expect("proxy starts")
}

pub fn conn_str(port: u16, user: &str) -> String {
    let mut s =
        format!("host=127.0.0.1 port={port} user={user} dbname=postgres connect_timeout=10");
    if let Some(pw) = pg::password_for(user) {
        s.push_str(&format!(" password={pw}"));
    }
    s
}

/// Connects with tokio-postgres and drives the connection in the background.
pub async fn connect(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conn}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The SQLSTATE of a tokio-postgres error, if the server (or ddlgate) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// Waits (up to `timeout`) until exactly `n` sessions are actively running a statement whose
/// text is LIKE `pattern`, as seen by `admin` straight on PostgreSQL.
pub async fn wait_active(
    admin: &tokio_postgres::Client,
    pattern: &str,
    n: i64,
    timeout: Duration,
) -> bool {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' AND pid <> pg_backend_pid()";
    eventually(timeout, || async {
        admin
            .query_one(sql, &[&pattern])
            .await
            .map(|r| r.get::<_, i64>(0) == n)
            .unwrap_or(false)
    })
    .await
}

/// A client whose NoticeResponses are collected, in order.
pub async fn client_with_notices(
    conn: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                let _ = tx.send(n);
            }
        }
    });
    (client, rx)
}

/// A notice as one line: its message, a space, its detail.
pub fn notice_line(n: &tokio_postgres::error::DbError) -> String {
    format!("{} {}", n.message(), n.detail().unwrap_or(""))
}

/// Waits (up to 10 s) until the proxy's guard has retried at least `n` DDL attempts after a
/// lock timeout: the DDL is then known to be waiting on its blocker.
pub async fn guard_retried(env: &Env, n: u64) -> bool {
    let shared = env.proxy.shared().clone();
    eventually(Duration::from_secs(10), || {
        let shared = shared.clone();
        async move { shared.metrics.value("ddlgate_lock_retries_total", &[]) >= n as f64 }
    })
    .await
}

/// Sessions handed to the steady relay (`to = "steady"`) or back to their event loop
/// (`"loop"`) so far: `ddlgate_steady_relay_handoffs_total{to}`.
pub fn steady_handoffs(env: &Env, to: &str) -> u64 {
    env.proxy
        .shared()
        .metrics
        .value("ddlgate_steady_relay_handoffs_total", &[("to", to)]) as u64
}

/// Sets up `victim (id int)` with one row, owned by trust_user, on `pg`; returns a direct
/// superuser client to check it with.
pub async fn victim(pg: &PgCluster) -> tokio_postgres::Client {
    let admin = connect(&pg.conn_str("ddlgate_admin", None)).await;
    admin
        .batch_execute(
            "CREATE TABLE victim (id int); INSERT INTO victim VALUES (1); ALTER TABLE victim OWNER TO trust_user",
        )
        .await
        .expect("setup");
    admin
}
