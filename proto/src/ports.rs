//! `restrict-user-to-ports`: which protocols and destination ports a
//! client's packets may use, in ocserv's syntax — an allow list
//! `tcp(443), udp(53), icmp()`, or a deny list `!(tcp(22), tcp(25))` — and
//! the transport header view of a packet it needs. A port of 0 (`icmp()`)
//! means every port of that protocol.

/// The transport protocols ocserv's syntax names (IP protocol numbers).
const PROTOCOLS: [(&str, u8); 6] = [
    ("tcp", 6),
    ("udp", 17),
    ("sctp", 132),
    ("icmpv6", 58),
    ("icmp", 1),
    ("esp", 50),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// `!( ... )`: the listed ones are refused, everything else passes.
    pub deny: bool,
    /// (IP protocol, destination port or 0 for any).
    pub entries: Vec<(u8, u16)>,
}

impl PortRule {
    /// Parses ocserv's syntax.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (deny, list) = match t.strip_prefix('!') {
            Some(rest) => {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.trim_end().strip_suffix(')'));
                (
                    true,
                    inner.ok_or_else(|| {
                        format!("expected !(proto(port), ...) after '!', got {text:?}")
                    })?,
                )
            }
            None => (false, t),
        };
        let mut entries = Vec::new();
        for item in list.split(',').map(str::trim) {
            let bad = || {
                format!(
                    "expected proto(port) with tcp, udp, sctp, icmp, icmpv6 or esp, got {item:?}"
                )
            };
            let (name, rest) = item.split_once('(').ok_or_else(bad)?;
            let port = rest.strip_suffix(')').ok_or_else(bad)?.trim();
            let proto = PROTOCOLS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
                .ok_or_else(bad)?
                .1;
            let port = if port.is_empty() {
                0
            } else {
                port.parse().map_err(|_| bad())?
            };
            entries.push((proto, port));
        }
        if entries.is_empty() {
            return Err(format!("expected at least one proto(port), got {text:?}"));
        }
        Ok(Self { deny, entries })
    }

    /// Whether a packet of `proto` to `port` (`None`: it has none, or it
    /// is a later fragment) may pass.
    pub fn allows(&self, proto: u8, port: Option<u16>) -> bool {
        let listed = self
            .entries
            .iter()
            .any(|&(p, want)| p == proto && (want == 0 || Some(want) == port));
        listed != self.deny
    }
}

/// The transport protocol of an IP packet and its destination port (TCP,
/// UDP, SCTP; `None` for others and for fragments after the first).
/// IPv6 extension headers are walked, a bounded number of them.
pub fn transport(pkt: &[u8]) -> Option<(u8, Option<u16>)> {
    let (proto, l4, first_fragment) = match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let frag_offset = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
            (pkt[9], ihl, frag_offset == 0)
        }
        6 if pkt.len() >= 40 => {
            let (mut next, mut at, mut first) = (pkt[6], 40usize, true);
            for _ in 0..8 {
                match next {
                    // hop-by-hop, routing, destination options: length in 8-byte units
                    0 | 43 | 60 => {
                        let len = usize::from(*pkt.get(at + 1)?) * 8 + 8;
                        next = *pkt.get(at)?;
                        at += len;
                    }
                    44 => {
                        let off = u16::from_be_bytes([*pkt.get(at + 2)?, *pkt.get(at + 3)?]) >> 3;
                        first = off == 0;
                        next = *pkt.get(at)?;
                        at += 8;
                    }
                    _ => break,
                }
            }
            (next, at, first)
        }
        _ => return None,
    };
    let port = match proto {
        6 | 17 | 132 if first_fragment => pkt
            .get(l4 + 2..l4 + 4)
            .map(|p| u16::from_be_bytes([p[0], p[1]])),
        _ => None,
    };
    Some((proto, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = proto;
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn ocserv_syntax_allow_and_deny() {
        let r =
            PortRule::parse("tcp(443), tcp(80), udp(443), sctp(99), tcp(583), icmp(), icmpv6()")
                .unwrap();
        assert!(!r.deny && r.entries.len() == 7);
        assert!(r.allows(6, Some(443)) && r.allows(1, None) && r.allows(58, None));
        assert!(!r.allows(6, Some(22)) && !r.allows(17, Some(53)) && !r.allows(50, None));
        let d = PortRule::parse("!(tcp(443), tcp(80))").unwrap();
        assert!(
            d.deny && !d.allows(6, Some(80)) && d.allows(6, Some(22)) && d.allows(17, Some(80))
        );
        for bad in ["", "tcp", "tcp(x)", "gre(1)", "!tcp(1)", "tcp(1), "] {
            assert!(PortRule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transport_of_v4_v6_and_fragments() {
        assert_eq!(transport(&v4(6, 443)), Some((6, Some(443))));
        assert_eq!(transport(&v4(1, 0)), Some((1, None)));
        let mut later = v4(17, 53);
        later[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        assert_eq!(
            transport(&later),
            Some((17, None)),
            "a later fragment has no ports"
        );
        // IPv6 with a hop-by-hop header before UDP.
        let mut p = vec![0u8; 56];
        p[0] = 0x60;
        p[6] = 0;
        p[40] = 17;
        p[41] = 0;
        p[50..52].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(transport(&p), Some((17, Some(5353))));
        assert_eq!(transport(&[0x45; 10]), None);
    }
}
