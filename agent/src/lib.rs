//! Ringwatch node agent (SPEC S2).
//!
//! Collects host metrics with sysinfo every `interval_secs`, adds near-source sliding-window
//! statistics, keeps snapshots in a bounded priority-aware buffer and streams them to brokers
//! over gRPC; a snapshot leaves the buffer only once a broker acknowledged it. The agent's own
//! health is exposed in Prometheus format at `GET /metrics` on `metrics_listen`.

pub mod backoff;
pub mod buffer;
pub mod collect;
pub mod config;
pub mod error;
pub mod metrics;
pub mod sender;
pub mod shared;
pub mod window;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::AgentError;

use buffer::Buffer;
use collect::Collector;
use metrics::{AgentMetrics, DropReason};
use sender::{Sender, SenderConfig};
use shared::SharedBuffer;
use window::Windows;

/// How long the agent tries, after shutdown, to get what is buffered acknowledged.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// What an agent did over its run, reported when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentSummary {
    pub snapshots_collected: u64,
    pub snapshots_acked: u64,
    /// Snapshots dropped whole (buffer full or rejected by a broker).
    pub snapshots_dropped: u64,
    /// Snapshots still unacknowledged in the buffer when the agent stopped (lost with it).
    pub snapshots_buffered: u64,
}

/// A configured agent with its /metrics listener bound.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    host_id: String,
    labels: BTreeMap<String, String>,
    listener: TcpListener,
    metrics_addr: SocketAddr,
    metrics: Arc<AgentMetrics>,
}

impl Agent {
    /// Validates the config and binds the /metrics listener.
    pub async fn bind(config: Config) -> Result<Agent, AgentError> {
        config.validate()?;
        let host_id = config.resolved_host_id()?;
        let labels = config.resolved_labels()?;
        let listener = TcpListener::bind(config.metrics.listen)
            .await
            .map_err(|source| AgentError::Bind {
                addr: config.metrics.listen,
                source,
            })?;
        let metrics_addr = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: config.metrics.listen,
            source,
        })?;
        Ok(Agent {
            config,
            host_id,
            labels,
            listener,
            metrics_addr,
            metrics: Arc::new(AgentMetrics::new()),
        })
    }

    /// The address /metrics and /health are served on (the real port when 0 was asked for).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The resolved host id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The labels registered with the brokers.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Collects every `interval_secs` and streams until `shutdown` is cancelled; then stops
    /// collecting and tries for at most [`SHUTDOWN_DRAIN`] to get what is buffered
    /// acknowledged.
    pub async fn run(self, shutdown: CancellationToken) -> Result<AgentSummary, AgentError> {
        let Agent {
            config,
            host_id,
            labels,
            listener,
            metrics_addr,
            metrics,
        } = self;

        let server_stop = CancellationToken::new();
        let server = tokio::spawn(ringwatch_net::http::serve(
            listener,
            metrics::router(metrics.clone()),
            config.metrics_limits(),
            metrics.listen.listener("metrics"),
            server_stop.clone(),
            Duration::from_secs(2),
        ));
        tracing::info!(%host_id, %metrics_addr, brokers = ?config.brokers.endpoints, "agent starting");

        let collector = match tokio::task::spawn_blocking(Collector::new).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                server_stop.cancel();
                return Err(e);
            }
            Err(e) => {
                server_stop.cancel();
                return Err(AgentError::Task(e.to_string()));
            }
        };
        let shared = Arc::new(SharedBuffer::new(
            Buffer::new(config.send.buffer_capacity),
            metrics.clone(),
        ));
        let sender = Sender::new(
            SenderConfig::from_config(&config, &host_id, labels, config.connector()?),
            shared.clone(),
        )
        .map_err(|e| AgentError::config("brokers", e.to_string()))?;

        let hard_stop = CancellationToken::new();
        let collect = collect_loop(
            collector,
            Windows::new(config.collect.window_samples),
            config.collect.interval,
            shared.clone(),
            shutdown.clone(),
        );
        let send = async {
            sender.run(shutdown.clone(), hard_stop.clone()).await;
            hard_stop.cancel();
        };
        let stop_timer = async {
            tokio::select! {
                () = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(SHUTDOWN_DRAIN).await;
                } => hard_stop.cancel(),
                () = hard_stop.cancelled() => {}
            }
        };
        tokio::join!(collect, send, stop_timer);

        server_stop.cancel();
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "metrics server task failed");
        }
        let summary = AgentSummary {
            snapshots_collected: metrics.snapshots_collected.get(),
            snapshots_acked: metrics.snapshots_acked.get(),
            snapshots_dropped: metrics.dropped_snapshots(DropReason::BufferFull)
                + metrics.dropped_snapshots(DropReason::Rejected),
            snapshots_buffered: shared.with(|b| b.len()) as u64,
        };
        tracing::info!(?summary, "agent stopped");
        Ok(summary)
    }
}

/// Collects on every tick until `shutdown`, feeding the buffer and waking the sender.
async fn collect_loop(
    collector: Collector,
    mut windows: Windows,
    period: Duration,
    shared: Arc<SharedBuffer>,
    shutdown: CancellationToken,
) {
    let collector = Arc::new(Mutex::new(collector));
    // The first tick waits long enough for a meaningful CPU-usage delta.
    let first =
        Instant::now() + sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(200));
    let mut ticker = tokio::time::interval_at(first, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let metrics = shared.metrics.clone();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let c = collector.clone();
        let collected = tokio::task::spawn_blocking(move || {
            c.lock().unwrap_or_else(PoisonError::into_inner).collect()
        })
        .await;
        let mut samples = match collected {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "collection failed");
                continue;
            }
        };
        windows.apply(samples.totals.iter_mut().chain(samples.details.iter_mut()));
        let n = samples.len() as u64;
        let dropped = shared.with(|b| b.push(samples));
        metrics.snapshots_collected.inc();
        metrics.samples_collected.inc_by(n);
        if !dropped.is_empty() {
            metrics.record_drop(DropReason::BufferFull, dropped);
            tracing::warn!(
                detail_samples = dropped.detail_samples,
                total_samples = dropped.total_samples,
                snapshots = dropped.snapshots,
                "buffer full: dropped the lowest-priority data"
            );
        }
        shared.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::tests::{TestBroker, serve};
    use ringwatch_proto::agent_message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn bind_rejects_invalid_config() {
        let mut c = Config::default();
        c.collect.interval = Duration::ZERO;
        assert!(matches!(
            Agent::bind(c).await,
            Err(AgentError::Config {
                field: "collect.interval",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn agent_collects_streams_and_serves_metrics() {
        let stop = CancellationToken::new();
        let broker = TestBroker::default();
        let addr = serve(broker.clone(), stop.clone()).await;
        let mut config = Config::default();
        config.brokers.endpoints = vec![format!("http://{addr}")];
        config.collect.interval = Duration::from_secs(1);
        config.host.id = Some("node-a".into());
        config.host.zone = Some("z".into());
        config.metrics.listen = "127.0.0.1:0".parse().expect("addr");
        let agent = Agent::bind(config).await.expect("bind");
        assert_eq!(agent.host_id(), "node-a");
        let metrics_addr = agent.metrics_addr();
        assert_ne!(metrics_addr.port(), 0);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(agent.run(shutdown.clone()));

        let deadline = Instant::now() + Duration::from_secs(10);
        let snapshot = loop {
            let found = broker
                .log
                .lock()
                .expect("log")
                .iter()
                .find_map(|m| match &m.body {
                    Some(agent_message::Body::Batch(b)) => b.snapshots.first().cloned(),
                    _ => None,
                });
            if let Some(s) = found {
                break s;
            }
            assert!(Instant::now() < deadline, "no batch arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(snapshot.host_id, "node-a");
        let usage = snapshot
            .metrics
            .iter()
            .find(|m| m.name == "cpu.usage")
            .expect("cpu.usage");
        assert!(usage.window.is_some());
        assert!(
            snapshot
                .metrics
                .iter()
                .any(|m| m.name == "mem.used_percent")
        );

        // Wait for the ack to be counted, then scrape.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = http_get(metrics_addr, "/metrics").await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            if text.contains("ringwatch_agent_snapshots_acked_total 1")
                || text.contains("ringwatch_agent_batches_acked_total 1")
            {
                assert!(text.contains("ringwatch_agent_connected 1"), "{text}");
                assert!(text.contains("ringwatch_agent_snapshots_collected_total"));
                assert!(text.contains(
                    "ringwatch_agent_dropped_samples_total{priority=\"detail\",reason=\"buffer_full\"} 0"
                ));
                break;
            }
            assert!(Instant::now() < deadline, "no ack counted:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            http_get(metrics_addr, "/health")
                .await
                .starts_with("HTTP/1.1 200")
        );

        shutdown.cancel();
        let res = tokio::time::timeout(SHUTDOWN_DRAIN + Duration::from_secs(2), run)
            .await
            .expect("run returns after the drain deadline")
            .expect("join");
        assert!(res.is_ok(), "{res:?}");
        stop.cancel();
    }
}
