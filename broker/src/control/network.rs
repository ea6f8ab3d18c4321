//! Raft's client side: openraft's three RPCs to a peer broker over its gRPC port (the `Raft`
//! service), each a JSON payload, with the peer credential and TLS of the broker's connector.
//! Transport failures are `Unreachable` (openraft backs off), a payload it cannot read a
//! `Network` error, and the peer's own Raft error comes back as a `RemoteError`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ringwatch_net::client::{Connector, GrpcChannel};
use ringwatch_proto::RaftPayload;
use ringwatch_proto::raft_client::RaftClient;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{BrokerNode, RaftId, TypeConfig};

/// Largest Raft message either way (a snapshot chunk of 1 MiB is about 4 MiB as JSON).
pub const MAX_RAFT_MESSAGE: usize = 16 << 20;

type RpcError<E = openraft::error::Infallible> = RPCError<RaftId, BrokerNode, RaftError<RaftId, E>>;

/// Where this broker reaches some peers instead of the address they advertise (node id →
/// gRPC URL): `--peer-route`, for brokers behind address translation, and for tests that put a
/// proxy on each link.
pub type PeerRoutes = std::collections::BTreeMap<String, String>;

/// Makes a client per peer.
#[derive(Clone)]
pub struct Network {
    connector: Connector,
    connect_timeout: Duration,
    routes: std::sync::Arc<PeerRoutes>,
}

impl Network {
    pub fn new(connector: Connector, connect_timeout: Duration, routes: PeerRoutes) -> Network {
        Network {
            connector,
            connect_timeout,
            routes: std::sync::Arc::new(routes),
        }
    }

    /// A lazily connected channel to `node`'s gRPC port (or its route), with the peer
    /// credential. Every connection between brokers (Raft, forwards, reads, hand-offs, health
    /// checks) is made here.
    pub fn channel(&self, node: &BrokerNode) -> Result<GrpcChannel, String> {
        let addr = self.routes.get(&node.name).unwrap_or(&node.grpc_addr);
        let endpoint = self
            .connector
            .endpoint(addr)
            .map_err(|e| e.to_string())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        Ok(self.connector.channel(endpoint.connect_lazy()))
    }

    /// A Raft client on [`Network::channel`] (an error: its address is not a usable endpoint).
    pub fn client(&self, node: &BrokerNode) -> Result<RaftClient<GrpcChannel>, String> {
        let channel = self.channel(node)?;
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE))
    }
}

/// One peer.
pub struct PeerLink {
    target: RaftId,
    node: BrokerNode,
    client: Result<RaftClient<GrpcChannel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: RaftId, node: &BrokerNode) -> PeerLink {
        PeerLink {
            target,
            node: node.clone(),
            client: self.client(node),
        }
    }
}

/// A transport failure as openraft wants it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerLink {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Transport(
                    e.clone(),
                ))));
            }
        };
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(RaftPayload { json });
        req.set_timeout(timeout);
        let answer = match rpc {
            Rpc::Append => client.append_entries(req).await,
            Rpc::Vote => client.vote(req).await,
            Rpc::Snapshot => client.install_snapshot(req).await,
        };
        let payload = match answer {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = Transport(format!("{}: {}", s.code(), s.message()));
                return Err(match s.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        RPCError::Unreachable(Unreachable::new(&e))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
        };
        let result: Result<Resp, RaftError<RaftId, E>> = serde_json::from_slice(&payload.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, RpcError> {
        self.call(Rpc::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<RaftId>, RpcError<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftId>, RpcError> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
