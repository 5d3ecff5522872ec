//! Counts per key across all shards: sessions per user for
//! `max_same_clients`, logins in progress per client address.
//!
//! Logins of one user (or from one address) may land on different shards
//! at the same instant, so the check and the increment happen under one
//! lock. That lock is taken when a login or session starts and ends, never
//! per packet.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::sync::Lock;

/// Sessions by user name; users with none are absent.
pub type Counts = HashMap<String, u32>;

/// Counts by key; keys at zero are absent, so the map never grows with
/// keys long gone.
#[derive(Debug, Default)]
pub struct PerKey<K: Hash + Eq, L: Lock<HashMap<K, u32>> = Mutex<HashMap<K, u32>>> {
    table: L,
    _key: std::marker::PhantomData<K>,
}

/// Sessions per user.
pub type PerUser<L = Mutex<Counts>> = PerKey<String, L>;

impl<K: Hash + Eq, L: Lock<HashMap<K, u32>>> PerKey<K, L> {
    pub fn new() -> Self {
        Self {
            table: L::default(),
            _key: std::marker::PhantomData,
        }
    }

    /// Counts one more for `key` unless it already has `max` (`max == 0`:
    /// no limit). Returns the count it had before, or `Err(count)` when
    /// refused.
    pub fn try_acquire<Q>(&self, key: &Q, max: u32) -> Result<u32, u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.table.with(|map| {
            let have = map.get(key).copied().unwrap_or(0);
            if max != 0 && have >= max {
                return Err(have);
            }
            map.insert(key.to_owned(), have + 1);
            Ok(have)
        })
    }

    /// One count of `key` ended.
    pub fn release<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.with(|map| match map.get_mut(key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                map.remove(key);
            }
            None => debug_assert!(false, "PerKey released more than acquired"),
        });
    }

    pub fn count<Q>(&self, key: &Q) -> u32
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.with(|map| map.get(key).copied().unwrap_or(0))
    }

    /// Keys with a count above zero.
    pub fn keys(&self) -> usize {
        self.table.with(|map| map.len())
    }

    /// The sum of every key's count.
    pub fn total(&self) -> u64 {
        self.table
            .with(|map| map.values().map(|&n| u64::from(n)).sum())
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
        assert_eq!(p.keys(), 1);
        p.release("carol");
        assert_eq!((p.keys(), p.count("carol")), (0, 0));
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
