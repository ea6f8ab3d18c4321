//! Failure detection, run by the leader: every `every` it checks each member's gRPC health
//! (the brokers heartbeat one another through it, at most a second apart). A member silent for
//! `down_after` is marked `down` through Raft (out of the ring at once; the epoch rises and its
//! hosts move to their next owners), and stays a voter: down is not removal. A down member
//! heard from again is marked up (`joining`: it owns nothing yet) and, once its log matches the
//! leader's, active again. A learner that never was promoted is left for the admin API, and a
//! draining or drained broker (out of the ring already) is never marked down: its hand-off
//! waits for it, and its drain is not undone by a comeback.
//!
//! A new leader starts every member's clock afresh, except the leader before it: the election
//! itself says that one went silent for an election timeout, so it gets only a short grace
//! (`PREVIOUS_LEADER_GRACE`) to answer a health check before it is marked down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ringwatch_core::MemberState;
use ringwatch_net::client::GrpcChannel;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::plane::{ControlOp, ControlPlane};
use super::types::BrokerNode;

/// Failure detection's timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// How often each member is checked.
    pub every: Duration,
    /// Silence after which a member is marked down.
    pub down_after: Duration,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            every: Duration::from_millis(500),
            down_after: Duration::from_secs(3),
        }
    }
}

/// How long a new leader waits for the leader before it to answer, before marking it down.
const PREVIOUS_LEADER_GRACE: Duration = Duration::from_secs(1);

struct Watched {
    grpc_addr: String,
    channel: Option<GrpcChannel>,
    last_heard: Instant,
}

/// Runs until `shutdown`.
pub async fn run(plane: Arc<ControlPlane>, detection: Detection, shutdown: CancellationToken) {
    let mut watched: HashMap<String, Watched> = HashMap::new();
    // The leader this broker followed last, while it was not leading.
    let mut previous_leader: Option<String> = None;
    let mut leading = false;
    let mut tick = tokio::time::interval(detection.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !plane.is_leader() {
            watched.clear();
            leading = false;
            if let Some(l) = plane.status().leader {
                previous_leader = Some(l);
            }
            continue;
        }
        let just_elected = !leading;
        leading = true;
        let state = plane.state();
        let me = plane.me().name.clone();
        // A leader marked down (by an older leader's finding, say) is plainly up: back in.
        let op = match state.view.member(&me).map(|m| m.state) {
            Some(MemberState::Down) => Some(ControlOp::MarkUp { id: me.clone() }),
            Some(MemberState::Joining) if plane.is_voter(&me) => {
                Some(ControlOp::Promote { id: me.clone() })
            }
            _ => None,
        };
        if let Some(op) = op {
            tracing::info!(broker = %me, ?op, "the leader itself is not active in the ring: fixing");
            if let Err(e) = plane.execute_as_leader(op).await {
                tracing::warn!(error = %e, "could not put the leader back in the ring");
            }
        }
        let members: Vec<(String, String, MemberState)> = state
            .view
            .members()
            .filter(|m| m.id != me && m.state != MemberState::Left)
            .map(|m| (m.id.clone(), m.grpc_addr.clone(), m.state))
            .collect();
        watched.retain(|id, _| members.iter().any(|(m, _, _)| m == id));
        let now = Instant::now();
        for (id, grpc_addr, _) in &members {
            let was_leader = just_elected && previous_leader.as_deref() == Some(id.as_str());
            let w = watched.entry(id.clone()).or_insert_with(|| Watched {
                grpc_addr: String::new(),
                channel: None,
                last_heard: if was_leader {
                    (now + PREVIOUS_LEADER_GRACE)
                        .checked_sub(detection.down_after)
                        .unwrap_or(now)
                } else {
                    now
                },
            });
            if w.grpc_addr != *grpc_addr || w.channel.is_none() {
                let node = BrokerNode {
                    name: id.clone(),
                    grpc_addr: grpc_addr.clone(),
                    admin_addr: String::new(),
                };
                w.grpc_addr = grpc_addr.clone();
                w.channel = plane.channel(&node).ok();
            }
        }
        let checks = members.iter().map(|(id, _, _)| {
            let channel = watched.get(id).and_then(|w| w.channel.clone());
            let timeout = detection.every.max(Duration::from_millis(200));
            async move {
                let Some(channel) = channel else {
                    return (id.clone(), false);
                };
                let mut client = HealthClient::new(channel);
                let check = client.check(HealthCheckRequest {
                    service: String::new(),
                });
                let ok = matches!(
                    tokio::time::timeout(timeout, check).await,
                    Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
                );
                (id.clone(), ok)
            }
        });
        let results = futures_util::future::join_all(checks).await;
        for (id, ok) in results {
            let Some(w) = watched.get_mut(&id) else {
                continue;
            };
            if ok {
                w.last_heard = Instant::now();
            }
            let silent = w.last_heard.elapsed();
            let Some(member) = members.iter().find(|(m, _, _)| *m == id) else {
                continue;
            };
            let op = match member.2 {
                // A draining broker is out of the ring already; marked down and then up, it
                // would come back active and undo its drain. Silent, its hand-off waits.
                MemberState::Joining | MemberState::Active if silent >= detection.down_after => {
                    tracing::warn!(broker = %id, silent_ms = silent.as_millis() as u64, "broker silent: marking it down");
                    Some(ControlOp::MarkDown { id: id.clone() })
                }
                MemberState::Down if ok => {
                    tracing::info!(broker = %id, "broker heard from again: marking it up");
                    Some(ControlOp::MarkUp { id: id.clone() })
                }
                MemberState::Joining if ok && plane.is_voter(&id) && plane.is_caught_up(&id) => {
                    tracing::info!(broker = %id, "broker back and caught up: active again");
                    Some(ControlOp::Promote { id: id.clone() })
                }
                _ => None,
            };
            if let Some(op) = op
                && let Err(e) = plane.execute_as_leader(op).await
            {
                tracing::warn!(broker = %id, error = %e, "failure detection could not commit");
            }
        }
    }
}
