//! The control socket, driven by `ocserv-uring ctl` against a server with
//! real openconnect clients: JSON that parses, byte counts that match the
//! client's own TUN counters, disconnects that end the client, bans.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Bytes the client's tunnel device sent and received (kernel counters).
fn tun_bytes(net: &Net, c: &Client) -> (u64, u64) {
    let o = net.exec(&c.ns, &format!("ip -s -j link show {}", c.ifname));
    let v: Value = serde_json::from_slice(&o.stdout).expect("ip -j output");
    let stats = &v[0]["stats64"];
    (
        stats["tx"]["bytes"].as_u64().unwrap(),
        stats["rx"]["bytes"].as_u64().unwrap(),
    )
}

fn near(a: u64, b: u64) -> bool {
    // In-flight packets and the client's own stray traffic (IPv6 router
    // solicitations) may differ; bulk counts must not.
    a.abs_diff(b) <= 64 * 1024 + a.max(b) / 50
}

#[test]
fn ctl_lists_sessions_as_json_with_true_byte_counts_and_disconnects_a_user() {
    let _g = serial();
    let mut net = Net::new("ctl", 2);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    let (s, c1) = (net.server_ns.clone(), net.client_ns[0].clone());
    assert_eq!(ping_rtts(&net, &c1, &server.tunnel_ip, 5, "0.1").len(), 5);
    assert!(iperf_bytes(&net, &c1, &s, &server.tunnel_ip, false) > 1_000_000);
    // Paced, so no datagram to the client is lost: the server counts what
    // it sent, the client's TUN what arrived.
    let _ = net.exec(&s, &format!("iperf3 -s -1 -D -B {}", server.tunnel_ip));
    std::thread::sleep(Duration::from_millis(500));
    let o = net.exec(
        &c1,
        &format!("timeout 20 iperf3 -c {} -t 3 -R -b 20M", server.tunnel_ip),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    let users = server.ctl_json("show users");
    let list = users.as_array().expect("a list of sessions");
    assert_eq!(list.len(), 2, "{users:#}");
    let a = list
        .iter()
        .find(|u| u["Username"] == "alice")
        .expect("alice listed");
    assert_eq!(a["State"], "connected");
    assert_eq!(a["IPv4"], alice.wait_connected().as_str(), "{a:#}");
    assert!(
        a["Remote IP"].as_str().unwrap().starts_with("10.91.1."),
        "{a:#}"
    );
    assert!(
        a["User-Agent"]
            .as_str()
            .unwrap()
            .contains("Open AnyConnect"),
        "{a:#}"
    );
    let (tun_tx, tun_rx) = tun_bytes(&net, &alice);
    let (rx, tx) = (a["raw_rx"].as_u64().unwrap(), a["raw_tx"].as_u64().unwrap());
    assert!(
        near(rx, tun_tx),
        "server counted {rx} bytes from alice, her TUN sent {tun_tx}"
    );
    assert!(
        near(tx, tun_rx),
        "server counted {tx} bytes to alice, her TUN received {tun_rx}"
    );
    assert_eq!(
        a["RX"].as_str().unwrap(),
        rx.to_string(),
        "occtl's RX is the byte count as a string"
    );

    let one = server.ctl_json(&format!("show id {}", a["ID"]));
    assert_eq!(one[0]["Username"], "alice");
    let status = server.ctl_json("show status");
    assert_eq!(status["Active sessions"], 2, "{status:#}");
    assert!(status["raw_rx"].as_u64().unwrap() >= rx);

    // The table form, for people.
    let table = String::from_utf8(server.ctl("show users").stdout).unwrap();
    assert!(
        table.lines().count() == 3 && table.contains("alice") && table.contains("bob"),
        "{table}"
    );

    let out = server.ctl_json("disconnect user alice");
    assert_eq!(out["disconnected"], 1);
    alice.wait_exit(Duration::from_secs(20));
    let users = server.ctl_json("show sessions");
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["Username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob"], "alice's session and cookie are gone");
    assert_eq!(
        ping_rtts(&net, &net.client_ns[1], &server.tunnel_ip, 2, "0.2").len(),
        2,
        "bob never noticed"
    );

    let bad = server.ctl("disconnect user nobody");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no session of user nobody"));
    let bad = server.ctl("show everything");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown command"));
}

#[test]
fn ctl_shows_and_lifts_bans() {
    let _g = serial();
    let mut net = Net::new("ctlban", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[security]\nmax_ban_score = 20\nban_time = 600\n".into(),
            ..Default::default()
        },
    );
    // Two wrong passwords reach the score; the third login is refused at accept.
    let c = start_client(&mut net, &server, 1, "alice", &["wrong", "wrong", "wrong"]);
    c.wait_exit(Duration::from_secs(30));
    server.wait_log("address banned", Duration::from_secs(5));
    let bans = server.ctl_json("show ip bans");
    let ip = "10.91.1.2";
    assert!(
        bans.as_array().unwrap().iter().any(|b| b["IP"] == ip),
        "{bans:#}"
    );
    assert_eq!(server.ctl_json(&format!("unban ip {ip}"))["unbanned"], true);
    assert_eq!(server.ctl_json("show ip bans"), serde_json::json!([]));
    let ok = start_client(&mut net, &server, 1, "alice", &["test123"]);
    ok.wait_connected();
}

/// `ctl user-config set` edits alice's file (the old one backed up), a new
/// login gets the new routes, `--reconnect` brings them to a connected
/// client at once, and a bad value leaves the file as it was.
#[test]
fn user_config_set_reaches_the_next_login_and_reconnect_applies_it_now() {
    let _g = serial();
    let mut net = Net::new("ucfg", 1);
    let dir = net.dir.clone();
    std::fs::create_dir_all(dir.join("users")).unwrap();
    std::fs::write(
        dir.join("users/alice"),
        "# managed by ctl\nroute = 10.10.0.0/16\n",
    )
    .unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let cfg = dir.join("server.toml");
    let ctl = |args: &str| {
        let o = sh(&format!("{BIN} ctl --config {} {args}", cfg.display()));
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, out) =
        ctl("user-config set alice --route 10.20.0.0/16 --dns 10.20.0.53 --split-dns corp.example");
    assert!(ok && out.contains("previous version in"), "{out}");
    let backups: Vec<_> = std::fs::read_dir(dir.join("users/.backup"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&backups[0]).unwrap(),
        "# managed by ctl\nroute = 10.10.0.0/16\n"
    );
    let (ok, out) = ctl("user-config show alice");
    assert!(ok && out == "# managed by ctl\nroute = 10.20.0.0/16\ndns = 10.20.0.53\nsplit-dns = corp.example\n", "{out}");
    let (ok, out) = ctl("--json user-config list");
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        serde_json::json!(["alice"])
    );

    let alice = start_client_with(&mut net, &server, 1, "alice", &["test123"], "-v");
    alice.wait_connected();
    let env = alice.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "CISCO_SPLIT_INC_0_ADDR").as_deref(),
        Some("10.20.0.0"),
        "{env}"
    );
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_DNS").as_deref(),
        Some("10.20.0.53")
    );
    assert_eq!(
        Client::var(&env, "CISCO_SPLIT_DNS").as_deref(),
        Some("corp.example")
    );

    // A bad value: refused with the key named, the file untouched.
    let (ok, out) = ctl("user-config set alice --route 10.30.0.0/33");
    assert!(
        !ok && out.contains("route") && out.contains("nothing written"),
        "{out}"
    );
    assert!(std::fs::read_to_string(dir.join("users/alice"))
        .unwrap()
        .contains("10.20.0.0/16"));

    // --reconnect: the connected client reconnects with its cookie, keeps
    // its session and address, and its CONNECT answer carries the new
    // routes (openconnect -v logs the headers; its script environment on
    // "reconnect" is the one built at the first connect, so the log is
    // where the client shows what it got).
    let addr = alice.wait_connected();
    let (ok, out) = ctl("user-config set alice --route 10.30.0.0/16 --reconnect");
    assert!(ok && out.contains("1 session(s) reconnecting"), "{out}");
    let env = wait_for(
        Duration::from_secs(30),
        "openconnect's reconnect script run",
        || alice.env("reconnect"),
    );
    assert_eq!(Client::var(&env, "INTERNAL_IP4_ADDRESS"), Some(addr));
    assert!(
        alice
            .log_text()
            .contains("X-CSTP-Split-Include: 10.30.0.0/255.255.0.0"),
        "{}",
        alice.log_text()
    );
    let me = server.ctl_json("show user alice");
    assert_eq!(
        me[0]["Routes"],
        serde_json::json!(["10.30.0.0/255.255.0.0"]),
        "{me:#}"
    );
    assert_eq!(
        ping_rtts(&net, &net.client_ns[0], &server.tunnel_ip, 3, "0.2").len(),
        3,
        "the tunnel works after the reconnect"
    );
    assert_eq!(
        server.ctl_json("show users").as_array().unwrap().len(),
        1,
        "one session, not two"
    );

    let (ok, out) = ctl("user-config delete alice");
    assert!(ok, "{out}");
    assert!(!dir.join("users/alice").exists());
    assert_eq!(
        std::fs::read_dir(dir.join("users/.backup"))
            .unwrap()
            .count(),
        3
    );
}

/// `ctl ARGS` run as user nobody (65534) with the given setpriv group
/// options: (success, stdout + stderr).
fn ctl_as_nobody(server: &Server, groups: &str, args: &str) -> (bool, String) {
    let o = sh(&format!(
        "setpriv --reuid=65534 {groups} {BIN} ctl --socket {} {args}",
        server.ctl.display()
    ));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Lets other users reach the socket in the test's directory.
fn traversable(dir: &std::path::Path) {
    must(&format!("chmod o+x {}", dir.display()));
}

fn socket_mode(server: &Server) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(&server.ctl).unwrap().permissions().mode() & 0o7777
}

#[test]
fn ctl_as_another_user_is_refused() {
    let _g = serial();
    let mut net = Net::new("ctlperm", 0);
    let server = start_server(&mut net, ServerOpts::default());
    traversable(&net.dir);
    assert_eq!(socket_mode(&server), 0o600);
    let nobody = "--regid=65534 --clear-groups";
    let (ok, out) = ctl_as_nobody(&server, nobody, "show status");
    assert!(!ok && out.contains("Permission denied"), "{out}");

    // Reachable by mistake, the socket still answers nobody else.
    must(&format!("chmod 0666 {}", server.ctl.display()));
    let (ok, out) = ctl_as_nobody(&server, nobody, "show status");
    assert!(!ok && out.contains("not allowed"), "{out}");
    server.wait_log("control connection refused", Duration::from_secs(5));
    assert!(
        server.log_text().contains("uid=65534"),
        "{}",
        server.log_text()
    );
    let (ok, out) = ctl_as_nobody(&server, nobody, "stop");
    assert!(!ok && out.contains("not allowed"), "{out}");
    assert_eq!(
        server.ctl_json("show status")["Status"],
        "online",
        "root still is allowed, and nobody's stop did nothing"
    );
}

/// A system group made for one test and deleted when it ends, also when
/// the test fails.
struct TempGroup {
    name: String,
    gid: u32,
}

impl TempGroup {
    fn new(name: &str) -> Self {
        let _ = sh(&format!("groupdel {name}"));
        must(&format!("groupadd {name}"));
        let line = must(&format!("getent group {name}"));
        let gid = line
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .unwrap_or_else(|| panic!("gid of {name}: {line:?}"));
        Self {
            name: name.to_owned(),
            gid,
        }
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = sh(&format!("groupdel {}", self.name));
    }
}

#[test]
fn members_of_the_control_group_may_use_ctl() {
    let _g = serial();
    // Declared before the server's namespaces: deleted after they are.
    let group = TempGroup::new(&format!("ocuctl{}", std::process::id() % 100_000));
    let mut net = Net::new("ctlgrp", 0);
    // The generated configuration ends in [control]: this key lands there.
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: format!("group = \"{}\"\n", group.name),
            ..Default::default()
        },
    );
    traversable(&net.dir);
    assert_eq!(socket_mode(&server), 0o660);
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&server.ctl).unwrap()),
        group.gid
    );

    // A supplementary member, and a member by primary group.
    let (ok, out) = ctl_as_nobody(
        &server,
        &format!("--regid=65534 --groups={}", group.gid),
        "--json show status",
    );
    assert!(ok, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["Status"],
        "online",
        "{out}"
    );
    let (ok, out) = ctl_as_nobody(
        &server,
        &format!("--regid={} --clear-groups", group.gid),
        "--json show status",
    );
    assert!(ok, "{out}");
    // Not a member: kept out by the mode, and by the server if the mode
    // lets it through.
    let (ok, out) = ctl_as_nobody(&server, "--regid=65534 --clear-groups", "show status");
    assert!(!ok && out.contains("Permission denied"), "{out}");
    must(&format!("chmod 0666 {}", server.ctl.display()));
    let (ok, out) = ctl_as_nobody(&server, "--regid=65534 --clear-groups", "show status");
    assert!(!ok && out.contains("not allowed"), "{out}");
}
