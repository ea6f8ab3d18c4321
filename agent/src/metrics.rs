//! The agent's own Prometheus metrics, served at `GET /metrics` (plus `GET /health`).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::buffer::Dropped;
use crate::collect::Priority;

/// Why samples or snapshots were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer had no room.
    BufferFull,
    /// A broker rejected the batch.
    Rejected,
}

impl DropReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::Rejected => "rejected",
        }
    }
}

type SampleLabels = [(&'static str, &'static str); 2];
type ReasonLabels = [(&'static str, &'static str); 1];

/// Every metric the agent exposes about itself.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    /// Snapshots in the buffer.
    pub buffer_snapshots: Gauge,
    /// Samples in the buffer.
    pub buffer_samples: Gauge,
    /// Snapshots collected.
    pub snapshots_collected: Counter,
    /// Samples collected.
    pub samples_collected: Counter,
    dropped_samples: Family<SampleLabels, Counter>,
    dropped_snapshots: Family<ReasonLabels, Counter>,
    /// Batches sent (including resends).
    pub batches_sent: Counter,
    /// Batches acknowledged.
    pub batches_acked: Counter,
    /// Batches rejected.
    pub batches_rejected: Counter,
    /// Snapshots acknowledged.
    pub snapshots_acked: Counter,
    /// Snapshots a broker acknowledged as duplicates.
    pub duplicates_acked: Counter,
    /// Stream (re)connect failures.
    pub reconnects: Counter,
    /// Streams moved to the host's owner broker when a broker named it.
    pub moves: Counter,
    /// 1 while a stream to a broker is open.
    pub connected: Gauge,
    /// Connections open and closed by a limit on the /metrics listener.
    pub listen: ringwatch_net::ListenMetrics,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Registers every metric under the `ringwatch_agent` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ringwatch_agent");
        let m = AgentMetrics {
            buffer_snapshots: Gauge::default(),
            buffer_samples: Gauge::default(),
            snapshots_collected: Counter::default(),
            samples_collected: Counter::default(),
            dropped_samples: Family::default(),
            dropped_snapshots: Family::default(),
            batches_sent: Counter::default(),
            batches_acked: Counter::default(),
            batches_rejected: Counter::default(),
            snapshots_acked: Counter::default(),
            duplicates_acked: Counter::default(),
            reconnects: Counter::default(),
            moves: Counter::default(),
            connected: Gauge::default(),
            listen: ringwatch_net::ListenMetrics::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        m.listen.register(r);
        r.register(
            "buffer_snapshots",
            "Snapshots held in the buffer",
            m.buffer_snapshots.clone(),
        );
        r.register(
            "buffer_samples",
            "Samples held in the buffer",
            m.buffer_samples.clone(),
        );
        r.register(
            "snapshots_collected",
            "Snapshots collected",
            m.snapshots_collected.clone(),
        );
        r.register(
            "samples_collected",
            "Samples collected",
            m.samples_collected.clone(),
        );
        r.register(
            "dropped_samples",
            "Samples dropped, by priority and reason",
            m.dropped_samples.clone(),
        );
        r.register(
            "dropped_snapshots",
            "Whole snapshots dropped, by reason",
            m.dropped_snapshots.clone(),
        );
        r.register(
            "batches_sent",
            "Batches sent to brokers",
            m.batches_sent.clone(),
        );
        r.register(
            "batches_acked",
            "Batches acknowledged by brokers",
            m.batches_acked.clone(),
        );
        r.register(
            "batches_rejected",
            "Batches rejected by brokers",
            m.batches_rejected.clone(),
        );
        r.register(
            "snapshots_acked",
            "Snapshots acknowledged by brokers",
            m.snapshots_acked.clone(),
        );
        r.register(
            "duplicates_acked",
            "Snapshots acknowledged as duplicates",
            m.duplicates_acked.clone(),
        );
        r.register(
            "reconnects",
            "Stream failures followed by a reconnect",
            m.reconnects.clone(),
        );
        r.register(
            "stream_moves",
            "Streams moved to the host's owner broker when a broker named it",
            m.moves.clone(),
        );
        r.register(
            "connected",
            "1 while a stream to a broker is open",
            m.connected.clone(),
        );
        // Expose every label combination from the start, at zero.
        for reason in [DropReason::BufferFull, DropReason::Rejected] {
            for p in [Priority::Detail, Priority::Total] {
                let _ = m
                    .dropped_samples
                    .get_or_create(&[("priority", p.as_str()), ("reason", reason.as_str())]);
            }
            let _ = m
                .dropped_snapshots
                .get_or_create(&[("reason", reason.as_str())]);
        }
        AgentMetrics { registry, ..m }
    }

    /// Counts a drop.
    pub fn record_drop(&self, reason: DropReason, dropped: Dropped) {
        let r = reason.as_str();
        let inc = |p: Priority, n: u64| {
            if n > 0 {
                self.dropped_samples
                    .get_or_create(&[("priority", p.as_str()), ("reason", r)])
                    .inc_by(n);
            }
        };
        inc(Priority::Detail, dropped.detail_samples);
        inc(Priority::Total, dropped.total_samples);
        if dropped.snapshots > 0 {
            self.dropped_snapshots
                .get_or_create(&[("reason", r)])
                .inc_by(dropped.snapshots);
        }
    }

    /// Dropped samples so far for one priority and reason.
    pub fn dropped_samples(&self, priority: Priority, reason: DropReason) -> u64 {
        self.dropped_samples
            .get_or_create(&[("priority", priority.as_str()), ("reason", reason.as_str())])
            .get()
    }

    /// Dropped snapshots so far for one reason.
    pub fn dropped_snapshots(&self, reason: DropReason) -> u64 {
        self.dropped_snapshots
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }

    /// Sets the buffer gauges.
    pub fn set_buffer(&self, snapshots: usize, samples: usize) {
        self.buffer_snapshots
            .set(i64::try_from(snapshots).unwrap_or(i64::MAX));
        self.buffer_samples
            .set(i64::try_from(samples).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The HTTP router: `GET /metrics` and `GET /health`.
pub fn router(metrics: Arc<AgentMetrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ringwatch_net::metrics_response(metrics.encode()) }
            }),
        )
        .route("/health", get(|| async { "ok" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_exact_names() {
        let m = AgentMetrics::new();
        m.record_drop(
            DropReason::Rejected,
            Dropped {
                detail_samples: 3,
                total_samples: 2,
                snapshots: 1,
            },
        );
        m.connected.set(1);
        let text = m.encode().expect("encode");
        for needle in [
            "ringwatch_agent_buffer_snapshots ",
            "ringwatch_agent_buffer_samples ",
            "ringwatch_agent_snapshots_collected_total ",
            "ringwatch_agent_samples_collected_total ",
            "ringwatch_agent_dropped_samples_total{priority=\"detail\",reason=\"rejected\"} 3",
            "ringwatch_agent_dropped_samples_total{priority=\"total\",reason=\"rejected\"} 2",
            "ringwatch_agent_dropped_samples_total{priority=\"detail\",reason=\"buffer_full\"} 0",
            "ringwatch_agent_dropped_snapshots_total{reason=\"rejected\"} 1",
            "ringwatch_agent_dropped_snapshots_total{reason=\"buffer_full\"} 0",
            "ringwatch_agent_batches_sent_total ",
            "ringwatch_agent_batches_acked_total ",
            "ringwatch_agent_batches_rejected_total ",
            "ringwatch_agent_snapshots_acked_total ",
            "ringwatch_agent_duplicates_acked_total ",
            "ringwatch_agent_reconnects_total ",
            "ringwatch_agent_connected 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
