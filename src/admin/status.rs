//! `GET /api/status`: connections, upstream failures and statistics size as one small JSON
//! object, for the page's header (a browser should not parse the Prometheus text format).
//!
//! The numbers are read back from the shared registry by metric name, so this module needs
//! no handle on the proxy: whatever `/metrics` says, this says.

use axum::Json;
use axum::extract::State;
use prometheus::proto::{MetricFamily, MetricType};
use serde_json::{Value, json};

use super::AdminState;

/// The proxy's process-level series shown, JSON key first.
const SERIES: [(&str, &str); 7] = [
    (
        "client_connections_active",
        "pgshape_client_connections_active",
    ),
    (
        "client_connections_total",
        "pgshape_client_connections_total",
    ),
    (
        "client_connections_refused",
        "pgshape_client_connections_refused_total",
    ),
    (
        "server_connections_active",
        "pgshape_server_connections_active",
    ),
    (
        "server_connections_total",
        "pgshape_server_connections_total",
    ),
    (
        "upstream_connect_errors",
        "pgshape_upstream_connect_errors_total",
    ),
    ("statements", "pgshape_statements_total"),
];

/// `GET /api/status`: `{"version", "connections": {...}, "stats": {...} | null}`. A series
/// that is not registered (a router built without the proxy) is `null`.
pub(crate) async fn status(State(state): State<AdminState>) -> Json<Value> {
    let families = state.registry.gather();
    let connections: serde_json::Map<String, Value> = SERIES
        .iter()
        .map(|(key, name)| ((*key).to_owned(), json!(sum(&families, name))))
        .collect();
    let stats = state.stats.as_ref().map(|s| {
        let c = s.config();
        json!({
            "entries": s.len(),
            "max_fingerprints": c.max_fingerprints,
            "evictions": s.evictions(),
            "history_interval_s": c.history_interval_s,
            "history_points": c.history_points,
            "history_shapes": c.history_shapes,
        })
    });
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "connections": connections,
        "stats": stats,
    }))
}

/// The sum over every series of the counter or gauge `name`.
fn sum(families: &[MetricFamily], name: &str) -> Option<f64> {
    let family = families.iter().find(|f| f.name() == name)?;
    let value = |m: &prometheus::proto::Metric| match family.get_field_type() {
        MetricType::COUNTER => m.get_counter().get_value(),
        MetricType::GAUGE => m.get_gauge().get_value(),
        _ => 0.0,
    };
    Some(family.get_metric().iter().map(value).sum())
}
