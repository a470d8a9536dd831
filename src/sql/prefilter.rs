//! The keyword prefilter: one statement's class from its first token, with no parse.
//!
//! The list of commands is PostgreSQL's (sql-commands.html). A statement whose first token is
//! a plain word that starts no PostgreSQL command at all (`selec 1`, a typo) is
//! [`StatementClass::NotACommand`]: every alternative of gram.y's `stmt` (and
//! `TransactionStmtLegacy`) begins with a keyword of [`COMMAND_WORDS`] or `(`, so the server
//! rejects such a statement with its own syntax error (42601) while parsing the message, before
//! any statement of it runs. It is forwarded, and counted. Everything else ddlgate does not know
//! — any other first token (a quoted identifier, `U&"…"`, a string, an operator) and a command
//! keyword whose form ddlgate does not understand — stays a DDL candidate: a safety proxy fails
//! closed.

use super::lexer::{StatementSpan, TokenKind};

/// What a statement is, as far as its first keyword tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementClass {
    /// Reads and writes of rows, cursors, prepared-statement execution, LISTEN/NOTIFY, SHOW…:
    /// never DDL, forwarded without further analysis.
    Dml,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …
    Transaction,
    /// SET / RESET: session settings (ddlgate tracks some of them, e.g. `lock_timeout`).
    Session,
    /// Anything that may change the schema or take strong locks (CREATE, ALTER, DROP, TRUNCATE,
    /// REINDEX, VACUUM, LOCK, DO, …) and anything unrecognised.
    DdlCandidate,
    /// A plain word that starts no PostgreSQL command (a typo): the server answers it with a
    /// syntax error, so it is forwarded untouched (and counted).
    NotACommand,
}

impl StatementClass {
    pub const ALL: [StatementClass; 5] = [
        StatementClass::Dml,
        StatementClass::Transaction,
        StatementClass::Session,
        StatementClass::DdlCandidate,
        StatementClass::NotACommand,
    ];

    /// Stable label, used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Dml => "dml",
            StatementClass::Transaction => "transaction",
            StatementClass::Session => "session",
            StatementClass::DdlCandidate => "ddl_candidate",
            StatementClass::NotACommand => "not_a_command",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Classifies a non-empty statement of `sql` from its first token.
///
/// A statement that starts like DML but may call dblink or run `COPY … PROGRAM` (a byte search,
/// see [`super::side_effects`]) is a DDL candidate: those act where ddlgate cannot look, and
/// only a full look tells them from ordinary traffic.
pub fn classify(sql: &[u8], stmt: &StatementSpan) -> StatementClass {
    let Some(first) = stmt.first else {
        return StatementClass::Dml;
    };
    match first.kind {
        TokenKind::Word => match classify_word(first.text(sql)) {
            StatementClass::Dml
                if super::side_effects::suspicious(
                    first.text(sql),
                    sql.get(first.start..stmt.end).unwrap_or_default(),
                ) =>
            {
                StatementClass::DdlCandidate
            }
            StatementClass::DdlCandidate if !starts_a_command(first.text(sql)) => {
                StatementClass::NotACommand
            }
            class => class,
        },
        // `(SELECT 1) UNION (SELECT 2)` is a query; nothing else may start with a parenthesis.
        TokenKind::LParen => StatementClass::Dml,
        _ => StatementClass::DdlCandidate,
    }
}

/// Every keyword that begins an alternative of PostgreSQL's `stmt` or `TransactionStmtLegacy`
/// rule (src/backend/parser/gram.y, PostgreSQL 12 to 18), plus the commands of PostgreSQL 19
/// (`REPACK`, `WAIT FOR`) so that a newer server's statement is looked at rather than waved
/// through. `WITH`, `VALUES`, `TABLE` and `(` start queries; `ANALYSE` is `ANALYZE`'s spelling;
/// `SECURITY LABEL`, `IMPORT FOREIGN SCHEMA`, `REASSIGN OWNED`, `REFRESH MATERIALIZED VIEW` start
/// with their first word.
pub const COMMAND_WORDS: &[&str] = &[
    "ABORT",
    "ALTER",
    "ANALYSE",
    "ANALYZE",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "CLOSE",
    "CLUSTER",
    "COMMENT",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DISCARD",
    "DO",
    "DROP",
    "END",
    "EXECUTE",
    "EXPLAIN",
    "FETCH",
    "GRANT",
    "IMPORT",
    "INSERT",
    "LISTEN",
    "LOAD",
    "LOCK",
    "MERGE",
    "MOVE",
    "NOTIFY",
    "PREPARE",
    "REASSIGN",
    "REFRESH",
    "REINDEX",
    "RELEASE",
    "REPACK",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SAVEPOINT",
    "SECURITY",
    "SELECT",
    "SET",
    "SHOW",
    "START",
    "TABLE",
    "TRUNCATE",
    "UNLISTEN",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WAIT",
    "WITH",
];

/// The newest PostgreSQL whose commands [`COMMAND_WORDS`] lists (`server_version_num`
/// below 200000). A newer server may have commands the list does not know, so against it
/// (or a server whose version is unknown) no word counts as "not a command".
pub const COMMANDS_KNOWN_BEFORE: u32 = 200_000;

/// `class` as it stands against a server of `server_version` (`server_version_num`): a
/// [`StatementClass::NotACommand`] is a DDL candidate again unless the server is one whose
/// commands are all known.
pub fn for_server(class: StatementClass, server_version: Option<u32>) -> StatementClass {
    match class {
        StatementClass::NotACommand
            if server_version.is_none_or(|v| v >= COMMANDS_KNOWN_BEFORE) =>
        {
            StatementClass::DdlCandidate
        }
        class => class,
    }
}

/// Whether `word` (an unquoted word token) may begin a PostgreSQL command. Only a word the
/// server's scanner reads as one identifier is ever ruled out: PostgreSQL's `{identifier}` is
/// `[A-Za-z\200-\377_][A-Za-z\200-\377_0-9$]*`, and the lexer's words follow it. Keywords
/// are ASCII, so a word with any other byte is no keyword either.
pub fn starts_a_command(word: &[u8]) -> bool {
    COMMAND_WORDS
        .iter()
        .any(|k| k.as_bytes().eq_ignore_ascii_case(word))
}

/// Classifies a first keyword (any ASCII case).
pub fn classify_word(word: &[u8]) -> StatementClass {
    // Keywords are at most 12 bytes; fold into a fixed buffer instead of allocating.
    let mut buf = [0u8; 12];
    if word.len() > buf.len() {
        return StatementClass::DdlCandidate;
    }
    let folded = &mut buf[..word.len()];
    folded.copy_from_slice(word);
    folded.make_ascii_uppercase();
    match &*folded {
        b"SELECT" | b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" | b"WITH" | b"VALUES"
        | b"TABLE" | b"COPY" | b"FETCH" | b"MOVE" | b"CLOSE" | b"DECLARE" | b"EXECUTE"
        | b"PREPARE" | b"DEALLOCATE" | b"EXPLAIN" | b"CALL" | b"LISTEN" | b"NOTIFY"
        | b"UNLISTEN" | b"SHOW" | b"CHECKPOINT" | b"LOAD" | b"DISCARD" => StatementClass::Dml,
        b"BEGIN" | b"START" | b"COMMIT" | b"END" | b"ROLLBACK" | b"ABORT" | b"SAVEPOINT"
        | b"RELEASE" => StatementClass::Transaction,
        b"SET" | b"RESET" => StatementClass::Session,
        _ => StatementClass::DdlCandidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::{LexOptions, split_statements};

    fn classes(sql: &str) -> Vec<StatementClass> {
        let sql = sql.as_bytes();
        split_statements(sql, LexOptions::default())
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| classify(sql, s))
            .collect()
    }

    #[test]
    fn dml_is_recognised_in_any_case_and_after_comments() {
        use StatementClass::*;
        assert_eq!(classes("select 1"), [Dml]);
        assert_eq!(
            classes("/* hi */ -- there\n  InSeRt INTO t VALUES (1)"),
            [Dml]
        );
        assert_eq!(classes("(SELECT 1) UNION (SELECT 2)"), [Dml]);
        assert_eq!(classes("WITH x AS (SELECT 1) SELECT * FROM x"), [Dml]);
    }

    #[test]
    fn ddl_and_unknown_are_candidates() {
        use StatementClass::*;
        assert_eq!(classes("CREATE INDEX i ON t (x)"), [DdlCandidate]);
        assert_eq!(classes("select 1; drop table t"), [Dml, DdlCandidate]);
        assert_eq!(classes("REPACK t"), [DdlCandidate]);
        assert_eq!(classes("'just a string'"), [DdlCandidate]);
        assert_eq!(classes("DO $$ BEGIN END $$"), [DdlCandidate]);
        // Command keywords in forms nobody understands stay candidates, whatever follows.
        for sql in [
            "ALTER FROBNICATE t",
            "security label on table t is 'x'",
            "/* c */ -- d\n Import foreign schema s from server x into public",
            "REASSIGN OWNED BY a TO b",
            "wait for lsn '0/1'",
            "ANALYSE t",
        ] {
            assert_eq!(classes(sql), [DdlCandidate], "{sql}");
        }
        // Quoted identifiers, U& identifiers and other tokens are not plain words.
        for sql in [
            "\"selec\" 1",
            "\"DROP\" TABLE t",
            "U&\"d\\0072op\" TABLE t",
            "$$x$$",
            "+ 1",
        ] {
            assert_eq!(classes(sql), [DdlCandidate], "{sql}");
        }
    }

    #[test]
    fn typos_are_not_commands() {
        use StatementClass::*;
        assert_eq!(classes("selec 1"), [NotACommand]);
        assert_eq!(classes("/* x */ averyveryverylongword"), [NotACommand]);
        assert_eq!(classes("créate table t ()"), [NotACommand]);
        assert_eq!(
            classes("SELECT 1; droptable t; DROP TABLE t"),
            [Dml, NotACommand, DdlCandidate]
        );
        // `U&` not followed by a quote is the identifier `U`.
        assert_eq!(classes("U & 1"), [NotACommand]);
    }

    #[test]
    fn dml_that_acts_out_of_sight_is_a_candidate() {
        use StatementClass::*;
        assert_eq!(
            classes("SELECT 1; SELECT dblink_exec('c', 'DROP TABLE t'); COPY t FROM PROGRAM 'x'"),
            [Dml, DdlCandidate, DdlCandidate]
        );
        assert_eq!(classes("COPY t FROM STDIN; SELECT a FROM t"), [Dml, Dml]);
    }

    #[test]
    fn transaction_and_session() {
        use StatementClass::*;
        assert_eq!(
            classes("BEGIN; SET lock_timeout = '1s'; COMMIT"),
            [Transaction, Session, Transaction]
        );
    }
}
