//! The state every session, the admin endpoint and the background tasks share: the
//! configuration (and what a reload replaces), counters and metrics, the audit log, the guard's
//! activity and the lock monitor's last sample for `/status`, cancel keys, shutdown, TLS and the
//! admission slots. Its own module, holding data and the reload logic only, so that the modules
//! that use it (server, session, admin, monitor) never import each other through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use serde::Serialize;

use crate::admission;
use crate::config::Config;
use crate::metrics::{ConnectionCounters, Counters, Metrics};
use crate::protocol::startup::CancelKey;
use crate::shutdown::Shutdown;

/// Where the configuration comes from, for reloads.
#[derive(Debug, Clone, Default)]
pub struct ReloadSource {
    pub file: Option<std::path::PathBuf>,
    pub overrides: crate::config::Overrides,
}

/// The part of the configuration a reload replaces, with the policy built from it.
#[derive(Debug)]
pub struct Live {
    pub config: Arc<Config>,
    pub policy: crate::policy::Policy,
    /// Increases with every reload; sessions compare it to re-pick their profile.
    pub generation: u64,
}

impl Live {
    pub fn new(config: Arc<Config>, generation: u64) -> Live {
        Live {
            policy: crate::policy::Policy::from_config(&config),
            config,
            generation,
        }
    }
}

/// Everything sessions share.
#[derive(Debug)]
pub struct Shared {
    /// The configuration ddlgate started with. Listen and upstream addresses, the admin
    /// endpoint and `limits.max_clients` keep these values until a restart; everything that can
    /// change at run time is read from [`Shared::live`].
    pub config: Arc<Config>,
    /// What a reload replaces: policy, profiles, rules, limits, guard and catalog settings.
    /// Sessions pick up a new generation at their next statement.
    pub live: arc_swap::ArcSwap<Live>,
    /// [`Live::generation`] of the newest [`Shared::live`], set after it is stored: what a
    /// session compares before every statement, one atomic read instead of loading `live`.
    pub generation: AtomicU64,
    /// Held for the whole of a [`Shared::reload`]: two at once (a SIGHUP and a `POST /reload`)
    /// would otherwise both number their configuration from the same generation, or store
    /// `live` and `generation` in different orders — and a session could miss the newer one.
    reloading: std::sync::Mutex<()>,
    /// Where a reload (SIGHUP, `POST /reload`, `ddlgate reload`) reads the configuration from;
    /// `None` when ddlgate was started in-process without one.
    pub reload_source: std::sync::Mutex<Option<ReloadSource>>,
    /// What the analysis hook and the lock guard count, registered on `metrics`' recorder.
    pub counters: Counters,
    /// Accepts, refusals and cancels, registered on `metrics`' recorder.
    pub connections: ConnectionCounters,
    /// Prometheus metrics of this instance (`/metrics` on the admin endpoint).
    pub metrics: Metrics,
    /// The audit log of DDL decisions.
    pub audit: crate::audit::AuditLog,
    /// DDL statements running or queued under the lock guard, by backend pid (`/status`).
    pub ddl_activity: DashMap<u32, DdlActivity>,
    /// Live sessions' cancel keys → the upstream address their backend lives at. BackendKeyData
    /// is relayed untouched, so a client's CancelRequest names the upstream backend directly;
    /// the map makes sure ddlgate only forwards cancels for its own sessions, to the right
    /// server.
    pub cancel_keys: DashMap<CancelKey, SocketAddr>,
    pub shutdown: Shutdown,
    /// Client-facing and upstream TLS, loaded once at start (`start` fills it in).
    pub tls: crate::tls::TlsContext,
    /// The lock monitor's last sample or error, for `/status`.
    pub monitor: std::sync::RwLock<MonitorStatus>,
    /// Unauthenticated and client slots (`limits.max_unauthenticated`, `limits.max_clients`),
    /// sized at start.
    pub slots: admission::Slots,
    pub(crate) next_session_id: AtomicU64,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let metrics = Metrics::new();
        let audit = crate::audit::AuditLog::disabled(&metrics);
        Shared {
            live: arc_swap::ArcSwap::from_pointee(Live::new(Arc::new(config.clone()), 1)),
            generation: AtomicU64::new(1),
            reloading: std::sync::Mutex::new(()),
            slots: admission::Slots::new(&config.limits),
            reload_source: std::sync::Mutex::new(None),
            config: Arc::new(config),
            counters: Counters::new(&metrics),
            connections: ConnectionCounters::new(&metrics),
            metrics,
            ddl_activity: DashMap::new(),
            audit,
            cancel_keys: DashMap::new(),
            shutdown: Shutdown::new(),
            tls: crate::tls::TlsContext::default(),
            monitor: Default::default(),
            next_session_id: AtomicU64::new(1),
        }
    }

    /// Reloads from the configured source: the file and command-line overrides ddlgate started
    /// with, and the environment as it is now. A configuration that does not load or validate
    /// is rejected with the reason, and the running one stays in force.
    pub fn reload_from_source(&self) -> Result<Vec<&'static str>, String> {
        let source = self
            .reload_source
            .lock()
            .map_err(|_| "reload source unavailable".to_owned())?
            .clone()
            .ok_or_else(|| "ddlgate was started without a reload source".to_owned())?;
        match Config::load(source.file.as_deref(), &source.overrides) {
            Ok(config) => Ok(self.reload(config)),
            Err(e) => {
                tracing::error!(error = %e, "reload rejected; the running configuration stays in force");
                Err(e.to_string())
            }
        }
    }

    /// Replaces the live configuration with `new` (already validated). Keys that need a restart
    /// keep their old values; their names are returned so the caller can say so.
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let old = &self.config;
        let mut restart = Vec::new();
        if new.server != old.server {
            restart.push("server");
        }
        if new.upstream != old.upstream {
            restart.push("upstream");
        }
        if new.admin != old.admin {
            restart.push("admin");
        }
        if new.tls != old.tls {
            restart.push("tls");
        }
        if new.limits.max_clients != old.limits.max_clients {
            restart.push("limits.max_clients");
        }
        if new.limits.max_unauthenticated != old.limits.max_unauthenticated {
            restart.push("limits.max_unauthenticated");
        }
        if new.log != old.log {
            restart.push("log");
        }
        if new.audit != old.audit {
            restart.push("audit");
        }
        // A reload that panicked left nothing half-done here: the lock's data is `()`.
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.live.load().generation + 1;
        self.live
            .store(Arc::new(Live::new(Arc::new(new), generation)));
        self.generation.store(generation, Ordering::Release);
        tracing::info!(generation, needs_restart = ?restart, "configuration reloaded");
        restart
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// What one session's DDL is doing under the guard, for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DdlActivity {
    /// `queued` (waiting for its table's turn), `running`, or `waiting_for_lock` (between
    /// attempts after a lock timeout).
    pub state: &'static str,
    /// The tables it touches.
    pub tables: Vec<String>,
    /// Seconds since the statement arrived.
    #[serde(skip)]
    pub since: std::time::Instant,
    pub attempts: u32,
    /// The sessions in its way at the last lock timeout.
    pub blockers: Vec<String>,
}

/// What one sample saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LockSample {
    /// Sessions waiting for a lock.
    pub waiting: u64,
    /// The longest of those waits so far, in seconds (0 when none waits).
    pub oldest_wait_seconds: f64,
    /// Waiting sessions held up by a session that holds or wants a SHARE or stronger table lock.
    pub blocked_by_ddl: u64,
}

/// The monitor's state, for `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStatus {
    pub enabled: bool,
    /// The last successful sample.
    pub last: Option<LockSample>,
    /// When it was taken, seconds since the Unix epoch.
    pub last_at: Option<f64>,
    /// Why the last attempt failed, when it did (never holds a password).
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_at_once_each_get_a_generation_and_the_newest_is_announced() {
        let shared = Shared::new(Config::default());
        let reloads = 8;
        std::thread::scope(|s| {
            for _ in 0..reloads {
                s.spawn(|| {
                    for _ in 0..25 {
                        shared.reload(Config::default());
                    }
                });
            }
        });
        let newest = 1 + reloads * 25;
        assert_eq!(shared.live.load().generation, newest);
        assert_eq!(shared.generation.load(Ordering::Acquire), newest);
    }
}
