//! psql, the tool every other one falls back to: a history of plain SQL files applied with
//! `psql -1 -f` (one transaction per file, as most tools run a migration) and with `psql -f`
//! (statement by statement, autocommit).

use std::path::{Path, PathBuf};

use crate::common::PgCluster;
use crate::harness::{E2e, Run, Tool, Via, Writer, fixtures};

const UP: [&str; 8] = [
    "001_create_tables.sql",
    "002_add_status.sql",
    "003_index_status.sql",
    "004_fk_account.sql",
    "005_unique_email.sql",
    "006_total_not_null.sql",
    "007_rename_note.sql",
    "008_drop_legacy.sql",
];

/// The writer: one short UPDATE of a row of the big table.
const WRITE: &str = "UPDATE orders SET total = total + 1 WHERE id = 1 + (random() * 999)::int";

fn psql(e2e: &E2e, via: Via, db: &str, single_transaction: bool, file: &Path) -> Tool {
    let mut tool = Tool::new(PgCluster::psql_path())
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(e2e.conninfo(via, db));
    if single_transaction {
        tool = tool.arg("-1");
    }
    tool.arg("-f").arg(file)
}

/// The override a block's hint ends with (`/* ddlgate:allow rule reason="…" */`), with a real
/// reason written in: what a user copies from the message.
pub fn override_from(run: &Run) -> String {
    let text = run.text();
    let start = text
        .find("/* ddlgate:allow ")
        .unwrap_or_else(|| panic!("no override comment in:\n{run}"));
    let end = start
        + text[start..]
            .find("*/")
            .unwrap_or_else(|| panic!("unterminated override in:\n{run}"))
        + 2;
    text[start..end].replace(
        "reason=\"…\"",
        "reason=\"e2e: the application no longer reads it\"",
    )
}

/// Writes `file` with `prefix` on a line of its own before its contents, into `dir`.
fn with_prefix(dir: &Path, file: &Path, prefix: &str) -> PathBuf {
    let body = std::fs::read_to_string(file).expect("read migration");
    let out = dir.join(file.file_name().expect("file name"));
    std::fs::write(&out, format!("{prefix}\n{body}")).expect("write migration");
    out
}

/// Fresh tables (created by the first migration, never analyzed), one transaction per file:
/// every migration applies as written, except the rename, which is refused with the rule and
/// the override that allows it; with that override it applies too. The whole down path applies
/// the same way. At each end the schema equals the one the same files give applied directly.
#[tokio::test]
async fn psql_single_transaction_fresh_tables() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let edited = tempfile::tempdir().expect("tempdir");
    let up = fixtures("psql").join("up");
    let down = fixtures("psql").join("down");

    let mut applied = Vec::new();
    for name in UP {
        let file = up.join(name);
        let run = psql(&e2e, Via::Proxy, "via_proxy", true, &file).run().await;
        let file = if name == "007_rename_note.sql" {
            assert!(!run.success(), "the rename must be refused:\n{run}");
            run.assert_says(&[
                "ddlgate blocked this statement",
                "renaming-column",
                "ddlgate:allow renaming-column",
            ]);
            let edited = with_prefix(edited.path(), &file, &override_from(&run));
            let run = psql(&e2e, Via::Proxy, "via_proxy", true, &edited)
                .ok()
                .await;
            run.assert_silent_on(&["ERROR"]);
            edited
        } else {
            assert!(run.success(), "{name} must apply on fresh tables:\n{run}");
            run.assert_silent_on(&["ERROR", "DG00"]);
            file
        };
        psql(&e2e, Via::Direct, "direct", true, &file).ok().await;
        applied.push(file);
    }
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    for name in UP.iter().rev() {
        let file = down.join(name);
        let run = psql(&e2e, Via::Proxy, "via_proxy", true, &file).run().await;
        let file = if *name == "007_rename_note.sql" {
            assert!(!run.success(), "renaming back is a rename too:\n{run}");
            run.assert_says(&["renaming-column"]);
            let edited = with_prefix(edited.path(), &file, &override_from(&run));
            psql(&e2e, Via::Proxy, "via_proxy", true, &edited)
                .ok()
                .await;
            edited
        } else {
            assert!(
                run.success(),
                "down {name} must apply on fresh tables:\n{run}"
            );
            file
        };
        psql(&e2e, Via::Direct, "direct", true, &file).ok().await;
    }
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    let left = e2e
        .query_text(
            "via_proxy",
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        )
        .await;
    assert_eq!(left, ["0"], "the down path leaves nothing behind");
}

/// Big tables (above the small-table thresholds), statement by statement (`psql -f`, no
/// transaction): the index, the foreign key, the unique constraint and NOT NULL run in their
/// safe forms (NOTICEs name the rules), a writer on the table never waits longer than the
/// guard's lock_timeout + 1 s, and the end schema equals the direct one.
#[tokio::test]
async fn psql_per_statement_big_tables() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let edited = tempfile::tempdir().expect("tempdir");
    let up = fixtures("psql").join("up");

    for db in ["via_proxy", "direct"] {
        let via = if db == "direct" {
            Via::Direct
        } else {
            Via::Proxy
        };
        psql(&e2e, via, db, false, &up.join(UP[0])).ok().await;
        e2e.fill_accounts_and_orders(db).await;
    }
    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;
    let expect_notice = [
        ("002_add_status.sql", None),
        (
            "003_index_status.sql",
            Some("require-concurrent-index-creation"),
        ),
        ("004_fk_account.sql", Some("adding-foreign-key-constraint")),
        ("005_unique_email.sql", Some("disallowed-unique-constraint")),
        ("006_total_not_null.sql", Some("adding-not-nullable-field")),
    ];
    for (name, rule) in expect_notice {
        let file = up.join(name);
        let run = psql(&e2e, Via::Proxy, "via_proxy", false, &file).ok().await;
        run.assert_silent_on(&["ERROR"]);
        if let Some(rule) = rule {
            run.assert_says(&["NOTICE:  ddlgate", rule]);
        }
        psql(&e2e, Via::Direct, "direct", false, &file).ok().await;
    }
    let file = up.join("007_rename_note.sql");
    let run = psql(&e2e, Via::Proxy, "via_proxy", false, &file)
        .fails()
        .await;
    run.assert_says(&["ddlgate blocked this statement", "renaming-column"]);
    let file = with_prefix(edited.path(), &file, &override_from(&run));
    psql(&e2e, Via::Proxy, "via_proxy", false, &file).ok().await;
    psql(&e2e, Via::Direct, "direct", false, &file).ok().await;
    let file = up.join("008_drop_legacy.sql");
    let run = psql(&e2e, Via::Proxy, "via_proxy", false, &file).ok().await;
    run.assert_says(&["WARNING", "ban-drop-column"]);
    psql(&e2e, Via::Direct, "direct", false, &file).ok().await;

    writer.stop_and_check().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
}

/// Big tables, one transaction per file (`psql -1 -f`): the safe forms cannot run inside a
/// transaction, so the index, the foreign key, the unique constraint and NOT NULL are refused
/// (DG001, the rule, the hint with psql's way out), and nothing of the refused file is left.
/// Taking the way out the hint gives (the file without `-1`) applies it safely. The writer never
/// waits longer than lock_timeout + 1 s.
#[tokio::test]
async fn psql_single_transaction_big_tables() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    let up = fixtures("psql").join("up");
    psql(&e2e, Via::Proxy, "via_proxy", true, &up.join(UP[0]))
        .ok()
        .await;
    e2e.fill_accounts_and_orders("via_proxy").await;
    psql(&e2e, Via::Proxy, "via_proxy", true, &up.join(UP[1]))
        .ok()
        .await;
    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;
    let refused = [
        (
            "003_index_status.sql",
            "require-concurrent-index-creation",
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_status_idx'",
        ),
        (
            "004_fk_account.sql",
            "adding-foreign-key-constraint",
            "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_account_id_fkey'",
        ),
        (
            "005_unique_email.sql",
            "disallowed-unique-constraint",
            "SELECT count(*) FROM pg_class WHERE relname = 'accounts_email_key'",
        ),
        (
            "006_total_not_null.sql",
            "adding-not-nullable-field",
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'total' AND attnotnull",
        ),
    ];
    for (name, rule, probe) in refused {
        let file = up.join(name);
        let run = psql(&e2e, Via::Proxy, "via_proxy", true, &file)
            .fails()
            .await;
        run.assert_says(&["ddlgate blocked this statement", rule, "HINT:", "psql"]);
        assert_eq!(
            e2e.query_text("via_proxy", probe).await,
            ["0"],
            "{name} left something behind after its refusal"
        );
        let run = psql(&e2e, Via::Proxy, "via_proxy", false, &file).ok().await;
        run.assert_says(&["NOTICE:  ddlgate", rule]);
        assert_eq!(
            e2e.query_text("via_proxy", probe).await,
            ["1"],
            "{name} applied without -1"
        );
    }
    writer.stop_and_check().await;
}
