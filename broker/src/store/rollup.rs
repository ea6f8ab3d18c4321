//! Rollups: per host and metric, the lowest and highest value, the sum and the count of the raw
//! values in each minute. Made when rows are compressed (a Redis chunk closed: `chunk.rs`),
//! read for ranges asked with a step (`RangeRequest.step_ms`), and combined into buckets of
//! that step. Parts of one bucket made apart (rows cut to a block at different times, an open
//! window beside closed ones) combine exactly: min of mins, max of maxes, sums and counts added.
//!
//! Stored in a section of its own (`encode`): the metrics' names once, then five compressed
//! streams over every (metric, bucket) row, metric after metric: the bucket starts and the
//! min, max, sum and count. Long streams compress well (pco); a column of ten values each
//! would cost more in pco's headers than in values.
//!
//! ```text
//! metrics u32, per metric: name (u16 len + UTF-8), unit i32, rows u32
//! 5 × (len u32 + pco): bucket starts i64 (delta-of-delta), min f64, max f64, sum f64, count u32
//! ```

use std::sync::Arc;

use foldhash::HashMap;
use pco::standalone::{simple_compress, simple_decompress};
use pco::{ChunkConfig, DeltaSpec};
use ringwatch_proto::{Column, RangeChunk};

use super::frame::{CHUNK_CELLS, Frame};
use crate::error::StoreError;

/// Width of a stored rollup bucket (ms).
pub const ROLLUP_MS: i64 = 60_000;

/// One metric's buckets: absent where `count` is 0.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RollupCol {
    pub(crate) name: Arc<str>,
    pub(crate) unit: i32,
    pub(crate) min: Vec<f64>,
    pub(crate) max: Vec<f64>,
    pub(crate) sum: Vec<f64>,
    pub(crate) count: Vec<u32>,
}

impl RollupCol {
    fn new(name: Arc<str>, unit: i32, rows: usize) -> RollupCol {
        RollupCol {
            name,
            unit,
            min: vec![f64::INFINITY; rows],
            max: vec![f64::NEG_INFINITY; rows],
            sum: vec![0.0; rows],
            count: vec![0; rows],
        }
    }

    fn add(&mut self, row: usize, min: f64, max: f64, sum: f64, count: u32) {
        self.min[row] = self.min[row].min(min);
        self.max[row] = self.max[row].max(max);
        self.sum[row] += sum;
        self.count[row] += count;
    }
}

/// Buckets in increasing order of their start, one column per metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rollup {
    pub(crate) ts: Vec<i64>,
    pub(crate) cols: Vec<RollupCol>,
}

/// The start of the bucket of width `step` holding `ts`.
pub fn bucket(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

/// Columns of the output by name, created on first sight.
struct Cols {
    cols: Vec<RollupCol>,
    by_name: HashMap<Arc<str>, usize>,
    rows: usize,
}

impl Cols {
    fn new(rows: usize) -> Cols {
        Cols {
            cols: Vec::new(),
            by_name: HashMap::default(),
            rows,
        }
    }

    fn get(&mut self, name: &Arc<str>, unit: i32) -> &mut RollupCol {
        let i = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.cols
                    .push(RollupCol::new(name.clone(), unit, self.rows));
                self.by_name.insert(name.clone(), self.cols.len() - 1);
                self.cols.len() - 1
            }
        };
        &mut self.cols[i]
    }
}

impl Rollup {
    /// Raw rows (in timestamp order) in buckets of `step`.
    pub(crate) fn of(frame: &Frame, step: i64) -> Rollup {
        let mut ts: Vec<i64> = Vec::new();
        let mut row_of = Vec::with_capacity(frame.ts.len());
        for &t in &frame.ts {
            let b = bucket(t, step);
            if ts.last() != Some(&b) {
                ts.push(b);
            }
            row_of.push(ts.len() - 1);
        }
        let mut cols = Cols::new(ts.len());
        for c in &frame.cols {
            let out = cols.get(&c.name, c.unit);
            for (&row, &v) in row_of.iter().zip(&c.values) {
                if !v.is_nan() {
                    out.add(row, v, v, v, 1);
                }
            }
        }
        Rollup {
            ts,
            cols: cols.cols,
        }
    }

    /// Parts (each in bucket order, of `ROLLUP_MS` or any step dividing `step`) combined into
    /// buckets of `step`.
    pub(crate) fn combine(parts: Vec<Rollup>, step: i64) -> Rollup {
        let mut ts: Vec<i64> = parts
            .iter()
            .flat_map(|p| p.ts.iter().map(|&t| bucket(t, step)))
            .collect();
        ts.sort_unstable();
        ts.dedup();
        let mut cols = Cols::new(ts.len());
        for p in &parts {
            let rows: Vec<usize> =
                p.ts.iter()
                    .map(|&t| ts.binary_search(&bucket(t, step)).unwrap_or(0))
                    .collect();
            for c in &p.cols {
                let out = cols.get(&c.name, c.unit);
                for (i, &row) in rows.iter().enumerate() {
                    if c.count[i] > 0 {
                        out.add(row, c.min[i], c.max[i], c.sum[i], c.count[i]);
                    }
                }
            }
        }
        Rollup {
            ts,
            cols: cols.cols,
        }
    }

    /// The stored form (see the module's doc).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let pco_err =
            |e: pco::errors::PcoError| StoreError::Unavailable(format!("rollup codec: {e}"));
        let mut out = Vec::new();
        out.extend_from_slice(&(self.cols.len() as u32).to_le_bytes());
        let (mut ts, mut min, mut max, mut sum, mut count) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in &self.cols {
            let name = c.name.as_bytes();
            let name = &name[..name.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&c.unit.to_le_bytes());
            let rows: Vec<usize> = (0..self.ts.len()).filter(|&i| c.count[i] > 0).collect();
            out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
            for i in rows {
                ts.push(self.ts[i]);
                min.push(c.min[i]);
                max.push(c.max[i]);
                sum.push(c.sum[i]);
                count.push(c.count[i]);
            }
        }
        let ts_cfg = ChunkConfig::default().with_delta_spec(DeltaSpec::TryConsecutive(2));
        let cfg = ChunkConfig::default().with_compression_level(4);
        let mut put = |bytes: Vec<u8>| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        };
        put(simple_compress(&ts, &ts_cfg).map_err(pco_err)?);
        for v in [&min, &max, &sum] {
            put(simple_compress(v, &cfg).map_err(pco_err)?);
        }
        put(simple_compress(&count, &cfg).map_err(pco_err)?);
        Ok(out)
    }

    /// Reads `encode`'s form: the buckets starting in `[start, end]`, the metrics `keep`
    /// selects. An error for anything malformed.
    pub(crate) fn decode(
        bytes: &[u8],
        start: i64,
        end: i64,
        keep: &mut impl FnMut(&str) -> bool,
    ) -> Result<Rollup, String> {
        let short = || "rollup section ends early".to_string();
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let part = bytes
                .get(at..at.checked_add(n).ok_or_else(short)?)
                .ok_or_else(short)?;
            at += n;
            Ok(part)
        };
        let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let metrics = u32_of(take(4)?) as usize;
        let mut heads = Vec::with_capacity(metrics.min(1 << 16));
        let mut total = 0usize;
        for _ in 0..metrics {
            let len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| short())?) as usize;
            let name = std::str::from_utf8(take(len)?).map_err(|e| e.to_string())?;
            let unit = i32::from_le_bytes(take(4)?.try_into().map_err(|_| short())?);
            let rows = u32_of(take(4)?) as usize;
            total = total.checked_add(rows).ok_or_else(short)?;
            heads.push((Arc::<str>::from(name), unit, rows));
        }
        let mut stream = || -> Result<&[u8], String> {
            let len = u32_of(take(4)?) as usize;
            take(len)
        };
        let ts: Vec<i64> = simple_decompress(stream()?).map_err(|e| e.to_string())?;
        let min: Vec<f64> = simple_decompress(stream()?).map_err(|e| e.to_string())?;
        let max: Vec<f64> = simple_decompress(stream()?).map_err(|e| e.to_string())?;
        let sum: Vec<f64> = simple_decompress(stream()?).map_err(|e| e.to_string())?;
        let count: Vec<u32> = simple_decompress(stream()?).map_err(|e| e.to_string())?;
        if [min.len(), max.len(), sum.len(), count.len(), ts.len()] != [total; 5] {
            return Err(format!("rollup streams do not hold {total} rows"));
        }
        let mut buckets: Vec<i64> = ts
            .iter()
            .copied()
            .filter(|t| (start..=end).contains(t))
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        let mut cols = Cols::new(buckets.len());
        let mut row = 0;
        for (name, unit, rows) in heads {
            let range = row..row + rows;
            row += rows;
            if !keep(&name) {
                continue;
            }
            let out = cols.get(&name, unit);
            for i in range {
                if let Ok(b) = buckets.binary_search(&ts[i]) {
                    out.add(b, min[i], max[i], sum[i], count[i]);
                }
            }
        }
        Ok(Rollup {
            ts: buckets,
            cols: cols.cols,
        })
    }

    /// Response chunks: one row per bucket, values the averages, with min, max and count; at
    /// most about `max_cells` in all (the last chunk `truncated` when buckets were left out).
    pub(crate) fn into_chunks(self, max_cells: usize, sparse_ok: bool) -> Vec<RangeChunk> {
        let per_row = 1 + 4 * self.cols.len();
        let step = (CHUNK_CELLS / per_row).max(1);
        let mut out: Vec<RangeChunk> = Vec::new();
        let mut cells = 0;
        let mut lo = 0;
        while lo < self.ts.len() {
            let hi = (lo + step).min(self.ts.len());
            let chunk = RangeChunk {
                timestamps_ms: self.ts[lo..hi].to_vec(),
                columns: self
                    .cols
                    .iter()
                    .filter_map(|c| column(c, lo, hi, sparse_ok))
                    .collect(),
                truncated: false,
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
        out
    }
}

/// Rows `lo..hi` of a metric as a response column (sparse when fewer than half hold a value
/// and the client reads that), or `None` when none does.
fn column(c: &RollupCol, lo: usize, hi: usize, sparse_ok: bool) -> Option<Column> {
    let held: Vec<usize> = (lo..hi).filter(|&i| c.count[i] > 0).collect();
    if held.is_empty() {
        return None;
    }
    let avg = |i: usize| c.sum[i] / f64::from(c.count[i]);
    let rows = hi - lo;
    if sparse_ok && held.len() * 2 < rows {
        return Some(Column {
            name: c.name.to_string(),
            unit: c.unit,
            values: held.iter().map(|&i| avg(i)).collect(),
            rows: held.iter().map(|&i| (i - lo) as u32).collect(),
            min: held.iter().map(|&i| c.min[i]).collect(),
            max: held.iter().map(|&i| c.max[i]).collect(),
            count: held.iter().map(|&i| c.count[i]).collect(),
        });
    }
    let pick = |f: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (lo..hi)
            .map(|i| if c.count[i] > 0 { f(i) } else { f64::NAN })
            .collect()
    };
    Some(Column {
        name: c.name.to_string(),
        unit: c.unit,
        values: pick(&avg),
        rows: Vec::new(),
        min: pick(&|i| c.min[i]),
        max: pick(&|i| c.max[i]),
        count: c.count[lo..hi].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::frame::FrameBuilder;

    fn raw() -> Frame {
        let mut b = FrameBuilder::default();
        // Two minutes at 20 s; `b` only in the first minute.
        for (i, t) in [0i64, 20_000, 40_000, 60_000, 80_000, 100_000]
            .iter()
            .enumerate()
        {
            let v = i as f64;
            if i < 3 {
                b.row(*t, [("a", 1, v), ("b", 2, 10.0 * v)]);
            } else {
                b.row(*t, [("a", 1, v)]);
            }
        }
        b.finish()
    }

    #[test]
    fn rows_roll_up_per_minute_and_parts_combine_exactly() {
        let r = Rollup::of(&raw(), ROLLUP_MS);
        assert_eq!(r.ts, vec![0, 60_000]);
        let a = &r.cols[0];
        assert_eq!(
            (a.min.clone(), a.max.clone()),
            (vec![0.0, 3.0], vec![2.0, 5.0])
        );
        assert_eq!(
            (a.sum.clone(), a.count.clone()),
            (vec![3.0, 12.0], vec![3, 3])
        );
        assert_eq!(r.cols[1].count, vec![3, 0]);
        // The same rows rolled up in two parts (split inside the first minute) combine to it.
        let f = raw();
        let first = f.clone().slice(0, 20_000);
        let rest = f.slice(40_000, 100_000);
        let parts = Rollup::combine(
            vec![Rollup::of(&rest, ROLLUP_MS), Rollup::of(&first, ROLLUP_MS)],
            ROLLUP_MS,
        );
        assert_eq!(parts, r);
        // Into one 2-minute bucket.
        let wide = Rollup::combine(vec![r.clone()], 120_000);
        assert_eq!(wide.ts, vec![0]);
        assert_eq!(wide.cols[0].count, vec![6]);
        assert_eq!(wide.cols[0].sum, vec![15.0]);
        // Stored and read back, whole and in part.
        let bytes = r.encode().unwrap();
        assert_eq!(
            Rollup::decode(&bytes, i64::MIN, i64::MAX, &mut |_| true),
            Ok(r.clone())
        );
        let part = Rollup::decode(&bytes, 60_000, 60_000, &mut |n| n == "a").unwrap();
        assert_eq!(part.ts, vec![60_000]);
        assert_eq!(part.cols.len(), 1);
        assert_eq!(part.cols[0].sum, vec![12.0]);
        assert!(Rollup::decode(&bytes[..bytes.len() - 1], 0, 1, &mut |_| true).is_err());
        assert!(Rollup::decode(&[], 0, 1, &mut |_| true).is_err());
    }

    #[test]
    fn chunks_carry_averages_with_min_max_and_count() {
        let r = Rollup::of(&raw(), ROLLUP_MS);
        let chunks = r.into_chunks(usize::MAX, true);
        assert_eq!(chunks.len(), 1);
        let a = &chunks[0].columns[0];
        assert_eq!(a.values, vec![1.0, 4.0]);
        assert_eq!(
            (a.min.clone(), a.max.clone()),
            (vec![0.0, 3.0], vec![2.0, 5.0])
        );
        assert_eq!(a.count, vec![3, 3]);
        let b = &chunks[0].columns[1];
        assert_eq!(b.value_at(0), Some(10.0));
        assert_eq!(b.value_at(1), None, "b only in the first minute");
    }
}
