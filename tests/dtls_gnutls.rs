//! Interop: the real GnuTLS client (`gnutls-cli --udp`, openconnect's TLS
//! library) against our `DtlsServer` in PSK mode on 127.0.0.1. The server
//! echoes application data; the test checks the line comes back on
//! gnutls-cli's stdout. A small C program on libgnutls does what
//! openconnect does for PSK-NEGOTIATE and the legacy resumptions (DTLS 1.2
//! GCM and DTLS 0.9 CBC), and serves DTLS 0.9 to our `DtlsClient`. Needs
//! `gnutls-cli` (Debian package gnutls-bin) and, for the C program, gcc and
//! libgnutls28-dev; `.ci/run` installs them, and a test without them fails
//! rather than skips.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ocserv_uring::proto::dtls::{
    client_hello_session_id, CipherSuite, DtlsClient, DtlsConfig, DtlsError, DtlsEvent, DtlsServer,
    Received, RecordHeader, DTLS0_9,
};

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

fn require_gnutls_cli() {
    assert!(
        have_gnutls_cli(),
        "gnutls-cli is missing: apt-get install gnutls-bin"
    );
}

fn have_gnutls_cli() -> bool {
    Command::new("gnutls-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

struct Outcome {
    echoed: bool,
    retransmits: u64,
    suite: Option<CipherSuite>,
    server_error: Option<DtlsError>,
    datagrams_in: usize,
    /// session_id of the first ClientHello, as the router would read it.
    hello_session_id: Option<Vec<u8>>,
    /// Record version of that ClientHello.
    hello_version: Option<u16>,
}

/// Runs one gnutls-cli against a PSK server. `drop_first_flight` discards
/// our first ServerHello flight so GnuTLS must retransmit its ClientHello.
fn run(
    priority: &str,
    key: [u8; 32],
    cfg: DtlsConfig,
    extra: &[&str],
    drop_first_flight: bool,
) -> Outcome {
    let sock = bind();
    let port = sock.local_addr().expect("addr").port();
    let line = format!("hello over dtls {priority}");
    let mut cmd = Command::new("gnutls-cli");
    cmd.args(["--udp", "--port", &port.to_string(), "--pskusername=psk"])
        .arg(format!("--pskkey={}", hex(&key)))
        .arg(format!("--priority={priority}"))
        .args(extra)
        .arg("127.0.0.1");
    let server = DtlsServer::new_psk(PSK, &cfg, Instant::now());
    // gnutls-cli sends each stdin line as one record and prints what it receives.
    serve(
        sock,
        server,
        cmd,
        Some(&line),
        &format!("echo: {line}"),
        drop_first_flight,
    )
}

fn bind() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    sock
}

/// Spawns `cmd`, serves it from `sock` in a blocking loop (bounded by
/// `RUN_LIMIT`), answers each application record with `echo: ` + record,
/// and watches the child's stdout for `want`. `send_line` goes to the
/// child's stdin once the handshake is done.
fn serve(
    sock: UdpSocket,
    mut server: DtlsServer,
    mut cmd: Command,
    send_line: Option<&str>,
    want: &str,
    drop_first_flight: bool,
) -> Outcome {
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn client");
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
    let mut peer: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 2048];
    let mut out_flights = 0;
    let mut outcome = Outcome {
        echoed: false,
        retransmits: 0,
        suite: None,
        server_error: None,
        datagrams_in: 0,
        hello_session_id: None,
        hello_version: None,
    };
    let mut wrote_line = false;

    while start.elapsed() < RUN_LIMIT {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                outcome.datagrams_in += 1;
                peer = Some(from);
                if outcome.hello_session_id.is_none() {
                    outcome.hello_session_id =
                        client_hello_session_id(&buf[..n]).map(<[u8]>::to_vec);
                    outcome.hello_version = RecordHeader::parse(&buf[..n]).ok().map(|h| h.version);
                }
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
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
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
            eprintln!("server: {ev:?}");
            if let DtlsEvent::Connected { suite } = ev {
                outcome.suite = Some(suite);
                if let (false, Some(line)) = (wrote_line, send_line) {
                    writeln!(stdin, "{line}").expect("write to the client");
                    stdin.flush().expect("flush");
                    wrote_line = true;
                }
            }
        }
        while let Ok(l) = rx.try_recv() {
            eprintln!("client: {l}");
            if l.contains(want) {
                outcome.echoed = true;
            }
        }
        if outcome.echoed {
            break;
        }
        if outcome.server_error.is_some() || server.is_closed() {
            // The client may have printed the echo just before closing: read
            // the rest of its output (the channel ends when it exits).
            let until = Instant::now() + Duration::from_secs(2);
            while let Ok(l) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                eprintln!("client: {l}");
                outcome.echoed |= l.contains(want);
            }
            break;
        }
    }
    drop(stdin);
    outcome.retransmits = server.counters().retransmits;
    outcome
}

fn expect_echo(
    priority: &str,
    suite: CipherSuite,
    cfg: DtlsConfig,
    extra: &[&str],
    drop_first: bool,
) -> Outcome {
    let o = run(priority, PSK, cfg, extra, drop_first);
    assert_eq!(o.server_error, None, "{priority}");
    assert_eq!(o.suite, Some(suite), "{priority}");
    assert!(
        o.echoed,
        "{priority}: line not echoed back ({} datagrams in)",
        o.datagrams_in
    );
    o
}

#[test]
fn gnutls_psk_each_suite() {
    require_gnutls_cli();
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
    require_gnutls_cli();
    expect_echo(
        BASE_PRIORITY,
        CipherSuite::PskAes256GcmSha384,
        DtlsConfig::default(),
        &[],
        false,
    );
    let prio = format!("{BASE_PRIORITY}:%NO_EXTENSIONS");
    expect_echo(
        &prio,
        CipherSuite::PskAes256GcmSha384,
        DtlsConfig::default(),
        &[],
        false,
    );
}

/// Our first flight is lost: GnuTLS retransmits its ClientHello and we
/// answer with the same flight again.
#[test]
fn gnutls_retransmission() {
    require_gnutls_cli();
    let o = expect_echo(
        BASE_PRIORITY,
        CipherSuite::PskAes256GcmSha384,
        DtlsConfig::default(),
        &[],
        true,
    );
    assert!(
        o.retransmits >= 1 && o.datagrams_in >= 4,
        "{} retransmits, {} in",
        o.retransmits,
        o.datagrams_in
    );
}

/// Small MTUs both ways: GnuTLS fragments its flights, we fragment ours.
#[test]
fn gnutls_fragmented_handshake() {
    require_gnutls_cli();
    let cfg = DtlsConfig {
        mtu: 80,
        ..DtlsConfig::default()
    };
    let o = expect_echo(
        BASE_PRIORITY,
        CipherSuite::PskAes256GcmSha384,
        cfg,
        &["--mtu=100"],
        false,
    );
    // The 151-byte ClientHello alone needs two datagrams at MTU 100.
    assert!(o.datagrams_in >= 5, "{} datagrams in", o.datagrams_in);
}

#[test]
fn gnutls_wrong_psk_is_refused() {
    require_gnutls_cli();
    // A Finished that does not decrypt is dropped (RFC 6347 §4.1.2.7): the
    // handshake ends at its deadline, never with an error.
    let cfg = DtlsConfig {
        handshake_timeout: Duration::from_secs(4),
        ..DtlsConfig::default()
    };
    let o = run(BASE_PRIORITY, [0x55; 32], cfg, &[], false);
    assert_eq!(o.server_error, None);
    assert_eq!(o.suite, None);
    assert!(!o.echoed);
}

/// A small GnuTLS client doing what openconnect 9.x's gnutls-dtls.c does:
/// PSK-NEGOTIATE with `GNUTLS_NO_EXTENSIONS` and the App-ID set as session
/// id, or the legacy resumption via `gnutls_session_set_premaster` (over
/// DTLS 1.2 with AES-GCM, or over DTLS 0.9 with AES-CBC), with openconnect's
/// priority strings, init flags and `gnutls_record_disable_padding`; also a
/// DTLS 0.9 server for our client. Written for this test; compiled at test
/// time with `cc … -lgnutls`.
const OC_CLIENT_C: &str = r#"
#include <gnutls/gnutls.h>
#include <gnutls/dtls.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int unhex(const char *s, unsigned char *out, int max) {
    int n = (int)strlen(s) / 2;
    if (n > max) return -1;
    for (int i = 0; i < n; i++) sscanf(s + 2 * i, "%2hhx", &out[i]);
    return n;
}

/* occlient PORT psk KEYHEX APPIDHEX -
 * occlient PORT legacy MASTERHEX SIDHEX 128|256          (DTLS 1.2, AES-GCM)
 * occlient PORT legacy09 MASTERHEX SIDHEX AES128-SHA|AES256-SHA   (DTLS 0.9)
 * occlient 0 server09 MASTERHEX SIDHEX AES128-SHA|AES256-SHA
 *   the server side of the last (as ocserv once did it): prints "PORT n",
 *   resumes for the first client and echoes its records until it goes quiet. */
/* A record of data. GNUTLS_E_AGAIN comes back, with nothing read, when a
 * late retransmission of the server's last handshake flight arrives after
 * the handshake (the client answers it with its own): wait on, as
 * openconnect does, a bounded number of times. */
static ssize_t recv_data(gnutls_session_t s, char *buf, size_t len) {
    ssize_t n;
    int tries = 0;
    do {
        n = gnutls_record_recv(s, buf, len);
    } while ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && ++tries < 20);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    int server = !strcmp(argv[2], "server09"), legacy = !strcmp(argv[2], "legacy");
    int dtls09 = server || !strcmp(argv[2], "legacy09"), err;
    unsigned char key[48], id[32];
    int klen = unhex(argv[3], key, sizeof key), idlen = unhex(argv[4], id, sizeof id);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (klen < 0 || idlen < 0) return 2;
    if (server) {
        struct sockaddr_in peer;
        socklen_t sl = sizeof sa, pl = sizeof peer;
        char b;
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (struct sockaddr *)&sa, &sl)) return 2;
        printf("PORT %d\n", ntohs(sa.sin_port));
        fflush(stdout);
        /* Learn the client from its first datagram, left queued for GnuTLS. */
        if (recvfrom(fd, &b, 1, MSG_PEEK, (struct sockaddr *)&peer, &pl) < 0) return 2;
        if (connect(fd, (struct sockaddr *)&peer, pl)) return 2;
    } else if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        return 2;
    }
    gnutls_session_t s;
    /* openconnect's resumed sessions keep GnuTLS's default extensions. */
    gnutls_init(&s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_DATAGRAM
        | ((dtls09 || legacy) ? 0 : GNUTLS_NO_EXTENSIONS));
    if (dtls09) {
        int big = !strcmp(argv[5], "AES256-SHA");
        gnutls_datum_t ms = { key, klen }, sid = { id, idlen };
        /* The priority strings and calls of openconnect 9's gnutls_dtls_ciphers[]. */
        err = gnutls_priority_set_direct(s, big
            ? "NONE:+VERS-DTLS0.9:+COMP-NULL:+AES-256-CBC:+SHA1:+RSA:%COMPAT"
            : "NONE:+VERS-DTLS0.9:+COMP-NULL:+AES-128-CBC:+SHA1:+RSA:%COMPAT", NULL);
        if (!err)
            err = gnutls_session_set_premaster(s, server ? GNUTLS_SERVER : GNUTLS_CLIENT, GNUTLS_DTLS0_9, GNUTLS_KX_RSA,
                big ? GNUTLS_CIPHER_AES_256_CBC : GNUTLS_CIPHER_AES_128_CBC,
                GNUTLS_MAC_SHA1, GNUTLS_COMP_NULL, &ms, &sid);
    } else if (!legacy) {
        gnutls_psk_client_credentials_t psk;
        gnutls_datum_t k = { key, klen }, sid = { id, idlen };
        err = gnutls_priority_set_direct(s, "NORMAL:-VERS-TLS-ALL:+VERS-DTLS-ALL:-KX-ALL:+PSK", NULL);
        gnutls_psk_allocate_client_credentials(&psk);
        gnutls_psk_set_client_credentials(psk, "psk", &k, 0);
        gnutls_credentials_set(s, GNUTLS_CRD_PSK, psk);
        gnutls_session_set_id(s, &sid);
    } else {
        int big = !strcmp(argv[5], "256");
        gnutls_datum_t ms = { key, klen }, sid = { id, idlen };
        /* openconnect's OC-DTLS1_2-AES{256,128}-GCM entries. */
        err = gnutls_priority_set_direct(s, big
            ? "NONE:+VERS-DTLS1.2:+COMP-NULL:+AES-256-GCM:+AEAD:+RSA:%COMPAT:+SIGN-ALL"
            : "NONE:+VERS-DTLS1.2:+COMP-NULL:+AES-128-GCM:+AEAD:+RSA:%COMPAT:+SIGN-ALL", NULL);
        if (!err)
            err = gnutls_session_set_premaster(s, GNUTLS_CLIENT, GNUTLS_DTLS1_2, GNUTLS_KX_RSA,
                big ? GNUTLS_CIPHER_AES_256_GCM : GNUTLS_CIPHER_AES_128_GCM,
                GNUTLS_MAC_AEAD, GNUTLS_COMP_NULL, &ms, &sid);
    }
    if (err) { printf("SETUP-FAILED %s\n", gnutls_strerror(err)); return 1; }
    if (legacy || dtls09) gnutls_record_disable_padding(s);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, 10000);
    do { err = gnutls_handshake(s); } while (err < 0 && !gnutls_error_is_fatal(err));
    if (err < 0) { printf("HANDSHAKE-FAILED %s\n", gnutls_strerror(err)); return 1; }
    printf("CONNECTED %s resumed=%d\n", gnutls_session_get_desc(s), gnutls_session_is_resumed(s));
    if ((legacy || dtls09) && !gnutls_session_is_resumed(s)) { printf("NOT-RESUMED\n"); return 1; }
    /* As openconnect after a resumption: room for a 1400-byte packet + type byte. */
    if ((legacy || dtls09) && (err = gnutls_dtls_set_data_mtu(s, 1401))) {
        printf("MTU-FAILED %s\n", gnutls_strerror(err));
        return 1;
    }
    fflush(stdout);
    if (server) {
        char in[2048];
        int served = 0;
        gnutls_record_set_timeout(s, 2000);
        for (;;) {
            ssize_t got = gnutls_record_recv(s, in + 6, sizeof in - 6);
            if (got <= 0) break;
            memcpy(in, "echo: ", 6);
            if (gnutls_record_send(s, in, got + 6) != got + 6) break;
            served++;
        }
        printf("SERVED %d\n", served);
        fflush(stdout);
        return 0;
    }
    const char msg[] = "openconnect-like client";
    gnutls_record_send(s, msg, sizeof msg - 1);
    char buf[2048];
    gnutls_record_set_timeout(s, 5000);
    ssize_t n = recv_data(s, buf, sizeof buf);
    if (n <= 0) { printf("RECV-FAILED %zd\n", n); return 1; }
    printf("%.*s\n", (int)n, buf);
    fflush(stdout);
    /* Then every length from 1 to 80 bytes (every CBC padding length) and
     * one of 1200, each echoed back whole. */
    char out[1200];
    for (int len = 1; len <= 81; len++) {
        int l = len == 81 ? 1200 : len;
        for (int i = 0; i < l; i++) out[i] = 'a' + (i + len) % 26;
        ssize_t sent = gnutls_record_send(s, out, l);
        if (sent != l) { printf("SEND-FAILED %d %s\n", l, gnutls_strerror((int)sent)); return 1; }
        n = recv_data(s, buf, sizeof buf);
        if (n != l + 6 || memcmp(buf, "echo: ", 6) || memcmp(buf + 6, out, l)) {
            printf("BAD-ECHO %d %zd\n", l, n);
            return 1;
        }
    }
    printf("ALL-ECHOED\n");
    fflush(stdout);
    gnutls_bye(s, GNUTLS_SHUT_WR);
    return 0;
}
"#;

/// Builds the C client once per test process; `None` without a C compiler
/// or the GnuTLS headers (Debian: gcc, libgnutls28-dev).
fn oc_client() -> PathBuf {
    build_oc_client().expect("building the GnuTLS test client: apt-get install gcc libgnutls28-dev")
}

fn build_oc_client() -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Cargo's scratch directory for integration tests: reused, never littered.
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dtls-occlient");
            std::fs::create_dir_all(&dir).ok()?;
            let src = dir.join("occlient.c");
            let bin = dir.join("occlient");
            std::fs::write(&src, OC_CLIENT_C).ok()?;
            let ok = Command::new("cc")
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .arg("-lgnutls")
                .status()
                .ok()?
                .success();
            if !ok {
                eprintln!("cannot build the GnuTLS test client");
            }
            ok.then_some(bin)
        })
        .clone()
}

#[test]
fn openconnect_like_psk_with_app_id() {
    let bin = oc_client();
    let app_id = [0xa5u8; 32];
    let sock = bind();
    let mut cmd = Command::new(bin);
    cmd.arg(sock.local_addr().expect("addr").port().to_string())
        .args(["psk", &hex(&PSK), &hex(&app_id), "-"]);
    let server = DtlsServer::new_psk(PSK, &DtlsConfig::default(), Instant::now());
    let o = serve(
        sock,
        server,
        cmd,
        None,
        "echo: openconnect-like client",
        false,
    );
    assert_eq!(o.server_error, None);
    assert_eq!(o.suite, Some(CipherSuite::PskAes256GcmSha384));
    assert_eq!(o.hello_session_id.as_deref(), Some(&app_id[..]));
    assert!(o.echoed);
}

#[test]
fn openconnect_like_legacy_resumption() {
    let bin = oc_client();
    for (bits, suite) in [
        ("128", CipherSuite::RsaAes128GcmSha256),
        ("256", CipherSuite::RsaAes256GcmSha384),
    ] {
        let (sid, master) = ([0x17u8; 32], [0x2cu8; 48]);
        let sock = bind();
        let mut cmd = Command::new(&bin);
        cmd.arg(sock.local_addr().expect("addr").port().to_string())
            .args(["legacy", &hex(&master), &hex(&sid), bits]);
        let server =
            DtlsServer::new_resume(sid, master, suite, &DtlsConfig::default(), Instant::now());
        let o = serve(
            sock,
            server,
            cmd,
            None,
            "echo: openconnect-like client",
            false,
        );
        assert_eq!(o.server_error, None, "{suite}");
        assert_eq!(o.suite, Some(suite));
        assert_eq!(o.hello_session_id.as_deref(), Some(&sid[..]));
        assert!(o.echoed, "{suite}");
    }
}

/// openconnect's `AES256-SHA` and `AES128-SHA`: DTLS 0.9 resumption of the
/// CSTP master secret. GnuTLS must report a resumed session, our echo of
/// its first line must come back, then records of every length 1..=80
/// (every CBC padding length) and 1200 bytes, each echoed whole. Once more
/// with our first flight lost: GnuTLS resends its ClientHello, we our flight.
#[test]
fn openconnect_like_dtls0_9_resumption() {
    let bin = oc_client();
    for (name, suite, drop_first) in [
        ("AES256-SHA", CipherSuite::RsaAes256CbcSha, false),
        ("AES128-SHA", CipherSuite::RsaAes128CbcSha, false),
        ("AES256-SHA", CipherSuite::RsaAes256CbcSha, true),
    ] {
        let (sid, master) = ([0x71u8; 32], [0x9du8; 48]);
        let sock = bind();
        let mut cmd = Command::new(&bin);
        let port = sock.local_addr().expect("addr").port().to_string();
        cmd.args([&port, "legacy09", &hex(&master), &hex(&sid), name]);
        let server =
            DtlsServer::new_resume(sid, master, suite, &DtlsConfig::default(), Instant::now());
        let o = serve(sock, server, cmd, None, "ALL-ECHOED", drop_first);
        assert_eq!(o.server_error, None, "{name}");
        assert_eq!(o.suite, Some(suite), "{name}");
        assert_eq!(o.hello_session_id.as_deref(), Some(&sid[..]), "{name}");
        assert_eq!(o.hello_version, Some(DTLS0_9), "{name}");
        assert!(o.echoed, "{name}: GnuTLS did not get every echo back");
        assert_eq!(
            o.retransmits >= 1,
            drop_first,
            "{name}: {} retransmits",
            o.retransmits
        );
    }
}

/// Our DTLS 0.9 client against a GnuTLS server resuming the same session
/// (`gnutls_session_set_premaster(GNUTLS_SERVER, GNUTLS_DTLS0_9, …)`, as
/// ocserv once served Cisco clients): it must report a resumed session and
/// echo records of every length 1..=80 and 1200 bytes.
#[test]
fn our_dtls0_9_client_against_gnutls_server() {
    let bin = oc_client();
    for (name, suite) in [
        ("AES256-SHA", CipherSuite::RsaAes256CbcSha),
        ("AES128-SHA", CipherSuite::RsaAes128CbcSha),
    ] {
        let (sid, master) = ([0x3au8; 32], [0x5bu8; 48]);
        let mut cmd = Command::new(&bin);
        cmd.args(["0", "server09", &hex(&master), &hex(&sid), name]);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut child = ChildGuard(child);
        let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
        let first = lines
            .next()
            .expect("a line from the server")
            .expect("utf-8");
        let port: u16 = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .expect("PORT n");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || lines.map_while(Result::ok).try_for_each(|l| tx.send(l)));

        let sock = bind();
        sock.connect(("127.0.0.1", port)).expect("connect");
        let mut client =
            DtlsClient::new_resume(sid, master, suite, &DtlsConfig::default(), Instant::now());
        let payloads: Vec<Vec<u8>> = (1..=81)
            .map(|n| if n == 81 { 1200 } else { n })
            .map(|n| (0..n).map(|i| b'a' + (i % 26) as u8).collect())
            .collect();
        let (mut sent, mut echoed) = (false, Vec::new());
        let (mut buf, mut out) = (vec![0u8; 65536], vec![0u8; 2048]);
        let start = Instant::now();
        while start.elapsed() < RUN_LIMIT && echoed.len() < payloads.len() && !client.is_closed() {
            let now = Instant::now();
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            while let Some(n) = client.poll_transmit(now, &mut out) {
                sock.send(&out[..n]).expect("send");
            }
            if client.is_connected() && !sent {
                for p in &payloads {
                    let n = client.seal(p, &mut out).expect("seal");
                    sock.send(&out[..n]).expect("send");
                }
                sent = true;
            }
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let mut off = 0;
                    while let Ok(Received::AppData { data, next }) =
                        client.handle_datagram(Instant::now(), &mut buf[off..n])
                    {
                        echoed.push(data.to_vec());
                        off += next;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(client.suite(), Some(suite), "{name}");
        let want: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| [b"echo: ", &p[..]].concat())
            .collect();
        assert_eq!(echoed, want, "{name}: echoes (UDP loopback keeps order)");
        assert_eq!(client.counters().auth_failed, 0);
        client.close();
        while let Some(n) = client.poll_transmit(Instant::now(), &mut out) {
            sock.send(&out[..n]).expect("send");
        }
        let said: Vec<String> = rx.iter().take(2).collect();
        eprintln!("server: {said:?}");
        assert!(
            said[0].starts_with("CONNECTED (DTLS0.9)-(RSA)-(AES-")
                && said[0].ends_with("resumed=1"),
            "{said:?}"
        );
        assert_eq!(said[1], "SERVED 81", "{name}");
    }
}
