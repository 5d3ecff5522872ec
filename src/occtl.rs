//! `occtl`: ocserv's control tool, by the same binary under that name (or
//! `ocserv-uring occtl`), so dashboards and scripts that shell out to occtl
//! work unchanged: its options (`-s SOCKET`, `-j`, `-n`) and its commands,
//! translated onto the control socket's.
//!
//! ocserv's `disconnect` and `terminate` both end the session and its
//! cookie (ocserv's disconnect_proc invalidates it): here both are the
//! control socket's `disconnect`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

/// occtl's default socket (ocserv's `occtl-socket-file`), then ours.
const SOCKETS: [&str; 2] = [
    "/var/run/occtl.socket",
    crate::config::DEFAULT_CONTROL_SOCKET,
];

const USAGE: &str = "Usage: occtl [-s SOCKET] [-j] [-n] COMMAND
  show status | users | user NAME | id ID | iroutes | ip bans | ip ban points
  show sessions all | sessions valid | session SID
  show events                      the users now, then connects and disconnects
  disconnect user NAME | id ID     end the session; its cookie stops working
  terminate user NAME | id ID | session SID
                                   the same
  unban ip IP | reload | stop now
Options: -s, --socket-file FILE   -j, --json   -n, --no-pager (always)
         -c, --use-colors, -d, --debug (accepted)   -v, --version   -h, --help";

/// What the command line asks.
#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    socket: Option<PathBuf>,
    json: bool,
    words: Vec<String>,
}

fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut inv = Invocation {
        socket: None,
        json: false,
        words: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-s" | "--socket-file" => {
                inv.socket = Some(it.next().ok_or("-s needs a socket file")?.into())
            }
            s if s.starts_with("--socket-file=") => {
                inv.socket = Some(s["--socket-file=".len()..].into())
            }
            "-j" | "--json" => inv.json = true,
            "-n" | "--no-pager" | "-c" | "--use-colors" | "-d" | "--debug" => {}
            "-h" | "--help" | "-v" | "--version" if inv.words.is_empty() => {
                inv.words.push(a.clone())
            }
            s if s.starts_with('-') && inv.words.is_empty() => {
                return Err(format!("unknown option {s}"))
            }
            w => inv.words.push(w.to_owned()),
        }
    }
    Ok(inv)
}

/// The control socket's command line for occtl's `words`.
fn translate(words: &[&str]) -> Result<String, String> {
    Ok(match words {
        ["show", "status"]
        | ["show", "users"]
        | ["show", "iroutes"]
        | ["show", "ip", "bans"]
        | ["show", "ip", "ban", "points"] => words.join(" "),
        ["show", "user" | "id", x] => format!("{} {} {x}", words[0], words[1]),
        ["show", "sessions", "all" | "valid"] | ["show", "events"] => words.join(" "),
        // occtl takes the singular for these too.
        ["show", "session", which @ ("all" | "valid")] => format!("show sessions {which}"),
        ["show", "session", sid] => format!("show session {sid}"),
        ["terminate", "session", sid] => format!("terminate session {sid}"),
        // As ocserv's: the session ends and its cookie with it.
        ["disconnect", what @ ("user" | "id"), x] => format!("disconnect {what} {x}"),
        ["terminate", what @ ("user" | "id"), x] => format!("disconnect {what} {x}"),
        ["unban", "ip", ip] => format!("unban ip {ip}"),
        ["reload"] => "reload".into(),
        ["stop", "now"] => "stop".into(),
        [] => return Err("interactive mode is not supported: give a command\n".to_owned() + USAGE),
        _ => return Err(format!("unknown command '{}'\n{USAGE}", words.join(" "))),
    })
}

/// What occtl prints for a command that changes something.
fn said(words: &[&str], result: &Value) -> Option<String> {
    Some(match words {
        ["disconnect", "user", x] => format!("user '{x}' was disconnected"),
        ["disconnect", "id", x] => format!("connection ID '{x}' was disconnected"),
        ["terminate", "user", x] => format!("user '{x}' was terminated (session invalidated)"),
        ["terminate", "id", x] => {
            format!("connection ID '{x}' was terminated (session invalidated)")
        }
        ["terminate", "session", x] => {
            format!(
                "session '{}' was terminated",
                x.chars().take(6).collect::<String>()
            )
        }
        ["unban", "ip", x] if result["unbanned"] == Value::Bool(true) => {
            format!("IP '{x}' was unbanned")
        }
        ["unban", "ip", x] => format!("could not unban IP '{x}'"),
        ["reload"] => "Server scheduled to reload".into(),
        ["stop", "now"] => "Server scheduled to stop".into(),
        _ => return None,
    })
}

/// Runs occtl with `args` (without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let inv = match parse(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("occtl: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let words: Vec<&str> = inv.words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["-h" | "--help" | "help" | "?"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["-v" | "--version"] => {
            println!("occtl (ocserv-uring {})", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let line = match translate(&words) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("occtl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let socket = inv.socket.unwrap_or_else(|| {
        SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(SOCKETS[0]))
    });
    if words == ["show", "events"] {
        return match events(&socket, inv.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("occtl: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let answer = crate::ctl::request(&socket, &line).map(|mut r| {
        // occtl lists connected users only; `ctl` also those between
        // connections.
        if matches!(words.as_slice(), ["show", "user" | "id", _]) {
            if let Some(all) = r.as_array_mut() {
                all.retain(|u| u["State"] == "connected");
            }
        }
        r
    });
    match answer {
        // As occtl: a user, ID or session not found is exit status 2.
        Ok(result)
            if matches!(words.as_slice(), ["show", "user" | "id" | "session", w] if !matches!(*w, "all" | "valid"))
                && result.as_array().is_some_and(Vec::is_empty) =>
        {
            if inv.json {
                println!("[]");
            } else if words[1] == "session" {
                println!("Session ID not found or expired");
            } else {
                println!("user or ID not found");
            }
            ExitCode::from(2)
        }
        Ok(result) if inv.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(result) => {
            match said(&words, &result) {
                Some(text) => println!("{text}"),
                None => print!("{}", crate::ctl::render(&words, &result)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("occtl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `show events`: the users connected now, then a line (or with `-j` a
/// JSON array of the user, as occtl prints them) per connect and
/// disconnect, until the server goes away or the user interrupts.
pub(crate) fn events(socket: &std::path::Path, json: bool) -> Result<(), String> {
    use std::io::Write;
    let mut lines = crate::ctl::stream(socket, "show events")?;
    let first = lines.next().ok_or("the server closed the connection")??;
    let users = crate::ctl::result_of(&first)?;
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock<'_>, s: String| {
        out.write_all(s.as_bytes()).and_then(|()| out.flush())
    };
    let shown = if json {
        serde_json::to_string_pretty(&users).unwrap_or_default() + "\n"
    } else {
        crate::ctl::render(&["show", "users"], &users)
    };
    print(&mut out, format!("{shown}\nPress CTRL+C to quit\n\n")).map_err(|e| e.to_string())?;
    for line in lines {
        let line = line?;
        let Ok(ev) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let u = &ev["user"];
        let text = if json {
            serde_json::to_string_pretty(&Value::Array(vec![u.clone()])).unwrap_or_default() + "\n"
        } else if ev["event"] == "connect" {
            format!(
                "{}: connected user '{}' ({}) from {} with IP {}\n",
                plain(&u["vhost"]),
                plain(&u["Username"]),
                plain(&u["ID"]),
                plain(&u["Remote IP"]),
                plain(&u["IPv4"])
            )
        } else {
            format!(
                "{}: disconnect user '{}' ({}) from {} with IP {} (reason: {}, time: {})\n",
                plain(&u["vhost"]),
                plain(&u["Username"]),
                plain(&u["ID"]),
                plain(&u["Remote IP"]),
                plain(&u["IPv4"]),
                plain(&ev["reason"]),
                plain(&u["_Connected at"])
            )
        };
        if print(&mut out, text).is_err() {
            break;
        }
    }
    Ok(())
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_then_the_command() {
        let i = parse(&words("-s /run/x.socket -j -n show users")).unwrap();
        assert_eq!(
            i,
            Invocation {
                socket: Some("/run/x.socket".into()),
                json: true,
                words: words("show users")
            }
        );
        assert!(parse(&words("--bogus show users")).is_err());
    }

    #[test]
    fn commands_map_onto_the_control_socket() {
        for (occtl, ours) in [
            ("show users", "show users"),
            ("show user alice", "show user alice"),
            ("show id 7", "show id 7"),
            ("show iroutes", "show iroutes"),
            ("show ip ban points", "show ip ban points"),
            ("disconnect user alice", "disconnect user alice"),
            ("disconnect id 7", "disconnect id 7"),
            ("terminate user alice", "disconnect user alice"),
            ("terminate id 7", "disconnect id 7"),
            ("unban ip 10.0.0.1", "unban ip 10.0.0.1"),
            ("stop now", "stop"),
            ("reload", "reload"),
            ("show sessions all", "show sessions all"),
            ("show sessions valid", "show sessions valid"),
            ("show session PTGUB9", "show session PTGUB9"),
            ("show session all", "show sessions all"),
            ("terminate session PTGUB9", "terminate session PTGUB9"),
            ("show events", "show events"),
        ] {
            let w: Vec<&str> = occtl.split_whitespace().collect();
            assert_eq!(translate(&w).unwrap(), ours, "{occtl}");
        }
        assert!(translate(&["stop"]).is_err(), "occtl needs 'stop now'");
        assert!(translate(&[]).is_err());
    }
}
