//! Sans-IO DTLS 1.2 (RFC 6347) for the OpenConnect UDP channel (the "DTLS"
//! sections of docs/protocol.md): the PSK-NEGOTIATE full handshake, the
//! legacy abbreviated handshake that resumes a session from
//! `X-DTLS-Master-Secret`, and a record layer that decrypts and seals in
//! place. Server and client sides; the client drives the server in tests
//! and load generators.
//!
//! **DTLS 0.9.** The legacy resumption with `AES128-SHA`/`AES256-SHA`
//! ([`CipherSuite::RsaAes128CbcSha`], [`CipherSuite::RsaAes256CbcSha`])
//! runs over the pre-RFC OpenSSL DTLS that Cisco clients and openconnect
//! use for those names (version 0x0100, "DTLS1_BAD_VER"): TLS 1.0 PRF,
//! handshake bodies hashed without headers, a 3-byte ChangeCipherSpec that
//! takes a message_seq, and TLS 1.1 CBC records (explicit IV, HMAC-SHA1,
//! checked in constant time). A CBC suite means DTLS 0.9 and nothing else.
//!
//! No socket, no clock: every entry point takes `now`. After any `handle_*`
//! call, drain `poll_transmit` (until `None`), then `poll_event`, then
//! re-arm a timer with `poll_timeout`.
//!
//! **Payload framing.** Each application-data record carries one
//! OpenConnect packet: a type byte (the CSTP types of [`cstp::FrameType`],
//! 0x00 DATA, 0x03 DPD-REQ, 0x04 DPD-RESP, …) followed by the IP packet or
//! DPD payload (docs/protocol.md, "DTLS: record payloads and DPD"). This
//! module does not look inside; see [`split_payload`].
//!
//! **Errors.** An `Err` from `handle_datagram` is fatal: the channel is
//! closed and `poll_transmit` yields the fatal alert once. Records that fail
//! authentication, replays and other noise are dropped and counted in
//! [`DtlsCounters`], never returned: returned means fatal, noise is counted.
//!
//! **Not supported** (the client falls back to CSTP): DTLS 1.0, DTLS 0.9
//! other than the CBC resumption (no 3DES, no full handshake), CBC over
//! DTLS 1.2, renegotiation (ignored), certificates. We never send
//! HelloVerifyRequest: only ClientHellos naming a live App-ID get a server,
//! which is the caller's routing job
//! (docs/protocol.md, "DTLS: finding the session"). A ClientHello that
//! arrives after the handshake is ignored here; the caller decides whether
//! it starts a new `DtlsServer` (a client restarting DTLS).
//!
//! [`cstp::FrameType`]: crate::cstp::FrameType

mod cbc;
mod channel;
mod client;
mod codec;
mod conn;
mod flight;
mod handshake;
mod keys;
mod prf;
mod reassembly;
mod record;
mod replay;
mod server;
mod suite;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use channel::{
    on_hello, ChannelEvent, ChannelKey, ChannelState, HelloAction, Inbound, ServerChannel,
    PENDING_REPLACE_AFTER,
};
pub use client::DtlsClient;
pub use handshake::{client_hello_session_id, is_client_hello};
pub use record::{
    content, RecordError, RecordHeader, DTLS0_9, DTLS1_0, DTLS1_2, HEADER_LEN, HEADROOM,
    MAX_PLAINTEXT, TAILROOM,
};
pub use server::DtlsServer;
pub use suite::{CipherSuite, PrfHash};

/// AEAD tag length of every AEAD suite.
pub const TAG_LEN: usize = 16;
/// Smallest handshake datagram we will build: header, record protection
/// (CBC's is the bulkiest), handshake header and at least a byte of body
/// per fragment.
pub const MIN_MTU: usize = 80;
const _: () = assert!(MIN_MTU >= flight::MIN_DATAGRAM);

/// Settings shared by server and client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtlsConfig {
    /// Largest datagram for handshake flights; larger messages are
    /// fragmented (RFC 6347 §4.1.1). Clamped to at least [`MIN_MTU`].
    pub mtu: usize,
    /// PSK suites we accept (server) or offer (client), best first.
    pub suites: Vec<CipherSuite>,
    /// Server: pick by our order in `suites` instead of the client's.
    pub prefer_server_order: bool,
    /// First retransmission timeout (RFC 6347 §4.2.4.1: 1 s).
    pub retransmit_initial: Duration,
    /// The timeout doubles after each retransmission up to this.
    pub retransmit_max: Duration,
    /// Retransmissions of one flight before the handshake fails.
    pub max_retransmits: u32,
    /// The whole handshake must finish within this, counted from `new`.
    pub handshake_timeout: Duration,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        Self {
            mtu: 1400,
            // openconnect's GnuTLS order, AES-256-GCM first (docs/protocol.md,
            // "DTLS: PSK-NEGOTIATE").
            suites: vec![
                CipherSuite::PskAes256GcmSha384,
                CipherSuite::PskAes128GcmSha256,
                CipherSuite::PskChacha20Poly1305Sha256,
            ],
            prefer_server_order: false,
            retransmit_initial: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(60), // RFC 6347 §4.2.4.1
            max_retransmits: 6,
            // Longer than openconnect waits for DTLS (12 s; docs/protocol.md,
            // "DTLS: falling back to CSTP").
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// A datagram's outcome for the application.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Received<'a> {
    /// Nothing (more) for the application in this datagram.
    Done,
    /// One decrypted application-data record, in place inside the datagram.
    /// A datagram may hold several records: call `handle_datagram` again on
    /// `&mut datagram[next..]` until it returns `Done`:
    ///
    /// ```text
    /// let mut off = 0;
    /// while let Received::AppData { data, next } = dtls.handle_datagram(now, &mut dgram[off..])? {
    ///     deliver(data);
    ///     off += next;
    /// }
    /// ```
    AppData { data: &'a mut [u8], next: usize },
}

/// Things the application should know about, from `poll_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake finished; application data may flow.
    Connected { suite: CipherSuite },
    /// The channel ended without a returned error.
    Closed { reason: CloseReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent close_notify.
    PeerClosed,
    /// The peer sent a fatal alert with this description (RFC 5246 §7.2).
    PeerAlert(u8),
    /// A flight went unanswered after all retransmissions, or the whole
    /// handshake took longer than `handshake_timeout`.
    HandshakeTimeout,
    /// `close()` was called.
    Local,
}

/// Dropped input and retransmissions, for per-shard statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DtlsCounters {
    /// Unparseable record headers or handshake fragments, unknown types.
    pub malformed: u64,
    /// Records with a version we do not accept.
    pub bad_version: u64,
    /// Records of an epoch we cannot (yet, or any longer) read.
    pub wrong_epoch: u64,
    /// Records that failed authentication (AEAD tag, or CBC padding and MAC).
    pub auth_failed: u64,
    /// Duplicates inside the replay window.
    pub replayed: u64,
    /// Records left of the replay window.
    pub too_old: u64,
    /// Well-formed records not acceptable in the current state (early
    /// application data, handshake messages after the handshake, …).
    pub unexpected: u64,
    /// Flights we sent again, on timeout or on a peer's retransmission.
    pub retransmits: u64,
    /// Peer retransmissions not answered: too soon after the last answer.
    pub resends_limited: u64,
    /// Alerts in epoch 0 (before keys, so from anyone): ignored.
    pub unauthenticated_alerts: u64,
}

/// Alert descriptions (RFC 5246 §7.2).
pub mod alert {
    pub const CLOSE_NOTIFY: u8 = 0;
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    pub const BAD_RECORD_MAC: u8 = 20;
    pub const HANDSHAKE_FAILURE: u8 = 40;
    pub const ILLEGAL_PARAMETER: u8 = 47;
    pub const DECODE_ERROR: u8 = 50;
    pub const DECRYPT_ERROR: u8 = 51;
    pub const PROTOCOL_VERSION: u8 = 70;
    pub const INTERNAL_ERROR: u8 = 80;
    pub(crate) const LEVEL_WARNING: u8 = 1;
    pub(crate) const LEVEL_FATAL: u8 = 2;
}

/// Errors. From `handle_datagram` they are fatal to the channel (the
/// client falls back to CSTP); from `seal_in_place` only `SequenceExhausted`
/// is, the others are caller mistakes that change nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtlsError {
    #[error("got {got} while expecting {expected}")]
    Inappropriate {
        expected: &'static str,
        got: &'static str,
    },
    #[error("malformed {0}")]
    Decode(&'static str),
    #[error("peer wants DTLS version {0:#06x}; served: DTLS 1.2 (0xfefd), or 0.9 (0x0100) to resume CBC")]
    ProtocolVersion(u16),
    #[error("no cipher suite in common")]
    NoCommonSuite,
    #[error("illegal parameter: {0}")]
    IllegalParameter(&'static str),
    #[error("legacy resumption refused: {0}")]
    Resumption(&'static str),
    #[error("Finished verify_data does not match")]
    BadFinished,
    #[error("handshake not finished")]
    NotConnected,
    #[error("channel closed")]
    Closed,
    #[error("payload of {len} bytes exceeds {max}")]
    TooLong { len: usize, max: usize },
    #[error("buffer too small: {need} bytes needed")]
    BufferTooSmall { need: usize },
    #[error("record sequence numbers exhausted")]
    SequenceExhausted,
}

impl DtlsError {
    /// The fatal alert we send for this error.
    pub fn alert(&self) -> u8 {
        match self {
            Self::Inappropriate { .. } => alert::UNEXPECTED_MESSAGE,
            Self::Decode(_) => alert::DECODE_ERROR,
            Self::ProtocolVersion(_) => alert::PROTOCOL_VERSION,
            Self::NoCommonSuite | Self::Resumption(_) => alert::HANDSHAKE_FAILURE,
            Self::IllegalParameter(_) => alert::ILLEGAL_PARAMETER,
            Self::BadFinished => alert::DECRYPT_ERROR,
            _ => alert::INTERNAL_ERROR,
        }
    }
}

/// Splits an OpenConnect DTLS payload into its type byte and the rest
/// (docs/protocol.md, "DTLS: record payloads and DPD"); `None` for an
/// empty record.
pub fn split_payload(record: &[u8]) -> Option<(u8, &[u8])> {
    record.split_first().map(|(t, rest)| (*t, rest))
}
