//! Shutdown phases, broadcast through a `watch` channel (background tasks) and
//! [`PhaseChange`] (the session relay loops).
//!
//! SIGTERM (what Kubernetes and `docker stop` send) starts a graceful drain: stop accepting,
//! close idle sessions, let open transactions finish up to `server.drain_timeout_ms`, then
//! terminate the rest. SIGINT, or a second signal, terminates at once. Terminating a session
//! that is running a statement also cancels that statement upstream, so its locks are released.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Running,
    /// No new connections; sessions close as soon as they are outside a transaction.
    Draining,
    /// Every session closes now with FATAL 57P01.
    Terminating,
}

/// The sending side, owned by the server.
impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Terminating,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<Phase>,
    sessions: Arc<Sessions>,
}

/// The phase as an atomic, and the wakers of the relay loops waiting for it to change.
///
/// A relay loop waits for the phase on every turn (twice per round trip). A `watch` change
/// future takes the channel's waiter lock on every poll; [`PhaseChange`] registers its task's
/// waker once and, while the task's waker stays the same, a poll is an atomic load.
#[derive(Debug, Default)]
struct Sessions {
    phase: AtomicU8,
    next_key: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Sessions {
    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waker>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Resolves, with the new phase, once the shutdown phase differs from the one it was created
/// with. Cheap to poll again and again from one task.
#[derive(Debug)]
pub struct PhaseChange {
    sessions: Arc<Sessions>,
    seen: Phase,
    /// This future's entry in [`Sessions::wakers`], and a copy of the waker stored there.
    registered: Option<(u64, Waker)>,
}

impl Future for PhaseChange {
    type Output = Phase;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Phase> {
        let this = self.get_mut();
        let now = this.sessions.phase();
        if now != this.seen {
            return Poll::Ready(now);
        }
        match &this.registered {
            Some((_, waker)) if waker.will_wake(cx.waker()) => return Poll::Pending,
            _ => {}
        }
        let key = match &this.registered {
            Some((key, _)) => *key,
            None => this.sessions.next_key.fetch_add(1, Ordering::Relaxed),
        };
        this.sessions.wakers().insert(key, cx.waker().clone());
        this.registered = Some((key, cx.waker().clone()));
        // `advance` stores the phase before it takes the lock to wake: either it saw this
        // waker, or the phase it stored is visible here.
        let now = this.sessions.phase();
        if now != this.seen {
            return Poll::Ready(now);
        }
        Poll::Pending
    }
}

impl Drop for PhaseChange {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            self.sessions.wakers().remove(&key);
        }
    }
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
            sessions: Arc::default(),
        }
    }

    /// A future resolving when the phase is no longer `seen` (see [`PhaseChange`]).
    pub fn change_from(&self, seen: Phase) -> PhaseChange {
        PhaseChange {
            sessions: self.sessions.clone(),
            seen,
            registered: None,
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
        let moved = self.tx.send_if_modified(|current| {
            if phase > *current {
                *current = phase;
                true
            } else {
                false
            }
        });
        if moved {
            self.sessions.phase.store(phase as u8, Ordering::SeqCst);
            for waker in self.sessions.wakers().values() {
                waker.wake_by_ref();
            }
        }
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

    #[tokio::test]
    async fn a_phase_change_wakes_the_waiting_task_once_registered() {
        let s = Shutdown::new();
        let mut change = s.change_from(Phase::Running);
        // Pending, and polling again (same task) stays pending without re-registering.
        assert!(futures_util::poll!(&mut change).is_pending());
        assert!(futures_util::poll!(&mut change).is_pending());
        assert_eq!(s.sessions.wakers().len(), 1);
        let waiter = tokio::spawn(change);
        tokio::task::yield_now().await;
        s.advance(Phase::Draining);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(seen, Phase::Draining);
        // Dropped futures leave no waker behind.
        assert!(s.sessions.wakers().is_empty());
        // A future created after the change, from the old phase, is ready at once.
        assert_eq!(s.change_from(Phase::Running).await, Phase::Draining);
    }
}
