//! sqlx-cli: a reversible history (`sqlx migrate add -r`: `<version>_<name>.up.sql` and
//! `.down.sql`) applied with `sqlx migrate run` and taken back with `sqlx migrate revert`.
//!
//! What sqlx does (its `sqlx-postgres` `migrate.rs`, and what these tests observe): each
//! migration runs in its own transaction (`BEGIN`, the whole file as one simple Query, the
//! `INSERT INTO _sqlx_migrations`, `COMMIT`); a file whose first line is `-- no-transaction` is
//! sent as the same one Query without `BEGIN`. A run stops
//! at the first failing migration, with the ones before it committed. sqlx-cli prints only the
//! error's message (`error: while executing migration V: error returned from database: M`),
//! never DETAIL or HINT: ddlgate, knowing sqlx by its version table, puts sqlx's way out and
//! the override into the message (`assert_tool_way_out`).
//!
//! The helpers marked `pub(crate)` are shared with `diesel.rs`, which runs the same history.

use std::collections::BTreeSet;
use std::path::Path;

use ddlgate::rules::Action;

use crate::harness::{E2e, Run, Tool, Via, Writer, tool_dir, workdir};

/// The history, by version and name (the files are `<version>_<name>.up.sql` / `.down.sql`).
const HISTORY: [(&str, &str); 8] = [
    ("20240101120000", "create_accounts_and_orders"),
    ("20240102120000", "add_order_status"),
    ("20240103120000", "index_order_status"),
    ("20240104120000", "orders_account_fk"),
    ("20240105120000", "unique_account_email"),
    ("20240106120000", "order_total_not_null"),
    ("20240107120000", "rename_order_note"),
    ("20240108120000", "drop_order_legacy_code"),
];

/// The writer: one short UPDATE of a row of the big table.
pub(crate) const WRITE: &str =
    "UPDATE orders SET total = total + 1 WHERE id = 1 + (random() * 999)::int";

/// A migration ddlgate refuses inside the tool's transaction on big tables: its rule, a query
/// that is `gone` before it applies (nothing half-applied), and one that is `safe` once it
/// applied in its safe form (index valid, constraint validated, no helper constraint left).
pub(crate) struct Refused {
    pub name: &'static str,
    pub rule: &'static str,
    pub probe: &'static str,
    pub gone: &'static str,
    pub safe: &'static str,
}

pub(crate) const REFUSED: [Refused; 4] = [
    Refused {
        name: "index_order_status",
        rule: "require-concurrent-index-creation",
        probe: "SELECT coalesce((SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass('orders_status_idx')), 'none')",
        gone: "none",
        safe: "true",
    },
    Refused {
        name: "orders_account_fk",
        rule: "adding-foreign-key-constraint",
        probe: "SELECT coalesce((SELECT convalidated::text FROM pg_constraint WHERE conname = 'orders_account_id_fkey'), 'none')",
        gone: "none",
        safe: "true",
    },
    Refused {
        name: "unique_account_email",
        rule: "disallowed-unique-constraint",
        probe: "SELECT coalesce((SELECT c.contype::text || ' ' || i.indisvalid::text FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid WHERE c.conname = 'accounts_email_key'), 'none') || ' ' || (SELECT count(*) FROM pg_class WHERE relname = 'accounts_email_key')",
        gone: "none 0",
        safe: "u true 1",
    },
    Refused {
        name: "order_total_not_null",
        rule: "adding-not-nullable-field",
        probe: "SELECT attnotnull::text || ' ' || (SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c') FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'total'",
        gone: "false 0",
        safe: "true 0",
    },
];

/// The override comment a refusal names (`/* ddlgate:allow RULE reason="…" */`, in the message
/// for tools that print no HINT: [`assert_tool_way_out`]), with a real reason written in.
pub(crate) fn override_for(rule: &str) -> String {
    format!("/* ddlgate:allow {rule} reason=\"e2e: the application no longer reads it\" */")
}

/// Puts `line` on a line of its own before the contents of `file`.
pub(crate) fn prefix_file(file: &Path, line: &str) {
    let body = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    std::fs::write(file, format!("{line}\n{body}")).expect("write migration");
}

/// Writes `contents` to `file`, creating its directory.
pub(crate) fn put(file: &Path, contents: &str) {
    std::fs::create_dir_all(file.parent().expect("a directory")).expect("mkdir");
    std::fs::write(file, contents).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

/// How many statements ddlgate decided `action` for under `rule`, so far.
pub(crate) fn decided(e2e: &E2e, rule: &str, action: Action) -> u64 {
    e2e.env
        .proxy
        .shared()
        .counters
        .decisions
        .rule_action(rule, action)
}

/// How many statements ddlgate blocked in all, so far.
pub(crate) fn blocked(e2e: &E2e) -> u64 {
    e2e.env
        .proxy
        .shared()
        .counters
        .decisions
        .effective(Action::Block)
}

/// The tables left in `public`, by name.
pub(crate) async fn tables(e2e: &E2e, db: &str) -> Vec<String> {
    e2e.query_text(
        db,
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname",
    )
    .await
}

/// `ddlgate check --tool TOOL FILES…` run in `dir`: its exit status and the files it would
/// block (relative paths as given).
pub(crate) fn check_blocks(tool: &str, dir: &Path, files: &[String]) -> (i32, BTreeSet<String>) {
    let (code, blocked, _) = check(tool, dir, files);
    (code, blocked)
}

/// The same, and everything it printed (findings with their hints).
pub(crate) fn check(tool: &str, dir: &Path, files: &[String]) -> (i32, BTreeSet<String>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["check", "--tool", tool])
        .args(files)
        .current_dir(dir)
        .env_remove("DDLGATE_CONFIG")
        .output()
        .expect("run ddlgate check");
    let text = String::from_utf8_lossy(&out.stdout);
    let blocked = text
        .lines()
        .filter(|l| l.contains(": block "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect();
    (
        out.status.code().expect("exit status"),
        blocked,
        text.into_owned(),
    )
}

fn sqlx(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
    Tool::new(tool_dir("sqlx").join("sqlx"))
        .env("DATABASE_URL", e2e.url(via, db))
        .cwd(dir)
}

fn up(dir: &Path, name: &str) -> std::path::PathBuf {
    file(dir, name, "up")
}

fn file(dir: &Path, name: &str, way: &str) -> std::path::PathBuf {
    let (version, _) = HISTORY
        .iter()
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("no migration {name}"));
    dir.join("migrations")
        .join(format!("{version}_{name}.{way}.sql"))
}

fn version(name: &str) -> &'static str {
    HISTORY
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(v, _)| *v)
        .unwrap_or_else(|| panic!("no migration {name}"))
}

/// The versions `_sqlx_migrations` records as applied, in order, comma-separated.
async fn recorded(e2e: &E2e, db: &str) -> String {
    e2e.query_text(
        db,
        "SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM _sqlx_migrations WHERE success",
    )
    .await
    .remove(0)
}

fn versions_through(last: &str) -> String {
    HISTORY
        .iter()
        .map(|(v, _)| *v)
        .take_while(|v| *v <= version(last))
        .collect::<Vec<_>>()
        .join(",")
}

/// The refusal as sqlx-cli prints it: the migration, the rule and its summary, and none of
/// PL/pgSQL's RAISE location (before ddlgate dropped the F/L fields of its own errors, sqlx 0.9
/// printed "… at line 3891", the line in the server's pl_exec.c).
fn assert_refused(run: &Run, name: &str, rule: &str) {
    run.assert_says(&[
        &format!(
            "error: while executing migration {}: error returned from database: ddlgate blocked this statement (rule {rule}: ",
            version(name)
        ),
    ]);
    run.assert_silent_on(&[" at line ", "pl_exec"]);
    assert_tool_way_out(
        run,
        rule,
        "sqlx",
        "put `-- no-transaction` as the first line",
    );
}

/// sqlx and diesel print only the message: ddlgate, knowing the tool by its version table,
/// puts the tool's way out (for rules it can run safely outside a transaction) and the override
/// that [`override_for`] writes into the message itself.
pub(crate) fn assert_tool_way_out(run: &Run, rule: &str, tool: &str, way: &str) {
    if rule != "renaming-column" {
        run.assert_says(&[&format!("Safe way with {tool}: {way}")]);
    }
    run.assert_says(&[&format!(
        "To run it as written: /* ddlgate:allow {rule} reason=\"…\" */"
    )]);
}

/// Fresh tables, sqlx's default (one transaction per migration): everything applies except the
/// rename, refused with its rule; with the override written in, it applies and the run goes on.
/// The schema equals the same history applied directly. Then `sqlx migrate revert
/// --target-version 0` takes it all back (the rename back needs the override too), again equal
/// to direct, with `_sqlx_migrations` empty.
#[tokio::test]
async fn sqlx_fresh_tables_rename_refused_and_full_revert() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let work = workdir("sqlx");
    let dir = work.path();

    let blocks = blocked(&e2e);
    let run = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "run"])
        .fails()
        .await;
    assert_refused(&run, "rename_order_note", "renaming-column");
    assert_eq!(blocked(&e2e), blocks + 1, "only the rename is blocked");
    for (v, n) in &HISTORY[..6] {
        run.assert_says(&[&format!("Applied {v}/migrate {}", n.replace('_', " "))]);
    }
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("order_total_not_null"),
        "sqlx records every migration before the refused one, and not that one"
    );
    let probe = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'remark'";
    assert_eq!(e2e.query_text("via_proxy", probe).await, ["0"]);

    let overrides = e2e
        .env
        .proxy
        .shared()
        .counters
        .decisions
        .overrides("renaming-column");
    prefix_file(
        &up(dir, "rename_order_note"),
        &override_for("renaming-column"),
    );
    let run = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "run"])
        .ok()
        .await;
    run.assert_says(&[
        "Applied 20240107120000/migrate rename order note",
        "Applied 20240108120000/migrate drop order legacy code",
    ]);
    assert_eq!(
        e2e.env
            .proxy
            .shared()
            .counters
            .decisions
            .overrides("renaming-column"),
        overrides + 1
    );
    assert_eq!(blocked(&e2e), blocks + 1, "nothing more is blocked");
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("drop_order_legacy_code")
    );
    sqlx(&e2e, Via::Direct, "direct", dir)
        .args(["migrate", "run"])
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    // Down: the rename back is a rename too.
    let run = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "revert", "--target-version", "0"])
        .fails()
        .await;
    run.assert_says(&["Applied 20240108120000/revert drop order legacy code"]);
    assert_refused(&run, "rename_order_note", "renaming-column");
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("rename_order_note"),
        "the refused revert is still recorded as applied"
    );
    prefix_file(
        &file(dir, "rename_order_note", "down"),
        &override_for("renaming-column"),
    );
    let run = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "revert", "--target-version", "0"])
        .ok()
        .await;
    run.assert_says(&["Applied 20240101120000/revert create accounts and orders"]);
    sqlx(&e2e, Via::Direct, "direct", dir)
        .args(["migrate", "revert", "--target-version", "0"])
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    assert_eq!(recorded(&e2e, "via_proxy").await, "");
    assert_eq!(tables(&e2e, "via_proxy").await, ["_sqlx_migrations"]);
}

/// Big tables with a concurrent writer, sqlx's default transaction per migration: the index,
/// the foreign key, the unique constraint and NOT NULL are each refused (the rule and its
/// summary in sqlx's output), `_sqlx_migrations` does not record the refused migration and
/// nothing of it is left. The way out (`-- no-transaction` as the first line of the file, which holds only
/// that statement) applies it in its safe form: ddlgate rewrites it (CONCURRENTLY, NOT VALID +
/// VALIDATE, the unique index built concurrently, NOT NULL through a validated CHECK), the
/// index is valid and the constraints validated, and sqlx records it. The writer never waits
/// longer than lock_timeout + 1 s; the end schema equals the final history applied directly.
/// `ddlgate check --tool sqlx` blocks exactly the files the proxy refused, and nothing once the
/// ways out are written.
#[tokio::test]
async fn sqlx_big_tables_refused_in_transaction_then_no_transaction() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let work = workdir("sqlx");
    let dir = work.path();
    for (db, via) in [("via_proxy", Via::Proxy), ("direct", Via::Direct)] {
        sqlx(&e2e, via, db, dir)
            .args(["migrate", "run", "--target-version", HISTORY[0].0])
            .ok()
            .await;
        e2e.fill_accounts_and_orders(db).await;
    }
    let ups: Vec<String> = HISTORY
        .iter()
        .map(|(v, n)| format!("migrations/{v}_{n}.up.sql"))
        .collect();

    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;
    let mut refused_files = BTreeSet::new();
    for r in &REFUSED {
        let blocks = decided(&e2e, r.rule, Action::Block);
        let run = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
            .args(["migrate", "run"])
            .fails()
            .await;
        assert_refused(&run, r.name, r.rule);
        assert_eq!(decided(&e2e, r.rule, Action::Block), blocks + 1, "{run}");
        let before = HISTORY[HISTORY
            .iter()
            .position(|(_, n)| *n == r.name)
            .expect("in history")
            - 1]
        .1;
        assert_eq!(
            recorded(&e2e, "via_proxy").await,
            versions_through(before),
            "{} must not be recorded",
            r.name
        );
        assert_eq!(
            e2e.query_text("via_proxy", r.probe).await,
            [r.gone],
            "{} left something behind after its refusal",
            r.name
        );
        refused_files.insert(format!("migrations/{}_{}.up.sql", version(r.name), r.name));

        // The way out: the file, which holds only this statement, outside a transaction.
        prefix_file(&up(dir, r.name), "-- no-transaction");
        let rewrites = decided(&e2e, r.rule, Action::Rewrite);
        let next = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
            .args(["migrate", "run", "--target-version", version(r.name)])
            .ok()
            .await;
        next.assert_says(&[&format!("Applied {}/migrate", version(r.name))]);
        assert_eq!(
            decided(&e2e, r.rule, Action::Rewrite),
            rewrites + 1,
            "{} was not rewritten to its safe form:\n{next}",
            r.name
        );
        assert_eq!(
            e2e.query_text("via_proxy", r.probe).await,
            [r.safe],
            "{} did not end in its safe form",
            r.name
        );
        assert_eq!(recorded(&e2e, "via_proxy").await, versions_through(r.name));
    }
    // The rename is refused on big tables too; the override lets it through.
    let run = sqlx(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "run"])
        .fails()
        .await;
    assert_refused(&run, "rename_order_note", "renaming-column");
    refused_files.insert(format!(
        "migrations/{}_rename_order_note.up.sql",
        version("rename_order_note")
    ));
    prefix_file(
        &up(dir, "rename_order_note"),
        &override_for("renaming-column"),
    );
    sqlx(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "run"])
        .ok()
        .await;
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("drop_order_legacy_code")
    );
    one_query_is_one_transaction(&e2e, dir).await;
    writer.stop_and_check().await;

    sqlx(&e2e, Via::Direct, "direct", dir)
        .args(["migrate", "run"])
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    // `ddlgate check --tool sqlx` agrees: on the files as first written it blocks exactly those
    // the proxy refused; on the files with their ways out, nothing.
    // sqlx-cli never printed the hint; `check` does, with sqlx's way out.
    let original = crate::harness::fixtures("sqlx");
    let (code, blocked, text) = check("sqlx", &original, &ups);
    assert_eq!(code, 1);
    assert_eq!(blocked, refused_files);
    assert!(
        text.contains(
            "sqlx `-- no-transaction` as the first line of a file holding only this statement"
        ),
        "{text}"
    );
    let (code, blocked) = check_blocks("sqlx", dir, &ups);
    assert_eq!((code, blocked), (0, BTreeSet::new()));
}

/// A later migration that adds a column and indexes it, both in one `-- no-transaction` file:
/// sqlx sends the file as one Query, which PostgreSQL runs as one implicit transaction, so the
/// index cannot be built concurrently there. ddlgate refuses the file (and `check` says so),
/// nothing of it applies, sqlx does not record it. Split as README says (the column in a
/// transactional file, the index alone in a `-- no-transaction` file), both apply and the index
/// is built concurrently.
async fn one_query_is_one_transaction(e2e: &E2e, dir: &Path) {
    let both = "migrations/20240109120000_ship_orders.up.sql";
    put(
        &dir.join(both),
        "-- no-transaction\nALTER TABLE orders ADD COLUMN shipped_at timestamptz;\nCREATE INDEX orders_shipped_at_idx ON orders (shipped_at);\n",
    );
    put(
        &dir.join("migrations/20240109120000_ship_orders.down.sql"),
        "DROP INDEX orders_shipped_at_idx;\nALTER TABLE orders DROP COLUMN shipped_at;\n",
    );
    let (code, blocked) = check_blocks("sqlx", dir, &[both.to_owned()]);
    assert_eq!((code, blocked), (1, BTreeSet::from([both.to_owned()])));
    let rule = "require-concurrent-index-creation";
    let blocks = decided(e2e, rule, Action::Block);
    let run = sqlx(e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "run"])
        .fails()
        .await;
    run.assert_says(&[&format!(
        "error: while executing migration 20240109120000: error returned from database: ddlgate blocked this statement (rule {rule}: "
    )]);
    assert_eq!(decided(e2e, rule, Action::Block), blocks + 1);
    let probe = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'shipped_at'";
    assert_eq!(
        e2e.query_text("via_proxy", probe).await,
        ["0"],
        "the ADD COLUMN before the refused index ran in the same implicit transaction"
    );
    assert!(!recorded(e2e, "via_proxy").await.contains("20240109120000"));

    put(
        &dir.join(both),
        "ALTER TABLE orders ADD COLUMN shipped_at timestamptz;\n",
    );
    put(
        &dir.join("migrations/20240109120000_ship_orders.down.sql"),
        "ALTER TABLE orders DROP COLUMN shipped_at;\n",
    );
    let index = "migrations/20240110120000_index_orders_shipped_at.up.sql";
    put(
        &dir.join(index),
        "-- no-transaction\nCREATE INDEX orders_shipped_at_idx ON orders (shipped_at);\n",
    );
    put(
        &dir.join("migrations/20240110120000_index_orders_shipped_at.down.sql"),
        "DROP INDEX orders_shipped_at_idx;\n",
    );
    let (code, blocked) = check_blocks("sqlx", dir, &[both.to_owned(), index.to_owned()]);
    assert_eq!((code, blocked), (0, BTreeSet::new()));
    let rewrites = decided(e2e, rule, Action::Rewrite);
    sqlx(e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "run"])
        .ok()
        .await;
    assert_eq!(decided(e2e, rule, Action::Rewrite), rewrites + 1);
    assert_eq!(
        e2e.query_text(
            "via_proxy",
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'orders_shipped_at_idx'::regclass"
        )
        .await,
        ["true"]
    );
    assert!(
        recorded(e2e, "via_proxy")
            .await
            .ends_with("20240109120000,20240110120000")
    );
}
