//! The hand-off of a connection to its home shard: shards (and the control
//! thread) post to the home shard's mailbox and wake it when told to; the
//! home shard sleeps on its wake-up, drains, and closes the box when it
//! stops. Every message must reach exactly one place, a wake-up must never
//! be lost, and no more than one may ever be pending.

use std::collections::VecDeque;

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use loom_tests::LoomLock;
use shards::mailbox::{Mailbox, Queue, Refused, Sent};

/// A connection in flight: in the server it owns a socket and TLS state.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Conn(u8);

type Inbox = Mailbox<Conn, LoomLock<Queue<Conn>>>;

/// The shard's wake-up (a byte on a socket pair in the server): wakes
/// left pending are counted, to check that at most one ever is.
#[derive(Default)]
struct Doorbell {
    pending: Mutex<u32>,
    rung: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        let mut p = self.pending.lock().unwrap();
        *p += 1;
        assert!(
            *p <= 1,
            "a second wake-up pending: a burst was not coalesced"
        );
        self.rung.notify_one();
    }

    fn wait(&self) {
        let mut p = self.pending.lock().unwrap();
        while *p == 0 {
            p = self.rung.wait(p).unwrap();
        }
        *p -= 1;
    }
}

/// What a sending shard does in `Conn::move_to`.
fn hand_off(inbox: &Inbox, bell: &Doorbell, conn: Conn) -> Result<(), Refused<Conn>> {
    if inbox.send(conn)? == Sent::Wake {
        bell.ring();
    }
    Ok(())
}

/// What the home shard does in `inbox::serve`, until `n` connections came.
fn adopt(inbox: &Inbox, bell: &Doorbell, n: usize) -> Vec<Conn> {
    let mut adopted = Vec::new();
    let mut batch = VecDeque::new();
    while adopted.len() < n {
        bell.wait();
        inbox.drain(&mut batch);
        adopted.extend(batch.drain(..));
    }
    adopted
}

/// Two shards hand a connection each to a third that is asleep: it wakes
/// and adopts both, each once. A lost wake-up would leave it asleep with
/// a message waiting, which loom reports as a deadlock.
#[test]
fn hand_offs_from_two_shards_are_adopted_once() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::new(8));
        let bell = Arc::new(Doorbell::default());
        let senders: Vec<_> = (0..2)
            .map(|i| {
                let (inbox, bell) = (inbox.clone(), bell.clone());
                thread::spawn(move || hand_off(&inbox, &bell, Conn(i)).is_ok())
            })
            .collect();
        let mut adopted = adopt(&inbox, &bell, 2);
        assert!(senders.into_iter().all(|h| h.join().unwrap()));
        adopted.sort();
        assert_eq!(adopted, [Conn(0), Conn(1)]);
        assert!(inbox.is_empty());
    });
}

/// A shard keeps handing off while the home shard drains: later messages
/// wake it again, or ride an earlier wake-up, and none waits forever.
#[test]
fn a_burst_during_a_drain_is_not_stranded() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::new(8));
        let bell = Arc::new(Doorbell::default());
        let (i2, b2) = (inbox.clone(), bell.clone());
        let sender = thread::spawn(move || {
            for n in 0..3 {
                hand_off(&i2, &b2, Conn(n)).unwrap();
            }
        });
        let adopted = adopt(&inbox, &bell, 3);
        sender.join().unwrap();
        // One shard's hand-offs are adopted in the order it sent them.
        assert_eq!(adopted, [Conn(0), Conn(1), Conn(2)]);
    });
}

/// The home shard stops while a connection is being handed to it: the
/// connection is either given back to the sender (who refuses the client)
/// or handed back by `close` (the stopping shard refuses it) — one of the
/// two, never both, never neither.
#[test]
fn a_stopping_shard_gives_every_connection_back_once() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::new(8));
        let bell = Arc::new(Doorbell::default());
        let (i2, b2) = (inbox.clone(), bell.clone());
        let sender = thread::spawn(move || match hand_off(&i2, &b2, Conn(7)) {
            Ok(()) => None,
            Err(Refused::Closed(c)) => Some(c),
            Err(Refused::Full(_)) => panic!("an empty box refused a message as full"),
        });
        let left = inbox.close();
        let returned = sender.join().unwrap();
        let mut seen: Vec<Conn> = left.into_iter().chain(returned).collect();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.pop(), Some(Conn(7)));
        assert!(matches!(inbox.send(Conn(8)), Err(Refused::Closed(Conn(8)))));
    });
}

/// Two shards race for the last place in a full box: exactly one gets
/// in, the other has its connection back to refuse.
#[test]
fn capacity_holds_under_racing_senders() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::new(1));
        let senders: Vec<_> = (0..2)
            .map(|i| {
                let inbox = inbox.clone();
                thread::spawn(move || inbox.send(Conn(i)))
            })
            .collect();
        let results: Vec<_> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        let full = results
            .iter()
            .filter(|r| matches!(r, Err(Refused::Full(_))))
            .count();
        assert_eq!((full, inbox.len()), (1, 1));
    });
}
