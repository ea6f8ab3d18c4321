//! Faults of a broker on the embedded store and of the network in front of it, each under
//! `ringwatch loadgen` and checked after with `ringwatch verify`: nothing acknowledged lost,
//! nothing stored twice, every value exact, everything in order.

mod common;

use std::time::{Duration, Instant};

use common::loadgen::{Loadgen, assert_nothing_lost, n, verify};
use common::proxy::Proxy;
use common::*;

#[test]
fn a_broker_killed_and_restarted_loses_no_acknowledged_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker_fixed(dir.path(), &[]);
    let url = broker.grpc_url();
    let lg = Loadgen::start(
        &[&url],
        &["--hosts", "50", "--interval", "500ms", "--duration", "20s"],
    );
    lg.wait_acked(300, Duration::from_secs(60));
    broker.kill9();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    let before = lg.acked_now();
    lg.wait_acked(before + 300, Duration::from_secs(60));
    let summary = lg.finish(Duration::from_secs(120));
    assert!(
        n(&summary, "reconnects") >= 50,
        "every host reconnected: {summary}"
    );
    assert_eq!(n(&summary, "unacked_at_exit"), 0, "{summary}");
    assert_nothing_lost(&lg, &summary, &[&url], 1500);
}

#[test]
fn a_paused_broker_loses_nothing_whether_hosts_wait_or_give_up_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_fixed(dir.path(), &[]);
    let url = broker.grpc_url();
    // An ack timeout that outlasts the pause and the backlog after it (agents' default is
    // 15 s; 30 s here so a loaded machine cannot turn waiting into giving up): these hosts wait.
    let waiting = Loadgen::start(
        &[&url],
        &[
            "--hosts",
            "20",
            "--interval",
            "500ms",
            "--duration",
            "25s",
            "--host-prefix",
            "waits-",
            "--ack-timeout",
            "30s",
        ],
    );
    // These give up after 2 s, reconnect (and hang, and back off) until the broker answers.
    let impatient = Loadgen::start(
        &[&url],
        &[
            "--hosts",
            "20",
            "--interval",
            "500ms",
            "--duration",
            "25s",
            "--host-prefix",
            "retries-",
            "--ack-timeout",
            "2s",
            "--connect-timeout",
            "1s",
        ],
    );
    waiting.wait_acked(100, Duration::from_secs(60));
    impatient.wait_acked(100, Duration::from_secs(60));
    broker.pause();
    let paused = Instant::now();
    waiting.assert_no_acks(Duration::from_secs(2), Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(10).saturating_sub(paused.elapsed()));
    broker.resume();
    for lg in [&waiting, &impatient] {
        let before = lg.acked_now();
        lg.wait_acked(before + 100, Duration::from_secs(60));
    }
    let s_wait = waiting.finish(Duration::from_secs(120));
    let s_retry = impatient.finish(Duration::from_secs(120));
    assert_eq!(n(&s_wait, "reconnects"), 0, "they waited: {s_wait}");
    assert!(n(&s_retry, "ack_timeouts") >= 1, "they gave up: {s_retry}");
    assert_nothing_lost(&waiting, &s_wait, &[&url], 700);
    assert_nothing_lost(&impatient, &s_retry, &[&url], 700);
}

#[test]
fn a_black_hole_and_resets_between_hosts_and_broker_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_fixed(dir.path(), &[]);
    let proxy = Proxy::start(broker.addr("grpc").parse().unwrap());
    let lg = Loadgen::start(
        &[&proxy.url()],
        &[
            "--hosts",
            "30",
            "--interval",
            "500ms",
            "--duration",
            "30s",
            "--ack-timeout",
            "2s",
            "--connect-timeout",
            "1s",
        ],
    );
    lg.wait_acked(150, Duration::from_secs(60));
    // Longer than the ack timeout: every host gives up on its stream and keeps its data.
    proxy.blackhole();
    std::thread::sleep(Duration::from_secs(6));
    proxy.heal();
    let before = lg.acked_now();
    lg.wait_acked(before + 150, Duration::from_secs(60));
    // Every connection reset at once, mid-stream.
    proxy.reset_all();
    let before = lg.acked_now();
    lg.wait_acked(before + 150, Duration::from_secs(60));
    // Slow, but passing.
    proxy.delay(Duration::from_millis(150));
    let before = lg.acked_now();
    lg.wait_acked(before + 100, Duration::from_secs(60));
    proxy.heal();
    let summary = lg.finish(Duration::from_secs(120));
    assert!(n(&summary, "ack_timeouts") >= 30, "{summary}");
    assert!(n(&summary, "reconnects") >= 60, "{summary}");
    assert_nothing_lost(&lg, &summary, &[&broker.grpc_url()], 1000);
}

#[test]
fn a_ledger_is_readable_after_loadgen_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let mut lg = Loadgen::start(
        &[&url],
        &["--hosts", "20", "--interval", "200ms", "--duration", "60s"],
    );
    let p = lg.wait_acked(200, Duration::from_secs(60));
    lg.proc.kill9();
    let (ok, report) = verify(&lg.ledger, &[&url]);
    assert!(ok, "{report:#}");
    // Every acknowledgement seen before the kill is in the ledger (a few more may have come in
    // before it died); whatever was stored and never acknowledged is allowed.
    assert!(
        n(&report, "acknowledged") >= n(&p, "acked"),
        "{report}\n{p}"
    );
    assert_eq!(n(&report, "lost"), 0, "{report}");
    assert!(
        n(&report, "stored") >= n(&report, "acknowledged"),
        "{report}"
    );
}

#[test]
fn verify_finds_acknowledged_snapshots_a_broker_lost() {
    // An ephemeral broker forgets everything when killed: what it acknowledged is lost, and
    // verify must say so, by host and timestamp, and exit non-zero.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker_fixed(dir.path(), &["--ephemeral"]);
    let url = broker.grpc_url();
    let lg = Loadgen::start(
        &[&url],
        &["--hosts", "10", "--interval", "500ms", "--duration", "8s"],
    );
    lg.wait_acked(40, Duration::from_secs(60));
    broker.kill9();
    broker.restart();
    let summary = lg.finish(Duration::from_secs(60));
    let (ok, report) = verify(&lg.ledger, &[&url]);
    assert!(!ok, "loss must fail verify: {report:#}");
    assert!(n(&report, "lost") >= 40, "{report:#}");
    assert_eq!(n(&report, "acknowledged"), n(&summary, "snapshots_acked"));
    let first = &report["examples"]["lost"][0];
    assert!(
        first["host"].as_str().unwrap().starts_with("loadgen-"),
        "{first}"
    );
    assert!(first["timestamp_ms"].as_i64().unwrap() > 0, "{first}");
    assert!(report["problem_hosts"].as_array().unwrap().len() >= 10);
}
