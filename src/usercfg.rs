//! Per-user and per-group configuration files in ocserv's own format
//! (`config-per-user` / `config-per-group`), so existing files work:
//! `key = value` lines, `#` comments, a key repeated for each list item.
//!
//! Parsing is pure; `load` reads the files and runs off the executors. A
//! file with an unknown key or a bad value is an error that refuses that
//! user's session, never the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::units::parse_size;

/// Per-user and per-group files in ocserv's format (this module).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Users {
    /// Directory with one file per user name.
    pub config_per_user: Option<PathBuf>,
    /// Directory with one file per group name.
    pub config_per_group: Option<PathBuf>,
    /// Used for users without a file of their own.
    pub default_user_config: Option<PathBuf>,
    /// Used for groups without a file of their own.
    pub default_group_config: Option<PathBuf>,
    /// Backups `ctl user-config` / `group-config` keep per name; 0 = none.
    pub keep_backups: u32,
}

impl Default for Users {
    fn default() -> Self {
        Self {
            config_per_user: None,
            config_per_group: None,
            default_user_config: None,
            default_group_config: None,
            keep_backups: 20,
        }
    }
}

/// Everything a per-user or per-group file may set. `None` and empty
/// lists mean "not set here".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserConfig {
    pub routes: Vec<IpNet>,
    pub no_routes: Vec<IpNet>,
    pub iroutes: Vec<IpNet>,
    pub dns: Vec<IpAddr>,
    pub split_dns: Vec<String>,
    pub default_domain: Option<String>,
    pub explicit_ipv4: Option<Ipv4Addr>,
    pub explicit_ipv6: Option<Ipv6Addr>,
    pub restrict_user_to_routes: Option<bool>,
    pub max_same_clients: Option<u32>,
    /// Bytes per second.
    pub rx_data_per_sec: Option<u64>,
    pub tx_data_per_sec: Option<u64>,
    /// Seconds.
    pub idle_timeout: Option<u64>,
    pub mobile_idle_timeout: Option<u64>,
    pub session_timeout: Option<u64>,
    pub dpd: Option<u64>,
    pub keepalive: Option<u64>,
    pub mtu: Option<u16>,
    /// NetBIOS name servers (X-CSTP-NBNS).
    pub nbns: Vec<IpAddr>,
    /// Tell the client to send every DNS query through the tunnel.
    pub tunnel_all_dns: Option<bool>,
    /// The cookie works only from the address that logged in.
    pub deny_roaming: Option<bool>,
    /// DPD interval for mobile clients (seconds).
    pub mobile_dpd: Option<u64>,
    /// Tell the client to let traffic of the family it has no address
    /// for bypass the tunnel (X-CSTP-Client-Bypass-Protocol).
    pub client_bypass_protocol: Option<bool>,
    /// No DTLS for this user: CSTP only.
    pub no_udp: Option<bool>,
    /// The protocols and destination ports the client may reach.
    pub restrict_user_to_ports: Option<crate::proto::ports::PortRule>,
    /// The session's host name (ocserv's per-user `hostname`), over the
    /// one the client sends.
    pub hostname: Option<String>,
    /// Seconds between accounting updates (RADIUS, once there is any).
    pub stats_report_time: Option<u64>,
    /// SO_PRIORITY or IP TOS of the session's sockets.
    pub net_priority: Option<crate::sys::net::NetPriority>,
    /// The user's own address pool (`ipv4-network`, with `ipv4-netmask` or
    /// a `/prefix`); see `network4`.
    pub ipv4_network: Option<Ipv4Addr>,
    pub ipv4_prefix: Option<u8>,
    /// The user's IPv6 network (`ipv6-network`): the lease in its low 32
    /// bits, as with the server's.
    pub ipv6_network: Option<ipnet::Ipv6Net>,
    /// The AnyConnect profile this user gets (`user-profile`); relative
    /// to the file that names it.
    pub user_profile: Option<PathBuf>,
}

/// Where and why a file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConfigError {
    pub line: usize,
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for UserConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.key, self.reason)
    }
}

impl std::error::Error for UserConfigError {}

/// The largest pool a user or group file may ask for (a /16: 65534
/// addresses, kept as a set of free ones).
const MIN_USER_PREFIX: u8 = 16;

/// The longest timeout accepted anywhere (a week, as for the main config).
const MAX_SECONDS: u64 = 7 * 24 * 3600;

impl UserConfig {
    pub fn parse(text: &str) -> Result<Self, UserConfigError> {
        let mut c = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |key: &str, reason: String| UserConfigError {
                line: i + 1,
                key: key.to_owned(),
                reason,
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(line, "expected key = value".into()));
            };
            let (key, value) = (key.trim(), unquote(value.trim()));
            c.set(key, value).map_err(|reason| err(key, reason))?;
        }
        Ok(c)
    }

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "route" => self.routes.push(route(v)?),
            "no-route" => self.no_routes.push(route(v)?),
            "iroute" => self.iroutes.push(route(v)?),
            "dns" | "ipv4-dns" | "ipv6-dns" => self.dns.push(
                v.parse()
                    .map_err(|_| format!("expected an IP address, got {v:?}"))?,
            ),
            "split-dns" => self.split_dns.push(domain(v)?),
            "default-domain" => {
                // A space-separated search list.
                let list: Result<Vec<String>, String> = v.split_whitespace().map(domain).collect();
                self.default_domain = Some(list?.join(" ")).filter(|d| !d.is_empty());
                if self.default_domain.is_none() {
                    return Err("expected one or more domain names".into());
                }
            }
            "explicit-ipv4" => {
                self.explicit_ipv4 = Some(
                    v.parse()
                        .map_err(|_| format!("expected an IPv4 address, got {v:?}"))?,
                )
            }
            "explicit-ipv6" => {
                // ocserv accepts an address with a prefix; the address is what counts.
                let addr = v.split_once('/').map_or(v, |(a, _)| a);
                self.explicit_ipv6 = Some(
                    addr.parse()
                        .map_err(|_| format!("expected an IPv6 address, got {v:?}"))?,
                );
            }
            "restrict-user-to-routes" => self.restrict_user_to_routes = Some(boolean(v)?),
            "max-same-clients" => {
                self.max_same_clients = Some(
                    v.parse()
                        .map_err(|_| format!("expected a count, got {v:?}"))?,
                )
            }
            "rx-data-per-sec" => self.rx_data_per_sec = Some(parse_size(v)?),
            "tx-data-per-sec" => self.tx_data_per_sec = Some(parse_size(v)?),
            "idle-timeout" => self.idle_timeout = Some(seconds(v, 0)?),
            "mobile-idle-timeout" => self.mobile_idle_timeout = Some(seconds(v, 0)?),
            "session-timeout" => self.session_timeout = Some(seconds(v, 0)?),
            "dpd" => self.dpd = Some(seconds(v, 1)?),
            "keepalive" => self.keepalive = Some(seconds(v, 1)?),
            "nbns" | "ipv4-nbns" | "ipv6-nbns" => self.nbns.push(
                v.parse()
                    .map_err(|_| format!("expected an IP address, got {v:?}"))?,
            ),
            "tunnel-all-dns" => self.tunnel_all_dns = Some(boolean(v)?),
            "deny-roaming" => self.deny_roaming = Some(boolean(v)?),
            "mobile-dpd" => self.mobile_dpd = Some(seconds(v, 0)?),
            "client-bypass-protocol" => self.client_bypass_protocol = Some(boolean(v)?),
            "no-udp" => self.no_udp = Some(boolean(v)?),
            "restrict-user-to-ports" => {
                self.restrict_user_to_ports = Some(crate::proto::ports::PortRule::parse(v)?);
            }
            "hostname" => {
                if v.is_empty()
                    || v.len() > 253
                    || v.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(format!("expected a host name, got {v:?}"));
                }
                self.hostname = Some(v.to_owned());
            }
            "stats-report-time" => self.stats_report_time = Some(seconds(v, 0)?),
            "net-priority" => self.net_priority = Some(crate::sys::net::NetPriority::parse(v)?),
            "ipv6-subnet-prefix" => {
                if v != "128" {
                    return Err(format!(
                        "only 128 is supported (each client gets one IPv6 address), got {v:?}"
                    ));
                }
            }
            "ipv4-network" => {
                let (addr, prefix) = match v.split_once('/') {
                    Some((a, m)) => (a, Some(netmask(m)?)),
                    None => (v, None),
                };
                self.ipv4_network = Some(
                    addr.parse()
                        .map_err(|_| format!("expected an IPv4 network, got {v:?}"))?,
                );
                if prefix.is_some() {
                    self.ipv4_prefix = prefix;
                }
            }
            "ipv4-netmask" => self.ipv4_prefix = Some(netmask(v)?),
            "ipv6-network" => {
                let net: ipnet::Ipv6Net = v
                    .parse()
                    .map_err(|_| format!("expected an IPv6 network like fd00:1::/64, got {v:?}"))?;
                if net.prefix_len() > 96 {
                    return Err(format!(
                        "/{} leaves no room for the 32 bits of the IPv4 lease each address ends in; use /96 or shorter",
                        net.prefix_len()
                    ));
                }
                self.ipv6_network = Some(net.trunc());
            }
            "user-profile" => {
                if v.is_empty() || v.contains('\0') {
                    return Err(format!("expected a file, got {v:?}"));
                }
                self.user_profile = Some(PathBuf::from(v));
            }
            "mtu" => {
                let m: u16 = v
                    .parse()
                    .map_err(|_| format!("expected 576-9000, got {v:?}"))?;
                if !(576..=9000).contains(&m) {
                    return Err(format!("expected 576-9000, got {m}"));
                }
                self.mtu = Some(m);
            }
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    /// Applies `later` on top (a user's file over its group's): lists add
    /// up (without repeats), values set there win.
    pub fn merge(&mut self, later: &Self) {
        fn add<T: PartialEq + Clone>(to: &mut Vec<T>, from: &[T]) {
            for x in from {
                if !to.contains(x) {
                    to.push(x.clone());
                }
            }
        }
        fn over<T: Clone>(to: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                to.clone_from(from);
            }
        }
        add(&mut self.routes, &later.routes);
        add(&mut self.no_routes, &later.no_routes);
        add(&mut self.iroutes, &later.iroutes);
        add(&mut self.dns, &later.dns);
        add(&mut self.split_dns, &later.split_dns);
        over(&mut self.default_domain, &later.default_domain);
        over(&mut self.explicit_ipv4, &later.explicit_ipv4);
        over(&mut self.explicit_ipv6, &later.explicit_ipv6);
        over(
            &mut self.restrict_user_to_routes,
            &later.restrict_user_to_routes,
        );
        over(&mut self.max_same_clients, &later.max_same_clients);
        over(&mut self.rx_data_per_sec, &later.rx_data_per_sec);
        over(&mut self.tx_data_per_sec, &later.tx_data_per_sec);
        over(&mut self.idle_timeout, &later.idle_timeout);
        over(&mut self.mobile_idle_timeout, &later.mobile_idle_timeout);
        over(&mut self.session_timeout, &later.session_timeout);
        over(&mut self.dpd, &later.dpd);
        over(&mut self.keepalive, &later.keepalive);
        over(&mut self.mtu, &later.mtu);
        add(&mut self.nbns, &later.nbns);
        over(&mut self.tunnel_all_dns, &later.tunnel_all_dns);
        over(&mut self.deny_roaming, &later.deny_roaming);
        over(&mut self.mobile_dpd, &later.mobile_dpd);
        over(
            &mut self.client_bypass_protocol,
            &later.client_bypass_protocol,
        );
        over(&mut self.no_udp, &later.no_udp);
        over(
            &mut self.restrict_user_to_ports,
            &later.restrict_user_to_ports,
        );
        over(&mut self.hostname, &later.hostname);
        over(&mut self.stats_report_time, &later.stats_report_time);
        over(&mut self.net_priority, &later.net_priority);
        over(&mut self.ipv4_network, &later.ipv4_network);
        over(&mut self.ipv4_prefix, &later.ipv4_prefix);
        over(&mut self.ipv6_network, &later.ipv6_network);
        over(&mut self.user_profile, &later.user_profile);
    }

    /// The user's own IPv4 pool, when the files set one (both the network
    /// and its mask: `load` refuses one without the other).
    pub fn network4(&self) -> Option<Ipv4Net> {
        let (addr, prefix) = self.ipv4_network.zip(self.ipv4_prefix)?;
        Ipv4Net::new(addr, prefix).ok().map(|n| n.trunc())
    }

    /// What only the merged files can say is wrong.
    fn check(&self) -> Result<(), String> {
        match (self.ipv4_network, self.ipv4_prefix) {
            (Some(n), None) => Err(format!(
                "ipv4-network {n} without ipv4-netmask (or a /prefix): which network is meant?"
            )),
            (None, Some(p)) => Err(format!("ipv4-netmask /{p} without ipv4-network")),
            (Some(n), Some(p)) if !(MIN_USER_PREFIX..=30).contains(&p) => Err(format!(
                "ipv4-network {n}/{p}: a user's network is /{MIN_USER_PREFIX} to /30"
            )),
            _ => Ok(()),
        }
    }

    /// Fills what the user's and group's files left unset from the main
    /// configuration's `defaults`; a list set in a file replaces the
    /// global one, as with ocserv.
    pub fn with_defaults(mut self, d: &Self) -> Self {
        fn list<T: Clone>(to: &mut Vec<T>, from: &[T]) {
            if to.is_empty() {
                to.extend_from_slice(from);
            }
        }
        fn value<T: Clone>(to: &mut Option<T>, from: &Option<T>) {
            if to.is_none() {
                to.clone_from(from);
            }
        }
        list(&mut self.no_routes, &d.no_routes);
        list(&mut self.split_dns, &d.split_dns);
        list(&mut self.nbns, &d.nbns);
        value(&mut self.default_domain, &d.default_domain);
        value(&mut self.tunnel_all_dns, &d.tunnel_all_dns);
        value(&mut self.deny_roaming, &d.deny_roaming);
        value(&mut self.mobile_dpd, &d.mobile_dpd);
        value(&mut self.client_bypass_protocol, &d.client_bypass_protocol);
        value(&mut self.restrict_user_to_ports, &d.restrict_user_to_ports);
        value(&mut self.net_priority, &d.net_priority);
        value(&mut self.user_profile, &d.user_profile);
        self
    }

    /// Sets `key` as a file line would; for the main configuration's
    /// defaults, checked the same way.
    pub fn set_default(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.set(key, value)
    }
}

/// Reads and parses one file; the error names the file.
pub fn read_file(path: &Path) -> Result<UserConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut c = UserConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let (Some(p), Some(dir)) = (&mut c.user_profile, path.parent()) {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    Ok(c)
}

/// An AnyConnect profile as a login announces it: the name in its URL and
/// the SHA-1 of its content (upper-case hex, as ocserv gives it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub sha1: String,
}

/// Profiles are small XML files; anything larger is a mistake.
pub const MAX_PROFILE: u64 = 1 << 20;

impl Profile {
    /// Reads `path` (blocking): its name and hash, and its content.
    pub fn read(path: &Path) -> Result<(Self, Vec<u8>), String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        if !meta.is_file() || meta.len() > MAX_PROFILE {
            return Err(format!("{shown}: expected a file of at most 1 MiB"));
        }
        let data = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{shown}: not a file name"))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
        let sha1 = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Ok((Self { name, sha1 }, data))
    }
}

/// Why a session's per-user configuration cannot be had: the session is
/// refused, with this said in the log.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A user or group name that is no file name (`../x`), as ocserv
    /// refuses it; never the default file instead.
    #[error("{what} name {name:?} cannot name a file in {}", dir.display())]
    BadName {
        what: &'static str,
        name: String,
        dir: PathBuf,
    },
    /// A file that cannot be read or parsed (the text names it).
    #[error("{0}")]
    File(String),
    /// The group's and the user's files together make no sense.
    #[error("{files}: {reason}")]
    Conflict { files: String, reason: String },
}

/// The configuration that applies to `user` in `group`: the group's file
/// (or the default group file), then the user's own (or the default user
/// file) on top. Blocking file reads: run off the executors. The error
/// says which file and why; the session must then be refused.
pub fn load(
    users: &Users,
    user: &str,
    group: Option<&str>,
    defaults: &UserConfig,
) -> Result<UserConfig, LoadError> {
    let mut c = UserConfig::default();
    // A name that cannot be a file name (`../x`) refuses the session, as
    // ocserv's; it never falls back to the default file.
    for (dir, name, what) in [
        (&users.config_per_group, group, "group"),
        (&users.config_per_user, Some(user), "user"),
    ] {
        if let (Some(d), Some(n)) = (dir, name) {
            if file_for(d, n).is_none() {
                return Err(LoadError::BadName {
                    what,
                    name: n.to_owned(),
                    dir: d.clone(),
                });
            }
        }
    }
    let pick = |dir: &Option<PathBuf>, name: Option<&str>, default: &Option<PathBuf>| {
        let own = dir
            .as_deref()
            .zip(name)
            .and_then(|(d, n)| file_for(d, n))
            .filter(|p| p.exists());
        own.or_else(|| default.clone())
    };
    let files = [
        pick(&users.config_per_group, group, &users.default_group_config),
        pick(
            &users.config_per_user,
            Some(user),
            &users.default_user_config,
        ),
    ];
    for path in files.iter().flatten() {
        c.merge(&read_file(path).map_err(LoadError::File)?);
    }
    c.check().map_err(|reason| {
        let names: Vec<String> = files
            .iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        LoadError::Conflict {
            files: names.join(" + "),
            reason,
        }
    })?;
    Ok(c.with_defaults(defaults))
}

/// The `iroute`s of every file in `dir` (ocserv's expose-iroutes reads
/// only those lines); a bad one is an error naming its file.
pub fn iroutes_in(dir: &Path) -> Result<Vec<IpNet>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut all = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if key.trim() == "iroute" {
                let net = route(unquote(value.trim()))
                    .map_err(|e| format!("{} line {}: iroute: {e}", path.display(), i + 1))?;
                if !all.contains(&net) {
                    all.push(net);
                }
            }
        }
    }
    Ok(all)
}

/// The file for `name` in `dir`, or `None` for a name that is not a plain
/// file name (`..`, a slash, a leading dot, a NUL): names come from
/// password files and certificates, never from a path.
pub fn file_for(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0']);
    plain.then(|| dir.join(name))
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// `10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `fd00::/48`, a bare address (one
/// host) or `default` (everything).
fn route(v: &str) -> Result<IpNet, String> {
    let bad = || {
        format!("expected a network like 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48, got {v:?}")
    };
    if v.eq_ignore_ascii_case("default") {
        return Ok(IpNet::V4(Ipv4Net::default()));
    }
    let net = match v.split_once('/') {
        None => IpNet::from(v.parse::<IpAddr>().map_err(|_| bad())?),
        Some((addr, mask)) if mask.contains('.') => {
            let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
            let mask: Ipv4Addr = mask.parse().map_err(|_| bad())?;
            let prefix = ipnet::ipv4_mask_to_prefix(mask)
                .map_err(|_| format!("{mask} is not a contiguous netmask"))?;
            IpNet::V4(Ipv4Net::new(addr, prefix).map_err(|_| bad())?)
        }
        Some(_) => v.parse::<IpNet>().map_err(|_| bad())?,
    };
    Ok(net.trunc())
}

/// `255.255.255.0`, `/24` or `24`.
fn netmask(v: &str) -> Result<u8, String> {
    let v = v.trim_start_matches('/');
    if let Ok(mask) = v.parse::<Ipv4Addr>() {
        return ipnet::ipv4_mask_to_prefix(mask)
            .map_err(|_| format!("{mask} is not a contiguous netmask"));
    }
    v.parse::<u8>()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("expected a netmask like 255.255.255.0 or /24, got {v:?}"))
}

fn domain(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected a domain name like example.com, got {v:?}"
        ))
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

fn seconds(v: &str, min: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(s) if (min..=MAX_SECONDS).contains(&s) => Ok(s),
        _ => Err(format!("expected {min}-{MAX_SECONDS} seconds, got {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCSERV_STYLE: &str = "\
# routes for alice
route = 10.10.0.0/16
route = 192.168.5.0/255.255.255.0
route = fd00:1::/48
no-route = 10.10.99.0/24
dns = 10.10.0.53
split-dns = corp.example.com
split-dns = lab.example.com
default-domain = Corp.Example.com example.net
explicit-ipv4 = 192.168.100.77
  mtu = 1300
dpd = 60
keepalive = 300
rx-data-per-sec = 1.5M
tx-data-per-sec = 200000
restrict-user-to-routes = false
max-same-clients = 0
session-timeout = \"0\"
";

    #[test]
    fn a_users_own_networks() {
        let c =
            UserConfig::parse("ipv4-network = 10.50.0.9\nipv4-netmask = 255.255.255.0\n").unwrap();
        assert_eq!(c.network4(), Some("10.50.0.0/24".parse().unwrap()));
        let c = UserConfig::parse("ipv4-network = 10.50.0.0/23\nipv6-network = fd00:50::/64\n")
            .unwrap();
        assert_eq!(c.network4(), Some("10.50.0.0/23".parse().unwrap()));
        assert_eq!(c.ipv6_network, Some("fd00:50::/64".parse().unwrap()));
        // A group's network, the user's mask: merged, then checked.
        let mut g = UserConfig::parse("ipv4-network = 10.60.0.0\n").unwrap();
        assert!(g.check().is_err(), "a network without its mask");
        g.merge(&UserConfig::parse("ipv4-netmask = /24\n").unwrap());
        assert!(g.check().is_ok());
        assert_eq!(g.network4(), Some("10.60.0.0/24".parse().unwrap()));
        for bad in [
            "ipv4-network = 10.0.0.0/8\n",
            "ipv4-network = 10.0.0.0/31\n",
            "ipv4-netmask = 255.255.255.0\n",
        ] {
            assert!(UserConfig::parse(bad).unwrap().check().is_err(), "{bad}");
        }
        for bad in [
            "ipv4-netmask = 255.0.255.0\n",
            "ipv4-network = 10.0.0\n",
            "ipv6-network = fd00::/120\n",
            "ipv6-network = fd00::\n",
        ] {
            assert!(UserConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_keys_ocserv_added_and_the_main_configurations_defaults() {
        let c = UserConfig::parse(
            "no-udp = true\ntunnel-all-dns = true\ndeny-roaming = true\nnbns = 10.0.0.9\nipv6-nbns = fd00::9\nmobile-dpd = 600\nclient-bypass-protocol = false\n",
        )
        .unwrap();
        assert_eq!(
            (c.no_udp, c.tunnel_all_dns, c.deny_roaming),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(
            (c.mobile_dpd, c.client_bypass_protocol),
            (Some(600), Some(false))
        );
        assert_eq!(c.nbns.len(), 2);
        let mut d = UserConfig::default();
        for (k, v) in [
            ("nbns", "10.0.0.1"),
            ("split-dns", "corp.example"),
            ("tunnel-all-dns", "false"),
            ("mobile-dpd", "900"),
        ] {
            d.set_default(k, v).unwrap();
        }
        let c = c.with_defaults(&d);
        // Set in the file: kept; unset: from the defaults.
        assert_eq!((c.tunnel_all_dns, c.mobile_dpd), (Some(true), Some(600)));
        assert_eq!(c.nbns.len(), 2);
        assert_eq!(c.split_dns, ["corp.example"]);
        assert!(UserConfig::parse("nbns = nowhere\n").is_err());
        let c = UserConfig::parse(
            "hostname = laptop-7\nstats-report-time = 300\nipv6-subnet-prefix = 128\nrestrict-user-to-ports = \"!(tcp(22))\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.hostname.as_deref(), c.stats_report_time),
            (Some("laptop-7"), Some(300))
        );
        assert!(c.restrict_user_to_ports.is_some_and(|r| r.deny));
        for bad in [
            "ipv6-subnet-prefix = 64",
            "hostname = a b",
            "restrict-user-to-ports = tcp",
        ] {
            assert!(UserConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_an_ocserv_style_file() {
        let c = UserConfig::parse(OCSERV_STYLE).unwrap();
        let nets: Vec<String> = c.routes.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.10.0.0/16", "192.168.5.0/24", "fd00:1::/48"]);
        assert_eq!(c.no_routes[0].to_string(), "10.10.99.0/24");
        assert_eq!(c.dns, ["10.10.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.split_dns, ["corp.example.com", "lab.example.com"]);
        assert_eq!(
            c.default_domain.as_deref(),
            Some("corp.example.com example.net")
        );
        assert_eq!(c.explicit_ipv4, Some(Ipv4Addr::new(192, 168, 100, 77)));
        assert_eq!(
            (c.mtu, c.dpd, c.keepalive),
            (Some(1300), Some(60), Some(300))
        );
        assert_eq!(
            (c.rx_data_per_sec, c.tx_data_per_sec),
            (Some(1_572_864), Some(200_000))
        );
        assert_eq!(c.session_timeout, Some(0));
    }

    #[test]
    fn bad_lines_name_line_key_and_reason() {
        for (text, line, key) in [
            ("route = 10.0.0.0/33", 1, "route"),
            ("\n\nroute = 10.0.0.0/255.0.255.0", 3, "route"),
            ("dns = dns.example.com", 1, "dns"),
            ("mtu = 100", 1, "mtu"),
            ("rx-data-per-sec = fast", 1, "rx-data-per-sec"),
            ("frobnicate = 1", 1, "frobnicate"),
            ("split-dns = bad..name", 1, "split-dns"),
            ("dpd = 0", 1, "dpd"),
            (
                "restrict-user-to-routes = maybe",
                1,
                "restrict-user-to-routes",
            ),
            ("just some words", 1, "just some words"),
        ] {
            let e = UserConfig::parse(text).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text}: {e}");
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn user_file_adds_to_and_overrides_its_group() {
        let mut group = UserConfig::parse(
            "route = 10.1.0.0/16\ndns = 10.1.0.53\nmtu = 1400\nsplit-dns = a.example",
        )
        .unwrap();
        let user =
            UserConfig::parse("route = 10.2.0.0/16\nroute = 10.1.0.0/16\nmtu = 1280").unwrap();
        group.merge(&user);
        assert_eq!(group.routes.len(), 2);
        assert_eq!(group.mtu, Some(1280));
        assert_eq!(group.split_dns, ["a.example"]);
        assert_eq!(group.dns.len(), 1);
    }

    #[test]
    fn a_name_that_is_no_file_name_refuses_the_session() {
        let users = Users {
            config_per_group: Some(std::env::temp_dir()),
            ..Users::default()
        };
        let d = UserConfig::default();
        let e = load(&users, "alice", Some("../escape"), &d).unwrap_err();
        assert!(
            matches!(&e, LoadError::BadName { what: "group", name, .. } if name == "../escape"),
            "{e}"
        );
        assert!(load(&users, "alice", None, &d).is_ok());
    }

    #[test]
    fn only_plain_names_map_to_files() {
        let dir = Path::new("/etc/ocserv-uring/users");
        assert_eq!(file_for(dir, "alice"), Some(dir.join("alice")));
        for name in ["", "..", ".hidden", "../etc/passwd", "a/b", "a\\b", "a\0b"] {
            assert_eq!(file_for(dir, name), None, "{name:?}");
        }
    }
}
