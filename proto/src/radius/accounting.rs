//! Accounting-Requests (RFC 2866, with RFC 2869's Gigawords) as ocserv
//! sends them: Start at a session's first tunnel, Interim-Update at the
//! interval, Stop at its end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{attr, Builder, Error};

/// What one Accounting-Request reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// [`attr::acct_status`].
    pub status: u32,
    pub session_id: String,
    pub user: String,
    /// The client's address (Calling-Station-Id).
    pub client: Option<IpAddr>,
    /// NAS-IP-Address or NAS-IPv6-Address.
    pub nas_ip: Option<IpAddr>,
    pub nas_identifier: String,
    pub framed_ip: Option<Ipv4Addr>,
    pub framed_ipv6: Option<Ipv6Addr>,
    /// Class attributes of the Access-Accept, echoed (RFC 2865 §5.25).
    pub class: Vec<Vec<u8>>,
    /// Interim and Stop: the traffic so far and the session's age.
    pub counters: Option<Counters>,
    /// Stop: [`attr::terminate_cause`].
    pub cause: Option<u32>,
    /// Seconds since the Unix epoch of the event (Event-Timestamp).
    pub timestamp: u32,
}

/// A session's traffic: from the client (input) and to it (output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
    pub session_time: u32,
}

/// The Accounting-Request for `r`, sent `delay` seconds after the event.
pub fn request(r: &Record, delay: u32, secret: &[u8], identifier: u8) -> Result<Vec<u8>, Error> {
    let mut b = Builder::accounting_request(identifier)
        .u32(attr::ACCT_STATUS_TYPE, r.status)
        .text(attr::ACCT_SESSION_ID, &r.session_id)
        .user_name(&r.user)
        .u32(attr::SERVICE_TYPE, attr::service_type::FRAMED)
        .u32(attr::FRAMED_PROTOCOL, attr::framed_protocol::PPP)
        .u32(attr::ACCT_AUTHENTIC, 1)
        .u32(attr::NAS_PORT_TYPE, attr::nas_port_type::VIRTUAL)
        .u32(attr::EVENT_TIMESTAMP, r.timestamp)
        .u32(attr::ACCT_DELAY_TIME, delay);
    match r.nas_ip {
        Some(IpAddr::V4(a)) => b = b.ipv4(attr::NAS_IP_ADDRESS, a),
        Some(IpAddr::V6(a)) => b = b.ipv6(attr::NAS_IPV6_ADDRESS, a),
        None => {}
    }
    if !r.nas_identifier.is_empty() {
        b = b.text(attr::NAS_IDENTIFIER, &r.nas_identifier);
    }
    if let Some(ip) = r.client {
        b = b.text(attr::CALLING_STATION_ID, &ip.to_string());
    }
    if let Some(ip) = r.framed_ip {
        b = b.ipv4(attr::FRAMED_IP_ADDRESS, ip);
    }
    if let Some(ip) = r.framed_ipv6 {
        b = b.ipv6(attr::FRAMED_IPV6_ADDRESS, ip);
    }
    for c in &r.class {
        b = b.attr(attr::CLASS, c);
    }
    if let Some(c) = r.counters {
        let low = |v: u64| (v & 0xffff_ffff) as u32;
        let high = |v: u64| (v >> 32) as u32;
        b = b
            .u32(attr::ACCT_SESSION_TIME, c.session_time)
            .u32(attr::ACCT_INPUT_OCTETS, low(c.input_octets))
            .u32(attr::ACCT_INPUT_GIGAWORDS, high(c.input_octets))
            .u32(attr::ACCT_OUTPUT_OCTETS, low(c.output_octets))
            .u32(attr::ACCT_OUTPUT_GIGAWORDS, high(c.output_octets))
            .u32(attr::ACCT_INPUT_PACKETS, low(c.input_packets))
            .u32(attr::ACCT_OUTPUT_PACKETS, low(c.output_packets));
    }
    if let Some(cause) = r.cause {
        b = b.u32(attr::ACCT_TERMINATE_CAUSE, cause);
    }
    // Accounting-Requests are signed by their authenticator.
    b.message_authenticator(false).encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::{Code, Packet};

    #[test]
    fn a_stop_carries_gigawords_and_verifies() {
        let r = Record {
            status: attr::acct_status::STOP,
            session_id: "abc".into(),
            user: "alice".into(),
            framed_ip: Some("192.168.100.77".parse().unwrap()),
            class: vec![b"OU=staff".to_vec()],
            counters: Some(Counters {
                input_octets: (3 << 32) + 5,
                output_octets: 7,
                input_packets: 2,
                output_packets: 1,
                session_time: 60,
            }),
            cause: Some(attr::terminate_cause::USER_REQUEST),
            ..Default::default()
        };
        let bytes = request(&r, 2, b"s", 4).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code(), Code::AccountingRequest);
        p.verify_request(b"s", false).unwrap();
        let n = |t| p.get(t).unwrap().u32().unwrap();
        assert_eq!(n(attr::ACCT_STATUS_TYPE), attr::acct_status::STOP);
        assert_eq!(
            (n(attr::ACCT_INPUT_OCTETS), n(attr::ACCT_INPUT_GIGAWORDS)),
            (5, 3)
        );
        assert_eq!(
            (n(attr::ACCT_OUTPUT_OCTETS), n(attr::ACCT_OUTPUT_GIGAWORDS)),
            (7, 0)
        );
        assert_eq!(
            (n(attr::ACCT_SESSION_TIME), n(attr::ACCT_DELAY_TIME)),
            (60, 2)
        );
        assert_eq!(n(attr::ACCT_TERMINATE_CAUSE), 1);
        assert_eq!(p.get(attr::CLASS).unwrap().value, b"OU=staff");
        assert!(p.get(attr::MESSAGE_AUTHENTICATOR).is_none());
    }
}
