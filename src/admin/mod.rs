//! The admin HTTP listener: Prometheus `/metrics`, the JSON query-statistics API, the page an
//! on-call engineer keeps open, and `/healthz`.
//!
//! It is an `axum` [`Router`] so other parts add their endpoints by merging a router of their
//! own (the rules module adds `/api/rules` and `/api/reload` that way) rather than this module
//! knowing them: `admin::router(state).merge(rules_routes)`, then [`serve`]. Metrics come from
//! one `prometheus::Registry` into which every module registers its own collectors (the
//! proxy's counters, [`Stats::register`]); this module only encodes it.
//!
//! Endpoints:
//! - `GET /metrics`: Prometheus text format (0.0.4) of the registry; OpenMetrics 1.0 with
//!   trace exemplars on `pgshape_query_duration_seconds` buckets when the `Accept` header
//!   prefers `application/openmetrics-text` (as Prometheus does).
//! - `GET /api/queries?sort=total_time|mean_time|p95|p99|calls|errors|rows&limit=50&database=&user=`:
//!   a JSON array of rows like `pg_stat_statements` plus percentiles: `fingerprint`, `query`,
//!   `command`, `database`, `user`, `calls`, `rows`, `errors` (`{"23": 2}` by SQLSTATE class),
//!   `total_ms`, `mean_ms`, `stddev_ms`, `min_ms`, `max_ms`, `p50_ms`, `p90_ms`, `p95_ms`,
//!   `p99_ms`, `routes` (`[{"tag":"route","value":"^orders/","count":10}]`), `traceparent`
//!   and `traceparent_ms` (slowest recent traced execution), `first_seen`, `last_seen`
//!   (RFC 3339). Evicted entries appear as `fingerprint: "other"`. With `histogram=true`
//!   each row also carries its `histogram` as in the detail view, so clients (`pgshape top`,
//!   `pgshape snapshot`) compute percentiles over an interval or across runs from bucket
//!   differences.
//! - `GET /api/queries/{fingerprint}`: `{"fingerprint", "entries": [row + "histogram":
//!   [{"lower_ms","upper_ms","count"}]]}`, one entry per (database, user); `other` works too.
//! - `GET /api/queries/{fingerprint}/history`: `{"fingerprint", "interval_s", "points_kept",
//!   "shapes_followed", "followed", "points": [{"at", "unix_ms", "calls", "errors", "rows",
//!   "mean_ms", "p95_ms"}]}`, one point per `[stats] history_interval_s` (30 s) for the
//!   `history_shapes` (50) shapes with the most total time, the last `history_points` (120).
//! - `POST /api/queries/reset`: forget all statistics (the evictions counter stays).
//! - `GET /api/status`: connections and upstream connect errors (read back from the metrics),
//!   statistics size and history settings, for the page's header.
//! - `GET /`: the page an on-call engineer keeps open (see `page.html`). `GET /healthz`: `ok`.
//! - `GET /readyz` (merged in by the app, see `ready.rs`): 200 when the upstream accepts a
//!   connection, 503 with the reason when not.
//! - `POST /api/queries/{fingerprint}/explain`, `GET /api/queries/{fingerprint}/plans`
//!   (merged in by the app, see `crate::plans::api`): a shape's plans.
//!
//! Errors are JSON: `{"error": "...", "parameter": "limit"}` with 400 for a bad parameter,
//! 404 for an unknown fingerprint or path, or when statistics are off.
//!
//! With `admin_token` set, every request other than GET/HEAD needs
//! `Authorization: Bearer <token>` (401 otherwise); see `auth.rs` for why reads stay open.
//!
//! - `api.rs`: the `/api/queries` handlers and their parameter checking.
//! - `status.rs`: `/api/status`.
//! - `client.rs`: the other side, a blocking reader of this API for the CLI commands;
//!   `rows.rs`: the rows as they read them, and the histogram arithmetic they share.
//! - `page.html`: the self-contained page served at `/` (inline CSS and JavaScript, no external
//!   assets, nothing built): the top shapes, sortable, with a per-shape detail whose charts
//!   are drawn from the history endpoint; the rules; connections and upstream health.

mod api;
mod auth;
pub mod client;
pub mod ready;
pub mod rows;
mod status;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

pub use auth::{protect_writes, read_only};

use crate::openmetrics::{self, Format};
use crate::sql::Fingerprint;
use crate::stats::Stats;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// Query statistics; `None` when `[stats] enabled = false` (the API then answers 404).
    pub stats: Option<Arc<Stats>>,
    /// Every module's metrics, encoded at `/metrics`.
    pub registry: Registry,
    /// The rules that hit a fingerprint, for the `rules` field of each row (`None`: no rules).
    pub rules_of: Option<RulesOf>,
    /// The rewrite decisions of a fingerprint, for its detail view (`None`: no rewriter).
    pub rewrite_of: Option<RewriteOf>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("stats", &self.stats)
            .field("rules_of", &self.rules_of.is_some())
            .finish_non_exhaustive()
    }
}

/// Looks up the rule ids that hit a fingerprint; given by whoever owns the rules.
pub type RulesOf = Arc<dyn Fn(Fingerprint) -> Vec<String> + Send + Sync>;

/// Explains the rewrite of a fingerprint (see [`crate::rewrite::Rewriter::explain`]).
pub type RewriteOf = Arc<dyn Fn(Fingerprint) -> Option<serde_json::Value> + Send + Sync>;

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The admin endpoints. Merge further routes into it before [`serve`].
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/queries", get(api::list))
        .route("/api/queries/reset", post(api::reset))
        .route("/api/queries/{fingerprint}", get(api::detail))
        .route("/api/queries/{fingerprint}/history", get(api::history))
        .route("/api/status", get(status::status))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish.
///
/// # Errors
/// When accepting or serving fails at the socket level.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener ready");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AdminState>,
    headers: HeaderMap,
) -> Response {
    let families = state.registry.gather();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if openmetrics::negotiate(accept) == Format::OpenMetrics {
        let exemplars = state
            .stats
            .as_ref()
            .map(|s| s.exemplars(&families))
            .unwrap_or_default();
        let mut body = String::with_capacity(64 * 1024);
        openmetrics::encode(&families, &exemplars, &mut body);
        return ([(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], body).into_response();
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(64 * 1024);
    match encoder.encode(&families, &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n"),
            )
                .into_response()
        }
    }
}
