//! The Raft state machine: applies committed `ControlRequest`s to the `ControlState`, builds
//! and installs snapshots (JSON of the state, kept in the redb file so a restart starts from
//! the last one and openraft replays only the log after it), and publishes every new state on
//! a watch channel, so the broker's readers never wait on Raft.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, watch};

use super::log_store::{RaftDb, SNAPSHOT_DATA, SNAPSHOT_META};
use super::state::{ControlResponse, ControlState};
use super::types::{LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

type Result<T> = std::result::Result<T, StorageError>;

/// Everything applied so far: the snapshot's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ControlState,
}

struct Inner {
    db: RaftDb,
    applied: RwLock<Applied>,
    /// The current snapshot: its meta and bytes.
    snapshot: RwLock<Option<(SnapshotMeta, Vec<u8>)>>,
    published: watch::Sender<Arc<ControlState>>,
}

/// The state machine handle (cheap to clone; openraft holds one, the snapshot builder another).
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

impl StateMachine {
    /// The state machine as of the last snapshot in `db` (empty without one).
    pub async fn open(db: RaftDb) -> Result<StateMachine> {
        let meta: Option<SnapshotMeta> = db.get(SNAPSHOT_META).await?;
        let data = db.get_bytes(SNAPSHOT_DATA).await?;
        let (applied, snapshot) = match (meta, data) {
            (Some(meta), Some(data)) => {
                let applied: Applied = serde_json::from_slice(&data).map_err(|e| {
                    StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
                })?;
                (applied, Some((meta, data)))
            }
            _ => (Applied::default(), None),
        };
        let (published, _) = watch::channel(Arc::new(applied.state.clone()));
        Ok(StateMachine {
            inner: Arc::new(Inner {
                db,
                applied: RwLock::new(applied),
                snapshot: RwLock::new(snapshot),
                published,
            }),
        })
    }

    /// The applied state, following every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControlState>> {
        self.inner.published.subscribe()
    }

    /// The applied state now.
    pub fn current(&self) -> Arc<ControlState> {
        self.inner.published.borrow().clone()
    }

    async fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<()> {
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        })?;
        self.inner
            .db
            .put(vec![
                (SNAPSHOT_META, meta_bytes),
                (SNAPSHOT_DATA, data.to_vec()),
            ])
            .await?;
        *self.inner.snapshot.write().await = Some((meta.clone(), data.to_vec()));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (meta, data) = {
            let applied = self.inner.applied.read().await;
            let data = serde_json::to_vec(&*applied)
                .map_err(|e| StorageError::from(StorageIOError::read_state_machine(&e)))?;
            let id = applied.last_applied.map_or_else(
                || "none".to_string(),
                |l| format!("{}-{}", l.leader_id, l.index),
            );
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id: id,
            };
            (meta, data)
        };
        self.save_snapshot(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership)> {
        let applied = self.inner.applied.read().await;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ControlResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.inner.applied.write().await;
        let mut out = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let epoch = applied.state.view.epoch();
            let response = match entry.payload {
                EntryPayload::Normal(request) => applied.state.apply(request),
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    ControlResponse::Applied {
                        epoch,
                        ring_changed: false,
                    }
                }
                EntryPayload::Blank => ControlResponse::Applied {
                    epoch,
                    ring_changed: false,
                },
            };
            out.push(response);
        }
        self.inner
            .published
            .send_replace(Arc::new(applied.state.clone()));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let mut installed: Applied = serde_json::from_slice(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        self.save_snapshot(meta, &data).await?;
        let state = Arc::new(installed.state.clone());
        *self.inner.applied.write().await = installed;
        self.inner.published.send_replace(state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self
            .inner
            .snapshot
            .read()
            .await
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(data.clone())),
            }))
    }
}
