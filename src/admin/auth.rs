//! Bearer-token protection of the admin endpoints that change state (`POST`: reset the
//! statistics, reload the rules). Reads stay open so Prometheus and the page need nothing;
//! the JSON API shows normalized SQL only (literals replaced), never parameter values.
//!
//! Why not protect reads too: scraping with a token needs per-scraper configuration, and what
//! the reads expose is what `pg_stat_statements` shows any monitoring role. Bind the admin
//! listener to a private address when even that must not leak, or give the state-changing
//! endpoints a listener of their own (`admin_write`, the reads listener is then [`read_only`]).
//! Without a token those endpoints must listen on loopback, unless `admin_insecure` says the
//! network in between is trusted: the app refuses to start otherwise.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Requires `Authorization: Bearer <token>` on every request that is not `GET` or `HEAD`.
/// Without a token the router is returned as it is.
pub fn protect_writes(router: Router, token: Option<String>) -> Router {
    match token {
        Some(token) => {
            let token: Arc<[u8]> = Arc::from(token.into_bytes());
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let token = token.clone();
                async move { check(&token, request, next).await }
            }))
        }
        None => router,
    }
}

/// Answers 405 to every request that is not `GET` or `HEAD`: the admin listener for reads when
/// the state-changing endpoints have their own (`admin_write`).
pub fn read_only(router: Router) -> Router {
    router.layer(middleware::from_fn(
        |request: Request, next: Next| async move {
            if matches!(*request.method(), Method::GET | Method::HEAD) {
                return next.run(request).await;
            }
            let mut response = (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(json!({
                    "error": "this admin listener serves reads only; state-changing endpoints are on admin_write",
                })),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        },
    ))
}

async fn check(token: &[u8], request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(given) if equal_in_constant_time(given, token) => next.run(request).await,
        other => {
            let error = if other.is_some() {
                "wrong bearer token"
            } else {
                "this endpoint needs an Authorization: Bearer <admin_token> header"
            };
            tracing::warn!(path = %request.uri().path(), error, "admin request refused");
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "error": error, "parameter": "Authorization" })),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guess
/// was right.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::equal_in_constant_time;

    #[test]
    fn comparison() {
        assert!(equal_in_constant_time(b"s3cret", b"s3cret"));
        assert!(!equal_in_constant_time(b"s3cret", b"s3creT"));
        assert!(!equal_in_constant_time(b"s3cret", b"s3cre"));
        assert!(!equal_in_constant_time(b"", b"x"));
    }
}
