//! What a message may do to the session's settings ([`Effects`]), read from its statements'
//! first words.

use crate::sql::lexer::{self, LexOptions, StatementSpan, Token, TokenKind};
use crate::sql::prefilter::StatementClass;

/// What a message may do to the session's settings when it runs, read from its statements'
/// first words (and any call of `set_config`). Where it cannot be ruled out, it is assumed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// It may change a setting (SET, RESET, DISCARD, `set_config(…)`, a transaction end that
    /// undoes a SET, a DO block, CALL or EXECUTE that may run any of them): names may resolve
    /// differently afterwards (`search_path`, …).
    pub settings: bool,
    /// It may change how the server lexes SQL (`standard_conforming_strings`,
    /// `client_encoding`): later messages must not be lexed before the server has answered it.
    pub lexing: bool,
    /// Prepared statements it deallocates (`DEALLOCATE name`, `DEALLOCATE ALL` and `DISCARD
    /// ALL` as `None`).
    pub deallocates: Vec<Option<Vec<u8>>>,
}

/// Settings that change how the server lexes SQL, and `SET NAMES` (client_encoding).
pub(super) const LEXING_SETTINGS: [&str; 4] = [
    "standard_conforming_strings",
    "client_encoding",
    "names",
    "all",
];

/// The effects of one statement on the session's settings (see [`Effects`]).
/// `tokens`: the statement's tokens when the split kept them (DDL), else its first words are
/// lexed here.
#[inline]
pub(super) fn statement_effects(
    sql: &[u8],
    span: &StatementSpan,
    lex: LexOptions,
    class: StatementClass,
    tokens: Option<&[Token]>,
    out: &mut Effects,
) {
    match tokens {
        Some(tokens) => words_effects(sql, tokens.iter().copied(), class, out),
        // The first token is known from the split; the lexer goes on after it only if the
        // statement's kind needs its next words (most statements need none).
        None => {
            if let Some(first) = span.first {
                let rest = lexer::Lexer::at(sql, first.end, lex).take_while(|t| t.start < span.end);
                words_effects(sql, std::iter::once(first).chain(rest), class, out);
            }
        }
    }
    if !out.lexing && crate::sql::side_effects::may_call_set_config(sql, span.start, span.end, lex)
    {
        out.settings = true;
        out.lexing = true;
    }
}

/// The effects [`statement_effects`] reads from a statement's first words.
pub(super) fn words_effects(
    sql: &[u8],
    tokens: impl Iterator<Item = Token>,
    class: StatementClass,
    out: &mut Effects,
) {
    let mut words = tokens.filter(|t| !t.is_comment());
    let Some(first) = words.next() else { return };
    let is = |t: &Option<lexer::Token>, kw: &str| t.is_some_and(|t| t.is_word(sql, kw));
    match class {
        StatementClass::Session => {
            let mut second = words.next();
            out.settings = true;
            // `SET [SESSION | LOCAL] name`, `RESET name`: only a few names change lexing.
            if is(&second, "SESSION") || is(&second, "LOCAL") {
                second = words.next();
            }
            let name = second.map(|t| guc_name(t.text(sql), t.kind));
            let neutral = name.as_deref().is_some_and(|n| {
                !n.is_empty() && !LEXING_SETTINGS.iter().any(|l| l.as_bytes() == n)
            });
            out.lexing |= !neutral;
        }
        StatementClass::Transaction => {
            // A transaction's end (or a rollback to a savepoint) undoes its SETs.
            if !(first.is_word(sql, "BEGIN")
                || first.is_word(sql, "START")
                || first.is_word(sql, "SAVEPOINT")
                || first.is_word(sql, "RELEASE"))
            {
                out.settings = true;
                out.lexing = true;
            }
        }
        // The server refuses the whole message: nothing of it runs.
        StatementClass::NotACommand => {}
        StatementClass::Dml | StatementClass::DdlCandidate => {
            let runs_anything = ["DISCARD", "EXECUTE", "CALL", "DO", "PREPARE"]
                .iter()
                .any(|k| first.is_word(sql, k));
            if runs_anything {
                out.settings = true;
                out.lexing = true;
            }
            if first.is_word(sql, "DEALLOCATE") {
                let mut second = words.next();
                if is(&second, "PREPARE") {
                    second = words.next();
                }
                if let Some(t) = second {
                    out.deallocates.push(if t.is_word(sql, "ALL") {
                        None
                    } else {
                        Some(statement_name(t.text(sql), t.kind))
                    });
                }
            } else if first.is_word(sql, "DISCARD") && is(&words.next(), "ALL") {
                out.deallocates.push(None);
            }
        }
    }
}

/// A setting's name as the server looks it up: case-insensitively, quoted or not.
pub(super) fn guc_name(text: &[u8], kind: TokenKind) -> Vec<u8> {
    let mut n = if kind == TokenKind::QuotedIdent {
        unquote(text)
    } else {
        text.to_vec()
    };
    n.make_ascii_lowercase();
    n
}

/// A prepared statement's name as the server stores it: unquoted names folded to lower case.
pub(super) fn statement_name(text: &[u8], kind: TokenKind) -> Vec<u8> {
    if kind == TokenKind::QuotedIdent {
        unquote(text)
    } else {
        text.to_ascii_lowercase()
    }
}

/// `"a""b"` → `a"b`; a `U&"…"` identifier is not decoded (its name then matches nothing,
/// which only keeps a tracking slot taken).
pub(super) fn unquote(text: &[u8]) -> Vec<u8> {
    let inner = text
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        out.push(inner[i]);
        i += if inner[i] == b'"' && inner.get(i + 1) == Some(&b'"') {
            2
        } else {
            1
        };
    }
    out
}
