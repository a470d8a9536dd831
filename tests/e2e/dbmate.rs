//! dbmate 2 (its npm package; a Go program on lib/pq): a history of SQL files with
//! `-- migrate:up` and `-- migrate:down` sections, run with `dbmate migrate` and
//! `dbmate rollback` (one migration at a time). Each section runs in its own transaction;
//! `-- migrate:up transaction:false` sends the section as one Query outside any, so the
//! statement needing CONCURRENTLY or several steps is alone in its section.

use std::path::{Path, PathBuf};

use crate::harness::{E2e, Tool, Via, tool_dir};
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
