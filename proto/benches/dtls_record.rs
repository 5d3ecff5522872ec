//! DTLS record cost per tunnel packet: sealing a 1400-byte payload in place,
//! and sealing it on one side then opening it in place on the other, for
//! each suite (the CBC ones over DTLS 0.9). Before measuring, checks that
//! neither allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::cipher::{DecryptingKey, EncryptingKey, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::{aead, hmac};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ocserv_proto::dtls::{
    CipherSuite, DtlsClient, DtlsConfig, DtlsServer, Received, HEADROOM, TAILROOM,
};

const PAYLOAD: usize = 1400;

/// Counts this thread's allocations, to prove the data path makes none.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Client and server after a handshake over an in-memory loop: PSK for the
/// PSK suites, the legacy resumption for the CBC ones.
fn connected(suite: CipherSuite) -> (DtlsClient, DtlsServer) {
    let now = Instant::now();
    let cfg = DtlsConfig {
        suites: vec![suite],
        ..DtlsConfig::default()
    };
    let (mut c, mut s) = if suite.is_psk() {
        (
            DtlsClient::new_psk([7; 32], &[1; 32], &cfg, now).expect("client"),
            DtlsServer::new_psk([7; 32], &cfg, now),
        )
    } else {
        (
            DtlsClient::new_resume([1; 32], [7; 48], suite, &cfg, now),
            DtlsServer::new_resume([1; 32], [7; 48], suite, &cfg, now),
        )
    };
    let mut buf = [0u8; 1500];
    for _ in 0..8 {
        while let Some(n) = c.poll_transmit(now, &mut buf) {
            let _ = s.handle_datagram(now, &mut buf[..n]).expect("server");
        }
        while let Some(n) = s.poll_transmit(now, &mut buf) {
            let _ = c.handle_datagram(now, &mut buf[..n]).expect("client");
        }
    }
    assert!(c.is_connected() && s.is_connected());
    (c, s)
}

/// One packet through: client seals in place, server opens in place. The
/// plaintext lands back at HEADROOM, so the next round reuses the buffer.
fn round(c: &mut DtlsClient, s: &mut DtlsServer, buf: &mut [u8], now: Instant) -> usize {
    let r = c.seal_in_place(buf, PAYLOAD).expect("seal");
    match s.handle_datagram(now, &mut buf[r]).expect("open") {
        Received::AppData { data, .. } => data.len(),
        Received::Done => panic!("record dropped"),
    }
}

fn bench_suites(c: &mut Criterion) {
    let now = Instant::now();
    for suite in [
        CipherSuite::PskAes128GcmSha256,
        CipherSuite::PskAes256GcmSha384,
        CipherSuite::PskChacha20Poly1305Sha256,
        CipherSuite::RsaAes128CbcSha,
        CipherSuite::RsaAes256CbcSha,
    ] {
        let (mut client, mut server) = connected(suite);
        let mut buf = vec![0x5au8; HEADROOM + PAYLOAD + TAILROOM];

        let before = allocs();
        for _ in 0..1000 {
            assert_eq!(round(&mut client, &mut server, &mut buf, now), PAYLOAD);
        }
        assert_eq!(allocs() - before, 0, "{suite}: the record path allocated");

        let mut g = c.benchmark_group(format!("dtls_1400/{}", suite.name()));
        g.throughput(Throughput::Bytes(PAYLOAD as u64));
        g.bench_function("seal", |b| {
            b.iter(|| {
                server
                    .seal_in_place(black_box(&mut buf[..]), PAYLOAD)
                    .expect("seal")
            });
        });
        g.bench_function("seal+open", |b| {
            b.iter(|| round(&mut client, &mut server, black_box(&mut buf[..]), now));
        });
        if suite.is_cbc() {
            bench_raw_cbc(&mut g, suite);
        } else {
            bench_raw_aead(&mut g, suite);
        }
        g.finish();
    }
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Baseline: the bare aws-lc-rs AEAD on the same payload, no record layer.
fn bench_raw_aead(g: &mut Group<'_>, suite: CipherSuite) {
    let alg = match suite {
        CipherSuite::PskAes128GcmSha256 => &aead::AES_128_GCM,
        CipherSuite::PskAes256GcmSha384 => &aead::AES_256_GCM,
        _ => &aead::CHACHA20_POLY1305,
    };
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(alg, &[9u8; 32][..alg.key_len()]).expect("key"),
    );
    let mut raw = vec![0x5au8; PAYLOAD + 16];
    g.bench_function("raw_aead_seal+open", |b| {
        b.iter(|| {
            let (pt, tag) = raw.split_at_mut(PAYLOAD);
            let nonce = || aead::Nonce::assume_unique_for_key([1; 12]);
            let t = key
                .seal_in_place_separate_tag(nonce(), aead::Aad::from([0u8; 13]), pt)
                .expect("seal");
            tag.copy_from_slice(t.as_ref());
            key.open_in_place(nonce(), aead::Aad::from([0u8; 13]), black_box(&mut raw[..]))
                .expect("open")
                .len()
        });
    });
}

/// Baseline: bare aws-lc-rs AES-CBC and HMAC-SHA1 over the same payload,
/// each way once, without padding checks or the constant-time MAC read.
fn bench_raw_cbc(g: &mut Group<'_>, suite: CipherSuite) {
    let (alg, len) = if suite == CipherSuite::RsaAes128CbcSha {
        (&AES_128, 16)
    } else {
        (&AES_256, 32)
    };
    let unbound = || UnboundCipherKey::new(alg, &[9u8; 32][..len]).expect("key");
    let (enc, dec) = (
        EncryptingKey::cbc(unbound()).expect("cbc"),
        DecryptingKey::cbc(unbound()).expect("cbc"),
    );
    let mac = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[3; 20]);
    // Payload + MAC + padding: 1400 + 20 + 4 = 1424, whole blocks.
    let mut raw = vec![0x5au8; 1424];
    g.bench_function("raw_cbc_hmac_seal+open", |b| {
        b.iter(|| {
            let t = hmac::sign(&mac, &raw[..PAYLOAD]);
            raw[PAYLOAD..PAYLOAD + 20].copy_from_slice(t.as_ref());
            let ctx = enc.encrypt(&mut raw).expect("encrypt");
            dec.decrypt(black_box(&mut raw[..]), ctx).expect("decrypt");
            hmac::verify(&mac, &raw[..PAYLOAD], &raw[PAYLOAD..PAYLOAD + 20]).is_ok()
        });
    });
}

criterion_group!(benches, bench_suites);
criterion_main!(benches);
