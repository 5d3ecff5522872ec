//! Brute-force protection: ban points per client address.
//!
//! Wrong passwords, malformed requests and (optionally) plain connections
//! add points to the source address; an address whose score reaches
//! `max_ban_score` is refused at accept for `ban_time`. A score with no new
//! points for `ban_reset_time` starts again from zero. IPv6 clients are
//! scored per /64, since one host can pick any address in its prefix.
//!
//! One table for all shards (SO_REUSEPORT spreads one address's
//! connections over them), split by address hash into independently locked
//! parts, so a spray from many addresses contends on no single lock. The
//! locks are taken per connection and per failure, never per packet, and
//! not at all when bans are off. Every event costs O(1): each part keeps its
//! scores in the order they were last raised and its bans in the order they
//! started, so what has run out is always at the front and goes a few
//! entries per event, and a part never holds more than `PART_CAP` entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
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

impl Entry {
    /// A ban still in force.
    fn banned_at(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|u| now < u)
    }

    /// Whether the entry still means something at `now`: an ended ban
    /// starts again from zero, and so does a score left quiet for
    /// `reset_time`.
    fn live(&self, now: Instant, p: &BanPolicy) -> bool {
        match self.banned_until {
            Some(u) => now < u,
            None => now.saturating_duration_since(self.last_points) < p.reset_time,
        }
    }
}

/// An address's state, for logs and the control tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanInfo {
    pub addr: IpAddr,
    pub score: u32,
    /// Time left of a ban in force.
    pub banned_for: Option<Duration>,
}

/// Independently locked parts of the table (a power of two).
const PARTS: usize = 16;
/// Entries one part holds at most: 16 × 4096 addresses, a few MB in all.
const PART_CAP: usize = 4096;
/// Run-out entries removed per scored event at most: more than the one
/// entry an event can add, so a backlog drains, few enough to keep every
/// event short.
const EXPIRE_PER_EVENT: usize = 4;

pub struct Bans {
    /// Replaced by a reload; read once per scored event.
    policy: Mutex<BanPolicy>,
    /// Keyed per process, so nobody can aim a spray at one part.
    hasher: RandomState,
    parts: Box<[Mutex<Part>]>,
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

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    key: IpAddr,
    entry: Entry,
    prev: u32,
    next: u32,
}

/// A doubly linked list threaded through `Part::slots`.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
    };
}

/// One lock's share of the table. An entry is on `scores` while it has no
/// ban and on `bans` once it has one; moving an entry to the back of its
/// list whenever its time changes keeps both lists in time order.
struct Part {
    index: HashMap<IpAddr, u32>,
    slots: Vec<Slot>,
    /// Slots of removed entries, for reuse.
    free: Vec<u32>,
    /// Scores without a ban, least recently raised first.
    scores: List,
    /// Bans, the first to end first (ban_time is one value per policy; a
    /// reload that shortens it only delays the removal of the newer bans,
    /// whose end every lookup still checks).
    bans: List,
}

impl Part {
    fn new() -> Self {
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            scores: List::EMPTY,
            bans: List::EMPTY,
        }
    }

    fn get(&self, k: &IpAddr) -> Option<&Entry> {
        self.index.get(k).map(|&i| &self.slots[i as usize].entry)
    }

    fn list_of(&mut self, i: u32) -> &mut List {
        if self.slots[i as usize].entry.banned_until.is_some() {
            &mut self.bans
        } else {
            &mut self.scores
        }
    }

    /// Takes slot `i` off its list; call before its entry changes lists.
    fn unlink(&mut self, i: u32) {
        let Slot { prev, next, .. } = self.slots[i as usize];
        match prev {
            NIL => self.list_of(i).head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.list_of(i).tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    /// Appends slot `i` to the list its entry belongs on.
    fn push_back(&mut self, i: u32) {
        let tail = self.list_of(i).tail;
        self.slots[i as usize].prev = tail;
        self.slots[i as usize].next = NIL;
        match tail {
            NIL => self.list_of(i).head = i,
            t => self.slots[t as usize].next = i,
        }
        self.list_of(i).tail = i;
    }

    fn remove(&mut self, i: u32) {
        self.unlink(i);
        self.index.remove(&self.slots[i as usize].key);
        self.free.push(i);
    }

    fn insert(&mut self, key: IpAddr, entry: Entry) -> u32 {
        let slot = Slot {
            key,
            entry,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.push_back(i);
        i
    }

    /// Removes up to `budget` entries that have run out, oldest first.
    fn expire(&mut self, now: Instant, p: &BanPolicy, budget: usize) {
        for _ in 0..budget {
            let head = [self.scores.head, self.bans.head]
                .into_iter()
                .find(|&i| i != NIL && !self.slots[i as usize].entry.live(now, p));
            match head {
                Some(i) => self.remove(i),
                None => return,
            }
        }
    }

    /// Frees one slot in a full part. The oldest score goes first. When
    /// every entry is a ban in force, the ban that would end first goes:
    /// refusing to score new addresses instead would let every address
    /// past the spray guess passwords without limit, while this only
    /// shortens the oldest bans, and only under a spray large enough to
    /// fill the table with bans.
    fn make_room(&mut self) {
        let victim = if self.scores.head != NIL {
            self.scores.head
        } else {
            self.bans.head
        };
        if victim != NIL {
            self.remove(victim);
        }
    }
}

impl Bans {
    pub fn new(policy: BanPolicy) -> Self {
        Self {
            policy: Mutex::new(policy),
            hasher: RandomState::new(),
            parts: (0..PARTS).map(|_| Mutex::new(Part::new())).collect(),
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

    fn with<R>(&self, part: usize, f: impl FnOnce(&mut Part) -> R) -> R {
        // A panic under the lock would be a bug; the part it leaves is still
        // safe to use (indexes are bounds-checked), and carrying on beats
        // failing every connection from then on.
        f(&mut self.parts[part]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn part_of(&self, k: &IpAddr) -> usize {
        self.hasher.hash_one(k) as usize % PARTS
    }

    /// Whether connections from `addr` are refused now.
    pub fn is_banned(&self, addr: IpAddr, now: Instant) -> bool {
        // Scored and listed, never enforced on the host itself (ocserv
        // spares local addresses too): a proxy or an admin on the server
        // would lock everyone out.
        if !self.enabled() || addr.to_canonical().is_loopback() {
            return false;
        }
        let k = key(addr);
        self.with(self.part_of(&k), |t| {
            t.get(&k).is_some_and(|e| e.banned_at(now))
        })
    }

    /// Adds `points` to `addr`'s score. Returns the ban's length when this
    /// call started one.
    pub fn add(&self, addr: IpAddr, points: u32, now: Instant) -> Option<Duration> {
        if !self.enabled() || points == 0 {
            return None;
        }
        let p = self.policy();
        let k = key(addr);
        self.with(self.part_of(&k), |t| {
            t.expire(now, &p, EXPIRE_PER_EVENT);
            let fresh = Entry {
                score: 0,
                last_points: now,
                banned_until: None,
            };
            let i = match t.index.get(&k) {
                Some(&i) => {
                    if !t.slots[i as usize].entry.live(now, &p) {
                        t.unlink(i);
                        t.slots[i as usize].entry = fresh;
                        t.push_back(i);
                    }
                    i
                }
                None => {
                    if t.index.len() >= PART_CAP {
                        t.make_room();
                    }
                    t.insert(k, fresh)
                }
            };
            let mut e = t.slots[i as usize].entry;
            e.score = e.score.saturating_add(points);
            // Clocks read on two threads may arrive out of order; the
            // later one keeps the list in time order.
            e.last_points = e.last_points.max(now);
            let started = e.banned_until.is_none() && e.score >= p.max_score;
            if started {
                e.banned_until = Some(now + p.ban_time);
            }
            if e.banned_until.is_none() || started {
                // Raised score: to the back of `scores`; new ban: to the
                // back of `bans`. A ban in force keeps its place.
                t.unlink(i);
                t.slots[i as usize].entry = e;
                t.push_back(i);
            } else {
                t.slots[i as usize].entry = e;
            }
            started.then_some(p.ban_time)
        })
    }

    /// Lifts a ban and forgets the score; false if `addr` had none.
    pub fn unban(&self, addr: IpAddr) -> bool {
        let k = key(addr);
        self.with(self.part_of(&k), |t| match t.index.get(&k) {
            Some(&i) => {
                t.remove(i);
                true
            }
            None => false,
        })
    }

    /// Every address with points or a ban, highest score first.
    pub fn list(&self, now: Instant) -> Vec<BanInfo> {
        let p = self.policy();
        let mut v = Vec::new();
        for part in 0..PARTS {
            self.with(part, |t| {
                v.extend(
                    t.index
                        .iter()
                        .map(|(a, &i)| (a, t.slots[i as usize].entry))
                        .filter(|(_, e)| e.live(now, &p))
                        .map(|(a, e)| BanInfo {
                            addr: *a,
                            score: e.score,
                            banned_for: e.banned_until.filter(|u| now < *u).map(|u| u - now),
                        }),
                );
            });
        }
        v.sort_by(|a, b| b.score.cmp(&a.score).then(a.addr.cmp(&b.addr)));
        v
    }

    /// How many addresses are banned now: a walk over the bans only.
    pub fn banned_count(&self, now: Instant) -> usize {
        let mut n = 0;
        for part in 0..PARTS {
            self.with(part, |t| {
                let mut i = t.bans.head;
                while i != NIL {
                    let s = &t.slots[i as usize];
                    n += usize::from(s.entry.banned_at(now));
                    i = s.next;
                }
            });
        }
        n
    }

    /// Entries held, live or not yet removed.
    #[cfg(test)]
    fn len(&self) -> usize {
        (0..PARTS)
            .map(|part| self.with(part, |t| t.index.len()))
            .sum()
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
    fn the_host_itself_is_scored_but_never_banned() {
        let b = bans(10);
        let t0 = Instant::now();
        for a in ["127.0.0.1", "::1", "::ffff:127.0.0.2"] {
            b.add(ip(a), 50, t0);
            assert!(!b.is_banned(ip(a), t0), "{a}");
        }
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

    fn nth_v4(i: u32) -> IpAddr {
        IpAddr::V4((0x0a00_0000 + i).into())
    }

    #[test]
    fn a_spray_stays_under_the_cap_and_bans_stay() {
        let b = bans(1000);
        let t0 = Instant::now();
        let banned = ip("192.0.2.1");
        b.add(banned, 1000, t0);
        // An old score that keeps getting points is never the oldest.
        let active = ip("192.0.2.2");
        let n = 200_000;
        for i in 0..n {
            let t = t0 + Duration::from_micros(u64::from(i));
            // Half IPv4, half distinct IPv6 /64s; scores stay under the ban.
            let a = if i % 2 == 0 {
                nth_v4(i)
            } else {
                IpAddr::V6((u128::from(i) << 64 | 1).into())
            };
            b.add(a, 10, t);
            if i % 1000 == 0 {
                b.add(active, 1, t);
            }
            assert!(b.len() <= PARTS * PART_CAP);
        }
        let end = t0 + Duration::from_micros(u64::from(n));
        assert!(b.is_banned(banned, end));
        assert_eq!(b.banned_count(end), 1);
        // The oldest scores made room, the newest are all there.
        assert_eq!(b.len(), PARTS * PART_CAP);
        let listed: std::collections::HashSet<IpAddr> =
            b.list(end).iter().map(|i| i.addr).collect();
        assert!((0..100).step_by(2).all(|i| !listed.contains(&nth_v4(i))));
        assert!(listed.contains(&active));
        assert!((n - 1000..n)
            .step_by(2)
            .all(|i| listed.contains(&nth_v4(i))));
    }

    #[test]
    fn a_table_of_bans_alone_forgets_the_first_to_end() {
        let b = bans(1);
        let t0 = Instant::now();
        let n = 200_000;
        for i in 0..n {
            let t = t0 + Duration::from_micros(u64::from(i));
            assert_eq!(b.add(nth_v4(i), 1, t), Some(Duration::from_secs(60)));
            assert!(b.len() <= PARTS * PART_CAP);
        }
        let end = t0 + Duration::from_micros(u64::from(n));
        assert!((0..100).all(|i| !b.is_banned(nth_v4(i), end)));
        assert!((n - 1000..n).all(|i| b.is_banned(nth_v4(i), end)));
        assert_eq!(b.banned_count(end), b.len());
    }

    #[test]
    fn run_out_entries_go_a_few_per_event() {
        let b = bans(30);
        let t0 = Instant::now();
        for i in 0..100 {
            b.add(nth_v4(i), 10, t0);
        }
        let banned = ip("192.0.2.1");
        b.add(banned, 30, t0 + Duration::from_secs(250));
        assert_eq!(b.len(), 101);
        // 300 s later the 100 scores have run out: list() no longer shows
        // them, and each event removes at most EXPIRE_PER_EVENT of them
        // (from its own part), never a live entry.
        let later = t0 + Duration::from_secs(300);
        assert_eq!(b.list(later).len(), 1);
        assert_eq!(b.len(), 101);
        let mut before = b.len();
        // Enough new addresses that every part gets events.
        for i in 0..1000 {
            b.add(nth_v4(1000 + i), 10, later);
            let now = b.len();
            assert!(
                now + EXPIRE_PER_EVENT > before && now <= before + 1,
                "{before} -> {now}"
            );
            before = now;
        }
        // Every run-out score is gone; the new ones and the ban stay.
        assert_eq!(b.len(), 1001);
        assert!(b.is_banned(banned, later));
        // The ban ends at 310 s; the next event in its part removes it.
        let after_ban = t0 + Duration::from_secs(311);
        assert!(!b.is_banned(banned, after_ban));
        for i in 0..1000 {
            b.add(nth_v4(1000 + i), 1, after_ban);
        }
        assert_eq!(b.len(), 1000);
        assert_eq!(b.banned_count(after_ban), 0);
    }
}
