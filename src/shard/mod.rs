//! The glommio glue: one executor per shard, each owning its listener, its
//! TUN queue, its sessions and its slice of the address pool. glommio types
//! appear only under this directory.

mod accounting;
pub mod admin;
mod conn;
mod core;
mod dataplane;
mod dtls;
mod events;
pub mod guard;
mod inbox;
pub(crate) use inbox::Inbox;
mod leases;
mod limits;
mod listen;
mod login;
mod notify;
mod privileges;
pub(crate) use privileges::drop_root;
mod profile;
pub mod reload;
#[doc(hidden)]
pub mod scale;
mod stream;
mod tun;
mod tunnel;
mod udp;

use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shards::{GlobalLimit, PerKey, PerUser, ShardId};

use crate::config::Config;
use crate::sys;
use crate::tls::TlsSession;

/// Read-only state and cross-shard atomics, shared by all shards.
pub struct Shared {
    /// Replaced by a reload (`reload`); keys that need a restart keep
    /// their start values.
    pub config: crate::live::Live<Config>,
    pub tls: crate::live::Live<crate::tls::ServerTls>,
    pub clients: GlobalLimit,
    /// Sessions per user, for `max_same_clients`.
    pub per_user: PerUser,
    /// The App-IDs of each shard's live tunnels: a ClientHello that landed
    /// elsewhere is forwarded only for one of these.
    pub(crate) live_app_ids: LiveAppIds,
    /// Tunnel addresses, one slice per shard (see `pool`).
    pub pools: crate::pool::Pools,
    /// Control connections following `show events`.
    pub watchers: crate::watch::Watchers,
    /// Socket activation's sockets, which every shard serves.
    pub(crate) passed: Option<sys::activation::Passed>,
    /// Logins in progress per client address (`bans::key`), for
    /// `max_logins_per_address`.
    pub logins_by_addr: PerKey<std::net::IpAddr>,
    pub bans: crate::bans::Bans,
    /// The TUN steering program; its map sends iroutes to their shard.
    pub steering: sys::bpf::Steering,
    /// The DTLS port's reuseport programs: a ClientHello reaches the shard
    /// its App-ID names. `None` with socket activation, without DTLS, or
    /// where the kernel refused them (hellos are then forwarded).
    pub dtls_steering: Option<sys::reuseport::DtlsGroups>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Each shard's inbox: hand-offs, ClientHellos, admin commands.
    pub(crate) inboxes: Vec<Inbox>,
    /// Every iroute in use and the user it belongs to, so two sessions
    /// never claim one network (taken at login and session end only).
    pub iroutes: std::sync::Mutex<std::collections::HashMap<ipnet::IpNet, String>>,
    pub shutdown: AtomicBool,
    pub shards: usize,
    /// Shards listening and linked; "ready" is logged when all are.
    pub started: std::sync::atomic::AtomicUsize,
    /// TUN reads and writes carry a virtio_net_hdr (proto::offload).
    pub vnet_hdr: bool,
    /// What the TUN device took: writes may then merge packets likewise.
    pub offloads: Option<sys::tun::Offloads>,
    /// `OCSERV_URING_TEST_HOOKS=1`: requests that make the server panic on
    /// purpose, for the tests of `guard` only.
    pub(crate) test_hooks: bool,
}

/// Each shard's live App-IDs, behind one lock per shard: written when a
/// tunnel with DTLS starts and ends, read for a ClientHello that landed on
/// another shard's socket; never per packet.
pub(crate) struct LiveAppIds(Box<[std::sync::Mutex<std::collections::HashSet<shards::AppId>>]>);

impl LiveAppIds {
    pub(crate) fn new(shards: usize) -> Self {
        Self((0..shards).map(|_| std::sync::Mutex::default()).collect())
    }

    fn with<R>(
        &self,
        shard: ShardId,
        f: impl FnOnce(&mut std::collections::HashSet<shards::AppId>) -> R,
    ) -> Option<R> {
        let set = self.0.get(shard.index())?;
        // One insert or remove per lock: a poisoned set is still whole.
        Some(f(&mut set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    pub(crate) fn insert(&self, shard: ShardId, id: shards::AppId) {
        self.with(shard, |s| s.insert(id));
    }

    pub(crate) fn remove(&self, shard: ShardId, id: &shards::AppId) {
        self.with(shard, |s| s.remove(id));
    }

    /// Whether `shard` has a live tunnel with this App-ID.
    pub(crate) fn is_live(&self, shard: ShardId, id: &shards::AppId) -> bool {
        self.with(shard, |s| s.contains(id)).unwrap_or(false)
    }
}

/// A client connection moved to the shard that must serve it (the one
/// that owns its session or its address), with its socket and TLS state.
pub(crate) struct Handoff {
    fd: OwnedFd,
    tls: TlsSession,
    /// Plaintext that followed the last request.
    leftover: Vec<u8>,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
    what: Moved,
}

/// Why a connection moved.
pub(crate) enum Moved {
    /// A CONNECT whose cookie names another shard.
    Connect(crate::proto::http::RequestHead),
    /// A login whose session must live on the shard owning its
    /// `explicit-ipv4` address: the session is created there.
    Login(Box<core::Login>),
    /// A GET of the user-profile whose cookie names another shard.
    Profile(crate::proto::http::RequestHead),
    /// A request without the camouflage secret whose cookie names another
    /// shard: served there if the cookie is a session's.
    Revealed(Box<conn::Request>),
}

/// A ClientHello that landed on another shard's UDP socket.
pub(crate) struct DtlsHello {
    pub(crate) app_id: shards::AppId,
    pub(crate) from: std::net::SocketAddr,
    /// The server address it was sent to.
    pub(crate) local: std::net::SocketAddr,
    pub(crate) datagram: Vec<u8>,
}

/// What reaches a shard's inbox: migrations and admin commands, never
/// packets.
pub(crate) enum ShardMsg {
    Moved(Box<Handoff>),
    /// A ClientHello that landed on another shard's UDP socket.
    DtlsHello(Box<DtlsHello>),
    /// From the control thread (see `admin`).
    Admin(admin::AdminJob),
}

/// A started shard: its executor's thread.
pub(crate) struct ShardThread(glommio::ExecutorJoinHandle<Result<(), String>>);

/// Starts shard `i` on an executor thread of its own, pinned to CPU
/// `i % cpus`, serving TUN queue `tun_fd`; `wake` rings its inbox.
pub(crate) fn start(
    i: usize,
    shared: Arc<Shared>,
    tun_fd: RawFd,
    wake: OwnedFd,
    cpus: usize,
) -> Result<ShardThread, String> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(i % cpus))
        .name(&format!("shard-{i}"))
        // Password hashing and file reads run here, off the executor.
        .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(cpus.max(2)))
        .spawn(
            move || async move { core::run_shard(ShardId(i as u16), shared, tun_fd, wake).await },
        )
        .map(ShardThread)
        .map_err(|e| e.to_string())
}

impl ShardThread {
    /// Waits for the shard to end: its own error, or how its thread died.
    pub(crate) fn join(self) -> Result<(), String> {
        self.0.join().map_err(|e| e.to_string())?
    }
}
