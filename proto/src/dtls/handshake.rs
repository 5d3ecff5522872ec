//! Handshake messages (RFC 5246 §7.4 with the DTLS header of RFC 6347
//! §4.2.2): the fragment header, ClientHello/ServerHello and the small ones.

use super::codec::{put_u16, put_u24, put_vec16, put_vec8, Reader, Short};
use super::record::{content, RecordHeader, DTLS0_9, DTLS1_0, DTLS1_2, HEADER_LEN};
use super::suite::EMPTY_RENEGOTIATION_INFO_SCSV;

/// msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3).
pub(crate) const HS_HEADER_LEN: usize = 12;
/// Largest handshake message we reassemble. Ours are tiny; a ClientHello
/// with many extensions stays far below this.
pub(crate) const MAX_MESSAGE: usize = 1 << 14;

/// HandshakeType values (RFC 5246 §7.4, RFC 6347 §4.3.2).
pub(crate) mod msg {
    pub(crate) const CLIENT_HELLO: u8 = 1;
    pub(crate) const SERVER_HELLO: u8 = 2;
    pub(crate) const HELLO_VERIFY_REQUEST: u8 = 3;
    pub(crate) const SERVER_KEY_EXCHANGE: u8 = 12;
    pub(crate) const SERVER_HELLO_DONE: u8 = 14;
    pub(crate) const CLIENT_KEY_EXCHANGE: u8 = 16;
    pub(crate) const FINISHED: u8 = 20;

    pub(crate) fn name(t: u8) -> &'static str {
        match t {
            0 => "HelloRequest",
            CLIENT_HELLO => "ClientHello",
            SERVER_HELLO => "ServerHello",
            HELLO_VERIFY_REQUEST => "HelloVerifyRequest",
            11 => "Certificate",
            SERVER_KEY_EXCHANGE => "ServerKeyExchange",
            13 => "CertificateRequest",
            SERVER_HELLO_DONE => "ServerHelloDone",
            15 => "CertificateVerify",
            CLIENT_KEY_EXCHANGE => "ClientKeyExchange",
            FINISHED => "Finished",
            _ => "unknown handshake message",
        }
    }
}

/// renegotiation_info extension type (RFC 5746 §3.2).
pub(crate) const EXT_RENEGOTIATION_INFO: u16 = 0xFF01;

/// One handshake fragment as it sits in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fragment<'a> {
    pub(crate) msg_type: u8,
    pub(crate) length: u32,
    pub(crate) seq: u16,
    pub(crate) offset: u32,
    pub(crate) body: &'a [u8],
}

impl Fragment<'_> {
    /// Whether this fragment carries the last byte of its message.
    pub(crate) fn is_last(&self) -> bool {
        self.offset as usize + self.body.len() == self.length as usize
    }
}

/// Parses the next fragment; a record may hold several (RFC 6347 §4.2.3).
pub(crate) fn parse_fragment<'a>(r: &mut Reader<'a>) -> Result<Fragment<'a>, Short> {
    let msg_type = r.u8("msg_type")?;
    let length = r.u24("length")?;
    let seq = r.u16("message_seq")?;
    let offset = r.u24("fragment_offset")?;
    let frag_len = r.u24("fragment_length")?;
    let body = r.take(frag_len as usize, "fragment")?;
    if u64::from(offset) + u64::from(frag_len) > u64::from(length) {
        return Err(Short("fragment beyond message length"));
    }
    Ok(Fragment {
        msg_type,
        length,
        seq,
        offset,
        body,
    })
}

/// A whole message with its header written as if unfragmented: the form
/// that goes into the Finished hash (RFC 6347 §4.2.6) and into our flights.
pub(crate) fn encode_message(msg_type: u8, seq: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HS_HEADER_LEN + body.len());
    out.push(msg_type);
    put_u24(&mut out, body.len() as u32);
    put_u16(&mut out, seq);
    put_u24(&mut out, 0);
    put_u24(&mut out, body.len() as u32);
    out.extend_from_slice(body);
    out
}

/// The fields of a ClientHello this implementation acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientHello<'a> {
    pub(crate) version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: &'a [u8],
    /// Cipher suite list, two bytes each.
    pub(crate) suites: &'a [u8],
    /// The client signalled RFC 5746 support (SCSV or an empty extension).
    pub(crate) secure_renegotiation: bool,
}

impl ClientHello<'_> {
    pub(crate) fn suite_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
}

/// Parses a ClientHello body (RFC 6347 §4.2.1 adds the cookie). Unknown
/// extensions are skipped; a non-empty renegotiation_info in an initial
/// handshake is refused (RFC 5746 §3.6).
pub(crate) fn parse_client_hello(body: &[u8]) -> Result<ClientHello<'_>, Short> {
    let mut r = Reader::new(body);
    let version = r.u16("client_version")?;
    let random = r.array("random")?;
    let session_id = r.vec8("session_id")?;
    if session_id.len() > 32 {
        return Err(Short("session_id longer than 32"));
    }
    let _cookie = r.vec8("cookie")?;
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Short("cipher_suites"));
    }
    let compression = r.vec8("compression_methods")?;
    if !compression.contains(&0) {
        return Err(Short("no null compression"));
    }
    let mut ch = ClientHello {
        version,
        random,
        session_id,
        suites,
        secure_renegotiation: false,
    };
    let scsv = ch.suite_ids().any(|s| s == EMPTY_RENEGOTIATION_INFO_SCSV);
    ch.secure_renegotiation = scsv;
    if !r.is_empty() {
        let mut exts = Reader::new(r.vec16("extensions")?);
        r.expect_empty("after extensions")?;
        while !exts.is_empty() {
            let ty = exts.u16("extension_type")?;
            let data = exts.vec16("extension_data")?;
            if ty == EXT_RENEGOTIATION_INFO {
                if data != [0] {
                    return Err(Short("renegotiation_info not empty"));
                }
                ch.secure_renegotiation = true;
            }
        }
    }
    Ok(ch)
}

pub(crate) fn encode_client_hello(
    version: u16,
    random: &[u8; 32],
    session_id: &[u8],
    suites: &[u16],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + session_id.len() + 2 * suites.len());
    put_u16(&mut b, version);
    b.extend_from_slice(random);
    put_vec8(&mut b, session_id);
    put_vec8(&mut b, &[]); // cookie
    put_u16(&mut b, 2 * suites.len() as u16);
    for s in suites {
        put_u16(&mut b, *s);
    }
    put_vec8(&mut b, &[0]); // null compression
                            // No extensions at all, like openconnect's GnuTLS client
                            // (docs/protocol.md, "DTLS: PSK-NEGOTIATE").
    b
}

/// A parsed ServerHello (client side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerHello<'a> {
    pub(crate) version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: &'a [u8],
    pub(crate) suite: u16,
}

pub(crate) fn parse_server_hello(body: &[u8]) -> Result<ServerHello<'_>, Short> {
    let mut r = Reader::new(body);
    let version = r.u16("server_version")?;
    let random = r.array("random")?;
    let session_id = r.vec8("session_id")?;
    let suite = r.u16("cipher_suite")?;
    if r.u8("compression_method")? != 0 {
        return Err(Short("compression_method"));
    }
    if !r.is_empty() {
        let mut exts = Reader::new(r.vec16("extensions")?);
        r.expect_empty("after extensions")?;
        while !exts.is_empty() {
            exts.u16("extension_type")?;
            exts.vec16("extension_data")?;
        }
    }
    Ok(ServerHello {
        version,
        random,
        session_id,
        suite,
    })
}

/// ServerHello body; `renegotiation_info` adds the empty RFC 5746 extension,
/// the only one we ever send.
pub(crate) fn encode_server_hello(
    version: u16,
    random: &[u8; 32],
    session_id: &[u8],
    suite: u16,
    renegotiation_info: bool,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(80);
    put_u16(&mut b, version);
    b.extend_from_slice(random);
    put_vec8(&mut b, session_id);
    put_u16(&mut b, suite);
    b.push(0); // null compression
    if renegotiation_info {
        let mut ext = Vec::with_capacity(5);
        put_u16(&mut ext, EXT_RENEGOTIATION_INFO);
        put_vec16(&mut ext, &[0]); // renegotiated_connection<0..255> = empty
        put_vec16(&mut b, &ext);
    }
    b
}

/// PSK ClientKeyExchange: `opaque psk_identity<0..2^16-1>` (RFC 4279 §2).
pub(crate) fn parse_psk_client_key_exchange(body: &[u8]) -> Result<&[u8], Short> {
    let mut r = Reader::new(body);
    let identity = r.vec16("psk_identity")?;
    r.expect_empty("after psk_identity")?;
    Ok(identity)
}

pub(crate) fn encode_psk_client_key_exchange(identity: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + identity.len());
    put_vec16(&mut b, identity);
    b
}

/// Whether `datagram` starts with the first fragment of a ClientHello in
/// epoch 0 (DTLS 1.0/1.2, or the 0.9 of docs/protocol.md, "DTLS 0.9"). Use it
/// to route datagrams before any session exists.
pub fn is_client_hello(datagram: &[u8]) -> bool {
    first_client_hello_fragment(datagram).is_some()
}

/// The session_id of the ClientHello at the front of `datagram`: the App-ID
/// in PSK-NEGOTIATE mode, the legacy session id otherwise (docs/protocol.md,
/// "DTLS: finding the session"). Parses only the first record; `None` if it
/// is not a ClientHello or is cut short.
pub fn client_hello_session_id(datagram: &[u8]) -> Option<&[u8]> {
    let body = first_client_hello_fragment(datagram)?;
    let mut r = Reader::new(body);
    r.take(2 + 32, "version, random").ok()?;
    let sid = r.vec8("session_id").ok()?;
    (sid.len() <= 32).then_some(sid)
}

fn first_client_hello_fragment(datagram: &[u8]) -> Option<&[u8]> {
    let hdr = RecordHeader::parse(datagram).ok()?;
    if hdr.content_type != content::HANDSHAKE || hdr.epoch != 0 {
        return None;
    }
    if !matches!(hdr.version, DTLS1_2 | DTLS1_0 | DTLS0_9) {
        return None;
    }
    let mut r = Reader::new(datagram.get(HEADER_LEN..hdr.total_len())?);
    let frag = parse_fragment(&mut r).ok()?;
    (frag.msg_type == msg::CLIENT_HELLO && frag.offset == 0).then_some(frag.body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real ClientHello of gnutls-cli 3.7.9 (`NORMAL:-VERS-ALL:+VERS-DTLS1.2:
    /// -KX-ALL:+PSK`), with status_request, signature_algorithms,
    /// encrypt_then_mac, extended_master_secret, session_ticket,
    /// renegotiation_info and record_size_limit extensions.
    pub(crate) const GNUTLS_CH: &str = "16fefd0000000000000000008a0100007e000000000000007efefdc893092944aba60c6dd7ea8d9a24790db6dc9358d3e14b58e70ab9a0431a91590000000e00a9ccabc0a5008d00a8c0a4008c01000046000500050100000000000d00220020040108090804040308070501080a0805050308080601080b0806060302010203001600000017000000230000ff01000100001c00024000";
    /// The same with `%NO_EXTENSIONS`, as openconnect sends it (no extensions block).
    pub(crate) const GNUTLS_CH_NO_EXT: &str = "16fefd00000000000000000042010000360000000000000036fefd0e995b5ba9a89da3619b6fe9ddf8353de12fdbdc869abe3ca3043d3b6fc041cb0000000e00a9ccabc0a5008d00a8c0a4008c0100";

    pub(crate) use crate::dtls::tests::unhex;

    fn ch_body(dgram: &[u8]) -> &[u8] {
        let mut r = Reader::new(&dgram[HEADER_LEN..]);
        parse_fragment(&mut r).unwrap().body
    }

    #[test]
    fn parses_gnutls_hellos() {
        for (hex, ri) in [(GNUTLS_CH, true), (GNUTLS_CH_NO_EXT, false)] {
            let d = unhex(hex);
            assert!(is_client_hello(&d));
            assert_eq!(client_hello_session_id(&d), Some(&[][..]));
            let ch = parse_client_hello(ch_body(&d)).unwrap();
            assert_eq!(ch.version, DTLS1_2);
            assert_eq!(ch.secure_renegotiation, ri);
            let ids: Vec<u16> = ch.suite_ids().collect();
            assert_eq!(ids, [0xa9, 0xccab, 0xc0a5, 0x8d, 0xa8, 0xc0a4, 0x8c]);
        }
    }

    #[test]
    fn session_id_peek_and_truncation() {
        let body = encode_client_hello(DTLS1_2, &[1; 32], &[0xaa; 32], &[0xa9, 0xa8]);
        let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
        let m = encode_message(msg::CLIENT_HELLO, 0, &body);
        d.extend_from_slice(&(m.len() as u16).to_be_bytes());
        d.extend_from_slice(&m);
        assert_eq!(client_hello_session_id(&d), Some(&[0xaa; 32][..]));
        for n in 0..d.len() {
            assert_eq!(client_hello_session_id(&d[..n]), None, "{n}");
        }
        let ch = parse_client_hello(&body).unwrap();
        assert_eq!(
            (ch.session_id, ch.secure_renegotiation),
            (&[0xaa; 32][..], false)
        );
        for n in 0..body.len() {
            assert!(parse_client_hello(&body[..n]).is_err());
        }
        d[0] = 23;
        assert!(!is_client_hello(&d));
    }

    #[test]
    fn server_hello_round_trip() {
        for ri in [false, true] {
            let b = encode_server_hello(DTLS1_2, &[3; 32], &[4; 32], 0xa9, ri);
            let sh = parse_server_hello(&b).unwrap();
            assert_eq!(
                (sh.version, sh.random, sh.session_id, sh.suite),
                (DTLS1_2, [3; 32], &[4u8; 32][..], 0xa9)
            );
        }
    }

    #[test]
    fn fragment_bounds() {
        // offset + length beyond the message length is refused.
        let f = [1, 0, 0, 4, 0, 0, 0, 0, 3, 0, 0, 2, 9, 9];
        assert_eq!(
            parse_fragment(&mut Reader::new(&f)),
            Err(Short("fragment beyond message length"))
        );
        let f = [1, 0, 0, 4, 0, 0, 0, 0, 2, 0, 0, 2, 9, 9];
        let frag = parse_fragment(&mut Reader::new(&f)).unwrap();
        assert!(frag.is_last());
    }
}
