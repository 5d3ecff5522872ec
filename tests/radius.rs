//! RADIUS logins against a real FreeRADIUS started in the server's
//! namespace (tests/fixtures/freeradius-config.sh): accept with attributes,
//! reject, a challenge answered with a second form, failover to a second
//! server, and a server that hangs failing only that login.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "testing123";

/// FreeRADIUS in the server namespace on `auth_port` / `auth_port + 1`.
fn start_freeradius(net: &mut Net, name: &str, auth_port: u16, framed_ip: &str) -> (u32, PathBuf) {
    let dir = net.dir.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/freeradius-config.sh");
    must(&format!(
        "FRAMED_IP={framed_ip} sh {} {} {SECRET} {auth_port} {}",
        script.display(),
        dir.display(),
        auth_port + 1
    ));
    let log = net.dir.join(format!("{name}.log"));
    let ns = net.server_ns.clone();
    let pid = net.spawn_in(
        &ns,
        &format!("freeradius -f -l stdout -d {}", dir.display()),
        &log,
    );
    wait_for(Duration::from_secs(20), "FreeRADIUS ready", || {
        assert!(
            alive(pid),
            "freeradius exited:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Ready to process requests")
            .then_some(())
    });
    (pid, dir)
}

fn radius_server(net: &mut Net, servers: &str) -> Server {
    radius_server_with(net, servers, "")
}

fn radius_server_with(net: &mut Net, servers: &str, radius_keys: &str) -> Server {
    fs::write(net.dir.join("radius-secret"), format!("{SECRET}\n")).unwrap();
    let groups = net.dir.join("groups");
    fs::create_dir_all(&groups).unwrap();
    fs::write(groups.join("staff"), "route = 10.55.0.0/16\n").unwrap();
    fs::write(groups.join("lab"), "route = 10.56.0.0/16\n").unwrap();
    start_server(
        net,
        ServerOpts {
            auth_keys: "method = \"radius\"\nselect_group_by_url = true\n".into(),
            auth_timeout: 20,
            extra_config: format!(
                "[users]\nconfig_per_group = \"groups\"\n\
                 [radius]\nservers = [{servers}]\nsecret_file = \"radius-secret\"\n\
                 nas_identifier = \"ocu-test\"\ntimeout = 1\nretries = 0\n\
                 require_message_authenticator = true\n{radius_keys}\
                 [monitoring]\nmetrics_listen = \"127.0.0.1:9617\"\n"
            ),
            ..Default::default()
        },
    )
}

#[test]
fn radius_accepts_rejects_challenges_and_fails_over() {
    let _serial = serial();
    let mut net = Net::new("rad", 3);
    let (radiusd, _) = start_freeradius(&mut net, "radius1", 1812, "192.168.100.77");
    // The first server never answers (nothing listens): the second does,
    // and the first is tried last from then on.
    let server = radius_server(&mut net, "\"127.0.0.1:1712\", \"127.0.0.1:1812\"");

    // alice: accepted with Framed-IP-Address, Framed-Route and Class
    // ("OU=staff;lab"), and picks the second of her groups by the URL.
    let url = format!("https://{}/lab", net.server_ip(1));
    let pin = server.pin.clone();
    let alice = start_client_at(&mut net, &pin, 1, "alice", &["alicepw"], "", &url);
    let ip = alice.wait_connected();
    assert_eq!(ip, "192.168.100.77");
    let env = alice.env("connect").unwrap();
    let splits: Vec<String> = env
        .lines()
        .filter(|l| l.starts_with("CISCO_SPLIT_INC_") && l.contains("_ADDR="))
        .map(|l| l.split('=').nth(1).unwrap().to_owned())
        .collect();
    assert!(
        splits.iter().any(|a| a == "10.200.0.0"),
        "Framed-Route: {splits:?}"
    );
    assert!(
        splits.iter().any(|a| a == "10.56.0.0") && !splits.iter().any(|a| a == "10.55.0.0"),
        "the file of the group picked among Class's: {splits:?}"
    );
    let rtts = ping_rtts(&net, &alice.ns, &server.tunnel_ip, 3, "0.2");
    assert_eq!(rtts.len(), 3, "ping through alice's tunnel");
    let log = server.log_text();
    assert!(
        log.contains("127.0.0.1:1712"),
        "the dead server is named:\n{log}"
    );
    let users = server.ctl_json("show users");
    let text = users.to_string();
    assert!(text.contains("\"lab\""), "alice's group from Class: {text}");

    // carol: the password, then the code the Access-Challenge asks for, in
    // a second form.
    let carol = start_client(&mut net, &server, 2, "carol", &["carolpw", "123456"]);
    carol.wait_connected();
    assert!(
        carol.log_text().contains("Enter your OTP code"),
        "the challenge's message reaches the user:\n{}",
        carol.log_text()
    );

    // mallory: refused, with ban points for the wrong password.
    let mallory = start_client(&mut net, &server, 3, "mallory", &["x", "y", "z"]);
    mallory.wait_exit(Duration::from_secs(20));
    server.wait_log("wrong password", Duration::from_secs(5));

    // FreeRADIUS stops answering: a login fails within the RADIUS deadline
    // (2 servers x 1 s) while alice's tunnel carries traffic.
    must(&format!("kill -STOP {radiusd}"));
    let start = Instant::now();
    let o = net.exec(
        &net.client_ns[2],
        &format!(
            "sh -c 'echo bobpw | timeout 20 openconnect --authenticate --user bob --passwd-on-stdin --servercert {} https://{}/'",
            server.pin,
            net.server_ip(3)
        ),
    );
    let took = start.elapsed();
    let rtts = ping_rtts(&net, &alice.ns, &server.tunnel_ip, 3, "0.2");
    must(&format!("kill -CONT {radiusd}"));
    assert!(!o.status.success(), "no login without an answer");
    assert!(
        took < Duration::from_secs(6),
        "the login failed after {took:?}"
    );
    assert_eq!(rtts.len(), 3, "alice's tunnel while RADIUS hangs");
    server.wait_log("no RADIUS server answered", Duration::from_secs(5));

    // The backend's verdicts and answer times are counted.
    let o = net.exec(
        &net.server_ns,
        "curl -sf --max-time 5 http://127.0.0.1:9617/metrics",
    );
    let metrics = String::from_utf8_lossy(&o.stdout);
    let count = |result: &str| {
        let key = format!(
            "ocserv_uring_auth_backend_verdicts_total{{backend=\"radius\",result=\"{result}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("accepted") >= 2, "{metrics}");
    assert!(count("rejected") >= 1, "{metrics}");
    assert!(count("failed") >= 1, "{metrics}");
    assert!(
        metrics.contains("ocserv_uring_auth_backend_seconds_count{backend=\"radius\"}"),
        "{metrics}"
    );
}

/// The records of a FreeRADIUS detail file: one map of `Name = value`
/// per Accounting-Request.
fn detail_records(file: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.split("\n\n")
        .map(|rec| {
            rec.lines()
                .filter_map(|l| l.strip_prefix('\t')?.split_once(" = "))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect()
        })
        .filter(|m: &std::collections::HashMap<String, String>| !m.is_empty())
        .collect()
}

fn counter(net: &Net, ns: &str, dev: &str, which: &str) -> u64 {
    let o = net.exec(ns, &format!("cat /sys/class/net/{dev}/statistics/{which}"));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn radius_accounting_start_interim_stop_match_the_tunnels_counters() {
    let _serial = serial();
    let mut net = Net::new("racct", 1);
    let (_radiusd, dir) = start_freeradius(&mut net, "radius1", 1812, "192.168.100.77");
    let server = radius_server_with(
        &mut net,
        "\"127.0.0.1:1812\"",
        "accounting = true\naccounting_servers = [\"127.0.0.1:1813\"]\n\
         disconnect_listen = \"127.0.0.1:3799\"\n",
    );
    let detail = dir.join("acct/detail");
    let alice = start_client(&mut net, &server, 1, "alice", &["alicepw"]);
    alice.wait_connected();
    let start = wait_for(Duration::from_secs(10), "Accounting Start", || {
        detail_records(&detail)
            .into_iter()
            .find(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
    });
    assert_eq!(start["User-Name"], "alice");
    assert_eq!(start["Framed-IP-Address"], "192.168.100.77");
    assert_eq!(start["Calling-Station-Id"], "10.91.1.2");
    assert_eq!(start["NAS-Identifier"], "ocu-test");
    assert_eq!(start["Class"], "0x4f553d73746166663b6c6162", "Class echoed");
    let session_id = start["Acct-Session-Id"].clone();
    let users = server.ctl_json("show users").to_string();
    assert!(
        users.contains(&session_id),
        "ctl names the Acct-Session-Id: {users}"
    );
    assert!(users.contains("radius"), "ctl names the backend: {users}");

    // Traffic both ways, then the interim (Acct-Interim-Interval = 2 from
    // the Access-Accept) and the Stop at logout.
    let rtts = ping_rtts(&net, &alice.ns, &server.tunnel_ip, 200, "0.01 -s 1200");
    assert!(rtts.len() > 190, "{} pings answered", rtts.len());
    let interim = wait_for(
        Duration::from_secs(10),
        "an Interim-Update with traffic",
        || {
            detail_records(&detail).into_iter().find(|r| {
                r.get("Acct-Status-Type").map(String::as_str) == Some("Interim-Update")
                    && r.get("Acct-Input-Octets")
                        .is_some_and(|v| v.parse::<u64>().unwrap() > 200_000)
            })
        },
    );
    assert_eq!(interim["Acct-Session-Id"], session_id);
    let sent = counter(&net, &alice.ns, &alice.ifname, "tx_bytes");
    let received = counter(&net, &alice.ns, &alice.ifname, "rx_bytes");
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));
    let stop = wait_for(Duration::from_secs(10), "Accounting Stop", || {
        detail_records(&detail)
            .into_iter()
            .find(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Stop"))
    });
    eprintln!("Stop: {stop:?}; the client's tunnel sent {sent} and received {received} bytes");
    assert_eq!(stop["Acct-Session-Id"], session_id);
    assert_eq!(stop["Acct-Terminate-Cause"], "User-Request");
    assert_eq!(stop["Acct-Input-Gigawords"], "0");
    let within = |what: &str, ours: u64, kernel: u64| {
        let diff = ours.abs_diff(kernel) as f64 / kernel as f64;
        assert!(
            diff < 0.03,
            "{what}: accounted {ours}, the client's tunnel counted {kernel}"
        );
    };
    within(
        "input octets",
        stop["Acct-Input-Octets"].parse().unwrap(),
        sent,
    );
    within(
        "output octets",
        stop["Acct-Output-Octets"].parse().unwrap(),
        received,
    );
    assert!(stop["Acct-Session-Time"].parse::<u64>().unwrap() >= 2);

    // A Disconnect-Request from the RADIUS server ends bob's session: ACK,
    // the client told to quit, a Stop with Admin-Reset. One for a session
    // that does not exist is NAKed.
    let bob = start_client(&mut net, &server, 1, "bob", &["bobpw"]);
    bob.wait_connected();
    let bob_start = wait_for(Duration::from_secs(10), "bob's Start", || {
        detail_records(&detail).into_iter().find(|r| {
            r.get("Acct-Status-Type").map(String::as_str) == Some("Start")
                && r.get("User-Name").map(String::as_str) == Some("bob")
        })
    });
    let sid = &bob_start["Acct-Session-Id"];
    let radclient = |attrs: &str| {
        let file = net.dir.join("disconnect-request");
        fs::write(&file, format!("{attrs}\n")).unwrap();
        net.exec(
            &net.server_ns,
            &format!(
                "radclient -x -t 2 -r 1 -f {} 127.0.0.1:3799 disconnect {SECRET}",
                file.display()
            ),
        )
    };
    let nak = radclient("Acct-Session-Id = \"nosuchsession\"");
    assert!(
        String::from_utf8_lossy(&nak.stdout).contains("Disconnect-NAK"),
        "{nak:?}"
    );
    let ack = radclient(&format!("Acct-Session-Id = \"{sid}\", User-Name = \"bob\""));
    assert!(
        String::from_utf8_lossy(&ack.stdout).contains("Disconnect-ACK"),
        "{ack:?}"
    );
    bob.wait_exit(Duration::from_secs(10));
    let bob_stop = wait_for(Duration::from_secs(10), "bob's Stop", || {
        detail_records(&detail).into_iter().find(|r| {
            r.get("Acct-Status-Type").map(String::as_str) == Some("Stop")
                && r.get("User-Name").map(String::as_str) == Some("bob")
        })
    });
    assert_eq!(bob_stop["Acct-Terminate-Cause"], "Admin-Reset");
    assert!(server
        .ctl_json("show users")
        .as_array()
        .is_some_and(Vec::is_empty));
}
