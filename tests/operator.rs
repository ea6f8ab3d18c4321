//! The operator's ring and voter logic against a real broker cluster. No Kubernetes API server
//! can run here, so broker processes on loopback stand in for the StatefulSet's pods: a
//! "StatefulSet" of `replicas` starts pod N as `mc-broker-N` (its own data directory and fixed
//! ports, so a replaced pod comes back at the same address, as a pod keeps its DNS name), and a
//! scale-down stops the highest pods and deletes their volumes. The operator's own decision
//! ([`membership::decide`]) and admin calls ([`membership::apply`]) drive it, one step per
//! pass, with no memory between passes, as the controller does.
//!
//! Under `ringwatch loadgen` (30 hosts at 1 s): 3 → 5 → 3 brokers with the operator "restarted"
//! (a fresh driver) in the middle of the scale-down, then an image roll one broker at a time;
//! `ringwatch verify` finds nothing acknowledged lost or stored twice, the voters never fall
//! below a majority, and ingest goes on throughout.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::loadgen::{Loadgen, n, verify};
use common::{Proc, block_on, free_addr, http_get};
use ringwatch_net::admin_client::AdminClient;
use ringwatch_operator::membership::{self, ClusterView, PodView, Step};
use ringwatch_operator::names::Names;

/// A broker pod: its process and the template revision it runs.
struct Pod {
    proc: Proc,
    revision: u32,
}

/// The stand-in StatefulSet.
struct Fleet {
    names: Names,
    base: PathBuf,
    /// Fixed (grpc, admin) addresses per ordinal.
    addrs: Vec<(String, String)>,
    pods: BTreeMap<u32, Pod>,
    replicas: u32,
    /// The template's revision: a pod on an older one is outdated.
    revision: u32,
}

impl Fleet {
    fn new(base: PathBuf, max: u32) -> Fleet {
        Fleet {
            names: Names::new("mc", "test"),
            base,
            addrs: (0..max).map(|_| (free_addr(), free_addr())).collect(),
            pods: BTreeMap::new(),
            replicas: 0,
            revision: 1,
        }
    }

    fn start(&self, ordinal: u32) -> Proc {
        let id = self.names.broker_pod(ordinal);
        let (grpc, admin) = &self.addrs[ordinal as usize];
        let dir = self.base.join(&id);
        let dir = dir.to_str().unwrap().to_string();
        Proc::start(&[
            "broker",
            "--node-id",
            &id,
            "--listen",
            grpc,
            "--admin-listen",
            admin,
            "--data-dir",
            &dir,
            "--raft",
            "--bootstrap-node",
            &self.names.broker_pod(0),
            "--raft-heartbeat-ms",
            "200",
            "--raft-election-timeout-ms",
            "800",
            "--peer-heartbeat-ms",
            "200",
            "--down-after-ms",
            "1500",
            "--vnodes",
            "64",
        ])
    }

    /// The StatefulSet controller: pods for every ordinal below `replicas`; those above
    /// stopped and their volumes deleted (`whenScaled: Delete`).
    fn set_replicas(&mut self, replicas: u32) {
        self.replicas = replicas;
        for o in 0..replicas {
            if !self.pods.contains_key(&o) {
                let proc = self.start(o);
                self.pods.insert(
                    o,
                    Pod {
                        proc,
                        revision: self.revision,
                    },
                );
            }
        }
        let gone: Vec<u32> = self
            .pods
            .keys()
            .copied()
            .filter(|o| *o >= replicas)
            .collect();
        for o in gone {
            if let Some(mut pod) = self.pods.remove(&o) {
                assert!(pod.proc.terminate(), "{o} exits cleanly");
                let _ = std::fs::remove_dir_all(self.base.join(self.names.broker_pod(o)));
            }
        }
    }

    /// `OnDelete`: a deleted pod comes back on the current template.
    fn delete_pod(&mut self, id: &str) {
        let o = self.names.broker_ordinal(id).expect("an ordinal");
        let mut pod = self.pods.remove(&o).expect("the pod");
        assert!(pod.proc.terminate(), "{id} exits cleanly");
        let proc = self.start(o);
        self.pods.insert(
            o,
            Pod {
                proc,
                revision: self.revision,
            },
        );
    }

    fn admin(&self, o: u32) -> &str {
        &self.addrs[o as usize].1
    }

    fn grpc_url(&self, id: &str) -> String {
        let o = self.names.broker_ordinal(id).unwrap();
        format!("http://{}", self.addrs[o as usize].0)
    }

    fn urls(&self, n: u32) -> Vec<String> {
        (0..n)
            .map(|o| format!("http://{}", self.addrs[o as usize].0))
            .collect()
    }

    /// What the operator reads of the pods: alive (`/health`), ready (`/ready`), current.
    fn observe(&self) -> Vec<PodView> {
        self.pods
            .iter()
            .map(|(o, p)| {
                let admin = self.admin(*o);
                PodView {
                    ordinal: *o,
                    alive: http_get(admin, "/health").0 == 200,
                    ready: http_get(admin, "/ready").0 == 200,
                    current: p.revision == self.revision,
                }
            })
            .collect()
    }

    /// `/api/cluster` from the first pod that answers.
    fn cluster(&self) -> Option<(u32, ClusterView)> {
        self.pods.keys().find_map(|o| {
            let (status, body) = http_get(self.admin(*o), "/api/cluster");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status == 200).then(|| (*o, ClusterView::from_json(&v)))
        })
    }
}

/// What a run of the driver saw and did.
#[derive(Default)]
struct Log {
    steps: Vec<Step>,
    /// The fewest voters seen alive against the voters there were.
    min_quorum_margin: i64,
}

/// One operator: passes until `until` holds for the step just decided (or `Done`).
fn drive(fleet: &mut Fleet, desired: u32, log: &mut Log, until: impl Fn(&Step) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "no convergence; steps {:?}",
            log.steps
        );
        let pods = fleet.observe();
        let seen = fleet.cluster();
        if let Some((_, c)) = &seen {
            let voters: Vec<_> = c
                .members
                .iter()
                .filter(|m| m.role == "voter" || m.role == "leader")
                .collect();
            let alive = voters
                .iter()
                .filter(|m| {
                    fleet
                        .names
                        .broker_ordinal(&m.id)
                        .and_then(|o| pods.iter().find(|p| p.ordinal == o))
                        .is_some_and(|p| p.alive)
                })
                .count() as i64;
            let majority = voters.len() as i64 / 2 + 1;
            log.min_quorum_margin = log.min_quorum_margin.min(alive - majority);
        }
        let d = membership::decide(
            &fleet.names,
            desired,
            fleet.replicas,
            &pods,
            seen.as_ref().map(|(_, c)| c),
        );
        if log.steps.last() != Some(&d.step) {
            eprintln!("operator: {} (replicas {})", d.step.describe(), d.replicas);
            log.steps.push(d.step.clone());
        }
        fleet.set_replicas(d.replicas);
        match &d.step {
            Step::Done => return,
            Step::Roll { id } => {
                // While the pod is replaced, the voters still alive must be a majority.
                if let Some((_, c)) = &seen {
                    let voters: Vec<&str> = c
                        .members
                        .iter()
                        .filter(|m| m.role == "voter" || m.role == "leader")
                        .map(|m| m.id.as_str())
                        .collect();
                    let alive = voters.iter().filter(|v| **v != id.as_str()).count() as i64;
                    let majority = voters.len() as i64 / 2 + 1;
                    log.min_quorum_margin = log.min_quorum_margin.min(alive - majority);
                }
                fleet.delete_pod(id)
            }
            Step::Wait { .. } => std::thread::sleep(Duration::from_millis(300)),
            step => {
                let (o, _) = seen.as_ref().expect("a cluster answered");
                let client = AdminClient::new(fleet.admin(*o), None);
                let grpc = |id: &str| fleet.grpc_url(id);
                let admin = |id: &str| {
                    fleet
                        .admin(fleet.names.broker_ordinal(id).unwrap())
                        .to_string()
                };
                if let Err(e) = block_on(membership::apply(&client, step, grpc, admin)) {
                    // A refusal (not caught up yet, a leader change) is retried next pass.
                    eprintln!("operator: {} refused: {e}", step.describe());
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
        if until(&d.step) {
            return;
        }
    }
}

fn states(fleet: &Fleet) -> Vec<(String, String, String)> {
    let (_, c) = fleet.cluster().expect("a cluster");
    let mut v: Vec<_> = c
        .members
        .into_iter()
        .filter(|m| m.state != "left")
        .map(|m| (m.id, m.state, m.role))
        .collect();
    v.sort();
    v
}

#[test]
fn the_operator_scales_3_5_3_resumes_after_a_restart_and_rolls_one_broker_at_a_time_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(tmp.path().to_path_buf(), 5);
    let mut log = Log::default();

    // 3 brokers from nothing: pod 0 bootstraps, the operator joins and promotes 1 and 2.
    drive(&mut fleet, 3, &mut log, |_| false);
    let three = states(&fleet);
    assert_eq!(three.len(), 3, "{three:?}");
    assert!(three.iter().all(|(_, s, _)| s == "active"), "{three:?}");
    assert!(log.steps.contains(&Step::Join {
        id: "mc-broker-1".into()
    }));
    assert!(log.steps.contains(&Step::Promote {
        id: "mc-broker-2".into()
    }));

    let urls = fleet.urls(3);
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut lg = Loadgen::start(&url_refs, &["--hosts", "30", "--interval", "1s"]);
    lg.wait_acked(60, Duration::from_secs(30));

    // 3 → 5: the StatefulSet grows, the new brokers join, are promoted, take hosts.
    log.steps.clear();
    drive(&mut fleet, 5, &mut log, |_| false);
    let five = states(&fleet);
    assert_eq!(five.len(), 5, "{five:?}");
    assert!(
        five.iter().all(|(_, s, r)| s == "active" && r != "learner"),
        "{five:?}"
    );
    assert_eq!(fleet.pods.len(), 5);
    // The ring's points per broker, set at the bootstrap, are every broker's.
    for o in 0..5 {
        let (_, body) = http_get(fleet.admin(o), "/api/cluster");
        let c: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(c["vnodes"], 64, "broker {o}: {c}");
    }
    let acked = lg.acked_now();
    lg.wait_acked(acked + 60, Duration::from_secs(30));

    // 5 → 3, with the operator restarted once the first drain has begun: the new one reads
    // the drain from the cluster and carries on; nothing is drained twice.
    log.steps.clear();
    drive(&mut fleet, 3, &mut log, |s| matches!(s, Step::Drain { .. }));
    assert_eq!(
        log.steps.last(),
        Some(&Step::Drain {
            id: "mc-broker-4".into()
        })
    );
    assert_eq!(fleet.replicas, 5, "the draining broker keeps its pod");
    let mut restarted = Log::default();
    drive(&mut fleet, 3, &mut restarted, |_| false);
    assert!(
        !restarted.steps.contains(&Step::Drain {
            id: "mc-broker-4".into()
        }),
        "the restarted operator did not drain broker 4 again: {:?}",
        restarted.steps
    );
    assert!(restarted.steps.contains(&Step::Remove {
        id: "mc-broker-4".into(),
        force: false
    }));
    assert!(restarted.steps.contains(&Step::Drain {
        id: "mc-broker-3".into()
    }));
    let back = states(&fleet);
    assert_eq!(
        back.iter()
            .map(|(id, _, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["mc-broker-0", "mc-broker-1", "mc-broker-2"],
        "{back:?}"
    );
    assert_eq!(fleet.replicas, 3);
    assert_eq!(fleet.pods.len(), 3);

    // An image roll: one broker at a time, highest first, each back before the next.
    fleet.revision += 1;
    let before_roll = lg.acked_now();
    let mut roll = Log::default();
    drive(&mut fleet, 3, &mut roll, |_| false);
    let rolled: Vec<&Step> = roll
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Roll { .. }))
        .collect();
    assert_eq!(
        rolled,
        [
            &Step::Roll {
                id: "mc-broker-2".into()
            },
            &Step::Roll {
                id: "mc-broker-1".into()
            },
            &Step::Roll {
                id: "mc-broker-0".into()
            },
        ]
    );
    assert!(fleet.pods.values().all(|p| p.revision == fleet.revision));
    // Ingest went on through the roll.
    lg.wait_acked(before_roll + 90, Duration::from_secs(60));

    for l in [&log, &restarted, &roll] {
        assert!(l.min_quorum_margin >= 0, "the voters kept a majority alive");
    }

    let acked = lg.acked_now();
    lg.proc.terminate();
    let summary = lg.finish(Duration::from_secs(30));
    let (ok, report) = verify(&lg.ledger, &url_refs);
    assert!(ok, "verify: {report}\nloadgen: {summary}");
    assert_eq!(n(&report, "lost"), 0, "{report}");
    assert_eq!(n(&report, "duplicates"), 0, "{report}");
    assert!(n(&report, "acknowledged") >= acked, "{report}");
    assert!(acked >= 240, "{acked}");
}
