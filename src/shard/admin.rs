//! Admin commands fanned out to the shards: the global views of sessions
//! (all of a user's, totals) and disconnects. The control socket's thread
//! posts a job to every shard's inbox; each shard answers from its own
//! sessions when it wakes, and the thread merges the answers. Nothing
//! here touches the packet path.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::Shared;

/// Which sessions a command is about.
#[derive(Clone, Debug)]
pub enum Target {
    All,
    User(String),
    Group(String),
    Id(u64),
    /// Sessions whose occtl session ID starts with this.
    Sid(String),
}

/// A user's configuration as read now, for each (user, group) it applies
/// to; read by the control thread, off the executors.
/// New user configurations by (user, group, virtual host).
pub type Policies =
    std::sync::Arc<Vec<((String, Option<String>, String), crate::usercfg::UserConfig)>>;

#[derive(Clone, Debug)]
pub enum AdminCmd {
    Sessions(Target),
    Disconnect(Target),
    /// New configuration for the matching sessions, then their connections
    /// close so the clients reconnect with it.
    Reconnect(Target, Policies),
    /// Close the matching sessions' connections; the sessions stay, and
    /// their clients come back with their cookies (`ctl drop`).
    Drop(Target),
    Totals,
}

/// A session as `ctl show users --json` prints it: field names follow
/// occtl's `-j` output where they overlap, so existing scripts work; byte
/// counts also come as numbers (`raw_rx`, `raw_tx`).
#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(rename = "Username")]
    pub user: String,
    #[serde(rename = "Groupname")]
    pub group: String,
    /// The group as the server knows it (`None`: the user has none).
    #[serde(skip)]
    pub group_name: Option<String>,
    /// `connected`, or `disconnected` while the cookie waits for a reconnect.
    #[serde(rename = "State")]
    pub state: &'static str,
    #[serde(rename = "Device")]
    pub device: String,
    #[serde(rename = "MTU")]
    pub mtu: String,
    #[serde(rename = "Remote IP")]
    pub remote_ip: String,
    #[serde(rename = "IPv4")]
    pub ipv4: String,
    #[serde(rename = "P-t-P IPv4")]
    pub ptp_ipv4: String,
    #[serde(rename = "IPv6", skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(rename = "P-t-P IPv6", skip_serializing_if = "Option::is_none")]
    pub ptp_ipv6: Option<String>,
    #[serde(rename = "User-Agent")]
    pub user_agent: String,
    #[serde(rename = "Hostname")]
    pub hostname: String,
    #[serde(rename = "RX")]
    pub rx: String,
    #[serde(rename = "TX")]
    pub tx: String,
    #[serde(rename = "_RX")]
    pub rx_human: String,
    #[serde(rename = "_TX")]
    pub tx_human: String,
    pub raw_rx: u64,
    pub raw_tx: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    #[serde(rename = "DPD")]
    pub dpd: String,
    #[serde(rename = "KeepAlive")]
    pub keepalive: String,
    #[serde(rename = "Connected at")]
    pub connected_at: String,
    #[serde(rename = "_Connected at")]
    pub connected_for: String,
    pub raw_connected_at: u64,
    /// When the session began (its login), Unix seconds, as occtl's.
    pub raw_session_started_at: u64,
    /// Seconds since the last data packet from the client.
    pub idle_seconds: u64,
    /// `DTLS` or `CSTP`: where packets to the client go now.
    #[serde(rename = "Channel")]
    pub channel: &'static str,
    /// The TLS session as GnuTLS describes one, as occtl shows it.
    #[serde(rename = "TLS ciphersuite", skip_serializing_if = "String::is_empty")]
    pub tls_cipher: String,
    #[serde(rename = "DTLS cipher", skip_serializing_if = "str::is_empty")]
    pub dtls_cipher: &'static str,
    #[serde(rename = "Shard")]
    pub shard: u16,
    #[serde(rename = "DNS")]
    pub dns: Vec<String>,
    #[serde(rename = "Split-DNS-Domains")]
    pub split_dns: Vec<String>,
    #[serde(rename = "Routes")]
    pub routes: Vec<String>,
    #[serde(rename = "No-routes")]
    pub no_routes: Vec<String>,
    #[serde(rename = "iRoutes")]
    pub iroutes: Vec<String>,
    #[serde(rename = "Restricted to routes")]
    pub restricted: String,
    /// Packets dropped by restrict-user-to-routes and by the rate limits.
    pub restricted_packets: u64,
    pub rate_limited_packets: u64,
    /// occtl's session ID: its first 6 characters, and whole.
    #[serde(rename = "Session")]
    pub session: String,
    /// Also the session's RADIUS Acct-Session-Id.
    #[serde(rename = "Full session")]
    pub full_session: String,
    pub vhost: String,
    /// Who checked the login: `plain`, `certificate` or `radius`.
    #[serde(rename = "Auth")]
    pub backend: &'static str,
    /// For `show sessions`: when the cookie was issued and when it dies
    /// (a detached session's cookie_timeout, else session_timeout).
    #[serde(skip)]
    pub created: SystemTime,
    #[serde(skip)]
    pub expires: Option<SystemTime>,
    /// Where the login came from.
    #[serde(skip)]
    pub login_ip: String,
    #[serde(skip)]
    pub cert_auth: bool,
}

/// One shard's share of `show status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub sessions: usize,
    pub connected: usize,
    pub raw_rx: u64,
    pub raw_tx: u64,
}

#[derive(Debug)]
pub enum AdminReply {
    Sessions(Vec<SessionInfo>),
    Disconnected(usize),
    Reconnected(usize),
    Totals(Totals),
}

pub(crate) struct AdminJob {
    pub(crate) cmd: AdminCmd,
    pub(crate) reply: mpsc::Sender<AdminReply>,
}

/// How long a command waits for every shard's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Sends `cmd` to every shard and collects their answers (from a thread
/// outside the executors). Shards that do not answer in time are left out.
pub fn ask_all(shared: &Shared, cmd: &AdminCmd) -> Vec<AdminReply> {
    let (tx, rx) = mpsc::channel();
    for inbox in &shared.inboxes {
        let job = AdminJob {
            cmd: cmd.clone(),
            reply: tx.clone(),
        };
        // A stopping shard drops the job and with it its reply sender.
        let _ = inbox.post(super::ShardMsg::Admin(job));
    }
    drop(tx);
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut replies = Vec::with_capacity(shared.inboxes.len());
    while replies.len() < shared.inboxes.len() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => replies.push(r),
            Err(_) => break,
        }
    }
    replies
}

/// `2026-12-04 20:31` (UTC) for a wall-clock time, as occtl prints it.
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day, hour, minute, _) = crate::units::civil(secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

/// `3d 04h`, `1h:02m`, `42s`: a duration the way people read it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m:{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h:{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_occtl() {
        assert_eq!(format_time(SystemTime::UNIX_EPOCH), "1970-01-01 00:00");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_761_175_942);
        assert_eq!(format_time(t), "2025-10-22 23:32");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_time(leap), "2000-02-29 00:00");
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h:02m");
        assert_eq!(format_duration(Duration::from_secs(90_000)), "1d 01h");
    }
}
