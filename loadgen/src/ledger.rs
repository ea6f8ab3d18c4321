//! The acknowledgement ledger: one bit per (host, snapshot) that a broker acknowledged.
//!
//! Simulated snapshots sit on a grid: host `h`'s snapshot `k` has timestamp
//! `start_ms + phase(h) + k × interval_ms`. So the ledger is a header that describes the grid and
//! one bitmap per host, bit `k` set once snapshot `k` was acknowledged (stored, or a
//! duplicate of something stored).
//!
//! File layout (version 1):
//! - bytes 0..8: magic `RWLEDGR1`;
//! - bytes 8..12: the header's length, u32 little-endian, then the header as JSON;
//! - from byte 4096: one bitmap per host, `words_per_host` little-endian u64 words each, bit
//!   `k % 64` of word `k / 64`.
//!
//! The bitmaps are a shared memory map of the file: a bit set by the generator is in the
//! kernel's page cache at once, so the ledger survives the generator's `kill -9` (not a power
//! failure, which is not what it is for). It costs a bit per snapshot: 7 days at 5 s for
//! 10,000 hosts is 151 MB of bitmap; 1 hour at 1 s for 10,000 hosts is 4.5 MB. The file is
//! sparse until bits are set; a disk that fills up under it stops the generator (SIGBUS), so
//! give it room. A writer holds an exclusive lock on the file, so a second generator cannot
//! truncate a ledger in use.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"RWLEDGR1";
/// Where the bitmaps start (the header must fit before it).
const BITMAP_OFFSET: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Ringwatch ledger: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("the ledger header is too large ({0} bytes; at most 4084): use a shorter host prefix")]
    HeaderTooLarge(usize),
    #[error("ledger {0} is in use by another loadgen (it holds the file's lock)")]
    InUse(PathBuf),
}

/// What the ledger describes: the simulated hosts and their snapshot grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Host `h`'s id is `host_prefix` + `h` zero-padded to `host_digits` digits.
    pub host_prefix: String,
    pub host_digits: usize,
    pub hosts: u32,
    /// Snapshot 0 of host 0, Unix ms.
    pub start_ms: i64,
    pub interval_ms: i64,
    /// Snapshots per host: bits per host in use.
    pub snapshots_per_host: u64,
    /// Metrics per snapshot (the first `metrics` of `values::metric_defs`).
    pub metrics: usize,
    /// `values::VALUES_VERSION` of the generator that wrote it.
    pub values_version: u32,
    /// When the run started (Unix ms), for people reading the file.
    pub created_ms: i64,
    /// `live` or `backfill`, for people reading the file.
    pub mode: String,
}

impl Header {
    /// Host `h`'s id.
    pub fn host_id(&self, h: u32) -> String {
        format!(
            "{}{:0width$}",
            self.host_prefix,
            h,
            width = self.host_digits
        )
    }

    /// Host `h`'s offset on the grid: hosts are spread evenly over one interval, as agents
    /// started at different moments are.
    pub fn phase_ms(&self, h: u32) -> i64 {
        (i64::from(h) * self.interval_ms) / i64::from(self.hosts.max(1))
    }

    /// The timestamp of host `h`'s snapshot `k`.
    pub fn ts(&self, h: u32, k: u64) -> i64 {
        self.start_ms + self.phase_ms(h) + k as i64 * self.interval_ms
    }

    /// The snapshot index of `ts` for host `h`, if `ts` is on the grid.
    pub fn index_of(&self, h: u32, ts: i64) -> Option<u64> {
        let offset = ts - self.start_ms - self.phase_ms(h);
        if offset < 0 || offset % self.interval_ms != 0 {
            return None;
        }
        let k = (offset / self.interval_ms) as u64;
        (k < self.snapshots_per_host).then_some(k)
    }

    /// The host index of `id`, if it is one of the ledger's hosts.
    pub fn host_index(&self, id: &str) -> Option<u32> {
        let digits = id.strip_prefix(&self.host_prefix)?;
        if digits.len() != self.host_digits {
            return None;
        }
        let h: u32 = digits.parse().ok()?;
        (h < self.hosts).then_some(h)
    }

    /// u64 words per host bitmap.
    pub fn words_per_host(&self) -> u64 {
        self.snapshots_per_host.div_ceil(64).max(1)
    }

    /// The bitmaps' size; `None` if a (corrupt) header would overflow it.
    fn bitmap_bytes(&self) -> Option<u64> {
        u64::from(self.hosts)
            .checked_mul(self.words_per_host())?
            .checked_mul(8)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The generator's side: creates the file and sets bits as acknowledgements arrive.
pub struct LedgerWriter {
    header: Header,
    map: MmapRaw,
    words_per_host: u64,
    path: PathBuf,
    /// Holds the file's exclusive lock while the writer lives.
    _file: File,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish()
    }
}

impl LedgerWriter {
    /// Creates (or truncates) the ledger at `path`: the header is written and synced, the
    /// bitmaps are zero (a sparse file until bits are set).
    pub fn create(path: &Path, header: Header) -> Result<LedgerWriter, LedgerError> {
        let json = serde_json::to_vec(&header).map_err(|e| LedgerError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if json.len() > BITMAP_OFFSET as usize - 12 {
            return Err(LedgerError::HeaderTooLarge(json.len()));
        }
        let Some(bitmap) = header.bitmap_bytes() else {
            return Err(LedgerError::Format {
                path: path.to_path_buf(),
                reason: "too many hosts × snapshots".into(),
            });
        };
        // Opened without truncating: a ledger another generator has mapped must not shrink
        // under it (that would crash it). Truncated once the lock is ours.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LedgerError::InUse(path.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(path)(e)),
        }
        file.set_len(0).map_err(io(path))?;
        let mut head = Vec::with_capacity(BITMAP_OFFSET as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(json.len() as u32).to_le_bytes());
        head.extend_from_slice(&json);
        head.resize(BITMAP_OFFSET as usize, 0);
        file.write_all(&head).map_err(io(path))?;
        file.set_len(BITMAP_OFFSET + bitmap).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        let map = MmapRaw::map_raw(&file).map_err(io(path))?;
        Ok(LedgerWriter {
            words_per_host: header.words_per_host(),
            header,
            map,
            path: path.to_path_buf(),
            _file: file,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that host `h`'s snapshot `k` was acknowledged. Out-of-grid indices are ignored.
    pub fn mark(&self, h: u32, k: u64) {
        if h >= self.header.hosts || k >= self.header.snapshots_per_host {
            return;
        }
        let word = u64::from(h) * self.words_per_host + k / 64;
        let offset = (BITMAP_OFFSET + word * 8) as usize;
        debug_assert!(offset + 8 <= self.map.len());
        // SAFETY: `offset + 8` is within the map (the file was sized for every host's words in
        // `create`, and `h`, `k` are checked above); the map starts page-aligned and
        // `BITMAP_OFFSET` and every word offset are multiples of 8, so the pointer is aligned
        // for u64; the map lives as long as `self`; every access to the bitmap region goes
        // through this atomic, so there are no conflicting non-atomic accesses in this
        // process.
        let cell = unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast::<u64>()) };
        cell.fetch_or((1u64 << (k % 64)).to_le(), Ordering::Relaxed);
    }

    /// Asks the kernel to write the bitmaps to disk (at the end of a run).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.map.flush().map_err(io(&self.path))
    }
}

/// The checker's side: a view of a ledger file (which a generator may still be writing).
pub struct LedgerReader {
    header: Header,
    map: MmapRaw,
    words_per_host: u64,
}

impl std::fmt::Debug for LedgerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerReader")
            .field("header", &self.header)
            .finish()
    }
}

impl LedgerReader {
    pub fn open(path: &Path) -> Result<LedgerReader, LedgerError> {
        let format = |reason: String| LedgerError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = File::open(path).map_err(io(path))?;
        let mut head = [0u8; 12];
        file.read_exact(&mut head)
            .map_err(|e| format(format!("too short for a header ({e})")))?;
        if &head[..8] != MAGIC {
            return Err(format("wrong magic bytes".into()));
        }
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if len > BITMAP_OFFSET as usize - 12 {
            return Err(format(format!("header length {len} too large")));
        }
        let mut json = vec![0u8; len];
        file.read_exact(&mut json)
            .map_err(|e| format(format!("truncated header ({e})")))?;
        let header: Header =
            serde_json::from_slice(&json).map_err(|e| format(format!("unreadable header: {e}")))?;
        if header.interval_ms <= 0 {
            return Err(format(format!("interval_ms {}", header.interval_ms)));
        }
        let need = header
            .bitmap_bytes()
            .and_then(|b| b.checked_add(BITMAP_OFFSET))
            .ok_or_else(|| {
                format(format!(
                    "{} hosts × {} snapshots overflow",
                    header.hosts, header.snapshots_per_host
                ))
            })?;
        let have = file.metadata().map_err(io(path))?.len();
        if have < need {
            return Err(format(format!(
                "{have} bytes, but its header needs {need} for {} hosts",
                header.hosts
            )));
        }
        // Mapped read-only and read word by word with volatile loads (`word`): a generator in
        // another process may still be setting bits, which can only make a bit read as set a
        // little earlier or later.
        let map = memmap2::MmapOptions::new()
            .map_raw_read_only(&file)
            .map_err(io(path))?;
        Ok(LedgerReader {
            words_per_host: header.words_per_host(),
            header,
            map,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Word `w` of host `h`'s bitmap.
    fn word(&self, h: u32, w: u64) -> u64 {
        let offset = BITMAP_OFFSET + (u64::from(h) * self.words_per_host + w) * 8;
        if offset + 8 > self.map.len() as u64 {
            return 0;
        }
        // SAFETY: `offset + 8` is within the map (checked above); the map is page-aligned and
        // the offset a multiple of 8, so the pointer is aligned for u64 and valid for reads as
        // long as `self` holds the map. The memory may change under us (a generator in another
        // process setting bits with aligned 8-byte stores), hence a volatile read.
        let word = unsafe {
            std::ptr::read_volatile(self.map.as_ptr().add(offset as usize).cast::<u64>())
        };
        u64::from_le(word)
    }

    /// Whether host `h`'s snapshot `k` was acknowledged.
    pub fn acked(&self, h: u32, k: u64) -> bool {
        if h >= self.header.hosts || k >= self.header.snapshots_per_host {
            return false;
        }
        self.word(h, k / 64) & (1 << (k % 64)) != 0
    }

    /// How many of host `h`'s snapshots were acknowledged.
    pub fn acked_count(&self, h: u32) -> u64 {
        if h >= self.header.hosts {
            return 0;
        }
        (0..self.words_per_host)
            .map(|w| u64::from(self.word(h, w).count_ones()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(hosts: u32, k: u64) -> Header {
        Header {
            host_prefix: "lg-".into(),
            host_digits: 4,
            hosts,
            start_ms: 1_700_000_000_000,
            interval_ms: 1000,
            snapshots_per_host: k,
            metrics: 60,
            values_version: crate::values::VALUES_VERSION,
            created_ms: 1_700_000_000_000,
            mode: "live".into(),
        }
    }

    #[test]
    fn the_grid_maps_both_ways() {
        let h = header(10, 100);
        assert_eq!(h.host_id(7), "lg-0007");
        assert_eq!(h.host_index("lg-0007"), Some(7));
        assert_eq!(h.host_index("lg-007"), None);
        assert_eq!(h.host_index("lg-0010"), None);
        assert_eq!(h.host_index("xx-0001"), None);
        assert_eq!(h.phase_ms(5), 500);
        let ts = h.ts(5, 42);
        assert_eq!(ts, 1_700_000_000_000 + 500 + 42_000);
        assert_eq!(h.index_of(5, ts), Some(42));
        assert_eq!(h.index_of(5, ts + 1), None, "off the grid");
        assert_eq!(h.index_of(5, h.ts(5, 100)), None, "past the last snapshot");
        assert_eq!(h.index_of(5, h.start_ms - 1000), None, "before the first");
    }

    #[test]
    fn bits_set_are_read_back_and_the_file_is_about_a_bit_per_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let w = LedgerWriter::create(&path, header(100, 3600)).unwrap();
        for h in 0..100 {
            for k in (0..3600).filter(|k| (k + u64::from(h)) % 3 == 0) {
                w.mark(h, k);
            }
        }
        w.mark(100, 0); // out of range: ignored
        w.mark(0, 3600);
        // No flush and no drop: what a killed generator leaves behind is readable.
        let r = LedgerReader::open(&path).unwrap();
        assert_eq!(r.header(), w.header());
        for h in [0, 1, 50, 99] {
            for k in [0, 1, 2, 63, 64, 65, 3599] {
                assert_eq!(r.acked(h, k), (k + u64::from(h)) % 3 == 0, "{h} {k}");
            }
            assert_eq!(r.acked_count(h), 1200);
        }
        assert!(!r.acked(100, 0));
        let size = std::fs::metadata(&path).unwrap().len();
        // 100 hosts × 3600 snapshots = 360,000 bits = 45,000 bytes, plus a 4 KiB header.
        assert_eq!(size, 4096 + 100 * 57 * 8);
        drop(w);
    }

    #[test]
    fn bits_are_readable_without_a_flush_or_an_unmap() {
        // What a writer leaves without msync or munmap is visible through a new handle (the
        // end-to-end test kills a real generator with SIGKILL and verifies its ledger).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let w = LedgerWriter::create(&path, header(4, 640)).unwrap();
        w.mark(3, 639);
        std::mem::forget(w);
        let r = LedgerReader::open(&path).unwrap();
        assert!(r.acked(3, 639));
        assert_eq!(r.acked_count(3), 1);
    }

    #[test]
    fn a_ledger_in_use_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let first = LedgerWriter::create(&path, header(2, 64)).unwrap();
        first.mark(1, 5);
        let second = LedgerWriter::create(&path, header(2, 64));
        assert!(matches!(second, Err(LedgerError::InUse(_))), "{second:?}");
        // The first writer's file is untouched.
        assert!(LedgerReader::open(&path).unwrap().acked(1, 5));
        drop(first);
        LedgerWriter::create(&path, header(2, 64)).unwrap();
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"not a ledger at all").unwrap();
        let e = LedgerReader::open(&path).unwrap_err().to_string();
        assert!(e.contains("wrong magic"), "{e}");
        let w = LedgerWriter::create(&path, header(10, 100)).unwrap();
        drop(w);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(4096 + 10).unwrap();
        let e = LedgerReader::open(&path).unwrap_err().to_string();
        assert!(e.contains("needs"), "{e}");
        let e = LedgerReader::open(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        let mut h = header(1, 1);
        h.host_prefix = "p".repeat(5000);
        assert!(matches!(
            LedgerWriter::create(&path, h),
            Err(LedgerError::HeaderTooLarge(_))
        ));
    }
}
