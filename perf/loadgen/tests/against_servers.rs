//! ocu-loadgen against the real servers, ocserv-uring and ocserv 1.1.6, in
//! network namespaces made here and deleted on drop (also on failure):
//! login 40/40 with 8 connectors, 200 logins whose CONNECT comes on a new
//! connection (handed between ocserv-uring's shards), idle DTLS sessions held 5 s (2000 against
//! ocserv-uring, 20 against ocserv),
//! and more than 1 MB each way through 2 sessions (CSTP and DTLS); against
//! ocserv-uring also 20 certificate logins (user from the CN, no password).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use std::{fs, thread};

const LOADGEN: &str = env!("CARGO_BIN_EXE_ocu-loadgen");
const OCSERV: &str = "/usr/sbin/ocserv";
const PASSWORD: &str = "lg-secret-1";

/// Both tests need the two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh")
}

fn must(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The server binary cargo built next to this test (target/<profile>/),
/// else the workspace's release build.
fn server_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let sibling = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ocserv-uring"));
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ocserv-uring");
    sibling.filter(|p| p.exists()).or_else(|| fallback.exists().then_some(fallback)).expect(
        "ocserv-uring binary not found next to the test or in target/release: run `cargo build --release` first",
    )
}

/// Server namespace (10.94.N.1) and client namespace (10.94.N.2 and .3).
struct Net {
    id: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Net {
    fn new() -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 10000);
        let dir = std::env::temp_dir().join(format!("ocu-lg-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // ocserv's workers run as nobody and must reach its files.
        must(&format!("chmod 755 {}", dir.display()));
        let net = Self {
            id: id.clone(),
            dir,
            children: Vec::new(),
        };
        let (s, c, sub) = (net.ns("s"), net.ns("c"), net.subnet());
        must(&format!(
            "ip netns add {s} && ip netns add {c} && ip -n {s} link set lo up && ip -n {c} link set lo up \
             && ip link add lgs{id} type veth peer name lgc{id} && ip link set lgs{id} netns {s} && ip link set lgc{id} netns {c} \
             && ip -n {s} addr add {sub}.1/24 dev lgs{id} && ip -n {c} addr add {sub}.2/24 dev lgc{id} \
             && ip -n {c} addr add {sub}.3/24 dev lgc{id} && ip -n {s} link set lgs{id} up && ip -n {c} link set lgc{id} up"
        ));
        net
    }

    fn ns(&self, side: &str) -> String {
        format!("ocu-lg-{}-{side}", self.id)
    }

    fn subnet(&self) -> String {
        format!("10.94.{}", self.id.parse::<u32>().unwrap_or(0) % 250 + 1)
    }

    fn spawn(&mut self, side: &str, cmd: &str, log: &str) -> u32 {
        let out = fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(side),
                "sh",
                "-c",
                &format!("exec {cmd}"),
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Waits (bounded) until a TCP port listens in the server namespace.
    fn wait_listen(&self, port: u16, log: &str) {
        let t0 = Instant::now();
        while sh(&format!(
            "ip netns exec {} ss -Hltn 'sport = :{port}'",
            self.ns("s")
        ))
        .stdout
        .is_empty()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "server did not listen on {port}:\n{}",
                self.log(log)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the load generator in the client namespace; returns its JSON line.
    fn loadgen(&self, args: &str) -> String {
        let cmd = format!(
            "ip netns exec {} timeout 30 {LOADGEN} {args} --json",
            self.ns("c")
        );
        let o = sh(&cmd);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "`{cmd}` failed:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for side in ["c", "s"] {
            // ocserv's forked workers go with their namespace.
            let ns = self.ns(side);
            let _ = sh(&format!(
                "ip netns pids {ns} | xargs -r kill -9; ip netns del {ns}"
            ));
        }
        if thread::panicking() {
            eprintln!("load generator test files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Certificate, its pin, the password file, a client certificate.
fn setup_files(net: &Net, server: &Path) -> String {
    let d = net.dir.display();
    must(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {d}/key.pem \
         -out {d}/cert.pem -subj /CN=loadgen -days 2 2>/dev/null && chmod 644 {d}/key.pem"
    ));
    let pin = must(&format!(
        "openssl x509 -in {d}/cert.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
    ));
    must(&format!(
        "echo {PASSWORD} | {} passwd -c {d}/ocpasswd lg >/dev/null",
        server.display()
    ));
    // A CA and a client certificate (X.509 v3) for certificate logins.
    must(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {d}/ca-key.pem \
         -out {d}/ca.pem -subj '/CN=loadgen CA' -days 2 2>/dev/null && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {d}/client-key.pem \
         -out {d}/client.csr -subj /CN=lgcert 2>/dev/null && \
         printf 'basicConstraints = CA:FALSE\\nextendedKeyUsage = clientAuth\\n' > {d}/client.ext && \
         openssl x509 -req -in {d}/client.csr -CA {d}/ca.pem -CAkey {d}/ca-key.pem -CAcreateserial \
         -extfile {d}/client.ext -out {d}/client.pem -days 2 2>/dev/null"
    ));
    format!("pin-sha256:{}", pin.trim())
}

fn field(json: &str, key: &str) -> f64 {
    let after = json
        .split(&format!("\"{key}\": "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    after
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} not a number in {json}"))
}

/// The three modes against a server listening on `sub.1:port`; `idle`
/// DTLS sessions are held at once (many: their ClientHellos race the
/// server's per-client sockets, which must not lose or mix them up).
fn drive(net: &mut Net, port: u16, pin: &str, idle: usize) {
    let sub = net.subnet();
    let sink_log = "sink.log";
    net.spawn(
        "s",
        &format!("{LOADGEN} sink --listen {sub}.1:9000"),
        sink_log,
    );
    let t = format!(
        "--server https://{sub}.1:{port}/ --user lg --password {PASSWORD} --servercert {pin}"
    );

    let j = net.loadgen(&format!("login {t} --concurrency 8 --count 40"));
    assert_eq!((field(&j, "ok"), field(&j, "failed")), (40.0, 0.0), "{j}");
    // CONNECT on a new connection, as after a reconnect: on a two-shard
    // server about half reach the other shard and are handed off at once.
    let j = net.loadgen(&format!(
        "login {t} --concurrency 16 --count 200 --connect --fresh-connection"
    ));
    assert_eq!((field(&j, "ok"), field(&j, "failed")), (200.0, 0.0), "{j}");

    let j = net.loadgen(&format!(
        "idle {t} --sessions {idle} --hold 5 --dtls --source-ips {sub}.2,{sub}.3"
    ));
    assert_eq!(
        (
            field(&j, "established"),
            field(&j, "dtls_up"),
            field(&j, "dropped_while_held")
        ),
        (idle as f64, idle as f64, 0.0),
        "{j}"
    );

    for dtls in ["", "--dtls"] {
        // Paced, so the check is about moving packets, not about speed.
        let j = net.loadgen(&format!(
            "throughput {t} --sessions 2 --seconds 2 --rate-mbit 40 --sink {sub}.1:9000 {dtls}"
        ));
        assert!(
            field(&j, "tx_bytes") > 1e6 && field(&j, "rx_bytes") > 1e6,
            "less than 1 MB each way {dtls}: {j}"
        );
        // One way at a time: the sink drops uploads and sources downloads.
        let up = net.loadgen(&format!(
            "throughput {t} --sessions 2 --seconds 2 --rate-mbit 40 --pattern up --sink {sub}.1:9000 {dtls}"
        ));
        // (A server's own packets, e.g. ocserv's IPv6 solicitations, may come back.)
        assert!(
            field(&up, "tx_bytes") > 1e6 && field(&up, "rx_bytes") < 1e4,
            "upload only {dtls}: {up}"
        );
        // TCP segments of one stream per session (the sink host answers
        // them with resets; only the upload counts here).
        let tcp = net.loadgen(&format!(
            "throughput {t} --sessions 2 --seconds 2 --rate-mbit 40 --pattern tcp-up --sink {sub}.1:9000 {dtls}"
        ));
        assert!(
            field(&tcp, "tx_bytes") > 1e6,
            "TCP-like upload {dtls}: {tcp}"
        );
        let down = net.loadgen(&format!(
            "throughput {t} --sessions 2 --seconds 2 --rate-mbit 40 --pattern down --sink {sub}.1:9000 {dtls}"
        ));
        assert!(
            field(&down, "rx_bytes") > 1e6 && field(&down, "tx_bytes") < 1e5,
            "download only {dtls}: {down}"
        );
    }
}

#[test]
fn loadgen_against_ocserv_uring() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = server_bin();
    let mut net = Net::new();
    let pin = setup_files(&net, &bin);
    let (d, sub) = (net.dir.display().to_string(), net.subnet());
    fs::write(
        net.dir.join("uring.toml"),
        format!(
            "[server]\nlisten = \"{sub}.1\"\ntcp_port = 4443\nudp_port = 4443\nworkers = 2\n\
             [tls]\ncert_file = \"{d}/cert.pem\"\nkey_file = \"{d}/key.pem\"\ngenerate_self_signed = false\n\
             [auth]\npasswd_file = \"{d}/ocpasswd\"\nmethod = \"certificate|password\"\nca_file = \"{d}/ca.pem\"\n\
             [network]\ndevice = \"lgu{id}\"\nipv4_network = \"192.168.112.0/20\"\nmtu = 1400\n[session]\ndpd = 90\n\
             [control]\nsocket = \"\"\n[monitoring]\nmetrics_listen = \"127.0.0.1:9617\"\n",
            id = net.id
        ),
    )
    .unwrap();
    net.spawn(
        "s",
        &format!("{} --config {d}/uring.toml", bin.display()),
        "uring.log",
    );
    net.wait_listen(4443, "uring.log");
    drive(&mut net, 4443, &pin, 2000);
    // Certificate logins: the user is the certificate's CN, no password.
    let j = net.loadgen(&format!(
        "login --server https://{sub}.1:4443/ --user lgcert --servercert {pin} --cert {d}/client.pem --key {d}/client-key.pem \
         --concurrency 4 --count 20"
    ));
    assert_eq!((field(&j, "ok"), field(&j, "failed")), (20.0, 0.0), "{j}");
    let log = fs::read_to_string(net.dir.join("uring.log")).unwrap_or_default();
    assert!(
        log.contains("user=lgcert"),
        "no certificate login in the server log:\n{log}"
    );
    let metrics = must(&format!(
        "ip netns exec {} curl -sf --max-time 5 http://127.0.0.1:9617/metrics",
        net.ns("s")
    ));
    let handed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ocserv_uring_handoffs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("connections handed between shards: {handed}");
    assert!(
        handed > 0.0,
        "no CONNECT was handed to another shard:\n{metrics}"
    );
}

#[test]
fn loadgen_against_ocserv() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        Path::new(OCSERV).exists(),
        "{OCSERV} missing: apt-get install ocserv (1.1.6)"
    );
    let bin = server_bin();
    let mut net = Net::new();
    let pin = setup_files(&net, &bin);
    let (d, sub) = (net.dir.display().to_string(), net.subnet());
    fs::write(
        net.dir.join("ocserv.conf"),
        format!(
            "auth = \"plain[passwd={d}/ocpasswd]\"\nlisten-host = {sub}.1\ntcp-port = 443\nudp-port = 443\n\
             server-cert = {d}/cert.pem\nserver-key = {d}/key.pem\nsocket-file = {d}/ocserv.sock\npid-file = {d}/ocserv.pid\n\
             run-as-user = nobody\nrun-as-group = nogroup\nisolate-workers = false\nmax-clients = 256\nmax-same-clients = 256\n\
             ipv4-network = 192.168.121.0/24\nmtu = 1400\ndevice = lgo{id}-\ncookie-timeout = 300\nkeepalive = 32400\n\
             dpd = 90\nmobile-dpd = 90\nuse-occtl = false\npredictable-ips = true\nauth-timeout = 240\n",
            id = net.id
        ),
    )
    .unwrap();
    net.spawn(
        "s",
        &format!("{OCSERV} -f -c {d}/ocserv.conf"),
        "ocserv.log",
    );
    net.wait_listen(443, "ocserv.log");
    drive(&mut net, 443, &pin, 20);
}
