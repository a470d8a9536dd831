//! A session that keeps writing (or reading) while a test runs DDL through ddlgate, timing
//! every statement: what "a concurrent writer never waits longer than the guard's
//! lock_timeout" is measured with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs one statement in a loop (5 ms apart) on its own connection until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<(Instant, Duration)>>,
}

/// What a [`Writer`] did: for every statement, when it ended and how long it took.
pub struct Writes(pub Vec<(Instant, Duration)>);

impl Writes {
    /// The longest any statement took.
    pub fn worst(&self) -> Duration {
        self.0.iter().map(|(_, d)| *d).max().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Writer {
    /// Connects to `conn` and starts running `statement`; returns once it ran once. Its own
    /// `lock_timeout` is long, so that a blocked statement waits (and is measured) instead of
    /// failing.
    pub async fn start(conn: &str, statement: &'static str) -> Writer {
        let client = super::connect(conn).await;
        client
            .batch_execute("SET lock_timeout = '60s'")
            .await
            .expect("lock_timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            let mut done = Vec::new();
            let mut ready = Some(ready_tx);
            while !flag.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                client
                    .simple_query(statement)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
                done.push((Instant::now(), t0.elapsed()));
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("the writer starts")
            .expect("the writer runs");
        Writer { stop, handle }
    }

    /// Stops the writer and returns what it did; it must have run at least once.
    pub async fn stop(self) -> Writes {
        self.stop.store(true, Ordering::Relaxed);
        let done = self.handle.await.expect("writer task");
        assert!(!done.is_empty(), "the writer ran");
        Writes(done)
    }

    /// [`Writer::stop`], asserting no statement took `bound` or longer.
    pub async fn finish(self, bound: Duration) -> Writes {
        let writes = self.stop().await;
        let worst = writes.worst();
        println!("{} statements, the slowest took {worst:?}", writes.len());
        assert!(
            worst < bound,
            "a concurrent statement waited {worst:?} (bound {bound:?})"
        );
        writes
    }
}
