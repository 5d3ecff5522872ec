//! Handshakes: all suites, suite choice, loss, duplication, fragmentation,
//! reordering, failures, legacy resumption, timeouts.

use super::*;
use crate::dtls::codec::Reader;
use crate::dtls::handshake::tests::{unhex, GNUTLS_CH, GNUTLS_CH_NO_EXT};
use crate::dtls::handshake::{msg, parse_fragment, parse_server_hello};

const PSK_SUITES: [CipherSuite; 3] = [
    CipherSuite::PskAes256GcmSha384,
    CipherSuite::PskAes128GcmSha256,
    CipherSuite::PskChacha20Poly1305Sha256,
];

#[test]
fn psk_handshake_every_suite() {
    for suite in PSK_SUITES {
        let cfg = cfg_with(&[suite]);
        let mut p = Pair::psk(&cfg, &DtlsConfig::default());
        p.drive();
        p.assert_connected(suite);
        p.exchange(b"\x00hello over dtls");
        p.exchange(&[0x5a; 1400]);
        // Two round trips plus nothing else: ClientHello, SH+SHD, CKE+CCS+Fin, CCS+Fin.
        assert_eq!((p.log[0].len(), p.log[1].len()), (2, 2), "{suite}");
        assert_eq!(p.elapsed(), Duration::ZERO);
        assert_eq!(*p.server.counters(), DtlsCounters::default());
        assert_eq!(*p.client.counters(), DtlsCounters::default());
    }
}

#[test]
fn client_hello_looks_like_openconnect() {
    let p = Pair::psk(&DtlsConfig::default(), &DtlsConfig::default());
    let mut p = p;
    p.drive();
    let ch = &p.log[0][0];
    let recs = records(ch);
    assert_eq!(recs.len(), 1);
    assert_eq!((ch[1], ch[2]), (0xfe, 0xfd));
    assert_eq!(client_hello_session_id(ch), Some(&APP_ID[..]));
    let f = parse_fragment(&mut Reader::new(&recs[0].3)).unwrap();
    // version, random, sid, empty cookie, suites A9 A8 CCAB, null compression, no extensions.
    let body = f.body;
    assert_eq!(body.len(), 2 + 32 + 33 + 1 + 8 + 2);
    assert_eq!(body[67..], [0, 0, 6, 0, 0xa9, 0, 0xa8, 0xcc, 0xab, 1, 0]);
}

#[test]
fn suite_choice_follows_client_unless_server_prefers() {
    let client = DtlsConfig::default(); // A9, A8, CCAB
    let server = cfg_with(&[
        CipherSuite::PskChacha20Poly1305Sha256,
        CipherSuite::PskAes128GcmSha256,
    ]);
    let mut p = Pair::psk(&client, &server);
    p.drive();
    p.assert_connected(CipherSuite::PskAes128GcmSha256);
    let server = DtlsConfig {
        prefer_server_order: true,
        ..server
    };
    let mut p = Pair::psk(&client, &server);
    p.drive();
    p.assert_connected(CipherSuite::PskChacha20Poly1305Sha256);
    // Nothing in common: the server refuses with handshake_failure.
    let mut p = Pair::psk(
        &cfg_with(&[CipherSuite::PskAes256GcmSha384]),
        &cfg_with(&[CipherSuite::PskAes128GcmSha256]),
    );
    p.drive();
    assert_eq!(p.server_err, Some(DtlsError::NoCommonSuite));
    // Its alert travels in epoch 0, unauthenticated: the client counts it
    // and gives up on its own clock.
    assert_eq!(p.client.counters().unauthenticated_alerts, 1);
    assert!(!p.client.is_connected());
}

/// Dropping each of the four flights once: the handshake recovers by timer
/// (flights 1–3) or by the peer's retransmission (flight 4, final).
#[test]
fn retransmits_after_each_dropped_flight() {
    for (dir, idx) in [
        (Dir::ToServer, 0),
        (Dir::ToClient, 0),
        (Dir::ToServer, 1),
        (Dir::ToClient, 1),
    ] {
        let mut p = Pair::psk(&DtlsConfig::default(), &DtlsConfig::default()).with_filter(
            move |d, i, _| {
                if d == dir && i == idx {
                    Fate::Drop
                } else {
                    Fate::Deliver
                }
            },
        );
        p.drive();
        p.assert_connected(CipherSuite::PskAes256GcmSha384);
        assert_eq!(p.elapsed(), Duration::from_secs(1), "{dir:?} {idx}");
        let total = p.client.counters().retransmits + p.server.counters().retransmits;
        assert!(total >= 1, "{dir:?} {idx}");
        p.exchange(b"\x00after loss");
    }
}

#[test]
fn retransmission_timer_doubles_then_gives_up() {
    let cfg = DtlsConfig {
        max_retransmits: 3,
        ..DtlsConfig::default()
    };
    let mut p = Pair::psk(&cfg, &cfg).with_filter(|d, _, _| {
        if d == Dir::ToServer {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    p.drive();
    // Retransmissions after 1, 2 and 4 s, then 8 s more before giving up.
    assert_eq!(p.closed_at[0], Some(Duration::from_secs(15)));
    assert_eq!(p.log[0].len(), 4);
    assert_eq!(
        p.client_events,
        [DtlsEvent::Closed {
            reason: CloseReason::HandshakeTimeout
        }]
    );
    // The server's own deadline ends it although it never heard a thing.
    assert_eq!(p.closed_at[1], Some(cfg.handshake_timeout));
    assert_eq!(
        p.server_events,
        [DtlsEvent::Closed {
            reason: CloseReason::HandshakeTimeout
        }]
    );
}

#[test]
fn duplicated_client_hello_is_answered_with_the_same_flight() {
    let mut p = Pair::psk(&DtlsConfig::default(), &DtlsConfig::default());
    let mut buf = [0u8; 2048];
    let n = p.client.poll_transmit(p.now, &mut buf).unwrap();
    let ch = buf[..n].to_vec();
    p.deliver(Dir::ToServer, ch.clone());
    // A repeat within a quarter second is not answered (a flood guard).
    p.now += Duration::from_millis(300);
    let first = p
        .server
        .poll_transmit(p.now, &mut buf)
        .map(|n| buf[..n].to_vec())
        .unwrap();
    assert_eq!(p.server.poll_transmit(p.now, &mut buf), None);
    p.deliver(Dir::ToServer, ch);
    let again = p
        .server
        .poll_transmit(p.now, &mut buf)
        .map(|n| buf[..n].to_vec())
        .unwrap();
    assert_eq!(p.server.counters().retransmits, 1);
    // Same messages, fresh record sequence numbers (RFC 6347 §4.2.4).
    let (a, b) = (records(&first), records(&again));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.0, x.1, &x.3), (y.0, y.1, &y.3));
        assert!(y.2 > x.2);
    }
    // The rest of the handshake still works.
    p.deliver(Dir::ToClient, again);
    p.drive();
    p.assert_connected(CipherSuite::PskAes256GcmSha384);
}

#[test]
fn tiny_mtu_fragments_every_flight() {
    for suite in PSK_SUITES {
        let cfg = DtlsConfig {
            mtu: MIN_MTU,
            ..cfg_with(&[suite])
        };
        let mut p = Pair::psk(&cfg, &cfg);
        p.drive();
        p.assert_connected(suite);
        for dgram in p.log.iter().flatten() {
            assert!(dgram.len() <= MIN_MTU);
        }
        // ClientHello (~90 bytes) and ServerHello (~70) take two fragments each.
        assert!(
            p.log[0].len() >= 3 && p.log[1].len() >= 3,
            "{} {}",
            p.log[0].len(),
            p.log[1].len()
        );
        p.exchange(&[7; 1000]);
    }
}

#[test]
fn fragments_reordered_duplicated_and_lost() {
    // Swap every other datagram, duplicate every fifth, drop the 7th each way.
    let mut p = Pair::psk(
        &DtlsConfig {
            mtu: 80,
            ..DtlsConfig::default()
        },
        &DtlsConfig {
            mtu: 80,
            ..DtlsConfig::default()
        },
    )
    .with_filter(|_, i, _| match i {
        7 => Fate::Drop,
        i if i % 5 == 4 => Fate::Duplicate,
        i if i % 2 == 0 => Fate::Hold,
        _ => Fate::Deliver,
    });
    p.drive();
    p.assert_connected(CipherSuite::PskAes256GcmSha384);
    p.exchange(b"\x00ok");
}

/// A Finished that does not decrypt (another key) is dropped like any
/// record that fails (RFC 6347 §4.1.2.7), never fatal: the handshake just
/// never completes, and ends at the deadline.
#[test]
fn wrong_psk_never_connects_and_nothing_is_fatal() {
    let cfg = DtlsConfig::default();
    let mut p = Pair::new(
        |now| DtlsClient::new_psk([1; 32], &APP_ID, &cfg, now).unwrap(),
        |now| DtlsServer::new_psk([2; 32], &cfg, now),
    );
    p.drive();
    assert_eq!(p.server_err, None);
    assert!(p.server.counters().auth_failed >= 1);
    assert!(p.server.is_closed() && !p.server.is_connected());
    assert!(!p.client.is_connected());
    assert_eq!(
        p.server_events,
        [DtlsEvent::Closed {
            reason: CloseReason::HandshakeTimeout
        }]
    );
}

/// Alerts before keys come from anyone who can send to the address: a
/// forged fatal alert in the middle of a handshake changes nothing.
#[test]
fn an_unauthenticated_alert_does_not_end_a_handshake() {
    let mut p = Pair::psk(&DtlsConfig::default(), &DtlsConfig::default());
    let mut buf = [0u8; 2048];
    let n = p.client.poll_transmit(p.now, &mut buf).unwrap();
    p.deliver(Dir::ToServer, buf[..n].to_vec());
    // handshake_failure, fatal, in epoch 0, as an off-path sender would.
    let alert = vec![21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40];
    p.deliver(Dir::ToServer, alert.clone());
    p.deliver(Dir::ToClient, alert);
    assert!(!p.server.is_closed() && !p.client.is_closed());
    assert_eq!(p.server.counters().unauthenticated_alerts, 1);
    assert_eq!(p.client.counters().unauthenticated_alerts, 1);
    p.drive();
    p.assert_connected(CipherSuite::PskAes256GcmSha384);
}

/// A ClientHello repeated many times at once (a replay flood) is answered
/// once per quarter of the first retransmission timeout, not each time.
#[test]
fn repeated_hellos_are_answered_at_a_limited_rate() {
    let mut p = Pair::psk(&DtlsConfig::default(), &DtlsConfig::default());
    let mut buf = [0u8; 2048];
    let n = p.client.poll_transmit(p.now, &mut buf).unwrap();
    let ch = buf[..n].to_vec();
    let mut answers = 0;
    for i in 0..40 {
        // 40 copies over one second.
        p.now += Duration::from_millis(25);
        p.deliver(Dir::ToServer, ch.clone());
        while p.server.poll_transmit(p.now, &mut buf).is_some() {
            if i > 0 {
                answers += 1;
            }
        }
    }
    assert!(
        (3..=5).contains(&answers),
        "{answers} answers to 39 repeats in ~1 s"
    );
    assert!(p.server.counters().resends_limited >= 30);
}

/// A ClientHello altered in flight (a suite it did not pick replaced) leaves
/// the keys equal but the transcripts different: Finished catches it.
#[test]
fn altered_client_hello_fails_finished() {
    let mut p =
        Pair::psk(&DtlsConfig::default(), &DtlsConfig::default()).with_filter(|d, i, dgram| {
            if d == Dir::ToServer && i == 0 {
                // Past the record and handshake headers, version and random:
                // the random itself may hold these bytes by chance.
                const SUITES_AFTER: usize = 13 + 12 + 2 + 32;
                let at = SUITES_AFTER
                    + dgram[SUITES_AFTER..]
                        .windows(2)
                        .position(|w| w == [0xcc, 0xab])
                        .unwrap();
                dgram[at + 1] = 0xac;
            }
            Fate::Deliver
        });
    p.drive();
    assert_eq!(p.server_err, Some(DtlsError::BadFinished));
    assert_eq!(p.client.counters().unauthenticated_alerts, 1);
    assert!(!p.client.is_connected());
}

#[test]
fn legacy_resume_both_gcm_suites() {
    for suite in [
        CipherSuite::RsaAes128GcmSha256,
        CipherSuite::RsaAes256GcmSha384,
    ] {
        for drop_final in [false, true] {
            let (sid, master) = ([0x5e; 32], [0x3c; 48]);
            let cfg = DtlsConfig::default();
            let mut p = Pair::new(
                |now| DtlsClient::new_resume(sid, master, suite, &cfg, now),
                |now| DtlsServer::new_resume(sid, master, suite, &cfg, now),
            )
            .with_filter(move |d, i, _| {
                if drop_final && d == Dir::ToServer && i == 1 {
                    Fate::Drop
                } else {
                    Fate::Deliver
                }
            });
            p.drive();
            p.assert_connected(suite);
            // Abbreviated: the server's only flight is ServerHello + CCS + Finished.
            let sh = &records(&p.log[1][0]);
            assert_eq!(
                sh.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
                [(22, 0), (20, 0), (22, 1)]
            );
            let f = parse_fragment(&mut Reader::new(&sh[0].3)).unwrap();
            assert_eq!(f.msg_type, msg::SERVER_HELLO);
            assert_eq!(parse_server_hello(f.body).unwrap().session_id, sid);
            assert_eq!(p.elapsed(), Duration::from_secs(u64::from(drop_final)));
            p.exchange(b"\x00legacy");
        }
    }
}

#[test]
fn legacy_resume_refusals() {
    let cfg = DtlsConfig::default();
    let suite = CipherSuite::RsaAes256GcmSha384;
    // Another session id.
    let mut p = Pair::new(
        |now| DtlsClient::new_resume([1; 32], [9; 48], suite, &cfg, now),
        |now| DtlsServer::new_resume([2; 32], [9; 48], suite, &cfg, now),
    );
    p.drive();
    assert!(matches!(p.server_err, Some(DtlsError::Resumption(_))));
    // Another suite.
    let mut p = Pair::new(
        |now| DtlsClient::new_resume([1; 32], [9; 48], CipherSuite::RsaAes128GcmSha256, &cfg, now),
        |now| DtlsServer::new_resume([1; 32], [9; 48], suite, &cfg, now),
    );
    p.drive();
    assert!(matches!(p.server_err, Some(DtlsError::Resumption(_))));
    // Another master secret: the server's Finished does not authenticate,
    // is dropped, and the handshake never completes.
    let mut p = Pair::new(
        |now| DtlsClient::new_resume([1; 32], [8; 48], suite, &cfg, now),
        |now| DtlsServer::new_resume([1; 32], [9; 48], suite, &cfg, now),
    );
    p.drive();
    assert_eq!((p.client_err.clone(), p.server_err.clone()), (None, None));
    assert!(p.client.counters().auth_failed >= 1);
    assert!(!p.client.is_connected() && !p.server.is_connected());
    // A PSK client (full handshake expected) against a resuming server.
    let mut p = Pair::new(
        |now| DtlsClient::new_psk(PSK, &[1; 32], &cfg, now).unwrap(),
        |now| DtlsServer::new_resume([1; 32], [9; 48], suite, &cfg, now),
    );
    p.drive();
    assert!(matches!(p.server_err, Some(DtlsError::Resumption(_))));
}

/// Real GnuTLS ClientHellos: with extensions the ServerHello carries exactly
/// an empty renegotiation_info (RFC 5746), without them no extensions.
#[test]
fn answers_gnutls_client_hellos() {
    for (hex, want_ri) in [(GNUTLS_CH, true), (GNUTLS_CH_NO_EXT, false)] {
        let now = Instant::now();
        let mut s = DtlsServer::new_psk(PSK, &DtlsConfig::default(), now);
        let mut d = unhex(hex);
        assert_eq!(s.handle_datagram(now, &mut d), Ok(Received::Done));
        let mut buf = [0u8; 1500];
        let n = s.poll_transmit(now, &mut buf).unwrap();
        let recs = records(&buf[..n]);
        let f = parse_fragment(&mut Reader::new(&recs[0].3)).unwrap();
        let sh = parse_server_hello(f.body).unwrap();
        assert_eq!(sh.suite, 0xa9);
        assert_eq!(sh.session_id.len(), 32);
        let ext: &[u8] = &[0, 5, 0xff, 0x01, 0, 1, 0];
        assert_eq!(f.body.ends_with(ext), want_ri);
        assert_eq!(f.body.len(), 70 + if want_ri { ext.len() } else { 0 });
        let done = parse_fragment(&mut Reader::new(&recs[1].3)).unwrap();
        assert_eq!(
            (done.msg_type, done.seq, done.body.len()),
            (msg::SERVER_HELLO_DONE, 1, 0)
        );
    }
}

#[test]
fn wrong_message_is_a_typed_error() {
    let now = Instant::now();
    let mut s = DtlsServer::new_psk(PSK, &DtlsConfig::default(), now);
    // A ServerHello sent to a server.
    let body = crate::dtls::handshake::encode_server_hello(DTLS1_2, &[0; 32], &[], 0xa9, false);
    let m = crate::dtls::handshake::encode_message(msg::SERVER_HELLO, 0, &body);
    let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
    d.extend_from_slice(&(m.len() as u16).to_be_bytes());
    d.extend_from_slice(&m);
    let e = s.handle_datagram(now, &mut d).unwrap_err();
    assert_eq!(
        e,
        DtlsError::Inappropriate {
            expected: "ClientHello",
            got: "ServerHello"
        }
    );
    let mut buf = [0u8; 100];
    let n = s.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(
        buf[..n],
        [
            21,
            0xfe,
            0xfd,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            2,
            2,
            alert::UNEXPECTED_MESSAGE
        ]
    );
    assert_eq!(s.poll_transmit(now, &mut buf), None);
    // A DTLS 1.0-only client.
    let mut d = unhex(GNUTLS_CH_NO_EXT);
    d[HEADER_LEN + 12 + 1] = 0xff;
    let mut s = DtlsServer::new_psk(PSK, &DtlsConfig::default(), now);
    assert_eq!(
        s.handle_datagram(now, &mut d),
        Err(DtlsError::ProtocolVersion(0xfeff))
    );
}

#[test]
fn handshake_deadline_closes_a_silent_server() {
    let now = Instant::now();
    let cfg = DtlsConfig::default();
    let mut s = DtlsServer::new_psk(PSK, &cfg, now);
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, now + cfg.handshake_timeout);
    s.handle_timeout(t - Duration::from_millis(1));
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(t);
    assert_eq!(
        s.poll_event(),
        Some(DtlsEvent::Closed {
            reason: CloseReason::HandshakeTimeout
        })
    );
    assert_eq!(s.poll_timeout(), None);
}
