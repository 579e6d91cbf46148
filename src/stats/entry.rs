//! What is kept per (fingerprint, database, user), and how one statement updates it.
//!
//! One small mutex per entry rather than a dozen atomics: an update touches ~10 fields
//! (calls, time, Welford moments, min, max, histogram, buckets, last seen), and one
//! uncontended lock is cheaper than ten atomic read-modify-writes, keeps the fields mutually
//! consistent for readers, and is never held across anything slower than this update.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::histogram::LogHistogram;
use super::text::{self, RawTags};

/// sqlcommenter tags that attribute a statement to an endpoint.
pub const ROUTE_TAGS: [&str; 3] = ["route", "controller", "action"];

/// Longest tag value kept, in bytes (raw, as sent). Tags come from clients: without a cap a
/// megabyte-long route would be stored `max_routes × max_fingerprints` times.
pub const MAX_TAG_VALUE: usize = 256;

/// One entry: immutable identity plus the mutable counters behind their lock.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Normalized text, computed once when the entry is created.
    pub query: Box<str>,
    data: Mutex<EntryData>,
}

impl Entry {
    pub fn new(query: Box<str>, data: EntryData) -> Self {
        Entry {
            query,
            data: Mutex::new(data),
        }
    }

    /// The counters. A panic while holding the lock cannot leave them worse than slightly
    /// inconsistent numbers, so a poisoned lock is used as is rather than losing statistics.
    pub fn lock(&self) -> MutexGuard<'_, EntryData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Space-Saving counter of one tag value: the top values survive in bounded memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteCount {
    /// `route`, `controller` or `action`.
    pub tag: &'static str,
    /// URL-decoded value.
    pub value: String,
    /// The value as sent (URL-encoded): what the hot path compares, without decoding.
    #[serde(skip)]
    pub raw: String,
    /// Statements seen with this value (an over-estimate by at most the count of the value it
    /// replaced, as in the Space-Saving algorithm).
    pub count: u64,
}

/// `traceparent` of the slowest recent statement: a link from a slow percentile to a trace.
#[derive(Debug, Clone)]
pub(crate) struct Exemplar {
    pub traceparent: String,
    pub duration_ns: u64,
    pub at: Instant,
}

/// Per-statement inputs, gathered once by the caller.
pub(crate) struct Sample<'a> {
    pub duration_ns: u64,
    pub rows: u64,
    pub sqlstate: Option<[u8; 5]>,
    pub command: &'a str,
    pub at: Instant,
    pub tags: RawTags<'a>,
    /// The rule whose rewrite ran in place of the statement.
    pub rewritten_by: Option<&'a std::sync::Arc<str>>,
}

/// Calls of one shape split by variant, from its first rewritten call on: before/after of a
/// rewrite on the same fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct RewriteSplit {
    /// The rule of the latest rewritten call.
    pub rule: std::sync::Arc<str>,
    pub rewritten: Variant,
    /// Every call sent as written (those before the first rewrite included).
    pub original: Variant,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Variant {
    pub calls: u64,
    pub total_ns: u64,
    pub hist: LogHistogram,
}

impl Variant {
    fn record(&mut self, x: u64) {
        self.calls += 1;
        self.total_ns = self.total_ns.saturating_add(x);
        self.hist.record(x);
    }

    fn merge(&mut self, other: &Variant) {
        self.calls += other.calls;
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.hist.merge(&other.hist);
    }
}

/// Limits that shape an update, shared by all entries.
pub(crate) struct Limits<'a> {
    /// Prometheus bucket bounds in nanoseconds.
    pub bounds_ns: &'a [u64],
    pub max_routes: usize,
    pub exemplar_window: Duration,
}

/// The counters of one entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryData {
    pub command: String,
    pub calls: u64,
    pub rows: u64,
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Welford's running mean and sum of squared deviations (numerically stable stddev).
    pub mean_ns: f64,
    pub m2: f64,
    /// Error counts by SQLSTATE class (first two characters).
    pub errors: Vec<([u8; 2], u64)>,
    pub hist: LogHistogram,
    /// Non-cumulative counts per Prometheus bucket; the last slot is above the highest bound.
    pub prom_buckets: Box<[u64]>,
    pub routes: Vec<RouteCount>,
    pub exemplar: Option<Exemplar>,
    pub first_seen: Instant,
    pub last_seen: Instant,
    /// Present once a call of this shape was rewritten.
    pub rewrite: Option<Box<RewriteSplit>>,
}

impl EntryData {
    pub fn new(bucket_count: usize, now: Instant) -> Self {
        EntryData {
            command: String::new(),
            calls: 0,
            rows: 0,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            mean_ns: 0.0,
            m2: 0.0,
            errors: Vec::new(),
            hist: LogHistogram::new(),
            prom_buckets: vec![0; bucket_count + 1].into_boxed_slice(),
            routes: Vec::new(),
            exemplar: None,
            first_seen: now,
            last_seen: now,
            rewrite: None,
        }
    }

    /// Counts one statement.
    #[inline]
    pub fn record(&mut self, s: &Sample<'_>, limits: &Limits<'_>) {
        let x = s.duration_ns;
        self.calls += 1;
        self.rows = self.rows.saturating_add(s.rows);
        self.total_ns = self.total_ns.saturating_add(x);
        self.min_ns = self.min_ns.min(x);
        self.max_ns = self.max_ns.max(x);
        let xf = x as f64;
        let delta = xf - self.mean_ns;
        self.mean_ns += delta / self.calls as f64;
        self.m2 += delta * (xf - self.mean_ns);
        self.hist.record(x);
        let slot = limits.bounds_ns.partition_point(|&b| b < x);
        self.prom_buckets[slot] += 1;
        if s.at > self.last_seen {
            self.last_seen = s.at;
        }
        if self.command.is_empty() && !s.command.is_empty() {
            self.command.push_str(s.command);
        }
        if let Some(code) = s.sqlstate {
            self.add_errors([code[0], code[1]], 1);
        }
        if !s.tags.is_empty() {
            self.record_tags(s.tags, x, s.at, limits);
        }
        match s.rewritten_by {
            None => {
                if let Some(split) = &mut self.rewrite {
                    split.original.record(x);
                }
            }
            Some(rule) => self.record_rewritten(rule, x, self.rewrite.is_none()),
        }
    }

    #[cold]
    fn record_rewritten(&mut self, rule: &std::sync::Arc<str>, x: u64, first: bool) {
        if first {
            // Every call so far was sent as written.
            // Every call but this one (already counted above) was sent as written.
            let mut hist = self.hist.clone();
            hist.remove_one(x);
            let original = Variant {
                calls: self.calls.saturating_sub(1),
                total_ns: self.total_ns.saturating_sub(x),
                hist,
            };
            self.rewrite = Some(Box::new(RewriteSplit {
                rule: rule.clone(),
                rewritten: Variant::default(),
                original,
            }));
        }
        if let Some(split) = &mut self.rewrite {
            if split.rule != *rule {
                split.rule = rule.clone();
            }
            split.rewritten.record(x);
        }
    }

    fn add_errors(&mut self, class: [u8; 2], n: u64) {
        match self.errors.iter_mut().find(|(c, _)| *c == class) {
            Some((_, count)) => *count += n,
            None => self.errors.push((class, n)),
        }
    }

    fn record_tags(&mut self, tags: RawTags<'_>, x: u64, at: Instant, limits: &Limits<'_>) {
        let mut traceparent = None;
        for (key, raw) in tags.iter_bytes() {
            if let Some(tag) = ROUTE_TAGS.iter().find(|t| t.as_bytes() == key) {
                self.add_route(tag, raw, 1, limits.max_routes);
            } else if key == b"traceparent" {
                traceparent = Some(raw);
            }
        }
        if let Some(tp) = traceparent
            .and_then(|t| std::str::from_utf8(text::truncate_bytes(t, MAX_TAG_VALUE)).ok())
        {
            let replace = match &self.exemplar {
                None => true,
                Some(ex) => {
                    x >= ex.duration_ns
                        || at.saturating_duration_since(ex.at) > limits.exemplar_window
                }
            };
            if replace {
                let ex = self.exemplar.get_or_insert_with(|| Exemplar {
                    traceparent: String::new(),
                    duration_ns: 0,
                    at,
                });
                // Reuses the buffer: a traceparent is always 55 bytes.
                ex.traceparent.clear();
                ex.traceparent.push_str(tp);
                ex.duration_ns = x;
                ex.at = at;
            }
        }
    }

    /// Counts `n` statements with tag value `raw` (URL-encoded as sent).
    fn add_route(&mut self, tag: &'static str, raw: &[u8], n: u64, max: usize) {
        let raw = text::truncate_bytes(raw, MAX_TAG_VALUE);
        if let Some(r) = self
            .routes
            .iter_mut()
            .find(|r| r.tag == tag && r.raw.as_bytes() == raw)
        {
            r.count += n;
            return;
        }
        // A new value: UTF-8 checking, decoding and allocating happen only here.
        let Ok(raw) = std::str::from_utf8(raw) else {
            return;
        };
        let value = text::decode(raw).into_owned();
        if self.routes.len() < max {
            self.routes.push(RouteCount {
                tag,
                value,
                raw: raw.to_owned(),
                count: n,
            });
            return;
        }
        // Space-Saving: the new value takes the place of the least counted one.
        if let Some(min) = self.routes.iter_mut().min_by_key(|r| r.count) {
            min.tag = tag;
            min.value = value;
            min.raw.clear();
            min.raw.push_str(raw);
            min.count += n;
        }
    }

    /// Adds `other` into `self` (eviction into `other`, and per-fingerprint folding).
    pub fn merge(&mut self, other: &EntryData, max_routes: usize) {
        if other.calls == 0 {
            return;
        }
        let n = self.calls + other.calls;
        let delta = other.mean_ns - self.mean_ns;
        self.m2 += other.m2 + delta * delta * (self.calls as f64) * (other.calls as f64) / n as f64;
        self.mean_ns += delta * other.calls as f64 / n as f64;
        self.calls = n;
        self.rows = self.rows.saturating_add(other.rows);
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.hist.merge(&other.hist);
        for (mine, theirs) in self.prom_buckets.iter_mut().zip(other.prom_buckets.iter()) {
            *mine += theirs;
        }
        for &(class, count) in &other.errors {
            self.add_errors(class, count);
        }
        for r in &other.routes {
            self.add_route(r.tag, r.raw.as_bytes(), r.count, max_routes);
        }
        if let Some(ex) = &other.exemplar
            && self
                .exemplar
                .as_ref()
                .is_none_or(|mine| ex.duration_ns > mine.duration_ns)
        {
            self.exemplar = Some(ex.clone());
        }
        if let Some(theirs) = &other.rewrite {
            match &mut self.rewrite {
                Some(mine) => {
                    mine.original.merge(&theirs.original);
                    mine.rewritten.merge(&theirs.rewritten);
                }
                None => self.rewrite = Some(theirs.clone()),
            }
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        if self.command.is_empty() {
            self.command.clone_from(&other.command);
        }
    }

    /// Population standard deviation, as `pg_stat_statements.stddev_exec_time`.
    pub fn stddev_ns(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            (self.m2 / self.calls as f64).max(0.0).sqrt()
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// A SQLSTATE class as text; the server only sends ASCII, anything else shows as `??`.
pub(crate) fn class_str(class: &[u8; 2]) -> &str {
    match std::str::from_utf8(class) {
        Ok(s) if class.iter().all(u8::is_ascii_alphanumeric) => s,
        _ => "??",
    }
}
