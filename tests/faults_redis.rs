//! Faults of the Redis store under load, each proved with `ringwatch loadgen` during the fault
//! and `ringwatch verify` after it: nothing acknowledged lost, nothing stored twice, every value
//! exact.

mod common;

use std::time::Duration;

use common::loadgen::{Loadgen, assert_nothing_lost, n, verify};
use common::proxy::Proxy;
use common::redis_servers::{Cluster, DURABLE, NO_PERSISTENCE, RedisServer, SentinelGroup};
use common::*;

/// loadgen's settings in these tests: 30 hosts at 500 ms for `secs`, giving up on a stream
/// after 5 s without an ack.
fn load(secs: u32) -> Vec<String> {
    [
        "--hosts",
        "30",
        "--interval",
        "500ms",
        "--ack-timeout",
        "5s",
        "--connect-timeout",
        "2s",
        "--duration",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("{secs}s")])
    .collect()
}

fn start_load(url: &str, secs: u32) -> Loadgen {
    let args = load(secs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Loadgen::start(&[url], &args)
}

/// Waits for `more` acknowledgements beyond those so far.
fn acks_resume(lg: &Loadgen, more: u64) {
    let before = lg.acked_now();
    lg.wait_acked(before + more, Duration::from_secs(90));
}

#[test]
fn a_redis_restart_under_load_loses_nothing_acknowledged_and_readiness_follows() {
    // This server persists every write (AOF, fsync always), so a restart keeps what it stored.
    let mut redis = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let broker = redis_broker(
        &[redis.url()],
        &["--redis-timeout-ms", "500", "--redis-write-retry-secs", "3"],
    );
    let url = broker.grpc_url();
    let admin = broker.addr("admin");
    let lg = start_load(&url, 30);
    lg.wait_acked(150, Duration::from_secs(60));
    redis.kill();
    wait_for("/ready to turn false", Duration::from_secs(20), || {
        (http_get(&admin, "/ready").0 == 503).then_some(())
    });
    let (_, body) = http_get(&admin, "/ready");
    assert!(body.contains("store unreachable"), "{body}");
    std::thread::sleep(Duration::from_secs(3));
    redis.restart();
    wait_for("/ready to turn true", Duration::from_secs(30), || {
        (http_get(&admin, "/ready").0 == 200).then_some(())
    });
    acks_resume(&lg, 150);
    let summary = lg.finish(Duration::from_secs(120));
    let m = scrape(&admin);
    assert!(
        metric(&m, "ringwatch_broker_store_write_retries_total") >= 1.0,
        "retries counted:\n{m}"
    );
    assert!(n(&summary, "reconnects") >= 1, "{summary}");
    assert_nothing_lost(&lg, &summary, &[&url], 900);
}

#[test]
fn redis_paused_past_the_write_retry_stops_acks_and_loses_nothing() {
    let redis = RedisServer::start();
    let broker = redis_broker(
        &[redis.url()],
        &["--redis-timeout-ms", "500", "--redis-write-retry-secs", "2"],
    );
    let url = broker.grpc_url();
    let admin = broker.addr("admin");
    let lg = start_load(&url, 30);
    lg.wait_acked(150, Duration::from_secs(60));
    redis.pause();
    // Once writes hang, nothing more is acknowledged: the hosts keep their data.
    lg.assert_no_acks(Duration::from_secs(2), Duration::from_secs(5));
    let m = scrape(&admin);
    assert!(
        metric(&m, "ringwatch_broker_store_write_failures_total") >= 1.0,
        "writes given up after the retry, not acknowledged:\n{m}"
    );
    redis.resume();
    acks_resume(&lg, 150);
    let summary = lg.finish(Duration::from_secs(120));
    assert_nothing_lost(&lg, &summary, &[&url], 900);
}

#[test]
fn a_black_hole_between_broker_and_redis_loses_nothing() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    let broker = redis_broker(
        &[proxy.redis_url()],
        &["--redis-timeout-ms", "500", "--redis-write-retry-secs", "2"],
    );
    let url = broker.grpc_url();
    let lg = start_load(&url, 30);
    lg.wait_acked(150, Duration::from_secs(60));
    // Longer than the write retry and the hosts' ack timeout.
    proxy.blackhole();
    std::thread::sleep(Duration::from_secs(8));
    proxy.heal();
    acks_resume(&lg, 150);
    proxy.reset_all();
    acks_resume(&lg, 150);
    let summary = lg.finish(Duration::from_secs(120));
    assert!(n(&summary, "reconnects") >= 1, "{summary}");
    assert_nothing_lost(&lg, &summary, &[&url], 900);
}

#[test]
fn a_cluster_master_killed_under_load_fails_over_to_its_replica_and_loses_nothing() {
    let _ = cluster_master_killed(&[], |url| start_load(url, 40), 1200);
}

/// The same while the compact layout closes windows all the time: 30 hosts backfill 6 hours
/// (window after window, each closed a second after its last write), so closes, late-row
/// merges and writes all meet the fail-over.
#[test]
fn a_cluster_master_killed_while_windows_close_loses_nothing() {
    let (broker, lg, _cluster) = cluster_master_killed(
        &["--redis-chunk-grace-secs", "1"],
        |url| {
            Loadgen::start(
                &[url],
                &[
                    "--hosts",
                    "30",
                    "--interval",
                    "5s",
                    "--backfill",
                    "6h",
                    "--ack-timeout",
                    "5s",
                    "--connect-timeout",
                    "2s",
                ],
            )
        },
        30 * 4320,
    );
    // Closing went on through the fail-over, and every window that is over gets closed.
    wait_for("the windows closed", Duration::from_secs(120), || {
        let m = scrape(&broker.addr("admin"));
        (metric(&m, "ringwatch_broker_store_chunks_closed_total") >= 30.0 * 30.0).then_some(())
    });
    let (ok, report) = verify(&lg.ledger, &[&broker.grpc_url()]);
    assert!(ok, "still exact once closed: {report:#}");
}

/// Kills a cluster master under `load`; the replica takes over; verify. Returns the broker,
/// the load and the cluster (still running).
fn cluster_master_killed(
    extra: &[&str],
    load: impl Fn(&str) -> Loadgen,
    min_acked: u64,
) -> (Proc, Loadgen, Cluster) {
    let mut cluster = Cluster::start_with_replicas(1);
    // Every write waits for a replica (WAIT 1): what a master acknowledged survives its death.
    let mut args = vec![
        "--redis-mode",
        "cluster",
        "--redis-min-replicas",
        "1",
        "--redis-timeout-ms",
        "1000",
        "--redis-write-retry-secs",
        "10",
    ];
    args.extend_from_slice(extra);
    let broker = redis_broker(&cluster.urls(), &args);
    let url = broker.grpc_url();
    let lg = load(&url);
    lg.wait_acked(150, Duration::from_secs(60));
    let victim = (0..cluster.nodes.len())
        .find(|&i| cluster.role(&cluster.nodes[i]) == "master")
        .expect("a master");
    cluster.nodes[victim].kill();
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != victim).collect();
    // A replica takes over the dead master's slots.
    cluster.wait_ok(&others);
    wait_for("three masters again", Duration::from_secs(30), || {
        let masters = others
            .iter()
            .filter(|&&i| cluster.role(&cluster.nodes[i]) == "master")
            .count();
        (masters == 3).then_some(())
    });
    // The old master comes back empty and rejoins as a replica, so WAIT 1 can be met again
    // for its slots.
    cluster.nodes[victim].restart();
    wait_for(
        "the old master to rejoin as a replica",
        Duration::from_secs(30),
        || (cluster.role(&cluster.nodes[victim]) == "slave").then_some(()),
    );
    acks_resume(&lg, 300);
    let summary = lg.finish(Duration::from_secs(300));
    assert_nothing_lost(&lg, &summary, &[&url], min_acked);
    (broker, lg, cluster)
}

/// A sentinel group under load, taken through the sequence that can lose a write Redis
/// confirmed with WAIT: the master is killed; the sentinels promote its replica; the old master
/// restarts; before the sentinels have turned it into a replica (about ten seconds, during which
/// it reports itself a master) the new master looks down to them (paused here; a stall or a
/// partition does the same), and they promote the restarted server: an eligible replica in their
/// eyes. The former new master comes back, becomes its replica and resyncs from it, dropping
/// its own data. Returns loadgen (finished), its summary, the broker's URL, when the master
/// was killed, what had been acknowledged by then, and the group (for its logs).
fn sentinel_failover_through_a_restarted_master(
    server: &[&str],
) -> (Loadgen, serde_json::Value, Proc, i64, u64, SentinelGroup) {
    let mut group = SentinelGroup::start_with("rwmaster", server);
    let (first, second) = (group.master.port, group.replica.port);
    let broker = redis_broker(
        &group.sentinel_urls(),
        &[
            "--redis-mode",
            "sentinel",
            "--redis-master-name",
            "rwmaster",
            "--redis-min-replicas",
            "1",
            "--redis-timeout-ms",
            "1000",
            "--redis-write-retry-secs",
            "8",
        ],
    );
    let url = broker.grpc_url();
    let lg = start_load(&url, 60);
    lg.wait_acked(150, Duration::from_secs(60));
    let acked_before = lg.acked_now();
    let killed_ms = now_ms();
    group.master.kill();
    wait_for("the replica promoted", Duration::from_secs(30), || {
        group.agreed_master("rwmaster").filter(|p| *p == second)
    });
    group.master.restart();
    group.replica.pause();
    wait_for(
        "the restarted server promoted",
        Duration::from_secs(60),
        || group.agreed_master("rwmaster").filter(|p| *p == first),
    );
    group.replica.resume();
    acks_resume(&lg, 150);
    let summary = lg.finish(Duration::from_secs(120));
    (lg, summary, broker, killed_ms, acked_before, group)
}

#[test]
fn a_sentinel_failover_under_load_loses_no_acknowledged_snapshot() {
    // The documented deployment: every server persists each write before answering and takes
    // none without a replica; the broker waits for a replica's confirmation (WAIT 1).
    let (lg, summary, broker, _, _, group) = sentinel_failover_through_a_restarted_master(DURABLE);
    let url = broker.grpc_url();
    let (ok, report) = verify(&lg.ledger, &[&url]);
    if !ok || std::env::var_os("RINGWATCH_TEST_LOGS").is_some() {
        eprintln!("{}\n{}", group.logs(), broker.logs());
        eprintln!("verify: {report:#}");
    }
    assert_nothing_lost(&lg, &summary, &[&url], 900);
}

#[test]
fn without_persistence_a_restarted_empty_master_wipes_writes_wait_confirmed() {
    // The same sequence without persistence: the restarted server is empty, the sentinels
    // promote it, and the replica that held everything acknowledged before the kill resyncs
    // from it. What was acknowledged before the kill is lost, though WAIT confirmed every
    // write on both servers. This is why README's sentinel settings persist every write.
    let (lg, summary, broker, killed_ms, acked_before, group) =
        sentinel_failover_through_a_restarted_master(NO_PERSISTENCE);
    let (ok, report) = verify(&lg.ledger, &[&broker.grpc_url()]);
    let lost = n(&report, "lost");
    eprintln!(
        "acknowledged before the kill: {acked_before} (or a few more); lost: {lost} of {} acknowledged; first lost: {}",
        n(&summary, "snapshots_acked"),
        report["examples"]["lost"][0]
    );
    if ok || lost < acked_before {
        eprintln!("{}\n{}", group.logs(), broker.logs());
    }
    assert!(!ok, "verify must find the loss: {report:#}");
    assert!(
        lost >= acked_before,
        "everything acknowledged before the kill ({acked_before}) is lost: {report:#}"
    );
    assert!(lost <= n(&summary, "snapshots_acked"), "{report:#}");
    for e in report["examples"]["lost"].as_array().unwrap() {
        let ts = e["timestamp_ms"].as_i64().unwrap();
        assert!(ts < killed_ms, "only what came before the kill: {e}");
    }
    assert_eq!(
        n(&report, "duplicates") + n(&report, "wrong_values"),
        0,
        "{report:#}"
    );
}
