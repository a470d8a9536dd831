//! The floor of relay cost: the least a process between client and server can do.
//!
//! `benches/compare.sh` runs it beside PgBouncer and ddlgate when `FLOOR=1`: it accepts TCP
//! connections, connects each to the upstream and copies bytes both ways, one blocking thread
//! per direction (a `recv` and a `send` per message, no poller, no parsing, no buffering beyond
//! one 64 KiB buffer). Whatever it costs against a direct connection, every relay process pays at
//! least that on the same machine: the two extra sockets and the two extra wake-ups per round
//! trip. It is a measuring stick, not part of ddlgate; standard library only, so the script
//! builds it with `rustc` alone.
//!
//! Usage: `floor_relay LISTEN_ADDR UPSTREAM_ADDR` (for example `127.0.0.1:6433 127.0.0.1:5432`).
//! Run by `cargo bench` (no addresses) it says so and exits.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn serve(client: TcpStream, upstream: &str) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || pipe(client, server));
    std::thread::spawn(move || pipe(s2, c2));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!(
            "floor_relay LISTEN_ADDR UPSTREAM_ADDR: the floor relay for benches/compare.sh (FLOOR=1); nothing to run here"
        );
        return;
    };
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("floor_relay: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    for client in listener.incoming().flatten() {
        if let Err(e) = serve(client, upstream) {
            eprintln!("floor_relay: {e}");
        }
    }
}
