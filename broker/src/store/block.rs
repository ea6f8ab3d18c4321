//! One immutable block file of the embedded store: the rows of many hosts cut from the head at
//! once, each host's rows in a section of compressed columns.
//!
//! ```text
//! "RWBLOCK2"
//! section*            one per host: rows u32, columns u32,
//!                     timestamps (len u32 + pco i64, delta-of-delta),
//!                     per column: name (u16 len + UTF-8), unit i32,
//!                                 presence u8 (0 every row, 1 bitmap of ceil(rows/8) bytes),
//!                                 values (len u32 + pco f64 of the present values)
//!                     then, if it has one, the host's rollup in the same form: one row per
//!                     bucket, per metric four columns of its name (min, max, sum, count;
//!                     `rollup.rs`)
//! index               count u32, per host: id (u16 len + UTF-8), offset u64, len u32, crc u32,
//!                     min_ts i64, max_ts i64, rows u32, values u32,
//!                     rollup offset u64, len u32 (0: none), crc u32, rows u32, width_ms u32;
//!                     superseded count u32, per block it replaces: its sequence number u64
//! footer (40 bytes)   index offset u64, index len u32, index crc u32, floor i64,
//!                     created_ms i64, "RWBLKEND"
//! ```
//!
//! Every section and the index carry a CRC32 checked on read, so a corrupt block is detected
//! and never served as data. A block is written atomically: a temporary file, fsync, rename,
//! then fsync of the folder. `floor` is the cut boundary: when the block was written, every row
//! older than it had been cut to this block or an earlier one.
//!
//! Rollups are written by compactions (a finished day's blocks merged), at a bucket width
//! chosen by how dense the host's rows are ([`rollup_width`]); a cut writes none. Blocks of the
//! first version ("RWBLOCK1": no rollup fields in the index) are read as they are, and the next
//! compaction writes them again in this version.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pco::standalone::{simple_compress, simple_decompress};
use pco::{ChunkConfig, DeltaSpec};

use super::frame::{Frame, FrameCol};
use super::rollup::{ROLLUP_MS, Rollup, bucket};
use crate::error::StoreError;

const MAGIC: &[u8; 8] = b"RWBLOCK2";
/// The first version, without rollups: still read.
const MAGIC_V1: &[u8; 8] = b"RWBLOCK1";
const END: &[u8; 8] = b"RWBLKEND";
const FOOTER: usize = 40;
/// A section or index larger than this is corruption, not data.
const MAX_PART: u64 = 1 << 30;

/// Where one host's rows sit in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) rows: u32,
    /// Values held (absent ones not counted): samples, for sizing.
    pub(crate) values: u32,
    /// The host's rollup, written right after its rows (none in a first-version block).
    pub(crate) rollup: Option<Part>,
}

/// Where a section's rollup lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
    /// Buckets it holds.
    pub(crate) rows: u32,
    /// Width of its buckets: a whole number of rollup minutes.
    pub(crate) width_ms: u32,
}

/// The width of the rollup buckets a host's rows get in a block, if any: one minute where
/// they are 30 or more a minute (every 2 s or more often), ten minutes where 6 or more a
/// minute (every 10 s), none where sparser (then the rows cost little more to read than a
/// rollup would, and a rollup would cost more on disk than it saves). `cargo bench --bench
/// codec` measures the cost: a day at 5 s in 10-minute buckets adds 5 % to the rows' bytes, in
/// 1-minute buckets 31 %; at 1 s, 1-minute buckets add 7 %.
pub(crate) fn rollup_width(frame: &Frame) -> Option<i64> {
    let (first, last) = (frame.first()?, frame.last()?);
    let minutes = (last - first) / ROLLUP_MS + 1;
    let rows = frame.ts.len() as i64;
    if rows >= 30 * minutes {
        Some(ROLLUP_MS)
    } else if rows >= 6 * minutes {
        Some(10 * ROLLUP_MS)
    } else {
        None
    }
}

impl Section {
    /// Its rollup, addressed as a section of its own (rows are minute starts).
    pub(crate) fn rollup_section(&self) -> Option<Section> {
        let p = self.rollup.as_ref()?;
        let width = i64::from(p.width_ms);
        Some(Section {
            offset: p.offset,
            len: p.len,
            crc: p.crc,
            min_ts: bucket(self.min_ts, width),
            max_ts: bucket(self.max_ts, width),
            rows: p.rows,
            values: 0,
            rollup: None,
        })
    }
}

/// A block's index, as read from its footer.
#[derive(Debug, Clone)]
pub(crate) struct BlockIndex {
    pub(crate) floor: i64,
    pub(crate) bytes: u64,
    pub(crate) hosts: Vec<(Arc<str>, Section)>,
    /// Blocks this one replaces (a compaction merged them into it): deleted at start if a
    /// crash left them behind.
    pub(crate) superseded: Vec<u64>,
    /// Written by the first version (no rollups): the next compaction writes it again.
    pub(crate) v1: bool,
}

impl BlockIndex {
    pub(crate) fn max_ts(&self) -> i64 {
        self.hosts
            .iter()
            .map(|(_, s)| s.max_ts)
            .max()
            .unwrap_or(i64::MIN)
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Encodes one host's rows (at least one) as a section.
pub(crate) fn encode_section(frame: &Frame) -> Result<Vec<u8>, StoreError> {
    let rows = frame.ts.len();
    let pco_err = |e: pco::errors::PcoError| StoreError::Unavailable(format!("block codec: {e}"));
    let ts_cfg = ChunkConfig::default().with_delta_spec(DeltaSpec::TryConsecutive(2));
    let mut out = Vec::with_capacity(64 + rows / 2 + frame.cols.len() * (rows + 16));
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    let cols: Vec<&FrameCol> = frame
        .cols
        .iter()
        .filter(|c| c.values.iter().any(|v| !v.is_nan()))
        .collect();
    out.extend_from_slice(&(cols.len() as u32).to_le_bytes());
    let ts = simple_compress(&frame.ts, &ts_cfg).map_err(pco_err)?;
    out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    out.extend_from_slice(&ts);
    // Level 4: within 1 % of level 8's size on agent-like columns at about twice its speed
    // (benches/codec.rs; BENCHMARKS.md).
    let values_cfg = ChunkConfig::default().with_compression_level(4);
    let mut present = Vec::with_capacity(rows);
    for c in cols {
        let name = c.name.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&c.unit.to_le_bytes());
        present.clear();
        present.extend(c.values.iter().copied().filter(|v| !v.is_nan()));
        if present.len() == rows {
            out.push(0);
        } else {
            out.push(1);
            let mut bits = vec![0u8; rows.div_ceil(8)];
            for (i, v) in c.values.iter().enumerate() {
                if !v.is_nan() {
                    bits[i / 8] |= 1 << (i % 8);
                }
            }
            out.extend_from_slice(&bits);
        }
        let packed = simple_compress(&present, &values_cfg).map_err(pco_err)?;
        out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        out.extend_from_slice(&packed);
    }
    Ok(out)
}

/// A cursor over a section's bytes that fails, never panics, on short input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// A section's layout: its timestamps decoded, and where each column's bytes lie (so a read
/// decodes only the columns it asks for).
#[derive(Debug, Clone)]
pub(crate) struct SectionDir {
    pub(crate) ts: Vec<i64>,
    pub(crate) cols: Vec<ColDir>,
}

/// One column of a section: its name and unit, and byte ranges within the section.
#[derive(Debug, Clone)]
pub(crate) struct ColDir {
    pub(crate) name: Arc<str>,
    pub(crate) unit: i32,
    bitmap: Option<std::ops::Range<usize>>,
    packed: std::ops::Range<usize>,
}

impl SectionDir {
    /// Bytes it takes in memory (for the cache's weight).
    pub(crate) fn weight(&self) -> u64 {
        (self.ts.len() * 8 + self.cols.iter().map(|c| c.name.len() + 64).sum::<usize>()) as u64
    }
}

/// Reads a section's layout and decodes its timestamps.
pub(crate) fn parse_section(bytes: &[u8]) -> Result<SectionDir, String> {
    let mut r = Reader { buf: bytes };
    let short = || "section ends early".to_string();
    let at = |r: &Reader| bytes.len() - r.buf.len();
    let rows = r.u32().ok_or_else(short)? as usize;
    let ncols = r.u32().ok_or_else(short)? as usize;
    let ts_len = r.u32().ok_or_else(short)? as usize;
    let ts: Vec<i64> =
        simple_decompress(r.take(ts_len).ok_or_else(short)?).map_err(|e| e.to_string())?;
    if ts.len() != rows {
        return Err(format!("{} timestamps for {rows} rows", ts.len()));
    }
    let mut cols = Vec::with_capacity(ncols.min(1 << 16));
    for _ in 0..ncols {
        let name: Arc<str> = Arc::from(r.str().ok_or_else(short)?);
        let unit = r.i32().ok_or_else(short)?;
        let bitmap = match r.u8().ok_or_else(short)? {
            0 => None,
            1 => {
                let from = at(&r);
                r.take(rows.div_ceil(8)).ok_or_else(short)?;
                Some(from..at(&r))
            }
            other => return Err(format!("unknown presence kind {other}")),
        };
        let len = r.u32().ok_or_else(short)? as usize;
        let from = at(&r);
        r.take(len).ok_or_else(short)?;
        cols.push(ColDir {
            name,
            unit,
            bitmap,
            packed: from..at(&r),
        });
    }
    Ok(SectionDir { ts, cols })
}

/// Decodes one column of a section over all its rows (NaN where absent).
pub(crate) fn decode_column(bytes: &[u8], rows: usize, c: &ColDir) -> Result<Vec<f64>, String> {
    let part = |r: &std::ops::Range<usize>| {
        bytes
            .get(r.clone())
            .ok_or_else(|| "column outside its section".to_string())
    };
    let present: Vec<f64> = simple_decompress(part(&c.packed)?).map_err(|e| e.to_string())?;
    match &c.bitmap {
        None if present.len() == rows => Ok(present),
        None => Err(format!("{} values for {rows} rows", present.len())),
        Some(range) => {
            let bits = part(range)?;
            let mut values = vec![f64::NAN; rows];
            let mut next = present.iter();
            for (i, slot) in values.iter_mut().enumerate() {
                if bits[i / 8] & (1 << (i % 8)) != 0 {
                    *slot = *next.next().ok_or("fewer values than the bitmap marks")?;
                }
            }
            Ok(values)
        }
    }
}

/// Decodes a section's rows in `[start, end]`, only the columns `keep` selects (the others are
/// skipped undecoded).
pub(crate) fn decode_section(
    bytes: &[u8],
    start: i64,
    end: i64,
    keep: &mut impl FnMut(&str) -> bool,
) -> Result<Frame, String> {
    let dir = parse_section(bytes)?;
    let a = dir.ts.partition_point(|&t| t < start);
    let b = dir.ts.partition_point(|&t| t <= end);
    let mut cols = Vec::new();
    for c in &dir.cols {
        if a >= b || !keep(&c.name) {
            continue;
        }
        let values = decode_column(bytes, dir.ts.len(), c)?[a..b].to_vec();
        if values.iter().any(|v| !v.is_nan()) {
            cols.push(FrameCol {
                name: c.name.clone(),
                unit: c.unit,
                values,
            });
        }
    }
    Ok(Frame {
        ts: dir.ts[a..b].to_vec(),
        cols,
    })
}

/// What a block is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A cut of the head: rows only.
    Cut,
    /// A compaction's merged block: rows and, where dense enough, their rollups.
    Merged,
    /// The first version ("RWBLOCK1"), for tests of reading what an earlier release wrote.
    #[cfg(test)]
    V1,
}

impl Kind {
    /// Written in this version of the format (with rollup fields in the index).
    fn v2(self) -> bool {
        match self {
            Kind::Cut | Kind::Merged => true,
            #[cfg(test)]
            Kind::V1 => false,
        }
    }
}

/// One host's section as bytes: its rows, encoded, and its rollup if it has one. What a block
/// is written from, and what a hand-off ships as it is (never re-encoded).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawSection {
    pub(crate) rows_bytes: Vec<u8>,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) rows: u32,
    pub(crate) values: u32,
    pub(crate) rollup: Option<RawRollup>,
}

/// A section's rollup as bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRollup {
    pub(crate) bytes: Vec<u8>,
    pub(crate) rows: u32,
    pub(crate) width_ms: u32,
}

impl RawSection {
    /// Encodes one host's rows (and, with `rollups`, their rollup where the rows are dense
    /// enough); `None` for no rows.
    pub(crate) fn encode(frame: &Frame, rollups: bool) -> Result<Option<RawSection>, StoreError> {
        if frame.is_empty() {
            return Ok(None);
        }
        let rows_bytes = encode_section(frame)?;
        let rollup = match rollup_width(frame).filter(|_| rollups) {
            Some(width) => {
                let r = Rollup::of(frame, width);
                Some(RawRollup {
                    bytes: encode_section(&r.to_frame())?,
                    rows: r.ts.len() as u32,
                    width_ms: width as u32,
                })
            }
            None => None,
        };
        Ok(Some(RawSection {
            rows_bytes,
            min_ts: frame.first().unwrap_or(i64::MIN),
            max_ts: frame.last().unwrap_or(i64::MIN),
            rows: frame.ts.len() as u32,
            values: frame
                .cols
                .iter()
                .map(|c| c.values.iter().filter(|v| !v.is_nan()).count() as u32)
                .sum(),
            rollup,
        }))
    }

    /// Checks bytes that came from elsewhere (a hand-off) before they are written as a block:
    /// the CRCs the sender computed, and every column decoding to the rows and values it
    /// claims. Returns the reason it is refused.
    pub(crate) fn verify(&self, crc: u32, rollup_crc: u32) -> Result<(), String> {
        if crc32fast::hash(&self.rows_bytes) != crc {
            return Err("rows CRC mismatch".into());
        }
        let dir = parse_section(&self.rows_bytes)?;
        if dir.ts.len() != self.rows as usize || self.rows == 0 {
            return Err(format!("{} rows, {} claimed", dir.ts.len(), self.rows));
        }
        if dir.ts.windows(2).any(|w| w[0] >= w[1]) {
            return Err("timestamps out of order".into());
        }
        if dir.ts.first() != Some(&self.min_ts) || dir.ts.last() != Some(&self.max_ts) {
            return Err("first or last timestamp differs from the claimed range".into());
        }
        let mut values = 0usize;
        for c in &dir.cols {
            let col = decode_column(&self.rows_bytes, dir.ts.len(), c)?;
            values += col.iter().filter(|v| !v.is_nan()).count();
        }
        if values != self.values as usize {
            return Err(format!("{values} values, {} claimed", self.values));
        }
        if let Some(r) = &self.rollup {
            if crc32fast::hash(&r.bytes) != rollup_crc {
                return Err("rollup CRC mismatch".into());
            }
            let width = i64::from(r.width_ms);
            if width < ROLLUP_MS || width % ROLLUP_MS != 0 {
                return Err(format!("rollup buckets of {width} ms"));
            }
            let dir = parse_section(&r.bytes)?;
            if dir.ts.len() != r.rows as usize {
                return Err(format!("{} rollup rows, {} claimed", dir.ts.len(), r.rows));
            }
            for c in &dir.cols {
                decode_column(&r.bytes, dir.ts.len(), c)?;
            }
        }
        Ok(())
    }

    /// Bytes it takes in a block.
    pub(crate) fn len(&self) -> u64 {
        self.rows_bytes.len() as u64 + self.rollup.as_ref().map_or(0, |r| r.bytes.len() as u64)
    }
}

/// Writes a block from `(host, rows)` pairs: a temporary file, fsync, rename to `path`, fsync of
/// the folder. A merged block's rollups are made from the rows as they are written. Returns its
/// index.
pub(crate) fn write_block(
    kind: Kind,
    path: &Path,
    floor: i64,
    created_ms: i64,
    superseded: &[u64],
    hosts: impl Iterator<Item = Result<(Arc<str>, Frame), StoreError>>,
) -> Result<BlockIndex, StoreError> {
    let rollups = kind == Kind::Merged;
    let sections = hosts.filter_map(move |item| match item {
        Ok((host, frame)) => match RawSection::encode(&frame, rollups) {
            Ok(Some(raw)) => Some(Ok((host, raw))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        },
        Err(e) => Some(Err(e)),
    });
    write_sections(kind.v2(), path, floor, created_ms, superseded, sections)
}

/// Writes a block from sections already encoded (atomically, as [`write_block`]).
pub(crate) fn write_sections(
    v2: bool,
    path: &Path,
    floor: i64,
    created_ms: i64,
    superseded: &[u64],
    sections: impl Iterator<Item = Result<(Arc<str>, RawSection), StoreError>>,
) -> Result<BlockIndex, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_path(path);
    let io = |e| StoreError::io(&tmp, e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let written = (|| {
        w.write_all(if v2 { MAGIC } else { MAGIC_V1 }).map_err(io)?;
        let mut offset = MAGIC.len() as u64;
        let mut index = Vec::new();
        for item in sections {
            let (host, raw) = item?;
            w.write_all(&raw.rows_bytes).map_err(io)?;
            let body_len = raw.rows_bytes.len() as u64;
            let rollup = match raw.rollup.filter(|_| v2) {
                Some(r) => {
                    w.write_all(&r.bytes).map_err(io)?;
                    Some(Part {
                        offset: offset + body_len,
                        len: r.bytes.len() as u32,
                        crc: crc32fast::hash(&r.bytes),
                        rows: r.rows,
                        width_ms: r.width_ms,
                    })
                }
                None => None,
            };
            let next = offset + body_len + rollup.as_ref().map_or(0, |p| u64::from(p.len));
            index.push((
                host,
                Section {
                    offset,
                    len: body_len as u32,
                    crc: crc32fast::hash(&raw.rows_bytes),
                    min_ts: raw.min_ts,
                    max_ts: raw.max_ts,
                    rows: raw.rows,
                    values: raw.values,
                    rollup,
                },
            ));
            offset = next;
        }
        let mut ix = Vec::with_capacity(index.len() * 64);
        ix.extend_from_slice(&(index.len() as u32).to_le_bytes());
        for (host, s) in &index {
            let id = host.as_bytes();
            ix.extend_from_slice(&(id.len() as u16).to_le_bytes());
            ix.extend_from_slice(id);
            ix.extend_from_slice(&s.offset.to_le_bytes());
            ix.extend_from_slice(&s.len.to_le_bytes());
            ix.extend_from_slice(&s.crc.to_le_bytes());
            ix.extend_from_slice(&s.min_ts.to_le_bytes());
            ix.extend_from_slice(&s.max_ts.to_le_bytes());
            ix.extend_from_slice(&s.rows.to_le_bytes());
            ix.extend_from_slice(&s.values.to_le_bytes());
            if v2 {
                let p = s.rollup.clone().unwrap_or(Part {
                    offset: 0,
                    len: 0,
                    crc: 0,
                    rows: 0,
                    width_ms: 0,
                });
                ix.extend_from_slice(&p.offset.to_le_bytes());
                ix.extend_from_slice(&p.len.to_le_bytes());
                ix.extend_from_slice(&p.crc.to_le_bytes());
                ix.extend_from_slice(&p.rows.to_le_bytes());
                ix.extend_from_slice(&p.width_ms.to_le_bytes());
            }
        }
        ix.extend_from_slice(&(superseded.len() as u32).to_le_bytes());
        for seq in superseded {
            ix.extend_from_slice(&seq.to_le_bytes());
        }
        w.write_all(&ix).map_err(io)?;
        let mut footer = Vec::with_capacity(FOOTER);
        footer.extend_from_slice(&offset.to_le_bytes());
        footer.extend_from_slice(&(ix.len() as u32).to_le_bytes());
        footer.extend_from_slice(&crc32fast::hash(&ix).to_le_bytes());
        footer.extend_from_slice(&floor.to_le_bytes());
        footer.extend_from_slice(&created_ms.to_le_bytes());
        footer.extend_from_slice(END);
        w.write_all(&footer).map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        crate::failpoint::hit("block-before-fsync");
        file.sync_all().map_err(io)?;
        Ok(BlockIndex {
            floor,
            bytes: offset + ix.len() as u64 + FOOTER as u64,
            hosts: index,
            superseded: superseded.to_vec(),
            v1: !v2,
        })
    })();
    let index = match written {
        Ok(ix) => ix,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    crate::failpoint::hit("block-before-rename");
    fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    crate::failpoint::hit("block-before-dir-fsync");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))?;
    Ok(index)
}

/// The temporary name a block is written under before its rename.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{name}"))
}

/// Reads a block's index from its footer, checking sizes and the CRC.
pub(crate) fn read_index(path: &Path) -> Result<BlockIndex, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let size = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    if size < (MAGIC.len() + FOOTER) as u64 {
        return Err(corrupt(
            path,
            format!("{size} bytes is too short for a block"),
        ));
    }
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| StoreError::io(path, e))?;
    let v2 = match &head {
        MAGIC => true,
        MAGIC_V1 => false,
        _ => return Err(corrupt(path, "not a block file (bad magic)")),
    };
    let mut footer = [0u8; FOOTER];
    file.read_exact_at(&mut footer, size - FOOTER as u64)
        .map_err(|e| StoreError::io(path, e))?;
    let mut f = Reader { buf: &footer };
    // The footer's creation time is for people reading a block; nothing here needs it.
    let (ix_off, ix_len, ix_crc, floor, _created_ms) = (
        f.u64().unwrap_or(0),
        f.u32().unwrap_or(0) as u64,
        f.u32().unwrap_or(0),
        f.i64().unwrap_or(0),
        f.i64().unwrap_or(0),
    );
    if f.take(8) != Some(END.as_slice()) {
        return Err(corrupt(path, "no block footer (torn or truncated)"));
    }
    if ix_len > MAX_PART
        || ix_off
            .checked_add(ix_len + FOOTER as u64)
            .is_none_or(|end| end != size)
    {
        return Err(corrupt(path, "index position does not match the file size"));
    }
    let mut ix = vec![0u8; ix_len as usize];
    file.read_exact_at(&mut ix, ix_off)
        .map_err(|e| StoreError::io(path, e))?;
    if crc32fast::hash(&ix) != ix_crc {
        return Err(corrupt(path, "index CRC mismatch"));
    }
    let mut r = Reader { buf: &ix };
    let bad = || corrupt(path, "index ends early");
    let count = r.u32().ok_or_else(bad)? as usize;
    let mut hosts = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let host: Arc<str> = Arc::from(r.str().ok_or_else(bad)?);
        let mut s = Section {
            offset: r.u64().ok_or_else(bad)?,
            len: r.u32().ok_or_else(bad)?,
            crc: r.u32().ok_or_else(bad)?,
            min_ts: r.i64().ok_or_else(bad)?,
            max_ts: r.i64().ok_or_else(bad)?,
            rows: r.u32().ok_or_else(bad)?,
            values: r.u32().ok_or_else(bad)?,
            rollup: None,
        };
        let outside = |offset: u64, len: u32| {
            offset
                .checked_add(u64::from(len))
                .is_none_or(|end| end > ix_off)
                || u64::from(len) > MAX_PART
        };
        if outside(s.offset, s.len) {
            return Err(corrupt(
                path,
                format!("section of {host} lies outside the data"),
            ));
        }
        if v2 {
            let p = Part {
                offset: r.u64().ok_or_else(bad)?,
                len: r.u32().ok_or_else(bad)?,
                crc: r.u32().ok_or_else(bad)?,
                rows: r.u32().ok_or_else(bad)?,
                width_ms: r.u32().ok_or_else(bad)?,
            };
            let width = i64::from(p.width_ms);
            if p.len > 0 && (width < ROLLUP_MS || width % ROLLUP_MS != 0) {
                return Err(corrupt(
                    path,
                    format!("rollup of {host} has buckets of {width} ms"),
                ));
            }
            if p.len > 0 {
                if outside(p.offset, p.len) {
                    return Err(corrupt(
                        path,
                        format!("rollup of {host} lies outside the data"),
                    ));
                }
                s.rollup = Some(p);
            }
        }
        hosts.push((host, s));
    }
    let n = r.u32().ok_or_else(bad)? as usize;
    let mut superseded = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        superseded.push(r.u64().ok_or_else(bad)?);
    }
    if !r.buf.is_empty() {
        return Err(corrupt(path, "bytes after the index"));
    }
    Ok(BlockIndex {
        floor,
        bytes: size,
        hosts,
        superseded,
        v1: !v2,
    })
}

/// Reads one section's bytes, checking its CRC.
pub(crate) fn read_section(path: &Path, s: &Section) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut buf = vec![0u8; s.len as usize];
    file.read_exact_at(&mut buf, s.offset)
        .map_err(|e| StoreError::io(path, e))?;
    if crc32fast::hash(&buf) != s.crc {
        return Err(corrupt(
            path,
            format!("section at {} CRC mismatch", s.offset),
        ));
    }
    Ok(buf)
}

/// One section as it is on disk, rollup included, CRCs checked: what a hand-off ships.
pub(crate) fn read_raw(path: &Path, s: &Section) -> Result<RawSection, StoreError> {
    let rows_bytes = read_section(path, s)?;
    let rollup = match (&s.rollup, s.rollup_section()) {
        (Some(p), Some(r)) => Some(RawRollup {
            bytes: read_section(path, &r)?,
            rows: p.rows,
            width_ms: p.width_ms,
        }),
        _ => None,
    };
    Ok(RawSection {
        rows_bytes,
        min_ts: s.min_ts,
        max_ts: s.max_ts,
        rows: s.rows,
        values: s.values,
        rollup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rows: i64) -> Frame {
        let ts: Vec<i64> = (0..rows)
            .map(|i| 1_700_000_000_000 + i * 5000 + i % 3)
            .collect();
        Frame {
            cols: vec![
                FrameCol {
                    name: Arc::from("cpu.total.usage"),
                    unit: 1,
                    values: (0..rows)
                        .map(|i| (i as f32 * 0.37).sin() as f64 * 50.0 + 50.0)
                        .collect(),
                },
                FrameCol {
                    name: Arc::from("net.eth9.rx_bytes_per_sec"),
                    unit: 2,
                    values: (0..rows)
                        .map(|i| {
                            if i % 4 == 0 {
                                f64::NAN
                            } else {
                                i as f64 * 1e3 / 4.97
                            }
                        })
                        .collect(),
                },
            ],
            ts,
        }
    }

    #[test]
    fn a_block_round_trips_bit_exact_and_selects_columns_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block-1.rwb");
        let f = frame(1440);
        let hosts = vec![
            Ok((Arc::from("a"), f.clone())),
            Ok((Arc::from("b"), frame(3))),
        ];
        let ix = write_block(Kind::Merged, &path, 42, 7, &[3, 4], hosts.into_iter()).unwrap();
        assert!(!tmp_path(&path).exists());
        let read = read_index(&path).unwrap();
        assert_eq!(read.floor, 42);
        assert_eq!(read.superseded, vec![3, 4]);
        assert_eq!(read.hosts, ix.hosts);
        let (_, s) = &read.hosts[0];
        let bytes = read_section(&path, s).unwrap();
        let all = decode_section(&bytes, i64::MIN, i64::MAX, &mut |_| true).unwrap();
        assert_eq!(all.ts, f.ts);
        for (a, b) in all.cols.iter().zip(&f.cols) {
            assert_eq!(a.name, b.name);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.values), bits(&b.values));
        }
        let some =
            decode_section(&bytes, f.ts[10], f.ts[19], &mut |n| n.starts_with("cpu")).unwrap();
        assert_eq!(some.ts, f.ts[10..20].to_vec());
        assert_eq!(some.cols.len(), 1);
        assert_eq!(parse_section(&bytes).unwrap().ts, f.ts);
        let per_value = s.len as f64 / (1440.0 * 2.0);
        assert!(per_value < 8.0, "{per_value} bytes a value");
        // The host's rollup lies right after its rows and reads back as made from them.
        let part = s.rollup.clone().expect("a rollup");
        assert_eq!(part.offset, s.offset + u64::from(s.len));
        let rs = s.rollup_section().unwrap();
        let rolled = decode_section(
            &read_section(&path, &rs).unwrap(),
            i64::MIN,
            i64::MAX,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(part.rows as usize, rolled.ts.len());
        // Rows every 5 s: ten-minute buckets.
        assert_eq!(part.width_ms, 600_000);
        assert_eq!(Rollup::from_frame(rolled).unwrap(), Rollup::of(&f, 600_000));
        // Host b's three rows are too few for a rollup; a cut writes none at all.
        assert!(read.hosts[1].1.rollup.is_none());
        let cut = dir.path().join("block-2.rwb");
        let ix = write_block(
            Kind::Cut,
            &cut,
            0,
            0,
            &[],
            vec![Ok((Arc::from("a"), f.clone()))].into_iter(),
        )
        .unwrap();
        assert!(ix.hosts[0].1.rollup.is_none() && !read_index(&cut).unwrap().v1);
    }

    #[test]
    fn a_block_of_the_first_version_is_read_and_has_no_rollup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block-1.rwb");
        let f = frame(300);
        let hosts = vec![Ok((Arc::from("a"), f.clone()))];
        let ix = write_block(Kind::V1, &path, 5, 0, &[], hosts.into_iter()).unwrap();
        assert_eq!(&fs::read(&path).unwrap()[..8], MAGIC_V1);
        let read = read_index(&path).unwrap();
        assert_eq!(read.hosts, ix.hosts);
        assert!(read.v1);
        let (_, s) = &read.hosts[0];
        assert!(s.rollup.is_none() && s.rollup_section().is_none());
        let rows = decode_section(
            &read_section(&path, s).unwrap(),
            i64::MIN,
            i64::MAX,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(rows.ts, f.ts);
    }

    #[test]
    fn a_flipped_byte_is_found_by_the_crc_and_a_torn_file_by_its_footer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block-1.rwb");
        write_block(
            Kind::Cut,
            &path,
            0,
            0,
            &[],
            vec![Ok((Arc::from("a"), frame(100)))].into_iter(),
        )
        .unwrap();
        let ix = read_index(&path).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[ix.hosts[0].1.offset as usize + 20] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = read_section(&path, &ix.hosts[0].1).unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, &bytes).unwrap();
        let err = read_index(&path).unwrap_err();
        assert!(err.to_string().contains("footer"), "{err}");
    }
}
