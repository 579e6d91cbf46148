//! OpenMetrics 1.0 text exposition of a `prometheus::Registry`'s families, with exemplars.
//!
//! Why hand-written: exemplars (a trace id on a histogram bucket, the link from a slow
//! percentile to the trace of a slow statement) exist only in OpenMetrics, the `prometheus`
//! crate's encoder writes the 0.0.4 text format without them, and `prometheus-client`'s
//! `Exemplar` cannot be built outside that crate. The format is small; what it demands beyond
//! 0.0.4, and what this writer does about it:
//! - counter families are named without `_total`, their sample is `<family>_total`;
//! - histograms end with an explicit `+Inf` bucket, then `_count` and `_sum`; `le` values are
//!   canonical numbers (`60.0`, `0.0005`: always a decimal point);
//! - an exemplar is ` # {labels} value timestamp` after a bucket sample, on the bucket whose
//!   range holds its value; its label names and values together must not exceed 128 characters
//!   (longer ones are dropped, not truncated: a cut trace id would link to nothing);
//! - label values and HELP escape `\`, `"` and newline; the exposition ends with `# EOF`.
//!
//! [`negotiate`] picks the format from the scraper's `Accept` header, as Prometheus asks for
//! OpenMetrics first when it wants exemplars.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::proto::{Metric, MetricFamily, MetricType};

#[cfg(test)]
#[path = "openmetrics_tests.rs"]
mod tests;

/// `Content-Type` of an OpenMetrics exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics limit on an exemplar's label names and values, in characters.
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// A sample of one series that stands for its neighbours: a trace of a slow statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// E.g. `trace_id` and `span_id`.
    pub labels: Vec<(&'static str, String)>,
    /// The observed value, in the family's unit.
    pub value: f64,
    /// When it was observed.
    pub timestamp: Option<SystemTime>,
}

impl Exemplar {
    fn label_chars(&self) -> usize {
        self.labels
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum()
    }
}

/// Exemplars by series: family name, then index of the metric in that family.
#[derive(Debug, Default)]
pub struct Exemplars(HashMap<String, HashMap<usize, Exemplar>>);

impl Exemplars {
    /// Attaches `exemplar` to the `index`-th metric of family `family`.
    pub fn insert(&mut self, family: &str, index: usize, exemplar: Exemplar) {
        self.0
            .entry(family.to_owned())
            .or_default()
            .insert(index, exemplar);
    }

    /// The exemplar of the `index`-th metric of `family`, if any.
    pub fn get(&self, family: &str, index: usize) -> Option<&Exemplar> {
        self.0.get(family)?.get(&index)
    }

    /// How many series have one.
    pub fn len(&self) -> usize {
        self.0.values().map(HashMap::len).sum()
    }

    /// True when no series has one.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Exposition formats a scraper can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (no exemplars).
    Prometheus,
    /// OpenMetrics 1.0 text (with exemplars).
    OpenMetrics,
}

/// The format an `Accept` header prefers: OpenMetrics when its quality is positive and at
/// least that of `text/plain` (or of a wildcard when `text/plain` is not listed); the
/// Prometheus text format otherwise, and when there is no header.
///
/// Prometheus sends `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    let (mut openmetrics, mut text, mut wildcard) = (0.0f64, None::<f64>, 0.0f64);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0;
        let mut version_ok = true;
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                // The versions whose text syntax this writer produces.
                "version" => version_ok = matches!(v.trim(), "1.0.0" | "0.0.1"),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version_ok => openmetrics = openmetrics.max(q),
            "text/plain" => text = Some(text.unwrap_or(0.0).max(q)),
            "*/*" | "text/*" => wildcard = wildcard.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text.unwrap_or(wildcard) {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// Writes `families` as OpenMetrics text, `exemplars` on the histogram buckets they fall in.
pub fn encode(families: &[MetricFamily], exemplars: &Exemplars, out: &mut String) {
    for family in families {
        encode_family(family, exemplars, out);
    }
    out.push_str("# EOF\n");
}

fn encode_family(family: &MetricFamily, exemplars: &Exemplars, out: &mut String) {
    let kind = family.get_field_type();
    let name = match kind {
        MetricType::COUNTER => family
            .name()
            .strip_suffix("_total")
            .unwrap_or(family.name()),
        _ => family.name(),
    };
    let type_name = match kind {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "unknown",
    };
    let _ = writeln!(out, "# TYPE {name} {type_name}");
    if let Some(unit) = ["seconds", "bytes"]
        .into_iter()
        .find(|u| name.ends_with(&format!("_{u}")))
    {
        let _ = writeln!(out, "# UNIT {name} {unit}");
    }
    if !family.help().is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_into(family.help(), out);
        out.push('\n');
    }
    for (index, metric) in family.get_metric().iter().enumerate() {
        match kind {
            MetricType::COUNTER => {
                let value = metric.get_counter().get_value();
                sample(out, (name, "_total"), metric, None, value, None);
            }
            MetricType::GAUGE => {
                let value = metric.get_gauge().get_value();
                sample(out, (name, ""), metric, None, value, None);
            }
            MetricType::UNTYPED => {
                // Deprecated in the crate (nothing it makes is untyped); a custom collector may.
                #[allow(deprecated)]
                let value = metric.get_untyped().get_value();
                sample(out, (name, ""), metric, None, value, None);
            }
            MetricType::HISTOGRAM => histogram(
                out,
                name,
                metric,
                exemplars.get(family.name(), index).filter(|e| {
                    let fits = e.label_chars() <= MAX_EXEMPLAR_LABEL_CHARS;
                    if !fits {
                        tracing::debug!(family = name, "exemplar labels over 128 characters");
                    }
                    fits
                }),
            ),
            MetricType::SUMMARY => {
                let s = metric.get_summary();
                for q in s.get_quantile() {
                    let quantile = canonical(q.quantile());
                    let extra = Some(("quantile", quantile.as_str()));
                    sample(out, (name, ""), metric, extra, q.value(), None);
                }
                let count = s.sample_count() as f64;
                sample(out, (name, "_count"), metric, None, count, None);
                sample(out, (name, "_sum"), metric, None, s.sample_sum(), None);
            }
        }
    }
}

fn histogram(out: &mut String, name: &str, metric: &Metric, exemplar: Option<&Exemplar>) {
    let h = metric.get_histogram();
    let mut exemplar = exemplar;
    let mut lower = f64::NEG_INFINITY;
    let mut write_bucket = |le: f64, count: u64, out: &mut String| {
        let le_text = canonical(le);
        // The bucket whose range (lower, le] holds the exemplar's value carries it.
        let here = exemplar.filter(|e| e.value > lower && e.value <= le);
        if here.is_some() {
            exemplar = None;
        }
        let extra = Some(("le", le_text.as_str()));
        sample(out, (name, "_bucket"), metric, extra, count as f64, here);
        lower = le;
    };
    for b in h.get_bucket() {
        if b.upper_bound().is_infinite() {
            continue; // written below with the total count
        }
        write_bucket(b.upper_bound(), b.cumulative_count(), out);
    }
    write_bucket(f64::INFINITY, h.get_sample_count(), out);
    let count = h.get_sample_count() as f64;
    sample(out, (name, "_count"), metric, None, count, None);
    sample(out, (name, "_sum"), metric, None, h.get_sample_sum(), None);
}

/// One sample line, `<name><suffix>{labels} value`, with an exemplar when given.
fn sample(
    out: &mut String,
    (name, suffix): (&str, &str),
    metric: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
    exemplar: Option<&Exemplar>,
) {
    out.push_str(name);
    out.push_str(suffix);
    let labels = metric.get_label();
    if !labels.is_empty() || extra.is_some() {
        let pairs = labels.iter().map(|l| (l.name(), l.value())).chain(extra);
        label_set(out, pairs);
    }
    out.push(' ');
    number(value, out);
    if let Some(e) = exemplar {
        exemplar_suffix(out, e);
    }
    out.push('\n');
}

fn exemplar_suffix(out: &mut String, e: &Exemplar) {
    out.push_str(" # ");
    label_set(out, e.labels.iter().map(|(k, v)| (*k, v.as_str())));
    out.push(' ');
    number(e.value, out);
    if let Some(ts) = e.timestamp {
        let d = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let _ = write!(out, " {}.{:03}", d.as_secs(), d.subsec_millis());
    }
}

fn label_set<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_into(v, out);
        out.push('"');
    }
    out.push('}');
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: integers without a fraction, the special values as OpenMetrics spells them.
fn number(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A canonical number for `le` and `quantile`: always with a decimal point (`1.0`, `0.25`),
/// as other OpenMetrics writers produce, so a bucket keeps one label value across scrapers.
fn canonical(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let s = format!("{v}");
    if s.contains('.') || v.is_nan() {
        s
    } else {
        format!("{s}.0")
    }
}
