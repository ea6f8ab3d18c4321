//! What the generator counts while it runs: the live progress line and the final summary.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Counters shared by every simulated host.
#[derive(Debug)]
pub struct Stats {
    /// Streams open now.
    pub connected: AtomicI64,
    pub snapshots_sent: AtomicU64,
    pub snapshots_acked: AtomicU64,
    /// Acknowledged snapshots the broker already had (a resend after a lost ack).
    pub duplicates: AtomicU64,
    pub snapshots_rejected: AtomicU64,
    pub batches_rejected: AtomicU64,
    /// Snapshots dropped from a full buffer before any broker acknowledged them.
    pub snapshots_dropped: AtomicU64,
    pub reconnects: AtomicU64,
    /// Streams moved to the host's owner when a broker named it.
    pub moves: AtomicU64,
    pub ack_timeouts: AtomicU64,
    /// Acknowledgement latency in microseconds: the whole run (after the warm-up), and since
    /// the last progress line.
    latency: Mutex<(Histogram<u64>, Histogram<u64>)>,
    /// Acknowledgements outside [warm_from, cool_from) are left out of the whole-run latency:
    /// the ramp-up, and the end when hosts finish and close their streams.
    warm_from: Instant,
    cool_from: Option<Instant>,
    last_error: Mutex<Option<String>>,
    last_reject: Mutex<Option<String>>,
    /// When a host's error was last logged (errors of many hosts at once are logged once a
    /// second, with a count).
    log_gate: Mutex<(Instant, u64)>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits: constant bounds, which are valid.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connected: AtomicI64::new(0),
            snapshots_sent: AtomicU64::new(0),
            snapshots_acked: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            snapshots_rejected: AtomicU64::new(0),
            batches_rejected: AtomicU64::new(0),
            snapshots_dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            ack_timeouts: AtomicU64::new(0),
            latency: Mutex::new((histogram(), histogram())),
            warm_from: Instant::now(),
            cool_from: None,
            last_error: Mutex::new(None),
            last_reject: Mutex::new(None),
            log_gate: Mutex::new((Instant::now() - Duration::from_secs(10), 0)),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Acknowledgement latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

impl Stats {
    /// Counters whose whole-run latency leaves out acknowledgements in the first `warmup` and
    /// from `cool_from` on.
    pub fn with_window(warmup: Duration, cool_from: Option<Instant>) -> Stats {
        Stats {
            warm_from: Instant::now() + warmup,
            cool_from,
            ..Stats::default()
        }
    }

    pub fn sent(&self, n: u64) {
        add(&self.snapshots_sent, n);
    }

    pub fn acked(&self, n: u64, duplicates: u64, latency: Duration) {
        add(&self.snapshots_acked, n);
        add(&self.duplicates, duplicates);
        let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        let now = Instant::now();
        let warm = now >= self.warm_from && self.cool_from.is_none_or(|c| now < c);
        if let Ok(mut l) = self.latency.lock() {
            if warm {
                let _ = l.0.record(us);
            }
            let _ = l.1.record(us);
        }
    }

    pub fn rejected(&self, snapshots: u64, whole_batch: bool, reason: &str) {
        add(&self.snapshots_rejected, snapshots);
        if whole_batch {
            add(&self.batches_rejected, 1);
        }
        if let Ok(mut r) = self.last_reject.lock()
            && r.as_deref() != Some(reason)
        {
            tracing::warn!(reason, "the broker refused snapshots");
            *r = Some(reason.to_string());
        }
    }

    pub fn dropped(&self, n: u64) {
        add(&self.snapshots_dropped, n);
    }

    /// A host's stream moved to its owner.
    pub fn moved(&self) {
        add(&self.moves, 1);
    }

    /// A stream failed; counted, and logged at most once a second across all hosts.
    pub fn stream_failed(&self, host: &str, broker: &str, error: &str, ack_timeout: bool) {
        add(&self.reconnects, 1);
        if ack_timeout {
            add(&self.ack_timeouts, 1);
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_string());
        }
        let Ok(mut gate) = self.log_gate.lock() else {
            return;
        };
        gate.1 += 1;
        if gate.0.elapsed() >= Duration::from_secs(1) {
            tracing::warn!(
                host,
                broker,
                error,
                streams_failed = gate.1,
                "streams failed since the last report; reconnecting with back-off"
            );
            *gate = (Instant::now(), 0);
        }
    }

    /// A point-in-time reading (and resets the per-line latency window).
    pub fn read(&self) -> Reading {
        let (total, recent) = self
            .latency
            .lock()
            .map(|mut l| {
                let out = (Latency::of(&l.0), Latency::of(&l.1));
                l.1.reset();
                out
            })
            .unwrap_or_default();
        Reading {
            at: Instant::now(),
            connected: self.connected.load(Ordering::Relaxed),
            sent: get(&self.snapshots_sent),
            acked: get(&self.snapshots_acked),
            duplicates: get(&self.duplicates),
            rejected: get(&self.snapshots_rejected),
            batches_rejected: get(&self.batches_rejected),
            dropped: get(&self.snapshots_dropped),
            reconnects: get(&self.reconnects),
            moves: get(&self.moves),
            ack_timeouts: get(&self.ack_timeouts),
            latency_total: total,
            latency_recent: recent,
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn last_reject(&self) -> Option<String> {
        self.last_reject.lock().ok().and_then(|e| e.clone())
    }
}

/// Counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub at: Instant,
    pub connected: i64,
    pub sent: u64,
    pub acked: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub batches_rejected: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub moves: u64,
    pub ack_timeouts: u64,
    pub latency_total: Latency,
    pub latency_recent: Latency,
}

/// One progress report (a line on the terminal, or a JSON line with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub event: &'static str,
    pub elapsed_s: f64,
    pub hosts: u32,
    pub connected: i64,
    pub sent: u64,
    pub acked: u64,
    pub sent_per_s: f64,
    pub acked_per_s: f64,
    /// Acknowledgement latency since the previous report.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub reconnects: u64,
    pub rejected: u64,
    pub dropped: u64,
}

impl Progress {
    pub fn between(prev: &Reading, now: &Reading, started: Instant, hosts: u32) -> Progress {
        let secs = now.at.duration_since(prev.at).as_secs_f64().max(1e-3);
        Progress {
            event: "progress",
            elapsed_s: round(now.at.duration_since(started).as_secs_f64(), 1),
            hosts,
            connected: now.connected,
            sent: now.sent,
            acked: now.acked,
            sent_per_s: round((now.sent - prev.sent) as f64 / secs, 0),
            acked_per_s: round((now.acked - prev.acked) as f64 / secs, 0),
            ack_p50_ms: now.latency_recent.p50_ms,
            ack_p99_ms: now.latency_recent.p99_ms,
            reconnects: now.reconnects,
            rejected: now.rejected,
            dropped: now.dropped,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:>6.1}s  hosts {}/{} connected  sent {}/s  acked {}/s  ack p50 {:.1} ms p99 {:.1} ms  reconnects {}  rejected {}  dropped {}  acked total {}",
            self.elapsed_s,
            self.connected,
            self.hosts,
            self.sent_per_s,
            self.acked_per_s,
            self.ack_p50_ms,
            self.ack_p99_ms,
            self.reconnects,
            self.rejected,
            self.dropped,
            self.acked
        )
    }
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Where progress goes: a line rewritten in place on a terminal, a line every `every` otherwise,
/// or JSON lines on stdout.
#[derive(Debug)]
pub struct ProgressOut {
    json: bool,
    tty: bool,
    every: Duration,
    last_printed: Option<Instant>,
}

impl ProgressOut {
    pub fn new(json: bool, quiet: bool) -> Option<ProgressOut> {
        if quiet && !json {
            return None;
        }
        Some(ProgressOut {
            json,
            tty: std::io::stderr().is_terminal(),
            every: Duration::from_secs(5),
            last_printed: None,
        })
    }

    pub fn show(&mut self, p: &Progress) {
        if self.json {
            if let Ok(line) = serde_json::to_string(p) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{}", p.line());
            let _ = err.flush();
        } else if self.last_printed.is_none_or(|t| t.elapsed() >= self.every) {
            let _ = writeln!(err, "{}", p.line());
            self.last_printed = Some(Instant::now());
        }
    }

    /// Ends the live line before the summary.
    pub fn finish(&self) {
        if self.tty && !self.json {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// User + system CPU seconds this process has used (Linux; 0 elsewhere).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (in parentheses, which may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime (fields 14 and 15) in USER_HZ, which Linux fixes at 100 for user space.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latency_percentiles() {
        let s = Stats::default();
        s.sent(10);
        for ms in 1..=100 {
            s.acked(1, 0, Duration::from_millis(ms));
        }
        s.rejected(2, true, "bad");
        s.stream_failed("h", "b", "boom", true);
        let r = s.read();
        assert_eq!(
            (r.sent, r.acked, r.rejected, r.batches_rejected),
            (10, 100, 2, 1)
        );
        assert_eq!((r.reconnects, r.ack_timeouts), (1, 1));
        assert!(
            (r.latency_total.p50_ms - 50.0).abs() < 0.5,
            "{:?}",
            r.latency_total
        );
        assert!(
            (r.latency_total.p99_ms - 99.0).abs() < 0.5,
            "{:?}",
            r.latency_total
        );
        assert_eq!(r.latency_total, r.latency_recent);
        // The per-line window starts again; the whole-run figures stay.
        let r2 = s.read();
        assert_eq!(r2.latency_recent, Latency::default());
        assert_eq!(r2.latency_total, r.latency_total);
        assert_eq!(s.last_error().as_deref(), Some("boom"));
        assert_eq!(s.last_reject().as_deref(), Some("bad"));
    }

    #[test]
    fn the_ramp_up_and_the_end_are_left_out_of_the_whole_run_latency_only() {
        let s = Stats::with_window(Duration::from_secs(3600), None);
        s.acked(1, 0, Duration::from_millis(500));
        let r = s.read();
        assert_eq!(r.acked, 1);
        assert_eq!(r.latency_total, Latency::default());
        assert!(
            (r.latency_recent.max_ms - 500.0).abs() < 1.0,
            "{:?}",
            r.latency_recent
        );
        let s = Stats::with_window(Duration::ZERO, Some(Instant::now()));
        s.acked(1, 0, Duration::from_millis(500));
        assert_eq!(s.read().latency_total, Latency::default(), "past the end");
    }

    #[test]
    fn progress_rates_come_from_the_difference_of_two_readings() {
        let s = Stats::default();
        let started = Instant::now();
        let a = s.read();
        s.sent(500);
        s.acked(400, 0, Duration::from_millis(2));
        let mut b = s.read();
        b.at = a.at + Duration::from_secs(2);
        let p = Progress::between(&a, &b, started, 7);
        assert_eq!(p.sent_per_s, 250.0);
        assert_eq!(p.acked_per_s, 200.0);
        assert!(p.line().contains("acked 200/s"), "{}", p.line());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_seconds() > 0.0);
    }
}
