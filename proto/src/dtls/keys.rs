//! Key schedule and the per-direction record keys.
//!
//! premaster → master secret → key block (RFC 5246 §8.1, §6.3), Finished
//! `verify_data` (§7.4.9), all through the suite's PRF ([`prf`]).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::cbc::CbcKey;
use super::prf::{handshake_hash, prf};
use super::suite::{CipherSuite, PrfHash};

pub(crate) const MASTER_SECRET_LEN: usize = 48; // RFC 5246 §8.1
pub(crate) const VERIFY_DATA_LEN: usize = 12; // RFC 5246 §7.4.9
/// Additional data of an AEAD record: seq_num(8) + type + version + length
/// (RFC 5246 §6.2.3.3; in DTLS seq_num is epoch‖sequence, RFC 6347 §4.1.2.1).
pub(crate) const AAD_LEN: usize = 13;

/// Plain-PSK premaster secret: `u16 N ‖ N zero bytes ‖ u16 N ‖ psk`
/// (RFC 4279 §2), N = 32 for the OpenConnect PSK (docs/protocol.md,
/// "DTLS: PSK-NEGOTIATE").
pub(crate) fn psk_premaster(psk: &[u8; 32]) -> [u8; 68] {
    let mut pm = [0u8; 68];
    pm[..2].copy_from_slice(&32u16.to_be_bytes());
    pm[34..36].copy_from_slice(&32u16.to_be_bytes());
    pm[36..].copy_from_slice(psk);
    pm
}

/// `master_secret = PRF(premaster, "master secret", client_random ‖ server_random)`
/// (RFC 5246 §8.1; no extended master secret,
/// docs/protocol.md, "DTLS: PSK-NEGOTIATE").
pub(crate) fn master_secret(
    hash: PrfHash,
    premaster: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> [u8; MASTER_SECRET_LEN] {
    let mut ms = [0u8; MASTER_SECRET_LEN];
    prf(
        hash,
        premaster,
        b"master secret",
        &[client_random, server_random],
        &mut ms,
    );
    ms
}

/// Which side's Finished (RFC 5246 §7.4.9 `finished_label`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// `verify_data = PRF(master, finished_label, Hash(handshake_messages))[..12]`
/// (RFC 5246 §7.4.9; TLS 1.0's hash is MD5 ‖ SHA-1, RFC 4346 §7.4.9).
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
    let (h, n) = handshake_hash(hash, transcript);
    let mut out = [0u8; VERIFY_DATA_LEN];
    prf(hash, master, label, &[&h[..n]], &mut out);
    out
}

/// The write keys of both sides for one epoch.
pub(crate) struct KeyPair {
    pub(crate) client_write: RecordKey,
    pub(crate) server_write: RecordKey,
}

/// Cuts the key block `PRF(master, "key expansion", server_random ‖
/// client_random)` into client/server MAC keys (CBC only), write keys and
/// fixed IVs (AEAD only), in that order (RFC 5246 §6.3).
pub(crate) fn derive_keys(
    suite: CipherSuite,
    master: &[u8; MASTER_SECRET_LEN],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> KeyPair {
    let (m, k, iv) = (suite.mac_key_len(), suite.key_len(), suite.fixed_iv_len());
    let mut block = [0u8; 2 * (20 + 32 + 12)];
    let block = &mut block[..2 * (m + k + iv)];
    prf(
        suite.prf_hash(),
        master,
        b"key expansion",
        &[server_random, client_random],
        block,
    );
    let (client_mac, rest) = block.split_at(m);
    let (server_mac, rest) = rest.split_at(m);
    let (client_key, rest) = rest.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_iv, server_iv) = rest.split_at(iv);
    if suite.is_cbc() {
        KeyPair {
            client_write: RecordKey::Cbc(
                Box::new(CbcKey::new(suite, client_key, client_mac)),
                suite,
            ),
            server_write: RecordKey::Cbc(
                Box::new(CbcKey::new(suite, server_key, server_mac)),
                suite,
            ),
        }
    } else {
        KeyPair {
            client_write: RecordKey::Aead(AeadKey::new(suite, client_key, client_iv)),
            server_write: RecordKey::Aead(AeadKey::new(suite, server_key, server_iv)),
        }
    }
}

/// One direction's record protection. The CBC keys (two AES schedules and
/// an HMAC key, ~2 KiB) are boxed so the AEAD ones stay small.
pub(crate) enum RecordKey {
    Aead(AeadKey),
    Cbc(Box<CbcKey>, CipherSuite),
}

impl RecordKey {
    pub(crate) fn suite(&self) -> CipherSuite {
        match self {
            Self::Aead(k) => k.suite,
            Self::Cbc(_, s) => *s,
        }
    }
}

/// One direction's AEAD key plus its fixed IV.
pub(crate) struct AeadKey {
    key: LessSafeKey,
    /// GCM: the 4-byte salt then zeros; ChaCha20-Poly1305: the 12-byte IV.
    iv: [u8; 12],
    suite: CipherSuite,
}

impl AeadKey {
    /// `suite` must be an AEAD suite; lengths come from the suite table, so
    /// this cannot fail.
    pub(crate) fn new(suite: CipherSuite, key: &[u8], iv: &[u8]) -> Self {
        let alg = suite.aead().expect("an AEAD suite");
        let key = UnboundKey::new(alg, key).expect("key length matches the suite");
        let mut fixed = [0u8; 12];
        fixed[..iv.len()].copy_from_slice(iv);
        Self {
            key: LessSafeKey::new(key),
            iv: fixed,
            suite,
        }
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
        self.key
            .open_in_place(self.nonce(explicit), Aad::from(aad), in_out)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dtls::tests::unhex as hex;

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
        let key = AeadKey::new(CipherSuite::PskAes128GcmSha256, &[0x11; 16], &[1, 2, 3, 4]);
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
        let key = AeadKey::new(CipherSuite::PskChacha20Poly1305Sha256, &[0x22; 32], &iv);
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

    /// The CBC key block is MAC keys, then keys, and no IVs (RFC 5246 §6.3,
    /// RFC 4346 §6.3): each key matches the slice of a PRF output computed
    /// here with the same inputs.
    #[test]
    fn cbc_key_block_layout() {
        let (master, cr, sr) = ([0x33; 48], [1; 32], [2; 32]);
        for (suite, k) in [
            (CipherSuite::RsaAes128CbcSha, 16),
            (CipherSuite::RsaAes256CbcSha, 32),
        ] {
            let mut block = [0u8; 104];
            prf(
                PrfHash::Md5Sha1,
                &master,
                b"key expansion",
                &[&sr, &cr],
                &mut block,
            );
            let keys = derive_keys(suite, &master, &cr, &sr);
            let (RecordKey::Cbc(c, s1), RecordKey::Cbc(s, s2)) =
                (&keys.client_write, &keys.server_write)
            else {
                panic!("CBC keys")
            };
            assert_eq!((*s1, *s2), (suite, suite));
            let want_c = CbcKey::new(suite, &block[40..40 + k], &block[..20]);
            let want_s = CbcKey::new(suite, &block[40 + k..40 + 2 * k], &block[20..40]);
            // Equal keys seal identically under the same (random) IV: check by
            // opening each other's records.
            let (c, s): (&CbcKey, &CbcKey) = (c, s);
            for (a, b) in [(c, &want_c), (s, &want_s), (&want_c, c)] {
                let mut frag = [0u8; 64];
                frag[16..21].copy_from_slice(b"hello");
                let n = a.seal([0; 8], 23, 0x0100, &mut frag, 5);
                assert_eq!(b.open([0; 8], 23, 0x0100, &mut frag[..n]), Some(16..21));
            }
            let mut frag = [0u8; 64];
            let n = c.seal([0; 8], 23, 0x0100, &mut frag, 5);
            assert_eq!(want_s.open([0; 8], 23, 0x0100, &mut frag[..n]), None);
        }
    }

    const GCM_VECTOR: &str = "7181c1e2d494467061698a5a8a82160a1d46ea56eb";
    const CHACHA_VECTOR: &str = "8f3284dc38cb4be9407957de7bb4cf59d4dbcf8c74";
}
