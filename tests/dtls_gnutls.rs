//! Interop: the real GnuTLS client (`gnutls-cli --udp`, openconnect's TLS
//! library) against our `DtlsServer` in PSK mode on 127.0.0.1. The server
//! echoes application data; the test checks the line comes back on
//! gnutls-cli's stdout. Needs `gnutls-cli` (Debian package gnutls-bin);
//! skipped with a message when it is missing.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ocserv_uring::proto::dtls::{CipherSuite, DtlsConfig, DtlsError, DtlsEvent, DtlsServer, Received};

const PSK: [u8; 32] = *b"0123456789abcdef0123456789abcdef";
const BASE_PRIORITY: &str = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK";
/// Upper bound for one handshake + echo; a healthy run takes well under 1 s.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Kills and reaps the child on every path, panics included.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn have_gnutls_cli() -> bool {
    Command::new("gnutls-cli").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

struct Outcome {
    echoed: bool,
    retransmits: u64,
    suite: Option<CipherSuite>,
    server_error: Option<DtlsError>,
    datagrams_in: usize,
}

/// Runs one gnutls-cli against one server. `drop_first_flight` discards our
/// first ServerHello flight so GnuTLS must retransmit its ClientHello.
fn run(priority: &str, key: [u8; 32], cfg: DtlsConfig, extra: &[&str], drop_first_flight: bool) -> Outcome {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let line = format!("hello over dtls {priority}");

    let child = Command::new("gnutls-cli")
        .args(["--udp", "--port", &port.to_string(), "--pskusername=psk"])
        .arg(format!("--pskkey={}", hex(&key)))
        .arg(format!("--priority={priority}"))
        .args(extra)
        .arg("127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gnutls-cli");
    let mut child = ChildGuard(child);
    let mut stdin = child.0.stdin.take().expect("stdin");
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });

    let start = Instant::now();
    let mut server = DtlsServer::new_psk(PSK, &cfg, start);
    let mut peer: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 2048];
    let mut out_flights = 0;
    let mut outcome = Outcome { echoed: false, retransmits: 0, suite: None, server_error: None, datagrams_in: 0 };
    let mut wrote_line = false;

    while start.elapsed() < RUN_LIMIT {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                outcome.datagrams_in += 1;
                peer = Some(from);
                let mut off = 0;
                loop {
                    match server.handle_datagram(Instant::now(), &mut buf[off..n]) {
                        Ok(Received::AppData { data, next }) => {
                            let echo = [b"echo: ", &data[..]].concat();
                            let len = server.seal(&echo, &mut out).expect("seal");
                            sock.send_to(&out[..len], from).expect("send");
                            off += next;
                        }
                        Ok(Received::Done) => break,
                        Err(e) => {
                            outcome.server_error = Some(e);
                            break;
                        }
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv: {e}"),
        }
        let now = Instant::now();
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        let mut sent_any = false;
        while let Some(n) = server.poll_transmit(now, &mut out) {
            sent_any = true;
            if drop_first_flight && out_flights == 0 {
                continue;
            }
            if let Some(p) = peer {
                sock.send_to(&out[..n], p).expect("send");
            }
        }
        if sent_any {
            out_flights += 1;
        }
        while let Some(ev) = server.poll_event() {
            if let DtlsEvent::Connected { suite } = ev {
                outcome.suite = Some(suite);
                if !wrote_line {
                    // gnutls-cli sends each stdin line as one record.
                    writeln!(stdin, "{line}").expect("write to gnutls-cli");
                    stdin.flush().expect("flush");
                    wrote_line = true;
                }
            }
        }
        while let Ok(l) = rx.try_recv() {
            eprintln!("gnutls-cli: {l}");
            if l.contains(&format!("echo: {line}")) {
                outcome.echoed = true;
            }
        }
        if outcome.echoed || outcome.server_error.is_some() || server.is_closed() {
            break;
        }
    }
    drop(stdin);
    outcome.retransmits = server.counters().retransmits;
    outcome
}

fn expect_echo(priority: &str, suite: CipherSuite, cfg: DtlsConfig, extra: &[&str], drop_first: bool) -> Outcome {
    let o = run(priority, PSK, cfg, extra, drop_first);
    assert_eq!(o.server_error, None, "{priority}");
    assert_eq!(o.suite, Some(suite), "{priority}");
    assert!(o.echoed, "{priority}: line not echoed back ({} datagrams in)", o.datagrams_in);
    o
}

#[test]
fn gnutls_psk_each_suite() {
    if !have_gnutls_cli() {
        eprintln!("gnutls-cli not installed (apt-get install gnutls-bin): skipped");
        return;
    }
    for (cipher, suite) in [
        ("AES-256-GCM", CipherSuite::PskAes256GcmSha384),
        ("AES-128-GCM", CipherSuite::PskAes128GcmSha256),
        ("CHACHA20-POLY1305", CipherSuite::PskChacha20Poly1305Sha256),
    ] {
        let prio = format!("{BASE_PRIORITY}:-CIPHER-ALL:+{cipher}");
        let o = expect_echo(&prio, suite, DtlsConfig::default(), &[], false);
        // ClientHello, CKE+CCS+Finished, one application record.
        assert_eq!((o.datagrams_in, o.retransmits), (3, 0), "{cipher}");
    }
}

/// Default GnuTLS priorities send EMS, ETM, session ticket and
/// renegotiation_info extensions; `%NO_EXTENSIONS` is what openconnect sends.
#[test]
fn gnutls_with_and_without_extensions() {
    if !have_gnutls_cli() {
        return;
    }
    expect_echo(BASE_PRIORITY, CipherSuite::PskAes256GcmSha384, DtlsConfig::default(), &[], false);
    let prio = format!("{BASE_PRIORITY}:%NO_EXTENSIONS");
    expect_echo(&prio, CipherSuite::PskAes256GcmSha384, DtlsConfig::default(), &[], false);
}

/// Our first flight is lost: GnuTLS retransmits its ClientHello and we
/// answer with the same flight again.
#[test]
fn gnutls_retransmission() {
    if !have_gnutls_cli() {
        return;
    }
    let o = expect_echo(BASE_PRIORITY, CipherSuite::PskAes256GcmSha384, DtlsConfig::default(), &[], true);
    assert!(o.retransmits >= 1 && o.datagrams_in >= 4, "{} retransmits, {} in", o.retransmits, o.datagrams_in);
}

/// Small MTUs both ways: GnuTLS fragments its flights, we fragment ours.
#[test]
fn gnutls_fragmented_handshake() {
    if !have_gnutls_cli() {
        return;
    }
    let cfg = DtlsConfig { mtu: 80, ..DtlsConfig::default() };
    let o = expect_echo(BASE_PRIORITY, CipherSuite::PskAes256GcmSha384, cfg, &["--mtu=100"], false);
    // The 151-byte ClientHello alone needs two datagrams at MTU 100.
    assert!(o.datagrams_in >= 5, "{} datagrams in", o.datagrams_in);
}

#[test]
fn gnutls_wrong_psk_is_refused() {
    if !have_gnutls_cli() {
        return;
    }
    let o = run(BASE_PRIORITY, [0x55; 32], DtlsConfig::default(), &[], false);
    assert_eq!(o.server_error, Some(DtlsError::BadRecordMac));
    assert!(!o.echoed);
}
