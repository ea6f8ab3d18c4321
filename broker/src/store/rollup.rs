//! Rollups: per host and metric, the lowest and highest value, the sum and the count of the raw
//! values in each minute. Made when rows are compressed (a Redis chunk closed: `chunk.rs`; a
//! day's blocks merged: `block.rs`, there in minutes or ten minutes by the rows' density),
//! read for ranges asked with a step (`RangeRequest.step_ms`), and combined into buckets of
//! that step. Parts of one bucket made apart (rows cut to a block at different times, an open
//! window beside closed ones) combine exactly: min of mins, max of maxes, sums and counts added.
//!
//! Stored per host and UTC day (`encode_day`; the Redis compact layout keeps one per day in
//! `monitor:rollup:{host}:{day}`), metric by metric so a read decodes only the metrics it asks
//! for, each a stream long enough to compress well:
//!
//! ```text
//! "RWD1", windows u32, index length u32, 0u32
//! CRCs of the chunks it was made from (windows × 4 bytes; zeros where a window had none)
//! index: metrics u32, per metric: name (u16 len + UTF-8), unit i32, offset u32, len u32, crc u32
//! per metric: bitmap of the day's 1440 minutes it has (180 bytes),
//!             len u32 + pco f64 of its mins, then maxes, sums and counts
//! ```

use std::sync::Arc;

use foldhash::HashMap;
use pco::ChunkConfig;
use pco::standalone::{simple_compress, simple_decompress};
use ringwatch_proto::{Column, RangeChunk};

use super::frame::{Frame, FrameCol, chunked, response_column};
use crate::error::StoreError;

/// Width of a stored rollup bucket (ms).
pub use ringwatch_proto::ROLLUP_MS;
/// A day (UTC), the span of one stored rollup.
pub const DAY_MS: i64 = 86_400_000;
const MINUTES: usize = (DAY_MS / ROLLUP_MS) as usize;
const DAY_MAGIC: &[u8; 4] = b"RWD1";
/// Bytes of a day rollup before its CRC list.
pub const DAY_HEADER: usize = 16;

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

    /// As rows of a block section (`block.rs` stores it beside the raw rows): per metric four
    /// columns of its name and unit, its mins, maxes, sums and counts, NaN where it has none.
    pub(crate) fn to_frame(&self) -> Frame {
        let mut cols = Vec::with_capacity(4 * self.cols.len());
        for c in &self.cols {
            let held = |v: &[f64]| -> Vec<f64> {
                v.iter()
                    .zip(&c.count)
                    .map(|(&x, &n)| if n > 0 { x } else { f64::NAN })
                    .collect()
            };
            let counts: Vec<f64> = c.count.iter().map(|&n| f64::from(n)).collect();
            for values in [held(&c.min), held(&c.max), held(&c.sum), held(&counts)] {
                cols.push(FrameCol {
                    name: c.name.clone(),
                    unit: c.unit,
                    values,
                });
            }
        }
        Frame {
            ts: self.ts.clone(),
            cols,
        }
    }

    /// Back from [`Rollup::to_frame`]'s rows (any of its rows, any of its metrics).
    pub(crate) fn from_frame(f: Frame) -> Result<Rollup, String> {
        if !f.cols.len().is_multiple_of(4) {
            return Err(format!(
                "{} rollup columns, not four per metric",
                f.cols.len()
            ));
        }
        let rows = f.ts.len();
        let mut cols = Vec::with_capacity(f.cols.len() / 4);
        let mut it = f.cols.into_iter();
        while let (Some(min), Some(max), Some(sum), Some(count)) =
            (it.next(), it.next(), it.next(), it.next())
        {
            if [&max, &sum, &count].iter().any(|c| c.name != min.name) {
                return Err(format!("rollup columns of {} out of order", min.name));
            }
            let mut out = RollupCol::new(min.name, min.unit, rows);
            for i in 0..rows {
                let n = count.values[i];
                if n.is_nan() || n < 1.0 {
                    continue;
                }
                out.add(i, min.values[i], max.values[i], sum.values[i], n as u32);
            }
            cols.push(out);
        }
        Ok(Rollup { ts: f.ts, cols })
    }

    /// Cells of its answer: a timestamp and four values per metric and bucket.
    pub(crate) fn cells(&self) -> usize {
        self.ts.len() * (1 + 4 * self.cols.len())
    }

    /// Response chunks: one row per bucket, values the averages, with min, max and count; at
    /// most about `max_cells` in all (the last chunk `truncated` when buckets were left out).
    pub(crate) fn into_chunks(self, max_cells: usize, sparse_ok: bool) -> Vec<RangeChunk> {
        chunked(self.ts.len(), 4 * self.cols.len(), max_cells, |lo, hi| {
            RangeChunk {
                timestamps_ms: self.ts[lo..hi].to_vec(),
                columns: self
                    .cols
                    .iter()
                    .filter_map(|c| column(c, lo, hi, sparse_ok))
                    .collect(),
                truncated: false,
                missing_brokers: Vec::new(),
            }
        })
    }
}

/// One metric's entry in a day rollup's index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DayEntry {
    pub(crate) name: String,
    pub(crate) unit: i32,
    offset: u32,
    len: u32,
    crc: u32,
}

fn codec_err(e: pco::errors::PcoError) -> StoreError {
    StoreError::Unavailable(format!("rollup codec: {e}"))
}

/// A day's rollups (`r`'s buckets all in the day starting at `day`) as stored, with the CRCs
/// of the chunks they were made from.
pub(crate) fn encode_day(day: i64, crcs: &[[u8; 4]], r: &Rollup) -> Result<Vec<u8>, StoreError> {
    let minutes: Vec<usize> =
        r.ts.iter()
            .map(|&t| ((t - day) / ROLLUP_MS).clamp(0, MINUTES as i64 - 1) as usize)
            .collect();
    let cfg = ChunkConfig::default().with_compression_level(4);
    let mut index = Vec::new();
    let mut data = Vec::new();
    index.extend_from_slice(&(r.cols.len() as u32).to_le_bytes());
    for c in &r.cols {
        let mut bits = vec![0u8; MINUTES.div_ceil(8)];
        let mut values = Vec::with_capacity(4 * c.count.len());
        let held: Vec<usize> = (0..c.count.len()).filter(|&i| c.count[i] > 0).collect();
        for &i in &held {
            bits[minutes[i] / 8] |= 1 << (minutes[i] % 8);
        }
        for v in [&c.min, &c.max, &c.sum] {
            values.extend(held.iter().map(|&i| v[i]));
        }
        values.extend(held.iter().map(|&i| f64::from(c.count[i])));
        let packed = simple_compress(&values, &cfg).map_err(codec_err)?;
        let mut section = bits;
        section.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        section.extend_from_slice(&packed);
        let name = c.name.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        index.extend_from_slice(&(name.len() as u16).to_le_bytes());
        index.extend_from_slice(name);
        index.extend_from_slice(&c.unit.to_le_bytes());
        index.extend_from_slice(&(data.len() as u32).to_le_bytes());
        index.extend_from_slice(&(section.len() as u32).to_le_bytes());
        index.extend_from_slice(&crc32fast::hash(&section).to_le_bytes());
        data.extend_from_slice(&section);
    }
    let mut out = Vec::with_capacity(DAY_HEADER + 4 * crcs.len() + index.len() + data.len());
    out.extend_from_slice(DAY_MAGIC);
    out.extend_from_slice(&(crcs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for c in crcs {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    Ok(out)
}

/// The index of a day rollup from its first bytes (through the index), with the CRC list.
pub(crate) fn parse_day_index(prefix: &[u8]) -> Result<(Vec<[u8; 4]>, Vec<DayEntry>), String> {
    let short = || "day rollup ends early".to_string();
    if prefix.len() < DAY_HEADER || &prefix[..4] != DAY_MAGIC {
        return Err("not a day rollup (bad magic)".into());
    }
    let u32_at = |at: usize| -> Result<u32, String> {
        let b = prefix.get(at..at + 4).ok_or_else(short)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let windows = u32_at(4)? as usize;
    let crcs = (0..windows)
        .map(|w| {
            let b = prefix
                .get(DAY_HEADER + 4 * w..DAY_HEADER + 4 * w + 4)
                .ok_or_else(short)?;
            Ok([b[0], b[1], b[2], b[3]])
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut at = DAY_HEADER + 4 * windows;
    let metrics = u32_at(at)? as usize;
    at += 4;
    let mut entries = Vec::with_capacity(metrics.min(1 << 16));
    for _ in 0..metrics {
        let len = prefix.get(at..at + 2).ok_or_else(short)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        at += 2;
        let name = std::str::from_utf8(prefix.get(at..at + len).ok_or_else(short)?)
            .map_err(|e| e.to_string())?
            .to_string();
        at += len;
        let unit = u32_at(at)? as i32;
        entries.push(DayEntry {
            name,
            unit,
            offset: u32_at(at + 4)?,
            len: u32_at(at + 8)?,
            crc: u32_at(at + 12)?,
        });
        at += 16;
    }
    Ok((crcs, entries))
}

/// Adds one metric's section of the day starting at `day` to `parts` as a rollup of its
/// buckets in `[start, end]`, checked by its CRC.
pub(crate) fn decode_day_metric(
    day: i64,
    entry: &DayEntry,
    section: &[u8],
    start: i64,
    end: i64,
) -> Result<Rollup, String> {
    if section.len() != entry.len as usize || crc32fast::hash(section) != entry.crc {
        return Err(format!("day rollup of {}: CRC mismatch", entry.name));
    }
    let bits = section
        .get(..MINUTES.div_ceil(8))
        .ok_or("day rollup section too short")?;
    let minutes: Vec<usize> = (0..MINUTES)
        .filter(|&m| bits[m / 8] & (1 << (m % 8)) != 0)
        .collect();
    let rest = &section[bits.len()..];
    let len = rest
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("day rollup section too short")?;
    let values: Vec<f64> =
        simple_decompress(rest.get(4..4 + len).ok_or("day rollup section too short")?)
            .map_err(|e| e.to_string())?;
    let n = minutes.len();
    if values.len() != 4 * n {
        return Err(format!("{} rollup values for {n} minutes", values.len()));
    }
    let rows: Vec<usize> = (0..n)
        .filter(|&i| (start..=end).contains(&(day + minutes[i] as i64 * ROLLUP_MS)))
        .collect();
    Ok(Rollup {
        ts: rows
            .iter()
            .map(|&i| day + minutes[i] as i64 * ROLLUP_MS)
            .collect(),
        cols: vec![RollupCol {
            name: Arc::from(entry.name.as_str()),
            unit: entry.unit,
            min: rows.iter().map(|&i| values[i]).collect(),
            max: rows.iter().map(|&i| values[n + i]).collect(),
            sum: rows.iter().map(|&i| values[2 * n + i]).collect(),
            count: rows.iter().map(|&i| values[3 * n + i] as u32).collect(),
        }],
    })
}

/// Where one metric's section lies in a day rollup.
#[cfg(test)]
pub(crate) fn day_section_range(
    crcs: usize,
    index_len: usize,
    e: &DayEntry,
) -> std::ops::Range<usize> {
    let data = DAY_HEADER + 4 * crcs + index_len;
    data + e.offset as usize..data + e.offset as usize + e.len as usize
}

/// Rows `lo..hi` of a metric as a response column of averages, sparse or dense as
/// [`response_column`] decides, with its min, max and count at the same places; `None` when no
/// bucket there has a value.
fn column(c: &RollupCol, lo: usize, hi: usize, sparse_ok: bool) -> Option<Column> {
    let held = |i: usize| c.count[i] > 0;
    if !(lo..hi).any(held) {
        return None;
    }
    let nan_unless_held = |i: usize, v: f64| if held(i) { v } else { f64::NAN };
    let avg: Vec<f64> = (lo..hi)
        .map(|i| nan_unless_held(i, c.sum[i] / f64::from(c.count[i].max(1))))
        .collect();
    let mut col = response_column(c.name.to_string(), c.unit, hi - lo, 0, &avg, sparse_ok);
    // The buckets the column lists: the sparse form's rows, or every one.
    let at: Vec<usize> = if col.rows.is_empty() {
        (lo..hi).collect()
    } else {
        col.rows.iter().map(|&r| lo + r as usize).collect()
    };
    col.min = at.iter().map(|&i| nan_unless_held(i, c.min[i])).collect();
    col.max = at.iter().map(|&i| nan_unless_held(i, c.max[i])).collect();
    col.count = at.iter().map(|&i| c.count[i]).collect();
    Some(col)
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
        // A day's rollups stored and read back, metric by metric, whole and in part.
        let crcs = [[1, 2, 3, 4], [0; 4]];
        let bytes = encode_day(0, &crcs, &r).unwrap();
        let index_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let (got_crcs, entries) = parse_day_index(&bytes[..DAY_HEADER + 8 + index_len]).unwrap();
        assert_eq!(got_crcs, crcs);
        assert_eq!(entries.len(), 2);
        let parts: Vec<Rollup> = entries
            .iter()
            .map(|e| {
                let s = &bytes[day_section_range(2, index_len, e)];
                decode_day_metric(0, e, s, i64::MIN, i64::MAX).unwrap()
            })
            .collect();
        assert_eq!(Rollup::combine(parts, ROLLUP_MS), r);
        let a = &entries[0];
        let s = &bytes[day_section_range(2, index_len, a)];
        let late = decode_day_metric(0, a, s, 60_000, 60_000).unwrap();
        assert_eq!(
            (late.ts.clone(), late.cols[0].sum.clone()),
            (vec![60_000], vec![12.0])
        );
        let mut bad = s.to_vec();
        bad[0] ^= 1;
        assert!(decode_day_metric(0, a, &bad, 0, 1).is_err());
        assert!(parse_day_index(&bytes[..20]).is_err());
    }

    #[test]
    fn a_rollup_stored_as_rows_of_four_columns_a_metric_reads_back_the_same() {
        let r = Rollup::of(&raw(), ROLLUP_MS);
        let f = r.to_frame();
        assert_eq!(f.cols.len(), 8);
        assert!(
            f.cols[4].values[1].is_nan(),
            "b has no value in the second minute"
        );
        assert_eq!(Rollup::from_frame(f.clone()).unwrap(), r);
        // One metric, one minute, as a block read selects them.
        let b = Frame {
            ts: f.ts.clone(),
            cols: f.cols[4..].to_vec(),
        }
        .slice(0, 0);
        let back = Rollup::from_frame(b).unwrap();
        assert_eq!(
            (back.ts.clone(), back.cols[0].sum.clone()),
            (vec![0], vec![30.0])
        );
        let mut bad = f.clone();
        bad.cols.pop();
        assert!(Rollup::from_frame(bad).is_err());
        bad = f;
        bad.cols.swap(0, 4);
        assert!(Rollup::from_frame(bad).is_err());
    }

    #[test]
    fn a_rollup_from_raw_pages_equals_one_from_all_rows_and_stops_at_its_bound() {
        use crate::store::{RangeQuery, RawRollup};
        let q = RangeQuery {
            host_id: "h".into(),
            start_ms: 10_000,
            end_ms: 100_000,
            metric_names: vec![],
            limit: 10,
            max_cells: usize::MAX,
            sparse_ok: false,
            step_ms: 60_000,
        };
        let all = raw();
        let mut r = RawRollup::new(&q);
        let first = r.next_query().unwrap();
        assert_eq!(
            (first.start_ms, first.step_ms),
            (0, 0),
            "from the first bucket, raw"
        );
        // Two pages: the first cut short after 40 s.
        let mut page = all
            .clone()
            .slice(0, 40_000)
            .into_chunks(usize::MAX, usize::MAX, false);
        page.last_mut().unwrap().truncated = true;
        r.take(&page);
        assert_eq!(r.next_query().unwrap().start_ms, 40_001);
        r.take(
            &all.clone()
                .slice(40_001, 100_000)
                .into_chunks(usize::MAX, usize::MAX, false),
        );
        assert!(r.next_query().is_none());
        let want = Rollup::of(&all, 60_000).into_chunks(usize::MAX, false);
        // Compared as text: NaN (no value) is not equal to itself.
        assert_eq!(format!("{:?}", r.finish()), format!("{want:?}"));
        // An answer past max_cells stops, truncated.
        let mut r = RawRollup::new(&RangeQuery { max_cells: 3, ..q });
        r.take(&page);
        assert!(r.next_query().is_none());
        assert!(r.finish().last().unwrap().truncated);
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
