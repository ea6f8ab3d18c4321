//! The storage seam: one trait, implemented by the embedded store and Redis (and by
//! [`AnyStore`], whichever of them a broker runs).
//!
//! Semantics every implementation keeps (SPEC S4): one host's snapshots are keyed by
//! host + timestamp (a second write of the same key is a duplicate and ignored), data older than
//! the retention is gone, range reads return snapshots in timestamp order, and the host registry
//! knows each host's labels, agent version, interval and last-seen time.

pub mod any;
mod block;
mod blocks;
mod chunk;
pub mod embedded;
pub(crate) mod frame;
pub mod keys;
mod redis_compact;
pub mod redis_conn;
pub mod redis_store;
pub mod rollup;
mod series;
mod wal;

use std::collections::BTreeMap;
use std::future::Future;

use ringwatch_proto::{RangeChunk, Snapshot};

pub use crate::error::StoreError;
pub use any::AnyStore;
pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use keys::RedisLayout;
pub use redis_conn::{RedisMode, RedisSettings};
pub use redis_store::{RedisConfig, RedisStore};

/// What a write did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Snapshots newly stored.
    pub stored: u32,
    /// Snapshots whose host + timestamp was already stored; ignored.
    pub duplicates: u32,
    /// Samples (metric values) newly stored.
    pub samples: u64,
    /// Per input snapshot: newly stored (published live) or a duplicate.
    pub new: Vec<bool>,
    /// Snapshots the store refused (by index in the input, with the reason): a host past its
    /// bound of distinct metric names. Neither stored nor logged.
    pub refused: Vec<(usize, String)>,
}

/// A host as the registry knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostRecord {
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub interval_ms: u32,
    /// Newest of: last registration, heartbeat or stored snapshot (Unix ms).
    pub last_seen_ms: i64,
}

/// A range read.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub host_id: String,
    /// Inclusive bounds, Unix ms.
    pub start_ms: i64,
    pub end_ms: i64,
    /// Empty = all; an entry ending in `*` selects by prefix.
    pub metric_names: Vec<String>,
    /// At most this many rows (timestamps), the oldest first.
    pub limit: usize,
    /// At most about this many values and timestamps in all (whole chunks, at least one); an
    /// answer cut short by it has `truncated` on its last chunk.
    pub max_cells: usize,
    /// Whether the asker reads sparse columns (`Column.rows`); dense otherwise.
    pub sparse_ok: bool,
    /// 0: raw rows. Otherwise rollups in buckets of this width (a multiple of
    /// [`rollup::ROLLUP_MS`]): one row per bucket from `bucket(start_ms)` on, `limit` ignored.
    pub step_ms: i64,
}

/// Raw values a page of a rollup read answered from raw rows holds, at most.
const ROLLUP_PAGE_CELLS: usize = 4 << 20;

/// A rollup read answered from raw rows (for stores and layouts that keep no rollups, and rows
/// not yet compressed), page by page: its memory is one page of raw values and the answer.
/// It stops, `truncated`, once the answer passes the query's `max_cells`.
pub(crate) struct RawRollup {
    q: RangeQuery,
    from: i64,
    acc: rollup::Rollup,
    done: bool,
    cut: bool,
}

impl RawRollup {
    pub(crate) fn new(q: &RangeQuery) -> RawRollup {
        RawRollup {
            from: rollup::bucket(q.start_ms, q.step_ms.max(1)),
            q: q.clone(),
            acc: rollup::Rollup::default(),
            done: false,
            cut: false,
        }
    }

    /// The next page to read raw, if any.
    pub(crate) fn next_query(&self) -> Option<RangeQuery> {
        (!self.done).then(|| RangeQuery {
            start_ms: self.from,
            limit: usize::MAX,
            max_cells: ROLLUP_PAGE_CELLS,
            sparse_ok: true,
            step_ms: 0,
            ..self.q.clone()
        })
    }

    /// Takes the answer to `next_query`.
    pub(crate) fn take(&mut self, page: &[RangeChunk]) {
        let part = rollup::Rollup::of(&frame::Frame::from_chunks(page), self.q.step_ms);
        self.acc =
            rollup::Rollup::combine(vec![std::mem::take(&mut self.acc), part], self.q.step_ms);
        let last = page
            .iter()
            .rev()
            .find_map(|c| c.timestamps_ms.last().copied());
        let more = page.last().is_some_and(|c| c.truncated);
        match last {
            Some(l) if more && l < self.q.end_ms => self.from = l + 1,
            _ => self.done = true,
        }
        if !self.done && self.acc.cells() > self.q.max_cells {
            self.done = true;
            self.cut = true;
        }
    }

    pub(crate) fn finish(self) -> Vec<RangeChunk> {
        let mut out = self.acc.into_chunks(self.q.max_cells, self.q.sparse_ok);
        if self.cut
            && let Some(last) = out.last_mut()
        {
            last.truncated = true;
        }
        out
    }
}

/// Cuts `chunks` to about `max_cells` (whole chunks, at least one), marking the last one
/// `truncated` if any were left out: for stores that build the whole answer first.
pub fn cap_cells(mut chunks: Vec<RangeChunk>, max_cells: usize) -> Vec<RangeChunk> {
    let mut cells = 0;
    let keep = chunks
        .iter()
        .position(|c| {
            cells += c.cells();
            cells > max_cells
        })
        .map_or(chunks.len(), |i| i.max(1));
    if keep < chunks.len() {
        chunks.truncate(keep);
        if let Some(last) = chunks.last_mut() {
            last.truncated = true;
        }
    }
    chunks
}

/// Figures a store reports about itself for /metrics (zero where a store has no such figure).
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub hosts: u64,
    /// Snapshots held (embedded store: in the head and in blocks).
    pub snapshots: u64,
    /// Values held in memory (embedded store: the head).
    pub samples: u64,
    pub disk_bytes: u64,
    /// Snapshots dropped by retention and by the memory limit (embedded store).
    pub evicted_retention: u64,
    pub evicted_memory: u64,
    /// Log segments found with a torn tail at start-up (embedded store).
    pub wal_corrupt_tails: u64,
    /// Distinct metric names held in memory (embedded store; unused ones are released).
    pub metric_names: u64,
    /// Store round trips that failed and were retried (Redis).
    pub write_retries: u64,
    /// Writes given up after retrying: not acknowledged, the agent keeps the data (Redis).
    pub write_failures: u64,
    /// Blocks on disk, their bytes, and the bytes of their sections cached (embedded store).
    pub blocks: u64,
    pub block_bytes: u64,
    /// Samples (values) the blocks hold.
    pub block_samples: u64,
    pub block_cache_bytes: u64,
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    /// Blocks written by cuts, blocks merged by compaction, and cuts or merges that failed
    /// (a cut's rows wait in memory).
    pub blocks_written: u64,
    pub blocks_compacted: u64,
    pub cut_failures: u64,
    /// Block sections reads with a step took from their stored rollups, and from their rows.
    pub block_rollups_stored: u64,
    pub block_rollups_from_rows: u64,
    /// Damaged blocks set aside at start, and damaged sections skipped on read.
    pub corrupt_blocks: u64,
    pub corrupt_sections: u64,
    /// Log segments deleted because blocks hold their rows.
    pub wal_segments_covered: u64,
    /// Snapshots refused because the disk was below its reserve.
    pub refused_disk_full: u64,
    /// Redis compact layout: windows closed into chunks, chunks rewritten with late rows, and
    /// chunks or open rows found damaged (never served).
    pub chunks_closed: u64,
    pub chunk_merges: u64,
    pub corrupt_chunks: u64,
    /// Redis compact layout: day rollups made.
    pub rollup_days: u64,
}

/// The storage trait. Implementations are cheap to share behind an `Arc`.
pub trait Store: Send + Sync + 'static {
    /// Stores snapshots durably (to the extent the implementation promises) before returning:
    /// the broker acknowledges agents only after this returns `Ok`.
    fn write(
        &self,
        snapshots: &[Snapshot],
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Registers (or updates) a host in the registry.
    fn register(&self, host: HostRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks a host as seen at `at_ms` (heartbeat).
    fn touch(
        &self,
        host_id: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One host's raw values in `[start_ms, end_ms]` as column chunks, oldest first, metrics
    /// filtered by name, at most `limit` rows.
    fn range(
        &self,
        query: RangeQuery,
    ) -> impl Future<Output = Result<Vec<RangeChunk>, StoreError>> + Send;

    /// The newest snapshot of every host, metrics filtered by name.
    fn latest(
        &self,
        metric_names: &[String],
    ) -> impl Future<Output = Result<Vec<Snapshot>, StoreError>> + Send;

    /// Every registered host.
    fn hosts(&self) -> impl Future<Output = Result<Vec<HostRecord>, StoreError>> + Send;

    /// One registered host, if it is: one lookup, whatever the number of hosts (a `Range` over
    /// an empty window asks it, so its cost must not grow with the fleet).
    fn host(
        &self,
        host_id: &str,
    ) -> impl Future<Output = Result<Option<HostRecord>, StoreError>> + Send;

    /// Readiness: `Ok` when the store can take writes.
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes everything written so far durable (called at shutdown).
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Figures for /metrics.
    fn stats(&self) -> StoreStats;
}
