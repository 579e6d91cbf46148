//! The admin endpoints of plans, merged into the admin router by the app:
//! - `POST /api/queries/{fingerprint}/explain`: explain the shape's sampled execution now
//!   (a write: it runs a statement on the server, so it sits behind `admin_token`). 200 with
//!   `{"fingerprint", "database", "shape_hash", "plan", "plan_change", "signature"}`;
//!   404 no sample, 409 no `--schema-dsn`, 422 refused (writes, `$n` values not
//!   captured yet or not decodable, VOLATILE functions under `analyze`), 429 another
//!   explain running in the database, 502 the server's error.
//! - `GET /api/queries/{fingerprint}/plans`: `{"fingerprint", "current", "plans": [{
//!   "shape_hash", "database", "first_seen", "last_seen", "seen", "p95_ms", "summary",
//!   "plan"}]}`,
//!   most recently seen first; 404 when never explained.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::{PlanError, Planner};
use crate::sql::Fingerprint;

pub fn router(planner: Arc<Planner>) -> Router {
    Router::new()
        .route("/api/queries/{fingerprint}/explain", post(explain))
        .route("/api/queries/{fingerprint}/plans", get(plans))
        .with_state(planner)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn fingerprint(text: &str) -> Result<Fingerprint, Box<Response>> {
    text.parse().map_err(|_| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!("not a fingerprint (16 hex digits): {text:?}"),
                    "parameter": "fingerprint",
                })),
            )
                .into_response(),
        )
    })
}

async fn explain(State(planner): State<Arc<Planner>>, Path(fp): Path<String>) -> Response {
    let fp = match fingerprint(&fp) {
        Ok(fp) => fp,
        Err(response) => return *response,
    };
    match planner.explain(fp).await {
        Ok(explained) => Json(explained).into_response(),
        Err(e) => {
            let status = match &e {
                PlanError::NoSample(_) => StatusCode::NOT_FOUND,
                PlanError::NoSchemaDsn => StatusCode::CONFLICT,
                PlanError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                PlanError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
                PlanError::Connect { .. } | PlanError::Explain { .. } => StatusCode::BAD_GATEWAY,
            };
            tracing::info!(fingerprint = %fp, error = %e, "explain not done");
            error(status, e.to_string())
        }
    }
}

async fn plans(State(planner): State<Arc<Planner>>, Path(fp): Path<String>) -> Response {
    let fp = match fingerprint(&fp) {
        Ok(fp) => fp,
        Err(response) => return *response,
    };
    match planner.store().plans(fp) {
        Some((plans, current)) => Json(json!({
            "fingerprint": fp.to_string(),
            "current": current,
            "plans": plans,
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no plans of {fp}: POST /api/queries/{fp}/explain captures one"),
        ),
    }
}
