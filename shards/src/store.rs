//! One shard's sessions, keyed by cookie, with cookie expiry.
//!
//! A session is either attached to a live tunnel or detached and waiting for a
//! reconnect until its cookie expires. Expiry deadlines sit in a min-heap, so
//! the sweep touches only what is due and the packet path never scans.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use crate::Cookie;

struct Entry<S> {
    session: S,
    /// When the cookie dies if nobody reconnects; `None` while attached.
    expires_at: Option<Instant>,
    /// Bumped on every detach so stale heap entries are recognised.
    generation: u64,
}

pub struct SessionStore<S> {
    sessions: HashMap<Cookie, Entry<S>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, Cookie)>>,
}

impl<S> Default for SessionStore<S> {
    fn default() -> Self {
        Self { sessions: HashMap::new(), deadlines: BinaryHeap::new() }
    }
}

impl<S> SessionStore<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an attached session. Returns the session back if the cookie exists.
    pub fn insert(&mut self, cookie: Cookie, session: S) -> Result<(), S> {
        if self.sessions.contains_key(&cookie) {
            return Err(session);
        }
        self.sessions.insert(cookie, Entry { session, expires_at: None, generation: 0 });
        Ok(())
    }

    pub fn get(&self, cookie: &Cookie) -> Option<&S> {
        self.sessions.get(cookie).map(|e| &e.session)
    }

    pub fn get_mut(&mut self, cookie: &Cookie) -> Option<&mut S> {
        self.sessions.get_mut(cookie).map(|e| &mut e.session)
    }

    pub fn remove(&mut self, cookie: &Cookie) -> Option<S> {
        self.sessions.remove(cookie).map(|e| e.session)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Cookie, &S)> {
        self.sessions.iter().map(|(c, e)| (c, &e.session))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Cookie, &mut S)> {
        self.sessions.iter_mut().map(|(c, e)| (c, &mut e.session))
    }

    /// The tunnel is gone; the cookie stays valid until `expires_at`.
    pub fn detach(&mut self, cookie: &Cookie, expires_at: Instant) -> bool {
        let Some(e) = self.sessions.get_mut(cookie) else { return false };
        e.generation += 1;
        e.expires_at = Some(expires_at);
        self.deadlines.push(Reverse((expires_at, e.generation, *cookie)));
        true
    }

    /// A reconnect picked the session up again: it no longer expires.
    pub fn attach(&mut self, cookie: &Cookie) -> bool {
        let Some(e) = self.sessions.get_mut(cookie) else { return false };
        e.generation += 1;
        e.expires_at = None;
        true
    }

    /// True if the session is waiting for a reconnect.
    pub fn is_detached(&self, cookie: &Cookie) -> bool {
        self.sessions.get(cookie).is_some_and(|e| e.expires_at.is_some())
    }

    /// Removes and returns every session whose cookie expired by `now`.
    pub fn sweep_expired(&mut self, now: Instant, mut on_expired: impl FnMut(Cookie, S)) {
        while let Some(Reverse((deadline, generation, cookie))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let due = self
                .sessions
                .get(&cookie)
                .is_some_and(|e| e.generation == generation && e.expires_at.is_some());
            if due {
                if let Some(e) = self.sessions.remove(&cookie) {
                    on_expired(cookie, e.session);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShardId;
    use std::time::Duration;

    fn cookie(n: u8) -> Cookie {
        Cookie::new(ShardId(0), [n; 16])
    }

    #[test]
    fn detached_session_expires_once_due() {
        let t0 = Instant::now();
        let mut s = SessionStore::new();
        s.insert(cookie(1), "alice").unwrap();
        s.insert(cookie(2), "bob").unwrap();
        assert!(s.insert(cookie(1), "again").is_err());
        s.detach(&cookie(1), t0 + Duration::from_secs(10));
        let mut gone = vec![];
        s.sweep_expired(t0 + Duration::from_secs(9), |_, v| gone.push(v));
        assert!(gone.is_empty());
        s.sweep_expired(t0 + Duration::from_secs(10), |_, v| gone.push(v));
        assert_eq!(gone, ["alice"]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn reattach_cancels_expiry() {
        let t0 = Instant::now();
        let mut s = SessionStore::new();
        s.insert(cookie(1), 1).unwrap();
        s.detach(&cookie(1), t0 + Duration::from_secs(1));
        assert!(s.is_detached(&cookie(1)));
        s.attach(&cookie(1));
        s.sweep_expired(t0 + Duration::from_secs(5), |_, _| panic!("expired an attached session"));
        // A second detach uses the new deadline, not the old one.
        s.detach(&cookie(1), t0 + Duration::from_secs(20));
        s.sweep_expired(t0 + Duration::from_secs(5), |_, _| panic!("stale deadline fired"));
        let mut n = 0;
        s.sweep_expired(t0 + Duration::from_secs(20), |_, _| n += 1);
        assert_eq!(n, 1);
    }
}
