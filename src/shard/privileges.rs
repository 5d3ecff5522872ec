//! Least privilege: once the TUN queues, the control and metrics sockets
//! and the steering program exist, the server becomes `run_as_user` /
//! `run_as_group` with only the capabilities it still needs:
//!
//! * CAP_NET_ADMIN: routes for iroutes on the TUN device, added and removed
//!   as sessions come and go;
//! * CAP_NET_BIND_SERVICE, when a port is below 1024: each shard's
//!   listeners, and the socket of each DTLS channel, bind the server's port;
//! * CAP_DAC_READ_SEARCH: logins and reloads read the password file, the
//!   per-user files, the key and the CRL, which ocserv installations keep
//!   readable by root only (ocserv reads them in its root process);
//! * CAP_BPF, only on kernels that refuse an unprivileged process any bpf()
//!   call: borrowed addresses and iroutes update the steering maps.
//!
//! Everything the server parses from clients (TLS, HTTP, XML, DTLS) then
//! runs as that user, and so do the connect and disconnect scripts, which
//! start with no capabilities at all.

use crate::config::Config;
use crate::sys::bpf::Steering;
use crate::sys::privs::{self, cap};

/// Drops root if `run_as_user` is set; before any other thread exists, so
/// every thread of the server runs with the result.
pub(crate) fn drop_root(cfg: &Config, steering: &Steering) -> Result<(), String> {
    let Some(target) = &cfg.run_as else {
        let (_, euid) = privs::uids();
        if euid == 0 {
            tracing::warn!("running as root: set [server] run_as_user (e.g. \"nobody\") to drop privileges after start");
        }
        return Ok(());
    };
    let mut keep = vec![cap::NET_ADMIN, cap::DAC_READ_SEARCH];
    let low_port = |p: u16| p != 0 && p < 1024;
    if low_port(cfg.raw.server.tcp_port) || low_port(cfg.raw.server.udp_port) {
        keep.push(cap::NET_BIND_SERVICE);
    }
    // io_uring's registered memory counts against it: no CAP_IPC_LOCK later.
    if let Err(e) = privs::unlimit_memlock() {
        tracing::debug!("RLIMIT_MEMLOCK stays: {e}");
    }
    let (_, euid) = privs::uids();
    if euid == 0 {
        privs::switch_user(target.uid, target.gid)
            .map_err(|e| format!("switching to {}: {e}", target.describe()))?;
    } else if euid != target.uid {
        return Err(format!(
            "started as uid {euid}, not root: cannot become {} (leave run_as_user empty, or run the server as that user)",
            target.describe()
        ));
    }
    // CAP_BPF out of the effective set but still permitted: may we update
    // the steering maps without it? (Kernels before 5.19 refuse every
    // bpf() call to an unprivileged process.)
    let with_bpf: Vec<u32> = keep.iter().copied().chain([cap::BPF]).collect();
    let set = |e: &[u32], p: &[u32]| {
        privs::set_capabilities(e, p).map_err(|err| format!("setting capabilities: {err}"))
    };
    set(&keep, &with_bpf)?;
    if let Err(e) = steering.can_update() {
        tracing::info!("the steering maps need CAP_BPF on this kernel ({e}): kept");
        keep.push(cap::BPF);
    }
    set(&keep, &keep)?;
    let (uid, euid) = privs::uids();
    if uid != target.uid || euid != target.uid {
        return Err(format!(
            "still uid {uid}/{euid} after switching to {}",
            target.describe()
        ));
    }
    let names: Vec<&str> = keep.iter().map(|c| cap::name(*c)).collect();
    tracing::info!(user = %target.user, uid, group = %target.group, gid = target.gid, capabilities = %names.join(" "), "privileges dropped");
    Ok(())
}
