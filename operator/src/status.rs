//! The MonitorCluster's status from what the operator saw: the phase `kubectl get mc` shows,
//! the conditions `kubectl describe mc` explains (Available, Progressing, Degraded, each with a
//! reason and message), ready counts per tier, the Raft leader and term, the ring epoch and
//! members, and the membership step in progress.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{MemberStatus, MembershipStatus, MonitorClusterStatus, Phase, ReadyCounts};
use crate::membership::{ClusterView, Step};

/// What a reconcile observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub ready: ReadyCounts,
    pub cluster: Option<ClusterView>,
    /// The step decided this pass (`None` when the reconcile failed before deciding).
    pub step: Option<Step>,
    /// Why the reconcile failed, if it did: (reason, message).
    pub error: Option<(String, String)>,
    pub generation: Option<i64>,
}

/// The status for `observed`, keeping each condition's transition time from `previous` when
/// its status did not change.
pub fn compute(
    observed: &Observed,
    previous: Option<&MonitorClusterStatus>,
) -> MonitorClusterStatus {
    let r = &observed.ready;
    let down: Vec<&str> = observed
        .cluster
        .iter()
        .flat_map(|c| c.members.iter())
        .filter(|m| m.state == "down")
        .map(|m| m.id.as_str())
        .collect();
    let leader = observed.cluster.as_ref().and_then(|c| c.leader.clone());
    let quorum = r.brokers_desired / 2 + 1;
    let available = leader.is_some() && r.brokers_ready >= quorum;
    let all_ready = r.brokers_ready >= r.brokers_desired
        && r.viz_ready >= r.viz_desired
        && r.agents_ready >= r.agents_desired;
    let changing = observed
        .step
        .as_ref()
        .is_some_and(|s| !matches!(s, Step::Done));

    let (phase, degraded) = match (&observed.error, down.is_empty()) {
        (Some((reason, message)), _) => (
            if reason == "InvalidSpec" {
                Phase::Failed
            } else {
                Phase::Degraded
            },
            Some((reason.clone(), message.clone())),
        ),
        (None, false) => (
            Phase::Degraded,
            Some((
                "BrokerDown".to_string(),
                format!(
                    "{} down: hosts moved to the others; membership changes wait",
                    down.join(", ")
                ),
            )),
        ),
        (None, true) if !available && r.brokers_ready == 0 => (Phase::Pending, None),
        (None, true) if changing || !all_ready || !available => (Phase::Progressing, None),
        (None, true) => (Phase::Running, None),
    };

    let progressing_message = match &observed.step {
        Some(Step::Done) | None if all_ready => "every tier is as the spec says".to_string(),
        Some(Step::Done) | None => format!(
            "pods starting: brokers {}/{}, viz {}/{}, agents {}/{}",
            r.brokers_ready,
            r.brokers_desired,
            r.viz_ready,
            r.viz_desired,
            r.agents_ready,
            r.agents_desired
        ),
        Some(step) => step.describe(),
    };
    let progressing_reason = match &observed.step {
        Some(Step::Join { .. }) => "Joining",
        Some(Step::Promote { .. }) => "Promoting",
        Some(Step::Drain { .. }) => "Draining",
        Some(Step::Remove { .. }) => "Removing",
        Some(Step::Roll { .. }) => "Rolling",
        Some(Step::Wait { .. }) => "Waiting",
        _ if all_ready => "AsSpecified",
        _ => "PodsStarting",
    };
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let condition = |type_: &str, on: bool, reason: &str, message: String| {
        let status = if on { "True" } else { "False" };
        let since = previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: observed.generation,
            last_transition_time: since,
        }
    };
    let conditions = vec![
        condition(
            "Available",
            available,
            if available { "QuorumReady" } else { "NoQuorum" },
            match &leader {
                Some(l) => format!(
                    "{}/{} brokers ready, Raft leader {l}",
                    r.brokers_ready, r.brokers_desired
                ),
                None => format!(
                    "{}/{} brokers ready, no Raft leader known",
                    r.brokers_ready, r.brokers_desired
                ),
            },
        ),
        condition(
            "Progressing",
            changing || !all_ready,
            progressing_reason,
            progressing_message,
        ),
        match &degraded {
            Some((reason, message)) => condition("Degraded", true, reason, message.clone()),
            None => condition("Degraded", false, "Healthy", "nothing is degraded".into()),
        },
    ];
    MonitorClusterStatus {
        phase: Some(phase),
        conditions,
        brokers: Some(format!("{}/{}", r.brokers_ready, r.brokers_desired)),
        ready: r.clone(),
        leader,
        term: observed.cluster.as_ref().and_then(|c| c.term),
        ring_epoch: observed.cluster.as_ref().and_then(|c| c.ring_epoch),
        members: observed
            .cluster
            .iter()
            .flat_map(|c| c.members.iter())
            .filter(|m| m.state != "left")
            .map(|m| MemberStatus {
                id: m.id.clone(),
                state: m.state.clone(),
                role: Some(m.role.clone()).filter(|r| !r.is_empty()),
            })
            .collect(),
        observed_generation: observed.generation,
        membership: observed
            .step
            .as_ref()
            .filter(|s| s.is_change())
            .map(|s| MembershipStatus {
                action: s.action().into(),
                member: s.member().unwrap_or_default().into(),
                message: s.describe(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberView;

    fn ready(b: i32, bd: i32) -> ReadyCounts {
        ReadyCounts {
            agents_ready: 2,
            agents_desired: 2,
            brokers_ready: b,
            brokers_desired: bd,
            viz_ready: 1,
            viz_desired: 1,
        }
    }

    fn cluster(states: &[&str]) -> ClusterView {
        ClusterView {
            leader: Some("mc-broker-0".into()),
            term: Some(2),
            ring_epoch: Some(5),
            members: states
                .iter()
                .enumerate()
                .map(|(i, s)| MemberView {
                    id: format!("mc-broker-{i}"),
                    state: s.to_string(),
                    role: "voter".into(),
                })
                .collect(),
        }
    }

    fn cond<'a>(s: &'a MonitorClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn phases_follow_what_was_seen() {
        let pending = compute(&Observed::default(), None);
        assert_eq!(pending.phase, Some(Phase::Pending));
        let running = compute(
            &Observed {
                ready: ready(3, 3),
                cluster: Some(cluster(&["active", "active", "active"])),
                step: Some(Step::Done),
                error: None,
                generation: Some(4),
            },
            None,
        );
        assert_eq!(running.phase, Some(Phase::Running));
        assert_eq!(running.brokers.as_deref(), Some("3/3"));
        assert_eq!(running.leader.as_deref(), Some("mc-broker-0"));
        assert_eq!(running.ring_epoch, Some(5));
        assert_eq!(cond(&running, "Available").status, "True");
        assert_eq!(cond(&running, "Degraded").status, "False");
        assert_eq!(running.observed_generation, Some(4));

        let growing = compute(
            &Observed {
                ready: ready(3, 5),
                cluster: Some(cluster(&["active", "active", "active", "joining"])),
                step: Some(Step::Promote {
                    id: "mc-broker-3".into(),
                }),
                ..Default::default()
            },
            Some(&running),
        );
        assert_eq!(growing.phase, Some(Phase::Progressing));
        assert_eq!(cond(&growing, "Progressing").reason, "Promoting");
        assert!(growing.membership.is_some());
        assert_eq!(
            cond(&growing, "Available").last_transition_time,
            cond(&running, "Available").last_transition_time,
            "unchanged conditions keep their time"
        );

        let down = compute(
            &Observed {
                ready: ready(2, 3),
                cluster: Some(cluster(&["active", "down", "active"])),
                step: Some(Step::Wait { reason: "x".into() }),
                ..Default::default()
            },
            None,
        );
        assert_eq!(down.phase, Some(Phase::Degraded));
        let d = cond(&down, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "BrokerDown")
        );
        assert!(d.message.contains("mc-broker-1"));

        let failed = compute(
            &Observed {
                error: Some(("ApplyFailed".into(), "StatefulSet mc-broker: 500".into())),
                ..Default::default()
            },
            None,
        );
        assert_eq!(failed.phase, Some(Phase::Degraded));
        assert_eq!(cond(&failed, "Degraded").reason, "ApplyFailed");
    }
}
