//! Timers for the session event loops, kept off them.
//!
//! A Tokio runtime with its time driver enabled pays for it at every park, timers or not: it
//! looks for the next expiration in its wheel, reads the clock and advances the wheel — about
//! 800 instructions per round trip, 9 % of what the relay spent per transaction (callgrind;
//! README "Benchmarks"). A session needs a timer only at its edges (the startup and login
//! deadlines, connecting upstream, last words to a peer that went away, the lock guard's pause
//! between attempts). So the event loops run without a time driver (`eventloop`), and the
//! timers session code sets are kept here: deadlines in one ordered map, watched by one thread
//! of its own that sleeps until the earliest and wakes the sessions whose deadline passed.
//!
//! Setting a timer takes the map's lock and inserts; dropping one removes it. Neither wakes the
//! thread unless the new deadline is earlier than the one it sleeps until, so a stream of
//! connections with the same timeouts (each later than the last) costs no system call: the
//! thread wakes when a deadline passes, or once after the earliest one it slept for was
//! dropped, and finds the next.
//!
//! Session code uses this module, never `tokio::time::{sleep, timeout, …}` (those panic on a
//! runtime without a time driver; `tests/architecture.rs` checks for them). Code that runs only
//! on the main runtime (the accept loop, the admin endpoint, the lock monitor, the tools) may use
//! Tokio's timers directly.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant as StdInstant};

use tokio::time::Instant;

/// The deadlines set, and the thread that watches them.
struct Timers {
    state: Mutex<State>,
    /// Signalled when a deadline earlier than `State::sleeping_until` is set.
    earlier: Condvar,
}

struct State {
    /// Waiting sessions by (deadline, id).
    waiting: BTreeMap<(StdInstant, u64), Waker>,
    next_id: u64,
    /// When the watching thread will look next (`None`: it waits for a signal).
    sleeping_until: Option<StdInstant>,
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watching thread: wakes the sessions whose deadline passed, then sleeps until the
    /// earliest one left (or until one earlier is set).
    fn watch(&self) {
        let mut state = self.lock();
        loop {
            let now = StdInstant::now();
            let mut due = Vec::new();
            while let Some(entry) = state.waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let next = state.waiting.keys().next().map(|&(deadline, _)| deadline);
            state.sleeping_until = next;
            if !due.is_empty() {
                drop(state);
                due.into_iter().for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            state = match next {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(now);
                    self.earlier
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.earlier.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// Sets a deadline for `waker`; its id.
    fn set(&self, deadline: StdInstant, waker: Waker) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.insert((deadline, id), waker);
        if state.sleeping_until.is_none_or(|t| deadline < t) {
            state.sleeping_until = Some(deadline);
            self.earlier.notify_one();
        }
        id
    }

    fn replace_waker(&self, key: (StdInstant, u64), waker: Waker) {
        if let Some(w) = self.lock().waiting.get_mut(&key) {
            *w = waker;
        }
    }

    fn cancel(&self, key: (StdInstant, u64)) {
        self.lock().waiting.remove(&key);
    }
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::new(Timers {
            state: Mutex::new(State {
                waiting: BTreeMap::new(),
                next_id: 0,
                sleeping_until: None,
            }),
            earlier: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("ddlgate-timers".to_owned())
            .spawn(move || timers.watch())
            .expect("the timer thread starts");
        timers
    })
}

/// Waits until `deadline`, on any runtime. Nothing is set until the first poll, so a timeout
/// whose future is ready at once costs nothing.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline: deadline.into_std(),
        set: None,
    }
}

/// Waits for `d`, on any runtime.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

/// The deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// `future`, or [`Elapsed`] once `deadline` passes first (polled first, as Tokio's is).
pub async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        out = future => Ok(out),
        () = sleep_until(deadline) => Err(Elapsed),
    }
}

/// `future`, or [`Elapsed`] after `d`.
pub async fn timeout<F: Future>(d: Duration, future: F) -> Result<F::Output, Elapsed> {
    timeout_at(Instant::now() + d, future).await
}

/// A timer from [`sleep_until`]; removed from the map when dropped.
#[derive(Debug)]
pub struct Sleep {
    deadline: StdInstant,
    /// Its id in the map, and the waker stored there.
    set: Option<(u64, Waker)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        if StdInstant::now() >= deadline {
            if let Some((id, _)) = self.set.take() {
                timers().cancel((deadline, id));
            }
            return Poll::Ready(());
        }
        match &mut self.set {
            None => {
                let id = timers().set(deadline, cx.waker().clone());
                self.set = Some((id, cx.waker().clone()));
            }
            Some((id, waker)) if !waker.will_wake(cx.waker()) => {
                *waker = cx.waker().clone();
                timers().replace_waker((deadline, *id), cx.waker().clone());
            }
            Some(_) => {}
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((id, _)) = self.set.take() {
            timers().cancel((self.deadline, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A current-thread runtime like the event loops': I/O only, no time driver.
    fn io_only() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_sleep_on_a_runtime_without_a_time_driver_wakes_after_its_deadline() {
        io_only().block_on(async {
            let began = std::time::Instant::now();
            sleep(Duration::from_millis(30)).await;
            let took = began.elapsed();
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        });
    }

    #[test]
    fn a_timeout_gives_the_future_s_output_or_elapsed() {
        io_only().block_on(async {
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
            let never = std::future::pending::<()>();
            let began = std::time::Instant::now();
            assert_eq!(
                timeout(Duration::from_millis(20), never).await,
                Err(Elapsed)
            );
            assert!(began.elapsed() >= Duration::from_millis(20));
            // A deadline already past fires without setting anything.
            sleep_until(Instant::now()).await;
        });
    }

    #[test]
    fn an_earlier_deadline_set_while_the_thread_sleeps_for_a_later_one_still_fires_on_time() {
        io_only().block_on(async {
            // The thread sleeps until this hour-long deadline…
            let mut far = Box::pin(sleep(Duration::from_secs(3600)));
            let polled = std::future::poll_fn(|cx| Poll::Ready(far.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            // …and must wake for a nearer one.
            let began = std::time::Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(began.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn a_dropped_timer_leaves_the_map() {
        let key = {
            let mut far = Box::pin(sleep(Duration::from_secs(3600)));
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(far.as_mut().poll(&mut cx).is_pending());
            let (id, _) = far.set.as_ref().expect("set").clone();
            let key = (far.deadline, id);
            assert!(timers().lock().waiting.contains_key(&key));
            key
        };
        assert!(!timers().lock().waiting.contains_key(&key));
    }
}
