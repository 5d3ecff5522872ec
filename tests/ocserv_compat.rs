//! Drop-in for ocserv deployments (issue 17): ocserv's command line, its
//! configuration file and the keys its installations use.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// The harness's configuration for `net`, written as `server.toml`: a server
/// started once by the harness leaves it (and the certificate) behind.
fn harness_config(net: &mut Net) -> (Server, std::path::PathBuf) {
    let server = start_server(net, ServerOpts::default());
    let cfg = net.dir.join("server.toml");
    must(&format!("kill -TERM {}", server.pid));
    net.wait_exit(server.pid, Duration::from_secs(10))
        .expect("the first server stopped");
    (server, cfg)
}

#[test]
fn ocserv_command_line_foreground_config_pid_file_debug_and_test() {
    let _g = serial();
    let mut net = Net::new("ocargs", 1);
    let (_, cfg) = harness_config(&mut net);
    // -t: checks and exits, 0 for a good file, 1 with the reason for a bad one.
    let ok = sh(&format!("{BIN} -t -c {}", cfg.display()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = net.dir.join("bad.toml");
    fs::write(&bad, "[server]\ntcp_port = 0\n").unwrap();
    let o = sh(&format!("{BIN} -t -c {}", bad.display()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("server.tcp_port"),
        "{o:?}"
    );
    // As Debian's ocserv.service starts ocserv.
    let pid_file = net.dir.join("ocserv.pid");
    let log = net.dir.join("ocserv-style.log");
    let ns = net.server_ns.clone();
    let pid = net.spawn_in(
        &ns,
        &format!(
            "{BIN} --foreground --pid-file {} -c {} -d 3",
            pid_file.display(),
            cfg.display()
        ),
        &log,
    );
    wait_for(Duration::from_secs(20), "the server ready", || {
        fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("ocserv-uring ready"))
    });
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(
        fs::read_to_string(&log).unwrap().contains("DEBUG"),
        "-d 3 logs at debug"
    );
    must(&format!("kill -TERM {pid}"));
    assert!(net
        .wait_exit(pid, Duration::from_secs(10))
        .expect("stopped")
        .success());
    assert!(
        !pid_file.exists(),
        "the pid file is removed at exit (it stays root's here)"
    );
}
