//! Fuzz target: arbitrary bytes as the untagged initial packets a connection opens with
//! (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), cut and decoded exactly as
//! `session::negotiate` does: `packet_len` on the 4-byte length first (nothing is read or
//! allocated past its bound), then `parse_initial` on the complete packet. Several packets in a
//! row, as a client negotiating encryption sends them.

#![no_main]

use bytes::Bytes;
use ddlgate::protocol::startup::{self, InitialPacket, MAX_STARTUP_PACKET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // negotiate() accepts at most one SSLRequest and one GSSENCRequest before the startup
    // packet, so a few packets cover every path.
    for _ in 0..4 {
        let Some(header) = rest.get(..4) else { return };
        let header = [header[0], header[1], header[2], header[3]];
        let Ok(len) = startup::packet_len(header) else {
            return;
        };
        assert!((8..=MAX_STARTUP_PACKET).contains(&len), "{len}");
        let Some(packet) = rest.get(..len) else {
            return;
        };
        rest = &rest[len..];
        match startup::parse_initial(Bytes::copy_from_slice(packet)) {
            Ok(InitialPacket::Startup(s)) => {
                assert_eq!(s.raw.len(), len);
                assert_eq!(s.major(), 3);
                // What the session reads from it for its span and its policy profile.
                let _ = (s.user(), s.database(), s.application_name());
                return;
            }
            Ok(InitialPacket::Cancel(key)) => {
                assert!(key.secret.len() <= 256);
                // The packet ddlgate would forward for it has the same length.
                assert_eq!(key.request_packet().len(), len);
                return;
            }
            Ok(InitialPacket::SslRequest | InitialPacket::GssEncRequest) => {}
            Err(_) => return,
        }
    }
});
