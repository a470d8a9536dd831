//! node-pg-migrate 9 (node-postgres 8 underneath): a history of JS migrations written with its
//! `pgm.*` builder, run with its CLI (`up 1`, `up`, `down 8`). By default (`singleTransaction`)
//! one run is one transaction; a migration calling `pgm.noTransaction()` breaks it: the tool
//! sends `COMMIT` before it (so what ran before is kept), runs its statements one Query each
//! outside any transaction, records it, and sends `BEGIN` for the rest.

use std::path::{Path, PathBuf};

use crate::harness::{E2e, Tool, Via, tool_dir};
use crate::node_tools::{self, Migrator, edit};

struct NodePgMigrate;

impl NodePgMigrate {
    fn cli(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
        Tool::new(tool_dir("node").join("node-pg-migrate"))
            .cwd(dir)
            .env("DATABASE_URL", e2e.url(via, db))
    }
}

impl Migrator for NodePgMigrate {
    const NAME: &'static str = "node-pg-migrate";
    const ONE_TRANSACTION_PER_RUN: bool = true;
    // It prints the whole error object: code, detail, hint.
    const ONE_TRANSACTION_PER_DOWN_RUN: bool = true;
    const SHOWS_HINT: bool = true;
    const SHOWS_NOTICES: bool = false;
    const WAY_OUT: &'static str =
        "with node-pg-migrate, call `pgm.noTransaction()` in the migration";
    const KNOWN_BY_VERSION_TABLE: bool = true;
    const VERSION_TABLES: &'static [&'static str] = &["pgmigrations"];
    const APPLIED_SQL: &'static str = "SELECT name FROM pgmigrations ORDER BY id";

    fn migrations(dir: &Path) -> Vec<PathBuf> {
        node_tools::files(&dir.join("migrations"), ".js")
    }

    fn recorded_name(file: &Path) -> String {
        file.file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned()
    }

    fn up(e2e: &E2e, via: Via, db: &str, dir: &Path, first_only: bool) -> Tool {
        let tool = NodePgMigrate::cli(e2e, via, db, dir).arg("up");
        if first_only { tool.arg("1") } else { tool }
    }

    fn down_all(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Option<Tool> {
        Some(NodePgMigrate::cli(e2e, via, db, dir).args(["down", "8"]))
    }

    fn down_one(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
        NodePgMigrate::cli(e2e, via, db, dir).arg("down")
    }

    fn opt_out(file: &Path) {
        edit(
            file,
            "exports.up = (pgm) => {\n",
            "exports.up = (pgm) => {\n  pgm.noTransaction();\n",
        );
    }

    /// `pgm.renameColumn` cannot carry a comment: the rename becomes `pgm.sql`.
    fn allow_rename(file: &Path, up: bool, comment: &str) {
        let (from, to) = if up {
            ("note", "remark")
        } else {
            ("remark", "note")
        };
        edit(
            file,
            &format!("pgm.renameColumn('orders', '{from}', '{to}');"),
            &format!("pgm.sql('{comment}\\nALTER TABLE orders RENAME COLUMN {from} TO {to}');"),
        );
    }
}

/// Fresh tables, one transaction per run: only the rename is refused.
#[tokio::test]
async fn node_pg_migrate_fresh_tables() {
    node_tools::fresh_tables::<NodePgMigrate>().await;
}

/// Big tables with a writer: each index and constraint is refused inside the run's
/// transaction and applies safely once its migration calls `pgm.noTransaction()`.
#[tokio::test]
async fn node_pg_migrate_big_tables() {
    node_tools::big_tables::<NodePgMigrate>().await;
}
