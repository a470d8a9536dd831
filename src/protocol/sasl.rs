//! The two SASL messages ddlgate looks at, and only so that SCRAM channel binding cannot break
//! a TLS-terminated session (see `tls::ChannelBinding`):
//!
//! - AuthenticationSASL (`R`, auth type 10, a list of NUL-terminated mechanism names ended by
//!   an empty one): `SCRAM-SHA-256-PLUS` is removed when the binding cannot survive;
//! - SASLInitialResponse (`p`: mechanism name, Int32 length, data): only the gs2 channel-binding
//!   flag, the first byte of the data, is read.
//!
//! Neither message carries a secret ddlgate keeps or logs; every other authentication message
//! passes undecoded.

use bytes::{Bytes, BytesMut};

use super::{backend, framing, read_cstr};

/// `AuthenticationSASL`'s auth type.
pub const AUTH_SASL: u32 = 10;
/// The channel-binding variant of SCRAM.
pub const SCRAM_SHA_256_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// The gs2 header's channel-binding flag (RFC 5802 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gs2Flag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but thinks the server does not.
    ClientSupportsBinding,
    /// `p=…`: the client uses channel binding.
    Binding,
}

/// The mechanism names of an AuthenticationSASL body, or `None` for any other Authentication
/// message (or a malformed one, which is relayed untouched for the client to judge).
pub fn sasl_mechanisms(body: &[u8]) -> Option<Vec<&[u8]>> {
    let (kind, mut rest) = body.split_first_chunk::<4>()?;
    if u32::from_be_bytes(*kind) != AUTH_SASL {
        return None;
    }
    let mut names = Vec::new();
    loop {
        let (name, after) = read_cstr(rest)?;
        if name.is_empty() {
            return after.is_empty().then_some(names);
        }
        names.push(name);
        rest = after;
    }
}

/// The complete `R` frame to send instead of an AuthenticationSASL body that offers
/// SCRAM-SHA-256-PLUS, with that mechanism removed; `None` when nothing needs to change (or
/// nothing would be left to offer).
pub fn without_scram_plus(body: &[u8]) -> Option<Bytes> {
    let names = sasl_mechanisms(body)?;
    if !names.contains(&SCRAM_SHA_256_PLUS) || names.len() < 2 {
        return None;
    }
    let mut new_body = AUTH_SASL.to_be_bytes().to_vec();
    for name in names.into_iter().filter(|n| *n != SCRAM_SHA_256_PLUS) {
        new_body.extend_from_slice(name);
        new_body.push(0);
    }
    new_body.push(0);
    let mut out = BytesMut::with_capacity(framing::HEADER_LEN + new_body.len());
    framing::put_message(&mut out, backend::AUTHENTICATION, &new_body);
    Some(out.freeze())
}

/// The gs2 flag of a SASLInitialResponse body; `None` if the body is not one (a cleartext or
/// MD5 password message has no Int32 length after its first string).
pub fn initial_response_gs2_flag(body: &[u8]) -> Option<Gs2Flag> {
    let (_mechanism, rest) = read_cstr(body)?;
    let (len, data) = rest.split_first_chunk::<4>()?;
    if i32::from_be_bytes(*len) < 1 {
        return None;
    }
    match data.first()? {
        b'n' => Some(Gs2Flag::NotSupported),
        b'y' => Some(Gs2Flag::ClientSupportsBinding),
        b'p' => Some(Gs2Flag::Binding),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_body(names: &[&str]) -> Vec<u8> {
        let mut b = AUTH_SASL.to_be_bytes().to_vec();
        for n in names {
            b.extend_from_slice(n.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn strips_plus_and_keeps_the_rest_in_order() {
        let body = sasl_body(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let frame = without_scram_plus(&body).expect("rewritten");
        let framing::Frame::Header { tag, total } = framing::scan(&frame, 1 << 20).expect("frame")
        else {
            panic!("incomplete")
        };
        assert_eq!(tag, backend::AUTHENTICATION);
        assert_eq!(total, frame.len());
        assert_eq!(
            framing::body(&frame),
            sasl_body(&["SCRAM-SHA-256"]).as_slice()
        );
        assert_eq!(
            sasl_mechanisms(framing::body(&frame)),
            Some(vec![b"SCRAM-SHA-256".as_slice()])
        );
    }

    #[test]
    fn leaves_everything_else_alone() {
        assert_eq!(without_scram_plus(&sasl_body(&["SCRAM-SHA-256"])), None);
        // Nothing would be left: the client should see what the server said.
        assert_eq!(
            without_scram_plus(&sasl_body(&["SCRAM-SHA-256-PLUS"])),
            None
        );
        // AuthenticationOk, MD5 (with salt), SASLContinue.
        assert_eq!(without_scram_plus(&0u32.to_be_bytes()), None);
        assert_eq!(without_scram_plus(b"\0\0\0\x05salt"), None);
        assert_eq!(without_scram_plus(b"\0\0\0\x0br=abc"), None);
        // Malformed lists: no terminator, trailing garbage, truncated type.
        let mut unterminated = AUTH_SASL.to_be_bytes().to_vec();
        unterminated.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256");
        assert_eq!(without_scram_plus(&unterminated), None);
        let mut trailing = sasl_body(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        trailing.push(b'x');
        assert_eq!(without_scram_plus(&trailing), None);
        assert_eq!(without_scram_plus(b"\0\0"), None);
    }

    fn initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut b = mechanism.as_bytes().to_vec();
        b.push(0);
        b.extend_from_slice(&(data.len() as i32).to_be_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_only_the_gs2_flag() {
        assert_eq!(
            initial_response_gs2_flag(&initial("SCRAM-SHA-256", b"n,,n=,r=x")),
            Some(Gs2Flag::NotSupported)
        );
        assert_eq!(
            initial_response_gs2_flag(&initial("SCRAM-SHA-256", b"y,,n=,r=x")),
            Some(Gs2Flag::ClientSupportsBinding)
        );
        assert_eq!(
            initial_response_gs2_flag(&initial(
                "SCRAM-SHA-256-PLUS",
                b"p=tls-server-end-point,,n=,r=x"
            )),
            Some(Gs2Flag::Binding)
        );
        // A cleartext password message, an empty response, garbage.
        assert_eq!(initial_response_gs2_flag(b"secret\0"), None);
        let mut none = b"SCRAM-SHA-256\0".to_vec();
        none.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(initial_response_gs2_flag(&none), None);
        assert_eq!(initial_response_gs2_flag(b""), None);
    }
}
