//! Prometheus metrics (`[monitoring] metrics_listen`). Each shard owns its
//! series (label `shard`): rare events are counted where they happen, and
//! packet and byte counts are kept in plain cells on the data path and
//! published once per tick, so no packet touches an atomic.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabel {
    shard: u16,
    /// `rx` from clients, `tx` to clients.
    direction: &'static str,
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    shard: u16,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    shard: u16,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
    /// `accepted`, `rejected` or `failed` (the backend could not decide).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendOnly {
    backend: &'static str,
}

/// A login backend's verdicts and answer times.
pub struct BackendMetrics {
    verdicts: Family<BackendLabel, Counter>,
    seconds: Family<BackendOnly, Histogram, fn() -> Histogram>,
}

impl BackendMetrics {
    /// One verdict of `backend`.
    pub fn verdict(&self, backend: &'static str, result: &'static str) {
        self.verdicts
            .get_or_create(&BackendLabel { backend, result })
            .inc();
    }

    /// How long `backend` took to answer one step of a login.
    pub fn answered(&self, backend: &'static str, took: Duration) {
        self.seconds
            .get_or_create(&BackendOnly { backend })
            .observe(took.as_secs_f64());
    }
}

fn backend_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The channel a packet used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Cstp = 0,
    Dtls = 1,
}

const CHANNELS: [&str; 2] = ["cstp", "dtls"];
const DIRECTIONS: [&str; 2] = ["rx", "tx"];

/// One shard's series.
pub struct ShardMetrics {
    pub logins: Counter,
    pub login_failures: Counter,
    pub dtls_handshakes: Counter,
    /// DTLS given up for CSTP while the session lives.
    pub dtls_fallbacks: Counter,
    /// Connections another shard handed here (their session lives here).
    pub handoffs: Counter,
    /// Connections closed at accept: the address is banned.
    pub refused_banned: Counter,
    /// Connections closed at accept: too many logins in progress.
    pub refused_login_limit: Counter,
    /// Connections that did not log in (or CONNECT) within auth_timeout.
    pub auth_timeouts: Counter,
    /// Tasks serving one connection that panicked (the connection closed).
    pub panics: Counter,
    pub connected: Gauge,
    /// Sessions whose client is away, waiting for a reconnect.
    pub waiting: Gauge,
    /// `[direction][channel]`.
    bytes: [[Counter; 2]; 2],
    packets: [[Counter; 2]; 2],
    busy: Counter<f64, AtomicU64>,
}

/// Every series, and the registry the endpoint encodes.
pub struct Metrics {
    registry: Registry,
    pub shards: Vec<ShardMetrics>,
    /// Addresses banned since start, and banned now (set at each scrape).
    pub bans: Counter,
    pub banned_now: Gauge,
    pub backends: BackendMetrics,
}

impl Metrics {
    pub fn new(shards: usize) -> Self {
        let mut registry = Registry::with_prefix("ocserv_uring");
        let logins = Family::<ShardLabel, Counter>::default();
        let failures = Family::<ShardLabel, Counter>::default();
        let handshakes = Family::<ShardLabel, Counter>::default();
        let fallbacks = Family::<ShardLabel, Counter>::default();
        let handoffs = Family::<ShardLabel, Counter>::default();
        let refused = Family::<ReasonLabel, Counter>::default();
        let auth_timeouts = Family::<ShardLabel, Counter>::default();
        let panics = Family::<ShardLabel, Counter>::default();
        let sessions = Family::<StateLabel, Gauge>::default();
        let bytes = Family::<TrafficLabel, Counter>::default();
        let packets = Family::<TrafficLabel, Counter>::default();
        let busy = Family::<ShardLabel, Counter<f64, AtomicU64>>::default();
        let bans = Counter::default();
        let banned_now = Gauge::default();
        registry.register(
            "sessions",
            "Sessions, connected or waiting for their client to reconnect",
            sessions.clone(),
        );
        registry.register("logins", "Successful logins", logins.clone());
        registry.register(
            "login_failures",
            "Refused logins (wrong password, policy, limits)",
            failures.clone(),
        );
        registry.register(
            "dtls_handshakes",
            "Completed DTLS handshakes",
            handshakes.clone(),
        );
        registry.register(
            "dtls_fallbacks",
            "Times a session gave up DTLS for CSTP",
            fallbacks.clone(),
        );
        registry.register(
            "handoffs",
            "Connections handed to this shard by another: CONNECTs whose cookie names it, logins whose address it owns",
            handoffs.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept, by reason (banned address, too many logins in progress)",
            refused.clone(),
        );
        registry.register(
            "auth_timeouts",
            "Connections closed because they did not log in or CONNECT within auth_timeout",
            auth_timeouts.clone(),
        );
        registry.register(
            "panics",
            "Tasks serving one connection that panicked; the connection was closed, the shard went on",
            panics.clone(),
        );
        registry.register(
            "bytes",
            "IP bytes through the tunnels, by direction and channel",
            bytes.clone(),
        );
        registry.register(
            "packets",
            "IP packets through the tunnels, by direction and channel",
            packets.clone(),
        );
        registry.register(
            "shard_busy_seconds",
            "Time each shard spent running tasks",
            busy.clone(),
        );
        registry.register("bans", "Client addresses banned since start", bans.clone());
        registry.register(
            "banned_addresses",
            "Client addresses banned now",
            banned_now.clone(),
        );
        let shards = (0..shards as u16)
            .map(|shard| {
                let l = ShardLabel { shard };
                let traffic = |f: &Family<TrafficLabel, Counter>| {
                    DIRECTIONS.map(|direction| {
                        CHANNELS.map(|channel| {
                            f.get_or_create_owned(&TrafficLabel {
                                shard,
                                direction,
                                channel,
                            })
                        })
                    })
                };
                ShardMetrics {
                    logins: logins.get_or_create_owned(&l),
                    login_failures: failures.get_or_create_owned(&l),
                    dtls_handshakes: handshakes.get_or_create_owned(&l),
                    dtls_fallbacks: fallbacks.get_or_create_owned(&l),
                    handoffs: handoffs.get_or_create_owned(&l),
                    refused_banned: refused.get_or_create_owned(&ReasonLabel {
                        shard,
                        reason: "banned",
                    }),
                    refused_login_limit: refused.get_or_create_owned(&ReasonLabel {
                        shard,
                        reason: "login_limit",
                    }),
                    auth_timeouts: auth_timeouts.get_or_create_owned(&l),
                    panics: panics.get_or_create_owned(&l),
                    connected: sessions.get_or_create_owned(&StateLabel {
                        shard,
                        state: "connected",
                    }),
                    waiting: sessions.get_or_create_owned(&StateLabel {
                        shard,
                        state: "waiting",
                    }),
                    bytes: traffic(&bytes),
                    packets: traffic(&packets),
                    busy: busy.get_or_create_owned(&l),
                }
            })
            .collect();
        let backends = BackendMetrics {
            verdicts: Family::default(),
            seconds: Family::new_with_constructor(backend_histogram),
        };
        registry.register(
            "auth_backend_verdicts",
            "Login attempts a backend (radius, pam, ldap, plain+otp) decided, by result",
            backends.verdicts.clone(),
        );
        registry.register(
            "auth_backend_seconds",
            "How long a login backend took to answer one step",
            backends.seconds.clone(),
        );
        Self {
            registry,
            shards,
            bans,
            banned_now,
            backends,
        }
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A shard's packet and byte counts, kept on the data path in cells.
#[derive(Default)]
pub struct Traffic {
    /// `[direction][channel]` totals, and what was published already.
    bytes: [[Cell<u64>; 2]; 2],
    packets: [[Cell<u64>; 2]; 2],
    published: [[Cell<(u64, u64)>; 2]; 2],
}

impl Traffic {
    pub fn rx(&self, ch: Channel, len: usize) {
        self.add(0, ch, len);
    }

    pub fn tx(&self, ch: Channel, len: usize) {
        self.add(1, ch, len);
    }

    fn add(&self, dir: usize, ch: Channel, len: usize) {
        let (b, p) = (
            &self.bytes[dir][ch as usize],
            &self.packets[dir][ch as usize],
        );
        b.set(b.get() + len as u64);
        p.set(p.get() + 1);
    }

    /// Moves what was counted since the last call into the shard's series.
    pub fn publish(&self, m: &ShardMetrics, busy: Duration) {
        for dir in 0..2 {
            for ch in 0..2 {
                let (b, p) = (self.bytes[dir][ch].get(), self.packets[dir][ch].get());
                let (pb, pp) = self.published[dir][ch].replace((b, p));
                m.bytes[dir][ch].inc_by(b - pb);
                m.packets[dir][ch].inc_by(p - pp);
            }
        }
        m.busy.inc_by(busy.as_secs_f64());
    }
}

/// Binds the endpoint's listener (at start, so a bad address refuses it).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// What serving one scrape may take, and how many are served at once.
#[derive(Clone, Copy)]
struct Limits {
    /// For reading the request head and writing the reply together,
    /// counted from the accept.
    deadline: Duration,
    /// Connections served at once; more are closed at accept.
    in_flight: usize,
}

const LIMITS: Limits = Limits {
    deadline: Duration::from_secs(5),
    in_flight: 16,
};

/// Serves `GET /metrics`: one thread accepts, and each connection gets a
/// short-lived thread of its own, so a slow client holds up nobody else.
/// `before` runs before each encoding (to set gauges read from elsewhere).
pub fn spawn(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    before: impl Fn(&Metrics) + Send + Sync + 'static,
) -> std::io::Result<()> {
    serve(listener, metrics, Arc::new(before), LIMITS)
}

type Before = Arc<dyn Fn(&Metrics) + Send + Sync>;

fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    before: Before,
    limits: Limits,
) -> std::io::Result<()> {
    let in_flight = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else {
                    // Out of descriptors, most likely: let some close.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let deadline = Instant::now() + limits.deadline;
                // Beyond the cap the connection is dropped, so closed at once.
                let Some(slot) = Slot::take(&in_flight, limits.in_flight) else {
                    continue;
                };
                let (metrics, before) = (metrics.clone(), before.clone());
                // A failed spawn drops the closure: the connection and its slot.
                let _ = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .spawn(move || {
                        let _slot = slot;
                        answer(conn, &metrics, &*before, deadline);
                    });
            }
        })?;
    Ok(())
}

/// One of the connections served at once; given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The time left before `deadline`; None once it has passed.
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// Reads one request head and writes its reply, all before `deadline`:
/// every read and write waits only for the time left, so a client that
/// trickles its request or drains the reply slowly is cut off all the same.
fn answer(mut conn: TcpStream, metrics: &Metrics, before: &dyn Fn(&Metrics), deadline: Instant) {
    let mut head = [0u8; 4096];
    let mut n = 0;
    // Until the end of the request head, bounded in size; each read's
    // bytes (and the three before them) are searched once.
    while n < head.len() {
        let Some(t) = left(deadline) else { return };
        if conn.set_read_timeout(Some(t)).is_err() {
            return;
        }
        match conn.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => {
                let from = n.saturating_sub(3);
                n += k;
                if head[from..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let line = head[..n].split(|&b| b == b'\r').next().unwrap_or_default();
    let reply = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?") {
        before(metrics);
        let body = metrics.encode();
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    } else {
        let body = "metrics are at /metrics\n";
        format!("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    let mut out = reply.as_bytes();
    while !out.is_empty() {
        let Some(t) = left(deadline) else { return };
        if conn.set_write_timeout(Some(t)).is_err() {
            return;
        }
        match conn.write(out) {
            Ok(0) => return,
            Ok(k) => out = &out[k..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(limits: Limits) -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        serve(
            listener,
            Arc::new(Metrics::new(1)),
            Arc::new(|_: &Metrics| {}),
            limits,
        )
        .unwrap();
        addr
    }

    /// A whole scrape, bounded in time.
    fn scrape(addr: SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    }

    /// Waits (at most `max`) for the server to close `c`; returns when.
    fn closed_by_server(c: &mut TcpStream, max: Duration) -> Option<Instant> {
        c.set_read_timeout(Some(max)).unwrap();
        match c.read(&mut [0u8; 64]) {
            Ok(0) => Some(Instant::now()),
            // A close with unread bytes in the server's buffer is a reset.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(Instant::now()),
            // Bytes, or the time ran out.
            _ => None,
        }
    }

    #[test]
    fn a_trickling_client_holds_up_no_scrape_and_is_cut_off_at_the_deadline() {
        let deadline = Duration::from_secs(2);
        let addr = server(Limits {
            deadline,
            in_flight: 16,
        });
        let mut slow = TcpStream::connect(addr).unwrap();
        let connected = Instant::now();
        // One byte a second, a request that never ends.
        let mut trickle = slow.try_clone().unwrap();
        let trickler = std::thread::spawn(move || {
            for b in b"GET /metrics HTTP/1.1\r\nHost: slow" {
                if trickle.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let asked = Instant::now();
        let reply = scrape(addr);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("# EOF\n"), "{reply}");

        let closed = closed_by_server(&mut slow, Duration::from_secs(5))
            .expect("the server closes the trickling client");
        let after = closed - connected;
        assert!(
            after >= deadline - Duration::from_millis(100),
            "closed after {after:?}"
        );
        assert!(
            after < deadline + Duration::from_secs(1),
            "closed after {after:?}"
        );
        drop(slow);
        trickler.join().unwrap();
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_at_once() {
        let deadline = Duration::from_secs(2);
        let addr = server(Limits {
            deadline,
            in_flight: 2,
        });
        let started = Instant::now();
        let mut silent: Vec<TcpStream> =
            (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut third = TcpStream::connect(addr).unwrap();
        let closed = closed_by_server(&mut third, Duration::from_secs(1))
            .expect("the third connection is closed");
        assert!(
            closed - started < Duration::from_millis(500),
            "{:?}",
            closed - started
        );
        // The two in flight end at their deadline, and scrapes work again.
        for c in &mut silent {
            closed_by_server(c, deadline + Duration::from_secs(1))
                .expect("a silent connection is cut off");
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(scrape(addr).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn traffic_reaches_the_series_once() {
        let m = Metrics::new(2);
        let t = Traffic::default();
        t.rx(Channel::Dtls, 100);
        t.rx(Channel::Dtls, 50);
        t.tx(Channel::Cstp, 1000);
        t.publish(&m.shards[1], Duration::from_millis(250));
        t.publish(&m.shards[1], Duration::ZERO);
        m.shards[0].logins.inc();
        let text = m.encode();
        assert!(
            text.contains(
                "ocserv_uring_bytes_total{shard=\"1\",direction=\"rx\",channel=\"dtls\"} 150"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ocserv_uring_packets_total{shard=\"1\",direction=\"rx\",channel=\"dtls\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ocserv_uring_bytes_total{shard=\"1\",direction=\"tx\",channel=\"cstp\"} 1000"
            ),
            "{text}"
        );
        assert!(
            text.contains("ocserv_uring_logins_total{shard=\"0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ocserv_uring_shard_busy_seconds_total{shard=\"1\"} 0.25"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
