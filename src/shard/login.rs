//! A client connection from accept to its cookie: bans, the TLS handshake,
//! the XML login by password, certificate or both, group choice, the
//! user's files, and the session. A CONNECT goes on to `conn`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::conn::{Conn, ReadError};
use super::core::{Login, Shard};
use super::Moved;
use shards::{Cookie, ShardId};

use super::events::refused;
use crate::config::{AuthMethod, Backend, Config};
use crate::proto::auth::{self, AuthExchange, AuthRequest, GroupOption, Step, Verdict};
use crate::proto::connect as negotiate;
use crate::proto::http::{self, Method, Response};
use crate::tls::TlsSession;
use crate::usercfg::Profile;

fn xml_reply(doc: &[u8]) -> Vec<u8> {
    Response::new(200, "OK")
        .header("Content-Type", "text/xml")
        .header("X-Transcend-Version", 1)
        .body(doc)
}

async fn with_timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

/// Adds ban points to a client address; logs the ban it may start.
pub(super) fn penalize(shard: &Shard, peer: SocketAddr, points: u32, what: &str) {
    if let Some(ban) = shard.shared.bans.add(peer.ip(), points, Instant::now()) {
        tracing::warn!(%peer, ban_s = ban.as_secs(), "address banned: ban score reached after {what}");
        shard.shared.metrics.bans.inc();
    }
}

/// Scores `ban_points_bad_request` for a malformed request, body or cookie.
pub(super) fn penalize_bad_request(shard: &Shard, peer: SocketAddr, what: &str) {
    let points = shard
        .shared
        .config
        .get()
        .raw
        .security
        .ban_points_bad_request;
    penalize(shard, peer, points, what);
}

/// Who the client's certificate says it is.
enum CertUser {
    /// No certificate (or certificates are not checked).
    Absent,
    /// Verified against the CA, but without the configured user attribute.
    Unnamed,
    Named {
        user: String,
        group: Option<String>,
    },
}

fn cert_user(cfg: &Config, tls: &TlsSession) -> CertUser {
    let Some(der) = tls
        .peer_certificate()
        .filter(|_| cfg.auth_method.uses_certificates())
    else {
        return CertUser::Absent;
    };
    match crate::proto::x509name::subject_attribute(der, &cfg.cert_user_oid) {
        Some(user) if !user.is_empty() => {
            let group = cfg
                .cert_group_oid
                .as_ref()
                .and_then(|o| crate::proto::x509name::subject_attribute(der, o));
            CertUser::Named { user, group }
        }
        _ => CertUser::Unnamed,
    }
}

/// What the next login step is, given the method and the certificate.
enum Route<'a> {
    /// The certificate alone logs the user in.
    Certificate {
        user: &'a str,
        group: Option<&'a str>,
    },
    /// The XML password exchange (its username fixed by a certificate
    /// when both are required).
    Password,
    Refuse(&'static str),
}

fn route(method: AuthMethod, cert: &CertUser) -> Route<'_> {
    use AuthMethod as M;
    match (method, cert) {
        (M::Password, _) => Route::Password,
        (M::Certificate | M::CertificateOrPassword, CertUser::Named { user, group }) => {
            Route::Certificate {
                user,
                group: group.as_deref(),
            }
        }
        (M::CertificateOrPassword, CertUser::Absent)
        | (M::CertificateAndPassword, CertUser::Named { .. }) => Route::Password,
        (_, CertUser::Unnamed) => Route::Refuse("Certificate has no user name"),
        (M::Certificate | M::CertificateAndPassword, CertUser::Absent) => {
            Route::Refuse("Certificate required")
        }
    }
}

/// A login that succeeded: the reply with its cookie, or the shard the
/// session must live on (its `explicit-ipv4` address belongs there).
enum Done {
    Reply(Vec<u8>),
    Move(ShardId, Box<Login>),
}

/// Why a login did not produce a session.
enum LoginError {
    WrongPassword,
    /// Refused for good with this reason (logged already).
    Refused(&'static str),
}

/// A connection counted as a login in progress, on its shard and for its
/// client address, from accept until it becomes a tunnel or closes.
pub(super) struct LoginSlot {
    shard: Rc<Shard>,
    addr: IpAddr,
}

impl LoginSlot {
    /// Takes a slot; with `enforce`, refused (naming the limit) when the
    /// shard or the address has its most logins in progress already.
    pub(super) fn acquire(
        shard: &Rc<Shard>,
        peer: IpAddr,
        enforce: bool,
    ) -> Result<Self, &'static str> {
        let cfg = shard.shared.config.get();
        let sec = &cfg.raw.security;
        let per_shard = sec.max_logins_per_shard as usize;
        if enforce && per_shard != 0 && shard.logins.get() >= per_shard {
            return Err("max_logins_per_shard");
        }
        let addr = crate::bans::key(peer);
        let max = if enforce {
            sec.max_logins_per_address
        } else {
            0
        };
        if shard.shared.logins_by_addr.try_acquire(&addr, max).is_err() {
            return Err("max_logins_per_address");
        }
        shard.logins.set(shard.logins.get() + 1);
        Ok(Self {
            shard: shard.clone(),
            addr,
        })
    }
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        self.shard.logins.set(self.shard.logins.get() - 1);
        self.shard.shared.logins_by_addr.release(&self.addr);
    }
}

/// Serves one accepted TCP connection: a login, then the wait for its
/// CONNECT, each with `auth_timeout` in total however the client trickles.
pub(crate) async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let Ok(mut peer) = stream.peer_addr() else {
        return;
    };
    // An IPv4 client on a dual-stack socket (socket activation's `::`) is
    // an IPv4 client for bans, limits, logs and scripts.
    peer.set_ip(peer.ip().to_canonical());
    let Ok(mut local) = stream.local_addr() else {
        return;
    };
    local.set_ip(local.ip().to_canonical());
    let mut stream = stream;
    let cfg = shard.shared.config.get();
    // Behind a load balancer (ocserv's listen-proxy-proto) its header names
    // the client: bans, limits, logs and scripts use that address.
    let mut early = Vec::new();
    if cfg.raw.server.proxy_protocol {
        match with_timeout(PROXY_HEADER_LIMIT, read_proxy_header(&mut stream)).await {
            Some(Ok((named, rest))) => {
                if let Some((source, dest)) = named {
                    (peer, local) = (source, dest);
                }
                early = rest;
            }
            Some(Err(e)) => {
                tracing::info!(%peer, "connection closed: {e} (listen behind a proxy that sends one)");
                return;
            }
            None => {
                tracing::debug!(%peer, "connection closed: no PROXY header in time");
                return;
            }
        }
    }
    let bans = &shard.shared.bans;
    let points = &cfg.raw.security;
    if bans.enabled() {
        if bans.is_banned(peer.ip(), Instant::now()) {
            tracing::debug!(%peer, "connection from a banned address closed");
            shard.metrics().refused_banned.inc();
            return;
        }
        penalize(&shard, peer, points.ban_points_connection, "a connection");
    }
    let _slot = match LoginSlot::acquire(&shard, peer.ip(), true) {
        Ok(slot) => slot,
        Err(limit) => {
            tracing::debug!(%peer, shard = %shard.id, "connection closed at accept: {limit} reached");
            shard.metrics().refused_login_limit.inc();
            penalize(&shard, peer, points.ban_points_login_limit, limit);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let tls = match TlsSession::new(shard.shared.tls.get()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("TLS session: {e}");
            return;
        }
    };
    let mut conn = Conn {
        stream,
        tls,
        peer,
        local,
        plain: Vec::new(),
        rbuf: vec![0; LOGIN_READ_BUF],
        out: Vec::new(),
        headers: cfg.http_headers.clone(),
    };
    if !early.is_empty() && conn.feed_early(&early).await.is_err() {
        return;
    }
    let limit = cfg.auth_timeout();
    drop(cfg);
    match with_timeout(limit, login(&shard, conn, None)).await {
        Some(Some(conn)) => await_connect(&shard, conn, limit).await,
        Some(None) => {}
        None => {
            shard.metrics().auth_timeouts.inc();
            tracing::debug!(%peer, "auth_timeout: no login within {} s; closed", limit.as_secs());
        }
    }
}

/// `OCSERV_URING_TEST_HOOKS=1` only: a panic in this connection's task, or
/// one in the shard's own loop at its next tick.
fn test_hook(shard: &Shard, path: &str) {
    match path {
        "/+ocu-test+/panic" => panic!("test hook: a panic while serving one connection"),
        "/+ocu-test+/panic-shard" => shard.panic_next_tick.set(true),
        _ => {}
    }
}

/// How long a connection may take to send its PROXY header.
const PROXY_HEADER_LIMIT: Duration = Duration::from_secs(10);
/// The longest PROXY header read (v2 with TLVs).
const PROXY_HEADER_MAX: usize = 4096;

/// Reads the PROXY header at the start of `stream`: the client it names
/// and the address that client connected to (`None` for the proxy's own
/// checks), and the bytes read past it.
async fn read_proxy_header(
    stream: &mut TcpStream,
) -> Result<(Option<(SocketAddr, SocketAddr)>, Vec<u8>), String> {
    use crate::proto::proxy::{parse, Header};
    use futures_lite::AsyncReadExt;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        match parse(&buf).map_err(|e| e.to_string())? {
            Header::Done { source, dest, len } => {
                return Ok((source.zip(dest), buf.split_off(len)))
            }
            Header::Incomplete if buf.len() >= PROXY_HEADER_MAX => {
                return Err("PROXY header: too long".into())
            }
            Header::Incomplete => {}
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("PROXY header: the connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Socket reads during the login.
pub(super) const LOGIN_READ_BUF: usize = 16 * 1024;

/// A login moved here because its session's address belongs to this
/// shard: create the session, answer, and wait for the CONNECT.
pub(super) async fn adopt_login(shard: Rc<Shard>, conn: Conn, login: Login) {
    let peer = conn.peer;
    tracing::debug!(%peer, shard = %shard.id, user = %login.user, "login moved here for its explicit-ipv4 address");
    // Admitted on the shard that accepted it: counted here, never refused.
    let Ok(_slot) = LoginSlot::acquire(&shard, peer.ip(), false) else {
        return;
    };
    let limit = shard.shared.config.get().auth_timeout();
    let user = login.user.clone();
    let profile = login.profile.clone();
    let host = shard.config_of(login.vhost.as_deref());
    let mut conn = conn;
    match shard.create_session(login, peer) {
        Ok(cookie) => {
            let reply = success_reply(&host, cookie, profile.as_ref());
            let sent = with_timeout(limit, conn.send(&reply)).await;
            if sent != Some(true) {
                return;
            }
        }
        Err(why) => {
            refused(&shard, peer, Some(&user), why);
            return conn.refuse(401, why).await;
        }
    }
    await_connect(&shard, conn, limit).await;
}

/// A user-profile request moved here from the shard that accepted it;
/// the connection may carry the session's CONNECT next.
pub(super) async fn adopt_profile(shard: Rc<Shard>, conn: Conn, head: http::RequestHead) {
    let Ok(_slot) = LoginSlot::acquire(&shard, conn.peer.ip(), false) else {
        return;
    };
    let limit = shard.shared.config.get().auth_timeout();
    if let Some(conn) = super::profile::serve(&shard, conn, head).await {
        await_connect(&shard, conn, limit).await;
    }
}

/// A request without the camouflage secret, moved here because its cookie
/// names a session of this shard: the login goes on here if it is one.
pub(super) async fn adopt_revealed(shard: Rc<Shard>, conn: Conn, req: super::conn::Request) {
    let Ok(_slot) = LoginSlot::acquire(&shard, conn.peer.ip(), false) else {
        return;
    };
    let limit = shard.shared.config.get().auth_timeout();
    if let Some(Some(conn)) = with_timeout(limit, login(&shard, conn, Some(req))).await {
        await_connect(&shard, conn, limit).await;
    }
}

/// The next request, or `None` when the connection is done: closed, or
/// answered 400/413 for a malformed request (which scores ban points).
async fn next_request(shard: &Shard, conn: &mut Conn) -> Option<super::conn::Request> {
    match conn.read_request().await {
        Ok(Some(r)) => Some(r),
        Ok(None) => None,
        Err(ReadError::Http(e)) => {
            let peer = conn.peer;
            tracing::info!(%peer, "bad request: {e}");
            penalize_bad_request(shard, peer, "a bad request");
            let (code, reason) = e.status();
            conn.reject(code, reason).await;
            None
        }
        Err(e) => {
            tracing::debug!(peer = %conn.peer, "connection: {e}");
            None
        }
    }
}

/// After the cookie, a connection carries that session's CONNECT and
/// nothing else: a second login is refused (as ocserv does), other GETs
/// are answered 404. Bounded by `limit` in total.
async fn await_connect(shard: &Rc<Shard>, conn: Conn, limit: Duration) {
    let peer = conn.peer;
    let wait = async move {
        let mut conn = conn;
        loop {
            let Some(req) = next_request(shard, &mut conn).await else {
                return;
            };
            match req.head.method {
                Method::Connect => {
                    super::guard::spawn(
                        shard,
                        "connect",
                        super::conn::connect(shard.clone(), conn, req.head),
                    );
                    return;
                }
                Method::Get if super::profile::wanted(&req.head.path) => {
                    match super::profile::serve(shard, conn, req.head).await {
                        Some(c) => conn = c,
                        None => return,
                    }
                }
                Method::Get => {
                    let not_found = Response::new(404, "Not Found").body(b"");
                    if !conn.send(&not_found).await {
                        return;
                    }
                }
                Method::Post | Method::Other => {
                    tracing::info!(%peer, "a second request after the cookie on one connection: closed");
                    conn.refuse(401, "Authentication failed").await;
                    return;
                }
            }
        }
    };
    if with_timeout(limit, wait).await.is_none() {
        shard.metrics().auth_timeouts.inc();
        tracing::debug!(%peer, "auth_timeout: no CONNECT within {} s of the cookie; closed", limit.as_secs());
    }
}

/// The login's requests on one connection, until a cookie (the connection
/// is returned, to wait for its CONNECT), a CONNECT, an error or the end.
async fn login(
    shard: &Rc<Shard>,
    mut conn: Conn,
    mut first: Option<super::conn::Request>,
) -> Option<Conn> {
    let shard = shard.clone();
    let peer = conn.peer;
    let bans = &shard.shared.bans;
    let points = shard.shared.config.get().raw.security.clone();
    // Known once the first request arrives (the handshake is done): the
    // virtual host the client named, its configuration, the certificate.
    let mut host: Option<(Option<Arc<str>>, Arc<Config>)> = None;
    let mut cert: Option<CertUser> = None;
    let mut exchange: Option<AuthExchange> = None;
    let mut mobile = false;
    let mut user_agent = String::new();
    // Camouflage: until a request names the secret, this is a web server
    // with nothing to show (ocserv's camouflage).
    let mut hidden: Option<bool> = None;
    // select-group-by-url: the group the login's first URL names.
    let mut url_group: Option<Option<String>> = None;
    // The password attempt under way (user, group wanted) and the backend
    // conversation waiting for the answer to its prompt.
    let mut attempt: Option<(String, Option<String>)> = None;
    let mut backend: Option<crate::auth::conversation::Handle> = None;
    loop {
        let req = match first.take() {
            Some(r) => r,
            None => next_request(&shard, &mut conn).await?,
        };
        if shard.shared.test_hooks {
            test_hook(&shard, &req.head.path);
        }
        let (vhost, cfg) = host
            .get_or_insert_with(|| {
                let vhost = conn.tls.vhost();
                let cfg = shard.config_of(vhost.as_deref());
                conn.headers = cfg.http_headers.clone();
                (vhost, cfg)
            })
            .clone();
        let cfg = &*cfg;
        let secret = &cfg.raw.server.camouflage_secret;
        let hidden = hidden.get_or_insert(!secret.is_empty());
        let session_cookie = req
            .head
            .cookie("webvpn")
            .and_then(|c| Cookie::parse(c).ok());
        if *hidden {
            match req.head.method {
                Method::Get | Method::Post
                    if req
                        .head
                        .path
                        .split_once('?')
                        .is_some_and(|(_, q)| q == secret.as_str()) =>
                {
                    *hidden = false;
                }
                // A client of a live session goes on without the secret
                // (as ocserv); its session's shard knows whether it is one.
                Method::Get | Method::Post
                    if session_cookie.is_some_and(|c| c.home_shard() != shard.id) =>
                {
                    let home = session_cookie.map_or(shard.id, |c| c.home_shard());
                    conn.move_to(&shard, home, Moved::Revealed(Box::new(req)))
                        .await;
                    return None;
                }
                Method::Get | Method::Post
                    if session_cookie.is_some_and(|c| shard.has_session(&c)) =>
                {
                    *hidden = false;
                }
                Method::Get | Method::Post => {
                    tracing::info!(%peer, "camouflage: no secret in the URL, answered as a web server");
                    let realm = &cfg.raw.server.camouflage_realm;
                    let answer = if realm.is_empty() {
                        http::error_response(404, "Not Found")
                    } else {
                        Response::new(401, "Unauthorized")
                            .header(
                                "WWW-Authenticate",
                                format!("Basic realm=\"{}\"", realm.replace('"', "")),
                            )
                            .header("Connection", "close")
                            .body(b"")
                    };
                    let _ = with_timeout(Duration::from_secs(5), conn.send(&answer)).await;
                    return None;
                }
                // A CONNECT with a cookie of ours may pass; anything else
                // is a method this web server does not allow.
                Method::Connect
                    if req
                        .head
                        .cookie("webvpn")
                        .is_some_and(|c| Cookie::parse(c).is_ok()) => {}
                _ => {
                    conn.refuse(405, "Method Not Allowed").await;
                    return None;
                }
            }
        }
        if req.head.method == Method::Get && super::profile::wanted(&req.head.path) {
            conn = super::profile::serve(&shard, conn, req.head).await?;
            continue;
        }
        let url_group = url_group
            .get_or_insert_with(|| {
                cfg.raw
                    .auth
                    .select_group_by_url
                    .then(|| group_of_url(&req.head.path))
                    .flatten()
            })
            .clone();
        let areq = match req.head.method {
            // Its own task: the tunnel outlives the login's larger state.
            Method::Connect => {
                let connect = super::conn::connect(shard.clone(), conn, req.head);
                super::guard::spawn(&shard, "connect", connect);
                return None;
            }
            Method::Other => {
                conn.refuse(405, "Method Not Allowed").await;
                return None;
            }
            Method::Post => match auth::parse_request(&req.body) {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(%peer, "bad auth body: {e}");
                    penalize_bad_request(&shard, peer, "a bad login body");
                    conn.refuse(400, "Bad Request").await;
                    return None;
                }
            },
            Method::Get => AuthRequest::default(),
        };
        mobile |= negotiate::is_mobile(&req.head);
        if let Some(ua) = req.head.header("User-Agent") {
            user_agent = ua.chars().filter(|c| !c.is_control()).take(128).collect();
        }
        let cert = cert.get_or_insert_with(|| cert_user(cfg, &conn.tls));
        let cert_named = matches!(cert, CertUser::Named { .. });
        // What the password route answers, and whether that ends the login.
        let mut conn_reply: Option<Vec<u8>> = None;
        let mut cookie_sent = false;
        let (reply, logged_in) = match route(cfg.auth_method, cert) {
            Route::Refuse(why) => {
                refused(&shard, peer, None, why);
                conn.refuse(401, why).await;
                return None;
            }
            Route::Certificate { user, group } => {
                let wanted = url_group.or(areq.group).filter(|g| !g.is_empty());
                let groups = group.map(str::to_owned).into_iter().collect();
                match finish(
                    &shard,
                    (vhost.clone(), cfg),
                    peer,
                    user.to_owned(),
                    Proof::Groups(groups),
                    wanted,
                    (mobile, &user_agent, true),
                )
                .await
                {
                    Ok(Done::Reply(reply)) => (reply, true),
                    Ok(Done::Move(home, login)) => {
                        conn.move_to(&shard, home, Moved::Login(login)).await;
                        return None;
                    }
                    Err(LoginError::Refused(why)) => {
                        conn.refuse(401, why).await;
                        return None;
                    }
                    Err(LoginError::WrongPassword) => {
                        conn.refuse(401, "Authentication failed").await;
                        return None;
                    }
                }
            }
            Route::Password => {
                if exchange.is_none() {
                    let groups = if url_group.is_some() {
                        // The URL chose: no list to choose from.
                        Arc::from([])
                    } else if cfg.raw.auth.auto_select_group {
                        with_default_group(cfg, password_file_groups(cfg).await)
                    } else {
                        with_default_group(cfg, cfg.select_groups.clone())
                    };
                    let mut ex = match cert {
                        CertUser::Named { user, .. } => {
                            AuthExchange::for_user(user.clone(), groups)
                        }
                        _ => AuthExchange::with_groups(groups),
                    };
                    let banner = &cfg.raw.auth.pre_login_banner;
                    ex.set_banner((!banner.is_empty()).then(|| banner.as_str().into()));
                    exchange = Some(ex);
                }
                let login = exchange.as_mut()?;
                let outcome = match login.handle(areq) {
                    Step::Form(doc) => Outcome::Form(doc),
                    Step::Verify {
                        username,
                        password,
                        group,
                    } => {
                        attempt = Some((username.clone(), url_group.clone().or(group)));
                        match cfg.backend {
                            Backend::File if cfg.raw.auth.otp_file.is_none() => {
                                Outcome::Proved(Proof::Password(password))
                            }
                            Backend::File | Backend::Radius | Backend::Pam | Backend::Ldap => {
                                let who = Who {
                                    user: &username,
                                    peer,
                                    local: conn.local,
                                    user_agent: &user_agent,
                                };
                                match start_backend(cfg, &who, password) {
                                    Ok(h) => converse(&shard, cfg, h, &mut backend).await,
                                    Err(why) => Outcome::Failed(why),
                                }
                            }
                        }
                    }
                    Step::Answer(answer) => match backend.take() {
                        Some(h) => {
                            h.answer(answer);
                            converse(&shard, cfg, h, &mut backend).await
                        }
                        None => Outcome::Failed("an answer with no question pending".into()),
                    },
                };
                let (username, wanted) = attempt.clone().unwrap_or_default();
                let wrong = match outcome {
                    Outcome::Form(doc) => {
                        conn_reply = Some(xml_reply(&doc));
                        None
                    }
                    Outcome::Ask(prompt) => match login.ask(prompt) {
                        Some(doc) => {
                            conn_reply = Some(xml_reply(&doc));
                            None
                        }
                        None => {
                            refused(
                                &shard,
                                peer,
                                Some(&username),
                                "too many prompts from the backend",
                            );
                            conn.refuse(401, "Authentication failed").await;
                            return None;
                        }
                    },
                    Outcome::Failed(why) => {
                        refused(
                            &shard,
                            peer,
                            Some(&username),
                            &format!("{} backend: {why}", cfg.backend.name()),
                        );
                        conn.refuse(401, "Authentication failed").await;
                        return None;
                    }
                    Outcome::Wrong(message) => Some(message),
                    Outcome::Proved(proof) => match finish(
                        &shard,
                        (vhost.clone(), cfg),
                        peer,
                        username.clone(),
                        proof,
                        wanted,
                        (mobile, &user_agent, cert_named),
                    )
                    .await
                    {
                        Ok(done) => {
                            login.verified(true);
                            match done {
                                Done::Reply(reply) => {
                                    cookie_sent = true;
                                    conn_reply = Some(reply);
                                    None
                                }
                                Done::Move(home, l) => {
                                    conn.move_to(&shard, home, Moved::Login(l)).await;
                                    return None;
                                }
                            }
                        }
                        Err(LoginError::Refused(why)) => {
                            conn.refuse(401, why).await;
                            return None;
                        }
                        Err(LoginError::WrongPassword) => Some(None),
                    },
                };
                if let Some(message) = wrong {
                    penalize(
                        &shard,
                        peer,
                        points.ban_points_wrong_password,
                        "a wrong password",
                    );
                    let banned = bans.is_banned(peer.ip(), Instant::now());
                    match login.verified_with(false, message.as_deref()) {
                        Verdict::Retry(doc) if !banned => {
                            refused(&shard, peer, Some(&username), "wrong password");
                            conn_reply = Some(xml_reply(&doc));
                        }
                        Verdict::Retry(_) => {
                            refused(
                                &shard,
                                peer,
                                Some(&username),
                                "wrong password from an address now banned",
                            );
                            conn.refuse(401, "Authentication failed").await;
                            return None;
                        }
                        Verdict::Failed | Verdict::Success { .. } => {
                            refused(&shard, peer, Some(&username), "too many wrong passwords");
                            conn.refuse(401, "Authentication failed").await;
                            return None;
                        }
                    }
                }
                (conn_reply.take()?, cookie_sent)
            }
        };
        if !conn.send(&reply).await {
            return None;
        }
        if logged_in {
            return Some(conn);
        }
    }
}

/// How long a backend other than RADIUS may take to answer one step
/// (a password hash and a file update for the one-time password file).
const BACKEND_LIMIT: Duration = Duration::from_secs(10);

/// What a login step came to.
enum Outcome {
    /// Answer with this form (the username or password form).
    Form(Vec<u8>),
    /// The backend asks this next.
    Ask(auth::Prompt),
    /// Who the user is, to be finished (a password still to check against
    /// the password file, or a backend's acceptance).
    Proved(Proof),
    /// Wrong credentials, with what the backend says of it.
    Wrong(Option<String>),
    /// The backend could not decide: the login fails.
    Failed(String),
}

/// How a user proved who they are.
enum Proof {
    /// A password for the password file.
    Password(String),
    /// A certificate, with the group it names.
    Groups(Vec<String>),
    /// A backend accepted the login.
    Backend(crate::auth::Accepted),
}

/// The client, as a backend is told about it.
struct Who<'a> {
    user: &'a str,
    peer: SocketAddr,
    local: SocketAddr,
    user_agent: &'a str,
}

/// Starts the backend's conversation for one password attempt.
fn start_backend(
    cfg: &Config,
    who: &Who<'_>,
    password: String,
) -> Result<crate::auth::conversation::Handle, String> {
    match cfg.backend {
        Backend::File => return start_otp(cfg, who.user, password),
        Backend::Pam => {
            let pam = cfg.raw.pam.clone();
            let user = who.user.to_owned();
            let rhost = who.peer.ip().to_string();
            return crate::auth::conversation::start("pam", cfg.auth_timeout(), move |conv| {
                crate::auth::pam::login(&pam, conv, &user, password, &rhost)
            })
            .map_err(|e| e.to_string());
        }
        Backend::Ldap => {
            let Some(ldap) = cfg.ldap.clone() else {
                return Err("no [ldap] configured".into());
            };
            let user = who.user.to_owned();
            return crate::auth::conversation::start("ldap", cfg.auth_timeout(), move |_| {
                ldap.login(&user, &password)
            })
            .map_err(|e| e.to_string());
        }
        Backend::Radius => {}
    }
    let Some(radius) = cfg.radius.clone() else {
        return Err("no [radius] configured".into());
    };
    let user = radius.user_name(who.user);
    let client = who.peer.ip();
    let nas_ip = radius.nas_ip.or(Some(who.local.ip()));
    let agent = who.user_agent.to_owned();
    let started = Instant::now();
    crate::auth::conversation::start("radius", cfg.auth_timeout(), move |conv| {
        let login = crate::proto::radius::login::Login {
            user: &user,
            client: Some(client),
            nas_ip,
            nas_identifier: &radius.nas_identifier,
            session_id: "",
            user_agent: &agent,
        };
        let verdict = radius.login(conv, &login, password);
        tracing::debug!(user = %user, ms = started.elapsed().as_millis() as u64, "RADIUS login: {}", match &verdict {
            crate::auth::Verdict::Accept(_) => "accepted",
            crate::auth::Verdict::Reject(_) => "rejected",
            crate::auth::Verdict::Error(_) => "failed",
        });
        verdict
    })
    .map_err(|e| e.to_string())
}

/// The password file's password, then a one-time password from the oath
/// users file (ocserv's `plain[otp=FILE]`).
fn start_otp(
    cfg: &Config,
    user: &str,
    password: String,
) -> Result<crate::auth::conversation::Handle, String> {
    use crate::auth::Verdict;
    let passwd = cfg.raw.auth.passwd_file.clone();
    let Some(otp) = cfg.raw.auth.otp_file.clone() else {
        return Err("no otp_file configured".into());
    };
    let user = user.to_owned();
    crate::auth::conversation::start("otp", cfg.auth_timeout(), move |conv| {
        let groups = match crate::passwd::check(&passwd, &user, &password) {
            Ok(Some(g)) => g,
            Ok(None) => return Verdict::Reject(None),
            Err(e) => return Verdict::Error(format!("password file: {e}")),
        };
        let Some(code) = conv.ask(auth::Prompt::secret("Please enter your OTP password.")) else {
            return Verdict::Error("the one-time password went unasked or unanswered".into());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match crate::auth::otp::check(&otp, &user, &code, now) {
            Ok(()) => Verdict::Accept(crate::auth::Accepted {
                groups,
                ..Default::default()
            }),
            Err(crate::auth::otp::OtpError::File { file, why }) => {
                Verdict::Error(format!("{}: {why}", file.display()))
            }
            Err(e) => {
                tracing::info!(user = %user, "one-time password refused: {e}");
                Verdict::Reject(Some(e.to_string()))
            }
        }
    })
    .map_err(|e| e.to_string())
}

/// The backend's next word; a conversation that asks something more is
/// kept in `pending` for the answer.
async fn converse(
    shard: &Shard,
    cfg: &Config,
    h: crate::auth::conversation::Handle,
    pending: &mut Option<crate::auth::conversation::Handle>,
) -> Outcome {
    let o = drive(shard, cfg, &h).await;
    if matches!(o, Outcome::Ask(_)) {
        *pending = Some(h);
    }
    o
}

/// Waits for the backend's next word, at most as long as it may take to
/// ask all its servers; a backend that says nothing fails the login, never
/// the shard.
async fn drive(shard: &Shard, cfg: &Config, h: &crate::auth::conversation::Handle) -> Outcome {
    use crate::auth::{Event, Verdict as V};
    let limit = match (cfg.backend, &cfg.radius) {
        (Backend::Radius, Some(r)) => r.exchange_limit(r.auth.len()) + Duration::from_secs(1),
        (Backend::Ldap, _) => cfg.ldap.as_ref().map_or(BACKEND_LIMIT, |l| l.limit()),
        _ => BACKEND_LIMIT,
    };
    let m = &shard.shared.metrics.backends;
    let name = cfg.backend_name();
    let started = Instant::now();
    let event = with_timeout(limit, h.next()).await;
    m.answered(name, started.elapsed());
    let (outcome, result) = match event {
        Some(Some(Event::Ask(p))) => return Outcome::Ask(p),
        Some(Some(Event::Done(V::Accept(a)))) => (Outcome::Proved(Proof::Backend(a)), "accepted"),
        Some(Some(Event::Done(V::Reject(m)))) => (Outcome::Wrong(m), "rejected"),
        Some(Some(Event::Done(V::Error(why)))) => (Outcome::Failed(why), "failed"),
        Some(None) => (
            Outcome::Failed("the backend ended without a verdict".into()),
            "failed",
        ),
        None => {
            shard.metrics().auth_timeouts.inc();
            (
                Outcome::Failed(format!("no verdict within {} s", limit.as_secs())),
                "failed",
            )
        }
    };
    m.verdict(name, result);
    outcome
}

/// The end of a login: the password if there is one, the group, the
/// user's files (all off the executor), then the session and its cookie,
/// here or on the shard that owns the user's `explicit-ipv4` address.
async fn finish(
    shard: &Shard,
    (vhost, host): (Option<Arc<str>>, &Config),
    peer: SocketAddr,
    user: String,
    proof: Proof,
    wanted: Option<String>,
    (mobile, user_agent, cert_auth): (bool, &str, bool),
) -> Result<Done, LoginError> {
    let user_agent = user_agent.to_owned();
    let name = user.clone();
    let config = shard.config_of(vhost.as_deref());
    let (mut grants, mut class) = (None, Vec::new());
    let (groups, backend) = match proof {
        Proof::Password(pw) => (Err(pw), "plain"),
        Proof::Groups(g) => (Ok(g), "certificate"),
        Proof::Backend(a) => {
            grants = Some(a.grants);
            class = a.class;
            (Ok(a.groups), config.backend_name())
        }
    };
    let checked = super::guard::blocking(move || {
        crate::sys::lower_thread_priority();
        let cfg = &config.raw;
        let groups = match groups {
            Err(pw) => crate::passwd::check(&cfg.auth.passwd_file, &name, &pw)?,
            Ok(g) => Some(g),
        };
        Ok::<_, std::io::Error>(groups.map(|g| {
            // default-select-group: the user's own group.
            let default = &cfg.auth.default_select_group;
            let wanted = wanted.filter(|w| default.is_empty() || w != default);
            let group = pick_group(g, wanted)?;
            crate::usercfg::load(&cfg.users, &name, group.as_deref(), &config.user_defaults)
                .map(|policy| {
                    // Announced at login: read now, off the executor.
                    let profile = policy.user_profile.as_deref().and_then(|p| {
                        Profile::read(p)
                            .map_err(
                                |e| tracing::warn!(user = %name, "user-profile not announced: {e}"),
                            )
                            .ok()
                            .map(|(profile, _)| profile)
                    });
                    (group, policy, profile)
                })
                .map_err(|why| {
                    (
                        "User configuration error",
                        format!("user configuration: {why}"),
                    )
                })
        }))
    })
    .await;
    let checked = match checked {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::error!("password file: {e}");
            None
        }
        Err(super::guard::Panicked) => {
            tracing::error!(user = %user, "checking the login panicked: refused");
            None
        }
    };
    let (group, policy, profile) = match checked {
        None => return Err(LoginError::WrongPassword),
        Some(Err((tell, why))) => {
            refused(shard, peer, Some(&user), &why);
            return Err(LoginError::Refused(tell));
        }
        Some(Ok(p)) => p,
    };
    let mut policy = policy;
    if let Some(g) = &grants {
        crate::auth::apply(g, &mut policy);
    }
    if let Some(v6) = policy.explicit_ipv6 {
        let nets = host.nets(&policy);
        match explicit_v4_of_v6(nets, v6, policy.explicit_ipv4) {
            Ok(v4) => policy.explicit_ipv4 = Some(v4),
            Err(why) => {
                refused(shard, peer, Some(&user), &why);
                return Err(LoginError::Refused("User configuration error"));
            }
        }
    }
    if let Some(addr) = policy.explicit_ipv4 {
        let nets = host.nets(&policy);
        let net = nets.v4;
        if !net.contains(&addr)
            || addr == net.network()
            || addr == net.broadcast()
            || addr == nets.reserved4()
        {
            refused(
                shard,
                peer,
                Some(&user),
                &format!(
                    "explicit-ipv4 {addr} is not a client address of the user's network {net}"
                ),
            );
            return Err(LoginError::Refused("User configuration error"));
        }
        let home = ShardId(crate::pool::owner_shard(addr, shard.shared.shards) as u16);
        if home != shard.id {
            return Ok(Done::Move(
                home,
                Box::new(Login {
                    user,
                    group,
                    policy,
                    mobile,
                    user_agent,
                    cert_auth,
                    profile,
                    vhost,
                    backend,
                    class,
                }),
            ));
        }
    }
    let name = user.clone();
    let announced = profile.clone();
    match shard.create_session(
        Login {
            user,
            group,
            policy,
            mobile,
            user_agent,
            cert_auth,
            profile,
            vhost,
            backend,
            class,
        },
        peer,
    ) {
        Ok(cookie) => Ok(Done::Reply(success_reply(host, cookie, announced.as_ref()))),
        Err(why) => {
            refused(shard, peer, Some(&name), why);
            Err(LoginError::Refused(why))
        }
    }
}

/// `explicit-ipv6`: a client's IPv6 address is the IPv6 network with its
/// IPv4 lease in the low 32 bits, so a fixed IPv6 address fixes the IPv4
/// lease too (and must agree with an `explicit-ipv4` beside it).
fn explicit_v4_of_v6(
    nets: crate::config::Nets,
    v6: std::net::Ipv6Addr,
    v4: Option<std::net::Ipv4Addr>,
) -> Result<std::net::Ipv4Addr, String> {
    let Some(net) = nets.v6 else {
        return Err(format!(
            "explicit-ipv6 {v6} is set, and there is no ipv6_network"
        ));
    };
    let low = std::net::Ipv4Addr::from(u128::from(v6) as u32);
    if nets.ipv6_for(low) != Some(v6) {
        let example = nets
            .ipv6_for(v4.unwrap_or(low))
            .map_or(String::new(), |a| a.to_string());
        return Err(format!(
            "explicit-ipv6 {v6} is not of the form this server gives ({net} with the IPv4 address in the low 32 bits, e.g. {example})"
        ));
    }
    match v4 {
        Some(v4) if v4 != low => Err(format!(
            "explicit-ipv6 {v6} names IPv4 {low}, and explicit-ipv4 is {v4}"
        )),
        _ => Ok(low),
    }
}

/// The login's answer: the cookie, the banner and, with a user-profile,
/// where to fetch it (the XML manifest, and the `webvpnc` cookie older
/// AnyConnect clients read).
fn success_reply(cfg: &Config, cookie: Cookie, profile: Option<&Profile>) -> Vec<u8> {
    let banner = Some(cfg.raw.auth.banner.as_str()).filter(|b| !b.is_empty());
    let mut r = Response::new(200, "OK")
        .header("Connection", "Keep-Alive")
        .header("Content-Type", "text/xml")
        .header("X-Transcend-Version", 1)
        .header("Set-Cookie", format!("webvpn={cookie}; Secure; HttpOnly"));
    let profile = profile.map(|p| (url_escape(&p.name), p.sha1.as_str()));
    if let Some((name, sha1)) = &profile {
        r = r.header(
            "Set-Cookie",
            format!(
                "webvpnc=bu:/&p:t&iu:1/&fu:profiles%2F{name}&fh:{sha1}; path=/; Secure; HttpOnly"
            ),
        );
    }
    r.body(&auth::success_document(
        banner,
        profile.as_ref().map(|(n, h)| (n.as_str(), *h)),
    ))
}

/// A file name inside a cookie value or a URL.
fn url_escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The group a login runs in: the client's pick if the user is a member,
/// else the user's first group. The error is (what the client is told,
/// what the log says).
fn pick_group(
    groups: Vec<String>,
    wanted: Option<String>,
) -> Result<Option<String>, (&'static str, String)> {
    match wanted {
        Some(w) if groups.contains(&w) => Ok(Some(w)),
        Some(w) => Err((
            "Not a member of the selected group",
            format!("not a member of the selected group {w:?}"),
        )),
        None => Ok(groups.into_iter().next()),
    }
}

/// The group list with `default_select_group` first, if one is set.
fn with_default_group(cfg: &Config, groups: Arc<[GroupOption]>) -> Arc<[GroupOption]> {
    let default = &cfg.raw.auth.default_select_group;
    if default.is_empty() || groups.is_empty() {
        return groups;
    }
    std::iter::once(GroupOption {
        name: default.clone(),
        label: default.clone(),
    })
    .chain(groups.iter().cloned())
    .collect()
}

/// select-group-by-url: `/GROUP` (not one of the server's own paths)
/// names the login's group.
fn group_of_url(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let name = path.strip_prefix('/')?;
    let known = [auth::FORM_ACTION.trim_start_matches('/'), "profiles"];
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (plain && !known.contains(&name)).then(|| name.to_owned())
}

/// `auto_select_group`: every group in the password file, read off the
/// executor for each login that asks for a username.
async fn password_file_groups(cfg: &Config) -> Arc<[GroupOption]> {
    let path = cfg.raw.auth.passwd_file.clone();
    let read = super::guard::blocking(move || crate::passwd::all_groups(&path)).await;
    let names = match read {
        Ok(Ok(names)) => names,
        Ok(Err(e)) => {
            tracing::error!("password file: {e}");
            Vec::new()
        }
        Err(super::guard::Panicked) => Vec::new(),
    };
    names
        .iter()
        .filter_map(|n| GroupOption::parse(n).ok())
        .collect()
}
