//! A shard's own io_urings for the packet path.
//!
//! [`RxRing`] keeps reads posted on the shard's TUN queue; its completions
//! bump an eventfd that the shard's executor awaits, so the ring needs no
//! thread and no polling. [`TxRing`] carries every packet the shard sends
//! to the TUN queue or to a DTLS socket: each is built in a free slot and
//! the batch goes to the kernel with one submit. Reads and writes use two
//! rings so that a packet can be sent while the one just read is borrowed.
//!
//! Buffers are one arena per ring allocated at start and, where
//! RLIMIT_MEMLOCK allows, registered with the kernel (Read/WriteFixed):
//! the packet path allocates nothing. Rule for callers: submit before the
//! next await, so an fd can't be closed and reused between queue and submit.

use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

pub use super::txring::TxRing;

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
}

/// What both rings share: the ring, its slot arena and in-flight count.
pub(super) struct Slots {
    // Declared first: dropped (after `quiesce`) before the arena.
    pub(super) ring: IoUring,
    arena: Vec<u8>,
    pub(super) slot_size: usize,
    fixed: bool,
    pub(super) in_flight: usize,
    unsubmitted: usize,
    pub(super) stats: RingStats,
}

impl Slots {
    pub(super) fn new(slots: usize, slot_size: usize) -> io::Result<Self> {
        let entries = (slots as u32).next_power_of_two().max(64);
        let ring = IoUring::builder()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        let mut arena = vec![0u8; slots * slot_size];
        let iovecs: Vec<libc::iovec> = arena
            .chunks_exact_mut(slot_size)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: slot_size,
            })
            .collect();
        // SAFETY: the iovecs point into `arena`, which lives (and never
        // reallocates) as long as the ring: `Slots` drops the ring first.
        let fixed = match unsafe { ring.submitter().register_buffers(&iovecs) } {
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

    pub(super) fn submit(&mut self) -> io::Result<()> {
        if self.unsubmitted == 0 {
            return Ok(());
        }
        self.ring.submit()?;
        self.unsubmitted = 0;
        self.stats.submits += 1;
        Ok(())
    }

    /// Waits (bounded) until the kernel is done with the arena; `cancel_fd`
    /// cancels reads that would otherwise wait for a packet forever.
    pub(super) fn quiesce(&mut self, cancel_fd: Option<RawFd>) -> bool {
        if let Some(fd) = cancel_fd {
            let cancel =
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all()).build();
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
            for _ in self.ring.completion() {
                self.in_flight -= 1;
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

/// Reads kept posted on one TUN queue.
pub struct RxRing {
    slots: Slots,
    fd: RawFd,
    eventfd: OwnedFd,
    /// Completed reads not yet handed out: (slot, length; 0 = failed).
    ready: Vec<(u32, u32)>,
    open: bool,
}

impl RxRing {
    /// Posts `reads` reads of `slot_size` bytes on `fd`, which must
    /// outlive the ring.
    pub fn new(fd: RawFd, reads: usize, slot_size: usize) -> io::Result<Self> {
        let slots = Slots::new(reads, slot_size)?;
        // SAFETY: eventfd(2) with valid flags; the result is a new fd.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` was just created and is owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        slots.ring.submitter().register_eventfd(efd)?;
        let mut me = Self {
            slots,
            fd,
            eventfd,
            ready: Vec::with_capacity(reads),
            open: true,
        };
        for slot in 0..reads as u32 {
            let sqe = me.slots.read_entry(fd, slot).user_data(u64::from(slot));
            me.slots.push(&sqe)?;
        }
        me.slots.submit()?;
        Ok(me)
    }

    /// Signalled (counter > 0) whenever completions are waiting.
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    pub fn stats(&self) -> RingStats {
        self.slots.stats
    }

    /// Whether reads have completed since the last `reap` (no syscall).
    pub fn has_completions(&mut self) -> bool {
        !self.slots.ring.completion().is_empty()
    }

    /// Collects completed reads. Returns how many failed: the caller backs
    /// off before they are posted again, so a broken queue cannot spin.
    pub fn reap(&mut self) -> usize {
        let mut failed = 0;
        for cqe in self.slots.ring.completion() {
            self.slots.in_flight -= 1;
            let len = if cqe.result() > 0 {
                cqe.result() as u32
            } else if matches!(-cqe.result(), libc::EAGAIN | libc::EINTR) {
                // Not a failure: posted again at once.
                0
            } else {
                self.slots.stats.errors += 1;
                self.slots.stats.last_errno = -cqe.result();
                failed += 1;
                0
            };
            self.ready.push((cqe.user_data() as u32, len));
        }
        failed
    }

    /// Passes each packet read to `f`, then posts every read again.
    pub fn for_each_packet(&mut self, mut f: impl FnMut(&mut [u8])) -> io::Result<()> {
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

    /// Cancels every posted read and waits for the kernel to let go of the
    /// queue (the TUN device can only go away after that).
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.open, false) {
            let _ = self.slots.quiesce(Some(self.fd));
        }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        self.close();
        self.slots.leak_if_busy("TUN read ring");
    }
}
