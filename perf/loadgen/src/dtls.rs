//! The DTLS channel of one session (docs/protocol.md, "DTLS: PSK-NEGOTIATE"):
//! PSK-NEGOTIATE with the sans-IO `DtlsClient` over a connected UDP socket,
//! and a reader task that echoes DPD and counts received packets.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::udp::UdpSocket;
use ocserv_proto::dtls::{DtlsClient, DtlsConfig, DtlsEvent, Received};

use crate::stats::Counters;
use crate::tls::io_err;

const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
const KEEPALIVE: Duration = Duration::from_secs(10);
const TYPE_DATA: u8 = 0x00;
const TYPE_DPD_REQ: u8 = 0x03;
const TYPE_DPD_RESP: u8 = 0x04;
const TYPE_KEEPALIVE: u8 = 0x07;

pub(crate) struct DtlsChannel {
    sock: UdpSocket,
    client: RefCell<DtlsClient>,
    up: Cell<bool>,
    last_tx: Cell<Instant>,
    counters: Arc<Counters>,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl DtlsChannel {
    /// Handshakes with `server` and starts the reader; Err if DTLS does
    /// not come up within 10 s.
    pub(crate) async fn connect(
        server: SocketAddr,
        src: Option<IpAddr>,
        psk: [u8; 32],
        app_id_hex: &str,
        counters: Arc<Counters>,
    ) -> io::Result<Rc<Self>> {
        let app_id = hex(app_id_hex).ok_or_else(|| io_err("bad X-DTLS-App-ID"))?;
        let s = socket2::Socket::new(
            socket2::Domain::for_address(server),
            socket2::Type::DGRAM,
            None,
        )?;
        // `src` is the address of the session's TCP connection: binding it
        // before connect() spares the socket a rehash (see `lost_datagram`).
        let local = src.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        s.bind(&SocketAddr::new(local, 0).into())?;
        s.connect(&server.into())?;
        let _ = s.set_send_buffer_size(1 << 20);
        let _ = s.set_recv_buffer_size(1 << 20);
        let sock = UdpSocket::from_std(s.into())?;
        let client = DtlsClient::new_psk(psk, &app_id, &DtlsConfig::default(), Instant::now())
            .map_err(io_err)?;
        let ch = Rc::new(Self {
            sock,
            client: RefCell::new(client),
            up: Cell::new(false),
            last_tx: Cell::new(Instant::now()),
            counters,
        });
        ch.handshake().await?;
        ch.up.set(true);
        monoio::spawn(read_loop(ch.clone()));
        Ok(ch)
    }

    async fn transmit(&self) -> io::Result<()> {
        loop {
            let mut out = vec![0u8; 2048];
            let Some(n) = self
                .client
                .borrow_mut()
                .poll_transmit(Instant::now(), &mut out)
            else {
                return Ok(());
            };
            out.truncate(n);
            let (r, _) = self.sock.send(out).await;
            match r {
                Err(e) if lost_datagram(&e) => {}
                r => {
                    r?;
                }
            }
        }
    }

    async fn handshake(&self) -> io::Result<()> {
        let deadline = Instant::now() + HANDSHAKE_LIMIT;
        loop {
            self.transmit().await?;
            let ev = self.client.borrow_mut().poll_event();
            if let Some(ev) = ev {
                match ev {
                    DtlsEvent::Connected { .. } => return Ok(()),
                    DtlsEvent::Closed { reason } => {
                        // Retransmits tell a lost-flight race from a key mismatch.
                        let re = self.client.borrow().counters().retransmits;
                        return Err(io_err(format!(
                            "DTLS closed: {reason:?} after {re} retransmits"
                        )));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io_err("DTLS handshake timed out"));
            }
            let at = self
                .client
                .borrow()
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(1))
                .min(deadline);
            let buf = Vec::with_capacity(2048);
            match monoio::time::timeout(at.saturating_duration_since(now), self.sock.recv(buf))
                .await
            {
                Ok((r, mut buf)) => match r {
                    Ok(n) => self.input(&mut buf[..n]).await?,
                    // The flight is retransmitted on the timer like any loss.
                    Err(e) if lost_datagram(&e) => {}
                    Err(e) => return Err(e),
                },
                Err(_) => self.client.borrow_mut().handle_timeout(Instant::now()),
            }
        }
    }

    /// Feeds one datagram; acts on the records it held.
    async fn input(&self, dgram: &mut [u8]) -> io::Result<()> {
        let mut off = 0;
        let mut echo = Vec::new();
        loop {
            let mut c = self.client.borrow_mut();
            let Received::AppData { data, next } = c
                .handle_datagram(Instant::now(), &mut dgram[off..])
                .map_err(io_err)?
            else {
                break;
            };
            match data.first() {
                Some(&TYPE_DATA) => {
                    Counters::add(&self.counters.rx_pkts, 1);
                    Counters::add(&self.counters.rx_bytes, (data.len() - 1) as u64);
                }
                // ocserv echoes DPD whole; so do we.
                Some(&TYPE_DPD_REQ) => {
                    let mut r = data.to_vec();
                    r[0] = TYPE_DPD_RESP;
                    echo.push(r);
                }
                _ => {}
            }
            off += next;
        }
        for r in echo {
            self.send_record(&r).await?;
        }
        self.transmit().await
    }

    async fn send_record(&self, payload: &[u8]) -> io::Result<()> {
        let mut out = vec![0u8; payload.len() + 256];
        let n = self
            .client
            .borrow_mut()
            .seal(payload, &mut out)
            .map_err(io_err)?;
        out.truncate(n);
        self.last_tx.set(Instant::now());
        let (r, _) = self.sock.send(out).await;
        r.map(|_| ())
    }

    /// One IP packet as a DTLS DATA record.
    pub(crate) async fn send_data(&self, pkt: &[u8]) -> io::Result<()> {
        let mut p = Vec::with_capacity(pkt.len() + 1);
        p.push(TYPE_DATA);
        p.extend_from_slice(pkt);
        self.send_record(&p).await
    }

    /// Keeps the server's view of the channel fresh while idle.
    pub(crate) async fn tick(&self, now: Instant) {
        if self.is_up() && now.duration_since(self.last_tx.get()) >= KEEPALIVE {
            let _ = self.send_record(&[TYPE_KEEPALIVE]).await;
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.get() && self.client.borrow().is_connected()
    }

    /// Ends the channel and its reader.
    pub(crate) fn close(&self) {
        self.up.set(false);
        self.client.borrow_mut().close();
        // SAFETY: shutdown on the socket we own; it only wakes the pending recv.
        unsafe {
            libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// An ICMP port unreachable for one of our datagrams, reported on the next
/// call: that datagram was lost, the handshake goes on. The kernel sends one
/// when a datagram meets no socket, which here (client and server namespaces
/// share the kernel's UDP hash table) also happens in the instant a lookup
/// races another socket's rehash on connect().
fn lost_datagram(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

async fn read_loop(ch: Rc<DtlsChannel>) {
    let mut buf = Vec::with_capacity(65536);
    while ch.up.get() {
        buf.clear();
        let (r, b) = ch.sock.recv(buf).await;
        buf = b;
        match r {
            Ok(n) if n > 0 && ch.up.get() => {
                if ch.input(&mut buf[..n]).await.is_err() {
                    ch.up.set(false);
                }
            }
            _ => ch.up.set(false),
        }
    }
}
