//! Rows of one host decoded into dense columns: what a block on disk reads back as, and the
//! form in which the sources of a range read (blocks, the block being written, the head) are
//! merged in timestamp order and cut into response chunks.

use std::sync::Arc;

use foldhash::HashMap;
use ringwatch_proto::{Column, RangeChunk};

/// Value cells per range chunk (512 KiB of doubles), so no message nears the size limit.
pub(crate) const CHUNK_CELLS: usize = 65_536;

/// One metric over a frame's rows: NaN where the host did not report it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FrameCol {
    pub(crate) name: Arc<str>,
    pub(crate) unit: i32,
    pub(crate) values: Vec<f64>,
}

/// Rows in increasing timestamp order, one column per metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Frame {
    pub(crate) ts: Vec<i64>,
    pub(crate) cols: Vec<FrameCol>,
}

impl Frame {
    pub(crate) fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub(crate) fn first(&self) -> Option<i64> {
        self.ts.first().copied()
    }

    pub(crate) fn last(&self) -> Option<i64> {
        self.ts.last().copied()
    }

    /// Values held (absent ones included): what a frame costs in memory, in cells.
    pub(crate) fn cells(&self) -> usize {
        self.ts.len() * (1 + self.cols.len())
    }

    /// The rows in `[start, end]`.
    pub(crate) fn slice(mut self, start: i64, end: i64) -> Frame {
        let a = self.ts.partition_point(|&t| t < start);
        let b = self.ts.partition_point(|&t| t <= end);
        if a == 0 && b == self.ts.len() {
            return self;
        }
        self.ts = self.ts[a..b].to_vec();
        for c in &mut self.cols {
            c.values = c.values[a..b].to_vec();
        }
        self.cols.retain(|c| c.values.iter().any(|v| !v.is_nan()));
        self
    }

    /// Without the rows at the timestamps of `sorted` (in increasing order).
    pub(crate) fn without(self, sorted: &[i64]) -> Frame {
        let gone = |t: &i64| sorted.binary_search(t).is_ok();
        if sorted.is_empty() || !self.ts.iter().any(gone) {
            return self;
        }
        let keep: Vec<bool> = self.ts.iter().map(|t| !gone(t)).collect();
        let pick = |v: &[i64]| -> Vec<i64> {
            v.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect()
        };
        let mut out = Frame {
            ts: pick(&self.ts),
            cols: Vec::with_capacity(self.cols.len()),
        };
        for c in self.cols {
            let values: Vec<f64> = c
                .values
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect();
            if values.iter().any(|v| !v.is_nan()) {
                out.cols.push(FrameCol { values, ..c });
            }
        }
        out
    }

    /// Drops the rows after `last` (inclusive bound).
    pub(crate) fn cut_after(&mut self, last: i64) {
        let b = self.ts.partition_point(|&t| t <= last);
        self.ts.truncate(b);
        for c in &mut self.cols {
            c.values.truncate(b);
        }
        self.cols.retain(|c| c.values.iter().any(|v| !v.is_nan()));
    }

    /// Reads response chunks back into one frame (dense or sparse columns alike).
    pub(crate) fn from_chunks(chunks: &[RangeChunk]) -> Frame {
        let rows: usize = chunks.iter().map(|c| c.timestamps_ms.len()).sum();
        let mut ts = Vec::with_capacity(rows);
        let mut cols: Vec<FrameCol> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::default();
        for chunk in chunks {
            let base = ts.len();
            ts.extend_from_slice(&chunk.timestamps_ms);
            for c in &chunk.columns {
                let i = *by_name.entry(c.name.clone()).or_insert_with(|| {
                    cols.push(FrameCol {
                        name: Arc::from(c.name.as_str()),
                        unit: c.unit,
                        values: vec![f64::NAN; rows],
                    });
                    cols.len() - 1
                });
                let col = &mut cols[i];
                col.unit = c.unit;
                if c.rows.is_empty() {
                    let n = c.values.len().min(chunk.timestamps_ms.len());
                    col.values[base..base + n].copy_from_slice(&c.values[..n]);
                } else {
                    for (&r, &v) in c.rows.iter().zip(&c.values) {
                        if let Some(slot) = col.values.get_mut(base + r as usize) {
                            *slot = v;
                        }
                    }
                }
            }
        }
        Frame { ts, cols }
    }

    /// Merges frames into one in timestamp order. Frames that follow one another are joined
    /// end to end; overlapping ones are merged row by row, and a timestamp held by two frames
    /// is taken once, from the earlier frame in `frames`.
    pub(crate) fn merge(mut frames: Vec<Frame>) -> Frame {
        frames.retain(|f| !f.is_empty());
        if frames.len() <= 1 {
            return frames.pop().unwrap_or_default();
        }
        // Which row of which frame each output row comes from.
        let mut order: Vec<(i64, usize, usize)> = Vec::new();
        let mut sorted: Vec<usize> = (0..frames.len()).collect();
        sorted.sort_by_key(|&i| frames[i].first());
        let disjoint = sorted
            .windows(2)
            .all(|w| frames[w[0]].last() < frames[w[1]].first());
        if disjoint {
            for &f in &sorted {
                order.extend(frames[f].ts.iter().enumerate().map(|(r, &t)| (t, f, r)));
            }
        } else {
            for (f, frame) in frames.iter().enumerate() {
                order.extend(frame.ts.iter().enumerate().map(|(r, &t)| (t, f, r)));
            }
            // Stable: at equal timestamps the earlier frame comes first and is the one kept.
            order.sort_by_key(|&(t, f, _)| (t, f));
            order.dedup_by_key(|&mut (t, _, _)| t);
        }
        let n = order.len();
        let mut cols: Vec<FrameCol> = Vec::new();
        let mut by_name: HashMap<Arc<str>, usize> = HashMap::default();
        // Per frame: its column i lands in output column map[f][i].
        let map: Vec<Vec<usize>> = frames
            .iter()
            .map(|frame| {
                frame
                    .cols
                    .iter()
                    .map(|c| {
                        *by_name.entry(c.name.clone()).or_insert_with(|| {
                            cols.push(FrameCol {
                                name: c.name.clone(),
                                unit: c.unit,
                                values: vec![f64::NAN; n],
                            });
                            cols.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        for (out_row, &(_, f, r)) in order.iter().enumerate() {
            for (i, c) in frames[f].cols.iter().enumerate() {
                let v = c.values[r];
                if !v.is_nan() {
                    let o = &mut cols[map[f][i]];
                    o.values[out_row] = v;
                    o.unit = c.unit;
                }
            }
        }
        Frame {
            ts: order.into_iter().map(|(t, _, _)| t).collect(),
            cols,
        }
    }

    /// Cuts the frame into response chunks of at most about [`CHUNK_CELLS`] values: at most
    /// `limit` rows, at most about `max_cells` in all (whole chunks, at least one; the last one
    /// is marked `truncated` when rows were left out for it). A column present in fewer than
    /// half of a chunk's rows is sent sparse to a client that reads that.
    pub(crate) fn into_chunks(
        self,
        limit: usize,
        max_cells: usize,
        sparse_ok: bool,
    ) -> Vec<RangeChunk> {
        let rows = self.ts.len().min(limit);
        chunked(rows, self.cols.len(), max_cells, |lo, hi| RangeChunk {
            timestamps_ms: self.ts[lo..hi].to_vec(),
            columns: self
                .cols
                .iter()
                .filter_map(|c| column(c, lo, hi, sparse_ok))
                .collect(),
            truncated: false,
            missing_brokers: Vec::new(),
        })
    }
}

/// Rows `0..rows` cut into response chunks of about [`CHUNK_CELLS`] values (`per_row` columns
/// a row), each made by `chunk(lo, hi)`: at most about `max_cells` in all (whole chunks, at
/// least one; the last one `truncated` when rows were left out for it).
pub(crate) fn chunked(
    rows: usize,
    per_row: usize,
    max_cells: usize,
    mut chunk: impl FnMut(usize, usize) -> RangeChunk,
) -> Vec<RangeChunk> {
    let step = (CHUNK_CELLS / per_row.max(1)).max(1);
    let mut out: Vec<RangeChunk> = Vec::new();
    let mut cells = 0;
    let mut lo = 0;
    while lo < rows {
        let hi = (lo + step).min(rows);
        let c = chunk(lo, hi);
        let n = c.cells();
        if !out.is_empty() && cells + n > max_cells {
            if let Some(last) = out.last_mut() {
                last.truncated = true;
            }
            return out;
        }
        cells += n;
        out.push(c);
        lo = hi;
    }
    out
}

/// Builds a frame from rows given one by one, in any order: a row's values by name, a name
/// first seen later filled with gaps before it. `finish` sorts by timestamp and keeps the first
/// row of a timestamp given twice.
#[derive(Default)]
pub(crate) struct FrameBuilder {
    ts: Vec<i64>,
    cols: Vec<FrameCol>,
    by_name: HashMap<Arc<str>, usize>,
}

impl FrameBuilder {
    pub(crate) fn row<'a>(
        &mut self,
        ts: i64,
        values: impl IntoIterator<Item = (&'a str, i32, f64)>,
    ) {
        let row = self.ts.len();
        self.ts.push(ts);
        for (name, unit, value) in values {
            let i = match self.by_name.get(name) {
                Some(&i) => i,
                None => {
                    let name: Arc<str> = Arc::from(name);
                    self.cols.push(FrameCol {
                        name: name.clone(),
                        unit,
                        values: Vec::new(),
                    });
                    self.by_name.insert(name, self.cols.len() - 1);
                    self.cols.len() - 1
                }
            };
            let c = &mut self.cols[i];
            c.values.resize(row, f64::NAN);
            c.values.push(value);
            c.unit = unit;
        }
    }

    pub(crate) fn finish(self) -> Frame {
        let n = self.ts.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&r| (self.ts[r], r));
        order.dedup_by_key(|r| self.ts[*r]);
        let sorted = order.windows(2).all(|w| w[0] < w[1]) && order.len() == n;
        let cols = self
            .cols
            .into_iter()
            .map(|mut c| {
                c.values.resize(n, f64::NAN);
                if !sorted {
                    c.values = order.iter().map(|&r| c.values[r]).collect();
                }
                c
            })
            .filter(|c| c.values.iter().any(|v| !v.is_nan()))
            .collect();
        Frame {
            ts: order.iter().map(|&r| self.ts[r]).collect(),
            cols,
        }
    }
}

/// Rows `lo..hi` of `c` as a response column, or `None` when it holds no value there.
fn column(c: &FrameCol, lo: usize, hi: usize, sparse_ok: bool) -> Option<Column> {
    let held = &c.values[lo..hi];
    held.iter()
        .any(|v| !v.is_nan())
        .then(|| response_column(c.name.to_string(), c.unit, hi - lo, 0, held, sparse_ok))
}

/// A response column of `rows` rows whose values are `held` from row `first` on (NaN, or
/// nothing, elsewhere): sparse (`rows` lists where the values are) for a client that reads that
/// when fewer than half the rows hold a value, dense otherwise. Shared by the head (whose
/// columns hold only their span) and by frames.
pub(crate) fn response_column(
    name: String,
    unit: i32,
    rows: usize,
    first: usize,
    held: &[f64],
    sparse_ok: bool,
) -> Column {
    let present = held.iter().filter(|v| !v.is_nan()).count();
    if sparse_ok && present * 2 < rows {
        let (mut at, mut values) = (Vec::with_capacity(present), Vec::with_capacity(present));
        for (i, &v) in held.iter().enumerate() {
            if !v.is_nan() {
                at.push((first + i) as u32);
                values.push(v);
            }
        }
        return Column {
            name,
            unit,
            values,
            rows: at,
            ..Column::default()
        };
    }
    let mut values = vec![f64::NAN; rows];
    values[first..first + held.len()].copy_from_slice(held);
    Column {
        name,
        unit,
        values,
        rows: Vec::new(),
        ..Column::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts: &[i64], cols: &[(&str, &[f64])]) -> Frame {
        Frame {
            ts: ts.to_vec(),
            cols: cols
                .iter()
                .map(|(n, v)| FrameCol {
                    name: Arc::from(*n),
                    unit: 1,
                    values: v.to_vec(),
                })
                .collect(),
        }
    }

    fn values(f: &Frame, name: &str) -> Vec<Option<f64>> {
        let c = f.cols.iter().find(|c| &*c.name == name).unwrap();
        c.values
            .iter()
            .map(|v| (!v.is_nan()).then_some(*v))
            .collect()
    }

    #[test]
    fn a_builder_sorts_rows_fills_gaps_and_keeps_the_first_of_a_timestamp() {
        let mut b = FrameBuilder::default();
        b.row(30, [("a", 1, 3.0)]);
        b.row(10, [("a", 1, 1.0), ("b", 2, 10.0)]);
        b.row(20, [("b", 2, 20.0)]);
        b.row(10, [("a", 1, 99.0)]);
        let f = b.finish();
        assert_eq!(f.ts, vec![10, 20, 30]);
        assert_eq!(values(&f, "a"), vec![Some(1.0), None, Some(3.0)]);
        assert_eq!(values(&f, "b"), vec![Some(10.0), Some(20.0), None]);
        assert_eq!(f.cols[1].unit, 2);
    }

    #[test]
    fn disjoint_frames_join_in_time_order_with_gaps_for_missing_columns() {
        let newer = frame(&[30, 40], &[("b", &[3.0, 4.0])]);
        let older = frame(&[10, 20], &[("a", &[1.0, 2.0])]);
        let m = Frame::merge(vec![newer, older]);
        assert_eq!(m.ts, vec![10, 20, 30, 40]);
        assert_eq!(values(&m, "a"), vec![Some(1.0), Some(2.0), None, None]);
        assert_eq!(values(&m, "b"), vec![None, None, Some(3.0), Some(4.0)]);
    }

    #[test]
    fn overlapping_frames_interleave_and_a_shared_timestamp_is_taken_once() {
        let a = frame(&[10, 30, 50], &[("x", &[1.0, 3.0, 5.0])]);
        let b = frame(
            &[20, 30, 40],
            &[("x", &[2.0, 99.0, 4.0]), ("y", &[7.0, 8.0, 9.0])],
        );
        let m = Frame::merge(vec![a, b]);
        assert_eq!(m.ts, vec![10, 20, 30, 40, 50]);
        assert_eq!(
            values(&m, "x"),
            vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)]
        );
        assert_eq!(
            values(&m, "y"),
            vec![None, Some(7.0), None, Some(9.0), None]
        );
    }

    #[test]
    fn chunks_round_trip_and_respect_limit_cells_and_sparseness() {
        let n = 100_000;
        let ts: Vec<i64> = (0..n).collect();
        let dense: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let rare: Vec<f64> = (0..n)
            .map(|i| if i % 10 == 0 { i as f64 } else { f64::NAN })
            .collect();
        let f = frame(&ts, &[("d", &dense), ("r", &rare)]);
        let chunks = f.clone().into_chunks(usize::MAX, usize::MAX, true);
        assert!(
            chunks
                .iter()
                .all(|c| c.columns.iter().any(|c| !c.rows.is_empty()))
        );
        let back = Frame::from_chunks(&chunks);
        assert_eq!(back.ts, f.ts);
        for c in &f.cols {
            assert!(values(&back, &c.name) == values(&f, &c.name), "{}", c.name);
        }
        let limited = f.clone().into_chunks(7, usize::MAX, false);
        assert_eq!(Frame::from_chunks(&limited).ts, (0..7).collect::<Vec<_>>());
        let capped = f.clone().into_chunks(usize::MAX, 100, true);
        assert_eq!(capped.len(), 1, "at least one whole chunk");
        assert!(capped[0].truncated);
        let sliced = f.slice(100, 199);
        assert_eq!(sliced.ts.len(), 100);
        assert_eq!(values(&sliced, "r").iter().flatten().count(), 10);
    }
}
