//! A shard's listening sockets: a TCP listener on each `listen` address
//! and, with DTLS, a UDP socket on each `udp_listen` address, all in the
//! shards' SO_REUSEPORT groups.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use glommio::net::TcpListener;
use shards::ShardId;

use crate::config::Config;
use crate::sys;

const LISTEN_BACKLOG: i32 = 1024;

/// The TCP listeners with their descriptors, the UDP sockets with their addresses.
type Sockets = (Vec<(TcpListener, RawFd)>, Vec<(OwnedFd, SocketAddr)>);

/// Socket activation: the same sockets for every shard (each its own
/// descriptor): connections and first ClientHellos go to whichever shard
/// asks first, as the service manager opened one socket of each.
pub(super) fn passed(p: &sys::activation::Passed) -> Result<Sockets, String> {
    let dup =
        |fd: &OwnedFd| sys::dup(fd.as_raw_fd()).map_err(|e| format!("socket activation: {e}"));
    let mut tcp = Vec::new();
    for (fd, _) in &p.tcp {
        let fd = dup(fd)?;
        let raw = fd.as_raw_fd();
        tcp.push((sys::adopt(fd), raw));
    }
    let mut udp = Vec::new();
    for (fd, local) in &p.udp {
        udp.push((dup(fd)?, *local));
    }
    Ok((tcp, udp))
}

/// Opens them all, or says which one failed. The IPv6 wildcard beside
/// other addresses (the default: both families) is skipped with a warning
/// where the host has no IPv6.
pub(super) fn open(
    cfg: &Config,
    shards: usize,
    id: ShardId,
    steering: Option<&sys::reuseport::DtlsGroups>,
) -> Result<Sockets, String> {
    let optional = |a: &IpAddr, list: &[IpAddr]| {
        *a == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) && list.len() > 1
    };
    let no_ipv6 = |e: &std::io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
        )
    };
    let mut tcp = Vec::new();
    for a in &cfg.listen {
        let addr = SocketAddr::new(*a, cfg.raw.server.tcp_port);
        match sys::net::tcp_listener(addr, LISTEN_BACKLOG) {
            Ok(fd) => {
                let raw = fd.as_raw_fd();
                tcp.push((sys::adopt(fd), raw));
            }
            Err(e) if optional(a, &cfg.listen) && no_ipv6(&e) => {
                if id.0 == 0 {
                    tracing::warn!("not listening on {addr}: {e} (no IPv6 here?)");
                }
            }
            Err(e) => return Err(format!("listening on {addr}: {e}")),
        }
    }
    let mut udp = Vec::new();
    if cfg.dtls_enabled() {
        for a in &cfg.udp_listen {
            let addr = SocketAddr::new(*a, cfg.raw.server.udp_port);
            let sock = sys::net::udp_socket(addr, None).and_then(|fd| {
                match steering.and_then(|s| s.group(*a)) {
                    Some(group) => group.add(u32::from(id.0), fd.as_fd())?,
                    None => sys::net::reuseport_listeners_only(fd.as_raw_fd(), shards as u32)?,
                }
                Ok(fd)
            });
            match sock {
                Ok(fd) => udp.push((fd, addr)),
                Err(e) if optional(a, &cfg.udp_listen) && no_ipv6(&e) => {
                    if id.0 == 0 {
                        tracing::warn!("no DTLS on {addr}: {e} (no IPv6 here?)");
                    }
                }
                Err(e) => return Err(format!("UDP (DTLS) on {addr}: {e}")),
            }
        }
    }
    Ok((tcp, udp))
}
