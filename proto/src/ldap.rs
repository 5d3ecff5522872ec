//! The few LDAPv3 operations (RFC 4511) a VPN login needs: a simple bind,
//! a search with a filter (RFC 4515) and StartTLS, encoded and decoded in
//! BER. Sockets and TLS belong to the caller.

/// A result code (RFC 4511 §4.1.9) with the server's diagnostic message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapResult {
    pub code: u32,
    pub message: String,
}

/// resultCode values this server tells apart.
pub mod code {
    pub const SUCCESS: u32 = 0;
    pub const INVALID_CREDENTIALS: u32 = 49;
}

/// One entry of a search: its DN and the attributes asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// The values of `name` (attribute names are case-insensitive).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attributes
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.iter().map(Vec::as_slice))
    }
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Bind(LdapResult),
    Entry(Entry),
    /// A search continues elsewhere; not followed.
    Reference,
    SearchDone(LdapResult),
    Extended(LdapResult),
    /// Anything else (a notice of disconnection, ...).
    Other(u8),
}

/// Why bytes are not an LDAP message this client reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed BER")]
    Ber,
    #[error("message too large")]
    TooLarge,
    #[error("filter: {0}")]
    Filter(String),
}

/// Largest message read: entries with many group values fit.
pub const MAX_MESSAGE: usize = 1 << 20;

// ---- BER writing

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    push_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

fn integer(tag: u8, v: u32) -> Vec<u8> {
    let mut bytes = v.to_be_bytes().to_vec();
    // Shortest form: no leading zero unless the next byte's top bit needs
    // one (a positive number).
    while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
        bytes.remove(0);
    }
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    tlv(tag, &bytes)
}

fn seq(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

fn message(id: u32, op: Vec<u8>) -> Vec<u8> {
    seq(0x30, &[integer(0x02, id), op])
}

/// A simple bind (RFC 4511 §4.2) as `dn` with `password`.
pub fn bind_request(id: u32, dn: &str, password: &[u8]) -> Vec<u8> {
    message(
        id,
        seq(
            0x60,
            &[
                integer(0x02, 3),
                tlv(0x04, dn.as_bytes()),
                tlv(0x80, password),
            ],
        ),
    )
}

/// StartTLS (RFC 4511 §4.14).
pub fn start_tls_request(id: u32) -> Vec<u8> {
    message(id, seq(0x77, &[tlv(0x80, b"1.3.6.1.4.1.1466.20037")]))
}

/// An unbind: the polite end of a connection.
pub fn unbind_request(id: u32) -> Vec<u8> {
    message(id, tlv(0x42, &[]))
}

/// A subtree search under `base` for `filter`, asking for `attributes`,
/// at most `size_limit` entries.
pub fn search_request(
    id: u32,
    base: &str,
    filter: &str,
    attributes: &[&str],
    size_limit: u32,
) -> Result<Vec<u8>, Error> {
    let attrs: Vec<Vec<u8>> = attributes.iter().map(|a| tlv(0x04, a.as_bytes())).collect();
    Ok(message(
        id,
        seq(
            0x63,
            &[
                tlv(0x04, base.as_bytes()),
                integer(0x0a, 2),
                integer(0x0a, 0),
                integer(0x02, size_limit),
                integer(0x02, 0),
                tlv(0x01, &[0]),
                parse_filter(filter)?,
                seq(0x30, &attrs),
            ],
        ),
    ))
}

// ---- filters (RFC 4515)

/// A filter string in BER.
pub fn parse_filter(text: &str) -> Result<Vec<u8>, Error> {
    let mut p = FilterParser {
        s: text.trim().as_bytes(),
        at: 0,
        depth: 0,
    };
    let f = p.filter()?;
    if p.at != p.s.len() {
        return Err(Error::Filter(format!(
            "trailing text after position {}",
            p.at
        )));
    }
    Ok(f)
}

struct FilterParser<'a> {
    s: &'a [u8],
    at: usize,
    depth: u32,
}

impl FilterParser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::Filter(format!("{what} at position {}", self.at))
    }

    fn eat(&mut self, b: u8) -> Result<(), Error> {
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {:?}", b as char)))
        }
    }

    fn filter(&mut self) -> Result<Vec<u8>, Error> {
        self.depth += 1;
        if self.depth > 32 {
            return Err(self.err("nesting too deep"));
        }
        self.eat(b'(')?;
        let out = match self.s.get(self.at) {
            Some(b'&') => {
                self.at += 1;
                self.list(0xa0)?
            }
            Some(b'|') => {
                self.at += 1;
                self.list(0xa1)?
            }
            Some(b'!') => {
                self.at += 1;
                let inner = self.filter()?;
                tlv(0xa2, &inner)
            }
            _ => self.item()?,
        };
        self.eat(b')')?;
        self.depth -= 1;
        Ok(out)
    }

    fn list(&mut self, tag: u8) -> Result<Vec<u8>, Error> {
        let mut parts = Vec::new();
        while self.s.get(self.at) == Some(&b'(') {
            parts.push(self.filter()?);
        }
        if parts.is_empty() {
            return Err(self.err("an empty list"));
        }
        Ok(seq(tag, &parts))
    }

    fn item(&mut self) -> Result<Vec<u8>, Error> {
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b';'))
        {
            self.at += 1;
        }
        let attr = &self.s[start..self.at];
        if attr.is_empty() {
            return Err(self.err("expected an attribute"));
        }
        let op = match (self.s.get(self.at), self.s.get(self.at + 1)) {
            (Some(b'='), _) => {
                self.at += 1;
                b'='
            }
            (Some(c @ (b'>' | b'<' | b'~')), Some(b'=')) => {
                self.at += 2;
                *c
            }
            _ => return Err(self.err("expected =, >=, <= or ~=")),
        };
        let vstart = self.at;
        while self.s.get(self.at).is_some_and(|b| *b != b')') {
            self.at += 1;
        }
        let raw = &self.s[vstart..self.at];
        let attr = tlv(0x04, attr);
        Ok(match op {
            b'>' => seq(0xa5, &[attr, tlv(0x04, &self.unescape(raw)?)]),
            b'<' => seq(0xa6, &[attr, tlv(0x04, &self.unescape(raw)?)]),
            b'~' => seq(0xa8, &[attr, tlv(0x04, &self.unescape(raw)?)]),
            _ if raw == b"*" => tlv(0x87, &attr[2..]),
            _ if raw.contains(&b'*') => {
                let pieces: Vec<&[u8]> = raw.split(|b| *b == b'*').collect();
                let last = pieces.len() - 1;
                let mut subs = Vec::new();
                for (i, piece) in pieces.iter().enumerate() {
                    if piece.is_empty() {
                        continue;
                    }
                    let tag = match i {
                        0 => 0x80,
                        _ if i == last => 0x82,
                        _ => 0x81,
                    };
                    subs.push(tlv(tag, &self.unescape(piece)?));
                }
                seq(0xa4, &[attr, seq(0x30, &subs)])
            }
            _ => seq(0xa3, &[attr, tlv(0x04, &self.unescape(raw)?)]),
        })
    }

    /// `\XX` hex escapes of a value.
    fn unescape(&self, raw: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| self.err("a bad \\XX escape"))?;
                out.push(hex);
                i += 3;
            } else if raw[i] == b'(' {
                return Err(self.err("an unescaped ( in a value"));
            } else {
                out.push(raw[i]);
                i += 1;
            }
        }
        Ok(out)
    }
}

/// A user's input made safe inside a filter value (RFC 4515 §3).
pub fn escape_filter_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => out.push_str(&format!("\\{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A user's input made safe as an attribute value inside a DN (RFC 4514
/// §2.4).
pub fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

// ---- BER reading

/// A TLV: its tag, its value, and the rest after it.
fn read_tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), Error> {
    let (&tag, rest) = b.split_first().ok_or(Error::Ber)?;
    let (&first, rest) = rest.split_first().ok_or(Error::Ber)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(Error::Ber);
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(Error::Ber);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// How many bytes the message at the start of `buf` takes, once its
/// header is there (`None`: read more).
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] != 0x30 {
        return Err(Error::Ber);
    }
    let first = buf[1];
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(Error::Ber);
        }
        if buf.len() < 2 + n {
            return Ok(None);
        }
        (
            2 + n,
            buf[2..2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | usize::from(*b)),
        )
    };
    if header + len > MAX_MESSAGE {
        return Err(Error::TooLarge);
    }
    Ok(Some(header + len))
}

fn uint(v: &[u8]) -> Result<u32, Error> {
    if v.is_empty() || v.len() > 5 {
        return Err(Error::Ber);
    }
    Ok(v.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)) as u32)
}

fn result(v: &[u8]) -> Result<LdapResult, Error> {
    let (t, code, rest) = read_tlv(v)?;
    if t != 0x0a {
        return Err(Error::Ber);
    }
    let (_, _matched, rest) = read_tlv(rest)?;
    let (_, message, _) = read_tlv(rest)?;
    Ok(LdapResult {
        code: uint(code)?,
        message: String::from_utf8_lossy(message).into_owned(),
    })
}

/// Decodes one whole message: its id and what it says.
pub fn decode(msg: &[u8]) -> Result<(u32, Response), Error> {
    let (t, body, _) = read_tlv(msg)?;
    if t != 0x30 {
        return Err(Error::Ber);
    }
    let (t, id, rest) = read_tlv(body)?;
    if t != 0x02 {
        return Err(Error::Ber);
    }
    let id = uint(id)?;
    let (op, v, _) = read_tlv(rest)?;
    let r = match op {
        0x61 => Response::Bind(result(v)?),
        0x65 => Response::SearchDone(result(v)?),
        0x78 => Response::Extended(result(v)?),
        0x73 => Response::Reference,
        0x64 => {
            let (_, dn, rest) = read_tlv(v)?;
            let (_, mut attrs, _) = read_tlv(rest)?;
            let mut e = Entry {
                dn: String::from_utf8_lossy(dn).into_owned(),
                attributes: Vec::new(),
            };
            while !attrs.is_empty() {
                let (_, pa, next) = read_tlv(attrs)?;
                attrs = next;
                let (_, name, rest) = read_tlv(pa)?;
                let (_, mut vals, _) = read_tlv(rest)?;
                let mut values = Vec::new();
                while !vals.is_empty() {
                    let (_, val, next) = read_tlv(vals)?;
                    values.push(val.to_vec());
                    vals = next;
                }
                e.attributes
                    .push((String::from_utf8_lossy(name).into_owned(), values));
            }
            Response::Entry(e)
        }
        other => Response::Other(other),
    };
    Ok((id, r))
}

/// The value of the first `attr=` of a DN (`cn=eng,ou=groups` → `eng`),
/// escapes undone.
pub fn first_rdn_value(dn: &str, attr: &str) -> Option<String> {
    let (name, value) = dn.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case(attr) {
        return None;
    }
    let mut out = String::new();
    let mut chars = value.trim_start().chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ',' | '+' => break,
            c => out.push(c),
        }
    }
    Some(out.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_is_what_slapd_accepts() {
        // As ldapwhoami sends it (id 1, "cn=a", "pw").
        assert_eq!(
            bind_request(1, "cn=a", b"pw"),
            [
                0x30, 0x12, 0x02, 0x01, 0x01, 0x60, 0x0d, 0x02, 0x01, 0x03, 0x04, 0x04, b'c', b'n',
                b'=', b'a', 0x80, 0x02, b'p', b'w'
            ]
        );
        // slapd's answer, as seen on the wire.
        let ok = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(message_len(&ok).unwrap(), Some(14));
        assert_eq!(
            decode(&ok).unwrap(),
            (
                1,
                Response::Bind(LdapResult {
                    code: 0,
                    message: String::new()
                })
            )
        );
    }

    #[test]
    fn filters_encode() {
        assert_eq!(
            parse_filter("(uid=alice)").unwrap(),
            seq(0xa3, &[tlv(0x04, b"uid"), tlv(0x04, b"alice")])
        );
        assert_eq!(
            parse_filter("(objectClass=*)").unwrap(),
            tlv(0x87, b"objectClass")
        );
        let f = parse_filter("(&(objectClass=groupOfNames)(|(member=uid=a\\2cb)(!(cn=x*y*z))))")
            .unwrap();
        assert_eq!(f[0], 0xa0);
        for bad in [
            "uid=a",
            "(uid=a",
            "(&)",
            "(=a)",
            "(uid=a\\zz)",
            "(uid=a)(x=y)",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
        let deep = "(!".repeat(40) + "(a=b)" + &")".repeat(40);
        assert!(parse_filter(&deep).is_err());
    }

    #[test]
    fn user_input_cannot_change_a_filter_or_a_dn() {
        let v = escape_filter_value("a*)(uid=*");
        assert_eq!(v, "a\\2a\\29\\28uid=\\2a");
        let f = parse_filter(&format!("(uid={v})")).unwrap();
        assert_eq!(f, seq(0xa3, &[tlv(0x04, b"uid"), tlv(0x04, b"a*)(uid=*")]));
        assert_eq!(escape_dn_value("a,ou=x"), "a\\,ou\\=x");
        assert_eq!(escape_dn_value(" #a "), "\\ #a\\ ");
        assert_eq!(escape_filter_value("é*"), "é\\2a");
    }

    #[test]
    fn entries_and_dns_decode() {
        let entry = message(
            2,
            seq(
                0x64,
                &[
                    tlv(0x04, b"uid=alice,ou=people"),
                    seq(
                        0x30,
                        &[seq(
                            0x30,
                            &[
                                tlv(0x04, b"memberOf"),
                                seq(0x31, &[tlv(0x04, b"cn=eng,ou=groups")]),
                            ],
                        )],
                    ),
                ],
            ),
        );
        let (id, r) = decode(&entry).unwrap();
        let Response::Entry(e) = r else { panic!() };
        assert_eq!((id, e.dn.as_str()), (2, "uid=alice,ou=people"));
        let groups: Vec<_> = e.values("memberof").collect();
        assert_eq!(groups, [b"cn=eng,ou=groups".as_slice()]);
        assert_eq!(
            first_rdn_value("cn=eng\\,x,ou=g", "CN").as_deref(),
            Some("eng,x")
        );
        assert_eq!(first_rdn_value("uid=eng,ou=g", "cn"), None);
        // Truncated and hostile input is an error, never a panic.
        for cut in 0..entry.len() {
            let _ = decode(&entry[..cut]);
            let _ = message_len(&entry[..cut]);
        }
        assert_eq!(
            message_len(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(Error::TooLarge)
        );
    }
}
