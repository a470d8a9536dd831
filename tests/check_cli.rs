//! `ddlgate check` as CI runs it: the real binary over migration files, its exit status and
//! its three output formats.

mod common;

use std::path::Path;
use std::process::Output;

use common::binary::run_cli as ddlgate;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).expect("write migration");
}

#[test]
fn exit_status_follows_the_worst_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "001_safe.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text);\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n",
    );
    // Rewritten by the proxy: reported, but not a failure.
    write(
        dir.path(),
        "002_rewrite.sql",
        "-- add an index\nCREATE INDEX users_email2 ON users (email);\n",
    );
    write(
        dir.path(),
        "003_block.sql",
        "BEGIN;\nALTER TABLE users ADD COLUMN n bigserial;\nCOMMIT;\n",
    );
    let ok = ddlgate(&["check", "001_safe.sql"], dir.path());
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("0 finding(s)"), "{}", stdout(&ok));

    let rw = ddlgate(&["check", "002_rewrite.sql"], dir.path());
    assert_eq!(rw.status.code(), Some(0), "{}", stdout(&rw));
    let out = stdout(&rw);
    assert!(
        out.contains("002_rewrite.sql:2:1: rewrite require-concurrent-index-creation"),
        "{out}"
    );

    // The same file as a migration tool runs it (one transaction): cannot be rewritten.
    let tx = ddlgate(
        &["check", "--assume-in-transaction", "002_rewrite.sql"],
        dir.path(),
    );
    assert_eq!(tx.status.code(), Some(1), "{}", stdout(&tx));
    assert!(
        stdout(&tx).contains("disable_ddl_transaction!"),
        "{}",
        stdout(&tx)
    );

    let bad = ddlgate(&["check", "001_safe.sql", "003_block.sql"], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    let out = stdout(&bad);
    assert!(
        out.contains("003_block.sql:2:1: block adding-auto-increment-column"),
        "{out}"
    );
    assert!(out.contains("hint: "), "{out}");
}

#[test]
fn versions_overrides_and_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "reindex.sql", "REINDEX INDEX users_email;\n");
    write(
        dir.path(),
        "override.sql",
        "/* ddlgate:allow ban-drop-column reason=\"column unused since v42\" */\nALTER TABLE users DROP COLUMN legacy;\n",
    );
    write(
        dir.path(),
        "typo.sql",
        "/* ddlgate:allow ban-drop-colum reason=\"x\" */ ALTER TABLE users DROP COLUMN legacy;\n",
    );
    // REINDEX CONCURRENTLY exists from PostgreSQL 12: before that, no rewrite, a block.
    assert_eq!(
        ddlgate(&["check", "--pg-version", "15", "reindex.sql"], dir.path())
            .status
            .code(),
        Some(0)
    );
    let old = ddlgate(&["check", "--pg-version", "11", "reindex.sql"], dir.path());
    assert_eq!(old.status.code(), Some(1), "{}", stdout(&old));

    let json = ddlgate(
        &["check", "--format", "json", "override.sql", "typo.sql"],
        dir.path(),
    );
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(doc["blocked"], true);
    let findings = doc["findings"].as_array().expect("findings");
    let allowed = findings
        .iter()
        .find(|f| f["file"] == "override.sql")
        .expect("override.sql reported");
    assert_eq!(allowed["rule"], "ban-drop-column");
    assert_eq!(allowed["action"], "allow");
    assert_eq!(allowed["override_reason"], "column unused since v42");
    let typo = findings
        .iter()
        .find(|f| f["file"] == "typo.sql")
        .expect("typo.sql reported");
    assert_eq!(
        (typo["rule"].as_str(), typo["action"].as_str()),
        (Some("invalid-override"), Some("block"))
    );

    let gh = ddlgate(&["check", "--format", "github", "typo.sql"], dir.path());
    let out = stdout(&gh);
    assert!(
        out.starts_with("::error file=typo.sql,line=1,col=47,title=ddlgate invalid-override::"),
        "{out}"
    );
}

#[test]
fn usage_and_read_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        ddlgate(&["check", "missing.sql"], dir.path()).status.code(),
        Some(2)
    );
    write(dir.path(), "m.sql", "SELECT 1;\n");
    assert_eq!(
        ddlgate(&["check", "--profile", "nobody", "m.sql"], dir.path())
            .status
            .code(),
        Some(2)
    );
}

/// Writes `sql` at `rel` under `dir`, creating directories.
fn put(dir: &Path, rel: &str, sql: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, sql).expect("write fixture");
}

const CIC: &str = "CREATE INDEX CONCURRENTLY users_email ON users (email);\n";
const IN_TX: &str = "ban-concurrent-index-creation-in-transaction";

/// Runs `args` and returns (exit status, stdout).
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = ddlgate(args, dir);
    (o.status.code(), stdout(&o))
}

#[test]
fn sqlx_no_transaction_first_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(d, "20240101_tx.sql", CIC);
    put(d, "20240102_notx.sql", &format!("-- no-transaction\n{CIC}"));
    put(
        d,
        "20240103_notx_two.sql",
        &format!("-- no-transaction\nCREATE TABLE a (x int);\n{CIC}"),
    );
    let (code, out) = run(d, &["check", "--tool", "sqlx", "20240101_tx.sql"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("20240101_tx.sql:1:1: block {IN_TX}")),
        "{out}"
    );
    let (code, out) = run(d, &["check", "--tool", "sqlx", "20240102_notx.sql"]);
    assert_eq!(code, Some(0), "{out}");
    // The header is detected without --tool: it wins over the assumption for other files.
    assert_eq!(
        run(
            d,
            &["check", "--assume-in-transaction", "20240102_notx.sql"]
        )
        .0,
        Some(0)
    );
    // sqlx sends the file as one Query: two statements share an implicit transaction.
    let (code, out) = run(d, &["check", "--tool", "sqlx", "20240103_notx_two.sql"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("20240103_notx_two.sql:3:1: block {IN_TX}")),
        "{out}"
    );
}

#[test]
fn diesel_metadata_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(d, "migrations/2024-01-01-000000_tx/up.sql", CIC);
    put(d, "migrations/2024-01-02-000000_notx/up.sql", CIC);
    put(
        d,
        "migrations/2024-01-02-000000_notx/metadata.toml",
        "# diesel\nrun_in_transaction = false\n",
    );
    put(d, "migrations/2024-01-03-000000_bad/up.sql", CIC);
    put(
        d,
        "migrations/2024-01-03-000000_bad/metadata.toml",
        "run_in_transaction = nope\n",
    );
    // Detected from the layout (up.sql in a numbered directory).
    let (code, out) = run(d, &["check", "migrations/2024-01-01-000000_tx/up.sql"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(IN_TX), "{out}");
    let (code, out) = run(
        d,
        &[
            "check",
            "--tool",
            "diesel",
            "migrations/2024-01-02-000000_notx/up.sql",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        run(d, &["check", "migrations/2024-01-03-000000_bad/up.sql"]).0,
        Some(2)
    );
}

#[test]
fn dbmate_sections_each_with_their_transaction_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(
        d,
        "db/migrations/20240101_idx.sql",
        &format!(
            "-- migrate:up transaction:false\n{CIC}\n-- migrate:down\nDROP INDEX CONCURRENTLY users_email;\n"
        ),
    );
    let (code, out) = run(d, &["check", "db/migrations/20240101_idx.sql"]);
    assert_eq!(code, Some(1), "{out}");
    // The up section runs outside a transaction (nothing reported on line 2); the down
    // section in dbmate's default transaction, reported at its own line.
    assert!(!out.contains(":2:1:"), "{out}");
    assert!(out.contains("20240101_idx.sql:5:1: block"), "{out}");
    let (code, out) = run(
        d,
        &[
            "check",
            "--tool",
            "dbmate",
            "--format",
            "json",
            "db/migrations/20240101_idx.sql",
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["findings"].as_array().map(Vec::len), Some(1), "{out}");
}

#[test]
fn golang_migrate_runs_a_file_as_one_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(d, "1_idx.up.sql", CIC);
    put(
        d,
        "2_two.up.sql",
        &format!("CREATE TABLE a (x int);\n{CIC}"),
    );
    let tool = ["check", "--tool", "golang-migrate"];
    assert_eq!(run(d, &[&tool[..], &["1_idx.up.sql"]].concat()).0, Some(0));
    let (code, out) = run(d, &[&tool[..], &["2_two.up.sql"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("2_two.up.sql:2:1: block {IN_TX}")),
        "{out}"
    );
    // psql -f sends the same file statement by statement: nothing to block.
    assert_eq!(
        run(d, &["check", "--tool", "psql", "2_two.up.sql"]).0,
        Some(0)
    );
}

#[test]
fn flyway_script_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(d, "sql/V1__idx.sql", CIC);
    put(d, "sql/V2__idx_notx.sql", CIC);
    put(
        d,
        "sql/V2__idx_notx.sql.conf",
        "executeInTransaction=false\n",
    );
    put(d, "sql/V3__idx_tx.sql", CIC);
    put(d, "sql/V3__idx_tx.sql.conf", "executeInTransaction=true\n");
    put(
        d,
        "sql/V4__table.sql",
        "BEGIN;\nCREATE INDEX users_name ON users (name);\nCOMMIT;\n",
    );
    put(
        d,
        "sql/V5__reindex.sql",
        "REINDEX TABLE CONCURRENTLY users;\n",
    );
    // Detected from the name. Flyway 9+ runs a script with CREATE INDEX CONCURRENTLY (a
    // statement its PostgreSQL parser knows cannot run in a transaction) outside one,
    // statement by statement: nothing to report.
    let (code, out) = run(d, &["check", "sql/V1__idx.sql"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(d, &["check", "--tool", "flyway", "sql/V2__idx_notx.sql"]);
    assert_eq!(code, Some(0), "{out}");
    // An explicit executeInTransaction=true wins over the detection: Flyway then sends it in
    // its transaction, where PostgreSQL refuses it.
    let (code, out) = run(d, &["check", "--tool", "flyway", "sql/V3__idx_tx.sql"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(IN_TX), "{out}");
    // Nothing detected: Flyway's transaction, in which the index build cannot be rewritten.
    let (code, out) = run(d, &["check", "--tool", "flyway", "sql/V4__table.sql"]);
    assert_eq!(code, Some(1), "{out}");
    // REINDEX … CONCURRENTLY is not among what Flyway detects: it stays in the transaction.
    let (code, out) = run(d, &["check", "--tool", "flyway", "sql/V5__reindex.sql"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("transaction"), "{out}");
}

#[test]
fn psql_with_and_without_single_transaction_and_how_flags_combine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(d, "m.sql", CIC);
    assert_eq!(run(d, &["check", "--tool", "psql", "m.sql"]).0, Some(0));
    assert_eq!(run(d, &["check", "--tool", "psql-1", "m.sql"]).0, Some(1));
    // --assume-in-transaction is for files no tool claims; with an explicit tool it is a
    // usage error rather than silently one or the other.
    assert_eq!(
        run(
            d,
            &[
                "check",
                "--tool",
                "sqlx",
                "--assume-in-transaction",
                "m.sql"
            ]
        )
        .0,
        Some(2)
    );
    assert_eq!(
        run(
            d,
            &[
                "check",
                "--tool",
                "auto",
                "--assume-in-transaction",
                "m.sql"
            ]
        )
        .0,
        Some(1)
    );
    // Under auto, a file whose layout names a tool follows the tool, the rest the flag.
    put(d, "V1__idx.sql", CIC);
    put(d, "V1__idx.sql.conf", "executeInTransaction = false\n");
    let (code, out) = run(
        d,
        &["check", "--assume-in-transaction", "V1__idx.sql", "m.sql"],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("m.sql:1:1: block {IN_TX}")), "{out}");
    assert!(!out.contains("V1__idx.sql:"), "{out}");
}

/// `--style` adds squawk's opt-in type and naming preferences as warnings (exit 0); without it
/// they say nothing, and a configured action wins over the flag's warn.
#[test]
fn style_rules_run_only_with_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "001_users.sql",
        "CREATE TABLE users (id serial PRIMARY KEY, name varchar(40), seen timestamp, code char(2));\n",
    );
    let plain = ddlgate(&["check", "001_users.sql"], dir.path());
    assert_eq!(plain.status.code(), Some(0), "{}", stdout(&plain));
    assert!(
        stdout(&plain).contains("0 finding(s)"),
        "{}",
        stdout(&plain)
    );

    let styled = ddlgate(&["check", "--style", "001_users.sql"], dir.path());
    assert_eq!(styled.status.code(), Some(0), "{}", stdout(&styled));
    let out = stdout(&styled);
    for rule in [
        "prefer-identity",
        "prefer-bigint-over-int",
        "prefer-text-field",
        "prefer-timestamptz",
        "ban-char-field",
        "prefer-robust-stmts",
        "require-table-schema",
    ] {
        assert!(out.contains(&format!("warn {rule}:")), "{rule}: {out}");
    }
    assert!(out.contains("0 would be blocked"), "{out}");

    // A team that wants one of them enforced says so in the configuration.
    write(
        dir.path(),
        "ddlgate.toml",
        "[policy.rules]\nprefer-identity = \"block\"\n",
    );
    let strict = ddlgate(
        &["--config", "ddlgate.toml", "check", "001_users.sql"],
        dir.path(),
    );
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
    let out = stdout(&strict);
    assert!(out.contains("block prefer-identity:"), "{out}");
    assert!(!out.contains("prefer-text-field"), "{out}");
}
