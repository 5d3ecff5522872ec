//! LDAP logins (`[auth] method = "ldap"`): a simple bind as the user (its
//! DN from a template, or found by a service account's search), over
//! ldaps or StartTLS, and the user's groups from an attribute of its entry
//! or a search. One connection per login, on the login's own thread.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Verdict;
use crate::proto::auth::Accepted;
use crate::proto::ldap::{self, code, Entry, Response};

/// `[ldap]` as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLdap {
    /// `ldaps://host[:636]` or `ldap://host[:389]`.
    pub uri: String,
    /// On `ldap://`: StartTLS before anything else.
    pub start_tls: bool,
    /// The CA (PEM) the server's certificate must chain to; required for
    /// ldaps and StartTLS.
    pub ca_file: Option<PathBuf>,
    /// The user's DN with `%u` for the name, bound to directly; empty:
    /// search for it with `bind_dn` under `base_dn` with `user_filter`.
    pub user_dn: String,
    /// The service account that searches (and reads groups).
    pub bind_dn: String,
    /// Its password: the file's first line.
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// `%u` is the user name, escaped.
    pub user_filter: String,
    /// An attribute of the user's entry naming its groups (`memberOf`): a
    /// DN's first value of `group_name_attribute`, or a plain name.
    pub group_attribute: String,
    /// Or a search for the groups: under `group_base_dn`, `%D` the user's
    /// DN and `%u` its name, escaped.
    pub group_base_dn: String,
    pub group_filter: String,
    /// The attribute of a group entry (or of a group DN) that is its name.
    pub group_name_attribute: String,
    /// Seconds for connecting and for each answer.
    pub timeout: u64,
}

impl Default for RawLdap {
    fn default() -> Self {
        Self {
            uri: String::new(),
            start_tls: false,
            ca_file: None,
            user_dn: String::new(),
            bind_dn: String::new(),
            bind_password_file: None,
            base_dn: String::new(),
            user_filter: "(uid=%u)".into(),
            group_attribute: String::new(),
            group_base_dn: String::new(),
            group_filter: String::new(),
            group_name_attribute: "cn".into(),
            timeout: 5,
        }
    }
}

impl RawLdap {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[ldap]` checked, files read.
#[derive(Debug)]
pub struct Ldap {
    raw: RawLdap,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    bind_password: Option<String>,
    timeout: Duration,
}

impl Ldap {
    pub fn from_raw(raw: &RawLdap, base: &Path) -> Result<Self, (&'static str, String)> {
        let path = |p: &Path| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_owned()
            }
        };
        let (scheme, rest) = raw.uri.split_once("://").ok_or((
            "ldap.uri",
            format!("expected ldap://HOST or ldaps://HOST, got {:?}", raw.uri),
        ))?;
        let secure = match scheme {
            "ldaps" => true,
            "ldap" => raw.start_tls,
            _ => {
                return Err((
                    "ldap.uri",
                    format!("expected ldap:// or ldaps://, got {scheme}://"),
                ))
            }
        };
        let hostport = rest.trim_end_matches('/');
        let default_port = if scheme == "ldaps" { 636 } else { 389 };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse()
                    .map_err(|_| ("ldap.uri", format!("bad port in {:?}", raw.uri)))?,
            ),
            _ => (hostport.trim_matches(['[', ']']).to_owned(), default_port),
        };
        if host.is_empty() {
            return Err(("ldap.uri", format!("no host in {:?}", raw.uri)));
        }
        let tls = if secure {
            let ca = raw.ca_file.as_ref().ok_or((
                "ldap.ca_file",
                "expected the CA of the server's certificate: ldaps and StartTLS check it"
                    .to_owned(),
            ))?;
            let roots =
                crate::tls::load_ca(&path(ca)).map_err(|e| ("ldap.ca_file", e.to_string()))?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ("ldap.ca_file", e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| {
                (
                    "ldap.uri",
                    format!("{host:?} is no name a certificate can be for"),
                )
            })?;
            Some(Arc::new(cfg))
        } else {
            None
        };
        let bind_password = match &raw.bind_password_file {
            Some(p) => {
                let p = path(p);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| ("ldap.bind_password_file", format!("{}: {e}", p.display())))?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            None => None,
        };
        if raw.user_dn.is_empty() {
            if raw.base_dn.is_empty() || raw.user_filter.is_empty() {
                return Err((
                    "ldap.user_dn",
                    "expected user_dn, or base_dn and user_filter to search with".into(),
                ));
            }
            ldap::parse_filter(&raw.user_filter.replace("%u", "x"))
                .map_err(|e| ("ldap.user_filter", e.to_string()))?;
        } else if !raw.user_dn.contains("%u") {
            return Err((
                "ldap.user_dn",
                format!("expected %u for the user name in {:?}", raw.user_dn),
            ));
        }
        if !raw.group_filter.is_empty() {
            ldap::parse_filter(&raw.group_filter.replace("%u", "x").replace("%D", "x"))
                .map_err(|e| ("ldap.group_filter", e.to_string()))?;
            if raw.group_base_dn.is_empty() {
                return Err((
                    "ldap.group_base_dn",
                    "expected where to search groups: group_filter is set".into(),
                ));
            }
        }
        if !raw.bind_dn.is_empty() && bind_password.is_none() {
            return Err((
                "ldap.bind_password_file",
                "expected the password of bind_dn".into(),
            ));
        }
        if !(1..=60).contains(&raw.timeout) {
            return Err((
                "ldap.timeout",
                format!("expected 1-60 seconds, got {}", raw.timeout),
            ));
        }
        Ok(Self {
            raw: raw.clone(),
            host,
            port,
            tls,
            bind_password,
            timeout: Duration::from_secs(raw.timeout),
        })
    }

    /// The longest a login may wait: connect, TLS, three binds, two searches.
    pub fn limit(&self) -> Duration {
        self.timeout * 7
    }

    /// One login: the verdict on `user` with `password`.
    pub fn login(&self, user: &str, password: &str) -> Verdict {
        // An empty password is an unauthenticated bind (RFC 4513 §5.1.2),
        // which some servers take as anonymous success.
        if password.is_empty() {
            return Verdict::Reject(None);
        }
        match self.try_login(user, password) {
            Ok(Some(groups)) => Verdict::Accept(Accepted {
                groups,
                ..Default::default()
            }),
            Ok(None) => Verdict::Reject(None),
            Err(why) => Verdict::Error(format!("{}:{}: {why}", self.host, self.port)),
        }
    }

    fn try_login(&self, user: &str, password: &str) -> Result<Option<Vec<String>>, String> {
        let mut c = Client::connect(self)?;
        let service = |c: &mut Client| -> Result<(), String> {
            let pw = self.bind_password.as_deref().unwrap_or_default();
            let r = c.bind(&self.raw.bind_dn, pw)?;
            if r.code != code::SUCCESS {
                return Err(format!(
                    "the service account's bind: code {} {}",
                    r.code, r.message
                ));
            }
            Ok(())
        };
        let wanted: Vec<&str> = Some(self.raw.group_attribute.as_str())
            .filter(|a| !a.is_empty())
            .into_iter()
            .collect();
        let dn = if self.raw.user_dn.is_empty() {
            if !self.raw.bind_dn.is_empty() {
                service(&mut c)?;
            }
            let filter = self
                .raw
                .user_filter
                .replace("%u", &ldap::escape_filter_value(user));
            let found = c.search(&self.raw.base_dn, &filter, &wanted, 2)?;
            match found.as_slice() {
                [] => return Ok(None),
                [_] => found.into_iter().next().map(|e| e.dn).unwrap_or_default(),
                _ => return Err(format!("user_filter {filter} matches several entries")),
            }
        } else {
            self.raw.user_dn.replace("%u", &ldap::escape_dn_value(user))
        };
        let r = c.bind(&dn, password)?;
        match r.code {
            code::SUCCESS => {}
            code::INVALID_CREDENTIALS => return Ok(None),
            other => return Err(format!("bind as {dn}: code {other} {}", r.message)),
        }
        let mut groups = Vec::new();
        let name_attr = &self.raw.group_name_attribute;
        // Groups are read as the service account if there is one (a
        // directory may not show users their own memberOf), else as the
        // user.
        if !self.raw.bind_dn.is_empty() && (!wanted.is_empty() || !self.raw.group_filter.is_empty())
        {
            service(&mut c)?;
        }
        if let Some(attr) = wanted.first() {
            for e in c.search(&dn, "(objectClass=*)", &[attr], 1)? {
                for v in e.values(attr) {
                    let v = String::from_utf8_lossy(v);
                    let name = if v.contains('=') {
                        ldap::first_rdn_value(&v, name_attr)
                    } else {
                        Some(v.into_owned())
                    };
                    push(&mut groups, name);
                }
            }
        }
        if !self.raw.group_filter.is_empty() {
            let filter = self
                .raw
                .group_filter
                .replace("%D", &ldap::escape_filter_value(&dn))
                .replace("%u", &ldap::escape_filter_value(user));
            for e in c.search(&self.raw.group_base_dn, &filter, &[name_attr], 1000)? {
                let name = e
                    .values(name_attr)
                    .next()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .or_else(|| ldap::first_rdn_value(&e.dn, name_attr));
                push(&mut groups, name);
            }
        }
        c.close();
        Ok(Some(groups))
    }
}

fn push(groups: &mut Vec<String>, name: Option<String>) {
    if let Some(n) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        if !groups.contains(&n) {
            groups.push(n);
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(b),
            Self::Tls(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(b),
            Self::Tls(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// One connection to the server.
struct Client {
    stream: Option<Stream>,
    buf: Vec<u8>,
    next_id: u32,
}

impl Client {
    fn connect(cfg: &Ldap) -> Result<Self, String> {
        let addr = (cfg.host.as_str(), cfg.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving: {e}"))?
            .next()
            .ok_or("no address")?;
        let tcp = TcpStream::connect_timeout(&addr, cfg.timeout)
            .map_err(|e| format!("connecting: {e}"))?;
        tcp.set_read_timeout(Some(cfg.timeout))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(cfg.timeout))
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let mut c = Self {
            stream: Some(Stream::Plain(tcp)),
            buf: Vec::new(),
            next_id: 1,
        };
        let Some(tls) = &cfg.tls else {
            return Ok(c);
        };
        if cfg.raw.uri.starts_with("ldap://") {
            let id = c.id();
            c.send(&ldap::start_tls_request(id))?;
            match c.receive(id)? {
                Response::Extended(r) if r.code == code::SUCCESS => {}
                Response::Extended(r) => {
                    return Err(format!("StartTLS refused: code {} {}", r.code, r.message))
                }
                _ => return Err("StartTLS: an unexpected answer".into()),
            }
        }
        let name =
            rustls::pki_types::ServerName::try_from(cfg.host.clone()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
        let Some(Stream::Plain(tcp)) = c.stream.take() else {
            return Err("no connection".into());
        };
        c.stream = Some(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))));
        Ok(c)
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let s = self.stream.as_mut().ok_or("no connection")?;
        s.write_all(msg)
            .and_then(|()| s.flush())
            .map_err(|e| format!("sending: {e}"))
    }

    /// The next message for `id` (others are skipped).
    fn receive(&mut self, id: u32) -> Result<Response, String> {
        loop {
            if let Some(len) = ldap::message_len(&self.buf).map_err(|e| e.to_string())? {
                if self.buf.len() >= len {
                    let msg: Vec<u8> = self.buf.drain(..len).collect();
                    let (got, r) = ldap::decode(&msg).map_err(|e| e.to_string())?;
                    if got == id {
                        return Ok(r);
                    }
                    continue;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let s = self.stream.as_mut().ok_or("no connection")?;
            let n = s.read(&mut chunk).map_err(|e| format!("receiving: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn bind(&mut self, dn: &str, password: &str) -> Result<ldap::LdapResult, String> {
        let id = self.id();
        self.send(&ldap::bind_request(id, dn, password.as_bytes()))?;
        match self.receive(id)? {
            Response::Bind(r) => Ok(r),
            _ => Err("bind: an unexpected answer".into()),
        }
    }

    fn search(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        limit: u32,
    ) -> Result<Vec<Entry>, String> {
        let id = self.id();
        let req =
            ldap::search_request(id, base, filter, attrs, limit).map_err(|e| e.to_string())?;
        self.send(&req)?;
        let mut found = Vec::new();
        loop {
            match self.receive(id)? {
                Response::Entry(e) => found.push(e),
                Response::Reference | Response::Other(_) => {}
                Response::SearchDone(r) if r.code == code::SUCCESS => return Ok(found),
                // No such object: nothing found.
                Response::SearchDone(r) if r.code == 32 => return Ok(found),
                Response::SearchDone(r) => {
                    return Err(format!("search {filter}: code {} {}", r.code, r.message))
                }
                _ => return Err("search: an unexpected answer".into()),
            }
        }
    }

    fn close(&mut self) {
        let id = self.id();
        let _ = self.send(&ldap::unbind_request(id));
    }
}
