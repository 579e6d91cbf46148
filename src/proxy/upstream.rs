//! Where the PostgreSQL server is and how to reach it: `host:port` or a `postgres://` URL with
//! `sslmode`/`sslrootcert`, TCP connect with a deadline, and SSLRequest negotiation.

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::keepalive::Keepalive;
use super::stream::ServerStream;
use super::timer;
use super::tls::{self, SslMode, TlsError};
use crate::config::Config;

/// Why the server could not be reached. The message is shown to the client in a FATAL error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid upstream {value:?}: {reason}")]
    Invalid { value: String, reason: String },
    #[error("could not connect to upstream {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("could not connect to upstream {target}: timed out after {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("upstream {target} accepted the connection but did not answer within {timeout:?}")]
    NoAnswer { target: String, timeout: Duration },
    #[error("upstream {target} does not support SSL, but sslmode={mode} requires it")]
    SslRefused { target: String, mode: &'static str },
    #[error("TLS handshake with upstream {target} failed: {source}")]
    Handshake {
        target: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The resolved upstream settings, built once at start-up.
#[derive(Clone)]
pub struct Upstream {
    host: String,
    port: u16,
    mode: SslMode,
    connector: Option<TlsConnector>,
    keepalive: Option<Keepalive>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} (sslmode {:?})", self.host, self.port, self.mode)
    }
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl Upstream {
    /// Reads `upstream`, `upstream_sslmode` and `upstream_sslrootcert` from the config; settings
    /// in a URL win over the separate keys.
    ///
    /// # Errors
    /// A malformed address or URL, an unknown sslmode, an unreadable CA file.
    pub fn from_config(config: &Config) -> Result<Upstream, UpstreamError> {
        let target = parse_target(&config.upstream)?;
        let mode_text = target
            .sslmode
            .clone()
            .or_else(|| config.upstream_sslmode.clone())
            .unwrap_or_else(|| "disable".into());
        let mode: SslMode = mode_text.parse()?;
        let root = target
            .sslrootcert
            .clone()
            .map(std::path::PathBuf::from)
            .or_else(|| config.upstream_sslrootcert.clone());
        let connector = tls::connector(mode, root.as_deref())?;
        Ok(Upstream {
            host: target.host,
            port: target.port,
            mode,
            connector,
            keepalive: Keepalive::from_config(config),
        })
    }

    /// The server's host name or address, as configured.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, for messages.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Runs one connect step under the overall deadline, naming the upstream in its errors.
    async fn step<T>(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
        io: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, UpstreamError> {
        timer::timeout_at(deadline, io)
            .await
            .map_err(|_| UpstreamError::Timeout {
                target: self.target(),
                timeout,
            })?
            .map_err(|source| UpstreamError::Connect {
                target: self.target(),
                source,
            })
    }

    async fn tcp(&self, timeout: Duration) -> Result<TcpStream, UpstreamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = self.step(deadline, timeout, connect).await?;
        // Latency matters more than packet count for request/response traffic.
        let _ = stream.set_nodelay(true);
        if let Some(keepalive) = &self.keepalive {
            keepalive.apply(&stream);
        }
        Ok(stream)
    }

    /// Opens a server connection, negotiating TLS as the sslmode says.
    ///
    /// # Errors
    /// Connect failure or timeout, a refused SSLRequest under `require`/`verify-*`, or a failed
    /// handshake.
    pub async fn connect(&self, timeout: Duration) -> Result<ServerStream, UpstreamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stream = self.tcp(timeout).await?;
        let Some(connector) = &self.connector else {
            return Ok(ServerStream::Plain(stream));
        };
        let negotiate = async {
            stream.write_all(&SSL_REQUEST).await?;
            stream.read_u8().await
        };
        let answer = self.step(deadline, timeout, negotiate).await?;
        if answer != b'S' {
            if self.mode == SslMode::Prefer && answer == b'N' {
                return Ok(ServerStream::Plain(stream));
            }
            return Err(UpstreamError::SslRefused {
                target: self.target(),
                mode: match self.mode {
                    SslMode::Require => "require",
                    SslMode::VerifyCa => "verify-ca",
                    SslMode::VerifyFull => "verify-full",
                    _ => "prefer",
                },
            });
        }
        let name = ServerName::try_from(self.host.clone()).map_err(|e| UpstreamError::Invalid {
            value: self.host.clone(),
            reason: e.to_string(),
        })?;
        let tls = timer::timeout_at(deadline, connector.connect(name, stream))
            .await
            .map_err(|_| UpstreamError::Timeout {
                target: self.target(),
                timeout,
            })?
            .map_err(|source| UpstreamError::Handshake {
                target: self.target(),
                source,
            })?;
        Ok(ServerStream::Tls(Box::new(tls)))
    }

    /// Forwards a CancelRequest packet on a fresh connection, as libpq does, and waits for the
    /// server to close it (that is how the server acknowledges).
    ///
    /// # Errors
    /// Connect failures.
    pub async fn cancel(&self, packet: &[u8], timeout: Duration) -> Result<(), UpstreamError> {
        let mut stream = self.tcp(timeout).await?;
        let io = async {
            stream.write_all(packet).await?;
            let mut sink = [0u8; 64];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        match timer::timeout(timeout, io).await {
            Ok(result) => result.map_err(|source| UpstreamError::Connect {
                target: self.target(),
                source,
            }),
            Err(_) => Ok(()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn invalid(value: &str, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Invalid {
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Parses `host`, `host:port`, `[v6]:port` or `postgres[ql]://[user[:pw]@]host[:port][/db][?k=v&...]`.
fn parse_target(value: &str) -> Result<Target, UpstreamError> {
    let (authority, query) = match value
        .strip_prefix("postgres://")
        .or_else(|| value.strip_prefix("postgresql://"))
    {
        Some(rest) => {
            let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
            let authority = before_query.split('/').next().unwrap_or_default();
            let authority = authority.rsplit('@').next().unwrap_or_default();
            (authority, Some(query))
        }
        None => (value, None),
    };
    let (host, port) = split_host_port(authority).ok_or_else(|| invalid(value, "bad host:port"))?;
    if host.is_empty() {
        return Err(invalid(value, "no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| invalid(value, format!("bad port {p:?}")))?,
        None => 5432,
    };
    let mut target = Target {
        host: percent_decode(host),
        port,
        sslmode: None,
        sslrootcert: None,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => target.sslmode = Some(percent_decode(v)),
            "sslrootcert" => target.sslrootcert = Some(percent_decode(v)),
            // Other libpq parameters concern the client's own session, which pgshape relays.
            _ => {}
        }
    }
    Ok(target)
}

fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return Some((host, port));
    }
    match authority.split_once(':') {
        Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
        Some(_) => Some((authority, None)),
        None => Some((authority, None)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Readiness of the upstream for `GET /readyz`: can a server connection be opened (TCP, and
/// TLS as the sslmode says) within the connect timeout? Nothing is sent after that, which
/// PostgreSQL deliberately does not log ("service-monitoring software often just opens and
/// closes a connection"). Answers are reused for a second, so a storm of probes costs the
/// server at most one connection per second.
#[derive(Debug)]
pub struct UpstreamProbe {
    upstream: Upstream,
    timeout: Duration,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Probe)>>,
    /// Set when shutdown begins: no longer ready, whatever the upstream says.
    draining: std::sync::atomic::AtomicBool,
}

/// One readiness answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// `host:port` of the upstream.
    pub upstream: String,
    /// How long the connection took, when it succeeded.
    pub connect_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

const PROBE_REUSE: Duration = Duration::from_secs(1);

impl UpstreamProbe {
    pub fn new(upstream: Upstream, timeout: Duration) -> UpstreamProbe {
        UpstreamProbe {
            upstream,
            timeout,
            last: tokio::sync::Mutex::new(None),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on, answers "shutting down": load balancers stop sending new clients while
    /// running statements finish.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Connects (or reuses an answer younger than a second).
    pub async fn check(&self) -> Probe {
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Probe {
                upstream: self.upstream.target(),
                connect_ms: None,
                error: Some("pgshape is shutting down".into()),
            };
        }
        let mut last = self.last.lock().await;
        if let Some((at, probe)) = &*last
            && at.elapsed() < PROBE_REUSE
        {
            return probe.clone();
        }
        let started = tokio::time::Instant::now();
        let probe = match self.upstream.connect(self.timeout).await {
            Ok(mut stream) => {
                stream.shutdown().await;
                Probe {
                    upstream: self.upstream.target(),
                    connect_ms: Some(started.elapsed().as_secs_f64() * 1e3),
                    error: None,
                }
            }
            Err(error) => Probe {
                upstream: self.upstream.target(),
                connect_ms: None,
                error: Some(error.to_string()),
            },
        };
        *last = Some((tokio::time::Instant::now(), probe.clone()));
        probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16, mode: Option<&str>) -> Target {
        Target {
            host: host.into(),
            port,
            sslmode: mode.map(Into::into),
            sslrootcert: None,
        }
    }

    #[test]
    fn parses_plain_addresses() {
        assert_eq!(parse_target("db:5433").unwrap(), t("db", 5433, None));
        assert_eq!(parse_target("db").unwrap(), t("db", 5432, None));
        assert_eq!(parse_target("[::1]:6000").unwrap(), t("::1", 6000, None));
        assert!(parse_target("db:notaport").is_err());
        assert!(parse_target(":5432").is_err());
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_target("postgres://u:p@db.example:6543/app?sslmode=require").unwrap(),
            t("db.example", 6543, Some("require"))
        );
        let target =
            parse_target("postgresql://db/app?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem")
                .unwrap();
        assert_eq!(target.sslrootcert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(target.port, 5432);
    }

    #[test]
    fn url_sslmode_wins_and_bad_modes_are_named() {
        let config = Config {
            upstream: "postgres://db/?sslmode=bogus".into(),
            ..Config::default()
        };
        let err = Upstream::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
