//! radcli's configuration file (`radiusclient.conf`), as ocserv's
//! `auth = "radius[config=...]"` names it: the keys a NAS needs, read so
//! that an existing setup carries over. Keys about radcli's own files
//! (dictionary, seqfile, mapfile) mean nothing here and are skipped.

use std::path::Path;

/// One server line: `host[:port][:secret]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub port: Option<u16>,
    pub secret: Option<Vec<u8>>,
}

/// What the file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Radcli {
    pub auth: Vec<Host>,
    pub acct: Vec<Host>,
    pub nas_identifier: Option<String>,
    pub nas_ip: Option<String>,
    pub default_realm: Option<String>,
    pub timeout: Option<u64>,
    pub retries: Option<u32>,
}

/// Reads `path` and the `servers` file it names (secrets per host).
pub fn read(path: &Path) -> Result<Radcli, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut c = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(servers) = servers_file(&text) {
        let servers = if Path::new(&servers).is_relative() {
            path.parent().unwrap_or(Path::new(".")).join(servers)
        } else {
            servers.into()
        };
        // radcli reads it only when a host has no secret of its own.
        let needed = c.auth.iter().chain(&c.acct).any(|h| h.secret.is_none());
        if needed {
            let text = std::fs::read_to_string(&servers)
                .map_err(|e| format!("{} (servers): {e}", servers.display()))?;
            apply_secrets(&text, &mut c);
        }
    }
    Ok(c)
}

fn servers_file(text: &str) -> Option<String> {
    lines(text)
        .find(|(k, _)| *k == "servers")
        .map(|(_, v)| v.to_owned())
}

fn lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| {
        let l = l.split('#').next().unwrap_or_default().trim();
        if l.is_empty() {
            return None;
        }
        Some(match l.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (l, ""),
        })
    })
}

/// The configuration's keys (no files read).
pub fn parse(text: &str) -> Result<Radcli, String> {
    let mut c = Radcli::default();
    for (key, v) in lines(text) {
        let number = || {
            v.parse::<u64>()
                .map_err(|_| format!("{key}: expected a number, got {v:?}"))
        };
        match key {
            "authserver" => c.auth = hosts(v)?,
            "acctserver" => c.acct = hosts(v)?,
            "nas-identifier" | "nas_identifier" => c.nas_identifier = Some(v.to_owned()),
            "nas-ip" | "nas_ip" => c.nas_ip = Some(v.to_owned()),
            "default_realm" => c.default_realm = Some(v.to_owned()),
            "radius_timeout" => c.timeout = Some(number()?),
            "radius_retries" => {
                c.retries = Some(u32::try_from(number()?).map_err(|e| e.to_string())?)
            }
            // radcli's own files and knobs, and the ones only its login
            // programs use.
            "servers" | "dictionary" | "seqfile" | "mapfile" | "radius_deadtime" | "bindaddr"
            | "login_tries" | "login_timeout" | "nologin" | "issue" | "login_radius"
            | "login_local" | "serv-type" | "auth_order" | "clientdebug" | "namespace" => {}
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    Ok(c)
}

/// `host[:port][:secret]`, several separated by commas or spaces.
fn hosts(v: &str) -> Result<Vec<Host>, String> {
    let mut out = Vec::new();
    for entry in v.split([',', ' ', '\t']).filter(|e| !e.is_empty()) {
        // An IPv6 address in brackets keeps its colons.
        let (name, rest) = match entry.strip_prefix('[') {
            Some(r) => {
                let (n, rest) = r
                    .split_once(']')
                    .ok_or_else(|| format!("{entry:?}: no closing ]"))?;
                (n, rest.strip_prefix(':').unwrap_or(rest))
            }
            None => entry.split_once(':').unwrap_or((entry, "")),
        };
        let (port, secret) = match rest.split_once(':') {
            Some((p, s)) => (p, Some(s)),
            None => (rest, None),
        };
        let port = match port {
            "" => None,
            p => Some(p.parse().map_err(|_| format!("{entry:?}: bad port"))?),
        };
        out.push(Host {
            name: name.to_owned(),
            port,
            secret: secret
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec()),
        });
    }
    Ok(out)
}

/// The `servers` file: `host secret` lines; the host may carry a port.
fn apply_secrets(text: &str, c: &mut Radcli) {
    for (host, secret) in lines(text) {
        let name = host.split(':').next().unwrap_or(host);
        for h in c.auth.iter_mut().chain(c.acct.iter_mut()) {
            if h.secret.is_none() && (h.name == host || h.name == name) && !secret.is_empty() {
                h.secret = Some(secret.as_bytes().to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_debian_radiusclient_conf() {
        let text = "\
# radcli
nas-identifier fw01
authserver \tradius1:1812,radius2::s2
acctserver localhost:1813:acctsecret
servers /etc/radcli/servers
dictionary /etc/radcli/dictionary
default_realm
radius_timeout 5
radius_retries 2
bindaddr *
";
        let c = parse(text).unwrap();
        assert_eq!(c.nas_identifier.as_deref(), Some("fw01"));
        assert_eq!(
            c.auth,
            [
                Host {
                    name: "radius1".into(),
                    port: Some(1812),
                    secret: None
                },
                Host {
                    name: "radius2".into(),
                    port: None,
                    secret: Some(b"s2".to_vec())
                },
            ]
        );
        assert_eq!(c.acct[0].secret.as_deref(), Some(&b"acctsecret"[..]));
        assert_eq!((c.timeout, c.retries), (Some(5), Some(2)));
        assert_eq!(c.default_realm.as_deref(), Some(""));
        let mut c = c;
        apply_secrets("radius1 s1\nradius2 other\n", &mut c);
        assert_eq!(c.auth[0].secret.as_deref(), Some(&b"s1"[..]));
        assert_eq!(c.auth[1].secret.as_deref(), Some(&b"s2"[..]));
        assert!(parse("frobnicate 1\n").unwrap_err().contains("frobnicate"));
        assert_eq!(hosts("[::1]:1812:x").unwrap()[0].name, "::1");
    }
}
