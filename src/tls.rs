//! TLS for the CSTP channel: certificate loading or generation, and the
//! facade over rustls's sans-IO `ServerConnection`. This is the only file
//! that names rustls connection types.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes a self-signed ECDSA P-256 certificate and key if neither exists.
/// Returns true if it generated them.
pub fn ensure_self_signed(cert: &Path, key: &Path) -> Result<bool, TlsSetupError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let host = hostname().unwrap_or_else(|| "localhost".into());
    let ck = rcgen::generate_simple_self_signed(vec![host, "localhost".into()])
        .map_err(|e| file_err(cert, format!("cannot generate a certificate: {e}")))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        }
    }
    write_private(key, ck.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, ck.cert.pem()).map_err(|e| file_err(cert, e))?;
    Ok(true)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsSetupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_err(path, e))?;
    f.write_all(data).map_err(|e| file_err(path, e))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A loaded certificate chain and key, ready for rustls.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_err(cert, format!("cannot read PEM certificates: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(cert, format!("bad PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(file_err(
                cert,
                "no certificate found (expected a PEM chain)",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            file_err(
                key,
                format!("no usable private key (expected PEM ECDSA or RSA): {e}"),
            )
        })?;
        Ok(Self { chain, key })
    }

    /// `pin-sha256:<base64>` of the key's SubjectPublicKeyInfo, the form
    /// `openconnect --servercert` takes.
    pub fn pin_sha256(&self) -> Result<String, TlsSetupError> {
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&self.key)?;
        let spki = signer.public_key().ok_or_else(|| {
            TlsSetupError::Rustls(rustls::Error::General("key type has no SPKI".into()))
        })?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.as_ref());
        Ok(format!("pin-sha256:{}", base64(digest.as_ref())))
    }

    /// The server's TLS configuration. With `client_ca`, clients are asked
    /// for a certificate, and one that does not chain to that CA fails the
    /// handshake; clients without one still get in, and the login decides
    /// whether it needed one.
    /// With `crl`, a client certificate the CA revoked fails too.
    pub fn server_config(
        &self,
        client_ca: Option<&Path>,
        crl: Option<&Path>,
    ) -> Result<Arc<ServerConfig>, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(load_ca(ca)?);
                let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .allow_unauthenticated();
                if let Some(crl) = crl {
                    // A CRL lists what is revoked: certificates of issuers
                    // it does not cover stay good, as with ocserv's `crl`.
                    verifier = verifier
                        .with_crls(load_crls(crl)?)
                        .only_check_end_entity_revocation()
                        .allow_unknown_revocation_status();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| file_err(ca, format!("unusable CA or CRL: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        Ok(Arc::new(builder.with_single_cert(
            self.chain.clone(),
            self.key.clone_key(),
        )?))
    }
}

/// The certificate revocation lists in a PEM file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| {
            file_err(
                path,
                format!("cannot read: {e} (expected a PEM file of CRLs)"),
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("bad PEM CRL: {e}")))?;
    if crls.is_empty() {
        return Err(file_err(
            path,
            "no CRL found (expected -----BEGIN X509 CRL-----)",
        ));
    }
    Ok(crls)
}

/// Checks that `crl` parses and fits `ca` (at start, so a broken file is
/// refused with its name rather than at the first login).
pub fn check_crls(ca: &Path, crl: &Path) -> Result<(), TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(load_ca(ca)?), provider)
        .with_crls(load_crls(crl)?)
        .build()
        .map(drop)
        .map_err(|e| file_err(crl, format!("unusable CRL: {e} (expected v2 CRLs in PEM)")))
}

/// The CA certificates in a PEM file.
pub fn load_ca(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            file_err(
                path,
                format!("cannot read: {e} (expected a PEM file of CA certificates)"),
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            file_err(
                path,
                format!("bad PEM certificate: {e} (expected CA certificates)"),
            )
        })?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| {
            file_err(
                path,
                format!("unusable CA certificate: {e} (expected X.509 CA certificates)"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(file_err(
            path,
            "no certificate found (expected a PEM file of CA certificates)",
        ));
    }
    Ok(roots)
}

pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    #[error("TLS: {0}")]
    Io(#[from] std::io::Error),
    #[error("CSTP frame of {0} bytes would not fit one TLS record")]
    FrameSplit(usize),
    #[error("TLS: the handshake has not chosen a connection yet")]
    Handshaking,
}

/// Each virtual host's certificate pin.
pub type HostPins = Vec<(Arc<str>, String)>;

/// The server's TLS configurations: the default one and one per virtual
/// host, chosen by the ClientHello's server name (SNI).
pub struct ServerTls {
    pub default: Arc<ServerConfig>,
    pub vhosts: Vec<(Arc<str>, Arc<ServerConfig>)>,
}

impl ServerTls {
    pub fn single(default: Arc<ServerConfig>) -> Self {
        Self {
            default,
            vhosts: Vec::new(),
        }
    }

    /// The certificates and client CAs of `config`'s default host and of
    /// each virtual host; also their pins, the default's first.
    pub fn load(config: &crate::config::Config) -> Result<(Self, String, HostPins), TlsSetupError> {
        let one = |c: &crate::config::Config| {
            let (t, a) = (&c.raw.tls, &c.raw.auth);
            let identity = Identity::load(&t.cert_file, &t.key_file)?;
            let pin = identity.pin_sha256()?;
            let server = identity.server_config(a.ca_file.as_deref(), a.crl_file.as_deref())?;
            Ok::<_, TlsSetupError>((server, pin))
        };
        let (default, pin) = one(config)?;
        let mut vhosts = Vec::new();
        let mut pins = Vec::new();
        for (name, c) in &config.vhosts {
            let (server, host_pin) = one(c)?;
            pins.push((name.clone(), host_pin));
            vhosts.push((name.clone(), server));
        }
        Ok((Self { default, vhosts }, pin, pins))
    }

    /// The virtual host named `sni` (case-insensitive), else the default
    /// (as ocserv: an unknown name gets the default host).
    fn pick(&self, sni: Option<&str>) -> (Option<Arc<str>>, Arc<ServerConfig>) {
        sni.and_then(|n| self.vhosts.iter().find(|(v, _)| v.eq_ignore_ascii_case(n)))
            .map_or((None, self.default.clone()), |(v, c)| {
                (Some(v.clone()), c.clone())
            })
    }
}

/// One client's TLS connection, driven by bytes the glue moves.
pub struct TlsSession {
    state: State,
    /// The virtual host the ClientHello named; `None`: the default.
    vhost: Option<Arc<str>>,
    /// An alert from a ClientHello refused before a connection existed.
    alert: Vec<u8>,
}

// The connection is the state for the life of a session: boxed, every
// record would take one more indirection.
#[allow(clippy::large_enum_variant)]
enum State {
    /// With virtual hosts: waiting for the ClientHello to pick one.
    Accepting(Box<rustls::server::Acceptor>, Arc<ServerTls>),
    Connected(ServerConnection),
    Failed,
}

/// What feeding ciphertext produced besides plaintext.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// The client sent close_notify.
    pub peer_closed: bool,
}

impl TlsSession {
    pub fn new(tls: Arc<ServerTls>) -> Result<Self, TlsError> {
        let state = if tls.vhosts.is_empty() {
            State::Connected(Self::connection(ServerConnection::new(
                tls.default.clone(),
            )?))
        } else {
            State::Accepting(Box::default(), tls)
        };
        Ok(Self {
            state,
            vhost: None,
            alert: Vec::new(),
        })
    }

    fn connection(mut conn: ServerConnection) -> ServerConnection {
        // Back-pressure is ours (bounded queue per tunnel); a limit here
        // would split a CSTP frame across records, which the client drops.
        conn.set_buffer_limit(None);
        conn
    }

    fn conn(&self) -> Option<&ServerConnection> {
        match &self.state {
            State::Connected(c) => Some(c),
            _ => None,
        }
    }

    fn conn_mut(&mut self) -> Result<&mut ServerConnection, TlsError> {
        match &mut self.state {
            State::Connected(c) => Ok(c),
            _ => Err(TlsError::Handshaking),
        }
    }

    /// The virtual host chosen by the client's server name; `None`: the
    /// default one.
    pub fn vhost(&self) -> Option<Arc<str>> {
        self.vhost.clone()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn().is_none_or(|c| c.is_handshaking())
    }

    /// Feeds received ciphertext; appends decrypted bytes to `plain`.
    /// On error, [`Self::take_outgoing`] may still hold an alert to send.
    pub fn feed(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Result<Fed, TlsError> {
        let mut fed = Fed::default();
        while !data.is_empty() {
            if let State::Accepting(acceptor, _) = &mut self.state {
                acceptor.read_tls(&mut data)?;
                self.accept()?;
                if matches!(self.state, State::Accepting(..)) {
                    continue;
                }
            } else {
                self.conn_mut()?.read_tls(&mut data)?;
            }
            let conn = self.conn_mut()?;
            let state = conn.process_new_packets()?;
            if state.plaintext_bytes_to_read() > 0 {
                let start = plain.len();
                plain.resize(start + state.plaintext_bytes_to_read(), 0);
                let n = conn.reader().read(&mut plain[start..])?;
                plain.truncate(start + n);
            }
            fed.peer_closed |= state.peer_has_closed();
        }
        Ok(fed)
    }

    /// Once the ClientHello is in: the virtual host it names, and the
    /// connection with that host's certificate and client CA.
    fn accept(&mut self) -> Result<(), TlsError> {
        let State::Accepting(acceptor, tls) = &mut self.state else {
            return Ok(());
        };
        let refused = |(e, mut alert): (rustls::Error, rustls::server::AcceptedAlert),
                       out: &mut Vec<u8>| {
            let _ = alert.write_all(out);
            e
        };
        let accepted = match acceptor.accept() {
            Ok(None) => return Ok(()),
            Ok(Some(a)) => a,
            Err(e) => {
                let e = refused(e, &mut self.alert);
                self.state = State::Failed;
                return Err(e.into());
            }
        };
        let (vhost, config) = tls.pick(accepted.client_hello().server_name());
        match accepted.into_connection(config) {
            Ok(conn) => {
                self.vhost = vhost;
                self.state = State::Connected(Self::connection(conn));
                Ok(())
            }
            Err(e) => {
                let e = refused(e, &mut self.alert);
                self.state = State::Failed;
                Err(e.into())
            }
        }
    }

    /// Queues plaintext (HTTP replies; may span records).
    pub fn write_plain(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.conn_mut()?.writer().write_all(data)?;
        Ok(())
    }

    /// Queues one whole CSTP frame as exactly one TLS record.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), TlsError> {
        if frame.len() > crate::proto::cstp::HEADER_LEN + crate::proto::cstp::MAX_PAYLOAD {
            return Err(TlsError::FrameSplit(frame.len()));
        }
        let n = self.conn_mut()?.writer().write(frame)?;
        if n != frame.len() {
            return Err(TlsError::FrameSplit(frame.len()));
        }
        Ok(())
    }

    pub fn wants_write(&self) -> bool {
        !self.alert.is_empty() || self.conn().is_some_and(|c| c.wants_write())
    }

    /// Moves queued ciphertext into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.alert);
        if let State::Connected(conn) = &mut self.state {
            while conn.wants_write() {
                if conn.write_tls(out).is_err() {
                    break;
                }
            }
        }
    }

    pub fn send_close_notify(&mut self) {
        if let State::Connected(conn) = &mut self.state {
            conn.send_close_notify();
        }
    }

    /// The session as GnuTLS describes one (what occtl shows), e.g.
    /// `(TLS1.3)-(ECDHE-X25519)-(AES-256-GCM)`.
    pub fn description(&self) -> String {
        let Some(c) = self.conn() else {
            return String::new();
        };
        let version = match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2",
            _ => "TLS",
        };
        let group = c
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()))
            .unwrap_or_default()
            .to_ascii_uppercase();
        let suite = c
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let cipher = if suite.contains("AES_256_GCM") {
            "AES-256-GCM"
        } else if suite.contains("AES_128_GCM") {
            "AES-128-GCM"
        } else if suite.contains("CHACHA20") {
            "CHACHA20-POLY1305"
        } else {
            "?"
        };
        format!("({version})-(ECDHE-{group})-({cipher})")
    }

    /// The client's certificate (DER), verified against the CA, if it sent one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.conn()?
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref())
    }

    /// The DTLS PSK (docs/protocol.md, "DTLS: PSK-NEGOTIATE"), from this
    /// connection.
    pub fn export_dtls_psk(&self) -> Result<[u8; 32], TlsError> {
        let conn = self.conn().ok_or(TlsError::Handshaking)?;
        Ok(conn.export_keying_material([0u8; 32], b"EXPORTER-openconnect-psk", None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    /// A rustls client talking to the facade; every CSTP frame written must
    /// arrive as exactly one TLS record.
    #[test]
    fn each_frame_is_one_record() {
        let dir = std::env::temp_dir().join(format!("ocu-tls-{}", std::process::id()));
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        assert!(ensure_self_signed(&cert, &key).unwrap());
        assert!(!ensure_self_signed(&cert, &key).unwrap());
        let id = Identity::load(&cert, &key).unwrap();
        assert!(id.pin_sha256().unwrap().starts_with("pin-sha256:"));
        let mut server = TlsSession::new(Arc::new(ServerTls::single(
            id.server_config(None, None).unwrap(),
        )))
        .unwrap();
        let mut client = test_client(&id);

        // Handshake by shuttling bytes.
        let mut plain = Vec::new();
        for _ in 0..10 {
            let mut c2s = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut c2s).unwrap();
            }
            server.feed(&c2s, &mut plain).unwrap();
            let mut s2c = Vec::new();
            server.take_outgoing(&mut s2c);
            let mut rd = &s2c[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets().unwrap();
            if !server.is_handshaking() && !client.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking());
        assert_eq!(server.export_dtls_psk().unwrap().len(), 32);

        // Sizes around the record boundary, including the largest frame.
        let sizes = [8usize, 9, 1400, 16383, 16384];
        for &n in &sizes {
            server.write_frame(&vec![0xab; n]).unwrap();
        }
        assert!(server.write_frame(&vec![0; 16385]).is_err());
        let mut wire = Vec::new();
        server.take_outgoing(&mut wire);
        // Count application-data records (type 23) on the wire.
        let mut records = 0;
        let mut rest = &wire[..];
        while rest.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if rest[0] == 23 {
                records += 1;
            }
            rest = &rest[5 + len..];
        }
        assert_eq!(records, sizes.len(), "one record per frame");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn test_client(id: &Identity) -> rustls::ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(id.chain[0].clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap()
    }
}
