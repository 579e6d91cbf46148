//! The last few distinct plans of each fingerprint, and plan changes.
//!
//! Bounded: `max_plans` per fingerprint (the least recently seen is dropped) and `max_shapes`
//! fingerprints (the one explained longest ago is dropped), so the metric's `fingerprint`
//! label stays bounded too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;

use crate::sql::Fingerprint;

/// One distinct plan of a fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    pub shape_hash: String,
    pub database: String,
    /// RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
    /// How many explains produced this shape.
    pub seen: u64,
    /// The shape's p95 (ms) over the history interval that triggered the latest automatic
    /// explain with this plan; `null` when it was only explained on request.
    pub p95_ms: Option<f64>,
    /// Node labels in depth-first order, for logs and lists.
    pub summary: String,
    /// The masked `"Plan"` object of the latest explain with this shape.
    pub plan: serde_json::Value,
    #[serde(skip)]
    last: SystemTime,
}

#[derive(Default)]
struct Shapes {
    /// Most recently seen last.
    plans: Vec<PlanRecord>,
    /// The shape hash of the latest explain: a different one next is a plan change.
    current: Option<String>,
    last: Option<SystemTime>,
}

/// Plans by fingerprint.
pub struct PlanStore {
    max_plans: usize,
    max_shapes: usize,
    shapes: Mutex<HashMap<u64, Shapes>>,
    changes: IntCounterVec,
}

impl PlanStore {
    pub fn new(max_plans: usize, max_shapes: usize) -> PlanStore {
        let changes = IntCounterVec::new(
            Opts::new(
                "pgshape_plan_changes_total",
                "Explains of a query shape whose plan shape differed from its previous plan.",
            ),
            &["fingerprint"],
        )
        .expect("valid metric definition");
        PlanStore {
            max_plans,
            max_shapes,
            shapes: Mutex::new(HashMap::new()),
            changes,
        }
    }

    /// Registers `pgshape_plan_changes_total`.
    ///
    /// # Errors
    /// When the registry already holds a metric of that name.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.changes.clone()))
    }

    /// Records an explain's plan; `true` when it is a plan change (the fingerprint had a
    /// different shape at its previous explain), which is counted and logged.
    pub fn record(
        &self,
        fingerprint: Fingerprint,
        database: &str,
        shape_hash: &str,
        plan: &serde_json::Value,
        p95_ms: Option<f64>,
    ) -> bool {
        let now = SystemTime::now();
        let at = crate::stats::rfc3339(now);
        let summary = super::shape::summary(plan);
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if !shapes.contains_key(&fingerprint.0) && shapes.len() >= self.max_shapes {
            let oldest = shapes.iter().min_by_key(|(_, s)| s.last).map(|(fp, _)| *fp);
            if let Some(oldest) = oldest {
                shapes.remove(&oldest);
                let _ = self
                    .changes
                    .remove_label_values(&[&Fingerprint(oldest).to_string()]);
            }
        }
        let entry = shapes.entry(fingerprint.0).or_default();
        // The series exists at 0 from the first explain, so the first plan change is an
        // `increase()` Prometheus can see (a counter born at 1 shows none).
        let changes = self.changes.with_label_values(&[&fingerprint.to_string()]);
        let previous = entry.current.replace(shape_hash.to_owned());
        entry.last = Some(now);
        let changed = previous.as_deref().is_some_and(|p| p != shape_hash);
        if changed {
            let before = entry
                .plans
                .iter()
                .find(|p| Some(&p.shape_hash) == previous.as_ref());
            let before_p95_ms = before.and_then(|p| p.p95_ms);
            let before = before.map(|p| p.summary.clone()).unwrap_or_default();
            changes.inc();
            tracing::warn!(
                fingerprint = %fingerprint,
                database,
                previous_shape = previous.as_deref().unwrap_or(""),
                shape = shape_hash,
                before = %before,
                after = %summary,
                before_p95_ms,
                p95_ms,
                "plan change"
            );
        }
        match entry.plans.iter().position(|p| p.shape_hash == shape_hash) {
            Some(i) => {
                let mut record = entry.plans.remove(i);
                record.last_seen = at;
                record.last = now;
                record.seen += 1;
                record.p95_ms = p95_ms.or(record.p95_ms);
                record.plan = plan.clone();
                record.database = database.to_owned();
                entry.plans.push(record);
            }
            None => {
                if entry.plans.len() >= self.max_plans {
                    entry.plans.remove(0);
                }
                entry.plans.push(PlanRecord {
                    shape_hash: shape_hash.to_owned(),
                    database: database.to_owned(),
                    first_seen: at.clone(),
                    last_seen: at,
                    seen: 1,
                    p95_ms,
                    summary,
                    plan: plan.clone(),
                    last: now,
                });
            }
        }
        changed
    }

    /// The fingerprint's plans, most recently seen first, and its current shape hash.
    pub fn plans(&self, fingerprint: Fingerprint) -> Option<(Vec<PlanRecord>, Option<String>)> {
        let shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        shapes.get(&fingerprint.0).map(|s| {
            let mut plans = s.plans.clone();
            plans.reverse();
            (plans, s.current.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PlanStore;
    use crate::sql::Fingerprint;
    use serde_json::json;

    #[test]
    fn a_new_shape_is_a_change_and_plans_are_bounded() {
        let store = PlanStore::new(2, 1);
        let fp = Fingerprint(7);
        let plan = json!({"Node Type": "Seq Scan"});
        assert!(!store.record(fp, "db", "a", &plan, None));
        assert!(!store.record(fp, "db", "a", &plan, None));
        assert!(store.record(fp, "db", "b", &plan, Some(12.5)));
        assert!(store.record(fp, "db", "c", &plan, None));
        let (plans, current) = store.plans(fp).unwrap();
        let hashes: Vec<_> = plans.iter().map(|p| p.shape_hash.as_str()).collect();
        assert_eq!(hashes, ["c", "b"]);
        assert_eq!(plans[1].p95_ms, Some(12.5));
        assert_eq!(plans[0].p95_ms, None);
        assert_eq!(current.as_deref(), Some("c"));
        assert_eq!(store.changes.with_label_values(&[&fp.to_string()]).get(), 2);
        let unchanged = Fingerprint(9);
        store.shapes.lock().unwrap().clear();
        assert!(!store.record(unchanged, "db", "a", &plan, None));
        assert_eq!(
            store
                .changes
                .with_label_values(&[&unchanged.to_string()])
                .get(),
            0
        );
        // A second fingerprint pushes the first out (max_shapes = 1), metric series too.
        assert!(!store.record(Fingerprint(8), "db", "a", &plan, None));
        assert!(store.plans(fp).is_none());
    }
}
