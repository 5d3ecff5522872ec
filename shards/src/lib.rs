//! The sharded session store and what names a shard.
//!
//! Each shard owns a [`SessionStore`]; a [`Cookie`] names the session's home
//! shard so any shard can route a reconnect without asking the others.
//! What crosses shards goes through each shard's [`Mailbox`]. The
//! cross-thread pieces ([`GlobalLimit`], [`PerUser`], [`Mailbox`]) are
//! generic over their atomic or lock so the loom models in `loom-tests/`
//! check the same code that runs.
#![forbid(unsafe_code)]

pub mod appid;
pub mod cookie;
pub mod limit;
pub mod mailbox;
pub mod peruser;
pub mod store;
pub mod sync;

pub use appid::AppId;
pub use cookie::{Cookie, CookieError};
pub use limit::{Counter, GlobalLimit};
pub use mailbox::Mailbox;
pub use peruser::{PerKey, PerUser};
pub use store::{SessionStore, UserSession};

/// Index of a shard: the executor, its TUN queue and its slice of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
