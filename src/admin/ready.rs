//! `GET /readyz`: 200 when the upstream PostgreSQL accepts a connection now, 503 with the
//! reason otherwise, for load balancers and Kubernetes readiness probes (`/healthz` only says
//! the process answers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::proxy::upstream::{Probe, UpstreamProbe};

/// Something that can tell whether the upstream is reachable.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Probe> + Send>> + Send + Sync + 'static>;

/// The `/readyz` route, checking through `probe`.
pub fn router(probe: Arc<UpstreamProbe>) -> Router {
    let check: ReadyCheck = Arc::new(move || {
        let probe = probe.clone();
        Box::pin(async move { probe.check().await })
    });
    Router::new().route("/readyz", get(ready)).with_state(check)
}

async fn ready(State(check): State<ReadyCheck>) -> Response {
    let probe = check().await;
    match (&probe.connect_ms, &probe.error) {
        (Some(ms), _) => (
            StatusCode::OK,
            Json(json!({ "ready": true, "upstream": probe.upstream, "connect_ms": ms })),
        )
            .into_response(),
        (None, error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "upstream": probe.upstream, "error": error })),
        )
            .into_response(),
    }
}
