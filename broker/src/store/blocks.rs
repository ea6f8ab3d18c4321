//! The embedded store's blocks on disk: which block holds which host's rows, reading sections
//! through a cache bounded in bytes, and retention by whole blocks.
//!
//! Blocks live in `<data dir>/blocks/block-<seq>.rwb` (format in `block.rs`). At start every
//! block's index is read; a block whose footer or index is damaged is renamed `*.corrupt`,
//! reported (log and `ringwatch_broker_store_corrupt_blocks_total`) and never read. A section
//! whose CRC fails on read is reported the same way, dropped from the index and skipped.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use foldhash::HashMap;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::{self, BlockIndex, Section};
use super::frame::Frame;
use crate::error::StoreError;

/// Counters of the blocks, for /metrics.
#[derive(Debug, Default)]
pub struct BlockCounters {
    pub corrupt_blocks: AtomicU64,
    pub corrupt_sections: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub written: AtomicU64,
    pub written_bytes: AtomicU64,
    pub expired: AtomicU64,
}

/// One block on disk.
struct BlockFile {
    path: PathBuf,
    max_ts: i64,
    bytes: u64,
    values: u64,
    hosts: Vec<Arc<str>>,
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
    /// Values held in all blocks.
    values: u64,
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
        for seq in seqs {
            let path = block_path(dir, seq);
            blocks.next_seq = blocks.next_seq.max(seq + 1);
            match block::read_index(&path) {
                Ok(index) => blocks.install(seq, path, index),
                Err(StoreError::Corrupt { reason, .. }) => {
                    counters.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
                    let aside = path.with_extension("rwb.corrupt");
                    tracing::error!(path = %path.display(), %reason, aside = %aside.display(), "corrupt block set aside; its rows are not served");
                    fs::rename(&path, &aside).map_err(|e| StoreError::io(&path, e))?;
                }
                Err(e) => return Err(e),
            }
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
                max_ts,
                bytes: index.bytes,
                values,
                hosts,
            },
        );
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

    /// Forgets a section found corrupt, so it is reported once and never read again.
    pub(crate) fn drop_section(&mut self, host: &str, seq: u64, offset: u64) {
        if let Some(list) = self.by_host.get_mut(host) {
            list.retain(|(q, s)| !(*q == seq && s.offset == offset));
        }
    }

    /// Removes the blocks whose every row is older than `cutoff` from the index and returns
    /// their paths, for the caller to delete.
    pub(crate) fn expire(&mut self, cutoff: i64) -> Vec<PathBuf> {
        let old: Vec<u64> = self
            .files
            .iter()
            .filter(|(_, f)| f.max_ts < cutoff)
            .map(|(&seq, _)| seq)
            .collect();
        let mut paths = Vec::with_capacity(old.len());
        for seq in old {
            let Some(file) = self.files.remove(&seq) else {
                continue;
            };
            self.bytes -= file.bytes;
            self.values -= file.values;
            for host in &file.hosts {
                if let Some(list) = self.by_host.get_mut(host) {
                    list.retain(|(q, _)| *q != seq);
                    if list.is_empty() {
                        self.by_host.remove(host);
                    }
                }
            }
            paths.push(file.path);
        }
        paths
    }
}

/// Weighs cached sections by their bytes.
#[derive(Clone)]
struct ByBytes;

impl Weighter<(u64, u64), Arc<Vec<u8>>> for ByBytes {
    fn weight(&self, _: &(u64, u64), v: &Arc<Vec<u8>>) -> u64 {
        v.len() as u64 + 64
    }
}

/// Sections read from disk (CRC already checked), kept compressed, bounded in bytes.
pub(crate) struct SectionCache {
    cache: Cache<(u64, u64), Arc<Vec<u8>>, ByBytes>,
}

impl SectionCache {
    pub(crate) fn new(bytes: u64) -> SectionCache {
        let items = (bytes / (16 << 10)).clamp(16, 1 << 20) as usize;
        SectionCache {
            cache: Cache::with_weighter(items, bytes.max(1), ByBytes),
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// The section's bytes, from the cache or the disk. A file gone (retention deleted its
    /// block after the caller looked it up) is `Ok(None)`.
    pub(crate) fn get(
        &self,
        r: &SectionRef,
        counters: &BlockCounters,
    ) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let key = (r.seq, r.section.offset);
        if let Some(hit) = self.cache.get(&key) {
            counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(hit));
        }
        counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        match block::read_section(&r.path, &r.section) {
            Ok(bytes) => {
                let bytes = Arc::new(bytes);
                self.cache.insert(key, bytes.clone());
                Ok(Some(bytes))
            }
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

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
    ) -> Result<(Vec<Frame>, Option<i64>), StoreError> {
        let refs = self.read_index()?.sections(host, start, end);
        let mut frames = Vec::with_capacity(refs.len());
        let mut cells = 0;
        for r in &refs {
            let decoded = match self.cache.get(r, &self.counters) {
                Ok(None) => continue,
                Ok(Some(bytes)) => {
                    block::decode_section(&bytes, start, end, keep).map_err(|reason| {
                        StoreError::Corrupt {
                            path: r.path.display().to_string(),
                            reason,
                        }
                    })
                }
                Err(e) => Err(e),
            };
            let frame = match decoded {
                Ok(f) => f,
                Err(StoreError::Corrupt { path, reason }) => {
                    self.forget_corrupt(host, r, &path, &reason);
                    continue;
                }
                Err(e) => return Err(e),
            };
            cells += frame.cells();
            let last = frame.last();
            frames.push(frame);
            if cells >= max_cells {
                return Ok((frames, last));
            }
        }
        Ok((frames, None))
    }

    fn forget_corrupt(&self, host: &str, r: &SectionRef, path: &str, reason: &str) {
        self.counters
            .corrupt_sections
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            path,
            host,
            offset = r.section.offset,
            reason,
            "corrupt block section skipped; its rows are not served"
        );
        if let Ok(mut b) = self.index.write() {
            b.drop_section(host, r.seq, r.section.offset);
        }
    }

    /// Whether a block holds `host`'s row at `ts` (through the sections' timestamps).
    pub(crate) fn holds(&self, host: &str, ts: i64) -> Result<bool, StoreError> {
        let refs = self.read_index()?.sections(host, ts, ts);
        for r in &refs {
            let bytes = match self.cache.get(r, &self.counters) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(StoreError::Corrupt { path, reason }) => {
                    self.forget_corrupt(host, r, &path, &reason);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match block::section_timestamps(&bytes) {
                Ok(held) if held.binary_search(&ts).is_ok() => return Ok(true),
                Ok(_) => {}
                Err(reason) => self.forget_corrupt(host, r, &r.path.display().to_string(), &reason),
            }
        }
        Ok(false)
    }
}
