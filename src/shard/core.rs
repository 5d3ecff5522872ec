//! One shard: its state, its tasks, and session bookkeeping.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use glommio::net::TcpListener;
use glommio::spawn_local;
use shards::{AppId, Cookie, SessionStore, ShardId};

use super::accounting::Status::{Start, Stop};
use super::admin::{self, AdminCmd, AdminReply, SessionInfo, Target, Totals};
use super::limits;
use super::tunnel::{EndReason, Stats, Tunnel};
use super::{ShardMsg, Shared};
use crate::proto::offload;
use crate::proto::timers::Deadlines;
use crate::sys;
use crate::sys::uring::{RxRing, TxRing};
use crate::usercfg::UserConfig;

/// A logged-in user's session; lives until logout or cookie expiry.
pub(crate) struct Session {
    pub(crate) user: String,
    /// The group the login chose (the password file's first, for now).
    pub(crate) group: Option<String>,
    /// Leased at the first CONNECT; `None` until then.
    pub(crate) lease: Option<Ipv4Addr>,
    /// The user's and group's files, read at login.
    pub(crate) policy: Rc<UserConfig>,
    pub(crate) tunnel: Option<Rc<Tunnel>>,
    /// Login time: reconnects never move it.
    pub(crate) started: Instant,
    /// `session_timeout` after `started`.
    pub(crate) ends_at: Option<Instant>,
    /// The login came from a phone or tablet (`mobile_idle_timeout`).
    pub(crate) mobile: bool,
    /// Stable across reconnects; `ctl show id` / `disconnect id`.
    pub(crate) id: u64,
    pub(crate) started_wall: SystemTime,
    pub(crate) user_agent: String,
    /// Traffic of the tunnels that came and went before the current one.
    pub(crate) past: Stats,
    /// The client's address at its latest CONNECT; `None` until the first,
    /// so also "a tunnel came up" (the connect script ran).
    pub(crate) last_peer: Option<std::net::SocketAddr>,
    /// The server address of the latest CONNECT (IP_REAL_LOCAL).
    pub(crate) last_local: Option<std::net::SocketAddr>,
    /// `X-CSTP-Hostname` of the latest CONNECT.
    pub(crate) hostname: String,
    /// The client's address at login (`deny-roaming`).
    pub(crate) login_ip: IpAddr,
    /// occtl's session ID: base64 of the cookie's SHA-1 (one way, so it
    /// can be shown and typed without giving the cookie away).
    pub(crate) safe_id: String,
    /// A verified client certificate named the user.
    pub(crate) cert_auth: bool,
    /// The virtual host the login came to; `None`: the default one.
    pub(crate) vhost: Option<Arc<str>>,
    /// Holds one of its user's `max_same_clients` places: from its CONNECT
    /// until its tunnel is gone (as ocserv counts connected clients).
    pub(crate) counted: bool,
    /// Who checked the login (`plain`, `certificate`, `radius`).
    pub(crate) backend: &'static str,
    pub(crate) class: Vec<Vec<u8>>,
    /// RADIUS accounting: when the next Interim-Update is due, from the
    /// Start on.
    pub(crate) next_interim: Option<Instant>,
}

impl shards::UserSession for Session {
    fn user(&self) -> &str {
        &self.user
    }
}

/// A route as ocserv shows one: IPv4 with its netmask, IPv6 with its
/// prefix length.
fn occtl_route(n: &IpNet) -> String {
    match n {
        IpNet::V4(n) => format!("{}/{}", n.network(), n.netmask()),
        IpNet::V6(n) => n.to_string(),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// occtl's session ID of `cookie`.
pub(crate) fn safe_id(cookie: &Cookie) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        cookie.to_string().as_bytes(),
    );
    crate::tls::base64(digest.as_ref())
}

/// An address in a log line, `-` when there is none.
pub(crate) struct OrDash<T>(pub(crate) Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Why a CONNECT got no address.
#[derive(Debug)]
pub(crate) enum LeaseError {
    /// The cookie names no live session.
    NoSession,
    /// The session stays; the client is told this.
    Refused(&'static str),
}

/// What a CONNECT needs to know about its session.
pub(crate) struct SessionView {
    pub(crate) user: String,
    pub(crate) group: Option<String>,
    pub(crate) lease: Ipv4Addr,
    pub(crate) policy: Rc<UserConfig>,
    pub(crate) ends_at: Option<Instant>,
    pub(crate) mobile: bool,
    pub(crate) vhost: Option<Arc<str>>,
}

/// Who logs in, as the login found them.
pub(crate) struct Login {
    pub(crate) user: String,
    pub(crate) group: Option<String>,
    pub(crate) policy: UserConfig,
    pub(crate) mobile: bool,
    pub(crate) user_agent: String,
    pub(crate) cert_auth: bool,
    /// The user-profile the login announces.
    pub(crate) profile: Option<crate::usercfg::Profile>,
    /// The virtual host the client's TLS hello named; `None`: the default.
    pub(crate) vhost: Option<Arc<str>>,
    /// Who checked the login: `plain`, `certificate`, `radius`.
    pub(crate) backend: &'static str,
    /// RADIUS Class attributes, echoed in accounting.
    pub(crate) class: Vec<Vec<u8>>,
}

pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) shared: Arc<Shared>,
    /// This shard's TUN queue; read through `rx`, written through `tx`.
    pub(crate) tun_fd: RawFd,
    pub(crate) rx: RefCell<RxRing>,
    /// Every packet out of this shard (to the TUN queue or DTLS sockets).
    pub(crate) tx: RefCell<TxRing>,
    pub(super) sessions: RefCell<SessionStore<Session>>,
    /// Lease → live tunnel: the TUN dispatch table.
    pub(crate) tunnels: RefCell<HashMap<Ipv4Addr, Rc<Tunnel>>>,
    /// Networks behind this shard's clients (iroute) and their leases;
    /// looked at only when a destination is no lease.
    pub(super) iroutes: RefCell<Vec<(IpNet, Ipv4Addr)>>,
    /// IPv6 addresses of per-user `ipv6-network`s (outside the server's,
    /// so not found by their low 32 bits) → their leases.
    pub(super) leases6: RefCell<HashMap<std::net::Ipv6Addr, Ipv4Addr>>,
    /// App-ID / Session-ID → live tunnel: where a ClientHello goes.
    dtls_tunnels: RefCell<HashMap<AppId, Rc<Tunnel>>>,
    /// The shard's sockets on the DTLS port when its channels share them
    /// (with the reuseport program; `udp.rs`), by bound address.
    pub(super) dtls_sockets: Vec<(std::net::SocketAddr, OwnedFd)>,
    /// Client address → its channel on a shared socket.
    pub(super) dtls_peers: RefCell<HashMap<std::net::SocketAddr, super::udp::PeerChannel>>,
    /// When each tunnel's timers (and interim update) are next due, by
    /// lease and tunnel id: a sweep visits only what is due.
    pub(super) timer_queue: RefCell<Deadlines<(Ipv4Addr, u64)>>,
    next_tunnel_id: Cell<u64>,
    /// Test hooks only: the shard's own loop panics at its next tick.
    pub(crate) panic_next_tick: Cell<bool>,
    /// `[server] batch_wait_us`, taken from the configuration every loop
    /// tick (so a reload applies) rather than read per batch.
    pub(crate) batch_wait: Cell<Duration>,
    /// Connections here that have not become tunnels yet (`LoginSlot`).
    pub(crate) logins: Cell<usize>,
    /// Every tunnel's TLS reads land here first (see `stream`).
    pub(crate) tls_rbuf: RefCell<Vec<u8>>,
    pub(crate) segmenter: RefCell<super::tun::Segmenter>,
    /// DTLS sockets whose receives complete on `rx`.
    pub(crate) receivers: RefCell<super::dataplane::Receivers>,
    /// Packets and bytes by channel, published to the metrics each tick.
    pub(crate) traffic: crate::metrics::Traffic,
    /// `ipv6_network`, fixed for the process: the TUN dispatch reads it
    /// per packet.
    pub(crate) ipv6_network: Option<ipnet::Ipv6Net>,
}

/// Reads kept posted on the TUN queue, and slots for packets out.
const TUN_READS: usize = 64;
const TX_SLOTS: usize = 512;
/// Buffers the DTLS sockets' receives share: a receive with none free
/// stops and is armed again once the batch in hand is handled.
const DATAGRAM_BUFFERS: u16 = 1024;

/// The shard loop's tick: timer sweeps (the wheel's ticks are as wide).
const TICK: Duration = Duration::from_millis(100);
/// A new tunnel's first timer check; later ones come when due.
const FIRST_TIMER_CHECK: Duration = Duration::from_secs(1);
/// A checked tunnel is looked at again at least this often, whatever its
/// deadlines say.
const MAX_TIMER_GAP: Duration = Duration::from_secs(60);
/// How long shutdown waits for clients to be told and sockets flushed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let s = shard.clone();
                super::guard::spawn(&shard, "login", super::login::serve(s, stream));
            }
            Err(e) => {
                tracing::warn!(shard = %shard.id, "accept: {e}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub(crate) async fn run_shard(
    id: ShardId,
    shared: Arc<Shared>,
    tun_fd: RawFd,
    wake: OwnedFd,
) -> Result<(), String> {
    let _closer = super::inbox::CloseOnExit::new(&shared, id);
    let cfg = shared.config.get();
    let cfg = &*cfg;
    let opened = match &shared.passed {
        Some(p) => super::listen::passed(p),
        None => super::listen::open(cfg, shared.shards, id, shared.dtls_steering.as_ref()),
    };
    let (listeners, udp) = match opened {
        Ok(s) => s,
        Err(e) => {
            // One shard down means the server is down: stop the others.
            shared.shutdown.store(true, Ordering::Release);
            return Err(e);
        }
    };
    // With the reuseport program the shard's DTLS channels share its
    // sockets; without it each gets one connect()ed to its client.
    let (dtls_sockets, hello_sockets) = if shared.dtls_steering.is_some() {
        (udp.into_iter().map(|(fd, a)| (a, fd)).collect(), Vec::new())
    } else {
        (Vec::new(), udp)
    };
    // Room for a packet of the TUN MTU plus any channel's framing.
    let slot = (usize::from(cfg.raw.network.mtu) + 128).max(2048);
    // With offloads one read may be a 64 KB super-packet.
    let read_slot = if shared.vnet_hdr {
        offload::VNET_HDR_LEN + offload::MAX_SUPER_PACKET
    } else {
        slot
    };
    let datagrams = (
        DATAGRAM_BUFFERS,
        usize::from(cfg.raw.network.mtu) + super::dtls::RECV_SLACK,
    );
    let rings = RxRing::new(tun_fd, TUN_READS, read_slot, datagrams)
        .and_then(|rx| Ok((rx, TxRing::new(TX_SLOTS, slot)?)));
    let (rx, mut tx) = rings.map_err(|e| {
        shared.shutdown.store(true, Ordering::Release);
        format!("io_uring for the TUN queue and DTLS receives: {e}")
    })?;
    tx.set_tun_gro(shared.offloads.map(|o| o == sys::tun::Offloads::TsoUso));
    tracing::debug!(shard = %id, "shard started");
    let shard = Rc::new(Shard {
        id,
        shared: shared.clone(),
        tun_fd,
        rx: RefCell::new(rx),
        tx: RefCell::new(tx),
        sessions: RefCell::new(SessionStore::new()),
        tunnels: RefCell::new(HashMap::new()),
        iroutes: RefCell::new(Vec::new()),
        leases6: RefCell::new(HashMap::new()),
        dtls_tunnels: RefCell::new(HashMap::new()),
        dtls_sockets,
        dtls_peers: RefCell::new(HashMap::new()),
        timer_queue: RefCell::new(Deadlines::new(Instant::now())),
        next_tunnel_id: Cell::new(u64::from(id.0) << 48),
        logins: Cell::new(0),
        panic_next_tick: Cell::new(false),
        batch_wait: Cell::new(Duration::ZERO),
        tls_rbuf: RefCell::new(vec![0; super::tunnel::TLS_READ_BUF]),
        segmenter: RefCell::new(super::tun::Segmenter::new()),
        receivers: RefCell::new(super::dataplane::Receivers::default()),
        traffic: crate::metrics::Traffic::default(),
        ipv6_network: cfg.ipv6_network,
    });

    spawn_local(super::inbox::serve(shard.clone(), wake)).detach();
    shared.started.fetch_add(1, Ordering::AcqRel);
    shard.refresh_batch_wait();
    spawn_local(super::dataplane::run(shard.clone())).detach();
    for (local, sock) in &shard.dtls_sockets {
        use std::os::fd::AsRawFd;
        let mut receivers = shard.receivers.borrow_mut();
        receivers.register_socket(sock.as_raw_fd(), *local);
    }
    super::dataplane::sync_receivers(&shard);
    for (sock, local) in hello_sockets {
        let sock = sys::adopt(sock);
        spawn_local(super::udp::listen_loop(shard.clone(), sock, local)).detach();
    }
    // Our own listeners (not a service manager's, which outlive us): shut
    // at shutdown, since the accept loops keep them open until the
    // process is gone, and after that until the kernel has let go of the
    // io_uring that waits on them, a restart's new listeners would share
    // connections with them.
    let own_listeners: Vec<RawFd> = if shared.passed.is_none() {
        listeners.iter().map(|(_, fd)| *fd).collect()
    } else {
        Vec::new()
    };
    for (listener, _) in listeners {
        spawn_local(accept_loop(shard.clone(), listener)).detach();
    }

    let mut last_sweep = Instant::now();
    while !shared.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(TICK).await;
        assert!(
            !shard.panic_next_tick.get(),
            "test hook: a panic in the shard's own loop"
        );
        let now = Instant::now();
        shard.refresh_batch_wait();
        // The timer wheel's ticks are this loop's.
        shard.sweep_timers(now);
        if now.duration_since(last_sweep) >= Duration::from_secs(1) {
            last_sweep = now;
            shard.housekeeping(now);
            shard.publish_metrics();
        }
    }
    for fd in own_listeners {
        sys::net::stop_listening(fd);
    }
    shard.shutdown().await;
    shard.rx.borrow_mut().close();
    let (rx, tx) = (shard.rx.borrow().stats(), shard.tx.borrow().stats());
    tracing::info!(shard = %shard.id, ?rx, ?tx, "packet rings");
    Ok(())
}

impl Shard {
    pub(crate) fn metrics(&self) -> &crate::metrics::ShardMetrics {
        &self.shared.metrics.shards[self.id.index()]
    }

    fn refresh_batch_wait(&self) {
        let us = self.shared.config.get().raw.server.batch_wait_us;
        self.batch_wait.set(Duration::from_micros(us.into()));
    }

    fn publish_metrics(&self) {
        let m = self.metrics();
        self.traffic
            .publish(m, glommio::executor().executor_stats().executor_runtime());
        let sessions = self.sessions.borrow();
        let connected = sessions.iter().filter(|(_, s)| s.tunnel.is_some()).count();
        m.connected.set(connected as i64);
        m.waiting.set((sessions.len() - connected) as i64);
    }

    pub(crate) fn next_tunnel_id(&self) -> u64 {
        let id = self.next_tunnel_id.get() + 1;
        self.next_tunnel_id.set(id);
        id
    }

    pub(crate) fn dtls_tunnel(&self, app_id: &AppId) -> Option<Rc<Tunnel>> {
        self.dtls_tunnels.borrow().get(app_id).cloned()
    }

    /// A successful login: count it against the limits, lease an address
    /// and issue a cookie. The error is the reason told to the client.
    pub(crate) fn create_session(
        &self,
        login: Login,
        peer: std::net::SocketAddr,
    ) -> Result<Cookie, &'static str> {
        let cfg = self.config_of(login.vhost.as_deref());
        let cfg = &*cfg;
        let Login {
            user,
            group,
            policy,
            mobile,
            user_agent,
            cert_auth,
            profile: _,
            vhost,
            backend,
            class,
        } = login;
        if !self
            .shared
            .clients
            .try_acquire_up_to(cfg.raw.session.max_clients)
        {
            return Err("The server has reached max_clients");
        }
        let mut random = [0u8; shards::cookie::COOKIE_RANDOM_LEN];
        if aws_lc_rs::rand::fill(&mut random).is_err() {
            self.shared.clients.release();
            return Err("No randomness for a cookie");
        }
        let cookie = Cookie::new(self.id, random);
        let now = Instant::now();
        let timeout = policy
            .session_timeout
            .unwrap_or(cfg.raw.session.session_timeout);
        let ends_at = (timeout > 0).then(|| now + Duration::from_secs(timeout));
        let id = self.next_tunnel_id();
        let session = Session {
            user,
            group,
            lease: None,
            policy: Rc::new(policy),
            tunnel: None,
            started: now,
            ends_at,
            mobile,
            id,
            started_wall: SystemTime::now(),
            user_agent,
            past: Stats::default(),
            last_peer: None,
            hostname: String::new(),
            login_ip: peer.ip(),
            safe_id: safe_id(&cookie),
            cert_auth,
            vhost,
            counted: false,
            last_local: None,
            backend,
            class,
            next_interim: None,
        };
        super::events::login(self, peer, &session);
        let expires = self.detach_deadline(&session, now);
        let mut sessions = self.sessions.borrow_mut();
        // 128 random bits: a collision is not a case to handle.
        let _ = sessions.insert(cookie, session);
        // Until the CONNECT arrives the cookie ages like a disconnected one.
        sessions.detach(&cookie, expires);
        Ok(cookie)
    }

    /// The configuration of virtual host `vhost` (`None`: the default).
    pub(crate) fn config_of(&self, vhost: Option<&str>) -> Arc<crate::config::Config> {
        self.shared.config.get().vhost(vhost)
    }

    /// When a detached session's cookie dies: `cookie_timeout` from now,
    /// but never past the session's own end.
    fn detach_deadline(&self, s: &Session, now: Instant) -> Instant {
        let d = now + self.config_of(s.vhost.as_deref()).cookie_timeout();
        s.ends_at.map_or(d, |end| end.min(d))
    }

    /// The connect script's job, if one is set and this is the session's
    /// first CONNECT.
    pub(crate) fn connect_job(
        &self,
        cookie: &Cookie,
        (peer, local): (std::net::SocketAddr, std::net::SocketAddr),
        hostname: &str,
    ) -> Option<super::events::ScriptJob> {
        let mut sessions = self.sessions.borrow_mut();
        let s = sessions.get_mut(cookie).filter(|s| s.last_peer.is_none())?;
        s.last_local = Some(local);
        // A user file's hostname wins over the client's.
        s.hostname = s
            .policy
            .hostname
            .clone()
            .unwrap_or_else(|| hostname.to_owned());
        super::events::connect_job(self, s, peer)
    }

    /// Ends a session that has no tunnel (a connect script refused it).
    pub(crate) fn drop_session(&self, cookie: &Cookie, reason: &str) {
        let removed = self.sessions.borrow_mut().remove(cookie);
        if let Some(s) = removed {
            self.end_session(&s, &s.past, reason);
        }
    }

    /// A session is over: give back what it held, log it, run the
    /// disconnect script.
    fn end_session(&self, s: &Session, stats: &Stats, reason: &str) {
        self.release(s);
        super::events::disconnect(self, s, stats, reason);
        // Only a session whose Start went out gets a Stop.
        if s.last_peer.is_some() {
            let cfg = self.config_of(s.vhost.as_deref());
            if let Some(radius) = cfg.accounting() {
                super::accounting::send(self, radius, s, Stop(stats, reason));
            }
        }
    }

    /// Gives back everything a session held.
    fn release(&self, s: &Session) {
        self.release_lease(s);
        self.shared.clients.release();
        if s.counted {
            self.shared.per_user.release(&s.user);
        }
    }

    /// A CONNECT takes one of its user's `max_same_clients` places (a
    /// reconnect of a session with a tunnel up already holds one). The
    /// error is what the client is told.
    pub(crate) fn take_place(&self, cookie: &Cookie) -> Result<(), &'static str> {
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.get_mut(cookie) else {
            return Ok(());
        };
        if s.counted {
            return Ok(());
        }
        let max = s.policy.max_same_clients.unwrap_or(
            self.config_of(s.vhost.as_deref())
                .raw
                .session
                .max_same_clients,
        );
        match self.shared.per_user.try_acquire(&s.user, max) {
            Ok(_) => {
                s.counted = true;
                Ok(())
            }
            Err(have) => {
                tracing::info!(user = %s.user, connected = have, max_same_clients = max, "CONNECT refused: max_same_clients");
                Err("Too many sessions for this user (max_same_clients)")
            }
        }
    }

    /// Gives back the place `take_place` took, while no tunnel is up.
    pub(crate) fn leave_place(&self, cookie: &Cookie) {
        let mut sessions = self.sessions.borrow_mut();
        if let Some(s) = sessions
            .get_mut(cookie)
            .filter(|s| s.counted && s.tunnel.is_none())
        {
            s.counted = false;
            self.shared.per_user.release(&s.user);
        }
    }

    /// Binds a CONNECT to its session; the older tunnel of the same cookie,
    /// if any, is superseded.
    pub(crate) fn attach(&self, cookie: &Cookie, tunnel: &Rc<Tunnel>) {
        let mut sessions = self.sessions.borrow_mut();
        let Some(session) = sessions.get_mut(cookie) else {
            return;
        };
        let first = session.last_peer.replace(tunnel.peer).is_none();
        session.last_local = Some(tunnel.local);
        session.hostname.clone_from(&tunnel.hostname);
        super::events::connect(session, tunnel.peer, tunnel.lease6, first);
        if first {
            let cfg = self.config_of(session.vhost.as_deref());
            if let Some(radius) = cfg.accounting() {
                let interim = super::accounting::interim(radius, session);
                session.next_interim = interim.map(|i| Instant::now() + i);
                super::accounting::send(self, radius, session, Start);
            }
        }
        if let Some(old) = session.tunnel.replace(tunnel.clone()) {
            session.past.add(&old.stats());
            tracing::info!(user = %session.user, lease = %OrDash(session.lease), "reconnect supersedes the previous tunnel");
            old.end(EndReason::Superseded);
        }
        sessions.attach(cookie);
        if let Some(s) = sessions.get(cookie) {
            self.publish(s, None);
        }
        self.tunnels
            .borrow_mut()
            .insert(tunnel.lease, tunnel.clone());
        self.timer_queue.borrow_mut().schedule(
            Instant::now() + FIRST_TIMER_CHECK,
            (tunnel.lease, tunnel.id),
        );
        self.map_lease6(tunnel, true);
        if let Some(id) = tunnel.app_id {
            self.dtls_tunnels.borrow_mut().insert(id, tunnel.clone());
            self.shared.live_app_ids.insert(self.id, id);
        }
    }

    /// Whether `cookie` is a live session's.
    pub(crate) fn has_session(&self, cookie: &Cookie) -> bool {
        self.sessions.borrow().get(cookie).is_some()
    }

    /// Whether `deny-roaming` refuses this cookie from `ip`: it works only
    /// from the address that logged in (as ocserv).
    pub(crate) fn roaming_denied(&self, cookie: &Cookie, ip: IpAddr) -> bool {
        self.sessions
            .borrow()
            .get(cookie)
            .is_some_and(|s| s.policy.deny_roaming == Some(true) && s.login_ip != ip)
    }

    /// The user-profile of `cookie`'s session (`None`: no such session).
    pub(crate) fn profile_of(&self, cookie: &Cookie) -> Option<Option<std::path::PathBuf>> {
        self.sessions
            .borrow()
            .get(cookie)
            .map(|s| s.policy.user_profile.clone())
    }

    /// The session of `cookie`, once it has its address (`lease_for`).
    pub(crate) fn session_view(&self, cookie: &Cookie) -> Option<SessionView> {
        let sessions = self.sessions.borrow();
        let s = sessions.get(cookie)?;
        Some(SessionView {
            user: s.user.clone(),
            group: s.group.clone(),
            lease: s.lease?,
            policy: s.policy.clone(),
            ends_at: s.ends_at,
            mobile: s.mobile,
            vhost: s.vhost.clone(),
        })
    }

    /// Called once when a tunnel's reader stops.
    pub(crate) fn tunnel_ended(&self, tunnel: &Rc<Tunnel>, reason: EndReason) {
        {
            let mut map = self.tunnels.borrow_mut();
            if map.get(&tunnel.lease).is_some_and(|t| t.id == tunnel.id) {
                map.remove(&tunnel.lease);
                self.map_lease6(tunnel, false);
            }
        }
        if let Some(id) = tunnel.app_id {
            self.dtls_tunnels.borrow_mut().remove(&id);
            self.shared.live_app_ids.remove(self.id, &id);
        }
        let mut sessions = self.sessions.borrow_mut();
        let owns = sessions
            .get(&tunnel.cookie)
            .and_then(|s| s.tunnel.as_ref())
            .is_some_and(|t| t.id == tunnel.id);
        let stats = tunnel.stats();
        if let Some(s) = sessions.get(&tunnel.cookie) {
            self.publish(s, Some((tunnel, &reason)));
        }
        if !owns {
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, reason = %reason, rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, "tunnel closed (superseded)");
            return;
        }
        // persistent_cookies: a logout leaves the cookie usable.
        let keep = reason == EndReason::ClientDisconnect
            && sessions.get(&tunnel.cookie).is_some_and(|s| {
                self.config_of(s.vhost.as_deref())
                    .raw
                    .session
                    .persistent_cookies
            });
        let now = Instant::now();
        if reason.ends_session() && !keep {
            let age = sessions.remove(&tunnel.cookie).map_or(0, |s| {
                let mut all = s.past;
                all.add(&stats);
                self.end_session(&s, &all, &reason.to_string());
                now.duration_since(s.started).as_secs()
            });
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, reason = %reason, age_s = age, rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, restricted = stats.restricted, rate_limited = stats.rate_limited, "session ended, address released");
        } else {
            let expires = sessions.get_mut(&tunnel.cookie).map(|s| {
                s.tunnel = None;
                if s.counted {
                    s.counted = false;
                    self.shared.per_user.release(&s.user);
                }
                s.past.add(&stats);
                self.detach_deadline(s, now)
            });
            if let Some(at) = expires {
                sessions.detach(&tunnel.cookie, at);
            }
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, reason = %reason, rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, restricted = stats.restricted, rate_limited = stats.rate_limited, "tunnel closed; cookie kept for reconnect");
        }
    }

    /// `show events`: a tunnel of `s` started (`ended` is `None`) or ended.
    fn publish(&self, s: &Session, ended: Option<(&Tunnel, &EndReason)>) {
        if !self.shared.watchers.any() {
            return;
        }
        let mut user = self.info(s, None);
        let (event, reason) = match ended {
            None => ("connect", String::new()),
            Some((t, why)) => {
                // The session may have a newer tunnel already.
                user.remote_ip = t.peer.ip().to_string();
                user.state = "disconnected";
                ("disconnect", why.to_string())
            }
        };
        self.shared.watchers.publish(crate::watch::Event {
            event,
            reason,
            user,
        });
    }

    /// A message from the inbox (see `inbox`).
    pub(super) fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Moved(h) => {
                super::guard::spawn(self, "hand-off", super::conn::adopt(self.clone(), *h));
            }
            ShardMsg::DtlsHello(h) => {
                let super::DtlsHello {
                    app_id,
                    from,
                    local,
                    datagram,
                } = *h;
                let _ = super::guard::contain_now(self, "ClientHello", || {
                    super::dtls::start(self, app_id, (from, local), datagram)
                });
            }
            ShardMsg::Admin(job) => {
                let _ = job.reply.send(self.admin(&job.cmd));
            }
        }
    }

    fn admin(&self, cmd: &AdminCmd) -> AdminReply {
        let matching = |t: &Target| -> Vec<Cookie> {
            let sessions = self.sessions.borrow();
            if let Target::User(u) = t {
                return sessions.cookies_of(u).to_vec();
            }
            sessions
                .iter()
                .filter(|(_, s)| match t {
                    Target::All => true,
                    Target::User(u) => s.user == *u,
                    Target::Group(g) => s.group.as_ref() == Some(g),
                    Target::Id(id) => s.id == *id,
                    Target::Sid(prefix) => s.safe_id.starts_with(prefix.as_str()),
                })
                .map(|(c, _)| *c)
                .collect()
        };
        match cmd {
            AdminCmd::Sessions(t) => {
                let cookies = matching(t);
                let sessions = self.sessions.borrow();
                AdminReply::Sessions(
                    cookies
                        .iter()
                        .filter_map(|c| sessions.get(c).map(|s| (s, sessions.expires_at(c))))
                        .map(|(s, expires)| self.info(s, expires))
                        .collect(),
                )
            }
            AdminCmd::Disconnect(t) => {
                let cookies = matching(t);
                for c in &cookies {
                    self.disconnect(c);
                }
                AdminReply::Disconnected(cookies.len())
            }
            AdminCmd::Drop(t) => {
                let tunnels: Vec<_> = {
                    let sessions = self.sessions.borrow();
                    matching(t)
                        .iter()
                        .filter_map(|c| sessions.get(c)?.tunnel.clone())
                        .collect()
                };
                for tunnel in &tunnels {
                    tunnel.end(EndReason::AdminDrop);
                }
                AdminReply::Disconnected(tunnels.len())
            }
            AdminCmd::Reconnect(t, policies) => {
                let cookies = matching(t);
                let n = cookies
                    .iter()
                    .filter(|c| self.reconnect(c, policies))
                    .count();
                AdminReply::Reconnected(n)
            }
            AdminCmd::Totals => {
                let sessions = self.sessions.borrow();
                let mut t = Totals {
                    sessions: sessions.len(),
                    ..Totals::default()
                };
                for (_, s) in sessions.iter() {
                    let mut st = s.past;
                    if let Some(tun) = &s.tunnel {
                        st.add(&tun.stats());
                        t.connected += 1;
                    }
                    t.raw_rx += st.rx_bytes;
                    t.raw_tx += st.tx_bytes;
                }
                AdminReply::Totals(t)
            }
        }
    }

    /// An admin disconnect: the client is told to quit and the cookie dies.
    fn disconnect(&self, cookie: &Cookie) {
        let tunnel = self
            .sessions
            .borrow()
            .get(cookie)
            .and_then(|s| s.tunnel.clone());
        if let Some(t) = tunnel {
            // The tunnel's end removes the session (tunnel_ended).
            t.end(EndReason::AdminDisconnect);
            return;
        }
        let removed = self.sessions.borrow_mut().remove(cookie);
        if let Some(s) = removed {
            self.end_session(&s, &s.past, "admin disconnect");
            tracing::info!(user = %s.user, lease = %OrDash(s.lease), "admin disconnect: session ended, address released");
        }
    }

    /// Gives a session its user's new configuration and closes its
    /// connection; the client comes back with its cookie and the CONNECT
    /// answer carries the new routes, DNS and limits. What was fixed at
    /// login (address, iroutes, the login's clock and client count) stays
    /// until the next login.
    fn reconnect(&self, cookie: &Cookie, policies: &admin::Policies) -> bool {
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.get_mut(cookie) else {
            return false;
        };
        let Some((_, new)) = policies.iter().find(|((u, g, v), _)| {
            *u == s.user && *g == s.group && v == s.vhost.as_deref().unwrap_or("default")
        }) else {
            return false;
        };
        let mut new = new.clone();
        new.explicit_ipv4 = s.policy.explicit_ipv4;
        new.explicit_ipv6 = s.policy.explicit_ipv6;
        new.iroutes.clone_from(&s.policy.iroutes);
        new.max_same_clients = s.policy.max_same_clients;
        new.session_timeout = s.policy.session_timeout;
        s.policy = Rc::new(new);
        let tunnel = s.tunnel.clone();
        drop(sessions);
        if let Some(t) = tunnel {
            t.end(EndReason::AdminReconnect);
        }
        true
    }

    /// `expires`: when a detached session's cookie dies.
    fn info(&self, s: &Session, expires: Option<Instant>) -> SessionInfo {
        let cfg = self.config_of(s.vhost.as_deref());
        let cfg = &*cfg;
        let now = Instant::now();
        let wall = |at: Instant| SystemTime::now() + at.saturating_duration_since(now);
        let t = s.tunnel.as_ref();
        let nets = cfg.nets(&s.policy);
        let mut st = s.past;
        if let Some(t) = t {
            st.add(&t.stats());
        }
        let strings = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<String>>();
        let routes4 = limits::routes_v4(cfg, &s.policy);
        let mut routes = if limits::is_full_tunnel(&routes4) {
            vec!["default".to_owned()]
        } else {
            strings(&mut routes4.iter().map(|n| occtl_route(&IpNet::V4(*n))))
        };
        if t.is_some_and(|t| t.lease6.is_some()) {
            routes.extend(
                limits::routes_v6(cfg, &s.policy)
                    .iter()
                    .map(ToString::to_string),
            );
        }
        let dns = if s.policy.dns.is_empty() {
            &cfg.dns
        } else {
            &s.policy.dns
        };
        let sess = &cfg.raw.session;
        SessionInfo {
            id: s.id,
            user: s.user.clone(),
            group: s.group.clone().unwrap_or_else(|| "(none)".into()),
            group_name: s.group.clone(),
            state: if t.is_some() {
                "connected"
            } else {
                "disconnected"
            },
            device: cfg.raw.network.device.clone(),
            mtu: t.map_or_else(String::new, |t| t.mtu.to_string()),
            remote_ip: t.map_or_else(String::new, |t| t.peer.ip().to_string()),
            ipv4: s.lease.map_or_else(String::new, |a| a.to_string()),
            ptp_ipv4: nets.local4.to_string(),
            ipv6: t.and_then(|t| t.lease6).map(|a| a.to_string()),
            ptp_ipv6: t
                .and_then(|t| t.lease6)
                .and(nets.local6)
                .map(|a| a.to_string()),
            user_agent: s.user_agent.clone(),
            hostname: t.map_or_else(String::new, |t| t.hostname.clone()),
            rx: st.rx_bytes.to_string(),
            tx: st.tx_bytes.to_string(),
            rx_human: crate::units::format_size(st.rx_bytes),
            tx_human: crate::units::format_size(st.tx_bytes),
            raw_rx: st.rx_bytes,
            raw_tx: st.tx_bytes,
            rx_packets: st.rx_packets,
            tx_packets: st.tx_packets,
            dpd: s.policy.dpd.unwrap_or(sess.dpd).to_string(),
            keepalive: s.policy.keepalive.unwrap_or(sess.keepalive).to_string(),
            connected_at: admin::format_time(s.started_wall),
            connected_for: admin::format_duration(now.duration_since(s.started)),
            raw_connected_at: unix(s.started_wall),
            raw_session_started_at: unix(s.started_wall),
            idle_seconds: t.map_or(0, |t| t.idle_for(now).as_secs()),
            channel: if t.and_then(|t| t.dtls()).is_some_and(|c| c.is_active()) {
                "DTLS"
            } else {
                "CSTP"
            },
            tls_cipher: t.map(|t| t.tls_cipher()).unwrap_or_default(),
            dtls_cipher: t
                .and_then(|t| t.dtls())
                .filter(|c| c.is_active())
                .and_then(|c| c.cipher())
                .unwrap_or_default(),
            shard: self.id.0,
            dns: dns.iter().map(ToString::to_string).collect(),
            split_dns: s.policy.split_dns.clone(),
            routes,
            no_routes: s.policy.no_routes.iter().map(occtl_route).collect(),
            iroutes: s.policy.iroutes.iter().map(occtl_route).collect(),
            restricted: if t.is_some_and(|t| t.limits.allowed.is_some()) {
                "True"
            } else {
                "False"
            }
            .to_owned(),
            restricted_packets: st.restricted,
            rate_limited_packets: st.rate_limited,
            session: s.safe_id.chars().take(6).collect(),
            full_session: s.safe_id.clone(),
            vhost: s.vhost.as_deref().unwrap_or("default").to_owned(),
            created: s.started_wall,
            expires: expires.or(s.ends_at).map(wall),
            login_ip: s.login_ip.to_string(),
            cert_auth: s.cert_auth,
            backend: s.backend,
        }
    }

    fn housekeeping(&self, now: Instant) {
        let mut expired = Vec::new();
        self.sessions
            .borrow_mut()
            .sweep_expired(now, |_, s| expired.push(s));
        for s in expired {
            let why = if s.ends_at.is_some_and(|end| end <= now) {
                "session_timeout reached"
            } else {
                "cookie expired"
            };
            self.end_session(&s, &s.past, why);
            tracing::info!(user = %s.user, group = %s.group.as_deref().unwrap_or("-"), lease = %OrDash(s.lease), age_s = now.duration_since(s.started).as_secs(), "{why}, address released");
        }
    }

    /// Checks the tunnels whose timers are due; each is queued again for
    /// its next deadline, so the cost follows what is due, not how many
    /// tunnels there are.
    pub(crate) fn sweep_timers(&self, now: Instant) {
        let mut due = Vec::new();
        self.timer_queue.borrow_mut().take_due(now, &mut due);
        for (lease, id) in due {
            let tunnel = self
                .tunnels
                .borrow()
                .get(&lease)
                .filter(|t| t.id == id)
                .cloned();
            // Gone, or its lease now another tunnel's: a stale entry.
            let Some(t) = tunnel else {
                continue;
            };
            let Some(next) = t.check_timers(self, now) else {
                continue;
            };
            let interim = super::accounting::interim_update(self, &t, now);
            let next = interim.map_or(next, |at| at.min(next));
            let next = next.min(now + MAX_TIMER_GAP);
            self.timer_queue.borrow_mut().schedule(next, (lease, id));
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
