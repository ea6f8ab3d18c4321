//! The embedded store's blocks, on real broker processes: history beyond the head's budget
//! read back exact, a data directory from the release before blocks converted, a broker killed
//! at each step of a cut, a damaged block, and a full disk. Every loss claim is checked with
//! `ringwatch loadgen` and `ringwatch verify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::loadgen::{Loadgen, assert_nothing_lost, n, verify_with};
use common::*;

/// Copies the files of `from` into `to` (one level of folders).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ringwatch loadgen` sending `hosts` hosts' past `period` at `interval`, 8 metrics each.
fn backfill(url: &str, hosts: u32, interval: &str, period: &str) -> Loadgen {
    let hosts = hosts.to_string();
    Loadgen::start(
        &[url],
        &[
            "--hosts",
            &hosts,
            "--interval",
            interval,
            "--backfill",
            period,
            "--metrics",
            "8",
        ],
    )
}

fn store_metric(b: &Proc, series: &str) -> f64 {
    metric(&scrape(&b.addr("admin")), series)
}

/// 100 hosts × 7 days (at 5 min, 8 metrics: 201,600 snapshots) through a head of 10,000
/// values: history goes to blocks, nothing is evicted, every sample reads back exact, before
/// and after a restart; rollups of the week agree with the raw rows.
#[test]
fn a_week_of_history_far_beyond_the_head_budget_reads_back_exact() {
    let dir = tempfile::tempdir().unwrap();
    // Eight days of retention, so the oldest of the seven days is not already expiring.
    let mut b = broker_fixed(
        dir.path(),
        &[
            "--memory-limit-samples",
            "10000",
            "--retention-hours",
            "192",
        ],
    );
    let url = b.grpc_url();
    let lg = backfill(&url, 100, "5m", "7d");
    let summary = lg.finish(Duration::from_secs(600));
    assert_nothing_lost(&lg, &summary, &[&url], 100 * 2016);
    let m = scrape(&b.addr("admin"));
    assert!(
        metric(&m, "ringwatch_broker_store_blocks") >= 2.0,
        "blocks written"
    );
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_store_evicted_snapshots_total{reason=\"memory_limit\"}"
        ),
        0.0
    );
    assert!(
        metric(&m, "ringwatch_broker_store_samples") <= 12_500.0,
        "the head stays within its budget and a quarter"
    );
    // Capacity in plain numbers: bytes on disk a sample, memory per host.
    let (status, body) = http_get(&b.addr("admin"), "/api/cluster");
    assert_eq!(status, 200);
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cap = &c["capacity"];
    assert_eq!(cap["hosts"], 100, "{cap}");
    let per_sample = cap["disk_bytes_per_sample"].as_f64().unwrap_or(0.0);
    assert!(per_sample > 0.0 && per_sample < 8.0, "compressed: {cap}");
    assert!(
        cap["memory_bytes_per_host"].as_f64().unwrap_or(0.0) > 0.0,
        "{cap}"
    );
    // Rollups over the week (blocks and head), in buckets of an hour and of a day.
    for step in [3_600_000, 86_400_000] {
        let host = "loadgen-00";
        let n = block_on(check_rollups(
            &url,
            host,
            now_ms() - 8 * 86_400_000,
            now_ms(),
            step,
        ));
        assert!(
            n >= 8 * 7 * 86_400_000 / step as usize,
            "{n} buckets of {step} ms"
        );
    }
    // Rows every 5 min are too sparse for stored rollups (they would cost more than the rows):
    // the blocks' sections are rolled up from their rows.
    let sections = |source: &str| {
        store_metric(
            &b,
            &format!("ringwatch_broker_store_block_rollup_sections_total{{source=\"{source}\"}}"),
        )
    };
    assert!(sections("rows") > 0.0);
    assert_eq!(sections("stored"), 0.0);
    b.restart();
    assert_nothing_lost(&lg, &summary, &[&url], 100 * 2016);
}

/// `tests/fixtures/upgrade-wal-only`: a data directory the release before blocks wrote (a log
/// only: 3 hosts × 30 min at 10 s, 8 metrics with window statistics) and loadgen's ledger of
/// it. The first start converts it: blocks hold the rows, the covered log is gone, and verify
/// finds every acknowledged sample exact.
#[test]
fn a_data_directory_from_the_release_before_blocks_is_converted_with_nothing_lost() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-wal-only");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("broker"), dir.path());
    let old_log = dir.path().join("wal-00000000000000000001.log");
    assert!(old_log.exists());
    // Ten years of retention: the fixture's timestamps are fixed.
    let keep = ["--retention-hours", "87600", "--block-window-mins", "1"];
    let mut b = broker_fixed(dir.path(), &keep);
    let url = b.grpc_url();
    let ledger = fixture.join("loadgen.ledger");
    let check = |url: &str| {
        let (ok, report) = verify_with(&ledger, &[url], &["--retention", "3650d"]);
        assert!(ok, "{report:#}");
        assert_eq!(n(&report, "acknowledged"), 540, "{report:#}");
        for k in ["lost", "duplicates", "wrong_values", "out_of_order"] {
            assert_eq!(n(&report, k), 0, "{k}: {report:#}");
        }
    };
    check(&url);
    assert!(store_metric(&b, "ringwatch_broker_store_blocks") >= 1.0);
    assert!(!old_log.exists(), "the log the blocks cover is gone");
    b.restart();
    check(&url);
}

/// Kills the broker (abort, as `kill -9`) at each step of its first cut: after the rows are
/// frozen, before the block's fsync, before its rename, before the folder's fsync, and after
/// the block is in place but before the log is trimmed. Restarted, it loses nothing, stores
/// nothing twice, and leaves no half-written block behind.
#[test]
fn a_broker_killed_at_each_step_of_a_cut_loses_nothing() {
    for point in [
        "cut-after-freeze",
        "block-before-fsync",
        "block-before-rename",
        "block-before-dir-fsync",
        "cut-before-log-drop",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (grpc, admin) = (free_addr(), free_addr());
        let d = dir.path().to_str().unwrap();
        let args = [
            "broker",
            "--listen",
            &grpc,
            "--admin-listen",
            &admin,
            "--data-dir",
            d,
            "--block-window-mins",
            "1",
        ];
        let mut b = Proc::start_env(&args, &[("RINGWATCH_FAILPOINT", point)]);
        let url = b.grpc_url();
        let lg = backfill(&url, 5, "10s", "2h");
        // The first cut comes within a maintenance tick (10 s) of the rows arriving.
        let status = wait_for(
            &format!("the broker to stop at {point}"),
            Duration::from_secs(60),
            || b.child.try_wait().ok().flatten(),
        );
        assert!(!status.success(), "{point}: aborted");
        b.restart_env(&[]);
        let summary = lg.finish(Duration::from_secs(120));
        assert_nothing_lost(&lg, &summary, &[&url], 5 * 720);
        let blocks = dir.path().join("blocks");
        assert!(
            files(&blocks, ".tmp-").is_empty(),
            "{point}: no half-written block left"
        );
        assert!(
            !files(&blocks, "block-").is_empty(),
            "{point}: the cut is done after the restart"
        );
        let m = scrape(&b.addr("admin"));
        assert_eq!(
            metric(&m, "ringwatch_broker_store_corrupt_total{kind=\"block\"}"),
            0.0
        );
        assert!(b.terminate(), "{point}: clean stop");
    }
}

/// A byte flipped in a block: the host's rows in that section are never served (verify finds
/// them missing, never wrong), the damage is counted and logged, and the other hosts are whole.
#[test]
fn a_damaged_block_is_detected_reported_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = broker_fixed(dir.path(), &["--block-window-mins", "1"]);
    let url = b.grpc_url();
    let lg = backfill(&url, 4, "10s", "1h");
    let summary = lg.finish(Duration::from_secs(120));
    assert_nothing_lost(&lg, &summary, &[&url], 4 * 360);
    let blocks = dir.path().join("blocks");
    // Every row in blocks and the log that held them dropped (the newest rows are cut once
    // the minute after them has passed), so the log cannot mend the damage.
    wait_for(
        "the head cut whole to blocks",
        Duration::from_secs(120),
        || {
            let m = scrape(&b.addr("admin"));
            (metric(&m, "ringwatch_broker_store_samples") == 0.0
                && metric(&m, "ringwatch_broker_wal_segments_covered_total") >= 1.0)
                .then_some(())
        },
    );
    assert!(b.terminate());
    // Flip a byte in the middle of the first block's data (inside some host's section).
    let file = files(&blocks, "block-").into_iter().min().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 4;
    bytes[at] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    b.restart();
    let (ok, report) = verify_with(&lg.ledger, &[&url], &[]);
    assert!(!ok, "the damaged rows are missing: {report:#}");
    assert!(n(&report, "lost") > 0, "{report:#}");
    assert!(
        n(&report, "lost") <= 360,
        "one host's section at most: {report:#}"
    );
    assert_eq!(
        n(&report, "wrong_values"),
        0,
        "never served as data: {report:#}"
    );
    assert_eq!(n(&report, "duplicates"), 0, "{report:#}");
    assert_eq!(
        store_metric(&b, "ringwatch_broker_store_corrupt_total{kind=\"section\"}"),
        1.0
    );
    assert!(b.logs().contains("corrupt block section skipped"), "logged");
}

/// A mounted, size-limited tmpfs.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = privileged("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a size-limited tmpfs and needs root (or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = privileged("umount").arg(self.dir.path()).status();
    }
}

/// `cmd` as root: directly when the tests run as root, else through `sudo -n` (as the test
/// script installs packages).
fn privileged(cmd: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        Command::new(cmd)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", cmd]);
        c
    }
}

/// Fills the disk under `dir` up to `leave` bytes free; returns the filler file.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    loop {
        let st = rustix::fs::statvfs(dir).unwrap();
        let free = st.f_bavail * st.f_frsize;
        if free <= leave + (1 << 20) {
            break;
        }
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    filler
}

/// The data directory's disk below its reserve: ingest is refused with a reason and nothing is
/// acknowledged; freed, it resumes, and verify finds nothing lost.
#[test]
fn a_full_disk_refuses_ingest_and_resumes_when_space_is_freed() {
    let fs = Tmpfs::mount(64);
    let data = fs.path().join("broker");
    let mut b = broker_fixed(&data, &["--disk-reserve-mib", "16"]);
    let url = b.grpc_url();
    let filler = fill(fs.path(), 8 << 20);
    let lg = backfill(&url, 3, "10s", "1h");
    lg.assert_no_acks(Duration::from_secs(3), Duration::from_secs(3));
    assert!(store_metric(&b, "ringwatch_broker_store_refused_disk_full_total") > 0.0);
    assert!(b.logs().contains("disk below its reserve"), "logged");
    std::fs::remove_file(filler).unwrap();
    let summary = lg.finish(Duration::from_secs(120));
    assert_nothing_lost(&lg, &summary, &[&url], 3 * 360);
    assert!(b.logs().contains("taking writes again"), "logged");
    assert!(b.terminate());
}
