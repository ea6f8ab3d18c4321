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
use ringwatch_core::now_ms;
use ringwatch_proto::{HostInfo, RangeChunk, Snapshot, name_selected};

use super::block;
use super::blocks::{BlockCounters, Blocks, Damaged, Disk, SectionCache};
use super::frame::Frame;
use super::rollup::{DAY_MS, ROLLUP_MS, Rollup, bucket};
use super::series::{Inserted, Names, Rows, Series};
use super::wal::{self, Wal};
use super::{HostRecord, RangeQuery, Store, StoreError, StoreStats, WriteOutcome};

mod transfer;
pub use transfer::{Imported, Incoming, Outgoing};

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Where the log lives; `None` keeps everything in memory only.
    pub data_dir: Option<PathBuf>,
    pub retention: Duration,
    /// Most samples the head holds in memory. With a data directory, rows past it are cut to
    /// blocks on disk (nothing is lost); without one, the oldest are evicted.
    pub memory_limit_samples: u64,
    /// Rows older than the last whole window of this length are cut to a block.
    pub block_window: Duration,
    /// Bytes of decoded block columns and section layouts cached for reads.
    pub block_cache_bytes: u64,
    /// Free disk space kept: below it, writes are refused until space is freed.
    pub disk_reserve_bytes: u64,
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
            block_window: Duration::from_secs(3600),
            block_cache_bytes: 64 << 20,
            disk_reserve_bytes: 64 << 20,
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
    /// Log segments deleted because blocks hold their rows.
    pub wal_segments_covered: AtomicU64,
    /// Writes refused because the disk was below its reserve.
    pub refused_disk_full: AtomicU64,
    /// Cuts that failed (their rows stay readable and are written at the next cut).
    pub cut_failures: AtomicU64,
}

#[derive(Default)]
struct Host {
    record: HostRecord,
    series: Series,
    /// The metric names (ids) its series holds: bounded by `max_metric_names_per_host`.
    names: HashSet<u32>,
}

/// Rows a cut moved out of the head, readable here until their block is installed.
struct Frozen {
    boundary: i64,
    hosts: HashMap<String, Series>,
    /// The names the series' ids stand for, as they were at the cut.
    names: Names,
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, Host>,
    names: Names,
    /// A cut's rows while their block is written (or after it failed, until the next cut).
    frozen: Option<Arc<Frozen>>,
    snapshots: u64,
    /// Values held (8 bytes each; rows where a metric is absent outside its span cost
    /// nothing): what the memory limit bounds.
    cells: u64,
}

impl State {
    fn contains(&self, host: &str, ts: i64) -> bool {
        self.hosts.get(host).is_some_and(|h| h.series.contains(ts))
            || self
                .frozen
                .as_ref()
                .and_then(|f| f.hosts.get(host))
                .is_some_and(|s| s.contains(ts))
    }

    /// Moves every row older than `boundary` out of the head.
    fn freeze(&mut self, boundary: i64) -> Frozen {
        let mut hosts = HashMap::default();
        let (mut rows, mut cells) = (0, 0);
        for (id, h) in self.hosts.iter_mut() {
            if h.series.oldest().is_none_or(|o| o >= boundary) {
                continue;
            }
            let old = h.series.split_before(boundary);
            rows += old.rows();
            cells += old.cells();
            h.names = h.series.name_ids();
            hosts.insert(id.clone(), old);
        }
        self.snapshots -= rows;
        self.cells -= cells;
        Frozen {
            boundary,
            hosts,
            names: self.names.clone(),
        }
    }

    /// The oldest row the head holds.
    fn oldest(&self) -> Option<i64> {
        self.hosts.values().filter_map(|h| h.series.oldest()).min()
    }

    /// The newest row the head holds.
    fn newest(&self) -> Option<i64> {
        self.hosts.values().filter_map(|h| h.series.newest()).max()
    }

    /// The timestamp below which cutting the head leaves about `target` values in it.
    fn boundary_for(&self, target: u64) -> Option<i64> {
        if self.cells <= target || self.snapshots == 0 {
            return None;
        }
        let want = (self.snapshots as u128 * (self.cells - target) as u128
            / self.cells.max(1) as u128) as u64;
        let want = want.max(1);
        let (mut lo, mut hi) = (
            self.oldest()?,
            self.hosts
                .values()
                .filter_map(|h| h.series.newest())
                .max()?
                .saturating_add(1),
        );
        let below = |t: i64| -> u64 { self.hosts.values().map(|h| h.series.rows_before(t)).sum() };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid) >= want {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// Inserts unless host + timestamp is present; returns the samples inserted.
    fn insert(&mut self, snap: &Snapshot, seen_ms: i64) -> Option<u64> {
        let n = self.insert_rows(snap, seen_ms)?;
        self.offer_latest(snap);
        Some(n)
    }

    /// `insert` without keeping the snapshot as the host's newest (see `offer_latest`).
    fn insert_rows(&mut self, snap: &Snapshot, seen_ms: i64) -> Option<u64> {
        let ids: Vec<u32> = snap
            .metrics
            .iter()
            .map(|m| self.names.intern(&m.name))
            .collect();
        if !self.hosts.contains_key(snap.host_id.as_str()) {
            self.hosts.insert(snap.host_id.clone(), Host::default());
        }
        let host = self.hosts.get_mut(snap.host_id.as_str())?;
        if host.record.host_id.is_empty() {
            host.record.host_id = snap.host_id.clone();
        }
        host.record.last_seen_ms = host.record.last_seen_ms.max(seen_ms);
        match host.series.insert_rows(snap, &ids) {
            Inserted::Duplicate => None,
            Inserted::New(samples, cells) => {
                host.names.extend(ids);
                self.snapshots += 1;
                self.cells += cells;
                Some(samples)
            }
        }
    }

    /// Keeps `snap` as its host's newest snapshot unless a newer one is kept.
    fn offer_latest(&mut self, snap: &Snapshot) {
        if let Some(host) = self.hosts.get_mut(snap.host_id.as_str()) {
            host.series.offer_latest(snap);
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
    /// The blocks on disk (with a data directory).
    disk: Option<Disk>,
    /// Held by a cut: one at a time.
    cut_lock: Mutex<()>,
    /// Held by a compaction: one at a time (cuts go on meanwhile).
    compact_lock: Mutex<()>,
    /// Set while this broker hands its blocks off: no compaction replaces them meanwhile.
    compaction_paused: std::sync::atomic::AtomicBool,
    /// Wakes the maintenance task to cut when the head passes its budget.
    pressure: tokio::sync::Notify,
    /// When free space was last checked (ms) and whether it was below the reserve (writes
    /// check at most once a second, and a refused write reports the figure of that check).
    space_checked_ms: std::sync::atomic::AtomicI64,
    space_short: std::sync::atomic::AtomicBool,
    /// Free bytes at that check.
    space_free: AtomicU64,
    /// Tests: run by a step read between reading memory and looking up the blocks (to move
    /// rows then, as a cut or a compaction may).
    #[cfg(test)]
    between_memory_and_blocks: Mutex<Option<Box<dyn FnMut() + Send>>>,
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

/// Largest a merged block grows (the blocks of a busy day are merged in groups up to this).
const COMPACT_MAX_BYTES: u64 = 512 << 20;

/// Stripes of [`Inner::admission`].
const ADMISSION_STRIPES: usize = 64;
/// In the data directory while a hand-off keeps compaction paused.
const PAUSE_MARKER: &str = "compaction.paused";

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
    /// Opens the store: reads the blocks' indexes and replays the log in `data_dir` if there
    /// is one. Log records a block already holds are skipped; a log longer than the head's
    /// budget (a data directory written before blocks existed, or a long outage) is cut to
    /// blocks as it is replayed.
    pub fn open(cfg: EmbeddedConfig) -> Result<EmbeddedStore, StoreError> {
        let mut state = State::default();
        let counters = EmbeddedCounters::default();
        let cutoff = now_ms() - cfg.retention.as_millis() as i64;
        let disk = match &cfg.data_dir {
            None => None,
            Some(dir) => {
                let counters = BlockCounters::default();
                let blocks = Blocks::open(&dir.join("blocks"), &counters)?;
                Some(Disk {
                    index: RwLock::new(blocks),
                    cache: SectionCache::new(cfg.block_cache_bytes),
                    counters,
                })
            }
        };
        let wal = match (&cfg.data_dir, &disk) {
            (Some(dir), Some(disk)) => {
                let limit = cfg.memory_limit_samples;
                let mut failed: Option<StoreError> = None;
                let (wal, stats) = Wal::open(dir, cfg.segment_max_bytes, |kind, payload| {
                    let ts = apply_record(&mut state, kind, payload, cutoff, disk, &mut failed);
                    // A log longer than the head's budget is cut to blocks as it is replayed.
                    if failed.is_none()
                        && state.cells > limit + limit / 4
                        && let Some(b) = state.boundary_for(limit / 2)
                        && let Err(e) = cut_replayed(&mut state, disk, b)
                    {
                        failed = Some(e);
                    }
                    ts
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                counters
                    .wal_replayed_records
                    .store(stats.records, Ordering::Relaxed);
                counters
                    .wal_corrupt_tails
                    .store(stats.corrupt_tails, Ordering::Relaxed);
                let blocks = disk.read_index().map_or(0, |b| b.count());
                tracing::info!(dir = %dir.display(), records = stats.records, hosts = state.hosts.len(), snapshots = state.snapshots, blocks, "embedded store replayed its log");
                Some(Mutex::new(wal))
            }
            _ => None,
        };
        let disk_bytes = wal
            .as_ref()
            .map_or(0, |w| w.lock().map_or(0, |w| w.disk_bytes()));
        // Paused by a hand-off that has not finished (see `pause_compaction`).
        let paused = cfg
            .data_dir
            .as_ref()
            .is_some_and(|d| d.join(PAUSE_MARKER).exists());
        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                cfg,
                state: RwLock::new(state),
                wal,
                counters,
                disk_bytes: AtomicU64::new(disk_bytes),
                unsynced: Mutex::new(Vec::new()),
                sync_lock: Mutex::new(()),
                admission: (0..ADMISSION_STRIPES).map(|_| Mutex::new(())).collect(),
                disk,
                cut_lock: Mutex::new(()),
                compact_lock: Mutex::new(()),
                compaction_paused: std::sync::atomic::AtomicBool::new(paused),
                pressure: tokio::sync::Notify::new(),
                space_checked_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
                space_short: std::sync::atomic::AtomicBool::new(false),
                space_free: AtomicU64::new(u64::MAX),
                #[cfg(test)]
                between_memory_and_blocks: Mutex::new(None),
            }),
        };
        if store.inner.disk.is_some() {
            // Late rows the replay put in the head below the floor, and whatever is due, go to
            // a block now; then the log segments the blocks cover are dropped. A failure (a
            // full disk) is not fatal: the rows stay in the head and the next cut tries again.
            if let Err(e) = store.cut_due() {
                tracing::warn!(error = %e, "the cut at start failed; the head keeps its rows");
            }
        } else {
            store.enforce_memory_limit();
        }
        Ok(store)
    }

    /// Where the time rule cuts now: the start of the current block window, less a grace
    /// (a twelfth of the window) for rows that arrive a little late.
    fn window_boundary(&self) -> i64 {
        let w = (self.inner.cfg.block_window.as_millis() as i64).max(1000);
        let now = now_ms() - w / 12;
        now - now.rem_euclid(w)
    }

    /// Cuts when a cut is due: rows older than the window boundary, and whatever brings the
    /// head back to half its budget when it is over. Returns the rows cut.
    pub fn cut_due(&self) -> Result<u64, StoreError> {
        let Some(disk) = &self.inner.disk else {
            return Ok(0);
        };
        let floor = disk.read_index()?.floor();
        let (oldest, pressure) = {
            let st = self.read()?;
            let limit = self.inner.cfg.memory_limit_samples;
            let over = (st.cells > limit)
                .then(|| st.boundary_for(limit / 2))
                .flatten();
            (st.oldest(), over)
        };
        let by_time = self.window_boundary();
        let boundary = match (oldest, pressure) {
            (_, Some(p)) => p.max(by_time).max(floor),
            (Some(o), None) if o < by_time.max(floor) => by_time.max(floor),
            _ => {
                // Nothing due in the head; a block that failed earlier is written now.
                if self.read()?.frozen.is_some() {
                    return self.cut(floor);
                }
                return Ok(0);
            }
        };
        self.cut(boundary)
    }

    /// Moves every head row older than `boundary` to a new block on disk, then drops the log
    /// segments the blocks now cover. Rows stay readable throughout: in the head, then frozen
    /// while the block is written, then from the block. Returns the rows cut.
    pub fn cut(&self, boundary: i64) -> Result<u64, StoreError> {
        let Some(disk) = &self.inner.disk else {
            return Ok(0);
        };
        let _one_at_a_time = self
            .inner
            .cut_lock
            .lock()
            .map_err(|_| StoreError::Unavailable("cut lock poisoned".into()))?;
        // A block left unwritten by an earlier failure goes first.
        let pending = self.read()?.frozen.clone();
        if let Some(f) = pending {
            self.persist(disk, &f)?;
        }
        let boundary = boundary.max(disk.read_index()?.floor());
        // Another cut may have taken these rows while this one waited for the lock.
        if self.read()?.oldest().is_none_or(|o| o >= boundary) {
            return Ok(0);
        }
        // Every record logged so far is in a closed segment: those below the boundary that this
        // block and earlier ones hold can go once it is durable.
        let below_seq = self.with_wal(|w| {
            self.rotate_locked(w)?;
            Ok(w.active_seq())
        })?;
        let frozen = {
            let mut st = self.write_state()?;
            let f = Arc::new(st.freeze(boundary));
            if !f.hosts.is_empty() {
                st.frozen = Some(f.clone());
            }
            f
        };
        let rows: u64 = frozen.hosts.values().map(|s| s.rows()).sum();
        if rows > 0 {
            crate::failpoint::hit("cut-after-freeze");
            self.persist(disk, &frozen)?;
            crate::failpoint::hit("cut-before-log-drop");
        } else {
            // Nothing to write, but the floor still rises: a later cut keeps it.
            disk.write_index()?.raise_floor(boundary);
        }
        if let Some(seq) = below_seq {
            let floor = disk.read_index()?.floor();
            let dropped = self
                .with_wal(|w| Ok(w.drop_covered(seq, floor)))?
                .unwrap_or(0);
            if dropped > 0 {
                self.inner
                    .counters
                    .wal_segments_covered
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                if let Some(m) = &self.inner.wal
                    && let Ok(w) = m.lock()
                {
                    self.inner
                        .disk_bytes
                        .store(w.disk_bytes(), Ordering::Relaxed);
                }
            }
        }
        Ok(rows)
    }

    /// Merges the blocks of one finished UTC day into one (the first group
    /// [`Blocks::compaction_groups`] offers); returns the blocks merged. The merged block is
    /// written like a cut's (temporary file, fsync, rename, folder fsync) and names the blocks
    /// it replaces, so a crash before their deletion leaves nothing twice after a restart.
    /// Reads go on meanwhile: one that finds a replaced block gone looks again.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let Some(disk) = &self.inner.disk else {
            return Ok(0);
        };
        if self.inner.compaction_paused.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let _one_at_a_time = self
            .inner
            .compact_lock
            .lock()
            .map_err(|_| StoreError::Unavailable("compaction lock poisoned".into()))?;
        let (group, floor, hosts, seq, path) = {
            let mut ix = disk.write_index()?;
            let Some(group) = ix
                .compaction_groups(ix.floor(), COMPACT_MAX_BYTES)
                .into_iter()
                .next()
            else {
                return Ok(0);
            };
            let floor = ix.floor_of(&group);
            let hosts = ix.sections_in(&group);
            let (seq, path) = ix.next();
            (group, floor, hosts, seq, path)
        };
        self.check_space(true)?;
        let started = std::time::Instant::now();
        let index = block::write_block(
            block::Kind::Merged,
            &path,
            floor,
            now_ms(),
            &group,
            hosts.iter().map(|(host, refs)| {
                let frame = disk.whole(host, refs)?;
                Ok((host.clone(), frame))
            }),
        )?;
        crate::failpoint::hit("compact-before-delete");
        let bytes = index.bytes;
        let old = disk.write_index()?.replace(&group, seq, path, index);
        for p in &old {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot delete a block a compaction replaced");
            }
        }
        disk.counters
            .compacted
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        tracing::info!(
            seq,
            merged = group.len(),
            hosts = hosts.len(),
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "blocks of a day merged into one"
        );
        Ok(group.len())
    }

    /// Writes `frozen` as a block, installs it, and lets the frozen rows go. On failure they
    /// stay frozen (and readable) for the next cut to write.
    fn persist(&self, disk: &Disk, frozen: &Arc<Frozen>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let written = self.check_space(true).and_then(|()| {
            let (seq, path) = disk.write_index()?.next();
            let index = write_frozen(&path, frozen)?;
            Ok((seq, path, index))
        });
        let (seq, path, index) = match written {
            Ok(w) => w,
            Err(e) => {
                self.inner
                    .counters
                    .cut_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cutting the head to a block failed; its rows stay in memory and are written at the next cut");
                return Err(e);
            }
        };
        let (hosts, bytes) = (index.hosts.len(), index.bytes);
        disk.counters.written.fetch_add(1, Ordering::Relaxed);
        disk.write_index()?.install(seq, path, index);
        {
            let mut st = self.write_state()?;
            if st.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, frozen)) {
                st.frozen = None;
            }
        }
        let rows: u64 = frozen.hosts.values().map(|s| s.rows()).sum();
        tracing::info!(
            seq,
            hosts,
            rows,
            bytes,
            boundary = frozen.boundary,
            ms = started.elapsed().as_millis() as u64,
            "head cut to a block"
        );
        Ok(())
    }

    /// Merges the head, the rows of a cut in progress and the blocks in timestamp order. The
    /// head is read first, then the frozen rows, then the blocks: rows only ever move that
    /// way, so a row a cut moves during the read is found at a later step (and, if found
    /// twice, taken once).
    fn raw_range(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        // Rows already past retention but not yet evicted are not served.
        let cutoff = now_ms() - self.inner.cfg.retention.as_millis() as i64;
        let start = q.start_ms.max(cutoff);
        let head = self.head_range(&q, start)?;
        let Some(disk) = &self.inner.disk else {
            return Ok(head);
        };
        let frozen = self.frozen_rows(&q, start, q.end_ms, q.limit)?;
        let mut keep = |name: &str| name_selected(&q.metric_names, name);
        let (mut frames, disk_cut) =
            disk.read_frames(&q.host_id, start, q.end_ms, q.max_cells, &mut keep)?;
        if frames.is_empty() && frozen.as_ref().is_none_or(|f| f.is_empty()) {
            return Ok(head);
        }
        // A source stopped short (by the cell budget) leaves rows after its last one unread:
        // the answer ends there and says so.
        let head_cut = head
            .last()
            .filter(|c| c.truncated)
            .and_then(|c| c.timestamps_ms.last().copied());
        let stop = [disk_cut, head_cut].into_iter().flatten().min();
        frames.extend(frozen);
        frames.push(Frame::from_chunks(&head));
        let mut merged = Frame::merge(frames).slice(start, q.end_ms);
        let mut cut_short = false;
        if let Some(stop) = stop
            && merged.last().is_some_and(|l| l > stop)
        {
            merged.cut_after(stop);
            cut_short = true;
        }
        let mut out = merged.into_chunks(q.limit, q.max_cells, q.sparse_ok);
        let served: usize = out.iter().map(|c| c.timestamps_ms.len()).sum();
        if (cut_short || stop.is_some())
            && served < q.limit
            && let Some(last) = out.last_mut()
        {
            last.truncated = true;
        }
        Ok(out)
    }

    /// `q`'s host's rows in `[start, end]` (at most `limit`) among those being cut to a block
    /// now, if any.
    fn frozen_rows(
        &self,
        q: &RangeQuery,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Option<Frame>, StoreError> {
        let st = self.read()?;
        Ok(st.frozen.as_ref().and_then(|f| {
            let series = f.hosts.get(&q.host_id)?;
            let mut keep = selector(&f.names, &q.metric_names);
            let rows = Rows {
                start,
                end,
                limit,
                max_cells: usize::MAX,
                sparse_ok: false,
            };
            Some(Frame::from_chunks(
                &series.range(&rows, &f.names, &mut keep),
            ))
        }))
    }

    /// A read with a step (whole minutes) when blocks are on disk: the blocks' stored rollups
    /// where they can be used, rows rolled up here elsewhere. Read in windows of whole buckets
    /// of about a day, oldest first, so an answer cut by `max_cells` ends on a whole bucket.
    fn rolled_range(&self, q: &RangeQuery, disk: &Disk) -> Result<Vec<RangeChunk>, StoreError> {
        let step = q.step_ms.max(ROLLUP_MS);
        let cutoff = now_ms() - self.inner.cfg.retention.as_millis() as i64;
        // Whole buckets of about a day (one bucket when the step is longer than a day).
        let span = step.saturating_mul((DAY_MS - 1) / step + 1);
        let mut lo = bucket(q.start_ms.max(cutoff), step);
        let (mut parts, mut cells, mut cut) = (Vec::new(), 0usize, false);
        while lo <= q.end_ms {
            if cells > q.max_cells {
                cut = true;
                break;
            }
            let hi = lo.saturating_add(span - 1).min(q.end_ms);
            let part = self.rolled_window(q, disk, lo, hi)?;
            cells += part.cells();
            parts.push(part);
            lo = match hi.checked_add(1) {
                Some(next) => next,
                None => break,
            };
        }
        let mut out = Rollup::combine(parts, step).into_chunks(q.max_cells, q.sparse_ok);
        if cut && let Some(last) = out.last_mut() {
            last.truncated = true;
        }
        Ok(out)
    }

    /// One window `[lo, hi]` of [`Self::rolled_range`] (`lo` on a bucket), in buckets of the
    /// step. Rows only move from the head to the rows being cut to a block, and from there
    /// into a block, so they are read in that order: the head, then the rows being cut, then
    /// the blocks. A row a cut (then a compaction) moves during the read may so be seen twice;
    /// the timestamps taken from memory say which: a block section holding any of them is read
    /// as rows, and those rows left out. A section is also read as rows where it has no rollup
    /// (a cut's block, rows too sparse, a block of the first version), where its buckets do not
    /// divide the step, or where it passes `hi` inside the bucket `hi` ends in.
    fn rolled_window(
        &self,
        q: &RangeQuery,
        disk: &Disk,
        lo: i64,
        hi: i64,
    ) -> Result<Rollup, StoreError> {
        let mut parts = Vec::new();
        let mut seen: Vec<i64> = Vec::new();
        let mut page = RangeQuery {
            start_ms: lo,
            end_ms: hi,
            limit: usize::MAX,
            max_cells: super::ROLLUP_PAGE_CELLS,
            sparse_ok: true,
            step_ms: 0,
            ..q.clone()
        };
        loop {
            let rows = self.head_range(&page, page.start_ms)?;
            let frame = Frame::from_chunks(&rows);
            seen.extend_from_slice(&frame.ts);
            parts.push(Rollup::of(&frame, ROLLUP_MS));
            match (rows.last().is_some_and(|c| c.truncated), frame.last()) {
                (true, Some(last)) if last < hi => page.start_ms = last + 1,
                _ => break,
            }
        }
        if let Some(f) = self.frozen_rows(q, lo, hi, usize::MAX)? {
            let f = f.without(&seen);
            seen.extend_from_slice(&f.ts);
            seen.sort_unstable();
            parts.push(Rollup::of(&f, ROLLUP_MS));
        }
        let seen_in = |min: i64, max: i64| {
            let i = seen.partition_point(|&t| t < min);
            seen.get(i).is_some_and(|&t| t <= max)
        };
        // A stored bucket ends in the window, or the section's rows do.
        let whole = |width: i64, max_ts: i64| {
            max_ts <= hi || hi.checked_add(1).is_none_or(|n| n.rem_euclid(width) == 0)
        };
        let step = q.step_ms.max(ROLLUP_MS);
        let mut keep = |name: &str| name_selected(&q.metric_names, name);
        #[cfg(test)]
        if let Some(hook) = self
            .inner
            .between_memory_and_blocks
            .lock()
            .unwrap()
            .as_mut()
        {
            hook();
        }
        let from_disk = disk.with_sections(&q.host_id, lo, hi, |refs| {
            let mut from_disk = Vec::with_capacity(refs.len());
            for r in refs {
                let s = &r.section;
                let usable = s.rollup.as_ref().is_some_and(|p| {
                    let width = i64::from(p.width_ms);
                    step % width == 0 && whole(width, s.max_ts)
                });
                if usable && !seen_in(s.min_ts, s.max_ts) {
                    match disk.section_rollup(r, lo, hi, &mut keep) {
                        Ok(Some(Some(rollup))) => {
                            from_disk.push(rollup);
                            disk.counters.rollups_stored.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Ok(Some(None)) => {}
                        Ok(None) if disk.read_index()?.has_block(r.seq) => continue,
                        Ok(None) => return Ok(None),
                        Err(StoreError::Corrupt { reason, .. }) => {
                            disk.forget_corrupt(&q.host_id, r, Damaged::Rollup, &reason)
                        }
                        Err(e) => return Err(e),
                    }
                }
                match disk.section_frame(r, lo, hi, &mut keep) {
                    Ok(Some(f)) => {
                        from_disk.push(Rollup::of(&f.without(&seen), ROLLUP_MS));
                        disk.counters
                            .rollups_from_rows
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) if disk.read_index()?.has_block(r.seq) => {}
                    Ok(None) => return Ok(None),
                    Err(StoreError::Corrupt { reason, .. }) => {
                        disk.forget_corrupt(&q.host_id, r, Damaged::Rows, &reason)
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(Some(from_disk))
        })?;
        parts.extend(from_disk);
        Ok(Rollup::combine(parts, step))
    }

    /// The head's rows of `q` from `from` on. Built in pieces of at most
    /// [`RANGE_PIECE_CELLS`] values, the store's lock taken for each piece and let go between
    /// them, so a large answer never holds up writers for long.
    fn head_range(&self, q: &RangeQuery, from: i64) -> Result<Vec<RangeChunk>, StoreError> {
        let mut out: Vec<RangeChunk> = Vec::new();
        let (mut from, mut left, mut cells) = (from, q.limit, 0usize);
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

    /// Refuses when the data directory's disk is below its reserve: checked at most once a
    /// second for writes (`force` checks now).
    fn check_space(&self, force: bool) -> Result<(), StoreError> {
        let Some(dir) = &self.inner.cfg.data_dir else {
            return Ok(());
        };
        let now = now_ms();
        let last = self.inner.space_checked_ms.load(Ordering::Relaxed);
        let short = if force || now.saturating_sub(last) >= 1000 {
            self.inner.space_checked_ms.store(now, Ordering::Relaxed);
            let free = free_bytes(dir);
            self.inner
                .space_free
                .store(free.unwrap_or(u64::MAX), Ordering::Relaxed);
            let short = free.is_some_and(|f| f < self.inner.cfg.disk_reserve_bytes);
            let was = self.inner.space_short.swap(short, Ordering::Relaxed);
            if short && !was {
                tracing::error!(dir = %dir.display(), free = free.unwrap_or(0), reserve = self.inner.cfg.disk_reserve_bytes, "disk below its reserve: refusing writes until space is freed");
            } else if was && !short {
                tracing::info!(dir = %dir.display(), "disk space is back above the reserve: taking writes again");
            }
            short
        } else {
            self.inner.space_short.load(Ordering::Relaxed)
        };
        if short {
            return Err(StoreError::DiskFull {
                path: dir.display().to_string(),
                free_bytes: self.inner.space_free.load(Ordering::Relaxed),
                reserve_bytes: self.inner.cfg.disk_reserve_bytes,
            });
        }
        Ok(())
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
                    self.rotate_locked(&mut w)?;
                }
                self.inner
                    .disk_bytes
                    .store(w.disk_bytes(), Ordering::Relaxed);
                Ok(Some(out))
            }
        }
    }

    /// Closes the active segment (fsynced by the next sync, not here: an fsync of a whole
    /// segment under the log's lock stalled every writer) and starts the next one with the
    /// registry, so deleting old segments never forgets a host.
    fn rotate_locked(&self, w: &mut Wal) -> Result<(), StoreError> {
        let closed = w.rotate()?;
        if let Ok(mut unsynced) = self.inner.unsynced.lock() {
            unsynced.push(closed);
        }
        let hosts: Vec<HostInfo> = self
            .read()?
            .hosts
            .values()
            .map(|s| host_to_info(&s.record))
            .collect();
        let ts = now_ms();
        w.append(wal::KIND_HOST, hosts.iter().map(|h| (ts, h)))
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
        if let Some(disk) = &self.inner.disk {
            let (expired, rows) = disk.write_index()?.expire(cutoff);
            for path in &expired {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete an expired block");
                }
            }
            if !expired.is_empty() {
                // Counted with the head's: store_evicted_snapshots_total{reason="retention"}.
                self.inner
                    .counters
                    .evicted_retention
                    .fetch_add(rows, Ordering::Relaxed);
                tracing::info!(blocks = expired.len(), rows, "retention deleted blocks");
            }
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

    /// Runs a due cut on a blocking thread (errors are logged and counted by the cut).
    async fn cut_in_background(&self) {
        if self.inner.disk.is_none() {
            return;
        }
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.cut_due()).await {
            Ok(Ok(_)) | Ok(Err(_)) => {}
            Err(e) => tracing::error!(error = %e, "cut task failed"),
        }
    }

    /// Runs a compaction on a blocking thread (errors are logged and counted).
    async fn compact_in_background(&self) {
        if self.inner.disk.is_none() {
            return;
        }
        let store = self.clone();
        // One group a call; a backlog (days of backfill, or a restart after a long stop) is
        // worked through now, up to 32 groups a minute.
        let merged = tokio::task::spawn_blocking(move || {
            let mut done = 0;
            for _ in 0..32 {
                match store.compact() {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) => return Err(e),
                }
            }
            Ok(done)
        });
        match merged.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.inner
                    .counters
                    .cut_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "merging blocks failed; the blocks stay as they are");
            }
            Err(e) => tracing::error!(error = %e, "compaction task failed"),
        }
    }

    /// Runs retention, cuts and fsync in the background until the returned handle is aborted
    /// or the token is cancelled.
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
            let mut compactions = tokio::time::interval(Duration::from_secs(60));
            compactions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut cuts = tokio::time::interval(Duration::from_secs(10));
            cuts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = cuts.tick() => store.cut_in_background().await,
                    _ = compactions.tick() => store.compact_in_background().await,
                    _ = store.inner.pressure.notified() => store.cut_in_background().await,
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

/// Applies one log record to the head at replay. A snapshot a block already holds is skipped;
/// a failure to read the blocks is kept in `failed` (the store does not open).
fn apply_record(
    state: &mut State,
    kind: u8,
    payload: &[u8],
    cutoff: i64,
    disk: &Disk,
    failed: &mut Option<StoreError>,
) -> i64 {
    match kind {
        wal::KIND_SNAPSHOT => match Snapshot::decode(payload) {
            Ok(s) => {
                let ts = s.timestamp_ms;
                if ts < cutoff || failed.is_some() {
                    return ts;
                }
                let floor = disk.read_index().map_or(i64::MIN, |b| b.floor());
                if ts < floor && !state.contains(&s.host_id, ts) {
                    match disk.holds(&s.host_id, ts) {
                        Ok(true) => return ts,
                        Ok(false) => {}
                        Err(e) => {
                            *failed = Some(e);
                            return ts;
                        }
                    }
                }
                state.insert(&s, ts);
                ts
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

/// A cut during replay (the store is not open yet: no log to rotate, nothing else running).
fn cut_replayed(state: &mut State, disk: &Disk, boundary: i64) -> Result<(), StoreError> {
    let boundary = boundary.max(disk.read_index()?.floor());
    let frozen = state.freeze(boundary);
    if frozen.hosts.is_empty() {
        return Ok(());
    }
    let (seq, path) = disk.write_index()?.next();
    let index = write_frozen(&path, &frozen)?;
    tracing::info!(
        seq,
        hosts = index.hosts.len(),
        bytes = index.bytes,
        boundary,
        "replayed log cut to a block"
    );
    disk.write_index()?.install(seq, path, index);
    Ok(())
}

/// Writes a cut's rows as a block at `path`, one host at a time (in host order).
fn write_frozen(path: &std::path::Path, frozen: &Frozen) -> Result<block::BlockIndex, StoreError> {
    let mut ids: Vec<&String> = frozen.hosts.keys().collect();
    ids.sort_unstable();
    block::write_block(
        block::Kind::Cut,
        path,
        frozen.boundary,
        now_ms(),
        &[],
        ids.into_iter().filter_map(|id| {
            let series = frozen.hosts.get(id)?;
            Some(Ok((Arc::from(id.as_str()), series.to_frame(&frozen.names))))
        }),
    )
}

/// Free bytes for unprivileged writers on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
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
        let admitted = stripes
            .iter()
            .map(|&i| {
                self.inner.admission[i]
                    .lock()
                    .map_err(|_| StoreError::Unavailable("admission lock poisoned".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.check_space(false).inspect_err(|_| {
            self.inner
                .counters
                .refused_disk_full
                .fetch_add(snapshots.len() as u64, Ordering::Relaxed);
        })?;
        // Drop duplicates (already stored, or repeated inside this batch) before logging.
        let mut fresh: Vec<(usize, &Snapshot)> = {
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
        // Rows older than the blocks' floor may be in a block (a late or resent snapshot):
        // checked after the head and the frozen rows, so a row a cut moves meanwhile is seen.
        if let Some(disk) = &self.inner.disk {
            let floor = disk.read_index()?.floor();
            if fresh.iter().any(|(_, s)| s.timestamp_ms < floor) {
                let mut held = Vec::with_capacity(fresh.len());
                for (_, s) in &fresh {
                    held.push(s.timestamp_ms < floor && disk.holds(&s.host_id, s.timestamp_ms)?);
                }
                let before = fresh.len();
                let mut it = held.into_iter();
                fresh.retain(|_| !it.next().unwrap_or(false));
                out.duplicates += (before - fresh.len()) as u32;
            }
        }
        if fresh.is_empty() {
            return Ok(out);
        }
        self.with_wal(|w| {
            w.append(
                wal::KIND_SNAPSHOT,
                fresh
                    .iter()
                    .map(|(_, s)| (s.timestamp_ms, wal::LoggedSnapshot(s))),
            )
        })?;
        if self.inner.cfg.fsync_interval.is_zero() {
            self.sync_now()?;
        }
        let now = now_ms();
        {
            let mut st = self.write_state()?;
            // Each host's newest stored snapshot of the batch, kept whole once.
            let mut newest: HashMap<&str, &Snapshot> = HashMap::default();
            for (i, s) in &fresh {
                match st.insert_rows(s, now) {
                    Some(n) => {
                        out.stored += 1;
                        out.samples += n;
                        out.new[*i] = true;
                        let kept = newest.entry(s.host_id.as_str()).or_insert(s);
                        if s.timestamp_ms >= kept.timestamp_ms {
                            *kept = s;
                        }
                    }
                    None => out.duplicates += 1,
                }
            }
            for s in newest.into_values() {
                st.offer_latest(s);
            }
        }
        drop(admitted);
        let limit = self.inner.cfg.memory_limit_samples;
        let cells = self.inner.state.read().map_or(0, |st| st.cells);
        if cells > limit {
            if self.inner.disk.is_none() {
                self.enforce_memory_limit();
            } else if cells > limit + limit / 4 {
                // The maintenance task is not keeping up: this writer cuts (and waits), so the
                // head stays bounded whatever the rate of ingest.
                // Its rows are already logged and in the head: a failed cut (counted and logged
                // by the cut) does not fail this write.
                let store = self.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || store.cut_due()).await {
                    tracing::error!(error = %e, "cut task failed");
                }
            } else {
                self.inner.pressure.notify_one();
            }
        }
        Ok(out)
    }

    /// The registry is updated before the record is logged: a log rotation in between (which
    /// starts the new segment with the whole registry, so older segments can be deleted)
    /// either sees the update or comes before the record.
    async fn register(&self, host: HostRecord) -> Result<(), StoreError> {
        let info = host_to_info(&host);
        let stamp = host.last_seen_ms;
        {
            let mut st = self.write_state()?;
            let series = st.hosts.entry(host.host_id.clone()).or_default();
            let last = series.record.last_seen_ms.max(host.last_seen_ms);
            series.record = HostRecord {
                last_seen_ms: last,
                ..host
            };
        }
        self.with_wal(|w| w.append(wal::KIND_HOST, [(stamp, &info)]))?;
        Ok(())
    }

    async fn touch(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut st = self.write_state()?;
        if let Some(s) = st.hosts.get_mut(host_id) {
            s.record.last_seen_ms = s.record.last_seen_ms.max(at_ms);
        }
        Ok(())
    }

    /// Raw rows, or rollups: the blocks' stored ones, and rows rolled up as they are read.
    async fn range(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        if q.step_ms > 0
            && let Some(disk) = &self.inner.disk
        {
            return self.rolled_range(&q, disk);
        }
        if q.step_ms > 0 {
            let mut r = super::RawRollup::new(&q);
            while let Some(page) = r.next_query() {
                let rows = self.raw_range(page)?;
                r.take(&rows);
            }
            return Ok(r.finish());
        }
        self.raw_range(q)
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

    async fn host(&self, host_id: &str) -> Result<Option<HostRecord>, StoreError> {
        Ok(self.read()?.hosts.get(host_id).map(|h| h.record.clone()))
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
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut blocks = StoreStats::default();
        if let Some(d) = &self.inner.disk {
            let (count, bytes, values, rows) = d.index.read().map_or((0, 0, 0, 0), |b| {
                (b.count(), b.bytes(), b.values(), b.rows())
            });
            let k = &d.counters;
            blocks = StoreStats {
                blocks: count,
                block_bytes: bytes,
                block_samples: values,
                snapshots: rows,
                block_cache_bytes: d.cache.bytes(),
                block_cache_hits: ld(&k.cache_hits),
                block_cache_misses: ld(&k.cache_misses),
                blocks_written: ld(&k.written),
                blocks_compacted: ld(&k.compacted),
                block_rollups_stored: ld(&k.rollups_stored),
                block_rollups_from_rows: ld(&k.rollups_from_rows),
                corrupt_blocks: ld(&k.corrupt_blocks),
                corrupt_sections: ld(&k.corrupt_sections),
                ..blocks
            };
        }
        StoreStats {
            hosts,
            snapshots: snapshots + blocks.snapshots,
            samples,
            disk_bytes: self.inner.disk_bytes.load(Ordering::Relaxed) + blocks.block_bytes,
            cut_failures: ld(&c.cut_failures),
            wal_segments_covered: ld(&c.wal_segments_covered),
            refused_disk_full: ld(&c.refused_disk_full),
            evicted_retention: c.evicted_retention.load(Ordering::Relaxed),
            evicted_memory: c.evicted_memory.load(Ordering::Relaxed),
            wal_corrupt_tails: c.wal_corrupt_tails.load(Ordering::Relaxed),
            metric_names,
            ..blocks
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::{Metric, Unit};

    /// A snapshot of `n` metrics (the hand-off's tests use it too).
    pub(super) fn snap(host: &str, ts: i64, n: usize) -> Snapshot {
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
            step_ms: 0,
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
        assert_eq!(store.host("a").await.unwrap().unwrap().host_id, "a");
        assert!(store.host("nobody").await.unwrap().is_none());
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

    fn on_disk(dir: &std::path::Path, limit: u64) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: Some(dir.to_path_buf()),
            memory_limit_samples: limit,
            block_window: Duration::from_secs(60),
            disk_reserve_bytes: 0,
            ..EmbeddedConfig::default()
        }
    }

    /// Values that look like an agent's: fractions, growing counters, gaps.
    fn agent_snap(host: &str, ts: i64, i: i64) -> Snapshot {
        let mut metrics: Vec<Metric> = (0..12)
            .map(|m| Metric {
                name: format!("m.{m}"),
                value: ((i * 7 + m) as f64 * 0.37).sin() * 50.0 + 50.0 + 1.0 / 3.0,
                unit: Unit::Percent as i32,
                window: None,
            })
            .collect();
        if i % 5 == 0 {
            metrics.push(Metric {
                name: "net.if9.rx".into(),
                value: i as f64 * 1234.5,
                unit: Unit::Count as i32,
                window: None,
            });
        }
        Snapshot {
            host_id: host.into(),
            timestamp_ms: ts,
            metrics,
        }
    }

    fn same(a: &[Snapshot], b: &[Snapshot]) {
        assert_eq!(a.len(), b.len(), "rows");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.timestamp_ms, y.timestamp_ms);
            let mut xm: Vec<(String, u64)> = x
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.value.to_bits()))
                .collect();
            let mut ym: Vec<(String, u64)> = y
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.value.to_bits()))
                .collect();
            xm.sort();
            ym.sort();
            assert_eq!(xm, ym, "row {}", x.timestamp_ms);
        }
    }

    #[tokio::test]
    async fn history_beyond_the_head_budget_is_cut_to_blocks_and_read_back_exact() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = on_disk(dir.path(), 10_000);
        let now = now_ms();
        let start = now - 3 * 24 * 3_600_000;
        let mut written: HashMap<String, Vec<Snapshot>> = HashMap::default();
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            for i in 0..3000 {
                let ts = start + i * 60_000;
                let batch: Vec<Snapshot> = ["a", "b", "c"]
                    .iter()
                    .map(|h| agent_snap(h, ts, i))
                    .collect();
                store.write(&batch).await.unwrap();
                for s in batch {
                    written.entry(s.host_id.clone()).or_default().push(s);
                }
                if i % 500 == 0 {
                    store.cut_due().unwrap();
                }
            }
            let stats = store.stats();
            assert!(stats.blocks >= 2, "{stats:?}");
            assert!(
                stats.samples <= 10_000 + 10_000 / 4,
                "the head stays within its budget and a quarter: {stats:?}"
            );
            assert_eq!(stats.evicted_memory, 0, "nothing evicted: {stats:?}");
            for (host, want) in &written {
                same(&rows(&store, range(host, 0, now)).await, want);
            }
            // A window across head and blocks, filtered by name, limited.
            let mut q = range("b", start + 1000 * 60_000, start + 2999 * 60_000);
            q.metric_names = vec!["net.*".into()];
            let got = rows(&store, q).await;
            let with: Vec<&Snapshot> = got.iter().filter(|s| !s.metrics.is_empty()).collect();
            assert_eq!(with.len(), 400, "every fifth row has the name");
            assert!(with.iter().all(|s| s.metrics.len() == 1));
            let mut q = range("c", start, now);
            q.limit = 7;
            assert_eq!(rows(&store, q).await.len(), 7);
            let mut q = range("c", start, now);
            q.max_cells = 5_000;
            let chunks = store.range(q).await.unwrap();
            assert!(chunks.last().unwrap().truncated);
            store.flush().await.unwrap();
        }
        // The log segments the blocks cover were dropped; a restart replays only the head.
        let store = EmbeddedStore::open(cfg).unwrap();
        let replayed = store
            .counters()
            .wal_replayed_records
            .load(Ordering::Relaxed);
        assert!(replayed < 3 * 3000, "replayed {replayed} records of 9000");
        for (host, want) in &written {
            same(&rows(&store, range(host, 0, now)).await, want);
        }
    }

    #[tokio::test]
    async fn late_rows_below_the_floor_are_stored_once_and_resent_ones_are_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = on_disk(dir.path(), 10_000);
        let now = now_ms();
        let old = now - 3_600_000;
        let store = EmbeddedStore::open(cfg.clone()).unwrap();
        for i in 0..100 {
            store
                .write(&[agent_snap("a", old + i * 10_000, i)])
                .await
                .unwrap();
        }
        assert!(store.cut_due().unwrap() > 0);
        assert_eq!(store.stats().samples, 0, "all cut");
        // Resent: already in a block.
        let out = store
            .write(&[agent_snap("a", old + 50 * 10_000, 50)])
            .await
            .unwrap();
        assert_eq!((out.stored, out.duplicates), (0, 1));
        // Late: older than the floor, not yet stored.
        let late = agent_snap("a", old + 50 * 10_000 + 1, 999);
        let out = store.write(std::slice::from_ref(&late)).await.unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 0));
        assert_eq!(rows(&store, range("a", 0, now)).await.len(), 101);
        store.cut_due().unwrap();
        store.flush().await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(cfg).unwrap();
        let got = rows(&store, range("a", 0, now)).await;
        assert_eq!(got.len(), 101);
        assert_eq!(got[51].timestamp_ms, late.timestamp_ms);
        let out = store.write(&[late]).await.unwrap();
        assert_eq!((out.stored, out.duplicates), (0, 1), "after a restart too");
    }

    #[tokio::test]
    async fn a_damaged_section_or_block_is_reported_and_skipped_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = on_disk(dir.path(), 10_000);
        let now = now_ms();
        let old = now - 3_600_000;
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            for i in 0..50 {
                let ts = old + i * 10_000;
                store
                    .write(&[agent_snap("a", ts, i), agent_snap("b", ts, i)])
                    .await
                    .unwrap();
            }
            store.cut_due().unwrap();
            store.flush().await.unwrap();
        }
        let blocks = dir.path().join("blocks");
        let file = std::fs::read_dir(&blocks)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let index = block::read_index(&file).unwrap();
        let (_, a) = index.hosts.iter().find(|(h, _)| &**h == "a").unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[a.offset as usize + a.len as usize / 2] ^= 0x10;
        std::fs::write(&file, &bytes).unwrap();
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            assert!(
                rows(&store, range("a", 0, now)).await.is_empty(),
                "not served"
            );
            assert_eq!(
                rows(&store, range("b", 0, now)).await.len(),
                50,
                "b is whole"
            );
            assert_eq!(store.stats().corrupt_sections, 1);
            // Reported once: the section is forgotten.
            assert!(rows(&store, range("a", 0, now)).await.is_empty());
            assert_eq!(store.stats().corrupt_sections, 1);
        }
        // A torn footer: the block is set aside at start.
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&file, &bytes).unwrap();
        let store = EmbeddedStore::open(cfg).unwrap();
        assert_eq!(store.stats().corrupt_blocks, 1);
        assert!(file.with_extension("rwb.corrupt").exists());
        assert!(rows(&store, range("b", 0, now)).await.is_empty());
    }

    #[tokio::test]
    async fn retention_deletes_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = on_disk(dir.path(), 10_000);
        cfg.retention = Duration::from_secs(2 * 3600);
        let now = now_ms();
        let store = EmbeddedStore::open(cfg).unwrap();
        for i in 0..100 {
            store
                .write(&[agent_snap("a", now - 10_500_000 + i * 100_000, i)])
                .await
                .unwrap();
        }
        store.cut(now - 7_500_000).unwrap();
        store.cut(now - 60_000).unwrap();
        assert_eq!(store.stats().blocks, 2);
        store.enforce_retention().unwrap();
        assert_eq!(store.stats().blocks, 1, "the block past retention is gone");
        let got = rows(&store, range("a", 0, now)).await;
        assert!(got.iter().all(|s| s.timestamp_ms >= now - 7_200_000));
        assert!(!got.is_empty());
    }

    #[tokio::test]
    async fn the_blocks_of_a_finished_day_are_merged_and_a_crash_before_deleting_them_leaves_nothing_twice()
     {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = on_disk(dir.path(), 1_000_000);
        cfg.retention = Duration::from_secs(30 * 86_400);
        let day = 86_400_000;
        let base = (now_ms() / day - 3) * day;
        let mut want: HashMap<String, Vec<Snapshot>> = HashMap::default();
        let blocks_dir = dir.path().join("blocks");
        let saved;
        {
            let store = EmbeddedStore::open(cfg.clone()).unwrap();
            // Four cuts in one day, two in the next, one in the third (so the second is over).
            for (k, (from, to)) in [
                (0, 5),
                (5, 10),
                (10, 15),
                (15, 20),
                (24, 30),
                (30, 36),
                (50, 51),
            ]
            .into_iter()
            .enumerate()
            {
                for hour in from..to {
                    for m in 0..6 {
                        let ts = base + hour * 3_600_000 + m * 600_000;
                        let batch = [
                            agent_snap("a", ts, hour * 6 + m),
                            agent_snap("b", ts, k as i64),
                        ];
                        store.write(&batch).await.unwrap();
                        for s in batch {
                            want.entry(s.host_id.clone()).or_default().push(s);
                        }
                    }
                }
                store.cut(base + to * 3_600_000).unwrap();
            }
            assert_eq!(store.stats().blocks, 7);
            let first = std::fs::read_dir(&blocks_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .min()
                .unwrap();
            saved = (first.clone(), std::fs::read(&first).unwrap());
            assert_eq!(store.compact().unwrap(), 4, "the first day's four blocks");
            assert_eq!(store.compact().unwrap(), 2, "the second day's two");
            assert_eq!(store.compact().unwrap(), 0, "nothing left to merge");
            assert_eq!(store.stats().blocks, 3);
            assert!(!saved.0.exists(), "a replaced block is deleted");
            for (host, rows_wanted) in &want {
                same(&rows(&store, range(host, 0, now_ms())).await, rows_wanted);
            }
            store.flush().await.unwrap();
        }
        // A crash between writing the merged block and deleting the old ones.
        std::fs::write(&saved.0, &saved.1).unwrap();
        let store = EmbeddedStore::open(cfg).unwrap();
        assert!(!saved.0.exists(), "the replaced block is removed at start");
        assert_eq!(store.stats().blocks, 3);
        for (host, rows_wanted) in &want {
            same(&rows(&store, range(host, 0, now_ms())).await, rows_wanted);
        }
    }

    /// A rollup answer as (bucket, metric) → (mean, min, max, count); dense columns.
    fn buckets(
        chunks: &[RangeChunk],
    ) -> std::collections::BTreeMap<(i64, String), (f64, f64, f64, u32)> {
        let mut out = std::collections::BTreeMap::new();
        for c in chunks {
            for col in &c.columns {
                assert!(col.rows.is_empty(), "dense asked");
                for (i, &t) in c.timestamps_ms.iter().enumerate() {
                    if col.values[i].is_nan() {
                        continue;
                    }
                    let v = (col.values[i], col.min[i], col.max[i], col.count[i]);
                    assert!(
                        out.insert((t, col.name.clone()), v).is_none(),
                        "bucket {t} twice"
                    );
                }
            }
        }
        out
    }

    /// The same read rolled up from the rows (as a store without blocks answers it).
    fn rolled_from_rows(store: &EmbeddedStore, q: &RangeQuery) -> Vec<RangeChunk> {
        let mut r = crate::store::RawRollup::new(q);
        while let Some(page) = r.next_query() {
            let rows = store.raw_range(page).unwrap();
            r.take(&rows);
        }
        r.finish()
    }

    /// Raw values counted in every bucket of `metric`.
    fn values_of(
        got: &std::collections::BTreeMap<(i64, String), (f64, f64, f64, u32)>,
        metric: &str,
    ) -> u32 {
        got.iter()
            .filter(|((_, n), _)| n == metric)
            .map(|(_, v)| v.3)
            .sum()
    }

    fn same_buckets(got: &[RangeChunk], want: &[RangeChunk], what: &str) {
        let (got, want) = (buckets(got), buckets(want));
        assert!(!want.is_empty(), "{what}: nothing to compare");
        assert_eq!(got.len(), want.len(), "{what}: buckets");
        for ((k, g), (wk, w)) in got.iter().zip(&want) {
            assert_eq!(k, wk, "{what}");
            assert_eq!(
                (g.1, g.2, g.3),
                (w.1, w.2, w.3),
                "{what}: {k:?} min, max, count"
            );
            assert!(
                (g.0 - w.0).abs() <= 1e-9 * w.0.abs().max(1.0),
                "{what}: {k:?} mean {} vs {}",
                g.0,
                w.0
            );
        }
    }

    fn step_query(host: &str, start: i64, end: i64, step_ms: i64) -> RangeQuery {
        RangeQuery {
            step_ms,
            sparse_ok: false,
            ..range(host, start, end)
        }
    }

    /// Writes `rows` of host `a` at 1 s (3 ms past the second) and of `b` at 10 s from `from`,
    /// cut to a block every hour, then raises the floor past their day and merges its blocks.
    async fn a_merged_day(store: &EmbeddedStore, day: i64, a_rows: i64, b_rows: i64) {
        for t in 0..a_rows.max(b_rows * 10) {
            let ts = day + t * 1000 + 3;
            let mut batch = Vec::new();
            if t < a_rows {
                batch.push(agent_snap("a", ts, t));
            }
            if t % 10 == 0 && t / 10 < b_rows {
                batch.push(agent_snap("b", ts + 4, t / 10 + 7));
            }
            store.write(&batch).await.unwrap();
            if t % 3600 == 3599 {
                store.cut(ts + 10).unwrap();
            }
        }
        let next = day + DAY_MS + 1000;
        store.write(&[agent_snap("x", next, 0)]).await.unwrap();
        store.cut(next + 1).unwrap();
        while store.compact().unwrap() > 0 {}
    }

    #[tokio::test]
    async fn a_step_read_takes_the_stored_rollups_of_merged_blocks_and_equals_one_made_from_the_rows()
     {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(on_disk(dir.path(), 1_000_000)).unwrap();
        let day = bucket(now_ms(), DAY_MS) - 2 * DAY_MS;
        // a: 3 h at 1 s (1-minute rollups); b: 6 h at 10 s (10-minute rollups).
        a_merged_day(&store, day, 3 * 3600, 2160).await;
        let end = day + DAY_MS - 1;
        let mut two = step_query("a", day, end, 600_000);
        two.metric_names = vec!["m.1".into(), "net.*".into()];
        let stored = [
            ("a, 1 min", step_query("a", day, end, 60_000)),
            ("a, 1 h", step_query("a", day, end, 3_600_000)),
            ("a, 10 min, two metrics", two),
            (
                "b, 10 min, from inside a minute",
                step_query("b", day + 95_000, end, 600_000),
            ),
        ];
        let rows = [
            // b's buckets are wider than the step; a's range ends inside a bucket.
            ("b, 1 min", step_query("b", day, end, 60_000)),
            (
                "a, 1 h, to inside a bucket",
                step_query("a", day, day + 2 * 3_600_000 + 30_000, 3_600_000),
            ),
        ];
        for (i, (what, q)) in stored.into_iter().chain(rows).enumerate() {
            let before = store.stats();
            let got = store.range(q.clone()).await.unwrap();
            let after = store.stats();
            same_buckets(&got, &rolled_from_rows(&store, &q), what);
            let (s, r) = (
                after.block_rollups_stored - before.block_rollups_stored,
                after.block_rollups_from_rows - before.block_rollups_from_rows,
            );
            assert_eq!(
                (s, r),
                if i < 4 { (1, 0) } else { (0, 1) },
                "{what}: stored, rows"
            );
        }
        // A late row of b waits in the head beside the merged block: the block is read as rows.
        store
            .write(&[agent_snap("b", day + 3_600_000 + 5_000, 1)])
            .await
            .unwrap();
        let q = step_query("b", day, end, 600_000);
        let before = store.stats().block_rollups_from_rows;
        same_buckets(
            &store.range(q.clone()).await.unwrap(),
            &rolled_from_rows(&store, &q),
            "late row",
        );
        assert_eq!(store.stats().block_rollups_from_rows, before + 1);
    }

    /// A late row is read from the head, then cut and merged into the day's block (with
    /// rollups) before the step read looks up the blocks: it is counted once.
    #[tokio::test]
    async fn a_row_merged_into_a_block_during_a_step_read_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(on_disk(dir.path(), 1_000_000)).unwrap();
        let day = bucket(now_ms(), DAY_MS) - 2 * DAY_MS;
        a_merged_day(&store, day, 3600, 0).await;
        let late: Vec<Snapshot> = (0..10)
            .map(|j| agent_snap("a", day + j * 60_000 + 500, j))
            .collect();
        store.write(&late).await.unwrap();
        let mover = store.clone();
        *store.inner.between_memory_and_blocks.lock().unwrap() = Some(Box::new(move || {
            mover.cut(day + DAY_MS + 2000).unwrap();
            assert_eq!(mover.compact().unwrap(), 2, "merged with the day's block");
        }));
        let q = step_query("a", day, day + DAY_MS - 1, 600_000);
        let disk = store.inner.disk.as_ref().unwrap();
        let got = buckets(&store.rolled_range(&q, disk).unwrap());
        *store.inner.between_memory_and_blocks.lock().unwrap() = None;
        assert_eq!(values_of(&got, "m.0"), 3610);
        assert_eq!(store.stats().samples, 0, "the late rows left the head");
        // Read again, now from the merged block's stored rollup alone.
        let before = store.stats().block_rollups_stored;
        same_buckets(
            &store.range(q.clone()).await.unwrap(),
            &rolled_from_rows(&store, &q),
            "after",
        );
        assert_eq!(store.stats().block_rollups_stored, before + 1);
    }

    #[tokio::test]
    async fn a_step_longer_than_any_range_is_one_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(on_disk(dir.path(), 1_000_000)).unwrap();
        let now = now_ms();
        for i in 0..10 {
            store
                .write(&[agent_snap("a", now - 60_000 + i * 1000, i)])
                .await
                .unwrap();
        }
        // The largest whole number of minutes: a day added to it would overflow.
        let huge = i64::MAX / 60_000 * 60_000;
        let got = buckets(&store.range(step_query("a", 0, now, huge)).await.unwrap());
        assert_eq!(got.keys().filter(|(_, n)| n == "m.0").count(), 1);
        assert_eq!(got.values().map(|v| v.3).max(), Some(10));
    }

    #[tokio::test]
    async fn blocks_of_the_first_version_are_rolled_up_from_rows_until_compaction_writes_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let day = bucket(now_ms(), DAY_MS) - 2 * DAY_MS;
        let frame = |from: i64| {
            let mut b = super::super::frame::FrameBuilder::default();
            for i in 0..360 {
                let v = (i as f64 * 0.1).sin();
                b.row(from + i * 10_000, [("m.0", 1, v), ("m.1", 1, v * 2.0)]);
            }
            b.finish()
        };
        let blocks = dir.path().join("blocks");
        std::fs::create_dir_all(&blocks).unwrap();
        for (seq, from) in [(1u64, day + 3_600_000), (2, day + 2 * 3_600_000)] {
            block::write_block(
                block::Kind::V1,
                &blocks.join(format!("block-{seq:016}.rwb")),
                from + 3_600_000,
                0,
                &[],
                vec![Ok((Arc::from("old"), frame(from)))].into_iter(),
            )
            .unwrap();
        }
        let store = EmbeddedStore::open(on_disk(dir.path(), 1_000_000)).unwrap();
        let q = step_query("old", day, day + DAY_MS - 1, 3_600_000);
        let want = rolled_from_rows(&store, &q);
        same_buckets(
            &store.range(q.clone()).await.unwrap(),
            &want,
            "first version",
        );
        let s = store.stats();
        assert_eq!((s.block_rollups_stored, s.block_rollups_from_rows), (0, 2));
        // A floor past the day lets compaction merge them, with rollups.
        let next = day + DAY_MS + 1000;
        store.write(&[agent_snap("x", next, 0)]).await.unwrap();
        store.cut(next + 1).unwrap();
        assert_eq!(store.compact().unwrap(), 2);
        same_buckets(&store.range(q.clone()).await.unwrap(), &want, "compacted");
        assert_eq!(store.stats().block_rollups_stored, 1);
    }
}
