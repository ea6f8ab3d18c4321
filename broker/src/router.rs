//! Where a batch goes. Today one broker owns every host, so the router writes to the local
//! store; the consistent-hash ring (`ring.rs`, later) slots in here: look up the owners of the
//! batch's host, write locally if this broker is one, forward to the others.

use std::sync::Arc;

use ringwatch_proto::Snapshot;

use crate::live::Live;
use crate::store::{Store, StoreError, WriteOutcome};

pub struct Router<S> {
    node_id: String,
    store: Arc<S>,
    live: Arc<Live>,
}

impl<S: Store> Router<S> {
    pub fn new(node_id: String, store: Arc<S>, live: Arc<Live>) -> Self {
        Router {
            node_id,
            store,
            live,
        }
    }

    /// The broker that owns `host_id`'s series.
    pub fn owner_of(&self, _host_id: &str) -> &str {
        &self.node_id
    }

    /// Stores one host's batch at its owner(s); returns once it is stored, after publishing
    /// it to live subscribers.
    pub async fn write(&self, snapshots: Vec<Snapshot>) -> Result<WriteOutcome, StoreError> {
        let out = self.store.write(&snapshots).await?;
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
}
