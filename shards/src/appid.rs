//! The DTLS App-ID (PSK mode) or Session-ID (legacy mode): 32 bytes that
//! the client puts in its ClientHello's session_id (docs/protocol.md, "DTLS: finding the session").
//! The first two name the home shard, so whichever shard's UDP socket the
//! hello lands on can route it without asking the others.

use crate::ShardId;

pub const APP_ID_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppId([u8; APP_ID_LEN]);

impl AppId {
    pub fn new(home: ShardId, random: [u8; APP_ID_LEN - 2]) -> Self {
        let mut b = [0u8; APP_ID_LEN];
        b[..2].copy_from_slice(&home.0.to_be_bytes());
        b[2..].copy_from_slice(&random);
        Self(b)
    }

    /// From a ClientHello's session_id; `None` unless it is 32 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Self(b.try_into().ok()?))
    }

    /// The only routing rule for DTLS: the shard that owns the session.
    pub fn home_shard(&self) -> ShardId {
        ShardId(u16::from_be_bytes([self.0[0], self.0[1]]))
    }

    pub fn as_bytes(&self) -> &[u8; APP_ID_LEN] {
        &self.0
    }
}

/// Lower-case hex, as sent in `X-DTLS-App-ID` / `X-DTLS-Session-ID`.
impl std::fmt::Display for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

// Logs show the shard only: the rest identifies a live session.
impl std::fmt::Debug for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppId(shard {}, ..)", self.home_shard())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_its_home_shard_and_round_trips() {
        for shard in [0u16, 1, 7, 300, u16::MAX] {
            let id = AppId::new(ShardId(shard), [0xa5; APP_ID_LEN - 2]);
            assert_eq!(id.home_shard(), ShardId(shard));
            let again = AppId::from_bytes(id.as_bytes()).unwrap();
            assert_eq!(again, id);
            assert_eq!(id.to_string().len(), 2 * APP_ID_LEN);
        }
        assert!(AppId::from_bytes(&[0; 31]).is_none());
        assert!(AppId::from_bytes(&[0; 33]).is_none());
        assert!(!format!("{:?}", AppId::new(ShardId(1), [0x42; 30])).contains("42"));
    }
}
