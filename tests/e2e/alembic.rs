//! Alembic (SQLAlchemy 2.1, psycopg 3 by `postgresql+psycopg://`): the accounts/orders history
//! as Alembic revisions (`fixtures/alembic/migrations/versions`), run by `alembic upgrade` and
//! `alembic downgrade` with the generic env.py, whose default is one transaction for the whole
//! run. The way out on big tables is the hint's: the revision's operations in
//! `op.get_context().autocommit_block()` (`fixtures/alembic/outside`) and
//! `transaction_per_migration=True` in env.py, which Alembic's docs advise beside autocommit
//! blocks (without it a later refusal in the same run rolls back the version of a revision whose
//! block already committed; `alembic_autocommit_block_in_one_run_transaction` shows that).
//!
//! Observed here: SQLAlchemy on psycopg 3 sends DDL (no parameters) as simple-protocol Queries,
//! so ddlgate's multi-step rewrites apply inside autocommit blocks; psycopg 2 does the same.

use std::path::Path;

use crate::harness::{E2e, Run, Tool, Via, Writer, tool_dir, workdir};
use crate::psql::override_from;

/// The writer: one short UPDATE of a row of the big table.
pub const WRITE: &str = "UPDATE orders SET total = total + 1 WHERE id = 1 + (random() * 999)::int";

/// The SQLAlchemy driver in the URL.
#[derive(Clone, Copy)]
enum Driver {
    Psycopg3,
    Psycopg2,
}

fn alembic(e2e: &E2e, via: Via, db: &str, dir: &Path, driver: Driver) -> Tool {
    let scheme = match driver {
        Driver::Psycopg3 => "postgresql+psycopg://",
        Driver::Psycopg2 => "postgresql+psycopg2://",
    };
    let url = e2e.url(via, db).replacen("postgres://", scheme, 1);
    Tool::new(tool_dir("python").join("alembic"))
        .arg("-c")
        .arg(dir.join("alembic.ini"))
        .env("DATABASE_URL", url)
        // The test edits revisions between runs; no stale bytecode may stand in for them.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .cwd(dir)
}

fn version_file(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("migrations/versions").join(name)
}

/// Replaces `from` (which must occur) by `to` in `file`.
pub fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read migration");
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        file.display()
    );
    std::fs::write(file, text.replacen(from, to, 1)).expect("write migration");
}

/// The rename, as `op.execute` of SQL carrying the override a refusal printed (Alembic's
/// `alter_column` has no place for a comment).
fn override_rename(dir: &Path, run: &Run, upgrade: bool) {
    let (op, sql) = if upgrade {
        (
            r#"op.alter_column("orders", "note", new_column_name="remark")"#,
            "ALTER TABLE orders RENAME COLUMN note TO remark",
        )
    } else {
        (
            r#"op.alter_column("orders", "remark", new_column_name="note")"#,
            "ALTER TABLE orders RENAME COLUMN remark TO note",
        )
    };
    edit(
        &version_file(dir, "0007_rename_note.py"),
        op,
        &format!("op.execute('''{} {sql}''')", override_from(run)),
    );
}

/// Takes the hint's way out for revision `name`: its `autocommit_block` variant.
fn take_outside(dir: &Path, name: &str) {
    let from = crate::harness::fixtures("alembic")
        .join("outside")
        .join(name);
    std::fs::copy(&from, version_file(dir, name)).expect("copy the autocommit_block variant");
}

/// `transaction_per_migration=True` in env.py's `context.configure`.
fn transaction_per_migration(dir: &Path) {
    edit(
        &dir.join("migrations/env.py"),
        "context.configure(connection=connection, target_metadata=None)",
        "context.configure(\n            connection=connection,\n            target_metadata=None,\n            transaction_per_migration=True,\n        )",
    );
}

/// One count straight from the server.
pub async fn count(e2e: &E2e, db: &str, sql: &str) -> String {
    e2e.query_text(db, sql).await.concat()
}

async fn version(e2e: &E2e, db: &str) -> Vec<String> {
    e2e.query_text(db, "SELECT version_num FROM alembic_version")
        .await
}

async fn has_column(e2e: &E2e, db: &str, table: &str, column: &str) -> bool {
    count(
        e2e,
        db,
        &format!(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attname = '{column}' AND NOT attisdropped"
        ),
    )
    .await
        == "1"
}

/// Fresh tables, Alembic's default (one transaction for the whole run): every revision applies
/// except the rename, refused with the rule and the override, which rolls back the whole run;
/// with the override written into the revision the run applies. The downgrade to base is
/// refused at the rename back the same way, then applies. At each end the schema equals the
/// same history applied directly, and alembic_version says where the database is.
#[tokio::test]
async fn alembic_fresh_tables() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let dir = workdir("alembic");
    let dir = dir.path();
    let up = |via, db| alembic(&e2e, via, db, dir, Driver::Psycopg3).args(["upgrade", "head"]);
    let down = |via, db| alembic(&e2e, via, db, dir, Driver::Psycopg3).args(["downgrade", "base"]);

    alembic(&e2e, Via::Proxy, "via_proxy", dir, Driver::Psycopg3)
        .args(["upgrade", "0001"])
        .ok()
        .await;
    let run = up(Via::Proxy, "via_proxy").fails().await;
    run.assert_says(&[
        "Running upgrade 0006 -> 0007",
        "ddlgate blocked this statement",
        "renaming-column",
        "ddlgate:allow renaming-column",
    ]);
    run.assert_silent_on(&["Running upgrade 0007 -> 0008"]);
    // The run was one transaction: 0002 to 0006 applied before the rename and went with it.
    assert_eq!(version(&e2e, "via_proxy").await, ["0001"]);
    assert!(!has_column(&e2e, "via_proxy", "orders", "status").await);

    override_rename(dir, &run, true);
    let run = up(Via::Proxy, "via_proxy").ok().await;
    run.assert_says(&[
        "Running upgrade 0001 -> 0002",
        "Running upgrade 0007 -> 0008",
    ]);
    run.assert_silent_on(&["Traceback", "ddlgate"]);
    assert_eq!(version(&e2e, "via_proxy").await, ["0008"]);
    up(Via::Direct, "direct").ok().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    let run = down(Via::Proxy, "via_proxy").fails().await;
    run.assert_says(&["Running downgrade 0008 -> 0007", "renaming-column"]);
    assert_eq!(version(&e2e, "via_proxy").await, ["0008"]);
    assert!(!has_column(&e2e, "via_proxy", "orders", "legacy_code").await);
    override_rename(dir, &run, false);
    let run = down(Via::Proxy, "via_proxy").ok().await;
    run.assert_says(&["Running downgrade 0001 -> , create accounts and orders"]);
    run.assert_silent_on(&["Traceback"]);
    down(Via::Direct, "direct").ok().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    assert!(version(&e2e, "via_proxy").await.is_empty());
    let left = e2e
        .query_text(
            "via_proxy",
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        )
        .await;
    assert_eq!(
        left,
        ["alembic_version,alembic_version_pkc"],
        "downgrade base leaves only Alembic's version table"
    );
}

/// What a refused revision and its way out must show: the revision, the rule the refusal
/// names, a probe of its effect (a count, "0" before, "1" after), and what ddlgate sends in its
/// place, as the server logs it.
struct Step {
    name: &'static str,
    revision: &'static str,
    rule: &'static str,
    probe: &'static str,
    safe_form: &'static [&'static str],
}

const STEPS: [Step; 4] = [
    Step {
        name: "0003_index_status.py",
        revision: "0003",
        rule: "require-concurrent-index-creation",
        probe: "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('orders_status_idx') AND indisvalid",
        safe_form: &["statement: CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status)"],
    },
    Step {
        name: "0004_fk_account.py",
        revision: "0004",
        rule: "adding-foreign-key-constraint",
        probe: "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_account_id_fkey' AND convalidated",
        safe_form: &[
            "statement: ALTER TABLE orders ADD CONSTRAINT orders_account_id_fkey FOREIGN KEY(account_id) REFERENCES accounts (id) NOT VALID",
            "statement: ALTER TABLE orders VALIDATE CONSTRAINT orders_account_id_fkey",
        ],
    },
    Step {
        name: "0005_unique_email.py",
        revision: "0005",
        rule: "disallowed-unique-constraint",
        probe: "SELECT count(*) FROM pg_constraint WHERE conname = 'accounts_email_key' AND contype = 'u'",
        safe_form: &[
            "statement: CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_key ON accounts (email)",
            "statement: ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE USING INDEX accounts_email_key",
        ],
    },
    Step {
        name: "0006_total_not_null.py",
        revision: "0006",
        rule: "adding-not-nullable-field",
        probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'total' AND attnotnull",
        safe_form: &[
            "statement: ALTER TABLE orders ADD CONSTRAINT orders_total_ddlgate_nn CHECK (total IS NOT NULL) NOT VALID",
            "statement: ALTER TABLE orders VALIDATE CONSTRAINT orders_total_ddlgate_nn",
            "statement: ALTER TABLE orders ALTER COLUMN total SET NOT NULL",
        ],
    },
];

/// Big tables with a writer, `alembic upgrade head` after each fix, as a user would: each
/// revision that builds an index, adds a foreign key, a unique constraint or NOT NULL inside
/// Alembic's transaction is refused (rule, DETAIL, HINT naming autocommit_block), alembic_version
/// does not move past the revision before it, and none of its effects is left. With the hint's
/// way out (autocommit_block, transaction_per_migration) it applies in ddlgate's safe form — the
/// server's statement log shows CONCURRENTLY, NOT VALID and VALIDATE sent as simple Queries —
/// and is recorded. The writer never waits longer than lock_timeout + 1 s; the end schema
/// equals the final history applied directly, and applied through ddlgate with psycopg 2.
#[tokio::test]
async fn alembic_big_tables() {
    let e2e = E2e::start().await;
    for db in ["via_proxy", "psycopg2", "direct"] {
        e2e.create_db(db).await;
    }
    e2e.admin_exec(
        "postgres",
        "ALTER DATABASE via_proxy SET log_statement = 'ddl'",
    )
    .await;
    let dir = workdir("alembic");
    let dir = dir.path();
    let up = |db| alembic(&e2e, Via::Proxy, db, dir, Driver::Psycopg3).args(["upgrade", "head"]);

    alembic(&e2e, Via::Proxy, "via_proxy", dir, Driver::Psycopg3)
        .args(["upgrade", "0001"])
        .ok()
        .await;
    e2e.fill_accounts_and_orders("via_proxy").await;
    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;

    for (i, step) in STEPS.iter().enumerate() {
        // Before the first fix the whole run is one transaction: 0002 applies and goes with
        // 0003. Afterwards each revision commits on its own.
        let (before, recorded) = match i {
            0 => ("0002", "0001"),
            _ => (STEPS[i - 1].revision, STEPS[i - 1].revision),
        };
        let run = up("via_proxy").fails().await;
        run.assert_says(&[
            &format!("Running upgrade {before} -> {}", step.revision),
            "ddlgate blocked this statement",
            step.rule,
            "DETAIL:",
            "HINT:",
            // ddlgate knows the session's tool by its version table (alembic_version): the
            // HINT (which psycopg shows) names Alembic's way out, and only Alembic's.
            "outside any transaction: with Alembic, run it inside `with op.get_context().autocommit_block():`, with `transaction_per_migration=True` in env.py",
        ]);
        run.assert_silent_on(&["disable_ddl_transaction!"]);
        assert_eq!(
            version(&e2e, "via_proxy").await,
            [recorded],
            "{}",
            step.name
        );
        assert_eq!(
            count(&e2e, "via_proxy", step.probe).await,
            "0",
            "{} left something behind after its refusal",
            step.name
        );
        if i == 0 {
            // Alembic's default: the whole run was one transaction, 0002 went too.
            assert!(!has_column(&e2e, "via_proxy", "orders", "status").await);
            transaction_per_migration(dir);
        }
        take_outside(dir, step.name);
    }
    // The last refusal is the rename; the revisions before it are recorded, each applied.
    let run = up("via_proxy").fails().await;
    run.assert_says(&["Running upgrade 0006 -> 0007", "renaming-column"]);
    assert_eq!(version(&e2e, "via_proxy").await, ["0006"]);
    let log = e2e.env.pg.log();
    for step in &STEPS {
        assert_eq!(
            count(&e2e, "via_proxy", step.probe).await,
            "1",
            "{} applied",
            step.name
        );
        for line in step.safe_form {
            assert!(
                log.contains(line),
                "{}: the server did not log {line:?}",
                step.name
            );
        }
    }
    assert_eq!(
        count(
            &e2e,
            "via_proxy",
            "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_total_ddlgate_nn'"
        )
        .await,
        "0",
        "the NOT NULL rewrite drops its helper CHECK"
    );
    override_rename(dir, &run, true);
    let run = up("via_proxy").ok().await;
    run.assert_says(&["Running upgrade 0007 -> 0008"]);
    assert_eq!(version(&e2e, "via_proxy").await, ["0008"]);
    writer.stop_and_check().await;

    // The final history at once: directly, and through ddlgate with psycopg 2 on big tables.
    alembic(&e2e, Via::Direct, "direct", dir, Driver::Psycopg3)
        .args(["upgrade", "head"])
        .ok()
        .await;
    alembic(&e2e, Via::Proxy, "psycopg2", dir, Driver::Psycopg2)
        .args(["upgrade", "0001"])
        .ok()
        .await;
    e2e.fill_accounts_and_orders("psycopg2").await;
    let run = alembic(&e2e, Via::Proxy, "psycopg2", dir, Driver::Psycopg2)
        .args(["upgrade", "head"])
        .ok()
        .await;
    run.assert_silent_on(&["Traceback"]);
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    e2e.assert_same_schema("psycopg2", "direct", &[]).await;
}

/// The autocommit_block way out without `transaction_per_migration`, Alembic's default: the
/// block commits the index, but the run's later refusal rolls back the version row written
/// after it, so alembic_version says 0002 while the index of 0003 exists, and the next
/// `upgrade head` fails on the existing index. This is why ddlgate's hint names both.
#[tokio::test]
async fn alembic_autocommit_block_in_one_run_transaction() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    let dir = workdir("alembic");
    let dir = dir.path();
    let up = || alembic(&e2e, Via::Proxy, "via_proxy", dir, Driver::Psycopg3);
    up().args(["upgrade", "0001"]).ok().await;
    e2e.fill_accounts_and_orders("via_proxy").await;
    take_outside(dir, STEPS[0].name);
    let run = up().args(["upgrade", "head"]).fails().await;
    run.assert_says(&["Running upgrade 0003 -> 0004", STEPS[1].rule]);
    assert_eq!(version(&e2e, "via_proxy").await, ["0002"]);
    assert_eq!(count(&e2e, "via_proxy", STEPS[0].probe).await, "1");
    let run = up().args(["upgrade", "head"]).fails().await;
    run.assert_says(&["relation \"orders_status_idx\" already exists"]);
}
