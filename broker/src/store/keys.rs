//! The Redis key layout (SPEC S4) and the encoding of values in it.
//!
//! With the default prefix `monitor:`:
//! - `monitor:metrics:{hostId}:{timestamp}` — Hash: `host_id`, `timestamp` (Unix ms),
//!   `metric:{name}` → `{"value":…,"unit":"…"}`, `tag:{name}` → label value; TTL = retention.
//! - `monitor:index:metrics:{hostId}` — ZSet: member = the data key, score = timestamp (ms).
//! - `monitor:hosts:{hostId}` — Hash: `last_seen` (Unix ms), `labels` (JSON object),
//!   `agent_version`, `interval_ms`; TTL = retention (a host unseen that long is forgotten).
//! - `monitor:aggregation:window:{hostId}` — Hash: `metric:{name}` →
//!   `{"min":…,"max":…,"avg":…,"samples":…}`, the agent's newest sliding-window statistics.
//! - `monitor:hosts` — Set of host ids, so listing hosts needs no SCAN.
//!
//! Beyond the seed layout, for fast range reads: `monitor:packed:{hostId}:{timestamp}` — String
//! `<id of the metric-name list>:<base64 of every value as an f64>`, TTL = retention — and
//! `monitor:schema:{hostId}` — Hash: id → `[["name","unit"],…]`, the name lists. A range read
//! then GETs one string per snapshot instead of HGETALL of every field (which for 60 fields ×
//! 3600 snapshots costs Redis 27 ms alone). It is a key of its own, not a field, so the data
//! hash keeps Redis's compact listpack encoding (a field over 64 bytes would convert it to a
//! hashtable and double its memory). Snapshots without it (written by other tools) are read
//! whole.
//!
//! The braces are literal: `{hostId}` is a Redis Cluster hash tag, so one host's keys share a
//! slot and a host's write is one node's work.
//!
//! **The compact layout** (`--redis-layout compact`, the default) keeps a host's values in
//! compressed chunks per 10-minute window instead (`chunk.rs` encodes them):
//! - `monitor:chunk:{hostId}:{start}` — String: a closed window's rows, compressed columns
//!   (the embedded store's block section); expires at the window's end + the retention.
//! - `monitor:chunks:{hostId}` — ZSet: the closed windows' starts (member and score).
//! - `monitor:rows:{hostId}:{start}` — Hash: an open window's rows, timestamp (ms, decimal) →
//!   name-list id + values as f64s; `HSETNX` keeps a timestamp once. Closed (compressed into
//!   its chunk and deleted) once the window is over and unwritten for a grace period.
//! - `monitor:open:{hostId}` — ZSet: the open windows' starts, scored by their last write (ms).
//! - `monitor:rollup:{hostId}:{day}` — String: a UTC day's 1-minute rollups (min, max, sum,
//!   count per metric; `rollup.rs`), made once the day's windows are closed, with the CRCs of
//!   the chunks they came from (a read uses it only while those are the chunks there); expires
//!   with the day's last window.
//! - `monitor:latest:{hostId}` — String `<timestamp>:<the newest snapshot as protobuf>`, window
//!   statistics included: "latest" in one round trip.
//! - `monitor:schema:{hostId}`, `monitor:hosts:{hostId}` and `monitor:hosts` as above.
//!
//! `seed` writes the seed layout (with the packed strings); `both` writes both and reads the
//! seed one (for migrating: after a retention period of `both`, `compact` has every sample).

use ringwatch_proto::{Unit, WindowStats};
use serde::{Deserialize, Serialize};

/// Which key layout the Redis store writes and reads.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum RedisLayout {
    /// Compressed chunks per host and 10-minute window (a few bytes a sample).
    #[default]
    Compact,
    /// The seed system's layout (SPEC S4), for tools that read it.
    Seed,
    /// Both: writes each, reads the seed layout (for migrating).
    Both,
}

/// Width of a compact-layout window (ms). Fixed: windows of one width tile time the same way
/// for every broker and every release, so a timestamp has one window.
pub const CHUNK_MS: i64 = 600_000;

/// The start of the window holding `ts`.
pub fn window_start(ts: i64) -> i64 {
    ts.div_euclid(CHUNK_MS) * CHUNK_MS
}

/// The starts of the windows holding `[from, to]`.
pub fn windows(from: i64, to: i64) -> Vec<i64> {
    (window_start(from)..=window_start(to))
        .step_by(CHUNK_MS as usize)
        .collect()
}

pub const METRIC_FIELD: &str = "metric:";
pub const TAG_FIELD: &str = "tag:";

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn data(&self, host: &str, ts_ms: i64) -> String {
        format!("{}metrics:{{{host}}}:{ts_ms}", self.prefix)
    }

    pub fn index(&self, host: &str) -> String {
        format!("{}index:metrics:{{{host}}}", self.prefix)
    }

    pub fn host(&self, host: &str) -> String {
        format!("{}hosts:{{{host}}}", self.prefix)
    }

    pub fn aggregation(&self, kind: &str, host: &str) -> String {
        format!("{}aggregation:{kind}:{{{host}}}", self.prefix)
    }

    pub fn registry(&self) -> String {
        format!("{}hosts", self.prefix)
    }

    pub fn packed(&self, host: &str, ts_ms: i64) -> String {
        format!("{}packed:{{{host}}}:{ts_ms}", self.prefix)
    }

    pub fn schema(&self, host: &str) -> String {
        format!("{}schema:{{{host}}}", self.prefix)
    }

    pub fn chunk(&self, host: &str, start: i64) -> String {
        format!("{}chunk:{{{host}}}:{start}", self.prefix)
    }

    pub fn chunks(&self, host: &str) -> String {
        format!("{}chunks:{{{host}}}", self.prefix)
    }

    pub fn rows(&self, host: &str, start: i64) -> String {
        format!("{}rows:{{{host}}}:{start}", self.prefix)
    }

    pub fn open(&self, host: &str) -> String {
        format!("{}open:{{{host}}}", self.prefix)
    }

    pub fn rollup(&self, host: &str, day: i64) -> String {
        format!("{}rollup:{{{host}}}:{day}", self.prefix)
    }

    pub fn latest(&self, host: &str) -> String {
        format!("{}latest:{{{host}}}", self.prefix)
    }
}

/// The id of a snapshot's metric-name list (names and units, in order).
pub fn schema_id(metrics: &[ringwatch_proto::Metric]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for m in metrics {
        h.update(m.name.as_bytes());
        h.update(&[0]);
        h.update(&m.unit.to_le_bytes());
    }
    h.finalize()
}

/// The name list of `metrics` as stored under its id.
pub fn encode_schema(metrics: &[ringwatch_proto::Metric]) -> String {
    let list: Vec<(&str, &str)> = metrics
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                Unit::try_from(m.unit)
                    .unwrap_or(Unit::Unspecified)
                    .as_name(),
            )
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// (name, unit) pairs from `encode_schema`.
pub fn decode_schema(s: &[u8]) -> Option<Vec<(String, i32)>> {
    let list: Vec<(String, String)> = serde_json::from_slice(s).ok()?;
    Some(
        list.into_iter()
            .map(|(n, u)| (n, Unit::from_name(&u) as i32))
            .collect(),
    )
}

/// `<schema id, 8 hex digits>:<base64 of the values as little-endian f64s>` — text, so every
/// Redis client reads it as a string; exact; 10.7 characters a value; decoded at memory speed
/// (parsing decimal text was most of a range read's time).
pub fn encode_packed(id: u32, metrics: &[ringwatch_proto::Metric]) -> String {
    use base64::Engine;
    let mut raw = Vec::with_capacity(8 * metrics.len());
    for m in metrics {
        raw.extend_from_slice(&m.value.to_le_bytes());
    }
    let mut out = format!("{id:08x}:");
    base64::engine::general_purpose::STANDARD.encode_string(&raw, &mut out);
    out
}

/// The schema id of a packed string, without decoding its values.
pub fn packed_id(b: &[u8]) -> Option<u32> {
    let id = std::str::from_utf8(b.get(..8)?).ok()?;
    (b.get(8) == Some(&b':')).then_some(())?;
    u32::from_str_radix(id, 16).ok()
}

/// (schema id, values) from `encode_packed`; None if it is not that format.
pub fn decode_packed(b: &[u8]) -> Option<(u32, Vec<f64>)> {
    use base64::Engine;
    let id = packed_id(b)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&b[9..])
        .ok()?;
    if raw.len() % 8 != 0 {
        return None;
    }
    let values = raw
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        })
        .collect();
    Some((id, values))
}

/// `{"value":12.5,"unit":"percent"}` — written without a JSON library on the hot path; `value`
/// is always finite (ingest refuses NaN and infinities), so it is valid JSON.
pub fn encode_value(value: f64, unit: i32) -> String {
    let unit = Unit::try_from(unit).unwrap_or(Unit::Unspecified).as_name();
    format!("{{\"value\":{value},\"unit\":\"{unit}\"}}")
}

/// Reads what `encode_value` wrote (fast path), or any JSON object with `value` and `unit`.
pub fn decode_value(s: &str) -> Option<(f64, i32)> {
    let fast = s
        .strip_prefix("{\"value\":")
        .and_then(|r| r.strip_suffix("\"}"))
        .and_then(|r| r.split_once(",\"unit\":\""));
    if let Some((v, u)) = fast
        && let Ok(v) = v.parse::<f64>()
    {
        return Some((v, Unit::from_name(u) as i32));
    }
    let json: serde_json::Value = serde_json::from_str(s).ok()?;
    let value = json.get("value")?.as_f64()?;
    let unit = json.get("unit").and_then(|u| u.as_str()).unwrap_or("");
    Some((value, Unit::from_name(unit) as i32))
}

pub fn encode_window(w: &WindowStats) -> String {
    format!(
        "{{\"min\":{},\"max\":{},\"avg\":{},\"samples\":{}}}",
        w.min, w.max, w.avg, w.samples
    )
}

pub fn decode_window(s: &str) -> Option<WindowStats> {
    let json: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(WindowStats {
        min: json.get("min")?.as_f64()?,
        max: json.get("max")?.as_f64()?,
        avg: json.get("avg")?.as_f64()?,
        samples: json.get("samples")?.as_u64()? as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout_with_hash_tags() {
        let k = Keys::new("monitor:");
        assert_eq!(
            k.data("node-1", 1700000000123),
            "monitor:metrics:{node-1}:1700000000123"
        );
        assert_eq!(k.index("node-1"), "monitor:index:metrics:{node-1}");
        assert_eq!(k.host("node-1"), "monitor:hosts:{node-1}");
        assert_eq!(
            k.aggregation("window", "node-1"),
            "monitor:aggregation:window:{node-1}"
        );
        assert_eq!(k.registry(), "monitor:hosts");
        assert_eq!(Keys::new("rw:").index("a"), "rw:index:metrics:{a}");
    }

    #[test]
    fn values_are_json_and_round_trip() {
        let s = encode_value(12.5, Unit::Percent as i32);
        assert_eq!(s, r#"{"value":12.5,"unit":"percent"}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["value"], 12.5);
        assert_eq!(decode_value(&s), Some((12.5, Unit::Percent as i32)));
        for x in [0.0, -3.25, 1e300, 123456789.0, 0.1 + 0.2] {
            assert_eq!(
                decode_value(&encode_value(x, Unit::Bytes as i32)),
                Some((x, Unit::Bytes as i32))
            );
        }
        // Written by someone else, with spaces and another field order.
        assert_eq!(
            decode_value(r#"{ "unit": "bytes", "value": 7 }"#),
            Some((7.0, Unit::Bytes as i32))
        );
        assert_eq!(decode_value("not json"), None);
        let metrics = vec![
            ringwatch_proto::Metric {
                name: "a".into(),
                value: 1.5,
                unit: Unit::Percent as i32,
                window: None,
            },
            ringwatch_proto::Metric {
                name: "b".into(),
                value: -2.0,
                unit: Unit::Bytes as i32,
                window: None,
            },
        ];
        let id = schema_id(&metrics);
        let packed = encode_packed(id, &metrics);
        let packed_bytes = packed.as_bytes();
        assert!(
            packed.starts_with(&format!("{id:08x}:")) && packed.is_ascii(),
            "{packed}"
        );
        assert_eq!(packed_id(packed_bytes), Some(id));
        let (got_id, values) = decode_packed(packed_bytes).unwrap();
        assert_eq!(got_id, id);
        assert_eq!(values, vec![1.5, -2.0]);
        assert_eq!(
            decode_schema(encode_schema(&metrics).as_bytes()).unwrap(),
            vec![
                ("a".to_string(), Unit::Percent as i32),
                ("b".to_string(), Unit::Bytes as i32)
            ]
        );
        let mut other = metrics.clone();
        other[1].unit = Unit::Count as i32;
        assert_ne!(schema_id(&other), id, "a unit change is a new schema");
        assert!(decode_packed(b"zz:1").is_none());
        assert!(decode_packed(b"0000000a:not base64!").is_none());
        assert!(
            decode_packed(b"0000000a:AAAA").is_none(),
            "3 bytes are not a whole f64"
        );
        let w = WindowStats {
            min: 1.0,
            max: 3.5,
            avg: 2.0,
            samples: 12,
        };
        assert_eq!(decode_window(&encode_window(&w)), Some(w));
    }
}
