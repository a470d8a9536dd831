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
//! The server reports where the error was raised (`CONTEXT: PL/pgSQL function
//! inline_code_block line 1 at RAISE`): that says how ddlgate works, not anything about the
//! user's statement, so the relay removes that field from the errors ddlgate's own blocks raise
//! ([`without_raise_context`]); the server's own errors keep theirs.
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

/// The refusals the session raises itself (not a policy decision), each a named constructor.
impl BlockError {
    /// A Query/Parse that cannot be lexed with certainty: an earlier statement of its
    /// extended-protocol unit may have changed how the server reads it.
    pub fn lexing_unknown() -> BlockError {
        BlockError {
            code: sqlstate::UNPARSED,
            message: "ddlgate cannot read this statement: an earlier statement of this unit may have changed standard_conforming_strings or client_encoding".to_owned(),
            detail: "The server reports such changes only at the end of the unit (Sync); until then ddlgate cannot know how the server reads backslashes and multibyte characters.".to_owned(),
            hint: "Send Sync after the statement that changes the setting, before this one.".to_owned(),
        }
    }

    /// A statement that must run as safe steps (`title`, the steps `planned`), sent where
    /// ddlgate cannot run them: not alone as a simple Query, or not at a statement boundary.
    pub fn steps_need_simple_query(title: &str, planned: &str) -> BlockError {
        BlockError {
            code: sqlstate::BLOCKED,
            message: format!("ddlgate must run this statement as safe steps ({title})"),
            detail: format!("Planned: {planned}"),
            hint: "Send the statement alone, outside a transaction block, as a simple query or as one Parse/Bind/[Describe]/Execute/Sync unit without parameters (your driver's execute of the statement alone), so ddlgate can run the steps, or run the steps yourself.".to_owned(),
        }
    }

    /// A Parse of DDL past `guard.max_tracked_statements` (`cap`) prepared DDL statements.
    pub fn too_many_prepared(cap: usize) -> BlockError {
        BlockError {
            code: sqlstate::BLOCKED,
            message: format!(
                "ddlgate refused to prepare this DDL statement: this session already has {cap} prepared DDL statements (guard.max_tracked_statements)"
            ),
            detail: "ddlgate checks every prepared DDL statement again when it runs, so it must remember each one until it is closed.".to_owned(),
            hint: "Close prepared statements you no longer need (Close message, DEALLOCATE or DISCARD ALL), or send the DDL as a simple query.".to_owned(),
        }
    }

    /// A Bind of prepared DDL `statement`, decided at its Parse in transaction status
    /// `decided_in_tx`, that cannot run as prepared now, for the reason `why`.
    pub fn prepared_no_longer_allowed(
        statement: &[u8],
        decided_in_tx: &str,
        why: &str,
    ) -> BlockError {
        BlockError {
            code: sqlstate::BLOCKED,
            message: format!(
                "ddlgate refused to execute prepared DDL statement \"{}\": {why}",
                String::from_utf8_lossy(statement)
            ),
            detail: format!(
                "It was decided at its Parse (transaction {decided_in_tx}); since then the transaction status, a transaction end or a settings change may make its names mean other objects, and for a DROP … CASCADE other statements may have created dependents."
            ),
            hint: "Prepare the statement again (Parse) right before executing it, or send it as a simple query.".to_owned(),
        }
    }

    /// The lock guard gave up on a statement (`message` says why), naming who blocked it.
    pub fn lock_not_available(message: String, blockers: &str, hint: &str) -> BlockError {
        BlockError {
            code: "55P03",
            message,
            detail: format!("Blocking sessions: {blockers}."),
            hint: hint.to_owned(),
        }
    }
}

impl BlockError {
    /// `DO $tag$ BEGIN RAISE EXCEPTION USING … ; END $tag$`, with a dollar tag that does not
    /// occur in the text and every string literal quoted.
    pub fn to_sql(&self) -> Vec<u8> {
        crate::sql::quote::raise_block(self.code, &self.message, &self.detail, &self.hint)
            .into_bytes()
    }
}

/// The body of an ErrorResponse raised by one of ddlgate's `DO` blocks without the fields that
/// describe the `RAISE` rather than the client's statement: where (`W`, "PL/pgSQL function
/// inline_code_block line 1 at RAISE"), and the server's source file, line and routine (`F`,
/// `L`, `R`: `pl_exec.c`, its line, `exec_stmt_raise`). Clients print these as if they were
/// about the migration: sqlx 0.9 shows every error as "MESSAGE at line L", so a refusal read
/// "… at line 3891" of a one-line file (tests/e2e/sqlx.rs). Every other field is kept byte for
/// byte; `None` for any other error.
///
/// ddlgate's blocks are recognised by what the server reports of them: a message that starts
/// with `ddlgate` (RAISE messages are never translated) and a where-field that is one line
/// naming the anonymous block `inline_code_block` (the function name is not translated either,
/// whatever `lc_messages` says). The caller only asks for errors of sessions in which ddlgate
/// sent such a block.
pub fn without_raise_context(body: &[u8]) -> Option<BytesMut> {
    let mut fields: Vec<(u8, &[u8])> = Vec::new();
    let mut rest = body;
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let (value, after) = crate::protocol::read_cstr(after)?;
        fields.push((kind, value));
        rest = after;
    }
    let field = |k: u8| fields.iter().find(|(kind, _)| *kind == k).map(|(_, v)| *v);
    let ours = field(b'M').is_some_and(|m| m.starts_with(b"ddlgate"));
    let raised_by_block = field(b'W')
        .is_some_and(|w| !w.contains(&b'\n') && w.windows(17).any(|x| x == b"inline_code_block"));
    if !(ours && raised_by_block) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    for (kind, value) in fields
        .iter()
        .filter(|(kind, _)| !matches!(kind, b'W' | b'F' | b'L' | b'R'))
    {
        out.push(*kind);
        out.extend_from_slice(value);
        out.push(0);
    }
    out.push(0);
    let mut frame = BytesMut::with_capacity(out.len() + crate::protocol::framing::HEADER_LEN);
    crate::protocol::framing::put_message(
        &mut frame,
        crate::protocol::backend::ERROR_RESPONSE,
        &out,
    );
    Some(frame)
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

    fn error_body(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in fields {
            body.push(*k);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        body
    }

    #[test]
    fn only_the_blocks_raise_location_is_removed() {
        let ours = [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "DG001"),
            (b'M', "ddlgate blocked this statement (rule x: y)"),
            (b'D', "detail"),
            (b'H', "hint"),
            (b'W', "PL/pgSQL function inline_code_block line 1 at RAISE"),
            (b'F', "pl_exec.c"),
            (b'L', "3891"),
            (b'R', "exec_stmt_raise"),
        ];
        let frame = without_raise_context(&error_body(&ours)).expect("ours");
        let without: Vec<(u8, &str)> = ours
            .iter()
            .copied()
            .filter(|(k, _)| !matches!(k, b'W' | b'F' | b'L' | b'R'))
            .collect();
        let mut expected = BytesMut::new();
        crate::protocol::framing::put_message(
            &mut expected,
            crate::protocol::backend::ERROR_RESPONSE,
            &error_body(&without),
        );
        assert_eq!(frame, expected);
        // The server's own errors keep their context.
        for fields in [
            vec![(b'C', "42601"), (b'M', "syntax error at or near \"selec\"")],
            vec![
                (b'C', "P0001"),
                (b'M', "boom"),
                (b'W', "PL/pgSQL function inline_code_block line 1 at RAISE"),
            ],
            vec![
                (b'C', "DG001"),
                (b'M', "ddlgate blocked this statement"),
                (
                    b'W',
                    "PL/pgSQL function f() line 3 at RAISE\nSQL statement \"SELECT f()\"",
                ),
            ],
        ] {
            assert_eq!(
                without_raise_context(&error_body(&fields)),
                None,
                "{fields:?}"
            );
        }
        // A body cut short is left alone.
        assert_eq!(without_raise_context(b"Mddlgate x"), None);
    }
}
