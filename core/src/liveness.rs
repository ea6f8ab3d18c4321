//! Live, stale or gone: the one rule the broker's `Hosts` answer and viz's dashboard both
//! apply to the age of a host's newest data.

/// The interval assumed for a host that has not said its own (ms).
pub const DEFAULT_INTERVAL_MS: u32 = 5000;

/// A host's state by the age of its newest data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from within `stale_after_intervals` of its interval.
    Live,
    /// Silent longer than that, up to `gone_after_ms`.
    Stale,
    /// Silent longer than `gone_after_ms`.
    Gone,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Live => "live",
            Liveness::Stale => "stale",
            Liveness::Gone => "gone",
        }
    }
}

/// When a host turns stale, then gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessRule {
    pub stale_after_intervals: u32,
    pub gone_after_ms: i64,
}

impl Default for LivenessRule {
    /// Stale after 3 missed intervals, gone after 10 minutes (SPEC S5).
    fn default() -> Self {
        LivenessRule {
            stale_after_intervals: 3,
            gone_after_ms: 600_000,
        }
    }
}

impl LivenessRule {
    /// The state of a host whose newest data is `age_ms` old and which reports every
    /// `interval_ms` (0: not said, [`DEFAULT_INTERVAL_MS`]).
    pub fn of(&self, age_ms: i64, interval_ms: u32) -> Liveness {
        let interval = if interval_ms == 0 {
            DEFAULT_INTERVAL_MS
        } else {
            interval_ms
        };
        if age_ms <= i64::from(self.stale_after_intervals) * i64::from(interval) {
            Liveness::Live
        } else if age_ms <= self.gone_after_ms {
            Liveness::Stale
        } else {
            Liveness::Gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_within_its_intervals_then_stale_then_gone() {
        let r = LivenessRule::default();
        assert_eq!(r.of(3000, 1000), Liveness::Live);
        assert_eq!(r.of(3001, 1000), Liveness::Stale);
        assert_eq!(r.of(15_000, 0), Liveness::Live, "5 s assumed");
        assert_eq!(r.of(15_001, 0), Liveness::Stale);
        assert_eq!(r.of(600_000, 1000), Liveness::Stale);
        assert_eq!(r.of(600_001, 1000).as_str(), "gone");
        let strict = LivenessRule {
            stale_after_intervals: 1,
            gone_after_ms: 2000,
        };
        assert_eq!(strict.of(1500, 1000), Liveness::Stale);
        assert_eq!(strict.of(2500, 1000), Liveness::Gone);
    }
}
