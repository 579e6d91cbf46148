//! TLS set-up: the acceptor for clients (`tls_cert`/`tls_key`, re-read on SIGHUP) and the
//! connector towards the server (libpq's `sslmode` semantics). Uses rustls with the ring
//! provider and its safe defaults: TLS 1.2 and 1.3 only, no CBC or RSA key exchange.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Errors loading certificates or building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { path: String, what: &'static str },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    BadSslMode(String),
}

/// libpq's `sslmode` for the link to the server (`allow` behaves like `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::BadSslMode(other.to_owned())),
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            path: path.display().to_string(),
            what: "PEM private key",
        })
}

/// The certificate and key offered to clients, re-read from their files on SIGHUP so a
/// rotated certificate is served without a restart. Handshakes in flight keep the pair they
/// started with; established sessions are not touched.
#[derive(Debug)]
pub struct ClientCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ClientCert {
    fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
        // from_der also checks that the key belongs to the certificate: a half-rotated pair
        // (new certificate, old key) is refused instead of failing every handshake.
        let pair = CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, &provider())?;
        Ok(Arc::new(pair))
    }

    /// Reads both files again and serves the new pair to new handshakes.
    ///
    /// # Errors
    /// Unreadable or empty files, or a key that does not match the certificate; the pair in
    /// use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = Self::load(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
        Ok(())
    }
}

impl ResolvesServerCert for ClientCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl ClientCert {
    /// `tls-server-end-point` channel binding data of the certificate served now (SCRAM
    /// `-PLUS` in `auth_mode = scram_proxy`), so binding follows a rotated certificate.
    pub fn end_point(&self) -> Vec<u8> {
        let pair = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        pair.cert
            .first()
            .map(|cert| crate::protocol::scram::tls_server_end_point(cert))
            .unwrap_or_default()
    }
}

/// The acceptor that terminates client TLS, and the handle that reloads its certificate.
/// TLS 1.2 and 1.3 only, with rustls's default (forward-secret, AEAD-only) cipher suites.
///
/// # Errors
/// Unreadable or empty PEM files, or a key that does not match the certificate.
pub fn acceptor(cert: &Path, key: &Path) -> Result<(TlsAcceptor, Arc<ClientCert>), TlsError> {
    let pair = Arc::new(ClientCert {
        current: RwLock::new(ClientCert::load(cert, key)?),
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(pair.clone());
    Ok((TlsAcceptor::from(Arc::new(config)), pair))
}

/// The connector towards the server for `mode` (`None` for `disable`).
///
/// `require` and `prefer` encrypt without checking the certificate, as libpq does when no root
/// certificate is given; `verify-ca` checks the chain but not the host name; `verify-full`
/// checks both, against `root_cert` or the system's roots.
///
/// # Errors
/// An unreadable CA file.
pub fn connector(
    mode: SslMode,
    root_cert: Option<&Path>,
) -> Result<Option<TlsConnector>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(root_cert)?);
            if mode == SslMode::VerifyCa {
                let inner =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                        .build()
                        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                    .with_no_client_auth()
            } else {
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        }
    };
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

fn root_store(root_cert: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed system certificate should not disable TLS altogether.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// `sslmode=require`: encryption without authentication, on purpose.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
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

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
