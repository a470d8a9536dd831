//! Quoting for the SQL ddlgate writes itself — catalog reads, the guard's queries, the
//! created-in-transaction read, recipe steps — and the `DO` block that raises a block's error.
//! One place and one set of rules, those of PostgreSQL's own `quote_ident` and
//! `quote_literal`, so two parts of ddlgate never quote the same name differently.
//!
//! Names reaching here come from statements whose text PostgreSQL ends at the first NUL, and
//! from the server's catalogs, which cannot hold one; the one place that sends ddlgate's own
//! SQL (`session::ddl`, its side channel) refuses a text with a NUL all the same ([`has_nul`]), so a
//! name that somehow held one could never cut a query short.

use crate::sql::keywords::{COL_NAME, RESERVED, TYPE_FUNC_NAME, in_list};
use crate::sql::statement::Name;

/// `"…"` with `"` doubled: always quoted, so a name the model already folded stays exactly
/// as it is (PostgreSQL's `quote_ident` with quoting forced).
pub fn ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quoted exactly when PostgreSQL's `quote_ident` would quote it: unless it is made of
/// lower-case ASCII letters, digits and underscores, starts with a letter or underscore, and is
/// not a keyword outside the unreserved category. Used where the text is shown to people or
/// must match what PostgreSQL itself would write (constraint and index names in recipes).
pub fn ident_if_needed(s: &str) -> String {
    let bytes = s.as_bytes();
    let plain = bytes
        .first()
        .is_some_and(|&b| b.is_ascii_lowercase() || b == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !is_keyword(s);
    if plain { s.to_owned() } else { ident(s) }
}

/// A keyword `quote_ident` quotes: every category except the unreserved one.
pub fn is_keyword(word: &str) -> bool {
    let w = word.as_bytes();
    in_list(w, RESERVED) || in_list(w, TYPE_FUNC_NAME) || in_list(w, COL_NAME)
}

/// `"schema"."name"` (or `"name"`), each part always quoted: resolves exactly as the
/// statement's own name does (search_path for an unqualified one).
pub fn name(n: &Name) -> String {
    match &n.schema {
        Some(schema) => format!("{}.{}", ident(schema), ident(&n.name)),
        None => ident(&n.name),
    }
}

/// `schema.name`, each part quoted only as needed ([`ident_if_needed`]).
pub fn name_if_needed(n: &Name) -> String {
    match &n.schema {
        Some(schema) => format!("{}.{}", ident_if_needed(schema), ident_if_needed(&n.name)),
        None => ident_if_needed(&n.name),
    }
}

/// A string literal PostgreSQL reads back as exactly `s`, whatever
/// `standard_conforming_strings` is: `'…'` with `'` doubled and, when `s` holds a backslash,
/// the `E'…'` form with `\` doubled too — PostgreSQL's `quote_literal`.
pub fn literal(s: &str) -> String {
    let doubled = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// A literal for text meant for people (a RAISE's message, detail and hint): always `E'…'`,
/// newlines kept as `\n`, other control characters shown as a space (they add nothing to a
/// message and could disturb a terminal).
pub fn message_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A `DO` block that makes the server raise this error, so the error and the transaction state
/// it leaves are the server's own. The dollar-quote tag is lengthened until the body cannot
/// end it early.
pub fn raise_block(code: &str, message: &str, detail: &str, hint: &str) -> String {
    let body = format!(
        "BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}, DETAIL = {}, HINT = {}; END",
        message_literal(code),
        message_literal(message),
        message_literal(detail),
        message_literal(hint)
    );
    let mut tag = "ddlgate".to_owned();
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    format!("DO ${tag}${body}${tag}$")
}

/// Whether SQL text holds a NUL byte, where PostgreSQL would end the query text.
pub fn has_nul(sql: &[u8]) -> bool {
    sql.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_like_postgresql() {
        assert_eq!(ident("t"), "\"t\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident_if_needed("orders_x_idx"), "orders_x_idx");
        assert_eq!(ident_if_needed("Orders"), "\"Orders\"");
        assert_eq!(ident_if_needed("select"), "\"select\"");
        assert_eq!(ident_if_needed("user"), "\"user\"");
        assert_eq!(ident_if_needed("1a"), "\"1a\"");
        assert_eq!(ident_if_needed("a b"), "\"a b\"");
        assert_eq!(ident_if_needed("_x1"), "_x1");
        assert_eq!(ident_if_needed("time"), "\"time\"");
        assert_eq!(ident_if_needed("é"), "\"é\"");
        // Unreserved keywords stay plain, as quote_ident leaves them.
        assert_eq!(ident_if_needed("name"), "name");
        let qualified = Name {
            schema: Some("S".into()),
            name: "t".into(),
        };
        assert_eq!(name(&qualified), "\"S\".\"t\"");
        assert_eq!(name_if_needed(&qualified), "\"S\".t");
    }

    #[test]
    fn literals_read_back_as_written_in_every_session() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
        assert_eq!(literal("a\\'b"), "E'a\\\\''b'");
        assert_eq!(message_literal("x\ny\u{7}'\\"), "E'x\\ny ''\\\\'");
    }

    #[test]
    fn raise_blocks_cannot_be_ended_early() {
        let sql = raise_block("DG001", "$ddlgate$ drop", "d", "h");
        assert!(sql.starts_with("DO $ddlgate_$"), "{sql}");
        assert!(sql.ends_with("$ddlgate_$"), "{sql}");
        assert!(has_nul(b"a\0b") && !has_nul(b"ab"));
    }
}
