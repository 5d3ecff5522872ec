//! A client connection's HTTP plumbing, and the CONNECT that turns it into
//! a tunnel on its session's home shard (the login is in `login`).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shards::mailbox::Refused;
use shards::{AppId, Cookie, ShardId};

use super::core::{LeaseError, SessionView, Shard};
use super::dtls::DtlsKey;
use super::limits::{self, Limits};
use super::stream::SharedStream;
use super::tunnel::{EndReason, Tunnel};
use super::{Handoff, Moved, ShardMsg};
use crate::proto::connect::{self as negotiate, DtlsChoice, DtlsMode};
use crate::proto::http::{self, HttpError, RequestHead};
use crate::proto::reply::{ConnectReply, DtlsOffer};
use crate::tls::{TlsError, TlsSession};
use crate::usercfg::UserConfig;

pub(crate) struct Request {
    pub(crate) head: RequestHead,
    pub(crate) body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) tls: TlsSession,
    pub(super) peer: SocketAddr,
    /// The server address the client connected to (a PROXY header's
    /// destination behind a load balancer): scripts' IP_REAL_LOCAL.
    pub(super) local: SocketAddr,
    pub(super) plain: Vec<u8>,
    pub(super) rbuf: Vec<u8>,
    pub(super) out: Vec<u8>,
    /// Added to every answer (`[server] http_headers`).
    pub(super) headers: std::sync::Arc<[String]>,
}

impl Conn {
    pub(super) async fn read_request(&mut self) -> Result<Option<Request>, ReadError> {
        loop {
            if let Some((head, used)) = http::parse_head(&self.plain)? {
                let total = used + head.content_length;
                while self.plain.len() < total {
                    if !self.fill().await? {
                        return Ok(None);
                    }
                }
                let body = self.plain[used..total].to_vec();
                self.plain.drain(..total);
                return Ok(Some(Request { head, body }));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Bytes of the TLS stream read before the connection became a
    /// `Conn` (after a PROXY header); answers what they ask (a ServerHello).
    pub(super) async fn feed_early(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        let fed = self.tls.feed(bytes, &mut self.plain);
        self.flush().await?;
        fed?;
        Ok(())
    }

    /// Reads once from the socket; false on EOF.
    async fn fill(&mut self) -> Result<bool, ReadError> {
        let n = self.stream.read(&mut self.rbuf).await?;
        if n == 0 {
            return Ok(false);
        }
        let fed = self.tls.feed(&self.rbuf[..n], &mut self.plain);
        self.flush().await?; // handshake messages or an alert
        Ok(!fed?.peer_closed)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.tls.take_outgoing(&mut self.out);
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// Sends one HTTP answer, with the operator's headers.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> bool {
        let written = if self.headers.is_empty() {
            self.tls.write_plain(bytes)
        } else {
            self.tls
                .write_plain(&http::with_headers(bytes, &self.headers))
        };
        written.is_ok() && self.flush().await.is_ok()
    }

    /// Sends a final error and closes TLS, then the socket.
    pub(super) async fn refuse(mut self, code: u16, reason: &str) {
        self.reject(code, reason).await;
        let _ = self.stream.close().await;
    }

    /// Sends a final error and closes TLS; the socket closes when dropped.
    /// The write is bounded: a client that does not read costs no more.
    pub(super) async fn reject(&mut self, code: u16, reason: &str) {
        let answer = http::with_headers(&http::error_response(code, reason), &self.headers);
        let _ = self.tls.write_plain(&answer);
        self.tls.send_close_notify();
        let flush = self.flush();
        let _ = futures_lite::future::or(async { flush.await.ok() }, async {
            glommio::timer::sleep(REFUSE_WRITE_LIMIT).await;
            None
        })
        .await;
    }
}

/// How long a final error may take to reach a client.
const REFUSE_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// `CONNECT /CSCOSSLC/tunnel`: run it here or move it to the home shard.
pub(super) async fn connect(shard: Rc<Shard>, conn: Conn, head: RequestHead) {
    let cookie = head.cookie("webvpn").and_then(|c| Cookie::parse(c).ok());
    let Some(cookie) = cookie.filter(|c| c.home_shard().index() < shard.shared.shards) else {
        tracing::info!(peer = %conn.peer, "CONNECT without a valid cookie");
        super::login::penalize_bad_request(&shard, conn.peer, "a CONNECT without a valid cookie");
        conn.refuse(401, "Cookie is not acceptable").await;
        return;
    };
    let home = cookie.home_shard();
    if home == shard.id {
        return start_tunnel(shard, conn, head, cookie).await;
    }
    tracing::debug!(peer = %conn.peer, from = %shard.id, to = %home, "moving CONNECT to its home shard");
    conn.move_to(&shard, home, Moved::Connect(head)).await;
}

impl Conn {
    /// Hands this connection to shard `home`, which does `what` with it.
    pub(super) async fn move_to(self, shard: &Shard, home: ShardId, what: Moved) {
        let fd = match crate::sys::dup(self.stream.as_raw_fd()) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("handoff dup: {e}");
                return self.refuse(503, "Server busy, try again").await;
            }
        };
        let Self {
            stream,
            tls,
            peer,
            local,
            plain,
            rbuf,
            out,
            headers,
        } = self;
        let handoff = Handoff {
            fd,
            tls,
            leftover: plain,
            peer,
            local,
            what,
        };
        let Some(inbox) = shard.shared.inboxes.get(home.index()) else {
            return;
        };
        match inbox.post(ShardMsg::Moved(Box::new(handoff))) {
            // Our descriptor closes here; the home shard's copy lives on.
            Ok(()) => drop(stream),
            Err(Refused::Full(ShardMsg::Moved(h))) => {
                tracing::warn!(%peer, "shard {home} has too many hand-offs waiting; client told to retry");
                let conn = Self {
                    stream,
                    tls: h.tls,
                    peer,
                    local,
                    plain: h.leftover,
                    rbuf,
                    out,
                    headers,
                };
                conn.refuse(503, "Server busy, try again").await;
            }
            Err(_) => tracing::info!(%peer, "shard {home} is stopping; connection closed"),
        }
    }
}

/// A connection moved here from another shard.
pub(crate) async fn adopt(shard: Rc<Shard>, h: Handoff) {
    shard.metrics().handoffs.inc();
    // The descriptor was dup'ed for this handoff and is owned by it alone.
    let stream: TcpStream = crate::sys::adopt(h.fd);
    let headers = shard
        .config_of(h.tls.vhost().as_deref())
        .http_headers
        .clone();
    // A tunnel reads through the shard's buffer; only a login needs its own.
    let mut conn = Conn {
        stream,
        tls: h.tls,
        peer: h.peer,
        local: h.local,
        plain: h.leftover,
        rbuf: Vec::new(),
        out: Vec::new(),
        headers,
    };
    match h.what {
        Moved::Connect(head) => {
            let Some(cookie) = head.cookie("webvpn").and_then(|c| Cookie::parse(c).ok()) else {
                return;
            };
            start_tunnel(shard, conn, head, cookie).await;
        }
        Moved::Login(login) => {
            conn.rbuf = vec![0; super::login::LOGIN_READ_BUF];
            super::login::adopt_login(shard, conn, *login).await;
        }
        Moved::Profile(head) => {
            conn.rbuf = vec![0; super::login::LOGIN_READ_BUF];
            super::login::adopt_profile(shard, conn, head).await;
        }
        Moved::Revealed(req) => {
            conn.rbuf = vec![0; super::login::LOGIN_READ_BUF];
            super::login::adopt_revealed(shard, conn, *req).await;
        }
    }
}

fn header_num(head: &RequestHead, name: &str) -> Option<u16> {
    head.header(name).and_then(|v| v.trim().parse().ok())
}

async fn start_tunnel(shard: Rc<Shard>, conn: Conn, head: RequestHead, cookie: Cookie) {
    let hostname: String = head
        .header("X-CSTP-Hostname")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if shard.roaming_denied(&cookie, conn.peer.ip()) {
        tracing::info!(peer = %conn.peer, "CONNECT refused: deny-roaming, and the cookie was issued to another address");
        conn.refuse(401, "Cookie is not acceptable").await;
        return;
    }
    if let Err(why) = shard.take_place(&cookie) {
        conn.refuse(401, why).await;
        return;
    }
    match shard.lease_for(&cookie) {
        Ok(_) => {}
        Err(LeaseError::NoSession) => {
            tracing::info!(peer = %conn.peer, "CONNECT with an unknown or expired cookie");
            conn.refuse(401, "Cookie is not acceptable").await;
            return;
        }
        Err(LeaseError::Refused(why)) => {
            // The session stays: a client that retries may find an address.
            shard.leave_place(&cookie);
            tracing::warn!(peer = %conn.peer, "CONNECT refused: {why}");
            conn.refuse(503, why).await;
            return;
        }
    }
    if let Some(job) = shard.connect_job(&cookie, (conn.peer, conn.local), &hostname) {
        // Awaited off the executor: a slow script delays this client only.
        if let Err(e) = super::events::run_connect(job).await {
            tracing::warn!(peer = %conn.peer, "connect_script {e}: session refused");
            shard.drop_session(&cookie, &format!("connect_script {e}"));
            conn.refuse(401, "Refused by the server's connect script")
                .await;
            return;
        }
    }
    let Some(view) = shard.session_view(&cookie) else {
        tracing::info!(peer = %conn.peer, "CONNECT with an unknown or expired cookie");
        conn.refuse(401, "Cookie is not acceptable").await;
        return;
    };
    let SessionView {
        user,
        group,
        lease,
        policy,
        ends_at,
        mobile,
        vhost,
    } = view;
    let cfg = shard.config_of(vhost.as_deref());
    let cfg = &*cfg;
    let now = Instant::now();
    let limits = Limits::for_session(
        cfg,
        &policy,
        ends_at,
        mobile || negotiate::is_mobile(&head),
        now,
    );
    let mtu_cap = policy
        .mtu
        .map_or(cfg.raw.network.mtu, |m| m.min(cfg.raw.network.mtu));
    // The link MTU: ours, or the client's estimate of its path if smaller.
    let base_mtu = header_num(&head, "X-CSTP-Base-MTU")
        .map_or(mtu_cap, |b| b.clamp(negotiate::MIN_MTU, mtu_cap));
    let dtls = if cfg.dtls_enabled() && policy.no_udp != Some(true) {
        negotiate::choose_dtls(&head, cfg.raw.dtls.psk_negotiate, cfg.raw.dtls.legacy)
    } else {
        None
    };
    let dtls_key = match dtls.map(|d| d.mode) {
        Some(DtlsMode::Psk) => match conn.tls.export_dtls_psk() {
            Ok(psk) => Some(DtlsKey::Psk(psk)),
            Err(e) => {
                tracing::warn!(peer = %conn.peer, "no DTLS: exporting the PSK failed: {e}");
                None
            }
        },
        Some(DtlsMode::Legacy {
            suite,
            master_secret,
        }) => Some(DtlsKey::Legacy {
            master_secret,
            suite,
        }),
        None => None,
    };
    let dtls = dtls.filter(|_| dtls_key.is_some());
    let app_id = dtls.and_then(|_| {
        let mut random = [0u8; shards::appid::APP_ID_LEN - 2];
        aws_lc_rs::rand::fill(&mut random)
            .ok()
            .map(|()| AppId::new(shard.id, random))
    });
    let dtls = dtls.zip(app_id);
    let mtu = negotiate::data_mtu(
        base_mtu,
        conn.peer.is_ipv6(),
        dtls.map(|(d, _)| d.mode.overhead()),
    );
    let v6_form = negotiate::ipv6_form(&head).filter(|_| mtu >= negotiate::IPV6_MIN_MTU);
    let nets = cfg.nets(&policy);
    let lease6 = v6_form.and_then(|_| nets.ipv6_for(lease));
    // A user file's hostname wins over the client's; told back as ocserv.
    let accepted_host = policy.hostname.clone().unwrap_or(hostname);
    let reply = connect_reply(
        cfg,
        (&user, group.as_deref(), &accepted_host),
        &policy,
        &limits,
        (lease, lease6.zip(v6_form)),
        (base_mtu, mtu),
        dtls,
    );

    let Conn {
        stream,
        tls,
        peer,
        local,
        plain,
        ..
    } = conn;
    if let Some(p) = policy.net_priority {
        if let Err(e) = crate::sys::net::set_net_priority(stream.as_raw_fd(), p) {
            tracing::debug!(%peer, "net-priority {p:?}: {e}");
        }
    }
    let stream = Rc::new(SharedStream::new(stream));
    let mut tunnel = Tunnel::new(shard.next_tunnel_id(), cookie, user, lease, peer, tls);
    tunnel.lease6 = lease6;
    tunnel.local = local;
    tunnel.mtu = mtu;
    tunnel.hostname = accepted_host;
    tunnel.net_priority = policy.net_priority;
    tunnel.iroutes = policy.iroutes.clone().into();
    tunnel.base_mtu = base_mtu;
    tunnel.dpd = limits.dpd;
    let (rx_rate, tx_rate) = limits.rates();
    let (idle, restricted) = (limits.idle, limits.allowed.is_some());
    tunnel.limits = limits;
    tunnel.set_timers();
    if let Some((_, id)) = dtls {
        tunnel.dtls_key = dtls_key;
        tunnel.app_id = Some(id);
    }
    let tunnel = Rc::new(tunnel);
    tunnel.queue_plain(&reply);
    shard.attach(&cookie, &tunnel);
    let dtls_mode = dtls.map_or("off", |(d, _)| d.value);
    tracing::info!(
        user = %tunnel.user, lease = %lease, lease6 = %lease6.map_or("-".to_owned(), |a| a.to_string()), %peer, shard = %shard.id, mtu, dtls = dtls_mode,
        idle_s = idle.map_or(0, |d| d.as_secs()), session_left_s = ends_at.map_or(0, |e| e.saturating_duration_since(now).as_secs()),
        restricted, rx_rate, tx_rate, "tunnel up"
    );
    // Both halves are contained: a panic ends this tunnel (its client may
    // come back with its cookie), never the shard.
    let (writer, w, s) = (tunnel.clone(), stream.clone(), shard.clone());
    glommio::spawn_local(async move {
        let wrote =
            super::guard::contain(&s, "tunnel writer", writer.clone().write_loop(w.clone()));
        if wrote.await.is_err() {
            writer.end(EndReason::InternalError);
            w.shutdown();
        }
    })
    .detach();
    // The reader is a task of its own, so the CONNECT's state is freed now.
    let reader = async move {
        let read = tunnel.clone().read_loop(shard.clone(), stream, plain);
        let reason = super::guard::contain(&shard, "tunnel reader", read)
            .await
            .unwrap_or_else(|_| {
                tunnel.end(EndReason::InternalError);
                EndReason::InternalError
            });
        shard.tunnel_ended(&tunnel, reason);
    };
    glommio::spawn_local(reader).detach();
}

/// The `200 CONNECTED` head: the session's policy resolved from the
/// configuration and the user's files (a user's routes and DNS servers
/// replace the global ones), rendered by `proto::reply`.
fn connect_reply(
    cfg: &crate::config::Config,
    (user, group, hostname): (&str, Option<&str>, &str),
    policy: &UserConfig,
    limits: &Limits,
    (lease, lease6): (
        std::net::Ipv4Addr,
        Option<(std::net::Ipv6Addr, negotiate::Ipv6Form)>,
    ),
    (base_mtu, mtu): (u16, u16),
    dtls: Option<(DtlsChoice, AppId)>,
) -> Vec<u8> {
    let s = &cfg.raw.session;
    let nets = cfg.nets(policy);
    let (routes, routes6) = (
        limits::routes_v4(cfg, policy),
        limits::routes_v6(cfg, policy),
    );
    let (no_routes, no_routes6) = (limits::v4(&policy.no_routes), limits::v6(&policy.no_routes));
    let id = dtls.map(|(_, id)| id.to_string());
    let total = policy.session_timeout.unwrap_or(s.session_timeout);
    ConnectReply {
        server_name: concat!("ocserv-uring ", env!("CARGO_PKG_VERSION")),
        user,
        group,
        lease,
        netmask: nets.v4.netmask(),
        lease6,
        net6: nets.v6,
        dns: if policy.dns.is_empty() {
            &cfg.dns
        } else {
            &policy.dns
        },
        nbns: &policy.nbns,
        routes: &routes,
        no_routes: &no_routes,
        routes6: &routes6,
        no_routes6: &no_routes6,
        split_dns: &policy.split_dns,
        default_domain: policy.default_domain.as_deref(),
        hostname,
        dtls: dtls.zip(id.as_deref()).map(|((choice, _), id)| DtlsOffer {
            choice,
            id,
            port: cfg.raw.server.udp_port,
        }),
        dpd: limits.dpd,
        keepalive: policy.keepalive.unwrap_or(s.keepalive),
        idle_timeout: limits.idle,
        session_timeout: (total > 0).then(|| Duration::from_secs(total)),
        session_left: limits
            .ends_at
            .map(|e| e.saturating_duration_since(Instant::now())),
        banner: &cfg.raw.auth.banner,
        tunnel_all_dns: policy.tunnel_all_dns == Some(true),
        client_bypass_protocol: policy.client_bypass_protocol == Some(true),
        rekey: (s.rekey_time > 0).then_some((s.rekey_method.as_str(), s.rekey_time)),
        base_mtu,
        mtu,
        http_headers: &cfg.http_headers,
        proxy_url: &s.proxy_url,
        custom_headers: &s.custom_headers,
    }
    .render()
}
