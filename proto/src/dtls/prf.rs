//! The TLS pseudorandom functions: P_SHA256/P_SHA384 of TLS 1.2 (RFC 5246
//! §5), and P_MD5 xor P_SHA1 of TLS 1.0/1.1 (RFC 4346 §5), which DTLS 0.9
//! keeps (its HMAC-MD5 from `proto::md5`).

use aws_lc_rs::{digest, hmac};

use super::suite::PrfHash;
use crate::md5::{md5, HmacMd5, MD5_LEN};

/// Longest HMAC output used (SHA-384).
const MAX_MAC: usize = 48;
/// Longest Finished hash input: SHA-384, or MD5 ‖ SHA-1 (36).
pub(crate) const MAX_HANDSHAKE_HASH: usize = 48;

/// HMAC over `parts ‖ seeds` into `out` with aws-lc-rs; returns the length.
fn aws_sign(key: &hmac::Key, parts: [&[u8]; 2], seeds: &[&[u8]], out: &mut [u8; MAX_MAC]) -> usize {
    let mut ctx = hmac::Context::with_key(key);
    parts.iter().chain(seeds).for_each(|p| ctx.update(p));
    let tag = ctx.sign();
    let t = tag.as_ref();
    out[..t.len()].copy_from_slice(t);
    t.len()
}

fn md5_sign(key: &HmacMd5, parts: [&[u8]; 2], seeds: &[&[u8]], out: &mut [u8; MAX_MAC]) -> usize {
    out[..MD5_LEN].copy_from_slice(&key.sign(parts.into_iter().chain(seeds.iter().copied())));
    MD5_LEN
}

/// `out ^= P_hash(secret, label ‖ seed)` (RFC 5246 §5); `mac` is HMAC keyed
/// with the secret, over its arguments concatenated.
fn p_hash_xor(
    mac: impl Fn([&[u8]; 2], &[&[u8]], &mut [u8; MAX_MAC]) -> usize,
    label: &[u8],
    seeds: &[&[u8]],
    out: &mut [u8],
) {
    // A(1) = HMAC(secret, label ‖ seed)
    let mut a = [0u8; MAX_MAC];
    let mut a_len = mac([&[], label], seeds, &mut a);
    let mut block = [0u8; MAX_MAC];
    for chunk in out.chunks_mut(a_len) {
        let n = mac([&a[..a_len], label], seeds, &mut block);
        chunk.iter_mut().zip(&block[..n]).for_each(|(o, b)| *o ^= b);
        // A(i+1) = HMAC(secret, A(i))
        let prev = a;
        a_len = mac([&prev[..a_len], &[]], &[], &mut a);
    }
}

/// `PRF(secret, label, seed)` filling `out`; `seeds` are concatenated, so
/// callers need not allocate. TLS 1.2: `P_<hash>(secret, label ‖ seed)`
/// (RFC 5246 §5). TLS 1.0: the secret split into two halves sharing the
/// middle byte if odd, `P_MD5(S1, ..) xor P_SHA1(S2, ..)` (RFC 4346 §5).
pub(crate) fn prf(hash: PrfHash, secret: &[u8], label: &[u8], seeds: &[&[u8]], out: &mut [u8]) {
    out.fill(0);
    match hash.hmac() {
        Some(alg) => {
            let key = hmac::Key::new(alg, secret);
            p_hash_xor(|p, s, o| aws_sign(&key, p, s, o), label, seeds, out);
        }
        None => {
            let half = secret.len().div_ceil(2);
            let (s1, s2) = (&secret[..half], &secret[secret.len() - half..]);
            let md5 = HmacMd5::new(s1);
            p_hash_xor(|p, s, o| md5_sign(&md5, p, s, o), label, seeds, out);
            let sha1 = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s2);
            p_hash_xor(|p, s, o| aws_sign(&sha1, p, s, o), label, seeds, out);
        }
    }
}

/// The handshake hash that Finished signs: `Hash(handshake_messages)` in
/// TLS 1.2 (RFC 5246 §7.4.9), `MD5(..) ‖ SHA-1(..)` in TLS 1.0 (RFC 4346
/// §7.4.9). Returns the buffer and how much of it is used.
pub(crate) fn handshake_hash(
    hash: PrfHash,
    transcript: &[u8],
) -> ([u8; MAX_HANDSHAKE_HASH], usize) {
    let mut out = [0u8; MAX_HANDSHAKE_HASH];
    let n = match hash.digest() {
        Some(alg) => {
            let d = digest::digest(alg, transcript);
            out[..d.as_ref().len()].copy_from_slice(d.as_ref());
            d.as_ref().len()
        }
        None => {
            out[..MD5_LEN].copy_from_slice(&md5([transcript]));
            let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, transcript);
            out[MD5_LEN..MD5_LEN + 20].copy_from_slice(sha1.as_ref());
            MD5_LEN + 20
        }
    };
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dtls::tests::unhex as hex;

    /// The widely published TLS 1.2 PRF vectors (SHA-256, 100 bytes; SHA-384,
    /// 148 bytes), re-checked with Python's hmac module before use.
    #[test]
    fn tls12_prf_vectors() {
        let mut out = [0u8; 100];
        prf(
            PrfHash::Sha256,
            &hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
            b"test label",
            &[&hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c")],
            &mut out,
        );
        let want =
            hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa0\
             22f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66");
        assert_eq!(out[..], want[..]);

        let mut out = [0u8; 148];
        prf(
            PrfHash::Sha384,
            &hex("b8 0b 73 3d 6c ee fc dc 71 56 6e a4 8e 55 67 df"),
            b"test label",
            &[&hex("cd 66 5c f6 a8 44 7d d6 ff 8b 27 55 5e db 74 65")],
            &mut out,
        );
        let want = hex(
            "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe34f82b1233c9146a0e534cb40\
             0fed2700884f9dc236f80edd8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d9184259b5bf8cd4d90fa0d\
             31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee691c8f3a26854308d5eaa3be85e0990703d73e56f",
        );
        assert_eq!(out[..], want[..]);
    }

    /// TLS 1.0 PRF: the published 104-byte vector (secret 48 × 0xab, label
    /// "PRF Testvector", seed 64 × 0xcd), an odd-length secret whose halves
    /// share a byte, and a Finished-shaped call; all three recomputed with
    /// Python's hmac/hashlib (P_MD5 xor P_SHA1 written out by hand).
    #[test]
    fn tls10_prf_vectors() {
        let mut out = [0u8; 104];
        prf(
            PrfHash::Md5Sha1,
            &[0xab; 48],
            b"PRF Testvector",
            &[&[0xcd; 64]],
            &mut out,
        );
        let want =
            hex("d3d4d1e349b5d515044666d51de32bab258cb521b6b053463e354832fd976754443bcf9a296519bc289abcbc1187e4eb\
             d31e602353776c408aafb74cbc85eff69255f9788faa184cbb957a9819d84a5d7eb006eb459d3ae8de9810454b8b2d8f\
             1afbc655a8c9a013");
        assert_eq!(out[..], want[..]);

        let mut out = [0u8; 40];
        prf(
            PrfHash::Md5Sha1,
            &[1, 2, 3, 4, 5, 6, 7],
            b"test label",
            &[b"se", b"ed"],
            &mut out,
        );
        assert_eq!(
            out[..],
            hex("8b79387d8e0604ebae48d936b943d09f274be658586d49b748677694bd0a54a1ece0ef09ef05d9c8")
                [..]
        );

        let (h, n) = handshake_hash(PrfHash::Md5Sha1, b"abc");
        assert_eq!(n, 36);
        let mut vd = [0u8; 12];
        prf(
            PrfHash::Md5Sha1,
            &[0x0b; 48],
            b"client finished",
            &[&h[..n]],
            &mut vd,
        );
        assert_eq!(vd[..], hex("5907cb5ec32e75526e9ef2e8")[..]);
    }

    #[test]
    fn seeds_concatenate() {
        for hash in [PrfHash::Sha256, PrfHash::Md5Sha1] {
            let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
            prf(hash, b"k", b"lbl", &[b"ab", b"cd"], &mut a);
            prf(hash, b"k", b"lbl", &[b"abcd"], &mut b);
            assert_eq!(a, b);
        }
    }
}
