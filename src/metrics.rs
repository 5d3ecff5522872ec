//! Prometheus metrics (`[monitoring] metrics_listen`). Each shard owns its
//! series (label `shard`): rare events are counted where they happen, and
//! packet and byte counts are kept in plain cells on the data path and
//! published once per tick, so no packet touches an atomic.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
        Self {
            registry,
            shards,
            bans,
            banned_now,
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

/// Serves `GET /metrics` on a thread of its own; `before` runs before each
/// encoding (to set gauges read from elsewhere).
pub fn spawn(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    before: impl Fn(&Metrics) + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 4096];
            let mut n = 0;
            // Until the end of the request head, bounded in size and time.
            while n < head.len() && !head[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut head[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let line = head[..n].split(|&b| b == b'\r').next().unwrap_or_default();
            let reply = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?") {
                before(&metrics);
                let body = metrics.encode();
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                let body = "metrics are at /metrics\n";
                format!("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
