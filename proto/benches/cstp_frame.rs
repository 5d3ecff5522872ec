//! CSTP framing cost per tunnel packet: encode and decode of one 1400-byte
//! DATA frame, and stream-decoding 32 back-to-back frames as one TLS read
//! may deliver them.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ocserv_proto::cstp::{decode, encode, FrameType, HEADER_LEN};

const PAYLOAD: usize = 1400;
const FRAMES: usize = 32;

fn packet() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 7) as u8).collect()
}

fn bench_single(c: &mut Criterion) {
    let payload = packet();
    let mut wire = vec![0u8; HEADER_LEN + PAYLOAD];
    let n = encode(FrameType::Data, &payload, &mut wire).expect("encode");

    let mut g = c.benchmark_group("cstp_data_1400");
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("encode", |b| {
        let mut out = vec![0u8; HEADER_LEN + PAYLOAD];
        b.iter(|| {
            encode(
                FrameType::Data,
                black_box(&payload),
                black_box(&mut out[..]),
            )
            .expect("encode")
        });
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let (f, used) = decode(black_box(&wire[..]))
                .expect("decode")
                .expect("complete");
            (f.payload.len(), used)
        });
    });
    g.finish();
}

fn bench_stream(c: &mut Criterion) {
    let payload = packet();
    let mut wire = vec![0u8; FRAMES * (HEADER_LEN + PAYLOAD)];
    let mut at = 0;
    for _ in 0..FRAMES {
        at += encode(FrameType::Data, &payload, &mut wire[at..]).expect("encode");
    }

    let mut g = c.benchmark_group("cstp_stream_32x1400");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let buf = black_box(&wire[..]);
            let (mut off, mut frames) = (0, 0);
            while let Some((f, used)) = decode(&buf[off..]).expect("decode") {
                black_box(f.payload);
                off += used;
                frames += 1;
            }
            assert_eq!(frames, FRAMES);
            off
        });
    });
    g.finish();
}

criterion_group!(benches, bench_single, bench_stream);
criterion_main!(benches);
