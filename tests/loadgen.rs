//! `ringwatch loadgen` and `ringwatch verify` as users run them, against a real broker:
//! backfill of a past period, hosts multiplexed over fewer connections, labels registered,
//! refused snapshots counted (and not in the ledger), and bad settings refused by name.

mod common;

use std::process::Command;
use std::time::Duration;

use common::loadgen::{Loadgen, assert_nothing_lost, n, verify};
use common::*;
use ringwatch_proto::HostsRequest;
use ringwatch_proto::query_client::QueryClient;

#[test]
fn backfill_sends_a_past_period_as_fast_as_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let started = now_ms();
    let lg = Loadgen::start(
        &[&url],
        &["--hosts", "20", "--interval", "5s", "--backfill", "2h"],
    );
    let summary = lg.finish(Duration::from_secs(120));
    assert_eq!(summary["mode"], "backfill", "{summary}");
    // 2 h at 5 s: 1440 snapshots per host, all in the past, done in far less than 2 h.
    assert_eq!(n(&summary, "snapshots_acked"), 20 * 1440, "{summary}");
    assert!(summary["seconds"].as_f64().unwrap() < 120.0, "{summary}");
    assert_nothing_lost(&lg, &summary, &[&url], 20 * 1440);
    // (Read the whole period: range_all reads the last hour.)
    let rows = block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let req = ringwatch_proto::RangeRequest {
            host_id: "loadgen-00".into(),
            start_ms: started - 3 * 3_600_000,
            end_ms: now_ms(),
            metric_names: vec![],
            limit: 0,
            sparse_ok: true,
            step_ms: 0,
        };
        let mut stream = q.range(req).await.unwrap().into_inner();
        let mut rows = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            rows.extend(chunk.to_snapshots("loadgen-00"));
        }
        rows
    });
    assert_eq!(rows.len(), 1440);
    let (first, last) = (rows[0].timestamp_ms, rows[1439].timestamp_ms);
    assert!(last < started, "all in the past: {last} < {started}");
    assert!(
        first >= started - 2 * 3_600_000 - 5000,
        "within the period: {first}"
    );
    assert_eq!(last - first, 1439 * 5000);
}

#[test]
fn hosts_share_connections_when_asked_and_register_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let port = broker.addr("grpc").rsplit(':').next().unwrap().to_string();
    let lg = Loadgen::start(
        &[&url],
        &[
            "--hosts",
            "60",
            "--connections",
            "3",
            "--interval",
            "500ms",
            "--duration",
            "6s",
            "--label",
            "zone=z1",
            "--label",
            "rack=r7",
        ],
    );
    lg.wait_progress("60 hosts connected", Duration::from_secs(60), |p| {
        p["connected"] == 60
    });
    // Three TCP connections carry the sixty streams (a health probe's connection may be there
    // for a moment too).
    wait_for("three connections", Duration::from_secs(10), || {
        let ss = Command::new("ss")
            .args(["-Htn", "state", "established"])
            .arg(format!("dport = :{port}"))
            .output()
            .expect("ss (apt-get install -y iproute2)");
        (String::from_utf8_lossy(&ss.stdout).lines().count() == 3).then_some(())
    });
    let hosts = block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        q.hosts(HostsRequest {}).await.unwrap().into_inner().hosts
    });
    assert_eq!(hosts.len(), 60);
    for h in &hosts {
        assert!(h.host_id.starts_with("loadgen-"), "{}", h.host_id);
        assert_eq!(h.labels.get("zone").map(String::as_str), Some("z1"));
        assert_eq!(h.labels.get("rack").map(String::as_str), Some("r7"));
        assert_eq!(h.interval_ms, 500);
        assert!(
            h.agent_version.starts_with("loadgen-"),
            "{}",
            h.agent_version
        );
    }
    let summary = lg.finish(Duration::from_secs(60));
    assert_eq!(n(&summary, "connections_per_broker"), 3);
    assert_nothing_lost(&lg, &summary, &[&url], 600);
}

#[test]
fn refused_snapshots_are_counted_and_kept_out_of_the_ledger() {
    // The broker takes at most 30 metrics per snapshot; loadgen sends 40: every batch is
    // refused with a reason, nothing is acknowledged, and verify finds nothing stored.
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &["--max-metrics-per-snapshot", "30"]);
    let url = broker.grpc_url();
    let lg = Loadgen::start(
        &[&url],
        &[
            "--hosts",
            "5",
            "--metrics",
            "40",
            "--interval",
            "500ms",
            "--duration",
            "3s",
        ],
    );
    let summary = lg.finish(Duration::from_secs(60));
    assert_eq!(n(&summary, "snapshots_acked"), 0, "{summary}");
    assert_eq!(
        n(&summary, "snapshots_rejected"),
        n(&summary, "snapshots_sent")
    );
    assert!(n(&summary, "batches_rejected") >= 5, "{summary}");
    let reason = summary["last_reject"].as_str().unwrap_or_default();
    assert!(reason.contains("40 metrics; at most 30"), "{summary}");
    let (ok, report) = verify(&lg.ledger, &[&url]);
    assert!(ok, "{report:#}");
    assert_eq!((n(&report, "acknowledged"), n(&report, "stored")), (0, 0));
}

#[test]
fn bad_settings_are_refused_with_the_field_named() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (args, field) in [
        (&["loadgen", "--hosts", "0"][..], "hosts"),
        (&["loadgen", "--interval", "10ms"][..], "interval"),
        (&["loadgen", "--interval", "soon"][..], "interval"),
        (
            &["loadgen", "--host-prefix", "no spaces "][..],
            "host_prefix",
        ),
        (&["loadgen", "--broker", "not a url"][..], "broker"),
        (
            &["loadgen", "--duration", "1m", "--backfill", "1h"][..],
            "backfill",
        ),
        (&["verify", "--concurrency", "0"][..], "concurrency"),
    ] {
        let (ok, err) = run(args);
        assert!(!ok, "{args:?} must be refused");
        assert!(err.contains(field), "{args:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let not_a_ledger = dir.path().join("x");
    std::fs::write(&not_a_ledger, "hello").unwrap();
    let (ok, err) = run(&["verify", "--ledger", not_a_ledger.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("is not a Ringwatch ledger"), "{err}");
}
