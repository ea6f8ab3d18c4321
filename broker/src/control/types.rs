//! The Raft type configuration: what the log carries (`ControlRequest`), what applying it
//! answers (`ControlResponse`), and how a broker is known to Raft (`BrokerNode`, by a 64-bit id
//! derived from its node id).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::state::{ControlRequest, ControlResponse};

/// A broker's id inside Raft: the FNV-1a hash of its node id (never 0). Two node ids of one
/// cluster that hash alike are refused at join.
pub type RaftId = u64;

/// How the cluster reaches a broker: stored in Raft's membership, so every broker learns every
/// other's addresses from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerNode {
    /// Its node id (`--node-id`).
    pub name: String,
    /// Its gRPC endpoint (`http://…` or `https://…`): Raft, forwarding, queries.
    pub grpc_addr: String,
    /// Its admin HTTP address (`host:port`).
    pub admin_addr: String,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = ControlRequest,
        R = ControlResponse,
        NodeId = RaftId,
        Node = BrokerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<RaftId>;
pub type StoredMembership = openraft::StoredMembership<RaftId, BrokerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<RaftId, BrokerNode>;
pub type StorageError = openraft::StorageError<RaftId>;

/// The Raft id of node id `name`.
pub fn raft_id(name: &str) -> RaftId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_stable_and_distinct_for_a_fleet_of_names() {
        // FNV-1a's published value for "a": the id must never change between versions.
        assert_eq!(raft_id("a"), 0xaf63_dc4c_8601_ec8c);
        let ids: std::collections::BTreeSet<u64> = (0..10_000)
            .map(|i| raft_id(&format!("broker-{i}")))
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(!ids.contains(&0));
    }
}
