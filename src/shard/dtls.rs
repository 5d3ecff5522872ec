//! The DTLS channel of a tunnel (protocol notes §5): a UDP socket
//! connect()ed to the client on the session's home shard, the sans-IO
//! `DtlsServer` behind it, and the data framing of §5.4.
//!
//! Packets to the client are sealed in place in a TX ring slot; records
//! from the client are opened in place in the channel's receive buffer.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::UdpSocket;
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

/// Datagrams handled per wake-up before yielding to other tasks.
pub(crate) const RECV_BATCH: usize = 32;
/// Room beyond the link MTU in a channel's receive buffer: the client
/// never sends a datagram above its link MTU (X-CSTP-Base-MTU).
pub(crate) const RECV_SLACK: usize = 512;
/// A client that sends DATA over CSTP this long after its last UDP packet
/// has given up on DTLS (§5.5): send over CSTP too.
pub(crate) const CSTP_FALLBACK_AFTER: Duration = Duration::from_secs(15);

pub(crate) struct DtlsChannel {
    server: RefCell<DtlsServer>,
    key: DtlsKey,
    app_id: AppId,
    mtu: u16,
    /// The random of the ClientHello being served: a hello with another
    /// one on this socket is the client starting over (after DPD or a
    /// resume), not a retransmission.
    hello_random: Cell<[u8; 32]>,
    sock: UdpSocket,
    pub(crate) peer: SocketAddr,
    last_rx: Cell<Instant>,
    connected: Cell<bool>,
    closed: Cell<bool>,
    wake: Notify,
    /// Bytes of IP packets carried each way (the records' DATA payloads).
    rx_bytes: Cell<u64>,
    tx_bytes: Cell<u64>,
}

impl DtlsChannel {
    /// Whether packets for the client should go this way.
    pub(crate) fn is_active(&self) -> bool {
        self.connected.get() && !self.closed.get()
    }

    pub(crate) fn last_rx(&self) -> Instant {
        self.last_rx.get()
    }

    /// Ends the channel; the client falls back to CSTP (and may retry).
    pub(crate) fn close(&self) {
        if !self.closed.replace(true) {
            self.server.borrow_mut().close();
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

    /// Queues whatever the handshake wants sent (flights, alerts).
    fn flush_handshake(&self, shard: &Shard, now: Instant) {
        let mut server = self.server.borrow_mut();
        let fd = self.sock.as_raw_fd();
        let mut tx = shard.tx.borrow_mut();
        while tx.queue_with(fd, |buf| server.poll_transmit(now, buf).map(|n| 0..n)) {}
    }

    /// A datagram from the channel's socket: another sender's can only be
    /// a stray that entered before connect() (a ClientHello of another
    /// client): it goes where the listener would have sent it.
    fn on_datagram_from(
        &self,
        shard: &Rc<Shard>,
        tunnel: &Tunnel,
        now: Instant,
        data: &mut [u8],
        from: SocketAddr,
    ) {
        if from == self.peer {
            self.on_datagram(shard, tunnel, now, data);
        } else {
            tracing::debug!(peer = %self.peer, stray = %from, "datagram from another client on a connected socket: routed");
            super::udp::route_hello(shard, data, from);
        }
    }

    /// Handles one datagram from the client: handshake, or records each
    /// holding one OpenConnect packet. The caller submits the TX ring.
    fn on_datagram(&self, shard: &Shard, tunnel: &Tunnel, now: Instant, data: &mut [u8]) {
        self.last_rx.set(now);
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
                // A new handshake on the same address: serve it from scratch;
                // packets use CSTP until it completes.
                tracing::debug!(user = %tunnel.user, peer = %self.peer, "DTLS handshake restarted by the client");
                *self.server.borrow_mut() = new_server(self.key, self.app_id, self.mtu, now);
                self.connected.set(false);
            }
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
                    self.on_record(shard, tunnel, record);
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
                    shard.metrics().dtls_handshakes.inc();
                    tracing::info!(user = %tunnel.user, lease = %tunnel.lease, peer = %self.peer, suite = suite.name(), "DTLS connected");
                }
                DtlsEvent::Closed { reason } => {
                    tracing::info!(user = %tunnel.user, peer = %self.peer, ?reason, "DTLS closed");
                    self.closed.set(true);
                }
            }
        }
    }

    fn on_record(&self, shard: &Shard, tunnel: &Tunnel, record: &mut [u8]) {
        let Some((&ty, payload)) = record.split_first() else {
            return;
        };
        match FrameType::from_byte(ty) {
            FrameType::Data => {
                self.rx_bytes
                    .set(self.rx_bytes.get() + payload.len() as u64);
                tunnel.packet_from_client(payload, shard, crate::metrics::Channel::Dtls);
            }
            // Echo the whole record: the client's MTU probe needs its size back (§5.4).
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

/// The client random of a ClientHello datagram (protocol notes §5.2:
/// bytes 27..59 of the first record).
fn hello_random(datagram: &[u8]) -> Option<[u8; 32]> {
    if !dtls::is_client_hello(datagram) {
        return None;
    }
    datagram.get(27..59)?.try_into().ok()
}

/// A ClientHello for the session `app_id` (it names this shard) from `from`.
pub(crate) fn start(shard: &Rc<Shard>, app_id: AppId, from: SocketAddr, mut hello: Vec<u8>) {
    let Some(tunnel) = shard.dtls_tunnel(&app_id) else {
        tracing::debug!(%from, "DTLS ClientHello for no live session");
        return;
    };
    let Some(key) = tunnel.dtls_key else { return };
    if let Some(old) = tunnel.dtls().filter(|c| c.peer == from && !c.closed.get()) {
        // The channel for this address already has its socket: a hello that
        // raced our connect() (or came late from another shard) is handled
        // there, as a retransmission (same random) or a restart. A second
        // socket on the same 4-tuple would split the handshake between two
        // servers with different keys.
        old.on_datagram(shard, &tunnel, Instant::now(), &mut hello);
        let _ = shard.tx.borrow_mut().submit();
        return;
    }
    let cfg = shard.shared.config.get();
    let cfg = &*cfg;
    let local = SocketAddr::new(cfg.listen, cfg.raw.server.udp_port);
    let fd = match sys::net::udp_socket(local, Some(from)) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(%from, "DTLS socket: {e}");
            return;
        }
    };
    // SAFETY: a fresh socket owned by nobody else.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let now = Instant::now();
    let channel = Rc::new(DtlsChannel {
        server: RefCell::new(new_server(key, app_id, tunnel.base_mtu, now)),
        key,
        app_id,
        mtu: tunnel.base_mtu,
        hello_random: Cell::new(hello_random(&hello).unwrap_or_default()),
        sock,
        peer: from,
        last_rx: Cell::new(now),
        connected: Cell::new(false),
        closed: Cell::new(false),
        wake: Notify::default(),
        rx_bytes: Cell::new(0),
        tx_bytes: Cell::new(0),
    });
    tracing::debug!(user = %tunnel.user, %from, "DTLS ClientHello");
    tunnel.set_dtls(Some(channel.clone()));
    let shard = shard.clone();
    glommio::spawn_local(async move {
        channel.on_datagram(&shard, &tunnel, now, &mut hello);
        let _ = shard.tx.borrow_mut().submit();
        drop(hello);
        run(&shard, &tunnel, &channel).await;
        channel.close();
        channel.flush_handshake(&shard, Instant::now());
        let _ = shard.tx.borrow_mut().submit();
        tunnel.dtls_ended(&channel);
        tracing::info!(
            user = %tunnel.user, peer = %channel.peer, rx_bytes = channel.rx_bytes.get(), tx_bytes = channel.tx_bytes.get(),
            "DTLS channel ended"
        );
    })
    .detach();
}

/// Receives until the channel or its tunnel ends; drives handshake timers.
async fn run(shard: &Rc<Shard>, tunnel: &Tunnel, ch: &DtlsChannel) {
    let mut buf = vec![0u8; usize::from(ch.mtu) + RECV_SLACK];
    while !ch.closed.get() {
        let deadline = ch.server.borrow().poll_timeout();
        let recv = async { Some(ch.sock.recv_from(&mut buf).await) };
        let woken = async {
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
            None
        };
        match future::or(recv, woken).await {
            Some(Ok((n, from))) => {
                let now = Instant::now();
                ch.on_datagram_from(shard, tunnel, now, &mut buf[..n], from);
                // The rest of a burst (one recvmmsg), then one submit for all
                // its packets. Strays are routed after the batch buffer is
                // let go: routing may start a channel, and glommio runs a new
                // task at once, whose own burst needs that buffer.
                let mut strays = Vec::new();
                {
                    let mut batch = shard.udp_batch.borrow_mut();
                    let n = batch.recv(ch.sock.as_raw_fd()).unwrap_or(0);
                    for i in 0..n {
                        match batch.get(i) {
                            Some((data, from)) if from == ch.peer => {
                                ch.on_datagram(shard, tunnel, now, data)
                            }
                            Some((data, from)) => strays.push((data.to_vec(), from)),
                            None => {}
                        }
                        if ch.closed.get() {
                            break;
                        }
                    }
                }
                for (mut data, from) in strays {
                    ch.on_datagram_from(shard, tunnel, now, &mut data, from);
                }
                if let Err(e) = shard.tx.borrow_mut().submit() {
                    tracing::warn!("TX submit: {e}");
                }
                super::tun::poll_now(shard);
                glommio::yield_if_needed().await;
            }
            // ICMP port unreachable and the like: the client went away.
            Some(Err(e)) => {
                tracing::debug!(user = %tunnel.user, peer = %ch.peer, "DTLS receive: {e}");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            None => {
                let now = Instant::now();
                ch.server.borrow_mut().handle_timeout(now);
                ch.flush_handshake(shard, now);
                if ch.server.borrow().is_closed() {
                    ch.closed.set(true);
                }
                let _ = shard.tx.borrow_mut().submit();
            }
        }
    }
}
