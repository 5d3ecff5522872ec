//! The client side of the control socket: `ocserv-uring ctl` sends one
//! command line, reads the JSON answer and prints it as a table, or as
//! JSON with `--json`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Sends `line` and returns the server's `result`, or its error.
pub fn request(socket: &Path, line: &str) -> Result<Value, String> {
    let mut conn = UnixStream::connect(socket).map_err(|e| {
        format!("{}: {e} (is the server running, and is this its [control] socket?)", socket.display())
    })?;
    // Generous: a command waits up to 5 s for every shard.
    conn.set_read_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
    conn.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut answer = String::new();
    BufReader::new(&conn).read_line(&mut answer).map_err(|e| format!("{}: {e}", socket.display()))?;
    let v: Value = serde_json::from_str(&answer).map_err(|e| format!("unreadable answer from the server: {e}"))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v["result"].clone())
    } else {
        Err(v["error"].as_str().unwrap_or("the server refused the command").to_owned())
    }
}

/// Renders a command's result for people.
pub fn render(words: &[&str], result: &Value) -> String {
    match words {
        ["show", "users" | "sessions"] => sessions_table(result),
        ["show", "ip", ..] => table(
            result,
            &[("IP", "IP"), ("Score", "score"), ("Banned for", "banned for (s)")],
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
    let cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|(k, _)| plain(&r[*k])).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, h))| cells.iter().map(|c| c[i].len()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |vals: Vec<&str>| {
        let mut s = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ");
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
    let Some(map) = v.as_object() else { return format!("{}\n", plain(v)) };
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
    fn users_table_has_a_row_per_session() {
        let v = json!([{ "ID": 7, "Username": "alice", "Groupname": "staff", "Remote IP": "10.0.0.2",
                          "IPv4": "192.168.1.5", "_RX": "1.5M", "_TX": "200K", "State": "connected" }]);
        let out = render(&["show", "users"], &v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("id  user "), "{out}");
        assert!(lines[1].contains("alice") && lines[1].contains("1.5M") && lines[1].contains("192.168.1.5"), "{out}");
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
