//! The record layer once connected: in-place sealing, several records per
//! datagram, tampering, replay, early data, close, and garbage.

use super::*;

/// A connected pair: PSK-NEGOTIATE for the PSK suites, the legacy
/// resumption (DTLS 0.9 for CBC) for the others.
pub(super) fn connected(suite: CipherSuite) -> Pair {
    let mut p = if suite.is_psk() {
        Pair::psk(&cfg_with(&[suite]), &DtlsConfig::default())
    } else {
        Pair::resume(suite)
    };
    p.drive();
    p.assert_connected(suite);
    p
}

fn seal_from_client(p: &mut Pair, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; payload.len() + HEADROOM + TAILROOM];
    let n = p.client.seal(payload, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn seal_in_place_layout() {
    for suite in [
        CipherSuite::PskAes128GcmSha256,
        CipherSuite::PskChacha20Poly1305Sha256,
        CipherSuite::RsaAes256CbcSha,
    ] {
        let mut p = connected(suite);
        let payload = [0x00, 0x45, 1, 2, 3];
        let mut buf = [0u8; HEADROOM + 5 + TAILROOM];
        buf[HEADROOM..HEADROOM + 5].copy_from_slice(&payload);
        let r = p.server.seal_in_place(&mut buf, 5).unwrap();
        let start = HEADROOM - HEADER_LEN - suite.explicit_nonce_len();
        assert_eq!(r, start..start + rec_len(suite, 5));
        assert!(r.end <= buf.len());
        let mut rec = buf[r].to_vec();
        match p.client.handle_datagram(p.now, &mut rec) {
            Ok(Received::AppData { data, next }) => {
                assert_eq!(&data[..], &payload[..]);
                assert_eq!(next, rec_len(suite, 5));
            }
            other => panic!("{other:?}"),
        }
        // Too small a buffer or too large a payload changes nothing.
        assert_eq!(
            p.server
                .seal_in_place(&mut buf[..HEADROOM + 5 + TAILROOM - 1], 5),
            Err(DtlsError::BufferTooSmall {
                need: HEADROOM + 5 + TAILROOM
            })
        );
        let mut big = vec![0u8; HEADROOM + MAX_PLAINTEXT + 1 + TAILROOM];
        assert!(matches!(
            p.server.seal_in_place(&mut big, MAX_PLAINTEXT + 1),
            Err(DtlsError::TooLong { .. })
        ));
        assert!(p.server.is_connected());
        p.exchange(b"\x00still fine");
    }
}

fn rec_len(suite: CipherSuite, payload: usize) -> usize {
    if suite.is_cbc() {
        // IV, then payload + MAC + padding (at least one byte) in whole blocks.
        HEADER_LEN + 16 + (payload + 20 + 1).next_multiple_of(16)
    } else {
        HEADER_LEN + suite.record_overhead() + payload
    }
}

#[test]
fn not_connected_refuses_to_seal() {
    let now = Instant::now();
    let mut s = DtlsServer::new_psk(PSK, &DtlsConfig::default(), now);
    let mut buf = [0u8; 64];
    assert_eq!(s.seal_in_place(&mut buf, 4), Err(DtlsError::NotConnected));
    s.close();
    assert_eq!(s.seal_in_place(&mut buf, 4), Err(DtlsError::Closed));
}

#[test]
fn several_records_in_one_datagram() {
    let mut p = connected(CipherSuite::PskAes256GcmSha384);
    let mut dgram = seal_from_client(&mut p, b"\x00one");
    dgram.extend(seal_from_client(&mut p, b"\x00two"));
    dgram.extend(seal_from_client(&mut p, b"\x03three"));
    p.deliver(Dir::ToServer, dgram);
    assert_eq!(
        p.server_rx,
        [
            b"\x00one".to_vec(),
            b"\x00two".to_vec(),
            b"\x03three".to_vec()
        ]
    );
}

#[test]
fn tampered_record_is_dropped_and_counted() {
    for suite in [
        CipherSuite::PskAes256GcmSha384,
        CipherSuite::PskChacha20Poly1305Sha256,
        CipherSuite::RsaAes128CbcSha,
    ] {
        let mut p = connected(suite);
        let good = seal_from_client(&mut p, b"\x00payload");
        for i in [3, 10, HEADER_LEN, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert_eq!(
                p.server.handle_datagram(p.now, &mut bad),
                Ok(Received::Done),
                "byte {i}"
            );
        }
        // Flipping an epoch byte moves it to an epoch we cannot read.
        assert_eq!(p.server.counters().auth_failed, 3);
        assert_eq!(p.server.counters().wrong_epoch, 1);
        // The genuine record still gets through: failures did not touch the window.
        p.deliver(Dir::ToServer, good);
        assert_eq!(p.server_rx, [b"\x00payload".to_vec()]);
        assert!(p.server.is_connected());
    }
}

#[test]
fn replayed_and_old_records_are_dropped() {
    let mut p = connected(CipherSuite::PskAes128GcmSha256);
    let first = seal_from_client(&mut p, b"\x00first");
    p.deliver(Dir::ToServer, first.clone());
    p.deliver(Dir::ToServer, first.clone());
    assert_eq!(p.server_rx.len(), 1);
    assert_eq!(p.server.counters().replayed, 1);
    // Seal 70 more; deliver only the last: the first is now left of the window.
    let mut last = Vec::new();
    let mut kept = Vec::new();
    for i in 0..70u8 {
        last = seal_from_client(&mut p, &[0, i]);
        if i == 10 {
            kept = last.clone();
        }
    }
    p.deliver(Dir::ToServer, last);
    p.deliver(Dir::ToServer, first);
    assert_eq!(p.server.counters().too_old, 1);
    // Record 11 of 71 is still inside the 64-wide window: accepted late, once.
    p.deliver(Dir::ToServer, kept.clone());
    p.deliver(Dir::ToServer, kept);
    assert_eq!(p.server_rx.len(), 3);
    assert_eq!(p.server.counters().replayed, 2);
}

#[test]
fn early_and_plaintext_application_data_are_dropped() {
    let mut p = Pair::psk(&DtlsConfig::default(), &DtlsConfig::default());
    // Plaintext application data in epoch 0 before anything else.
    let mut d = vec![23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 0, 0];
    assert_eq!(p.server.handle_datagram(p.now, &mut d), Ok(Received::Done));
    assert_eq!(p.server.counters().unexpected, 1);
    // An epoch-1 record before any keys.
    d[4] = 1;
    assert_eq!(p.server.handle_datagram(p.now, &mut d), Ok(Received::Done));
    assert_eq!(p.server.counters().wrong_epoch, 1);
    p.drive();
    p.assert_connected(CipherSuite::PskAes256GcmSha384);
}

#[test]
fn close_notify_reaches_the_peer() {
    let mut p = connected(CipherSuite::PskAes256GcmSha384);
    p.client.close();
    assert!(p.client.is_closed());
    p.drive();
    assert_eq!(
        p.client_events.last(),
        Some(&DtlsEvent::Closed {
            reason: CloseReason::Local
        })
    );
    assert_eq!(
        p.server_events.last(),
        Some(&DtlsEvent::Closed {
            reason: CloseReason::PeerClosed
        })
    );
    assert!(p.server.is_closed());
    let mut buf = [0u8; HEADROOM + 1 + TAILROOM];
    assert_eq!(p.server.seal(b"x", &mut buf), Err(DtlsError::Closed));
}

#[test]
fn plaintext_alert_after_handshake_is_ignored() {
    let mut p = connected(CipherSuite::PskAes256GcmSha384);
    let mut d = vec![21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 50, 0, 2, 2, 40];
    assert_eq!(p.server.handle_datagram(p.now, &mut d), Ok(Received::Done));
    assert!(p.server.is_connected());
    assert_eq!(p.server.counters().wrong_epoch, 1);
}

/// xorshift64, deterministic.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Mutated handshakes and random datagrams at every stage: no panic, and a
/// server either finishes, fails with an error, or keeps waiting.
#[test]
fn mutated_datagrams_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let seed = rng.next();
        let mut p = Pair::psk(
            &DtlsConfig {
                mtu: 64 + (seed as usize % 200),
                ..DtlsConfig::default()
            },
            &DtlsConfig::default(),
        )
        .with_filter(move |_, i, d| {
            let mut r = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            match r.next() % 6 {
                0 if !d.is_empty() => {
                    let at = r.next() as usize % d.len();
                    d[at] ^= 1 << (r.next() % 8);
                }
                1 => d.truncate(r.next() as usize % (d.len() + 1)),
                2 => d.extend((0..r.next() % 40).map(|_| r.next() as u8)),
                3 => return Fate::Hold,
                _ => {}
            }
            Fate::Deliver
        });
        p.drive();
        if p.server.is_connected() && p.client.is_connected() {
            p.exchange(&[round as u8; 10]);
        }
        let mut junk: Vec<u8> = (0..rng.next() % 200).map(|_| rng.next() as u8).collect();
        let _ = p.server.handle_datagram(p.now, &mut junk);
    }
}
