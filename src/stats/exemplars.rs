//! Trace exemplars for the latency histogram: for each exported series, the `traceparent` of
//! its slowest recent statement as an OpenMetrics exemplar (`trace_id`, `span_id`; the labels
//! Grafana and the OpenTelemetry exporters use), so a slow bucket links to a trace.
//!
//! Matched to series by their labels rather than computed alongside them: the families come
//! from a `registry.gather()` that ran the collector, and a series (`fingerprint`, `database`,
//! `user`) names its entry; `other` takes the slowest exemplar among the entries folded into
//! it, so whatever the top K was at that scrape, each exemplar belongs to its series.

use std::collections::HashMap;

use prometheus::proto::MetricFamily;

use super::Stats;
use super::entry::{EntryData, Exemplar as Traced};
use super::prom::DURATION;
use super::snapshot::OTHER;
use crate::openmetrics::{Exemplar, Exemplars};
use crate::sql::Fingerprint;

/// `trace_id` and `span_id` of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), or
/// `None` when it is not one (all-zero ids and version `ff` are invalid by the spec).
pub fn trace_ids(traceparent: &str) -> Option<(&str, &str)> {
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    (hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && !zero(trace)
        && hex(span, 16)
        && !zero(span)
        && hex(flags, 2))
    .then_some((trace, span))
}

impl Stats {
    /// Exemplars for the `pgshape_query_duration_seconds` series among `families` (the output
    /// of a `gather()` of the registry holding these statistics).
    pub fn exemplars(&self, families: &[MetricFamily]) -> Exemplars {
        let mut out = Exemplars::default();
        let Some(family) = families.iter().find(|f| f.name() == DURATION) else {
            return out;
        };
        // Series index by (fingerprint, database, user); `other` by (database, user).
        let mut own: HashMap<(u64, &str, &str), usize> = HashMap::new();
        let mut folded: HashMap<(&str, &str), usize> = HashMap::new();
        for (index, metric) in family.get_metric().iter().enumerate() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map_or("", |l| l.value())
            };
            let (fp, db, user) = (label("fingerprint"), label("database"), label("user"));
            if fp == OTHER {
                folded.insert((db, user), index);
            } else if let Ok(fp) = fp.parse::<Fingerprint>() {
                own.insert((fp.0, db, user), index);
            }
        }
        let mut best: HashMap<usize, Traced> = HashMap::new();
        let mut offer = |index: usize, data: &EntryData| {
            if let Some(ex) = &data.exemplar {
                let slower = best
                    .get(&index)
                    .is_none_or(|b| ex.duration_ns > b.duration_ns);
                if slower {
                    best.insert(index, ex.clone());
                }
            }
        };
        for e in self.entries.iter() {
            let (key, entry) = (e.key(), e.value());
            let series = own
                .get(&(key.fingerprint, &key.database, &key.user))
                .or_else(|| folded.get(&(&key.database, &key.user)));
            if let Some(&index) = series {
                offer(index, &entry.lock());
            }
        }
        for ((db, user), data) in super::lock(&self.other).iter() {
            if let Some(&index) = folded.get(&(&**db, &**user)) {
                offer(index, data);
            }
        }
        for (index, ex) in best {
            if let Some((trace, span)) = trace_ids(&ex.traceparent) {
                out.insert(
                    DURATION,
                    index,
                    Exemplar {
                        labels: vec![("trace_id", trace.to_owned()), ("span_id", span.to_owned())],
                        value: ex.duration_ns as f64 / 1e9,
                        timestamp: Some(self.wall(ex.at)),
                    },
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::trace_ids;

    #[test]
    fn traceparent_fields_are_checked() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_ids(ok),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        // A later version may carry more fields.
        assert!(trace_ids("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some());
        for bad in [
            "",
            "00-bbb-01-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(trace_ids(bad), None, "{bad:?}");
        }
    }
}
