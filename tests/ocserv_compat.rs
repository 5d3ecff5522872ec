//! Drop-in for ocserv deployments (issue 17): ocserv's command line, its
//! configuration file and the keys its installations use.

mod common;

use std::fs;
use std::time::Duration;

use common::raw::{cookie_of, header, headers, login_cookie, tcp_in, RawTls, Reply};
use common::*;

/// The harness's configuration for `net`, written as `server.toml`: a server
/// started once by the harness leaves it (and the certificate) behind.
fn harness_config(net: &mut Net) -> (Server, std::path::PathBuf) {
    let server = start_server(net, ServerOpts::default());
    let cfg = net.dir.join("server.toml");
    must(&format!("kill -TERM {}", server.pid));
    net.wait_exit(server.pid, Duration::from_secs(10))
        .expect("the first server stopped");
    (server, cfg)
}

#[test]
fn ocserv_command_line_foreground_config_pid_file_debug_and_test() {
    let _g = serial();
    let mut net = Net::new("ocargs", 1);
    let (_, cfg) = harness_config(&mut net);
    // -t: checks and exits, 0 for a good file, 1 with the reason for a bad one.
    let ok = sh(&format!("{BIN} -t -c {}", cfg.display()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = net.dir.join("bad.toml");
    fs::write(&bad, "[server]\ntcp_port = 0\n").unwrap();
    let o = sh(&format!("{BIN} -t -c {}", bad.display()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("server.tcp_port"),
        "{o:?}"
    );
    // As Debian's ocserv.service starts ocserv.
    let pid_file = net.dir.join("ocserv.pid");
    let log = net.dir.join("ocserv-style.log");
    let ns = net.server_ns.clone();
    let pid = net.spawn_in(
        &ns,
        &format!(
            "{BIN} --foreground --pid-file {} -c {} -d 3",
            pid_file.display(),
            cfg.display()
        ),
        &log,
    );
    wait_for(Duration::from_secs(20), "the server ready", || {
        fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("ocserv-uring ready"))
    });
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(
        fs::read_to_string(&log).unwrap().contains("DEBUG"),
        "-d 3 logs at debug"
    );
    must(&format!("kill -TERM {pid}"));
    assert!(net
        .wait_exit(pid, Duration::from_secs(10))
        .expect("stopped")
        .success());
    assert!(
        !pid_file.exists(),
        "the pid file is removed at exit (it stays root's here)"
    );
}

/// The split-tunnel networks of `kind` (INC, EXC) in openconnect's
/// environment, sorted.
fn split(env: &str, kind: &str) -> Vec<String> {
    let var = |k: &str| Client::var(env, k).unwrap_or_else(|| panic!("{k} missing:\n{env}"));
    let n: usize = var(&format!("CISCO_SPLIT_{kind}")).parse().unwrap();
    let mut v: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}/{}",
                var(&format!("CISCO_SPLIT_{kind}_{i}_ADDR")),
                var(&format!("CISCO_SPLIT_{kind}_{i}_MASKLEN"))
            )
        })
        .collect();
    v.sort();
    v
}

/// `check-config --to-toml` on `conf`, as an admin would read it first.
fn to_toml(conf: &std::path::Path) -> String {
    let toml = sh(&format!(
        "{BIN} check-config --config {} --to-toml",
        conf.display()
    ));
    assert!(
        toml.status.success(),
        "{}",
        String::from_utf8_lossy(&toml.stderr)
    );
    String::from_utf8_lossy(&toml.stdout).into_owned()
}

/// The server started on `conf` as ocserv's unit starts ocserv (`-f -c`),
/// in the server namespace: its pid, log file and log once ready.
fn start_as_ocserv(net: &mut Net, conf: &std::path::Path) -> (u32, std::path::PathBuf, String) {
    let log = net.dir.join("ocserv.log");
    let ns = net.server_ns.clone();
    let pid = net.spawn_in(&ns, &format!("{BIN} -f -c {}", conf.display()), &log);
    let started = wait_for(Duration::from_secs(20), "the server ready", || {
        let t = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !t.contains("ocserv-uring: "),
            "the server refused its ocserv.conf:\n{t}"
        );
        t.contains("ocserv-uring ready").then_some(t)
    });
    (pid, log, started)
}

#[test]
fn an_ocserv_conf_runs_the_server_as_ocserv_would() {
    let _g = serial();
    let mut net = Net::new("occonf", 1);
    let (_, _) = harness_config(&mut net);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "route = 10.60.0.0/255.255.0.0\nnbns = 192.168.1.9\n",
    )
    .unwrap();
    must(&format!("chmod o+x {}", dir.display()));
    let conf = dir.join("ocserv.conf");
    fs::write(
        &conf,
        format!(
            "# As ocserv's sample configuration writes it.\n\
             auth = \"plain[passwd={d}/ocpasswd]\"\n\
             tcp-port = 443\nudp-port = 443\n\
             run-as-user = nobody\nrun-as-group = daemon\n\
             socket-file = /var/run/ocserv-socket\n\
             server-cert = {d}/cert.pem\nserver-key = {d}/key.pem\n\
             isolate-workers = true\nmax-clients = 16\nmax-same-clients = 2\nrate-limit-ms = 100\n\
             server-stats-reset-time = 604800\nkeepalive = 32400\ndpd = 90\nmobile-dpd = 1800\nswitch-to-tcp-timeout = 25\n\
             try-mtu-discovery = false\ncert-user-oid = 0.9.2342.19200300.100.1.1\n\
             tls-priorities = \"NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1\"\n\
             auth-timeout = 240\nmax-ban-score = 80\nban-time = 300\nban-reset-time = 1200\ncookie-timeout = 300\n\
             deny-roaming = false\nrekey-time = 172800\nrekey-method = ssl\nuse-occtl = true\n\
             occtl-socket-file = {d}/occtl.socket\npid-file = {d}/ocserv.pid\nlog-level = 2\ndevice = vpns\n\
             predictable-ips = true\ndefault-domain = example.com\n\
             ipv4-network = 192.168.1.0\nipv4-netmask = 255.255.255.0\n\
             dns = 192.168.1.2   # inline comment\n\
             split-dns = corp.example.com\n\
             ping-leases = false\n\
             route = 10.10.10.0/255.255.255.0\nroute = 192.168.0.0/255.255.0.0\n\
             no-route = 192.168.5.0/255.255.255.0\n\
             config-per-user = {d}/users/\n\
             cisco-client-compat = true\ndtls-legacy = true\ncisco-svc-client-compat = false\n\
             client-bypass-protocol = false\ncamouflage = false\n\
             # The rest of the keys this server takes, honoured or noted.\n\
             listen-host = 0.0.0.0\nudp-listen-host = 0.0.0.0\nlisten-host-is-dyndns = false\n\
             listen-proxy-proto = false\nuse-dbus = false\nuse-utmp = true\ndebug-no-secmod-stats = true\n\
             sec-mod-scale = 2\nlimit-worker-memory = false\noutput-buffer = 10\n\
             match-tls-dtls-ciphers = false\nserver-drain-ms = 1000\nsyslog-facility = daemon\n\
             compression = false\nno-compress-limit = 256\ncompression-algo-priority = lzs\n\
             dtls-psk = true\nauto-select-group = false\ndefault-select-group = DEFAULT\n\
             select-group-by-url = false\nban-points-wrong-password = 10\nban-points-connection = 1\n\
             ban-points-kkdcp = 1\nbanner = \"Welcome to ocserv.conf\"\npre-login-banner = Hello\n\
             config-per-group = {d}/groups/\ndefault-user-config = {d}/default-user\n\
             default-group-config = {d}/default-group\nconnect-script = /bin/true\n\
             disconnect-script = /bin/true\ncustom-header = \"X-Test: %{{U}}\"\n\
             included-http-headers = Strict-Transport-Security: max-age=31536000\n\
             expose-iroutes = false\nappend-routes = false\nidle-timeout = 1200\n\
             mobile-idle-timeout = 2400\nsession-timeout = 86400\npersistent-cookies = false\n\
             ipv4-dns = 192.168.1.3\nipv4-nbns = 192.168.1.8\nipv6-network = fd91:4::\nipv6-prefix = 64\n\
             ipv6-dns = fd91:4::53\nipv6-subnet-prefix = 128\nmtu = 1400\nnet-priority = 3\n\
             no-udp = false\nrestrict-user-to-routes = false\nrestrict-user-to-ports = \"!(tcp(25))\"\n\
             rx-data-per-sec = 0\ntx-data-per-sec = 0\nstats-report-time = 360\ntunnel-all-dns = false\n\
             user-profile = {d}/profile.xml\n",
            d = dir.display()
        ),
    )
    .unwrap();
    fs::create_dir_all(dir.join("groups")).unwrap();
    fs::write(dir.join("default-user"), "mobile-dpd = 1800\n").unwrap();
    fs::write(dir.join("default-group"), "keepalive = 300\n").unwrap();
    fs::write(dir.join("profile.xml"), "<AnyConnectProfile/>\n").unwrap();
    // The translation, as an admin would read it first.
    let text = to_toml(&conf);
    assert!(text.contains("ipv4_network = \"192.168.1.0/24\""), "{text}");
    assert!(
        text.contains("#   line 10: isolate-workers: no meaning here"),
        "{text}"
    );
    // ocserv's command line on ocserv's file.
    let (pid, log, started) = start_as_ocserv(&mut net, &conf);
    assert!(
        started.contains("ocserv configuration, line 10: isolate-workers"),
        "{started}"
    );
    let pin = started
        .split_whitespace()
        .find(|w| w.starts_with("pin-sha256:"))
        .unwrap()
        .to_owned();
    let server = Server {
        pid,
        log,
        pin,
        tunnel_ip: "192.168.1.1".into(),
        ctl: dir.join("occtl.socket"),
    };
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = alice.wait_connected();
    assert!(addr.starts_with("192.168.1."), "{addr}");
    alice.wait_dtls();
    let env = alice.env("connect").unwrap();
    // Her file's routes replace the global ones; no-route, DNS and the rest stay.
    assert_eq!(split(&env, "INC"), ["10.60.0.0/16"]);
    assert_eq!(split(&env, "EXC"), ["192.168.5.0/24"]);
    // dns, ipv4-dns and ipv6-dns, in order (openconnect lists them all).
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_DNS").as_deref(),
        Some("192.168.1.2 192.168.1.3 fd91:4::53")
    );
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_NBNS").as_deref(),
        Some("192.168.1.9")
    );
    assert_eq!(
        Client::var(&env, "CISCO_DEF_DOMAIN").as_deref(),
        Some("example.com")
    );
    assert_eq!(
        Client::var(&env, "CISCO_SPLIT_DNS").as_deref(),
        Some("corp.example.com")
    );
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 3, "0.2").len(),
        3
    );
    assert_eq!(server.ctl_json("show users")[0]["Username"], "alice");
    // The keys added for completeness behave as ocserv's: banner, IPv6
    // pool (ipv6-network with ipv6-prefix), operator headers.
    assert_eq!(
        Client::var(&env, "CISCO_BANNER").as_deref(),
        Some("Welcome to ocserv.conf")
    );
    assert!(
        Client::var(&env, "INTERNAL_IP6_ADDRESS").is_some_and(|a| a.starts_with("fd91:4::")),
        "{env}"
    );
    let o = net.exec(
        &alice.ns,
        &format!("curl -sk -i --max-time 5 https://{}/", net.server_ip(1)),
    );
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(
        answer.contains("Strict-Transport-Security: max-age=31536000"),
        "{answer}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("ocserv.pid")).unwrap().trim(),
        pid.to_string()
    );
    assert!(fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("Uid:\t65534"));
}

/// `occtl` as dashboards and scripts call it, through the binary under
/// that name.
#[test]
fn occtl_by_its_name_shows_disconnects_and_terminates() {
    let _g = serial();
    let mut net = Net::new("occtl", 1);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(dir.join("users/alice"), "iroute = 10.250.0.0/24\n").unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..ServerOpts::default()
        },
    );
    let occtl = dir.join("occtl");
    std::os::unix::fs::symlink(BIN, &occtl).unwrap();
    let run = |args: &str| {
        let o = sh(&format!(
            "{} -s {} {args}",
            occtl.display(),
            server.ctl.display()
        ));
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    // Two watchers of `show events`, as text and as JSON.
    let ns = net.server_ns.clone();
    let (events, events_json) = (dir.join("events.txt"), dir.join("events.json"));
    let watchers = [("", &events), ("-j", &events_json)].map(|(opt, log)| {
        let cmd = format!(
            "{} -s {} {opt} show events",
            occtl.display(),
            server.ctl.display()
        );
        net.spawn_in(&ns, &cmd, log)
    });
    wait_for(Duration::from_secs(10), "the watchers", || {
        fs::read_to_string(&events)
            .ok()
            .filter(|t| t.contains("Press CTRL+C"))
    });
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = alice.wait_connected();
    let connected = "default: connected user 'alice' (".to_owned();
    wait_for(Duration::from_secs(10), "the connect event", || {
        fs::read_to_string(&events)
            .ok()
            .filter(|t| t.contains(&connected) && t.contains(&format!("with IP {addr}")))
    });

    // Sessions by occtl's session IDs.
    let (ok, out) = run("-j show sessions all");
    assert!(ok, "{out}");
    let sessions: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let s = &sessions[0];
    assert_eq!(
        (&s["Username"], &s["State"], &s["in_use"], &s["vhost"]),
        (
            &serde_json::json!("alice"),
            &serde_json::json!("authenticated"),
            &serde_json::json!(1),
            &serde_json::json!("default")
        ),
        "{sessions:#}"
    );
    let sid = s["Session"].as_str().unwrap().to_owned();
    let full = s["Full session"].as_str().unwrap().to_owned();
    assert_eq!((sid.len(), full.len()), (6, 28), "{sessions:#}");
    assert!(full.starts_with(&sid));
    let (ok, out) = run(&format!("-j show session {sid}"));
    assert!(ok, "{out}");
    let one: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(one[0]["Full session"], full.as_str());
    let (ok, out) = run("show sessions valid");
    assert!(
        ok && out.contains(&sid) && out.contains("authenticated"),
        "{out}"
    );

    let (ok, out) = run("-j show users");
    assert!(ok, "{out}");
    let users: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(users[0]["Username"], "alice");
    assert_eq!(users[0]["IPv4"], addr.as_str());
    let (ok, out) = run("-j show iroutes");
    assert!(ok, "{out}");
    let routes: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        routes[0]["iRoutes"],
        serde_json::json!(["10.250.0.0/255.255.255.0"]),
        "{routes:#}"
    );
    let (ok, out) = run("-n show status");
    assert!(ok && out.contains("online"), "{out}");

    // terminate session: the session ends, the cookie with it.
    let (ok, out) = run("terminate session nosuch");
    assert!(!ok && out.contains("no session matching 'nosuch'"), "{out}");
    let (ok, out) = run(&format!("terminate session {sid}"));
    assert!(
        ok && out.contains(&format!("session '{sid}' was terminated")),
        "{out}"
    );
    alice.wait_exit(Duration::from_secs(20));
    assert_eq!(server.ctl_json("show sessions"), serde_json::json!([]));
    wait_for(Duration::from_secs(10), "the disconnect event", || {
        fs::read_to_string(&events)
            .ok()
            .filter(|t| t.contains("default: disconnect user 'alice' ("))
    });
    // disconnect, as ocserv's: the session ends and its cookie with it,
    // and the client is told to quit.
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let (ok, out) = run("disconnect user alice");
    assert!(ok && out.contains("user 'alice' was disconnected"), "{out}");
    alice.wait_exit(Duration::from_secs(20));
    assert_eq!(server.ctl_json("show sessions"), serde_json::json!([]));
    let o = sh(&format!(
        "{} -s {} show user alice",
        occtl.display(),
        server.ctl.display()
    ));
    assert_eq!(o.status.code(), Some(2), "as occtl: not found is 2");
    assert!(String::from_utf8_lossy(&o.stdout).contains("user or ID not found"));
    wait_for(Duration::from_secs(10), "the last disconnect", || {
        fs::read_to_string(&events).ok().filter(|t| {
            t.matches("disconnect user 'alice'").count() == 2 && t.matches(&connected).count() == 2
        })
    });
    let json = fs::read_to_string(&events_json).unwrap();
    assert!(
        json.matches("\"Username\": \"alice\"").count() >= 4,
        "{json}"
    );
    let (ok, _) = run("stop now");
    assert!(ok);
    assert!(net.wait_exit(server.pid, Duration::from_secs(10)).is_some());
    // The watchers end with the server.
    for pid in watchers {
        assert!(net.wait_exit(pid, Duration::from_secs(10)).is_some());
    }
}

/// banner, pre-login-banner and custom-header where ocserv puts them.
#[test]
fn banners_and_custom_headers_reach_the_client() {
    let _g = serial();
    let mut net = Net::new("banner", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            auth_keys: "pre_login_banner = \"Authorized <users> only\"\nbanner = \"Welcome to the corp VPN\"\n".into(),
            session_keys: "custom_headers = [\"X-My-Header: hi %{U}\"]\nproxy_url = \"http://pac.example/%{U}.pac\"\n".into(),
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    // The first form carries the pre-login banner, escaped.
    let mut c = RawTls::connect(&ns, to).unwrap();
    c.post_form("").unwrap();
    let form = c.response().expect("the login form");
    let body = String::from_utf8_lossy(&form.body);
    assert!(
        body.contains("<banner>Authorized &lt;users&gt; only</banner>"),
        "{body}"
    );
    // The success document, the banner.
    c.post_form("username=alice&password=test123").unwrap();
    let done = c.response().expect("the login's answer");
    assert!(
        String::from_utf8_lossy(&done.body).contains("<banner>Welcome to the corp VPN</banner>"),
        "{done:?}"
    );
    // The CONNECT answer: X-CSTP-Banner and the custom header, %{U} filled.
    let cookie = cookie_of(&done).unwrap();
    let r = c.connect_tunnel(&cookie).expect("CONNECT answer");
    assert_eq!(
        header(&r, "X-CSTP-Banner"),
        Some("Welcome to the corp VPN"),
        "{}",
        r.head
    );
    assert_eq!(header(&r, "X-My-Header"), Some("hi alice"), "{}", r.head);
    assert_eq!(
        header(&r, "X-CSTP-MSIE-Proxy-Pac-URL"),
        Some("http://pac.example/alice.pac"),
        "{}",
        r.head
    );
    // The real client shows the pre-login banner and hands the banner to
    // its script.
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    assert!(
        alice.log_text().contains("Authorized <users> only"),
        "{}",
        alice.log_text()
    );
    let env = alice.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "CISCO_BANNER").as_deref(),
        Some("Welcome to the corp VPN")
    );
}

/// predictable-ips: a user gets the same address at every login while it
/// is free, whoever logged in between.
#[test]
fn predictable_ips_give_a_user_the_same_address_again() {
    let _g = serial();
    let mut net = Net::new("predip", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            network_keys: "predictable_ips = true\n".into(),
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    let address = |user: &str, pw: &str| {
        let cookie = login_cookie(&ns, to, user, pw);
        let mut c = RawTls::connect(&ns, to).unwrap();
        let r = c.connect_tunnel(&cookie).expect("CONNECT answer");
        assert_eq!(r.status, 200, "{}", r.head);
        (c, header(&r, "X-CSTP-Address").unwrap().to_owned())
    };
    let (first, a1) = address("alice", "test123");
    let (_bob, b) = address("bob", "wonderland");
    assert_ne!(a1, b);
    // alice's session ends, and she logs in again.
    drop(first);
    assert!(server.ctl("disconnect user alice").status.success());
    let (_again, a2) = address("alice", "test123");
    assert_eq!(a1, a2, "alice's address moved");
}

/// listen-proxy-proto: behind a load balancer, the PROXY header names the
/// client, and a connection without one is refused.
#[test]
fn a_proxy_header_names_the_client_and_is_required() {
    let _g = serial();
    let mut net = Net::new("proxyp", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            server_keys: "proxy_protocol = true\n".into(),
            extra_config: "[security]\nmax_ban_score = 30\nban_points_wrong_password = 10\n".into(),
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    // v1, then a login and a CONNECT: the session is the header's client's.
    let v1 = b"PROXY TCP4 198.51.100.7 10.91.1.1 40000 443\r\n";
    let mut c = RawTls::connect_after(&ns, to, v1).expect("TLS after a v1 header");
    c.post_form("username=alice&password=test123").unwrap();
    let cookie = cookie_of(&c.response().expect("login answer")).unwrap();
    let r = c.connect_tunnel(&cookie).expect("CONNECT answer");
    assert_eq!(r.status, 200, "{}", r.head);
    let users = server.ctl_json("show users");
    assert_eq!(users[0]["Remote IP"], "198.51.100.7", "{users:#}");
    // v2: wrong passwords score the header's address, not the proxy's.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([
        0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 91, 1, 1, 0x9c, 0x41, 0x01, 0xbb,
    ]);
    for _ in 0..3 {
        let mut c = RawTls::connect_after(&ns, to, &v2).expect("TLS after a v2 header");
        c.post_form("username=alice&password=wrong").unwrap();
        let _ = c.response();
    }
    let bans = server.ctl_json("show ip bans");
    assert_eq!(bans[0]["IP"], "203.0.113.9", "{bans:#}");
    // The proxy's own address is not banned: a v1 client still logs in.
    let mut again = RawTls::connect_after(&ns, to, v1).expect("TLS after a v1 header");
    again.post_form("username=bob&password=wonderland").unwrap();
    assert!(again.response().and_then(|r| cookie_of(&r)).is_some());
    // Without a header: closed before TLS.
    assert!(
        RawTls::connect(&ns, to).is_err(),
        "a connection without a PROXY header got TLS"
    );
    server.wait_log("connection closed: PROXY header", Duration::from_secs(3));
}

/// The real HAProxy in front, as ocserv deployments put it: openconnect
/// connects through it, the server sees the client's own address, and
/// DTLS goes straight to the server.
#[test]
fn openconnect_through_haproxy_with_send_proxy_v2() {
    let _g = serial();
    let mut net = Net::new("haproxy", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            server_keys: "proxy_protocol = true\n".into(),
            ..ServerOpts::default()
        },
    );
    let cfg = net.dir.join("haproxy.cfg");
    fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend vpn\n  bind {ip}:8443\n  default_backend ocserv\n\
             backend ocserv\n  server s1 127.0.0.1:443 send-proxy-v2\n",
            ip = net.server_ip(1)
        ),
    )
    .unwrap();
    let ns = net.server_ns.clone();
    let log = net.dir.join("haproxy.log");
    net.spawn_in(&ns, &format!("haproxy -db -f {}", cfg.display()), &log);
    wait_for(Duration::from_secs(10), "haproxy listening", || {
        let o = net.exec(&ns, "ss -Hltn 'sport = :8443'");
        (!String::from_utf8_lossy(&o.stdout).trim().is_empty()).then_some(())
    });
    // openconnect to HAProxy's port.
    let url = format!("https://{}:8443/", net.server_ip(1));
    let alice = openconnect_on(&mut net, &server, &url);
    alice.wait_connected();
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 3, "0.2").len(),
        3
    );
    let users = server.ctl_json("show users");
    assert_eq!(
        users[0]["Remote IP"], "10.91.1.2",
        "the client, not HAProxy: {users:#}"
    );
}

/// Starts openconnect in client namespace 1 on `url`.
fn openconnect_on(net: &mut Net, server: &Server, url: &str) -> Client {
    let ns = net.client_ns[0].clone();
    let env_dir = net.dir.join("env1");
    let _ = fs::remove_dir_all(&env_dir);
    fs::create_dir_all(&env_dir).unwrap();
    let log = net.dir.join("client1.log");
    fs::write(net.dir.join("pw1"), "test123\n").unwrap();
    let cmd = format!(
        "env OCU_ENV_DIR={env} openconnect --user alice --passwd-on-stdin --servercert {pin} --script {script} --interface oc1 '{url}' < {pw}",
        env = env_dir.display(),
        pin = server.pin,
        script = net.dir.join("client-script.sh").display(),
        pw = net.dir.join("pw1").display()
    );
    let pid = net.spawn_in(&ns, &cmd, &log);
    Client {
        pid,
        ns,
        env_dir,
        log,
        ifname: "oc1".into(),
    }
}

/// camouflage: without the secret in the URL the server is a web server
/// with nothing to show; with it, a VPN.
#[test]
fn camouflage_hides_the_vpn_unless_the_url_has_the_secret() {
    let _g = serial();
    let mut net = Net::new("camo", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            server_keys:
                "camouflage_secret = \"s3cret\"\ncamouflage_realm = \"Restricted Content\"\n".into(),
            ..ServerOpts::default()
        },
    );
    let ip = net.server_ip(1);
    let ns0 = net.client_ns[0].clone();
    let curl = |args: &str| {
        let o = sh(&format!(
            "ip netns exec {ns0} curl -sk -i --max-time 5 {args}"
        ));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plain = curl(&format!("https://{ip}/"));
    assert!(plain.starts_with("HTTP/1.1 401"), "{plain}");
    assert!(
        plain.contains("WWW-Authenticate: Basic realm=\"Restricted Content\""),
        "{plain}"
    );
    assert!(!plain.contains("config-auth"), "{plain}");
    let posted = curl(&format!("-d x https://{ip}/?wrong"));
    assert!(posted.starts_with("HTTP/1.1 401"), "{posted}");
    let form = curl(&format!("-d '' 'https://{ip}/?s3cret'"));
    assert!(
        form.contains("<config-auth") && form.contains("username"),
        "{form}"
    );
    // A CONNECT without a cookie of ours: a method this web server lacks.
    let ns = net.client_ns[0].clone();
    let mut c = RawTls::connect(&ns, format!("{ip}:443").parse().unwrap()).unwrap();
    let r = c.connect_tunnel("nonsense").expect("an answer");
    assert_eq!(r.status, 405);
    // openconnect without the secret gets nowhere; with it, a tunnel.
    let lost = openconnect_on(&mut net, &server, &format!("https://{ip}/"));
    lost.wait_exit(Duration::from_secs(20));
    assert!(lost.env("connect").is_none());
    let alice = openconnect_on(&mut net, &server, &format!("https://{ip}/?s3cret"));
    alice.wait_connected();
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 3, "0.2").len(),
        3
    );
    // A client of a live session goes on without the secret, whichever
    // shard its connection lands on (as ocserv); a cookie of no session
    // does not.
    let done = curl(&format!(
        "-d 'username=alice&password=test123' 'https://{ip}/?s3cret'"
    ));
    let cookie = done
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: webvpn="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no cookie in {done}"))
        .to_owned();
    for _ in 0..6 {
        let r = curl(&format!("--cookie 'webvpn={cookie}' https://{ip}/svc"));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let last = cookie.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &cookie[..cookie.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let r = curl(&format!("--cookie 'webvpn={forged}' https://{ip}/svc"));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
}

/// included-http-headers: on every answer, the login's, an error's and
/// the CONNECT's.
#[test]
fn operator_headers_on_every_answer() {
    let _g = serial();
    let mut net = Net::new("hhdr", 1);
    let _server = start_server(
        &mut net,
        ServerOpts {
            server_keys: "http_headers = [\"Strict-Transport-Security: max-age=31536000\", \"X-Frame-Options: deny\"]\n".into(),
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    let has = |r: &Reply| {
        header(r, "Strict-Transport-Security") == Some("max-age=31536000")
            && header(r, "X-Frame-Options") == Some("deny")
    };
    let mut c = RawTls::connect(&ns, to).unwrap();
    c.post_form("").unwrap();
    let form = c.response().unwrap();
    assert!(has(&form), "{}", form.head);
    c.post_form("username=alice&password=test123").unwrap();
    let done = c.response().unwrap();
    assert!(has(&done), "{}", done.head);
    let cookie = cookie_of(&done).unwrap();
    c.send(b"GET /x HTTP/1.1\r\nHost: vpn\r\n\r\n").unwrap();
    let missing = c.response().unwrap();
    assert!(missing.status == 404 && has(&missing), "{}", missing.head);
    c.post_form("username=bob&password=wonderland").unwrap();
    let refused = c.response().unwrap();
    assert!(refused.status == 401 && has(&refused), "{}", refused.head);
    let mut t = RawTls::connect(&ns, to).unwrap();
    let connected = t.connect_tunnel(&cookie).unwrap();
    assert!(
        connected.status == 200 && has(&connected),
        "{}",
        connected.head
    );
}

/// rekey-time / rekey-method: openconnect rekeys when told to, and the
/// tunnel carries traffic afterwards with the same address.
#[test]
fn clients_rekey_when_told_and_keep_their_tunnel() {
    let _g = serial();
    for (tag, method) in [("rkssl", "ssl"), ("rktun", "new-tunnel")] {
        let mut net = Net::new(tag, 1);
        let server = start_server(
            &mut net,
            ServerOpts {
                session_keys: format!("rekey_time = 3\nrekey_method = \"{method}\"\n"),
                dtls: Dtls::Psk,
                ..ServerOpts::default()
            },
        );
        let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
        let ip = client.wait_connected();
        client.wait_dtls();
        // ssl: a TLS 1.3 key update on the same connection; new-tunnel:
        // a new connection presenting the cookie. Either way, new DTLS.
        let rekeyed = |log: &str| {
            let how = match method {
                "ssl" => log.matches("Renegotiated SSL").count(),
                _ => log
                    .matches("Got CONNECT response")
                    .count()
                    .saturating_sub(1),
            };
            log.matches("rekey due").count() >= 2
                && how >= 2
                && log.matches("Established DTLS").count() >= 3
        };
        wait_for(
            Duration::from_secs(25),
            "openconnect to rekey twice",
            || {
                assert!(alive(client.pid), "{}", client.log_text());
                rekeyed(&client.log_text()).then_some(())
            },
        );
        let rtts = ping_rtts(&net, &client.ns, &server.tunnel_ip, 3, "0.2");
        assert_eq!(rtts.len(), 3, "{method}: {}", client.log_text());
        let users = server.ctl_json("show users");
        assert_eq!(users.as_array().unwrap().len(), 1, "{users:#}");
        assert_eq!(users[0]["IPv4"], ip.as_str(), "{users:#}");
    }
}

/// user-profile: the login announces the profile (XML manifest and the
/// webvpnc cookie) with its SHA-1; a client with a session's cookie gets
/// the file at /profiles/NAME from any shard, and may CONNECT after.
/// A user's file may name another; no cookie, no profile.
#[test]
fn the_user_profile_is_announced_and_served_to_sessions() {
    let _g = serial();
    let mut net = Net::new("uprof", 1);
    let dir = net.dir.clone();
    let profile = "<?xml version=\"1.0\"?>\n<AnyConnectProfile><ServerList/></AnyConnectProfile>\n";
    let bobs = "<?xml version=\"1.0\"?>\n<AnyConnectProfile><!-- bob --></AnyConnectProfile>\n";
    fs::write(dir.join("profile.xml"), profile).unwrap();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(dir.join("users/bob.xml"), bobs).unwrap();
    fs::write(dir.join("users/bob"), "user-profile = bob.xml\n").unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            auth_keys: "user_profile = \"profile.xml\"\n".into(),
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    let sha1 = |file: &str| {
        must(&format!("sha1sum {}", dir.join(file).display()))
            .split_whitespace()
            .next()
            .unwrap()
            .to_uppercase()
    };
    let get = |cookie: Option<&str>| {
        let mut c = RawTls::connect(&ns, to).unwrap();
        let cookie = cookie.map_or(String::new(), |k| format!("Cookie: webvpn={k}\r\n"));
        c.send(
            format!("GET /profiles/profile.xml HTTP/1.1\r\nHost: vpn\r\n{cookie}\r\n").as_bytes(),
        )
        .unwrap();
        let r = c.response().expect("an answer");
        (c, r)
    };
    for (user, pw, file, content) in [
        ("alice", "test123", "profile.xml", profile),
        ("bob", "wonderland", "users/bob.xml", bobs),
    ] {
        let mut c = RawTls::connect(&ns, to).unwrap();
        c.post_form(&format!("username={user}&password={pw}"))
            .unwrap();
        let done = c.response().unwrap();
        let body = String::from_utf8_lossy(&done.body).into_owned();
        let name = file.rsplit('/').next().unwrap();
        let hash = sha1(file);
        assert!(
            body.contains(&format!(
                "<uri>/profiles/{name}</uri><hash type=\"sha1\">{hash}</hash>"
            )),
            "{body}"
        );
        assert!(
            headers(&done, "Set-Cookie")
                .iter()
                .any(|v| v.starts_with(&format!(
                    "webvpnc=bu:/&p:t&iu:1/&fu:profiles%2F{name}&fh:{hash};"
                ))),
            "{}",
            done.head
        );
        let cookie = cookie_of(&done).unwrap();
        // New connections land on either shard: the GET follows the cookie.
        for _ in 0..6 {
            let (_, r) = get(Some(&cookie));
            assert_eq!(r.status, 200, "{}", r.head);
            assert_eq!(String::from_utf8_lossy(&r.body), content);
        }
        // The same connection then carries the tunnel.
        let (mut c, r) = get(Some(&cookie));
        assert_eq!(r.status, 200);
        let t = c.connect_tunnel(&cookie).expect("CONNECT answer");
        assert_eq!(t.status, 200, "{}", t.head);
    }
    assert_eq!(get(None).1.status, 401);
    assert_eq!(get(Some(&"0".repeat(36))).1.status, 401);
    assert!(
        server.count_log("profile request moved to its session's shard") > 0,
        "no request landed on the other shard"
    );
}

/// listen with several addresses (IPv6 among them) and udp_listen
/// (ocserv's udp-listen-host): TCP answers on each listed address and no
/// other, DTLS only where udp_listen says; a client over IPv6 gets its
/// tunnel and DTLS, one on an address without DTLS works over CSTP.
#[test]
fn several_listen_addresses_ipv6_and_a_separate_udp_address() {
    let _g = serial();
    let mut net = Net::new("lsn", 2);
    let (s, c1) = (net.server_ns.clone(), net.client_ns[0].clone());
    let dev = |ns: &str, addr: &str| {
        must(&format!("ip -n {ns} -o -4 addr show"))
            .lines()
            .find(|l| l.contains(addr))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .to_owned()
    };
    let (sdev, cdev) = (dev(&s, "10.91.1.1"), dev(&c1, "10.91.1.2"));
    must(&format!("ip -n {s} addr add fd91:1::1/64 dev {sdev} nodad"));
    must(&format!(
        "ip -n {c1} addr add fd91:1::2/64 dev {cdev} nodad"
    ));
    let server = start_server(
        &mut net,
        ServerOpts {
            server_keys: "listen = [\"10.91.2.1\", \"fd91:1::1\"]\nudp_listen = \"fd91:1::1\"\n"
                .into(),
            dtls: Dtls::Psk,
            ..ServerOpts::default()
        },
    );
    let listening = must(&format!("ip netns exec {s} ss -Htln"));
    assert!(
        listening.contains("10.91.2.1:443") && listening.contains("[fd91:1::1]:443"),
        "{listening}"
    );
    assert!(
        !listening.contains("10.91.1.1:443") && !listening.contains("*:443"),
        "{listening}"
    );
    let to: std::net::SocketAddr = "10.91.1.1:443".parse().unwrap();
    assert!(tcp_in(&c1, to).is_err(), "an address not listed");

    let alice = openconnect_on(&mut net, &server, "https://[fd91:1::1]/");
    alice.wait_connected();
    alice.wait_dtls();
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 3, "0.2").len(),
        3,
        "over IPv6 and DTLS"
    );
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    assert_eq!(
        ping_rtts(&net, &net.client_ns[1], &server.tunnel_ip, 3, "0.2").len(),
        3,
        "over CSTP"
    );
    let users = server.ctl_json("show users");
    let channel = |who: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["Username"] == who)
            .map(|u| u["Channel"].clone())
    };
    assert_eq!(
        channel("alice"),
        Some(serde_json::json!("DTLS")),
        "{users:#}"
    );
    assert_eq!(channel("bob"), Some(serde_json::json!("CSTP")), "{users:#}");
    assert!(!bob.log_text().contains("Established DTLS"));
}

/// systemd socket activation, as Debian's ocserv.socket does it: the
/// service manager's TCP and UDP sockets on port 443 (dual-stack `::`),
/// here opened by systemd-socket-activate, are served by every shard; an
/// IPv4 client on them is an IPv4 client, with its tunnel and DTLS.
#[test]
fn socket_activation_serves_the_service_managers_sockets() {
    let _g = serial();
    let mut net = Net::new("sact", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..ServerOpts::default()
        },
    );
    must(&format!("kill -TERM {}", server.pid));
    net.wait_exit(server.pid, Duration::from_secs(10))
        .expect("the first server stopped");
    let (s, c1) = (net.server_ns.clone(), net.client_ns[0].clone());
    let log = net.dir.join("activated.log");
    let pid = net.spawn_in(
        &s,
        &format!(
            "systemd-socket-activate -l 443 systemd-socket-activate --datagram -l 443 {BIN} -c {}",
            net.dir.join("server.toml").display()
        ),
        &log,
    );
    // Like a socket unit, the first connection starts the service.
    let to: std::net::SocketAddr = format!("{}:443", net.server_ip(1)).parse().unwrap();
    let _first = wait_for(Duration::from_secs(10), "the socket to listen", || {
        tcp_in(&c1, to).ok()
    });
    wait_for(Duration::from_secs(20), "the server ready", || {
        fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("ocserv-uring ready"))
    });
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("socket activation: serving"), "{text}");
    let listening = must(&format!("ip netns exec {s} ss -Htln"));
    assert_eq!(
        listening.matches(":443").count(),
        1,
        "one listener, systemd's: {listening}"
    );

    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    alice.wait_dtls();
    assert_eq!(ping_rtts(&net, &c1, &server.tunnel_ip, 3, "0.2").len(), 3);
    let users = server.ctl_json("show users");
    assert_eq!(users[0]["Remote IP"], "10.91.1.2", "{users:#}");
    assert_eq!(users[0]["Channel"], "DTLS", "{users:#}");
    must(&format!("kill -TERM {pid}"));
    assert!(net
        .wait_exit(pid, Duration::from_secs(10))
        .expect("stopped")
        .success());
}

/// The pin a started server logged on the line containing `what`.
fn logged_pin(log: &str, what: &str) -> String {
    log.lines()
        .filter(|l| l.contains(what))
        .flat_map(str::split_whitespace)
        .find(|w| w.starts_with("pin-sha256:"))
        .unwrap_or_else(|| panic!("no {what} in:\n{log}"))
        .to_owned()
}

/// `[vhost:NAME]`: the server name in the client's TLS hello (SNI) picks a
/// host with its own certificate, users, addresses, DNS and banner; the
/// rest is inherited from the default host, as ocserv 1.5 does.
#[test]
fn virtual_hosts_by_sni_have_their_own_certificate_users_and_addresses() {
    let _g = serial();
    let mut net = Net::new("vhost", 2);
    let (_, _) = harness_config(&mut net);
    let dir = net.dir.clone();
    must(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
         -subj /CN=vpn2.test -addext subjectAltName=DNS:vpn2.test \
         -keyout {d}/key2.pem -out {d}/cert2.pem 2>/dev/null",
        d = dir.display()
    ));
    add_user(&dir.join("vpn2.passwd"), "carol", "vpn2pass");
    must(&format!("chmod o+x {}", dir.display()));
    let conf = dir.join("ocserv.conf");
    fs::write(
        &conf,
        format!(
            "auth = \"plain[passwd={d}/ocpasswd]\"\n\
             tcp-port = 443\nudp-port = 443\n\
             server-cert = {d}/cert.pem\nserver-key = {d}/key.pem\n\
             occtl-socket-file = {d}/occtl.socket\ndevice = vpns\n\
             ipv4-network = 192.168.1.0/24\ndns = 192.168.1.2\n\
             banner = \"Default host\"\ncookie-timeout = 300\n\
             \n[vhost:vpn2.test]\n\
             auth = \"plain[passwd={d}/vpn2.passwd]\"\n\
             server-cert = {d}/cert2.pem\nserver-key = {d}/key2.pem\n\
             ipv4-network = 192.168.77.0\nipv4-netmask = 255.255.255.0\n\
             dns = 192.168.77.53\nbanner = \"Welcome to vpn2\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let text = to_toml(&conf);
    assert!(text.contains("[vhost.\"vpn2.test\".network]"), "{text}");
    assert!(
        text.contains("ipv4_network = \"192.168.77.0/24\""),
        "{text}"
    );
    // A key that is one for the whole server is refused in a host.
    let bad = dir.join("bad.conf");
    fs::write(
        &bad,
        format!(
            "auth = \"plain[passwd={d}/ocpasswd]\"\n[vhost:vpn2.test]\nmax-clients = 4\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let o = sh(&format!("{BIN} -t -c {}", bad.display()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains(":3: key `max-clients`")
            && err.contains("virtual host"),
        "{err}"
    );

    let (pid, log, started) = start_as_ocserv(&mut net, &conf);
    let server = Server {
        pid,
        log,
        pin: logged_pin(&started, "server certificate"),
        tunnel_ip: "192.168.1.1".into(),
        ctl: dir.join("occtl.socket"),
    };
    let pin2 = logged_pin(&started, "virtual host certificate");
    assert_ne!(server.pin, pin2);

    // No server name: the default host, its certificate, pool and DNS.
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let a = alice.wait_connected();
    assert!(a.starts_with("192.168.1."), "{a}");
    let env = alice.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "CISCO_BANNER").as_deref(),
        Some("Default host")
    );

    // vpn2.test: its certificate (openconnect pins it), its password file,
    // its pool; DNS lines add to the inherited ones, as ocserv's do.
    let resolve = format!("--resolve vpn2.test:{}", net.server_ip(2));
    let carol = start_client_at(
        &mut net,
        &pin2,
        2,
        "carol",
        &["vpn2pass"],
        &resolve,
        "https://vpn2.test/",
    );
    let c: std::net::Ipv4Addr = carol.wait_connected().parse().unwrap();
    assert_eq!(c.octets()[..3], [192, 168, 77], "{c}");
    carol.wait_dtls();
    let env = carol.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "CISCO_BANNER").as_deref(),
        Some("Welcome to vpn2")
    );
    let dns = Client::var(&env, "INTERNAL_IP4_DNS").unwrap_or_default();
    assert!(dns.contains("192.168.77.53"), "{env}");
    // Her pool is routed into the TUN device: the server reaches her (the
    // test's client script routes only her own network).
    must(&format!(
        "ip -n {} route add {}/32 dev {}",
        carol.ns, server.tunnel_ip, carol.ifname
    ));
    let o = net.exec(&net.server_ns, &format!("ping -n -c 3 -i 0.2 -W 2 {c}"));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).matches("time=").count(),
        3,
        "server → carol over vpn2's pool"
    );
    let users = server.ctl_json("show users");
    let host_of = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["Username"] == name)
            .map(|u| u["vhost"].clone())
    };
    assert_eq!(host_of("alice"), Some("default".into()), "{users}");
    assert_eq!(host_of("carol"), Some("vpn2.test".into()), "{users}");
    // The ciphers as occtl shows them (GnuTLS's descriptions).
    let carol_info = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["Username"] == "carol")
        .unwrap();
    let text = |k: &str| carol_info[k].as_str().unwrap_or_default().to_owned();
    assert!(
        text("TLS ciphersuite").starts_with("(TLS1."),
        "{carol_info}"
    );
    assert!(
        text("DTLS cipher").starts_with("(DTLS1.2)-(PSK)-("),
        "{carol_info}"
    );

    // Each host knows only its own users.
    let try_login = |idx: usize, user: &str, pw: &str, pin: &str, url: &str| {
        let o = net.exec(
            &net.client_ns[idx - 1],
            &format!(
                "sh -c 'echo {pw} | timeout 20 openconnect --authenticate --non-inter {resolve} --user {user} --passwd-on-stdin --servercert {pin} {url}'"
            ),
        );
        String::from_utf8_lossy(&o.stdout).contains("COOKIE=")
    };
    assert!(!try_login(
        2,
        "alice",
        "test123",
        &pin2,
        "https://vpn2.test/"
    ));
    assert!(!try_login(
        1,
        "carol",
        "vpn2pass",
        &server.pin,
        &format!("https://{}/", net.server_ip(1))
    ));
    assert!(try_login(
        2,
        "carol",
        "vpn2pass",
        &pin2,
        "https://vpn2.test/"
    ));
}

/// default-select-group: a first entry of the group list meaning the
/// user's own group; select-group-by-url: a login to /GROUP runs in GROUP
/// with no list to choose from.
#[test]
fn groups_by_default_entry_and_by_url() {
    let _g = serial();
    let mut net = Net::new("grpurl", 1);
    add_user_in(
        &net.dir.join("ocpasswd"),
        "carl",
        "pw123",
        "admins,engineering",
    );
    let server = start_server(
        &mut net,
        ServerOpts {
            auth_keys: "select_group = [\"admins\", \"engineering[Engineering]\"]\n\
                        default_select_group = \"DEFAULT\"\nselect_group_by_url = true\n"
                .into(),
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    let mut c = RawTls::connect(&ns, to).unwrap();
    c.post_form("").unwrap();
    let form = String::from_utf8_lossy(&c.response().expect("the form").body).into_owned();
    let first = form.find("<option").expect("a group list");
    assert!(
        form[first..].starts_with("<option value=\"DEFAULT\">DEFAULT</option>"),
        "{form}"
    );
    c.post_form("username=carl&password=pw123&group_list=DEFAULT")
        .unwrap();
    let done = c.response().expect("the login's answer");
    assert!(cookie_of(&done).is_some(), "{done:?}");
    let sessions = server.ctl_json("show sessions");
    assert_eq!(sessions[0]["Groupname"], "admins", "{sessions:#}");

    // The URL names the group: openconnect sees no list and lands in it.
    let url = format!("https://{}/engineering", net.server_ip(1));
    let carl = start_client_at(&mut net, &server.pin, 1, "carl", &["pw123"], "", &url);
    carl.wait_connected();
    let users = server.ctl_json("show users");
    assert_eq!(users[0]["Groupname"], "engineering", "{users:#}");
    assert!(!carl.log_text().contains("GROUP:"), "{}", carl.log_text());
}
