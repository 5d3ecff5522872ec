//! The shard's TUN queue: packets the kernel routes to a lease of this
//! shard, read through the shard's own io_uring (see `sys::uring`).
//!
//! The ring signals an eventfd; glommio's io_uring read of that eventfd
//! is what wakes this task, once per batch of completions. The tasks that
//! write client packets to the TUN also look at the ring right after their
//! submit (`poll_now`): a reply the kernel made at once (ping, a local
//! service) then leaves without waiting for that wake-up. With offloads
//! a read may be a 64 KB super-packet: it is cut into packets here, after
//! one session lookup for all of them.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::BufferedFile;

use super::core::Shard;
use crate::proto::ip;
use crate::proto::offload::{self, VnetHdr};
use crate::sys;

/// Pause before re-posting reads that failed, so a broken queue cannot spin.
const READ_ERROR_BACKOFF: Duration = Duration::from_millis(10);

pub(crate) async fn read_loop(shard: Rc<Shard>) {
    let efd = shard.rx.borrow().eventfd();
    let owned = match sys::dup(efd) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(shard = %shard.id, "TUN queue eventfd: {e}");
            return;
        }
    };
    // SAFETY: `owned` is a fresh dup that the BufferedFile takes over.
    let wakeups = unsafe { BufferedFile::from_raw_fd(owned.into_raw_fd()) };
    let mut logged_errors = 0;
    loop {
        // Reading resets the counter; completions after this bump it again.
        if let Err(e) = wakeups.read_at(0, 8).await {
            tracing::warn!(shard = %shard.id, "TUN eventfd read: {e}");
            glommio::timer::sleep(READ_ERROR_BACKOFF).await;
            continue;
        }
        let failed = drain(&shard);
        if failed > 0 {
            let errors = shard.rx.borrow().stats().errors;
            if logged_errors < 10 {
                logged_errors += 1;
                tracing::warn!(shard = %shard.id, errors, "TUN queue reads failing");
            }
            glommio::timer::sleep(READ_ERROR_BACKOFF).await;
        }
        glommio::yield_if_needed().await;
    }
}

/// Handles every read the ring has completed and sends what they carried;
/// returns how many reads failed (they are posted again at once).
fn drain(shard: &Shard) -> usize {
    let failed = shard.rx.borrow_mut().reap();
    let vnet_hdr = shard.shared.vnet_hdr;
    let mut cut = shard.segmenter.borrow_mut();
    // Packets for DTLS clients are queued on `tx`, sent below.
    let each = |read: &mut [u8]| {
        if vnet_hdr {
            cut.dispatch(shard, read);
        } else {
            dispatch(shard, read);
        }
    };
    if let Err(e) = shard.rx.borrow_mut().for_each_packet(each) {
        tracing::warn!(shard = %shard.id, "TUN read submit: {e}");
    }
    if let Err(e) = shard.tx.borrow_mut().submit() {
        tracing::warn!(shard = %shard.id, "TX submit: {e}");
    }
    failed
}

/// Called right after packets were written to the TUN: sends replies the
/// kernel already produced (no syscall when there are none).
pub(crate) fn poll_now(shard: &Shard) {
    if shard.rx.borrow_mut().has_completions() {
        drain(shard);
    }
}

fn dispatch(shard: &Shard, pkt: &[u8]) {
    let Some(dst) = ip::route_key(pkt, shard.ipv6_network) else {
        return;
    };
    if let Some(t) = shard.tunnel_for(dst) {
        t.send_packet(shard, pkt);
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

    fn dispatch(&mut self, shard: &Shard, read: &mut [u8]) {
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
            t.send_packet(shard, seg);
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
