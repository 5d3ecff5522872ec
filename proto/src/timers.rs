//! A tunnel's timers, sans IO: the session timeout, the idle timeout and
//! dead-peer detection (DPD) on either channel. The shard tells it when
//! the client last sent something and asks what is due; `next_due` says
//! when asking again can change the answer, so the shard's sweep visits
//! only the tunnels whose time has come ([`Deadlines`]), not all of them
//! every second.
//!
//! Deadlines only move later as the client keeps talking, which is what
//! lets a queue entry stay put: at worst it comes up early, is checked
//! and is queued again for the new time.

use std::time::{Duration, Instant};

/// Silence of DPD × this ends a tunnel (or its DTLS channel).
pub const DPD_DROP_FACTOR: u32 = 3;

/// A client sending DATA over CSTP this long after its last DTLS record
/// has given up on DTLS.
pub const CSTP_FALLBACK_AFTER: Duration = Duration::from_secs(15);

/// Why the timers end a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// `session_timeout` after login.
    Session,
    /// No data packet from the client for the idle timeout.
    Idle,
    /// Nothing from the client on either channel for DPD × 3.
    Dpd,
}

/// What the client last sent, as the shard saw it.
#[derive(Clone, Copy, Debug)]
pub struct Heard {
    /// The last data packet, either channel (idleness).
    pub data: Instant,
    /// The last CSTP record of any kind.
    pub cstp: Instant,
    /// The last authenticated DTLS record, while a DTLS channel is up.
    pub dtls: Option<Instant>,
}

impl Heard {
    /// DATA just came over CSTP (at `cstp`): whether the client has given
    /// up on the DTLS channel, which has carried nothing for
    /// [`CSTP_FALLBACK_AFTER`], so packets to it should go over CSTP too
    /// (without waiting for the channel's DPD limit).
    pub fn dtls_abandoned(&self) -> bool {
        self.dtls
            .is_some_and(|at| self.cstp.saturating_duration_since(at) > CSTP_FALLBACK_AFTER)
    }
}

/// What a check found due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The DTLS channel has been silent past the DPD limit: carry packets
    /// over CSTP from now on.
    pub dtls_silent: bool,
    /// Send a DPD request over CSTP (once per silence).
    pub send_dpd: bool,
    /// End the tunnel.
    pub end: Option<Expiry>,
}

#[derive(Clone, Copy, Debug)]
pub struct TunnelTimers {
    dpd: Duration,
    idle: Option<Duration>,
    ends_at: Option<Instant>,
    /// A DPD request went out and the client has not sent on CSTP since.
    dpd_sent: bool,
}

impl TunnelTimers {
    pub fn new(dpd: Duration, idle: Option<Duration>, ends_at: Option<Instant>) -> Self {
        Self {
            dpd: dpd.max(Duration::from_secs(1)),
            idle,
            ends_at,
            dpd_sent: false,
        }
    }

    /// The client sent on CSTP: a DPD request may go out again after the
    /// next silence.
    pub fn heard_on_cstp(&mut self) {
        self.dpd_sent = false;
    }

    /// What is due at `now`. Session timeout first, then idleness, then
    /// DPD; a DTLS channel silent past the limit is reported beside them.
    pub fn check(&mut self, now: Instant, heard: Heard) -> Due {
        let mut due = Due::default();
        if self.ends_at.is_some_and(|end| now >= end) {
            due.end = Some(Expiry::Session);
            return due;
        }
        if self
            .idle
            .is_some_and(|idle| now.saturating_duration_since(heard.data) >= idle)
        {
            due.end = Some(Expiry::Idle);
            return due;
        }
        let limit = self.dpd * DPD_DROP_FACTOR;
        due.dtls_silent = heard
            .dtls
            .is_some_and(|at| now.saturating_duration_since(at) >= limit);
        // Either channel hearing from the client keeps the tunnel alive.
        let last = heard.dtls.map_or(heard.cstp, |at| at.max(heard.cstp));
        let silent = now.saturating_duration_since(last);
        if silent >= limit {
            due.end = Some(Expiry::Dpd);
        } else if silent >= self.dpd && !self.dpd_sent {
            self.dpd_sent = true;
            due.send_dpd = true;
        }
        due
    }

    /// The earliest time `check` can find something due, given what was
    /// heard so far (the DTLS channel's limit only while it is up).
    pub fn next_due(&self, heard: Heard) -> Instant {
        let limit = self.dpd * DPD_DROP_FACTOR;
        let last = heard.dtls.map_or(heard.cstp, |at| at.max(heard.cstp));
        let mut next = if self.dpd_sent {
            last + limit
        } else {
            last + self.dpd
        };
        if let Some(at) = heard.dtls {
            next = next.min(at + limit);
        }
        if let Some(idle) = self.idle {
            next = next.min(heard.data + idle);
        }
        if let Some(end) = self.ends_at {
            next = next.min(end);
        }
        next
    }
}

/// Keys waiting for their deadlines: a wheel of [`TICK`]-wide slots, so
/// queueing and taking a key cost the same at a million keys as at ten
/// (a binary heap's pop touched ~20 scattered cache lines there). A key
/// comes up at the first tick at or after its deadline; a deadline beyond
/// the wheel's [`HORIZON`] comes up at the horizon, for its owner to look
/// and queue it again. A key may be queued more than once; its owner tells
/// the stale entries apart when they come up (a tunnel's id, for instance).
pub struct Deadlines<K> {
    epoch: Instant,
    slots: Vec<Vec<K>>,
    /// The first tick not yet taken.
    next_tick: u64,
    len: usize,
}

/// The wheel's granularity.
pub const TICK: Duration = Duration::from_millis(100);
const SLOTS: u64 = 1024;
/// How far ahead a deadline keeps its place (a little over 100 s).
pub const HORIZON: Duration = Duration::from_millis(100 * (SLOTS - 1));

impl<K> Deadlines<K> {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_tick: 0,
            len: 0,
        }
    }

    /// The tick whose time `at` is, rounded up.
    fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        let tick = TICK.as_nanos();
        u64::try_from(d.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX)
    }

    pub fn schedule(&mut self, at: Instant, key: K) {
        let tick = self
            .tick_of(at)
            .clamp(self.next_tick, self.next_tick + SLOTS - 1);
        self.slots[(tick % SLOTS) as usize].push(key);
        self.len += 1;
    }

    /// Moves every key due at `now` into `due` (in deadline order, ticks
    /// apart; within a tick in the order queued).
    pub fn take_due(&mut self, now: Instant, due: &mut Vec<K>) {
        let d = now.saturating_duration_since(self.epoch);
        let now_tick = u64::try_from(d.as_nanos() / TICK.as_nanos()).unwrap_or(u64::MAX);
        // A stall longer than the wheel: every slot once is everything.
        let last = now_tick.min(self.next_tick + SLOTS - 1);
        while self.next_tick <= last {
            let slot = &mut self.slots[(self.next_tick % SLOTS) as usize];
            self.len -= slot.len();
            due.append(slot);
            self.next_tick += 1;
        }
        if now_tick >= self.next_tick {
            self.next_tick = now_tick + 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn heard(t0: Instant, data: u64, cstp: u64, dtls: Option<u64>) -> Heard {
        Heard {
            data: t0 + S(data),
            cstp: t0 + S(cstp),
            dtls: dtls.map(|d| t0 + S(d)),
        }
    }

    #[test]
    fn session_timeout_comes_first_and_at_its_time() {
        let t0 = Instant::now();
        let mut t = TunnelTimers::new(S(30), Some(S(10)), Some(t0 + S(100)));
        let h = heard(t0, 99, 99, None);
        assert_eq!(t.next_due(h), t0 + S(100));
        assert_eq!(t.check(t0 + S(99), h), Due::default());
        assert_eq!(t.check(t0 + S(100), h).end, Some(Expiry::Session));
    }

    #[test]
    fn idle_counts_data_only() {
        let t0 = Instant::now();
        let mut t = TunnelTimers::new(S(30), Some(S(60)), None);
        // DPD answers on CSTP keep the tunnel up but not busy.
        let h = heard(t0, 0, 55, None);
        assert_eq!(
            t.next_due(h),
            t0 + S(60),
            "the idle limit is nearer than DPD"
        );
        assert_eq!(t.check(t0 + S(59), h), Due::default());
        assert_eq!(t.check(t0 + S(60), h).end, Some(Expiry::Idle));
        // Without an idle timeout, never.
        let mut t = TunnelTimers::new(S(30), None, None);
        assert_eq!(t.check(t0 + S(3600), heard(t0, 0, 3600, None)).end, None);
    }

    #[test]
    fn dpd_request_once_per_silence_then_the_drop() {
        let t0 = Instant::now();
        let mut t = TunnelTimers::new(S(30), None, None);
        let h = heard(t0, 0, 0, None);
        assert_eq!(t.next_due(h), t0 + S(30));
        assert_eq!(t.check(t0 + S(29), h), Due::default());
        let due = t.check(t0 + S(30), h);
        assert!(due.send_dpd && due.end.is_none());
        assert!(!t.check(t0 + S(31), h).send_dpd, "once per silence");
        assert_eq!(t.next_due(h), t0 + S(90));
        assert_eq!(t.check(t0 + S(90), h).end, Some(Expiry::Dpd));
        // The client answers: the next silence gets its request again.
        t.heard_on_cstp();
        let h = heard(t0, 0, 100, None);
        assert_eq!(t.next_due(h), t0 + S(130));
        assert!(t.check(t0 + S(130), h).send_dpd);
    }

    #[test]
    fn a_live_dtls_channel_keeps_the_tunnel_and_a_silent_one_is_dropped() {
        let t0 = Instant::now();
        let mut t = TunnelTimers::new(S(30), None, None);
        // CSTP quiet for long, DTLS recent: alive.
        let h = heard(t0, 200, 0, Some(200));
        assert_eq!(t.check(t0 + S(210), h), Due::default());
        assert_eq!(t.next_due(h), t0 + S(230));
        // DTLS silent past the limit while CSTP talks: fall back only.
        let h = heard(t0, 0, 290, Some(200));
        let due = t.check(t0 + S(290), h);
        assert!(due.dtls_silent && due.end.is_none() && !due.send_dpd);
        assert_eq!(t.next_due(h), t0 + S(290), "the channel's limit is due");
    }

    #[test]
    fn data_over_cstp_long_after_dtls_abandons_the_channel() {
        let t0 = Instant::now();
        assert!(
            !heard(t0, 20, 20, Some(10)).dtls_abandoned(),
            "10 s: not yet"
        );
        assert!(
            heard(t0, 30, 30, Some(10)).dtls_abandoned(),
            "20 s: given up"
        );
        assert!(!heard(t0, 30, 30, None).dtls_abandoned(), "no channel");
    }

    #[test]
    fn deadlines_come_up_at_their_tick_and_not_before() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = Deadlines::new(t0);
        q.schedule(t0 + S(5), 2u64);
        q.schedule(t0 + ms(1050), 1u64);
        q.schedule(t0 + S(9), 3u64);
        let mut due = Vec::new();
        q.take_due(t0 + ms(1050), &mut due);
        assert!(due.is_empty(), "1.05 s rounds up to the 1.1 s tick");
        q.take_due(t0 + ms(1100), &mut due);
        assert_eq!(due, vec![1]);
        q.take_due(t0 + S(6), &mut due);
        assert_eq!(due, vec![1, 2]);
        assert_eq!(q.len(), 1);
        // A deadline already past comes up at the next tick.
        q.schedule(t0, 4);
        due.clear();
        q.take_due(t0 + ms(6050), &mut due);
        assert!(due.is_empty());
        q.take_due(t0 + ms(6100), &mut due);
        assert_eq!(due, vec![4]);
        // Beyond the horizon: at the horizon, for the owner to look again.
        q.schedule(t0 + S(3600), 5);
        due.clear();
        q.take_due(t0 + ms(6100) + HORIZON, &mut due);
        assert_eq!(due, vec![3]);
        q.take_due(t0 + ms(6200) + HORIZON, &mut due);
        assert_eq!(due, vec![3, 5]);
        assert!(q.is_empty());
        // A stall longer than the wheel loses nothing.
        q.schedule(t0 + S(200), 6);
        due.clear();
        q.take_due(t0 + S(10_000), &mut due);
        assert_eq!(due, vec![6]);
    }
}
