//! The reconnect schedule: doubling from 1 s up to a cap, each delay drawn from its upper half
//! ("equal jitter": 0.5–1 s, 1–2 s, 2–4 s … cap/2–cap), unlimited attempts. The jitter spreads
//! a fleet's agents out: after a rolling restart of the brokers, they do not all come back in
//! the same second.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// A resettable exponential back-off with jitter, built on [`backon::ExponentialBuilder`].
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    cap: Duration,
}

impl Backoff {
    /// Starts at 0.5–1 s, doubles, never exceeds `cap` (at least 1 s).
    pub fn new(cap: Duration) -> Self {
        let cap = cap.max(Duration::from_secs(1));
        // backon's jitter adds up to the delay itself: a base of d gives d to 2d, so the base
        // runs from half a second to half the cap.
        let builder = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(500))
            .with_factor(2.0)
            .with_max_delay(cap / 2)
            .with_jitter()
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

    /// Restarts the schedule at its first step (after a successful ack).
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_its_upper_halves_up_to_the_cap_and_resets() {
        let ms = |d: Duration| d.as_millis() as u64;
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(30));
            for (n, top) in [1000u64, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
                .into_iter()
                .enumerate()
            {
                let d = ms(b.next_delay());
                assert!(
                    d >= top / 2 && d <= top,
                    "step {n}: {d} ms not in {}..={top}",
                    top / 2
                );
            }
            // Unlimited attempts, never past the cap.
            for _ in 0..1000 {
                let d = ms(b.next_delay());
                assert!((15000..=30000).contains(&d), "{d}");
            }
            b.reset();
            assert!(ms(b.next_delay()) <= 1000);
        }
    }

    #[test]
    fn a_fleet_of_agents_does_not_reconnect_in_step() {
        let firsts: std::collections::HashSet<u128> = (0..1000)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(30));
                (0..4).map(|_| b.next_delay()).sum::<Duration>().as_millis()
            })
            .collect();
        assert!(
            firsts.len() > 500,
            "{} distinct schedules of 1000",
            firsts.len()
        );
    }

    #[test]
    fn cap_of_one_second() {
        let mut b = Backoff::new(Duration::from_secs(1));
        assert!((0..5).all(|_| b.next_delay() <= Duration::from_secs(1)));
    }
}
