//! The embedded store's write-ahead log: append-only segment files of CRC-checked records.
//!
//! Record frame: `len: u32 LE` (of kind + payload), `crc32: u32 LE` (of kind + payload),
//! `kind: u8`, payload (a protobuf message). A segment is closed when it reaches the size limit;
//! closed segments whose newest timestamp is older than the retention cutoff are deleted whole,
//! which is how retention reaches the disk. A torn tail left by a crash is truncated on replay.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// What the log can hold: a protobuf message, encoded as is.
pub(crate) trait Record {
    fn encode_record(&self, buf: &mut Vec<u8>);
}

impl<M: prost::Message> Record for &M {
    fn encode_record(&self, buf: &mut Vec<u8>) {
        self.encode_raw(buf);
    }
}

/// A snapshot as the log keeps it: a `Snapshot` message without the metrics' window
/// statistics. Those travel with live data and `Latest` only; what is stored is the raw values,
/// from which rollups derive min, max and average (the agent's window is its last N raw values
/// at the same interval). It decodes as a `Snapshot` whose `window`s are absent.
pub(crate) struct LoggedSnapshot<'a>(pub(crate) &'a ringwatch_proto::Snapshot);

impl Record for LoggedSnapshot<'_> {
    fn encode_record(&self, buf: &mut Vec<u8>) {
        use prost::encoding::{WireType, double, encode_key, encode_varint, int32, int64, string};
        let s = self.0;
        if !s.host_id.is_empty() {
            string::encode(1, &s.host_id, buf);
        }
        if s.timestamp_ms != 0 {
            int64::encode(2, &s.timestamp_ms, buf);
        }
        for m in &s.metrics {
            let len = if m.name.is_empty() {
                0
            } else {
                string::encoded_len(1, &m.name)
            } + if m.value.to_bits() == 0 {
                0
            } else {
                double::encoded_len(2, &m.value)
            } + if m.unit == 0 {
                0
            } else {
                int32::encoded_len(3, &m.unit)
            };
            encode_key(3, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            if !m.name.is_empty() {
                string::encode(1, &m.name, buf);
            }
            if m.value.to_bits() != 0 {
                double::encode(2, &m.value, buf);
            }
            if m.unit != 0 {
                int32::encode(3, &m.unit, buf);
            }
        }
    }
}

pub(crate) const KIND_SNAPSHOT: u8 = 1;
pub(crate) const KIND_HOST: u8 = 2;

const HEADER: usize = 8;
/// A record larger than this is corruption, not data.
const MAX_RECORD: u32 = 64 << 20;

struct Segment {
    seq: u64,
    path: PathBuf,
    max_ts: i64,
    /// Newest timestamp of a snapshot record (registry records left out): once blocks hold
    /// every row older than the cut floor, a closed segment below it is dropped.
    max_data_ts: i64,
    bytes: u64,
}

/// What replay found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayStats {
    pub records: u64,
    pub corrupt_tails: u64,
}

pub(crate) struct Wal {
    dir: PathBuf,
    closed: Vec<Segment>,
    active: Segment,
    file: File,
    max_segment_bytes: u64,
    scratch: Vec<u8>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

fn parse_seq(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

impl Wal {
    /// Opens (creating) the log in `dir`, calling `apply(kind, payload)` for every intact record
    /// in order, and returns the log ready for appends. `ts_of(kind, payload)` gives a record's
    /// timestamp for retention bookkeeping.
    pub(crate) fn open(
        dir: &Path,
        max_segment_bytes: u64,
        mut apply: impl FnMut(u8, &[u8]) -> i64,
    ) -> Result<(Wal, ReplayStats), StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)
            .map_err(|e| StoreError::io(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(parse_seq))
            .collect();
        seqs.sort_unstable();

        let mut stats = ReplayStats::default();
        let mut closed = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            let path = segment_path(dir, seq);
            let (good_len, max_ts, max_data_ts, records, torn) = replay_segment(&path, &mut apply)?;
            stats.records += records;
            if torn {
                stats.corrupt_tails += 1;
                tracing::warn!(path = %path.display(), good_len, "WAL segment has a torn or corrupt tail; truncating it");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| StoreError::io(&path, e))?;
                f.set_len(good_len).map_err(|e| StoreError::io(&path, e))?;
            }
            closed.push(Segment {
                seq,
                path,
                max_ts,
                max_data_ts,
                bytes: good_len,
            });
        }
        let next = seqs.last().map_or(1, |s| s + 1);
        let (active, file) = create_segment(dir, next)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                closed,
                active,
                file,
                max_segment_bytes,
                scratch: Vec::with_capacity(64 << 10),
            },
            stats,
        ))
    }

    /// Appends records of one kind, each with its timestamp, with one `write` call.
    pub(crate) fn append<R: Record>(
        &mut self,
        kind: u8,
        records: impl IntoIterator<Item = (i64, R)>,
    ) -> Result<(), StoreError> {
        self.scratch.clear();
        for (ts, msg) in records {
            let start = self.scratch.len();
            self.scratch.extend_from_slice(&[0u8; HEADER]);
            self.scratch.push(kind);
            msg.encode_record(&mut self.scratch);
            let body = &self.scratch[start + HEADER..];
            let len = body.len() as u32;
            let crc = crc32fast::hash(body);
            self.scratch[start..start + 4].copy_from_slice(&len.to_le_bytes());
            self.scratch[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            self.active.max_ts = self.active.max_ts.max(ts);
            if kind == KIND_SNAPSHOT {
                self.active.max_data_ts = self.active.max_data_ts.max(ts);
            }
        }
        if let Err(e) = self.file.write_all(&self.scratch) {
            // Part of the batch may be on disk; cut it off so later records (which will be
            // acknowledged) do not sit behind a torn one that replay would stop at.
            if let Err(cut) = self.file.set_len(self.active.bytes) {
                tracing::error!(error = %cut, "cannot cut a failed write off the log; starting a new segment");
                self.rotate()?;
            }
            return Err(StoreError::io(&self.active.path, e));
        }
        self.active.bytes += self.scratch.len() as u64;
        if self.scratch.capacity() > 4 << 20 {
            self.scratch = Vec::with_capacity(64 << 10);
        }
        Ok(())
    }

    /// Whether the active segment is full and should be rotated.
    pub(crate) fn wants_rotation(&self) -> bool {
        self.active.bytes >= self.max_segment_bytes
    }

    /// Closes the active segment and opens a new one. Returns the closed segment's file, not
    /// yet fsynced: the caller syncs it (with the folder) outside the log's lock.
    pub(crate) fn rotate(&mut self) -> Result<File, StoreError> {
        let (seg, file) = create_segment(&self.dir, self.active.seq + 1)?;
        let old = std::mem::replace(&mut self.active, seg);
        let old_file = std::mem::replace(&mut self.file, file);
        self.closed.push(old);
        Ok(old_file)
    }

    /// The log's folder (fsynced after a rotation, so the new segment's name is durable).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A handle to fsync the active segment without holding the log.
    pub(crate) fn sync_handle(&self) -> Result<File, StoreError> {
        self.file
            .try_clone()
            .map_err(|e| StoreError::io(&self.active.path, e))
    }

    /// Deletes closed segments whose every record is older than `cutoff_ms`. Returns how many.
    pub(crate) fn drop_before(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut keep = Vec::with_capacity(self.closed.len());
        let mut failed = None;
        for seg in self.closed.drain(..) {
            if seg.max_ts < cutoff_ms {
                match fs::remove_file(&seg.path) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        // Kept, and tried again at the next retention pass.
                        tracing::warn!(path = %seg.path.display(), error = %e, "cannot delete an expired log segment");
                        failed.get_or_insert(StoreError::io(&seg.path, e));
                        keep.push(seg);
                    }
                }
            } else {
                keep.push(seg);
            }
        }
        self.closed = keep;
        match failed {
            Some(e) if removed == 0 => Err(e),
            _ => Ok(removed),
        }
    }

    /// Bytes on disk over all segments.
    /// The sequence number of the segment appended to now.
    pub(crate) fn active_seq(&self) -> u64 {
        self.active.seq
    }

    /// Deletes the closed segments before `below_seq` whose every snapshot is older than
    /// `floor`: the caller has made every row older than `floor` that was logged before segment
    /// `below_seq` durable elsewhere (a block). Returns how many were deleted.
    pub(crate) fn drop_covered(&mut self, below_seq: u64, floor: i64) -> usize {
        let mut removed = 0;
        self.closed.retain(|seg| {
            if seg.seq >= below_seq || seg.max_data_ts >= floor {
                return true;
            }
            match fs::remove_file(&seg.path) {
                Ok(()) => {
                    removed += 1;
                    false
                }
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "cannot delete a log segment its blocks cover; trying again at the next cut");
                    true
                }
            }
        });
        removed
    }

    pub(crate) fn disk_bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.active.bytes
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<(Segment, File), StoreError> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    Ok((
        Segment {
            seq,
            path,
            max_ts: i64::MIN,
            max_data_ts: i64::MIN,
            bytes: 0,
        },
        file,
    ))
}

/// Replays one segment: (length of the intact prefix, newest timestamp, records, torn tail?).
/// Replays one segment: its intact length, newest timestamp, newest snapshot timestamp, records
/// and whether its tail was torn.
fn replay_segment(
    path: &Path,
    apply: &mut impl FnMut(u8, &[u8]) -> i64,
) -> Result<(u64, i64, i64, u64, bool), StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut good = 0u64;
    let mut max_ts = i64::MIN;
    let mut max_data_ts = i64::MIN;
    let mut records = 0u64;
    let mut header = [0u8; HEADER];
    let mut body = Vec::new();
    loop {
        match read_full(&mut reader, &mut header) {
            Ok(0) => return Ok((good, max_ts, max_data_ts, records, false)),
            Ok(n) if n < HEADER => return Ok((good, max_ts, max_data_ts, records, true)),
            Ok(_) => {}
            Err(e) => return Err(StoreError::io(path, e)),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_RECORD {
            return Ok((good, max_ts, max_data_ts, records, true));
        }
        body.resize(len as usize, 0);
        match read_full(&mut reader, &mut body) {
            Ok(n) if n < len as usize => return Ok((good, max_ts, max_data_ts, records, true)),
            Ok(_) => {}
            Err(e) => return Err(StoreError::io(path, e)),
        }
        if crc32fast::hash(&body) != crc {
            return Ok((good, max_ts, max_data_ts, records, true));
        }
        let ts = apply(body[0], &body[1..]);
        max_ts = max_ts.max(ts);
        if body[0] == KIND_SNAPSHOT {
            max_data_ts = max_data_ts.max(ts);
        }
        records += 1;
        good += (HEADER + len as usize) as u64;
    }
}

/// Reads until `buf` is full or EOF; returns bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whose payload is a protobuf `bytes` field 1 holding `payload`.
    fn put(wal: &mut Wal, ts: i64, payload: &[u8]) {
        wal.append(KIND_SNAPSHOT, [(ts, &payload.to_vec())])
            .unwrap();
    }

    /// The payload `put` wrote, from a record.
    fn raw(p: &[u8]) -> Vec<u8> {
        prost::Message::decode(p).unwrap()
    }

    #[test]
    fn a_logged_snapshot_decodes_as_the_snapshot_without_its_window_statistics() {
        use prost::Message;
        use ringwatch_proto::{Metric, Snapshot, WindowStats};
        let snap = Snapshot {
            host_id: "h".into(),
            timestamp_ms: 1_700_000_000_123,
            metrics: vec![
                Metric {
                    name: "cpu.total.usage".into(),
                    value: 12.5,
                    unit: 1,
                    window: Some(WindowStats {
                        min: 1.0,
                        max: 20.0,
                        avg: 9.0,
                        samples: 12,
                    }),
                },
                Metric {
                    name: "zero".into(),
                    value: 0.0,
                    unit: 0,
                    window: None,
                },
            ],
        };
        let mut buf = Vec::new();
        LoggedSnapshot(&snap).encode_record(&mut buf);
        let back = Snapshot::decode(buf.as_slice()).unwrap();
        let mut want = snap.clone();
        for m in &mut want.metrics {
            m.window = None;
        }
        assert_eq!(back, want);
        assert!(
            buf.len() < snap.encoded_len(),
            "smaller than with the windows"
        );
        assert_eq!(
            buf.len(),
            want.encoded_len(),
            "the same bytes prost would write"
        );
    }

    #[test]
    fn replays_in_order_and_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, stats) = Wal::open(dir.path(), 1 << 20, |_, _| 0).unwrap();
            assert_eq!(stats.records, 0);
            put(&mut wal, 1, b"one");
            put(&mut wal, 2, b"two");
        }
        // A crash mid-write leaves half a record behind.
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);

        let mut seen = Vec::new();
        let (mut wal, stats) = Wal::open(dir.path(), 1 << 20, |k, p| {
            assert_eq!(k, KIND_SNAPSHOT);
            seen.push(raw(p));
            0
        })
        .unwrap();
        assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(stats.corrupt_tails, 1);
        put(&mut wal, 3, b"three");
        drop(wal);
        let mut seen = Vec::new();
        Wal::open(dir.path(), 1 << 20, |_, p| {
            seen.push(raw(p));
            0
        })
        .unwrap();
        assert_eq!(
            seen.len(),
            3,
            "the record after the truncation point replays"
        );
    }

    #[test]
    fn a_flipped_bit_is_detected_by_the_crc() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path(), 1 << 20, |_, _| 0).unwrap();
            put(&mut wal, 1, b"good");
            put(&mut wal, 2, b"flip");
        }
        let seg = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&seg, bytes).unwrap();
        let mut n = 0;
        let (_, stats) = Wal::open(dir.path(), 1 << 20, |_, _| {
            n += 1;
            0
        })
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(stats.corrupt_tails, 1);
    }

    #[test]
    fn rotation_and_retention_delete_only_old_closed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 10, |_, _| 0).unwrap();
        put(&mut wal, 100, b"0123456789ab");
        assert!(wal.wants_rotation());
        wal.rotate().unwrap();
        put(&mut wal, 200, b"0123456789ab");
        wal.rotate().unwrap();
        put(&mut wal, 300, b"x");
        assert_eq!(wal.drop_before(150).unwrap(), 1);
        assert_eq!(wal.drop_before(150).unwrap(), 0);
        // The active segment is never dropped, however old.
        assert_eq!(wal.drop_before(i64::MAX).unwrap(), 1);
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 1);
    }
}
