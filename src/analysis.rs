//! The analysis hook: every statement's SQL text (from a simple Query or a Parse) passes through
//! here before it is forwarded, together with its context (transaction status, how many
//! statements share its protocol unit).
//!
//! Today the hook splits and classifies with the cheap prefilter, counts and logs (debug). The
//! policy engine plugs in here: this is the one place that sees SQL on the way to the server.
//! Non-DDL traffic pays one lexing pass (no allocation once the span buffer is warm) and nothing
//! else: no full parse.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::TxStatus;
use crate::sql::lexer::{self, LexOptions, StatementSpan};
use crate::sql::prefilter::{self, StatementClass};

/// Counters for everything the hook sees, kept in one place (the metrics endpoint exports them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Simple Query messages analysed.
    pub queries: AtomicU64,
    /// Parse messages analysed.
    pub parses: AtomicU64,
    /// Statements by prefilter class (indexed by `StatementClass::index`).
    pub statements: [AtomicU64; 4],
    /// Simple Queries that carried more than one statement (one implicit transaction).
    pub multi_statement_queries: AtomicU64,
    /// Extended-protocol units (messages up to a Sync) that ran more than one Execute, i.e.
    /// pipelines, which PostgreSQL also runs as one implicit transaction.
    pub pipelined_units: AtomicU64,
    /// Extended-protocol units completed (Syncs seen).
    pub extended_units: AtomicU64,
}

impl Counters {
    pub fn statements(&self, class: StatementClass) -> u64 {
        self.statements[class.index()].load(Ordering::Relaxed)
    }
}

/// Where a statement is about to run.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Transaction status from the last ReadyForQuery before this message.
    pub tx: TxStatus,
    /// How the server lexes this session's SQL (`standard_conforming_strings`, client encoding).
    pub lex: LexOptions,
}

/// What the hook learned about one message's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Non-empty statements the server will execute.
    pub statements: usize,
    /// Of those, how many the prefilter marked as possible DDL.
    pub ddl_candidates: usize,
}

/// The analysis step, owned by a session. Holds a reusable span buffer so the hot path does not
/// allocate per message.
#[derive(Debug, Default)]
pub struct Analyzer {
    spans: Vec<StatementSpan>,
}

/// Where the SQL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Query,
    Parse,
}

impl Analyzer {
    /// Splits, classifies, counts and logs the SQL of one Query or Parse message.
    pub fn analyze(
        &mut self,
        counters: &Counters,
        source: Source,
        sql: &[u8],
        ctx: &Context,
    ) -> Summary {
        lexer::split_into(sql, ctx.lex, &mut self.spans);
        let mut summary = Summary::default();
        for span in self.spans.iter().filter(|s| !s.is_empty()) {
            let class = prefilter::classify(sql, span);
            counters.statements[class.index()].fetch_add(1, Ordering::Relaxed);
            summary.statements += 1;
            if class == StatementClass::DdlCandidate {
                summary.ddl_candidates += 1;
            }
        }
        match source {
            Source::Query => {
                counters.queries.fetch_add(1, Ordering::Relaxed);
                if summary.statements > 1 {
                    counters
                        .multi_statement_queries
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Source::Parse => {
                counters.parses.fetch_add(1, Ordering::Relaxed);
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                source = ?source,
                statements = summary.statements,
                ddl_candidates = summary.ddl_candidates,
                tx = ctx.tx.as_str(),
                sql = %truncated(sql, 200),
                "statement analysed"
            );
        }
        summary
    }
}

/// SQL for logs: at most `max` bytes, lossy UTF-8, marked when cut.
pub fn truncated(sql: &[u8], max: usize) -> String {
    if sql.len() <= max {
        String::from_utf8_lossy(sql).into_owned()
    } else {
        format!(
            "{}… ({} bytes)",
            String::from_utf8_lossy(&sql[..max]),
            sql.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            tx: TxStatus::Idle,
            lex: LexOptions::default(),
        }
    }

    #[test]
    fn counts_statements_by_class() {
        let counters = Counters::default();
        let mut a = Analyzer::default();
        let s = a.analyze(
            &counters,
            Source::Query,
            b"SELECT 1; CREATE INDEX i ON t (x);; -- done",
            &ctx(),
        );
        assert_eq!(
            s,
            Summary {
                statements: 2,
                ddl_candidates: 1
            }
        );
        assert_eq!(counters.statements(StatementClass::Dml), 1);
        assert_eq!(counters.statements(StatementClass::DdlCandidate), 1);
        assert_eq!(counters.multi_statement_queries.load(Ordering::Relaxed), 1);
        let s = a.analyze(&counters, Source::Parse, b"select $1", &ctx());
        assert_eq!(
            s,
            Summary {
                statements: 1,
                ddl_candidates: 0
            }
        );
        assert_eq!(counters.parses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn semicolons_in_quotes_do_not_split() {
        let counters = Counters::default();
        let s = Analyzer::default().analyze(
            &counters,
            Source::Query,
            b"SELECT ';', $x$;$x$, \";\"",
            &ctx(),
        );
        assert_eq!(s.statements, 1);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncated(b"abc", 5), "abc");
        assert_eq!(truncated(b"abcdef", 3), "abc… (6 bytes)");
    }
}
