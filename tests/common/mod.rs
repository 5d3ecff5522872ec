//! End-to-end harness: network namespaces made per test, the real server
//! binary and the real openconnect client. Everything started here is
//! killed and every namespace deleted on drop, also when a test fails.
#![allow(dead_code)]

pub(crate) mod raw;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ocserv-uring");

/// End-to-end tests share two cores: run them one at a time.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh")
}

pub(crate) fn must(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` every 100 ms until it returns Some or `limit` passes.
pub(crate) fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CLIENT_SCRIPT: &str = r#"#!/bin/sh
# Test vpnc-script: configures only the tunnel device, records the environment.
# The record comes last: tests take it as "the tunnel is ready to use".
case "$reason" in
  connect)
    ip link set dev "$TUNDEV" up mtu "$INTERNAL_IP4_MTU"
    ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
    ip route replace "$INTERNAL_IP4_NETADDR/$INTERNAL_IP4_NETMASKLEN" dev "$TUNDEV"
    # addr/len: the address and, with it, the route to the server's pool.
    if [ -n "$INTERNAL_IP6_NETMASK" ]; then
      ip -6 addr add "$INTERNAL_IP6_NETMASK" dev "$TUNDEV" nodad
    elif [ -n "$INTERNAL_IP6_ADDRESS" ]; then
      ip -6 addr add "$INTERNAL_IP6_ADDRESS/128" dev "$TUNDEV" nodad
    fi
    ;;
esac
env | sort > "$OCU_ENV_DIR/env-$reason.tmp" && mv "$OCU_ENV_DIR/env-$reason.tmp" "$OCU_ENV_DIR/env-$reason"
exit 0
"#;

/// A server namespace and `clients` client namespaces, each on its own veth:
/// client i reaches the server at 10.91.i.1.
pub(crate) struct Net {
    pub dir: PathBuf,
    pub server_ns: String,
    pub client_ns: Vec<String>,
    children: Vec<Child>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Net {
    pub(crate) fn new(tag: &str, clients: usize) -> Self {
        let id = format!(
            "{}{}",
            std::process::id() % 10000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let server_ns = format!("ocu-{tag}-{id}-s");
        let dir = std::env::temp_dir().join(format!("ocu-e2e-{tag}-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("env")).unwrap();
        let mut net = Self {
            dir,
            server_ns: server_ns.clone(),
            client_ns: Vec::new(),
            children: Vec::new(),
        };
        must(&format!(
            "ip netns add {server_ns} && ip -n {server_ns} link set lo up"
        ));
        for i in 1..=clients {
            let ns = format!("ocu-{tag}-{id}-c{i}");
            must(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
            net.client_ns.push(ns.clone());
            let (a, b) = (format!("ou{id}s{i}"), format!("ou{id}c{i}"));
            must(&format!(
                "ip link add {a} type veth peer name {b} && ip link set {a} netns {server_ns} && ip link set {b} netns {ns} \
                 && ip -n {server_ns} addr add 10.91.{i}.1/24 dev {a} && ip -n {server_ns} link set {a} up \
                 && ip -n {ns} addr add 10.91.{i}.2/24 dev {b} && ip -n {ns} link set {b} up"
            ));
        }
        let script = net.dir.join("client-script.sh");
        fs::write(&script, CLIENT_SCRIPT).unwrap();
        must(&format!("chmod +x {}", script.display()));
        net
    }

    pub(crate) fn server_ip(&self, client: usize) -> String {
        format!("10.91.{client}.1")
    }

    /// Runs a command in a namespace and returns its output.
    pub(crate) fn exec(&self, ns: &str, cmd: &str) -> std::process::Output {
        sh(&format!("ip netns exec {ns} {cmd}"))
    }

    fn track(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Waits up to `limit` for the tracked process `pid` to exit.
    pub(crate) fn wait_exit(
        &mut self,
        pid: u32,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let child = self.children.iter_mut().find(|c| c.id() == pid)?;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub(crate) fn spawn_in(&mut self, ns: &str, cmd: &str, log: &Path) -> u32 {
        let out = fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("exec {cmd}")])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.track(child)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut all = self.client_ns.clone();
        all.push(self.server_ns.clone());
        for ns in all {
            // Anything still running in the namespace goes with it.
            let _ = sh(&format!(
                "ip netns pids {ns} | xargs -r kill -9; ip netns del {ns}"
            ));
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("e2e artifacts kept in {}", self.dir.display());
        }
    }
}

pub(crate) struct ServerOpts {
    pub workers: usize,
    pub network: &'static str,
    pub dpd: u64,
    pub auth_timeout: u64,
    pub extra_users: Vec<(String, String)>,
    pub dtls: Dtls,
    /// TOML appended to the generated configuration (whole sections).
    pub extra_config: String,
    /// Keys added to the generated [server] section.
    pub server_keys: String,
    /// Keys added to the generated [session] section.
    pub session_keys: String,
    /// Keys added to the generated [auth] section.
    pub auth_keys: String,
    /// Keys added to the generated [network] section.
    pub network_keys: String,
    /// OCSERV_URING_TEST_HOOKS=1: requests that panic on purpose.
    pub test_hooks: bool,
    pub cookie_timeout: u64,
}

/// Which DTLS the server offers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtls {
    Off,
    /// PSK-NEGOTIATE (and legacy): what openconnect picks by default.
    Psk,
    /// Legacy resumption only (psk_negotiate = false).
    Legacy,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            workers: 2,
            network: "192.168.100.0/24",
            dpd: 90,
            auth_timeout: 10,
            extra_users: Vec::new(),
            dtls: Dtls::Off,
            extra_config: String::new(),
            server_keys: String::new(),
            session_keys: String::new(),
            auth_keys: String::new(),
            network_keys: String::new(),
            test_hooks: false,
            cookie_timeout: 60,
        }
    }
}

pub(crate) struct Server {
    pub pid: u32,
    pub log: PathBuf,
    pub pin: String,
    pub tunnel_ip: String,
    /// The server's control socket.
    pub ctl: PathBuf,
}

pub(crate) const USERS: [(&str, &str); 2] = [("alice", "test123"), ("bob", "wonderland")];

pub(crate) fn start_server(net: &mut Net, opts: ServerOpts) -> Server {
    let dir = net.dir.clone();
    let passwd = dir.join("ocpasswd");
    for (u, p) in USERS {
        add_user(&passwd, u, p);
    }
    for (u, h) in &opts.extra_users {
        let mut f = fs::OpenOptions::new().append(true).open(&passwd).unwrap();
        writeln!(f, "{u}:*:{h}").unwrap();
    }
    let cfg = dir.join("server.toml");
    fs::write(
        &cfg,
        format!(
            "[server]\n{listen}tcp_port = 443\nudp_port = {udp}\nworkers = {w}\n{server}\
             [tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\ngenerate_self_signed = true\n\
             [auth]\npasswd_file = \"ocpasswd\"\n{auth}\
             [network]\ndevice = \"vpns\"\nipv4_network = \"{net}\"\nmtu = 1400\n{network}\
             [session]\ndpd = {dpd}\ncookie_timeout = {ct}\nauth_timeout = {at}\n{session}\
             [dtls]\npsk_negotiate = {psk}\n[control]\nsocket = \"ctl.socket\"\n{extra}",
            // server_keys may name the addresses instead.
            listen = if opts.server_keys.lines().any(|l| l.starts_with("listen ")) {
                ""
            } else {
                "listen = \"0.0.0.0\"\n"
            },
            udp = if opts.dtls == Dtls::Off { 0 } else { 443 },
            psk = opts.dtls == Dtls::Psk,
            w = opts.workers,
            net = opts.network,
            dpd = opts.dpd,
            at = opts.auth_timeout,
            ct = opts.cookie_timeout,
            session = opts.session_keys,
            server = opts.server_keys,
            auth = opts.auth_keys,
            network = opts.network_keys,
            extra = opts.extra_config
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let ns = net.server_ns.clone();
    let hooks = if opts.test_hooks {
        "env OCSERV_URING_TEST_HOOKS=1 "
    } else {
        ""
    };
    let pid = net.spawn_in(
        &ns,
        &format!("{hooks}{BIN} --config {} --log-level debug", cfg.display()),
        &log,
    );
    let text = wait_for(Duration::from_secs(20), "server ready", || {
        let t = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !t.contains("ocserv-uring: "),
            "server failed to start:\n{t}"
        );
        t.contains("ocserv-uring ready").then_some(t)
    });
    let pin = text
        .split_whitespace()
        .find(|w| w.starts_with("pin-sha256:"))
        .expect("pin in log")
        .to_owned();
    let net4: ipnet::Ipv4Net = opts.network.parse().unwrap();
    let tunnel_ip = std::net::Ipv4Addr::from(u32::from(net4.network()) + 1).to_string();
    Server {
        pid,
        log,
        pin,
        tunnel_ip,
        ctl: dir.join("ctl.socket"),
    }
}

pub(crate) fn add_user(passwd: &Path, user: &str, password: &str) {
    add_user_in(passwd, user, password, "");
}

/// `add_user` with groups (comma-separated; empty for none).
pub(crate) fn add_user_in(passwd: &Path, user: &str, password: &str, groups: &str) {
    let mut args = vec!["passwd", "-c", passwd.to_str().unwrap()];
    if !groups.is_empty() {
        args.extend(["-g", groups]);
    }
    args.push(user);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

impl Server {
    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn wait_log(&self, needle: &str, limit: Duration) {
        wait_for(limit, &format!("server log line {needle:?}"), || {
            self.log_text().contains(needle).then_some(())
        });
    }

    /// Runs `ocserv-uring ctl` against this server.
    pub(crate) fn ctl(&self, args: &str) -> std::process::Output {
        sh(&format!("{BIN} ctl --socket {} {args}", self.ctl.display()))
    }

    /// `ctl --json ARGS`, parsed; panics with the output if it fails.
    pub(crate) fn ctl_json(&self, args: &str) -> serde_json::Value {
        let o = self.ctl(&format!("--json {args}"));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "ctl {args}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ctl {args} printed invalid JSON ({e}):\n{out}"))
    }

    pub(crate) fn count_log(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }
}

pub(crate) struct Client {
    pub pid: u32,
    pub ns: String,
    pub env_dir: PathBuf,
    pub log: PathBuf,
    pub ifname: String,
}

/// Starts openconnect in client namespace `idx` (1-based); `passwords` are
/// fed on stdin, one per line (the first answers --passwd-on-stdin, later
/// ones answer retry prompts).
pub(crate) fn start_client(
    net: &mut Net,
    server: &Server,
    idx: usize,
    user: &str,
    passwords: &[&str],
) -> Client {
    start_client_with(net, server, idx, user, passwords, "")
}

/// `start_client` with extra openconnect options.
pub(crate) fn start_client_with(
    net: &mut Net,
    server: &Server,
    idx: usize,
    user: &str,
    passwords: &[&str],
    extra: &str,
) -> Client {
    let url = format!("https://{}/", net.server_ip(idx));
    start_client_at(net, &server.pin, idx, user, passwords, extra, &url)
}

/// `start_client_with` to `url`, accepting the certificate `pin`.
pub(crate) fn start_client_at(
    net: &mut Net,
    pin: &str,
    idx: usize,
    user: &str,
    passwords: &[&str],
    extra: &str,
    url: &str,
) -> Client {
    let ns = net.client_ns[idx - 1].clone();
    let env_dir = net.dir.join(format!("env{idx}"));
    let _ = fs::remove_dir_all(&env_dir);
    fs::create_dir_all(&env_dir).unwrap();
    let log = net.dir.join(format!("client{idx}.log"));
    let pwfile = net.dir.join(format!("pw{idx}"));
    fs::write(
        &pwfile,
        passwords
            .iter()
            .map(|p| format!("{p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let ifname = format!("oc{idx}");
    let cmd = format!(
        "env OCU_ENV_DIR={env} openconnect {extra} --user {user} --passwd-on-stdin --servercert {pin} --script {script} --interface {ifname} --reconnect-timeout 60 '{url}' < {pw}",
        env = env_dir.display(),
        script = net.dir.join("client-script.sh").display(),
        pw = pwfile.display()
    );
    let pid = net.spawn_in(&ns, &cmd, &log);
    Client {
        pid,
        ns,
        env_dir,
        log,
        ifname,
    }
}

/// `openconnect --authenticate`: logs in without a tunnel and returns the
/// cookie, as GUIs do before starting the tunnel in another process.
pub(crate) fn authenticate(
    net: &Net,
    server: &Server,
    idx: usize,
    user: &str,
    password: &str,
) -> String {
    let ns = &net.client_ns[idx - 1];
    let o = net.exec(
        ns,
        &format!(
            "sh -c 'echo {password} | timeout 20 openconnect --authenticate --user {user} --passwd-on-stdin --servercert {pin} https://{ip}/'",
            pin = server.pin,
            ip = net.server_ip(idx)
        ),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let cookie = out
        .lines()
        .find_map(|l| l.strip_prefix("COOKIE="))
        .map(|c| c.trim_matches('\'').to_owned());
    cookie.unwrap_or_else(|| {
        panic!(
            "no cookie from --authenticate:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Starts openconnect with a cookie from [`authenticate`] (`--cookie-on-stdin`).
pub(crate) fn start_cookie_client(
    net: &mut Net,
    server: &Server,
    idx: usize,
    cookie: &str,
) -> Client {
    let ns = net.client_ns[idx - 1].clone();
    let env_dir = net.dir.join(format!("env{idx}"));
    let _ = fs::remove_dir_all(&env_dir);
    fs::create_dir_all(&env_dir).unwrap();
    let log = net.dir.join(format!("client{idx}.log"));
    let cookie_file = net.dir.join(format!("cookie{idx}"));
    fs::write(&cookie_file, format!("{cookie}\n")).unwrap();
    let ifname = format!("oc{idx}");
    let cmd = format!(
        "env OCU_ENV_DIR={env} openconnect --cookie-on-stdin --servercert {pin} --script {script} --interface {ifname} --reconnect-timeout 60 https://{ip}/ < {cf}",
        env = env_dir.display(),
        pin = server.pin,
        script = net.dir.join("client-script.sh").display(),
        ip = net.server_ip(idx),
        cf = cookie_file.display()
    );
    let pid = net.spawn_in(&ns, &cmd, &log);
    Client {
        pid,
        ns,
        env_dir,
        log,
        ifname,
    }
}

impl Client {
    pub(crate) fn env(&self, reason: &str) -> Option<String> {
        fs::read_to_string(self.env_dir.join(format!("env-{reason}"))).ok()
    }

    pub(crate) fn var(env: &str, key: &str) -> Option<String> {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    }

    /// Waits until the client's script configured the tunnel; returns its address.
    pub(crate) fn wait_connected(&self) -> String {
        let env = wait_for(Duration::from_secs(30), "openconnect to connect", || {
            if !alive(self.pid) {
                panic!("openconnect exited:\n{}", self.log_text());
            }
            self.env("connect")
        });
        Self::var(&env, "INTERNAL_IP4_ADDRESS").expect("INTERNAL_IP4_ADDRESS")
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until openconnect reports its DTLS channel up.
    pub(crate) fn wait_dtls(&self) {
        wait_for(
            Duration::from_secs(20),
            "openconnect to connect DTLS",
            || {
                self.log_text()
                    .contains("Established DTLS connection")
                    .then_some(())
            },
        );
    }

    pub(crate) fn signal(&self, sig: &str) {
        let _ = sh(&format!("kill -{sig} {}", self.pid));
    }

    pub(crate) fn wait_exit(&self, limit: Duration) {
        wait_for(limit, "openconnect to exit", || {
            (!alive(self.pid)).then_some(())
        });
    }
}

/// True while the process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Round-trip times in ms of `count` pings from a namespace.
pub(crate) fn ping_rtts(net: &Net, ns: &str, dst: &str, count: u32, interval: &str) -> Vec<f64> {
    let o = net.exec(ns, &format!("ping -n -c {count} -i {interval} -W 2 {dst}"));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Bytes iperf3 moved through the tunnel in 3 s (received side).
pub(crate) fn iperf_bytes(
    net: &Net,
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    reverse: bool,
) -> u64 {
    let _ = net.exec(server_ns, &format!("iperf3 -s -1 -D -B {server_ip}"));
    std::thread::sleep(Duration::from_millis(500));
    let flag = if reverse { "-R" } else { "" };
    let o = net.exec(
        client_ns,
        &format!("timeout 20 iperf3 -c {server_ip} -t 3 {flag} -J"),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "iperf3 failed: {out}");
    // "sum_received": { ... "bytes": N, ...}
    let after = out
        .split("\"sum_received\"")
        .nth(1)
        .expect("sum_received in iperf3 JSON");
    let bytes = after
        .split("\"bytes\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim();
    bytes.parse().unwrap()
}
