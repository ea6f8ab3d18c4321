//! The control plane of one broker: its Raft node, and the operations the admin API asks for
//! (join, promote, drain, remove, register a host, set the config). An operation runs on the
//! leader: a follower forwards it over the peers' gRPC `Raft.Write` and answers with the
//! leader's answer. Each membership operation first checks its ring change against the
//! current state, so a refusal changes nothing, neither in the ring nor in Raft's voters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use ringwatch_core::{Change, MemberState, now_ms};
use ringwatch_net::client::Connector;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::log_store::{LogStore, RaftDb};
use super::network::{Network, PeerRoutes};
use super::state::{ClusterConfig, ControlRequest, ControlResponse, ControlState, Handoff};
use super::state_machine::StateMachine;
use super::types::{BrokerNode, Raft, RaftId, raft_id};
use ringwatch_proto::RaftPayload;

/// Raft's timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    /// The shortest election timeout; the longest is twice it.
    pub election_timeout: Duration,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(500),
            election_timeout: Duration::from_millis(1000),
        }
    }
}

/// An operation on the control plane (the admin API's, or a broker's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlOp {
    /// A broker joins: a Raft learner, `joining` in the ring.
    Join { node: BrokerNode },
    /// A caught-up learner becomes a voter and joins the ring.
    Promote { id: String },
    /// Out of the ring; its hosts move to their next owners.
    Drain { id: String },
    /// Out of the cluster (and Raft's voters): once drained, or forced.
    Remove { id: String, force: bool },
    /// A host's registry entry (labels, agent version), written only when it changes.
    Register {
        host_id: String,
        labels: BTreeMap<String, String>,
        agent_version: String,
    },
    /// New cluster settings.
    SetConfig { config: ClusterConfig },
    /// Failure detection: silent too long (out of the ring, still a voter).
    MarkDown { id: String },
    /// Failure detection: heard from again (`joining` until caught up).
    MarkUp { id: String },
    /// A draining broker's hand-off progress (its own); `done` makes it drained.
    Handoff { id: String, progress: Handoff },
}

/// Why an operation did not happen (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "reason", rename_all = "snake_case")]
pub enum ControlError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("no leader is known yet; try again")]
    NoLeader,
    #[error("cannot reach the leader: {0}")]
    Forward(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("raft: {0}")]
    Raft(String),
}

impl ControlError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ControlError::BadRequest(_) => 400,
            ControlError::NotFound(_) => 404,
            ControlError::Refused(_) => 409,
            ControlError::NoLeader | ControlError::Forward(_) | ControlError::Raft(_) => 503,
            ControlError::Timeout(_) => 504,
        }
    }
}

/// How long a promotion waits for its learner to catch up.
const CATCH_UP: Duration = Duration::from_secs(15);
/// How long a write waits to be committed (a leader cut off from a quorum commits nothing).
const COMMIT_WAIT: Duration = Duration::from_secs(10);

fn not_committed() -> ControlError {
    ControlError::Timeout(format!(
        "not committed within {COMMIT_WAIT:?}: is a quorum of voters reachable from the leader?"
    ))
}

/// How long a follower that forwarded a write waits to apply it before answering.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// How long an operation waits for a leader to be known.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// One broker's control plane.
pub struct ControlPlane {
    id: RaftId,
    me: BrokerNode,
    raft: Raft,
    machine: StateMachine,
    network: Network,
    /// One membership operation at a time on this broker (as leader).
    ops: Mutex<()>,
}

/// The leader's answer to a forwarded operation.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedAnswer {
    pub result: Result<ControlResponse, ControlError>,
    /// The log index the leader had applied when it answered.
    pub applied: Option<u64>,
}

/// The broker's Raft view, for `/api/cluster` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct RaftStatus {
    pub node_id: String,
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<String>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
}

fn role(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

fn raft_err<E: std::fmt::Display>(e: E) -> ControlError {
    ControlError::Raft(e.to_string())
}

impl ControlPlane {
    /// Opens (or creates) the Raft state under `dir` and starts the node. It takes part in
    /// the cluster once a leader adds it, or once `bootstrap` makes it the first member.
    pub async fn start(
        dir: &Path,
        me: BrokerNode,
        timings: RaftTimings,
        connector: Connector,
        routes: PeerRoutes,
    ) -> Result<Arc<ControlPlane>, ControlError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ControlError::Raft(format!("cannot create {}: {e}", dir.display())))?;
        let db = RaftDb::open(&dir.join("raft.redb"))
            .map_err(|e| ControlError::Raft(format!("cannot open the Raft store: {e}")))?;
        let heartbeat = timings.heartbeat.as_millis() as u64;
        let election = timings.election_timeout.as_millis() as u64;
        let config = Config {
            cluster_name: "ringwatch".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1 << 20,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1_000),
            max_in_snapshot_log_to_keep: 100,
            purge_batch_size: 64,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| {
            ControlError::BadRequest(format!(
                "raft timings: {e} (the election timeout must exceed the heartbeat)"
            ))
        })?);
        let machine = StateMachine::open(db.clone()).await.map_err(raft_err)?;
        let network = Network::new(connector, timings.election_timeout, routes);
        let id = raft_id(&me.name);
        let raft = Raft::new(
            id,
            config,
            network.clone(),
            LogStore::new(db),
            machine.clone(),
        )
        .await
        .map_err(raft_err)?;
        Ok(Arc::new(ControlPlane {
            id,
            me,
            raft,
            machine,
            network,
            ops: Mutex::new(()),
        }))
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn me(&self) -> &BrokerNode {
        &self.me
    }

    /// The applied control-plane state now.
    pub fn state(&self) -> Arc<ControlState> {
        self.machine.current()
    }

    /// The applied state, following every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControlState>> {
        self.machine.subscribe()
    }

    /// Makes this broker the first member of a new cluster (nothing when it already belongs
    /// to one), with `vnodes` ring points per broker, then puts it in the ring. A cluster made
    /// with another count keeps it (a warning says so): the ring's points are where hosts live.
    pub async fn bootstrap(&self, vnodes: u32) -> Result<(), ControlError> {
        let initialized = self.raft.is_initialized().await.map_err(raft_err)?;
        if !initialized {
            let members = BTreeMap::from([(self.id, self.me.clone())]);
            if let Err(e) = self.raft.initialize(members).await {
                tracing::info!(error = %e, "raft already initialised");
            }
            tracing::info!(node = %self.me.name, "a new cluster: this broker is its first member");
        }
        self.wait_for_leader(LEADER_WAIT).await?;
        let state = self.state();
        if state.config.vnodes != vnodes {
            if state.view.members().next().is_none() {
                let mut config = state.config.clone();
                config.vnodes = vnodes;
                self.execute(ControlOp::SetConfig { config }).await?;
            } else {
                tracing::warn!(
                    wanted = vnodes,
                    cluster = state.config.vnodes,
                    "cluster.vnodes ignored: this cluster's ring was made with another count, which cannot change"
                );
            }
        }
        // A member already: nothing, or its new addresses after a restart elsewhere.
        self.execute(ControlOp::Join {
            node: self.me.clone(),
        })
        .await?;
        if self.state().view.member(&self.me.name).map(|m| m.state) == Some(MemberState::Joining) {
            self.execute(ControlOp::Promote {
                id: self.me.name.clone(),
            })
            .await?;
        }
        Ok(())
    }

    /// The broker's Raft view now.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let name = |id: &RaftId| {
            membership
                .get_node(id)
                .map_or_else(|| id.to_string(), |n| n.name.clone())
        };
        RaftStatus {
            node_id: self.me.name.clone(),
            role: role(m.state),
            term: m.current_term,
            leader: m.current_leader.as_ref().map(name),
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            voters: membership.voter_ids().map(|i| name(&i)).collect(),
            learners: membership.learner_ids().map(|i| name(&i)).collect(),
        }
    }

    /// Whether this broker leads now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Whether broker `name` is a Raft voter.
    pub fn is_voter(&self, name: &str) -> bool {
        let id = raft_id(name);
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
    }

    /// Whether broker `name`'s log matches this leader's now.
    pub fn is_caught_up(&self, name: &str) -> bool {
        let id = raft_id(name);
        let m = self.raft.metrics().borrow().clone();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index);
        m.state == ServerState::Leader && matched.is_some() && matched >= m.last_log_index
    }

    /// A lazily connected channel to `node`'s gRPC port, with the peer credential.
    pub fn channel(&self, node: &BrokerNode) -> Result<ringwatch_net::client::GrpcChannel, String> {
        self.network.channel(node)
    }

    /// The leader's node, if one is known.
    fn leader(&self) -> Option<(RaftId, BrokerNode)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    async fn wait_for_leader(
        &self,
        within: Duration,
    ) -> Result<(RaftId, BrokerNode), ControlError> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ControlError::Raft("raft has stopped".into())),
                Err(_) => return Err(ControlError::NoLeader),
            }
        }
    }

    /// Runs `op` on the leader: here when this broker leads, else forwarded to it.
    pub async fn execute(&self, op: ControlOp) -> Result<ControlResponse, ControlError> {
        for _ in 0..3 {
            let (leader, node) = self.wait_for_leader(LEADER_WAIT).await?;
            let outcome = if leader == self.id {
                self.lead(op.clone()).await
            } else {
                self.forward(&node, &op).await
            };
            match outcome {
                // Leadership moved while the operation ran: ask the new leader.
                Err(ControlError::NoLeader) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
        Err(ControlError::NoLeader)
    }

    /// Runs `op` only while this broker leads, never forwarded nor retried at another leader:
    /// for failure detection's findings, which only the leader that made them may act on (a
    /// leader cut off from the others finds them all silent; once healed, it must not have a
    /// new leader mark them down).
    pub async fn execute_as_leader(&self, op: ControlOp) -> Result<ControlResponse, ControlError> {
        if !self.is_leader() {
            return Err(ControlError::NoLeader);
        }
        self.lead(op).await
    }

    async fn forward(
        &self,
        leader: &BrokerNode,
        op: &ControlOp,
    ) -> Result<ControlResponse, ControlError> {
        let mut client = self.network.client(leader).map_err(ControlError::Forward)?;
        let json = serde_json::to_vec(op).map_err(|e| ControlError::BadRequest(e.to_string()))?;
        let mut req = tonic::Request::new(RaftPayload { json });
        req.set_timeout(CATCH_UP + Duration::from_secs(10));
        let answer = client
            .write(req)
            .await
            .map_err(|s| ControlError::Forward(format!("{}: {}", leader.name, s.message())))?;
        let answer = serde_json::from_slice::<ForwardedAnswer>(&answer.into_inner().json)
            .map_err(|e| ControlError::Forward(format!("unreadable answer: {e}")))?;
        // Read your writes: answer once this broker has applied what the leader had when it
        // answered, so a status read here next shows the change (a drain's `--wait` polls
        // this broker). The change is committed either way; past the wait, say so and go on.
        if answer.result.is_ok()
            && let Some(index) = answer.applied
        {
            let waited = self
                .raft
                .wait(Some(APPLY_WAIT))
                .applied_index_at_least(Some(index), "a forwarded write")
                .await;
            if waited.is_err() {
                tracing::warn!(
                    index,
                    "a forwarded write is committed but not yet applied here; a read here may not show it yet"
                );
            }
        }
        answer.result
    }

    /// An operation forwarded by a follower: run only when this broker leads. The answer
    /// carries the index this broker had applied once it ran, for the follower to wait for.
    pub async fn lead_forwarded(&self, op: ControlOp) -> ForwardedAnswer {
        let result = match self.leader() {
            Some((id, _)) if id == self.id => self.lead(op).await,
            _ => Err(ControlError::NoLeader),
        };
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        ForwardedAnswer { result, applied }
    }

    /// Whether `change` applies to the state now (a dry run on a copy).
    fn check(&self, change: &Change) -> Result<(), ControlError> {
        let mut view = self.state().view.clone();
        view.apply(change.clone()).map(|_| ()).map_err(|e| match e {
            ringwatch_core::ClusterError::Unknown(_) => ControlError::NotFound(e.to_string()),
            _ => ControlError::Refused(e.to_string()),
        })
    }

    async fn write(&self, request: ControlRequest) -> Result<ControlResponse, ControlError> {
        let written = tokio::time::timeout(COMMIT_WAIT, self.raft.client_write(request))
            .await
            .map_err(|_| not_committed())?;
        match written {
            Ok(r) => match r.data {
                ControlResponse::Refused { reason } => Err(ControlError::Refused(reason)),
                applied => Ok(applied),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(ControlError::NoLeader)
            }
            Err(e) => Err(raft_err(e)),
        }
    }

    async fn change(&self, change: Change) -> Result<ControlResponse, ControlError> {
        self.write(ControlRequest::Change {
            change,
            at_ms: now_ms(),
        })
        .await
    }

    fn unchanged(&self) -> ControlResponse {
        ControlResponse::Applied {
            epoch: self.state().view.epoch(),
            ring_changed: false,
        }
    }

    /// A membership change, waited for at most [`COMMIT_WAIT`].
    async fn membership<T>(
        change: impl std::future::Future<
            Output = Result<T, RaftError<RaftId, ClientWriteError<RaftId, BrokerNode>>>,
        >,
    ) -> Result<T, ControlError> {
        tokio::time::timeout(COMMIT_WAIT, change)
            .await
            .map_err(|_| not_committed())?
            .map_err(Self::membership_change_err)
    }

    fn membership_change_err(
        e: RaftError<RaftId, ClientWriteError<RaftId, BrokerNode>>,
    ) -> ControlError {
        match e {
            // Leadership moved: `execute` asks the new leader.
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ControlError::NoLeader,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ControlError::Refused(c.to_string())
            }
            RaftError::Fatal(f) => raft_err(f),
        }
    }

    async fn lead(&self, op: ControlOp) -> Result<ControlResponse, ControlError> {
        let _one_at_a_time = self.ops.lock().await;
        match op {
            ControlOp::Join { node } => self.join(node).await,
            ControlOp::Promote { id } => self.promote(&id).await,
            ControlOp::Drain { id } => {
                let member = self.state().view.member(&id).map(|m| m.state);
                if matches!(member, Some(MemberState::Draining | MemberState::Drained)) {
                    return Ok(self.unchanged());
                }
                let change = Change::Drain { id };
                self.check(&change)?;
                self.change(change).await
            }
            ControlOp::Remove { id, force } => self.remove(&id, force).await,
            ControlOp::Register {
                host_id,
                labels,
                agent_version,
            } => {
                if !self.state().host_differs(&host_id, &labels, &agent_version) {
                    return Ok(self.unchanged());
                }
                self.write(ControlRequest::RegisterHost {
                    host_id,
                    labels,
                    agent_version,
                    at_ms: now_ms(),
                })
                .await
            }
            ControlOp::SetConfig { config } => {
                self.write(ControlRequest::SetConfig { config }).await
            }
            ControlOp::MarkDown { id } => {
                if id == self.me.name {
                    return Err(ControlError::Refused(
                        "the leader does not mark itself down".into(),
                    ));
                }
                let change = Change::MarkDown { id };
                self.check(&change)?;
                self.change(change).await
            }
            ControlOp::MarkUp { id } => {
                let change = Change::MarkUp { id };
                self.check(&change)?;
                self.change(change).await
            }
            ControlOp::Handoff { id, progress } => {
                self.write(ControlRequest::Handoff { id, progress }).await
            }
        }
    }

    async fn join(&self, node: BrokerNode) -> Result<ControlResponse, ControlError> {
        validate_node(&node, &self.network)?;
        let id = raft_id(&node.name);
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        if let Some(other) = membership.get_node(&id)
            && other.name != node.name
        {
            return Err(ControlError::Refused(format!(
                "node id {:?} collides with member {:?}; choose another",
                node.name, other.name
            )));
        }
        let state = self.state();
        if let Some(m) = state.view.member(&node.name)
            && m.state != MemberState::Left
        {
            if m.grpc_addr == node.grpc_addr && m.admin_addr == node.admin_addr {
                return Ok(self.unchanged());
            }
            // The same broker, restarted at other addresses: Raft and the ring follow it there
            // (its ring state and Raft role are kept).
            tracing::info!(broker = %node.name, from = %m.grpc_addr, to = %node.grpc_addr, "member at new addresses");
            if membership.get_node(&id).is_some() {
                Self::membership(self.raft.change_membership(
                    ChangeMembers::SetNodes(BTreeMap::from([(id, node.clone())])),
                    false,
                ))
                .await?;
            }
            return self
                .change(Change::Readdress {
                    id: node.name.clone(),
                    grpc_addr: node.grpc_addr.clone(),
                    admin_addr: node.admin_addr.clone(),
                })
                .await;
        }
        let change = Change::Join {
            id: node.name.clone(),
            grpc_addr: node.grpc_addr.clone(),
            admin_addr: node.admin_addr.clone(),
        };
        self.check(&change)?;
        if membership.get_node(&id).is_none() {
            Self::membership(self.raft.add_learner(id, node.clone(), false)).await?;
        }
        let r = self.change(change).await?;
        tracing::info!(broker = %node.name, grpc = %node.grpc_addr, "broker joined as a learner");
        Ok(r)
    }

    async fn promote(&self, name: &str) -> Result<ControlResponse, ControlError> {
        let state = self.state();
        let member = state
            .view
            .member(name)
            .ok_or_else(|| ControlError::NotFound(format!("no member {name:?}")))?;
        if member.state == MemberState::Active {
            return Ok(self.unchanged());
        }
        let change = Change::Activate { id: name.into() };
        self.check(&change)?;
        let id = raft_id(name);
        self.caught_up(id).await?;
        let voters: BTreeSet<RaftId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if !voters.contains(&id) {
            Self::membership(
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
            )
            .await?;
        }
        let r = self.change(change).await?;
        tracing::info!(broker = %name, "broker promoted: a voter, in the ring");
        Ok(r)
    }

    /// Waits until learner `id` has every entry the leader has.
    async fn caught_up(&self, id: RaftId) -> Result<(), ControlError> {
        if id == self.id {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        let mut rx = self.raft.metrics();
        loop {
            let m = rx.borrow_and_update().clone();
            if m.state != ServerState::Leader {
                return Err(ControlError::NoLeader);
            }
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            if matched.is_some() && matched >= m.last_log_index {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(ControlError::Timeout(format!(
                    "the broker has not caught up within {CATCH_UP:?} (has {matched:?} of {:?})",
                    m.last_log_index
                )));
            }
        }
    }

    async fn remove(&self, name: &str, force: bool) -> Result<ControlResponse, ControlError> {
        let state = self.state();
        let member = state
            .view
            .member(name)
            .ok_or_else(|| ControlError::NotFound(format!("no member {name:?}")))?;
        if member.state == MemberState::Left {
            return Ok(self.unchanged());
        }
        let change = Change::Remove {
            id: name.into(),
            force,
        };
        self.check(&change)?;
        let id = raft_id(name);
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<RaftId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            let rest: Vec<RaftId> = voters.iter().copied().filter(|v| *v != id).collect();
            let down = |v: &RaftId| {
                membership.get_node(v).is_some_and(|n| {
                    state
                        .view
                        .member(&n.name)
                        .is_some_and(|m| m.state == MemberState::Down)
                })
            };
            let live = rest.iter().filter(|v| !down(v)).count();
            if rest.is_empty() || live * 2 <= rest.len() {
                return Err(ControlError::Refused(format!(
                    "removing {name:?} would leave {live} live voter(s) of {}: fewer than a quorum",
                    rest.len()
                )));
            }
            Self::membership(
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
            )
            .await?;
        } else if membership.get_node(&id).is_some() {
            Self::membership(
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await?;
        }
        let r = self.change(change).await?;
        tracing::info!(broker = %name, force, "broker removed from the cluster");
        Ok(r)
    }

    /// Stops the Raft node (graceful shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }
}

/// Checks a joining broker's details.
fn validate_node(node: &BrokerNode, network: &Network) -> Result<(), ControlError> {
    let bad = |m: String| Err(ControlError::BadRequest(m));
    if node.name.is_empty() || node.name.len() > 253 {
        return bad("id: 1 to 253 characters".into());
    }
    if !node
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return bad(format!(
            "id {:?}: letters, digits, '-', '.' and '_' only",
            node.name
        ));
    }
    if let Err(e) = network.client(node) {
        return bad(format!("grpc_addr: {e}"));
    }
    if node.admin_addr.is_empty() || node.admin_addr.len() > 300 {
        return bad("admin_addr: a host:port".into());
    }
    Ok(())
}
