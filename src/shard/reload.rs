//! `SIGHUP` / `ctl reload`: the configuration, the certificate and key,
//! the password file and the per-user files are read again. Everything is
//! checked before anything changes, so a broken file keeps the running
//! state; sessions are never touched (they keep what they got at login).
//! Keys that shape the shards themselves (listeners, TUN device, pools)
//! keep their start values until a restart, with a warning.

use std::path::Path;
use std::sync::Arc;

use super::Shared;
use crate::config::Config;

/// A reload that took effect.
#[derive(Debug)]
pub struct Reloaded {
    /// The certificate now served, as `pin-sha256:...`.
    pub pin: String,
    /// What was not applied or looks wrong, without stopping the reload.
    pub warnings: Vec<String>,
}

/// Serialises reloads (a SIGHUP and a `ctl reload` at once).
static RELOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn reload(shared: &Shared) -> Result<Reloaded, String> {
    let _one = RELOADING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let old = shared.config.get();
    let mut new = Config::load(&old.file).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    keep_restart_keys(&old, &mut new, &mut warnings);

    let t = &new.raw.tls;
    if t.generate_self_signed {
        crate::tls::ensure_self_signed(&t.cert_file, &t.key_file).map_err(|e| e.to_string())?;
    }
    let files = |e: crate::tls::TlsSetupError| {
        format!(
            "certificate {}, key {}: {e}",
            t.cert_file.display(),
            t.key_file.display()
        )
    };
    let (tls, pin, _) = crate::tls::ServerTls::load(&new).map_err(files)?;
    check_passwd(&new.raw.auth.passwd_file, &mut warnings);
    check_user_files(&new.raw.users, &mut warnings);

    shared.bans.set_policy(new.ban_policy());
    shared.tls.set(Arc::new(tls));
    shared.config.set(Arc::new(new));
    for w in &warnings {
        tracing::warn!("reload: {w}");
    }
    tracing::info!(certificate = %pin, warnings = warnings.len(), "configuration reloaded");
    Ok(Reloaded { pin, warnings })
}

/// Copies the running values of keys a reload cannot change into `new`.
fn keep_restart_keys(old: &Config, new: &mut Config, warnings: &mut Vec<String>) {
    let (o, n) = (&old.raw, &mut new.raw);
    let mut changed = Vec::new();
    let mut keep = |key: &str, differs: bool| {
        if differs {
            changed.push(key.to_owned());
        }
    };
    keep("server.listen", o.server.listen != n.server.listen);
    keep(
        "server.udp_listen",
        o.server.udp_listen != n.server.udp_listen,
    );
    keep("server.tcp_port", o.server.tcp_port != n.server.tcp_port);
    keep("server.udp_port", o.server.udp_port != n.server.udp_port);
    keep("server.workers", o.server.workers != n.server.workers);
    keep(
        "server.run_as_user",
        o.server.run_as_user != n.server.run_as_user,
    );
    keep(
        "server.run_as_group",
        o.server.run_as_group != n.server.run_as_group,
    );
    keep(
        "server.log_format",
        o.server.log_format != n.server.log_format,
    );
    keep("network.device", o.network.device != n.network.device);
    keep("network.ipv4_network", old.ipv4_network != new.ipv4_network);
    keep("network.ipv6_network", old.ipv6_network != new.ipv6_network);
    keep("network.mtu", o.network.mtu != n.network.mtu);
    keep(
        "network.tun_offload",
        o.network.tun_offload != n.network.tun_offload,
    );
    keep("control.socket", o.control.socket != n.control.socket);
    keep("control.group", o.control.group != n.control.group);
    keep(
        "monitoring.metrics_listen",
        old.metrics_listen != new.metrics_listen,
    );
    keep("server.pid_file", o.server.pid_file != n.server.pid_file);
    // The rest of [server] is read per connection or per batch: it applies.
    let server = std::mem::replace(&mut n.server, o.server.clone());
    n.server.batch_wait_us = server.batch_wait_us;
    n.server.proxy_protocol = server.proxy_protocol;
    n.server.camouflage_secret = server.camouflage_secret;
    n.server.camouflage_realm = server.camouflage_realm;
    n.server.http_headers = server.http_headers;
    n.network.device.clone_from(&o.network.device);
    n.network.ipv4_network.clone_from(&o.network.ipv4_network);
    n.network.ipv6_network.clone_from(&o.network.ipv6_network);
    n.network.mtu = o.network.mtu;
    n.network.tun_offload = o.network.tun_offload;
    n.control = o.control.clone();
    n.monitoring = o.monitoring.clone();
    new.listen.clone_from(&old.listen);
    new.udp_listen.clone_from(&old.udp_listen);
    new.workers = old.workers;
    new.run_as.clone_from(&old.run_as);
    // Virtual hosts that share the default pool keep sharing the running one.
    let (file4, file6) = (new.ipv4_network, new.ipv6_network);
    for (_, host) in &mut new.vhosts {
        let host = Arc::make_mut(host);
        if host.ipv4_network == file4 {
            host.ipv4_network = old.ipv4_network;
        }
        if host.ipv6_network == file6 {
            host.ipv6_network = old.ipv6_network;
        }
        host.local = old.local;
    }
    new.ipv4_network = old.ipv4_network;
    new.ipv6_network = old.ipv6_network;
    new.local = old.local;
    new.metrics_listen = old.metrics_listen;
    new.control_gid = old.control_gid;
    if !changed.is_empty() {
        warnings.push(format!(
            "{} changed: kept the running value until a restart",
            changed.join(", ")
        ));
    }
}

/// Lines of the password file that ocserv and we would ignore.
fn check_passwd(path: &Path, warnings: &mut Vec<String>) {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bad: Vec<String> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| {
                    !l.trim().is_empty()
                        && !l.starts_with('#')
                        && crate::passwd::parse_line(l).is_none()
                })
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            if !bad.is_empty() {
                warnings.push(format!(
                    "{}: lines {} are not user:groups:hash and are ignored",
                    path.display(),
                    bad.join(", ")
                ));
            }
        }
        Err(e) => warnings.push(format!(
            "{}: {e}; password logins fail until it is readable",
            path.display()
        )),
    }
}

/// Per-user and per-group files that would refuse their user's login.
fn check_user_files(users: &crate::config::Users, warnings: &mut Vec<String>) {
    let dirs = [&users.config_per_user, &users.config_per_group];
    let mut files: Vec<std::path::PathBuf> = dirs
        .iter()
        .filter_map(|d| d.as_ref())
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.filter_map(Result::ok).map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.extend(
        [&users.default_user_config, &users.default_group_config]
            .into_iter()
            .flatten()
            .cloned(),
    );
    for f in files {
        if let Err(e) = crate::usercfg::read_file(&f) {
            warnings.push(format!("{e}: that login will be refused"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("/etc/x/test.toml"), text).unwrap()
    }

    #[test]
    fn server_keys_read_per_connection_apply_and_the_others_wait_for_a_restart() {
        let old = parse("[server]\ntcp_port = 443\nbatch_wait_us = 500\n");
        let mut new = parse(
            "[server]\ntcp_port = 8443\nbatch_wait_us = 250\nproxy_protocol = true\n\
             pid_file = \"/run/other.pid\"\ncamouflage_realm = \"Intranet\"\n",
        );
        let mut warnings = Vec::new();
        keep_restart_keys(&old, &mut new, &mut warnings);
        let s = &new.raw.server;
        assert_eq!(
            (s.tcp_port, s.pid_file.clone()),
            (443, old.raw.server.pid_file.clone())
        );
        assert_eq!(s.batch_wait_us, 250);
        assert!(s.proxy_protocol);
        assert_eq!(s.camouflage_realm, "Intranet");
        assert_eq!(
            warnings,
            vec![
                "server.tcp_port, server.pid_file changed: kept the running value until a restart"
            ]
        );
    }
}
