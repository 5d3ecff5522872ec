//! One shard: its state, its tasks, and session bookkeeping.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::ConnectedSender;
use glommio::net::TcpListener;
use glommio::spawn_local;
use shards::{AppId, Cookie, SessionStore, ShardId};

use super::tunnel::{EndReason, Tunnel};
use super::{Links, ShardMsg, Shared};
use crate::pool::ShardPool;
use crate::usercfg::UserConfig;
use crate::proto::offload;
use crate::sys;
use crate::sys::recv_batch::RecvBatch;
use crate::sys::uring::{RxRing, TxRing};

/// A logged-in user's session; lives until logout or cookie expiry.
pub(crate) struct Session {
    pub(crate) user: String,
    /// The group the login chose (the password file's first, for now).
    pub(crate) group: Option<String>,
    pub(crate) lease: Ipv4Addr,
    /// The user's and group's files, read at login.
    pub(crate) policy: Rc<UserConfig>,
    pub(crate) tunnel: Option<Rc<Tunnel>>,
}

pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) shared: Arc<Shared>,
    /// This shard's TUN queue; read through `rx`, written through `tx`.
    pub(crate) tun_fd: RawFd,
    pub(crate) rx: RefCell<RxRing>,
    /// Every packet out of this shard (to the TUN queue or DTLS sockets).
    pub(crate) tx: RefCell<TxRing>,
    pool: RefCell<ShardPool>,
    sessions: RefCell<SessionStore<Session>>,
    /// Lease → live tunnel: the TUN dispatch table.
    pub(crate) tunnels: RefCell<HashMap<Ipv4Addr, Rc<Tunnel>>>,
    /// App-ID / Session-ID → live tunnel: where a ClientHello goes.
    dtls_tunnels: RefCell<HashMap<AppId, Rc<Tunnel>>>,
    peers: RefCell<Vec<Option<Rc<ConnectedSender<ShardMsg>>>>>,
    next_tunnel_id: Cell<u64>,
    /// Every tunnel's TLS reads land here first (see `stream`).
    pub(crate) tls_rbuf: RefCell<Vec<u8>>,
    pub(crate) segmenter: RefCell<super::tun::Segmenter>,
    /// The rest of a DTLS channel's burst lands here (see `dtls::run`).
    pub(crate) udp_batch: RefCell<RecvBatch>,
}

/// Reads kept posted on the TUN queue, and slots for packets out.
const TUN_READS: usize = 64;
const TX_SLOTS: usize = 512;
const LISTEN_BACKLOG: i32 = 1024;

const TICK: Duration = Duration::from_millis(100);
/// How long shutdown waits for clients to be told and sockets flushed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub(crate) async fn run_shard(id: ShardId, shared: Arc<Shared>, tun_fd: RawFd, links: Links) -> Result<(), String> {
    let cfg = &shared.config;
    let addr = std::net::SocketAddr::new(cfg.listen, cfg.raw.server.tcp_port);
    let listener = match sys::net::tcp_listener(addr, LISTEN_BACKLOG) {
        // SAFETY: a fresh listening socket that nobody else owns.
        Ok(fd) => unsafe { TcpListener::from_raw_fd(fd) },
        Err(e) => {
            // One shard down means the server is down: stop the others.
            shared.shutdown.store(true, Ordering::Release);
            return Err(format!("listening on {addr}: {e}"));
        }
    };
    let udp = if cfg.dtls_enabled() {
        let addr = std::net::SocketAddr::new(cfg.listen, cfg.raw.server.udp_port);
        let sock = sys::net::udp_socket(addr, None)
            .and_then(|fd| sys::net::reuseport_listeners_only(fd, shared.shards as u32).map(|()| fd));
        match sock {
            // SAFETY: a fresh socket that nobody else owns.
            Ok(fd) => Some(unsafe { glommio::net::UdpSocket::from_raw_fd(fd) }),
            Err(e) => {
                shared.shutdown.store(true, Ordering::Release);
                return Err(format!("UDP (DTLS) on {addr}: {e}"));
            }
        }
    } else {
        None
    };
    // Room for a packet of the TUN MTU plus any channel's framing.
    let slot = (usize::from(cfg.raw.network.mtu) + 128).max(2048);
    // With offloads one read may be a 64 KB super-packet.
    let read_slot = if shared.vnet_hdr { offload::VNET_HDR_LEN + offload::MAX_SUPER_PACKET } else { slot };
    let rings = RxRing::new(tun_fd, TUN_READS, read_slot).and_then(|rx| Ok((rx, TxRing::new(TX_SLOTS, slot)?)));
    let (rx, mut tx) = rings.map_err(|e| {
        shared.shutdown.store(true, Ordering::Release);
        format!("io_uring for the TUN queue: {e}")
    })?;
    tx.set_tun_gro(shared.offloads.map(|o| o == sys::tun::Offloads::TsoUso));
    let pool = ShardPool::new(cfg.ipv4_network, cfg.server_address(), id.index(), shared.shards);
    tracing::debug!(shard = %id, leases = pool.size(), "shard started");
    let shard = Rc::new(Shard {
        id,
        shared: shared.clone(),
        tun_fd,
        rx: RefCell::new(rx),
        tx: RefCell::new(tx),
        pool: RefCell::new(pool),
        sessions: RefCell::new(SessionStore::new()),
        tunnels: RefCell::new(HashMap::new()),
        dtls_tunnels: RefCell::new(HashMap::new()),
        peers: RefCell::new(Vec::new()),
        next_tunnel_id: Cell::new(u64::from(id.0) << 48),
        tls_rbuf: RefCell::new(vec![0; super::tunnel::TLS_READ_BUF]),
        segmenter: RefCell::new(super::tun::Segmenter::new()),
        udp_batch: RefCell::new(RecvBatch::new(super::dtls::RECV_BATCH - 1, usize::from(cfg.raw.network.mtu) + super::dtls::RECV_SLACK)),
    });

    // Receivers first: a sender's connect waits for its receiver's.
    for rx in links.from {
        let shard = shard.clone();
        spawn_local(async move {
            let rx = rx.connect().await;
            while let Some(msg) = rx.recv().await {
                match msg {
                    ShardMsg::Connect(h) => {
                        let s = shard.clone();
                        spawn_local(async move { super::conn::adopt(s, *h).await }).detach();
                    }
                    ShardMsg::DtlsHello { app_id, from, datagram } => super::dtls::start(&shard, app_id, from, datagram),
                }
            }
        })
        .detach();
    }
    let mut peers = Vec::with_capacity(links.to.len());
    for tx in links.to {
        peers.push(match tx {
            Some(tx) => Some(Rc::new(tx.connect().await)),
            None => None,
        });
    }
    *shard.peers.borrow_mut() = peers;
    shared.started.fetch_add(1, Ordering::AcqRel);
    spawn_local(super::tun::read_loop(shard.clone())).detach();
    if let Some(sock) = udp {
        spawn_local(super::udp::listen_loop(shard.clone(), sock)).detach();
    }
    let acceptor = shard.clone();
    spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let s = acceptor.clone();
                    spawn_local(super::conn::serve(s, stream)).detach();
                }
                Err(e) => {
                    tracing::warn!(shard = %acceptor.id, "accept: {e}");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .detach();

    let mut last_sweep = Instant::now();
    while !shared.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(TICK).await;
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_secs(1) {
            last_sweep = now;
            shard.housekeeping(now);
        }
    }
    shard.shutdown().await;
    shard.rx.borrow_mut().close();
    let (rx, tx) = (shard.rx.borrow().stats(), shard.tx.borrow().stats());
    tracing::info!(shard = %shard.id, ?rx, ?tx, "packet rings");
    Ok(())
}

impl Shard {
    pub(crate) fn next_tunnel_id(&self) -> u64 {
        let id = self.next_tunnel_id.get() + 1;
        self.next_tunnel_id.set(id);
        id
    }

    pub(crate) fn dtls_tunnel(&self, app_id: &AppId) -> Option<Rc<Tunnel>> {
        self.dtls_tunnels.borrow().get(app_id).cloned()
    }

    pub(crate) fn peer(&self, home: ShardId) -> Option<Rc<ConnectedSender<ShardMsg>>> {
        self.peers.borrow().get(home.index()).and_then(Option::clone)
    }

    /// A successful login: lease an address and issue a cookie.
    pub(crate) fn create_session(&self, user: String, group: Option<String>, policy: UserConfig) -> Result<Cookie, &'static str> {
        if !self.shared.clients.try_acquire() {
            return Err("the server has reached max_clients");
        }
        let Some(lease) = self.pool.borrow_mut().lease(None) else {
            self.shared.clients.release();
            return Err("no free tunnel address");
        };
        let mut random = [0u8; shards::cookie::COOKIE_RANDOM_LEN];
        if aws_lc_rs::rand::fill(&mut random).is_err() {
            self.pool.borrow_mut().release(lease);
            self.shared.clients.release();
            return Err("no randomness for a cookie");
        }
        let cookie = Cookie::new(self.id, random);
        tracing::info!(shard = %self.id, user = %user, group = group.as_deref().unwrap_or("-"), lease = %lease, "login: session created");
        let mut sessions = self.sessions.borrow_mut();
        // 128 random bits: a collision is not a case to handle.
        let _ = sessions.insert(cookie, Session { user, group, lease, policy: Rc::new(policy), tunnel: None });
        // Until the CONNECT arrives the cookie ages like a disconnected one.
        sessions.detach(&cookie, Instant::now() + self.shared.config.cookie_timeout());
        Ok(cookie)
    }

    /// Binds a CONNECT to its session; the older tunnel of the same cookie,
    /// if any, is superseded. Returns the session's user and lease.
    pub(crate) fn attach(&self, cookie: &Cookie, tunnel: &Rc<Tunnel>) {
        let mut sessions = self.sessions.borrow_mut();
        let Some(session) = sessions.get_mut(cookie) else { return };
        if let Some(old) = session.tunnel.replace(tunnel.clone()) {
            tracing::info!(user = %session.user, lease = %session.lease, "reconnect supersedes the previous tunnel");
            old.end(EndReason::Superseded);
        }
        sessions.attach(cookie);
        self.tunnels.borrow_mut().insert(tunnel.lease, tunnel.clone());
        if let Some(id) = tunnel.app_id {
            self.dtls_tunnels.borrow_mut().insert(id, tunnel.clone());
        }
    }

    pub(crate) fn session_lease(&self, cookie: &Cookie) -> Option<(String, Ipv4Addr, Rc<UserConfig>)> {
        self.sessions.borrow().get(cookie).map(|s| (s.user.clone(), s.lease, s.policy.clone()))
    }

    /// Called once when a tunnel's reader stops.
    pub(crate) fn tunnel_ended(&self, tunnel: &Rc<Tunnel>, reason: EndReason) {
        {
            let mut map = self.tunnels.borrow_mut();
            if map.get(&tunnel.lease).is_some_and(|t| t.id == tunnel.id) {
                map.remove(&tunnel.lease);
            }
        }
        if let Some(id) = tunnel.app_id {
            self.dtls_tunnels.borrow_mut().remove(&id);
        }
        let mut sessions = self.sessions.borrow_mut();
        let owns = sessions
            .get(&tunnel.cookie)
            .and_then(|s| s.tunnel.as_ref())
            .is_some_and(|t| t.id == tunnel.id);
        let stats = tunnel.stats();
        if !owns {
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, reason = %reason, rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, "tunnel closed (superseded)");
            return;
        }
        if reason.ends_session() {
            if let Some(s) = sessions.remove(&tunnel.cookie) {
                self.pool.borrow_mut().release(s.lease);
                self.shared.clients.release();
            }
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, reason = %reason, rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, "session ended, address released");
        } else {
            if let Some(s) = sessions.get_mut(&tunnel.cookie) {
                s.tunnel = None;
            }
            sessions.detach(&tunnel.cookie, Instant::now() + self.shared.config.cookie_timeout());
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, reason = %reason, rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, "tunnel closed; cookie kept for reconnect");
        }
    }

    fn housekeeping(&self, now: Instant) {
        let mut expired = Vec::new();
        self.sessions.borrow_mut().sweep_expired(now, |_, s| expired.push(s));
        for s in expired {
            self.pool.borrow_mut().release(s.lease);
            self.shared.clients.release();
            tracing::info!(user = %s.user, group = s.group.as_deref().unwrap_or("-"), lease = %s.lease, "cookie expired, address released");
        }
        let tunnels: Vec<_> = self.tunnels.borrow().values().cloned().collect();
        for t in tunnels {
            t.check_dpd(now);
        }
    }

    async fn shutdown(&self) {
        let tunnels: Vec<_> = self.tunnels.borrow().values().cloned().collect();
        for t in &tunnels {
            t.end(EndReason::ServerShutdown);
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !self.tunnels.borrow().is_empty() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        tracing::debug!(shard = %self.id, told = tunnels.len(), "shard stopped");
    }
}
