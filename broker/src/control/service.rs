//! Raft's server side on the broker's gRPC port: the `Raft` service, for peers only (the peer
//! role; agents and viz hold none). Each call decodes openraft's request from JSON, hands it
//! to the local Raft node and answers its whole result as JSON; a payload that does not
//! decode is refused with INVALID_ARGUMENT and the reason, and reaches Raft not at all.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use ringwatch_proto::RaftPayload;
use ringwatch_proto::raft_server::{Raft as RaftRpc, RaftServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::network::MAX_RAFT_MESSAGE;
use super::plane::{ControlOp, ControlPlane};
use super::types::{RaftId, TypeConfig};

pub struct RaftService {
    plane: Arc<ControlPlane>,
}

impl RaftService {
    pub fn server(plane: Arc<ControlPlane>) -> RaftServer<RaftService> {
        RaftServer::new(RaftService { plane })
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE)
    }
}

fn decode<T: DeserializeOwned>(what: &str, req: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("not a {what}: {e}")))
}

fn encode<T: Serialize>(answer: &T) -> Result<Response<RaftPayload>, Status> {
    let json = serde_json::to_vec(answer)
        .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))?;
    Ok(Response::new(RaftPayload { json }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode("raft append-entries request", req)?;
        encode(&self.plane.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<RaftId> = decode("raft vote request", req)?;
        encode(&self.plane.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode("raft snapshot request", req)?;
        encode(&self.plane.raft().install_snapshot(rpc).await)
    }

    async fn write(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let op: ControlOp = decode("control-plane operation", req)?;
        encode(&self.plane.lead_forwarded(op).await)
    }
}
