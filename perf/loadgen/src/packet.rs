//! Hand-built IPv4/UDP packets with correct checksums, what each session
//! sends through its tunnel.

use std::net::SocketAddrV4;

pub(crate) const IP_HDR: usize = 20;
pub(crate) const UDP_HDR: usize = 8;

fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Byte 8 of a data payload (after the sequence number): what the sink
/// does with the packet.
pub(crate) const ECHO: u8 = 0;
pub(crate) const DISCARD: u8 = 1;
/// Control payloads to the sink: "send me SIZE-byte payloads at RATE
/// Mbit/s (0: as fast as you can) for the next LEASE_MS", and "stop".
pub(crate) const SOURCE_REQUEST: &[u8; 8] = b"OCU-SRC\0";
pub(crate) const SOURCE_STOP: &[u8; 8] = b"OCU-STOP";
/// How long one source request keeps the sink sending.
pub(crate) const LEASE_MS: u64 = 300;

/// A source request payload: magic, Mbit/s (u32), payload size (u16),
/// and 1 for bursts (32 back to back) rather than evenly spaced packets.
pub(crate) fn source_request(rate_mbit: u32, size: u16, burst: bool) -> [u8; 15] {
    let mut p = [0u8; 15];
    p[..8].copy_from_slice(SOURCE_REQUEST);
    p[8..12].copy_from_slice(&rate_mbit.to_be_bytes());
    p[12..14].copy_from_slice(&size.to_be_bytes());
    p[14] = u8::from(burst);
    p
}

/// The rate, size and burst flag a source request asks for.
pub(crate) fn parse_source_request(p: &[u8]) -> Option<(u32, u16, bool)> {
    if p.len() < 14 || &p[..8] != SOURCE_REQUEST {
        return None;
    }
    Some((
        u32::from_be_bytes(p[8..12].try_into().ok()?),
        u16::from_be_bytes(p[12..14].try_into().ok()?),
        p.get(14) == Some(&1),
    ))
}

/// Writes an IPv4/UDP packet with `payload_len` bytes of payload (starting
/// with `seq`, then `mode` if there is room) into `out`, replacing its
/// contents.
pub(crate) fn build_udp(
    out: &mut Vec<u8>,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
    seq: u64,
    mode: u8,
) {
    let mut head = [0u8; 9];
    head[..8].copy_from_slice(&seq.to_be_bytes());
    head[8] = mode;
    let n = payload_len.min(head.len());
    build_udp_with(out, src, dst, payload_len, seq as u16, &head[..n]);
}

/// Writes an IPv4/UDP packet whose payload starts with `head` (zeros
/// after it, `payload_len` bytes in all) into `out`.
pub(crate) fn build_udp_with(
    out: &mut Vec<u8>,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
    ip_id: u16,
    head: &[u8],
) {
    let payload_len = payload_len.max(head.len());
    ipv4_header(out, IP_HDR + UDP_HDR + payload_len, ip_id, 17, src, dst);
    let u = &mut out[IP_HDR..];
    let ul = ((UDP_HDR + payload_len) as u16).to_be_bytes();
    u[..2].copy_from_slice(&src.port().to_be_bytes());
    u[2..4].copy_from_slice(&dst.port().to_be_bytes());
    u[4..6].copy_from_slice(&ul);
    u[UDP_HDR..UDP_HDR + head.len()].copy_from_slice(head);
    // Pseudo header: addresses, protocol, UDP length.
    let mut acc = sum16(0, &src.ip().octets());
    acc = sum16(acc, &dst.ip().octets());
    acc += 17 + u32::from(u16::from_be_bytes(ul));
    acc = sum16(acc, u);
    let mut c = fold(acc);
    if c == 0 {
        c = 0xffff; // 0 means "no checksum" in UDP
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
}

pub(crate) const TCP_HDR: usize = 20;

/// Makes `out` a zeroed packet of `total` bytes with an IPv4 header (DF,
/// TTL 64, protocol `proto`) and its checksum.
fn ipv4_header(
    out: &mut Vec<u8>,
    total: usize,
    ip_id: u16,
    proto: u8,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) {
    out.clear();
    out.resize(total, 0);
    let t = (total as u16).to_be_bytes();
    let id = ip_id.to_be_bytes();
    out[..IP_HDR].copy_from_slice(&[
        0x45, 0, t[0], t[1], id[0], id[1], 0x40, 0, 64, proto, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    out[12..16].copy_from_slice(&src.ip().octets());
    out[16..20].copy_from_slice(&dst.ip().octets());
    let c = fold(sum16(0, &out[..IP_HDR])).to_be_bytes();
    out[10..12].copy_from_slice(&c);
}

/// Writes one segment of a TCP stream (ACK, sequence number `seq`,
/// `payload_len` zero bytes) into `out`: what a bulk upload looks like to
/// the server, so its GRO into the TUN merges them as it would real ones.
pub(crate) fn build_tcp(
    out: &mut Vec<u8>,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
    seq: u32,
    ip_id: u16,
) {
    ipv4_header(out, IP_HDR + TCP_HDR + payload_len, ip_id, 6, src, dst);
    let tcp = &mut out[IP_HDR..];
    tcp[..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes()); // ack
    tcp[12] = 5 << 4; // data offset: 20 bytes, no options
    tcp[13] = 0x10; // ACK: mid-stream (a PSH would end a GRO merge)
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes()); // window
    let mut acc = sum16(0, &src.ip().octets());
    acc = sum16(acc, &dst.ip().octets());
    acc += 6 + (TCP_HDR + payload_len) as u32;
    acc = sum16(acc, tcp);
    tcp[16..18].copy_from_slice(&fold(acc).to_be_bytes());
}

/// True if `pkt` is an IPv4 packet whose header checksum is right.
#[cfg(test)]
pub(crate) fn ipv4_ok(pkt: &[u8]) -> bool {
    pkt.len() >= IP_HDR && pkt[0] == 0x45 && fold(sum16(0, &pkt[..IP_HDR])) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn checksums_verify() {
        let mut p = Vec::new();
        let src = SocketAddrV4::new(Ipv4Addr::new(192, 168, 100, 10), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 91, 1, 1), 9000);
        for len in [0, 1, 7, 8, 9, 1200] {
            build_udp(&mut p, src, dst, len, 0x0102_0304_0506_0708, DISCARD);
            assert_eq!(p.len(), 28 + len);
            assert!(ipv4_ok(&p));
            // UDP checksum over pseudo header + segment folds to zero.
            let mut acc = sum16(0, &p[12..20]);
            acc += 17 + (8 + len) as u32;
            assert_eq!(fold(sum16(acc, &p[20..])), 0, "len {len}");
        }
    }

    #[test]
    fn tcp_segments_verify_and_advance() {
        let mut p = Vec::new();
        let src = SocketAddrV4::new(Ipv4Addr::new(192, 168, 100, 10), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 91, 1, 1), 9000);
        build_tcp(&mut p, src, dst, 1200, 7, 1);
        assert_eq!(p.len(), 40 + 1200);
        assert!(ipv4_ok(&p));
        let mut acc = sum16(0, &p[12..20]);
        acc += 6 + 20 + 1200;
        assert_eq!(fold(sum16(acc, &p[20..])), 0);
        assert_eq!(u32::from_be_bytes(p[24..28].try_into().unwrap()), 7);
    }

    #[test]
    fn source_requests_round_trip() {
        let r = source_request(250, 1200, false);
        assert_eq!(parse_source_request(&r), Some((250, 1200, false)));
        let b = source_request(2, 1200, true);
        assert_eq!(parse_source_request(&b), Some((2, 1200, true)));
        // A request of an older loadgen (no flag) is evenly paced.
        assert_eq!(parse_source_request(&b[..14]), Some((2, 1200, false)));
        assert_eq!(parse_source_request(&r[..13]), None);
        assert_eq!(parse_source_request(SOURCE_STOP), None);
    }

    #[test]
    fn known_header_checksum() {
        // Classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
        let h = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0,
            0xc7,
        ];
        assert_eq!(fold(sum16(0, &h)), 0xb861);
    }
}
