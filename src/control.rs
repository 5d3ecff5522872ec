//! The control socket: a Unix socket on which `ocserv-uring ctl` sends one
//! command line and reads one JSON answer. Served by a thread of its own;
//! commands reach the shards through their admin inboxes.
//!
//! Only root, the server's own user and members of `[control] group` may
//! use it: the file's mode says so (0600, or 0660 with the group) from the
//! moment it appears, and each connection's credentials (SO_PEERCRED,
//! SO_PEERGROUPS) are checked again, so a socket made reachable by mistake
//! (a chmod, an ACL) still answers nobody else.

use std::fs::{self, DirBuilder, Permissions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::shard::admin::{self, AdminCmd, AdminReply, Target};
use crate::shard::Shared;

/// The longest command line accepted.
const MAX_LINE: u64 = 4096;

/// Binds the socket, refusing to steal one a running server answers on.
/// Its mode is 0600, or 0660 with group `group`: the commands disconnect
/// users and lift bans. It is bound in a private directory (mode 0700)
/// beside `path`, given its mode and group there and renamed into place,
/// so nobody can connect in between, whatever the umask and whatever other
/// threads do (the umask is the whole process's). The private path is 14
/// bytes longer than `path` and must fit a socket address (107 bytes).
pub fn bind(path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            ErrorKind::AddrInUse,
            format!("{}: another server answers here", path.display()),
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let private = private_dir(dir)?;
    let socket = private.join("s");
    let bound = bind_private(&socket, path, group);
    if bound.is_err() {
        let _ = fs::remove_file(&socket);
    }
    let _ = fs::remove_dir(&private);
    bound
}

/// A new directory `.ctl-RANDOM` in `dir`, mode 0700.
fn private_dir(dir: &Path) -> std::io::Result<PathBuf> {
    let mut tries = 0;
    loop {
        let mut random = [0u8; 4];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| std::io::Error::other("no random bytes"))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let private = dir.join(format!(".ctl-{hex}"));
        match DirBuilder::new().mode(0o700).create(&private) {
            Ok(()) => return Ok(private),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn bind_private(socket: &Path, path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind(socket)?;
    let mode = match group {
        Some(gid) => {
            // The owner stays the server's user (root in practice).
            std::os::unix::fs::chown(socket, None, Some(gid))?;
            0o660
        }
        None => 0o600,
    };
    fs::set_permissions(socket, Permissions::from_mode(mode))?;
    // Replaces a socket left by a server that is gone.
    fs::rename(socket, path)?;
    Ok(listener)
}

/// Whether the peer on `conn` may use the socket: root, the server's own
/// user, or a member (primary or supplementary) of `group`. Refusals are
/// logged here, with the peer's ids when the kernel gave them.
fn peer_allowed(conn: &UnixStream, server_uid: u32, group: Option<u32>) -> bool {
    let cred = match crate::sys::creds::peer_cred(conn.as_fd()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("control connection refused: no peer credentials: {e}");
            return false;
        }
    };
    if cred.uid == 0 || cred.uid == server_uid {
        return true;
    }
    if let Some(gid) = group {
        if cred.gid == gid {
            return true;
        }
        match crate::sys::creds::peer_groups(conn.as_fd()) {
            Ok(groups) if groups.contains(&gid) => return true,
            Ok(_) => {}
            Err(e) => tracing::warn!(
                uid = cred.uid,
                pid = cred.pid,
                "control connection: no peer groups: {e}"
            ),
        }
    }
    tracing::warn!(
        uid = cred.uid,
        gid = cred.gid,
        pid = cred.pid,
        "control connection refused: not root, the server's user or a member of [control] group"
    );
    false
}

/// Serves the socket until the process exits (`server::run` removes the
/// file); `group` is `[control] group`'s id, if set.
pub fn spawn(
    listener: UnixListener,
    shared: Arc<Shared>,
    group: Option<u32>,
) -> std::io::Result<()> {
    let started = (Instant::now(), SystemTime::now());
    let server_uid = crate::sys::creds::effective_uid();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if shared.shutdown.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
                if !peer_allowed(&conn, server_uid, group) {
                    let _ = (&conn).write_all(b"error: not allowed\n");
                    continue;
                }
                let mut line = String::new();
                if BufReader::new((&conn).take(MAX_LINE))
                    .read_line(&mut line)
                    .is_err()
                {
                    continue;
                }
                if line.trim() == "show events" {
                    let users = sessions(&shared, Target::All, true);
                    crate::watch::serve(conn, shared.clone(), users);
                    continue;
                }
                let answer = match run(&shared, line.trim(), started) {
                    Ok(v) => json!({ "ok": true, "result": v }),
                    Err(e) => json!({ "ok": false, "error": e.to_string(), "code": e.code() }),
                };
                let _ = (&conn).write_all(format!("{answer}\n").as_bytes());
            }
        })?;
    Ok(())
}

/// Why a command failed. Its `code` travels with the message, so a client
/// tells "nothing matched" (not a failure to a script that reconnects
/// whoever is there) from a refusal without reading the text.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no session of {0}")]
    NoSession(String),
    #[error("no connected session of {0}")]
    NoConnectedSession(String),
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    /// The answer's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSession(_) => NO_SESSION,
            Self::NoConnectedSession(_) => "no_connected_session",
            Self::Failed(_) => "failed",
        }
    }
}

/// The `code` of an answer that found no session.
pub const NO_SESSION: &str = "no_session";

impl From<String> for CommandError {
    fn from(s: String) -> Self {
        Self::Failed(s)
    }
}

/// The commands `ctl` knows, for its help and for errors.
pub const COMMANDS: &str = "show status | show users | show sessions [all|valid] | show session SID | show user NAME | show id ID | \
                            show iroutes | show ip bans | show ip ban points | show events | disconnect user NAME | disconnect id ID | \
                            drop user NAME | drop id ID | terminate session SID | reconnect user NAME | reconnect group NAME | \
                            unban ip ADDR | reload | stop";

fn sessions(shared: &Shared, t: Target, connected_only: bool) -> Value {
    let mut all = infos(shared, t);
    all.retain(|s| !connected_only || s.state == "connected");
    json!(all)
}

/// A session ID or its start, as occtl shows them.
fn session_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 28
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    ok.then(|| s.to_owned())
        .ok_or_else(|| format!("invalid session ID '{s}'"))
}

pub(crate) fn infos(shared: &Shared, t: Target) -> Vec<admin::SessionInfo> {
    let mut all: Vec<admin::SessionInfo> = admin::ask_all(shared, &AdminCmd::Sessions(t))
        .into_iter()
        .filter_map(|r| {
            if let AdminReply::Sessions(v) = r {
                Some(v)
            } else {
                None
            }
        })
        .flatten()
        .collect();
    all.sort_by_key(|s| s.id);
    all
}

/// Sessions as occtl's `show sessions` prints them, with its -j names.
fn cookies(shared: &Shared, t: Target) -> Value {
    let flag = |b: bool| u8::from(b);
    let list: Vec<Value> = infos(shared, t)
        .into_iter()
        .map(|s| {
            json!({
                "Session": s.session,
                "Full session": s.full_session,
                "Created": admin::format_time(s.created),
                "Expires": s.expires.map(admin::format_time).unwrap_or_default(),
                "State": "authenticated",
                "Username": s.user,
                "Groupname": s.group,
                "vhost": s.vhost,
                "User-Agent": s.user_agent,
                "Remote IP": s.login_ip,
                "Location": "unknown",
                "session_is_open": flag(!s.ipv4.is_empty()),
                "tls_auth_ok": flag(s.cert_auth),
                "in_use": flag(s.state == "connected"),
                "ID": s.id,
            })
        })
        .collect();
    json!(list)
}

/// Ends the one session whose ID starts with `sid`, its connection too
/// (ocserv's invalidates the cookie and leaves a live connection up).
fn terminate_session(shared: &Shared, sid: &str) -> Result<Value, String> {
    let found = infos(shared, Target::Sid(sid.to_owned()));
    let s = match found.as_slice() {
        [] => return Err(format!("no session matching '{sid}' was found")),
        [s] => s,
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|s| format!("  {}  user: {}", s.full_session, s.user))
                .collect();
            return Err(format!(
                "ambiguous session ID '{sid}' matches {} sessions:\n{}\nuse the full session ID to terminate a specific session",
                many.len(),
                list.join("\n")
            ));
        }
    };
    disconnect(shared, Target::Id(s.id), &format!("session {sid}")).map_err(|e| e.to_string())?;
    Ok(json!({ "terminated": s.full_session }))
}

pub(crate) fn disconnect(shared: &Shared, t: Target, what: &str) -> Result<Value, CommandError> {
    let n: usize = admin::ask_all(shared, &AdminCmd::Disconnect(t))
        .into_iter()
        .map(|r| {
            if let AdminReply::Disconnected(n) = r {
                n
            } else {
                0
            }
        })
        .sum();
    if n == 0 {
        return Err(CommandError::NoSession(what.to_owned()));
    }
    Ok(json!({ "disconnected": n }))
}

/// Closes the target's connections; the sessions stay for a reconnect.
fn drop_connections(shared: &Shared, t: Target, what: &str) -> Result<Value, CommandError> {
    let n: usize = admin::ask_all(shared, &AdminCmd::Drop(t))
        .into_iter()
        .map(|r| {
            if let AdminReply::Disconnected(n) = r {
                n
            } else {
                0
            }
        })
        .sum();
    if n == 0 {
        return Err(CommandError::NoConnectedSession(what.to_owned()));
    }
    Ok(json!({ "dropped": n }))
}

/// Connected sessions and the networks behind them, with occtl's -j
/// field names.
fn iroutes(shared: &Shared) -> Value {
    let users = sessions(shared, Target::All, true);
    let list: Vec<Value> = users
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| json!({ "ID": s["ID"], "Username": s["Username"], "vhost": s["vhost"], "Device": s["Device"], "IP": s["IPv4"], "iRoutes": s["iRoutes"] }))
        .collect();
    json!(list)
}

/// Re-reads the files of every (user, group) the target's sessions run
/// as, then has their shards apply them and close the connections. A file
/// that no longer parses refuses the whole command: no session changes.
fn reconnect(shared: &Shared, t: Target, what: &str) -> Result<Value, CommandError> {
    let mut pairs: Vec<(String, Option<String>, String)> =
        admin::ask_all(shared, &AdminCmd::Sessions(t.clone()))
            .into_iter()
            .filter_map(|r| {
                if let AdminReply::Sessions(v) = r {
                    Some(v)
                } else {
                    None
                }
            })
            .flatten()
            .map(|s| (s.user, s.group_name, s.vhost))
            .collect();
    pairs.sort();
    pairs.dedup();
    if pairs.is_empty() {
        return Err(CommandError::NoSession(what.to_owned()));
    }
    let mut policies = Vec::with_capacity(pairs.len());
    for (user, group, vhost) in pairs {
        let cfg = shared.config.get().vhost(Some(&vhost));
        let c = crate::usercfg::load(&cfg.raw.users, &user, group.as_deref(), &cfg.user_defaults)
            .map_err(|e| format!("user {user}: {e}; no session was changed"))?;
        policies.push(((user, group, vhost), c));
    }
    let n: usize = admin::ask_all(shared, &AdminCmd::Reconnect(t, Arc::new(policies)))
        .into_iter()
        .map(|r| {
            if let AdminReply::Reconnected(n) = r {
                n
            } else {
                0
            }
        })
        .sum();
    Ok(json!({ "reconnected": n }))
}

fn bans(shared: &Shared, banned_only: bool) -> Value {
    let now = Instant::now();
    let list: Vec<Value> = shared
        .bans
        .list(now)
        .into_iter()
        .filter(|b| !banned_only || b.banned_for.is_some())
        .map(|b| json!({ "IP": b.addr.to_string(), "Score": b.score, "Banned for": b.banned_for.map_or(0, |d| d.as_secs()) }))
        .collect();
    json!(list)
}

fn status(shared: &Shared, (up, up_wall): (Instant, SystemTime)) -> Value {
    let mut t = admin::Totals::default();
    for r in admin::ask_all(shared, &AdminCmd::Totals) {
        if let AdminReply::Totals(s) = r {
            t.sessions += s.sessions;
            t.connected += s.connected;
            t.raw_rx += s.raw_rx;
            t.raw_tx += s.raw_tx;
        }
    }
    let uptime = up.elapsed();
    json!({
        "Status": "online",
        "Server PID": std::process::id(),
        "Up since": admin::format_time(up_wall),
        "_Up since": admin::format_duration(uptime),
        "raw_up_since": up_wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "uptime": uptime.as_secs(),
        "Active sessions": t.connected,
        "Total sessions": t.sessions,
        "IPs in ban list": shared.bans.banned_count(Instant::now()),
        "Shards": shared.shards,
        // What sessions and logins hold across shards: after a quiet
        // spell these fall back to zero and the pool to full.
        "Leased addresses": shared.pools.server().size() - shared.pools.server().free(),
        "Free addresses": shared.pools.server().free(),
        "Counted clients": shared.clients.current(),
        "Users with sessions": shared.per_user.keys(),
        "Logins in progress": shared.logins_by_addr.total(),
        "RX": crate::units::format_size(t.raw_rx),
        "raw_rx": t.raw_rx,
        "TX": crate::units::format_size(t.raw_tx),
        "raw_tx": t.raw_tx,
    })
}

/// Runs one command line.
fn run(shared: &Shared, line: &str, started: (Instant, SystemTime)) -> Result<Value, CommandError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("expected a session ID (a number), got {s:?}"))
    };
    Ok(match words.as_slice() {
        ["show", "status"] => status(shared, started),
        ["show", "users"] => sessions(shared, Target::All, true),
        ["show", "sessions"] => sessions(shared, Target::All, false),
        // occtl's: every cookie (all are authenticated here: a session
        // exists only after its login succeeded).
        ["show", "sessions", "all" | "valid"] => cookies(shared, Target::All),
        ["show", "session", sid] => cookies(shared, Target::Sid(session_id(sid)?)),
        ["terminate", "session", sid] => terminate_session(shared, &session_id(sid)?)?,
        ["show", "user", name] => sessions(shared, Target::User((*name).to_owned()), false),
        ["show", "id", n] => sessions(shared, Target::Id(id(n)?), false),
        ["show", "ip", "bans"] => bans(shared, true),
        ["show", "ip", "ban", "points"] => bans(shared, false),
        ["disconnect", "user", name] => disconnect(
            shared,
            Target::User((*name).to_owned()),
            &format!("user {name}"),
        )?,
        ["disconnect", "id", n] => disconnect(shared, Target::Id(id(n)?), &format!("ID {n}"))?,
        ["drop", "user", name] => drop_connections(
            shared,
            Target::User((*name).to_owned()),
            &format!("user {name}"),
        )?,
        ["drop", "id", n] => drop_connections(shared, Target::Id(id(n)?), &format!("ID {n}"))?,
        ["show", "iroutes"] => iroutes(shared),
        ["reconnect", "user", name] => reconnect(
            shared,
            Target::User((*name).to_owned()),
            &format!("user {name}"),
        )?,
        ["reconnect", "group", name] => reconnect(
            shared,
            Target::Group((*name).to_owned()),
            &format!("group {name}"),
        )?,
        ["unban", "ip", addr] => {
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("expected an IP address, got {addr:?}"))?;
            json!({ "unbanned": shared.bans.unban(ip) })
        }
        ["reload"] => match crate::shard::reload::reload(shared) {
            Ok(r) => json!({ "reloaded": true, "certificate": r.pin, "warnings": r.warnings }),
            Err(e) => {
                tracing::error!("reload failed, the running configuration stays: {e}");
                return Err(format!("reload failed, the running configuration stays: {e}").into());
            }
        },
        ["stop"] | ["stop", "now"] => {
            tracing::info!("stop requested on the control socket");
            shared.shutdown.store(true, Ordering::Release);
            json!({ "stopping": true })
        }
        _ => return Err(format!("unknown command {line:?}; commands: {COMMANDS}").into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn bind_puts_a_private_socket_in_place_and_leaves_nothing_else() {
        let dir = std::env::temp_dir().join(format!("ocu-control-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.socket");
        let names = || {
            fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        };

        let listener = bind(&path, None).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(names(), ["ctl.socket"]);
        // The file in place is the bound socket.
        let _client = UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
        assert_eq!(bind(&path, None).unwrap_err().kind(), ErrorKind::AddrInUse);

        // A stale socket is replaced; with a group, 0660 and that group.
        drop(listener);
        let _listener = bind(&path, Some(0)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.permissions().mode() & 0o7777, meta.gid()), (0o660, 0));
        assert_eq!(names(), ["ctl.socket"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
