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

use super::keywords::{RESERVED, TYPE_FUNC_NAME, in_list};
use super::lexer::{ClientEncoding, LexOptions, Lexer, Token, TokenKind};
use super::literal;
use super::statement::{
    AddColumn, AddConstraint, AlterOp, ConstraintKind, Ddl, DdlKind, DefaultExpr, DropObject,
    LockMode, Name, ReindexTarget, Understood,
};

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

// ---------------------------------------------------------------------------
// CREATE
// ---------------------------------------------------------------------------

// Modifiers between CREATE and the object kind, as a bit set.
const OR_REPLACE: u16 = 1;
const TEMP: u16 = 1 << 1;
const UNLOGGED: u16 = 1 << 2;
const RECURSIVE: u16 = 1 << 3;
const UNIQUE: u16 = 1 << 4;
const TRUSTED: u16 = 1 << 5;
const PROCEDURAL: u16 = 1 << 6;
const DEFAULT: u16 = 1 << 7;
const CONSTRAINT: u16 = 1 << 8;

/// `CREATE` object kinds recognised by their leading words: (words, command tag, modifiers the
/// grammar allows). Longer word sequences come before their prefixes.
const CREATE_KINDS: &[(&[&str], &str, u16)] = &[
    (&["ACCESS", "METHOD"], "CREATE ACCESS METHOD", 0),
    (&["AGGREGATE"], "CREATE AGGREGATE", OR_REPLACE),
    (&["CAST"], "CREATE CAST", 0),
    (&["COLLATION"], "CREATE COLLATION", 0),
    (&["CONVERSION"], "CREATE CONVERSION", DEFAULT),
    (&["DATABASE"], "CREATE DATABASE", 0),
    (&["EVENT", "TRIGGER"], "CREATE EVENT TRIGGER", 0),
    (&["EXTENSION"], "CREATE EXTENSION", 0),
    (
        &["FOREIGN", "DATA", "WRAPPER"],
        "CREATE FOREIGN DATA WRAPPER",
        0,
    ),
    (&["FOREIGN", "TABLE"], "CREATE FOREIGN TABLE", 0),
    (&["GROUP"], "CREATE ROLE", 0),
    (
        &["LANGUAGE"],
        "CREATE LANGUAGE",
        OR_REPLACE | TRUSTED | PROCEDURAL,
    ),
    (
        &["MATERIALIZED", "VIEW"],
        "CREATE MATERIALIZED VIEW",
        UNLOGGED,
    ),
    (&["OPERATOR", "CLASS"], "CREATE OPERATOR CLASS", 0),
    (&["OPERATOR", "FAMILY"], "CREATE OPERATOR FAMILY", 0),
    (&["OPERATOR"], "CREATE OPERATOR", 0),
    (&["POLICY"], "CREATE POLICY", 0),
    (&["PUBLICATION"], "CREATE PUBLICATION", 0),
    (&["ROLE"], "CREATE ROLE", 0),
    (&["RULE"], "CREATE RULE", OR_REPLACE),
    (&["SCHEMA"], "CREATE SCHEMA", 0),
    (&["SEQUENCE"], "CREATE SEQUENCE", TEMP | UNLOGGED),
    (&["SERVER"], "CREATE SERVER", 0),
    (&["STATISTICS"], "CREATE STATISTICS", 0),
    (&["SUBSCRIPTION"], "CREATE SUBSCRIPTION", 0),
    (&["TABLESPACE"], "CREATE TABLESPACE", 0),
    (
        &["TEXT", "SEARCH", "CONFIGURATION"],
        "CREATE TEXT SEARCH CONFIGURATION",
        0,
    ),
    (
        &["TEXT", "SEARCH", "DICTIONARY"],
        "CREATE TEXT SEARCH DICTIONARY",
        0,
    ),
    (
        &["TEXT", "SEARCH", "PARSER"],
        "CREATE TEXT SEARCH PARSER",
        0,
    ),
    (
        &["TEXT", "SEARCH", "TEMPLATE"],
        "CREATE TEXT SEARCH TEMPLATE",
        0,
    ),
    (&["TRANSFORM"], "CREATE TRANSFORM", OR_REPLACE),
    (&["TRIGGER"], "CREATE TRIGGER", OR_REPLACE | CONSTRAINT),
    (&["USER", "MAPPING"], "CREATE USER MAPPING", 0),
    (&["USER"], "CREATE ROLE", 0),
    (&["VIEW"], "CREATE VIEW", OR_REPLACE | TEMP | RECURSIVE),
];

/// `Some(())` if every modifier in `mods` is one of `allowed`.
fn only(mods: u16, allowed: u16) -> Option<()> {
    (mods & !allowed == 0).then_some(())
}

/// The modifiers gram.y allows after CREATE, in its order: `OR REPLACE`,
/// `[ GLOBAL | LOCAL ] { TEMP | TEMPORARY } | UNLOGGED`, `RECURSIVE`, `UNIQUE`, `TRUSTED`,
/// `PROCEDURAL`, `DEFAULT` (conversion), `CONSTRAINT` (trigger).
fn create_modifiers(c: &mut Cursor<'_>) -> u16 {
    let mut mods = 0;
    if c.eat_all(&["OR", "REPLACE"]) {
        mods |= OR_REPLACE;
    }
    if c.eat_all(&["GLOBAL", "TEMP"])
        || c.eat_all(&["GLOBAL", "TEMPORARY"])
        || c.eat_all(&["LOCAL", "TEMP"])
        || c.eat_all(&["LOCAL", "TEMPORARY"])
        || c.eat("TEMP")
        || c.eat("TEMPORARY")
    {
        mods |= TEMP;
    } else if c.eat("UNLOGGED") {
        mods |= UNLOGGED;
    }
    for (kw, bit) in [
        ("RECURSIVE", RECURSIVE),
        ("UNIQUE", UNIQUE),
        ("TRUSTED", TRUSTED),
        ("PROCEDURAL", PROCEDURAL),
        ("DEFAULT", DEFAULT),
        ("CONSTRAINT", CONSTRAINT),
    ] {
        if c.eat(kw) {
            mods |= bit;
        }
    }
    mods
}

fn create(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let mods = create_modifiers(c);
    if c.eat("INDEX") {
        only(mods, UNIQUE)?;
        return create_index(c, mods & UNIQUE != 0);
    }
    if c.eat("TABLE") {
        only(mods, TEMP | UNLOGGED)?;
        return create_table(c, mods & TEMP != 0);
    }
    if c.eat("FUNCTION") {
        only(mods, OR_REPLACE)?;
        return Some(create_function(c));
    }
    if c.eat("PROCEDURE") {
        only(mods, OR_REPLACE)?;
        return Some(create_function(c));
    }
    if c.eat("TYPE") {
        only(mods, 0)?;
        return create_type(c);
    }
    if c.eat("DOMAIN") {
        only(mods, 0)?;
        return create_domain(c);
    }
    if c.eat("RULE") {
        only(mods, OR_REPLACE)?;
        return create_rule(c);
    }
    let (_, tag, allowed) = CREATE_KINDS.iter().find(|(words, _, _)| c.eat_all(words))?;
    only(mods, *allowed)?;
    Some(other(tag))
}

/// `CREATE [ UNIQUE ] INDEX [ CONCURRENTLY ] [ [ IF NOT EXISTS ] name ] ON [ ONLY ] table
/// [ USING method ] ( element [, ...] ) [ INCLUDE (…) ] [ NULLS [ NOT ] DISTINCT ] [ WITH (…) ]
/// [ TABLESPACE ts ] [ WHERE predicate ]`. The index name is a bare `ColId` (it always lives in
/// the table's schema).
fn create_index(c: &mut Cursor<'_>, unique: bool) -> Option<DdlKind> {
    let concurrently = c.eat("CONCURRENTLY");
    let if_not_exists = c.eat_all(&["IF", "NOT", "EXISTS"]);
    let name = if c.is("ON") {
        None
    } else {
        Some(Name::bare(&c.read_ident()?))
    };
    if if_not_exists && name.is_none() {
        return None;
    }
    c.expect("ON")?;
    let (table, only) = c.read_relation()?;
    if c.eat("USING") {
        c.read_ident()?;
    }
    let columns = c.skip_parens()?;
    if columns == 0 {
        return None;
    }
    c.skip_rest();
    Some(DdlKind::CreateIndex {
        name,
        table,
        unique,
        concurrently,
        if_not_exists,
        only,
        columns,
    })
}

/// `CREATE [ [ GLOBAL | LOCAL ] { TEMP | TEMPORARY } | UNLOGGED ] TABLE [ IF NOT EXISTS ] name
/// { ( … ) | OF type … | PARTITION OF parent … | [ ( cols ) ] … AS query }`. `references`
/// collects every `REFERENCES target` of the definition (REFERENCES is reserved, so a bare word
/// can only be the foreign-key keyword); a CTAS query after a top-level `AS` is not looked into.
fn create_table(c: &mut Cursor<'_>, temporary: bool) -> Option<DdlKind> {
    c.eat_all(&["IF", "NOT", "EXISTS"]);
    let name = c.read_name()?;
    let mut partition_of = None;
    if c.eat_all(&["PARTITION", "OF"]) {
        partition_of = Some(c.read_name()?);
    } else if c.eat("OF") {
        c.read_name()?;
    } else if !(c.is_kind(TokenKind::LParen)
        || ["AS", "USING", "WITH", "WITHOUT", "ON", "TABLESPACE"]
            .iter()
            .any(|kw| c.is(kw)))
    {
        return None;
    }
    let mut references = Vec::new();
    let mut depth = 0usize;
    while let Some(t) = c.next() {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen if depth == 0 => return None,
            TokenKind::RParen => depth -= 1,
            _ if depth == 0 && t.is_word(c.sql, "AS") => {
                c.skip_rest();
                break;
            }
            _ if t.is_word(c.sql, "REFERENCES") => references.push(c.read_name()?),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    Some(DdlKind::CreateTable {
        name,
        temporary,
        partition_of,
        references,
    })
}

/// `CREATE [ OR REPLACE ] { FUNCTION | PROCEDURE } name ( [ args ] ) [ RETURNS … ]
/// { LANGUAGE l | AS 'def' [, 'link'] | sql_body | option } …`, where `sql_body` is
/// `BEGIN ATOMIC … END` or `RETURN expr` (PG 14). The body is the string content or the
/// `BEGIN ATOMIC … END` / `RETURN …` text. A routine whose name or argument list cannot be read is
/// not understood: its body, which would run on every call, is not known to be harmless.
fn create_function(c: &mut Cursor<'_>) -> DdlKind {
    let Some(name) = c.read_name_as(Kw::NonReserved) else {
        return DdlKind::Unknown;
    };
    if !c.is_kind(TokenKind::LParen) || c.skip_parens().is_none() {
        return DdlKind::Unknown;
    }
    let (mut language, mut body) = (None, None);
    while let Some(t) = c.peek() {
        if t.kind == TokenKind::LParen {
            c.skip_parens();
        } else if t.kind == TokenKind::RParen {
            c.bad = true;
            c.next();
        } else if c.eat("LANGUAGE") {
            // A language name ddlgate cannot read would leave the body read as PL/pgSQL.
            let Some(l) = c.read_word_or_sconst() else {
                return DdlKind::Unknown;
            };
            language = Some(l);
        } else if c.eat("AS") {
            // A body ddlgate cannot decode with certainty, or continued by a second literal
            // on the next line (which PostgreSQL joins to the first), is not read in part:
            // the statement is not understood (fail closed).
            let Some(def) = c.read_sconst() else {
                return DdlKind::Unknown;
            };
            if c.is_kind(TokenKind::String) || c.is_kind(TokenKind::DollarString) {
                return DdlKind::Unknown;
            }
            body = body.or(Some(def));
        } else if (t.is_word(c.sql, "BEGIN") && c.is2("ATOMIC")) || t.is_word(c.sql, "RETURN") {
            c.skip_rest();
            body = c.sql.get(t.start..c.last_end).map(lossy);
        } else {
            c.next();
        }
    }
    DdlKind::CreateFunction {
        name,
        language,
        body,
    }
}

/// `CREATE TYPE name AS ENUM ( … )`; every other CREATE TYPE form is `Other`.
fn create_type(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_name()?;
    if c.eat_all(&["AS", "ENUM"]) {
        c.skip_rest();
        return Some(DdlKind::CreateEnum { name });
    }
    Some(other("CREATE TYPE"))
}

/// `CREATE [ OR REPLACE ] RULE name AS ON { SELECT | INSERT | UPDATE | DELETE } TO table
/// [ WHERE condition ] DO [ ALSO | INSTEAD ] { NOTHING | command | ( command ; … ) }`. DO is
/// reserved, so the first top-level DO ends the condition.
fn create_rule(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_ident()?;
    c.expect("AS")?;
    c.expect("ON")?;
    let event = ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .into_iter()
        .find(|e| c.eat(e))?;
    c.expect("TO")?;
    let table = c.read_name()?;
    loop {
        let t = c.peek()?;
        match t.kind {
            TokenKind::LParen => {
                c.skip_parens()?;
            }
            TokenKind::RParen => return None,
            _ if t.is_word(c.sql, "DO") => break,
            _ => {
                c.next();
            }
        }
    }
    c.expect("DO")?;
    let instead = c.eat("INSTEAD");
    if !instead {
        c.eat("ALSO");
    }
    c.skip_rest();
    Some(DdlKind::CreateRule {
        name,
        event: event.to_owned(),
        table,
        instead,
    })
}

/// `CREATE DOMAIN name [ AS ] type [ COLLATE c ] [ DEFAULT expr ] [ constraint … ]`: with a
/// `CHECK` or `NOT NULL` constraint outside parentheses it is `CreateDomainWithConstraint`.
fn create_domain(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_name()?;
    let mut constrained = false;
    while let Some(t) = c.peek() {
        match t.kind {
            TokenKind::LParen => {
                c.skip_parens();
            }
            TokenKind::RParen => return None,
            _ => {
                c.next();
                if t.is_word(c.sql, "CHECK") || (t.is_word(c.sql, "NOT") && c.is("NULL")) {
                    constrained = true;
                }
            }
        }
    }
    Some(if constrained {
        DdlKind::CreateDomainWithConstraint { name }
    } else {
        other("CREATE DOMAIN")
    })
}

// ---------------------------------------------------------------------------
// ALTER
// ---------------------------------------------------------------------------

/// `ALTER` object kinds recognised by their leading words: (words, command tag).
const ALTER_KINDS: &[(&[&str], &str)] = &[
    (&["AGGREGATE"], "ALTER AGGREGATE"),
    (&["COLLATION"], "ALTER COLLATION"),
    (&["CONVERSION"], "ALTER CONVERSION"),
    (&["DATABASE"], "ALTER DATABASE"),
    (&["DEFAULT", "PRIVILEGES"], "ALTER DEFAULT PRIVILEGES"),
    (&["EVENT", "TRIGGER"], "ALTER EVENT TRIGGER"),
    (&["EXTENSION"], "ALTER EXTENSION"),
    (
        &["FOREIGN", "DATA", "WRAPPER"],
        "ALTER FOREIGN DATA WRAPPER",
    ),
    (&["FOREIGN", "TABLE"], "ALTER FOREIGN TABLE"),
    (&["FUNCTION"], "ALTER FUNCTION"),
    (&["GROUP"], "ALTER ROLE"),
    (&["LANGUAGE"], "ALTER LANGUAGE"),
    (&["PROCEDURAL", "LANGUAGE"], "ALTER LANGUAGE"),
    (&["LARGE", "OBJECT"], "ALTER LARGE OBJECT"),
    (&["MATERIALIZED", "VIEW"], "ALTER MATERIALIZED VIEW"),
    (&["OPERATOR", "CLASS"], "ALTER OPERATOR CLASS"),
    (&["OPERATOR", "FAMILY"], "ALTER OPERATOR FAMILY"),
    (&["OPERATOR"], "ALTER OPERATOR"),
    (&["POLICY"], "ALTER POLICY"),
    (&["PROCEDURE"], "ALTER PROCEDURE"),
    (&["PUBLICATION"], "ALTER PUBLICATION"),
    (&["ROLE"], "ALTER ROLE"),
    (&["ROUTINE"], "ALTER ROUTINE"),
    (&["RULE"], "ALTER RULE"),
    (&["SCHEMA"], "ALTER SCHEMA"),
    (&["SEQUENCE"], "ALTER SEQUENCE"),
    (&["SERVER"], "ALTER SERVER"),
    (&["STATISTICS"], "ALTER STATISTICS"),
    (&["SUBSCRIPTION"], "ALTER SUBSCRIPTION"),
    (&["SYSTEM"], "ALTER SYSTEM"),
    (&["TABLESPACE"], "ALTER TABLESPACE"),
    (
        &["TEXT", "SEARCH", "CONFIGURATION"],
        "ALTER TEXT SEARCH CONFIGURATION",
    ),
    (
        &["TEXT", "SEARCH", "DICTIONARY"],
        "ALTER TEXT SEARCH DICTIONARY",
    ),
    (&["TEXT", "SEARCH", "PARSER"], "ALTER TEXT SEARCH PARSER"),
    (
        &["TEXT", "SEARCH", "TEMPLATE"],
        "ALTER TEXT SEARCH TEMPLATE",
    ),
    (&["TRIGGER"], "ALTER TRIGGER"),
    (&["USER", "MAPPING"], "ALTER USER MAPPING"),
    (&["USER"], "ALTER ROLE"),
    (&["VIEW"], "ALTER VIEW"),
];

fn alter(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.eat("TABLE") {
        return alter_table(c);
    }
    if c.eat("INDEX") {
        return alter_index(c);
    }
    if c.eat("TYPE") {
        return alter_type(c);
    }
    if c.eat("DOMAIN") {
        return alter_domain(c);
    }
    if c.eat("SCHEMA") {
        return alter_schema(c);
    }
    if c.eat("VIEW") {
        return alter_view(c, false);
    }
    if c.eat_all(&["MATERIALIZED", "VIEW"]) {
        return alter_view(c, true);
    }
    if c.eat_all(&["FOREIGN", "TABLE"]) {
        return Some(alter_foreign_table(c));
    }
    other_kind(c, ALTER_KINDS)
}

/// `ALTER FOREIGN TABLE [ IF EXISTS ] [ ONLY ] name [ * ] RENAME [ COLUMN ] a TO b`: PostgreSQL
/// renames the column of a plain table this way too (renameatt does not check the relkind), so
/// it is the ALTER TABLE sub-command it amounts to. Every other form is `Other` (PostgreSQL
/// rejects them on anything but a foreign table).
fn alter_foreign_table(c: &mut Cursor<'_>) -> DdlKind {
    let mut probe = c.clone();
    let if_exists = probe.eat_all(&["IF", "EXISTS"]);
    let renamed = (|| {
        let (name, only) = probe.read_relation()?;
        probe.expect("RENAME")?;
        if probe.is("TO") || probe.is("CONSTRAINT") {
            return None;
        }
        probe.eat("COLUMN");
        let from = probe.read_ident()?;
        probe.expect("TO")?;
        let to = probe.read_ident()?;
        probe.expect_end()?;
        Some(DdlKind::AlterTable {
            name,
            only,
            if_exists,
            ops: vec![AlterOp::RenameColumn { from, to }],
        })
    })();
    match renamed {
        Some(kind) => {
            *c = probe;
            kind
        }
        None => other("ALTER FOREIGN TABLE"),
    }
}

/// `ALTER SCHEMA name RENAME TO new`; `OWNER TO` is `Other`.
fn alter_schema(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_ident()?;
    if c.eat_all(&["RENAME", "TO"]) {
        let to = c.read_ident()?;
        c.expect_end()?;
        return Some(DdlKind::RenameSchema { name, to });
    }
    Some(other("ALTER SCHEMA"))
}

/// `ALTER [ MATERIALIZED ] VIEW [ IF EXISTS ] name RENAME [ COLUMN ] a TO b` and `… RENAME TO
/// new`; the other forms (`ALTER COLUMN`, `OWNER TO`, `SET …`, `ALL IN TABLESPACE`) are `Other`.
fn alter_view(c: &mut Cursor<'_>, materialized: bool) -> Option<DdlKind> {
    let tag = if materialized {
        "ALTER MATERIALIZED VIEW"
    } else {
        "ALTER VIEW"
    };
    if c.is("ALL") {
        return Some(other(tag));
    }
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_name()?;
    if !c.eat("RENAME") {
        return Some(other(tag));
    }
    let column = if c.eat("TO") {
        None
    } else {
        c.eat("COLUMN");
        let from = c.read_ident()?;
        c.expect("TO")?;
        Some(from)
    };
    let to = c.read_ident()?;
    c.expect_end()?;
    Some(DdlKind::RenameView {
        name,
        materialized,
        column,
        to,
    })
}

/// `ALTER TABLE [ IF EXISTS ] [ ONLY ] name [ * ] action [, ...]`, the RENAME / SET SCHEMA /
/// ATTACH / DETACH forms included. `ALTER TABLE ALL IN TABLESPACE …` has no readable name (ALL
/// is reserved) and is Unknown.
fn alter_table(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let if_exists = c.eat_all(&["IF", "EXISTS"]);
    let (name, only) = c.read_relation()?;
    let mut ops = Vec::new();
    loop {
        ops.push(alter_table_action(c)?);
        // Whatever an action parser left (CASCADE, USING INDEX TABLESPACE …, storage options)
        // up to the next top-level comma.
        c.skip_item();
        if !c.eat_kind(TokenKind::Comma) {
            break;
        }
    }
    c.expect_end()?;
    Some(DdlKind::AlterTable {
        name,
        only,
        if_exists,
        ops,
    })
}

/// ALTER TABLE sub-commands the rules do not single out, by leading words: (words, tag).
const ALTER_TABLE_OTHER: &[(&[&str], &str)] = &[
    (&["ENABLE", "ALWAYS", "RULE"], "ENABLE RULE"),
    (&["ENABLE", "REPLICA", "RULE"], "ENABLE RULE"),
    (&["ENABLE", "RULE"], "ENABLE RULE"),
    (&["DISABLE", "RULE"], "DISABLE RULE"),
    (&["NO", "INHERIT"], "NO INHERIT"),
    (&["INHERIT"], "INHERIT"),
    (&["NOT", "OF"], "NOT OF"),
    (&["OF"], "OF"),
    (&["CLUSTER", "ON"], "CLUSTER ON"),
    (&["OWNER", "TO"], "OWNER TO"),
    (&["REPLICA", "IDENTITY"], "REPLICA IDENTITY"),
    (&["RESET"], "RESET"),
];

/// One ALTER TABLE sub-command (gram.y's `alter_table_cmd`, plus the RENAME, SET SCHEMA and
/// partition commands). Consumes its leading part; the caller skips the rest of the item.
fn alter_table_action(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("ADD") {
        return alter_add(c);
    }
    if c.eat("DROP") {
        return alter_drop(c);
    }
    if c.eat("ALTER") {
        return alter_column(c);
    }
    if c.eat_all(&["VALIDATE", "CONSTRAINT"]) {
        let name = c.read_ident()?;
        return Some(AlterOp::ValidateConstraint { name });
    }
    if c.eat("RENAME") {
        return alter_rename(c);
    }
    if c.eat("SET") {
        return alter_set(c);
    }
    if c.eat_all(&["ATTACH", "PARTITION"]) {
        let partition = c.read_name()?;
        return Some(AlterOp::AttachPartition { partition });
    }
    if c.eat_all(&["DETACH", "PARTITION"]) {
        // FINALIZE completes an interrupted DETACH … CONCURRENTLY; reported as not concurrent,
        // the stricter reading.
        let partition = c.read_name()?;
        let concurrently = c.eat("CONCURRENTLY");
        return Some(AlterOp::DetachPartition {
            partition,
            concurrently,
        });
    }
    if c.eat_all(&["ENABLE", "ROW", "LEVEL", "SECURITY"])
        || c.eat_all(&["DISABLE", "ROW", "LEVEL", "SECURITY"])
        || c.eat_all(&["FORCE", "ROW", "LEVEL", "SECURITY"])
        || c.eat_all(&["NO", "FORCE", "ROW", "LEVEL", "SECURITY"])
    {
        return Some(AlterOp::RowLevelSecurity);
    }
    // `{ ENABLE [ ALWAYS | REPLICA ] | DISABLE } TRIGGER { name | ALL | USER }`
    if c.eat_all(&["ENABLE", "TRIGGER"])
        || c.eat_all(&["ENABLE", "ALWAYS", "TRIGGER"])
        || c.eat_all(&["ENABLE", "REPLICA", "TRIGGER"])
    {
        return Some(AlterOp::EnableTrigger);
    }
    if c.eat_all(&["DISABLE", "TRIGGER"]) {
        return Some(AlterOp::DisableTrigger);
    }
    if let Some(DdlKind::Other { tag }) = other_kind(c, ALTER_TABLE_OTHER) {
        return Some(AlterOp::Other(tag));
    }
    // Generic options of a foreign table. Any other word starts no sub-command ddlgate knows:
    // not understood (fail closed).
    if c.is("OPTIONS") {
        return c.head_tag().map(AlterOp::Other);
    }
    None
}

/// Table constraint keywords (all reserved, so never a column name), and EXCLUDE (unreserved:
/// a constraint only when `(` or USING follows).
fn starts_table_constraint(c: &Cursor<'_>) -> bool {
    ["CONSTRAINT", "CHECK", "UNIQUE", "PRIMARY", "FOREIGN", "NOT"]
        .iter()
        .any(|kw| c.is(kw))
        || (c.is("EXCLUDE")
            && c.peek2()
                .is_some_and(|t| t.kind == TokenKind::LParen || t.is_word(c.sql, "USING")))
}

/// `ADD [ COLUMN ] column_def` or `ADD table_constraint [ NOT VALID ]`.
fn alter_add(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if !c.eat("COLUMN") && starts_table_constraint(c) {
        return add_constraint(c).map(AlterOp::AddConstraint);
    }
    add_column(c).map(AlterOp::AddColumn)
}

/// `[ CONSTRAINT name ] { CHECK ( … ) | UNIQUE [ NULLS [ NOT ] DISTINCT ] ( … ) | UNIQUE USING
/// INDEX i | PRIMARY KEY ( … ) | PRIMARY KEY USING INDEX i | EXCLUDE … | FOREIGN KEY ( … )
/// REFERENCES t … | NOT NULL col } [ NOT VALID ]` (NOT NULL: PG 18).
fn add_constraint(c: &mut Cursor<'_>) -> Option<AddConstraint> {
    let name = if c.eat("CONSTRAINT") {
        Some(c.read_ident()?)
    } else {
        None
    };
    let kind = if c.eat("CHECK") {
        c.skip_parens()?;
        ConstraintKind::Check
    } else if c.eat("UNIQUE") {
        ConstraintKind::Unique {
            using_index: c.eat_all(&["USING", "INDEX"]),
        }
    } else if c.eat_all(&["PRIMARY", "KEY"]) {
        ConstraintKind::PrimaryKey {
            using_index: c.eat_all(&["USING", "INDEX"]),
        }
    } else if c.eat("EXCLUDE") {
        ConstraintKind::Exclusion
    } else if c.eat_all(&["FOREIGN", "KEY"]) {
        c.skip_parens()?;
        c.expect("REFERENCES")?;
        ConstraintKind::ForeignKey {
            references: c.read_name()?,
        }
    } else if c.eat_all(&["NOT", "NULL"]) {
        c.read_ident()?;
        ConstraintKind::NotNull
    } else {
        return None;
    };
    let not_valid = c.rest_has("NOT", Some("VALID"), false);
    Some(AddConstraint {
        name,
        kind,
        not_valid,
    })
}

/// Words that end a column's type: the start of a column constraint or option.
const COLUMN_TYPE_STOPS: &[&str] = &[
    "CONSTRAINT",
    "NOT",
    "NULL",
    "CHECK",
    "DEFAULT",
    "GENERATED",
    "UNIQUE",
    "PRIMARY",
    "REFERENCES",
    "COLLATE",
    "COMPRESSION",
    "STORAGE",
    "DEFERRABLE",
    "INITIALLY",
];

/// `serial` pseudo-types (`transformColumnDefinition` only looks at an unqualified name).
fn is_serial(data_type: &str) -> bool {
    let t = data_type
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(data_type);
    [
        "serial",
        "bigserial",
        "smallserial",
        "serial4",
        "serial8",
        "serial2",
    ]
    .contains(&t)
}

/// `[ IF NOT EXISTS ] name type [ COLLATE c ] [ column_constraint … ]` where a column constraint
/// is `[ CONSTRAINT n ] { NOT NULL | NULL | CHECK (…) | DEFAULT expr | GENERATED … | UNIQUE … |
/// PRIMARY KEY … | REFERENCES t … }` plus `COMPRESSION m`, `STORAGE s` (PG 16) and the
/// deferrability / enforcement attributes.
fn add_column(c: &mut Cursor<'_>) -> Option<AddColumn> {
    c.eat_all(&["IF", "NOT", "EXISTS"]);
    let name = c.read_ident()?;
    let data_type = c.read_type(COLUMN_TYPE_STOPS)?;
    let mut col = AddColumn {
        name,
        serial: is_serial(&data_type),
        data_type,
        not_null: false,
        default: None,
        identity: false,
        generated_stored: false,
        generated_virtual: false,
        constraints: Vec::new(),
    };
    loop {
        if c.eat_all(&["NOT", "NULL"]) {
            col.not_null = true;
        } else if c.eat("DEFAULT") {
            col.default = Some(read_default(c)?);
        } else if c.eat("CHECK") {
            c.skip_parens()?;
            col.constraints.push(ConstraintKind::Check);
        } else if c.eat("UNIQUE") {
            col.constraints
                .push(ConstraintKind::Unique { using_index: false });
        } else if c.eat_all(&["PRIMARY", "KEY"]) {
            col.constraints
                .push(ConstraintKind::PrimaryKey { using_index: false });
        } else if c.eat("REFERENCES") {
            let references = c.read_name()?;
            skip_fk_tail(c);
            col.constraints
                .push(ConstraintKind::ForeignKey { references });
        } else if c.eat("GENERATED") {
            generated(c, &mut col)?;
        } else if c.eat("CONSTRAINT") {
            c.read_ident()?;
        } else if c.eat("STORAGE") || c.eat("COMPRESSION") {
            // `STORAGE DEFAULT` must not read as a DEFAULT clause.
            c.item_next();
        } else if c.item_next().is_none() {
            break;
        }
    }
    Some(col)
}

/// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY [ ( seq_options ) ]` or
/// `GENERATED ALWAYS AS ( expr ) [ STORED | VIRTUAL ]` (PG 18 defaults to VIRTUAL; only an
/// explicit VIRTUAL is reported).
fn generated(c: &mut Cursor<'_>, col: &mut AddColumn) -> Option<()> {
    let always = c.eat("ALWAYS");
    if !always {
        c.expect("BY")?;
        c.expect("DEFAULT")?;
    }
    c.expect("AS")?;
    if c.eat("IDENTITY") {
        col.identity = true;
        if c.is_kind(TokenKind::LParen) {
            c.skip_parens()?;
        }
    } else if always && c.is_kind(TokenKind::LParen) {
        c.skip_parens()?;
        if c.eat("STORED") {
            col.generated_stored = true;
        } else if c.eat("VIRTUAL") {
            col.generated_virtual = true;
        }
    } else {
        return None;
    }
    Some(())
}

/// After `REFERENCES t`: `[ ( col ) ] [ MATCH { FULL | PARTIAL | SIMPLE } ]
/// [ ON { DELETE | UPDATE } { NO ACTION | RESTRICT | CASCADE | SET { NULL | DEFAULT } [ ( cols ) ] } ]…`
/// — consumed so that `SET DEFAULT` is not taken for a DEFAULT clause.
fn skip_fk_tail(c: &mut Cursor<'_>) {
    if c.is_kind(TokenKind::LParen) {
        c.skip_parens();
    }
    loop {
        if c.eat("MATCH") {
            c.item_next();
        } else if c.eat_all(&["ON", "DELETE"]) || c.eat_all(&["ON", "UPDATE"]) {
            if c.eat("SET") {
                c.item_next();
                if c.is_kind(TokenKind::LParen) {
                    c.skip_parens();
                }
            } else {
                // NO ACTION | RESTRICT | CASCADE
                c.eat("NO");
                c.item_next();
            }
        } else {
            return;
        }
    }
}

/// Words that end a DEFAULT expression (gram.y's `b_expr`) at the top level: the next column
/// constraint. Unreserved ones only when not called as a function.
fn ends_default(c: &Cursor<'_>, t: Token, prev: Token) -> bool {
    let sql = c.sql;
    let called = || c.peek2().is_some_and(|n| n.kind == TokenKind::LParen);
    if [
        "CONSTRAINT",
        "CHECK",
        "DEFAULT",
        "UNIQUE",
        "PRIMARY",
        "REFERENCES",
        "COLLATE",
        "DEFERRABLE",
        "INITIALLY",
    ]
    .iter()
    .any(|kw| t.is_word(sql, kw))
    {
        return true;
    }
    if ["GENERATED", "COMPRESSION", "STORAGE", "ENFORCED"]
        .iter()
        .any(|kw| t.is_word(sql, kw))
    {
        return !called();
    }
    if t.is_word(sql, "NOT") {
        return ["NULL", "DEFERRABLE", "ENFORCED"]
            .iter()
            .any(|kw| c.is2(kw));
    }
    // A NULL after a complete operand is the NULL column constraint (`DEFAULT 0 NULL`); after an
    // operator or IS / FROM (`IS DISTINCT FROM NULL`) it is part of the expression.
    if t.is_word(sql, "NULL") {
        return match prev.kind {
            TokenKind::Operator => false,
            TokenKind::Word => !["IS", "FROM", "NOT"].iter().any(|kw| prev.is_word(sql, kw)),
            _ => true,
        };
    }
    false
}

/// `DEFAULT b_expr`: the expression text as written and the functions it calls (words or quoted
/// identifiers followed by `(`, lower-cased when unquoted, the last part of a qualified name;
/// reserved keywords such as CAST and type names after `::` are not calls).
fn read_default(c: &mut Cursor<'_>) -> Option<DefaultExpr> {
    let sql = c.sql;
    let start = c.peek()?.start;
    let mut functions = Vec::new();
    let (mut depth, mut case_depth) = (0usize, 0usize);
    let mut prev: Option<Token> = None;
    while let Some(t) = c.peek() {
        if depth == 0 {
            if matches!(t.kind, TokenKind::Comma | TokenKind::RParen) {
                break;
            }
            if case_depth == 0 && prev.is_some_and(|p| ends_default(c, t, p)) {
                break;
            }
        }
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth -= 1,
            _ if t.is_word(sql, "CASE") => case_depth += 1,
            _ if t.is_word(sql, "END") => case_depth = case_depth.saturating_sub(1),
            _ => {}
        }
        c.next();
        let cast_or_as = prev.is_some_and(|p| {
            (p.kind == TokenKind::Operator && p.text(sql) == b"::") || p.is_word(sql, "AS")
        });
        if c.is_kind(TokenKind::LParen)
            && !cast_or_as
            && let Some(f) = ident_text(sql, t, Kw::NonReserved)
        {
            functions.push(f);
        }
        prev = Some(t);
    }
    if depth != 0 {
        c.bad = true;
    }
    prev?;
    Some(DefaultExpr {
        text: lossy(sql.get(start..c.last_end)?),
        functions,
    })
}

/// `ALTER [ COLUMN ] c { [ SET DATA ] TYPE t [ COLLATE x ] [ USING expr ] | SET NOT NULL |
/// DROP NOT NULL | SET DEFAULT e | DROP DEFAULT | SET STATISTICS n | … }` and
/// `ALTER CONSTRAINT …`.
fn alter_column(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("CONSTRAINT") {
        return Some(AlterOp::Other("ALTER CONSTRAINT".to_owned()));
    }
    c.eat("COLUMN");
    let column = c.read_ident()?;
    if c.eat_all(&["SET", "DATA", "TYPE"]) || c.eat("TYPE") {
        let data_type = c.read_type(&["COLLATE", "USING"])?;
        let using = c.rest_has("USING", None, false);
        return Some(AlterOp::AlterColumnType {
            column,
            data_type,
            using,
        });
    }
    if c.eat_all(&["SET", "NOT", "NULL"]) {
        return Some(AlterOp::SetNotNull { column });
    }
    if c.eat_all(&["DROP", "NOT", "NULL"]) {
        return Some(AlterOp::DropNotNull { column });
    }
    if c.eat_all(&["SET", "DEFAULT"]) {
        return Some(AlterOp::SetDefault { column });
    }
    if c.eat_all(&["DROP", "DEFAULT"]) {
        return Some(AlterOp::DropDefault { column });
    }
    if c.is("SET") && c.is2("STATISTICS") {
        return Some(AlterOp::Other("SET STATISTICS".to_owned()));
    }
    // SET STORAGE, SET COMPRESSION, SET ( … ), RESET ( … ), ADD GENERATED, SET GENERATED, the
    // identity's sequence options (SET INCREMENT …), DROP IDENTITY, SET EXPRESSION, DROP
    // EXPRESSION, RESTART, OPTIONS (foreign tables): gram.y's `alter_table_cmd` and
    // `alter_identity_column_option`. Any other word is not a form ddlgate knows, so the
    // statement is not understood (fail closed), never a harmless "other".
    const SET_WORDS: &[&str] = &[
        "STORAGE",
        "COMPRESSION",
        "GENERATED",
        "EXPRESSION",
        "AS",
        "CACHE",
        "CYCLE",
        "INCREMENT",
        "LOGGED",
        "MAXVALUE",
        "MINVALUE",
        "NO",
        "OWNED",
        "SEQUENCE",
        "START",
        "RESTART",
        "UNLOGGED",
    ];
    let known = if c.is("SET") {
        c.peek2()
            .is_some_and(|t| t.kind == TokenKind::LParen || SET_WORDS.iter().any(|w| c.is2(w)))
    } else if c.is("RESET") {
        c.peek2().is_some_and(|t| t.kind == TokenKind::LParen)
    } else if c.is("DROP") {
        c.is2("IDENTITY") || c.is2("EXPRESSION")
    } else if c.is("ADD") {
        c.is2("GENERATED")
    } else {
        c.is("RESTART") || c.is("OPTIONS")
    };
    if !known {
        return None;
    }
    c.head_tag().map(AlterOp::Other)
}

/// `DROP CONSTRAINT [ IF EXISTS ] n` or `DROP [ COLUMN ] [ IF EXISTS ] c`, then
/// `[ RESTRICT | CASCADE ]`.
fn alter_drop(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("CONSTRAINT") {
        c.eat_all(&["IF", "EXISTS"]);
        let name = c.read_ident()?;
        return Some(AlterOp::DropConstraint { name });
    }
    c.eat("COLUMN");
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_ident()?;
    Some(AlterOp::DropColumn { name })
}

/// `RENAME TO t`, `RENAME CONSTRAINT a TO b` or `RENAME [ COLUMN ] a TO b`.
fn alter_rename(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("TO") {
        let to = c.read_ident()?;
        return Some(AlterOp::RenameTable { to });
    }
    if c.eat("CONSTRAINT") {
        return Some(AlterOp::Other("RENAME CONSTRAINT".to_owned()));
    }
    c.eat("COLUMN");
    let from = c.read_ident()?;
    c.expect("TO")?;
    let to = c.read_ident()?;
    Some(AlterOp::RenameColumn { from, to })
}

/// The `SET …` sub-commands of ALTER TABLE.
fn alter_set(c: &mut Cursor<'_>) -> Option<AlterOp> {
    let op = if c.eat("TABLESPACE") {
        AlterOp::SetTablespace
    } else if c.eat("LOGGED") {
        AlterOp::SetLogged
    } else if c.eat("UNLOGGED") {
        AlterOp::SetUnlogged
    } else if c.eat_all(&["ACCESS", "METHOD"]) {
        AlterOp::SetAccessMethod
    } else if c.eat("SCHEMA") {
        AlterOp::SetSchema
    } else if c.eat_all(&["WITHOUT", "CLUSTER"]) {
        AlterOp::Other("SET WITHOUT CLUSTER".to_owned())
    } else if c.eat_all(&["WITHOUT", "OIDS"]) {
        AlterOp::Other("SET WITHOUT OIDS".to_owned())
    } else if c.is_kind(TokenKind::LParen) {
        AlterOp::Other("SET".to_owned())
    } else {
        // gram.y has no other `SET` sub-command of ALTER TABLE: not understood (fail closed).
        return None;
    };
    Some(op)
}

/// `ALTER INDEX [ IF EXISTS ] name { RENAME TO n | SET TABLESPACE t | ATTACH PARTITION i |
/// [ NO ] DEPENDS ON EXTENSION e | SET ( … ) | RESET ( … ) | ALTER [ COLUMN ] n SET STATISTICS s }`
/// and `ALTER INDEX ALL IN TABLESPACE …`. Other (or several comma-separated) sub-commands are
/// Unknown.
fn alter_index(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.eat_all(&["ALL", "IN", "TABLESPACE"]) {
        c.skip_rest();
        return Some(DdlKind::AlterIndex {
            name: Name::bare("all"),
            action: "ALL IN TABLESPACE".to_owned(),
        });
    }
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_name()?;
    let action = if c.eat_all(&["RENAME", "TO"]) {
        "RENAME"
    } else if c.eat_all(&["SET", "TABLESPACE"]) {
        "SET TABLESPACE"
    } else if c.eat_all(&["ATTACH", "PARTITION"]) {
        "ATTACH PARTITION"
    } else if c.eat_all(&["DEPENDS", "ON", "EXTENSION"])
        || c.eat_all(&["NO", "DEPENDS", "ON", "EXTENSION"])
    {
        "DEPENDS ON EXTENSION"
    } else if c.is("SET") && c.peek2().is_some_and(|t| t.kind == TokenKind::LParen) {
        "SET"
    } else if c.is("RESET") && c.peek2().is_some_and(|t| t.kind == TokenKind::LParen) {
        "RESET"
    } else if c.eat("ALTER") {
        "ALTER COLUMN"
    } else {
        return None;
    };
    c.skip_item();
    c.expect_end()?;
    Some(DdlKind::AlterIndex {
        name,
        action: action.to_owned(),
    })
}

/// `ALTER TYPE name ADD VALUE …` / `RENAME VALUE …`; other ALTER TYPE forms are `Other`.
fn alter_type(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let type_name = c.read_name()?;
    if c.eat_all(&["ADD", "VALUE"]) {
        return Some(DdlKind::AlterTypeAddValue { type_name });
    }
    if c.eat_all(&["RENAME", "VALUE"]) {
        return Some(DdlKind::AlterTypeRenameValue { type_name });
    }
    if c.eat_all(&["RENAME", "ATTRIBUTE"]) {
        let from = c.read_ident()?;
        c.expect("TO")?;
        let to = c.read_ident()?;
        drop_behavior(c);
        c.expect_end()?;
        return Some(DdlKind::AlterTypeRenameAttribute {
            type_name,
            from,
            to,
        });
    }
    Some(other("ALTER TYPE"))
}

/// `ALTER DOMAIN name ADD [ CONSTRAINT c ] constraint [ NOT VALID ]`; other forms are `Other`.
fn alter_domain(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_name()?;
    if c.eat("ADD") {
        let not_valid = c.rest_has("NOT", Some("VALID"), true);
        return Some(DdlKind::AlterDomainAddConstraint { name, not_valid });
    }
    Some(other("ALTER DOMAIN"))
}

// ---------------------------------------------------------------------------
// DROP
// ---------------------------------------------------------------------------

/// The object kinds of PostgreSQL's DROP commands recognised by their leading words:
/// (words, command tag). DROP INDEX, DROP TABLE and DROP DATABASE have their own kinds.
const DROP_KINDS: &[(&[&str], &str)] = &[
    (&["ACCESS", "METHOD"], "DROP ACCESS METHOD"),
    (&["AGGREGATE"], "DROP AGGREGATE"),
    (&["CAST"], "DROP CAST"),
    (&["COLLATION"], "DROP COLLATION"),
    (&["CONVERSION"], "DROP CONVERSION"),
    (&["DOMAIN"], "DROP DOMAIN"),
    (&["EVENT", "TRIGGER"], "DROP EVENT TRIGGER"),
    (&["EXTENSION"], "DROP EXTENSION"),
    (&["FOREIGN", "DATA", "WRAPPER"], "DROP FOREIGN DATA WRAPPER"),
    (&["FOREIGN", "TABLE"], "DROP FOREIGN TABLE"),
    (&["FUNCTION"], "DROP FUNCTION"),
    (&["GROUP"], "DROP ROLE"),
    (&["LANGUAGE"], "DROP LANGUAGE"),
    (&["PROCEDURAL", "LANGUAGE"], "DROP LANGUAGE"),
    (&["MATERIALIZED", "VIEW"], "DROP MATERIALIZED VIEW"),
    (&["OPERATOR", "CLASS"], "DROP OPERATOR CLASS"),
    (&["OPERATOR", "FAMILY"], "DROP OPERATOR FAMILY"),
    (&["OPERATOR"], "DROP OPERATOR"),
    (&["OWNED"], "DROP OWNED"),
    (&["POLICY"], "DROP POLICY"),
    (&["PROCEDURE"], "DROP PROCEDURE"),
    (&["PUBLICATION"], "DROP PUBLICATION"),
    (&["ROLE"], "DROP ROLE"),
    (&["ROUTINE"], "DROP ROUTINE"),
    (&["RULE"], "DROP RULE"),
    (&["SCHEMA"], "DROP SCHEMA"),
    (&["SEQUENCE"], "DROP SEQUENCE"),
    (&["SERVER"], "DROP SERVER"),
    (&["STATISTICS"], "DROP STATISTICS"),
    (&["SUBSCRIPTION"], "DROP SUBSCRIPTION"),
    (&["TABLESPACE"], "DROP TABLESPACE"),
    (
        &["TEXT", "SEARCH", "CONFIGURATION"],
        "DROP TEXT SEARCH CONFIGURATION",
    ),
    (
        &["TEXT", "SEARCH", "DICTIONARY"],
        "DROP TEXT SEARCH DICTIONARY",
    ),
    (&["TEXT", "SEARCH", "PARSER"], "DROP TEXT SEARCH PARSER"),
    (&["TEXT", "SEARCH", "TEMPLATE"], "DROP TEXT SEARCH TEMPLATE"),
    (&["TRANSFORM"], "DROP TRANSFORM"),
    (&["TRIGGER"], "DROP TRIGGER"),
    (&["TYPE"], "DROP TYPE"),
    (&["USER", "MAPPING"], "DROP USER MAPPING"),
    (&["USER"], "DROP ROLE"),
    (&["VIEW"], "DROP VIEW"),
];

fn drop(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.eat("INDEX") {
        return drop_index(c);
    }
    if c.eat("TABLE") {
        return drop_table(c);
    }
    if c.eat("DATABASE") {
        return Some(DdlKind::DropDatabase);
    }
    let (_, tag) = DROP_KINDS.iter().find(|(words, _)| c.eat_all(words))?;
    if *tag == "DROP OWNED" {
        c.skip_rest();
        return Some(DdlKind::DropOwned);
    }
    let resolvable = match *tag {
        "DROP FUNCTION" | "DROP PROCEDURE" | "DROP ROUTINE" | "DROP AGGREGATE" => Some(true),
        "DROP TYPE" | "DROP DOMAIN" | "DROP SCHEMA" | "DROP EXTENSION" => Some(false),
        _ => None,
    };
    let listed = resolvable.and_then(|functions| drop_objects(&mut c.clone(), functions));
    // CASCADE anywhere at top level (an object called `cascade` included: the stricter reading).
    if c.rest_has("CASCADE", None, true) {
        let (if_exists, objects) = match listed {
            Some((if_exists, objects)) => (if_exists, Some(objects)),
            None => (false, None),
        };
        return Some(DdlKind::DropCascade {
            tag: (*tag).to_owned(),
            if_exists,
            objects,
        });
    }
    Some(other(tag))
}

/// `[ IF EXISTS ] object [, ...] CASCADE` to the last token, each object a name and, for
/// functions, an optional argument list: the objects whose dependents the catalog can count.
/// `None` for anything else (`mood[]`, `t.c%TYPE`, `double precision`, options after CASCADE):
/// then the statement is judged without facts.
fn drop_objects(c: &mut Cursor<'_>, functions: bool) -> Option<(bool, Vec<DropObject>)> {
    // A `U&"…"` name is kept undecoded by `ident_text` (escapes, UESCAPE): looked up as
    // written it would resolve to nothing while the server drops the decoded name.
    let mut scan = c.clone();
    while let Some(t) = scan.next() {
        if t.kind == TokenKind::QuotedIdent && !t.text(c.sql).starts_with(b"\"") {
            return None;
        }
    }
    let if_exists = c.eat_all(&["IF", "EXISTS"]);
    let mut objects = Vec::new();
    loop {
        let name = c.read_name()?;
        let args = functions && c.is_kind(TokenKind::LParen);
        if args {
            c.skip_parens()?;
        }
        objects.push(DropObject { name, args });
        if !c.eat_kind(TokenKind::Comma) {
            break;
        }
    }
    c.expect("CASCADE")?;
    c.expect_end()?;
    (!c.bad).then_some((if_exists, objects))
}

/// `[ CASCADE | RESTRICT ]`: whether CASCADE was given.
fn drop_behavior(c: &mut Cursor<'_>) -> bool {
    let cascade = c.eat("CASCADE");
    if !cascade {
        c.eat("RESTRICT");
    }
    cascade
}

/// `DROP INDEX [ CONCURRENTLY ] [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]` — the safe
/// form of dropping an index, so it must match to the last token.
fn drop_index(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let concurrently = c.eat("CONCURRENTLY");
    let if_exists = c.eat_all(&["IF", "EXISTS"]);
    let names = c.read_names()?;
    let cascade = drop_behavior(c);
    c.expect_end()?;
    Some(DdlKind::DropIndex {
        names,
        concurrently,
        if_exists,
        cascade,
    })
}

/// `DROP TABLE [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]`.
fn drop_table(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.eat_all(&["IF", "EXISTS"]);
    let names = c.read_names()?;
    let cascade = drop_behavior(c);
    c.expect_end()?;
    Some(DdlKind::DropTable { names, cascade })
}

// ---------------------------------------------------------------------------
// Maintenance and locking commands
// ---------------------------------------------------------------------------

/// `REINDEX [ ( option [, ...] ) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM }
/// [ CONCURRENTLY ] [ name ]`. CONCURRENTLY may also be an option (PG 14:
/// `REINDEX (CONCURRENTLY) TABLE t`); the name is optional for DATABASE and SYSTEM (PG 16).
fn reindex(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let mut concurrently = false;
    if c.is_kind(TokenKind::LParen) {
        let sql = c.sql;
        // Only an explicit true value counts: anything else is not concurrent (or an error).
        c.utility_options(|name, value| {
            if ident_is(sql, name, "concurrently") {
                concurrently = value == Some(true);
            }
        })?;
    }
    let target = [
        ("INDEX", ReindexTarget::Index),
        ("TABLE", ReindexTarget::Table),
        ("SCHEMA", ReindexTarget::Schema),
        ("DATABASE", ReindexTarget::Database),
        ("SYSTEM", ReindexTarget::System),
    ]
    .into_iter()
    .find(|(kw, _)| c.eat(kw))?
    .1;
    concurrently |= c.eat("CONCURRENTLY");
    let name = match target {
        ReindexTarget::Index | ReindexTarget::Table => Some(c.read_name()?),
        ReindexTarget::Schema => Some(Name::bare(&c.read_ident()?)),
        ReindexTarget::Database | ReindexTarget::System if c.at_end() => None,
        ReindexTarget::Database | ReindexTarget::System => Some(Name::bare(&c.read_ident()?)),
    };
    c.expect_end()?;
    Some(DdlKind::Reindex {
        target,
        name,
        concurrently,
    })
}

/// `CLUSTER [ ( option [, ...] ) ] [ table [ USING index ] ]`, `CLUSTER [ VERBOSE ] [ table
/// [ USING index ] ]` and the pre-8.3 `CLUSTER [ VERBOSE ] index ON table`.
fn cluster(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.is_kind(TokenKind::LParen) {
        c.utility_options(|_, _| {})?;
    } else {
        c.eat("VERBOSE");
    }
    if c.at_end() {
        return Some(DdlKind::Cluster { table: None });
    }
    let first = c.read_name()?;
    let table = if c.eat("ON") {
        c.read_name()?
    } else {
        if c.eat("USING") {
            c.read_ident()?;
        }
        first
    };
    c.expect_end()?;
    Some(DdlKind::Cluster { table: Some(table) })
}

/// `VACUUM [ FULL ] [ FREEZE ] [ VERBOSE ] [ ANALYZE ] [ table [ ( cols ) ] [, ...] ]` and
/// `VACUUM ( option [, ...] ) [ … ]`. The last FULL option wins, as in `ExecVacuum`.
fn vacuum(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let mut full = false;
    if c.is_kind(TokenKind::LParen) {
        let sql = c.sql;
        // Anything but an explicit false value counts as FULL (the stricter reading).
        c.utility_options(|name, value| {
            if ident_is(sql, name, "full") {
                full = value != Some(false);
            }
        })?;
    } else {
        full = c.eat("FULL");
        c.eat("FREEZE");
        c.eat("VERBOSE");
        let _ = c.eat("ANALYZE") || c.eat("ANALYSE");
    }
    let mut tables = Vec::new();
    if !c.at_end() {
        loop {
            // `relation_expr` (ONLY: PG 18) with an optional column list.
            tables.push(c.read_relation()?.0);
            if c.is_kind(TokenKind::LParen) {
                c.skip_parens()?;
            }
            if !c.eat_kind(TokenKind::Comma) {
                break;
            }
        }
    }
    c.expect_end()?;
    Some(DdlKind::Vacuum { full, tables })
}

/// PostgreSQL's lock modes, longest spelling first.
const LOCK_MODES: &[(&[&str], LockMode)] = &[
    (&["ACCESS", "SHARE"], LockMode::AccessShare),
    (&["ACCESS", "EXCLUSIVE"], LockMode::AccessExclusive),
    (&["ROW", "SHARE"], LockMode::RowShare),
    (&["ROW", "EXCLUSIVE"], LockMode::RowExclusive),
    (
        &["SHARE", "UPDATE", "EXCLUSIVE"],
        LockMode::ShareUpdateExclusive,
    ),
    (&["SHARE", "ROW", "EXCLUSIVE"], LockMode::ShareRowExclusive),
    (&["SHARE"], LockMode::Share),
    (&["EXCLUSIVE"], LockMode::Exclusive),
];

/// `LOCK [ TABLE ] [ ONLY ] name [ * ] [, ...] [ IN mode MODE ] [ NOWAIT ]`; the default mode
/// is ACCESS EXCLUSIVE.
fn lock(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.eat("TABLE");
    let tables = c.read_relations()?;
    let mut mode = LockMode::AccessExclusive;
    if c.eat("IN") {
        mode = LOCK_MODES.iter().find(|(words, _)| c.eat_all(words))?.1;
        c.expect("MODE")?;
    }
    c.eat("NOWAIT");
    c.expect_end()?;
    Some(DdlKind::Lock { tables, mode })
}

/// `TRUNCATE [ TABLE ] [ ONLY ] name [ * ] [, ...] [ RESTART IDENTITY | CONTINUE IDENTITY ]
/// [ CASCADE | RESTRICT ]`.
fn truncate(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.eat("TABLE");
    let names = c.read_relations()?;
    if c.eat("RESTART") || c.eat("CONTINUE") {
        c.expect("IDENTITY")?;
    }
    let cascade = drop_behavior(c);
    c.expect_end()?;
    Some(DdlKind::Truncate { names, cascade })
}

/// `REFRESH MATERIALIZED VIEW [ CONCURRENTLY ] name [ WITH [ NO ] DATA ]`.
fn refresh(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.expect("MATERIALIZED")?;
    c.expect("VIEW")?;
    let concurrently = c.eat("CONCURRENTLY");
    let name = c.read_name()?;
    if c.eat("WITH") {
        c.eat("NO");
        c.expect("DATA")?;
    }
    c.expect_end()?;
    Some(DdlKind::RefreshMaterializedView { name, concurrently })
}

/// `DO [ LANGUAGE l ] code` or `DO code [ LANGUAGE l ]` (gram.y's `dostmt_opt_list`: exactly one
/// code string, at most one LANGUAGE). Two adjacent string tokens (a literal continued across a
/// newline) are Unknown rather than guessed at.
fn do_block(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let (mut language, mut body) = (None, None);
    while !c.at_end() {
        if c.eat("LANGUAGE") {
            if language.is_some() {
                return None;
            }
            language = Some(c.read_word_or_sconst()?);
        } else {
            if body.is_some() {
                return None;
            }
            body = Some(c.read_sconst()?);
        }
    }
    Some(DdlKind::Do {
        language,
        body: body?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::{ClientEncoding, split_statements};
    use proptest::prelude::*;

    fn classify_str(sql: &str) -> Ddl {
        classify(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }

    fn kind(sql: &str) -> DdlKind {
        classify_str(sql).kind
    }

    /// `"s.t"` → `Name { schema: Some("s"), name: "t" }`, `"t"` → bare.
    fn n(s: &str) -> Name {
        match s.split_once('.') {
            Some((schema, name)) => Name::new(Some(schema), name),
            None => Name::bare(s),
        }
    }

    fn other_tag(tag: &str) -> DdlKind {
        DdlKind::Other {
            tag: tag.to_owned(),
        }
    }

    fn check(cases: &[(&str, DdlKind)]) {
        for (sql, want) in cases {
            let got = classify_str(sql);
            assert_eq!(&got.kind, want, "classifying {sql:?}");
            assert_eq!(got.understood, Understood::Fallback, "classifying {sql:?}");
        }
    }

    fn reindex(target: ReindexTarget, name: Option<&str>, concurrently: bool) -> DdlKind {
        DdlKind::Reindex {
            target,
            name: name.map(n),
            concurrently,
        }
    }

    #[test]
    fn reindex_forms() {
        use ReindexTarget::*;
        check(&[
            ("REINDEX INDEX idx", reindex(Index, Some("idx"), false)),
            (
                "REINDEX INDEX CONCURRENTLY idx",
                reindex(Index, Some("idx"), true),
            ),
            (
                "REINDEX TABLE CONCURRENTLY public.users",
                reindex(Table, Some("public.users"), true),
            ),
            (
                "REINDEX (VERBOSE, CONCURRENTLY) TABLE t",
                reindex(Table, Some("t"), true),
            ),
            (
                "REINDEX (CONCURRENTLY, VERBOSE) TABLE t",
                reindex(Table, Some("t"), true),
            ),
            (
                "reindex (concurrently true) table t",
                reindex(Table, Some("t"), true),
            ),
            (
                "REINDEX (CONCURRENTLY off) TABLE t",
                reindex(Table, Some("t"), false),
            ),
            (
                "REINDEX (TABLESPACE fast, VERBOSE) INDEX i",
                reindex(Index, Some("i"), false),
            ),
            (
                "REINDEX (VERBOSE) TABLE t",
                reindex(Table, Some("t"), false),
            ),
            (
                "REINDEX SCHEMA CONCURRENTLY app",
                reindex(Schema, Some("app"), true),
            ),
            (
                "REINDEX DATABASE mydb",
                reindex(Database, Some("mydb"), false),
            ),
            ("REINDEX DATABASE", reindex(Database, None, false)),
            ("REINDEX SYSTEM", reindex(System, None, false)),
            ("REINDEX TABLE db.s.t", reindex(Table, Some("s.t"), false)),
        ]);
    }

    #[test]
    fn cluster_vacuum_analyze() {
        let vacuum = |full, tables: &[&str]| DdlKind::Vacuum {
            full,
            tables: tables.iter().map(|t| n(t)).collect(),
        };
        let cluster = |t: Option<&str>| DdlKind::Cluster { table: t.map(n) };
        check(&[
            ("CLUSTER users USING users_pkey", cluster(Some("users"))),
            ("CLUSTER", cluster(None)),
            ("CLUSTER VERBOSE", cluster(None)),
            ("CLUSTER VERBOSE s.users", cluster(Some("s.users"))),
            ("CLUSTER (VERBOSE) users USING i", cluster(Some("users"))),
            ("CLUSTER users_pkey ON users", cluster(Some("users"))),
            ("VACUUM (VERBOSE, ANALYZE) users", vacuum(false, &["users"])),
            ("VACUUM (FULL) t", vacuum(true, &["t"])),
            ("VACUUM (FULL false) t", vacuum(false, &["t"])),
            ("VACUUM (FULL off, VERBOSE) t", vacuum(false, &["t"])),
            ("VACUUM (FULL 0) t", vacuum(false, &["t"])),
            ("VACUUM (FULL 'false') t", vacuum(false, &["t"])),
            ("VACUUM (FULL true) t", vacuum(true, &["t"])),
            ("VACUUM (FULL on) t", vacuum(true, &["t"])),
            ("VACUUM (FULL 1) t", vacuum(true, &["t"])),
            ("VACUUM (\"full\") t", vacuum(true, &["t"])),
            ("VACUUM FULL t", vacuum(true, &["t"])),
            (
                "VACUUM FULL FREEZE VERBOSE ANALYZE t (a, b), s.u",
                vacuum(true, &["t", "s.u"]),
            ),
            ("VACUUM", vacuum(false, &[])),
            ("VACUUM ANALYZE", vacuum(false, &[])),
            (
                "VACUUM (PARALLEL 4, INDEX_CLEANUP off) ONLY t",
                vacuum(false, &["t"]),
            ),
            ("ANALYZE", other_tag("ANALYZE")),
            ("ANALYZE (VERBOSE) users (a)", other_tag("ANALYZE")),
            ("analyse verbose users", other_tag("ANALYZE")),
        ]);
    }

    #[test]
    fn drop_index_forms() {
        let drop = |names: &[&str], concurrently, if_exists, cascade| DdlKind::DropIndex {
            names: names.iter().map(|s| n(s)).collect(),
            concurrently,
            if_exists,
            cascade,
        };
        check(&[
            (
                "DROP INDEX CONCURRENTLY idx",
                drop(&["idx"], true, false, false),
            ),
            (
                "DROP INDEX CONCURRENTLY IF EXISTS s.\"Idx\"",
                drop(&["s.Idx"], true, true, false),
            ),
            (
                "DROP INDEX a, b CASCADE",
                drop(&["a", "b"], false, false, true),
            ),
            ("DROP INDEX a RESTRICT", drop(&["a"], false, false, false)),
            (
                "/* c */ drop /* c */ index /* c */ concurrently \"My Idx\"",
                drop(&["My Idx"], true, false, false),
            ),
            (
                "DrOp\n\tInDeX -- why\n IF EXISTS Public.IDX",
                drop(&["public.idx"], false, true, false),
            ),
            // An index named `if` (IF is unreserved).
            ("DROP INDEX if", drop(&["if"], false, false, false)),
        ]);
    }

    #[test]
    fn create_index_forms() {
        check(&[
            (
                "CREATE INDEX events_idx ON ONLY events (tenant_id)",
                DdlKind::CreateIndex {
                    name: Some(n("events_idx")),
                    table: n("events"),
                    unique: false,
                    concurrently: false,
                    if_not_exists: false,
                    only: true,
                    columns: 1,
                },
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t USING btree (a, lower(b)) WHERE c",
                DdlKind::CreateIndex {
                    name: Some(n("i")),
                    table: n("t"),
                    unique: true,
                    concurrently: true,
                    if_not_exists: true,
                    only: false,
                    columns: 2,
                },
            ),
            (
                "create index on S.T (a) include (b, c) with (fillfactor = 70) tablespace x",
                DdlKind::CreateIndex {
                    name: None,
                    table: n("s.t"),
                    unique: false,
                    concurrently: false,
                    if_not_exists: false,
                    only: false,
                    columns: 1,
                },
            ),
            (
                "CREATE INDEX CONCURRENTLY \"Ix\" ON t USING gin ((data -> 'k'), (coalesce(a, b)), c)",
                DdlKind::CreateIndex {
                    name: Some(n("Ix")),
                    table: n("t"),
                    unique: false,
                    concurrently: true,
                    if_not_exists: false,
                    only: false,
                    columns: 3,
                },
            ),
        ]);
    }

    fn alter(name: &str, ops: Vec<AlterOp>) -> DdlKind {
        DdlKind::AlterTable {
            name: n(name),
            only: false,
            if_exists: false,
            ops,
        }
    }

    fn op_other(tag: &str) -> AlterOp {
        AlterOp::Other(tag.to_owned())
    }

    fn column(name: &str, data_type: &str) -> AddColumn {
        AddColumn {
            name: name.to_owned(),
            data_type: data_type.to_owned(),
            not_null: false,
            default: None,
            serial: false,
            identity: false,
            generated_stored: false,
            generated_virtual: false,
            constraints: Vec::new(),
        }
    }

    fn add_constraint(name: Option<&str>, kind: ConstraintKind, not_valid: bool) -> AlterOp {
        AlterOp::AddConstraint(AddConstraint {
            name: name.map(str::to_owned),
            kind,
            not_valid,
        })
    }

    #[test]
    fn alter_table_single_actions() {
        use AlterOp::*;
        let s = |x: &str| x.to_owned();
        let cases: Vec<(&str, AlterOp)> = vec![
            ("ALTER TABLE t SET TABLESPACE fast", SetTablespace),
            ("ALTER TABLE t SET LOGGED", SetLogged),
            ("ALTER TABLE t SET UNLOGGED", SetUnlogged),
            ("ALTER TABLE t SET ACCESS METHOD heap2", SetAccessMethod),
            ("ALTER TABLE t SET SCHEMA archive", SetSchema),
            ("ALTER TABLE t SET (fillfactor = 70)", op_other("SET")),
            ("ALTER TABLE t RESET (fillfactor)", op_other("RESET")),
            (
                "ALTER TABLE t SET WITHOUT CLUSTER",
                op_other("SET WITHOUT CLUSTER"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET STATISTICS 500",
                op_other("SET STATISTICS"),
            ),
            (
                "ALTER TABLE t ALTER c SET STORAGE EXTERNAL",
                op_other("SET STORAGE"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c DROP IDENTITY IF EXISTS",
                op_other("DROP IDENTITY"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c TYPE citext COLLATE \"C\"",
                AlterColumnType {
                    column: s("c"),
                    data_type: s("citext"),
                    using: false,
                },
            ),
            (
                "ALTER TABLE t ALTER c SET DATA TYPE NUMERIC(10, 2) USING c::numeric",
                AlterColumnType {
                    column: s("c"),
                    data_type: s("numeric(10,2)"),
                    using: true,
                },
            ),
            (
                "ALTER TABLE t ALTER COLUMN ts TYPE timestamp(3) WITH TIME ZONE",
                AlterColumnType {
                    column: s("ts"),
                    data_type: s("timestamp(3) with time zone"),
                    using: false,
                },
            ),
            (
                "ALTER TABLE t ALTER COLUMN c TYPE character varying(20)[]",
                AlterColumnType {
                    column: s("c"),
                    data_type: s("character varying(20)[]"),
                    using: false,
                },
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                SetNotNull { column: s("c") },
            ),
            (
                "ALTER TABLE t ALTER c DROP NOT NULL",
                DropNotNull { column: s("c") },
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT now()",
                SetDefault { column: s("c") },
            ),
            (
                "ALTER TABLE t ALTER COLUMN \"C\" DROP DEFAULT",
                DropDefault { column: s("C") },
            ),
            (
                "ALTER TABLE t VALIDATE CONSTRAINT fk",
                ValidateConstraint { name: s("fk") },
            ),
            (
                "ALTER TABLE t DROP CONSTRAINT IF EXISTS fk CASCADE",
                DropConstraint { name: s("fk") },
            ),
            (
                "ALTER TABLE t DROP COLUMN IF EXISTS c",
                DropColumn { name: s("c") },
            ),
            ("ALTER TABLE t DROP c RESTRICT", DropColumn { name: s("c") }),
            (
                "ALTER TABLE t RENAME COLUMN a TO b",
                RenameColumn {
                    from: s("a"),
                    to: s("b"),
                },
            ),
            (
                "ALTER TABLE t RENAME a TO \"B\"",
                RenameColumn {
                    from: s("a"),
                    to: s("B"),
                },
            ),
            ("ALTER TABLE t RENAME TO u", RenameTable { to: s("u") }),
            (
                "ALTER TABLE t RENAME CONSTRAINT a TO b",
                op_other("RENAME CONSTRAINT"),
            ),
            (
                "ALTER TABLE t ATTACH PARTITION m_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
                AttachPartition {
                    partition: n("m_2024"),
                },
            ),
            (
                "ALTER TABLE t ATTACH PARTITION s.p DEFAULT",
                AttachPartition {
                    partition: n("s.p"),
                },
            ),
            (
                "ALTER TABLE t DETACH PARTITION p CONCURRENTLY",
                DetachPartition {
                    partition: n("p"),
                    concurrently: true,
                },
            ),
            (
                "ALTER TABLE t DETACH PARTITION p FINALIZE",
                DetachPartition {
                    partition: n("p"),
                    concurrently: false,
                },
            ),
            (
                "ALTER TABLE t DETACH PARTITION p",
                DetachPartition {
                    partition: n("p"),
                    concurrently: false,
                },
            ),
            ("ALTER TABLE t ENABLE TRIGGER ALL", EnableTrigger),
            ("ALTER TABLE t ENABLE REPLICA TRIGGER tr", EnableTrigger),
            ("ALTER TABLE t DISABLE TRIGGER USER", DisableTrigger),
            ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", RowLevelSecurity),
            (
                "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
                RowLevelSecurity,
            ),
            ("ALTER TABLE t FORCE ROW LEVEL SECURITY", RowLevelSecurity),
            (
                "ALTER TABLE t ENABLE ALWAYS RULE r",
                op_other("ENABLE RULE"),
            ),
            ("ALTER TABLE t OWNER TO bob", op_other("OWNER TO")),
            ("ALTER TABLE t CLUSTER ON t_pkey", op_other("CLUSTER ON")),
            (
                "ALTER TABLE t REPLICA IDENTITY FULL",
                op_other("REPLICA IDENTITY"),
            ),
            ("ALTER TABLE t INHERIT parent", op_other("INHERIT")),
            ("ALTER TABLE t NO INHERIT parent", op_other("NO INHERIT")),
            (
                "ALTER TABLE t ALTER CONSTRAINT fk DEFERRABLE",
                op_other("ALTER CONSTRAINT"),
            ),
            ("ALTER TABLE t OPTIONS (ADD a '1')", op_other("OPTIONS")),
            (
                "ALTER TABLE t ALTER COLUMN c SET STORAGE EXTERNAL",
                op_other("SET STORAGE"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET INCREMENT BY 2",
                op_other("SET INCREMENT"),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX u_idx",
                add_constraint(
                    Some("u"),
                    ConstraintKind::Unique { using_index: true },
                    false,
                ),
            ),
            (
                "ALTER TABLE t ADD PRIMARY KEY USING INDEX t_pk",
                add_constraint(
                    None,
                    ConstraintKind::PrimaryKey { using_index: true },
                    false,
                ),
            ),
            (
                "ALTER TABLE t ADD PRIMARY KEY (a, b)",
                add_constraint(
                    None,
                    ConstraintKind::PrimaryKey { using_index: false },
                    false,
                ),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
                add_constraint(Some("c"), ConstraintKind::Check, true),
            ),
            (
                "ALTER TABLE t ADD UNIQUE NULLS NOT DISTINCT (a)",
                add_constraint(None, ConstraintKind::Unique { using_index: false }, false),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
                add_constraint(Some("ex"), ConstraintKind::Exclusion, false),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT nn NOT NULL c",
                add_constraint(Some("nn"), ConstraintKind::NotNull, false),
            ),
            (
                "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES s.o (id) ON DELETE SET NULL NOT VALID",
                add_constraint(
                    None,
                    ConstraintKind::ForeignKey {
                        references: n("s.o"),
                    },
                    true,
                ),
            ),
        ];
        for (sql, op) in cases {
            let got = classify_str(sql);
            assert_eq!(got.kind, alter("t", vec![op]), "classifying {sql:?}");
            assert_eq!(got.understood, Understood::Fallback);
        }
    }

    /// A sub-command word gram.y does not have is not a harmless "other" sub-command: the
    /// statement is not understood, so the policy fails closed on it (`unparsed-ddl`).
    #[test]
    fn unknown_alter_table_forms_are_not_understood() {
        for sql in [
            "ALTER TABLE t FROBNICATE HARD",
            "ALTER TABLE t SET FROB",
            "ALTER TABLE t ALTER COLUMN c SET FROB",
            "ALTER TABLE t ALTER COLUMN c DROP FROB",
            "ALTER TABLE t ALTER COLUMN c ADD FROB",
            "ALTER TABLE t ALTER COLUMN c RESET FROB",
        ] {
            assert_eq!(classify_str(sql).understood, Understood::Unknown, "{sql}");
        }
    }

    #[test]
    fn alter_table_header_and_action_lists() {
        use AlterOp::*;
        let got = kind(
            "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0, ADD CONSTRAINT fk FOREIGN KEY (a) \
             REFERENCES o (id) NOT VALID, VALIDATE CONSTRAINT c2, ALTER COLUMN b SET NOT NULL",
        );
        let want = alter(
            "t",
            vec![
                AddColumn(super::AddColumn {
                    not_null: true,
                    default: Some(DefaultExpr {
                        text: "0".to_owned(),
                        functions: vec![],
                    }),
                    ..column("a", "int")
                }),
                add_constraint(
                    Some("fk"),
                    ConstraintKind::ForeignKey { references: n("o") },
                    true,
                ),
                ValidateConstraint {
                    name: "c2".to_owned(),
                },
                SetNotNull {
                    column: "b".to_owned(),
                },
            ],
        );
        assert_eq!(got, want);

        let got = kind("alter table if exists only Public.\"Users\" set tablespace x, set logged");
        let want = DdlKind::AlterTable {
            name: Name::new(Some("public"), "Users"),
            only: true,
            if_exists: true,
            ops: vec![SetTablespace, SetLogged],
        };
        assert_eq!(got, want);

        // `name *` and commas inside parentheses do not split actions.
        let got =
            kind("ALTER TABLE t * SET (fillfactor = 70, autovacuum_enabled = off), OWNER TO x");
        assert_eq!(got, alter("t", vec![op_other("SET"), op_other("OWNER TO")]));
    }

    #[test]
    fn alter_table_add_column() {
        use ConstraintKind::*;
        let add = |sql: &str| match kind(sql) {
            DdlKind::AlterTable { mut ops, .. } if ops.len() == 1 => match ops.pop() {
                Some(AlterOp::AddColumn(col)) => col,
                other => panic!("{sql:?}: not ADD COLUMN: {other:?}"),
            },
            other => panic!("{sql:?}: {other:?}"),
        };
        let default = |text: &str, functions: &[&str]| {
            Some(DefaultExpr {
                text: text.to_owned(),
                functions: functions.iter().map(|f| f.to_string()).collect(),
            })
        };
        let cases: Vec<(&str, AddColumn)> = vec![
            (
                "ALTER TABLE t ADD COLUMN id uuid DEFAULT gen_random_uuid()",
                AddColumn {
                    default: default("gen_random_uuid()", &["gen_random_uuid"]),
                    ..column("id", "uuid")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN id uuid NOT NULL DEFAULT public.gen_random_uuid() PRIMARY KEY",
                AddColumn {
                    not_null: true,
                    default: default("public.gen_random_uuid()", &["gen_random_uuid"]),
                    constraints: vec![PrimaryKey { using_index: false }],
                    ..column("id", "uuid")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN n bigserial",
                AddColumn {
                    serial: true,
                    ..column("n", "bigserial")
                },
            ),
            (
                "ALTER TABLE t ADD n SERIAL4 UNIQUE",
                AddColumn {
                    serial: true,
                    constraints: vec![Unique { using_index: false }],
                    ..column("n", "serial4")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN n bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 10)",
                AddColumn {
                    identity: true,
                    ..column("n", "bigint")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS IDENTITY",
                AddColumn {
                    identity: true,
                    ..column("n", "int")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN total numeric(12, 2) GENERATED ALWAYS AS (price * qty) STORED",
                AddColumn {
                    generated_stored: true,
                    ..column("total", "numeric(12,2)")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b) VIRTUAL",
                AddColumn {
                    generated_virtual: true,
                    ..column("total", "int")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b)",
                column("total", "int"),
            ),
            (
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS o_id bigint REFERENCES s.o (id) ON DELETE SET DEFAULT CHECK (o_id > 0)",
                AddColumn {
                    constraints: vec![
                        ForeignKey {
                            references: n("s.o"),
                        },
                        Check,
                    ],
                    ..column("o_id", "bigint")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN d timestamp with time zone DEFAULT now() NOT NULL",
                AddColumn {
                    not_null: true,
                    default: default("now()", &["now"]),
                    ..column("d", "timestamp with time zone")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN s text COLLATE \"C\" STORAGE DEFAULT DEFAULT 'x'::text",
                AddColumn {
                    default: default("'x'::text", &[]),
                    ..column("s", "text")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN c int DEFAULT CASE WHEN random() > 0.5 THEN NULL ELSE 1 END NULL",
                AddColumn {
                    default: default("CASE WHEN random() > 0.5 THEN NULL ELSE 1 END", &["random"]),
                    ..column("c", "int")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN c numeric DEFAULT CAST(nextval('s') AS numeric(10))",
                AddColumn {
                    default: default("CAST(nextval('s') AS numeric(10))", &["nextval"]),
                    ..column("c", "numeric")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN c double precision[] CONSTRAINT pos CHECK (c > 0) NOT NULL",
                AddColumn {
                    not_null: true,
                    constraints: vec![Check],
                    ..column("c", "double precision[]")
                },
            ),
            // A column named `exclude` (EXCLUDE is unreserved).
            ("ALTER TABLE t ADD exclude int", column("exclude", "int")),
        ];
        for (sql, want) in cases {
            assert_eq!(add(sql), want, "classifying {sql:?}");
        }
    }

    #[test]
    fn alter_index_forms() {
        let ai = |name: &str, action: &str| DdlKind::AlterIndex {
            name: n(name),
            action: action.to_owned(),
        };
        check(&[
            ("ALTER INDEX i RENAME TO j", ai("i", "RENAME")),
            (
                "ALTER INDEX IF EXISTS s.i SET TABLESPACE fast",
                ai("s.i", "SET TABLESPACE"),
            ),
            (
                "ALTER INDEX parent_idx ATTACH PARTITION child_idx",
                ai("parent_idx", "ATTACH PARTITION"),
            ),
            ("ALTER INDEX i SET (fillfactor = 80)", ai("i", "SET")),
            ("ALTER INDEX i RESET (fillfactor)", ai("i", "RESET")),
            (
                "ALTER INDEX i ALTER COLUMN 2 SET STATISTICS 1000",
                ai("i", "ALTER COLUMN"),
            ),
            (
                "ALTER INDEX i ALTER 1 SET STATISTICS 10",
                ai("i", "ALTER COLUMN"),
            ),
            (
                "ALTER INDEX i DEPENDS ON EXTENSION e",
                ai("i", "DEPENDS ON EXTENSION"),
            ),
            (
                "ALTER INDEX i NO DEPENDS ON EXTENSION e",
                ai("i", "DEPENDS ON EXTENSION"),
            ),
            (
                "ALTER INDEX ALL IN TABLESPACE a OWNED BY r SET TABLESPACE b NOWAIT",
                ai("all", "ALL IN TABLESPACE"),
            ),
        ]);
    }

    #[test]
    fn do_blocks() {
        let do_ = |language: Option<&str>, body: &str| DdlKind::Do {
            language: language.map(str::to_owned),
            body: body.to_owned(),
        };
        check(&[
            (
                "DO $$ BEGIN CREATE INDEX i ON t (x); END $$",
                do_(None, " BEGIN CREATE INDEX i ON t (x); END "),
            ),
            (
                "DO LANGUAGE plpgsql 'BEGIN NULL; END'",
                do_(Some("plpgsql"), "BEGIN NULL; END"),
            ),
            (
                "do $fn$ select 'it''s' $fn$ language PLPGSQL",
                do_(Some("plpgsql"), " select 'it''s' "),
            ),
            (
                "DO 'BEGIN RAISE NOTICE ''hi''; END'",
                do_(None, "BEGIN RAISE NOTICE 'hi'; END"),
            ),
            (
                "DO E'BEGIN RAISE NOTICE \\'hi\\'; END'",
                do_(None, "BEGIN RAISE NOTICE 'hi'; END"),
            ),
            ("DO LANGUAGE 'plperl' $$ 1 $$", do_(Some("plperl"), " 1 ")),
            ("DO LANGUAGE \"PLpgSQL\" $$$$", do_(Some("PLpgSQL"), "")),
        ]);
        // No body, two bodies, two languages, a bit string: not a DO PostgreSQL accepts.
        for sql in [
            "DO",
            "DO LANGUAGE plpgsql",
            "DO 'a' 'b'",
            "DO 'a'\n'b'",
            "DO LANGUAGE a LANGUAGE b 'x'",
            "DO B'0101'",
            "DO $$ x $$ ;",
            "DO x",
        ] {
            assert_eq!(kind(sql), DdlKind::Unknown, "classifying {sql:?}");
        }
    }

    #[test]
    fn create_table_forms() {
        let table = |name: &str, temporary, partition_of: Option<&str>, references: &[&str]| {
            DdlKind::CreateTable {
                name: n(name),
                temporary,
                partition_of: partition_of.map(n),
                references: references.iter().map(|r| n(r)).collect(),
            }
        };
        check(&[
            (
                "CREATE TABLE t2 (LIKE users INCLUDING ALL)",
                table("t2", false, None, &[]),
            ),
            (
                "CREATE TABLE IF NOT EXISTS s.orders (id bigint PRIMARY KEY, user_id int REFERENCES users (id), \
                 CONSTRAINT fk FOREIGN KEY (a, b) REFERENCES other.t (a, b) ON DELETE CASCADE)",
                table("s.orders", false, None, &["users", "other.t"]),
            ),
            ("CREATE TEMP TABLE tt (a int)", table("tt", true, None, &[])),
            (
                "CREATE GLOBAL TEMPORARY TABLE tt (a int)",
                table("tt", true, None, &[]),
            ),
            (
                "CREATE UNLOGGED TABLE u (a int) WITH (fillfactor = 50)",
                table("u", false, None, &[]),
            ),
            (
                "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
                table("m_2024", false, Some("m"), &[]),
            ),
            (
                "CREATE TABLE p PARTITION OF m DEFAULT",
                table("p", false, Some("m"), &[]),
            ),
            (
                "CREATE TABLE typed OF my_type (PRIMARY KEY (id))",
                table("typed", false, None, &[]),
            ),
            (
                "CREATE TABLE c AS SELECT 1 AS references FROM x",
                table("c", false, None, &[]),
            ),
            (
                "CREATE TABLE c (a, b) AS SELECT 1, 2 WITH NO DATA",
                table("c", false, None, &[]),
            ),
            (
                "CREATE TABLE g (a int, b int GENERATED ALWAYS AS (a * 2) STORED) PARTITION BY RANGE (a)",
                table("g", false, None, &[]),
            ),
        ]);
    }

    #[test]
    fn create_function_forms() {
        let func =
            |name: &str, language: Option<&str>, body: Option<&str>| DdlKind::CreateFunction {
                name: n(name),
                language: language.map(str::to_owned),
                body: body.map(str::to_owned),
            };
        check(&[
            (
                "CREATE OR REPLACE FUNCTION s.f(a int, b text DEFAULT 'x') RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                func("s.f", Some("plpgsql"), Some(" BEGIN RETURN NEW; END ")),
            ),
            (
                "CREATE FUNCTION add(int, int) RETURNS int AS 'select $1 + $2' LANGUAGE SQL IMMUTABLE",
                func("add", Some("sql"), Some("select $1 + $2")),
            ),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
                func(
                    "f",
                    Some("sql"),
                    Some("BEGIN ATOMIC SELECT 1; SELECT 2; END"),
                ),
            ),
            (
                "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql IMMUTABLE RETURN a + 1",
                func("f", Some("sql"), Some("RETURN a + 1")),
            ),
            (
                "CREATE PROCEDURE p() LANGUAGE c AS 'lib', 'sym'",
                func("p", Some("c"), Some("lib")),
            ),
            (
                "CREATE FUNCTION f() RETURNS TABLE (a int, b text) SET search_path = a, b AS 'x' LANGUAGE sql",
                func("f", Some("sql"), Some("x")),
            ),
            (
                "CREATE FUNCTION left(t text) RETURNS text AS 'x' LANGUAGE sql",
                func("left", Some("sql"), Some("x")),
            ),
        ]);
        // Unreadable name or arguments: the body is not read, so the statement is not
        // understood.
        for sql in [
            "CREATE FUNCTION select() AS 'x'",
            "CREATE PROCEDURE p LANGUAGE sql",
        ] {
            assert_eq!(classify_str(sql).understood, Understood::Unknown, "{sql}");
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
            ("DROP VIEW v CASCADE", cascade("DROP VIEW", false, None)),
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
