//! The steady-state relay: sessions that are logged in, plain TCP on both sides, and not in the
//! middle of a DDL decision are relayed by a poller thread beside their event loop, outside
//! the async runtime.
//!
//! Why: on the async runtime a round trip pays for two task wake-ups, the scheduler's run
//! queue, the reactor's per-socket registrations and the task's cooperative budget — about a
//! third of the instructions a relayed round trip costs (README, Benchmarks). Here a socket's
//! readiness comes straight from `epoll` (edge-triggered, through `mio`) and the relay's own
//! synchronous code runs on it: the same framing, analysis, metrics and queues as on the event
//! loop (`Relay::steady_turns`).
//!
//! A session comes here from its event loop when nothing asynchronous is left to do
//! (`Relay::may_go_steady`), and goes back, with its sockets, as soon as something is: a DDL
//! statement to decide or guard, a large statement to analyse off the loop, a held message,
//! the end of the session, a shutdown phase. It never waits here for anything but its sockets.
//! Each loop serves one session for at most [`BUDGET`] turns before the others, as the
//! runtime's cooperative budget does.

use std::collections::VecDeque;
use std::future::Future;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use tokio::sync::oneshot;

use super::relay::{End, Relay};
use crate::error::SessionError;
use crate::shutdown::{Phase, PhaseChange, Shutdown};

/// Turns one session gets in a row before the other sessions on its loop are served.
const BUDGET: u32 = 32;

/// The token of the loop's own waker (new sessions, a shutdown phase, stop).
const WAKE: Token = Token(usize::MAX);

/// One steady-relay loop: its thread, and what the event loop beside it hands sessions to.
pub struct SteadyLoop {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

/// What sessions and the shutdown reach a loop through.
pub struct Inner {
    inbox: Mutex<Vec<Arrival>>,
    waker: mio::Waker,
    stop: AtomicBool,
}

/// A session handed to a loop, with its two sockets (deregistered from the runtime).
struct Arrival {
    relay: Relay,
    client: TcpStream,
    upstream: TcpStream,
    back: oneshot::Sender<Back>,
}

/// A session handed back to its event loop, and why.
pub(super) struct Back {
    pub relay: Relay,
    pub client: TcpStream,
    pub upstream: TcpStream,
    pub exit: Exit,
}

/// Why a session left the steady relay.
pub(super) enum Exit {
    /// Something asynchronous is due (the relay's own fields say what), or the loop is
    /// stopping: the event loop goes on with the session.
    Resume,
    /// A peer closed its socket.
    End(End),
    /// A socket or protocol error: the session ends with it.
    Failed(SessionError),
}

/// What a session's turns on the loop came to.
pub(super) enum Flow {
    /// Nothing more to do until a socket is ready again.
    Idle,
    /// The budget ran out with work left: served again after the others.
    Again,
    /// Back to the event loop.
    Leave(Exit),
}

/// A session's two sockets and what is known of their readiness. Edge-triggered: a flag is
/// set by an event and cleared when a call finds the socket not ready (or takes less than
/// asked: then everything there was was taken, and new data is a new event).
pub(super) struct Sockets {
    pub client: TcpStream,
    pub upstream: TcpStream,
    pub c: Readiness,
    pub u: Readiness,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Readiness {
    read: bool,
    write: bool,
    /// The peer closed (or the socket failed): reads and writes are always attempted, so the
    /// end is seen even though no new event will come.
    closed: bool,
}

impl Readiness {
    pub fn readable(&self) -> bool {
        self.read || self.closed
    }

    pub fn writable(&self) -> bool {
        self.write || self.closed
    }

    pub fn read_drained(&mut self) {
        self.read = false;
    }

    pub fn write_full(&mut self) {
        self.write = false;
    }

    fn writable_at_first() -> Readiness {
        Readiness {
            write: true,
            ..Readiness::default()
        }
    }

    fn mark(&mut self, ev: &mio::event::Event) {
        self.read |= ev.is_readable();
        self.write |= ev.is_writable();
        self.closed |= ev.is_read_closed() || ev.is_error();
    }
}

thread_local! {
    /// The steady loop beside the event loop running on this thread, if any.
    static CURRENT: std::cell::RefCell<Option<Arc<Inner>>> = const { std::cell::RefCell::new(None) };
}

/// The steady loop of this thread's event loop (`None` off the event loops, or when
/// `server.steady_relay` is off).
pub(super) fn current() -> Option<Arc<Inner>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// This thread's event loop has a steady loop that still takes sessions (looked at without
/// taking a reference to it).
pub(super) fn available() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|l| l.is_open()))
}

impl SteadyLoop {
    /// Starts loop `index`, whose sessions all belong to the server whose shutdown is
    /// `shutdown`, recording metrics into shard `shard`.
    pub fn start(index: usize, shard: usize, shutdown: Shutdown) -> std::io::Result<SteadyLoop> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE)?;
        let inner = Arc::new(Inner {
            inbox: Mutex::new(Vec::new()),
            waker,
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name(format!("ddlgate-steady-{index}"))
            .spawn({
                let inner = inner.clone();
                move || {
                    crate::metrics::set_shard(shard);
                    run(poll, &inner, &shutdown);
                }
            })?;
        Ok(SteadyLoop {
            inner,
            thread: Some(thread),
        })
    }

    /// What makes this loop the one sessions on the calling thread (its event loop) go to.
    pub fn installer(&self) -> impl FnOnce() + Send + 'static {
        let inner = self.inner.clone();
        move || CURRENT.with(|c| *c.borrow_mut() = Some(inner))
    }

    /// Hands every session back to its event loop and ends the thread.
    pub fn stop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = self.inner.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SteadyLoop {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    /// Whether the loop still takes sessions.
    pub(super) fn is_open(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Hands a session to the loop; it comes back through the returned receiver.
    pub(super) fn adopt(
        &self,
        relay: Relay,
        client: TcpStream,
        upstream: TcpStream,
    ) -> oneshot::Receiver<Back> {
        let (back, rx) = oneshot::channel();
        let arrival = Arrival {
            relay,
            client,
            upstream,
            back,
        };
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(arrival);
        if let Err(e) = self.waker.wake() {
            // The arrival waits in the inbox until the next wake-up; that one is not lost:
            // a failed eventfd write means the counter is already non-zero.
            tracing::debug!(error = %e, "waking the steady relay loop");
        }
        rx
    }
}

/// Wakes the loop's poller: how the shutdown phase reaches the loop.
struct WakeLoop(Arc<Inner>);

impl Wake for WakeLoop {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.waker.wake();
    }
}

/// A session on the loop.
struct Entry {
    relay: Relay,
    sockets: Sockets,
    back: oneshot::Sender<Back>,
    /// In the run queue already.
    queued: bool,
}

/// The loop's sessions, by slot; a token names a slot, its generation and a side, so an event
/// for a session that left is never taken for the slot's next occupant.
#[derive(Default)]
struct Table {
    slots: Vec<(u32, Option<Entry>)>,
    free: Vec<usize>,
}

impl Table {
    fn token(slot: usize, generation: u32, upstream: bool) -> Token {
        Token(((generation as usize) << 33) | (slot << 1) | usize::from(upstream))
    }

    fn decode(t: Token) -> (usize, u32, bool) {
        let generation = u32::try_from(t.0 >> 33).unwrap_or(u32::MAX);
        ((t.0 >> 1) & 0xffff_ffff, generation, t.0 & 1 == 1)
    }

    fn get_mut(&mut self, slot: usize, generation: u32) -> Option<&mut Entry> {
        match self.slots.get_mut(slot) {
            Some((g, Some(e))) if *g == generation => Some(e),
            _ => None,
        }
    }

    /// Registers both sockets and stores the session, due for a first look: its queues may
    /// hold work already, and its sockets take writes until one finds them full (what they
    /// hold to read, their registration reports). Sends it back to its event loop, failed,
    /// when registration fails.
    fn insert(&mut self, a: Arrival, registry: &Registry) -> Option<(usize, u32)> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, None));
            self.slots.len() - 1
        });
        let generation = self.slots[slot].0.wrapping_add(1) & 0x7fff_ffff;
        let both = Interest::READABLE | Interest::WRITABLE;
        let client = a.client.as_raw_fd();
        let upstream = a.upstream.as_raw_fd();
        if let Err(e) = registry.register(
            &mut SourceFd(&client),
            Table::token(slot, generation, false),
            both,
        ) {
            self.free.push(slot);
            bounce(a, Exit::Failed(SessionError::ClientIo(e)));
            return None;
        }
        if let Err(e) = registry.register(
            &mut SourceFd(&upstream),
            Table::token(slot, generation, true),
            both,
        ) {
            let _ = registry.deregister(&mut SourceFd(&client));
            self.free.push(slot);
            bounce(a, Exit::Failed(SessionError::UpstreamIo(e)));
            return None;
        }
        self.slots[slot] = (
            generation,
            Some(Entry {
                relay: a.relay,
                sockets: Sockets {
                    client: a.client,
                    upstream: a.upstream,
                    c: Readiness::writable_at_first(),
                    u: Readiness::writable_at_first(),
                },
                back: a.back,
                queued: true,
            }),
        );
        Some((slot, generation))
    }

    /// Takes a session out, its sockets deregistered.
    fn remove(&mut self, slot: usize, registry: &Registry) -> Option<Entry> {
        let e = self.slots.get_mut(slot)?.1.take()?;
        let _ = registry.deregister(&mut SourceFd(&e.sockets.client.as_raw_fd()));
        let _ = registry.deregister(&mut SourceFd(&e.sockets.upstream.as_raw_fd()));
        self.free.push(slot);
        Some(e)
    }

    fn occupied(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, e))| e.is_some())
            .map(|(i, _)| i)
            .collect()
    }
}

/// Sends a session back to its event loop (if its task is gone, the session is dropped here,
/// which closes its sockets, as the end of the task would have).
fn hand_back(e: Entry, exit: Exit) {
    bounce(
        Arrival {
            relay: e.relay,
            client: e.sockets.client,
            upstream: e.sockets.upstream,
            back: e.back,
        },
        exit,
    );
}

/// Sends a session that never settled on the loop back to its event loop.
fn bounce(a: Arrival, exit: Exit) {
    let _ = a.back.send(Back {
        relay: a.relay,
        client: a.client,
        upstream: a.upstream,
        exit,
    });
}

/// Whether the server is still running (not draining or terminating). Registers `waker` for
/// the next change, so a change wakes the loop.
fn still_running(change: &mut PhaseChange, waker: &Waker) -> bool {
    let mut cx = Context::from_waker(waker);
    std::pin::Pin::new(change).poll(&mut cx).is_pending()
}

fn run(mut poll: Poll, inner: &Arc<Inner>, shutdown: &Shutdown) {
    let waker = Waker::from(Arc::new(WakeLoop(inner.clone())));
    let mut change = shutdown.change_from(Phase::Running);
    let mut running = still_running(&mut change, &waker);
    let mut table = Table::default();
    let mut events = Events::with_capacity(256);
    let mut due: VecDeque<(usize, u32)> = VecDeque::new();
    loop {
        let timeout = (!due.is_empty()).then_some(Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "steady relay poller failed; its sessions go back to their event loop");
            inner.stop.store(true, Ordering::SeqCst);
        }
        let mut woken = false;
        for ev in &events {
            if ev.token() == WAKE {
                woken = true;
                continue;
            }
            let (slot, generation, upstream) = Table::decode(ev.token());
            if let Some(e) = table.get_mut(slot, generation) {
                if upstream {
                    e.sockets.u.mark(ev);
                } else {
                    e.sockets.c.mark(ev);
                }
                if !e.queued {
                    e.queued = true;
                    due.push_back((slot, generation));
                }
            }
        }
        let stop = inner.stop.load(Ordering::SeqCst);
        if woken || stop {
            if running {
                running = still_running(&mut change, &waker);
            }
            let arrivals =
                std::mem::take(&mut *inner.inbox.lock().unwrap_or_else(|e| e.into_inner()));
            for a in arrivals {
                if !running || stop {
                    bounce(a, Exit::Resume);
                    continue;
                }
                if let Some(key) = table.insert(a, poll.registry()) {
                    due.push_back(key);
                }
            }
            if !running || stop {
                for slot in table.occupied() {
                    if let Some(e) = table.remove(slot, poll.registry()) {
                        hand_back(e, Exit::Resume);
                    }
                }
                due.clear();
            }
            if stop {
                // Anything that arrived meanwhile goes back too; `is_open` is false, so no
                // more arrive.
                for a in std::mem::take(&mut *inner.inbox.lock().unwrap_or_else(|e| e.into_inner()))
                {
                    bounce(a, Exit::Resume);
                }
                return;
            }
        }
        for _ in 0..due.len() {
            let Some((slot, generation)) = due.pop_front() else {
                break;
            };
            let Some(e) = table.get_mut(slot, generation) else {
                continue;
            };
            e.queued = false;
            let flow = std::panic::catch_unwind(AssertUnwindSafe(|| {
                e.relay.steady_turns(&mut e.sockets, BUDGET)
            }));
            match flow {
                Ok(Flow::Idle) => {}
                Ok(Flow::Again) => {
                    e.queued = true;
                    due.push_back((slot, generation));
                }
                Ok(Flow::Leave(exit)) => {
                    if let Some(e) = table.remove(slot, poll.registry()) {
                        hand_back(e, exit);
                    }
                }
                Err(_) => {
                    // A bug, never a client's doing (the relay's code is fuzzed): the session
                    // is closed, its bookkeeping released, the loop goes on.
                    tracing::error!("steady relay: a session's turn panicked; closing it");
                    if let Some(mut e) = table.remove(slot, poll.registry()) {
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| e.relay.forget()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_slot_generation_and_side_and_never_the_waker() {
        for (slot, generation, upstream) in
            [(0, 1, false), (7, 3, true), (1 << 20, 0x7fff_ffff, true)]
        {
            let t = Table::token(slot, generation, upstream);
            assert_ne!(t, WAKE);
            assert_eq!(Table::decode(t), (slot, generation, upstream));
        }
    }
}
