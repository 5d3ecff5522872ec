//! Listening sockets with the options glommio's `bind` leaves out.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A TCP listener in the shards' SO_REUSEPORT group. SO_REUSEADDR lets a
/// restarted server bind while old connections sit in TIME_WAIT.
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // `::` beside `0.0.0.0`: each family on its own socket.
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(sock.into())
}

/// Takes a listening TCP socket out of service at once: it leaves the
/// port (and its reuseport group) even while an io_uring still holds it,
/// so a server started next gets every new connection.
pub fn stop_listening(fd: RawFd) {
    shutdown(fd);
}

/// Ends both directions of the socket `fd` (a pending read sees EOF).
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor the caller keeps open; at worst
    // it fails with EBADF or ENOTCONN, which changes nothing.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Whether the peer of the stream socket `fd` closed its end (a read
/// would return 0 now); peeks, takes nothing.
pub fn peer_closed(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer we own; a bad fd only makes recv fail.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

/// A UDP socket on the shared DTLS port. With `peer` it is also connect()ed,
/// so the kernel delivers that client's datagrams to it alone (a connected
/// socket beats the reuseport group in the lookup).
pub fn udp_socket(addr: SocketAddr, peer: Option<SocketAddr>) -> io::Result<OwnedFd> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A listener of `::` leaves IPv4 to `0.0.0.0`'s; a channel's socket
    // may talk to an IPv4 client through a dual-stack `::` (activation).
    if addr.is_ipv6() && peer.is_none() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    // Room for bursts while the shard is busy (capped by net.core.rmem_max).
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    if peer.is_none() {
        // The shard's socket carries all of its DTLS clients: past the
        // sysctl cap where CAP_NET_ADMIN allows.
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            let _ = force_buffer(sock.as_raw_fd(), opt, 4 << 20);
        }
    }
    sock.bind(&addr.into())?;
    if let Some(peer) = peer {
        sock.connect(&peer.into())?;
    }
    Ok(sock.into())
}

/// SO_RCVBUFFORCE / SO_SNDBUFFORCE: a buffer size above net.core.*mem_max.
fn force_buffer(fd: RawFd, opt: libc::c_int, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: the option reads an int from `bytes`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&raw const bytes).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ocserv's `net-priority`: a socket's packets get this SO_PRIORITY, or
/// this IP TOS (IPv6 traffic class) byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetPriority {
    Priority(u8),
    Tos(u8),
}

impl NetPriority {
    /// `0`-`6` (a priority) or `0x..` (a TOS byte), as ocserv writes it.
    pub fn parse(v: &str) -> Result<Self, String> {
        let bad = || format!("expected a priority 0-6 or a TOS byte like 0x20, got {v:?}");
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u8::from_str_radix(hex, 16)
                .map(Self::Tos)
                .map_err(|_| bad()),
            None => match v.parse::<u8>() {
                Ok(p) if p <= 6 => Ok(Self::Priority(p)),
                _ => Err(bad()),
            },
        }
    }
}

/// Sets `p` on the socket `fd` (the family's TOS option for a TOS byte).
pub fn set_net_priority(fd: RawFd, p: NetPriority) -> io::Result<()> {
    // SAFETY: `fd` is a socket the caller keeps open for the call; SockRef
    // only borrows it.
    let fd_ref = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&fd_ref);
    match p {
        NetPriority::Priority(v) => {
            let v = libc::c_int::from(v);
            // SAFETY: setsockopt reads one c_int of the size given.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_PRIORITY,
                    std::ptr::from_ref(&v).cast(),
                    size_of::<libc::c_int>() as u32,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        NetPriority::Tos(v) => match sock.local_addr()?.as_socket() {
            Some(SocketAddr::V6(_)) => sock.set_tclass_v6(u32::from(v)),
            _ => sock.set_tos(u32::from(v)),
        },
    }
}

/// Makes the reuseport group of `fd` pick among its first `listeners`
/// sockets only (by receiving CPU). Those are the shards' unconnected
/// sockets, bound first; a per-client socket joins the group between its
/// bind() and connect() and must never be chosen for another client's
/// datagram in that window.
pub fn reuseport_listeners_only(fd: RawFd, listeners: u32) -> io::Result<()> {
    // cBPF: A = cpu; A %= listeners; return A.
    let prog = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: SKF_AD_CPU,
        },
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: listeners.max(1),
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, both alive for the call; the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SKF_AD_OFF + SKF_AD_CPU (linux/filter.h): the ancillary "current CPU" load.
const SKF_AD_CPU: u32 = (-0x1000i32 + 36) as u32;
