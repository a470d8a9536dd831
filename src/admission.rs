//! Admission: the two connection limits and the slots that enforce them.
//!
//! A connection counts against one of two pools, never both:
//!
//! - **unauthenticated** (`limits.max_unauthenticated`): from accept until the upstream accepts
//!   the client's credentials (AuthenticationOk). The accept loop takes the slot; the session
//!   keeps it through negotiation, the upstream connect and authentication.
//! - **clients** (`limits.max_clients`): from AuthenticationOk until the session ends. The
//!   relay trades the unauthenticated slot for it on seeing AuthenticationOk; when none is free
//!   the client gets FATAL 53300 instead of its AuthenticationOk.
//!
//! So connections that never log in — silent sockets, stalled TLS handshakes, clients that
//! never send their password — can only ever fill the first pool, and authenticated clients
//! always get in up to `max_clients` (PostgreSQL's `authentication_timeout` and PgBouncer's
//! `client_login_timeout` bound such connections in time only; both have one pool).
//!
//! When the unauthenticated pool is full, a new connection takes the slot of the *oldest
//! connection that has not sent its startup packet yet*, which is told FATAL 53300 and closed
//! (evicted: its startup packet may have been on its way, unread). A legitimate
//! client sends its startup packet within a round trip of connecting, so a flood of silent
//! connections (slowloris) evicts itself and cannot keep new clients out; it is also bounded in
//! time by `limits.startup_timeout_ms`. Connections that have sent their startup packet are never
//! evicted (they are bounded by `limits.login_timeout_ms`): when all slots are theirs, a new
//! connection is refused with FATAL 53300 after its startup packet, as PostgreSQL does; at most
//! [`MAX_PENDING_REJECTIONS`] refusals run at once, beyond that a connection is closed without a
//! word.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, oneshot};

use crate::config::LimitsConfig;
use crate::metrics::ConnectionCounters;

/// Connections refused for lack of an unauthenticated slot are told FATAL 53300 after their
/// startup packet, like PostgreSQL does. This many such refusals may be in progress at once;
/// beyond that a connection is closed without a word, so a connection flood cannot make
/// ddlgate spawn unbounded handshake tasks.
pub const MAX_PENDING_REJECTIONS: usize = 64;

/// Connections holding an unauthenticated slot that have not sent their startup packet yet,
/// by accept order (oldest first): the ones that may be evicted.
type Registry = Arc<Mutex<BTreeMap<u64, Waiting>>>;

/// The limits, shared by the accept loop and every session (in [`crate::state::Shared`]).
#[derive(Debug)]
pub struct Slots {
    clients: Arc<Semaphore>,
    max_clients: usize,
    unauthenticated: Arc<Semaphore>,
    max_unauthenticated: usize,
    rejections: Arc<Semaphore>,
    before_startup: Registry,
    next_ticket: AtomicU64,
}

/// A connection's unauthenticated slot while it may still be evicted.
#[derive(Debug)]
struct Waiting {
    permit: OwnedSemaphorePermit,
    /// Dropped on eviction, which wakes the connection's [`Ticket::evicted`].
    _evict: oneshot::Sender<()>,
}

/// What the accept loop gives a new connection.
#[derive(Debug)]
pub enum Admission {
    /// An unauthenticated slot, evictable until the startup packet arrives.
    Admitted(Ticket),
    /// No slot: finish negotiation only to say FATAL 53300 (holds a rejection permit).
    Reject(OwnedSemaphorePermit),
}

/// A connection's claim on an unauthenticated slot before its startup packet.
#[derive(Debug)]
pub struct Ticket {
    key: u64,
    registry: Registry,
    evicted: oneshot::Receiver<()>,
}

/// The slot a session holds: unauthenticated until AuthenticationOk, then one of
/// `max_clients`. Released when dropped.
#[derive(Debug)]
pub struct Slot {
    permit: OwnedSemaphorePermit,
    authenticated: bool,
}

fn lock(registry: &Registry) -> MutexGuard<'_, BTreeMap<u64, Waiting>> {
    // The map is consistent after every single insert/remove: a panic elsewhere while holding
    // the lock cannot leave it half-updated, so a poisoned lock is still usable.
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slots {
    pub fn new(limits: &LimitsConfig) -> Slots {
        Slots {
            clients: Arc::new(Semaphore::new(limits.max_clients)),
            max_clients: limits.max_clients,
            unauthenticated: Arc::new(Semaphore::new(limits.max_unauthenticated)),
            max_unauthenticated: limits.max_unauthenticated,
            rejections: Arc::new(Semaphore::new(MAX_PENDING_REJECTIONS)),
            before_startup: Default::default(),
            next_ticket: AtomicU64::new(0),
        }
    }

    /// Decides a newly accepted connection: a slot (evicting the oldest connection still
    /// without a startup packet if need be), a refusal to be said after its startup packet, or
    /// `None`: close it at once. Counts evictions and refusals in `counters`.
    pub fn admit(&self, counters: &ConnectionCounters) -> Option<Admission> {
        let permit = match self.unauthenticated.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::Closed) => None,
            Err(TryAcquireError::NoPermits) => self.evict_oldest().inspect(|_| {
                counters.evicted_before_startup.increment(1);
            }),
        };
        if let Some(permit) = permit {
            return Some(Admission::Admitted(self.register(permit)));
        }
        counters.rejected_unauthenticated.increment(1);
        self.rejections
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Admission::Reject)
    }

    /// Takes the slot of the oldest connection that has not sent its startup packet; dropping
    /// its entry wakes that connection, which closes.
    fn evict_oldest(&self) -> Option<OwnedSemaphorePermit> {
        lock(&self.before_startup)
            .pop_first()
            .map(|(_, waiting)| waiting.permit)
    }

    fn register(&self, permit: OwnedSemaphorePermit) -> Ticket {
        let key = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.before_startup).insert(key, Waiting { permit, _evict: tx });
        Ticket {
            key,
            registry: self.before_startup.clone(),
            evicted: rx,
        }
    }

    /// No client slot is free right now. Only a hint (one may be freed a moment later): used
    /// to refuse a client before opening an upstream connection for it, as ddlgate did before
    /// slots were taken at authentication.
    pub fn clients_full(&self) -> bool {
        self.clients.available_permits() == 0
    }

    /// `limits.max_clients` as the pool was built (it needs a restart to change).
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// Connections accepted and not yet authenticated, right now.
    pub fn unauthenticated_in_use(&self) -> usize {
        self.max_unauthenticated - self.unauthenticated.available_permits()
    }

    /// Authenticated sessions, right now.
    pub fn clients_in_use(&self) -> usize {
        self.max_clients - self.clients.available_permits()
    }
}

impl Ticket {
    /// Resolves when the slot was given to a newer connection: this one must close.
    pub async fn evicted(&mut self) {
        // Either the sender was dropped (eviction) or, never, a value was sent.
        let _ = (&mut self.evicted).await;
    }

    /// The startup packet arrived: the connection keeps its slot and can no longer be evicted.
    /// `None` if it was evicted in the meantime.
    pub fn claim(self) -> Option<Slot> {
        lock(&self.registry).remove(&self.key).map(|waiting| Slot {
            permit: waiting.permit,
            authenticated: false,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A connection that ends before its startup packet (or claims it) leaves the registry.
        lock(&self.registry).remove(&self.key);
    }
}

impl Slot {
    /// Whether AuthenticationOk was seen (the slot is one of `max_clients`).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// AuthenticationOk: trades the unauthenticated slot for a client slot. `Err` when none is
    /// free (the session must end with FATAL 53300); the unauthenticated slot is kept until then.
    pub fn authenticate(&mut self, slots: &Slots) -> Result<(), usize> {
        if self.authenticated {
            return Ok(());
        }
        let permit = slots
            .clients
            .clone()
            .try_acquire_owned()
            .map_err(|_| slots.max_clients)?;
        // The old permit drops here, freeing the unauthenticated slot.
        self.permit = permit;
        self.authenticated = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max_clients: usize, max_unauthenticated: usize) -> Slots {
        Slots::new(&LimitsConfig {
            max_clients,
            max_unauthenticated,
            ..LimitsConfig::default()
        })
    }

    fn ticket(a: Option<Admission>) -> Ticket {
        match a {
            Some(Admission::Admitted(t)) => t,
            other => panic!("expected a slot, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_full_pool_evicts_the_oldest_connection_without_a_startup_packet() {
        let s = slots(5, 2);
        let c = ConnectionCounters::default();
        let mut first = ticket(s.admit(&c));
        let second = ticket(s.admit(&c));
        // Full: the third takes the first's slot, and the first learns it.
        let third = ticket(s.admit(&c));
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted())
            .await
            .expect("the oldest is evicted");
        assert!(first.claim().is_none(), "an evicted ticket has no slot");
        assert_eq!(c.rejected("evicted_before_startup"), 1);
        // Claimed slots are not evictable: with both claimed, the next one is refused.
        let a = second.claim().expect("slot");
        let b = third.claim().expect("slot");
        assert_eq!(s.unauthenticated_in_use(), 2);
        assert!(matches!(s.admit(&c), Some(Admission::Reject(_))));
        assert_eq!(c.rejected("too_many_unauthenticated"), 1);
        drop((a, b));
        assert_eq!(s.unauthenticated_in_use(), 0);
    }

    #[test]
    fn a_dropped_ticket_leaves_the_registry_and_frees_its_slot() {
        let s = slots(5, 1);
        let c = ConnectionCounters::default();
        drop(ticket(s.admit(&c)));
        assert_eq!(s.unauthenticated_in_use(), 0);
        let t = ticket(s.admit(&c));
        assert_eq!(c.rejected("evicted_before_startup"), 0);
        drop(t);
    }

    #[test]
    fn authentication_trades_the_slot_and_fails_when_clients_are_full() {
        let s = slots(1, 2);
        let c = ConnectionCounters::default();
        let mut a = ticket(s.admit(&c)).claim().expect("slot");
        let mut b = ticket(s.admit(&c)).claim().expect("slot");
        assert!(a.authenticate(&s).is_ok());
        assert!(a.is_authenticated());
        assert_eq!((s.clients_in_use(), s.unauthenticated_in_use()), (1, 1));
        assert!(s.clients_full());
        assert_eq!(b.authenticate(&s), Err(1));
        assert!(!b.is_authenticated());
        drop(a);
        assert!(b.authenticate(&s).is_ok());
        assert_eq!((s.clients_in_use(), s.unauthenticated_in_use()), (1, 0));
    }

    #[test]
    fn refusals_in_progress_are_bounded() {
        let s = slots(1, 1);
        let c = ConnectionCounters::default();
        let _held = ticket(s.admit(&c)).claim().expect("slot");
        let refusals: Vec<_> = (0..MAX_PENDING_REJECTIONS)
            .map(|_| s.admit(&c).expect("a refusal"))
            .collect();
        assert!(s.admit(&c).is_none(), "past the bound: closed at once");
        drop(refusals);
        assert!(s.admit(&c).is_some());
    }
}
