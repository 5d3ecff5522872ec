//! One shard's sessions, keyed by cookie, with cookie expiry.
//!
//! A session is either attached to a live tunnel or detached and waiting for a
//! reconnect until its cookie expires. Expiry deadlines sit in a min-heap, so
//! the sweep touches only what is due and the packet path never scans. An
//! index by user name makes a user's sessions (admin commands, per-user
//! views) cost their number, not the shard's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use crate::Cookie;

struct Entry<S> {
    session: S,
    /// When the cookie dies if nobody reconnects; `None` while attached.
    expires_at: Option<Instant>,
    /// Bumped on every detach so stale heap entries are recognised.
    generation: u64,
}

/// What the store needs to know about a session: whose it is.
pub trait UserSession {
    fn user(&self) -> &str;
}

/// One shard's sessions (not `Send`: each shard owns its own).
pub struct SessionStore<S> {
    sessions: HashMap<Cookie, Entry<S>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, Cookie)>>,
    by_user: HashMap<Rc<str>, Vec<Cookie>>,
}

impl<S> Default for SessionStore<S> {
    fn default() -> Self {
        Self {
            sessions: HashMap::new(),
            deadlines: BinaryHeap::new(),
            by_user: HashMap::new(),
        }
    }
}

impl<S: UserSession> SessionStore<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an attached session. Returns the session back if the cookie exists.
    pub fn insert(&mut self, cookie: Cookie, session: S) -> Result<(), S> {
        if self.sessions.contains_key(&cookie) {
            return Err(session);
        }
        self.get_or_insert_with(cookie, || session);
        Ok(())
    }

    /// The session of `cookie`, created by `make` if there is none (the
    /// same cookie twice yields one session).
    pub fn get_or_insert_with(&mut self, cookie: Cookie, make: impl FnOnce() -> S) -> &mut S {
        let Self {
            sessions, by_user, ..
        } = self;
        let e = sessions.entry(cookie).or_insert_with(|| {
            let session = make();
            by_user
                .entry(Rc::from(session.user()))
                .or_default()
                .push(cookie);
            Entry {
                session,
                expires_at: None,
                generation: 0,
            }
        });
        &mut e.session
    }

    /// The cookies of `user`'s sessions on this shard.
    pub fn cookies_of(&self, user: &str) -> &[Cookie] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }

    /// `user`'s sessions on this shard.
    pub fn list_by_user<'a>(
        &'a self,
        user: &str,
    ) -> impl Iterator<Item = (&'a Cookie, &'a S)> + 'a {
        self.cookies_of(user)
            .iter()
            .filter_map(|c| self.sessions.get(c).map(|e| (c, &e.session)))
    }

    pub fn count_by_user(&self, user: &str) -> usize {
        self.cookies_of(user).len()
    }

    /// Removes and returns every session of `user` on this shard.
    pub fn remove_by_user(&mut self, user: &str) -> Vec<(Cookie, S)> {
        let cookies = self.by_user.remove(user).unwrap_or_default();
        cookies
            .into_iter()
            .filter_map(|c| self.sessions.remove(&c).map(|e| (c, e.session)))
            .collect()
    }

    fn unindex(&mut self, cookie: &Cookie, user: &str) {
        if let Some(list) = self.by_user.get_mut(user) {
            list.retain(|c| c != cookie);
            if list.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    pub fn get(&self, cookie: &Cookie) -> Option<&S> {
        self.sessions.get(cookie).map(|e| &e.session)
    }

    pub fn get_mut(&mut self, cookie: &Cookie) -> Option<&mut S> {
        self.sessions.get_mut(cookie).map(|e| &mut e.session)
    }

    pub fn remove(&mut self, cookie: &Cookie) -> Option<S> {
        let e = self.sessions.remove(cookie)?;
        self.unindex(cookie, e.session.user());
        Some(e.session)
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

    /// A session's user must not change while it is stored: the index is
    /// by user.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Cookie, &mut S)> {
        self.sessions.iter_mut().map(|(c, e)| (c, &mut e.session))
    }

    /// The tunnel is gone; the cookie stays valid until `expires_at`.
    pub fn detach(&mut self, cookie: &Cookie, expires_at: Instant) -> bool {
        let Some(e) = self.sessions.get_mut(cookie) else {
            return false;
        };
        e.generation += 1;
        e.expires_at = Some(expires_at);
        self.deadlines
            .push(Reverse((expires_at, e.generation, *cookie)));
        true
    }

    /// A reconnect picked the session up again: it no longer expires.
    pub fn attach(&mut self, cookie: &Cookie) -> bool {
        let Some(e) = self.sessions.get_mut(cookie) else {
            return false;
        };
        e.generation += 1;
        e.expires_at = None;
        true
    }

    /// When a detached session's cookie dies; `None` while it is attached.
    pub fn expires_at(&self, cookie: &Cookie) -> Option<Instant> {
        self.sessions.get(cookie).and_then(|e| e.expires_at)
    }

    /// True if the session is waiting for a reconnect.
    pub fn is_detached(&self, cookie: &Cookie) -> bool {
        self.sessions
            .get(cookie)
            .is_some_and(|e| e.expires_at.is_some())
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
                if let Some(s) = self.remove(&cookie) {
                    on_expired(cookie, s);
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

    impl UserSession for &str {
        fn user(&self) -> &str {
            self
        }
    }

    #[derive(Debug, PartialEq)]
    struct S(&'static str, u32);

    impl UserSession for S {
        fn user(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn sessions_by_user_follow_inserts_removals_and_expiry() {
        let t0 = Instant::now();
        let mut s = SessionStore::new();
        s.insert(cookie(1), S("alice", 1)).unwrap();
        s.insert(cookie(2), S("bob", 2)).unwrap();
        s.insert(cookie(3), S("alice", 3)).unwrap();
        assert_eq!(s.count_by_user("alice"), 2);
        let mut ids: Vec<u32> = s.list_by_user("alice").map(|(_, v)| v.1).collect();
        ids.sort();
        assert_eq!(ids, [1, 3]);
        s.remove(&cookie(1));
        assert_eq!(s.count_by_user("alice"), 1);
        s.detach(&cookie(3), t0);
        s.sweep_expired(t0, |_, _| {});
        assert_eq!(s.count_by_user("alice"), 0);
        assert_eq!(s.cookies_of("alice"), &[] as &[Cookie]);
        s.insert(cookie(4), S("bob", 4)).unwrap();
        let gone = s.remove_by_user("bob");
        assert_eq!(gone.len(), 2);
        assert!(s.is_empty() && s.count_by_user("bob") == 0);
        assert_eq!(s.count_by_user("nobody"), 0);
    }

    #[test]
    fn get_or_insert_is_idempotent() {
        let mut s = SessionStore::new();
        s.get_or_insert_with(cookie(7), || S("carol", 1)).1 += 10;
        let again = s.get_or_insert_with(cookie(7), || S("carol", 99));
        assert_eq!(*again, S("carol", 11));
        assert_eq!((s.len(), s.count_by_user("carol")), (1, 1));
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
        s.insert(cookie(1), "dave").unwrap();
        s.detach(&cookie(1), t0 + Duration::from_secs(1));
        assert!(s.is_detached(&cookie(1)));
        s.attach(&cookie(1));
        s.sweep_expired(t0 + Duration::from_secs(5), |_, _| {
            panic!("expired an attached session")
        });
        // A second detach uses the new deadline, not the old one.
        s.detach(&cookie(1), t0 + Duration::from_secs(20));
        s.sweep_expired(t0 + Duration::from_secs(5), |_, _| {
            panic!("stale deadline fired")
        });
        let mut n = 0;
        s.sweep_expired(t0 + Duration::from_secs(20), |_, _| n += 1);
        assert_eq!(n, 1);
    }
}
