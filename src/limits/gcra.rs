//! GCRA (the generic cell rate algorithm), the arithmetic shared by the in-process limiter and
//! the Redis script (`limit.lua` implements exactly `admit_all` below).
//!
//! A bucket is one number, its theoretical arrival time (TAT). A quota of `rate` per period
//! with `burst` spends one emission interval `T = period / rate` per request: a request at
//! `now` is admitted when `max(TAT, now) + T - burst·T <= now`, and then moves the TAT to
//! `max(TAT, now) + T`. So `burst` requests pass at once from an idle bucket, and `rate` per
//! period after that. An idle bucket (TAT in the past) is the same as no bucket, which is why
//! Redis can expire a key at its TAT.

use std::time::Duration;

/// A rate limit: one request per `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval_us: u64,
    burst: u32,
}

impl Quota {
    /// `rate` requests per `period`, `burst` at once; `None` when `rate` or `burst` is 0
    /// (no limit).
    pub fn new(rate: u32, period: Duration, burst: u32) -> Option<Quota> {
        if rate == 0 || burst == 0 {
            return None;
        }
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        Some(Quota {
            interval_us: (period_us / u64::from(rate)).max(1),
            burst,
        })
    }

    pub fn per_second(rate: u32, burst: u32) -> Option<Quota> {
        Quota::new(rate, Duration::from_secs(1), burst)
    }

    pub fn per_minute(rate: u32, burst: u32) -> Option<Quota> {
        Quota::new(rate, Duration::from_secs(60), burst)
    }

    /// Microseconds between two requests at the sustained rate.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How far the TAT may run ahead of now: `burst · interval`.
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us.saturating_mul(u64::from(self.burst))
    }
}

/// Admits one request against every bucket, or against none: `tats[i]` is bucket `i`'s TAT
/// (`None`: idle). On success returns the new TATs to store; on refusal, the index of the
/// first bucket that refused and how long until all of them would admit.
pub fn admit_all(
    tats: &[Option<u64>],
    quotas: &[Quota],
    now_us: u64,
) -> Result<Vec<u64>, (usize, u64)> {
    let mut next = Vec::with_capacity(quotas.len());
    let mut refused: Option<usize> = None;
    let mut wait = 0u64;
    for (i, (tat, q)) in tats.iter().zip(quotas).enumerate() {
        let tat = tat.unwrap_or(now_us).max(now_us);
        let new_tat = tat.saturating_add(q.interval_us);
        let allow_at = new_tat.saturating_sub(q.tolerance_us());
        if allow_at > now_us {
            refused.get_or_insert(i);
            wait = wait.max(allow_at - now_us);
        }
        next.push(new_tat);
    }
    match refused {
        Some(i) => Err((i, wait)),
        None => Ok(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: Quota, times_us: &[u64]) -> Vec<bool> {
        let mut tat = None;
        times_us
            .iter()
            .map(|&now| match admit_all(&[tat], &[q], now) {
                Ok(next) => {
                    tat = Some(next[0]);
                    true
                }
                Err(_) => false,
            })
            .collect()
    }

    #[test]
    fn zero_rate_or_burst_means_no_limit() {
        assert_eq!(Quota::per_second(0, 5), None);
        assert_eq!(Quota::per_second(5, 0), None);
        let q = Quota::per_minute(600, 100).expect("quota");
        assert_eq!(q.interval_us(), 100_000);
        assert_eq!(q.tolerance_us(), 10_000_000);
    }

    #[test]
    fn burst_passes_at_once_then_the_rate() {
        let q = Quota::per_second(10, 3).expect("quota");
        // Four at t=0: three pass (the burst), the fourth waits one interval.
        assert_eq!(run(q, &[0, 0, 0, 0]), [true, true, true, false]);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(admit_all(&[tat], &[q], 0).expect("burst")[0]);
        }
        assert_eq!(admit_all(&[tat], &[q], 0), Err((0, 100_000)));
        assert!(admit_all(&[tat], &[q], 100_000).is_ok());
    }

    #[test]
    fn sustained_rate_is_held_over_a_long_run() {
        let q = Quota::per_second(50, 5).expect("quota");
        // A request every millisecond for 10 s: 5 (burst) + 50/s × 10 s pass.
        let times: Vec<u64> = (0..10_000).map(|ms| ms * 1_000).collect();
        let passed = run(q, &times).into_iter().filter(|ok| *ok).count();
        assert!((500..=505).contains(&passed), "{passed}");
    }

    #[test]
    fn all_or_nothing_across_buckets() {
        let wide = Quota::per_second(100, 100).expect("quota");
        let narrow = Quota::per_second(1, 1).expect("quota");
        let ok = admit_all(&[None, None], &[wide, narrow], 0).expect("first passes");
        let tats = [Some(ok[0]), Some(ok[1])];
        // The narrow bucket refuses; the wide one must not be charged.
        let (index, wait) = admit_all(&tats, &[wide, narrow], 0).expect_err("refused");
        assert_eq!(index, 1);
        assert_eq!(wait, 1_000_000);
        assert_eq!(tats[0], Some(ok[0]));
    }

    #[test]
    fn idle_bucket_is_the_same_as_a_missing_one() {
        let q = Quota::per_second(2, 2).expect("quota");
        let a = admit_all(&[Some(5)], &[q], 10_000_000).expect("admitted");
        let b = admit_all(&[None], &[q], 10_000_000).expect("admitted");
        assert_eq!(a, b);
    }
}
