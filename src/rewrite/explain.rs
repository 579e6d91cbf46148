//! `pgshape rewrite explain FINGERPRINT`: what the rewrite rules of a running pgshape decided
//! for one shape, read from its admin API (`GET /api/queries/{fp}`, the `rewrite` object of
//! [`super::Rewriter::explain`]) and printed for a person: the normalized original with its
//! numbered slots, then per (rule, database) the state, the template and a sample rewritten
//! statement or the reason there is none, the outcome counts, and the kill switch.
//!
//! [`fetch`] is the HTTP part, [`render`] the text; [`form_label`] names a semi-join form the
//! same way here and in `pgshape check`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::semijoin::Form;
use super::template::{list_slots, slot_count};
use crate::sql::{Fingerprint, ParseFingerprintError};

/// Connecting to the admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reading its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (one shape's statistics and plans are a few KiB).
const MAX_RESPONSE: u64 = 16 << 20;

/// Why there is nothing to explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Fingerprint(#[from] ParseFingerprintError),
    #[error("invalid admin address {given:?}: {why}")]
    AdminUrl { given: String, why: &'static str },
    #[error(
        "cannot reach the admin API at {url}: {error} (is `pgshape serve` running with its admin \
         listener there? see its --admin flag)"
    )]
    Unreachable { url: String, error: String },
    #[error(
        "the admin API at {url} knows nothing of fingerprint {fingerprint}: no statement of that \
         shape ran through this pgshape since it started (or since the statistics were reset)"
    )]
    NotFound { url: String, fingerprint: String },
    #[error(
        "fingerprint {fingerprint} has statistics but no rewrite information: no rule with a \
         rewrite (action \"rewrite\", or the dry run of an observing rule) has matched it"
    )]
    NoRewrite { fingerprint: String },
    #[error("the admin API at {url} answered HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from the admin API at {url}: {why}")]
    Protocol { url: String, why: String },
}

/// How a proven semi-join rewrite is named in reports: `semi-join`, the form when it is not the
/// plain DISTINCT one, and whether the DISTINCT could go (`template` for an operator's).
pub fn form_label(form: Option<Form>, distinct_dropped: bool) -> String {
    let mut label = match form {
        None => return "template".to_owned(),
        Some(Form::Distinct) => "semi-join".to_owned(),
        Some(Form::DistinctOn) => "semi-join, DISTINCT ON".to_owned(),
        Some(Form::CountOverDistinct) => "semi-join under COUNT(*)".to_owned(),
        Some(Form::CountDistinct) => "semi-join, COUNT(DISTINCT)".to_owned(),
    };
    if distinct_dropped {
        label.push_str(", DISTINCT dropped");
    }
    label
}

/// The [`Form`] serialized as `name` (the plan JSON's `form`).
fn form_named(name: &str) -> Option<Form> {
    [
        Form::Distinct,
        Form::DistinctOn,
        Form::CountOverDistinct,
        Form::CountDistinct,
    ]
    .into_iter()
    .find(|f| {
        serde_json::to_value(f)
            .ok()
            .as_ref()
            .and_then(Value::as_str)
            == Some(name)
    })
}

/// Where the admin API is: `http://host:port[/prefix]`, or `host:port` as `serve --admin` takes
/// it (a wildcard listen address means this host).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AdminUrl {
    /// `host:port` for the Host header and for resolving.
    authority: String,
    /// Path prefix without a trailing `/` (empty for the root).
    prefix: String,
}

impl AdminUrl {
    fn parse(given: &str) -> Result<AdminUrl, ExplainError> {
        let bad = |why| ExplainError::AdminUrl {
            given: given.to_owned(),
            why,
        };
        let rest = if let Some(rest) = given.strip_prefix("http://") {
            rest
        } else if given.starts_with("https://") {
            return Err(bad(
                "the admin API speaks plain HTTP (put a TLS proxy's plain side, or a tunnel, here)",
            ));
        } else if given.contains("://") {
            return Err(bad("only http:// URLs are supported"));
        } else if given == "off" {
            return Err(bad("the admin API is switched off (--admin off)"));
        } else {
            given
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let authority = match authority.rsplit_once(':') {
            Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
            Some(("[::]", port)) => format!("[::1]:{port}"),
            _ => authority,
        };
        Ok(AdminUrl {
            authority,
            prefix: prefix.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.authority, self.prefix)
    }
}

/// `GET /api/queries/{fingerprint}` of the admin API at `admin`, as JSON.
///
/// The admin API is plain HTTP/1.1 on a private address (usually loopback), and this is one
/// GET of a small JSON document: a blocking request over [`TcpStream`] is all it takes, so the
/// binary carries no HTTP client stack (with its TLS and connection pooling) for it. Reads of
/// the admin API need no token (only its POST endpoints do, see `admin::auth`).
///
/// # Errors
/// A malformed fingerprint or address, an unreachable admin API, an unknown fingerprint, any
/// other HTTP error, or an answer that is not JSON.
pub fn fetch(admin: &str, fingerprint: &str) -> Result<Value, ExplainError> {
    let fingerprint = fingerprint.parse::<Fingerprint>()?.to_string();
    let admin = AdminUrl::parse(admin)?;
    let path = format!("{}/api/queries/{fingerprint}", admin.prefix);
    let url = admin.url(&format!("/api/queries/{fingerprint}"));
    let unreachable = |error: String| ExplainError::Unreachable {
        url: url.clone(),
        error,
    };
    let protocol = |why: String| ExplainError::Protocol {
        url: url.clone(),
        why,
    };
    let addrs: Vec<SocketAddr> = admin
        .authority
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .collect();
    let mut last_error = "the host name resolves to no address".to_owned();
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| unreachable(last_error))?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(READ_TIMEOUT)))
        .map_err(|e| unreachable(e.to_string()))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: pgshape/{}\r\n\
         Connection: close\r\n\r\n",
        admin.authority,
        env!("CARGO_PKG_VERSION"),
    )
    .map_err(|e| unreachable(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
    let (status, body) = parse_response(&raw).map_err(|why| protocol(why.to_owned()))?;
    let json = || {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| protocol(format!("the body is not JSON: {e}")))
    };
    match status {
        200 => json(),
        404 => Err(ExplainError::NotFound {
            url: url.clone(),
            fingerprint,
        }),
        _ => {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            Err(ExplainError::Status {
                url: url.clone(),
                status,
                message,
            })
        }
    }
}

/// Status and body (de-chunked) of an HTTP/1.1 response read to its end.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), &'static str> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the HTTP header")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "the HTTP header is not text")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("not an HTTP/1.x status line")?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The text `pgshape rewrite explain` prints for a `GET /api/queries/{fp}` document.
///
/// # Errors
/// [`ExplainError::NoRewrite`] when the document has no `rewrite` object.
pub fn render(detail: &Value) -> Result<String, ExplainError> {
    let fingerprint = detail
        .get("fingerprint")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let Some(rewrite) = detail.get("rewrite").filter(|r| r.is_object()) else {
        return Err(ExplainError::NoRewrite { fingerprint });
    };
    let plans: &[Value] = rewrite
        .get("plans")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let outcomes = rewrite.get("outcomes").and_then(Value::as_object);
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "fingerprint {fingerprint}");
    let original = plans.iter().find_map(|p| str_of(p, "original"));
    match &original {
        Some(original) => {
            let _ = writeln!(out, "original (normalized, constants as numbered slots):");
            let _ = writeln!(out, "  {original}");
            let _ = write!(out, "{}", slot_list(original));
        }
        None => {
            let _ = writeln!(out, "original: not known (no current plan for this shape)");
        }
    }
    match rewrite.get("disabled").and_then(Value::as_str) {
        Some(why) => {
            let _ = writeln!(
                out,
                "rewrite: DISABLED until the next rule reload: {why} (statements pass through \
                 unchanged)"
            );
        }
        None => {
            let _ = writeln!(out, "rewrite: enabled");
        }
    }

    let mut rules_shown = Vec::new();
    for plan in plans {
        let rule = str_of(plan, "rule").unwrap_or_else(|| "?".into());
        let database = str_of(plan, "database").unwrap_or_default();
        let state = str_of(plan, "state").unwrap_or_else(|| "?".into());
        let _ = writeln!(out);
        let _ = writeln!(out, "rule {rule}, database {database}");
        if let Some(own) = str_of(plan, "original")
            && original.as_ref() != Some(&own)
        {
            let _ = writeln!(out, "  original: {own}");
        }
        match state.as_str() {
            "ready" => {
                let form = plan
                    .get("form")
                    .and_then(Value::as_str)
                    .and_then(form_named);
                let dropped = plan
                    .get("distinct_dropped")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let described = if plan.get("described").and_then(Value::as_bool) == Some(true) {
                    "result shape checked"
                } else {
                    "result shape NOT checked: no schema connection"
                };
                let _ = writeln!(
                    out,
                    "  state:    ready ({}, {described})",
                    form_label(form, dropped)
                );
                let _ = writeln!(
                    out,
                    "  template: {}",
                    str_of(plan, "template_sql").unwrap_or_default()
                );
                let _ = writeln!(
                    out,
                    "  sample:   {}",
                    str_of(plan, "sample").unwrap_or_default()
                );
            }
            "proving" => {
                let _ = writeln!(
                    out,
                    "  state:    proving (statements pass through unchanged until it is done)"
                );
            }
            other => {
                let _ = writeln!(out, "  state:    {other}");
                let _ = writeln!(
                    out,
                    "  reason:   {}",
                    str_of(plan, "reason").unwrap_or_default()
                );
            }
        }
        let _ = writeln!(out, "  outcomes: {}", outcome_text(outcomes, &rule));
        rules_shown.push(rule);
    }
    if plans.is_empty() {
        let _ = writeln!(
            out,
            "\nno current plan (forgotten, or the rules were reloaded; the next execution makes one)"
        );
    }
    for rule in outcomes.into_iter().flat_map(|o| o.keys()) {
        if !rules_shown.contains(rule) {
            let _ = writeln!(out, "\nrule {rule} (no current plan)");
            let _ = writeln!(out, "  outcomes: {}", outcome_text(outcomes, rule));
        }
    }
    Ok(out)
}

/// `slots:` and one line per `$k` of a normalized text.
fn slot_list(normalized: &str) -> String {
    let count = slot_count(normalized);
    if count == 0 {
        return "slots: none (the statement has no constants)\n".to_owned();
    }
    let lists = list_slots(normalized);
    let mut out = String::from("slots:\n");
    for k in 1..=count {
        let kind = if lists.contains(&k) {
            "list: IN (...) / ARRAY[...], one or many values; a template may use it only where a \
             list fits"
        } else {
            "single value"
        };
        let _ = writeln!(out, "  ${k}  {kind}");
    }
    out
}

/// `applied 12, not_provable 1`, or `none yet`.
fn outcome_text(outcomes: Option<&serde_json::Map<String, Value>>, rule: &str) -> String {
    let counts: Vec<String> = outcomes
        .and_then(|o| o.get(rule))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    if counts.is_empty() {
        "none yet".to_owned()
    } else {
        counts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses() {
        let parse = |s| AdminUrl::parse(s).map(|u| (u.authority, u.prefix));
        assert_eq!(
            parse("http://127.0.0.1:9187").unwrap(),
            ("127.0.0.1:9187".into(), String::new())
        );
        assert_eq!(
            parse("0.0.0.0:9187").unwrap(),
            ("127.0.0.1:9187".into(), String::new())
        );
        assert_eq!(
            parse("http://admin.internal/pgshape/").unwrap(),
            ("admin.internal:80".into(), "/pgshape".into())
        );
        assert_eq!(
            parse("http://[::]:9187").unwrap(),
            ("[::1]:9187".into(), String::new())
        );
        assert!(parse("https://x:1").is_err());
        assert!(parse("off").is_err());
        assert!(parse("http://").is_err());
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (404, b"{\"a\":1}".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn renders_plans_slots_and_outcomes() {
        let detail = serde_json::json!({
            "fingerprint": "00000000000000ab",
            "entries": [],
            "rewrite": {
                "disabled": null,
                "plans": [{
                    "rule": "distinct-over-fanout-join",
                    "fingerprint": "00000000000000ab",
                    "database": "shop",
                    "original": "SELECT DISTINCT o.id FROM o JOIN i ON i.o = o.id WHERE i.s IN ($1 /*, ... */) LIMIT $2",
                    "state": "ready",
                    "template_sql": "SELECT o.id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.o = o.id AND i.s IN ($1)) LIMIT $2",
                    "sample": "SELECT o.id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.o = o.id AND i.s IN ('A', 'B')) LIMIT 25",
                    "form": "distinct",
                    "distinct_dropped": true,
                    "described": true
                }, {
                    "rule": "patch",
                    "fingerprint": "00000000000000ab",
                    "database": "shop",
                    "original": "SELECT DISTINCT o.id FROM o JOIN i ON i.o = o.id WHERE i.s IN ($1 /*, ... */) LIMIT $2",
                    "state": "refused",
                    "reason": "slot $1 is a list"
                }],
                "outcomes": {"distinct-over-fanout-join": {"applied": 2}, "gone": {"disabled": 1}}
            }
        });
        let text = render(&detail).unwrap();
        assert!(text.contains("fingerprint 00000000000000ab\n"), "{text}");
        assert!(text.contains("  $1  list: IN (...)"), "{text}");
        assert!(text.contains("  $2  single value\n"), "{text}");
        assert!(text.contains("rewrite: enabled\n"), "{text}");
        assert!(
            text.contains(
                "  state:    ready (semi-join, DISTINCT dropped, result shape checked)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  sample:   SELECT o.id FROM o WHERE EXISTS"),
            "{text}"
        );
        assert!(text.contains("  outcomes: applied 2\n"), "{text}");
        assert!(
            text.contains("  state:    refused\n  reason:   slot $1 is a list\n"),
            "{text}"
        );
        assert!(
            text.contains("rule gone (no current plan)\n  outcomes: disabled 1"),
            "{text}"
        );

        let none = serde_json::json!({"fingerprint": "00000000000000ab", "entries": []});
        assert!(matches!(render(&none), Err(ExplainError::NoRewrite { .. })));
    }
}
