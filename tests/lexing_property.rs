//! Lexing exactly as PostgreSQL does (issue 14): a seeded property test comparing where
//! ddlgate's splitter (`sql::lexer::split_statements`) cuts a simple Query with where a live
//! PostgreSQL cuts it, under every client setting that changes lexing.
//!
//! Each case is a generated script of several statements `SELECT <n>, <value> AS <alias>, …`
//! (and empty statements) whose values and aliases are literals of every kind the scanner
//! knows — plain strings (backslash escapes when `standard_conforming_strings` is off),
//! `E''` with `\'` `\\` and octal/hex/Unicode escapes, doubled quotes, string continuation
//! across newlines and `--` comments, `N''`, `B''` and `X''` (continued too), `U&''` and
//! `U&""` with and without `UESCAPE`, dollar quotes whose bodies hold other tags
//! (`$a$ $b$ … $b$ $a$`), quoted identifiers with `;` inside, identifiers with `$` (`c$q$`) —
//! separated by nested `/* /* */ */` and `--` comments, all sprinkled with `;`, quotes,
//! backslashes and the client encoding's multibyte characters. Some statements hold `;` that
//! do not end them: `CREATE FUNCTION … BEGIN ATOMIC s; s; END` (called by the next statement,
//! which echoes its last value) and `CREATE RULE … DO ALSO (s; s)`. Now and then a script
//! sets `standard_conforming_strings`: the server parses the whole Query before running any of
//! it, so the rest of that script is read under the old value and the next script under the
//! new one, which the relay learns from ParameterStatus. The multibyte characters
//! are the server's own: for SJIS, SHIFT_JIS_2004, BIG5, GBK, GB18030, UHC and JOHAB it lists
//! every two-byte character whose trail byte is an ASCII `\`, `|`, `;`, `@`, `` ` ``, `{`, `}`
//! or a letter (plus four-byte GB18030 ones, whose trail bytes are digits) that converts to
//! UTF8 and back. (UHC has letters only; PostgreSQL's JOHAB verifier accepts no ASCII trail
//! byte at all, so its characters here are the `0xA1` ones.)
//!
//! The generator knows where it put every `;` that ends a statement and what each statement's
//! values and column names are. The test sends each script as one Query to the server (a UTF8
//! database, or SQL_ASCII for that client encoding) and requires:
//!  * ddlgate's split: statement ends exactly at the generator's `;` offsets, and the same
//!    statements empty, lexed with the options the relay derives from the server's
//!    ParameterStatus (`client_encoding`, `standard_conforming_strings`) — by
//!    `split_statements` and by the analysis hook's own pass (`analysis::prepare`);
//!  * the server's answer: one result per non-empty statement, in order, with its command tag,
//!    echoing `<n>`, every value and every column name — which it can only do if it cut the
//!    script in the same places and read every literal as the generator meant.
//!
//! The connections run with `backslash_quote = on`: under the default (`safe_encoding`) the
//! server refuses `\'` in the client-only encodings, failing the whole Query, so `on` is the
//! setting where a trail byte `0x5C` read as a backslash could move a statement boundary.
//!
//! Reproducible: `LEXPROP_SEED` (default fixed) and `LEXPROP_CASES` (cases per setting,
//! default 300). A failure prints the setting, the case number and the script.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::pg::{ADMIN_USER, PgCluster};
use ddlgate::analysis::prepare;
use ddlgate::sql::lexer::split_statements;
use ddlgate::sql::{ClientEncoding, LexOptions, StatementClass};

// ---------------------------------------------------------------------------
// A minimal blocking wire client: bytes in the client encoding, not Rust strings.
// ---------------------------------------------------------------------------

struct Conn {
    s: TcpStream,
    /// What the relay would lex with, from the server's ParameterStatus messages.
    lex: LexOptions,
}

/// One statement's answer: its command tag, column names and rows of values (NULL as `None`).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    tag: Vec<u8>,
    names: Vec<Vec<u8>>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
}

impl Conn {
    fn connect(port: u16, database: &str, params: &[(&str, &str)]) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        s.set_nodelay(true).expect("nodelay");
        let packet = common::wire::startup_packet_with(ADMIN_USER, database, params);
        let mut c = Conn {
            s,
            lex: LexOptions::default(),
        };
        c.s.write_all(&packet).expect("startup");
        loop {
            let (tag, body) = c.read();
            match tag {
                b'E' => panic!("startup failed: {}", String::from_utf8_lossy(&body)),
                b'S' => c.on_parameter_status(&body),
                b'Z' => break,
                _ => {}
            }
        }
        c
    }

    /// The relay's mapping (`session::tracker::ServerParams::on_parameter_status`).
    fn on_parameter_status(&mut self, body: &[u8]) {
        let mut parts = body.split(|b| *b == 0);
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        match name {
            b"standard_conforming_strings" => self.lex.standard_conforming_strings = value == b"on",
            b"client_encoding" => {
                self.lex.encoding = ClientEncoding::from_pg_name(&String::from_utf8_lossy(value));
            }
            _ => {}
        }
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut header = [0u8; 5];
        self.s.read_exact(&mut header).expect("read header");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.s.read_exact(&mut body).expect("read body");
        (header[0], body)
    }

    /// Runs `sql` as one simple Query: the answer of every statement that returned rows, or
    /// the server's error message.
    fn query(&mut self, sql: &[u8]) -> Result<Vec<Answer>, String> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql);
        msg.push(0);
        self.s.write_all(&msg).expect("send Query");
        let mut answers: Vec<Answer> = Vec::new();
        let mut error = None;
        // A RowDescription came and its CommandComplete has not.
        let mut open = false;
        loop {
            let (tag, body) = self.read();
            match tag {
                b'T' => {
                    open = true;
                    answers.push(Answer {
                        tag: Vec::new(),
                        names: row_description(&body),
                        rows: Vec::new(),
                    })
                }
                b'C' => {
                    let tag = body.split(|b| *b == 0).next().unwrap_or_default().to_vec();
                    match answers.last_mut() {
                        Some(a) if open => a.tag = tag,
                        _ => answers.push(Answer {
                            tag,
                            names: Vec::new(),
                            rows: Vec::new(),
                        }),
                    }
                    open = false;
                }
                b'D' => {
                    let a = answers.last_mut().expect("DataRow after RowDescription");
                    a.rows.push(data_row(&body));
                }
                b'E' => {
                    error = Some(
                        body.split(|b| *b == 0)
                            .filter(|f| matches!(f.first(), Some(b'M' | b'C' | b'P')))
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect::<Vec<_>>()
                            .join(" | "),
                    )
                }
                b'S' => self.on_parameter_status(&body),
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(answers),
        }
    }
}

fn row_description(body: &[u8]) -> Vec<Vec<u8>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut i = 2;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let end = i + body[i..].iter().position(|b| *b == 0).expect("name");
        names.push(body[i..end].to_vec());
        i = end + 1 + 18;
    }
    names
}

fn data_row(body: &[u8]) -> Vec<Option<Vec<u8>>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut i = 2;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        i += 4;
        if len < 0 {
            values.push(None);
        } else {
            values.push(Some(body[i..i + len as usize].to_vec()));
            i += len as usize;
        }
    }
    values
}

// ---------------------------------------------------------------------------
// Seeded generator
// ---------------------------------------------------------------------------

/// splitmix64: tiny, seedable, and good enough to pick among grammar choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `p` percent.
    fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn one(&mut self, xs: &[&'static [u8]]) -> &'static [u8] {
        xs[self.below(xs.len())]
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// ASCII characters that matter to the scanner, and ordinary ones.
const ASCII: &[u8] = b"abcXYZ019 _;;''\"\"\\\\$$*/-().,:!#%&|@`{}[]^~+<=>?\n\t";

/// One client setting under test.
struct Setting {
    client_encoding: &'static str,
    scs: bool,
    database: &'static str,
    /// Multibyte (or high-bit) characters of the client encoding, as its bytes.
    wide: Vec<Vec<u8>>,
}

struct Gen<'a> {
    rng: Rng,
    set: &'a Setting,
    /// The server takes `BEGIN ATOMIC` bodies (PostgreSQL 14+).
    atomic: bool,
    /// `standard_conforming_strings` when the server parses the next script.
    scs: bool,
}

/// One generated statement: its text (without the `;`), and what the server must answer.
struct Stmt {
    sql: Vec<u8>,
    /// `None`: an empty statement (only whitespace and comments).
    answer: Option<Answer>,
}

impl Gen<'_> {
    /// A character of text: ASCII that matters to the scanner, or a multibyte one.
    fn ch(&mut self) -> Vec<u8> {
        if !self.set.wide.is_empty() && self.rng.pct(40) {
            self.rng.pick(&self.set.wide).clone()
        } else {
            vec![*self.rng.pick(ASCII)]
        }
    }

    /// Text of up to `max` characters, none of which is in `not`.
    fn text(&mut self, max: usize, not: &[u8]) -> Vec<Vec<u8>> {
        let n = self.rng.below(max + 1);
        let mut out = Vec::new();
        while out.len() < n {
            let c = self.ch();
            if c.len() == 1 && not.contains(&c[0]) {
                continue;
            }
            out.push(c);
        }
        out
    }

    /// Whitespace or comments between tokens; `required` when the tokens would otherwise run
    /// together.
    fn gap(&mut self, required: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let parts = if required {
            1 + self.rng.below(2)
        } else {
            self.rng.below(3)
        };
        for _ in 0..parts {
            match self.rng.below(6) {
                0 | 1 => out.extend_from_slice(self.rng.one(&[
                    &b" "[..],
                    b"\n",
                    b"\t",
                    b"  ",
                    b"\r\n",
                    b"\x0c",
                ])),
                2 | 3 => {
                    let depth = self.rng.below(3);
                    self.block_comment(depth, &mut out);
                }
                _ => self.line_comment(&mut out),
            }
        }
        out
    }

    /// `/* … */`, with `depth` more comments nested inside.
    fn block_comment(&mut self, depth: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(b"/*");
        for c in self.text(6, b"*/") {
            out.extend_from_slice(&c);
        }
        // Safe spellings of the characters left out above: never next to each other.
        if self.rng.pct(30) {
            out.extend_from_slice(self.rng.one(&[
                &b" * "[..],
                b" / ",
                b" -- ",
                b" $a$ ",
                b"';",
                b" \" ",
            ]));
        }
        if depth > 0 {
            self.block_comment(depth - 1, out);
            for c in self.text(3, b"*/") {
                out.extend_from_slice(&c);
            }
        }
        out.extend_from_slice(b"*/");
    }

    /// `-- …` up to a newline (`\n`, `\r` or `\r\n`).
    fn line_comment(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"--");
        for c in self.text(8, b"\n\r") {
            out.extend_from_slice(&c);
        }
        if self.rng.pct(20) {
            out.extend_from_slice(b" /* ");
        }
        out.extend_from_slice(self.rng.one(&[&b"\n"[..], b"\r", b"\r\n"]));
    }

    /// Whitespace holding a newline, as a string continuation must have (scan.l
    /// `{whitespace_with_newline}`: `--` comments allowed, `/* */` not).
    fn continuation(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.rng.pct(30) {
            out.extend_from_slice(self.rng.one(&[&b" "[..], b"\t", b"\x0c"]));
        }
        if self.rng.pct(30) {
            self.line_comment(&mut out);
        } else {
            out.extend_from_slice(self.rng.one(&[&b"\n"[..], b"\r", b"\r\n"]));
        }
        if self.rng.pct(30) {
            self.line_comment(&mut out);
        }
        out.extend_from_slice(self.rng.one(&[&b""[..], b" ", b"\t  ", b"\x0c"]));
        out
    }

    /// The body of a quoted literal in escape mode (`E''`, or `''` with scs off).
    fn escape_body(&mut self, chars: &[Vec<u8>], out: &mut Vec<u8>) {
        for c in chars {
            if c.len() > 1 || c[0] >= 0x80 {
                // A backslash before a multibyte character escapes the whole character.
                if self.rng.pct(20) {
                    out.push(b'\\');
                }
                out.extend_from_slice(c);
                continue;
            }
            let b = c[0];
            match (b, self.rng.below(6)) {
                (b'\'', 0..=2) => out.extend_from_slice(b"''"),
                (b'\'', _) => out.extend_from_slice(b"\\'"),
                (b'\\', _) => out.extend_from_slice(b"\\\\"),
                (b'\n', 0..=2) => out.extend_from_slice(b"\\n"),
                (b'\t', 0..=2) => out.extend_from_slice(b"\\t"),
                (_, 0) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                (_, 1) => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
                (_, 2) => out.extend_from_slice(format!("\\u{b:04X}").as_bytes()),
                (_, 3) if !b"bfnrtxuU01234567".contains(&b) => {
                    out.push(b'\\');
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }

    /// The body of a `U&` literal with escape character `esc`, closed by `quote`.
    fn unicode_body(&mut self, chars: &[Vec<u8>], esc: u8, quote: u8, out: &mut Vec<u8>) {
        for c in chars {
            if c.len() > 1 || c[0] >= 0x80 {
                out.extend_from_slice(c);
                continue;
            }
            let b = c[0];
            if b == esc {
                out.extend_from_slice(&[esc, esc]);
                continue;
            }
            match self.rng.below(4) {
                0 => out.extend_from_slice(format!("{}{b:04x}", esc as char).as_bytes()),
                1 => out.extend_from_slice(format!("{}+{b:06X}", esc as char).as_bytes()),
                _ if b == quote => out.extend_from_slice(&[quote, quote]),
                _ => out.push(b),
            }
        }
    }

    /// ` UESCAPE 'c'` (with gaps) or nothing; the escape character chosen.
    fn uescape(&mut self) -> (u8, Vec<u8>) {
        if self.rng.pct(40) {
            return (b'\\', Vec::new());
        }
        let mut esc = *self.rng.pick(b"!#%&;$*/-?~\\");
        // With scs off the UESCAPE literal is itself read with backslash escapes.
        if esc == b'\\' && !self.scs {
            esc = b'!';
        }
        let mut out = self.gap(true);
        out.extend_from_slice(self.rng.one(&[&b"UESCAPE"[..], b"uescape", b"UEscape"]));
        out.extend(self.gap(true));
        out.extend_from_slice(&[b'\'', esc, b'\'']);
        (esc, out)
    }

    /// A dollar-quote tag (without the `$`s).
    fn tag(&mut self) -> Vec<u8> {
        let mut t: Vec<u8> = self
            .rng
            .one(&[&b""[..], b"a", b"b", b"A", b"q_1", b"tag"])
            .to_vec();
        if !self.set.wide.is_empty() && self.rng.pct(25) {
            t.extend_from_slice(&self.rng.pick(&self.set.wide)[..]);
        }
        t
    }

    /// A value expression and the text the server must echo for it.
    fn value(&mut self) -> (Vec<u8>, Vec<u8>) {
        let chars = self.text(8, b"");
        let flat: Vec<u8> = chars.concat();
        let mut sql = Vec::new();
        match self.rng.below(10) {
            // '…', with backslash escapes when scs is off; maybe continued on the next lines.
            0 | 1 => {
                let parts = 1 + usize::from(self.rng.pct(30)) + usize::from(self.rng.pct(10));
                let cut: Vec<usize> = (0..parts).map(|i| i * chars.len() / parts).collect();
                for (k, &from) in cut.iter().enumerate() {
                    let to = cut.get(k + 1).copied().unwrap_or(chars.len());
                    if k > 0 {
                        sql.extend(self.continuation());
                    }
                    sql.push(b'\'');
                    if self.scs {
                        for c in &chars[from..to] {
                            if c == b"'" {
                                sql.extend_from_slice(b"''");
                            } else {
                                sql.extend_from_slice(c);
                            }
                        }
                    } else {
                        self.escape_body(&chars[from..to], &mut sql);
                    }
                    sql.push(b'\'');
                }
            }
            // E'…', maybe continued (the continuation keeps escape mode).
            2 | 3 => {
                let parts = 1 + usize::from(self.rng.pct(30));
                let cut = chars.len() / 2;
                let ranges = if parts == 1 {
                    vec![(0, chars.len())]
                } else {
                    vec![(0, cut), (cut, chars.len())]
                };
                for (k, (from, to)) in ranges.into_iter().enumerate() {
                    if k > 0 {
                        sql.extend(self.continuation());
                        sql.push(b'\'');
                    } else {
                        sql.extend_from_slice(self.rng.one(&[&b"E'"[..], b"e'"]));
                    }
                    self.escape_body(&chars[from..to], &mut sql);
                    sql.push(b'\'');
                }
            }
            // U&'…' [UESCAPE 'c'] (an error with scs off: a dollar quote instead).
            4 if self.scs => {
                let (esc, clause) = self.uescape();
                sql.extend_from_slice(self.rng.one(&[&b"U&'"[..], b"u&'"]));
                self.unicode_body(&chars, esc, b'\'', &mut sql);
                sql.push(b'\'');
                sql.extend(clause);
            }
            // $tag$…$tag$, the body holding other tags and `$`s.
            4..=6 => {
                let tag = self.tag();
                let mut delim = b"$".to_vec();
                delim.extend_from_slice(&tag);
                delim.push(b'$');
                let mut body = Vec::new();
                for c in &chars {
                    body.extend_from_slice(c);
                    if self.rng.pct(15) {
                        let other = self.tag();
                        body.push(b'$');
                        body.extend_from_slice(&other);
                        if self.rng.pct(70) {
                            body.push(b'$');
                        }
                    }
                }
                let mut probe = body.clone();
                probe.extend_from_slice(&delim);
                if find(&probe, &delim) != Some(body.len()) {
                    // The body would close early: the plain characters only, `$`s dropped.
                    body = flat.iter().copied().filter(|b| *b != b'$').collect();
                    // Dropping `$` cannot split a multibyte character: `$` is never a trail byte.
                    sql.extend_from_slice(&delim);
                    sql.extend_from_slice(&body);
                    sql.extend_from_slice(&delim);
                    return (sql, body);
                }
                sql.extend_from_slice(&delim);
                sql.extend_from_slice(&body);
                sql.extend_from_slice(&delim);
                return (sql, body);
            }
            // N'…' (follows scs), echoed as bpchar: no trailing blanks.
            7 => {
                sql.extend_from_slice(b"N'");
                let mut chars = chars;
                while chars
                    .last()
                    .is_some_and(|c| c.len() == 1 && c[0].is_ascii_whitespace())
                {
                    chars.pop();
                }
                if self.scs {
                    for c in &chars {
                        sql.extend_from_slice(if c == b"'" { b"''" } else { c });
                    }
                } else {
                    self.escape_body(&chars, &mut sql);
                }
                sql.push(b'\'');
                return (sql, chars.concat());
            }
            // B'…' / X'…', maybe continued (the continuation stays a bit string, where `''`
            // is no escape).
            8 => {
                let hex = self.rng.pct(50);
                let digits: &[u8] = if hex { b"09afAF" } else { b"01" };
                let body: Vec<u8> = (0..self.rng.below(9))
                    .map(|_| *self.rng.pick(digits))
                    .collect();
                sql.extend_from_slice(if hex { b"X'" } else { b"B'" });
                let cut = if self.rng.pct(30) {
                    body.len() / 2
                } else {
                    body.len()
                };
                sql.extend_from_slice(&body[..cut]);
                sql.push(b'\'');
                if cut < body.len() {
                    sql.extend(self.continuation());
                    sql.push(b'\'');
                    sql.extend_from_slice(&body[cut..]);
                    sql.push(b'\'');
                }
                if !hex {
                    return (sql, body);
                }
                let echo = body
                    .iter()
                    .map(|h| format!("{:04b}", (*h as char).to_digit(16).expect("hex digit")))
                    .collect::<String>();
                return (sql, echo.into_bytes());
            }
            // An integer expression with a comment glued to an operator: `7 +/* … */ 2`.
            _ => {
                let (a, b) = (self.rng.below(100) as i64, self.rng.below(100) as i64);
                let (op, r) = *self
                    .rng
                    .pick(&[(b'+', a + b), (b'-', a - b), (b'*', a * b)]);
                sql.extend_from_slice(format!("({a} ").as_bytes());
                sql.push(op);
                // `---` is all comment (flex's longest match), so `-` only takes `/* */`.
                if op == b'-' || self.rng.pct(50) {
                    let depth = self.rng.below(2);
                    self.block_comment(depth, &mut sql);
                } else {
                    self.line_comment(&mut sql);
                }
                sql.extend_from_slice(format!("{b})").as_bytes());
                return (sql, r.to_string().into_bytes());
            }
        }
        (sql, flat)
    }

    /// A column alias (after `AS`) and the name the server must report.
    fn alias(&mut self, i: usize) -> (Vec<u8>, Vec<u8>) {
        // At most 10 characters: under NAMEDATALEN (63 bytes) in UTF8.
        let chars = loop {
            let c = self.text(10, b"\0");
            if !c.is_empty() {
                break c;
            }
        };
        let mut sql = Vec::new();
        match self.rng.below(4) {
            0 => {
                sql.push(b'"');
                for c in &chars {
                    sql.extend_from_slice(if c == b"\"" { b"\"\"" } else { c });
                }
                sql.push(b'"');
                (sql, chars.concat())
            }
            1 => {
                let (esc, clause) = self.uescape();
                sql.extend_from_slice(b"U&\"");
                self.unicode_body(&chars, esc, b'"', &mut sql);
                sql.push(b'"');
                sql.extend(clause);
                (sql, chars.concat())
            }
            // Unquoted: letters, digits, `_`, `$` and multibyte characters (`c_1$q$` cannot
            // start a dollar quote).
            _ => {
                sql.extend_from_slice(format!("c{i}_").as_bytes());
                for _ in 0..self.rng.below(5) {
                    if !self.set.wide.is_empty() && self.rng.pct(50) {
                        sql.extend_from_slice(&self.rng.pick(&self.set.wide)[..]);
                    } else {
                        sql.push(*self.rng.pick(b"az09_$"));
                    }
                }
                if self.rng.pct(30) {
                    let mut tag = self.tag();
                    // The server folds the ASCII letters of an unquoted name (the tag's
                    // multibyte character comes after them and is left alone).
                    let ascii = tag.iter().take_while(|b| b.is_ascii()).count();
                    tag[..ascii].make_ascii_lowercase();
                    sql.push(b'$');
                    sql.extend_from_slice(&tag);
                    sql.push(b'$');
                }
                (sql.clone(), sql)
            }
        }
    }

    fn statement(&mut self, n: usize) -> Stmt {
        let mut sql = self.gap(false);
        if self.rng.pct(10) {
            return Stmt { sql, answer: None };
        }
        sql.extend_from_slice(self.rng.one(&[&b"SELECT"[..], b"select", b"SeLeCt"]));
        sql.extend(self.gap(true));
        sql.extend_from_slice(n.to_string().as_bytes());
        let mut names = vec![b"?column?".to_vec()];
        let mut values = vec![Some(n.to_string().into_bytes())];
        for i in 1..=self.rng.below(5) {
            sql.extend(self.gap(false));
            sql.push(b',');
            sql.extend(self.gap(false));
            let (v, echo) = self.value();
            sql.extend(v);
            sql.extend(self.gap(true));
            sql.extend_from_slice(self.rng.one(&[&b"AS"[..], b"as"]));
            sql.extend(self.gap(true));
            let (a, name) = self.alias(i);
            sql.extend(a);
            names.push(name);
            values.push(Some(echo));
        }
        sql.extend(self.gap(false));
        Stmt {
            sql,
            answer: Some(Answer {
                tag: b"SELECT 1".to_vec(),
                names,
                rows: vec![values],
            }),
        }
    }

    /// A script: its bytes, the offsets of the `;` that end statements, and the statements.
    fn script(&mut self) -> (Vec<u8>, Vec<usize>, Vec<Stmt>) {
        let count = 1 + self.rng.below(6);
        let mut generated = Vec::new();
        let mut n = 0;
        let mut next_scs = self.scs;
        while generated.len() < count {
            match self.rng.below(10) {
                0 if self.atomic => {
                    let (create, call) = self.atomic_function(n);
                    generated.push(create);
                    generated.push(call);
                }
                1 => generated.push(self.rule()),
                // A SET takes effect after the whole Query was parsed: the rest of this script
                // is still read with the old value, the next script with the new one.
                2 if self.rng.pct(20) => {
                    let on = self.rng.pct(50);
                    let mut sql = self.gap(false);
                    sql.extend_from_slice(b"SET standard_conforming_strings =");
                    sql.extend(self.gap(true));
                    sql.extend_from_slice(if on { b"on" } else { b"off" });
                    sql.extend(self.gap(false));
                    generated.push(Stmt {
                        sql,
                        answer: Some(Answer {
                            tag: b"SET".to_vec(),
                            names: Vec::new(),
                            rows: Vec::new(),
                        }),
                    });
                    next_scs = on;
                }
                _ => generated.push(self.statement(n)),
            }
            n += 1;
        }
        let mut sql = Vec::new();
        let mut semis = Vec::new();
        let count = generated.len();
        for (k, st) in generated.iter().enumerate() {
            sql.extend_from_slice(&st.sql);
            if k + 1 < count || self.rng.pct(60) {
                semis.push(sql.len());
                sql.push(b';');
            }
        }
        self.scs = next_scs;
        (sql, semis, generated)
    }

    /// `SELECT (<value>)::text` or the same inside `CASE … END`, for a statement list.
    fn inner_select(&mut self) -> (Vec<u8>, Vec<u8>) {
        let (v, echo) = self.value();
        let mut sql = self.gap(false);
        sql.extend_from_slice(self.rng.one(&[&b"SELECT"[..], b"select"]));
        sql.extend(self.gap(true));
        let case = self.rng.pct(40);
        if case {
            sql.extend_from_slice(b"CASE WHEN true THEN");
            sql.extend(self.gap(true));
        }
        sql.push(b'(');
        sql.extend(v);
        sql.extend_from_slice(b")::text");
        if case {
            sql.extend(self.gap(true));
            sql.extend_from_slice(self.rng.one(&[&b"END"[..], b"end"]));
        }
        sql.extend(self.gap(false));
        (sql, echo)
    }

    /// `CREATE OR REPLACE FUNCTION … BEGIN ATOMIC s; s; END` (PG 14+: `;` inside the body do
    /// not end the statement), and a statement calling it, which echoes its last value.
    fn atomic_function(&mut self, n: usize) -> (Stmt, Stmt) {
        let mut sql = self.gap(false);
        for (word, gap) in [
            (&b"CREATE"[..], true),
            (b"OR", true),
            (b"REPLACE", true),
            (b"FUNCTION", true),
        ] {
            sql.extend_from_slice(word);
            sql.extend(self.gap(gap));
        }
        sql.extend_from_slice(format!("pg_temp.f_{n}()").as_bytes());
        sql.extend(self.gap(true));
        sql.extend_from_slice(b"RETURNS text LANGUAGE sql");
        sql.extend(self.gap(true));
        sql.extend_from_slice(self.rng.one(&[&b"BEGIN"[..], b"begin"]));
        sql.extend(self.gap(true));
        sql.extend_from_slice(self.rng.one(&[&b"ATOMIC"[..], b"atomic"]));
        sql.extend(self.gap(true));
        let mut last = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let (s, echo) = self.inner_select();
            sql.extend(s);
            sql.push(b';');
            last = echo;
        }
        sql.extend(self.gap(false));
        sql.extend_from_slice(self.rng.one(&[&b"END"[..], b"end"]));
        sql.extend(self.gap(false));
        let create = Stmt {
            sql,
            answer: Some(Answer {
                tag: b"CREATE FUNCTION".to_vec(),
                names: Vec::new(),
                rows: Vec::new(),
            }),
        };
        let mut sql = self.gap(false);
        sql.extend_from_slice(format!("SELECT {n}, pg_temp.f_{n}() AS c").as_bytes());
        sql.extend(self.gap(false));
        let call = Stmt {
            sql,
            answer: Some(Answer {
                tag: b"SELECT 1".to_vec(),
                names: vec![b"?column?".to_vec(), b"c".to_vec()],
                rows: vec![vec![Some(n.to_string().into_bytes()), Some(last)]],
            }),
        };
        (create, call)
    }

    /// `CREATE OR REPLACE RULE … DO ALSO (s; s)`: `;` inside the parentheses do not end it.
    fn rule(&mut self) -> Stmt {
        let mut sql = self.gap(false);
        sql.extend_from_slice(b"CREATE OR REPLACE RULE r AS ON UPDATE TO lexprop_t DO ALSO");
        sql.extend(self.gap(false));
        sql.push(b'(');
        for k in 0..1 + self.rng.below(3) {
            if k > 0 {
                sql.push(b';');
            }
            let (s, _) = self.inner_select();
            sql.extend(s);
        }
        if self.rng.pct(30) {
            sql.push(b';');
        }
        sql.push(b')');
        sql.extend(self.gap(false));
        Stmt {
            sql,
            answer: Some(Answer {
                tag: b"CREATE RULE".to_vec(),
                names: Vec::new(),
                rows: Vec::new(),
            }),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The script as readable text: printable ASCII as is, everything else `\xNN`.
fn show(sql: &[u8]) -> String {
    sql.iter()
        .map(|&b| match b {
            b'\n' => "\\n\n".to_owned(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The client encodings' characters, from the server
// ---------------------------------------------------------------------------

/// Two-byte (and for GB18030 four-byte) characters of `encoding` whose trail bytes are ASCII,
/// that the server reads as one character and converts to UTF8 and back unchanged (in SJIS,
/// `0xD7 0x5C` is a one-byte katakana and a backslash).
fn wide_chars(admin: &mut Conn, encoding: &str) -> Vec<Vec<u8>> {
    let sql = format!(
        "SELECT encode(b, 'hex') FROM (
           SELECT decode(lpad(to_hex(l), 2, '0') || lpad(to_hex(t), 2, '0'), 'hex') AS b
             FROM generate_series(129, 254) l,
                  unnest(ARRAY[92, 124, 59, 64, 96, 123, 125, 65, 97, 161]) t
           UNION ALL
           SELECT decode(lpad(to_hex(a), 2, '0') || lpad(to_hex(b), 2, '0')
                         || lpad(to_hex(c), 2, '0') || lpad(to_hex(d), 2, '0'), 'hex')
             FROM unnest(ARRAY[129, 130, 132, 144, 149]) a, unnest(ARRAY[48, 53, 57]) b,
                  unnest(ARRAY[129, 160, 254]) c, unnest(ARRAY[48, 57]) d
            WHERE '{encoding}' = 'GB18030'
         ) s
         WHERE pg_temp.round_trips(b, '{encoding}')
         ORDER BY 1"
    );
    let answers = admin.query(sql.as_bytes()).expect("list characters");
    answers[0]
        .rows
        .iter()
        .map(|row| {
            let hex = row[0].as_ref().expect("hex");
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    u8::from_str_radix(std::str::from_utf8(&hex[i..i + 2]).expect("ascii"), 16)
                        .expect("hex")
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn splits_where_postgresql_splits() {
    let seed: u64 = std::env::var("LEXPROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let cases: usize = std::env::var("LEXPROP_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let started = Instant::now();
    let pg = PgCluster::start();

    let mut admin = Conn::connect(pg.port(), "postgres", &[]);
    admin
        .query(b"CREATE DATABASE lex_ascii ENCODING 'SQL_ASCII' TEMPLATE template0 LOCALE 'C'")
        .expect("SQL_ASCII database");
    admin
        .query(
            b"CREATE FUNCTION pg_temp.round_trips(b bytea, enc name) RETURNS bool
              LANGUAGE plpgsql AS $$
              BEGIN
                RETURN convert_to(convert_from(b, enc), enc) = b
                       AND length(convert_from(b, enc)) = 1;
              EXCEPTION WHEN others THEN
                RETURN false;
              END $$",
        )
        .expect("setup");
    let t = Instant::now();
    let utf8: Vec<Vec<u8>> = ["é", "ソ", "表", "€", "😀", "\u{a0}"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let multibyte: Vec<(&str, Vec<Vec<u8>>)> = [
        "SJIS",
        "SHIFT_JIS_2004",
        "BIG5",
        "GBK",
        "GB18030",
        "UHC",
        "JOHAB",
    ]
    .into_iter()
    .map(|enc| {
        let wide = wide_chars(&mut admin, enc);
        assert!(
            wide.iter().any(|c| c.len() == 2 && c[1] == b'\\') || matches!(enc, "UHC" | "JOHAB"),
            "{enc}: no character with a backslash trail byte among {}",
            wide.len()
        );
        let mut trails: Vec<u8> = wide
            .iter()
            .map(|c| c[c.len() - 1])
            .filter(u8::is_ascii)
            .collect();
        trails.sort_unstable();
        trails.dedup();
        eprintln!(
            "{enc}: {} characters, ASCII last bytes {:?}",
            wide.len(),
            String::from_utf8_lossy(&trails)
        );
        (enc, wide)
    })
    .collect();
    let mut settings = Vec::new();
    for scs in [true, false] {
        settings.push(Setting {
            client_encoding: "UTF8",
            scs,
            database: "postgres",
            wide: utf8.clone(),
        });
        settings.push(Setting {
            client_encoding: "SQL_ASCII",
            scs,
            database: "lex_ascii",
            wide: utf8.clone(),
        });
        settings.push(Setting {
            client_encoding: "LATIN1",
            scs,
            database: "postgres",
            wide: vec![vec![0xe9], vec![0xff], vec![0xa0], vec![0x80 + 0x5c]],
        });
        for (enc, wide) in &multibyte {
            settings.push(Setting {
                client_encoding: enc,
                scs,
                database: "postgres",
                wide: wide.clone(),
            });
        }
    }

    eprintln!(
        "setup {:?}, characters {:?}",
        started.elapsed(),
        t.elapsed()
    );
    let mut total = 0;
    for (k, set) in settings.iter().enumerate() {
        let scs0 = if set.scs { "on" } else { "off" };
        let mut conn = Conn::connect(
            pg.port(),
            set.database,
            &[
                ("client_encoding", set.client_encoding),
                ("standard_conforming_strings", scs0),
                ("escape_string_warning", "off"),
                // The default (safe_encoding) refuses `\'` in the client-only encodings,
                // failing the whole Query; `on` runs it, and so is the setting where a split
                // that read the trail byte 0x5C as a backslash would let a statement through.
                ("backslash_quote", "on"),
            ],
        );
        assert_eq!(
            conn.lex.standard_conforming_strings, set.scs,
            "{}",
            set.client_encoding
        );
        let mut g = Gen {
            rng: Rng(seed ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            set,
            atomic: pg.major_version() >= 14,
            scs: set.scs,
        };
        conn.query(b"CREATE TEMP TABLE lexprop_t (a int)")
            .expect("table for rules");
        for case in 0..cases {
            let scs = if g.scs { "on" } else { "off" };
            assert_eq!(
                conn.lex.standard_conforming_strings, g.scs,
                "the server's ParameterStatus after the last SET"
            );
            let (sql, semis, stmts) = g.script();
            let context = || {
                format!(
                    "client_encoding {} standard_conforming_strings {scs}, seed {seed}, case {case}:\n{}",
                    set.client_encoding,
                    show(&sql)
                )
            };
            // ddlgate's split.
            let spans = split_statements(&sql, conn.lex);
            let ends: Vec<usize> = spans
                .iter()
                .filter(|s| s.terminated)
                .map(|s| s.end)
                .collect();
            assert_eq!(
                ends,
                semis,
                "ddlgate's statement ends differ from the script's; {}",
                context()
            );
            let empty: Vec<bool> = spans.iter().map(|s| s.is_empty()).collect();
            let mut want_empty: Vec<bool> = stmts.iter().map(|s| s.answer.is_none()).collect();
            if semis.len() == stmts.len() {
                // A final `;` leaves an empty segment after it.
                want_empty.push(true);
            }
            assert_eq!(
                empty,
                want_empty,
                "ddlgate's empty statements differ (ends {ends:?}); {}",
                context()
            );
            // The same split on the relay's path: the analysis hook's one pass, which keeps
            // the tokens of DDL candidates (`analysis::prepare`).
            let prepared = prepare(&sql, conn.lex, usize::MAX);
            let nonempty: Vec<_> = spans.iter().filter(|s| !s.is_empty()).copied().collect();
            assert_eq!(
                prepared.spans,
                nonempty,
                "analysis::prepare splits differently from split_statements; {}",
                context()
            );
            let want: Vec<&Answer> = stmts.iter().filter_map(|s| s.answer.as_ref()).collect();
            // Every CREATE is a DDL candidate (a SELECT may be one too: the byte check for
            // SQL run out of sight fails closed on `U&` names, for instance).
            for (class, answer) in prepared.classes.iter().zip(&want) {
                if answer.tag.starts_with(b"CREATE") {
                    assert_eq!(
                        *class,
                        StatementClass::DdlCandidate,
                        "analysis::prepare's classes {:?}; {}",
                        prepared.classes,
                        context()
                    );
                }
            }
            // The server's.
            let answers = conn
                .query(&sql)
                .unwrap_or_else(|e| panic!("server error {e}; {}", context()));
            assert_eq!(
                answers.iter().collect::<Vec<_>>(),
                want,
                "the server's statements differ; {}",
                context()
            );
            total += 1;
        }
    }
    eprintln!(
        "{total} scripts in {} settings agreed with PostgreSQL {} in {:?}",
        settings.len(),
        pg.major_version(),
        started.elapsed()
    );
}
