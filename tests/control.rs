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
    (stats["tx"]["bytes"].as_u64().unwrap(), stats["rx"]["bytes"].as_u64().unwrap())
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
    let server = start_server(&mut net, ServerOpts { dtls: Dtls::Psk, ..Default::default() });
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
    let o = net.exec(&c1, &format!("timeout 20 iperf3 -c {} -t 2 -R -b 100M", server.tunnel_ip));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    let users = server.ctl_json("show users");
    let list = users.as_array().expect("a list of sessions");
    assert_eq!(list.len(), 2, "{users:#}");
    let a = list.iter().find(|u| u["Username"] == "alice").expect("alice listed");
    assert_eq!(a["State"], "connected");
    assert_eq!(a["IPv4"], alice.wait_connected().as_str(), "{a:#}");
    assert!(a["Remote IP"].as_str().unwrap().starts_with("10.91.1."), "{a:#}");
    assert!(a["User-Agent"].as_str().unwrap().contains("Open AnyConnect"), "{a:#}");
    let (tun_tx, tun_rx) = tun_bytes(&net, &alice);
    let (rx, tx) = (a["raw_rx"].as_u64().unwrap(), a["raw_tx"].as_u64().unwrap());
    assert!(near(rx, tun_tx), "server counted {rx} bytes from alice, her TUN sent {tun_tx}");
    assert!(near(tx, tun_rx), "server counted {tx} bytes to alice, her TUN received {tun_rx}");
    assert_eq!(a["RX"].as_str().unwrap(), rx.to_string(), "occtl's RX is the byte count as a string");

    let one = server.ctl_json(&format!("show id {}", a["ID"]));
    assert_eq!(one[0]["Username"], "alice");
    let status = server.ctl_json("show status");
    assert_eq!(status["Active sessions"], 2, "{status:#}");
    assert!(status["raw_rx"].as_u64().unwrap() >= rx);

    // The table form, for people.
    let table = String::from_utf8(server.ctl("show users").stdout).unwrap();
    assert!(table.lines().count() == 3 && table.contains("alice") && table.contains("bob"), "{table}");

    let out = server.ctl_json("disconnect user alice");
    assert_eq!(out["disconnected"], 1);
    alice.wait_exit(Duration::from_secs(20));
    let users = server.ctl_json("show sessions");
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["Username"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob"], "alice's session and cookie are gone");
    assert_eq!(ping_rtts(&net, &net.client_ns[1], &server.tunnel_ip, 2, "0.2").len(), 2, "bob never noticed");

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
        ServerOpts { extra_config: "[security]\nmax_ban_score = 20\nban_time = 600\n".into(), ..Default::default() },
    );
    // Two wrong passwords reach the score; the third login is refused at accept.
    let c = start_client(&mut net, &server, 1, "alice", &["wrong", "wrong", "wrong"]);
    c.wait_exit(Duration::from_secs(30));
    server.wait_log("address banned", Duration::from_secs(5));
    let bans = server.ctl_json("show ip bans");
    let ip = "10.91.1.2";
    assert!(bans.as_array().unwrap().iter().any(|b| b["IP"] == ip), "{bans:#}");
    assert_eq!(server.ctl_json(&format!("unban ip {ip}"))["unbanned"], true);
    assert_eq!(server.ctl_json("show ip bans"), serde_json::json!([]));
    let ok = start_client(&mut net, &server, 1, "alice", &["test123"]);
    ok.wait_connected();
}
