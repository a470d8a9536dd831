//! The accept loop: binds the listener, enforces the client limit, spawns one task per session
//! and, on shutdown, stops accepting and waits for every session to end.
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
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::analysis::Counters;
use crate::config::Config;
use crate::protocol::startup::CancelKey;
use crate::session;
use crate::shutdown::{Phase, Shutdown};

/// Connections past `max_clients` are told FATAL 53300 after their startup packet, like
/// PostgreSQL does. This many such rejections may be in progress at once; beyond that a
/// connection is closed without a word, so a connection flood cannot make ddlgate spawn
/// unbounded handshake tasks.
const MAX_PENDING_REJECTIONS: usize = 64;

/// Connection-level counters.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    pub rejected_too_many: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    pub cancels_forwarded: AtomicU64,
    /// Statements cancelled upstream because their client vanished mid-statement.
    pub cancels_on_client_loss: AtomicU64,
}

/// Everything sessions share.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    /// Policy profiles built from the configuration; each session picks its own at startup.
    pub policy: crate::policy::Policy,
    pub counters: Counters,
    pub connections: ConnectionCounters,
    /// Prometheus metrics of this instance (`/metrics` on the admin endpoint).
    pub metrics: crate::metrics::Metrics,
    /// DDL statements running or queued under the lock guard, by backend pid (`/status`).
    pub ddl_activity: DashMap<u32, crate::admin::DdlActivity>,
    /// Live sessions' cancel keys → the upstream address their backend lives at. BackendKeyData
    /// is relayed untouched, so a client's CancelRequest names the upstream backend directly;
    /// the map makes sure ddlgate only forwards cancels for its own sessions, to the right
    /// server.
    pub cancel_keys: DashMap<CancelKey, SocketAddr>,
    pub shutdown: Shutdown,
    next_session_id: AtomicU64,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared {
            policy: crate::policy::Policy::from_config(&config),
            config: Arc::new(config),
            counters: Counters::default(),
            connections: ConnectionCounters::default(),
            metrics: crate::metrics::Metrics::new(),
            ddl_activity: DashMap::new(),
            cancel_keys: DashMap::new(),
            shutdown: Shutdown::new(),
            next_session_id: AtomicU64::new(1),
        }
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
    }
}

/// Binds the listener and starts accepting in a background task.
pub async fn start(config: Config) -> std::io::Result<Handle> {
    let listener = TcpListener::bind(config.server.listen).await?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config));
    let (admin_addr, admin) = if shared.config.admin.enabled {
        let (addr, task) = crate::admin::start(shared.clone()).await?;
        (Some(addr), Some(task))
    } else {
        (None, None)
    };
    let task = tokio::spawn(accept_loop(listener, shared.clone()));
    tracing::info!(listen = %local_addr, upstream = %shared.config.upstream.address, "ddlgate listening");
    Ok(Handle {
        local_addr,
        admin_addr,
        shared,
        task,
        admin,
    })
}

/// Runs the proxy until a signal shuts it down (used by `ddlgate serve`).
pub async fn run(config: Config) -> std::io::Result<()> {
    let drain_timeout = config.server.drain_timeout_ms;
    let handle = start(config).await?;
    let signals = tokio::spawn(crate::shutdown::drive_from_signals(
        handle.shared.shutdown.clone(),
        drain_timeout,
    ));
    handle.join().await;
    signals.abort();
    tracing::info!("ddlgate stopped");
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let clients = Arc::new(Semaphore::new(shared.config.limits.max_clients));
    let rejections = Arc::new(Semaphore::new(MAX_PENDING_REJECTIONS));
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
                let admission = match clients.clone().try_acquire_owned() {
                    Ok(permit) => session::Admission::Admitted(permit),
                    Err(_) => match rejections.clone().try_acquire_owned() {
                        Ok(permit) => session::Admission::Reject(permit),
                        Err(_) => {
                            shared.connections.rejected_too_many.fetch_add(1, Ordering::Relaxed);
                            drop(stream);
                            continue;
                        }
                    },
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
    let _ = all_done.recv().await;
}
