//! The cipher suites this implementation speaks: AEAD only, so the record
//! layer has one shape (RFC 5288 GCM, RFC 7905 ChaCha20-Poly1305).

use aws_lc_rs::{aead, digest, hmac};

/// A DTLS 1.2 cipher suite. The PSK ones serve PSK-NEGOTIATE (protocol
/// notes §5.1); the RSA ones only resume a legacy session whose master
/// secret came over CSTP (§5.3), so their key exchange never runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CipherSuite {
    /// TLS_PSK_WITH_AES_128_GCM_SHA256, 0x00A8 (RFC 5487 §3.1).
    PskAes128GcmSha256,
    /// TLS_PSK_WITH_AES_256_GCM_SHA384, 0x00A9 (RFC 5487 §3.1).
    PskAes256GcmSha384,
    /// TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, 0xCCAB (RFC 7905 §2).
    PskChacha20Poly1305Sha256,
    /// TLS_RSA_WITH_AES_128_GCM_SHA256, 0x009C (RFC 5288 §3): openconnect's
    /// `OC-DTLS1_2-AES128-GCM`, resumption only.
    RsaAes128GcmSha256,
    /// TLS_RSA_WITH_AES_256_GCM_SHA384, 0x009D (RFC 5288 §3): openconnect's
    /// `OC-DTLS1_2-AES256-GCM`, resumption only.
    RsaAes256GcmSha384,
}

/// Hash of the suite's PRF and handshake transcript (RFC 5246 §5, RFC 5288 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrfHash {
    Sha256,
    Sha384,
}

impl PrfHash {
    pub(crate) fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
        }
    }

    pub(crate) fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
        }
    }
}

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
pub(crate) const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00FF;

impl CipherSuite {
    /// Every suite, PSK ones first.
    pub const ALL: [Self; 5] = [
        Self::PskAes256GcmSha384,
        Self::PskAes128GcmSha256,
        Self::PskChacha20Poly1305Sha256,
        Self::RsaAes128GcmSha256,
        Self::RsaAes256GcmSha384,
    ];

    /// The IANA code point.
    pub fn id(self) -> u16 {
        match self {
            Self::PskAes128GcmSha256 => 0x00A8,
            Self::PskAes256GcmSha384 => 0x00A9,
            Self::PskChacha20Poly1305Sha256 => 0xCCAB,
            Self::RsaAes128GcmSha256 => 0x009C,
            Self::RsaAes256GcmSha384 => 0x009D,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The IANA name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::PskAes128GcmSha256 => "TLS_PSK_WITH_AES_128_GCM_SHA256",
            Self::PskAes256GcmSha384 => "TLS_PSK_WITH_AES_256_GCM_SHA384",
            Self::PskChacha20Poly1305Sha256 => "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
            Self::RsaAes128GcmSha256 => "TLS_RSA_WITH_AES_128_GCM_SHA256",
            Self::RsaAes256GcmSha384 => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        }
    }

    /// True for the plain-PSK suites (full handshake); false for the
    /// resumption-only ones.
    pub fn is_psk(self) -> bool {
        matches!(self, Self::PskAes128GcmSha256 | Self::PskAes256GcmSha384 | Self::PskChacha20Poly1305Sha256)
    }

    pub fn prf_hash(self) -> PrfHash {
        match self {
            Self::PskAes256GcmSha384 | Self::RsaAes256GcmSha384 => PrfHash::Sha384,
            _ => PrfHash::Sha256,
        }
    }

    pub(crate) fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::PskAes128GcmSha256 | Self::RsaAes128GcmSha256 => &aead::AES_128_GCM,
            Self::PskAes256GcmSha384 | Self::RsaAes256GcmSha384 => &aead::AES_256_GCM,
            Self::PskChacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    pub(crate) fn key_len(self) -> usize {
        self.aead().key_len()
    }

    /// `fixed_iv_length`: the 4-byte GCM salt (RFC 5288 §3) or the 12-byte
    /// ChaCha20-Poly1305 IV (RFC 7905 §2).
    pub(crate) fn fixed_iv_len(self) -> usize {
        if self.is_chacha() {
            12
        } else {
            4
        }
    }

    /// Bytes of nonce carried in each record: 8 for GCM (RFC 5288 §3), none
    /// for ChaCha20-Poly1305 (RFC 7905 §2).
    pub fn explicit_nonce_len(self) -> usize {
        if self.is_chacha() {
            0
        } else {
            8
        }
    }

    /// Bytes a record adds to its plaintext besides the 13-byte header.
    pub fn record_overhead(self) -> usize {
        self.explicit_nonce_len() + super::TAG_LEN
    }

    pub(crate) fn is_chacha(self) -> bool {
        self == Self::PskChacha20Poly1305Sha256
    }
}

impl std::fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
