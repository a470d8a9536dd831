//! diesel_cli: a history as `diesel migration generate` lays it out
//! (`migrations/<timestamp>_<name>/up.sql`, `down.sql`, the `00000000000000_diesel_initial_setup`
//! of `diesel setup`, and a `diesel.toml` whose `print_schema.file` is the project's
//! `src/schema.rs`, here inside the test's copy), applied with `diesel migration run`, checked
//! with `redo`, taken back with `revert --all`.
//!
//! What diesel does, as observed here: each migration runs in its own transaction (a run stops
//! at the first failing one, those before it committed), the whole `up.sql` sent as one simple
//! Query; with `run_in_transaction = false` in the migration's `metadata.toml` the same one
//! Query without a transaction. After a successful run it regenerates `src/schema.rs` through
//! the same connection. It prints only the error's message
//! (`Failed to run <migration> with: M`, plus a tracing line with the query): ddlgate's DETAIL
//! and HINT never reach the user.

use std::collections::BTreeSet;
use std::path::Path;

use ddlgate::rules::Action;

use crate::harness::{E2e, Run, Tool, Via, Writer, tool_dir, workdir};
use crate::sqlx::{
    REFUSED, WRITE, assert_tool_way_out, blocked, check, check_blocks, decided, override_for,
    prefix_file, put, tables,
};

/// The history's migration directories, oldest first.
const HISTORY: [&str; 9] = [
    "00000000000000_diesel_initial_setup",
    "2024-01-01-120000_create_accounts_and_orders",
    "2024-01-02-120000_add_order_status",
    "2024-01-03-120000_index_order_status",
    "2024-01-04-120000_orders_account_fk",
    "2024-01-05-120000_unique_account_email",
    "2024-01-06-120000_order_total_not_null",
    "2024-01-07-120000_rename_order_note",
    "2024-01-08-120000_drop_order_legacy_code",
];

fn diesel(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
    Tool::new(tool_dir("diesel").join("diesel"))
        .env("DATABASE_URL", e2e.url(via, db))
        .cwd(dir)
}

fn migration(name: &str) -> &'static str {
    HISTORY
        .iter()
        .copied()
        .find(|m| m.ends_with(&format!("_{name}")))
        .unwrap_or_else(|| panic!("no migration {name}"))
}

/// What `__diesel_schema_migrations` holds for the history up to `last`: the directory names'
/// digits.
fn versions_through(last: &str) -> String {
    let end = HISTORY
        .iter()
        .position(|m| *m == migration(last))
        .expect("in history");
    HISTORY[..=end]
        .iter()
        .map(|m| m.split('_').next().expect("timestamp").replace('-', ""))
        .collect::<Vec<_>>()
        .join(",")
}

async fn recorded(e2e: &E2e, db: &str) -> String {
    e2e.query_text(
        db,
        "SELECT coalesce(string_agg(version, ',' ORDER BY version), '') FROM __diesel_schema_migrations",
    )
    .await
    .remove(0)
}

/// The refusal as diesel prints it: the migration, the rule and its summary.
fn assert_refused(run: &Run, name: &str, rule: &str) {
    run.assert_says(&[&format!(
        "Failed to run {} with: ddlgate blocked this statement (rule {rule}: ",
        migration(name)
    )]);
    run.assert_silent_on(&[" at line ", "pl_exec"]);
    assert_tool_way_out(
        run,
        rule,
        "diesel",
        "give the migration a `metadata.toml` with `run_in_transaction = false`",
    );
}

/// The `src/schema.rs` diesel regenerated through ddlgate after a successful run.
fn assert_schema_rs(dir: &Path) {
    let rs =
        std::fs::read_to_string(dir.join("src/schema.rs")).expect("diesel wrote src/schema.rs");
    for needle in [
        "orders (id)",
        "remark -> Nullable<Text>",
        "status -> Nullable<Text>",
        "total -> Numeric",
    ] {
        assert!(
            rs.contains(needle),
            "{needle:?} not in src/schema.rs:\n{rs}"
        );
    }
    assert!(!rs.contains("legacy_code"), "{rs}");
}

/// Fresh tables, diesel's default (one transaction per migration): everything applies except the
/// rename, refused with its rule; with the override written in, it applies and the run goes on,
/// and `redo` of the last migration works through ddlgate. The schema equals the same history
/// applied directly. Then `diesel migration revert --all` takes it all back, down to diesel's
/// own setup (the rename back needs the override too), again equal to direct, with
/// `__diesel_schema_migrations` empty.
#[tokio::test]
async fn diesel_fresh_tables_rename_refused_redo_and_revert_all() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let work = workdir("diesel");
    let dir = work.path();
    let rename = dir.join("migrations").join(migration("rename_order_note"));

    let blocks = blocked(&e2e);
    let run = diesel(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "run"])
        .fails()
        .await;
    assert_refused(&run, "rename_order_note", "renaming-column");
    assert_eq!(blocked(&e2e), blocks + 1, "only the rename is blocked");
    for m in &HISTORY[1..7] {
        run.assert_says(&[&format!("Running migration {m}")]);
    }
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("order_total_not_null"),
        "diesel records every migration before the refused one, and not that one"
    );
    let probe = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'remark'";
    assert_eq!(e2e.query_text("via_proxy", probe).await, ["0"]);

    prefix_file(&rename.join("up.sql"), &override_for("renaming-column"));
    let run = diesel(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "run"])
        .ok()
        .await;
    run.assert_says(&[
        &format!("Running migration {}", migration("rename_order_note")),
        &format!("Running migration {}", migration("drop_order_legacy_code")),
    ]);
    assert_schema_rs(dir);
    assert_eq!(blocked(&e2e), blocks + 1, "nothing more is blocked");
    let run = diesel(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "redo"])
        .ok()
        .await;
    run.assert_says(&[
        &format!(
            "Rolling back migration {}",
            migration("drop_order_legacy_code")
        ),
        &format!("Running migration {}", migration("drop_order_legacy_code")),
    ]);
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("drop_order_legacy_code")
    );
    diesel(&e2e, Via::Direct, "direct", dir)
        .args(["migration", "run"])
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    // Down: the rename back is a rename too.
    let run = diesel(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "revert", "--all"])
        .fails()
        .await;
    run.assert_says(&[&format!(
        "Rolling back migration {}",
        migration("drop_order_legacy_code")
    )]);
    assert_refused(&run, "rename_order_note", "renaming-column");
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("rename_order_note"),
        "the refused revert is still recorded as applied"
    );
    prefix_file(&rename.join("down.sql"), &override_for("renaming-column"));
    let run = diesel(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "revert", "--all"])
        .ok()
        .await;
    run.assert_says(&[&format!(
        "Rolling back migration {}",
        migration("create_accounts_and_orders")
    )]);
    diesel(&e2e, Via::Direct, "direct", dir)
        .args(["migration", "revert", "--all"])
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    assert_eq!(recorded(&e2e, "via_proxy").await, "");
    assert_eq!(
        tables(&e2e, "via_proxy").await,
        ["__diesel_schema_migrations"]
    );
    assert_eq!(
        e2e.query_text(
            "via_proxy",
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'diesel_%'"
        )
        .await,
        ["0"],
        "diesel's setup migration was reverted too"
    );
}

/// Big tables with a concurrent writer, diesel's default transaction per migration: the index,
/// the foreign key, the unique constraint and NOT NULL are each refused (the rule in diesel's
/// output), `__diesel_schema_migrations` does not record the refused migration and nothing of
/// it is left. The way out (`metadata.toml` with `run_in_transaction = false` beside an
/// `up.sql` holding only that statement) applies it in its safe form: ddlgate rewrites it, the
/// index is valid and the constraints validated, and diesel records it. The writer never waits
/// longer than lock_timeout + 1 s; the end schema equals the final history applied directly.
/// `ddlgate check --tool diesel` blocks exactly the files the proxy refused, and nothing once
/// the ways out are written.
#[tokio::test]
async fn diesel_big_tables_refused_in_transaction_then_run_in_transaction_false() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let work = workdir("diesel");
    let dir = work.path();
    // The first two migrations alone (what the project held when the tables were created).
    let first = dir.join("first");
    for m in &HISTORY[..2] {
        let to = first.join(m);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in ["up.sql", "down.sql"] {
            std::fs::copy(dir.join("migrations").join(m).join(f), to.join(f)).expect("copy");
        }
    }
    for (db, via) in [("via_proxy", Via::Proxy), ("direct", Via::Direct)] {
        diesel(&e2e, via, db, dir)
            .args(["migration", "run", "--migration-dir", "first"])
            .ok()
            .await;
        e2e.fill_accounts_and_orders(db).await;
    }
    let ups: Vec<String> = HISTORY
        .iter()
        .map(|m| format!("migrations/{m}/up.sql"))
        .collect();

    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;
    let mut refused_files = BTreeSet::new();
    for r in &REFUSED {
        let blocks = decided(&e2e, r.rule, Action::Block);
        let run = diesel(&e2e, Via::Proxy, "via_proxy", dir)
            .args(["migration", "run"])
            .fails()
            .await;
        assert_refused(&run, r.name, r.rule);
        assert_eq!(decided(&e2e, r.rule, Action::Block), blocks + 1, "{run}");
        let at = HISTORY
            .iter()
            .position(|m| *m == migration(r.name))
            .expect("in history");
        let before = HISTORY[at - 1].split_once('_').expect("name").1;
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
        refused_files.insert(format!("migrations/{}/up.sql", migration(r.name)));

        // The way out: this migration, whose up.sql holds only this statement, without a
        // transaction. The next run applies it, then stops at the next refusal (or the rename).
        std::fs::write(
            dir.join("migrations")
                .join(migration(r.name))
                .join("metadata.toml"),
            "run_in_transaction = false\n",
        )
        .expect("write metadata.toml");
        let rewrites = decided(&e2e, r.rule, Action::Rewrite);
        let next = diesel(&e2e, Via::Proxy, "via_proxy", dir)
            .args(["migration", "run"])
            .fails()
            .await;
        next.assert_says(&[&format!("Running migration {}", migration(r.name))]);
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
        let recorded_now = recorded(&e2e, "via_proxy").await;
        assert!(
            recorded_now.starts_with(&versions_through(r.name)),
            "{} not recorded: {recorded_now}",
            r.name
        );
        if r.name == "order_total_not_null" {
            // The rename is refused on big tables too; the override lets it through.
            assert_refused(&next, "rename_order_note", "renaming-column");
        }
    }
    refused_files.insert(format!(
        "migrations/{}/up.sql",
        migration("rename_order_note")
    ));
    prefix_file(
        &dir.join("migrations")
            .join(migration("rename_order_note"))
            .join("up.sql"),
        &override_for("renaming-column"),
    );
    diesel(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "run"])
        .ok()
        .await;
    assert_schema_rs(dir);
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        versions_through("drop_order_legacy_code")
    );
    one_query_is_one_transaction(&e2e, dir).await;
    writer.stop_and_check().await;

    diesel(&e2e, Via::Direct, "direct", dir)
        .args(["migration", "run"])
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    // `ddlgate check --tool diesel` agrees: on the files as first written it blocks exactly
    // those the proxy refused; with the ways out written, nothing.
    // diesel never printed the hint; `check` does, with diesel's way out.
    let original = crate::harness::fixtures("diesel");
    let (code, blocked, text) = check("diesel", &original, &ups);
    assert_eq!(code, 1);
    assert_eq!(blocked, refused_files);
    assert!(
        text.contains("diesel `run_in_transaction = false` in the migration's `metadata.toml`, with only this statement in its `up.sql`"),
        "{text}"
    );
    let (code, blocked) = check_blocks("diesel", dir, &ups);
    assert_eq!((code, blocked), (0, BTreeSet::new()));
}

/// A later migration that adds a column and indexes it, both in one `up.sql` with
/// `run_in_transaction = false`: diesel sends the file as one Query, which PostgreSQL runs as
/// one implicit transaction, so the index cannot be built concurrently there. ddlgate refuses it
/// (and `check` says so), nothing of it applies, diesel does not record it. Split as README
/// says (the column in a transactional migration, the index alone in one without a
/// transaction), both apply and the index is built concurrently.
async fn one_query_is_one_transaction(e2e: &E2e, dir: &Path) {
    let m = dir.join("migrations");
    let both = "migrations/2024-01-09-120000_ship_orders/up.sql";
    put(
        &m.join("2024-01-09-120000_ship_orders/metadata.toml"),
        "run_in_transaction = false\n",
    );
    put(
        &dir.join(both),
        "ALTER TABLE orders ADD COLUMN shipped_at timestamptz;\nCREATE INDEX orders_shipped_at_idx ON orders (shipped_at);\n",
    );
    put(
        &m.join("2024-01-09-120000_ship_orders/down.sql"),
        "DROP INDEX orders_shipped_at_idx;\nALTER TABLE orders DROP COLUMN shipped_at;\n",
    );
    let (code, blocked) = check_blocks("diesel", dir, &[both.to_owned()]);
    assert_eq!((code, blocked), (1, BTreeSet::from([both.to_owned()])));
    let rule = "require-concurrent-index-creation";
    let blocks = decided(e2e, rule, Action::Block);
    let run = diesel(e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "run"])
        .fails()
        .await;
    run.assert_says(&[&format!(
        "Failed to run 2024-01-09-120000_ship_orders with: ddlgate blocked this statement (rule {rule}: "
    )]);
    assert_eq!(decided(e2e, rule, Action::Block), blocks + 1);
    let probe = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'shipped_at'";
    assert_eq!(
        e2e.query_text("via_proxy", probe).await,
        ["0"],
        "the ADD COLUMN before the refused index ran in the same implicit transaction"
    );
    assert!(!recorded(e2e, "via_proxy").await.contains("20240109120000"));

    std::fs::remove_file(m.join("2024-01-09-120000_ship_orders/metadata.toml")).expect("rm");
    put(
        &dir.join(both),
        "ALTER TABLE orders ADD COLUMN shipped_at timestamptz;\n",
    );
    put(
        &m.join("2024-01-09-120000_ship_orders/down.sql"),
        "ALTER TABLE orders DROP COLUMN shipped_at;\n",
    );
    let index = "migrations/2024-01-10-120000_index_orders_shipped_at/up.sql";
    put(
        &m.join("2024-01-10-120000_index_orders_shipped_at/metadata.toml"),
        "run_in_transaction = false\n",
    );
    put(
        &dir.join(index),
        "CREATE INDEX orders_shipped_at_idx ON orders (shipped_at);\n",
    );
    put(
        &m.join("2024-01-10-120000_index_orders_shipped_at/down.sql"),
        "DROP INDEX orders_shipped_at_idx;\n",
    );
    let (code, blocked) = check_blocks("diesel", dir, &[both.to_owned(), index.to_owned()]);
    assert_eq!((code, blocked), (0, BTreeSet::new()));
    let rewrites = decided(e2e, rule, Action::Rewrite);
    diesel(e2e, Via::Proxy, "via_proxy", dir)
        .args(["migration", "run"])
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
