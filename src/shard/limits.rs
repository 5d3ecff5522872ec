//! What a session's policy asks of its tunnel: timeouts, the destinations
//! it may reach (`restrict-user-to-routes`) and its rate limits. Built once
//! per CONNECT from the main configuration and the user's files; the data
//! path only reads it, and a session without limits pays one branch each.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::Config;
use crate::ratelimit::TokenBucket;
use crate::usercfg::UserConfig;

/// The IPv4 routes a session gets: its files' routes if they name any,
/// else the server's. Empty or containing 0.0.0.0/0 means full tunnel.
pub(crate) fn routes_v4(cfg: &Config, policy: &UserConfig) -> Vec<Ipv4Net> {
    v4(&routes(cfg, policy))
}

/// The IPv6 routes, by the same rule (each family on its own: a session
/// whose routes are all IPv4 gets a full IPv6 tunnel, as with ocserv).
pub(crate) fn routes_v6(cfg: &Config, policy: &UserConfig) -> Vec<Ipv6Net> {
    v6(&routes(cfg, policy))
}

/// The user's routes, else the server's (with `append_routes`, the
/// server's after the user's); then the other users' iroutes with
/// `expose_iroutes`, unless the session is a full tunnel (ocserv would
/// make it a split tunnel of those iroutes alone).
fn routes(cfg: &Config, policy: &UserConfig) -> Vec<IpNet> {
    let global = || {
        cfg.routes
            .iter()
            .map(|n| IpNet::V4(*n))
            .chain(cfg.routes6.iter().map(|n| IpNet::V6(*n)))
    };
    let mut all: Vec<IpNet> = if policy.routes.is_empty() {
        global().collect()
    } else if cfg.raw.network.append_routes {
        let mut r = policy.routes.clone();
        r.extend(global().filter(|n| !policy.routes.contains(n)));
        r
    } else {
        policy.routes.clone()
    };
    let full_tunnel = all.is_empty() || all.iter().any(|n| n.prefix_len() == 0);
    if !full_tunnel {
        for n in &cfg.known_iroutes {
            if !policy.iroutes.contains(n) && !all.contains(n) {
                all.push(*n);
            }
        }
    }
    all
}

pub(crate) fn v4(nets: &[IpNet]) -> Vec<Ipv4Net> {
    nets.iter()
        .filter_map(|n| if let IpNet::V4(n) = n { Some(*n) } else { None })
        .collect()
}

pub(crate) fn v6(nets: &[IpNet]) -> Vec<Ipv6Net> {
    nets.iter()
        .filter_map(|n| if let IpNet::V6(n) = n { Some(*n) } else { None })
        .collect()
}

pub(crate) use crate::proto::reply::is_full_tunnel;

/// Where a restricted client may send, IPv4 and IPv6 alike (as ocserv's
/// firewall rules): its routes minus its excluded routes, and always the
/// server's addresses and DNS servers. A family without routes is closed
/// but for those; only a full tunnel (no routes at all, or an IPv4 default
/// route, which ocserv reads as "no routes") restricts nothing.
pub(crate) struct Allowed {
    routes: Box<[IpNet]>,
    excluded: Box<[IpNet]>,
    always: Box<[IpAddr]>,
}

impl Allowed {
    pub(crate) fn contains(&self, dst: IpAddr) -> bool {
        self.always.contains(&dst)
            || (self.routes.iter().any(|n| n.contains(&dst))
                && !self.excluded.iter().any(|n| n.contains(&dst)))
    }
}

pub(crate) struct Limits {
    /// Dead-peer detection interval (`mobile-dpd` for mobile clients).
    pub(crate) dpd: Duration,
    /// No data from the client for this long ends the session.
    pub(crate) idle: Option<Duration>,
    /// `session_timeout`, counted from login.
    pub(crate) ends_at: Option<Instant>,
    /// `restrict-user-to-routes`: `None` lets everything through.
    pub(crate) allowed: Option<Allowed>,
    /// `restrict-user-to-ports`, and the DNS servers it always lets the
    /// client reach on port 53 (as ocserv's firewall rules).
    pub(crate) ports: Option<(crate::proto::ports::PortRule, Box<[IpAddr]>)>,
    rx: Option<RefCell<TokenBucket>>,
    tx: Option<RefCell<TokenBucket>>,
}

impl Limits {
    pub(crate) fn none() -> Self {
        Self {
            dpd: Duration::from_secs(90),
            ports: None,
            idle: None,
            ends_at: None,
            allowed: None,
            rx: None,
            tx: None,
        }
    }

    /// The limits of one session; `mobile` picks `mobile_idle_timeout`.
    pub(crate) fn for_session(
        cfg: &Config,
        policy: &UserConfig,
        ends_at: Option<Instant>,
        mobile: bool,
        now: Instant,
    ) -> Self {
        let s = &cfg.raw.session;
        let idle = policy.idle_timeout.unwrap_or(s.idle_timeout);
        let mobile_idle = policy.mobile_idle_timeout.unwrap_or(s.mobile_idle_timeout);
        let idle = if mobile && mobile_idle > 0 {
            mobile_idle
        } else {
            idle
        };
        let restrict = policy
            .restrict_user_to_routes
            .unwrap_or(cfg.raw.network.restrict_user_to_routes);
        let (routes, routes6) = (routes_v4(cfg, policy), routes_v6(cfg, policy));
        let full_tunnel =
            (routes.is_empty() && routes6.is_empty()) || routes.iter().any(|n| n.prefix_len() == 0);
        let allowed = (restrict && !full_tunnel).then(|| {
            let dns = if policy.dns.is_empty() {
                &cfg.dns
            } else {
                &policy.dns
            };
            let mut always = dns.clone();
            always.push(IpAddr::V4(cfg.local.0));
            always.extend(cfg.local.1.map(IpAddr::V6));
            let routes: Vec<IpNet> = routes
                .into_iter()
                .map(IpNet::V4)
                .chain(routes6.into_iter().map(IpNet::V6))
                .collect();
            Allowed {
                routes: routes.into(),
                excluded: policy.no_routes.clone().into(),
                always: always.into(),
            }
        });
        let bucket = |rate: u64| (rate > 0).then(|| RefCell::new(TokenBucket::new(rate, now)));
        let dpd = match policy.mobile_dpd.filter(|&d| mobile && d > 0) {
            Some(d) => d,
            None => policy.dpd.unwrap_or(s.dpd),
        };
        let ports = policy.restrict_user_to_ports.clone().map(|rule| {
            let dns = if policy.dns.is_empty() {
                &cfg.dns
            } else {
                &policy.dns
            };
            (rule, dns.clone().into_boxed_slice())
        });
        Self {
            ports,
            dpd: Duration::from_secs(dpd),
            idle: (idle > 0).then(|| Duration::from_secs(idle)),
            ends_at,
            allowed,
            rx: bucket(policy.rx_data_per_sec.unwrap_or(cfg.rx_per_sec)),
            tx: bucket(policy.tx_data_per_sec.unwrap_or(cfg.tx_per_sec)),
        }
    }

    /// Whether `restrict-user-to-ports` lets a client packet to `dst` pass.
    #[inline]
    pub(crate) fn admit_ports(&self, pkt: &[u8], dst: IpAddr) -> bool {
        let Some((rule, dns)) = &self.ports else {
            return true;
        };
        let Some((proto, port)) = crate::proto::ports::transport(pkt) else {
            return false;
        };
        let dns_query = matches!(proto, 6 | 17) && port == Some(53) && dns.contains(&dst);
        dns_query || rule.allows(proto, port)
    }

    /// A packet of `len` bytes from the client may pass the rate limit.
    #[inline]
    pub(crate) fn admit_rx(&self, len: usize, now: Instant) -> bool {
        self.rx
            .as_ref()
            .is_none_or(|b| b.borrow_mut().take(len, now))
    }

    /// A packet of `len` bytes to the client may pass the rate limit.
    #[inline]
    pub(crate) fn admit_tx(&self, len: usize, now: Instant) -> bool {
        self.tx
            .as_ref()
            .is_none_or(|b| b.borrow_mut().take(len, now))
    }

    /// The configured rates, for the log line that starts the tunnel.
    pub(crate) fn rates(&self) -> (u64, u64) {
        let rate = |b: &Option<RefCell<TokenBucket>>| b.as_ref().map_or(0, |b| b.borrow().rate());
        (rate(&self.rx), rate(&self.tx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(extra: &str) -> Config {
        Config::parse(Path::new("/etc/x/t.toml"), extra).unwrap()
    }

    #[test]
    fn restriction_allows_routes_dns_and_server_only() {
        let c = cfg("[network]\ndns = [\"192.168.100.53\"]\n");
        let p = UserConfig::parse(
            "route = 10.1.0.0/16\nno-route = 10.1.9.0/24\nrestrict-user-to-routes = true\n",
        )
        .unwrap();
        let l = Limits::for_session(&c, &p, None, false, Instant::now());
        let a = l.allowed.as_ref().unwrap();
        for (dst, ok) in [
            ("10.1.2.3", true),
            ("10.1.9.1", false),
            ("10.2.0.1", false),
            ("192.168.100.1", true),
            ("192.168.100.53", true),
        ] {
            assert_eq!(a.contains(dst.parse().unwrap()), ok, "{dst}");
        }
        // No IPv6 routes: IPv6 is closed but for the server and DNS (as
        // ocserv's rules), not open.
        assert!(!a.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn restriction_covers_ipv6_routes_and_server_address() {
        let c = cfg("[network]\nipv6_network = \"fd00:100::/64\"\n");
        let p = UserConfig::parse(
            "route = 10.1.0.0/16\nroute = fd00:1::/48\nrestrict-user-to-routes = true\n",
        )
        .unwrap();
        let l = Limits::for_session(&c, &p, None, false, Instant::now());
        let a = l.allowed.as_ref().unwrap();
        for (dst, ok) in [
            ("fd00:1::5", true),
            ("fd00:2::5", false),
            ("fd00:100::c0a8:6401", true),
            ("10.1.0.1", true),
        ] {
            assert_eq!(a.contains(dst.parse().unwrap()), ok, "{dst}");
        }
    }

    #[test]
    fn ipv6_only_routes_close_ipv4_and_an_ipv6_default_opens_ipv6() {
        let c = cfg("[network]\nipv6_network = \"fd00:100::/64\"\ndns = [\"fd00:100::53\"]\n");
        let p = UserConfig::parse("route = fd00:1::/48\nrestrict-user-to-routes = true\n").unwrap();
        let l = Limits::for_session(&c, &p, None, false, Instant::now());
        let a = l.allowed.as_ref().unwrap();
        for (dst, ok) in [
            ("fd00:1::5", true),
            ("fd00:2::5", false),
            ("fd00:100::53", true),
            ("10.1.0.1", false),
            ("192.168.100.1", true),
        ] {
            assert_eq!(a.contains(dst.parse().unwrap()), ok, "{dst}");
        }
        let p = UserConfig::parse(
            "route = 10.1.0.0/16\nroute = ::/0\nrestrict-user-to-routes = true\n",
        )
        .unwrap();
        let l = Limits::for_session(&c, &p, None, false, Instant::now());
        let a = l.allowed.as_ref().unwrap();
        assert!(a.contains("2001:db8::1".parse().unwrap()));
        assert!(!a.contains("10.2.0.1".parse().unwrap()));
    }

    #[test]
    fn full_tunnel_or_unset_restricts_nothing() {
        let c = cfg("");
        let p = UserConfig::parse("route = default\nrestrict-user-to-routes = true\n").unwrap();
        assert!(Limits::for_session(&c, &p, None, false, Instant::now())
            .allowed
            .is_none());
        let p = UserConfig::parse("route = 10.0.0.0/8\n").unwrap();
        assert!(Limits::for_session(&c, &p, None, false, Instant::now())
            .allowed
            .is_none());
    }

    #[test]
    fn mobile_clients_get_the_mobile_idle_timeout() {
        let c = cfg("[session]\nidle_timeout = 600\nmobile_idle_timeout = 1800\n");
        let p = UserConfig::default();
        let now = Instant::now();
        assert_eq!(
            Limits::for_session(&c, &p, None, false, now).idle,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            Limits::for_session(&c, &p, None, true, now).idle,
            Some(Duration::from_secs(1800))
        );
        let p = UserConfig::parse("idle-timeout = 0\n").unwrap();
        assert_eq!(Limits::for_session(&c, &p, None, false, now).idle, None);
    }

    #[test]
    fn user_rates_override_the_server_default() {
        let c = cfg("[session]\nrx_data_per_sec = \"1M\"\n");
        let p = UserConfig::parse("tx-data-per-sec = 100K\n").unwrap();
        let l = Limits::for_session(&c, &p, None, false, Instant::now());
        assert_eq!(l.rates(), (1 << 20, 100 << 10));
        let now = Instant::now();
        assert!(l.admit_rx(1400, now) && l.admit_tx(1400, now));
    }
}
