//! Phase 0 of the DDL lane: the catalog facts a DDL statement's decision needs (what the
//! analyzer asks for: tables, sizes, constraints, and which relations the transaction created),
//! read with ddlgate's own queries before the relay decides the message.

use crate::error::SessionError;
use crate::protocol::framing::{self, Frame};
use crate::protocol::frontend;
use crate::session::relay::Relay;

impl Relay {
    /// Reads the catalog facts for the DDL of the Query/Parse at the front of the client
    /// buffer and hands them to the analyzer for its decision.
    pub(in crate::session) async fn read_facts(&mut self) -> Result<(), SessionError> {
        // The catalog settings of a reload apply to this statement's facts too, not only from
        // the next one (the decision itself refreshes them again, at no cost).
        self.st.refresh_live(&self.shared);
        // Parsing every DDL statement of a large message is heavy: off the I/O worker (or
        // already done on the blocking pool, see `Relay::facts_are_heavy`).
        let requests = match self.precomputed_requests.take() {
            Some(r) => r,
            None => {
                let heavy = self.facts_are_heavy();
                crate::session::relay::offload(heavy, || self.catalog_requests())
            }
        };
        let Some((_, sql)) = front_statement(&self.io.cbuf) else {
            return Ok(());
        };
        let lex = self.st.server.lex;
        let cfg = &self.st.live.config.catalog;
        let identity = self.st.analyzer.identity_query(
            sql,
            lex,
            cfg.max_resolved_names,
            cfg.max_created_relations,
        );
        let thresholds = crate::catalog::Thresholds {
            small_table_rows: cfg.small_table_rows,
            small_table_bytes: cfg.small_table_bytes,
        };
        let mut facts = Vec::with_capacity(requests.len());
        for (at, query) in requests {
            let reply = self.inject(&query).await?;
            if reply.error.is_some() {
                continue;
            }
            let Some(json) = reply.value() else {
                continue;
            };
            match crate::catalog::parse_facts(json) {
                Ok(mut f) => {
                    f.thresholds = thresholds;
                    facts.push((at, f));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable catalog facts; deciding without them")
                }
            }
        }
        // Offsets are relative to the SQL text, so they hold even if the buffer moves.
        self.st.analyzer.provide_facts(facts);
        // Which relations the transaction created (`created`): an error means nothing is new.
        if let Some(query) = identity {
            let reply = self.inject(&query).await?;
            let json = reply.value().filter(|_| reply.error.is_none());
            self.st.analyzer.provide_identity(json);
        }
        Ok(())
    }

    /// Finding the catalog questions of the front statement means parsing every DDL statement
    /// in it: heavy for a large message.
    pub(in crate::session) fn facts_are_heavy(&self) -> bool {
        front_statement(&self.io.cbuf)
            .is_some_and(|(_, sql)| sql.len() >= self.st.live.config.limits.offload_analysis_bytes)
    }

    /// The catalog questions the analyzer has about the front statement's DDL (CPU only).
    pub(in crate::session) fn catalog_requests(&mut self) -> Vec<(usize, String)> {
        let Some((tag, sql)) = front_statement(&self.io.cbuf) else {
            return Vec::new();
        };
        let source = if tag == frontend::QUERY {
            crate::analysis::Source::Query
        } else {
            crate::analysis::Source::Parse
        };
        let lex = self.st.server.lex;
        self.st.analyzer.catalog_requests(sql, lex, source)
    }
}

/// The SQL of the Query/Parse at the front of the client buffer, and its message tag.
fn front_statement(cbuf: &[u8]) -> Option<(u8, &[u8])> {
    let Ok(Frame::Header { tag, total }) = framing::scan(cbuf, usize::MAX) else {
        return None;
    };
    let frame = cbuf.get(..total)?;
    frontend::statement_sql(tag, framing::body(frame)).map(|sql| (tag, sql))
}
