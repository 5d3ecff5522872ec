//! What server and client share: epochs and keys, the record loop of
//! `handle_datagram`, flights and timers, alerts, events and counters. The
//! role-specific state machines implement [`Machine`].

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::codec::Reader;
use super::flight::{Expiry, Flight};
use super::handshake::{encode_message, parse_fragment};
use super::keys::RecordKey;
use super::reassembly::{Insert, Message, Reassembler};
use super::record::{self, content, RecordHeader, DTLS1_0, DTLS1_2, HEADER_LEN, MAX_PLAINTEXT, MAX_SEQ};
use super::replay::{Reject, ReplayWindow};
use super::{alert, CloseReason, DtlsConfig, DtlsCounters, DtlsError, DtlsEvent, Received, MIN_MTU, TAG_LEN};

/// A role's handshake state machine, fed whole messages in order.
pub(crate) trait Machine {
    fn on_message(&mut self, c: &mut Conn, now: Instant, m: Message) -> Result<(), DtlsError>;
    /// A ChangeCipherSpec arrived. It has no sequence number, so one that
    /// comes early (reordered, or its flight half lost) is dropped, not fatal.
    fn on_ccs(&mut self, c: &mut Conn) -> Result<(), DtlsError>;
    /// In ExpectFinished a record that fails authentication means the keys
    /// differ, and is fatal instead of noise.
    fn expects_finished(&self) -> bool;
}

pub(crate) struct Conn {
    pub(crate) cfg: DtlsConfig,
    rng: SystemRandom,
    read_epoch: u16,
    read_key: Option<RecordKey>,
    write_key: Option<RecordKey>,
    replay: ReplayWindow,
    write_seq: [u64; 2],
    write_epoch: u16,
    hs_in: Reassembler,
    out_msg_seq: u16,
    /// Every handshake message so far, headers as if unfragmented (RFC 6347 §4.2.6).
    pub(crate) transcript: Vec<u8>,
    flight: Flight,
    /// message_seq of the last message of the peer's latest complete flight:
    /// seeing it again means the peer did not get our answer.
    peer_flight_end: Option<u16>,
    alert: Option<[u8; 2]>,
    events: VecDeque<DtlsEvent>,
    pub(crate) counters: DtlsCounters,
    handshake_deadline: Option<Instant>,
    connected: bool,
    closed: bool,
}

impl Conn {
    pub(crate) fn new(cfg: &DtlsConfig, now: Instant) -> Self {
        let mut cfg = cfg.clone();
        cfg.mtu = cfg.mtu.max(MIN_MTU);
        Self {
            handshake_deadline: Some(now + cfg.handshake_timeout),
            cfg,
            rng: SystemRandom::new(),
            read_epoch: 0,
            read_key: None,
            write_key: None,
            replay: ReplayWindow::default(),
            write_seq: [0; 2],
            write_epoch: 0,
            hs_in: Reassembler::new(),
            out_msg_seq: 0,
            transcript: Vec::with_capacity(512),
            flight: Flight::new(),
            peer_flight_end: None,
            alert: None,
            events: VecDeque::new(),
            counters: DtlsCounters::default(),
            connected: false,
            closed: false,
        }
    }

    pub(crate) fn random32(&self) -> [u8; 32] {
        let mut r = [0u8; 32];
        // The OS RNG failing is not something a connection can recover from.
        self.rng.fill(&mut r).expect("system random generator");
        r
    }

    // ---- used by the state machines ----

    pub(crate) fn add_to_transcript(&mut self, m: &Message) {
        self.transcript.extend_from_slice(&encode_message(m.msg_type, m.seq, &m.body));
    }

    /// Starts our next flight (the previous one is acknowledged).
    pub(crate) fn begin_flight(&mut self) {
        self.flight.clear();
    }

    /// Appends a handshake message to our flight and to the transcript.
    pub(crate) fn push_message(&mut self, msg_type: u8, body: &[u8]) {
        let m = encode_message(msg_type, self.out_msg_seq, body);
        self.out_msg_seq = self.out_msg_seq.wrapping_add(1);
        self.transcript.extend_from_slice(&m);
        self.flight.push_handshake(m);
    }

    pub(crate) fn push_ccs(&mut self) {
        self.flight.push_ccs();
        self.write_epoch = 1;
    }

    pub(crate) fn send_flight(&mut self, now: Instant, expect_reply: bool) {
        self.flight.send(now, expect_reply, self.cfg.retransmit_initial);
    }

    /// Forgets our flight: the peer's final flight ended the handshake.
    pub(crate) fn stop_flight(&mut self) {
        self.flight.stop();
    }

    pub(crate) fn peer_flight_done(&mut self, last_seq: u16) {
        self.peer_flight_end = Some(last_seq);
    }

    /// Installs the epoch-1 keys; reading switches on the peer's CCS.
    pub(crate) fn install_keys(&mut self, read: RecordKey, write: RecordKey) {
        self.read_key = Some(read);
        self.write_key = Some(write);
    }

    pub(crate) fn activate_read(&mut self) {
        self.read_epoch = 1;
    }

    pub(crate) fn set_connected(&mut self, suite: super::CipherSuite) {
        self.connected = true;
        self.handshake_deadline = None;
        // Both Finished are computed: the transcript is not needed any more.
        self.transcript = Vec::new();
        self.events.push_back(DtlsEvent::Connected { suite });
    }

    // ---- public surface, wrapped by DtlsServer / DtlsClient ----

    pub(crate) fn is_connected(&self) -> bool {
        self.connected && !self.closed
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let t = self.flight.timer.map(|t| t.deadline);
        match (t, self.handshake_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            self.end(CloseReason::HandshakeTimeout);
            return;
        }
        let (max, count) = (self.cfg.retransmit_max, self.cfg.max_retransmits);
        match self.flight.on_timeout(now, max, count) {
            Expiry::NotYet => {}
            Expiry::Resent => self.counters.retransmits += 1,
            Expiry::GaveUp => self.end(CloseReason::HandshakeTimeout),
        }
    }

    pub(crate) fn close(&mut self) {
        if !self.closed {
            self.alert = Some([alert::LEVEL_WARNING, alert::CLOSE_NOTIFY]);
            self.end(CloseReason::Local);
        }
    }

    fn end(&mut self, reason: CloseReason) {
        self.closed = true;
        self.connected = false;
        self.flight.clear();
        self.events.push_back(DtlsEvent::Closed { reason });
    }

    /// A returned error: queue the fatal alert and close, no event.
    pub(crate) fn fail(&mut self, e: &DtlsError) {
        if !self.closed {
            self.alert = Some([alert::LEVEL_FATAL, e.alert()]);
            self.closed = true;
            self.connected = false;
            self.flight.clear();
        }
    }

    pub(crate) fn poll_transmit(&mut self, out: &mut [u8]) -> Option<usize> {
        let lim = out.len().min(self.cfg.mtu);
        let out = &mut out[..lim];
        if let Some(a) = self.alert.take() {
            let key = if self.write_epoch == 1 { self.write_key.as_ref() } else { None };
            let at = record::payload_offset(key);
            let seq = self.write_seq[usize::from(self.write_epoch)];
            if out.len() >= at + 2 + TAG_LEN && seq <= MAX_SEQ {
                out[at..at + 2].copy_from_slice(&a);
                let n = record::finish(out, content::ALERT, self.write_epoch, seq, key, 2)?;
                self.write_seq[usize::from(self.write_epoch)] = seq + 1;
                return Some(n);
            }
        }
        if self.closed {
            return None;
        }
        let n = self.flight.write_datagram(out, self.write_key.as_ref(), &mut self.write_seq)?;
        Some(n)
    }

    /// Seals application data laid out as `HEADROOM ‖ payload ‖ TAILROOM`;
    /// returns where the record is inside `buf`.
    pub(crate) fn seal_in_place(&mut self, buf: &mut [u8], payload_len: usize) -> Result<Range<usize>, DtlsError> {
        if self.closed {
            return Err(DtlsError::Closed);
        }
        let (true, Some(key)) = (self.connected, self.write_key.as_ref()) else {
            return Err(DtlsError::NotConnected);
        };
        if payload_len > MAX_PLAINTEXT {
            return Err(DtlsError::TooLong { len: payload_len, max: MAX_PLAINTEXT });
        }
        let need = super::HEADROOM + payload_len + super::TAILROOM;
        if buf.len() < need {
            return Err(DtlsError::BufferTooSmall { need });
        }
        let seq = self.write_seq[1];
        if seq > MAX_SEQ {
            let e = DtlsError::SequenceExhausted;
            self.fail(&e);
            return Err(e);
        }
        // ChaCha20-Poly1305 has no explicit nonce: its record starts later.
        let start = super::HEADROOM - record::payload_offset(Some(key));
        let n = record::seal(key, content::APPLICATION_DATA, 1, seq, &mut buf[start..], payload_len)
            .ok_or(DtlsError::BufferTooSmall { need })?;
        self.write_seq[1] = seq + 1;
        Ok(start..start + n)
    }

    // ---- the record loop ----

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
            let hdr = match RecordHeader::parse(&data[off..]) {
                Ok(h) => h,
                Err(_) => {
                    // No length to skip by: the rest of the datagram is lost.
                    self.counters.malformed += 1;
                    break;
                }
            };
            let start = off + HEADER_LEN;
            off += hdr.total_len();
            let Some(pt) = self.unprotect(&hdr, &mut data[start..off], m.expects_finished())? else { continue };
            let pt = start + pt.start..start + pt.end;
            match hdr.content_type {
                content::APPLICATION_DATA if self.connected && hdr.epoch == 1 => {
                    return Ok(Received::AppData { data: &mut data[pt], next: off });
                }
                content::HANDSHAKE => self.handshake_record(m, now, hdr.epoch, &data[pt])?,
                content::CHANGE_CIPHER_SPEC if data[pt.clone()] == [1] => {
                    if hdr.epoch == 0 && self.read_epoch == 0 {
                        m.on_ccs(self)?;
                    } else {
                        self.counters.unexpected += 1;
                    }
                }
                content::ALERT if pt.len() == 2 => self.alert_record([data[pt.start], data[pt.start + 1]]),
                content::APPLICATION_DATA => self.counters.unexpected += 1,
                _ => self.counters.malformed += 1,
            }
        }
        Ok(Received::Done)
    }

    /// Version, epoch and replay checks, then decryption in place. `None`
    /// means dropped (and counted); the range is the plaintext in `body`.
    fn unprotect(
        &mut self,
        hdr: &RecordHeader,
        body: &mut [u8],
        strict: bool,
    ) -> Result<Option<Range<usize>>, DtlsError> {
        match hdr.epoch {
            0 => {
                if !matches!(hdr.version, DTLS1_2 | DTLS1_0) {
                    self.counters.bad_version += 1;
                    return Ok(None);
                }
                // After the peer's CCS only retransmitted handshake records may
                // still come in epoch 0 (their detection triggers our resend).
                if self.read_epoch != 0 && hdr.content_type != content::HANDSHAKE {
                    self.counters.wrong_epoch += 1;
                    return Ok(None);
                }
                // Epoch 0 is unauthenticated, so no replay window: the
                // handshake layer deduplicates by message_seq.
                Ok(Some(0..body.len()))
            }
            1 if self.read_epoch == 1 => {
                if hdr.version != DTLS1_2 {
                    self.counters.bad_version += 1;
                    return Ok(None);
                }
                match self.replay.check(hdr.seq) {
                    Ok(()) => {}
                    Err(Reject::Duplicate) => {
                        self.counters.replayed += 1;
                        return Ok(None);
                    }
                    Err(Reject::TooOld) => {
                        self.counters.too_old += 1;
                        return Ok(None);
                    }
                }
                let Some(key) = self.read_key.as_ref() else { return Ok(None) };
                match record::open(key, hdr, body) {
                    Some(r) => {
                        self.replay.mark(hdr.seq);
                        Ok(Some(r))
                    }
                    None if strict => Err(DtlsError::BadRecordMac),
                    None => {
                        self.counters.auth_failed += 1;
                        Ok(None)
                    }
                }
            }
            _ => {
                self.counters.wrong_epoch += 1;
                Ok(None)
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
                    if is_last && Some(seq) == self.peer_flight_end && self.flight.resend() {
                        self.counters.retransmits += 1;
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
