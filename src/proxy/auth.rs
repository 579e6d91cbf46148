//! `auth_mode = scram_proxy`: pgshape authenticates the client itself with SCRAM-SHA-256
//! (offering `-PLUS` bound to its own certificate over TLS) and logs in upstream with the keys
//! the client's proof revealed — so channel binding works on the client leg, TLS works on both,
//! and no password is stored anywhere. The SCRAM messages are [`crate::protocol::scram`]; the
//! verifiers come from [`verifiers`].
//!
//! The default, `passthrough`, relays authentication untouched and needs none of this.

pub mod verifiers;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ring::rand::SystemRandom;
use serde::Deserialize;

use super::pump::{self, PumpError, Side};
use super::stream::{ClientStream, ServerStream};
use super::timer;
use super::tls::ClientCert;
use crate::config::Secret;
use crate::protocol::frame::{body, parse_header};
use crate::protocol::frontend::SaslInitialResponse;
use crate::protocol::scram::{
    self, ClientExchange, MECHANISM, MECHANISM_PLUS, ProvenKeys, ScramError, ServerExchange,
    Verifier,
};
use crate::protocol::{ProtocolError, encode};
use verifiers::{AuthFile, AuthQuery, Lookup, LookupError};

/// Largest authentication message accepted from either side (they are a few hundred bytes).
const MAX_AUTH_FRAME: usize = 16 * 1024;

/// How clients are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Authentication passes between client and server untouched.
    #[default]
    Passthrough,
    /// pgshape is the SCRAM server for clients and logs in upstream with the proven keys.
    ScramProxy,
}

/// The `[auth]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `"user" "SCRAM-SHA-256$..."` lines (pgbouncer's userlist.txt format).
    pub file: Option<std::path::PathBuf>,
    /// Connection for `query` (used when `file` has no line for the user, or without a file).
    pub dsn: Option<Secret>,
    /// Returns (name, verifier) for `$1`; pgbouncer recommends a SECURITY DEFINER function
    /// so the auth role needs no superuser.
    pub query: String,
    /// How long a query result (found or not) is reused.
    pub cache_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Passthrough,
            file: None,
            dsn: None,
            query: "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1".into(),
            cache_secs: 30,
        }
    }
}

/// Why `scram_proxy` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth_mode scram_proxy needs auth_file or auth_dsn to find SCRAM verifiers")]
    NoSource,
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// Everything a `scram_proxy` login needs, shared by all sessions.
pub(crate) struct ScramProxy {
    file: Option<AuthFile>,
    query: Option<AuthQuery>,
    /// pgshape's own certificate (when it terminates client TLS), for the
    /// `tls-server-end-point` channel binding; it follows a rotation (SIGHUP).
    client_cert: Option<Arc<ClientCert>>,
    random: SystemRandom,
    /// Keys the fake verifiers of unknown roles, so that they look like real ones and stay
    /// the same for one role (PostgreSQL's mock authentication).
    mock_key: ring::hmac::Key,
}

impl ScramProxy {
    pub(crate) fn new(
        config: &AuthConfig,
        client_cert: Option<Arc<ClientCert>>,
    ) -> Result<ScramProxy, AuthSetupError> {
        if config.file.is_none() && config.dsn.is_none() {
            return Err(AuthSetupError::NoSource);
        }
        let file = config.file.as_deref().map(AuthFile::open).transpose()?;
        let query = config
            .dsn
            .clone()
            .map(|dsn| {
                AuthQuery::new(
                    dsn,
                    config.query.clone(),
                    Duration::from_secs(config.cache_secs),
                )
            })
            .transpose()?;
        let random = SystemRandom::new();
        let mock_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &random)
            .map_err(|_| LookupError::Query("no system randomness".into()))?;
        Ok(ScramProxy {
            file,
            query,
            client_cert,
            random,
            mock_key,
        })
    }

    async fn lookup(&self, user: &str) -> Result<Lookup, LookupError> {
        if let Some(file) = &self.file {
            match file.lookup(user) {
                Lookup::Unknown if self.query.is_some() => {}
                found => return Ok(found),
            }
        }
        match &self.query {
            Some(query) => query.lookup(user).await,
            None => Ok(Lookup::Unknown),
        }
    }

    /// A verifier no password matches, stable per role name.
    fn mock_verifier(&self, user: &str) -> Verifier {
        let derive = |label: &str| {
            let tag = ring::hmac::sign(&self.mock_key, format!("{label}\0{user}").as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(&tag.as_ref()[..32]);
            out
        };
        Verifier {
            iterations: 4096,
            salt: derive("salt")[..16].to_vec(),
            stored_key: derive("stored"),
            server_key: derive("server"),
        }
    }
}

/// Runs the SCRAM server side of the login. `Ok(None)`: the client was refused (it has been
/// told why).
pub(crate) async fn authenticate_client(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    auth: &ScramProxy,
) -> Result<Option<ProvenKeys>, PumpError> {
    let io = |source| PumpError::Io {
        side: Side::Client,
        source,
    };
    let refuse = |code: &str, message: String, hint: Option<&str>| {
        encode::error_response("FATAL", code, &message, hint)
    };
    let (verifier, known) = match auth.lookup(user).await {
        Ok(Lookup::Found(verifier)) => (verifier, true),
        Ok(Lookup::Unknown) => (auth.mock_verifier(user), false),
        Ok(Lookup::NotScram(what)) => {
            tracing::warn!(user, what, "scram_proxy: the role has no SCRAM verifier");
            let fatal = refuse(
                "28000",
                format!(
                    "pgshape: role \"{user}\" has no SCRAM-SHA-256 password verifier ({what}); \
                     auth_mode scram_proxy needs one"
                ),
                Some(
                    "set password_encryption = 'scram-sha-256' on the server and set the role's \
                     password again, then refresh pgshape's auth_file",
                ),
            );
            client.write_all_flush(&fatal).await.map_err(io)?;
            return Ok(None);
        }
        Err(error) => {
            tracing::warn!(user, %error, "scram_proxy: verifier lookup failed");
            let fatal = refuse(
                "28000",
                format!("pgshape: cannot look up role \"{user}\": {error}"),
                None,
            );
            client.write_all_flush(&fatal).await.map_err(io)?;
            return Ok(None);
        }
    };
    let end_point = auth
        .client_cert
        .as_ref()
        .filter(|_| client.is_tls())
        .map(|cert| cert.end_point());
    let mechanisms: &[&str] = if end_point.is_some() {
        &[MECHANISM_PLUS, MECHANISM]
    } else {
        &[MECHANISM]
    };
    client
        .write_all_flush(&encode::authentication_sasl(mechanisms))
        .await
        .map_err(io)?;

    let initial = read_client_p(client, buf).await?;
    let sasl = SaslInitialResponse::decode(&initial).map_err(|error| PumpError::Protocol {
        side: Side::Client,
        error,
    })?;
    let (mechanism, first) = (sasl.mechanism, sasl.data);
    let server_nonce = scram::nonce(&auth.random);
    let (exchange, server_first) =
        match ServerExchange::start(verifier, end_point, mechanism, first, &server_nonce) {
            Ok(started) => started,
            Err(error) => return refuse_scram(client, user, &error).await,
        };
    client
        .write_all_flush(&encode::authentication(11, server_first.as_bytes()))
        .await
        .map_err(io)?;
    let response = read_client_p(client, buf).await?;
    match exchange.finish(body(&response)) {
        Ok((server_final, keys)) if known => {
            client
                .write_all_flush(&encode::authentication(12, server_final.as_bytes()))
                .await
                .map_err(io)?;
            Ok(Some(keys))
        }
        Ok(_) => refuse_scram(client, user, &ScramError::BadProof).await,
        Err(error) => refuse_scram(client, user, &error).await,
    }
}

async fn refuse_scram(
    client: &mut ClientStream,
    user: &str,
    error: &ScramError,
) -> Result<Option<ProvenKeys>, PumpError> {
    let fatal = match error {
        // PostgreSQL's own words, whether the role exists or not.
        ScramError::BadProof => encode::error_response(
            "FATAL",
            "28P01",
            &format!("password authentication failed for user \"{user}\""),
            None,
        ),
        ScramError::ChannelBinding(_) => {
            encode::error_response("FATAL", "28000", &format!("pgshape: {error}"), None)
        }
        _ => encode::error_response("FATAL", "08P01", &format!("pgshape: {error}"), None),
    };
    tracing::info!(user, %error, "scram_proxy: client authentication failed");
    let _ = client.write_all_flush(&fatal).await;
    Ok(None)
}

/// Why the upstream login failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    #[error(transparent)]
    Pump(#[from] PumpError),
    #[error(
        "the server asks for {0} authentication; scram_proxy logs in with SCRAM-SHA-256 (or trust) only"
    )]
    Unsupported(&'static str),
    #[error("logging in to the server: {0}")]
    Scram(#[from] ScramError),
    /// The server's own ErrorResponse, forwarded to the client as it is.
    #[error("the server refused the login")]
    Refused(BytesMut),
}

/// Sends the client's StartupMessage and logs in with `keys`. Returns the server's bytes from
/// AuthenticationOk on (NegotiateProtocolVersion and notices before it included), which the
/// relay then forwards as if the server had sent them to the client.
pub(crate) async fn login_upstream(
    server: &mut ServerStream,
    startup: &[u8],
    keys: ProvenKeys,
    auth: &ScramProxy,
) -> Result<BytesMut, LoginError> {
    let io = |source| PumpError::Io {
        side: Side::Server,
        source,
    };
    server.write_all_flush(startup).await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut passed = BytesMut::new();
    let mut exchange: Option<ClientExchange> = None;
    let mut keys = Some(keys);
    loop {
        let frame = read_frame(server, &mut buf, Side::Server).await?;
        match frame[0] {
            b'R' => {
                let mut data = body(&frame);
                if data.len() < 4 {
                    return Err(malformed(Side::Server, "Authentication", "no code").into());
                }
                let code = data.get_i32();
                match code {
                    0 => {
                        passed.extend_from_slice(&frame);
                        passed.extend_from_slice(&buf);
                        return Ok(passed);
                    }
                    10 => {
                        let offered = data.split(|&b| b == 0).any(|m| m == MECHANISM.as_bytes());
                        if !offered {
                            return Err(LoginError::Unsupported("a SASL mechanism other than"));
                        }
                        let Some(keys) = keys.take() else {
                            return Err(
                                malformed(Side::Server, "Authentication", "SASL twice").into()
                            );
                        };
                        let (started, first) =
                            ClientExchange::start(keys, &scram::nonce(&auth.random));
                        exchange = Some(started);
                        let message = encode::sasl_initial_response(MECHANISM, first.as_bytes());
                        server.write_all_flush(&message).await.map_err(io)?;
                    }
                    11 => {
                        let Some(exchange) = exchange.as_mut() else {
                            return Err(malformed(
                                Side::Server,
                                "Authentication",
                                "SASLContinue first",
                            )
                            .into());
                        };
                        let response = exchange.respond(data)?;
                        server
                            .write_all_flush(&encode::sasl_response(response.as_bytes()))
                            .await
                            .map_err(io)?;
                    }
                    12 => {
                        let Some(exchange) = exchange.as_ref() else {
                            return Err(malformed(
                                Side::Server,
                                "Authentication",
                                "SASLFinal first",
                            )
                            .into());
                        };
                        exchange.verify(data)?;
                    }
                    3 => return Err(LoginError::Unsupported("cleartext password")),
                    5 => return Err(LoginError::Unsupported("md5")),
                    _ => return Err(LoginError::Unsupported("this")),
                }
            }
            b'E' => return Err(LoginError::Refused(frame)),
            // NegotiateProtocolVersion, notices: the client would have seen them.
            _ => passed.extend_from_slice(&frame),
        }
    }
}

fn malformed(side: Side, message: &'static str, reason: &'static str) -> PumpError {
    PumpError::Protocol {
        side,
        error: ProtocolError::Malformed { message, reason },
    }
}

async fn read_client_p(
    client: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, PumpError> {
    let frame = read_frame(client, buf, Side::Client).await?;
    if frame[0] != b'p' {
        return Err(malformed(
            Side::Client,
            "SASLResponse",
            "expected a password message during authentication",
        ));
    }
    Ok(frame)
}

/// Reads one whole frame (at most [`MAX_AUTH_FRAME`] bytes) from either stream.
async fn read_frame<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    side: Side,
) -> Result<BytesMut, PumpError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let io = |source| PumpError::Io { side, source };
    loop {
        match parse_header(buf, MAX_AUTH_FRAME) {
            Ok(Some(header)) if buf.len() >= header.frame_len => {
                return Ok(buf.split_to(header.frame_len));
            }
            Ok(Some(header)) => {
                pump::read_at_least(stream, buf, header.frame_len)
                    .await
                    .map_err(io)?;
            }
            Ok(None) => {
                pump::read_at_least(stream, buf, 5).await.map_err(io)?;
            }
            Err(error) => return Err(PumpError::Protocol { side, error }),
        }
    }
}

/// How [`login`] ended.
pub(crate) enum Login {
    /// Logged in: the server's bytes from AuthenticationOk on.
    Done(BytesMut),
    /// The client has been told why, and both connections are closed.
    Refused,
    /// The server did not finish the login in time.
    TimedOut,
}

/// [`login_upstream`] within `timeout`, telling the client when it fails.
pub(crate) async fn login(
    client: &mut ClientStream,
    server: &mut ServerStream,
    startup: &[u8],
    keys: ProvenKeys,
    auth: &ScramProxy,
    timeout: Duration,
    who: &dyn std::fmt::Display,
) -> Login {
    match timer::timeout(timeout, login_upstream(server, startup, keys, auth)).await {
        Ok(Ok(from_auth_ok)) => Login::Done(from_auth_ok),
        Ok(Err(error)) => {
            tracing::warn!(%error, %who, "scram_proxy: upstream login failed");
            if let Some(fatal) = login_failure(error) {
                let _ = client.write_all_flush(&fatal).await;
            }
            server.shutdown().await;
            client.shutdown().await;
            Login::Refused
        }
        Err(_) => Login::TimedOut,
    }
}

/// The FATAL error a client gets when the upstream login failed (the server's own error is
/// forwarded as it is).
fn login_failure(error: LoginError) -> Option<BytesMut> {
    match error {
        LoginError::Refused(frame) => Some(frame),
        LoginError::Pump(PumpError::Io { .. }) => None,
        other => Some(encode::error_response(
            "FATAL",
            "28000",
            &format!("pgshape: {other}"),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_proxy_needs_a_source_of_verifiers() {
        assert!(matches!(
            ScramProxy::new(&AuthConfig::default(), None),
            Err(AuthSetupError::NoSource)
        ));
    }

    #[test]
    fn unknown_roles_get_a_stable_fake_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userlist.txt");
        std::fs::write(&path, "").unwrap();
        let auth = ScramProxy::new(
            &AuthConfig {
                mode: AuthMode::ScramProxy,
                file: Some(path),
                ..AuthConfig::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(auth.mock_verifier("ghost"), auth.mock_verifier("ghost"));
        assert_ne!(
            auth.mock_verifier("ghost").salt,
            auth.mock_verifier("other").salt
        );
    }
}
