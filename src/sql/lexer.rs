//! Lexing and statement splitting of client SQL exactly the way PostgreSQL's
//! own scanner (`src/backend/parser/scan.l`, PG 12–18) and grammar split it.
//!
//! This module owns the byte-level view of a simple `Query` / `Parse` string
//! that the prefilter uses on the proxy's hot path: where every token starts
//! and ends, which bytes are inside quotes, comments or dollar quotes, and
//! where the server will cut the string into separate statements. Everything
//! here is about *not being fooled*: if the proxy's idea of a quote or comment
//! boundary differed from the server's by a single byte, a client could hide a
//! statement from the prefilter. Where PostgreSQL versions differ, the rules
//! below pick the reading under which no version that would accept the input
//! can see a statement boundary the proxy does not.
//!
//! Design constraints: input is `&[u8]` in the client's encoding (the server
//! converts to the server encoding *before* lexing, so multibyte characters of
//! the ASCII-unsafe client encodings must be skipped whole); no allocation per
//! token; no regex; never panics on arbitrary bytes; std only.

use std::iter::FusedIterator;

// ---------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------

/// Client encodings whose multibyte characters may contain ASCII bytes
/// (e.g. 0x5C `\`, 0x7C `|`) as trail bytes.
///
/// Every other PostgreSQL encoding (UTF8, SQL_ASCII, LATIN*, EUC_*, WIN*,
/// KOI8*, ISO_8859_*, MULE_INTERNAL) is [`ClientEncoding::AsciiSafe`]: a byte
/// `< 0x80` is always the ASCII character itself. The six unsafe ones are
/// exactly PostgreSQL's client-only encodings (`PG_ENCODING_IS_CLIENT_ONLY`),
/// which can never be a server encoding — so the server always converts them
/// to an ASCII-safe encoding before `scan.l` sees the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientEncoding {
    /// Bytes `>= 0x80` never hide ASCII characters.
    #[default]
    AsciiSafe,
    /// SJIS and SHIFT_JIS_2004 (same lead/trail structure in PostgreSQL's `pg_sjis_mblen`).
    Sjis,
    Big5,
    Gbk,
    Uhc,
    Gb18030,
    Johab,
}

impl ClientEncoding {
    /// Maps a PostgreSQL encoding name (as in `client_encoding`) to the lexing
    /// class. Matching follows `pg_char_to_encoding`: ASCII case-insensitive,
    /// and every non-alphanumeric character is ignored (`clean_encoding_name`),
    /// so `Shift_JIS`, `shift-jis` and `SJIS` are all recognised. All aliases in
    /// PostgreSQL's `pg_encname_tbl` that denote an unsafe encoding are listed;
    /// anything else (including unknown names) is `AsciiSafe`.
    ///
    /// Note: when the *server* encoding is SQL_ASCII, PostgreSQL does no
    /// conversion and instead rejects any non-ASCII byte from an unsafe client
    /// encoding (`pg_any_to_server`), so either class gives the same split.
    pub fn from_pg_name(name: &str) -> ClientEncoding {
        use ClientEncoding::*;
        const ALIASES: &[(&str, ClientEncoding)] = &[
            ("sjis", Sjis),
            ("shiftjis", Sjis),
            ("mskanji", Sjis),
            ("win932", Sjis),
            ("windows932", Sjis),
            ("shiftjis2004", Sjis),
            ("big5", Big5),
            ("win950", Big5),
            ("windows950", Big5),
            ("gbk", Gbk),
            ("win936", Gbk),
            ("windows936", Gbk),
            ("uhc", Uhc),
            ("win949", Uhc),
            ("windows949", Uhc),
            ("gb18030", Gb18030),
            ("johab", Johab),
        ];
        let cleaned = || {
            name.bytes()
                .filter(u8::is_ascii_alphanumeric)
                .map(|b| b.to_ascii_lowercase())
        };
        ALIASES
            .iter()
            .find(|(alias, _)| cleaned().eq(alias.bytes()))
            .map_or(AsciiSafe, |&(_, enc)| enc)
    }

    /// Byte length of the character whose first byte is `s[i]` (a byte
    /// `>= 0x80`), clamped so that a character truncated by the end of the
    /// input never runs past it. Lead/trail rules are those of PostgreSQL's
    /// `pg_*_mblen` / `pg_*_verifychar` for valid input; invalid sequences are
    /// rejected by the server's encoding verification before lexing, so how
    /// they are skipped here cannot change what the server executes.
    #[inline]
    pub(crate) fn char_len(self, s: &[u8], i: usize) -> usize {
        let Some(&b) = s.get(i) else { return 1 };
        let len = match self {
            ClientEncoding::AsciiSafe => 1,
            // 0xA1..=0xDF are single-byte half-width katakana.
            ClientEncoding::Sjis => {
                if matches!(b, 0x81..=0x9F | 0xE0..=0xFC) {
                    2
                } else {
                    1
                }
            }
            ClientEncoding::Big5 | ClientEncoding::Gbk | ClientEncoding::Uhc => {
                if matches!(b, 0x81..=0xFE) { 2 } else { 1 }
            }
            // Four-byte sequences have a digit (0x30..=0x39) as second byte.
            ClientEncoding::Gb18030 => {
                if matches!(b, 0x81..=0xFE) {
                    if matches!(s.get(i + 1), Some(0x30..=0x39)) {
                        4
                    } else {
                        2
                    }
                } else {
                    1
                }
            }
            ClientEncoding::Johab => {
                if matches!(b, 0x84..=0xD3 | 0xD8..=0xDE | 0xE0..=0xF9) {
                    2
                } else {
                    1
                }
            }
        };
        len.min(s.len() - i)
    }
}

/// Session settings that change how PostgreSQL lexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LexOptions {
    /// `standard_conforming_strings`. Off means backslash escapes in plain
    /// `'...'` literals (scan.l enters state `xe` instead of `xq`). The value
    /// that matters is the one in effect when the server *parses* the string:
    /// a `SET` earlier in the same simple Query does not affect it, because
    /// the whole Query is raw-parsed before any of it executes.
    pub standard_conforming_strings: bool,
    pub encoding: ClientEncoding,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            standard_conforming_strings: true,
            encoding: ClientEncoding::AsciiSafe,
        }
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Unquoted identifier or keyword: `[A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9$]*`
    /// (whole multibyte characters of the client encoding count as letters).
    Word,
    /// `"..."` with `""` escapes, and `U&"..."` (the token includes the `U&`).
    QuotedIdent,
    /// `'...'`, `E'...'`, `N'...'`, `B'...'`, `X'...'`, `U&'...'`, including
    /// the prefix and both quotes.
    String,
    /// `$tag$...$tag$` including both delimiters.
    DollarString,
    Number,
    /// `$1`.
    Param,
    /// `-- ...` up to (not including) the newline.
    LineComment,
    /// `/* ... */`, nesting.
    BlockComment,
    Semicolon,
    LParen,
    RParen,
    Comma,
    /// Any other punctuation/operator run, e.g. `::`, `=`, `+`, `<>`, `.`.
    Operator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte offset of the first byte of the token.
    pub start: usize,
    /// Exclusive end byte offset.
    pub end: usize,
    /// The string, quoted identifier, comment or dollar quote ran to the end of
    /// the input. PostgreSQL rejects such input with a syntax error (so nothing
    /// in the Query executes), but the proxy may want to reject it earlier.
    pub unterminated: bool,
}

impl Token {
    /// The token's bytes. Returns an empty slice (instead of panicking) if the
    /// token does not belong to `sql`.
    pub fn text<'a>(&self, sql: &'a [u8]) -> &'a [u8] {
        sql.get(self.start..self.end).unwrap_or(&[])
    }

    /// `Word` token equal to `kw`, ignoring ASCII case — which is exactly how
    /// PostgreSQL matches keywords (`ScanKeywordLookup` folds ASCII only).
    pub fn is_word(&self, sql: &[u8], kw: &str) -> bool {
        self.kind == TokenKind::Word && self.text(sql).eq_ignore_ascii_case(kw.as_bytes())
    }

    pub fn is_comment(&self) -> bool {
        matches!(self.kind, TokenKind::LineComment | TokenKind::BlockComment)
    }

    /// For a `DollarString`, the opening delimiter including both `$`
    /// (e.g. `$fn$`); `None` for other kinds.
    ///
    /// The server compares delimiters *after* converting to the server
    /// encoding. Some conversions are not injective (e.g. SJIS/CP932 has
    /// several codes for the same character), so a tag containing non-ASCII
    /// bytes may close at a different place on the server when
    /// `client_encoding != server_encoding`. Callers that care can reject
    /// tokens whose tag is not ASCII in that situation.
    pub fn dollar_tag<'a>(&self, sql: &'a [u8]) -> Option<&'a [u8]> {
        if self.kind != TokenKind::DollarString {
            return None;
        }
        let text = self.text(sql);
        let close = text.iter().skip(1).position(|&b| b == b'$')?;
        text.get(..close + 2)
    }
}

// ---------------------------------------------------------------------------
// Character classes (scan.l definitions)
// ---------------------------------------------------------------------------

const SPACE: u8 = 1; // {space}: [ \t\n\r\f\v]
const IDENT_START: u8 = 2; // {ident_start} / {dolq_start}: [A-Za-z\200-\377_]
const IDENT_CONT: u8 = 4; // {ident_cont}: [A-Za-z\200-\377_0-9\$]
const DOLQ_CONT: u8 = 8; // {dolq_cont}: [A-Za-z\200-\377_0-9] (no `$`)
const OP_CHAR: u8 = 16; // {op_chars}: [\~\!\@\#\^\&\|\`\?\+\-\*\/\%\<\>\=]

const CLASS: [u8; 256] = build_class();

const fn build_class() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        // \v (0x0b) is whitespace since PG 16; before that it is an {other}
        // character, i.e. a syntax error outside quotes, so treating it as
        // whitespace cannot hide anything from older servers.
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            c |= SPACE;
        }
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= IDENT_START | IDENT_CONT | DOLQ_CONT;
        }
        if b.is_ascii_digit() {
            c |= IDENT_CONT | DOLQ_CONT;
        }
        if b == b'$' {
            c |= IDENT_CONT;
        }
        if matches!(
            b,
            b'~' | b'!'
                | b'@'
                | b'#'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'<'
                | b'>'
                | b'='
        ) {
            c |= OP_CHAR;
        }
        t[i] = c;
        i += 1;
    }
    t
}

#[inline]
fn has(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

/// How the body of a single-quoted literal is scanned; these are scan.l's
/// exclusive states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrMode {
    /// `xq` (and `xus`, which lexes identically): only `''` is special.
    Standard,
    /// `xe`: `''` and backslash escapes (`\` consumes the next character).
    Escape,
    /// `xb` / `xh` (`B'...'`, `X'...'`): `[^']*`, ends at the first quote —
    /// `''` is *not* an escape here, it ends the literal and starts a new one.
    Bit,
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// Iterator over the tokens of `sql`. Skips whitespace, emits comments.
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
    opts: LexOptions,
    /// Offset of a `'` that continues the previous literal (scan.l's `xqs`
    /// state: a quote after whitespace containing a newline). PostgreSQL
    /// scans the continuation in the *same* state as the first part, so
    /// `E'a'` NEWLINE `'\''` is one E-string even with scs on. Only tracked
    /// when that state differs from what a fresh `'` would get.
    cont_at: usize,
    cont_mode: StrMode,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a [u8], opts: LexOptions) -> Self {
        Self::at(sql, 0, opts)
    }

    /// Starts lexing at byte offset `start` (clamped to the input), e.g. at a
    /// statement start returned by [`split_statements`].
    pub fn at(sql: &'a [u8], start: usize, opts: LexOptions) -> Self {
        #[cfg(test)]
        super::counting::LEXES.with(|c| c.set(c.get() + 1));
        Lexer {
            sql,
            pos: start.min(sql.len()),
            opts,
            cont_at: usize::MAX,
            cont_mode: StrMode::Standard,
        }
    }

    /// Mode a `'` that does not continue a previous literal starts in.
    #[inline]
    fn fresh_mode(&self) -> StrMode {
        if self.opts.standard_conforming_strings {
            StrMode::Standard
        } else {
            StrMode::Escape
        }
    }

    /// Index just past the character starting at `i` (`i < len`).
    #[inline]
    fn step(&self, i: usize) -> usize {
        if self.sql[i] < 0x80 {
            i + 1
        } else {
            i + self.opts.encoding.char_len(self.sql, i)
        }
    }

    /// Scans a single-quoted literal whose opening quote is at `q`.
    /// Returns (end, unterminated).
    fn scan_string(&mut self, q: usize, mode: StrMode) -> (usize, bool) {
        let s = self.sql;
        let n = s.len();
        let esc = mode == StrMode::Escape;
        let mb = self.opts.encoding != ClientEncoding::AsciiSafe;
        let mut i = q + 1;
        while i < n {
            // Skip the run of bytes that can neither end the literal nor start
            // an escape or a multibyte character; in the common case this one
            // scan covers the whole body.
            match s[i..]
                .iter()
                .position(|&c| c == b'\'' || (esc && c == b'\\') || (mb && c >= 0x80))
            {
                Some(off) => i += off,
                None => break,
            }
            match s[i] {
                b'\'' => {
                    // {xqdouble} is only active in xq, xe and xus.
                    if mode != StrMode::Bit && s.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    let end = i + 1;
                    if mode != self.fresh_mode()
                        && let Some(next) = continuation_quote(s, end)
                    {
                        self.cont_at = next;
                        self.cont_mode = mode;
                    }
                    return (end, false);
                }
                // {xeescape} [\\][^0-7] also swallows a quote or newline; the
                // octal/hex/unicode escapes only consume harmless characters.
                // A backslash followed by a multibyte character skips all of it.
                b'\\' if mode == StrMode::Escape => {
                    i += 1;
                    if i < n {
                        i = self.step(i);
                    }
                }
                _ => i = self.step(i),
            }
        }
        (n, true)
    }

    /// `"..."` (state `xd` / `xui`): only `""` is special.
    fn scan_quoted_ident(&self, q: usize) -> (usize, bool) {
        let s = self.sql;
        let n = s.len();
        let mut i = q + 1;
        while i < n {
            if s[i] == b'"' {
                if s.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                return (i + 1, false);
            }
            i = self.step(i);
        }
        (n, true)
    }

    /// `/* ... */` starting at `i` (state `xc`). Comments nest: every `/*`
    /// inside increments the depth ({xcstart} in `<xc>`), every `*/`
    /// ({xcstop} = `\*+\/`) decrements it. `/*/` does not close: the `*` was
    /// consumed by the opener.
    fn scan_block_comment(&self, i: usize) -> (usize, bool) {
        let s = self.sql;
        let n = s.len();
        let mut depth = 0usize;
        let mut j = i + 2;
        while j < n {
            match s[j] {
                b'/' if s.get(j + 1) == Some(&b'*') => {
                    depth += 1;
                    j += 2;
                }
                b'*' if s.get(j + 1) == Some(&b'/') => {
                    if depth == 0 {
                        return (j + 2, false);
                    }
                    depth -= 1;
                    j += 2;
                }
                _ => j = self.step(j),
            }
        }
        (n, true)
    }

    /// `--` comment: runs to (not including) `\n` or `\r`, or to the end of
    /// input ({comment} = `"--"{non_newline}*`).
    fn scan_line_comment(&self, i: usize) -> usize {
        let s = self.sql;
        let n = s.len();
        let mut j = i + 2;
        while j < n && s[j] != b'\n' && s[j] != b'\r' {
            j = self.step(j);
        }
        j
    }

    /// `$` at `i`: a parameter (`$1`), a dollar quote, or a lone `$`.
    fn scan_dollar(&self, i: usize) -> (TokenKind, usize, bool) {
        let s = self.sql;
        let n = s.len();
        let mut j = i + 1;
        match s.get(j) {
            // {param} = \${decdigit}+ ; any identifier right after it is
            // {param_junk} (an error since PG 15; PG 12–14 lex it as a
            // separate identifier, which is what the next token will be).
            Some(b) if b.is_ascii_digit() => {
                while j < n && s[j].is_ascii_digit() {
                    j += 1;
                }
                return (TokenKind::Param, j, false);
            }
            Some(b'$') => {}
            Some(&b) if has(b, IDENT_START) => {
                j = self.step(j);
                while j < n && has(s[j], DOLQ_CONT) {
                    j = self.step(j);
                }
                if j >= n || s[j] != b'$' {
                    // {dolqfailed}: scan.l returns just the `$` and rescans
                    // the rest as an identifier.
                    return (TokenKind::Operator, i + 1, false);
                }
            }
            _ => return (TokenKind::Operator, i + 1, false),
        }
        // s[i..=j] is the delimiter. The body is completely opaque and ends at
        // the first occurrence of the identical (case-sensitive) delimiter.
        // `$` is never a trail byte in any supported encoding, so every `$`
        // in the body is a character boundary, as in the server's `xdolq`.
        let delim = &s[i..=j];
        let mb = self.opts.encoding != ClientEncoding::AsciiSafe;
        let mut k = j + 1;
        while k < n {
            match s[k..].iter().position(|&c| c == b'$' || (mb && c >= 0x80)) {
                Some(off) => k += off,
                None => break,
            }
            if s[k] == b'$' {
                if s[k..].starts_with(delim) {
                    return (TokenKind::DollarString, k + delim.len(), false);
                }
                k += 1;
            } else {
                k = self.step(k);
            }
        }
        (TokenKind::DollarString, n, true)
    }

    /// Operator run starting at `i` (an {op_chars} byte that does not start a
    /// comment), applying the two truncations of scan.l's {operator} rule.
    fn scan_operator(&self, i: usize) -> usize {
        let s = self.sql;
        let n = s.len();
        let mut j = i + 1;
        // An embedded "--" or "/*" starts a comment, so the operator stops
        // there, e.g. `1+--x` is `1`, `+`, comment.
        while j < n && has(s[j], OP_CHAR) {
            let next = s.get(j + 1).copied();
            if (s[j] == b'-' && next == Some(b'-')) || (s[j] == b'/' && next == Some(b'*')) {
                break;
            }
            j += 1;
        }
        // A multi-char operator may not end in + or - unless it contains one
        // of ~ ! @ # ^ & | ` ? % (so `=-` lexes as `=` then `-`). This never
        // changes what is quoted, but keeps token boundaries identical.
        let mut len = j - i;
        if len > 1 && matches!(s[i + len - 1], b'+' | b'-') {
            let qualifies = s[i..i + len - 1].iter().any(|b| b"~!@#^&|`?%".contains(b));
            if !qualifies {
                while len > 1 && matches!(s[i + len - 1], b'+' | b'-') {
                    len -= 1;
                }
            }
        }
        i + len
    }

    /// Identifier starting at `i`: {ident_cont} includes `$`, so `a$b$c` is
    /// one identifier and cannot start a dollar quote.
    #[inline]
    fn scan_word(&self, i: usize) -> usize {
        let s = self.sql;
        let n = s.len();
        let mut j = self.step(i);
        while j < n && has(s[j], IDENT_CONT) {
            j = self.step(j);
        }
        j
    }
}

/// Number starting at `i` (a digit, or `.` followed by a digit).
///
/// Token boundaries follow PG 12–14 (`{integer}`, `{decimal}`, `{real}`, with
/// `{decimalfail}` and `{realfail1,2}` throwing back `..` / `e` / `e+`), where
/// letters glued to a number start a separate identifier — and that
/// identifier swallows `$`: `SELECT 1a$$; DROP ...; SELECT 1a$$` is three
/// valid statements on PG 14. PG 15+ reject such "trailing junk" outright.
/// PG 16+ also lex `0x1F` / `1_000` as one number; the PG 14 reading (`0`,
/// identifier `x1F`) quotes and comments exactly the same bytes, except when
/// a `$` follows (`1_000$$...`), where PG 16 would see a number directly
/// followed by a dollar quote or parameter, which is never valid syntax.
/// So the PG 14 reading matches every server that accepts the input.
fn scan_number(s: &[u8], i: usize) -> usize {
    let n = s.len();
    let digits = |mut j: usize| {
        while j < n && s[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut j;
    if s[i] == b'.' {
        j = digits(i + 1);
    } else {
        j = digits(i);
        // `1..10` is 1, `..`, 10.
        if j < n && s[j] == b'.' && s.get(j + 1) != Some(&b'.') {
            j = digits(j + 1);
        }
    }
    if j < n && (s[j] == b'e' || s[j] == b'E') {
        let mut k = j + 1;
        if k < n && (s[k] == b'+' || s[k] == b'-') {
            k += 1;
        }
        if k < n && s[k].is_ascii_digit() {
            j = digits(k);
        }
    }
    j
}

/// scan.l's {quotecontinue}: starting just past a closing quote at `i`,
/// whitespace (and `--` comments) containing at least one newline, then a
/// quote. Returns the offset of that quote.
fn continuation_quote(s: &[u8], mut i: usize) -> Option<usize> {
    let n = s.len();
    let mut saw_newline = false;
    while i < n {
        match s[i] {
            b' ' | b'\t' | 0x0b | 0x0c => i += 1,
            b'\n' | b'\r' => {
                saw_newline = true;
                i += 1;
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                // The comment must be followed by a newline (or it ran to
                // the end of input and there is no quote anyway). Trail bytes
                // are never \n or \r, so a byte scan is exact here.
                while i < n && s[i] != b'\n' && s[i] != b'\r' {
                    i += 1;
                }
            }
            b'\'' if saw_newline => return Some(i),
            _ => return None,
        }
    }
    None
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline(always)]
    fn next(&mut self) -> Option<Token> {
        let s = self.sql;
        let n = s.len();
        let mut i = self.pos;
        while i < n && has(s[i], SPACE) {
            i += 1;
        }
        if i >= n {
            self.pos = n;
            return None;
        }
        let b = s[i];
        let next = s.get(i + 1).copied();
        let (kind, end, unterminated) = match b {
            b'-' if next == Some(b'-') => {
                (TokenKind::LineComment, self.scan_line_comment(i), false)
            }
            b'/' if next == Some(b'*') => {
                let (e, u) = self.scan_block_comment(i);
                (TokenKind::BlockComment, e, u)
            }
            b'\'' => {
                let mode = if i == self.cont_at {
                    self.cont_mode
                } else {
                    self.fresh_mode()
                };
                self.cont_at = usize::MAX;
                let (e, u) = self.scan_string(i, mode);
                (TokenKind::String, e, u)
            }
            b'"' => {
                let (e, u) = self.scan_quoted_ident(i);
                (TokenKind::QuotedIdent, e, u)
            }
            b'$' => self.scan_dollar(i),
            b'0'..=b'9' => (TokenKind::Number, scan_number(s, i), false),
            b'.' => match next {
                Some(d) if d.is_ascii_digit() => (TokenKind::Number, scan_number(s, i), false),
                Some(b'.') => (TokenKind::Operator, i + 2, false), // {dot_dot}
                _ => (TokenKind::Operator, i + 1, false),
            },
            // {typecast} `::` and {colon_equals} `:=`; a lone `:` is {self}.
            b':' => match next {
                Some(b':' | b'=') => (TokenKind::Operator, i + 2, false),
                _ => (TokenKind::Operator, i + 1, false),
            },
            b';' => (TokenKind::Semicolon, i + 1, false),
            b'(' => (TokenKind::LParen, i + 1, false),
            b')' => (TokenKind::RParen, i + 1, false),
            b',' => (TokenKind::Comma, i + 1, false),
            // Literal prefixes only count at a token start: inside a longer
            // identifier the letter was already consumed by {identifier}
            // (flex longest match), so `abce'x'` is `abce` then `'x'`.
            b'e' | b'E' if next == Some(b'\'') => {
                let (e, u) = self.scan_string(i + 1, StrMode::Escape);
                (TokenKind::String, e, u)
            }
            b'b' | b'B' | b'x' | b'X' if next == Some(b'\'') => {
                let (e, u) = self.scan_string(i + 1, StrMode::Bit);
                (TokenKind::String, e, u)
            }
            // {xnstart}: scan.l eats only the `n` and rescans the quote with
            // {xqstart}, so N'...' follows standard_conforming_strings.
            b'n' | b'N' if next == Some(b'\'') => {
                let mode = self.fresh_mode();
                let (e, u) = self.scan_string(i + 1, mode);
                (TokenKind::String, e, u)
            }
            // {xusstart} / {xuistart}. In U&'...' backslash is the Unicode
            // escape character and never escapes the quote. (With scs off the
            // server rejects U&'' outright.) `U&` followed by anything else is
            // {xufailed}: identifier `U`, then `&`.
            b'u' | b'U' if next == Some(b'&') => match s.get(i + 2) {
                Some(b'\'') => {
                    let (e, u) = self.scan_string(i + 2, StrMode::Standard);
                    (TokenKind::String, e, u)
                }
                Some(b'"') => {
                    let (e, u) = self.scan_quoted_ident(i + 2);
                    (TokenKind::QuotedIdent, e, u)
                }
                _ => (TokenKind::Word, self.scan_word(i), false),
            },
            _ if has(b, IDENT_START) => (TokenKind::Word, self.scan_word(i), false),
            _ if has(b, OP_CHAR) => (TokenKind::Operator, self.scan_operator(i), false),
            // {self} characters `[ ] ^ ...` and {other}: one byte each.
            _ => (TokenKind::Operator, i + 1, false),
        };
        self.pos = end;
        Some(Token {
            kind,
            start: i,
            end,
            unterminated,
        })
    }
}

impl FusedIterator for Lexer<'_> {}

// ---------------------------------------------------------------------------
// Statement splitting
// ---------------------------------------------------------------------------

/// One statement of a simple-Query string. Segments are contiguous and cover
/// the input exactly: `seg[0].start == 0`, `seg[i+1].start == seg[i].end + 1`
/// (skipping the `;`), `last.end == input.len()`. `end` is the offset of the
/// terminating `;` or `input.len()` for the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementSpan {
    pub start: usize,
    pub end: usize,
    /// First non-comment token, if any.
    pub first: Option<Token>,
    /// Ended by `;`.
    pub terminated: bool,
}

impl StatementSpan {
    /// No non-comment token: PostgreSQL discards such a statement
    /// (`stmtmulti` drops NULL `toplevel_stmt`s).
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// Where the current (innermost) statement is in recognising
/// `CREATE [OR REPLACE] {FUNCTION|PROCEDURE} ... BEGIN ATOMIC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// No non-comment token of this statement seen yet.
    Start,
    Create,
    CreateOr,
    CreateOrReplace,
    /// Inside `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, body not seen yet.
    Routine,
    /// Same, and the previous token was `BEGIN` at paren depth 0.
    RoutineBegin,
    /// Anything else; `;` at depth 0 ends it.
    Other,
}

/// Decides which `;` tokens end a statement.
///
/// The server's grammar (`stmtmulti: stmtmulti ';' toplevel_stmt`) splits at
/// every `;` except those inside
///  * parentheses — `CREATE RULE ... DO (a; b)` (`RuleActionMulti`); in any
///    other statement a `;` inside parentheses is a syntax error, and
///  * a SQL-standard function body, `BEGIN ATOMIC stmt; ... END`
///    (`opt_routine_body` / `routine_body_stmt_list`, PG 14+), which only
///    occurs in `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
///
/// Rather than psql's `psqlscan.l` heuristic (count every BEGIN/CASE/END word
/// in such a statement), this follows the grammar: the body starts at the
/// adjacent tokens `BEGIN ATOMIC` at depth 0 and ends at an `END` that is the
/// first token of a body statement (after `ATOMIC` or a depth-0 `;`) — the
/// only place `END_P` can appear there, since the legacy `END` transaction
/// statement is `toplevel_stmt`-only. psql's heuristic is harmless for psql
/// (the server re-splits what psql sends) but would let a client hide
/// statements from the proxy: `CREATE FUNCTION begin() ... AS '...'; DROP
/// TABLE t;` (function named `begin`) or a body containing `SELECT 1 AS case;`
/// never reach begin depth 0 again under the heuristic, while the server
/// executes `DROP TABLE t` as a separate statement. With this rule, input the
/// server accepts is never under-split; on PG 12/13 (no BEGIN ATOMIC) any
/// statement it would merge is a syntax error that aborts the whole Query.
///
/// Paren depth never goes below 0 (an excess `)` is clamped), the
/// conservative choice: more splitting, never less. Nested bodies (a CREATE
/// FUNCTION inside a body) are handled by the `atomic` counter.
#[derive(Clone, Copy, Debug)]
struct Splitter {
    paren: usize,
    atomic: usize,
    head: Head,
}

impl Splitter {
    fn new() -> Self {
        Splitter {
            paren: 0,
            atomic: 0,
            head: Head::Start,
        }
    }

    /// Feeds one non-comment token; returns true if it is a statement
    /// boundary.
    #[inline]
    fn feed(&mut self, sql: &[u8], tok: &Token) -> bool {
        if self.head == Head::Other
            && !matches!(
                tok.kind,
                TokenKind::Semicolon | TokenKind::LParen | TokenKind::RParen
            )
        {
            // Fast path: the bulk of every statement.
            return false;
        }
        match tok.kind {
            TokenKind::Semicolon if self.paren == 0 => {
                self.head = Head::Start;
                if self.atomic == 0 {
                    return true;
                }
                // Separator between statements of a BEGIN ATOMIC body.
                return false;
            }
            TokenKind::LParen => self.paren = self.paren.saturating_add(1),
            TokenKind::RParen => self.paren = self.paren.saturating_sub(1),
            _ => {}
        }
        self.head = match self.head {
            Head::Other => Head::Other,
            Head::Start => {
                if tok.is_word(sql, "create") {
                    Head::Create
                } else {
                    // Start is only entered at depth 0, so this END is the
                    // first token of a body statement.
                    if self.atomic > 0 && tok.is_word(sql, "end") {
                        self.atomic -= 1;
                    }
                    Head::Other
                }
            }
            Head::Create => {
                if tok.is_word(sql, "or") {
                    Head::CreateOr
                } else if is_routine_word(sql, tok) {
                    Head::Routine
                } else {
                    Head::Other
                }
            }
            Head::CreateOr => {
                if tok.is_word(sql, "replace") {
                    Head::CreateOrReplace
                } else {
                    Head::Other
                }
            }
            Head::CreateOrReplace => {
                if is_routine_word(sql, tok) {
                    Head::Routine
                } else {
                    Head::Other
                }
            }
            Head::Routine | Head::RoutineBegin => {
                if self.head == Head::RoutineBegin && tok.is_word(sql, "atomic") {
                    self.atomic = self.atomic.saturating_add(1);
                    Head::Start
                } else if self.paren == 0 && tok.is_word(sql, "begin") {
                    Head::RoutineBegin
                } else {
                    Head::Routine
                }
            }
        };
        false
    }
}

#[inline]
fn is_routine_word(sql: &[u8], tok: &Token) -> bool {
    tok.is_word(sql, "function") || tok.is_word(sql, "procedure")
}

/// Index of the `)` closing the `(` at `open`, if `tokens[open]` is one.
pub fn matching_paren(tokens: &[Token], open: usize) -> Option<usize> {
    if tokens.get(open)?.kind != TokenKind::LParen {
        return None;
    }
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits exactly where the PostgreSQL server's grammar splits a
/// multi-statement Query: at `;` tokens outside quotes, comments and dollar
/// quotes, at parenthesis depth 0 (`CREATE RULE ... DO (a; b)` is one
/// statement; an excess `)` is clamped, never making the depth negative), and
/// not inside a `BEGIN ATOMIC ... END` body of `CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE`. The body is recognised the way the grammar does
/// (adjacent `BEGIN ATOMIC` at depth 0, closed by an `END` that starts a body
/// statement), not with psql's BEGIN/CASE/END word counting, which a client
/// can use to hide statements (see the `Splitter` notes in the source).
///
/// Always returns at least one segment; see [`StatementSpan`] for the layout.
pub fn split_statements(sql: &[u8], opts: LexOptions) -> Vec<StatementSpan> {
    let mut out = Vec::new();
    split_into(sql, opts, &mut out);
    out
}

/// Same as [`split_statements`], but appends into a caller-provided Vec
/// (cleared first) so the hot path can reuse the allocation.
pub fn split_into(sql: &[u8], opts: LexOptions, out: &mut Vec<StatementSpan>) {
    out.clear();
    for_each_statement(sql, opts, |span| out.push(span));
}

/// The segments of [`split_statements`], one at a time and stored nowhere: a caller that keeps
/// only some of them (the session's analyzer keeps non-empty ones, up to a limit) bounds its
/// memory by what it keeps, not by what a client sends.
pub fn each_statement(sql: &[u8], opts: LexOptions, emit: impl FnMut(StatementSpan)) {
    for_each_statement(sql, opts, emit);
}

/// Every token of `sql[start..end]` (comments included), for readers that share one lexing
/// pass of a statement.
pub fn tokens(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Vec<Token> {
    Lexer::at(sql, start, opts)
        .take_while(|t| t.start < end)
        .collect()
}

/// Most tokens [`each_statement_tokens`] keeps of one statement (32 MiB of tokens): a
/// statement with more is handed on as `None` (the analysis also bounds the tokens all
/// statements of one message keep by it), so no input makes the split's memory grow with it.
pub const MAX_KEPT_TOKENS: usize = 1 << 20;

/// [`each_statement`], also handing each statement's tokens (comments included) to `emit`
/// when `keep` says so at its first token — an empty slice otherwise, and `None` when it had
/// more than [`MAX_KEPT_TOKENS`]. The splitter lexes every byte anyway; keeping the tokens of
/// the few statements that are read further (DDL) spares those readers a lexing pass of their
/// own, while ordinary traffic keeps none.
#[inline]
pub fn each_statement_tokens(
    sql: &[u8],
    opts: LexOptions,
    mut keep: impl FnMut(&Token) -> bool,
    mut emit: impl FnMut(StatementSpan, Option<&[Token]>),
) {
    let mut splitter = Splitter::new();
    let mut cur = StatementSpan {
        start: 0,
        end: sql.len(),
        first: None,
        terminated: false,
    };
    // The current statement's tokens, while they are kept (leading comments included: they
    // may hold override comments).
    let mut buf: Vec<Token> = Vec::new();
    let mut keeping = true;
    // The statement had more than MAX_KEPT_TOKENS: its tokens were let go.
    let mut overflowed = false;
    // Before the statement's first token, or while its tokens are kept: the one test per token
    // of the common case (DML, nothing kept), as in `for_each_statement`.
    let mut slow = true;
    for tok in Lexer::new(sql, opts) {
        if keeping && buf.len() >= MAX_KEPT_TOKENS {
            keeping = false;
            overflowed = true;
            slow = cur.first.is_none();
            buf = Vec::new();
        }
        if tok.is_comment() {
            if keeping {
                buf.push(tok);
            }
            continue;
        }
        if splitter.feed(sql, &tok) {
            cur.end = tok.start;
            cur.terminated = true;
            emit(cur, kept(&buf, keeping, overflowed));
            buf.clear();
            keeping = true;
            overflowed = false;
            slow = true;
            cur = StatementSpan {
                start: tok.end,
                end: sql.len(),
                first: None,
                terminated: false,
            };
        } else if slow {
            if cur.first.is_none() {
                cur.first = Some(tok);
                keeping = !overflowed && keep(&tok);
                if !keeping {
                    buf.clear();
                }
            }
            if keeping {
                buf.push(tok);
            }
            slow = keeping;
        }
    }
    emit(cur, kept(&buf, keeping, overflowed));
}

/// The one statement of `sql`, as [`each_statement`] would give it, when a few vectorised
/// searches over the bytes prove the text is exactly one statement: no `;` at all (then
/// nothing can end a statement early, and comments are allowed: the query tags ORMs append,
/// `/*controller:users*/`, keep a query on this path), or one final terminator (after it,
/// only whitespace) that no comment, quote, dollar quote or parenthesis can hide. `None`
/// whenever that cannot be told this cheaply (the caller then lexes the text): a `;` in a
/// text with a comment opener (even inside a literal) or a quote, a second `;`, a `$` not
/// starting a parameter before it, a statement starting with `CREATE` (its `BEGIN ATOMIC`
/// body may hold `;`), a text of comments only, multibyte text in an encoding whose
/// characters may hide ASCII bytes. Ordinary traffic (`SELECT … WHERE id = $1`) takes this
/// path and is never tokenised beyond its first token.
pub fn single_statement(sql: &[u8], opts: LexOptions) -> Option<StatementSpan> {
    if opts.encoding != ClientEncoding::AsciiSafe && !sql.is_ascii() {
        return None;
    }
    let (end, terminated) = match memchr::memchr(b';', sql) {
        None => (sql.len(), false),
        Some(at) => {
            // Only whitespace after it (so no second `;`), no comment opener anywhere, no
            // quote or dollar quote that could hide it, and no parenthesis left open at it.
            if !sql[at + 1..].iter().all(|&b| has(b, SPACE)) {
                return None;
            }
            let comment = memchr::memchr2_iter(b'-', b'/', sql).any(|at| {
                let opener = if sql[at] == b'-' { b'-' } else { b'*' };
                sql.get(at + 1) == Some(&opener)
            });
            let before = &sql[..at];
            let hidden = memchr::memchr3_iter(b'\'', b'"', b'$', before)
                .any(|q| sql[q] != b'$' || !sql.get(q + 1).is_some_and(u8::is_ascii_digit));
            let depth = memchr::memchr2_iter(b'(', b')', before).fold(0u32, |depth, p| {
                if sql[p] == b'(' {
                    depth.saturating_add(1)
                } else {
                    depth.saturating_sub(1)
                }
            });
            if comment || hidden || depth != 0 {
                return None;
            }
            (at, true)
        }
    };
    // Comments before the first word, if any, and that word: not a lexing pass (`counting`
    // counts passes over a statement).
    let first = Lexer {
        sql,
        pos: 0,
        opts,
        cont_at: usize::MAX,
        cont_mode: StrMode::Standard,
    }
    .find(|t| !t.is_comment())?;
    if first.start >= end || first.is_word(sql, "create") {
        return None;
    }
    Some(StatementSpan {
        start: 0,
        end,
        first: Some(first),
        terminated,
    })
}

/// What [`each_statement_tokens`] hands on for one statement.
fn kept(buf: &[Token], keeping: bool, overflowed: bool) -> Option<&[Token]> {
    match (keeping, overflowed) {
        (true, _) => Some(buf),
        (false, true) => None,
        (false, false) => Some(&[]),
    }
}

/// Count of non-empty statements (what PostgreSQL will execute). Does not
/// allocate.
pub fn count_statements(sql: &[u8], opts: LexOptions) -> usize {
    let mut count = 0;
    for_each_statement(sql, opts, |span| count += usize::from(!span.is_empty()));
    count
}

#[inline]
fn for_each_statement(sql: &[u8], opts: LexOptions, mut emit: impl FnMut(StatementSpan)) {
    let mut splitter = Splitter::new();
    let mut cur = StatementSpan {
        start: 0,
        end: sql.len(),
        first: None,
        terminated: false,
    };
    for tok in Lexer::new(sql, opts) {
        if tok.is_comment() {
            continue;
        }
        if splitter.feed(sql, &tok) {
            cur.end = tok.start;
            cur.terminated = true;
            emit(cur);
            cur = StatementSpan {
                start: tok.end,
                end: sql.len(),
                first: None,
                terminated: false,
            };
        } else if cur.first.is_none() {
            cur.first = Some(tok);
        }
    }
    emit(cur);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind::*;
    use proptest::prelude::*;

    // `TokenKind::String` shadows the std type inside this module.
    type Text = std::string::String;

    #[test]
    fn statements_keep_the_tokens_asked_for() {
        let sql = b"/* c */ CREATE INDEX i ON t (x); SELECT 1; -- x\n DROP TABLE t";
        let mut seen = Vec::new();
        each_statement_tokens(
            sql,
            LexOptions::default(),
            |t| !t.is_word(sql, "SELECT"),
            |span, tokens| seen.push((span, tokens.expect("few tokens").to_vec())),
        );
        let spans: Vec<StatementSpan> = seen.iter().map(|(s, _)| *s).collect();
        assert_eq!(spans, split_statements(sql, LexOptions::default()));
        for (span, kept) in &seen {
            let all = tokens(sql, span.start, span.end, LexOptions::default());
            if span.first.is_some_and(|t| t.is_word(sql, "SELECT")) {
                assert!(kept.is_empty());
            } else {
                assert_eq!(kept, &all, "leading comments included");
            }
        }
    }

    const SCS_ON: LexOptions = LexOptions {
        standard_conforming_strings: true,
        encoding: ClientEncoding::AsciiSafe,
    };
    const SCS_OFF: LexOptions = LexOptions {
        standard_conforming_strings: false,
        encoding: ClientEncoding::AsciiSafe,
    };

    fn with_enc(encoding: ClientEncoding) -> LexOptions {
        LexOptions {
            standard_conforming_strings: true,
            encoding,
        }
    }

    /// Tokens as (kind, text) for readable expectations.
    fn toks(sql: &[u8], opts: LexOptions) -> Vec<(TokenKind, Text)> {
        Lexer::new(sql, opts)
            .map(|t| (t.kind, Text::from_utf8_lossy(t.text(sql)).into_owned()))
            .collect()
    }

    /// Statement texts (without the `;`), empty segments included.
    fn stmts(sql: &[u8], opts: LexOptions) -> Vec<Text> {
        split_statements(sql, opts)
            .iter()
            .map(|s| Text::from_utf8_lossy(&sql[s.start..s.end]).into_owned())
            .collect()
    }

    fn t(kind: TokenKind, text: &str) -> (TokenKind, Text) {
        (kind, text.to_owned())
    }

    // ----- lexing ----------------------------------------------------------

    #[test]
    #[rustfmt::skip]
    fn lex_table() {
        // (input, options, expected tokens as (kind, text)).
        type Case = (&'static str, LexOptions, &'static [(TokenKind, &'static str)]);
        let cases: &[Case] = &[
            // Whitespace includes \f and \v.
            ("a\t\n\r\x0b\x0cb", SCS_ON, &[(Word, "a"), (Word, "b")]),
            // `--` inside an operator run starts a comment.
            ("SELECT 1--2", SCS_ON, &[(Word, "SELECT"), (Number, "1"), (LineComment, "--2")]),
            ("a+-- c\nb", SCS_ON, &[(Word, "a"), (Operator, "+"), (LineComment, "-- c"), (Word, "b")]),
            ("a--x\rb", SCS_ON, &[(Word, "a"), (LineComment, "--x"), (Word, "b")]),
            // ... also when the operator would otherwise keep a trailing `-`.
            ("a@--x\nb", SCS_ON, &[(Word, "a"), (Operator, "@"), (LineComment, "--x"), (Word, "b")]),
            ("a|/*x*/b", SCS_ON, &[(Word, "a"), (Operator, "|"), (BlockComment, "/*x*/"), (Word, "b")]),
            ("1 +/* x */2", SCS_ON, &[(Number, "1"), (Operator, "+"), (BlockComment, "/* x */"), (Number, "2")]),
            ("*/*x*/", SCS_ON, &[(Operator, "*"), (BlockComment, "/*x*/")]),
            // Nested block comments; `/*/` does not close.
            ("/* a /* b */ c */ d", SCS_ON, &[(BlockComment, "/* a /* b */ c */"), (Word, "d")]),
            ("/*/ x */y", SCS_ON, &[(BlockComment, "/*/ x */"), (Word, "y")]),
            ("/**/x", SCS_ON, &[(BlockComment, "/**/"), (Word, "x")]),
            ("/* ** **/x", SCS_ON, &[(BlockComment, "/* ** **/"), (Word, "x")]),
            // Operators: trailing +/- stripped unless a qualifying char is present.
            ("a=-1", SCS_ON, &[(Word, "a"), (Operator, "="), (Operator, "-"), (Number, "1")]),
            ("a@-b", SCS_ON, &[(Word, "a"), (Operator, "@-"), (Word, "b")]),
            ("a<>b", SCS_ON, &[(Word, "a"), (Operator, "<>"), (Word, "b")]),
            ("x::int", SCS_ON, &[(Word, "x"), (Operator, "::"), (Word, "int")]),
            ("a:=b", SCS_ON, &[(Word, "a"), (Operator, ":="), (Word, "b")]),
            ("a[1:2]", SCS_ON, &[(Word, "a"), (Operator, "["), (Number, "1"), (Operator, ":"), (Number, "2"), (Operator, "]")]),
            ("t.c", SCS_ON, &[(Word, "t"), (Operator, "."), (Word, "c")]),
            ("\\x{", SCS_ON, &[(Operator, "\\"), (Word, "x"), (Operator, "{")]),
            // Numbers.
            ("1..10", SCS_ON, &[(Number, "1"), (Operator, ".."), (Number, "10")]),
            (".5e-3", SCS_ON, &[(Number, ".5e-3")]),
            ("1.e5", SCS_ON, &[(Number, "1.e5")]),
            ("1.5.6", SCS_ON, &[(Number, "1.5"), (Number, ".6")]),
            ("1e+", SCS_ON, &[(Number, "1"), (Word, "e"), (Operator, "+")]),
            // PG 12–14 {realfail1}: `1e'x'` is 1 followed by an E-string.
            ("1e'\\''", SCS_ON, &[(Number, "1"), (String, "e'\\''")]),
            // Identifier glued to a number swallows `$` (PG 12–14 reading).
            ("1a$$", SCS_ON, &[(Number, "1"), (Word, "a$$")]),
            ("0x1F", SCS_ON, &[(Number, "0"), (Word, "x1F")]),
            ("1_000$$x$$", SCS_ON, &[(Number, "1"), (Word, "_000$$x$$")]),
            // Parameters and lone `$`.
            ("$1", SCS_ON, &[(Param, "$1")]),
            ("$12a", SCS_ON, &[(Param, "$12"), (Word, "a")]),
            ("$a b", SCS_ON, &[(Operator, "$"), (Word, "a"), (Word, "b")]),
            ("$", SCS_ON, &[(Operator, "$")]),
            ("$ 1", SCS_ON, &[(Operator, "$"), (Number, "1")]),
            ("$1$$x$$", SCS_ON, &[(Param, "$1"), (DollarString, "$$x$$")]),
            // `$` inside an identifier never starts a dollar quote.
            ("a$b$c", SCS_ON, &[(Word, "a$b$c")]),
            ("a$b$ ;", SCS_ON, &[(Word, "a$b$"), (Semicolon, ";")]),
            // Dollar quotes: tags are case-sensitive, nothing inside is special.
            ("$$x$$", SCS_ON, &[(DollarString, "$$x$$")]),
            ("$a$ ; $$ ' $a$;", SCS_ON, &[(DollarString, "$a$ ; $$ ' $a$"), (Semicolon, ";")]),
            ("$A$ $a$ $A$", SCS_ON, &[(DollarString, "$A$ $a$ $A$")]),
            ("$ab$x$a$ab$", SCS_ON, &[(DollarString, "$ab$x$a$ab$")]),
            ("$_1$ -- /* ' $_1$", SCS_ON, &[(DollarString, "$_1$ -- /* ' $_1$")]),
            ("$1a$", SCS_ON, &[(Param, "$1"), (Word, "a$")]),
            // Strings.
            ("'it''s'", SCS_ON, &[(String, "'it''s'")]),
            ("''''", SCS_ON, &[(String, "''''")]),
            (r"E'\''", SCS_ON, &[(String, r"E'\''")]),
            (r"e'\\' x", SCS_ON, &[(String, r"e'\\'"), (Word, "x")]),
            (r"E'a\'b' c", SCS_ON, &[(String, r"E'a\'b'"), (Word, "c")]),
            ("N'x' n'y'", SCS_ON, &[(String, "N'x'"), (String, "n'y'")]),
            ("B'01' x'fF'", SCS_ON, &[(String, "B'01'"), (String, "x'fF'")]),
            // In B/X strings '' ends the literal and starts a new one.
            ("B'a''b'", SCS_ON, &[(String, "B'a'"), (String, "'b'")]),
            (r"B'\'", SCS_OFF, &[(String, r"B'\'")]),
            (r"U&'d\0061t' u&'\'", SCS_ON, &[(String, r"U&'d\0061t'"), (String, r"u&'\'")]),
            ("U&x", SCS_ON, &[(Word, "U"), (Operator, "&"), (Word, "x")]),
            ("abce'x'", SCS_ON, &[(Word, "abce"), (String, "'x'")]),
            ("Ex'x'", SCS_ON, &[(Word, "Ex"), (String, "'x'")]),
            // Quoted identifiers.
            (r#""a""b" x"#, SCS_ON, &[(QuotedIdent, r#""a""b""#), (Word, "x")]),
            (r#"U&"d\0061t" u&"x""#, SCS_ON, &[(QuotedIdent, r#"U&"d\0061t""#), (QuotedIdent, r#"u&"x""#)]),
            // No backslash escapes in quoted identifiers, whatever scs says.
            (r#""a\"b"#, SCS_OFF, &[(QuotedIdent, r#""a\""#), (Word, "b")]),
            // Punctuation kinds.
            ("f(a,b);", SCS_ON, &[(Word, "f"), (LParen, "("), (Word, "a"), (Comma, ","), (Word, "b"), (RParen, ")"), (Semicolon, ";")]),
        ];
        for (sql, opts, want) in cases {
            let want: Vec<_> = want.iter().map(|(k, s)| t(*k, s)).collect();
            assert_eq!(toks(sql.as_bytes(), *opts), want, "lexing {sql:?}");
        }
    }

    #[test]
    fn scs_changes_plain_strings_only() {
        // scs on: backslash is an ordinary character in '...'.
        assert_eq!(
            toks(b"'\\' x", SCS_ON),
            vec![t(String, "'\\'"), t(Word, "x")]
        );
        // scs off: '...' behaves like E'...'.
        assert_eq!(
            toks(b"'\\'' x", SCS_OFF),
            vec![t(String, "'\\''"), t(Word, "x")]
        );
        assert_eq!(
            toks(b"N'\\'' x", SCS_OFF),
            vec![t(String, "N'\\''"), t(Word, "x")]
        );
        // E'' escapes regardless of the setting; U&'' never does.
        assert_eq!(
            toks(b"E'\\'' x", SCS_ON),
            vec![t(String, "E'\\''"), t(Word, "x")]
        );
        assert_eq!(
            toks(b"U&'\\' x", SCS_ON),
            vec![t(String, "U&'\\'"), t(Word, "x")]
        );
    }

    #[test]
    fn string_continuation_keeps_the_first_parts_mode() {
        // E-string continued on the next line: still xe, so \' is an escape
        // even though scs is on and a fresh '...' would treat it literally.
        let sql = b"SELECT E'a'\n'\\'; DROP TABLE x; --'";
        assert_eq!(
            toks(sql, SCS_ON),
            vec![
                t(Word, "SELECT"),
                t(String, "E'a'"),
                t(String, "'\\'; DROP TABLE x; --'")
            ]
        );
        assert_eq!(count_statements(sql, SCS_ON), 1);
        // Continuation through a -- comment line.
        let sql = b"SELECT E'a' -- c\n  '\\'; DROP TABLE x; --'";
        assert_eq!(count_statements(sql, SCS_ON), 1);
        // No newline: not a continuation, the second literal is fresh.
        let sql = b"SELECT E'a' '\\'; DROP TABLE x; --'";
        assert_eq!(count_statements(sql, SCS_ON), 2);
        // B'' continued: stays xb, so with scs off the backslash is literal.
        let sql = b"SELECT B'0'\n'\\'; DROP TABLE x; --'";
        assert_eq!(
            stmts(sql, SCS_OFF),
            vec!["SELECT B'0'\n'\\'", " DROP TABLE x", " --'"]
        );
        // \v and \f are horizontal whitespace for continuation (PG 16+; on
        // older servers \v outside quotes is a syntax error anyway).
        let sql = b"SELECT E'a' \x0b\x0c\n'\\'; DROP TABLE x; --'";
        assert_eq!(count_statements(sql, SCS_ON), 1);
        // Chained continuation.
        let sql = b"SELECT E'a'\n'b'\n'\\';'";
        assert_eq!(count_statements(sql, SCS_ON), 1);
    }

    #[test]
    fn unterminated_tokens_run_to_end() {
        let cases: &[(&str, TokenKind)] = &[
            ("'abc", String),
            ("E'abc\\'", String),
            ("B'01", String),
            ("\"abc", QuotedIdent),
            ("U&\"abc", QuotedIdent),
            ("/* a /* b */", BlockComment),
            ("$x$ abc $x", DollarString),
            ("$$", DollarString),
        ];
        for (sql, kind) in cases {
            let v: Vec<Token> = Lexer::new(sql.as_bytes(), SCS_ON).collect();
            assert_eq!(v.len(), 1, "{sql:?}");
            assert_eq!(v[0].kind, *kind, "{sql:?}");
            assert_eq!((v[0].start, v[0].end), (0, sql.len()), "{sql:?}");
            assert!(v[0].unterminated, "{sql:?}");
        }
        let v: Vec<Token> = Lexer::new(b"-- x", SCS_ON).collect();
        assert_eq!(
            (v[0].kind, v[0].end, v[0].unterminated),
            (LineComment, 4, false)
        );
        let v: Vec<Token> = Lexer::new(b"'a' x", SCS_ON).collect();
        assert!(!v[0].unterminated);
    }

    // ----- multibyte encodings --------------------------------------------

    #[test]
    fn sjis_trail_backslash_does_not_escape() {
        // 0x95 0x5C is one SJIS character (表); the 0x5C is not a backslash.
        let sql: &[u8] = b"SELECT '\x95\x5c'; SELECT 2";
        let sjis_off = LexOptions {
            standard_conforming_strings: false,
            encoding: ClientEncoding::Sjis,
        };
        assert_eq!(count_statements(sql, sjis_off), 2);
        assert_eq!(stmts(sql, sjis_off)[1], " SELECT 2");
        // Read as a single-byte encoding with scs off, the 0x5C escapes the
        // quote and the literal swallows the rest.
        assert_eq!(count_statements(sql, SCS_OFF), 1);
        // E'' strings are always escape strings.
        let sql: &[u8] = b"SELECT E'\x95\x5c'; SELECT 2";
        assert_eq!(count_statements(sql, with_enc(ClientEncoding::Sjis)), 2);
        assert_eq!(count_statements(sql, SCS_ON), 1);
        // Half-width katakana (0xA1..=0xDF) is single-byte, so 0x5C after it
        // is a real backslash.
        let sql: &[u8] = b"SELECT E'\xb1\x5c'; SELECT 2";
        assert_eq!(count_statements(sql, with_enc(ClientEncoding::Sjis)), 1);
    }

    #[test]
    fn multibyte_chars_are_identifier_chars() {
        // BIG5 0xA5 0x5C: trail 0x5C inside an identifier and a dollar tag.
        let big5 = with_enc(ClientEncoding::Big5);
        let sql: &[u8] = b"a\xa5\x5cb";
        assert_eq!(Lexer::new(sql, big5).count(), 1);
        assert_eq!(Lexer::new(sql, SCS_ON).count(), 3);
        let sql: &[u8] = b"$\xa5\x5c$ ; $\xa5\x5c$";
        let v: Vec<Token> = Lexer::new(sql, big5).collect();
        assert_eq!((v.len(), v[0].kind, v[0].end), (1, DollarString, sql.len()));
        assert_eq!(v[0].dollar_tag(sql), Some(&b"$\xa5\x5c$"[..]));
        // JOHAB trail byte 0x3B (`;`) does not end a statement.
        let sql: &[u8] = b"SELECT \x88\x3b 1";
        assert_eq!(
            split_statements(sql, with_enc(ClientEncoding::Johab)).len(),
            1
        );
        assert_eq!(split_statements(sql, SCS_ON).len(), 2);
        // GBK / UHC: 0x5C trail in an E-string.
        for enc in [ClientEncoding::Gbk, ClientEncoding::Uhc] {
            let sql: &[u8] = b"SELECT E'\x81\x5c'; SELECT 2";
            assert_eq!(count_statements(sql, with_enc(enc)), 2, "{enc:?}");
        }
    }

    #[test]
    fn gb18030_four_byte_chars() {
        let gb = with_enc(ClientEncoding::Gb18030);
        // 0x81 0x30 0x81 0x30 is a 4-byte character; after it, 0x5C is a
        // real backslash.
        let sql: &[u8] = b"SELECT E'\x81\x30\x81\x30\\'; SELECT 2'";
        assert_eq!(count_statements(sql, gb), 1);
        // 2-byte character with trail 0x5C: no escape.
        let sql: &[u8] = b"SELECT E'\x81\x5c'; SELECT 2";
        assert_eq!(count_statements(sql, gb), 2);
        // A 4-byte character in an identifier keeps its digit bytes.
        let sql: &[u8] = b"a\x81\x30\x81\x30b";
        assert_eq!(Lexer::new(sql, gb).count(), 1);
        // Truncated characters at the end of input never panic.
        for tail in [&b"\x81"[..], b"\x81\x30", b"\x81\x30\x81", b"'\x81\x30"] {
            let v: Vec<Token> = Lexer::new(tail, gb).collect();
            assert_eq!(v.last().map(|t| t.end), Some(tail.len()));
        }
    }

    #[test]
    #[rustfmt::skip]
    fn char_len_boundaries() {
        use ClientEncoding::*;
        // (encoding, bytes starting at a high byte, expected character length).
        let cases: &[(ClientEncoding, &[u8], usize)] = &[
            (AsciiSafe, b"\x95\x5c", 1),
            (Sjis, b"\x80\x5c", 1), (Sjis, b"\x81\x5c", 2), (Sjis, b"\x9f\x5c", 2),
            (Sjis, b"\xa0\x5c", 1), (Sjis, b"\xa1\x5c", 1), (Sjis, b"\xdf\x5c", 1),
            (Sjis, b"\xe0\x5c", 2), (Sjis, b"\xfc\x5c", 2), (Sjis, b"\xfd\x5c", 1),
            (Big5, b"\x80\x5c", 1), (Big5, b"\x81\x5c", 2), (Big5, b"\xfe\x5c", 2), (Big5, b"\xff\x5c", 1),
            (Gbk, b"\x81\x5c", 2), (Gbk, b"\xff\x5c", 1),
            (Uhc, b"\x81\x41", 2), (Uhc, b"\x80\x41", 1),
            (Gb18030, b"\x81\x30\x81\x30", 4), (Gb18030, b"\x81\x39\x81\x30", 4),
            (Gb18030, b"\x81\x2f\x81\x30", 2), (Gb18030, b"\x81\x3a\x81\x30", 2),
            (Gb18030, b"\x80\x30\x81\x30", 1), (Gb18030, b"\xff\x30\x81\x30", 1),
            (Johab, b"\x83\x5c", 1), (Johab, b"\x84\x5c", 2), (Johab, b"\xd3\x5c", 2),
            (Johab, b"\xd4\x5c", 1), (Johab, b"\xd8\x5c", 2), (Johab, b"\xde\x5c", 2),
            (Johab, b"\xdf\x5c", 1), (Johab, b"\xe0\x5c", 2), (Johab, b"\xf9\x5c", 2), (Johab, b"\xfa\x5c", 1),
            // Truncated at the end of input: clamped.
            (Sjis, b"\x81", 1), (Gb18030, b"\x81\x30", 2), (Gb18030, b"\x81\x30\x81", 3),
        ];
        for (enc, bytes, want) in cases {
            assert_eq!(enc.char_len(bytes, 0), *want, "{enc:?} {bytes:x?}");
        }
    }

    #[test]
    fn encoding_names() {
        use ClientEncoding::*;
        let cases = [
            ("UTF8", AsciiSafe),
            ("SQL_ASCII", AsciiSafe),
            ("LATIN1", AsciiSafe),
            ("EUC_JP", AsciiSafe),
            ("WIN1252", AsciiSafe),
            ("SJIS", Sjis),
            ("Shift_JIS", Sjis),
            ("SHIFT_JIS_2004", Sjis),
            ("mskanji", Sjis),
            ("WIN932", Sjis),
            ("Windows-932", Sjis),
            ("big5", Big5),
            ("WIN950", Big5),
            ("GBK", Gbk),
            ("win936", Gbk),
            ("UHC", Uhc),
            ("windows949", Uhc),
            ("GB18030", Gb18030),
            ("johab", Johab),
            ("", AsciiSafe),
            ("sjisx", AsciiSafe),
        ];
        for (name, want) in cases {
            assert_eq!(ClientEncoding::from_pg_name(name), want, "{name}");
        }
    }

    // ----- splitting -------------------------------------------------------

    #[test]
    #[rustfmt::skip]
    fn split_table() {
        // (input, options, expected statement texts without the `;`).
        let cases: &[(&str, LexOptions, &[&str])] = &[
            ("", SCS_ON, &[""]),
            ("SELECT 1", SCS_ON, &["SELECT 1"]),
            ("SELECT 1;", SCS_ON, &["SELECT 1", ""]),
            // Empty statements.
            ("a;;b", SCS_ON, &["a", "", "b"]),
            ("SELECT ';'; SELECT \";\"", SCS_ON, &["SELECT ';'", " SELECT \";\""]),
            ("SELECT 1 -- ;\n; x", SCS_ON, &["SELECT 1 -- ;\n", " x"]),
            ("SELECT /* ; /* ; */ ; */ 1; x", SCS_ON, &["SELECT /* ; /* ; */ ; */ 1", " x"]),
            ("SELECT $a$ ; $$ ' $a$; x", SCS_ON, &["SELECT $a$ ; $$ ' $a$", " x"]),
            ("SELECT a$b$; x", SCS_ON, &["SELECT a$b$", " x"]),
            // The scs-dependent classic.
            ("SELECT '\\'; DROP TABLE x; --'", SCS_ON, &["SELECT '\\'", " DROP TABLE x", " --'"]),
            ("SELECT '\\'; DROP TABLE x; --'", SCS_OFF, &["SELECT '\\'; DROP TABLE x; --'"]),
            // CREATE RULE with a parenthesised multi-action.
            (
                "CREATE RULE r AS ON INSERT TO t DO INSTEAD (INSERT INTO a VALUES (1); DELETE FROM b); SELECT 1",
                SCS_ON,
                &["CREATE RULE r AS ON INSERT TO t DO INSTEAD (INSERT INTO a VALUES (1); DELETE FROM b)", " SELECT 1"],
            ),
            // Excess `)` is clamped: the following `;` still splits.
            ("SELECT 1); SELECT (2; 3); x", SCS_ON, &["SELECT 1)", " SELECT (2; 3)", " x"]),
            // Unterminated constructs swallow the rest.
            ("SELECT 'a; b", SCS_ON, &["SELECT 'a; b"]),
            ("SELECT $x$ a; b", SCS_ON, &["SELECT $x$ a; b"]),
            ("SELECT /* a; b", SCS_ON, &["SELECT /* a; b"]),
            ("SELECT \"a; b", SCS_ON, &["SELECT \"a; b"]),
        ];
        for (sql, opts, want) in cases {
            assert_eq!(stmts(sql.as_bytes(), *opts), *want, "splitting {sql:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn begin_atomic_bodies() {
        // (input, expected statement texts without the `;`).
        let cases: &[(&str, &[&str])] = &[
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
                &["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", " SELECT 3"],
            ),
            (
                "create or replace procedure p() begin atomic insert into t values (1); end; select 3",
                &["create or replace procedure p() begin atomic insert into t values (1); end", " select 3"],
            ),
            // CASE ... END inside the body does not close it.
            (
                "CREATE FUNCTION f(x int) RETURNS int BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END; END; SELECT 3",
                &["CREATE FUNCTION f(x int) RETURNS int BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END; END", " SELECT 3"],
            ),
            // Empty body and empty body statements.
            ("CREATE PROCEDURE p() BEGIN ATOMIC END; x", &["CREATE PROCEDURE p() BEGIN ATOMIC END", " x"]),
            ("CREATE PROCEDURE p() BEGIN ATOMIC ;; END; x", &["CREATE PROCEDURE p() BEGIN ATOMIC ;; END", " x"]),
            // Comments between BEGIN and ATOMIC, and before END.
            (
                "CREATE FUNCTION f() BEGIN /*c*/ ATOMIC SELECT 1; -- c\n END; x",
                &["CREATE FUNCTION f() BEGIN /*c*/ ATOMIC SELECT 1; -- c\n END", " x"],
            ),
            // A nested function with its own body.
            (
                "CREATE FUNCTION f() BEGIN ATOMIC CREATE FUNCTION g() BEGIN ATOMIC SELECT 1; END; SELECT 2; END; x",
                &["CREATE FUNCTION f() BEGIN ATOMIC CREATE FUNCTION g() BEGIN ATOMIC SELECT 1; END; SELECT 2; END", " x"],
            ),
            // A rule action list inside a body.
            (
                "CREATE FUNCTION f() BEGIN ATOMIC CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2); END; x",
                &["CREATE FUNCTION f() BEGIN ATOMIC CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2); END", " x"],
            ),
            // Not a routine: BEGIN ATOMIC means nothing, `;` splits.
            ("CREATE TABLE t (a int); BEGIN; END", &["CREATE TABLE t (a int)", " BEGIN", " END"]),
            ("SELECT begin atomic; x", &["SELECT begin atomic", " x"]),
            ("CREATE FUNCTION atomic() RETURNS int AS 'x'; y", &["CREATE FUNCTION atomic() RETURNS int AS 'x'", " y"]),
            ("CREATE FUNCTION f() RETURNS begin AS 'x'; y", &["CREATE FUNCTION f() RETURNS begin AS 'x'", " y"]),
            ("CREATE \"function\" f() BEGIN ATOMIC; x", &["CREATE \"function\" f() BEGIN ATOMIC", " x"]),
            // Parenthesised BEGIN (e.g. a parameter named begin) is not a body.
            ("CREATE FUNCTION f(begin int) RETURNS int AS 'x'; y", &["CREATE FUNCTION f(begin int) RETURNS int AS 'x'", " y"]),
            // A parameter named `begin` of a type named `atomic` parses fine.
            ("CREATE FUNCTION f(begin atomic) RETURNS int AS 'x'; y", &["CREATE FUNCTION f(begin atomic) RETURNS int AS 'x'", " y"]),
        ];
        for (sql, want) in cases {
            assert_eq!(stmts(sql.as_bytes(), SCS_ON), *want, "splitting {sql:?}");
        }
    }

    #[test]
    fn psql_heuristic_hiding_vectors_are_split() {
        // A function named `begin`: psql's heuristic would raise its begin
        // depth and never split again; the server runs DROP separately.
        let sql = b"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1'; DROP TABLE x; SELECT 1";
        assert_eq!(count_statements(sql, SCS_ON), 3);
        // `case` / `begin` as column aliases inside a body.
        let sql = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS case; END; DROP TABLE x";
        assert_eq!(count_statements(sql, SCS_ON), 2);
        let sql = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 begin; END; DROP TABLE x";
        assert_eq!(count_statements(sql, SCS_ON), 2);
        // `end` as an alias inside a body does not close it early (over-
        // splitting would merely be noisy, but it is also not what the server does).
        let sql = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS end; SELECT 2; END; x";
        assert_eq!(count_statements(sql, SCS_ON), 2);
    }

    #[test]
    fn span_metadata() {
        let sql = b"/* c */ SELECT 1; ; -- tail";
        let v = split_statements(sql, SCS_ON);
        assert_eq!(v.len(), 3);
        assert!(v[0].terminated && !v[0].is_empty());
        assert!(v[0].first.is_some_and(|t| t.is_word(sql, "select")));
        assert!(v[1].terminated && v[1].is_empty());
        // Trailing comment after the last `;` is its own empty segment.
        assert!(!v[2].terminated && v[2].is_empty());
        assert_eq!((v[2].start, v[2].end), (19, sql.len()));
        assert_eq!(count_statements(sql, SCS_ON), 1);

        let mut reuse = vec![v[0]; 10];
        split_into(b"a;b", SCS_ON, &mut reuse);
        assert_eq!(reuse.len(), 2);
    }

    #[test]
    fn token_helpers() {
        let sql = b"SeLeCt $q$x$q$ /* c */";
        let v: Vec<Token> = Lexer::new(sql, SCS_ON).collect();
        assert!(v[0].is_word(sql, "select") && !v[0].is_word(sql, "selec"));
        assert!(!v[1].is_word(sql, "x"));
        assert_eq!(v[1].dollar_tag(sql), Some(&b"$q$"[..]));
        assert_eq!(v[0].dollar_tag(sql), None);
        assert!(v[2].is_comment() && !v[0].is_comment());
        // A token applied to the wrong input does not panic.
        assert_eq!(v[2].text(b"short"), b"");
        // Lexer::at clamps and resumes mid-input.
        assert_eq!(Lexer::at(sql, 100, SCS_ON).count(), 0);
        assert_eq!(
            Lexer::at(sql, 7, SCS_ON).next().map(|t| t.kind),
            Some(DollarString)
        );
    }

    // ----- properties ------------------------------------------------------

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

    const FRAGMENTS: &[&[u8]] = &[
        b"SELECT",
        b"select",
        b"CREATE",
        b"OR",
        b"REPLACE",
        b"FUNCTION",
        b"procedure",
        b"BEGIN",
        b"ATOMIC",
        b"END",
        b"CASE",
        b"RULE",
        b"DO",
        b"begin",
        b"end",
        b"x",
        b"1",
        b"1.5",
        b".5",
        b"1e",
        b"1..",
        b"0x",
        b"a$b$",
        b"$1",
        b"$",
        b"$$",
        b"$a$",
        b"$A$",
        b"$_$",
        b";",
        b";;",
        b"(",
        b")",
        b",",
        b"'",
        b"''",
        b"\"",
        b"\"\"",
        b"E'",
        b"e'",
        b"N'",
        b"B'",
        b"X'",
        b"U&'",
        b"U&\"",
        b"u&",
        b"\\",
        b"\\'",
        b"\\\\",
        b"--",
        b"-",
        b"/*",
        b"*/",
        b"/",
        b"*",
        b"+",
        b"=",
        b"<>",
        b"::",
        b":",
        b".",
        b"..",
        b" ",
        b"\n",
        b"\r",
        b"\t",
        b"\x0b",
        b"\x0c",
        b"\x95\x5c",
        b"\x81\x30\x81\x30",
        b"\x81\x5c",
        b"\x88\x3b",
        b"\xa1",
        b"\xff",
        b"\x81",
        b"\x00",
    ];

    fn sqlish() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(FRAGMENTS.to_vec()), 0..40).prop_map(|parts| {
            let mut v = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                // Occasionally glue fragments, mostly separate them.
                if i % 3 != 0 {
                    v.push(b' ');
                }
                v.extend_from_slice(p);
            }
            v
        })
    }

    #[test]
    fn single_statement_answers_for_ordinary_traffic_and_declines_what_needs_lexing() {
        let o = LexOptions::default();
        let span = |sql: &str| single_statement(sql.as_bytes(), o);
        let q = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;";
        let s = span(q).expect("pgbench's query");
        assert_eq!((s.start, s.end, s.terminated), (0, q.len() - 1, true));
        assert_eq!(s.first.map(|t| t.text(q.as_bytes())), Some(&b"SELECT"[..]));
        let s = span("  update t set a = $1 where id = $2  ").expect("parameters");
        assert_eq!((s.end, s.terminated), (37, false));
        assert!(
            span("select 'a' || \"b\" || $q$c$q$").is_some(),
            "quotes without a `;`"
        );
        // Comments, without a `;`: the tags ORMs add, before or after the query.
        let q = "/* a */ SELECT \"users\".* FROM \"users\" WHERE id = $1 /*controller:users*/ -- x";
        let s = span(q).expect("comments without a `;`");
        assert_eq!((s.start, s.end, s.terminated), (0, q.len(), false));
        assert_eq!(s.first.map(|t| t.text(q.as_bytes())), Some(&b"SELECT"[..]));
        for declined in [
            "select 1; select 2",
            "select ';'",
            "select 'a;b'",
            "select $$;$$",
            "select 1; -- note",
            "select /* ; */ 1;",
            "select 1 -- x\n;",
            "/* only a comment */",
            "-- only a comment",
            "select (1;",
            "create function f() returns int language sql begin atomic select 1;",
            ";",
            "   ",
            "",
        ] {
            assert_eq!(span(declined), None, "{declined}");
        }
        for sql in [
            "select 1; select 2",
            "select (1;",
            "select ';'",
            "select 'a;b'",
        ] {
            check_single_statement(sql.as_bytes(), o).expect(sql);
        }
    }

    /// SQL-ish texts, and short texts over the bytes that decide a split.
    fn sqlish_or_short() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: Vec<u8> = b"; -/*'\"$1a(),\\\nEeCcrRtT".to_vec();
        prop_oneof![
            sqlish(),
            prop::collection::vec(prop::sample::select(alphabet), 0..24),
        ]
    }

    fn check_single_statement(sql: &[u8], opts: LexOptions) -> Result<(), TestCaseError> {
        let Some(fast) = single_statement(sql, opts) else {
            return Ok(());
        };
        let mut spans = Vec::new();
        for_each_statement(sql, opts, |s| spans.push(s));
        let real: Vec<&StatementSpan> = spans.iter().filter(|s| !s.is_empty()).collect();
        prop_assert_eq!(
            real.len(),
            1,
            "{:?}: {:?}",
            std::string::String::from_utf8_lossy(sql),
            spans
        );
        prop_assert_eq!(
            *real[0],
            fast,
            "{:?}",
            std::string::String::from_utf8_lossy(sql)
        );
        Ok(())
    }

    fn check_invariants(sql: &[u8], opts: LexOptions) -> Result<(), TestCaseError> {
        let n = sql.len();
        let tokens: Vec<Token> = Lexer::new(sql, opts).collect();

        // (3) Tokens are in order, non-empty, within bounds, and only
        // whitespace lies between them.
        let mut prev_end = 0;
        for tok in &tokens {
            prop_assert!(
                tok.start >= prev_end && tok.start < tok.end && tok.end <= n,
                "{tok:?}"
            );
            prop_assert!(sql[prev_end..tok.start].iter().all(|&b| has(b, SPACE)));
            if tok.unterminated {
                prop_assert_eq!(tok.end, n);
            }
            if tok.kind == Semicolon {
                prop_assert_eq!(tok.text(sql), b";");
            }
            prev_end = tok.end;
        }
        prop_assert!(sql[prev_end..].iter().all(|&b| has(b, SPACE)));

        // (2) Segments are contiguous and cover the input exactly.
        let segs = split_statements(sql, opts);
        prop_assert!(!segs.is_empty());
        prop_assert_eq!(segs[0].start, 0);
        prop_assert_eq!(segs[segs.len() - 1].end, n);
        prop_assert!(!segs[segs.len() - 1].terminated);
        for w in segs.windows(2) {
            prop_assert_eq!(w[1].start, w[0].end + 1);
        }
        for seg in &segs {
            prop_assert!(seg.start <= seg.end && seg.end <= n);
            // (4) Every boundary is a real `;` token.
            if seg.terminated {
                prop_assert_eq!(sql[seg.end], b';');
                prop_assert!(
                    tokens
                        .iter()
                        .any(|t| t.kind == Semicolon && t.start == seg.end)
                );
            }
            // Segment metadata agrees with the token stream.
            let inside: Vec<&Token> = tokens
                .iter()
                .filter(|t| t.start >= seg.start && t.end <= seg.end)
                .collect();
            prop_assert_eq!(
                seg.first,
                inside.iter().find(|t| !t.is_comment()).map(|t| **t)
            );

            // (6) Lexing from the segment start reproduces the same tokens.
            let restarted: Vec<Token> = Lexer::at(sql, seg.start, opts)
                .take_while(|t| t.start < seg.end)
                .collect();
            let expected: Vec<Token> = inside.iter().map(|t| **t).collect();
            prop_assert_eq!(restarted, expected);
        }
        // No token straddles a boundary.
        for tok in &tokens {
            prop_assert!(
                segs.iter()
                    .any(|s| tok.start >= s.start && tok.end <= s.end)
                    || (tok.kind == Semicolon
                        && segs.iter().any(|s| s.terminated && s.end == tok.start))
            );
        }

        // (5) count_statements agrees with the non-empty segments.
        prop_assert_eq!(
            count_statements(sql, opts),
            segs.iter().filter(|s| !s.is_empty()).count()
        );

        // split_into reuses the buffer and gives the same answer.
        let mut out = vec![segs[0]; 3];
        split_into(sql, opts, &mut out);
        prop_assert_eq!(out, segs);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        // (1) Never panics, and (2)–(6) hold, on arbitrary bytes.
        #[test]
        fn prop_arbitrary_bytes(sql in prop::collection::vec(any::<u8>(), 0..256), opts in any_opts()) {
            check_invariants(&sql, opts)?;
        }

        // The cheap recogniser of one-statement texts agrees with the splitter whenever it
        // answers.
        #[test]
        fn prop_single_statement_agrees_with_the_splitter(sql in sqlish_or_short(), opts in any_opts()) {
            check_single_statement(&sql, opts)?;
        }

        // Same on SQL-ish inputs, which reach the interesting states far
        // more often than random bytes do.
        #[test]
        fn prop_sqlish(sql in sqlish(), opts in any_opts()) {
            check_invariants(&sql, opts)?;
        }

        // Settings only matter where they should: ASCII-only input lexes the
        // same under every encoding, and input without a backslash the same
        // under both standard_conforming_strings values.
        #[test]
        fn prop_settings_only_matter_where_they_should(sql in sqlish(), opts in any_opts()) {
            let base: Vec<Token> = Lexer::new(&sql, opts).collect();
            if sql.is_ascii() {
                let safe = LexOptions { encoding: ClientEncoding::AsciiSafe, ..opts };
                prop_assert_eq!(&Lexer::new(&sql, safe).collect::<Vec<_>>(), &base);
            }
            if !sql.contains(&b'\\') {
                let flipped = LexOptions {
                    standard_conforming_strings: !opts.standard_conforming_strings,
                    ..opts
                };
                prop_assert_eq!(&Lexer::new(&sql, flipped).collect::<Vec<_>>(), &base);
            }
        }

        // Splitting never depends on what precedes a segment: appending a
        // complete statement after `;` adds exactly one statement.
        #[test]
        fn prop_append_statement(sql in sqlish(), opts in any_opts()) {
            let segs = split_statements(&sql, opts);
            let unterminated = Lexer::new(&sql, opts).any(|t| t.unterminated);
            let mut longer = sql.clone();
            longer.extend_from_slice(b"\n\n; SELECT 1");
            let more = split_statements(&longer, opts);
            // Text ending inside a multibyte character (GB18030 `\xa1\x31` wants two more
            // bytes) is invalid in its encoding: the server rejects it before lexing, and the
            // appended bytes would complete the character.
            // (`char_len` stops at the end of its slice, so the characters are walked in
            // `longer`.)
            let mut at = 0;
            while at < sql.len() {
                at += opts.encoding.char_len(&longer, at);
            }
            if !unterminated && at == sql.len() && Splitter::at_top_level(&sql, opts) {
                prop_assert_eq!(more.len(), segs.len() + 1);
            }
        }
    }

    impl Splitter {
        /// True if after all of `sql` the splitter is outside parentheses and
        /// function bodies (test helper).
        fn at_top_level(sql: &[u8], opts: LexOptions) -> bool {
            let mut sp = Splitter::new();
            for tok in Lexer::new(sql, opts).filter(|t| !t.is_comment()) {
                sp.feed(sql, &tok);
            }
            sp.paren == 0 && sp.atomic == 0
        }
    }
}
