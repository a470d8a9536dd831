//! The SQL layer: a PostgreSQL-accurate lexer and statement splitter (`lexer`) and the cheap
//! keyword prefilter on top of it (`prefilter`), which decides from a statement's first keyword
//! whether it can possibly be DDL. Only DDL candidates are ever given to a full parser; ordinary
//! DML pays for one lexing pass and a byte search (`side_effects`: dblink calls and `COPY …
//! PROGRAM`, which act out of ddlgate's sight from inside DML) and nothing else.

pub mod fallback;
pub mod keywords;
pub mod lexer;
pub mod literal;
pub mod parse;
pub mod plpgsql;
pub mod prefilter;
pub mod quote;
pub mod side_effects;
pub mod statement;

pub use lexer::{ClientEncoding, LexOptions, StatementSpan};
pub use prefilter::StatementClass;
