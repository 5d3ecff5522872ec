//! The cipher suites this implementation speaks: AEAD ones over DTLS 1.2
//! (RFC 5288 GCM, RFC 7905 ChaCha20-Poly1305), and the two AES-CBC ones of
//! the legacy DTLS 0.9 resumption (docs/protocol.md, "DTLS 0.9").

use aws_lc_rs::{aead, cipher, digest, hmac};

use super::record::{DTLS0_9, DTLS1_2};

/// A cipher suite. The PSK ones serve PSK-NEGOTIATE over DTLS 1.2; the RSA
/// ones only resume a legacy session whose master secret came over CSTP,
/// so their key exchange never runs (docs/protocol.md,
/// "DTLS: PSK-NEGOTIATE" and "DTLS: legacy resumption"). The CBC ones exist
/// only over DTLS 0.9 ([`version`](Self::version)).
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
    /// TLS_RSA_WITH_AES_128_CBC_SHA, 0x002F (RFC 5246 §A.5): openconnect's
    /// `AES128-SHA`, resumption over DTLS 0.9 only.
    RsaAes128CbcSha,
    /// TLS_RSA_WITH_AES_256_CBC_SHA, 0x0035 (RFC 5246 §A.5): openconnect's
    /// `AES256-SHA`, resumption over DTLS 0.9 only.
    RsaAes256CbcSha,
}

/// Hash of the suite's PRF and handshake transcript (RFC 5246 §5, RFC 5288 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrfHash {
    Sha256,
    Sha384,
    /// The TLS 1.0/1.1 PRF, P_MD5 xor P_SHA1, and MD5 ‖ SHA-1 of the
    /// transcript (RFC 4346 §5, §7.4.9): DTLS 0.9.
    Md5Sha1,
}

impl PrfHash {
    /// The HMAC of the TLS 1.2 PRF; `None` for the split TLS 1.0 one.
    pub(crate) fn hmac(self) -> Option<hmac::Algorithm> {
        match self {
            Self::Sha256 => Some(hmac::HMAC_SHA256),
            Self::Sha384 => Some(hmac::HMAC_SHA384),
            Self::Md5Sha1 => None,
        }
    }

    /// The transcript hash of the TLS 1.2 PRF; `None` for the TLS 1.0 one.
    pub(crate) fn digest(self) -> Option<&'static digest::Algorithm> {
        match self {
            Self::Sha256 => Some(&digest::SHA256),
            Self::Sha384 => Some(&digest::SHA384),
            Self::Md5Sha1 => None,
        }
    }
}

/// HMAC-SHA1 output and key length of the CBC suites (RFC 5246 §6.2.3.1).
pub(crate) const CBC_MAC_LEN: usize = 20;
/// AES block = explicit IV length (RFC 4346 §6.2.3.2).
pub(crate) const CBC_BLOCK: usize = 16;

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
pub(crate) const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00FF;

impl CipherSuite {
    /// The suite as GnuTLS describes a session (what occtl shows).
    pub fn description(self) -> &'static str {
        match self {
            Self::PskAes128GcmSha256 => "(DTLS1.2)-(PSK)-(AES-128-GCM)",
            Self::PskAes256GcmSha384 => "(DTLS1.2)-(PSK)-(AES-256-GCM)",
            Self::PskChacha20Poly1305Sha256 => "(DTLS1.2)-(PSK)-(CHACHA20-POLY1305)",
            Self::RsaAes128GcmSha256 => "(DTLS1.2)-(RSA)-(AES-128-GCM)",
            Self::RsaAes256GcmSha384 => "(DTLS1.2)-(RSA)-(AES-256-GCM)",
            Self::RsaAes128CbcSha => "(DTLS0.9)-(RSA)-(AES-128-CBC)-(SHA1)",
            Self::RsaAes256CbcSha => "(DTLS0.9)-(RSA)-(AES-256-CBC)-(SHA1)",
        }
    }

    /// Every suite, PSK ones first.
    pub const ALL: [Self; 7] = [
        Self::PskAes256GcmSha384,
        Self::PskAes128GcmSha256,
        Self::PskChacha20Poly1305Sha256,
        Self::RsaAes128GcmSha256,
        Self::RsaAes256GcmSha384,
        Self::RsaAes128CbcSha,
        Self::RsaAes256CbcSha,
    ];

    /// The IANA code point.
    pub fn id(self) -> u16 {
        match self {
            Self::PskAes128GcmSha256 => 0x00A8,
            Self::PskAes256GcmSha384 => 0x00A9,
            Self::PskChacha20Poly1305Sha256 => 0xCCAB,
            Self::RsaAes128GcmSha256 => 0x009C,
            Self::RsaAes256GcmSha384 => 0x009D,
            Self::RsaAes128CbcSha => 0x002F,
            Self::RsaAes256CbcSha => 0x0035,
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
            Self::RsaAes128CbcSha => "TLS_RSA_WITH_AES_128_CBC_SHA",
            Self::RsaAes256CbcSha => "TLS_RSA_WITH_AES_256_CBC_SHA",
        }
    }

    /// The DTLS version the suite runs over: [`DTLS0_9`] for the CBC ones
    /// (openconnect's `AES128-SHA`/`AES256-SHA` mean DTLS 0.9,
    /// docs/protocol.md, "DTLS: legacy resumption"), [`DTLS1_2`] for the rest.
    pub fn version(self) -> u16 {
        if self.is_cbc() {
            DTLS0_9
        } else {
            DTLS1_2
        }
    }

    /// AES-CBC with HMAC-SHA1 (MAC-then-encrypt) instead of an AEAD.
    pub fn is_cbc(self) -> bool {
        matches!(self, Self::RsaAes128CbcSha | Self::RsaAes256CbcSha)
    }

    /// True for the plain-PSK suites (full handshake); false for the
    /// resumption-only ones.
    pub fn is_psk(self) -> bool {
        matches!(
            self,
            Self::PskAes128GcmSha256 | Self::PskAes256GcmSha384 | Self::PskChacha20Poly1305Sha256
        )
    }

    pub fn prf_hash(self) -> PrfHash {
        match self {
            Self::PskAes256GcmSha384 | Self::RsaAes256GcmSha384 => PrfHash::Sha384,
            Self::RsaAes128CbcSha | Self::RsaAes256CbcSha => PrfHash::Md5Sha1,
            _ => PrfHash::Sha256,
        }
    }

    /// The AEAD; `None` for the CBC suites.
    pub(crate) fn aead(self) -> Option<&'static aead::Algorithm> {
        match self {
            Self::PskAes128GcmSha256 | Self::RsaAes128GcmSha256 => Some(&aead::AES_128_GCM),
            Self::PskAes256GcmSha384 | Self::RsaAes256GcmSha384 => Some(&aead::AES_256_GCM),
            Self::PskChacha20Poly1305Sha256 => Some(&aead::CHACHA20_POLY1305),
            Self::RsaAes128CbcSha | Self::RsaAes256CbcSha => None,
        }
    }

    /// The block cipher of a CBC suite.
    pub(crate) fn cbc_cipher(self) -> Option<&'static cipher::Algorithm> {
        match self {
            Self::RsaAes128CbcSha => Some(&cipher::AES_128),
            Self::RsaAes256CbcSha => Some(&cipher::AES_256),
            _ => None,
        }
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::RsaAes128CbcSha => 16,
            Self::RsaAes256CbcSha => 32,
            _ => self.aead().map_or(0, |a| a.key_len()),
        }
    }

    /// `mac_key_length` (RFC 5246 §6.3): 20 for HMAC-SHA1, none for AEADs.
    pub(crate) fn mac_key_len(self) -> usize {
        if self.is_cbc() {
            CBC_MAC_LEN
        } else {
            0
        }
    }

    /// `fixed_iv_length`: the 4-byte GCM salt (RFC 5288 §3) or the 12-byte
    /// ChaCha20-Poly1305 IV (RFC 7905 §2); CBC IVs are explicit (RFC 4346
    /// §6.2.3.2), so none from the key block.
    pub(crate) fn fixed_iv_len(self) -> usize {
        match self {
            Self::PskChacha20Poly1305Sha256 => 12,
            Self::RsaAes128CbcSha | Self::RsaAes256CbcSha => 0,
            _ => 4,
        }
    }

    /// Bytes carried before the ciphertext of each record: the 8-byte GCM
    /// explicit nonce (RFC 5288 §3), nothing for ChaCha20-Poly1305 (RFC 7905
    /// §2), the 16-byte explicit IV for CBC (RFC 4346 §6.2.3.2).
    pub fn explicit_nonce_len(self) -> usize {
        match self {
            Self::PskChacha20Poly1305Sha256 => 0,
            Self::RsaAes128CbcSha | Self::RsaAes256CbcSha => CBC_BLOCK,
            _ => 8,
        }
    }

    /// Bytes a record adds to its plaintext besides the 13-byte header. For
    /// the CBC suites, whose padding varies, the most it can add: IV, MAC
    /// and a full block of padding.
    pub fn record_overhead(self) -> usize {
        if self.is_cbc() {
            CBC_BLOCK + CBC_MAC_LEN + CBC_BLOCK
        } else {
            self.explicit_nonce_len() + super::TAG_LEN
        }
    }

    /// Exact length of the protected fragment (after the header) of a
    /// record with `plain_len` bytes of plaintext.
    pub(crate) fn sealed_len(self, plain_len: usize) -> usize {
        if self.is_cbc() {
            // MAC, then 1..=16 bytes of padding up to a whole block (RFC 5246 §6.2.3.2).
            let n = plain_len + CBC_MAC_LEN + 1;
            CBC_BLOCK + n.next_multiple_of(CBC_BLOCK)
        } else {
            self.explicit_nonce_len() + plain_len + super::TAG_LEN
        }
    }

    /// Largest plaintext whose protected fragment fits in `room` bytes.
    pub(crate) fn max_plain(self, room: usize) -> Option<usize> {
        if self.is_cbc() {
            let blocks = room.checked_sub(CBC_BLOCK)? / CBC_BLOCK * CBC_BLOCK;
            blocks.checked_sub(CBC_MAC_LEN + 1)
        } else {
            room.checked_sub(self.explicit_nonce_len() + super::TAG_LEN)
        }
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
