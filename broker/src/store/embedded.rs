//! The embedded store: in-process, no server. The default for local runs and tests.
//!
//! Each host's snapshots are kept in memory in timestamp order in a compact form (metric names
//! interned to ids), so range reads are a binary search and a copy. Every write goes to the
//! write-ahead log (`wal.rs`) with one `write` call before it is applied and acknowledged, so a
//! killed broker loses nothing it acknowledged; the log is fsynced on an interval (or per write).
//! Retention drops data older than the configured age, in memory and, by whole segments, on
//! disk. Memory is bounded by a sample budget: when it is exceeded the oldest data of all hosts
//! is evicted first, counted and logged.

use foldhash::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prost::Message;
use ringwatch_proto::{HostInfo, RangeChunk, Snapshot, name_selected};

use super::series::{Inserted, Names, Rows, Series};
use super::wal::{self, Wal};
use super::{HostRecord, RangeQuery, Store, StoreError, StoreStats, WriteOutcome};

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Where the log lives; `None` keeps everything in memory only.
    pub data_dir: Option<PathBuf>,
    pub retention: Duration,
    /// Most samples held in memory before the oldest are evicted.
    pub memory_limit_samples: u64,
    /// fsync interval; zero means fsync every write before acknowledging.
    pub fsync_interval: Duration,
    pub segment_max_bytes: u64,
    /// Most distinct metric names one host may hold; a snapshot that would pass it is refused.
    pub max_metric_names_per_host: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            memory_limit_samples: 20_000_000,
            fsync_interval: Duration::from_secs(1),
            segment_max_bytes: 64 << 20,
            max_metric_names_per_host: 4096,
        }
    }
}

/// Counters the store keeps for /metrics.
#[derive(Debug, Default)]
pub struct EmbeddedCounters {
    pub evicted_retention: AtomicU64,
    pub evicted_memory: AtomicU64,
    pub wal_corrupt_tails: AtomicU64,
    pub wal_replayed_records: AtomicU64,
}

#[derive(Default)]
struct Host {
    record: HostRecord,
    series: Series,
    /// The metric names (ids) its series holds: bounded by `max_metric_names_per_host`.
    names: HashSet<u32>,
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, Host>,
    names: Names,
    snapshots: u64,
    /// Values held (8 bytes each; rows where a metric is absent outside its span cost
    /// nothing): what the memory limit bounds.
    cells: u64,
}

impl State {
    fn contains(&self, host: &str, ts: i64) -> bool {
        self.hosts.get(host).is_some_and(|h| h.series.contains(ts))
    }

    /// Inserts unless host + timestamp is present; returns the samples inserted.
    fn insert(&mut self, snap: &Snapshot, seen_ms: i64) -> Option<u64> {
        let ids: Vec<u32> = snap
            .metrics
            .iter()
            .map(|m| self.names.intern(&m.name))
            .collect();
        let host = self.hosts.entry(snap.host_id.clone()).or_default();
        if host.record.host_id.is_empty() {
            host.record.host_id = snap.host_id.clone();
        }
        host.record.last_seen_ms = host.record.last_seen_ms.max(seen_ms);
        match host.series.insert(snap, &ids) {
            Inserted::Duplicate => None,
            Inserted::New(samples, cells) => {
                host.names.extend(ids);
                self.snapshots += 1;
                self.cells += cells;
                Some(samples)
            }
        }
    }

    /// Drops every row older than `cutoff`; returns the snapshots dropped.
    fn evict_before(&mut self, cutoff: i64) -> u64 {
        let (mut rows, mut cells) = (0, 0);
        for h in self.hosts.values_mut() {
            let (r, c) = h.series.evict_before(cutoff);
            if r > 0 {
                h.names = h.series.name_ids();
            }
            rows += r;
            cells += c;
        }
        self.snapshots -= rows;
        self.cells -= cells;
        if rows > 0 && self.names.release_due() {
            self.release_names();
        }
        rows
    }

    /// Releases the metric names no block holds any more (at most once per 1024 new names,
    /// so the pass over every block is paid rarely).
    fn release_names(&mut self) {
        let mut used = vec![false; self.names.len()];
        for h in self.hosts.values() {
            h.series.mark_names(&mut used);
        }
        let released = self.names.release_unused(&used);
        if released > 0 {
            tracing::debug!(
                released,
                live = self.names.live(),
                "released unused metric names"
            );
        }
    }

    /// Brings the values held down to `target`, taking the oldest rows of the host that holds
    /// the most each time (a twentieth of its rows at a time): one host's flood costs its own
    /// history first, and hosts of equal size lose their oldest rows alike. Returns the
    /// snapshots dropped.
    fn evict_largest_until(&mut self, target: u64) -> u64 {
        if self.cells <= target {
            return 0;
        }
        let mut by_size: std::collections::BinaryHeap<(u64, String)> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.series.cells() > 0)
            .map(|(id, h)| (h.series.cells(), id.clone()))
            .collect();
        let mut dropped = 0;
        let mut touched = HashSet::default();
        while self.cells > target {
            let Some((_, id)) = by_size.pop() else {
                break;
            };
            let Some(h) = self.hosts.get_mut(&id) else {
                continue;
            };
            let (rows, cells) = h.series.evict_oldest(h.series.rows() / 20);
            self.snapshots -= rows;
            self.cells -= cells;
            dropped += rows;
            if h.series.cells() > 0 {
                by_size.push((h.series.cells(), id.clone()));
            }
            touched.insert(id);
        }
        // Each host's names once, after all its steps.
        for id in touched {
            if let Some(h) = self.hosts.get_mut(&id) {
                h.names = h.series.name_ids();
            }
        }
        if dropped > 0 && self.names.release_due() {
            self.release_names();
        }
        dropped
    }

    /// Whether `snap` would take its host past `max` distinct metric names, counting the names
    /// `pending` (earlier snapshots of the same write) adds: then the reason.
    fn names_over<'a>(
        &self,
        snap: &'a Snapshot,
        max: usize,
        pending: &mut HashMap<&'a str, HashSet<&'a str>>,
    ) -> Option<String> {
        let held = self.hosts.get(&snap.host_id).map(|h| &h.names);
        let adding = pending.entry(snap.host_id.as_str()).or_default();
        let fresh: Vec<&str> = snap
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| {
                let known = self
                    .names
                    .id(n)
                    .is_some_and(|id| held.is_some_and(|h| h.contains(&id)));
                !known && !adding.contains(n)
            })
            .collect();
        let have = held.map_or(0, |h| h.len()) + adding.len();
        if have + fresh.len() > max {
            return Some(format!(
                "host {} would hold {} distinct metric names; the limit is {max} \
                 (--max-metric-names-per-host)",
                snap.host_id,
                have + fresh.len()
            ));
        }
        adding.extend(fresh);
        None
    }
}

/// `metric_names` as a per-name-id decision, computed once per name.
fn selector<'a>(names: &'a Names, patterns: &'a [String]) -> impl FnMut(u32) -> bool + 'a {
    let mut cache: Vec<Option<bool>> = vec![None; names.len()];
    move |id| {
        let slot = &mut cache[id as usize];
        *slot.get_or_insert_with(|| name_selected(patterns, names.name(id)))
    }
}

struct Inner {
    cfg: EmbeddedConfig,
    state: RwLock<State>,
    wal: Option<Mutex<Wal>>,
    counters: EmbeddedCounters,
    disk_bytes: AtomicU64,
    /// Log segments closed by rotation and not yet fsynced.
    unsynced: Mutex<Vec<std::fs::File>>,
    /// Held by `sync_now`: one sync at a time.
    sync_lock: Mutex<()>,
    /// Per-host admission: a write holds its hosts' stripes from the name-bound check to the
    /// insert, so two writes of one host cannot both pass the check on the same count.
    admission: Vec<Mutex<()>>,
}

/// `out` with its last chunk marked `truncated`.
fn truncated(mut out: Vec<RangeChunk>) -> Vec<RangeChunk> {
    if let Some(c) = out.last_mut() {
        c.truncated = true;
    }
    out
}

/// Most values a range builds under one hold of the store's lock.
const RANGE_PIECE_CELLS: usize = 256 * 1024;

/// Stripes of [`Inner::admission`].
const ADMISSION_STRIPES: usize = 64;

fn stripe(host: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    host.hash(&mut h);
    (h.finish() % ADMISSION_STRIPES as u64) as usize
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn host_to_info(r: &HostRecord) -> HostInfo {
    HostInfo {
        host_id: r.host_id.clone(),
        labels: r.labels.clone().into_iter().collect(),
        agent_version: r.agent_version.clone(),
        last_seen_ms: r.last_seen_ms,
        interval_ms: r.interval_ms,
        state: 0,
    }
}

impl EmbeddedStore {
    /// Opens the store, replaying the log in `data_dir` if there is one.
    pub fn open(cfg: EmbeddedConfig) -> Result<EmbeddedStore, StoreError> {
        let mut state = State::default();
        let counters = EmbeddedCounters::default();
        let cutoff = now_ms() - cfg.retention.as_millis() as i64;
        let wal = match &cfg.data_dir {
            None => None,
            Some(dir) => {
                let limit = cfg.memory_limit_samples;
                let (wal, stats) = Wal::open(dir, cfg.segment_max_bytes, |kind, payload| {
                    let ts = apply_record(&mut state, kind, payload, cutoff);
                    // A log longer than the budget is replayed within it (plus a quarter).
                    if state.cells > limit + limit / 4 {
                        state.evict_largest_until(limit / 20 * 19);
                    }
                    ts
                })?;
                counters
                    .wal_replayed_records
                    .store(stats.records, Ordering::Relaxed);
                counters
                    .wal_corrupt_tails
                    .store(stats.corrupt_tails, Ordering::Relaxed);
                tracing::info!(dir = %dir.display(), records = stats.records, hosts = state.hosts.len(), snapshots = state.snapshots, "embedded store replayed its log");
                Some(Mutex::new(wal))
            }
        };
        let disk = wal
            .as_ref()
            .map_or(0, |w| w.lock().map_or(0, |w| w.disk_bytes()));
        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                cfg,
                state: RwLock::new(state),
                wal,
                counters,
                disk_bytes: AtomicU64::new(disk),
                unsynced: Mutex::new(Vec::new()),
                sync_lock: Mutex::new(()),
                admission: (0..ADMISSION_STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        };
        store.enforce_memory_limit();
        Ok(store)
    }

    /// Counters for /metrics.
    pub fn counters(&self) -> &EmbeddedCounters {
        &self.inner.counters
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, State>, StoreError> {
        self.inner
            .state
            .read()
            .map_err(|_| StoreError::Unavailable("store lock poisoned".into()))
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, State>, StoreError> {
        self.inner
            .state
            .write()
            .map_err(|_| StoreError::Unavailable("store lock poisoned".into()))
    }

    fn with_wal<T>(
        &self,
        f: impl FnOnce(&mut Wal) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match &self.inner.wal {
            None => Ok(None),
            Some(m) => {
                let mut w = m
                    .lock()
                    .map_err(|_| StoreError::Unavailable("log lock poisoned".into()))?;
                let out = f(&mut w)?;
                if w.wants_rotation() {
                    // The closed segment is fsynced by the next sync (within the fsync interval,
                    // or before this write's ack when every write is synced), not here: an
                    // fsync of a whole segment under the log's lock stalled every writer.
                    let closed = w.rotate()?;
                    if let Ok(mut unsynced) = self.inner.unsynced.lock() {
                        unsynced.push(closed);
                    }
                    // The new segment starts with the registry so deleting old segments never
                    // forgets a host.
                    let hosts: Vec<HostInfo> = self
                        .read()?
                        .hosts
                        .values()
                        .map(|s| host_to_info(&s.record))
                        .collect();
                    let ts = now_ms();
                    w.append(wal::KIND_HOST, hosts.iter().map(|h| (ts, h)))?;
                }
                self.inner
                    .disk_bytes
                    .store(w.disk_bytes(), Ordering::Relaxed);
                Ok(Some(out))
            }
        }
    }

    /// Makes everything logged so far durable: the segments closed by rotation since the last
    /// sync, the folder that names their successors, then the active segment. One sync runs at a
    /// time, so a caller returns only once every segment closed before its call is on disk (a
    /// concurrent caller may have taken them from the list and still be syncing them); a failed
    /// fsync puts the segments back for the next sync and fails this one.
    fn sync_now(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self
            .inner
            .sync_lock
            .lock()
            .map_err(|_| StoreError::Unavailable("sync lock poisoned".into()))?;
        let handles = self.with_wal(|w| Ok((w.sync_handle()?, w.dir().to_path_buf())))?;
        let Some((active, dir)) = handles else {
            return Ok(());
        };
        let closed: Vec<std::fs::File> = self
            .inner
            .unsynced
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default();
        let synced = closed
            .iter()
            .try_for_each(|f| f.sync_data().map_err(|e| StoreError::io("wal segment", e)))
            .and_then(|()| {
                if closed.is_empty() {
                    return Ok(());
                }
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| StoreError::io(&dir, e))
            });
        if let Err(e) = synced {
            if let Ok(mut u) = self.inner.unsynced.lock() {
                let newer = std::mem::replace(&mut *u, closed);
                u.extend(newer);
            }
            return Err(e);
        }
        active.sync_data().map_err(|e| StoreError::io("wal", e))?;
        Ok(())
    }

    /// Applies retention now: drops data older than the retention in memory and on disk.
    pub fn enforce_retention(&self) -> Result<u64, StoreError> {
        let cutoff = now_ms() - self.inner.cfg.retention.as_millis() as i64;
        let dropped = self.write_state()?.evict_before(cutoff);
        if dropped > 0 {
            self.inner
                .counters
                .evicted_retention
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::debug!(dropped, "retention evicted snapshots");
        }
        let segments = self.with_wal(|w| w.drop_before(cutoff))?.unwrap_or(0);
        if segments > 0 {
            tracing::info!(segments, "retention deleted log segments");
        }
        Ok(dropped)
    }

    /// Past the sample budget, evicts the oldest rows of the largest hosts until 95 % of it
    /// is held (the slack keeps this pass rare under steady pressure).
    fn enforce_memory_limit(&self) {
        let limit = self.inner.cfg.memory_limit_samples;
        let Ok(mut st) = self.inner.state.write() else {
            return;
        };
        if st.cells <= limit {
            return;
        }
        let evicted = st.evict_largest_until(limit / 20 * 19);
        if evicted > 0 {
            self.inner
                .counters
                .evicted_memory
                .fetch_add(evicted, Ordering::Relaxed);
            tracing::warn!(
                evicted,
                limit,
                "memory limit reached: evicted the oldest snapshots of the largest hosts"
            );
        }
    }

    /// Runs retention and fsync in the background until the returned handle is aborted or the
    /// token is cancelled.
    pub fn spawn_maintenance(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let fsync_every = store.inner.cfg.fsync_interval;
            let mut fsync = tokio::time::interval(if fsync_every.is_zero() {
                Duration::from_secs(3600)
            } else {
                fsync_every
            });
            let mut retention = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = fsync.tick() => {
                        let s = store.clone();
                        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync_now()).await {
                            tracing::error!(error = %e, "fsync of the log failed");
                        }
                    }
                    _ = retention.tick() => {
                        if let Err(e) = store.enforce_retention() {
                            tracing::error!(error = %e, "retention failed");
                        }
                    }
                }
            }
        })
    }
}

fn apply_record(state: &mut State, kind: u8, payload: &[u8], cutoff: i64) -> i64 {
    match kind {
        wal::KIND_SNAPSHOT => match Snapshot::decode(payload) {
            Ok(s) => {
                if s.timestamp_ms >= cutoff {
                    state.insert(&s, s.timestamp_ms);
                }
                s.timestamp_ms
            }
            Err(e) => {
                tracing::warn!(error = %e, "undecodable snapshot record in the log; skipped");
                i64::MIN
            }
        },
        wal::KIND_HOST => match HostInfo::decode(payload) {
            Ok(h) => {
                let ts = h.last_seen_ms;
                let series = state.hosts.entry(h.host_id.clone()).or_default();
                let last = series.record.last_seen_ms.max(h.last_seen_ms);
                series.record = HostRecord {
                    host_id: h.host_id,
                    labels: h.labels.into_iter().collect(),
                    agent_version: h.agent_version,
                    interval_ms: h.interval_ms,
                    last_seen_ms: last,
                };
                ts
            }
            Err(e) => {
                tracing::warn!(error = %e, "undecodable host record in the log; skipped");
                i64::MIN
            }
        },
        other => {
            tracing::warn!(kind = other, "unknown record kind in the log; skipped");
            i64::MIN
        }
    }
}

impl Store for EmbeddedStore {
    async fn write(&self, snapshots: &[Snapshot]) -> Result<WriteOutcome, StoreError> {
        let mut out = WriteOutcome {
            new: vec![false; snapshots.len()],
            ..WriteOutcome::default()
        };
        // This write's hosts' stripes, in order (no deadlock), until its snapshots are in.
        let mut stripes: Vec<usize> = snapshots.iter().map(|s| stripe(&s.host_id)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _admitted = stripes
            .iter()
            .map(|&i| {
                self.inner.admission[i]
                    .lock()
                    .map_err(|_| StoreError::Unavailable("admission lock poisoned".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Drop duplicates (already stored, or repeated inside this batch) before logging.
        let fresh: Vec<(usize, &Snapshot)> = {
            let st = self.read()?;
            let mut seen = HashSet::default();
            let mut adding = HashMap::default();
            let max_names = self.inner.cfg.max_metric_names_per_host;
            snapshots
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    let new = !st.contains(&s.host_id, s.timestamp_ms)
                        && seen.insert((s.host_id.as_str(), s.timestamp_ms));
                    if !new {
                        out.duplicates += 1;
                        return false;
                    }
                    // Refused before the log: a refused snapshot is never replayed.
                    if let Some(reason) = st.names_over(s, max_names, &mut adding) {
                        out.refused.push((*i, reason));
                        return false;
                    }
                    true
                })
                .collect()
        };
        if fresh.is_empty() {
            return Ok(out);
        }
        self.with_wal(|w| {
            w.append(
                wal::KIND_SNAPSHOT,
                fresh.iter().map(|(_, s)| (s.timestamp_ms, *s)),
            )
        })?;
        if self.inner.cfg.fsync_interval.is_zero() {
            self.sync_now()?;
        }
        let now = now_ms();
        {
            let mut st = self.write_state()?;
            for (i, s) in &fresh {
                match st.insert(s, now) {
                    Some(n) => {
                        out.stored += 1;
                        out.samples += n;
                        out.new[*i] = true;
                    }
                    None => out.duplicates += 1,
                }
            }
        }
        if self
            .inner
            .state
            .read()
            .is_ok_and(|st| st.cells > self.inner.cfg.memory_limit_samples)
        {
            self.enforce_memory_limit();
        }
        Ok(out)
    }

    async fn register(&self, host: HostRecord) -> Result<(), StoreError> {
        let info = host_to_info(&host);
        self.with_wal(|w| w.append(wal::KIND_HOST, [(host.last_seen_ms, &info)]))?;
        let mut st = self.write_state()?;
        let series = st.hosts.entry(host.host_id.clone()).or_default();
        let last = series.record.last_seen_ms.max(host.last_seen_ms);
        series.record = HostRecord {
            last_seen_ms: last,
            ..host
        };
        Ok(())
    }

    async fn touch(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut st = self.write_state()?;
        if let Some(s) = st.hosts.get_mut(host_id) {
            s.record.last_seen_ms = s.record.last_seen_ms.max(at_ms);
        }
        Ok(())
    }

    /// Built in pieces of at most [`RANGE_PIECE_CELLS`] values, the store's lock taken for each
    /// piece and let go between them, so a large answer never holds up writers for long.
    async fn range(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        // Rows already past retention but not yet evicted are not served.
        let cutoff = now_ms() - self.inner.cfg.retention.as_millis() as i64;
        let mut out: Vec<RangeChunk> = Vec::new();
        let (mut from, mut left, mut cells) = (q.start_ms.max(cutoff), q.limit, 0usize);
        loop {
            let budget = q.max_cells.saturating_sub(cells).min(RANGE_PIECE_CELLS);
            let piece = {
                let st = self.read()?;
                let Some(host) = st.hosts.get(&q.host_id) else {
                    return Ok(out);
                };
                let mut keep = selector(&st.names, &q.metric_names);
                let rows = Rows {
                    start: from,
                    end: q.end_ms,
                    limit: left,
                    max_cells: budget.max(1),
                    sparse_ok: q.sparse_ok,
                };
                host.series.range(&rows, &st.names, &mut keep)
            };
            let more = piece.last().is_some_and(|c| c.truncated);
            let Some(last_ts) = piece.last().and_then(|c| c.timestamps_ms.last().copied()) else {
                return Ok(out);
            };
            // Whether the caller's budget, not the piece's, bounded this piece.
            let callers = q.max_cells.saturating_sub(cells) <= RANGE_PIECE_CELLS;
            for mut chunk in piece {
                let n = chunk.cells();
                if !out.is_empty() && cells + n > q.max_cells {
                    return Ok(truncated(out));
                }
                cells += n;
                left = left.saturating_sub(chunk.timestamps_ms.len());
                chunk.truncated = false;
                out.push(chunk);
            }
            if !more || left == 0 {
                return Ok(out);
            }
            if callers {
                return Ok(truncated(out));
            }
            from = last_ts + 1;
        }
    }

    async fn latest(&self, metric_names: &[String]) -> Result<Vec<Snapshot>, StoreError> {
        // Pointers under the lock; the copying (every host's metrics) after it.
        let shared: Vec<Arc<Snapshot>> = {
            let st = self.read()?;
            st.hosts
                .values()
                .filter_map(|h| h.series.latest().cloned())
                .collect()
        };
        let mut out: Vec<Snapshot> = shared
            .iter()
            .map(|l| Snapshot {
                host_id: l.host_id.clone(),
                timestamp_ms: l.timestamp_ms,
                metrics: l
                    .metrics
                    .iter()
                    .filter(|m| name_selected(metric_names, &m.name))
                    .cloned()
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        Ok(out)
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let st = self.read()?;
        let mut out: Vec<HostRecord> = st.hosts.values().map(|h| h.record.clone()).collect();
        out.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        Ok(out)
    }

    async fn knows(&self, host_id: &str) -> Result<bool, StoreError> {
        Ok(self.read()?.hosts.contains_key(host_id))
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.read().map(|_| ())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.sync_now()
    }

    fn stats(&self) -> StoreStats {
        let (hosts, snapshots, samples, metric_names) =
            self.inner.state.read().map_or((0, 0, 0, 0), |s| {
                (
                    s.hosts.len() as u64,
                    s.snapshots,
                    s.cells,
                    s.names.live() as u64,
                )
            });
        let c = &self.inner.counters;
        StoreStats {
            hosts,
            snapshots,
            samples,
            disk_bytes: self.inner.disk_bytes.load(Ordering::Relaxed),
            evicted_retention: c.evicted_retention.load(Ordering::Relaxed),
            evicted_memory: c.evicted_memory.load(Ordering::Relaxed),
            wal_corrupt_tails: c.wal_corrupt_tails.load(Ordering::Relaxed),
            metric_names,
            ..StoreStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::{Metric, Unit};

    fn snap(host: &str, ts: i64, n: usize) -> Snapshot {
        Snapshot {
            host_id: host.into(),
            timestamp_ms: ts,
            metrics: (0..n)
                .map(|i| Metric {
                    name: format!("m.{i}"),
                    value: ts as f64 + i as f64,
                    unit: Unit::Count as i32,
                    window: None,
                })
                .collect(),
        }
    }

    async fn rows(store: &EmbeddedStore, q: RangeQuery) -> Vec<Snapshot> {
        let host = q.host_id.clone();
        let chunks = store.range(q).await.unwrap();
        chunks.iter().flat_map(|c| c.to_snapshots(&host)).collect()
    }

    fn range(host: &str, start: i64, end: i64) -> RangeQuery {
        RangeQuery {
            host_id: host.into(),
            start_ms: start,
            end_ms: end,
            metric_names: vec![],
            limit: usize::MAX,
            max_cells: usize::MAX,
            sparse_ok: true,
        }
    }

    #[tokio::test]
    async fn a_rotated_segment_is_synced_by_the_next_sync_not_under_the_log_lock() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig {
            data_dir: Some(dir.path().to_path_buf()),
            segment_max_bytes: 4096,
            ..EmbeddedConfig::default()
        };
        let now = now_ms();
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            for i in 0..40 {
                store
                    .write(&[snap("h", now - 40_000 + i * 1000, 20)])
                    .await
                    .unwrap();
            }
            let waiting = store.inner.unsynced.lock().unwrap().len();
            assert!(
                waiting >= 2,
                "rotations leave closed segments to the next sync: {waiting}"
            );
            store.flush().await.unwrap();
            assert_eq!(store.inner.unsynced.lock().unwrap().len(), 0);
        }
        let segments = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segments >= 3, "{segments} segments");
        let store = EmbeddedStore::open(cfg).unwrap();
        assert_eq!(rows(&store, range("h", now - 60_000, now)).await.len(), 40);
    }

    #[tokio::test]
    async fn range_is_ordered_inclusive_and_filtered() {
        let now = now_ms();
        let store = EmbeddedStore::open(EmbeddedConfig::default()).unwrap();
        // Out of order arrival.
        let out = store
            .write(&[
                snap("a", now - 3000, 3),
                snap("a", now - 1000, 3),
                snap("a", now - 2000, 3),
                snap("b", now, 1),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            WriteOutcome {
                stored: 4,
                duplicates: 0,
                samples: 10,
                new: vec![true; 4],
                refused: vec![],
            }
        );
        assert!(store.knows("a").await.unwrap());
        assert!(!store.knows("nobody").await.unwrap());
        let got = rows(&store, range("a", now - 3000, now - 2000)).await;
        assert_eq!(
            got.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![now - 3000, now - 2000]
        );
        let mut q = range("a", now - 5000, now);
        q.metric_names = vec!["m.1".into()];
        q.limit = 2;
        let got = rows(&store, q).await;
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|s| s.metrics.len() == 1 && s.metrics[0].name == "m.1")
        );
        assert!(rows(&store, range("nobody", 0, now)).await.is_empty());
        let latest = store.latest(&[]).await.unwrap();
        assert_eq!(
            latest
                .iter()
                .map(|s| (s.host_id.as_str(), s.timestamp_ms))
                .collect::<Vec<_>>(),
            vec![("a", now - 1000), ("b", now)]
        );
    }

    #[tokio::test]
    async fn duplicates_are_ignored_and_counted() {
        let now = now_ms();
        let store = EmbeddedStore::open(EmbeddedConfig::default()).unwrap();
        store.write(&[snap("a", now, 2)]).await.unwrap();
        let out = store
            .write(&[
                snap("a", now, 2),
                snap("a", now + 1, 2),
                snap("a", now + 1, 2),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            WriteOutcome {
                stored: 1,
                duplicates: 2,
                samples: 2,
                new: vec![false, true, false],
                refused: vec![],
            }
        );
        assert_eq!(store.stats().snapshots, 2);
    }

    #[tokio::test]
    async fn retention_drops_old_data_in_memory_and_after_replay() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig {
            data_dir: Some(dir.path().into()),
            retention: Duration::from_secs(60),
            ..Default::default()
        };
        let now = now_ms();
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            store
                .write(&[snap("a", now - 120_000, 1), snap("a", now - 1000, 1)])
                .await
                .unwrap();
            assert_eq!(store.enforce_retention().unwrap(), 1);
            assert_eq!(rows(&store, range("a", 0, now)).await.len(), 1);
        }
        let store = EmbeddedStore::open(cfg).unwrap();
        let got = rows(&store, range("a", 0, now)).await;
        assert_eq!(
            got.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![now - 1000],
            "expired data does not come back on replay"
        );
    }

    #[tokio::test]
    async fn acknowledged_writes_and_hosts_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig {
            data_dir: Some(dir.path().into()),
            segment_max_bytes: 256,
            ..Default::default()
        };
        let now = now_ms();
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            store
                .register(HostRecord {
                    host_id: "a".into(),
                    labels: [("zone".to_string(), "z1".to_string())].into(),
                    agent_version: "1.2.3".into(),
                    interval_ms: 1000,
                    last_seen_ms: now,
                })
                .await
                .unwrap();
            for i in 0..50 {
                store
                    .write(&[snap("a", now - 50_000 + i * 1000, 4)])
                    .await
                    .unwrap();
            }
            // No flush: a killed process leaves its writes in the page cache; reopening reads them.
        }
        let store = EmbeddedStore::open(cfg).unwrap();
        let got = rows(&store, range("a", 0, now)).await;
        assert_eq!(got.len(), 50);
        assert_eq!(got[7], snap("a", now - 50_000 + 7000, 4));
        let hosts = store.hosts().await.unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].labels.get("zone").map(String::as_str), Some("z1"));
        assert_eq!(hosts[0].agent_version, "1.2.3");
        // A write after replay of a duplicate is still a duplicate.
        let out = store.write(&[snap("a", now - 50_000, 4)]).await.unwrap();
        assert_eq!(out.duplicates, 1);
    }

    #[tokio::test]
    async fn memory_limit_evicts_oldest_first() {
        let store = EmbeddedStore::open(EmbeddedConfig {
            memory_limit_samples: 100,
            ..Default::default()
        })
        .unwrap();
        let now = now_ms();
        for i in 0..40 {
            store
                .write(&[snap("a", now - 400_000 + i * 10_000, 5)])
                .await
                .unwrap();
        }
        let stats = store.stats();
        assert!(stats.samples <= 100, "{stats:?}");
        let got = rows(&store, range("a", 0, now)).await;
        assert_eq!(
            got.last().unwrap().timestamp_ms,
            now - 400_000 + 39 * 10_000,
            "the newest is kept"
        );
        assert!(store.counters().evicted_memory.load(Ordering::Relaxed) >= 20);
    }

    #[tokio::test]
    async fn a_flood_of_made_up_metric_names_does_not_grow_memory_without_bound() {
        let store = EmbeddedStore::open(EmbeddedConfig {
            memory_limit_samples: 2_000,
            // The memory bound alone, here (the names bound has its own test).
            max_metric_names_per_host: 1_000_000,
            ..Default::default()
        })
        .unwrap();
        let now = now_ms();
        // 400 snapshots of 50 names never seen before: 20 000 names in all.
        for i in 0..400 {
            let mut s = snap("flood", now - 400_000 + i * 1000, 50);
            for (j, m) in s.metrics.iter_mut().enumerate() {
                m.name = format!("junk.{i}.{j}");
            }
            store.write(&[s]).await.unwrap();
        }
        let stats = store.stats();
        assert!(stats.samples <= 2_000, "{stats:?}");
        // The names still held are bounded by the data held (plus one release's slack).
        assert!(stats.metric_names <= stats.samples + 1024 + 50, "{stats:?}");
        let got = rows(&store, range("flood", 0, now)).await;
        let newest = got.last().unwrap();
        assert_eq!(
            newest.metrics[0].name, "junk.399.0",
            "names read back right"
        );
    }

    #[tokio::test]
    async fn a_range_larger_than_a_piece_is_whole_in_order_and_the_callers_cap_still_holds() {
        let store = EmbeddedStore::open(EmbeddedConfig::default()).unwrap();
        let now = now_ms();
        // 1,000 rows × 600 metrics = 600,000 values: three pieces.
        for chunk in (0..1000i64).collect::<Vec<_>>().chunks(100) {
            let snaps: Vec<Snapshot> = chunk
                .iter()
                .map(|&i| snap("wide", now - 2_000_000 + i * 1000, 600))
                .collect();
            store.write(&snaps).await.unwrap();
        }
        let all = store.range(range("wide", 0, now)).await.unwrap();
        let ts: Vec<i64> = all.iter().flat_map(|c| c.timestamps_ms.clone()).collect();
        assert_eq!(ts.len(), 1000);
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
        assert!(all.iter().all(|c| !c.truncated));
        let mut capped = range("wide", 0, now);
        capped.max_cells = 300_000;
        let part = store.range(capped).await.unwrap();
        let cells: usize = part.iter().map(|c| c.cells()).sum();
        assert!(cells <= 300_000, "{cells}");
        assert!(part.last().unwrap().truncated);
        assert!(part[..part.len() - 1].iter().all(|c| !c.truncated));
        let mut limited = range("wide", 0, now);
        limited.limit = 700;
        let rows: usize = store
            .range(limited)
            .await
            .unwrap()
            .iter()
            .map(|c| c.timestamps_ms.len())
            .sum();
        assert_eq!(rows, 700);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_of_one_host_cannot_pass_its_bound_of_names_together() {
        // With a log fsynced on every write, the time between the check and the insert is
        // long: without admission per host, most of these writes would pass the check at once.
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedConfig {
            data_dir: Some(dir.path().to_path_buf()),
            fsync_interval: Duration::ZERO,
            max_metric_names_per_host: 100,
            ..Default::default()
        })
        .unwrap();
        let now = now_ms();
        // 32 writes at once, each 10 names of its own: only 10 of them fit.
        let start = Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|w| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    let mut s = snap("racer", now - 100_000 + w, 10);
                    for m in &mut s.metrics {
                        m.name = format!("w{w}.{}", m.name);
                    }
                    start.wait().await;
                    store.write(&[s]).await.unwrap().stored
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            stored += t.await.unwrap();
        }
        assert_eq!(stored, 10);
        let names = store.read().unwrap().hosts["racer"].names.len();
        assert_eq!(names, 100);
    }

    #[tokio::test]
    async fn past_its_bound_of_names_a_host_is_refused_by_name_and_others_go_on() {
        let store = EmbeddedStore::open(EmbeddedConfig {
            max_metric_names_per_host: 100,
            ..Default::default()
        })
        .unwrap();
        let now = now_ms();
        // 60 names, then 40 new ones: at the bound, stored.
        store
            .write(&[snap("greedy", now - 10_000, 60)])
            .await
            .unwrap();
        let mut wider = snap("greedy", now - 9_000, 60);
        wider
            .metrics
            .extend(snap("x", now, 40).metrics.into_iter().map(|mut m| {
                m.name = format!("extra.{}", m.name);
                m
            }));
        let out = store.write(&[wider]).await.unwrap();
        assert_eq!((out.stored, out.refused.len()), (1, 0));
        // One more new name: refused by name, with the reason; the known ones still go in,
        // and so does another host, in the same write.
        let mut over = snap("greedy", now - 8_000, 60);
        over.metrics[0].name = "one.too.many".into();
        let out = store
            .write(&[
                over,
                snap("greedy", now - 7_000, 60),
                snap("modest", now, 60),
            ])
            .await
            .unwrap();
        assert_eq!(out.stored, 2);
        assert_eq!(out.new, vec![false, true, true]);
        assert_eq!(out.refused.len(), 1);
        let (i, reason) = &out.refused[0];
        assert_eq!(*i, 0);
        assert!(
            reason.contains("greedy") && reason.contains("limit is 100"),
            "{reason}"
        );
        // Two snapshots of one write that together pass the bound: the second is refused.
        let mut a = snap("pair", now - 2_000, 60);
        let mut b = snap("pair", now - 1_000, 60);
        for m in &mut b.metrics {
            m.name = format!("b.{}", m.name);
        }
        a.metrics.truncate(60);
        let out = store.write(&[a, b]).await.unwrap();
        assert_eq!((out.stored, out.refused.len()), (1, 1));
        assert_eq!(out.refused[0].0, 1);
    }

    #[tokio::test]
    async fn the_memory_limit_takes_from_the_largest_host_and_spares_the_others() {
        let store = EmbeddedStore::open(EmbeddedConfig {
            memory_limit_samples: 20_000,
            ..Default::default()
        })
        .unwrap();
        let now = now_ms();
        // Two modest hosts: 100 rows × 20 values each (4,000 values).
        for i in 0..100 {
            let ts = now - 200_000 + i * 1000;
            store
                .write(&[snap("a", ts, 20), snap("b", ts, 20)])
                .await
                .unwrap();
        }
        // One host floods with wide snapshots: 200 rows × 1,000 values, 10 × the budget.
        for i in 0..200 {
            store
                .write(&[snap("flood", now - 200_000 + i * 1000, 1000)])
                .await
                .unwrap();
        }
        let stats = store.stats();
        assert!(stats.samples <= 20_000, "{stats:?}");
        // The modest hosts keep every row; the flood lost its oldest, kept its newest.
        assert_eq!(rows(&store, range("a", 0, now)).await.len(), 100);
        assert_eq!(rows(&store, range("b", 0, now)).await.len(), 100);
        let flood = rows(&store, range("flood", 0, now)).await;
        assert!(!flood.is_empty() && flood.len() < 20, "{}", flood.len());
        assert_eq!(
            flood.last().map(|s| s.timestamp_ms),
            Some(now - 200_000 + 199 * 1000)
        );
    }
}
