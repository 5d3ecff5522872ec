//! End to end with the real openconnect client (Debian package) against the
//! real server, in network namespaces each test makes for itself. Needs
//! root, openconnect, iperf3, iproute2, curl (installed by `.ci/run`).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn login_ping_both_ways_and_iperf_both_directions() {
    let _g = serial();
    let mut net = Net::new("basic", 1);
    let server = start_server(&mut net, ServerOpts::default());
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    assert!(addr.starts_with("192.168.100."), "{addr}");
    let (c, s) = (net.client_ns[0].clone(), net.server_ns.clone());
    assert_eq!(
        ping_rtts(&net, &c, &server.tunnel_ip, 3, "0.2").len(),
        3,
        "client → server tunnel address"
    );
    assert_eq!(
        ping_rtts(&net, &s, &addr, 3, "0.2").len(),
        3,
        "server → client tunnel address"
    );
    let up = iperf_bytes(&net, &c, &s, &server.tunnel_ip, false);
    let down = iperf_bytes(&net, &c, &s, &server.tunnel_ip, true);
    eprintln!("iperf3 through the tunnel, 3 s each: up {up} B, down {down} B");
    assert!(up > 1_000_000 && down > 1_000_000, "up {up} down {down}");
    // The CONNECT reply reached the client's script with our values.
    let env = client.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_NETMASK").as_deref(),
        Some("255.255.255.0")
    );
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_DNS").as_deref(),
        Some("192.168.100.1")
    );
}

#[test]
fn wrong_password_is_refused_and_a_right_one_after_it_works() {
    let _g = serial();
    let mut net = Net::new("pw", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            workers: 1,
            ..Default::default()
        },
    );
    // The retry form asks again; openconnect reads the next stdin line.
    let client = start_client(&mut net, &server, 1, "alice", &["wrong", "test123"]);
    client.wait_connected();
    assert_eq!(server.count_log("wrong password"), 1);
    assert!(
        client.log_text().contains("Login failed"),
        "{}",
        client.log_text()
    );

    // Three wrong answers end the login with 401.
    client.signal("INT");
    client.wait_exit(Duration::from_secs(10));
    let bad = start_client(&mut net, &server, 1, "alice", &["x1", "x2", "x3"]);
    bad.wait_exit(Duration::from_secs(20));
    server.wait_log("too many wrong passwords", Duration::from_secs(5));
    assert!(bad.env("connect").is_none());
}

#[test]
fn two_users_at_once_get_different_addresses() {
    let _g = serial();
    let mut net = Net::new("two", 2);
    let server = start_server(&mut net, ServerOpts::default());
    let a = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let b = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    let (aa, ba) = (a.wait_connected(), b.wait_connected());
    assert_ne!(aa, ba);
    let s = net.server_ns.clone();
    for addr in [&aa, &ba] {
        assert_eq!(
            ping_rtts(&net, &s, addr, 2, "0.2").len(),
            2,
            "server → {addr}"
        );
    }
}

#[test]
fn client_sigint_frees_the_session_and_its_address() {
    let _g = serial();
    let mut net = Net::new("free", 1);
    // A /30 leaves exactly one client address: a second login only gets
    // it if the first session really was freed.
    let server = start_server(
        &mut net,
        ServerOpts {
            workers: 1,
            network: "10.99.0.0/30",
            ..Default::default()
        },
    );
    let a = start_client(&mut net, &server, 1, "alice", &["test123"]);
    assert_eq!(a.wait_connected(), "10.99.0.2");
    a.signal("INT");
    a.wait_exit(Duration::from_secs(10));
    server.wait_log("session ended, address released", Duration::from_secs(5));
    let b = start_client(&mut net, &server, 1, "bob", &["wonderland"]);
    assert_eq!(b.wait_connected(), "10.99.0.2");
}

#[test]
fn killed_tcp_connection_reconnects_with_cookie_and_keeps_address() {
    let _g = serial();
    let mut net = Net::new("recon", 1);
    let server = start_server(&mut net, ServerOpts::default());
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    let c = net.client_ns[0].clone();
    // New connections hash to either shard; repeat until one reconnect was
    // moved to the session's home shard (each try is a coin flip).
    for round in 1..=12 {
        let _ = std::fs::remove_file(client.env_dir.join("env-reconnect"));
        net.exec(&c, &format!("ss -K dst {} dport = :443", net.server_ip(1)));
        wait_for(Duration::from_secs(30), "reconnect", || {
            client.env("reconnect")
        });
        assert_eq!(server.count_log("tunnel up"), round + 1);
        assert_eq!(
            ping_rtts(&net, &c, &server.tunnel_ip, 2, "0.2").len(),
            2,
            "after reconnect {round}"
        );
        if server.count_log("moving CONNECT to its home shard") > 0 {
            break;
        }
    }
    assert!(
        server.count_log("moving CONNECT to its home shard") > 0,
        "no reconnect landed on the other shard"
    );
    // Same address throughout: openconnect aborts if it changes.
    assert!(
        crate::alive(client.pid),
        "client gave up:\n{}",
        client.log_text()
    );
    let env = client.env("reconnect").unwrap();
    assert_eq!(Client::var(&env, "INTERNAL_IP4_ADDRESS"), Some(addr));
}

#[test]
fn client_silent_past_dpd_limit_is_dropped() {
    let _g = serial();
    let mut net = Net::new("dpd", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            workers: 1,
            dpd: 1,
            ..Default::default()
        },
    );
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    client.signal("STOP");
    server.wait_log("client silent past the DPD limit", Duration::from_secs(15));
    server.wait_log("cookie kept for reconnect", Duration::from_secs(10));
    client.signal("CONT");
    // Back from its pause the client reconnects with its cookie.
    let env = wait_for(Duration::from_secs(40), "reconnect after DPD drop", || {
        client.env("reconnect")
    });
    assert_eq!(Client::var(&env, "INTERNAL_IP4_ADDRESS"), Some(addr));
}

#[test]
fn server_sigterm_ends_clients_cleanly_and_removes_the_device() {
    let _g = serial();
    let mut net = Net::new("term", 1);
    let server = start_server(&mut net, ServerOpts::default());
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    client.wait_connected();
    let _ = sh(&format!("kill -TERM {}", server.pid));
    wait_for(Duration::from_secs(10), "server exit", || {
        (!alive(server.pid)).then_some(())
    });
    // The client was told (TERMINATE) and quits instead of reconnecting.
    client.wait_exit(Duration::from_secs(10));
    server.wait_log("stopped", Duration::from_secs(1));
    let s = net.server_ns.clone();
    assert!(
        !net.exec(&s, "ip link show vpns").status.success(),
        "TUN device still there"
    );
}

/// A `$6$` hash whose check costs about `target` of CPU in this build.
fn slow_hash(password: &str, target: Duration) -> (String, Duration) {
    let probe = |rounds: u32| {
        let setup = format!("$6$rounds={rounds}$slowsalt");
        let t = std::time::Instant::now();
        let h = pwhash::sha512_crypt::hash_with(setup.as_str(), password).unwrap();
        (h, t.elapsed())
    };
    let (_, t10k) = probe(10_000);
    let rounds = ((target.as_secs_f64() / t10k.as_secs_f64()) * 10_000.0)
        .clamp(10_000.0, 999_999_999.0) as u32;
    probe(rounds)
}

#[test]
fn password_checks_run_off_the_executor_so_pings_stay_fast_under_a_login_burst() {
    let _g = serial();
    let (hash, cost) = slow_hash("right", Duration::from_millis(150));
    let mut net = Net::new("burst", 1);
    let opts = ServerOpts {
        workers: 1,
        extra_users: vec![("slow".into(), hash)],
        ..Default::default()
    };
    let server = start_server(&mut net, opts);
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    client.wait_connected();
    let c = net.client_ns[0].clone();

    // 6 loops of wrong-password logins for the slow user, all on shard 0.
    let body = "<config-auth client=\"vpn\" type=\"auth-reply\"><auth><username>slow</username><password>wrong</password></auth></config-auth>";
    let url = format!("https://{}/auth", net.server_ip(1));
    let loops = format!(
        "sh -c 'for i in $(seq 6); do (for j in $(seq 40); do curl -sk --max-time 30 -o /dev/null -d \"{}\" {url}; done) & done; wait'",
        body.replace('"', "\\\"")
    );
    let hammer_log = net.dir.join("hammer.log");
    let hammer = net.spawn_in(&c, &loops, &hammer_log);
    server.wait_log("wrong password", Duration::from_secs(20));
    let before = server.count_log("wrong password");
    let rtts = ping_rtts(&net, &c, &server.tunnel_ip, 30, "0.1");
    let during = server.count_log("wrong password") - before;
    let _ = sh(&format!("pkill -P {hammer}; kill {hammer}"));

    let max = rtts.iter().cloned().fold(0.0, f64::max);
    let mut sorted = rtts.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "hash cost {cost:?}; {during} password checks during 30 pings; RTT median {:.2} ms, max {max:.2} ms",
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    );
    assert_eq!(rtts.len(), 30, "pings lost during the login burst");
    assert!(during >= 5, "the burst was not running ({during} checks)");
    // On the executor each check would stall every tunnel of the shard for
    // the whole hash cost; off it, pings never wait for a hash.
    let bound = cost.as_secs_f64() * 1000.0;
    assert!(
        max < bound,
        "max RTT {max:.1} ms reached the hash cost {bound:.0} ms"
    );
}

#[test]
fn bad_http_gets_400_or_413_and_idle_clients_are_dropped_after_auth_timeout() {
    let _g = serial();
    let mut net = Net::new("http", 1);
    let _server = start_server(
        &mut net,
        ServerOpts {
            workers: 1,
            auth_timeout: 3,
            ..Default::default()
        },
    );
    let c = net.client_ns[0].clone();
    let url = format!("https://{}/", net.server_ip(1));
    let status = |args: &str| {
        let o = net.exec(
            &c,
            &format!("curl -sk --max-time 10 -o /dev/null -w '%{{http_code}}' {args} {url}"),
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let big = "x".repeat(20 * 1024);
    assert_eq!(
        status(&format!("-H 'X-Big: {big}'")),
        "413",
        "oversized head"
    );
    assert_eq!(
        status("-H 'Content-Length: 300000' -d x"),
        "413",
        "oversized body"
    );
    assert_eq!(
        status("-d '<config-auth><auth></config-auth>'"),
        "400",
        "malformed XML"
    );
    assert_eq!(status("-X BREW"), "405", "unknown method");
    // The server keeps serving a good client afterwards.
    assert_eq!(status("-d '<config-auth type=\"init\"/>'"), "200");

    // A TCP client that never speaks is dropped after auth_timeout (3 s).
    let t = std::time::Instant::now();
    let o = net.exec(
        &c,
        &format!(
            "timeout 15 bash -c 'exec 3<>/dev/tcp/{}/443; cat <&3 >/dev/null'",
            net.server_ip(1)
        ),
    );
    let waited = t.elapsed();
    assert!(
        o.status.success(),
        "connection was not closed by the server"
    );
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(12),
        "closed after {waited:?}"
    );
}
