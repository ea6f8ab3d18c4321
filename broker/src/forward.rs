//! The data plane between brokers of a cluster (`ringwatch.v1.Peer`, peer role): forwarding a
//! host's batch, registration or heartbeat to its owner, and asking a broker for what its own
//! store holds (a host's range, the newest snapshots, its hosts). One client per peer broker,
//! made from the addresses the control plane holds and kept while they do not change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringwatch_core::Member;
use ringwatch_net::client::GrpcChannel;
use ringwatch_proto::peer_client::PeerClient;
use ringwatch_proto::{
    ForwardReply, ForwardRequest, HostsRequest, ImportReply, ImportRequest, LatestRequest,
    RangeChunk, RangeRequest, Snapshot,
};
use tonic::Status;

use crate::control::{BrokerNode, ControlPlane};
use crate::store::{HostRecord, WriteOutcome};

/// Largest message between brokers (a forwarded batch, a range chunk, a hand-off batch).
pub const MAX_PEER_MESSAGE: usize = 64 << 20;
/// Most hosts, and sections, in one hand-off request.
pub const MAX_IMPORT_HOSTS: usize = 10_000;
pub const MAX_IMPORT_SECTIONS: usize = 100_000;
/// How long one hand-off request may take (the receiver verifies and fsyncs a block).
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// Clients to the other brokers.
pub struct Peers {
    control: Arc<ControlPlane>,
    clients: Mutex<HashMap<String, (String, PeerClient<GrpcChannel>)>>,
    /// Each call's deadline.
    timeout: Duration,
}

impl Peers {
    pub fn new(control: Arc<ControlPlane>, timeout: Duration) -> Peers {
        Peers {
            control,
            clients: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn client(&self, m: &Member) -> Result<PeerClient<GrpcChannel>, Status> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addr, c)) = clients.get(&m.id)
            && *addr == m.grpc_addr
        {
            return Ok(c.clone());
        }
        let node = BrokerNode {
            name: m.id.clone(),
            grpc_addr: m.grpc_addr.clone(),
            admin_addr: m.admin_addr.clone(),
        };
        let channel = self
            .control
            .channel(&node)
            .map_err(|e| Status::unavailable(format!("broker {}: {e}", m.id)))?;
        let client = PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        clients.insert(m.id.clone(), (m.grpc_addr.clone(), client.clone()));
        Ok(client)
    }

    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(body);
        r.set_timeout(self.timeout);
        r
    }

    /// Sends `req` to its owner `m`; the answer once `m` has stored it.
    pub async fn forward(&self, m: &Member, req: ForwardRequest) -> Result<ForwardReply, Status> {
        let mut c = self.client(m)?;
        Ok(c.forward(self.request(req)).await?.into_inner())
    }

    /// What `m`'s own store holds of a host's range.
    pub async fn range(&self, m: &Member, req: RangeRequest) -> Result<Vec<RangeChunk>, Status> {
        let mut c = self.client(m)?;
        let mut stream = c.local_range(self.request(req)).await?.into_inner();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await? {
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// `m`'s newest snapshot of each host it holds.
    pub async fn latest(&self, m: &Member, names: &[String]) -> Result<Vec<Snapshot>, Status> {
        let mut c = self.client(m)?;
        let req = LatestRequest {
            metric_names: names.to_vec(),
        };
        Ok(c.local_latest(self.request(req))
            .await?
            .into_inner()
            .snapshots)
    }

    /// Hands blocks off to `m` (their new owner); the answer once `m` has verified them and
    /// written them durably.
    pub async fn import(&self, m: &Member, req: ImportRequest) -> Result<ImportReply, Status> {
        let mut c = self.client(m)?;
        let mut r = tonic::Request::new(req);
        r.set_timeout(IMPORT_TIMEOUT.max(self.timeout));
        Ok(c.import(r).await?.into_inner())
    }

    /// The hosts `m` holds.
    pub async fn hosts(&self, m: &Member) -> Result<Vec<HostRecord>, Status> {
        let mut c = self.client(m)?;
        let hosts = c
            .local_hosts(self.request(HostsRequest {}))
            .await?
            .into_inner()
            .hosts;
        Ok(hosts
            .into_iter()
            .map(|h| HostRecord {
                host_id: h.host_id,
                labels: h.labels.into_iter().collect(),
                agent_version: h.agent_version,
                interval_ms: h.interval_ms,
                last_seen_ms: h.last_seen_ms,
            })
            .collect())
    }
}

/// A forward's answer as the store's.
pub fn outcome(reply: ForwardReply) -> WriteOutcome {
    WriteOutcome {
        stored: reply.stored,
        duplicates: reply.duplicates,
        samples: reply.samples,
        new: reply.new,
        refused: reply
            .refused
            .into_iter()
            .map(|r| (r.index as usize, r.reason))
            .collect(),
    }
}

/// The store's answer as a forward's.
pub fn reply(out: &WriteOutcome) -> ForwardReply {
    ForwardReply {
        stored: out.stored,
        duplicates: out.duplicates,
        samples: out.samples,
        new: out.new.clone(),
        refused: out
            .refused
            .iter()
            .map(|(i, reason)| ringwatch_proto::ForwardRefusal {
                index: *i as u32,
                reason: reason.clone(),
            })
            .collect(),
    }
}
