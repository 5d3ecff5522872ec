//! The client side of the control socket: `ocserv-uring ctl` sends one
//! command line, reads the JSON answer and prints it as a table, or as
//! JSON with `--json`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::cfgedit::{Changes, Store};
use crate::config::Config;

/// `ocserv-uring ctl ...`
#[derive(Args)]
#[command(after_help = HELP)]
pub struct CtlArgs {
    /// The control socket; by default the one in --config, else
    /// /run/ocserv-uring/ctl.socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print JSON (occtl -j field names) instead of tables.
    #[arg(long, short = 'j')]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

const HELP: &str = "Commands sent to the server:
  show status              server state, session counts and bytes
  show users               connected sessions, one per line
  show sessions            every session, also those waiting for a reconnect
  show user NAME           every session of a user, in full
  show id ID               one session, in full
  show ip bans             addresses refused now
  show ip ban points       every address with ban points
  disconnect user NAME     end a user's sessions (their cookies stop working)
  disconnect id ID         end one session
  reconnect user NAME      re-read the user's files; their clients reconnect with them
  reconnect group NAME     the same for every session in a group
  unban ip ADDR            lift a ban
  reload                   re-read configuration, certificate, password and user files
  stop                     end every session and stop the server (also: stop now)

Files edited here (need --config, or /etc/ocserv-uring/ocserv-uring.toml):
  user-config set|show|list|delete    [users] config_per_user
  group-config set|show|list|delete   [users] config_per_group";

#[derive(Subcommand)]
enum CtlCommand {
    /// Per-user files (`[users] config_per_user`), in ocserv's format.
    UserConfig {
        #[command(subcommand)]
        action: FileAction,
    },
    /// Per-group files (`[users] config_per_group`), in ocserv's format.
    GroupConfig {
        #[command(subcommand)]
        action: FileAction,
    },
    #[command(external_subcommand)]
    Server(Vec<String>),
}

#[derive(Subcommand)]
enum FileAction {
    /// Set keys in NAME's file (other keys stay); applies at the next login,
    /// or now with --reconnect.
    Set(Box<SetArgs>),
    /// Print NAME's file.
    Show {
        /// The user or group.
        name: String,
    },
    /// List the names that have a file.
    List,
    /// Remove NAME's file (a backup is kept unless [users] keep_backups = 0).
    Delete {
        /// The user or group.
        name: String,
        /// Make NAME's clients reconnect now with what applies instead.
        #[arg(long)]
        reconnect: bool,
    },
}

#[derive(Args)]
struct SetArgs {
    /// The user or group.
    name: String,
    /// A network sent through the tunnel (repeat for more; replaces the file's routes).
    #[arg(long, value_name = "CIDR")]
    route: Vec<String>,
    /// A network kept out of the tunnel.
    #[arg(long, value_name = "CIDR")]
    no_route: Vec<String>,
    /// A network behind this client.
    #[arg(long, value_name = "CIDR")]
    iroute: Vec<String>,
    /// A DNS server for the client.
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// A domain resolved through the tunnel's DNS only.
    #[arg(long, value_name = "DOMAIN")]
    split_dns: Vec<String>,
    /// The client's DNS search domain(s), space-separated.
    #[arg(long, value_name = "DOMAIN")]
    default_domain: Option<String>,
    /// Drop packets to destinations outside the routes.
    #[arg(long)]
    restrict_to_routes: bool,
    /// Sessions this user may hold at once (0 = no limit).
    #[arg(long, value_name = "N")]
    max_same_clients: Option<String>,
    /// A fixed tunnel address for this user.
    #[arg(long, value_name = "IP")]
    explicit_ipv4: Option<String>,
    /// A fixed IPv6 tunnel address: ipv6_network with the IPv4 lease in its
    /// low 32 bits, so it fixes the IPv4 address too.
    #[arg(long, value_name = "IP")]
    explicit_ipv6: Option<String>,
    /// Bytes per second from the client, e.g. 1.5M.
    #[arg(long, value_name = "SIZE")]
    rx_per_sec: Option<String>,
    /// Bytes per second to the client.
    #[arg(long, value_name = "SIZE")]
    tx_per_sec: Option<String>,
    /// Seconds without data before the session ends (0 = never).
    #[arg(long, value_name = "S")]
    idle_timeout: Option<String>,
    /// The same for mobile clients.
    #[arg(long, value_name = "S")]
    mobile_idle_timeout: Option<String>,
    /// Seconds from login to the session's end (0 = never).
    #[arg(long, value_name = "S")]
    session_timeout: Option<String>,
    /// Any key of the file format, e.g. --set mtu=1300 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Remove a key from the file (repeatable).
    #[arg(long, value_name = "KEY")]
    unset: Vec<String>,
    /// Start from an empty file instead of editing the current one.
    #[arg(long)]
    replace: bool,
    /// Make NAME's clients reconnect now with the new file.
    #[arg(long)]
    reconnect: bool,
}

impl SetArgs {
    fn changes(&self) -> Result<Changes, String> {
        let mut set: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |key: &str, v: String| match set.iter_mut().find(|(k, _)| k == key) {
            Some((_, vals)) => vals.push(v),
            None => set.push((key.to_owned(), vec![v])),
        };
        let lists = [
            ("route", &self.route),
            ("no-route", &self.no_route),
            ("iroute", &self.iroute),
            ("dns", &self.dns),
            ("split-dns", &self.split_dns),
        ];
        for (key, vals) in lists {
            vals.iter().for_each(|v| add(key, v.clone()));
        }
        let single = [
            ("default-domain", &self.default_domain),
            ("max-same-clients", &self.max_same_clients),
            ("explicit-ipv4", &self.explicit_ipv4),
            ("explicit-ipv6", &self.explicit_ipv6),
            ("rx-data-per-sec", &self.rx_per_sec),
            ("tx-data-per-sec", &self.tx_per_sec),
            ("idle-timeout", &self.idle_timeout),
            ("mobile-idle-timeout", &self.mobile_idle_timeout),
            ("session-timeout", &self.session_timeout),
        ];
        for (key, v) in single {
            if let Some(v) = v {
                add(key, v.clone());
            }
        }
        if self.restrict_to_routes {
            add("restrict-user-to-routes", "true".into());
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            add(k.trim(), v.trim().to_owned());
        }
        for (k, vals) in &set {
            if vals.iter().any(|v| v.contains(['\n', '\r'])) {
                return Err(format!("{k}: a value cannot span lines"));
            }
        }
        Ok(Changes {
            set,
            unset: self.unset.clone(),
            replace: self.replace,
        })
    }
}

/// Runs `ctl`.
pub fn main(config: Option<PathBuf>, args: CtlArgs) -> Result<(), String> {
    let out = match args.command {
        CtlCommand::Server(words) => {
            let socket = socket(args.socket, config.as_deref())?;
            // `--json` is accepted after the command words too.
            let json = args.json || words.iter().any(|w| w == "--json" || w == "-j");
            let words: Vec<&str> = words
                .iter()
                .map(String::as_str)
                .filter(|w| *w != "--json" && *w != "-j")
                .collect();
            if words == ["show", "events"] {
                return crate::occtl::events(&socket, json);
            }
            let result = request(&socket, &words.join(" "))?;
            if json {
                pretty(&result)
            } else {
                render(&words, &result)
            }
        }
        CtlCommand::UserConfig { action } => files(config, args.socket, args.json, "user", action)?,
        CtlCommand::GroupConfig { action } => {
            files(config, args.socket, args.json, "group", action)?
        }
    };
    print!("{out}");
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .map_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"), |s| s + "\n")
}

fn socket(given: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, String> {
    let s = match (given, config) {
        (Some(s), _) => s,
        (None, Some(c)) => {
            Config::load(c)
                .map_err(|e| e.to_string())?
                .raw
                .control
                .socket
        }
        (None, None) => crate::config::DEFAULT_CONTROL_SOCKET.into(),
    };
    if s.as_os_str().is_empty() {
        return Err(
            "the control socket is off in this configuration ([control] socket = \"\")".into(),
        );
    }
    Ok(s)
}

/// The default configuration `ctl` reads when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/ocserv-uring/ocserv-uring.toml";

fn files(
    config: Option<PathBuf>,
    socket_arg: Option<PathBuf>,
    json: bool,
    kind: &'static str,
    action: FileAction,
) -> Result<String, String> {
    let path = config.unwrap_or_else(|| DEFAULT_CONFIG.into());
    let cfg = Config::load(&path).map_err(|e| e.to_string())?;
    let (dir, key) = match kind {
        "user" => (cfg.raw.users.config_per_user.clone(), "config_per_user"),
        _ => (cfg.raw.users.config_per_group.clone(), "config_per_group"),
    };
    let dir = dir.ok_or_else(|| {
        format!(
            "{}: [users] {key} is not set, so there are no {kind} files to edit",
            path.display()
        )
    })?;
    let store = Store {
        dir,
        kind,
        keep_backups: cfg.raw.users.keep_backups as usize,
    };
    let reconnect = |name: &str| -> Result<Value, String> {
        let socket = socket(socket_arg.clone(), Some(&path))?;
        match request(&socket, &format!("reconnect {kind} {name}")) {
            Ok(v) => Ok(v["reconnected"].clone()),
            Err(RequestError::Refused { code, .. }) if code == crate::control::NO_SESSION => {
                Ok(json!(0))
            }
            Err(e) => Err(format!(
                "the file was written, but the reconnect failed: {e}"
            )),
        }
    };
    let (value, text) = match action {
        FileAction::Set(a) => {
            let w = store.set(&a.name, &a.changes()?)?;
            let n = if a.reconnect {
                Some(reconnect(&a.name)?)
            } else {
                None
            };
            written(&w, n)
        }
        FileAction::Delete {
            name,
            reconnect: now,
        } => {
            let w = store.delete(&name)?;
            let n = if now { Some(reconnect(&name)?) } else { None };
            written(&w, n)
        }
        FileAction::Show { name } => {
            let file = crate::usercfg::file_for(&store.dir, &name).unwrap_or_default();
            match store.show(&name)? {
                Some(t) => (json!({ "name": name, "file": file, "text": t }), t),
                None => (
                    json!({ "name": name, "file": Value::Null }),
                    format!("{kind} {name} has no file of its own\n"),
                ),
            }
        }
        FileAction::List => {
            let names = store.list()?;
            let text = names.iter().map(|n| format!("{n}\n")).collect();
            (json!(names), text)
        }
    };
    Ok(if json { pretty(&value) } else { text })
}

fn written(w: &crate::cfgedit::Written, reconnected: Option<Value>) -> (Value, String) {
    let mut text = format!("wrote {}", w.path.display());
    if let Some(b) = &w.backup {
        text += &format!(" (previous version in {})", b.display());
    }
    match &reconnected {
        Some(n) if n != &json!(0) => text += &format!("; {n} session(s) reconnecting with it"),
        Some(_) => text += "; no session to reconnect, it applies at the next login",
        None => text += "; it applies at the next login",
    }
    (
        json!({ "file": w.path, "backup": w.backup, "reconnected": reconnected }),
        text + "\n",
    )
}

/// Sends `line` and returns the server's `result`, or its error.
pub fn request(socket: &Path, line: &str) -> Result<Value, RequestError> {
    let mut conn = UnixStream::connect(socket).map_err(|e| {
        RequestError::Transport(format!(
            "{}: {e} (is the server running, and is this its [control] socket?)",
            socket.display()
        ))
    })?;
    // Generous: a command waits up to 5 s for every shard.
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| RequestError::Transport(e.to_string()))?;
    let sent = conn.write_all(format!("{line}\n").as_bytes());
    // Read even if the write failed: a peer the server does not accept
    // gets one line and a close, maybe before its command is sent.
    let mut answer = String::new();
    let read = BufReader::new(&conn).read_line(&mut answer);
    if let Some(why) = answer.trim_end().strip_prefix("error: ") {
        return Err(RequestError::Transport(format!(
            "{}: {why} (the server answers root, its own user and members of its [control] group only)",
            socket.display()
        )));
    }
    let transport =
        |e: std::io::Error| RequestError::Transport(format!("{}: {e}", socket.display()));
    sent.map_err(transport)?;
    read.map_err(transport)?;
    result_of(&answer)
}

/// Why a command got no result.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The server answered with an error and its `code`
    /// (`control::CommandError::code`).
    #[error("{message}")]
    Refused { code: String, message: String },
    /// No answer, or one that is not the control protocol.
    #[error("{0}")]
    Transport(String),
}

impl From<RequestError> for String {
    fn from(e: RequestError) -> Self {
        e.to_string()
    }
}

/// An answer line's `result`, or its error.
pub fn result_of(answer: &str) -> Result<Value, RequestError> {
    let v: Value = serde_json::from_str(answer)
        .map_err(|e| RequestError::Transport(format!("unreadable answer from the server: {e}")))?;
    if v["ok"] == Value::Bool(true) {
        return Ok(v["result"].clone());
    }
    Err(RequestError::Refused {
        code: v["code"].as_str().unwrap_or("failed").to_owned(),
        message: v["error"]
            .as_str()
            .unwrap_or("the server refused the command")
            .to_owned(),
    })
}

/// Sends `line` and returns the answer's lines as they come (`show
/// events`); no read timeout.
pub fn stream(
    socket: &Path,
    line: &str,
) -> Result<impl Iterator<Item = Result<String, String>>, String> {
    let mut conn = UnixStream::connect(socket).map_err(|e| {
        format!(
            "{}: {e} (is the server running, and is this its [control] socket?)",
            socket.display()
        )
    })?;
    conn.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    Ok(BufReader::new(conn)
        .lines()
        .map(|l| l.map_err(|e| e.to_string())))
}

/// Renders a command's result for people.
pub fn render(words: &[&str], result: &Value) -> String {
    match words {
        ["show", "users" | "sessions"] => sessions_table(result),
        ["show", "sessions", _] => table(
            result,
            &[
                ("Session", "session"),
                ("Username", "user"),
                ("vhost", "vhost"),
                ("Remote IP", "ip"),
                ("User-Agent", "user agent"),
                ("Created", "created"),
                ("State", "status"),
            ],
        ),
        ["show", "session", _] => {
            let all = result.as_array().map(Vec::as_slice).unwrap_or_default();
            if all.is_empty() {
                return "no such session\n".into();
            }
            all.iter().map(key_values).collect::<Vec<_>>().join("\n")
        }
        ["show", "ip", ..] => table(
            result,
            &[
                ("IP", "IP"),
                ("Score", "score"),
                ("Banned for", "banned for (s)"),
            ],
        ),
        ["show", "user" | "id", ..] => {
            let all = result.as_array().map(Vec::as_slice).unwrap_or_default();
            if all.is_empty() {
                return "no such session\n".into();
            }
            all.iter().map(key_values).collect::<Vec<_>>().join("\n")
        }
        _ if result.is_object() => key_values(result),
        _ => format!("{}\n", plain(result)),
    }
}

fn sessions_table(result: &Value) -> String {
    table(
        result,
        &[
            ("ID", "id"),
            ("Username", "user"),
            ("Groupname", "group"),
            ("Remote IP", "ip"),
            ("IPv4", "vpn-ip"),
            ("Device", "device"),
            ("_Connected at", "since"),
            ("Channel", "channel"),
            ("_RX", "rx"),
            ("_TX", "tx"),
            ("State", "state"),
        ],
    )
}

/// Columns `(json field, heading)`, widths from the content.
fn table(rows: &Value, columns: &[(&str, &str)]) -> String {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return "(none)\n".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|(k, _)| plain(&r[*k])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, h))| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| {
        let mut s = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(columns.iter().map(|(_, h)| *h).collect());
    for c in &cells {
        out += &line(c.iter().map(String::as_str).collect());
    }
    out
}

/// `Key: value` lines, lists joined by commas; `raw_*` and `_*` twins of
/// fields already shown are left to `--json`.
fn key_values(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return format!("{}\n", plain(v));
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, val) in map {
        if k.starts_with("raw_") || k.starts_with('_') {
            continue;
        }
        // Human sizes instead of raw byte strings where there is a twin.
        let shown = match map.get(&format!("_{k}")) {
            Some(h) => format!("{} ({})", plain(h), plain(val)),
            None => plain(val),
        };
        out += &format!("{k:>width$}: {shown}\n");
    }
    out
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_says_why_it_failed_by_code() {
        let e = crate::control::CommandError::NoSession("user bob".into());
        let line = json!({ "ok": false, "error": e.to_string(), "code": e.code() }).to_string();
        match result_of(&line) {
            Err(RequestError::Refused { code, message }) => {
                assert_eq!(code, crate::control::NO_SESSION);
                assert_eq!(message, "no session of user bob");
            }
            other => panic!("{other:?}"),
        }
        // An older server's answer has no code.
        let old = r#"{"ok": false, "error": "unknown command"}"#;
        assert!(
            matches!(result_of(old), Err(RequestError::Refused { code, .. }) if code == "failed")
        );
        assert_eq!(result_of(r#"{"ok": true, "result": 3}"#).unwrap(), json!(3));
        assert!(matches!(
            result_of("garbage"),
            Err(RequestError::Transport(_))
        ));
    }

    #[test]
    fn users_table_has_a_row_per_session() {
        let v = json!([{ "ID": 7, "Username": "alice", "Groupname": "staff", "Remote IP": "10.0.0.2",
                          "IPv4": "192.168.1.5", "_RX": "1.5M", "_TX": "200K", "State": "connected" }]);
        let out = render(&["show", "users"], &v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("id  user "), "{out}");
        assert!(
            lines[1].contains("alice")
                && lines[1].contains("1.5M")
                && lines[1].contains("192.168.1.5"),
            "{out}"
        );
        assert_eq!(render(&["show", "users"], &json!([])), "(none)\n");
    }

    #[test]
    fn key_values_prefer_human_twins() {
        let v = json!({ "RX": "1572864", "_RX": "1.5M", "raw_rx": 1572864, "Status": "online" });
        let out = render(&["show", "status"], &v);
        assert!(out.contains("RX: 1.5M (1572864)"), "{out}");
        assert!(!out.contains("raw_rx"), "{out}");
        assert!(out.contains("Status: online"), "{out}");
    }
}
