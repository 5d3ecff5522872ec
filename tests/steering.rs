//! The eBPF steering program sends a packet for an address owned by shard N
//! (pool.rs) to TUN queue N. Runs in a private network namespace made by
//! the test thread itself (needs root).

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};

use ocserv_uring::pool::owner_shard;
use ocserv_uring::proto::ip;
use ocserv_uring::sys::{bpf, tun};

#[test]
fn packets_for_shard_n_addresses_arrive_on_queue_n() {
    std::thread::spawn(|| {
        // SAFETY: unshare of the network namespace affects only this thread.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        for queues in [2usize, 3] {
            let dev = tun::TunDevice::open(&format!("steer{queues}"), queues, false).unwrap();
            dev.configure(Ipv4Addr::new(10, 123, queues as u8, 1), 24, 1400)
                .unwrap();
            let _prog = bpf::attach_steering(&dev.queues[0], queues as u32).unwrap();

            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            let targets: Vec<Ipv4Addr> = (2..=30)
                .map(|h| Ipv4Addr::new(10, 123, queues as u8, h))
                .collect();
            for t in &targets {
                for _ in 0..3 {
                    sock.send_to(b"steer", (*t, 9)).unwrap();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));

            // destination → queues it was read on
            let mut seen: HashMap<Ipv4Addr, Vec<usize>> = HashMap::new();
            let mut buf = [0u8; 2048];
            for (q, fd) in dev.queues.iter().enumerate() {
                use std::os::fd::AsRawFd;
                while let Some(n) = tun::read_packet(fd.as_raw_fd(), &mut buf).unwrap() {
                    if let Some(std::net::IpAddr::V4(dst)) = ip::route_key(&buf[..n], None) {
                        seen.entry(dst).or_default().push(q);
                    }
                }
            }
            for t in &targets {
                let qs = seen
                    .get(t)
                    .unwrap_or_else(|| panic!("no packet for {t} on any queue"));
                assert_eq!(qs.len(), 3, "{t}: {qs:?}");
                let want = owner_shard(*t, queues);
                assert!(
                    qs.iter().all(|q| *q == want),
                    "{t} owned by shard {want} but read on queues {qs:?}"
                );
            }
        }
    })
    .join()
    .unwrap();
}
