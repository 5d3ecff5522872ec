//! The `webvpn` cookie: 128 random bits plus the home shard, as hex.
//!
//! Hex keeps the value free of `;`, spaces and control characters, which the
//! client would mangle (docs/protocol.md, "Login").

use crate::ShardId;

/// Random part of a cookie, in bytes (128 bits).
pub const COOKIE_RANDOM_LEN: usize = 16;
/// Length of the encoded cookie: 4 hex digits of shard, 32 of randomness.
pub const COOKIE_HEX_LEN: usize = 4 + 2 * COOKIE_RANDOM_LEN;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cookie {
    home: ShardId,
    random: [u8; COOKIE_RANDOM_LEN],
}

#[derive(Debug, PartialEq, Eq)]
pub enum CookieError {
    BadLength(usize),
    NotHex,
}

impl std::fmt::Display for CookieError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLength(n) => write!(f, "cookie has {n} characters, expected {COOKIE_HEX_LEN}"),
            Self::NotHex => f.write_str("cookie is not lower-case hex"),
        }
    }
}

impl std::error::Error for CookieError {}

impl Cookie {
    pub fn new(home: ShardId, random: [u8; COOKIE_RANDOM_LEN]) -> Self {
        Self { home, random }
    }

    /// The shard that owns the session: the only routing rule for cookies.
    pub fn home_shard(&self) -> ShardId {
        self.home
    }

    pub fn parse(text: &str) -> Result<Self, CookieError> {
        let b = text.as_bytes();
        if b.len() != COOKIE_HEX_LEN {
            return Err(CookieError::BadLength(b.len()));
        }
        let mut raw = [0u8; 2 + COOKIE_RANDOM_LEN];
        for (i, out) in raw.iter_mut().enumerate() {
            *out = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
        }
        let home = ShardId(u16::from_be_bytes([raw[0], raw[1]]));
        let mut random = [0u8; COOKIE_RANDOM_LEN];
        random.copy_from_slice(&raw[2..]);
        Ok(Self { home, random })
    }
}

fn nibble(c: u8) -> Result<u8, CookieError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(CookieError::NotHex),
    }
}

impl std::fmt::Display for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.home.0.to_be_bytes().iter().chain(self.random.iter()) {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

// Never print the secret part in logs.
impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cookie(shard {}, {:02x}{:02x}..)",
            self.home, self.random[0], self.random[1]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_home_shard() {
        for shard in [0u16, 1, 7, 300, u16::MAX] {
            let c = Cookie::new(ShardId(shard), [0xa5; COOKIE_RANDOM_LEN]);
            let text = c.to_string();
            assert_eq!(text.len(), COOKIE_HEX_LEN);
            let back = Cookie::parse(&text).unwrap();
            assert_eq!(back, c);
            assert_eq!(back.home_shard(), ShardId(shard));
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(Cookie::parse("abc"), Err(CookieError::BadLength(3)));
        let upper = "00010123456789ABCDEF0123456789abcdef";
        assert_eq!(Cookie::parse(upper), Err(CookieError::NotHex));
        let spaced = "0001 123456789abcdef0123456789abcdef";
        assert_eq!(Cookie::parse(spaced), Err(CookieError::NotHex));
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Cookie::new(ShardId(1), [0x11; COOKIE_RANDOM_LEN]);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&c.to_string()[4..]));
    }
}
