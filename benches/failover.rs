//! Fail-over of a three-broker Raft cluster on loopback, with the default timings (heartbeat
//! 500 ms, election timeout 1–2 s, down after 3 s of silence): FAILOVER_RUNS (10) times, form a
//! cluster, `kill -9` its leader, and time (from the kill) until the two others agree on a new
//! leader, and until that leader has marked the dead one down (its hosts moved). Prints the
//! median and the max of each.
//!
//! Then, under load, FAILOVER_LOAD_RUNS (10) times for the leader and for a broker that is
//! not the leader: FAILOVER_LOAD_HOSTS (300) loadgen hosts send one snapshot a second to the
//! three brokers (a host starts on broker `h mod 3` and moves to its owner); after 8 s of steady
//! load, `kill -9` of the broker, and the time until loadgen's acknowledged rate is back to
//! 95 % of the steady rate (every host writing again, the dead broker's included), read from
//! progress lines every 250 ms (so up to 250 ms late).
//!
//! `cargo bench --bench failover`; FAILOVER_ARGS adds broker flags to every broker (e.g.
//! `"--raft-heartbeat-ms 100 --raft-election-timeout-ms 300"`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::raft::{cluster, wait};

fn one_run(dir: &std::path::Path) -> (Duration, Duration) {
    let extra = std::env::var("FAILOVER_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let mut members = support::raft::form(dir, 3, &extra);
    // Settle, so the measurement starts from a steady cluster.
    std::thread::sleep(Duration::from_millis(1500));
    let leader = cluster(&members[0].admin)["leader"]
        .as_str()
        .expect("a leader")
        .to_string();
    let li = members.iter().position(|m| m.id == leader).expect("leader");
    let mut dead = members.remove(li);
    let killed = Instant::now();
    let _ = dead.proc.child.kill();
    let _ = dead.proc.child.wait();
    let mut to_leader = None;
    let mut to_down = None;
    wait("a new leader and the old one down", || {
        let (c0, c1) = (cluster(&members[0].admin), cluster(&members[1].admin));
        let l = c0["leader"].as_str().unwrap_or_default().to_string();
        if to_leader.is_none() && !l.is_empty() && l != leader && c1["leader"] == l.as_str() {
            to_leader = Some(killed.elapsed());
        }
        let down = c0["members"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["id"] == leader.as_str() && m["state"] == "down")
        });
        if to_down.is_none() && down {
            to_down = Some(killed.elapsed());
        }
        to_leader.is_some() && to_down.is_some()
    });
    for mut m in members {
        let _ = m.proc.child.kill();
        let _ = m.proc.child.wait();
    }
    (to_leader.unwrap_or_default(), to_down.unwrap_or_default())
}

/// One run under load: the time from `kill -9` of the leader (or, `!leader`, of another broker)
/// to loadgen's acknowledged rate back at 95 % of its steady rate; `None` if not within 30 s.
fn load_run(dir: &std::path::Path, hosts: u32, leader: bool) -> Option<Duration> {
    let extra = std::env::var("FAILOVER_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let mut members = support::raft::form(dir, 3, &extra);
    std::thread::sleep(Duration::from_millis(1500));
    let mut cmd = Command::new(support::BIN);
    cmd.args(["loadgen", "--json", "--progress-every", "250ms", "--ledger"])
        .arg(dir.join("ledger"))
        .args(["--hosts", &hosts.to_string(), "--interval", "1s"])
        .args(["--duration", "45s", "--backoff-max", "1s"])
        .env("RINGWATCH_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for m in &members {
        cmd.args(["--broker", &m.grpc]);
    }
    let mut lg = cmd.spawn().expect("spawn loadgen");
    let stdout = lg.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, serde_json::Value)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "progress"
                && tx.send((Instant::now(), v)).is_err()
            {
                return;
            }
        }
    });
    let rate = |v: &serde_json::Value| v["acked_per_s"].as_f64().unwrap_or(0.0);
    // Steady: the mean rate over the last 3 s of 8 s of load.
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("progress")
        .0;
    let mut recent = std::collections::VecDeque::new();
    while let Ok((at, v)) = rx.recv_timeout(Duration::from_secs(5)) {
        recent.push_back(rate(&v));
        if recent.len() > 12 {
            recent.pop_front();
        }
        if at.duration_since(first) >= Duration::from_secs(8) {
            break;
        }
    }
    let steady = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    let leader_id = cluster(&members[0].admin)["leader"]
        .as_str()
        .expect("a leader")
        .to_string();
    let victim = members
        .iter()
        .position(|m| (m.id == leader_id) == leader)
        .expect("victim");
    let mut dead = members.remove(victim);
    let killed = Instant::now();
    let _ = dead.proc.child.kill();
    let _ = dead.proc.child.wait();
    let mut resumed = None;
    while let Ok((at, v)) = rx.recv_timeout(Duration::from_secs(5)) {
        let since = at.duration_since(killed);
        // A window wholly after the kill, at 95 % of the steady rate.
        if since >= Duration::from_millis(250) && rate(&v) >= 0.95 * steady {
            resumed = Some(since);
            break;
        }
        if since > Duration::from_secs(30) {
            break;
        }
    }
    let _ = lg.kill();
    let _ = lg.wait();
    for mut m in members {
        let _ = m.proc.child.kill();
        let _ = m.proc.child.wait();
    }
    resumed
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = support::env("FAILOVER_RUNS", 10usize);
    let mut leaders = Vec::new();
    let mut downs = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let (l, d) = one_run(dir.path());
        println!(
            "run {run}: new leader after {:.0} ms, old leader down after {:.0} ms",
            l.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
        leaders.push(l);
        downs.push(d);
    }
    let stat = |mut v: Vec<Duration>| {
        v.sort();
        (
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3,
        )
    };
    let (lm, lx) = stat(leaders);
    let (dm, dx) = stat(downs);
    println!("kill -9 of the leader → new leader: median {lm:.0} ms, max {lx:.0} ms ({runs} runs)");
    println!(
        "kill -9 of the leader → marked down (hosts moved): median {dm:.0} ms, max {dx:.0} ms"
    );

    let load_runs = support::env("FAILOVER_LOAD_RUNS", 10usize);
    let hosts = support::env("FAILOVER_LOAD_HOSTS", 300u32);
    for (leader, what) in [(true, "the leader"), (false, "a broker not leading")] {
        let mut times = Vec::new();
        let mut missed = 0;
        for run in 0..load_runs {
            let dir = tempfile::tempdir().expect("tempdir");
            match load_run(dir.path(), hosts, leader) {
                Some(t) => {
                    println!(
                        "run {run}: kill -9 of {what} under load → ingest resumed after {:.0} ms",
                        t.as_secs_f64() * 1e3
                    );
                    times.push(t);
                }
                None => {
                    println!("run {run}: kill -9 of {what}: ingest not resumed within 30 s");
                    missed += 1;
                }
            }
        }
        if !times.is_empty() {
            let n = times.len();
            let (m, x) = stat(times);
            println!(
                "kill -9 of {what} with {hosts} hosts at 1 s → ingest back at 95 % of its rate: \
                 median {m:.0} ms, max {x:.0} ms ({n} runs; {missed} not within 30 s)"
            );
        }
    }
}
