//! One host's series in memory, in column blocks.
//!
//! Rows are timestamps, columns are metrics. A block holds up to `BLOCK_ROWS` rows with one
//! `Vec<f64>` per metric that appeared in it, holding only the span from the metric's first to
//! its last value in the block (NaN for a row inside the span that lacks it), so a metric that
//! comes and goes (a container's network interface, a made-up name) costs memory only for the
//! rows it lived in. A range read copies column slices; ingest appends to the last block. The newest
//! snapshot is also kept whole (with its sliding-window statistics) for `latest`.

use std::collections::VecDeque;

// Names and ids come from clients: a seeded hash (foldhash), several times faster than SipHash
// on these short keys, still randomised per process.
use foldhash::{HashMap, HashSet};

use ringwatch_proto::{Column, RangeChunk, Snapshot};

use super::frame::{CHUNK_CELLS, response_column};

/// Rows per block (about 40 minutes at 5 s).
pub(crate) const BLOCK_ROWS: usize = 512;

/// Metric names interned to ids, shared by every host. Names no block uses any more (a
/// container's interface gone past retention, or a flood of made-up names evicted by the
/// memory limit) are released and their ids reused, so the table is bounded by what is held.
#[derive(Default, Clone)]
pub(crate) struct Names {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    free: Vec<u32>,
    /// Names interned since the last `release_unused`.
    fresh: usize,
}

impl Names {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        self.fresh += 1;
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = name.into();
                id
            }
            None => {
                self.names.push(name.into());
                (self.names.len() - 1) as u32
            }
        };
        self.ids.insert(name.into(), id);
        id
    }

    /// The id of `name`, if it is interned.
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }

    /// One past the largest id (ids index caches of this size).
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Names in use.
    pub(crate) fn live(&self) -> usize {
        self.ids.len()
    }

    /// Whether enough names came since the last release for one to be worth a pass.
    pub(crate) fn release_due(&self) -> bool {
        self.fresh >= 1024
    }

    /// Releases every id `used` marks false; returns how many.
    pub(crate) fn release_unused(&mut self, used: &[bool]) -> usize {
        self.fresh = 0;
        let mut released = 0;
        for (id, name) in self.names.iter_mut().enumerate() {
            if name.is_empty() || used.get(id).copied().unwrap_or(false) {
                continue;
            }
            self.ids.remove(&**name);
            *name = Box::from("");
            self.free.push(id as u32);
            released += 1;
        }
        released
    }
}

/// One metric's values in a block. Only the span from its first to its last value is held:
/// rows before the metric appeared and after it stopped cost nothing (a host that sends a new
/// name in one row adds one value, not a column of gaps). Gaps inside the span are NaN.
struct Col {
    name: u32,
    unit: i32,
    /// The row of `values[0]`.
    start: u32,
    values: Vec<f64>,
}

impl Col {
    fn end(&self) -> usize {
        self.start as usize + self.values.len()
    }

    /// Makes room for a row inserted at `pos` (rows from `pos` on move down one); returns the
    /// values added (a gap inside the span is held).
    fn open_row(&mut self, pos: usize) -> u64 {
        let start = self.start as usize;
        if pos <= start {
            self.start += 1;
            0
        } else if pos < self.end() {
            self.values.insert(pos - start, f64::NAN);
            1
        } else {
            0
        }
    }

    /// Sets row `pos`, widening the span as needed; returns the values added.
    fn set(&mut self, pos: usize, v: f64) -> u64 {
        let before = self.values.len();
        let start = self.start as usize;
        if self.values.is_empty() {
            self.start = pos as u32;
            self.values.push(v);
            return 1;
        }
        if pos < start {
            self.values
                .splice(0..0, std::iter::repeat_n(f64::NAN, start - pos));
            self.start = pos as u32;
        } else if pos >= self.end() {
            self.values.resize(pos - start + 1, f64::NAN);
        }
        let i = pos - self.start as usize;
        self.values[i] = v;
        (self.values.len() - before) as u64
    }

    /// Drops the first `k` rows of the block.
    fn drop_front(&mut self, k: usize) {
        let start = self.start as usize;
        if k <= start {
            self.start -= k as u32;
        } else {
            let n = (k - start).min(self.values.len());
            self.values.drain(..n);
            self.start = 0;
        }
    }

    /// The held part of rows `[lo, hi)`: (first row, values).
    fn overlap(&self, lo: usize, hi: usize) -> Option<(usize, &[f64])> {
        let (s, e) = ((self.start as usize).max(lo), self.end().min(hi));
        (s < e).then(|| {
            let off = self.start as usize;
            (s, &self.values[s - off..e - off])
        })
    }

    fn any_in(&self, lo: usize, hi: usize) -> bool {
        self.overlap(lo, hi)
            .is_some_and(|(_, v)| v.iter().any(|x| !x.is_nan()))
    }

    /// Rows `[lo, hi)` as a column on the wire: dense (NaN where absent), or, when the metric
    /// is in fewer than half of them, sparse (only the rows it has), so a response grows with
    /// the values held, not rows × columns.
    fn column(&self, lo: usize, hi: usize, name: String, sparse_ok: bool) -> Column {
        let (first, held) = self.overlap(lo, hi).unwrap_or((lo, &[]));
        response_column(name, self.unit, hi - lo, first - lo, held, sparse_ok)
    }
}

/// Past this many columns a block keeps a name → column index, so a snapshot of new names
/// costs a lookup each, not a search through every column (under the store's lock).
const INDEX_FROM: usize = 64;

struct Block {
    ts: Vec<i64>,
    cols: Vec<Col>,
    /// The capacity a column that starts with the block starts with (see `first_capacity`).
    first_cap: usize,
    /// Values held (what the memory limit counts).
    cells: u64,
    index: Option<HashMap<u32, u32>>,
}

/// The rows a block's new columns are first sized for: 4 to 11, from the host id. Hosts that
/// arrive together (a fleet reconnecting after a broker restart) fill their blocks in step; if
/// their columns all started at the same size, every doubling would fall on the same row for
/// all of them (10,000 hosts × 60 columns reallocated at once, under the store's lock). Eight
/// starting sizes split each such burst eight ways, for about 1.7 KiB more per host at first.
fn first_capacity(host_id: &str) -> usize {
    4 + (crc32fast::hash(host_id.as_bytes()) % 8) as usize
}

impl Block {
    fn new(first_cap: usize) -> Block {
        Block {
            ts: Vec::with_capacity(first_cap),
            cols: Vec::new(),
            first_cap,
            cells: 0,
            index: None,
        }
    }

    fn col_index(&self, hint: usize, name: u32) -> Option<usize> {
        if let Some(c) = self.cols.get(hint)
            && c.name == name
        {
            return Some(hint);
        }
        match &self.index {
            Some(ix) => ix.get(&name).map(|&i| i as usize),
            None => self.cols.iter().position(|c| c.name == name),
        }
    }

    fn push_col(&mut self, col: Col) -> usize {
        let i = self.cols.len();
        let name = col.name;
        self.cols.push(col);
        match &mut self.index {
            Some(ix) => {
                ix.insert(name, i as u32);
            }
            None if self.cols.len() > INDEX_FROM => self.rebuild_index(),
            None => {}
        }
        i
    }

    fn rebuild_index(&mut self) {
        self.index = (self.cols.len() > INDEX_FROM).then(|| {
            self.cols
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name, i as u32))
                .collect()
        });
    }

    /// Inserts a row at `pos`; returns the values added.
    fn insert_row(&mut self, pos: usize, ts: i64, snap: &Snapshot, ids: &[u32]) -> u64 {
        self.ts.insert(pos, ts);
        let mut added = 0;
        if pos + 1 < self.ts.len() {
            // A late row: the rows after it move down in every column.
            for c in &mut self.cols {
                added += c.open_row(pos);
            }
        }
        for (i, (m, &id)) in snap.metrics.iter().zip(ids).enumerate() {
            let idx = match self.col_index(i, id) {
                Some(idx) => idx,
                None => {
                    // A metric that starts with the block gets the host's first capacity; one
                    // that appears later (a new interface, or made-up names) starts small.
                    let cap = if pos == 0 { self.first_cap } else { 1 };
                    self.push_col(Col {
                        name: id,
                        unit: m.unit,
                        start: pos as u32,
                        values: Vec::with_capacity(cap),
                    })
                }
            };
            let col = &mut self.cols[idx];
            added += col.set(pos, m.value);
            col.unit = m.unit;
        }
        self.cells += added;
        added
    }

    /// Drops the rows before `cutoff`; returns (rows, values) dropped.
    /// A copy of its first `k` rows.
    fn head_copy(&self, k: usize) -> Block {
        let cols: Vec<Col> = self
            .cols
            .iter()
            .filter_map(|c| {
                let (first, held) = c.overlap(0, k)?;
                held.iter().any(|v| !v.is_nan()).then(|| Col {
                    name: c.name,
                    unit: c.unit,
                    start: first as u32,
                    values: held.to_vec(),
                })
            })
            .collect();
        let mut b = Block {
            ts: self.ts[..k].to_vec(),
            cells: cols.iter().map(|c| c.values.len() as u64).sum(),
            cols,
            first_cap: self.first_cap,
            index: None,
        };
        b.rebuild_index();
        b
    }

    fn trim_front(&mut self, cutoff: i64) -> (u64, u64) {
        let k = self.ts.partition_point(|&t| t < cutoff);
        if k == 0 {
            return (0, 0);
        }
        let before = self.cells;
        self.ts.drain(..k);
        for c in &mut self.cols {
            c.drop_front(k);
        }
        let n = self.cols.len();
        self.cols.retain(|c| c.values.iter().any(|v| !v.is_nan()));
        if self.cols.len() != n {
            self.rebuild_index();
        }
        self.cells = self.cols.iter().map(|c| c.values.len() as u64).sum();
        (k as u64, before - self.cells)
    }
}

/// Which rows a range read takes, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows {
    /// Inclusive bounds.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// At most this many rows.
    pub(crate) limit: usize,
    /// At most about this many values (see `RangeChunk::cells`).
    pub(crate) max_cells: usize,
    /// Whether columns may go sparse.
    pub(crate) sparse_ok: bool,
}

/// One host: its blocks in time order and its newest snapshot.
#[derive(Default)]
pub(crate) struct Series {
    blocks: VecDeque<Block>,
    /// Shared, so `latest` of every host takes a pointer each under the store's lock and
    /// copies outside it.
    latest: Option<std::sync::Arc<Snapshot>>,
    /// Values held in all blocks.
    cells: u64,
    rows: u64,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    Duplicate,
    /// (samples, cells added)
    New(u64, u64),
}

impl Series {
    /// The block where `ts` belongs (the last one whose first timestamp is ≤ `ts`).
    fn block_for(&self, ts: i64) -> Option<usize> {
        if self.blocks.is_empty() {
            return None;
        }
        let after = self
            .blocks
            .partition_point(|b| b.ts.first().is_some_and(|&f| f <= ts));
        Some(after.saturating_sub(1))
    }

    pub(crate) fn contains(&self, ts: i64) -> bool {
        self.block_for(ts)
            .is_some_and(|b| self.blocks[b].ts.binary_search(&ts).is_ok())
    }

    pub(crate) fn newest(&self) -> Option<i64> {
        self.blocks.back().and_then(|b| b.ts.last().copied())
    }

    pub(crate) fn oldest(&self) -> Option<i64> {
        self.blocks.front().and_then(|b| b.ts.first().copied())
    }

    pub(crate) fn latest(&self) -> Option<&std::sync::Arc<Snapshot>> {
        self.latest.as_ref()
    }

    /// Inserts a snapshot whose metric names are interned as `ids`, and keeps it as the
    /// newest if it is (the store does both in steps: `insert_rows`, then `offer_latest`).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, snap: &Snapshot, ids: &[u32]) -> Inserted {
        let inserted = self.insert_rows(snap, ids);
        if inserted != Inserted::Duplicate {
            self.offer_latest(snap);
        }
        inserted
    }

    /// Keeps `snap` whole as the newest snapshot unless a newer one is kept.
    pub(crate) fn offer_latest(&mut self, snap: &Snapshot) {
        if self
            .latest
            .as_ref()
            .is_none_or(|l| snap.timestamp_ms >= l.timestamp_ms)
        {
            self.latest = Some(std::sync::Arc::new(snap.clone()));
        }
    }

    /// Inserts a snapshot's values only; `offer_latest` keeps it whole. A batch inserts its
    /// rows and then offers each host's newest once: a copy of every snapshot, freed by the
    /// next, was most of the ingest's allocations, and what was left of them after a burst
    /// held the broker's memory up (BENCHMARKS.md, "Memory does not grow with the retention").
    pub(crate) fn insert_rows(&mut self, snap: &Snapshot, ids: &[u32]) -> Inserted {
        let ts = snap.timestamp_ms;
        let appending = self.newest().is_none_or(|n| ts > n);
        let (b, pos) = if appending {
            if self.blocks.back().is_none_or(|b| b.ts.len() >= BLOCK_ROWS) {
                self.blocks
                    .push_back(Block::new(first_capacity(&snap.host_id)));
            }
            let b = self.blocks.len() - 1;
            (b, self.blocks[b].ts.len())
        } else {
            let b = self.block_for(ts).unwrap_or(0);
            match self.blocks[b].ts.binary_search(&ts) {
                Ok(_) => return Inserted::Duplicate,
                Err(pos) => (b, pos),
            }
        };
        let cells = self.blocks[b].insert_row(pos, ts, snap, ids);
        self.cells += cells;
        self.rows += 1;
        Inserted::New(snap.metrics.len() as u64, cells)
    }

    /// Values held.
    pub(crate) fn cells(&self) -> u64 {
        self.cells
    }

    /// Every name id a block of this series holds.
    pub(crate) fn name_ids(&self) -> HashSet<u32> {
        self.blocks
            .iter()
            .flat_map(|b| b.cols.iter().map(|c| c.name))
            .collect()
    }

    /// Drops the oldest `n` rows (at least one); returns (rows, values) dropped.
    pub(crate) fn evict_oldest(&mut self, n: u64) -> (u64, u64) {
        let mut left = n.max(1);
        let mut cutoff = None;
        for b in &self.blocks {
            if (b.ts.len() as u64) >= left {
                cutoff = Some(b.ts[left as usize - 1] + 1);
                break;
            }
            left -= b.ts.len() as u64;
        }
        self.evict_before(cutoff.unwrap_or(i64::MAX))
    }

    /// Marks in `used` (indexed by name id) every name a block of this series holds.
    pub(crate) fn mark_names(&self, used: &mut [bool]) {
        for b in &self.blocks {
            for c in &b.cols {
                if let Some(u) = used.get_mut(c.name as usize) {
                    *u = true;
                }
            }
        }
    }

    /// Drops every row older than `cutoff`; returns (rows, cells) dropped.
    pub(crate) fn evict_before(&mut self, cutoff: i64) -> (u64, u64) {
        let (mut rows, mut cells) = (0, 0);
        while let Some(front) = self.blocks.front_mut() {
            if front.ts.last().is_some_and(|&l| l < cutoff) {
                rows += front.ts.len() as u64;
                cells += front.cells;
                self.blocks.pop_front();
            } else {
                let (r, c) = front.trim_front(cutoff);
                rows += r;
                cells += c;
                break;
            }
        }
        if self.blocks.is_empty() {
            self.latest = None;
        }
        self.cells -= cells;
        self.rows -= rows;
        (rows, cells)
    }

    /// Rows held.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows older than `ts`.
    pub(crate) fn rows_before(&self, ts: i64) -> u64 {
        let mut n = 0;
        for b in &self.blocks {
            if b.ts.last().is_some_and(|&l| l < ts) {
                n += b.ts.len() as u64;
            } else {
                n += b.ts.partition_point(|&t| t < ts) as u64;
                break;
            }
        }
        n
    }

    /// Moves the rows older than `cutoff` into a series of their own (whole blocks are moved,
    /// not copied). This series keeps its newest snapshot for `latest` even when every row
    /// goes.
    pub(crate) fn split_before(&mut self, cutoff: i64) -> Series {
        let mut old = Series::default();
        while let Some(front) = self.blocks.front() {
            if front.ts.last().is_some_and(|&l| l < cutoff) {
                if let Some(b) = self.blocks.pop_front() {
                    old.rows += b.ts.len() as u64;
                    old.cells += b.cells;
                    old.blocks.push_back(b);
                }
            } else {
                let k = front.ts.partition_point(|&t| t < cutoff);
                if k > 0 {
                    let copy = front.head_copy(k);
                    old.rows += copy.ts.len() as u64;
                    old.cells += copy.cells;
                    old.blocks.push_back(copy);
                    if let Some(f) = self.blocks.front_mut() {
                        f.trim_front(cutoff);
                    }
                }
                break;
            }
        }
        self.rows -= old.rows;
        self.cells = self.blocks.iter().map(|b| b.cells).sum();
        old
    }

    /// Every row, dense, with names resolved: what a block section is written from.
    pub(crate) fn to_frame(&self, names: &Names) -> super::frame::Frame {
        use super::frame::{Frame, FrameCol};
        let rows = self.rows as usize;
        let mut ts = Vec::with_capacity(rows);
        let mut cols: Vec<FrameCol> = Vec::new();
        let mut by_id: HashMap<u32, usize> = HashMap::default();
        for b in &self.blocks {
            let base = ts.len();
            ts.extend_from_slice(&b.ts);
            for c in &b.cols {
                let i = *by_id.entry(c.name).or_insert_with(|| {
                    cols.push(FrameCol {
                        name: std::sync::Arc::from(names.name(c.name)),
                        unit: c.unit,
                        values: vec![f64::NAN; rows],
                    });
                    cols.len() - 1
                });
                let at = base + c.start as usize;
                cols[i].values[at..at + c.values.len()].copy_from_slice(&c.values);
                cols[i].unit = c.unit;
            }
        }
        Frame { ts, cols }
    }

    /// Rows in `[start, end]`, at most `limit`, columns selected by `keep(name id)`, and at
    /// most about `max_cells` values (whole chunks; at least one): when that stops it first,
    /// the last chunk says `truncated`.
    pub(crate) fn range(
        &self,
        rows: &Rows,
        names: &Names,
        keep: &mut impl FnMut(u32) -> bool,
    ) -> Vec<RangeChunk> {
        let Rows {
            start,
            end,
            limit,
            max_cells,
            sparse_ok,
        } = *rows;
        let mut out: Vec<RangeChunk> = Vec::new();
        let mut left = limit;
        let mut cells = 0;
        let first = self.block_for(start).unwrap_or(0);
        for block in self.blocks.iter().skip(first) {
            if left == 0 || block.ts.first().is_some_and(|&f| f > end) {
                break;
            }
            let a = block.ts.partition_point(|&t| t < start);
            let b = block
                .ts
                .partition_point(|&t| t <= end)
                .min(a.saturating_add(left));
            if a >= b {
                continue;
            }
            let cols: Vec<&Col> = block
                .cols
                .iter()
                .filter(|c| keep(c.name) && c.any_in(a, b))
                .collect();
            let step = (CHUNK_CELLS / cols.len().max(1)).max(1);
            let mut lo = a;
            while lo < b {
                let hi = (lo + step).min(b);
                // Only the columns with a value in these rows: a block of many names that come
                // and go does not repeat every name in every chunk.
                let chunk = RangeChunk {
                    timestamps_ms: block.ts[lo..hi].to_vec(),
                    columns: cols
                        .iter()
                        .filter(|c| c.any_in(lo, hi))
                        .map(|c| c.column(lo, hi, names.name(c.name).to_string(), sparse_ok))
                        .collect(),
                    truncated: false,
                    missing_brokers: Vec::new(),
                };
                let n = chunk.cells();
                if !out.is_empty() && cells + n > max_cells {
                    if let Some(last) = out.last_mut() {
                        last.truncated = true;
                    }
                    return out;
                }
                cells += n;
                out.push(chunk);
                lo = hi;
            }
            left -= b - a;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::Metric;

    fn snap(ts: i64, names: &[&str]) -> Snapshot {
        Snapshot {
            host_id: "h".into(),
            timestamp_ms: ts,
            metrics: names
                .iter()
                .enumerate()
                .map(|(i, n)| Metric {
                    name: n.to_string(),
                    value: ts as f64 + i as f64,
                    unit: 4,
                    window: None,
                })
                .collect(),
        }
    }

    fn put(s: &mut Series, names: &mut Names, snap: &Snapshot) -> Inserted {
        let ids: Vec<u32> = snap.metrics.iter().map(|m| names.intern(&m.name)).collect();
        s.insert(snap, &ids)
    }

    /// Every row of `s`, every metric.
    fn everything(s: &Series, names: &Names) -> Vec<Snapshot> {
        let all = Rows {
            start: 0,
            end: i64::MAX,
            limit: usize::MAX,
            max_cells: usize::MAX,
            sparse_ok: true,
        };
        rows(&s.range(&all, names, &mut |_| true))
    }

    fn rows(chunks: &[RangeChunk]) -> Vec<Snapshot> {
        chunks.iter().flat_map(|c| c.to_snapshots("h")).collect()
    }

    #[test]
    fn names_no_block_holds_are_released_and_reused() {
        let mut names = Names::default();
        let mut s = Series::default();
        for t in 0..(BLOCK_ROWS as i64 * 2) {
            // A new made-up name in every row, plus one that stays.
            let odd = format!("junk.{t}");
            put(&mut s, &mut names, &snap(t, &["cpu.usage", odd.as_str()]));
        }
        let before = names.live();
        assert_eq!(before, BLOCK_ROWS * 2 + 1);
        // Retention drops the first block: its junk names are held by nothing now.
        s.evict_before(BLOCK_ROWS as i64);
        let mut used = vec![false; names.len()];
        s.mark_names(&mut used);
        assert!(names.release_due());
        assert_eq!(names.release_unused(&used), BLOCK_ROWS);
        assert_eq!(names.live(), BLOCK_ROWS + 1);
        // What is still held reads back by name; a new name takes a freed id.
        let rows = everything(&s, &names);
        assert_eq!(rows.len(), BLOCK_ROWS);
        assert!(
            rows.iter()
                .all(|r| r.metrics.iter().any(|m| m.name == "cpu.usage"))
        );
        let last = format!("junk.{}", BLOCK_ROWS * 2 - 1);
        assert!(rows[BLOCK_ROWS - 1].metrics.iter().any(|m| m.name == last));
        let len = names.len();
        names.intern("brand.new");
        assert_eq!(names.len(), len, "a freed id was reused");
        let id = names.intern("brand.new");
        assert_eq!(names.name(id), "brand.new");
    }

    #[test]
    fn rows_come_back_in_order_across_blocks_with_gaps_for_absent_metrics() {
        let mut names = Names::default();
        let mut s = Series::default();
        let n = BLOCK_ROWS as i64 * 2 + 10;
        for t in 0..n {
            // "veth" exists only for a while, like a container's interface.
            let metrics: &[&str] = if (100..200).contains(&t) {
                &["cpu", "veth"]
            } else {
                &["cpu"]
            };
            assert!(matches!(
                put(&mut s, &mut names, &snap(t * 10, metrics)),
                Inserted::New(..)
            ));
        }
        let all = everything(&s, &names);
        assert_eq!(all.len(), n as usize);
        assert!(
            all.windows(2)
                .all(|w| w[0].timestamp_ms < w[1].timestamp_ms)
        );
        assert_eq!(all[150].metrics.len(), 2);
        assert_eq!(all[150].metrics[1].value, 1501.0);
        assert_eq!(all[250].metrics.len(), 1);
        // Later blocks never carry the vanished column.
        let late = s.range(
            &Rows {
                start: BLOCK_ROWS as i64 * 10,
                end: i64::MAX,
                limit: usize::MAX,
                max_cells: usize::MAX,
                sparse_ok: true,
            },
            &names,
            &mut |_| true,
        );
        assert!(late.iter().all(|c| c.columns.len() == 1));
        // Inclusive bounds, a limit, and a filter.
        let some = rows(&s.range(
            &Rows {
                start: 1000,
                end: 2000,
                limit: 50,
                max_cells: usize::MAX,
                sparse_ok: true,
            },
            &names,
            &mut |id| names.name(id) == "veth",
        ));
        assert_eq!(some.first().map(|r| r.timestamp_ms), Some(1000));
        assert_eq!(some.len(), 50);
        assert!(
            some.iter()
                .all(|r| r.metrics.iter().all(|m| m.name == "veth"))
        );
    }

    #[test]
    fn late_rows_are_inserted_in_place_and_duplicates_refused() {
        let mut names = Names::default();
        let mut s = Series::default();
        for t in [10, 30, 20, 5] {
            put(&mut s, &mut names, &snap(t, &["a", "b"]));
        }
        assert_eq!(
            put(&mut s, &mut names, &snap(20, &["a"])),
            Inserted::Duplicate
        );
        assert!(s.contains(5) && s.contains(30) && !s.contains(25));
        let ts: Vec<i64> = rows(&s.range(
            &Rows {
                start: 0,
                end: 100,
                limit: 10,
                max_cells: usize::MAX,
                sparse_ok: true,
            },
            &names,
            &mut |_| true,
        ))
        .iter()
        .map(|r| r.timestamp_ms)
        .collect();
        assert_eq!(ts, vec![5, 10, 20, 30]);
        assert_eq!(s.latest().map(|l| l.timestamp_ms), Some(30));
    }

    #[test]
    fn eviction_trims_blocks_and_counts_cells() {
        let mut names = Names::default();
        let mut s = Series::default();
        let mut cells = 0;
        for t in 0..(BLOCK_ROWS as i64 + 100) {
            if let Inserted::New(_, c) = put(&mut s, &mut names, &snap(t, &["a", "b"])) {
                cells += c;
            }
        }
        assert_eq!(cells, (BLOCK_ROWS as u64 + 100) * 2);
        let (rows_dropped, cells_dropped) = s.evict_before(BLOCK_ROWS as i64 + 50);
        assert_eq!(rows_dropped, BLOCK_ROWS as u64 + 50);
        assert_eq!(cells_dropped, rows_dropped * 2);
        assert_eq!(s.oldest(), Some(BLOCK_ROWS as i64 + 50));
        assert_eq!(s.evict_before(i64::MAX).0, 50);
        assert!(s.latest().is_none() && s.oldest().is_none());
    }

    #[test]
    fn a_name_seen_once_costs_one_value_and_late_rows_keep_every_span_right() {
        let mut names = Names::default();
        let mut s = Series::default();
        let mut cells = 0;
        for t in 0..100 {
            // Every row: "cpu", and one made-up name never seen again.
            let junk = format!("junk.{t}");
            if let Inserted::New(_, c) = put(&mut s, &mut names, &snap(t * 10, &["cpu", &junk])) {
                cells += c;
            }
        }
        // 100 rows × 2 values, not 100 rows × 101 columns of gaps.
        assert_eq!(cells, 200);
        assert_eq!(s.cells(), 200);
        // A late row in the middle: every column's span moves right, values stay put, and
        // the gaps it opens inside spans are counted (cpu's span holds it: +1; junk.50's
        // span now holds rows 50 and 51: +1).
        put(&mut s, &mut names, &snap(505, &["cpu", "junk.50"]));
        assert_eq!(s.cells(), 200 + 2);
        let all = everything(&s, &names);
        assert_eq!(all.len(), 101);
        for r in &all {
            let junk: Vec<&Metric> = r.metrics.iter().filter(|m| m.name != "cpu").collect();
            assert_eq!(junk.len(), 1, "{r:?}");
            let want = if r.timestamp_ms == 505 {
                50
            } else {
                r.timestamp_ms / 10
            };
            assert_eq!(junk[0].name, format!("junk.{want}"), "{r:?}");
        }
        // A metric back after a pause has NaN only inside its span.
        let mut s2 = Series::default();
        for t in [0, 1, 2, 3] {
            let m: &[&str] = if t == 1 { &["a"] } else { &["a", "b"] };
            put(&mut s2, &mut names, &snap(t, m));
        }
        // "b" spans rows 0–3 with a gap at row 1: its span is held, gap included.
        assert_eq!(s2.cells(), 4 + 4);
        let back = rows(&s2.range(
            &Rows {
                start: 0,
                end: 3,
                limit: usize::MAX,
                max_cells: usize::MAX,
                sparse_ok: true,
            },
            &names,
            &mut |_| true,
        ));
        assert_eq!(back[1].metrics.len(), 1);
        assert_eq!(back[3].metrics.len(), 2);
    }

    #[test]
    fn wide_blocks_are_split_into_bounded_chunks() {
        let mut names = Names::default();
        let mut s = Series::default();
        let wide: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        for t in 0..200 {
            put(&mut s, &mut names, &snap(t, &wide));
        }
        let chunks = s.range(
            &Rows {
                start: 0,
                end: 1000,
                limit: usize::MAX,
                max_cells: usize::MAX,
                sparse_ok: true,
            },
            &names,
            &mut |_| true,
        );
        assert!(chunks.len() >= 3);
        assert!(
            chunks
                .iter()
                .all(|c| c.timestamps_ms.len() * c.columns.len() <= CHUNK_CELLS)
        );
        assert_eq!(rows(&chunks).len(), 200);
    }
}
