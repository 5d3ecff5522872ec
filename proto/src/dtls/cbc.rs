//! AES-CBC + HMAC-SHA1 record protection of DTLS 0.9, as in TLS 1.1
//! (RFC 4346 §6.2.3.2): a random explicit IV per record, MAC-then-encrypt,
//! TLS padding. In place, no allocation.
//!
//! Opening must not tell a bad MAC from bad padding, by result or by time
//! (Lucky Thirteen, AlFardan & Paterson 2013): the padding is checked over a
//! fixed window with masks, the MAC is read out of a fixed window, and
//! SHA-1 always runs over as many blocks as for the longest possible
//! plaintext (dummy blocks make up the difference).

use std::ops::Range;

use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext, EncryptingKey, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::record::MAX_PLAINTEXT;
use super::suite::{CipherSuite, CBC_BLOCK, CBC_MAC_LEN};

/// seq_num(8) type(1) version(2) length(2): the MAC's header (RFC 4346 §6.2.3.1).
pub(crate) const MAC_HEADER_LEN: usize = 13;
/// padding_length is one byte: at most 255 padding bytes plus itself.
const MAX_PAD: usize = 256;
const SHA1_BLOCK: usize = 64;
/// Zeros fed to the dummy hash; a padding difference spans at most 5 blocks.
static DUMMY: [u8; 6 * SHA1_BLOCK] = [0; 6 * SHA1_BLOCK];

/// One direction's keys: the AES key both ways (we only ever encrypt or
/// only decrypt with one, but both schedules are cheap) and the MAC key.
pub(crate) struct CbcKey {
    enc: EncryptingKey,
    dec: DecryptingKey,
    mac: hmac::Key,
}

/// All-ones if `a >= b`, else zero; no branch. Inputs stay far below 2^63.
fn ge_mask(a: usize, b: usize) -> usize {
    let borrow = a.wrapping_sub(b) >> (usize::BITS - 1);
    borrow.wrapping_sub(1)
}

fn eq_mask(a: usize, b: usize) -> usize {
    ge_mask(a, b) & ge_mask(b, a)
}

/// SHA-1 compression calls for `n` message bytes after HMAC's key block:
/// the data, the 0x80 byte and the 8-byte length, in 64-byte blocks.
fn sha1_blocks(n: usize) -> usize {
    (n + 9).div_ceil(SHA1_BLOCK)
}

fn mac_header(
    seq_num: [u8; 8],
    content_type: u8,
    version: u16,
    len: usize,
) -> [u8; MAC_HEADER_LEN] {
    let mut h = [0u8; MAC_HEADER_LEN];
    h[..8].copy_from_slice(&seq_num);
    h[8] = content_type;
    h[9..11].copy_from_slice(&version.to_be_bytes());
    // Callers bound `len` by the record size.
    h[11..13].copy_from_slice(&(len as u16).to_be_bytes());
    h
}

impl CbcKey {
    /// `suite` must be a CBC suite and the lengths its own (the key block
    /// is cut by the suite table, so this cannot fail).
    pub(crate) fn new(suite: CipherSuite, key: &[u8], mac_key: &[u8]) -> Self {
        let alg = suite.cbc_cipher().expect("a CBC suite");
        let unbound = || UnboundCipherKey::new(alg, key).expect("key length matches the suite");
        Self {
            enc: EncryptingKey::cbc(unbound()).expect("AES supports CBC"),
            dec: DecryptingKey::cbc(unbound()).expect("AES supports CBC"),
            mac: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, mac_key),
        }
    }

    /// Seals a record fragment in place. `frag` holds room for the IV, then
    /// `plain_len` bytes of plaintext, then room for MAC and padding; the
    /// caller checked that `frag.len() >= suite.sealed_len(plain_len)`.
    /// Returns the fragment's length.
    pub(crate) fn seal(
        &self,
        seq_num: [u8; 8],
        content_type: u8,
        version: u16,
        frag: &mut [u8],
        plain_len: usize,
    ) -> usize {
        let body_len = (plain_len + CBC_MAC_LEN + 1).next_multiple_of(CBC_BLOCK);
        let (iv_out, body) = frag.split_at_mut(CBC_BLOCK);
        let body = &mut body[..body_len];
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(&mac_header(seq_num, content_type, version, plain_len));
        ctx.update(&body[..plain_len]);
        body[plain_len..plain_len + CBC_MAC_LEN].copy_from_slice(ctx.sign().as_ref());
        // Every padding byte, and the length byte after them, hold the count.
        let pad = body_len - plain_len - CBC_MAC_LEN - 1;
        body[plain_len + CBC_MAC_LEN..].fill(pad as u8);
        // A fresh random IV from aws-lc for each record (RFC 4346 §6.2.3.2 (2)(a)).
        let used = self.enc.encrypt(body).expect("whole blocks encrypt");
        let iv: &[u8] = (&used).try_into().expect("CBC reports its IV");
        iv_out.copy_from_slice(iv);
        CBC_BLOCK + body_len
    }

    /// Opens a record fragment (IV ‖ ciphertext) in place. Returns where
    /// the plaintext is inside `frag`, or `None` for any failure: short or
    /// ragged, bad padding and bad MAC look the same.
    pub(crate) fn open(
        &self,
        seq_num: [u8; 8],
        content_type: u8,
        version: u16,
        frag: &mut [u8],
    ) -> Option<Range<usize>> {
        // Public facts only: whole blocks, room for a MAC and the length byte.
        let min = CBC_BLOCK + (CBC_MAC_LEN + 1).next_multiple_of(CBC_BLOCK);
        if frag.len() < min || frag.len() % CBC_BLOCK != 0 {
            return None;
        }
        let (iv, body) = frag.split_at_mut(CBC_BLOCK);
        let iv: [u8; CBC_BLOCK] = (&*iv).try_into().ok()?;
        let body = self
            .dec
            .decrypt(body, DecryptionContext::Iv128(FixedLength::from(iv)))
            .ok()?;
        let len = body.len();

        // Secret from here on: the padding length and everything it moves.
        let claimed = usize::from(body[len - 1]);
        let fits = ge_mask(len, claimed + 1 + CBC_MAC_LEN);
        // A padding length that cannot fit counts as none (RFC 4346 §6.2.3.2 note).
        let pad = claimed & fits;
        let mut bad = !fits;
        for i in 0..len.min(MAX_PAD) {
            let b = usize::from(body[len - 1 - i]);
            bad |= (b ^ pad) & ge_mask(pad, i);
        }
        let plain_len = len - CBC_MAC_LEN - 1 - pad;
        bad |= !ge_mask(MAX_PLAINTEXT, plain_len);

        let mut ctx = hmac::Context::with_key(&self.mac);
        let header = mac_header(seq_num, content_type, version, plain_len);
        ctx.update(&header);
        ctx.update(&body[..plain_len]);
        let want = ctx.sign();
        // Make up the SHA-1 blocks a shorter plaintext saved.
        let longest = len - CBC_MAC_LEN - 1;
        let extra = sha1_blocks(MAC_HEADER_LEN + longest) - sha1_blocks(MAC_HEADER_LEN + plain_len);
        // An HMAC context: aws-lc keeps its state inline, no allocation per
        // record (seal + open measured under valgrind: none).
        let mut dummy = hmac::Context::with_key(&self.mac);
        dummy.update(&DUMMY[..(extra * SHA1_BLOCK).min(DUMMY.len())]);
        std::hint::black_box(&dummy);

        let got = read_mac(body, plain_len);
        let mac_ok = verify_slices_are_equal(want.as_ref(), &got).is_ok();
        let ok = bad == 0 && mac_ok;
        ok.then_some(CBC_BLOCK..CBC_BLOCK + plain_len)
    }
}

/// `body[start..start + 20]` without an address that depends on `start`:
/// every byte of the window where the MAC can be is read, into a buffer
/// rotated by `start`, which is then turned back with masks.
fn read_mac(body: &[u8], start: usize) -> [u8; CBC_MAC_LEN] {
    let len = body.len();
    let end = start + CBC_MAC_LEN;
    let mut rotated = [0u8; CBC_MAC_LEN];
    let mut offset = 0;
    let mut j = 0;
    for (i, &b) in body
        .iter()
        .enumerate()
        .skip(len.saturating_sub(CBC_MAC_LEN + MAX_PAD))
    {
        offset |= j & eq_mask(i, start);
        let inside = ge_mask(i, start) & !ge_mask(i, end);
        rotated[j] |= b & inside as u8;
        // `j` follows `i`, which is public.
        j += 1;
        if j == CBC_MAC_LEN {
            j = 0;
        }
    }
    let mut mac = [0u8; CBC_MAC_LEN];
    for (k, m) in mac.iter_mut().enumerate() {
        let at = offset + k;
        let at = at - (CBC_MAC_LEN & ge_mask(at, CBC_MAC_LEN));
        for (r, &b) in rotated.iter().enumerate() {
            *m |= b & eq_mask(r, at) as u8;
        }
    }
    mac
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::cipher::EncryptionContext;

    use super::*;

    const SN: [u8; 8] = [0, 1, 0, 0, 0, 0, 0, 5];
    const V: u16 = 0x0100;

    fn key() -> CbcKey {
        CbcKey::new(CipherSuite::RsaAes128CbcSha, &[0x11; 16], &[0x22; 20])
    }

    use crate::dtls::tests::unhex;

    /// IV ‖ E(plain ‖ mac ‖ tail) with a fixed IV: lets a test write any
    /// padding, well-formed or not. `mac` None = the right one.
    fn forge(k: &CbcKey, plain: &[u8], mac: Option<[u8; 20]>, tail: &[u8]) -> Vec<u8> {
        let right = hmac::sign(
            &k.mac,
            &[&mac_header(SN, 23, V, plain.len())[..], plain].concat(),
        );
        let mut body = [plain, mac.as_ref().map_or(right.as_ref(), |m| &m[..]), tail].concat();
        assert_eq!(
            body.len() % CBC_BLOCK,
            0,
            "forged body must be whole blocks"
        );
        let iv = [0x44; CBC_BLOCK];
        k.enc
            .less_safe_encrypt(&mut body, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        [&iv[..], &body].concat()
    }

    fn opens(k: &CbcKey, mut rec: Vec<u8>) -> Option<Vec<u8>> {
        let r = k.open(SN, 23, V, &mut rec)?;
        Some(rec[r].to_vec())
    }

    /// A record built by Python (hmac, hashlib, `cryptography`'s AES-CBC)
    /// from the same keys, sequence, type and version opens to its text.
    #[test]
    fn opens_an_independently_built_record() {
        let rec = unhex(
            "33333333333333333333333333333333bf59236b1bce0520eb9b63c69917881bbbfaefdb474d3b3a80e166019f7989\
             187cf84693546e5fe0cb94efa237140dd3",
        );
        assert_eq!(
            opens(&key(), rec.clone()).as_deref(),
            Some(&b"hello dtls 0.9"[..])
        );
        // The MAC covers epoch‖seq, type and version.
        let mut r = rec.clone();
        assert!(key()
            .open([0, 1, 0, 0, 0, 0, 0, 6], 23, V, &mut r)
            .is_none());
        let mut r = rec.clone();
        assert!(key().open(SN, 22, V, &mut r).is_none());
        let mut r = rec;
        assert!(key().open(SN, 23, 0xfeff, &mut r).is_none());
    }

    #[test]
    fn seal_open_every_padding_length() {
        let k = key();
        for len in 0..70 {
            let mut frag = vec![0u8; CBC_BLOCK + len + CBC_MAC_LEN + CBC_BLOCK];
            frag[CBC_BLOCK..CBC_BLOCK + len].fill(len as u8);
            let n = k.seal(SN, 23, V, &mut frag, len);
            assert_eq!(n, CipherSuite::RsaAes128CbcSha.sealed_len(len));
            let iv = frag[..CBC_BLOCK].to_vec();
            assert_eq!(
                opens(&k, frag[..n].to_vec()),
                Some(vec![len as u8; len]),
                "{len}"
            );
            // A fresh IV per record.
            let n2 = k.seal(SN, 23, V, &mut frag, 0);
            assert_ne!(frag[..CBC_BLOCK], iv[..]);
            assert!(n2 <= n);
        }
    }

    /// Longer padding than needed is legal (RFC 4346 §6.2.3.2: up to 255).
    #[test]
    fn accepts_any_well_formed_padding() {
        let k = key();
        // "hello" + MAC is 25 bytes: 7, 23, 39, … bytes of tail fill whole blocks.
        for pad in [6usize, 22, 38, 230] {
            let rec = forge(&k, b"hello", None, &vec![pad as u8; pad + 1]);
            assert_eq!(opens(&k, rec).as_deref(), Some(&b"hello"[..]), "{pad}");
        }
        // 255 bytes of padding, the most a length byte can say.
        let plain = [9u8; 12];
        let rec = forge(&k, &plain, None, &[255; 256]);
        assert_eq!(opens(&k, rec).as_deref(), Some(&plain[..]));
    }

    /// Bad padding with a good MAC, a good MAC under a wrong padding length,
    /// a padding length beyond the record, a bad MAC, and ragged or short
    /// records: every one is just `None`.
    #[test]
    fn padding_oracle_cases_all_look_alike() {
        let k = key();
        // "hello" + MAC + 7 bytes of tail (6 × 6, then the length 6) = 2 blocks.
        let mut bad_pad = vec![6u8; 7];
        bad_pad[3] = 5;
        let cases = [
            ("one padding byte off", forge(&k, b"hello", None, &bad_pad)),
            (
                "first padding byte off",
                forge(&k, b"hello", None, &[5, 6, 6, 6, 6, 6, 6]),
            ),
            (
                "length byte off",
                forge(&k, b"hello", None, &[6, 6, 6, 6, 6, 6, 7]),
            ),
            (
                "padding longer than the record",
                forge(&k, b"hello", None, &[200; 7]),
            ),
            (
                "padding reaching into the MAC",
                forge(&k, &[1; 30], None, &[29; 14]),
            ),
            ("bad MAC", forge(&k, b"hello", Some([0; 20]), &[6; 7])),
            (
                "no room for the length byte",
                forge(&k, &[1; 12], None, &[]),
            ),
        ];
        for (what, rec) in cases {
            assert_eq!(opens(&k, rec.clone()), None, "{what}");
            assert_eq!(
                opens(&k, rec[..rec.len() - 1].to_vec()),
                None,
                "{what}, ragged"
            );
        }
        for short in [0, 16, 31, 32, 47] {
            assert_eq!(opens(&k, vec![0; short]), None, "{short} bytes");
        }
        // The same record with good padding is accepted (the cases above differ only there).
        assert!(opens(&k, forge(&k, b"hello", None, &[6; 7])).is_some());
        assert!(opens(&k, forge(&k, &[1; 30], None, &[13; 14])).is_some());
    }

    /// However long the padding, SHA-1 runs over as many blocks as for the
    /// longest possible plaintext.
    #[test]
    fn sha1_work_is_constant() {
        for len in (32..600).step_by(16) {
            let longest = len - CBC_MAC_LEN - 1;
            let want = sha1_blocks(MAC_HEADER_LEN + longest);
            for pad in 0..=longest.min(255) {
                let plain = longest - pad;
                let extra =
                    sha1_blocks(MAC_HEADER_LEN + longest) - sha1_blocks(MAC_HEADER_LEN + plain);
                assert!(extra * SHA1_BLOCK <= DUMMY.len());
                assert_eq!(sha1_blocks(MAC_HEADER_LEN + plain) + extra, want);
            }
        }
    }

    #[test]
    fn masks() {
        for (a, b) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (300, 299),
            (299, 300),
            (usize::MAX >> 2, 5),
        ] {
            assert_eq!(ge_mask(a, b) == usize::MAX, a >= b, "{a} {b}");
            assert_eq!(ge_mask(a, b) == 0, a < b, "{a} {b}");
            assert_eq!(eq_mask(a, b) == usize::MAX, a == b);
        }
    }

    #[test]
    fn read_mac_anywhere_in_the_window() {
        for len in [32usize, 48, 300, 1500] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let lowest = len.saturating_sub(CBC_MAC_LEN + MAX_PAD);
            for start in lowest..=len - CBC_MAC_LEN - 1 {
                assert_eq!(
                    read_mac(&body, start)[..],
                    body[start..start + CBC_MAC_LEN],
                    "{len} {start}"
                );
            }
        }
    }

    #[test]
    fn sha1_block_count() {
        // 55 bytes fit one block with the 9 bytes of padding; 56 need two.
        assert_eq!(
            (sha1_blocks(55), sha1_blocks(56), sha1_blocks(0)),
            (1, 2, 1)
        );
    }
}
