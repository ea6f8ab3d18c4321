//! `ringwatch loadgen` and `ringwatch verify`: the proof that no acknowledged sample is lost.
//!
//! loadgen simulates many hosts, each its own ingest stream speaking the agent's protocol
//! (`host.rs`), with values that are a pure function of (host, timestamp, metric)
//! (`values.rs`), and records every acknowledged snapshot in a compact ledger (`ledger.rs`).
//! verify (`verify.rs`) reads every host of a ledger back through the brokers' `Range` and
//! reports what was lost, duplicated, wrong or out of order.

pub mod brokers;
pub mod config;
pub mod host;
pub mod ledger;
pub mod stats;
pub mod values;
pub mod verify;

use ringwatch_net::open_file_limit;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{LoadgenArgs, LoadgenConfig, VerifyConfig};

use brokers::Brokers;
use host::{Ctx, Plan};
use ledger::{Header, LedgerError, LedgerWriter};
use stats::{Latency, Progress, ProgressOut, Stats, round};

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid setting {0}")]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Broker(#[from] ringwatch_net::client::ClientError),
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub event: &'static str,
    pub mode: String,
    pub hosts: u32,
    pub connections_per_broker: u32,
    pub interval_ms: i64,
    pub metrics: usize,
    pub snapshots_per_host: u64,
    pub seconds: f64,
    pub snapshots_sent: u64,
    pub snapshots_acked: u64,
    pub samples_acked: u64,
    /// Acknowledged as already stored (sent again after a lost acknowledgement).
    pub duplicates_acked: u64,
    pub snapshots_rejected: u64,
    pub batches_rejected: u64,
    pub snapshots_dropped: u64,
    /// Produced and never acknowledged when the run ended.
    pub unacked_at_exit: u64,
    pub reconnects: u64,
    /// Streams moved to their host's owner when a broker named it (not failures).
    pub stream_moves: u64,
    pub ack_timeouts: u64,
    pub acked_per_s: f64,
    pub samples_per_s: f64,
    pub ack_latency: Latency,
    /// This process's CPU seconds, and snapshots sent per second of its CPU.
    pub loadgen_cpu_s: f64,
    pub snapshots_per_loadgen_cpu_s: f64,
    pub ledger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reject: Option<String>,
    /// Stopped by a signal before the end.
    pub interrupted: bool,
}

impl Summary {
    /// The summary for people.
    pub fn text(&self) -> String {
        let l = &self.ack_latency;
        let mut out = format!(
            "loadgen ({}): {} hosts × {} snapshots at {} ms, {} metrics, in {:.1} s\n\
             \x20 sent {}  acknowledged {} ({:.0}/s, {:.0} samples/s)  duplicates {}\n\
             \x20 ack latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
             \x20 rejected {} (batches {})  dropped {}  unacknowledged at exit {}\n\
             \x20 reconnects {} (ack timeouts {})  loadgen CPU {:.1} s ({:.0} snapshots/s per core)\n\
             \x20 ledger {}\n",
            self.mode,
            self.hosts,
            self.snapshots_per_host,
            self.interval_ms,
            self.metrics,
            self.seconds,
            self.snapshots_sent,
            self.snapshots_acked,
            self.acked_per_s,
            self.samples_per_s,
            self.duplicates_acked,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            self.snapshots_rejected,
            self.batches_rejected,
            self.snapshots_dropped,
            self.unacked_at_exit,
            self.reconnects,
            self.ack_timeouts,
            self.loadgen_cpu_s,
            self.snapshots_per_loadgen_cpu_s,
            self.ledger,
        );
        if let Some(e) = &self.last_error {
            out.push_str(&format!("  last stream error: {e}\n"));
        }
        if let Some(e) = &self.last_reject {
            out.push_str(&format!("  last rejection: {e}\n"));
        }
        out
    }
}

/// Refuses a run whose connections cannot all be open at once under `limit` (every connect
/// past it would fail and look like a broker's fault).
fn check_open_files(cfg: &LoadgenConfig, limit: Option<u64>) -> Result<(), config::ConfigError> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let brokers = cfg.brokers.iter().filter(|b| !b.trim().is_empty()).count() as u64;
    // Each host holds one connection at a time; shared channels may connect to every broker.
    let connections = if cfg.connections() < cfg.hosts {
        u64::from(cfg.connections()) * brokers
    } else {
        u64::from(cfg.hosts)
    };
    let need = connections + 64;
    if need > limit {
        return Err(config::ConfigError {
            field: "connections",
            reason: format!(
                "{connections} connections need about {need} open files and this process may open {limit}: raise the limit (ulimit -n {}) or share connections (--connections)",
                need.next_power_of_two()
            ),
        });
    }
    Ok(())
}

/// Wall-clock Unix milliseconds (timestamps on the wire are Unix ms).
pub(crate) use ringwatch_core::now_ms;

fn println_json(v: &impl Serialize) {
    if let Ok(line) = serde_json::to_string(v) {
        println!("{line}");
    }
}

/// The snapshot grid of a run starting now.
fn grid(cfg: &LoadgenConfig, now: i64) -> Header {
    let interval_ms = cfg.interval.as_millis() as i64;
    let k = cfg.snapshots_per_host();
    let start_ms = if cfg.backfill.is_some() {
        // The newest snapshot one interval before now, the oldest (k - 1) intervals before it.
        (now / interval_ms) * interval_ms - k as i64 * interval_ms
    } else {
        // The first snapshot one to two intervals from now, on an interval boundary.
        (now / interval_ms + 2) * interval_ms
    };
    Header {
        host_prefix: cfg.host_prefix.clone(),
        host_digits: (cfg.hosts.saturating_sub(1).max(1)).ilog10() as usize + 1,
        hosts: cfg.hosts,
        start_ms,
        interval_ms,
        snapshots_per_host: k,
        metrics: cfg.metrics,
        values_version: values::VALUES_VERSION,
        created_ms: now,
        mode: if cfg.backfill.is_some() {
            "backfill".into()
        } else {
            "live".into()
        },
    }
}

/// Runs the generator until every snapshot is acknowledged (or the drain deadline passes), or
/// until `stop` is cancelled. Prints `ready` and progress as configured; returns the summary.
pub async fn run(cfg: LoadgenConfig, stop: CancellationToken) -> Result<Summary, LoadgenError> {
    cfg.validate()?;
    check_open_files(&cfg, open_file_limit())?;
    let started = Instant::now();
    let cpu_before = stats::cpu_seconds();
    let now = now_ms();
    let grid = grid(&cfg, now);
    let ledger = LedgerWriter::create(&cfg.ledger, grid.clone())?;
    let backfill = cfg.backfill.is_some();
    // Live: until the last host's last snapshot is due, then the drain timeout. Backfill: no end
    // but the work (or a signal).
    let deadline = if backfill {
        started + Duration::from_secs(10 * 365 * 86_400)
    } else {
        let last = grid.ts(grid.hosts - 1, grid.snapshots_per_host - 1);
        started + Duration::from_millis((last - now).max(0) as u64) + cfg.drain_timeout
    };
    // The summary's latency leaves out the end of a live run: from when the first host's last
    // snapshot comes due, hosts finish and close their streams, which is not the steady state.
    let cool_from = (!backfill).then(|| {
        let first_last = grid.ts(0, grid.snapshots_per_host - 1);
        started + Duration::from_millis((first_last - now).max(0) as u64)
    });
    let connections = cfg.connections();
    let ctx = Arc::new(Ctx {
        plan: Plan {
            defs: values::metric_defs(cfg.metrics),
            window: !cfg.no_window,
            backfill,
            labels: cfg.label_pairs()?,
            max_batch: cfg.max_batch,
            max_in_flight: cfg.max_in_flight,
            buffer_capacity: cfg.buffer_capacity,
            ack_timeout: cfg.ack_timeout,
            connect_timeout: cfg.connect_timeout,
            heartbeat: cfg.heartbeat,
            backoff_max: cfg.backoff_max,
            follow_owner: !cfg.stay,
            deadline,
            grid: grid.clone(),
        },
        brokers: Brokers::new(
            &cfg.brokers,
            cfg.hosts,
            connections,
            cfg.connect_timeout,
            config::connector(&cfg.brokers, &cfg.broker_client)?,
        )?,
        ledger,
        stats: Stats::with_window(cfg.warmup, cool_from.map(Instant::into_std)),
        stop: stop.clone(),
    });
    if cfg.json {
        println_json(&serde_json::json!({
            "event": "ready", "component": "loadgen", "mode": grid.mode, "hosts": cfg.hosts,
            "snapshots_per_host": grid.snapshots_per_host, "start_ms": grid.start_ms,
            "interval_ms": grid.interval_ms, "ledger": cfg.ledger.display().to_string(),
        }));
    }
    tracing::info!(
        hosts = cfg.hosts,
        connections,
        mode = %grid.mode,
        snapshots_per_host = grid.snapshots_per_host,
        ledger = %cfg.ledger.display(),
        "loadgen starting"
    );

    // Hosts connect spread over one interval (at most 5 s; backfill: 1 s), not all at once.
    let ramp = if backfill {
        Duration::from_secs(1)
    } else {
        cfg.interval.min(Duration::from_secs(5))
    };
    let mut set = JoinSet::new();
    for h in 0..cfg.hosts {
        let ctx = ctx.clone();
        let delay = ramp.mul_f64(f64::from(h) / f64::from(cfg.hosts));
        set.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => host::run(ctx, h).await,
                () = ctx.stop.cancelled() => 0,
            }
        });
    }

    let done = CancellationToken::new();
    let progress = tokio::spawn(report_progress(
        ctx.clone(),
        ProgressOut::new(cfg.json, cfg.quiet),
        started,
        cfg.hosts,
        cfg.progress_every,
        done.clone(),
    ));
    let mut unsettled = 0u64;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(n) => unsettled += n as u64,
            Err(e) => tracing::error!(error = %e, "a simulated host failed"),
        }
    }
    done.cancel();
    let _ = progress.await;
    if let Err(e) = ctx.ledger.flush() {
        tracing::warn!(error = %e, "flushing the ledger failed (its bits are in the page cache)");
    }
    let r = ctx.stats.read();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (stats::cpu_seconds() - cpu_before).max(0.0);
    Ok(Summary {
        event: "summary",
        mode: grid.mode.clone(),
        hosts: cfg.hosts,
        connections_per_broker: connections,
        interval_ms: grid.interval_ms,
        metrics: cfg.metrics,
        snapshots_per_host: grid.snapshots_per_host,
        seconds: round(seconds, 3),
        snapshots_sent: r.sent,
        snapshots_acked: r.acked,
        samples_acked: r.acked * cfg.metrics as u64,
        duplicates_acked: r.duplicates,
        snapshots_rejected: r.rejected,
        batches_rejected: r.batches_rejected,
        snapshots_dropped: r.dropped,
        unacked_at_exit: unsettled,
        reconnects: r.reconnects,
        stream_moves: r.moves,
        ack_timeouts: r.ack_timeouts,
        acked_per_s: round(r.acked as f64 / seconds.max(1e-6), 1),
        samples_per_s: round((r.acked * cfg.metrics as u64) as f64 / seconds.max(1e-6), 0),
        ack_latency: r.latency_total,
        loadgen_cpu_s: round(cpu, 2),
        snapshots_per_loadgen_cpu_s: round(r.sent as f64 / cpu.max(1e-3), 0),
        ledger: cfg.ledger.display().to_string(),
        last_error: ctx.stats.last_error(),
        last_reject: ctx.stats.last_reject(),
        interrupted: stop.is_cancelled(),
    })
}

async fn report_progress(
    ctx: Arc<Ctx>,
    out: Option<ProgressOut>,
    started: Instant,
    hosts: u32,
    every: Duration,
    done: CancellationToken,
) {
    let Some(mut out) = out else {
        return done.cancelled().await;
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut prev = ctx.stats.read();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = done.cancelled() => break,
        }
        let now = ctx.stats.read();
        out.show(&Progress::between(&prev, &now, started.into_std(), hosts));
        prev = now;
    }
    out.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_that_cannot_open_their_connections_are_refused() {
        let cfg = LoadgenConfig {
            hosts: 10_000,
            ..LoadgenConfig::default()
        };
        let e = check_open_files(&cfg, Some(1024)).unwrap_err();
        assert_eq!(e.field, "connections");
        assert!(e.reason.contains("ulimit -n 16384"), "{}", e.reason);
        check_open_files(&cfg, Some(20_000)).unwrap();
        check_open_files(&cfg, None).unwrap();
        let shared = LoadgenConfig {
            connections: Some(100),
            ..cfg
        };
        check_open_files(&shared, Some(1024)).unwrap();
        assert!(open_file_limit().is_some_and(|l| l > 0));
    }

    #[test]
    fn live_runs_start_ahead_and_backfills_end_before_now() {
        let now = 1_700_000_000_123;
        let live = LoadgenConfig {
            interval: Duration::from_secs(5),
            duration: Some(Duration::from_secs(60)),
            hosts: 10,
            ..LoadgenConfig::default()
        };
        let g = grid(&live, now);
        assert_eq!(g.snapshots_per_host, 12);
        assert!(
            g.start_ms > now && g.start_ms <= now + 10_000,
            "{}",
            g.start_ms
        );
        assert_eq!(g.start_ms % 5000, 0);
        assert_eq!(g.host_id(3), "loadgen-3");
        let back = LoadgenConfig {
            backfill: Some(Duration::from_secs(3600)),
            duration: None,
            hosts: 1000,
            ..live
        };
        let g = grid(&back, now);
        assert_eq!(g.snapshots_per_host, 720);
        let newest = g.ts(999, 719);
        assert!(newest < now, "{newest} < {now}");
        assert!(g.ts(0, 0) >= now - 3_600_000 - 5000);
        assert_eq!(g.host_id(7), "loadgen-007");
        assert_eq!(g.mode, "backfill");
    }
}
