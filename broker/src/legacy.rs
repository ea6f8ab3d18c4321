//! The seed system's `monitor.MonitorService`, so its agents and clients keep working: values
//! arrive as decimal strings with unit names and Unix-second timestamps, and are stored like
//! any other snapshot (data sent either way is readable either way).
//!
//! `SendMetrics` stores what it receives in batches as it goes; a message that cannot be
//! accepted (a value that is not a number, a bad host id, a timestamp out of range) ends the
//! call with INVALID_ARGUMENT naming the metric, after everything before it was stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ringwatch_proto::monitor::monitor_service_server::MonitorService;
use ringwatch_proto::monitor::{self as legacy, MetricsData, MetricsRequest, MetricsResponse};
use ringwatch_proto::{Metric, Snapshot, Unit};
use tonic::{Request, Response, Status, Streaming};

use crate::ingest::now_ms;
use crate::metrics::BrokerMetrics;
use crate::router::Router;
use crate::store::{HostRecord, RangeQuery};
use crate::validate::{self, Limits, Rejection};

/// Snapshots stored per round trip.
const FLUSH_EVERY: usize = 256;
/// Distinct hosts one SendMetrics call may carry.
const MAX_HOSTS_PER_CALL: usize = 10_000;
pub const LEGACY_AGENT_VERSION: &str = "legacy-monitor";

pub struct LegacyService {
    pub(crate) router: Arc<Router>,
    pub(crate) metrics: Arc<BrokerMetrics>,
    pub(crate) limits: Limits,
    pub(crate) max_snapshots: usize,
    pub(crate) max_cells: usize,
}

/// A legacy message as a snapshot; its tags as labels.
pub fn convert(m: &MetricsData) -> Result<(Snapshot, BTreeMap<String, String>), Rejection> {
    let bad = |label, reason: String| Rejection {
        code: tonic::Code::InvalidArgument,
        label,
        reason,
    };
    let ts = m.timestamp.checked_mul(1000).ok_or_else(|| {
        bad(
            "timestamp_out_of_range",
            format!("timestamp {} (Unix seconds) is out of range", m.timestamp),
        )
    })?;
    let mut metrics = Vec::with_capacity(m.metrics.len());
    for x in &m.metrics {
        let value: f64 = x.value.trim().parse().map_err(|_| {
            bad(
                "not_a_number",
                format!(
                    "metric {:?} at {}: value {:?} is not a number",
                    x.name,
                    m.timestamp,
                    x.value.chars().take(64).collect::<String>()
                ),
            )
        })?;
        metrics.push(Metric {
            name: x.name.clone(),
            value,
            unit: Unit::from_name(&x.unit) as i32,
            window: None,
        });
    }
    let tags = m
        .tags
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    Ok((
        Snapshot {
            host_id: m.host_id.clone(),
            timestamp_ms: ts,
            metrics,
        },
        tags,
    ))
}

impl LegacyService {
    async fn flush(
        &self,
        pending: &mut Vec<Snapshot>,
        stored: &mut u64,
        duplicates: &mut u64,
    ) -> Result<(), Status> {
        if pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(pending);
        self.metrics.batches_received.inc();
        match self.router.write(batch).await {
            Ok(out) => {
                self.metrics.stored(&out);
                *stored += out.stored as u64;
                *duplicates += out.duplicates as u64;
                match out.refused.first() {
                    None => Ok(()),
                    Some((_, reason)) => {
                        self.metrics
                            .rejected_snapshots
                            .get_or_create(&[("reason", "too_many_metric_names")])
                            .inc_by(out.refused.len() as u64);
                        Err(self.refuse(
                            Rejection {
                                code: tonic::Code::ResourceExhausted,
                                label: "too_many_metric_names",
                                reason: reason.clone(),
                            },
                            *stored,
                        ))
                    }
                }
            }
            Err(e) => {
                self.metrics.store_write_errors.inc();
                tracing::error!(error = %e, "legacy SendMetrics: store write failed");
                let s = Status::from(e);
                Err(Status::with_metadata(
                    s.code(),
                    format!(
                        "store write failed after {stored} stored snapshots: {}",
                        s.message()
                    ),
                    s.metadata().clone(),
                ))
            }
        }
    }

    fn refuse(&self, rej: Rejection, stored: u64) -> Status {
        self.metrics
            .rejected
            .get_or_create(&[("reason", rej.label)])
            .inc();
        if let Some(n) = self.metrics.refusal_log.allow() {
            tracing::warn!(reason = %rej.reason, stored, not_logged_since_last = n, "legacy SendMetrics refused a message");
        }
        Status::new(
            rej.code,
            format!("{} ({stored} snapshots before it were stored)", rej.reason),
        )
    }
}

#[tonic::async_trait]
impl MonitorService for LegacyService {
    async fn send_metrics(
        &self,
        req: Request<Streaming<MetricsData>>,
    ) -> Result<Response<MetricsResponse>, Status> {
        let mut inbound = req.into_inner();
        let mut pending: Vec<Snapshot> = Vec::new();
        let (mut stored, mut duplicates) = (0u64, 0u64);
        let mut registered: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        loop {
            let msg = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(status) => {
                    self.metrics
                        .stream_errors
                        .get_or_create(&[("kind", "legacy")])
                        .inc();
                    self.flush(&mut pending, &mut stored, &mut duplicates)
                        .await?;
                    return Err(status);
                }
            };
            let checked = convert(&msg).and_then(|(snap, tags)| {
                validate::check_host_id(&snap.host_id)?;
                validate::check_labels(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                validate::check_batch(
                    std::slice::from_ref(&snap),
                    &snap.host_id,
                    &self.limits,
                    now_ms(),
                )?;
                Ok((snap, tags))
            });
            let (snap, tags) = match checked {
                Ok(v) => v,
                Err(rej) => {
                    self.flush(&mut pending, &mut stored, &mut duplicates)
                        .await?;
                    return Err(self.refuse(rej, stored));
                }
            };
            if registered.get(&snap.host_id) != Some(&tags) {
                if registered.len() >= MAX_HOSTS_PER_CALL {
                    self.flush(&mut pending, &mut stored, &mut duplicates)
                        .await?;
                    let rej = Rejection {
                        code: tonic::Code::ResourceExhausted,
                        label: "too_many_hosts",
                        reason: format!(
                            "more than {MAX_HOSTS_PER_CALL} hosts in one SendMetrics call"
                        ),
                    };
                    return Err(self.refuse(rej, stored));
                }
                let record = HostRecord {
                    host_id: snap.host_id.clone(),
                    labels: tags.clone(),
                    agent_version: LEGACY_AGENT_VERSION.into(),
                    interval_ms: 0,
                    last_seen_ms: now_ms(),
                };
                if let Err(e) = self.router.register(record).await {
                    return Err(Status::from(e));
                }
                registered.insert(snap.host_id.clone(), tags);
            }
            let other_host = pending.first().is_some_and(|p| p.host_id != snap.host_id);
            if other_host || pending.len() >= FLUSH_EVERY {
                self.flush(&mut pending, &mut stored, &mut duplicates)
                    .await?;
            }
            pending.push(snap);
        }
        self.flush(&mut pending, &mut stored, &mut duplicates)
            .await?;
        Ok(Response::new(MetricsResponse {
            success: true,
            message: format!("stored {stored} snapshots ({duplicates} duplicates ignored)"),
        }))
    }

    type GetMetricsStream = tokio_stream::Iter<std::vec::IntoIter<Result<MetricsData, Status>>>;

    async fn get_metrics(
        &self,
        req: Request<MetricsRequest>,
    ) -> Result<Response<Self::GetMetricsStream>, Status> {
        let q = req.into_inner();
        validate::check_host_id(&q.host_id).map_err(|r| r.status())?;
        let end_s = if q.end_time == 0 {
            now_ms() / 1000
        } else {
            q.end_time
        };
        let start_s = if q.start_time == 0 {
            end_s - 3600
        } else {
            q.start_time
        };
        if start_s > end_s {
            return Err(Status::invalid_argument(format!(
                "start_time {start_s} is after end_time {end_s}"
            )));
        }
        let (Some(start_ms), Some(end_ms)) = (
            start_s.checked_mul(1000),
            end_s.checked_mul(1000).and_then(|e| e.checked_add(999)),
        ) else {
            return Err(Status::invalid_argument(
                "start_time or end_time out of range",
            ));
        };
        for n in &q.metric_names {
            validate::check_metric_name(n.strip_suffix('*').unwrap_or(n))
                .map_err(|r| r.status())?;
        }
        let chunks = self
            .router
            .range(RangeQuery {
                host_id: q.host_id.clone(),
                start_ms,
                end_ms,
                metric_names: q.metric_names,
                limit: self.max_snapshots,
                max_cells: self.max_cells,
                sparse_ok: true,
                step_ms: 0,
            })
            .await
            .map_err(Status::from)?;
        let Some(host) = self.router.host(&q.host_id).await.map_err(Status::from)? else {
            return Err(Status::not_found(format!("unknown host {:?}", q.host_id)));
        };
        let tags: Vec<legacy::Tag> = host
            .labels
            .iter()
            .map(|(k, v)| legacy::Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let out: Vec<Result<MetricsData, Status>> = chunks
            .iter()
            .flat_map(|c| c.to_snapshots(&q.host_id))
            .map(|s| {
                Ok(MetricsData {
                    host_id: s.host_id,
                    timestamp: s.timestamp_ms.div_euclid(1000),
                    metrics: s
                        .metrics
                        .into_iter()
                        .map(|m| legacy::Metric {
                            name: m.name,
                            value: m.value.to_string(),
                            unit: Unit::try_from(m.unit)
                                .unwrap_or(Unit::Unspecified)
                                .as_name()
                                .to_string(),
                        })
                        .collect(),
                    tags: tags.clone(),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(value: &str) -> MetricsData {
        MetricsData {
            host_id: "old-agent".into(),
            timestamp: 1_700_000_000,
            metrics: vec![legacy::Metric {
                name: "cpu_usage".into(),
                value: value.into(),
                unit: "%".into(),
            }],
            tags: vec![legacy::Tag {
                key: "dc".into(),
                value: "east".into(),
            }],
        }
    }

    #[test]
    fn numbers_convert_and_other_strings_are_refused_with_the_metric_named() {
        let (s, tags) = convert(&data(" 42.5 ")).unwrap();
        assert_eq!(s.timestamp_ms, 1_700_000_000_000);
        assert_eq!(s.metrics[0].value, 42.5);
        assert_eq!(s.metrics[0].unit, Unit::Percent as i32);
        assert_eq!(tags.get("dc").map(String::as_str), Some("east"));
        let err = convert(&data("forty")).unwrap_err();
        assert_eq!(err.label, "not_a_number");
        assert!(
            err.reason.contains("cpu_usage") && err.reason.contains("forty"),
            "{}",
            err.reason
        );
        let mut d = data("1");
        d.timestamp = i64::MAX;
        assert_eq!(convert(&d).unwrap_err().label, "timestamp_out_of_range");
    }
}
