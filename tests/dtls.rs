//! DTLS end to end: the real openconnect client negotiates DTLS with the
//! server (PSK-NEGOTIATE by default, legacy resumption when the server
//! turns PSK off) and real traffic flows over UDP. Needs root, openconnect,
//! iperf3, iproute2 (installed by `.ci/run`).

mod common;

use std::time::Duration;

use common::*;

/// openconnect's line for each DTLS handshake that completes.
const DTLS_UP: &str = "Established DTLS connection";

/// Waits for the first DTLS handshake; returns the client's log.
fn wait_dtls(client: &Client) -> String {
    wait_for(
        Duration::from_secs(20),
        "openconnect to connect DTLS",
        || {
            let log = client.log_text();
            log.contains(DTLS_UP).then_some(log)
        },
    )
}

/// (rx_bytes, tx_bytes) of the server's "DTLS channel ended" line for `user`.
fn dtls_bytes(server: &Server, user: &str) -> (u64, u64) {
    let log = server.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("DTLS channel ended") && l.contains(&format!("user={user}")))
        .unwrap_or_else(|| panic!("no 'DTLS channel ended' line for {user}:\n{log}"));
    let field = |k: &str| -> u64 {
        line.split(&format!("{k}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("rx_bytes"), field("tx_bytes"))
}

fn tunnel_mtu(net: &Net, client: &Client) -> u32 {
    let o = net.exec(
        &client.ns,
        &format!("cat /sys/class/net/{}/mtu", client.ifname),
    );
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn psk_negotiate_carries_ping_and_iperf_over_udp() {
    let _g = serial();
    let mut net = Net::new("dpsk", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..Default::default()
        },
    );
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    let log = wait_dtls(&client);
    assert!(
        log.contains("(DTLS1.2)-(PSK)"),
        "expected a PSK suite:\n{log}"
    );
    let (c, s) = (net.client_ns[0].clone(), net.server_ns.clone());
    assert_eq!(
        ping_rtts(&net, &c, &server.tunnel_ip, 3, "0.2").len(),
        3,
        "client → server over DTLS"
    );
    assert_eq!(
        ping_rtts(&net, &s, &addr, 3, "0.2").len(),
        3,
        "server → client over DTLS"
    );
    let up = iperf_bytes(&net, &c, &s, &server.tunnel_ip, false);
    let down = iperf_bytes(&net, &c, &s, &server.tunnel_ip, true);
    eprintln!("iperf3 over DTLS, 3 s each: up {up} B, down {down} B");
    assert!(up > 1_000_000 && down > 1_000_000, "up {up} down {down}");
    // The DPD echo answered openconnect's MTU probe: without it the tunnel
    // MTU falls to 576 (docs/protocol.md, "DTLS: record payloads and DPD"). mtu 1400 - 28 - 37 - 1.
    assert_eq!(
        tunnel_mtu(&net, &client),
        1334,
        "client log:\n{}",
        client.log_text()
    );

    client.signal("INT");
    client.wait_exit(Duration::from_secs(10));
    server.wait_log("DTLS channel ended", Duration::from_secs(5));
    let (rx, tx) = dtls_bytes(&server, "alice");
    eprintln!("server DTLS counters: rx {rx} B, tx {tx} B");
    // The iperf3 payload crossed UDP, not the TLS connection.
    assert!(rx > up, "DTLS rx {rx} < iperf3 upload {up}");
    assert!(tx > down, "DTLS tx {tx} < iperf3 download {down}");
}

#[test]
fn legacy_resumption_when_psk_negotiate_is_off() {
    let _g = serial();
    let mut net = Net::new("dleg", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Legacy,
            workers: 1,
            ..Default::default()
        },
    );
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    let log = wait_dtls(&client);
    assert!(
        log.contains("AES-256-GCM") && !log.contains("(PSK)"),
        "expected legacy AES-256-GCM:\n{log}"
    );
    let (c, s) = (net.client_ns[0].clone(), net.server_ns.clone());
    assert_eq!(ping_rtts(&net, &c, &server.tunnel_ip, 3, "0.2").len(), 3);
    assert_eq!(ping_rtts(&net, &s, &addr, 3, "0.2").len(), 3);
    let up = iperf_bytes(&net, &c, &s, &server.tunnel_ip, false);
    client.signal("INT");
    client.wait_exit(Duration::from_secs(10));
    server.wait_log("DTLS channel ended", Duration::from_secs(5));
    let (rx, _) = dtls_bytes(&server, "alice");
    assert!(rx > up, "DTLS rx {rx} < iperf3 upload {up}");
}

#[test]
fn concurrent_clients_on_two_shards_all_get_dtls() {
    let _g = serial();
    let mut net = Net::new("dmany", 4);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..Default::default()
        },
    );
    // Started together: hellos land on either shard's socket while other
    // handshakes run; each must reach its session's home shard.
    let clients: Vec<Client> = (1..=4)
        .map(|i| {
            let (user, pw) = USERS[i % 2];
            start_client(&mut net, &server, i, user, &[pw])
        })
        .collect();
    for (i, client) in clients.iter().enumerate() {
        client.wait_connected();
        wait_dtls(client);
        let ns = net.client_ns[i].clone();
        assert_eq!(
            ping_rtts(&net, &ns, &server.tunnel_ip, 5, "0.1").len(),
            5,
            "client {}",
            i + 1
        );
    }
    let forwarded = server.count_log("ClientHello forwarded to its home shard");
    eprintln!("{forwarded} of 4 first ClientHellos arrived on the other shard");
}

/// Drops (or lets through again) the client namespace's UDP to and from
/// the DTLS port, as a flaky network would.
fn block_udp(net: &Net, ns: &str, on: bool) {
    let cmd = if on {
        "nft add table inet ocublock && \
         nft add chain inet ocublock out '{ type filter hook output priority 0; }' && \
         nft add chain inet ocublock in '{ type filter hook input priority 0; }' && \
         nft add rule inet ocublock out udp dport 443 drop && \
         nft add rule inet ocublock in udp sport 443 drop"
    } else {
        "nft delete table inet ocublock"
    };
    let o = net.exec(ns, &format!("sh -c \"{cmd}\""));
    assert!(
        o.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn udp_outage_falls_back_to_cstp_and_dtls_comes_back() {
    let _g = serial();
    let mut net = Net::new("dfall", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            workers: 1,
            dpd: 2,
            ..Default::default()
        },
    );
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    wait_dtls(&client);
    let (c, s) = (net.client_ns[0].clone(), net.server_ns.clone());
    assert_eq!(ping_rtts(&net, &c, &server.tunnel_ip, 3, "0.2").len(), 3);

    block_udp(&net, &c, true);
    // The client declares DTLS dead after 2 x DPD and sends over CSTP; the
    // server stops using DTLS after 3 x DPD of UDP silence.
    // With its sends refused the client fails DTLS at once and retries it
    // every 60 s (openconnect's period); meanwhile both ends use CSTP.
    wait_for(
        Duration::from_secs(20),
        "the client to give up on DTLS",
        || {
            client
                .log_text()
                .contains("DTLS handshake failed")
                .then_some(())
        },
    );
    server.wait_log("falling back to CSTP", Duration::from_secs(10));
    assert_eq!(
        ping_rtts(&net, &s, &addr, 5, "0.2").len(),
        5,
        "server → client over CSTP during the outage"
    );
    assert_eq!(
        ping_rtts(&net, &c, &server.tunnel_ip, 5, "0.2").len(),
        5,
        "client → server over CSTP during the outage"
    );

    // The client's new handshake (same address, new ClientHello) gets
    // through once UDP does: DTLS is up again and carries the traffic.
    block_udp(&net, &c, false);
    wait_for(Duration::from_secs(90), "DTLS to come back", || {
        (client.log_text().matches(DTLS_UP).count() >= 2).then_some(())
    });
    assert_eq!(ping_rtts(&net, &c, &server.tunnel_ip, 3, "0.2").len(), 3);
    assert_eq!(ping_rtts(&net, &s, &addr, 3, "0.2").len(), 3);
}

#[test]
fn client_asking_for_legacy_aes128_gcm_gets_it() {
    let _g = serial();
    let mut net = Net::new("d128", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            workers: 1,
            ..Default::default()
        },
    );
    // Without PSK-NEGOTIATE in its list the client can only resume.
    let client = start_client_with(
        &mut net,
        &server,
        1,
        "alice",
        &["test123"],
        "--dtls-ciphers=OC-DTLS1_2-AES128-GCM",
    );
    client.wait_connected();
    let log = wait_dtls(&client);
    assert!(
        log.contains("AES-128-GCM") && !log.contains("(PSK)"),
        "expected legacy AES-128-GCM:\n{log}"
    );
    assert_eq!(
        ping_rtts(&net, &net.client_ns[0].clone(), &server.tunnel_ip, 3, "0.2").len(),
        3
    );
}

#[test]
fn garbage_on_the_dtls_port_does_not_disturb_a_session() {
    let _g = serial();
    let mut net = Net::new("djunk", 2);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..Default::default()
        },
    );
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    client.wait_connected();
    wait_dtls(&client);
    // From another namespace: random datagrams of many sizes, ClientHello
    // headers cut short, and whole-looking ClientHellos naming no session.
    let script = net.dir.join("junk.sh");
    std::fs::write(
        &script,
        format!(
            "ip={ip}\n\
             for i in $(seq 1 60); do\n\
               head -c $((i * 37)) /dev/urandom > /dev/udp/$ip/443\n\
               printf '\\026\\376\\375\\000\\000\\000\\000\\000\\000\\000\\000\\000\\377\\001' > /dev/udp/$ip/443\n\
               {{ printf '\\026\\376\\375\\000\\000\\000\\000\\000\\000\\000\\000\\000\\126\\001\\000\\000\\112\\000\\000\\000\\000\\000\\000\\000\\112\\376\\375'; \
                  head -c 32 /dev/urandom; printf '\\040\\000\\000'; head -c 30 /dev/urandom; printf '\\000\\000\\002\\000\\251\\001\\000'; }} > {hello}\n\
               cat {hello} > /dev/udp/$ip/443\n\
             done\n",
            ip = net.server_ip(2),
            hello = net.dir.join("hello.bin").display()
        ),
    )
    .unwrap();
    let cmd = format!(
        "ip netns exec {} bash {}",
        net.client_ns[1],
        script.display()
    );
    let blaster = std::thread::spawn(move || sh(&cmd));
    let c1 = net.client_ns[0].clone();
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 20, "0.1").len(),
        20,
        "pings during the junk"
    );
    assert!(blaster.join().unwrap().status.success());
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 3, "0.1").len(),
        3,
        "pings after the junk"
    );
    // The session's DTLS channel was never replaced or restarted.
    assert_eq!(
        client.log_text().matches(DTLS_UP).count(),
        1,
        "{}",
        client.log_text()
    );
    assert_eq!(server.count_log("DTLS connected"), 1);
    // The junk did arrive: the hellos (App-IDs naming shard 0) were parsed
    // and matched no session, on shard 0 itself or, landing on shard 1, were
    // dropped there without a message to shard 0.
    let dropped = server.count_log("DTLS ClientHello for no live session")
        + server.count_log("ClientHello for an App-ID that shard has not issued");
    assert!(dropped >= 30, "{}", server.log_text());
}

#[test]
fn dtls_0_9_when_the_client_asks_for_aes256_sha() {
    let _g = serial();
    let mut net = Net::new("d09", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            workers: 1,
            ..Default::default()
        },
    );
    let client = start_client_with(
        &mut net,
        &server,
        1,
        "alice",
        &["test123"],
        "--dtls-ciphers=AES256-SHA",
    );
    let addr = client.wait_connected();
    let log = wait_dtls(&client);
    assert!(log.contains("DTLS0.9"), "expected DTLS 0.9:\n{log}");
    let (c, s) = (net.client_ns[0].clone(), net.server_ns.clone());
    assert_eq!(ping_rtts(&net, &c, &server.tunnel_ip, 3, "0.2").len(), 3);
    assert_eq!(ping_rtts(&net, &s, &addr, 3, "0.2").len(), 3);
    let up = iperf_bytes(&net, &c, &s, &server.tunnel_ip, false);
    client.signal("INT");
    client.wait_exit(Duration::from_secs(10));
    server.wait_log("DTLS channel ended", Duration::from_secs(5));
    let (rx, _) = dtls_bytes(&server, "alice");
    assert!(rx > up, "DTLS rx {rx} < iperf3 upload {up}");
}
