//! The SQL fragments a `ddlgate backfill` user writes (`--set`, `--where`), checked with the
//! project's lexer before they are spliced into the batch statement.
//!
//! The fragments are SQL on purpose: they are the backfill. What is checked here is only that
//! each stays *one* fragment of the shape its place expects, so that no text can end the batch
//! statement, start another one, or change which rows a batch touches:
//! - no `;` (it would end the statement), no `$n` (the batch statement's own parameters),
//!   nothing unterminated (a string, quoted name or comment running to the end would swallow
//!   the rest of the statement), no NUL;
//! - parentheses balanced, and never closing one the fragment did not open — `--where` is
//!   spliced as `AND (<where>)`, so a balanced fragment can never leave those parentheses;
//! - `--set` is a list of `column = expression` items: at its top level no `WHERE`, `FROM`
//!   (other than `IS [NOT] DISTINCT FROM`) or `RETURNING`, which would add clauses to the
//!   UPDATE; its target columns are returned so the caller can refuse an assignment to the key
//!   the batches walk.
//!
//! The server then parses the whole statement (it is prepared before anything changes), so a
//! fragment that passes here but is not valid SQL is refused with the server's own message.

use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind};

/// Longest fragment accepted (bytes): a backfill's SET list or condition is a line or two.
pub const MAX_FRAGMENT: usize = 64 * 1024;

/// Where a fragment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `--set`: the UPDATE's SET list.
    SetList,
    /// `--where`: a boolean condition, spliced inside parentheses.
    Condition,
}

impl Place {
    fn flag(self) -> &'static str {
        match self {
            Place::SetList => "--set",
            Place::Condition => "--where",
        }
    }
}

/// Checks `text` for `place`; for a SET list, returns its target column names as PostgreSQL
/// folds them (unquoted names lower-cased, quoted ones as written).
pub fn check(place: Place, text: &str, opts: LexOptions) -> Result<Vec<String>, String> {
    let flag = place.flag();
    if text.len() > MAX_FRAGMENT {
        return Err(format!(
            "{flag} is {} bytes long; at most {MAX_FRAGMENT} are accepted",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err(format!("{flag} contains a NUL byte"));
    }
    let sql = text.as_bytes();
    let tokens: Vec<Token> = Lexer::new(sql, opts)
        .filter(|t| !t.is_comment() || t.unterminated)
        .collect();
    if tokens.is_empty() {
        return Err(format!("{flag} is empty"));
    }
    let mut depth: usize = 0;
    for (i, t) in tokens.iter().enumerate() {
        if t.unterminated {
            return Err(format!(
                "{flag} has an unterminated {} starting at byte {}: it would swallow the rest of the statement",
                what(t.kind),
                t.start
            ));
        }
        match t.kind {
            TokenKind::Semicolon => {
                return Err(format!(
                    "{flag} contains `;` at byte {}: a fragment cannot end the statement or start another one",
                    t.start
                ));
            }
            TokenKind::Param => {
                return Err(format!(
                    "{flag} contains the parameter `{}`: the batch statement's parameters are ddlgate's own",
                    String::from_utf8_lossy(t.text(sql))
                ));
            }
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    format!(
                        "{flag} closes a parenthesis it did not open (byte {})",
                        t.start
                    )
                })?;
            }
            TokenKind::Word if depth == 0 && place == Place::SetList => {
                let distinct_from =
                    t.is_word(sql, "from") && i > 0 && tokens[i - 1].is_word(sql, "distinct");
                for kw in ["where", "returning", "from"] {
                    if t.is_word(sql, kw) && !distinct_from {
                        return Err(format!(
                            "{flag} contains `{}` outside parentheses: it takes `column = expression` \
                             items only (put the row condition in --where)",
                            kw.to_ascii_uppercase()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{flag} leaves {depth} parenthesis(es) open"));
    }
    match place {
        Place::Condition => Ok(Vec::new()),
        Place::SetList => set_targets(&tokens, sql),
    }
}

fn what(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::String | TokenKind::DollarString => "string",
        TokenKind::QuotedIdent => "quoted name",
        _ => "comment",
    }
}

/// The target columns of a SET list: the first name of every top-level comma-separated item,
/// or every name of a parenthesised `(a, b) = …` target.
fn set_targets(tokens: &[Token], sql: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut at_item_start = true;
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if at_item_start {
            at_item_start = false;
            match t.kind {
                TokenKind::Word | TokenKind::QuotedIdent => out.push(fold(t, sql)?),
                TokenKind::LParen => {
                    // `(a, b) = (…)`: every name up to the matching parenthesis.
                    let mut j = i + 1;
                    while j < tokens.len() && tokens[j].kind != TokenKind::RParen {
                        if matches!(tokens[j].kind, TokenKind::Word | TokenKind::QuotedIdent) {
                            out.push(fold(tokens[j], sql)?);
                        }
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                _ => {
                    return Err(format!(
                        "--set: expected `column = expression` at byte {}",
                        t.start
                    ));
                }
            }
        }
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            TokenKind::Comma if depth == 0 => at_item_start = true,
            _ => {}
        }
        i += 1;
    }
    Ok(out)
}

/// A column name as PostgreSQL folds it: unquoted names lower-cased (ASCII, as
/// `downcase_identifier` does for UTF-8), quoted ones unescaped.
fn fold(t: Token, sql: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(t.text(sql));
    match t.kind {
        TokenKind::QuotedIdent if text.starts_with('"') && text.len() >= 2 => {
            Ok(text[1..text.len() - 1].replace("\"\"", "\""))
        }
        TokenKind::QuotedIdent => Err(format!(
            "--set: write the target column {text} as a plain or \"quoted\" name"
        )),
        _ => Ok(text.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> Result<Vec<String>, String> {
        check(Place::SetList, s, LexOptions::default())
    }
    fn cond(s: &str) -> Result<Vec<String>, String> {
        check(Place::Condition, s, LexOptions::default())
    }

    #[test]
    fn ordinary_fragments_pass() {
        assert_eq!(set("phone = ''").unwrap(), ["phone"]);
        assert_eq!(
            set("a = 1, \"Mixed\"\"Q\" = lower(b), (c, D) = (1, 2)").unwrap(),
            ["a", "Mixed\"Q", "c", "d"]
        );
        assert_eq!(
            set("x = CASE WHEN a IS DISTINCT FROM b THEN substring(c FROM 1) END").unwrap(),
            ["x"]
        );
        assert_eq!(
            set("x = now()::timestamp with time zone -- note").unwrap(),
            ["x"]
        );
        assert!(cond("phone IS NULL").is_ok());
        assert!(cond("a = ';' AND b = $$;$$ /* ; */").is_ok());
        assert!(cond("id IN (SELECT id FROM other WHERE x)").is_ok());
    }

    #[test]
    fn statement_breaking_fragments_are_refused() {
        for bad in [
            "true; DROP TABLE x",
            "true) OR (true",
            "(true",
            "true) --",
            "'unterminated",
            "a = $1",
            "/* open",
            "\"open",
            "",
            "  -- only a comment",
        ] {
            assert!(cond(bad).is_err(), "{bad}");
        }
        for bad in [
            "x = 1; DROP TABLE t",
            "x = 1 WHERE true",
            "x = 1 FROM other",
            "x = 1 RETURNING *",
            "x = 1)",
            "= 1",
        ] {
            assert!(set(bad).is_err(), "{bad}");
        }
        let long = format!("x = '{}'", "a".repeat(MAX_FRAGMENT));
        assert!(set(&long).is_err());
    }
}
