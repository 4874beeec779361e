//! Cumulative histograms as Prometheus exposes them (Envoy's `upstream_rq_time`): the
//! difference of two readings, the sum over Envoys, and percentiles read from the buckets.
//!
//! Pure: nothing here reads a clock, a file or the network.

/// One bucket of a cumulative histogram: how many observations were at most `le`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The upper bound (inclusive); `f64::INFINITY` for the last bucket.
    pub le: f64,
    /// Observations at most `le` (cumulative).
    pub count: u64,
}

/// A cumulative histogram as Prometheus exposes it (`_bucket{le="..."}`), buckets ordered by
/// `le`. Envoy's are cumulative since it started; the difference of two readings is the
/// histogram of the time between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<Bucket>,
}

/// A percentile read from a histogram.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Quantile {
    /// The value, in the histogram's unit (milliseconds for Envoy's `upstream_rq_time`).
    pub value: f64,
    /// The percentile fell in the `+Inf` bucket: `value` is the largest finite bound, and the
    /// truth is at least that.
    pub capped: bool,
}

impl Histogram {
    /// A histogram from `(le, cumulative count)` pairs in any order.
    pub fn new(mut buckets: Vec<Bucket>) -> Histogram {
        buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
        Histogram { buckets }
    }

    /// The number of observations (the `+Inf` bucket, or the largest bucket there is).
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.count)
    }

    /// The histogram of what happened between `earlier` and `self`: bucket by bucket
    /// differences. `None` when a bucket went down or the bounds differ: the source restarted
    /// (or was reconfigured) in between, and the caller decides what to do.
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        if earlier.buckets.is_empty() {
            return Some(self.clone());
        }
        if earlier.buckets.len() != self.buckets.len() {
            return None;
        }
        self.buckets
            .iter()
            .zip(&earlier.buckets)
            .map(|(now, then)| {
                let count = now.count.checked_sub(then.count)?;
                (now.le == then.le).then_some(Bucket { le: now.le, count })
            })
            .collect::<Option<Vec<_>>>()
            .map(|buckets| Histogram { buckets })
    }

    /// The sum of two histograms (two Envoys). With different bounds, the union of the bounds,
    /// each side counting what it knows to be at most that bound (its largest bucket below):
    /// an undercount inside the odd buckets, never an invented observation. Counts saturate at
    /// `u64::MAX`.
    pub fn add(&self, other: &Histogram) -> Histogram {
        if self.buckets.is_empty() {
            return other.clone();
        }
        if other.buckets.is_empty() {
            return self.clone();
        }
        let mut bounds: Vec<f64> = self
            .buckets
            .iter()
            .chain(&other.buckets)
            .map(|b| b.le)
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let at = |h: &Histogram, le: f64| {
            h.buckets
                .iter()
                .take_while(|b| b.le <= le)
                .last()
                .map_or(0, |b| b.count)
        };
        Histogram {
            buckets: bounds
                .into_iter()
                .map(|le| Bucket {
                    le,
                    count: at(self, le).saturating_add(at(other, le)),
                })
                .collect(),
        }
    }

    /// The `q`-quantile (0 <= q <= 1), as Prometheus' `histogram_quantile` computes it: find
    /// the bucket holding rank `q * count` and interpolate linearly inside it, the first
    /// bucket starting at 0 (a latency is never negative). When the rank falls in the `+Inf`
    /// bucket, the largest finite bound is returned, marked `capped`. `None` without
    /// observations, without a `+Inf` bucket, or without a finite bucket.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let last = self.buckets.last()?;
        if last.le != f64::INFINITY || self.buckets.len() < 2 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total = last.count;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        // The first bucket whose cumulative count reaches the rank.
        let i = self
            .buckets
            .iter()
            .position(|b| b.count as f64 >= rank)
            .unwrap_or(self.buckets.len() - 1);
        if i == self.buckets.len() - 1 {
            return Some(Quantile {
                value: self.buckets[i - 1].le,
                capped: true,
            });
        }
        let end = self.buckets[i].le;
        let (start, below) = if i == 0 {
            if end <= 0.0 {
                return Some(Quantile {
                    value: end,
                    capped: false,
                });
            }
            (0.0, 0)
        } else {
            (self.buckets[i - 1].le, self.buckets[i - 1].count)
        };
        let inside = self.buckets[i].count.saturating_sub(below);
        let value = if inside == 0 {
            end
        } else {
            start + (end - start) * (rank - below as f64) / inside as f64
        };
        Some(Quantile {
            value,
            capped: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, rel: f64) {
        let tol = rel * expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            (actual - expected).abs() <= tol,
            "{actual:e} is not within {rel:e} of {expected:e}"
        );
    }

    fn hist(pairs: &[(f64, u64)]) -> Histogram {
        Histogram::new(
            pairs
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
        )
    }

    /// The worked example of Prometheus' documentation style: buckets 0.5, 1, 2, +Inf with
    /// cumulative counts 10, 20, 40, 40. The median (rank 20) ends bucket `le=1` exactly: 1.0.
    /// p90 (rank 36) is 16/20 into (1, 2]: 1.8. p10 (rank 4) is 4/10 into (0, 0.5]: 0.2.
    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let h = hist(&[(0.5, 10), (1.0, 20), (2.0, 40), (f64::INFINITY, 40)]);
        close(h.quantile(0.5).unwrap().value, 1.0, 1e-12);
        close(h.quantile(0.9).unwrap().value, 1.8, 1e-12);
        close(h.quantile(0.1).unwrap().value, 0.2, 1e-12);
        assert!(!h.quantile(0.99).unwrap().capped);
        // Rank in +Inf: the largest finite bound, capped.
        let h = hist(&[(0.5, 1), (1.0, 2), (f64::INFINITY, 100)]);
        assert_eq!(
            h.quantile(0.99),
            Some(Quantile {
                value: 1.0,
                capped: true
            })
        );
        // Nothing observed, no +Inf bucket, a lone bucket: no answer.
        assert_eq!(hist(&[(1.0, 0), (f64::INFINITY, 0)]).quantile(0.5), None);
        assert_eq!(hist(&[(1.0, 3), (2.0, 5)]).quantile(0.5), None);
        assert_eq!(hist(&[(f64::INFINITY, 5)]).quantile(0.5), None);
    }

    #[test]
    fn a_window_is_the_difference_of_two_cumulative_readings() {
        let before = hist(&[(1.0, 1000), (10.0, 1050), (f64::INFINITY, 1050)]);
        let after = hist(&[(1.0, 1000), (10.0, 1150), (f64::INFINITY, 1152)]);
        let w = after.since(&before).unwrap();
        assert_eq!(w, hist(&[(1.0, 0), (10.0, 100), (f64::INFINITY, 102)]));
        // Inside the window everything took over 1 ms: the median is in (1, 10], not at the
        // 0.58 ms the totals since start would say.
        close(
            w.quantile(0.5).unwrap().value,
            1.0 + 9.0 * 51.0 / 100.0,
            1e-12,
        );
        assert!(after.quantile(0.5).unwrap().value < 1.0);
        // A restart in between (a count went down) is not a window.
        assert_eq!(before.since(&after), None);
        // Different bounds are not comparable either.
        assert_eq!(after.since(&hist(&[(2.0, 1), (f64::INFINITY, 1)])), None);
        assert_eq!(after.since(&Histogram::default()), Some(after.clone()));
    }

    #[test]
    fn histograms_of_two_envoys_add_up() {
        let a = hist(&[(1.0, 1), (2.0, 3), (f64::INFINITY, 4)]);
        let b = hist(&[(1.0, 2), (2.0, 2), (f64::INFINITY, 5)]);
        assert_eq!(a.add(&b), hist(&[(1.0, 3), (2.0, 5), (f64::INFINITY, 9)]));
        // Other bounds: the union, each side counting what is surely below.
        let c = hist(&[(1.5, 2), (f64::INFINITY, 2)]);
        assert_eq!(
            a.add(&c),
            hist(&[(1.0, 1), (1.5, 3), (2.0, 5), (f64::INFINITY, 6)])
        );
        assert_eq!(Histogram::default().add(&a), a);
        // Counts at the top saturate rather than overflow.
        let top = hist(&[(1.0, 1), (2.0, u64::MAX), (f64::INFINITY, u64::MAX)]);
        assert_eq!(
            top.add(&a),
            hist(&[(1.0, 2), (2.0, u64::MAX), (f64::INFINITY, u64::MAX)])
        );
        let top = hist(&[(1.0, u64::MAX), (2.0, u64::MAX), (f64::INFINITY, u64::MAX)]);
        assert_eq!(top.add(&a), top);
    }
}
