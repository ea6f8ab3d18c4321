//! The control plane on real gRPC over loopback: brokers in one process, each with its own
//! Raft store on disk and its own server, as the membership flow of openraft's examples:
//! {b0} → b1, b2 join as learners → promoted to voters → writes through any broker → the
//! leader stops → the rest elect another → a broker restarted from disk has the state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::testing::{StoreBuilder, Suite};
use ringwatch_core::MemberState;
use ringwatch_net::client::Connector;
use tokio_util::sync::CancellationToken;

use super::log_store::{LogStore, RaftDb};
use super::state_machine::StateMachine;
use super::types::{StorageError, TypeConfig};
use super::*;

struct Store;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Store {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = RaftDb::open(&dir.path().join("raft.redb")).expect("open");
        let machine = StateMachine::open(db.clone()).await?;
        Ok((dir, LogStore::new(db), machine))
    }
}

/// openraft's own conformance suite for a log store and state machine.
#[test]
fn the_raft_store_keeps_openraft_s_storage_contract() {
    Suite::test_all(Store).expect("the storage suite");
}

struct Node {
    plane: Arc<ControlPlane>,
    stop: CancellationToken,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

fn node(name: &str, addr: SocketAddr) -> BrokerNode {
    BrokerNode {
        name: name.into(),
        grpc_addr: format!("http://{addr}"),
        admin_addr: format!("127.0.0.1:{}", addr.port() + 1),
    }
}

fn timings() -> RaftTimings {
    RaftTimings {
        heartbeat: Duration::from_millis(100),
        election_timeout: Duration::from_millis(400),
    }
}

async fn start(
    name: &str,
    dir: &std::path::Path,
    listener: Option<tokio::net::TcpListener>,
) -> Node {
    let listener = match listener {
        Some(l) => l,
        None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let addr = listener.local_addr().unwrap();
    let dir = dir.join(name);
    let plane = ControlPlane::start(
        &dir,
        node(name, addr),
        timings(),
        Connector::plain(),
        Default::default(),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let service = RaftService::server(plane.clone());
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, s.cancelled())
            .await;
    });
    Node {
        plane,
        stop,
        addr,
        dir,
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn states(n: &Node) -> BTreeMap<String, MemberState> {
    n.plane
        .state()
        .view
        .members()
        .map(|m| (m.id.clone(), m.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_form_a_cluster_survive_their_leader_and_restart_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let b0 = start("b0", tmp.path(), None).await;
    let b1 = start("b1", tmp.path(), None).await;
    let b2 = start("b2", tmp.path(), None).await;
    b0.plane.bootstrap(64).await.unwrap();
    assert_eq!(b0.plane.status().role, "leader");
    assert_eq!(b0.plane.state().view.epoch(), 1);

    // Joins through a follower-to-be are refused until it knows a leader; through b0 they work.
    for n in [&b1, &b2] {
        let r = b0
            .plane
            .execute(ControlOp::Join {
                node: n.plane.me().clone(),
            })
            .await
            .unwrap();
        assert!(matches!(
            r,
            ControlResponse::Applied {
                ring_changed: false,
                ..
            }
        ));
    }
    eventually("b1 and b2 to learn the membership", || {
        b1.plane.status().leader.as_deref() == Some("b0")
            && b2.plane.status().leader.as_deref() == Some("b0")
    })
    .await;
    let mut learners = b0.plane.status().learners;
    learners.sort();
    assert_eq!(learners, ["b1", "b2"]);
    assert_eq!(b0.plane.status().voters, ["b0"]);
    // A join again with the same addresses is a no-op; with others it is refused.
    let again = b1
        .plane
        .execute(ControlOp::Join {
            node: b1.plane.me().clone(),
        })
        .await;
    assert!(again.is_ok(), "{again:?}");
    // A member restarted at other addresses joins again: Raft and the ring follow it.
    let mut moved = b1.plane.me().clone();
    moved.admin_addr = "127.0.0.1:1".into();
    b0.plane
        .execute(ControlOp::Join { node: moved })
        .await
        .unwrap();
    assert_eq!(
        b0.plane.state().view.member("b1").unwrap().admin_addr,
        "127.0.0.1:1"
    );
    assert_eq!(
        states(&b0).get("b1"),
        Some(&MemberState::Joining),
        "its ring state is kept"
    );
    // Bad input: refused with the reason, nothing changes.
    let mut bad = b1.plane.me().clone();
    bad.name = "b 9".into();
    let e = b0
        .plane
        .execute(ControlOp::Join { node: bad })
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 400, "{e}");
    let e = b0
        .plane
        .execute(ControlOp::Promote { id: "b9".into() })
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 404, "{e}");

    // Promotions sent to a follower are forwarded to the leader, and the follower answers
    // once it has applied them: it reads its own writes at once.
    for id in ["b1", "b2"] {
        b1.plane
            .execute(ControlOp::Promote { id: id.into() })
            .await
            .unwrap();
        assert_eq!(states(&b1).get(id), Some(&MemberState::Active), "{id}");
    }
    let status = b0.plane.status();
    assert_eq!(status.voters.len(), 3, "{status:?}");
    assert!(status.learners.is_empty());
    for n in [&b0, &b1, &b2] {
        eventually("every broker to apply the same ring", || {
            n.plane.state().view.epoch() == 3
        })
        .await;
        assert!(states(n).values().all(|s| *s == MemberState::Active));
    }
    // A host registers through a follower; a second identical registration writes nothing.
    let reg = ControlOp::Register {
        host_id: "h1".into(),
        labels: BTreeMap::from([("zone".into(), "a".into())]),
        agent_version: "1.0".into(),
    };
    b2.plane.execute(reg.clone()).await.unwrap();
    assert!(b2.plane.state().hosts.contains_key("h1"), "read your write");
    let applied = b0.plane.status().last_applied;
    b2.plane.execute(reg).await.unwrap();
    assert_eq!(
        b0.plane.status().last_applied,
        applied,
        "no write for no change"
    );
    eventually("the host on every broker", || {
        [&b0, &b1, &b2]
            .iter()
            .all(|n| n.plane.state().hosts.contains_key("h1"))
    })
    .await;

    // Removing a voter is refused while it would leave too few live voters: here it is
    // allowed (2 of 2 live remain) only once drained, or forced.
    let e = b0
        .plane
        .execute(ControlOp::Remove {
            id: "b2".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 409, "{e}");

    // The leader stops: the other two elect one of themselves, and the state goes on.
    b0.stop.cancel();
    b0.plane.shutdown().await;
    eventually("a new leader", || {
        let l = b1.plane.status().leader;
        l.is_some() && l.as_deref() != Some("b0") && l == b2.plane.status().leader
    })
    .await;
    b1.plane
        .execute(ControlOp::Drain { id: "b2".into() })
        .await
        .unwrap();
    eventually("b2 draining on both", || {
        [&b1, &b2].iter().all(|n| {
            states(n).get("b2") == Some(&MemberState::Draining) && n.plane.state().view.epoch() == 4
        })
    })
    .await;

    // b0 comes back from its directory, on its address: it has the state it had and catches up.
    let listener = tokio::net::TcpListener::bind(b0.addr).await.unwrap();
    let dir = b0.dir.parent().unwrap().to_path_buf();
    drop(b0);
    let b0 = start("b0", &dir, Some(listener)).await;
    assert!(
        b0.plane.state().view.epoch() >= 3,
        "state from its own disk"
    );
    eventually("b0 to catch up", || b0.plane.state().view.epoch() == 4).await;
    assert_eq!(states(&b0), states(&b1));
    for n in [b0, b1, b2] {
        n.stop.cancel();
        n.plane.shutdown().await;
    }
}
