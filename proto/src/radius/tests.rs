//! Published vectors, round trips, and decoding of garbage.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::attr::{self, acct_status};
use super::*;

const SECRET: &[u8] = b"xyzzy5461";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn array16(bytes: &[u8]) -> [u8; 16] {
    bytes.try_into().unwrap()
}

/// RFC 2865 §7.1: user "nemo", password "arctangent", NAS 192.168.1.16 port 3.
const RFC2865_REQUEST: &str = "010000380f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe\
                               708d93d413ce3196e43f782a0aee0406c0a80110050600000003";
/// RFC 2865 §7.1: the Access-Accept (Service-Type Login, Login-Service
/// Telnet, Login-IP-Host 192.168.1.3).
const RFC2865_ACCEPT: &str = "0200002686fe220e7624ba2a1005f6bf9b55e0b20606000000010f060000\
                              00000e06c0a80103";

#[test]
fn rfc2865_password_hiding() {
    let request = unhex(RFC2865_REQUEST);
    let authenticator = array16(&request[4..20]);
    let hidden = hide_password(b"arctangent", SECRET, &authenticator).unwrap();
    assert_eq!(hidden, request[28..44]);
    let plain = unhide_password(&hidden, SECRET, &authenticator).unwrap();
    assert_eq!(plain, b"arctangent");
}

#[test]
fn rfc2865_access_request_is_built_byte_for_byte() {
    let expected = unhex(RFC2865_REQUEST);
    let built = Builder::access_request(0, array16(&expected[4..20]))
        .message_authenticator(false)
        .user_name("nemo")
        .password(SECRET, b"arctangent")
        .ipv4(attr::NAS_IP_ADDRESS, Ipv4Addr::new(192, 168, 1, 16))
        .u32(attr::NAS_PORT, 3)
        .encode(SECRET)
        .unwrap();
    assert_eq!(built, expected);

    let packet = Packet::decode(&built).unwrap();
    assert_eq!(packet.code(), Code::AccessRequest);
    assert_eq!(packet.get(attr::USER_NAME).unwrap().text(), Ok("nemo"));
    let nas = packet.get(attr::NAS_IP_ADDRESS).unwrap().ipv4();
    assert_eq!(nas, Ok(Ipv4Addr::new(192, 168, 1, 16)));
    assert_eq!(packet.get(attr::NAS_PORT).unwrap().u32(), Ok(3));
    assert_eq!(packet.attributes().count(), 4);
}

#[test]
fn rfc2865_access_accept_verifies() {
    let request = unhex(RFC2865_REQUEST);
    let authenticator = array16(&request[4..20]);
    let bytes = unhex(RFC2865_ACCEPT);
    let accept = Packet::decode(&bytes).unwrap();
    assert_eq!(accept.code(), Code::AccessAccept);
    assert_eq!(accept.identifier(), 0);
    assert_eq!(accept.verify_reply(&authenticator, SECRET, false), Ok(()));
    assert_eq!(accept.get(attr::SERVICE_TYPE).unwrap().u32(), Ok(1));
    assert_eq!(
        accept.get(14).unwrap().ipv4(),
        Ok(Ipv4Addr::new(192, 168, 1, 3))
    );

    // No Message-Authenticator in 2000, so demanding one refuses it.
    let refused = accept.verify_reply(&authenticator, SECRET, true);
    assert_eq!(refused, Err(Error::MissingMessageAuthenticator));
    let wrong = accept.verify_reply(&authenticator, b"xyzzy5462", false);
    assert_eq!(wrong, Err(Error::Authenticator));
    let mut other = authenticator;
    other[0] ^= 1;
    assert_eq!(
        accept.verify_reply(&other, SECRET, false),
        Err(Error::Authenticator)
    );
    // A request is not a reply.
    let as_request = Packet::decode(&request).unwrap();
    let misuse = as_request.verify_reply(&authenticator, SECRET, false);
    assert_eq!(misuse, Err(Error::WrongCode(Code::AccessRequest)));
}

/// RFC 5997 §6: a Status-Server with a Message-Authenticator, and its
/// Access-Accept.
#[test]
fn rfc5997_status_server_message_authenticator() {
    let expected =
        unhex("0cda00268a54f4686fb394c52866e302185d062350125a665e2e1e8411f3e243822097c84fa3");
    let built = Builder::status_server(0xda, array16(&expected[4..20]))
        .encode(SECRET)
        .unwrap();
    assert_eq!(built, expected);

    let reply = unhex("02da0014ef0d552a4bf2d693ec2b6fe8b5411d66");
    let reply = Packet::decode(&reply).unwrap();
    let authenticator = array16(&expected[4..20]);
    assert_eq!(reply.verify_reply(&authenticator, SECRET, false), Ok(()));
}

/// An Access-Request and an Access-Challenge answering it, both with a
/// Message-Authenticator, as a 2FA proxy would send.
fn challenge_exchange() -> ([u8; 16], Vec<u8>) {
    let authenticator = *b"0123456789abcdef";
    let request = Builder::access_request(42, authenticator)
        .user_name("nemo")
        .password(SECRET, b"a password longer than sixteen bytes")
        .text(attr::CALLING_STATION_ID, "192.0.2.7")
        .encode(SECRET)
        .unwrap();
    let request = Packet::decode(&request).unwrap();
    let reply = Builder::reply(Code::AccessChallenge, &request)
        .message_authenticator(true)
        .text(attr::REPLY_MESSAGE, "Enter the code from your token")
        .attr(attr::STATE, b"opaque-state")
        .encode(SECRET)
        .unwrap();
    (authenticator, reply)
}

#[test]
fn message_authenticator_round_trip() {
    let (authenticator, bytes) = challenge_exchange();
    let reply = Packet::decode(&bytes).unwrap();
    assert_eq!(reply.identifier(), 42);
    assert_eq!(
        reply.attributes().next().unwrap().ty,
        attr::MESSAGE_AUTHENTICATOR
    );
    assert_eq!(reply.verify_reply(&authenticator, SECRET, true), Ok(()));
    let prompt = reply.get(attr::REPLY_MESSAGE).unwrap().text();
    assert_eq!(prompt, Ok("Enter the code from your token"));
    assert_eq!(reply.get(attr::STATE).unwrap().value, b"opaque-state");
}

#[test]
fn every_tampered_byte_is_rejected() {
    let (authenticator, bytes) = challenge_exchange();
    for at in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x01;
        if let Ok(packet) = Packet::decode(&tampered) {
            let verdict = packet.verify_reply(&authenticator, SECRET, true);
            assert!(verdict.is_err(), "byte {at} flipped yet accepted");
        }
    }
}

#[test]
fn a_bad_message_authenticator_fails_even_with_a_good_response_authenticator() {
    let (authenticator, mut bytes) = challenge_exchange();
    bytes[25] ^= 0x80;
    let resigned = auth::packet_md5(&bytes, &authenticator, SECRET);
    bytes[4..20].copy_from_slice(&resigned);
    let reply = Packet::decode(&bytes).unwrap();
    let verdict = reply.verify_reply(&authenticator, SECRET, false);
    assert_eq!(verdict, Err(Error::MessageAuthenticator));
}

#[test]
fn two_message_authenticators_are_refused() {
    let (authenticator, bytes) = challenge_exchange();
    let mut doubled = bytes.clone();
    doubled.extend_from_slice(&bytes[20..38]);
    let len = u16::try_from(doubled.len()).unwrap();
    doubled[2..4].copy_from_slice(&len.to_be_bytes());
    let resigned = auth::packet_md5(&doubled, &authenticator, SECRET);
    doubled[4..20].copy_from_slice(&resigned);
    let verdict = Packet::decode(&doubled)
        .unwrap()
        .verify_reply(&authenticator, SECRET, false);
    assert_eq!(verdict, Err(Error::MessageAuthenticator));
}

/// An Accounting-Request Start (User-Name nemo, Acct-Status-Type Start,
/// Acct-Session-Id "20024"); its authenticator was checked independently
/// with Python's hashlib.
#[test]
fn accounting_request_authenticator() {
    let expected =
        unhex("0404002711019c27d4e00cbc523b3e2fc834baf401066e656d6f2806000000012c073230303234");
    let built = Builder::accounting_request(4)
        .user_name("nemo")
        .u32(attr::ACCT_STATUS_TYPE, acct_status::START)
        .text(attr::ACCT_SESSION_ID, "20024")
        .encode(SECRET)
        .unwrap();
    assert_eq!(built, expected);
    let packet = Packet::decode(&built).unwrap();
    assert_eq!(packet.verify_request(SECRET, false), Ok(()));
    assert_eq!(
        packet.verify_request(b"other", false),
        Err(Error::Authenticator)
    );
    let demanded = packet.verify_request(SECRET, true);
    assert_eq!(demanded, Err(Error::MissingMessageAuthenticator));
}

/// RFC 5176: a Disconnect-Request with a Message-Authenticator, and the
/// ACK to it; the bytes were computed independently with Python's hashlib
/// and hmac.
#[test]
fn disconnect_request_and_ack() {
    let expected = unhex(
        "280900309f5395e5222b877c71aff0860d4457c150127303e8277b0f4cb73ff2\
         add432dbee3c2c0a3566336130303031",
    );
    let built = Builder::request(Code::DisconnectRequest, 9)
        .message_authenticator(true)
        .text(attr::ACCT_SESSION_ID, "5f3a0001")
        .encode(SECRET)
        .unwrap();
    assert_eq!(built, expected);
    let request = Packet::decode(&built).unwrap();
    assert_eq!(request.verify_request(SECRET, true), Ok(()));
    let session = request.get(attr::ACCT_SESSION_ID).unwrap().text();
    assert_eq!(session, Ok("5f3a0001"));

    let ack = Builder::reply(Code::DisconnectAck, &request)
        .encode(SECRET)
        .unwrap();
    assert_eq!(ack, unhex("29090014ea16b8e62a297e5ac7666ec820ae6719"));
    let ack = Packet::decode(&ack).unwrap();
    assert_eq!(
        ack.verify_reply(&request.authenticator(), SECRET, false),
        Ok(())
    );

    let mut forged = built.clone();
    forged[45] ^= 1;
    let forged = Packet::decode(&forged).unwrap();
    assert!(forged.verify_request(SECRET, false).is_err());
}

#[test]
fn passwords_of_every_block_count_round_trip() {
    let authenticator = [7; 16];
    for len in [0_usize, 1, 15, 16, 17, 31, 32, 100, 127, 128] {
        let password: Vec<u8> = (1..=len).map(|i| (i % 250 + 1) as u8).collect();
        let hidden = hide_password(&password, SECRET, &authenticator).unwrap();
        assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
        let plain = unhide_password(&hidden, SECRET, &authenticator).unwrap();
        assert_eq!(plain, password);
    }
    let long = hide_password(&[b'x'; 129], SECRET, &authenticator);
    assert_eq!(long, Err(Error::PasswordTooLong(129)));
    for len in [0, 15, 17, 144] {
        let result = unhide_password(&vec![0; len], SECRET, &authenticator);
        assert_eq!(result, Err(Error::HiddenPassword(len)));
    }
}

#[test]
fn typed_values() {
    let prefix: ipnet::Ipv6Net = "2001:db8:1:2::/64".parse().unwrap();
    let bytes = Builder::reply(
        Code::AccessAccept,
        &Packet::decode(&unhex(RFC2865_REQUEST)).unwrap(),
    )
    .ipv4(attr::FRAMED_IP_ADDRESS, Ipv4Addr::new(10, 0, 0, 9))
    .ipv6_prefix(attr::FRAMED_IPV6_PREFIX, prefix)
    .ipv6(attr::DNS_SERVER_IPV6_ADDRESS, Ipv6Addr::LOCALHOST)
    .u32(attr::SESSION_TIMEOUT, 86_400)
    .text(attr::FRAMED_ROUTE, "192.0.2.0/24 0.0.0.0 1")
    .attr(attr::CLASS, &[0xff, 0xfe])
    .vendor(9, 1, b"shell:priv-lvl=15")
    .encode(SECRET)
    .unwrap();
    let packet = Packet::decode(&bytes).unwrap();
    let get = |ty| packet.get(ty).unwrap();
    assert_eq!(
        get(attr::FRAMED_IP_ADDRESS).ipv4(),
        Ok(Ipv4Addr::new(10, 0, 0, 9))
    );
    assert_eq!(get(attr::FRAMED_IPV6_PREFIX).value.len(), 2 + 8);
    assert_eq!(get(attr::FRAMED_IPV6_PREFIX).ipv6_prefix(), Ok(prefix));
    assert_eq!(
        get(attr::DNS_SERVER_IPV6_ADDRESS).ipv6(),
        Ok(Ipv6Addr::LOCALHOST)
    );
    assert_eq!(get(attr::SESSION_TIMEOUT).u32(), Ok(86_400));
    assert_eq!(get(attr::FRAMED_ROUTE).text(), Ok("192.0.2.0/24 0.0.0.0 1"));
    assert_eq!(get(attr::CLASS).text(), Err(Error::NotText(attr::CLASS)));
    let wrong = get(attr::FRAMED_ROUTE).u32();
    assert!(matches!(wrong, Err(Error::ValueLength { ty: 22, .. })));
    assert!(get(attr::SESSION_TIMEOUT).ipv6().is_err());

    let vendors: Vec<_> = packet.vendor(9).collect::<Result<_, _>>().unwrap();
    assert_eq!(vendors.len(), 1);
    let subs: Vec<_> = vendors[0].attributes().collect();
    assert_eq!(subs, [(1, &b"shell:priv-lvl=15"[..])]);
    assert_eq!(packet.vendor(311).count(), 0);
    assert_eq!(
        get(attr::CLASS).vendor_specific(),
        Err(Error::VendorSpecific)
    );
}

#[test]
fn ipv6_prefix_edges() {
    let attribute = |value: &'static [u8]| Attribute {
        ty: attr::FRAMED_IPV6_PREFIX,
        value,
        offset: 0,
    };
    let all: ipnet::Ipv6Net = "::/0".parse().unwrap();
    assert_eq!(attribute(&[0, 0]).ipv6_prefix(), Ok(all));
    // Host bits past the length are cleared.
    let host: ipnet::Ipv6Net = "2001:db8::/32".parse().unwrap();
    assert_eq!(
        attribute(&[0, 32, 0x20, 1, 0xd, 0xb8, 0xff]).ipv6_prefix(),
        Ok(host)
    );
    for bad in [&[0][..], &[0, 129][..], &[0, 64, 1, 2, 3][..], &[0; 19][..]] {
        assert_eq!(
            attribute(bad).ipv6_prefix(),
            Err(Error::Ipv6Prefix),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_vendor_specific_is_reported() {
    let mut bytes = Builder::accounting_request(1)
        .vendor(9, 1, b"abc")
        .encode(SECRET)
        .unwrap();
    // The sub-attribute's length now runs past the attribute.
    bytes[27] = 6;
    let packet = Packet::decode(&bytes).unwrap();
    let first = packet.vendor(9).next().unwrap();
    assert_eq!(first, Err(Error::VendorSpecific));
}

#[test]
fn decode_rejects_malformed_packets() {
    let good = unhex(RFC2865_ACCEPT);
    assert_eq!(Packet::decode(&good[..19]), Err(Error::Size(19)));
    assert_eq!(Packet::decode(&[0; 4097]), Err(Error::Size(4097)));

    let with_length = |len: u16| {
        let mut bytes = good.clone();
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        bytes
    };
    let length = |field, received| Some(Error::Length { field, received });
    assert_eq!(Packet::decode(&with_length(39)).err(), length(39, 38));
    assert_eq!(Packet::decode(&with_length(19)).err(), length(19, 38));
    // Length cutting an attribute in half.
    assert_eq!(Packet::decode(&with_length(24)), Err(Error::Attribute(20)));

    let mut unknown = good.clone();
    unknown[0] = 99;
    assert_eq!(Packet::decode(&unknown), Err(Error::UnknownCode(99)));

    for bad_len in [0, 1, 200] {
        let mut bytes = good.clone();
        bytes[27] = bad_len;
        assert_eq!(Packet::decode(&bytes), Err(Error::Attribute(26)));
    }

    // Octets past Length are padding (RFC 2865 §3).
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xaa; 10]);
    let packet = Packet::decode(&padded).unwrap();
    assert_eq!(packet.as_bytes(), &good[..]);
    assert_eq!(packet.attributes().count(), 3);
}

#[test]
fn builder_errors() {
    let long = Builder::accounting_request(1).attr(attr::CLASS, &[0; 254]);
    let too_long = Err(Error::ValueTooLong {
        ty: attr::CLASS,
        len: 254,
    });
    assert_eq!(long.encode(SECRET), too_long);
    assert!(Builder::accounting_request(1)
        .attr(attr::CLASS, &[0; 253])
        .encode(SECRET)
        .is_ok());

    let mut huge = Builder::accounting_request(1);
    for _ in 0..17 {
        huge = huge.attr(attr::CLASS, &[0; 253]);
    }
    assert_eq!(huge.encode(SECRET), Err(Error::TooLong));

    let pap = Builder::accounting_request(1)
        .password(SECRET, b"pw")
        .encode(SECRET);
    assert_eq!(pap, Err(Error::PasswordInWrongPacket));
    let bad = Builder::request(Code::AccessAccept, 1).encode(SECRET);
    assert_eq!(bad, Err(Error::WrongCode(Code::AccessAccept)));
    let vendor = Builder::accounting_request(1)
        .vendor(9, 1, &[0; 248])
        .encode(SECRET);
    assert!(matches!(vendor, Err(Error::ValueTooLong { ty: 26, .. })));
}

/// Decoding and reading garbage never panics: every truncation and every
/// single-byte change of real packets, then pseudo-random bytes.
#[test]
fn decoding_garbage_never_panics() {
    let (authenticator, challenge) = challenge_exchange();
    let vendor = Builder::accounting_request(3)
        .vendor(9, 1, b"x")
        .encode(SECRET)
        .unwrap();
    let seeds = [
        unhex(RFC2865_REQUEST),
        unhex(RFC2865_ACCEPT),
        challenge,
        vendor,
    ];
    let exercise = |bytes: &[u8]| {
        let Ok(packet) = Packet::decode(bytes) else {
            return;
        };
        for a in packet.attributes() {
            let _ = (a.u32(), a.ipv4(), a.ipv6(), a.ipv6_prefix(), a.text());
            if let Ok(vsa) = a.vendor_specific() {
                vsa.attributes().for_each(drop);
            }
        }
        let _ = packet.verify_reply(&authenticator, SECRET, true);
        let _ = packet.verify_request(SECRET, true);
        let _ = unhide_password(bytes.get(20..36).unwrap_or(&[]), SECRET, &authenticator);
    };
    for seed in &seeds {
        for len in 0..=seed.len() {
            exercise(&seed[..len]);
        }
        for at in 0..seed.len() {
            for value in [0, 1, 2, 0x7f, 0x80, 0xff] {
                let mut mutated = seed.clone();
                mutated[at] = value;
                exercise(&mutated);
            }
        }
    }
    // xorshift64: deterministic, no clock or entropy source.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = usize::try_from(next() % 80).unwrap() + 16;
        let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        // Mostly plausible headers, so the attribute walk is reached.
        if len >= 20 && next() % 4 != 0 {
            bytes[0] = [1, 2, 3, 4, 5, 11, 40, 41][usize::try_from(next() % 8).unwrap()];
            let length = u16::try_from(len - usize::try_from(next() % 3).unwrap()).unwrap();
            bytes[2..4].copy_from_slice(&length.to_be_bytes());
        }
        exercise(&bytes);
    }
}
