//! The second step of loading a configuration: what its keys name is read
//! and checked — directories, per-user defaults, the CA and CRL, RADIUS
//! secrets, the LDAP CA, scripts, the users and groups of this system.
//! Every error still names the file and the key.

use std::path::Path;
use std::sync::Arc;

use super::{Backend, Config, ConfigError, RunAs, Server};

/// A configuration whose keys are checked (`Config::validate`) but whose
/// files are not read yet.
#[derive(Debug)]
pub struct Unread {
    pub(crate) config: Config,
    /// Virtual hosts, each checked the same way.
    pub(super) hosts: Vec<(String, Self)>,
}

impl Unread {
    /// The configuration as it was validated, before any file was read.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads and checks what the configuration names.
    pub fn read_files(self) -> Result<Config, ConfigError> {
        let Self { mut config, hosts } = self;
        let file = config.file.clone();
        let bad = |key: &'static str, reason: String| ConfigError::Invalid {
            file: file.clone(),
            key,
            reason,
        };
        let base = file.parent().unwrap_or(Path::new("."));
        let raw = &config.raw;
        let u = &raw.users;
        for (key, dir) in [
            ("users.config_per_user", &u.config_per_user),
            ("users.config_per_group", &u.config_per_group),
        ] {
            if let Some(d) = dir.as_ref().filter(|d| !d.is_dir()) {
                return Err(bad(key, format!("{} is not a directory", d.display())));
            }
        }
        for (key, f) in [
            ("users.default_user_config", &u.default_user_config),
            ("users.default_group_config", &u.default_group_config),
        ] {
            if let Some(f) = f {
                crate::usercfg::read_file(f).map_err(|reason| bad(key, reason))?;
            }
        }
        if let Some(otp) = &raw.auth.otp_file {
            std::fs::metadata(otp)
                .map_err(|e| bad("auth.otp_file", format!("{}: {e}", otp.display())))?;
        }
        if config.backend == Backend::Pam {
            if let Some(dir) = raw.pam.config_dir.as_ref().filter(|d| !d.is_dir()) {
                return Err(bad(
                    "pam.config_dir",
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        let backend = config.backend;
        let ldap = if backend == Backend::Ldap {
            let l = crate::auth::ldap::Ldap::from_raw(&raw.ldap, base)
                .map_err(|(key, reason)| bad(key, reason))?;
            Some(Arc::new(l))
        } else {
            None
        };
        let radius = if backend == Backend::Radius
            || raw.radius.accounting
            || !raw.radius.disconnect_listen.trim().is_empty()
        {
            let r = crate::auth::radius::Radius::from_raw(&raw.radius, base)
                .map_err(|(key, reason)| bad(key, reason))?;
            if r.auth.is_empty() && backend == Backend::Radius {
                return Err(bad(
                    "radius.servers",
                    "expected at least one server: auth.method uses RADIUS".into(),
                ));
            }
            Some(Arc::new(r))
        } else {
            None
        };
        let a = &raw.auth;
        if let Some(ca) = &a.ca_file {
            drop(crate::tls::load_ca(ca).map_err(|e| bad("auth.ca_file", e.to_string()))?);
            if let Some(crl) = &a.crl_file {
                crate::tls::check_crls(ca, crl).map_err(|e| bad("auth.crl_file", e.to_string()))?;
            }
        }
        let sc = &raw.scripts;
        for (key, p) in [
            ("scripts.connect_script", &sc.connect_script),
            ("scripts.disconnect_script", &sc.disconnect_script),
        ] {
            if let Some(p) = p {
                check_script(p).map_err(|reason| bad(key, reason))?;
            }
        }
        let control_gid = match raw.control.group.trim() {
            "" => None,
            g => match crate::sys::creds::group_id(g) {
                Ok(Some(gid)) => Some(gid),
                Ok(None) => {
                    return Err(bad(
                        "control.group",
                        format!("expected a group of this system, got {g:?}"),
                    ))
                }
                Err(e) => return Err(bad("control.group", format!("looking up group {g:?}: {e}"))),
            },
        };
        let run_as = run_as(&raw.server).map_err(|(key, reason)| bad(key, reason))?;
        if let Some(p) = &raw.auth.user_profile {
            crate::usercfg::Profile::read(p).map_err(|e| bad("auth.user_profile", e))?;
        }
        let known_iroutes = match (raw.network.expose_iroutes, &raw.users.config_per_user) {
            (true, Some(dir)) => crate::usercfg::iroutes_in(dir)
                .map_err(|reason| bad("network.expose_iroutes", reason))?,
            // `validate` refused expose_iroutes without the directory.
            _ => Vec::new(),
        };
        config.ldap = ldap;
        config.radius = radius;
        config.control_gid = control_gid;
        config.run_as = run_as;
        config.known_iroutes = known_iroutes;
        for (name, host) in hosts {
            let host = host
                .read_files()
                .map_err(|e| crate::vhost::host_error(&file, &name, &e))?;
            config.vhosts.push((name.into(), Arc::new(host)));
        }
        Ok(config)
    }
}

/// Looks up `run_as_user` and `run_as_group` in the system's databases.
fn run_as(s: &Server) -> Result<Option<RunAs>, (&'static str, String)> {
    let (user, group) = (s.run_as_user.trim(), s.run_as_group.trim());
    if user.is_empty() {
        if !group.is_empty() {
            return Err((
                "server.run_as_group",
                "expected run_as_user beside it".into(),
            ));
        }
        return Ok(None);
    }
    let key = "server.run_as_user";
    let u = match crate::sys::privs::user(user) {
        Ok(Some(u)) => u,
        Ok(None) => return Err((key, format!("expected a user of this system, got {user:?}"))),
        Err(e) => return Err((key, format!("looking up user {user:?}: {e}"))),
    };
    if u.uid == 0 {
        return Err((
            key,
            format!("{user:?} is root: expected an unprivileged user such as \"nobody\""),
        ));
    }
    let (group, gid) = if group.is_empty() {
        (format!("gid {}", u.gid), u.gid)
    } else {
        let key = "server.run_as_group";
        match crate::sys::creds::group_id(group) {
            Ok(Some(0)) => {
                return Err((
                    key,
                    format!(
                    "{group:?} is root's group: expected an unprivileged one such as \"nogroup\""
                ),
                ))
            }
            Ok(Some(gid)) => (group.to_owned(), gid),
            Ok(None) => {
                return Err((
                    key,
                    format!("expected a group of this system, got {group:?}"),
                ))
            }
            Err(e) => return Err((key, format!("looking up group {group:?}: {e}"))),
        }
    };
    Ok(Some(RunAs {
        user: user.to_owned(),
        uid: u.uid,
        group,
        gid,
    }))
}

/// A configured script must be an executable file.
fn check_script(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e} (expected an executable file)", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{}: expected an executable file", path.display()));
    }
    Ok(())
}
