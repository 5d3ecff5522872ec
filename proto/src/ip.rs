//! Checked views of the IP header fields the data path needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of an IPv4 or IPv6 packet, or `None` if the bytes
/// are too short or not IP.
pub fn addresses(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            Some((src.into(), dst.into()))
        }
        6 if pkt.len() >= 40 => {
            let src: [u8; 16] = pkt[8..24].try_into().ok()?;
            let dst: [u8; 16] = pkt[24..40].try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}

/// What the TUN dispatch looks a packet up by: the lease an IPv4
/// destination or an IPv6 one inside `v6_network` names (its low 32 bits),
/// else the IPv6 destination itself (a network behind a client).
pub fn route_key(pkt: &[u8], v6_network: Option<ipnet::Ipv6Net>) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => Some(Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]).into()),
        6 if pkt.len() >= 40 => {
            let dst: [u8; 16] = pkt[24..40].try_into().ok()?;
            let dst = Ipv6Addr::from(dst);
            Some(match v6_network {
                Some(net) if net.contains(&dst) => {
                    Ipv4Addr::new(pkt[36], pkt[37], pkt[38], pkt[39]).into()
                }
                _ => dst.into(),
            })
        }
        _ => None,
    }
}

/// The addresses a client may send from: its leases and the networks
/// routed behind it (iroutes). Anything else it sends is spoofed.
#[derive(Clone, Copy, Debug)]
pub struct ClientSources<'a> {
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
    pub iroutes: &'a [ipnet::IpNet],
}

impl ClientSources<'_> {
    /// The destination of `pkt` if it is an IP packet from one of these
    /// addresses; `None`: drop it.
    pub fn destination(&self, pkt: &[u8]) -> Option<IpAddr> {
        let (src, dst) = addresses(pkt)?;
        let lease = match src {
            IpAddr::V4(a) => a == self.v4,
            IpAddr::V6(a) => Some(a) == self.v6,
        };
        (lease || self.iroutes.iter().any(|n| n.contains(&src))).then_some(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_sends_only_from_its_leases_and_iroutes() {
        let iroutes: [ipnet::IpNet; 1] = ["10.20.0.0/16".parse().unwrap()];
        let own = ClientSources {
            v4: Ipv4Addr::new(192, 168, 100, 7),
            v6: Some("fd00:100::c0a8:6407".parse().unwrap()),
            iroutes: &iroutes,
        };
        let v4 = |src: [u8; 4]| {
            let mut p = [0u8; 20];
            p[0] = 0x45;
            p[12..16].copy_from_slice(&src);
            p[16..20].copy_from_slice(&[10, 0, 0, 1]);
            p
        };
        let dst = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(own.destination(&v4([192, 168, 100, 7])), dst, "its lease");
        assert_eq!(own.destination(&v4([10, 20, 3, 4])), dst, "behind it");
        assert_eq!(
            own.destination(&v4([192, 168, 100, 8])),
            None,
            "another client's"
        );
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[8..24].copy_from_slice(&own.v6.unwrap().octets());
        assert!(own.destination(&v6).is_some(), "its IPv6 lease");
        v6[23] ^= 1;
        assert_eq!(own.destination(&v6), None);
        let no_v6 = ClientSources { v6: None, ..own };
        assert_eq!(no_v6.destination(&v6), None);
        assert_eq!(own.destination(&[0x45; 10]), None, "not a whole header");
    }

    #[test]
    fn leases_by_v4_or_the_low_bits_of_v6_in_the_pool() {
        let net: ipnet::Ipv6Net = "fd00:100::/64".parse().unwrap();
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24..40].copy_from_slice(&"fd00:100::c0a8:6405".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            route_key(&v6, Some(net)),
            Some(Ipv4Addr::new(192, 168, 100, 5).into())
        );
        // Outside the pool: the address itself, for an iroute to claim.
        let outside: Ipv6Addr = "fd00:300::1".parse().unwrap();
        v6[24..40].copy_from_slice(&outside.octets());
        assert_eq!(route_key(&v6, Some(net)), Some(outside.into()));
        assert_eq!(route_key(&v6[..39], Some(net)), None, "too short");
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(
            route_key(&v4, Some(net)),
            Some(Ipv4Addr::new(10, 1, 2, 3).into())
        );
        assert_eq!(route_key(&v4[..19], None), None);
    }

    #[test]
    fn reads_v4_and_v6_and_rejects_short() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 2]);
        v4[16..20].copy_from_slice(&[192, 168, 100, 7]);
        assert_eq!(
            route_key(&v4, None),
            Some(Ipv4Addr::new(192, 168, 100, 7).into())
        );
        assert_eq!(addresses(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        let (_, d) = addresses(&v6).unwrap();
        assert_eq!(d, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            route_key(&v6, None),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "no pool: the address itself"
        );
        assert_eq!(addresses(&[]), None);
        assert_eq!(addresses(&[0x15; 40]), None);
    }
}
