//! The server as a whole: it loads the certificate, binds the control
//! socket, sets up the TUN device, drops privileges, starts one shard per
//! CPU (`shard`) and the services beside them (control socket, metrics,
//! RADIUS Disconnect/CoA), and waits for a signal to reload or stop.
//! Shards know nothing of these services; the services reach the shards
//! through the shards' inbox messages (`shard::admin`) and `Shared`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shards::{GlobalLimit, PerKey, PerUser};

use crate::config::Config;
use crate::shard::{self, Shared};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("TUN device {device}: {err}")]
    Tun { device: String, err: std::io::Error },
    #[error("control socket {path}: {err}")]
    Control {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error("metrics endpoint {addr}: {err}")]
    Metrics {
        addr: std::net::SocketAddr,
        err: std::io::Error,
    },
    #[error("RADIUS disconnect_listen {addr}: {err}")]
    Disconnect {
        addr: std::net::SocketAddr,
        err: std::io::Error,
    },
    #[error("starting shard {shard}: {err}")]
    Shard { shard: usize, err: String },
    #[error("dropping privileges (server.run_as_user): {0}")]
    Privileges(String),
}

/// Turns on requests that panic on purpose (the tests of `guard`).
const TEST_HOOKS_ENV: &str = "OCSERV_URING_TEST_HOOKS";

/// Runs the server until SIGTERM or SIGINT.
/// `passed`: the service manager's sockets (socket activation), served
/// instead of new ones.
pub fn run(config: Config, passed: Option<sys::activation::Passed>) -> Result<(), RunError> {
    let tls_cfg = &config.raw.tls;
    if tls_cfg.generate_self_signed
        && crate::tls::ensure_self_signed(&tls_cfg.cert_file, &tls_cfg.key_file)?
    {
        tracing::info!(cert = %tls_cfg.cert_file.display(), key = %tls_cfg.key_file.display(), "generated a self-signed certificate");
    }
    let (tls, pin, host_pins) = crate::tls::ServerTls::load(&config)?;
    tracing::info!("server certificate {pin} (for openconnect --servercert)");
    for (host, pin) in host_pins {
        tracing::info!(vhost = %host, "virtual host certificate {pin}");
    }

    // Bound before the TUN device exists: a second server on this socket
    // is refused before it can disturb the first one's device.
    let ctl_path = config.raw.control.socket.clone();
    let control = if ctl_path.as_os_str().is_empty() {
        None
    } else {
        Some(
            crate::control::bind(&ctl_path, config.control_gid).map_err(|err| {
                RunError::Control {
                    path: ctl_path.clone(),
                    err,
                }
            })?,
        )
    };
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some((
            addr,
            crate::metrics::bind(addr).map_err(|err| RunError::Metrics { addr, err })?,
        )),
        None => None,
    };
    let disconnect_listener = match config.radius.as_ref().and_then(|r| r.disconnect_listen) {
        Some(addr) => {
            Some(crate::dae::bind(addr).map_err(|err| RunError::Disconnect { addr, err })?)
        }
        None => None,
    };

    let n = config.workers;
    let device = config.raw.network.device.clone();
    let tun_err = |err| RunError::Tun {
        device: device.clone(),
        err,
    };
    let tun =
        sys::tun::TunDevice::open(&device, n, config.raw.network.tun_offload).map_err(tun_err)?;
    let offloads = if tun.vnet_hdr {
        match tun.enable_offloads() {
            Ok(which) => {
                tracing::info!(device = %device, ?which, "TUN offloads on");
                Some(which)
            }
            // Still correct: every read is then a single packet.
            Err(e) => {
                tracing::warn!(device = %device, "TUN offloads refused: {e}");
                None
            }
        }
    } else {
        None
    };
    tun.configure(
        config.server_address(),
        config.ipv4_network.prefix_len(),
        config.raw.network.mtu,
    )
    .map_err(tun_err)?;
    if let (Some(net), Some(addr)) = (
        config.ipv6_network,
        config.ipv6_for(config.server_address()),
    ) {
        tun.configure_v6(addr, net.prefix_len()).map_err(tun_err)?;
        // ocserv's server address is the network's first: answer there too.
        let first = std::net::Ipv6Addr::from(u128::from(net.network()) + 1);
        if first != addr {
            if let Err(e) = tun.configure_v6(first, net.prefix_len()) {
                tracing::warn!(device = %device, address = %first, "second IPv6 address: {e}");
            }
        }
        tracing::info!(device = %device, address = %addr, network = %net, "TUN device has IPv6");
    }
    let steering = sys::bpf::attach_steering(&tun.queues[0], n as u32).map_err(tun_err)?;
    tracing::info!(device = %device, address = %config.server_address(), network = %config.ipv4_network, queues = n, "TUN device up");
    let dtls_steering = if passed.is_none() && config.dtls_enabled() {
        match sys::reuseport::DtlsGroups::new(n as u32, &config.udp_listen) {
            Ok(g) => {
                tracing::info!("DTLS port steered by its reuseport program: each shard's clients share its socket");
                Some(g)
            }
            Err(e) => {
                tracing::warn!("DTLS steering: {e}; ClientHellos that reach another shard are forwarded to their own");
                None
            }
        }
    } else {
        None
    };
    // Before any other thread exists: they all start with the result.
    shard::drop_root(&config, &steering).map_err(RunError::Privileges)?;

    let mut inboxes = Vec::with_capacity(n);
    let mut wakes = Vec::with_capacity(n);
    for _ in 0..n {
        let (inbox, wake) = shard::Inbox::new().map_err(|e| RunError::Shard {
            shard: inboxes.len(),
            err: format!("inbox: {e}"),
        })?;
        inboxes.push(inbox);
        wakes.push(wake);
    }
    shard::guard::install_panic_hook();
    let test_hooks = std::env::var_os(TEST_HOOKS_ENV).is_some_and(|v| v == "1");
    if test_hooks {
        tracing::warn!("{TEST_HOOKS_ENV}=1: test hooks are on (requests can make the server panic); never in production");
    }
    block_shutdown_signals();
    let shared = Arc::new(Shared {
        clients: GlobalLimit::new(config.raw.session.max_clients),
        per_user: PerUser::new(),
        logins_by_addr: PerKey::new(),
        live_app_ids: shard::LiveAppIds::new(n),
        watchers: crate::watch::Watchers::default(),
        passed,
        pools: crate::pool::Pools::new(config.ipv4_network, config.server_address(), n),
        bans: crate::bans::Bans::new(config.ban_policy()),
        steering,
        dtls_steering,
        inboxes,
        metrics: Arc::new(crate::metrics::Metrics::new(n)),
        iroutes: std::sync::Mutex::new(std::collections::HashMap::new()),
        config: crate::live::Live::new(Arc::new(config)),
        tls: crate::live::Live::new(Arc::new(tls)),
        shutdown: AtomicBool::new(false),
        shards: n,
        started: std::sync::atomic::AtomicUsize::new(0),
        vnet_hdr: tun.vnet_hdr,
        offloads,
        test_hooks,
    });
    spawn_signal_waiter(shared.clone());

    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut handles = Vec::with_capacity(n);
    for (i, wake) in wakes.into_iter().enumerate() {
        let shared = shared.clone();
        let tun_fd: RawFd = tun.queues[i].as_raw_fd();
        let handle = shard::start(i, shared, tun_fd, wake, cpus)
            .map_err(|err| RunError::Shard { shard: i, err })?;
        handles.push(handle);
    }
    while shared.started.load(Ordering::Acquire) < n && !shared.shutdown.load(Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if shared.started.load(Ordering::Acquire) == n {
        if let Some(listener) = control {
            let group = shared.config.get().control_gid;
            crate::control::spawn(listener, shared.clone(), group).map_err(|err| {
                RunError::Control {
                    path: ctl_path.clone(),
                    err,
                }
            })?;
            tracing::info!(socket = %ctl_path.display(), "control socket ready");
        }
        if let Some(sock) = disconnect_listener {
            let addr = sock.local_addr().ok();
            crate::dae::spawn(sock, shared.clone()).map_err(|err| RunError::Disconnect {
                addr: addr.unwrap_or(([0, 0, 0, 0], 0).into()),
                err,
            })?;
            tracing::info!(addr = ?addr, "RADIUS Disconnect-Requests taken");
        }
        if let Some((addr, listener)) = metrics_listener {
            let s = shared.clone();
            let banned_now = move |m: &crate::metrics::Metrics| {
                let now = std::time::Instant::now();
                m.banned_now.set(s.bans.banned_count(now) as i64);
            };
            crate::metrics::spawn(listener, shared.metrics.clone(), banned_now)
                .map_err(|err| RunError::Metrics { addr, err })?;
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
        }
        tracing::info!(shards = n, "ocserv-uring ready");
    }
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        if let Err(err) = h.join() {
            first_err.get_or_insert(RunError::Shard { shard: i, err });
        }
    }
    drop(tun); // the device goes away with its last queue
    if !ctl_path.as_os_str().is_empty() {
        let _ = std::fs::remove_file(&ctl_path);
    }
    tracing::info!("stopped");
    first_err.map_or(Ok(()), Err)
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it
/// spawns, so only the waiter thread receives them.
fn block_shutdown_signals() {
    sys::signals::block_handled();
}

fn spawn_signal_waiter(shared: Arc<Shared>) {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let sig = sys::signals::wait_handled();
            if sig == libc::SIGHUP {
                if let Err(e) = shard::reload::reload(&shared) {
                    tracing::error!("reload failed, the running configuration stays: {e}");
                }
                continue;
            }
            tracing::info!(signal = sig, "shutting down: ending every session");
            shared.shutdown.store(true, Ordering::Release);
            break;
        })
        .expect("spawning the signal thread");
}
