//! systemd socket activation (`sd_listen_fds`): the service manager opens
//! the listening sockets (a `.socket` unit's ListenStream= and
//! ListenDatagram=, as Debian's ocserv.socket) and passes them as fds 3
//! and up, with LISTEN_PID and LISTEN_FDS saying so.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::{Socket, Type};

/// The first passed descriptor (SD_LISTEN_FDS_START).
const FIRST: RawFd = 3;

/// The sockets passed to this process, by kind.
#[derive(Debug, Default)]
pub struct Passed {
    pub tcp: Vec<(OwnedFd, SocketAddr)>,
    pub udp: Vec<(OwnedFd, SocketAddr)>,
}

/// Takes the sockets passed to this process, if any (`None` when not
/// activated), and clears the variables so scripts do not inherit them.
/// A passed descriptor that is not a listening TCP or a UDP socket of
/// IPv4 or IPv6 is an error.
pub fn take() -> Result<Option<Passed>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let ours = pid
        .as_deref()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        return Ok(None);
    }
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY (of the call): single-threaded here, before any thread starts.
        std::env::remove_var(v);
    }
    let n: RawFd = fds
        .as_deref()
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| format!("LISTEN_FDS: expected 1 to 64 sockets, got {fds:?}"))?;
    let mut passed = Passed::default();
    for fd in FIRST..FIRST + n {
        // SAFETY: the service manager passed `fd` to this process alone, and
        // LISTEN_FDS was checked to be ours; nothing else takes it.
        let sock = unsafe { Socket::from_raw_fd(fd) };
        let what = |e: std::io::Error| format!("socket activation, fd {fd}: {e}");
        // Not for scripts the server runs.
        sock.set_cloexec(true).map_err(what)?;
        let local = sock
            .local_addr()
            .map_err(what)?
            .as_socket()
            .ok_or_else(|| format!("socket activation, fd {fd}: not an IPv4 or IPv6 socket"))?;
        match sock.r#type().map_err(what)? {
            Type::STREAM => {
                if !sock.is_listener().map_err(what)? {
                    return Err(format!(
                        "socket activation, fd {fd}: a TCP socket that does not listen"
                    ));
                }
                // Service managers pass it blocking: an accept with no
                // connection waiting would then stop the whole shard.
                sock.set_nonblocking(true).map_err(what)?;
                passed.tcp.push((OwnedFd::from(sock), local));
            }
            Type::DGRAM => {
                // Each DTLS channel's socket binds the same address.
                sock.set_reuse_address(true).map_err(what)?;
                sock.set_reuse_port(true).map_err(what)?;
                sock.set_nonblocking(true).map_err(what)?;
                passed.udp.push((OwnedFd::from(sock), local));
            }
            other => {
                return Err(format!(
                    "socket activation, fd {fd}: unexpected socket type {other:?}"
                ))
            }
        }
    }
    Ok(Some(passed))
}
