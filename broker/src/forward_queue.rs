//! The forward queue on disk (the seeds' dead-letter queue). A batch whose owner did not take
//! it after the forward's retries (1, 2 and 4 s, at whoever owns the host then) is written
//! here, durably, before the agent is told it is stored; `redeliver` sends it on to the host's
//! owner of the moment, oldest first, and it is deleted only once that owner has stored it.
//!
//! One file a batch, `<seq>.fwd`: a header (magic, version, length, CRC32 of the body) and the
//! `ForwardRequest` as protobuf. It is written to a temporary name, fsynced, renamed and the
//! folder fsynced, so a crash leaves the batch whole or absent (it was then not acknowledged).
//! At start the folder is read back: leftover temporary files are deleted, a file that does
//! not check is set aside as `<seq>.corrupt` (counted and logged, never delivered half).
//!
//! The queue is bounded in bytes, in all and per host: past either bound a batch is refused
//! (not acknowledged, so its agent keeps it and sends it again), and one host's backlog never
//! takes another's room.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prost::Message;
use ringwatch_proto::ForwardRequest;
use tokio::sync::Notify;

const MAGIC: &[u8; 4] = b"RWFQ";
const VERSION: u8 = 1;
/// Magic (4), version (1), reserved (3), body length (4), CRC32 of the body (4).
const HEADER: usize = 16;
const EXT: &str = "fwd";

/// The queue's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Bytes of every queued batch together.
    pub max_bytes: u64,
    /// Bytes of one host's queued batches.
    pub max_host_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the forward queue is full ({bytes} of {max} bytes); not stored, send it again later")]
    Full { bytes: u64, max: u64 },
    #[error(
        "host {host} has {bytes} bytes in the forward queue, its bound of {max}; not stored, \
         send it again later"
    )]
    HostFull { host: String, bytes: u64, max: u64 },
    #[error("forward queue {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("forward queue {path}: corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

fn io(path: &Path, source: std::io::Error) -> QueueError {
    QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One queued batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub host: String,
    pub bytes: u64,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Durable batches by sequence: (host, bytes).
    entries: BTreeMap<u64, (String, u64)>,
    /// Bytes of durable and reserved batches, in all and per host.
    bytes: u64,
    per_host: HashMap<String, u64>,
}

impl Inner {
    fn release(&mut self, host: &str, bytes: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(b) = self.per_host.get_mut(host) {
            *b = b.saturating_sub(bytes);
            if *b == 0 {
                self.per_host.remove(host);
            }
        }
    }
}

/// What opening found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Batches queued before the restart, to deliver.
    pub batches: usize,
    pub bytes: u64,
    /// Files that did not check, set aside.
    pub corrupt: usize,
}

pub struct ForwardQueue {
    dir: PathBuf,
    limits: QueueLimits,
    inner: Mutex<Inner>,
    /// Woken when a batch is queued.
    pushed: Notify,
}

fn encode(req: &ForwardRequest) -> Vec<u8> {
    let body = req.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn decode(bytes: &[u8]) -> Result<ForwardRequest, String> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err("not a forward-queue file".into());
    }
    if bytes[4] != VERSION {
        return Err(format!(
            "version {} (this broker reads {VERSION})",
            bytes[4]
        ));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (len, crc) = (word(8) as usize, word(12));
    let body = &bytes[HEADER..];
    if body.len() != len {
        return Err(format!("{} body bytes, the header says {len}", body.len()));
    }
    if crc32fast::hash(body) != crc {
        return Err("CRC mismatch".into());
    }
    ForwardRequest::decode(body).map_err(|e| format!("undecodable batch: {e}"))
}

fn seq_of(path: &Path) -> Option<u64> {
    if path.extension()? != EXT {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

impl ForwardQueue {
    /// Opens (or creates) the queue in `dir` and reads back what was queued before.
    pub fn open(dir: &Path, limits: QueueLimits) -> Result<(ForwardQueue, Opened), QueueError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut inner = Inner::default();
        let mut opened = Opened::default();
        for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                // Never renamed: never acknowledged.
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
                continue;
            }
            let Some(seq) = seq_of(&path) else { continue };
            inner.next = inner.next.max(seq + 1);
            let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
            match decode(&bytes) {
                Ok(req) => {
                    let n = bytes.len() as u64;
                    inner.bytes += n;
                    *inner.per_host.entry(req.host_id.clone()).or_default() += n;
                    inner.entries.insert(seq, (req.host_id, n));
                    opened.batches += 1;
                    opened.bytes += n;
                }
                Err(reason) => {
                    tracing::error!(path = %path.display(), %reason, "a forward-queue file does not check; set aside, not delivered");
                    let aside = path.with_extension("corrupt");
                    fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
                    opened.corrupt += 1;
                }
            }
        }
        let queue = ForwardQueue {
            dir: dir.to_path_buf(),
            limits,
            inner: Mutex::new(inner),
            pushed: Notify::new(),
        };
        Ok((queue, opened))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXT}"))
    }

    /// Queues `req` durably (blocking I/O); once this returns `Ok`, it survives a crash.
    pub fn push(&self, req: &ForwardRequest) -> Result<u64, QueueError> {
        let bytes = encode(req);
        let n = bytes.len() as u64;
        let host = req.host_id.clone();
        // Reserve the room first, so two writers cannot both pass a bound.
        let seq = {
            let mut inner = self.inner();
            if inner.bytes + n > self.limits.max_bytes {
                return Err(QueueError::Full {
                    bytes: inner.bytes,
                    max: self.limits.max_bytes,
                });
            }
            let held = inner.per_host.get(&host).copied().unwrap_or(0);
            if held + n > self.limits.max_host_bytes {
                return Err(QueueError::HostFull {
                    host,
                    bytes: held,
                    max: self.limits.max_host_bytes,
                });
            }
            inner.bytes += n;
            *inner.per_host.entry(host.clone()).or_default() += n;
            let seq = inner.next;
            inner.next += 1;
            seq
        };
        match self.write(seq, &bytes) {
            Ok(()) => {
                self.inner().entries.insert(seq, (host, n));
                self.pushed.notify_one();
                Ok(seq)
            }
            Err(e) => {
                self.inner().release(&host, n);
                Err(e)
            }
        }
    }

    fn write(&self, seq: u64, bytes: &[u8]) -> Result<(), QueueError> {
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp, e));
        }
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, e))
    }

    /// The queued batches, oldest first.
    pub fn pending(&self) -> Vec<Queued> {
        self.inner()
            .entries
            .iter()
            .map(|(&seq, (host, bytes))| Queued {
                seq,
                host: host.clone(),
                bytes: *bytes,
            })
            .collect()
    }

    /// Reads a queued batch back.
    pub fn load(&self, seq: u64) -> Result<ForwardRequest, QueueError> {
        let path = self.path(seq);
        let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
        decode(&bytes).map_err(|reason| QueueError::Corrupt {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Deletes a delivered batch. A crash before the deletion is durable delivers it once more;
    /// the owner's store counts it as a duplicate.
    pub fn remove(&self, seq: u64) -> Result<(), QueueError> {
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        self.forget(seq);
        Ok(())
    }

    /// Sets a batch aside as `<seq>.<why>`, never to be delivered (an owner refused it for
    /// good, or it does not read back); kept for an operator to look at.
    pub fn set_aside(&self, seq: u64, why: &str) -> Result<(), QueueError> {
        let path = self.path(seq);
        let aside = path.with_extension(why);
        fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
        self.forget(seq);
        Ok(())
    }

    fn forget(&self, seq: u64) {
        let mut inner = self.inner();
        if let Some((host, n)) = inner.entries.remove(&seq) {
            inner.release(&host, n);
        }
    }

    /// Batches and bytes queued.
    pub fn len(&self) -> usize {
        self.inner().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        self.inner().bytes
    }

    /// Waits until a batch is queued (returns at once if one was queued since the last wait).
    pub async fn pushed(&self) {
        self.pushed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::Snapshot;

    fn batch(host: &str, ts: i64) -> ForwardRequest {
        ForwardRequest {
            host_id: host.into(),
            snapshots: vec![Snapshot {
                host_id: host.into(),
                timestamp_ms: ts,
                ..Snapshot::default()
            }],
            ..ForwardRequest::default()
        }
    }

    const ROOMY: QueueLimits = QueueLimits {
        max_bytes: 1 << 20,
        max_host_bytes: 1 << 20,
    };

    #[test]
    fn batches_survive_a_reopen_in_order_and_leave_once_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (q, opened) = ForwardQueue::open(tmp.path(), ROOMY).unwrap();
        assert_eq!(opened, Opened::default());
        let a = q.push(&batch("h1", 1)).unwrap();
        let b = q.push(&batch("h2", 2)).unwrap();
        let c = q.push(&batch("h1", 3)).unwrap();
        assert!(a < b && b < c);
        let bytes = q.bytes();
        drop(q);

        let (q, opened) = ForwardQueue::open(tmp.path(), ROOMY).unwrap();
        assert_eq!(
            (opened.batches, opened.bytes, opened.corrupt),
            (3, bytes, 0)
        );
        let pending = q.pending();
        let hosts: Vec<&str> = pending.iter().map(|p| p.host.as_str()).collect();
        assert_eq!(hosts, ["h1", "h2", "h1"]);
        assert_eq!(q.load(pending[2].seq).unwrap(), batch("h1", 3));
        q.remove(pending[0].seq).unwrap();
        // New batches follow the old ones, whatever was removed.
        let d = q.push(&batch("h3", 4)).unwrap();
        assert!(d > c);
        drop(q);
        let (q, opened) = ForwardQueue::open(tmp.path(), ROOMY).unwrap();
        assert_eq!(opened.batches, 3);
        assert_eq!(q.pending()[0].seq, b);
    }

    #[test]
    fn a_torn_or_corrupt_file_is_set_aside_and_a_leftover_temporary_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let (q, _) = ForwardQueue::open(tmp.path(), ROOMY).unwrap();
        let good = q.push(&batch("h1", 1)).unwrap();
        let bad = q.push(&batch("h1", 2)).unwrap();
        drop(q);
        let bad_path = tmp.path().join(format!("{bad:020}.fwd"));
        let mut bytes = fs::read(&bad_path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&bad_path, &bytes).unwrap();
        fs::write(tmp.path().join("00000000000000000009.tmp"), b"half").unwrap();

        let (q, opened) = ForwardQueue::open(tmp.path(), ROOMY).unwrap();
        assert_eq!((opened.batches, opened.corrupt), (1, 1));
        assert_eq!(q.pending()[0].seq, good);
        assert!(tmp.path().join(format!("{bad:020}.corrupt")).exists());
        assert!(!tmp.path().join("00000000000000000009.tmp").exists());
    }

    #[test]
    fn the_bounds_refuse_past_them_and_one_host_cannot_take_another_s_room() {
        let tmp = tempfile::tempdir().unwrap();
        let one = encode(&batch("h1", 1)).len() as u64;
        let limits = QueueLimits {
            max_bytes: 4 * one,
            max_host_bytes: 2 * one,
        };
        let (q, _) = ForwardQueue::open(tmp.path(), limits).unwrap();
        q.push(&batch("h1", 1)).unwrap();
        q.push(&batch("h1", 2)).unwrap();
        let e = q.push(&batch("h1", 3)).unwrap_err();
        assert!(matches!(e, QueueError::HostFull { .. }), "{e}");
        // Another host still has room.
        q.push(&batch("h2", 1)).unwrap();
        q.push(&batch("h2", 2)).unwrap();
        let e = q.push(&batch("h3", 1)).unwrap_err();
        assert!(matches!(e, QueueError::Full { .. }), "{e}");
        assert_eq!(q.len(), 4);
        // Room comes back as batches leave.
        let first = q.pending()[0].seq;
        q.remove(first).unwrap();
        q.push(&batch("h1", 3)).unwrap();
        q.set_aside(q.pending()[0].seq, "rejected").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.bytes(), 3 * one);
    }
}
