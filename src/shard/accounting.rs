//! RADIUS accounting of sessions: a Start when a session's first tunnel
//! comes up, Interim-Updates while it is up, a Stop when the session ends.
//! Records are queued to the accounting thread (`auth::accounting`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::core::{Session, Shard};
use super::tunnel::{Stats, Tunnel};
use crate::auth::radius::Radius;
use crate::proto::radius::accounting::{Counters, Record};
use crate::proto::radius::attr::{acct_status, terminate_cause};

pub(super) enum Status<'a> {
    Start,
    Interim(&'a Stats),
    /// With the session's reason to end.
    Stop(&'a Stats, &'a str),
}

/// The session's interim interval: its own (an Access-Accept's
/// Acct-Interim-Interval or a stats-report-time file key), else `[radius]`'s.
pub(super) fn interim(radius: &Radius, s: &Session) -> Option<Duration> {
    s.policy
        .stats_report_time
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .or(radius.interim_interval)
}

/// Queues the record of `status` for `s`.
pub(super) fn send(shard: &Shard, radius: &Arc<Radius>, s: &Session, status: Status<'_>) {
    let cfg = shard.config_of(s.vhost.as_deref());
    let nets = cfg.nets(&s.policy);
    let (code, stats, cause) = match status {
        Status::Start => (acct_status::START, None, None),
        Status::Interim(st) => (acct_status::INTERIM_UPDATE, Some(st), None),
        Status::Stop(st, why) => (acct_status::STOP, Some(st), Some(cause(why))),
    };
    let session_time = u32::try_from(s.started.elapsed().as_secs()).unwrap_or(u32::MAX);
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let record = Record {
        status: code,
        session_id: s.safe_id.clone(),
        user: radius.user_name(&s.user),
        client: s.last_peer.map(|p| p.ip()),
        nas_ip: radius.nas_ip.or(s.last_local.map(|a| a.ip())),
        nas_identifier: radius.nas_identifier.clone(),
        framed_ip: s.lease,
        framed_ipv6: s.lease.and_then(|l| nets.ipv6_for(l)),
        class: s.class.clone(),
        counters: stats.map(|st| Counters {
            input_octets: st.rx_bytes,
            output_octets: st.tx_bytes,
            input_packets: st.rx_packets,
            output_packets: st.tx_packets,
            session_time,
        }),
        cause,
        timestamp,
    };
    crate::auth::accounting::queue(radius.clone(), record);
}

/// Acct-Terminate-Cause of a session's end.
fn cause(reason: &str) -> u32 {
    match reason {
        "client disconnect" => terminate_cause::USER_REQUEST,
        "idle timeout" => terminate_cause::IDLE_TIMEOUT,
        "session timeout" | "session_timeout reached" => terminate_cause::SESSION_TIMEOUT,
        "admin disconnect" => terminate_cause::ADMIN_RESET,
        "server shutdown" => terminate_cause::ADMIN_REBOOT,
        // The client went away and never came back with its cookie.
        "cookie expired" => terminate_cause::LOST_CARRIER,
        _ => terminate_cause::NAS_REQUEST,
    }
}

/// Sends the Interim-Update of `t`'s session if one is due at `now`;
/// returns when the next one is due (`None`: no accounting for it).
pub(super) fn interim_update(shard: &Shard, t: &Tunnel, now: Instant) -> Option<Instant> {
    let cfg = shard.shared.config.get();
    if cfg.accounting().is_none() && cfg.vhosts.iter().all(|(_, c)| c.accounting().is_none()) {
        return None;
    }
    let mut sessions = shard.sessions.borrow_mut();
    let s = sessions.get_mut(&t.cookie)?;
    if s.tunnel.as_ref().is_none_or(|c| c.id != t.id) {
        return None;
    }
    let at = s.next_interim?;
    if at > now {
        return Some(at);
    }
    let cfg = shard.config_of(s.vhost.as_deref());
    let radius = cfg.accounting()?;
    let Some(every) = interim(radius, s) else {
        s.next_interim = None;
        return None;
    };
    // The next one on the schedule, never in a burst after a stall.
    s.next_interim = Some((at + every).max(now));
    let mut all = s.past;
    all.add(&t.stats());
    send(shard, radius, s, Status::Interim(&all));
    s.next_interim
}
