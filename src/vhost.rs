//! Virtual hosts (ocserv's `[vhost:NAME]`): several domains on one server,
//! each with its own certificate, logins, addresses and session settings,
//! chosen by the server name a client's TLS hello asks for (SNI).
//!
//! A host is a whole configuration: the file's keys with the host's over
//! them (as ocserv 1.5 inherits the default host's values). Keys that shape
//! the whole server (sockets, device, shards, bans, scripts, control) are
//! the same for every host and refused in a host's table, as ocserv refuses
//! them in a `[vhost:...]` section.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::config::{Config, ConfigError, RawConfig, Unread};

/// The keys a virtual host may set, by section.
const KEYS: &[(&str, &[&str])] = &[
    ("tls", &["cert_file", "key_file"]),
    (
        "auth",
        &[
            "passwd_file",
            "select_group",
            "auto_select_group",
            "method",
            "ca_file",
            "crl_file",
            "cert_user_oid",
            "cert_group_oid",
            "pre_login_banner",
            "banner",
            "user_profile",
            "default_select_group",
            "select_group_by_url",
            "otp_file",
        ],
    ),
    // A host's own backend. Disconnect-Requests come to one socket of the
    // whole server (disconnect_listen), answered for the default host's
    // servers.
    (
        "radius",
        &[
            "servers",
            "accounting",
            "accounting_servers",
            "interim_interval",
            "secret_file",
            "radcli_config",
            "nas_identifier",
            "nas_ip",
            "timeout",
            "retries",
            "dead_time",
            "default_realm",
            "group_attribute",
            "group_separator",
            "require_message_authenticator",
        ],
    ),
    ("pam", &["service", "config_dir", "gid_min"]),
    (
        "ldap",
        &[
            "uri",
            "start_tls",
            "ca_file",
            "user_dn",
            "bind_dn",
            "bind_password_file",
            "base_dn",
            "user_filter",
            "group_attribute",
            "group_base_dn",
            "group_filter",
            "group_name_attribute",
            "timeout",
        ],
    ),
    (
        "network",
        &[
            "ipv4_network",
            "ipv6_network",
            "dns",
            "routes",
            "no_routes",
            "split_dns",
            "default_domain",
            "nbns",
            "tunnel_all_dns",
            "client_bypass_protocol",
            "restrict_user_to_routes",
            "restrict_user_to_ports",
            "net_priority",
            "predictable_ips",
            "append_routes",
        ],
    ),
    (
        "session",
        &[
            "dpd",
            "keepalive",
            "mobile_dpd",
            "cookie_timeout",
            "idle_timeout",
            "mobile_idle_timeout",
            "session_timeout",
            "persistent_cookies",
            "deny_roaming",
            "max_same_clients",
            "custom_headers",
            "rekey_time",
            "rekey_method",
            "proxy_url",
            "rx_data_per_sec",
            "tx_data_per_sec",
        ],
    ),
    (
        "users",
        &[
            "config_per_user",
            "config_per_group",
            "default_user_config",
            "default_group_config",
        ],
    ),
    (
        "server",
        &["http_headers", "camouflage_secret", "camouflage_realm"],
    ),
];

/// Whether `section.key` may differ in a virtual host.
pub fn allowed(section: &str, key: &str) -> bool {
    KEYS.iter()
        .any(|(s, keys)| *s == section && keys.contains(&key))
}

/// Host `name` of the file `written` (as written, before its paths were
/// resolved): its configuration, and its table as checked. `local`: the
/// TUN device's addresses, the same for every host.
pub fn build(
    file: &Path,
    written: &RawConfig,
    name: &str,
    overlay: toml::Table,
    local: (Ipv4Addr, Option<Ipv6Addr>),
) -> Result<(Unread, toml::Table), ConfigError> {
    let err = |reason: String| ConfigError::Vhost {
        file: file.to_owned(),
        name: name.to_owned(),
        reason,
    };
    check_name(name).map_err(err)?;
    for (section, value) in &overlay {
        let toml::Value::Table(t) = value else {
            return Err(err(format!("`{section}` must be a table of keys")));
        };
        for key in t.keys() {
            if !allowed(section, key) {
                return Err(err(format!(
                    "{section}.{key} cannot differ in a virtual host: it is one for the whole server (set it outside the host)"
                )));
            }
        }
    }
    let mut merged = toml::Value::try_from(written).map_err(|e| err(e.to_string()))?;
    if let toml::Value::Table(t) = &mut merged {
        merge(t, &overlay);
    }
    let raw: RawConfig = merged.try_into().map_err(|e| err(e.to_string()))?;
    let mut host = Config::validate(file, raw).map_err(|e| host_error(file, name, &e))?;
    host.config.local = local;
    Ok((host, overlay))
}

/// An error in a virtual host's keys, as the host's own (the file is named
/// once, in front).
pub(crate) fn host_error(file: &Path, name: &str, e: &ConfigError) -> ConfigError {
    let text = e.to_string();
    let prefix = format!("{}: ", file.display());
    ConfigError::Vhost {
        file: file.to_owned(),
        name: name.to_owned(),
        reason: text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
    }
}

/// A host name as SNI carries it: letters, digits, `-` and `.`.
fn check_name(name: &str) -> Result<(), String> {
    if name == "default" {
        return Err("`default` names the default host in occtl's listings; choose another".into());
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err("expected a DNS name (letters, digits, '-' and '.')".into())
    }
}

/// Lays `over` onto `base`: tables key by key, other values replaced.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The keys of `host` that differ from `default`: a host's table.
pub fn difference(default: &toml::Table, host: &toml::Table) -> toml::Table {
    let mut out = toml::Table::new();
    for (k, v) in host {
        match (default.get(k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(h)) => {
                let t = difference(d, h);
                if !t.is_empty() {
                    out.insert(k.clone(), toml::Value::Table(t));
                }
            }
            (Some(d), h) if d == h => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_table_is_what_differs_and_lays_back_over() {
        let default: toml::Table = toml::from_str(
            "[auth]\nbanner = \"a\"\nmethod = \"password\"\n[network]\ndns = [\"1.1.1.1\"]\n",
        )
        .unwrap();
        let host: toml::Table = toml::from_str(
            "[auth]\nbanner = \"b\"\nmethod = \"password\"\n[network]\ndns = [\"1.1.1.1\"]\n",
        )
        .unwrap();
        let d = difference(&default, &host);
        assert_eq!(d.to_string(), "[auth]\nbanner = \"b\"\n");
        let mut back = default.clone();
        merge(&mut back, &d);
        assert_eq!(back, host);
    }

    #[test]
    fn names_and_keys_are_checked() {
        assert!(check_name("vpn2.example.com").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(allowed("network", "ipv4_network"));
        assert!(!allowed("network", "device"));
        assert!(!allowed("security", "ban_time"));
        assert!(
            allowed("radius", "servers") && allowed("ldap", "uri") && allowed("pam", "service")
        );
        assert!(!allowed("radius", "disconnect_listen"));
    }
}
