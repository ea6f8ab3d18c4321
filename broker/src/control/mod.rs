//! The control plane (SPEC S7): membership, the ring, the host registry and cluster config,
//! agreed by the brokers through Raft (openraft), persisted in redb under the data directory.
//!
//! - `state`: what is replicated, and how a request changes it (pure).
//! - `types`: openraft's type configuration; `raft_id` of a node id.
//! - `log_store`, `state_machine`: the log, vote and snapshots on disk.
//! - `network`, `service`: Raft's RPCs over the brokers' gRPC port (peer role).
//! - `plane`: one broker's Raft node and the admin operations (join, promote, drain, remove).
//! - `detector`: failure detection, on the leader (down after a silence, up when heard from).

pub mod detector;
mod log_store;
pub mod network;
pub mod plane;
mod service;
pub mod state;
mod state_machine;
pub mod types;

pub use detector::Detection;
pub use network::PeerRoutes;
pub use plane::{ControlError, ControlOp, ControlPlane, RaftStatus, RaftTimings};
pub use service::RaftService;
pub use state::{ClusterConfig, ControlRequest, ControlResponse, ControlState, Handoff};
pub use types::{BrokerNode, raft_id};

#[cfg(test)]
mod tests;
