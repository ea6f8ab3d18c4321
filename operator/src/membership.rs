//! Ring members and Raft voters from the spec: which one change to make next.
//!
//! The operator holds no memory of a change in progress: each pass reads the broker pods and
//! the cluster's replicated view (`/api/cluster`: every member's ring state and Raft role) and
//! [`decide`] names the next step. A restarted operator reads the same two and carries on where
//! the last one stopped (the step in progress is also written to the MonitorCluster's status,
//! for people).
//!
//! - **Scale-up**: a started pod that is no member is joined (a learner); a learner is promoted
//!   (a voter in the ring) once it has caught up (the broker's promote waits for that).
//! - **Scale-down**: the highest-ordinal member beyond the spec is drained (its hosts' data
//!   handed off), then removed from the voters; only then does the StatefulSet shrink past it.
//! - **Image or config change**: once every member is active and every pod ready, the
//!   highest-ordinal outdated pod is deleted (the StatefulSet's `OnDelete` recreates it from
//!   the new template); the next waits until it is back, ready and active.
//!
//! One change at a time, and none while a member is down: a drain or removal then could take
//! the voters below a majority. An outdated pod that is not alive or not ready is replaced
//! whatever else waits (a bad image fixed in the spec must reach it), and without a leader the
//! StatefulSet never shrinks.

use std::collections::BTreeMap;

use ringwatch_net::admin_client::{AdminClient, AdminClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names::Names;

/// A broker pod as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub ordinal: u32,
    /// Its process runs and answers (the container started; `/health` answers).
    pub alive: bool,
    /// `/ready` answers 200 (an active member, a leader known, its store reachable).
    pub ready: bool,
    /// It runs the StatefulSet's current template (image, config hash).
    pub current: bool,
}

/// One member of the cluster's replicated view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: String,
    /// joining, active, draining, drained, down, left.
    pub state: String,
    /// leader, voter, learner, none.
    pub role: String,
}

/// The cluster as a broker's `/api/cluster` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    pub leader: Option<String>,
    pub term: Option<u64>,
    pub ring_epoch: Option<u64>,
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// Reads `/api/cluster`'s answer.
    pub fn from_json(v: &Value) -> ClusterView {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ClusterView {
            leader: v["leader"].as_str().map(str::to_string),
            term: v["term"].as_u64(),
            ring_epoch: v["ring_epoch"].as_u64(),
            members: v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| MemberView {
                    id: s(&m["id"]),
                    state: s(&m["state"]),
                    role: s(&m["role"]),
                })
                .collect(),
        }
    }
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Step {
    /// Add broker `id` as a learner.
    Join { id: String },
    /// Make learner `id` a voter in the ring.
    Promote { id: String },
    /// Take `id` out of the ring; it hands its hosts off.
    Drain { id: String },
    /// Remove drained (or never promoted) `id` from the cluster.
    Remove { id: String, force: bool },
    /// Delete outdated pod `id` so it comes back on the current template.
    Roll { id: String },
    /// Nothing can be done now.
    Wait { reason: String },
    /// The cluster is as the spec says.
    Done,
}

impl Step {
    /// Whether this step changes the cluster (an Event is published for it).
    pub fn is_change(&self) -> bool {
        !matches!(self, Step::Wait { .. } | Step::Done)
    }

    /// The action's name (metrics, status): join, promote, drain, remove, roll, wait, done.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Join { .. } => "join",
            Step::Promote { .. } => "promote",
            Step::Drain { .. } => "drain",
            Step::Remove { .. } => "remove",
            Step::Roll { .. } => "roll",
            Step::Wait { .. } => "wait",
            Step::Done => "done",
        }
    }

    /// The member it concerns.
    pub fn member(&self) -> Option<&str> {
        match self {
            Step::Join { id }
            | Step::Promote { id }
            | Step::Drain { id }
            | Step::Remove { id, .. }
            | Step::Roll { id } => Some(id),
            Step::Wait { .. } | Step::Done => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Step::Join { id } => format!("joining {id} as a learner"),
            Step::Promote { id } => format!("promoting {id} to a voter"),
            Step::Drain { id } => format!("draining {id}: handing its hosts off"),
            Step::Remove { id, .. } => format!("removing {id} from the voters"),
            Step::Roll { id } => format!("replacing {id} with the current image and config"),
            Step::Wait { reason } => format!("waiting: {reason}"),
            Step::Done => "the brokers are as the spec says".into(),
        }
    }
}

/// What [`decide`] concludes: the next step and the StatefulSet's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    /// The spec's count, or more while members beyond it are still being drained.
    pub replicas: u32,
}

/// The next step for `desired` brokers, given the pods and the cluster (`None`: no broker
/// answered). `current_replicas` is the StatefulSet's now (kept while nothing is known).
pub fn decide(
    names: &Names,
    desired: u32,
    current_replicas: u32,
    pods: &[PodView],
    cluster: Option<&ClusterView>,
) -> Decision {
    let desired = desired.max(1);
    let wait = |reason: String, replicas: u32| Decision {
        step: Step::Wait { reason },
        replicas,
    };
    // An outdated pod that is not running well cannot get worse by being replaced: a bad image
    // or config fixed in the spec must reach it, whatever else waits.
    let broken_outdated = pods
        .iter()
        .rev()
        .find(|p| !p.current && (!p.alive || !p.ready));
    let roll_broken = |replicas: u32| {
        broken_outdated.map(|p| Decision {
            step: Step::Roll {
                id: names.broker_pod(p.ordinal),
            },
            replicas,
        })
    };
    let Some(cluster) = cluster else {
        let replicas = current_replicas.max(desired);
        return roll_broken(replicas)
            .unwrap_or_else(|| wait("no broker answers its admin API yet".into(), replicas));
    };
    // Members of this cluster by ordinal (foreign ids, and those that left, aside).
    let members: BTreeMap<u32, &MemberView> = cluster
        .members
        .iter()
        .filter(|m| m.state != "left")
        .filter_map(|m| Some((names.broker_ordinal(&m.id)?, m)))
        .collect();
    let highest_member = members.keys().next_back().copied();
    let replicas = desired.max(highest_member.map_or(0, |o| o + 1));
    if cluster.leader.is_none() {
        // Without a leader the view may be partial: never shrink on it.
        let replicas = replicas.max(current_replicas);
        return roll_broken(replicas).unwrap_or_else(|| wait("no Raft leader".into(), replicas));
    }
    if let Some(d) = roll_broken(replicas) {
        return d;
    }
    if let Some(down) = members.values().find(|m| m.state == "down") {
        return wait(
            format!(
                "{} is down; membership waits until it is back (or removed by hand with `ringwatch cluster remove --force`)",
                down.id
            ),
            replicas,
        );
    }
    let pod = |o: u32| pods.iter().find(|p| p.ordinal == o);

    // Scale-down first: the highest member beyond the spec.
    if let Some((_, m)) = members.iter().next_back().filter(|(o, _)| **o >= desired) {
        let id = m.id.clone();
        let step = match m.state.as_str() {
            "active" => Step::Drain { id },
            "draining" => Step::Wait {
                reason: format!("{id} is handing its hosts off"),
            },
            "drained" => Step::Remove { id, force: false },
            // A learner never promoted holds no hosts: it can go at once.
            "joining" if m.role == "learner" || m.role == "none" => {
                Step::Remove { id, force: true }
            }
            // A voter back from `down` may hold hosts: active again first, then drained.
            "joining" => Step::Promote { id },
            other => Step::Wait {
                reason: format!("{id} is {other}"),
            },
        };
        return Decision { step, replicas };
    }

    // Scale-up: in ordinal order, join started pods, promote learners.
    for o in 0..desired {
        let id = names.broker_pod(o);
        match (members.get(&o), pod(o)) {
            (Some(m), _) if m.state == "joining" => {
                return Decision {
                    step: Step::Promote { id },
                    replicas,
                };
            }
            (Some(m), _) if m.state == "active" => {}
            // A scale-down undone after the drain: out of the cluster, then joined again.
            (Some(m), _) if m.state == "drained" => {
                return Decision {
                    step: Step::Remove { id, force: false },
                    replicas,
                };
            }
            (Some(m), _) => {
                return wait(format!("{id} is {}", m.state), replicas);
            }
            (None, Some(p)) if p.alive => {
                return Decision {
                    step: Step::Join { id },
                    replicas,
                };
            }
            (None, _) => return wait(format!("{id} has not started"), replicas),
        }
    }

    // Every member active and in place: roll what is outdated, one at a time.
    let wanted: Vec<&PodView> = (0..desired).filter_map(pod).collect();
    if let Some(p) = wanted.iter().find(|p| !p.ready) {
        return wait(
            format!("{} is not ready", names.broker_pod(p.ordinal)),
            replicas,
        );
    }
    if wanted.len() < desired as usize {
        return wait("not every broker pod exists yet".into(), replicas);
    }
    if let Some(p) = wanted.iter().rev().find(|p| !p.current) {
        return Decision {
            step: Step::Roll {
                id: names.broker_pod(p.ordinal),
            },
            replicas,
        };
    }
    Decision {
        step: Step::Done,
        replicas,
    }
}

/// Carries out a membership step through the admin API (`Roll`, `Wait` and `Done` are the
/// caller's: they touch pods, or nothing). `grpc_url` and `admin_addr` say where a joining
/// broker is reached.
pub async fn apply(
    client: &AdminClient,
    step: &Step,
    grpc_url: impl Fn(&str) -> String,
    admin_addr: impl Fn(&str) -> String,
) -> Result<(), AdminClientError> {
    let (method, path, body) = match step {
        Step::Join { id } => (
            "POST",
            "/api/cluster/join".to_string(),
            Some(
                serde_json::json!({"id": id, "grpc_addr": grpc_url(id), "admin_addr": admin_addr(id)}),
            ),
        ),
        Step::Promote { id } => ("POST", AdminClient::member_path(id, "/promote"), None),
        Step::Drain { id } => ("POST", AdminClient::member_path(id, "/drain"), None),
        Step::Remove { id, force } => (
            "DELETE",
            AdminClient::member_path(id, if *force { "?force=true" } else { "" }),
            None,
        ),
        Step::Roll { .. } | Step::Wait { .. } | Step::Done => return Ok(()),
    };
    client.call(method, &path, body).await?.ok().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("mc", "ns")
    }

    fn pods(n: u32) -> Vec<PodView> {
        (0..n)
            .map(|ordinal| PodView {
                ordinal,
                alive: true,
                ready: true,
                current: true,
            })
            .collect()
    }

    fn cluster(members: &[(u32, &str)]) -> ClusterView {
        ClusterView {
            leader: Some("mc-broker-0".into()),
            term: Some(1),
            ring_epoch: Some(1),
            members: members
                .iter()
                .map(|(o, s)| MemberView {
                    id: format!("mc-broker-{o}"),
                    state: s.to_string(),
                    role: "voter".into(),
                })
                .collect(),
        }
    }

    fn step(desired: u32, pods: &[PodView], c: &ClusterView) -> Decision {
        decide(&names(), desired, pods.len() as u32, pods, Some(c))
    }

    #[test]
    fn scale_up_joins_started_pods_in_order_then_promotes_them() {
        let c = cluster(&[(0, "active"), (1, "active"), (2, "active")]);
        let d = step(5, &pods(3), &c);
        assert_eq!(d.replicas, 5, "the StatefulSet grows first");
        assert!(
            matches!(d.step, Step::Wait { .. }),
            "{d:?}: pod 3 not started"
        );
        let d = step(5, &pods(5), &c);
        assert_eq!(
            d.step,
            Step::Join {
                id: "mc-broker-3".into()
            }
        );
        let c = cluster(&[(0, "active"), (1, "active"), (2, "active"), (3, "joining")]);
        assert_eq!(
            step(5, &pods(5), &c).step,
            Step::Promote {
                id: "mc-broker-3".into()
            }
        );
        let c = cluster(&[(0, "active"), (1, "active"), (2, "active"), (3, "active")]);
        assert_eq!(
            step(5, &pods(5), &c).step,
            Step::Join {
                id: "mc-broker-4".into()
            }
        );
        let c = cluster(&[
            (0, "active"),
            (1, "active"),
            (2, "active"),
            (3, "active"),
            (4, "active"),
        ]);
        assert_eq!(step(5, &pods(5), &c).step, Step::Done);
    }

    #[test]
    fn scale_down_drains_the_highest_then_removes_it_and_only_then_shrinks() {
        let all = [
            (0, "active"),
            (1, "active"),
            (2, "active"),
            (3, "active"),
            (4, "active"),
        ];
        let d = step(3, &pods(5), &cluster(&all));
        assert_eq!(
            d.step,
            Step::Drain {
                id: "mc-broker-4".into()
            }
        );
        assert_eq!(d.replicas, 5, "its pod stays while it hands off");
        let mut now = all;
        now[4].1 = "draining";
        let d = step(3, &pods(5), &cluster(&now));
        assert!(matches!(d.step, Step::Wait { .. }));
        now[4].1 = "drained";
        let d = step(3, &pods(5), &cluster(&now));
        assert_eq!(
            d.step,
            Step::Remove {
                id: "mc-broker-4".into(),
                force: false
            }
        );
        let d = step(3, &pods(5), &cluster(&now[..4]));
        assert_eq!(
            d.step,
            Step::Drain {
                id: "mc-broker-3".into()
            }
        );
        assert_eq!(d.replicas, 4, "broker 4 is gone: its pod goes");
        let d = step(3, &pods(4), &cluster(&now[..3]));
        assert_eq!((d.step, d.replicas), (Step::Done, 3));
    }

    #[test]
    fn nothing_changes_while_a_member_is_down_or_no_leader_is_known() {
        let c = cluster(&[(0, "active"), (1, "down"), (2, "active"), (3, "active")]);
        let d = step(3, &pods(4), &c);
        assert!(matches!(&d.step, Step::Wait { reason } if reason.contains("mc-broker-1 is down")));
        let mut c = cluster(&[(0, "active"), (1, "active"), (2, "active")]);
        c.leader = None;
        assert!(matches!(step(3, &pods(3), &c).step, Step::Wait { .. }));
        let d = decide(&names(), 3, 4, &pods(4), None);
        assert_eq!(d.replicas, 4, "unknown: the StatefulSet is kept as it is");
    }

    #[test]
    fn a_learner_beyond_the_spec_is_removed_at_once_but_a_voter_back_from_down_is_drained() {
        let mut c = cluster(&[(0, "active"), (1, "active"), (2, "active"), (3, "joining")]);
        c.members[3].role = "learner".into();
        assert_eq!(
            step(3, &pods(4), &c).step,
            Step::Remove {
                id: "mc-broker-3".into(),
                force: true
            }
        );
        // A voter that was down comes back `joining`: it may hold hosts, so it is made active
        // (then drained), never removed by force.
        c.members[3].role = "voter".into();
        assert_eq!(
            step(3, &pods(4), &c).step,
            Step::Promote {
                id: "mc-broker-3".into()
            }
        );
    }

    #[test]
    fn a_scale_down_undone_after_the_drain_takes_the_broker_out_and_back_in() {
        let c = cluster(&[(0, "active"), (1, "active"), (2, "active"), (3, "drained")]);
        assert_eq!(
            step(4, &pods(4), &c).step,
            Step::Remove {
                id: "mc-broker-3".into(),
                force: false
            }
        );
        let c = cluster(&[(0, "active"), (1, "active"), (2, "active")]);
        assert_eq!(
            step(4, &pods(4), &c).step,
            Step::Join {
                id: "mc-broker-3".into()
            }
        );
    }

    #[test]
    fn a_broken_outdated_pod_is_replaced_whatever_waits() {
        // A bad image rolled to broker 2: it crashes, its member is down. The image fixed in
        // the spec makes it outdated again, and it is replaced.
        let c = cluster(&[(0, "active"), (1, "active"), (2, "down")]);
        let mut p = pods(3);
        p[2] = PodView {
            ordinal: 2,
            alive: false,
            ready: false,
            current: false,
        };
        assert_eq!(
            step(3, &p, &c).step,
            Step::Roll {
                id: "mc-broker-2".into()
            }
        );
        // A first start on a bad image: no broker answers, the pods are replaced.
        let mut p = pods(3);
        for v in &mut p {
            (v.alive, v.ready, v.current) = (false, false, false);
        }
        assert_eq!(
            decide(&names(), 3, 3, &p, None).step,
            Step::Roll {
                id: "mc-broker-2".into()
            }
        );
        // Without a leader the StatefulSet keeps what it has.
        let mut c = cluster(&[(0, "active")]);
        c.leader = None;
        assert_eq!(decide(&names(), 3, 5, &pods(5), Some(&c)).replicas, 5);
    }

    #[test]
    fn a_roll_replaces_one_outdated_pod_at_a_time_highest_first() {
        let c = cluster(&[(0, "active"), (1, "active"), (2, "active")]);
        let mut p = pods(3);
        p[0].current = false;
        p[2].current = false;
        assert_eq!(
            step(3, &p, &c).step,
            Step::Roll {
                id: "mc-broker-2".into()
            }
        );
        p[2] = PodView {
            ordinal: 2,
            alive: true,
            ready: false,
            current: true,
        };
        assert!(
            matches!(step(3, &p, &c).step, Step::Wait { .. }),
            "the next waits"
        );
        p[2].ready = true;
        assert_eq!(
            step(3, &p, &c).step,
            Step::Roll {
                id: "mc-broker-0".into()
            }
        );
    }

    #[test]
    fn the_cluster_view_reads_the_admin_api_answer() {
        let v = serde_json::json!({
            "leader": "mc-broker-0", "term": 4, "ring_epoch": 9,
            "members": [{"id": "mc-broker-0", "state": "active", "role": "leader"}]
        });
        let c = ClusterView::from_json(&v);
        assert_eq!(c.term, Some(4));
        assert_eq!(c.members[0].role, "leader");
    }
}
