//! Which statements of a migration `ddlgate trace` must not run as they are, read from their
//! leading keywords (the lexer's words, so comments and quoting never mislead it): those
//! PostgreSQL refuses inside a transaction block, with the lock each is documented to take, and
//! the file's own transaction control, which would end the trace's transaction.

use crate::check;
use crate::sql::lexer::{LexOptions, Lexer, StatementSpan, TokenKind};

/// Upper-cased words of a statement, at most `max`: `(word, inside parentheses)`.
fn words(source: &[u8], span: &StatementSpan, max: usize) -> Vec<(String, bool)> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for t in Lexer::at(source, span.start, LexOptions::default()).take_while(|t| t.start < span.end)
    {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            TokenKind::Word => {
                out.push((
                    String::from_utf8_lossy(t.text(source)).to_ascii_uppercase(),
                    depth > 0,
                ));
                if out.len() >= max {
                    break;
                }
            }
            _ => {}
        }
    }
    out
}

/// Most words a statement is read for [`not_in_transaction`]: every pattern is decided within
/// them (a DETACH PARTITION … CONCURRENTLY names two relations, each up to three words).
const MAX_WORDS: usize = 24;

/// Whether PostgreSQL refuses the statement inside a transaction block, and if so the lock it
/// is documented to take (PostgreSQL's documentation of each command, and the reference table
/// of lock modes in README "Lock levels").
pub fn not_in_transaction(
    source: &[u8],
    span: &StatementSpan,
    server_version: Option<u32>,
) -> Option<&'static str> {
    let all = words(source, span, MAX_WORDS);
    let top: Vec<&str> = all
        .iter()
        .filter(|(_, nested)| !nested)
        .map(|(w, _)| w.as_str())
        .collect();
    let any = |w: &str| all.iter().any(|(x, _)| x == w);
    const SUE: &str = "ShareUpdateExclusiveLock on the table and its indexes (blocks neither reads \
                       nor writes; waits for transactions that use them)";
    match top.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => Some(
            "ShareUpdateExclusiveLock on the table (blocks neither reads nor writes; waits \
                 for transactions that could use the index)",
        ),
        ["DROP", "INDEX", "CONCURRENTLY", ..] => Some(
            "ShareUpdateExclusiveLock on the table and the index (blocks neither reads nor \
             writes; waits for transactions that use the index)",
        ),
        ["REINDEX", ..] if any("CONCURRENTLY") => Some(SUE),
        ["REINDEX", "SCHEMA" | "DATABASE" | "SYSTEM", ..]
        | ["REINDEX", "VERBOSE", "SCHEMA" | "DATABASE" | "SYSTEM", ..] => Some(
            "ShareLock on each table (blocks writes) and AccessExclusiveLock on each index while \
             it is rebuilt (blocks reads that use it)",
        ),
        ["ALTER", "TABLE", ..]
            if top.windows(2).any(|w| w == ["DETACH", "PARTITION"])
                && matches!(top.last(), Some(&"CONCURRENTLY" | &"FINALIZE")) =>
        {
            Some(
                "ShareUpdateExclusiveLock on the partitioned table and the partition (blocks \
                 neither reads nor writes)",
            )
        }
        ["VACUUM", ..] if any("FULL") => Some(
            "AccessExclusiveLock on each table, rewritten (blocks reads and writes for the \
             whole rewrite)",
        ),
        ["VACUUM", ..] => {
            Some("ShareUpdateExclusiveLock on each table (blocks neither reads nor writes)")
        }
        [
            "CREATE" | "DROP",
            "DATABASE" | "TABLESPACE" | "SUBSCRIPTION",
            ..,
        ]
        | ["ALTER", "SYSTEM", ..]
        | ["DISCARD", "ALL", ..] => Some("no lock on the tables of this database"),
        ["ALTER", "TYPE", ..]
            if server_version.is_some_and(|v| v < 120_000)
                && top.windows(2).any(|w| w == ["ADD", "VALUE"]) =>
        {
            Some("a lock on the enum type only (no table lock)")
        }
        _ => None,
    }
}

/// `BEGIN` for a statement that opens a transaction, `END` for one that ends it (COMMIT,
/// ROLLBACK but not ROLLBACK TO, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED), `None`
/// otherwise: none of them may run in the trace's transaction.
pub(super) fn transaction_end_or_begin(
    source: &[u8],
    span: &StatementSpan,
) -> Option<&'static str> {
    let w = words(source, span, 2);
    let first = w.first().map(|(w, _)| w.as_str())?;
    let second = w.get(1).map(|(w, _)| w.as_str());
    match (first, second) {
        ("BEGIN" | "START", _) => Some("BEGIN"),
        ("COMMIT" | "END" | "ABORT", _) => Some("END"),
        ("ROLLBACK", _) if !check::is_rollback_to(source, span) => Some("END"),
        ("PREPARE", Some("TRANSACTION")) => Some("END"),
        _ => None,
    }
}

/// SAVEPOINT, RELEASE [SAVEPOINT], ROLLBACK TO.
pub(super) fn is_savepoint_control(source: &[u8], span: &StatementSpan) -> bool {
    let w = words(source, span, 1);
    match w.first().map(|(w, _)| w.as_str()) {
        Some("SAVEPOINT" | "RELEASE") => true,
        Some("ROLLBACK") => check::is_rollback_to(source, span),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer;

    fn spans(sql: &str) -> Vec<StatementSpan> {
        let mut out = Vec::new();
        lexer::each_statement(sql.as_bytes(), LexOptions::default(), |s| {
            if s.first.is_some() {
                out.push(s)
            }
        });
        out
    }

    fn refused(sql: &str, version: u32) -> bool {
        let s = spans(sql);
        not_in_transaction(sql.as_bytes(), &s[0], Some(version)).is_some()
    }

    #[test]
    fn statements_refused_in_a_transaction_block() {
        for sql in [
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "create unique index concurrently i on t (x)",
            "DROP INDEX CONCURRENTLY i",
            "REINDEX INDEX CONCURRENTLY i",
            "REINDEX (VERBOSE, CONCURRENTLY) TABLE t",
            "REINDEX SCHEMA s",
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
            "ALTER TABLE p DETACH PARTITION c FINALIZE",
            "VACUUM t",
            "VACUUM (FULL) t",
            "CREATE DATABASE x",
            "ALTER SYSTEM SET work_mem = '1MB'",
        ] {
            assert!(refused(sql, 160_000), "{sql}");
        }
        for sql in [
            "CREATE INDEX i ON t (x)",
            "REINDEX INDEX i",
            "ALTER TABLE p DETACH PARTITION c",
            "CREATE TABLE concurrently (x int)",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "ALTER TYPE mood ADD VALUE 'x'",
        ] {
            assert!(!refused(sql, 160_000), "{sql}");
        }
        assert!(refused("ALTER TYPE mood ADD VALUE 'x'", 110_000));
    }

    #[test]
    fn transaction_control_is_never_run() {
        let kind = |sql: &str| transaction_end_or_begin(sql.as_bytes(), &spans(sql)[0]);
        assert_eq!(kind("BEGIN"), Some("BEGIN"));
        assert_eq!(kind("start transaction"), Some("BEGIN"));
        assert_eq!(kind("COMMIT"), Some("END"));
        assert_eq!(kind("COMMIT PREPARED 'x'"), Some("END"));
        assert_eq!(kind("END"), Some("END"));
        assert_eq!(kind("ABORT"), Some("END"));
        assert_eq!(kind("ROLLBACK"), Some("END"));
        assert_eq!(kind("PREPARE TRANSACTION 'x'"), Some("END"));
        assert_eq!(kind("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(kind("PREPARE q AS SELECT 1"), None);
        let sp = |sql: &str| is_savepoint_control(sql.as_bytes(), &spans(sql)[0]);
        assert!(sp("SAVEPOINT a") && sp("RELEASE a") && sp("ROLLBACK TO a"));
        assert!(!sp("ROLLBACK") && !sp("SELECT 1"));
    }
}
