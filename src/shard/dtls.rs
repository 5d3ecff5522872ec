//! The DTLS channel of a tunnel on the session's home shard: the client's
//! address on the shard's shared socket for the port (or, without the
//! reuseport program, a UDP socket connect()ed to the client), the sans-IO
//! `ServerChannel` behind it (its handshakes and restarts), and
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
use crate::proto::cstp::{self, ClientFrame, FrameType};
use crate::proto::dtls::{
    self, on_hello, ChannelEvent, ChannelState, HelloAction, Inbound, ServerChannel,
};
use crate::sys;

/// What the CONNECT gave the DTLS handshake to work with.
pub(crate) use crate::proto::dtls::ChannelKey as DtlsKey;

/// Room beyond the link MTU in a receive buffer: the client never sends
/// a datagram above its link MTU (X-CSTP-Base-MTU).
pub(crate) const RECV_SLACK: usize = 512;
/// Pause before receiving again after the socket reported an error
/// (ICMP port unreachable: the client went away, or is restarting).
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Where a channel's datagrams come in and go out.
enum ChannelSocket {
    /// The shard's socket for the port: the reuseport program brings the
    /// client's datagrams to it, and sends name the client. Costs no
    /// descriptor.
    Shared(RawFd),
    /// Its own socket, connect()ed to the client: without the program, or
    /// for a session with a net-priority (a socket option).
    Connected(OwnedFd),
}

pub(crate) struct DtlsChannel {
    /// The handshakes and the session (`proto::dtls::ServerChannel`).
    core: RefCell<ServerChannel>,
    sock: ChannelSocket,
    /// Its receive's token on the shard's ring (`dataplane::Receivers`).
    token: Cell<Option<u32>>,
    /// errno of a receive that stopped on an error; the task re-arms it.
    recv_error: Cell<i32>,
    /// The handshake deadline the channel's task sleeps until.
    sleeping_until: Cell<Option<Instant>>,
    pub(crate) peer: SocketAddr,
    created: Instant,
    wake: Notify,
    /// Bytes of IP packets carried each way (the records' DATA payloads).
    rx_bytes: Cell<u64>,
    tx_bytes: Cell<u64>,
}

impl DtlsChannel {
    /// The negotiated suite, as occtl shows it.
    pub(crate) fn cipher(&self) -> Option<&'static str> {
        self.core.borrow().suite().map(|s| s.description())
    }

    /// Whether packets for the client should go this way.
    pub(crate) fn is_active(&self) -> bool {
        self.core.borrow().is_active()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.core.borrow().is_closed()
    }

    pub(crate) fn fd(&self) -> RawFd {
        match &self.sock {
            ChannelSocket::Shared(fd) => *fd,
            ChannelSocket::Connected(sock) => sock.as_raw_fd(),
        }
    }

    /// Where sends go: the client's address on a shared socket.
    fn dest(&self) -> Option<&SocketAddr> {
        matches!(self.sock, ChannelSocket::Shared(_)).then_some(&self.peer)
    }

    /// The socket's receive stopped on `errno`: the task pauses, re-arms.
    pub(crate) fn receive_failed(&self, errno: i32) {
        self.recv_error.set(errno);
        self.wake.notify();
    }

    pub(crate) fn last_rx(&self) -> Instant {
        self.core.borrow().last_rx()
    }

    /// Ends the channel; the client falls back to CSTP (and may retry).
    pub(crate) fn close(&self) {
        let mut core = self.core.borrow_mut();
        if !core.is_closed() {
            core.close();
            self.wake.notify();
        }
    }

    /// Seals `ty` + `payload` as one record in a TX slot and queues it;
    /// the caller submits the TX ring. False if it could not be sent.
    pub(crate) fn send(&self, shard: &Shard, ty: FrameType, payload: &[u8]) -> bool {
        let mut core = self.core.borrow_mut();
        let (fd, dest) = (self.fd(), self.dest());
        let sent = shard.tx.borrow_mut().queue_datagram(fd, dest, |buf| {
            let end = dtls::HEADROOM + 1 + payload.len();
            let buf = buf.get_mut(..end + dtls::TAILROOM)?;
            buf[dtls::HEADROOM] = ty.to_byte();
            buf[dtls::HEADROOM + 1..end].copy_from_slice(payload);
            core.seal_in_place(buf, 1 + payload.len()).ok()
        });
        if sent && ty == FrameType::Data {
            self.tx_bytes
                .set(self.tx_bytes.get() + payload.len() as u64);
        }
        sent
    }

    /// Queues whatever the handshakes want sent (flights, alerts).
    fn flush_handshake(&self, shard: &Shard, now: Instant) {
        let (fd, dest) = (self.fd(), self.dest());
        let mut tx = shard.tx.borrow_mut();
        let mut core = self.core.borrow_mut();
        while tx.queue_datagram(fd, dest, |buf| core.poll_transmit(now, buf).map(|n| 0..n)) {}
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.borrow().poll_timeout()
    }

    fn handle_timeout(self: &Rc<Self>, shard: &Shard, tunnel: &Tunnel, now: Instant) {
        self.core.borrow_mut().handle_timeout(now);
        self.on_events(shard, tunnel);
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
        let inbound = self.core.borrow_mut().begin_datagram(now, data);
        if inbound == Inbound::Records {
            let mut off = 0;
            loop {
                // Not borrowed while the record is handled: a DPD is answered at once.
                let next = self.core.borrow_mut().next_record(now, &mut data[off..]);
                let Some((record, next)) = next else { break };
                self.on_record(shard, tunnel, record, now);
                off += next;
            }
        }
        self.flush_handshake(shard, now);
        self.on_events(shard, tunnel);
        // A handshake step may have moved its deadline: the task sleeps
        // until the old one.
        if !self.is_closed() && self.poll_timeout() != self.sleeping_until.get() {
            self.wake.notify();
        }
    }

    fn on_events(self: &Rc<Self>, shard: &Shard, tunnel: &Tunnel) {
        loop {
            let event = self.core.borrow_mut().poll_event();
            let Some(event) = event else { return };
            let (user, peer) = (&tunnel.user, &self.peer);
            match event {
                ChannelEvent::Connected { suite } => {
                    shard.metrics().dtls_handshakes.inc();
                    tunnel.dtls_connected(self);
                    tracing::info!(%user, lease = %tunnel.lease, %peer, suite = suite.name(), "DTLS connected");
                }
                ChannelEvent::Reconnected { suite } => {
                    shard.metrics().dtls_handshakes.inc();
                    tracing::info!(%user, lease = %tunnel.lease, %peer, suite = suite.name(), "DTLS reconnected on the same address");
                }
                ChannelEvent::Restarted => {
                    tracing::debug!(%user, %peer, "DTLS handshake restarted by the client");
                }
                ChannelEvent::RestartFailed { error } => {
                    tracing::debug!(%user, %peer, "DTLS restart failed, the working session goes on: {error}");
                }
                ChannelEvent::ForeignHello => {
                    tracing::debug!(%user, %peer, "ClientHello for another session ignored");
                }
                ChannelEvent::Closed { error, reason } => {
                    let why = match (error, reason) {
                        (Some(e), _) => e.to_string(),
                        (None, Some(r)) => format!("{r:?}"),
                        (None, None) => "the handshake timed out".to_owned(),
                    };
                    tracing::info!(%user, %peer, "DTLS closed: {why}");
                    self.wake.notify();
                }
            }
        }
    }

    fn on_record(&self, shard: &Shard, tunnel: &Tunnel, record: &mut [u8], now: Instant) {
        let Some((&ty, payload)) = record.split_first() else {
            return;
        };
        match cstp::client_frame(FrameType::from_byte(ty), payload) {
            ClientFrame::Packet(pkt) => {
                self.rx_bytes.set(self.rx_bytes.get() + pkt.len() as u64);
                tunnel.packet_from_client(pkt, shard, crate::metrics::Channel::Dtls, now);
            }
            ClientFrame::DpdRequest(payload) => {
                self.send(shard, FrameType::DpdResp, payload);
            }
            ClientFrame::Disconnect(why) => {
                tracing::info!(user = %tunnel.user, reason = %why.text(), "client sent DISCONNECT over DTLS");
                tunnel.end(EndReason::ClientDisconnect);
            }
            ClientFrame::Alive => {}
            ClientFrame::Unexpected => tunnel.count_dropped(),
        }
    }
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
    let (active, pending) = (tunnel.dtls(), tunnel.dtls_pending());
    fn state(c: &Option<Rc<DtlsChannel>>) -> Option<ChannelState<&SocketAddr>> {
        c.as_ref().map(|c| ChannelState {
            peer: &c.peer,
            closed: c.is_closed(),
            created: c.created,
        })
    }
    match on_hello(now, &from, state(&active), state(&pending)) {
        HelloAction::ToChannel(i) => {
            // A hello that raced our connect() (or came late from another
            // shard): a retransmission or a restart, on the channel's socket.
            if let Some(ch) = [active, pending].into_iter().nth(i).flatten() {
                ch.on_datagram(shard, &tunnel, now, &mut hello);
                let _ = shard.tx.borrow_mut().submit();
            }
            return;
        }
        HelloAction::Ignore => {
            tracing::debug!(user = %tunnel.user, %from, "DTLS ClientHello from a third address while a handshake is young: ignored");
            return;
        }
        HelloAction::NewChannel => {}
    }
    let shared = shard
        .dtls_socket(local)
        .filter(|_| tunnel.net_priority.is_none());
    let sock = match shared {
        Some(fd) => ChannelSocket::Shared(fd),
        None => match connected_socket(local, from, tunnel.net_priority) {
            Ok(sock) => ChannelSocket::Connected(sock),
            Err(e) => {
                tracing::warn!(%from, "DTLS socket: {e}");
                return;
            }
        },
    };
    let core = ServerChannel::new(key, *app_id.as_bytes(), tunnel.base_mtu, now, &hello);
    let channel = Rc::new(DtlsChannel {
        core: RefCell::new(core),
        sock,
        token: Cell::new(None),
        recv_error: Cell::new(0),
        sleeping_until: Cell::new(None),
        peer: from,
        created: now,
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
    if matches!(channel.sock, ChannelSocket::Connected(_)) {
        let token = shard
            .receivers
            .borrow_mut()
            .register(channel.clone(), tunnel.clone());
        channel.token.set(Some(token));
        super::dataplane::sync_receivers(shard);
    } else {
        shard.add_dtls_peer(&channel, &tunnel);
    }
    let shard = shard.clone();
    glommio::spawn_local(async move {
        // A panic ends this channel only; the tunnel goes on over CSTP.
        let _ = super::guard::contain(&shard, "DTLS channel", run(&shard, &tunnel, &channel)).await;
        channel.close();
        channel.flush_handshake(&shard, Instant::now());
        let _ = shard.tx.borrow_mut().submit();
        match channel.token.get() {
            Some(token) => {
                shard.receivers.borrow_mut().unregister(token);
                super::dataplane::sync_receivers(&shard);
            }
            None => shard.remove_dtls_peer(&channel),
        }
        tunnel.dtls_ended(&channel);
        tracing::info!(
            user = %tunnel.user, peer = %channel.peer, rx_bytes = channel.rx_bytes.get(), tx_bytes = channel.tx_bytes.get(),
            "DTLS channel ended"
        );
    })
    .detach();
}

/// A socket bound to `local` and connect()ed to `from`, with the
/// session's net-priority.
fn connected_socket(
    local: SocketAddr,
    from: SocketAddr,
    priority: Option<sys::net::NetPriority>,
) -> std::io::Result<OwnedFd> {
    let sock = sys::net::udp_socket(local, Some(from))?;
    if let Some(p) = priority {
        if let Err(e) = sys::net::set_net_priority(sock.as_raw_fd(), p) {
            tracing::debug!(%from, "net-priority {p:?}: {e}");
        }
    }
    Ok(sock)
}

/// Drives the handshake timers until the channel ends; re-arms the
/// socket's receive after an error. Datagrams are handled by `dataplane`.
async fn run(shard: &Rc<Shard>, tunnel: &Tunnel, ch: &Rc<DtlsChannel>) {
    while !ch.is_closed() {
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
        if errno != 0 && !ch.is_closed() {
            tracing::debug!(peer = %ch.peer, "DTLS receive: {}", std::io::Error::from_raw_os_error(errno));
            glommio::timer::sleep(RECV_ERROR_PAUSE).await;
            if let Some(token) = ch.token.get() {
                shard.receivers.borrow_mut().rearm(token);
                super::dataplane::sync_receivers(shard);
            }
        }
        let now = Instant::now();
        ch.handle_timeout(shard, tunnel, now);
        ch.flush_handshake(shard, now);
        let _ = shard.tx.borrow_mut().submit();
    }
}
