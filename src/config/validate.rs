//! The first step of loading a configuration: every key checked for what
//! it is, with no file read and no system database asked (the second step
//! is `files.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{AuthMethod, Backend, Config, ConfigError, RawConfig, Unread, MAX_BATCH_WAIT_US};
use crate::proto::auth::GroupOption;

impl Config {
    /// Checks every key of a configuration read from `file` without
    /// touching the file system or the system's databases: paths are
    /// resolved against the file's directory, the files they name are read
    /// by `Unread::read_files`.
    pub fn validate(file: &Path, mut raw: RawConfig) -> Result<Unread, ConfigError> {
        let bad = |key: &'static str, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            reason,
        };
        let overlays = std::mem::take(&mut raw.vhost);
        let written = raw.clone();

        // Relative paths are relative to the config file, not the cwd.
        let base = file.parent().unwrap_or(Path::new("."));
        for p in [
            &mut raw.tls.cert_file,
            &mut raw.tls.key_file,
            &mut raw.auth.passwd_file,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if !raw.control.socket.as_os_str().is_empty() && raw.control.socket.is_relative() {
            raw.control.socket = base.join(&raw.control.socket);
        }
        for p in [
            &mut raw.auth.ca_file,
            &mut raw.auth.crl_file,
            &mut raw.auth.user_profile,
            &mut raw.auth.otp_file,
            &mut raw.pam.config_dir,
        ] {
            if let Some(p) = p.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
        let u = &mut raw.users;
        for p in [
            &mut u.config_per_user,
            &mut u.config_per_group,
            &mut u.default_user_config,
            &mut u.default_group_config,
        ] {
            if let Some(p) = p.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }

        let listen = raw
            .server
            .listen
            .addresses()
            .map_err(|reason| bad("server.listen", reason))?;
        if listen.is_empty() {
            return Err(bad("server.listen", "expected at least one address".into()));
        }
        let udp_listen = match raw.server.udp_listen.addresses() {
            Ok(a) if a.is_empty() => listen.clone(),
            Ok(a) => a,
            Err(reason) => return Err(bad("server.udp_listen", reason)),
        };
        if raw.server.tcp_port == 0 {
            return Err(bad(
                "server.tcp_port",
                "expected a port 1-65535, got 0".into(),
            ));
        }
        if raw.server.batch_wait_us > MAX_BATCH_WAIT_US {
            return Err(bad(
                "server.batch_wait_us",
                format!(
                    "expected 0-{MAX_BATCH_WAIT_US} (microseconds), got {}",
                    raw.server.batch_wait_us
                ),
            ));
        }
        let workers = match raw.server.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n if n > 1024 => {
                return Err(bad("server.workers", format!("expected 0-1024, got {n}")))
            }
            n => n,
        };
        let ipv4_network: Ipv4Net = raw.network.ipv4_network.parse().map_err(|_| {
            bad(
                "network.ipv4_network",
                format!(
                    "expected an IPv4 CIDR like 192.168.100.0/24, got {:?}",
                    raw.network.ipv4_network
                ),
            )
        })?;
        if ipv4_network.prefix_len() > 30 {
            return Err(bad(
                "network.ipv4_network",
                format!(
                    "prefix /{} leaves no client addresses; use /30 or shorter",
                    ipv4_network.prefix_len()
                ),
            ));
        }
        if ipv4_network.network() != ipv4_network.addr() {
            return Err(bad(
                "network.ipv4_network",
                format!(
                    "{ipv4_network} has host bits set; expected {}",
                    ipv4_network.trunc()
                ),
            ));
        }
        let mut dns = Vec::new();
        for d in &raw.network.dns {
            dns.push(
                d.parse()
                    .map_err(|_| bad("network.dns", format!("expected IP addresses, got {d:?}")))?,
            );
        }
        let ipv6_network = match raw.network.ipv6_network.trim() {
            "" => None,
            text => {
                let net: Ipv6Net = text.parse().map_err(|_| {
                    bad(
                        "network.ipv6_network",
                        format!("expected an IPv6 CIDR like fd00:100::/64, got {text:?}"),
                    )
                })?;
                if net.prefix_len() > 96 {
                    return Err(bad(
                        "network.ipv6_network",
                        format!(
                            "prefix /{} is too long: expected /96 or shorter",
                            net.prefix_len()
                        ),
                    ));
                }
                if net.network() != net.addr() {
                    return Err(bad(
                        "network.ipv6_network",
                        format!("{net} has host bits set; expected {}", net.trunc()),
                    ));
                }
                Some(net)
            }
        };
        let (mut routes, mut routes6) = (Vec::new(), Vec::new());
        for r in &raw.network.routes {
            let net: IpNet = r.parse().map_err(|_| {
                bad(
                    "network.routes",
                    format!("expected CIDRs like 10.0.0.0/8 or fd00:1::/48, got {r:?}"),
                )
            })?;
            match net.trunc() {
                IpNet::V4(n) => routes.push(n),
                IpNet::V6(n) => routes6.push(n),
            }
        }
        if !(576..=9000).contains(&raw.network.mtu) {
            return Err(bad(
                "network.mtu",
                format!("expected 576-9000, got {}", raw.network.mtu),
            ));
        }
        if raw.network.device.is_empty()
            || raw.network.device.len() > 15
            || raw.network.device.contains(['/', ' '])
        {
            return Err(bad(
                "network.device",
                format!(
                    "expected an interface name of 1-15 characters, got {:?}",
                    raw.network.device
                ),
            ));
        }
        let s = &raw.session;
        for (key, v, min) in [
            ("session.dpd", s.dpd, 1),
            ("session.keepalive", s.keepalive, 1),
            ("session.cookie_timeout", s.cookie_timeout, 0),
            ("session.auth_timeout", s.auth_timeout, 1),
            ("session.idle_timeout", s.idle_timeout, 0),
            ("session.mobile_idle_timeout", s.mobile_idle_timeout, 0),
            ("session.session_timeout", s.session_timeout, 0),
            ("session.rekey_time", s.rekey_time, 0),
            ("security.ban_time", raw.security.ban_time, 0),
            ("security.ban_reset_time", raw.security.ban_reset_time, 0),
        ] {
            if v < min || v > 7 * 24 * 3600 {
                return Err(bad(key, format!("expected {min}-604800 seconds, got {v}")));
            }
        }
        let rx_per_sec = s
            .rx_data_per_sec
            .bytes()
            .map_err(|e| bad("session.rx_data_per_sec", e))?;
        let tx_per_sec = s
            .tx_data_per_sec
            .bytes()
            .map_err(|e| bad("session.tx_data_per_sec", e))?;
        let mut select_groups = Vec::new();
        for g in &raw.auth.select_group {
            select_groups.push(GroupOption::parse(g).map_err(|e| bad("auth.select_group", e))?);
        }
        if !select_groups.is_empty() && raw.auth.auto_select_group {
            return Err(bad(
                "auth.auto_select_group",
                "expected either select_group or auto_select_group, not both".into(),
            ));
        }
        let select_groups = select_groups.into();
        let a = &raw.auth;
        let (auth_method, backend) = AuthMethod::parse(&a.method).ok_or_else(|| {
            bad("auth.method", format!("expected password, radius, pam, ldap, certificate, or certificate with one of them as certificate+password or certificate|password, got {:?}", a.method))
        })?;
        if raw.auth.otp_file.is_some() && backend != Backend::File {
            return Err(bad("auth.otp_file", "expected auth.method with the password file: one-time passwords follow its password".into()));
        }
        if backend == Backend::Pam {
            let service = &raw.pam.service;
            if service.is_empty() || service.contains(['/', '\0']) || service.starts_with('.') {
                return Err(bad(
                    "pam.service",
                    format!("expected a PAM service name, got {service:?}"),
                ));
            }
        }
        if a.ca_file.is_none() && auth_method.uses_certificates() {
            return Err(bad(
                "auth.ca_file",
                format!(
                    "expected a CA file: auth.method {:?} checks client certificates against one",
                    a.method
                ),
            ));
        }
        if a.crl_file.is_some() && a.ca_file.is_none() {
            return Err(bad(
                "auth.crl_file",
                "expected auth.ca_file beside it: a CRL revokes certificates of that CA".into(),
            ));
        }
        let cert_user_oid = crate::proto::x509name::oid_from_text(&a.cert_user_oid)
            .map_err(|e| bad("auth.cert_user_oid", e))?;
        let cert_group_oid = match &a.cert_group_oid {
            Some(o) => Some(
                crate::proto::x509name::oid_from_text(o)
                    .map_err(|e| bad("auth.cert_group_oid", e))?,
            ),
            None => None,
        };
        if !matches!(raw.server.log_format.as_str(), "text" | "json") {
            return Err(bad(
                "server.log_format",
                format!(
                    "expected \"text\" or \"json\", got {:?}",
                    raw.server.log_format
                ),
            ));
        }
        let sc = &mut raw.scripts;
        for p in [&mut sc.connect_script, &mut sc.disconnect_script] {
            if let Some(p) = p.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
        if !(1..=300).contains(&sc.script_timeout) {
            return Err(bad(
                "scripts.script_timeout",
                format!("expected 1-300 seconds, got {}", sc.script_timeout),
            ));
        }
        let m = raw.monitoring.metrics_listen.trim();
        let metrics_listen = if m.is_empty() {
            None
        } else {
            Some(m.parse().map_err(|_| bad("monitoring.metrics_listen", format!("expected address:port such as \"127.0.0.1:9617\" or \"[::1]:9617\", got {m:?}")))?)
        };
        if !matches!(raw.session.rekey_method.as_str(), "ssl" | "new-tunnel") {
            return Err(bad(
                "session.rekey_method",
                format!(
                    "expected \"ssl\" or \"new-tunnel\", got {:?}",
                    raw.session.rekey_method
                ),
            ));
        }
        let cs = &raw.server.camouflage_secret;
        if cs
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '&' || c == '#')
        {
            return Err(bad(
                "server.camouflage_secret",
                format!("expected URL-safe text without spaces, '&' or '#', got {cs:?}"),
            ));
        }
        let pu = &raw.session.proxy_url;
        if pu.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(
                "session.proxy_url",
                format!("expected a URL without spaces, got {pu:?}"),
            ));
        }
        for h in &raw.session.custom_headers {
            check_header(h).map_err(|reason| bad("session.custom_headers", reason))?;
        }
        for h in &raw.server.http_headers {
            check_header(h).map_err(|reason| bad("server.http_headers", reason))?;
        }
        let http_headers = raw.server.http_headers.clone().into();
        let user_defaults = user_defaults(&raw).map_err(|(key, reason)| bad(key, reason))?;
        if raw.network.expose_iroutes && raw.users.config_per_user.is_none() {
            return Err(bad(
                "network.expose_iroutes",
                "needs users.config_per_user, whose files' iroutes it exposes".into(),
            ));
        }
        let local = (
            Ipv4Addr::from(u32::from(ipv4_network.network()) + 1),
            ipv6_network.map(|n| {
                Ipv6Addr::from(
                    u128::from(n.network()) | u128::from(u32::from(ipv4_network.network()) + 1),
                )
            }),
        );
        let config = Self {
            vhosts: Vec::new(),
            local,
            // Filled in by `Unread::read_files`.
            known_iroutes: Vec::new(),
            run_as: None,
            radius: None,
            ldap: None,
            control_gid: None,
            file: file.to_owned(),
            user_defaults,
            http_headers,
            ocserv_notes: Vec::new(),
            raw,
            listen,
            udp_listen,
            ipv4_network,
            ipv6_network,
            dns,
            routes,
            routes6,
            workers,
            select_groups,
            auth_method,
            backend,
            cert_user_oid,
            cert_group_oid,
            rx_per_sec,
            tx_per_sec,
            metrics_listen,
        };
        let mut unread = Unread {
            config,
            hosts: Vec::new(),
        };
        for (name, overlay) in overlays {
            let (host, overlay) =
                crate::vhost::build(file, &written, &name, overlay, unread.config.local)?;
            unread.config.raw.vhost.insert(name.clone(), overlay);
            unread.hosts.push((name, host));
        }
        Ok(unread)
    }
}

/// The global values of keys per-user files may set, parsed as those
/// files' lines are.
fn user_defaults(raw: &RawConfig) -> Result<crate::usercfg::UserConfig, (&'static str, String)> {
    let (n, s) = (&raw.network, &raw.session);
    let mut d = crate::usercfg::UserConfig::default();
    let mut set =
        |key: &'static str, ocserv: &str, v: &str| d.set_default(ocserv, v).map_err(|e| (key, e));
    for v in &n.no_routes {
        set("network.no_routes", "no-route", v)?;
    }
    for v in &n.split_dns {
        set("network.split_dns", "split-dns", v)?;
    }
    if !n.default_domain.trim().is_empty() {
        set(
            "network.default_domain",
            "default-domain",
            &n.default_domain,
        )?;
    }
    for v in &n.nbns {
        set("network.nbns", "nbns", v)?;
    }
    let yes = |b: bool| if b { "true" } else { "false" };
    set(
        "network.tunnel_all_dns",
        "tunnel-all-dns",
        yes(n.tunnel_all_dns),
    )?;
    set(
        "network.client_bypass_protocol",
        "client-bypass-protocol",
        yes(n.client_bypass_protocol),
    )?;
    set("session.deny_roaming", "deny-roaming", yes(s.deny_roaming))?;
    if !n.net_priority.trim().is_empty() {
        set(
            "network.net_priority",
            "net-priority",
            n.net_priority.trim(),
        )?;
    }
    if !n.restrict_user_to_ports.trim().is_empty() {
        set(
            "network.restrict_user_to_ports",
            "restrict-user-to-ports",
            &n.restrict_user_to_ports,
        )?;
    }
    if s.mobile_dpd > 0 {
        set(
            "session.mobile_dpd",
            "mobile-dpd",
            &s.mobile_dpd.to_string(),
        )?;
    }
    d.user_profile.clone_from(&raw.auth.user_profile);
    Ok(d)
}

/// `Name: value`, a header the CONNECT answer may carry.
fn check_header(h: &str) -> Result<(), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("expected \"Name: value\", got {h:?}"))?;
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !token || value.chars().any(char::is_control) {
        return Err(format!(
            "expected \"Name: value\" with a plain name and no control characters, got {h:?}"
        ));
    }
    Ok(())
}
