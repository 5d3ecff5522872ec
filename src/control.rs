//! The control socket: a Unix socket (root-only) on which `ocserv-uring ctl`
//! sends one command line and reads one JSON answer. Served by a thread of
//! its own; commands reach the shards through their admin inboxes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::shard::admin::{self, AdminCmd, AdminReply, Target};
use crate::shard::Shared;

/// The longest command line accepted.
const MAX_LINE: u64 = 4096;

/// Binds the socket, refusing to steal one a running server answers on.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("{}: another server answers here", path.display())));
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    // Root-only: the commands disconnect users and lift bans.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the socket until the process exits (`shard::run` removes the file).
pub fn spawn(listener: UnixListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let started = (Instant::now(), SystemTime::now());
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for conn in listener.incoming() {
            if shared.shutdown.load(Ordering::Acquire) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            if BufReader::new((&conn).take(MAX_LINE)).read_line(&mut line).is_err() {
                continue;
            }
            let answer = match run(&shared, line.trim(), started) {
                Ok(v) => json!({ "ok": true, "result": v }),
                Err(e) => json!({ "ok": false, "error": e }),
            };
            let _ = (&conn).write_all(format!("{answer}\n").as_bytes());
        }
    })?;
    Ok(())
}

/// The commands `ctl` knows, for its help and for errors.
pub const COMMANDS: &str = "show status | show users | show sessions | show user NAME | show id ID | show ip bans | \
                            show ip ban points | disconnect user NAME | disconnect id ID | reconnect user NAME | reconnect group NAME | \
                            unban ip ADDR | reload | stop";

fn sessions(shared: &Shared, t: Target, connected_only: bool) -> Value {
    let mut all: Vec<admin::SessionInfo> = admin::ask_all(shared, &AdminCmd::Sessions(t))
        .into_iter()
        .filter_map(|r| if let AdminReply::Sessions(v) = r { Some(v) } else { None })
        .flatten()
        .filter(|s| !connected_only || s.state == "connected")
        .collect();
    all.sort_by_key(|s| s.id);
    json!(all)
}

fn disconnect(shared: &Shared, t: Target, what: &str) -> Result<Value, String> {
    let n: usize = admin::ask_all(shared, &AdminCmd::Disconnect(t))
        .into_iter()
        .map(|r| if let AdminReply::Disconnected(n) = r { n } else { 0 })
        .sum();
    if n == 0 {
        return Err(format!("no session of {what}"));
    }
    Ok(json!({ "disconnected": n }))
}

/// Re-reads the files of every (user, group) the target's sessions run
/// as, then has their shards apply them and close the connections. A file
/// that no longer parses refuses the whole command: no session changes.
fn reconnect(shared: &Shared, t: Target, what: &str) -> Result<Value, String> {
    let mut pairs: Vec<(String, Option<String>)> = admin::ask_all(shared, &AdminCmd::Sessions(t.clone()))
        .into_iter()
        .filter_map(|r| if let AdminReply::Sessions(v) = r { Some(v) } else { None })
        .flatten()
        .map(|s| (s.user, s.group_name))
        .collect();
    pairs.sort();
    pairs.dedup();
    if pairs.is_empty() {
        return Err(format!("no session of {what}"));
    }
    let mut policies = Vec::with_capacity(pairs.len());
    for (user, group) in pairs {
        let c = crate::usercfg::load(&shared.config.get().raw.users, &user, group.as_deref())
            .map_err(|e| format!("user {user}: {e}; no session was changed"))?;
        policies.push(((user, group), c));
    }
    let n: usize = admin::ask_all(shared, &AdminCmd::Reconnect(t, Arc::new(policies)))
        .into_iter()
        .map(|r| if let AdminReply::Reconnected(n) = r { n } else { 0 })
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
        "RX": crate::units::format_size(t.raw_rx),
        "raw_rx": t.raw_rx,
        "TX": crate::units::format_size(t.raw_tx),
        "raw_tx": t.raw_tx,
    })
}

/// Runs one command line.
fn run(shared: &Shared, line: &str, started: (Instant, SystemTime)) -> Result<Value, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = |s: &str| s.parse::<u64>().map_err(|_| format!("expected a session ID (a number), got {s:?}"));
    Ok(match words.as_slice() {
        ["show", "status"] => status(shared, started),
        ["show", "users"] => sessions(shared, Target::All, true),
        ["show", "sessions"] => sessions(shared, Target::All, false),
        ["show", "user", name] => sessions(shared, Target::User((*name).to_owned()), false),
        ["show", "id", n] => sessions(shared, Target::Id(id(n)?), false),
        ["show", "ip", "bans"] => bans(shared, true),
        ["show", "ip", "ban", "points"] => bans(shared, false),
        ["disconnect", "user", name] => disconnect(shared, Target::User((*name).to_owned()), &format!("user {name}"))?,
        ["disconnect", "id", n] => disconnect(shared, Target::Id(id(n)?), &format!("ID {n}"))?,
        ["reconnect", "user", name] => reconnect(shared, Target::User((*name).to_owned()), &format!("user {name}"))?,
        ["reconnect", "group", name] => reconnect(shared, Target::Group((*name).to_owned()), &format!("group {name}"))?,
        ["unban", "ip", addr] => {
            let ip: IpAddr = addr.parse().map_err(|_| format!("expected an IP address, got {addr:?}"))?;
            json!({ "unbanned": shared.bans.unban(ip) })
        }
        ["reload"] => match crate::shard::reload::reload(shared) {
            Ok(r) => json!({ "reloaded": true, "certificate": r.pin, "warnings": r.warnings }),
            Err(e) => {
                tracing::error!("reload failed, the running configuration stays: {e}");
                return Err(format!("reload failed, the running configuration stays: {e}"));
            }
        },
        ["stop"] | ["stop", "now"] => {
            tracing::info!("stop requested on the control socket");
            shared.shutdown.store(true, Ordering::Release);
            json!({ "stopping": true })
        }
        _ => return Err(format!("unknown command {line:?}; commands: {COMMANDS}")),
    })
}
