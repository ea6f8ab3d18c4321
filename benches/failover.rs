//! Fail-over of a three-broker Raft cluster on loopback, with the default timings (heartbeat
//! 500 ms, election timeout 1–2 s, down after 3 s of silence): FAILOVER_RUNS (10) times, form a
//! cluster, `kill -9` its leader, and time (from the kill) until the two others agree on a new
//! leader, and until that leader has marked the dead one down (its hosts moved). Prints the
//! median and the max of each.
//!
//! `cargo bench --bench failover`; FAILOVER_ARGS adds broker flags to every broker (e.g.
//! `"--raft-heartbeat-ms 100 --raft-election-timeout-ms 300"`).

mod support;

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
}
