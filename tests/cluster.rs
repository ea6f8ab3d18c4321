//! A broker cluster of real processes on loopback: three brokers with `--raft` form a cluster
//! through the admin API (the first bootstraps; the others join as learners and are promoted,
//! one through a follower that forwards to the leader), agree on members and ring, refuse bad
//! and unauthorised requests without changing anything, elect a new leader when the leader is
//! killed with SIGKILL (which marks the dead one down: out of the ring, still a voter), and take
//! the old leader back from its disk into the ring once it has caught up.

mod common;

use std::time::Duration;

use common::loadgen::{Loadgen, assert_nothing_lost, n, verify};
use common::*;
use serde_json::Value;

const SECRET: &str = "cluster-test-secret-of-thirty-two-bytes-or-more";

fn cluster(admin: &str) -> Value {
    let (status, body) = http_get(admin, "/api/cluster");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn states(c: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = c["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_string(),
                m["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

struct Member {
    proc: Proc,
    id: String,
    grpc: String,
    admin: String,
}

fn member(id: &str, base: &std::path::Path, extra: &[&str]) -> Member {
    let mut args = vec!["--auth-secret", SECRET];
    args.extend_from_slice(extra);
    open_member(id, base, &args)
}

/// A cluster member without auth (loadgen and verify need no credential).
fn open_member(id: &str, base: &std::path::Path, extra: &[&str]) -> Member {
    member_at(id, base, &free_addr(), &free_addr(), extra)
}

/// [`open_member`] on the given addresses.
fn member_at(id: &str, base: &std::path::Path, grpc: &str, admin: &str, extra: &[&str]) -> Member {
    let (grpc, admin) = (grpc.to_string(), admin.to_string());
    let mut args = vec![
        "--node-id",
        id,
        "--raft",
        "--raft-heartbeat-ms",
        "200",
        "--raft-election-timeout-ms",
        "800",
        "--peer-heartbeat-ms",
        "200",
        "--down-after-ms",
        "1500",
    ];
    args.extend_from_slice(extra);
    let proc = broker_on(&grpc, &admin, &base.join(id), &args);
    Member {
        proc,
        id: id.into(),
        grpc: format!("http://{grpc}"),
        admin,
    }
}

fn post(admin: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http_request(admin, "POST", path, &headers, body)
}

fn join_body(m: &Member) -> String {
    serde_json::json!({"id": m.id, "grpc_addr": m.grpc, "admin_addr": m.admin}).to_string()
}

#[test]
fn three_brokers_form_a_raft_cluster_refuse_bad_changes_and_survive_a_killed_leader() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b0 = member("broker-0", tmp.path(), &["--bootstrap"]);
    let b1 = member("broker-1", tmp.path(), &[]);
    let b2 = member("broker-2", tmp.path(), &[]);
    let admin_token = broker_token(SECRET, "admin");
    let query_token = broker_token(SECRET, "query");

    wait_for(
        "broker-0 to bootstrap and be ready",
        Duration::from_secs(20),
        || (http_get(&b0.admin, "/ready").0 == 200).then_some(()),
    );
    let c = cluster(&b0.admin);
    assert_eq!(c["mode"], "raft");
    assert_eq!(c["leader"], "broker-0");
    assert_eq!(c["ring_epoch"], 1);
    // Not a member yet: not ready, and the reason says why.
    let (status, body) = http_get(&b1.admin, "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not a member") || body.contains("leader"),
        "{body}"
    );

    // Without a credential, or with one of another role, nothing changes.
    let (status, body) = post(&b0.admin, "/api/cluster/join", None, &join_body(&b1));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("credential"), "{body}");
    let (status, body) = post(
        &b0.admin,
        "/api/cluster/join",
        Some(&query_token),
        &join_body(&b1),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(states(&cluster(&b0.admin)).len(), 1);
    let refused = metric(
        &scrape(&b0.admin),
        "ringwatch_broker_admin_requests_refused_total",
    );
    assert!(refused >= 2.0, "refusals counted: {refused}");

    // Bad input: a 4xx with the reason, nothing changes.
    for (body, want) in [
        ("{not json", 400),
        (r#"{"id": "broker-9"}"#, 400),
        (
            r#"{"id": "b 9", "grpc_addr": "http://127.0.0.1:1", "admin_addr": "x:1"}"#,
            400,
        ),
        (
            r#"{"id": "b9", "grpc_addr": "ftp://x", "admin_addr": "x:1"}"#,
            400,
        ),
    ] {
        let (status, answer) = post(&b0.admin, "/api/cluster/join", Some(&admin_token), body);
        assert_eq!(status, want, "{body}: {answer}");
        assert!(answer.contains("error"), "{answer}");
    }
    let big = format!(r#"{{"id": "{}"}}"#, "x".repeat(64 << 10));
    let (status, _) = post(&b0.admin, "/api/cluster/join", Some(&admin_token), &big);
    assert_eq!(status, 413);
    let (status, body) = post(
        &b0.admin,
        "/api/cluster/members/broker-9/promote",
        Some(&admin_token),
        "",
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(states(&cluster(&b0.admin)).len(), 1);

    // The others join through the leader, as learners.
    for m in [&b1, &b2] {
        let (status, body) = post(
            &b0.admin,
            "/api/cluster/join",
            Some(&admin_token),
            &join_body(m),
        );
        assert_eq!(status, 200, "{body}");
        // Asking again is answered the same and changes nothing.
        let (status, body) = post(
            &b0.admin,
            "/api/cluster/join",
            Some(&admin_token),
            &join_body(m),
        );
        assert_eq!(status, 200, "{body}");
    }
    let c = cluster(&b0.admin);
    assert_eq!(c["ring_epoch"], 1, "joining members own nothing yet");
    assert_eq!(
        states(&c),
        [
            ("broker-0".into(), "active".into()),
            ("broker-1".into(), "joining".into()),
            ("broker-2".into(), "joining".into())
        ]
    );
    // Promotions through a follower are forwarded to the leader.
    wait_for(
        "broker-2 to know the leader",
        Duration::from_secs(10),
        || (cluster(&b2.admin)["leader"] == "broker-0").then_some(()),
    );
    for id in ["broker-1", "broker-2"] {
        let path = format!("/api/cluster/members/{id}/promote");
        let (status, body) = post(&b2.admin, &path, Some(&admin_token), "");
        assert_eq!(status, 200, "{body}");
    }
    for m in [&b0, &b1, &b2] {
        wait_for(
            "every broker to apply the same ring",
            Duration::from_secs(10),
            || {
                let c = cluster(&m.admin);
                (c["ring_epoch"] == 3 && states(&c).iter().all(|(_, s)| s == "active"))
                    .then_some(())
            },
        );
        wait_for("every broker ready", Duration::from_secs(10), || {
            (http_get(&m.admin, "/ready").0 == 200).then_some(())
        });
    }
    let c = cluster(&b1.admin);
    assert_eq!(c["leader"], "broker-0");
    assert_eq!(c["raft"]["voters"].as_array().map(Vec::len), Some(3));
    let roles: Vec<&str> = c["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );
    let text = scrape(&b1.admin);
    assert_eq!(metric(&text, "ringwatch_broker_ring_epoch"), 3.0);
    assert_eq!(
        metric(&text, "ringwatch_broker_cluster_members{state=\"active\""),
        3.0
    );
    // Removing an active member without drain or force is refused; a bad query too.
    let (status, body) = http_request(
        &b0.admin,
        "DELETE",
        "/api/cluster/members/broker-2",
        &[("Authorization", &format!("Bearer {admin_token}"))],
        "",
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = http_request(
        &b0.admin,
        "DELETE",
        "/api/cluster/members/broker-2?force=maybe",
        &[("Authorization", &format!("Bearer {admin_token}"))],
        "",
    );
    assert_eq!(status, 400, "{body}");

    // Raft's RPCs need the peer role, and a payload that is not Raft's is refused with a reason.
    block_on(async {
        use ringwatch_proto::RaftPayload;
        use ringwatch_proto::raft_client::RaftClient;
        let channel = tonic::transport::Endpoint::from_shared(b1.grpc.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = RaftClient::new(channel);
        let payload = || RaftPayload {
            json: b"{\"garbage\": true}".to_vec(),
        };
        let mut req = tonic::Request::new(payload());
        let ingest = broker_token(SECRET, "ingest");
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {ingest}").parse().expect("header"),
        );
        let e = client.vote(req).await.expect_err("an agent's credential");
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        let mut req = tonic::Request::new(payload());
        let peer = broker_token(SECRET, "peer");
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {peer}").parse().expect("header"),
        );
        let e = client.append_entries(req).await.expect_err("garbage");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("append-entries"), "{e:?}");
    });

    // The leader dies: the other two elect one of themselves.
    let mut b0 = b0;
    b0.proc.kill9();
    let leader = wait_for("a new leader", Duration::from_secs(20), || {
        let (c1, c2) = (cluster(&b1.admin), cluster(&b2.admin));
        let l = c1["leader"].as_str()?.to_string();
        (l != "broker-0" && c2["leader"] == l.as_str()).then_some(l)
    });
    let c = cluster(&b1.admin);
    assert!(c["term"].as_u64() > Some(1), "{c}");
    // Down is not removal: broker-0 stays a voter. The cluster still takes changes.
    assert_eq!(c["raft"]["voters"].as_array().map(Vec::len), Some(3));
    let (status, body) = post(
        &b1.admin,
        "/api/cluster/members/broker-2/drain",
        Some(&admin_token),
        "",
    );
    assert_eq!(status, 200, "{body}");
    // It held no data: its hand-off is done at once, and it is drained on both.
    wait_for("broker-2 drained on both", Duration::from_secs(10), || {
        let ok = [&b1, &b2].iter().all(|m| {
            let c = cluster(&m.admin);
            c["ring_epoch"] == 4
                && states(&c).contains(&("broker-2".to_string(), "drained".to_string()))
        });
        ok.then_some(())
    });
    let c = cluster(&b1.admin);
    let m2 = &c["members"].as_array().expect("members")[2];
    assert_eq!(m2["handoff"]["done"], true, "{c}");
    assert_eq!(m2["handoff"]["hosts_total"], 0, "{c}");

    // The old leader comes back from its disk at its address and catches up.
    b0.proc.restart();
    wait_for("broker-0 to catch up", Duration::from_secs(20), || {
        let c = cluster(&b0.admin);
        (c["ring_epoch"] == 4 && c["leader"] == leader.as_str()).then_some(())
    });
    assert_eq!(states(&cluster(&b0.admin)), states(&cluster(&b1.admin)));
    for mut m in [b0, b1, b2] {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}

/// Forms a cluster of `members` (the first bootstrapped): joins and promotes the rest through
/// the first's admin API, and waits until every one is ready.
fn form(members: &[&Member], token: Option<&str>) {
    wait_for("the first broker ready", Duration::from_secs(20), || {
        (http_get(&members[0].admin, "/ready").0 == 200).then_some(())
    });
    for m in &members[1..] {
        let (status, body) = post(&members[0].admin, "/api/cluster/join", token, &join_body(m));
        assert_eq!(status, 200, "{body}");
        let path = format!("/api/cluster/members/{}/promote", m.id);
        let (status, body) = post(&members[0].admin, &path, token, "");
        assert_eq!(status, 200, "{body}");
    }
    for m in members {
        wait_for("every broker ready", Duration::from_secs(20), || {
            (http_get(&m.admin, "/ready").0 == 200).then_some(())
        });
    }
}

#[test]
fn a_cluster_routes_every_host_to_its_owner_and_loses_nothing_when_an_owner_is_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b0 = open_member("broker-0", tmp.path(), &["--bootstrap"]);
    let b1 = open_member("broker-1", tmp.path(), &[]);
    let mut b2 = open_member("broker-2", tmp.path(), &[]);
    form(&[&b0, &b1, &b2], None);
    let urls = [b0.grpc.as_str(), b1.grpc.as_str(), b2.grpc.as_str()];

    // Hosts spread over the three brokers (as agents near different brokers): two of three
    // batches arrive at a broker that does not own their host and are forwarded.
    let lg = Loadgen::start(
        &urls,
        &["--hosts", "30", "--interval", "1s", "--duration", "14s"],
    );
    lg.wait_acked(150, Duration::from_secs(30));
    let forwarded: f64 = [&b0, &b1, &b2]
        .iter()
        .map(|m| {
            metric(
                &scrape(&m.admin),
                "ringwatch_broker_forwarded_snapshots_total{result=\"stored\"",
            )
        })
        .sum();
    assert!(
        forwarded > 0.0,
        "batches reached their owners through another broker"
    );

    // viz shows the cluster as the brokers report it: leader, term, ring epoch, and each
    // broker by its node id with its ring state and Raft role.
    let viz = viz(&urls, &["--no-auth"]);
    let viz_addr = viz.addr("http");
    let view = |pred: &dyn Fn(&Value) -> bool| {
        wait_for("viz's cluster view", Duration::from_secs(15), || {
            let (status, body) = http_get(&viz_addr, "/api/dashboard/cluster");
            let v: Value = serde_json::from_str(&body).ok()?;
            (status == 200 && pred(&v)).then_some(v)
        })
    };
    let v = view(&|v| v["leader"] == "broker-0");
    assert_eq!(v["ring_epoch"], 3, "{v}");
    assert!(v["term"].as_u64().is_some(), "{v}");
    let ids: Vec<&str> = v["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .filter_map(|b| b["node_id"].as_str())
        .collect();
    assert_eq!(ids, ["broker-0", "broker-1", "broker-2"], "{v}");
    assert_eq!(v["brokers"][0]["raft_role"], "leader", "{v}");
    assert_eq!(v["brokers"][2]["ring_state"], "active", "{v}");
    assert!(v["brokers"][1]["hosts_owned"].as_u64() > Some(0), "{v}");

    // viz asks a host's owner first, by the ring the cluster reported: the owner answers
    // from its own store, and no other broker is asked.
    let ring = ringwatch_core::Ring::new(3, ["broker-0", "broker-1", "broker-2"], 50);
    let host = (0..30)
        .map(|i| format!("loadgen-{i:02}"))
        .find(|h| ring.owners(h, 1)[0] == "broker-1")
        .expect("a host of broker-1");
    let ranges = || {
        [&b0, &b1, &b2].map(|m| {
            metric(
                &scrape(&m.admin),
                "ringwatch_broker_queries_total{rpc=\"range\"",
            )
        })
    };
    // (viz reads every host's recent history when it starts: let that finish first.)
    let before = wait_for("viz's own reads to settle", Duration::from_secs(20), || {
        let a = ranges();
        std::thread::sleep(Duration::from_millis(1500));
        (ranges() == a).then_some(a)
    });
    for _ in 0..3 {
        let (status, body) = http_get(&viz_addr, &format!("/api/metrics?host_id={host}"));
        assert_eq!(status, 200, "{body}");
    }
    let after = ranges();
    assert_eq!(
        (
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ),
        (0.0, 3.0, 0.0),
        "ranges answered by broker-0, -1, -2"
    );

    // An owner (not the leader) is killed mid-run: its hosts move to their next owners.
    b2.proc.kill9();
    let summary = lg.finish(Duration::from_secs(90));
    assert!(n(&summary, "snapshots_acked") >= 30 * 10, "{summary}");
    // Hosts that started on a broker that does not own them moved to their owner, as agents
    // do (a third start on their owner).
    assert!(n(&summary, "stream_moves") >= 10, "{summary}");
    let down = ("broker-2".to_string(), "down".to_string());
    wait_for("broker-2 marked down", Duration::from_secs(15), || {
        states(&cluster(&b0.admin)).contains(&down).then_some(())
    });
    // ... and viz says so within seconds.
    let v = view(&|v| v["brokers"][2]["ring_state"] == "down");
    assert_eq!(v["ring_epoch"], 4, "{v}");
    assert_eq!(v["brokers"][2]["healthy"], false, "{v}");
    // What broker-2 acknowledged before it died is on its disk: missing while it is down ...
    let (ok, report) = verify(&lg.ledger, &urls[..2]);
    assert!(
        !ok && n(&report, "lost") > 0,
        "broker-2 owned hosts: {report}"
    );
    assert_eq!(n(&report, "duplicates"), 0, "{report}");
    assert_eq!(n(&report, "wrong_values"), 0, "{report}");

    // A range of one of its hosts answers with what the others hold and the gap marked.
    let lost_host = (0..30)
        .map(|i| format!("loadgen-{i:02}"))
        .find(|h| ring.owners(h, 1)[0] == "broker-2")
        .expect("a host of broker-2");
    let first = block_on(async {
        let mut q = ringwatch_proto::query_client::QueryClient::connect(b0.grpc.clone())
            .await
            .expect("connect");
        let now = common::now_ms();
        let mut stream = q
            .range(ringwatch_proto::RangeRequest {
                host_id: lost_host.clone(),
                start_ms: now - 600_000,
                end_ms: now,
                ..Default::default()
            })
            .await
            .expect("a range, not an error")
            .into_inner();
        stream.message().await.expect("a chunk").expect("a chunk")
    });
    assert_eq!(first.missing_brokers, ["broker-2"], "{lost_host}");
    let (status, body) = http_get(&viz_addr, &format!("/api/metrics?host_id={lost_host}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""missing_brokers":["broker-2"]"#), "{body}");

    // ... and readable again once it is back: nothing acknowledged lost, none twice.
    b2.proc.restart();
    wait_for("broker-2 active again", Duration::from_secs(30), || {
        let c = cluster(&b0.admin);
        states(&c)
            .contains(&("broker-2".to_string(), "active".to_string()))
            .then_some(())
    });
    let report = assert_nothing_lost(&lg, &summary, &urls, 30 * 10);
    assert_eq!(n(&report, "hosts_unreadable"), 0);
    // Any broker answers for every host: Hosts fans out and merges.
    block_on(async {
        for url in urls {
            let mut q = ringwatch_proto::query_client::QueryClient::connect(url.to_string())
                .await
                .expect("connect");
            let hosts = q
                .hosts(ringwatch_proto::HostsRequest {})
                .await
                .expect("hosts")
                .into_inner()
                .hosts;
            assert_eq!(hosts.len(), 30, "{url}");
        }
    });
    for mut m in [b0, b1, b2] {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}

#[test]
fn an_agent_moves_its_stream_to_the_owner_a_broker_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b0 = open_member("broker-0", tmp.path(), &["--bootstrap"]);
    let b1 = open_member("broker-1", tmp.path(), &[]);
    let b2 = open_member("broker-2", tmp.path(), &[]);
    form(&[&b0, &b1, &b2], None);
    let members = [&b0, &b1, &b2];
    // A host id whose owner is not broker-0, by the same ring the brokers use.
    let epoch = cluster(&b0.admin)["ring_epoch"].as_u64().expect("epoch");
    let ring = ringwatch_core::Ring::new(epoch, ["broker-0", "broker-1", "broker-2"], 50);
    let host = (0..)
        .map(|i| format!("moving-host-{i}"))
        .find(|h| ring.owners(h, 1)[0] != "broker-0")
        .expect("a host");
    let owner = ring.owners(&host, 1)[0].to_string();
    let owner = members.iter().find(|m| m.id == owner).expect("owner");
    // The agent knows only broker-0; broker-0 names the owner in its Acks.
    let agent = agent(&[&b0.grpc], &["--host-id", &host]);
    let agent_admin = agent.addr("metrics");
    wait_for("the agent to move", Duration::from_secs(20), || {
        (metric(&scrape(&agent_admin), "ringwatch_agent_stream_moves_total") >= 1.0).then_some(())
    });
    let forwarded = |m: &Member| {
        metric(
            &scrape(&m.admin),
            "ringwatch_broker_forwarded_snapshots_total{result=\"stored\"",
        )
    };
    let before = forwarded(&b0);
    assert!(before >= 1.0, "broker-0 forwarded the first batches");
    // Now it streams to the owner: the owner stores them, broker-0 forwards no more.
    let stored = |m: &Member| metric(&scrape(&m.admin), "ringwatch_broker_snapshots_stored_total");
    let at_owner = stored(owner);
    wait_for("the owner to store more", Duration::from_secs(10), || {
        (stored(owner) >= at_owner + 3.0).then_some(())
    });
    assert_eq!(forwarded(&b0), before, "no forward once the agent moved");
    assert_eq!(
        metric(&scrape(&agent_admin), "ringwatch_agent_reconnects_total"),
        0.0
    );
    for mut m in [b0, b1, b2] {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}

/// The ring is the same on every broker for an epoch: the test computes it too.
fn ring_of(epoch: u64, members: &[&str]) -> ringwatch_core::Ring {
    ringwatch_core::Ring::new(epoch, members.iter().copied(), 50)
}

#[test]
fn a_cluster_grows_to_four_and_back_to_three_under_load_and_the_fourth_hands_off_what_it_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b0 = open_member("broker-0", tmp.path(), &["--bootstrap"]);
    let b1 = open_member("broker-1", tmp.path(), &[]);
    let b2 = open_member("broker-2", tmp.path(), &[]);
    form(&[&b0, &b1, &b2], None);
    let urls = [b0.grpc.as_str(), b1.grpc.as_str(), b2.grpc.as_str()];
    let hosts = 60u64;
    let lg = Loadgen::start(
        &urls,
        &["--hosts", "60", "--interval", "1s", "--duration", "45s"],
    );
    lg.wait_acked(2 * hosts, Duration::from_secs(30));

    // Grow: broker-3 joins as a learner, is promoted once caught up, and takes about a quarter
    // of the hosts; no other host changes owner.
    let mut b3 = open_member("broker-3", tmp.path(), &[]);
    let (status, body) = post(&b0.admin, "/api/cluster/join", None, &join_body(&b3));
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&b0.admin, "/api/cluster/members/broker-3/promote", None, "");
    assert_eq!(status, 200, "{body}");
    wait_for("broker-3 ready", Duration::from_secs(20), || {
        (http_get(&b3.admin, "/ready").0 == 200).then_some(())
    });
    let c = cluster(&b0.admin);
    let epoch = c["ring_epoch"].as_u64().expect("epoch");
    let (three, four) = (
        ring_of(epoch - 1, &["broker-0", "broker-1", "broker-2"]),
        ring_of(epoch, &["broker-0", "broker-1", "broker-2", "broker-3"]),
    );
    let ids: Vec<String> = (0..hosts).map(|i| format!("loadgen-{i:02}")).collect();
    let moved: Vec<&String> = ids
        .iter()
        .filter(|h| three.owners(h, 1) != four.owners(h, 1))
        .collect();
    assert!(
        moved.iter().all(|h| four.owners(h, 1)[0] == "broker-3"),
        "a join moves hosts only to the new broker"
    );
    assert!(
        !moved.is_empty() && moved.len() < ids.len() / 2,
        "{} of {} hosts moved",
        moved.len(),
        ids.len()
    );
    assert_eq!(
        c["hosts_per_owner"]["broker-3"].as_u64(),
        Some(moved.len() as u64),
        "{c}"
    );
    // Its hosts' rows are stored there now (loadgen streams to the brokers it was given, so
    // theirs reach broker-3 forwarded).
    wait_for(
        "broker-3 to store its hosts' rows",
        Duration::from_secs(20),
        || {
            let stored = metric(&scrape(&b3.admin), "ringwatch_broker_store_snapshots");
            (stored >= 3.0 * moved.len() as f64).then_some(())
        },
    );

    // Shrink, with `ringwatch cluster`: removing it before it is drained is refused; drained,
    // it hands its blocks off to the hosts' owners, verified, and only then says drained.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["cluster", "--admin", &b1.admin])
            .args(args)
            .output()
            .expect("run ringwatch cluster");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = cli(&["remove", "broker-3"]);
    assert!(
        !ok && err.contains("409") && err.contains("not drained"),
        "{err}"
    );
    let (ok, out, err) = cli(&["drain", "broker-3", "--wait", "--timeout", "60s"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("broker-3 drained"), "{out}");
    assert!(err.contains("left to hand off"), "progress shown: {err}");
    // Read at the broker the command asked (it reads its own writes; another may lag).
    let c = cluster(&b1.admin);
    let m3 = c["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == "broker-3")
        .expect("broker-3")
        .clone();
    assert_eq!(m3["state"], "drained", "{c}");
    assert_eq!(m3["handoff"]["done"], true, "{c}");
    assert_eq!(m3["handoff"]["hosts_left"], 0, "{c}");
    assert!(
        m3["handoff"]["hosts_total"].as_u64() >= Some(moved.len() as u64),
        "every host it stored was handed off: {c}"
    );
    assert_eq!(m3["handoff"]["epoch"], c["ring_epoch"], "{c}");
    let sent = metric(
        &scrape(&b3.admin),
        "ringwatch_broker_handoff_sent_bytes_total",
    );
    assert!(sent > 0.0, "broker-3 sent its blocks");
    let imported: f64 = [&b0, &b1, &b2]
        .iter()
        .map(|m| {
            metric(
                &scrape(&m.admin),
                "ringwatch_broker_handoff_imported_sections_total",
            )
        })
        .sum();
    assert!(
        imported >= moved.len() as f64,
        "{imported} sections imported"
    );
    let (ok, out, err) = cli(&["status"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("broker-3 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("drained") && row.contains("done"), "{out}");
    let (ok, out, err) = cli(&["remove", "broker-3"]);
    assert!(ok && out.contains("removed"), "{out}{err}");
    assert!(states(&cluster(&b1.admin)).contains(&("broker-3".to_string(), "left".to_string())));
    // Gone for good: what it acknowledged lives at the hosts' owners now.
    b3.proc.kill9();

    let summary = lg.finish(Duration::from_secs(90));
    assert!(
        n(&summary, "stream_moves") >= moved.len() as u64,
        "{summary}"
    );
    let report = assert_nothing_lost(&lg, &summary, &urls, hosts * 20);
    assert_eq!(n(&report, "hosts_unreadable"), 0, "{report}");
    for mut m in [b0, b1, b2] {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}

#[test]
fn a_leader_partitioned_away_cannot_commit_and_after_healing_there_is_one_leader_and_one_ring() {
    use common::proxy::Proxy;
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = ["broker-0", "broker-1", "broker-2"];
    let addrs: Vec<(String, String)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    // One proxy on each directed link between brokers (`--peer-route`): from's connections to
    // `to` go through links[from][to]. Clients (loadgen, verify, the admin API) go direct.
    let links: Vec<Vec<Option<Proxy>>> = (0..3)
        .map(|from| {
            (0..3)
                .map(|to| (from != to).then(|| Proxy::start(addrs[to].0.parse().expect("addr"))))
                .collect()
        })
        .collect();
    let members: Vec<Member> = (0..3)
        .map(|i| {
            let routes: Vec<String> = (0..3)
                .filter(|&to| to != i)
                .map(|to| {
                    let link = links[i][to].as_ref().expect("link");
                    format!("--peer-route={}={}", names[to], link.url())
                })
                .collect();
            let mut extra: Vec<&str> = routes.iter().map(String::as_str).collect();
            if i == 0 {
                extra.push("--bootstrap");
            }
            member_at(names[i], tmp.path(), &addrs[i].0, &addrs[i].1, &extra)
        })
        .collect();
    let [b0, b1, b2] = &members[..] else {
        unreachable!()
    };
    form(&[b0, b1, b2], None);
    let urls = [b0.grpc.as_str(), b1.grpc.as_str(), b2.grpc.as_str()];
    let lg = Loadgen::start(
        &urls,
        &["--hosts", "30", "--interval", "1s", "--duration", "35s"],
    );
    lg.wait_acked(60, Duration::from_secs(30));
    let before = cluster(&b0.admin);
    assert_eq!(before["leader"], "broker-0", "{before}");
    let epoch_before = before["ring_epoch"].as_u64().expect("epoch");

    // Partition the leader: nothing passes between broker-0 and the others, either way.
    let cut = |f: &dyn Fn(&Proxy)| {
        for (from, to) in [(0, 1), (0, 2), (1, 0), (2, 0)] {
            f(links[from][to].as_ref().expect("link"));
        }
    };
    cut(&|p| p.blackhole());
    // The majority elects a new leader and marks broker-0 down.
    let leader = wait_for(
        "a new leader of the majority",
        Duration::from_secs(20),
        || {
            let (c1, c2) = (cluster(&b1.admin), cluster(&b2.admin));
            let l = c1["leader"].as_str()?.to_string();
            let down = states(&c1).contains(&("broker-0".to_string(), "down".to_string()));
            (l != "broker-0" && c2["leader"] == l.as_str() && down).then_some(l)
        },
    );
    // The old leader cannot commit: a change sent to it is not applied, and its ring stays.
    let (status, body) = post(&b0.admin, "/api/cluster/members/broker-2/drain", None, "");
    assert!(
        status == 503 || status == 504,
        "an isolated broker commits nothing: {status} {body}"
    );
    let c0 = cluster(&b0.admin);
    assert_eq!(c0["ring_epoch"], epoch_before, "{c0}");
    assert!(
        !states(&c0).contains(&("broker-2".to_string(), "draining".to_string())),
        "{c0}"
    );

    // Healed: one leader, one ring, broker-0 back in it; the change it could not commit
    // never happened.
    cut(&|p| p.heal());
    let c = wait_for("one leader and one ring", Duration::from_secs(30), || {
        let cs: Vec<Value> = [b0, b1, b2].iter().map(|m| cluster(&m.admin)).collect();
        let same = cs.iter().all(|c| {
            c["leader"] == leader.as_str()
                && c["ring_epoch"] == cs[0]["ring_epoch"]
                && states(c) == states(&cs[0])
        });
        let all_active = states(&cs[0]).iter().all(|(_, s)| s == "active");
        if !(same && all_active) {
            let seen: Vec<_> = cs
                .iter()
                .map(|c| {
                    (
                        c["leader"].clone(),
                        c["term"].clone(),
                        c["ring_epoch"].clone(),
                        states(c),
                    )
                })
                .collect();
            eprintln!("not yet one leader and one ring: {seen:?}");
        }
        (same && all_active).then(|| cs[0].clone())
    });
    assert!(c["ring_epoch"].as_u64() > Some(epoch_before), "{c}");
    // ... and it stays so: nothing the old leader found while cut off (every other broker
    // silent) is acted on once it is healed.
    std::thread::sleep(Duration::from_secs(3));
    for m in [b0, b1, b2] {
        let now = cluster(&m.admin);
        assert_eq!(now["ring_epoch"], c["ring_epoch"], "{now}");
        assert_eq!(states(&now), states(&c), "{now}");
    }
    let terms: Vec<u64> = [b0, b1, b2]
        .iter()
        .filter_map(|m| cluster(&m.admin)["term"].as_u64())
        .collect();
    assert!(terms.iter().all(|t| *t == terms[0]), "one term: {terms:?}");

    // Nothing acknowledged was lost, on either side of the partition.
    let summary = lg.finish(Duration::from_secs(90));
    let report = assert_nothing_lost(&lg, &summary, &urls, 30 * 15);
    assert_eq!(n(&report, "hosts_unreadable"), 0, "{report}");
    for mut m in members {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}

#[test]
fn a_cluster_on_one_redis_survives_its_leader_and_an_owner_killed_under_load() {
    let redis = common::redis_servers::RedisServer::start();
    let url = redis.url();
    let tmp = tempfile::tempdir().expect("tempdir");
    let on_redis = ["--store", "redis", "--redis-url", url.as_str()];
    let with = |more: &[&'static str]| -> Vec<&str> {
        on_redis
            .iter()
            .copied()
            .chain(more.iter().copied())
            .collect()
    };
    let mut b0 = open_member("broker-0", tmp.path(), &with(&["--bootstrap"]));
    let mut b1 = open_member("broker-1", tmp.path(), &with(&[]));
    let mut b2 = open_member("broker-2", tmp.path(), &with(&[]));
    form(&[&b0, &b1, &b2], None);
    let urls = [b0.grpc.clone(), b1.grpc.clone(), b2.grpc.clone()];
    let urls = [urls[0].as_str(), urls[1].as_str(), urls[2].as_str()];
    let lg = Loadgen::start(
        &urls,
        &["--hosts", "30", "--interval", "1s", "--duration", "40s"],
    );
    lg.wait_acked(60, Duration::from_secs(30));
    let active = |id: &str| (id.to_string(), "active".to_string());

    // The leader killed: a new one is elected, its hosts move, ingest goes on.
    b0.proc.kill9();
    wait_for(
        "a new leader, broker-0 down",
        Duration::from_secs(20),
        || {
            let c = cluster(&b1.admin);
            let l = c["leader"].as_str()?.to_string();
            let down = states(&c).contains(&("broker-0".to_string(), "down".to_string()));
            (l != "broker-0" && down).then_some(())
        },
    );
    let acked = lg.acked_now();
    lg.wait_acked(acked + 60, Duration::from_secs(20));
    // Back, it catches up and owns its hosts again.
    b0.proc.restart();
    wait_for("broker-0 active again", Duration::from_secs(30), || {
        let c = cluster(&b1.admin);
        let owns = c["hosts_per_owner"]["broker-0"].as_u64() > Some(0);
        (states(&c).contains(&active("broker-0")) && owns).then_some(())
    });

    // An owner that does not lead killed: its hosts move to the others, then back.
    let leader = cluster(&b1.admin)["leader"]
        .as_str()
        .expect("leader")
        .to_string();
    let (victim, watcher) = if leader == "broker-2" {
        (&mut b1, &b2)
    } else {
        (&mut b2, &b1)
    };
    let victim_id = victim.id.clone();
    victim.proc.kill9();
    let down = (victim_id.clone(), "down".to_string());
    wait_for("the owner down", Duration::from_secs(20), || {
        states(&cluster(&watcher.admin))
            .contains(&down)
            .then_some(())
    });
    let acked = lg.acked_now();
    lg.wait_acked(acked + 60, Duration::from_secs(20));
    victim.proc.restart();
    wait_for("the owner active again", Duration::from_secs(30), || {
        let c = cluster(&watcher.admin);
        let owns = c["hosts_per_owner"][victim_id.as_str()].as_u64() > Some(0);
        (states(&c).contains(&active(&victim_id)) && owns).then_some(())
    });

    // One Redis holds every host's rows: nothing acknowledged lost, none twice.
    let summary = lg.finish(Duration::from_secs(90));
    let report = assert_nothing_lost(&lg, &summary, &urls, 30 * 20);
    assert_eq!(n(&report, "hosts_unreadable"), 0, "{report}");
    for mut m in [b0, b1, b2] {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}

#[test]
fn a_batch_its_owner_refuses_is_queued_on_disk_acknowledged_kept_through_a_kill_and_delivered() {
    use common::proxy::Proxy;
    let tmp = tempfile::tempdir().expect("tempdir");
    // broker-1 leads; broker-0 reaches it through a proxy that will refuse every connection
    // (broker-1 itself reaches broker-0 directly, so it stays a live member of the ring).
    let (g1, a1) = (free_addr(), free_addr());
    let link = Proxy::start(g1.parse().expect("addr"));
    let b1 = member_at("broker-1", tmp.path(), &g1, &a1, &["--bootstrap"]);
    let route = format!("--peer-route=broker-1={}", link.url());
    let mut b0 = open_member("broker-0", tmp.path(), &[&route]);
    let b2 = open_member("broker-2", tmp.path(), &[]);
    form(&[&b1, &b0, &b2], None);
    let urls = [b0.grpc.as_str(), b1.grpc.as_str(), b2.grpc.as_str()];
    // Every host streams to broker-0 and stays there: the hosts of broker-1 are forwarded.
    let lg = Loadgen::start(
        &[&b0.grpc],
        &[
            "--hosts",
            "30",
            "--interval",
            "1s",
            "--duration",
            "40s",
            "--stay",
        ],
    );
    lg.wait_acked(60, Duration::from_secs(30));
    let queued = |text: &str| {
        metric(
            text,
            "ringwatch_broker_forward_queue_events_total{event=\"queued\"",
        )
    };

    // broker-0 cannot reach broker-1 any more: after 1, 2 and 4 s of retries, its hosts'
    // batches go to the queue on disk and are acknowledged.
    link.refuse();
    let acked_at_cut = lg.acked_now();
    wait_for(
        "batches queued on disk at broker-0",
        Duration::from_secs(40),
        || {
            let m = scrape(&b0.admin);
            (queued(&m) >= 10.0 && metric(&m, "ringwatch_broker_forward_queue_batches") >= 10.0)
                .then_some(())
        },
    );
    // ... and ingest goes on: more acknowledged since the cut than the other owners' hosts alone
    // would bring in the time (the queued ones are acknowledged too).
    assert!(lg.acked_now() > acked_at_cut, "ingest goes on");
    let c = cluster(&b1.admin);
    assert!(
        states(&c).iter().all(|(_, s)| s == "active"),
        "broker-1 is live for the rest of the cluster: {c}"
    );
    // Killed with batches in the queue: they are on disk.
    b0.proc.kill9();
    let files = std::fs::read_dir(tmp.path().join("broker-0").join("forward-queue"))
        .expect("queue dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "fwd"))
        })
        .count();
    assert!(files >= 10, "{files} queued batches on disk");

    // Back, the link healed: what was queued before the kill is read back and delivered.
    link.heal();
    b0.proc.restart();
    wait_for(
        "the queue read back and delivered",
        Duration::from_secs(60),
        || {
            let m = scrape(&b0.admin);
            let delivered = metric(
                &m,
                "ringwatch_broker_forward_queue_events_total{event=\"delivered\"",
            );
            (delivered >= files as f64
                && metric(&m, "ringwatch_broker_forward_queue_batches") == 0.0)
                .then_some(())
        },
    );
    assert!(
        b0.proc.logs().contains("forward queue read back"),
        "{}",
        b0.proc.logs()
    );
    let summary = lg.finish(Duration::from_secs(90));
    // Wait for what was queued after the restart, then every acknowledged snapshot is stored.
    wait_for("the queue empty", Duration::from_secs(30), || {
        (metric(&scrape(&b0.admin), "ringwatch_broker_forward_queue_batches") == 0.0).then_some(())
    });
    let report = assert_nothing_lost(&lg, &summary, &urls, 30 * 20);
    assert_eq!(n(&report, "hosts_unreadable"), 0, "{report}");
    for mut m in [b0, b1, b2] {
        assert!(m.proc.terminate(), "{} stops cleanly on SIGTERM", m.id);
    }
}
