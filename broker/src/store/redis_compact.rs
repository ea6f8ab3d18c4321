//! The Redis store's compact layout (`keys.rs`): a host's rows go to the hash of their open
//! 10-minute window in one atomic script per batch (`lua/write.lua`: `HSETNX` keeps a timestamp
//! once, the newest snapshot is kept beside them); once a window is over and unwritten for the
//! grace period, a closer compresses its rows into a chunk (`chunk.rs`) and swaps the one for
//! the other atomically (`lua/close.lua`, only if the rows are still those it read). A row that
//! arrives for a window already closed is merged into its chunk by compare-and-set on the
//! chunk's CRC (`lua/merge.lua`). A range read takes the open rows first, then the chunks
//! (rows only move that way, so none is missed; one seen twice is taken once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use prost::Message;
use redis::{RedisError, Script, Value};
use ringwatch_proto::{RangeChunk, Snapshot, name_selected};

use super::chunk;
use super::frame::{Frame, FrameBuilder};
use super::keys::{self, CHUNK_MS, window_start};
use super::redis_conn::Conn;
use super::redis_store::{Compact, Inner, RedisStore, Window, bytes, now_ms, pairs};
use super::rollup::{self, DAY_MS, ROLLUP_MS, Rollup, bucket};
use super::{RangeQuery, StoreError, WriteOutcome};

static WRITE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/write.lua")));
static CLOSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/close.lua")));
static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/merge.lua")));
static ROLLUPS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rollups.lua")));

/// Windows closed per round of the closer, at most.
const CLOSE_ROUND: usize = 256;
/// Day rollups made per round of the closer, at most (each reads a day of chunks).
const DAYS_ROUND: usize = 16;
/// Closes in flight at once.
const CLOSE_PARALLEL: usize = 8;
/// Name lists remembered as stored, before the memory is cleared.
const KNOWN_LISTS: usize = 1 << 20;
/// Attempts at a compare-and-set before a write gives up (and is not acknowledged).
const CAS_ATTEMPTS: usize = 16;

/// Runs a script (EVALSHA, loading it when the server does not know it: a new master after a
/// fail-over, a restarted server), then WAIT for `replicas` when asked. The script's answer.
async fn eval(
    c: &mut Conn,
    script: &Script,
    keys: &[String],
    args: &[Vec<u8>],
    replicas: u32,
    wait_ms: u64,
) -> Result<Value, RedisError> {
    let mut p = redis::pipe();
    p.cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    if replicas > 0 {
        // One host's keys share a slot; WAIT rides along to the master that ran the script.
        p.cmd("WAIT").arg(replicas).arg(wait_ms.max(1));
    }
    let mut answers: Vec<Value> = match p.query_async(c).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(c).await?;
            p.query_async(c).await?
        }
        other => other?,
    };
    if replicas > 0 {
        let confirmed = match answers.pop() {
            Some(Value::Int(n)) => n,
            _ => 0,
        };
        if confirmed < i64::from(replicas) {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "too few replicas confirmed the write",
                format!("{confirmed} of {replicas}"),
            )));
        }
    }
    answers
        .into_iter()
        .next()
        .ok_or_else(|| RedisError::from((redis::ErrorKind::Io, "no answer to a script")))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

/// Name lists by id, from an HGETALL of a host's `schema` hash.
fn lists(v: &Value) -> HashMap<u32, Vec<(String, i32)>> {
    pairs(v)
        .into_iter()
        .filter_map(|(id, body)| {
            let id = std::str::from_utf8(id).ok()?.parse().ok()?;
            Some((id, keys::decode_schema(body)?))
        })
        .collect()
}

/// The rows of a window's hash, added to `b`; the count of rows that could not be read.
fn add_rows(
    b: &mut FrameBuilder,
    reply: &Value,
    lists: &HashMap<u32, Vec<(String, i32)>>,
    start: i64,
    end: i64,
    keep: &mut impl FnMut(&str) -> bool,
) -> usize {
    let mut bad = 0;
    for (ts, row) in pairs(reply) {
        let Some(ts) = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        else {
            bad += 1;
            continue;
        };
        if ts < start || ts > end {
            continue;
        }
        let names = chunk::decode_row(row).and_then(|(id, _)| lists.get(&id));
        if !names.is_some_and(|names| chunk::add_row(b, ts, row, names, keep)) {
            bad += 1;
        }
    }
    bad
}

impl RedisStore {
    /// Runs `script` on `keys` and `args`, retried until `deadline`; with `replicate`, only
    /// once the configured replicas confirm it (WAIT).
    async fn script(
        &self,
        what: &'static str,
        deadline: Duration,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
        replicate: bool,
    ) -> Result<Value, StoreError> {
        let replicas = if replicate {
            self.inner.cfg.min_replicas
        } else {
            0
        };
        let wait_ms = self.wait_timeout_ms();
        self.retrying(what, deadline, |mut c| async move {
            eval(&mut c, script, keys, args, replicas, wait_ms).await
        })
        .await
    }

    /// A pipeline's answers, retried until `deadline`.
    async fn pipe_query(
        &self,
        what: &'static str,
        deadline: Duration,
        p: &redis::Pipeline,
    ) -> Result<Vec<Value>, StoreError> {
        self.retrying(what, deadline, |mut c| async move {
            p.query_async(&mut c).await
        })
        .await
    }

    /// One command's answer, retried until `deadline`.
    async fn cmd_query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        deadline: Duration,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.retrying(what, deadline, |mut c| async move {
            cmd.query_async(&mut c).await
        })
        .await
    }

    /// A pipeline reading the open rows of `host`'s windows `starts`, then its name lists:
    /// `starts.len() + 1` answers, more commands may follow.
    fn open_rows_pipe(&self, host: &str, starts: &[i64]) -> redis::Pipeline {
        let k = &self.inner.keys;
        let mut p = redis::pipe();
        for &s in starts {
            p.cmd("HGETALL").arg(k.rows(host, s));
        }
        p.cmd("HGETALL").arg(k.schema(host));
        p
    }

    /// The chunk keys of every window of `host`'s UTC day `day`.
    fn day_chunk_keys(&self, host: &str, day: i64) -> Vec<String> {
        (0..DAY_MS / CHUNK_MS)
            .map(|w| self.inner.keys.chunk(host, day + w * CHUNK_MS))
            .collect()
    }

    fn compact(&self) -> &Compact {
        &self.inner.compact
    }

    fn wait_timeout_ms(&self) -> u64 {
        self.inner.cfg.settings.response_timeout.as_millis() as u64 / 2
    }

    /// Starts the closer once: at open inside a runtime, else on the first write.
    pub(super) fn start_closer(&self) {
        if self.compact().started.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current()
            && !self.compact().started.swap(true, Ordering::Relaxed)
        {
            rt.spawn(closer(Arc::downgrade(&self.inner)));
        }
    }

    /// Writes a batch in the compact layout: one script per host (concurrently), rows of closed
    /// windows merged into their chunks after.
    pub(super) async fn compact_write(
        &self,
        snaps: &[Snapshot],
    ) -> Result<WriteOutcome, StoreError> {
        self.start_closer();
        let mut hosts: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            match hosts.iter_mut().find(|(h, _)| *h == s.host_id) {
                Some((_, idx)) => idx.push(i),
                None => hosts.push((&s.host_id, vec![i])),
            }
        }
        let each = hosts
            .iter()
            .map(|(host, idx)| self.write_host(host, idx, snaps));
        let answers = futures_util::future::try_join_all(each).await?;
        let mut out = WriteOutcome {
            new: vec![false; snaps.len()],
            ..WriteOutcome::default()
        };
        for ((_, idx), flags) in hosts.iter().zip(answers) {
            for (&i, new) in idx.iter().zip(flags) {
                out.new[i] = new;
                if new {
                    out.stored += 1;
                    out.samples += snaps[i].metrics.len() as u64;
                } else {
                    out.duplicates += 1;
                }
            }
        }
        Ok(out)
    }

    /// One host's rows; per row (in `idx` order) whether it was new.
    async fn write_host(
        &self,
        host: &str,
        idx: &[usize],
        snaps: &[Snapshot],
    ) -> Result<Vec<bool>, StoreError> {
        let k = &self.inner.keys;
        let retention = self.inner.cfg.retention.as_millis() as i64;
        let mut windows: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        // Each row's name-list id, and each id once with a row that has it.
        let mut row_ids: HashMap<usize, u32> = HashMap::with_capacity(idx.len());
        let mut ids: Vec<(u32, usize)> = Vec::new();
        for &i in idx {
            windows
                .entry(window_start(snaps[i].timestamp_ms))
                .or_default()
                .push(i);
            let id = keys::schema_id(&snaps[i].metrics);
            row_ids.insert(i, id);
            if !ids.iter().any(|(x, _)| *x == id) {
                ids.push((id, i));
            }
        }
        let host_arc: Arc<str> = Arc::from(host);
        let mut send_lists = match self.compact().known.lock() {
            Ok(known) => ids
                .iter()
                .any(|(id, _)| !known.contains(&(host_arc.clone(), *id))),
            Err(_) => true,
        };
        let newest = idx
            .iter()
            .copied()
            .max_by_key(|&i| snaps[i].timestamp_ms)
            .unwrap_or(0);
        let mut script_keys = vec![k.open(host), k.schema(host), k.latest(host), k.host(host)];
        for &start in windows.keys() {
            script_keys.push(k.rows(host, start));
            script_keys.push(k.chunk(host, start));
        }
        let (answers, first, open) = loop {
            let now = now_ms();
            let mut args: Vec<Vec<u8>> = vec![
                now.to_string().into(),
                retention.to_string().into(),
                CHUNK_MS.to_string().into(),
                ids.len().to_string().into(),
                windows.len().to_string().into(),
            ];
            for (id, i) in &ids {
                args.push(id.to_string().into());
                args.push(if send_lists {
                    keys::encode_schema(&snaps[*i].metrics).into()
                } else {
                    Vec::new()
                });
            }
            args.push(snaps[newest].timestamp_ms.to_string().into());
            args.push(snaps[newest].encode_to_vec());
            for (start, rows) in &windows {
                args.push(start.to_string().into());
                args.push((start + CHUNK_MS + retention).to_string().into());
                args.push(rows.len().to_string().into());
                for &i in rows {
                    let s = &snaps[i];
                    args.push(s.timestamp_ms.to_string().into());
                    args.push(chunk::encode_row(
                        row_ids[&i],
                        s.metrics.iter().map(|m| m.value),
                    ));
                }
            }
            let (replicas, wait_ms) = (self.inner.cfg.min_replicas, self.wait_timeout_ms());
            let mut attempt = 0u32;
            let reply = self
                .retrying("write", self.inner.cfg.write_retry, |mut c| {
                    attempt += 1;
                    let (keys, args) = (&script_keys, &args);
                    async move { eval(&mut c, &WRITE, keys, args, replicas, wait_ms).await }
                })
                .await
                .inspect_err(|_| {
                    self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                })?;
            let Value::Array(parts) = reply else {
                return Err(StoreError::Unavailable(
                    "redis: unexpected answer to the write script".into(),
                ));
            };
            if parts.len() == 1 && int(&parts[0]) == Some(-1) {
                if send_lists {
                    return Err(StoreError::Unavailable(
                        "redis: the write script did not take the name lists".into(),
                    ));
                }
                // A list this broker believed stored is gone (a flushed or replaced server).
                send_lists = true;
                continue;
            }
            let answers: Vec<i64> = match parts.first() {
                Some(Value::Array(a)) => a.iter().filter_map(int).collect(),
                _ => Vec::new(),
            };
            break (answers, attempt == 1, parts.get(1).map(pairs_owned));
        };
        if let Ok(mut known) = self.compact().known.lock() {
            if known.len() > KNOWN_LISTS {
                known.clear();
            }
            known.extend(ids.iter().map(|(id, _)| (host_arc.clone(), *id)));
        }
        if let (Some(open), Ok(mut pending)) = (open, self.compact().pending.lock()) {
            for (start, last) in open {
                pending.insert((host_arc.clone(), start), last);
            }
        }
        // Per row in window order; a retry may follow an attempt that did reach Redis, whose
        // HSETNX would call this batch's own rows duplicates: after a retry, all count as new.
        let mut new: HashMap<usize, bool> = HashMap::with_capacity(idx.len());
        let mut late: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        if answers.len() != idx.len() {
            return Err(StoreError::Unavailable(format!(
                "redis: the write script answered for {} of {} rows",
                answers.len(),
                idx.len()
            )));
        }
        let mut at = answers.iter();
        for (start, rows) in &windows {
            for &i in rows {
                match at.next().copied().unwrap_or(0) {
                    2 => late.entry(*start).or_default().push(i),
                    0 => {
                        new.insert(i, !first);
                    }
                    _ => {
                        new.insert(i, true);
                    }
                }
            }
        }
        for (start, rows) in late {
            let merged = self.merge_late(host, start, &rows, snaps).await?;
            new.extend(rows.into_iter().zip(merged));
        }
        Ok(idx
            .iter()
            .map(|i| new.get(i).copied().unwrap_or(true))
            .collect())
    }

    /// Merges rows into the chunk of their closed window; per row whether it was new.
    async fn merge_late(
        &self,
        host: &str,
        start: i64,
        rows: &[usize],
        snaps: &[Snapshot],
    ) -> Result<Vec<bool>, StoreError> {
        let key = self.inner.keys.chunk(host, start);
        let deadline = self.inner.cfg.write_retry;
        for _ in 0..CAS_ATTEMPTS {
            let old: Option<Vec<u8>> = self
                .cmd_query("late row read", deadline, redis::cmd("GET").arg(&key))
                .await?;
            let Some(old) = old else {
                // Expired: the window is past the retention, and so are these rows.
                return Ok(vec![true; rows.len()]);
            };
            let existing = match chunk::decode(&old, i64::MIN, i64::MAX, &mut |_| true) {
                Ok(f) => f,
                Err(reason) => {
                    // Its rows are unreadable already; the late ones replace it.
                    self.compact().corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%key, %reason, "damaged chunk replaced by late rows");
                    Frame::default()
                }
            };
            let held: HashSet<i64> = existing.ts.iter().copied().collect();
            let flags: Vec<bool> = rows
                .iter()
                .map(|&i| !held.contains(&snaps[i].timestamp_ms))
                .collect();
            if !flags.contains(&true) {
                return Ok(flags);
            }
            let mut b = FrameBuilder::default();
            for (&i, _) in rows.iter().zip(&flags).filter(|(_, new)| **new) {
                let s = &snaps[i];
                b.row(
                    s.timestamp_ms,
                    s.metrics.iter().map(|m| (m.name.as_str(), m.unit, m.value)),
                );
            }
            let merged = chunk::encode(&Frame::merge(vec![existing, b.finish()]))?;
            let keys = [key.clone()];
            let args = [chunk::crc_bytes(&old).to_vec(), merged];
            let done = self
                .script("late row merge", deadline, &MERGE, &keys, &args, true)
                .await?;
            if int(&done) == Some(1) {
                self.compact().merged.fetch_add(1, Ordering::Relaxed);
                self.day_changed(&Arc::from(host), start);
                return Ok(flags);
            }
        }
        Err(StoreError::Unavailable(format!(
            "redis: the chunk {key} kept changing; late rows not stored, retry later"
        )))
    }

    /// Closes one open window: its rows compressed into its chunk. Ok(true) when the window is
    /// no longer open.
    async fn close_window(&self, host: &str, start: i64) -> Result<bool, StoreError> {
        let k = &self.inner.keys;
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let (rows_key, chunk_key) = (k.rows(host, start), k.chunk(host, start));
        let replies = self
            .pipe_query("close read", deadline, &self.open_rows_pipe(host, &[start]))
            .await?;
        let (rows, lists) = match replies.as_slice() {
            [rows, l] => (rows, lists(l)),
            _ => return Ok(false),
        };
        let n = pairs(rows).len();
        let mut b = FrameBuilder::default();
        let bad = add_rows(&mut b, rows, &lists, i64::MIN, i64::MAX, &mut |_| true);
        if bad > 0 {
            self.compact()
                .corrupt
                .fetch_add(bad as u64, Ordering::Relaxed);
            tracing::error!(%rows_key, bad, "rows that cannot be read (no name list) left out of the chunk");
        }
        let frame = b.finish();
        let retention = self.inner.cfg.retention.as_millis() as i64;
        let expire_at = start + CHUNK_MS + retention;
        let body = if frame.is_empty() {
            Vec::new()
        } else {
            chunk::encode(&frame)?
        };
        let run = |body: Vec<u8>| {
            let keys = vec![
                rows_key.clone(),
                chunk_key.clone(),
                k.chunks(host),
                k.open(host),
            ];
            let args: Vec<Vec<u8>> = vec![
                n.to_string().into(),
                body,
                expire_at.to_string().into(),
                start.to_string().into(),
                (now_ms() - retention - CHUNK_MS).to_string().into(),
            ];
            async move {
                self.script("close", deadline, &CLOSE, &keys, &args, true)
                    .await
            }
        };
        match int(&run(body).await?) {
            Some(1) => {
                self.compact().closed.fetch_add(1, Ordering::Relaxed);
                self.day_changed(&Arc::from(host), start);
                Ok(true)
            }
            Some(-2) => {
                // A chunk beside open rows: merge them into it, then drop them.
                tracing::warn!(%rows_key, "open rows beside a closed chunk; merging them in");
                let snaps: Vec<Snapshot> = frame_snapshots(host, &frame);
                let all: Vec<usize> = (0..snaps.len()).collect();
                self.merge_late(host, start, &all, &snaps).await?;
                Ok(int(&run(Vec::new()).await?) == Some(1))
            }
            _ => Ok(false),
        }
    }

    /// A range read in the compact layout: open rows, then chunks, merged.
    pub(super) async fn compact_range(
        &self,
        q: &RangeQuery,
        start: i64,
    ) -> Result<Vec<RangeChunk>, StoreError> {
        let k = &self.inner.keys;
        if start > q.end_ms {
            return Ok(Vec::new());
        }
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let starts = keys::windows(start, q.end_ms);
        // Rows before chunks: a close between the two reads leaves its rows in the chunk read
        // after, never in neither.
        let mut p = self.open_rows_pipe(&q.host_id, &starts);
        p.cmd("MGET").arg(
            starts
                .iter()
                .map(|&s| k.chunk(&q.host_id, s))
                .collect::<Vec<_>>(),
        );
        let replies = self.pipe_query("range read", deadline, &p).await?;
        let n = starts.len();
        if replies.len() != n + 2 {
            return Err(StoreError::Unavailable(
                "redis: unexpected answer to a range read".into(),
            ));
        }
        let mut keep = |name: &str| name_selected(&q.metric_names, name);
        let lists = lists(&replies[n]);
        let mut b = FrameBuilder::default();
        for reply in &replies[..n] {
            add_rows(&mut b, reply, &lists, start, q.end_ms, &mut keep);
        }
        let mut frames = vec![b.finish()];
        if let Value::Array(chunks) = &replies[n + 1] {
            for (s, c) in starts.iter().zip(chunks) {
                let Some(c) = bytes(c) else { continue };
                match chunk::decode(c, start, q.end_ms, &mut keep) {
                    Ok(f) => frames.push(f),
                    Err(reason) => {
                        self.compact().corrupt.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(host = %q.host_id, start = s, %reason, "damaged chunk skipped");
                    }
                }
            }
        }
        Ok(Frame::merge(frames).into_chunks(q.limit, q.max_cells, q.sparse_ok))
    }

    /// A rollup read in the compact layout: each day's stored rollup where it was made from
    /// the chunks there now (only the metrics asked for leave Redis); else the chunks' rows,
    /// and the open windows' rows, rolled up here.
    pub(super) async fn compact_rollups(
        &self,
        q: &RangeQuery,
        start: i64,
    ) -> Result<Vec<RangeChunk>, StoreError> {
        let k = &self.inner.keys;
        let from = bucket(start, q.step_ms);
        if from > q.end_ms {
            return Ok(Vec::new());
        }
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let starts = keys::windows(from, q.end_ms);
        // Open rows first, then what is closed (see `compact_range`); a window whose chunk is
        // read, or is in a day rollup read, is taken from there and its open rows left out
        // (the chunk holds every row they had).
        let replies = self
            .pipe_query(
                "rollup read",
                deadline,
                &self.open_rows_pipe(&q.host_id, &starts),
            )
            .await?;
        let n = starts.len();
        if replies.len() != n + 1 {
            return Err(StoreError::Unavailable(
                "redis: unexpected answer to a rollup read".into(),
            ));
        }
        let days: Vec<i64> = (bucket(from, DAY_MS)..=bucket(q.end_ms, DAY_MS))
            .step_by(DAY_MS as usize)
            .collect();
        let mut day_keys: Vec<String> = days.iter().map(|&d| k.rollup(&q.host_id, d)).collect();
        for &d in &days {
            day_keys.extend(self.day_chunk_keys(&q.host_id, d));
        }
        let mut args: Vec<Vec<u8>> = vec![(DAY_MS / CHUNK_MS).to_string().into()];
        args.extend(q.metric_names.iter().map(|n| n.clone().into_bytes()));
        let answer = self
            .script("rollup read", deadline, &ROLLUPS, &day_keys, &args, false)
            .await?;
        let Value::Array(per_days) = answer else {
            return Err(StoreError::Unavailable(
                "redis: unexpected answer to a rollup read".into(),
            ));
        };
        let mut parts: Vec<Rollup> = Vec::new();
        let mut covered: HashSet<i64> = HashSet::new();
        let mut missing: Vec<i64> = Vec::new();
        // Past the answer's bound, the days after the one that passed it are left for the
        // asker to read next (the answer says `truncated`).
        let mut last = q.end_ms;
        let mut cut = false;
        for (i, &day) in days.iter().enumerate() {
            if parts.iter().map(Rollup::cells).sum::<usize>() > q.max_cells {
                last = day - 1;
                cut = true;
                break;
            }
            let windows_here = starts.iter().copied().filter(|s| bucket(*s, DAY_MS) == day);
            match per_days
                .get(i)
                .map(|v| self.day_parts(day, v, from, q.end_ms))
            {
                Some(Ok(Some((crcs, mut rollups)))) => {
                    parts.append(&mut rollups);
                    for (w, crc) in crcs.iter().enumerate() {
                        if crc != &[0; 4] {
                            covered.insert(day + w as i64 * CHUNK_MS);
                        }
                    }
                }
                Some(Err(reason)) => {
                    self.compact().corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(host = %q.host_id, day, %reason, "damaged day rollup skipped; read from the chunks");
                    missing.extend(windows_here);
                }
                _ => missing.extend(windows_here),
            }
        }
        let mut keep = |name: &str| name_selected(&q.metric_names, name);
        if !missing.is_empty() {
            let chunk_keys: Vec<String> = missing.iter().map(|&s| k.chunk(&q.host_id, s)).collect();
            let chunks: Vec<Option<Vec<u8>>> = self
                .cmd_query("rollup read", deadline, redis::cmd("MGET").arg(&chunk_keys))
                .await?;
            for (s, c) in missing.iter().zip(chunks) {
                let Some(c) = c else { continue };
                covered.insert(*s);
                match chunk::decode(&c, from, q.end_ms, &mut keep) {
                    Ok(f) => parts.push(Rollup::of(&f, ROLLUP_MS)),
                    Err(reason) => {
                        self.compact().corrupt.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(host = %q.host_id, start = s, %reason, "damaged chunk skipped");
                    }
                }
            }
        }
        let lists = lists(&replies[n]);
        let mut b = FrameBuilder::default();
        for (s, reply) in starts.iter().zip(&replies[..n]) {
            if !covered.contains(s) {
                add_rows(&mut b, reply, &lists, from, last, &mut keep);
            }
        }
        let open = b.finish();
        if !open.is_empty() {
            parts.push(Rollup::of(&open, ROLLUP_MS));
        }
        let mut out = Rollup::combine(parts, q.step_ms).into_chunks(q.max_cells, q.sparse_ok);
        if cut && let Some(c) = out.last_mut() {
            c.truncated = true;
        }
        Ok(out)
    }

    /// A day's answer from the rollup script: None when it has no usable rollup, else the
    /// CRCs it was made from and a rollup per metric returned.
    #[allow(clippy::type_complexity)]
    fn day_parts(
        &self,
        day: i64,
        v: &Value,
        start: i64,
        end: i64,
    ) -> Result<Option<(Vec<[u8; 4]>, Vec<Rollup>)>, String> {
        let Value::Array(items) = v else {
            return Ok(None);
        };
        let Some(prefix) = items.first().and_then(bytes) else {
            return Ok(None);
        };
        let (crcs, entries) = rollup::parse_day_index(prefix)?;
        let mut out = Vec::new();
        for pair in items[1..].chunks_exact(2) {
            let entry = int(&pair[0])
                .and_then(|m| usize::try_from(m - 1).ok())
                .and_then(|m| entries.get(m))
                .ok_or("day rollup: a metric outside its index")?;
            let section = bytes(&pair[1]).ok_or("day rollup: no section")?;
            out.push(rollup::decode_day_metric(day, entry, section, start, end)?);
        }
        Ok(Some((crcs, out)))
    }

    /// Makes a day's rollup from its chunks (run once the day is over and its windows
    /// closed, and again after a late row changed one). Ok(false) when it has none.
    async fn roll_day(&self, host: &str, day: i64) -> Result<bool, StoreError> {
        let k = &self.inner.keys;
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let keys = self.day_chunk_keys(host, day);
        let chunks: Vec<Option<Vec<u8>>> = self
            .cmd_query("day rollup read", deadline, redis::cmd("MGET").arg(&keys))
            .await?;
        let mut crcs = Vec::with_capacity(chunks.len());
        let mut parts = Vec::new();
        for (key, c) in keys.iter().zip(&chunks) {
            let mut crc = [0u8; 4];
            if let Some(c) = c {
                match chunk::decode(c, i64::MIN, i64::MAX, &mut |_| true) {
                    Ok(f) => {
                        crc.copy_from_slice(chunk::crc_bytes(c));
                        parts.push(Rollup::of(&f, ROLLUP_MS));
                    }
                    Err(reason) => {
                        self.compact().corrupt.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%key, %reason, "damaged chunk left out of its day's rollup");
                    }
                }
            }
            crcs.push(crc);
        }
        if parts.is_empty() {
            return Ok(false);
        }
        let day_rollup = Rollup::combine(parts, ROLLUP_MS);
        let body = rollup::encode_day(day, &crcs, &day_rollup)?;
        let retention = self.inner.cfg.retention.as_millis() as i64;
        let key = k.rollup(host, day);
        let expire_at = day + DAY_MS + retention;
        let set = redis::cmd("SET")
            .arg(&key)
            .arg(&body)
            .arg("PXAT")
            .arg(expire_at)
            .clone();
        self.cmd_query::<()>("day rollup write", deadline, &set)
            .await?;
        self.compact().days_rolled.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Notes that the day of window `start` needs its rollup (again) if the day is over.
    fn day_changed(&self, host: &Arc<str>, start: i64) {
        let day = bucket(start, DAY_MS);
        if day + DAY_MS <= now_ms()
            && let Ok(mut days) = self.compact().days.lock()
        {
            days.insert((host.clone(), day));
        }
    }

    /// Makes the rollups of the days due: over, and none of their windows still open here.
    async fn roll_days(&self) {
        let due: Vec<Window> = {
            let (Ok(days), Ok(pending)) =
                (self.compact().days.lock(), self.compact().pending.lock())
            else {
                return;
            };
            if days.is_empty() {
                return;
            }
            let open: HashSet<(&Arc<str>, i64)> = pending
                .keys()
                .map(|(h, s)| (h, bucket(*s, DAY_MS)))
                .collect();
            days.iter()
                .filter(|(host, day)| !open.contains(&(host, *day)))
                .take(DAYS_ROUND)
                .cloned()
                .collect()
        };
        for (host, day) in due {
            match self.roll_day(&host, day).await {
                Ok(_) => {
                    if let Ok(mut days) = self.compact().days.lock() {
                        days.remove(&(host, day));
                    }
                }
                Err(e) => {
                    tracing::warn!(%host, day, error = %e, "making a day's rollup failed; will retry")
                }
            }
        }
    }

    /// Every host's newest snapshot: one GET per host.
    pub(super) async fn compact_latest(
        &self,
        hosts: &[String],
        metric_names: &[String],
    ) -> Result<Vec<Snapshot>, StoreError> {
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let cmds = hosts
            .iter()
            .map(|h| {
                let mut c = redis::cmd("GET");
                c.arg(self.inner.keys.latest(h));
                c
            })
            .collect();
        let values = self.many("latest read", cmds, deadline).await?;
        Ok(values
            .iter()
            .filter_map(|v| {
                let b = bytes(v)?;
                let colon = b.iter().position(|&c| c == b':')?;
                let mut s = Snapshot::decode(&b[colon + 1..]).ok()?;
                s.metrics.retain(|m| name_selected(metric_names, &m.name));
                Some(s)
            })
            .collect())
    }

    /// Windows left open by hosts that went quiet, a restart or another broker: every open
    /// window of every registered host, for the closer.
    async fn sweep(&self) -> Result<(), StoreError> {
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let hosts = self.registry_members(deadline).await?;
        // Days without a rollup are looked for at start and once a day after (a day over
        // since the last look has had its rollup made by its last close).
        let today = bucket(now_ms(), DAY_MS);
        let look_for_days = self.compact().days_checked.load(Ordering::Relaxed) != today;
        for slice in hosts.chunks(1024) {
            let cmds = slice
                .iter()
                .map(|h| {
                    let mut c = redis::cmd("ZRANGE");
                    c.arg(self.inner.keys.open(h))
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES");
                    c
                })
                .collect();
            let answers = self.many("open windows", cmds, deadline).await?;
            if let Ok(mut pending) = self.compact().pending.lock() {
                for (h, v) in slice.iter().zip(&answers) {
                    let h: Arc<str> = Arc::from(h.as_str());
                    for (start, last) in pairs_owned(v) {
                        pending.insert((h.clone(), start), last);
                    }
                }
            }
            // Days over within the retention that have no rollup (closed before a restart, or
            // by a broker that stopped): made from their chunks, if they have any.
            if !look_for_days {
                continue;
            }
            let first = bucket(
                now_ms() - self.inner.cfg.retention.as_millis() as i64,
                DAY_MS,
            );
            let days: Vec<(Arc<str>, i64)> = slice
                .iter()
                .flat_map(|h| {
                    let h: Arc<str> = Arc::from(h.as_str());
                    (first..today)
                        .step_by(DAY_MS as usize)
                        .map(move |d| (h.clone(), d))
                })
                .collect();
            let cmds = days
                .iter()
                .flat_map(|(h, d)| {
                    let mut rolled = redis::cmd("EXISTS");
                    rolled.arg(self.inner.keys.rollup(h, *d));
                    let mut chunks = redis::cmd("ZCOUNT");
                    chunks
                        .arg(self.inner.keys.chunks(h))
                        .arg(*d)
                        .arg(d + DAY_MS - 1);
                    [rolled, chunks]
                })
                .collect();
            let answers = self.many("day rollups", cmds, deadline).await?;
            if let Ok(mut queue) = self.compact().days.lock() {
                for (day, a) in days.into_iter().zip(answers.chunks(2)) {
                    if int(&a[0]) == Some(0) && int(&a[1]).is_some_and(|n| n > 0) {
                        queue.insert(day);
                    }
                }
            }
        }
        if look_for_days {
            self.compact().days_checked.store(today, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Closes the windows due: over, and unwritten for the grace period.
    async fn close_due(&self) {
        use futures_util::StreamExt;
        let now = now_ms();
        let grace = self.inner.cfg.chunk_grace.as_millis() as i64;
        let due: Vec<Window> = match self.compact().pending.lock() {
            Ok(p) => p
                .iter()
                .filter(|((_, start), last)| start + CHUNK_MS <= now && **last + grace <= now)
                .map(|(k, _)| k.clone())
                .take(CLOSE_ROUND)
                .collect(),
            Err(_) => return,
        };
        let results: Vec<(Window, Result<bool, StoreError>)> = futures_util::stream::iter(due)
            .map(|(host, start)| async move {
                let r = self.close_window(&host, start).await;
                ((host, start), r)
            })
            .buffer_unordered(CLOSE_PARALLEL)
            .collect()
            .await;
        let Ok(mut pending) = self.compact().pending.lock() else {
            return;
        };
        for (key, r) in results {
            match r {
                Ok(true) => {
                    pending.remove(&key);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(host = %key.0, start = key.1, error = %e, "closing a window failed; will retry")
                }
            }
        }
    }
}

/// (start, last write) pairs of an open-window index reply.
fn pairs_owned(v: &Value) -> Vec<(i64, i64)> {
    pairs(v)
        .into_iter()
        .filter_map(|(m, s)| {
            let m = std::str::from_utf8(m).ok()?.parse().ok()?;
            let s: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
            Some((m, s as i64))
        })
        .collect()
}

/// A frame's rows as snapshots (for merging open rows found beside a chunk).
fn frame_snapshots(host: &str, frame: &Frame) -> Vec<Snapshot> {
    (0..frame.ts.len())
        .map(|r| Snapshot {
            host_id: host.to_string(),
            timestamp_ms: frame.ts[r],
            metrics: frame
                .cols
                .iter()
                .filter(|c| !c.values[r].is_nan())
                .map(|c| ringwatch_proto::Metric {
                    name: c.name.to_string(),
                    value: c.values[r],
                    unit: c.unit,
                    window: None,
                })
                .collect(),
        })
        .collect()
}

/// The closer: every second closes the windows due; sweeps the registry for open windows at
/// start and every window's width. Ends when the store is dropped.
async fn closer(inner: Weak<Inner>) {
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = inner.upgrade() else { return };
        let store = RedisStore { inner };
        let sweep_every = Duration::from_millis(CHUNK_MS as u64);
        if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
            match store.sweep().await {
                Ok(()) => last_sweep = Some(tokio::time::Instant::now()),
                Err(e) => tracing::debug!(error = %e, "open-window sweep failed; will retry"),
            }
        }
        store.close_due().await;
        store.roll_days().await;
    }
}
