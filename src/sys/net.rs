//! Listening sockets with the options glommio's `bind` leaves out.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A TCP listener in the shards' SO_REUSEPORT group. SO_REUSEADDR lets a
/// restarted server bind while old connections sit in TIME_WAIT.
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<RawFd> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(sock.into_raw_fd())
}

/// A UDP socket on the shared DTLS port. With `peer` it is also connect()ed,
/// so the kernel delivers that client's datagrams to it alone (a connected
/// socket beats the reuseport group in the lookup).
pub fn udp_socket(addr: SocketAddr, peer: Option<SocketAddr>) -> io::Result<RawFd> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    // Room for bursts while the shard is busy (capped by net.core.rmem_max).
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.bind(&addr.into())?;
    if let Some(peer) = peer {
        sock.connect(&peer.into())?;
    }
    Ok(sock.into_raw_fd())
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
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SKF_AD_OFF + SKF_AD_CPU (linux/filter.h): the ancillary "current CPU" load.
const SKF_AD_CPU: u32 = (-0x1000i32 + 36) as u32;
