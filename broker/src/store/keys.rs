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
//! The braces are literal: `{hostId}` is a Redis Cluster hash tag, so one host's keys share a
//! slot and a host's write is one node's work.

use ringwatch_proto::{Unit, WindowStats};

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
        let w = WindowStats {
            min: 1.0,
            max: 3.5,
            avg: 2.0,
            samples: 12,
        };
        assert_eq!(decode_window(&encode_window(&w)), Some(w));
    }
}
