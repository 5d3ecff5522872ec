//! `max_same_clients` must hold exactly when one user logs in on two shards
//! at once, and a logout racing a login must leave the count right.

use loom::sync::Arc;
use loom::thread;
use loom_tests::LoomLock;
use shards::peruser::{Counts, PerUser};

type LoomTable = LoomLock<Counts>;

/// Two shards log in the same user with `max_same_clients = 1`: one wins.
#[test]
fn second_device_loses_the_race() {
    loom::model(|| {
        let p = Arc::new(PerUser::<LoomTable>::new());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || p.try_acquire("alice", 1).is_ok())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(p.count("alice"), 1);
    });
}

/// The first device's session ends on one shard while a second device
/// logs in on another: the login may win or lose, but the count ends
/// equal to the sessions alive and never exceeds the limit.
#[test]
fn logout_racing_a_login_keeps_the_count_exact() {
    loom::model(|| {
        let p = Arc::new(PerUser::<LoomTable>::new());
        assert!(p.try_acquire("bob", 1).is_ok());
        let p1 = p.clone();
        let logout = thread::spawn(move || p1.release("bob"));
        let p2 = p.clone();
        let login = thread::spawn(move || {
            let won = p2.try_acquire("bob", 1).is_ok();
            assert!(p2.count("bob") <= 1);
            won
        });
        logout.join().unwrap();
        let won = login.join().unwrap();
        assert_eq!(p.count("bob"), u32::from(won));
        assert_eq!(p.users(), usize::from(won));
    });
}

/// Different users never limit each other.
#[test]
fn users_are_counted_apart() {
    loom::model(|| {
        let p = Arc::new(PerUser::<LoomTable>::new());
        let pa = p.clone();
        let a = thread::spawn(move || pa.try_acquire("alice", 1).is_ok());
        let pb = p.clone();
        let b = thread::spawn(move || pb.try_acquire("bob", 1).is_ok());
        assert!(a.join().unwrap() && b.join().unwrap());
        assert_eq!(p.users(), 2);
    });
}
