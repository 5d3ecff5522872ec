//! Client handshakes, mirroring [`server`](super::server): a PSK-NEGOTIATE
//! client whose ClientHello looks like openconnect's GnuTLS one (DTLS 1.2,
//! session_id = App-ID, no extensions; docs/protocol.md,
//! "DTLS: PSK-NEGOTIATE"), and the legacy resuming client
//! ("DTLS: legacy resumption"). For tests and load generation.

use std::mem;
use std::ops::Range;
use std::time::Instant;

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::codec::Reader;
use super::conn::{Conn, Machine};
use super::handshake::{
    encode_client_hello, encode_psk_client_key_exchange, msg, parse_server_hello,
};
use super::keys::{
    derive_keys, master_secret, psk_premaster, verify_data, Side, MASTER_SECRET_LEN,
    VERIFY_DATA_LEN,
};
use super::reassembly::Message;
use super::server::{decode, seal_copy};
use super::{CipherSuite, DtlsConfig, DtlsCounters, DtlsError, DtlsEvent, Received};

/// The PSK identity openconnect sends (ignored by servers).
const PSK_IDENTITY: &[u8] = b"psk";

enum Setup {
    Psk {
        psk: [u8; 32],
        app_id: Vec<u8>,
    },
    Resume {
        session_id: [u8; 32],
        master: [u8; MASTER_SECRET_LEN],
    },
}

struct Keyed {
    suite: CipherSuite,
    master: [u8; MASTER_SECRET_LEN],
    resumed: bool,
}

enum State {
    ExpectServerHello {
        setup: Setup,
        client_random: [u8; 32],
        offered: Vec<CipherSuite>,
    },
    ExpectServerHelloDone {
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

/// A DTLS 1.2 client (0.9 when resuming a CBC suite); same calling
/// convention as [`DtlsServer`](super::DtlsServer).
pub struct DtlsClient {
    conn: Conn,
    state: State,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::ExpectServerHello { .. } => "ServerHello",
            Self::ExpectServerHelloDone { .. } => "ServerHelloDone",
            Self::ExpectCcs(_) => "ChangeCipherSpec",
            Self::ExpectFinished { .. } => "Finished",
            Self::Traffic(_) => "application data",
            Self::Closed => "nothing (closed)",
        }
    }

    fn handle(self, c: &mut Conn, now: Instant, m: Message) -> Result<Self, DtlsError> {
        match (self, m.msg_type) {
            (
                Self::ExpectServerHello {
                    setup,
                    client_random,
                    offered,
                },
                msg::SERVER_HELLO,
            ) => {
                let sh = parse_server_hello(&m.body).map_err(decode)?;
                if sh.version != c.version {
                    return Err(DtlsError::ProtocolVersion(sh.version));
                }
                let suite = CipherSuite::from_id(sh.suite)
                    .filter(|s| offered.contains(s))
                    .ok_or(DtlsError::IllegalParameter(
                        "server chose a suite we did not offer",
                    ))?;
                c.add_to_transcript(&m);
                match setup {
                    Setup::Psk { psk, app_id } => {
                        if !app_id.is_empty() && sh.session_id == app_id {
                            return Err(DtlsError::IllegalParameter(
                                "server echoed the App-ID (a resumption)",
                            ));
                        }
                        Ok(Self::ExpectServerHelloDone {
                            suite,
                            psk,
                            client_random,
                            server_random: sh.random,
                        })
                    }
                    Setup::Resume { session_id, master } => {
                        if sh.session_id != session_id {
                            // openconnect refuses this too: a full handshake could be a MITM.
                            return Err(DtlsError::Resumption("server did not resume the session"));
                        }
                        let keys = derive_keys(suite, &master, &client_random, &sh.random);
                        c.install_keys(keys.server_write, keys.client_write);
                        Ok(Self::ExpectCcs(Keyed {
                            suite,
                            master,
                            resumed: true,
                        }))
                    }
                }
            }
            (s @ Self::ExpectServerHelloDone { .. }, msg::SERVER_KEY_EXCHANGE) => {
                // Only a PSK identity hint can come here; we have no use for it.
                let mut r = Reader::new(&m.body);
                r.vec16("psk_identity_hint")
                    .and_then(|_| r.expect_empty("ServerKeyExchange"))
                    .map_err(decode)?;
                c.add_to_transcript(&m);
                Ok(s)
            }
            (
                Self::ExpectServerHelloDone {
                    suite,
                    psk,
                    client_random,
                    server_random,
                },
                msg::SERVER_HELLO_DONE,
            ) => {
                if !m.body.is_empty() {
                    return Err(DtlsError::Decode("ServerHelloDone"));
                }
                c.add_to_transcript(&m);
                c.peer_flight_done(m.seq);
                c.begin_flight();
                c.push_message(
                    msg::CLIENT_KEY_EXCHANGE,
                    &encode_psk_client_key_exchange(PSK_IDENTITY),
                );
                let master = master_secret(
                    suite.prf_hash(),
                    &psk_premaster(&psk),
                    &client_random,
                    &server_random,
                );
                let keys = derive_keys(suite, &master, &client_random, &server_random);
                c.install_keys(keys.server_write, keys.client_write);
                c.push_ccs();
                let vd = verify_data(suite.prf_hash(), &master, Side::Client, &c.transcript);
                c.push_message(msg::FINISHED, &vd);
                c.send_flight(now, true);
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
                    c.peer_flight_done(m.seq);
                    c.begin_flight();
                    c.push_ccs();
                    let vd = verify_data(
                        keyed.suite.prf_hash(),
                        &keyed.master,
                        Side::Client,
                        &c.transcript,
                    );
                    c.push_message(msg::FINISHED, &vd);
                    c.send_flight(now, false);
                } else {
                    c.stop_flight();
                }
                c.set_connected(keyed.suite);
                Ok(Self::Traffic(keyed.suite))
            }
            (Self::Traffic(suite), _) => {
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

impl Machine for State {
    fn on_message(&mut self, c: &mut Conn, now: Instant, m: Message) -> Result<(), DtlsError> {
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
                    Side::Server,
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

impl DtlsClient {
    /// A PSK-NEGOTIATE client offering `cfg.suites` with `app_id` (at most
    /// 32 bytes) as session_id. The ClientHello is queued at once.
    pub fn new_psk(
        psk: [u8; 32],
        app_id: &[u8],
        cfg: &DtlsConfig,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        if app_id.len() > 32 {
            return Err(DtlsError::IllegalParameter("App-ID longer than 32 bytes"));
        }
        let offered: Vec<CipherSuite> = cfg.suites.iter().copied().filter(|s| s.is_psk()).collect();
        if offered.is_empty() {
            return Err(DtlsError::NoCommonSuite);
        }
        Ok(Self::start(
            Setup::Psk {
                psk,
                app_id: app_id.to_vec(),
            },
            app_id,
            offered,
            cfg,
            now,
        ))
    }

    /// A legacy client resuming `session_id` with `master` and `suite`, over
    /// the suite's version ([`CipherSuite::version`]).
    pub fn new_resume(
        session_id: [u8; 32],
        master: [u8; MASTER_SECRET_LEN],
        suite: CipherSuite,
        cfg: &DtlsConfig,
        now: Instant,
    ) -> Self {
        Self::start(
            Setup::Resume { session_id, master },
            &session_id,
            vec![suite],
            cfg,
            now,
        )
    }

    fn start(
        setup: Setup,
        sid: &[u8],
        offered: Vec<CipherSuite>,
        cfg: &DtlsConfig,
        now: Instant,
    ) -> Self {
        // Offers are all PSK (DTLS 1.2) or the one resumed suite.
        let version = offered[0].version();
        let mut conn = Conn::new(cfg, now, version);
        let client_random = conn.random32();
        let ids: Vec<u16> = offered.iter().map(|s| s.id()).collect();
        conn.push_message(
            msg::CLIENT_HELLO,
            &encode_client_hello(version, &client_random, sid, &ids),
        );
        conn.send_flight(now, true);
        Self {
            conn,
            state: State::ExpectServerHello {
                setup,
                client_random,
                offered,
            },
        }
    }

    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        data: &'a mut [u8],
    ) -> Result<Received<'a>, DtlsError> {
        self.conn.handle_datagram(&mut self.state, now, data)
    }

    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<usize> {
        self.conn.poll_transmit(out)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        if self.conn.is_closed() {
            self.state = State::Closed;
        }
    }

    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.conn.poll_event()
    }

    /// See [`DtlsServer::seal_in_place`](super::DtlsServer::seal_in_place).
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Range<usize>, DtlsError> {
        self.conn.seal_in_place(buf, payload_len)
    }

    pub fn seal(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, DtlsError> {
        seal_copy(&mut self.conn, payload, out)
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    pub fn close(&mut self) {
        self.conn.close();
        self.state = State::Closed;
    }

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
