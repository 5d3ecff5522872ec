//! A received packet as a checked view of its bytes: decoding walks every
//! attribute once, so reading them afterwards cannot fail or allocate.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::{attr, auth, Code, Error, AUTHENTICATOR_LEN, MAX_PACKET, MIN_PACKET};

/// A decoded packet borrowing the datagram it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    code: Code,
    /// The packet up to its Length field; trailing padding is dropped.
    raw: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks a datagram: its size, the Length field, the code and every
    /// attribute's length. Octets after Length are padding (RFC 2865 §3).
    pub fn decode(datagram: &'a [u8]) -> Result<Self, Error> {
        if !(MIN_PACKET..=MAX_PACKET).contains(&datagram.len()) {
            return Err(Error::Size(datagram.len()));
        }
        let field = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if !(MIN_PACKET..=datagram.len()).contains(&field) {
            return Err(Error::Length {
                field,
                received: datagram.len(),
            });
        }
        let raw = &datagram[..field];
        let code = Code::from_u8(raw[0]).ok_or(Error::UnknownCode(raw[0]))?;
        let mut at = MIN_PACKET;
        while at < raw.len() {
            at = attribute_end(raw, at).ok_or(Error::Attribute(at))?;
        }
        Ok(Self { code, raw })
    }

    /// The packet type.
    pub const fn code(&self) -> Code {
        self.code
    }

    /// The Identifier that pairs a reply with its request.
    pub fn identifier(&self) -> u8 {
        self.raw[1]
    }

    /// The Request or Response Authenticator.
    pub fn authenticator(&self) -> [u8; AUTHENTICATOR_LEN] {
        let mut out = [0; AUTHENTICATOR_LEN];
        out.copy_from_slice(&self.raw[4..MIN_PACKET]);
        out
    }

    /// The packet's bytes up to its Length field.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Every attribute in order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            raw: self.raw,
            at: MIN_PACKET,
        }
    }

    /// The first attribute of a type.
    pub fn get(&self, ty: u8) -> Option<Attribute<'a>> {
        self.attributes().find(|a| a.ty == ty)
    }

    /// Every attribute of a type, in order (Class, Framed-Route, Reply-Message
    /// may repeat).
    pub fn get_all(&self, ty: u8) -> impl Iterator<Item = Attribute<'a>> {
        self.attributes().filter(move |a| a.ty == ty)
    }

    /// The Vendor-Specific attributes of one vendor. A malformed one yields
    /// an error rather than being skipped, so a group never goes unnoticed.
    pub fn vendor(
        &self,
        vendor_id: u32,
    ) -> impl Iterator<Item = Result<VendorSpecific<'a>, Error>> {
        self.get_all(attr::VENDOR_SPECIFIC)
            .map(|a| a.vendor_specific())
            .filter(move |v| !matches!(v, Ok(v) if v.vendor_id != vendor_id))
    }

    /// Checks a reply (Access-Accept/Reject/Challenge, Accounting-Response,
    /// Disconnect/CoA ACK or NAK) against the Request Authenticator of the
    /// request it answers: the Response Authenticator (RFC 2865 §3), and the
    /// Message-Authenticator when present or when `require_message_auth`.
    pub fn verify_reply(
        &self,
        request_authenticator: &[u8; AUTHENTICATOR_LEN],
        secret: &[u8],
        require_message_auth: bool,
    ) -> Result<(), Error> {
        if self.code.has_random_authenticator() || self.code.has_hashed_authenticator() {
            return Err(Error::WrongCode(self.code));
        }
        self.verify_message_authenticator(request_authenticator, secret, require_message_auth)?;
        let expected = auth::packet_md5(self.raw, request_authenticator, secret);
        auth::check(&expected, &self.raw[4..MIN_PACKET], Error::Authenticator)
    }

    /// Checks a request whose authenticator is MD5 over the packet:
    /// Accounting-Request (RFC 2866 §3), Disconnect-Request and CoA-Request
    /// (RFC 5176 §2.3), and the Message-Authenticator when present or when
    /// `require_message_auth` (computed with a zero authenticator field,
    /// RFC 5176 §3.1).
    pub fn verify_request(&self, secret: &[u8], require_message_auth: bool) -> Result<(), Error> {
        if !self.code.has_hashed_authenticator() {
            return Err(Error::WrongCode(self.code));
        }
        let zero = [0; AUTHENTICATOR_LEN];
        self.verify_message_authenticator(&zero, secret, require_message_auth)?;
        let expected = auth::packet_md5(self.raw, &zero, secret);
        auth::check(&expected, &self.raw[4..MIN_PACKET], Error::Authenticator)
    }

    /// Checks the Message-Authenticator (RFC 3579 §3.2) as computed with
    /// `authenticator` in the header; more than one, or one that is not 16
    /// bytes, is a failure (RFC 3579 §3.2 allows at most one).
    fn verify_message_authenticator(
        &self,
        authenticator: &[u8; AUTHENTICATOR_LEN],
        secret: &[u8],
        required: bool,
    ) -> Result<(), Error> {
        let mut found = self
            .attributes()
            .filter(|a| a.ty == attr::MESSAGE_AUTHENTICATOR);
        let Some(mac) = found.next() else {
            return if required {
                Err(Error::MissingMessageAuthenticator)
            } else {
                Ok(())
            };
        };
        if found.next().is_some() || mac.value.len() != AUTHENTICATOR_LEN {
            return Err(Error::MessageAuthenticator);
        }
        let expected = auth::message_authenticator(self.raw, authenticator, mac.offset, secret);
        auth::check(&expected, mac.value, Error::MessageAuthenticator)
    }
}

/// Where the attribute starting at `at` ends, if its length is sane.
fn attribute_end(raw: &[u8], at: usize) -> Option<usize> {
    let len = usize::from(*raw.get(at + 1)?);
    let end = at + len;
    (len >= 2 && end <= raw.len()).then_some(end)
}

/// The attributes of a decoded packet, in order.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        // Decoding validated every length; `?` only ends the walk.
        let end = attribute_end(self.raw, self.at)?;
        let attribute = Attribute {
            ty: self.raw[self.at],
            value: &self.raw[self.at + 2..end],
            offset: self.at,
        };
        self.at = end;
        Some(attribute)
    }
}

/// One attribute: its type and value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute type (see [`attr`]).
    pub ty: u8,
    /// The value, without the type and length octets.
    pub value: &'a [u8],
    /// Where the attribute starts in the packet.
    pub(super) offset: usize,
}

impl<'a> Attribute<'a> {
    fn fixed<const N: usize>(&self, expected: &'static str) -> Result<[u8; N], Error> {
        self.value.try_into().map_err(|_| Error::ValueLength {
            ty: self.ty,
            len: self.value.len(),
            expected,
        })
    }

    /// An `integer` (RFC 8044 §3.1): 4 bytes, big-endian.
    pub fn u32(&self) -> Result<u32, Error> {
        self.fixed("4").map(u32::from_be_bytes)
    }

    /// An `ipv4addr`: 4 bytes.
    pub fn ipv4(&self) -> Result<Ipv4Addr, Error> {
        self.fixed::<4>("4").map(Ipv4Addr::from)
    }

    /// An `ipv6addr` (Framed-IPv6-Address, DNS-Server-IPv6-Address): 16 bytes.
    pub fn ipv6(&self) -> Result<Ipv6Addr, Error> {
        self.fixed::<16>("16").map(Ipv6Addr::from)
    }

    /// An `ipv6prefix` (RFC 3162 §2.3): a reserved octet, the prefix length,
    /// then only as many address bytes as the prefix needs (up to 16).
    /// Host bits past the prefix length are cleared.
    pub fn ipv6_prefix(&self) -> Result<Ipv6Net, Error> {
        let [_reserved, len, prefix @ ..] = self.value else {
            return Err(Error::Ipv6Prefix);
        };
        if *len > 128 || prefix.len() > 16 || prefix.len() * 8 < usize::from(*len) {
            return Err(Error::Ipv6Prefix);
        }
        let mut octets = [0; 16];
        octets[..prefix.len()].copy_from_slice(prefix);
        Ipv6Net::new(Ipv6Addr::from(octets), *len)
            .map(|net| net.trunc())
            .map_err(|_| Error::Ipv6Prefix)
    }

    /// A `text` value: UTF-8 (RFC 8044 §3.4).
    pub fn text(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value).map_err(|_| Error::NotText(self.ty))
    }

    /// A Vendor-Specific attribute (RFC 2865 §5.26) split into its vendor
    /// and sub-attributes, each checked to be `type, length >= 2, value`
    /// and to fill the value exactly.
    pub fn vendor_specific(&self) -> Result<VendorSpecific<'a>, Error> {
        if self.ty != attr::VENDOR_SPECIFIC {
            return Err(Error::VendorSpecific);
        }
        let [a, b, c, d, subs @ ..] = self.value else {
            return Err(Error::VendorSpecific);
        };
        let mut at = 0;
        while at < subs.len() {
            at = attribute_end(subs, at).ok_or(Error::VendorSpecific)?;
        }
        Ok(VendorSpecific {
            vendor_id: u32::from_be_bytes([*a, *b, *c, *d]),
            subs,
        })
    }
}

/// A Vendor-Specific attribute: the vendor's SMI number and its
/// sub-attributes in the RFC 2865 §5.26 suggested format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VendorSpecific<'a> {
    /// The IANA private enterprise number.
    pub vendor_id: u32,
    subs: &'a [u8],
}

impl<'a> VendorSpecific<'a> {
    /// The sub-attributes as `(vendor type, value)`.
    pub fn attributes(&self) -> impl Iterator<Item = (u8, &'a [u8])> {
        let subs = self.subs;
        let mut at = 0;
        std::iter::from_fn(move || {
            let end = attribute_end(subs, at)?;
            let item = (subs[at], &subs[at + 2..end]);
            at = end;
            Some(item)
        })
    }
}
