//! The XML login as openconnect 9.01 runs it (docs/protocol.md, "Login"): POST /
//! `init`, answer the username form, answer the password form, take the
//! `webvpn` cookie; then `CONNECT /CSCOSSLC/tunnel` ("The CONNECT request").

use std::collections::BTreeMap;
use std::io;

use crate::tls::TlsConn;

const UA: &str = "Open AnyConnect VPN Agent v9.01";
const MAX_HEAD: usize = 16 * 1024;

/// A parsed HTTP response head and body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one response head (and a Content-Length body unless `no_body`).
/// Bytes after it stay in `c.plain`.
pub(crate) async fn read_response(c: &mut TlsConn, no_body: bool) -> io::Result<Response> {
    let head_end = loop {
        if let Some(i) = c.plain.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if c.plain.len() > MAX_HEAD {
            return Err(bad("response head too long"));
        }
        if !c.read_plain().await? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed before a response",
            ));
        }
    };
    let head = String::from_utf8_lossy(&c.plain[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3)?.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    c.plain.drain(..head_end);
    let mut r = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !no_body {
        let len: usize = r
            .header("Content-Length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while c.plain.len() < len {
            if !c.read_plain().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed inside a body",
                ));
            }
        }
        r.body = c.plain.drain(..len).collect();
    }
    Ok(r)
}

/// What a login needs to know.
#[derive(Clone)]
pub(crate) struct Creds {
    pub(crate) host: String,
    pub(crate) user: String,
    pub(crate) password: String,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The value of `attr="..."` inside `tag`.
fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let pat = format!("{attr}=\"");
    let i = tag.find(&pat)? + pat.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

/// The form of an `auth-request`: its action and input names by type.
struct Form {
    action: String,
    inputs: Vec<(String, String)>,
    opaque: Option<String>,
}

fn parse_form(body: &str) -> Option<Form> {
    let fstart = body.find("<form")?;
    let ftag = &body[fstart..fstart + body[fstart..].find('>')?];
    let action = attr(ftag, "action").unwrap_or("/").to_owned();
    let mut inputs = Vec::new();
    let mut rest = &body[fstart..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..i + rest[i..].find('>').unwrap_or(rest.len() - i)];
        if let (Some(t), Some(n)) = (attr(tag, "type"), attr(tag, "name")) {
            inputs.push((t.to_owned(), n.to_owned()));
        }
        rest = &rest[i + 6..];
    }
    let opaque = body.find("<opaque").and_then(|s| {
        let end = body[s..].find("</opaque>")? + s + "</opaque>".len();
        Some(body[s..end].to_owned())
    });
    Some(Form {
        action,
        inputs,
        opaque,
    })
}

pub(crate) struct Session {
    pub(crate) cookies: BTreeMap<String, String>,
}

impl Session {
    fn cookie_header(&self) -> String {
        let v: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if v.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", v.join("; "))
        }
    }

    fn take_cookies(&mut self, r: &Response) {
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("Set-Cookie") {
                let nv = v.split(';').next().unwrap_or("");
                if let Some((n, val)) = nv.split_once('=') {
                    self.cookies
                        .insert(n.trim().to_owned(), val.trim().to_owned());
                }
            }
        }
    }
}

fn config_auth(kind: &str, host: &str, inner: &str) -> String {
    let tail = if kind == "init" {
        format!("<group-access>https://{host}/</group-access>")
    } else {
        inner.to_owned()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"{kind}\" aggregate-auth-version=\"2\">\
         <version who=\"vpn\">v9.01</version><device-id>linux-64</device-id><capabilities>\
         <auth-method>single-sign-on-v2</auth-method></capabilities>{tail}</config-auth>\n"
    )
}

async fn post(
    c: &mut TlsConn,
    s: &mut Session,
    creds: &Creds,
    path: &str,
    body: &str,
) -> io::Result<Response> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {UA}\r\n{cookie}Accept: */*\r\nAccept-Encoding: identity\r\n\
         X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\nX-Support-HTTP-Auth: true\r\n\
         Content-Type: application/xml; charset=utf-8\r\nContent-Length: {len}\r\n\r\n{body}",
        host = creds.host,
        cookie = s.cookie_header(),
        len = body.len()
    );
    c.write_plain(req.as_bytes()).await?;
    let r = read_response(c, false).await?;
    s.take_cookies(&r);
    Ok(r)
}

/// Runs the login on `c`; returns the `webvpn` cookie.
pub(crate) async fn login(c: &mut TlsConn, creds: &Creds) -> io::Result<String> {
    let mut s = Session {
        cookies: BTreeMap::new(),
    };
    let mut r = post(c, &mut s, creds, "/", &config_auth("init", &creds.host, "")).await?;
    // Each form is answered at most a few times: username, password (and a retry would be a failure).
    for _ in 0..4 {
        if r.status != 200 {
            return Err(bad(format!("login refused: HTTP {}", r.status)));
        }
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if body.contains("<auth id=\"success\"") {
            return s
                .cookies
                .get("webvpn")
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| bad("success without a webvpn cookie"));
        }
        if body.contains("Login failed") {
            return Err(bad("login failed (wrong password?)"));
        }
        let form = parse_form(&body).ok_or_else(|| bad(format!("no form in reply: {body}")))?;
        let mut fields = String::new();
        for (ty, name) in &form.inputs {
            let v = match ty.as_str() {
                "text" => &creds.user,
                "password" => &creds.password,
                _ => continue,
            };
            fields.push_str(&format!("<{name}>{}</{name}>", xml_escape(v)));
        }
        let inner = format!(
            "{}<auth>{fields}</auth>",
            form.opaque.as_deref().unwrap_or("")
        );
        r = post(
            c,
            &mut s,
            creds,
            &form.action,
            &config_auth("auth-reply", &creds.host, &inner),
        )
        .await?;
    }
    Err(bad("too many login rounds"))
}

/// The server's answer to CONNECT: the `X-CSTP-*`/`X-DTLS-*` headers.
pub(crate) struct Tunnel {
    pub(crate) headers: Vec<(String, String)>,
}

impl Tunnel {
    /// Exact-case lookup, as openconnect does.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn secs(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok().filter(|&v| v > 0)
    }
}

/// Sends CONNECT and waits for `200 CONNECTED`. CSTP bytes that followed
/// the head stay in `c.plain`.
pub(crate) async fn connect(
    c: &mut TlsConn,
    creds: &Creds,
    cookie: &str,
    dtls: bool,
) -> io::Result<Tunnel> {
    let dtls_headers = if dtls {
        "X-DTLS-Master-Secret: 000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\r\n\
         X-DTLS-CipherSuite: PSK-NEGOTIATE\r\nX-DTLS-Accept-Encoding: identity\r\n"
    } else {
        ""
    };
    let req = format!(
        "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {UA}\r\nCookie: webvpn={cookie}\r\n\
         X-CSTP-Version: 1\r\nX-CSTP-Hostname: ocu-loadgen\r\nX-CSTP-Accept-Encoding: identity\r\nX-CSTP-Base-MTU: 1500\r\n\
         X-CSTP-MTU: 1390\r\nX-CSTP-Address-Type: IPv4\r\n{dtls_headers}\r\n",
        host = creds.host
    );
    c.write_plain(req.as_bytes()).await?;
    let r = read_response(c, true).await?;
    if r.status != 200 {
        return Err(bad(format!("CONNECT refused: HTTP {}", r.status)));
    }
    Ok(Tunnel { headers: r.headers })
}
