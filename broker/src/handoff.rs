//! Hand-off on drain (issue 11, part 6): a broker that the admin API drained sends its hosts'
//! retained data to their new owners before it reports itself drained.
//!
//! It waits for its own member state to be `draining` (out of the ring: new writes already go
//! to the new owners), then, on the embedded store:
//! 1. seals its head into blocks and pauses compaction (so the blocks it lists stay as they are);
//! 2. lists every host's block sections and sends them, as they are stored (compressed columns
//!    and rollups, never re-encoded), to each host's owner at the ring epoch of the drain,
//!    batched per owner (`Peer.Import`, about 8 MiB a request). The owner verifies every
//!    section (CRCs, every column decoding to the rows and values claimed) and writes them
//!    durably as a block before it answers; the answer's counts must equal what was sent;
//! 3. seals and lists again, and sends what is new (a late forward from a broker with an older
//!    ring), until a pass finds nothing new;
//! 4. waits until its forward queue (batches it acknowledged for owners that did not take them
//!    then) is delivered, and commits its hand-off as done through Raft: the member becomes `drained`, and reads of the
//!    epochs it owned go to where it sent each host (`ControlState::read_owners`).
//!
//! Progress (hosts and bytes to go) is committed about once a second, so `/api/cluster` of any
//! broker shows it, and is in this broker's metrics. A failure (an owner not answering after
//! its retries, the ring changing meanwhile) starts the hand-off again: sections an owner
//! holds already are not written twice. With Redis, which every broker shares, there is
//! nothing to hand off: the broker is drained at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch_core::{Member, MemberState, now_ms};
use ringwatch_proto::{ImportHost, ImportRequest};
use tokio_util::sync::CancellationToken;

use crate::control::{ControlOp, Handoff};
use crate::router::{Cluster, Router};
use crate::store::AnyStore;
use crate::store::embedded::{EmbeddedStore, Outgoing};

/// About how many bytes of sections one request carries.
const BATCH_BYTES: u64 = 8 << 20;
/// How often progress is committed.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Back-off between tries of one request to an owner.
const RETRIES: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// Passes (seal, list, send what is new) before a hand-off that keeps finding new rows fails.
const MAX_PASSES: usize = 5;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HandoffError(String);

fn err(m: impl Into<String>) -> HandoffError {
    HandoffError(m.into())
}

/// Watches this broker's member state; hands off whenever it is `draining`, until it is done.
pub async fn run(router: Arc<Router>, shutdown: CancellationToken) {
    let Some(cluster) = router.cluster() else {
        return;
    };
    let mut rx = cluster.state.clone();
    loop {
        let state = rx
            .borrow_and_update()
            .view
            .member(router.node_id())
            .map(|m| m.state);
        if matches!(state, Some(MemberState::Drained | MemberState::Left)) {
            resume_compaction(&router);
        }
        if state == Some(MemberState::Draining) {
            let started = Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = handoff(&router, cluster) => match r {
                    Ok(()) => {
                        tracing::info!(ms = started.elapsed().as_millis() as u64, "hand-off done: drained");
                        resume_compaction(&router);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "hand-off not finished; starting it again");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                        continue;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Progress, in this broker's metrics and (about once a second) through Raft.
struct Progress<'a> {
    router: &'a Router,
    cluster: &'a Cluster,
    report: Handoff,
    last: Option<Instant>,
}

impl Progress<'_> {
    async fn publish(&mut self, force: bool) -> Result<(), HandoffError> {
        let m = self.router.metrics();
        m.handoff_hosts_remaining.set(self.report.hosts_left as i64);
        m.handoff_bytes_remaining.set(self.report.bytes_left as i64);
        if !force && self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return Ok(());
        }
        self.last = Some(Instant::now());
        self.report.updated_ms = now_ms();
        let op = ControlOp::Handoff {
            id: self.router.node_id().to_string(),
            progress: self.report.clone(),
        };
        match self.cluster.control.execute(op).await {
            Ok(_) => Ok(()),
            // Progress is for people; only the final report must land.
            Err(e) if !self.report.done => {
                tracing::debug!(error = %e, "hand-off progress not committed");
                Ok(())
            }
            Err(e) => Err(err(format!("committing the hand-off as done: {e}"))),
        }
    }
}

/// Compaction again once the hand-off is done (a re-activated broker that was draining keeps
/// it paused until it is drained again: its blocks then still are the ones it listed).
fn resume_compaction(router: &Router) {
    if let AnyStore::Embedded(store) = router.store()
        && store.compaction_paused()
        && let Err(e) = store.pause_compaction(false)
    {
        tracing::warn!(error = %e, "compaction not resumed after the hand-off");
    }
}

/// Waits until the forward queue is delivered: batches this broker acknowledged for other
/// owners must not leave with it.
async fn queue_delivered(cluster: &Cluster) {
    let mut said = false;
    while !cluster.queue.is_empty() {
        if !said {
            tracing::info!(
                batches = cluster.queue.len(),
                "draining: waiting for the forward queue to reach its owners"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, HandoffError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(format!("task failed: {e}")))?
        .map_err(|e| err(e.to_string()))
}

async fn handoff(router: &Router, cluster: &Cluster) -> Result<(), HandoffError> {
    let state = cluster.state.borrow().clone();
    let epoch = state.view.epoch();
    let mut progress = Progress {
        router,
        cluster,
        report: Handoff {
            epoch,
            ..Handoff::default()
        },
        last: None,
    };
    let store = match router.store() {
        AnyStore::Embedded(s) => s.clone(),
        AnyStore::Redis(_) => {
            tracing::info!(
                "draining: the store is Redis, shared by every broker; nothing to hand off"
            );
            queue_delivered(cluster).await;
            progress.report.done = true;
            return progress.publish(true).await;
        }
    };
    // Paused until the hand-off is done, through failures and restarts (the pause is on
    // disk): the sections sent stay the sections stored, so sending them again after a failure
    // writes nothing twice at their owner.
    let s = store.clone();
    blocking(move || s.pause_compaction(true)).await?;
    tracing::info!(
        epoch,
        "draining: handing this broker's blocks off to their new owners"
    );
    let mut sent: HashSet<(u64, u64)> = HashSet::new();
    let mut counted: HashSet<std::sync::Arc<str>> = HashSet::new();
    for pass in 0..MAX_PASSES {
        let s = store.clone();
        let sealed = blocking(move || s.seal()).await?;
        let s = store.clone();
        let listed = blocking(move || s.outgoing()).await?;
        // What this pass sends: sections not sent before.
        let todo: Vec<Outgoing> = listed
            .iter()
            .map(|o| o.unsent(&sent))
            .filter(|o| !o.is_empty())
            .collect();
        if todo.is_empty() {
            queue_delivered(cluster).await;
            progress.report.done = true;
            progress.report.hosts_left = 0;
            progress.report.bytes_left = 0;
            progress.publish(true).await?;
            router.metrics().handoff_hosts_remaining.set(0);
            return Ok(());
        }
        let bytes: u64 = todo.iter().map(Outgoing::bytes).sum();
        // A host counted once in the total, whatever the passes.

        let new_hosts = todo
            .iter()
            .filter(|o| counted.insert(o.host.clone()))
            .count();
        progress.report.hosts_total += new_hosts as u64;
        progress.report.bytes_total += bytes;
        progress.report.hosts_left = todo.len() as u64;
        progress.report.bytes_left = bytes;
        tracing::info!(pass, sealed, hosts = todo.len(), bytes, "hand-off pass");
        progress.publish(true).await?;
        // Per owner at the drain's epoch, in batches of about BATCH_BYTES.
        let mut by_owner: BTreeMap<String, (Member, Vec<Outgoing>)> = BTreeMap::new();
        for o in todo {
            let owner = state
                .view
                .owners(&o.host, 1)
                .into_iter()
                .next()
                .cloned()
                .ok_or_else(|| err("the ring is empty: no broker to hand off to"))?;
            by_owner
                .entry(owner.id.clone())
                .or_insert_with(|| (owner, Vec::new()))
                .1
                .push(o);
        }
        for (_, (owner, hosts)) in by_owner {
            let mut batch: Vec<Outgoing> = Vec::new();
            let mut batch_bytes = 0;
            let mut hosts = hosts.into_iter().peekable();
            while let Some(o) = hosts.next() {
                batch_bytes += o.bytes();
                batch.push(o);
                if batch_bytes < BATCH_BYTES && hosts.peek().is_some() {
                    continue;
                }
                if cluster.state.borrow().view.epoch() != epoch {
                    return Err(err("the ring changed during the hand-off"));
                }
                let done = std::mem::take(&mut batch);
                let n = done.len() as u64;
                send(router, cluster, &store, &owner, epoch, &done, &mut sent).await?;
                progress.report.hosts_left = progress.report.hosts_left.saturating_sub(n);
                progress.report.bytes_left = progress.report.bytes_left.saturating_sub(batch_bytes);
                router.metrics().handoff_sent_bytes.inc_by(batch_bytes);
                batch_bytes = 0;
                progress.publish(false).await?;
            }
        }
    }
    Err(err(format!(
        "new rows kept arriving through {MAX_PASSES} passes"
    )))
}

/// Sends one batch of hosts to `owner` and checks its answer against what was sent.
async fn send(
    router: &Router,
    cluster: &Cluster,
    store: &EmbeddedStore,
    owner: &Member,
    epoch: u64,
    batch: &[Outgoing],
    sent: &mut HashSet<(u64, u64)>,
) -> Result<(), HandoffError> {
    let (s, list) = (store.clone(), batch.to_vec());
    let read = blocking(move || {
        let mut hosts = Vec::with_capacity(list.len());
        for o in &list {
            match s.read_outgoing(o)? {
                Some(sections) => hosts.push((o.host.to_string(), sections)),
                None => return Ok(None),
            }
        }
        Ok(Some(hosts))
    })
    .await?
    .ok_or_else(|| err("a block was deleted while it was being handed off"))?;
    let (mut sections, mut rows, mut values) = (0u64, 0u64, 0u64);
    let hosts: Vec<ImportHost> = read
        .into_iter()
        .map(|(host_id, list)| {
            sections += list.len() as u64;
            rows += list.iter().map(|s| u64::from(s.row_count)).sum::<u64>();
            values += list.iter().map(|s| u64::from(s.values)).sum::<u64>();
            ImportHost {
                host_id,
                sections: list,
            }
        })
        .collect();
    let req = ImportRequest {
        from_node: router.node_id().to_string(),
        ring_epoch: epoch,
        hosts,
    };
    let mut delays = RETRIES.iter();
    let reply = loop {
        match cluster.peers.import(owner, req.clone()).await {
            Ok(r) => break r,
            Err(status) => {
                let delay = ringwatch_net::peers::retryable(&status)
                    .then(|| delays.next())
                    .flatten();
                let Some(delay) = delay else {
                    return Err(err(format!(
                        "{} did not take the hand-off: {}",
                        owner.id,
                        status.message()
                    )));
                };
                tracing::debug!(owner = %owner.id, error = %status.message(), "hand-off batch not taken; retrying");
                tokio::time::sleep(*delay).await;
            }
        }
    };
    // Verified: the owner decoded and wrote exactly what was sent (held already counts).
    if reply.sections != sections || reply.hosts != batch.len() as u64 {
        return Err(err(format!(
            "{} took {} sections of {} hosts; {sections} of {} were sent",
            owner.id,
            reply.sections,
            reply.hosts,
            batch.len()
        )));
    }
    if reply.already == 0 && (reply.rows != rows || reply.values != values) {
        return Err(err(format!(
            "{} stored {} rows and {} values; {rows} and {values} were sent",
            owner.id, reply.rows, reply.values
        )));
    }
    for o in batch {
        sent.extend(o.keys());
    }
    tracing::debug!(owner = %owner.id, hosts = batch.len(), sections, rows, "hand-off batch verified");
    Ok(())
}
