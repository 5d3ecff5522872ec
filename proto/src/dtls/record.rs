//! DTLS record header (RFC 6347 §4.1) and record protection, in place:
//! AEAD (RFC 5288 §3 for GCM, RFC 7905 §2 for ChaCha20-Poly1305) or the
//! CBC of DTLS 0.9 ([`cbc`](super::cbc)).

use std::ops::Range;

use super::codec::{u48_bytes, Reader};
use super::keys::{AeadKey, RecordKey, AAD_LEN};
use super::suite::{CBC_BLOCK, CBC_MAC_LEN};
use super::TAG_LEN;

/// type(1) version(2) epoch(2) sequence_number(6) length(2) (RFC 6347 §4.1).
pub const HEADER_LEN: usize = 13;
/// Bytes a caller leaves before the payload for [`seal_in_place`]: the record
/// header plus the largest explicit nonce or IV (16, the CBC explicit IV of
/// RFC 4346 §6.2.3.2; GCM's is 8, RFC 5288 §3).
///
/// [`seal_in_place`]: super::DtlsServer::seal_in_place
pub const HEADROOM: usize = HEADER_LEN + CBC_BLOCK;
/// Bytes a caller leaves after the payload: the largest of the AEAD tag
/// (16) and CBC's MAC plus padding (20 + up to 16, RFC 5246 §6.2.3.2).
pub const TAILROOM: usize = CBC_MAC_LEN + CBC_BLOCK;
const _: () = assert!(TAILROOM >= TAG_LEN);
/// Largest plaintext in one record: 2^14 (RFC 5246 §6.2.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest ciphertext fragment accepted: 2^14 + 2048 (RFC 5246 §6.2.3).
pub(super) const MAX_FRAGMENT: usize = MAX_PLAINTEXT + 2048;
/// Sequence numbers are 48 bits (RFC 6347 §4.1); never wrap.
pub(crate) const MAX_SEQ: u64 = (1 << 48) - 1;

/// DTLS 1.2 on the wire (RFC 6347 §4.1: `{254, 253}`).
pub const DTLS1_2: u16 = 0xFEFD;
/// DTLS 1.0 (RFC 4347): clients may use it as the record version of their
/// first ClientHello.
pub const DTLS1_0: u16 = 0xFEFF;
/// Pre-RFC OpenSSL DTLS ("DTLS1_BAD_VER", docs/protocol.md, "DTLS 0.9"):
/// served only for the legacy resumption with a CBC suite.
pub const DTLS0_9: u16 = 0x0100;

/// Record content types (RFC 5246 §6.2.1).
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// A parsed record header. `parse` has checked that the whole record is in
/// the buffer, so slicing `HEADER_LEN..HEADER_LEN + len` cannot panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    pub version: u16,
    pub epoch: u16,
    pub seq: u64,
    pub len: usize,
}

/// Why the front of a datagram is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{have} bytes cannot hold a record header")]
    ShortHeader { have: usize },
    #[error("record of {len} bytes, only {have} left in the datagram")]
    Truncated { len: usize, have: usize },
    #[error("record of {len} bytes exceeds {MAX_FRAGMENT}")]
    TooLong { len: usize },
}

impl RecordHeader {
    /// Parses the record at the front of `buf`; `Ok` guarantees that
    /// `buf.len() >= self.total_len()`.
    pub fn parse(buf: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(buf);
        let short = |_| RecordError::ShortHeader { have: buf.len() };
        let content_type = r.u8("type").map_err(short)?;
        let version = r.u16("version").map_err(short)?;
        let epoch = r.u16("epoch").map_err(short)?;
        let seq = r.u48("sequence").map_err(short)?;
        let len = usize::from(r.u16("length").map_err(short)?);
        if len > MAX_FRAGMENT {
            return Err(RecordError::TooLong { len });
        }
        if r.rest().len() < len {
            return Err(RecordError::Truncated {
                len,
                have: r.rest().len(),
            });
        }
        Ok(Self {
            content_type,
            version,
            epoch,
            seq,
            len,
        })
    }

    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.len
    }

    /// The 64-bit `seq_num` of the MAC/AEAD input: epoch ‖ sequence.
    pub(crate) fn seq_num(&self) -> [u8; 8] {
        seq_num(self.epoch, self.seq)
    }
}

pub(crate) fn seq_num(epoch: u16, seq: u64) -> [u8; 8] {
    let s = u48_bytes(seq);
    let e = epoch.to_be_bytes();
    [e[0], e[1], s[0], s[1], s[2], s[3], s[4], s[5]]
}

pub(crate) fn write_header(
    out: &mut [u8],
    content_type: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    len: usize,
) {
    out[0] = content_type;
    out[1..3].copy_from_slice(&version.to_be_bytes());
    out[3..11].copy_from_slice(&seq_num(epoch, seq));
    // Callers bound `len` by MAX_FRAGMENT.
    out[11..13].copy_from_slice(&(len as u16).to_be_bytes());
}

fn aad(seq_num: [u8; 8], content_type: u8, version: u16, plain_len: usize) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..8].copy_from_slice(&seq_num);
    a[8] = content_type;
    a[9..11].copy_from_slice(&version.to_be_bytes());
    a[11..13].copy_from_slice(&(plain_len as u16).to_be_bytes());
    a
}

/// Bytes between the header and the plaintext for `key`'s suite.
pub(crate) fn explicit_len(key: &RecordKey) -> usize {
    key.suite().explicit_nonce_len()
}

/// Where the plaintext starts in a record written with `key` (none = epoch 0).
pub(crate) fn payload_offset(key: Option<&RecordKey>) -> usize {
    HEADER_LEN + key.map_or(0, explicit_len)
}

/// Whole length of a record with `plain_len` bytes of plaintext.
pub(crate) fn record_len(key: Option<&RecordKey>, plain_len: usize) -> usize {
    HEADER_LEN + key.map_or(plain_len, |k| k.suite().sealed_len(plain_len))
}

/// Most plaintext a record of at most `room` bytes can carry.
pub(crate) fn max_plain(key: Option<&RecordKey>, room: usize) -> Option<usize> {
    let frag = room.checked_sub(HEADER_LEN)?;
    match key {
        None => Some(frag),
        Some(k) => k.suite().max_plain(frag),
    }
}

/// Completes a record whose plaintext is already at `payload_offset(key)`:
/// writes the header, and seals when `key` is given. `None` if `out` is short.
pub(crate) fn finish(
    out: &mut [u8],
    content_type: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    key: Option<&RecordKey>,
    plain_len: usize,
) -> Option<usize> {
    match key {
        Some(k) => seal(k, content_type, version, epoch, seq, out, plain_len),
        None => {
            let total = HEADER_LEN + plain_len;
            if out.len() < total || plain_len > MAX_PLAINTEXT {
                return None;
            }
            write_header(out, content_type, version, epoch, seq, plain_len);
            Some(total)
        }
    }
}

/// Seals one record in place. `rec` starts where the header goes; the
/// plaintext is already at `rec[HEADER_LEN + explicit_len ..][..plain_len]`
/// and room for the tag (or MAC and padding) follows it. Returns the
/// record's length, or `None` if `rec` is too short (callers check first).
pub(crate) fn seal(
    key: &RecordKey,
    content_type: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    rec: &mut [u8],
    plain_len: usize,
) -> Option<usize> {
    let total = record_len(Some(key), plain_len);
    if rec.len() < total || plain_len > MAX_PLAINTEXT {
        return None;
    }
    let sn = seq_num(epoch, seq);
    write_header(rec, content_type, version, epoch, seq, total - HEADER_LEN);
    match key {
        RecordKey::Aead(k) => seal_aead(k, content_type, version, sn, &mut rec[..total], plain_len),
        RecordKey::Cbc(k, _) => {
            k.seal(
                sn,
                content_type,
                version,
                &mut rec[HEADER_LEN..total],
                plain_len,
            );
        }
    }
    Some(total)
}

fn seal_aead(
    key: &AeadKey,
    content_type: u8,
    version: u16,
    sn: [u8; 8],
    rec: &mut [u8],
    plain_len: usize,
) {
    let x = key.suite().explicit_nonce_len();
    // We use epoch‖seq as the GCM explicit nonce: unique per key by construction.
    rec[HEADER_LEN..HEADER_LEN + x].copy_from_slice(&sn[..x]);
    let (plain, tag_out) = rec[HEADER_LEN + x..].split_at_mut(plain_len);
    let tag = key.seal(sn, aad(sn, content_type, version, plain_len), plain);
    tag_out.copy_from_slice(tag.as_ref());
}

/// Opens one record in place. `body` is the record's fragment (after the
/// header). Returns where the plaintext is inside `body`, or `None` when
/// the record is too short or fails authentication.
pub(crate) fn open(key: &RecordKey, hdr: &RecordHeader, body: &mut [u8]) -> Option<Range<usize>> {
    let key = match key {
        RecordKey::Aead(k) => k,
        RecordKey::Cbc(k, _) => return k.open(hdr.seq_num(), hdr.content_type, hdr.version, body),
    };
    let x = key.suite().explicit_nonce_len();
    let plain_len = body.len().checked_sub(x + TAG_LEN)?;
    if plain_len > MAX_PLAINTEXT {
        return None;
    }
    let explicit = if x == 0 {
        hdr.seq_num()
    } else {
        let mut e = [0u8; 8];
        e.copy_from_slice(&body[..8]);
        e
    };
    let a = aad(hdr.seq_num(), hdr.content_type, hdr.version, plain_len);
    key.open(explicit, a, &mut body[x..])
        .then_some(x..x + plain_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::keys::derive_keys;
    use crate::dtls::CipherSuite;

    #[test]
    fn parse_checks_lengths() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                RecordHeader::parse(&[0x17; 12][..n]),
                Err(RecordError::ShortHeader { have: n })
            );
        }
        let mut rec = [0u8; 20];
        rec[..13].copy_from_slice(&[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 7]);
        let h = RecordHeader::parse(&rec).unwrap();
        assert_eq!(
            (h.content_type, h.version, h.epoch, h.seq, h.len),
            (23, DTLS1_2, 1, 9, 7)
        );
        assert_eq!(h.total_len(), 20);
        assert_eq!(
            RecordHeader::parse(&rec[..19]),
            Err(RecordError::Truncated { len: 7, have: 6 })
        );
        rec[11..13].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(
            RecordHeader::parse(&rec),
            Err(RecordError::TooLong { len: 0xffff })
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        let mut buf = [0u8; 64];
        for _ in 0..10_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let n = (x as usize) % buf.len();
            if let Ok(h) = RecordHeader::parse(&buf[..n]) {
                assert!(h.total_len() <= n);
            }
        }
    }

    #[test]
    fn seal_open_round_trip_all_suites() {
        for suite in CipherSuite::ALL {
            let keys = derive_keys(suite, &[5; 48], &[1; 32], &[2; 32]);
            let (key, other) = (&keys.client_write, &keys.server_write);
            let v = suite.version();
            let x = suite.explicit_nonce_len();
            for len in (0..40).chain([100, 1400]) {
                let n = record_len(Some(key), len);
                assert!(
                    n - HEADER_LEN - len <= suite.record_overhead(),
                    "{suite} {len}"
                );
                // max_plain inverts record_len: CBC rounds up to whole blocks.
                let most = max_plain(Some(key), n).unwrap();
                assert!(
                    most >= len && record_len(Some(key), most) == n,
                    "{suite} {len}"
                );
                assert!(suite.is_cbc() || most == len);
                assert!(max_plain(Some(key), n - 1).is_none_or(|m| m < len));
                let mut rec = vec![0u8; n];
                rec[HEADER_LEN + x..][..len].fill(0xab);
                assert_eq!(
                    seal(key, content::APPLICATION_DATA, v, 1, 42, &mut rec, len),
                    Some(n)
                );
                let h = RecordHeader::parse(&rec).unwrap();
                assert_eq!((h.version, h.epoch, h.seq, h.total_len()), (v, 1, 42, n));
                let mut tampered = rec.clone();
                assert!(
                    open(other, &h, &mut rec.clone()[HEADER_LEN..]).is_none(),
                    "{suite}: other direction's key"
                );
                let pt = open(key, &h, &mut rec[HEADER_LEN..]).unwrap();
                assert_eq!(pt.len(), len);
                assert!(rec[HEADER_LEN..][pt].iter().all(|&b| b == 0xab));
                // Any flipped bit, header included, fails authentication.
                for i in [1, 2, 4, 10, HEADER_LEN + 2, n - 1] {
                    tampered[i] ^= 0x40;
                    let h2 = RecordHeader::parse(&tampered).unwrap();
                    assert!(
                        open(key, &h2, &mut tampered.clone()[HEADER_LEN..]).is_none(),
                        "{suite} byte {i}"
                    );
                    tampered[i] ^= 0x40;
                }
                assert!(seal(key, 23, v, 1, 43, &mut rec[..n - 1], len).is_none());
            }
            let h = RecordHeader {
                content_type: 23,
                version: v,
                epoch: 1,
                seq: 0,
                len: 0,
            };
            for short in [0, x + TAG_LEN - 1, 47] {
                assert!(
                    open(key, &h, &mut vec![0u8; short]).is_none(),
                    "{suite} {short}"
                );
            }
        }
    }
}
