//! One-time passwords as ocserv's `plain[otp=FILE]` checks them: HOTP
//! (RFC 4226) and TOTP (RFC 6238) against an oath users file, the format
//! `oathtool` and pam_oath use: one line per token,
//!
//! ```text
//! HOTP/T30  alice  -  3132333435363738393031323334353637383930  [moving-factor [last-otp [last-time]]]
//! ```
//!
//! Pure: the caller reads the file, passes the time, writes the line back.

/// How a token counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Event-based (`HOTP`, `HOTP/E`): a counter per code.
    Hotp,
    /// Time-based (`HOTP/T30`): a code per step of this many seconds.
    Totp { step: u64 },
}

/// One line of the users file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The type field as written (kept when the line is written back).
    pub type_field: String,
    pub kind: Kind,
    pub digits: u32,
    pub user: String,
    /// The PIN field; ocserv does not check it (nor does this server).
    pub pin: String,
    pub key: Vec<u8>,
    /// HOTP: the counter of the last code taken (or where to start).
    pub counter: u64,
    pub last_otp: Option<String>,
    /// Unix seconds of the last successful login.
    pub last_time: Option<i64>,
}

/// HOTP value of `key` at `counter` (RFC 4226 §5.3), `digits` long.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    use aws_lc_rs::hmac;
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mac = hmac::sign(&k, &counter.to_be_bytes());
    let h = mac.as_ref();
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", bin % modulus, width = digits as usize)
}

/// The type field: `HOTP`, `HOTP/E`, `HOTP/T30`, each with an optional
/// `/6`, `/7` or `/8` digits.
fn parse_type(t: &str) -> Option<(Kind, u32)> {
    let mut parts = t.split('/');
    if parts.next()? != "HOTP" {
        return None;
    }
    let mut kind = Kind::Hotp;
    let mut digits = 6;
    for p in parts {
        match p {
            "E" => kind = Kind::Hotp,
            _ if p.starts_with('T') => {
                let step: u64 = p[1..].parse().ok().filter(|s| *s > 0)?;
                kind = Kind::Totp { step };
            }
            "6" | "7" | "8" => digits = p.parse().ok()?,
            _ => return None,
        }
    }
    Some((kind, digits))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a line could not be read (1-based line number, reason).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Reads one line; `Ok(None)` for blank lines and comments. `parse_time`
/// turns the `YYYY-MM-DDTHH:MM:SSL` local time into Unix seconds.
pub fn parse_line(
    text: &str,
    line: usize,
    parse_time: impl Fn(&str) -> Option<i64>,
) -> Result<Option<Token>, LineError> {
    let err = |reason: &str| LineError {
        line,
        reason: reason.to_owned(),
    };
    let t = text.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let f: Vec<&str> = t.split_whitespace().collect();
    if f.len() < 4 {
        return Err(err("expected TYPE USER PIN KEY"));
    }
    let (kind, digits) = parse_type(f[0]).ok_or_else(|| err("unknown token type"))?;
    let key = unhex(f[3]).ok_or_else(|| err("the key is not hex"))?;
    let counter = match f.get(4) {
        Some(c) => c
            .parse()
            .map_err(|_| err("the moving factor is not a number"))?,
        None => 0,
    };
    let last_time = match f.get(6) {
        Some(ts) => Some(parse_time(ts).ok_or_else(|| err("bad time stamp"))?),
        None => None,
    };
    Ok(Some(Token {
        type_field: f[0].to_owned(),
        kind,
        digits,
        user: f[1].to_owned(),
        pin: f[2].to_owned(),
        key,
        counter,
        last_otp: f.get(5).map(|s| (*s).to_owned()),
        last_time,
    }))
}

/// The line after a successful login, as liboath writes it; `time` is the
/// login's local time as `YYYY-MM-DDTHH:MM:SSL`.
pub fn format_line(t: &Token, hex_key: &str, time: &str) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        t.type_field,
        t.user,
        t.pin,
        hex_key,
        t.counter,
        t.last_otp.as_deref().unwrap_or("-"),
        time
    )
}

/// Why a code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("wrong one-time password")]
    Wrong,
    #[error("a one-time password used before")]
    Replayed,
}

/// How far a code may be from the expected one: HOTP counters ahead (as
/// ocserv's 20), TOTP steps either side (RFC 6238 §5.2's one).
pub const HOTP_WINDOW: u64 = 20;
pub const TOTP_WINDOW: i64 = 1;

/// Checks `otp` against `t` at Unix time `now`; on success `t` is what
/// the file must say from now on.
pub fn verify(t: &mut Token, otp: &str, now: i64) -> Result<(), Refused> {
    let otp = otp.trim();
    if otp.len() != t.digits as usize || !otp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Wrong);
    }
    if t.last_otp.as_deref() == Some(otp) {
        return Err(Refused::Replayed);
    }
    match t.kind {
        Kind::Hotp => {
            let found = (t.counter..=t.counter.saturating_add(HOTP_WINDOW))
                .find(|c| constant_eq(&hotp(&t.key, *c, t.digits), otp))
                .ok_or(Refused::Wrong)?;
            t.counter = found;
        }
        Kind::Totp { step } => {
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            let current = now.div_euclid(step);
            let found = (-TOTP_WINDOW..=TOTP_WINDOW)
                .map(|d| current + d)
                .filter(|s| *s >= 0)
                .find(|s| constant_eq(&hotp(&t.key, *s as u64, t.digits), otp))
                .ok_or(Refused::Wrong)?;
            // A code of a step not after the last login's is old.
            if t.last_time
                .is_some_and(|last| found <= last.div_euclid(step))
            {
                return Err(Refused::Replayed);
            }
        }
    }
    t.last_otp = Some(otp.to_owned());
    t.last_time = Some(now);
    Ok(())
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4226 appendix D and RFC 6238 appendix B (SHA-1).
    const KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_vectors() {
        let hotp_expected = ["755224", "287082", "359152", "969429", "338314"];
        for (c, want) in hotp_expected.iter().enumerate() {
            assert_eq!(hotp(KEY, c as u64, 6), *want);
        }
        assert_eq!(hotp(KEY, 59 / 30, 8), "94287082");
        assert_eq!(hotp(KEY, 1_111_111_109 / 30, 8), "07081804");
        assert_eq!(hotp(KEY, 20_000_000_000 / 30, 8), "65353130");
    }

    fn token(line: &str) -> Token {
        parse_line(line, 1, |_| Some(0)).unwrap().unwrap()
    }

    #[test]
    fn lines_as_oathtool_and_pam_oath_write_them() {
        let t = token("HOTP/T30\talice\t-\t3132333435363738393031323334353637383930");
        assert_eq!((t.kind, t.digits), (Kind::Totp { step: 30 }, 6));
        assert_eq!(t.key, KEY);
        let t = token(
            "HOTP/E/8 bob 1234 3132333435363738393031323334353637383930 7 123 2026-12-07T12:17:17L",
        );
        assert_eq!((t.kind, t.digits, t.counter), (Kind::Hotp, 8, 7));
        assert_eq!(t.last_otp.as_deref(), Some("123"));
        assert_eq!(parse_line("# comment", 1, |_| None).unwrap(), None);
        for bad in [
            "TOTP alice - 00",
            "HOTP alice - xyz",
            "HOTP alice -",
            "HOTP/T0 a - 00",
        ] {
            assert!(parse_line(bad, 3, |_| Some(0)).is_err(), "{bad}");
        }
        let mut t = token("HOTP bob - 3132333435363738393031323334353637383930");
        verify(&mut t, "287082", 0).unwrap();
        assert_eq!(
            format_line(&t, "3132", "2026-12-07T12:00:00L"),
            "HOTP\tbob\t-\t3132\t1\t287082\t2026-12-07T12:00:00L\n"
        );
    }

    #[test]
    fn hotp_moves_forward_and_refuses_reuse() {
        let mut t = token("HOTP bob - 3132333435363738393031323334353637383930");
        assert_eq!(verify(&mut t, "359152", 0), Ok(()));
        assert_eq!(t.counter, 2);
        assert_eq!(verify(&mut t, "359152", 0), Err(Refused::Replayed));
        assert_eq!(
            verify(&mut t, "287082", 0),
            Err(Refused::Wrong),
            "behind the counter"
        );
        assert_eq!(verify(&mut t, "969429", 0), Ok(()));
        assert_eq!(verify(&mut t, "12345", 0), Err(Refused::Wrong));
    }

    #[test]
    fn totp_window_and_replay() {
        // One second into a step, so `now + 5` is the same step.
        let now = 1_111_111_081;
        let step = now / 30;
        let mut t = token("HOTP/T30 alice - 3132333435363738393031323334353637383930");
        let code = |s: i64| hotp(KEY, s as u64, 6);
        assert_eq!(
            verify(&mut t.clone(), &code(step - 2), now),
            Err(Refused::Wrong)
        );
        assert_eq!(verify(&mut t.clone(), &code(step + 1), now), Ok(()));
        assert_eq!(verify(&mut t, &code(step), now), Ok(()));
        assert_eq!(verify(&mut t, &code(step), now + 5), Err(Refused::Replayed));
        // The previous step's code, still in the window, is older than the
        // one taken: refused too.
        assert_eq!(
            verify(&mut t, &code(step - 1), now + 5),
            Err(Refused::Replayed)
        );
        assert_eq!(verify(&mut t, &code(step + 1), now + 30), Ok(()));
    }
}
