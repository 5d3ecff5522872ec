//! Server handshakes. PSK-NEGOTIATE (docs/protocol.md,
//! "DTLS: PSK-NEGOTIATE"), RFC 4279 plain PSK without ServerKeyExchange:
//!
//! ```text
//! ClientHello        -->
//!                    <--  ServerHello, ServerHelloDone
//! ClientKeyExchange
//! [ChangeCipherSpec]
//! Finished           -->
//!                    <--  [ChangeCipherSpec], Finished
//! ```
//!
//! Legacy resumption ("DTLS: legacy resumption"), the abbreviated handshake
//! of RFC 5246 §7.3:
//! ClientHello(session_id) → ServerHello(same id), [CCS], Finished → [CCS],
//! Finished.

use std::mem;
use std::ops::Range;
use std::time::Instant;

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::codec::Short;
use super::conn::{Conn, Machine};
use super::handshake::{
    encode_server_hello, msg, parse_client_hello, parse_psk_client_key_exchange, ClientHello,
};
use super::keys::{
    derive_keys, master_secret, psk_premaster, verify_data, Side, MASTER_SECRET_LEN,
    VERIFY_DATA_LEN,
};
use super::reassembly::Message;
use super::record::DTLS1_2;
use super::{CipherSuite, DtlsConfig, DtlsCounters, DtlsError, DtlsEvent, Received};

/// How the session's keys come about.
enum Setup {
    Psk([u8; 32]),
    Resume {
        session_id: [u8; 32],
        master: [u8; MASTER_SECRET_LEN],
        suite: CipherSuite,
    },
}

/// Keys are derived; what Finished needs.
struct Keyed {
    suite: CipherSuite,
    master: [u8; MASTER_SECRET_LEN],
    resumed: bool,
}

/// Server handshake states, a state machine: each transition consumes the
/// state and returns the next.
enum State {
    ExpectClientHello(Setup),
    ExpectClientKeyExchange {
        suite: CipherSuite,
        psk: [u8; 32],
        client_random: [u8; 32],
        server_random: [u8; 32],
    },
    ExpectCcs(Keyed),
    ExpectFinished {
        keyed: Keyed,
        expected: [u8; VERIFY_DATA_LEN],
    },
    Traffic(CipherSuite),
    Closed,
}

/// A DTLS server for one client (DTLS 1.2, or 0.9 for a CBC resumption).
/// See the [module docs](super) for the calling convention.
pub struct DtlsServer {
    conn: Conn,
    state: State,
}

pub(super) fn decode(Short(what): Short) -> DtlsError {
    DtlsError::Decode(what)
}

/// DTLS versions count down: 1.0 = 0xFEFF, 1.2 = 0xFEFD. A 1.2 server
/// takes any client that can speak 1.2; DTLS 0.9 must be exactly that.
fn check_version(ours: u16, v: u16) -> Result<(), DtlsError> {
    let ok = match ours {
        DTLS1_2 => v >> 8 == 0xFE && v <= DTLS1_2,
        _ => v == ours,
    };
    if ok {
        Ok(())
    } else {
        Err(DtlsError::ProtocolVersion(v))
    }
}

/// Client order unless the configuration prefers ours (docs/protocol.md,
/// "DTLS: PSK-NEGOTIATE").
fn choose_suite(cfg: &DtlsConfig, ch: &ClientHello<'_>) -> Result<CipherSuite, DtlsError> {
    let offered = |s: &CipherSuite| ch.suite_ids().any(|id| id == s.id());
    let ours = |s: &CipherSuite| s.is_psk() && cfg.suites.contains(s);
    let pick = if cfg.prefer_server_order {
        cfg.suites.iter().copied().find(|s| ours(s) && offered(s))
    } else {
        ch.suite_ids().filter_map(CipherSuite::from_id).find(ours)
    };
    pick.ok_or(DtlsError::NoCommonSuite)
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::ExpectClientHello(_) => "ClientHello",
            Self::ExpectClientKeyExchange { .. } => "ClientKeyExchange",
            Self::ExpectCcs(_) => "ChangeCipherSpec",
            Self::ExpectFinished { .. } => "Finished",
            Self::Traffic(_) => "application data",
            Self::Closed => "nothing (closed)",
        }
    }

    fn handle(self, c: &mut Conn, now: Instant, m: Message) -> Result<Self, DtlsError> {
        match (self, m.msg_type) {
            (Self::ExpectClientHello(setup), msg::CLIENT_HELLO) => client_hello(setup, c, now, m),
            (
                Self::ExpectClientKeyExchange {
                    suite,
                    psk,
                    client_random,
                    server_random,
                },
                msg::CLIENT_KEY_EXCHANGE,
            ) => {
                // The identity is always "psk" and means nothing (docs/protocol.md,
                // "DTLS: PSK-NEGOTIATE").
                parse_psk_client_key_exchange(&m.body).map_err(decode)?;
                c.add_to_transcript(&m);
                let hash = suite.prf_hash();
                let master =
                    master_secret(hash, &psk_premaster(&psk), &client_random, &server_random);
                let keys = derive_keys(suite, &master, &client_random, &server_random);
                c.install_keys(keys.client_write, keys.server_write);
                Ok(Self::ExpectCcs(Keyed {
                    suite,
                    master,
                    resumed: false,
                }))
            }
            (Self::ExpectFinished { keyed, expected }, msg::FINISHED) => {
                verify_slices_are_equal(&m.body, &expected).map_err(|_| DtlsError::BadFinished)?;
                c.add_to_transcript(&m);
                if keyed.resumed {
                    // The client's flight was the last one: nothing to keep.
                    c.stop_flight();
                } else {
                    c.peer_flight_done(m.seq);
                    c.begin_flight();
                    c.push_ccs();
                    let vd = verify_data(
                        keyed.suite.prf_hash(),
                        &keyed.master,
                        Side::Server,
                        &c.transcript,
                    );
                    c.push_message(msg::FINISHED, &vd);
                    // Final flight: no timer, resent only if the client repeats its Finished.
                    c.send_flight(now, false);
                }
                c.set_connected(keyed.suite);
                Ok(Self::Traffic(keyed.suite))
            }
            (Self::Traffic(suite), _) => {
                // Renegotiation is not offered; an authenticated attempt is ignored.
                c.counters.unexpected += 1;
                Ok(Self::Traffic(suite))
            }
            (s, t) => Err(DtlsError::Inappropriate {
                expected: s.name(),
                got: msg::name(t),
            }),
        }
    }
}

fn client_hello(setup: Setup, c: &mut Conn, now: Instant, m: Message) -> Result<State, DtlsError> {
    let ch = parse_client_hello(&m.body).map_err(decode)?;
    check_version(c.version, ch.version)?;
    c.add_to_transcript(&m);
    c.peer_flight_done(m.seq);
    c.begin_flight();
    let server_random = c.random32();
    match setup {
        Setup::Psk(psk) => {
            let suite = choose_suite(&c.cfg, &ch)?;
            // A fresh session id: echoing the App-ID would announce a resumption
            // (docs/protocol.md, "DTLS: PSK-NEGOTIATE").
            let sid = c.random32();
            let sh = encode_server_hello(
                c.version,
                &server_random,
                &sid,
                suite.id(),
                ch.secure_renegotiation,
            );
            c.push_message(msg::SERVER_HELLO, &sh);
            c.push_message(msg::SERVER_HELLO_DONE, &[]);
            c.send_flight(now, true);
            Ok(State::ExpectClientKeyExchange {
                suite,
                psk,
                client_random: ch.random,
                server_random,
            })
        }
        Setup::Resume {
            session_id,
            master,
            suite,
        } => {
            if ch.session_id != session_id {
                return Err(DtlsError::Resumption("ClientHello names another session"));
            }
            if !ch.suite_ids().any(|id| id == suite.id()) {
                return Err(DtlsError::Resumption(
                    "the session's cipher suite is not offered",
                ));
            }
            let sh = encode_server_hello(
                c.version,
                &server_random,
                &session_id,
                suite.id(),
                ch.secure_renegotiation,
            );
            c.push_message(msg::SERVER_HELLO, &sh);
            let keys = derive_keys(suite, &master, &ch.random, &server_random);
            c.install_keys(keys.client_write, keys.server_write);
            c.push_ccs();
            let vd = verify_data(suite.prf_hash(), &master, Side::Server, &c.transcript);
            c.push_message(msg::FINISHED, &vd);
            c.send_flight(now, true);
            Ok(State::ExpectCcs(Keyed {
                suite,
                master,
                resumed: true,
            }))
        }
    }
}

impl Machine for State {
    fn on_message(&mut self, c: &mut Conn, now: Instant, m: Message) -> Result<(), DtlsError> {
        // Left Closed if the transition fails.
        *self = mem::replace(self, Self::Closed).handle(c, now, m)?;
        Ok(())
    }

    fn on_ccs(&mut self, c: &mut Conn) -> Result<(), DtlsError> {
        match mem::replace(self, Self::Closed) {
            Self::ExpectCcs(keyed) => {
                c.activate_read();
                let expected = verify_data(
                    keyed.suite.prf_hash(),
                    &keyed.master,
                    Side::Client,
                    &c.transcript,
                );
                *self = Self::ExpectFinished { keyed, expected };
            }
            other => {
                c.counters.unexpected += 1;
                *self = other;
            }
        }
        Ok(())
    }
}

impl DtlsServer {
    /// A PSK-NEGOTIATE server; `psk` is the TLS exporter value of the CSTP
    /// connection (docs/protocol.md, "DTLS: PSK-NEGOTIATE").
    pub fn new_psk(psk: [u8; 32], cfg: &DtlsConfig, now: Instant) -> Self {
        Self {
            conn: Conn::new(cfg, now, DTLS1_2),
            state: State::ExpectClientHello(Setup::Psk(psk)),
        }
    }

    /// A legacy server that only resumes `session_id` with the client's
    /// `X-DTLS-Master-Secret` and the suite we told it (docs/protocol.md,
    /// "DTLS: legacy resumption").
    /// The suite fixes the version: the CBC ones are served over DTLS 0.9
    /// only, the others over DTLS 1.2 ([`CipherSuite::version`]).
    pub fn new_resume(
        session_id: [u8; 32],
        master: [u8; MASTER_SECRET_LEN],
        suite: CipherSuite,
        cfg: &DtlsConfig,
        now: Instant,
    ) -> Self {
        let setup = Setup::Resume {
            session_id,
            master,
            suite,
        };
        Self {
            conn: Conn::new(cfg, now, suite.version()),
            state: State::ExpectClientHello(setup),
        }
    }

    /// Processes one received datagram; see [`Received`] for datagrams that
    /// hold several records. An `Err` is fatal: drain `poll_transmit` once
    /// to send the alert, then drop the server.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        data: &'a mut [u8],
    ) -> Result<Received<'a>, DtlsError> {
        self.conn.handle_datagram(&mut self.state, now, data)
    }

    /// Writes the next datagram to send (flight or alert) into `out`, at
    /// most `mtu` bytes; `out` should hold at least [`MIN_MTU`](super::MIN_MTU).
    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<usize> {
        self.conn.poll_transmit(out)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// Retransmits or gives up; a call before the deadline does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        if self.conn.is_closed() {
            self.state = State::Closed;
        }
    }

    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.conn.poll_event()
    }

    /// Seals application data in place. `buf` holds [`HEADROOM`](super::HEADROOM)
    /// bytes, then the payload, then [`TAILROOM`](super::TAILROOM) bytes; the
    /// record ends up at the returned range of `buf` (it starts later than 0
    /// for the AEADs, whose explicit nonce is shorter than CBC's IV, or
    /// absent). No allocation.
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Range<usize>, DtlsError> {
        self.conn.seal_in_place(buf, payload_len)
    }

    /// Copying convenience over [`seal_in_place`](Self::seal_in_place): the
    /// record is written at the start of `out`; returns its length.
    pub fn seal(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, DtlsError> {
        seal_copy(&mut self.conn, payload, out)
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Sends close_notify (via `poll_transmit`) and closes.
    pub fn close(&mut self) {
        self.conn.close();
        self.state = State::Closed;
    }

    /// The negotiated suite once connected.
    pub fn suite(&self) -> Option<CipherSuite> {
        match self.state {
            State::Traffic(s) if self.conn.is_connected() => Some(s),
            _ => None,
        }
    }

    pub fn counters(&self) -> &DtlsCounters {
        &self.conn.counters
    }
}

pub(super) fn seal_copy(c: &mut Conn, payload: &[u8], out: &mut [u8]) -> Result<usize, DtlsError> {
    if payload.len() > super::MAX_PLAINTEXT {
        return Err(DtlsError::TooLong {
            len: payload.len(),
            max: super::MAX_PLAINTEXT,
        });
    }
    let need = super::HEADROOM + payload.len() + super::TAILROOM;
    let Some(buf) = out.get_mut(..need) else {
        return Err(DtlsError::BufferTooSmall { need });
    };
    buf[super::HEADROOM..super::HEADROOM + payload.len()].copy_from_slice(payload);
    let r = c.seal_in_place(buf, payload.len())?;
    buf.copy_within(r.clone(), 0);
    Ok(r.len())
}
