//! The TOML configuration: every key, its default, and validation that names
//! the file, the key and what was expected (config/ocserv-uring.toml documents
//! each key).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::proto::auth::GroupOption;
use crate::units::SizeValue;

mod files;
mod validate;

pub use files::Unread;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {err}")]
    Read { file: PathBuf, err: std::io::Error },
    #[error("{file}: {msg}")]
    Parse { file: PathBuf, msg: String },
    #[error("{file}:{line}: key `{key}`: {reason}")]
    Ocserv {
        file: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        file: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{file}: virtual host `{name}`: {reason}")]
    Vhost {
        file: PathBuf,
        name: String,
        reason: String,
    },
}

/// One address or a list of them (`"0.0.0.0"` or `["0.0.0.0", "::"]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn texts(&self) -> &[String] {
        match self {
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(v) => v,
        }
    }

    /// The addresses, checked: IP addresses, no repeats, and a wildcard
    /// alone in its family (it covers the others).
    pub fn addresses(&self) -> Result<Vec<IpAddr>, String> {
        let mut all: Vec<IpAddr> = Vec::new();
        for t in self.texts() {
            let a: IpAddr = t
                .trim()
                .parse()
                .map_err(|_| format!("expected an IP address, got {t:?}"))?;
            if all.contains(&a) {
                return Err(format!("{a} is listed twice"));
            }
            all.push(a);
        }
        for a in &all {
            if a.is_unspecified() && all.iter().any(|b| b != a && b.is_ipv4() == a.is_ipv4()) {
                return Err(format!(
                    "{a} already covers the other addresses of its family"
                ));
            }
        }
        Ok(all)
    }
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.texts())
    }
}

/// `server.batch_wait_us` by default, and at most: a wait adds up to
/// this much latency to a packet under load.
pub const DEFAULT_BATCH_WAIT_US: u32 = 500;
pub const MAX_BATCH_WAIT_US: u32 = 10_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Addresses the TCP listeners bind to, and the UDP (DTLS) sockets
    /// unless `udp_listen` names others: one, or a list.
    pub listen: Addresses,
    /// Where DTLS listens instead (ocserv's udp-listen-host); empty: `listen`.
    pub udp_listen: Addresses,
    pub tcp_port: u16,
    pub udp_port: u16,
    pub workers: usize,
    /// Under load, how long a shard lets packets gather after a batch
    /// before it takes the next, so one wake-up handles many; 0: never.
    pub batch_wait_us: u32,
    /// `text` (one line per event) or `json` (one object per line).
    pub log_format: String,
    /// The user the server becomes once its TUN device, sockets and
    /// steering program exist (ocserv's run-as-user); empty: stay as
    /// started.
    pub run_as_user: String,
    /// Its group; empty: the user's own group.
    pub run_as_group: String,
    /// Written with the server's process id at start; empty: none.
    pub pid_file: PathBuf,
    /// Every TCP connection starts with a PROXY header (v1 or v2) from a
    /// load balancer, naming the client (ocserv's listen-proxy-proto); a
    /// connection without one is closed.
    pub proxy_protocol: bool,
    /// Camouflage (ocserv's): unless a request's URL ends in `?SECRET`,
    /// the server answers as a web server with nothing to show; empty: off.
    pub camouflage_secret: String,
    /// The realm of the 401 camouflage answers; empty: 404 instead.
    pub camouflage_realm: String,
    /// Header lines (`Name: value`) added to every HTTP answer, e.g.
    /// Strict-Transport-Security (ocserv's included-http-headers).
    pub http_headers: Vec<String>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: Addresses::Many(vec!["0.0.0.0".into(), "::".into()]),
            udp_listen: Addresses::Many(Vec::new()),
            tcp_port: 443,
            udp_port: 443,
            workers: 0,
            batch_wait_us: DEFAULT_BATCH_WAIT_US,
            log_format: "text".into(),
            run_as_user: String::new(),
            run_as_group: String::new(),
            pid_file: PathBuf::new(),
            proxy_protocol: false,
            camouflage_secret: String::new(),
            camouflage_realm: String::new(),
            http_headers: Vec::new(),
        }
    }
}

/// `server.run_as_user` / `run_as_group`, looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

impl RunAs {
    pub fn describe(&self) -> String {
        format!(
            "user {} ({}), group {} ({})",
            self.user, self.uid, self.group, self.gid
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Create a self-signed certificate and key at start if both are missing.
    pub generate_self_signed: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            cert_file: "/etc/ocserv-uring/server-cert.pem".into(),
            key_file: "/etc/ocserv-uring/server-key.pem".into(),
            generate_self_signed: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub passwd_file: PathBuf,
    /// Groups offered at login: `name` or `name[Label]`.
    pub select_group: Vec<String>,
    /// Offer every group named in the password file instead.
    pub auto_select_group: bool,
    /// `password`, `certificate`, `certificate+password` (both) or
    /// `certificate|password` (either).
    pub method: String,
    /// CA certificates (PEM) that client certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// Certificate revocation lists (PEM) of that CA: a revoked client
    /// certificate fails the handshake. Read again at every reload.
    pub crl_file: Option<PathBuf>,
    /// The subject attribute that names the user: CN, UID, ... or an OID.
    pub cert_user_oid: String,
    /// The subject attribute that names the group (certificate logins).
    pub cert_group_oid: Option<String>,
    /// Shown to the user above the login form (ocserv's pre-login-banner).
    pub pre_login_banner: String,
    /// Shown to the user once logged in (ocserv's banner).
    pub banner: String,
    /// The AnyConnect profile (profile.xml) announced at login and served
    /// at /profiles/ to clients with a cookie (ocserv's user-profile);
    /// a user's or group's file may name another.
    pub user_profile: Option<PathBuf>,
    /// A first entry of the group list that means "my own group" (the
    /// password file's first), as ocserv's default-select-group; empty:
    /// none.
    pub default_select_group: String,
    /// A login to `https://server/GROUP` runs in GROUP, with no group
    /// list shown (ocserv's select-group-by-url).
    pub select_group_by_url: bool,
    /// An oath users file (ocserv's `plain[otp=FILE]`): after the password
    /// file's password, a one-time password from it is asked.
    pub otp_file: Option<PathBuf>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            passwd_file: "/etc/ocserv-uring/ocpasswd".into(),
            select_group: Vec::new(),
            auto_select_group: false,
            method: "password".into(),
            ca_file: None,
            crl_file: None,
            cert_user_oid: "CN".into(),
            cert_group_oid: None,
            pre_login_banner: String::new(),
            banner: String::new(),
            user_profile: None,
            default_select_group: String::new(),
            select_group_by_url: false,
            otp_file: None,
        }
    }
}

/// How users prove who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Password,
    Certificate,
    /// A certificate and the password of the user it names.
    CertificateAndPassword,
    /// A certificate if the client has one, else a password.
    CertificateOrPassword,
}

/// Who checks a password (and what follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `auth.passwd_file`.
    File,
    /// `[radius]`.
    Radius,
    /// `[pam]`.
    Pam,
    /// `[ldap]`.
    Ldap,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Radius => "radius",
            Self::Pam => "pam",
            Self::Ldap => "ldap",
        }
    }
}

impl AuthMethod {
    /// `password` (the password file) or a backend's name, alone or with
    /// `certificate`.
    fn parse(text: &str) -> Option<(Self, Backend)> {
        let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut backend = Backend::File;
        let words: Vec<&str> = t
            .split(['+', '|'])
            .map(|w| match w {
                "radius" => {
                    backend = Backend::Radius;
                    "password"
                }
                "pam" => {
                    backend = Backend::Pam;
                    "password"
                }
                "ldap" => {
                    backend = Backend::Ldap;
                    "password"
                }
                w => w,
            })
            .collect();
        let joiner = if t.contains('|') { "|" } else { "+" };
        let method = match words.join(joiner).as_str() {
            "password" => Self::Password,
            "certificate" => Self::Certificate,
            "certificate+password" | "password+certificate" => Self::CertificateAndPassword,
            "certificate|password" | "password|certificate" => Self::CertificateOrPassword,
            _ => return None,
        };
        Some((method, backend))
    }

    pub fn uses_certificates(self) -> bool {
        self != Self::Password
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub device: String,
    pub ipv4_network: String,
    /// IPv6 pool; empty = no IPv6. A client's IPv6 address ends in the 32
    /// bits of its IPv4 one, so the prefix is /96 or shorter.
    pub ipv6_network: String,
    pub dns: Vec<String>,
    pub routes: Vec<String>,
    /// Drop client packets to destinations outside the client's routes.
    pub restrict_user_to_routes: bool,
    pub mtu: u16,
    /// TUN offloads (IFF_VNET_HDR, TSO/USO): 64 KB reads cut into packets
    /// in the shard. Off only to rule them out when chasing a problem.
    pub tun_offload: bool,
    /// Networks clients keep out of the tunnel (X-CSTP-Split-Exclude).
    pub no_routes: Vec<String>,
    /// Domains resolved through the tunnel's DNS (X-CSTP-Split-DNS).
    pub split_dns: Vec<String>,
    /// DNS search domains, space-separated (X-CSTP-Default-Domain).
    pub default_domain: String,
    /// NetBIOS name servers (X-CSTP-NBNS).
    pub nbns: Vec<String>,
    /// Every DNS query through the tunnel, also in split tunnels.
    pub tunnel_all_dns: bool,
    /// Traffic of a family the client has no tunnel address for bypasses
    /// the tunnel (X-CSTP-Client-Bypass-Protocol).
    pub client_bypass_protocol: bool,
    /// A user gets the same address at every login while it is free
    /// (ocserv's predictable-ips); else the lowest free one.
    pub predictable_ips: bool,
    /// The protocols and ports clients may reach, in ocserv's syntax
    /// (`tcp(443), udp(53), icmp()` or `!(tcp(22))`); empty: all.
    pub restrict_user_to_ports: String,
    /// SO_PRIORITY (0-6) or IP TOS byte (`0x..`) of the tunnels' sockets
    /// (ocserv's net-priority); empty: none.
    pub net_priority: String,
    /// Every client is told the iroutes in `users.config_per_user`'s files
    /// as routes, but its own (ocserv's expose-iroutes).
    pub expose_iroutes: bool,
    /// A user or group file's routes add to `routes` instead of replacing
    /// them (ocserv's append-routes).
    pub append_routes: bool,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            device: "vpns".into(),
            ipv4_network: "192.168.100.0/24".into(),
            ipv6_network: String::new(),
            dns: vec!["192.168.100.1".into()],
            routes: vec![],
            restrict_user_to_routes: false,
            mtu: 1400,
            tun_offload: true,
            no_routes: vec![],
            split_dns: vec![],
            default_domain: String::new(),
            nbns: vec![],
            tunnel_all_dns: false,
            client_bypass_protocol: false,
            predictable_ips: false,
            restrict_user_to_ports: String::new(),
            net_priority: String::new(),
            expose_iroutes: false,
            append_routes: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Session {
    pub dpd: u64,
    pub keepalive: u64,
    pub cookie_timeout: u64,
    pub auth_timeout: u64,
    pub max_clients: usize,
    /// Sessions one user may hold at once; 0 = no limit.
    pub max_same_clients: u32,
    /// Seconds without data from the client before it is disconnected; 0 = never.
    pub idle_timeout: u64,
    /// The same for mobile clients; 0 = use `idle_timeout`.
    pub mobile_idle_timeout: u64,
    /// Seconds from login to the end of the session, reconnects included; 0 = none.
    pub session_timeout: u64,
    /// Keep the cookie valid after a client logout (for `cookie_timeout`).
    pub persistent_cookies: bool,
    /// A cookie works only from the address that logged in.
    pub deny_roaming: bool,
    /// DPD interval for mobile clients; 0 = `dpd`.
    pub mobile_dpd: u64,
    /// Headers added to the CONNECT answer (`Name: value`; `%{U}` and
    /// `%{G}` become the user and group), as ocserv's custom-header.
    pub custom_headers: Vec<String>,
    /// Seconds after which clients rekey (X-CSTP-Rekey-Time); 0: never.
    pub rekey_time: u64,
    /// How: `ssl` (a new TLS handshake, else a new tunnel) or `new-tunnel`
    /// (a new connection with the cookie), as ocserv's rekey-method.
    pub rekey_method: String,
    /// The proxy auto-config URL clients are told (X-CSTP-MSIE-Proxy-Pac-URL;
    /// `%{U}`/`%{G}` become the user and group), as ocserv's proxy-url;
    /// empty: none.
    pub proxy_url: String,
    /// Bytes per second per session from / to the client; 0 = no limit.
    pub rx_data_per_sec: SizeValue,
    pub tx_data_per_sec: SizeValue,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            dpd: 90,
            keepalive: 32400,
            cookie_timeout: 300,
            auth_timeout: 40,
            max_clients: 0,
            max_same_clients: 0,
            idle_timeout: 0,
            mobile_idle_timeout: 0,
            session_timeout: 0,
            persistent_cookies: false,
            deny_roaming: false,
            mobile_dpd: 0,
            custom_headers: Vec::new(),
            // ocserv's default: 48 hours (some clients misbehave without a rekey).
            rekey_time: 172_800,
            rekey_method: "ssl".into(),
            proxy_url: String::new(),
            rx_data_per_sec: SizeValue::default(),
            tx_data_per_sec: SizeValue::default(),
        }
    }
}

/// Brute-force protection (src/bans.rs).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// Score at which an address is banned; 0 = no bans.
    pub max_ban_score: u32,
    /// Seconds a banned address is refused.
    pub ban_time: u64,
    /// Seconds without new points after which a score starts again.
    pub ban_reset_time: u64,
    pub ban_points_wrong_password: u32,
    /// A malformed HTTP request, login body or cookie.
    pub ban_points_bad_request: u32,
    /// Every TCP connection.
    pub ban_points_connection: u32,
    /// Connections not yet logged in (TLS handshake to cookie, then the
    /// wait for CONNECT) each shard serves at once; 0 = no limit.
    pub max_logins_per_shard: u32,
    /// The same per client address (IPv6 per /64), across shards.
    pub max_logins_per_address: u32,
    /// A connection closed at accept because a limit above was reached.
    pub ban_points_login_limit: u32,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            max_ban_score: 80,
            ban_time: 300,
            ban_reset_time: 1200,
            ban_points_wrong_password: 10,
            ban_points_bad_request: 10,
            ban_points_connection: 0,
            max_logins_per_shard: 1024,
            max_logins_per_address: 64,
            ban_points_login_limit: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dtls {
    /// PSK-NEGOTIATE (openconnect >= 7.08 against ocserv): the DTLS key is
    /// derived from the CONNECT's TLS session.
    pub psk_negotiate: bool,
    /// Resumption from the client's X-DTLS-Master-Secret (Cisco clients).
    pub legacy: bool,
}

impl Default for Dtls {
    fn default() -> Self {
        Self {
            psk_negotiate: true,
            legacy: true,
        }
    }
}

/// The `[users]` section: where per-user and per-group files are.
pub use crate::usercfg::Users;

/// The control socket `ocserv-uring ctl` talks to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Unix socket path; empty turns the socket off.
    pub socket: PathBuf,
    /// A group whose members may use the socket too; empty = root (and
    /// the server's own user) only.
    pub group: String,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            socket: DEFAULT_CONTROL_SOCKET.into(),
            group: String::new(),
        }
    }
}

/// Operator scripts run with ocserv's environment variables.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scripts {
    /// Runs before a session's first CONNECT is answered; failing refuses it.
    pub connect_script: Option<PathBuf>,
    /// Runs when a session that connected ends.
    pub disconnect_script: Option<PathBuf>,
    /// Seconds a script may run before it is killed (and, for the
    /// connect script, the session refused).
    pub script_timeout: u64,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            connect_script: None,
            disconnect_script: None,
            script_timeout: 10,
        }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitoring {
    /// `address:port` serving `GET /metrics`; empty (the default) is off.
    pub metrics_listen: String,
}

/// Where `ctl` looks when neither `--socket` nor `--config` is given.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ocserv-uring/ctl.socket";

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: Server,
    pub tls: Tls,
    pub auth: Auth,
    pub network: Network,
    pub session: Session,
    pub dtls: Dtls,
    pub users: Users,
    pub security: Security,
    pub control: Control,
    pub monitoring: Monitoring,
    pub scripts: Scripts,
    /// RADIUS servers, for `auth.method = "radius"` and for accounting.
    #[serde(skip_serializing_if = "crate::auth::radius::RawRadius::is_default")]
    pub radius: crate::auth::radius::RawRadius,
    /// The directory, for `auth.method = "ldap"`.
    #[serde(skip_serializing_if = "crate::auth::ldap::RawLdap::is_default")]
    pub ldap: crate::auth::ldap::RawLdap,
    /// The PAM service, for `auth.method = "pam"`.
    #[serde(skip_serializing_if = "crate::auth::pam::RawPam::is_default")]
    pub pam: crate::auth::pam::RawPam,
    /// Virtual hosts (ocserv's `[vhost:NAME]`), chosen by the server name
    /// a client's TLS hello asks for (SNI): each table holds the keys that
    /// differ from the rest of the file, in its sections.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vhost: BTreeMap<String, toml::Table>,
}

/// The checked configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub raw: RawConfig,
    /// `server.listen` and `server.udp_listen` (or `listen` again), checked.
    pub listen: Vec<IpAddr>,
    pub udp_listen: Vec<IpAddr>,
    pub ipv4_network: Ipv4Net,
    pub ipv6_network: Option<Ipv6Net>,
    pub dns: Vec<IpAddr>,
    pub routes: Vec<Ipv4Net>,
    pub routes6: Vec<Ipv6Net>,
    pub workers: usize,
    /// `auth.select_group`, checked.
    pub select_groups: Arc<[GroupOption]>,
    pub auth_method: AuthMethod,
    /// Who checks passwords: `auth.method`'s password word.
    pub backend: Backend,
    /// `[ldap]`, checked, when logins use it.
    pub ldap: Option<Arc<crate::auth::ldap::Ldap>>,
    /// `[radius]`, checked, when logins or accounting use it.
    pub radius: Option<Arc<crate::auth::radius::Radius>>,
    /// `auth.cert_user_oid` / `cert_group_oid` as DER OIDs.
    pub cert_user_oid: Vec<u8>,
    pub cert_group_oid: Option<Vec<u8>>,
    /// `session.rx_data_per_sec` / `tx_data_per_sec` in bytes.
    pub rx_per_sec: u64,
    pub tx_per_sec: u64,
    /// `monitoring.metrics_listen`, parsed.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `control.group`'s id, looked up.
    pub control_gid: Option<u32>,
    /// Who the server becomes after start, if anyone.
    pub run_as: Option<RunAs>,
    /// What a session's user and group files did not set comes from here
    /// (`[network]` no_routes, split_dns, default_domain, nbns,
    /// tunnel_all_dns, client_bypass_protocol; `[session]` deny_roaming,
    /// mobile_dpd), checked as those files are.
    pub user_defaults: crate::usercfg::UserConfig,
    /// The iroutes of the per-user files, for `network.expose_iroutes`;
    /// empty when it is off.
    pub known_iroutes: Vec<IpNet>,
    /// `server.http_headers`, checked, shared by every connection.
    pub http_headers: Arc<[String]>,
    /// An ocserv.conf's keys that mean nothing here, and why (logged at
    /// start); empty for TOML.
    pub ocserv_notes: Vec<crate::ocservconf::Note>,
    /// `vhost`: each virtual host as a whole configuration (this one with
    /// its keys over it).
    pub vhosts: Vec<(Arc<str>, Arc<Self>)>,
    /// The TUN device's own addresses (the default host's first address),
    /// the server's end of every session's link, whatever its host.
    pub local: (Ipv4Addr, Option<Ipv6Addr>),
}

impl Config {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|err| ConfigError::Read {
            file: file.to_owned(),
            err,
        })?;
        Self::parse(file, &text)
    }

    /// A TOML configuration, or ocserv's own (`ocservconf`), told apart by
    /// their content.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        if crate::ocservconf::is_ocserv_format(text) {
            let t = crate::ocservconf::translate(text).map_err(|r| ConfigError::Ocserv {
                file: file.to_owned(),
                line: r.line,
                key: r.key,
                reason: r.reason,
            })?;
            let mut c = Self::from_raw(file, t.raw)?;
            c.ocserv_notes = t.notes;
            return Ok(c);
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            msg: e.to_string(),
        })?;
        Self::from_raw(file, raw)
    }

    /// Checks a configuration read from `file`: its keys
    /// (`Config::validate`), then what they name (`Unread::read_files`).
    pub fn from_raw(file: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        Self::validate(file, raw)?.read_files()
    }

    /// The configuration of a session of virtual host `name` (`None` or a
    /// host no longer configured: the default one).
    pub fn vhost(self: &Arc<Self>, name: Option<&str>) -> Arc<Self> {
        name.and_then(|n| self.vhosts.iter().find(|(v, _)| &**v == n))
            .map_or_else(|| self.clone(), |(_, c)| c.clone())
    }

    /// The configuration as this server's TOML file: an ocserv.conf's
    /// translation, with its keys of no meaning here as comments.
    pub fn to_toml(&self) -> Result<String, String> {
        let body = toml::to_string(&self.raw).map_err(|e| format!("writing TOML: {e}"))?;
        let mut out = format!(
            "# {} as ocserv-uring's TOML (check-config --to-toml).\n",
            self.file.display()
        );
        if !self.ocserv_notes.is_empty() {
            out.push_str("# Keys of that file with no equivalent here:\n");
            for n in &self.ocserv_notes {
                out.push_str(&format!("#   {n}\n"));
            }
        }
        out.push('\n');
        out.push_str(&body);
        Ok(out)
    }

    /// Socket activation: the passed sockets decide where the server
    /// listens (and the DTLS port clients are told); no UDP socket, no DTLS.
    pub fn listen_on_passed(&mut self, p: &crate::sys::activation::Passed) {
        let s = &mut self.raw.server;
        self.listen = p.tcp.iter().map(|(_, a)| a.ip()).collect();
        self.udp_listen = p.udp.iter().map(|(_, a)| a.ip()).collect();
        s.tcp_port = p.tcp.first().map_or(0, |(_, a)| a.port());
        s.udp_port = p.udp.first().map_or(0, |(_, a)| a.port());
        let texts = |v: &[IpAddr]| Addresses::Many(v.iter().map(ToString::to_string).collect());
        s.listen = texts(&self.listen);
        s.udp_listen = texts(&self.udp_listen);
    }

    /// The server's own address on the TUN device: the first host address.
    pub fn server_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ipv4_network.network()) + 1)
    }

    /// A lease's IPv6 address: the IPv6 network with the IPv4 address in
    /// its low 32 bits, so the TUN steering (low 32 bits of the destination
    /// modulo the shards) sends both to the same shard.
    pub fn ipv6_for(&self, lease: Ipv4Addr) -> Option<Ipv6Addr> {
        self.ipv6_network
            .map(|n| Ipv6Addr::from(u128::from(n.network()) | u128::from(u32::from(lease))))
    }

    /// The networks a session with `policy` takes its addresses from: its
    /// files' `ipv4-network` and `ipv6-network`, else the server's.
    pub fn nets(&self, policy: &crate::usercfg::UserConfig) -> Nets {
        Nets {
            v4: policy.network4().unwrap_or(self.ipv4_network),
            v6: policy.ipv6_network.or(self.ipv6_network),
            local4: self.local.0,
            local6: self.local.1,
        }
    }

    /// Whether DTLS is offered at all.
    pub fn dtls_enabled(&self) -> bool {
        self.raw.server.udp_port != 0 && (self.raw.dtls.psk_negotiate || self.raw.dtls.legacy)
    }

    pub fn dpd(&self) -> Duration {
        Duration::from_secs(self.raw.session.dpd)
    }

    pub fn cookie_timeout(&self) -> Duration {
        Duration::from_secs(self.raw.session.cookie_timeout)
    }

    pub fn ban_policy(&self) -> crate::bans::BanPolicy {
        let s = &self.raw.security;
        crate::bans::BanPolicy {
            max_score: s.max_ban_score,
            ban_time: Duration::from_secs(s.ban_time),
            reset_time: Duration::from_secs(s.ban_reset_time),
        }
    }

    /// The name of who checks passwords, for logs and `ctl`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::File if self.raw.auth.otp_file.is_some() => "plain+otp",
            Backend::File => "plain",
            Backend::Radius => "radius",
            Backend::Pam => "pam",
            Backend::Ldap => "ldap",
        }
    }

    /// Where sessions are accounted, if anywhere.
    pub fn accounting(&self) -> Option<&Arc<crate::auth::radius::Radius>> {
        self.radius.as_ref().filter(|r| !r.acct.is_empty())
    }

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.raw.session.auth_timeout)
    }

    /// The effective configuration as TOML (for `check-config`).
    pub fn effective_toml(&self) -> String {
        let hosts = if self.raw.vhost.is_empty() {
            String::new()
        } else {
            #[derive(Serialize)]
            struct Hosts<'a> {
                vhost: &'a BTreeMap<String, toml::Table>,
            }
            let v = Hosts {
                vhost: &self.raw.vhost,
            };
            format!(
                "\n# virtual hosts: what each sets over the above\n{}",
                toml::to_string(&v).unwrap_or_default()
            )
        };
        let r = &self.raw;
        let list = |v: &[String]| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "# effective configuration of {file}\n[server]\nlisten = {listen:?}\nudp_listen = {udpl:?}\ntcp_port = {tcp}\nudp_port = {udp}\nworkers = {workers}   # configured: {wcfg}\nbatch_wait_us = {bw}\nlog_format = {lf:?}\npid_file = {pidf:?}\nproxy_protocol = {pp}\ncamouflage_secret = {cs:?}\ncamouflage_realm = {cr:?}\nhttp_headers = {hh}\nrun_as_user = {rau:?}\nrun_as_group = {rag:?}{run_as}\n\n[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\ngenerate_self_signed = {gen}\n\n[auth]\npasswd_file = {pw:?}\nselect_group = {sg}\nauto_select_group = {asg}\nmethod = {am:?}\n{ca}cert_user_oid = {cuo:?}\n{cgo}pre_login_banner = {plb:?}\nbanner = {bnr:?}\nuser_profile = {upr:?}\n\n[network]\ndevice = {dev:?}\nipv4_network = \"{net}\"   # server address {srv}\nipv6_network = {net6:?}{srv6}\ndns = {dns}\nroutes = {routes}\nrestrict_user_to_routes = {restrict}\nmtu = {mtu}\ntun_offload = {offload}\nno_routes = {no_routes}\nsplit_dns = {split_dns}\ndefault_domain = {ddomain:?}\nnbns = {nbns}\ntunnel_all_dns = {tad}\nclient_bypass_protocol = {cbp}\npredictable_ips = {pips}\nrestrict_user_to_ports = {rutp:?}\nnet_priority = {netp:?}\nexpose_iroutes = {eir}   # {eirn} known\nappend_routes = {apr}\n\n[session]\ndpd = {dpd}\nkeepalive = {ka}\ncookie_timeout = {ct}\nauth_timeout = {at}\nmax_clients = {mc}\nmax_same_clients = {msc}\nidle_timeout = {it}\nmobile_idle_timeout = {mit}\nsession_timeout = {st}\npersistent_cookies = {pc}\ndeny_roaming = {dr}\nmobile_dpd = {mdpd}\ncustom_headers = {chs}\nrekey_time = {rkt}\nrekey_method = {rkm:?}\nrx_data_per_sec = {rx}   # {rxh}/s\ntx_data_per_sec = {tx}   # {txh}/s\n\n[dtls]\npsk_negotiate = {psk}\nlegacy = {legacy}\n\n[security]\nmax_ban_score = {mbs}\nban_time = {bt}\nban_reset_time = {brt}\nban_points_wrong_password = {bpw}\nban_points_bad_request = {bpb}\nban_points_connection = {bpc}\nmax_logins_per_shard = {mlps}\nmax_logins_per_address = {mlpa}\nban_points_login_limit = {bpll}\n\n[users]\n{users}\n[control]\nsocket = {ctl:?}{ctl_off}\ngroup = {cg:?}{cg_note}\n\n[monitoring]\nmetrics_listen = {ml:?}{ml_off}\n\n[scripts]\n{scripts}script_timeout = {sto}\n",
            file = self.file.display(),
            listen = self.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            udpl = self.udp_listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            tcp = r.server.tcp_port,
            udp = r.server.udp_port,
            workers = self.workers,
            bw = self.raw.server.batch_wait_us,
            wcfg = r.server.workers,
            lf = r.server.log_format,
            rau = r.server.run_as_user,
            pidf = r.server.pid_file.display().to_string(),
            pp = r.server.proxy_protocol,
            cs = r.server.camouflage_secret,
            cr = r.server.camouflage_realm,
            hh = list(&r.server.http_headers),
            rag = r.server.run_as_group,
            run_as = self.run_as.as_ref().map_or("   # stays as started".into(), |a| format!("   # {}", a.describe())),
            cert = r.tls.cert_file.display().to_string(),
            key = r.tls.key_file.display().to_string(),
            gen = r.tls.generate_self_signed,
            pw = r.auth.passwd_file.display().to_string(),
            sg = list(&r.auth.select_group),
            asg = r.auth.auto_select_group,
            am = r.auth.method,
            ca = [("ca_file", &r.auth.ca_file), ("crl_file", &r.auth.crl_file)]
                .iter()
                .map(|(k, v)| v.as_ref().map_or(format!("# {k} (not set)\n"), |p| format!("{k} = {:?}\n", p.display().to_string())))
                .collect::<String>(),
            cuo = r.auth.cert_user_oid,
            cgo = r.auth.cert_group_oid.as_ref().map_or("# cert_group_oid (not set)\n".to_owned(), |o| format!("cert_group_oid = {o:?}\n")),
            dev = r.network.device,
            net = self.ipv4_network,
            srv = self.server_address(),
            net6 = self.ipv6_network.map_or(String::new(), |n| n.to_string()),
            srv6 = self.ipv6_for(self.server_address()).map_or(String::new(), |a| format!("   # server address {a}")),
            dns = list(&r.network.dns),
            routes = list(&self.routes.iter().map(ToString::to_string).chain(self.routes6.iter().map(ToString::to_string)).collect::<Vec<_>>()),
            mtu = r.network.mtu,
            offload = r.network.tun_offload,
            no_routes = list(&r.network.no_routes),
            split_dns = list(&r.network.split_dns),
            ddomain = r.network.default_domain,
            nbns = list(&r.network.nbns),
            tad = r.network.tunnel_all_dns,
            eir = r.network.expose_iroutes,
            eirn = self.known_iroutes.len(),
            apr = r.network.append_routes,
            cbp = r.network.client_bypass_protocol,
            pips = r.network.predictable_ips,
            rutp = r.network.restrict_user_to_ports,
            netp = r.network.net_priority,
            dr = r.session.deny_roaming,
            mdpd = r.session.mobile_dpd,
            chs = list(&r.session.custom_headers),
            rkt = r.session.rekey_time,
            rkm = r.session.rekey_method,
            plb = r.auth.pre_login_banner,
            upr = r.auth.user_profile.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            bnr = r.auth.banner,
            dpd = r.session.dpd,
            ka = r.session.keepalive,
            ct = r.session.cookie_timeout,
            at = r.session.auth_timeout,
            mc = r.session.max_clients,
            msc = r.session.max_same_clients,
            it = r.session.idle_timeout,
            mit = r.session.mobile_idle_timeout,
            st = r.session.session_timeout,
            pc = r.session.persistent_cookies,
            rx = self.rx_per_sec,
            rxh = crate::units::format_size(self.rx_per_sec),
            tx = self.tx_per_sec,
            txh = crate::units::format_size(self.tx_per_sec),
            restrict = r.network.restrict_user_to_routes,
            mbs = r.security.max_ban_score,
            bt = r.security.ban_time,
            brt = r.security.ban_reset_time,
            bpw = r.security.ban_points_wrong_password,
            bpb = r.security.ban_points_bad_request,
            bpc = r.security.ban_points_connection,
            mlps = r.security.max_logins_per_shard,
            mlpa = r.security.max_logins_per_address,
            bpll = r.security.ban_points_login_limit,
            ctl = r.control.socket.display().to_string(),
            scripts = [("connect_script", &r.scripts.connect_script), ("disconnect_script", &r.scripts.disconnect_script)]
                .iter()
                .map(|(k, v)| v.as_ref().map_or(format!("# {k} (not set)\n"), |p| format!("{k} = {:?}\n", p.display().to_string())))
                .collect::<String>(),
            sto = r.scripts.script_timeout,
            ml = self.metrics_listen.map_or(String::new(), |a| a.to_string()),
            ml_off = if self.metrics_listen.is_none() { "   # off" } else { "" },
            ctl_off = if r.control.socket.as_os_str().is_empty() { "   # off" } else { "" },
            cg = r.control.group,
            cg_note = self.control_gid.map_or("   # root (and the server's user) only".into(), |g| format!("   # gid {g}")),
            psk = r.dtls.psk_negotiate,
            legacy = r.dtls.legacy,
            users = {
                let u = &r.users;
                let keys = [
                    ("config_per_user", &u.config_per_user),
                    ("config_per_group", &u.config_per_group),
                    ("default_user_config", &u.default_user_config),
                    ("default_group_config", &u.default_group_config),
                ];
                let files = keys
                    .iter()
                    .map(|(k, v)| match v {
                        Some(p) => format!("{k} = {:?}\n", p.display().to_string()),
                        None => format!("# {k} (not set)\n"),
                    })
                    .collect::<String>();
                format!("{files}keep_backups = {}\n", u.keep_backups)
            },
        ) + &hosts
    }
}

/// The networks a session's addresses come from (`Config::nets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nets {
    pub v4: Ipv4Net,
    pub v6: Option<Ipv6Net>,
    /// The server's end of every session's link: the TUN device's own
    /// addresses. (ocserv, with a device per session, gives the first host
    /// of the session's network; that host is kept out of a user's pool
    /// too, but here nothing answers on it.)
    pub local4: Ipv4Addr,
    pub local6: Option<Ipv6Addr>,
}

impl Nets {
    /// The host no client gets: the first of the network.
    pub fn reserved4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.v4.network()) + 1)
    }

    /// An IPv4 address's IPv6 twin: the IPv6 network with it in the low
    /// 32 bits (see `Config::ipv6_for`).
    pub fn ipv6_for(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        self.v6
            .map(|n| Ipv6Addr::from(u128::from(n.network()) | u128::from(u32::from(v4))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/x/test.toml"), text)
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.raw.server.tcp_port, 443);
        assert_eq!(c.ipv4_network.to_string(), "192.168.100.0/24");
        assert_eq!(c.server_address(), Ipv4Addr::new(192, 168, 100, 1));
        assert_eq!((c.raw.session.dpd, c.raw.session.cookie_timeout), (90, 300));
        assert!(c.workers >= 1);
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in [
            "config/ocserv-uring.toml",
            "config/dev.toml",
            "packaging/ocserv-uring.toml",
        ] {
            Config::load(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn keys_are_validated_without_reading_the_files_they_name() {
        let file = Path::new("/nonexistent-dir/c.toml");
        let raw = |text: &str| -> RawConfig { toml::from_str(text).unwrap() };
        let text =
            "[auth]\nmethod = \"certificate\"\nca_file = \"ca.pem\"\ncrl_file = \"crl.pem\"\n\
                    [users]\nconfig_per_user = \"users\"\n\
                    [scripts]\nconnect_script = \"up.sh\"\n\
                    [control]\ngroup = \"no-such-group-here\"\n\
                    [vhost.\"a.example\".auth]\nca_file = \"/nonexistent/other-ca.pem\"\n";
        let unread = Config::validate(file, raw(text)).unwrap();
        let auth = &unread.config().raw.auth;
        assert_eq!(
            auth.ca_file.as_deref(),
            Some(Path::new("/nonexistent-dir/ca.pem"))
        );
        assert!(unread.config().control_gid.is_none());
        let first_read = unread.read_files();
        assert!(
            matches!(
                first_read,
                Err(ConfigError::Invalid {
                    key: "users.config_per_user",
                    ..
                })
            ),
            "{first_read:?}"
        );

        // What the keys alone show wrong is found without any file.
        let refused = Config::validate(file, raw("[auth]\ncrl_file = \"crl.pem\"\n"));
        assert!(
            matches!(
                refused,
                Err(ConfigError::Invalid {
                    key: "auth.crl_file",
                    ..
                })
            ),
            "{refused:?}"
        );

        // A virtual host's files are read in the second step, under its name.
        let dir = std::env::temp_dir().join(format!("ocu-unread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        let text = "[auth]\nca_file = \"ca.pem\"\n\
                    [vhost.\"a.example\".auth]\nca_file = \"/nonexistent/other-ca.pem\"\n";
        let unread = Config::validate(&dir.join("c.toml"), raw(text)).unwrap();
        let host = unread.read_files();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(&host, Err(ConfigError::Vhost { name, reason, .. }) if name == "a.example" && reason.contains("auth.ca_file")),
            "{host:?}"
        );
    }

    #[test]
    fn backends_are_checked_at_start_and_a_virtual_host_may_have_its_own() {
        let dir = std::env::temp_dir().join(format!("ocu-backends-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
        let file = dir.join("c.toml");
        let load = |text: &str| Config::parse(&file, text);
        let c = load("[auth]\nmethod = \"certificate+radius\"\nca_file = \"/nonexistent\"\n");
        assert!(c.is_err());
        let c = load(
            "[auth]\nmethod = \"radius\"\n[radius]\nservers = [\"127.0.0.1\"]\nsecret_file = \"secret\"\n\
             [vhost.\"b.example\".auth]\nmethod = \"ldap\"\n\
             [vhost.\"b.example\".ldap]\nuri = \"ldap://127.0.0.1\"\nuser_dn = \"uid=%u,dc=x\"\n",
        )
        .unwrap();
        assert_eq!((c.backend, c.backend_name()), (Backend::Radius, "radius"));
        let r = c.radius.as_ref().unwrap();
        assert_eq!(
            (r.auth[0].addr.port(), r.auth[0].secret.as_slice()),
            (1812, &b"s3cret"[..])
        );
        let b = &c.vhosts[0].1;
        assert_eq!(b.backend, Backend::Ldap);
        assert!(b.ldap.is_some());
        for (text, key) in [
            ("[auth]\nmethod = \"radius\"\n", "radius.servers"),
            (
                "[auth]\nmethod = \"radius\"\n[radius]\nservers = [\"127.0.0.1\"]\n",
                "radius.servers",
            ),
            (
                "[auth]\nmethod = \"ldap\"\n[ldap]\nuri = \"ldaps://h\"\nuser_dn = \"uid=%u\"\n",
                "ldap.ca_file",
            ),
            (
                "[auth]\nmethod = \"ldap\"\n[ldap]\nuri = \"ldap://h\"\nuser_dn = \"uid=x\"\n",
                "ldap.user_dn",
            ),
            (
                "[auth]\nmethod = \"pam\"\n[pam]\nservice = \"../x\"\n",
                "pam.service",
            ),
            ("[auth]\notp_file = \"/nonexistent\"\n", "auth.otp_file"),
            ("[radius]\naccounting = true\n", "radius.accounting_servers"),
            (
                "[vhost.\"b\".radius]\ndisconnect_listen = \"0.0.0.0:3799\"\n",
                "disconnect_listen",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ipv6_addresses_end_in_the_ipv4_lease() {
        let c = parse("[network]\nipv6_network = \"fd00:100::/64\"\nroutes = [\"10.0.0.0/8\", \"fd00:1::/48\"]").unwrap();
        assert_eq!(
            c.ipv6_for(c.server_address()),
            Some("fd00:100::c0a8:6401".parse().unwrap())
        );
        assert_eq!((c.routes.len(), c.routes6.len()), (1, 1));
        assert_eq!(parse("").unwrap().ipv6_for(Ipv4Addr::LOCALHOST), None);
    }

    #[test]
    fn sizes_take_numbers_or_human_text() {
        let c = parse("[session]\nrx_data_per_sec = \"1.5M\"\ntx_data_per_sec = 200000").unwrap();
        assert_eq!((c.rx_per_sec, c.tx_per_sec), (1_572_864, 200_000));
        assert!(c
            .effective_toml()
            .contains("rx_data_per_sec = 1572864   # 1.5M/s"));
    }

    #[test]
    fn keep_backups_defaults_to_20_and_is_shown() {
        let c = parse("").unwrap();
        assert_eq!(c.raw.users.keep_backups, 20);
        assert!(c.effective_toml().contains("\nkeep_backups = 20\n"));
        let c = parse("[users]\nkeep_backups = 0").unwrap();
        assert_eq!(c.raw.users.keep_backups, 0);
        assert!(c.effective_toml().contains("\nkeep_backups = 0\n"));
        let e = parse("[users]\nkeep_backups = -1").unwrap_err().to_string();
        assert!(
            e.contains("keep_backups") && e.contains("/etc/x/test.toml"),
            "{e}"
        );
    }

    #[test]
    fn run_as_user_and_group_are_looked_up() {
        assert_eq!(parse("").unwrap().run_as, None);
        let c = parse("[server]\nrun_as_user = \"nobody\"\nrun_as_group = \"nogroup\"").unwrap();
        let a = c.run_as.clone().unwrap();
        assert_eq!(
            (a.user.as_str(), a.uid, a.group.as_str()),
            ("nobody", 65534, "nogroup")
        );
        assert!(c.effective_toml().contains("run_as_user = \"nobody\""));
        for (text, key) in [
            (
                "[server]\nrun_as_user = \"no-such-user-ocu\"",
                "server.run_as_user",
            ),
            ("[server]\nrun_as_user = \"root\"", "server.run_as_user"),
            (
                "[server]\nrun_as_user = \"nobody\"\nrun_as_group = \"no-such-group-ocu\"",
                "server.run_as_group",
            ),
            (
                "[server]\nrun_as_user = \"nobody\"\nrun_as_group = \"root\"",
                "server.run_as_group",
            ),
            (
                "[server]\nrun_as_group = \"nogroup\"",
                "server.run_as_group",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.contains(key) && e.contains("/etc/x/test.toml"),
                "{text:?} → {e}"
            );
        }
    }

    #[test]
    fn control_group_is_looked_up_at_start() {
        let c = parse("").unwrap();
        assert_eq!(c.control_gid, None);
        assert!(c
            .effective_toml()
            .contains("\ngroup = \"\"   # root (and the server's user) only\n"));
        let c = parse("[control]\ngroup = \"root\"").unwrap();
        assert_eq!(c.control_gid, Some(0));
        assert!(c
            .effective_toml()
            .contains("\ngroup = \"root\"   # gid 0\n"));
        let e = parse("[control]\ngroup = \"no-such-group-ocu\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/x/test.toml")
                && e.contains("control.group")
                && e.contains("no-such-group-ocu"),
            "{e}"
        );
    }

    #[test]
    fn metrics_listen_is_checked() {
        assert_eq!(
            parse("[monitoring]\nmetrics_listen = \"127.0.0.1:9617\"")
                .unwrap()
                .metrics_listen,
            Some("127.0.0.1:9617".parse().unwrap())
        );
        assert_eq!(parse("").unwrap().metrics_listen, None);
        let e = parse("[monitoring]\nmetrics_listen = \"localhost\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("monitoring.metrics_listen"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = parse("[auth]\npasswd_file = \"ocpasswd\"").unwrap();
        assert_eq!(c.raw.auth.passwd_file, Path::new("/etc/x/ocpasswd"));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse("[server]\nlisten = \"0.0.0.0\"\nlisten_port = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/x/test.toml"), "{e}");
        assert!(e.contains("listen_port"), "{e}");
        assert!(
            e.contains("tcp_port"),
            "expected keys should be listed: {e}"
        );
        let e = parse("[nope]\n").unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_expectation() {
        for (text, key) in [
            ("[server]\ntcp_port = \"x\"", "tcp_port"),
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            (
                "[network]\nipv4_network = \"10.0.0.0/33\"",
                "network.ipv4_network",
            ),
            (
                "[network]\nipv4_network = \"10.0.0.5/24\"",
                "network.ipv4_network",
            ),
            ("[network]\ndns = [\"x\"]", "network.dns"),
            ("[network]\nroutes = [\"10.0.0.0\"]", "network.routes"),
            (
                "[network]\nipv6_network = \"fd00::/112\"",
                "network.ipv6_network",
            ),
            (
                "[network]\nipv6_network = \"fd00::1/64\"",
                "network.ipv6_network",
            ),
            (
                "[network]\nipv6_network = \"10.0.0.0/8\"",
                "network.ipv6_network",
            ),
            ("[network]\nmtu = 100", "network.mtu"),
            ("[session]\ndpd = 0", "session.dpd"),
            ("[session]\ndpd = -1", "dpd"),
            (
                "[session]\nrx_data_per_sec = \"1.5Q\"",
                "session.rx_data_per_sec",
            ),
            ("[auth]\nselect_group = [\"a b\"]", "auth.select_group"),
            ("[auth]\nmethod = \"kerberos\"", "auth.method"),
            ("[auth]\nmethod = \"certificate\"", "auth.ca_file"),
            ("[auth]\nca_file = \"/nonexistent/ca.pem\"", "auth.ca_file"),
            (
                "[auth]\ncrl_file = \"/nonexistent/crl.pem\"",
                "auth.crl_file",
            ),
            ("[scripts]\nscript_timeout = 0", "scripts.script_timeout"),
            (
                "[scripts]\nconnect_script = \"/nonexistent/x.sh\"",
                "scripts.connect_script",
            ),
            ("[server]\nlog_format = \"xml\"", "server.log_format"),
            ("[auth]\ncert_user_oid = \"1.x\"", "auth.cert_user_oid"),
            (
                "[session]\ntx_data_per_sec = \"-3\"",
                "session.tx_data_per_sec",
            ),
            (
                "[session]\nsession_timeout = 99999999",
                "session.session_timeout",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?} → {e}");
            assert!(
                e.contains("expected") || e.contains("invalid"),
                "{text:?} → {e}"
            );
        }
    }

    #[test]
    fn a_virtual_host_inherits_and_may_not_set_server_wide_keys() {
        let c = parse(
            "[network]\ndns = [\"10.0.0.53\"]\n\
             [vhost.\"vpn2.example\".network]\nipv4_network = \"10.2.0.0/24\"\n",
        )
        .unwrap();
        let c = Arc::new(c);
        let host = c.vhost(Some("vpn2.example"));
        assert_eq!(host.ipv4_network.to_string(), "10.2.0.0/24");
        assert_eq!(host.dns, c.dns);
        assert_eq!(host.local, c.local);
        assert!(Arc::ptr_eq(&c.vhost(Some("other")), &c));
        let e = parse("[vhost.\"vpn2.example\".network]\nmtu = 1300\n").unwrap_err();
        assert!(e.to_string().contains("network.mtu cannot differ"), "{e}");
        let e = parse("[vhost.\"vpn2.example\".security]\nban_time = 1\n").unwrap_err();
        assert!(e.to_string().contains("security.ban_time"), "{e}");
        let e = parse("[vhost.\"vpn2.example\".network]\nipv4_network = \"nope\"\n").unwrap_err();
        assert!(e.to_string().contains("virtual host `vpn2.example`"), "{e}");
    }
}
