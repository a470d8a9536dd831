//! The accept loop: binds the listener, admits connections within the limits (`admission`:
//! unauthenticated connections and authenticated clients count separately), hands each session
//! to one of the event loops ([`crate::eventloop`]) and, on shutdown, stops accepting and waits
//! for every session to end.
//!
//! State shared by all sessions lives in [`crate::state::Shared`], passed explicitly as an
//! `Arc` — there are no process-wide singletons, so tests can run several proxies with
//! different settings in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::session;
use crate::shutdown::Phase;
use crate::state::{ReloadSource, Shared};

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
    let mut shared = Shared::new(config);
    shared.tls = tls;
    shared.audit = crate::audit::AuditLog::start(&shared.config.audit, &shared.metrics).await?;
    let shared = Arc::new(shared);
    let (admin_addr, admin) = if shared.config.admin.enabled {
        let (addr, task) = crate::admin::start(shared.clone()).await?;
        (Some(addr), Some(task))
    } else {
        (None, None)
    };
    let loops = crate::eventloop::EventLoops::start(
        shared.config.server.event_loops,
        shared
            .config
            .server
            .steady_relay
            .then_some(&shared.shutdown),
    )?;
    let event_loops = loops.len();
    let task = tokio::spawn(accept_loop(listener, shared.clone(), loops));
    let monitor = tokio::spawn(crate::monitor::run(shared.clone()));
    let upkeep = tokio::spawn(upkeep(shared.clone()));
    tracing::info!(
        listen = %local_addr,
        upstream = %shared.config.upstream.address,
        event_loops,
        "ddlgate listening"
    );
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    loops: crate::eventloop::EventLoops,
) {
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
                shared.connections.accepted.increment(1);
                let Some(admission) = shared.slots.admit(&shared.connections) else {
                    drop(stream);
                    continue;
                };
                // The socket moves to the session's loop: registered with that loop's poller,
                // so its messages never wake this thread.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hand the connection to an event loop");
                        continue;
                    }
                };
                let (rt, placement) = loops.place();
                let (shared, alive) = (shared.clone(), alive.clone());
                rt.spawn(async move {
                    let _placement = placement;
                    match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => session::handle(shared, stream, peer, admission, alive).await,
                        Err(e) => tracing::warn!(error = %e, "cannot register the connection"),
                    }
                });
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
    // Stops the loops; sessions still on them (past the grace) are dropped, closing their
    // sockets. Joining the threads blocks, so not on this runtime's worker.
    if tokio::task::spawn_blocking(move || drop(loops))
        .await
        .is_err()
    {
        tracing::warn!("an event loop panicked while stopping");
    }
}

/// How long terminated sessions get to say their last words before the server stops anyway.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// Runs [`crate::metrics::Metrics::run_upkeep`] every [`crate::metrics::UPKEEP_INTERVAL`] until
/// aborted.
async fn upkeep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.metrics.run_upkeep();
    }
}
