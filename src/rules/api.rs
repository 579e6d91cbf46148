//! Hit statistics and the JSON of `GET /api/rules`, plus an axum router the admin server can
//! nest (`GET /api/rules`, `POST /api/rules/reload`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use dashmap::DashMap;
use prometheus::IntCounter;
use serde_json::{Value, json};

use super::{Action, RuleEngine};
use crate::sql::Fingerprint;

/// Most fingerprints whose per-rule hits are remembered; later ones only count in totals.
const MAX_FINGERPRINTS: usize = 10_000;
/// Fingerprints listed per rule in the JSON.
const TOP_FINGERPRINTS: usize = 10;

/// Hit counts per rule and per (fingerprint, rule).
///
/// A repeated hit (a hot statement matching n-plus-one on every execution) costs a shard read
/// lock and two atomic increments: the slot keeps its count and its Prometheus counter, so
/// neither the label set is hashed nor the fingerprint formatted again.
#[derive(Debug, Default)]
pub struct HitStats {
    totals: DashMap<Arc<str>, AtomicU64>,
    by_fingerprint: DashMap<Fingerprint, Vec<Slot>>,
}

#[derive(Debug)]
struct Slot {
    rule: Arc<str>,
    hits: AtomicU64,
    action: Action,
    counter: Option<IntCounter>,
}

impl HitStats {
    /// Counts a hit; returns whether it is the first of this rule on this fingerprint.
    /// `counter(fold)` makes the Prometheus child for a new (rule, fingerprint, action) slot, or,
    /// with `fold`, the one of `fingerprint="other"` once [`MAX_FINGERPRINTS`] are tracked, so
    /// the number of series stays bounded.
    pub(crate) fn record(
        &self,
        rule: &Arc<str>,
        fingerprint: Fingerprint,
        action: Action,
        counter: impl FnOnce(bool) -> Option<IntCounter>,
    ) -> bool {
        if let Some(total) = self.totals.get(rule) {
            total.fetch_add(1, Ordering::Relaxed);
        } else {
            self.totals
                .entry(rule.clone())
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(slots) = self.by_fingerprint.get(&fingerprint)
            && let Some(slot) = slots
                .iter()
                .find(|s| Arc::ptr_eq(&s.rule, rule) || s.rule == *rule)
            && slot.action == action
        {
            slot.hits.fetch_add(1, Ordering::Relaxed);
            if let Some(c) = &slot.counter {
                c.inc();
            }
            return false;
        }
        if self.by_fingerprint.len() >= MAX_FINGERPRINTS
            && !self.by_fingerprint.contains_key(&fingerprint)
        {
            if let Some(c) = counter(true) {
                c.inc();
            }
            return false;
        }
        let counter = counter(false);
        if let Some(c) = &counter {
            c.inc();
        }
        let mut slots = self.by_fingerprint.entry(fingerprint).or_default();
        match slots.iter_mut().find(|s| s.rule == *rule) {
            // The rule's action changed (reload): keep counting, under the new action's series.
            Some(slot) => {
                slot.hits.fetch_add(1, Ordering::Relaxed);
                slot.action = action;
                slot.counter = counter;
                false
            }
            None => {
                slots.push(Slot {
                    rule: rule.clone(),
                    hits: AtomicU64::new(1),
                    action,
                    counter,
                });
                true
            }
        }
    }

    /// Rule ids that hit `fingerprint`.
    pub fn rules_for(&self, fingerprint: Fingerprint) -> Vec<String> {
        self.by_fingerprint
            .get(&fingerprint)
            .map(|e| e.iter().map(|s| s.rule.to_string()).collect())
            .unwrap_or_default()
    }

    /// Total hits of one rule.
    pub fn total(&self, rule: &str) -> u64 {
        self.totals
            .get(rule)
            .map_or(0, |t| t.load(Ordering::Relaxed))
    }

    fn top(&self, rule: &str) -> Vec<(Fingerprint, u64)> {
        let mut top: Vec<(Fingerprint, u64)> = self
            .by_fingerprint
            .iter()
            .filter_map(|e| {
                e.value()
                    .iter()
                    .find(|s| &*s.rule == rule)
                    .map(|s| (*e.key(), s.hits.load(Ordering::Relaxed)))
            })
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(TOP_FINGERPRINTS);
        top
    }
}

/// The body of `GET /api/rules`: mode, source, and every rule with its definition and hits.
pub fn rules_json(engine: &RuleEngine) -> Value {
    let set = engine.rules();
    let rules: Vec<Value> = set
        .rules
        .iter()
        .map(|rule| {
            let effective = match (set.mode, rule.action) {
                (super::Mode::Shadow, Action::Warn | Action::Block) => Action::Observe,
                (_, a) => a,
            };
            let top: Vec<Value> = engine
                .stats
                .top(&rule.id)
                .into_iter()
                .map(|(fp, hits)| json!({ "fingerprint": fp.to_string(), "hits": hits }))
                .collect();
            json!({
                "id": &*rule.id,
                "description": rule.description,
                "rationale": rule.rationale,
                "severity": rule.severity,
                "action": rule.action,
                "effective_action": effective,
                "scope": rule.scope,
                "match": rule.matcher,
                "message": rule.message,
                "hint": rule.hint,
                "file": rule.file,
                "hits": engine.stats.total(&rule.id),
                "top_fingerprints": top,
            })
        })
        .collect();
    json!({
        "oracle": if engine.catalog().is_some() { "catalog" } else { "heuristic" },
        "mode": set.mode,
        "source": set.source,
        "parse_failures": engine.parse_failures(),
        "rules": rules,
    })
}

/// `GET /api/rules`, `POST /api/rules/reload` (422 with the load error, old rules kept) and
/// `POST /api/rules/refresh-schema` (re-reads the catalogs now; 404 without a schema DSN).
pub fn router(engine: Arc<RuleEngine>) -> Router {
    Router::new()
        .route("/api/rules", get(list))
        .route("/api/rules/reload", post(reload))
        .route("/api/rules/refresh-schema", post(refresh_schema))
        .with_state(engine)
}

async fn refresh_schema(State(engine): State<Arc<RuleEngine>>) -> (StatusCode, Json<Value>) {
    match engine.catalog() {
        Some(catalog) => {
            catalog.refresh_all().await;
            (
                StatusCode::OK,
                Json(json!({ "databases": catalog.databases() })),
            )
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no schema DSN configured; the heuristic oracle is in use" })),
        ),
    }
}

async fn list(State(engine): State<Arc<RuleEngine>>) -> Json<Value> {
    Json(rules_json(&engine))
}

async fn reload(State(engine): State<Arc<RuleEngine>>) -> (StatusCode, Json<Value>) {
    match engine.reload() {
        Ok(set) => (
            StatusCode::OK,
            Json(json!({ "reloaded": true, "rules": set.rules.len(), "source": set.source })),
        ),
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "reloaded": false, "error": error.to_string() })),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn hit_series_stay_bounded_and_every_hit_counts() {
        let vec =
            IntCounterVec::new(Opts::new("hits", "h"), &["rule", "fingerprint", "action"]).unwrap();
        let stats = HitStats::default();
        let rule: Arc<str> = Arc::from("n-plus-one");
        let total = MAX_FINGERPRINTS as u64 + 50;
        for i in 0..total {
            let fp = Fingerprint(i);
            // Twice each: the second hit takes the cached fast path.
            for _ in 0..2 {
                stats.record(&rule, fp, Action::Observe, |fold| {
                    let label = if fold {
                        "other".to_owned()
                    } else {
                        fp.to_string()
                    };
                    Some(vec.with_label_values(&["n-plus-one", &label, "observe"]))
                });
            }
        }
        let families = {
            let registry = prometheus::Registry::new();
            registry.register(Box::new(vec.clone())).unwrap();
            registry.gather()
        };
        let series = families[0].get_metric();
        assert_eq!(
            series.len(),
            MAX_FINGERPRINTS + 1,
            "tracked shapes plus `other`"
        );
        let sum: f64 = series.iter().map(|m| m.get_counter().get_value()).sum();
        assert_eq!(sum as u64, 2 * total);
        assert_eq!(stats.total("n-plus-one"), 2 * total);
    }
}
