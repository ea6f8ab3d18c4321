//! The Redis store (SPEC S4) behind the same trait as the embedded store, in the key layout of
//! `keys.rs`.
//!
//! A batch is one pipelined round trip: per snapshot `ZADD NX` on the host's index (its answer
//! says new or duplicate), `HSET` of the data hash and `EXPIRE`; per batch the index `EXPIRE`
//! and `ZREMRANGEBYSCORE` of expired members (so the index never outgrows retention), the host
//! hash, the registry set and the window aggregates. A range read is `ZRANGEBYSCORE`, then
//! `MGET` of the packed strings in slices (pipelined `HGETALL`s where a snapshot has none),
//! turned into column chunks in order.
//!
//! When Redis fails, a write is retried with back-off for up to `write_retry`; only a stored
//! batch is acknowledged, so until then the agent holds it. Writes waiting on Redis are bounded
//! (`buffer_snapshots`); past that a write is refused at once (the agent keeps it and retries).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use redis::{RedisError, Value};
use ringwatch_proto::{Column, Metric, RangeChunk, Snapshot, name_selected};
use tokio::sync::Semaphore;

use super::keys::{self, Keys, METRIC_FIELD, RedisLayout, TAG_FIELD};
use super::redis_conn::{Conn, Connector, RedisSettings};
use super::{HostRecord, RangeQuery, Store, StoreError, StoreStats, WriteOutcome};

/// Data keys read per pipelined round trip in a range read.
const READ_SLICE: usize = 512;

/// Settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub settings: RedisSettings,
    pub key_prefix: String,
    pub retention: Duration,
    /// How long a write keeps retrying before it is given up (not acknowledged).
    pub write_retry: Duration,
    /// Most snapshots waiting on Redis at once.
    pub buffer_snapshots: usize,
    /// Replicas that must confirm a write (WAIT) before it counts as stored.
    pub min_replicas: u32,
    /// Which key layout is written and read.
    pub layout: RedisLayout,
    /// How long a compact-layout window stays open after its last write, once it is over.
    pub chunk_grace: Duration,
}

#[derive(Default)]
pub(super) struct Counters {
    retries: AtomicU64,
    pub(super) failures: AtomicU64,
    snapshots: AtomicU64,
    /// Hosts in the registry set (every broker's), as last read: at each registration and
    /// each host listing. Zero until then.
    registry_size: AtomicU64,
}

/// A host's window: (host, start).
pub(super) type Window = (Arc<str>, i64);

/// The compact layout's state in a broker (`redis_compact.rs` works with it).
#[derive(Default)]
pub(crate) struct Compact {
    /// Open windows seen, (host, start) → last write (ms): what the closer looks at.
    pub(super) pending: Mutex<HashMap<Window, i64>>,
    /// (host, name-list id) stored, so a write need not send the list again.
    pub(super) known: Mutex<HashSet<(Arc<str>, u32)>>,
    /// Days (host, day start) whose rollup is to be made: a window of theirs closed or was
    /// merged into after the day was over.
    pub(super) days: Mutex<HashSet<Window>>,
    pub(super) started: std::sync::atomic::AtomicBool,
    /// The UTC day the sweep last looked for days without a rollup (0: not yet).
    pub(super) days_checked: std::sync::atomic::AtomicI64,
    pub(crate) closed: AtomicU64,
    pub(crate) days_rolled: AtomicU64,
    pub(crate) merged: AtomicU64,
    pub(crate) corrupt: AtomicU64,
}

/// The Redis store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) cfg: RedisConfig,
    pub(super) keys: Keys,
    conn: Connector,
    /// Labels of registered hosts, written as `tag:` fields with every snapshot.
    labels: RwLock<HashMap<String, BTreeMap<String, String>>>,
    pending: Semaphore,
    pub(super) counters: Counters,
    pub(super) compact: Compact,
}

pub(super) use ringwatch_core::now_ms;

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Backend {
        what: "redis",
        retryable: retryable(&e),
        source: Box::new(e),
    }
}

/// Whether a Redis error may pass by itself: not a refused password or permission, nor a
/// setting the client cannot use (retrying those only delays the clear error).
fn retryable(e: &RedisError) -> bool {
    use redis::ErrorKind;
    let refused = matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
    !refused
        && !matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
        )
}

impl RedisStore {
    /// Checks the settings; connects lazily (a broker starts even while Redis is down, and
    /// reports not ready until it is reachable).
    pub fn open(cfg: RedisConfig) -> Result<RedisStore, StoreError> {
        let conn = Connector::new(cfg.settings.clone())
            .map_err(|e| StoreError::Unavailable(format!("redis settings: {e}")))?;
        let store = RedisStore {
            inner: Arc::new(Inner {
                keys: Keys::new(&cfg.key_prefix),
                pending: Semaphore::new(cfg.buffer_snapshots.max(1)),
                cfg,
                conn,
                labels: RwLock::new(HashMap::new()),
                counters: Counters::default(),
                compact: Compact::default(),
            }),
        };
        // The compact layout's closer sweeps what earlier runs and other brokers left open or
        // not rolled up, writes or not (started here when inside a runtime, else on the
        // first write).
        if store.inner.cfg.layout != RedisLayout::Seed {
            store.start_closer();
        }
        Ok(store)
    }

    /// Runs `op` on a connection, retrying with back-off (100 ms … 2 s) until `deadline`.
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        what: &'static str,
        deadline: Duration,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times()
            .build();
        loop {
            let result = match self.inner.conn.get().await {
                Ok(c) => op(c).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if !retryable(&e) => {
                    tracing::error!(what, error = %e, "redis refused the operation; not retried");
                    return Err(unavailable(e));
                }
                Err(e) => {
                    self.inner.conn.invalidate().await;
                    let delay = delays.next().unwrap_or(Duration::from_secs(2));
                    if started.elapsed() + delay > deadline {
                        tracing::warn!(what, error = %e, "redis operation failed; giving up");
                        return Err(unavailable(e));
                    }
                    self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(what, error = %e, retry_in = ?delay, "redis operation failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Runs commands that may touch different cluster slots: pipelined on a single server,
    /// sent concurrently one by one on a cluster (a cluster pipeline must stay in one slot).
    pub(super) async fn many(
        &self,
        what: &'static str,
        cmds: Vec<redis::Cmd>,
        deadline: Duration,
    ) -> Result<Vec<Value>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.retrying(what, deadline, |c| {
            let cmds = cmds.clone();
            async move {
                if let Conn::Cluster(_) = c {
                    let each = cmds.into_iter().map(|cmd| {
                        let mut c = c.clone();
                        async move { cmd.query_async::<Value>(&mut c).await }
                    });
                    futures_util::future::try_join_all(each).await
                } else {
                    let mut p = redis::pipe();
                    for cmd in cmds {
                        p.add_command(cmd);
                    }
                    let mut c = c;
                    p.query_async(&mut c).await
                }
            }
        })
        .await
    }

    /// Reads slices of keys, all slices in flight at once on the multiplexed connection
    /// (Redis works through one while this side parses another). One reply list per slice,
    /// in order.
    async fn read_slices(
        &self,
        slices: &[Vec<String>],
        read: Read,
        deadline: Duration,
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let pipes: Vec<redis::Pipeline> = slices
            .iter()
            .map(|slice| {
                let mut p = redis::pipe();
                match read {
                    // One command for the slice: the keys share the host's hash tag, so this
                    // holds in cluster mode too, and Redis dispatches once instead of 512 times.
                    Read::Get => {
                        p.cmd("MGET").arg(slice);
                    }
                    Read::Whole => {
                        for key in slice {
                            p.cmd("HGETALL").arg(key);
                        }
                    }
                }
                p
            })
            .collect();
        let replies = self
            .retrying("range read", deadline, |c| {
                let pipes = pipes.clone();
                async move {
                    let each = pipes.into_iter().map(|p| {
                        let mut c = c.clone();
                        async move { p.query_async::<Vec<Value>>(&mut c).await }
                    });
                    futures_util::future::try_join_all(each).await
                }
            })
            .await?;
        Ok(match read {
            Read::Get => replies
                .into_iter()
                .map(|r| match r.into_iter().next() {
                    Some(Value::Array(values)) => values,
                    _ => Vec::new(),
                })
                .collect(),
            Read::Whole => replies,
        })
    }

    /// The name lists the packed values in `replies` refer to.
    async fn schemas(
        &self,
        host: &str,
        replies: &[Vec<Value>],
        deadline: Duration,
    ) -> Result<HashMap<u32, Vec<(String, i32)>>, StoreError> {
        let mut ids: Vec<u32> = replies
            .iter()
            .flatten()
            .filter_map(|v| keys::packed_id(bytes(v)?))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let key = self.inner.keys.schema(host);
        let lists: Vec<Option<Vec<u8>>> = self
            .retrying("schemas", deadline, |mut c| {
                let (key, ids) = (key.clone(), ids.clone());
                async move {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg(&ids)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(ids
            .into_iter()
            .zip(lists)
            .filter_map(|(id, l)| Some((id, keys::decode_schema(&l?)?)))
            .collect())
    }

    /// The host ids in the registry set, sorted.
    pub(super) async fn registry_members(
        &self,
        deadline: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let registry = self.inner.keys.registry();
        let mut ids: Vec<String> = self
            .retrying("hosts", deadline, |mut c| {
                let registry = registry.clone();
                async move {
                    redis::cmd("SMEMBERS")
                        .arg(&registry)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        ids.sort();
        self.inner
            .counters
            .registry_size
            .store(ids.len() as u64, Ordering::Relaxed);
        Ok(ids)
    }

    fn ttl_secs(&self) -> i64 {
        self.inner.cfg.retention.as_secs().max(1) as i64
    }

    fn write_pipeline(&self, snaps: &[Snapshot]) -> redis::Pipeline {
        let k = &self.inner.keys;
        let ttl = self.ttl_secs();
        let labels = self
            .inner
            .labels
            .read()
            .ok()
            .and_then(|l| snaps.first().and_then(|s| l.get(&s.host_id).cloned()))
            .unwrap_or_default();
        let mut p = redis::pipe();
        let mut hosts: Vec<&str> = Vec::new();
        let mut schemas: Vec<(u32, &Snapshot)> = Vec::new();
        for s in snaps {
            let data = k.data(&s.host_id, s.timestamp_ms);
            let index = k.index(&s.host_id);
            p.cmd("ZADD")
                .arg(&index)
                .arg("NX")
                .arg(s.timestamp_ms)
                .arg(&data);
            let mut h = redis::cmd("HSET");
            h.arg(&data)
                .arg("host_id")
                .arg(&s.host_id)
                .arg("timestamp")
                .arg(s.timestamp_ms);
            for m in &s.metrics {
                h.arg(format!("{METRIC_FIELD}{}", m.name))
                    .arg(keys::encode_value(m.value, m.unit));
            }
            let schema = keys::schema_id(&s.metrics);

            if !schemas.iter().any(|(id, _)| *id == schema) {
                schemas.push((schema, s));
            }
            for (key, value) in &labels {
                h.arg(format!("{TAG_FIELD}{key}")).arg(value);
            }
            p.add_command(h).ignore();
            p.cmd("EXPIRE").arg(&data).arg(ttl).ignore();
            p.cmd("SET")
                .arg(k.packed(&s.host_id, s.timestamp_ms))
                .arg(keys::encode_packed(schema, &s.metrics))
                .arg("EX")
                .arg(ttl)
                .ignore();
            if !hosts.contains(&s.host_id.as_str()) {
                hosts.push(&s.host_id);
            }
        }
        let cutoff = now_ms() - self.inner.cfg.retention.as_millis() as i64;
        for host in hosts {
            let index = k.index(host);
            p.cmd("EXPIRE").arg(&index).arg(ttl).ignore();
            p.cmd("ZREMRANGEBYSCORE")
                .arg(&index)
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .ignore();
            let schema_key = k.schema(host);
            for (id, s) in schemas.iter().filter(|(_, s)| s.host_id == host) {
                p.cmd("HSETNX")
                    .arg(&schema_key)
                    .arg(id)
                    .arg(keys::encode_schema(&s.metrics))
                    .ignore();
            }
            p.cmd("EXPIRE").arg(&schema_key).arg(ttl).ignore();
            let hk = k.host(host);
            p.cmd("HSET")
                .arg(&hk)
                .arg("last_seen")
                .arg(now_ms())
                .ignore();
            p.cmd("EXPIRE").arg(&hk).arg(ttl).ignore();
            // The newest window statistics of this host, as the aggregation cache.
            if let Some(newest) = snaps
                .iter()
                .filter(|s| s.host_id == host)
                .max_by_key(|s| s.timestamp_ms)
            {
                let agg = k.aggregation("window", host);
                let mut h = redis::cmd("HSET");
                h.arg(&agg);
                let mut any = false;
                for m in &newest.metrics {
                    if let Some(w) = &m.window {
                        h.arg(format!("{METRIC_FIELD}{}", m.name))
                            .arg(keys::encode_window(w));
                        any = true;
                    }
                }
                if any {
                    p.add_command(h).ignore();
                    p.cmd("EXPIRE").arg(&agg).arg(ttl).ignore();
                }
            }
        }
        p
    }

    /// A range read in the seed layout: the index, then the packed strings (or hashes).
    async fn seed_range(&self, q: RangeQuery, start: i64) -> Result<Vec<RangeChunk>, StoreError> {
        let index = self.inner.keys.index(&q.host_id);
        let limit = q.limit.min(isize::MAX as usize) as isize;
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let members: Vec<(String, f64)> = self
            .retrying("range index", deadline, |mut c| {
                let index = index.clone();
                async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&index)
                        .arg(start)
                        .arg(q.end_ms)
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let data_slices: Vec<Vec<String>> = members
            .chunks(READ_SLICE)
            .map(|s| s.iter().map(|(m, _)| m.clone()).collect())
            .collect();
        // One packed string per snapshot, its columns picked by the names or prefixes asked
        // for (reading the packed string beats HMGET of a few fields from a 60-field hash); a
        // slice with a snapshot that has none (written by another tool) is read whole from its
        // hashes.
        let timestamps: Vec<Vec<i64>> = members
            .chunks(READ_SLICE)
            .map(|s| s.iter().map(|(_, ts)| *ts as i64).collect())
            .collect();
        let packed_slices: Vec<Vec<String>> = timestamps
            .iter()
            .map(|s| {
                s.iter()
                    .map(|ts| self.inner.keys.packed(&q.host_id, *ts))
                    .collect()
            })
            .collect();
        let replies = self
            .read_slices(&packed_slices, Read::Get, deadline)
            .await?;
        let schemas = self.schemas(&q.host_id, &replies, deadline).await?;
        let mut chunks = Vec::with_capacity(replies.len());
        for ((stamps, values), data_keys) in timestamps.iter().zip(&replies).zip(&data_slices) {
            let mut b = ChunkBuilder::new(&q.metric_names);
            let mut whole = false;
            for (ts, v) in stamps.iter().zip(values) {
                match bytes(v).and_then(keys::decode_packed) {
                    Some((id, values)) if schemas.contains_key(&id) => {
                        b.add_packed(*ts, id, &schemas[&id], values.into_iter())
                    }
                    _ => {
                        whole = true;
                        break;
                    }
                }
            }
            if whole {
                let again = self
                    .read_slices(std::slice::from_ref(data_keys), Read::Whole, deadline)
                    .await?;
                b = ChunkBuilder::new(&q.metric_names);
                for v in again.iter().flatten() {
                    b.add_hgetall(v);
                }
            }
            // Keys that expired between the index read and this read are left out.
            if let Some(chunk) = b.finish() {
                chunks.push(chunk);
            }
        }
        Ok(super::cap_cells(chunks, q.max_cells))
    }

    /// Writes a batch in the seed layout (one pipelined round trip).
    async fn seed_write(&self, snapshots: &[Snapshot]) -> Result<WriteOutcome, StoreError> {
        let mut pipe = self.write_pipeline(snapshots);
        let min_replicas = self.inner.cfg.min_replicas;
        if min_replicas > 0 {
            // In a cluster the pipeline goes to the master of its keys' slot (one host's keys
            // share the `{host}` hash tag) and WAIT, which names no key, rides along to it.
            let wait_ms = self.inner.cfg.settings.response_timeout.as_millis() as u64 / 2;
            pipe.cmd("WAIT").arg(min_replicas).arg(wait_ms.max(1));
        }
        // The first attempt's ZADD NX answers say new or duplicate. A retry may follow an attempt
        // that did reach Redis (a timed-out answer, too few replicas), so its answers would call
        // this batch's own snapshots duplicates: after a retry, all count as new.
        let mut attempt = 0u32;
        let (added, first): (Vec<i64>, bool) = self
            .retrying("write", self.inner.cfg.write_retry, |mut c| {
                let pipe = pipe.clone();
                attempt += 1;
                let first = attempt == 1;
                async move {
                    let mut answers: Vec<i64> = pipe.query_async(&mut c).await?;
                    if min_replicas > 0 {
                        let replicas = answers.pop().unwrap_or(0);
                        if replicas < i64::from(min_replicas) {
                            return Err(RedisError::from((
                                redis::ErrorKind::Io,
                                "too few replicas confirmed the write",
                                format!("{replicas} of {min_replicas}"),
                            )));
                        }
                    }
                    Ok((answers, first))
                }
            })
            .await
            .inspect_err(|_| {
                self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
            })?;
        let mut out = WriteOutcome::default();
        for (s, answer) in snapshots.iter().zip(added) {
            let new = answer == 1 || !first;
            out.new.push(new);
            if new {
                out.stored += 1;
                out.samples += s.metrics.len() as u64;
            } else {
                out.duplicates += 1;
            }
        }
        Ok(out)
    }

    fn host_fields(&self, host: &HostRecord) -> Vec<(String, String)> {
        vec![
            ("last_seen".into(), host.last_seen_ms.to_string()),
            ("agent_version".into(), host.agent_version.clone()),
            ("interval_ms".into(), host.interval_ms.to_string()),
            (
                "labels".into(),
                serde_json::to_string(&host.labels).unwrap_or_else(|_| "{}".into()),
            ),
        ]
    }
}

/// A data hash as (timestamp, metrics in field order).
fn parse_data(fields: &[(String, String)]) -> Option<(i64, Vec<Metric>)> {
    let mut ts = None;
    let mut metrics = Vec::with_capacity(fields.len());
    for (f, v) in fields {
        if let Some(name) = f.strip_prefix(METRIC_FIELD) {
            if let Some((value, unit)) = keys::decode_value(v) {
                metrics.push(Metric {
                    name: name.to_string(),
                    value,
                    unit,
                    window: None,
                });
            }
        } else if f == "timestamp" {
            ts = v.parse().ok();
        }
    }
    Some((ts?, metrics))
}

pub(super) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A reply that is an array (RESP2) or a map (RESP3) as key, value pairs.
pub(super) fn pairs(v: &Value) -> Vec<(&[u8], &[u8])> {
    match v {
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|kv| Some((bytes(&kv[0])?, bytes(&kv[1])?)))
            .collect(),
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// How `read_slices` reads each key.
#[derive(Clone, Copy)]
enum Read {
    /// HGETALL of each data hash.
    Whole,
    /// MGET of the packed keys.
    Get,
}

/// Builds one column chunk from hash replies, parsing borrowed bytes (no copy per field);
/// columns in order of first appearance.
struct ChunkBuilder<'a> {
    patterns: &'a [String],
    timestamps: Vec<i64>,
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    /// Names refused by the patterns.
    skipped: std::collections::HashSet<String>,
    /// Per schema id, the column of each of its positions.
    schema_columns: HashMap<u32, Vec<Option<usize>>>,
}

impl<'a> ChunkBuilder<'a> {
    fn new(patterns: &'a [String]) -> Self {
        ChunkBuilder {
            patterns,
            timestamps: Vec::new(),
            columns: Vec::new(),
            index: HashMap::new(),
            skipped: Default::default(),
            schema_columns: HashMap::new(),
        }
    }

    /// The column for `name`, created on first sight; None when the patterns refuse it.
    fn column_for(&mut self, name: &str, unit: i32) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        if self.skipped.contains(name) {
            return None;
        }
        if !name_selected(self.patterns, name) {
            self.skipped.insert(name.to_string());
            return None;
        }
        self.columns.push(Column {
            name: name.to_string(),
            unit,
            values: Vec::new(),
            rows: Vec::new(),
            ..Column::default()
        });
        self.index.insert(name.to_string(), self.columns.len() - 1);
        Some(self.columns.len() - 1)
    }

    /// Sets column `i` in the current (last) row.
    fn set(&mut self, i: usize, value: f64) {
        let row = self.timestamps.len() - 1;
        let values = &mut self.columns[i].values;
        values.resize(row, f64::NAN);
        values.push(value);
    }

    fn put(&mut self, name: &str, value: f64, unit: i32) {
        if let Some(i) = self.column_for(name, unit) {
            self.set(i, value);
        }
    }

    /// One row from a `packed` field whose name list is `schema`.
    fn add_packed(
        &mut self,
        ts: i64,
        id: u32,
        schema: &[(String, i32)],
        values: impl Iterator<Item = f64>,
    ) {
        self.timestamps.push(ts);
        let cols = match self.schema_columns.remove(&id) {
            Some(c) => c,
            None => schema.iter().map(|(n, u)| self.column_for(n, *u)).collect(),
        };
        for (col, v) in cols.iter().zip(values) {
            if let Some(i) = col {
                self.set(*i, v);
            }
        }
        self.schema_columns.insert(id, cols);
    }

    fn metric(&mut self, field: &[u8], value: &[u8]) {
        let (Some(name), Ok(value)) = (
            field.strip_prefix(METRIC_FIELD.as_bytes()),
            std::str::from_utf8(value),
        ) else {
            return;
        };
        if let (Ok(name), Some((v, unit))) = (std::str::from_utf8(name), keys::decode_value(value))
        {
            self.put(name, v, unit);
        }
    }

    fn timestamp(v: &[u8]) -> Option<i64> {
        std::str::from_utf8(v).ok()?.parse().ok()
    }

    /// One HGETALL reply (flat array in RESP2, a map in RESP3).
    fn add_hgetall(&mut self, reply: &Value) {
        let pairs = pairs(reply);
        let Some(ts) = pairs
            .iter()
            .find(|(f, _)| *f == b"timestamp")
            .and_then(|(_, v)| Self::timestamp(v))
        else {
            return;
        };
        self.timestamps.push(ts);
        for (f, v) in pairs {
            self.metric(f, v);
        }
    }

    fn finish(mut self) -> Option<RangeChunk> {
        if self.timestamps.is_empty() {
            return None;
        }
        let n = self.timestamps.len();
        for c in &mut self.columns {
            c.values.resize(n, f64::NAN);
        }
        Some(RangeChunk {
            timestamps_ms: self.timestamps,
            columns: self.columns,
            truncated: false,
            missing_brokers: Vec::new(),
        })
    }
}

fn parse_host(host_id: &str, fields: &[(String, String)]) -> Option<HostRecord> {
    if fields.is_empty() {
        return None;
    }
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    Some(HostRecord {
        host_id: host_id.to_string(),
        labels: get("labels")
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default(),
        agent_version: get("agent_version").unwrap_or_default().to_string(),
        interval_ms: get("interval_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
        last_seen_ms: get("last_seen").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

impl Store for RedisStore {
    async fn write(&self, snapshots: &[Snapshot]) -> Result<WriteOutcome, StoreError> {
        let n = u32::try_from(snapshots.len()).unwrap_or(u32::MAX);
        let Ok(_permit) = self.inner.pending.try_acquire_many(n) else {
            return Err(StoreError::Unavailable(format!(
                "{} snapshots already wait on Redis (the limit); not stored, retry later",
                self.inner.cfg.buffer_snapshots
            )));
        };
        let out = match self.inner.cfg.layout {
            RedisLayout::Compact => self.compact_write(snapshots).await?,
            RedisLayout::Seed => self.seed_write(snapshots).await?,
            RedisLayout::Both => {
                // The seed layout answers new or duplicate (it is the one read); the compact
                // copy is written too, so that it is whole when the layout is switched.
                let out = self.seed_write(snapshots).await?;
                self.compact_write(snapshots).await?;
                out
            }
        };
        self.inner
            .counters
            .snapshots
            .fetch_add(out.stored as u64, Ordering::Relaxed);
        Ok(out)
    }

    async fn register(&self, host: HostRecord) -> Result<(), StoreError> {
        let k = &self.inner.keys;
        let mut host_cmd = redis::cmd("HSET");
        host_cmd
            .arg(k.host(&host.host_id))
            .arg(self.host_fields(&host));
        let mut expire = redis::cmd("EXPIRE");
        expire.arg(k.host(&host.host_id)).arg(self.ttl_secs());
        // The registry set lives in another cluster slot than the host's keys.
        let mut sadd = redis::cmd("SADD");
        sadd.arg(k.registry()).arg(&host.host_id);
        let mut scard = redis::cmd("SCARD");
        scard.arg(k.registry());
        let replies = self
            .many(
                "register",
                vec![host_cmd, expire, sadd, scard],
                self.inner.cfg.write_retry,
            )
            .await?;
        if let Some(Value::Int(n)) = replies.get(3) {
            self.inner
                .counters
                .registry_size
                .store((*n).max(0) as u64, Ordering::Relaxed);
        }
        if let Ok(mut l) = self.inner.labels.write() {
            l.insert(host.host_id.clone(), host.labels.clone());
        }
        Ok(())
    }

    async fn touch(&self, host_id: &str, at_ms: i64) -> Result<(), StoreError> {
        let key = self.inner.keys.host(host_id);
        self.retrying("touch", Duration::from_secs(1), |mut c| {
            let key = key.clone();
            async move {
                redis::cmd("HSET")
                    .arg(&key)
                    .arg("last_seen")
                    .arg(at_ms)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    async fn range(&self, q: RangeQuery) -> Result<Vec<RangeChunk>, StoreError> {
        let cutoff = now_ms() - self.inner.cfg.retention.as_millis() as i64;
        let start = q.start_ms.max(cutoff);
        match (self.inner.cfg.layout, q.step_ms > 0) {
            (RedisLayout::Compact, false) => self.compact_range(&q, start).await,
            (RedisLayout::Compact, true) => self.compact_rollups(&q, start).await,
            (_, false) => self.seed_range(q, start).await,
            (_, true) => {
                let mut r = super::RawRollup::new(&q);
                while let Some(page) = r.next_query() {
                    let from = page.start_ms.max(cutoff);
                    let rows = self.seed_range(page, from).await?;
                    r.take(&rows);
                }
                Ok(r.finish())
            }
        }
    }

    async fn latest(&self, metric_names: &[String]) -> Result<Vec<Snapshot>, StoreError> {
        let k = &self.inner.keys;
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let hosts = self.registry_members(deadline).await?;
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        if self.inner.cfg.layout == RedisLayout::Compact {
            return self.compact_latest(&hosts, metric_names).await;
        }
        let mut cmds = Vec::with_capacity(hosts.len() * 2);
        for h in &hosts {
            let mut z = redis::cmd("ZRANGE");
            z.arg(k.index(h)).arg(-1).arg(-1);
            let mut w = redis::cmd("HGETALL");
            w.arg(k.aggregation("window", h));
            cmds.push(z);
            cmds.push(w);
        }
        let answers = self.many("latest index", cmds, deadline).await?;
        let mut newest: Vec<(String, String, HashMap<String, String>)> = Vec::new();
        for (h, pair) in hosts.iter().zip(answers.chunks(2)) {
            let keys: Vec<String> = redis::from_redis_value(pair[0].clone()).unwrap_or_default();
            let windows: HashMap<String, String> =
                redis::from_redis_value(pair[1].clone()).unwrap_or_default();
            if let Some(key) = keys.into_iter().next() {
                newest.push((h.clone(), key, windows));
            }
        }
        let cmds = newest
            .iter()
            .map(|(_, key, _)| {
                let mut c = redis::cmd("HGETALL");
                c.arg(key);
                c
            })
            .collect();
        let hashes: Vec<Vec<(String, String)>> = self
            .many("latest read", cmds, deadline)
            .await?
            .into_iter()
            .map(|v| redis::from_redis_value(v).unwrap_or_default())
            .collect();
        Ok(newest
            .into_iter()
            .zip(hashes)
            .filter_map(|((host, _, windows), fields)| {
                let (ts, metrics) = parse_data(&fields)?;
                let metrics = metrics
                    .into_iter()
                    .filter(|m| name_selected(metric_names, &m.name))
                    .map(|mut m| {
                        m.window = windows
                            .get(&format!("{METRIC_FIELD}{}", m.name))
                            .and_then(|w| keys::decode_window(w));
                        m
                    })
                    .collect();
                Some(Snapshot {
                    host_id: host,
                    timestamp_ms: ts,
                    metrics,
                })
            })
            .collect())
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let k = &self.inner.keys;
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let registry = k.registry();
        let ids = self.registry_members(deadline).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = ids
            .iter()
            .map(|h| {
                let mut c = redis::cmd("HGETALL");
                c.arg(k.host(h));
                c
            })
            .collect();
        let hashes: Vec<Vec<(String, String)>> = self
            .many("hosts read", cmds, deadline)
            .await?
            .into_iter()
            .map(|v| redis::from_redis_value(v).unwrap_or_default())
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, fields) in ids.iter().zip(hashes) {
            match parse_host(id, &fields) {
                Some(r) => out.push(r),
                None => gone.push(id.clone()),
            }
        }
        // Hosts whose hash expired (unseen for the retention) leave the registry, unless one
        // registered again in the meantime.
        if !gone.is_empty() {
            let checks = gone
                .iter()
                .map(|h| {
                    let mut c = redis::cmd("EXISTS");
                    c.arg(k.host(h));
                    c
                })
                .collect();
            let exists = self.many("registry check", checks, deadline).await?;
            let gone: Vec<String> = gone
                .into_iter()
                .zip(exists)
                .filter(|(_, e)| matches!(e, Value::Int(0)))
                .map(|(h, _)| h)
                .collect();
            if !gone.is_empty() {
                let _ = self
                    .retrying("registry trim", deadline, |mut c| {
                        let (registry, gone) = (registry.clone(), gone.clone());
                        async move {
                            redis::cmd("SREM")
                                .arg(&registry)
                                .arg(&gone)
                                .query_async::<()>(&mut c)
                                .await
                        }
                    })
                    .await;
            }
        }
        Ok(out)
    }

    async fn host(&self, host_id: &str) -> Result<Option<HostRecord>, StoreError> {
        let key = self.inner.keys.host(host_id);
        let deadline = self.inner.cfg.settings.response_timeout * 2;
        let fields: Vec<(String, String)> = self
            .retrying("host lookup", deadline, |mut c| {
                let key = key.clone();
                async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await }
            })
            .await?;
        Ok(parse_host(host_id, &fields))
    }

    async fn check(&self) -> Result<(), StoreError> {
        let timeout = self.inner.cfg.settings.response_timeout;
        let ping = async {
            let mut c = self.inner.conn.get().await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.inner.conn.invalidate().await;
                Err(unavailable(e))
            }
            Err(_) => Err(StoreError::Unavailable("redis: PING timed out".into())),
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every acknowledged write is already in Redis; its persistence is Redis's own.
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let c = &self.inner.counters;
        StoreStats {
            // Every broker's hosts, as last read; before the first read, the ones registered here.
            hosts: match c.registry_size.load(Ordering::Relaxed) {
                0 => self.inner.labels.read().map_or(0, |l| l.len() as u64),
                n => n,
            },
            snapshots: c.snapshots.load(Ordering::Relaxed),
            write_retries: c.retries.load(Ordering::Relaxed),
            write_failures: c.failures.load(Ordering::Relaxed),
            chunks_closed: self.inner.compact.closed.load(Ordering::Relaxed),
            chunk_merges: self.inner.compact.merged.load(Ordering::Relaxed),
            corrupt_chunks: self.inner.compact.corrupt.load(Ordering::Relaxed),
            rollup_days: self.inner.compact.days_rolled.load(Ordering::Relaxed),
            ..StoreStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn hash_replies_become_ordered_column_chunks() {
        let hgetall = |ts: &str, metrics: &[(&str, f64)]| {
            let mut items = vec![bulk("host_id"), bulk("h"), bulk("timestamp"), bulk(ts)];
            for (n, v) in metrics {
                items.push(bulk(&format!("metric:{n}")));
                items.push(bulk(&keys::encode_value(*v, 1)));
            }
            items.push(bulk("tag:zone"));
            items.push(bulk("z"));
            Value::Array(items)
        };
        let replies = [
            hgetall("1000", &[("a", 1.0)]),
            Value::Array(vec![]),
            hgetall("2000", &[("a", 2.0), ("b", 9.0)]),
        ];
        let mut b = ChunkBuilder::new(&[]);
        for r in &replies {
            b.add_hgetall(r);
        }
        let chunk = b.finish().unwrap();
        assert_eq!(
            chunk.timestamps_ms,
            vec![1000, 2000],
            "the expired (empty) reply is skipped"
        );
        assert_eq!(chunk.columns.len(), 2);
        assert!(chunk.columns[1].values[0].is_nan());
        assert_eq!(chunk.columns[1].values[1], 9.0);
        let pats = ["b".to_string()];
        let mut only_b = ChunkBuilder::new(&pats);
        for r in &replies {
            only_b.add_hgetall(r);
        }
        let only_b = only_b.finish().unwrap();
        assert_eq!(only_b.columns.len(), 1);
        assert_eq!(only_b.columns[0].name, "b");

        assert!(ChunkBuilder::new(&[]).finish().is_none());
    }

    #[test]
    fn hashes_parse_and_junk_is_skipped() {
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        let fields = vec![
            f("host_id", "h"),
            f("timestamp", "1234"),
            f("metric:cpu.usage", r#"{"value":5.5,"unit":"percent"}"#),
            f("metric:bad", "not json"),
            f("tag:zone", "z1"),
        ];
        let (ts, metrics) = parse_data(&fields).unwrap();
        assert_eq!(ts, 1234);
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].value, 5.5);
        assert!(parse_data(&[]).is_none());
        let host = parse_host(
            "h",
            &[
                f("last_seen", "9"),
                f("labels", r#"{"zone":"z"}"#),
                f("agent_version", "1"),
            ],
        )
        .unwrap();
        assert_eq!(host.last_seen_ms, 9);
        assert_eq!(host.labels.get("zone").map(String::as_str), Some("z"));
        assert!(parse_host("h", &[]).is_none());
    }
}
