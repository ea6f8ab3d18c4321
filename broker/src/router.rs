//! The node layer every service goes through: writes, registration, heartbeats and reads of a
//! host, and the reads of every host (latest, hosts). A broker alone (no `--raft`) owns every
//! host. In a cluster the ring of the applied control-plane state names each host's owner: its
//! writes, registration and heartbeats go there (forwarded over `Peer.Forward` when that is
//! another broker, and answered only once the owner has stored them; a failed forward is
//! tried again after 1, 2 and 4 s at whoever owns the host then, and after that a batch goes to
//! the forward queue on disk (`forward_queue`, delivered by `redeliver`) before it is
//! acknowledged, or, the queue full, is not acknowledged, so the agent keeps it); a host's
//! range is asked of every broker that owned it within the range (the ring's epochs) and merged; latest and hosts ask every broker and
//! merge. The `*_local` calls are what a peer asks of this broker's own store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ringwatch_core::{Member, MemberState};
use ringwatch_proto::{ForwardRequest, RangeChunk, RangeRequest, Register, Snapshot};
use tokio::sync::watch;

use crate::control::{ControlOp, ControlPlane, ControlState};
use crate::forward::Peers;
use crate::forward_queue::{ForwardQueue, QueueError};
use crate::live::Live;
use crate::metrics::BrokerMetrics;
use crate::store::embedded::{Imported, Incoming};
use crate::store::frame::Frame;
use crate::store::{AnyStore, HostRecord, RangeQuery, Store, StoreError, StoreStats, WriteOutcome};

/// Back-off between forwards of a batch whose owner did not answer.
const FORWARD_RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// A cluster member's view for routing.
pub struct Cluster {
    pub state: watch::Receiver<Arc<ControlState>>,
    pub peers: Peers,
    pub control: Arc<ControlPlane>,
    /// Batches whose owner did not take them, on disk until it does.
    pub queue: Arc<ForwardQueue>,
}

pub struct Router {
    node_id: String,
    store: Arc<AnyStore>,
    live: Arc<Live>,
    metrics: Arc<BrokerMetrics>,
    cluster: Option<Cluster>,
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
            cluster: None,
        }
    }

    /// The cluster this broker routes by (a cluster member only).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    pub fn metrics(&self) -> &BrokerMetrics {
        &self.metrics
    }

    /// Routes by the cluster's ring.
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The applied control-plane state (a cluster member only).
    fn state(&self) -> Option<Arc<ControlState>> {
        self.cluster.as_ref().map(|c| c.state.borrow().clone())
    }

    /// `host_id`'s owner when it is another broker (`None`: this one, or no cluster, or an
    /// empty ring).
    fn remote_owner(&self, host_id: &str) -> Option<Member> {
        let state = self.state()?;
        let owner = state.view.owners(host_id, 1).into_iter().next()?;
        (owner.id != self.node_id).then(|| owner.clone())
    }

    /// This broker's id (spans carry it, so a request can be followed across brokers).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The broker that owns `host_id`'s series.
    pub fn owner_of(&self, host_id: &str) -> String {
        self.remote_owner(host_id)
            .map_or_else(|| self.node_id.clone(), |m| m.id)
    }

    /// The gRPC URL of `host_id`'s owner when that is another broker (agents move there).
    pub fn owner_url(&self, host_id: &str) -> Option<String> {
        self.remote_owner(host_id).map(|m| m.grpc_addr)
    }

    /// Stores one host's batch at its owner; returns once it is stored (and published to the
    /// owner's live subscribers).
    pub async fn write(&self, snapshots: Vec<Snapshot>) -> Result<WriteOutcome, StoreError> {
        let Some(host) = snapshots.first().map(|s| s.host_id.clone()) else {
            return self.write_local(snapshots).await;
        };
        if self.remote_owner(&host).is_none() {
            return self.write_local(snapshots).await;
        }
        let req = ForwardRequest {
            host_id: host.clone(),
            snapshots,
            ..ForwardRequest::default()
        };
        match self.forward(&host, req, true).await {
            Forwarded::Stored(out) => Ok(out),
            Forwarded::Mine(req) => self.write_local(req.snapshots).await,
            Forwarded::Failed {
                req,
                error,
                retryable: true,
            } => self.enqueue(req, error).await,
            Forwarded::Failed { error, .. } => Err(error),
        }
    }

    /// Puts a batch its owner did not take in the forward queue on disk; once there it counts
    /// as stored (it is delivered later). Past the queue's bounds, or when it cannot be
    /// written, the batch is not acknowledged.
    async fn enqueue(
        &self,
        req: ForwardRequest,
        error: StoreError,
    ) -> Result<WriteOutcome, StoreError> {
        let Some(cluster) = &self.cluster else {
            return Err(error);
        };
        let n = req.snapshots.len();
        let samples = req.snapshots.iter().map(|s| s.metrics.len() as u64).sum();
        let queue = cluster.queue.clone();
        let host = req.host_id.clone();
        let pushed = tokio::task::spawn_blocking(move || queue.push(&req))
            .await
            .unwrap_or_else(|e| {
                Err(QueueError::Io {
                    path: "forward queue".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        self.metrics.set_forward_queue(&cluster.queue);
        match pushed {
            Ok(_) => {
                self.metrics.forward_queue_event("queued");
                if let Some(skipped) = self.metrics.forward_log.allow() {
                    tracing::warn!(%host, snapshots = n, %error, not_logged_since_last = skipped, "the owner did not take the batch; queued on disk, to deliver when it does");
                }
                Ok(WriteOutcome {
                    stored: n as u32,
                    duplicates: 0,
                    samples,
                    new: vec![false; n],
                    refused: Vec::new(),
                })
            }
            Err(e) => {
                let label = match e {
                    QueueError::Full { .. } | QueueError::HostFull { .. } => "full",
                    _ => "unwritable",
                };
                self.metrics.forward_queue_event(label);
                if let Some(skipped) = self.metrics.refusal_log.allow() {
                    tracing::warn!(%host, snapshots = n, error = %e, not_logged_since_last = skipped, "batch not queued; not acknowledged, the agent keeps it");
                }
                Err(StoreError::Unavailable(format!("{error}; and {e}")))
            }
        }
    }

    /// Delivers one queued batch to its host's owner of the moment (this broker, if the ring
    /// says so now), once; the queue's delivery task calls it.
    pub async fn redeliver(&self, req: ForwardRequest) -> Result<(), (StoreError, bool)> {
        let host = req.host_id.clone();
        match self.forward(&host, req, false).await {
            Forwarded::Stored(_) => Ok(()),
            Forwarded::Mine(req) => {
                self.write_local(req.snapshots)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let retryable = e.is_retryable();
                        (e, retryable)
                    })
            }
            Forwarded::Failed {
                error, retryable, ..
            } => Err((error, retryable)),
        }
    }

    /// Sends `req` to `host`'s owner; with `retry`, again after 1, 2 and 4 s (at whoever owns
    /// the host then). When the ring says this broker owns it after all, hands `req` back.
    async fn forward(&self, host: &str, mut req: ForwardRequest, retry: bool) -> Forwarded {
        let Some(cluster) = &self.cluster else {
            return Forwarded::Mine(req);
        };
        let mut delays = FORWARD_RETRIES.iter();
        loop {
            let Some(owner) = self.remote_owner(host) else {
                return Forwarded::Mine(req);
            };
            req.ring_epoch = cluster.state.borrow().view.epoch();
            let started = std::time::Instant::now();
            let outcome = cluster.peers.forward(&owner, req.clone()).await;
            self.metrics
                .forward_seconds
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok(reply) => {
                    self.metrics.forwarded("stored", req.snapshots.len());
                    return Forwarded::Stored(crate::forward::outcome(reply));
                }
                Err(status) => {
                    let retryable = ringwatch_net::peers::retryable(&status);
                    let next = if retry && retryable {
                        delays.next()
                    } else {
                        None
                    };
                    let Some(delay) = next else {
                        self.metrics.forwarded("failed", req.snapshots.len());
                        if retry && let Some(skipped) = self.metrics.forward_log.allow() {
                            tracing::warn!(%host, owner = %owner.id, error = %status.message(), not_logged_since_last = skipped, "forward to the owner failed");
                        }
                        let error = StoreError::Unavailable(format!(
                            "the owner of {host} ({}) did not take it: {}",
                            owner.id,
                            status.message()
                        ));
                        return Forwarded::Failed {
                            req,
                            error,
                            retryable,
                        };
                    };
                    self.metrics.forwarded("retried", req.snapshots.len());
                    tracing::debug!(%host, owner = %owner.id, error = %status.message(), retry_in = ?delay, "forward failed; retrying");
                    // Sooner when the ring moves (the dead owner marked down): the host's new
                    // owner takes it at once, not at the end of the back-off.
                    let mut ring = cluster.state.clone();
                    let sent_at = req.ring_epoch;
                    let moved = async {
                        loop {
                            if ring.borrow_and_update().view.epoch() != sent_at {
                                return;
                            }
                            if ring.changed().await.is_err() {
                                std::future::pending::<()>().await
                            }
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(*delay) => {}
                        _ = moved => {}
                    }
                }
            }
        }
    }

    /// Stores one host's batch here; returns once it is stored, after publishing it to live
    /// subscribers.
    pub async fn write_local(&self, snapshots: Vec<Snapshot>) -> Result<WriteOutcome, StoreError> {
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

    /// Registers (or updates) a host at its owner, and in the cluster's registry when its
    /// labels or agent version changed there.
    pub async fn register(&self, host: HostRecord) -> Result<(), StoreError> {
        if let (Some(cluster), Some(state)) = (&self.cluster, self.state())
            && state.host_differs(&host.host_id, &host.labels, &host.agent_version)
        {
            let control = cluster.control.clone();
            let op = ControlOp::Register {
                host_id: host.host_id.clone(),
                labels: host.labels.clone(),
                agent_version: host.agent_version.clone(),
            };
            // The registry follows; a registration does not wait for Raft.
            tokio::spawn(async move {
                if let Err(e) = control.execute(op).await {
                    tracing::debug!(error = %e, "host registry entry not written yet");
                }
            });
        }
        if self.remote_owner(&host.host_id).is_none() {
            return self.store.register(host).await;
        }
        let req = ForwardRequest {
            host_id: host.host_id.clone(),
            register: Some(Register {
                host_id: host.host_id.clone(),
                labels: host.labels.clone().into_iter().collect(),
                agent_version: host.agent_version.clone(),
                interval_ms: host.interval_ms,
            }),
            touch_ms: host.last_seen_ms,
            ..ForwardRequest::default()
        };
        match self.forward(&host.host_id, req, true).await {
            Forwarded::Stored(_) => Ok(()),
            Forwarded::Mine(_) => self.store.register(host).await,
            Forwarded::Failed { error, .. } => Err(error),
        }
    }

    /// Registers a host here (a peer forwarded it).
    pub async fn register_local(&self, host: HostRecord) -> Result<(), StoreError> {
        self.store.register(host).await
    }

    /// A heartbeat of a host, at its owner.
    pub async fn touch(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        if self.remote_owner(host_id).is_none() {
            return self.store.touch(host_id, at_ms).await;
        }
        let req = ForwardRequest {
            host_id: host_id.to_string(),
            touch_ms: at_ms,
            ..ForwardRequest::default()
        };
        // A heartbeat is best effort: the next one, or the next batch, says the same. An
        // owner that does not answer is not worth a warning per agent per heartbeat.
        match self.forward(host_id, req, false).await {
            Forwarded::Stored(_) => Ok(()),
            Forwarded::Mine(_) => self.store.touch(host_id, at_ms).await,
            Forwarded::Failed { error, .. } => {
                tracing::debug!(host = %host_id, error = %error, "heartbeat not forwarded");
                Ok(())
            }
        }
    }

    /// A heartbeat recorded here (a peer forwarded it).
    pub async fn touch_local(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        self.store.touch(host_id, at_ms).await
    }

    /// Every broker holding `host_id`'s rows in `[start, end]`: its owners by the ring's
    /// epochs and now, a drained broker standing for where it handed the host off.
    fn owners_between(
        &self,
        state: &ControlState,
        host_id: &str,
        start: i64,
        end: i64,
    ) -> Vec<Member> {
        state
            .read_owners(host_id, start, end)
            .into_iter()
            .filter_map(|n| state.view.member(&n).cloned())
            .collect()
    }

    /// One host's range: from every broker that owned it within the range, merged.
    pub async fn range(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        let (Some(cluster), Some(state)) = (&self.cluster, self.state()) else {
            return self.store.range(q).await;
        };
        let owners = self.owners_between(&state, &q.host_id, q.start_ms, q.end_ms);
        if owners.iter().all(|m| m.id == self.node_id) {
            return self.store.range(q).await;
        }
        let request = RangeRequest {
            host_id: q.host_id.clone(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            metric_names: q.metric_names.clone(),
            limit: u32::try_from(q.limit).unwrap_or(u32::MAX),
            sparse_ok: q.sparse_ok,
            step_ms: q.step_ms,
        };
        let mut answers = Vec::new();
        let mut failed = Vec::new();
        let mut missing = Vec::new();
        for m in &owners {
            let r = if m.id == self.node_id {
                self.store.range(q.clone()).await.map_err(|e| e.to_string())
            } else {
                cluster
                    .peers
                    .range(m, request.clone())
                    .await
                    .map_err(|s| s.message().to_string())
            };
            match r {
                Ok(chunks) => answers.push(chunks),
                Err(e) => {
                    failed.push(format!("{}: {e}", m.id));
                    missing.push(m.id.clone());
                }
            }
        }
        if answers.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "no broker holding {} answered ({})",
                q.host_id,
                failed.join("; ")
            )));
        }
        if !failed.is_empty() {
            // The rest is answered; what the silent brokers hold is missing until they return.
            self.metrics.partial_reads.inc();
            tracing::warn!(host = %q.host_id, missing = %failed.join("; "), "range answered without every owner");
        }
        let mut out = if answers.len() == 1 {
            answers.pop().unwrap_or_default()
        } else {
            let frames = answers.iter().map(|c| Frame::from_chunks(c)).collect();
            Frame::merge(frames).into_chunks(q.limit, q.max_cells, q.sparse_ok)
        };
        if !missing.is_empty() {
            // The gap is marked in the answer, not only in this broker's log.
            if out.is_empty() {
                out.push(RangeChunk::default());
            }
            out[0].missing_brokers = missing;
        }
        Ok(out)
    }

    /// One host's range from this broker's own store (a peer asks).
    pub async fn range_local(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        self.store.range(q).await
    }

    /// One host's registry entry: here, else the cluster's registry.
    pub async fn host(&self, host_id: &str) -> Result<Option<HostRecord>, StoreError> {
        if let Some(h) = self.store.host(host_id).await? {
            return Ok(Some(h));
        }
        Ok(self.state().and_then(|s| {
            s.hosts.get(host_id).map(|e| HostRecord {
                host_id: host_id.to_string(),
                labels: e.labels.clone(),
                agent_version: e.agent_version.clone(),
                interval_ms: 0,
                last_seen_ms: e.first_seen_ms,
            })
        }))
    }

    /// The other brokers a fan-out asks: every member not left nor down.
    fn others(&self) -> Vec<Member> {
        self.state()
            .map(|s| {
                s.view
                    .members()
                    .filter(|m| m.id != self.node_id)
                    .filter(|m| !matches!(m.state, MemberState::Left | MemberState::Down))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest snapshot of every host (every broker's, merged: the newest of each host).
    pub async fn latest(&self, metric_names: &[String]) -> Result<Vec<Snapshot>, StoreError> {
        let mine = self.store.latest(metric_names).await?;
        let Some(cluster) = &self.cluster else {
            return Ok(mine);
        };
        let others = self.others();
        let asks = others.iter().map(|m| cluster.peers.latest(m, metric_names));
        let mut newest: BTreeMap<String, Snapshot> = BTreeMap::new();
        let answers = futures_util::future::join_all(asks).await;
        for (m, a) in others.iter().zip(answers) {
            match a {
                Ok(snaps) => merge_latest(&mut newest, snaps),
                Err(e) => {
                    self.metrics.partial_reads.inc();
                    tracing::warn!(broker = %m.id, error = %e.message(), "latest answered without this broker");
                }
            }
        }
        merge_latest(&mut newest, mine);
        Ok(newest.into_values().collect())
    }

    /// The newest snapshot of every host this broker's store holds (a peer asks).
    pub async fn latest_local(&self, metric_names: &[String]) -> Result<Vec<Snapshot>, StoreError> {
        self.store.latest(metric_names).await
    }

    /// Every registered host (every broker's, merged: each host once, seen last where it was
    /// seen last).
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let mine = self.store.hosts().await?;
        let Some(cluster) = &self.cluster else {
            return Ok(mine);
        };
        let others = self.others();
        let answers =
            futures_util::future::join_all(others.iter().map(|m| cluster.peers.hosts(m))).await;
        let mut hosts: BTreeMap<String, HostRecord> = BTreeMap::new();
        let mut add = |records: Vec<HostRecord>| {
            for r in records {
                match hosts.get(&r.host_id) {
                    Some(h) if h.last_seen_ms >= r.last_seen_ms => {}
                    _ => {
                        hosts.insert(r.host_id.clone(), r);
                    }
                }
            }
        };
        add(mine);
        for (m, a) in others.iter().zip(answers) {
            match a {
                Ok(records) => add(records),
                Err(e) => {
                    self.metrics.partial_reads.inc();
                    tracing::warn!(broker = %m.id, error = %e.message(), "hosts answered without this broker");
                }
            }
        }
        Ok(hosts.into_values().collect())
    }

    /// Every host this broker's store holds (a peer asks).
    pub async fn hosts_local(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.store.hosts().await
    }

    /// Writes blocks another broker handed off (embedded store only: with a shared Redis
    /// there is nothing to hand off). Taken whatever this broker's ring says, as a forward is:
    /// the sender routed them by `epoch`.
    pub async fn import(
        &self,
        from: &str,
        epoch: u64,
        hosts: Vec<(Arc<str>, Vec<Incoming>)>,
    ) -> Result<Imported, StoreError> {
        let AnyStore::Embedded(store) = &*self.store else {
            return Err(StoreError::Unavailable(
                "this broker stores in Redis, which every broker shares: nothing is handed off"
                    .into(),
            ));
        };
        if let Some(state) = self.state()
            && state.view.epoch() < epoch
        {
            tracing::debug!(%from, epoch, mine = state.view.epoch(), "hand-off routed by a newer ring than this broker has applied");
        }
        let (store, from) = (store.clone(), from.to_string());
        let out = tokio::task::spawn_blocking(move || store.import(&from, hosts))
            .await
            .map_err(|e| StoreError::Unavailable(format!("import task failed: {e}")))??;
        self.metrics
            .handoff_imported_sections
            .inc_by(out.sections - out.already);
        Ok(out)
    }

    /// This broker's store: readiness, flush at shutdown, figures.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }
}

/// A forward's outcome.
enum Forwarded {
    Stored(WriteOutcome),
    /// The ring moved: this broker owns the host now.
    Mine(ForwardRequest),
    /// The owner did not take it; `retryable` when it may later (it did not answer, say).
    Failed {
        req: ForwardRequest,
        error: StoreError,
        retryable: bool,
    },
}

/// Keeps the newest snapshot of each host.
fn merge_latest(newest: &mut BTreeMap<String, Snapshot>, snaps: Vec<Snapshot>) {
    for s in snaps {
        match newest.get(&s.host_id) {
            Some(n) if n.timestamp_ms >= s.timestamp_ms => {}
            _ => {
                newest.insert(s.host_id.clone(), s);
            }
        }
    }
}
