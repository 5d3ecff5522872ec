//! The RADIUS client: servers tried in order with timeouts, retries and
//! a dead time, on blocking sockets of the login's own thread. What the
//! packets say is `proto::radius`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::conversation::Conversation;
use super::Verdict;
use crate::proto::radius::accounting::{self, Record};
use crate::proto::radius::login::{self, Answer, GroupAttribute};
use crate::proto::radius::{Packet, AUTHENTICATOR_LEN, MAX_PACKET};

/// `[radius]` as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRadius {
    /// Authentication servers, `host[:port]`, tried in order.
    pub servers: Vec<String>,
    /// Send accounting (Start, Interim-Update, Stop) for every session,
    /// whatever the login method.
    pub accounting: bool,
    /// Accounting servers, `host[:port]` (1813); empty: radcli's
    /// acctserver lines.
    pub accounting_servers: Vec<String>,
    /// Seconds between Interim-Updates; 0: none unless an Access-Accept's
    /// Acct-Interim-Interval or a user's stats-report-time asks.
    pub interim_interval: u64,
    /// Where Disconnect-Requests (RFC 5176) are taken, e.g.
    /// "0.0.0.0:3799"; empty: nowhere.
    pub disconnect_listen: String,
    /// Addresses besides the servers' own that may send them, with the
    /// secret of `secret_file`.
    pub disconnect_clients: Vec<String>,
    /// The shared secret's file (its first line).
    pub secret_file: Option<PathBuf>,
    /// radcli's configuration file (ocserv's `radius[config=...]`): its
    /// servers, secrets, NAS identifier, timeout and retries, taken where
    /// this section leaves them unset.
    pub radcli_config: Option<PathBuf>,
    /// NAS-Identifier; empty: none sent.
    pub nas_identifier: String,
    /// NAS-IP-Address; empty: the address the client connected to.
    pub nas_ip: String,
    /// Seconds to wait for an answer before sending again.
    pub timeout: u64,
    /// How often a request is sent again to one server before the next.
    pub retries: u32,
    /// Seconds a server that did not answer is tried last.
    pub dead_time: u64,
    /// Appended to user names without one as `@realm`.
    pub default_realm: String,
    /// Where groups come from: `class` (`OU=a;b` as ocserv reads it),
    /// `filter-id`, `VENDOR:TYPE` numbers, or `none`.
    pub group_attribute: String,
    /// Between the groups of one Class.
    pub group_separator: String,
    /// Answers without a valid Message-Authenticator are dropped
    /// (BlastRADIUS hardening; servers that send one).
    pub require_message_authenticator: bool,
}

impl RawRadius {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for RawRadius {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            accounting: false,
            accounting_servers: Vec::new(),
            interim_interval: 0,
            disconnect_listen: String::new(),
            disconnect_clients: Vec::new(),
            secret_file: None,
            radcli_config: None,
            nas_identifier: String::new(),
            nas_ip: String::new(),
            timeout: 3,
            retries: 2,
            dead_time: 60,
            default_realm: String::new(),
            group_attribute: "class".into(),
            group_separator: ";".into(),
            require_message_authenticator: false,
        }
    }
}

/// One server and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    pub addr: SocketAddr,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// `[radius]` checked, secrets read.
#[derive(Debug)]
pub struct Radius {
    pub auth: Vec<Server>,
    /// Accounting servers; empty when accounting is off.
    pub acct: Vec<Server>,
    pub interim_interval: Option<Duration>,
    pub disconnect_listen: Option<SocketAddr>,
    /// Who may send Disconnect-Requests, with the secret they sign with.
    pub disconnect_from: Vec<(IpAddr, Vec<u8>)>,
    pub timeout: Duration,
    pub retries: u32,
    pub dead_time: Duration,
    pub nas_identifier: String,
    pub nas_ip: Option<IpAddr>,
    pub default_realm: String,
    pub groups: GroupAttribute,
    pub separator: char,
    pub require_message_authenticator: bool,
    /// Per auth server: until when (ms on [`clock`]) it is dead.
    dead_until: Vec<AtomicU64>,
}

/// Why `[radius]` was refused: the key and the reason.
pub type Refusal = (&'static str, String);

impl Radius {
    /// Checks the section; relative paths are relative to `base`.
    pub fn from_raw(raw: &RawRadius, base: &Path) -> Result<Self, Refusal> {
        let path = |p: &Path| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_owned()
            }
        };
        let radcli = match &raw.radcli_config {
            Some(p) => {
                Some(super::radcli::read(&path(p)).map_err(|why| ("radius.radcli_config", why))?)
            }
            None => None,
        };
        let secret = match &raw.secret_file {
            Some(p) => {
                let p = path(p);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| ("radius.secret_file", format!("{}: {e}", p.display())))?;
                let line = text.lines().next().unwrap_or_default().trim().to_owned();
                if line.is_empty() {
                    return Err(("radius.secret_file", format!("{} is empty", p.display())));
                }
                Some(line.into_bytes())
            }
            None => None,
        };
        let servers =
            |key: &'static str, list: &[String], port: u16, from_radcli: &[super::radcli::Host]| {
                let mut out = Vec::new();
                for s in list {
                    let addr = resolve(s, port).map_err(|why| (key, why))?;
                    let secret = secret
                        .clone()
                        .ok_or((key, "no secret: set radius.secret_file".to_owned()))?;
                    out.push(Server { addr, secret });
                }
                if list.is_empty() {
                    for h in from_radcli {
                        let secret = h.secret.clone().or_else(|| secret.clone()).ok_or((
                            key,
                            format!("no secret for {} in the radcli configuration", h.name),
                        ))?;
                        let addr =
                            resolve(&h.name, h.port.unwrap_or(port)).map_err(|why| (key, why))?;
                        out.push(Server { addr, secret });
                    }
                }
                Ok::<_, Refusal>(out)
            };
        let none = Vec::new();
        let rc = radcli.as_ref();
        let auth = servers(
            "radius.servers",
            &raw.servers,
            1812,
            rc.map_or(&none, |r| &r.auth),
        )?;
        let acct = if raw.accounting {
            let acct = servers(
                "radius.accounting_servers",
                &raw.accounting_servers,
                1813,
                rc.map_or(&none, |r| &r.acct),
            )?;
            if acct.is_empty() {
                return Err((
                    "radius.accounting_servers",
                    "expected at least one server (or a radcli acctserver): radius.accounting is on"
                        .into(),
                ));
            }
            acct
        } else {
            Vec::new()
        };

        let or_radcli = |own: &str, theirs: Option<&String>| {
            if own.is_empty() {
                theirs.cloned().unwrap_or_default()
            } else {
                own.to_owned()
            }
        };
        let disconnect_listen = match raw.disconnect_listen.trim() {
            "" => None,
            t => Some(t.parse::<SocketAddr>().map_err(|_| {
                (
                    "radius.disconnect_listen",
                    format!("expected address:port such as \"0.0.0.0:3799\", got {t:?}"),
                )
            })?),
        };
        let mut disconnect_from: Vec<(IpAddr, Vec<u8>)> = auth
            .iter()
            .chain(&acct)
            .map(|s| (s.addr.ip(), s.secret.clone()))
            .collect();
        for c in &raw.disconnect_clients {
            let ip: IpAddr = c.parse().map_err(|_| {
                (
                    "radius.disconnect_clients",
                    format!("expected IP addresses, got {c:?}"),
                )
            })?;
            let secret = secret.clone().ok_or((
                "radius.disconnect_clients",
                "no secret: set radius.secret_file".to_owned(),
            ))?;
            disconnect_from.push((ip, secret));
        }
        if disconnect_listen.is_some() && disconnect_from.is_empty() {
            return Err((
                "radius.disconnect_clients",
                "expected a server or client that may send Disconnect-Requests".into(),
            ));
        }
        let nas_ip = or_radcli(&raw.nas_ip, rc.and_then(|r| r.nas_ip.as_ref()));
        let nas_ip = match nas_ip.as_str() {
            "" => None,
            t => Some(t.parse().map_err(|_| {
                (
                    "radius.nas_ip",
                    format!("expected an IP address, got {t:?}"),
                )
            })?),
        };
        let defaults = RawRadius::default();
        let timeout = match (raw.timeout, rc.and_then(|r| r.timeout)) {
            (t, Some(r)) if t == defaults.timeout => r,
            (t, _) => t,
        };
        let retries = match (raw.retries, rc.and_then(|r| r.retries)) {
            (t, Some(r)) if t == defaults.retries => r,
            (t, _) => t,
        };
        if !(1..=60).contains(&timeout) {
            return Err((
                "radius.timeout",
                format!("expected 1-60 seconds, got {timeout}"),
            ));
        }
        if retries > 10 {
            return Err(("radius.retries", format!("expected 0-10, got {retries}")));
        }
        let groups =
            group_attribute(&raw.group_attribute).map_err(|why| ("radius.group_attribute", why))?;
        let mut sep = raw.group_separator.chars();
        let (Some(separator), None) = (sep.next(), sep.next()) else {
            return Err((
                "radius.group_separator",
                format!("expected one character, got {:?}", raw.group_separator),
            ));
        };
        Ok(Self {
            dead_until: auth.iter().map(|_| AtomicU64::new(0)).collect(),
            auth,
            acct,
            interim_interval: (raw.interim_interval > 0)
                .then(|| Duration::from_secs(raw.interim_interval)),
            disconnect_listen,
            disconnect_from,
            timeout: Duration::from_secs(timeout),
            retries,
            dead_time: Duration::from_secs(raw.dead_time),
            nas_identifier: or_radcli(
                &raw.nas_identifier,
                rc.and_then(|r| r.nas_identifier.as_ref()),
            ),
            nas_ip,
            default_realm: or_radcli(
                &raw.default_realm,
                rc.and_then(|r| r.default_realm.as_ref()),
            ),
            groups,
            separator,
            require_message_authenticator: raw.require_message_authenticator,
        })
    }

    /// The longest one exchange can take: every server, every retry.
    pub fn exchange_limit(&self, servers: usize) -> Duration {
        self.timeout * (self.retries + 1) * u32::try_from(servers.max(1)).unwrap_or(u32::MAX)
    }

    /// The name the server is asked about: with the default realm.
    pub fn user_name(&self, user: &str) -> String {
        if self.default_realm.is_empty() || user.contains('@') {
            user.to_owned()
        } else {
            format!("{user}@{}", self.default_realm)
        }
    }

    /// One login: the password, then each challenge the server sends,
    /// asked through `conv`.
    pub fn login(&self, conv: &Conversation, who: &login::Login<'_>, password: String) -> Verdict {
        let mut answer = password;
        let mut state: Option<Vec<u8>> = None;
        // A challenge's answer goes to the server that sent it.
        let mut pinned: Option<usize> = None;
        loop {
            let reply = self.exchange_auth(pinned, |server, id, authenticator| {
                login::access_request(
                    who,
                    answer.as_bytes(),
                    state.as_deref(),
                    &server.secret,
                    id,
                    authenticator,
                )
            });
            let (index, bytes) = match reply {
                Ok(r) => r,
                Err(why) => return Verdict::Error(why),
            };
            let Ok(packet) = Packet::decode(&bytes) else {
                return Verdict::Error("undecodable RADIUS answer".into());
            };
            match login::answer(&packet, self.groups, self.separator) {
                Answer::Accept(a) => return Verdict::Accept(a),
                Answer::Reject(m) => return Verdict::Reject(m),
                Answer::Challenge { prompt, state: s } => {
                    state = Some(s);
                    pinned = Some(index);
                    match conv.ask(prompt) {
                        Some(a) => answer = a,
                        None => return Verdict::Error("the challenge went unanswered".into()),
                    }
                }
            }
        }
    }

    /// Sends an Access-Request built by `make` (per server: its secret, an
    /// identifier, a random authenticator) until a server answers it
    /// correctly: that server's index and its verified answer.
    fn exchange_auth(
        &self,
        pinned: Option<usize>,
        make: impl Fn(
            &Server,
            u8,
            [u8; AUTHENTICATOR_LEN],
        ) -> Result<Vec<u8>, crate::proto::radius::Error>,
    ) -> Result<(usize, Vec<u8>), String> {
        let now = clock_ms();
        let mut order: Vec<usize> = match pinned {
            Some(i) => vec![i],
            None => (0..self.auth.len()).collect(),
        };
        // The living first, in order; the dead after them.
        order.sort_by_key(|i| self.dead_until[*i].load(Ordering::Relaxed) > now);
        let mut tried = Vec::new();
        for i in order {
            let server = &self.auth[i];
            let mut random = [0u8; AUTHENTICATOR_LEN + 1];
            aws_lc_rs::rand::fill(&mut random).map_err(|_| "no random bytes".to_owned())?;
            let (id, authenticator) = (random[0], random[1..].try_into().unwrap_or_default());
            let request = make(server, id, authenticator).map_err(|e| format!("request: {e}"))?;
            match self.send(server, &request, id, &authenticator) {
                Ok(reply) => {
                    self.dead_until[i].store(0, Ordering::Relaxed);
                    return Ok((i, reply));
                }
                Err(why) => {
                    let until =
                        clock_ms() + u64::try_from(self.dead_time.as_millis()).unwrap_or(u64::MAX);
                    self.dead_until[i].store(until, Ordering::Relaxed);
                    tracing::warn!(server = %server.addr, "RADIUS server: {why}");
                    tried.push(server.addr.to_string());
                }
            }
        }
        Err(format!(
            "no RADIUS server answered (tried {})",
            tried.join(", ")
        ))
    }

    /// Sends one accounting record to the first accounting server that
    /// acknowledges it, `queued` being when its event happened.
    pub fn account(&self, record: &Record, queued: Instant) -> Result<(), String> {
        let mut tried = Vec::new();
        for server in &self.acct {
            let mut id = [0u8; 1];
            aws_lc_rs::rand::fill(&mut id).map_err(|_| "no random bytes".to_owned())?;
            let delay = u32::try_from(queued.elapsed().as_secs()).unwrap_or(u32::MAX);
            let request = accounting::request(record, delay, &server.secret, id[0])
                .map_err(|e| format!("request: {e}"))?;
            let mut authenticator = [0u8; AUTHENTICATOR_LEN];
            authenticator.copy_from_slice(&request[4..4 + AUTHENTICATOR_LEN]);
            match self.send(server, &request, id[0], &authenticator) {
                Ok(_) => return Ok(()),
                Err(why) => {
                    tracing::warn!(server = %server.addr, "RADIUS accounting server: {why}");
                    tried.push(server.addr.to_string());
                }
            }
        }
        Err(format!(
            "no accounting server answered (tried {})",
            tried.join(", ")
        ))
    }

    /// One request to one server, sent again after each timeout; answers
    /// that are not this request's, or not signed with the secret, are
    /// dropped as if never received.
    fn send(
        &self,
        server: &Server,
        request: &[u8],
        id: u8,
        authenticator: &[u8; AUTHENTICATOR_LEN],
    ) -> Result<Vec<u8>, String> {
        let local: SocketAddr = if server.addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(server.addr)
        } else {
            "[::]:0".parse().unwrap_or(server.addr)
        };
        let sock = UdpSocket::bind(local).map_err(|e| format!("socket: {e}"))?;
        sock.connect(server.addr)
            .map_err(|e| format!("connect: {e}"))?;
        let mut buf = vec![0u8; MAX_PACKET];
        for _ in 0..=self.retries {
            sock.send(request).map_err(|e| format!("send: {e}"))?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                sock.set_read_timeout(Some(left))
                    .map_err(|e| e.to_string())?;
                let n = match sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    // ICMP port unreachable: try again after the timeout.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        std::thread::sleep(left.min(Duration::from_millis(200)));
                        continue;
                    }
                    Err(e) => return Err(format!("receive: {e}")),
                };
                let Ok(reply) = Packet::decode(&buf[..n]) else {
                    continue;
                };
                if reply.identifier() != id {
                    continue;
                }
                // Accounting-Responses are signed by their authenticator.
                let require = self.require_message_authenticator
                    && reply.code() != crate::proto::radius::Code::AccountingResponse;
                match reply.verify_reply(authenticator, &server.secret, require) {
                    Ok(()) => return Ok(buf[..n].to_vec()),
                    Err(e) => {
                        tracing::warn!(server = %server.addr, "RADIUS answer dropped: {e}");
                    }
                }
            }
        }
        Err(format!(
            "no answer after {} tries of {} s",
            self.retries + 1,
            self.timeout.as_secs()
        ))
    }
}

/// Milliseconds since the first call: a clock for dead times.
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `host[:port]`, `[v6]:port` or a bare IPv6 address, resolved once.
fn resolve(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("{s:?}: bad port"))?),
        None => (s, default_port),
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?}: no address"))
}

fn group_attribute(v: &str) -> Result<GroupAttribute, String> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "class" => GroupAttribute::Class,
        "filter-id" => GroupAttribute::FilterId,
        "none" | "" => GroupAttribute::None,
        other => {
            let parsed = other
                .split_once(':')
                .and_then(|(v, t)| Some(GroupAttribute::Vendor(v.parse().ok()?, t.parse().ok()?)));
            parsed.ok_or_else(|| {
                format!("expected class, filter-id, none or VENDOR:TYPE numbers, got {v:?}")
            })?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_attributes_and_addresses() {
        assert_eq!(group_attribute("Class").unwrap(), GroupAttribute::Class);
        assert_eq!(
            group_attribute("9:1").unwrap(),
            GroupAttribute::Vendor(9, 1)
        );
        assert!(group_attribute("cls").is_err());
        assert_eq!(resolve("127.0.0.1", 1812).unwrap().port(), 1812);
        assert_eq!(resolve("127.0.0.1:1645", 1812).unwrap().port(), 1645);
        assert_eq!(resolve("[::1]:1645", 1812).unwrap().port(), 1645);
        assert_eq!(resolve("localhost:11812", 1812).unwrap().port(), 11812);
        assert!(resolve("localhost:x", 1812).is_err());
    }
}
