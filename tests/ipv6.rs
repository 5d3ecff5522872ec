//! IPv6 through the tunnel with the real openconnect client: the address
//! from `ipv6_network` (X-CSTP-Address-IP6), IPv6 routes and DNS in the
//! client's environment, ping both ways and iperf3 both ways, over DTLS
//! and over CSTP, next to IPv4 in the same session.

mod common;

use common::*;

/// The server's IPv6 tunnel address for the harness's IPv4 pool.
const SERVER6: &str = "fd00:100::c0a8:6401";

fn v6_server(net: &mut Net, dtls: Dtls) -> Server {
    start_server(
        net,
        ServerOpts {
            dtls,
            network_keys: "ipv6_network = \"fd00:100::/64\"\ndns = [\"192.168.100.1\", \"fd00:100::53\"]\nroutes = [\"192.168.100.0/24\", \"fd00:100::/64\", \"fd00:200::/48\"]\n".into(),
            ..Default::default()
        },
    )
}

/// `v6_server`'s pool without its routes and DNS, with per-user files.
fn v6_server_with_users(net: &mut Net, users: &[(&str, &str)]) -> Server {
    std::fs::create_dir_all(net.dir.join("users")).unwrap();
    for (user, text) in users {
        std::fs::write(net.dir.join("users").join(user), text).unwrap();
    }
    start_server(
        net,
        ServerOpts {
            network_keys: "ipv6_network = \"fd00:100::/64\"\n".into(),
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    )
}

fn ping6(net: &Net, ns: &str, dst: &str) -> usize {
    let o = net.exec(ns, &format!("ping -6 -n -c 3 -i 0.2 -W 2 {dst}"));
    String::from_utf8_lossy(&o.stdout).matches("time=").count()
}

fn check_v6_session(dtls: Dtls, tag: &str) {
    let _g = serial();
    let mut net = Net::new(tag, 1);
    let server = v6_server(&mut net, dtls);
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr4 = client.wait_connected();
    let env = client.env("connect").unwrap();
    let var = |k: &str| Client::var(&env, k).unwrap_or_else(|| panic!("{k} missing:\n{env}"));
    // The IPv6 address ends in the IPv4 lease's 32 bits.
    let a4: std::net::Ipv4Addr = addr4.parse().unwrap();
    let o = a4.octets();
    let addr6 = format!(
        "fd00:100::{:x}:{:x}",
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]])
    );
    assert_eq!(var("INTERNAL_IP6_ADDRESS"), addr6);
    assert!(var("INTERNAL_IP4_DNS").contains("192.168.100.1"));
    assert!(env.contains("fd00:100::53"), "IPv6 DNS missing:\n{env}");
    let n: usize = var("CISCO_IPV6_SPLIT_INC").parse().unwrap();
    let mut inc: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}/{}",
                var(&format!("CISCO_IPV6_SPLIT_INC_{i}_ADDR")),
                var(&format!("CISCO_IPV6_SPLIT_INC_{i}_MASKLEN"))
            )
        })
        .collect();
    inc.sort();
    assert_eq!(inc, ["fd00:100::/64", "fd00:200::/48"]);

    let (s, c) = (net.server_ns.clone(), net.client_ns[0].clone());
    if dtls != Dtls::Off {
        server.wait_log("DTLS connected", std::time::Duration::from_secs(20));
    }
    assert_eq!(ping6(&net, &c, SERVER6), 3, "client → server over IPv6");
    assert_eq!(ping6(&net, &s, &addr6), 3, "server → client over IPv6");
    assert_eq!(
        ping_rtts(&net, &c, &server.tunnel_ip, 2, "0.2").len(),
        2,
        "IPv4 still works"
    );
    for reverse in [false, true] {
        let bytes = iperf_bytes(&net, &c, &s, SERVER6, reverse);
        eprintln!("iperf3 over IPv6, reverse {reverse}: {bytes} bytes in 3 s");
        assert!(
            bytes > 1_000_000,
            "iperf3 over IPv6 (reverse {reverse}) moved only {bytes} bytes"
        );
    }
    assert!(alive(server.pid));
}

#[test]
fn ipv6_over_cstp() {
    check_v6_session(Dtls::Off, "v6cstp");
}

#[test]
fn ipv6_over_dtls() {
    check_v6_session(Dtls::Psk, "v6dtls");
}

/// `explicit-ipv6` in a per-user file fixes the IPv6 address and with it
/// the IPv4 lease (its low 32 bits); one of another form is refused with
/// the reason logged.
#[test]
fn explicit_ipv6_fixes_both_addresses_and_a_foreign_form_is_refused() {
    let _g = serial();
    let mut net = Net::new("x6", 2);
    let server = v6_server_with_users(
        &mut net,
        &[
            ("alice", "explicit-ipv6 = fd00:100::c0a8:6442\n"),
            ("bob", "explicit-ipv6 = fd00:100::1:c0a8:6443\n"),
        ],
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    assert_eq!(alice.wait_connected(), "192.168.100.66");
    let env = alice.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "INTERNAL_IP6_ADDRESS").as_deref(),
        Some("fd00:100::c0a8:6442"),
        "{env}"
    );
    assert_eq!(ping6(&net, &net.client_ns[0], SERVER6), 3);
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_exit(std::time::Duration::from_secs(20));
    assert!(bob.env("connect").is_none());
    server.wait_log(
        "is not of the form this server gives",
        std::time::Duration::from_secs(5),
    );
}

/// An IPv6 `iroute`: routed into the TUN device and steered by the IPv6
/// map of the steering program to the client's shard while its session
/// lives; replies from that network pass the source check.
#[test]
fn ipv6_iroute_reaches_the_network_behind_a_client() {
    let _g = serial();
    let mut net = Net::new("irt6", 1);
    // alice on shard 0 (.80 is even); fd00:300::1 ends in an odd word, so
    // only the IPv6 iroute map sends its packets to shard 0.
    let alice_file =
        "explicit-ipv4 = 192.168.100.80\niroute = fd00:300::/64\niroute = 10.250.0.0/24\n";
    let server = v6_server_with_users(&mut net, &[("alice", alice_file)]);
    let (s, c1) = (net.server_ns.clone(), net.client_ns[0].clone());
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    assert_eq!(alice.wait_connected(), "192.168.100.80");
    must(&format!(
        "ip -n {c1} -6 addr add fd00:300::1/128 dev lo nodad"
    ));
    let route = must(&format!("ip -n {s} -6 route show fd00:300::/64"));
    assert!(
        route.contains("dev vpns"),
        "no kernel route for the IPv6 iroute: {route:?}"
    );
    assert_eq!(
        ping6(&net, &s, "fd00:300::1"),
        3,
        "server → the IPv6 network behind alice"
    );
    let me = server.ctl_json("show user alice");
    assert_eq!(
        me[0]["iRoutes"],
        serde_json::json!(["fd00:300::/64", "10.250.0.0/255.255.255.0"]),
        "{me:#}"
    );

    alice.signal("INT");
    alice.wait_exit(std::time::Duration::from_secs(10));
    server.wait_log("session ended", std::time::Duration::from_secs(5));
    let route = must(&format!("ip -n {s} -6 route show fd00:300::/64"));
    assert!(route.trim().is_empty(), "route left behind: {route:?}");
}

/// The legacy IPv6 form of Cisco clients without full IPv6 capability: a
/// second `X-CSTP-Address` with the IPv6 address and `X-CSTP-Netmask`
/// `net/len`, no IPv6 routes or DNS. No real Cisco client runs here, so
/// the CONNECT is sent by `openssl s_client` with the cookie openconnect
/// got, and the answer's head is read as it comes.
#[test]
fn cisco_clients_without_full_ipv6_capability_get_the_legacy_form() {
    let _g = serial();
    let mut net = Net::new("leg6", 1);
    let server = v6_server(&mut net, Dtls::Off);
    let cookie = authenticate(&net, &server, 1, "alice", "test123");
    // openconnect prints the cookies it would send: `openconnect_strapkey=...; webvpn=...`.
    let cookie = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("webvpn="))
        .unwrap_or(&cookie)
        .to_owned();
    let req = net.dir.join("connect.txt");
    std::fs::write(
        &req,
        format!(
            "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {ip}\r\nUser-Agent: Cisco AnyConnect VPN Agent for Windows 4.10.07073\r\n\
             Cookie: webvpn={cookie}\r\nX-CSTP-Version: 1\r\nX-CSTP-Hostname: cisco\r\nX-CSTP-Base-MTU: 1500\r\n\
             X-CSTP-Address-Type: IPv6,IPv4\r\n\r\n",
            ip = net.server_ip(1)
        ),
    )
    .unwrap();
    let o = net.exec(
        &net.client_ns[0],
        &format!(
            "sh -c 'timeout 3 openssl s_client -quiet -connect {}:443 < {} 2>/dev/null'",
            net.server_ip(1),
            req.display()
        ),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let head = out.split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200 CONNECTED"), "{head}");
    let values = |name: &str| -> Vec<&str> {
        head.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
            .collect()
    };
    let addrs = values("X-CSTP-Address");
    assert_eq!(addrs.len(), 2, "IPv4 and the legacy IPv6 address: {head}");
    assert!(addrs[1].starts_with("fd00:100::c0a8:64"), "{head}");
    assert_eq!(
        values("X-CSTP-Netmask"),
        ["255.255.255.0", "fd00:100::/64"],
        "{head}"
    );
    assert!(
        values("X-CSTP-Address-IP6").is_empty() && values("X-CSTP-Split-Include-IP6").is_empty(),
        "{head}"
    );
    assert!(
        !values("X-CSTP-DNS").contains(&"fd00:100::53"),
        "no IPv6 DNS in the legacy form: {head}"
    );
}

/// `restrict-user-to-routes` covers IPv6 as ocserv's firewall rules do: a
/// user whose routes are IPv4 only reaches no IPv6 destination but the
/// server and its DNS servers.
#[test]
fn a_restricted_user_reaches_no_ipv6_outside_its_routes() {
    let _g = serial();
    let mut net = Net::new("rest6", 2);
    let s = net.server_ns.clone();
    must(&format!(
        "ip -n {s} -6 addr add fd00:beef::1/128 dev lo nodad"
    ));
    let server = v6_server_with_users(
        &mut net,
        &[(
            "alice",
            "route = 10.200.0.0/16\nrestrict-user-to-routes = true\n",
        )],
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    // Both send fd00:beef::/64 into the tunnel; only the server decides.
    for c in [&alice, &bob] {
        must(&format!(
            "ip -n {} -6 route add fd00:beef::/64 dev {}",
            c.ns, c.ifname
        ));
    }
    assert_eq!(
        ping6(&net, &alice.ns, SERVER6),
        3,
        "alice → the server's IPv6 address"
    );
    assert_eq!(
        ping6(&net, &alice.ns, "fd00:beef::1"),
        0,
        "alice → IPv6 outside her routes"
    );
    assert_eq!(
        ping6(&net, &bob.ns, "fd00:beef::1"),
        3,
        "bob is not restricted"
    );
    let users = server.ctl_json("show users");
    let a = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["Username"] == "alice")
        .unwrap();
    assert!(a["restricted_packets"].as_u64().unwrap() >= 3, "{a:#}");
}
