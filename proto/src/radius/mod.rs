//! RADIUS as a NAS speaks it (RFC 2865 authentication, RFC 2866
//! accounting, RFC 2869/3579 Message-Authenticator, RFC 5176 Disconnect and
//! CoA): packets decoded from bytes and built into bytes, with every
//! authenticator computed and checked here. Sockets, retries, timeouts and
//! the random Request Authenticator belong to the caller.
//!
//! ```text
//! let bytes = Builder::access_request(id, random16)
//!     .user_name("nemo")
//!     .password(secret, b"arctangent")
//!     .encode(secret)?;
//! // ... send, receive `reply_bytes` ...
//! let reply = Packet::decode(&reply_bytes)?;
//! reply.verify_reply(&random16, secret, true)?;
//! ```

pub mod accounting;
pub mod attr;
mod auth;
mod builder;
pub mod disconnect;
pub mod login;
mod packet;
#[cfg(test)]
mod tests;

pub use attr::{hide_password, unhide_password};
pub use builder::Builder;
pub use packet::{Attribute, Attributes, Packet, VendorSpecific};

/// Smallest packet: the header alone (RFC 2865 §3).
pub const MIN_PACKET: usize = 20;
/// Largest packet (RFC 2865 §3).
pub const MAX_PACKET: usize = 4096;
/// Length of the Request and Response Authenticators.
pub const AUTHENTICATOR_LEN: usize = 16;
/// Longest attribute value: the length octet counts the 2-byte header.
pub const MAX_VALUE: usize = 253;

/// The packet types a NAS sends or receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    AccessRequest = 1,
    AccessAccept = 2,
    AccessReject = 3,
    AccountingRequest = 4,
    AccountingResponse = 5,
    AccessChallenge = 11,
    /// RFC 5997: a liveness probe, answered like an Access-Request.
    StatusServer = 12,
    DisconnectRequest = 40,
    DisconnectAck = 41,
    DisconnectNak = 42,
    CoaRequest = 43,
    CoaAck = 44,
    CoaNak = 45,
}

impl Code {
    /// The code for a wire octet, or `None` for one this codec does not know
    /// (RFC 2865 §3: such packets are silently discarded).
    pub const fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::AccessRequest,
            2 => Self::AccessAccept,
            3 => Self::AccessReject,
            4 => Self::AccountingRequest,
            5 => Self::AccountingResponse,
            11 => Self::AccessChallenge,
            12 => Self::StatusServer,
            40 => Self::DisconnectRequest,
            41 => Self::DisconnectAck,
            42 => Self::DisconnectNak,
            43 => Self::CoaRequest,
            44 => Self::CoaAck,
            45 => Self::CoaNak,
            _ => return None,
        })
    }

    /// Whether the Request Authenticator is random (Access-Request,
    /// Status-Server) rather than an MD5 over the packet (accounting,
    /// Disconnect and CoA requests) or a reply's Response Authenticator.
    pub const fn has_random_authenticator(self) -> bool {
        matches!(self, Self::AccessRequest | Self::StatusServer)
    }

    /// Whether this is a request whose authenticator is MD5 over the
    /// packet with a zero authenticator field (RFC 2866 §3, RFC 5176 §2.3).
    pub const fn has_hashed_authenticator(self) -> bool {
        matches!(
            self,
            Self::AccountingRequest | Self::DisconnectRequest | Self::CoaRequest
        )
    }
}

/// Why bytes are not an acceptable RADIUS packet or value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("datagram of {0} bytes is outside RADIUS's 20..=4096")]
    Size(usize),
    #[error("length field says {field} bytes but {received} arrived or it is outside 20..=4096")]
    Length { field: usize, received: usize },
    #[error("unknown packet code {0}")]
    UnknownCode(u8),
    #[error("attribute at offset {0} has a length below 2 or runs past the packet")]
    Attribute(usize),
    #[error("attribute {ty} has {len} value bytes, expected {expected}")]
    ValueLength {
        ty: u8,
        len: usize,
        expected: &'static str,
    },
    #[error("attribute {0} is not UTF-8 text")]
    NotText(u8),
    #[error("Framed-IPv6-Prefix is malformed")]
    Ipv6Prefix,
    #[error("Vendor-Specific attribute is malformed")]
    VendorSpecific,
    #[error("attribute {ty} value of {len} bytes is longer than 253")]
    ValueTooLong { ty: u8, len: usize },
    #[error("password of {0} bytes is longer than 128")]
    PasswordTooLong(usize),
    #[error("hidden password of {0} bytes is not 16..=128 in steps of 16")]
    HiddenPassword(usize),
    #[error("a User-Password needs a random Request Authenticator (Access-Request)")]
    PasswordInWrongPacket,
    #[error("packet would be longer than 4096 bytes")]
    TooLong,
    #[error("authenticator does not match: wrong shared secret or a forged packet")]
    Authenticator,
    #[error("Message-Authenticator does not match")]
    MessageAuthenticator,
    #[error("Message-Authenticator is required but absent")]
    MissingMessageAuthenticator,
    #[error("{0:?} is not a packet this check applies to")]
    WrongCode(Code),
}
