//! The store a broker was configured with, as one type: `Store` by enum dispatch, so the
//! services and the router hold one concrete store instead of a type parameter.

use ringwatch_proto::{RangeChunk, Snapshot};

use super::{
    EmbeddedStore, HostRecord, RangeQuery, RedisStore, Store, StoreError, StoreStats, WriteOutcome,
};

/// The embedded store or Redis.
#[derive(Clone)]
pub enum AnyStore {
    Embedded(EmbeddedStore),
    Redis(RedisStore),
}

impl From<EmbeddedStore> for AnyStore {
    fn from(s: EmbeddedStore) -> Self {
        AnyStore::Embedded(s)
    }
}

impl From<RedisStore> for AnyStore {
    fn from(s: RedisStore) -> Self {
        AnyStore::Redis(s)
    }
}

impl AnyStore {
    /// Starts the store's background work (the embedded store's cuts, compactions, retention
    /// and fsyncs; Redis's closer starts with the store), ending when `shutdown` is cancelled.
    pub fn spawn_maintenance(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            AnyStore::Embedded(s) => Some(s.spawn_maintenance(shutdown)),
            AnyStore::Redis(_) => None,
        }
    }
}

/// `$call` on whichever store this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Embedded($s) => $call,
            AnyStore::Redis($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn write(&self, snapshots: &[Snapshot]) -> Result<WriteOutcome, StoreError> {
        each!(self, s => s.write(snapshots).await)
    }

    async fn register(&self, host: HostRecord) -> Result<(), StoreError> {
        each!(self, s => s.register(host).await)
    }

    async fn touch(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        each!(self, s => s.touch(host_id, at_ms).await)
    }

    async fn range(&self, query: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        each!(self, s => s.range(query).await)
    }

    async fn latest(&self, metric_names: &[String]) -> Result<Vec<Snapshot>, StoreError> {
        each!(self, s => s.latest(metric_names).await)
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        each!(self, s => s.hosts().await)
    }

    async fn host(&self, host_id: &str) -> Result<Option<HostRecord>, StoreError> {
        each!(self, s => s.host(host_id).await)
    }

    async fn check(&self) -> Result<(), StoreError> {
        each!(self, s => s.check().await)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        each!(self, s => s.flush().await)
    }

    fn stats(&self) -> StoreStats {
        each!(self, s => s.stats())
    }
}
