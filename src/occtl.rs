//! `occtl`: ocserv's control tool, by the same binary under that name (or
//! `ocserv-uring occtl`), so dashboards and scripts that shell out to occtl
//! work unchanged: its options (`-s SOCKET`, `-j`, `-n`) and its commands,
//! translated onto the control socket's.
//!
//! ocserv's `disconnect` closes a connection and keeps the session (the
//! client comes back with its cookie); its `terminate` ends the session.
//! Here those are the control socket's `drop` and `disconnect`.

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
  disconnect user NAME | id ID     close the connection; the client reconnects
  terminate user NAME | id ID      end the session (its cookie stops working)
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
        ["disconnect", what @ ("user" | "id"), x] => format!("drop {what} {x}"),
        ["terminate", what @ ("user" | "id"), x] => format!("disconnect {what} {x}"),
        ["unban", "ip", ip] => format!("unban ip {ip}"),
        ["reload"] => "reload".into(),
        ["stop", "now"] => "stop".into(),
        ["show", "sessions" | "cookies" | "session" | "events", ..]
        | ["terminate", "session", ..] => {
            return Err(format!("'{}' is not supported yet", words.join(" ")))
        }
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
    match crate::ctl::request(&socket, &line) {
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
            ("disconnect user alice", "drop user alice"),
            ("disconnect id 7", "drop id 7"),
            ("terminate user alice", "disconnect user alice"),
            ("terminate id 7", "disconnect id 7"),
            ("unban ip 10.0.0.1", "unban ip 10.0.0.1"),
            ("stop now", "stop"),
            ("reload", "reload"),
        ] {
            let w: Vec<&str> = occtl.split_whitespace().collect();
            assert_eq!(translate(&w).unwrap(), ours, "{occtl}");
        }
        assert!(translate(&["stop"]).is_err(), "occtl needs 'stop now'");
        assert!(translate(&[]).is_err());
    }
}
