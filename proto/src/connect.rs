//! What a CONNECT negotiates besides the addresses: the DTLS mode and the
//! tunnel MTU (docs/protocol.md, "DTLS: choosing a mode", "Tunnel MTU").

use super::http::RequestHead;

/// Legacy suites we resume (docs/protocol.md, "DTLS: legacy resumption"):
/// AES-GCM over DTLS 1.2, AES-CBC-SHA over DTLS 0.9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacySuite {
    /// TLS_RSA_WITH_AES_128_GCM_SHA256, DTLS 1.2.
    Aes128Gcm,
    /// TLS_RSA_WITH_AES_256_GCM_SHA384, DTLS 1.2.
    Aes256Gcm,
    /// TLS_RSA_WITH_AES_128_CBC_SHA, DTLS 0.9.
    Aes128Cbc,
    /// TLS_RSA_WITH_AES_256_CBC_SHA, DTLS 0.9.
    Aes256Cbc,
}

impl LegacySuite {
    /// Bytes a record adds to its payload at most.
    pub fn overhead(self) -> u16 {
        match self {
            Self::Aes128Gcm | Self::Aes256Gcm => DTLS_OVERHEAD,
            // Header 13 + explicit IV 16 + HMAC-SHA1 20 + padding up to 16.
            Self::Aes128Cbc | Self::Aes256Cbc => 13 + 16 + 20 + 16,
        }
    }
}

impl DtlsMode {
    /// Bytes a record adds to its payload at most (PSK: the worst suite).
    pub fn overhead(self) -> u16 {
        match self {
            Self::Psk => DTLS_OVERHEAD,
            Self::Legacy { suite, .. } => suite.overhead(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsMode {
    /// PSK-NEGOTIATE: the key is the CONNECT's TLS exporter (docs/protocol.md,
    /// "DTLS: PSK-NEGOTIATE").
    Psk,
    /// Abbreviated handshake from the client's `X-DTLS-Master-Secret`.
    Legacy {
        suite: LegacySuite,
        master_secret: [u8; 48],
    },
}

/// The DTLS mode chosen for a CONNECT and how to name it in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtlsChoice {
    pub mode: DtlsMode,
    /// `X-DTLS-CipherSuite` or `X-DTLS12-CipherSuite`.
    pub header: &'static str,
    pub value: &'static str,
}

/// Legacy names in our order of preference (ocserv's: AES-256-GCM,
/// AES-128-GCM, AES256-SHA, AES128-SHA).
/// openconnect lists `OC-DTLS1_2-*` in X-DTLS-CipherSuite; Cisco clients
/// list OpenSSL names in X-DTLS12-CipherSuite.
const LEGACY: [(&str, &str, LegacySuite); 6] = [
    (
        "X-DTLS-CipherSuite",
        "OC-DTLS1_2-AES256-GCM",
        LegacySuite::Aes256Gcm,
    ),
    (
        "X-DTLS12-CipherSuite",
        "AES256-GCM-SHA384",
        LegacySuite::Aes256Gcm,
    ),
    (
        "X-DTLS-CipherSuite",
        "OC-DTLS1_2-AES128-GCM",
        LegacySuite::Aes128Gcm,
    ),
    (
        "X-DTLS12-CipherSuite",
        "AES128-GCM-SHA256",
        LegacySuite::Aes128Gcm,
    ),
    // In X-DTLS-CipherSuite these OpenSSL names mean DTLS 0.9.
    ("X-DTLS-CipherSuite", "AES256-SHA", LegacySuite::Aes256Cbc),
    ("X-DTLS-CipherSuite", "AES128-SHA", LegacySuite::Aes128Cbc),
];

/// Whether a `:`-separated cipher list holds `token` exactly.
pub fn has_token(list: &str, token: &str) -> bool {
    list.split(':').any(|t| t.trim() == token)
}

/// Picks the DTLS mode for a CONNECT, or `None` to offer no DTLS (the
/// client then stays on CSTP).
pub fn choose_dtls(head: &RequestHead, psk: bool, legacy: bool) -> Option<DtlsChoice> {
    let list = |h: &str| head.header(h).unwrap_or("");
    if psk
        && (has_token(list("X-DTLS-CipherSuite"), "PSK-NEGOTIATE")
            || has_token(list("X-DTLS12-CipherSuite"), "PSK-NEGOTIATE"))
    {
        return Some(DtlsChoice {
            mode: DtlsMode::Psk,
            header: "X-DTLS-CipherSuite",
            value: "PSK-NEGOTIATE",
        });
    }
    if !legacy {
        return None;
    }
    let master_secret = parse_master_secret(head.header("X-DTLS-Master-Secret")?)?;
    LEGACY
        .iter()
        .find(|(h, name, _)| has_token(list(h), name))
        .map(|&(header, value, suite)| DtlsChoice {
            mode: DtlsMode::Legacy {
                suite,
                master_secret,
            },
            header,
            value,
        })
}

/// 48 bytes as 96 hex digits (the client sends upper case).
pub fn parse_master_secret(hex: &str) -> Option<[u8; 48]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 96 {
        return None;
    }
    // Digits only: from_str_radix would also take a sign ("+1").
    let digit = |c: u8| char::from(c).to_digit(16);
    let mut out = [0u8; 48];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Worst-case DTLS 1.2 AEAD overhead: record header 13 + explicit nonce 8
/// + tag 16 (AES-GCM; ChaCha20 needs 8 less).
pub const DTLS_OVERHEAD: u16 = 13 + 8 + 16;

/// The tunnel MTU for a link MTU `base`, as ocserv computes it
/// (docs/protocol.md, "Tunnel MTU"):
/// IP + UDP headers, the DTLS record overhead (`dtls_overhead`, if DTLS is
/// offered) and the type byte come off. CSTP gets the same value, so a
/// packet fits either channel.
pub fn data_mtu(base: u16, ipv6_transport: bool, dtls_overhead: Option<u16>) -> u16 {
    let ip_udp = if ipv6_transport { 40 + 8 } else { 20 + 8 };
    let dtls = dtls_overhead.map_or(0, |o| o + 1);
    base.saturating_sub(ip_udp + dtls).max(MIN_MTU)
}

/// IPv4's minimum; a tunnel never gets less.
pub const MIN_MTU: u16 = 576;

/// How a client takes an IPv6 address (docs/protocol.md, "IPv6 addresses").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Form {
    /// `X-CSTP-Address-IP6: addr/len`, IPv6 routes and DNS: openconnect
    /// (unless `--disable-ipv6`) and current AnyConnect.
    Full,
    /// A second `X-CSTP-Address` with the IPv6 address and an
    /// `X-CSTP-Netmask` of `net/len`, no IPv6 routes or DNS: Cisco clients
    /// that ask for IPv6 without full capability.
    Legacy,
}

/// Whether and how the client asks for an IPv6 address.
pub fn ipv6_form(head: &RequestHead) -> Option<Ipv6Form> {
    let types = head.header("X-CSTP-Address-Type").unwrap_or("IPv4");
    if !types
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("IPv6"))
    {
        return None;
    }
    let full = head
        .header("X-CSTP-Full-IPv6-Capability")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Some(if full {
        Ipv6Form::Full
    } else {
        Ipv6Form::Legacy
    })
}

/// IPv6 needs this much MTU (RFC 8200); below it the client gets none.
pub const IPV6_MIN_MTU: u16 = 1280;

/// A phone or tablet, by the identifiers openconnect sends with a mobile
/// `--os` and AnyConnect mobile sends always, or by its User-Agent.
pub fn is_mobile(head: &RequestHead) -> bool {
    const MOBILE: [&str; 4] = ["android", "apple-ios", "iphone", "ipad"];
    let named = |v: &str| MOBILE.iter().any(|m| v.trim().eq_ignore_ascii_case(m));
    if head
        .header("X-AnyConnect-Identifier-Platform")
        .is_some_and(named)
    {
        return true;
    }
    if head
        .header("X-AnyConnect-Identifier-DeviceType")
        .is_some_and(|v| !v.trim().is_empty())
    {
        return true;
    }
    // Whole words only: "AnyConnect Android 4.10", not "Cisco".
    head.header("User-Agent").is_some_and(|ua| {
        ua.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| named(w) || w.eq_ignore_ascii_case("ios"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_head(extra: &str) -> RequestHead {
        let text = format!("POST / HTTP/1.1\r\nHost: vpn\r\n{extra}\r\n");
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn ipv6_form_from_address_type_and_capability() {
        let oc = "X-CSTP-Address-Type: IPv6,IPv4\r\nX-CSTP-Full-IPv6-Capability: true\r\n";
        assert_eq!(ipv6_form(&auth_head(oc)), Some(Ipv6Form::Full));
        assert_eq!(
            ipv6_form(&auth_head(
                "X-CSTP-Address-Type: IPv4\r\nX-CSTP-Full-IPv6-Capability: true\r\n"
            )),
            None
        );
        assert_eq!(
            ipv6_form(&auth_head("X-CSTP-Address-Type: IPv6,IPv4\r\n")),
            Some(Ipv6Form::Legacy),
            "Cisco without full capability"
        );
        assert_eq!(ipv6_form(&auth_head("")), None);
    }

    #[test]
    fn mobile_clients_by_identifier_or_user_agent() {
        for (h, mobile) in [
            ("User-Agent: Open AnyConnect VPN Agent v9.01\r\n", false),
            (
                "User-Agent: Cisco AnyConnect VPN Agent for Windows 4.10\r\n",
                false,
            ),
            ("User-Agent: AnyConnect Android 4.10.05\r\n", true),
            ("User-Agent: AnyConnect iPhone 4.9\r\n", true),
            ("X-AnyConnect-Identifier-Platform: android\r\n", true),
            ("X-AnyConnect-Identifier-Platform: apple-ios\r\n", true),
            ("X-AnyConnect-Identifier-Platform: linux-64\r\n", false),
            ("X-AnyConnect-Identifier-DeviceType: Pixel 8\r\n", true),
        ] {
            assert_eq!(is_mobile(&auth_head(h)), mobile, "{h}");
        }
    }
    use crate::http::parse_head;

    fn head(extra: &str) -> RequestHead {
        let text = format!("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn\r\n{extra}\r\n");
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    const SECRET: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";

    #[test]
    fn psk_negotiate_wins_when_offered_and_enabled() {
        let h = head(&format!(
            "X-DTLS-Master-Secret: {SECRET}\r\nX-DTLS-CipherSuite: PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:AES128-SHA\r\n"
        ));
        assert_eq!(choose_dtls(&h, true, true).unwrap().mode, DtlsMode::Psk);
        let legacy = choose_dtls(&h, false, true).unwrap();
        assert_eq!(
            (legacy.header, legacy.value),
            ("X-DTLS-CipherSuite", "OC-DTLS1_2-AES256-GCM")
        );
        assert!(
            matches!(legacy.mode, DtlsMode::Legacy { suite: LegacySuite::Aes256Gcm, master_secret } if master_secret[1] == 0x11)
        );
        assert_eq!(choose_dtls(&h, false, false), None);
    }

    #[test]
    fn legacy_needs_a_known_suite_and_a_valid_secret() {
        let cisco = head(&format!("X-DTLS-Master-Secret: {SECRET}\r\nX-DTLS12-CipherSuite: ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256\r\n"));
        let c = choose_dtls(&cisco, true, true).unwrap();
        assert_eq!(
            (c.header, c.value),
            ("X-DTLS12-CipherSuite", "AES128-GCM-SHA256")
        );
        let only_cbc = head(&format!(
            "X-DTLS-Master-Secret: {SECRET}\r\nX-DTLS-CipherSuite: AES128-SHA:AES256-SHA\r\n"
        ));
        let c = choose_dtls(&only_cbc, true, true).unwrap();
        assert_eq!((c.header, c.value), ("X-DTLS-CipherSuite", "AES256-SHA"));
        let des = head(&format!(
            "X-DTLS-Master-Secret: {SECRET}\r\nX-DTLS-CipherSuite: DES-CBC3-SHA\r\n"
        ));
        assert_eq!(choose_dtls(&des, true, true), None);
        let short =
            head("X-DTLS-Master-Secret: 0011\r\nX-DTLS-CipherSuite: OC-DTLS1_2-AES128-GCM\r\n");
        assert_eq!(choose_dtls(&short, true, true), None);
        // Hex digits only: a sign is not one (found by fuzzing).
        assert_eq!(
            parse_master_secret(&SECRET.to_ascii_lowercase()).map(|s| s[5]),
            Some(0x55)
        );
        assert_eq!(parse_master_secret(&format!("{}+1", &SECRET[..94])), None);
        assert_eq!(
            parse_master_secret(&format!("{}\u{e9}", &SECRET[..94])),
            None
        );
        // A token must match whole, not as a prefix.
        assert!(!has_token("PSK-NEGOTIATEX:AES", "PSK-NEGOTIATE"));
        assert_eq!(choose_dtls(&head(""), true, true), None);
    }

    #[test]
    fn mtu_matches_ocserv() {
        // ocserv 1.1.6 with mtu = 1400 sends 1334 with DTLS, 1372 without.
        assert_eq!(data_mtu(1400, false, Some(DTLS_OVERHEAD)), 1334);
        assert_eq!(data_mtu(1400, false, None), 1372);
        assert_eq!(data_mtu(1500, true, Some(DTLS_OVERHEAD)), 1414);
        assert_eq!(
            data_mtu(1400, false, Some(LegacySuite::Aes256Cbc.overhead())),
            1306
        );
        assert_eq!(data_mtu(600, false, Some(DTLS_OVERHEAD)), MIN_MTU);
    }
}
