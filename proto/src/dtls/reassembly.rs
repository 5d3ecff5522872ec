//! Incoming handshake message reassembly (RFC 6347 §4.2.3): fragments may
//! arrive split, duplicated, overlapping or out of order; messages are
//! released strictly in `message_seq` order.

use super::handshake::{Fragment, MAX_MESSAGE};

/// How far past the next expected message we buffer (a flight is at most a
/// handful of messages); anything further is dropped and retransmitted.
const MAX_AHEAD: u16 = 4;

/// A complete handshake message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) msg_type: u8,
    pub(crate) seq: u16,
    pub(crate) body: Vec<u8>,
}

/// What became of one fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Stored (or already had those bytes).
    Stored,
    /// Part of a message already released: the peer is retransmitting.
    /// `is_last` marks the final fragment of that message.
    Old { seq: u16, is_last: bool },
    /// Not acceptable here (too far ahead, too big, inconsistent, or new
    /// messages not allowed): dropped and counted by the caller.
    Dropped,
}

struct Partial {
    msg_type: u8,
    seq: u16,
    body: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(usize, usize)>,
}

impl Partial {
    fn is_complete(&self) -> bool {
        self.body.is_empty() || self.have.first() == Some(&(0, self.body.len()))
    }

    fn add(&mut self, start: usize, bytes: &[u8]) {
        let end = start + bytes.len();
        self.body[start..end].copy_from_slice(bytes);
        if bytes.is_empty() {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Keep ranges that neither overlap nor touch [s, e); merge the rest.
        self.have.retain(|&(a, b)| {
            if b < s || a > e {
                true
            } else {
                s = s.min(a);
                e = e.max(b);
                false
            }
        });
        let at = self.have.partition_point(|&(a, _)| a < s);
        self.have.insert(at, (s, e));
    }
}

pub(crate) struct Reassembler {
    next_seq: u16,
    pending: Vec<Partial>,
}

impl Reassembler {
    pub(crate) fn new() -> Self {
        Self {
            next_seq: 0,
            pending: Vec::new(),
        }
    }

    /// The message_seq the peer must send next.
    #[cfg(test)]
    pub(crate) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Files one fragment. With `allow_new == false` (a stale epoch) only
    /// retransmissions are recognised and new data is dropped.
    pub(crate) fn insert(&mut self, f: &Fragment<'_>, allow_new: bool) -> Insert {
        if f.seq < self.next_seq {
            return Insert::Old {
                seq: f.seq,
                is_last: f.is_last(),
            };
        }
        let len = f.length as usize;
        if !allow_new || f.seq - self.next_seq > MAX_AHEAD || len > MAX_MESSAGE {
            return Insert::Dropped;
        }
        let idx = match self.pending.iter().position(|p| p.seq == f.seq) {
            Some(i) => {
                let p = &self.pending[i];
                if p.msg_type != f.msg_type || p.body.len() != len {
                    return Insert::Dropped;
                }
                i
            }
            None => {
                self.pending.push(Partial {
                    msg_type: f.msg_type,
                    seq: f.seq,
                    body: vec![0; len],
                    have: Vec::new(),
                });
                self.pending.len() - 1
            }
        };
        // parse_fragment checked offset + body length <= length.
        self.pending[idx].add(f.offset as usize, f.body);
        Insert::Stored
    }

    /// Moves past one message_seq without a message (DTLS 0.9's CCS takes
    /// one); anything buffered under it is dropped.
    pub(crate) fn skip_one(&mut self) {
        let skipped = self.next_seq;
        self.pending.retain(|p| p.seq != skipped);
        self.next_seq = skipped.saturating_add(1);
    }

    /// The next message in sequence, once all its bytes are in.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let i = self
            .pending
            .iter()
            .position(|p| p.seq == self.next_seq && p.is_complete())?;
        let p = self.pending.swap_remove(i);
        self.next_seq = self.next_seq.checked_add(1)?;
        Some(Message {
            msg_type: p.msg_type,
            seq: p.seq,
            body: p.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(seq: u16, length: u32, offset: u32, body: &[u8]) -> Fragment<'_> {
        Fragment {
            msg_type: 1,
            length,
            seq,
            offset,
            body,
        }
    }

    #[test]
    fn in_order_unfragmented() {
        let mut r = Reassembler::new();
        assert_eq!(r.insert(&frag(0, 3, 0, b"abc"), true), Insert::Stored);
        assert_eq!(r.pop().unwrap().body, b"abc");
        assert_eq!(r.pop(), None);
        assert_eq!(
            r.insert(&frag(0, 3, 0, b"abc"), true),
            Insert::Old {
                seq: 0,
                is_last: true
            }
        );
        assert_eq!(
            r.insert(&frag(0, 3, 0, b"ab"), true),
            Insert::Old {
                seq: 0,
                is_last: false
            }
        );
    }

    #[test]
    fn out_of_order_overlapping_fragments() {
        let mut r = Reassembler::new();
        let msg = b"0123456789";
        assert_eq!(r.insert(&frag(0, 10, 6, &msg[6..]), true), Insert::Stored);
        assert_eq!(r.pop(), None);
        assert_eq!(r.insert(&frag(0, 10, 0, &msg[..3]), true), Insert::Stored);
        assert_eq!(r.insert(&frag(0, 10, 2, &msg[2..5]), true), Insert::Stored);
        assert_eq!(r.pop(), None);
        // The next message arrives before this one is complete.
        assert_eq!(r.insert(&frag(1, 0, 0, b""), true), Insert::Stored);
        assert_eq!(r.pop(), None);
        assert_eq!(r.insert(&frag(0, 10, 5, &msg[5..6]), true), Insert::Stored);
        assert_eq!(r.pop().unwrap().body, msg);
        let m = r.pop().unwrap();
        assert_eq!((m.seq, m.body.len()), (1, 0));
        assert_eq!(r.next_seq(), 2);
    }

    #[test]
    fn skip_one_moves_past_a_seq() {
        let mut r = Reassembler::new();
        assert_eq!(r.insert(&frag(0, 1, 0, b"a"), true), Insert::Stored);
        assert_eq!(r.pop().unwrap().seq, 0);
        // Something under the skipped seq is forgotten; the next one is kept.
        assert_eq!(r.insert(&frag(1, 1, 0, b"x"), true), Insert::Stored);
        assert_eq!(r.insert(&frag(2, 1, 0, b"b"), true), Insert::Stored);
        r.skip_one();
        assert_eq!(r.next_seq(), 2);
        assert_eq!(r.pop().unwrap().body, b"b");
        assert_eq!(
            r.insert(&frag(1, 1, 0, b"x"), true),
            Insert::Old {
                seq: 1,
                is_last: true
            }
        );
    }

    #[test]
    fn refuses_what_it_should() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.insert(&frag(MAX_AHEAD + 1, 1, 0, b"x"), true),
            Insert::Dropped
        );
        assert_eq!(
            r.insert(&frag(0, MAX_MESSAGE as u32 + 1, 0, b"x"), true),
            Insert::Dropped
        );
        assert_eq!(r.insert(&frag(0, 4, 0, b"x"), false), Insert::Dropped);
        assert_eq!(r.insert(&frag(0, 4, 0, b"x"), true), Insert::Stored);
        // Same seq, different length: inconsistent.
        assert_eq!(r.insert(&frag(0, 5, 1, b"y"), true), Insert::Dropped);
        let other_type = Fragment {
            msg_type: 2,
            ..frag(0, 4, 1, b"y")
        };
        assert_eq!(r.insert(&other_type, true), Insert::Dropped);
    }
}
