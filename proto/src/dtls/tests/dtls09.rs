//! DTLS 0.9 (the CBC legacy resumption, docs/protocol.md, "DTLS 0.9"): the wire
//! format, the Finished computation, loss, fragmentation, refusals.

use super::records::connected;
use super::*;
use crate::dtls::codec::Reader;
use crate::dtls::handshake::tests::unhex;
use crate::dtls::handshake::{msg, parse_client_hello, parse_fragment, parse_server_hello};
use crate::dtls::keys::{derive_keys, verify_data, Side};
use crate::dtls::record;

const CBC_SUITES: [CipherSuite; 2] = [CipherSuite::RsaAes128CbcSha, CipherSuite::RsaAes256CbcSha];

fn body_of(fragment: &[u8]) -> (u8, u16, Vec<u8>) {
    let f = parse_fragment(&mut Reader::new(fragment)).unwrap();
    assert_eq!(
        f.offset as usize + f.body.len(),
        f.length as usize,
        "unfragmented"
    );
    (f.msg_type, f.seq, f.body.to_vec())
}

#[test]
fn resume_both_cbc_suites_with_and_without_loss() {
    for suite in CBC_SUITES {
        for drop_final in [false, true] {
            let mut p = Pair::resume(suite).with_filter(move |d, i, _| {
                if drop_final && d == Dir::ToServer && i == 1 {
                    Fate::Drop
                } else {
                    Fate::Deliver
                }
            });
            p.drive();
            p.assert_connected(suite);
            // Lost: the server resends its flight after 1 s, the client its answer.
            assert_eq!(
                p.elapsed(),
                Duration::from_secs(u64::from(drop_final)),
                "{suite}"
            );
            assert_eq!(p.server.counters().retransmits, u64::from(drop_final));
            assert_eq!(p.client.counters().retransmits, u64::from(drop_final));
            for len in [0, 1, 11, 12, 27, 28, 1399, 1400] {
                p.exchange(&vec![len as u8; len]);
            }
            // Every record of both sides, handshake and data, says 0x0100.
            for dgram in p.log.iter().flatten() {
                let mut off = 0;
                while let Ok(h) = RecordHeader::parse(&dgram[off..]) {
                    assert_eq!(h.version, DTLS0_9, "{suite}");
                    off += h.total_len();
                }
            }
        }
    }
}

/// The server's flight byte by byte: ServerHello (version 0x0100, same
/// session id, message_seq 0), a 3-byte CCS carrying message_seq 1, and a
/// Finished with message_seq 2 whose verify_data is the TLS 1.0 PRF over
/// MD5 ‖ SHA-1 of the ClientHello and ServerHello *bodies* (no headers, as
/// OpenSSL's DTLS1_BAD_VER and GnuTLS's DTLS0_9 hash them). The client's
/// final flight mirrors it: CCS [1, 0, 1], Finished message_seq 2.
#[test]
fn wire_format_and_finished_transcript() {
    let suite = CipherSuite::RsaAes256CbcSha;
    let mut p = Pair::resume(suite);
    p.drive();
    p.assert_connected(suite);
    let ch = records(&p.log[0][0]);
    assert_eq!(ch.len(), 1);
    let (t, seq, ch_body) = body_of(&ch[0].3);
    assert_eq!((t, seq), (msg::CLIENT_HELLO, 0));
    let hello = parse_client_hello(&ch_body).unwrap();
    assert_eq!(
        (hello.version, hello.session_id),
        (DTLS0_9, &SESSION_ID[..])
    );
    assert_eq!(hello.suites, [0x00, 0x35]);

    let flight = records(&p.log[1][0]);
    assert_eq!(
        flight.iter().map(|r| (r.0, r.1, r.2)).collect::<Vec<_>>(),
        [(22, 0, 0), (20, 0, 1), (22, 1, 0)]
    );
    let (t, seq, sh_body) = body_of(&flight[0].3);
    assert_eq!((t, seq), (msg::SERVER_HELLO, 0));
    let sh = parse_server_hello(&sh_body).unwrap();
    assert_eq!(
        (sh.version, sh.session_id, sh.suite),
        (DTLS0_9, &SESSION_ID[..], 0x0035)
    );
    assert_eq!(flight[1].3, [1, 0, 1]);

    // Decrypt the server's Finished with keys derived here from the randoms.
    let keys = derive_keys(suite, &MASTER, &hello.random, &sh.random);
    let fin = &p.log[1][0][p.log[1][0].len() - HEADER_LEN - flight[2].3.len()..];
    let hdr = RecordHeader::parse(fin).unwrap();
    let mut body = fin[HEADER_LEN..].to_vec();
    let pt = record::open(&keys.server_write, &hdr, &mut body).expect("server Finished opens");
    let (t, seq, vd) = body_of(&body[pt]);
    assert_eq!((t, seq), (msg::FINISHED, 2));
    let transcript = [&ch_body[..], &sh_body[..]].concat();
    assert_eq!(
        vd,
        verify_data(PrfHash::Md5Sha1, &MASTER, Side::Server, &transcript)
    );

    // The client's CCS and Finished.
    let fin2 = records(&p.log[0][1]);
    assert_eq!(
        fin2.iter().map(|r| (r.0, r.1, r.2)).collect::<Vec<_>>(),
        [(20, 0, 1), (22, 1, 0)]
    );
    assert_eq!(fin2[0].3, [1, 0, 1]);
    let dgram = &p.log[0][1];
    let at = dgram.len() - HEADER_LEN - fin2[1].3.len();
    let hdr = RecordHeader::parse(&dgram[at..]).unwrap();
    let mut body = dgram[at + HEADER_LEN..].to_vec();
    let pt = record::open(&keys.client_write, &hdr, &mut body).expect("client Finished opens");
    let (t, seq, vd2) = body_of(&body[pt]);
    assert_eq!((t, seq), (msg::FINISHED, 2));
    let transcript = [&ch_body[..], &sh_body[..], &vd[..]].concat();
    assert_eq!(
        vd2,
        verify_data(PrfHash::Md5Sha1, &MASTER, Side::Client, &transcript)
    );
}

/// At the smallest MTU the ClientHello, ServerHello and both encrypted
/// Finished messages are fragmented; the handshake still completes.
#[test]
fn tiny_mtu_fragments_cbc_flights() {
    for suite in CBC_SUITES {
        let cfg = DtlsConfig {
            mtu: MIN_MTU,
            ..DtlsConfig::default()
        };
        let mut p = Pair::new(
            |now| DtlsClient::new_resume(SESSION_ID, MASTER, suite, &cfg, now),
            |now| DtlsServer::new_resume(SESSION_ID, MASTER, suite, &cfg, now),
        );
        p.drive();
        p.assert_connected(suite);
        assert!(p.log.iter().flatten().all(|d| d.len() <= MIN_MTU));
        assert!(p.log[1].len() >= 3, "{}", p.log[1].len());
        p.exchange(b"\x00small mtu");
    }
}

#[test]
fn refusals() {
    let cfg = DtlsConfig::default();
    let cbc = CipherSuite::RsaAes128CbcSha;
    // DTLS 1.2 ClientHellos never reach a DTLS 0.9 server: dropped and counted.
    let mut p = Pair::new(
        |now| {
            DtlsClient::new_resume(
                SESSION_ID,
                MASTER,
                CipherSuite::RsaAes128GcmSha256,
                &cfg,
                now,
            )
        },
        |now| DtlsServer::new_resume(SESSION_ID, MASTER, cbc, &cfg, now),
    );
    p.drive();
    assert!(!p.server.is_connected() && !p.client.is_connected());
    assert!(p.server.counters().bad_version >= 1);
    // Nor the other way round.
    let mut p = Pair::new(
        |now| DtlsClient::new_resume(SESSION_ID, MASTER, cbc, &cfg, now),
        |now| {
            DtlsServer::new_resume(
                SESSION_ID,
                MASTER,
                CipherSuite::RsaAes128GcmSha256,
                &cfg,
                now,
            )
        },
    );
    p.drive();
    assert!(!p.server.is_connected());
    assert!(p.server.counters().bad_version >= 1);
    // A 0x0100 record whose ClientHello asks for DTLS 1.2 inside.
    let mut p = Pair::resume(cbc);
    let mut buf = [0u8; 1500];
    let n = p.client.poll_transmit(p.now, &mut buf).unwrap();
    buf[HEADER_LEN + 12..HEADER_LEN + 14].copy_from_slice(&DTLS1_2.to_be_bytes());
    assert_eq!(
        p.server.handle_datagram(p.now, &mut buf[..n]),
        Err(DtlsError::ProtocolVersion(DTLS1_2))
    );
    // Another suite, another session, another master secret.
    for (suite, sid, master) in [
        (CipherSuite::RsaAes256CbcSha, SESSION_ID, MASTER),
        (cbc, [1; 32], MASTER),
        (cbc, SESSION_ID, [2; 48]),
    ] {
        let mut p = Pair::new(
            |now| DtlsClient::new_resume(sid, master, suite, &cfg, now),
            |now| DtlsServer::new_resume(SESSION_ID, MASTER, cbc, &cfg, now),
        );
        p.drive();
        assert!(!p.server.is_connected() && !p.client.is_connected());
        // Refused, or (another master secret) never authenticated.
        let e = p.server_err.clone().or(p.client_err.clone());
        assert!(matches!(e, None | Some(DtlsError::Resumption(_))), "{e:?}");
    }
}

/// Any flipped bit of a CBC data record, in the IV, the ciphertext or the
/// padding, is dropped and counted; nothing is returned as an error.
#[test]
fn tampered_cbc_records_are_counted() {
    let mut p = connected(CipherSuite::RsaAes256CbcSha);
    let mut good = vec![0u8; HEADROOM + 100 + TAILROOM];
    let n = p.client.seal(&[0x42; 100], &mut good).unwrap();
    good.truncate(n);
    let positions: Vec<usize> = (HEADER_LEN..n).step_by(7).chain([n - 1, n - 17]).collect();
    for &i in &positions {
        for bit in [0x01, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            assert_eq!(
                p.server.handle_datagram(p.now, &mut bad),
                Ok(Received::Done),
                "byte {i}"
            );
        }
    }
    assert_eq!(p.server.counters().auth_failed, 2 * positions.len() as u64);
    // A record cut to a non-multiple of the block, or to nothing at all.
    for cut in [n - 1, HEADER_LEN + 16, HEADER_LEN] {
        let mut bad = good[..cut].to_vec();
        bad[11..13].copy_from_slice(&((cut - HEADER_LEN) as u16).to_be_bytes());
        assert_eq!(
            p.server.handle_datagram(p.now, &mut bad),
            Ok(Received::Done)
        );
    }
    assert_eq!(
        p.server.counters().auth_failed,
        2 * positions.len() as u64 + 3
    );
    p.deliver(Dir::ToServer, good);
    assert_eq!(p.server_rx, [vec![0x42; 100]]);
    assert!(p.server.is_connected());
}

/// A real DTLS 0.9 ClientHello of GnuTLS 3.7.9 set up as openconnect does
/// for `AES256-SHA` (session id 32 × 0x71): record and client version
/// 0x0100, the one suite 0x0035, session_ticket, renegotiation_info and
/// record_size_limit extensions. We resume with an empty renegotiation_info.
const GNUTLS_DTLS09_CH: &str = "160100000000000000000000670100005b000000000000005b0100bddb966664c8d422ab75c3b3500cc0\
                                8219e096b1293eb0b9f32c95f0ce4cbe3620717171717171717171717171717171717171717171717171\
                                717171717171717100000200350100000f00230000ff01000100001c00024000";

#[test]
fn answers_a_gnutls_dtls0_9_client_hello() {
    let mut d = unhex(GNUTLS_DTLS09_CH);
    assert_eq!(client_hello_session_id(&d), Some(&[0x71; 32][..]));
    let now = Instant::now();
    let mut s = DtlsServer::new_resume(
        [0x71; 32],
        MASTER,
        CipherSuite::RsaAes256CbcSha,
        &DtlsConfig::default(),
        now,
    );
    assert_eq!(s.handle_datagram(now, &mut d), Ok(Received::Done));
    let mut buf = [0u8; 1500];
    let n = s.poll_transmit(now, &mut buf).unwrap();
    let recs = records(&buf[..n]);
    assert_eq!(
        recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(22, 0), (20, 0), (22, 1)]
    );
    let (t, seq, body) = body_of(&recs[0].3);
    assert_eq!((t, seq), (msg::SERVER_HELLO, 0));
    let sh = parse_server_hello(&body).unwrap();
    assert_eq!(
        (sh.version, sh.session_id, sh.suite),
        (DTLS0_9, &[0x71; 32][..], 0x0035)
    );
    assert!(
        body.ends_with(&[0, 5, 0xff, 0x01, 0, 1, 0]),
        "only an empty renegotiation_info"
    );
    assert_eq!(recs[1].3, [1, 0, 1]);
}
