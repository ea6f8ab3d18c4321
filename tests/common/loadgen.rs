//! The one way fault tests count: `ringwatch loadgen` runs through the fault, and
//! `ringwatch verify` reads every host back and must find nothing acknowledged lost, nothing
//! stored twice, every value exact and everything in order.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{BIN, Proc};

/// A running `ringwatch loadgen --json`, its ledger in a temporary folder.
pub struct Loadgen {
    pub proc: Proc,
    pub ledger: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loadgen {
    /// Starts loadgen against `brokers` with `extra` settings (hosts, interval, duration …).
    /// Reconnect back-off is capped at 1 s so tests recover quickly.
    pub fn start(brokers: &[&str], extra: &[&str]) -> Loadgen {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("loadgen.ledger");
        let ledger_arg = ledger.to_str().expect("utf-8 path").to_string();
        let mut args = vec![
            "loadgen",
            "--json",
            "--ledger",
            &ledger_arg,
            "--backoff-max",
            "1s",
        ];
        for b in brokers {
            args.push("--broker");
            args.push(b);
        }
        args.extend_from_slice(extra);
        Loadgen {
            proc: Proc::start(&args),
            ledger,
            _dir: dir,
        }
    }

    /// Waits for a progress line with at least `n` acknowledged snapshots; returns it.
    pub fn wait_acked(&self, n: u64, timeout: Duration) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let p = self.proc.event("progress", left).unwrap_or_else(|| {
                panic!(
                    "loadgen did not reach {n} acknowledged within {timeout:?}\n{}",
                    self.proc.logs()
                )
            });
            if p["acked"].as_u64().unwrap_or(0) >= n {
                return p;
            }
        }
    }

    /// The acknowledged count of the newest progress line (one comes every second).
    pub fn acked_now(&self) -> u64 {
        self.proc
            .latest_event("progress", Duration::from_secs(5))
            .and_then(|p| p["acked"].as_u64())
            .unwrap_or_else(|| panic!("no progress line from loadgen\n{}", self.proc.logs()))
    }

    /// Waits for a progress line for which `f` holds; returns it.
    pub fn wait_progress(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.proc.event("progress", left) {
                Some(p) if f(&p) => return p,
                Some(_) => continue,
                None => panic!("no progress line with {what} within {timeout:?}"),
            }
        }
    }

    /// Asserts that no acknowledgement comes for `quiet` (after `settle`, for those already on
    /// their way): the brokers are not answering.
    pub fn assert_no_acks(&self, settle: Duration, quiet: Duration) {
        std::thread::sleep(settle);
        let before = self.acked_now();
        std::thread::sleep(quiet);
        let after = self.acked_now();
        assert_eq!(
            before, after,
            "no acknowledgement while the brokers cannot answer"
        );
    }

    /// Waits for the run to end; returns its summary.
    pub fn finish(&self, timeout: Duration) -> serde_json::Value {
        self.proc.event("summary", timeout).unwrap_or_else(|| {
            panic!(
                "loadgen did not finish within {timeout:?}\n{}",
                self.proc.logs()
            )
        })
    }
}

/// Field `k` of a loadgen or verify JSON line, as a count.
pub fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// Runs `ringwatch verify --json` on `ledger` against `brokers`; returns (exit 0, report).
pub fn verify(ledger: &std::path::Path, brokers: &[&str]) -> (bool, serde_json::Value) {
    verify_with(ledger, brokers, &[])
}

/// [`verify`] with `extra` arguments (TLS and credential flags).
pub fn verify_with(
    ledger: &std::path::Path,
    brokers: &[&str],
    extra: &[&str],
) -> (bool, serde_json::Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["verify", "--json", "--ledger"]).arg(ledger);
    for b in brokers {
        cmd.args(["--broker", b]);
    }
    cmd.args(extra);
    let out = cmd.output().expect("run ringwatch verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// Verifies `lg`'s ledger against `brokers` after its run ended with `summary`: exit 0, nothing
/// lost, duplicated, wrong or out of order, the ledger holding exactly what loadgen counted as
/// acknowledged, and at least `min_acked` of it. Returns the report.
pub fn assert_nothing_lost(
    lg: &Loadgen,
    summary: &serde_json::Value,
    brokers: &[&str],
    min_acked: u64,
) -> serde_json::Value {
    let (ok, report) = verify(&lg.ledger, brokers);
    // For scripts/soak.sh, which adds these up over its runs.
    eprintln!(
        "soak: acknowledged={} lost={} duplicates={} wrong={} out_of_order={}",
        n(&report, "acknowledged"),
        n(&report, "lost"),
        n(&report, "duplicates"),
        n(&report, "wrong_values"),
        n(&report, "out_of_order")
    );
    assert!(
        ok && report["ok"] == true,
        "verify failed:\n{report:#}\nloadgen summary: {summary}"
    );
    for k in [
        "lost",
        "duplicates",
        "wrong_values",
        "out_of_order",
        "hosts_unreadable",
    ] {
        assert_eq!(n(&report, k), 0, "{k}: {report:#}");
    }
    assert_eq!(
        n(&report, "acknowledged"),
        n(summary, "snapshots_acked"),
        "the ledger holds what loadgen counted: {report}\n{summary}"
    );
    assert!(
        n(&report, "acknowledged") >= min_acked,
        "at least {min_acked} acknowledged: {summary}"
    );
    report
}
