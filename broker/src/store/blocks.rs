//! The embedded store's blocks on disk: which block holds which host's rows, reading sections
//! through a cache bounded in bytes, and retention by whole blocks.
//!
//! Blocks live in `<data dir>/blocks/block-<seq>.rwb` (format in `block.rs`). At start every
//! block's index is read; a block whose footer or index is damaged is renamed `*.corrupt`,
//! reported (log and `ringwatch_broker_store_corrupt_total{kind="block"}`) and never read. A
//! section whose CRC fails on read is reported the same way (`kind="section"`), dropped from the
//! index and skipped. Reads go through a cache of decoded sections bounded in bytes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use foldhash::HashMap;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::{self, BlockIndex, Section, SectionDir};
use super::frame::{Frame, FrameCol};
use super::rollup::Rollup;
use crate::error::StoreError;

/// Counters of the blocks, for /metrics.
#[derive(Debug, Default)]
pub struct BlockCounters {
    pub corrupt_blocks: AtomicU64,
    pub corrupt_sections: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub written: AtomicU64,
    /// Blocks merged into others by compaction.
    pub compacted: AtomicU64,
    /// Block sections a read with a step took from their stored rollups, and from their rows.
    pub rollups_stored: AtomicU64,
    pub rollups_from_rows: AtomicU64,
}

/// One block on disk.
struct BlockFile {
    path: PathBuf,
    floor: i64,
    max_ts: i64,
    bytes: u64,
    values: u64,
    rows: u64,
    hosts: Vec<Arc<str>>,
    /// Written by a compaction (it names blocks it replaces), in this version: it has its
    /// rollups. Any other block (a cut's, or the first version's) is written again by the
    /// compaction of its day, even alone, to add them.
    merged: bool,
}

/// Which part of a section was found damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damaged {
    Rows,
    Rollup,
}

/// A section to read: which block, where.
#[derive(Debug, Clone)]
pub(crate) struct SectionRef {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) section: Section,
}

/// The index of every block.
#[derive(Default)]
pub(crate) struct Blocks {
    dir: PathBuf,
    files: BTreeMap<u64, BlockFile>,
    /// Per host, its sections, oldest first.
    by_host: HashMap<Arc<str>, Vec<(u64, Section)>>,
    /// Every row older than this had been cut to a block when the newest block was written.
    floor: i64,
    next_seq: u64,
    bytes: u64,
    /// Values and rows held in all blocks.
    values: u64,
    rows: u64,
}

fn block_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("block-{seq:016}.rwb"))
}

fn parse_seq(name: &str) -> Option<u64> {
    name.strip_prefix("block-")?
        .strip_suffix(".rwb")?
        .parse()
        .ok()
}

impl Blocks {
    /// Reads every block's index under `dir` (creating it), setting damaged blocks aside and
    /// deleting temporary files left by a crash mid-write.
    pub(crate) fn open(dir: &Path, counters: &BlockCounters) -> Result<Blocks, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut blocks = Blocks {
            dir: dir.to_path_buf(),
            floor: i64::MIN,
            next_seq: 1,
            ..Blocks::default()
        };
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                // A cut that crashed before its rename: its rows are still in the log.
                tracing::info!(file = %name, "removing a block left half-written by a crash");
                fs::remove_file(entry.path()).map_err(|e| StoreError::io(entry.path(), e))?;
            } else if let Some(seq) = parse_seq(&name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut found = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let path = block_path(dir, seq);
            blocks.next_seq = blocks.next_seq.max(seq + 1);
            match block::read_index(&path) {
                Ok(index) => found.push((seq, path, index)),
                Err(StoreError::Corrupt { reason, .. }) => {
                    counters.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
                    let aside = path.with_extension("rwb.corrupt");
                    tracing::error!(path = %path.display(), %reason, aside = %aside.display(), "corrupt block set aside; its rows are not served");
                    fs::rename(&path, &aside).map_err(|e| StoreError::io(&path, e))?;
                }
                Err(e) => return Err(e),
            }
        }
        // Blocks a compaction merged into a newer one, left behind by a crash before their
        // deletion: the newer block holds every row of theirs.
        let superseded: std::collections::HashSet<u64> = found
            .iter()
            .flat_map(|(_, _, ix)| ix.superseded.iter().copied())
            .collect();
        for (seq, path, index) in found {
            if superseded.contains(&seq) {
                tracing::info!(path = %path.display(), "removing a block a compaction replaced");
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                continue;
            }
            blocks.install(seq, path, index);
        }
        Ok(blocks)
    }

    /// The path the next block is written to, and its sequence number.
    pub(crate) fn next(&mut self) -> (u64, PathBuf) {
        let seq = self.next_seq;
        self.next_seq += 1;
        (seq, block_path(&self.dir, seq))
    }

    pub(crate) fn install(&mut self, seq: u64, path: PathBuf, index: BlockIndex) {
        self.floor = self.floor.max(index.floor);
        self.next_seq = self.next_seq.max(seq + 1);
        self.bytes += index.bytes;
        let values: u64 = index.hosts.iter().map(|(_, s)| u64::from(s.values)).sum();
        self.values += values;
        let rows: u64 = index.hosts.iter().map(|(_, s)| u64::from(s.rows)).sum();
        self.rows += rows;
        let max_ts = index.max_ts();
        let mut hosts = Vec::with_capacity(index.hosts.len());
        for (host, section) in index.hosts {
            let list = self.by_host.entry(host.clone()).or_default();
            let at = list.partition_point(|(_, s)| s.min_ts <= section.min_ts);
            list.insert(at, (seq, section));
            hosts.push(host);
        }
        self.files.insert(
            seq,
            BlockFile {
                path,
                floor: index.floor,
                max_ts,
                bytes: index.bytes,
                values,
                rows,
                hosts,
                merged: !index.v1 && !index.superseded.is_empty(),
            },
        );
    }

    pub(crate) fn has_block(&self, seq: u64) -> bool {
        self.files.contains_key(&seq)
    }

    /// Every row older than this is in a block (or was, before retention).
    pub(crate) fn floor(&self) -> i64 {
        self.floor
    }

    /// Raises the floor without a block: a cut found nothing older than `to` in the head.
    pub(crate) fn raise_floor(&mut self, to: i64) {
        self.floor = self.floor.max(to);
    }

    pub(crate) fn count(&self) -> u64 {
        self.files.len() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Values held in all blocks (samples).
    pub(crate) fn values(&self) -> u64 {
        self.values
    }

    /// Rows (snapshots) held in all blocks.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// `host`'s sections holding rows in `[start, end]`, oldest first.
    pub(crate) fn sections(&self, host: &str, start: i64, end: i64) -> Vec<SectionRef> {
        let Some(list) = self.by_host.get(host) else {
            return Vec::new();
        };
        list.iter()
            .filter(|(_, s)| s.max_ts >= start && s.min_ts <= end)
            .filter_map(|(seq, s)| {
                Some(SectionRef {
                    seq: *seq,
                    path: self.files.get(seq)?.path.clone(),
                    section: s.clone(),
                })
            })
            .collect()
    }

    /// Every host's sections, oldest first (a hand-off sends them all).
    pub(crate) fn all_sections(&self) -> Vec<(Arc<str>, Vec<SectionRef>)> {
        let mut out: Vec<(Arc<str>, Vec<SectionRef>)> = self
            .by_host
            .iter()
            .map(|(host, list)| {
                let refs = list
                    .iter()
                    .filter_map(|(seq, s)| {
                        Some(SectionRef {
                            seq: *seq,
                            path: self.files.get(seq)?.path.clone(),
                            section: s.clone(),
                        })
                    })
                    .collect();
                (host.clone(), refs)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether `host` has a section holding exactly these rows (same span, rows and CRC).
    pub(crate) fn holds_section(
        &self,
        host: &str,
        raw: &super::block::RawSection,
        crc: u32,
    ) -> bool {
        self.by_host.get(host).is_some_and(|list| {
            list.iter().any(|(_, s)| {
                s.crc == crc
                    && s.min_ts == raw.min_ts
                    && s.max_ts == raw.max_ts
                    && s.rows == raw.rows
            })
        })
    }

    /// Forgets a section found corrupt, so it is reported once and never read again.
    pub(crate) fn drop_section(&mut self, host: &str, seq: u64, offset: u64) {
        if let Some(list) = self.by_host.get_mut(host) {
            list.retain(|(q, s)| !(*q == seq && s.offset == offset));
        }
    }

    /// Forgets a section's rollup found corrupt (its rows are read instead, and it is reported
    /// once).
    pub(crate) fn drop_rollup(&mut self, host: &str, seq: u64, offset: u64) {
        if let Some(list) = self.by_host.get_mut(host) {
            for (q, s) in list.iter_mut() {
                if *q == seq && s.offset == offset {
                    s.rollup = None;
                }
            }
        }
    }

    /// Removes the blocks whose every row is older than `cutoff` from the index; their paths,
    /// for the caller to delete, and the rows they held.
    pub(crate) fn expire(&mut self, cutoff: i64) -> (Vec<PathBuf>, u64) {
        let old: Vec<(u64, u64)> = self
            .files
            .iter()
            .filter(|(_, f)| f.max_ts < cutoff)
            .map(|(&seq, f)| (seq, f.rows))
            .collect();
        let rows = old.iter().map(|(_, r)| r).sum();
        let paths = old
            .into_iter()
            .filter_map(|(seq, _)| self.remove(seq))
            .collect();
        (paths, rows)
    }

    /// Takes a block out of the index; its path, for the caller to delete.
    fn remove(&mut self, seq: u64) -> Option<PathBuf> {
        let file = self.files.remove(&seq)?;
        self.bytes -= file.bytes;
        self.values -= file.values;
        self.rows -= file.rows;
        for host in &file.hosts {
            if let Some(list) = self.by_host.get_mut(host) {
                list.retain(|(q, _)| *q != seq);
                if list.is_empty() {
                    self.by_host.remove(host);
                }
            }
        }
        Some(file.path)
    }

    /// Installs the block a compaction wrote and takes out the ones it replaces; their paths,
    /// for the caller to delete.
    pub(crate) fn replace(
        &mut self,
        old: &[u64],
        seq: u64,
        path: PathBuf,
        index: BlockIndex,
    ) -> Vec<PathBuf> {
        self.install(seq, path, index);
        old.iter().filter_map(|&s| self.remove(s)).collect()
    }

    /// Groups of blocks worth merging: those whose newest row lies in one UTC day that ended
    /// before `before`, when a day has two or more or a block no compaction wrote (to add its
    /// rollups), at most `max_bytes` a group. Cuts every
    /// few minutes under load make many small blocks; merged, each host has about one section
    /// a day, so the index (and the work of a long read) stays small whatever the retention.
    /// (Grouped by the newest row because retention deletes a block by it.)
    pub(crate) fn compaction_groups(&self, before: i64, max_bytes: u64) -> Vec<Vec<u64>> {
        const DAY: i64 = 86_400_000;
        let mut by_day: BTreeMap<i64, Vec<(u64, u64)>> = BTreeMap::new();
        let mut unmerged = std::collections::HashSet::new();
        for (&seq, f) in &self.files {
            let day = f.max_ts.div_euclid(DAY);
            if (day + 1) * DAY <= before {
                by_day.entry(day).or_default().push((seq, f.bytes));
                if !f.merged {
                    unmerged.insert(seq);
                }
            }
        }
        // A block alone is written again if no compaction wrote it (to add its rollups: a cut
        // that took several days at once, after a backfill or a long stop, or a block of the
        // first version); never twice.
        let worth = |g: &[u64]| g.len() >= 2 || g.iter().any(|s| unmerged.contains(s));
        let mut groups = Vec::new();
        for (_, blocks) in by_day {
            let mut group: Vec<u64> = Vec::new();
            let mut bytes = 0;
            for (seq, b) in blocks {
                if !group.is_empty() && bytes + b > max_bytes {
                    if worth(&group) {
                        groups.push(std::mem::take(&mut group));
                    }
                    group.clear();
                    bytes = 0;
                }
                group.push(seq);
                bytes += b;
            }
            if worth(&group) {
                groups.push(group);
            }
        }
        groups
    }

    /// The highest floor among `seqs` (a merged block keeps it).
    pub(crate) fn floor_of(&self, seqs: &[u64]) -> i64 {
        seqs.iter()
            .filter_map(|s| self.files.get(s).map(|f| f.floor))
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Per host, its sections in the blocks `seqs`, oldest first.
    pub(crate) fn sections_in(&self, seqs: &[u64]) -> BTreeMap<Arc<str>, Vec<SectionRef>> {
        let mut out: BTreeMap<Arc<str>, Vec<SectionRef>> = BTreeMap::new();
        for seq in seqs {
            let Some(f) = self.files.get(seq) else {
                continue;
            };
            for host in &f.hosts {
                let Some(list) = self.by_host.get(host) else {
                    continue;
                };
                for (q, section) in list.iter().filter(|(q, _)| q == seq) {
                    out.entry(host.clone()).or_default().push(SectionRef {
                        seq: *q,
                        path: f.path.clone(),
                        section: section.clone(),
                    });
                }
            }
        }
        for refs in out.values_mut() {
            refs.sort_by_key(|r| r.section.min_ts);
        }
        out
    }
}

/// What the cache holds: a section's layout with its timestamps, or one decoded column.
#[derive(Clone)]
enum Decoded {
    Dir(Arc<SectionDir>),
    Col(Arc<Vec<f64>>),
}

/// Weighs cached items by their bytes in memory.
#[derive(Clone)]
struct ByBytes;

impl Weighter<(u64, u64, u32), Decoded> for ByBytes {
    fn weight(&self, _: &(u64, u64, u32), v: &Decoded) -> u64 {
        64 + match v {
            Decoded::Dir(d) => d.weight(),
            Decoded::Col(c) => c.len() as u64 * 8,
        }
    }
}

/// The key of a section's layout in the cache (its columns use their index).
const DIR: u32 = u32::MAX;

/// Sections decoded for reads, bounded in bytes: each section's layout and timestamps, and each
/// column decoded on its own (a read decodes only the columns it asks for, once).
pub(crate) struct SectionCache {
    cache: Cache<(u64, u64, u32), Decoded, ByBytes>,
}

impl SectionCache {
    pub(crate) fn new(bytes: u64) -> SectionCache {
        let items = (bytes / (8 << 10)).clamp(16, 1 << 20) as usize;
        SectionCache {
            cache: Cache::with_weighter(items, bytes.max(1), ByBytes),
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    fn dir(&self, r: &SectionRef) -> Option<Arc<SectionDir>> {
        match self.cache.get(&(r.seq, r.section.offset, DIR)) {
            Some(Decoded::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn col(&self, r: &SectionRef, i: usize) -> Option<Arc<Vec<f64>>> {
        match self.cache.get(&(r.seq, r.section.offset, i as u32)) {
            Some(Decoded::Col(c)) => Some(c),
            _ => None,
        }
    }
}

/// A section's bytes from its file, CRC checked; `None` when the file is gone (retention
/// deleted its block after the caller looked it up).
fn load(r: &SectionRef) -> Result<Option<Vec<u8>>, StoreError> {
    match block::read_section(&r.path, &r.section) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A section's layout, and its bytes when they were read for it (not when it was cached).
type DirRead = (Arc<SectionDir>, Option<Vec<u8>>);

/// Frames read from blocks, oldest first, and (when the cell budget stopped the read) the last
/// timestamp read.
pub(crate) type FramesRead = (Vec<Frame>, Option<i64>);

/// The blocks with their cache and counters: what the embedded store holds of its disk.
pub(crate) struct Disk {
    pub(crate) index: RwLock<Blocks>,
    pub(crate) cache: SectionCache,
    pub(crate) counters: BlockCounters,
}

impl Disk {
    /// The index, for reading (a poisoned lock is an error, not a panic).
    pub(crate) fn read_index(&self) -> Result<std::sync::RwLockReadGuard<'_, Blocks>, StoreError> {
        self.index
            .read()
            .map_err(|_| StoreError::Unavailable("block index lock poisoned".into()))
    }

    pub(crate) fn write_index(
        &self,
    ) -> Result<std::sync::RwLockWriteGuard<'_, Blocks>, StoreError> {
        self.index
            .write()
            .map_err(|_| StoreError::Unavailable("block index lock poisoned".into()))
    }

    /// Decodes `host`'s rows in `[start, end]` for the columns `keep` selects, one frame per
    /// section, oldest first. Stops once about `max_cells` values are read; then the second
    /// value is the last timestamp read, after which rows may be missing. A corrupt section is
    /// reported, forgotten and skipped.
    pub(crate) fn read_frames(
        &self,
        host: &str,
        start: i64,
        end: i64,
        max_cells: usize,
        keep: &mut impl FnMut(&str) -> bool,
    ) -> Result<FramesRead, StoreError> {
        self.with_sections(host, start, end, |refs| {
            let mut frames = Vec::with_capacity(refs.len());
            let mut cells = 0;
            for r in refs {
                let frame = match self.section_frame(r, start, end, keep) {
                    Ok(Some(f)) => f,
                    Ok(None) if self.read_index()?.has_block(r.seq) => continue,
                    Ok(None) => return Ok(None),
                    Err(StoreError::Corrupt { reason, .. }) => {
                        self.forget_corrupt(host, r, Damaged::Rows, &reason);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                cells += frame.cells();
                let last = frame.last();
                frames.push(frame);
                if cells >= max_cells {
                    return Ok(Some((frames, last)));
                }
            }
            Ok(Some((frames, None)))
        })
    }

    /// Runs `read` over `host`'s sections in `[start, end]`, oldest first. A block may be
    /// deleted between looking it up and reading it (a compaction replaced it, or retention
    /// expired it): `read` then answers `None`, and the lookup is made again (three tries).
    pub(crate) fn with_sections<T>(
        &self,
        host: &str,
        start: i64,
        end: i64,
        mut read: impl FnMut(&[SectionRef]) -> Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..3 {
            let refs = self.read_index()?.sections(host, start, end);
            if let Some(out) = read(&refs)? {
                return Ok(out);
            }
        }
        Err(StoreError::Unavailable(format!(
            "the blocks of {host} kept changing during a read; try again"
        )))
    }

    /// Every row of `refs` (one host's sections, oldest first), all columns, merged.
    pub(crate) fn whole(&self, host: &str, refs: &[SectionRef]) -> Result<Frame, StoreError> {
        let mut frames = Vec::with_capacity(refs.len());
        for r in refs {
            match self.section_frame(r, i64::MIN, i64::MAX, &mut |_| true) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => {
                    return Err(StoreError::Unavailable(format!(
                        "block {} went away while it was being merged",
                        r.path.display()
                    )));
                }
                Err(StoreError::Corrupt { reason, .. }) => {
                    // Its rows are lost already; the merged block goes on without them.
                    self.forget_corrupt(host, r, Damaged::Rows, &reason);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Frame::merge(frames))
    }

    /// One section's stored rollup, its minutes in `[start, end]` (metrics `keep` selects):
    /// `Ok(None)` when its block's file is gone, `Ok(Some(None))` when it has none (a block of
    /// the first version). Read through the cache like rows.
    pub(crate) fn section_rollup(
        &self,
        r: &SectionRef,
        start: i64,
        end: i64,
        keep: &mut impl FnMut(&str) -> bool,
    ) -> Result<Option<Option<Rollup>>, StoreError> {
        let Some(section) = r.section.rollup_section() else {
            return Ok(Some(None));
        };
        let part = SectionRef {
            seq: r.seq,
            path: r.path.clone(),
            section,
        };
        let Some(frame) = self.section_frame(&part, start, end, keep)? else {
            return Ok(None);
        };
        Rollup::from_frame(frame)
            .map(|r| Some(Some(r)))
            .map_err(|reason| StoreError::Corrupt {
                path: part.path.display().to_string(),
                reason,
            })
    }

    /// A section's layout from the cache, or read, checked, parsed and cached (then with the
    /// bytes read, for its columns); `None` when the block's file is gone.
    fn dir(&self, r: &SectionRef) -> Result<Option<DirRead>, StoreError> {
        if let Some(d) = self.cache.dir(r) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some((d, None)));
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let Some(bytes) = load(r)? else {
            return Ok(None);
        };
        let d = Arc::new(
            block::parse_section(&bytes).map_err(|reason| StoreError::Corrupt {
                path: r.path.display().to_string(),
                reason,
            })?,
        );
        self.cache
            .cache
            .insert((r.seq, r.section.offset, DIR), Decoded::Dir(d.clone()));
        Ok(Some((d, Some(bytes))))
    }

    /// One section's rows in `[start, end]` (the columns `keep` selects), through the cache:
    /// the file is read only if the layout or an asked column is not cached; `None` when its
    /// block's file is gone.
    pub(crate) fn section_frame(
        &self,
        r: &SectionRef,
        start: i64,
        end: i64,
        keep: &mut impl FnMut(&str) -> bool,
    ) -> Result<Option<Frame>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: r.path.display().to_string(),
            reason,
        };
        let Some((dir, mut bytes)) = self.dir(r)? else {
            return Ok(None);
        };
        let a = dir.ts.partition_point(|&t| t < start);
        let b = dir.ts.partition_point(|&t| t <= end);
        if a >= b {
            return Ok(Some(Frame::default()));
        }
        let mut cols = Vec::new();
        for (i, c) in dir.cols.iter().enumerate() {
            if !keep(&c.name) {
                continue;
            }
            let values = match self.cache.col(r, i) {
                Some(v) => {
                    self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    v
                }
                None => {
                    self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                    if bytes.is_none() {
                        bytes = load(r)?;
                    }
                    let Some(raw) = &bytes else {
                        return Ok(None);
                    };
                    let v = Arc::new(block::decode_column(raw, dir.ts.len(), c).map_err(corrupt)?);
                    self.cache
                        .cache
                        .insert((r.seq, r.section.offset, i as u32), Decoded::Col(v.clone()));
                    v
                }
            };
            let part = &values[a..b];
            if part.iter().any(|v| !v.is_nan()) {
                cols.push(FrameCol {
                    name: c.name.clone(),
                    unit: c.unit,
                    values: part.to_vec(),
                });
            }
        }
        Ok(Some(Frame {
            ts: dir.ts[a..b].to_vec(),
            cols,
        }))
    }

    /// Reports a damaged part of a section (counted, logged) and forgets it, so it is
    /// reported once and never read again: damaged rows are not served; a damaged rollup is
    /// made from the rows instead.
    pub(crate) fn forget_corrupt(&self, host: &str, r: &SectionRef, part: Damaged, reason: &str) {
        self.counters
            .corrupt_sections
            .fetch_add(1, Ordering::Relaxed);
        let what = match part {
            Damaged::Rows => "corrupt block section skipped; its rows are not served",
            Damaged::Rollup => "corrupt block rollup skipped; rolled up from its rows instead",
        };
        tracing::error!(path = %r.path.display(), host, offset = r.section.offset, reason, "{what}");
        if let Ok(mut b) = self.index.write() {
            match part {
                Damaged::Rows => b.drop_section(host, r.seq, r.section.offset),
                Damaged::Rollup => b.drop_rollup(host, r.seq, r.section.offset),
            }
        }
    }

    /// Whether a block holds `host`'s row at `ts` (through the sections' timestamps).
    pub(crate) fn holds(&self, host: &str, ts: i64) -> Result<bool, StoreError> {
        let refs = self.read_index()?.sections(host, ts, ts);
        for r in &refs {
            match self.dir(r) {
                Ok(Some((dir, _))) if dir.ts.binary_search(&ts).is_ok() => return Ok(true),
                Ok(_) => {}
                Err(StoreError::Corrupt { reason, .. }) => {
                    self.forget_corrupt(host, r, Damaged::Rows, &reason)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(min_ts: i64, max_ts: i64, bytes: u64) -> BlockIndex {
        BlockIndex {
            floor: max_ts + 1,
            bytes,
            hosts: vec![(
                Arc::from("h"),
                Section {
                    offset: 8,
                    len: 1,
                    crc: 0,
                    min_ts,
                    max_ts,
                    rows: 1,
                    values: 1,
                    rollup: None,
                },
            )],
            superseded: Vec::new(),
            v1: false,
        }
    }

    #[test]
    fn blocks_are_grouped_by_the_finished_day_of_their_newest_row_and_bounded_in_bytes() {
        const H: i64 = 3_600_000;
        let mut b = Blocks::default();
        let day = 20_000 * 24 * H;
        // Day 0: three blocks, one of them begun the day before. Day 1: one block. Day 2: two
        // blocks, but day 2 is not over.
        for (seq, (from, to)) in [
            (-2 * H, H),
            (H, 5 * H),
            (5 * H, 9 * H),
            (25 * H, 26 * H),
            (49 * H, 50 * H),
            (50 * H, 51 * H),
        ]
        .into_iter()
        .enumerate()
        {
            let seq = seq as u64 + 1;
            b.install(
                seq,
                PathBuf::from(format!("b{seq}")),
                index(day + from, day + to, 100),
            );
        }
        let before = day + 51 * H;
        // Day 1's block alone too: no compaction wrote it (it has no rollups yet).
        assert_eq!(
            b.compaction_groups(before, 1 << 30),
            vec![vec![1, 2, 3], vec![4]]
        );
        // At most 250 bytes a group: the first two, then the third alone.
        assert_eq!(
            b.compaction_groups(before, 250),
            vec![vec![1, 2], vec![3], vec![4]]
        );
        let merged = |from: i64, to: i64, bytes: u64, replaces: &[u64]| BlockIndex {
            superseded: replaces.to_vec(),
            ..index(from, to, bytes)
        };
        let old = b.replace(
            &[1, 2, 3],
            7,
            PathBuf::from("b7"),
            merged(day - 2 * H, day + 9 * H, 250, &[1, 2, 3]),
        );
        assert_eq!(old.len(), 3);
        assert_eq!(b.count(), 4);
        assert_eq!(
            b.sections("h", day, day + 9 * H).len(),
            1,
            "one section for the day"
        );
        assert_eq!(b.compaction_groups(before, 1 << 30), vec![vec![4]]);
        b.replace(
            &[4],
            8,
            PathBuf::from("b8"),
            merged(day + 25 * H, day + 26 * H, 100, &[4]),
        );
        assert!(
            b.compaction_groups(before, 1 << 30).is_empty(),
            "never twice"
        );
    }
}
