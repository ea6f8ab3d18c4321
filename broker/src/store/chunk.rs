//! The values of the Redis compact layout (`keys.rs`): a closed window's chunk and an open
//! window's rows.
//!
//! A chunk is `"RWC1"`, the CRC32 of the rest (u32 little-endian), then one section in the
//! embedded store's block format (`block.rs`: timestamps delta-of-delta and values compressed
//! with pco, names inline), so both stores share one codec. An open row is the id of its
//! snapshot's name list (u32) and its values as little-endian f64s, stored under its timestamp.

use super::block;
use super::frame::{Frame, FrameBuilder};
use crate::error::StoreError;

const MAGIC: &[u8; 4] = b"RWC1";
/// Header bytes before the section: magic and CRC.
pub(crate) const HEADER: usize = 8;

/// A frame's rows (at least one) as a chunk.
pub(crate) fn encode(frame: &Frame) -> Result<Vec<u8>, StoreError> {
    let section = block::encode_section(frame)?;
    let mut out = Vec::with_capacity(HEADER + section.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&section).to_le_bytes());
    out.extend_from_slice(&section);
    Ok(out)
}

/// The CRC bytes of a chunk, as the merge script and the day rollups compare them.
pub(crate) fn crc_bytes(chunk: &[u8]) -> &[u8] {
    chunk.get(4..HEADER).unwrap_or_default()
}

/// The section of a chunk, checked: a wrong magic or CRC is an error, never data.
pub(crate) fn section(chunk: &[u8]) -> Result<&[u8], String> {
    if chunk.len() < HEADER || &chunk[..4] != MAGIC {
        return Err("not a chunk (bad magic)".into());
    }
    let crc = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
    let section = &chunk[HEADER..];
    if crc32fast::hash(section) != crc {
        return Err("chunk CRC mismatch".into());
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
