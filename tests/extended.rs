//! DDL sent alone in the extended protocol, as pgJDBC, libpq's `PQexecParams`, node-postgres
//! and tokio-postgres send it, gets what a simple Query gets: the guard retries a lock timeout
//! until the blocker goes, and a statement that needs safe steps runs as those steps. The
//! client sees the replies a server gives its unit — checked message by message on the raw
//! wire — and the server keeps its prepared statements as it would without ddlgate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::wire::{self, message, read_until_ready};
use common::*;
use ddlgate::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fast_guard(c: &mut Config) {
    c.guard.lock_timeout_ms = LOCK_TIMEOUT;
    c.guard.backoff_initial_ms = Duration::from_millis(50);
    c.guard.backoff_max_ms = Duration::from_millis(200);
    c.guard.max_attempts = 100;
    c.guard.max_wait_ms = Duration::from_secs(30);
    // The recipes are under test: small tables would be let through as written.
    c.catalog.small_table_rows = 0;
}

/// The guard's `lock_timeout` here (`fast_guard`).
const LOCK_TIMEOUT: Duration = Duration::from_millis(200);
/// The longest a reader may wait while the guard's attempts meet a blocker: one attempt's
/// `lock_timeout` queued behind it, plus scheduling slack on a loaded test machine.
const READER_BOUND: Duration = Duration::from_millis(200 + 300);
/// The longest a writer may wait while a recipe's steps run: the guard's `lock_timeout`.
const BOUND: Duration = LOCK_TIMEOUT;

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.push(0);
    b.extend_from_slice(&0u16.to_be_bytes());
    message(b'P', &b)
}

fn bind(statement: &str) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(statement.as_bytes());
    b.push(0);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    message(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    message(b'D', &b)
}

fn execute() -> Vec<u8> {
    message(b'E', &[0, 0, 0, 0, 0])
}

fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// The tags of a reply sequence, notices left out (where they fall is the server's business
/// only as far as they come before the command's end), and the notices' texts.
fn tags(replies: &[(u8, Vec<u8>)]) -> (String, Vec<String>) {
    let tags = replies
        .iter()
        .filter(|(t, _)| *t != b'N')
        .map(|(t, _)| *t as char)
        .collect();
    let notices = replies
        .iter()
        .filter(|(t, _)| *t == b'N')
        .map(|(_, b)| wire::error_fields(b).2)
        .collect();
    (tags, notices)
}

fn command_tag(replies: &[(u8, Vec<u8>)]) -> String {
    replies
        .iter()
        .find(|(t, _)| *t == b'C')
        .map(|(_, b)| String::from_utf8_lossy(&b[..b.len() - 1]).into_owned())
        .unwrap_or_default()
}

/// The (code, message) of the first ErrorResponse.
fn error_of(replies: &[(u8, Vec<u8>)]) -> (String, String) {
    let (_, code, message) = replies
        .iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| wire::error_fields(b))
        .expect("an ErrorResponse");
    (code, message)
}

async fn send(s: &mut TcpStream, frames: &[Vec<u8>]) {
    s.write_all(&frames.concat()).await.expect("write");
}

/// Runs `SELECT count(*)`/`INSERT` on `sql` in a loop on a direct connection until stopped;
/// returns the longest one took.
fn spawn_client(
    conn: String,
    sql: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let c = connect(&conn).await;
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            c.batch_execute(sql).await.expect("concurrent client");
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worst
    })
}

/// Columns, constraints (with validity) and indexes (with validity) of the public schema.
async fn schema(client: &tokio_postgres::Client) -> Vec<String> {
    let sql = "
      SELECT format('%s column %s %s notnull=%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT format('%s constraint %s type=%s validated=%s %s', c.relname, co.conname, co.contype, co.convalidated, pg_get_constraintdef(co.oid))
        FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public'
      UNION ALL
      SELECT format('%s index %s valid=%s %s', c.relname, ic.relname, i.indisvalid, pg_get_indexdef(i.indexrelid))
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public'
      ORDER BY 1";
    client
        .query(sql, &[])
        .await
        .expect("schema")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_unit_behind_a_lock_is_retried_and_succeeds() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.table_t(100).await;
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("SET application_name = 'long-report'; BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_client(
        env.direct_conn("trust_user"),
        "SELECT count(*) FROM t",
        stop.clone(),
    );

    // pgJDBC's shape once a statement is named: Parse S_1 / Bind / Describe portal / Execute /
    // Sync, in one write.
    let mut s = wire::connect_trust(env.proxy_addr()).await;
    let ddl = "ALTER TABLE t ADD COLUMN IF NOT EXISTS c int";
    send(
        &mut s,
        &[
            parse("S_1", ddl),
            bind("S_1"),
            describe(b'P', ""),
            execute(),
            sync(),
        ],
    )
    .await;
    assert!(
        guard_retried(&env, 2).await,
        "the guard retries while the blocker holds"
    );
    blocker.batch_execute("COMMIT").await.expect("commit");
    let replies = read_until_ready(&mut s).await;
    let (seq, notices) = tags(&replies);
    assert_eq!(
        seq, "12nCZ",
        "ParseComplete, BindComplete, NoData, CommandComplete, ReadyForQuery"
    );
    assert_eq!(command_tag(&replies), "ALTER TABLE");
    assert_eq!(replies.last().map(|(_, b)| b.clone()), Some(b"I".to_vec()));
    assert!(
        notices
            .iter()
            .any(|n| n.contains("retrying") && n.contains("long-report")),
        "{notices:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let worst = reader.await.expect("reader");
    eprintln!("lone unit retried behind a blocker: a reader's longest wait {worst:?}");
    assert!(worst < READER_BOUND, "a reader waited {worst:?}");

    // The named statement is the server's: a later Bind of it runs (and is guarded again),
    // and preparing the name again fails as it would without ddlgate.
    send(
        &mut s,
        &[bind("S_1"), describe(b'S', "S_1"), execute(), sync()],
    )
    .await;
    let replies = read_until_ready(&mut s).await;
    assert_eq!(tags(&replies).0, "2tnCZ");
    send(&mut s, &[parse("S_1", ddl), bind("S_1"), execute(), sync()]).await;
    let replies = read_until_ready(&mut s).await;
    assert_eq!(tags(&replies).0, "EZ");
    assert_eq!(
        error_of(&replies).0,
        "42P05",
        "prepared statement \"S_1\" already exists"
    );
    // The unnamed statement of a lone unit survives ddlgate's own queries after it.
    send(
        &mut s,
        &[
            parse("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS u int"),
            bind(""),
            execute(),
            sync(),
        ],
    )
    .await;
    assert_eq!(tags(&read_until_ready(&mut s).await).0, "12CZ");
    send(&mut s, &[bind(""), execute(), sync()]).await;
    assert_eq!(
        tags(&read_until_ready(&mut s).await).0,
        "2CZ",
        "the unnamed statement is still there"
    );
    // One ReadyForQuery per Sync, nothing left over.
    send(&mut s, &[sync()]).await;
    assert_eq!(tags(&read_until_ready(&mut s).await).0, "Z");

    // tokio-postgres: Parse/Describe/Sync, then Bind/Execute/Sync; and query_typed's one unit.
    let p = env.proxy_client("trust_user").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let retries = env
        .proxy
        .shared()
        .metrics
        .value("ddlgate_lock_retries_total", &[]) as u64;
    let run = tokio::spawn(async move {
        p.execute("ALTER TABLE t ADD COLUMN d int", &[]).await?;
        p.query_typed("ALTER TABLE t ADD COLUMN e int", &[]).await?;
        Ok::<_, tokio_postgres::Error>(p)
    });
    assert!(guard_retried(&env, retries + 2).await);
    blocker.batch_execute("COMMIT").await.expect("commit");
    let p = run
        .await
        .expect("task")
        .expect("both run once the blocker is gone");
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name IN ('c', 'd', 'e', 'u')",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(n, 4);
    // The session's own settings are back.
    let rows = p.simple_query("SHOW lock_timeout").await.expect("show");
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("0"))
        )
    );

    // When the budget is spent the error is the guard's 55P03, in place of the Execute's.
    let env2 = Env::start_with(|c| {
        fast_guard(c);
        c.guard.max_attempts = 2;
    })
    .await;
    env2.table_t(10).await;
    let blocker = env2.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let mut s = wire::connect_trust(env2.proxy_addr()).await;
    send(
        &mut s,
        &[
            parse("", "ALTER TABLE t ADD COLUMN z int"),
            bind(""),
            describe(b'P', ""),
            execute(),
            sync(),
        ],
    )
    .await;
    let replies = read_until_ready(&mut s).await;
    let (seq, _) = tags(&replies);
    assert!(seq.ends_with("EZ"), "{seq}");
    let (code, message) = error_of(&replies);
    assert_eq!(code, "55P03");
    assert!(message.contains("2 attempt(s)"), "{message}");
    send(&mut s, &[sync()]).await;
    assert_eq!(tags(&read_until_ready(&mut s).await).0, "Z");

    // Given up on, a lone unit of a named statement leaves the client's unnamed statement (its
    // own queries and the error it raises are named units), and nothing of ddlgate's.
    let replies = unnamed_around(
        env2.proxy_addr(),
        &[unit_of("z", Some("ALTER TABLE t ADD COLUMN z int"))],
    )
    .await;
    assert_eq!(
        replies,
        [
            "1Z".to_owned(),
            // The Parse's and Bind's replies, then the error in place of the Execute's.
            "12E(55P03)Z".to_owned(),
            "2D[Some(\"1\")]CZ".to_owned(),
            // The client's own `z` only: its Parse succeeded before the Execute was given up on.
            "TD[Some(\"z\"), Some(\"\")]CZ".to_owned(),
        ],
        "the guard's error, then the unnamed statement still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_in_a_lone_unit_runs_as_steps_with_the_direct_statements_end_state() {
    let env = Env::start_with(fast_guard).await;
    let admin = env.direct_client("ddlgate_admin").await;
    let setup = "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent SELECT g FROM generate_series(1, 1000) g;
         CREATE TABLE child (id serial, pid int, email text);
         INSERT INTO child (pid, email) SELECT 1 + g % 1000, 'u' || g FROM generate_series(1, 300000) g;
         ALTER TABLE parent OWNER TO trust_user; ALTER TABLE child OWNER TO trust_user;
         GRANT ALL ON SEQUENCE child_id_seq TO trust_user;";
    admin
        .batch_execute("CREATE DATABASE orig")
        .await
        .expect("orig");
    let orig = connect(
        &env.direct_conn("ddlgate_admin")
            .replace("dbname=postgres", "dbname=orig"),
    )
    .await;
    orig.batch_execute(setup).await.expect("setup orig");
    admin.batch_execute(setup).await.expect("setup");
    let fk =
        "ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) REFERENCES parent (id)";
    orig.batch_execute(fk).await.expect("direct");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_client(
        env.direct_conn("trust_user"),
        "INSERT INTO child (pid, email) VALUES (1, 'w')",
        stop.clone(),
    );
    let mut s = wire::connect_trust(env.proxy_addr()).await;
    let started = Instant::now();
    send(
        &mut s,
        &[
            parse("fk", fk),
            bind("fk"),
            describe(b'S', "fk"),
            execute(),
            sync(),
        ],
    )
    .await;
    let replies = read_until_ready(&mut s).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let worst = writer.await.expect("writer");
    let (seq, notices) = tags(&replies);
    assert_eq!(seq, "12tnCZ", "{replies:?}");
    assert_eq!(command_tag(&replies), "ALTER TABLE");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("NOT VALID") && n.contains("VALIDATE")),
        "the steps are announced as for a simple Query: {notices:?}"
    );
    eprintln!(
        "FOREIGN KEY through a lone unit: steps ran {took:?}, the writer's longest wait {worst:?}"
    );
    assert!(
        worst < BOUND,
        "a writer waited {worst:?} while the steps ran for {took:?}"
    );
    // The same schema as the direct statement's, from the catalog (the writer's rows aside).
    assert_eq!(schema(&admin).await, schema(&orig).await);
    // The prepared statement exists as the server would have it: preparing the name again
    // fails at the Parse, and nothing after it runs.
    send(&mut s, &[parse("fk", fk), bind("fk"), execute(), sync()]).await;
    let replies = read_until_ready(&mut s).await;
    assert_eq!(tags(&replies).0, "EZ");
    assert_eq!(error_of(&replies).0, "42P05");

    // A statement prepared as written for its steps is known to be the server's only once its
    // Parse succeeded: when the name was taken, a Bind runs what the server holds.
    send(&mut s, &[parse("taken", "SELECT 1"), sync()]).await;
    assert_eq!(tags(&read_until_ready(&mut s).await).0, "1Z");
    send(
        &mut s,
        &[parse("taken", fk), describe(b'S', "taken"), sync()],
    )
    .await;
    let replies = read_until_ready(&mut s).await;
    assert_eq!(
        (tags(&replies).0, error_of(&replies).0),
        ("EZ".to_owned(), "42P05".to_owned())
    );
    send(&mut s, &[bind("taken"), execute(), sync()]).await;
    assert_eq!(
        tags(&read_until_ready(&mut s).await).0,
        "2DCZ",
        "SELECT 1 ran, not the steps"
    );

    // A failing step: its error arrives in place of the Execute's, the unit ends idle, and a
    // later Bind of the named statement runs the steps again (resuming the work).
    admin
        .batch_execute(
            "ALTER TABLE child DROP CONSTRAINT child_pid_fkey; INSERT INTO child (pid, email) VALUES (5000, 'orphan')",
        )
        .await
        .expect("orphan");
    send(&mut s, &[bind("fk"), describe(b'P', ""), execute(), sync()]).await;
    let replies = read_until_ready(&mut s).await;
    assert_eq!(tags(&replies).0, "2nEZ", "{replies:?}");
    let (code, message) = error_of(&replies);
    assert_eq!(code, "23503");
    assert!(message.contains("step 2 of 2"), "{message}");
    assert_eq!(replies.last().map(|(_, b)| b.clone()), Some(b"I".to_vec()));
    send(&mut s, &[sync()]).await;
    assert_eq!(
        tags(&read_until_ready(&mut s).await).0,
        "Z",
        "one ReadyForQuery per Sync"
    );
    admin
        .batch_execute("DELETE FROM child WHERE pid = 5000")
        .await
        .expect("fix");
    send(&mut s, &[bind("fk"), execute(), sync()]).await;
    let replies = read_until_ready(&mut s).await;
    assert_eq!(tags(&replies).0, "2CZ", "{replies:?}");
    assert_eq!(schema(&admin).await, schema(&orig).await);

    // A long validation (a CHECK calling a ~1 ms function per row): writes continue while it
    // runs, as for a simple Query.
    let slow = "CREATE FUNCTION slow(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE \
         AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN v; END $$;
         CREATE TABLE slowt (id int); INSERT INTO slowt SELECT generate_series(1, 2000);
         ALTER TABLE slowt OWNER TO trust_user;";
    admin.batch_execute(slow).await.expect("slow setup");
    orig.batch_execute(slow).await.expect("slow setup orig");
    let check = "ALTER TABLE slowt ADD CONSTRAINT slowt_id_check CHECK (slow(id) > 0)";
    orig.batch_execute(check).await.expect("direct check");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_client(
        env.direct_conn("trust_user"),
        "INSERT INTO slowt VALUES (1); DELETE FROM slowt WHERE ctid = (SELECT max(ctid) FROM slowt)",
        stop.clone(),
    );
    let started = Instant::now();
    send(&mut s, &[parse("", check), bind(""), execute(), sync()]).await;
    // Another session's lone unit on the same table waits its turn (one DDL per table), told
    // so, and runs once the steps are done.
    assert!(
        wait_active(
            &admin,
            "ALTER TABLE slowt VALIDATE%",
            1,
            Duration::from_secs(10)
        )
        .await,
        "the validation step runs"
    );
    let mut s2 = wire::connect_trust(env.proxy_addr()).await;
    let extra = "ALTER TABLE slowt ADD COLUMN extra int";
    send(&mut s2, &[parse("", extra), bind(""), execute(), sync()]).await;
    let replies = read_until_ready(&mut s).await;
    let took = started.elapsed();
    let second = read_until_ready(&mut s2).await;
    stop.store(true, Ordering::Relaxed);
    let worst = writer.await.expect("writer");
    assert_eq!(tags(&replies).0, "12CZ", "{replies:?}");
    let (seq, notices) = tags(&second);
    assert_eq!(seq, "12CZ", "{second:?}");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("waiting for another DDL statement on")),
        "{notices:?}"
    );
    orig.batch_execute(extra).await.expect("direct add column");
    eprintln!("CHECK through a lone unit: steps ran {took:?}, the writer's longest wait {worst:?}");
    assert!(
        took > Duration::from_secs(2),
        "the validation is long enough to catch a blocked writer: {took:?}"
    );
    assert!(
        worst < BOUND,
        "a writer waited {worst:?} while the steps ran for {took:?}"
    );
    assert_eq!(schema(&admin).await, schema(&orig).await);

    // tokio-postgres: prepared in a unit of its own, executed in the next: the steps run too.
    let p = env.proxy_client("trust_user").await;
    let n = p
        .execute(
            "ALTER TABLE child ADD CONSTRAINT child_id_key UNIQUE (id)",
            &[],
        )
        .await
        .expect("unique through steps");
    assert_eq!(n, 0);
    let row = admin
        .query_one(
            "SELECT c.contype::text, i.indisvalid FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid WHERE c.conname = 'child_id_key'",
            &[],
        )
        .await
        .expect("unique constraint");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("u".to_owned(), true)
    );

    // Inside a transaction block the steps cannot run: refused, as before.
    p.batch_execute("BEGIN").await.expect("begin");
    let err = p
        .execute(
            "ALTER TABLE child ADD CONSTRAINT child_id_check CHECK (id > 0)",
            &[],
        )
        .await
        .expect_err("refused in a transaction");
    assert_eq!(sqlstate(&err).as_deref(), Some("DG001"), "{err:?}");
    let hint = err
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_owned();
    assert!(
        hint.contains("Parse/Bind/Execute/Sync"),
        "the way out names the extended protocol too: {hint}"
    );
    p.batch_execute("ROLLBACK").await.expect("rollback");
}

/// The outcome of one exchange as a transcript: reply tags (notices left out), each error's
/// SQLSTATE and each row's values.
fn transcript(replies: &[(u8, Vec<u8>)]) -> String {
    let mut out = String::new();
    for (tag, body) in replies.iter().filter(|(t, _)| *t != b'N') {
        out.push(*tag as char);
        match tag {
            b'E' => out.push_str(&format!("({})", wire::error_fields(body).1)),
            b'D' => out.push_str(&format!("{:?}", data_row(body))),
            _ => {}
        }
    }
    out
}

/// A DataRow's values (text format).
fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([body[0], body[1]]);
    let mut at = 2;
    let mut values = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().expect("length"));
        at += 4;
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = len as usize;
        values.push(Some(
            String::from_utf8_lossy(&body[at..at + len]).into_owned(),
        ));
        at += len;
    }
    values
}

/// Runs the named statement `name` in the unnamed portal, alone in its unit (`{name}` is
/// prepared in the same unit when `sql` is given).
fn unit_of(name: &str, sql: Option<&str>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    if let Some(sql) = sql {
        frames.push(parse(name, sql));
    }
    frames.extend([bind(name), execute(), sync()]);
    frames
}

/// On a fresh raw connection to `addr`: the unnamed statement prepared as `SELECT 1` (Parse,
/// Sync), then `units` (each a unit of named statements, as drivers send DDL once prepared),
/// then a Bind of the unnamed statement: the transcript of every exchange, and the
/// connection's prepared statements and portals at the end.
async fn unnamed_around(addr: std::net::SocketAddr, units: &[Vec<Vec<u8>>]) -> Vec<String> {
    let mut s = wire::connect_trust(addr).await;
    let mut out = Vec::new();
    send(&mut s, &[parse("", "SELECT 1"), sync()]).await;
    out.push(transcript(&read_until_ready(&mut s).await));
    for unit in units {
        send(&mut s, unit).await;
        out.push(transcript(&read_until_ready(&mut s).await));
    }
    send(&mut s, &[bind(""), execute(), sync()]).await;
    out.push(transcript(&read_until_ready(&mut s).await));
    // Nothing of ddlgate's is left behind: the same statements and portals as on a direct
    // connection.
    s.write_all(&wire::query(
        "SELECT (SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_prepared_statements), \
                (SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_cursors)",
    ))
    .await
    .expect("write");
    out.push(transcript(&read_until_ready(&mut s).await));
    out
}

/// The units of [`unnamed_around`] for one run: `w` tells the runs' objects apart.
fn ddl_units(w: &str) -> Vec<Vec<Vec<u8>>> {
    vec![
        // Outside a transaction block: lone units, guarded (prelude, epilogue), rewritten
        // (CREATE INDEX → CONCURRENTLY), a recipe's steps (FOREIGN KEY → NOT VALID +
        // VALIDATE), and a DDL statement that fails.
        unit_of(
            &format!("ix_{w}"),
            Some(&format!("CREATE INDEX t_x_{w} ON t (x)")),
        ),
        unit_of(
            &format!("add_{w}"),
            Some(&format!("ALTER TABLE t ADD COLUMN c_{w} int")),
        ),
        unit_of(
            &format!("fk_{w}"),
            Some(&format!(
                "ALTER TABLE t ADD CONSTRAINT t_fk_{w} FOREIGN KEY (x) REFERENCES p (id)"
            )),
        ),
        unit_of(
            &format!("bad_{w}"),
            Some(&format!("ALTER TABLE t ADD COLUMN c_{w} int")),
        ),
        // The failing recipe: a step fails (a row without its parent), the error is the step's.
        unit_of(
            &format!("orphan_{w}"),
            Some(&format!(
                "ALTER TABLE o ADD CONSTRAINT o_fk_{w} FOREIGN KEY (x) REFERENCES p (id)"
            )),
        ),
        // Inside a transaction block: guarded units, and one that fails.
        unit_of(&format!("begin_{w}"), Some("BEGIN")),
        unit_of(
            &format!("tx_{w}"),
            Some(&format!("ALTER TABLE t ADD COLUMN d_{w} int")),
        ),
        unit_of(&format!("commit_{w}"), Some("COMMIT")),
        unit_of(&format!("begin_{w}"), None),
        unit_of(
            &format!("txbad_{w}"),
            Some(&format!("ALTER TABLE t ADD COLUMN d_{w} int")),
        ),
        unit_of(&format!("rollback_{w}"), Some("ROLLBACK")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddlgates_own_queries_leave_the_clients_unnamed_statement_as_a_server_does() {
    let env = Env::start_with(|c| {
        fast_guard(c);
        c.journal.enabled = true;
    })
    .await;
    let admin = env.table_t(100).await;
    admin
        .batch_execute(
            "CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT generate_series(1, 100);
             CREATE TABLE o (x int); INSERT INTO o VALUES (1), (5000);
             ALTER TABLE p OWNER TO trust_user; ALTER TABLE o OWNER TO trust_user;",
        )
        .await
        .expect("setup");
    let runs = |env: &Env| {
        env.proxy
            .shared()
            .metrics
            .value("ddlgate_guard_runs_total", &[])
    };
    let before = runs(&env);
    let direct = unnamed_around(direct_addr(&env), &ddl_units("direct")).await;
    let proxied = unnamed_around(env.proxy_addr(), &ddl_units("proxied")).await;
    let last = direct.len() - 2;
    assert_eq!(
        direct[last], "2D[Some(\"1\")]CZ",
        "the unnamed statement runs on a direct connection"
    );
    for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
        assert_eq!(
            p.replace("proxied", "*"),
            d.replace("direct", "*"),
            "exchange {i}: through ddlgate as directly ({proxied:?})"
        );
    }
    assert_eq!(proxied.len(), direct.len());
    // ddlgate did run its own queries there: the guard ran, the journal was written.
    assert!(runs(&env) > before, "the guard ran");
    let journaled: i64 = admin
        .query_one(
            "SELECT count(*) FROM ddlgate.journal WHERE statement LIKE '%proxied%'",
            &[],
        )
        .await
        .expect("journal")
        .get(0);
    assert!(journaled >= 3, "the journal was written: {journaled}");
    // The same schema of `t` as the direct statements': the runs differ only by their names.
    // (On `o` the failed recipe's first step, the NOT VALID constraint, stays, as documented.)
    let schema = schema(&admin).await;
    let names = |w: &str| -> Vec<String> {
        schema
            .iter()
            .filter(|l| l.starts_with("t ") && l.contains(w))
            .map(|l| l.replace(w, "*"))
            .collect()
    };
    assert_eq!(names("proxied"), names("direct"));
}

/// The lone units given up on in
/// [`a_lone_unit_given_up_on_gets_the_replies_a_server_sends_before_its_error`], on `t`, as
/// pgJDBC, `PQexecParams` and a driver binding a statement prepared earlier (`S_1`, prepared
/// by [`open_with_s1`]) send them; `w` tells the runs' columns apart.
fn given_up_units(w: &str) -> Vec<Vec<Vec<u8>>> {
    let ddl = |c: &str| format!("ALTER TABLE t ADD COLUMN {c}_{w} int");
    vec![
        vec![parse("", &ddl("a")), bind(""), execute(), sync()],
        vec![
            parse("", &ddl("b")),
            bind(""),
            describe(b'P', ""),
            execute(),
            sync(),
        ],
        vec![
            parse("S_2", &ddl("c")),
            bind("S_2"),
            describe(b'S', "S_2"),
            execute(),
            sync(),
        ],
        vec![bind("S_1"), execute(), sync()],
        vec![bind("S_1"), describe(b'P', ""), execute(), sync()],
        vec![bind("S_1"), describe(b'S', "S_1"), execute(), sync()],
    ]
}

/// A fresh raw connection to `addr` with `lock_timeout` set to `lock_timeout` (the direct
/// connection's stand-in for the guard) and `S_1` prepared (`ALTER TABLE t ADD COLUMN …_{w}`).
async fn open_with_s1(addr: std::net::SocketAddr, lock_timeout: &str, w: &str) -> TcpStream {
    let mut s = wire::connect_trust(addr).await;
    s.write_all(&wire::query(&format!(
        "SET lock_timeout = '{lock_timeout}'"
    )))
    .await
    .expect("write");
    assert_eq!(tags(&read_until_ready(&mut s).await).0, "CZ");
    send(
        &mut s,
        &[
            parse("S_1", &format!("ALTER TABLE t ADD COLUMN s1_{w} int")),
            sync(),
        ],
    )
    .await;
    assert_eq!(tags(&read_until_ready(&mut s).await).0, "1Z");
    s
}

/// Each of `units` on `s`, each followed by a `SELECT 1` (the session goes on), and at the end
/// the connection's prepared statements: the transcript of each exchange.
async fn transcripts(s: &mut TcpStream, units: &[Vec<Vec<u8>>]) -> Vec<String> {
    let mut out = Vec::new();
    for unit in units {
        send(s, unit).await;
        out.push(transcript(&read_until_ready(s).await));
        s.write_all(&wire::query("SELECT 1")).await.expect("write");
        out.push(transcript(&read_until_ready(s).await));
    }
    s.write_all(&wire::query(
        "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_prepared_statements",
    ))
    .await
    .expect("write");
    out.push(transcript(&read_until_ready(s).await));
    out
}

/// The guard of the given-up tests: two attempts, and 300 ms in the queue for a table's DDL
/// turn.
fn giving_up_guard(c: &mut Config) {
    fast_guard(c);
    c.guard.max_attempts = 2;
    c.guard.queue_timeout_ms = Duration::from_millis(300);
}

/// Another session's DDL on `t` through ddlgate, in an open transaction: it holds the table's
/// DDL turn, and the table's ACCESS EXCLUSIVE lock, until it rolls back.
async fn hold_ddl_turn(env: &Env) -> tokio_postgres::Client {
    let holder = env.proxy_client("trust_user").await;
    holder
        .batch_execute("BEGIN; ALTER TABLE t ADD COLUMN held int")
        .await
        .expect("holder");
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_unit_given_up_on_gets_the_replies_a_server_sends_before_its_error() {
    let env = Env::start_with(giving_up_guard).await;
    let _admin = env.table_t(10).await;
    let direct = direct_addr(&env);
    let metric = |name: &str| env.proxy.shared().metrics.value(name, &[]);

    // The guard's budget spent behind a reader's lock: the direct session fails the same
    // units with its own lock_timeout.
    let blocker = env.direct_client("ddlgate_admin").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("blocker");
    let exhausted = metric("ddlgate_lock_budget_exhausted_total");
    let want = transcripts(
        &mut open_with_s1(direct, "100ms", "direct").await,
        &given_up_units("direct"),
    )
    .await;
    let mut s = open_with_s1(env.proxy_addr(), "0", "proxied").await;
    let t = Instant::now();
    let got = transcripts(&mut s, &given_up_units("proxied")).await;
    eprintln!("six lone units given up on by the guard: {:?}", t.elapsed());
    let select_1 = "TD[Some(\"1\")]CZ";
    assert_eq!(
        want,
        [
            "12E(55P03)Z",
            select_1,
            "12nE(55P03)Z",
            select_1,
            "12tnE(55P03)Z",
            select_1,
            "2E(55P03)Z",
            select_1,
            "2nE(55P03)Z",
            select_1,
            "2tnE(55P03)Z",
            select_1,
            "TD[Some(\"S_1,S_2\")]CZ",
        ],
        "what a server sends"
    );
    assert_eq!(got, want, "through ddlgate as directly");
    assert!(
        metric("ddlgate_lock_budget_exhausted_total") >= exhausted + 6.0,
        "the guard gave up on every unit"
    );
    blocker.batch_execute("COMMIT").await.expect("commit");

    // Given up on in the queue for the table's DDL turn (another session's DDL holds it in an
    // open transaction, and the table's lock with it): the direct session meets that lock.
    let mut d = open_with_s1(direct, "100ms", "direct2").await;
    let mut s = open_with_s1(env.proxy_addr(), "0", "proxied2").await;
    let holder = hold_ddl_turn(&env).await;
    let queued = metric("ddlgate_ddl_queue_timeouts_total");
    let want = transcripts(&mut d, &given_up_units("direct2")).await;
    let got = transcripts(&mut s, &given_up_units("proxied2")).await;
    assert_eq!(got, want, "through ddlgate as directly");
    assert!(
        metric("ddlgate_ddl_queue_timeouts_total") >= queued + 6.0,
        "the queue timed out on every unit"
    );
    holder.batch_execute("ROLLBACK").await.expect("rollback");
}

fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// A write of raw frames, and what is read after it: up to the ReadyForQuery, or up to the
/// ErrorResponse (a client that sent Flush and waits for its answer before the Sync).
type Exchange = (Vec<Vec<u8>>, u8);

/// Units that are not lone units (`relay/lone.rs`), each of one DDL on `t`: `w` tells the
/// runs' columns apart. Each is a list of exchanges; `in_block` runs it inside `BEGIN` …
/// `ROLLBACK`, where no unit is a lone unit.
fn non_lone_units(w: &str, in_block: bool) -> Vec<Vec<Exchange>> {
    let ddl = |c: &str| format!("ALTER TABLE t ADD COLUMN {c}_{w} int");
    let z = b'Z';
    // A name of its own in each run: the direct session keeps what it prepares.
    let (name, two) = if in_block {
        ("S_4", "S_6")
    } else {
        ("S_3", "S_5")
    };
    let mut units = vec![
        // Prepared in a unit of its own (tokio-postgres, pgJDBC's named statements), then
        // executed in the next.
        vec![
            (vec![parse(name, &ddl("p")), sync()], z),
            (vec![bind(name), execute(), sync()], z),
        ],
        // Parse, Bind, Execute, Flush: the client waits for the answer before its Sync.
        vec![
            (
                vec![parse("", &ddl("f")), bind(""), execute(), flush()],
                b'E',
            ),
            (vec![sync()], z),
        ],
        // Two statements in one unit (a pipeline): the DDL (a named statement), then
        // `SELECT 1`.
        vec![(
            vec![
                parse(two, &ddl("two")),
                bind(two),
                execute(),
                parse("", "SELECT 1"),
                bind(""),
                execute(),
                sync(),
            ],
            z,
        )],
        // A Bind of `S_1`, prepared earlier: a lone unit outside a block, not inside one.
        vec![(vec![bind("S_1"), execute(), sync()], z)],
    ];
    if in_block {
        for unit in &mut units {
            unit.insert(0, (vec![wire::query("BEGIN")], z));
            unit.push((vec![wire::query("ROLLBACK")], z));
        }
    }
    units
}

/// A reply sequence as a transcript ([`transcript`]) with each ReadyForQuery's transaction
/// status: `Z(I)`, `Z(T)`, `Z(E)`.
fn transcript_with_status(replies: &[(u8, Vec<u8>)]) -> String {
    let mut out = String::new();
    for (tag, body) in replies.iter().filter(|(t, _)| *t != b'N') {
        out.push_str(&transcript(&[(*tag, body.clone())]));
        if *tag == b'Z' {
            out.push_str(&format!("({})", body[0] as char));
        }
    }
    out
}

/// The value of field `key` (e.g. `H`, the hint) of an ErrorResponse body.
fn error_field(body: &[u8], key: u8) -> String {
    body.split(|b| *b == 0)
        .find_map(|f| f.split_first().filter(|(k, _)| **k == key))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Reads messages up to (and with) the first of tag `until`, the ErrorResponses' bodies aside.
async fn read_until(s: &mut TcpStream, until: u8, errors: &mut Vec<Vec<u8>>) -> String {
    let mut replies = Vec::new();
    while let Some((tag, body)) = wire::read_message(s).await {
        if tag == b'E' {
            errors.push(body.clone());
        }
        replies.push((tag, body));
        if tag == until {
            break;
        }
    }
    transcript_with_status(&replies)
}

/// Each unit's exchanges on `s`, each unit followed by a `SELECT 1` (the session goes on and
/// is in step: its reply is the next one read); at the end the connection's prepared
/// statements and open portals. The transcripts, and every ErrorResponse's body.
async fn exchanges(s: &mut TcpStream, units: &[Vec<Exchange>]) -> (Vec<Vec<String>>, Vec<Vec<u8>>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for unit in units {
        let mut got = Vec::new();
        for (frames, until) in unit {
            send(s, frames).await;
            got.push(read_until(s, *until, &mut errors).await);
        }
        s.write_all(&wire::query("SELECT 1")).await.expect("write");
        got.push(read_until(s, b'Z', &mut errors).await);
        out.push(got);
    }
    s.write_all(&wire::query(
        "SELECT (SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_prepared_statements), \
                (SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_cursors)",
    ))
    .await
    .expect("write");
    out.push(vec![read_until(s, b'Z', &mut errors).await]);
    (out, errors)
}

/// The transaction status of each ReadyForQuery in `transcript`, in order.
fn statuses(transcript: &str) -> Vec<char> {
    transcript
        .match_indices("Z(")
        .filter_map(|(i, _)| transcript[i + 2..].chars().next())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_lone_unit_given_up_on_in_the_ddl_turn_queue_gets_one_ready_for_query_per_sync() {
    let env = Env::start_with(giving_up_guard).await;
    let _admin = env.table_t(10).await;
    let direct = direct_addr(&env);
    let metric = |name: &str| env.proxy.shared().metrics.value(name, &[]);
    let mut d = open_with_s1(direct, "100ms", "direct").await;
    let mut s = open_with_s1(env.proxy_addr(), "0", "proxied").await;
    let holder = hold_ddl_turn(&env).await;
    let queued = metric("ddlgate_ddl_queue_timeouts_total");

    for in_block in [false, true] {
        let (want, _) = exchanges(&mut d, &non_lone_units("direct", in_block)).await;
        let t = Instant::now();
        let (got, errors) = exchanges(&mut s, &non_lone_units("proxied", in_block)).await;
        eprintln!(
            "four units given up on in the queue (in a block: {in_block}): {:?}",
            t.elapsed()
        );
        eprintln!("directly:       {want:?}\nthrough ddlgate: {got:?}");
        let select_1 = "TD[Some(\"1\")]CZ(I)";
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(g.len(), w.len(), "unit {i}: as many exchanges: {got:?}");
            for (k, (w, g)) in w.iter().zip(g).enumerate() {
                // One ReadyForQuery per Sync (and per Query), read where the server's is.
                assert_eq!(
                    g.matches('Z').count(),
                    w.matches('Z').count(),
                    "unit {i}, exchange {k}: one ReadyForQuery per Sync: {got:?}"
                );
                // Where the server fails the unit too, the transaction is left as it leaves it.
                if w.contains("E(") && g.contains("E(") {
                    assert_eq!(statuses(g), statuses(w), "unit {i}, exchange {k}: {got:?}");
                }
            }
        }
        assert_eq!(got.len(), want.len());
        // A unit that begins as a lone unit does (`[Parse] Bind Execute`) gets the server's
        // replies exactly: its Parse and Bind answered, the error in place of its Execute's.
        // A Parse in a unit of its own is answered with the error ddlgate decided there (the
        // server would prepare it): its later Bind meets a statement that does not exist
        // inside a transaction block, and the guard again outside one.
        let last = got.len() - 1;
        assert_eq!(got[1..last], want[1..last], "the server's replies");
        if !in_block {
            assert_eq!(got[0][1..], want[0][1..], "the later Bind's replies");
        }
        let units = &got[..got.len() - 1];
        for (i, unit) in units.iter().enumerate() {
            assert!(
                unit.iter().any(|e| e.contains("E(55P03)")),
                "unit {i} gets the 55P03: {got:?}"
            );
            assert_eq!(
                unit.last().map(String::as_str),
                Some(select_1),
                "unit {i}: {got:?}"
            );
        }
        // The client's statements as on the server, but for the one whose Parse got the
        // error (as after a failed Parse); nothing of ddlgate's, no portal open.
        let prepared = if in_block { "S_1,S_5,S_6" } else { "S_1,S_5" };
        assert_eq!(
            got.last().map(|e| e[0].as_str()),
            Some(format!("TD[Some(\"{prepared}\"), Some(\"\")]CZ(I)").as_str()),
        );
        let e = errors
            .iter()
            .find(|e| wire::error_fields(e).1 == "55P03")
            .expect("a 55P03");
        assert!(
            wire::error_fields(e).2.contains("guard.queue_timeout_ms"),
            "the message says why: {:?}",
            wire::error_fields(e)
        );
        assert!(!error_field(e, b'H').is_empty(), "a hint");
    }
    assert!(
        metric("ddlgate_ddl_queue_timeouts_total") >= queued + 9.0,
        "the queue timed out on every unit"
    );

    // What follows the error up to the Sync is dropped as it arrives: a Bind of 4 MiB, sent in
    // two writes, then the Sync.
    let given_up = [
        parse("", "ALTER TABLE t ADD COLUMN big int"),
        bind(""),
        execute(),
        flush(),
    ];
    send(&mut s, &given_up).await;
    let mut errors = Vec::new();
    assert_eq!(read_until(&mut s, b'E', &mut errors).await, "12E(55P03)");
    let value = vec![b'x'; 4 << 20];
    let mut body = vec![0, 0, 0, 0, 0, 1];
    body.extend_from_slice(&(value.len() as i32).to_be_bytes());
    body.extend_from_slice(&value);
    body.extend_from_slice(&[0, 0]);
    let big = message(b'B', &body);
    let (head, tail) = big.split_at(big.len() / 2);
    s.write_all(head).await.expect("write");
    s.write_all(tail).await.expect("write");
    send(&mut s, &[execute(), sync()]).await;
    assert_eq!(read_until(&mut s, b'Z', &mut errors).await, "Z(I)");
    s.write_all(&wire::query("SELECT 1")).await.expect("write");
    assert_eq!(
        read_until(&mut s, b'Z', &mut errors).await,
        "TD[Some(\"1\")]CZ(I)"
    );
    // A Terminate while the rest of the unit is skipped ends the session in order.
    send(&mut s, &given_up).await;
    assert_eq!(read_until(&mut s, b'E', &mut errors).await, "12E(55P03)");
    send(&mut s, &[message(b'X', &[])]).await;
    let mut rest = [0u8; 64];
    let eof = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest)).await;
    assert!(
        matches!(eof, Ok(Ok(0))),
        "the session ends (EOF, nothing more said): {eof:?}"
    );
    // A Sync declaring a body of 64 MiB while the unit is skipped: malformed, so the session
    // ends with a protocol error at once instead of ddlgate waiting to hold it whole.
    let mut s = wire::connect_trust(env.proxy_addr()).await;
    send(&mut s, &given_up).await;
    assert_eq!(read_until(&mut s, b'E', &mut errors).await, "12E(55P03)");
    s.write_all(&[b'S', 4, 0, 0, 4]).await.expect("write");
    let fatal = tokio::time::timeout(Duration::from_secs(5), wire::read_message(&mut s))
        .await
        .expect("answered at once");
    let (tag, body) = fatal.expect("an ErrorResponse");
    assert_eq!(tag, b'E');
    let (severity, code, _) = wire::error_fields(&body);
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "08P01"));
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    still_serves(&env).await;
}

/// The test cluster itself, for the same exchanges without ddlgate.
fn direct_addr(env: &Env) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], env.pg.port()))
}
