//! The PROXY protocol (HAProxy's, v1 text and v2 binary) that a load
//! balancer in front writes before the client's bytes: where the
//! connection really comes from. Sans-IO: bytes in, a decision out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes with its CRLF.
const V1_MAX: usize = 107;

/// What the bytes so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// More bytes are needed.
    Incomplete,
    /// A header of `len` bytes; `source` is the client and `dest` the
    /// address it connected to, `None` when the proxy speaks for itself
    /// (v2 LOCAL, v1 UNKNOWN): use the socket's.
    Done {
        source: Option<SocketAddr>,
        dest: Option<SocketAddr>,
        len: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PROXY header: {0}")]
pub struct ProxyError(&'static str);

/// Reads a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Header, ProxyError> {
    if buf.len() < 12 {
        // Too short to tell: consistent with one of the two so far?
        return if V2_SIG.starts_with(buf) || b"PROXY ".starts_with(&buf[..buf.len().min(6)]) {
            Ok(Header::Incomplete)
        } else {
            Err(ProxyError("the connection does not start with one"))
        };
    }
    if buf[..12] == V2_SIG {
        return v2(buf);
    }
    if buf.starts_with(b"PROXY ") {
        return v1(buf);
    }
    Err(ProxyError("the connection does not start with one"))
}

fn v1(buf: &[u8]) -> Result<Header, ProxyError> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError("a v1 line longer than 107 bytes"))
        } else {
            Ok(Header::Incomplete)
        };
    };
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError("a v1 line that is not text"))?;
    let f: Vec<&str> = line.split(' ').collect();
    let (source, dest) = match f.as_slice() {
        ["PROXY", "UNKNOWN", ..] => (None, None),
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyError("a v1 source address that does not parse"))?;
            if ip.is_ipv4() != (*fam == "TCP4") {
                return Err(ProxyError("a v1 source address of the other family"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyError("a v1 source port that does not parse"))?;
            // The destination only informs scripts: kept when it parses.
            let dest = dst
                .parse::<IpAddr>()
                .ok()
                .zip(dport.parse::<u16>().ok())
                .map(|(ip, port)| SocketAddr::new(ip, port));
            (Some(SocketAddr::new(ip, port)), dest)
        }
        _ => {
            return Err(ProxyError(
                "a v1 line not of the form PROXY TCP4|TCP6 src dst sport dport",
            ))
        }
    };
    Ok(Header::Done {
        source,
        dest,
        len: end + 2,
    })
}

fn v2(buf: &[u8]) -> Result<Header, ProxyError> {
    if buf.len() < 16 {
        return Ok(Header::Incomplete);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError("a v2 header of another version"));
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < len {
        return Ok(Header::Incomplete);
    }
    let body = &buf[16..len];
    let v6 = |at: usize| -> Result<Ipv6Addr, ProxyError> {
        let octets: [u8; 16] = body[at..at + 16]
            .try_into()
            .map_err(|_| ProxyError("a short v2 address"))?;
        Ok(Ipv6Addr::from(octets))
    };
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let (source, dest) = match (ver_cmd & 0x0f, fam) {
        // LOCAL: the proxy's own connection (a health check).
        (0, _) => (None, None),
        // PROXY over TCP4 / TCP6.
        (1, 0x11) if body.len() >= 12 => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            (
                Some(SocketAddr::new(ip(0).into(), port(8))),
                Some(SocketAddr::new(ip(4).into(), port(10))),
            )
        }
        (1, 0x21) if body.len() >= 36 => (
            Some(SocketAddr::new(v6(0)?.into(), port(32))),
            Some(SocketAddr::new(v6(16)?.into(), port(34))),
        ),
        (1, _) => return Err(ProxyError("a v2 header for neither TCP over IPv4 nor IPv6")),
        _ => return Err(ProxyError("a v2 header with an unknown command")),
    };
    Ok(Header::Done { source, dest, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let h = b"PROXY TCP4 198.51.100.7 203.0.113.1 40000 443\r\n\x16\x03\x01";
        assert_eq!(
            parse(h),
            Ok(Header::Done {
                source: Some("198.51.100.7:40000".parse().unwrap()),
                dest: Some("203.0.113.1:443".parse().unwrap()),
                len: 47
            })
        );
        let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n";
        assert_eq!(
            parse(h6).unwrap(),
            Header::Done {
                source: Some("[2001:db8::7]:5555".parse().unwrap()),
                dest: Some("[2001:db8::1]:443".parse().unwrap()),
                len: h6.len()
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Header::Done {
                source: None,
                dest: None,
                len: 15
            })
        );
        assert_eq!(parse(b"PROXY TCP4 198.51"), Ok(Header::Incomplete));
        assert_eq!(parse(b"PRO"), Ok(Header::Incomplete));
        for bad in [
            &b"PROXY TCP4 2001:db8::7 1.2.3.4 1 2\r\n"[..],
            b"PROXY TCP4 x y 1 2\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&[b'P'; 200]).is_err());
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend([b'1'; 120]);
        assert!(parse(&long).is_err(), "no CRLF within 107 bytes");
    }

    #[test]
    fn v2_headers() {
        let mut h = V2_SIG.to_vec();
        h.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 203, 0, 113, 1, 0x9c, 0x40, 0x01, 0xbb,
        ]);
        h.extend(b"\x16\x03\x01");
        assert_eq!(
            parse(&h),
            Ok(Header::Done {
                source: Some("198.51.100.7:40000".parse().unwrap()),
                dest: Some("203.0.113.1:443".parse().unwrap()),
                len: 28
            })
        );
        assert_eq!(parse(&h[..20]), Ok(Header::Incomplete));
        let mut local = V2_SIG.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Ok(Header::Done {
                source: None,
                dest: None,
                len: 16
            })
        );
        let mut udp = V2_SIG.to_vec();
        udp.extend([0x21, 0x12, 0, 12]);
        udp.extend([0; 12]);
        assert!(parse(&udp).is_err());
    }
}
