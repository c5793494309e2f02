//! The in-process limiter: the same GCRA as the Redis script, over a map in this process. Used
//! when no Redis is configured, and as the fallback while Redis is unreachable. Limits then
//! hold per instance, not across instances.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::gcra::{self, Quota};

pub struct LocalLimiter {
    started: Instant,
    state: Mutex<State>,
}

struct State {
    tats: HashMap<String, u64>,
    /// Idle buckets are dropped when the map grows past this size.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 4096;

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            started: Instant::now(),
            state: Mutex::new(State {
                tats: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }
}

impl LocalLimiter {
    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Admits one request against every `(key, quota)`, or charges none of them. `Err` holds
    /// the index of the first refusing bucket and the wait in microseconds.
    pub fn admit(&self, buckets: &[(&str, Quota)]) -> Result<(), (usize, u64)> {
        let now = self.now_us();
        let quotas: Vec<Quota> = buckets.iter().map(|(_, q)| *q).collect();
        // A poisoned lock only means another request panicked mid-update of plain integers.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tats: Vec<Option<u64>> = buckets
            .iter()
            .map(|(k, _)| state.tats.get(*k).copied())
            .collect();
        let next = gcra::admit_all(&tats, &quotas, now)?;
        for ((key, _), tat) in buckets.iter().zip(next) {
            match state.tats.get_mut(*key) {
                Some(slot) => *slot = tat,
                None => {
                    state.tats.insert((*key).to_string(), tat);
                }
            }
        }
        if state.tats.len() >= state.sweep_at {
            state.tats.retain(|_, tat| *tat > now);
            state.sweep_at = (state.tats.len() * 2).max(MIN_SWEEP);
        }
        Ok(())
    }

    /// Buckets currently held (idle ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.tats.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_charges_no_bucket() {
        let l = LocalLimiter::default();
        let one = Quota::per_minute(1, 1).expect("quota");
        let many = Quota::per_minute(1000, 1000).expect("quota");
        assert!(l.admit(&[("wide", many), ("narrow", one)]).is_ok());
        let (index, wait) = l
            .admit(&[("wide", many), ("narrow", one)])
            .expect_err("narrow is spent");
        assert_eq!(index, 1);
        assert!(wait > 59_000_000 && wait <= 60_000_000, "{wait}");
        // Only the first request was charged to "wide": 999 more fit in its burst.
        for _ in 0..999 {
            l.admit(&[("wide", many)]).expect("wide has room");
        }
        assert!(l.admit(&[("wide", many)]).is_err());
    }

    #[test]
    fn idle_buckets_are_swept() {
        let l = LocalLimiter::default();
        let q = Quota::per_second(1_000_000, 1).expect("quota");
        for i in 0..(MIN_SWEEP * 3) {
            l.admit(&[(&format!("k{i}"), q)]).expect("fresh bucket");
            if i % 1000 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        assert!(l.len() < MIN_SWEEP * 3, "{}", l.len());
    }
}
