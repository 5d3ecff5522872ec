//! Sessions per user across all shards, for `max_same_clients`.
//!
//! Logins of one user may land on different shards at the same instant, so
//! the check and the increment happen under one lock. That lock is taken at
//! login and at session end only, never per packet.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::Lock;

/// Sessions by user name; users with none are absent.
pub type Counts = HashMap<String, u32>;

#[derive(Debug, Default)]
pub struct PerUser<L: Lock<Counts> = Mutex<Counts>> {
    table: L,
}

impl<L: Lock<Counts>> PerUser<L> {
    pub fn new() -> Self {
        Self {
            table: L::default(),
        }
    }

    /// Counts one more session of `user` unless it already has `max`
    /// (`max == 0`: no limit). Returns the sessions it had before, or
    /// `Err(count)` when refused.
    pub fn try_acquire(&self, user: &str, max: u32) -> Result<u32, u32> {
        self.table.with(|map| {
            let have = map.get(user).copied().unwrap_or(0);
            if max != 0 && have >= max {
                return Err(have);
            }
            map.insert(user.to_owned(), have + 1);
            Ok(have)
        })
    }

    /// One session of `user` ended. Users with no session leave the map,
    /// so it never grows with users long gone.
    pub fn release(&self, user: &str) {
        self.table.with(|map| match map.get_mut(user) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                map.remove(user);
            }
            None => debug_assert!(false, "PerUser released {user} more than acquired"),
        });
    }

    pub fn count(&self, user: &str) -> u32 {
        self.table.with(|map| map.get(user).copied().unwrap_or(0))
    }

    /// Users with at least one session.
    pub fn users(&self) -> usize {
        self.table.with(|map| map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn limit_is_per_user_and_zero_means_none() {
        let p: PerUser = PerUser::new();
        assert_eq!(p.try_acquire("alice", 2), Ok(0));
        assert_eq!(p.try_acquire("alice", 2), Ok(1));
        assert_eq!(p.try_acquire("alice", 2), Err(2));
        assert_eq!(p.try_acquire("bob", 2), Ok(0));
        assert_eq!(p.try_acquire("bob", 0), Ok(1));
        assert_eq!(p.try_acquire("bob", 0), Ok(2));
        p.release("alice");
        assert_eq!(p.try_acquire("alice", 2), Ok(1));
    }

    #[test]
    fn users_leave_the_map_at_zero() {
        let p: PerUser = PerUser::new();
        p.try_acquire("carol", 1).unwrap();
        assert_eq!(p.users(), 1);
        p.release("carol");
        assert_eq!((p.users(), p.count("carol")), (0, 0));
    }

    #[test]
    fn ceiling_holds_under_threads() {
        let p: Arc<PerUser> = Arc::new(PerUser::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..50).filter(|_| p.try_acquire("dave", 3).is_ok()).count()
                })
            })
            .collect();
        let won: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(won, 3);
        assert_eq!(p.count("dave"), 3);
    }
}
