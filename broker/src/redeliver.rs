//! Delivers the forward queue: each queued batch, oldest first, to its host's owner of the
//! moment (this broker, when the ring gives it the host), deleting it once stored there.
//!
//! A round goes through the queue once. An owner that does not answer keeps the rest of its
//! batches for the next round (so each host's batches arrive in the order they were queued);
//! rounds then wait 1, 2, 4 … up to 15 s, or less when the ring moves or a batch is queued. A
//! batch its owner refuses for good (bad input it will never take), or that does not read
//! back, is set aside on disk (`<seq>.rejected`, `<seq>.corrupt`), counted and logged: it is
//! never retried forever, and never silently dropped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use crate::forward_queue::ForwardQueue;
use crate::router::Router;

/// Runs until `shutdown`: delivers what is queued, and what is queued later.
pub async fn run(router: Arc<Router>, queue: Arc<ForwardQueue>, shutdown: CancellationToken) {
    let Some(cluster) = router.cluster() else {
        return;
    };
    let mut ring = cluster.state.clone();
    let new_backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(15))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = new_backoff();
    loop {
        router.metrics().set_forward_queue(&queue);
        let pending = queue.pending();
        let failed = if pending.is_empty() {
            false
        } else {
            round(&router, &queue, pending, &shutdown).await
        };
        router.metrics().set_forward_queue(&queue);
        if shutdown.is_cancelled() {
            return;
        }
        let wait = if failed {
            backoff.next().unwrap_or(Duration::from_secs(15))
        } else {
            backoff = new_backoff();
            // Nothing left to try: until a batch is queued.
            Duration::MAX
        };
        ring.borrow_and_update();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => {}
            _ = queue.pushed(), if !failed => {}
            _ = ring.changed() => {}
        }
    }
}

/// One pass over `pending`; whether a batch is left to try again.
async fn round(
    router: &Router,
    queue: &Arc<ForwardQueue>,
    pending: Vec<crate::forward_queue::Queued>,
    shutdown: &CancellationToken,
) -> bool {
    let metrics = router.metrics();
    let mut silent: HashSet<String> = HashSet::new();
    let mut failed = false;
    for q in pending {
        if shutdown.is_cancelled() {
            return true;
        }
        let owner = router.owner_of(&q.host);
        if silent.contains(&owner) {
            failed = true;
            continue;
        }
        let loaded = {
            let queue = queue.clone();
            tokio::task::spawn_blocking(move || queue.load(q.seq)).await
        };
        let req = match loaded {
            Ok(Ok(req)) => req,
            Ok(Err(e)) => {
                tracing::error!(seq = q.seq, host = %q.host, error = %e, "a queued batch does not read back; set aside");
                set_aside(router, queue, q.seq, "corrupt");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading a queued batch stopped");
                failed = true;
                continue;
            }
        };
        match router.redeliver(req).await {
            Ok(()) => {
                if let Err(e) = queue.remove(q.seq) {
                    // Delivered: at worst delivered again after a restart (a duplicate there).
                    tracing::warn!(seq = q.seq, error = %e, "a delivered batch not deleted");
                }
                metrics.forward_queue_event("delivered");
                tracing::debug!(seq = q.seq, host = %q.host, %owner, "queued batch delivered");
            }
            Err((e, true)) => {
                tracing::debug!(seq = q.seq, host = %q.host, %owner, error = %e, "queued batch not delivered yet");
                silent.insert(owner);
                failed = true;
            }
            Err((e, false)) => {
                tracing::error!(seq = q.seq, host = %q.host, %owner, error = %e, "the owner refuses a queued batch for good; set aside");
                set_aside(router, queue, q.seq, "rejected");
            }
        }
    }
    failed
}

fn set_aside(router: &Router, queue: &ForwardQueue, seq: u64, why: &'static str) {
    router.metrics().forward_queue_event(why);
    if let Err(e) = queue.set_aside(seq, why) {
        tracing::error!(seq, error = %e, "a queued batch could not be set aside");
    }
}
