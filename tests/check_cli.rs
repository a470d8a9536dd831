//! `ddlgate check` as CI runs it: the real binary over migration files, its exit status and
//! its three output formats.

use std::path::Path;
use std::process::{Command, Output};

fn ddlgate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("DDLGATE_CONFIG")
        .output()
        .expect("run ddlgate")
}

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
