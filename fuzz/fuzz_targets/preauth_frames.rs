//! Fuzz target: arbitrary bytes as what a client sends after its startup packet, before it has
//! authenticated, fed through `protocol::preauth::gate` exactly as the relay feeds its read
//! buffer: frame after frame, a passed frame forwarded (streamed when only partly buffered), a
//! held or refused one ending the reading.
//!
//! Checks what the gate promises: only `p` messages within PostgreSQL's authentication-token cap
//! and bare Terminates pass, whatever their bytes; the gate never reads past a frame's header;
//! nothing is buffered for a held frame (it is left where it is).

#![no_main]

use ddlgate::protocol::framing::HEADER_LEN;
use ddlgate::protocol::preauth::{self, Gate, MAX_AUTH_LENGTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    loop {
        let buf = &data[at..];
        match preauth::gate(buf) {
            Gate::NeedHeader => {
                assert!(buf.len() < HEADER_LEN);
                return;
            }
            Gate::Pass { tag, total } => {
                match tag {
                    b'p' => assert!(total - 1 <= MAX_AUTH_LENGTH && total >= HEADER_LEN),
                    b'X' => assert_eq!(total, HEADER_LEN),
                    other => panic!("passed a frame of type {other}"),
                }
                assert_eq!(buf[0], tag);
                // The gate's answer depends on the header alone: the body cannot change it.
                assert_eq!(preauth::gate(&buf[..HEADER_LEN]), Gate::Pass { tag, total });
                if buf.len() < total {
                    // The relay streams the rest of this message as it arrives.
                    return;
                }
                at += total;
            }
            Gate::Hold => {
                assert!(buf.len() >= HEADER_LEN);
                assert_eq!(preauth::gate(&buf[..HEADER_LEN]), Gate::Hold);
                return;
            }
            Gate::Refuse(_) => return,
        }
    }
});
