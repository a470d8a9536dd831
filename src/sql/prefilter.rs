//! The keyword prefilter: one statement's class from its first token, with no parse.
//!
//! The list of commands is PostgreSQL's (sql-commands.html). Anything the list does not know is
//! a DDL candidate, not ordinary traffic: a safety proxy fails closed, so a command added by a
//! newer server (PostgreSQL 19's `REPACK`, say) is looked at rather than waved through. Garbage
//! that is not SQL at all ends up in the same bucket; the server would reject it anyway.

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
}

impl StatementClass {
    pub const ALL: [StatementClass; 4] = [
        StatementClass::Dml,
        StatementClass::Transaction,
        StatementClass::Session,
        StatementClass::DdlCandidate,
    ];

    /// Stable label, used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Dml => "dml",
            StatementClass::Transaction => "transaction",
            StatementClass::Session => "session",
            StatementClass::DdlCandidate => "ddl_candidate",
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
            class => class,
        },
        // `(SELECT 1) UNION (SELECT 2)` is a query; nothing else may start with a parenthesis.
        TokenKind::LParen => StatementClass::Dml,
        _ => StatementClass::DdlCandidate,
    }
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
        assert_eq!(classes("averyveryverylongword"), [DdlCandidate]);
        assert_eq!(classes("DO $$ BEGIN END $$"), [DdlCandidate]);
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
