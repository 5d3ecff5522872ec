//! Fuzz entry points for the sans-IO parsers of `ocserv-proto`, shared by
//! the cargo-fuzz targets in `fuzz_targets/` and by `tests/corpus.rs`, so
//! plain `cargo test` replays the corpus too. Each one feeds arbitrary
//! bytes to a parser and panics if an invariant breaks; parser errors are
//! fine, panics are not.

use ocserv_proto::{auth, connect, cstp, http};

mod gro;
pub use gro::gro_roundtrip;

/// Stream-decodes CSTP frames from the front of `data` and checks that every
/// frame re-encodes to the bytes it came from.
pub fn cstp_frame(data: &[u8]) {
    // Room for the largest legal frame, so re-encoding never runs short.
    let mut out = [0u8; cstp::HEADER_LEN + cstp::MAX_PAYLOAD];
    let mut off = 0;
    loop {
        assert!(off <= data.len());
        let rest = &data[off..];
        match cstp::decode(rest) {
            Ok(None) => {
                // "Need more" is only right when the header or payload is cut short.
                if rest.len() >= cstp::HEADER_LEN {
                    assert_eq!(rest[..4], cstp::MAGIC);
                    let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
                    assert!(len <= cstp::MAX_PAYLOAD);
                    assert!(rest.len() < cstp::HEADER_LEN + len);
                }
                break;
            }
            Ok(Some((frame, used))) => {
                assert!(used <= rest.len(), "consumed {used} of {}", rest.len());
                assert_eq!(used, cstp::HEADER_LEN + frame.payload.len());
                assert!(frame.payload.len() <= cstp::MAX_PAYLOAD);
                // The payload must borrow the input in place, not a copy.
                assert!(std::ptr::eq(frame.payload, &rest[cstp::HEADER_LEN..used]));
                assert_eq!(cstp::FrameType::from_byte(frame.ty.to_byte()), frame.ty);
                // One byte short of the frame must ask for more, not fail.
                assert_eq!(cstp::decode(&rest[..used - 1]), Ok(None));

                let n = cstp::encode(frame.ty, frame.payload, &mut out).expect("re-encode");
                assert_eq!(n, used);
                // Byte 7 is reserved: decode ignores it, encode writes 0.
                assert_eq!(out[..7], rest[..7]);
                assert_eq!(out[7], 0);
                assert_eq!(out[cstp::HEADER_LEN..n], rest[cstp::HEADER_LEN..used]);
                let short = cstp::encode(frame.ty, frame.payload, &mut out[..n - 1]);
                assert_eq!(short, Err(cstp::FrameError::BufferTooSmall { need: n }));
                off += used;
            }
            Err(cstp::FrameError::BadMagic(m)) => {
                assert!(rest.len() >= cstp::HEADER_LEN);
                assert_eq!(m[..], rest[..4]);
                assert_ne!(m, cstp::MAGIC);
                break;
            }
            Err(cstp::FrameError::TooLong { len, max }) => {
                assert_eq!(max, cstp::MAX_PAYLOAD);
                assert!(len > max);
                assert_eq!(len, usize::from(u16::from_be_bytes([rest[4], rest[5]])));
                break;
            }
            Err(e @ cstp::FrameError::BufferTooSmall { .. }) => panic!("decode returned {e:?}"),
        }
    }

    // The encoder side: first byte picks the type, the rest is the payload.
    if let Some((&ty, payload)) = data.split_first() {
        let ty = cstp::FrameType::from_byte(ty);
        // Sized to fit, so an oversize payload must fail as TooLong, not BufferTooSmall.
        let mut wire = vec![0u8; cstp::HEADER_LEN + payload.len()];
        match cstp::encode(ty, payload, &mut wire) {
            Ok(n) => {
                assert_eq!(n, wire.len());
                let (frame, used) = cstp::decode(&wire)
                    .expect("own frame decodes")
                    .expect("complete");
                assert_eq!((frame.ty, frame.payload, used), (ty, payload, n));
            }
            Err(e) => assert_eq!(
                e,
                cstp::FrameError::TooLong {
                    len: payload.len(),
                    max: cstp::MAX_PAYLOAD
                }
            ),
        }
    }
}

/// Parses an HTTP request head and, like the connection code, hands the body
/// that follows it to the auth parser.
pub fn http_request(data: &[u8]) {
    match http::parse_head(data) {
        Ok(None) => assert!(
            data.len() <= http::MAX_HEAD,
            "{} bytes still incomplete",
            data.len()
        ),
        Ok(Some((head, used))) => {
            assert!(used <= data.len(), "used {used} of {}", data.len());
            assert!(used <= http::MAX_HEAD);
            assert!(head.content_length <= http::MAX_BODY);
            match head.header("content-length") {
                Some(v) => {
                    assert!(
                        v.trim().bytes().all(|b| b.is_ascii_digit()),
                        "Content-Length {v:?}"
                    );
                    assert_eq!(v.trim().parse::<usize>().ok(), Some(head.content_length));
                }
                None => assert_eq!(head.content_length, 0),
            }
            assert!(head.header("transfer-encoding").is_none());
            let _ = (
                head.cookie("webvpn"),
                head.cookie(""),
                head.header("x-cstp-mtu"),
            );
            connect_headers(&head);
            // The head ends at `used`: parsing exactly that much gives the same answer.
            let (again, used2) = http::parse_head(&data[..used])
                .expect("same head")
                .expect("complete");
            assert_eq!(
                (used2, again.method, &again.path),
                (used, head.method, &head.path)
            );

            let end = used.saturating_add(head.content_length).min(data.len());
            let _ = auth::parse_request(&data[used..end]);
        }
        Err(e) => {
            if let http::HttpError::BodyTooLarge(n) = e {
                assert!(n > http::MAX_BODY);
            }
            assert!(matches!(e.status().0, 400 | 413));
        }
    }
}

/// What a CONNECT's headers decide: DTLS mode, legacy master secret, IPv6
/// form, mobile or not.
fn connect_headers(head: &http::RequestHead) {
    assert!(connect::choose_dtls(head, false, false).is_none());
    if let Some(choice) = connect::choose_dtls(head, true, true) {
        // PSK may be offered in either list; it is answered in X-DTLS-CipherSuite.
        let offered = |h: &str| {
            head.header(h)
                .is_some_and(|list| connect::has_token(list, choice.value))
        };
        assert!(offered(choice.header) || offered("X-DTLS12-CipherSuite"));
    }
    if let Some(secret) = head
        .header("X-DTLS-Master-Secret")
        .and_then(connect::parse_master_secret)
    {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(head
            .header("X-DTLS-Master-Secret")
            .is_some_and(|h| h.trim().eq_ignore_ascii_case(&hex)));
    }
    let _ = (connect::ipv6_form(head), connect::is_mobile(head));
}

/// Parses a login POST body, drives one exchange step with it, and checks
/// that text escaped by `xml_escape` reads back unchanged.
pub fn auth_xml(data: &[u8]) {
    match auth::parse_request(data) {
        Ok(req) => {
            assert!(req.kind.is_some());
            let mut ex = auth::AuthExchange::new();
            if let auth::Step::Verify { username, .. } = ex.handle(req) {
                assert!(!username.is_empty());
                let _ = ex.verified(false);
            }
        }
        Err(auth::AuthParseError::NotUtf8) => assert!(std::str::from_utf8(data).is_err()),
        Err(auth::AuthParseError::Xml(_)) => {}
    }

    // xml_escape drops control characters except '\n'; the reader trims XML
    // whitespace at the ends of text. What is left must come back verbatim.
    let text = String::from_utf8_lossy(data);
    let doc = format!(
        r#"<config-auth type="auth-reply"><auth><username>{}</username></auth></config-auth>"#,
        auth::xml_escape(&text)
    );
    let req = auth::parse_request(doc.as_bytes()).expect("escaped text parses");
    let kept: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    let want = kept.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    assert_eq!(req.username.as_deref(), (!want.is_empty()).then_some(want));
    assert_eq!(req.kind, Some(auth::RequestKind::AuthReply));
}

/// Drives a `DtlsServer` (PSK, or legacy resume over DTLS 1.2 or 0.9, picked
/// by the first byte)
/// with a script read from `data`: our client's genuine datagrams, mutated
/// copies, raw bytes, replays, app data and clock jumps, in any order. The
/// genuine client lets inputs reach every state past the AEAD. Checks that
/// nothing panics and that errors, events and outputs stay consistent.
pub fn dtls_server(data: &[u8]) {
    dtls_server_script(data);
}

/// [`dtls_server`], returning how many application records the server
/// accepted (so tests can check a script reaches the traffic state).
pub fn dtls_server_script(data: &[u8]) -> usize {
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use ocserv_proto::dtls::{
        client_hello_session_id, is_client_hello, CipherSuite, DtlsClient, DtlsConfig, DtlsServer,
        Received, MAX_PLAINTEXT, MIN_MTU,
    };

    let mut input = data.iter().copied();
    let mut byte = move || input.next();
    let Some(setup) = byte() else { return 0 };
    let mut accepted = 0;
    // The fuzz harness's own clock; the core only ever sees values derived from it.
    let mut now = Instant::now();
    let cfg = DtlsConfig {
        mtu: MIN_MTU + usize::from(setup >> 2) * 8,
        ..DtlsConfig::default()
    };
    let (mut client, mut server) = if setup & 1 == 0 {
        let suites = [
            CipherSuite::PskAes256GcmSha384,
            CipherSuite::PskAes128GcmSha256,
            CipherSuite::PskChacha20Poly1305Sha256,
        ];
        let ccfg = DtlsConfig {
            suites: vec![suites[usize::from(setup >> 1) % 3]],
            ..cfg.clone()
        };
        let client = DtlsClient::new_psk([3; 32], &[0xa1; 32], &ccfg, now).expect("client");
        (client, DtlsServer::new_psk([3; 32], &cfg, now))
    } else {
        // Bit 1 picks the key size, bit 2 DTLS 0.9 with CBC over DTLS 1.2 with GCM.
        let suite = [
            CipherSuite::RsaAes128GcmSha256,
            CipherSuite::RsaAes256GcmSha384,
            CipherSuite::RsaAes128CbcSha,
            CipherSuite::RsaAes256CbcSha,
        ][usize::from(setup >> 1) & 3];
        (
            DtlsClient::new_resume([5; 32], [6; 48], suite, &cfg, now),
            DtlsServer::new_resume([5; 32], [6; 48], suite, &cfg, now),
        )
    };

    let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
    let mut last: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let feed = |server: &mut DtlsServer, now: Instant, d: &[u8]| {
        // The shard peeks at every datagram before any session exists.
        if let Some(sid) = client_hello_session_id(d) {
            assert!(is_client_hello(d) && sid.len() <= 32);
        }
        let mut d = d.to_vec();
        let was_closed = server.is_closed();
        let (mut off, mut records) = (0, 0);
        while off < d.len() {
            match server.handle_datagram(now, &mut d[off..]) {
                Ok(Received::AppData { data, next }) => {
                    assert!(server.is_connected() && server.suite().is_some());
                    assert!(data.len() <= MAX_PLAINTEXT && next > 0 && next <= d.len() - off);
                    off += next;
                    records += 1;
                }
                Ok(Received::Done) => break,
                Err(_) => {
                    assert!(server.is_closed() && !server.is_connected());
                    break;
                }
            }
        }
        assert!(!was_closed || server.is_closed());
        records
    };
    while let Some(op) = byte() {
        match op % 8 {
            0 => {
                while let Some(n) = client.poll_transmit(now, &mut buf) {
                    to_server.push_back(buf[..n].to_vec());
                }
            }
            1 => {
                if let Some(d) = to_server.pop_front() {
                    accepted += feed(&mut server, now, &d);
                    last = d;
                }
            }
            2 => {
                if let Some(mut d) = to_server.pop_front() {
                    let (at, x) = (byte().unwrap_or(0), byte().unwrap_or(1));
                    if !d.is_empty() {
                        let i = usize::from(at) % d.len();
                        d[i] ^= x;
                    }
                    if op & 8 != 0 {
                        d.truncate(usize::from(at));
                    }
                    accepted += feed(&mut server, now, &d);
                    last = d;
                }
            }
            3 => {
                let len = usize::from(byte().unwrap_or(0));
                let d: Vec<u8> = (0..len).map_while(|_| byte()).collect();
                accepted += feed(&mut server, now, &d);
                last = d;
            }
            4 => {
                now += Duration::from_millis(u64::from(byte().unwrap_or(0)) * 250);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
            5 => {
                while let Some(n) = server.poll_transmit(now, &mut buf) {
                    assert!(n <= cfg.mtu);
                    let mut d = buf[..n].to_vec();
                    let mut off = 0;
                    while let Ok(Received::AppData { next, .. }) =
                        client.handle_datagram(now, &mut d[off..])
                    {
                        off += next;
                    }
                }
                while server.poll_event().is_some() {}
                while client.poll_event().is_some() {}
            }
            6 => {
                let len = usize::from(byte().unwrap_or(0)) * 8;
                if let Ok(n) = client.seal(&vec![op; len], &mut buf) {
                    to_server.push_back(buf[..n].to_vec());
                }
            }
            _ => {
                // Replay the last datagram as it was before decryption.
                accepted += feed(&mut server, now, &last);
            }
        }
        if server.poll_timeout().is_some() {
            assert!(!server.is_closed());
        }
    }
    accepted
}
