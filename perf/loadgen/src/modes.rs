//! The three client modes and the echo sink.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::login;
use crate::sessions::run_sessions;
use crate::stats::{gbits, percentiles, Counters, Progress, Summary};
use crate::tls::{io_err, TlsConn};
use crate::tunnel;
use crate::{run_threads, Ctx, Target};

/// Per-attempt limit: a stuck server must not hang the run.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn limited<T>(
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    monoio::time::timeout(ATTEMPT_LIMIT, f)
        .await
        .unwrap_or_else(|_| Err(io_err("timed out after 30 s")))
}

fn header(s: &mut Summary, mode: &str, ctx: &Ctx) {
    s.text("mode", mode);
    s.text("server", &ctx.addr.to_string());
}

fn finish(s: &mut Summary, ctx: &Ctx, json: bool) -> bool {
    let errors = ctx.counters.errors();
    s.text("errors", &errors.join(" | "));
    s.print(json);
    errors.is_empty()
        && Counters::get(&ctx.counters.failed) == 0
        && Counters::get(&ctx.counters.dropped) == 0
}

// ------------------------------------------------------------------ login

/// Whether a login goes on to CONNECT, and on which connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connect {
    No,
    Same,
    Fresh,
}

/// What each attempt of the login mode does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Login(Connect),
    /// A cycle of the soak (`soak_cycle`).
    Soak,
}

async fn attempt(ctx: &Ctx, i: usize, what: Attempt) -> io::Result<()> {
    match what {
        Attempt::Login(connect) => one_login(ctx, i, connect).await,
        Attempt::Soak => soak_cycle(ctx, i).await,
    }
}

fn disconnect_frame() -> Vec<u8> {
    tunnel::frame(
        ocserv_proto::cstp::FrameType::Disconnect,
        &[ocserv_proto::cstp::DISCONNECT_USER_LOGOUT],
    )
}

/// Cycle `i` of the soak: every third a clean logout, a dropped
/// connection, a cookie that never connects.
async fn soak_cycle(ctx: &Ctx, i: usize) -> io::Result<()> {
    let src = ctx.source(i);
    let mut c = TlsConn::connect(ctx.addr, src, ctx.tls.clone()).await?;
    let cookie = login::login(&mut c, &ctx.creds).await?;
    if i % 3 == 2 {
        c.tls.send_close_notify();
        return c.flush().await;
    }
    let tun = login::connect(&mut c, &ctx.creds, &cookie, true).await?;
    let psk = c.export_psk()?;
    let addr =
        tunnel::dtls_addr(ctx.addr, &tun).ok_or_else(|| io_err("no X-DTLS-Port in the reply"))?;
    let app_id = tun
        .get("X-DTLS-App-ID")
        .ok_or_else(|| io_err("no X-DTLS-App-ID in the reply"))?;
    let src = src.or_else(|| c.tcp.local_addr().ok().map(|a| a.ip()));
    let ch = crate::dtls::DtlsChannel::connect(addr, src, psk, app_id, ctx.counters.clone())
        .await
        .map_err(|e| io_err(format!("DTLS: {e}")))?;
    Counters::add(&ctx.counters.dtls_up, 1);
    ch.close();
    if i % 3 == 0 {
        c.write_plain(&disconnect_frame()).await?;
        c.tls.send_close_notify();
        c.flush().await
    } else {
        // Gone without a word: the socket closes with `c`.
        Ok(())
    }
}

async fn one_login(ctx: &Ctx, i: usize, connect: Connect) -> io::Result<()> {
    let mut c = TlsConn::connect(ctx.addr, ctx.source(i), ctx.tls.clone()).await?;
    let cookie = login::login(&mut c, &ctx.creds).await?;
    if connect == Connect::Fresh {
        c.tls.send_close_notify();
        c.flush().await?;
        c = TlsConn::connect(ctx.addr, ctx.source(i), ctx.tls.clone()).await?;
    }
    if connect != Connect::No {
        login::connect(&mut c, &ctx.creds, &cookie, false).await?;
        c.write_plain(&disconnect_frame()).await?;
    }
    c.tls.send_close_notify();
    c.flush().await
}

pub(crate) fn login_mode(
    ctx: Arc<Ctx>,
    t: &Target,
    concurrency: usize,
    count: u64,
    what: Attempt,
) -> bool {
    let next = Arc::new(AtomicU64::new(0));
    let threads = t.threads.max(1).min(concurrency.max(1));
    let progress = Progress::start(ctx.counters.clone(), "logins");
    let t0 = Instant::now();
    let c2 = ctx.clone();
    let lat: Vec<Duration> = run_threads(threads, move |th| {
        let (ctx, next) = (c2.clone(), next.clone());
        async move {
            let lat = Rc::new(RefCell::new(Vec::new()));
            let mine: Vec<usize> = (0..concurrency).filter(|k| k % threads == th).collect();
            let tasks: Vec<_> = mine
                .into_iter()
                .map(|_| {
                    let (ctx, next, lat) = (ctx.clone(), next.clone(), lat.clone());
                    monoio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Relaxed);
                            if i >= count {
                                break;
                            }
                            let s = Instant::now();
                            match limited(attempt(&ctx, i as usize, what)).await {
                                Ok(()) => {
                                    lat.borrow_mut().push(s.elapsed());
                                    Counters::add(&ctx.counters.ok, 1);
                                }
                                Err(e) => ctx.counters.error(e.to_string()),
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            lat.take()
        }
    })
    .into_iter()
    .flatten()
    .collect();
    let elapsed = t0.elapsed();
    drop(progress);
    let ok = Counters::get(&ctx.counters.ok);
    let p = percentiles(lat);
    let mut s = Summary(Vec::new());
    header(
        &mut s,
        match what {
            Attempt::Login(Connect::No) => "login",
            Attempt::Login(Connect::Same) => "login+connect",
            Attempt::Login(Connect::Fresh) => "login+connect (fresh connection)",
            Attempt::Soak => "soak",
        },
        &ctx,
    );
    s.num("attempted", count);
    s.num("ok", ok);
    s.num("failed", Counters::get(&ctx.counters.failed));
    s.num("concurrency", concurrency);
    s.num("seconds", format!("{:.3}", elapsed.as_secs_f64()));
    s.num(
        "logins_per_s",
        format!("{:.1}", ok as f64 / elapsed.as_secs_f64()),
    );
    s.num("latency_p50_ms", format!("{:.2}", p.p50));
    s.num("latency_p90_ms", format!("{:.2}", p.p90));
    s.num("latency_p99_ms", format!("{:.2}", p.p99));
    s.num("latency_max_ms", format!("{:.2}", p.max));
    finish(&mut s, &ctx, t.json) && ok == count
}

pub(crate) fn idle_mode(
    ctx: Arc<Ctx>,
    t: &Target,
    sessions: usize,
    hold: Duration,
    ramp: usize,
    dtls: bool,
) -> bool {
    let progress = Progress::start(ctx.counters.clone(), "sessions");
    let t0 = Instant::now();
    let ramp_end = run_sessions(
        &ctx,
        t,
        sessions,
        ramp,
        dtls,
        move |_ctx, _i, mut link, p, start| async move {
            let r = tunnel::hold(&mut link, &p, start + hold, None).await;
            link.close().await;
            r
        },
    );
    drop(progress);
    let mut s = Summary(Vec::new());
    header(&mut s, "idle", &ctx);
    s.num("sessions", sessions);
    s.num("established", Counters::get(&ctx.counters.ok));
    s.num(
        "failed",
        Counters::get(&ctx.counters.failed) - Counters::get(&ctx.counters.dropped),
    );
    s.num("dropped_while_held", Counters::get(&ctx.counters.dropped));
    s.num("dtls_up", Counters::get(&ctx.counters.dtls_up));
    s.num(
        "ramp_seconds",
        format!("{:.3}", (ramp_end - t0).as_secs_f64()),
    );
    s.num("held_seconds", hold.as_secs());
    finish(&mut s, &ctx, t.json) && Counters::get(&ctx.counters.ok) == sessions as u64
}

pub(crate) fn throughput_mode(
    ctx: Arc<Ctx>,
    t: &Target,
    sessions: usize,
    secs: Duration,
    dtls: bool,
    load: tunnel::Load,
) -> bool {
    let progress = Progress::start(ctx.counters.clone(), "throughput");
    let start = run_sessions(
        &ctx,
        t,
        sessions,
        sessions,
        dtls,
        move |ctx, i, mut link, p, start| async move {
            let sport = 40000 + (i % 20000) as u16;
            let r = tunnel::flood(&mut link, &p, sport, &load, start + secs, &ctx.counters).await;
            // Let echoes in flight arrive before the count stops.
            let r2 = tunnel::hold(
                &mut link,
                &p,
                Instant::now() + Duration::from_millis(500),
                None,
            )
            .await;
            link.close().await;
            r.and(r2)
        },
    );
    let _ = start;
    drop(progress);
    let c = &ctx.counters;
    let mut s = Summary(Vec::new());
    header(
        &mut s,
        if dtls {
            "throughput-dtls"
        } else {
            "throughput-cstp"
        },
        &ctx,
    );
    s.num("sessions", sessions);
    s.num("established", Counters::get(&c.ok));
    s.num("dtls_up", Counters::get(&c.dtls_up));
    s.num("seconds", secs.as_secs());
    s.num("payload_bytes", load.size);
    s.num("tx_packets", Counters::get(&c.tx_pkts));
    s.num("tx_bytes", Counters::get(&c.tx_bytes));
    s.num("rx_packets", Counters::get(&c.rx_pkts));
    s.num("rx_bytes", Counters::get(&c.rx_bytes));
    s.num(
        "tx_gbit_s",
        format!("{:.3}", gbits(Counters::get(&c.tx_bytes), secs)),
    );
    s.num(
        "rx_gbit_s",
        format!("{:.3}", gbits(Counters::get(&c.rx_bytes), secs)),
    );
    finish(&mut s, &ctx, t.json) && Counters::get(&c.ok) == sessions as u64
}

/// The sink: echoes data packets, drops those marked DISCARD, and sends
/// to each session that asked (packet::SOURCE_REQUEST) for as long as its
/// lease runs. One thread, one socket; waits in poll() when idle.
pub(crate) fn sink(listen: SocketAddr) -> io::Result<()> {
    use crate::packet::{parse_source_request, DISCARD, LEASE_MS, SOURCE_STOP};
    use std::collections::HashMap;
    use std::os::fd::AsRawFd;

    /// One session asking for a download.
    struct Flow {
        size: usize,
        rate_bps: u64,
        /// Packets per turn: 1 evenly paced, BURST when asked to burst.
        batch: u64,
        lease_until: Instant,
        next_due: Instant,
        seq: u64,
    }
    /// Packets per flow per turn when unpaced (or catching up).
    const BURST: u64 = 32;

    let sock = std::net::UdpSocket::bind(listen)?;
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(4 << 20);
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
    sock.set_nonblocking(true)?;
    eprintln!("ocu-loadgen sink: echo, drop and source on {listen}");
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 65536];
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    loop {
        loop {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let data = &buf[..n];
            let now = Instant::now();
            if let Some((mbit, size, burst)) = parse_source_request(data) {
                let f = flows.entry(from).or_insert_with(|| {
                    let rate_bps = u64::from(mbit) * 1_000_000;
                    let size = usize::from(size).min(out.len());
                    let even = !burst && rate_bps > 0;
                    // Evenly paced flows start at a random point of their
                    // first interval.
                    let phase = if even {
                        let seed = match from {
                            SocketAddr::V4(a) => {
                                u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port())
                            }
                            SocketAddr::V6(a) => u64::from(a.port()),
                        };
                        tunnel::phase(seed) * ((size as u64 + 28) * 8) as f64 / rate_bps as f64
                    } else {
                        0.0
                    };
                    Flow {
                        size,
                        rate_bps,
                        batch: if even { 1 } else { BURST },
                        lease_until: now,
                        next_due: now + Duration::from_secs_f64(phase),
                        seq: 0,
                    }
                });
                f.lease_until = now + Duration::from_millis(LEASE_MS);
            } else if data.starts_with(SOURCE_STOP) {
                flows.remove(&from);
            } else if data.get(8) != Some(&DISCARD) {
                let _ = sock.send_to(data, from);
            }
        }
        let now = Instant::now();
        flows.retain(|_, f| f.lease_until > now);
        let mut next_wake = now + Duration::from_millis(LEASE_MS);
        for (to, f) in flows.iter_mut() {
            if f.rate_bps > 0 && f.next_due > now {
                next_wake = next_wake.min(f.next_due);
                continue;
            }
            for _ in 0..f.batch {
                out[..8].copy_from_slice(&f.seq.to_be_bytes());
                f.seq += 1;
                // A full TUN queue drops; the socket itself rarely pushes back.
                if sock.send_to(&out[..f.size], to).is_err() {
                    break;
                }
            }
            if f.rate_bps > 0 {
                let burst_bits = f.batch * (f.size as u64 + 28) * 8;
                f.next_due = f.next_due.max(now - Duration::from_millis(10))
                    + Duration::from_secs_f64(burst_bits as f64 / f.rate_bps as f64);
                next_wake = next_wake.min(f.next_due);
            } else {
                next_wake = now;
            }
        }
        let wait = next_wake.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            let mut pfd = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
            // SAFETY: poll on one pollfd we own.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }
}
