//! Where users are kept beyond the password file: backends that decide a
//! login (RADIUS, ...), each run off the executors in a
//! [`conversation`] that turns its questions into login forms.

pub mod accounting;
pub mod conversation;
pub mod ldap;
pub mod otp;
pub mod pam;
pub mod radcli;
pub mod radius;

use crate::proto::auth::Prompt;
pub use crate::proto::auth::{Accepted, Grants};
use crate::usercfg::UserConfig;

/// What a backend says during a login.
#[derive(Debug)]
pub enum Event {
    /// Ask the user this, then hand the answer back.
    Ask(Prompt),
    Done(Verdict),
}

/// A backend's last word on one login attempt.
#[derive(Debug)]
pub enum Verdict {
    Accept(Accepted),
    /// Wrong credentials; what the backend says of it, for the user.
    Reject(Option<String>),
    /// The backend could not decide (no server answered, a broken
    /// configuration): the login fails with this in the log.
    Error(String),
}

/// Lays a backend's grants over the user's configuration: the backend's
/// word wins, as with ocserv.
pub fn apply(g: &Grants, c: &mut UserConfig) {
    if let Some(a) = g.ipv4 {
        c.explicit_ipv4 = Some(a);
    }
    if let Some(a) = g.ipv6 {
        c.explicit_ipv6 = Some(a);
    }
    for r in &g.routes {
        if !c.routes.contains(r) {
            c.routes.push(*r);
        }
    }
    if !g.dns.is_empty() {
        c.dns.clone_from(&g.dns);
    }
    let secs = |v: Option<u64>| v.filter(|s| *s > 0);
    if let Some(s) = secs(g.session_timeout) {
        c.session_timeout = Some(s);
    }
    if let Some(s) = secs(g.idle_timeout) {
        c.idle_timeout = Some(s);
    }
    if let Some(s) = secs(g.interim_interval) {
        c.stats_report_time = Some(s);
    }
}
