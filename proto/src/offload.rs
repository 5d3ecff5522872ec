//! TUN offloads (IFF_VNET_HDR): every packet read from or written to the
//! TUN queue starts with a `virtio_net_hdr`. With TSO/USO on, the kernel
//! hands us one up-to-64 KB TCP or UDP "super-packet" instead of dozens of
//! MTU-sized ones; it is cut back into MTU-sized packets here, each with
//! its own IP and L4 header and checksum, before it goes to a client.
//!
//! Field meanings follow linux/virtio_net.h; the TUN device uses the
//! host's byte order unless told otherwise (TUNSETVNETLE/BE, never set).

/// sizeof(struct virtio_net_hdr): what TUNSETVNETHDRSZ is set to.
pub const VNET_HDR_LEN: usize = 10;
/// Largest packet a TSO/USO read can carry (the IP length field's limit).
pub const MAX_SUPER_PACKET: usize = 65_535;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The header of one TUN read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Splits a TUN read into its header and packet.
    pub fn split(read: &mut [u8]) -> Option<(Self, &mut [u8])> {
        if read.len() < VNET_HDR_LEN {
            return None;
        }
        let (h, pkt) = read.split_at_mut(VNET_HDR_LEN);
        let u16_at = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        let hdr = Self {
            flags: h[0],
            gso_type: h[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        };
        Some((hdr, pkt))
    }

    pub fn encode(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// Why a TUN read could not be turned into packets (it is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// A GSO type we never enabled (UFO) or do not know.
    UnknownGso(u8),
    /// Headers or offsets that do not fit the packet.
    Malformed,
    /// A segment larger than the caller's buffer.
    SegmentTooLarge,
}

impl std::fmt::Display for OffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownGso(t) => write!(f, "unknown GSO type {t}"),
            Self::Malformed => f.write_str("malformed offload packet"),
            Self::SegmentTooLarge => f.write_str("GSO segment larger than the buffer"),
        }
    }
}

/// Calls `f` with each packet a TUN read stands for: the packet itself
/// (its checksum completed if the kernel left it partial) or, for a
/// super-packet, each segment built in turn in `scratch`.
pub fn for_each_segment(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    scratch: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_checksum(
                    pkt,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )?;
            }
            f(pkt);
            Ok(())
        }
        t @ (GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4) => segment(hdr, t, pkt, scratch, f),
        other => Err(OffloadError::UnknownGso(other)),
    }
}

/// Finishes a partial checksum: the field holds the pseudo-header sum, the
/// kernel left the rest from `start` to the end for us.
fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start + offset;
    if at + 2 > pkt.len() {
        return Err(OffloadError::Malformed);
    }
    let mut c = !fold(sum(&pkt[start..], 0));
    if c == 0 && offset == 6 {
        // UDP: zero means "no checksum".
        c = 0xffff;
    }
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Where the headers of a super-packet are.
struct Layout {
    v4: bool,
    /// Start of the TCP/UDP header.
    l4: usize,
    /// Start of the payload (end of all headers).
    payload: usize,
}

fn layout(gso: u8, hdr: &VnetHdr, pkt: &[u8]) -> Result<Layout, OffloadError> {
    let version = pkt.first().ok_or(OffloadError::Malformed)? >> 4;
    let v4 = match (gso, version) {
        (GSO_TCPV4, 4) | (GSO_UDP_L4, 4) => true,
        (GSO_TCPV6, 6) | (GSO_UDP_L4, 6) => false,
        _ => return Err(OffloadError::Malformed),
    };
    let l4 = if v4 {
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let proto = if gso == GSO_UDP_L4 {
            PROTO_UDP
        } else {
            PROTO_TCP
        };
        if ihl < 20 || pkt.len() < ihl || pkt[9] != proto {
            return Err(OffloadError::Malformed);
        }
        ihl
    } else {
        // IPv6 extension headers: the kernel's csum_start names the L4 header.
        let start = if hdr.flags & F_NEEDS_CSUM != 0 {
            usize::from(hdr.csum_start)
        } else {
            40
        };
        if start < 40 {
            return Err(OffloadError::Malformed);
        }
        start
    };
    let l4_len = if gso == GSO_UDP_L4 {
        8
    } else {
        let doff = usize::from(*pkt.get(l4 + 12).ok_or(OffloadError::Malformed)? >> 4) * 4;
        if doff < 20 {
            return Err(OffloadError::Malformed);
        }
        doff
    };
    let payload = l4 + l4_len;
    if payload > pkt.len() {
        return Err(OffloadError::Malformed);
    }
    Ok(Layout { v4, l4, payload })
}

fn segment(
    hdr: &VnetHdr,
    gso: u8,
    pkt: &[u8],
    scratch: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    let lay = layout(gso, hdr, pkt)?;
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::Malformed);
    }
    if lay.payload + mss.min(pkt.len() - lay.payload) > scratch.len() {
        return Err(OffloadError::SegmentTooLarge);
    }
    let tcp = gso != GSO_UDP_L4;
    let headers = &pkt[..lay.payload];
    let ip_id = if lay.v4 {
        u16::from_be_bytes([pkt[4], pkt[5]])
    } else {
        0
    };
    let seq = if tcp {
        u32::from_be_bytes(pkt[lay.l4 + 4..lay.l4 + 8].try_into().unwrap_or_default())
    } else {
        0
    };
    let chunks = pkt[lay.payload..].chunks(mss);
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.enumerate() {
        let len = lay.payload + chunk.len();
        let out = &mut scratch[..len];
        out[..lay.payload].copy_from_slice(headers);
        out[lay.payload..].copy_from_slice(chunk);
        if lay.v4 {
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            out[4..6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
            out[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&out[..lay.l4], 0));
            out[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
        let l4_len = len - lay.l4;
        let (proto, csum_at) = if tcp {
            let s = seq.wrapping_add((i * mss) as u32);
            out[lay.l4 + 4..lay.l4 + 8].copy_from_slice(&s.to_be_bytes());
            let flags = &mut out[lay.l4 + 13];
            if i != last {
                *flags &= !(0x01 | 0x08); // FIN, PSH: last segment only
            }
            if i != 0 {
                *flags &= !0x80; // CWR: first segment only
            }
            (PROTO_TCP, lay.l4 + 16)
        } else {
            out[lay.l4 + 4..lay.l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (PROTO_UDP, lay.l4 + 6)
        };
        out[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let pseudo = pseudo_header_sum(out, lay.v4, proto, l4_len);
        let mut c = !fold(sum(&out[lay.l4..], pseudo));
        if c == 0 && !tcp {
            c = 0xffff;
        }
        out[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        f(out);
    }
    Ok(())
}

/// Most packets merged into one TUN write.
pub const MAX_GRO_SEGMENTS: usize = 64;

/// Packets from clients grown into one super-packet for one TUN write
/// (the receive-side twin of [`for_each_segment`]): consecutive TCP
/// segments of one flow, or same-sized UDP datagrams of one flow, as the
/// kernel's own GRO would merge them. The first packet keeps its headers;
/// the others contribute their payload only.
#[derive(Clone, Copy, Debug)]
pub struct Gro {
    tcp: bool,
    v4: bool,
    l4: usize,
    /// Header length: where the payload starts in every packet.
    payload: usize,
    mss: usize,
    next_seq: u32,
    /// IP length of the super-packet so far.
    len: usize,
    count: usize,
    /// Nothing more may follow (a short or PSH segment came last).
    closed: bool,
    psh: bool,
}

/// Where a packet's headers end, if it is a plain TCP or UDP packet that
/// GRO may merge (no IP options, extension headers or fragments).
fn flow(pkt: &[u8]) -> Option<(bool, bool, usize, usize)> {
    let (v4, l4, proto) = match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let whole = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) == pkt.len();
            let fragment = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0;
            if pkt[0] != 0x45 || !whole || fragment {
                return None;
            }
            (true, 20, pkt[9])
        }
        6 if pkt.len() >= 40 => {
            if usize::from(u16::from_be_bytes([pkt[4], pkt[5]])) + 40 != pkt.len() {
                return None;
            }
            (false, 40, pkt[6])
        }
        _ => return None,
    };
    let (tcp, payload) = match proto {
        PROTO_TCP => (true, l4 + usize::from(*pkt.get(l4 + 12)? >> 4) * 4),
        PROTO_UDP => {
            let udp_len = usize::from(u16::from_be_bytes([*pkt.get(l4 + 4)?, *pkt.get(l4 + 5)?]));
            if udp_len != pkt.len() - l4 {
                return None;
            }
            (false, l4 + 8)
        }
        _ => return None,
    };
    if (tcp && payload < l4 + 20) || payload >= pkt.len() {
        return None;
    }
    Some((tcp, v4, l4, payload))
}

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

impl Gro {
    /// Starts a super-packet with `pkt` if one could grow from it (TCP
    /// segments carrying data with only ACK set; UDP if `udp`).
    pub fn start(pkt: &[u8], udp: bool) -> Option<Self> {
        let (tcp, v4, l4, payload) = flow(pkt)?;
        if (tcp && pkt[l4 + 13] != TCP_ACK) || (!tcp && !udp) {
            return None;
        }
        let mss = pkt.len() - payload;
        let seq = if tcp {
            u32::from_be_bytes([pkt[l4 + 4], pkt[l4 + 5], pkt[l4 + 6], pkt[l4 + 7]])
        } else {
            0
        };
        Some(Self {
            tcp,
            v4,
            l4,
            payload,
            mss,
            next_seq: seq.wrapping_add(mss as u32),
            len: pkt.len(),
            count: 1,
            closed: false,
            psh: false,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// If `pkt` continues the super-packet that `first` started, counts
    /// it in and returns where its payload starts.
    pub fn extend(&mut self, first: &[u8], pkt: &[u8]) -> Option<usize> {
        if self.closed || self.count >= MAX_GRO_SEGMENTS || pkt.len() <= self.payload {
            return None;
        }
        let data = pkt.len() - self.payload;
        if data > self.mss
            || self.len + data > MAX_SUPER_PACKET
            || flow(pkt)? != (self.tcp, self.v4, self.l4, self.payload)
        {
            return None;
        }
        // Same IP header but for length, ID and checksum.
        let same_ip = if self.v4 {
            first[..2] == pkt[..2] && first[6..10] == pkt[6..10] && first[12..20] == pkt[12..20]
        } else {
            first[..4] == pkt[..4] && first[6..40] == pkt[6..40]
        };
        let l4 = self.l4;
        if !same_ip || first[l4..l4 + 4] != pkt[l4..l4 + 4] {
            return None;
        }
        if self.tcp {
            let flags = pkt[l4 + 13];
            let seq = u32::from_be_bytes([pkt[l4 + 4], pkt[l4 + 5], pkt[l4 + 6], pkt[l4 + 7]]);
            let same = first[l4 + 8..l4 + 13] == pkt[l4 + 8..l4 + 13] // ack, header length
                && first[l4 + 14..l4 + 16] == pkt[l4 + 14..l4 + 16] // window
                && first[l4 + 20..self.payload] == pkt[l4 + 20..self.payload]; // options
            if !same || seq != self.next_seq || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
                return None;
            }
            self.next_seq = seq.wrapping_add(data as u32);
            self.psh = flags & TCP_PSH != 0;
            self.closed = self.psh;
        }
        self.len += data;
        self.count += 1;
        self.closed |= data < self.mss;
        Some(self.payload)
    }

    /// Writes the virtio_net_hdr and turns the first packet's headers into
    /// the super-packet's; a lone packet gets an all-zero header and stays
    /// as it was.
    pub fn finish(&self, hdr: &mut [u8; VNET_HDR_LEN], first: &mut [u8]) {
        if self.count < 2 {
            hdr.fill(0);
            return;
        }
        let l4 = self.l4;
        let l4_len = self.len - l4;
        if self.v4 {
            first[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            first[10..12].fill(0);
            let c = !fold(sum(&first[..20], 0));
            first[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            first[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let (proto, csum_offset, gso_type): (u8, usize, u8) = if self.tcp {
            if self.psh {
                first[l4 + 13] |= TCP_PSH;
            }
            (PROTO_TCP, 16, if self.v4 { GSO_TCPV4 } else { GSO_TCPV6 })
        } else {
            first[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (PROTO_UDP, 6, GSO_UDP_L4)
        };
        // The kernel finishes the checksum from the pseudo-header sum.
        let partial = fold(pseudo_header_sum(first, self.v4, proto, l4_len));
        first[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&partial.to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: self.payload as u16,
            gso_size: self.mss as u16,
            csum_start: l4 as u16,
            csum_offset: csum_offset as u16,
        };
        h.encode(hdr);
    }
}

fn pseudo_header_sum(pkt: &[u8], v4: bool, proto: u8, l4_len: usize) -> u64 {
    let addrs = if v4 { &pkt[12..20] } else { &pkt[8..40] };
    sum(addrs, u64::from(proto) + l4_len as u64)
}

/// One's-complement sum of `data` as big-endian 16-bit words, added to
/// `acc` (not yet folded). Sums 8 bytes at a time in host order: the
/// one's-complement sum commutes with byte swapping, so one swap at the
/// end gives the big-endian sum.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut s: u64 = 0;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // Two 32-bit halves: 2^31 rounds (16 GiB) before this could overflow.
        s += (v & 0xffff_ffff) + (v >> 32);
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let v = u64::from_ne_bytes(tail);
    s += (v & 0xffff_ffff) + (v >> 32);
    acc + u64::from(u16::from_be(fold(s)))
}

/// Folds a running sum into 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checksum over data that contains its own checksum is 0xffff.
    fn verifies(data: &[u8], initial: u64) -> bool {
        fold(sum(data, initial)) == 0xffff
    }

    fn ipv4_tcp(payload: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[192, 168, 100, 1]);
        p[16..20].copy_from_slice(&[192, 168, 100, 2]);
        p[20..22].copy_from_slice(&5201u16.to_be_bytes());
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        p[24..28].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        p
    }

    fn gso(gso_type: u8, size: u16, csum_start: u16, csum_offset: u16) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: 0,
            gso_size: size,
            csum_start,
            csum_offset,
        }
    }

    fn collect(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
        let mut scratch = vec![0u8; 2048];
        let mut out = Vec::new();
        for_each_segment(hdr, pkt, &mut scratch, |s| out.push(s.to_vec()))?;
        Ok(out)
    }

    #[test]
    fn tcp_v4_super_packet_becomes_mss_segments() {
        let mut pkt = ipv4_tcp(3000, 0x18 | 0x01 | 0x80); // PSH ACK FIN CWR
        let segs = collect(&gso(GSO_TCPV4, 1360, 20, 16), &mut pkt).unwrap();
        assert_eq!(
            segs.iter().map(Vec::len).collect::<Vec<_>>(),
            [1400, 1400, 320]
        );
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(
                u16::from_be_bytes([s[4], s[5]]),
                0xfffeu16.wrapping_add(i as u16)
            );
            assert!(verifies(&s[..20], 0), "IP checksum of segment {i}");
            assert!(
                verifies(
                    &s[20..],
                    pseudo_header_sum(s, true, PROTO_TCP, s.len() - 20)
                ),
                "TCP checksum of segment {i}"
            );
            let seq = u32::from_be_bytes(s[24..28].try_into().unwrap());
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add(1360 * i as u32));
            let flags = s[33];
            assert_eq!(flags & 0x10, 0x10, "ACK kept");
            assert_eq!(flags & 0x09 != 0, i == 2, "FIN/PSH only on the last");
            assert_eq!(flags & 0x80 != 0, i == 0, "CWR only on the first");
            payload.extend_from_slice(&s[40..]);
        }
        assert_eq!(payload, pkt[40..]);
    }

    #[test]
    fn udp_v6_super_packet_becomes_datagrams() {
        let mut pkt = vec![0u8; 48 + 2500];
        pkt[0] = 0x60;
        pkt[6] = PROTO_UDP;
        pkt[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        pkt[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        pkt[40..42].copy_from_slice(&9u16.to_be_bytes());
        pkt[42..44].copy_from_slice(&7u16.to_be_bytes());
        for b in &mut pkt[48..] {
            *b = 0xab;
        }
        let segs = collect(&gso(GSO_UDP_L4, 1000, 40, 6), &mut pkt).unwrap();
        assert_eq!(segs.len(), 3);
        for s in &segs {
            let udp_len = s.len() - 40;
            assert_eq!(usize::from(u16::from_be_bytes([s[4], s[5]])), udp_len);
            assert_eq!(usize::from(u16::from_be_bytes([s[44], s[45]])), udp_len);
            assert!(verifies(
                &s[40..],
                pseudo_header_sum(s, false, PROTO_UDP, udp_len)
            ));
        }
        assert_eq!(segs[2].len(), 48 + 500);
    }

    #[test]
    fn partial_checksum_is_completed_in_place() {
        let mut pkt = ipv4_tcp(100, 0x10);
        let l4_len = pkt.len() - 20;
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let partial = fold(pseudo_header_sum(&pkt, true, PROTO_TCP, l4_len));
        pkt[36..38].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let segs = collect(&hdr, &mut pkt).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(verifies(
            &segs[0][20..],
            pseudo_header_sum(&segs[0], true, PROTO_TCP, l4_len)
        ));
    }

    /// Merges `segs` as the TX ring does: returns the TUN write (header,
    /// first packet, payloads of the rest) and how many were merged.
    fn merge(segs: &[Vec<u8>], udp: bool) -> (Vec<u8>, usize) {
        let mut gro = Gro::start(&segs[0], udp).expect("starts");
        let mut first = segs[0].clone();
        let mut tail = Vec::new();
        for s in &segs[1..] {
            match gro.extend(&first, s) {
                Some(at) => tail.extend_from_slice(&s[at..]),
                None => break,
            }
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        gro.finish(&mut hdr, &mut first);
        let mut write = hdr.to_vec();
        write.extend_from_slice(&first);
        write.extend_from_slice(&tail);
        (write, gro.count())
    }

    /// What the kernel does with a GRO write: cut it again.
    fn recut(write: &mut [u8]) -> Vec<Vec<u8>> {
        let (hdr, pkt) = VnetHdr::split(write).unwrap();
        let mut scratch = vec![0u8; 2048];
        let mut out = Vec::new();
        for_each_segment(&hdr, pkt, &mut scratch, |s| out.push(s.to_vec())).unwrap();
        out
    }

    #[test]
    fn gro_merges_what_segmentation_cut_and_cuts_back_the_same() {
        let mut pkt = ipv4_tcp(5000, TCP_ACK | TCP_PSH);
        let segs = collect(&gso(GSO_TCPV4, 1360, 20, 16), &mut pkt).unwrap();
        let (mut write, n) = merge(&segs, false);
        assert_eq!(n, 4);
        assert_eq!(write.len(), VNET_HDR_LEN + 40 + 5000);
        let (hdr, _) = VnetHdr::split(&mut write).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.hdr_len, hdr.csum_start),
            (GSO_TCPV4, 1360, 40, 20)
        );
        assert_eq!(recut(&mut write), segs);

        let mut pkt = ipv4_tcp(2000, TCP_ACK);
        pkt[9] = PROTO_UDP;
        pkt[24..26].copy_from_slice(&2008u16.to_be_bytes());
        let mut udp = pkt[..28].to_vec();
        udp.extend_from_slice(&pkt[40..]);
        let n = udp.len() as u16;
        udp[2..4].copy_from_slice(&n.to_be_bytes());
        let segs = collect(&gso(GSO_UDP_L4, 700, 20, 6), &mut udp).unwrap();
        assert!(Gro::start(&segs[0], false).is_none(), "UDP only when asked");
        let (mut write, n) = merge(&segs, true);
        assert_eq!(n, 3);
        assert_eq!(recut(&mut write), segs);
    }

    #[test]
    fn gro_keeps_apart_what_the_kernel_would() {
        let mut pkt = ipv4_tcp(4000, TCP_ACK);
        let segs = collect(&gso(GSO_TCPV4, 1000, 20, 16), &mut pkt).unwrap();
        let first = &segs[0];
        let refused = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut g = Gro::start(first, true).unwrap();
            let mut next = segs[1].clone();
            edit(&mut next);
            g.extend(first, &next).is_none()
        };
        assert!(!refused(&|_| {}));
        assert!(refused(&|p| p[27] ^= 1), "sequence gap");
        assert!(refused(&|p| p[19] ^= 1), "other destination");
        assert!(refused(&|p| p[23] ^= 1), "other port");
        assert!(refused(&|p| p[31] ^= 1), "other ack");
        assert!(refused(&|p| p[34] ^= 1), "other window");
        assert!(refused(&|p| p[33] |= 0x02), "SYN");
        assert!(refused(&|p| p[8] ^= 1), "other TTL");
        assert!(refused(&|p| p.push(0)), "length mismatch");
        // A short segment ends the super-packet; PSH too.
        let mut g = Gro::start(first, true).unwrap();
        let mut short = segs[1].clone();
        short.truncate(short.len() - 10);
        let n = short.len() as u16;
        short[2..4].copy_from_slice(&n.to_be_bytes());
        assert!(g.extend(first, &short).is_some());
        assert!(g.extend(first, &segs[2]).is_none());
        // A lone packet goes out untouched behind a zero header.
        let g = Gro::start(first, true).unwrap();
        let (mut hdr, mut same) = ([1u8; VNET_HDR_LEN], first.clone());
        g.finish(&mut hdr, &mut same);
        assert_eq!((hdr, &same), ([0; VNET_HDR_LEN], first));
        assert!(Gro::start(&segs[0][..30], true).is_none());
        assert!(Gro::start(&[0x45; 60], true).is_none());
    }

    #[test]
    fn fast_sum_matches_the_word_by_word_definition() {
        let reference = |d: &[u8], acc: u64| {
            let mut s = acc;
            for w in d.chunks(2) {
                s += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            fold(s)
        };
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..64).chain([1399, 1400, 1401, 2999, 3000]) {
            for acc in [0, 6 + 1380, 0xffff_ffff] {
                assert_eq!(
                    fold(sum(&data[..len], acc)),
                    reference(&data[..len], acc),
                    "len {len} acc {acc}"
                );
            }
        }
        assert_eq!(fold(sum(&[0xff; 1500], 0)), 0xffff);
    }

    #[test]
    fn bad_offload_reads_are_refused_not_panicked_on() {
        let mut pkt = ipv4_tcp(3000, 0x10);
        assert_eq!(
            collect(&gso(3, 1000, 20, 6), &mut pkt),
            Err(OffloadError::UnknownGso(3))
        );
        assert_eq!(
            collect(&gso(GSO_TCPV4, 0, 20, 16), &mut pkt),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            collect(&gso(GSO_TCPV6, 1000, 20, 16), &mut pkt),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            collect(&gso(GSO_TCPV4, 4000, 20, 16), &mut pkt),
            Err(OffloadError::SegmentTooLarge)
        );
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 60000,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert_eq!(collect(&hdr, &mut pkt), Err(OffloadError::Malformed));
        for cut in [0, 1, 19, 30, 39] {
            assert!(
                collect(&gso(GSO_TCPV4, 1000, 20, 16), &mut pkt[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let (h, rest) = VnetHdr::split(&mut [1, 1, 0, 0, 0x10, 0, 20, 0, 16, 0, 0x45])
            .map(|(h, r)| (h, r.len()))
            .unwrap();
        assert_eq!((h.gso_type, rest), (GSO_TCPV4, 1));
        assert!(VnetHdr::split(&mut [0; 9]).is_none());
    }
}
