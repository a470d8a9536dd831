//! Timers for the session event loops, kept off them.
//!
//! A Tokio runtime with its time driver enabled pays for it at every park, timers or not: it
//! looks for the next expiration in its wheel, reads the clock and advances the wheel — about
//! 700 instructions per park, two parks per round trip, 8 % of what the relay spends per
//! transaction (callgrind; README "Benchmarks"). A session needs a timer only at its edges (the
//! login deadline, last words to a peer that went away, the lock guard's pause between attempts).
//! So the event loops run without a time driver (`eventloop`), and every timer session code
//! sets goes to one thread of its own that runs a runtime with one: [`sleep_until`] spawns a
//! task there that wakes the waiting session when the deadline passes, or ends as soon as the
//! session stops waiting. Setting a timer costs a wake-up of that thread, and so does dropping
//! one that has not fired: at most a few per session, none per message.
//!
//! Session code uses this module, never `tokio::time::{sleep, timeout, …}` (those panic on a
//! runtime without a time driver; `tests/architecture.rs` checks for them). Code that runs only
//! on the main runtime (the accept loop, the admin endpoint, the lock monitor, the tools) may use
//! Tokio's timers directly.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// The timer thread's runtime.
fn service() -> &'static tokio::runtime::Handle {
    static SERVICE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("the timer thread's runtime (no I/O driver) cannot fail to build");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("ddlgate-timers".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("the timer thread starts");
        handle
    })
}

/// Waits until `deadline`, on any runtime. Nothing is set until the first poll, so a timeout
/// whose future is ready at once costs nothing.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        state: State::Unset,
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

/// A timer from [`sleep_until`].
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Not polled yet.
    Unset,
    /// Set on the timer thread: its task sends when the deadline passes, and ends without
    /// sending once this receiver is dropped.
    Set(oneshot::Receiver<()>),
    Fired,
}

impl Sleep {
    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// The timer thread's task for one timer: sends on `fire` when `deadline` passes; ends at once,
/// without sending, when the waiting side is dropped.
async fn wait(deadline: Instant, mut fire: oneshot::Sender<()>) {
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => {
            let _ = fire.send(());
        }
        () = fire.closed() => {}
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Fired => return Poll::Ready(()),
                State::Unset => {
                    let deadline = self.deadline;
                    if Instant::now() >= deadline {
                        self.state = State::Fired;
                        continue;
                    }
                    let (fire, fired) = oneshot::channel();
                    service().spawn(wait(deadline, fire));
                    self.state = State::Set(fired);
                }
                State::Set(fired) => {
                    // An error (the timer thread gone: the process is ending) counts as fired:
                    // a deadline never waits forever.
                    let done = Pin::new(fired).poll(cx).is_ready();
                    if !done {
                        return Poll::Pending;
                    }
                    self.state = State::Fired;
                }
            }
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
    fn a_timer_whose_waiter_is_gone_ends_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (fire, fired) = oneshot::channel();
            let task = tokio::spawn(wait(Instant::now() + Duration::from_secs(3600), fire));
            tokio::task::yield_now().await;
            drop(fired);
            let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
            assert!(ended.is_ok(), "the task lingers after its waiter is gone");
        });
    }
}
