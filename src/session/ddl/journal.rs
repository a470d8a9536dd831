//! Recording a guarded statement's inverse in the undo journal (`crate::undo::journal`), on the
//! client's own connection, right after the statement succeeded and before the client has its
//! replies: inside the client's transaction under a savepoint (the entry commits or rolls back
//! with the DDL, and a failed write cannot abort the transaction), outside one right after it.
//! Any failure leaves the entry in the audit log only, counted and logged: the client's
//! statement never fails because of the journal. First (journal on or off), the names the
//! server gave unnamed indexes and constraints are read by OID, so the inverses can name them.

use crate::error::SessionError;
use crate::protocol::TxStatus;
use crate::session::relay::Relay;
use crate::undo::journal;

impl Relay {
    /// Writes the journal entries of the guarded statement's audit drafts, with the server in
    /// `status` after it.
    pub(super) async fn write_journal(&mut self, status: TxStatus) -> Result<(), SessionError> {
        if status != TxStatus::Failed {
            self.read_created(status).await?;
        }
        let cfg = self.st.live.config.journal.clone();
        if !cfg.enabled || status == TxStatus::Failed {
            return Ok(());
        }
        let who = &self.st.who;
        let entries: Vec<journal::Entry> = self
            .st
            .units
            .audit_pending
            .iter()
            .filter_map(|d| {
                let inverse = d.undo()?;
                Some(journal::Entry {
                    user: who.user.clone(),
                    application_name: who.application_name.clone(),
                    client_addr: who.peer.clone(),
                    statement: d.sql.clone(),
                    ran: d.ran(),
                    inverse: match inverse {
                        crate::undo::Inverse::Sql(s) => Ok(s),
                        crate::undo::Inverse::Irreversible(why) => Err(why),
                    },
                    object: d.undo_object(),
                })
            })
            .collect();
        let Some(insert) = journal::insert_sql(
            &cfg.schema,
            &entries,
            &format!("{:016x}", fastrand::u64(..)),
        ) else {
            return Ok(());
        };
        let mut sql = Vec::with_capacity(2);
        if !self.st.lane.journal_ready {
            sql.push(journal::create_sql(&cfg.schema));
        }
        sql.push(insert);
        let in_tx = status == TxStatus::InTransaction;
        let reply = if in_tx {
            self.inject(&journal::in_savepoint(sql)).await?
        } else {
            self.inject(&sql).await?
        };
        let audit = &self.shared.audit;
        match reply.error {
            None => {
                audit.journal_written(entries.len());
                self.st.lane.journal_ready = true;
            }
            Some(e) => {
                audit.journal_failed(entries.len());
                self.st.lane.journal_ready = false;
                tracing::warn!(code = %e.code, message = %e.message, "the undo journal could not be written; the inverse is in the audit log only");
                if in_tx {
                    self.inject(&journal::rollback_savepoint()).await?;
                }
            }
        }
        Ok(())
    }

    /// Reads the names the server gave the indexes and constraints the statement created
    /// without one (`crate::undo::capture::created_query`), into the drafts' snapshots, so both
    /// the journal and the audit log get an inverse that names them. One read-only catalog
    /// query; inside the client's transaction under a savepoint, so its failure cannot abort
    /// the transaction. A failure leaves those inverses irreversible ("not read").
    async fn read_created(&mut self, status: TxStatus) -> Result<(), SessionError> {
        let befores: Vec<&crate::undo::Before> = self
            .st
            .units
            .audit_pending
            .iter()
            .filter(|d| d.action != "block")
            .filter_map(|d| d.before.as_deref())
            .collect();
        let Some(query) = crate::undo::capture::created_query(&befores) else {
            return Ok(());
        };
        let reply = if status == TxStatus::InTransaction {
            let reply = self.inject(&journal::in_savepoint(vec![query])).await?;
            if reply.error.is_some() {
                self.inject(&journal::rollback_savepoint()).await?;
            }
            reply
        } else {
            self.inject(&[query]).await?
        };
        let Some(json) = reply.value().filter(|_| reply.error.is_none()) else {
            tracing::warn!(
                error = ?reply.error.map(|e| e.message),
                "the names of unnamed indexes/constraints could not be read; their inverses are recorded as irreversible"
            );
            return Ok(());
        };
        let mut created = crate::undo::capture::parse_created(json).into_iter();
        for d in self
            .st
            .units
            .audit_pending
            .iter_mut()
            .filter(|d| d.action != "block")
        {
            let Some(b) = d.before.as_deref_mut() else {
                continue;
            };
            match created.next() {
                Some(c) if crate::undo::capture::needs_created(b) => b.created = c,
                Some(_) => {}
                None => break,
            }
        }
        Ok(())
    }
}
