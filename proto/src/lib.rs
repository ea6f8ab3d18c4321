//! The Ringwatch gRPC contract (`proto/ringwatch/v1/ringwatch.proto`), compiled by build.rs
//! with a vendored protoc, plus small helpers both ends of the wire use.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ringwatch.v1");
}

/// The seed system's `monitor.MonitorService` (legacy protocol: string values, Unix seconds).
#[allow(clippy::all, missing_docs)]
pub mod monitor {
    tonic::include_proto!("monitor");
}

pub mod codec;
pub mod rules;

pub use v1::*;

/// Width of a broker's stored rollup bucket (ms): `RangeRequest.step_ms` is a whole number of
/// them.
pub const ROLLUP_MS: i64 = 60_000;

/// Whether `name` is selected by `patterns`: empty selects everything; a pattern ending in
/// `*` matches by prefix, any other pattern matches exactly.
pub fn name_selected(patterns: &[String], name: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

impl Column {
    /// The value at `row` of its chunk, if present (dense or sparse form).
    pub fn value_at(&self, row: usize) -> Option<f64> {
        let v = if self.rows.is_empty() {
            *self.values.get(row)?
        } else {
            let i = self.rows.binary_search(&u32::try_from(row).ok()?).ok()?;
            *self.values.get(i)?
        };
        (!v.is_nan()).then_some(v)
    }

    /// (row, value) of every value present, in row order (dense or sparse form).
    pub fn present(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        let sparse = !self.rows.is_empty();
        self.values.iter().enumerate().filter_map(move |(i, &v)| {
            if v.is_nan() {
                return None;
            }
            let row = if sparse {
                *self.rows.get(i)? as usize
            } else {
                i
            };
            Some((row, v))
        })
    }
}

impl RangeChunk {
    /// What a response's size limit counts: the values carried, the timestamps, and one per
    /// column (its name).
    pub fn cells(&self) -> usize {
        self.timestamps_ms.len()
            + self
                .columns
                .iter()
                .map(|c| c.values.len() + c.min.len() + c.max.len() + c.count.len() + 1)
                .sum::<usize>()
    }

    /// The chunk's rows as snapshots of `host_id`; a metric absent in a row (NaN) is left out.
    pub fn to_snapshots(&self, host_id: &str) -> Vec<Snapshot> {
        self.timestamps_ms
            .iter()
            .enumerate()
            .map(|(row, &ts)| Snapshot {
                host_id: host_id.to_string(),
                timestamp_ms: ts,
                metrics: self
                    .columns
                    .iter()
                    .filter_map(|c| {
                        let value = c.value_at(row)?;
                        Some(Metric {
                            name: c.name.clone(),
                            value,
                            unit: c.unit,
                            window: None,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Unit {
    /// The unit's name in stored JSON and the legacy protocol (`percent`, `bytes`, …).
    pub fn as_name(self) -> &'static str {
        match self {
            Unit::Unspecified => "",
            Unit::Percent => "percent",
            Unit::Bytes => "bytes",
            Unit::BytesPerSecond => "bytes_per_second",
            Unit::Count => "count",
            Unit::PerSecond => "per_second",
            Unit::Seconds => "seconds",
            Unit::Load => "load",
            Unit::Hertz => "hertz",
        }
    }

    /// Reads a unit name as written by `as_name`, or a common symbol (`%`, `B`, `B/s`, `s`).
    /// Anything else is `Unspecified`.
    pub fn from_name(name: &str) -> Unit {
        match name.trim().to_ascii_lowercase().as_str() {
            "percent" | "%" | "pct" => Unit::Percent,
            "bytes" | "b" | "byte" => Unit::Bytes,
            "bytes_per_second" | "b/s" | "bytes/s" | "bps" => Unit::BytesPerSecond,
            "count" => Unit::Count,
            "per_second" | "/s" | "ops/s" => Unit::PerSecond,
            "seconds" | "s" | "sec" => Unit::Seconds,
            "load" => Unit::Load,
            "hertz" | "hz" => Unit::Hertz,
            _ => Unit::Unspecified,
        }
    }

    /// A short human suffix for tables.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Unspecified => "",
            Unit::Percent => "%",
            Unit::Bytes => "B",
            Unit::BytesPerSecond => "B/s",
            Unit::Count => "",
            Unit::PerSecond => "/s",
            Unit::Seconds => "s",
            Unit::Load => "",
            Unit::Hertz => "Hz",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_turn_into_rows_leaving_out_absent_values() {
        let chunk = RangeChunk {
            timestamps_ms: vec![10, 20],
            columns: vec![
                Column {
                    name: "a".into(),
                    unit: Unit::Percent as i32,
                    values: vec![1.0, 2.0],
                    rows: vec![],
                    ..Default::default()
                },
                Column {
                    name: "b".into(),
                    unit: Unit::Bytes as i32,
                    values: vec![f64::NAN, 5.0],
                    rows: vec![],
                    ..Default::default()
                },
            ],
            truncated: false,
            missing_brokers: vec![],
        };
        let rows = chunk.to_snapshots("h");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].metrics.len(), 1);
        assert_eq!(rows[1].metrics[1].name, "b");
        assert_eq!(rows[1].metrics[1].value, 5.0);
        assert_eq!(rows[1].timestamp_ms, 20);
    }

    #[test]
    fn unit_names_round_trip() {
        for u in [
            Unit::Unspecified,
            Unit::Percent,
            Unit::Bytes,
            Unit::BytesPerSecond,
            Unit::Count,
            Unit::PerSecond,
            Unit::Seconds,
            Unit::Load,
            Unit::Hertz,
        ] {
            assert_eq!(Unit::from_name(u.as_name()), u);
        }
        assert_eq!(Unit::from_name("%"), Unit::Percent);
        assert_eq!(Unit::from_name("furlongs"), Unit::Unspecified);
    }

    #[test]
    fn name_selection_by_exact_and_prefix() {
        let pats = vec!["cpu.*".to_string(), "mem.used".to_string()];
        assert!(name_selected(&pats, "cpu.total.usage"));
        assert!(name_selected(&pats, "mem.used"));
        assert!(!name_selected(&pats, "mem.used_percent"));
        assert!(!name_selected(&pats, "net.eth0.rx"));
        assert!(name_selected(&[], "anything"));
    }
}
