//! Our outgoing flight (RFC 6347 §4.2.4): kept as whole messages so it can
//! be sent again with fresh record sequence numbers, fragmented to the MTU
//! and packed several records per datagram.

use std::time::{Duration, Instant};

use super::handshake::HS_HEADER_LEN;
use super::keys::RecordKey;
use super::record::{self, content, HEADER_LEN, MAX_SEQ};
use super::suite::{CBC_BLOCK, CBC_MAC_LEN};

enum Item {
    /// DTLS 0.9 adds the message_seq it takes (docs/protocol.md, "DTLS 0.9").
    ChangeCipherSpec(Option<u16>),
    /// A whole message, header written as unfragmented.
    Handshake(Vec<u8>),
}

struct Entry {
    epoch: u16,
    item: Item,
}

/// Retransmission timer state (RFC 6347 §4.2.4.1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timer {
    pub(crate) deadline: Instant,
    timeout: Duration,
    count: u32,
}

pub(crate) struct Flight {
    entries: Vec<Entry>,
    /// Next (entry, body offset) to send; `None` = nothing queued.
    cursor: Option<(usize, usize)>,
    pub(crate) timer: Option<Timer>,
    /// Epoch of the next message pushed: 1 once our CCS is in.
    next_epoch: u16,
}

/// What a timer expiry means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    NotYet,
    Resent,
    GaveUp,
}

impl Flight {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            cursor: None,
            timer: None,
            next_epoch: 0,
        }
    }

    /// Starts a new flight: the previous one is acknowledged by the peer's.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.cursor = None;
        self.timer = None;
    }

    pub(crate) fn push_handshake(&mut self, msg: Vec<u8>) {
        self.entries.push(Entry {
            epoch: self.next_epoch,
            item: Item::Handshake(msg),
        });
    }

    /// ChangeCipherSpec goes out in the old epoch; what follows in the new.
    pub(crate) fn push_ccs(&mut self, msg_seq: Option<u16>) {
        self.entries.push(Entry {
            epoch: self.next_epoch,
            item: Item::ChangeCipherSpec(msg_seq),
        });
        self.next_epoch = 1;
    }

    /// Queues the whole flight for `poll_transmit`; with `expect_reply`, arms
    /// the retransmission timer (not for a final flight, RFC 6347 §4.2.4).
    pub(crate) fn send(&mut self, now: Instant, expect_reply: bool, initial: Duration) {
        self.cursor = (!self.entries.is_empty()).then_some((0, 0));
        self.timer = expect_reply.then_some(Timer {
            deadline: now + initial,
            timeout: initial,
            count: 0,
        });
    }

    /// Sends it again because the peer retransmitted its previous flight.
    /// Returns whether there was anything to send.
    pub(crate) fn resend(&mut self) -> bool {
        if self.entries.is_empty() || self.cursor.is_some() {
            return false;
        }
        self.cursor = Some((0, 0));
        true
    }

    /// Stops the timer and forgets the flight (handshake over, nothing kept).
    pub(crate) fn stop(&mut self) {
        self.clear();
    }

    pub(crate) fn on_timeout(&mut self, now: Instant, max: Duration, max_count: u32) -> Expiry {
        let Some(t) = self.timer.as_mut() else {
            return Expiry::NotYet;
        };
        if now < t.deadline {
            return Expiry::NotYet;
        }
        if t.count >= max_count {
            self.clear();
            return Expiry::GaveUp;
        }
        t.count += 1;
        t.timeout = (t.timeout * 2).min(max);
        t.deadline = now + t.timeout;
        self.cursor = Some((0, 0));
        Expiry::Resent
    }

    /// Writes as much of the queued flight as fits `out` into one datagram.
    /// `key` encrypts epoch-1 records; `seqs` are the per-epoch record
    /// sequence counters; `version` goes in every record header.
    pub(crate) fn write_datagram(
        &mut self,
        out: &mut [u8],
        key: Option<&RecordKey>,
        seqs: &mut [u64; 2],
        version: u16,
    ) -> Option<usize> {
        let (mut i, mut off) = self.cursor?;
        let mut n = 0;
        while let Some(e) = self.entries.get(i) {
            let key = if e.epoch == 0 { None } else { Some(key?) };
            let at = n + record::payload_offset(key);
            let seq = seqs[usize::from(e.epoch)];
            if seq > MAX_SEQ {
                return None;
            }
            let Some(room) = record::max_plain(key, out.len() - n) else {
                break;
            };
            let (plain_len, next) = match &e.item {
                Item::ChangeCipherSpec(msg_seq) => {
                    let (ccs, len) = match msg_seq {
                        Some(s) => ([1, s.to_be_bytes()[0], s.to_be_bytes()[1]], 3),
                        None => ([1, 0, 0], 1),
                    };
                    if room < len {
                        break;
                    }
                    out[at..at + len].copy_from_slice(&ccs[..len]);
                    (len, (i + 1, 0))
                }
                Item::Handshake(msg) => {
                    let body = &msg[HS_HEADER_LEN..];
                    let Some(room) = room.checked_sub(HS_HEADER_LEN) else {
                        break;
                    };
                    let take = room.min(body.len() - off);
                    if take == 0 && off < body.len() {
                        break;
                    }
                    // type, length, message_seq of the whole message, then this fragment's place.
                    let frag = &mut out[at..at + HS_HEADER_LEN + take];
                    frag[..6].copy_from_slice(&msg[..6]);
                    frag[6..9].copy_from_slice(&(off as u32).to_be_bytes()[1..]);
                    frag[9..12].copy_from_slice(&(take as u32).to_be_bytes()[1..]);
                    frag[HS_HEADER_LEN..].copy_from_slice(&body[off..off + take]);
                    let next = if off + take == body.len() {
                        (i + 1, 0)
                    } else {
                        (i, off + take)
                    };
                    (HS_HEADER_LEN + take, next)
                }
            };
            let ty = match e.item {
                Item::ChangeCipherSpec(_) => content::CHANGE_CIPHER_SPEC,
                Item::Handshake(_) => content::HANDSHAKE,
            };
            n += record::finish(&mut out[n..], ty, version, e.epoch, seq, key, plain_len)?;
            seqs[usize::from(e.epoch)] = seq + 1;
            (i, off) = next;
        }
        self.cursor = (i < self.entries.len()).then_some((i, off));
        (n > 0).then_some(n)
    }
}

/// Room the smallest fragment needs, to validate MTUs: header, handshake
/// header and one body byte under the bulkiest protection (CBC: IV, MAC,
/// padding to whole blocks).
pub(crate) const MIN_DATAGRAM: usize =
    HEADER_LEN + CBC_BLOCK + (HS_HEADER_LEN + 1 + CBC_MAC_LEN + 1).next_multiple_of(CBC_BLOCK);
