//! A token cursor over one statement's text: the statement's code tokens (comments dropped)
//! and the bytes they index, with PostgreSQL's identifier folding and helpers for names, lists
//! and parentheses. Used where a caller needs the client's exact text around what the parser
//! understood (the multi-step recipes copy expressions and clauses byte for byte).

use crate::sql::keywords::RESERVED;
use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind};
use crate::sql::statement::Name;

/// Why the statement text could not be read. A recipe turns each into its refusal of the same
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    NotUnderstood,
    Unreadable(&'static str),
    Unsupported(&'static str),
}

/// The statement's code tokens (comments dropped) and the bytes they index.
pub(crate) struct Stmt<'a> {
    pub(crate) sql: &'a [u8],
    pub(crate) toks: Vec<Token>,
    /// Byte range of the statement proper: first token start to last token end (so trailing
    /// comments, which would swallow an appended `NOT VALID`, are never copied).
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl<'a> Stmt<'a> {
    pub(crate) fn new(
        sql: &'a [u8],
        start: usize,
        end: usize,
        lex: LexOptions,
    ) -> Result<Self, ReadError> {
        let end = end.min(sql.len());
        let mut toks: Vec<Token> = Lexer::at(sql, start, lex)
            .take_while(|t| t.start < end)
            .filter(|t| !t.is_comment())
            .collect();
        while toks.last().is_some_and(|t| t.kind == TokenKind::Semicolon) {
            toks.pop();
        }
        if toks
            .iter()
            .any(|t| t.unterminated || t.end > end || t.kind == TokenKind::Semicolon)
        {
            return Err(ReadError::Unreadable(
                "the statement (unterminated or several)",
            ));
        }
        let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
            return Err(ReadError::NotUnderstood);
        };
        if std::str::from_utf8(sql.get(first.start..last.end).unwrap_or_default()).is_err() {
            return Err(ReadError::Unsupported(
                "a statement that is not valid UTF-8",
            ));
        }
        let (start, end) = (first.start, last.end);
        Ok(Stmt {
            sql,
            toks,
            start,
            end,
        })
    }

    pub(crate) fn tok(&self, i: usize) -> Option<Token> {
        self.toks.get(i).copied()
    }

    pub(crate) fn last(&self) -> usize {
        self.toks.len().saturating_sub(1)
    }

    pub(crate) fn word(&self, i: usize, kw: &str) -> bool {
        self.tok(i).is_some_and(|t| t.is_word(self.sql, kw))
    }

    pub(crate) fn kind(&self, i: usize) -> Option<TokenKind> {
        self.tok(i).map(|t| t.kind)
    }

    pub(crate) fn is_op(&self, i: usize, op: &str) -> bool {
        self.tok(i)
            .is_some_and(|t| t.kind == TokenKind::Operator && t.text(self.sql) == op.as_bytes())
    }

    /// Lower-cased text of a `Word` token.
    pub(crate) fn lower(&self, i: usize) -> Option<String> {
        let t = self.tok(i)?;
        (t.kind == TokenKind::Word)
            .then(|| String::from_utf8_lossy(t.text(self.sql)).to_ascii_lowercase())
    }

    /// The client's bytes `[from, to)` as text.
    pub(crate) fn slice(&self, from: usize, to: usize) -> Result<&'a str, ReadError> {
        self.sql
            .get(from..to)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(ReadError::Unreadable("the statement text"))
    }

    /// Tokens `first..=last` as the client wrote them (including comments in between).
    pub(crate) fn text(&self, first: usize, last: usize) -> Result<String, ReadError> {
        let (Some(a), Some(b)) = (self.tok(first), self.tok(last)) else {
            return Err(ReadError::Unreadable("the statement text"));
        };
        if a.start > b.end {
            return Err(ReadError::Unreadable("the statement text"));
        }
        self.slice(a.start, b.end).map(str::to_owned)
    }

    /// An identifier folded like PostgreSQL: unquoted → ASCII lower case, `"…"` → as written
    /// with `""` unescaped. Reserved keywords and `U&"…"` identifiers are not accepted.
    pub(crate) fn ident(&self, i: usize) -> Option<String> {
        let t = self.tok(i)?;
        let text = t.text(self.sql);
        match t.kind {
            TokenKind::Word => {
                let lower = String::from_utf8_lossy(text).to_ascii_lowercase();
                (!in_list(&lower, RESERVED)).then_some(lower)
            }
            TokenKind::QuotedIdent if text.first() == Some(&b'"') && text.len() >= 3 => {
                let inner = std::str::from_utf8(text.get(1..text.len() - 1)?).ok()?;
                Some(inner.replace("\"\"", "\""))
            }
            _ => None,
        }
    }

    /// `ident [. ident [. ident]]` at `i`: the folded parts and the index after the name.
    pub(crate) fn dotted(&self, i: usize) -> Option<(Vec<String>, usize)> {
        let mut parts = vec![self.ident(i)?];
        let mut j = i + 1;
        while self.is_op(j, ".") {
            // After a dot any keyword is a valid label.
            let part = self.ident(j + 1).or_else(|| self.lower(j + 1))?;
            parts.push(part);
            j += 2;
        }
        Some((parts, j))
    }

    /// A relation name (`db.schema.rel` keeps the last two parts, like the model).
    pub(crate) fn relation(&self, i: usize) -> Option<(Name, usize)> {
        let (parts, j) = self.dotted(i)?;
        let name = match parts.as_slice() {
            [rel] => Name::bare(rel),
            [schema, rel] | [_, schema, rel] => Name::new(Some(schema), rel),
            _ => return None,
        };
        Some((name, j))
    }

    /// Index of the `)` matching the `(` at `open`.
    pub(crate) fn close_paren(&self, open: usize) -> Option<usize> {
        crate::sql::lexer::matching_paren(&self.toks, open)
    }

    /// `( ident [, ident …] )` at `open`: folded names and the index of `)`.
    pub(crate) fn column_list(&self, open: usize) -> Option<(Vec<String>, usize)> {
        let close = self.close_paren(open)?;
        let mut names = Vec::new();
        let mut i = open + 1;
        while i < close {
            names.push(self.ident(i)?);
            i += 1;
            if i < close {
                if self.kind(i)? != TokenKind::Comma {
                    return None;
                }
                i += 1;
            }
        }
        (!names.is_empty()).then_some((names, close))
    }

    /// The words appear consecutively somewhere in the statement.
    pub(crate) fn contains_words(&self, words: &[&str]) -> bool {
        (0..self.toks.len()).any(|i| words.iter().enumerate().all(|(k, w)| self.word(i + k, w)))
    }
}

pub(crate) fn in_list(word: &str, list: &str) -> bool {
    crate::sql::keywords::in_list(word.as_bytes(), list)
}
