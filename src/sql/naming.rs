//! A port of PostgreSQL's naming rules: identifier truncation (`NAMEDATALEN`), `makeObjectName`,
//! `ChooseIndexColumnNames` / `FigureColname` over an index element's tokens, and the columns a
//! CHECK expression refers to (for `<table>_<column>_check`). Generated names match what the
//! server would choose, so objects created in steps are indistinguishable in the catalog.

use crate::sql::lexer::TokenKind;
use crate::sql::quote;
use crate::sql::reader::{Stmt, in_list};
use crate::sql::statement::Name;

/// PostgreSQL's `NAMEDATALEN - 1`: identifiers longer than this are truncated by the server.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Truncates an identifier to 63 bytes at a character boundary, as the server does.
pub fn truncate(ident: &str) -> String {
    ident[..clip(ident, MAX_IDENTIFIER_BYTES)].to_owned()
}

pub(crate) fn truncate_name(n: &Name) -> Name {
    Name {
        schema: n.schema.as_deref().map(truncate),
        name: truncate(&n.name),
    }
}

/// The longest prefix of `s` of at most `limit` bytes that ends on a character boundary
/// (`pg_mbcliplen`).
pub(crate) fn clip(s: &str, limit: usize) -> usize {
    let mut n = limit.min(s.len());
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// PostgreSQL's `makeObjectName`: `name1[_name2]_label` within 63 bytes, shortening the longer
/// of the two names first, never the label.
pub fn object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let overhead = usize::from(name2.is_some()) + label.len() + 1;
    let avail = MAX_IDENTIFIER_BYTES.saturating_sub(overhead);
    let mut n1 = name1.len();
    let mut n2 = name2.map_or(0, str::len);
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 -= 1;
        }
    }
    let mut out = name1[..clip(name1, n1)].to_owned();
    if let Some(name2) = name2 {
        out.push('_');
        out.push_str(&name2[..clip(name2, n2)]);
    }
    out.push('_');
    out.push_str(label);
    out
}

/// `ChooseIndexNameAddition` / `ChooseForeignKeyConstraintNameAddition`: column names joined
/// with `_`, stopping once the result reaches NAMEDATALEN bytes.
pub(crate) fn name_addition(columns: &[String]) -> String {
    let mut buf = String::new();
    for c in columns {
        if !buf.is_empty() {
            buf.push('_');
        }
        buf.push_str(&c[..clip(c, MAX_IDENTIFIER_BYTES)]);
        if buf.len() > MAX_IDENTIFIER_BYTES {
            break;
        }
    }
    buf
}

/// Words that are expression syntax, never a column, in a CHECK expression.
const EXPRESSION_WORDS: &str = "and or not is null true false in between like ilike similar to \
    distinct from case when then else end any all some array isnull notnull symmetric \
    asymmetric current_date current_time current_timestamp localtime localtimestamp \
    current_user session_user current_role user current_catalog current_schema";

/// Unreserved words that belong to expression syntax (`AT TIME ZONE`, interval fields,
/// `IS NORMALIZED`, …). Seen where a column could be, they make the reading uncertain.
const UNSURE_WORDS: &str = "at zone year month day hour minute second value normalized nfc nfd \
    nfkc nfkd document uescape operator";

/// Special-syntax functions whose arguments are not plain expressions.
const SPECIAL_FUNCTIONS: &str = "cast extract position substring overlay trim normalize treat \
    collation xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse \
    xmlpi xmlroot xmlserialize xmltable json json_array json_arrayagg json_exists \
    json_object json_objectagg json_query json_scalar json_serialize json_table json_value";

/// The distinct columns a CHECK expression (tokens `open..=close`, the parentheses) refers to,
/// in first-seen order — PostgreSQL's `pull_var_clause` as far as the tokens allow. `None`
/// when the expression uses syntax this reading does not cover.
pub(crate) fn check_columns(st: &Stmt<'_>, open: usize, close: usize) -> Option<Vec<String>> {
    let mut columns: Vec<String> = Vec::new();
    let mut i = open + 1;
    while i < close {
        let t = st.tok(i)?;
        match t.kind {
            TokenKind::Number
            | TokenKind::String
            | TokenKind::DollarString
            | TokenKind::Param
            | TokenKind::LParen
            | TokenKind::RParen
            | TokenKind::Comma => i += 1,
            TokenKind::Operator if st.is_op(i, "::") => i = skip_type(st, i + 1, close)?,
            TokenKind::Operator if st.is_op(i, ".") => return None,
            TokenKind::Operator => i += 1,
            TokenKind::Word | TokenKind::QuotedIdent => {
                if t.kind == TokenKind::Word && !st.is_op(i + 1, ".") {
                    let w = st.lower(i).unwrap_or_default();
                    if st.kind(i + 1) == Some(TokenKind::LParen) {
                        // A function call; special syntax has non-expression arguments.
                        if in_list(&w, SPECIAL_FUNCTIONS) {
                            return None;
                        }
                        i += 1;
                        continue;
                    }
                    if w == "collate" {
                        i = st.dotted(i + 1)?.1;
                        continue;
                    }
                    if w == "escape" && st.kind(i + 1) == Some(TokenKind::String) {
                        i += 2;
                        continue;
                    }
                    if in_list(&w, EXPRESSION_WORDS) {
                        i += 1;
                        continue;
                    }
                    if st.kind(i + 1) == Some(TokenKind::String) {
                        // A typed literal (`date '…'`). Interval fields after it (`DAY`) are
                        // unsure words and stop the reading when the loop reaches them.
                        i += 2;
                        continue;
                    }
                    if in_list(&w, UNSURE_WORDS) || quote::is_keyword(&w) {
                        return None;
                    }
                }
                let (parts, next) = st.dotted(i)?;
                if st.kind(next) == Some(TokenKind::LParen) {
                    // A qualified or quoted function name.
                    i = next;
                    continue;
                }
                if parts.len() > 3 {
                    return None;
                }
                let column = truncate(parts.last()?);
                if !columns.contains(&column) {
                    columns.push(column);
                }
                i = next;
            }
            TokenKind::Semicolon | TokenKind::LineComment | TokenKind::BlockComment => {
                return None;
            }
        }
    }
    Some(columns)
}

/// Skips a type name after `::` (qualified, multi-word, with typmods and array brackets);
/// returns the index after it.
fn skip_type(st: &Stmt<'_>, i: usize, limit: usize) -> Option<usize> {
    let (_, mut j) = st.dotted(i).or_else(|| Some((vec![st.lower(i)?], i + 1)))?;
    loop {
        if j >= limit {
            return Some(j);
        }
        if st.kind(j) == Some(TokenKind::LParen) {
            j = st.close_paren(j)? + 1;
        } else if st.is_op(j, "[") {
            while j < limit && !st.is_op(j, "]") {
                j += 1;
            }
            j += 1;
        } else if st
            .lower(j)
            .is_some_and(|w| in_list(&w, "precision varying with without time zone"))
        {
            j += 1;
        } else {
            return Some(j);
        }
    }
}

/// The name of one index element (tokens `from..to`): `Some(None)` for an expression without
/// one, `None` when unsure.
pub(crate) fn element_name(st: &Stmt<'_>, from: usize, to: usize) -> Option<Option<String>> {
    match st.kind(from)? {
        TokenKind::LParen => {
            let close = st.close_paren(from)?;
            (close < to).then_some(())?;
            figure(st, from + 1, close).map(|(_, n)| n)
        }
        TokenKind::Word | TokenKind::QuotedIdent => {
            let (parts, next) = st.dotted(from)?;
            if st.kind(next) == Some(TokenKind::LParen) {
                let close = st.close_paren(next)?;
                (close < to).then_some(())?;
                function_name(st, from, &parts).map(|n| Some(Some(n)))?
            } else if parts.len() == 1 {
                // A plain column, followed by COLLATE / opclass / ASC / NULLS …
                Some(Some(truncate(&parts[0])))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The name `FigureColname` gives a function call `parts(…)` starting at token `at`.
fn function_name(st: &Stmt<'_>, at: usize, parts: &[String]) -> Option<String> {
    let last = parts.last()?;
    if parts.len() == 1 && st.kind(at) == Some(TokenKind::Word) {
        let w = last.as_str();
        if in_list(w, SPECIAL_FUNCTIONS) || in_list(w, UNSURE_WORDS) {
            return None;
        }
        if quote::is_keyword(w) && !in_list(w, "coalesce greatest least nullif row grouping") {
            return None;
        }
    }
    Some(truncate(last))
}

/// How deep `figure` follows nested parentheses, casts and COLLATE before calling the
/// expression unsure: real index expressions are shallow, hostile ones must not exhaust the
/// stack.
const MAX_FIGURE_DEPTH: usize = 32;

/// `FigureColnameInternal` over tokens `from..to`: (strength, name). Strength 2 is a column
/// or function name, 1 a type name from a cast, 0 no name. `None` when unsure.
fn figure(st: &Stmt<'_>, from: usize, to: usize) -> Option<(u8, Option<String>)> {
    figure_at(st, from, to, 0)
}

fn figure_at(st: &Stmt<'_>, from: usize, to: usize, level: usize) -> Option<(u8, Option<String>)> {
    if from >= to || level > MAX_FIGURE_DEPTH {
        return None;
    }
    let figure = |from: usize, to: usize| figure_at(st, from, to, level + 1);
    // Top-level structure: operators and keywords outside parentheses and brackets.
    let mut depth = 0usize;
    let mut brackets = 0usize;
    let mut last_cast = None;
    let mut collate = None;
    let mut operator = false;
    let mut comma = false;
    for i in from..to {
        match st.kind(i)? {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.checked_sub(1)?,
            _ if depth > 0 => {}
            TokenKind::Operator if st.is_op(i, "[") => brackets += 1,
            TokenKind::Operator if st.is_op(i, "]") => brackets = brackets.checked_sub(1)?,
            _ if brackets > 0 => {}
            TokenKind::Operator if st.is_op(i, "::") => last_cast = Some(i),
            TokenKind::Operator if st.is_op(i, ".") => {}
            TokenKind::Operator => operator = true,
            TokenKind::Comma => comma = true,
            TokenKind::Word => {
                let w = st.lower(i)?;
                if w == "collate" {
                    collate = collate.or(Some(i));
                } else if in_list(
                    &w,
                    "and or not is in like ilike similar between isnull notnull escape",
                ) {
                    operator = true;
                } else if in_list(&w, "at overlaps case") {
                    return None;
                }
            }
            _ => {}
        }
    }
    if comma {
        return None;
    }
    if operator {
        // A_Expr, BoolExpr, NullTest, …: no name.
        return Some((0, None));
    }
    if let Some(c) = collate {
        return figure(from, c);
    }
    if let Some(k) = last_cast {
        let (strength, name) = figure(from, k)?;
        if strength == 2 {
            return Some((2, name));
        }
        return Some((1, Some(type_name(st, k + 1, to)?)));
    }
    let first = st.tok(from)?;
    match first.kind {
        TokenKind::LParen => {
            let close = st.close_paren(from)?;
            if close + 1 == to {
                return figure(from + 1, close);
            }
            None
        }
        TokenKind::Number | TokenKind::String | TokenKind::DollarString | TokenKind::Param => {
            (from + 1 == to).then_some((0, None))
        }
        TokenKind::Word | TokenKind::QuotedIdent => {
            let lower = st.lower(from);
            if lower.as_deref() == Some("array") && st.is_op(from + 1, "[") {
                return Some((2, Some("array".to_owned())));
            }
            if lower
                .as_deref()
                .is_some_and(|w| in_list(w, "true false null"))
                && from + 1 == to
            {
                return Some((0, None));
            }
            let (parts, next) = st.dotted(from)?;
            if next == to {
                if parts.len() == 1 && first.kind == TokenKind::Word {
                    let w = parts[0].as_str();
                    if quote::is_keyword(w) || in_list(w, UNSURE_WORDS) {
                        return None;
                    }
                }
                return Some((2, Some(truncate(parts.last()?))));
            }
            if st.kind(next) == Some(TokenKind::LParen) {
                let close = st.close_paren(next)?;
                if close + 1 == to {
                    return function_name(st, from, &parts).map(|n| (2, Some(n)));
                }
                return None;
            }
            if st.is_op(next, "[") {
                // Subscripts only: the name of what is subscripted.
                return figure(from, next);
            }
            if parts.len() == 1 && st.kind(next) == Some(TokenKind::String) && next + 1 == to {
                // A typed literal, `date '2020-01-01'`.
                return Some((1, Some(type_name(st, from, next)?)));
            }
            None
        }
        _ => None,
    }
}

/// The last name of a type (`TypeName.names`), mapping SQL-standard spellings to the internal
/// names PostgreSQL's grammar gives them.
fn type_name(st: &Stmt<'_>, from: usize, to: usize) -> Option<String> {
    let (parts, next) = st
        .dotted(from)
        .or_else(|| Some((vec![st.lower(from)?], from + 1)))?;
    let quoted = st.kind(from) == Some(TokenKind::QuotedIdent);
    let words: Vec<String> = (next..to).filter_map(|i| st.lower(i)).collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    if parts.len() > 1 || quoted {
        return Some(truncate(parts.last()?));
    }
    let first = parts.first()?.as_str();
    let tz = has("with") && !has("without");
    Some(
        match first {
            "int" | "integer" => "int4",
            "smallint" => "int2",
            "bigint" => "int8",
            "real" => "float4",
            "double" if has("precision") => "float8",
            "float" if st.kind(next) != Some(TokenKind::LParen) => "float8",
            "decimal" | "dec" | "numeric" => "numeric",
            "boolean" => "bool",
            "char" | "character" | "nchar" if has("varying") => "varchar",
            "char" | "character" | "nchar" => "bpchar",
            "varchar" => "varchar",
            "bit" if has("varying") => "varbit",
            "bit" => "bit",
            "time" if tz => "timetz",
            "time" => "time",
            "timestamp" if tz => "timestamptz",
            "timestamp" => "timestamp",
            "interval" if words.is_empty() => "interval",
            "json" => "json",
            w if !quote::is_keyword(w) && !in_list(w, UNSURE_WORDS) => w,
            _ => return None,
        }
        .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_fit_in_63_bytes() {
        let long = "a".repeat(60);
        let name = object_name(&long, Some("customer_id"), "fkey");
        assert_eq!(name.len(), 63);
        // The longer name is shortened first.
        assert_eq!(
            name,
            format!(
                "{}_customer_id_fkey",
                "a".repeat(63 - "_customer_id_fkey".len())
            )
        );
        let both = object_name(&"t".repeat(40), Some(&"c".repeat(40)), "key");
        assert_eq!(both, format!("{}_{}_key", "t".repeat(29), "c".repeat(29)));
        // Never splits a multibyte character.
        let multi = object_name(&"é".repeat(40), Some("c"), "check");
        assert!(multi.len() <= 63 && multi.ends_with("_c_check"));
    }
}
