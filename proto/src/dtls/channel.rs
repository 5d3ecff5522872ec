//! One client's DTLS channel as the server keeps it (docs/protocol.md,
//! "DTLS: finding the session"): the handshake, then the session that
//! carries packets, and the client starting over on the same address. A
//! restart is served beside the working session and replaces it only once
//! its Finished verifies, so a forged or replayed hello never disturbs
//! the packets. The shard moves the datagrams; this decides.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::{
    client_hello_session_id, content, is_client_hello, CipherSuite, CloseReason, DtlsConfig,
    DtlsError, DtlsEvent, DtlsServer, Received,
};
use crate::connect::LegacySuite;

/// A hello from a new address replaces a channel still in its handshake
/// at most this often, so replayed hellos cannot keep a real client's
/// handshake from finishing.
pub const PENDING_REPLACE_AFTER: Duration = Duration::from_secs(1);

/// What the CONNECT gave the DTLS handshake to work with.
#[derive(Clone, Copy, Debug)]
pub enum ChannelKey {
    /// PSK-NEGOTIATE: the TLS exporter of the CONNECT's connection.
    Psk([u8; 32]),
    /// Legacy resumption of the session the client named in its headers.
    Legacy {
        master_secret: [u8; 48],
        suite: LegacySuite,
    },
}

/// What a session's channels are doing, for [`on_hello`].
#[derive(Clone, Copy, Debug)]
pub struct ChannelState<A> {
    pub peer: A,
    pub closed: bool,
    pub created: Instant,
}

/// What to do with a ClientHello for a live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloAction {
    /// The channel with this address handles it: a retransmission, or
    /// the client starting over.
    ToChannel(usize),
    /// A young handshake from another address goes on; this one is dropped.
    Ignore,
    /// A new channel for this address (it replaces a pending one).
    NewChannel,
}

/// A ClientHello for a session from `from`, given the session's working
/// and pending channels (either may be absent).
pub fn on_hello<A: PartialEq>(
    now: Instant,
    from: &A,
    active: Option<ChannelState<&A>>,
    pending: Option<ChannelState<&A>>,
) -> HelloAction {
    // The channel for this address already has its socket: a second one on
    // the same 4-tuple would split the handshake between two servers.
    for (i, c) in [active, pending].into_iter().enumerate() {
        if c.is_some_and(|c| c.peer == from && !c.closed) {
            return HelloAction::ToChannel(i);
        }
    }
    match pending {
        Some(p) if now.saturating_duration_since(p.created) < PENDING_REPLACE_AFTER => {
            HelloAction::Ignore
        }
        _ => HelloAction::NewChannel,
    }
}

/// What happened on a channel, for the shard to act on and log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The first handshake finished: packets may go this way.
    Connected { suite: CipherSuite },
    /// A restart finished and took over from the working session.
    Reconnected { suite: CipherSuite },
    /// The client started over (a hello with a new random).
    Restarted,
    /// A restart failed; the working session goes on.
    RestartFailed { error: DtlsError },
    /// A ClientHello that names another session: ignored.
    ForeignHello,
    /// The channel ended: a fatal error, or the peer's alert.
    Closed {
        error: Option<DtlsError>,
        reason: Option<CloseReason>,
    },
}

/// How [`ServerChannel::begin_datagram`] took a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Records for the working session: take them with
    /// [`ServerChannel::next_record`].
    Records,
    /// Consumed (a restart's handshake, or ignored).
    Consumed,
}

pub struct ServerChannel {
    /// The handshake, then the session that carries packets.
    server: DtlsServer,
    /// The client starting over while `server` carries packets.
    restart: Option<DtlsServer>,
    key: ChannelKey,
    session_id: [u8; 32],
    mtu: u16,
    /// The random of the latest ClientHello served: another one is the
    /// client starting over (after DPD or a resume), not a retransmission.
    hello_random: [u8; 32],
    connected: bool,
    closed: bool,
    /// The last record that authenticated.
    last_rx: Instant,
    events: VecDeque<ChannelEvent>,
}

impl ServerChannel {
    /// A channel for the session `session_id` (App-ID or legacy
    /// Session-ID), started by the ClientHello `hello` (fed next, with
    /// [`begin_datagram`](Self::begin_datagram), like any datagram).
    pub fn new(
        key: ChannelKey,
        session_id: [u8; 32],
        mtu: u16,
        now: Instant,
        hello: &[u8],
    ) -> Self {
        Self {
            server: new_server(key, &session_id, mtu, now),
            restart: None,
            key,
            session_id,
            mtu,
            hello_random: hello_random(hello).unwrap_or_default(),
            connected: false,
            closed: false,
            last_rx: now,
            events: VecDeque::new(),
        }
    }

    /// Takes one datagram from the client. A ClientHello with a new random
    /// starts the handshake over; handshake datagrams during a restart go
    /// to it whole.
    pub fn begin_datagram(&mut self, now: Instant, data: &mut [u8]) -> Inbound {
        if self.closed {
            return Inbound::Consumed;
        }
        if let Some(random) = hello_random(data) {
            if client_hello_session_id(data) != Some(self.session_id.as_slice()) {
                // Never restart for another session's hello.
                self.events.push_back(ChannelEvent::ForeignHello);
                return Inbound::Consumed;
            }
            if random != self.hello_random {
                self.hello_random = random;
                self.events.push_back(ChannelEvent::Restarted);
                let fresh = new_server(self.key, &self.session_id, self.mtu, now);
                if self.connected {
                    // Packets keep the working keys until this one is done.
                    self.restart = Some(fresh);
                } else {
                    self.server = fresh;
                }
            }
        }
        // Data records belong to the working session, the rest of a
        // restart to the new handshake.
        let is_data = data.first() == Some(&content::APPLICATION_DATA);
        if !is_data && self.restart.is_some() {
            self.restart_datagram(now, data);
            return Inbound::Consumed;
        }
        Inbound::Records
    }

    /// The next record of a datagram [`begin_datagram`](Self::begin_datagram)
    /// took as [`Inbound::Records`], from `data[off..]`: its plaintext and
    /// where the following one starts. None at the end, or when the channel
    /// failed (see [`poll_event`](Self::poll_event)).
    pub fn next_record<'d>(
        &mut self,
        now: Instant,
        data: &'d mut [u8],
    ) -> Option<(&'d mut [u8], usize)> {
        if self.closed || data.is_empty() {
            return None;
        }
        let received = self.server.handle_datagram(now, data);
        self.pump();
        match received {
            Ok(Received::Done) => None,
            Ok(Received::AppData { data, next }) => {
                self.last_rx = now;
                Some((data, next))
            }
            Err(error) => {
                self.close_with(Some(error), None);
                None
            }
        }
    }

    /// Takes the working session's events: its state changes at once.
    fn pump(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match event {
                DtlsEvent::Connected { suite } => {
                    self.connected = true;
                    self.events.push_back(ChannelEvent::Connected { suite });
                }
                DtlsEvent::Closed { reason } => self.close_with(None, Some(reason)),
            }
        }
    }

    fn restart_datagram(&mut self, now: Instant, data: &mut [u8]) {
        let Some(restart) = self.restart.as_mut() else {
            return;
        };
        // A handshake carries no application data: nothing to take out.
        if let Err(error) = restart.handle_datagram(now, data) {
            self.events.push_back(ChannelEvent::RestartFailed { error });
        }
        self.collect_restart(now);
    }

    /// Moves the restart's outcome into the channel's events.
    fn collect_restart(&mut self, now: Instant) {
        let Some(restart) = self.restart.as_mut() else {
            return;
        };
        let mut done = None;
        while let Some(event) = restart.poll_event() {
            if let DtlsEvent::Connected { suite } = event {
                done = Some(suite);
            }
        }
        if let Some(suite) = done {
            if let Some(new) = self.restart.take() {
                // Its last flight may still be queued: it goes out next.
                self.server = new;
            }
            self.last_rx = now;
            self.events.push_back(ChannelEvent::Reconnected { suite });
        } else if restart.is_closed() {
            self.restart = None;
        }
    }

    /// The next datagram to send (flights, alerts), into `out`.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        self.server.poll_transmit(now, out).or_else(|| {
            self.restart
                .as_mut()
                .and_then(|r| r.poll_transmit(now, out))
        })
    }

    /// What happened since the last call.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }

    /// The next deadline of either handshake.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let restart = self.restart.as_ref().and_then(DtlsServer::poll_timeout);
        [self.server.poll_timeout(), restart]
            .into_iter()
            .flatten()
            .min()
    }

    /// Retransmits or gives up; a handshake that gave up ends the channel,
    /// a restart that did only itself.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
        self.pump();
        if let Some(r) = self.restart.as_mut() {
            r.handle_timeout(now);
            if r.is_closed() {
                self.restart = None;
            }
        }
        if self.server.is_closed() && !self.closed {
            self.close_with(None, None);
        }
    }

    /// Seals one record in place (see [`DtlsServer::seal_in_place`]).
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Range<usize>, DtlsError> {
        self.server.seal_in_place(buf, payload_len)
    }

    /// Sends close_notify (via `poll_transmit`) and ends the channel.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.server.close();
            self.restart = None;
        }
    }

    fn close_with(&mut self, error: Option<DtlsError>, reason: Option<CloseReason>) {
        if !self.closed {
            self.closed = true;
            self.restart = None;
            self.events
                .push_back(ChannelEvent::Closed { error, reason });
        }
    }

    /// Whether packets for the client should go this way.
    pub fn is_active(&self) -> bool {
        self.connected && !self.closed
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether a restart is being served beside the working session.
    pub fn is_restarting(&self) -> bool {
        self.restart.is_some()
    }

    pub fn suite(&self) -> Option<CipherSuite> {
        self.server.suite()
    }

    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }
}

fn new_server(key: ChannelKey, session_id: &[u8; 32], mtu: u16, now: Instant) -> DtlsServer {
    let cfg = DtlsConfig {
        mtu: usize::from(mtu),
        ..DtlsConfig::default()
    };
    match key {
        ChannelKey::Psk(psk) => DtlsServer::new_psk(psk, &cfg, now),
        ChannelKey::Legacy {
            master_secret,
            suite,
        } => {
            let suite = match suite {
                LegacySuite::Aes128Gcm => CipherSuite::RsaAes128GcmSha256,
                LegacySuite::Aes256Gcm => CipherSuite::RsaAes256GcmSha384,
                LegacySuite::Aes128Cbc => CipherSuite::RsaAes128CbcSha,
                LegacySuite::Aes256Cbc => CipherSuite::RsaAes256CbcSha,
            };
            DtlsServer::new_resume(*session_id, master_secret, suite, &cfg, now)
        }
    }
}

/// The client random of a ClientHello datagram: bytes 27..59 of the first
/// record (13 of record header, 12 of handshake header, 2 of version).
fn hello_random(datagram: &[u8]) -> Option<[u8; 32]> {
    if !is_client_hello(datagram) {
        return None;
    }
    datagram.get(27..59)?.try_into().ok()
}

#[cfg(test)]
mod tests;
