//! The record loop of `handle_datagram`: header, version, epoch and replay
//! checks, decryption in place, then dispatch by content type.

use std::ops::Range;
use std::time::Instant;

use super::{Conn, Machine};
use crate::dtls::codec::Reader;
use crate::dtls::handshake::parse_fragment;
use crate::dtls::reassembly::Insert;
use crate::dtls::record::{self, content, RecordHeader, DTLS1_0, DTLS1_2, HEADER_LEN};
use crate::dtls::replay::Reject;
use crate::dtls::{alert, CloseReason, DtlsError, Received};

impl Conn {
    /// A 1.2 client may send its first flight as DTLS 1.0 records (RFC 6347
    /// §4.1); DTLS 0.9 is served as exactly that.
    fn accepts_epoch0_version(&self, v: u16) -> bool {
        match self.version {
            DTLS1_2 => matches!(v, DTLS1_2 | DTLS1_0),
            own => v == own,
        }
    }

    /// ChangeCipherSpec body: `1`, in DTLS 0.9 followed by a message_seq.
    fn is_ccs(&self, body: &[u8]) -> bool {
        let len = if self.is_dtls0_9() { 3 } else { 1 };
        body.len() == len && body[0] == 1
    }

    pub(crate) fn handle_datagram<'a, M: Machine>(
        &mut self,
        m: &mut M,
        now: Instant,
        data: &'a mut [u8],
    ) -> Result<Received<'a>, DtlsError> {
        match self.records(m, now, data) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    fn records<'a, M: Machine>(
        &mut self,
        m: &mut M,
        now: Instant,
        data: &'a mut [u8],
    ) -> Result<Received<'a>, DtlsError> {
        let mut off = 0;
        while off < data.len() && !self.closed {
            let Ok(hdr) = RecordHeader::parse(&data[off..]) else {
                // No length to skip by: the rest of the datagram is lost.
                self.counters.malformed += 1;
                break;
            };
            let start = off + HEADER_LEN;
            off += hdr.total_len();
            let Some(pt) = self.unprotect(&hdr, &mut data[start..off]) else {
                continue;
            };
            let pt = start + pt.start..start + pt.end;
            match hdr.content_type {
                content::APPLICATION_DATA if self.connected && hdr.epoch == 1 => {
                    return Ok(Received::AppData {
                        data: &mut data[pt],
                        next: off,
                    });
                }
                content::HANDSHAKE => self.handshake_record(m, now, hdr.epoch, &data[pt])?,
                content::CHANGE_CIPHER_SPEC if self.is_ccs(&data[pt.clone()]) => {
                    if hdr.epoch == 0 && self.read_epoch == 0 {
                        m.on_ccs(self)?;
                    } else {
                        self.counters.unexpected += 1;
                    }
                }
                // An epoch-0 alert is unauthenticated: anyone who knows the
                // addresses could send it, so it ends nothing.
                content::ALERT if hdr.epoch == 0 => self.counters.unauthenticated_alerts += 1,
                content::ALERT if pt.len() == 2 => {
                    self.alert_record([data[pt.start], data[pt.start + 1]])
                }
                content::APPLICATION_DATA => self.counters.unexpected += 1,
                _ => self.counters.malformed += 1,
            }
        }
        Ok(Received::Done)
    }

    /// Version, epoch and replay checks, then decryption in place. `None`
    /// means dropped (and counted): a record that fails is never fatal. The
    /// range is the plaintext in `body`.
    fn unprotect(&mut self, hdr: &RecordHeader, body: &mut [u8]) -> Option<Range<usize>> {
        match hdr.epoch {
            0 => {
                if !self.accepts_epoch0_version(hdr.version) {
                    self.counters.bad_version += 1;
                    return None;
                }
                // After the peer's CCS only retransmitted handshake records may
                // still come in epoch 0 (their detection triggers our resend).
                if self.read_epoch != 0 && hdr.content_type != content::HANDSHAKE {
                    self.counters.wrong_epoch += 1;
                    return None;
                }
                // Epoch 0 is unauthenticated, so no replay window: the
                // handshake layer deduplicates by message_seq.
                Some(0..body.len())
            }
            1 if self.read_epoch == 1 => {
                if hdr.version != self.version {
                    self.counters.bad_version += 1;
                    return None;
                }
                match self.replay.check(hdr.seq) {
                    Ok(()) => {}
                    Err(Reject::Duplicate) => {
                        self.counters.replayed += 1;
                        return None;
                    }
                    Err(Reject::TooOld) => {
                        self.counters.too_old += 1;
                        return None;
                    }
                }
                let key = self.read_key.as_ref()?;
                match record::open(key, hdr, body) {
                    Some(r) => {
                        self.replay.mark(hdr.seq);
                        Some(r)
                    }
                    // Dropped, never fatal (RFC 6347 §4.1.2.7): anyone can
                    // send a record, only the peer can send one that opens.
                    None => {
                        self.counters.auth_failed += 1;
                        None
                    }
                }
            }
            _ => {
                self.counters.wrong_epoch += 1;
                None
            }
        }
    }

    fn handshake_record<M: Machine>(
        &mut self,
        m: &mut M,
        now: Instant,
        epoch: u16,
        bytes: &[u8],
    ) -> Result<(), DtlsError> {
        let allow_new = epoch == self.read_epoch;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let Ok(frag) = parse_fragment(&mut r) else {
                self.counters.malformed += 1;
                break;
            };
            match self.hs_in.insert(&frag, allow_new) {
                Insert::Stored => {}
                Insert::Old { seq, is_last } => {
                    if is_last && Some(seq) == self.peer_flight_end {
                        self.resend_for_peer(now);
                    }
                }
                Insert::Dropped => self.counters.unexpected += 1,
            }
        }
        while !self.closed {
            let Some(msg) = self.hs_in.pop() else { break };
            m.on_message(self, now, msg)?;
        }
        Ok(())
    }

    fn alert_record(&mut self, a: [u8; 2]) {
        if a[1] == alert::CLOSE_NOTIFY {
            // RFC 5246 §7.2.1: answer with our own close_notify.
            self.alert = Some([alert::LEVEL_WARNING, alert::CLOSE_NOTIFY]);
            self.end(CloseReason::PeerClosed);
        } else if a[0] == alert::LEVEL_FATAL {
            self.end(CloseReason::PeerAlert(a[1]));
        }
        // Other warnings (e.g. no_renegotiation) change nothing.
    }
}
