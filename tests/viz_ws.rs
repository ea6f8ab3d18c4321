//! WebSocket push from viz, against a real broker and agent: a snapshot, then this host's
//! updates within two intervals, filtered by host and metric prefix; and a client that stops
//! reading is dropped without delaying one that reads.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{AgentMessage, Batch, Metric, Register, Snapshot, agent_message};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(http: &str, subscribe: &str) -> Ws {
    let connecting = tokio_tungstenite::connect_async(format!("ws://{http}/ws"));
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("connect in time")
        .expect("connect /ws");
    tokio::time::timeout(
        Duration::from_secs(10),
        ws.send(Message::Text(subscribe.into())),
    )
    .await
    .expect("subscribe in time")
    .expect("subscribe");
    ws
}

/// The next JSON text message (pings are answered by the library).
async fn next(ws: &mut Ws, within: Duration) -> Value {
    loop {
        let m = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

#[test]
fn a_snapshot_then_filtered_updates_within_two_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let _agent = agent(&[&url], &["--host-id", "ws-host"]);
    let _other = agent(&[&url], &["--host-id", "other-host"]);
    let viz = viz(&[&url], &["--no-auth"]);
    let http = viz.addr("http");
    wait_for(
        "both hosts with data on the dashboard",
        Duration::from_secs(30),
        || {
            let (_, body) = http_get(&http, "/api/dashboard/summary");
            serde_json::from_str::<Value>(&body)
                .ok()
                .filter(|s| s["live"] == 2)
                .map(|_| ())
        },
    );
    block_on(async {
        let mut ws = connect(
            &http,
            r#"{"type":"subscribe","hosts":["ws-host"],"metrics":["cpu.","load.*"]}"#,
        )
        .await;
        // The server sends a snapshot on connect (everything) and one for the subscription.
        let started = Instant::now();
        let mut snapshots = 0;
        let snap = loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no snapshot for the subscription"
            );
            let m = next(&mut ws, Duration::from_secs(5)).await;
            if m["type"] == "snapshot" {
                snapshots += 1;
                if snapshots == 2 {
                    break m;
                }
            }
        };
        assert_eq!(snap["hosts"].as_array().map(Vec::len), Some(1), "{snap}");
        let host = &snap["hosts"][0];
        assert_eq!(host["host_id"], "ws-host");
        let names: Vec<&String> = host["metrics"].as_object().unwrap().keys().collect();
        assert!(
            !names.is_empty()
                && names
                    .iter()
                    .all(|n| n.starts_with("cpu.") || n.starts_with("load.")),
            "{names:?}"
        );
        let mut last = host["timestamp_ms"].as_i64().unwrap();
        let mut updates = 0;
        let started = Instant::now();
        while updates < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "too few updates"
            );
            // The agent collects every second: each update comes within two intervals.
            let m = next(&mut ws, Duration::from_secs(2)).await;
            if m["type"] != "update" {
                continue;
            }
            assert_eq!(m["host_id"], "ws-host", "only the subscribed host");
            let ts = m["timestamp_ms"].as_i64().unwrap();
            assert!(ts > last, "no duplicate, in order");
            last = ts;
            assert!(now_ms() - ts < 2000, "fresh: {} ms old", now_ms() - ts);
            let names: Vec<&String> = m["metrics"].as_object().unwrap().keys().collect();
            assert!(
                names
                    .iter()
                    .all(|n| n.starts_with("cpu.") || n.starts_with("load.")),
                "{names:?}"
            );
            assert!(m["metrics"]["cpu.usage"]["unit"] == "percent");
            updates += 1;
        }
        ws.send(Message::Text("not json".into())).await.unwrap();
        let started = Instant::now();
        let err = loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no error for a bad message"
            );
            let m = next(&mut ws, Duration::from_secs(5)).await;
            if m["type"] == "error" {
                break m;
            }
        };
        assert!(
            err["error"].as_str().unwrap().contains("bad message"),
            "{err}"
        );
        // A page from another origin may not open the socket (a visitor's browser would
        // otherwise hand it every host's metrics).
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{http}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", "http://evil.example".parse().unwrap());
        assert_eq!(ws_refusal(req, "a foreign page's WebSocket").await, 403);
        // viz's own page may.
        let mut req = format!("ws://{http}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", format!("http://{http}").parse().unwrap());
        tokio_tungstenite::connect_async(req)
            .await
            .expect("a same-origin WebSocket");
    });
    let m = scrape(&http);
    assert!(
        metric(&m, "ringwatch_viz_ws_updates_sent_total") >= 3.0,
        "{m}"
    );
    assert!(
        metric(&m, "ringwatch_viz_ws_bad_messages_total") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "ringwatch_viz_ws_refused_upgrades_total") >= 1.0,
        "{m}"
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_does_not_delay_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let viz = viz(&[&url], &["--no-auth"]);
    let http = viz.addr("http");
    std::thread::sleep(Duration::from_secs(2)); // viz subscribes to the broker
    block_on(async {
        // A client with a tiny receive buffer that will stop reading.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock.connect(http.parse().unwrap()).await.unwrap();
        let (mut slow, _) = tokio_tungstenite::client_async(format!("ws://{http}/ws"), stream)
            .await
            .expect("slow client");
        slow.send(Message::Text(r#"{"type":"subscribe"}"#.into()))
            .await
            .unwrap();
        let mut fast = connect(&http, r#"{"type":"subscribe"}"#).await;
        // The slow client reads nothing from here on.
        let _ = tokio::time::timeout(Duration::from_secs(5), slow.next()).await;

        // 2000 snapshots of 200 metrics (about 20 MB of updates), as fast as the broker takes them.
        let mut ingest = IngestClient::connect(url.clone()).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut acks = ingest
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let reg = Register {
            host_id: "load-host".into(),
            agent_version: "test".into(),
            interval_ms: 1000,
            ..Default::default()
        };
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Register(reg)),
        })
        .await
        .unwrap();
        let start = now_ms() - 2_000_000;
        let last_ts = start + 1999 * 1000;
        for b in 0..20 {
            let snapshots = (0..100)
                .map(|i| Snapshot {
                    host_id: "load-host".into(),
                    timestamp_ms: start + (b * 100 + i) * 1000,
                    metrics: (0..200)
                        .map(|m| Metric {
                            name: format!("load.metric.{m}"),
                            value: m as f64,
                            unit: 4,
                            window: None,
                        })
                        .collect(),
                })
                .collect();
            tx.send(AgentMessage {
                body: Some(agent_message::Body::Batch(Batch {
                    seq: b as u64,
                    snapshots,
                })),
            })
            .await
            .unwrap();
        }
        for _ in 0..20 {
            acks.message().await.unwrap().unwrap();
        }
        let stored_at = Instant::now();
        // The fast client gets to the newest snapshot promptly, whatever the slow one does.
        loop {
            let m = next(&mut fast, Duration::from_secs(10)).await;
            if m["type"] == "update" && m["timestamp_ms"].as_i64() == Some(last_ts) {
                break;
            }
        }
        let took = stored_at.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "the fast client was held up for {took:?}"
        );
        wait_for_async_metric(&http).await;
        drop(slow);
    });
}

async fn wait_for_async_metric(http: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(http);
        if metric(&m, "ringwatch_viz_ws_dropped_clients_total") >= 1.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the slow client was never dropped:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn repeated_subscribes_are_slowed_to_one_snapshot_per_two_seconds_and_the_last_applies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let _agent = agent(&[&url], &["--host-id", "sub-host"]);
    let viz = viz(&[&url], &["--no-auth"]);
    let http = viz.addr("http");
    wait_for("the host on the dashboard", Duration::from_secs(30), || {
        let (_, body) = http_get(&http, "/api/dashboard/summary");
        serde_json::from_str::<Value>(&body)
            .ok()
            .filter(|s| s["live"] == 1)
            .map(|_| ())
    });
    block_on(async {
        let mut ws = connect(&http, r#"{"type":"subscribe","metrics":["mem."]}"#).await;
        // 30 more at once, the last one for load.* only.
        for i in 0..30 {
            let prefix = if i == 29 { "load." } else { "cpu." };
            let m = format!(r#"{{"type":"subscribe","metrics":["{prefix}"]}}"#);
            ws.send(Message::Text(m.into())).await.expect("send");
        }
        // For 5 s: count whole snapshots; the last must be for the last subscribe.
        let started = Instant::now();
        let mut snapshots = Vec::new();
        while started.elapsed() < Duration::from_secs(5) {
            let left = Duration::from_secs(5).saturating_sub(started.elapsed());
            let Ok(Some(Ok(m))) = tokio::time::timeout(left, ws.next()).await else {
                break;
            };
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "snapshot" {
                    snapshots.push(v);
                }
            }
        }
        // The one on connect, 3 at once, then at most one per 2 s: not 32.
        assert!(
            (4..=7).contains(&snapshots.len()),
            "{} snapshots for 32 subscribes",
            snapshots.len()
        );
        let last = snapshots.last().expect("a snapshot");
        let names: Vec<&String> = last["hosts"][0]["metrics"]
            .as_object()
            .expect("metrics")
            .keys()
            .collect();
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with("load.")),
            "the last subscribe applies: {names:?}"
        );
    });
    let m = scrape(&http);
    assert!(
        metric(&m, "ringwatch_viz_ws_subscribes_deferred_total") >= 20.0,
        "{m}"
    );
}
