//! Interop beyond GnuTLS: OpenSSL's `openssl s_client -dtls1_2 -psk`
//! against our `DtlsServer` (PSK mode, the key fixed by the test) on
//! 127.0.0.1. The server echoes application data; a wrong key must fail
//! the handshake. Needs the `openssl` command (Debian package openssl).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ocserv_uring::proto::dtls::{
    CipherSuite, DtlsConfig, DtlsError, DtlsEvent, DtlsServer, Received,
};

const PSK: [u8; 32] = [0x5a; 32];
const RUN_LIMIT: Duration = Duration::from_secs(15);

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

struct Outcome {
    echoed: bool,
    suite: Option<CipherSuite>,
    server_error: Option<DtlsError>,
}

/// Serves one `openssl s_client` with `client_key` until it prints our echo
/// of its line, the handshake fails, or RUN_LIMIT passes.
fn run(cipher: &str, client_key: [u8; 32]) -> Outcome {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let child = Command::new("openssl")
        .args([
            "s_client",
            "-dtls1_2",
            "-quiet",
            "-psk_identity",
            "psk",
            "-cipher",
            cipher,
        ])
        .args([
            "-psk",
            &hex(&client_key),
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is missing: apt-get install openssl");
    let mut child = ChildGuard(child);
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let line = format!("hello from openssl {cipher}");
    let mut server = DtlsServer::new_psk(PSK, &DtlsConfig::default(), Instant::now());
    let mut out = Outcome {
        echoed: false,
        suite: None,
        server_error: None,
    };
    let (mut buf, mut tx_buf) = (vec![0u8; 65536], vec![0u8; 2048]);
    let mut peer: Option<SocketAddr> = None;
    let start = Instant::now();
    while start.elapsed() < RUN_LIMIT && !out.echoed {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            peer = Some(from);
            let mut off = 0;
            while off < n {
                match server.handle_datagram(Instant::now(), &mut buf[off..n]) {
                    Ok(Received::AppData { data, next }) => {
                        let echo = [b"echo: ", &data[..]].concat();
                        let len = server.seal(&echo, &mut tx_buf).unwrap();
                        sock.send_to(&tx_buf[..len], from).unwrap();
                        off += next;
                    }
                    Ok(Received::Done) => break,
                    Err(e) => {
                        out.server_error = Some(e);
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        while let Some(n) = server.poll_transmit(now, &mut tx_buf) {
            if let Some(p) = peer {
                sock.send_to(&tx_buf[..n], p).unwrap();
            }
        }
        while let Some(ev) = server.poll_event() {
            if let DtlsEvent::Connected { suite } = ev {
                out.suite = Some(suite);
                writeln!(stdin, "{line}").unwrap();
                stdin.flush().unwrap();
            }
        }
        while let Ok(l) = rx.try_recv() {
            out.echoed |= l.contains(&format!("echo: {line}"));
        }
        if out.server_error.is_some() || server.is_closed() {
            break;
        }
    }
    out
}

#[test]
fn openssl_psk_each_suite() {
    for (cipher, suite) in [
        ("PSK-AES256-GCM-SHA384", CipherSuite::PskAes256GcmSha384),
        ("PSK-AES128-GCM-SHA256", CipherSuite::PskAes128GcmSha256),
        (
            "PSK-CHACHA20-POLY1305",
            CipherSuite::PskChacha20Poly1305Sha256,
        ),
    ] {
        let o = run(cipher, PSK);
        assert_eq!(o.server_error, None, "{cipher}");
        assert_eq!(o.suite, Some(suite), "{cipher}: handshake did not complete");
        assert!(o.echoed, "{cipher}: the line did not come back");
    }
}

#[test]
fn openssl_with_a_wrong_psk_fails_the_handshake() {
    let o = run("PSK-AES256-GCM-SHA384", [0x33; 32]);
    assert_eq!(o.suite, None);
    assert!(!o.echoed);
    assert_eq!(o.server_error, Some(DtlsError::BadRecordMac));
}
