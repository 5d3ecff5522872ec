//! Exact global limits shared by all shards (e.g. `max_clients`).
//!
//! A compare-and-swap loop, not fetch_add-then-check, so concurrent logins on
//! different shards can never overshoot the limit even for an instant.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The atomic a [`GlobalLimit`] counts with; loom models plug in their own.
pub trait Counter: Default {
    fn load(&self) -> usize;
    fn compare_exchange(&self, current: usize, new: usize) -> Result<usize, usize>;
    fn fetch_sub(&self, n: usize) -> usize;
}

impl Counter for AtomicUsize {
    fn load(&self) -> usize {
        Self::load(self, Ordering::Acquire)
    }
    fn compare_exchange(&self, current: usize, new: usize) -> Result<usize, usize> {
        Self::compare_exchange_weak(self, current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    fn fetch_sub(&self, n: usize) -> usize {
        Self::fetch_sub(self, n, Ordering::AcqRel)
    }
}

/// A counter with a ceiling; `max == 0` means unlimited.
#[derive(Debug, Default)]
pub struct GlobalLimit<C: Counter = AtomicUsize> {
    max: usize,
    count: C,
}

impl<C: Counter> GlobalLimit<C> {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            count: C::default(),
        }
    }

    /// Takes one slot; false if the limit is reached.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_up_to(self.max)
    }

    /// Takes one slot under `max` (0: no limit), for a limit that a reload
    /// may change; slots taken stay taken.
    pub fn try_acquire_up_to(&self, max: usize) -> bool {
        let mut cur = self.count.load();
        loop {
            if max != 0 && cur >= max {
                return false;
            }
            match self.count.compare_exchange(cur, cur + 1) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back a slot taken by [`Self::try_acquire`].
    pub fn release(&self) {
        let before = self.count.fetch_sub(1);
        debug_assert!(before > 0, "GlobalLimit released more than acquired");
    }

    pub fn current(&self) -> usize {
        self.count.load()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ceiling_holds_under_threads() {
        let limit = Arc::new(GlobalLimit::<AtomicUsize>::new(10));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = limit.clone();
                std::thread::spawn(move || (0..100).filter(|_| l.try_acquire()).count())
            })
            .collect();
        let won: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(won, 10);
        assert_eq!(limit.current(), 10);
        for _ in 0..10 {
            limit.release();
        }
        assert_eq!(limit.current(), 0);
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = GlobalLimit::<AtomicUsize>::new(0);
        assert!((0..1000).all(|_| limit.try_acquire()));
    }
}
