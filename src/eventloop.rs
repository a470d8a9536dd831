//! The session event loops: one thread per core, each running its own current-thread Tokio
//! runtime, as PgBouncer runs one event loop. A session lives on one loop from accept to close:
//! its two sockets are registered with that loop's poller, so a message wakes only that thread,
//! with no work stealing and no wake-up handed between threads.
//!
//! The accept loop (on the main runtime) hands each accepted socket to the loop with the fewest
//! sessions. Work that would stall a loop (the analysis of a large statement) runs on the
//! runtime's blocking pool instead (`session::relay`), so other sessions on the loop go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// The running loops. Dropping this stops them: each loop's runtime is dropped on its own
/// thread, which drops (closes) the sessions still on it.
pub struct EventLoops {
    loops: Vec<Loop>,
    next: AtomicUsize,
    /// The steady relay's loops, one beside each event loop (`server.steady_relay`).
    steady: Vec<crate::session::steady::SteadyLoop>,
}

struct Loop {
    handle: tokio::runtime::Handle,
    sessions: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Held by a session while it runs on a loop; counts it there.
pub struct Placement {
    sessions: Arc<AtomicUsize>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventLoops {
    /// Starts `count` loops (at least one); `0` means one per available core. With
    /// `steady`, the shutdown of the server the sessions belong to, each loop gets a steady
    /// relay loop beside it (`crate::session::steady`).
    pub fn start(
        count: usize,
        steady: Option<&crate::shutdown::Shutdown>,
    ) -> std::io::Result<EventLoops> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut loops = Vec::with_capacity(count);
        let mut steady_loops = Vec::new();
        for i in 0..count {
            let beside = match steady {
                Some(shutdown) => {
                    let l = crate::session::steady::SteadyLoop::start(
                        i,
                        count + i + 1,
                        shutdown.clone(),
                    )?;
                    let installer = l.installer();
                    steady_loops.push(l);
                    Some(installer)
                }
                None => None,
            };
            // No time driver: it costs about 700 instructions at every park, and a session
            // sets timers only at its edges, on the timer thread (`crate::timer`).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("ddlgate-loop-{i}"))
                .spawn(move || {
                    crate::metrics::set_shard(i + 1);
                    if let Some(install) = beside {
                        install();
                    }
                    // Runs the loop's tasks until told to stop (or until the sender is gone).
                    let _ = runtime.block_on(stopped);
                    // Sessions still open are dropped here, on the loop's own thread.
                    drop(runtime);
                })?;
            loops.push(Loop {
                handle,
                sessions: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(EventLoops {
            loops,
            next: AtomicUsize::new(0),
            steady: steady_loops,
        })
    }

    /// How many loops run.
    pub fn len(&self) -> usize {
        self.loops.len()
    }

    /// Always false: there is at least one loop.
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// The loop for a new session: the one with the fewest sessions, ties broken round-robin so
    /// that a burst of short connections spreads evenly.
    pub fn place(&self) -> (&tokio::runtime::Handle, Placement) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.loops.len();
        let mut best = start % n;
        let mut least = usize::MAX;
        for k in 0..n {
            let i = (start + k) % n;
            let s = self.loops[i].sessions.load(Ordering::Relaxed);
            if s < least {
                least = s;
                best = i;
            }
        }
        let chosen = &self.loops[best];
        chosen.sessions.fetch_add(1, Ordering::Relaxed);
        (
            &chosen.handle,
            Placement {
                sessions: chosen.sessions.clone(),
            },
        )
    }

    /// Sessions on each loop, as of now.
    pub fn sessions(&self) -> Vec<usize> {
        self.loops
            .iter()
            .map(|l| l.sessions.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for EventLoops {
    fn drop(&mut self) {
        // The steady loops first: they hand their sessions back to the event loops, which
        // then drop them with everything else they hold.
        for s in &mut self.steady {
            s.stop();
        }
        for l in &mut self.loops {
            if let Some(stop) = l.stop.take() {
                let _ = stop.send(());
            }
        }
        let current = std::thread::current().id();
        for l in &mut self.loops {
            if let Some(t) = l.thread.take()
                && t.thread().id() != current
            {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_go_to_the_least_loaded_loop_and_are_counted_until_they_end() {
        let loops = EventLoops::start(3, None).expect("loops");
        assert_eq!(loops.len(), 3);
        let placed: Vec<_> = (0..6).map(|_| loops.place().1).collect();
        assert_eq!(loops.sessions(), vec![2, 2, 2]);
        drop(placed);
        assert_eq!(loops.sessions(), vec![0, 0, 0]);
        let _a = loops.place().1;
        let _b = loops.place().1;
        let mut s = loops.sessions();
        s.sort();
        assert_eq!(s, vec![0, 1, 1]);
    }

    #[test]
    fn a_task_runs_on_its_loop_thread_and_the_loops_stop_when_dropped() {
        let loops = EventLoops::start(2, None).expect("loops");
        let (handle, placement) = loops.place();
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _placement = placement;
            let name = std::thread::current().name().map(str::to_owned);
            tx.send(name).expect("send");
            std::future::pending::<()>().await;
        });
        let name = rx.recv().expect("ran").expect("named thread");
        assert!(name.starts_with("ddlgate-loop-"), "{name}");
        assert_eq!(loops.sessions().iter().sum::<usize>(), 1);
        let counts = loops.loops[0].sessions.clone();
        let counts2 = loops.loops[1].sessions.clone();
        drop(loops);
        // The pending session was dropped with its loop, and with it its placement.
        assert_eq!(
            counts.load(Ordering::Relaxed) + counts2.load(Ordering::Relaxed),
            0
        );
    }
}
