//! Key schedule of (D)TLS 1.2 and the per-direction AEAD record keys.
//!
//! premaster → master secret → key block (RFC 5246 §8.1, §6.3), Finished
//! `verify_data` (§7.4.9), all through the TLS 1.2 PRF (§5).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use aws_lc_rs::{digest, hmac};

use super::suite::{CipherSuite, PrfHash};

pub(crate) const MASTER_SECRET_LEN: usize = 48; // RFC 5246 §8.1
pub(crate) const VERIFY_DATA_LEN: usize = 12; // RFC 5246 §7.4.9
/// Additional data of an AEAD record: seq_num(8) + type + version + length
/// (RFC 5246 §6.2.3.3; in DTLS seq_num is epoch‖sequence, RFC 6347 §4.1.2.1).
pub(crate) const AAD_LEN: usize = 13;

/// `PRF(secret, label, seed)` = `P_<hash>(secret, label ‖ seed)` (RFC 5246 §5),
/// filling `out`. `seeds` are concatenated, so callers need not allocate.
pub(crate) fn prf(hash: PrfHash, secret: &[u8], label: &[u8], seeds: &[&[u8]], out: &mut [u8]) {
    let key = hmac::Key::new(hash.hmac(), secret);
    // A(1) = HMAC(secret, label ‖ seed)
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(label);
    for s in seeds {
        ctx.update(s);
    }
    let mut a = ctx.sign();
    let mut filled = 0;
    while filled < out.len() {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(label);
        for s in seeds {
            ctx.update(s);
        }
        let block = ctx.sign();
        let n = block.as_ref().len().min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&block.as_ref()[..n]);
        filled += n;
        // A(i+1) = HMAC(secret, A(i))
        a = hmac::sign(&key, a.as_ref());
    }
}

/// Plain-PSK premaster secret: `u16 N ‖ N zero bytes ‖ u16 N ‖ psk`
/// (RFC 4279 §2), N = 32 for the OpenConnect PSK (protocol notes §5.1).
pub(crate) fn psk_premaster(psk: &[u8; 32]) -> [u8; 68] {
    let mut pm = [0u8; 68];
    pm[..2].copy_from_slice(&32u16.to_be_bytes());
    pm[34..36].copy_from_slice(&32u16.to_be_bytes());
    pm[36..].copy_from_slice(psk);
    pm
}

/// `master_secret = PRF(premaster, "master secret", client_random ‖ server_random)`
/// (RFC 5246 §8.1; no extended master secret, protocol notes §5.1).
pub(crate) fn master_secret(
    hash: PrfHash,
    premaster: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> [u8; MASTER_SECRET_LEN] {
    let mut ms = [0u8; MASTER_SECRET_LEN];
    prf(hash, premaster, b"master secret", &[client_random, server_random], &mut ms);
    ms
}

/// Which side's Finished (RFC 5246 §7.4.9 `finished_label`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// `verify_data = PRF(master, finished_label, Hash(handshake_messages))[..12]`.
pub(crate) fn verify_data(
    hash: PrfHash,
    master: &[u8; MASTER_SECRET_LEN],
    side: Side,
    transcript: &[u8],
) -> [u8; VERIFY_DATA_LEN] {
    let label: &[u8] = match side {
        Side::Client => b"client finished",
        Side::Server => b"server finished",
    };
    let h = digest::digest(hash.digest(), transcript);
    let mut out = [0u8; VERIFY_DATA_LEN];
    prf(hash, master, label, &[h.as_ref()], &mut out);
    out
}

/// The write keys of both sides for one epoch.
pub(crate) struct KeyPair {
    pub(crate) client_write: RecordKey,
    pub(crate) server_write: RecordKey,
}

/// Cuts the key block `PRF(master, "key expansion", server_random ‖
/// client_random)` into client/server write keys and IVs (RFC 5246 §6.3;
/// AEAD suites have no MAC keys).
pub(crate) fn derive_keys(
    suite: CipherSuite,
    master: &[u8; MASTER_SECRET_LEN],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> KeyPair {
    let (k, iv) = (suite.key_len(), suite.fixed_iv_len());
    let mut block = [0u8; 2 * (32 + 12)];
    let block = &mut block[..2 * (k + iv)];
    prf(suite.prf_hash(), master, b"key expansion", &[server_random, client_random], block);
    let (client_key, rest) = block.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_iv, server_iv) = rest.split_at(iv);
    KeyPair {
        client_write: RecordKey::new(suite, client_key, client_iv),
        server_write: RecordKey::new(suite, server_key, server_iv),
    }
}

/// One direction's AEAD key plus its fixed IV.
pub(crate) struct RecordKey {
    key: LessSafeKey,
    /// GCM: the 4-byte salt then zeros; ChaCha20-Poly1305: the 12-byte IV.
    iv: [u8; 12],
    suite: CipherSuite,
}

impl RecordKey {
    pub(crate) fn new(suite: CipherSuite, key: &[u8], iv: &[u8]) -> Self {
        // Lengths come from the suite table, so this cannot fail.
        let key = UnboundKey::new(suite.aead(), key).expect("key length matches the suite");
        let mut fixed = [0u8; 12];
        fixed[..iv.len()].copy_from_slice(iv);
        Self { key: LessSafeKey::new(key), iv: fixed, suite }
    }

    pub(crate) fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// GCM: `salt ‖ explicit` (RFC 5288 §3). ChaCha20-Poly1305: the IV xor
    /// the left-padded 64-bit epoch‖sequence (RFC 7905 §2), which is what
    /// callers pass as `explicit` for it.
    fn nonce(&self, explicit: [u8; 8]) -> Nonce {
        let mut n = self.iv;
        if self.suite.is_chacha() {
            for (b, e) in n[4..].iter_mut().zip(explicit) {
                *b ^= e;
            }
        } else {
            n[4..].copy_from_slice(&explicit);
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `in_out` in place and returns the tag. The caller guarantees
    /// `explicit` is never reused under this key (it is epoch‖sequence).
    pub(crate) fn seal(&self, explicit: [u8; 8], aad: [u8; AAD_LEN], in_out: &mut [u8]) -> Tag {
        self.key
            .seal_in_place_separate_tag(self.nonce(explicit), Aad::from(aad), in_out)
            .expect("AEAD seal of a record-sized buffer cannot fail")
    }

    /// Decrypts `ciphertext ‖ tag` in place; the plaintext is the first
    /// `in_out.len() - 16` bytes on success.
    pub(crate) fn open(&self, explicit: [u8; 8], aad: [u8; AAD_LEN], in_out: &mut [u8]) -> bool {
        self.key.open_in_place(self.nonce(explicit), Aad::from(aad), in_out).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The widely published TLS 1.2 PRF vectors (SHA-256, 100 bytes; SHA-384,
    /// 148 bytes), re-checked with Python's hmac module before use.
    #[test]
    fn prf_vectors() {
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

    #[test]
    fn seeds_concatenate() {
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        prf(PrfHash::Sha256, b"k", b"lbl", &[b"ab", b"cd"], &mut a);
        prf(PrfHash::Sha256, b"k", b"lbl", &[b"abcd"], &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn premaster_layout() {
        let pm = psk_premaster(&[7; 32]);
        assert_eq!(pm[..2], [0, 32]);
        assert!(pm[2..34].iter().all(|&b| b == 0));
        assert_eq!(pm[34..36], [0, 32]);
        assert!(pm[36..].iter().all(|&b| b == 7));
    }

    /// AES-128-GCM with a known key, salt and explicit nonce, checked against
    /// Python `cryptography`'s AESGCM (ciphertext ‖ tag printed below).
    #[test]
    fn gcm_matches_independent_implementation() {
        let key = RecordKey::new(CipherSuite::PskAes128GcmSha256, &[0x11; 16], &[1, 2, 3, 4]);
        let explicit = [0, 1, 0, 0, 0, 0, 0, 5];
        let aad = [0, 1, 0, 0, 0, 0, 0, 5, 23, 0xfe, 0xfd, 0, 5];
        let mut buf = *b"hello";
        let tag = key.seal(explicit, aad, &mut buf);
        let mut got = buf.to_vec();
        got.extend_from_slice(tag.as_ref());
        assert_eq!(got, hex(GCM_VECTOR));
        assert!(key.open(explicit, aad, &mut got));
        assert_eq!(&got[..5], b"hello");
    }

    /// ChaCha20-Poly1305 nonce = IV xor padded epoch‖seq (RFC 7905 §2), same check.
    #[test]
    fn chacha_matches_independent_implementation() {
        let iv: Vec<u8> = (0..12).collect();
        let key = RecordKey::new(CipherSuite::PskChacha20Poly1305Sha256, &[0x22; 32], &iv);
        let explicit = [0, 1, 0, 0, 0, 0, 0, 5];
        let aad = [0, 1, 0, 0, 0, 0, 0, 5, 23, 0xfe, 0xfd, 0, 5];
        let mut buf = *b"hello";
        let tag = key.seal(explicit, aad, &mut buf);
        let mut got = buf.to_vec();
        got.extend_from_slice(tag.as_ref());
        assert_eq!(got, hex(CHACHA_VECTOR));
        got[0] ^= 1;
        assert!(!key.open(explicit, aad, &mut got));
    }

    const GCM_VECTOR: &str = "7181c1e2d494467061698a5a8a82160a1d46ea56eb";
    const CHACHA_VECTOR: &str = "8f3284dc38cb4be9407957de7bb4cf59d4dbcf8c74";
}
