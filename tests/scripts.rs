//! connect_script / disconnect_script with a real openconnect client, and
//! the audit trail as JSON lines (`log_format = "json"`).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SCRIPT: &str = r#"#!/bin/sh
# Records its environment; refuses bob; hangs for carol.
case "$USERNAME" in
  bob) exit 3 ;;
  carol) sleep 60 ;;
esac
env | sort > "$(dirname "$0")/$REASON-$USERNAME.env.tmp" && mv "$(dirname "$0")/$REASON-$USERNAME.env.tmp" "$(dirname "$0")/$REASON-$USERNAME.env"
"#;

fn var(env: &str, key: &str) -> String {
    Client::var(env, key).unwrap_or_else(|| panic!("{key} missing:\n{env}"))
}

#[test]
fn scripts_get_ocserv_variables_a_failing_one_refuses_and_a_hanging_one_stalls_nobody() {
    let _g = serial();
    let mut net = Net::new("scr", 3);
    let dir = net.dir.join("scripts");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("event.sh"), SCRIPT).unwrap();
    must(&format!("chmod +x {}", dir.join("event.sh").display()));
    add_user(&net.dir.join("ocpasswd"), "carol", "sea-salt");
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            extra_config: "[scripts]\nconnect_script = \"scripts/event.sh\"\ndisconnect_script = \"scripts/event.sh\"\nscript_timeout = 3\n".into(),
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let lease = alice.wait_connected();
    let env = fs::read_to_string(dir.join("connect-alice.env"))
        .expect("connect script ran before the tunnel came up");
    assert_eq!(var(&env, "REASON"), "connect");
    assert_eq!(var(&env, "USERNAME"), "alice");
    assert_eq!(var(&env, "DEVICE"), "vpns");
    assert_eq!(var(&env, "IP_REAL"), "10.91.1.2");
    assert_eq!(var(&env, "IP_REAL_LOCAL"), "10.91.1.1");
    assert_eq!(var(&env, "IP_REMOTE"), lease);
    assert_eq!(var(&env, "IP_LOCAL"), server.tunnel_ip);

    // A hanging script for carol: killed after script_timeout, her login
    // refused, and alice's traffic flows the whole time.
    let carol = start_client(&mut net, &server, 3, "carol", &["sea-salt"]);
    let hang = Instant::now();
    let (c1, s) = (net.client_ns[0].clone(), net.server_ns.clone());
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 10, "0.2").len(),
        10,
        "alice while carol's script hangs"
    );
    assert!(
        hang.elapsed() < Duration::from_secs(3) || alive(carol.pid),
        "the pings should overlap the hang"
    );
    carol.wait_exit(Duration::from_secs(20));
    assert!(
        carol.env("connect").is_none(),
        "carol got a tunnel despite her script hanging"
    );
    server.wait_log("still running after 3 s", Duration::from_secs(5));

    // A failing script refuses bob's session.
    let bob = start_client(&mut net, &server, 2, "bob", &["wonderland"]);
    bob.wait_exit(Duration::from_secs(20));
    assert!(
        bob.env("connect").is_none(),
        "bob got a tunnel despite his script failing"
    );
    server.wait_log("connect_script failed", Duration::from_secs(5));

    let sent = iperf_bytes(&net, &c1, &s, &server.tunnel_ip, false);
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));
    let env = wait_for(Duration::from_secs(10), "disconnect script", || {
        fs::read_to_string(dir.join("disconnect-alice.env")).ok()
    });
    assert_eq!(var(&env, "REASON"), "disconnect");
    assert_eq!(var(&env, "IP_REMOTE"), lease);
    let bytes_in: u64 = var(&env, "STATS_BYTES_IN").parse().unwrap();
    assert!(
        bytes_in >= sent,
        "STATS_BYTES_IN {bytes_in} < {sent} sent by iperf3"
    );
    assert!(var(&env, "STATS_BYTES_OUT").parse::<u64>().unwrap() > 0);
    assert!(var(&env, "STATS_DURATION").parse::<u64>().is_ok());
    assert!(
        !dir.join("disconnect-bob.env").exists(),
        "no disconnect for a session that never connected"
    );
}

#[test]
fn json_logs_carry_one_audit_event_per_login_connect_and_disconnect() {
    let _g = serial();
    let mut net = Net::new("jlog", 1);
    let server = start_server(
        &mut net,
        ServerOpts {
            server_keys: "log_format = \"json\"\n".into(),
            ..Default::default()
        },
    );
    let log = server.log.clone();
    let bad = start_client(&mut net, &server, 1, "alice", &["wrong", "wrong", "wrong"]);
    bad.wait_exit(Duration::from_secs(20));
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));
    let events = wait_for(Duration::from_secs(5), "disconnect event", || {
        let lines: Vec<Value> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let audit: Vec<Value> = lines
            .into_iter()
            .filter(|v| v["target"] == "audit")
            .collect();
        audit
            .iter()
            .any(|v| v["fields"]["event"] == "disconnect")
            .then_some(audit)
    });
    let kinds: Vec<&str> = events
        .iter()
        .map(|v| v["fields"]["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"refusal") && kinds.contains(&"login") && kinds.contains(&"connect"),
        "{kinds:?}"
    );
    let end = events
        .iter()
        .find(|v| v["fields"]["event"] == "disconnect")
        .unwrap();
    let f = &end["fields"];
    assert_eq!(f["user"], "alice");
    assert_eq!(f["reason"], "client disconnect");
    assert!(
        f["peer"].as_str().unwrap().starts_with("10.91.1.2:"),
        "{end}"
    );
    assert!(
        f["rx_bytes"].is_u64() && f["duration_s"].is_u64() && f["ipv4"].is_string(),
        "{end}"
    );
}

const LEAVES_A_CHILD: &str = r#"#!/bin/sh
# Starts a child that outlives a plain kill of the script, then hangs.
sleep 300 &
echo $! > "$(dirname "$0")/child.pid.tmp" && mv "$(dirname "$0")/child.pid.tmp" "$(dirname "$0")/child.pid"
sleep 60
"#;

#[test]
fn a_script_that_times_out_leaves_no_children_running() {
    let _g = serial();
    let mut net = Net::new("scrk", 1);
    let dir = net.dir.join("scripts");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("hang.sh"), LEAVES_A_CHILD).unwrap();
    must(&format!("chmod +x {}", dir.join("hang.sh").display()));
    let server = start_server(
        &mut net,
        ServerOpts {
            extra_config: "[scripts]\nconnect_script = \"scripts/hang.sh\"\nscript_timeout = 3\n"
                .into(),
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    let pid: u32 = wait_for(Duration::from_secs(20), "the script's child", || {
        fs::read_to_string(dir.join("child.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(alive(pid), "the script's child runs while the script does");
    server.wait_log("still running after 3 s", Duration::from_secs(10));
    // SIGKILL is sent before the log line; the child is then gone (or a
    // zombie waiting for init, which runs nothing).
    wait_for(
        Duration::from_secs(5),
        "the script's child to be killed",
        || (!alive(pid)).then_some(()),
    );
    alice.wait_exit(Duration::from_secs(20));
    assert!(
        alice.env("connect").is_none(),
        "alice got a tunnel despite her script timing out"
    );
}
