//! Shutdown phases, broadcast to every session through a `watch` channel.
//!
//! SIGTERM (what Kubernetes and `docker stop` send) starts a graceful drain: stop accepting,
//! close idle sessions, let open transactions finish up to `server.drain_timeout_ms`, then
//! terminate the rest. SIGINT, or a second signal, terminates at once. Terminating a session
//! that is running a statement also cancels that statement upstream, so its locks are released.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// No new connections; sessions close as soon as they are outside a transaction.
    Draining,
    /// Every session closes now with FATAL 57P01.
    Terminating,
}

/// The sending side, owned by the server.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<Phase>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            tx: watch::channel(Phase::Running).0,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }

    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// Moves forward to `phase`; phases never go back.
    pub fn advance(&self, phase: Phase) {
        self.tx.send_if_modified(|current| {
            if phase > *current {
                *current = phase;
                true
            } else {
                false
            }
        });
    }
}

/// Waits for SIGTERM/SIGINT and drives the phases: first SIGTERM drains, SIGINT or any second
/// signal terminates, and the drain timeout terminates too.
pub async fn drive_from_signals(
    shutdown: Shutdown,
    drain_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {
            tracing::info!(timeout_ms = drain_timeout.as_millis() as u64, "SIGTERM: draining; open transactions may finish");
            shutdown.advance(Phase::Draining);
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: terminating all sessions now");
            shutdown.advance(Phase::Terminating);
            return Ok(());
        }
    }
    tokio::select! {
        _ = term.recv() => tracing::info!("second SIGTERM: terminating all sessions now"),
        _ = int.recv() => tracing::info!("SIGINT: terminating all sessions now"),
        _ = tokio::time::sleep(drain_timeout) => tracing::info!("drain timeout reached: terminating remaining sessions"),
    }
    shutdown.advance(Phase::Terminating);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let s = Shutdown::new();
        let rx = s.subscribe();
        s.advance(Phase::Terminating);
        s.advance(Phase::Draining);
        assert_eq!(*rx.borrow(), Phase::Terminating);
        assert_eq!(s.phase(), Phase::Terminating);
    }
}
