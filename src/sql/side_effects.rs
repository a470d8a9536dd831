//! Statements that look like ordinary traffic but act where ddlgate cannot see: SQL run from a
//! string on another connection (`dblink_exec`, `dblink`, `dblink_send_query`, … inside a
//! SELECT) and `COPY … FROM / TO PROGRAM` (a shell command run as the server's OS user).
//!
//! The prefilter forwards reads and writes of rows without parsing them; that is what keeps the
//! hot path cheap. These statements start with a DML keyword, so the prefilter asks
//! [`suspicious`] — a case-insensitive byte search, no lexing — whether one might be such a
//! statement, and sends those (only) on as DDL candidates. There [`understand`], which lexes with
//! the session's real options, decides from the tokens:
//!
//! - an identifier containing `dblink` followed by `(` is a call ddlgate cannot verify
//!   ([`DdlKind::RemoteSql`]): the SQL string runs on a connection the proxy never sees;
//! - a `U&"…"` identifier could spell any function name with escapes: not understood
//!   ([`Understood::Unknown`], fail closed and counted like any unparsed DDL);
//! - `COPY … { FROM | TO } PROGRAM` is [`DdlKind::CopyProgram`];
//! - anything else (the word in a string or a comment, a column called `dblink_id`) is the
//!   harmless statement it looked like, `Other { tag }` with its DML command word.
//!
//! A function that wraps dblink (created before, or by someone ddlgate does not see) is beyond
//! any proxy: the call looks like any other function call.

use super::lexer::{LexOptions, Lexer, Token, TokenKind};
use super::prefilter::{StatementClass, classify_word};
use super::statement::{Ddl, DdlKind, Understood};

/// The needle for the remote-SQL functions (dblink's every function name contains it).
const DBLINK: &[u8] = b"dblink";

/// Whether a statement the prefilter classified as DML by its first keyword `first` may run
/// SQL or a program out of ddlgate's sight, from its bytes alone: `dblink` in any case, a
/// `U&"` identifier, or (for COPY) the word `program`. False positives are fine (the statement
/// is then understood and passes); false negatives are not.
pub fn suspicious(first: &[u8], text: &[u8]) -> bool {
    // One pass over the bytes for both needles, anchored on rarer bytes than `d` (which hits on
    // every `id` and `AND`): `b`/`B` may be the second byte of `dblink`, `&` the middle of `U&"`.
    memchr::memchr3_iter(b'b', b'B', b'&', text).any(|at| {
        if text[at] == b'&' {
            at > 0 && text[at - 1].eq_ignore_ascii_case(&b'u') && text.get(at + 1) == Some(&b'"')
        } else {
            at.checked_sub(1)
                .and_then(|from| text.get(from..from + DBLINK.len()))
                .is_some_and(|w| w.eq_ignore_ascii_case(DBLINK))
        }
    }) || (first.eq_ignore_ascii_case(b"COPY") && contains_ci(text, b"program"))
}

/// Whether `sql[start..end]` may call `set_config` (which changes any setting, those that change
/// how SQL is lexed and how names resolve included): by name, as the quoted identifier
/// `"set_config"`, or through a `U&"…"` identifier, whose escapes could spell it. A byte test
/// first — most statements never mention either, and are not lexed at all — then the tokens, so
/// the word in a string or a comment does not count.
pub fn may_call_set_config(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> bool {
    let Some(text) = sql.get(start..end) else {
        return false;
    };
    // One search for both: the `_` of `set_config`, the `&` of `U&"`.
    let mentioned = memchr::memchr2_iter(b'_', b'&', text).any(|at| {
        if text[at] == b'_' {
            at.checked_sub(3)
                .and_then(|from| text.get(from..from + SET_CONFIG.len()))
                .is_some_and(|w| w.eq_ignore_ascii_case(SET_CONFIG))
        } else {
            at > 0 && text[at - 1].eq_ignore_ascii_case(&b'u') && text.get(at + 1) == Some(&b'"')
        }
    });
    if !mentioned {
        return false;
    }
    Lexer::at(sql, start, opts)
        .take_while(|t| t.start < end)
        .any(|t| match t.kind {
            TokenKind::Word => t.is_word(sql, "set_config"),
            TokenKind::QuotedIdent => {
                let text = t.text(sql);
                text.get(1..text.len().saturating_sub(1))
                    .is_some_and(|inner| inner.eq_ignore_ascii_case(SET_CONFIG))
                    || text.starts_with(b"U&")
                    || text.starts_with(b"u&")
            }
            _ => false,
        })
}

/// The function that changes a setting from inside any statement.
const SET_CONFIG: &[u8] = b"set_config";

/// Case-insensitive search for an ASCII lower-case `needle`, anchored on its first byte.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), hay).any(|at| {
        hay.get(at..at + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// Understands `sql[start..end]` when it starts with a DML keyword; `None` for any other
/// statement (DDL goes to the parser).
pub fn understand(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Option<Ddl> {
    let sql = sql.get(..end).unwrap_or(sql);
    understand_tokens(sql, Lexer::at(sql, start, opts))
}

/// [`understand`] over the statement's tokens, lexed once by the caller (comments included).
pub fn understand_tokens(sql: &[u8], tokens: impl IntoIterator<Item = Token>) -> Option<Ddl> {
    let mut tokens = tokens.into_iter().filter(|t| !t.is_comment());
    let first = tokens.next()?;
    if first.kind != TokenKind::Word || classify_word(first.text(sql)) != StatementClass::Dml {
        return None;
    }
    let unknown = Ddl {
        kind: DdlKind::Unknown,
        understood: Understood::Unknown,
    };
    let copy = first.is_word(sql, "COPY");
    let mut depth = 0usize;
    let mut prev = first;
    let mut copy_program = None;
    let mut pending_call: Option<String> = None;
    for t in tokens {
        if t.unterminated {
            return Some(unknown);
        }
        // The previous identifier contained `dblink` and this token opens its argument list.
        if let Some(function) = pending_call.take()
            && t.kind == TokenKind::LParen
        {
            return Some(Ddl {
                kind: DdlKind::RemoteSql { function },
                understood: Understood::Fallback,
            });
        }
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            TokenKind::Word => {
                let text = t.text(sql);
                if contains_ci(text, DBLINK) {
                    pending_call = Some(String::from_utf8_lossy(text).to_ascii_lowercase());
                }
                if copy
                    && depth == 0
                    && t.is_word(sql, "PROGRAM")
                    && (prev.is_word(sql, "FROM") || prev.is_word(sql, "TO"))
                {
                    copy_program.get_or_insert(prev.is_word(sql, "TO"));
                }
            }
            TokenKind::QuotedIdent => {
                let text = t.text(sql);
                if text.first() != Some(&b'"') {
                    // `U&"…"`: escapes could spell any name.
                    return Some(unknown);
                }
                if contains_ci(text, DBLINK) {
                    pending_call = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
            _ => {}
        }
        prev = t;
    }
    let kind = match copy_program {
        Some(to) => DdlKind::CopyProgram { to },
        None => DdlKind::Other {
            tag: String::from_utf8_lossy(first.text(sql)).to_ascii_uppercase(),
        },
    };
    Some(Ddl {
        kind,
        understood: Understood::Fallback,
    })
}

/// The first dblink-style call in `sql[start..end]` (any statement): for DDL that runs a query
/// as it executes (`CREATE TABLE … AS`, `CREATE MATERIALIZED VIEW … AS`, `ALTER TABLE … USING`
/// or a volatile DEFAULT). The name after `TABLE` / `VIEW` is the object's own name, not a
/// call, even when a column list follows it.
pub fn remote_call(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Option<String> {
    let sql = sql.get(..end).unwrap_or(sql);
    if !contains_ci(sql.get(start..).unwrap_or_default(), DBLINK) {
        return None;
    }
    remote_call_tokens(sql, Lexer::at(sql, start, opts))
}

/// The statement's text mentions a remote-SQL function (a byte search).
pub fn mentions_remote(text: &[u8]) -> bool {
    contains_ci(text, DBLINK)
}

/// [`remote_call`] over the statement's tokens, lexed once by the caller (comments included;
/// the caller has checked [`mentions_remote`] first, which spares most statements the walk).
pub fn remote_call_tokens(sql: &[u8], tokens: impl IntoIterator<Item = Token>) -> Option<String> {
    let mut pending: Option<String> = None;
    // After TABLE / VIEW: `Some(true)` while an identifier is due, `Some(false)` after one.
    let mut naming: Option<bool> = None;
    for t in tokens.into_iter().filter(|t| !t.is_comment()) {
        if let Some(function) = pending.take()
            && t.kind == TokenKind::LParen
        {
            return Some(function);
        }
        let ident = matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent);
        match naming {
            _ if t.is_word(sql, "TABLE") || t.is_word(sql, "VIEW") => {
                naming = Some(true);
                continue;
            }
            Some(true)
                if t.is_word(sql, "IF") || t.is_word(sql, "NOT") || t.is_word(sql, "EXISTS") =>
            {
                continue;
            }
            Some(true) if ident => {
                naming = Some(false);
                continue;
            }
            Some(false) if t.kind == TokenKind::Operator && t.text(sql) == b"." => {
                naming = Some(true);
                continue;
            }
            _ => naming = None,
        }
        if ident && contains_ci(t.text(sql), DBLINK) {
            pending = Some(String::from_utf8_lossy(t.text(sql)).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(sql: &str) -> Option<DdlKind> {
        understand(sql.as_bytes(), 0, sql.len(), LexOptions::default()).map(|d| d.kind)
    }

    #[test]
    fn set_config_calls_are_found_by_name_quoted_or_escaped_only() {
        let calls =
            |sql: &str| may_call_set_config(sql.as_bytes(), 0, sql.len(), LexOptions::default());
        for sql in [
            "SELECT set_config('search_path', 'a', false)",
            "SELECT pg_catalog.SET_CONFIG('TimeZone', 'x', false)",
            "SELECT \"set_config\"('standard_conforming_strings', 'off', false)",
            "SELECT U&\"\\0073et_config\"('standard_conforming_strings', 'off', false)",
        ] {
            assert!(calls(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES ('set_config')",
            "SELECT x -- set_config(",
            "SELECT my_set_config_value FROM t",
            "UPDATE t SET a = b & c",
        ] {
            assert!(!calls(sql), "{sql}");
        }
    }

    #[test]
    fn the_byte_check_flags_every_spelling() {
        for (first, sql) in [
            (
                "SELECT",
                "SELECT dblink_exec('dbname=x', 'DROP TABLE victim')",
            ),
            (
                "select",
                "select * from DBLink('c', 'select 1') as t(x int)",
            ),
            ("SELECT", "SELECT public.\"dblink_exec\"('c', 'x')"),
            ("SELECT", "SELECT u&\"\\0064blink_exec\"('c', 'x')"),
            ("COPY", "COPY t FROM PROGRAM 'rm -rf /'"),
            ("copy", "copy (select 1) to Program 'cat'"),
        ] {
            assert!(suspicious(first.as_bytes(), sql.as_bytes()), "{sql}");
        }
        for (first, sql) in [
            (
                "SELECT",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            ),
            ("COPY", "COPY t FROM STDIN"),
            ("SELECT", "SELECT 'program'"),
            ("SELECT", "SELECT a && b, u.x FROM u"),
        ] {
            assert!(!suspicious(first.as_bytes(), sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn calls_are_told_from_mentions() {
        assert_eq!(
            kind("SELECT dblink_exec('dbname=x', 'DROP TABLE victim')"),
            Some(DdlKind::RemoteSql {
                function: "dblink_exec".into()
            })
        );
        assert_eq!(
            kind(
                "WITH x AS (SELECT 1) SELECT * FROM x, public . DBLINK /* c */ ('c', 'q') AS t(a int)"
            ),
            Some(DdlKind::RemoteSql {
                function: "dblink".into()
            })
        );
        assert!(matches!(
            kind("SELECT \"dblink_send_query\"('c', 'q')"),
            Some(DdlKind::RemoteSql { .. })
        ));
        assert!(matches!(
            kind("PREPARE p AS SELECT dblink_exec('c', $1)"),
            Some(DdlKind::RemoteSql { .. })
        ));
        for sql in [
            "SELECT 'dblink_exec(1)'",
            "SELECT dblink_id FROM t -- dblink_exec(",
            "SELECT x FROM dblink_log WHERE dblink_id = 1",
        ] {
            assert_eq!(
                kind(sql),
                Some(DdlKind::Other {
                    tag: "SELECT".into()
                }),
                "{sql}"
            );
        }
        let escaped = "SELECT U&\"\\0064blink_exec\"('c', 'x')";
        let ddl = understand(escaped.as_bytes(), 0, escaped.len(), LexOptions::default());
        assert_eq!(ddl.map(|d| d.understood), Some(Understood::Unknown));
        assert_eq!(kind("CREATE TABLE t (id int)"), None);
    }

    #[test]
    fn copy_program_in_both_directions() {
        assert_eq!(
            kind("COPY victim FROM PROGRAM 'cat /etc/passwd'"),
            Some(DdlKind::CopyProgram { to: false })
        );
        assert_eq!(
            kind("copy (SELECT 1) TO program 'sh -c x'"),
            Some(DdlKind::CopyProgram { to: true })
        );
        for sql in ["COPY program FROM STDIN", "COPY t (program) TO STDOUT"] {
            assert_eq!(
                kind(sql),
                Some(DdlKind::Other { tag: "COPY".into() }),
                "{sql}"
            );
        }
    }

    #[test]
    fn remote_calls_in_ddl() {
        let sql = "CREATE TABLE x AS SELECT dblink_exec('c', 'DROP TABLE v')";
        assert_eq!(
            remote_call(sql.as_bytes(), 0, sql.len(), LexOptions::default()).as_deref(),
            Some("dblink_exec")
        );
        for sql in [
            "CREATE TABLE dblink_log (id int)",
            "CREATE TABLE IF NOT EXISTS s.dblink_log (id int)",
            "CREATE MATERIALIZED VIEW dblink_mv (a) AS SELECT 1",
        ] {
            assert_eq!(
                remote_call(sql.as_bytes(), 0, sql.len(), LexOptions::default()),
                None,
                "{sql}"
            );
        }
    }
}
