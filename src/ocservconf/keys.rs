//! ocserv.conf's keys, one by one, in the TOML model: honoured with
//! ocserv's meaning, noted as meaningless here (and why), or refused (and
//! why). The docs/ migration guide lists the same three kinds.

use std::net::IpAddr;
use std::path::PathBuf;

use super::{Entry, Note, Refusal, Translated};
use crate::config::RawConfig;
use crate::units::SizeValue;

/// What the file says, as the translation goes.
#[derive(Default)]
struct State {
    raw: RawConfig,
    notes: Vec<Note>,
    /// `auth` lines (all must succeed) and `enable-auth` (any suffices).
    auth: Vec<(usize, String)>,
    enable_auth: Vec<(usize, String)>,
    ipv4_network: Option<(usize, String)>,
    ipv4_netmask: Option<(usize, String)>,
    ipv6_network: Option<(usize, String)>,
    /// `ipv6-prefix`: the prefix of an `ipv6-network` written without one.
    ipv6_prefix: Option<u8>,
    no_udp: bool,
    /// `run-as-user = root`.
    stay_root: bool,
    udp_listen_host: Option<(usize, String)>,
    certs: usize,
    keys: usize,
    /// `route = default` (or 0.0.0.0/0): a full tunnel, the rest dropped.
    default_route: bool,
    camouflage: Option<(usize, bool)>,
    camouflage_secret: Option<String>,
    /// `acct = radius[config=...]`.
    acct: Option<(usize, String)>,
}

type Outcome = Result<(), String>;

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a number, got {v:?}"))
}

/// A network as ocserv writes one (`10.0.0.0/8`, `10.0.0.0/255.0.0.0`,
/// `default`), in the CIDR form the TOML model takes.
fn network(v: &str) -> Result<String, String> {
    let mut probe = crate::usercfg::UserConfig::default();
    probe.set_default("route", v)?;
    Ok(probe.routes[0].to_string())
}

impl State {
    fn note(&mut self, e: &Entry, text: &str) {
        self.notes.push(Note {
            line: e.line,
            key: e.key.clone(),
            text: text.to_owned(),
        });
    }

    /// One key of the main section.
    fn key(&mut self, e: &Entry) -> Outcome {
        let v = e.value.as_str();
        let r = &mut self.raw;
        match e.key.as_str() {
            // ---- who may log in
            "auth" => self.auth.push((e.line, v.to_owned())),
            "enable-auth" => self.enable_auth.push((e.line, v.to_owned())),
            "acct" => self.acct = Some((e.line, v.to_owned())),
            "ca-cert" => r.auth.ca_file = Some(PathBuf::from(v)),
            "crl" => r.auth.crl_file = Some(PathBuf::from(v)),
            "cert-user-oid" => r.auth.cert_user_oid = v.to_owned(),
            "cert-group-oid" => r.auth.cert_group_oid = Some(v.to_owned()),
            "select-group" => r.auth.select_group.push(v.to_owned()),
            "auto-select-group" => r.auth.auto_select_group = boolean(v)?,
            "default-select-group" => r.auth.default_select_group = v.to_owned(),
            "select-group-by-url" => r.auth.select_group_by_url = boolean(v)?,
            // ---- where and how to listen
            "listen-host" => {
                let ip: IpAddr = v.parse().map_err(|_| {
                    format!("expected an IP address, got {v:?}: listening on a host name's addresses is not supported")
                })?;
                r.server.listen = crate::config::Addresses::One(ip.to_string());
            }
            "udp-listen-host" => self.udp_listen_host = Some((e.line, v.to_owned())),
            "listen-host-is-dyndns" => self.note(e, "no meaning here: the listen address is an IP address, bound once"),
            "listen-netns" => return Err("listening in another network namespace is not supported".into()),
            "tcp-port" => r.server.tcp_port = number(v)?,
            "udp-port" => r.server.udp_port = number(v)?,
            "listen-proxy-proto" => r.server.proxy_protocol = boolean(v)?,
            "camouflage" => self.camouflage = Some((e.line, boolean(v)?)),
            "camouflage_secret" => self.camouflage_secret = Some(v.to_owned()),
            "camouflage_realm" => r.server.camouflage_realm = v.to_owned(),
            "expose-iroutes" => r.network.expose_iroutes = boolean(v)?,
            "append-routes" => r.network.append_routes = boolean(v)?,
            "ping-leases" => {
                if boolean(v)? {
                    self.note(e, "no meaning here: the address pools are routed to the server's own TUN device, so no other host can answer for a free address");
                }
            }
            // ocserv lets root stay root; so does this server, with a word.
            "run-as-user" if v == "root" => {
                self.note(e, "root: the server stays root after start, and all that clients send is handled as root; an unprivileged user (nobody) is safer");
                self.stay_root = true;
            }
            "run-as-group" if v == "root" => {
                self.note(e, "root's group is not taken after start: the user's own group is");
            }
            "run-as-user" => r.server.run_as_user = v.to_owned(),
            "run-as-group" => r.server.run_as_group = v.to_owned(),
            "pid-file" => r.server.pid_file = PathBuf::from(v),
            "occtl-socket-file" => r.control.socket = PathBuf::from(v),
            "use-occtl" => {
                if !boolean(v)? {
                    r.control.socket = PathBuf::new();
                }
            }
            // Its old name: only `true` means anything to ocserv.
            "use-dbus" => {
                if boolean(v)? {
                    self.note(e, "ocserv's old name of use-occtl; the control socket is on unless use-occtl = false");
                }
            }
            "debug-no-secmod-stats" => self.note(e, "no meaning here: there is no sec-mod"),
            "socket-file" => self.note(e, "no meaning here: there are no worker processes and no sec-mod to talk to"),
            "isolate-workers" => self.note(e, "no meaning here: one process, which drops to run-as-user with three capabilities after start"),
            "sec-mod-scale" | "limit-worker-memory" => self.note(e, "no meaning here: there are no sec-mod or worker processes"),
            "chroot-dir" => return Err("not supported: the server reads its files after start; it drops to run-as-user instead (remove the key)".into()),
            "server-stats-reset-time" | "use-utmp" | "output-buffer" | "try-mtu-discovery" | "match-tls-dtls-ciphers" | "dh-params" => {
                self.note(e, &format!("no meaning here: {}", meaningless(&e.key)));
            }
            "log-level" | "syslog-facility" => self.note(e, "logs go to stderr (journald); choose the level with -d or --log-level"),
            "rate-limit-ms" => self.note(e, "connections are bounded by [security] max_logins_per_shard and max_logins_per_address instead"),
            "server-drain-ms" => self.note(e, "no meaning here: at shutdown every client is told (CSTP TERMINATE) and given 3 s"),
            "switch-to-tcp-timeout" => {
                let _: u64 = number(v)?;
                self.note(e, "fixed here: DATA over CSTP 15 s after the last UDP packet moves a session to CSTP");
            }
            // ---- TLS
            "server-cert" => {
                self.certs += 1;
                r.tls.cert_file = PathBuf::from(v);
            }
            "server-key" => {
                self.keys += 1;
                r.tls.key_file = PathBuf::from(v);
            }
            "pin-file" | "srk-pin" | "srk-pin-file" | "key-pin" => {
                return Err("keys in PKCS#11 tokens or TPMs are not supported: give server-key a PEM file".into())
            }
            "ocsp-response" => return Err("OCSP stapling is not supported".into()),
            "tls-priorities" => {
                let what = tls_priorities(v);
                self.note(e, &what);
            }
            // ocserv: it implies select-group-by-url (and dtls-legacy, on here).
            "cisco-client-compat" => {
                if boolean(v)? {
                    r.auth.select_group_by_url = true;
                }
            }
            "cisco-svc-client-compat" => {
                if boolean(v)? {
                    return Err("not supported yet".into());
                }
            }
            "dtls-legacy" => r.dtls.legacy = boolean(v)?,
            "dtls-psk" => r.dtls.psk_negotiate = boolean(v)?,
            "compression" | "no-compress-limit" | "compression-algo-priority" => {
                self.note(e, "no meaning here: compression is never negotiated (it leaks what it compresses)")
            }
            "rekey-time" => r.session.rekey_time = number(v)?,
            "rekey-method" => r.session.rekey_method = v.to_owned(),
            // ---- sessions
            "max-clients" => r.session.max_clients = number(v)?,
            "max-same-clients" => r.session.max_same_clients = number(v)?,
            "keepalive" => r.session.keepalive = number(v)?,
            "dpd" => r.session.dpd = number(v)?,
            "mobile-dpd" => r.session.mobile_dpd = number(v)?,
            "auth-timeout" => r.session.auth_timeout = number(v)?,
            "idle-timeout" => r.session.idle_timeout = number(v)?,
            "mobile-idle-timeout" => r.session.mobile_idle_timeout = number(v)?,
            "cookie-timeout" => r.session.cookie_timeout = number(v)?,
            "session-timeout" => r.session.session_timeout = number(v)?,
            "persistent-cookies" => r.session.persistent_cookies = boolean(v)?,
            "deny-roaming" => r.session.deny_roaming = boolean(v)?,
            "rx-data-per-sec" => r.session.rx_data_per_sec = SizeValue::Text(v.to_owned()),
            "tx-data-per-sec" => r.session.tx_data_per_sec = SizeValue::Text(v.to_owned()),
            "stats-report-time" => r.radius.interim_interval = number(v)?,
            // ---- bans
            "max-ban-score" => r.security.max_ban_score = number(v)?,
            "ban-time" => r.security.ban_time = number(v)?,
            "ban-reset-time" => r.security.ban_reset_time = number(v)?,
            "ban-points-wrong-password" => r.security.ban_points_wrong_password = number(v)?,
            "ban-points-connection" => r.security.ban_points_connection = number(v)?,
            "ban-points-kkdcp" => self.note(e, "no meaning here: there is no Kerberos proxy (kkdcp)"),
            "kkdcp" => return Err("the Kerberos KDC proxy is not supported".into()),
            // ---- the network given to clients
            "device" => r.network.device = v.to_owned(),
            "predictable-ips" => r.network.predictable_ips = boolean(v)?,
            "ipv4-network" => self.ipv4_network = Some((e.line, v.to_owned())),
            "ipv4-netmask" => self.ipv4_netmask = Some((e.line, v.to_owned())),
            "ipv6-network" => self.ipv6_network = Some((e.line, v.to_owned())),
            "ipv6-prefix" => self.ipv6_prefix = Some(number::<u8>(v)?),
            "ipv6-subnet-prefix" => {
                if number::<u8>(v)? != 128 {
                    return Err("only 128 is supported: each client gets one IPv6 address".into());
                }
            }
            "dns" | "ipv4-dns" | "ipv6-dns" => r.network.dns.push(v.to_owned()),
            "nbns" | "ipv4-nbns" | "ipv6-nbns" => r.network.nbns.push(v.to_owned()),
            "default-domain" => {
                // ocserv takes one domain per line; ours is a search list.
                let d = &mut r.network.default_domain;
                if !d.is_empty() {
                    d.push(' ');
                }
                d.push_str(v);
            }
            "split-dns" => r.network.split_dns.push(v.to_owned()),
            "tunnel-all-dns" => r.network.tunnel_all_dns = boolean(v)?,
            "client-bypass-protocol" => r.network.client_bypass_protocol = boolean(v)?,
            "route" => {
                let net = network(v)?;
                if net == "0.0.0.0/0" {
                    self.default_route = true;
                } else {
                    r.network.routes.push(net);
                }
            }
            "no-route" => r.network.no_routes.push(network(v)?),
            "mtu" => r.network.mtu = number(v)?,
            "restrict-user-to-routes" => r.network.restrict_user_to_routes = boolean(v)?,
            "banner" => r.auth.banner = v.to_owned(),
            "pre-login-banner" => r.auth.pre_login_banner = v.to_owned(),
            "custom-header" => r.session.custom_headers.push(v.to_owned()),
            "restrict-user-to-ports" => r.network.restrict_user_to_ports = v.to_owned(),
            "net-priority" => r.network.net_priority = v.to_owned(),
            "included-http-headers" => r.server.http_headers.push(v.to_owned()),
            "user-profile" => r.auth.user_profile = Some(PathBuf::from(v)),
            "proxy-url" => r.session.proxy_url = v.to_owned(),
            "host-update-script" => {
                return Err("not supported yet".into())
            }
            "route-add-cmd" | "route-del-cmd" => {
                return Err("not supported: the server adds and removes the routes of iroutes itself (remove the key)".into())
            }
            // ---- per-user and per-group files, scripts
            "config-per-user" => r.users.config_per_user = Some(PathBuf::from(v)),
            "config-per-group" => r.users.config_per_group = Some(PathBuf::from(v)),
            "default-user-config" => r.users.default_user_config = Some(PathBuf::from(v)),
            "default-group-config" => r.users.default_group_config = Some(PathBuf::from(v)),
            "connect-script" => r.scripts.connect_script = Some(PathBuf::from(v)),
            "disconnect-script" => r.scripts.disconnect_script = Some(PathBuf::from(v)),
            // Per-user keys that only user files may set in ocserv too.
            // ocserv takes it globally too: DTLS is off for everyone.
            "no-udp" => self.no_udp = boolean(v)?,
            "iroute" | "explicit-ipv4" | "explicit-ipv6" => {
                return Err("only a per-user or per-group file may set this".into())
            }
            _ => return Err("not a key of ocserv 1.5's configuration (or not one this server knows)".into()),
        }
        Ok(())
    }

    /// What several keys decide together.
    fn finish(mut self) -> Result<Translated, Refusal> {
        let refuse = |line: usize, key: &str, reason: String| Refusal {
            line,
            key: key.to_owned(),
            reason,
        };
        let r = &mut self.raw;
        if self.certs > 1 || self.keys > 1 {
            return Err(refuse(
                0,
                "server-cert",
                "several certificates are not supported yet: keep one server-cert and server-key"
                    .into(),
            ));
        }
        auth(r, &self.auth, &self.enable_auth)?;
        if let Some((line, v)) = &self.acct {
            accounting(r, v).map_err(|e| refuse(*line, "acct", e))?;
        }
        if let Some((line, net)) = &self.ipv4_network {
            let cidr = match (&self.ipv4_netmask, net.contains('/')) {
                (Some((_, mask)), false) => format!("{net}/{mask}"),
                _ => net.clone(),
            };
            r.network.ipv4_network =
                network(&cidr).map_err(|e| refuse(*line, "ipv4-network", e))?;
        }
        if let Some((_, net)) = &self.ipv6_network {
            let net = match self.ipv6_prefix {
                Some(p) if !net.contains('/') => format!("{net}/{p}"),
                _ => net.clone(),
            };
            // ocserv masks host bits off (its sample's own value has some).
            r.network.ipv6_network = net
                .parse::<ipnet::Ipv6Net>()
                .map_or(net, |n| n.trunc().to_string());
        }
        if self.no_udp {
            r.server.udp_port = 0;
        }
        if self.stay_root {
            r.server.run_as_user.clear();
            r.server.run_as_group.clear();
        }
        if let Some((line, udp)) = &self.udp_listen_host {
            let ip: IpAddr = udp.parse().map_err(|_| {
                refuse(
                    *line,
                    "udp-listen-host",
                    format!("expected an IP address, got {udp:?}"),
                )
            })?;
            r.server.udp_listen = crate::config::Addresses::One(ip.to_string());
        }
        match (self.camouflage, self.camouflage_secret.take()) {
            (Some((_, true)), Some(secret)) if !secret.is_empty() => {
                r.server.camouflage_secret = secret
            }
            (Some((line, true)), _) => {
                return Err(refuse(
                    line,
                    "camouflage",
                    "expected camouflage_secret beside it".into(),
                ))
            }
            _ => r.server.camouflage_realm.clear(),
        }
        if self.default_route {
            // ocserv drops every other route with it: a full tunnel.
            r.network.routes.clear();
        }
        Ok(Translated {
            raw: self.raw,
            notes: self.notes,
        })
    }
}

/// Why each key of no meaning here has none.
fn meaningless(key: &str) -> &'static str {
    match key {
        "server-stats-reset-time" => "ctl show status counts since start",
        "use-utmp" => "sessions are not written to utmp",
        "output-buffer" => "the socket's own buffer is used",
        "try-mtu-discovery" => {
            "DPD probes are echoed whole, so clients find the path MTU themselves"
        }
        "match-tls-dtls-ciphers" => {
            "the DTLS suite is negotiated on its own (PSK-NEGOTIATE) or told (legacy)"
        }
        "dh-params" => "TLS key exchange is ECDHE only",
        _ => "",
    }
}

/// `auth` and `enable-auth` lines as `[auth] method` and its file.
fn auth(
    r: &mut RawConfig,
    all: &[(usize, String)],
    any: &[(usize, String)],
) -> Result<(), Refusal> {
    let mut cert_all = false;
    let mut plain_all = false;
    let mut cert_any = false;
    let mut plain_any = false;
    // The password word's backend when not the password file.
    let mut backend: Option<&str> = None;
    for (lines, all_of) in [(all, true), (any, false)] {
        for (line, v) in lines {
            let key = if all_of { "auth" } else { "enable-auth" };
            let refuse = |reason: String| Refusal {
                line: *line,
                key: key.to_owned(),
                reason,
            };
            let (method, opts) = match v.split_once('[') {
                Some((m, rest)) => (m.trim(), rest.trim_end_matches(']')),
                None => (v.trim(), ""),
            };
            match method {
                "certificate" => {
                    if all_of {
                        cert_all = true;
                    } else {
                        cert_any = true;
                    }
                }
                "plain" => {
                    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                        match opt.split_once('=') {
                            Some(("passwd", file)) => {
                                r.auth.passwd_file = PathBuf::from(file.trim())
                            }
                            // ocserv's first form: plain[/path/to/ocpasswd].
                            None if opt.starts_with('/') || opt.starts_with('.') => {
                                r.auth.passwd_file = PathBuf::from(opt)
                            }
                            Some(("otp", file)) => {
                                r.auth.otp_file = Some(PathBuf::from(file.trim()))
                            }
                            _ => return Err(refuse(format!("unknown option {opt:?} of plain"))),
                        }
                    }
                    if all_of {
                        plain_all = true;
                    } else {
                        plain_any = true;
                    }
                }
                "radius" => {
                    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                        match opt.split_once('=') {
                            Some(("config", file)) => {
                                r.radius.radcli_config = Some(PathBuf::from(file.trim()))
                            }
                            // RADIUS's attributes always apply over the
                            // user's and group's files here.
                            Some(("groupconfig", v)) => {
                                boolean(v.trim()).map_err(&refuse)?;
                            }
                            Some(("nas-identifier", v)) => {
                                r.radius.nas_identifier = v.trim().to_owned()
                            }
                            Some(("group-separator", v)) => {
                                r.radius.group_separator = match v.trim() {
                                    "semicolon" => ";".into(),
                                    "comma" => ",".into(),
                                    other => {
                                        return Err(refuse(format!(
                                    "group-separator: expected semicolon or comma, got {other:?}"
                                )))
                                    }
                                }
                            }
                            _ => return Err(refuse(format!("unknown option {opt:?} of radius"))),
                        }
                    }
                    if r.radius.radcli_config.is_none() {
                        return Err(refuse(
                            "expected radius[config=FILE]: radcli's configuration".into(),
                        ));
                    }
                    backend = Some("radius");
                    if all_of {
                        plain_all = true;
                    } else {
                        plain_any = true;
                    }
                }
                "pam" => {
                    // Debian's ocserv package ships /etc/pam.d/ocserv.
                    r.pam.service = "ocserv".into();
                    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                        match opt.split_once('=') {
                            Some(("gid-min", v)) => r.pam.gid_min = number(v).map_err(&refuse)?,
                            _ => return Err(refuse(format!("unknown option {opt:?} of pam"))),
                        }
                    }
                    backend = Some("pam");
                    if all_of {
                        plain_all = true;
                    } else {
                        plain_any = true;
                    }
                }
                "gssapi" | "oidc" => {
                    return Err(refuse(format!(
                        "{method} authentication is not supported yet"
                    )));
                }
                other => return Err(refuse(format!("unknown authentication method {other:?}"))),
            }
        }
    }
    r.auth.method = match (cert_all, plain_all, cert_any, plain_any) {
        (true, true, _, _) => "certificate+password",
        (true, false, _, true) | (false, true, true, _) => "certificate|password",
        (true, false, _, false) => "certificate",
        (false, true, false, _) => "password",
        (false, false, _, _) => {
            let line = all.first().or(any.first()).map_or(0, |(l, _)| *l);
            return Err(Refusal {
                line,
                key: "auth".into(),
                reason: "expected an auth line (plain[passwd=FILE] or certificate)".into(),
            });
        }
    }
    .to_owned();
    if let Some(b) = backend {
        r.auth.method = r.auth.method.replace("password", b);
    }
    Ok(())
}

/// `acct = "radius[config=FILE]"`: RADIUS accounting with radcli's
/// servers, whatever the login method.
fn accounting(r: &mut RawConfig, v: &str) -> Result<(), String> {
    let (method, opts) = match v.split_once('[') {
        Some((m, rest)) => (m.trim(), rest.trim_end_matches(']')),
        None => (v.trim(), ""),
    };
    if method != "radius" {
        return Err(format!(
            "{method:?} accounting is not supported: only radius[config=FILE]"
        ));
    }
    let mut config = None;
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("config", f)) => config = Some(PathBuf::from(f.trim())),
            Some(("nas-identifier", n)) => r.radius.nas_identifier = n.trim().to_owned(),
            _ => return Err(format!("unknown option {opt:?} of radius")),
        }
    }
    let config = config.ok_or("expected radius[config=FILE]: radcli's configuration")?;
    match &r.radius.radcli_config {
        Some(auth) if *auth != config => {
            return Err(format!(
                "a radcli configuration other than auth's ({}) is not supported: use one file",
                auth.display()
            ))
        }
        _ => r.radius.radcli_config = Some(config),
    }
    r.radius.accounting = true;
    Ok(())
}

/// What a GnuTLS priority string asks that rustls does here: TLS 1.2 and
/// 1.3 with AEAD suites and ECDHE, whatever the string says.
fn tls_priorities(v: &str) -> String {
    let parts: Vec<&str> = v
        .split(':')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let dropped: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| {
            !matches!(
                *p,
                "NORMAL"
                    | "SECURE128"
                    | "SECURE256"
                    | "PERFORMANCE"
                    | "%SERVER_PRECEDENCE"
                    | "%COMPAT"
            )
        })
        .filter(|p| {
            !matches!(
                *p,
                "-VERS-SSL3.0"
                    | "-VERS-TLS1.0"
                    | "-VERS-TLS1.1"
                    | "-VERS-DTLS1.0"
                    | "-ARCFOUR-128"
                    | "-3DES-CBC"
            )
        })
        .collect();
    if dropped.is_empty() {
        "TLS 1.2 and 1.3 with AEAD suites (rustls), as this string asks".into()
    } else {
        format!(
            "TLS 1.2 and 1.3 with AEAD suites (rustls); not applied: {}",
            dropped.join(":")
        )
    }
}

/// Keys ocserv refuses inside a `[vhost:...]` section: one for the whole
/// server.
const GLOBAL_ONLY: &[&str] = &[
    "listen-host",
    "udp-listen-host",
    "tcp-port",
    "udp-port",
    "run-as-user",
    "run-as-group",
    "socket-file",
    "occtl-socket-file",
    "chroot-dir",
    "sec-mod-scale",
    "listen-proxy-proto",
    "rate-limit-ms",
    "server-drain-ms",
    "connect-script",
    "host-update-script",
    "disconnect-script",
    "dtls-psk",
    "compression-algo-priority",
    "use-seccomp",
    "isolate-workers",
    "limit-worker-memory",
    "sec-mod-db-cleanup-time",
    "use-utmp",
    "use-dbus",
    "use-occtl",
    "try-mtu-discovery",
    "ping-leases",
    "auth-timeout",
    "max-clients",
    "min-reauth-time",
    "ban-time",
    "ban-reset-time",
    "max-ban-score",
    "ban-points-wrong-password",
    "ban-points-connection",
    "ban-points-kkdcp",
    "device",
    "route-add-cmd",
    "route-del-cmd",
    "server-stats-reset-time",
];

/// Keys ocserv takes per host that are one for the whole server here.
const ONE_HERE: &[&str] = &["mtu", "dtls-legacy", "expose-iroutes"];

/// Keys whose lines in a host replace the default host's lines rather than
/// add to them (ocserv 1.5 inherits these only when the host has none).
const HOST_REPLACES: &[&str] = &["auth", "enable-auth", "server-cert", "server-key"];

/// The whole file: the default host, then each `[vhost:NAME]` as the
/// default's keys with its own over them (ocserv 1.5's inheritance), kept
/// as the keys that differ.
pub(super) fn translate(entries: &[Entry]) -> Result<Translated, Refusal> {
    let mut hosts: Vec<(String, Vec<&Entry>)> = Vec::new();
    let mut default = Vec::new();
    for e in entries {
        match &e.section {
            None => default.push(e),
            Some(section) => {
                let Some(name) = section.strip_prefix("vhost:") else {
                    return Err(Refusal {
                        line: e.line,
                        key: e.key.clone(),
                        reason: format!("an unknown section [{section}]"),
                    });
                };
                if GLOBAL_ONLY.contains(&e.key.as_str()) {
                    return Err(Refusal {
                        line: e.line,
                        key: e.key.clone(),
                        reason: "cannot be set inside a virtual host section: it is one for the whole server".into(),
                    });
                }
                if ONE_HERE.contains(&e.key.as_str()) {
                    return Err(Refusal {
                        line: e.line,
                        key: e.key.clone(),
                        reason: "cannot be set inside a virtual host section here: this server has one for all hosts (set it outside the section)".into(),
                    });
                }
                let name = name.trim().to_ascii_lowercase();
                match hosts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, own)) => own.push(e),
                    None => hosts.push((name, vec![e])),
                }
            }
        }
    }
    let mut out = translate_one(default.iter().copied())?;
    if hosts.is_empty() {
        return Ok(out);
    }
    let table = |raw: &RawConfig| match toml::Value::try_from(raw) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let base = table(&out.raw);
    for (name, own) in hosts {
        let replaced: Vec<&str> = own
            .iter()
            .map(|e| e.key.as_str())
            .filter(|k| HOST_REPLACES.contains(k))
            .collect();
        let inherited = default
            .iter()
            .copied()
            .filter(|e| !replaced.contains(&e.key.as_str()));
        let host = translate_one(inherited.chain(own.iter().copied()))?;
        let lines: Vec<usize> = own.iter().map(|e| e.line).collect();
        out.notes
            .extend(host.notes.into_iter().filter(|n| lines.contains(&n.line)));
        let diff = crate::vhost::difference(&base, &table(&host.raw));
        out.raw.vhost.insert(name, diff);
    }
    Ok(out)
}

/// One host's keys.
fn translate_one<'a>(entries: impl Iterator<Item = &'a Entry>) -> Result<Translated, Refusal> {
    let mut st = State::default();
    // ocserv's defaults where ours differ for a key its files often leave out.
    st.raw.server.tcp_port = 443;
    st.raw.server.udp_port = 0;
    st.raw.network.dns.clear();
    st.raw.control.socket = PathBuf::from("/var/run/occtl.socket");
    st.raw.network.predictable_ips = true;
    for e in entries {
        st.key(e).map_err(|reason| Refusal {
            line: e.line,
            key: e.key.clone(),
            reason,
        })?;
    }
    st.finish()
}

#[cfg(test)]
mod tests {
    use super::super::translate as read;

    #[test]
    fn a_typical_file_in_the_toml_model() {
        let t = read(
            "auth = \"plain[passwd=/etc/ocserv/ocpasswd]\"\ntcp-port = 4443\nudp-port = 4443\nrun-as-user = nobody\nrun-as-group = daemon\n\
             socket-file = /var/run/ocserv-socket\nserver-cert = /etc/ocserv/cert.pem\nserver-key = /etc/ocserv/key.pem\nisolate-workers = true\n\
             max-clients = 16\nmax-same-clients = 2\nkeepalive = 32400\ndpd = 90\nmobile-dpd = 1800\ntls-priorities = \"NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0\"\n\
             auth-timeout = 240\ncookie-timeout = 300\ndeny-roaming = false\nrekey-time = 172800\nrekey-method = ssl\nuse-occtl = true\npid-file = /run/ocserv.pid\n\
             device = vpns\npredictable-ips = true\ndefault-domain = example.com\nipv4-network = 192.168.1.0\nipv4-netmask = 255.255.255.0\ndns = 192.168.1.2\n\
             ping-leases = false\nroute = 10.10.10.0/255.255.255.0\nno-route = 192.168.5.0/255.255.255.0\ncisco-client-compat = true\ndtls-legacy = true\n\
             camouflage = false\n",
        )
        .unwrap();
        let r = &t.raw;
        assert_eq!(r.auth.method, "password");
        assert_eq!(r.auth.passwd_file.to_str(), Some("/etc/ocserv/ocpasswd"));
        assert_eq!((r.server.tcp_port, r.server.udp_port), (4443, 4443));
        assert_eq!(
            (
                r.server.run_as_user.as_str(),
                r.server.run_as_group.as_str()
            ),
            ("nobody", "daemon")
        );
        assert_eq!(r.network.ipv4_network, "192.168.1.0/24");
        assert_eq!(r.network.routes, ["10.10.10.0/24"]);
        assert_eq!(r.network.no_routes, ["192.168.5.0/24"]);
        assert_eq!(r.network.dns, ["192.168.1.2"]);
        assert_eq!(
            (
                r.session.max_clients,
                r.session.max_same_clients,
                r.session.mobile_dpd
            ),
            (16, 2, 1800)
        );
        assert!(r.network.predictable_ips);
        let noted: Vec<&str> = t.notes.iter().map(|n| n.key.as_str()).collect();
        for k in ["socket-file", "isolate-workers", "tls-priorities"] {
            assert!(noted.contains(&k), "{k} not noted: {noted:?}");
        }
        assert!(r.auth.select_group_by_url, "cisco-client-compat implies it");
    }

    #[test]
    fn auth_lines_combine_as_ocserv_combines_them() {
        let m = |t: &str| read(t).map(|t| t.raw.auth.method);
        assert_eq!(m("auth = certificate\n").unwrap(), "certificate");
        assert_eq!(
            m("auth = certificate\nauth = plain[passwd=/p]\n").unwrap(),
            "certificate+password"
        );
        assert_eq!(
            m("auth = certificate\nenable-auth = plain[/p]\n").unwrap(),
            "certificate|password"
        );
        assert_eq!(
            m("auth = plain[passwd=/p]\nenable-auth = certificate\n").unwrap(),
            "certificate|password"
        );
        let radius = read(
            "auth = certificate\nauth = \"radius[config=/etc/radcli/radiusclient.conf,groupconfig=true,group-separator=comma]\"\n",
        )
        .unwrap()
        .raw;
        assert_eq!(radius.auth.method, "certificate+radius");
        assert_eq!(
            radius.radius.radcli_config.as_deref(),
            Some(std::path::Path::new("/etc/radcli/radiusclient.conf"))
        );
        assert_eq!(radius.radius.group_separator, ",");
        let acct = read(
            "auth = plain[passwd=/p]\nacct = \"radius[config=/etc/radcli/radiusclient.conf]\"\nstats-report-time = 360\n",
        )
        .unwrap()
        .raw;
        assert!(acct.radius.accounting);
        assert_eq!(acct.radius.interim_interval, 360);
        assert!(read("auth = plain[passwd=/p]\nacct = pam\n").is_err());
        let pam = read("auth = pam[gid-min=1000]\n").unwrap().raw;
        assert_eq!(
            (
                pam.auth.method.as_str(),
                pam.pam.service.as_str(),
                pam.pam.gid_min
            ),
            ("pam", "ocserv", 1000)
        );
        for (text, why) in [
            (
                "auth = gssapi\n",
                "gssapi authentication is not supported yet",
            ),
            ("auth = pam[gid-max=4]\n", "unknown option"),
            ("auth = radius\n", "expected radius[config=FILE]"),
            ("tcp-port = 443\n", "expected an auth line"),
        ] {
            let e = m(text).unwrap_err();
            assert!(e.reason.contains(why), "{text:?} → {e:?}");
        }
    }

    #[test]
    fn keys_are_honoured_noted_or_refused_never_dropped() {
        let base = "auth = plain[passwd=/p]\n";
        for (line, refused) in [
            ("camouflage = true", true),
            ("camouflage = false", false),
            ("chroot-dir = /var/lib/ocserv", true),
            ("route-add-cmd = ip route add %R dev %D", true),
            ("no-such-key = 1", true),
            ("iroute = 10.0.0.0/8", true),
            ("ipv6-subnet-prefix = 64", true),
            ("udp-listen-host = 10.0.0.1", false),
            ("udp-listen-host = vpn.example.com", true),
            ("route = default", false),
            ("ping-leases = true", false),
            ("append-routes = true", false),
            ("use-dbus = true", false),
            ("debug-no-secmod-stats = true", false),
            ("run-as-user = root", false),
            ("no-udp = true", false),
        ] {
            let r = read(&format!("{base}{line}\n"));
            assert_eq!(r.is_err(), refused, "{line}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.line, 2, "{line}");
            }
        }
        let t = read(&format!("{base}route = 10.0.0.0/8\nroute = default\n")).unwrap();
        assert!(
            t.raw.network.routes.is_empty(),
            "a default route is a full tunnel"
        );
        let t = read(&format!(
            "{base}run-as-user = root\nrun-as-group = root\nno-udp = true\nudp-port = 443\n\
             ipv6-network = fd00:1::\nipv6-prefix = 96\n"
        ))
        .unwrap();
        let s = &t.raw.server;
        assert_eq!(
            (s.run_as_user.as_str(), s.udp_port),
            ("", 0),
            "root stays root, no DTLS"
        );
        assert_eq!(t.raw.network.ipv6_network, "fd00:1::/96");
        let t = read(&format!("{base}ipv6-network = fda9:4efe:7e3b:03ea::/48\n")).unwrap();
        assert_eq!(
            t.raw.network.ipv6_network, "fda9:4efe:7e3b::/48",
            "as ocserv masks it"
        );
        let e = read(&format!("{base}[vhost:a.example]\ntcp-port = 443\n")).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "tcp-port"));
        let e = read(&format!("{base}[vhost:a.example]\nmtu = 1300\n")).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "mtu"));
    }

    #[test]
    fn a_vhost_is_the_default_with_its_own_keys_over_it() {
        let t = read(
            "auth = plain[passwd=/p]\nserver-cert = /c.pem\nserver-key = /k.pem\n\
             dns = 10.0.0.53\nbanner = one\nkeepalive = 30\n\
             [vhost:VPN2.example]\nauth = certificate\nserver-cert = /c2.pem\n\
             dns = 10.2.0.53\nbanner = two\nipv4-network = 10.2.0.0/24\n",
        )
        .unwrap();
        let host = &t.raw.vhost["vpn2.example"];
        let text = toml::to_string(host).unwrap();
        // Only what differs; lists add to the inherited lines, as ocserv's.
        assert!(text.contains("cert_file = \"/c2.pem\""), "{text}");
        assert!(text.contains("method = \"certificate\""), "{text}");
        assert!(text.contains("banner = \"two\""), "{text}");
        assert!(
            text.contains("dns = [\"10.0.0.53\", \"10.2.0.53\"]"),
            "{text}"
        );
        assert!(text.contains("ipv4_network = \"10.2.0.0/24\""), "{text}");
        assert!(
            !text.contains("keepalive") && !text.contains("key_file"),
            "{text}"
        );
    }
}
