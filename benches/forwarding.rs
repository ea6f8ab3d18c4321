//! Ingest through a three-broker Raft cluster at fleet shape, against one broker alone, in one
//! run: FWD_HOSTS (2,000) loadgen hosts, one snapshot of 60 metrics each FWD_INTERVAL (1s), for
//! FWD_SECS (30) s, spread over the brokers (a host starts on broker `h mod n`). Three runs:
//! - one broker, no `--raft` (every batch stored where it lands);
//! - three brokers, hosts staying where they started (`loadgen --stay`): the two of three
//!   batches that land on a broker not owning their host are forwarded;
//! - three brokers, hosts moving to the owner a broker names (as agents do).
//!
//! Reports the acknowledged samples/s, each broker's CPU seconds, samples/s per broker core,
//! and the snapshots forwarded. All processes share this machine's cores, loadgen included.
//!
//! `cargo bench --bench forwarding`

mod support;

use std::process::{Command, Stdio};

use support::raft::{Member, form, http};
use support::{BIN, Proc, env};

fn loadgen(
    urls: &[String],
    hosts: u32,
    interval: &str,
    secs: u64,
    extra: &[&str],
) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(BIN);
    cmd.args(["loadgen", "--json", "--ledger"])
        .arg(dir.path().join("ledger"))
        .args(["--hosts", &hosts.to_string(), "--interval", interval])
        .args(["--duration", &format!("{secs}s"), "--connections", "64"])
        .args(extra)
        .env("RINGWATCH_LOG", "warn")
        .stderr(Stdio::inherit());
    for u in urls {
        cmd.args(["--broker", u]);
    }
    let out = cmd.output().expect("run loadgen");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["event"] == "summary")
        .expect("loadgen summary")
}

fn forwarded(admin: &str) -> f64 {
    let (_, body) = http(admin, "GET", "/metrics", "");
    body.lines()
        .filter(|l| l.starts_with("ringwatch_broker_forwarded_snapshots_total{result=\"stored\""))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

fn report(
    label: &str,
    procs: &[&Proc],
    admins: &[&str],
    cpu0: &[f64],
    summary: &serde_json::Value,
    secs: u64,
) {
    let cpu: Vec<f64> = procs
        .iter()
        .zip(cpu0)
        .map(|(p, c0)| p.cpu_secs() - c0)
        .collect();
    let total: f64 = cpu.iter().sum();
    let samples = summary["samples_acked"].as_f64().unwrap_or(0.0);
    // (+ 0.0: an empty sum of f64 is -0.0.)
    let fwd: f64 = admins.iter().map(|a| forwarded(a)).sum::<f64>() + 0.0;
    let snaps = summary["snapshots_acked"].as_f64().unwrap_or(0.0);
    println!(
        "forwarding [{label}]: acked {:.0} samples/s; broker CPU {} s (sum {:.1} s) = {:.0} samples per broker CPU second; forwarded {:.0} of {:.0} snapshots ({:.0} %); moves {}, reconnects {}",
        samples / secs as f64,
        cpu.iter()
            .map(|c| format!("{c:.1}"))
            .collect::<Vec<_>>()
            .join(" / "),
        total,
        samples / total.max(1e-6),
        fwd,
        snaps,
        100.0 * fwd / snaps.max(1.0),
        summary["stream_moves"],
        summary["reconnects"],
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts: u32 = env("FWD_HOSTS", 2000);
    let secs: u64 = env("FWD_SECS", 30);
    let interval: String = env("FWD_INTERVAL", "1s".to_string());

    // One broker alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let one = support::broker(dir.path(), &[]);
    let url = format!("http://{}", one.addr("grpc"));
    let admin = one.addr("admin");
    let c0 = [one.cpu_secs()];
    let s = loadgen(&[url], hosts, &interval, secs, &[]);
    report("1 broker", &[&one], &[&admin], &c0, &s, secs);
    drop(one);

    for (label, extra) in [
        ("3 brokers, hosts stay where they start", vec!["--stay"]),
        ("3 brokers, hosts move to their owner", vec![]),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = form(dir.path(), 3, &[]);
        let urls: Vec<String> = members.iter().map(|m| m.grpc.clone()).collect();
        let procs: Vec<&Proc> = members.iter().map(|m| &m.proc).collect();
        let admins: Vec<&str> = members.iter().map(|m| m.admin.as_str()).collect();
        let c0: Vec<f64> = procs.iter().map(|p| p.cpu_secs()).collect();
        let s = loadgen(&urls, hosts, &interval, secs, &extra);
        report(label, &procs, &admins, &c0, &s, secs);
        for mut m in members {
            let _ = m.proc.child.kill();
            let _ = m.proc.child.wait();
        }
    }
}
