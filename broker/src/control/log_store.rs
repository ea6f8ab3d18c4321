//! The Raft log, vote and snapshots on disk, in one redb file (`<data-dir>/raft/raft.redb`):
//! pure Rust, crash-safe transactions, truncation and purge by index. Every write commits with
//! fsync (redb's immediate durability) before openraft is told it is durable. redb blocks, so
//! each call runs on tokio's blocking pool.

// openraft's StorageError is large, and its traits return it: boxing it here would only move
// the allocation.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{LogId, RaftId, StorageError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
pub(super) const SNAPSHOT_META: &str = "snapshot_meta";
pub(super) const SNAPSHOT_DATA: &str = "snapshot_data";

type Result<T> = std::result::Result<T, StorageError>;

fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

/// The redb file shared by the log store and the state machine.
#[derive(Clone)]
pub struct RaftDb(Arc<Database>);

impl RaftDb {
    /// Opens (or creates) the file and its tables.
    pub fn open(path: &Path) -> std::result::Result<RaftDb, redb::Error> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(LOGS)?;
            tx.open_table(META)?;
        }
        tx.commit()?;
        Ok(RaftDb(Arc::new(db)))
    }

    /// Runs `f` on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(write_err)?
    }

    /// Reads meta key `key` as JSON.
    pub(super) async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(read_err)?;
            let t = tx.open_table(META).map_err(read_err)?;
            match t.get(key).map_err(read_err)? {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Reads meta key `key` as bytes.
    pub(super) async fn get_bytes(&self, key: &'static str) -> Result<Option<Vec<u8>>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(read_err)?;
            let t = tx.open_table(META).map_err(read_err)?;
            Ok(t.get(key).map_err(read_err)?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Writes meta keys in one durable transaction.
    pub(super) async fn put(&self, values: Vec<(&'static str, Vec<u8>)>) -> Result<()> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(write_err)?;
            {
                let mut t = tx.open_table(META).map_err(write_err)?;
                for (k, v) in &values {
                    t.insert(*k, v.as_slice()).map_err(write_err)?;
                }
            }
            tx.commit().map_err(write_err)
        })
        .await
    }

    async fn put_json<T: Serialize>(&self, key: &'static str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        self.put(vec![(key, bytes)]).await
    }
}

/// The log store openraft writes through.
#[derive(Clone)]
pub struct LogStore {
    db: RaftDb,
}

impl LogStore {
    pub fn new(db: RaftDb) -> LogStore {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.db
            .run(move |db| {
                let tx = db.begin_read().map_err(read_err)?;
                let t = tx.open_table(LOGS).map_err(read_err)?;
                let mut out = Vec::new();
                for item in t.range(bounds).map_err(read_err)? {
                    let (_, v) = item.map_err(read_err)?;
                    out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
                }
                Ok(out)
            })
            .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId> = self.db.get(LAST_PURGED).await?;
        let last: Option<LogId> = self
            .db
            .run(|db| {
                let tx = db.begin_read().map_err(read_err)?;
                let t = tx.open_table(LOGS).map_err(read_err)?;
                match t.last().map_err(read_err)? {
                    Some((_, v)) => {
                        let e: Entry<TypeConfig> =
                            serde_json::from_slice(v.value()).map_err(read_err)?;
                        Ok(Some(e.log_id))
                    }
                    None => Ok(None),
                }
            })
            .await?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftId>) -> Result<()> {
        self.db.put_json(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftId>>> {
        self.db.get(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        self.db.put_json(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>> {
        Ok(self.db.get::<Option<LogId>>(COMMITTED).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, serde_json::to_vec(&e).map_err(write_err)?));
        }
        let outcome = self
            .db
            .run(move |db| {
                let tx = db.begin_write().map_err(write_err)?;
                {
                    let mut t = tx.open_table(LOGS).map_err(write_err)?;
                    for (i, bytes) in &rows {
                        t.insert(*i, bytes.as_slice()).map_err(write_err)?;
                    }
                }
                tx.commit().map_err(write_err)
            })
            .await;
        match &outcome {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        outcome
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<()> {
        self.db
            .run(move |db| {
                let tx = db.begin_write().map_err(write_err)?;
                {
                    let mut t = tx.open_table(LOGS).map_err(write_err)?;
                    t.retain_in(log_id.index.., |_, _| false)
                        .map_err(write_err)?;
                }
                tx.commit().map_err(write_err)
            })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<()> {
        let purged = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.db
            .run(move |db| {
                let tx = db.begin_write().map_err(write_err)?;
                {
                    let mut m = tx.open_table(META).map_err(write_err)?;
                    m.insert(LAST_PURGED, purged.as_slice())
                        .map_err(write_err)?;
                    let mut t = tx.open_table(LOGS).map_err(write_err)?;
                    t.retain_in(..=log_id.index, |_, _| false)
                        .map_err(write_err)?;
                }
                tx.commit().map_err(write_err)
            })
            .await
    }
}
