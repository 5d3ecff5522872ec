//! The server on the open internet (issue 16): logins that cannot pile up
//! or trickle forever, one login per connection, addresses that cookies
//! alone cannot drain, logs that cannot be forged. Real openconnect beside
//! small raw clients, in namespaces each test makes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::raw::{
    capture_udp, cookie_of, header, login_cookie, tcp_in, udp_in, wait_tcp_closed, RawTls,
};
use common::*;

fn addr(net: &Net, client: usize) -> SocketAddr {
    format!("{}:443", net.server_ip(client)).parse().unwrap()
}

#[test]
fn dripping_and_piled_up_logins_are_closed_while_a_real_login_succeeds() {
    let _g = serial();
    let mut net = Net::new("bound", 2);
    let server = start_server(
        &mut net,
        ServerOpts {
            auth_timeout: 4,
            extra_config: "[security]\nmax_ban_score = 1000\nmax_logins_per_address = 6\nban_points_login_limit = 5\n".into(),
            ..ServerOpts::default()
        },
    );
    let (ns1, to1) = (net.client_ns[0].clone(), addr(&net, 1));

    // A client that sends one complete request every second never logs in:
    // auth_timeout bounds the whole login, not each request.
    let drip = std::thread::spawn(move || {
        let start = Instant::now();
        let mut c = RawTls::connect(&ns1, to1).expect("TLS to the server");
        for _ in 0..30 {
            if c.send(b"GET / HTTP/1.1\r\nHost: vpn\r\n\r\n").is_err() || c.response().is_none() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        start.elapsed()
    });

    // Silent connections from one address: five more fill its six slots...
    std::thread::sleep(Duration::from_millis(500));
    let ns1 = net.client_ns[0].clone();
    let mut pile: Vec<_> = (0..5)
        .map(|_| tcp_in(&ns1, to1).expect("connect"))
        .collect();
    for s in &pile {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut pile {
        assert_eq!(
            wait_tcp_closed(s, Duration::from_millis(400)),
            None,
            "a connection within the limit was closed"
        );
    }
    // ...and the next one is closed at once, before any TLS.
    let mut over = tcp_in(&ns1, to1).expect("connect");
    over.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let closed = wait_tcp_closed(&mut over, Duration::from_secs(2));
    assert!(
        closed.is_some(),
        "a connection over max_logins_per_address stayed open"
    );
    server.wait_log("max_logins_per_address reached", Duration::from_secs(2));

    // Another address logs in and passes traffic meanwhile.
    let client = start_client(&mut net, &server, 2, "alice", &["test123"]);
    client.wait_connected();
    let rtts = ping_rtts(&net, &client.ns, &server.tunnel_ip, 3, "0.2");
    assert_eq!(rtts.len(), 3, "pings through the tunnel during the pile-up");

    // auth_timeout ends the pile and the dripper, however they behave.
    for s in &mut pile {
        assert!(
            wait_tcp_closed(s, Duration::from_secs(8)).is_some(),
            "a silent connection outlived auth_timeout"
        );
    }
    let dripped = drip.join().unwrap();
    assert!(
        dripped >= Duration::from_millis(3500) && dripped < Duration::from_secs(8),
        "the dripping client was closed after {dripped:?}, expected about auth_timeout (4 s)"
    );
    // The slots are free again, and the refusal cost ban points.
    let mut again = tcp_in(&ns1, to1).expect("connect");
    again
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(
        wait_tcp_closed(&mut again, Duration::from_secs(1)),
        None,
        "slots were not given back"
    );
    let points = server.ctl_json("show ip ban points");
    let score = points
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["IP"] == "10.91.1.2")
        .map(|b| b["Score"].as_u64().unwrap());
    assert_eq!(score, Some(5), "{points:#}");
}

#[test]
fn a_connection_carries_one_login_and_no_more() {
    let _g = serial();
    let mut net = Net::new("onelogin", 1);
    let server = start_server(&mut net, ServerOpts::default());
    let mut c = RawTls::connect(&net.client_ns[0], addr(&net, 1)).expect("TLS");
    c.post_form("username=alice&password=test123").unwrap();
    let reply = c.response().expect("login reply");
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(cookie_of(&reply).is_some(), "{}", reply.head);
    // A GET is answered, the connection stays for its CONNECT...
    c.send(b"GET /profile.xml HTTP/1.1\r\nHost: vpn\r\n\r\n")
        .unwrap();
    assert_eq!(c.response().map(|r| r.status), Some(404));
    // ...and a second login is refused and closed, creating no session.
    c.post_form("username=bob&password=wonderland").unwrap();
    assert_eq!(c.response().map(|r| r.status), Some(401));
    assert!(
        c.wait_closed(Duration::from_secs(3)).is_some(),
        "the connection stayed open"
    );
    let sessions = server.ctl_json("show sessions");
    let users: Vec<_> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Username"].clone())
        .collect();
    assert_eq!(users, vec![serde_json::json!("alice")], "{sessions:#}");
}

#[test]
fn a_newline_in_a_user_name_forges_no_log_line() {
    let _g = serial();
    let mut net = Net::new("forge", 1);
    let server = start_server(&mut net, ServerOpts::default());
    let forged = "FORGED audit: login user=admin";
    let mut c = RawTls::connect(&net.client_ns[0], addr(&net, 1)).expect("TLS");
    c.post_form(&format!(
        "username=mallory%0A{}&password=x",
        forged.replace(' ', "+")
    ))
    .unwrap();
    let _ = c.response();
    server.wait_log("wrong password", Duration::from_secs(5));
    let log = server.log_text();
    assert!(
        log.contains("mallory\\nFORGED"),
        "the user name was not logged escaped:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a forged line reached the log:\n{log}"
    );
}

#[test]
fn cookies_that_never_connect_hold_no_address() {
    let _g = serial();
    let mut net = Net::new("cookies", 1);
    // Five client addresses.
    let server = start_server(
        &mut net,
        ServerOpts {
            network: "192.168.100.0/29",
            ..ServerOpts::default()
        },
    );
    let (ns, to) = (net.client_ns[0].clone(), addr(&net, 1));
    let cookies: Vec<_> = (0..12)
        .map(|_| login_cookie(&ns, to, "alice", "test123"))
        .collect();
    let sessions = server.ctl_json("show sessions");
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 12);
    assert!(
        sessions.iter().all(|s| s["IPv4"] == ""),
        "a cookie holds an address: {sessions:#?}"
    );
    // Every address is still there: five CONNECTs get one each...
    let mut tunnels = Vec::new();
    for cookie in &cookies[..5] {
        let mut c = RawTls::connect(&ns, to).unwrap();
        let reply = c.connect_tunnel(cookie).expect("a CONNECT reply");
        assert_eq!(reply.status, 200, "{}", reply.head);
        tunnels.push((c, header(&reply, "X-CSTP-Address").unwrap().to_owned()));
    }
    let mut leased: Vec<_> = tunnels.iter().map(|(_, a)| a.clone()).collect();
    leased.sort();
    leased.dedup();
    assert_eq!(leased.len(), 5, "{leased:?}");
    // ...the sixth finds the pool used up and is told so; its session stays.
    let mut sixth = RawTls::connect(&ns, to).unwrap();
    let reply = sixth.connect_tunnel(&cookies[5]).expect("a CONNECT reply");
    assert_eq!(reply.status, 503, "{}", reply.head);
    assert_eq!(
        server.ctl_json("show sessions").as_array().unwrap().len(),
        12
    );
    // A reconnect keeps its address: close one tunnel, CONNECT again.
    let (c, first) = tunnels.remove(0);
    drop(c);
    server.wait_log("cookie kept for reconnect", Duration::from_secs(5));
    let mut again = RawTls::connect(&ns, to).unwrap();
    let reply = again.connect_tunnel(&cookies[0]).expect("a CONNECT reply");
    assert_eq!(
        header(&reply, "X-CSTP-Address"),
        Some(first.as_str()),
        "{}",
        reply.head
    );
}

#[test]
fn a_pool_smaller_than_the_workers_fills_and_carries_traffic() {
    let _g = serial();
    let mut net = Net::new("tinypool", 6);
    // Eight shards, five addresses: shards 0, 1 and 7 own none and borrow.
    let server = start_server(
        &mut net,
        ServerOpts {
            workers: 8,
            network: "192.168.100.0/29",
            ..ServerOpts::default()
        },
    );
    let clients: Vec<_> = (1..=5)
        .map(|i| start_client(&mut net, &server, i, "alice", &["test123"]))
        .collect();
    let mut addrs: Vec<_> = clients.iter().map(Client::wait_connected).collect();
    for c in &clients {
        let rtts = ping_rtts(&net, &c.ns, &server.tunnel_ip, 3, "0.2");
        assert_eq!(rtts.len(), 3, "pings through {}'s tunnel", c.ns);
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 5, "{addrs:?}");
    let sessions = server.ctl_json("show sessions");
    let borrowed = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let a: std::net::Ipv4Addr = s["IPv4"].as_str().unwrap().parse().unwrap();
            u64::from(u32::from(a) % 8) != s["Shard"].as_u64().unwrap()
        })
        .count();
    eprintln!("{borrowed} of 5 sessions run on a borrowed address");
    // The pool is used up: a sixth client logs in but gets no address.
    let ns6 = net.client_ns[5].clone();
    let cookie = login_cookie(&ns6, addr(&net, 6), "bob", "wonderland");
    let mut c = RawTls::connect(&ns6, addr(&net, 6)).unwrap();
    assert_eq!(c.connect_tunnel(&cookie).map(|r| r.status), Some(503));
    // One leaves; its address (borrowed or not) serves the sixth.
    clients[0].signal("INT");
    clients[0].wait_exit(Duration::from_secs(10));
    let sixth = start_client(&mut net, &server, 6, "bob", &["wonderland"]);
    sixth.wait_connected();
    assert_eq!(
        ping_rtts(&net, &sixth.ns, &server.tunnel_ip, 3, "0.2").len(),
        3
    );
}

/// Datagrams from the server's DTLS port that reached namespace `ns` (an
/// nftables counter in its input hook).
fn dtls_datagrams_in(net: &Net, ns: &str) -> u64 {
    let o = net.exec(ns, "nft list chain inet ocu in");
    let text = String::from_utf8_lossy(&o.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{text}"))
}

#[test]
fn a_replayed_client_hello_from_another_address_leaves_dtls_working() {
    let _g = serial();
    let mut net = Net::new("replay", 2);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..ServerOpts::default()
        },
    );
    // The client's ClientHello, as anyone on the path sees it.
    let ns1 = net.client_ns[0].clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let capture = std::thread::spawn(move || {
        capture_udp(
            &ns1,
            443,
            Duration::from_secs(30),
            |p| p.len() > 60 && p[0] == 22 && p[13] == 1,
            move || ready_tx.send(()).unwrap(),
        )
    });
    ready_rx.recv().unwrap();
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    alice.wait_dtls();
    let hello = capture.join().unwrap().expect("the client's ClientHello");
    let ns1 = net.client_ns[0].clone();
    must(&format!(
        "ip netns exec {ns1} nft add table inet ocu && ip netns exec {ns1} nft 'add chain inet ocu in {{ type filter hook input priority 0; }}' && ip netns exec {ns1} nft add rule inet ocu in udp sport 443 counter"
    ));

    // From another address: the hello as it was, and with a new random
    // (a new handshake), repeated for two seconds.
    let attacker = udp_in(&net.client_ns[1]);
    let to: SocketAddr = format!("{}:443", net.server_ip(2)).parse().unwrap();
    let mut fresh = hello.clone();
    fresh[30] ^= 0x5a;
    for i in 0..40 {
        attacker
            .send_to(if i % 2 == 0 { &hello } else { &fresh }, to)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // The working channel carries the pings: their replies arrive as DTLS
    // datagrams at the client, not over CSTP.
    let before = dtls_datagrams_in(&net, &alice.ns);
    let rtts = ping_rtts(&net, &alice.ns, &server.tunnel_ip, 20, "0.05");
    assert_eq!(rtts.len(), 20, "pings through the tunnel after the replay");
    let got = dtls_datagrams_in(&net, &alice.ns) - before;
    assert!(
        got >= 20,
        "only {got} DTLS datagrams reached the client for 20 ping replies"
    );
    let users = server.ctl_json("show users");
    assert_eq!(users[0]["Channel"], "DTLS", "{users:#}");
    let log = server.log_text();
    assert!(!log.contains("falling back to CSTP"), "{log}");
    assert_eq!(
        log.matches("DTLS connected").count(),
        1,
        "one handshake only:\n{log}"
    );
    assert!(
        !alice.log_text().contains("DTLS handshake failed"),
        "{}",
        alice.log_text()
    );
}

#[test]
fn a_panic_closes_one_connection_and_a_dead_shard_ends_the_process() {
    let _g = serial();
    let mut net = Net::new("panic", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            test_hooks: true,
            ..ServerOpts::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let to = addr(&net, 1);
    // A panic while serving one connection closes that connection only.
    for _ in 0..3 {
        let mut c = RawTls::connect(&alice.ns, to).unwrap();
        c.send(b"GET /+ocu-test+/panic HTTP/1.1\r\nHost: vpn\r\n\r\n")
            .unwrap();
        assert!(
            c.response().is_none(),
            "the panicking connection was answered"
        );
    }
    server.wait_log(
        "that connection is closed, the shard goes on",
        Duration::from_secs(5),
    );
    let log = server.log_text();
    assert!(
        log.contains("test hook: a panic while serving one connection"),
        "{log}"
    );
    assert!(
        log.contains("backtrace="),
        "the panic was logged without its backtrace:\n{log}"
    );
    // Both shards go on: the tunnel passes traffic, new logins work.
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 5, "0.1").len(),
        5
    );
    for _ in 0..4 {
        login_cookie(&alice.ns, to, "bob", "wonderland");
    }
    assert!(alive(server.pid));
    // A panic in a shard's own loop ends the process at once, non-zero.
    let mut c = RawTls::connect(&alice.ns, to).unwrap();
    c.send(b"GET /+ocu-test+/panic-shard HTTP/1.1\r\nHost: vpn\r\n\r\n")
        .unwrap();
    let status = net
        .wait_exit(server.pid, Duration::from_secs(5))
        .expect("the server exited");
    assert_eq!(status.code(), Some(70), "{status:?}\n{}", server.log_text());
    assert!(server
        .log_text()
        .contains("exiting so the service manager restarts the server"));
}

/// Effective capabilities of process `pid` (its CapEff mask).
fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

fn uids_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_server_drops_root_and_still_serves_logins_dtls_iroutes_scripts_and_reloads() {
    let _g = serial();
    let mut net = Net::new("privs", 1);
    let dir = net.dir.clone();
    std::fs::create_dir_all(dir.join("users")).unwrap();
    std::fs::write(dir.join("users/alice"), "iroute = 10.250.0.0/24\n").unwrap();
    // The script records who it runs as where that user may write.
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    must(&format!("chmod 1777 {}", out.display()));
    let script = dir.join("whoami.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n(id -u; grep CapEff /proc/self/status) > {}/$REASON.txt\n",
            out.display()
        ),
    )
    .unwrap();
    must(&format!(
        "chmod 755 {} && chmod o+x {}",
        script.display(),
        dir.display()
    ));
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            server_keys: "run_as_user = \"nobody\"\nrun_as_group = \"nogroup\"\n".into(),
            extra_config: format!(
                "[users]\nconfig_per_user = \"users\"\n[scripts]\nconnect_script = \"{s}\"\ndisconnect_script = \"{s}\"\n",
                s = script.display()
            ),
            ..ServerOpts::default()
        },
    );
    server.wait_log("privileges dropped", Duration::from_secs(5));
    let log = server.log_text();
    eprintln!(
        "{}",
        log.lines()
            .find(|l| l.contains("privileges dropped"))
            .unwrap_or_default()
    );
    assert_eq!(
        uids_of(server.pid),
        "65534 65534 65534 65534",
        "{}",
        server.log_text()
    );
    // CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_DAC_READ_SEARCH (and CAP_BPF
    // on kernels that need it for the maps), nothing else.
    let (admin, bind, read, bpf) = (1u64 << 12, 1u64 << 10, 1u64 << 2, 1u64 << 39);
    let caps = cap_eff(server.pid);
    assert_eq!(
        caps & !(admin | bind | read | bpf),
        0,
        "capabilities {caps:#x}"
    );
    assert_eq!(
        caps & (admin | bind | read),
        admin | bind | read,
        "capabilities {caps:#x}"
    );

    // A login (password file readable), DTLS, an iroute (a kernel route).
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    alice.wait_dtls();
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 5, "0.1").len(),
        5
    );
    let route = must(&format!("ip -n {} route show 10.250.0.0/24", net.server_ns));
    assert!(
        route.contains("dev vpns"),
        "no kernel route for the iroute: {route:?}"
    );
    // The connect script ran as nobody, with no capabilities.
    let ran = std::fs::read_to_string(out.join("connect.txt")).expect("the connect script ran");
    assert!(ran.starts_with("65534\n"), "{ran}");
    assert!(ran.contains("CapEff:\t0000000000000000"), "{ran}");
    // A reload reads the root-only key and password file again.
    must(&format!("kill -HUP {}", server.pid));
    server.wait_log("configuration reloaded", Duration::from_secs(5));
    assert!(
        !server.log_text().contains("reload failed"),
        "{}",
        server.log_text()
    );
    assert!(ctl_ok(&server, "show status"));
    // Logout: the iroute goes (CAP_NET_ADMIN kept), the disconnect script runs.
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "disconnect script", || {
        out.join("disconnect.txt").exists().then_some(())
    });
    let route = must(&format!("ip -n {} route show 10.250.0.0/24", net.server_ns));
    assert!(route.trim().is_empty(), "route left behind: {route:?}");
    // SIGTERM still ends it cleanly.
    must(&format!("kill -TERM {}", server.pid));
    let status = net
        .wait_exit(server.pid, Duration::from_secs(10))
        .expect("the server exited");
    assert!(status.success(), "{status:?}\n{}", server.log_text());
}

fn ctl_ok(server: &Server, args: &str) -> bool {
    server.ctl(args).status.success()
}
