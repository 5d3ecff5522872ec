//! A shard's inbox: how connections handed to their home shard, DTLS
//! ClientHellos and admin commands reach it from other threads.
//!
//! Senders push under a short lock; the shard drains everything at once.
//! Only the send that finds the box empty is told to wake the shard, so a
//! burst of hand-offs costs one wake-up, and the wake-up itself (a byte on
//! a socket, in the server) never has more than one pending. Every message
//! ends in exactly one place: drained by the shard, handed back by
//! [`Mailbox::close`], or returned to its sender — never lost, never twice.
//! The loom models in `loom-tests/tests/mailbox.rs` check these claims.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::sync::Lock;

/// What a [`Mailbox`] holds behind its lock.
#[derive(Debug)]
pub struct Queue<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            closed: false,
        }
    }
}

/// A message accepted by [`Mailbox::send`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a Wake must wake the receiver or the message waits forever"]
pub enum Sent {
    /// The box was empty: the receiver may be asleep, wake it.
    Wake,
    /// Earlier messages are waiting; their wake-up covers this one.
    Queued,
}

/// A message refused by [`Mailbox::send`], given back to the sender.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// The receiving shard is stopping.
    Closed(T),
    /// `capacity` messages are waiting: the receiver is far behind.
    Full(T),
}

#[derive(Debug)]
pub struct Mailbox<T, L: Lock<Queue<T>> = Mutex<Queue<T>>> {
    queue: L,
    capacity: usize,
    _item: std::marker::PhantomData<fn(T) -> T>,
}

impl<T, L: Lock<Queue<T>>> Mailbox<T, L> {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: L::default(),
            capacity,
            _item: std::marker::PhantomData,
        }
    }

    pub fn send(&self, item: T) -> Result<Sent, Refused<T>> {
        self.queue.with(|q| {
            if q.closed {
                return Err(Refused::Closed(item));
            }
            if q.items.len() >= self.capacity {
                return Err(Refused::Full(item));
            }
            q.items.push_back(item);
            Ok(if q.items.len() == 1 {
                Sent::Wake
            } else {
                Sent::Queued
            })
        })
    }

    /// Moves every waiting message to the back of `out`. The caller keeps
    /// `out` between calls, so draining allocates only while it grows.
    pub fn drain(&self, out: &mut VecDeque<T>) {
        self.queue.with(|q| {
            if out.is_empty() {
                std::mem::swap(&mut q.items, out);
            } else {
                out.extend(q.items.drain(..));
            }
        });
    }

    /// Refuses every later message and hands back those still waiting.
    pub fn close(&self) -> VecDeque<T> {
        self.queue.with(|q| {
            q.closed = true;
            std::mem::take(&mut q.items)
        })
    }

    pub fn len(&self) -> usize {
        self.queue.with(|q| q.items.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_a_burst_wakes() {
        let m: Mailbox<u32> = Mailbox::new(8);
        assert_eq!(m.send(1), Ok(Sent::Wake));
        assert_eq!(m.send(2), Ok(Sent::Queued));
        let mut out = VecDeque::new();
        m.drain(&mut out);
        assert_eq!(out, [1, 2]);
        assert_eq!(m.send(3), Ok(Sent::Wake));
    }

    #[test]
    fn drain_appends_after_what_is_left() {
        let m: Mailbox<u32> = Mailbox::new(8);
        let mut out = VecDeque::from([7]);
        let _ = m.send(8);
        m.drain(&mut out);
        assert_eq!(out, [7, 8]);
        assert!(m.is_empty());
    }

    #[test]
    fn full_and_closed_give_the_message_back() {
        let m: Mailbox<&str> = Mailbox::new(1);
        assert_eq!(m.send("a"), Ok(Sent::Wake));
        assert_eq!(m.send("b"), Err(Refused::Full("b")));
        assert_eq!(m.close(), ["a"]);
        assert_eq!(m.send("c"), Err(Refused::Closed("c")));
        assert!(m.is_empty());
    }

    #[test]
    fn threads_lose_nothing() {
        let m: std::sync::Arc<Mailbox<u32>> = std::sync::Arc::new(Mailbox::new(10_000));
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|i| m.send(t * 1000 + i).is_ok()).count()
                })
            })
            .collect();
        let sent: usize = senders.into_iter().map(|h| h.join().unwrap()).sum();
        let mut out = VecDeque::new();
        m.drain(&mut out);
        let mut got: Vec<u32> = out.into_iter().collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!((sent, got.len()), (4000, 4000));
    }
}
