//! A shard's own io_uring for its TUN queue: reads stay posted on a fixed
//! set of buffers, writes are copied into free slots and submitted in
//! batches. Completions bump an eventfd that the shard's executor awaits,
//! so the ring needs no thread and no polling of its own.
//!
//! Buffers are one arena allocated at start and, where RLIMIT_MEMLOCK
//! allows, registered with the kernel (ReadFixed/WriteFixed): the packet
//! path allocates nothing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

/// user_data tags: the low 32 bits are the slot index.
const TAG_READ: u64 = 1 << 32;
const TAG_WRITE: u64 = 2 << 32;
const TAG_CANCEL: u64 = 3 << 32;

/// Counters of the ring (plain integers: one owner).
#[derive(Clone, Copy, Debug, Default)]
pub struct RingStats {
    pub read_errors: u64,
    pub write_errors: u64,
    /// Packets dropped because every write slot was in flight.
    pub write_full: u64,
    pub submits: u64,
}

pub struct TunRing {
    // Declared first: dropped before the arena it points into (Drop
    // also waits for every in-flight operation to finish).
    ring: IoUring,
    fd: RawFd,
    eventfd: OwnedFd,
    arena: Vec<u8>,
    slot_size: usize,
    reads: usize,
    fixed: bool,
    free_writes: Vec<u32>,
    /// Completed reads not yet handed out: (slot, length).
    ready: Vec<(u32, u32)>,
    in_flight: usize,
    unsubmitted: usize,
    stats: RingStats,
}

impl TunRing {
    /// Posts `reads` reads on `fd` and keeps `writes` write slots, each
    /// `slot_size` bytes. `fd` must outlive the ring.
    pub fn new(fd: RawFd, reads: usize, writes: usize, slot_size: usize) -> io::Result<Self> {
        let slots = reads + writes;
        let entries = (slots as u32).next_power_of_two().max(64);
        let ring = IoUring::builder().setup_cqsize(entries * 2).build(entries)?;
        // SAFETY: eventfd(2) with valid flags; the result is a new fd.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` was just created and is owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(efd)?;
        let mut arena = vec![0u8; slots * slot_size];
        let iovecs: Vec<libc::iovec> = arena
            .chunks_exact_mut(slot_size)
            .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: slot_size })
            .collect();
        // SAFETY: the iovecs point into `arena`, which lives (and never
        // reallocates) as long as the ring; Drop unregisters by closing it.
        let fixed = match unsafe { ring.submitter().register_buffers(&iovecs) } {
            Ok(()) => true,
            Err(e) => {
                // Without CAP_IPC_LOCK a small RLIMIT_MEMLOCK refuses this.
                tracing::debug!("TUN ring: buffers not registered ({e}); using plain reads and writes");
                false
            }
        };
        let mut me = Self {
            ring,
            fd,
            eventfd,
            arena,
            slot_size,
            reads,
            fixed,
            free_writes: (reads as u32..slots as u32).rev().collect(),
            ready: Vec::with_capacity(reads),
            in_flight: 0,
            unsubmitted: 0,
            stats: RingStats::default(),
        };
        for slot in 0..reads as u32 {
            me.post_read(slot)?;
        }
        me.submit()?;
        Ok(me)
    }

    /// Signalled (counter > 0) whenever completions are waiting.
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }

    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    fn slot_ptr(&mut self, slot: u32) -> *mut u8 {
        self.arena[slot as usize * self.slot_size..].as_mut_ptr()
    }

    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry built here points into `arena` (stable for the
        // ring's life) or at nothing; the fd outlives the ring by contract.
        while unsafe { self.ring.submission().push(sqe) }.is_err() {
            self.submit()?;
        }
        self.unsubmitted += 1;
        self.in_flight += 1;
        Ok(())
    }

    fn post_read(&mut self, slot: u32) -> io::Result<()> {
        if self.reads == 0 {
            return Ok(());
        }
        let (ptr, len, fd) = (self.slot_ptr(slot), self.slot_size as u32, types::Fd(self.fd));
        let sqe = if self.fixed {
            opcode::ReadFixed::new(fd, ptr, len, slot as u16).build()
        } else {
            opcode::Read::new(fd, ptr, len).build()
        };
        self.push(&sqe.user_data(TAG_READ | u64::from(slot)))
    }

    /// Copies one packet into a free slot and queues its write; false if
    /// the packet does not fit or every slot is in flight (dropped).
    pub fn queue_write(&mut self, pkt: &[u8]) -> bool {
        if pkt.len() > self.slot_size {
            self.stats.write_errors += 1;
            return false;
        }
        if self.free_writes.is_empty() {
            // Write completions may be waiting behind reads: collect them.
            let _ = self.submit();
            let _ = self.reap();
        }
        let Some(slot) = self.free_writes.pop() else {
            self.stats.write_full += 1;
            return false;
        };
        let start = slot as usize * self.slot_size;
        self.arena[start..start + pkt.len()].copy_from_slice(pkt);
        let (ptr, fd) = (self.slot_ptr(slot), types::Fd(self.fd));
        let sqe = if self.fixed {
            opcode::WriteFixed::new(fd, ptr, pkt.len() as u32, slot as u16).build()
        } else {
            opcode::Write::new(fd, ptr, pkt.len() as u32).build()
        };
        if self.push(&sqe.user_data(TAG_WRITE | u64::from(slot))).is_err() {
            self.free_writes.push(slot);
            self.stats.write_errors += 1;
            return false;
        }
        true
    }

    /// Hands everything queued to the kernel with one syscall.
    pub fn submit(&mut self) -> io::Result<()> {
        if self.unsubmitted == 0 {
            return Ok(());
        }
        self.ring.submit()?;
        self.unsubmitted = 0;
        self.stats.submits += 1;
        Ok(())
    }

    /// Collects completions: write slots are freed, reads wait in `ready`.
    /// Returns how many reads failed (the caller backs off before
    /// re-posting them, so a broken device cannot spin the shard).
    pub fn reap(&mut self) -> usize {
        let mut failed = 0;
        for cqe in self.ring.completion() {
            self.in_flight -= 1;
            let slot = (cqe.user_data() & 0xffff_ffff) as u32;
            match cqe.user_data() & !0xffff_ffff {
                TAG_READ if cqe.result() > 0 => self.ready.push((slot, cqe.result() as u32)),
                TAG_READ => {
                    self.stats.read_errors += 1;
                    failed += 1;
                    // Re-posted by `for_each_packet`, as an empty packet.
                    self.ready.push((slot, 0));
                }
                TAG_WRITE => {
                    if cqe.result() < 0 {
                        self.stats.write_errors += 1;
                    }
                    self.free_writes.push(slot);
                }
                _ => {}
            }
        }
        failed
    }

    /// Passes each packet read so far to `f`, then posts its read again.
    pub fn for_each_packet(&mut self, mut f: impl FnMut(&[u8])) {
        let ready = std::mem::take(&mut self.ready);
        for &(slot, len) in &ready {
            if len > 0 {
                let start = slot as usize * self.slot_size;
                f(&self.arena[start..start + len as usize]);
            }
            if let Err(e) = self.post_read(slot) {
                tracing::warn!("TUN ring: re-posting a read: {e}");
            }
        }
        self.ready = ready;
        self.ready.clear();
    }

    /// Cancels every posted read and waits (bounded) until the kernel is
    /// done with the arena; afterwards the ring does nothing. The TUN
    /// device can only go away once no read holds it.
    pub fn close(&mut self) -> bool {
        if self.reads == 0 {
            return self.in_flight == 0;
        }
        self.reads = 0;
        self.ready.clear();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(self.fd)).all())
            .build()
            .user_data(TAG_CANCEL);
        // SAFETY: a cancel entry carries no buffer.
        if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
            self.in_flight += 1;
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
}

impl Drop for TunRing {
    fn drop(&mut self) {
        if !self.close() {
            // The kernel may still write into the arena: never free it.
            tracing::warn!(in_flight = self.in_flight, "TUN ring: operations still in flight at exit; leaking its buffers");
            std::mem::forget(std::mem::take(&mut self.arena));
        }
    }
}
