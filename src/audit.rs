//! The audit log: one JSON line per DDL decision, for the people who must later answer "who
//! changed the schema, how, and what did ddlgate do about it".
//!
//! Lines are written by one background task (file, appended, or standard output) fed through a
//! bounded channel, so a slow disk never stalls a session: when the channel is full the line
//! is dropped and counted (`ddlgate_audit_dropped_total`). Unlike the tracing logs, the audit
//! log holds the original SQL — that is its purpose — except that string literals are masked
//! when the statement mentions a password.

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::AuditConfig;
use crate::metrics::{AuditCounters, Metrics};

/// One DDL decision and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub session: u64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client_addr: String,
    pub profile: String,
    /// The statement as the client sent it.
    pub sql: String,
    /// allow, warn, rewrite or block (what happened, after the mode).
    pub action: &'static str,
    /// What enforce mode would have done.
    pub intended: &'static str,
    pub rules: Vec<&'static str>,
    /// The statement that ran instead (single-statement rewrite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<String>,
    /// The steps that ran instead (multi-step rewrite).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// ok, error (the server's), blocked.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
    /// Time spent in attempts that timed out waiting for a lock.
    pub lock_wait_ms: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_reasons: Vec<String>,
    /// What undoes the statement (`crate::undo`), when it ran and can be undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inverse: Option<Vec<String>>,
    /// Why it cannot be undone, when it ran and cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
}

/// Who a session is, for audit records.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub session: u64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub peer: String,
}

/// A decision waiting for its outcome.
#[derive(Debug, Clone)]
pub struct Draft {
    pub sql: String,
    pub profile: String,
    pub action: &'static str,
    pub intended: &'static str,
    pub rules: Vec<&'static str>,
    pub rewritten: Option<String>,
    pub steps: Vec<String>,
    pub override_reasons: Vec<String>,
    /// The statement as understood, and what ran of it (its rewrite's text as understood; a
    /// recipe stands for the statement): what its inverse is computed from (`crate::undo`).
    pub ddl: Option<Box<(crate::sql::statement::Ddl, crate::sql::statement::Ddl)>>,
    /// The catalog read just before it ran (`crate::undo::capture`), when there was one.
    pub before: Option<Box<crate::undo::Before>>,
}

/// The audit log's writer handle.
#[derive(Debug)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<String>>,
    counters: AuditCounters,
}

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

impl AuditLog {
    /// A log that writes nothing (its counters stay at 0).
    pub fn disabled(metrics: &Metrics) -> AuditLog {
        AuditLog {
            tx: None,
            counters: AuditCounters::new(metrics),
        }
    }

    /// Opens the configured destination and starts the writer task (needs a Tokio runtime).
    pub async fn start(cfg: &AuditConfig, metrics: &Metrics) -> std::io::Result<AuditLog> {
        if !cfg.enabled {
            return Ok(AuditLog::disabled(metrics));
        }
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = if cfg.path == "-" {
            Box::new(tokio::io::stdout())
        } else {
            Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&cfg.path)
                    .await?,
            )
        };
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let mut batch = line;
                // Write what has queued up meanwhile in one go.
                while let Ok(more) = rx.try_recv() {
                    batch.push_str(&more);
                }
                if let Err(e) = out.write_all(batch.as_bytes()).await {
                    tracing::error!(error = %e, "audit log write failed");
                }
                let _ = out.flush().await;
            }
        });
        Ok(AuditLog {
            tx: Some(tx),
            counters: AuditCounters::new(metrics),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Counts undo journal entries written to the database.
    pub fn journal_written(&self, n: usize) {
        self.counters.journal_written.increment(n as u64);
    }

    /// Counts undo journal entries whose write failed (audit log only).
    pub fn journal_failed(&self, n: usize) {
        self.counters.journal_failed.increment(n as u64);
    }

    /// Queues one record; never waits.
    pub fn write(&self, record: &Record) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        match tx.try_send(line) {
            Ok(()) => self.counters.written.increment(1),
            Err(_) => self.counters.dropped.increment(1),
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl Draft {
    /// The finished record.
    pub fn finish(
        self,
        who: &SessionInfo,
        outcome: &'static str,
        error: Option<String>,
        duration: std::time::Duration,
        lock_wait: std::time::Duration,
    ) -> Record {
        let undo = (self.action != "block").then(|| self.undo()).flatten();
        let mut record = Record {
            time: now(),
            session: who.session,
            user: who.user.clone(),
            database: who.database.clone(),
            application_name: who.application_name.clone(),
            client_addr: who.peer.clone(),
            profile: self.profile,
            sql: self.sql,
            action: self.action,
            intended: self.intended,
            rules: self.rules,
            rewritten: self.rewritten,
            steps: self.steps,
            // A blocked statement never ran: that is its outcome, whatever the unit's.
            outcome: if self.action == "block" {
                "blocked"
            } else {
                outcome
            },
            error,
            duration_ms: duration.as_secs_f64() * 1000.0,
            lock_wait_ms: lock_wait.as_secs_f64() * 1000.0,
            override_reasons: self.override_reasons,
            inverse: None,
            irreversible: None,
        };
        // Only a statement that ran has something to undo.
        if outcome == "ok"
            && let Some(inverse) = undo
        {
            match inverse {
                crate::undo::Inverse::Sql(sql) => record.inverse = Some(sql),
                crate::undo::Inverse::Irreversible(why) => record.irreversible = Some(why),
            }
        }
        record
    }

    /// The inverse of what ran (`crate::undo`), for a statement that was not blocked.
    pub fn undo(&self) -> Option<crate::undo::Inverse> {
        let (_, ran) = self.ddl.as_deref()?;
        let empty = crate::undo::Before::default();
        Some(crate::undo::inverse(
            ran,
            self.before.as_deref().unwrap_or(&empty),
        ))
    }

    /// The relation whose fingerprint identifies what the statement changed, as SQL.
    pub fn undo_object(&self) -> Option<String> {
        let (_, ran) = self.ddl.as_deref()?;
        let empty = crate::undo::Before::default();
        crate::undo::capture::object_sql(ran, self.before.as_deref().unwrap_or(&empty))
    }

    /// What ran, for the undo journal: the rewrite, the steps, or the statement.
    pub fn ran(&self) -> String {
        match (&self.rewritten, self.steps.is_empty()) {
            (Some(r), _) => r.clone(),
            (None, false) => self.steps.join(";\n"),
            (None, true) => self.sql.clone(),
        }
    }
}
