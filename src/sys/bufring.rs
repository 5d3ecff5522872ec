//! A provided-buffer ring: buffers the kernel picks from when a multishot
//! receive completes, so one posted receive per socket serves every
//! datagram without a buffer of its own waiting per socket.
//!
//! The ring's entries sit in one page-aligned mapping (the kernel reads
//! them); the buffers in one arena. A buffer handed out by a completion
//! is the caller's until `give_back`, and the kernel sees it again after
//! `publish`.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

pub(super) struct BufRing {
    entries: *mut BufRingEntry,
    map_len: usize,
    arena: Vec<u8>,
    buf_size: usize,
    count: u16,
    /// Next entry to fill; the kernel sees entries up to it after `publish`.
    tail: u16,
}

impl BufRing {
    /// `count` (a power of two, at most 32768) buffers of `buf_size` bytes,
    /// registered with `ring` as buffer group `group`, all handed to the kernel.
    pub(super) fn new(ring: &IoUring, group: u16, count: u16, buf_size: usize) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let map_len = usize::from(count) * size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut me = Self {
            entries: map.cast(),
            map_len,
            arena: vec![0; usize::from(count) * buf_size],
            buf_size,
            count,
            tail: 0,
        };
        // SAFETY: the mapping is page-aligned, `count` entries long, and
        // lives (unmapped in Drop) as long as `me`; the owner drops or
        // quiesces the ring before the BufRing (see `uring::RxRing`).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(map as u64, count, group, 0)?
        };
        for bid in 0..count {
            me.give_back(bid);
        }
        me.publish();
        Ok(me)
    }

    /// Buffer `bid` as the kernel filled it (`None` for an unknown id).
    pub(super) fn get(&mut self, bid: u16) -> Option<&mut [u8]> {
        let start = usize::from(bid) * self.buf_size;
        self.arena.get_mut(start..start + self.buf_size)
    }

    /// Queues buffer `bid` for the kernel again (seen after `publish`).
    pub(super) fn give_back(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let addr = self.arena[usize::from(bid) * self.buf_size..].as_mut_ptr();
        let i = usize::from(self.tail & (self.count - 1));
        // SAFETY: `i` < count, inside the mapping. Only the address, length
        // and id are written: entry 0's last field is the shared tail.
        let e = unsafe { &mut *self.entries.add(i) };
        e.set_addr(addr as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back so far visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: the tail field of entry 0, inside the mapping, is a u16
        // the kernel reads with acquire semantics; this is its only writer.
        let tail = unsafe { &*BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Keeps the arena and mapping alive forever: the kernel may still
    /// write into them (operations in flight at exit).
    pub(super) fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.arena));
        self.map_len = 0;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: the mapping made in `new`, not used after this.
            unsafe { libc::munmap(self.entries.cast(), self.map_len) };
        }
    }
}
