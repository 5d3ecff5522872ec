//! Replays the cargo-fuzz seed corpus (`fuzz/corpus/<target>/`) and a few
//! thousand deterministic mutations of it through the fuzz entry points, so
//! `cargo test` exercises them without cargo-fuzz or a nightly toolchain.

use std::path::PathBuf;

use ocserv_fuzz as fuzzing;

/// Mutated inputs per target; a few thousand keeps a debug run to seconds.
const MUTATIONS: usize = 4000;

/// xorshift64: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough value in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                data,
            )
        })
        .collect();
    // read_dir order is unspecified; sort so the mutation sequence is stable.
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// One libFuzzer-style mutation: byte edits, inserts, deletes, splices.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    const INTERESTING: [u8; 10] = [0x00, 0x01, 0x0a, 0x0d, 0x20, 0x3c, 0x7f, 0x80, 0xb0, 0xff];
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = d.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                d[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(len + 1);
                d.insert(i, rng.next() as u8);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                d.drain(i..i + n);
            }
            5 => d.truncate(rng.below(len + 1)),
            6 if len > 0 => {
                // Duplicate a chunk: repeated frames, headers, elements.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let chunk = d[i..i + n].to_vec();
                let at = rng.below(len + 1);
                d.splice(at..at, chunk);
            }
            7 if !other.is_empty() => {
                // Splice: head of this input, tail of another.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            8 if len >= 6 => {
                // Big-endian u16 at a random spot: CSTP lengths and the like.
                let i = rng.below(len - 1);
                let v = [0u16, 1, 0x3ff7, 0x3ff8, 0x3ff9, 0x7fff, 0xffff][rng.below(7)];
                d[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    d
}

fn run(target: &str, seed: u64, entry: fn(&[u8])) {
    let files = corpus(target);
    for (name, data) in &files {
        // Name the file if it panics; the panic message follows.
        eprintln!("{target}: {name}");
        entry(data);
    }
    let mut rng = Rng(seed);
    for case in 0..MUTATIONS {
        let (_, a) = &files[rng.below(files.len())];
        let (_, b) = &files[rng.below(files.len())];
        let input = mutate(&mut rng, a, b);
        // The panic message itself is printed by the default hook; add the input.
        if std::panic::catch_unwind(|| entry(&input)).is_err() {
            panic!("{target}: mutation #{case} (seed {seed:#x}) panicked on {input:02x?}");
        }
    }
}

#[test]
fn cstp_frame_corpus() {
    run("cstp_frame", 0x9e37_79b9_7f4a_7c15, fuzzing::cstp_frame);
}

#[test]
fn http_request_corpus() {
    run("http_request", 0xd1b5_4a32_d192_ed03, fuzzing::http_request);
}

#[test]
fn auth_xml_corpus() {
    run("auth_xml", 0x2545_f491_4f6c_dd1d, fuzzing::auth_xml);
}

#[test]
fn dtls_server_corpus() {
    run("dtls_server", 0x94d0_49bb_1331_11eb, fuzzing::dtls_server);
}

#[test]
fn gro_roundtrip_corpus() {
    run(
        "gro_roundtrip",
        0xbf58_476d_1ce4_e5b9,
        fuzzing::gro_roundtrip,
    );
}

/// Scripts for the `dtls_server` target that complete a handshake and
/// deliver one record; also its seed corpus.
const HAPPY_PSK: &[u8] = &[0x80, 0, 1, 1, 1, 1, 5, 0, 1, 1, 1, 1, 5, 6, 10, 1];
const HAPPY_LEGACY: &[u8] = &[0x83, 0, 1, 1, 5, 0, 1, 1, 6, 10, 1];
/// The same over DTLS 0.9 with AES-256-CBC.
const HAPPY_DTLS09: &[u8] = &[0x87, 0, 1, 1, 5, 0, 1, 1, 6, 10, 1];

#[test]
fn fuzz_entry_reaches_traffic_and_survives_mutations() {
    assert_eq!(fuzzing::dtls_server_script(HAPPY_PSK), 1);
    assert_eq!(fuzzing::dtls_server_script(HAPPY_LEGACY), 1);
    assert_eq!(fuzzing::dtls_server_script(HAPPY_DTLS09), 1);
    // Every PSK suite and MTU step, and all four legacy suites.
    for setup in 0..=255u8 {
        let mut s = HAPPY_PSK.to_vec();
        s[0] = setup;
        // Small MTUs need more deliveries; add plenty.
        s.splice(2..2, [1; 12]);
        s.splice(s.len() - 4..s.len() - 4, [1; 12]);
        assert_eq!(fuzzing::dtls_server_script(&s), 1, "setup {setup:#x}");
    }
    let mut rng = Rng(0x51_7cc1_b727_220a);
    for _ in 0..3000 {
        let mut s = [HAPPY_PSK, HAPPY_LEGACY, HAPPY_DTLS09][(rng.next() % 3) as usize].to_vec();
        for _ in 0..1 + rng.next() % 6 {
            let at = (rng.next() as usize) % (s.len() + 1);
            match rng.next() % 3 {
                0 => s.insert(at, rng.next() as u8),
                1 if at < s.len() => s[at] = rng.next() as u8,
                _ => s.extend((0..rng.next() % 16).map(|_| rng.next() as u8)),
            }
        }
        fuzzing::dtls_server_script(&s);
    }
}
