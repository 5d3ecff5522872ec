//! One established tunnel: a reader task that answers DPD and counts
//! received packets, and the caller's writer loop (keepalives, DPD, or a
//! packet flood). rustls and the DTLS client are shared between the two
//! tasks of one thread through `RefCell`s never held across an await.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use ocserv_proto::cstp::{self, FrameType};
use rustls::ClientConnection;

use crate::dtls::DtlsChannel;
use crate::login::Tunnel;
use crate::stats::Counters;
use crate::sync::{Gate, Notify};
use crate::tls::{feed, io_err, TlsConn};

/// State the reader and writer tasks share.
pub(crate) struct Shared {
    pub(crate) tls: RefCell<ClientConnection>,
    /// Whole CSTP frames the reader wants sent (DPD answers).
    pub(crate) pending: RefCell<Vec<Vec<u8>>>,
    pub(crate) wake: Notify,
    /// Why the tunnel ended, once it did.
    pub(crate) ended: RefCell<Option<String>>,
    pub(crate) dtls: RefCell<Option<Rc<DtlsChannel>>>,
}

impl Shared {
    pub(crate) fn end(&self, why: impl Into<String>) {
        self.ended.borrow_mut().get_or_insert_with(|| why.into());
        self.wake.notify();
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }
}

/// What CONNECT told us.
pub(crate) struct Params {
    pub(crate) addr: Ipv4Addr,
    pub(crate) mtu: usize,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) dpd: Option<Duration>,
}

impl Params {
    pub(crate) fn from(t: &Tunnel) -> io::Result<Self> {
        let addr = t
            .get("X-CSTP-Address")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io_err("CONNECT reply without an IPv4 X-CSTP-Address"))?;
        let mtu = t
            .get("X-CSTP-MTU")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1280);
        Ok(Self {
            addr,
            mtu,
            keepalive: t.secs("X-CSTP-Keepalive").map(Duration::from_secs),
            dpd: t.secs("X-CSTP-DPD").map(Duration::from_secs),
        })
    }
}

pub(crate) fn frame(ty: FrameType, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; cstp::HEADER_LEN + payload.len()];
    let n = cstp::encode(ty, payload, &mut out).expect("frame fits");
    out.truncate(n);
    out
}

/// The tunnel after `200 CONNECTED`.
pub(crate) struct Link {
    pub(crate) shared: Rc<Shared>,
    wr: OwnedWriteHalf<TcpStream>,
    fd: i32,
    reader: monoio::task::JoinHandle<()>,
    out: Vec<u8>,
}

impl Link {
    /// Takes over `c` (its leftover plaintext is CSTP) and starts the reader.
    pub(crate) fn start(c: TlsConn, counters: std::sync::Arc<Counters>) -> Self {
        let TlsConn {
            tcp, tls, plain, ..
        } = c;
        let fd = tcp.as_raw_fd();
        let (rd, wr) = tcp.into_split();
        let shared = Rc::new(Shared {
            tls: RefCell::new(tls),
            pending: RefCell::new(Vec::new()),
            wake: Notify::default(),
            ended: RefCell::new(None),
            dtls: RefCell::new(None),
        });
        let reader = monoio::spawn(read_loop(rd, shared.clone(), plain, counters));
        Self {
            shared,
            wr,
            fd,
            reader,
            out: Vec::with_capacity(128 * 1024),
        }
    }

    /// Queues one CSTP frame as its own TLS record.
    pub(crate) fn queue(&self, frame: &[u8]) -> io::Result<()> {
        let n = self.shared.tls.borrow_mut().writer().write(frame)?;
        if n != frame.len() {
            return Err(io_err("rustls took part of a frame"));
        }
        Ok(())
    }

    /// Sends the reader's pending frames and everything rustls holds.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        for f in std::mem::take(&mut *self.shared.pending.borrow_mut()) {
            self.queue(&f)?;
        }
        loop {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            {
                let mut tls = self.shared.tls.borrow_mut();
                while tls.wants_write() {
                    tls.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                self.out = out;
                return Ok(());
            }
            let (r, out) = self.wr.write_all(out).await;
            self.out = out;
            r?;
        }
    }

    /// DISCONNECT (user logout), close_notify, and the reader's end.
    pub(crate) async fn close(mut self) {
        let _ = self.queue(&frame(
            FrameType::Disconnect,
            &[cstp::DISCONNECT_USER_LOGOUT],
        ));
        self.shared.tls.borrow_mut().send_close_notify();
        let _ = monoio::time::timeout(Duration::from_secs(2), self.flush()).await;
        if let Some(d) = self.shared.dtls.borrow_mut().take() {
            d.close();
        }
        // SAFETY: shutdown on a descriptor we own (the read half keeps it open); it
        // only ends the reader's pending read.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        let _ = monoio::time::timeout(Duration::from_secs(2), self.reader).await;
    }
}

async fn read_loop(
    mut rd: OwnedReadHalf<TcpStream>,
    sh: Rc<Shared>,
    mut plain: Vec<u8>,
    counters: std::sync::Arc<Counters>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        if let Err(e) = handle_frames(&sh, &mut plain, &counters) {
            sh.end(e.to_string());
            return;
        }
        if sh.is_ended() {
            return;
        }
        buf.clear();
        let (r, b) = rd.read(buf).await;
        buf = b;
        let res = match r {
            Ok(0) => Err(io_err("server closed the connection")),
            Ok(n) => feed(&mut sh.tls.borrow_mut(), &buf[..n], &mut plain),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            sh.end(e.to_string());
            return;
        }
        if sh.tls.borrow().wants_write() {
            sh.wake.notify();
        }
    }
}

fn handle_frames(sh: &Shared, plain: &mut Vec<u8>, counters: &Counters) -> io::Result<()> {
    let mut used = 0;
    while let Some((f, n)) = cstp::decode(&plain[used..]).map_err(io_err)? {
        match f.ty {
            FrameType::Data => {
                Counters::add(&counters.rx_pkts, 1);
                Counters::add(&counters.rx_bytes, f.payload.len() as u64);
            }
            FrameType::DpdReq => {
                sh.pending
                    .borrow_mut()
                    .push(frame(FrameType::DpdResp, f.payload));
                sh.wake.notify();
            }
            FrameType::Disconnect => return Err(io_err("server sent DISCONNECT")),
            FrameType::Terminate => return Err(io_err("server sent TERMINATE")),
            _ => {}
        }
        used += n;
    }
    plain.drain(..used);
    Ok(())
}

/// Keeps the tunnel alive until `until`: answers DPD (the reader queues
/// answers), sends KEEPALIVE after `keepalive` of silence and DPD-REQ
/// every `dpd`. Returns early when `gate` opens.
pub(crate) async fn hold(
    link: &mut Link,
    p: &Params,
    until: Instant,
    gate: Option<&Gate>,
) -> io::Result<()> {
    let keepalive = p
        .keepalive
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_secs(1));
    let dpd = p
        .dpd
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_secs(1));
    let (mut next_ka, mut next_dpd) = (Instant::now() + keepalive, Instant::now() + dpd);
    loop {
        let now = Instant::now();
        if now >= until || gate.is_some_and(Gate::is_open) {
            return Ok(());
        }
        if let Some(why) = link.shared.ended.borrow().clone() {
            return Err(io_err(why));
        }
        if now >= next_dpd {
            link.queue(&frame(FrameType::DpdReq, &[]))?;
            next_dpd = now + dpd;
            next_ka = now + keepalive;
        } else if now >= next_ka {
            link.queue(&frame(FrameType::Keepalive, &[]))?;
            next_ka = now + keepalive;
        }
        let dtls = link.shared.dtls.borrow().clone();
        if let Some(d) = dtls {
            d.tick(now).await;
        }
        link.flush().await?;
        let wake_at = next_ka
            .min(next_dpd)
            .min(until)
            .min(now + Duration::from_secs(5));
        let wake = &link.shared.wake;
        let woken = poll_fn(|cx| match gate.map(|g| g.poll_open(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(()),
            _ => wake.poll_notified(cx),
        });
        let _ =
            monoio::time::timeout(wake_at.saturating_duration_since(Instant::now()), woken).await;
    }
}

/// Which way the packets of a throughput run go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pattern {
    /// To the sink, which sends each back: both directions at once.
    Echo,
    /// To the sink, which drops them: upload only.
    Up,
    /// From the sink (asked for over the tunnel): download only.
    Down,
    /// TCP segments, one stream per session, to the sink's address and
    /// port: upload only (nothing answers them; drop them there, or its
    /// kernel answers each with a reset).
    TcpUp,
}

/// Moves UDP packets of `size` bytes between each session and `sink`
/// until `until`, over DTLS when it is up, else over CSTP.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub(crate) sink: SocketAddrV4,
    pub(crate) size: usize,
    /// Per-session pacing in bits/s; 0 = as fast as the tunnel takes them.
    pub(crate) rate_bps: u64,
    pub(crate) pattern: Pattern,
    pub(crate) pacing: Pacing,
}

/// How a paced session spaces its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pacing {
    /// One packet at a time, evenly spaced, each session starting at a
    /// random point of its interval: what real clients' traffic looks like.
    Even,
    /// 32 packets back to back, then a pause: lets one receive call drain
    /// many (the old behaviour, kept to compare).
    Burst,
}

/// A random fraction in [0, 1) for a session's phase: no crate needed for
/// spreading start times.
pub(crate) fn phase(seed: u64) -> f64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 of the time and the session.
    let mut z = t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) async fn flood(
    link: &mut Link,
    p: &Params,
    sport: u16,
    load: &Load,
    until: Instant,
    counters: &Counters,
) -> io::Result<()> {
    let (sink, size) = (load.sink, load.size);
    let t0 = Instant::now();
    let mut sent_bits = 0u64;
    let l4 = if load.pattern == Pattern::TcpUp {
        crate::packet::TCP_HDR
    } else {
        crate::packet::UDP_HDR
    };
    let size = size
        .min(p.mtu.saturating_sub(crate::packet::IP_HDR + l4))
        .max(8);
    let src = SocketAddrV4::new(p.addr, sport);
    if load.pattern == Pattern::Down {
        return request_source(link, src, load, size, until).await;
    }
    let mode = if load.pattern == Pattern::Echo {
        crate::packet::ECHO
    } else {
        crate::packet::DISCARD
    };
    let mut pkt = Vec::with_capacity(2048);
    let mut frame_buf = Vec::with_capacity(2048);
    let mut seq = 0u64;
    let mut last_dpd = Instant::now();
    let paced = load.rate_bps > 0;
    // Evenly paced: one packet per interval, from a random point of the
    // first one, so sessions do not send in step.
    let batch = if paced && load.pacing == Pacing::Even {
        1
    } else {
        32
    };
    let t0 = if paced && load.pacing == Pacing::Even {
        let l4 = if load.pattern == Pattern::TcpUp {
            crate::packet::TCP_HDR
        } else {
            crate::packet::UDP_HDR
        };
        let bits = ((size + crate::packet::IP_HDR + l4) * 8) as f64;
        let start =
            t0 + Duration::from_secs_f64(phase(u64::from(sport)) * bits / load.rate_bps as f64);
        monoio::time::sleep(start.saturating_duration_since(Instant::now())).await;
        start
    } else {
        t0
    };
    while Instant::now() < until {
        if let Some(why) = link.shared.ended.borrow().clone() {
            return Err(io_err(why));
        }
        let dtls = link.shared.dtls.borrow().clone().filter(|d| d.is_up());
        // A batch of packets, then one write (CSTP) or one send each (DTLS).
        for _ in 0..batch {
            if load.pattern == Pattern::TcpUp {
                // The stream's byte position, as TCP counts it.
                let pos = (seq * size as u64) as u32;
                crate::packet::build_tcp(&mut pkt, src, sink, size, pos, seq as u16);
            } else {
                crate::packet::build_udp(&mut pkt, src, sink, size, seq, mode);
            }
            seq += 1;
            match &dtls {
                Some(d) => d.send_data(&pkt).await?,
                None => {
                    frame_buf.clear();
                    frame_buf.extend_from_slice(&frame(FrameType::Data, &[])[..cstp::HEADER_LEN]);
                    frame_buf[4..6].copy_from_slice(&(pkt.len() as u16).to_be_bytes());
                    frame_buf.extend_from_slice(&pkt);
                    link.queue(&frame_buf)?;
                }
            }
            Counters::add(&counters.tx_pkts, 1);
            Counters::add(&counters.tx_bytes, pkt.len() as u64);
            sent_bits += pkt.len() as u64 * 8;
        }
        if load.rate_bps > 0 {
            let due = t0 + Duration::from_secs_f64(sent_bits as f64 / load.rate_bps as f64);
            link.flush().await?;
            monoio::time::sleep(
                due.saturating_duration_since(Instant::now())
                    .min(until.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        // Keep the CSTP side alive while DTLS carries the data.
        if last_dpd.elapsed() > Duration::from_secs(5) {
            link.queue(&frame(FrameType::Keepalive, &[]))?;
            last_dpd = Instant::now();
        }
        link.flush().await?;
    }
    Ok(())
}

/// Keeps the sink sending to this session until `until`: a request every
/// third of a lease (a lost one costs nothing), then a stop.
async fn request_source(
    link: &mut Link,
    src: SocketAddrV4,
    load: &Load,
    size: usize,
    until: Instant,
) -> io::Result<()> {
    use crate::packet::{build_udp_with, source_request, LEASE_MS, SOURCE_STOP};
    let rate_mbit = u32::try_from(load.rate_bps / 1_000_000).unwrap_or(u32::MAX);
    let request = source_request(rate_mbit, size as u16, load.pacing == Pacing::Burst);
    let mut pkt = Vec::with_capacity(64);
    let mut last_keepalive = Instant::now();
    let mut id = 0u16;
    loop {
        if let Some(why) = link.shared.ended.borrow().clone() {
            return Err(io_err(why));
        }
        let done = Instant::now() >= until;
        let payload: &[u8] = if done { SOURCE_STOP } else { &request };
        build_udp_with(&mut pkt, src, load.sink, payload.len(), id, payload);
        id = id.wrapping_add(1);
        send_packet(link, &pkt).await?;
        if last_keepalive.elapsed() > Duration::from_secs(5) {
            link.queue(&frame(FrameType::Keepalive, &[]))?;
            last_keepalive = Instant::now();
        }
        link.flush().await?;
        if done {
            return Ok(());
        }
        let next = Instant::now() + Duration::from_millis(LEASE_MS / 3);
        monoio::time::sleep(next.min(until).saturating_duration_since(Instant::now())).await;
    }
}

/// One packet over DTLS when it is up, else queued on CSTP.
async fn send_packet(link: &mut Link, pkt: &[u8]) -> io::Result<()> {
    let dtls = link.shared.dtls.borrow().clone().filter(|d| d.is_up());
    match dtls {
        Some(d) => d.send_data(pkt).await,
        None => {
            let mut f = frame(FrameType::Data, &[])[..cstp::HEADER_LEN].to_vec();
            f[4..6].copy_from_slice(&(pkt.len() as u16).to_be_bytes());
            f.extend_from_slice(pkt);
            link.queue(&f)
        }
    }
}

/// The server's UDP address for DTLS.
pub(crate) fn dtls_addr(server: SocketAddr, t: &Tunnel) -> Option<SocketAddr> {
    let port: u16 = t.get("X-DTLS-Port")?.parse().ok()?;
    Some(SocketAddr::new(server.ip(), port))
}
