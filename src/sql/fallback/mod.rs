//! The fallback classifier: what a DDL statement is when `sqlparser` could not parse it.
//!
//! The SQL layer hands every DDL candidate to `sqlparser` first. sqlparser rejects a good part of
//! PostgreSQL's utility syntax — `REINDEX`, `CLUSTER … USING`, `VACUUM (…)`, `DROP INDEX
//! CONCURRENTLY`, `CREATE INDEX … ON ONLY`, many `ALTER TABLE` sub-commands, `DO`, … — and those
//! are exactly the dangerous or the safe forms a schema-change guard must tell apart. For them this
//! module reads the statement's tokens (from [`super::lexer`], comments skipped) against
//! PostgreSQL's grammar (`src/backend/parser/gram.y`, PG 12–18) and builds the same
//! [`super::statement`] model the parser path builds, marked [`Understood::Fallback`].
//!
//! It is deliberately strict: whatever it cannot identify is [`DdlKind::Unknown`], which the
//! policy blocks (fail closed). A form is only claimed when its tokens prove it; the forms that
//! decide between "safe" and "dangerous" (`DROP INDEX`, `REINDEX`, `VACUUM`, `LOCK`, `TRUNCATE`,
//! `DROP TABLE`, `REFRESH MATERIALIZED VIEW`) must match the grammar to their last token.
//! Unterminated strings, quoted identifiers, comments or dollar quotes (which PostgreSQL rejects)
//! and unbalanced parentheses are Unknown too.
//!
//! Names are folded the way PostgreSQL folds identifiers: unquoted ones ASCII-lower-cased
//! (`downcase_identifier` folds A–Z only), quoted ones kept with `""` undoubled, `U&"…"` kept raw.
//! Non-UTF-8 bytes are converted lossily. Identifiers are not truncated to `NAMEDATALEN`.
//!
//! No allocation per token: the cursor re-uses the lexer with one token of lookahead; only the
//! result (names, type and expression texts, tags) is allocated. Never panics on any input.
//!
//! This file holds the token `Cursor`, the readers of names, types and options every family
//! shares, and the dispatch by first keyword; each statement family has a file of its own:
//! `create`, `alter` (and `alter_table` for ALTER TABLE's actions), `drop`, `maintenance`
//! (REINDEX, CLUSTER, VACUUM, REFRESH) and `other` (LOCK, TRUNCATE, DO).

use super::keywords::{RESERVED, TYPE_FUNC_NAME, in_list};
use super::lexer::{ClientEncoding, LexOptions, Lexer, Token, TokenKind};
use super::literal;
use super::statement::{Ddl, DdlKind, Name, Understood};

mod alter;
mod alter_table;
mod create;
mod drop;
mod maintenance;
mod other;

use alter::alter;
use create::create;
use drop::drop;
use maintenance::{cluster, refresh, reindex, vacuum};
use other::{do_block, lock, truncate};

/// Classifies the statement `sql[span.start..span.end]` from its tokens. Returns
/// `Ddl { understood: Understood::Fallback, .. }` when recognised,
/// `Ddl { kind: DdlKind::Unknown, understood: Understood::Unknown }` otherwise.
///
/// `start`/`end` are byte offsets into `sql` (normally a [`super::lexer::StatementSpan`]); they
/// are clamped, so any values are accepted.
pub fn classify(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Ddl {
    // Lex only up to `end`, so nothing past the statement can be read.
    let sql = sql.get(..end).unwrap_or(sql);
    // PostgreSQL rejects the whole Query on an unterminated literal/comment; nothing to classify.
    let kind = if Lexer::at(sql, start, opts).any(|t| t.unterminated) {
        None
    } else {
        let mut c = Cursor::new(sql, start, opts);
        statement(&mut c).filter(|_| !c.bad)
    };
    match kind {
        Some(kind) if kind != DdlKind::Unknown => Ddl {
            kind,
            understood: Understood::Fallback,
        },
        _ => Ddl {
            kind: DdlKind::Unknown,
            understood: Understood::Unknown,
        },
    }
}

// ---------------------------------------------------------------------------
// Keywords
// ---------------------------------------------------------------------------

/// Which keywords a name position accepts (gram.y's identifier productions).
#[derive(Clone, Copy)]
enum Kw {
    /// `ColId`: no reserved and no type/function-name keywords.
    ColId,
    /// `type_function_name` / `NonReservedWord`: no reserved keywords.
    NonReserved,
    /// `ColLabel` (`attr_name` after a dot): any keyword.
    Label,
}

impl Kw {
    fn rejects(self, word: &[u8]) -> bool {
        match self {
            Kw::ColId => in_list(word, RESERVED) || in_list(word, TYPE_FUNC_NAME),
            Kw::NonReserved => in_list(word, RESERVED),
            Kw::Label => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Token text helpers
// ---------------------------------------------------------------------------

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn upper(sql: &[u8], t: Token) -> String {
    let mut s = lossy(t.text(sql));
    s.make_ascii_uppercase();
    s
}

/// Inner bytes of a quoted identifier and whether it is a `U&"…"` one.
fn quoted_inner(text: &[u8]) -> Option<(&[u8], bool)> {
    let last = text.len().checked_sub(1)?;
    if text.first() == Some(&b'"') {
        Some((text.get(1..last)?, false))
    } else {
        Some((text.get(3..last)?, true))
    }
}

/// An identifier token folded like PostgreSQL, or `None` if `t` cannot be a name at this
/// position. A zero-length quoted identifier is a syntax error in PostgreSQL.
fn ident_text(sql: &[u8], t: Token, kw: Kw) -> Option<String> {
    let text = t.text(sql);
    match t.kind {
        TokenKind::Word if !kw.rejects(text) => {
            let mut s = lossy(text);
            s.make_ascii_lowercase();
            Some(s)
        }
        TokenKind::QuotedIdent => {
            let (inner, unicode) = quoted_inner(text)?;
            if inner.is_empty() {
                return None;
            }
            let s = String::from_utf8_lossy(inner);
            Some(if unicode {
                s.into_owned()
            } else {
                s.replace("\"\"", "\"")
            })
        }
        _ => None,
    }
}

/// `t` is the identifier `lower` (a lower-case ASCII name), quoted or not, without allocating:
/// option names of `VACUUM (…)` are compared after folding, so `"full"` is FULL but `"FULL"` is not.
fn ident_is(sql: &[u8], t: Token, lower: &str) -> bool {
    match t.kind {
        TokenKind::Word => t.text(sql).eq_ignore_ascii_case(lower.as_bytes()),
        TokenKind::QuotedIdent => {
            quoted_inner(t.text(sql)).is_some_and(|(i, _)| i == lower.as_bytes())
        }
        _ => false,
    }
}

/// Value of a string constant (`Sconst`), decoded as PostgreSQL decodes it: `'…'` / `N'…'`
/// with `''` undoubled, `E'…'` (and a plain `'…'` when `standard_conforming_strings` is off)
/// with its backslash escapes, `U&'…'` with `\` as the escape character (see
/// [`string_content_uescape`] for a `UESCAPE` clause), `$tag$…$tag$` without the delimiters.
/// Bit strings (`B'…'`, `X'…'`) are not `Sconst`.
///
/// `None` whenever PostgreSQL would reject the constant (invalid escape, `U&'…'` with
/// `standard_conforming_strings` off).
///
/// Non-ASCII characters come out as themselves when the constant is UTF-8 and as U+FFFD
/// otherwise. The server converts the Query to its own encoding before it lexes anything, and
/// a non-ASCII character never becomes ASCII there (every server encoding is
/// ASCII-compatible), so the ASCII structure of the value — all a reader of DO blocks and
/// function bodies looks at — is exact either way. In the client encodings whose multibyte
/// characters can end in a `\` byte (SJIS, BIG5, GBK, …), each whole character is replaced
/// before escapes are decoded: such a byte is part of a character, never a backslash, once the
/// server has converted the text.
pub(crate) fn string_content(sql: &[u8], t: Token, opts: LexOptions) -> Option<String> {
    string_content_uescape(sql, t, opts, b'\\')
}

/// [`string_content`] for a `U&'…'` constant followed by `UESCAPE 'c'`: `uescape` is `c`.
pub(crate) fn string_content_uescape(
    sql: &[u8],
    t: Token,
    opts: LexOptions,
    uescape: u8,
) -> Option<String> {
    // Cut off by the end of the input: PostgreSQL rejects it, and there is no value.
    if t.unterminated {
        return None;
    }
    let converted;
    let mut text = t.text(sql);
    if opts.encoding != ClientEncoding::AsciiSafe && !text.is_ascii() {
        converted = replace_multibyte(text, opts.encoding);
        text = &converted;
    }
    let value = match t.kind {
        TokenKind::DollarString => {
            let tag = dollar_tag_len(text)?;
            let close = text.len().checked_sub(tag)?;
            text.get(tag..close)?.to_vec()
        }
        TokenKind::String => {
            let q = text.iter().position(|&b| b == b'\'')?;
            let prefix = text.get(..q)?;
            let inner = text.get(q + 1..text.len().checked_sub(1)?)?;
            let plain = prefix.is_empty() || prefix.eq_ignore_ascii_case(b"n");
            let scs = opts.standard_conforming_strings;
            if plain && scs {
                super::literal::undouble(inner)?
            } else if plain || prefix.eq_ignore_ascii_case(b"e") {
                literal::escape_string(inner)?
            } else if prefix.eq_ignore_ascii_case(b"u&") && scs {
                literal::unicode_string(inner, uescape)?
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(lossy(&value))
}

/// `text` with every multibyte character of `encoding` replaced by U+FFFD (see
/// [`string_content`]).
fn replace_multibyte(text: &[u8], encoding: ClientEncoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < text.len() {
        if text[i] < 0x80 {
            out.push(text[i]);
            i += 1;
        } else {
            out.extend_from_slice("\u{fffd}".as_bytes());
            i += encoding.char_len(text, i).max(1);
        }
    }
    out
}

/// Length of the opening `$tag$` of a dollar-quoted token's text.
fn dollar_tag_len(text: &[u8]) -> Option<usize> {
    if text.first() != Some(&b'$') {
        return None;
    }
    text.iter().skip(1).position(|&b| b == b'$').map(|p| p + 2)
}

/// A boolean utility option's value as PostgreSQL's `defGetBoolean` reads it: no value, `true`,
/// `on` or `1` is true; `false`, `off` or `0` is false (words, quoted identifiers and strings in
/// any case); anything else is `None`, which PostgreSQL rejects ("requires a Boolean value").
fn bool_value(sql: &[u8], value: Option<Token>, opts: LexOptions) -> Option<bool> {
    let Some(t) = value else { return Some(true) };
    let word = |s: &[u8]| {
        if s.eq_ignore_ascii_case(b"true") || s.eq_ignore_ascii_case(b"on") {
            Some(true)
        } else if s.eq_ignore_ascii_case(b"false") || s.eq_ignore_ascii_case(b"off") {
            Some(false)
        } else {
            None
        }
    };
    match t.kind {
        TokenKind::Word => word(t.text(sql)),
        TokenKind::QuotedIdent => quoted_inner(t.text(sql)).and_then(|(i, _)| word(i)),
        TokenKind::String => string_content(sql, t, opts).and_then(|s| word(s.as_bytes())),
        TokenKind::Number => match t.text(sql) {
            b"1" => Some(true),
            b"0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Token cursor
// ---------------------------------------------------------------------------

/// The statement's non-comment tokens with one token of lookahead. Cloning it (to try a
/// keyword sequence and back off) is cheap: the lexer is a few words of state.
#[derive(Clone)]
struct Cursor<'a> {
    sql: &'a [u8],
    lex: Lexer<'a>,
    /// The next non-comment token.
    cur: Option<Token>,
    /// End offset of the last consumed token.
    last_end: usize,
    opts: LexOptions,
    /// The tokens cannot be PostgreSQL syntax (unbalanced parentheses): the result is Unknown
    /// whatever the statement parser returned.
    bad: bool,
}

fn next_code(lex: &mut Lexer<'_>) -> Option<Token> {
    lex.find(|t| !t.is_comment())
}

impl<'a> Cursor<'a> {
    fn new(sql: &'a [u8], start: usize, opts: LexOptions) -> Self {
        let mut lex = Lexer::at(sql, start, opts);
        let cur = next_code(&mut lex);
        Cursor {
            sql,
            lex,
            cur,
            last_end: start,
            opts,
            bad: false,
        }
    }

    fn peek(&self) -> Option<Token> {
        self.cur
    }

    fn peek2(&self) -> Option<Token> {
        self.cur?;
        next_code(&mut self.lex.clone())
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.cur?;
        self.cur = next_code(&mut self.lex);
        self.last_end = t.end;
        Some(t)
    }

    fn at_end(&self) -> bool {
        self.cur.is_none()
    }

    fn expect_end(&self) -> Option<()> {
        self.at_end().then_some(())
    }

    /// The next token is the keyword `kw`.
    fn is(&self, kw: &str) -> bool {
        self.cur.is_some_and(|t| t.is_word(self.sql, kw))
    }

    fn is2(&self, kw: &str) -> bool {
        self.peek2().is_some_and(|t| t.is_word(self.sql, kw))
    }

    fn is_kind(&self, kind: TokenKind) -> bool {
        self.cur.is_some_and(|t| t.kind == kind)
    }

    fn is_op(&self, op: &str) -> bool {
        self.cur
            .is_some_and(|t| t.kind == TokenKind::Operator && t.text(self.sql) == op.as_bytes())
    }

    fn eat(&mut self, kw: &str) -> bool {
        self.is(kw) && self.next().is_some()
    }

    /// Consumes the keyword sequence `kws` entirely, or nothing.
    fn eat_all(&mut self, kws: &[&str]) -> bool {
        let save = self.clone();
        if kws.iter().all(|kw| self.eat(kw)) {
            return true;
        }
        *self = save;
        false
    }

    fn expect(&mut self, kw: &str) -> Option<()> {
        self.eat(kw).then_some(())
    }

    fn eat_kind(&mut self, kind: TokenKind) -> bool {
        self.is_kind(kind) && self.next().is_some()
    }

    fn eat_op(&mut self, op: &str) -> bool {
        self.is_op(op) && self.next().is_some()
    }

    /// Skips a parenthesised group starting at the next token (which must be `(`) and returns the
    /// number of its comma-separated top-level elements (0 for `()`).
    fn skip_parens(&mut self) -> Option<usize> {
        if !self.eat_kind(TokenKind::LParen) {
            return None;
        }
        let (mut depth, mut commas, mut empty) = (1usize, 0usize, true);
        while let Some(t) = self.next() {
            match t.kind {
                TokenKind::LParen => depth += 1,
                TokenKind::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(if empty { 0 } else { commas + 1 });
                    }
                }
                TokenKind::Comma if depth == 1 => commas += 1,
                _ => {}
            }
            empty = false;
        }
        self.bad = true;
        None
    }

    /// Consumes the rest of the statement, checking that parentheses balance.
    fn skip_rest(&mut self) {
        while let Some(t) = self.peek() {
            match t.kind {
                TokenKind::LParen => {
                    self.skip_parens();
                }
                TokenKind::RParen => {
                    self.bad = true;
                    self.next();
                }
                _ => {
                    self.next();
                }
            }
        }
    }

    /// The next token of the current list item (an ALTER TABLE sub-command, say): `None` at a
    /// top-level `,` or the end. A parenthesised group is skipped whole and returned as its `(`.
    fn item_next(&mut self) -> Option<Token> {
        let t = self.peek()?;
        match t.kind {
            TokenKind::Comma => None,
            TokenKind::LParen => {
                self.skip_parens();
                Some(t)
            }
            TokenKind::RParen => {
                self.bad = true;
                None
            }
            _ => self.next(),
        }
    }

    fn skip_item(&mut self) {
        while self.item_next().is_some() {}
    }

    /// Consumes the rest of the item (or, with `whole`, the statement) and reports whether the
    /// keyword `first` (followed by `second`, if given) appears outside parentheses.
    fn rest_has(&mut self, first: &str, second: Option<&str>, whole: bool) -> bool {
        let mut found = false;
        loop {
            let t = if whole && self.is_kind(TokenKind::Comma) {
                self.next()
            } else {
                self.item_next()
            };
            let Some(t) = t else { return found };
            if t.is_word(self.sql, first) && second.is_none_or(|s| self.is(s)) {
                found = true;
            }
        }
    }

    /// An identifier at a `ColId` position (table, index, column, constraint name).
    fn read_ident(&mut self) -> Option<String> {
        self.read_ident_as(Kw::ColId)
    }

    fn read_ident_as(&mut self, kw: Kw) -> Option<String> {
        let t = self.peek()?;
        let s = ident_text(self.sql, t, kw)?;
        self.next();
        // A bad UESCAPE clause is a syntax error the server reports; the name is still this.
        let _ = self.eat_uescape(t);
        Some(s)
    }

    /// After a `U&"…"` / `U&'…'` token: its optional `UESCAPE 'c'` clause, and the escape
    /// character it names (`\` without one). `None` when the clause is not a valid one
    /// (PostgreSQL: "UESCAPE must be followed by a simple string literal", "invalid Unicode
    /// escape character").
    fn eat_uescape(&mut self, t: Token) -> Option<u8> {
        let unicode = t
            .text(self.sql)
            .get(..2)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"u&"));
        if !unicode || !self.is("UESCAPE") {
            return Some(b'\\');
        }
        self.next();
        let s = self.peek().filter(|s| s.kind == TokenKind::String)?;
        self.next();
        let value = string_content(self.sql, s, self.opts)?;
        literal::uescape_char(value.as_bytes())
    }

    /// `any_name` / `qualified_name`: `ColId [ . attr_name [ . attr_name ] ]`. A three-part name
    /// (`db.schema.name`) keeps its last two parts; more parts are a syntax error.
    fn read_name(&mut self) -> Option<Name> {
        self.read_name_as(Kw::ColId)
    }

    fn read_name_as(&mut self, first: Kw) -> Option<Name> {
        let mut name = self.read_ident_as(first)?;
        let mut schema = None;
        let mut parts = 1;
        while self.eat_op(".") {
            parts += 1;
            if parts > 3 {
                return None;
            }
            let part = self.read_ident_as(Kw::Label)?;
            schema = Some(std::mem::replace(&mut name, part));
        }
        Some(Name { schema, name })
    }

    /// `relation_expr`: `name [ * ] | ONLY name | ONLY ( name )`, and whether ONLY was given.
    fn read_relation(&mut self) -> Option<(Name, bool)> {
        if self.eat("ONLY") {
            if self.eat_kind(TokenKind::LParen) {
                let name = self.read_name()?;
                return self.eat_kind(TokenKind::RParen).then_some((name, true));
            }
            return Some((self.read_name()?, true));
        }
        let name = self.read_name()?;
        self.eat_op("*");
        Some((name, false))
    }

    /// `relation_expr [, ...]`.
    fn read_relations(&mut self) -> Option<Vec<Name>> {
        let mut names = vec![self.read_relation()?.0];
        while self.eat_kind(TokenKind::Comma) {
            names.push(self.read_relation()?.0);
        }
        Some(names)
    }

    /// `any_name [, ...]`.
    fn read_names(&mut self) -> Option<Vec<Name>> {
        let mut names = vec![self.read_name()?];
        while self.eat_kind(TokenKind::Comma) {
            names.push(self.read_name()?);
        }
        Some(names)
    }

    /// A string constant, with its `UESCAPE` clause if any.
    fn read_sconst(&mut self) -> Option<String> {
        let t = self.peek()?;
        if !matches!(t.kind, TokenKind::String | TokenKind::DollarString) {
            return None;
        }
        self.next();
        let uescape = self.eat_uescape(t)?;
        string_content_uescape(self.sql, t, self.opts, uescape)
    }

    /// `NonReservedWord_or_Sconst` (a LANGUAGE name): words lower-cased, quoted ones as written.
    fn read_word_or_sconst(&mut self) -> Option<String> {
        if self.is_kind(TokenKind::String) || self.is_kind(TokenKind::DollarString) {
            self.read_sconst()
        } else {
            self.read_ident_as(Kw::NonReserved)
        }
    }

    /// A type name as written, words lower-cased and tokens re-joined canonically
    /// (`numeric(10,2)`, `character varying(20)`, `timestamp(3) with time zone`, `int[]`). Ends
    /// before a top-level `,` / `)` or one of `stops` (the type's first token never stops it,
    /// since a user type may be called `storage`, say).
    fn read_type(&mut self, stops: &[&str]) -> Option<String> {
        let mut out = String::new();
        let mut depth = 0usize;
        let mut prev: Option<TokenKind> = None;
        while let Some(t) = self.peek() {
            if depth == 0
                && (matches!(t.kind, TokenKind::Comma | TokenKind::RParen)
                    || (prev.is_some() && stops.iter().any(|s| t.is_word(self.sql, s))))
            {
                break;
            }
            match t.kind {
                TokenKind::LParen => depth += 1,
                TokenKind::RParen => depth -= 1,
                _ => {}
            }
            self.next();
            let wordlike = |k| {
                matches!(
                    k,
                    TokenKind::Word | TokenKind::QuotedIdent | TokenKind::Number
                )
            };
            if wordlike(t.kind) && prev.is_some_and(|p| wordlike(p) || p == TokenKind::RParen) {
                out.push(' ');
            }
            let text = String::from_utf8_lossy(t.text(self.sql));
            if t.kind == TokenKind::Word {
                out.extend(text.chars().map(|c| c.to_ascii_lowercase()));
            } else {
                out.push_str(&text);
            }
            prev = Some(t.kind);
        }
        if depth != 0 {
            self.bad = true;
        }
        (!out.is_empty()).then_some(out)
    }

    /// `( option [ value ] [, ...] )` — gram.y's `utility_option_list` (VACUUM, ANALYZE,
    /// CLUSTER, REINDEX). Calls `each(name, value)` per option with the value read as a boolean
    /// (see [`bool_value`]; a value of several tokens, such as `-1`, is `None`).
    fn utility_options(&mut self, mut each: impl FnMut(Token, Option<bool>)) -> Option<()> {
        if !self.eat_kind(TokenKind::LParen) {
            return None;
        }
        loop {
            let name = self.next()?;
            if !matches!(name.kind, TokenKind::Word | TokenKind::QuotedIdent) {
                return None;
            }
            let (mut value, mut tokens) = (None, 0);
            while let Some(t) = self.peek() {
                match t.kind {
                    TokenKind::Comma | TokenKind::RParen => break,
                    TokenKind::LParen => return None,
                    _ => {}
                }
                self.next();
                value = Some(t);
                tokens += 1;
            }
            each(
                name,
                (tokens <= 1)
                    .then(|| bool_value(self.sql, value, self.opts))
                    .flatten(),
            );
            if self.eat_kind(TokenKind::RParen) {
                return Some(());
            }
            if !self.eat_kind(TokenKind::Comma) {
                return None;
            }
        }
    }

    /// A sub-command tag from the next one or two words, upper-cased, without consuming them
    /// (`OWNER TO`, `SET STORAGE`, …).
    fn head_tag(&self) -> Option<String> {
        let first = self.peek().filter(|t| t.kind == TokenKind::Word)?;
        let mut tag = upper(self.sql, first);
        if let Some(second) = self.peek2().filter(|t| t.kind == TokenKind::Word) {
            tag.push(' ');
            tag.push_str(&upper(self.sql, second));
        }
        Some(tag)
    }
}

/// `[ CASCADE | RESTRICT ]`: whether CASCADE was given.
fn drop_behavior(c: &mut Cursor<'_>) -> bool {
    let cascade = c.eat("CASCADE");
    if !cascade {
        c.eat("RESTRICT");
    }
    cascade
}

// ---------------------------------------------------------------------------
// Statement dispatch
// ---------------------------------------------------------------------------

type Parser = fn(&mut Cursor<'_>) -> Option<DdlKind>;

/// Statement families with their own parser, by first keyword.
const FAMILIES: &[(&str, Parser)] = &[
    ("CREATE", create),
    ("ALTER", alter),
    ("DROP", drop),
    ("REINDEX", reindex),
    ("CLUSTER", cluster),
    ("VACUUM", vacuum),
    ("LOCK", lock),
    ("TRUNCATE", truncate),
    ("REFRESH", refresh),
    ("DO", do_block),
];

/// Other statements recognised by their leading words alone: (words, command tag).
const LEADING: &[(&[&str], &str)] = &[
    (&["ANALYZE"], "ANALYZE"),
    (&["ANALYSE"], "ANALYZE"),
    (&["CHECKPOINT"], "CHECKPOINT"),
    (&["COMMENT", "ON"], "COMMENT"),
    (&["GRANT"], "GRANT"),
    (&["REVOKE"], "REVOKE"),
    (&["SECURITY", "LABEL"], "SECURITY LABEL"),
    (&["IMPORT", "FOREIGN", "SCHEMA"], "IMPORT FOREIGN SCHEMA"),
    (&["REASSIGN", "OWNED"], "REASSIGN OWNED"),
    (&["LOAD"], "LOAD"),
    // Not DDL, but sent here by the prefilter and harmless.
    (&["SET", "CONSTRAINTS"], "SET CONSTRAINTS"),
];

fn other(tag: &str) -> DdlKind {
    DdlKind::Other {
        tag: tag.to_owned(),
    }
}

/// The first kind in `kinds` whose words come next, as `Other { tag }`.
fn other_kind(c: &mut Cursor<'_>, kinds: &[(&[&str], &str)]) -> Option<DdlKind> {
    kinds
        .iter()
        .find(|(words, _)| c.eat_all(words))
        .map(|(_, tag)| other(tag))
}

fn statement(c: &mut Cursor<'_>) -> Option<DdlKind> {
    for (kw, parse) in FAMILIES {
        if c.eat(kw) {
            return parse(c);
        }
    }
    other_kind(c, LEADING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::{ClientEncoding, split_statements};
    use crate::sql::statement::{AlterOp, DropObject, LockMode, ReindexTarget};
    use proptest::prelude::*;

    pub(super) fn classify_str(sql: &str) -> Ddl {
        classify(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }

    pub(super) fn kind(sql: &str) -> DdlKind {
        classify_str(sql).kind
    }

    /// `"s.t"` → `Name { schema: Some("s"), name: "t" }`, `"t"` → bare.
    pub(super) fn n(s: &str) -> Name {
        match s.split_once('.') {
            Some((schema, name)) => Name::new(Some(schema), name),
            None => Name::bare(s),
        }
    }

    pub(super) fn other_tag(tag: &str) -> DdlKind {
        DdlKind::Other {
            tag: tag.to_owned(),
        }
    }

    pub(super) fn check(cases: &[(&str, DdlKind)]) {
        for (sql, want) in cases {
            let got = classify_str(sql);
            assert_eq!(&got.kind, want, "classifying {sql:?}");
            assert_eq!(got.understood, Understood::Fallback, "classifying {sql:?}");
        }
    }

    pub(super) fn reindex(
        target: ReindexTarget,
        name: Option<&str>,
        concurrently: bool,
    ) -> DdlKind {
        DdlKind::Reindex {
            target,
            name: name.map(n),
            concurrently,
        }
    }

    #[test]
    fn locks_truncate_drop_table_refresh() {
        use LockMode::*;
        let lock = |tables: &[&str], mode| DdlKind::Lock {
            tables: tables.iter().map(|t| n(t)).collect(),
            mode,
        };
        let names = |v: &[&str]| v.iter().map(|t| n(t)).collect::<Vec<_>>();
        check(&[
            ("LOCK t", lock(&["t"], AccessExclusive)),
            (
                "LOCK TABLE ONLY a, s.b * IN SHARE MODE NOWAIT",
                lock(&["a", "s.b"], Share),
            ),
            (
                "LOCK TABLE t IN ACCESS SHARE MODE",
                lock(&["t"], AccessShare),
            ),
            ("LOCK TABLE t IN ROW SHARE MODE", lock(&["t"], RowShare)),
            (
                "LOCK TABLE t IN ROW EXCLUSIVE MODE",
                lock(&["t"], RowExclusive),
            ),
            (
                "LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE",
                lock(&["t"], ShareUpdateExclusive),
            ),
            (
                "LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE",
                lock(&["t"], ShareRowExclusive),
            ),
            ("LOCK TABLE t IN EXCLUSIVE MODE", lock(&["t"], Exclusive)),
            (
                "lock table t in access exclusive mode",
                lock(&["t"], AccessExclusive),
            ),
            (
                "TRUNCATE t",
                DdlKind::Truncate {
                    names: names(&["t"]),
                    cascade: false,
                },
            ),
            (
                "TRUNCATE TABLE ONLY a, b * RESTART IDENTITY CASCADE",
                DdlKind::Truncate {
                    names: names(&["a", "b"]),
                    cascade: true,
                },
            ),
            (
                "TRUNCATE a CONTINUE IDENTITY RESTRICT",
                DdlKind::Truncate {
                    names: names(&["a"]),
                    cascade: false,
                },
            ),
            (
                "DROP TABLE IF EXISTS a, s.b CASCADE",
                DdlKind::DropTable {
                    names: names(&["a", "s.b"]),
                    cascade: true,
                },
            ),
            (
                "DROP TABLE t",
                DdlKind::DropTable {
                    names: names(&["t"]),
                    cascade: false,
                },
            ),
            (
                "REFRESH MATERIALIZED VIEW CONCURRENTLY s.mv WITH DATA",
                DdlKind::RefreshMaterializedView {
                    name: n("s.mv"),
                    concurrently: true,
                },
            ),
            (
                "REFRESH MATERIALIZED VIEW mv WITH NO DATA",
                DdlKind::RefreshMaterializedView {
                    name: n("mv"),
                    concurrently: false,
                },
            ),
        ]);
    }

    #[test]
    fn types_domains_and_database() {
        check(&[
            ("ALTER SEQUENCE s RESTART", other_tag("ALTER SEQUENCE")),
            ("SET CONSTRAINTS x IMMEDIATE", other_tag("SET CONSTRAINTS")),
            ("SET CONSTRAINTS ALL DEFERRED", other_tag("SET CONSTRAINTS")),
            (
                "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' BEFORE 'ok'",
                DdlKind::AlterTypeAddValue {
                    type_name: n("mood"),
                    value: Some("meh".into()),
                    positioned: true,
                },
            ),
            (
                "ALTER TYPE s.mood RENAME VALUE 'a' TO 'b'",
                DdlKind::AlterTypeRenameValue {
                    type_name: n("s.mood"),
                },
            ),
            ("ALTER TYPE mood OWNER TO bob", other_tag("ALTER TYPE")),
            (
                "CREATE TYPE mood AS ENUM ('sad', 'ok')",
                DdlKind::CreateEnum { name: n("mood") },
            ),
            (
                "CREATE TYPE pair AS (a int, b int)",
                other_tag("CREATE TYPE"),
            ),
            (
                "CREATE DOMAIN pos AS int CHECK (VALUE > 0)",
                DdlKind::CreateDomainWithConstraint { name: n("pos") },
            ),
            (
                "CREATE DOMAIN nn text NOT NULL",
                DdlKind::CreateDomainWithConstraint { name: n("nn") },
            ),
            (
                "CREATE DOMAIN plain AS numeric(10, 2) DEFAULT 0",
                other_tag("CREATE DOMAIN"),
            ),
            (
                "ALTER DOMAIN pos ADD CONSTRAINT c CHECK (VALUE < 10) NOT VALID",
                DdlKind::AlterDomainAddConstraint {
                    name: n("pos"),
                    not_valid: true,
                },
            ),
            (
                "ALTER DOMAIN pos ADD CHECK (VALUE < 10)",
                DdlKind::AlterDomainAddConstraint {
                    name: n("pos"),
                    not_valid: false,
                },
            ),
            (
                "ALTER DOMAIN pos VALIDATE CONSTRAINT c",
                other_tag("ALTER DOMAIN"),
            ),
            ("DROP DATABASE prod", DdlKind::DropDatabase),
            (
                "DROP DATABASE IF EXISTS prod WITH (FORCE)",
                DdlKind::DropDatabase,
            ),
        ]);
    }

    #[test]
    fn leading_word_forms() {
        let cases: &[(&str, &str)] = &[
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE OR REPLACE TEMP RECURSIVE VIEW v (n) AS SELECT 1",
                "CREATE VIEW",
            ),
            (
                "CREATE MATERIALIZED VIEW mv AS SELECT 1",
                "CREATE MATERIALIZED VIEW",
            ),
            ("CREATE SEQUENCE s", "CREATE SEQUENCE"),
            ("CREATE UNLOGGED SEQUENCE s", "CREATE SEQUENCE"),
            ("CREATE SCHEMA app", "CREATE SCHEMA"),
            (
                "CREATE EXTENSION IF NOT EXISTS pgcrypto",
                "CREATE EXTENSION",
            ),
            (
                "CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()",
                "CREATE TRIGGER",
            ),
            (
                "CREATE OR REPLACE CONSTRAINT TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()",
                "CREATE TRIGGER",
            ),
            ("DROP TRIGGER tr ON t", "DROP TRIGGER"),
            ("CREATE POLICY p ON t USING (true)", "CREATE POLICY"),
            ("CREATE STATISTICS st ON a, b FROM t", "CREATE STATISTICS"),
            ("COMMENT ON TABLE t IS 'x'", "COMMENT"),
            ("GRANT SELECT ON t TO r", "GRANT"),
            ("REVOKE ALL ON t FROM r", "REVOKE"),
            ("SECURITY LABEL ON TABLE t IS 'x'", "SECURITY LABEL"),
            (
                "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r",
                "ALTER DEFAULT PRIVILEGES",
            ),
            ("CREATE ROLE r", "CREATE ROLE"),
            ("CREATE USER u", "CREATE ROLE"),
            ("CREATE USER MAPPING FOR u SERVER s", "CREATE USER MAPPING"),
            ("ALTER ROLE r SET x = 1", "ALTER ROLE"),
            ("ALTER USER u PASSWORD 'x'", "ALTER ROLE"),
            ("CREATE PUBLICATION p FOR ALL TABLES", "CREATE PUBLICATION"),
            ("DROP VIEW v", "DROP VIEW"),
            (
                "DROP MATERIALIZED VIEW IF EXISTS mv",
                "DROP MATERIALIZED VIEW",
            ),
            ("DROP SEQUENCE s", "DROP SEQUENCE"),
            ("DROP FUNCTION f(int)", "DROP FUNCTION"),
            ("DROP TYPE mood", "DROP TYPE"),
            (
                "DROP TEXT SEARCH DICTIONARY d",
                "DROP TEXT SEARCH DICTIONARY",
            ),
            ("DROP PROCEDURAL LANGUAGE l", "DROP LANGUAGE"),
            (
                "ALTER MATERIALIZED VIEW mv SET TABLESPACE x",
                "ALTER MATERIALIZED VIEW",
            ),
            ("ALTER FUNCTION f() OWNER TO r", "ALTER FUNCTION"),
            ("CHECKPOINT", "CHECKPOINT"),
            (
                "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y",
                "IMPORT FOREIGN SCHEMA",
            ),
            ("REASSIGN OWNED BY a TO b", "REASSIGN OWNED"),
            ("CREATE DATABASE d", "CREATE DATABASE"),
            ("ALTER DATABASE d SET x = 1", "ALTER DATABASE"),
            ("ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM"),
            ("CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE"),
            ("DROP TABLESPACE ts", "DROP TABLESPACE"),
            ("DROP RULE r ON t", "DROP RULE"),
            ("CREATE CAST (a AS b) WITHOUT FUNCTION", "CREATE CAST"),
            (
                "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = f)",
                "CREATE OPERATOR",
            ),
            (
                "CREATE OPERATOR CLASS c FOR TYPE int USING btree AS OPERATOR 1 <",
                "CREATE OPERATOR CLASS",
            ),
            (
                "CREATE OR REPLACE AGGREGATE a (int) (SFUNC = f, STYPE = int)",
                "CREATE AGGREGATE",
            ),
            ("CREATE COLLATION c (locale = 'x')", "CREATE COLLATION"),
            (
                "CREATE DEFAULT CONVERSION c FOR 'a' TO 'b' FROM f",
                "CREATE CONVERSION",
            ),
            (
                "CREATE TEXT SEARCH CONFIGURATION c (COPY = english)",
                "CREATE TEXT SEARCH CONFIGURATION",
            ),
            (
                "CREATE FOREIGN TABLE f (a int) SERVER s",
                "CREATE FOREIGN TABLE",
            ),
            (
                "CREATE FOREIGN DATA WRAPPER w",
                "CREATE FOREIGN DATA WRAPPER",
            ),
            ("CREATE SERVER s FOREIGN DATA WRAPPER w", "CREATE SERVER"),
            (
                "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
                "CREATE EVENT TRIGGER",
            ),
            (
                "CREATE ACCESS METHOD m TYPE TABLE HANDLER h",
                "CREATE ACCESS METHOD",
            ),
            (
                "CREATE OR REPLACE TRUSTED PROCEDURAL LANGUAGE l HANDLER h",
                "CREATE LANGUAGE",
            ),
            (
                "CREATE TRANSFORM FOR int LANGUAGE l (FROM SQL WITH FUNCTION f(internal))",
                "CREATE TRANSFORM",
            ),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p",
                "CREATE SUBSCRIPTION",
            ),
            ("LOAD 'auto_explain'", "LOAD"),
        ];
        for (sql, tag) in cases {
            let got = classify_str(sql);
            assert_eq!(got.kind, other_tag(tag), "classifying {sql:?}");
            assert_eq!(got.understood, Understood::Fallback);
        }
    }

    #[test]
    fn unknown_forms() {
        for sql in [
            "",
            "   ",
            "-- only a comment",
            "/* only */ /* comments */",
            "'x'",
            "(SELECT 1)",
            "\"CREATE\" INDEX i ON t (a)",
            "FROBNICATE t",
            "CREATE WIDGET w",
            "CREATE",
            "REPACK t",
            "REPACK (VERBOSE) t USING INDEX i",
            "SELECT 1",
            "SET x = 1",
            "EXPLAIN ANALYZE SELECT 1",
            // Statements that must match to the last token.
            "DROP INDEX",
            "DROP INDEX i j",
            "DROP INDEX concurrently",
            "DROP INDEX CONCURRENTLY i; DROP TABLE t",
            "DROP INDEX a.b.c.d",
            "DROP INDEX \"\"",
            "DROP INDEX s.",
            "DROP TABLE t, u extra",
            "REINDEX",
            "REINDEX t",
            "REINDEX TABLE",
            "REINDEX TABLE t extra",
            "REINDEX (VERBOSE TABLE t",
            "VACUUM FULL t u",
            "VACUUM (FULL t",
            "VACUUM FREEZE FULL t",
            "CLUSTER t USING",
            "LOCK",
            "LOCK TABLE t IN SHARE",
            "LOCK TABLE t IN WEIRD MODE",
            "TRUNCATE",
            "TRUNCATE t RESTART",
            "REFRESH MATERIALIZED VIEW",
            "REFRESH VIEW v",
            // Unreadable or incomplete ALTER TABLE.
            "ALTER TABLE",
            "ALTER TABLE t",
            "ALTER TABLE t ,",
            "ALTER TABLE ALL IN TABLESPACE a SET TABLESPACE b",
            "ALTER TABLE select ADD COLUMN a int",
            "ALTER TABLE t ADD COLUMN",
            "ALTER TABLE t ADD COLUMN a",
            "ALTER TABLE t ADD CONSTRAINT",
            "ALTER TABLE t ALTER COLUMN TYPE int",
            "ALTER TABLE t ADD CHECK (a > 0",
            "ALTER TABLE t SET TABLESPACE x)",
            "ALTER TABLE t (a)",
            "ALTER INDEX i",
            "ALTER INDEX i OWNER TO r",
            "ALTER INDEX i SET (a = 1), RESET (b)",
            "ALTER TYPE",
            "ALTER WIDGET w",
            // CREATE forms.
            "CREATE INDEX ON t",
            "CREATE INDEX ON t ()",
            "CREATE INDEX IF NOT EXISTS ON t (a)",
            "CREATE INDEX s.i ON t (a)",
            "CREATE UNIQUE TABLE t (a int)",
            "CREATE TEMP INDEX i ON t (a)",
            "CREATE OR REPLACE TABLE t (a int)",
            "CREATE TABLE t",
            "CREATE TABLE t (a int REFERENCES)",
            "CREATE TABLE t (a int",
            "CREATE TEXT SEARCH x",
            "CREATE LOCAL VIEW v AS SELECT 1",
            // Unterminated tokens: PostgreSQL rejects the whole Query.
            "DROP INDEX \"i",
            "DO $$ BEGIN",
            "DO 'abc",
            "DROP INDEX i /* c",
        ] {
            let got = classify_str(sql);
            assert_eq!(got.kind, DdlKind::Unknown, "classifying {sql:?}");
            assert_eq!(got.understood, Understood::Unknown, "classifying {sql:?}");
        }
    }

    #[test]
    fn name_folding() {
        let drop1 = |sql: &str| match kind(sql) {
            DdlKind::DropIndex { names, .. } => names,
            other => panic!("{sql:?}: {other:?}"),
        };
        let cases: &[(&str, Name)] = &[
            ("DROP INDEX MyIdx", n("myidx")),
            ("DROP INDEX \"MyIdx\"", n("MyIdx")),
            ("DROP INDEX \"a\"\"b\"", n("a\"b")),
            ("DROP INDEX \"S\".\"I\"", Name::new(Some("S"), "I")),
            ("DROP INDEX Db.Sch.Idx", Name::new(Some("sch"), "idx")),
            // Only ASCII is folded (downcase_identifier); non-ASCII kept as is.
            ("DROP INDEX ÄBC", n("Äbc")),
            ("DROP INDEX U&\"d\\0061t\"", n("d\\0061t")),
            ("DROP INDEX U&\"d!0061t\" UESCAPE '!'", n("d!0061t")),
            // Any keyword is a valid name part after a dot.
            ("DROP INDEX s.select", Name::new(Some("s"), "select")),
            ("DROP INDEX \"select\"", n("select")),
        ];
        for (sql, want) in cases {
            assert_eq!(drop1(sql), vec![want.clone()], "classifying {sql:?}");
        }
        // Invalid UTF-8 is converted lossily.
        let sql = b"DROP INDEX \"a\xffb\"";
        let got = classify(sql, 0, sql.len(), LexOptions::default());
        assert_eq!(
            got.kind,
            DdlKind::DropIndex {
                names: vec![n("a\u{fffd}b")],
                concurrently: false,
                if_exists: false,
                cascade: false
            }
        );
    }

    #[test]
    fn spans_of_a_multi_statement_query() {
        let sql = b"SELECT 1; /* x */ DROP INDEX CONCURRENTLY i; REINDEX TABLE t;\nVACUUM (FULL) t";
        let opts = LexOptions::default();
        let kinds: Vec<DdlKind> = split_statements(sql, opts)
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| classify(sql, s.start, s.end, opts).kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                DdlKind::Unknown,
                DdlKind::DropIndex {
                    names: vec![n("i")],
                    concurrently: true,
                    if_exists: false,
                    cascade: false
                },
                reindex(ReindexTarget::Table, Some("t"), false),
                DdlKind::Vacuum {
                    full: true,
                    tables: vec![n("t")]
                },
            ]
        );
        // Out-of-range and inverted spans are empty statements, never a panic.
        assert_eq!(classify(sql, 50, 10, opts).kind, DdlKind::Unknown);
        assert_eq!(classify(sql, 0, 1000, opts).kind, DdlKind::Unknown);
        assert_eq!(classify(sql, 1000, 2000, opts).kind, DdlKind::Unknown);
        // The span end cuts the statement: only `DROP IN` is seen.
        assert_eq!(classify(b"DROP INDEX i", 0, 7, opts).kind, DdlKind::Unknown);
    }

    #[test]
    fn lex_options_are_respected() {
        // With standard_conforming_strings off, `'…\'…'` is one escape string, decoded.
        let sql = br"DO 'RAISE NOTICE \'x\''";
        let off = LexOptions {
            standard_conforming_strings: false,
            ..LexOptions::default()
        };
        assert_eq!(
            classify(sql, 0, sql.len(), off).kind,
            DdlKind::Do {
                language: None,
                body: "RAISE NOTICE 'x'".to_owned()
            }
        );
        // With it on, the same bytes are a literal followed by junk.
        assert_eq!(
            classify(sql, 0, sql.len(), LexOptions::default()).kind,
            DdlKind::Unknown
        );
        // SJIS: 0x95 0x5C is one character, so the `\` does not escape anything.
        let sql = b"DROP INDEX \"\x95\x5c\"";
        let sjis = LexOptions {
            encoding: ClientEncoding::Sjis,
            ..LexOptions::default()
        };
        assert!(matches!(
            classify(sql, 0, sql.len(), sjis).kind,
            DdlKind::DropIndex { .. }
        ));
    }

    // ----- properties ------------------------------------------------------

    const FRAGMENTS: &[&str] = &[
        "CREATE",
        "ALTER",
        "DROP",
        "TABLE",
        "INDEX",
        "UNIQUE",
        "CONCURRENTLY",
        "IF",
        "NOT",
        "EXISTS",
        "ON",
        "ONLY",
        "USING",
        "ADD",
        "COLUMN",
        "CONSTRAINT",
        "FOREIGN",
        "KEY",
        "REFERENCES",
        "CHECK",
        "PRIMARY",
        "DEFAULT",
        "GENERATED",
        "ALWAYS",
        "AS",
        "IDENTITY",
        "STORED",
        "VIRTUAL",
        "NULL",
        "VALID",
        "VALIDATE",
        "SET",
        "TYPE",
        "DATA",
        "RENAME",
        "TO",
        "REINDEX",
        "VACUUM",
        "FULL",
        "CLUSTER",
        "LOCK",
        "IN",
        "MODE",
        "SHARE",
        "EXCLUSIVE",
        "TRUNCATE",
        "CASCADE",
        "DO",
        "LANGUAGE",
        "FUNCTION",
        "BEGIN",
        "ATOMIC",
        "END",
        "RETURN",
        "REFRESH",
        "MATERIALIZED",
        "VIEW",
        "ENUM",
        "DOMAIN",
        "VALUE",
        "ATTACH",
        "DETACH",
        "PARTITION",
        "OF",
        "TEMP",
        "OR",
        "REPLACE",
        "CASE",
        "UESCAPE",
        "t",
        "s",
        "x",
        "1",
        "0",
        "false",
        "(",
        ")",
        ",",
        ".",
        "*",
        "::",
        ";",
        "'a'",
        "''",
        "E'\\''",
        "$$ b $$",
        "$q$",
        "\"Q\"",
        "\"\"",
        "U&\"a\"",
        "U&'a'",
        "B'1'",
        "--c\n",
        "/* c */",
        "/*",
        "'",
        "\"",
        "\u{e9}",
        "\u{fffd}",
    ];

    fn sqlish() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..30)
            .prop_map(|parts| parts.join(" ").into_bytes())
    }

    fn any_opts() -> impl Strategy<Value = LexOptions> {
        use ClientEncoding::*;
        (
            any::<bool>(),
            prop::sample::select(vec![AsciiSafe, Sjis, Big5, Gbk, Uhc, Gb18030, Johab]),
        )
            .prop_map(|(scs, encoding)| LexOptions {
                standard_conforming_strings: scs,
                encoding,
            })
    }

    fn consistent(ddl: &Ddl) -> bool {
        (ddl.kind == DdlKind::Unknown) == (ddl.understood == Understood::Unknown)
            && matches!(ddl.understood, Understood::Fallback | Understood::Unknown)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn prop_arbitrary_bytes_never_panic(
            sql in prop::collection::vec(any::<u8>(), 0..200),
            start in 0usize..220,
            end in 0usize..220,
            opts in any_opts(),
        ) {
            let ddl = classify(&sql, start, end, opts);
            prop_assert!(consistent(&ddl));
        }

        #[test]
        fn prop_sqlish_never_panics(sql in sqlish(), opts in any_opts()) {
            for span in split_statements(&sql, opts) {
                let ddl = classify(&sql, span.start, span.end, opts);
                prop_assert!(consistent(&ddl), "{ddl:?}");
            }
            let ddl = classify(&sql, 0, sql.len(), opts);
            prop_assert!(consistent(&ddl), "{ddl:?}");
        }

        // Comments between tokens never change the result.
        #[test]
        fn prop_comments_are_invisible(sql in sqlish()) {
            let opts = LexOptions::default();
            let tokens: Vec<_> = Lexer::new(&sql, opts).collect();
            let mut commented = Vec::new();
            for t in &tokens {
                commented.extend_from_slice(t.text(&sql));
                commented.extend_from_slice(b" /* c */ ");
            }
            let spaced: Vec<u8> = tokens.iter().flat_map(|t| [t.text(&sql), b" "].concat()).collect();
            let a = classify(&spaced, 0, spaced.len(), opts);
            let b = classify(&commented, 0, commented.len(), opts);
            // A `--` comment token followed by our `/* c */` on the same line would swallow it,
            // and the texts of defaults/bodies include the inserted comments; compare the rest.
            if !tokens.iter().any(|t| t.kind == TokenKind::LineComment) {
                prop_assert_eq!(std::mem::discriminant(&a.kind), std::mem::discriminant(&b.kind));
            }
        }
    }

    #[test]
    fn statements_that_reach_tables_indirectly() {
        let o = |schema: Option<&str>, name: &str, args: bool| DropObject {
            name: Name::new(schema, name),
            args,
        };
        let cascade =
            |tag: &str, if_exists: bool, objects: Option<Vec<DropObject>>| DdlKind::DropCascade {
                tag: tag.into(),
                if_exists,
                objects,
            };
        let cases = [
            (
                "DROP SCHEMA app CASCADE",
                cascade("DROP SCHEMA", false, Some(vec![o(None, "app", false)])),
            ),
            ("DROP SCHEMA app", other_tag("DROP SCHEMA")),
            ("DROP OWNED BY r", DdlKind::DropOwned),
            ("drop owned by a, b restrict", DdlKind::DropOwned),
            (
                "DROP TYPE IF EXISTS mood, s.other CASCADE",
                cascade(
                    "DROP TYPE",
                    true,
                    Some(vec![o(None, "mood", false), o(Some("s"), "other", false)]),
                ),
            ),
            (
                "DROP FUNCTION f(int, text) CASCADE",
                cascade("DROP FUNCTION", false, Some(vec![o(None, "f", true)])),
            ),
            (
                "DROP CAST (int AS s.t) CASCADE",
                cascade("DROP CAST", false, None),
            ),
            (
                "DROP TEXT SEARCH CONFIGURATION c CASCADE",
                cascade("DROP TEXT SEARCH CONFIGURATION", false, None),
            ),
            (
                "DROP ACCESS METHOD am CASCADE",
                cascade("DROP ACCESS METHOD", false, None),
            ),
            (
                "DROP OPERATOR === (int, int) CASCADE",
                cascade("DROP OPERATOR", false, None),
            ),
            ("DROP DOMAIN d RESTRICT", other_tag("DROP DOMAIN")),
            (
                "drop function if exists a, s.b(int), c() cascade",
                cascade(
                    "DROP FUNCTION",
                    true,
                    Some(vec![
                        o(None, "a", false),
                        o(Some("s"), "b", true),
                        o(None, "c", true),
                    ]),
                ),
            ),
            (
                "DROP AGGREGATE ag(*) CASCADE",
                cascade("DROP AGGREGATE", false, Some(vec![o(None, "ag", true)])),
            ),
            (
                "DROP EXTENSION citext CASCADE",
                cascade(
                    "DROP EXTENSION",
                    false,
                    Some(vec![o(None, "citext", false)]),
                ),
            ),
            // Not plain names (an array type, a column's type, a two-word type, a type with an
            // argument list, something after CASCADE): no objects, judged without facts.
            (
                "DROP TYPE mood[] CASCADE",
                cascade("DROP TYPE", false, None),
            ),
            (
                "DROP TYPE IF EXISTS t.c%TYPE CASCADE",
                cascade("DROP TYPE", false, None),
            ),
            (
                "DROP DOMAIN double precision CASCADE",
                cascade("DROP DOMAIN", false, None),
            ),
            (
                "DROP TYPE t(int) CASCADE",
                cascade("DROP TYPE", false, None),
            ),
            (
                "DROP SCHEMA a CASCADE RESTRICT",
                cascade("DROP SCHEMA", false, None),
            ),
            (
                "DROP SCHEMA cascade CASCADE",
                cascade("DROP SCHEMA", false, Some(vec![o(None, "cascade", false)])),
            ),
            (
                "DROP VIEW v CASCADE",
                cascade("DROP VIEW", false, Some(vec![o(None, "v", false)])),
            ),
            (
                "DROP MATERIALIZED VIEW IF EXISTS s.mv, mv2 CASCADE",
                cascade(
                    "DROP MATERIALIZED VIEW",
                    true,
                    Some(vec![o(Some("s"), "mv", false), o(None, "mv2", false)]),
                ),
            ),
            (
                "DROP SEQUENCE s CASCADE",
                cascade("DROP SEQUENCE", false, Some(vec![o(None, "s", false)])),
            ),
            // Unicode-escaped names are not decoded here: no objects.
            (
                "DROP TYPE IF EXISTS U&\"d\\0061ta\" CASCADE",
                cascade("DROP TYPE", false, None),
            ),
            (
                "DROP TYPE IF EXISTS s.u&\"d!0061ta\" UESCAPE '!' CASCADE",
                cascade("DROP TYPE", false, None),
            ),
            (
                "DROP TYPE IF EXISTS \"Mood\", Mood CASCADE",
                cascade(
                    "DROP TYPE",
                    true,
                    Some(vec![o(None, "Mood", false), o(None, "mood", false)]),
                ),
            ),
            (
                "ALTER TYPE victim RENAME ATTRIBUTE name TO nm CASCADE",
                DdlKind::AlterTypeRenameAttribute {
                    type_name: n("victim"),
                    from: "name".into(),
                    to: "nm".into(),
                },
            ),
            (
                "ALTER SCHEMA a RENAME TO b",
                DdlKind::RenameSchema {
                    name: "a".into(),
                    to: "b".into(),
                },
            ),
            ("ALTER SCHEMA a OWNER TO r", other_tag("ALTER SCHEMA")),
            (
                "ALTER VIEW v RENAME TO w",
                DdlKind::RenameView {
                    name: n("v"),
                    materialized: false,
                    column: None,
                    to: "w".into(),
                },
            ),
            (
                "ALTER MATERIALIZED VIEW IF EXISTS s.mv RENAME COLUMN a TO b",
                DdlKind::RenameView {
                    name: n("s.mv"),
                    materialized: true,
                    column: Some("a".into()),
                    to: "b".into(),
                },
            ),
            (
                "ALTER VIEW v RENAME a TO b",
                DdlKind::RenameView {
                    name: n("v"),
                    materialized: false,
                    column: Some("a".into()),
                    to: "b".into(),
                },
            ),
            ("ALTER VIEW v OWNER TO r", other_tag("ALTER VIEW")),
            (
                "ALTER FOREIGN TABLE IF EXISTS ONLY victim RENAME id TO i",
                DdlKind::AlterTable {
                    name: n("victim"),
                    only: true,
                    if_exists: true,
                    ops: vec![AlterOp::RenameColumn {
                        from: "id".into(),
                        to: "i".into(),
                    }],
                },
            ),
            (
                "ALTER FOREIGN TABLE f RENAME TO g",
                other_tag("ALTER FOREIGN TABLE"),
            ),
            (
                "ALTER FOREIGN TABLE f OPTIONS (ADD x 'y')",
                other_tag("ALTER FOREIGN TABLE"),
            ),
            (
                "ALTER MATERIALIZED VIEW mv SET TABLESPACE x",
                other_tag("ALTER MATERIALIZED VIEW"),
            ),
            (
                "CREATE OR REPLACE RULE r AS ON INSERT TO t DO INSTEAD (SELECT 1; SELECT 2)",
                DdlKind::CreateRule {
                    name: "r".into(),
                    event: "INSERT".into(),
                    table: n("t"),
                    instead: true,
                },
            ),
            (
                "CREATE RULE \"_RETURN\" AS ON SELECT TO s.victim WHERE (true) DO INSTEAD SELECT 1",
                DdlKind::CreateRule {
                    name: "_RETURN".into(),
                    event: "SELECT".into(),
                    table: n("s.victim"),
                    instead: true,
                },
            ),
            (
                "CREATE RULE r AS ON DELETE TO t DO ALSO NOTHING",
                DdlKind::CreateRule {
                    name: "r".into(),
                    event: "DELETE".into(),
                    table: n("t"),
                    instead: false,
                },
            ),
        ];
        for (sql, expected) in cases {
            let d = classify_str(sql);
            assert_eq!(d.kind, expected, "{sql}");
            assert_eq!(d.understood, Understood::Fallback, "{sql}");
        }
        for sql in [
            "ALTER VIEW v RENAME TO",
            "ALTER TYPE t RENAME ATTRIBUTE a",
            "CREATE RULE r AS ON TRUNCATE TO t DO NOTHING",
            "CREATE RULE r AS ON SELECT TO t WHERE (x DO INSTEAD NOTHING",
        ] {
            assert_eq!(kind(sql), DdlKind::Unknown, "{sql}");
        }
    }
}
