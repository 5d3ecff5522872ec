//! Sessions at scale without sockets, for `benches/sessions.rs`: a shard's
//! session store filled with real [`Session`]s, each with the timers its
//! tunnel carries, queued by deadline the way `Shard::sweep_timers` queues
//! them. What a session costs here and what a sweep costs at 100 000 or
//! 1 000 000 sessions is then measured, not extrapolated.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use shards::{Cookie, SessionStore, ShardId};

use super::core::{safe_id, Session};
use super::tunnel::Stats;
use crate::proto::timers::{Deadlines, Heard, TunnelTimers};
use crate::usercfg::UserConfig;

/// The bound `Shard::sweep_timers` puts on a tunnel's next check.
const MAX_GAP: Duration = Duration::from_secs(60);

/// A shard's worth of idle DTLS sessions: logged in, tunnel up, the
/// client answering dead-peer detection and sending nothing else.
pub struct Population {
    store: SessionStore<Session>,
    /// Each session's timers and what its client was last heard saying.
    timers: Vec<(TunnelTimers, Heard)>,
    queue: Deadlines<(u32, u64)>,
    due: Vec<(u32, u64)>,
}

impl Population {
    /// `n` sessions whose logins are spread over the DPD interval before
    /// `t0` (so their deadlines are too), with the sample configuration's
    /// DPD (90 s) and no idle or session timeout.
    pub fn new(n: u32, t0: Instant) -> Self {
        let dpd = Duration::from_secs(90);
        let mut store = SessionStore::new();
        let mut timers = Vec::with_capacity(n as usize);
        let mut queue = Deadlines::new(t0);
        for i in 0..n {
            let mut random = [0u8; shards::cookie::COOKIE_RANDOM_LEN];
            random[..4].copy_from_slice(&i.to_be_bytes());
            let cookie = Cookie::new(ShardId(0), random);
            let _ = store.insert(cookie, session(i, &cookie, t0));
            let heard_at = t0 - dpd * (i % 90) / 90;
            let heard = Heard {
                data: heard_at,
                cstp: heard_at,
                dtls: Some(heard_at),
            };
            let t = TunnelTimers::new(dpd, None, None);
            queue.schedule(t.next_due(heard), (i, 0));
            timers.push((t, heard));
        }
        Self {
            store,
            timers,
            queue,
            due: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// One sweep at `now` (the shard makes one per wheel tick): the due
    /// tunnels' timers are checked and queued again; returns how many were
    /// checked. Their clients answer a DPD request at once and keep DPD
    /// going over DTLS.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut checked = 0;
        let mut due = std::mem::take(&mut self.due);
        self.queue.take_due(now, &mut due);
        for (i, gen) in due.drain(..) {
            let Some((timers, heard)) = self.timers.get_mut(i as usize) else {
                continue;
            };
            checked += 1;
            let due = timers.check(now, *heard);
            if due.end.is_some() {
                continue;
            }
            // The client's own DPD over DTLS arrived meanwhile.
            heard.dtls = Some(now);
            if due.send_dpd {
                heard.cstp = now;
                timers.heard_on_cstp();
            }
            let next = timers.next_due(*heard).min(now + MAX_GAP);
            self.queue.schedule(next, (i, gen));
        }
        self.due = due;
        self.store.sweep_expired(now, |_, _| {});
        checked
    }

    /// What the shard did before the deadline queue: every tunnel's timers
    /// every second. Returns how many were checked.
    pub fn sweep_all(&mut self, now: Instant) -> usize {
        let mut checked = 0;
        for (timers, heard) in &mut self.timers {
            let due = timers.check(now, *heard);
            checked += 1;
            heard.dtls = Some(now);
            if due.send_dpd {
                heard.cstp = now;
                timers.heard_on_cstp();
            }
        }
        checked
    }

    /// Entries in the deadline queue (one per session).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// A session as a login makes it, with the strings a real client brings.
fn session(i: u32, cookie: &Cookie, now: Instant) -> Session {
    Session {
        user: format!("user{i:07}"),
        group: None,
        lease: Some(Ipv4Addr::from(0x0a00_0000 + i)),
        policy: Rc::new(UserConfig::default()),
        tunnel: None,
        started: now,
        ends_at: None,
        mobile: false,
        id: u64::from(i),
        started_wall: SystemTime::now(),
        user_agent: "Open AnyConnect VPN Agent v9.01-3".to_owned(),
        past: Stats::default(),
        last_peer: None,
        last_local: None,
        hostname: format!("host{i:07}"),
        login_ip: IpAddr::V4(Ipv4Addr::from(0xc633_6400 + (i & 0xff))),
        safe_id: safe_id(cookie),
        cert_auth: false,
        vhost: None,
        counted: true,
        backend: "plain",
        class: Vec::new(),
        next_interim: None,
    }
}
