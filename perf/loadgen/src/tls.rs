//! rustls client driven by hand over a monoio TCP stream (monoio-rustls
//! hides the connection, and we need it for the DTLS exporter), and a
//! verifier that trusts the server by SPKI pin like `openconnect --servercert`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

const READ_BUF: usize = 64 * 1024;

pub(crate) fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Accepts the server whose public key hashes to `pin` (None: any server).
#[derive(Debug)]
struct PinVerifier {
    pin: Option<String>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("bad server certificate: {e}")))?;
        let spki = cert.subject_public_key_info();
        let got = pin_of_spki(spki.as_ref());
        if &got == pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server key is {got}, expected {pin}"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `pin-sha256:<base64 of SHA-256(SPKI DER)>`.
pub(crate) fn pin_of_spki(spki: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    format!("pin-sha256:{}", base64(d.as_ref()))
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A client certificate chain and its key, for certificate logins.
pub(crate) type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Reads a PEM certificate (chain) and key.
pub(crate) fn load_client_cert(cert: &Path, key: &Path) -> Result<ClientCert, String> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect();
    let chain = chain.map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((chain, key))
}

/// `pin` is `pin-sha256:...` or None with `insecure`; `cert` is offered
/// when the server asks for one.
pub(crate) fn client_config(
    pin: Option<String>,
    cert: Option<ClientCert>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let algs = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier { pin, algs }));
    let cfg = match cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// TCP connect, optionally from a chosen local address.
pub(crate) async fn tcp_connect(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = src else {
        return TcpStream::connect_addr(addr).await;
    };
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    // Lets many sockets share a source address until connect picks the port.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local for the duration of the call.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.set_nonblocking(true)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let probe = s.try_clone()?;
    let stream = TcpStream::from_std(s.into())?;
    stream.writable(false).await?;
    if let Some(e) = probe.take_error()? {
        return Err(e);
    }
    // io_uring would hand EAGAIN back on a non-blocking socket.
    probe.set_nonblocking(false)?;
    Ok(stream)
}

/// A TLS client connection during the HTTP phase; `plain` collects what
/// the server sent that nobody consumed yet.
pub(crate) struct TlsConn {
    pub(crate) tcp: TcpStream,
    pub(crate) tls: ClientConnection,
    pub(crate) plain: Vec<u8>,
    rbuf: Option<Vec<u8>>,
}

impl TlsConn {
    pub(crate) async fn connect(
        addr: SocketAddr,
        src: Option<IpAddr>,
        cfg: Arc<ClientConfig>,
    ) -> io::Result<Self> {
        let tcp = tcp_connect(addr, src).await?;
        tcp.set_nodelay(true)?;
        let tls =
            ClientConnection::new(cfg, ServerName::IpAddress(addr.ip().into())).map_err(io_err)?;
        let mut c = Self {
            tcp,
            tls,
            plain: Vec::new(),
            rbuf: Some(Vec::with_capacity(READ_BUF)),
        };
        while c.tls.is_handshaking() {
            c.flush().await?;
            if c.tls.is_handshaking() && !c.read_more().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed during TLS handshake",
                ));
            }
        }
        c.flush().await?;
        Ok(c)
    }

    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = Vec::new();
            self.tls.write_tls(&mut out)?;
            let (r, _) = self.tcp.write_all(out).await;
            r?;
        }
        Ok(())
    }

    /// One socket read fed to rustls; false at EOF.
    async fn read_more(&mut self) -> io::Result<bool> {
        let mut buf = self
            .rbuf
            .take()
            .unwrap_or_else(|| Vec::with_capacity(READ_BUF));
        buf.clear();
        let (r, buf) = self.tcp.read(buf).await;
        let res = r.and_then(|n| {
            if n == 0 {
                Ok(false)
            } else {
                feed(&mut self.tls, &buf[..n], &mut self.plain).map(|()| true)
            }
        });
        self.rbuf = Some(buf);
        res
    }

    pub(crate) async fn write_plain(&mut self, data: &[u8]) -> io::Result<()> {
        self.tls.writer().write_all(data)?;
        self.flush().await
    }

    /// Waits until `plain` holds more bytes; false at EOF.
    pub(crate) async fn read_plain(&mut self) -> io::Result<bool> {
        let before = self.plain.len();
        while self.plain.len() == before {
            if !self.read_more().await? {
                return Ok(false);
            }
            self.flush().await?;
        }
        Ok(true)
    }

    /// The DTLS PSK (docs/protocol.md, "DTLS: PSK-NEGOTIATE").
    pub(crate) fn export_psk(&self) -> io::Result<[u8; 32]> {
        self.tls
            .export_keying_material([0u8; 32], b"EXPORTER-openconnect-psk", None)
            .map_err(io_err)
    }
}

/// Feeds received TLS bytes to rustls, appending plaintext to `plain`.
pub(crate) fn feed(
    tls: &mut ClientConnection,
    mut data: &[u8],
    plain: &mut Vec<u8>,
) -> io::Result<()> {
    while !data.is_empty() {
        tls.read_tls(&mut data)?;
        let st = tls.process_new_packets().map_err(io_err)?;
        let n = st.plaintext_bytes_to_read();
        if n > 0 {
            let at = plain.len();
            plain.resize(at + n, 0);
            tls.reader().read_exact(&mut plain[at..])?;
        }
        if st.peer_has_closed() && n == 0 && !data.is_empty() {
            break;
        }
    }
    Ok(())
}
