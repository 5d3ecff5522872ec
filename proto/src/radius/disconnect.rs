//! Disconnect-Requests (RFC 5176) from a RADIUS server: which sessions
//! they name, and the ACK or NAK that answers them.

use std::net::Ipv4Addr;

use super::{attr, Builder, Code, Error, Packet};

/// RFC 5176 §3.5 Error-Cause.
pub const ERROR_CAUSE: u8 = 101;

/// Error-Cause values (RFC 5176 §3.5).
pub mod error_cause {
    /// Attributes that do not identify a session, or none at all.
    pub const MISSING_ATTRIBUTE: u32 = 402;
    /// A request this NAS does not take (CoA).
    pub const UNSUPPORTED_EXTENSION: u32 = 406;
    /// No session matches.
    pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;
}

/// The sessions a Disconnect-Request names: all of these that it carries
/// must match (RFC 5176 §3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub session_id: Option<String>,
    pub user: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
}

impl Target {
    /// What a verified Disconnect-Request names; `None` if it names no
    /// session at all.
    pub fn of(request: &Packet<'_>) -> Option<Self> {
        let text = |t| {
            request
                .get(t)
                .and_then(|a| a.text().ok())
                .map(str::to_owned)
        };
        let t = Self {
            session_id: text(attr::ACCT_SESSION_ID),
            user: text(attr::USER_NAME),
            framed_ip: request
                .get(attr::FRAMED_IP_ADDRESS)
                .and_then(|a| a.ipv4().ok()),
        };
        (t.session_id.is_some() || t.user.is_some() || t.framed_ip.is_some()).then_some(t)
    }
}

/// The answer to `request`: an ACK, or a NAK with its Error-Cause.
pub fn answer(request: &Packet<'_>, nak: Option<u32>, secret: &[u8]) -> Result<Vec<u8>, Error> {
    let (ack, nak_code) = match request.code() {
        Code::CoaRequest => (Code::CoaAck, Code::CoaNak),
        _ => (Code::DisconnectAck, Code::DisconnectNak),
    };
    match nak {
        None => Builder::reply(ack, request),
        Some(cause) => Builder::reply(nak_code, request).u32(ERROR_CAUSE, cause),
    }
    .message_authenticator(false)
    .encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sessions_and_answers() {
        let req = Builder::request(Code::DisconnectRequest, 3)
            .text(attr::ACCT_SESSION_ID, "abc")
            .user_name("alice")
            .message_authenticator(false)
            .encode(b"s")
            .unwrap();
        let p = Packet::decode(&req).unwrap();
        p.verify_request(b"s", false).unwrap();
        assert_eq!(
            Target::of(&p),
            Some(Target {
                session_id: Some("abc".into()),
                user: Some("alice".into()),
                framed_ip: None
            })
        );
        let ack = answer(&p, None, b"s").unwrap();
        let a = Packet::decode(&ack).unwrap();
        assert_eq!(a.code(), Code::DisconnectAck);
        a.verify_reply(&p.authenticator(), b"s", false).unwrap();
        let nak = answer(&p, Some(error_cause::SESSION_CONTEXT_NOT_FOUND), b"s").unwrap();
        let n = Packet::decode(&nak).unwrap();
        assert_eq!(n.code(), Code::DisconnectNak);
        assert_eq!(n.get(ERROR_CAUSE).unwrap().u32().unwrap(), 503);

        let empty = Builder::request(Code::DisconnectRequest, 4)
            .message_authenticator(false)
            .encode(b"s")
            .unwrap();
        assert_eq!(Target::of(&Packet::decode(&empty).unwrap()), None);
    }
}
