//! The accept loop: binds the listener, admits connections within the limits (`admission`:
//! unauthenticated connections and authenticated clients count separately), spawns one task per
//! session and, on shutdown, stops accepting and waits for every session to end.
//!
//! State shared by all sessions lives in [`Shared`], passed explicitly as an `Arc` — there are no
//! process-wide singletons, so tests can run several proxies with different settings in one
//! process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::analysis::Counters;
use crate::config::Config;
use crate::protocol::startup::CancelKey;
use crate::session;
use crate::shutdown::{Phase, Shutdown};

pub mod admission;

/// Connection-level counters.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    /// Clients refused FATAL 53300 because `limits.max_clients` authenticated sessions were
    /// running.
    pub rejected_too_many: AtomicU64,
    /// Connections refused because `limits.max_unauthenticated` connections were logging in
    /// and none of them could be evicted (FATAL 53300, or closed at once past the bound on
    /// refusals in progress).
    pub rejected_unauthenticated: AtomicU64,
    /// Connections closed to make room for a newer one while they had not sent their startup
    /// packet yet.
    pub evicted_before_startup: AtomicU64,
    /// Connections closed for not sending their startup packet within
    /// `limits.startup_timeout_ms`.
    pub startup_timeouts: AtomicU64,
    /// Connections closed for not finishing authentication within `limits.login_timeout_ms`.
    pub login_timeouts: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    pub cancels_forwarded: AtomicU64,
    /// Statements cancelled upstream because their client vanished mid-statement.
    pub cancels_on_client_loss: AtomicU64,
}

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
    /// Where a reload (SIGHUP, `POST /reload`, `ddlgate reload`) reads the configuration from;
    /// `None` when ddlgate was started in-process without one.
    pub reload_source: std::sync::Mutex<Option<ReloadSource>>,
    pub counters: Counters,
    pub connections: ConnectionCounters,
    /// Prometheus metrics of this instance (`/metrics` on the admin endpoint).
    pub metrics: crate::metrics::Metrics,
    /// The audit log of DDL decisions.
    pub audit: crate::audit::AuditLog,
    /// DDL statements running or queued under the lock guard, by backend pid (`/status`).
    pub ddl_activity: DashMap<u32, crate::admin::DdlActivity>,
    /// Live sessions' cancel keys → the upstream address their backend lives at. BackendKeyData
    /// is relayed untouched, so a client's CancelRequest names the upstream backend directly;
    /// the map makes sure ddlgate only forwards cancels for its own sessions, to the right
    /// server.
    pub cancel_keys: DashMap<CancelKey, SocketAddr>,
    pub shutdown: Shutdown,
    /// Client-facing and upstream TLS, loaded once at start (`start` fills it in).
    pub tls: crate::tls::TlsContext,
    /// The lock monitor's last sample or error, for `/status`.
    pub monitor: std::sync::RwLock<crate::monitor::MonitorStatus>,
    /// Unauthenticated and client slots (`limits.max_unauthenticated`, `limits.max_clients`),
    /// sized at start.
    pub slots: admission::Slots,
    next_session_id: AtomicU64,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared {
            live: arc_swap::ArcSwap::from_pointee(Live::new(Arc::new(config.clone()), 1)),
            slots: admission::Slots::new(&config.limits),
            reload_source: std::sync::Mutex::new(None),
            config: Arc::new(config),
            counters: Counters::default(),
            connections: ConnectionCounters::default(),
            metrics: crate::metrics::Metrics::new(),
            ddl_activity: DashMap::new(),
            audit: crate::audit::AuditLog::disabled(),
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
        let generation = self.live.load().generation + 1;
        self.live
            .store(Arc::new(Live::new(Arc::new(new), generation)));
        tracing::info!(generation, needs_restart = ?restart, "configuration reloaded");
        restart
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running proxy.
pub struct Handle {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
    monitor: JoinHandle<()>,
    upkeep: JoinHandle<()>,
}

impl Handle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin endpoint's address, when it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Graceful: stop accepting, let open transactions finish.
    pub fn drain(&self) {
        self.shared.shutdown.advance(Phase::Draining);
    }

    /// Fast: close every session now.
    pub fn terminate(&self) {
        self.shared.shutdown.advance(Phase::Terminating);
    }

    /// Waits until the accept loop has stopped and every session has ended.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "accept loop panicked");
        }
        if let Some(admin) = self.admin {
            admin.abort();
        }
        self.monitor.abort();
        self.upkeep.abort();
    }
}

/// Binds the listener and starts accepting in a background task.
pub async fn start(config: Config) -> std::io::Result<Handle> {
    // Certificates and keys are read once, before anything listens: a bad file fails the start.
    let tls = crate::tls::TlsContext::load(&config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(config.server.listen).await?;
    let local_addr = listener.local_addr()?;
    let audit = crate::audit::AuditLog::start(&config.audit).await?;
    let shared = Arc::new(Shared {
        tls,
        audit,
        ..Shared::new(config)
    });
    let (admin_addr, admin) = if shared.config.admin.enabled {
        let (addr, task) = crate::admin::start(shared.clone()).await?;
        (Some(addr), Some(task))
    } else {
        (None, None)
    };
    let task = tokio::spawn(accept_loop(listener, shared.clone()));
    let monitor = tokio::spawn(crate::monitor::run(shared.clone()));
    let upkeep = tokio::spawn(crate::metrics::upkeep(shared.clone()));
    tracing::info!(listen = %local_addr, upstream = %shared.config.upstream.address, "ddlgate listening");
    Ok(Handle {
        local_addr,
        admin_addr,
        shared,
        task,
        admin,
        monitor,
        upkeep,
    })
}

/// Runs the proxy until a signal shuts it down (used by `ddlgate serve`).
pub async fn run(config: Config, source: ReloadSource) -> std::io::Result<()> {
    let drain_timeout = config.server.drain_timeout_ms;
    let handle = start(config).await?;
    if let Ok(mut s) = handle.shared.reload_source.lock() {
        *s = Some(source);
    }
    let reloads = tokio::spawn(reload_on_sighup(handle.shared.clone()));
    let signals = tokio::spawn(crate::shutdown::drive_from_signals(
        handle.shared.shutdown.clone(),
        drain_timeout,
    ));
    handle.join().await;
    signals.abort();
    reloads.abort();
    tracing::info!("ddlgate stopped");
    Ok(())
}

/// SIGHUP reloads the configuration (see [`Shared::reload_from_source`]).
async fn reload_on_sighup(shared: Arc<Shared>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        if let Ok(restart) = shared.reload_from_source()
            && !restart.is_empty()
        {
            tracing::warn!(keys = ?restart, "these settings changed but take effect only after a restart");
        }
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut phase = shared.shutdown.subscribe();
    // Every session holds a clone of `alive`; when all are dropped, `all_done` yields None.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                shared.connections.accepted.fetch_add(1, Ordering::Relaxed);
                let Some(admission) = shared.slots.admit(&shared.connections) else {
                    drop(stream);
                    continue;
                };
                tokio::spawn(session::handle(shared.clone(), stream, peer, admission, alive.clone()));
            }
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() >= Phase::Draining {
                    break;
                }
            }
        }
    }
    drop(listener);
    tracing::info!("stopped accepting connections; waiting for sessions to end");
    drop(alive);
    // Terminated sessions cancel what they run and close within a few milliseconds; one stuck
    // on a peer that stopped reading is not waited for longer than TERMINATE_GRACE, so the
    // process always ends (its sockets close with it, and PostgreSQL rolls back what they had
    // open).
    tokio::select! {
        _ = all_done.recv() => {}
        _ = async {
            while *phase.borrow_and_update() < Phase::Terminating {
                if phase.changed().await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(TERMINATE_GRACE).await;
        } => tracing::warn!(
            grace_ms = TERMINATE_GRACE.as_millis() as u64,
            "sessions still open after termination; stopping without them"
        ),
    }
}

/// How long terminated sessions get to say their last words before the server stops anyway.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);
