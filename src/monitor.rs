//! The lock monitor: what the lock queues of the whole database server look like, sampled.
//!
//! The lock guard sees the DDL that passes through ddlgate. Operators also want to see the
//! damage a lock does wherever it comes from — a migration run around ddlgate, a `LOCK TABLE` in
//! a psql session, a long transaction holding up everyone behind an `ALTER`. Every
//! `monitor.interval_ms` this task runs one read-only query on a connection of its own (to
//! `upstream.address`, through ddlgate's own TCP and TLS set-up; tokio-postgres does the login
//! and the query) and publishes:
//!
//! - sessions waiting for a heavyweight lock (`pg_locks.granted = false`);
//! - the oldest such wait, in seconds (`pg_locks.waitstart` on PostgreSQL 14 and later, the
//!   waiting statement's start before that);
//! - sessions blocked by a DDL statement: waiting sessions for which `pg_blocking_pids()` names a
//!   session that holds or requests a SHARE or stronger lock on a table. Those modes are what
//!   DDL takes (CREATE INDEX, ALTER TABLE, DROP, TRUNCATE, REFRESH MATERIALIZED VIEW, and LOCK
//!   TABLE); row reads and writes never do. A DDL statement waiting in the queue counts: it
//!   blocks everything that arrives after it.
//!
//! The numbers go to the `ddlgate_lock_monitor_*` gauges and to `/status`. The monitor's own
//! backend is left out. Its settings are reloadable: a change reconnects, `enabled = false`
//! closes the connection. A failed sample or connection is logged, counted and retried on the
//! next tick; the gauges then keep their last values and `ddlgate_lock_monitor_up` drops to 0.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_postgres::config::SslMode;

use crate::client::describe;
use crate::config::MonitorConfig;
use crate::shutdown::Phase;
use crate::state::{LockSample, MonitorStatus, Shared};

/// While disabled, how often the task looks at the live configuration again.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The sampling query for a server version: one row of three numbers.
fn sample_query(server_version_num: i32) -> String {
    // pg_locks.waitstart exists from PostgreSQL 14; before, the waiting statement's start is
    // the closest available (an upper bound of the wait).
    let since = if server_version_num >= 140_000 {
        "min(l.waitstart)"
    } else {
        "min((SELECT a.query_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = l.pid))"
    };
    format!(
        "WITH waiting AS (
             SELECT l.pid, {since} AS since
               FROM pg_catalog.pg_locks l
              WHERE NOT l.granted AND l.pid <> pg_catalog.pg_backend_pid()
              GROUP BY l.pid
         ), ddl AS (
             SELECT DISTINCT l.pid
               FROM pg_catalog.pg_locks l
              WHERE l.locktype = 'relation'
                AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                               'AccessExclusiveLock')
         )
         SELECT count(*)::int8,
                coalesce(extract(epoch FROM max(clock_timestamp() - w.since)), 0)::float8,
                count(*) FILTER (WHERE EXISTS (
                    SELECT 1 FROM ddl WHERE ddl.pid = ANY (pg_catalog.pg_blocking_pids(w.pid))
                ))::int8
           FROM waiting w"
    )
}

/// An open monitor connection.
struct Connection {
    /// The settings it was opened with; a reload that changes them reconnects.
    config: MonitorConfig,
    client: tokio_postgres::Client,
    query: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Runs until the proxy terminates. Spawned by `server::start` whatever the configuration
/// says, so that a reload can turn the monitor on.
pub async fn run(shared: Arc<Shared>) {
    let mut phase = shared.shutdown.subscribe();
    let mut conn: Option<Connection> = None;
    loop {
        let config = shared.live.load().config.monitor.clone();
        let wait = if config.enabled {
            if conn.as_ref().is_some_and(|c| c.config != config) {
                conn = None;
            }
            if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                // Terminated by an administrator, server restart, network: say so, reconnect.
                record(
                    &shared,
                    Err("the monitor connection was closed; reconnecting"),
                );
                conn = None;
            }
            let outcome = match conn.as_ref() {
                Some(c) => sample(c).await,
                None => match connect(&shared, &config).await {
                    Ok(c) => {
                        let s = sample(&c).await;
                        conn = Some(c);
                        s
                    }
                    Err(e) => Err(e),
                },
            };
            record(&shared, outcome.as_ref().map_err(String::as_str));
            if outcome.is_err() {
                conn = None;
            }
            config.interval_ms
        } else {
            if conn.take().is_some() || shared.monitor.read().is_ok_and(|s| s.enabled) {
                if let Ok(mut s) = shared.monitor.write() {
                    *s = MonitorStatus::default();
                }
                shared.metrics.monitor_up.set(0.0);
            }
            IDLE_POLL
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = phase.changed() => {
                if r.is_err() || *phase.borrow() == Phase::Terminating {
                    return;
                }
            }
        }
    }
}

/// Opens the monitor's connection: ddlgate's upstream connection (TCP, `upstream.tls`), then
/// tokio-postgres's startup and authentication over it.
async fn connect(shared: &Shared, config: &MonitorConfig) -> Result<Connection, String> {
    let timeout = shared.config.upstream.connect_timeout_ms;
    let (stream, _) = crate::session::connect_upstream(shared)
        .await
        .map_err(|e| e.to_string())?;
    let mut pg = tokio_postgres::Config::new();
    pg.user(&config.user)
        .dbname(&config.database)
        .application_name("ddlgate_monitor")
        // TLS, when configured, is already set up underneath.
        .ssl_mode(SslMode::Disable);
    if !config.password.0.is_empty() {
        pg.password(config.password.0.as_bytes());
    }
    let (client, connection) =
        tokio::time::timeout(timeout, pg.connect_raw(stream, tokio_postgres::NoTls))
            .await
            .map_err(|_| format!("login timed out after {} ms", timeout.as_millis()))?
            .map_err(|e| describe(&e))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "lock monitor connection ended");
        }
    });
    // A sample must never queue behind anything for long, nor outlive its tick by much.
    let limit = config.interval_ms.max(Duration::from_secs(1)).as_millis();
    client
        .batch_execute(&format!(
            "SET statement_timeout = {limit}; SET lock_timeout = {limit}"
        ))
        .await
        .map_err(|e| describe(&e))?;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| describe(&e))?;
    tracing::info!(user = %config.user, database = %config.database, "lock monitor connected");
    Ok(Connection {
        config: config.clone(),
        client,
        query: sample_query(version),
        driver,
    })
}

async fn sample(c: &Connection) -> Result<LockSample, String> {
    let row = c
        .client
        .query_one(c.query.as_str(), &[])
        .await
        .map_err(|e| describe(&e))?;
    let count = |i: usize| -> Result<u64, String> {
        row.try_get::<_, i64>(i)
            .map(|v| u64::try_from(v).unwrap_or(0))
            .map_err(|e| describe(&e))
    };
    Ok(LockSample {
        waiting: count(0)?,
        oldest_wait_seconds: row.try_get::<_, f64>(1).map_err(|e| describe(&e))?,
        blocked_by_ddl: count(2)?,
    })
}

fn record(shared: &Shared, outcome: Result<&LockSample, &str>) {
    let m = &shared.metrics;
    let mut status = shared.monitor.write().ok();
    match outcome {
        Ok(s) => {
            m.monitor_waiting.set(s.waiting as f64);
            m.monitor_oldest_wait.set(s.oldest_wait_seconds);
            m.monitor_blocked_by_ddl.set(s.blocked_by_ddl as f64);
            m.monitor_up.set(1.0);
            m.monitor_samples[0].increment(1);
            if let Some(st) = status.as_deref_mut() {
                *st = MonitorStatus {
                    enabled: true,
                    last: Some(*s),
                    last_at: SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs_f64()),
                    error: None,
                };
            }
        }
        Err(e) => {
            m.monitor_up.set(0.0);
            m.monitor_samples[1].increment(1);
            tracing::warn!(error = %e, "lock monitor sample failed; retrying on the next tick");
            if let Some(st) = status.as_deref_mut() {
                st.enabled = true;
                st.error = Some(e.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_follows_the_server_version() {
        assert!(sample_query(150_000).contains("l.waitstart"));
        let old = sample_query(130_000);
        assert!(!old.contains("waitstart") && old.contains("query_start"));
    }
}
