//! Packets the kernel routes to a lease of this shard, as the receive
//! ring read them from the shard's TUN queue (see `dataplane`): each goes
//! to its tunnel. With offloads a read may be a 64 KB super-packet: it is
//! cut into packets here, after one session lookup for all of them.

use std::time::Instant;

use super::core::Shard;
use crate::proto::ip;
use crate::proto::offload::{self, VnetHdr};

pub(crate) fn dispatch(shard: &Shard, pkt: &[u8], now: Instant) {
    let Some(dst) = ip::route_key(pkt, shard.ipv6_network) else {
        return;
    };
    if let Some(t) = shard.tunnel_for(dst) {
        t.send_packet(shard, pkt, now);
    }
}

/// Cuts offloaded reads into packets; one per shard, reused.
pub(crate) struct Segmenter {
    scratch: Vec<u8>,
    errors: u64,
    /// Reads that carried more than one packet, and the packets they held.
    super_reads: u64,
    segments: u64,
}

impl Segmenter {
    pub(crate) fn new() -> Self {
        Self {
            scratch: vec![0; offload::MAX_SUPER_PACKET],
            errors: 0,
            super_reads: 0,
            segments: 0,
        }
    }

    pub(crate) fn dispatch(&mut self, shard: &Shard, read: &mut [u8], now: Instant) {
        let Some((hdr, pkt)) = VnetHdr::split(read) else {
            return;
        };
        let Some(dst) = ip::route_key(pkt, shard.ipv6_network) else {
            return;
        };
        let Some(t) = shard.tunnel_for(dst) else {
            return;
        };
        let mut n = 0u64;
        let cut = offload::for_each_segment(&hdr, pkt, &mut self.scratch, |seg| {
            n += 1;
            t.send_packet(shard, seg, now);
        });
        if n > 1 {
            self.super_reads += 1;
            self.segments += n;
            if self.super_reads.is_power_of_two() {
                tracing::debug!(shard = %shard.id, reads = self.super_reads, packets = self.segments, "TUN super-packets cut");
            }
        }
        if let Err(e) = cut {
            t.count_dropped();
            self.errors += 1;
            // The kernel made it: a bug here or there, never the client's doing.
            if self.errors <= 10 {
                tracing::warn!(shard = %shard.id, ?hdr, "TUN read dropped: {e}");
            }
        }
    }
}
