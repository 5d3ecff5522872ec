//! Human-readable sizes in configuration files: `1048576`, `"200K"`,
//! `"1.5M"`, `"3G"` (1024-based, as ocserv's users write them).

/// Parses a byte count: digits with an optional fraction and an optional
/// K, M, G or T suffix (case-insensitive, an optional trailing `B` or
/// `iB`). The result is rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, shift) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 10),
        Some('M') => (&body[..body.len() - 1], 20),
        Some('G') => (&body[..body.len() - 1], 30),
        Some('T') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let number = number.trim();
    let bad =
        || format!("expected a size like 1048576, \"200K\", \"1.5M\" or \"3G\", got {text:?}");
    if number.is_empty()
        || !number.chars().all(|c| c.is_ascii_digit() || c == '.')
        || number.matches('.').count() > 1
    {
        return Err(bad());
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut bytes = whole
        .checked_shl(shift)
        .filter(|b| b >> shift == whole)
        .ok_or_else(bad)?;
    if !frac.is_empty() {
        // Exact for the few digits people write: frac / 10^len * 2^shift.
        let digits = frac.len().min(9);
        let f: u64 = frac[..digits].parse().map_err(|_| bad())?;
        let add = (u128::from(f) << shift) / 10u128.pow(digits as u32);
        bytes = bytes
            .checked_add(u64::try_from(add).map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    Ok(bytes)
}

/// A size as a config file writes it: a plain number of bytes or a string
/// such as `"1.5M"`. Checked by [`SizeValue::bytes`] so the error can name
/// the key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl Default for SizeValue {
    fn default() -> Self {
        Self::Bytes(0)
    }
}

impl SizeValue {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(t) => parse_size(t),
        }
    }
}

/// A byte count the way people read it: `1.5M`, `200K`, `512`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        if bytes >= 1u64 << shift {
            let v = bytes as f64 / (1u64 << shift) as f64;
            let text = format!("{v:.1}");
            return format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text));
        }
    }
    bytes.to_string()
}

/// UTC `(year, month, day, hour, minute, second)` of seconds since 1970
/// (Howard Hinnant's days-to-civil algorithm).
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month as u32,
        day as u32,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_reads_back() {
        for (bytes, text) in [
            (0, "0"),
            (512, "512"),
            (204_800, "200K"),
            (1_572_864, "1.5M"),
            (3 << 30, "3G"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text).unwrap(), bytes);
        }
    }

    #[test]
    fn config_values_take_numbers_or_text() {
        assert_eq!(SizeValue::Bytes(100).bytes(), Ok(100));
        assert_eq!(SizeValue::Text("100K".into()).bytes(), Ok(102_400));
        assert!(SizeValue::Text("lots".into()).bytes().is_err());
    }

    #[test]
    fn plain_and_suffixed_sizes() {
        for (text, want) in [
            ("0", 0),
            ("1048576", 1_048_576),
            ("200K", 204_800),
            ("200k", 204_800),
            ("1.5M", 1_572_864),
            ("3G", 3 << 30),
            ("2T", 2 << 40),
            (" 100KB ", 102_400),
            ("1MiB", 1 << 20),
            ("0.5K", 512),
            (".5K", 512),
            ("1.", 1),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for text in [
            "",
            "K",
            "-1",
            "1.2.3M",
            "1X",
            "abc",
            "1 000",
            "99999999999999999999",
            "16777216T",
            ".",
        ] {
            assert!(parse_size(text).is_err(), "{text:?} accepted");
        }
        assert!(parse_size("1X").unwrap_err().contains("\"1X\""));
    }
}
