//! GRO round trip: packets from a client merged into one TUN write
//! ([`Gro`], the way `sys::txring` drives it) must come back out of
//! [`for_each_segment`], our model of the kernel cutting that write, as
//! the packets that went in, in order, with valid checksums.

use ocserv_proto::offload::{
    fold, for_each_segment, sum, Gro, VnetHdr, MAX_GRO_SEGMENTS, MAX_SUPER_PACKET, VNET_HDR_LEN,
};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// The shape of the flow a script's packets belong to.
#[derive(Clone, Copy)]
struct Flow {
    v6: bool,
    udp: bool,
    /// 32-bit TCP option words (NOPs) after the fixed header.
    opt_words: usize,
}

impl Flow {
    fn l4(self) -> usize {
        if self.v6 {
            40
        } else {
            20
        }
    }

    fn headers(self) -> usize {
        self.l4() + if self.udp { 8 } else { 20 + 4 * self.opt_words }
    }

    /// A well-formed packet of the flow with `len` payload bytes.
    fn packet(self, len: usize, seq: u32, id: u16, flags: u8) -> Vec<u8> {
        let (l4, payload) = (self.l4(), self.headers());
        let mut p = vec![0u8; payload + len];
        let total = p.len();
        if self.v6 {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            p[6] = if self.udp { UDP } else { TCP };
            p[7] = 64;
            p[8..24].copy_from_slice(&[0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            p[24..40].copy_from_slice(&[0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = if self.udp { UDP } else { TCP };
            p[12..16].copy_from_slice(&[192, 168, 100, 2]);
            p[16..20].copy_from_slice(&[192, 168, 100, 1]);
            let c = !fold(sum(&p[..20], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        p[l4..l4 + 2].copy_from_slice(&40000u16.to_be_bytes());
        p[l4 + 2..l4 + 4].copy_from_slice(&5201u16.to_be_bytes());
        if self.udp {
            p[l4 + 4..l4 + 6].copy_from_slice(&((total - l4) as u16).to_be_bytes());
        } else {
            p[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            p[l4 + 8..l4 + 12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            p[l4 + 12] = ((5 + self.opt_words) as u8) << 4;
            p[l4 + 13] = flags;
            p[l4 + 14..l4 + 16].copy_from_slice(&512u16.to_be_bytes());
            p[l4 + 20..payload].fill(1); // NOP options
        }
        for (i, b) in p[payload..].iter_mut().enumerate() {
            *b = (i as u8) ^ (seq as u8);
        }
        let at = l4 + if self.udp { 6 } else { 16 };
        let c = match !fold(sum(&p[l4..], pseudo(&p, self.v6, total - l4))) {
            0 if self.udp => 0xffff, // zero means "no checksum"
            c => c,
        };
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }
}

/// The pseudo-header's part of an L4 checksum.
fn pseudo(pkt: &[u8], v6: bool, l4_len: usize) -> u64 {
    let (addrs, proto) = if v6 {
        (&pkt[8..40], pkt[6])
    } else {
        (&pkt[12..20], pkt[9])
    };
    sum(addrs, u64::from(proto) + l4_len as u64)
}

/// Builds packets from a script in `data` (a flow, then per packet its
/// payload length, PSH, a skipped sequence number or a flipped byte, or
/// raw bytes), so inputs reach the merge paths instead of dying on length
/// fields; merges them as the TUN writer does and checks the round trip.
pub fn gro_roundtrip(data: &[u8]) {
    let mut input = data.iter().copied();
    let mut byte = move || input.next();
    let Some(setup) = byte() else { return };
    let merge_udp = setup & 1 != 0;
    let flow = Flow {
        v6: setup & 2 != 0,
        udp: setup & 4 != 0,
        opt_words: usize::from(setup >> 3 & 3),
    };
    // Start anywhere, near the wrap of the sequence space too.
    let mut seq = u32::from_be_bytes([byte().unwrap_or(0), 0xff, 0xff, byte().unwrap_or(0)]);
    let mut id = u16::from(byte().unwrap_or(0)) << 8;
    let mut pkts: Vec<Vec<u8>> = Vec::new();
    while pkts.len() < 3 * MAX_GRO_SEGMENTS {
        let Some(op) = byte() else { break };
        let pkt = if op & 3 == 3 {
            let len = usize::from(byte().unwrap_or(0)) * 2;
            (0..len).map_while(|_| byte()).collect()
        } else {
            let len = usize::from(byte().unwrap_or(0)) * 8 + usize::from(op >> 5);
            let flags = if op & 3 == 1 { ACK | PSH } else { ACK };
            let mut p = flow.packet(len, seq, id, flags);
            if !flow.udp {
                seq = seq.wrapping_add(len as u32);
            }
            id = id.wrapping_add(1);
            if op & 4 != 0 {
                seq = seq.wrapping_add(1);
            }
            if op & 3 == 2 {
                let at = usize::from(u16::from_be_bytes([
                    byte().unwrap_or(0),
                    byte().unwrap_or(0),
                ])) % p.len();
                p[at] ^= byte().unwrap_or(0xff);
            }
            p
        };
        pkts.push(pkt);
    }
    let (out, _) = merge_and_cut(&pkts, merge_udp);
    assert_eq!(out.len(), pkts.len(), "every packet comes out once");
}

/// Runs `pkts` through GRO as `sys::txring` does, cuts every super-packet
/// again and checks each group; returns the packets as the kernel would
/// see them, in order, and the number of TUN writes.
fn merge_and_cut(pkts: &[Vec<u8>], merge_udp: bool) -> (Vec<Vec<u8>>, usize) {
    let (mut out, mut writes) = (Vec::new(), 0);
    // The open group: its state, and the indexes of its packets.
    let mut open: Option<(Gro, Vec<usize>, Vec<u8>)> = None;
    for (i, pkt) in pkts.iter().enumerate() {
        if let Some((gro, members, payloads)) = open.as_mut() {
            if let Some(at) = gro.extend(&pkts[members[0]], pkt) {
                assert!(at <= pkt.len());
                members.push(i);
                payloads.extend_from_slice(&pkt[at..]);
                continue;
            }
        }
        if let Some(group) = open.take() {
            out.extend(flush(pkts, group));
            writes += 1;
        }
        match Gro::start(pkt, merge_udp) {
            Some(gro) => open = Some((gro, vec![i], Vec::new())),
            None => {
                out.push(pkt.clone());
                writes += 1;
            }
        }
    }
    if let Some(group) = open.take() {
        out.extend(flush(pkts, group));
        writes += 1;
    }
    (out, writes)
}

/// Finishes one group into a TUN write (header + first packet + the rest's
/// payloads), cuts it as the kernel would and checks the pieces.
fn flush(pkts: &[Vec<u8>], (gro, members, payloads): (Gro, Vec<usize>, Vec<u8>)) -> Vec<Vec<u8>> {
    assert_eq!(gro.count(), members.len());
    assert!(members.len() <= MAX_GRO_SEGMENTS);
    let mut write = vec![0u8; VNET_HDR_LEN];
    write.extend_from_slice(&pkts[members[0]]);
    write.extend_from_slice(&payloads);
    let (hdr, first) = write.split_at_mut(VNET_HDR_LEN);
    let hdr: &mut [u8; VNET_HDR_LEN] = hdr.try_into().expect("header length");
    gro.finish(hdr, &mut first[..pkts[members[0]].len()]);
    if members.len() == 1 {
        assert_eq!(
            *hdr, [0; VNET_HDR_LEN],
            "a lone packet is written as it came"
        );
        assert_eq!(first, &pkts[members[0]][..]);
        return vec![first.to_vec()];
    }
    assert!(first.len() <= MAX_SUPER_PACKET);
    let (h, sp) = VnetHdr::split(&mut write).expect("header");
    let mut scratch = vec![0u8; MAX_SUPER_PACKET];
    let mut segs = Vec::new();
    for_each_segment(&h, sp, &mut scratch, |s| segs.push(s.to_vec()))
        .expect("our own super-packet cuts");
    assert_eq!(
        segs.len(),
        members.len(),
        "as many segments as packets merged"
    );
    let l4 = usize::from(h.csum_start);
    let csum = l4 + usize::from(h.csum_offset);
    let v6 = segs[0][0] >> 4 == 6;
    for (seg, &m) in segs.iter().zip(&members) {
        let orig = &pkts[m];
        assert_eq!(seg.len(), orig.len(), "packet {m}");
        // What the cut may rewrite: IPv4 ID and checksum, the L4 checksum,
        // and the urgent pointer (URG is never set in a merged segment).
        let ip_id_or_csum = |k: usize| !v6 && ((4..6).contains(&k) || (10..12).contains(&k));
        let urgent = |k: usize| h.csum_offset == 16 && (l4 + 18..l4 + 20).contains(&k);
        let rewritten = |k: usize| ip_id_or_csum(k) || urgent(k) || (csum..csum + 2).contains(&k);
        for (k, (a, b)) in seg.iter().zip(orig).enumerate() {
            assert!(
                a == b || rewritten(k),
                "packet {m} byte {k}: {a:#04x} after the cut, {b:#04x} before"
            );
        }
        if !v6 {
            assert_eq!(
                fold(sum(&seg[..20], 0)),
                0xffff,
                "IPv4 header checksum of packet {m}"
            );
        }
        assert_eq!(
            fold(sum(&seg[l4..], pseudo(seg, v6, seg.len() - l4))),
            0xffff,
            "L4 checksum of packet {m}"
        );
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script: flow `setup`, then `n` packets of `len` payload bytes.
    fn script(setup: u8, n: usize, len: u8) -> Vec<u8> {
        let mut s = vec![setup, 0xff, 0xf0, 0x12];
        for _ in 0..n {
            s.extend_from_slice(&[0, len]);
        }
        s
    }

    #[test]
    fn full_flows_merge_and_come_back() {
        for setup in [0u8, 2, 5, 7, 8 | 2, 24] {
            let pkts: Vec<Vec<u8>> = {
                let flow = Flow {
                    v6: setup & 2 != 0,
                    udp: setup & 4 != 0,
                    opt_words: usize::from(setup >> 3 & 3),
                };
                let mut seq = 0xffff_f000u32;
                (0..10)
                    .map(|i| {
                        let len = if i == 9 { 100 } else { 1200 };
                        let p = flow.packet(len, seq, i as u16, ACK);
                        seq = seq.wrapping_add(len as u32);
                        p
                    })
                    .collect()
            };
            let (out, writes) = merge_and_cut(&pkts, setup & 1 != 0);
            assert_eq!(
                out, pkts,
                "setup {setup}: checksums and IDs were right, so nothing changes"
            );
            // TCP always merges; UDP only where asked (setup bit 0).
            let merges = setup & 4 == 0 || setup & 1 != 0;
            assert_eq!(writes, if merges { 1 } else { 10 }, "setup {setup}");
            gro_roundtrip(&script(setup, 70, 150));
        }
    }
}
