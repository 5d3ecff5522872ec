//! Brute-force protection: ban points per client address.
//!
//! Wrong passwords, malformed requests and (optionally) plain connections
//! add points to the source address; an address whose score reaches
//! `max_ban_score` is refused at accept for `ban_time`. A score with no new
//! points for `ban_reset_time` starts again from zero. IPv6 clients are
//! scored per /64, since one host can pick any address in its prefix.
//!
//! One table for all shards (SO_REUSEPORT spreads one address's
//! connections over them); the lock is taken per connection and per
//! failure, never per packet, and not at all when bans are off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanPolicy {
    /// 0 turns bans off.
    pub max_score: u32,
    pub ban_time: Duration,
    pub reset_time: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    score: u32,
    last_points: Instant,
    banned_until: Option<Instant>,
}

/// An address's state, for logs and the control tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanInfo {
    pub addr: IpAddr,
    pub score: u32,
    /// Time left of a ban in force.
    pub banned_for: Option<Duration>,
}

pub struct Bans {
    /// Replaced by a reload; read once per scored event.
    policy: Mutex<BanPolicy>,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// The key an address is scored under (IPv6 per /64).
pub fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Prune idle entries once the table holds this many.
const PRUNE_AT: usize = 4096;

impl Bans {
    pub fn new(policy: BanPolicy) -> Self {
        Self {
            policy: Mutex::new(policy),
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.policy().max_score > 0
    }

    fn policy(&self) -> BanPolicy {
        *self
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A reload's new policy; scores and bans in force stay.
    pub fn set_policy(&self, p: BanPolicy) {
        *self
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = p;
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<IpAddr, Entry>) -> R) -> R {
        // Every change is a whole-entry insert or remove: a poisoned lock
        // still holds a consistent table.
        f(&mut self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether connections from `addr` are refused now.
    pub fn is_banned(&self, addr: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        self.with(|t| {
            t.get(&key(addr))
                .and_then(|e| e.banned_until)
                .is_some_and(|until| now < until)
        })
    }

    /// Adds `points` to `addr`'s score. Returns the ban's length when this
    /// call started one.
    pub fn add(&self, addr: IpAddr, points: u32, now: Instant) -> Option<Duration> {
        if !self.enabled() || points == 0 {
            return None;
        }
        let p = self.policy();
        self.with(|t| {
            if t.len() >= PRUNE_AT {
                t.retain(|_, e| {
                    e.banned_until.is_some_and(|u| now < u)
                        || now.saturating_duration_since(e.last_points) < p.reset_time
                });
            }
            let e = t.entry(key(addr)).or_insert(Entry {
                score: 0,
                last_points: now,
                banned_until: None,
            });
            let ban_over = e.banned_until.is_some_and(|u| now >= u);
            if ban_over || now.saturating_duration_since(e.last_points) >= p.reset_time {
                *e = Entry {
                    score: 0,
                    last_points: now,
                    banned_until: None,
                };
            }
            e.score = e.score.saturating_add(points);
            e.last_points = now;
            if e.banned_until.is_none() && e.score >= p.max_score {
                e.banned_until = Some(now + p.ban_time);
                return Some(p.ban_time);
            }
            None
        })
    }

    /// Lifts a ban and forgets the score; false if `addr` had none.
    pub fn unban(&self, addr: IpAddr) -> bool {
        self.with(|t| t.remove(&key(addr)).is_some())
    }

    /// Every address with points or a ban, highest score first.
    pub fn list(&self, now: Instant) -> Vec<BanInfo> {
        let mut v: Vec<BanInfo> = self.with(|t| {
            t.iter()
                .map(|(a, e)| BanInfo {
                    addr: *a,
                    score: e.score,
                    banned_for: e.banned_until.filter(|u| now < *u).map(|u| u - now),
                })
                .collect()
        });
        v.sort_by(|a, b| b.score.cmp(&a.score).then(a.addr.cmp(&b.addr)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bans(max: u32) -> Bans {
        Bans::new(BanPolicy {
            max_score: max,
            ban_time: Duration::from_secs(60),
            reset_time: Duration::from_secs(300),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reaching_the_score_bans_for_ban_time() {
        let b = bans(30);
        let t0 = Instant::now();
        let a = ip("192.0.2.7");
        assert_eq!(b.add(a, 10, t0), None);
        assert_eq!(b.add(a, 10, t0), None);
        assert!(!b.is_banned(a, t0));
        assert_eq!(b.add(a, 10, t0), Some(Duration::from_secs(60)));
        assert!(b.is_banned(a, t0 + Duration::from_secs(59)));
        assert!(!b.is_banned(ip("192.0.2.8"), t0));
        assert!(!b.is_banned(a, t0 + Duration::from_secs(60)));
        // After the ban the score starts from zero.
        assert_eq!(b.add(a, 10, t0 + Duration::from_secs(61)), None);
        assert_eq!(b.list(t0 + Duration::from_secs(61))[0].score, 10);
    }

    #[test]
    fn quiet_addresses_start_again() {
        let b = bans(30);
        let t0 = Instant::now();
        let a = ip("192.0.2.9");
        b.add(a, 20, t0);
        assert_eq!(b.add(a, 20, t0 + Duration::from_secs(301)), None);
        assert!(!b.is_banned(a, t0 + Duration::from_secs(301)));
    }

    #[test]
    fn ipv6_is_scored_per_64_and_mapped_v4_as_v4() {
        let b = bans(20);
        let t0 = Instant::now();
        b.add(ip("2001:db8:1:2::1"), 10, t0);
        b.add(ip("2001:db8:1:2:ffff::9"), 10, t0);
        assert!(b.is_banned(ip("2001:db8:1:2::77"), t0));
        assert!(!b.is_banned(ip("2001:db8:1:3::1"), t0));
        b.add(ip("::ffff:192.0.2.1"), 20, t0);
        assert!(b.is_banned(ip("192.0.2.1"), t0));
    }

    #[test]
    fn unban_and_off() {
        let b = bans(10);
        let t0 = Instant::now();
        let a = ip("198.51.100.1");
        b.add(a, 10, t0);
        assert!(b.unban(a));
        assert!(!b.is_banned(a, t0));
        assert!(!b.unban(a));
        let off = bans(0);
        assert_eq!(off.add(a, 1000, t0), None);
        assert!(!off.is_banned(a, t0));
    }
}
