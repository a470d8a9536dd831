//! The untagged packets a client may open a connection with: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage. They are told apart by the 4-byte code after the length.
//!
//! Sizes are bounded like PostgreSQL's own `MAX_STARTUP_PACKET_LENGTH` (10,000 bytes) before any
//! byte of the body is read.

use bytes::Bytes;

use super::read_cstr;

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// `1234 << 16 | 5679`.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// `1234 << 16 | 5680`.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// `1234 << 16 | 5678`.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// The key a CancelRequest names: the backend pid and its secret. Protocol 3.2 (PostgreSQL 18)
/// allows secrets up to 256 bytes, so the secret is kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CancelKey {
    pub pid: u32,
    pub secret: Bytes,
}

impl CancelKey {
    /// Builds the CancelRequest packet for this key.
    pub fn request_packet(&self) -> Vec<u8> {
        let len = 12 + self.secret.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        out.extend_from_slice(&self.secret);
        out
    }

    /// Decodes a BackendKeyData body (pid + secret).
    pub fn from_backend_key_data(body: &[u8]) -> Option<CancelKey> {
        if body.len() < 8 || body.len() > 4 + 256 {
            return None;
        }
        let pid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        Some(CancelKey {
            pid,
            secret: Bytes::copy_from_slice(&body[4..]),
        })
    }
}

/// A decoded initial packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPacket {
    SslRequest,
    GssEncRequest,
    Cancel(CancelKey),
    Startup(Startup),
}

/// A StartupMessage: the protocol version, the parameters (user, database, options, …) and the
/// original bytes, which are what ddlgate forwards (re-encoding would reorder parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    pub protocol: u32,
    pub params: Vec<(String, String)>,
    pub raw: Bytes,
}

impl Startup {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn user(&self) -> &str {
        self.param("user").unwrap_or("")
    }

    /// PostgreSQL defaults the database to the user name.
    pub fn database(&self) -> &str {
        self.param("database").unwrap_or_else(|| self.user())
    }

    pub fn application_name(&self) -> &str {
        self.param("application_name").unwrap_or("")
    }

    pub fn major(&self) -> u32 {
        self.protocol >> 16
    }
}

/// Reads the declared length of an initial packet from its first 4 bytes and validates it.
pub fn packet_len(header: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(header) as usize;
    if len < 8 {
        return Err(format!("invalid length of startup packet: {len}"));
    }
    if len > MAX_STARTUP_PACKET {
        return Err(format!(
            "invalid length of startup packet: {len} (limit {MAX_STARTUP_PACKET})"
        ));
    }
    Ok(len)
}

/// Decodes a complete initial packet (including its 4-byte length).
pub fn parse_initial(packet: Bytes) -> Result<InitialPacket, String> {
    if packet.len() < 8 {
        return Err("startup packet too short".to_owned());
    }
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    match code {
        SSL_REQUEST_CODE => Ok(InitialPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(InitialPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            // pid (4) + secret (4 bytes before protocol 3.2, up to 256 after).
            let key = CancelKey::from_backend_key_data(&packet[8..])
                .ok_or("invalid cancel request packet")?;
            Ok(InitialPacket::Cancel(key))
        }
        protocol => {
            if protocol >> 16 != 3 {
                return Err(format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0 to 3.2",
                    protocol >> 16,
                    protocol & 0xffff
                ));
            }
            let params = parse_params(&packet[8..])?;
            Ok(InitialPacket::Startup(Startup {
                protocol,
                params,
                raw: packet,
            }))
        }
    }
}

/// Parameters are name/value C-string pairs ended by an empty name.
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    loop {
        let (name, rest) = read_cstr(body)
            .ok_or("invalid startup packet layout: expected terminator as last byte")?;
        if name.is_empty() {
            return Ok(params);
        }
        let (value, rest) =
            read_cstr(rest).ok_or("invalid startup packet layout: missing value")?;
        params.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        body = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> Bytes {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        Bytes::from(packet)
    }

    #[test]
    fn decodes_startup_with_params_and_keeps_raw_bytes() {
        let raw = startup(&[
            ("user", "alice"),
            ("database", "app"),
            ("application_name", "psql"),
        ]);
        let InitialPacket::Startup(s) = parse_initial(raw.clone()).expect("parses") else {
            panic!("not startup")
        };
        assert_eq!(s.user(), "alice");
        assert_eq!(s.database(), "app");
        assert_eq!(s.application_name(), "psql");
        assert_eq!(s.major(), 3);
        assert_eq!(s.raw, raw);
    }

    #[test]
    fn database_defaults_to_user() {
        let InitialPacket::Startup(s) = parse_initial(startup(&[("user", "bob")])).expect("parses")
        else {
            panic!()
        };
        assert_eq!(s.database(), "bob");
    }

    #[test]
    fn recognises_ssl_gss_and_cancel() {
        let mk = |code: u32, extra: &[u8]| {
            let mut p = ((8 + extra.len()) as u32).to_be_bytes().to_vec();
            p.extend_from_slice(&code.to_be_bytes());
            p.extend_from_slice(extra);
            Bytes::from(p)
        };
        assert_eq!(
            parse_initial(mk(SSL_REQUEST_CODE, b"")),
            Ok(InitialPacket::SslRequest)
        );
        assert_eq!(
            parse_initial(mk(GSSENC_REQUEST_CODE, b"")),
            Ok(InitialPacket::GssEncRequest)
        );
        let key = CancelKey {
            pid: 42,
            secret: Bytes::from_static(b"\x01\x02\x03\x04"),
        };
        assert_eq!(
            parse_initial(Bytes::from(key.request_packet())),
            Ok(InitialPacket::Cancel(key))
        );
        assert!(parse_initial(mk(CANCEL_REQUEST_CODE, b"\0\0")).is_err());
    }

    #[test]
    fn rejects_bad_packets() {
        assert!(packet_len(7u32.to_be_bytes()).is_err());
        assert!(packet_len(10_001u32.to_be_bytes()).is_err());
        assert_eq!(packet_len(10_000u32.to_be_bytes()), Ok(10_000));
        // Protocol 2.0 is long gone.
        let mut p = 8u32.to_be_bytes().to_vec();
        p.extend_from_slice(&(2u32 << 16).to_be_bytes());
        assert!(parse_initial(Bytes::from(p)).is_err());
        // Missing terminator.
        let mut p = 12u32.to_be_bytes().to_vec();
        p.extend_from_slice(&196_608u32.to_be_bytes());
        p.extend_from_slice(b"user");
        assert!(parse_initial(Bytes::from(p)).is_err());
    }
}
