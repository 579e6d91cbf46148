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
use serde_json::{Value, json};

use super::{Action, RuleEngine};
use crate::sql::Fingerprint;

/// Most fingerprints whose per-rule hits are remembered; hits of later ones count per
/// (rule, action) only, exported as `fingerprint="other"`.
const MAX_FINGERPRINTS: usize = 10_000;
/// Fingerprints listed per rule in the JSON.
const TOP_FINGERPRINTS: usize = 10;

/// Hit counts per rule and per (fingerprint, rule): the source of `GET /api/rules` and of
/// `pgshape_rule_hits_total` (see [`super::metrics`], which exports the top shapes only).
///
/// A repeated hit (a hot statement matching n-plus-one on every execution) costs a shard read
/// lock and two atomic increments; nothing is formatted or hashed by label.
#[derive(Debug, Default)]
pub struct HitStats {
    totals: DashMap<Arc<str>, AtomicU64, crate::sql::FastHasher>,
    by_fingerprint: DashMap<Fingerprint, Vec<Slot>, crate::sql::FastHasher>,
    /// Hits of shapes beyond [`MAX_FINGERPRINTS`], per (rule, action).
    untracked: DashMap<(Arc<str>, Action), AtomicU64>,
}

#[derive(Debug)]
struct Slot {
    rule: Arc<str>,
    hits: AtomicU64,
    action: Action,
}

/// Hits of one rule on one shape under one action; `fingerprint` is `None` for the hits of
/// shapes beyond the tracked ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitCount {
    pub rule: Arc<str>,
    pub action: Action,
    pub fingerprint: Option<Fingerprint>,
    pub hits: u64,
}

impl HitStats {
    /// Counts a hit; returns whether it is the first of this rule on this fingerprint.
    pub(crate) fn record(&self, rule: &Arc<str>, fingerprint: Fingerprint, action: Action) -> bool {
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
            return false;
        }
        if self.by_fingerprint.len() >= MAX_FINGERPRINTS
            && !self.by_fingerprint.contains_key(&fingerprint)
        {
            self.untracked
                .entry((rule.clone(), action))
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut slots = self.by_fingerprint.entry(fingerprint).or_default();
        match slots.iter_mut().find(|s| s.rule == *rule) {
            // The rule's action changed (reload): its hits so far count under the new action.
            Some(slot) => {
                slot.hits.fetch_add(1, Ordering::Relaxed);
                slot.action = action;
                false
            }
            None => {
                slots.push(Slot {
                    rule: rule.clone(),
                    hits: AtomicU64::new(1),
                    action,
                });
                true
            }
        }
    }

    /// Every count: one per tracked (fingerprint, rule), one per (rule, action) of untracked
    /// shapes.
    pub fn counts(&self) -> Vec<HitCount> {
        let mut out = Vec::new();
        for e in self.by_fingerprint.iter() {
            for slot in e.value() {
                out.push(HitCount {
                    rule: slot.rule.clone(),
                    action: slot.action,
                    fingerprint: Some(*e.key()),
                    hits: slot.hits.load(Ordering::Relaxed),
                });
            }
        }
        for e in self.untracked.iter() {
            let (rule, action) = e.key();
            out.push(HitCount {
                rule: rule.clone(),
                action: *action,
                fingerprint: None,
                hits: e.value().load(Ordering::Relaxed),
            });
        }
        out
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
            let effective = super::engine::effective(rule.action, set.mode);
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
                "rewrite": rule.rewrite.as_ref().map(|spec| json!({
                    "kind": if spec.template.is_some() { "template" } else { "semi_join" },
                    "sql": spec.template.as_ref().map(|t| t.text()),
                    "verify": spec.verify,
                    "sample_rate": spec.sample_rate,
                    // Applied when the action is rewrite; a dry run otherwise.
                    "applied": effective == Action::Rewrite,
                    "shapes": engine.rewriter().plans_of_rule(&rule.id),
                })),
            })
        })
        .collect();
    json!({
        "oracle": if engine.catalog().is_some() { "catalog" } else { "heuristic" },
        "mode": set.mode,
        "source": set.source,
        "parse_failures": engine.parse_failures(),
        "analysis_skipped": crate::sql::analysis::OverBudget::ALL
            .iter()
            .map(|&r| (r.as_str(), engine.analysis_skipped(r)))
            .collect::<std::collections::BTreeMap<_, _>>(),
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
        .route("/api/rewrites/{fingerprint}/disable", post(disable_rewrite))
        .with_state(engine)
}

/// `POST /api/rewrites/{fingerprint}/disable`: the kill switch. The shape's statements go to
/// the server as written until the next rule reload.
async fn disable_rewrite(
    State(engine): State<Arc<RuleEngine>>,
    axum::extract::Path(fingerprint): axum::extract::Path<String>,
) -> (StatusCode, Json<Value>) {
    match fingerprint.parse::<Fingerprint>() {
        Ok(fp) => {
            let was_on = engine.rewriter().disable(
                fp,
                "switched off through POST /api/rewrites/{fingerprint}/disable",
            );
            (
                StatusCode::OK,
                Json(
                    json!({ "fingerprint": fp.to_string(), "disabled": true, "was_enabled": was_on }),
                ),
            )
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error.to_string() })),
        ),
    }
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

    #[test]
    fn hits_beyond_the_tracked_shapes_still_count() {
        let stats = HitStats::default();
        let rule: Arc<str> = Arc::from("n-plus-one");
        let total = MAX_FINGERPRINTS as u64 + 50;
        for i in 0..total {
            // Twice each: the second hit takes the fast path.
            for _ in 0..2 {
                stats.record(&rule, Fingerprint(i), Action::Observe);
            }
        }
        let counts = stats.counts();
        assert_eq!(
            counts.len(),
            MAX_FINGERPRINTS + 1,
            "tracked shapes plus one untracked"
        );
        let untracked = counts.iter().find(|c| c.fingerprint.is_none()).unwrap();
        assert_eq!(untracked.hits, 2 * 50);
        assert_eq!(counts.iter().map(|c| c.hits).sum::<u64>(), 2 * total);
        assert_eq!(stats.total("n-plus-one"), 2 * total);
    }
}
