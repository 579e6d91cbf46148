//! SCRAM-SHA-256 (RFC 5802, RFC 7677, PostgreSQL's profile of it) on both sides of pgshape,
//! without a password anywhere.
//!
//! Why: with TLS on both legs, channel binding cannot pass through a proxy (each leg has its own
//! certificate), so in `auth_mode = scram_proxy` pgshape is the SCRAM server for the client —
//! offering `-PLUS` bound to its own certificate — and a SCRAM client for PostgreSQL. It only
//! holds the role's *verifier* (`SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`, what
//! `pg_authid.rolpassword` stores): a client's proof reveals its `ClientKey`, and `ClientKey`
//! plus `StoredKey` are exactly what the upstream login needs. pgbouncer does the same.
//!
//! Pure message handling: no sockets, no clocks; the caller supplies nonces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac};

pub const MECHANISM: &str = "SCRAM-SHA-256";
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel binding type PostgreSQL implements.
const CBIND_TYPE: &str = "tls-server-end-point";
/// PostgreSQL's nonce length in raw bytes (before base64).
pub const NONCE_BYTES: usize = 18;

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the password verifier is not SCRAM-SHA-256 ({0})")]
    NotScram(&'static str),
    #[error("channel binding: {0}")]
    ChannelBinding(&'static str),
    #[error("the client's proof does not match")]
    BadProof,
    #[error("the server's signature does not match: it does not know this role's verifier")]
    BadServerSignature,
    #[error(
        "the server's salt or iteration count differs from the verifier pgshape has for this role \
         (the password was changed on the server: refresh auth_file)"
    )]
    VerifierMismatch,
    #[error("the server answered with an error: {0}")]
    ServerError(String),
}

/// A role's stored SCRAM secrets, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

// Keys are secrets: never in logs or Debug output.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
    ///
    /// # Errors
    /// [`ScramError::NotScram`] naming what the text is instead (an md5 hash, plain text, ...).
    pub fn parse(text: &str) -> Result<Verifier, ScramError> {
        let Some(rest) = text.strip_prefix("SCRAM-SHA-256$") else {
            return Err(ScramError::NotScram(
                if text.starts_with("md5") && text.len() == 35 {
                    "an md5 hash"
                } else {
                    "not a SCRAM-SHA-256$... verifier"
                },
            ));
        };
        let bad = ScramError::NotScram("a malformed SCRAM-SHA-256 verifier");
        let (params, keys) = rest.split_once('$').ok_or(bad.clone())?;
        let (iterations, salt) = params.split_once(':').ok_or(bad.clone())?;
        let (stored, server) = keys.split_once(':').ok_or(bad.clone())?;
        let key = |s: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(s)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or(bad.clone())
        };
        Ok(Verifier {
            iterations: iterations
                .parse()
                .ok()
                .filter(|&i| i > 0)
                .ok_or(bad.clone())?,
            salt: B64.decode(salt).map_err(|_| bad.clone())?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// The verifier PostgreSQL would store for `password` (tests and tooling; pgshape itself
    /// never sees a password).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN),
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// The `pg_authid.rolpassword` text form.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// What a successful client exchange yields: enough to log in upstream as that client.
#[derive(Clone)]
pub struct ProvenKeys {
    pub client_key: [u8; 32],
    pub verifier: Verifier,
}

impl std::fmt::Debug for ProvenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProvenKeys { .. }")
    }
}

/// pgshape as the SCRAM server of one client login.
pub struct ServerExchange {
    verifier: Verifier,
    /// `tls-server-end-point` data of pgshape's certificate when the client is on TLS.
    end_point: Option<Vec<u8>>,
    client_first_bare: String,
    gs2_header: String,
    binds: bool,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Handles the SASLInitialResponse (`mechanism`, `client_first`) and returns the exchange
    /// and the server-first-message to send. `server_nonce` is fresh random printable text.
    ///
    /// # Errors
    /// A malformed message or a channel-binding downgrade.
    pub fn start(
        verifier: Verifier,
        end_point: Option<Vec<u8>>,
        mechanism: &[u8],
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(ServerExchange, String), ScramError> {
        let plus = match mechanism {
            m if m == MECHANISM.as_bytes() => false,
            m if m == MECHANISM_PLUS.as_bytes() => true,
            _ => return Err(ScramError::Malformed("unsupported SASL mechanism")),
        };
        if plus && end_point.is_none() {
            return Err(ScramError::ChannelBinding(
                "SCRAM-SHA-256-PLUS was chosen but the connection is not TLS",
            ));
        }
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first-message is not UTF-8"))?;
        // gs2-header: flag "," [authzid] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "an authorization identity is not supported",
            ));
        }
        let binds = match flag {
            "n" if !plus => false,
            // The client could bind but believes the server cannot: with -PLUS on offer this is
            // the downgrade RFC 5802 tells the server to refuse.
            "y" if !plus && end_point.is_some() => {
                return Err(ScramError::ChannelBinding(
                    "the client supports channel binding but was offered none (downgrade)",
                ));
            }
            "y" if !plus => false,
            f if f.strip_prefix("p=") == Some(CBIND_TYPE) && plus => true,
            f if f.starts_with("p=") && plus => {
                return Err(ScramError::ChannelBinding(
                    "only tls-server-end-point is supported",
                ));
            }
            _ => {
                return Err(ScramError::ChannelBinding(
                    "the gs2 flag does not match the chosen mechanism",
                ));
            }
        };
        let client_nonce = attribute(bare, "r").ok_or(ScramError::Malformed("no nonce"))?;
        if !bare.starts_with("n=") {
            return Err(ScramError::Malformed(
                "client-first-message has no n= attribute",
            ));
        }
        if !is_printable(client_nonce) {
            return Err(ScramError::Malformed("the client nonce is not printable"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let gs2_header = format!("{flag},{authzid},");
        Ok((
            ServerExchange {
                verifier,
                end_point,
                client_first_bare: bare.to_owned(),
                gs2_header,
                binds,
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final-message; returns the server-final-message and the proven keys.
    ///
    /// # Errors
    /// A wrong proof ([`ScramError::BadProof`]), wrong binding data or nonce, a malformed
    /// message.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, ProvenKeys), ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final-message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let binding = attribute(without_proof, "c").ok_or(ScramError::Malformed("no c="))?;
        let mut expected = self.gs2_header.as_bytes().to_vec();
        if self.binds {
            expected.extend_from_slice(self.end_point.as_deref().unwrap_or_default());
        }
        if B64.decode(binding).ok().as_deref() != Some(&expected[..]) {
            return Err(ScramError::ChannelBinding(
                "the channel binding data does not match pgshape's certificate",
            ));
        }
        if attribute(without_proof, "r") != Some(&self.nonce) {
            return Err(ScramError::Malformed("the nonce does not match"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("the proof is not 32 base64 bytes"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &signature);
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok((
            format!("v={}", B64.encode(server_signature)),
            ProvenKeys {
                client_key,
                verifier: self.verifier,
            },
        ))
    }
}

/// pgshape logging in to PostgreSQL as a client whose keys it proved.
pub struct ClientExchange {
    keys: ProvenKeys,
    client_first_bare: String,
    nonce: String,
    auth_message: Option<String>,
}

/// The gs2 header pgshape sends upstream: no channel binding (`n`). The server's own
/// certificate is verified by TLS (`upstream_sslmode=verify-full`); binding would add nothing
/// that pgshape, which holds the keys, needs.
const UPSTREAM_GS2: &str = "n,,";

impl ClientExchange {
    /// The client-first-message for the SASLInitialResponse.
    pub fn start(keys: ProvenKeys, client_nonce: &str) -> (ClientExchange, String) {
        let client_first_bare = format!("n=,r={client_nonce}");
        let first = format!("{UPSTREAM_GS2}{client_first_bare}");
        (
            ClientExchange {
                keys,
                client_first_bare,
                nonce: client_nonce.to_owned(),
                auth_message: None,
            },
            first,
        )
    }

    /// Answers the server-first-message with the client-final-message.
    ///
    /// # Errors
    /// A malformed message, a nonce that does not extend ours, or a salt/iteration count other
    /// than the verifier's ([`ScramError::VerifierMismatch`]).
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first-message is not UTF-8"))?;
        let nonce = attribute(text, "r").ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed(
                "the server nonce does not extend ours",
            ));
        }
        let salt = attribute(text, "s")
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: u32 = attribute(text, "i")
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("no iteration count"))?;
        if salt != self.keys.verifier.salt || iterations != self.keys.verifier.iterations {
            return Err(ScramError::VerifierMismatch);
        }
        let without_proof = format!("c={},r={nonce}", B64.encode(UPSTREAM_GS2));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&self.keys.verifier.stored_key, auth_message.as_bytes());
        let proof = xor(&self.keys.client_key, &signature);
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final-message: the server proves it knows the verifier too.
    ///
    /// # Errors
    /// An `e=` error from the server, or a signature that does not match.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final-message is not UTF-8"))?;
        if let Some(error) = attribute(text, "e") {
            return Err(ScramError::ServerError(error.to_owned()));
        }
        let auth_message = self
            .auth_message
            .as_ref()
            .ok_or(ScramError::Malformed("server-final before server-first"))?;
        let expected = hmac_sha256(&self.keys.verifier.server_key, auth_message.as_bytes());
        match attribute(text, "v").and_then(|v| B64.decode(v).ok()) {
            Some(v) if constant_time_eq(&v, &expected) => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

/// `tls-server-end-point` channel binding data (RFC 5929): the hash of the certificate's DER,
/// with SHA-256 unless its signature uses SHA-384 or SHA-512 (MD5 and SHA-1 become SHA-256).
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    let algorithm = match signature_hash(cert_der) {
        Some(SignatureHash::Sha384) => &digest::SHA384,
        Some(SignatureHash::Sha512) => &digest::SHA512,
        _ => &digest::SHA256,
    };
    digest::digest(algorithm, cert_der).as_ref().to_vec()
}

enum SignatureHash {
    Sha384,
    Sha512,
}

/// The hash of a certificate's outer signatureAlgorithm, read from its DER.
fn signature_hash(der: &[u8]) -> Option<SignatureHash> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, .. }, .. }
    let (_, certificate, _) = der_item(der)?;
    let (_, _, after_tbs) = der_item(certificate)?;
    let (_, algorithm, _) = der_item(after_tbs)?;
    let (tag, oid, _) = der_item(algorithm)?;
    if tag != 0x06 {
        return None;
    }
    const SHA384_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    if SHA384_OIDS.contains(&oid) {
        Some(SignatureHash::Sha384)
    } else if SHA512_OIDS.contains(&oid) {
        Some(SignatureHash::Sha512)
    } else {
        None
    }
}

/// One DER item: (tag, contents, what follows).
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A fresh nonce: `NONCE_BYTES` random bytes in base64 (printable, no comma).
pub fn nonce(random: &dyn ring::rand::SecureRandom) -> String {
    let mut raw = [0u8; NONCE_BYTES];
    // SystemRandom fails only if the OS has no randomness at all.
    random.fill(&mut raw).expect("system randomness");
    B64.encode(raw)
}

/// The value of `name=` in a comma-separated SCRAM attribute list.
fn attribute<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
