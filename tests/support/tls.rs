//! Certificates for TLS tests: a test CA and a server certificate it signs, valid for
//! `localhost` and `127.0.0.1`, so both `sslmode=require` and `verify-full` (libpq or rustls
//! with [`ServerCert::ca_path`] as the root) can be exercised.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files written next to each other; the names match PostgreSQL's defaults.
#[derive(Debug, Clone)]
pub struct ServerCert {
    dir: PathBuf,
    /// Keeps the directory of a [`ServerCert::throwaway`] alive as long as any clone.
    _owned: Option<Arc<tempfile::TempDir>>,
}

impl ServerCert {
    /// Writes `root.crt` (CA), `server.crt` and `server.key` (mode 0600, which the server
    /// requires of a key it owns) into `dir`.
    pub fn generate(dir: &Path) -> ServerCert {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pgshape test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("generate server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");

        let files = ServerCert {
            dir: dir.to_owned(),
            _owned: None,
        };
        std::fs::write(files.ca_path(), ca_cert.pem()).expect("write root.crt");
        // The chain (leaf then CA) so clients that only trust the CA can build the path.
        std::fs::write(
            files.cert_path(),
            format!("{}{}", cert.pem(), ca_cert.pem()),
        )
        .expect("write server.crt");
        std::fs::write(files.key_path(), key.serialize_pem()).expect("write server.key");
        std::fs::set_permissions(files.key_path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
        files
    }

    /// A fresh CA and server certificate in their own temp dir, removed when the last clone is
    /// dropped (e.g. for pgshape's client-side TLS: `tls_cert`/`tls_key`).
    pub fn throwaway() -> ServerCert {
        let dir = tempfile::Builder::new()
            .prefix("pgshape-cert-")
            .tempdir()
            .expect("create cert dir");
        let cert = ServerCert::generate(dir.path());
        ServerCert {
            _owned: Some(Arc::new(dir)),
            ..cert
        }
    }

    /// The CA certificate: the root to trust for `verify-ca`/`verify-full`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("root.crt")
    }

    /// Server certificate chain (PEM).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// Server private key (PEM, PKCS#8).
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}
