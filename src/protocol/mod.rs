//! The PostgreSQL v3 wire protocol as far as ddlgate needs it: message tags, the untagged
//! startup packets, frame headers, and decoding of the few messages ddlgate inspects.
//!
//! Everything here works on isolated, length-checked frames (`framing`), so a malformed message
//! can produce an error but never a panic or an out-of-bounds read. Messages ddlgate does not
//! inspect are never decoded at all: their original bytes are forwarded.

pub mod backend;
pub mod framing;
pub mod frontend;
pub mod preauth;
pub mod responses;
pub mod sasl;
pub mod startup;
#[cfg(test)]
pub(crate) mod testing;

/// Where a Query's or Parse's SQL is: the one place is `frontend`.
pub use frontend::statement_sql;

/// Transaction status from the last ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    #[default]
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block; everything until ROLLBACK is refused.
    Failed,
}

impl TxStatus {
    pub fn from_byte(b: u8) -> Option<TxStatus> {
        match b {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InTransaction),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Idle => "idle",
            TxStatus::InTransaction => "in_transaction",
            TxStatus::Failed => "failed",
        }
    }
}

/// Reads a NUL-terminated string starting at `buf[0]`; returns it and the rest after the NUL.
pub(crate) fn read_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr::memchr(0, buf)?;
    Some((&buf[..nul], &buf[nul + 1..]))
}

/// The fields of an ErrorResponse or NoticeResponse body that ddlgate cares about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// Non-localized severity (`V`), falling back to `S`.
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl ErrorFields {
    /// Decodes an ErrorResponse/NoticeResponse body (after tag and length). Tolerates missing
    /// fields; a body without its terminator is still bounded by the frame.
    pub fn parse(mut body: &[u8]) -> ErrorFields {
        let mut out = ErrorFields::default();
        let mut localized = None;
        while let Some((&kind, rest)) = body.split_first() {
            if kind == 0 {
                break;
            }
            let Some((value, rest)) = read_cstr(rest) else {
                break;
            };
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'V' => out.severity = value,
                b'S' => localized = Some(value),
                b'C' => out.code = value,
                b'M' => out.message = value,
                _ => {}
            }
            body = rest;
        }
        if out.severity.is_empty() {
            out.severity = localized.unwrap_or_default();
        }
        out
    }

    pub fn is_fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_prefer_nonlocalized_severity() {
        let body = b"SERREUR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0";
        let f = ErrorFields::parse(body);
        assert_eq!(f.severity, "ERROR");
        assert_eq!(f.code, "42P01");
        assert_eq!(f.message, "relation \"x\" does not exist");
    }

    #[test]
    fn error_fields_tolerate_truncation() {
        let f = ErrorFields::parse(b"SFATAL\0C57P0");
        assert_eq!(f.severity, "FATAL");
        assert!(f.code.is_empty());
        assert!(ErrorFields::parse(b"").severity.is_empty());
    }
}
