//! The node layer every service goes through: writes, registration, heartbeats and reads of a
//! host, and the reads of every host (latest, hosts). Today one broker owns every host, so each
//! goes to the local store; the consistent-hash ring slots in here: look up the owners of a
//! host, serve locally if this broker is one, forward to the others, and scatter-gather the
//! reads of every host.

use std::sync::Arc;

use ringwatch_proto::{RangeChunk, Snapshot};

use crate::live::Live;
use crate::metrics::BrokerMetrics;
use crate::store::{AnyStore, HostRecord, RangeQuery, Store, StoreError, StoreStats, WriteOutcome};

pub struct Router {
    node_id: String,
    store: Arc<AnyStore>,
    live: Arc<Live>,
    metrics: Arc<BrokerMetrics>,
}

impl Router {
    pub fn new(
        node_id: String,
        store: Arc<AnyStore>,
        live: Arc<Live>,
        metrics: Arc<BrokerMetrics>,
    ) -> Self {
        Router {
            node_id,
            store,
            live,
            metrics,
        }
    }

    /// This broker's id (spans carry it, so a request can be followed across brokers).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The broker that owns `host_id`'s series.
    pub fn owner_of(&self, _host_id: &str) -> &str {
        &self.node_id
    }

    /// Stores one host's batch at its owner(s); returns once it is stored, after publishing
    /// it to live subscribers.
    pub async fn write(&self, snapshots: Vec<Snapshot>) -> Result<WriteOutcome, StoreError> {
        let started = std::time::Instant::now();
        let out = self.store.write(&snapshots).await;
        self.metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        let out = out?;
        if out.stored > 0 {
            // Only what is new: a resent batch must not show twice to live viewers.
            let fresh = snapshots
                .into_iter()
                .zip(&out.new)
                .filter(|(_, new)| **new)
                .map(|(s, _)| s);
            self.live.publish(fresh.collect());
        }
        Ok(out)
    }

    /// Registers (or updates) a host at its owner.
    pub async fn register(&self, host: HostRecord) -> Result<(), StoreError> {
        self.store.register(host).await
    }

    /// A heartbeat of a host, at its owner.
    pub async fn touch(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        self.store.touch(host_id, at_ms).await
    }

    /// One host's range, from its owner.
    pub async fn range(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        self.store.range(q).await
    }

    /// One host's registry entry, from its owner.
    pub async fn host(&self, host_id: &str) -> Result<Option<HostRecord>, StoreError> {
        self.store.host(host_id).await
    }

    /// The newest snapshot of every host (every owner's, merged).
    pub async fn latest(&self, metric_names: &[String]) -> Result<Vec<Snapshot>, StoreError> {
        self.store.latest(metric_names).await
    }

    /// Every registered host (every owner's, merged).
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.store.hosts().await
    }

    /// This broker's store: readiness, flush at shutdown, figures.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }
}
