//! What server and client share: epochs and keys, flights and timers,
//! alerts, events and counters; the record loop of `handle_datagram` is in
//! [`input`]. The role-specific state machines implement [`Machine`].
//!
//! The wire version is fixed per connection: DTLS 1.2, or DTLS 0.9 for the
//! CBC resumption, whose differences from 1.2 are confined to here and the
//! record layer (docs/protocol.md, "DTLS 0.9").

mod input;

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::flight::{Expiry, Flight};
use super::handshake::{encode_message, HS_HEADER_LEN};
use super::keys::RecordKey;
use super::reassembly::{Message, Reassembler};
use super::record::{self, content, DTLS0_9, MAX_PLAINTEXT, MAX_SEQ};
use super::replay::ReplayWindow;
use super::{alert, CloseReason, DtlsConfig, DtlsCounters, DtlsError, DtlsEvent, MIN_MTU};

/// A role's handshake state machine, fed whole messages in order.
pub(crate) trait Machine {
    fn on_message(&mut self, c: &mut Conn, now: Instant, m: Message) -> Result<(), DtlsError>;
    /// A ChangeCipherSpec arrived. It has no sequence number, so one that
    /// comes early (reordered, or its flight half lost) is dropped, not fatal.
    fn on_ccs(&mut self, c: &mut Conn) -> Result<(), DtlsError>;
}

pub(crate) struct Conn {
    pub(crate) cfg: DtlsConfig,
    /// Record and hello version: `DTLS1_2` or `DTLS0_9`.
    pub(crate) version: u16,
    rng: SystemRandom,
    read_epoch: u16,
    read_key: Option<RecordKey>,
    write_key: Option<RecordKey>,
    replay: ReplayWindow,
    write_seq: [u64; 2],
    write_epoch: u16,
    hs_in: Reassembler,
    out_msg_seq: u16,
    /// Every handshake message so far, headers as if unfragmented (RFC 6347
    /// §4.2.6); in DTLS 0.9 bodies only ([`Conn::hashes_headers`]).
    pub(crate) transcript: Vec<u8>,
    flight: Flight,
    /// message_seq of the last message of the peer's latest complete flight:
    /// seeing it again means the peer did not get our answer.
    peer_flight_end: Option<u16>,
    alert: Option<[u8; 2]>,
    events: VecDeque<DtlsEvent>,
    pub(crate) counters: DtlsCounters,
    /// When the peer's retransmission last made us send our flight again.
    last_peer_resend: Option<Instant>,
    handshake_deadline: Option<Instant>,
    connected: bool,
    closed: bool,
}

impl Conn {
    pub(crate) fn new(cfg: &DtlsConfig, now: Instant, version: u16) -> Self {
        let mut cfg = cfg.clone();
        cfg.mtu = cfg.mtu.max(MIN_MTU);
        Self {
            handshake_deadline: Some(now + cfg.handshake_timeout),
            cfg,
            version,
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
            last_peer_resend: None,
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

    fn is_dtls0_9(&self) -> bool {
        self.version == DTLS0_9
    }

    /// DTLS 0.9 hashes handshake bodies without any header: OpenSSL's
    /// DTLS1_BAD_VER and GnuTLS's DTLS0_9 skip all 12 header bytes, not only
    /// the DTLS fields (checked against both; docs/protocol.md, "DTLS 0.9").
    fn hashes_headers(&self) -> bool {
        !self.is_dtls0_9()
    }

    // ---- used by the state machines ----

    pub(crate) fn add_to_transcript(&mut self, m: &Message) {
        if self.hashes_headers() {
            self.transcript
                .extend_from_slice(&encode_message(m.msg_type, m.seq, &m.body));
        } else {
            self.transcript.extend_from_slice(&m.body);
        }
    }

    /// Starts our next flight (the previous one is acknowledged).
    pub(crate) fn begin_flight(&mut self) {
        self.flight.clear();
    }

    /// Appends a handshake message to our flight and to the transcript.
    pub(crate) fn push_message(&mut self, msg_type: u8, body: &[u8]) {
        let m = encode_message(msg_type, self.out_msg_seq, body);
        self.out_msg_seq = self.out_msg_seq.wrapping_add(1);
        let hashed = if self.hashes_headers() {
            &m[..]
        } else {
            &m[HS_HEADER_LEN..]
        };
        self.transcript.extend_from_slice(hashed);
        self.flight.push_handshake(m);
    }

    /// In DTLS 0.9 the ChangeCipherSpec carries, and uses up, the next
    /// message_seq (OpenSSL DTLS1_BAD_VER, GnuTLS DTLS0_9).
    pub(crate) fn push_ccs(&mut self) {
        let seq = self.is_dtls0_9().then_some(self.out_msg_seq);
        if seq.is_some() {
            self.out_msg_seq = self.out_msg_seq.wrapping_add(1);
        }
        self.flight.push_ccs(seq);
        self.write_epoch = 1;
    }

    pub(crate) fn send_flight(&mut self, now: Instant, expect_reply: bool) {
        self.flight
            .send(now, expect_reply, self.cfg.retransmit_initial);
    }

    /// The peer sent its last flight again: it lost our answer, which goes
    /// out again, at most once per quarter of the first retransmission
    /// timeout however often the flight (or a replay of it) comes in.
    pub(crate) fn resend_for_peer(&mut self, now: Instant) {
        let gap = self.cfg.retransmit_initial / 4;
        if self
            .last_peer_resend
            .is_some_and(|t| now.saturating_duration_since(t) < gap)
        {
            self.counters.resends_limited += 1;
            return;
        }
        if self.flight.resend() {
            self.last_peer_resend = Some(now);
            self.counters.retransmits += 1;
        }
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

    /// The peer's CCS arrived: read epoch 1 from now on. A DTLS 0.9 CCS used
    /// up a message_seq; like GnuTLS and OpenSSL we skip it without looking
    /// at the number it carries (it is not authenticated anyway).
    pub(crate) fn activate_read(&mut self) {
        self.read_epoch = 1;
        if self.is_dtls0_9() {
            self.hs_in.skip_one();
        }
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
            let key = if self.write_epoch == 1 {
                self.write_key.as_ref()
            } else {
                None
            };
            let at = record::payload_offset(key);
            let seq = self.write_seq[usize::from(self.write_epoch)];
            if out.len() >= record::record_len(key, 2) && seq <= MAX_SEQ {
                out[at..at + 2].copy_from_slice(&a);
                let n = record::finish(
                    out,
                    content::ALERT,
                    self.version,
                    self.write_epoch,
                    seq,
                    key,
                    2,
                )?;
                self.write_seq[usize::from(self.write_epoch)] = seq + 1;
                return Some(n);
            }
        }
        if self.closed {
            return None;
        }
        let n = self.flight.write_datagram(
            out,
            self.write_key.as_ref(),
            &mut self.write_seq,
            self.version,
        )?;
        Some(n)
    }

    /// Seals application data laid out as `HEADROOM ‖ payload ‖ TAILROOM`;
    /// returns where the record is inside `buf`.
    pub(crate) fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Range<usize>, DtlsError> {
        if self.closed {
            return Err(DtlsError::Closed);
        }
        let (true, Some(key)) = (self.connected, self.write_key.as_ref()) else {
            return Err(DtlsError::NotConnected);
        };
        if payload_len > MAX_PLAINTEXT {
            return Err(DtlsError::TooLong {
                len: payload_len,
                max: MAX_PLAINTEXT,
            });
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
        // ChaCha20-Poly1305 has no explicit nonce, GCM a shorter one than
        // CBC's IV: their records start later.
        let start = super::HEADROOM - record::payload_offset(Some(key));
        let n = record::seal(
            key,
            content::APPLICATION_DATA,
            self.version,
            1,
            seq,
            &mut buf[start..],
            payload_len,
        )
        .ok_or(DtlsError::BufferTooSmall { need })?;
        self.write_seq[1] = seq + 1;
        Ok(start..start + n)
    }
}
