//! Turning a decision into SQL the server runs in place of the client's statement.
//!
//! A blocked statement is replaced, inside the client's own message, by a `DO` block that raises
//! ddlgate's error (SQLSTATE, message, detail, hint). PostgreSQL then produces the ErrorResponse
//! and the ReadyForQuery itself, so the protocol state is exactly what a real server leaves:
//! inside a transaction block the transaction ends up failed on both sides (a later COMMIT rolls
//! back), a multi-statement Query's implicit transaction rolls back whatever ran before it, and
//! in the extended protocol the error comes at Execute and the server discards to Sync. ddlgate
//! never has to synthesize a ReadyForQuery or guess the transaction status.
//!
//! Rewrites and warnings are announced with NoticeResponses that ddlgate sends itself.

use bytes::BytesMut;

/// SQLSTATEs ddlgate raises, in a class of its own so applications can tell them apart.
pub mod sqlstate {
    /// A statement blocked by the policy.
    pub const BLOCKED: &str = "DG001";
    /// A DDL statement blocked because ddlgate could not understand it (`unparsed-ddl`).
    pub const UNPARSED: &str = "DG002";
    /// The statement's `ddlgate:allow` comment is invalid or not permitted.
    pub const INVALID_OVERRIDE: &str = "DG003";
    /// Warnings and rewrite notices.
    pub const WARNING: &str = "01000";
}

/// An error for the server to raise in place of a blocked statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError {
    pub code: &'static str,
    pub message: String,
    pub detail: String,
    pub hint: String,
}

impl BlockError {
    /// `DO $tag$ BEGIN RAISE EXCEPTION USING … ; END $tag$`, with a dollar tag that does not
    /// occur in the text and every string literal quoted.
    pub fn to_sql(&self) -> Vec<u8> {
        let body = format!(
            "BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}, DETAIL = {}, HINT = {}; END",
            literal(self.code),
            literal(&self.message),
            literal(&self.detail),
            literal(&self.hint)
        );
        let mut tag = "ddlgate".to_owned();
        while body.contains(&format!("${tag}$")) {
            tag.push('_');
        }
        format!("DO ${tag}${body}${tag}$").into_bytes()
    }
}

/// An escape-string literal `E'…'`: quotes doubled, backslashes doubled, newlines as `\n`.
/// `E''` strings treat backslashes the same way whatever `standard_conforming_strings` says,
/// so the literal means the same in every session.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            // RAISE text is for humans; control characters other than newline add nothing.
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A NoticeResponse ddlgate sends itself (warnings, rewrite announcements).
pub fn notice(severity: &str, message: &str, detail: Option<&str>, hint: Option<&str>) -> BytesMut {
    crate::protocol::responses::notice(severity, sqlstate::WARNING, message, detail, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sql_quotes_everything() {
        let e = BlockError {
            code: sqlstate::BLOCKED,
            message: "it's \\ bad $ddlgate$".to_owned(),
            detail: "line1\nline2".to_owned(),
            hint: "use CONCURRENTLY".to_owned(),
        };
        let sql = String::from_utf8(e.to_sql()).expect("utf-8");
        assert!(sql.starts_with("DO $ddlgate_$"), "{sql}");
        assert!(sql.contains("E'it''s \\\\ bad $ddlgate$'"), "{sql}");
        assert!(sql.contains("E'line1\\nline2'"), "{sql}");
        // It is one statement, whatever it contains.
        let spans = crate::sql::lexer::split_statements(sql.as_bytes(), Default::default());
        assert_eq!(spans.iter().filter(|s| !s.is_empty()).count(), 1);
    }
}
