//! The shard's TUN queue: packets the kernel routes to a lease of this
//! shard, read through the shard's own io_uring (see `sys::uring`).
//!
//! The ring signals an eventfd; glommio's io_uring read of that eventfd
//! is what wakes this task, once per batch of completions.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::BufferedFile;

use super::core::Shard;
use crate::proto::ip;
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
        let failed = shard.rx.borrow_mut().reap();
        if failed > 0 {
            let errors = shard.rx.borrow().stats().errors;
            if logged_errors < 10 {
                logged_errors += 1;
                tracing::warn!(shard = %shard.id, errors, "TUN queue reads failing");
            }
            glommio::timer::sleep(READ_ERROR_BACKOFF).await;
        }
        // Packets for DTLS clients are queued on `tx`, sent below.
        if let Err(e) = shard.rx.borrow_mut().for_each_packet(|pkt| dispatch(&shard, pkt)) {
            tracing::warn!(shard = %shard.id, "TUN read submit: {e}");
        }
        if let Err(e) = shard.tx.borrow_mut().submit() {
            tracing::warn!(shard = %shard.id, "TX submit: {e}");
        }
        glommio::yield_if_needed().await;
    }
}

fn dispatch(shard: &Shard, pkt: &[u8]) {
    let Some(dst) = ip::ipv4_destination(pkt) else { return };
    let tunnel = shard.tunnels.borrow().get(&dst).cloned();
    if let Some(t) = tunnel {
        t.send_packet(shard, pkt);
    }
}
