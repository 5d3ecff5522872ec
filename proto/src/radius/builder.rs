//! Building packets to send: attributes appended in order, authenticators
//! filled in by [`Builder::encode`].

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::{
    attr, auth, Code, Error, Packet, AUTHENTICATOR_LEN, MAX_PACKET, MAX_VALUE, MIN_PACKET,
};

/// Length of a Message-Authenticator attribute on the wire: type, length
/// and a 16-byte HMAC-MD5.
const MESSAGE_AUTH_ATTR: u8 = 18;

/// What goes in the authenticator field.
#[derive(Clone, Copy, Debug)]
enum Signing {
    /// The caller's random bytes (Access-Request, Status-Server).
    Random([u8; AUTHENTICATOR_LEN]),
    /// MD5 over the packet with a zero field (RFC 2866 §3, RFC 5176 §2.3).
    Hashed,
    /// A Response Authenticator over the request's authenticator.
    Reply([u8; AUTHENTICATOR_LEN]),
}

impl Signing {
    /// The field's content while the MACs are computed.
    const fn field(self) -> [u8; AUTHENTICATOR_LEN] {
        match self {
            Self::Random(a) | Self::Reply(a) => a,
            Self::Hashed => [0; AUTHENTICATOR_LEN],
        }
    }
}

/// A packet being built. Setters never fail; the first bad value is kept
/// and returned by [`Builder::encode`], so a chain reads top to bottom.
#[derive(Clone, Debug)]
pub struct Builder {
    code: Code,
    identifier: u8,
    signing: Signing,
    message_authenticator: bool,
    /// Encoded attributes, excluding the Message-Authenticator.
    attributes: Vec<u8>,
    error: Option<Error>,
}

impl Builder {
    fn new(code: Code, identifier: u8, signing: Signing) -> Self {
        Self {
            code,
            identifier,
            signing,
            // Always on Access-Requests: servers hardened against BlastRADIUS
            // (CVE-2024-3596) require it, and it authenticates the reply.
            message_authenticator: code.has_random_authenticator(),
            attributes: Vec::new(),
            error: None,
        }
    }

    /// An Access-Request; `authenticator` must be 16 unpredictable bytes
    /// from the caller's random source (RFC 2865 §3). It carries a
    /// Message-Authenticator unless turned off.
    pub fn access_request(identifier: u8, authenticator: [u8; AUTHENTICATOR_LEN]) -> Self {
        Self::new(
            Code::AccessRequest,
            identifier,
            Signing::Random(authenticator),
        )
    }

    /// A Status-Server probe (RFC 5997), with its required
    /// Message-Authenticator.
    pub fn status_server(identifier: u8, authenticator: [u8; AUTHENTICATOR_LEN]) -> Self {
        Self::new(
            Code::StatusServer,
            identifier,
            Signing::Random(authenticator),
        )
    }

    /// An Accounting-Request (RFC 2866).
    pub fn accounting_request(identifier: u8) -> Self {
        Self::new(Code::AccountingRequest, identifier, Signing::Hashed)
    }

    /// A request with a hashed authenticator: Accounting-Request,
    /// Disconnect-Request or CoA-Request. Another code is an error.
    pub fn request(code: Code, identifier: u8) -> Self {
        let mut builder = Self::new(code, identifier, Signing::Hashed);
        if !code.has_hashed_authenticator() {
            builder.error = Some(Error::WrongCode(code));
        }
        builder
    }

    /// A reply to `request` with its identifier: a Disconnect or CoA ACK/NAK
    /// (RFC 5176 §2.3), or any other reply code. A request code is an error.
    pub fn reply(code: Code, request: &Packet<'_>) -> Self {
        let signing = Signing::Reply(request.authenticator());
        let mut builder = Self::new(code, request.identifier(), signing);
        if code.has_random_authenticator() || code.has_hashed_authenticator() {
            builder.error = Some(Error::WrongCode(code));
        }
        builder
    }

    /// Whether to add a Message-Authenticator (RFC 3579 §3.2), placed first
    /// as the BlastRADIUS hardening recommends.
    #[must_use]
    pub const fn message_authenticator(mut self, on: bool) -> Self {
        self.message_authenticator = on;
        self
    }

    /// Appends an attribute with raw value bytes (at most 253).
    #[must_use]
    pub fn attr(mut self, ty: u8, value: &[u8]) -> Self {
        match u8::try_from(value.len() + 2) {
            Ok(len) if value.len() <= MAX_VALUE => {
                self.attributes.extend([ty, len]);
                self.attributes.extend_from_slice(value);
            }
            _ => self.fail(Error::ValueTooLong {
                ty,
                len: value.len(),
            }),
        }
        self
    }

    /// Appends a text attribute.
    #[must_use]
    pub fn text(self, ty: u8, value: &str) -> Self {
        self.attr(ty, value.as_bytes())
    }

    /// Appends an integer attribute.
    #[must_use]
    pub fn u32(self, ty: u8, value: u32) -> Self {
        self.attr(ty, &value.to_be_bytes())
    }

    /// Appends an IPv4 address attribute.
    #[must_use]
    pub fn ipv4(self, ty: u8, value: Ipv4Addr) -> Self {
        self.attr(ty, &value.octets())
    }

    /// Appends an IPv6 address attribute.
    #[must_use]
    pub fn ipv6(self, ty: u8, value: Ipv6Addr) -> Self {
        self.attr(ty, &value.octets())
    }

    /// Appends an IPv6 prefix attribute (RFC 3162 §2.3) with only the bytes
    /// the prefix length needs.
    #[must_use]
    pub fn ipv6_prefix(self, ty: u8, value: Ipv6Net) -> Self {
        let len = value.prefix_len();
        let bytes = usize::from(len).div_ceil(8);
        let mut encoded = [0; 18];
        encoded[1] = len;
        encoded[2..2 + bytes].copy_from_slice(&value.trunc().addr().octets()[..bytes]);
        self.attr(ty, &encoded[..2 + bytes])
    }

    /// Appends a Vendor-Specific attribute with one sub-attribute
    /// (RFC 2865 §5.26).
    #[must_use]
    pub fn vendor(self, vendor_id: u32, vendor_type: u8, value: &[u8]) -> Self {
        let mut encoded = Vec::with_capacity(6 + value.len());
        encoded.extend(vendor_id.to_be_bytes());
        // An overlong value makes the outer attribute overlong too.
        encoded.extend([vendor_type, u8::try_from(value.len() + 2).unwrap_or(0)]);
        encoded.extend_from_slice(value);
        self.attr(attr::VENDOR_SPECIFIC, &encoded)
    }

    /// Appends User-Name.
    #[must_use]
    pub fn user_name(self, name: &str) -> Self {
        self.text(attr::USER_NAME, name)
    }

    /// Appends User-Password hidden with the secret and this packet's
    /// Request Authenticator (RFC 2865 §5.2); only Access-Requests have one.
    #[must_use]
    pub fn password(mut self, secret: &[u8], password: &[u8]) -> Self {
        let Signing::Random(authenticator) = self.signing else {
            self.fail(Error::PasswordInWrongPacket);
            return self;
        };
        match attr::hide_password(password, secret, &authenticator) {
            Ok(hidden) => self.attr(attr::USER_PASSWORD, &hidden),
            Err(e) => {
                self.fail(e);
                self
            }
        }
    }

    fn fail(&mut self, error: Error) {
        self.error.get_or_insert(error);
    }

    /// The packet's bytes with its authenticators: the Message-Authenticator
    /// first, over the packet as the receiver will check it, then the
    /// Request or Response Authenticator over everything, the
    /// Message-Authenticator included (RFC 3579 §3.2, RFC 5176 §3.1).
    pub fn encode(self, secret: &[u8]) -> Result<Vec<u8>, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mac_len = if self.message_authenticator {
            usize::from(MESSAGE_AUTH_ATTR)
        } else {
            0
        };
        let len = MIN_PACKET + mac_len + self.attributes.len();
        let length = u16::try_from(len)
            .ok()
            .filter(|_| len <= MAX_PACKET)
            .ok_or(Error::TooLong)?;
        let field = self.signing.field();
        let mut out = Vec::with_capacity(len);
        out.extend([self.code as u8, self.identifier]);
        out.extend(length.to_be_bytes());
        out.extend(field);
        if self.message_authenticator {
            out.extend([attr::MESSAGE_AUTHENTICATOR, MESSAGE_AUTH_ATTR]);
            out.extend([0; AUTHENTICATOR_LEN]);
        }
        out.extend(self.attributes);
        if self.message_authenticator {
            let mac = auth::message_authenticator(&out, &field, MIN_PACKET, secret);
            out[MIN_PACKET + 2..][..AUTHENTICATOR_LEN].copy_from_slice(&mac);
        }
        if !matches!(self.signing, Signing::Random(_)) {
            let authenticator = auth::packet_md5(&out, &field, secret);
            out[4..MIN_PACKET].copy_from_slice(&authenticator);
        }
        Ok(out)
    }
}
