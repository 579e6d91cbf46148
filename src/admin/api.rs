//! `/api/queries`: statement statistics as JSON, the proxy-side `pg_stat_statements`.
//!
//! Parameters are checked by hand rather than with a derived `Query<T>`, so that a bad or
//! unknown parameter is answered with a 400 naming it, in JSON, instead of axum's plain-text
//! rejection.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AdminState;
use crate::sql::Fingerprint;
use crate::stats::{QueryStats, SortKey, Stats};

/// Rows returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// Largest `limit` accepted; a full dump of the default 5000 entries fits.
const MAX_LIMIT: usize = 10_000;

/// A JSON error body: `{"error": "...", "parameter": "sort"}`.
#[derive(Debug, Serialize)]
pub(crate) struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<String>,
}

impl ApiError {
    fn bad_param(parameter: &str, error: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error,
            parameter: Some(parameter.to_owned()),
        }
    }

    fn not_found(error: String) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error,
            parameter: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

fn stats(state: &AdminState) -> Result<&Arc<Stats>, ApiError> {
    state.stats.as_ref().ok_or_else(|| {
        ApiError::not_found("statistics are switched off ([stats] enabled = false)".into())
    })
}

/// Checked parameters of the listing.
struct ListParams {
    sort: SortKey,
    limit: usize,
    database: Option<String>,
    user: Option<String>,
    /// Add each row's `histogram` (as in the detail view).
    histogram: bool,
}

impl ListParams {
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut p = ListParams {
            sort: SortKey::TotalTime,
            limit: DEFAULT_LIMIT,
            database: None,
            user: None,
            histogram: false,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "sort" => {
                    p.sort = value.parse().map_err(|()| {
                        ApiError::bad_param(
                            "sort",
                            format!("unknown sort {value:?}; use one of {}", SortKey::NAMES),
                        )
                    })?;
                }
                "limit" => {
                    p.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_param(
                                "limit",
                                format!(
                                    "limit must be an integer from 1 to {MAX_LIMIT}, got {value:?}"
                                ),
                            )
                        })?;
                }
                "histogram" => {
                    p.histogram = match value.as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => {
                            return Err(ApiError::bad_param(
                                "histogram",
                                format!("histogram must be true or false, got {value:?}"),
                            ));
                        }
                    };
                }
                "database" => p.database = Some(value),
                "user" => p.user = Some(value),
                _ => {
                    return Err(ApiError::bad_param(
                        &name,
                        format!(
                            "unknown parameter {name:?}; accepted: sort, limit, database, user, histogram"
                        ),
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// `GET /api/queries?sort=total_time|mean_time|p95|p99|calls|errors|rows&limit=50&database=&user=&histogram=false`
pub(crate) async fn list(
    State(state): State<AdminState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::bad_param("query", format!("malformed query string: {e}")))?;
    let params = ListParams::parse(pairs)?;
    let wanted = |r: &QueryStats| {
        params.database.as_deref().is_none_or(|d| r.database == d)
            && params.user.as_deref().is_none_or(|u| r.user == u)
    };
    let add_rules = |row: &mut QueryStats| {
        if let (Some(rules_of), Some(fp)) = (&state.rules_of, row.fingerprint_id()) {
            row.rules = rules_of(fp);
        }
    };
    if params.histogram {
        let mut rows = stats(&state)?.snapshot_with_histograms();
        rows.retain(|r| wanted(&r.stats));
        params.sort.sort_details(&mut rows);
        rows.truncate(params.limit);
        rows.iter_mut().for_each(|r| add_rules(&mut r.stats));
        return Ok(Json(rows).into_response());
    }
    let mut rows = stats(&state)?.snapshot();
    rows.retain(|r| wanted(r));
    params.sort.sort(&mut rows);
    rows.truncate(params.limit);
    rows.iter_mut().for_each(add_rules);
    Ok(Json(rows).into_response())
}

/// Body of `GET /api/queries/{fingerprint}`.
#[derive(Serialize)]
struct Detail {
    fingerprint: String,
    /// One per (database, user) the shape ran as, most total time first.
    entries: Vec<crate::stats::QueryDetail>,
    /// What the rewrite rules decided for the shape (see `pgshape rewrite explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    rewrite: Option<serde_json::Value>,
}

/// `GET /api/queries/{fingerprint}`: one shape with its latency histogram; `other` gives the
/// folded entries.
pub(crate) async fn detail(
    State(state): State<AdminState>,
    Path(fingerprint): Path<String>,
) -> Result<Response, ApiError> {
    let stats = stats(&state)?;
    let mut rewrite = None;
    let entries = if fingerprint == "other" {
        stats.detail_other()
    } else {
        let fp = parse_fingerprint(&fingerprint)?;
        rewrite = state.rewrite_of.as_ref().and_then(|of| of(fp));
        stats.detail(fp)
    };
    if entries.is_empty() && rewrite.is_none() {
        return Err(ApiError::not_found(format!(
            "no statistics for fingerprint {fingerprint}"
        )));
    }
    Ok(Json(Detail {
        fingerprint,
        entries,
        rewrite,
    })
    .into_response())
}

/// Parses a path's 16-hex-digit fingerprint.
fn parse_fingerprint(fingerprint: &str) -> Result<Fingerprint, ApiError> {
    let valid = fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit());
    u64::from_str_radix(fingerprint, 16)
        .ok()
        .filter(|_| valid)
        .map(Fingerprint)
        .ok_or_else(|| {
            ApiError::bad_param(
                "fingerprint",
                format!("fingerprint must be 16 hex digits or \"other\", got {fingerprint:?}"),
            )
        })
}

/// `GET /api/queries/{fingerprint}/history`: the shape's per-interval calls, errors, mean and
/// p95 (empty `points` while it is not among the busiest shapes, or before its second tick).
pub(crate) async fn history(
    State(state): State<AdminState>,
    Path(fingerprint): Path<String>,
) -> Result<Response, ApiError> {
    let fp = parse_fingerprint(&fingerprint)?;
    Ok(Json(stats(&state)?.history(fp)).into_response())
}

/// `POST /api/queries/reset`: forget all statistics.
pub(crate) async fn reset(State(state): State<AdminState>) -> Result<Response, ApiError> {
    stats(&state)?.reset();
    tracing::info!("query statistics reset through the admin API");
    Ok(Json(serde_json::json!({ "reset": true })).into_response())
}

/// Unknown paths, answered in JSON like the rest of the API.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}
