//! Small raw clients for what openconnect never does: sockets made inside
//! a test's namespace from the test process, and a blocking TLS client
//! that speaks HTTP by hand (dripping requests, piling up connections,
//! a second login on one connection).
#![allow(unreachable_pub)] // a helper module of test crates

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// Runs `f` on a thread that has entered network namespace `ns`; sockets it
/// makes stay in that namespace wherever they are used afterwards.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
            // SAFETY: setns on a namespace descriptor; affects this thread only.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// A TCP connection made from namespace `ns`.
pub fn tcp_in(ns: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    in_ns(ns, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
}

/// A UDP socket bound in namespace `ns` (port chosen by the kernel).
pub fn udp_in(ns: &str) -> UdpSocket {
    in_ns(ns, || UdpSocket::bind("0.0.0.0:0").expect("udp bind"))
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A blocking TLS connection to the server.
pub struct RawTls {
    pub stream: StreamOwned<ClientConnection, TcpStream>,
}

/// An HTTP response as read by [`RawTls::response`].
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawTls {
    /// Connects from namespace `ns` and completes the TLS handshake.
    pub fn connect(ns: &str, addr: SocketAddr) -> std::io::Result<Self> {
        Self::connect_after(ns, addr, &[])
    }

    /// The same, writing `preamble` (a PROXY header) before TLS.
    pub fn connect_after(ns: &str, addr: SocketAddr, preamble: &[u8]) -> std::io::Result<Self> {
        let mut tcp = tcp_in(ns, addr)?;
        tcp.write_all(preamble)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        let name = ServerName::IpAddress(addr.ip().into());
        let conn = ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?;
        let mut s = Self {
            stream: StreamOwned::new(conn, tcp),
        };
        while s.stream.conn.is_handshaking() {
            s.stream.conn.complete_io(&mut s.stream.sock)?;
        }
        Ok(s)
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// A `POST /` with a urlencoded body (the client's no-XML login form).
    pub fn post_form(&mut self, body: &str) -> std::io::Result<()> {
        let req = format!(
            "POST / HTTP/1.1\r\nHost: vpn\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(req.as_bytes())
    }

    /// Reads one response (head and Content-Length body); `None` when the
    /// server closed the connection first.
    pub fn response(&mut self) -> Option<Reply> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => return None,
            }
            if buf.len() > 64 * 1024 {
                return None;
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).ok()?;
        Some(Reply { status, head, body })
    }

    /// Waits until the server closes the connection (EOF or reset), for at
    /// most `limit`; returns how long that took, or `None` if it stayed open.
    pub fn wait_closed(&mut self, limit: Duration) -> Option<Duration> {
        let _ = self
            .stream
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)));
        wait_tcp_closed(&mut self.stream, limit)
    }
}

/// Reads and discards until EOF or an error; `None` if still open at
/// `limit`. The reader should have a short read timeout.
pub fn wait_tcp_closed(r: &mut impl Read, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match r.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// The `webvpn` cookie of a successful login reply.
pub fn cookie_of(reply: &Reply) -> Option<String> {
    reply.head.lines().find_map(|l| {
        let v = l.strip_prefix("Set-Cookie: webvpn=")?;
        Some(v.split(';').next()?.to_owned())
    })
}

/// Logs in with `user`/`password` on a new connection; returns the cookie.
pub fn login_cookie(ns: &str, addr: SocketAddr, user: &str, password: &str) -> String {
    let mut c = RawTls::connect(ns, addr).expect("TLS to the server");
    c.post_form(&format!("username={user}&password={password}"))
        .unwrap();
    let reply = c.response().expect("a login reply");
    cookie_of(&reply).unwrap_or_else(|| panic!("no cookie in:\n{}", reply.head))
}

impl RawTls {
    /// Sends `CONNECT /CSCOSSLC/tunnel` with `cookie` (CSTP only).
    pub fn connect_tunnel(&mut self, cookie: &str) -> Option<Reply> {
        self.connect_tunnel_with(cookie, "")
    }

    /// The same with `extra` header lines (each ending in CRLF).
    pub fn connect_tunnel_with(&mut self, cookie: &str, extra: &str) -> Option<Reply> {
        let req = format!(
            "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-3\r\nCookie: webvpn={cookie}\r\nX-CSTP-Version: 1\r\nX-CSTP-Base-MTU: 1400\r\nX-CSTP-Address-Type: IPv4\r\n{extra}\r\n"
        );
        self.send(req.as_bytes()).ok()?;
        self.response()
    }
}

/// Every value of a header in a reply head, in order.
pub fn headers<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
    reply
        .head
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A header's value in a reply head.
pub fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Captures, in namespace `ns`, the payload of the first IPv4 UDP datagram
/// to port `dport` that `want` accepts, sent or received, within `limit`.
/// The packet socket is open once `ready` returns, so start the sender in it.
pub fn capture_udp(
    ns: &str,
    dport: u16,
    limit: Duration,
    want: impl Fn(&[u8]) -> bool + Send + Sync,
    ready: impl FnOnce() + Send,
) -> Option<Vec<u8>> {
    let udp_payload = move |ip: &[u8]| -> Option<Vec<u8>> {
        if ip.len() < 28 || ip[0] >> 4 != 4 || ip[9] != 17 {
            return None;
        }
        let udp = &ip[usize::from(ip[0] & 15) * 4..];
        if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != dport {
            return None;
        }
        Some(udp[8..].to_vec()).filter(|p| want(p))
    };
    capture_ip(ns, limit, |ip| udp_payload(ip).is_some(), ready).and_then(|ip| udp_payload(&ip))
}

/// Captures, in namespace `ns`, the first IPv4 packet (whole) that `want`
/// accepts, sent or received, within `limit`.
pub fn capture_ip(
    ns: &str,
    limit: Duration,
    want: impl Fn(&[u8]) -> bool + Send,
    ready: impl FnOnce() + Send,
) -> Option<Vec<u8>> {
    in_ns(ns, move || {
        // ETH_P_ALL: only those taps see the packets a namespace sends.
        // SAFETY: a plain socket(2) call; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM,
                i32::from((libc::ETH_P_ALL as u16).to_be()),
            )
        };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a timeval of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        ready();
        let start = Instant::now();
        let mut buf = vec![0u8; 65536];
        while start.elapsed() < limit {
            // SAFETY: recv into a buffer of the length given.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else { continue };
            let ip = &buf[..n];
            if ip.len() >= 20 && ip[0] >> 4 == 4 && want(ip) {
                return Some(ip.to_vec());
            }
        }
        None
    })
}
