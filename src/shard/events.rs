//! The audit trail and the operator's scripts. Every login, refusal,
//! connect, reconnect and disconnect is one event on the `audit` target
//! with the same fields (one JSON object each with `log_format = "json"`);
//! `connect_script` runs before the first CONNECT is answered and can
//! refuse the session, `disconnect_script` runs when a session ends. Both
//! get ocserv's environment variables and run off the executors with a
//! time limit.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::core::{Session, Shard};
use super::tunnel::Stats;

/// A refused login: one audit event and one failed-login count.
pub(crate) fn refused(shard: &Shard, peer: SocketAddr, user: Option<&str>, reason: &str) {
    shard.metrics().login_failures.inc();
    tracing::warn!(target: "audit", event = "refusal", %peer, user = %user.unwrap_or("-"), shard = %shard.id, reason, "login refused");
}

pub(crate) fn login(shard: &Shard, peer: SocketAddr, s: &Session) {
    shard.metrics().logins.inc();
    tracing::info!(
        target: "audit", event = "login", %peer, user = %s.user, group = %s.group.as_deref().unwrap_or("-"), id = s.id,
        shard = %shard.id, mobile = s.mobile, "login: session created"
    );
}

/// A tunnel came up: the session's first (`connect`) or a later one.
pub(crate) fn connect(
    s: &Session,
    peer: SocketAddr,
    ipv6: Option<std::net::Ipv6Addr>,
    first: bool,
) {
    let event = if first { "connect" } else { "reconnect" };
    tracing::info!(
        target: "audit", event, %peer, user = %s.user, group = %s.group.as_deref().unwrap_or("-"), id = s.id, ipv4 = %super::core::OrDash(s.lease),
        ipv6 = %ipv6.map_or("-".into(), |a| a.to_string()), hostname = %s.hostname, "{event}"
    );
}

/// A session ended: its whole traffic and duration, and the script.
pub(crate) fn disconnect(shard: &Shard, s: &Session, stats: &Stats, reason: &str) {
    let duration = s.started.elapsed();
    let peer = s.last_peer.map_or("-".into(), |p| p.to_string());
    tracing::info!(
        target: "audit", event = "disconnect", %peer, user = %s.user, group = %s.group.as_deref().unwrap_or("-"), id = s.id,
        ipv4 = %super::core::OrDash(s.lease), rx_bytes = stats.rx_bytes, tx_bytes = stats.tx_bytes, duration_s = duration.as_secs(), reason,
        "disconnect"
    );
    let cfg = shard.shared.config.get();
    let cfg = &*cfg;
    let scripts = &cfg.raw.scripts;
    // Only sessions whose connect ran (a tunnel came up) get a disconnect.
    if let (Some(script), Some(peer)) = (scripts.disconnect_script.clone(), s.last_peer) {
        let env = environment(shard, s, peer, "disconnect", Some((stats, duration)));
        let job = ScriptJob {
            script,
            env,
            limit: Duration::from_secs(scripts.script_timeout),
        };
        disconnect_runner().queue(job, s.user.clone());
    }
}

/// Threads that run disconnect scripts nobody waits for: a few, fed by a
/// queue, so ending thousands of sessions at once (shutdown, a mass
/// expiry) never starts thousands of threads.
struct Runner {
    tx: Mutex<mpsc::Sender<(ScriptJob, String)>>,
}

const DISCONNECT_RUNNERS: usize = 4;

fn disconnect_runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(ScriptJob, String)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..DISCONNECT_RUNNERS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("disconnect-script-{i}")).spawn(move || loop {
                let next = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                let Ok((job, user)) = next else { return };
                if let Err(e) = run(&job.script, &job.env, job.limit) {
                    tracing::warn!(user = %user, script = %job.script.display(), "disconnect_script: {e}");
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("disconnect_script runner not started: {e}");
            }
        }
        Runner { tx: Mutex::new(tx) }
    })
}

impl Runner {
    fn queue(&self, job: ScriptJob, user: String) {
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send((job, user));
        if sent.is_err() {
            tracing::warn!("disconnect_script: no runner thread");
        }
    }
}

/// `connect_script` ready to run for a session's first tunnel.
pub(crate) struct ScriptJob {
    script: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
    limit: Duration,
}

/// The connect script's job for `s`, if one is configured.
pub(crate) fn connect_job(shard: &Shard, s: &Session, peer: SocketAddr) -> Option<ScriptJob> {
    let cfg = shard.shared.config.get();
    let cfg = &*cfg;
    let scripts = &cfg.raw.scripts;
    let script = scripts.connect_script.clone()?;
    Some(ScriptJob {
        script,
        env: environment(shard, s, peer, "connect", None),
        limit: Duration::from_secs(scripts.script_timeout),
    })
}

/// Runs the job on the blocking pool; an error refuses the session.
pub(crate) async fn run_connect(job: ScriptJob) -> Result<(), String> {
    super::guard::blocking(move || run(&job.script, &job.env, job.limit))
        .await
        .unwrap_or_else(|super::guard::Panicked| Err("panicked".into()))
}

/// ocserv's variables, so existing scripts work.
fn environment(
    shard: &Shard,
    s: &Session,
    peer: SocketAddr,
    reason: &str,
    end: Option<(&Stats, Duration)>,
) -> Vec<(&'static str, String)> {
    let cfg = shard.config_of(s.vhost.as_deref());
    let cfg = &*cfg;
    let join = |v: Vec<String>| v.join(" ");
    let nets = cfg.nets(&s.policy);
    let routes = super::limits::routes_v4(cfg, &s.policy)
        .iter()
        .map(ToString::to_string)
        .collect();
    let dns = if s.policy.dns.is_empty() {
        &cfg.dns
    } else {
        &s.policy.dns
    };
    let mut env = vec![
        ("REASON", reason.to_owned()),
        ("USERNAME", s.user.clone()),
        ("GROUPNAME", s.group.clone().unwrap_or_default()),
        ("ID", s.id.to_string()),
        ("DEVICE", cfg.raw.network.device.clone()),
        ("IP_REAL", peer.ip().to_string()),
        ("IP_REAL_PORT", peer.port().to_string()),
        (
            "IP_REAL_LOCAL",
            s.last_local
                .map_or_else(String::new, |a| a.ip().to_string()),
        ),
        ("IP_LOCAL", nets.local4.to_string()),
        (
            "IP_REMOTE",
            s.lease.map_or_else(String::new, |a| a.to_string()),
        ),
        ("USER_AGENT", s.user_agent.clone()),
        ("HOSTNAME", s.hostname.clone()),
        ("OCSERV_ROUTES", join(routes)),
        (
            "OCSERV_NO_ROUTES",
            join(s.policy.no_routes.iter().map(ToString::to_string).collect()),
        ),
        (
            "OCSERV_DNS",
            join(dns.iter().map(ToString::to_string).collect()),
        ),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
    ];
    if let (Some(local), Some(remote)) = (nets.local6, s.lease.and_then(|l| nets.ipv6_for(l))) {
        env.push(("IPV6_LOCAL", local.to_string()));
        env.push(("IPV6_REMOTE", remote.to_string()));
        env.push((
            "IPV6_PREFIX",
            nets.v6.map_or(128, |n| n.prefix_len()).to_string(),
        ));
    }
    if let Some((stats, duration)) = end {
        env.push(("STATS_BYTES_IN", stats.rx_bytes.to_string()));
        env.push(("STATS_BYTES_OUT", stats.tx_bytes.to_string()));
        env.push(("STATS_DURATION", duration.as_secs().to_string()));
    }
    env
}

/// Runs `script` with only `env`, killing it after `limit` with every
/// process it started.
fn run(script: &Path, env: &[(&'static str, String)], limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    let mut child = Command::new(script)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group of its own, led by the script: a timeout kills the
        // children it started too (`sleep 300 &`), not the script alone.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("failed ({status})")),
            Ok(None) if started.elapsed() >= limit => {
                // Not reaped yet, so the group's id is still the script's
                // and names no one else's processes.
                if crate::sys::kill_process_group(child.id()).is_err() {
                    let _ = child.kill();
                }
                let _ = child.wait();
                return Err(format!("still running after {} s: killed", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}
