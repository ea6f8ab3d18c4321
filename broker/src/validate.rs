//! Input validation for everything that arrives over the network. A rejection carries a gRPC
//! code, a reason a person can act on, and a short label for the /metrics counter.

use ringwatch_proto::{Register, Snapshot, rules};

/// Why input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: tonic::Code,
    /// Low-cardinality label for `ringwatch_broker_rejected_total{reason}`.
    pub label: &'static str,
    pub reason: String,
}

impl Rejection {
    fn invalid(label: &'static str, reason: String) -> Self {
        Rejection {
            code: tonic::Code::InvalidArgument,
            label,
            reason,
        }
    }

    pub fn status(&self) -> tonic::Status {
        tonic::Status::new(self.code, self.reason.clone())
    }
}

/// Limits applied to ingest.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_snapshots: usize,
    pub max_metrics_per_snapshot: usize,
    pub max_future_skew_ms: i64,
    pub retention_ms: i64,
}

/// A host id: 1–253 characters of `[A-Za-z0-9._-]` (a DNS name fits).
pub fn check_host_id(id: &str) -> Result<(), Rejection> {
    match rules::host_id_problem(id) {
        None => Ok(()),
        Some(reason) => Err(Rejection::invalid(
            if id.is_empty() {
                "empty_host_id"
            } else {
                "bad_host_id"
            },
            reason,
        )),
    }
}

/// A metric name: 1–200 characters of `[A-Za-z0-9._:-]`.
pub fn check_metric_name(name: &str) -> Result<(), Rejection> {
    rules::metric_name_problem(name).map_or(Ok(()), |reason| {
        Err(Rejection::invalid("bad_metric_name", reason))
    })
}

/// Labels as `rules::labels_problem` allows.
pub fn check_labels<'a>(
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Rejection> {
    rules::labels_problem(labels).map_or(Ok(()), |reason| {
        Err(Rejection::invalid("bad_labels", reason))
    })
}

pub fn check_register(r: &Register) -> Result<(), Rejection> {
    check_host_id(&r.host_id)?;
    check_labels(r.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    if r.agent_version.len() > 64 {
        return Err(Rejection::invalid(
            "bad_register",
            "agent_version longer than 64 characters".into(),
        ));
    }
    if r.interval_ms != 0 && !(100..=3_600_000).contains(&r.interval_ms) {
        return Err(Rejection::invalid(
            "bad_register",
            format!("interval_ms {} out of range 100..=3600000", r.interval_ms),
        ));
    }
    Ok(())
}

/// Checks a batch of `host`'s snapshots against the limits at wall-clock `now_ms`: the batch's
/// shape, then every snapshot (the first bad one refuses the whole batch).
pub fn check_batch(
    snapshots: &[Snapshot],
    host: &str,
    limits: &Limits,
    now_ms: i64,
) -> Result<(), Rejection> {
    check_batch_shape(snapshots, limits)?;
    snapshots
        .iter()
        .try_for_each(|s| check_snapshot(s, host, limits, now_ms))
}

/// Checks what refuses a batch as a whole: empty, or more snapshots than allowed.
pub fn check_batch_shape(snapshots: &[Snapshot], limits: &Limits) -> Result<(), Rejection> {
    if snapshots.is_empty() {
        return Err(Rejection::invalid(
            "empty_batch",
            "batch has no snapshots".into(),
        ));
    }
    if snapshots.len() > limits.max_batch_snapshots {
        return Err(Rejection {
            code: tonic::Code::ResourceExhausted,
            label: "batch_too_large",
            reason: format!(
                "batch has {} snapshots; at most {}",
                snapshots.len(),
                limits.max_batch_snapshots
            ),
        });
    }
    Ok(())
}

/// Checks one snapshot of `host` against the limits at wall-clock `now_ms`.
pub fn check_snapshot(
    s: &Snapshot,
    host: &str,
    limits: &Limits,
    now_ms: i64,
) -> Result<(), Rejection> {
    if s.host_id != host {
        check_host_id(&s.host_id)?;
        return Err(Rejection {
            code: tonic::Code::PermissionDenied,
            label: "host_mismatch",
            reason: format!(
                "snapshot for host {:?} on a stream registered as {:?}",
                s.host_id, host
            ),
        });
    }
    let (lo, hi) = (
        now_ms - limits.retention_ms,
        now_ms + limits.max_future_skew_ms,
    );
    if s.timestamp_ms < lo || s.timestamp_ms > hi {
        return Err(Rejection::invalid(
            "timestamp_out_of_range",
            format!(
                "timestamp_ms {} is outside the accepted window [{lo}, {hi}] (retention behind, clock skew ahead of the broker's clock)",
                s.timestamp_ms
            ),
        ));
    }
    if s.metrics.len() > limits.max_metrics_per_snapshot {
        return Err(Rejection {
            code: tonic::Code::ResourceExhausted,
            label: "too_many_metrics",
            reason: format!(
                "snapshot at {} has {} metrics; at most {}",
                s.timestamp_ms,
                s.metrics.len(),
                limits.max_metrics_per_snapshot
            ),
        });
    }
    for m in &s.metrics {
        check_metric_name(&m.name)?;
        let window_ok = m
            .window
            .is_none_or(|w| w.min.is_finite() && w.max.is_finite() && w.avg.is_finite());
        if !m.value.is_finite() || !window_ok {
            return Err(Rejection::invalid(
                "non_finite_value",
                format!(
                    "metric {:?} at {} has a NaN or infinite value",
                    m.name, s.timestamp_ms
                ),
            ));
        }
        if ringwatch_proto::Unit::try_from(m.unit).is_err() {
            return Err(Rejection::invalid(
                "bad_unit",
                format!("metric {:?} has unknown unit {}", m.name, m.unit),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::{Metric, WindowStats};

    const LIMITS: Limits = Limits {
        max_batch_snapshots: 4,
        max_metrics_per_snapshot: 3,
        max_future_skew_ms: 1000,
        retention_ms: 10_000,
    };

    fn snap(ts: i64, value: f64) -> Snapshot {
        Snapshot {
            host_id: "h1".into(),
            timestamp_ms: ts,
            metrics: vec![Metric {
                name: "cpu.usage".into(),
                value,
                unit: 1,
                window: None,
            }],
        }
    }

    #[test]
    fn good_batches_pass() {
        check_batch(
            &[snap(100_000, 1.0), snap(99_000, 2.0)],
            "h1",
            &LIMITS,
            100_000,
        )
        .unwrap();
    }

    #[test]
    fn each_bad_input_has_its_own_reason() {
        let now = 100_000;
        let label = |r: Result<(), Rejection>| r.unwrap_err().label;
        assert_eq!(label(check_batch(&[], "h1", &LIMITS, now)), "empty_batch");
        assert_eq!(
            label(check_batch(&vec![snap(now, 1.0); 5], "h1", &LIMITS, now)),
            "batch_too_large"
        );
        assert_eq!(
            label(check_batch(&[snap(now, f64::NAN)], "h1", &LIMITS, now)),
            "non_finite_value"
        );
        assert_eq!(
            label(check_batch(&[snap(now, f64::INFINITY)], "h1", &LIMITS, now)),
            "non_finite_value"
        );
        assert_eq!(
            label(check_batch(&[snap(now + 2000, 1.0)], "h1", &LIMITS, now)),
            "timestamp_out_of_range"
        );
        assert_eq!(
            label(check_batch(&[snap(now - 20_000, 1.0)], "h1", &LIMITS, now)),
            "timestamp_out_of_range"
        );
        assert_eq!(
            label(check_batch(&[snap(now, 1.0)], "h2", &LIMITS, now)),
            "host_mismatch"
        );
        let mut s = snap(now, 1.0);
        s.host_id = String::new();
        assert_eq!(
            label(check_batch(&[s], "h1", &LIMITS, now)),
            "empty_host_id"
        );
        let mut s = snap(now, 1.0);
        s.metrics[0].name = "bad name".into();
        assert_eq!(
            label(check_batch(&[s], "h1", &LIMITS, now)),
            "bad_metric_name"
        );
        let mut s = snap(now, 1.0);
        s.metrics[0].window = Some(WindowStats {
            min: 0.0,
            max: f64::NAN,
            avg: 0.0,
            samples: 1,
        });
        assert_eq!(
            label(check_batch(&[s], "h1", &LIMITS, now)),
            "non_finite_value"
        );
        let mut s = snap(now, 1.0);
        s.metrics = vec![s.metrics[0].clone(); 4];
        assert_eq!(
            label(check_batch(&[s], "h1", &LIMITS, now)),
            "too_many_metrics"
        );
        let mut s = snap(now, 1.0);
        s.metrics[0].unit = 99;
        assert_eq!(label(check_batch(&[s], "h1", &LIMITS, now)), "bad_unit");
    }

    #[test]
    fn host_ids_and_registrations() {
        assert_eq!(check_host_id("").unwrap_err().label, "empty_host_id");
        assert_eq!(check_host_id("a b").unwrap_err().label, "bad_host_id");
        assert_eq!(
            check_host_id(&"a".repeat(254)).unwrap_err().label,
            "bad_host_id"
        );
        check_host_id("node-1.example.com").unwrap();
        let mut r = Register {
            host_id: "n1".into(),
            agent_version: "0.1.0".into(),
            interval_ms: 5000,
            ..Default::default()
        };
        check_register(&r).unwrap();
        r.labels
            .insert("topology.kubernetes.io/zone".into(), "eu-1a".into());
        check_register(&r).unwrap();
        r.labels.insert("bad key".into(), "x".into());
        assert_eq!(check_register(&r).unwrap_err().label, "bad_labels");
    }
}
