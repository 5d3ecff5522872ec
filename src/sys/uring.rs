//! A shard's own io_urings for the packet path.
//!
//! [`RxRing`] keeps reads posted on the shard's TUN queue and receives on
//! its DTLS sockets. Their completion work is deferred to the shard's own
//! enters (one per batch, not a wake-up per packet); when the shard parks,
//! a doorbell (`doorbell`) bumps an eventfd that the executor awaits, so
//! the ring needs no thread and no polling. [`TxRing`] carries every packet the shard sends
//! to the TUN queue or to a DTLS socket: each is built in a free slot and
//! the batch goes to the kernel with one submit. Reads and writes use two
//! rings so that a packet can be sent while the one just read is borrowed.
//!
//! Buffers are one arena per ring allocated at start and, where
//! RLIMIT_MEMLOCK allows, registered with the kernel (Read/WriteFixed):
//! the packet path allocates nothing. Rule for callers: submit before the
//! next await, so an fd can't be closed and reused between queue and submit.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::BufRing;
use super::doorbell::Doorbell;
pub use super::txring::TxRing;

/// IORING_ENTER_GETEVENTS (linux/io_uring.h).
const ENTER_GETEVENTS: u32 = 1;

/// Counters of one ring (plain integers: one owner).
#[derive(Clone, Copy, Debug, Default)]
pub struct RingStats {
    pub errors: u64,
    /// Packets dropped because every slot was in flight.
    pub full: u64,
    pub submits: u64,
    /// GSO sends and the datagrams they carried (TX ring only).
    pub gso_sends: u64,
    pub gso_datagrams: u64,
    /// Merged TUN writes and the packets they carried (TX ring only).
    pub gro_writes: u64,
    pub gro_packets: u64,
    /// errno of the last failed operation.
    pub last_errno: i32,
    /// Times completions overflowed the queue (fetched from the kernel).
    pub overflows: u64,
}

/// What both rings share: the ring, its slot arena and in-flight count.
pub(super) struct Slots {
    // Declared first: dropped (after `quiesce`) before the arena.
    pub(super) ring: IoUring,
    /// Completion work waits for this thread's next enter (`new`).
    pub(super) deferred: bool,
    arena: Vec<u8>,
    pub(super) slot_size: usize,
    fixed: bool,
    pub(super) in_flight: usize,
    unsubmitted: usize,
    pub(super) stats: RingStats,
}

impl Slots {
    /// `slots` buffers of `slot_size` bytes; room for at least
    /// `completions` completions waiting.
    /// `deferred`: completion work runs only when this thread enters the
    /// ring (DEFER_TASKRUN, kernel 6.1+; a plain ring where refused).
    pub(super) fn new(
        slots: usize,
        slot_size: usize,
        completions: usize,
        deferred: bool,
    ) -> io::Result<Self> {
        let entries = (slots as u32).next_power_of_two().max(64);
        let cq = (completions as u32).next_power_of_two().max(entries * 2);
        let build = |deferred: bool| {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq);
            if deferred {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            }
            b.build(entries)
        };
        let (ring, deferred) = match build(deferred) {
            Ok(ring) => (ring, deferred),
            Err(e) if deferred => {
                tracing::debug!("io_uring: no deferred task work ({e}); a plain ring");
                (build(false)?, false)
            }
            Err(e) => return Err(e),
        };
        let mut arena = vec![0u8; slots * slot_size];
        let iovecs: Vec<libc::iovec> = arena
            .chunks_exact_mut(slot_size.max(1))
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: slot_size,
            })
            .collect();
        // SAFETY: the iovecs point into `arena`, which lives (and never
        // reallocates) as long as the ring: `Slots` drops the ring first.
        let fixed = match unsafe { ring.submitter().register_buffers(&iovecs) } {
            _ if iovecs.is_empty() => false,
            Ok(()) => true,
            Err(e) => {
                // Without CAP_IPC_LOCK a small RLIMIT_MEMLOCK refuses this.
                tracing::debug!(
                    "io_uring: buffers not registered ({e}); using plain reads and writes"
                );
                false
            }
        };
        Ok(Self {
            ring,
            deferred,
            arena,
            slot_size,
            fixed,
            in_flight: 0,
            unsubmitted: 0,
            stats: RingStats::default(),
        })
    }

    pub(super) fn slot(&mut self, slot: u32) -> &mut [u8] {
        let start = slot as usize * self.slot_size;
        &mut self.arena[start..start + self.slot_size]
    }

    fn read_entry(&mut self, fd: RawFd, slot: u32) -> squeue::Entry {
        let (fixed, len) = (self.fixed, self.slot_size as u32);
        let ptr = self.slot(slot).as_mut_ptr();
        if fixed {
            opcode::ReadFixed::new(types::Fd(fd), ptr, len, slot as u16).build()
        } else {
            opcode::Read::new(types::Fd(fd), ptr, len).build()
        }
    }

    pub(super) fn write_entry(
        &mut self,
        fd: RawFd,
        slot: u32,
        range: Range<usize>,
    ) -> squeue::Entry {
        let fixed = self.fixed;
        let ptr = self.slot(slot)[range.clone()].as_ptr();
        let len = range.len() as u32;
        if fixed {
            opcode::WriteFixed::new(types::Fd(fd), ptr, len, slot as u16).build()
        } else {
            opcode::Write::new(types::Fd(fd), ptr, len).build()
        }
    }

    pub(super) fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry built here points into `arena` (stable for the
        // ring's life) or at nothing; callers keep their fds open until the
        // submit that follows (module doc).
        while unsafe { self.ring.submission().push(sqe) }.is_err() {
            self.submit()?;
        }
        self.unsubmitted += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Whether completions are waiting, or work that makes them on the
    /// next enter (no syscall).
    pub(super) fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty() || (self.deferred && self.ring.submission().taskrun())
    }

    /// Fetches completions that overflowed the queue; waits for nothing.
    pub(super) fn enter_getevents(&mut self) -> io::Result<()> {
        self.submit()?;
        // SAFETY: no submissions, no argument: only GETEVENTS.
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(0, 0, ENTER_GETEVENTS, None)?;
        }
        Ok(())
    }

    pub(super) fn submit(&mut self) -> io::Result<()> {
        if self.unsubmitted == 0 {
            return Ok(());
        }
        self.ring.submit()?;
        self.unsubmitted = 0;
        self.stats.submits += 1;
        Ok(())
    }

    /// Waits (bounded) until the kernel is done with the arena; `cancel`
    /// cancels reads that would otherwise wait for a packet forever.
    pub(super) fn quiesce(&mut self, cancel: bool) -> bool {
        if cancel {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel entry carries no buffer.
            if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
                self.in_flight += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.in_flight > 0 && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            for cqe in self.ring.completion() {
                // A multishot receive's completions end with one without MORE.
                if !cqueue::more(cqe.flags()) {
                    self.in_flight -= 1;
                }
            }
        }
        self.in_flight == 0
    }

    pub(super) fn leak_if_busy(&mut self, what: &str) {
        if self.in_flight > 0 {
            // The kernel may still use the arena: never free it.
            tracing::warn!(
                in_flight = self.in_flight,
                "{what}: operations still in flight at exit; leaking its buffers"
            );
            std::mem::forget(std::mem::take(&mut self.arena));
        }
    }
}

/// user_data of a multishot receive: this bit plus the receiver's token
/// (a TUN read's is its slot, below it).
const RECV_TAG: u64 = 1 << 32;
/// user_data of a cancel; its own completion carries nothing.
const CANCEL_TAG: u64 = 1 << 33;
/// Room for the sender's address in each received buffer (sockaddr_in6).
const NAME_LEN: usize = 28;
/// struct io_uring_recvmsg_out, at the start of each received buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// The buffer group of the datagram receives.
const DATAGRAM_GROUP: u16 = 0;
/// The buffer group of the TUN queue's multishot read.
const TUN_GROUP: u16 = 1;
/// user_data of the TUN queue's multishot read.
const TUN_READ_TAG: u64 = 1 << 34;

/// What a multishot receive produced, for the socket's token.
pub enum Recv<'a> {
    /// A datagram and its sender (`None`: not an IP address).
    Datagram(&'a mut [u8], Option<SocketAddr>),
    /// The receive stopped (no buffer was free, or `errno` > 0: the
    /// socket failed); nothing arrives until it is armed again.
    Stopped { errno: i32 },
}

/// The shard's receive ring: reads kept posted on its TUN queue, and one
/// multishot receive per DTLS socket taking buffers from a shared pool.
/// All of them complete on this one ring, so one wake-up and one pass
/// handle every packet in, whichever socket or queue it came from.
pub struct RxRing {
    slots: Slots,
    fd: RawFd,
    eventfd: OwnedFd,
    /// With deferred task work: what signals `eventfd` while parked.
    bell: Option<Doorbell>,
    /// Completed reads not yet handed out: (slot, or buffer id with a
    /// multishot read; length, 0 = failed).
    ready: Vec<(u32, u32)>,
    /// One multishot read on the TUN queue, taking these buffers (kernel
    /// 6.7+). Without it `reads` single reads stay posted, and every
    /// packet wakes all of them (the queue's poll wakes every waiter).
    tun_bufs: Option<BufRing>,
    /// The multishot read is posted.
    tun_armed: bool,
    /// Receive completions not yet handed out: (token, result, flags).
    received: Vec<(u32, i32, u32)>,
    /// Declared after `slots`: the ring goes first.
    bufs: BufRing,
    /// What every multishot receive is posted with: room for the name.
    msg: Box<libc::msghdr>,
    open: bool,
}

impl RxRing {
    /// Keeps `reads` reads of `slot_size` bytes posted on `fd`, which must
    /// outlive the ring (one multishot read with `reads` buffers where the
    /// kernel has it), and `datagrams` buffers of `datagram_size` bytes for
    /// the receives.
    pub fn new(
        fd: RawFd,
        reads: usize,
        slot_size: usize,
        (datagrams, datagram_size): (u16, usize),
    ) -> io::Result<Self> {
        let multishot = read_multishot_supported();
        // Every buffer's datagram plus each read may be waiting at once.
        let completions = 2 * (reads + usize::from(datagrams));
        let slots = if multishot {
            Slots::new(0, 0, completions, true)?
        } else {
            Slots::new(reads, slot_size, completions, true)?
        };
        // SAFETY: eventfd(2) with valid flags; the result is a new fd.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` was just created and is owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let bell = if slots.deferred {
            let bell = Doorbell::new(efd)?;
            // Before its read is posted (see `doorbell`).
            bell.watch(fd)?;
            Some(bell)
        } else {
            slots.ring.submitter().register_eventfd(efd)?;
            None
        };
        let bufs = BufRing::new(
            &slots.ring,
            DATAGRAM_GROUP,
            datagrams,
            RECVMSG_OUT_LEN + NAME_LEN + datagram_size,
        )?;
        // SAFETY: msghdr is a plain C struct for which all-zero is valid.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_namelen = NAME_LEN as libc::socklen_t;
        let tun_bufs = if multishot {
            let count = (reads as u16).next_power_of_two();
            Some(BufRing::new(&slots.ring, TUN_GROUP, count, slot_size)?)
        } else {
            None
        };
        let mut me = Self {
            slots,
            fd,
            eventfd,
            bell,
            ready: Vec::with_capacity(reads),
            tun_bufs,
            tun_armed: false,
            received: Vec::with_capacity(usize::from(datagrams)),
            bufs,
            msg,
            open: true,
        };
        if me.tun_bufs.is_some() {
            me.arm_tun_read()?;
        } else {
            for slot in 0..reads as u32 {
                let sqe = me.slots.read_entry(fd, slot).user_data(u64::from(slot));
                me.slots.push(&sqe)?;
            }
        }
        me.slots.submit()?;
        Ok(me)
    }

    fn arm_tun_read(&mut self) -> io::Result<()> {
        let sqe = opcode::ReadMulti::new(types::Fd(self.fd), 0, TUN_GROUP)
            .build()
            .user_data(TUN_READ_TAG);
        self.slots.push(&sqe)?;
        self.tun_armed = true;
        Ok(())
    }

    /// Signalled (counter > 0) when completions are waiting; with deferred
    /// task work only after `prepare_to_park`.
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Completion work runs only in this thread's enters (`reap`).
    pub fn deferred(&self) -> bool {
        self.slots.deferred
    }

    /// Before waiting for the eventfd: `false` if work is already waiting
    /// (reap it instead of parking). With deferred task work this is what
    /// makes the next arrival signal the eventfd (see `doorbell`).
    pub fn prepare_to_park(&mut self) -> io::Result<bool> {
        let Some(bell) = self.bell.as_mut() else {
            return Ok(true);
        };
        bell.clear();
        if self.slots.has_completions() {
            return Ok(false);
        }
        bell.arm()?;
        Ok(true)
    }

    pub fn stats(&self) -> RingStats {
        self.slots.stats
    }

    /// Whether anything has completed since the last `reap` (no syscall).
    pub fn has_completions(&mut self) -> bool {
        self.slots.has_completions()
    }

    /// Posts a multishot receive on the datagram socket `fd` (which must
    /// stay open until the receive stops); its datagrams come with `token`.
    /// Submitted with the next `for_each_*` or `submit`.
    pub fn arm_recv(&mut self, fd: RawFd, token: u32) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        if let Some(bell) = &self.bell {
            bell.watch(fd)?;
        }
        let sqe = opcode::RecvMsgMulti::new(types::Fd(fd), &raw const *self.msg, DATAGRAM_GROUP)
            .build()
            .user_data(RECV_TAG | u64::from(token));
        self.slots.push(&sqe)
    }

    /// Stops the receive of `token`: its last completion (`Stopped`) follows.
    pub fn cancel_recv(&mut self, token: u32) -> io::Result<()> {
        let sqe = opcode::AsyncCancel::new(RECV_TAG | u64::from(token))
            .build()
            .user_data(CANCEL_TAG);
        self.slots.push(&sqe)
    }

    pub fn submit(&mut self) -> io::Result<()> {
        self.slots.submit()
    }

    /// Collects completions. Returns how many there were and how many TUN
    /// reads failed: the caller backs off before they are posted again, so
    /// a broken queue cannot spin.
    pub fn reap(&mut self) -> (usize, usize) {
        let mut failed = 0;
        let before = self.ready.len() + self.received.len();
        let deferred = self.slots.deferred;
        if deferred {
            // Runs the receives' work: their completions appear now.
            if let Err(e) = self.slots.enter_getevents() {
                self.slots.stats.last_errno = e.raw_os_error().unwrap_or(0);
            }
        }
        // Completions beyond the queue's room wait in the kernel until an
        // enter fetches them (a receive's last one among them); one enter
        // runs a bounded amount of deferred work (the TASKRUN flag stays).
        for _ in 0..64 {
            failed += self.reap_queue();
            let (overflow, more) = {
                let sq = self.slots.ring.submission();
                (sq.cq_overflow(), deferred && sq.taskrun())
            };
            if !overflow && !more {
                break;
            }
            if overflow {
                self.slots.stats.overflows += 1;
            }
            if let Err(e) = self.slots.enter_getevents() {
                self.slots.stats.last_errno = e.raw_os_error().unwrap_or(0);
                break;
            }
        }
        (self.ready.len() + self.received.len() - before, failed)
    }

    /// Takes what the completion queue holds; returns the failed reads.
    fn reap_queue(&mut self) -> usize {
        let mut failed = 0;
        for cqe in self.slots.ring.completion() {
            let (data, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            if !cqueue::more(flags) {
                self.slots.in_flight -= 1;
            }
            if data & CANCEL_TAG != 0 {
                continue;
            }
            if data & TUN_READ_TAG != 0 {
                if !cqueue::more(flags) {
                    self.tun_armed = false;
                }
                let bid = cqueue::buffer_select(flags);
                if res < 0 && !matches!(-res, libc::EAGAIN | libc::EINTR | libc::ENOBUFS) {
                    self.slots.stats.errors += 1;
                    self.slots.stats.last_errno = -res;
                    failed += 1;
                }
                if let Some(bid) = bid {
                    self.ready.push((u32::from(bid), res.max(0) as u32));
                }
                continue;
            }
            if data & RECV_TAG != 0 {
                if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
                    self.slots.stats.errors += 1;
                    self.slots.stats.last_errno = -res;
                }
                self.received.push((data as u32, res, flags));
                continue;
            }
            let len = if res > 0 {
                res as u32
            } else if matches!(-res, libc::EAGAIN | libc::EINTR) {
                // Not a failure: posted again at once.
                0
            } else {
                self.slots.stats.errors += 1;
                self.slots.stats.last_errno = -res;
                failed += 1;
                0
            };
            self.ready.push((data as u32, len));
        }
        failed
    }

    /// Passes each packet read to `f`, then posts every read again.
    pub fn for_each_packet(&mut self, mut f: impl FnMut(&mut [u8])) -> io::Result<()> {
        if let Some(bufs) = self.tun_bufs.as_mut() {
            for &(bid, len) in &self.ready {
                if len > 0 {
                    if let Some(b) = bufs.get(bid as u16) {
                        let n = (len as usize).min(b.len());
                        f(&mut b[..n]);
                    }
                }
                bufs.give_back(bid as u16);
            }
            bufs.publish();
            self.ready.clear();
            if !self.tun_armed && self.open {
                self.arm_tun_read()?;
            }
            return self.slots.submit();
        }
        let ready = std::mem::take(&mut self.ready);
        for &(slot, len) in &ready {
            if len > 0 {
                f(&mut self.slots.slot(slot)[..len as usize]);
            }
        }
        let mut result = Ok(());
        if self.open {
            for &(slot, _) in &ready {
                let sqe = self
                    .slots
                    .read_entry(self.fd, slot)
                    .user_data(u64::from(slot));
                if let Err(e) = self.slots.push(&sqe) {
                    result = Err(e);
                }
            }
        }
        self.ready = ready;
        self.ready.clear();
        result.and(self.slots.submit())
    }

    /// Passes what each receive completion carried to `f` with its token,
    /// in order, then gives the buffers back to the kernel.
    pub fn for_each_datagram(&mut self, mut f: impl FnMut(u32, Recv<'_>)) {
        let received = std::mem::take(&mut self.received);
        for &(token, res, flags) in &received {
            if let Some(bid) = cqueue::buffer_select(flags) {
                if res > 0 {
                    if let Some((data, from)) = self.bufs.get(bid).and_then(|b| parse(b, res)) {
                        f(token, Recv::Datagram(data, from));
                    }
                }
                self.bufs.give_back(bid);
            }
            if !cqueue::more(flags) {
                f(
                    token,
                    Recv::Stopped {
                        errno: (-res).max(0),
                    },
                );
            }
        }
        self.bufs.publish();
        self.received = received;
        self.received.clear();
    }

    /// Cancels every posted read and receive and waits for the kernel to
    /// let go of the queue (the TUN device can only go away after that).
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.open, false) {
            let _ = self.slots.quiesce(true);
        }
    }
}

/// Whether this kernel has multishot reads (IORING_OP_READ_MULTISHOT, 6.7).
fn read_multishot_supported() -> bool {
    let Ok(ring) = IoUring::new(2) else {
        return false;
    };
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(opcode::ReadMulti::CODE)
}

/// The payload of a multishot recvmsg buffer (`res` bytes filled) and its
/// sender; `None` if the datagram was cut (larger than a buffer).
fn parse(buf: &mut [u8], res: i32) -> Option<(&mut [u8], Option<SocketAddr>)> {
    let filled = buf.get_mut(..usize::try_from(res).ok()?)?;
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let (namelen, payloadlen, flags) = (word(filled, 0)?, word(filled, 8)?, word(filled, 12)?);
    if flags & libc::MSG_TRUNC as u32 != 0 {
        return None;
    }
    let name = &filled[RECVMSG_OUT_LEN..RECVMSG_OUT_LEN + NAME_LEN.min(namelen as usize)];
    let from = sockaddr(name);
    let start = RECVMSG_OUT_LEN + NAME_LEN;
    let payload = filled.get_mut(start..start.checked_add(payloadlen as usize)?)?;
    Some((payload, from))
}

/// A sockaddr_in or sockaddr_in6 as the kernel wrote it.
fn sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(name.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::from((ip, port)))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip.into(),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        self.close();
        if self.slots.in_flight > 0 {
            self.bufs.leak();
            if let Some(b) = self.tun_bufs.as_mut() {
                b.leak();
            }
        }
        self.slots.leak_if_busy("receive ring");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// Datagrams from two sockets arrive on one ring with their tokens and
    /// senders; a cancelled receive stops and takes nothing more.
    #[test]
    fn multishot_receives_share_one_pool() {
        let tun = UdpSocket::bind("127.0.0.1:0").unwrap(); // stands in for the TUN queue
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = RxRing::new(tun.as_raw_fd(), 1, 64, (4, 100)).unwrap();
        assert!(rx.deferred(), "kernel 6.1+ defers task work");
        rx.arm_recv(a.as_raw_fd(), 7).unwrap();
        rx.arm_recv(b.as_raw_fd(), 9).unwrap();
        rx.submit().unwrap();
        let mut got = Vec::new();
        // Parks as the data task does, lets `send` run, waits for the
        // signal, then takes what arrived.
        let take = |rx: &mut RxRing,
                    got: &mut Vec<(u32, Vec<u8>, Option<SocketAddr>)>,
                    send: &dyn Fn()| {
            let parked = rx.prepare_to_park().unwrap();
            send();
            if parked {
                let mut pfd = libc::pollfd {
                    fd: rx.eventfd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the call.
                let ready = unsafe { libc::poll(&raw mut pfd, 1, 2000) };
                assert_eq!(ready, 1, "eventfd signalled");
                let mut counter = [0u8; 8];
                // SAFETY: reads 8 bytes into `counter`.
                unsafe { libc::read(rx.eventfd(), counter.as_mut_ptr().cast(), 8) };
            }
            std::thread::sleep(Duration::from_millis(20));
            assert!(rx.has_completions(), "seen without a syscall");
            rx.reap();
            rx.for_each_datagram(|token, r| match r {
                Recv::Datagram(d, from) => got.push((token, d.to_vec(), from)),
                Recv::Stopped { errno } => got.push((
                    token,
                    vec![],
                    Some(SocketAddr::from(([0, 0, 0, 0], errno as u16))),
                )),
            });
        };
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        take(&mut rx, &mut got, &|| {
            tx.send_to(b"one", to_a).unwrap();
            tx.send_to(b"two", to_b).unwrap();
            tx.send_to(&[5u8; 101], to_a).unwrap();
        });
        let from = Some(tx.local_addr().unwrap());
        assert_eq!(got[0], (7, b"one".to_vec(), from));
        assert_eq!(got[1], (9, b"two".to_vec(), from));
        assert_eq!(got.len(), 2, "101 bytes do not fit: dropped, {got:?}");
        got.clear();
        rx.cancel_recv(7).unwrap();
        rx.submit().unwrap();
        take(&mut rx, &mut got, &|| {});
        assert_eq!(
            got,
            vec![(
                7,
                vec![],
                Some(SocketAddr::from(([0, 0, 0, 0], libc::ECANCELED as u16)))
            )]
        );
        got.clear();
        // Four buffers: more datagrams than that in one go stop the
        // receive (no buffer), and arming it again takes the rest.
        take(&mut rx, &mut got, &|| {
            for i in 0..6u8 {
                tx.send_to(&[i], to_b).unwrap();
            }
        });
        let data: Vec<_> = got
            .iter()
            .filter(|g| !g.1.is_empty())
            .map(|g| g.1[0])
            .collect();
        assert_eq!(data, vec![0, 1, 2, 3]);
        assert_eq!(got.last().unwrap().2.unwrap().port(), libc::ENOBUFS as u16);
        got.clear();
        rx.arm_recv(b.as_raw_fd(), 9).unwrap();
        rx.submit().unwrap();
        take(&mut rx, &mut got, &|| {});
        let data: Vec<_> = got.iter().map(|g| g.1[0]).collect();
        assert_eq!(data, vec![4, 5]);
        // Parked with nothing waiting: the next datagram rings.
        got.clear();
        take(&mut rx, &mut got, &|| {
            tx.send_to(b"late", to_b).unwrap();
        });
        assert_eq!(got, vec![(9, b"late".to_vec(), from)]);
        rx.close();
    }
}
