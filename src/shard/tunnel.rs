//! A live tunnel: frames from the client to the TUN queue (reader task),
//! packets from the TUN queue to the client over DTLS or framed into its
//! TLS stream (by the data task: `send_packet`), whose ciphertext the
//! writer task moves to the socket; and its timers (`proto::timers`).

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use shards::{AppId, Cookie};

use super::core::Shard;
use super::dtls::{DtlsChannel, DtlsKey};
use super::limits::Limits;
use super::notify::Notify;
use super::stream::SharedStream;
use crate::metrics::Channel;
use crate::proto::cstp::{self, ClientFrame, FrameType};
use crate::proto::ip;
use crate::proto::timers::{Expiry, Heard, TunnelTimers};
use crate::tls::TlsSession;

/// A full TLS record (16 KiB payload + header and AEAD overhead).
pub(crate) const TLS_READ_BUF: usize = 16 * 1024 + 512;
/// Ciphertext allowed to wait for a slow client before packets are dropped.
const MAX_QUEUED: usize = 512 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// CSTP DISCONNECT from the client (e.g. it got SIGINT): logout.
    ClientDisconnect,
    /// TCP/TLS closed or failed; the client may come back with its cookie.
    ConnectionLost,
    /// No frame from the client for the DPD limit.
    DpdTimeout,
    /// The client broke CSTP framing.
    ProtocolError,
    /// A reconnect with the same cookie took over.
    Superseded,
    /// No data from the client for `idle_timeout` (or the mobile one).
    IdleTimeout,
    /// `ctl disconnect`: the session ends, its cookie with it.
    AdminDisconnect,
    /// `session_timeout` after login.
    SessionTimeout,
    /// `ctl reconnect`: the connection closes, the session stays, and the
    /// client's reconnect picks up the user's new configuration.
    AdminReconnect,
    ServerShutdown,
    /// A task serving the tunnel panicked (see `guard`); the client may
    /// come back with its cookie.
    InternalError,
    /// `ctl drop`: the connection closes, the session
    /// stays for the client's reconnect.
    AdminDrop,
}

impl EndReason {
    /// Whether the session (cookie and address) ends with the tunnel.
    pub(crate) fn ends_session(self) -> bool {
        matches!(
            self,
            Self::ClientDisconnect
                | Self::IdleTimeout
                | Self::SessionTimeout
                | Self::AdminDisconnect
                | Self::ServerShutdown
        )
    }

    /// Whether the client is told to quit (CSTP TERMINATE) rather than
    /// left to reconnect.
    /// A superseded connection is told too: its cookie went on in another
    /// one, and the client still reading this one (a second device with
    /// the same cookie) must quit, not take it back (as ocserv).
    fn terminates_client(self) -> bool {
        matches!(
            self,
            Self::IdleTimeout
                | Self::SessionTimeout
                | Self::AdminDisconnect
                | Self::ServerShutdown
                | Self::Superseded
        )
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ClientDisconnect => "client disconnect",
            Self::ConnectionLost => "connection lost",
            Self::DpdTimeout => "DPD timeout",
            Self::ProtocolError => "CSTP protocol error",
            Self::Superseded => "superseded by reconnect",
            Self::IdleTimeout => "idle timeout",
            Self::AdminDisconnect => "admin disconnect",
            Self::AdminReconnect => "admin reconnect (new configuration)",
            Self::SessionTimeout => "session timeout",
            Self::ServerShutdown => "server shutdown",
            Self::InternalError => "internal error",
            Self::AdminDrop => "dropped by an admin (session kept)",
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) rx_bytes: u64,
    pub(crate) rx_packets: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) dropped: u64,
    /// Packets to destinations outside a restricted client's routes.
    pub(crate) restricted: u64,
    /// Packets over the session's rate limit, both directions.
    pub(crate) rate_limited: u64,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Self) {
        self.rx_bytes += o.rx_bytes;
        self.rx_packets += o.rx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_packets += o.tx_packets;
        self.dropped += o.dropped;
        self.restricted += o.restricted;
        self.rate_limited += o.rate_limited;
    }
}

pub(crate) struct Tunnel {
    pub(crate) id: u64,
    pub(crate) cookie: Cookie,
    pub(crate) user: String,
    pub(crate) lease: Ipv4Addr,
    /// The IPv6 address, when the server has an IPv6 pool and the client
    /// asked for one.
    pub(crate) lease6: Option<Ipv6Addr>,
    /// Networks behind the client (iroute): packets from them are its own.
    pub(crate) iroutes: Box<[ipnet::IpNet]>,
    pub(crate) peer: SocketAddr,
    /// The server address the client connected to.
    pub(crate) local: SocketAddr,
    /// The DTLS handshake's key, when the CONNECT negotiated DTLS.
    pub(crate) dtls_key: Option<DtlsKey>,
    /// Names this tunnel in the client's ClientHello.
    pub(crate) app_id: Option<AppId>,
    /// Link MTU (X-CSTP-Base-MTU): the DTLS handshake's datagram limit.
    pub(crate) base_mtu: u16,
    /// Dead-peer detection interval told to the client (X-CSTP-DPD).
    pub(crate) dpd: Duration,
    /// The data MTU told to the client (X-CSTP-MTU).
    pub(crate) mtu: u16,
    /// The client's X-CSTP-Hostname.
    pub(crate) hostname: String,
    /// Set on the tunnel's sockets (ocserv's net-priority).
    pub(crate) net_priority: Option<crate::sys::net::NetPriority>,
    pub(crate) limits: Limits,
    /// Session, idle and DPD timeouts (set up by `set_timers`).
    timers: Cell<TunnelTimers>,
    /// The last data packet the client sent that went in (idleness); the
    /// instant of the batch it came in, not a clock read per packet.
    last_data: Cell<Instant>,
    /// The DTLS channel packets use once its handshake is done.
    dtls: RefCell<Option<Rc<DtlsChannel>>>,
    /// A channel from another address still in its handshake: it replaces
    /// `dtls` only once its Finished is verified, so a replayed or forged
    /// ClientHello never disturbs the working channel.
    dtls_pending: RefCell<Option<Rc<DtlsChannel>>>,
    tls: RefCell<TlsSession>,
    wake: Notify,
    queued: Cell<usize>,
    /// The last CSTP read from the client.
    last_rx: Cell<Instant>,
    ended: Cell<Option<EndReason>>,
    stats: Cell<Stats>,
    /// Header + payload assembly for one outgoing frame.
    frame: RefCell<Vec<u8>>,
}

impl Tunnel {
    pub(crate) fn new(
        id: u64,
        cookie: Cookie,
        user: String,
        lease: Ipv4Addr,
        peer: SocketAddr,
        tls: TlsSession,
    ) -> Self {
        Self {
            id,
            cookie,
            user,
            lease,
            lease6: None,
            iroutes: Box::new([]),
            peer,
            local: peer,
            dtls_key: None,
            app_id: None,
            base_mtu: 1400,
            dpd: Duration::from_secs(90),
            limits: Limits::none(),
            mtu: 0,
            hostname: String::new(),
            net_priority: None,
            timers: Cell::new(TunnelTimers::new(Duration::from_secs(90), None, None)),
            last_data: Cell::new(Instant::now()),
            dtls: RefCell::new(None),
            dtls_pending: RefCell::new(None),
            tls: RefCell::new(tls),
            wake: Notify::default(),
            queued: Cell::new(0),
            last_rx: Cell::new(Instant::now()),
            ended: Cell::new(None),
            stats: Cell::new(Stats::default()),
            // Grows to the largest frame sent; idle tunnels keep it small.
            frame: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats.get()
    }

    fn bump(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Queues raw bytes (the CONNECT reply) ahead of any frame.
    pub(crate) fn queue_plain(&self, data: &[u8]) -> bool {
        let ok = self.tls.borrow_mut().write_plain(data).is_ok();
        self.wake.notify();
        ok
    }

    /// Queues one frame for the client; false if dropped.
    pub(crate) fn send_frame(&self, ty: FrameType, payload: &[u8]) -> bool {
        if self.ended.get().is_some() || self.queued.get() > MAX_QUEUED {
            return false;
        }
        let mut frame = self.frame.borrow_mut();
        frame.clear();
        let mut head = [0u8; cstp::HEADER_LEN];
        if cstp::encode_header(ty, payload.len(), &mut head).is_err() {
            return false;
        }
        frame.extend_from_slice(&head);
        frame.extend_from_slice(payload);
        if self.tls.borrow_mut().write_frame(&frame).is_err() {
            return false;
        }
        self.queued.set(self.queued.get() + frame.len());
        self.wake.notify();
        true
    }

    pub(crate) fn dtls(&self) -> Option<Rc<DtlsChannel>> {
        self.dtls.borrow().clone()
    }

    /// The TLS session as occtl shows it.
    pub(crate) fn tls_cipher(&self) -> String {
        self.tls.borrow().description()
    }

    pub(crate) fn dtls_pending(&self) -> Option<Rc<DtlsChannel>> {
        self.dtls_pending.borrow().clone()
    }

    /// Ends the working DTLS channel (the client falls back to CSTP); with
    /// the tunnel's end, the pending one too.
    pub(crate) fn drop_dtls(&self) {
        if let Some(old) = self.dtls.borrow_mut().take() {
            old.close();
        }
    }

    /// A new channel starts its handshake beside the working one; a pending
    /// channel it replaces is closed.
    pub(crate) fn set_pending_dtls(&self, channel: Rc<DtlsChannel>) {
        if let Some(old) = self.dtls_pending.borrow_mut().replace(channel) {
            old.close();
        }
    }

    /// `channel` completed its handshake: packets use it from now on, and
    /// the channel it replaces (an old address) is closed.
    pub(crate) fn dtls_connected(&self, channel: &Rc<DtlsChannel>) {
        {
            let mut pending = self.dtls_pending.borrow_mut();
            if pending.as_ref().is_some_and(|c| Rc::ptr_eq(c, channel)) {
                *pending = None;
            }
        }
        let old = self.dtls.borrow_mut().replace(channel.clone());
        if let Some(old) = old.filter(|o| !Rc::ptr_eq(o, channel)) {
            old.close();
        }
    }

    /// A channel's task ended: forget it wherever it still is.
    pub(crate) fn dtls_ended(&self, channel: &Rc<DtlsChannel>) {
        for slot in [&self.dtls, &self.dtls_pending] {
            let mut current = slot.borrow_mut();
            if current.as_ref().is_some_and(|c| Rc::ptr_eq(c, channel)) {
                *current = None;
            }
        }
    }

    pub(crate) fn count_dropped(&self) {
        self.bump(|s| s.dropped += 1);
    }

    /// A packet from the TUN for this client: over DTLS while it is up,
    /// else over CSTP. `now`: when the batch it came in was read.
    pub(crate) fn send_packet(&self, shard: &Shard, pkt: &[u8], now: Instant) {
        if !self.limits.admit_tx(pkt.len(), now) {
            self.bump(|s| s.rate_limited += 1);
            return;
        }
        let dtls = self
            .dtls
            .borrow()
            .as_ref()
            .filter(|c| c.is_active())
            .cloned();
        if let Some(ch) = dtls {
            if ch.send(shard, FrameType::Data, pkt) {
                shard.traffic.tx(Channel::Dtls, pkt.len());
                self.bump(|s| {
                    s.tx_bytes += pkt.len() as u64;
                    s.tx_packets += 1;
                });
                return;
            }
        }
        if self.send_frame(FrameType::Data, pkt) {
            shard.traffic.tx(Channel::Cstp, pkt.len());
            self.bump(|s| {
                s.tx_bytes += pkt.len() as u64;
                s.tx_packets += 1;
            });
        } else {
            self.bump(|s| s.dropped += 1);
        }
    }

    /// Ends the tunnel from the server side: tell the client when the
    /// reason calls for it, flush, then close the socket.
    pub(crate) fn end(&self, reason: EndReason) {
        if self.ended.get().is_some() {
            return;
        }
        if reason.terminates_client() {
            self.send_frame(FrameType::Terminate, b"");
        }
        self.ended.set(Some(reason));
        self.drop_dtls();
        if let Some(p) = self.dtls_pending.borrow_mut().take() {
            p.close();
        }
        self.tls.borrow_mut().send_close_notify();
        self.wake.notify();
    }

    /// Arms the timers with the session's limits (`dpd`, `limits`).
    pub(crate) fn set_timers(&mut self) {
        let t = TunnelTimers::new(self.dpd, self.limits.idle, self.limits.ends_at);
        self.timers = Cell::new(t);
    }

    fn heard(&self) -> Heard {
        Heard {
            data: self.last_data.get(),
            cstp: self.last_rx.get(),
            dtls: self.dtls().map(|c| c.last_rx()),
        }
    }

    /// Acts on what the timers find due at `now`; returns when to look
    /// again (`None`: the tunnel ended).
    pub(crate) fn check_timers(&self, shard: &Shard, now: Instant) -> Option<Instant> {
        if self.ended.get().is_some() {
            return None;
        }
        let mut timers = self.timers.get();
        let due = timers.check(now, self.heard());
        self.timers.set(timers);
        if due.dtls_silent {
            if let Some(ch) = self.dtls() {
                tracing::info!(user = %self.user, peer = %ch.peer, "DTLS silent past the DPD limit: falling back to CSTP");
            }
            shard.metrics().dtls_fallbacks.inc();
            self.drop_dtls();
        }
        match due.end {
            Some(Expiry::Session) => {
                tracing::info!(user = %self.user, lease = %self.lease, "session_timeout reached");
                self.end(EndReason::SessionTimeout);
                return None;
            }
            Some(Expiry::Idle) => {
                let idle_s = self.limits.idle.unwrap_or_default().as_secs();
                tracing::info!(user = %self.user, lease = %self.lease, idle_s, "no data from the client: idle timeout");
                self.end(EndReason::IdleTimeout);
                return None;
            }
            Some(Expiry::Dpd) => {
                let silent_s = now.saturating_duration_since(self.last_rx.get()).as_secs();
                tracing::info!(user = %self.user, lease = %self.lease, silent_s, "client silent past the DPD limit");
                self.end(EndReason::DpdTimeout);
                return None;
            }
            None => {}
        }
        if due.send_dpd {
            self.send_frame(FrameType::DpdReq, b"");
        }
        Some(timers.next_due(self.heard()))
    }

    /// Time since the client last sent data.
    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_data.get())
    }

    /// Drains queued TLS output to the socket until the tunnel ends.
    pub(crate) async fn write_loop(self: Rc<Self>, stream: Rc<SharedStream>) {
        // Grows with the bursts it carries; idle tunnels keep it small.
        let mut out = Vec::new();
        loop {
            self.wake.notified().await;
            loop {
                out.clear();
                self.tls.borrow_mut().take_outgoing(&mut out);
                self.queued.set(0);
                if out.is_empty() {
                    break;
                }
                if stream.write_all(&out).await.is_err() {
                    self.ended
                        .set(Some(self.ended.get().unwrap_or(EndReason::ConnectionLost)));
                    break;
                }
            }
            if self.ended.get().is_some() {
                // Wakes the reader with EOF; it reports the end to the shard.
                stream.shutdown();
                return;
            }
        }
    }

    /// Reads frames until the client or the server ends the tunnel.
    pub(crate) async fn read_loop(
        self: Rc<Self>,
        shard: Rc<Shard>,
        stream: Rc<SharedStream>,
        leftover: Vec<u8>,
    ) -> EndReason {
        let mut plain = leftover;
        let mut now = Instant::now();
        loop {
            if let Err(reason) = self.process_frames(&mut plain, &shard, now) {
                self.end(reason);
                // The first reason wins: a client answering our TERMINATE
                // with DISCONNECT still ended by the server's timeout.
                return self.ended.get().unwrap_or(reason);
            }
            let n = match stream.read_into(&shard.tls_rbuf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            now = Instant::now();
            self.last_rx.set(now);
            let mut timers = self.timers.get();
            timers.heard_on_cstp();
            self.timers.set(timers);
            // Still this task's turn: nobody else has touched the buffer.
            let fed = self
                .tls
                .borrow_mut()
                .feed(&shard.tls_rbuf.borrow()[..n], &mut plain);
            self.wake.notify();
            match fed {
                Ok(f) if f.peer_closed => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(user = %self.user, "TLS error: {e}");
                    break;
                }
            }
        }
        let reason = self.ended.get().unwrap_or(EndReason::ConnectionLost);
        self.end(reason);
        reason
    }

    /// Handles every complete frame at the front of `plain`.
    fn process_frames(
        &self,
        plain: &mut Vec<u8>,
        shard: &Rc<Shard>,
        now: Instant,
    ) -> Result<(), EndReason> {
        let mut used = 0;
        let result = loop {
            let frame = match cstp::decode(&plain[used..]) {
                Ok(Some((frame, n))) => {
                    used += n;
                    frame
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    tracing::info!(user = %self.user, peer = %self.peer, "closing tunnel: {e}");
                    break Err(EndReason::ProtocolError);
                }
            };
            match cstp::client_frame(frame.ty, frame.payload) {
                ClientFrame::Packet(pkt) => {
                    self.cstp_data_seen(shard);
                    self.packet_from_client(pkt, shard, Channel::Cstp, now);
                }
                ClientFrame::DpdRequest(payload) => {
                    self.send_frame(FrameType::DpdResp, payload);
                }
                ClientFrame::Disconnect(why) => {
                    tracing::info!(user = %self.user, reason = %why.text(), "client sent DISCONNECT");
                    break Err(EndReason::ClientDisconnect);
                }
                ClientFrame::Alive => {}
                ClientFrame::Unexpected => self.bump(|s| s.dropped += 1),
            }
        };
        plain.drain(..used);
        if let Err(e) = shard.tx.borrow_mut().submit() {
            tracing::warn!("TUN submit: {e}");
        }
        super::dataplane::poll_now(shard);
        result
    }

    /// DATA on CSTP long after the last UDP packet: the client has given
    /// up on DTLS, so stop sending there
    /// (docs/protocol.md, "DTLS: falling back to CSTP").
    fn cstp_data_seen(&self, shard: &Shard) {
        let active = self.dtls.borrow().as_ref().is_some_and(|c| c.is_active());
        let stale = active && self.heard().dtls_abandoned();
        if stale {
            tracing::info!(user = %self.user, "DATA over CSTP while DTLS is silent: falling back to CSTP");
            shard.metrics().dtls_fallbacks.inc();
            self.drop_dtls();
        }
    }

    /// One IP packet from the client (either channel) into the TUN queue.
    /// `now`: when the batch it came in was read.
    pub(crate) fn packet_from_client(&self, pkt: &[u8], shard: &Shard, ch: Channel, now: Instant) {
        let sources = ip::ClientSources {
            v4: self.lease,
            v6: self.lease6,
            iroutes: &self.iroutes,
        };
        let Some(dst) = sources.destination(pkt) else {
            self.bump(|s| s.dropped += 1);
            return;
        };
        if let Some(allowed) = &self.limits.allowed {
            if !allowed.contains(dst) {
                self.bump(|s| s.restricted += 1);
                return;
            }
        }
        if !self.limits.admit_ports(pkt, dst) {
            self.bump(|s| s.restricted += 1);
            return;
        }
        if !self.limits.admit_rx(pkt.len(), now) {
            self.bump(|s| s.rate_limited += 1);
            return;
        }
        // Submitted once per batch of frames, in process_frames.
        let queued = if shard.shared.vnet_hdr {
            shard.tx.borrow_mut().queue_tun(shard.tun_fd, pkt)
        } else {
            shard.tx.borrow_mut().queue_write(shard.tun_fd, pkt)
        };
        if queued {
            self.last_data.set(now);
            shard.traffic.rx(ch, pkt.len());
            self.bump(|s| {
                s.rx_bytes += pkt.len() as u64;
                s.rx_packets += 1;
            });
        } else {
            self.bump(|s| s.dropped += 1);
        }
    }
}
