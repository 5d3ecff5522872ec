//! The Prometheus endpoint, scraped with curl while a real openconnect
//! client moves traffic: counters move with it, per channel and shard.

mod common;

use std::time::Duration;

use common::*;

/// Sums every sample of `name` whose labels contain all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(net: &Net) -> String {
    let o = net.exec(
        &net.server_ns,
        "curl -sf --max-time 5 http://127.0.0.1:9617/metrics",
    );
    assert!(
        o.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn metrics_endpoint_counts_logins_sessions_and_traffic_per_channel() {
    let _g = serial();
    let mut net = Net::new("metr", 2);
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            extra_config: "[monitoring]\nmetrics_listen = \"127.0.0.1:9617\"\n".into(),
            ..Default::default()
        },
    );
    let before = scrape(&net);
    assert!(
        before.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF:\n{before}"
    );
    assert_eq!(sample(&before, "ocserv_uring_logins_total", &[]), 0.0);

    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    // A wrong password from another client: a failed login.
    let bad = start_client(&mut net, &server, 2, "bob", &["nope", "nope", "nope"]);
    bad.wait_exit(Duration::from_secs(30));
    let (s, c1) = (net.server_ns.clone(), net.client_ns[0].clone());
    // Wait for DTLS so the bulk goes over it.
    wait_for(Duration::from_secs(15), "DTLS up", || {
        server.log_text().contains("DTLS connected").then_some(())
    });
    let sent = iperf_bytes(&net, &c1, &s, &server.tunnel_ip, false);
    let text = wait_for(Duration::from_secs(5), "traffic published", || {
        let t = scrape(&net);
        (sample(
            &t,
            "ocserv_uring_bytes_total",
            &["direction=\"rx\"", "channel=\"dtls\""],
        ) >= sent as f64)
            .then_some(t)
    });
    assert_eq!(
        sample(&text, "ocserv_uring_logins_total", &[]),
        1.0,
        "{text}"
    );
    assert!(
        sample(&text, "ocserv_uring_login_failures_total", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "ocserv_uring_sessions", &["state=\"connected\""]),
        1.0,
        "{text}"
    );
    assert!(
        sample(&text, "ocserv_uring_dtls_handshakes_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "ocserv_uring_packets_total", &["direction=\"tx\""]) > 0.0,
        "ACKs went back: {text}"
    );
    assert!(
        sample(&text, "ocserv_uring_shard_busy_seconds_total", &[]) > 0.0,
        "{text}"
    );
    // Both shards have their series.
    assert!(
        text.contains("ocserv_uring_sessions{shard=\"1\",state=\"waiting\"}"),
        "{text}"
    );
    assert!(
        text.contains("ocserv_uring_handoffs_total{shard=\"1\"}"),
        "{text}"
    );
    let o = net.exec(
        &s,
        "curl -s -o /dev/null -w %{http_code} --max-time 5 http://127.0.0.1:9617/",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "404");
}
