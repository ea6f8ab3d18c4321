//! QUIC push from viz, against a real broker and agent: `ringwatch watch --quic` verifies the
//! certificate viz generated and prints a snapshot then this host's updates within two
//! intervals, filtered by prefix; a missing or bad token is refused with 401; and a QUIC
//! client and a WebSocket client see the same updates.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use ringwatch_viz::quic::{Client, ClientTrust};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "quic-test-secret-0123456789abcdefghijkl";

fn stack(dir: &std::path::Path) -> (Proc, Proc, Proc, std::path::PathBuf) {
    let broker = broker(dir, &[]);
    let url = broker.grpc_url();
    let agent = agent(&[&url], &["--host-id", "quic-host"]);
    let cert = dir.join("viz-quic.pem");
    let cert_out = cert.to_str().unwrap();
    let viz = viz(
        &[&url],
        &["--quic-cert-out", cert_out, "--jwt-secret", SECRET],
    );
    (broker, agent, viz, cert)
}

/// Runs `ringwatch watch` to completion (bounded); (success, stdout, stderr).
fn watch(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("watch")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ringwatch watch");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringwatch watch {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn watch_prints_a_snapshot_then_updates_and_bad_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, _agent, viz, cert) = stack(dir.path());
    let quic = viz.addr("quic");
    let http = viz.addr("http");
    wait_for("the host on the dashboard", Duration::from_secs(30), || {
        let viewer = format!("Bearer {}", token(SECRET, "viewer"));
        let (_, b) = http_get_with(
            &http,
            "/api/dashboard/summary",
            &[("Authorization", &viewer)],
        );
        b.contains("\"live\":1").then_some(())
    });
    let viewer = token(SECRET, "viewer");
    // The certificate viz generated, verified (not --insecure).
    let (ok, out, err) = watch(&[
        "--quic",
        &quic,
        "--token",
        &viewer,
        "--ca",
        cert.to_str().unwrap(),
        "--json",
        "--count",
        "3",
        "--metric",
        "cpu.",
    ]);
    assert!(ok, "watch failed: {err}");
    let msgs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(msgs[0]["type"], "snapshot", "{out}");
    assert_eq!(msgs[0]["hosts"][0]["host_id"], "quic-host");
    let updates: Vec<&Value> = msgs.iter().filter(|m| m["type"] == "update").collect();
    assert_eq!(updates.len(), 3, "{out}");
    let mut last = msgs[0]["hosts"][0]["timestamp_ms"].as_i64().unwrap();
    for u in &updates {
        assert_eq!(u["host_id"], "quic-host");
        let ts = u["timestamp_ms"].as_i64().unwrap();
        assert!(ts > last, "no duplicate, in order: {out}");
        // One-second interval: the next update is at most two intervals on.
        assert!(ts - last <= 2_000 + 500, "a gap: {last} → {ts}");
        last = ts;
        let names: Vec<&String> = u["metrics"].as_object().unwrap().keys().collect();
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with("cpu.")),
            "{u}"
        );
    }

    // The human form names the host and shows CPU as a percentage.
    let (ok, out, err) = watch(&[
        "--quic",
        &quic,
        "--token",
        &viewer,
        "--insecure",
        "--count",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("quic-host") && out.contains("cpu.usage") && out.contains('%'),
        "{out}"
    );

    // Refusals: no token, a forged token, a token signed with another secret.
    let other = token("a-different-secret-0123456789abcdefghij", "admin");
    for (what, args) in [
        ("no token", vec!["--quic", &quic, "--insecure"]),
        (
            "garbage",
            vec!["--quic", &quic, "--insecure", "--token", "forged"],
        ),
        (
            "another secret",
            vec!["--quic", &quic, "--insecure", "--token", &other],
        ),
    ] {
        let (ok, out, err) = watch(&args);
        assert!(!ok, "{what}: accepted: {out}");
        assert!(err.contains("refused: 401"), "{what}: {err}");
    }
    // Without --ca or --insecure the client will not guess.
    let (ok, _, err) = watch(&["--quic", &quic, "--token", &viewer]);
    assert!(!ok && err.contains("--ca"), "{err}");

    let m = scrape(&http);
    assert!(
        metric(&m, "ringwatch_viz_quic_refused_connections_total") >= 3.0,
        "{m}"
    );
    assert!(
        metric(&m, "ringwatch_viz_quic_updates_sent_total") >= 4.0,
        "{m}"
    );
    // Every client, served or refused, first proved its address with a Retry.
    assert!(
        metric(&m, "ringwatch_viz_quic_retries_sent_total")
            > metric(&m, "ringwatch_viz_quic_refused_connections_total"),
        "{m}"
    );
}

#[test]
fn quic_and_websocket_clients_see_the_same_updates() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, _agent, viz, cert) = stack(dir.path());
    let quic: std::net::SocketAddr = viz.addr("quic").parse().unwrap();
    let http = viz.addr("http");
    let viewer = token(SECRET, "viewer");
    block_on(async {
        let trust = ClientTrust {
            ca: Some(cert.clone()),
            insecure: false,
        };
        let hosts = vec!["quic-host".to_string()];
        let metrics = vec!["cpu.".to_string(), "mem.".to_string()];
        let mut q = Client::subscribe(quic, "127.0.0.1", &trust, Some(&viewer), &hosts, &metrics)
            .await
            .expect("QUIC subscribe");
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{http}/ws?token={viewer}"))
                .await
                .expect("WebSocket");
        let sub = r#"{"type":"subscribe","hosts":["quic-host"],"metrics":["cpu.","mem."]}"#;
        ws.send(Message::Text(sub.into())).await.unwrap();
        // (timestamp, metrics) of every update after each client's snapshot.
        let mut from_quic: Vec<(i64, Value)> = Vec::new();
        let mut from_ws: Vec<(i64, Value)> = Vec::new();
        let (mut quic_start, mut ws_start) = (0, 0);
        let within = Duration::from_secs(10);
        while from_quic.len() < 5 {
            let v = tokio::time::timeout(within, q.next())
                .await
                .expect("QUIC in time")
                .expect("open")
                .expect("ok");
            match v["type"].as_str() {
                Some("snapshot") => {
                    quic_start = v["hosts"][0]["timestamp_ms"].as_i64().unwrap_or(0)
                }
                Some("update") => {
                    from_quic.push((v["timestamp_ms"].as_i64().unwrap(), v["metrics"].clone()))
                }
                other => panic!("QUIC: {other:?} {v}"),
            }
        }
        let mut ws_snapshots = 0;
        while from_ws.last().is_none_or(|(t, _)| *t < from_quic[4].0) {
            let m = tokio::time::timeout(within, ws.next())
                .await
                .expect("WS in time")
                .expect("open")
                .expect("ok");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            match v["type"].as_str() {
                // The first snapshot is of everything; the second answers the subscribe.
                Some("snapshot") => {
                    ws_snapshots += 1;
                    from_ws.clear();
                    ws_start = v["hosts"][0]["timestamp_ms"].as_i64().unwrap_or(0);
                }
                Some("update") if ws_snapshots == 2 => {
                    from_ws.push((v["timestamp_ms"].as_i64().unwrap(), v["metrics"].clone()))
                }
                Some("update") => {}
                other => panic!("WS: {other:?} {v}"),
            }
        }
        let from = quic_start.max(ws_start);
        let to = from_quic[4].0;
        let pick = |v: &[(i64, Value)]| -> Vec<(i64, Value)> {
            v.iter()
                .filter(|(t, _)| *t > from && *t <= to)
                .cloned()
                .collect()
        };
        let (a, b) = (pick(&from_quic), pick(&from_ws));
        assert!(a.len() >= 2, "too few updates in common: {a:?}");
        assert_eq!(a, b, "QUIC and WebSocket disagree");
    });
}

#[test]
fn a_half_closed_client_keeps_its_updates_and_a_session_ends_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, _agent, viz, cert) = stack(dir.path());
    let quic: std::net::SocketAddr = viz.addr("quic").parse().unwrap();
    let trust = ClientTrust {
        ca: Some(cert.clone()),
        insecure: false,
    };
    let hosts = vec!["quic-host".to_string()];
    block_on(async {
        // Subscribe, then close the sending side, as a request-style client does.
        let viewer = token(SECRET, "viewer");
        let mut q = Client::subscribe(quic, "127.0.0.1", &trust, Some(&viewer), &hosts, &[])
            .await
            .expect("subscribe");
        q.done_subscribing();
        let mut updates = 0;
        while updates < 3 {
            let v = tokio::time::timeout(Duration::from_secs(10), q.next())
                .await
                .expect("a message in time")
                .expect("still open after the half-close")
                .expect("ok");
            if v["type"] == "update" {
                updates += 1;
            }
        }

        // A token that expires in 3 s: updates until then, then a 401 and the end.
        let out = Command::new(BIN)
            .args([
                "token",
                "--role",
                "viewer",
                "--jwt-secret",
                SECRET,
                "--ttl",
                "3s",
            ])
            .output()
            .expect("ringwatch token");
        let short = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut q = Client::subscribe(quic, "127.0.0.1", &trust, Some(&short), &hosts, &[])
            .await
            .expect("subscribe with a short token");
        let started = std::time::Instant::now();
        let mut got_update = false;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), q.next()).await {
                Ok(Some(Ok(v))) => got_update |= v["type"] == "update",
                Ok(Some(Err(e))) => break e.to_string(),
                Ok(None) => panic!("closed without saying why"),
                Err(_) => panic!(
                    "still open 10 s after a message, {:?} in",
                    started.elapsed()
                ),
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the session outlived its token"
            );
        };
        assert!(got_update, "updates before the token expired");
        assert!(end.contains("401") && end.contains("expired"), "{end}");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "ended too early: {end}"
        );
    });
}
