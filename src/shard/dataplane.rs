//! The shard's packet path in: one task drains the receive ring, where
//! the TUN queue's reads and every DTLS socket's multishot receive
//! complete. One wake-up handles whatever arrived for any session, and
//! everything it sends leaves with one TX submit.
//!
//! At idle the ring signals an eventfd (with deferred task work, through
//! the doorbell armed when the task parks: `sys::doorbell`); glommio's
//! io_uring read of that eventfd is what wakes this task. Under load the
//! task takes a batch after `batch_wait_us` instead, and with deferred
//! task work nothing wakes the shard per packet in between. The tasks that
//! write client packets to the TUN also look at the ring right after their
//! submit (`poll_now`): a reply the kernel made at once (ping, a local
//! service) then leaves without waiting for that wake-up.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::io::BufferedFile;

use super::core::Shard;
use super::dtls::DtlsChannel;
use super::tunnel::Tunnel;
use crate::sys;
use crate::sys::uring::Recv;

/// Pause before re-posting reads that failed, so a broken queue cannot spin.
const READ_ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// An idle shard looks at its ring this often even without a signal: a
/// bound on any wake-up missed, which `LateWakes` reports.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Counts idle rechecks that found work no signal had announced.
#[derive(Default)]
struct LateWakes {
    count: u64,
}

impl LateWakes {
    fn check(&mut self, shard: &Shard) {
        if shard.rx.borrow_mut().has_completions() {
            self.count += 1;
            if self.count.is_power_of_two() {
                tracing::warn!(shard = %shard.id, count = self.count, "receive ring: work found without a wake-up");
            }
        }
    }
}

pub(crate) async fn run(shard: Rc<Shard>) {
    let efd = shard.rx.borrow().eventfd();
    let owned = match sys::dup(efd) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(shard = %shard.id, "receive ring eventfd: {e}");
            return;
        }
    };
    let wakeups: BufferedFile = sys::adopt(owned);
    let mut logged_errors = 0;
    let mut pace = Pace::default();
    let mut late_wakes = LateWakes::default();
    loop {
        match pace.wait {
            Some(wait) => glommio::timer::sleep(wait).await,
            None => {
                let parked = shard.rx.borrow_mut().prepare_to_park();
                match parked {
                    // Work came meanwhile: take it now.
                    Ok(false) => {}
                    Ok(true) => {
                        // Reading resets the counter; completions (or the
                        // doorbell) after this bump it again.
                        let read = async { Some(wakeups.read_at(0, 8).await) };
                        let recheck = async {
                            glommio::timer::sleep(IDLE_RECHECK).await;
                            None
                        };
                        match future::or(read, recheck).await {
                            Some(Err(e)) => {
                                tracing::warn!(shard = %shard.id, "receive ring eventfd read: {e}");
                                glommio::timer::sleep(READ_ERROR_BACKOFF).await;
                                continue;
                            }
                            Some(Ok(_)) => {}
                            None => late_wakes.check(&shard),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(shard = %shard.id, "receive ring doorbell: {e}");
                        glommio::timer::sleep(READ_ERROR_BACKOFF).await;
                    }
                }
            }
        }
        let (handled, failed) = drain(&shard);
        pace.after_drain(handled, Instant::now(), shard.batch_wait.get());
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

/// When the next batch is taken: at once when the ring signals (idle),
/// or, under load, after a wait that lets packets gather, so that one
/// wake-up (and one submit each way) serves many of them.
#[derive(Default)]
struct Pace {
    /// `Some`: the next drain comes after this wait, not the ring's signal.
    wait: Option<Duration>,
    last_work: Option<Instant>,
}

impl Pace {
    /// Load means batches coming closer together than a few waits: a
    /// packet now and then (a ping, a keepalive) is still handled at once.
    fn after_drain(&mut self, handled: usize, now: Instant, batch_wait: Duration) {
        if handled == 0 || batch_wait.is_zero() {
            self.wait = None;
            if handled > 0 {
                self.last_work = Some(now);
            }
            return;
        }
        let busy = self
            .last_work
            .is_some_and(|t| now.saturating_duration_since(t) < batch_wait * 4);
        self.wait = busy.then_some(batch_wait);
        self.last_work = Some(now);
    }
}

/// Called right after packets were written to the TUN: sends replies the
/// kernel already produced (no syscall when there are none).
pub(crate) fn poll_now(shard: &Rc<Shard>) {
    let ready = shard
        .rx
        .try_borrow_mut()
        .is_ok_and(|mut rx| rx.has_completions());
    if ready {
        drain(shard);
    }
}

/// Passes over the ring after a send that may have been answered at once.
const MAX_PASSES: usize = 4;

/// Handles everything the ring has completed and sends what it produced,
/// then what the kernel answered at once (a ping to the server, a local
/// service: its reply is read while the TX submit returns); returns how
/// many completions there were and how many TUN reads failed (they are
/// posted again at once).
fn drain(shard: &Rc<Shard>) -> (usize, usize) {
    let (mut handled, mut failed) = (0, 0);
    for _ in 0..MAX_PASSES {
        let (h, f) = pass(shard);
        handled += h;
        failed += f;
        let more = shard
            .rx
            .try_borrow_mut()
            .is_ok_and(|mut rx| rx.has_completions());
        if h == 0 || !more {
            break;
        }
    }
    (handled, failed)
}

fn pass(shard: &Rc<Shard>) -> (usize, usize) {
    let Ok(mut rx) = shard.rx.try_borrow_mut() else {
        return (0, 0);
    };
    let (handled, failed) = rx.reap();
    let now = Instant::now();
    rx.for_each_datagram(|token, recv| on_receive(shard, now, token, recv));
    {
        let vnet_hdr = shard.shared.vnet_hdr;
        let mut cut = shard.segmenter.borrow_mut();
        // Packets for DTLS clients are queued on `tx`, sent below.
        let each = |read: &mut [u8]| {
            if vnet_hdr {
                cut.dispatch(shard, read, now);
            } else {
                super::tun::dispatch(shard, read, now);
            }
        };
        if let Err(e) = rx.for_each_packet(each) {
            tracing::warn!(shard = %shard.id, "TUN read submit: {e}");
        }
    }
    drop(rx);
    sync_receivers(shard);
    if let Err(e) = shard.tx.borrow_mut().submit() {
        tracing::warn!(shard = %shard.id, "TX submit: {e}");
    }
    (handled, failed)
}

/// One completion of a DTLS socket's receive.
fn on_receive(shard: &Rc<Shard>, now: Instant, token: u32, recv: Recv<'_>) {
    let live = shard.receivers.borrow().get(token);
    let (ch, tunnel) = match live {
        Some(Target::Channel(ch, tunnel)) => (ch, tunnel),
        Some(Target::Socket(local)) => return on_shared_receive(shard, now, token, local, recv),
        None => {
            if matches!(recv, Recv::Stopped { .. }) {
                shard.receivers.borrow_mut().stopped(token);
            }
            return;
        }
    };
    match recv {
        Recv::Datagram(data, from) => {
            if from == Some(ch.peer) {
                let handled = super::guard::contain_now(shard, "DTLS datagram", || {
                    ch.on_datagram(shard, &tunnel, now, data)
                });
                if handled.is_err() {
                    // The channel ends; the tunnel goes on over CSTP.
                    ch.close();
                }
            } else {
                // A connected socket takes only its peer's datagrams; one
                // queued before connect() is the client's to retransmit.
                tracing::debug!(peer = %ch.peer, stray = ?from, "datagram from another address on a connected socket: dropped");
            }
        }
        Recv::Stopped { errno } => {
            shard.receivers.borrow_mut().stopped(token);
            if errno == 0 || errno == libc::ENOBUFS {
                // No buffer was free: armed again once they are given back.
                shard.receivers.borrow_mut().rearm(token);
            } else {
                // ICMP port unreachable and the like: the channel's task
                // arms it again after a pause, or ends.
                ch.receive_failed(errno);
            }
        }
    }
}

/// A completion of the receive of the shard's shared socket bound to `local`.
fn on_shared_receive(
    shard: &Rc<Shard>,
    now: Instant,
    token: u32,
    local: SocketAddr,
    recv: Recv<'_>,
) {
    match recv {
        Recv::Datagram(data, Some(from)) => super::udp::on_datagram(shard, now, local, data, from),
        Recv::Datagram(_, None) => {}
        Recv::Stopped { errno } => {
            // An unconnected socket reports no ICMP errors; whatever
            // stopped it (no buffer free), it serves every client here:
            // post it again.
            if errno != 0 && errno != libc::ENOBUFS {
                tracing::warn!(shard = %shard.id, %local, "DTLS socket receive: {}", std::io::Error::from_raw_os_error(errno));
            }
            let mut receivers = shard.receivers.borrow_mut();
            receivers.stopped(token);
            receivers.rearm(token);
        }
    }
}

/// Posts and cancels what registrations asked for, when the ring is free.
pub(crate) fn sync_receivers(shard: &Shard) {
    let Ok(mut rx) = shard.rx.try_borrow_mut() else {
        return;
    };
    let mut receivers = shard.receivers.borrow_mut();
    if !receivers.has_work() {
        return;
    }
    receivers.apply(|op| match op {
        Op::Arm(fd, token) => rx.arm_recv(fd, token),
        Op::Cancel(token) => rx.cancel_recv(token),
    });
    if let Err(e) = rx.submit() {
        tracing::warn!(shard = %shard.id, "receive ring submit: {e}");
    }
}

pub(crate) enum Op {
    Arm(RawFd, u32),
    Cancel(u32),
}

enum Slot {
    Free,
    Live {
        ch: Rc<DtlsChannel>,
        tunnel: Rc<Tunnel>,
        /// A receive is posted (or about to be) for it.
        armed: bool,
    },
    /// The shard's socket bound to `local`, shared by its channels.
    Socket {
        fd: RawFd,
        local: SocketAddr,
        armed: bool,
    },
    /// Unregistered while its receive was posted: free after the receive's
    /// last completion, so no later completion reaches a new owner.
    Closing,
}

/// Whose datagrams a token's completions are.
enum Target {
    Channel(Rc<DtlsChannel>, Rc<Tunnel>),
    /// The shared socket bound to this address.
    Socket(SocketAddr),
}

/// The DTLS sockets whose receives complete on the shard's ring, by token.
#[derive(Default)]
pub(crate) struct Receivers {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Tokens to arm or cancel once the ring is not borrowed.
    pending: Vec<(u32, bool)>,
}

impl Receivers {
    /// Adds a channel; its socket's receive is posted at the next sync.
    pub(crate) fn register(&mut self, ch: Rc<DtlsChannel>, tunnel: Rc<Tunnel>) -> u32 {
        self.add(Slot::Live {
            ch,
            tunnel,
            armed: false,
        })
    }

    /// Adds the shard's shared socket bound to `local` (for good).
    pub(crate) fn register_socket(&mut self, fd: RawFd, local: SocketAddr) -> u32 {
        self.add(Slot::Socket {
            fd,
            local,
            armed: false,
        })
    }

    fn add(&mut self, slot: Slot) -> u32 {
        let token = match self.free.pop() {
            Some(t) => {
                self.slots[t as usize] = slot;
                t
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.rearm(token);
        token
    }

    /// Removes a channel; its receive, if posted, is cancelled at the next sync.
    pub(crate) fn unregister(&mut self, token: u32) {
        let Some(slot) = self.slots.get_mut(token as usize) else {
            return;
        };
        if let Slot::Live { armed, .. } = slot {
            if *armed {
                *slot = Slot::Closing;
                self.pending.push((token, false));
            } else {
                *slot = Slot::Free;
                self.free.push(token);
            }
        }
    }

    /// Asks for the receive of `token` to be posted again.
    pub(crate) fn rearm(&mut self, token: u32) {
        if let Some(Slot::Live { armed, .. } | Slot::Socket { armed, .. }) =
            self.slots.get_mut(token as usize)
        {
            if !*armed {
                *armed = true;
                self.pending.push((token, true));
            }
        }
    }

    fn get(&self, token: u32) -> Option<Target> {
        match self.slots.get(token as usize)? {
            Slot::Live { ch, tunnel, .. } => Some(Target::Channel(ch.clone(), tunnel.clone())),
            Slot::Socket { local, .. } => Some(Target::Socket(*local)),
            _ => None,
        }
    }

    /// The receive of `token` has completed for the last time.
    fn stopped(&mut self, token: u32) {
        match self.slots.get_mut(token as usize) {
            Some(Slot::Live { armed, .. } | Slot::Socket { armed, .. }) => *armed = false,
            Some(slot @ Slot::Closing) => {
                *slot = Slot::Free;
                self.free.push(token);
            }
            _ => {}
        }
    }

    fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    fn apply(&mut self, mut post: impl FnMut(Op) -> std::io::Result<()>) {
        for (token, arm) in std::mem::take(&mut self.pending) {
            let op = match self.slots.get_mut(token as usize) {
                Some(Slot::Live { ch, armed, .. }) if arm => {
                    if ch.is_closed() {
                        *armed = false;
                        continue;
                    }
                    Op::Arm(ch.fd(), token)
                }
                Some(Slot::Socket { fd, .. }) if arm => Op::Arm(*fd, token),
                Some(Slot::Closing) if !arm => Op::Cancel(token),
                _ => continue,
            };
            if let Err(e) = post(op) {
                tracing::warn!(token, "receive ring: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_under_load() {
        let wait = Duration::from_micros(500);
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let mut p = Pace::default();
        p.after_drain(1, at(0), wait);
        assert_eq!(p.wait, None, "a first packet is handled at once");
        p.after_drain(1, at(100_000), wait);
        assert_eq!(p.wait, None, "one every 100 ms: still at once");
        p.after_drain(3, at(101_000), wait);
        assert_eq!(p.wait, Some(wait), "batches 1 ms apart: load");
        p.after_drain(5, at(101_500), wait);
        assert_eq!(p.wait, Some(wait));
        p.after_drain(0, at(102_000), wait);
        assert_eq!(p.wait, None, "an empty batch: back to the ring's signal");
        p.after_drain(2, at(102_100), Duration::ZERO);
        assert_eq!(p.wait, None, "batch_wait_us = 0: never waits");
    }

    #[test]
    fn tokens_are_reused_only_after_the_last_completion() {
        let mut r = Receivers::default();
        // No channels needed to follow the slots: fill them by hand.
        r.slots.push(Slot::Closing);
        r.stopped(0);
        assert_eq!(r.free, vec![0]);
        r.slots.push(Slot::Closing);
        r.unregister(1);
        assert!(matches!(r.slots[1], Slot::Closing));
        assert_eq!(r.free, vec![0], "still posted: not free");
        r.stopped(1);
        assert_eq!(r.free, vec![0, 1]);
    }
}
