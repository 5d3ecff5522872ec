//! How fast a thread learns that a datagram arrived for its io_uring, by
//! the way it waits, with and without deferred task work
//! (IORING_SETUP_DEFER_TASKRUN). The measurement behind `sys/doorbell.rs`
//! (perf/RESULTS.md, "Why a doorbell").
//!
//!   cargo run --release --example deferred_wake -- MODE [defer]
//!
//! MODE: `enter` (io_uring_enter on the ring), `eventfd` (poll(2) on the
//! ring's eventfd), `helper` (another thread polls the eventfd and writes
//! a pipe the ring's thread reads), `ringfd` (poll(2) on the ring's fd),
//! `doorbell` (the socket in an epoll set, a one-shot poll of that set on
//! a second, plain ring that has the eventfd). 300 datagrams, one every
//! 2 ms; prints the send-to-seen latency percentiles in microseconds.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

const DATAGRAMS: usize = 300;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("enter", String::as_str).to_owned();
    let defer = args.iter().any(|a| a == "defer");
    let mut b = IoUring::builder();
    if defer {
        b.setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag();
    }
    let mut ring = b.build(64).expect("ring");
    let mut bell = IoUring::new(8).expect("doorbell ring");
    // SAFETY: eventfd(2) with valid flags.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    if mode == "doorbell" {
        bell.submitter().register_eventfd(efd).expect("eventfd");
    } else {
        ring.submitter().register_eventfd(efd).expect("eventfd");
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_nonblocking(true).expect("nonblocking");
    let to = sock.local_addr().expect("address");
    // SAFETY: epoll_create1 with a valid flag.
    let epfd = unsafe { libc::epoll_create1(0) };
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: valid descriptors and event.
    unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &raw mut ev) };
    let mut buf = vec![0u8; 2048];
    let arm = |ring: &mut IoUring, buf: &mut [u8]| {
        let sqe = opcode::Recv::new(types::Fd(sock.as_raw_fd()), buf.as_mut_ptr(), 2048)
            .build()
            .user_data(1);
        // SAFETY: `buf` outlives the receive (it is re-armed only after
        // its completion, and the ring goes first at exit).
        unsafe { ring.submission().push(&sqe).expect("room") };
        ring.submit().expect("submit");
    };
    arm(&mut ring, &mut buf);
    let mut pipe = [0i32; 2];
    // SAFETY: room for the two descriptors.
    unsafe { libc::pipe(pipe.as_mut_ptr()) };
    if mode == "helper" {
        let (from, to) = (efd, pipe[1]);
        std::thread::spawn(move || loop {
            let mut p = libc::pollfd {
                fd: from,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut n = [0u8; 8];
            // SAFETY: one pollfd, an 8-byte read, a 1-byte write.
            unsafe {
                libc::poll(&raw mut p, 1, 1000);
                libc::read(from, n.as_mut_ptr().cast(), 8);
                libc::write(to, [1u8].as_ptr().cast(), 1);
            }
        });
    }
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    std::thread::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..DATAGRAMS {
            std::thread::sleep(Duration::from_millis(2));
            log.lock().expect("log").push(Instant::now());
            tx.send_to(b"x", to).expect("send");
        }
    });
    let poll = |fd: i32| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        unsafe { libc::poll(&raw mut p, 1, 1000) };
    };
    let drain_eventfd = || {
        let mut n = [0u8; 8];
        // SAFETY: an 8-byte read into `n`.
        unsafe { libc::read(efd, n.as_mut_ptr().cast(), 8) };
    };
    let getevents = |ring: &IoUring| {
        // SAFETY: GETEVENTS only, no argument.
        let _ = unsafe { ring.submitter().enter::<libc::sigset_t>(0, 0, 1, None) };
    };
    let mut lat = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lat.len() < DATAGRAMS && Instant::now() < deadline {
        match mode.as_str() {
            "eventfd" => {
                poll(efd);
                drain_eventfd();
            }
            "helper" => {
                let mut c = [0u8; 64];
                // SAFETY: a read into `c`.
                unsafe { libc::read(pipe[0], c.as_mut_ptr().cast(), 64) };
            }
            "ringfd" => poll(ring.as_raw_fd()),
            "doorbell" => {
                getevents(&ring);
                if ring.completion().is_empty() {
                    // Clear the set, look again, then arm the poll.
                    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
                    // SAFETY: room for 16 events.
                    unsafe { libc::epoll_wait(epfd, evs.as_mut_ptr(), 16, 0) };
                    getevents(&ring);
                    if ring.completion().is_empty() {
                        let sqe = opcode::PollAdd::new(types::Fd(epfd), libc::POLLIN as u32)
                            .build()
                            .user_data(9);
                        // SAFETY: a poll entry carries no buffer.
                        unsafe { bell.submission().push(&sqe).expect("room") };
                        bell.submit().expect("submit");
                        poll(efd);
                        drain_eventfd();
                        bell.completion().for_each(drop);
                    }
                }
            }
            _ => {
                let _ = ring.submit_and_wait(1);
            }
        }
        let seen = Instant::now();
        getevents(&ring);
        let got = ring
            .completion()
            .filter(|c| c.user_data() == 1 && c.result() > 0)
            .count();
        for _ in 0..got {
            let at = sent.lock().expect("log")[lat.len()];
            lat.push(seen.duration_since(at).as_micros());
            arm(&mut ring, &mut buf);
        }
    }
    lat.sort_unstable();
    let n = lat.len();
    if n == 0 {
        println!("mode={mode} defer={defer}: nothing seen in 10 s");
        return;
    }
    println!(
        "mode={mode} defer={defer} seen={n} p50={} p90={} p99={} max={} us",
        lat[n / 2],
        lat[n * 9 / 10],
        lat[n * 99 / 100],
        lat[n - 1]
    );
}
