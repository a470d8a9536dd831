//! TLS through ddlgate against real PostgreSQL: client-facing termination (`[tls]`) with psql
//! and tokio-postgres, verify-full by host name and by IP, plaintext refused in `require` mode,
//! the injection guard after SSLRequest, direct TLS (PostgreSQL 17 `sslnegotiation=direct`),
//! TLS to the upstream (`upstream.tls`), SCRAM and its channel binding across two TLS legs, and
//! cancel requests over TLS; ddlgate's own tools (`undo`, `trace`) as TLS clients verifying the
//! server with `--ca-file`. Certificates are made with rcgen for each test.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{Leaf, Pki};
use common::*;
use ddlgate::config::{ClientTlsMode, Config, UpstreamTlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;

// ---------------------------------------------------------------------------------------------
// Test PKI and clients.

/// Client-facing TLS with `leaf`.
fn serve_tls(config: &mut Config, mode: ClientTlsMode, leaf: &Leaf) {
    config.tls.mode = mode;
    config.tls.cert_file = leaf.cert_file.clone();
    config.tls.key_file = leaf.key_file.clone();
}

/// rustls client configuration trusting `ca_file`, offering ALPN `postgresql` like libpq 17.
fn client_config(ca_file: &Path) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).expect("read CA") {
        roots.add(cert.expect("CA pem")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config
}

fn tls_connector(ca_file: &Path) -> MakeRustlsConnect {
    MakeRustlsConnect::new(client_config(ca_file))
}

/// tokio-postgres over TLS; `extra` goes into the connection string (e.g. `sslmode=require`).
async fn connect_tls(
    port: u16,
    user: &str,
    extra: &str,
    ca_file: &Path,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn = format!("{} {extra}", conn_str(port, user));
    let (client, connection) = tokio_postgres::connect(&conn, tls_connector(ca_file)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The message of an error the server (or ddlgate) sent.
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

fn conninfo(host: &str, port: u16, user: &str, extra: &str) -> String {
    format!("host={host} port={port} user={user} dbname=postgres {extra}")
}

/// psql with a libpq connection string, `-At -c sql`.
async fn psql(conninfo: String, user: &str, sql: &str) -> Output {
    let (user, sql) = (user.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        pg::run_psql_conninfo(&conninfo, &user, &["-At", "-c", &sql], None)
    })
    .await
    .expect("psql thread")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output, expected: &str) {
    assert!(
        out.status.success(),
        "psql failed: {}\n{}",
        out.status,
        stderr(out)
    );
    assert_eq!(stdout(out), expected, "stderr: {}", stderr(out));
}

#[track_caller]
fn assert_fails_with(out: &Output, needle: &str) {
    assert!(!out.status.success(), "psql must fail: {}", stdout(out));
    assert!(stderr(out).contains(needle), "psql said: {}", stderr(out));
}

/// Whether the session's upstream connection (as PostgreSQL sees it) uses TLS.
async fn upstream_ssl(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// ddlgate in front of a PostgreSQL that has `ssl = on` with `server`'s certificate.
async fn start_ssl_env(server: &Leaf, tweak: impl FnOnce(&mut Config)) -> Env {
    init_tracing();
    let (cert, key) = (server.cert_pem.clone(), server.key_pem.clone());
    let pg = tokio::task::spawn_blocking(move || PgCluster::start_with_ssl(&cert, &key))
        .await
        .expect("cluster start");
    let proxy = start_proxy(pg.port(), tweak).await;
    Env { pg, proxy }
}

/// A proxy whose upstream is never reached (for tests that end during negotiation).
async fn start_unconnected_proxy(tweak: impl FnOnce(&mut Config)) -> ddlgate::server::Handle {
    init_tracing();
    start_proxy(pg::free_port(), tweak).await
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Reads one ErrorResponse's SQLSTATE and message from a raw stream.
async fn read_error<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (String, String) {
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut header))
        .await
        .expect("answer in time")
        .expect("an answer");
    assert_eq!(header[0], b'E', "expected an ErrorResponse");
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await.expect("error body");
    let fields = ddlgate::protocol::ErrorFields::parse(&body);
    (fields.code, fields.message)
}

// ---------------------------------------------------------------------------------------------
// Client-facing TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_with_require_and_verify_full_and_plaintext_is_refused() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| serve_tls(c, ClientTlsMode::Require, &leaf)).await;
    let port = env.proxy_addr().port();
    let ca = pki.ca_file.display().to_string();

    let out = psql(
        conninfo("127.0.0.1", port, "trust_user", "sslmode=require"),
        "trust_user",
        "\\conninfo",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("SSL connection (protocol: TLSv1."),
        "{}",
        stdout(&out)
    );
    // verify-full by host name and by IP address: the certificate names both.
    for host in ["localhost", "127.0.0.1"] {
        let out = psql(
            conninfo(
                host,
                port,
                "trust_user",
                &format!("sslmode=verify-full sslrootcert={ca}"),
            ),
            "trust_user",
            "SELECT current_user",
        )
        .await;
        assert_ok(&out, "trust_user");
    }
    // A CA that did not issue ddlgate's certificate.
    let other = Pki::new("other");
    let out = psql(
        conninfo(
            "localhost",
            port,
            "trust_user",
            &format!(
                "sslmode=verify-full sslrootcert={}",
                other.ca_file.display()
            ),
        ),
        "trust_user",
        "SELECT 1",
    )
    .await;
    assert_fails_with(&out, "certificate verify failed");
    // Plaintext: the FATAL arrives in plaintext, after the startup packet.
    let out = psql(
        conninfo("127.0.0.1", port, "trust_user", "sslmode=disable"),
        "trust_user",
        "SELECT 1",
    )
    .await;
    assert_fails_with(&out, "ddlgate requires TLS: connect with sslmode=require");
    // sslmode=prefer (libpq's default) simply gets TLS.
    let out = psql(
        conninfo("127.0.0.1", port, "trust_user", "sslmode=prefer"),
        "trust_user",
        "\\conninfo",
    )
    .await;
    assert!(stdout(&out).contains("SSL connection"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_startup_in_require_mode_gets_fatal_28000() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let proxy = start_unconnected_proxy(|c| serve_tls(c, ClientTlsMode::Require, &leaf)).await;
    let mut s = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    s.write_all(&wire::startup_packet("trust_user", "postgres"))
        .await
        .expect("startup");
    let (code, message) = read_error(&mut s).await;
    assert_eq!(code, "28000");
    assert_eq!(
        message,
        "ddlgate requires TLS: connect with sslmode=require"
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "nothing follows a FATAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_mode_serves_tls_and_plaintext_and_disable_answers_n() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| serve_tls(c, ClientTlsMode::Allow, &leaf)).await;
    let port = env.proxy_addr().port();
    for (mode, expected) in [("sslmode=disable", "off"), ("sslmode=require", "on")] {
        let out = psql(
            conninfo("127.0.0.1", port, "md5_user", mode),
            "md5_user",
            "\\conninfo",
        )
        .await;
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(
            stdout(&out).contains("SSL connection"),
            expected == "on",
            "{mode}: {}",
            stdout(&out)
        );
    }

    // tls.mode = "disable" (the default): SSLRequest gets `N`.
    let plain = start_proxy(env.pg.port(), |_| {}).await;
    let port = plain.local_addr().port();
    let out = psql(
        conninfo("127.0.0.1", port, "trust_user", "sslmode=require"),
        "trust_user",
        "SELECT 1",
    )
    .await;
    assert_fails_with(&out, "server does not support SSL");
    let out = psql(
        conninfo("127.0.0.1", port, "trust_user", "sslmode=prefer"),
        "trust_user",
        "SELECT 1",
    )
    .await;
    assert_ok(&out, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pipelined_after_ssl_request_are_refused() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    for mode in [ClientTlsMode::Require, ClientTlsMode::Disable] {
        let proxy = start_unconnected_proxy(|c| {
            if mode != ClientTlsMode::Disable {
                serve_tls(c, mode, &leaf);
            }
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect");
        // SSLRequest and a plaintext StartupMessage in one segment, without waiting for `S`:
        // what a man-in-the-middle injecting a session before the handshake would send.
        let mut both = SSL_REQUEST.to_vec();
        both.extend_from_slice(&wire::startup_packet("trust_user", "postgres"));
        s.write_all(&both).await.expect("write");
        let (code, message) = read_error(&mut s).await;
        assert_eq!(code, "08P01", "{mode:?}");
        assert_eq!(message, "received unencrypted data after SSL request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_over_tls_relays_queries_copy_ddl_and_cancel() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| serve_tls(c, ClientTlsMode::Require, &leaf)).await;
    let port = env.proxy_addr().port();
    let c = connect_tls(port, "trust_user", "sslmode=require", &pki.ca_file)
        .await
        .expect("TLS connect");
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g",
    )
    .await
    .expect("setup over TLS");
    // Large results: many TLS records in both directions, partial writes, flushes.
    let rows = c
        .query("SELECT id, v FROM t WHERE id > $1 ORDER BY id", &[&0i32])
        .await
        .expect("extended");
    assert_eq!(rows.len(), 20000);
    let big: String = c
        .query_one("SELECT repeat('x', 3000000)", &[])
        .await
        .expect("3 MB value")
        .get(0);
    assert_eq!(big.len(), 3_000_000);
    // COPY in and out.
    {
        use futures_util::{SinkExt, TryStreamExt};
        let sink = c
            .copy_in("COPY t (id, v) FROM STDIN")
            .await
            .expect("copy in");
        let mut sink = std::pin::pin!(sink);
        let mut data = String::new();
        for i in 20001..=30000 {
            data.push_str(&format!("{i}\tcopied\n"));
        }
        sink.send(bytes::Bytes::from(data)).await.expect("send");
        assert_eq!(sink.finish().await.expect("finish"), 10000);
        let out: Vec<bytes::Bytes> = c
            .copy_out("COPY (SELECT id FROM t ORDER BY id) TO STDOUT")
            .await
            .expect("copy out")
            .try_collect()
            .await
            .expect("collect");
        let text: Vec<u8> = out.concat();
        assert_eq!(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            30000
        );
    }
    // DDL runs under the lock guard, whose own statements go over the same TLS streams.
    c.batch_execute("ALTER TABLE t ADD COLUMN n int")
        .await
        .expect("guarded DDL over TLS");
    let n: i64 = c
        .query_one("SELECT count(n) FROM t", &[])
        .await
        .expect("after DDL")
        .get(0);
    assert_eq!(n, 0);

    // Cancel: tokio-postgres opens a new connection, SSLRequest first, CancelRequest inside TLS.
    let token = c.cancel_token();
    let running = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    let admin = env.direct_client("ddlgate_admin").await;
    assert!(wait_active(&admin, "SELECT pg_sleep(30)", 1, Duration::from_secs(10)).await);
    token
        .cancel_query(tls_connector(&pki.ca_file))
        .await
        .expect("cancel over TLS");
    let err = running
        .await
        .expect("join")
        .expect_err("cancelled statement fails");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert_eq!(
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_cancels_forwarded_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_psql_cancels_a_tls_session_in_require_mode() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| serve_tls(c, ClientTlsMode::Require, &leaf)).await;
    let child = pg::spawn_psql_conninfo(
        &conninfo(
            "127.0.0.1",
            env.proxy_addr().port(),
            "trust_user",
            "sslmode=require",
        ),
        "trust_user",
        &["-c", "SELECT pg_sleep(30)"],
    );
    let admin = env.direct_client("ddlgate_admin").await;
    assert!(wait_active(&admin, "SELECT pg_sleep(30)", 1, Duration::from_secs(10)).await);
    // psql 15's Ctrl-C sends its CancelRequest in plaintext (libpq before 17 never encrypts
    // cancels); `require` still accepts it, as PostgreSQL does with hostssl.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        stderr(&out).contains("canceling statement due to user request"),
        "psql said: {}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| serve_tls(c, ClientTlsMode::Require, &leaf)).await;
    let port = env.proxy_addr().port();
    // tokio-postgres with sslnegotiation=direct: ClientHello first, ALPN `postgresql`.
    let c = connect_tls(
        port,
        "scram_user",
        "sslmode=require sslnegotiation=direct",
        &pki.ca_file,
    )
    .await
    .expect("direct TLS connect");
    let me: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(me, "scram_user");

    // The same without ALPN is refused, over the TLS connection it opened.
    let mut config = client_config(&pki.ca_file);
    config.alpn_protocols.clear();
    let tcp = tokio::net::TcpStream::connect(env.proxy_addr())
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    tls.write_all(&wire::startup_packet("trust_user", "postgres"))
        .await
        .expect("startup");
    let (code, message) = read_error(&mut tls).await;
    assert_eq!(code, "08P01");
    assert!(message.contains("without ALPN"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_tls_to_a_plaintext_upstream() {
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| serve_tls(c, ClientTlsMode::Require, &leaf)).await;
    let port = env.proxy_addr().port();
    for user in ["trust_user", "md5_user", "scram_user"] {
        // libpq over TLS offers channel binding (gs2 flag `y`); a plaintext server accepts it.
        let out = psql(
            conninfo("127.0.0.1", port, user, "sslmode=require"),
            user,
            "SELECT current_user",
        )
        .await;
        assert_ok(&out, user);
        let c = connect_tls(port, user, "sslmode=require", &pki.ca_file)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let me: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .expect("query")
            .get(0);
        assert_eq!(me, user);
    }
    // Channel binding itself cannot be had through a terminating proxy (unless it presents
    // the server's own certificate): libpq says so when the client insists.
    let out = psql(
        conninfo(
            "127.0.0.1",
            port,
            "scram_user",
            "sslmode=require channel_binding=require",
        ),
        "scram_user",
        "SELECT 1",
    )
    .await;
    assert_fails_with(&out, "channel binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_fail_the_start_naming_the_key() {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.tls.mode = ClientTlsMode::Require;
    config.tls.cert_file = "/nonexistent/ddlgate.crt".into();
    config.tls.key_file = "/nonexistent/ddlgate.key".into();
    config.validate().expect("paths are given");
    let err = ddlgate::server::start(config)
        .await
        .err()
        .expect("start must fail");
    assert!(err.to_string().contains("tls.cert_file"), "{err}");

    // A key that does not belong to the certificate.
    let pki = Pki::new("ddlgate");
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.tls.mode = ClientTlsMode::Allow;
    config.tls.cert_file = a.cert_file.clone();
    config.tls.key_file = b.key_file.clone();
    let err = ddlgate::server::start(config)
        .await
        .err()
        .expect("start must fail");
    assert!(err.to_string().contains("tls.key_file"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Upstream TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_require_and_verify_full() {
    let pki = Pki::new("postgres");
    let server = pki.leaf("postgres");
    let ca_file = pki.ca_file.clone();
    let env = start_ssl_env(&server, |c| {
        c.upstream.tls = UpstreamTlsMode::VerifyFull;
        c.upstream.tls_ca_file = ca_file;
    })
    .await;
    let p = env.proxy_client("scram_user").await;
    assert!(upstream_ssl(&p).await, "verify-full session must be TLS");
    // Cancel requests ddlgate sends go over TLS too.
    let token = p.cancel_token();
    let running = tokio::spawn(async move { p.simple_query("SELECT pg_sleep(30)").await });
    let admin = env.direct_client("ddlgate_admin").await;
    assert!(wait_active(&admin, "SELECT pg_sleep(30)", 1, Duration::from_secs(10)).await);
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel");
    let err = running.await.expect("join").expect_err("cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");

    // require: encrypted, certificate not checked.
    let require = start_proxy(env.pg.port(), |c| c.upstream.tls = UpstreamTlsMode::Require).await;
    let c = connect(&conn_str(require.local_addr().port(), "md5_user")).await;
    assert!(upstream_ssl(&c).await);
    // psql (libpq) through it, SCRAM included: a plaintext client never sees SCRAM-SHA-256-PLUS.
    let out = psql(
        conninfo(
            "127.0.0.1",
            require.local_addr().port(),
            "scram_user",
            "sslmode=disable",
        ),
        "scram_user",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_ok(&out, "t");

    // verify-full with a CA that did not sign the server's certificate.
    let other = Pki::new("other");
    let ca_file = other.ca_file.clone();
    let wrong = start_proxy(env.pg.port(), |c| {
        c.upstream.tls = UpstreamTlsMode::VerifyFull;
        c.upstream.tls_ca_file = ca_file;
    })
    .await;
    let err = tokio_postgres::connect(
        &conn_str(wrong.local_addr().port(), "trust_user"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("untrusted server certificate");
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err}");
    assert!(db_message(&err).contains("could not set up TLS"), "{err:?}");
    assert!(wrong.shared().connections.rejected("upstream_unreachable") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_tls_fails_require_and_falls_back_for_prefer() {
    let env = Env::start_with(|c| c.upstream.tls = UpstreamTlsMode::Require).await;
    let err = tokio_postgres::connect(&env.proxy_conn("trust_user"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("server without TLS");
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err}");
    assert!(db_message(&err).contains("does not support TLS"), "{err:?}");

    let prefer = start_proxy(env.pg.port(), |c| c.upstream.tls = UpstreamTlsMode::Prefer).await;
    let c = connect(&conn_str(prefer.local_addr().port(), "scram_user")).await;
    assert!(!upstream_ssl(&c).await, "prefer falls back to plaintext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_channel_binding_across_two_tls_legs() {
    let pki = Pki::new("shared");
    let server = pki.leaf("postgres");
    let proxy_leaf = pki.leaf("ddlgate");
    // Different certificates on the two legs.
    let env = start_ssl_env(&server, |c| {
        serve_tls(c, ClientTlsMode::Allow, &proxy_leaf);
        c.upstream.tls = UpstreamTlsMode::Require;
    })
    .await;
    let port = env.proxy_addr().port();
    // libpq's default channel_binding=prefer over TLS: with SCRAM-SHA-256-PLUS withheld it says
    // `y`, which the TLS upstream would refuse as a downgrade; ddlgate explains instead.
    let out = psql(
        conninfo("127.0.0.1", port, "scram_user", "sslmode=require"),
        "scram_user",
        "SELECT 1",
    )
    .await;
    assert_fails_with(&out, "SCRAM channel binding cannot pass through ddlgate");
    assert_fails_with(&out, "channel_binding=disable");
    // What the message recommends works.
    let out = psql(
        conninfo(
            "127.0.0.1",
            port,
            "scram_user",
            "sslmode=require channel_binding=disable",
        ),
        "scram_user",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_ok(&out, "t");
    let c = connect_tls(
        port,
        "scram_user",
        "sslmode=require channel_binding=disable",
        &pki.ca_file,
    )
    .await
    .expect("tokio-postgres without channel binding");
    assert!(upstream_ssl(&c).await);
    // A plaintext client is never offered SCRAM-SHA-256-PLUS (libpq would give up on it).
    let out = psql(
        conninfo("127.0.0.1", port, "scram_user", "sslmode=disable"),
        "scram_user",
        "SELECT 1",
    )
    .await;
    assert_ok(&out, "1");
    // md5 has no channel binding: unaffected.
    let out = psql(
        conninfo("127.0.0.1", port, "md5_user", "sslmode=require"),
        "md5_user",
        "SELECT 1",
    )
    .await;
    assert_ok(&out, "1");

    // ddlgate presenting PostgreSQL's own certificate: the binding data is the same on both
    // legs, so SCRAM-SHA-256-PLUS passes through and even channel_binding=require works.
    let same = start_proxy(env.pg.port(), |c| {
        serve_tls(c, ClientTlsMode::Require, &server);
        c.upstream.tls = UpstreamTlsMode::VerifyFull;
        c.upstream.tls_ca_file = pki.ca_file.clone();
    })
    .await;
    for extra in ["sslmode=require channel_binding=require", "sslmode=require"] {
        let out = psql(
            conninfo("127.0.0.1", same.local_addr().port(), "scram_user", extra),
            "scram_user",
            "SELECT current_user",
        )
        .await;
        assert_ok(&out, "scram_user");
    }
    let c = connect_tls(
        same.local_addr().port(),
        "scram_user",
        "sslmode=require channel_binding=require",
        &pki.ca_file,
    )
    .await
    .expect("tokio-postgres with channel binding through the same certificate");
    assert!(upstream_ssl(&c).await);
}

// ---------------------------------------------------------------------------------------------
// ddlgate's own command-line tools as TLS clients (`src/client.rs`).

/// `ddlgate ARGS…`, the built binary, off the runtime's threads.
async fn ddlgate_cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"));
        cmd.args(&args).env_remove("DDLGATE_CONFIG");
        pg::run(&mut cmd, None, Duration::from_secs(60)).expect("run ddlgate")
    })
    .await
    .expect("cli thread")
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs `ddlgate ARGS…` and asserts it exits 2 (no connection) saying `why`.
async fn refused(args: &[&str], why: &str) {
    let out = ddlgate_cli(argv(args)).await;
    let text = pg::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains(why), "{why}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_and_trace_connect_over_tls_and_verify_the_server_with_ca_file() {
    // `ddlgate undo` through a ddlgate that requires TLS from its clients.
    let pki = Pki::new("ddlgate");
    let leaf = pki.leaf("ddlgate");
    let env = Env::start_with(|c| {
        serve_tls(c, ClientTlsMode::Require, &leaf);
        c.journal.enabled = true;
    })
    .await;
    let port = env.proxy_addr().port();
    let app = connect_tls(port, "trust_user", "sslmode=require", &pki.ca_file)
        .await
        .expect("TLS session");
    app.batch_execute("CREATE TABLE t (x int)")
        .await
        .expect("table");
    // A statement of its own, so that the table is there to be read before it runs.
    app.batch_execute("CREATE INDEX t_x ON t (x)")
        .await
        .expect("journaled DDL");
    let index_exists = || async {
        app.query_one("SELECT to_regclass('t_x') IS NOT NULL", &[])
            .await
            .expect("to_regclass")
            .get::<_, bool>(0)
    };
    let url = format!("postgres://trust_user@localhost:{port}/postgres?sslmode=require");
    let other = Pki::new("other");
    let ca = pki.ca_file.display().to_string();
    let other_ca = other.ca_file.display().to_string();

    // Without TLS the proxy refuses the login; with a CA that did not sign its certificate the
    // tool refuses the proxy. Nothing is undone either way.
    let plain = url.replace("sslmode=require", "sslmode=disable");
    refused(&["undo", "--database", &plain, "--last", "1"], "28000").await;
    refused(
        &[
            "undo",
            "--database",
            &url,
            "--ca-file",
            &other_ca,
            "--last",
            "1",
        ],
        "certificate",
    )
    .await;
    assert!(index_exists().await);
    // The right CA: verified, and the index is dropped (CONCURRENTLY, through the proxy).
    let out = ddlgate_cli(argv(&[
        "undo",
        "--database",
        &url,
        "--ca-file",
        &ca,
        "--last",
        "1",
    ]))
    .await;
    assert!(out.status.success(), "{}", pg::output_text(&out));
    assert!(!index_exists().await, "{}", pg::output_text(&out));

    // `ddlgate trace` on a scratch database of a PostgreSQL with `ssl = on`.
    let server_pki = Pki::new("server");
    let server = server_pki.leaf("server");
    let (cert, key) = (server.cert_pem.clone(), server.key_pem.clone());
    let pg = tokio::task::spawn_blocking(move || PgCluster::start_with_ssl(&cert, &key))
        .await
        .expect("cluster start");
    let admin = connect(&pg.admin_conn_str()).await;
    admin
        .batch_execute(
            "COMMENT ON DATABASE postgres IS 'ddlgate:scratch'; CREATE TABLE s (id int PRIMARY KEY)",
        )
        .await
        .expect("scratch");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("001_add.sql");
    std::fs::write(&file, "ALTER TABLE s ADD COLUMN note text;\n").expect("migration");
    let file = file.display().to_string();
    // The certificate names 127.0.0.1, the host the string connects to.
    let url = format!("{} sslmode=require", pg.admin_conn_str());
    let server_ca = server_pki.ca_file.display().to_string();
    refused(
        &["trace", "--database", &url, "--ca-file", &other_ca, &file],
        "certificate",
    )
    .await;
    let out = ddlgate_cli(argv(&[
        "trace",
        "--database",
        &url,
        "--ca-file",
        &server_ca,
        &file,
    ]))
    .await;
    assert!(out.status.success(), "{}", pg::output_text(&out));
    assert!(
        pg::output_text(&out).contains("AccessExclusiveLock"),
        "{}",
        pg::output_text(&out)
    );
    let kept: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 's' AND column_name = 'note'",
            &[],
        )
        .await
        .expect("columns")
        .get(0);
    assert_eq!(kept, 0, "the trace rolls back");
    // Plain text where the string asks for it, as before.
    let plain = format!("{} sslmode=disable", pg.admin_conn_str());
    let out = ddlgate_cli(argv(&["trace", "--database", &plain, &file])).await;
    assert!(out.status.success(), "{}", pg::output_text(&out));
}
