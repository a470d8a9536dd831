//! dbmate 2 (its npm package; a Go program on lib/pq): a history of SQL files with
//! `-- migrate:up` and `-- migrate:down` sections, run with `dbmate migrate` and
//! `dbmate rollback` (one migration at a time). Each section runs in its own transaction;
//! `-- migrate:up transaction:false` sends the section as one Query outside any, so the
//! statement needing CONCURRENTLY or several steps is alone in its section.

use std::path::{Path, PathBuf};

use crate::harness::{self, E2e, Tool, Via, tool_dir};
use crate::node_tools::{self, Migrator, edit};

struct Dbmate;

impl Dbmate {
    fn cli(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
        Tool::new(tool_dir("node").join("dbmate"))
            .cwd(dir)
            .env("DATABASE_URL", e2e.url(via, db))
            // The schema dump (pg_dump into db/schema.sql) is no part of the test.
            .arg("--no-dump-schema")
    }
}

impl Migrator for Dbmate {
    const NAME: &'static str = "dbmate";
    const ONE_TRANSACTION_PER_RUN: bool = false;
    // lib/pq's error text is "pq: " and the message; dbmate adds the SQLSTATE.
    const ONE_TRANSACTION_PER_DOWN_RUN: bool = false;
    const SHOWS_HINT: bool = false;
    const SHOWS_NOTICES: bool = false;
    const WAY_OUT: &'static str = "dbmate";
    // schema_migrations is dbmate's, golang-migrate's and Rails': it names no tool.
    const KNOWN_BY_VERSION_TABLE: bool = false;
    const VERSION_TABLES: &'static [&'static str] = &["schema_migrations"];
    const APPLIED_SQL: &'static str = "SELECT version FROM schema_migrations ORDER BY version";

    fn migrations(dir: &Path) -> Vec<PathBuf> {
        node_tools::files(&dir.join("db/migrations"), ".sql")
    }

    fn recorded_name(file: &Path) -> String {
        let name = file.file_name().expect("file name").to_string_lossy();
        name.split('_').next().expect("version").to_owned()
    }

    /// dbmate always applies every pending migration: the first one alone is applied from a
    /// directory holding only it (as when the project had only that migration).
    fn prepare(dir: &Path) {
        let first = &Dbmate::migrations(dir)[0];
        std::fs::create_dir_all(dir.join("db/first")).expect("mkdir");
        std::fs::copy(
            first,
            dir.join("db/first").join(first.file_name().expect("name")),
        )
        .expect("copy first migration");
    }

    fn up(e2e: &E2e, via: Via, db: &str, dir: &Path, first_only: bool) -> Tool {
        let tool = Dbmate::cli(e2e, via, db, dir);
        let tool = if first_only {
            tool.args(["--migrations-dir", "db/first"])
        } else {
            tool
        };
        tool.arg("migrate")
    }

    fn down_all(_: &E2e, _: Via, _: &str, _: &Path) -> Option<Tool> {
        None
    }

    fn down_one(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
        Dbmate::cli(e2e, via, db, dir).arg("rollback")
    }

    fn opt_out(file: &Path) {
        edit(file, "-- migrate:up\n", "-- migrate:up transaction:false\n");
    }

    fn allow_rename(file: &Path, up: bool, comment: &str) {
        let (from, to) = if up {
            ("note", "remark")
        } else {
            ("remark", "note")
        };
        let statement = format!("ALTER TABLE orders RENAME COLUMN {from} TO {to};");
        edit(file, &statement, &format!("{comment}\n{statement}"));
    }
}

/// Fresh tables, one transaction per migration: only the rename is refused.
#[tokio::test]
async fn dbmate_fresh_tables() {
    node_tools::fresh_tables::<Dbmate>().await;
}

/// Big tables with a writer: each index and constraint is refused inside dbmate's
/// transaction and applies safely once its section says `transaction:false`.
#[tokio::test]
async fn dbmate_big_tables() {
    node_tools::big_tables::<Dbmate>().await;
}

/// A `transaction:false` section is sent as one Query, which PostgreSQL runs as one implicit
/// transaction: with another statement beside it, the index on a big table is refused (the
/// hint names the multi-statement query), and the statement before it is rolled back with it.
/// Split as README says (the index alone in its section), it applies as CREATE INDEX
/// CONCURRENTLY.
#[tokio::test]
async fn dbmate_transaction_false_section_is_one_query() {
    let e2e = E2e::start().await;
    e2e.create_db("app").await;
    let work = harness::workdir(Dbmate::NAME);
    let dir = work.path();
    Dbmate::prepare(dir);
    Dbmate::up(&e2e, Via::Proxy, "app", dir, true).ok().await;
    e2e.fill_accounts_and_orders("app").await;

    let first = &Dbmate::migrations(dir)[0];
    let mixed = dir.join("db/mixed");
    std::fs::create_dir_all(&mixed).expect("mkdir");
    std::fs::copy(first, mixed.join(first.file_name().expect("name"))).expect("copy");
    std::fs::write(
        mixed.join("20260101000002_status_and_index.sql"),
        "-- migrate:up transaction:false\n\
         ALTER TABLE orders ADD COLUMN status text;\n\
         CREATE INDEX orders_status_idx ON orders (status);\n\n\
         -- migrate:down transaction:false\n\
         DROP INDEX orders_status_idx;\n\
         ALTER TABLE orders DROP COLUMN status;\n",
    )
    .expect("write migration");
    let run = Dbmate::cli(&e2e, Via::Proxy, "app", dir)
        .args(["--migrations-dir", "db/mixed", "migrate"])
        .fails()
        .await;
    run.assert_says(&[
        "ddlgate blocked this statement",
        "require-concurrent-index-creation",
    ]);
    let status = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'";
    assert_eq!(
        e2e.query_text("app", status).await,
        ["0"],
        "the ADD COLUMN before the index ran in the same implicit transaction and was rolled back"
    );
    assert_eq!(
        e2e.query_text("app", Dbmate::APPLIED_SQL).await,
        ["20260101000001"]
    );

    // The way out: the index alone in its own transaction:false section.
    let migrations = Dbmate::migrations(dir);
    let run = Dbmate::up(&e2e, Via::Proxy, "app", dir, false)
        .fails()
        .await;
    run.assert_says(&["require-concurrent-index-creation"]);
    Dbmate::opt_out(&migrations[2]);
    let run = Dbmate::up(&e2e, Via::Proxy, "app", dir, false)
        .fails()
        .await;
    run.assert_says(&["adding-foreign-key-constraint"]);
    assert_eq!(e2e.query_text("app", status).await, ["1"]);
    assert_eq!(
        e2e.query_text(
            "app",
            "SELECT count(*) FROM pg_index WHERE indexrelid = 'orders_status_idx'::regclass AND indisvalid"
        )
        .await,
        ["1"],
        "the index was built (CONCURRENTLY) and is valid"
    );
}
