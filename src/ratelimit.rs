//! A token bucket for `rx_data_per_sec` / `tx_data_per_sec`: packets over
//! the rate are dropped (policing), which TCP inside the tunnel reads as
//! congestion and slows down to.
//!
//! Time is passed in, so the bucket is pure and the caller decides how
//! often to read the clock. Only sessions with a limit pay for it.

use std::time::Instant;

/// Never less than this much burst, so one full-size packet always fits.
const MIN_BURST: u64 = 16 * 1024;
/// Burst as a fraction of the rate: 1/8 s of traffic at once.
const BURST_DIVISOR: u64 = 8;

#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: u64,
    burst: u64,
    /// Bytes that may pass now, scaled by 1e9 (nanobyte resolution keeps
    /// slow rates exact).
    tokens_nb: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate` bytes per second (> 0).
    pub fn new(rate: u64, now: Instant) -> Self {
        let burst = (rate / BURST_DIVISOR).max(MIN_BURST);
        Self {
            rate,
            burst,
            tokens_nb: u128::from(burst) * 1_000_000_000,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `bytes` if they fit; false means drop the packet.
    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let cap = u128::from(self.burst) * 1_000_000_000;
        let refill = elapsed.as_nanos().saturating_mul(u128::from(self.rate));
        self.tokens_nb = self.tokens_nb.saturating_add(refill).min(cap);
        let need = bytes as u128 * 1_000_000_000;
        if need <= self.tokens_nb {
            self.tokens_nb -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Offers `pkt`-byte packets back to back for `secs` at `offered`
    /// bytes/s; returns the bytes that passed.
    fn run(rate: u64, offered: u64, pkt: usize, secs: u64) -> u64 {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, t0);
        let per_sec = offered / pkt as u64;
        let mut passed = 0;
        for i in 0..per_sec * secs {
            let now = t0 + Duration::from_nanos(i * 1_000_000_000 / per_sec);
            if b.take(pkt, now) {
                passed += pkt as u64;
            }
        }
        passed
    }

    #[test]
    fn overload_is_cut_to_the_rate_plus_one_burst() {
        let rate = 100 * 1024;
        let passed = run(rate, 10 * rate, 1400, 10);
        let burst = (rate / BURST_DIVISOR).max(MIN_BURST);
        assert!(passed <= 10 * rate + burst, "{passed}");
        assert!(passed >= 10 * rate - 1400, "{passed}");
    }

    #[test]
    fn traffic_under_the_rate_passes_whole() {
        let rate = 1024 * 1024;
        assert_eq!(run(rate, rate / 2, 1000, 5), 5 * (rate / 2 / 1000) * 1000);
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(MIN_BURST as usize, later));
        assert!(!b.take(1, later));
        // One millisecond at 1000 B/s is one byte.
        assert!(b.take(1, later + Duration::from_millis(1)));
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1000, t0);
        assert!(b.take(MIN_BURST as usize, t0));
        assert!(!b.take(1, t0 - Duration::from_secs(5)));
        assert!(!b.take(1, t0));
    }
}
