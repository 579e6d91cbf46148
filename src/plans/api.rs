//! The admin endpoints of plans, merged into the admin router by the app:
//! - `POST /api/queries/{fingerprint}/explain`: explain the shape's sampled execution now
//!   (a write: it runs a statement on the server, so it sits behind `admin_token`). 200 with
//!   `{"fingerprint", "database", "shape_hash", "plan", "plan_change", "signature"}`;
//!   404 no sample, 409 no `--schema-dsn`, 422 refused (writes, `$n` values not
//!   captured yet or not decodable, VOLATILE functions under `analyze`), 429 another
//!   explain running in the database, 502 the server's error.
//! - `GET /api/queries/{fingerprint}/plans`: `{"fingerprint", "current", "plans": [{
//!   "shape_hash", "database", "first_seen", "last_seen", "seen", "p95_ms", "summary",
//!   "plan", "signature", "tree"}]}`,
//!   most recently seen first; 404 when never explained. `tree` is the plan as the admin page
//!   draws it ([`super::shape::annotate`]: own costs, the most expensive node, the signature's
//!   node), `signature` the incident's signature when the plan has it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::store::PlanRecord;
use super::{PlanError, Planner, shape};
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
        Some((plans, current)) => Json(plans_json(fp, &plans, current)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no plans of {fp}: POST /api/queries/{fp}/explain captures one"),
        ),
    }
}

/// The answer of `GET .../plans`: each record with its annotated tree and signature.
fn plans_json(fp: Fingerprint, plans: &[PlanRecord], current: Option<String>) -> serde_json::Value {
    let plans: Vec<serde_json::Value> = plans
        .iter()
        .map(|record| {
            let mut value = serde_json::to_value(record).unwrap_or_default();
            value["signature"] = shape::signature(&record.plan).into();
            value["tree"] = shape::annotate(&record.plan);
            value
        })
        .collect();
    json!({
        "fingerprint": fp.to_string(),
        "current": current,
        "plans": plans,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::plans_json;
    use crate::plans::store::PlanStore;
    use crate::sql::Fingerprint;

    #[test]
    fn each_plan_carries_its_tree_and_signature() {
        let store = PlanStore::new(4, 4);
        let fp = Fingerprint(0xabc);
        let scan = |rel: &str, rows: u64, cost: f64| json!({"Node Type": "Seq Scan", "Relation Name": rel, "Plan Rows": rows, "Total Cost": cost});
        let fanout = json!({"Node Type": "Unique", "Plan Rows": 10, "Total Cost": 90.0, "Plans": [
            {"Node Type": "Hash Join", "Plan Rows": 5000, "Total Cost": 80.0, "Plans": [
                scan("a", 5000, 50.0), scan("b", 100, 5.0)]}]});
        store.record(fp, "shop", "h1", &scan("a", 10, 3.0), None);
        store.record(fp, "shop", "h2", &fanout, Some(42.0));
        let (plans, current) = store.plans(fp).unwrap();
        let answer = plans_json(fp, &plans, current);
        assert_eq!(answer["fingerprint"], "0000000000000abc");
        assert_eq!(answer["current"], "h2");
        let [now, before] = answer["plans"].as_array().unwrap().as_slice() else {
            panic!("two plans: {answer}");
        };
        assert_eq!(now["shape_hash"], "h2");
        assert_eq!(now["p95_ms"], 42.0);
        assert!(now["first_seen"].is_string() && now["last_seen"].is_string());
        let tree = &now["tree"];
        assert_eq!(tree["label"], "Unique");
        assert_eq!(tree["signature"], true);
        assert!(
            now["signature"]
                .as_str()
                .unwrap()
                .contains("Unique over a Hash Join")
        );
        // Own costs: Unique 10, Hash Join 25, a 50, b 5: the scan of a is marked.
        let join = &tree["children"][0];
        assert_eq!(join["own_cost"], 25.0);
        assert_eq!(join["children"][0]["relation"], "a");
        assert_eq!(join["children"][0]["most_expensive"], true);
        assert_eq!(tree["most_expensive"], false);
        assert_eq!(before["signature"], serde_json::Value::Null);
        assert_eq!(before["tree"]["most_expensive"], true);
        assert!(before["plan"].is_object(), "the raw plan stays");
    }
}
