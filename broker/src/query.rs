//! Query RPCs: a host's range (server stream, in order), the latest snapshot of every host, and
//! the host registry with live/stale/gone states.

use std::sync::Arc;

use ringwatch_proto::query_server::Query;
use ringwatch_proto::{
    HostInfo, HostState, HostsRequest, HostsResponse, LatestRequest, LatestResponse, RangeChunk,
    RangeRequest,
};
use tonic::{Request, Response, Status};

use crate::ingest::now_ms;
use crate::metrics::BrokerMetrics;
use crate::store::{HostRecord, RangeQuery};
use crate::validate;
use tracing::Instrument;

const MAX_NAME_PATTERNS: usize = 256;

pub struct QueryService {
    pub(crate) router: Arc<crate::router::Router>,
    pub(crate) metrics: Arc<BrokerMetrics>,
    pub(crate) max_snapshots: usize,
    /// Most values (and timestamps) one Range answer carries.
    pub(crate) max_cells: usize,
    pub(crate) stale_after_intervals: u32,
    pub(crate) gone_after_ms: i64,
    pub(crate) live: Arc<crate::live::Live>,
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
    /// The control plane (`--raft`), for `Cluster`.
    pub(crate) control: Option<Arc<crate::control::ControlPlane>>,
    /// This broker's gRPC URL as others reach it (a broker alone reports itself).
    pub(crate) grpc_url: String,
}

pub(crate) fn check_patterns(names: &[String]) -> Result<(), Status> {
    if names.len() > MAX_NAME_PATTERNS {
        return Err(Status::invalid_argument(format!(
            "{} metric names; at most {MAX_NAME_PATTERNS}",
            names.len()
        )));
    }
    for n in names {
        let bare = n.strip_suffix('*').unwrap_or(n);
        if !(bare.is_empty() && n == "*") {
            validate::check_metric_name(bare).map_err(|r| r.status())?;
        }
    }
    Ok(())
}

/// Live, stale or gone, from last-seen against the host's interval (the shared rule).
pub fn host_state(
    r: &HostRecord,
    now: i64,
    stale_after_intervals: u32,
    gone_after_ms: i64,
) -> HostState {
    let rule = ringwatch_core::LivenessRule {
        stale_after_intervals,
        gone_after_ms,
    };
    match rule.of(now - r.last_seen_ms, r.interval_ms) {
        ringwatch_core::Liveness::Live => HostState::Live,
        ringwatch_core::Liveness::Stale => HostState::Stale,
        ringwatch_core::Liveness::Gone => HostState::Gone,
    }
}

impl QueryService {
    /// Times an answer from `started` (`query_seconds{rpc}`), then counts it.
    fn timed<T>(
        &self,
        rpc: &'static str,
        started: std::time::Instant,
        r: Result<T, Status>,
    ) -> Result<T, Status> {
        self.metrics
            .query_seconds
            .get_or_create(&[("rpc", rpc)])
            .observe(started.elapsed().as_secs_f64());
        self.observe(rpc, r)
    }

    /// Counts an answer by rpc and code.
    fn observe<T>(&self, rpc: &'static str, r: Result<T, Status>) -> Result<T, Status> {
        let code = match &r {
            Ok(_) => "ok",
            Err(s) => match s.code() {
                tonic::Code::InvalidArgument => "invalid_argument",
                tonic::Code::NotFound => "not_found",
                tonic::Code::ResourceExhausted => "resource_exhausted",
                tonic::Code::Unavailable => "unavailable",
                _ => "other",
            },
        };
        self.metrics
            .queries
            .get_or_create(&[("rpc", rpc), ("code", code)])
            .inc();
        if let Err(s) = &r {
            tracing::debug!(rpc, code = ?s.code(), message = s.message(), "query refused");
        }
        r
    }

    async fn range_inner(&self, q: RangeRequest) -> Result<Vec<RangeChunk>, Status> {
        let host_id = q.host_id.clone();
        let query = range_query(q, self.max_snapshots, self.max_cells)?;
        let chunks = self.router.range(query).await.map_err(Status::from)?;
        if chunks.is_empty() {
            let known = self
                .router
                .host(&host_id)
                .await
                .map_err(Status::from)?
                .is_some();
            if !known {
                return Err(Status::not_found(format!("unknown host {host_id:?}")));
            }
        }
        Ok(chunks)
    }
}

/// A range request checked (host id, bounds, name patterns, limit, step) and made a store
/// query: `limit` 0 asks for `max_snapshots`, more is refused; answers carry at most
/// `max_cells` values. Shared by the Query service and the peers' local reads.
pub(crate) fn range_query(
    q: RangeRequest,
    max_snapshots: usize,
    max_cells: usize,
) -> Result<RangeQuery, Status> {
    validate::check_host_id(&q.host_id).map_err(|r| r.status())?;
    if q.start_ms > q.end_ms {
        return Err(Status::invalid_argument(format!(
            "start_ms {} is after end_ms {}",
            q.start_ms, q.end_ms
        )));
    }
    check_patterns(&q.metric_names)?;
    let limit = match q.limit as usize {
        0 => max_snapshots,
        n if n > max_snapshots => {
            return Err(Status::invalid_argument(format!(
                "limit {n} is above the maximum {max_snapshots}"
            )));
        }
        n => n,
    };
    check_step(q.step_ms, q.start_ms, q.end_ms)?;
    Ok(RangeQuery {
        host_id: q.host_id,
        start_ms: q.start_ms,
        end_ms: q.end_ms,
        metric_names: q.metric_names,
        limit,
        max_cells,
        sparse_ok: q.sparse_ok,
        step_ms: q.step_ms,
    })
}

/// Most buckets a rollup read may ask for.
pub const MAX_BUCKETS: i64 = 100_000;

/// A range's step: 0 (raw rows) or a whole number of rollup minutes, at most
/// [`MAX_BUCKETS`] buckets over the range.
pub(crate) fn check_step(step_ms: i64, start_ms: i64, end_ms: i64) -> Result<(), Status> {
    let minute = crate::store::rollup::ROLLUP_MS;
    if step_ms == 0 {
        return Ok(());
    }
    if step_ms < 0 || step_ms % minute != 0 {
        return Err(Status::invalid_argument(format!(
            "step_ms {step_ms} must be 0 (raw rows) or a positive multiple of {minute} (the rollups' minute)"
        )));
    }
    let buckets = (end_ms.saturating_sub(start_ms) / step_ms).saturating_add(1);
    if buckets > MAX_BUCKETS {
        return Err(Status::invalid_argument(format!(
            "{buckets} buckets of {step_ms} ms: more than {MAX_BUCKETS}; use a larger step"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Query for QueryService {
    type RangeStream = tokio_stream::Iter<
        std::iter::Map<
            std::vec::IntoIter<RangeChunk>,
            fn(RangeChunk) -> Result<RangeChunk, Status>,
        >,
    >;

    async fn range(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStream>, Status> {
        let started = std::time::Instant::now();
        let q = req.into_inner();
        let span =
            tracing::debug_span!("range", node_id = %self.router.node_id(), host = %q.host_id);
        let r = self.range_inner(q).instrument(span).await;
        let chunks = self.timed("range", started, r)?;
        let ok: fn(RangeChunk) -> Result<RangeChunk, Status> = Ok;
        Ok(Response::new(tokio_stream::iter(
            chunks.into_iter().map(ok),
        )))
    }

    type SubscribeStream =
        tokio_stream::wrappers::ReceiverStream<Result<ringwatch_proto::LiveUpdate, Status>>;

    async fn subscribe(
        &self,
        req: Request<ringwatch_proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let q = req.into_inner();
        let checked = (|| {
            if q.host_ids.len() > 10_000 {
                return Err(Status::invalid_argument(format!(
                    "{} host ids; at most 10000",
                    q.host_ids.len()
                )));
            }
            for h in &q.host_ids {
                validate::check_host_id(h).map_err(|r| r.status())?;
            }
            check_patterns(&q.metric_names)
        })();
        self.observe("subscribe", checked)?;
        Ok(Response::new(self.live.subscribe(q, self.shutdown.clone())))
    }

    async fn latest(
        &self,
        req: Request<LatestRequest>,
    ) -> Result<Response<LatestResponse>, Status> {
        let started = std::time::Instant::now();
        let q = req.into_inner();
        let r = match check_patterns(&q.metric_names) {
            Err(e) => Err(e),
            Ok(()) => self
                .router
                .latest(&q.metric_names)
                .await
                .map_err(Status::from),
        };
        let snapshots = self.timed("latest", started, r)?;
        Ok(Response::new(LatestResponse { snapshots }))
    }

    async fn cluster(
        &self,
        _req: Request<ringwatch_proto::ClusterRequest>,
    ) -> Result<Response<ringwatch_proto::ClusterInfo>, Status> {
        use ringwatch_proto::{ClusterInfo, ClusterMember};
        let node_id = self.router.node_id().to_string();
        let Some(control) = &self.control else {
            return Ok(Response::new(ClusterInfo {
                raft: false,
                leader: node_id.clone(),
                term: 0,
                ring_epoch: 1,
                members: vec![ClusterMember {
                    id: node_id.clone(),
                    grpc_addr: self.grpc_url.clone(),
                    state: "active".into(),
                    role: "leader".into(),
                    ..ClusterMember::default()
                }],
                node_id,
                vnodes: 0,
            }));
        };
        let raft = control.status();
        let state = control.state();
        let owned = state.hosts_per_owner();
        let members = state
            .view
            .members()
            .map(|m| {
                let h = state.handoffs.get(&m.id);
                ClusterMember {
                    id: m.id.clone(),
                    grpc_addr: m.grpc_addr.clone(),
                    state: m.state.as_str().into(),
                    role: crate::admin::raft_role(&raft, &m.id).into(),
                    hosts_owned: owned.get(m.id.as_str()).copied().unwrap_or(0),
                    handing_off: h.is_some(),
                    handoff_hosts_left: h.map_or(0, |h| h.hosts_left),
                    handoff_bytes_left: h.map_or(0, |h| h.bytes_left),
                    handoff_done: h.is_some_and(|h| h.done),
                }
            })
            .collect();
        Ok(Response::new(ClusterInfo {
            raft: true,
            leader: raft.leader.clone().unwrap_or_default(),
            term: raft.term,
            ring_epoch: state.view.epoch(),
            members,
            node_id,
            vnodes: state.view.ring().vnodes(),
        }))
    }

    async fn hosts(&self, _req: Request<HostsRequest>) -> Result<Response<HostsResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.router.hosts().await.map_err(Status::from);
        let records = self.timed("hosts", started, r)?;
        let now = now_ms();
        let hosts = records
            .into_iter()
            .map(|r| HostInfo {
                state: host_state(&r, now, self.stale_after_intervals, self.gone_after_ms) as i32,
                host_id: r.host_id,
                labels: r.labels.into_iter().collect(),
                agent_version: r.agent_version,
                last_seen_ms: r.last_seen_ms,
                interval_ms: r.interval_ms,
            })
            .collect();
        Ok(Response::new(HostsResponse { hosts }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_states_follow_the_interval() {
        let r = HostRecord {
            host_id: "h".into(),
            interval_ms: 1000,
            last_seen_ms: 10_000,
            ..Default::default()
        };
        assert_eq!(host_state(&r, 12_000, 3, 60_000), HostState::Live);
        assert_eq!(host_state(&r, 14_000, 3, 60_000), HostState::Stale);
        assert_eq!(host_state(&r, 80_000, 3, 60_000), HostState::Gone);
    }

    #[test]
    fn name_patterns_are_validated() {
        check_patterns(&["cpu.*".into(), "mem.used".into(), "*".into()]).unwrap();
        assert_eq!(
            check_patterns(&["bad name".into()]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            check_patterns(&vec!["a".into(); 300]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
