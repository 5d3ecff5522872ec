//! The DTLS channel of a tunnel: a UDP socket connect()ed to the client
//! on the session's home shard, the sans-IO `DtlsServer` behind it, and
//! OpenConnect's framing inside its records (one type byte, then the
//! packet, a DPD or a keepalive).
//!
//! Datagrams from the client arrive through the shard's receive ring
//! (`dataplane`), which calls `on_datagram`; records are opened in place
//! in the ring's buffer. Packets to the client are sealed in place in a
//! TX ring slot. The channel's own task only drives handshake timers.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use shards::AppId;

use super::core::Shard;
use super::notify::Notify;
use super::tunnel::{EndReason, Tunnel};
use crate::proto::connect::LegacySuite;
use crate::proto::cstp::FrameType;
use crate::proto::dtls::{self, CipherSuite, DtlsConfig, DtlsEvent, DtlsServer, Received};
use crate::sys;

/// What the CONNECT gave the DTLS handshake to work with.
#[derive(Clone, Copy)]
pub(crate) enum DtlsKey {
    /// PSK-NEGOTIATE: the TLS exporter of the CONNECT's connection.
    Psk([u8; 32]),
    /// Legacy resumption of the session the client named in its headers.
    Legacy {
        master_secret: [u8; 48],
        suite: LegacySuite,
    },
}

/// Room beyond the link MTU in a receive buffer: the client never sends
/// a datagram above its link MTU (X-CSTP-Base-MTU).
pub(crate) const RECV_SLACK: usize = 512;
/// Pause before receiving again after the socket reported an error
/// (ICMP port unreachable: the client went away, or is restarting).
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// A client that sends DATA over CSTP this long after its last UDP packet
/// has given up on DTLS: send over CSTP too.
pub(crate) const CSTP_FALLBACK_AFTER: Duration = Duration::from_secs(15);

/// A channel from a new address replaces a pending one at most this often,
/// so replayed hellos cannot keep a real client's handshake from finishing.
const PENDING_REPLACE_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct DtlsChannel {
    /// The handshake, then the session that carries packets.
    server: RefCell<DtlsServer>,
    /// The client starting over on this address while `server` carries
    /// packets: served beside it, it takes over once its Finished is
    /// verified, so a forged hello never disturbs the working session.
    restart: RefCell<Option<DtlsServer>>,
    key: DtlsKey,
    app_id: AppId,
    mtu: u16,
    /// The random of the latest ClientHello served: a hello with another
    /// one on this socket is the client starting over (after DPD or a
    /// resume), not a retransmission.
    hello_random: Cell<[u8; 32]>,
    sock: OwnedFd,
    /// Its receive's token on the shard's ring (`dataplane::Receivers`).
    token: Cell<Option<u32>>,
    /// errno of a receive that stopped on an error; the task re-arms it.
    recv_error: Cell<i32>,
    /// The handshake deadline the channel's task sleeps until.
    sleeping_until: Cell<Option<Instant>>,
    pub(crate) peer: SocketAddr,
    created: Instant,
    /// The last record that authenticated (data, DPD, keepalive).
    last_rx: Cell<Instant>,
    connected: Cell<bool>,
    closed: Cell<bool>,
    wake: Notify,
    /// Bytes of IP packets carried each way (the records' DATA payloads).
    rx_bytes: Cell<u64>,
    tx_bytes: Cell<u64>,
}

impl DtlsChannel {
    /// The negotiated suite, as occtl shows it.
    pub(crate) fn cipher(&self) -> Option<&'static str> {
        self.server.borrow().suite().map(|s| s.description())
    }

    /// Whether packets for the client should go this way.
    pub(crate) fn is_active(&self) -> bool {
        self.connected.get() && !self.closed.get()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The socket's receive stopped on `errno`: the task pauses, re-arms.
    pub(crate) fn receive_failed(&self, errno: i32) {
        self.recv_error.set(errno);
        self.wake.notify();
    }

    pub(crate) fn last_rx(&self) -> Instant {
        self.last_rx.get()
    }

    /// Ends the channel; the client falls back to CSTP (and may retry).
    pub(crate) fn close(&self) {
        if !self.closed.replace(true) {
            self.server.borrow_mut().close();
            self.restart.borrow_mut().take();
            self.wake.notify();
        }
    }

    /// Seals `ty` + `payload` as one record in a TX slot and queues it;
    /// the caller submits the TX ring. False if it could not be sent.
    pub(crate) fn send(&self, shard: &Shard, ty: FrameType, payload: &[u8]) -> bool {
        let mut server = self.server.borrow_mut();
        let fd = self.sock.as_raw_fd();
        let sent = shard.tx.borrow_mut().queue_datagram(fd, |buf| {
            let end = dtls::HEADROOM + 1 + payload.len();
            let buf = buf.get_mut(..end + dtls::TAILROOM)?;
            buf[dtls::HEADROOM] = ty.to_byte();
            buf[dtls::HEADROOM + 1..end].copy_from_slice(payload);
            server.seal_in_place(buf, 1 + payload.len()).ok()
        });
        if sent && ty == FrameType::Data {
            self.tx_bytes
                .set(self.tx_bytes.get() + payload.len() as u64);
        }
        sent
    }

    /// Queues whatever the handshakes want sent (flights, alerts).
    fn flush_handshake(&self, shard: &Shard, now: Instant) {
        let fd = self.sock.as_raw_fd();
        let mut tx = shard.tx.borrow_mut();
        let mut server = self.server.borrow_mut();
        while tx.queue_with(fd, |buf| server.poll_transmit(now, buf).map(|n| 0..n)) {}
        if let Some(restart) = self.restart.borrow_mut().as_mut() {
            while tx.queue_with(fd, |buf| restart.poll_transmit(now, buf).map(|n| 0..n)) {}
        }
    }

    /// The next deadline of either handshake.
    fn poll_timeout(&self) -> Option<Instant> {
        let restart = self
            .restart
            .borrow()
            .as_ref()
            .and_then(DtlsServer::poll_timeout);
        [self.server.borrow().poll_timeout(), restart]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&self, now: Instant) {
        self.server.borrow_mut().handle_timeout(now);
        let mut restart = self.restart.borrow_mut();
        if let Some(r) = restart.as_mut() {
            r.handle_timeout(now);
            if r.is_closed() {
                *restart = None;
            }
        }
        if self.server.borrow().is_closed() {
            self.closed.set(true);
        }
    }

    /// Handles one datagram from the client: handshake, or records each
    /// holding one OpenConnect packet. The caller submits the TX ring.
    pub(crate) fn on_datagram(
        self: &Rc<Self>,
        shard: &Shard,
        tunnel: &Tunnel,
        now: Instant,
        data: &mut [u8],
    ) {
        self.handle_datagram(shard, tunnel, now, data);
        // A handshake step may have moved its deadline: the task sleeps
        // until the old one.
        if !self.closed.get() && self.poll_timeout() != self.sleeping_until.get() {
            self.wake.notify();
        }
    }

    fn handle_datagram(
        self: &Rc<Self>,
        shard: &Shard,
        tunnel: &Tunnel,
        now: Instant,
        data: &mut [u8],
    ) {
        if let Some(random) = hello_random(data) {
            let ours =
                dtls::client_hello_session_id(data) == Some(self.app_id.as_bytes().as_slice());
            if !ours {
                // Never restart for another session's hello (the caller
                // routes hellos from other addresses before this).
                tracing::debug!(user = %tunnel.user, peer = %self.peer, "ClientHello for another session ignored");
                return;
            }
            if random != self.hello_random.replace(random) {
                tracing::debug!(user = %tunnel.user, peer = %self.peer, "DTLS handshake restarted by the client");
                let fresh = new_server(self.key, self.app_id, self.mtu, now);
                if self.connected.get() {
                    // Packets keep the working keys until this one is done.
                    *self.restart.borrow_mut() = Some(fresh);
                } else {
                    *self.server.borrow_mut() = fresh;
                }
            }
        }
        // Data records belong to the working session; anything else, while
        // the client starts over, to the new handshake.
        let is_data = data.first() == Some(&dtls::content::APPLICATION_DATA);
        if !is_data && self.restart.borrow().is_some() {
            self.on_restart_datagram(shard, tunnel, now, data);
            return;
        }
        let mut off = 0;
        while off < data.len() {
            let received = self
                .server
                .borrow_mut()
                .handle_datagram(now, &mut data[off..]);
            match received {
                Ok(Received::Done) => break,
                Ok(Received::AppData { data: record, next }) => {
                    off += next;
                    self.last_rx.set(now);
                    self.on_record(shard, tunnel, record, now);
                }
                Err(e) => {
                    tracing::info!(user = %tunnel.user, peer = %self.peer, "DTLS closed: {e}");
                    self.closed.set(true);
                    break;
                }
            }
        }
        self.flush_handshake(shard, now);
        while let Some(event) = self.server.borrow_mut().poll_event() {
            match event {
                DtlsEvent::Connected { suite } => {
                    self.connected.set(true);
                    self.last_rx.set(now);
                    shard.metrics().dtls_handshakes.inc();
                    tunnel.dtls_connected(self);
                    tracing::info!(user = %tunnel.user, lease = %tunnel.lease, peer = %self.peer, suite = suite.name(), "DTLS connected");
                }
                DtlsEvent::Closed { reason } => {
                    tracing::info!(user = %tunnel.user, peer = %self.peer, ?reason, "DTLS closed");
                    self.closed.set(true);
                }
            }
        }
    }

    /// A handshake datagram of the client starting over on this address.
    /// It fails alone: the working session goes on.
    fn on_restart_datagram(&self, shard: &Shard, tunnel: &Tunnel, now: Instant, data: &mut [u8]) {
        let mut slot = self.restart.borrow_mut();
        let Some(restart) = slot.as_mut() else { return };
        // A handshake carries no application data: nothing to take out.
        if let Err(e) = restart.handle_datagram(now, data) {
            tracing::debug!(user = %tunnel.user, peer = %self.peer, "DTLS restart failed, the working session goes on: {e}");
        }
        let fd = self.sock.as_raw_fd();
        {
            let mut tx = shard.tx.borrow_mut();
            while tx.queue_with(fd, |buf| restart.poll_transmit(now, buf).map(|n| 0..n)) {}
        }
        let mut done = None;
        while let Some(event) = restart.poll_event() {
            if let DtlsEvent::Connected { suite } = event {
                done = Some(suite);
            }
        }
        if restart.is_closed() && done.is_none() {
            *slot = None;
            return;
        }
        if let Some(suite) = done {
            if let Some(new) = slot.take() {
                *self.server.borrow_mut() = new;
            }
            self.last_rx.set(now);
            shard.metrics().dtls_handshakes.inc();
            tracing::info!(user = %tunnel.user, lease = %tunnel.lease, peer = %self.peer, suite = suite.name(), "DTLS reconnected on the same address");
        }
    }

    fn on_record(&self, shard: &Shard, tunnel: &Tunnel, record: &mut [u8], now: Instant) {
        let Some((&ty, payload)) = record.split_first() else {
            return;
        };
        match FrameType::from_byte(ty) {
            FrameType::Data => {
                self.rx_bytes
                    .set(self.rx_bytes.get() + payload.len() as u64);
                tunnel.packet_from_client(payload, shard, crate::metrics::Channel::Dtls, now);
            }
            // Echo the whole record: the client's MTU probe needs its size back.
            FrameType::DpdReq => {
                self.send(shard, FrameType::DpdResp, payload);
            }
            FrameType::Disconnect => {
                tracing::info!(user = %tunnel.user, "client sent DISCONNECT over DTLS");
                tunnel.end(EndReason::ClientDisconnect);
            }
            FrameType::DpdResp | FrameType::Keepalive => {}
            _ => tunnel.count_dropped(),
        }
    }
}

fn new_server(key: DtlsKey, app_id: AppId, mtu: u16, now: Instant) -> DtlsServer {
    let cfg = DtlsConfig {
        mtu: usize::from(mtu),
        ..DtlsConfig::default()
    };
    match key {
        DtlsKey::Psk(psk) => DtlsServer::new_psk(psk, &cfg, now),
        DtlsKey::Legacy {
            master_secret,
            suite,
        } => {
            let suite = match suite {
                LegacySuite::Aes128Gcm => CipherSuite::RsaAes128GcmSha256,
                LegacySuite::Aes256Gcm => CipherSuite::RsaAes256GcmSha384,
                LegacySuite::Aes128Cbc => CipherSuite::RsaAes128CbcSha,
                LegacySuite::Aes256Cbc => CipherSuite::RsaAes256CbcSha,
            };
            DtlsServer::new_resume(*app_id.as_bytes(), master_secret, suite, &cfg, now)
        }
    }
}

/// The client random of a ClientHello datagram: bytes 27..59 of the
/// first record (13 of record header, 12 of handshake header, 2 of
/// version).
fn hello_random(datagram: &[u8]) -> Option<[u8; 32]> {
    if !dtls::is_client_hello(datagram) {
        return None;
    }
    datagram.get(27..59)?.try_into().ok()
}

/// A ClientHello for the session `app_id` (it names this shard) from `from`.
/// `local`: the server address the hello was sent to; the channel's
/// socket binds it, so replies leave from where the client expects them.
pub(crate) fn start(
    shard: &Rc<Shard>,
    app_id: AppId,
    (from, local): (SocketAddr, SocketAddr),
    mut hello: Vec<u8>,
) {
    let Some(tunnel) = shard.dtls_tunnel(&app_id) else {
        tracing::debug!(%from, "DTLS ClientHello for no live session");
        return;
    };
    let Some(key) = tunnel.dtls_key else { return };
    let now = Instant::now();
    let same_address = [tunnel.dtls(), tunnel.dtls_pending()]
        .into_iter()
        .flatten()
        .find(|c| c.peer == from && !c.closed.get());
    if let Some(ch) = same_address {
        // The channel for this address already has its socket: a hello that
        // raced our connect() (or came late from another shard) is handled
        // there, as a retransmission (same random) or a restart. A second
        // socket on the same 4-tuple would split the handshake between two
        // servers with different keys.
        ch.on_datagram(shard, &tunnel, now, &mut hello);
        let _ = shard.tx.borrow_mut().submit();
        return;
    }
    if let Some(p) = tunnel.dtls_pending() {
        if now.saturating_duration_since(p.created) < PENDING_REPLACE_AFTER {
            tracing::debug!(user = %tunnel.user, %from, pending = %p.peer, "DTLS ClientHello from a third address while a handshake is young: ignored");
            return;
        }
    }
    let sock = match sys::net::udp_socket(local, Some(from)) {
        Ok(sock) => sock,
        Err(e) => {
            tracing::warn!(%from, "DTLS socket: {e}");
            return;
        }
    };
    if let Some(p) = tunnel.net_priority {
        if let Err(e) = sys::net::set_net_priority(sock.as_raw_fd(), p) {
            tracing::debug!(%from, "net-priority {p:?}: {e}");
        }
    }
    let channel = Rc::new(DtlsChannel {
        server: RefCell::new(new_server(key, app_id, tunnel.base_mtu, now)),
        restart: RefCell::new(None),
        key,
        app_id,
        mtu: tunnel.base_mtu,
        hello_random: Cell::new(hello_random(&hello).unwrap_or_default()),
        sock,
        token: Cell::new(None),
        recv_error: Cell::new(0),
        sleeping_until: Cell::new(None),
        peer: from,
        created: now,
        last_rx: Cell::new(now),
        connected: Cell::new(false),
        closed: Cell::new(false),
        wake: Notify::default(),
        rx_bytes: Cell::new(0),
        tx_bytes: Cell::new(0),
    });
    tracing::debug!(user = %tunnel.user, %from, "DTLS ClientHello");
    // It carries packets only once its handshake is done (dtls_connected).
    tunnel.set_pending_dtls(channel.clone());
    channel.on_datagram(shard, &tunnel, now, &mut hello);
    let _ = shard.tx.borrow_mut().submit();
    drop(hello);
    let token = shard
        .receivers
        .borrow_mut()
        .register(channel.clone(), tunnel.clone());
    channel.token.set(Some(token));
    super::dataplane::sync_receivers(shard);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        // A panic ends this channel only; the tunnel goes on over CSTP.
        let _ = super::guard::contain(&shard, "DTLS channel", run(&shard, &channel)).await;
        channel.close();
        channel.flush_handshake(&shard, Instant::now());
        let _ = shard.tx.borrow_mut().submit();
        shard.receivers.borrow_mut().unregister(token);
        super::dataplane::sync_receivers(&shard);
        tunnel.dtls_ended(&channel);
        tracing::info!(
            user = %tunnel.user, peer = %channel.peer, rx_bytes = channel.rx_bytes.get(), tx_bytes = channel.tx_bytes.get(),
            "DTLS channel ended"
        );
    })
    .detach();
}

/// Drives the handshake timers until the channel ends; re-arms the
/// socket's receive after an error. Datagrams are handled by `dataplane`.
async fn run(shard: &Rc<Shard>, ch: &Rc<DtlsChannel>) {
    while !ch.closed.get() {
        let deadline = ch.poll_timeout();
        ch.sleeping_until.set(deadline);
        match deadline {
            Some(d) => {
                future::or(
                    ch.wake.notified(),
                    glommio::timer::sleep(d.saturating_duration_since(Instant::now())),
                )
                .await
            }
            None => ch.wake.notified().await,
        }
        let errno = ch.recv_error.replace(0);
        if errno != 0 && !ch.closed.get() {
            tracing::debug!(peer = %ch.peer, "DTLS receive: {}", std::io::Error::from_raw_os_error(errno));
            glommio::timer::sleep(RECV_ERROR_PAUSE).await;
            if let Some(token) = ch.token.get() {
                shard.receivers.borrow_mut().rearm(token);
                super::dataplane::sync_receivers(shard);
            }
        }
        let now = Instant::now();
        ch.handle_timeout(now);
        ch.flush_handshake(shard, now);
        let _ = shard.tx.borrow_mut().submit();
    }
}
