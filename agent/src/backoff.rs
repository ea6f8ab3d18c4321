//! The reconnect schedule: 1 s, 2 s, 4 s … capped, no jitter, unlimited attempts.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// A resettable exponential back-off built on [`backon::ExponentialBuilder`].
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    cap: Duration,
}

impl Backoff {
    /// Starts at 1 s, doubles, never exceeds `cap` (at least 1 s).
    pub fn new(cap: Duration) -> Self {
        let cap = cap.max(Duration::from_secs(1));
        let builder = ExponentialBuilder::new()
            .with_min_delay(Duration::from_secs(1))
            .with_factor(2.0)
            .with_max_delay(cap)
            .without_max_times();
        Backoff {
            current: builder.build(),
            builder,
            cap,
        }
    }

    /// The next delay to sleep before reconnecting.
    pub fn next_delay(&mut self) -> Duration {
        self.current.next().unwrap_or(self.cap).min(self.cap)
    }

    /// Restarts the schedule at 1 s (after a successful ack).
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(30));
        let got: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        // Unlimited attempts.
        for _ in 0..1000 {
            assert_eq!(b.next_delay(), Duration::from_secs(30));
        }
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }

    #[test]
    fn cap_of_one_second() {
        let mut b = Backoff::new(Duration::from_secs(1));
        assert!((0..5).all(|_| b.next_delay() == Duration::from_secs(1)));
    }
}
