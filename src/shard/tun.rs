//! The shard's TUN queue: packets the kernel routes to a lease of this shard.
//!
//! glommio's io_uring read waits for the first packet; the rest of the burst
//! is drained with plain reads into one reused buffer.

use std::os::fd::{AsRawFd, IntoRawFd, FromRawFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::BufferedFile;

use super::core::Shard;
use crate::proto::ip;
use crate::sys;

/// Packets handled per wake-up before yielding to other tasks.
const BATCH: usize = 64;

pub(crate) async fn read_loop(shard: Rc<Shard>) {
    let owned = match sys::dup(shard.tun_fd) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(shard = %shard.id, "TUN queue: {e}");
            return;
        }
    };
    let fd = owned.as_raw_fd();
    // SAFETY: `owned` is a fresh dup that the BufferedFile takes over.
    let file = unsafe { BufferedFile::from_raw_fd(owned.into_raw_fd()) };
    let size = usize::from(shard.shared.config.raw.network.mtu) + 64;
    let mut buf = vec![0u8; size];
    loop {
        match file.read_at(0, size).await {
            Ok(first) => dispatch(&shard, &first),
            Err(e) => {
                tracing::warn!(shard = %shard.id, "TUN read: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        for _ in 0..BATCH {
            match sys::tun::read_packet(fd, &mut buf) {
                Ok(Some(n)) => dispatch(&shard, &buf[..n]),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(shard = %shard.id, "TUN read: {e}");
                    break;
                }
            }
        }
        glommio::yield_if_needed().await;
    }
}

fn dispatch(shard: &Shard, pkt: &[u8]) {
    let Some(dst) = ip::ipv4_destination(pkt) else { return };
    let tunnel = shard.tunnels.borrow().get(&dst).cloned();
    if let Some(t) = tunnel {
        t.send_packet(pkt);
    }
}
