//! The MD5 constructions RADIUS authenticates with (MD5 and HMAC-MD5 from
//! `proto::md5`).

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::{Error, AUTHENTICATOR_LEN, MIN_PACKET};
use crate::md5::HmacMd5;

/// MD5 of the concatenated parts.
pub(super) fn md5(parts: &[&[u8]]) -> [u8; AUTHENTICATOR_LEN] {
    crate::md5::md5(parts.iter().copied())
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
    HmacMd5::new(secret).sign([
        &packet[..4],
        &authenticator[..],
        &packet[MIN_PACKET..value],
        &[0; AUTHENTICATOR_LEN],
        &packet[after..],
    ])
}

/// Compares a computed MAC with a received one in constant time.
pub(super) fn check(expected: &[u8], received: &[u8], error: Error) -> Result<(), Error> {
    verify_slices_are_equal(expected, received).map_err(|_| error)
}
