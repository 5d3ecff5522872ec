//! ocu-loadgen: simulated OpenConnect clients for ocserv-uring and ocserv.
//! Modes: `login` (logins/s and latency), `soak` (login cycles ending
//! every way a session can), `idle` (hold N tunnels),
//! `throughput` (UDP-in-IP through M tunnels), `sink` (echo, drop or source).

mod dtls;
mod login;
mod modes;
mod packet;
mod sessions;
mod stats;
mod sync;
mod tls;
mod tunnel;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ocu-loadgen",
    about = "Load generator for OpenConnect VPN servers (ocserv-uring, ocserv)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N concurrent connectors doing TLS + XML login (+ CONNECT), M in total.
    Login {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Also CONNECT, wait for 200 CONNECTED, then DISCONNECT.
        #[arg(long)]
        connect: bool,
        /// CONNECT on a new TLS connection, as a reconnect or a GUI that
        /// authenticates in another process does; on a multi-shard server
        /// about half of them reach the other shard and are handed off.
        #[arg(long, requires = "connect")]
        fresh_connection: bool,
    },
    /// N login cycles, C at a time, each ending its own way in turn: a
    /// clean logout (CONNECT, DTLS, DISCONNECT), a dropped connection
    /// (CONNECT, DTLS, then both sockets closed without a word: the
    /// session waits for a reconnect until cookie_timeout), and a cookie
    /// that never connects. For leak checks (tests/soak.rs).
    Soak {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 300)]
        cycles: u64,
    },
    /// Log in and CONNECT N sessions, keep them alive for --hold seconds.
    Idle {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 10)]
        sessions: usize,
        #[arg(long, default_value_t = 10)]
        hold: u64,
        /// Logins in flight during the ramp.
        #[arg(long, default_value_t = 16)]
        ramp_concurrency: usize,
        /// Bring up DTLS (PSK-NEGOTIATE) on each session.
        #[arg(long)]
        dtls: bool,
    },
    /// M sessions sending UDP-in-IP packets to --sink as fast as the tunnel takes them.
    Throughput {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Send over DTLS (once it is up) instead of CSTP.
        #[arg(long)]
        dtls: bool,
        /// UDP payload bytes per packet (clamped to the tunnel MTU).
        #[arg(long, default_value_t = 1200)]
        size: usize,
        /// Where the packets go, an address in the server's network.
        #[arg(long)]
        sink: SocketAddr,
        /// Pace each session to this many Mbit/s (0: unpaced).
        #[arg(long, default_value_t = 0)]
        rate_mbit: u64,
        /// echo: to the sink and back; up: to the sink only; down: from
        /// the sink only (it sends at --rate-mbit per session); tcp-up:
        /// TCP segments of one stream per session to the sink's address.
        #[arg(long, value_enum, default_value_t = tunnel::Pattern::Echo)]
        pattern: tunnel::Pattern,
        /// With --rate-mbit: even (one packet at a time, evenly spaced, a
        /// random phase per session) or burst (32 back to back, then a pause).
        #[arg(long, value_enum, default_value_t = tunnel::Pacing::Even)]
        pacing: tunnel::Pacing,
    },
    /// UDP sink next to the server: echoes packets, drops those marked
    /// for upload only, and sends to sessions that ask for a download.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
    },
}

/// Where and who: shared by every client mode.
#[derive(Args, Clone)]
pub(crate) struct Target {
    /// https://IP[:PORT]/
    #[arg(long)]
    server: String,
    #[arg(long)]
    user: String,
    /// Not needed for certificate-only logins.
    #[arg(long, default_value = "")]
    password: String,
    /// Client certificate (PEM) offered for certificate logins, with --key.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// pin-sha256:BASE64 of the server's public key.
    #[arg(long)]
    servercert: Option<String>,
    /// Accept any server certificate.
    #[arg(long)]
    insecure: bool,
    /// Local addresses to spread client sockets over, comma-separated.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// monoio runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Everything a simulated client needs, shared by all threads.
pub(crate) struct Ctx {
    pub(crate) addr: SocketAddr,
    pub(crate) creds: login::Creds,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) source_ips: Vec<IpAddr>,
    pub(crate) counters: Arc<stats::Counters>,
}

impl Ctx {
    /// Round-robin local address for connection number `i`.
    pub(crate) fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.source_ips.is_empty()).then(|| self.source_ips[i % self.source_ips.len()])
    }
}

fn parse_server(s: &str) -> Result<SocketAddr, String> {
    let hostport = s
        .strip_prefix("https://")
        .unwrap_or(s)
        .trim_end_matches('/');
    hostport
        .parse::<SocketAddr>()
        .or_else(|_| {
            hostport
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, 443))
        })
        .map_err(|_| {
            format!("--server {s:?}: expected https://IP[:PORT]/ (names are not resolved)")
        })
}

fn make_ctx(t: &Target) -> Result<Arc<Ctx>, String> {
    if t.servercert.is_none() && !t.insecure {
        return Err("give --servercert pin-sha256:... or --insecure".into());
    }
    let addr = parse_server(&t.server)?;
    let host = if addr.port() == 443 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    };
    let cert = match (&t.cert, &t.key) {
        (Some(c), Some(k)) => Some(tls::load_client_cert(c, k)?),
        _ => None,
    };
    let tls =
        tls::client_config(t.servercert.clone(), cert).map_err(|e| format!("TLS setup: {e}"))?;
    Ok(Arc::new(Ctx {
        addr,
        creds: login::Creds {
            host,
            user: t.user.clone(),
            password: t.password.clone(),
        },
        tls,
        source_ips: t.source_ips.clone(),
        counters: Arc::new(stats::Counters::default()),
    }))
}

/// Runs `f(thread_index)` on `n` monoio runtimes and collects the results.
pub(crate) fn run_threads<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n.max(1))
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(4096)
                    .enable_timer()
                    .build()
                    .expect(
                        "monoio io_uring runtime (is io_uring available, memlock high enough?)",
                    );
                rt.block_on(f(i))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("runtime thread panicked"))
        .collect()
}

/// Many sessions need many descriptors: the soft limit goes up to the hard one.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    if ok && r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

fn main() {
    let cli = Cli::parse();
    raise_nofile();
    let res = match cli.mode {
        Mode::Login {
            t,
            concurrency,
            count,
            connect,
            fresh_connection,
        } => {
            let connect = match (connect, fresh_connection) {
                (false, _) => modes::Connect::No,
                (true, false) => modes::Connect::Same,
                (true, true) => modes::Connect::Fresh,
            };
            make_ctx(&t).map(|ctx| {
                modes::login_mode(ctx, &t, concurrency, count, modes::Attempt::Login(connect))
            })
        }
        Mode::Soak {
            t,
            concurrency,
            cycles,
        } => make_ctx(&t)
            .map(|ctx| modes::login_mode(ctx, &t, concurrency, cycles, modes::Attempt::Soak)),
        Mode::Idle {
            t,
            sessions,
            hold,
            ramp_concurrency,
            dtls,
        } => make_ctx(&t).map(|ctx| {
            modes::idle_mode(
                ctx,
                &t,
                sessions,
                Duration::from_secs(hold),
                ramp_concurrency,
                dtls,
            )
        }),
        Mode::Throughput {
            t,
            sessions,
            seconds,
            dtls,
            size,
            sink,
            rate_mbit,
            pattern,
            pacing,
        } => match sink {
            SocketAddr::V4(sink) => make_ctx(&t).map(|ctx| {
                let load = tunnel::Load {
                    sink,
                    size,
                    rate_bps: rate_mbit * 1_000_000,
                    pattern,
                    pacing,
                };
                modes::throughput_mode(ctx, &t, sessions, Duration::from_secs(seconds), dtls, load)
            }),
            SocketAddr::V6(_) => {
                Err("--sink must be an IPv4 address (the tunnels carry IPv4)".into())
            }
        },
        Mode::Sink { listen } => modes::sink(listen)
            .map(|()| true)
            .map_err(|e| format!("sink: {e}")),
    };
    match res {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ocu-loadgen: {e}");
            std::process::exit(2);
        }
    }
}
