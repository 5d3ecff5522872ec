//! HTTP/1.1 on the TLS connection before the tunnel starts: request heads
//! with hard limits, and responses written byte for byte with the exact
//! header case the client matches (docs/protocol.md, "HTTP details").

/// Largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Connect,
    Other,
}

#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    headers: Vec<(String, String)>,
    pub content_length: usize,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head exceeds {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("request body of {0} bytes exceeds {MAX_BODY}")]
    BodyTooLarge(usize),
}

impl HttpError {
    /// The status line this error is answered with before the close.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Malformed(_) => (400, "Bad Request"),
            Self::HeadTooLarge | Self::BodyTooLarge(_) => (413, "Payload Too Large"),
        }
    }
}

impl RequestHead {
    /// Header value by case-insensitive name (first occurrence).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A cookie's value from the `Cookie` header(s).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Parses a request head from the front of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some((head, used)))`: the head took
/// `used` bytes; `head.content_length` body bytes follow.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed("unparsable request head")),
    };
    if used > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some("CONNECT") => Method::Connect,
        _ => Method::Other,
    };
    let path = req.path.ok_or(HttpError::Malformed("no path"))?.to_owned();
    let mut owned = Vec::with_capacity(req.headers.len());
    let mut content_length = None;
    for h in req.headers.iter() {
        let value =
            std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed("non-UTF-8 header"))?;
        if h.name.eq_ignore_ascii_case("content-length") {
            // 1*DIGIT (RFC 9110 8.6): parse() alone would also take "+5".
            let digits = value.trim();
            let n: usize = digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse().ok())
                .flatten()
                .ok_or(HttpError::Malformed("bad Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(n);
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed("Transfer-Encoding is not supported"));
        }
        owned.push((h.name.to_owned(), value.to_owned()));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(HttpError::BodyTooLarge(content_length));
    }
    Ok(Some((
        RequestHead {
            method,
            path,
            headers: owned,
            content_length,
        },
        used,
    )))
}

/// A response written exactly as given: header names keep their case.
pub struct Response {
    out: Vec<u8>,
}

impl Response {
    pub fn new(code: u16, reason: &str) -> Self {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(format!("HTTP/1.1 {code} {reason}\r\n").as_bytes());
        Self { out }
    }

    pub fn header(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.out
            .extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        self
    }

    /// Ends the head; with a body, adds `Content-Length`.
    pub fn body(mut self, body: &[u8]) -> Vec<u8> {
        self.out
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.out.extend_from_slice(body);
        self.out
    }

    /// Ends the head with no body and no `Content-Length` (CONNECT replies).
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"\r\n");
        self.out
    }
}

/// `resp` with header lines `extra` after its status line (the operator's
/// headers on every answer, ocserv's included-http-headers).
pub fn with_headers(resp: &[u8], extra: &[String]) -> Vec<u8> {
    let Some(at) = resp.windows(2).position(|w| w == b"\r\n").map(|i| i + 2) else {
        return resp.to_vec();
    };
    let mut out = Vec::with_capacity(resp.len() + extra.iter().map(|h| h.len() + 2).sum::<usize>());
    out.extend_from_slice(&resp[..at]);
    for h in extra {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&resp[at..]);
    out
}

/// The bare error reply sent before closing a connection.
pub fn error_response(code: u16, reason: &str) -> Vec<u8> {
    Response::new(code, reason)
        .header("Connection", "close")
        .body(b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT: &[u8] = b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 10.78.0.1\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-3\r\nCookie: webvpn=ALuC2E; other=1\r\nX-CSTP-Version: 1\r\nX-CSTP-Base-MTU: 1500\r\nX-CSTP-MTU: 1390\r\n\r\n";

    #[test]
    fn parses_captured_connect() {
        let (h, used) = parse_head(CONNECT).unwrap().unwrap();
        assert_eq!(used, CONNECT.len());
        assert_eq!(h.method, Method::Connect);
        assert_eq!(h.path, "/CSCOSSLC/tunnel");
        assert_eq!(h.cookie("webvpn"), Some("ALuC2E"));
        assert_eq!(h.cookie("other"), Some("1"));
        assert_eq!(h.cookie("webvpnc"), None);
        assert_eq!(h.header("x-cstp-mtu"), Some("1390"));
        assert_eq!(h.content_length, 0);
    }

    #[test]
    fn incomplete_head_waits_for_more() {
        for cut in 0..CONNECT.len() - 1 {
            assert!(
                parse_head(&CONNECT[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn limits_and_malformed_input() {
        let big = vec![b'a'; MAX_HEAD + 1];
        let mut long = b"POST / HTTP/1.1\r\nX-Pad: ".to_vec();
        long.extend_from_slice(&big);
        assert_eq!(parse_head(&long).unwrap_err(), HttpError::HeadTooLarge);
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse_head(body.as_bytes()).unwrap_err(),
            HttpError::BodyTooLarge(MAX_BODY + 1)
        );
        assert!(matches!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        for cl in ["x", "+5", "-0", ""] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            assert!(
                matches!(parse_head(req.as_bytes()), Err(HttpError::Malformed(_))),
                "{cl:?}"
            );
        }
        let te = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(te), Err(HttpError::Malformed(_))));
        assert_eq!(HttpError::HeadTooLarge.status().0, 413);
    }

    #[test]
    fn response_keeps_header_case() {
        let r = Response::new(200, "CONNECTED")
            .header("X-CSTP-MTU", 1334)
            .finish();
        assert_eq!(r, b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1334\r\n\r\n");
        let b = Response::new(200, "OK")
            .header("Content-Type", "text/xml")
            .body(b"<x/>");
        assert_eq!(
            b,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n\r\n<x/>"
        );
    }
}
