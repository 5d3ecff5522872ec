//! Reload (`ctl reload`, SIGHUP) under a live openconnect session: a new
//! certificate is served to new clients while the old session keeps
//! passing traffic; a broken file keeps the running state.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// openconnect's `--servercert` pin of a PEM certificate.
fn pin_of(cert: &std::path::Path) -> String {
    let out = must(&format!(
        "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert.display()
    ));
    format!("pin-sha256:{}", out.trim())
}

fn with_pin(server: &Server, pin: &str) -> Server {
    Server {
        pid: server.pid,
        log: server.log.clone(),
        pin: pin.to_owned(),
        tunnel_ip: server.tunnel_ip.clone(),
        ctl: server.ctl.clone(),
    }
}

#[test]
fn reload_serves_a_new_certificate_keeps_sessions_and_refuses_broken_files() {
    let _g = serial();
    let mut net = Net::new("rel", 3);
    let dir = net.dir.clone();
    let server = start_server(
        &mut net,
        ServerOpts {
            dtls: Dtls::Psk,
            ..Default::default()
        },
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["test123"]);
    alice.wait_connected();
    let id = server.ctl_json("show users")[0]["ID"].clone();

    // A new key and certificate in place of the old ones.
    must(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=renewed \
         -keyout {0}/new-key.pem -out {0}/new-cert.pem 2>/dev/null && mv {0}/new-key.pem {0}/key.pem && mv {0}/new-cert.pem {0}/cert.pem",
        dir.display()
    ));
    let new_pin = pin_of(&dir.join("cert.pem"));
    assert_ne!(new_pin, server.pin);
    let r = server.ctl_json("reload");
    assert_eq!(r["reloaded"], true, "{r:#}");
    assert_eq!(r["certificate"], new_pin.as_str(), "{r:#}");

    // The old session still passes traffic, as the same session.
    let c1 = net.client_ns[0].clone();
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 5, "0.2").len(),
        5,
        "alice after the reload"
    );
    assert!(iperf_bytes(&net, &c1, &net.server_ns.clone(), &server.tunnel_ip, false) > 1_000_000);
    assert_eq!(server.ctl_json("show users")[0]["ID"], id);
    // A new client sees the new certificate (openconnect checks the pin).
    let renewed = with_pin(&server, &new_pin);
    let bob = start_client(&mut net, &renewed, 2, "bob", &["wonderland"]);
    bob.wait_connected();

    // A broken key: refused with the file named, the running state stays.
    fs::write(
        dir.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let o = server.ctl("reload");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success()
            && err.contains("key.pem")
            && err.contains("running configuration stays"),
        "{err}"
    );
    // A broken configuration by SIGHUP: logged, nothing changes.
    let cfg = dir.join("server.toml");
    let good = fs::read_to_string(&cfg).unwrap();
    fs::write(
        &cfg,
        good.replace("[session]\n", "[session]\nfrobnicate = 1\n"),
    )
    .unwrap();
    must(&format!("kill -HUP {}", server.pid));
    wait_for(
        Duration::from_secs(5),
        "the SIGHUP's reload failure",
        || (server.count_log("reload failed") >= 2).then_some(()),
    );
    assert!(
        server.log_text().contains("frobnicate"),
        "the reason names the key"
    );
    let carol_view = with_pin(&server, &new_pin);
    let third = start_client(&mut net, &carol_view, 3, "alice", &["test123"]);
    third.wait_connected();
    assert!(alive(server.pid), "SIGHUP must not stop the server");

    // A good SIGHUP reload: new DNS for new sessions; a changed listener
    // port is kept until a restart, with a warning.
    must(&format!("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=again -keyout {0}/key.pem -out {0}/cert.pem 2>/dev/null", dir.display()));
    fs::write(
        &cfg,
        good.replace("[network]\n", "[network]\ndns = [\"10.53.0.53\"]\n")
            .replace("tcp_port = 443", "tcp_port = 8443"),
    )
    .unwrap();
    must(&format!("kill -HUP {}", server.pid));
    // The first reload (ctl) logged the same line: wait for the second.
    wait_for(Duration::from_secs(5), "the SIGHUP's reload", || {
        (server.count_log("configuration reloaded") >= 2).then_some(())
    });
    assert!(
        server
            .log_text()
            .contains("server.tcp_port changed: kept the running value"),
        "{}",
        server.log_text()
    );
    bob.signal("INT");
    bob.wait_exit(Duration::from_secs(10));
    let bob2 = start_client(
        &mut net,
        &with_pin(&server, &pin_of(&dir.join("cert.pem"))),
        2,
        "bob",
        &["wonderland"],
    );
    bob2.wait_connected();
    let env = bob2.env("connect").unwrap();
    assert_eq!(
        Client::var(&env, "INTERNAL_IP4_DNS").as_deref(),
        Some("10.53.0.53"),
        "{env}"
    );
    assert_eq!(
        ping_rtts(&net, &c1, &server.tunnel_ip, 3, "0.2").len(),
        3,
        "alice through every reload"
    );
}
