//! `max_clients` must hold exactly when shards log users in and out at once.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shards::{Counter, GlobalLimit};

/// loom's atomic behind the trait the production limit counts with.
#[derive(Default)]
struct LoomCounter(AtomicUsize);

impl Counter for LoomCounter {
    fn load(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
    fn compare_exchange(&self, current: usize, new: usize) -> Result<usize, usize> {
        self.0
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    fn fetch_sub(&self, n: usize) -> usize {
        self.0.fetch_sub(n, Ordering::AcqRel)
    }
}

/// Two shards race for the last slot: exactly one wins.
#[test]
fn last_slot_goes_to_exactly_one_shard() {
    loom::model(|| {
        let limit = Arc::new(GlobalLimit::<LoomCounter>::new(1));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let l = limit.clone();
                thread::spawn(move || l.try_acquire())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(limit.current(), 1);
    });
}

/// A logout on one shard frees the slot for a login on the other; the count
/// never exceeds the ceiling and ends consistent.
#[test]
fn logout_and_login_interleave_without_overshoot() {
    loom::model(|| {
        let limit = Arc::new(GlobalLimit::<LoomCounter>::new(1));
        assert!(limit.try_acquire());
        let l1 = limit.clone();
        let logout = thread::spawn(move || l1.release());
        let l2 = limit.clone();
        let login = thread::spawn(move || {
            let won = l2.try_acquire();
            assert!(l2.current() <= 1);
            won
        });
        logout.join().unwrap();
        let won = login.join().unwrap();
        assert_eq!(limit.current(), usize::from(won));
    });
}
