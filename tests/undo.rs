//! Reversibility end to end (issue 16): DDL run through ddlgate is recorded with its inverse in
//! the undo journal (and the audit log), and `ddlgate undo` — the real binary, connected through
//! the proxy — applies it: `pg_dump --schema-only` after the undo equals the dump before the
//! statement, for every supported statement; a dry run changes nothing; irreversible and
//! changed-since entries are refused with their reason; a dropped index comes back built
//! CONCURRENTLY while writers keep writing; journal rows commit and roll back with the client's
//! transaction; a journal that cannot be written falls back to the audit log without failing
//! the client; with the journal off, the inverse is in the audit log only.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Env, pg};
use ddlgate::config::Config;
use ddlgate::rules::Action;

fn journal_config(c: &mut Config) {
    c.journal.enabled = true;
    // Renames are blocked by default; the undo of a rename is a rename, and goes through the
    // same rules.
    c.policy
        .rules
        .insert("renaming-column".to_owned(), Action::Allow);
    c.policy
        .rules
        .insert("renaming-table".to_owned(), Action::Allow);
}

fn proxy_url(env: &Env) -> String {
    format!(
        "postgres://trust_user@127.0.0.1:{}/postgres",
        env.proxy_addr().port()
    )
}

async fn undo(env: &Env, args: &[&str]) -> Output {
    let mut argv = vec!["undo".to_owned(), "--database".to_owned(), proxy_url(env)];
    argv.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddlgate"));
        cmd.args(&argv).env_remove("DDLGATE_CONFIG");
        pg::run(&mut cmd, None, Duration::from_secs(60)).expect("run ddlgate undo")
    })
    .await
    .expect("undo thread")
}

fn text(o: &Output) -> String {
    pg::output_text(o)
}

/// The schema as `pg_dump --schema-only` prints it, ddlgate's own schema left out.
async fn dump(env: &Env) -> String {
    common::schema::schema_only_dump(env.pg.port(), "postgres", &["--exclude-schema", "ddlgate"])
        .await
}

/// `t (id serial PRIMARY KEY, x int, d int DEFAULT 5, nn int NOT NULL DEFAULT 0)` with rows, a parent `p` every `x`
/// references, an index and a CHECK constraint to drop.
async fn schema(env: &Env) -> tokio_postgres::Client {
    let admin = env.direct_client("ddlgate_admin").await;
    admin
        .batch_execute(
            "CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT g FROM generate_series(1, 2000) g;
             CREATE TABLE t (id serial PRIMARY KEY, x int, d int DEFAULT 5, nn int NOT NULL DEFAULT 0, CONSTRAINT c_pos CHECK (x > 0));
             INSERT INTO t (x) SELECT g FROM generate_series(1, 2000) g;
             CREATE INDEX t_x_ix ON t (x);
             CREATE VIEW tv WITH (security_barrier = true) AS SELECT id, x FROM t WHERE x > 1;
             CREATE FUNCTION tf(n int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN n + 1; END $$;
             ALTER VIEW tv OWNER TO trust_user; ALTER FUNCTION tf(int) OWNER TO trust_user;
             ALTER TABLE t OWNER TO trust_user; ALTER TABLE p OWNER TO trust_user;
             GRANT ALL ON SEQUENCE t_id_seq TO trust_user;",
        )
        .await
        .expect("setup");
    admin
}

async fn journal_rows(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM ddlgate.journal WHERE application_name <> 'ddlgate undo'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_the_schema_dump_for_every_supported_statement() {
    let env = Env::start_with(journal_config).await;
    let _admin = schema(&env).await;
    let client = env.proxy_client("trust_user").await;
    let statements = [
        // Rewritten to CONCURRENTLY by ddlgate; undone by DROP INDEX CONCURRENTLY.
        "CREATE INDEX ix_a ON t (x)",
        "CREATE INDEX CONCURRENTLY ix_b ON t (d)",
        "ALTER TABLE t ADD COLUMN y int",
        "ALTER TABLE t ADD COLUMN y2 text DEFAULT 'a', ADD COLUMN y3 int",
        // Run as NOT VALID + VALIDATE steps; undone by DROP CONSTRAINT.
        "ALTER TABLE t ADD CONSTRAINT t_x_small CHECK (x < 100000)",
        "ALTER TABLE t ADD CONSTRAINT t_p_fk FOREIGN KEY (x) REFERENCES p (id)",
        // Unnamed: the server names them; ddlgate reads the names by OID right after the
        // statement ran (never predicting PostgreSQL's naming), and the undo drops those.
        "CREATE INDEX ON t (x, d)",
        // The foreign key runs as NOT VALID + VALIDATE steps, the UNIQUE through a concurrent
        // index the constraint then takes over (dropping the constraint drops it).
        "ALTER TABLE t ADD FOREIGN KEY (x) REFERENCES p (id)",
        "ALTER TABLE t ADD UNIQUE (id, x)",
        "ALTER TABLE t ADD CHECK (x < 100000)",
        // Run as the NOT NULL recipe; undone by DROP NOT NULL.
        "ALTER TABLE t ALTER COLUMN x SET NOT NULL",
        "ALTER TABLE t ALTER COLUMN d SET DEFAULT 7",
        "ALTER TABLE t ALTER COLUMN d DROP DEFAULT",
        "ALTER TABLE t ADD COLUMN z int, ALTER COLUMN d SET DEFAULT 9",
        // Undone by SET NOT NULL, which ddlgate runs as its recipe.
        "ALTER TABLE t ALTER COLUMN nn DROP NOT NULL",
        "ALTER TABLE t RENAME COLUMN d TO d2",
        "ALTER TABLE t RENAME TO t_renamed",
        // Rewritten to DROP INDEX CONCURRENTLY; undone by the saved definition, CONCURRENTLY.
        "DROP INDEX t_x_ix",
        // Undone by re-adding it NOT VALID, then VALIDATE.
        "ALTER TABLE t DROP CONSTRAINT c_pos",
        "CREATE TABLE n (id bigint PRIMARY KEY, v text)",
        "CREATE VIEW v_new AS SELECT id, x FROM t WHERE x > 10",
        "CREATE OR REPLACE VIEW tv AS SELECT id, x, d FROM t WHERE x > 2",
        // Undone by its saved definition and options.
        "DROP VIEW tv",
        "CREATE FUNCTION f_new(a int, b text DEFAULT 'x') RETURNS int LANGUAGE sql AS 'SELECT a'",
        "DROP FUNCTION tf(int)",
        "ALTER INDEX t_x_ix RENAME TO t_x_ix2",
        "ALTER TABLE t RENAME CONSTRAINT c_pos TO c_pos2",
    ];
    for sql in statements {
        let before = dump(&env).await;
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_ne!(dump(&env).await, before, "{sql} changed nothing");
        let out = undo(&env, &[]).await;
        assert!(out.status.success(), "undo of {sql}: {}", text(&out));
        assert!(text(&out).contains("undone"), "{}", text(&out));
        let after = dump(&env).await;
        assert!(
            after == before,
            "undo of {sql} left a different schema:\n--- before\n{before}\n--- after\n{after}\n--- undo\n{}",
            text(&out)
        );
    }
    // Newest first, several at once.
    let before = dump(&env).await;
    client
        .batch_execute(
            "ALTER TABLE t ADD COLUMN m1 int; ALTER TABLE t ADD CONSTRAINT m1_pos CHECK (m1 > 0) NOT VALID",
        )
        .await
        .expect("two statements");
    client
        .simple_query("ALTER TABLE t ALTER COLUMN m1 SET DEFAULT 1")
        .await
        .expect("third");
    let out = undo(&env, &["--last", "3"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dump(&env).await, before, "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_refuses_what_it_must_and_rebuilds_an_index_without_blocking_writes() {
    let env = Env::start_with(journal_config).await;
    let admin = schema(&env).await;
    let client = env.proxy_client("trust_user").await;

    // A dry run prints the inverse and changes nothing.
    client
        .simple_query("ALTER TABLE t ADD COLUMN y int")
        .await
        .expect("add column");
    let before = dump(&env).await;
    let out = undo(&env, &["--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"would run: ALTER TABLE "public"."t" DROP COLUMN "y""#),
        "{}",
        text(&out)
    );
    assert_eq!(dump(&env).await, before);
    let pending: i64 = admin
        .query_one(
            "SELECT count(*) FROM ddlgate.journal WHERE undone_at IS NULL",
            &[],
        )
        .await
        .expect("journal")
        .get(0);
    assert_eq!(pending, 1);

    // Changed since: a column added behind ddlgate's back.
    admin
        .batch_execute("ALTER TABLE t ADD COLUMN behind int")
        .await
        .expect("direct change");
    let out = undo(&env, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("has changed since"), "{}", text(&out));
    admin
        .batch_execute("ALTER TABLE t DROP COLUMN behind")
        .await
        .expect("direct change undone");
    let out = undo(&env, &[]).await;
    assert!(out.status.success(), "{}", text(&out));

    // Irreversible: refused with the reason, and nothing runs.
    client
        .simple_query("ALTER TABLE t DROP COLUMN d")
        .await
        .expect("drop column");
    let before = dump(&env).await;
    let out = undo(&env, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("irreversible: DROP COLUMN d destroyed the column's data"),
        "{}",
        text(&out)
    );
    assert_eq!(dump(&env).await, before);

    // A dropped index comes back CONCURRENTLY: while an open transaction has written to the
    // table (the build waits for it), other writers are not blocked behind the undo.
    client
        .simple_query("DROP INDEX t_x_ix")
        .await
        .expect("drop index");
    let holder = env.direct_client("trust_user").await;
    holder
        .batch_execute("BEGIN; INSERT INTO t (x) VALUES (1)")
        .await
        .expect("holder");
    let id: i64 = admin
        .query_one(
            "SELECT max(id) FROM ddlgate.journal WHERE statement LIKE 'DROP INDEX%'",
            &[],
        )
        .await
        .expect("entry")
        .get(0);
    let env_ref = &env;
    let id = id.to_string();
    let argv = ["--id", id.as_str()];
    let undoing = undo(env_ref, &argv);
    let writer = async {
        // The build is waiting for the holder's transaction.
        assert!(
            common::eventually(Duration::from_secs(20), || async {
                admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0) == 1)
                    .unwrap_or(false)
            })
            .await,
            "the rebuild waits for the open transaction"
        );
        let w = env_ref.direct_client("trust_user").await;
        let started = std::time::Instant::now();
        for i in 0..20 {
            tokio::time::timeout(
                Duration::from_secs(5),
                w.execute("INSERT INTO t (x) VALUES ($1)", &[&(i + 1)]),
            )
            .await
            .expect("a writer is never blocked by the rebuild")
            .expect("insert");
        }
        let took = started.elapsed();
        holder.batch_execute("COMMIT").await.expect("commit");
        took
    };
    let (out, took) = tokio::join!(undoing, writer);
    assert!(out.status.success(), "{}", text(&out));
    assert!(took < Duration::from_secs(5), "writes took {took:?}");
    let valid: bool = admin
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_x_ix'::regclass",
            &[],
        )
        .await
        .expect("index is back")
        .get(0);
    assert!(valid);

    // A tampered entry (inverse SQL ddlgate did not write) is refused; so is a journal owned by
    // another role than the one connected.
    admin
        .batch_execute(
            "INSERT INTO ddlgate.journal (username, application_name, client_addr, statement, ran, inverse) \
             VALUES ('x', 'x', 'x', 'ALTER TABLE t ADD COLUMN q int', 'x', ARRAY['SELECT pg_sleep(0)'])",
        )
        .await
        .expect("tamper");
    let out = undo(&env, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not one DDL statement"),
        "{}",
        text(&out)
    );
    admin
        .batch_execute("ALTER TABLE ddlgate.journal OWNER TO ddlgate_admin")
        .await
        .expect("owner");
    let out = undo(&env, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is owned by ddlgate_admin"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_follows_the_transaction_and_falls_back_to_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.jsonl");
    let audit_path = audit.to_string_lossy().into_owned();
    let env = Env::start_with(|c| {
        journal_config(c);
        c.audit.enabled = true;
        c.audit.path = audit_path.clone();
    })
    .await;
    let admin = schema(&env).await;
    let client = env.proxy_client("trust_user").await;

    // Committed with the client's transaction, rolled back with it.
    client
        .batch_execute("BEGIN; ALTER TABLE t ADD COLUMN a1 int; COMMIT")
        .await
        .expect("committed");
    assert_eq!(journal_rows(&admin).await, 1);
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("ALTER TABLE t ADD COLUMN a2 int")
        .await
        .expect("in transaction");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(journal_rows(&admin).await, 1);
    // Rolled back within the same Query: not journaled either.
    client
        .batch_execute("BEGIN; ALTER TABLE t ADD COLUMN a3 int; ROLLBACK")
        .await
        .expect("one Query");
    assert_eq!(journal_rows(&admin).await, 1);
    // The session is in a sane state afterwards (transaction status as the server's).
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(one, 1);

    // A lone extended-protocol unit (tokio-postgres's query_typed: Parse/Bind/Describe/
    // Execute/Sync in one go, as libpq's PQexecParams) is journaled like a simple Query, even
    // when the guard has nothing to do for it.
    client
        .query_typed("CREATE TABLE e1 (id int)", &[])
        .await
        .expect("lone unit");
    assert_eq!(journal_rows(&admin).await, 2);
    let out = undo(&env, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"DROP TABLE "public"."e1""#),
        "{}",
        text(&out)
    );

    // psql's `-1 -f` (one transaction around the file) is journaled the same way.
    let out = env
        .psql(
            env.proxy_addr().port(),
            "trust_user",
            &["-v", "ON_ERROR_STOP=1", "-1", "-f", "-"],
            Some(
                b"ALTER TABLE t ADD COLUMN p1 int;\nALTER TABLE t ALTER COLUMN p1 SET DEFAULT 3;\n"
                    .to_vec(),
            ),
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(journal_rows(&admin).await, 4);
    let out = undo(&env, &["--last", "2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let gone: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'p1' AND NOT attisdropped",
            &[],
        )
        .await
        .expect("column")
        .get(0);
    assert_eq!(gone, 0);

    // The audit log has the inverse (and the irreversible reason) too.
    client.simple_query("TRUNCATE t").await.expect("truncate");
    assert_eq!(journal_rows(&admin).await, 5);
    let has = |needle: &'static str| {
        let audit = audit.clone();
        async move {
            std::fs::read_to_string(&audit)
                .unwrap_or_default()
                .contains(needle)
        }
    };
    assert!(
        common::eventually(Duration::from_secs(5), || has(
            r#""inverse":["ALTER TABLE \"public\".\"t\" DROP COLUMN \"a1\""]"#
        ))
        .await,
        "{}",
        std::fs::read_to_string(&audit).unwrap_or_default()
    );
    assert!(
        common::eventually(Duration::from_secs(5), || has(
            r#""irreversible":"TRUNCATE destroyed the table's rows""#
        ))
        .await
    );

    // A journal that cannot be written (a schema the client may not use): the statement and
    // its transaction succeed all the same, the entry is in the audit log only, and counted.
    admin
        .batch_execute("CREATE SCHEMA locked")
        .await
        .expect("schema");
    let locked = common::start_proxy(env.pg.port(), |c| {
        journal_config(c);
        c.journal.schema = "locked".to_owned();
    })
    .await;
    let c2 = common::connect(&common::conn_str(locked.local_addr().port(), "trust_user")).await;
    c2.batch_execute("BEGIN; ALTER TABLE t ADD COLUMN b1 int")
        .await
        .expect("the statement succeeds although the journal fails");
    c2.batch_execute("ALTER TABLE t ADD COLUMN b2 int; COMMIT")
        .await
        .expect("the transaction is not aborted");
    let cols: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname IN ('b1', 'b2')",
            &[],
        )
        .await
        .expect("columns")
        .get(0);
    assert_eq!(cols, 2);
    let metrics = locked.shared().metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ddlgate_journal_records_total{outcome=\"failed\"} 2")),
        "{metrics}"
    );

    // Journal off: nothing is written into the database.
    let off = common::start_proxy(env.pg.port(), |_| {}).await;
    let c3 = common::connect(&common::conn_str(off.local_addr().port(), "trust_user")).await;
    c3.simple_query("ALTER TABLE t ADD COLUMN c1 int")
        .await
        .expect("add");
    assert_eq!(journal_rows(&admin).await, 5);

    // Unnamed index and constraint inside a client transaction: their names are read on the
    // client's connection before COMMIT, journaled with the transaction, and undone.
    let before = dump(&env).await;
    client
        .batch_execute(
            "BEGIN; CREATE INDEX ON t (nn); ALTER TABLE t ADD CHECK (nn >= 0) NOT VALID, ADD FOREIGN KEY (x) REFERENCES p (id) NOT VALID; COMMIT",
        )
        .await
        .expect("unnamed in a transaction");
    assert_eq!(journal_rows(&admin).await, 7);
    assert!(
        common::eventually(Duration::from_secs(5), || has(
            r#""inverse":["DROP INDEX CONCURRENTLY \"public\".\"t_nn_idx\""]"#
        ))
        .await,
        "{}",
        std::fs::read_to_string(&audit).unwrap_or_default()
    );
    let out = undo(&env, &["--last", "2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dump(&env).await, before, "{}", text(&out));

    // Journal off, audit log on: a statement the DDL lane runs (the index rewritten to
    // CONCURRENTLY) still has the server's name read, into the audit log.
    let audit_off = dir.path().join("audit-off.jsonl");
    let audit_off_path = audit_off.to_string_lossy().into_owned();
    let off_audit = common::start_proxy(env.pg.port(), |c| {
        c.audit.enabled = true;
        c.audit.path = audit_off_path.clone();
    })
    .await;
    let c4 = common::connect(&common::conn_str(
        off_audit.local_addr().port(),
        "trust_user",
    ))
    .await;
    c4.simple_query("CREATE INDEX ON t (d)")
        .await
        .expect("index");
    let read = || {
        let audit_off = audit_off.clone();
        async move {
            std::fs::read_to_string(&audit_off)
                .unwrap_or_default()
                .contains(r#""inverse":["DROP INDEX CONCURRENTLY \"public\".\"t_d_idx\""]"#)
        }
    };
    assert!(
        common::eventually(Duration::from_secs(5), read).await,
        "{}",
        std::fs::read_to_string(&audit_off).unwrap_or_default()
    );
    c4.simple_query("ALTER TABLE t ADD CHECK (d > 0) NOT VALID")
        .await
        .expect("check");
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let audit_off = audit_off.clone();
            async move {
                std::fs::read_to_string(&audit_off)
                    .unwrap_or_default()
                    .contains(r#""inverse":["ALTER TABLE \"public\".\"t\" DROP CONSTRAINT \"t_d_check\""]"#)
            }
        })
        .await
    );
    // One the lane does not run (a statement prepared in an extended-protocol unit of its own,
    // as tokio-postgres's `execute` sends it): its name is not read, and the audit log says so.
    c4.execute("ALTER TABLE t ADD CHECK (nn > -1) NOT VALID", &[])
        .await
        .expect("check");
    let unread = || {
        let audit_off = audit_off.clone();
        async move {
            std::fs::read_to_string(&audit_off)
                .unwrap_or_default()
                .contains("the constraint was created without a name, and the name the server gave it was not read")
        }
    };
    assert!(
        common::eventually(Duration::from_secs(5), unread).await,
        "{}",
        std::fs::read_to_string(&audit_off).unwrap_or_default()
    );
}
