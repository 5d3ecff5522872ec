//! Sessions at scale: what 100 000 and 1 000 000 sessions cost in a
//! shard's session store with their tunnel timers (no sockets), and what
//! the once-a-second timer sweep costs at that size, the deadline queue
//! (only what is due) against checking every tunnel as before.
//!
//! Memory is counted by this benchmark's allocator: bytes asked for and
//! not yet freed (what the allocator itself keeps on top is not in it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ocserv_uring::shard::scale::Population;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator with the caller's
// layout; the counter is only arithmetic beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The shard sweeps its timer wheel every tick of its loop.
const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_SECOND: u32 = 10;

fn bench_sessions(c: &mut Criterion) {
    for n in [100_000u32, 1_000_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let mut pop = Population::new(n, t0);
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        eprintln!(
            "{n} sessions: {} bytes each (session, store, timers, deadline queue), built in {:.2?}",
            bytes / n as usize,
            t0.elapsed(),
        );
        // Three simulated minutes first: every deadline has come up since.
        let mut now = t0;
        let mut checked = 0;
        for i in 0..180 * TICKS_PER_SECOND {
            now += TICK;
            let c = pop.sweep(now);
            if i >= 120 * TICKS_PER_SECOND {
                checked += c;
            }
        }
        eprintln!(
            "{n} sessions: {} tunnels checked per second; {} queued",
            checked / 60,
            pop.queued()
        );
        let mut group = c.benchmark_group(format!("sessions_{n}"));
        group.sample_size(10);
        group.bench_function("sweep_due_each_second", |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..TICKS_PER_SECOND {
                        now += TICK;
                        let start = Instant::now();
                        black_box(pop.sweep(now));
                        spent += start.elapsed();
                    }
                }
                spent
            });
        });
        group.bench_function("check_every_tunnel_each_second", |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    now += TICK * TICKS_PER_SECOND;
                    let start = Instant::now();
                    black_box(pop.sweep_all(now));
                    spent += start.elapsed();
                }
                spent
            });
        });
        group.finish();
        assert_eq!(pop.len(), n as usize);
    }
}

criterion_group!(benches, bench_sessions);
criterion_main!(benches);
