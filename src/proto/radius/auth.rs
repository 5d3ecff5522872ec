//! The MD5 constructions RADIUS authenticates with. aws-lc-rs has no MD5,
//! so MD5 is the RustCrypto `md-5` crate and HMAC-MD5 (RFC 2104) is built
//! on it here.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use md5::{Digest, Md5};

use super::{Error, AUTHENTICATOR_LEN, MIN_PACKET};

/// MD5's block size, the HMAC key width (RFC 2104 §2).
const MD5_BLOCK: usize = 64;

/// MD5 of the concatenated parts.
pub(super) fn md5(parts: &[&[u8]]) -> [u8; AUTHENTICATOR_LEN] {
    let mut hash = Md5::new();
    parts.iter().for_each(|p| hash.update(p));
    hash.finalize().into()
}

/// HMAC-MD5 (RFC 2104) of the concatenated parts.
fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; AUTHENTICATOR_LEN] {
    let mut k = [0u8; MD5_BLOCK];
    if key.len() > MD5_BLOCK {
        k[..AUTHENTICATOR_LEN].copy_from_slice(&md5(&[key]));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad = k.map(|b| b ^ 0x36);
    let opad = k.map(|b| b ^ 0x5c);
    let mut inner = Md5::new();
    inner.update(ipad);
    parts.iter().for_each(|p| inner.update(p));
    let inner: [u8; AUTHENTICATOR_LEN] = inner.finalize().into();
    md5(&[&opad, &inner])
}

/// MD5(Code + Identifier + Length + `authenticator` + Attributes + secret):
/// the Response Authenticator with the request's authenticator (RFC 2865
/// §3), or the accounting/Disconnect/CoA Request Authenticator with zeros
/// (RFC 2866 §3, RFC 5176 §2.3). `packet` is the whole packet; its own
/// authenticator field is replaced by `authenticator`.
pub(super) fn packet_md5(
    packet: &[u8],
    authenticator: &[u8; AUTHENTICATOR_LEN],
    secret: &[u8],
) -> [u8; AUTHENTICATOR_LEN] {
    md5(&[&packet[..4], authenticator, &packet[MIN_PACKET..], secret])
}

/// The Message-Authenticator (RFC 3579 §3.2): HMAC-MD5 keyed by the secret
/// over the packet with `authenticator` in the header and the value of the
/// Message-Authenticator attribute starting at `offset` as zeros.
pub(super) fn message_authenticator(
    packet: &[u8],
    authenticator: &[u8; AUTHENTICATOR_LEN],
    offset: usize,
    secret: &[u8],
) -> [u8; AUTHENTICATOR_LEN] {
    let value = offset + 2;
    let after = value + AUTHENTICATOR_LEN;
    hmac_md5(
        secret,
        &[
            &packet[..4],
            authenticator,
            &packet[MIN_PACKET..value],
            &[0; AUTHENTICATOR_LEN],
            &packet[after..],
        ],
    )
}

/// Compares a computed MAC with a received one in constant time.
pub(super) fn check(expected: &[u8], received: &[u8], error: Error) -> Result<(), Error> {
    verify_slices_are_equal(expected, received).map_err(|_| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_md5_rfc2202_vectors() {
        // RFC 2202 §2, test cases 1, 2 and 6 (a key longer than a block).
        let one = hmac_md5(&[0x0b; 16], &[b"Hi There"]);
        assert_eq!(hex(&one), "9294727a3638bb1c13f48ef8158bfc9d");
        let two = hmac_md5(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&two), "750c783e6ab0b503eaa86e310a5db738");
        let six = hmac_md5(
            &[0xaa; 80],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(hex(&six), "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
