//! Zero heap allocations per message in steady state, proven with a counting allocator.
//!
//! The proxy runs in this process against a real PostgreSQL. A global allocator counts every
//! allocation made on a thread that is not excluded; the test's own threads (this one, its
//! runtime's — accept loop, metrics upkeep —, and the client's) are excluded, so what is counted
//! is what ddlgate's session event loops allocate. The client is a blocking socket on a plain
//! thread that sends pre-encoded messages and reads the answers into a fixed buffer. After a
//! warm-up, thousands of round trips of each protocol (simple Query, extended with an unnamed
//! statement, a prepared statement's Bind/Execute/Sync) must allocate nothing at all.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::pg::PgCluster;
use common::wire;

struct Counting;

static COUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's allocations are not ddlgate's session work.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn exclude_this_thread() {
    EXCLUDED.with(|e| e.set(true));
}

fn count() {
    // `try_with`: during a thread's teardown the flag may be gone; such allocations are not a
    // message's.
    if EXCLUDED.try_with(|e| !e.get()).unwrap_or(false) {
        COUNTED.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A blocking raw-protocol client whose round trips allocate nothing.
struct Client {
    s: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: std::net::SocketAddr) -> Client {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(&wire::startup_packet("trust_user", "postgres"))
            .expect("startup");
        let mut c = Client {
            s,
            buf: vec![0; 1 << 16],
        };
        c.until_ready();
        c
    }

    /// Reads until a ReadyForQuery; panics on an ErrorResponse. No allocation.
    fn until_ready(&mut self) {
        let (mut have, mut at) = (0usize, 0usize);
        loop {
            while have - at >= 5 {
                let tag = self.buf[at];
                let len = u32::from_be_bytes([
                    self.buf[at + 1],
                    self.buf[at + 2],
                    self.buf[at + 3],
                    self.buf[at + 4],
                ]) as usize;
                if have - at < 1 + len {
                    break;
                }
                assert_ne!(tag, b'E', "the server answered with an error");
                at += 1 + len;
                if tag == b'Z' {
                    assert_eq!(at, have, "nothing may follow ReadyForQuery");
                    return;
                }
            }
            if at == have {
                (have, at) = (0, 0);
            }
            let n = self.s.read(&mut self.buf[have..]).expect("read");
            assert!(n > 0, "the proxy closed the connection");
            have += n;
        }
    }

    fn round_trip(&mut self, request: &[u8]) {
        self.s.write_all(request).expect("write");
        self.until_ready();
    }
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(sql.as_bytes());
    body.extend_from_slice(&[0, 0, 0]);
    wire::message(b'P', &body)
}

fn bind_execute_sync(name: &str) -> Vec<u8> {
    let mut bind = vec![0u8];
    bind.extend_from_slice(name.as_bytes());
    bind.push(0);
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut m = wire::message(b'B', &bind);
    m.extend(wire::message(b'E', &[0, 0, 0, 0, 0]));
    m.extend(wire::message(b'S', &[]));
    m
}

#[test]
fn relaying_allocates_nothing_per_message_in_steady_state() {
    exclude_this_thread();
    let pg = PgCluster::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(exclude_this_thread)
        .enable_all()
        .build()
        .expect("runtime");
    let proxy = runtime.block_on(common::start_proxy(pg.port(), |c| {
        c.server.event_loops = 1;
        c.admin.enabled = false;
    }));
    let addr = proxy.local_addr();
    let client = std::thread::spawn(move || {
        exclude_this_thread();
        let at_start = COUNTED.load(Ordering::Relaxed);
        let mut c = Client::connect(addr);
        // The counter does see the loop's work: setting a session up allocates.
        let login = COUNTED.load(Ordering::Relaxed) - at_start;
        assert!(login > 0, "the login allocated nothing on the event loop?");
        println!("login: {login} allocations");
        let simple = wire::query("SELECT 1, 'relay'::text");
        let extended = {
            let mut m = parse("", "SELECT $1::int + 1 AS n");
            // Unnamed portal and statement, one text parameter '7', default result formats.
            let bind = [0u8, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0];
            m.extend(wire::message(b'B', &bind));
            m.extend(wire::message(b'E', &[0, 0, 0, 0, 0]));
            m.extend(wire::message(b'S', &[]));
            m
        };
        c.round_trip(&{
            let mut m = parse("s1", "SELECT count(*) FROM pg_class WHERE relpages >= 0");
            m.extend(wire::message(b'S', &[]));
            m
        });
        let prepared = bind_execute_sync("s1");
        let mut counts = Vec::new();
        for (what, request) in [
            ("simple Query", &simple),
            ("extended, unnamed statement", &extended),
            ("prepared statement", &prepared),
        ] {
            // Warm-up: buffers, queues and tables reach their steady size.
            for _ in 0..2_000 {
                c.round_trip(request);
            }
            let before = COUNTED.load(Ordering::Relaxed);
            let n = 10_000;
            for _ in 0..n {
                c.round_trip(request);
            }
            let allocations = COUNTED.load(Ordering::Relaxed) - before;
            println!("{what}: {allocations} allocations in {n} round trips");
            counts.push((what, allocations));
        }
        c.s.write_all(&wire::message(b'X', &[])).expect("terminate");
        counts
    });
    let counts = client.join().expect("client");
    for (what, allocations) in counts {
        assert_eq!(
            allocations, 0,
            "{what}: the session's event loop allocated {allocations} times in steady state"
        );
    }
    proxy.terminate();
    runtime.block_on(proxy.join());
}
