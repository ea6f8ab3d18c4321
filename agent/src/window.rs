//! Near-source sliding-window statistics: min/max/avg over the last N raw values per metric.

use std::collections::{HashMap, VecDeque};

use ringwatch_proto::{Metric, WindowStats};

/// Per-metric sliding windows. Series not seen in a tick are forgotten, so vanished
/// interfaces or mounts do not keep memory.
#[derive(Debug)]
pub struct Windows {
    size: usize,
    tick: u64,
    series: HashMap<String, (u64, VecDeque<f64>)>,
}

impl Windows {
    /// Windows of `size` raw values (at least 1).
    pub fn new(size: usize) -> Self {
        Windows {
            size: size.max(1),
            tick: 0,
            series: HashMap::new(),
        }
    }

    /// Records one tick's values and fills `Metric.window` of every metric.
    pub fn apply<'a>(&mut self, metrics: impl IntoIterator<Item = &'a mut Metric>) {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        for m in metrics {
            if !self.series.contains_key(m.name.as_str()) {
                self.series
                    .insert(m.name.clone(), (tick, VecDeque::with_capacity(self.size)));
            }
            let Some(entry) = self.series.get_mut(m.name.as_str()) else {
                continue;
            };
            entry.0 = tick;
            let values = &mut entry.1;
            if values.len() == self.size {
                values.pop_front();
            }
            values.push_back(m.value);
            m.window = Some(stats(values));
        }
        self.series.retain(|_, (seen, _)| *seen == tick);
    }

    /// Number of series currently tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

fn stats(values: &VecDeque<f64>) -> WindowStats {
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &v in values {
        min = min.min(v);
        max = max.max(v);
        sum += v;
    }
    let n = values.len().max(1);
    let avg = sum / n as f64;
    WindowStats {
        min,
        max,
        // Sums of huge values could overflow; fall back to the midpoint.
        avg: if avg.is_finite() {
            avg
        } else {
            min / 2.0 + max / 2.0
        },
        samples: u32::try_from(values.len()).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, value: f64) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: 0,
            window: None,
        }
    }

    #[test]
    fn min_max_avg_over_last_n() {
        let mut w = Windows::new(3);
        let mut last = None;
        for v in [5.0, 1.0, 3.0, 8.0] {
            let mut m = [metric("a", v)];
            w.apply(m.iter_mut());
            last = m[0].window;
        }
        // Window holds 1, 3, 8.
        let s = last.expect("window");
        assert_eq!(s.samples, 3);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 8.0);
        assert!((s.avg - 4.0).abs() < 1e-9);
    }

    #[test]
    fn first_value_is_its_own_window_and_vanished_series_are_forgotten() {
        let mut w = Windows::new(12);
        let mut m = [metric("a", 2.0), metric("b", 4.0)];
        w.apply(m.iter_mut());
        let s = m[0].window.expect("window");
        assert_eq!((s.min, s.max, s.avg, s.samples), (2.0, 2.0, 2.0, 1));
        assert_eq!(w.len(), 2);
        let mut m = [metric("a", 4.0)];
        w.apply(m.iter_mut());
        assert_eq!(w.len(), 1);
        assert_eq!(m[0].window.expect("window").avg, 3.0);
    }
}
