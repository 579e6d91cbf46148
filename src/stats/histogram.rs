//! Latency histogram with a bounded relative error, for percentiles per fingerprint.
//!
//! Why not the `prometheus` histogram: its fixed buckets (0.5 ms, 1 ms, 2.5 ms, ...) give
//! percentiles that are off by up to the bucket width, i.e. by 100 % or more. Why not a full
//! DDSketch: computing `ln()` per update costs more than the rest of the update together.
//!
//! This is a log-linear histogram over nanoseconds (the HdrHistogram layout): values below
//! 128 ns are counted exactly; above, every power-of-two range is split into 64 equal
//! sub-buckets, found with one `leading_zeros` and a shift. A bucket `[lo, lo + w)` has
//! `w / lo <= 1/64`, so reporting its midpoint is within 1/128 (0.78 %) of any value in it.
//! Only the span of buckets actually hit is stored (a statement whose latencies spread over
//! 100 µs..100 ms uses ~640 buckets, 5 KiB); the span is capped at [`MAX_SPAN`] buckets
//! (32 octaves, e.g. 1 µs to 71 min at full precision) by folding the lowest buckets into
//! their neighbour, as DDSketch's collapsing store does, so high percentiles keep their
//! accuracy and memory stays bounded at 16 KiB per histogram.

/// Sub-buckets per power of two: 2^6 = 64 gives a worst-case relative error of 1/128.
const SUB_BITS: u32 = 6;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Most buckets one histogram keeps.
pub const MAX_SPAN: usize = 2048;
/// Buckets reserved up front so that a typical latency spread never reallocates on the hot path.
const INITIAL_CAPACITY: usize = 192;

/// Bucket index of a value in nanoseconds. Monotonic in `v`.
#[inline]
pub fn bucket_index(v: u64) -> u32 {
    if v < 2 * SUB_COUNT {
        return v as u32;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let mantissa = v >> shift; // in [64, 128)
    shift * SUB_COUNT as u32 + mantissa as u32
}

/// Inclusive lower and exclusive upper bound (nanoseconds) of bucket `idx`.
pub fn bucket_bounds(idx: u32) -> (u64, u64) {
    let idx = u64::from(idx);
    if idx < 2 * SUB_COUNT {
        return (idx, idx + 1);
    }
    let shift = idx / SUB_COUNT - 1;
    let mantissa = idx - shift * SUB_COUNT;
    let lo = mantissa << shift;
    (lo, lo.saturating_add(1 << shift))
}

/// The value reported for a bucket: the midpoint, within 1/128 of anything counted in it.
pub fn bucket_value(idx: u32) -> f64 {
    let (lo, hi) = bucket_bounds(idx);
    if hi - lo == 1 {
        lo as f64
    } else {
        (lo as f64 + hi as f64) / 2.0
    }
}

/// Counts per bucket over the contiguous span `[base, base + counts.len())`.
#[derive(Debug, Clone, Default)]
pub struct LogHistogram {
    base: u32,
    counts: Vec<u64>,
    total: u64,
}

impl LogHistogram {
    /// An empty histogram; allocates nothing until the first value.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one value (nanoseconds).
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.record_n(bucket_index(v), 1);
    }

    fn record_n(&mut self, idx: u32, n: u64) {
        self.total += n;
        if self.counts.is_empty() {
            self.counts.reserve(INITIAL_CAPACITY);
            self.base = idx;
            self.counts.push(n);
            return;
        }
        let top = self.base + self.counts.len() as u32 - 1;
        if idx > top {
            self.counts.resize((idx - self.base) as usize + 1, 0);
            self.collapse_low();
        } else if idx < self.base {
            let lowest = top.saturating_sub(MAX_SPAN as u32 - 1);
            // Below the window: fold into the lowest bucket kept (only low quantiles suffer).
            let new_base = idx.max(lowest);
            let grow = (self.base - new_base) as usize;
            if grow > 0 {
                self.counts.splice(0..0, std::iter::repeat_n(0, grow));
                self.base = new_base;
            }
        }
        let slot = idx.saturating_sub(self.base) as usize;
        self.counts[slot] += n;
    }

    /// Keeps the span within `MAX_SPAN` by merging the lowest buckets upwards.
    fn collapse_low(&mut self) {
        let len = self.counts.len();
        if len <= MAX_SPAN {
            return;
        }
        let excess = len - MAX_SPAN;
        let folded: u64 = self.counts.drain(..excess).sum();
        self.counts[0] += folded;
        self.base += excess as u32;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1) by nearest rank, in nanoseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(self.base + i as u32));
            }
        }
        // Unreachable while `total` equals the sum of counts; the top bucket is the safe answer.
        Some(bucket_value(self.base + self.counts.len() as u32 - 1))
    }

    /// Non-empty buckets as `(lower_ns, upper_ns, count)`, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| {
                let (lo, hi) = bucket_bounds(self.base + i as u32);
                (lo, hi, c)
            })
    }

    /// Takes back one recorded value `v` (its bucket, or the lowest kept one it was folded
    /// into); a no-op when the histogram holds no such value.
    pub fn remove_one(&mut self, v: u64) {
        if self.counts.is_empty() {
            return;
        }
        let slot = bucket_index(v).saturating_sub(self.base) as usize;
        if let Some(c) = self.counts.get_mut(slot)
            && *c > 0
        {
            *c -= 1;
            self.total -= 1;
        }
    }

    /// The values recorded since `earlier`, a copy of this histogram taken before: per-bucket
    /// differences. When low buckets were folded in between, the lowest bucket kept absorbs
    /// what `earlier` had below it, so the difference stays right there too.
    pub fn since(&self, earlier: &LogHistogram) -> LogHistogram {
        let mut out = LogHistogram::new();
        for (i, &c) in self.counts.iter().enumerate().rev() {
            let idx = self.base + i as u32;
            let before = if i == 0 {
                earlier.count_up_to(idx)
            } else {
                earlier.count_at(idx)
            };
            let d = c.saturating_sub(before);
            if d > 0 {
                out.record_n(idx, d);
            }
        }
        out
    }

    fn count_at(&self, idx: u32) -> u64 {
        idx.checked_sub(self.base)
            .and_then(|slot| self.counts.get(slot as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Counts in buckets `<= idx`.
    fn count_up_to(&self, idx: u32) -> u64 {
        let Some(slots) = (idx + 1).checked_sub(self.base) else {
            return 0;
        };
        self.counts.iter().take(slots as usize).sum()
    }

    /// Adds every count of `other` (used when folding evicted entries together).
    pub fn merge(&mut self, other: &LogHistogram) {
        // Highest first so the span grows upwards once and low overflow folds predictably.
        for (i, &c) in other.counts.iter().enumerate().rev() {
            if c > 0 {
                self.record_n(other.base + i as u32, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible test data without a rand dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn index_is_monotonic_and_bounds_contain_value() {
        let mut prev = 0;
        for v in (0..5000u64).chain((0..60).map(|s| (1u64 << s) + 12345)) {
            let idx = bucket_index(v);
            let (lo, hi) = bucket_bounds(idx);
            assert!(lo <= v && v < hi, "{v} not in [{lo},{hi}) idx {idx}");
            if v < 5000 {
                assert!(idx >= prev);
                prev = idx;
            }
        }
        assert!(bucket_index(u64::MAX) > bucket_index(u64::MAX / 2));
    }

    #[test]
    fn quantiles_within_one_percent_of_exact() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Log-uniform from 20 µs to 2 s: the spread real statement latencies have.
        let mut data: Vec<u64> = (0..200_000)
            .map(|_| (20_000.0 * (100_000f64).powf(rng.unit())) as u64)
            .collect();
        let mut h = LogHistogram::new();
        for &v in &data {
            h.record(v);
        }
        data.sort_unstable();
        for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let rank = ((q * data.len() as f64).ceil() as usize).max(1);
            let exact = data[rank - 1] as f64;
            let est = h.quantile(q).unwrap_or(f64::NAN);
            let err = (est - exact).abs() / exact;
            assert!(err <= 0.01, "q={q}: exact {exact} est {est} err {err}");
        }
    }

    #[test]
    fn span_is_capped_and_high_quantiles_survive() {
        let mut h = LogHistogram::new();
        for v in [
            1u64,
            10,
            1_000,
            1_000_000,
            1_000_000_000,
            3_600_000_000_000,
            1 << 50,
        ] {
            h.record(v);
        }
        assert!(h.counts.len() <= MAX_SPAN);
        assert_eq!(h.count(), 7);
        let max = h.quantile(1.0).unwrap_or(0.0);
        let top = (1u64 << 50) as f64;
        assert!((max - top).abs() / top < 0.01, "max {max}");
        // Recording below the window still counts.
        h.record(5);
        assert_eq!(h.count(), 8);
        assert_eq!(h.buckets().map(|b| b.2).sum::<u64>(), 8);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut rng = Rng(42);
        let (mut a, mut b, mut all) = (
            LogHistogram::new(),
            LogHistogram::new(),
            LogHistogram::new(),
        );
        for i in 0..10_000 {
            let v = 1_000 + rng.next() % 50_000_000;
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(
            a.buckets().collect::<Vec<_>>(),
            all.buckets().collect::<Vec<_>>()
        );
    }

    #[test]
    fn since_holds_exactly_the_later_values() {
        let mut rng = Rng(7);
        let mut h = LogHistogram::new();
        for _ in 0..5_000 {
            h.record(10_000 + rng.next() % 1_000_000);
        }
        let earlier = h.clone();
        let mut later = LogHistogram::new();
        for _ in 0..300 {
            let v = 50_000_000 + rng.next() % 10_000_000;
            h.record(v);
            later.record(v);
        }
        let d = h.since(&earlier);
        assert_eq!(d.count(), 300);
        assert_eq!(
            d.buckets().collect::<Vec<_>>(),
            later.buckets().collect::<Vec<_>>()
        );
        assert_eq!(h.since(&h).count(), 0);
        // Folding the low buckets after the copy: the lowest bucket kept nets out.
        h.record(1 << 50);
        let d = h.since(&earlier);
        assert_eq!(d.count(), 301);
    }

    #[test]
    fn empty_has_no_quantile() {
        assert_eq!(LogHistogram::new().quantile(0.5), None);
    }
}
