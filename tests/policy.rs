//! Per-user and per-group configuration files (ocserv's format) reach the
//! real openconnect client: routes, excluded routes, DNS, split DNS, the
//! default domain and the MTU appear in the environment it hands to its
//! script. A broken file refuses that user only.

mod common;

use std::fs;
use std::time::Duration;

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
    fs::write(dir.join("groups/staff"), "route = 10.60.0.0/16\nsplit-dns = staff.example\n").unwrap();
    fs::write(dir.join("default-user"), "split-dns = default.example\n").unwrap();
    fs::write(dir.join("users/mallory"), "route = 10.70.0.0/16\nfrobnicate = yes\n").unwrap();
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
            .map(|i| format!("{}/{}", var(&format!("CISCO_SPLIT_{kind}_{i}_ADDR")), var(&format!("CISCO_SPLIT_{kind}_{i}_MASKLEN"))))
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
    assert!(alice_mtu <= 1300, "alice's file caps the MTU at 1300, got {alice_mtu}");

    // bob: no file of his own, so the default user file; global DNS.
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    let env = bob.env("connect").unwrap();
    assert_eq!(Client::var(&env, "CISCO_SPLIT_DNS").as_deref(), Some("default.example"), "{env}");
    assert_eq!(Client::var(&env, "CISCO_SPLIT_INC"), None, "full tunnel: {env}");
    assert_eq!(Client::var(&env, "INTERNAL_IP4_DNS").as_deref(), Some("192.168.100.1"), "{env}");
    let bob_mtu: u32 = Client::var(&env, "INTERNAL_IP4_MTU").unwrap().parse().unwrap();
    assert!(bob_mtu > alice_mtu, "bob {bob_mtu} vs alice {alice_mtu}");

    // carol: her first group's file, with the default user file on top.
    let carol = start_client(&mut net, &server, 3, "carol", &["sea-salt"]);
    carol.wait_connected();
    let env = carol.env("connect").unwrap();
    assert_eq!(Client::var(&env, "CISCO_SPLIT_INC_0_ADDR").as_deref(), Some("10.60.0.0"), "{env}");
    let mut dns: Vec<String> = Client::var(&env, "CISCO_SPLIT_DNS").unwrap_or_default().split(',').map(str::to_owned).collect();
    dns.sort();
    assert_eq!(dns, ["default.example", "staff.example"], "{env}");

    // mallory: a broken file refuses her login, with the reason logged.
    let mallory = start_client(&mut net, &server, 4, "mallory", &["hunter2"]);
    mallory.wait_exit(Duration::from_secs(20));
    assert!(mallory.env("connect").is_none());
    let log = server.log_text();
    let line = log.lines().find(|l| l.contains("login refused: user configuration")).unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(line.contains("mallory") && line.contains("frobnicate") && line.contains("line 2"), "{line}");

    // Everyone else is still served.
    let s = net.server_ns.clone();
    assert_eq!(ping_rtts(&net, &s, &addr, 2, "0.2").len(), 2, "server → alice");
    assert!(alive(server.pid));
}
