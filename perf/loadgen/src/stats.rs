//! Counters shared by all threads, the once-a-second progress line on
//! stderr, latency percentiles and the final summary (table or JSON).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Sessions currently up (idle/throughput modes).
    pub(crate) active: AtomicU64,
    pub(crate) dtls_up: AtomicU64,
    pub(crate) tx_pkts: AtomicU64,
    pub(crate) tx_bytes: AtomicU64,
    pub(crate) rx_pkts: AtomicU64,
    pub(crate) rx_bytes: AtomicU64,
    /// Sessions the server ended or that broke after they were up.
    pub(crate) dropped: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// How many distinct error messages are kept for the summary.
const KEEP_ERRORS: usize = 5;

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    pub(crate) fn error(&self, e: String) {
        self.failed.fetch_add(1, Relaxed);
        let mut v = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < KEEP_ERRORS && !v.contains(&e) {
            v.push(e);
        }
    }

    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Prints one line per second until dropped.
pub(crate) struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(c: Arc<Counters>, what: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let (mut last_tx, mut last_rx) = (0u64, 0u64);
            let mut next = Duration::from_secs(1);
            while !s.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if t0.elapsed() < next {
                    continue;
                }
                next += Duration::from_secs(1);
                let (tx, rx) = (Counters::get(&c.tx_bytes), Counters::get(&c.rx_bytes));
                eprintln!(
                    "[{:>4}s] {what}: ok {} failed {} active {} dtls {} | tx {:.3} Gbit/s rx {:.3} Gbit/s",
                    t0.elapsed().as_secs(),
                    Counters::get(&c.ok),
                    Counters::get(&c.failed),
                    Counters::get(&c.active),
                    Counters::get(&c.dtls_up),
                    gbits(tx - last_tx, Duration::from_secs(1)),
                    gbits(rx - last_rx, Duration::from_secs(1)),
                );
                (last_tx, last_rx) = (tx, rx);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn gbits(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64().max(1e-9) / 1e9
}

/// Latency percentiles in milliseconds.
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

pub(crate) fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    if v.is_empty() {
        return Percentiles {
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            max: 0.0,
        };
    }
    v.sort_unstable();
    let at = |q: f64| {
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1e3
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// Ordered name/value pairs printed as a table or one JSON object.
pub(crate) struct Summary(pub Vec<(&'static str, String)>);

impl Summary {
    pub(crate) fn num(&mut self, k: &'static str, v: impl std::fmt::Display) {
        self.0.push((k, v.to_string()));
    }

    pub(crate) fn text(&mut self, k: &'static str, v: &str) {
        let esc: String = v
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                c if c.is_control() => vec![' '],
                c => vec![c],
            })
            .collect();
        self.0.push((k, format!("\"{esc}\"")));
    }

    pub(crate) fn print(&self, json: bool) {
        if json {
            let body: Vec<String> = self
                .0
                .iter()
                .map(|(k, v)| format!("\"{k}\": {v}"))
                .collect();
            println!("{{{}}}", body.join(", "));
        } else {
            let w = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in &self.0 {
                println!("{k:<w$}  {}", v.trim_matches('"'));
            }
        }
    }
}
