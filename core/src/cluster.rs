//! The cluster as every broker sees it: the members with their ring state, and the ring made
//! from them. A member's ring state is apart from its Raft role (the Raft state machine will
//! hold this view and apply [`Change`]s to it in log order, so every broker derives the same
//! ring at the same epoch).
//!
//! Ring states: `Joining` (known, catching up, owns nothing) → `Active` (in the ring) →
//! `Draining` (out of the ring: its hosts' new owners take writes while it hands their data
//! off) → `Drained` (handed off, verified) → `Left`. `Down` is set by failure detection: out of the ring at once, still a member
//! (and a Raft voter) until removed; back up, it is `Joining` again until it has caught up. The
//! epoch rises by one whenever the set of ring members changes, and only then.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ring::Ring;

/// A member's place in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Joining,
    Active,
    Draining,
    /// Drained: its hosts' data handed off; it may be removed.
    Drained,
    Down,
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Active => "active",
            MemberState::Draining => "draining",
            MemberState::Drained => "drained",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }
}

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Where agents, viz and peers reach its gRPC services.
    pub grpc_addr: String,
    /// Its admin HTTP address.
    pub admin_addr: String,
    pub state: MemberState,
}

/// A change to the view: what the control plane commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A new broker (or one that left, back under its id): joining.
    Join {
        id: String,
        grpc_addr: String,
        admin_addr: String,
    },
    /// Caught up: joins the ring.
    Activate { id: String },
    /// Leaves the ring; hands its hosts' data off.
    Drain { id: String },
    /// Its hand-off is done (verified by the new owners): it may be removed.
    Drained { id: String },
    /// Failure detection: silent too long.
    MarkDown { id: String },
    /// Heard from again: catches up before it owns again.
    MarkUp { id: String },
    /// Leaves the cluster: once drained, or down and forced.
    Remove { id: String, force: bool },
    /// A member reached at new addresses (restarted elsewhere); its ring state is kept.
    Readdress {
        id: String,
        grpc_addr: String,
        admin_addr: String,
    },
}

/// Why a change cannot apply (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("no member {0:?}")]
    Unknown(String),
    #[error("{id:?} is {state}, not {wanted}")]
    State {
        id: String,
        state: &'static str,
        wanted: &'static str,
    },
    #[error("{0:?} is a member already")]
    Exists(String),
}

/// The members and the ring derived from them. Serialised as its members, vnodes and epoch
/// (the ring is made again from them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ViewData", from = "ViewData")]
pub struct ClusterView {
    vnodes: u32,
    members: BTreeMap<String, Member>,
    ring: Ring,
}

/// A view as it is stored: the ring is derived.
#[derive(Serialize, Deserialize)]
struct ViewData {
    vnodes: u32,
    epoch: u64,
    members: Vec<Member>,
}

impl From<ClusterView> for ViewData {
    fn from(v: ClusterView) -> ViewData {
        ViewData {
            vnodes: v.vnodes,
            epoch: v.ring.epoch(),
            members: v.members.into_values().collect(),
        }
    }
}

impl From<ViewData> for ClusterView {
    fn from(d: ViewData) -> ClusterView {
        let members: BTreeMap<String, Member> =
            d.members.into_iter().map(|m| (m.id.clone(), m)).collect();
        let active = members
            .values()
            .filter(|m| m.state == MemberState::Active)
            .map(|m| m.id.clone());
        let ring = Ring::new(d.epoch, active, d.vnodes);
        ClusterView {
            vnodes: d.vnodes,
            members,
            ring,
        }
    }
}

impl ClusterView {
    /// No member yet, epoch 0.
    pub fn new(vnodes: u32) -> ClusterView {
        ClusterView {
            vnodes,
            members: BTreeMap::new(),
            ring: Ring::new(0, Vec::<String>::new(), vnodes),
        }
    }

    /// One active member (a broker on its own, or the first of a cluster): epoch 1.
    pub fn single(id: &str, grpc_addr: &str, admin_addr: &str, vnodes: u32) -> ClusterView {
        let mut v = ClusterView::new(vnodes);
        let join = Change::Join {
            id: id.into(),
            grpc_addr: grpc_addr.into(),
            admin_addr: admin_addr.into(),
        };
        // A fresh view takes a join and its activation: these cannot fail.
        let _ = v.apply(join);
        let _ = v.apply(Change::Activate { id: id.into() });
        v
    }

    pub fn epoch(&self) -> u64 {
        self.ring.epoch()
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Every member (left ones included), by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// The `r` owners of `host_id` (active members).
    pub fn owners(&self, host_id: &str, r: usize) -> Vec<&Member> {
        self.ring
            .owners(host_id, r)
            .into_iter()
            .filter_map(|id| self.members.get(id))
            .collect()
    }

    /// Applies `change`; returns whether the ring changed (then the epoch rose by one).
    pub fn apply(&mut self, change: Change) -> Result<bool, ClusterError> {
        use MemberState::*;
        let (id, to) = match change {
            Change::Join {
                id,
                grpc_addr,
                admin_addr,
            } => {
                if self.members.get(&id).is_some_and(|m| m.state != Left) {
                    return Err(ClusterError::Exists(id));
                }
                let m = Member {
                    id: id.clone(),
                    grpc_addr,
                    admin_addr,
                    state: Joining,
                };
                self.members.insert(id, m);
                return Ok(false);
            }
            Change::Readdress {
                id,
                grpc_addr,
                admin_addr,
            } => {
                let m = self
                    .members
                    .get_mut(&id)
                    .filter(|m| m.state != Left)
                    .ok_or(ClusterError::Unknown(id))?;
                m.grpc_addr = grpc_addr;
                m.admin_addr = admin_addr;
                return Ok(false);
            }
            Change::Activate { id } => self.check(id, &[Joining], Active)?,
            Change::Drain { id } => self.check(id, &[Active], Draining)?,
            Change::Drained { id } => self.check(id, &[Draining], Drained)?,
            Change::MarkDown { id } => self.check(id, &[Joining, Active, Draining], Down)?,
            Change::MarkUp { id } => self.check(id, &[Down], Joining)?,
            Change::Remove { id, force: false } => self.check(id, &[Drained], Left)?,
            Change::Remove { id, force: true } => {
                self.check(id, &[Joining, Active, Draining, Drained, Down], Left)?
            }
        };
        let was_in = self.members.get(&id).is_some_and(|m| m.state == Active);
        if let Some(m) = self.members.get_mut(&id) {
            m.state = to;
        }
        let changed = was_in != (to == Active);
        if changed {
            let active = self
                .members
                .values()
                .filter(|m| m.state == Active)
                .map(|m| m.id.clone());
            self.ring = Ring::new(self.ring.epoch() + 1, active, self.vnodes);
        }
        Ok(changed)
    }

    /// `id` if it is in one of `from` (to move to `to`).
    fn check(
        &self,
        id: String,
        from: &[MemberState],
        to: MemberState,
    ) -> Result<(String, MemberState), ClusterError> {
        let m = self
            .members
            .get(&id)
            .ok_or_else(|| ClusterError::Unknown(id.clone()))?;
        if !from.contains(&m.state) {
            let wanted = match from {
                [one] => one.as_str(),
                _ => "a member still in the cluster",
            };
            return Err(ClusterError::State {
                id,
                state: m.state.as_str(),
                wanted,
            });
        }
        Ok((id, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(id: &str) -> Change {
        Change::Join {
            id: id.into(),
            grpc_addr: format!("{id}:9000"),
            admin_addr: format!("{id}:9001"),
        }
    }

    fn ids(v: &ClusterView) -> Vec<&str> {
        v.ring().members().collect()
    }

    #[test]
    fn a_broker_joins_owns_drains_and_leaves_and_the_epoch_follows_the_ring() {
        let mut v = ClusterView::single("b0", "b0:9000", "b0:9001", 50);
        assert_eq!((v.epoch(), ids(&v)), (1, vec!["b0"]));
        assert_eq!(v.owners("host-1", 1)[0].grpc_addr, "b0:9000");
        // Joining owns nothing, and changes no epoch.
        assert_eq!(v.apply(join("b1")), Ok(false));
        assert_eq!((v.epoch(), ids(&v)), (1, vec!["b0"]));
        assert_eq!(v.apply(Change::Activate { id: "b1".into() }), Ok(true));
        assert_eq!((v.epoch(), ids(&v)), (2, vec!["b0", "b1"]));
        assert_eq!(v.ring(), &Ring::new(2, ["b1", "b0"], 50));
        // Draining leaves the ring at once; removing a drained member changes no ring.
        assert_eq!(v.apply(Change::Drain { id: "b1".into() }), Ok(true));
        assert_eq!((v.epoch(), ids(&v)), (3, vec!["b0"]));
        let gone = Change::Remove {
            id: "b1".into(),
            force: false,
        };
        // Not before its hand-off is done.
        assert!(matches!(
            v.apply(gone.clone()),
            Err(ClusterError::State { .. })
        ));
        assert_eq!(v.apply(Change::Drained { id: "b1".into() }), Ok(false));
        assert_eq!(v.member("b1").unwrap().state, MemberState::Drained);
        assert_eq!(v.apply(gone), Ok(false));
        assert_eq!(v.member("b1").unwrap().state, MemberState::Left);
        assert_eq!(v.epoch(), 3);
        // Back under the same id: joining again.
        assert_eq!(v.apply(join("b1")), Ok(false));
        assert_eq!(v.member("b1").unwrap().state, MemberState::Joining);
    }

    #[test]
    fn down_is_not_removal_and_a_broker_back_up_catches_up_before_it_owns() {
        let mut v = ClusterView::single("b0", "a", "a", 50);
        for c in [join("b1"), Change::Activate { id: "b1".into() }] {
            v.apply(c).unwrap();
        }
        assert_eq!(v.apply(Change::MarkDown { id: "b1".into() }), Ok(true));
        assert_eq!(ids(&v), vec!["b0"]);
        assert_eq!(
            v.member("b1").unwrap().state,
            MemberState::Down,
            "still a member"
        );
        assert_eq!(v.apply(Change::MarkUp { id: "b1".into() }), Ok(false));
        assert_eq!(v.member("b1").unwrap().state, MemberState::Joining);
        assert_eq!(ids(&v), vec!["b0"], "owns nothing until caught up");
        assert_eq!(v.apply(Change::Activate { id: "b1".into() }), Ok(true));
        assert_eq!(v.epoch(), 4);
    }

    #[test]
    fn a_change_that_does_not_fit_is_refused_with_its_reason_and_changes_nothing() {
        let mut v = ClusterView::single("b0", "a", "a", 50);
        let before = v.clone();
        assert_eq!(v.apply(join("b0")), Err(ClusterError::Exists("b0".into())));
        let e = v.apply(Change::Activate { id: "b9".into() }).unwrap_err();
        assert_eq!(e.to_string(), "no member \"b9\"");
        let e = v
            .apply(Change::Remove {
                id: "b0".into(),
                force: false,
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "\"b0\" is active, not drained");
        assert_eq!(
            v.apply(Change::MarkUp { id: "b0".into() })
                .unwrap_err()
                .to_string(),
            "\"b0\" is active, not down"
        );
        assert_eq!(v, before);
        // Forced, an active member may leave (the operator's explicit choice).
        let forced = Change::Remove {
            id: "b0".into(),
            force: true,
        };
        assert_eq!(v.apply(forced), Ok(true));
        assert!(v.ring().is_empty());
    }

    #[test]
    fn a_member_readdressed_keeps_its_state_and_the_ring() {
        let mut v = ClusterView::single("b0", "a", "a", 50);
        let ring = v.ring().clone();
        let moved = Change::Readdress {
            id: "b0".into(),
            grpc_addr: "http://b0-new:9093".into(),
            admin_addr: "b0-new:9097".into(),
        };
        assert_eq!(v.apply(moved), Ok(false));
        let m = v.member("b0").unwrap();
        assert_eq!(
            (m.grpc_addr.as_str(), m.state),
            ("http://b0-new:9093", MemberState::Active)
        );
        assert_eq!(v.ring(), &ring);
        let unknown = Change::Readdress {
            id: "b9".into(),
            grpc_addr: String::new(),
            admin_addr: String::new(),
        };
        assert_eq!(v.apply(unknown), Err(ClusterError::Unknown("b9".into())));
    }

    #[test]
    fn a_view_stored_and_read_back_is_the_same_view_with_the_same_ring() {
        let mut v = ClusterView::single("b0", "b0:9000", "b0:9001", 50);
        for c in [
            join("b1"),
            Change::Activate { id: "b1".into() },
            join("b2"),
            Change::MarkDown { id: "b0".into() },
        ] {
            v.apply(c).unwrap();
        }
        let json = serde_json::to_string(&v).unwrap();
        let back: ClusterView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.epoch(), 3);
        assert_eq!(ids(&back), vec!["b1"]);
        assert_eq!(back.member("b2").unwrap().state, MemberState::Joining);
        // Changes travel through the Raft log as JSON too.
        let c = Change::Remove {
            id: "b0".into(),
            force: true,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"change":"remove","id":"b0","force":true}"#);
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), c);
    }
}
