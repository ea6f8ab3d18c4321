//! Moving blocks between brokers (a drained broker's hand-off): sealing the head into blocks,
//! listing every host's sections, reading them as they are on disk, and importing sections
//! another broker sent, verified, as a block of their own.
//!
//! Sections travel as they are stored (compressed columns and rollups, never re-encoded). An
//! imported block's floor is the lowest there is, so it never tells the log replay that rows
//! of this broker's own are in a block. Importing the same section twice (a hand-off started
//! again) writes it once: a section this broker holds already, byte for byte, is skipped; and
//! reads take each timestamp once in any case.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ringwatch_proto::ImportSection;

use super::{EmbeddedStore, now_ms};
use crate::error::StoreError;
use crate::store::block::{self, RawSection};
use crate::store::blocks::SectionRef;

/// One host's sections to hand off.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub host: Arc<str>,
    pub(crate) refs: Vec<SectionRef>,
}

impl Outgoing {
    /// Identifies each section (block and offset): what a later pass need not send again.
    pub fn keys(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.refs.iter().map(|r| (r.seq, r.section.offset))
    }

    /// Only its sections not in `sent`.
    pub fn unsent(&self, sent: &HashSet<(u64, u64)>) -> Outgoing {
        Outgoing {
            host: self.host.clone(),
            refs: self
                .refs
                .iter()
                .filter(|r| !sent.contains(&(r.seq, r.section.offset)))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Bytes of its sections on disk (rollups included).
    pub fn bytes(&self) -> u64 {
        self.refs
            .iter()
            .map(|r| {
                u64::from(r.section.len) + r.section.rollup.as_ref().map_or(0, |p| u64::from(p.len))
            })
            .sum()
    }
}

/// A section another broker sent, with the CRCs it computed.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub(crate) raw: RawSection,
    pub(crate) crc: u32,
    pub(crate) rollup_crc: u32,
}

impl Incoming {
    /// A section as the wire carried it (checked by [`EmbeddedStore::import`]).
    pub fn from_wire(s: ImportSection) -> Incoming {
        let rollup = (!s.rollup.is_empty()).then_some(block::RawRollup {
            bytes: s.rollup,
            rows: s.rollup_rows,
            width_ms: s.rollup_width_ms,
        });
        Incoming {
            raw: RawSection {
                rows_bytes: s.rows,
                min_ts: s.min_ts_ms,
                max_ts: s.max_ts_ms,
                rows: s.row_count,
                values: s.values,
                rollup,
            },
            crc: s.crc,
            rollup_crc: s.rollup_crc,
        }
    }
}

/// A section as stored, for the wire: its bytes as they are, with their CRCs.
fn to_wire(raw: RawSection) -> ImportSection {
    let (rollup, rollup_crc, rollup_rows, rollup_width_ms) = match raw.rollup {
        Some(r) => {
            let crc = crc32fast::hash(&r.bytes);
            (r.bytes, crc, r.rows, r.width_ms)
        }
        None => (Vec::new(), 0, 0, 0),
    };
    ImportSection {
        crc: crc32fast::hash(&raw.rows_bytes),
        rows: raw.rows_bytes,
        min_ts_ms: raw.min_ts,
        max_ts_ms: raw.max_ts,
        row_count: raw.rows,
        values: raw.values,
        rollup,
        rollup_crc,
        rollup_rows,
        rollup_width_ms,
    }
}

/// What an import took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub hosts: u64,
    pub sections: u64,
    /// Sections already held, byte for byte (not written again).
    pub already: u64,
    pub rows: u64,
    pub values: u64,
    pub bytes: u64,
}

impl EmbeddedStore {
    /// Pauses (or resumes) compaction: a hand-off reads blocks a compaction would replace.
    /// The pause is durable (a marker file in the data directory, fsynced): a broker restarted
    /// mid-hand-off must send the same sections again, which its new owner then recognises as
    /// held, not merged ones it would store a second time.
    pub fn pause_compaction(&self, paused: bool) -> Result<(), StoreError> {
        if let Some(dir) = &self.inner.cfg.data_dir {
            let marker = dir.join(super::PAUSE_MARKER);
            if paused {
                std::fs::File::create(&marker)
                    .and_then(|f| f.sync_all())
                    .and_then(|()| std::fs::File::open(dir)?.sync_all())
                    .map_err(|e| StoreError::io(&marker, e))?;
            } else {
                match std::fs::remove_file(&marker) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(&marker, e)),
                }
            }
        }
        self.inner
            .compaction_paused
            .store(paused, Ordering::Relaxed);
        Ok(())
    }

    /// Whether compaction is paused (for a hand-off).
    pub fn compaction_paused(&self) -> bool {
        self.inner.compaction_paused.load(Ordering::Relaxed)
    }

    /// Cuts every row of the head to a block (a drained broker hands off blocks only).
    /// Returns the rows cut.
    pub fn seal(&self) -> Result<u64, StoreError> {
        let newest = self.read()?.newest();
        match newest {
            Some(n) => self.cut(n.saturating_add(1)),
            // A block left unwritten by an earlier failure still goes to disk.
            None => self.cut(i64::MIN),
        }
    }

    /// Every host's sections on disk (empty without a data directory).
    pub fn outgoing(&self) -> Result<Vec<Outgoing>, StoreError> {
        let Some(disk) = &self.inner.disk else {
            return Ok(Vec::new());
        };
        Ok(disk
            .read_index()?
            .all_sections()
            .into_iter()
            .map(|(host, refs)| Outgoing { host, refs })
            .collect())
    }

    /// Reads `out`'s sections as they are on disk; `None` when a block was deleted since it
    /// was listed (list again).
    pub fn read_outgoing(&self, out: &Outgoing) -> Result<Option<Vec<ImportSection>>, StoreError> {
        let mut sections = Vec::with_capacity(out.refs.len());
        for r in &out.refs {
            match block::read_raw(&r.path, &r.section) {
                Ok(raw) => sections.push(to_wire(raw)),
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(sections))
    }

    /// Verifies sections another broker sent and writes them as one block (temporary file,
    /// fsync, rename, folder fsync) before returning: once this answers, they are durable
    /// here. A section that fails its checks refuses the whole import (`Corrupt`, naming the
    /// host and why); nothing is written then.
    pub fn import(
        &self,
        from: &str,
        hosts: Vec<(Arc<str>, Vec<Incoming>)>,
    ) -> Result<Imported, StoreError> {
        let Some(disk) = &self.inner.disk else {
            return Err(StoreError::Unavailable(
                "this broker keeps no blocks (no data directory): it cannot take a hand-off".into(),
            ));
        };
        let mut out = Imported::default();
        let mut keep: Vec<(Arc<str>, RawSection)> = Vec::new();
        {
            let index = disk.read_index()?;
            for (host, sections) in hosts {
                out.hosts += 1;
                for s in sections {
                    s.raw
                        .verify(s.crc, s.rollup_crc)
                        .map_err(|reason| StoreError::Corrupt {
                            path: format!("hand-off from {from}, host {host}"),
                            reason,
                        })?;
                    out.sections += 1;
                    if index.holds_section(&host, &s.raw, s.crc) {
                        out.already += 1;
                        continue;
                    }
                    out.rows += u64::from(s.raw.rows);
                    out.values += u64::from(s.raw.values);
                    out.bytes += s.raw.len();
                    keep.push((host.clone(), s.raw));
                }
            }
        }
        if keep.is_empty() {
            return Ok(out);
        }
        self.check_space(true)?;
        let (seq, path) = disk.write_index()?.next();
        let index = block::write_sections(
            true,
            &path,
            i64::MIN,
            now_ms(),
            &[],
            keep.into_iter().map(Ok),
        )?;
        disk.counters.written.fetch_add(1, Ordering::Relaxed);
        disk.write_index()?.install(seq, path, index);
        tracing::info!(%from, seq, hosts = out.hosts, sections = out.sections, already = out.already, rows = out.rows, bytes = out.bytes, "hand-off imported as a block");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rollup::DAY_MS;
    use crate::store::{EmbeddedConfig, RangeQuery, Store};
    use ringwatch_proto::Snapshot;

    fn snap(host: &str, ts: i64) -> Snapshot {
        super::super::tests::snap(host, ts, 5)
    }

    fn open(dir: &std::path::Path) -> EmbeddedStore {
        EmbeddedStore::open(EmbeddedConfig {
            data_dir: Some(dir.to_path_buf()),
            ..EmbeddedConfig::default()
        })
        .unwrap()
    }

    async fn all(store: &EmbeddedStore, host: &str, step_ms: i64) -> Vec<Snapshot> {
        let now = now_ms();
        let q = RangeQuery {
            host_id: host.into(),
            start_ms: now - now.rem_euclid(DAY_MS) - 3 * DAY_MS,
            end_ms: now + 60_000,
            metric_names: vec![],
            limit: usize::MAX,
            max_cells: usize::MAX,
            sparse_ok: false,
            step_ms,
        };
        let chunks = store.range(q).await.unwrap();
        chunks.iter().flat_map(|c| c.to_snapshots(host)).collect()
    }

    /// What `from` would hand off, as the wire carries it.
    fn outgoing(from: &EmbeddedStore) -> Vec<(Arc<str>, Vec<Incoming>)> {
        from.outgoing()
            .unwrap()
            .into_iter()
            .map(|o| {
                let sections = from
                    .read_outgoing(&o)
                    .unwrap()
                    .unwrap()
                    .into_iter()
                    .map(Incoming::from_wire)
                    .collect();
                (o.host.clone(), sections)
            })
            .collect()
    }

    #[tokio::test]
    async fn blocks_handed_off_read_the_same_at_the_new_owner_and_twice_is_once() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(a_dir.path());
        let now = now_ms();
        // An hour of a finished day at 1 s, compacted (rows and rollups), and recent rows.
        let old = now - now.rem_euclid(DAY_MS) - 2 * DAY_MS;
        for host in ["h1", "h2"] {
            let batch: Vec<Snapshot> = (0..3600).map(|i| snap(host, old + i * 1000)).collect();
            for part in batch.chunks(500) {
                a.write(part).await.unwrap();
            }
        }
        a.seal().unwrap();
        for host in ["h1", "h2", "h3"] {
            let recent: Vec<Snapshot> = (0..120)
                .map(|i| snap(host, now - 120_000 + i * 1000))
                .collect();
            a.write(&recent).await.unwrap();
        }
        // Sealing puts the head in blocks too: everything is in sections now.
        assert_eq!(a.seal().unwrap(), 3 * 120);
        assert!(a.compact().unwrap() >= 1, "the finished day was compacted");
        let sent = outgoing(&a);
        assert_eq!(sent.len(), 3);
        assert!(
            sent.iter()
                .flat_map(|(_, s)| s)
                .any(|s| s.raw.rollup.is_some()),
            "rollups travel as they are"
        );

        let b = open(b_dir.path());
        // One of h1's rows at b already (it owned h1 for a moment): taken once.
        b.write(&[snap("h1", now - 60_000)]).await.unwrap();
        let got = b.import("a", sent.clone()).unwrap();
        assert_eq!((got.hosts, got.already), (3, 0));
        assert_eq!(got.rows, 2 * 3600 + 3 * 120);
        assert_eq!(got.values, 5 * got.rows);
        for host in ["h1", "h2", "h3"] {
            assert_eq!(all(&b, host, 0).await, all(&a, host, 0).await, "{host} raw");
            assert_eq!(
                all(&b, host, 60_000).await,
                all(&a, host, 60_000).await,
                "{host} by the minute"
            );
        }
        // Sent again (a hand-off started over): nothing written twice.
        let blocks = b.stats().blocks;
        let again = b.import("a", sent.clone()).unwrap();
        assert_eq!((again.already, again.rows), (again.sections, 0));
        assert_eq!(b.stats().blocks, blocks);
        assert_eq!(all(&b, "h1", 60_000).await, all(&a, "h1", 60_000).await);

        // Damaged bytes are refused whole, and nothing is written.
        let mut bad = sent.clone();
        bad[1].1[0].raw.rows_bytes[20] ^= 0x40;
        let e = b.import("a", bad).unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt { path, reason } if path.contains("h2") && reason.contains("CRC")),
            "{e}"
        );
        let mut lying = sent.clone();
        lying[0].1[0].raw.rows += 1;
        let e = b.import("a", lying).unwrap_err();
        assert!(e.to_string().contains("claimed"), "{e}");
        assert_eq!(b.stats().blocks, blocks);

        // Durable: read back after a restart.
        drop(b);
        let b = open(b_dir.path());
        assert_eq!(all(&b, "h2", 0).await, all(&a, "h2", 0).await);
    }

    #[tokio::test]
    async fn a_hand_off_s_pause_of_compaction_survives_a_restart_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path());
        let now = now_ms();
        let old = now - now.rem_euclid(DAY_MS) - 2 * DAY_MS;
        // Two blocks of one finished day: what compaction would merge.
        for half in 0..2 {
            let batch: Vec<Snapshot> = (0..600)
                .map(|i| snap("h1", old + (half * 600 + i) * 1000))
                .collect();
            a.write(&batch).await.unwrap();
            a.seal().unwrap();
        }
        // A recent row cut too: the day is over for the blocks (their floor is past it).
        a.write(&[snap("h1", now - 1000)]).await.unwrap();
        a.seal().unwrap();
        a.pause_compaction(true).unwrap();
        let keys = |s: &EmbeddedStore| -> Vec<(u64, u64)> {
            s.outgoing()
                .unwrap()
                .iter()
                .flat_map(|o| o.keys().collect::<Vec<_>>())
                .collect()
        };
        let listed = keys(&a);
        assert!(listed.len() >= 2, "{listed:?}");
        assert_eq!(a.compact().unwrap(), 0, "paused");
        drop(a);
        // Restarted mid-hand-off: still paused, and it lists the same sections again.
        let a = open(dir.path());
        assert!(a.compaction_paused());
        assert_eq!(a.compact().unwrap(), 0, "paused after a restart");
        assert_eq!(keys(&a), listed);
        a.pause_compaction(false).unwrap();
        drop(a);
        let a = open(dir.path());
        assert!(!a.compaction_paused());
        assert!(a.compact().unwrap() >= 2, "resumed: the day's blocks merge");
    }

    #[tokio::test]
    async fn a_store_without_a_data_directory_cannot_take_a_hand_off() {
        let b = EmbeddedStore::open(EmbeddedConfig::default()).unwrap();
        assert!(matches!(
            b.import("a", Vec::new()),
            Err(StoreError::Unavailable(_))
        ));
    }
}
