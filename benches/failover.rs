//! Fail-over of a three-broker Raft cluster on loopback, with the default timings (heartbeat
//! 500 ms, election timeout 1–2 s, down after 3 s of silence): FAILOVER_RUNS (10) times, form a
//! cluster, `kill -9` its leader, and time (from the kill) until the two others agree on a new
//! leader, and until that leader has marked the dead one down (its hosts moved). Prints the
//! median and the max of each.
//!
//! `cargo bench --bench failover`; FAILOVER_ARGS adds broker flags to every broker (e.g.
//! `"--raft-heartbeat-ms 100 --raft-election-timeout-ms 300"`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::Proc;

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// (status, body) of an HTTP/1.0 request.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn cluster(admin: &str) -> serde_json::Value {
    let (_, body) = http(admin, "GET", "/api/cluster", "");
    serde_json::from_str(&body).unwrap_or_default()
}

struct Member {
    proc: Proc,
    id: String,
    grpc: String,
    admin: String,
}

fn start(id: &str, dir: &std::path::Path, bootstrap: bool) -> Member {
    let (grpc, admin) = (free_addr(), free_addr());
    let data = dir.join(id);
    let mut args = vec![
        "broker",
        "--listen",
        &grpc,
        "--admin-listen",
        &admin,
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--node-id",
        id,
        "--raft",
    ];
    if bootstrap {
        args.push("--bootstrap");
    }
    let extra = std::env::var("FAILOVER_ARGS").unwrap_or_default();
    args.extend(extra.split_whitespace());
    Member {
        proc: Proc::start(&args),
        id: id.into(),
        grpc: format!("http://{grpc}"),
        admin,
    }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out: {what}");
}

fn one_run(dir: &std::path::Path) -> (Duration, Duration) {
    let mut members = vec![
        start("b0", dir, true),
        start("b1", dir, false),
        start("b2", dir, false),
    ];
    wait("b0 ready", || {
        http(&members[0].admin, "GET", "/ready", "").0 == 200
    });
    for i in 1..3 {
        let body = serde_json::json!({"id": members[i].id, "grpc_addr": members[i].grpc, "admin_addr": members[i].admin}).to_string();
        let (s, b) = http(&members[0].admin, "POST", "/api/cluster/join", &body);
        assert_eq!(s, 200, "{b}");
        let path = format!("/api/cluster/members/{}/promote", members[i].id);
        let (s, b) = http(&members[0].admin, "POST", &path, "");
        assert_eq!(s, 200, "{b}");
    }
    for m in &members {
        wait("ready", || http(&m.admin, "GET", "/ready", "").0 == 200);
    }
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
