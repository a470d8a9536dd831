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
        let Ok(Frame::Header { tag, total }) = framing::scan(&self.io.cbuf, usize::MAX) else {
            return Ok(());
        };
        let Some(frame) = self.io.cbuf.get(..total) else {
            return Ok(());
        };
        let body = framing::body(frame);
        let sql = frontend::statement_sql(tag, body);
        let Some(sql) = sql else { return Ok(()) };
        let lex = self.st.server.lex;
        // Parsing every DDL statement of a large message is heavy: off the I/O worker.
        let heavy = sql.len() >= self.st.live.config.limits.offload_analysis_bytes;
        let analyzer = &mut self.st.analyzer;
        let source = if tag == frontend::QUERY {
            crate::analysis::Source::Query
        } else {
            crate::analysis::Source::Parse
        };
        let requests =
            crate::session::relay::offload(heavy, || analyzer.catalog_requests(sql, lex, source));
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
}
