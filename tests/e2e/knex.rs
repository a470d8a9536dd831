//! knex 3 (node-postgres 8 underneath): a history of JS migrations written with knex's schema
//! builder, run with the knex CLI (`migrate:up`, `migrate:latest`, `migrate:rollback --all`).
//! `migrate:latest` runs the pending migrations in one transaction when all of them are
//! transactional, and each transactional one in its own transaction otherwise;
//! `migrate:rollback` always runs each in its own. The opt-out is
//! `exports.config = { transaction: false }` in the migration file; each statement is then
//! its own simple Query. knex prints an error's message only (no DETAIL, no HINT); the
//! knexfile prints NOTICEs and WARNINGs. The NOT NULL migration uses `.alter()`, which
//! restates the column's type with a USING cast (see `sql::parse::casts_column_to`).

use std::path::{Path, PathBuf};

use crate::harness::{E2e, Tool, Via, tool_dir};
use crate::node_tools::{self, Migrator, edit};

struct Knex;

impl Knex {
    fn cli(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
        Tool::new(tool_dir("node").join("knex"))
            .cwd(dir)
            .env("DATABASE_URL", e2e.url(via, db))
            .args(["--knexfile", "knexfile.js"])
    }
}

impl Migrator for Knex {
    const NAME: &'static str = "knex";
    const ONE_TRANSACTION_PER_RUN: bool = true;
    // knex prints the error's message (and stack) only: no DETAIL, no HINT.
    const ONE_TRANSACTION_PER_DOWN_RUN: bool = false;
    const SHOWS_HINT: bool = false;
    // The knexfile's pool hook prints them.
    const SHOWS_NOTICES: bool = true;
    const WAY_OUT: &'static str =
        "Safe way with knex: add `exports.config = { transaction: false };` to the migration";
    const KNOWN_BY_VERSION_TABLE: bool = true;
    const VERSION_TABLES: &'static [&'static str] = &["knex_migrations", "knex_migrations_lock"];
    const APPLIED_SQL: &'static str = "SELECT name FROM knex_migrations ORDER BY id";

    fn migrations(dir: &Path) -> Vec<PathBuf> {
        node_tools::files(&dir.join("migrations"), ".js")
    }

    fn recorded_name(file: &Path) -> String {
        file.file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned()
    }

    /// A knex project has knex and pg in its `node_modules`; the CLI refuses to run without
    /// a local knex.
    fn prepare(dir: &Path) {
        let modules = tool_dir("node").join("..");
        std::os::unix::fs::symlink(
            modules.canonicalize().expect("node_modules"),
            dir.join("node_modules"),
        )
        .expect("symlink node_modules");
    }

    fn up(e2e: &E2e, via: Via, db: &str, dir: &Path, first_only: bool) -> Tool {
        Knex::cli(e2e, via, db, dir).arg(if first_only {
            "migrate:up"
        } else {
            "migrate:latest"
        })
    }

    fn down_all(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Option<Tool> {
        Some(Knex::cli(e2e, via, db, dir).args(["migrate:rollback", "--all"]))
    }

    fn down_one(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
        Knex::cli(e2e, via, db, dir).arg("migrate:down")
    }

    fn opt_out(file: &Path) {
        let text = std::fs::read_to_string(file).expect("read migration");
        std::fs::write(
            file,
            format!("{text}\nexports.config = {{ transaction: false }};\n"),
        )
        .expect("write migration");
    }

    /// The schema builder cannot carry a comment: the rename becomes `knex.raw`.
    fn allow_rename(file: &Path, up: bool, comment: &str) {
        let (direction, from, to) = if up {
            ("up", "note", "remark")
        } else {
            ("down", "remark", "note")
        };
        edit(
            file,
            &format!(
                "exports.{direction} = (knex) =>\n  knex.schema.alterTable('orders', (t) => {{\n    t.renameColumn('{from}', '{to}');\n  }});"
            ),
            &format!(
                "exports.{direction} = (knex) =>\n  knex.raw('{comment}\\nALTER TABLE orders RENAME COLUMN {from} TO {to}');"
            ),
        );
    }
}

/// Fresh tables, knex's default transactional mode: only the rename is refused.
#[tokio::test]
async fn knex_fresh_tables() {
    node_tools::fresh_tables::<Knex>().await;
}

/// Big tables with a writer: each index and constraint is refused inside knex's transaction
/// and applies safely once its migration says `exports.config = { transaction: false }`.
#[tokio::test]
async fn knex_big_tables() {
    node_tools::big_tables::<Knex>().await;
}
