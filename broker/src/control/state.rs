//! The control plane's state: what the Raft log replicates to every broker (SPEC S7) and
//! nothing else. Members with their ring state and the ring made from them (`ClusterView`),
//! the ring's epochs within the retention, the host registry (labels, agent version, first
//! seen: written only when they change) and the cluster config. Liveness (last seen) is not
//! here: it stays with each host's owner.
//!
//! `apply` is deterministic: the time a change happened travels in the request (the proposer's
//! clock), so every broker applying the same log reaches the same state.

use std::collections::BTreeMap;

use ringwatch_core::{Change, ClusterView, MemberState, Ring};
use serde::{Deserialize, Serialize};

/// The cluster-wide settings every broker follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// How long data is kept (ms); ring epochs older than this are forgotten.
    pub retention_ms: u64,
    /// The agents' collection interval (ms).
    pub interval_ms: u64,
    /// Owners per host (1: no replication yet).
    pub replicas: u32,
    /// Ring points per broker.
    pub vnodes: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            retention_ms: 7 * 24 * 3_600_000,
            interval_ms: 5_000,
            replicas: 1,
            vnodes: 50,
        }
    }
}

/// One epoch of the ring: from when, and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingEpoch {
    pub epoch: u64,
    pub since_ms: i64,
    pub members: Vec<String>,
}

/// What the registry keeps of a host: only what changes rarely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub first_seen_ms: i64,
}

/// A drained broker's hand-off: where its hosts' data went, and how far it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The ring epoch the data went by: each host's owner at this epoch holds it.
    pub epoch: u64,
    pub hosts_total: u64,
    pub hosts_left: u64,
    pub bytes_total: u64,
    pub bytes_left: u64,
    /// Every section sent and verified by its new owner.
    pub done: bool,
    pub updated_ms: i64,
}

/// A write to the control plane (an entry of the Raft log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// A membership or ring-state change, made at `at_ms`.
    Change { change: Change, at_ms: i64 },
    /// A host registered, or its labels or agent version changed.
    RegisterHost {
        host_id: String,
        labels: BTreeMap<String, String>,
        agent_version: String,
        at_ms: i64,
    },
    /// New cluster settings.
    SetConfig { config: ClusterConfig },
    /// A draining broker's hand-off progress; when `done`, it is drained.
    Handoff { id: String, progress: Handoff },
}

/// What applying a request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ControlResponse {
    /// Applied (or already so); `ring_changed` when the ring moved to `epoch`.
    Applied { epoch: u64, ring_changed: bool },
    /// Refused with the reason; nothing changed.
    Refused { reason: String },
}

/// The replicated control-plane state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlState {
    pub view: ClusterView,
    pub epochs: Vec<RingEpoch>,
    pub hosts: BTreeMap<String, HostEntry>,
    pub config: ClusterConfig,
    /// Hand-offs of draining and drained brokers (kept after their removal while reads of the
    /// epochs they owned need to know where their data went).
    #[serde(default)]
    pub handoffs: BTreeMap<String, Handoff>,
}

impl Default for ControlState {
    fn default() -> Self {
        let config = ClusterConfig::default();
        ControlState {
            view: ClusterView::new(config.vnodes),
            epochs: Vec::new(),
            hosts: BTreeMap::new(),
            config,
            handoffs: BTreeMap::new(),
        }
    }
}

impl ControlState {
    /// Applies one request; a refused one changes nothing.
    pub fn apply(&mut self, request: ControlRequest) -> ControlResponse {
        match request {
            ControlRequest::Change { change, at_ms } => match self.view.apply(change.clone()) {
                Ok(ring_changed) => {
                    if let Change::Join { id, .. } | Change::Drain { id } = &change {
                        // Back under its id, or draining afresh: an old hand-off is history.
                        self.handoffs.remove(id);
                    }
                    if ring_changed {
                        self.record_epoch(at_ms);
                    }
                    self.applied(ring_changed)
                }
                Err(e) => ControlResponse::Refused {
                    reason: e.to_string(),
                },
            },
            ControlRequest::RegisterHost {
                host_id,
                labels,
                agent_version,
                at_ms,
            } => {
                let first_seen_ms = self.hosts.get(&host_id).map_or(at_ms, |h| h.first_seen_ms);
                self.hosts.insert(
                    host_id,
                    HostEntry {
                        labels,
                        agent_version,
                        first_seen_ms,
                    },
                );
                self.applied(false)
            }
            ControlRequest::Handoff { id, progress } => {
                let state = self.view.member(&id).map(|m| m.state);
                if state != Some(MemberState::Draining) {
                    return ControlResponse::Refused {
                        reason: format!(
                            "{id:?} is {}, not draining",
                            state.map_or("not a member", MemberState::as_str)
                        ),
                    };
                }
                if progress.done
                    && let Err(e) = self.view.apply(Change::Drained { id: id.clone() })
                {
                    return ControlResponse::Refused {
                        reason: e.to_string(),
                    };
                }
                self.handoffs.insert(id, progress);
                self.applied(false)
            }
            ControlRequest::SetConfig { config } => {
                if config.replicas == 0 || config.vnodes == 0 {
                    return ControlResponse::Refused {
                        reason: "replicas and vnodes must be at least 1".into(),
                    };
                }
                if config.vnodes != self.config.vnodes {
                    // Set once, before the first member (the bootstrap does it): the ring's
                    // points are where hosts live.
                    if self.view.members().next().is_some() {
                        return ControlResponse::Refused {
                            reason: "vnodes cannot change in a running cluster".into(),
                        };
                    }
                    self.view = ClusterView::new(config.vnodes);
                }
                self.config = config;
                self.applied(false)
            }
        }
    }

    /// Whether registering `host_id` with these details would change anything: the registry is
    /// written only on a change.
    pub fn host_differs(
        &self,
        host_id: &str,
        labels: &BTreeMap<String, String>,
        agent_version: &str,
    ) -> bool {
        self.hosts
            .get(host_id)
            .is_none_or(|h| &h.labels != labels || h.agent_version != agent_version)
    }

    fn applied(&self, ring_changed: bool) -> ControlResponse {
        ControlResponse::Applied {
            epoch: self.view.epoch(),
            ring_changed,
        }
    }

    /// Keeps the new epoch and forgets those that ended before the retention.
    fn record_epoch(&mut self, at_ms: i64) {
        let members = self.view.ring().members().map(str::to_string).collect();
        self.epochs.push(RingEpoch {
            epoch: self.view.epoch(),
            since_ms: at_ms,
            members,
        });
        let horizon =
            at_ms.saturating_sub(i64::try_from(self.config.retention_ms).unwrap_or(i64::MAX));
        // Epoch i ended when epoch i+1 began: drop it when that was before the horizon.
        let ended_before = self
            .epochs
            .windows(2)
            .take_while(|w| w[1].since_ms < horizon)
            .count();
        self.epochs.drain(..ended_before);
        // A removed broker's hand-off matters while an epoch it owned in is kept.
        let kept: std::collections::BTreeSet<&str> = self
            .epochs
            .iter()
            .flat_map(|e| e.members.iter().map(String::as_str))
            .collect();
        let view = &self.view;
        self.handoffs.retain(|id, _| {
            kept.contains(id.as_str())
                || view
                    .member(id)
                    .is_some_and(|m| m.state != MemberState::Left)
        });
    }

    /// Registered hosts per ring member, by the ring now (every member, 0 included).
    pub fn hosts_per_owner(&self) -> BTreeMap<&str, u64> {
        let ring = self.view.ring();
        let mut out: BTreeMap<&str, u64> = ring.members().map(|m| (m, 0)).collect();
        for host in self.hosts.keys() {
            if let Some(owner) = ring.owners(host, 1).first() {
                *out.entry(owner).or_default() += 1;
            }
        }
        out
    }

    /// The ring of epoch `epoch`, if it is kept.
    fn ring_at(&self, epoch: u64) -> Option<Ring> {
        let e = self.epochs.iter().find(|e| e.epoch == epoch)?;
        Some(self.ring_of(e))
    }

    /// The ring of a kept epoch.
    fn ring_of(&self, e: &RingEpoch) -> Ring {
        Ring::new(
            e.epoch,
            e.members.iter().cloned(),
            self.view.ring().vnodes(),
        )
    }

    /// The brokers that hold `host_id`'s rows within `[from_ms, to_ms]`: its owner in every
    /// epoch of the range and its owner now, where a drained broker stands for the owner its
    /// hand-off sent the host to (who may have been drained in turn).
    pub fn read_owners(&self, host_id: &str, from_ms: i64, to_ms: i64) -> Vec<String> {
        let mut owners: std::collections::BTreeSet<String> = self
            .epochs_between(from_ms, to_ms)
            .filter_map(|e| {
                self.ring_of(e)
                    .owners(host_id, 1)
                    .first()
                    .map(|o| o.to_string())
            })
            .collect();
        if let Some(o) = self.view.owners(host_id, 1).first() {
            owners.insert(o.id.clone());
        }
        let mut out = std::collections::BTreeSet::new();
        for mut owner in owners {
            // Bounded: a chain of hand-offs is at most as long as the members are many.
            for _ in 0..=self.handoffs.len() {
                let Some(h) = self.handoffs.get(&owner).filter(|h| h.done) else {
                    break;
                };
                let next = match self.ring_at(h.epoch) {
                    Some(ring) => ring.owners(host_id, 1).first().map(|o| o.to_string()),
                    None => self.view.owners(host_id, 1).first().map(|m| m.id.clone()),
                };
                match next {
                    Some(n) if n != owner => owner = n,
                    _ => break,
                }
            }
            out.insert(owner);
        }
        out.into_iter().collect()
    }

    /// The ring epochs that owned data at some time in `[from_ms, to_ms]`.
    pub fn epochs_between(&self, from_ms: i64, to_ms: i64) -> impl Iterator<Item = &RingEpoch> {
        let ends = self
            .epochs
            .iter()
            .skip(1)
            .map(|e| e.since_ms)
            .chain(std::iter::once(i64::MAX));
        self.epochs
            .iter()
            .zip(ends)
            .filter(move |(e, end)| e.since_ms <= to_ms && *end > from_ms)
            .map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(c: Change, at_ms: i64) -> ControlRequest {
        ControlRequest::Change { change: c, at_ms }
    }

    fn join(id: &str) -> Change {
        Change::Join {
            id: id.into(),
            grpc_addr: format!("http://{id}:9000"),
            admin_addr: format!("{id}:9001"),
        }
    }

    fn activate(id: &str) -> Change {
        Change::Activate { id: id.into() }
    }

    #[test]
    fn changes_move_the_ring_and_keep_its_epochs_within_the_retention() {
        let mut s = ControlState::default();
        s.config.retention_ms = 1_000;
        assert_eq!(
            s.apply(change(join("b0"), 0)),
            ControlResponse::Applied {
                epoch: 0,
                ring_changed: false
            }
        );
        assert_eq!(
            s.apply(change(activate("b0"), 10)),
            ControlResponse::Applied {
                epoch: 1,
                ring_changed: true
            }
        );
        s.apply(change(join("b1"), 20));
        s.apply(change(activate("b1"), 500));
        let epochs: Vec<(u64, i64, usize)> = s
            .epochs
            .iter()
            .map(|e| (e.epoch, e.since_ms, e.members.len()))
            .collect();
        assert_eq!(epochs, [(1, 10, 1), (2, 500, 2)]);
        // Epoch 1 owned [10, 500), epoch 2 owns [500, now].
        let between = |a, b| s.epochs_between(a, b).map(|e| e.epoch).collect::<Vec<_>>();
        assert_eq!(between(0, 100), [1]);
        assert_eq!(between(400, 600), [1, 2]);
        assert_eq!(between(500, 600), [2]);
        // A later change drops epochs that ended before the retention's horizon.
        s.apply(change(Change::Drain { id: "b1".into() }, 2_000));
        let kept: Vec<u64> = s.epochs.iter().map(|e| e.epoch).collect();
        assert_eq!(kept, [2, 3], "epoch 1 ended at 500, before 2000 - 1000");
        // A refused change changes nothing.
        let before = s.clone();
        let r = s.apply(change(activate("b9"), 3_000));
        assert_eq!(
            r,
            ControlResponse::Refused {
                reason: "no member \"b9\"".into()
            }
        );
        assert_eq!(s, before);
    }

    #[test]
    fn the_registry_keeps_the_first_sighting_and_says_when_a_write_is_needed() {
        let mut s = ControlState::default();
        let labels: BTreeMap<String, String> = [("zone".into(), "a".into())].into();
        assert!(s.host_differs("h1", &labels, "1.0"));
        let reg = |labels: &BTreeMap<String, String>, v: &str, at| ControlRequest::RegisterHost {
            host_id: "h1".into(),
            labels: labels.clone(),
            agent_version: v.into(),
            at_ms: at,
        };
        s.apply(reg(&labels, "1.0", 100));
        assert!(!s.host_differs("h1", &labels, "1.0"));
        assert!(s.host_differs("h1", &labels, "1.1"));
        s.apply(reg(&labels, "1.1", 900));
        let h = &s.hosts["h1"];
        assert_eq!((h.agent_version.as_str(), h.first_seen_ms), ("1.1", 100));
    }

    #[test]
    fn config_changes_are_checked_and_the_state_round_trips_as_json() {
        let mut s = ControlState::default();
        let mut c = s.config.clone();
        c.replicas = 0;
        assert!(matches!(
            s.apply(ControlRequest::SetConfig { config: c.clone() }),
            ControlResponse::Refused { .. }
        ));
        c.replicas = 1;
        // Before the first member, vnodes may be set (the bootstrap does it) ...
        c.vnodes = 64;
        c.retention_ms = 3_600_000;
        s.apply(ControlRequest::SetConfig { config: c.clone() });
        assert_eq!(s.config, c);
        assert_eq!(s.view.ring().vnodes(), 64);
        s.apply(change(join("b0"), 1));
        s.apply(change(activate("b0"), 2));
        // ... never after: the ring's points are where hosts live.
        let mut other = c.clone();
        other.vnodes = 7;
        assert!(matches!(
            s.apply(ControlRequest::SetConfig { config: other }),
            ControlResponse::Refused { .. }
        ));
        assert_eq!(s.view.ring().vnodes(), 64);
        let json = serde_json::to_vec(&s).unwrap();
        let back: ControlState = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.view.ring().members().collect::<Vec<_>>(), ["b0"]);
    }

    fn handoff(id: &str, epoch: u64, done: bool) -> ControlRequest {
        ControlRequest::Handoff {
            id: id.into(),
            progress: Handoff {
                epoch,
                hosts_total: 10,
                hosts_left: if done { 0 } else { 4 },
                done,
                ..Handoff::default()
            },
        }
    }

    #[test]
    fn reads_follow_a_drained_brokers_hosts_to_where_its_hand_off_sent_them() {
        let mut s = ControlState::default();
        for (i, id) in ["b0", "b1", "b2"].into_iter().enumerate() {
            s.apply(change(join(id), i as i64));
            s.apply(change(activate(id), i as i64));
        }
        let epoch = s.view.epoch();
        let host = (0..)
            .map(|i| format!("host-{i}"))
            .find(|h| s.view.owners(h, 1)[0].id == "b2")
            .unwrap();
        assert_eq!(s.read_owners(&host, 3_000, 4_000), ["b2"]);
        // A hand-off before the drain is refused: b2 is not draining.
        assert!(matches!(
            s.apply(handoff("b2", epoch, false)),
            ControlResponse::Refused { .. }
        ));
        s.apply(change(Change::Drain { id: "b2".into() }, 5_000));
        let next = s.view.owners(&host, 1)[0].id.clone();
        assert_ne!(next, "b2");
        // Handing off: an old range is still read where it was written, and at the owner now
        // (an agent's rows sent late land there, whatever their time).
        s.apply(handoff("b2", epoch + 1, false));
        let mut both = vec!["b2".to_string(), next.clone()];
        both.sort();
        assert_eq!(s.read_owners(&host, 3_000, 4_000), both);
        assert_eq!(s.read_owners(&host, 3_000, 6_000), both);
        assert_eq!(s.handoffs["b2"].hosts_left, 4);
        // Done: b2 is drained, and every range of the host is read at its new owner.
        assert!(matches!(
            s.apply(handoff("b2", epoch + 1, true)),
            ControlResponse::Applied { .. }
        ));
        assert_eq!(s.view.member("b2").unwrap().state, MemberState::Drained);
        assert_eq!(
            s.read_owners(&host, 3_000, 6_000),
            std::slice::from_ref(&next)
        );
        // Removed, the same.
        s.apply(change(
            Change::Remove {
                id: "b2".into(),
                force: false,
            },
            7_000,
        ));
        assert_eq!(
            s.read_owners(&host, 3_000, 6_000),
            std::slice::from_ref(&next)
        );
        // The new owner drained in turn: the chain is followed.
        s.apply(change(Change::Drain { id: next.clone() }, 8_000));
        let last = s.view.owners(&host, 1)[0].id.clone();
        s.apply(handoff(&next, s.view.epoch(), true));
        assert_eq!(
            s.read_owners(&host, 3_000, 9_000),
            std::slice::from_ref(&last)
        );
        // The hand-offs survive a snapshot.
        let back: ControlState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back.read_owners(&host, 3_000, 9_000), [last]);
    }
}
