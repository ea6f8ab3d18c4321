//! The values of the Redis compact layout (`keys.rs`): a closed window's chunk and an open
//! window's rows.
//!
//! A chunk is `"RWC1"`, the CRC32 of everything after these 8 bytes, the length and the CRC32
//! of its rollup section, the rollup section (the window's 1-minute rollups, `rollup.rs`), then
//! the rows' section in the embedded store's block format (`block.rs`: timestamps
//! delta-of-delta and values compressed with pco, names inline), so both stores share one
//! codec; the rollups come first so a long range reads only them (`GETRANGE`). An open row
//! is the id of its snapshot's name list (u32) and its values as little-endian f64s, stored
//! under its timestamp.

use super::block;
use super::frame::{Frame, FrameBuilder};
use super::rollup::{ROLLUP_MS, Rollup};
use crate::error::StoreError;

const MAGIC: &[u8; 4] = b"RWC1";
/// Bytes before the rollup section: magic, CRC, rollup length and CRC.
pub(crate) const HEADER: usize = 16;

/// A frame's rows (at least one) as a chunk, with their rollups.
pub(crate) fn encode(frame: &Frame) -> Result<Vec<u8>, StoreError> {
    let rollup = Rollup::of(frame, ROLLUP_MS).encode()?;
    let rows = block::encode_section(frame)?;
    let mut out = Vec::with_capacity(HEADER + rollup.len() + rows.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(rollup.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&rollup).to_le_bytes());
    out.extend_from_slice(&rollup);
    out.extend_from_slice(&rows);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The CRC bytes of a chunk, as the merge script compares them.
pub(crate) fn crc_bytes(chunk: &[u8]) -> &[u8] {
    chunk.get(4..8).unwrap_or_default()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The rows' section of a chunk, checked: a wrong magic or CRC is an error, never data.
pub(crate) fn section(chunk: &[u8]) -> Result<&[u8], String> {
    if chunk.len() < HEADER || &chunk[..4] != MAGIC {
        return Err("not a chunk (bad magic)".into());
    }
    if crc32fast::hash(&chunk[8..]) != u32_at(chunk, 4) {
        return Err("chunk CRC mismatch".into());
    }
    chunk
        .get(HEADER + u32_at(chunk, 8) as usize..)
        .ok_or_else(|| "rollup section past the chunk's end".into())
}

/// The rollup section of a chunk, or of its first `HEADER` + rollup length bytes (what the
/// rollup read takes), checked by its own CRC.
pub(crate) fn rollup_section(prefix: &[u8]) -> Result<&[u8], String> {
    if prefix.len() < HEADER || &prefix[..4] != MAGIC {
        return Err("not a chunk (bad magic)".into());
    }
    let len = u32_at(prefix, 8) as usize;
    let section = prefix
        .get(HEADER..HEADER + len)
        .ok_or("rollup section cut short")?;
    if crc32fast::hash(section) != u32_at(prefix, 12) {
        return Err("rollup CRC mismatch".into());
    }
    Ok(section)
}

/// A chunk's rows in `[start, end]`, the columns `keep` selects.
pub(crate) fn decode(
    chunk: &[u8],
    start: i64,
    end: i64,
    keep: &mut impl FnMut(&str) -> bool,
) -> Result<Frame, String> {
    block::decode_section(section(chunk)?, start, end, keep)
}

/// A chunk's rollups for buckets starting in `[start, end]`, the metrics `keep` selects.
pub(crate) fn decode_rollup(
    prefix: &[u8],
    start: i64,
    end: i64,
    keep: &mut impl FnMut(&str) -> bool,
) -> Result<Rollup, String> {
    Rollup::decode(rollup_section(prefix)?, start, end, keep)
}

/// An open row: the name list's id and the values.
pub(crate) fn encode_row(schema: u32, values: impl ExactSizeIterator<Item = f64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * values.len());
    out.extend_from_slice(&schema.to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// An open row's name-list id and values; `None` for a malformed one.
pub(crate) fn decode_row(row: &[u8]) -> Option<(u32, impl Iterator<Item = f64> + '_)> {
    if row.len() < 4 || !(row.len() - 4).is_multiple_of(8) {
        return None;
    }
    let id = u32::from_le_bytes([row[0], row[1], row[2], row[3]]);
    let values = row[4..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    Some((id, values))
}

/// Adds an open row to `b`, the names from its list (`names[i]` names value i), keeping the
/// names `keep` selects. False when the row is malformed or does not fit its list.
pub(crate) fn add_row(
    b: &mut FrameBuilder,
    ts: i64,
    row: &[u8],
    names: &[(String, i32)],
    keep: &mut impl FnMut(&str) -> bool,
) -> bool {
    let Some((_, values)) = decode_row(row) else {
        return false;
    };
    if (row.len() - 4) / 8 != names.len() {
        return false;
    }
    b.row(
        ts,
        names
            .iter()
            .zip(values)
            .filter(|((n, _), _)| keep(n))
            .map(|((n, u), v)| (n.as_str(), *u, v)),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips_and_a_flipped_byte_is_refused() {
        let mut b = FrameBuilder::default();
        for t in 0..100i64 {
            b.row(
                1_000 * t,
                [("cpu", 1, t as f64 * 0.5), ("mem", 2, 1e9 + t as f64)],
            );
        }
        let frame = b.finish();
        let bytes = encode(&frame).unwrap();
        let back = decode(&bytes, i64::MIN, i64::MAX, &mut |_| true).unwrap();
        assert_eq!(back, frame);
        let part = decode(&bytes, 10_000, 19_000, &mut |n| n == "mem").unwrap();
        assert_eq!(part.ts.len(), 10);
        assert_eq!(part.cols.len(), 1);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(&bad, i64::MIN, i64::MAX, &mut |_| true).is_err());
        assert!(decode(b"RWC1", 0, 1, &mut |_| true).is_err());
        assert_eq!(crc_bytes(&bytes), &bytes[4..8]);
        // The rollups, from the chunk's prefix alone.
        let len = HEADER + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let r = decode_rollup(&bytes[..len], i64::MIN, i64::MAX, &mut |n| n == "cpu").unwrap();
        assert_eq!(r, {
            let mut want = Rollup::of(&frame, ROLLUP_MS);
            want.cols.retain(|c| &*c.name == "cpu");
            want
        });
        assert_eq!(r.ts.len(), 2, "100 s of rows: two minutes");
        assert!(decode_rollup(&bytes[..len - 1], 0, i64::MAX, &mut |_| true).is_err());
    }

    #[test]
    fn rows_round_trip_and_a_row_that_does_not_fit_its_list_is_refused() {
        let row = encode_row(7, [1.5, -2.0].into_iter());
        let (id, values) = decode_row(&row).unwrap();
        assert_eq!((id, values.collect::<Vec<_>>()), (7, vec![1.5, -2.0]));
        let names = vec![("a".to_string(), 1), ("b".to_string(), 1)];
        let mut b = FrameBuilder::default();
        assert!(add_row(&mut b, 5, &row, &names, &mut |n| n == "b"));
        assert!(!add_row(&mut b, 6, &row, &names[..1], &mut |_| true));
        assert!(!add_row(&mut b, 6, &row[..5], &names, &mut |_| true));
        let f = b.finish();
        assert_eq!(f.ts, vec![5]);
        assert_eq!(f.cols.len(), 1);
        assert_eq!(f.cols[0].values, vec![-2.0]);
    }
}
