//! Logging to stderr: lines for people or one JSON object per event.
//!
//! Field values can carry what a client chose (a user name, a DISCONNECT
//! reason, a header): in text logs every control character is escaped, so
//! a newline in a user name cannot start a forged log line. JSON strings
//! are escaped by the JSON encoder.

use std::fmt::{self, Write};
use std::io::IsTerminal;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};

/// Installs the global subscriber at `level`.
pub fn init(level: tracing::Level, json: bool) {
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level);
    if json {
        fmt.json().with_current_span(false).init();
    } else {
        // Colour only at a terminal, never into journald or files.
        fmt.with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .fmt_fields(escaped_fields())
            .init();
    }
}

/// The text formatter's fields: `message` first as it is, then `name=value`,
/// each with control characters escaped.
pub fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    debug_fn(
        |w: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn fmt::Debug| {
            if field.name() != "message" {
                write!(w, "{}=", field.name())?;
            }
            write_escaped(w, &format!("{value:?}"))
        },
    )
    .delimited(" ")
}

/// Writes `text` with every control character (C0, DEL, C1) and the Unicode
/// line and paragraph separators as an escape.
pub fn write_escaped(w: &mut impl Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                write!(w, "\\u{{{:x}}}", u32::from(c))?;
            }
            c => w.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text_log(emit: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        tracing::subscriber::with_default(sub, emit);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_newline_in_a_value_or_message_stays_on_one_line() {
        let user = "mallory\n2026-12-07T00:00:00Z  INFO login: session created user=admin";
        let why = "bye\r\nforged";
        let log = text_log(|| {
            tracing::warn!(user = %user, reason = why, "login refused {}", "x\ny");
            tracing::info!(target: "audit", event = "disconnect", user = ?user, "disconnect");
        });
        assert_eq!(log.lines().count(), 2, "{log}");
        assert!(log.contains("user=mallory\\n2026-12-07T00:00:00Z"), "{log}");
        assert!(log.contains("reason=\"bye\\r\\nforged\""), "{log}");
        assert!(log.contains("login refused x\\ny"), "{log}");
        assert!(
            !log.lines().any(|l| l.starts_with("2026-12-07T00:00:00Z")),
            "{log}"
        );
    }

    #[test]
    fn control_characters_become_escapes() {
        let mut s = String::new();
        write_escaped(&mut s, "a\u{1b}[31mb\u{0}c\u{85}d\u{2028}e\tf é").unwrap();
        assert_eq!(s, "a\\u{1b}[31mb\\u{0}c\\u{85}d\\u{2028}e\\tf é");
    }
}
