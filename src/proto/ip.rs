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

/// IPv4 destination, the key the TUN dispatch looks sessions up by.
pub fn ipv4_destination(pkt: &[u8]) -> Option<Ipv4Addr> {
    match addresses(pkt)? {
        (_, IpAddr::V4(d)) => Some(d),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v4_and_v6_and_rejects_short() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 2]);
        v4[16..20].copy_from_slice(&[192, 168, 100, 7]);
        assert_eq!(ipv4_destination(&v4), Some(Ipv4Addr::new(192, 168, 100, 7)));
        assert_eq!(addresses(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        let (_, d) = addresses(&v6).unwrap();
        assert_eq!(d, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(ipv4_destination(&v6), None);
        assert_eq!(addresses(&[]), None);
        assert_eq!(addresses(&[0x15; 40]), None);
    }
}
