//! Logging at a bounded rate: a flood of refusals is counted in full in `/metrics` but logged
//! at most once per period, with how many were not logged.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use ringwatch_core::now_ms;

/// Lets one event through per `period`; counts the others.
#[derive(Debug)]
pub struct Throttle {
    period_ms: i64,
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

impl Default for Throttle {
    /// One line per 10 s.
    fn default() -> Throttle {
        Throttle::new(Duration::from_secs(10))
    }
}

impl Throttle {
    pub fn new(period: Duration) -> Throttle {
        Throttle {
            period_ms: period.as_millis() as i64,
            last_ms: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event should be logged, `n` being the events left unlogged since the
    /// last one that was; `None` when it should not.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms())
    }

    fn allow_at(&self, now: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.period_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_period_and_the_rest_counted() {
        let t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.allow_at(1_000), Some(0));
        assert_eq!(t.allow_at(1_001), None);
        assert_eq!(t.allow_at(5_000), None);
        assert_eq!(t.allow_at(10_999), None);
        assert_eq!(t.allow_at(11_000), Some(3));
        assert_eq!(t.allow_at(11_001), None);
        assert_eq!(t.allow_at(30_000), Some(1));
    }
}
