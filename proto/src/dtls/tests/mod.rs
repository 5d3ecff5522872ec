//! Our client against our server on a virtual clock, over a [`Link`] that
//! can drop, duplicate, hold back (reorder) and alter datagrams.

mod dtls09;
mod handshake;
mod records;

use std::time::{Duration, Instant};

use super::*;

pub(super) const PSK: [u8; 32] = [0x42; 32];

/// Hex (whitespace ignored) to bytes, for the test vectors of every module.
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
pub(super) const APP_ID: [u8; 32] = [0xA1; 32];
pub(super) const SESSION_ID: [u8; 32] = [0x5E; 32];
pub(super) const MASTER: [u8; 48] = [0x3C; 48];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    ToServer,
    ToClient,
}

/// What the link does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Deliver after the next datagram in the same direction.
    Hold,
}

/// Decides each datagram's fate from its direction and index in that direction;
/// may also rewrite it.
type Filter = Box<dyn FnMut(Dir, usize, &mut Vec<u8>) -> Fate>;

pub(super) struct Pair {
    pub(super) now: Instant,
    pub(super) start: Instant,
    pub(super) client: DtlsClient,
    pub(super) server: DtlsServer,
    filter: Filter,
    sent: [usize; 2],
    held: [Option<Vec<u8>>; 2],
    /// Every datagram each side sent, in order, before the link's verdict.
    pub(super) log: [Vec<Vec<u8>>; 2],
    pub(super) client_rx: Vec<Vec<u8>>,
    pub(super) server_rx: Vec<Vec<u8>>,
    pub(super) client_events: Vec<DtlsEvent>,
    pub(super) server_events: Vec<DtlsEvent>,
    pub(super) client_err: Option<DtlsError>,
    pub(super) server_err: Option<DtlsError>,
    /// Virtual time at which each side reported Closed.
    pub(super) closed_at: [Option<Duration>; 2],
}

pub(super) fn cfg_with(suites: &[CipherSuite]) -> DtlsConfig {
    DtlsConfig {
        suites: suites.to_vec(),
        ..DtlsConfig::default()
    }
}

impl Pair {
    pub(super) fn new(
        client: impl FnOnce(Instant) -> DtlsClient,
        server: impl FnOnce(Instant) -> DtlsServer,
    ) -> Self {
        // The only clock read: everything after runs on virtual time.
        let now = Instant::now();
        Self {
            now,
            start: now,
            client: client(now),
            server: server(now),
            filter: Box::new(|_, _, _| Fate::Deliver),
            sent: [0; 2],
            held: [None, None],
            log: [Vec::new(), Vec::new()],
            client_rx: Vec::new(),
            server_rx: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_err: None,
            server_err: None,
            closed_at: [None, None],
        }
    }

    pub(super) fn psk(ccfg: &DtlsConfig, scfg: &DtlsConfig) -> Self {
        Self::new(
            |now| DtlsClient::new_psk(PSK, &APP_ID, ccfg, now).unwrap(),
            |now| DtlsServer::new_psk(PSK, scfg, now),
        )
    }

    /// Legacy resumption of `suite` (DTLS 0.9 for the CBC suites).
    pub(super) fn resume(suite: CipherSuite) -> Self {
        let cfg = DtlsConfig::default();
        Self::new(
            |now| DtlsClient::new_resume(SESSION_ID, MASTER, suite, &cfg, now),
            |now| DtlsServer::new_resume(SESSION_ID, MASTER, suite, &cfg, now),
        )
    }

    pub(super) fn with_filter(
        mut self,
        f: impl FnMut(Dir, usize, &mut Vec<u8>) -> Fate + 'static,
    ) -> Self {
        self.filter = Box::new(f);
        self
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves every pending datagram through the link once; true if any moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut buf = [0u8; 2048];
        let mut out: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        while let Some(n) = self.client.poll_transmit(self.now, &mut buf) {
            out[0].push(buf[..n].to_vec());
        }
        while let Some(n) = self.server.poll_transmit(self.now, &mut buf) {
            out[1].push(buf[..n].to_vec());
        }
        for (d, dir) in [(0, Dir::ToServer), (1, Dir::ToClient)] {
            for mut dgram in std::mem::take(&mut out[d]) {
                moved = true;
                self.log[d].push(dgram.clone());
                let i = self.sent[d];
                self.sent[d] += 1;
                match (self.filter)(dir, i, &mut dgram) {
                    Fate::Deliver => {
                        self.deliver(dir, dgram);
                        if let Some(h) = self.held[d].take() {
                            self.deliver(dir, h);
                        }
                    }
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        self.deliver(dir, dgram.clone());
                        self.deliver(dir, dgram);
                    }
                    Fate::Hold => {
                        if let Some(h) = self.held[d].replace(dgram) {
                            self.deliver(dir, h);
                        }
                    }
                }
            }
        }
        self.collect_events();
        moved
    }

    /// Hands one datagram to one side, taking every record out of it.
    pub(super) fn deliver(&mut self, dir: Dir, mut dgram: Vec<u8>) {
        let mut off = 0;
        loop {
            let r = match dir {
                Dir::ToServer => self.server.handle_datagram(self.now, &mut dgram[off..]),
                Dir::ToClient => self.client.handle_datagram(self.now, &mut dgram[off..]),
            };
            match r {
                Ok(Received::AppData { data, next }) => {
                    let v = data.to_vec();
                    match dir {
                        Dir::ToServer => self.server_rx.push(v),
                        Dir::ToClient => self.client_rx.push(v),
                    }
                    off += next;
                }
                Ok(Received::Done) => break,
                Err(e) => {
                    match dir {
                        Dir::ToServer => self.server_err.get_or_insert(e),
                        Dir::ToClient => self.client_err.get_or_insert(e),
                    };
                    break;
                }
            }
        }
    }

    fn collect_events(&mut self) {
        let t = self.elapsed();
        while let Some(e) = self.client.poll_event() {
            if matches!(e, DtlsEvent::Closed { .. }) {
                self.closed_at[0].get_or_insert(t);
            }
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            if matches!(e, DtlsEvent::Closed { .. }) {
                self.closed_at[1].get_or_insert(t);
            }
            self.server_events.push(e);
        }
    }

    /// Runs until nothing moves and no timer is left (or a bound is hit),
    /// jumping the clock to the earliest timeout when idle.
    pub(super) fn drive(&mut self) {
        for _ in 0..10_000 {
            if self.pump() {
                continue;
            }
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = next else {
                // Flush a datagram still held back for reordering.
                let mut any = false;
                for (d, dir) in [(0, Dir::ToServer), (1, Dir::ToClient)] {
                    if let Some(h) = self.held[d].take() {
                        self.deliver(dir, h);
                        any = true;
                    }
                }
                if any {
                    continue;
                }
                break;
            };
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.collect_events();
        }
    }

    pub(super) fn assert_connected(&self, suite: CipherSuite) {
        assert_eq!(self.client_err, None);
        assert_eq!(self.server_err, None);
        assert_eq!(self.client_events, [DtlsEvent::Connected { suite }]);
        assert_eq!(self.server_events, [DtlsEvent::Connected { suite }]);
        assert!(self.client.is_connected() && self.server.is_connected());
        assert_eq!(
            (self.client.suite(), self.server.suite()),
            (Some(suite), Some(suite))
        );
    }

    /// Client → server and server → client application data, checked.
    pub(super) fn exchange(&mut self, payload: &[u8]) {
        let mut out = vec![0u8; HEADROOM + payload.len() + TAILROOM];
        let n = self.client.seal(payload, &mut out).unwrap();
        self.deliver(Dir::ToServer, out[..n].to_vec());
        assert_eq!(self.server_rx.last().map(Vec::as_slice), Some(payload));
        let n = self.server.seal(payload, &mut out).unwrap();
        self.deliver(Dir::ToClient, out[..n].to_vec());
        assert_eq!(self.client_rx.last().map(Vec::as_slice), Some(payload));
    }
}

/// Records of a datagram: (content type, epoch, seq, fragment bytes).
pub(super) fn records(dgram: &[u8]) -> Vec<(u8, u16, u64, Vec<u8>)> {
    let mut v = Vec::new();
    let mut off = 0;
    while let Ok(h) = RecordHeader::parse(&dgram[off..]) {
        v.push((
            h.content_type,
            h.epoch,
            h.seq,
            dgram[off + HEADER_LEN..off + h.total_len()].to_vec(),
        ));
        off += h.total_len();
    }
    assert_eq!(off, dgram.len(), "datagram ends on a record boundary");
    v
}
