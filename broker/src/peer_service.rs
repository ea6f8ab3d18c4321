//! The `ringwatch.v1.Peer` service: what another broker of the cluster asks of this one (peer
//! role only). A forwarded batch, registration or heartbeat is stored here, whatever this
//! broker's ring says (a sender with an older ring still loses nothing); reads answer from this
//! broker's own store only, so no call is forwarded twice.

use std::sync::Arc;

use ringwatch_proto::peer_server::{Peer, PeerServer};
use ringwatch_proto::{
    ForwardReply, ForwardRequest, HostInfo, HostsRequest, HostsResponse, ImportReply,
    ImportRequest, LatestRequest, LatestResponse, RangeChunk, RangeRequest,
};
use tonic::{Request, Response, Status};

use crate::forward::{MAX_IMPORT_HOSTS, MAX_IMPORT_SECTIONS, MAX_PEER_MESSAGE};
use crate::router::Router;
use crate::store::embedded::Incoming;
use crate::store::{HostRecord, StoreError};
use crate::validate;

pub struct PeerService {
    pub router: Arc<Router>,
    pub max_snapshots: usize,
    pub max_cells: usize,
    pub max_batch_snapshots: usize,
}

impl PeerService {
    pub fn server(self) -> PeerServer<PeerService> {
        PeerServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReply>, Status> {
        let f = req.into_inner();
        validate::check_host_id(&f.host_id).map_err(|r| r.status())?;
        if f.snapshots.len() > self.max_batch_snapshots {
            return Err(Status::invalid_argument(format!(
                "{} snapshots; at most {} a batch",
                f.snapshots.len(),
                self.max_batch_snapshots
            )));
        }
        if let Some(s) = f.snapshots.iter().find(|s| s.host_id != f.host_id) {
            return Err(Status::invalid_argument(format!(
                "a forwarded batch is one host's: {:?} in a batch of {:?}",
                s.host_id, f.host_id
            )));
        }
        if let Some(r) = f.register {
            let record = HostRecord {
                host_id: f.host_id.clone(),
                labels: r.labels.into_iter().collect(),
                agent_version: r.agent_version,
                interval_ms: r.interval_ms,
                last_seen_ms: f.touch_ms,
            };
            self.router
                .register_local(record)
                .await
                .map_err(Status::from)?;
        } else if f.touch_ms != 0 {
            self.router
                .touch_local(&f.host_id, f.touch_ms)
                .await
                .map_err(Status::from)?;
        }
        if f.snapshots.is_empty() {
            return Ok(Response::new(ForwardReply::default()));
        }
        let out = self
            .router
            .write_local(f.snapshots)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(crate::forward::reply(&out)))
    }

    type LocalRangeStream = tokio_stream::Iter<std::vec::IntoIter<Result<RangeChunk, Status>>>;

    async fn local_range(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::LocalRangeStream>, Status> {
        let query =
            crate::query::range_query(req.into_inner(), self.max_snapshots, self.max_cells)?;
        let chunks = self.router.range_local(query).await.map_err(Status::from)?;
        Ok(Response::new(tokio_stream::iter(
            chunks.into_iter().map(Ok).collect::<Vec<_>>(),
        )))
    }

    async fn local_latest(
        &self,
        req: Request<LatestRequest>,
    ) -> Result<Response<LatestResponse>, Status> {
        let q = req.into_inner();
        crate::query::check_patterns(&q.metric_names)?;
        let snapshots = self
            .router
            .latest_local(&q.metric_names)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(LatestResponse { snapshots }))
    }

    async fn local_hosts(
        &self,
        _req: Request<HostsRequest>,
    ) -> Result<Response<HostsResponse>, Status> {
        let records = self.router.hosts_local().await.map_err(Status::from)?;
        let hosts = records
            .into_iter()
            .map(|r| HostInfo {
                host_id: r.host_id,
                labels: r.labels.into_iter().collect(),
                agent_version: r.agent_version,
                last_seen_ms: r.last_seen_ms,
                interval_ms: r.interval_ms,
                state: 0,
            })
            .collect();
        Ok(Response::new(HostsResponse { hosts }))
    }

    async fn import(&self, req: Request<ImportRequest>) -> Result<Response<ImportReply>, Status> {
        let r = req.into_inner();
        if r.hosts.len() > MAX_IMPORT_HOSTS {
            return Err(Status::invalid_argument(format!(
                "{} hosts in one hand-off request; at most {MAX_IMPORT_HOSTS}",
                r.hosts.len()
            )));
        }
        let sections: usize = r.hosts.iter().map(|h| h.sections.len()).sum();
        if sections > MAX_IMPORT_SECTIONS {
            return Err(Status::invalid_argument(format!(
                "{sections} sections in one hand-off request; at most {MAX_IMPORT_SECTIONS}"
            )));
        }
        if r.from_node.is_empty() || r.from_node.len() > 253 {
            return Err(Status::invalid_argument(
                "from_node: the sending broker's id (1 to 253 characters)",
            ));
        }
        for h in &r.hosts {
            validate::check_host_id(&h.host_id).map_err(|e| e.status())?;
        }
        let hosts = r
            .hosts
            .into_iter()
            .map(|h| {
                let sections = h.sections.into_iter().map(Incoming::from_wire).collect();
                (Arc::<str>::from(h.host_id.as_str()), sections)
            })
            .collect();
        let out = match self.router.import(&r.from_node, r.ring_epoch, hosts).await {
            Ok(out) => out,
            // Bytes that fail their checks are refused whole, and said why.
            Err(StoreError::Corrupt { path, reason }) => {
                return Err(Status::invalid_argument(format!("{path}: {reason}")));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(ImportReply {
            hosts: out.hosts,
            sections: out.sections,
            already: out.already,
            rows: out.rows,
            values: out.values,
            bytes: out.bytes,
        }))
    }
}
