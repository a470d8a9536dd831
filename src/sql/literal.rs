//! String constants decoded exactly as PostgreSQL decodes them: the value of an `E'…'` string
//! (and of a plain `'…'` one when `standard_conforming_strings` is off) and of a `U&'…'` string
//! with its `UESCAPE` character.
//!
//! A `DO` block or a function body is such a constant: reading `E'BEGIN \x44ROP TABLE t; END'`
//! without decoding it would check `\x44ROP`, while the server runs `DROP`. Every function here
//! returns `None` where PostgreSQL would reject the constant or where the value is not certain
//! (an escape whose meaning changed between versions), so the caller fails closed.
//!
//! The rules follow `src/backend/parser/scan.l` (states `xe`, `xq`, `xus`) and
//! `str_udeunescape` in `src/backend/parser/parser.c`; the values are produced as bytes of the
//! server encoding, assumed UTF-8 for `\u` escapes (the others are ASCII or raw bytes).
//! <https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-STRINGS-ESCAPE>

/// The value of an escape string's content (between the quotes): `''` and `\'` are a quote,
/// `\b \f \n \r \t`, `\ooo` (1–3 octal digits), `\xh` / `\xhh`, `\uXXXX`, `\UXXXXXXXX`
/// (UTF-16 surrogate pairs combined), any other escaped character is itself.
///
/// `None` when PostgreSQL rejects the string (a zero byte, an incomplete or invalid Unicode
/// escape, an unpaired surrogate), and for `\v`: PostgreSQL's scanner reads it as a plain `v`
/// (it is not in `unescape_single_char`), C and most other readers as a vertical tab; a body
/// that depends on which is refused rather than guessed at.
pub fn escape_string(inner: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b == b'\'' {
            // Inside the token a quote only appears doubled.
            if inner.get(i + 1) != Some(&b'\'') {
                return None;
            }
            out.push(b'\'');
            i += 2;
            continue;
        }
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let c = *inner.get(i + 1)?;
        i += 2;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => return None,
            b'0'..=b'7' => {
                // {xeoctesc}: up to three octal digits, the value cut to a byte.
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3
                    && let Some(d @ b'0'..=b'7') = inner.get(i).copied()
                {
                    v = v * 8 + u32::from(d - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(nonzero((v & 0xff) as u8)?);
            }
            b'x' if inner.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                // {xehexesc}: one or two hex digits.
                let mut v = hex(inner[i])?;
                i += 1;
                if let Some(d) = inner.get(i).copied().and_then(hex) {
                    v = v * 16 + d;
                    i += 1;
                }
                out.push(nonzero(v as u8)?);
            }
            b'u' | b'U' => {
                let digits = if c == b'u' { 4 } else { 8 };
                let mut cp = hex_run(inner.get(i..i + digits)?)?;
                i += digits;
                if (0xD800..0xDC00).contains(&cp) {
                    // {xeu}: a high surrogate must be followed at once by its low half.
                    let next = *inner.get(i + 1)?;
                    if inner.get(i) != Some(&b'\\') || !matches!(next, b'u' | b'U') {
                        return None;
                    }
                    let digits = if next == b'u' { 4 } else { 8 };
                    let low = hex_run(inner.get(i + 2..i + 2 + digits)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    i += 2 + digits;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                push_code_point(&mut out, cp)?;
            }
            // {xeescape}: any other character stands for itself (a multibyte character's
            // remaining bytes follow unchanged).
            other => out.push(other),
        }
    }
    Some(out)
}

/// The value of a `U&'…'` string's content with escape character `escape`: `''` is a quote,
/// the escape doubled is itself, `escape XXXX` and `escape +XXXXXX` are code points (surrogate
/// pairs combined). `None` for anything PostgreSQL rejects, including an invalid escape
/// character (a hex digit, `+`, `'`, `"` or white space).
pub fn unicode_string(inner: &[u8], escape: u8) -> Option<Vec<u8>> {
    if escape.is_ascii_hexdigit()
        || matches!(
            escape,
            b'+' | b'\'' | b'"' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'
        )
        || !escape.is_ascii()
    {
        return None;
    }
    // The scanner undoubles quotes first ({xqdouble} in state xus); the escapes are decoded
    // afterwards, on the result.
    let raw = undouble(inner)?;
    let mut out = Vec::with_capacity(raw.len());
    let mut high: Option<u32> = None;
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != escape {
            if high.is_some() {
                return None;
            }
            out.push(raw[i]);
            i += 1;
            continue;
        }
        if raw.get(i + 1) == Some(&escape) {
            if high.is_some() {
                return None;
            }
            out.push(escape);
            i += 2;
            continue;
        }
        let cp = if raw.get(i + 1) == Some(&b'+') {
            let cp = hex_run(raw.get(i + 2..i + 8)?)?;
            i += 8;
            cp
        } else {
            let cp = hex_run(raw.get(i + 1..i + 5)?)?;
            i += 5;
            cp
        };
        match (high.take(), cp) {
            (None, 0xD800..=0xDBFF) => high = Some(cp),
            (None, 0xDC00..=0xDFFF) => return None,
            (None, cp) => push_code_point(&mut out, cp)?,
            (Some(h), 0xDC00..=0xDFFF) => {
                push_code_point(&mut out, 0x10000 + ((h - 0xD800) << 10) + (cp - 0xDC00))?
            }
            (Some(_), _) => return None,
        }
    }
    if high.is_some() {
        return None;
    }
    Some(out)
}

/// The character a `UESCAPE` clause's string names: exactly one byte.
pub fn uescape_char(value: &[u8]) -> Option<u8> {
    match value {
        [c] => Some(*c),
        _ => None,
    }
}

fn nonzero(b: u8) -> Option<u8> {
    (b != 0).then_some(b)
}

fn hex(d: u8) -> Option<u32> {
    char::from(d).to_digit(16)
}

/// A run of hex digits, all of which must be digits.
fn hex_run(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |v, &d| Some(v * 16 + hex(d)?))
}

/// Appends a code point as UTF-8; `None` for zero, surrogates and values beyond U+10FFFF,
/// which PostgreSQL rejects ("invalid Unicode escape value").
fn push_code_point(out: &mut Vec<u8>, cp: u32) -> Option<()> {
    let c = char::from_u32(cp).filter(|c| *c != '\0')?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Some(())
}

/// A quoted constant's content with `''` undoubled; `None` when a lone quote is inside (not one
/// constant).
pub(crate) fn undouble(inner: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\'' {
            if inner.get(i + 1) != Some(&b'\'') {
                return None;
            }
            i += 1;
        }
        out.push(inner[i]);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Option<String> {
        escape_string(s.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn u(s: &str, esc: u8) -> Option<String> {
        unicode_string(s.as_bytes(), esc).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    #[test]
    fn escape_strings_decode_like_postgres() {
        for (raw, value) in [
            (
                r"BEGIN \x44ROP TABLE victim; END",
                "BEGIN DROP TABLE victim; END",
            ),
            (r"\x4", "\x04"),
            (r"\x4g", "\x04g"),
            (r"\xg", "xg"),
            (r"\104ROP", "DROP"),
            (r"\1041", "D1"),
            (r"\777", "\u{fffd}"),
            (r"\u0044ROP", "DROP"),
            (r"\U00000044ROP", "DROP"),
            (r"\uD83D\uDE00", "😀"),
            (r"\b\f\n\r\t", "\x08\x0c\n\r\t"),
            (r"it\'s it''s \\ \q \%", r"it's it's \ q %"),
            ("", ""),
        ] {
            assert_eq!(e(raw).as_deref(), Some(value), "{raw}");
        }
        for raw in [
            r"\0",
            r"\000",
            r"\x00",
            r"\u0000",
            r"\u004",
            r"\u",
            r"\U0000004",
            r"\uD83D",
            r"\uD83Dx",
            r"\uDE00",
            r"\U00110000",
            r"\v",
            "\\",
            "'",
        ] {
            assert_eq!(e(raw), None, "{raw}");
        }
    }

    #[test]
    fn unicode_strings_decode_like_postgres() {
        for (raw, esc, value) in [
            (r"\0044ROP", b'\\', "DROP"),
            (r"\+000044ROP", b'\\', "DROP"),
            (r"!0044ROP !! \", b'!', r"DROP ! \"),
            (r"d\0061t\+000061", b'\\', "data"),
            (r"\D83D\DE00", b'\\', "😀"),
            ("it''s", b'\\', "it's"),
        ] {
            assert_eq!(u(raw, esc).as_deref(), Some(value), "{raw}");
        }
        for (raw, esc) in [
            (r"\004", b'\\'),
            (r"\", b'\\'),
            (r"\x", b'\\'),
            (r"\0000", b'\\'),
            (r"\D83D", b'\\'),
            (r"\D83Dx", b'\\'),
            (r"\DE00", b'\\'),
            (r"\+110000", b'\\'),
            ("a", b'a'),
            ("a", b'+'),
            ("a", b'\''),
            ("a", b' '),
            ("'", b'\\'),
        ] {
            assert_eq!(u(raw, esc), None, "{raw} {esc}");
        }
        assert_eq!(uescape_char(b"!"), Some(b'!'));
        assert_eq!(uescape_char(b"!!"), None);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Bytes rich in the characters the decoders care about.
    fn escapish() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b'\\'),
                Just(b'\''),
                Just(b'u'),
                Just(b'U'),
                Just(b'x'),
                Just(b'+'),
                Just(b'!'),
                b'0'..=b'9',
                b'a'..=b'f',
                b'A'..=b'F',
                any::<u8>(),
            ],
            0..64,
        )
    }

    proptest! {
        #[test]
        fn prop_decoders_never_panic(raw in escapish(), esc in any::<u8>()) {
            let _ = escape_string(&raw);
            let _ = unicode_string(&raw, esc);
        }

        /// Text without escapes or quotes decodes to itself.
        #[test]
        fn prop_plain_text_is_itself(raw in "[a-zA-Z0-9 ;()]{0,64}") {
            prop_assert_eq!(escape_string(raw.as_bytes()), Some(raw.as_bytes().to_vec()));
            prop_assert_eq!(unicode_string(raw.as_bytes(), b'\\'), Some(raw.as_bytes().to_vec()));
        }

        /// Every character written as `\uXXXX` / `\+XXXXXX` (surrogate pairs for the astral
        /// planes in E'' strings, as clients write them) decodes back to itself.
        #[test]
        fn prop_unicode_escapes_round_trip(s in "\\PC{0,16}") {
            let mut e = String::new();
            let mut u = String::new();
            for c in s.chars() {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    e.push_str(&format!("\\u{unit:04X}"));
                }
                u.push_str(&format!("\\+{:06X}", u32::from(c)));
            }
            let want = s.replace('\0', "");
            prop_assume!(want == s);
            prop_assert_eq!(escape_string(e.as_bytes()), Some(s.as_bytes().to_vec()));
            prop_assert_eq!(unicode_string(u.as_bytes(), b'\\'), Some(s.as_bytes().to_vec()));
        }
    }
}
