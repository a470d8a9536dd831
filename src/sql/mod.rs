//! The SQL layer: a PostgreSQL-accurate lexer and statement splitter (`lexer`) and the cheap
//! keyword prefilter on top of it (`prefilter`), which decides from a statement's first keyword
//! whether it can possibly be DDL. Only DDL candidates are ever given to a full parser; ordinary
//! DML pays for one lexing pass and a byte search (`side_effects`: dblink calls and `COPY …
//! PROGRAM`, which act out of ddlgate's sight from inside DML) and nothing else.

pub mod fallback;
pub mod keywords;
pub mod lexer;
pub mod literal;
pub mod naming;
pub mod parse;
pub mod plpgsql;
pub mod prefilter;
pub mod quote;
pub(crate) mod reader;
pub mod side_effects;
pub mod statement;

pub use lexer::{ClientEncoding, LexOptions, StatementSpan};
pub use prefilter::StatementClass;

/// How often the SQL readers run, per thread: for tests that hold the proxy path to one parse
/// per statement.
#[cfg(test)]
pub(crate) mod counting {
    use std::cell::Cell;

    thread_local! {
        /// sqlparser runs (`parse::understand` reaching the parser).
        pub static PARSES: Cell<usize> = const { Cell::new(0) };
        /// Lexer passes started (`Lexer::at`), whole or over a few tokens.
        pub static LEXES: Cell<usize> = const { Cell::new(0) };
    }

    pub fn reset() {
        PARSES.with(|c| c.set(0));
        LEXES.with(|c| c.set(0));
    }

    pub fn get() -> (usize, usize) {
        (PARSES.with(Cell::get), LEXES.with(Cell::get))
    }
}
