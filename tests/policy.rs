//! Per-user and per-group configuration files (ocserv's format) reach the
//! real openconnect client: routes, excluded routes, DNS, split DNS, the
//! default domain and the MTU appear in the environment it hands to its
//! script. A broken file refuses that user only.

mod common;

use std::fs;
use std::time::Duration;

use common::raw::{capture_ip, header, headers, login_cookie, RawTls};
use common::*;

#[test]
fn per_user_and_group_files_reach_the_client_and_a_broken_one_refuses_only_its_user() {
    let _g = serial();
    let mut net = Net::new("pol", 4);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::create_dir_all(dir.join("groups")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "# alice: split tunnel\nroute = 10.50.0.0/16\nroute = 172.16.0.0/255.240.0.0\nno-route = 10.50.99.0/24\n\
         dns = 10.50.0.53\nsplit-dns = corp.example\ndefault-domain = corp.example\nmtu = 1300\ndpd = 45\n",
    )
    .unwrap();
    fs::write(
        dir.join("groups/staff"),
        "route = 10.60.0.0/16\nsplit-dns = staff.example\n",
    )
    .unwrap();
    fs::write(dir.join("default-user"), "split-dns = default.example\n").unwrap();
    fs::write(
        dir.join("users/mallory"),
        "route = 10.70.0.0/16\nfrobnicate = yes\n",
    )
    .unwrap();
    let passwd = dir.join("ocpasswd");
    add_user_in(&passwd, "carol", "sea-salt", "staff,other");
    add_user(&passwd, "mallory", "hunter2");
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\nconfig_per_group = \"groups\"\n\
                           default_user_config = \"default-user\"\n"
                .into(),
            ..Default::default()
        },
    );

    // alice: her own file.
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = alice.wait_connected();
    let env = alice.env("connect").unwrap();
    let var = |k: &str| Client::var(&env, k).unwrap_or_else(|| panic!("{k} missing:\n{env}"));
    // openconnect lists them in its own order.
    let nets = |kind: &str| {
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
    };
    assert_eq!(nets("INC"), ["10.50.0.0/16", "172.16.0.0/12"]);
    assert_eq!(nets("EXC"), ["10.50.99.0/24"]);
    assert_eq!(var("INTERNAL_IP4_DNS"), "10.50.0.53");
    assert_eq!(var("CISCO_SPLIT_DNS"), "corp.example");
    assert_eq!(var("CISCO_DEF_DOMAIN"), "corp.example");
    let alice_mtu: u32 = var("INTERNAL_IP4_MTU").parse().unwrap();
    assert!(
        alice_mtu <= 1300,
        "alice's file caps the MTU at 1300, got {alice_mtu}"
    );

    // bob: no file of his own, so the default user file; global DNS.
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    let env = bob.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "CISCO_SPLIT_DNS").as_deref(),
        Some("default.example"),
        "{env}"
    );
    assert_eq!(
        Client::var(&env, "CISCO_SPLIT_INC"),
        None,
        "full tunnel: {env}"
    );
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_DNS").as_deref(),
        Some("192.168.100.1"),
        "{env}"
    );
    let bob_mtu: u32 = Client::var(&env, "INTERNAL_IP4_MTU")
        .unwrap()
        .parse()
        .unwrap();
    assert!(bob_mtu > alice_mtu, "bob {bob_mtu} vs alice {alice_mtu}");

    // carol: her first group's file, with the default user file on top.
    let carol = start_client(&mut net, &server, 3, "carol", &["sea-salt"]);
    carol.wait_connected();
    let env = carol.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "CISCO_SPLIT_INC_0_ADDR").as_deref(),
        Some("10.60.0.0"),
        "{env}"
    );
    let mut dns: Vec<String> = Client::var(&env, "CISCO_SPLIT_DNS")
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    dns.sort();
    assert_eq!(dns, ["default.example", "staff.example"], "{env}");

    // mallory: a broken file refuses her login, with the reason logged.
    let mallory = start_client(&mut net, &server, 4, "mallory", &["hunter2"]);
    mallory.wait_exit(Duration::from_secs(20));
    assert!(mallory.env("connect").is_none());
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reason=\"user configuration"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        line.contains("mallory") && line.contains("frobnicate") && line.contains("line 2"),
        "{line}"
    );

    // Everyone else is still served.
    let s = net.server_ns.clone();
    assert_eq!(
        ping_rtts(&net, &s, &addr, 2, "0.2").len(),
        2,
        "server → alice"
    );
    assert!(alive(server.pid));
}

/// Per-user `restrict-user-to-routes`: packets to anything outside the
/// user's routes are dropped in the server and counted; another user
/// without the restriction reaches the same address.
#[test]
fn restrict_user_to_routes_drops_traffic_to_other_destinations() {
    let _g = serial();
    let mut net = Net::new("restr", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "route = 10.200.0.0/16\nrestrict-user-to-routes = true\n",
    )
    .unwrap();
    let s = net.server_ns.clone();
    must(&format!(
        "ip -n {s} addr add 10.200.0.1/32 dev lo && ip -n {s} addr add 10.201.0.1/32 dev lo"
    ));
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    // Both clients route both networks into the tunnel; only the server decides.
    for c in [&alice, &bob] {
        must(&format!(
            "ip -n {} route add 10.200.0.0/16 dev {} && ip -n {} route add 10.201.0.0/16 dev {}",
            c.ns, c.ifname, c.ns, c.ifname
        ));
    }
    let (c1, c2) = (net.client_ns[0].clone(), net.client_ns[1].clone());
    assert_eq!(
        ping_rtts(&net, &c1, "10.200.0.1", 3, "0.2").len(),
        3,
        "alice → her route"
    );
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 2, "0.2").len(),
        2,
        "alice → the server's address"
    );
    assert_eq!(
        ping_rtts(&net, &c1, "10.201.0.1", 3, "0.2").len(),
        0,
        "alice → outside her routes"
    );
    assert_eq!(
        ping_rtts(&net, &c2, "10.201.0.1", 3, "0.2").len(),
        3,
        "bob is not restricted"
    );
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));
    server.wait_log("session ended", Duration::from_secs(5));
    let log = server.log_text();
    let up = log
        .lines()
        .find(|l| l.contains("tunnel up") && l.contains("alice"))
        .unwrap();
    assert!(up.contains("restricted=true"), "{up}");
    let end = log
        .lines()
        .find(|l| l.contains("session ended") && l.contains("alice"))
        .unwrap();
    assert!(
        end.contains("restricted=3"),
        "three pings dropped and counted: {end}"
    );
}

/// `rx-data-per-sec` / `tx-data-per-sec` of 100K: iperf3 through the tunnel
/// runs near that rate both ways, while an unlimited user runs far faster.
#[test]
fn rate_limit_caps_iperf3_near_the_configured_rate() {
    let _g = serial();
    let mut net = Net::new("rate", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "rx-data-per-sec = 100K\ntx-data-per-sec = 100K\n",
    )
    .unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    let (s, c1, c2) = (
        net.server_ns.clone(),
        net.client_ns[0].clone(),
        net.client_ns[1].clone(),
    );
    // 3 s at 100 KiB/s, plus one burst and iperf3's control traffic.
    let cap = 3 * 100 * 1024;
    for reverse in [false, true] {
        let got = iperf_bytes(&net, &c1, &s, &server.tunnel_ip, reverse);
        assert!(
            got <= cap * 3 / 2,
            "alice moved {got} bytes in 3 s (reverse {reverse}), limit ~{cap}"
        );
        assert!(
            got >= cap / 5,
            "alice moved only {got} bytes in 3 s (reverse {reverse})"
        );
    }
    let free = iperf_bytes(&net, &c2, &s, &server.tunnel_ip, false);
    assert!(free > 10 * cap, "bob, unlimited, moved only {free} bytes");
    let up = server.log_text();
    let up = up
        .lines()
        .find(|l| l.contains("tunnel up") && l.contains("alice"))
        .unwrap();
    assert!(
        up.contains("rx_rate=102400") && up.contains("tx_rate=102400"),
        "{up}"
    );
}

/// `select_group`: the login form lists the groups; a user in several
/// picks one with `--authgroup`, its file applies to that login only, and
/// a group the user is not in is refused.
#[test]
fn a_user_in_several_groups_picks_one_for_that_login_only() {
    let _g = serial();
    let mut net = Net::new("grp", 3);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("groups")).unwrap();
    fs::write(dir.join("groups/staff"), "split-dns = staff.example\n").unwrap();
    fs::write(dir.join("groups/lab"), "split-dns = lab.example\n").unwrap();
    add_user_in(&dir.join("ocpasswd"), "carol", "sea-salt", "staff,lab");
    let server = start_server(
        &mut net,
        ServerOpts {
            auth_keys: "select_group = [\"staff[Staff]\", \"lab[Laboratory]\"]\n".into(),
            extra_config: "[users]\nconfig_per_group = \"groups\"\n".into(),
            ..Default::default()
        },
    );
    let split_dns = |c: &Client| Client::var(&c.env("connect").unwrap(), "CISCO_SPLIT_DNS");
    let lab = start_client_with(
        &mut net,
        &server,
        1,
        "carol",
        &["sea-salt"],
        "--authgroup lab",
    );
    lab.wait_connected();
    assert_eq!(split_dns(&lab).as_deref(), Some("lab.example"));
    // The same user's next login picks by label; the first keeps its group.
    let staff = start_client_with(
        &mut net,
        &server,
        2,
        "carol",
        &["sea-salt"],
        "--authgroup Staff",
    );
    staff.wait_connected();
    assert_eq!(split_dns(&staff).as_deref(), Some("staff.example"));
    let log = server.log_text();
    let groups: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session created") && l.contains("carol"))
        .filter_map(|l| l.split("group=").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(groups, ["lab", "staff"], "{log}");
    // alice is in neither group.
    let alice = start_client_with(
        &mut net,
        &server,
        3,
        "alice",
        &["test123"],
        "--authgroup lab",
    );
    alice.wait_exit(Duration::from_secs(20));
    assert!(alice.env("connect").is_none());
    server.wait_log("not a member of the selected group", Duration::from_secs(5));
    assert!(alive(lab.pid) && alive(staff.pid));
}

/// `explicit-ipv4`: the user always gets that address. Its session lives
/// on the shard that owns the address, so a login that lands on the other
/// shard moves there; a second device cannot take the address in use.
#[test]
fn explicit_ipv4_gives_the_same_address_from_either_shard() {
    let _g = serial();
    let mut net = Net::new("expl", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    // .77 belongs to shard 1 of 2, .80 to shard 0.
    fs::write(dir.join("users/alice"), "explicit-ipv4 = 192.168.100.77\n").unwrap();
    fs::write(dir.join("users/bob"), "explicit-ipv4 = 192.168.100.80\n").unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let s = net.server_ns.clone();
    // Logins land on either shard; repeat until one had to move.
    let mut ended = 0;
    for round in 1..=12 {
        for (user, pw, want) in [
            ("alice", "test123", "192.168.100.77"),
            ("bob", "wonderland", "192.168.100.80"),
        ] {
            let c = start_client(&mut net, &server, 1, user, &[pw]);
            assert_eq!(c.wait_connected(), want, "round {round}");
            assert_eq!(
                ping_rtts(&net, &s, want, 2, "0.2").len(),
                2,
                "server → {user} at {want}"
            );
            c.signal("INT");
            c.wait_exit(Duration::from_secs(10));
            ended += 1;
            wait_for(Duration::from_secs(5), "session end", || {
                (server.count_log("session ended") == ended).then_some(())
            });
        }
        if server.count_log("login moved here for its explicit-ipv4 address") > 0 {
            break;
        }
    }
    assert!(
        server.count_log("login moved here for its explicit-ipv4 address") > 0,
        "no login landed on the other shard"
    );
    // The address is alice's; a second device of hers cannot have it too.
    let first = start_client(&mut net, &server, 1, "alice", &["test123"]);
    first.wait_connected();
    let second = start_client(&mut net, &server, 2, "alice", &["test123"]);
    second.wait_exit(Duration::from_secs(20));
    assert!(second.env("connect").is_none());
    server.wait_log("explicit-ipv4 address is in use", Duration::from_secs(5));
}

/// `ipv4-network` / `ipv4-netmask` / `ipv6-network` in user files: the
/// user's addresses come from a pool of its own, routed into the TUN
/// device; one that overlaps another pool, or lacks its mask, refuses only
/// that user.
#[test]
fn a_users_own_network_gives_its_addresses() {
    let _g = serial();
    let mut net = Net::new("upool", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "ipv4-network = 10.60.0.0\nipv4-netmask = 255.255.255.0\nipv6-network = fd00:60::/64\n",
    )
    .unwrap();
    fs::write(dir.join("users/bob"), "ipv4-network = 10.60.0.0/24\n").unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            network_keys: "ipv6_network = \"fd00:100::/64\"\n".into(),
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let s = net.server_ns.clone();
    let pool: ipnet::Ipv4Net = "10.60.0.0/24".parse().unwrap();
    let mut addrs = Vec::new();
    for (i, (user, pw)) in [("alice", "test123"), ("bob", "wonderland")]
        .into_iter()
        .enumerate()
    {
        let c = start_client(&mut net, &server, i + 1, user, &[pw]);
        let a: std::net::Ipv4Addr = c.wait_connected().parse().unwrap();
        assert!(pool.contains(&a) && a.octets()[3] > 1, "{user}: {a}");
        let env = c.env("connect").unwrap();
        assert_eq!(
            Client::var(&env, "INTERNAL_IP4_NETMASK").as_deref(),
            Some("255.255.255.0")
        );
        // The server's own address sits outside the user's network: the
        // test's client script routes only the user's.
        must(&format!(
            "ip -n {} route add {}/32 dev {}",
            c.ns, server.tunnel_ip, c.ifname
        ));
        if user == "alice" {
            let o = a.octets();
            let a6 = format!(
                "fd00:60::{:x}:{:x}",
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([o[2], o[3]])
            );
            assert_eq!(
                Client::var(&env, "INTERNAL_IP6_ADDRESS").as_deref(),
                Some(a6.as_str()),
                "{env}"
            );
            must(&format!(
                "ip -n {} -6 route add fd00:100::/64 dev oc1",
                c.ns
            ));
            let o = net.exec(&s, &format!("ping -6 -n -c 3 -i 0.2 -W 2 {a6}"));
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).matches("time=").count(),
                3,
                "server → alice over her own IPv6 network"
            );
        }
        addrs.push((c, a));
    }
    assert_ne!(addrs[0].1, addrs[1].1);
    let route = must(&format!("ip -n {s} route show 10.60.0.0/24"));
    assert!(route.contains("dev vpns"), "{route:?}");
    for (c, a) in &addrs {
        assert_eq!(
            ping_rtts(&net, &s, &a.to_string(), 3, "0.2").len(),
            3,
            "server → {a}"
        );
        assert_eq!(
            ping_rtts(&net, &c.ns, &server.tunnel_ip, 3, "0.2").len(),
            3,
            "{a} → server"
        );
    }
    let users = server.ctl_json("show users");
    let mut shown: Vec<String> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["IPv4"].as_str().unwrap().to_owned())
        .collect();
    shown.sort();
    let mut want: Vec<String> = addrs.iter().map(|(_, a)| a.to_string()).collect();
    want.sort();
    assert_eq!(shown, want);

    // bob's file changes: a network overlapping the server's, then one
    // without its mask. Each refuses bob, with the reason logged.
    let (bob, _) = addrs.pop().unwrap();
    bob.signal("INT");
    bob.wait_exit(Duration::from_secs(10));
    for (file, why) in [
        (
            "ipv4-network = 192.168.100.128/25\n",
            "overlaps the pool 192.168.100.0/24",
        ),
        ("ipv4-network = 10.61.0.0\n", "without ipv4-netmask"),
    ] {
        fs::write(dir.join("users/bob"), file).unwrap();
        let again = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
        again.wait_exit(Duration::from_secs(20));
        assert!(again.env("connect").is_none());
        server.wait_log(why, Duration::from_secs(5));
    }
    assert_eq!(
        ping_rtts(&net, &s, &addrs[0].1.to_string(), 2, "0.2").len(),
        2
    );
}

/// expose-iroutes: each client is told the other users' iroutes as
/// routes, never its own; append-routes: a user's routes add to the
/// server's. A full tunnel stays one.
#[test]
fn exposed_iroutes_and_appended_routes_reach_the_client() {
    let _g = serial();
    let mut net = Net::new("xiro", 1);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(dir.join("users/alice"), "iroute = 10.250.0.0/24\n").unwrap();
    fs::write(
        dir.join("users/bob"),
        "iroute = 10.251.0.0/24\nroute = 10.20.0.0/16\n",
    )
    .unwrap();
    fs::write(dir.join("users/carol"), "route = default\n").unwrap();
    let _server = start_server(
        &mut net,
        ServerOpts {
            network_keys:
                "routes = [\"10.10.0.0/16\"]\nexpose_iroutes = true\nappend_routes = true\n".into(),
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    add_user(&net.dir.join("ocpasswd"), "carol", "carolpw");
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    let routes = |user: &str, pw: &str| {
        let cookie = login_cookie(&ns, to, user, pw);
        let mut c = RawTls::connect(&ns, to).unwrap();
        let r = c.connect_tunnel(&cookie).expect("CONNECT answer");
        assert_eq!(r.status, 200, "{}", r.head);
        let mut v: Vec<String> = headers(&r, "X-CSTP-Split-Include")
            .into_iter()
            .map(str::to_owned)
            .collect();
        v.sort();
        (c, v)
    };
    let (_a, alice) = routes("alice", "test123");
    assert_eq!(
        alice,
        ["10.10.0.0/255.255.0.0", "10.251.0.0/255.255.255.0"],
        "the server's routes and bob's iroute"
    );
    let (_b, bob) = routes("bob", "wonderland");
    assert_eq!(
        bob,
        [
            "10.10.0.0/255.255.0.0",
            "10.20.0.0/255.255.0.0",
            "10.250.0.0/255.255.255.0"
        ],
        "his route, the server's, alice's iroute"
    );
    let (_c, carol) = routes("carol", "carolpw");
    assert!(carol.is_empty(), "a full tunnel: {carol:?}");
}

/// `iroute`: a network behind a client. The server routes it into the
/// tunnel while the session lives, the steering program sends it to the
/// session's shard (here not the one its addresses would pick), and no
/// second session may claim it.
#[test]
fn iroute_reaches_the_network_behind_a_client_while_its_session_lives() {
    let _g = serial();
    let mut net = Net::new("irt", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    // alice's session lives on shard 0 (.80 is even); 10.250.0.1 is odd,
    // so only the iroute map sends its packets to shard 0.
    fs::write(
        dir.join("users/alice"),
        "explicit-ipv4 = 192.168.100.80\niroute = 10.250.0.0/24\n",
    )
    .unwrap();
    fs::write(dir.join("users/bob"), "iroute = 10.250.0.0/255.255.255.0\n").unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let (s, c1) = (net.server_ns.clone(), net.client_ns[0].clone());
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    assert_eq!(alice.wait_connected(), "192.168.100.80");
    must(&format!("ip -n {c1} addr add 10.250.0.1/32 dev lo"));
    let route = must(&format!("ip -n {s} route show 10.250.0.0/24"));
    assert!(
        route.contains("dev vpns"),
        "no kernel route for the iroute: {route:?}"
    );
    assert_eq!(
        ping_rtts(&net, &s, "10.250.0.1", 3, "0.2").len(),
        3,
        "server → the network behind alice"
    );

    // bob wants the same network: refused while alice has it.
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_exit(Duration::from_secs(20));
    assert!(bob.env("connect").is_none());
    server.wait_log("iroute in use by another session", Duration::from_secs(5));

    // alice logs out: the route goes with her session.
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));
    server.wait_log("session ended", Duration::from_secs(5));
    let route = must(&format!("ip -n {s} route show 10.250.0.0/24"));
    assert!(route.trim().is_empty(), "route left behind: {route:?}");
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
}

/// Keys ocserv's per-user files have (and the main configuration's
/// defaults for them), as the CONNECT answer and the server apply them.
#[test]
fn per_user_keys_and_their_global_defaults_shape_the_connect_answer() {
    let _g = serial();
    let mut net = Net::new("ukeys", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "no-udp = true\ntunnel-all-dns = true\nnbns = 10.9.9.9\nmobile-dpd = 777\ndeny-roaming = true\nroute = 10.200.0.0/16\n",
    )
    .unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            network_keys: "no_routes = [\"10.200.9.0/24\"]\nsplit_dns = [\"corp.example\"]\ndefault_domain = \"corp.example\"\nclient_bypass_protocol = true\nroutes = [\"10.0.0.0/8\"]\n".into(),
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let (ns1, ns2) = (net.client_ns[0].clone(), net.client_ns[1].clone());
    let to1: std::net::SocketAddr = format!("{}:443", net.server_ip(1)).parse().unwrap();
    let to2: std::net::SocketAddr = format!("{}:443", net.server_ip(2)).parse().unwrap();
    let dtls = "X-DTLS-CipherSuite: PSK-NEGOTIATE\r\nX-DTLS-Master-Secret: 00\r\nX-AnyConnect-Identifier-Platform: android\r\n";

    // bob: the global defaults only, DTLS offered, no mobile DPD.
    let cookie = login_cookie(&ns2, to2, "bob", "wonderland");
    let mut c = RawTls::connect(&ns2, to2).unwrap();
    let r = c.connect_tunnel_with(&cookie, dtls).expect("CONNECT reply");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        headers(&r, "X-CSTP-Split-Exclude"),
        ["10.200.9.0/255.255.255.0"],
        "{}",
        r.head
    );
    assert_eq!(headers(&r, "X-CSTP-Split-DNS"), ["corp.example"]);
    assert_eq!(header(&r, "X-CSTP-Default-Domain"), Some("corp.example"));
    assert_eq!(header(&r, "X-CSTP-Client-Bypass-Protocol"), Some("true"));
    assert_eq!(header(&r, "X-CSTP-Tunnel-All-DNS"), Some("false"));
    assert!(header(&r, "X-DTLS-App-ID").is_some(), "{}", r.head);
    assert_eq!(header(&r, "X-CSTP-DPD"), Some("90"));

    // alice: her file on top of them.
    let cookie = login_cookie(&ns1, to1, "alice", "test123");
    // deny-roaming: her cookie from another address is refused...
    let mut elsewhere = RawTls::connect(&ns2, to2).unwrap();
    assert_eq!(
        elsewhere.connect_tunnel(&cookie).map(|r| r.status),
        Some(401)
    );
    // ...and works from hers.
    let mut c = RawTls::connect(&ns1, to1).unwrap();
    let r = c.connect_tunnel_with(&cookie, dtls).expect("CONNECT reply");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        header(&r, "X-CSTP-Tunnel-All-DNS"),
        Some("true"),
        "{}",
        r.head
    );
    assert_eq!(headers(&r, "X-CSTP-NBNS"), ["10.9.9.9"]);
    assert!(
        header(&r, "X-DTLS-App-ID").is_none(),
        "no-udp, and DTLS offered:\n{}",
        r.head
    );
    assert_eq!(
        header(&r, "X-CSTP-DPD"),
        Some("777"),
        "mobile-dpd for an Android client"
    );
    assert_eq!(
        headers(&r, "X-CSTP-Split-Exclude"),
        ["10.200.9.0/255.255.255.0"]
    );
    server.wait_log("deny-roaming", Duration::from_secs(2));
}

/// restrict-user-to-ports in the server's data path: an allow list for one
/// user, a deny list for another, ocserv's syntax.
#[test]
fn restrict_user_to_ports_allows_or_denies_protocols_and_ports() {
    let _g = serial();
    let mut net = Net::new("ports", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "restrict-user-to-ports = \"icmp(), tcp(22)\"\n",
    )
    .unwrap();
    fs::write(
        dir.join("users/bob"),
        "restrict-user-to-ports = \"!(icmp())\"\n",
    )
    .unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    let s = net.server_ns.clone();
    let _ = net.exec(&s, &format!("iperf3 -s -D -B {}", server.tunnel_ip));
    std::thread::sleep(Duration::from_millis(500));
    let tcp = |ns: &str| {
        net.exec(
            ns,
            &format!("timeout 3 bash -c '</dev/tcp/{}/5201'", server.tunnel_ip),
        )
        .status
        .success()
    };
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 2, "0.2").len(),
        2,
        "alice: icmp() allowed"
    );
    assert!(!tcp(&alice.ns), "alice: tcp(5201) is not on her list");
    assert_eq!(
        ping_rtts(&net, &bob.ns, &server.tunnel_ip, 2, "0.2").len(),
        0,
        "bob: icmp denied"
    );
    assert!(tcp(&bob.ns), "bob: tcp is not denied");
    let users = server.ctl_json("show users");
    for u in users.as_array().unwrap() {
        assert!(u["restricted_packets"].as_u64().unwrap() >= 1, "{u:#}");
    }
    let _ = net.exec(&s, "pkill -f 'iperf3 -s'");
}

/// net-priority as a TOS byte: the server's packets to that user carry it,
/// on DTLS (alice) and on TLS (bob, CSTP only).
#[test]
fn net_priority_sets_the_tos_of_the_users_packets() {
    let _g = serial();
    let mut net = Net::new("netprio", 2);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(dir.join("users/alice"), "net-priority = 0x20\n").unwrap();
    fs::write(
        dir.join("users/bob"),
        "net-priority = 0x28\nno-udp = true\n",
    )
    .unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    alice.wait_dtls();
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    for (client, idx, proto, tos) in [(&alice, 1, 17u8, 0x20u8), (&bob, 2, 6, 0x28)] {
        let server_ip: std::net::Ipv4Addr = net.server_ip(idx).parse().unwrap();
        let (ns, tunnel_ip) = (client.ns.clone(), server.tunnel_ip.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let pinger = std::thread::spawn(move || {
            rx.recv().unwrap();
            sh(&format!(
                "ip netns exec {ns} ping -c 5 -i 0.2 -s 1200 {tunnel_ip}"
            ))
        });
        let got = capture_ip(
            &client.ns,
            Duration::from_secs(5),
            |ip| ip[9] == proto && ip[12..16] == server_ip.octets() && ip.len() > 1000,
            move || tx.send(()).unwrap(),
        );
        let _ = pinger.join();
        let ip = got.unwrap_or_else(|| panic!("no protocol {proto} packet from the server"));
        assert_eq!(ip[1], tos, "TOS of a protocol {proto} packet");
    }
}

/// `hostname` in a user's file: the session's host name over the client's
/// X-CSTP-Hostname, told back in the CONNECT answer (as ocserv) and shown
/// by ctl; without one, the client's own is told back.
#[test]
fn a_users_hostname_is_told_back_and_shown() {
    let _g = serial();
    let mut net = Net::new("uhost", 1);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(dir.join("users/alice"), "hostname = xxxx\n").unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    for (user, pw, told) in [
        ("alice", "test123", "xxxx"),
        ("bob", "wonderland", "laptop"),
    ] {
        let cookie = login_cookie(&ns, to, user, pw);
        let mut c = RawTls::connect(&ns, to).unwrap();
        let r = c
            .connect_tunnel_with(&cookie, "X-CSTP-Hostname: laptop\r\n")
            .expect("CONNECT answer");
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(header(&r, "X-CSTP-Hostname"), Some(told), "{}", r.head);
        let me = server.ctl_json(&format!("show user {user}"));
        assert_eq!(me[0]["Hostname"], told, "{me:#}");
    }
}

/// The per-user keys no other test reaches: idle-timeout and
/// mobile-idle-timeout (by the client's platform), session-timeout,
/// ipv4-dns/ipv6-dns, ipv4-nbns, ipv6-subnet-prefix = 128 and
/// stats-report-time, in the CONNECT answer and in ctl's view.
#[test]
fn the_remaining_per_user_keys_reach_the_connect_answer() {
    let _g = serial();
    let mut net = Net::new("ukeys", 1);
    let dir = net.dir.clone();
    fs::create_dir_all(dir.join("users")).unwrap();
    fs::write(
        dir.join("users/alice"),
        "idle-timeout = 77\nmobile-idle-timeout = 66\nsession-timeout = 600\n\
         ipv4-dns = 10.9.9.9\nipv6-dns = fd00:9::9\nipv4-nbns = 10.9.9.8\n\
         ipv6-subnet-prefix = 128\nstats-report-time = 60\n",
    )
    .unwrap();
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[users]\nconfig_per_user = \"users\"\n".into(),
            ..Default::default()
        },
    );
    let (ns, to) = (
        net.client_ns[0].clone(),
        format!("{}:443", net.server_ip(1)).parse().unwrap(),
    );
    for (extra, idle) in [
        ("", "77"),
        ("X-AnyConnect-Identifier-Platform: android\r\n", "66"),
    ] {
        let cookie = login_cookie(&ns, to, "alice", "test123");
        let mut c = RawTls::connect(&ns, to).unwrap();
        let r = c
            .connect_tunnel_with(&cookie, extra)
            .expect("CONNECT answer");
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(header(&r, "X-CSTP-Idle-Timeout"), Some(idle), "{}", r.head);
        assert_eq!(
            header(&r, "X-CSTP-Session-Timeout"),
            Some("600"),
            "{}",
            r.head
        );
        // An IPv4-only client is told the IPv4 server only.
        assert_eq!(headers(&r, "X-CSTP-DNS"), ["10.9.9.9"], "{}", r.head);
        assert_eq!(headers(&r, "X-CSTP-NBNS"), ["10.9.9.8"], "{}", r.head);
    }
    let me = server.ctl_json("show user alice");
    let dns = me[0]["DNS"].to_string();
    assert!(
        dns.contains("10.9.9.9") && dns.contains("fd00:9::9"),
        "{me:#}"
    );
}
