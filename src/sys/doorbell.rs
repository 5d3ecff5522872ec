//! Wakes an idle shard when a packet arrives for its deferred receive ring.
//!
//! With deferred task work (`IORING_SETUP_DEFER_TASKRUN`) the kernel runs
//! a receive's completion only when the ring's thread enters the ring, so
//! a busy shard takes a whole batch in one enter and is not woken per
//! packet. But nothing then tells an idle shard that a packet came: on
//! kernel 6.18 the ring's eventfd is signalled through an RCU callback,
//! milliseconds late (perf/RESULTS.md, "deferred task work"), and polling
//! the ring's fd never fires. So every socket and the TUN queue that the
//! ring receives from is also in an epoll set (edge-triggered), and only
//! while the shard parks, a one-shot poll of that set waits on a small
//! plain ring whose completion signals the eventfd the executor reads.
//! Under load the poll is not armed: arrivals cost an epoll callback, no
//! wake-up.
//!
//! Order matters: a descriptor joins the epoll set before its receive is
//! posted, so on each arrival the receive's callback (newer, first in the
//! socket's wait queue) has marked work pending before the epoll one runs.
//! Parking clears the set, then looks for pending work, then arms the
//! poll: an arrival after the clearing either shows as work or fires it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types, IoUring};

/// user_data of the poll of the epoll set.
const POLL_TAG: u64 = 1;

pub(super) struct Doorbell {
    ring: IoUring,
    epoll: OwnedFd,
    /// The poll is posted and has not completed.
    armed: bool,
}

impl Doorbell {
    /// Its completions signal `eventfd`.
    pub(super) fn new(eventfd: RawFd) -> io::Result<Self> {
        let ring = IoUring::new(8)?;
        ring.submitter().register_eventfd(eventfd)?;
        // SAFETY: epoll_create1 with a valid flag; the result is a new fd.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ring,
            // SAFETY: `fd` was just created and is owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: false,
        })
    }

    /// Adds `fd` to the set (again is fine). A closed fd leaves the set
    /// by itself once the kernel drops the file.
    pub(super) fn watch(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: a valid epoll fd, an fd of the caller's, a valid event.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Forgets the arrivals seen so far (step one of parking).
    pub(super) fn clear(&mut self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        for _ in 0..1024 {
            // SAFETY: `events` has room for the 64 events asked for.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 64, 0) };
            if n < 64 {
                break;
            }
        }
    }

    /// Posts the poll of the set if it is not posted (last step of parking).
    pub(super) fn arm(&mut self) -> io::Result<()> {
        for cqe in self.ring.completion() {
            if cqe.user_data() == POLL_TAG {
                self.armed = false;
            }
        }
        if self.armed {
            return Ok(());
        }
        let sqe = opcode::PollAdd::new(types::Fd(self.epoll.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(POLL_TAG);
        // SAFETY: a poll entry carries no buffer.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))?;
        self.ring.submit()?;
        self.armed = true;
        Ok(())
    }
}
