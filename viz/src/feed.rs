//! Keeps the dashboard fed: live push from every broker's Subscribe stream (each broker streams
//! what it stores), and for a broker that does not stream, the seeds' incremental pull (every
//! `pull_secs`, per host from its last timestamp, at most `fallback_window_secs` back). Whenever a subscription starts or reports that it
//! lagged, the gap is read with Range before newer live data is applied, so the dashboard has
//! neither a gap nor a duplicate for data the brokers stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringwatch_proto::{HostsRequest, RangeRequest, SubscribeRequest};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use ringwatch_net::client::GrpcChannel;
use ringwatch_proto::query_client::QueryClient;

use crate::brokers::{BrokerPool, NodeId};
use crate::dashboard::{Dashboard, now_ms};

#[derive(Debug, Default)]
pub struct FeedCounters {
    pub pushed: AtomicU64,
    pub pulled: AtomicU64,
    pub subscriptions: AtomicU64,
    pub lagged: AtomicU64,
}

pub struct Feed {
    pub pool: Arc<BrokerPool>,
    pub dashboard: Arc<Dashboard>,
    pub pull_every: Duration,
    pub window: Duration,
    pub counters: Arc<FeedCounters>,
}

impl Feed {
    /// A query client on broker `id`; UNAVAILABLE once the pool no longer holds it.
    fn query(&self, id: &NodeId) -> Result<QueryClient<GrpcChannel>, Status> {
        self.pool
            .query(id)
            .ok_or_else(|| Status::unavailable(format!("broker {id} is not in the pool")))
    }

    /// Broker `id`'s URL, as the dashboard names its live sources (the id if it has none).
    fn url<'a>(&'a self, id: &'a NodeId) -> &'a str {
        self.pool.url(id).unwrap_or(id.as_str())
    }

    /// Reads, from broker `id`, every host's data newer than what the dashboard has (at most
    /// `window` back).
    pub async fn catch_up(&self, id: &NodeId) -> Result<(), Status> {
        let hosts = self
            .query(id)?
            .hosts(HostsRequest {})
            .await?
            .into_inner()
            .hosts;
        self.dashboard.set_hosts(&hosts);
        let now = now_ms();
        for h in &hosts {
            let start =
                (self.dashboard.last_ts(&h.host_id) + 1).max(now - self.window.as_millis() as i64);
            let req = RangeRequest {
                host_id: h.host_id.clone(),
                start_ms: start,
                end_ms: now + 60_000,
                metric_names: vec![],
                limit: 0,
                sparse_ok: true,
                step_ms: 0,
            };
            let mut stream = match self.query(id)?.range(req).await {
                Ok(s) => s.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => return Err(s),
            };
            while let Some(chunk) = stream.message().await? {
                for s in chunk.to_snapshots(&h.host_id) {
                    if self.dashboard.apply(&s) {
                        self.counters.pulled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(())
    }

    /// Follows broker `id`'s live stream until it ends.
    async fn follow(&self, id: &NodeId, shutdown: &CancellationToken) -> Result<(), Status> {
        let mut stream = self
            .query(id)?
            .subscribe(SubscribeRequest::default())
            .await?
            .into_inner();
        self.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
        // Subscribed first, then the gap is read: anything stored meanwhile is in the stream
        // too, and the dashboard ignores what it already has.
        self.catch_up(id).await?;
        self.dashboard.set_live(self.url(id), true);
        tracing::info!(broker = %self.url(id), "live push from broker");
        // Labels, versions and intervals of hosts that register later come from the registry.
        let mut registry = tokio::time::interval(self.pull_every);
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = registry.tick() => {
                    let hosts = self.query(id)?.hosts(HostsRequest {}).await?.into_inner().hosts;
                    self.dashboard.set_hosts(&hosts);
                    continue;
                }
                m = stream.message() => m,
            };
            match msg {
                Ok(Some(update)) => {
                    if update.lagged > 0 {
                        self.counters
                            .lagged
                            .fetch_add(update.lagged, Ordering::Relaxed);
                        tracing::warn!(
                            lagged = update.lagged,
                            "live stream lagged; reading the gap"
                        );
                        self.catch_up(id).await?;
                    }
                    for s in &update.snapshots {
                        if self.dashboard.apply(s) {
                            self.counters.pushed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(None) => return Err(Status::unavailable("live stream ended")),
                Err(s) => return Err(s),
            }
        }
    }

    /// Broker `id`: push while it streams; while it does not, pull every `pull_every`.
    async fn run_one(self: Arc<Self>, id: NodeId, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.follow(&id, &shutdown).await {
                tracing::warn!(broker = %self.url(&id), error = %e, "no live push from this broker");
            }
            self.dashboard.set_live(self.url(&id), false);
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = self.catch_up(&id).await {
                tracing::debug!(broker = %self.url(&id), error = %e, "fallback pull failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.pull_every) => {}
            }
        }
    }

    /// Subscribes to every broker (each streams what it stores) until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let feed = Arc::new(self);
        let tasks: Vec<_> = feed
            .pool
            .ids()
            .iter()
            .cloned()
            .map(|id| tokio::spawn(feed.clone().run_one(id, shutdown.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
