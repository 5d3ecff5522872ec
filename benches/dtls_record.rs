//! DTLS record cost per tunnel packet: sealing a 1400-byte payload in place,
//! and sealing it on one side then opening it in place on the other, for
//! each suite. Before measuring, checks that neither allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::aead;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ocserv_uring::proto::dtls::{CipherSuite, DtlsClient, DtlsConfig, DtlsServer, Received, HEADROOM, TAILROOM};

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

/// Client and server after a PSK handshake over an in-memory loop.
fn connected(suite: CipherSuite) -> (DtlsClient, DtlsServer) {
    let now = Instant::now();
    let cfg = DtlsConfig { suites: vec![suite], ..DtlsConfig::default() };
    let mut c = DtlsClient::new_psk([7; 32], &[1; 32], &cfg, now).expect("client");
    let mut s = DtlsServer::new_psk([7; 32], &cfg, now);
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
    for suite in
        [CipherSuite::PskAes128GcmSha256, CipherSuite::PskAes256GcmSha384, CipherSuite::PskChacha20Poly1305Sha256]
    {
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
            b.iter(|| server.seal_in_place(black_box(&mut buf[..]), PAYLOAD).expect("seal"));
        });
        g.bench_function("seal+open", |b| {
            b.iter(|| round(&mut client, &mut server, black_box(&mut buf[..]), now));
        });
        // Baseline: the bare aws-lc-rs AEAD on the same payload, no record layer.
        let alg = match suite {
            CipherSuite::PskAes128GcmSha256 => &aead::AES_128_GCM,
            CipherSuite::PskAes256GcmSha384 => &aead::AES_256_GCM,
            _ => &aead::CHACHA20_POLY1305,
        };
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &[9u8; 32][..alg.key_len()]).expect("key"));
        let mut raw = vec![0x5au8; PAYLOAD + TAILROOM];
        g.bench_function("raw_aead_seal+open", |b| {
            b.iter(|| {
                let (pt, tag) = raw.split_at_mut(PAYLOAD);
                let nonce = || aead::Nonce::assume_unique_for_key([1; 12]);
                let t = key.seal_in_place_separate_tag(nonce(), aead::Aad::from([0u8; 13]), pt).expect("seal");
                tag.copy_from_slice(t.as_ref());
                key.open_in_place(nonce(), aead::Aad::from([0u8; 13]), black_box(&mut raw[..])).expect("open").len()
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench_suites);
criterion_main!(benches);
