//! ocserv's own configuration file as a configuration: an existing
//! `/etc/ocserv/ocserv.conf` runs this server unchanged.
//!
//! The file is read the way ocserv reads it (inih: `key = value` lines,
//! `#` and `;` comments, `#` after a space ends a value, an indented line
//! continues the previous key, surrounding quotes dropped) and translated
//! key by key into the TOML model (`keys`). Every key of ocserv 1.5's
//! sample configuration is either honoured with ocserv's meaning, accepted
//! with a note saying why it means nothing here, or refused naming the key
//! and why; never silently ignored.

mod keys;

use crate::config::RawConfig;

/// One `key = value` of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1-based.
    pub line: usize,
    /// `vhost:NAME` for a key in such a section.
    pub section: Option<String>,
    pub key: String,
    pub value: String,
}

/// Why the file cannot run this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub key: String,
    pub reason: String,
}

/// A key that means nothing here, and why: logged at start and written as
/// a comment by `check-config --to-toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub key: String,
    pub text: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.key, self.text)
    }
}

/// The file's meaning in the TOML model.
#[derive(Debug)]
pub struct Translated {
    pub raw: RawConfig,
    pub notes: Vec<Note>,
}

/// Whether `text` is in ocserv's format rather than TOML: its first line
/// that is neither blank nor a comment is a `key = value` (the TOML model
/// has no top-level keys) or a `[vhost:...]` section.
pub fn is_ocserv_format(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    match first {
        Some(l) if l.starts_with('[') => l.starts_with("[vhost:"),
        Some(l) => l.contains('='),
        None => false,
    }
}

/// Reads and translates an ocserv configuration.
pub fn translate(text: &str) -> Result<Translated, Refusal> {
    let entries = entries(text)?;
    keys::translate(&entries)
}

/// The file's entries, in order, as inih hands them to ocserv.
pub fn entries(text: &str) -> Result<Vec<Entry>, Refusal> {
    let mut out: Vec<Entry> = Vec::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = if line == 1 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let start = raw.trim();
        if start.is_empty() || start.starts_with('#') || start.starts_with(';') {
            continue;
        }
        // An indented line continues the previous key (INI_ALLOW_MULTILINE).
        let indented = raw.starts_with([' ', '\t']);
        if indented && !start.starts_with('[') {
            if let Some(prev) = out.last().filter(|e| e.section == section).cloned() {
                let value = sanitize(strip_comment(start));
                if !value.is_empty() {
                    out.push(Entry {
                        line,
                        section: section.clone(),
                        key: prev.key,
                        value,
                    });
                }
                continue;
            }
        }
        if let Some(rest) = start.strip_prefix('[') {
            let Some(name) = rest.split_once(']').map(|(n, _)| n.trim()) else {
                return Err(Refusal {
                    line,
                    key: start.to_owned(),
                    reason: "a section header without ']'".into(),
                });
            };
            section = Some(name.to_owned());
            continue;
        }
        let Some(at) = start.find(['=', ':']) else {
            return Err(Refusal {
                line,
                key: start.to_owned(),
                reason: "expected key = value".into(),
            });
        };
        let key = start[..at].trim().to_owned();
        let value = sanitize(strip_comment(start[at + 1..].trim_start()));
        if key.is_empty() {
            return Err(Refusal {
                line,
                key: start.to_owned(),
                reason: "expected key = value".into(),
            });
        }
        out.push(Entry {
            line,
            section: section.clone(),
            key,
            value,
        });
    }
    Ok(out)
}

/// A `#` after whitespace starts a comment (INI_INLINE_COMMENT_PREFIXES).
fn strip_comment(v: &str) -> &str {
    let b = v.as_bytes();
    let end = (1..b.len())
        .find(|&i| b[i] == b'#' && b[i - 1].is_ascii_whitespace())
        .unwrap_or(b.len());
    v[..end].trim_end()
}

/// Whitespace and double quotes off both ends, as ocserv's
/// sanitize_config_value.
fn sanitize(v: &str) -> String {
    v.trim_matches(|c: char| c.is_whitespace() || c == '"')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_ocserv_files_tell_apart() {
        assert!(is_ocserv_format(
            "# ocserv\n\nauth = \"plain[passwd=/etc/ocserv/ocpasswd]\"\n"
        ));
        assert!(is_ocserv_format("[vhost:a.example]\ntcp-port = 443\n"));
        assert!(!is_ocserv_format("# ours\n[server]\ntcp_port = 443\n"));
        assert!(!is_ocserv_format(""));
    }

    #[test]
    fn lines_read_as_inih_reads_them() {
        let text = "\u{feff}# c\n; c too\nauth = \"plain[passwd=/p]\"  # inline\nroute = 10.0.0.0/8\n  192.168.0.0/16\ndns: 10.0.0.1\nbanner = a#b\n[vhost:www.example.com]\ntcp-port = 443\n";
        let e = entries(text).unwrap();
        let got: Vec<(usize, Option<&str>, &str, &str)> = e
            .iter()
            .map(|e| {
                (
                    e.line,
                    e.section.as_deref(),
                    e.key.as_str(),
                    e.value.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (3, None, "auth", "plain[passwd=/p]"),
                (4, None, "route", "10.0.0.0/8"),
                (5, None, "route", "192.168.0.0/16"),
                (6, None, "dns", "10.0.0.1"),
                (7, None, "banner", "a#b"),
                (9, Some("vhost:www.example.com"), "tcp-port", "443"),
            ]
        );
        assert_eq!(entries("just words\n").unwrap_err().line, 1);
    }
}
