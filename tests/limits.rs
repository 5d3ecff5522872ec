//! Session limits with the real openconnect client: session_timeout across
//! reconnects, idle and mobile idle timeouts, max_same_clients (connected
//! clients, counted at CONNECT), logout and
//! persistent cookies.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Forces a reconnect the way a network change does: the TCP connection dies.
fn kill_tcp(net: &Net, idx: usize) {
    let ns = net.client_ns[idx - 1].clone();
    net.exec(
        &ns,
        &format!("ss -K dst {} dport = :443", net.server_ip(idx)),
    );
}

#[test]
fn session_timeout_counts_from_login_through_reconnects() {
    let _g = serial();
    let mut net = Net::new("stime", 1);
    let server = start_server_merged(&mut net, "session_timeout = 12\n");
    let client = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = client.wait_connected();
    std::thread::sleep(Duration::from_secs(4));
    kill_tcp(&net, 1);
    let env = wait_for(Duration::from_secs(30), "reconnect", || {
        client.env("reconnect")
    });
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_ADDRESS"),
        Some(addr),
        "same address after the reconnect"
    );
    assert_eq!(server.count_log("tunnel up"), 2);
    // TERMINATE at the deadline: the client quits instead of reconnecting.
    client.wait_exit(Duration::from_secs(30));
    let log = server.log_text();
    assert!(log.contains("session_timeout reached"), "{log}");
    let ended = log
        .lines()
        .find(|l| l.contains("session ended"))
        .unwrap_or_else(|| panic!("no session end:\n{log}"));
    assert!(ended.contains("reason=session timeout"), "{ended}");
    // 12 s from login, not from the reconnect at 4 s (that would be 16).
    let age: u64 = ended
        .split("age_s=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((12..=14).contains(&age), "session lasted {age} s: {ended}");
    assert!(
        client.log_text().contains("terminate"),
        "client was not told to quit:\n{}",
        client.log_text()
    );
}

#[test]
fn idle_clients_are_dropped_and_mobile_ones_sooner() {
    let _g = serial();
    let mut net = Net::new("idle", 2);
    let server = start_server_merged(&mut net, "idle_timeout = 6\nmobile_idle_timeout = 2\n");
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    // `--os android` sends the mobile identifiers with the login.
    let bob = start_client_with(&mut net, &server, 2, "bob", &["wonderland"], "--os android");
    bob.wait_connected();
    let start = Instant::now();
    // Alice keeps sending for longer than idle_timeout: never idle.
    let c1 = net.client_ns[0].clone();
    let replies = ping_rtts(&net, &c1, &server.tunnel_ip, 16, "0.5");
    assert_eq!(replies.len(), 16, "alice was cut off while sending");
    // Bob sent nothing: dropped after the mobile timeout, long before alice.
    bob.wait_exit(Duration::from_secs(5));
    let log = server.log_text();
    let bob_idle = log
        .lines()
        .find(|l| l.contains("idle timeout") && l.contains("bob"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(bob_idle.contains("idle_s=2"), "{bob_idle}");
    assert!(alive(alice.pid));
    // Now alice goes quiet too.
    alice.wait_exit(Duration::from_secs(20));
    // Her last ping left 7.5 s after `start`.
    assert!(
        start.elapsed() >= Duration::from_millis(7500 + 6000),
        "alice dropped before she was idle for 6 s"
    );
    let log = server.log_text();
    let alice_idle = log
        .lines()
        .find(|l| l.contains("idle timeout") && l.contains("alice"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(alice_idle.contains("idle_s=6"), "{alice_idle}");
}

#[test]
fn max_same_clients_refuses_a_second_device_but_not_a_reconnect() {
    let _g = serial();
    let mut net = Net::new("msc", 2);
    let server = start_server_merged(&mut net, "max_same_clients = 1\n");
    let first = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let addr = first.wait_connected();
    let second = start_client(&mut net, &server, 2, "alice", &["test123"]);
    second.wait_exit(Duration::from_secs(20));
    assert!(second.env("connect").is_none());
    server.wait_log("CONNECT refused: max_same_clients", Duration::from_secs(5));
    // As ocserv counts connected clients, a login that only takes a
    // cookie (`--authenticate`) is not refused.
    assert!(!authenticate(&net, &server, 2, "alice", "test123").is_empty());
    // Bob is another user: not limited by alice's sessions.
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    bob.signal("INT");
    bob.wait_exit(Duration::from_secs(10));
    // The first device reconnects (twice): never counted as a new client.
    for _ in 0..2 {
        let _ = std::fs::remove_file(first.env_dir.join("env-reconnect"));
        kill_tcp(&net, 1);
        let env = wait_for(Duration::from_secs(30), "reconnect", || {
            first.env("reconnect")
        });
        assert_eq!(
            Client::var(&env, "INTERNAL_IP4_ADDRESS").as_deref(),
            Some(addr.as_str())
        );
    }
    let c1 = net.client_ns[0].clone();
    assert_eq!(ping_rtts(&net, &c1, &server.tunnel_ip, 2, "0.2").len(), 2);
    assert_eq!(server.count_log("CONNECT refused: max_same_clients"), 1);
    // Once the first device logs out, the second gets in.
    first.signal("INT");
    first.wait_exit(Duration::from_secs(10));
    server.wait_log("session ended, address released", Duration::from_secs(5));
    let second = start_client(&mut net, &server, 2, "alice", &["test123"]);
    second.wait_connected();
}

#[test]
fn a_logout_invalidates_the_cookie_unless_cookies_are_persistent() {
    let _g = serial();
    for persistent in [false, true] {
        let mut net = Net::new(if persistent { "pcook" } else { "cook" }, 1);
        let server = start_server_merged(&mut net, &format!("persistent_cookies = {persistent}\n"));
        let cookie = authenticate(&net, &server, 1, "alice", "test123");
        let client = start_cookie_client(&mut net, &server, 1, &cookie);
        let addr = client.wait_connected();
        // SIGINT: openconnect logs out with a DISCONNECT before it exits.
        client.signal("INT");
        client.wait_exit(Duration::from_secs(10));
        server.wait_log("client sent DISCONNECT", Duration::from_secs(5));
        let again = start_cookie_client(&mut net, &server, 1, &cookie);
        if persistent {
            assert_eq!(
                again.wait_connected(),
                addr,
                "persistent cookie keeps the session and its address"
            );
        } else {
            again.wait_exit(Duration::from_secs(20));
            assert!(
                again.env("connect").is_none(),
                "a cookie was accepted after its logout"
            );
            server.wait_log(
                "CONNECT with an unknown or expired cookie",
                Duration::from_secs(5),
            );
        }
    }
}

/// The harness's server with `keys` added to its [session] section.
fn start_server_merged(net: &mut Net, keys: &str) -> Server {
    start_server(
        net,
        ServerOpts {
            session_keys: keys.to_owned(),
            ..Default::default()
        },
    )
}

#[test]
fn wrong_passwords_ban_the_address_until_ban_time_passes() {
    let _g = serial();
    let mut net = Net::new("ban", 2);
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config:
                "[security]\nmax_ban_score = 20\nban_time = 15\nban_points_wrong_password = 10\n"
                    .into(),
            ..Default::default()
        },
    );
    // Two wrong passwords reach the score; openconnect gives up.
    let guesser = start_client(&mut net, &server, 1, "alice", &["nope1", "nope2", "nope3"]);
    guesser.wait_exit(Duration::from_secs(20));
    server.wait_log("address banned", Duration::from_secs(5));
    let banned_at = Instant::now();
    // The right password from the banned address: refused at accept.
    let refused = start_client(&mut net, &server, 1, "alice", &["test123"]);
    refused.wait_exit(Duration::from_secs(10));
    assert!(
        refused.env("connect").is_none(),
        "a banned address logged in"
    );
    assert!(
        banned_at.elapsed() < Duration::from_secs(15),
        "the refusal came too late to prove anything"
    );
    server.wait_log(
        "connection from a banned address closed",
        Duration::from_secs(5),
    );
    // Another address is not affected.
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_connected();
    // After ban_time the address is let in again.
    std::thread::sleep(
        Duration::from_secs(15).saturating_sub(banned_at.elapsed()) + Duration::from_millis(500),
    );
    let back = start_client(&mut net, &server, 1, "alice", &["test123"]);
    back.wait_connected();
}
