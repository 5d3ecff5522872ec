//! TUN offload cost per super-packet: cutting a 64 KB TCP read into
//! 1360-byte segments (headers and checksums per segment), merging them
//! back for one TUN write, and the checksum itself.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ocserv_proto::offload::{fold, for_each_segment, sum, Gro, VnetHdr, VNET_HDR_LEN};

const MSS: usize = 1360;
const SEGMENTS: usize = 48;

/// An IPv4/TCP super-packet as a TSO read delivers it, header included.
fn tso_read() -> Vec<u8> {
    let payload = MSS * SEGMENTS;
    let mut read = vec![0u8; VNET_HDR_LEN + 40 + payload];
    let hdr = VnetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 40,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    hdr.encode((&mut read[..VNET_HDR_LEN]).try_into().expect("header"));
    let p = &mut read[VNET_HDR_LEN..];
    p[0] = 0x45;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[192, 168, 100, 1]);
    p[16..20].copy_from_slice(&[192, 168, 100, 2]);
    p[32] = 5 << 4;
    p[33] = 0x10;
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i * 31) as u8;
    }
    read
}

fn bench_offload(c: &mut Criterion) {
    let read = tso_read();
    let mut g = c.benchmark_group("tun_offload_48x1360");
    g.throughput(Throughput::Bytes((read.len() - VNET_HDR_LEN) as u64));
    let mut segments = Vec::new();
    g.bench_function("segment", |b| {
        let mut work = read.clone();
        let mut scratch = vec![0u8; 2048];
        b.iter(|| {
            let (hdr, pkt) = VnetHdr::split(&mut work).expect("header");
            let mut n = 0;
            for_each_segment(&hdr, pkt, &mut scratch, |s| n += black_box(s).len())
                .expect("segments");
            n
        });
    });
    {
        let mut work = read.clone();
        let mut scratch = vec![0u8; 2048];
        let (hdr, pkt) = VnetHdr::split(&mut work).expect("header");
        for_each_segment(&hdr, pkt, &mut scratch, |s| segments.push(s.to_vec())).expect("segments");
    }
    g.bench_function("merge", |b| {
        let mut first = segments[0].clone();
        b.iter(|| {
            first.copy_from_slice(&segments[0]);
            let mut gro = Gro::start(&first, true).expect("starts");
            for s in &segments[1..] {
                gro.extend(&first, black_box(s)).expect("merges");
            }
            let mut hdr = [0u8; VNET_HDR_LEN];
            gro.finish(&mut hdr, &mut first);
            gro.count()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("checksum_1400");
    g.throughput(Throughput::Bytes(1400));
    g.bench_function("sum", |b| {
        b.iter(|| fold(sum(black_box(&segments[0][..1400]), 0)))
    });
    g.finish();
}

criterion_group!(benches, bench_offload);
criterion_main!(benches);
