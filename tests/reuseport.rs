//! The bind()/connect() window of a per-client DTLS socket (design: a
//! ClientHello is answered from a socket bound to the shared port and
//! connect()ed to the client). Between its bind and its connect the new
//! socket is an ordinary member of the port's SO_REUSEPORT group; without
//! the group's cBPF program the kernel may hand it another client's
//! datagram, which the server must then route on. With the program
//! (sys::net::reuseport_listeners_only, or the eBPF steering of
//! sys::reuseport that replaces it) almost none arrive. Loopback only.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocserv_uring::sys::net::{reuseport_listeners_only, udp_socket};
use ocserv_uring::sys::reuseport::{DtlsPeers, DtlsSteering};

const LISTENERS: usize = 2;
const BLASTERS: usize = 16;
const CYCLES: usize = 400;

/// Runs CYCLES bind+connect cycles while BLASTERS other clients send to
/// the port; returns how many foreign datagrams the per-client sockets got.
#[derive(Clone, Copy, Debug)]
enum Program {
    None,
    /// By CPU among the listeners.
    Cbpf,
    /// The server's: listeners in a socket array, chosen by App-ID, peer
    /// or CPU.
    Ebpf,
}

fn strays(program: Program) -> usize {
    let lo = Ipv4Addr::LOCALHOST;
    let first = UdpSocket::from(udp_socket(SocketAddr::from((lo, 0)), None).unwrap());
    let port = first.local_addr().unwrap();
    let mut listeners = vec![first];
    for _ in 1..LISTENERS {
        listeners.push(UdpSocket::from(udp_socket(port, None).unwrap()));
    }
    // Alive as long as the listeners.
    let mut _steering = None;
    match program {
        Program::None => {}
        Program::Cbpf => {
            use std::os::fd::AsRawFd;
            reuseport_listeners_only(listeners[0].as_raw_fd(), LISTENERS as u32).unwrap();
        }
        Program::Ebpf => {
            use std::os::fd::AsFd;
            let peers = DtlsPeers::new().unwrap();
            let s = DtlsSteering::new(LISTENERS as u32, &peers).unwrap();
            for (i, l) in listeners.iter().enumerate() {
                s.add(i as u32, l.as_fd()).unwrap();
            }
            _steering = Some((peers, s));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..BLASTERS {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let s = UdpSocket::bind((lo, 0)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            for _ in 0..2_000_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let _ = s.send_to(b"other", port);
            }
        }));
    }
    // Keep the listeners drained, as the shards do.
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
    }
    let drain = |ls: &[UdpSocket]| {
        let mut buf = [0u8; 64];
        for l in ls {
            for _ in 0..256 {
                if l.recv(&mut buf).is_err() {
                    break;
                }
            }
        }
    };

    let mut foreign = 0;
    for _ in 0..CYCLES {
        let client = UdpSocket::bind((lo, 0)).unwrap();
        let own = UdpSocket::from(udp_socket(port, Some(client.local_addr().unwrap())).unwrap());
        client.send_to(b"mine", port).unwrap();
        // udp_socket makes it non-blocking; the wait below needs blocking
        // reads (loopback delivers from softirq, maybe a moment later).
        own.set_nonblocking(false).unwrap();
        own.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        // Everything queued on the connected socket, up to and including
        // the client's own datagram (which must arrive).
        loop {
            let n = own
                .recv(&mut buf)
                .expect("the client's own datagram reaches its socket");
            if &buf[..n] == b"mine" {
                break;
            }
            foreign += 1;
        }
        drain(&listeners);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    foreign
}

#[test]
fn no_stray_datagram_enters_a_per_client_socket() {
    // Control: without the program the window is real (how often depends
    // on timing, so it is reported, not asserted).
    eprintln!(
        "without a program: {} foreign datagrams in {CYCLES} cycles",
        strays(Program::None)
    );
    // Each program closes the window to all but a residue the kernel's
    // lookup still lets through now and then (0-1 in 400 cycles under this
    // blast, against 40-8000 without it). The server routes such a stray to
    // where the listener would have sent it (dtls.rs, on_datagram_from), so
    // none is lost; here the window must stay all but closed.
    for program in [Program::Cbpf, Program::Ebpf] {
        let n = strays(program);
        eprintln!("with {program:?}: {n} foreign datagrams in {CYCLES} cycles");
        assert!(
            n <= CYCLES / 40,
            "{program:?}: {n} foreign datagrams reached per-client sockets in {CYCLES} cycles"
        );
    }
}
