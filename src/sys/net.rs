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
