//! MD5 and HMAC-MD5 (RFC 2104), which aws-lc-rs does not offer, over the
//! RustCrypto `md-5` hash: the DTLS 0.9 PRF and RADIUS's authenticators
//! need them.

use md5::{Digest, Md5};

/// MD5 output length.
pub(crate) const MD5_LEN: usize = 16;
/// MD5's block size, the HMAC key width (RFC 2104 §2).
const MD5_BLOCK: usize = 64;

/// MD5 of the concatenated parts.
pub(crate) fn md5<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; MD5_LEN] {
    let mut hash = Md5::new();
    parts.into_iter().for_each(|p| hash.update(p));
    hash.finalize().into()
}

/// HMAC-MD5 keyed once: the key xor ipad and xor opad (RFC 2104 §2).
pub(crate) struct HmacMd5 {
    ipad: [u8; MD5_BLOCK],
    opad: [u8; MD5_BLOCK],
}

impl HmacMd5 {
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut k = [0u8; MD5_BLOCK];
        if key.len() > MD5_BLOCK {
            k[..MD5_LEN].copy_from_slice(&md5([key]));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        Self {
            ipad: k.map(|b| b ^ 0x36),
            opad: k.map(|b| b ^ 0x5c),
        }
    }

    /// The MAC of the concatenated parts.
    pub(crate) fn sign<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; MD5_LEN] {
        let mut inner = Md5::new();
        inner.update(self.ipad);
        parts.into_iter().for_each(|p| inner.update(p));
        let inner: [u8; MD5_LEN] = inner.finalize().into();
        md5([&self.opad[..], &inner[..]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 2202 §2, test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn hmac_md5_rfc2202_vectors() {
        let mac = |key: &[u8], parts: &[&[u8]]| hex(&HmacMd5::new(key).sign(parts.iter().copied()));
        assert_eq!(
            mac(&[0x0b; 16], &[b"Hi There"]),
            "9294727a3638bb1c13f48ef8158bfc9d"
        );
        assert_eq!(
            mac(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            mac(
                &[0xaa; 80],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            ),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }
}
