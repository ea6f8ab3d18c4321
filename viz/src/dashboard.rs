//! The dashboard snapshot (seed 004), held in memory and served without a broker round trip:
//! every host's newest values, a short history for sparklines, the summary, Top-K per metric
//! and which source feeds it. Snapshots are applied in timestamp order per host: one not newer
//! than what the host already has is a duplicate and is ignored, so a client never sees one
//! twice; the live feed fills gaps from brokers before it applies newer data.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use ringwatch_proto::{HostInfo, Snapshot, Unit};
use serde::Serialize;

/// Points of history kept per host for sparklines.
pub const SPARK_POINTS: usize = 120;

pub use ringwatch_core::now_ms;

/// A metric's newest value.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MetricValue {
    pub value: f64,
    /// The unit's name: percent, bytes, bytes_per_second, count, per_second, seconds, load,
    /// hertz, or empty when unspecified.
    pub unit: &'static str,
}

#[derive(Default)]
struct HostView {
    labels: BTreeMap<String, String>,
    agent_version: String,
    interval_ms: u32,
    last_ts: i64,
    metrics: HashMap<String, (f64, i32)>,
    /// (timestamp, cpu %, memory %)
    spark: VecDeque<(i64, f64, f64)>,
}

impl HostView {
    /// The newest values whose names `keep` selects.
    fn values(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, MetricValue> {
        self.metrics
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, (v, u))| {
                (
                    n.clone(),
                    MetricValue {
                        value: *v,
                        unit: unit_name(*u),
                    },
                )
            })
            .collect()
    }
}

#[derive(Default)]
struct State {
    hosts: BTreeMap<String, HostView>,
    /// Brokers whose live stream feeds the dashboard now.
    sources: std::collections::BTreeSet<String>,
    applied: u64,
    duplicates: u64,
}

/// The rule viz applies (the broker's defaults, SPEC S5): stale after 3 missed intervals,
/// gone after 10 minutes without data.
const RULE: ringwatch_core::LivenessRule = ringwatch_core::LivenessRule {
    stale_after_intervals: 3,
    gone_after_ms: 600_000,
};
/// A host is stale after missing this many intervals…
pub const STALE_AFTER_INTERVALS: u32 = RULE.stale_after_intervals;
/// …and gone after this long without data.
pub const GONE_AFTER_MS: i64 = RULE.gone_after_ms;
/// The interval assumed for a host that has not said its own.
pub const DEFAULT_INTERVAL_MS: u32 = ringwatch_core::liveness::DEFAULT_INTERVAL_MS;

/// Live / stale / gone from the age of a host's newest data.
pub fn host_state(age_ms: i64, interval_ms: u32) -> &'static str {
    RULE.of(age_ms, interval_ms).as_str()
}

/// The fleet at a glance.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Hosts known (live, stale and gone).
    pub hosts: usize,
    /// Hosts whose newest data is at most 3 of their intervals old.
    pub live: usize,
    /// Hosts whose newest data is older than that, up to 10 minutes.
    pub stale: usize,
    /// Hosts silent for more than 10 minutes.
    pub gone: usize,
    /// Mean CPU % of the hosts not gone; null with none.
    #[schema(required)]
    pub cpu_avg: Option<f64>,
    /// Highest CPU % of the hosts not gone; null with none.
    #[schema(required)]
    pub cpu_max: Option<f64>,
    /// Mean memory used % of the hosts not gone; null with none.
    #[schema(required)]
    pub mem_avg: Option<f64>,
    /// Highest memory used % of the hosts not gone; null with none.
    #[schema(required)]
    pub mem_max: Option<f64>,
    /// Whether live push from a broker feeds the dashboard now (false: fallback pull).
    pub live_push: bool,
    /// The brokers streaming to viz now.
    pub sources: Vec<String>,
    /// When this was computed (Unix ms).
    pub generated_ms: i64,
    /// The rule behind `state`: a host is live while its newest data is at most this many of
    /// its intervals old (`default_interval_ms` when it has not said), stale until
    /// `gone_after_ms`, then gone — for clients that age rows between reads.
    pub stale_after_intervals: u32,
    pub gone_after_ms: i64,
    pub default_interval_ms: u32,
}

/// One host's row on the dashboard.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostRow {
    pub host_id: String,
    /// live, stale or gone (see Summary).
    pub state: &'static str,
    /// Timestamp of the newest data (Unix ms; 0 if none yet).
    pub last_seen_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    /// The agent's collection interval (ms; 0 if not known yet).
    pub interval_ms: u32,
    /// Newest cpu.usage (percent).
    #[schema(required)]
    pub cpu: Option<f64>,
    /// Newest mem.used_percent.
    #[schema(required)]
    pub mem: Option<f64>,
    /// Newest load.1.
    #[schema(required)]
    pub load1: Option<f64>,
    /// Newest disk.used_percent.
    #[schema(required)]
    pub disk: Option<f64>,
    /// Newest net.rx_bytes_per_sec.
    #[schema(required)]
    pub net_rx: Option<f64>,
    /// Newest net.tx_bytes_per_sec.
    #[schema(required)]
    pub net_tx: Option<f64>,
    /// Timestamps of the recent history, oldest first.
    pub spark_ts: Vec<i64>,
    /// CPU % at those timestamps, to 0.01 (a sparkline needs no more; with 17-digit doubles a
    /// host's row is about half as large again); null where the host did not report it.
    pub spark_cpu: Vec<Option<f64>>,
}

/// One host in a Top-K, highest value first.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TopEntry {
    pub host_id: String,
    pub value: f64,
    pub unit: &'static str,
    /// When the host reported it (Unix ms).
    pub timestamp_ms: i64,
}

/// One host with all its newest values.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostDetail {
    pub host_id: String,
    /// live, stale or gone (see Summary).
    pub state: &'static str,
    /// Timestamp of the newest data (Unix ms; 0 if none yet).
    pub last_seen_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    /// The agent's collection interval (ms; 0 if not known yet).
    pub interval_ms: u32,
    /// Every metric's newest value, by name.
    pub metrics: BTreeMap<String, MetricValue>,
}

/// Snapshots held per push client before it lags.
const HUB_CAPACITY: usize = 1024;

pub struct Dashboard {
    state: RwLock<State>,
    /// Bumped on every change, so rendered views can be reused until it moves.
    version: std::sync::atomic::AtomicU64,
    /// Every applied snapshot, for push clients (WebSocket, QUIC).
    hub: tokio::sync::broadcast::Sender<std::sync::Arc<Published>>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            state: RwLock::default(),
            version: std::sync::atomic::AtomicU64::new(0),
            hub: tokio::sync::broadcast::channel(HUB_CAPACITY).0,
        }
    }
}

/// A host's newest values, as push clients get them.
#[derive(Debug, Clone, Serialize)]
pub struct HostUpdate {
    pub host_id: String,
    pub timestamp_ms: i64,
    pub metrics: BTreeMap<String, MetricValue>,
}

impl HostUpdate {
    /// `s` with only the metrics `keep` selects.
    pub fn of(s: &Snapshot, keep: impl Fn(&str) -> bool) -> HostUpdate {
        HostUpdate {
            host_id: s.host_id.clone(),
            timestamp_ms: s.timestamp_ms,
            metrics: values(s, keep).map(|(n, v)| (n.to_string(), v)).collect(),
        }
    }
}

/// An applied snapshot as push clients get it. The JSON of its whole update is rendered once,
/// by the first client that sends it, and shared by every client with no metric filter: with
/// a thousand dashboards open, one serialization per snapshot instead of a thousand.
pub struct Published {
    pub snapshot: Snapshot,
    full: std::sync::OnceLock<bytes::Bytes>,
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Published {
        Published {
            snapshot,
            full: std::sync::OnceLock::new(),
        }
    }

    /// `{"type":"update",…}` with every metric, UTF-8 JSON.
    pub fn full_update(&self) -> bytes::Bytes {
        self.full
            .get_or_init(|| update_json(&self.snapshot, |_| true))
            .clone()
    }
}

/// `{"type":"update", host_id, timestamp_ms, metrics:{name:{value,unit}}}` with the metrics
/// `keep` selects, as UTF-8 JSON.
pub fn update_json(s: &Snapshot, keep: impl Fn(&str) -> bool) -> bytes::Bytes {
    #[derive(Serialize)]
    struct Update<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        host_id: &'a str,
        timestamp_ms: i64,
        metrics: BTreeMap<&'a str, MetricValue>,
    }
    let u = Update {
        kind: "update",
        host_id: &s.host_id,
        timestamp_ms: s.timestamp_ms,
        metrics: values(s, keep).collect(),
    };
    // Serializing plain strings, numbers and maps cannot fail.
    serde_json::to_vec(&u).unwrap_or_default().into()
}

/// The metrics of `s` that `keep` selects, as (name, value with its unit's name).
fn values<'a>(
    s: &'a Snapshot,
    keep: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = (&'a str, MetricValue)> + 'a {
    s.metrics.iter().filter(move |m| keep(&m.name)).map(|m| {
        (
            m.name.as_str(),
            MetricValue {
                value: m.value,
                unit: unit_name(m.unit),
            },
        )
    })
}

fn unit_name(u: i32) -> &'static str {
    Unit::try_from(u).unwrap_or(Unit::Unspecified).as_name()
}

impl Dashboard {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a snapshot; false if it is not newer than what its host has (a duplicate).
    pub fn apply(&self, s: &Snapshot) -> bool {
        let mut st = self.write();
        let host = st.hosts.entry(s.host_id.clone()).or_default();
        if s.timestamp_ms <= host.last_ts {
            st.duplicates += 1;
            return false;
        }
        host.last_ts = s.timestamp_ms;
        host.metrics.clear();
        for m in &s.metrics {
            host.metrics.insert(m.name.clone(), (m.value, m.unit));
        }
        let cpu = host.metrics.get("cpu.usage").map_or(f64::NAN, |v| v.0);
        let mem = host
            .metrics
            .get("mem.used_percent")
            .map_or(f64::NAN, |v| v.0);
        host.spark.push_back((s.timestamp_ms, cpu, mem));
        while host.spark.len() > SPARK_POINTS {
            host.spark.pop_front();
        }
        st.applied += 1;
        drop(st);
        self.bump();
        if self.hub.receiver_count() > 0 {
            let _ = self
                .hub
                .send(std::sync::Arc::new(Published::new(s.clone())));
        }
        true
    }

    fn bump(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Changes with every applied snapshot, registry update and source change.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every snapshot applied from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Published>> {
        self.hub.subscribe()
    }

    /// The newest values of the hosts `host` selects, metrics filtered by `keep`.
    pub fn current(
        &self,
        host: impl Fn(&str) -> bool,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<HostUpdate> {
        let st = self.read();
        st.hosts
            .iter()
            .filter(|(id, h)| host(id) && h.last_ts > 0)
            .map(|(id, h)| HostUpdate {
                host_id: id.clone(),
                timestamp_ms: h.last_ts,
                metrics: h.values(&keep),
            })
            .collect()
    }

    /// The newest timestamp a host has (0 if none).
    pub fn last_ts(&self, host: &str) -> i64 {
        self.read().hosts.get(host).map_or(0, |h| h.last_ts)
    }

    /// Labels, version and interval from the brokers' host registry.
    pub fn set_hosts(&self, hosts: &[HostInfo]) {
        let mut st = self.write();
        for h in hosts {
            let v = st.hosts.entry(h.host_id.clone()).or_default();
            v.labels = h.labels.clone().into_iter().collect();
            v.agent_version = h.agent_version.clone();
            v.interval_ms = h.interval_ms;
        }
        drop(st);
        self.bump();
    }

    /// Marks a broker's live stream as feeding the dashboard, or not.
    pub fn set_live(&self, broker: &str, live: bool) {
        let mut st = self.write();
        let changed = if live {
            st.sources.insert(broker.to_string())
        } else {
            st.sources.remove(broker)
        };
        drop(st);
        if changed {
            self.bump();
        }
    }

    /// (applied, duplicates ignored)
    pub fn counts(&self) -> (u64, u64) {
        let st = self.read();
        (st.applied, st.duplicates)
    }

    pub fn summary(&self, now: i64) -> Summary {
        let st = self.read();
        let (mut live, mut stale, mut gone) = (0, 0, 0);
        let (mut cpu, mut mem) = (Vec::new(), Vec::new());
        for h in st.hosts.values() {
            match host_state(now - h.last_ts, h.interval_ms) {
                "live" => live += 1,
                "stale" => stale += 1,
                _ => gone += 1,
            }
            if host_state(now - h.last_ts, h.interval_ms) == "gone" {
                continue;
            }
            if let Some(v) = h.metrics.get("cpu.usage") {
                cpu.push(v.0);
            }
            if let Some(v) = h.metrics.get("mem.used_percent") {
                mem.push(v.0);
            }
        }
        let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let max = |v: &[f64]| {
            v.iter()
                .copied()
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        Summary {
            hosts: st.hosts.len(),
            live,
            stale,
            gone,
            cpu_avg: avg(&cpu),
            cpu_max: max(&cpu),
            mem_avg: avg(&mem),
            mem_max: max(&mem),
            live_push: !st.sources.is_empty(),
            sources: st.sources.iter().cloned().collect(),
            generated_ms: now,
            stale_after_intervals: STALE_AFTER_INTERVALS,
            gone_after_ms: GONE_AFTER_MS,
            default_interval_ms: DEFAULT_INTERVAL_MS,
        }
    }

    pub fn hosts(&self, now: i64) -> Vec<HostRow> {
        let st = self.read();
        st.hosts
            .iter()
            .map(|(id, h)| {
                let get = |n: &str| h.metrics.get(n).map(|v| v.0);
                HostRow {
                    host_id: id.clone(),
                    state: host_state(now - h.last_ts, h.interval_ms),
                    last_seen_ms: h.last_ts,
                    labels: h.labels.clone(),
                    agent_version: h.agent_version.clone(),
                    interval_ms: h.interval_ms,
                    cpu: get("cpu.usage"),
                    mem: get("mem.used_percent"),
                    load1: get("load.1"),
                    disk: get("disk.used_percent"),
                    net_rx: get("net.rx_bytes_per_sec"),
                    net_tx: get("net.tx_bytes_per_sec"),
                    spark_ts: h.spark.iter().map(|p| p.0).collect(),
                    spark_cpu: h
                        .spark
                        .iter()
                        .map(|p| p.1.is_finite().then(|| (p.1 * 100.0).round() / 100.0))
                        .collect(),
                }
            })
            .collect()
    }

    pub fn host(&self, id: &str, now: i64) -> Option<HostDetail> {
        let st = self.read();
        let h = st.hosts.get(id)?;
        Some(HostDetail {
            host_id: id.to_string(),
            state: host_state(now - h.last_ts, h.interval_ms),
            last_seen_ms: h.last_ts,
            labels: h.labels.clone(),
            agent_version: h.agent_version.clone(),
            interval_ms: h.interval_ms,
            metrics: h.values(|_| true),
        })
    }

    pub fn host_ids(&self) -> Vec<String> {
        self.read().hosts.keys().cloned().collect()
    }

    /// The `k` hosts with the highest newest value of `metric`, among values newer than
    /// `window_ms`.
    pub fn topk(&self, metric: &str, k: usize, window_ms: i64, now: i64) -> Vec<TopEntry> {
        let st = self.read();
        let mut entries: Vec<TopEntry> = st
            .hosts
            .iter()
            .filter(|(_, h)| now - h.last_ts <= window_ms)
            .filter_map(|(id, h)| {
                let (value, unit) = *h.metrics.get(metric)?;
                Some(TopEntry {
                    host_id: id.clone(),
                    value,
                    unit: unit_name(unit),
                    timestamp_ms: h.last_ts,
                })
            })
            .collect();
        entries.sort_by(|a, b| {
            b.value
                .total_cmp(&a.value)
                .then_with(|| a.host_id.cmp(&b.host_id))
        });
        entries.truncate(k);
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::Metric;

    fn snap(host: &str, ts: i64, cpu: f64) -> Snapshot {
        Snapshot {
            host_id: host.into(),
            timestamp_ms: ts,
            metrics: vec![
                Metric {
                    name: "cpu.usage".into(),
                    value: cpu,
                    unit: Unit::Percent as i32,
                    window: None,
                },
                Metric {
                    name: "mem.used_percent".into(),
                    value: 50.0,
                    unit: Unit::Percent as i32,
                    window: None,
                },
            ],
        }
    }

    #[test]
    fn duplicates_and_old_snapshots_are_ignored() {
        let d = Dashboard::default();
        assert!(d.apply(&snap("a", 1000, 10.0)));
        assert!(!d.apply(&snap("a", 1000, 99.0)));
        assert!(!d.apply(&snap("a", 500, 99.0)));
        assert!(d.apply(&snap("a", 2000, 20.0)));
        assert_eq!(d.counts(), (2, 2));
        assert_eq!(d.last_ts("a"), 2000);
        let rows = d.hosts(2000);
        assert_eq!(rows[0].cpu, Some(20.0));
        assert_eq!(rows[0].spark_cpu, vec![Some(10.0), Some(20.0)]);
        // Sparkline values are kept to 0.01: short in JSON.
        let d = Dashboard::default();
        let mut s = snap("r", 1000, 12.345_678_901_234_567);
        s.metrics.retain(|m| m.name == "cpu.usage");
        d.apply(&s);
        assert_eq!(d.hosts(2000)[0].spark_cpu, vec![Some(12.35)]);
        assert_eq!(rows[0].spark_ts, vec![1000, 2000]);
    }

    #[test]
    fn the_version_moves_with_every_change_and_only_then() {
        let d = Dashboard::default();
        let v0 = d.version();
        d.apply(&snap("a", 1000, 10.0));
        let v1 = d.version();
        assert!(v1 > v0);
        d.apply(&snap("a", 1000, 10.0));
        assert_eq!(d.version(), v1, "a duplicate changes nothing");
        d.set_live("http://b1", true);
        let v2 = d.version();
        assert!(v2 > v1);
        d.set_live("http://b1", true);
        assert_eq!(d.version(), v2);
    }

    #[test]
    fn summary_states_and_topk() {
        let d = Dashboard::default();
        let now = 10_000_000;
        d.apply(&snap("a", now - 1000, 10.0));
        d.apply(&snap("b", now - 2000, 90.0));
        d.apply(&snap("c", now - 60_000, 50.0)); // stale with a 5 s default interval
        d.apply(&snap("d", now - 3_600_000, 99.0)); // gone
        let s = d.summary(now);
        assert_eq!((s.hosts, s.live, s.stale, s.gone), (4, 2, 1, 1));
        assert_eq!(s.cpu_max, Some(90.0));
        assert_eq!(
            s.cpu_avg,
            Some(50.0),
            "gone hosts are left out of the averages"
        );
        let top = d.topk("cpu.usage", 2, 3_000_000, now);
        assert_eq!(
            top.iter().map(|t| t.host_id.as_str()).collect::<Vec<_>>(),
            vec!["b", "c"]
        );
        assert_eq!(top[0].unit, "percent");
        assert!(d.topk("nope", 5, 3_000_000, now).is_empty());
        let detail = d.host("a", now).unwrap();
        assert_eq!(detail.state, "live");
        assert_eq!(detail.metrics["cpu.usage"].value, 10.0);
        assert!(d.host("zz", now).is_none());
    }
}
