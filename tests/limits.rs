//! Listener limits on real processes: clients that connect and stall are closed after the
//! configured timeouts and counted, caps refuse extra connections with a reason, and normal
//! clients are served throughout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the server closes `s` (EOF or reset), for at most `limit`; returns what was
/// read, or None when it was still open at the end.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(limit)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(got),
        }
    }
}

fn connect(addr: &str, send: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    if !send.is_empty() {
        s.write_all(send).expect("write");
    }
    s
}

#[test]
fn stalled_clients_are_closed_after_the_timeouts_and_counted_while_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(
        dir.path(),
        &[
            "--handshake-timeout-secs",
            "1",
            "--http-header-timeout-secs",
            "1",
            "--http-idle-timeout-secs",
            "3",
        ],
    );
    let grpc = broker.addr("grpc");
    let admin = broker.addr("admin");
    // On gRPC: silent, half a preface, and something that is not HTTP/2 at all.
    let mut silent: Vec<TcpStream> = (0..20).map(|_| connect(&grpc, b"")).collect();
    let mut half: Vec<TcpStream> = (0..20).map(|_| connect(&grpc, &PREFACE[..10])).collect();
    let mut http1: Vec<TcpStream> = (0..5)
        .map(|_| connect(&grpc, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    // On the admin port: silent, and headers never finished.
    let mut admin_silent: Vec<TcpStream> = (0..10).map(|_| connect(&admin, b"")).collect();
    let mut admin_partial: Vec<TcpStream> = (0..10)
        .map(|_| connect(&admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"))
        .collect();

    // Meanwhile a real agent's snapshots go in and are read back, and the admin port answers.
    let _agent = agent(&[&broker.grpc_url()], &["--host-id", "served-host"]);
    let url = broker.grpc_url();
    wait_for("the agent's snapshots", Duration::from_secs(30), || {
        (block_on(range_all(&url, "served-host")).len() >= 2).then_some(())
    });
    assert_eq!(http_get(&admin, "/health").0, 200);

    for s in silent
        .iter_mut()
        .chain(half.iter_mut())
        .chain(http1.iter_mut())
        .chain(admin_silent.iter_mut())
        .chain(admin_partial.iter_mut())
    {
        assert!(
            read_until_closed(s, Duration::from_secs(20)).is_some(),
            "a stalled connection was still open 20 s after a 1 s timeout"
        );
    }
    let m = scrape(&admin);
    let closed = |listener: &str, reason: &str| {
        metric(
            &m,
            &format!(
                "ringwatch_broker_connections_closed_by_limit_total{{listener=\"{listener}\",reason=\"{reason}\""
            ),
        )
    };
    assert_eq!(closed("grpc", "handshake_timeout"), 40.0, "{m}");
    assert_eq!(closed("grpc", "bad_preface"), 5.0, "{m}");
    assert!(
        closed("admin", "header_timeout") + closed("admin", "idle_timeout") >= 20.0,
        "{m}"
    );
    // The agent's connection (and perhaps its health probe's) are all that is left open.
    let open = metric(&m, "ringwatch_broker_connections_open{listener=\"grpc\"");
    assert!((1.0..=2.0).contains(&open), "{open} open: {m}");
    // Still serving.
    assert!(block_on(range_all(&url, "served-host")).len() >= 2);
}

#[test]
fn caps_refuse_extra_connections_with_a_reason_and_serve_again_below_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(
        dir.path(),
        &[
            "--max-connections",
            "3",
            "--admin-max-connections",
            "2",
            "--handshake-timeout-secs",
            "60",
            "--http-header-timeout-secs",
            "60",
        ],
    );
    let grpc = broker.addr("grpc");
    let admin = broker.addr("admin");

    // gRPC: three connections that sent the preface hold the three slots.
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&grpc, PREFACE)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = connect(&grpc, PREFACE);
    let answer = read_until_closed(&mut extra, Duration::from_secs(10))
        .expect("the connection over the cap is closed");
    // The server's SETTINGS, then a GOAWAY (type 7) with ENHANCE_YOUR_CALM and the reason.
    assert_eq!(&answer[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(answer[12], 7, "a GOAWAY frame: {answer:?}");
    assert_eq!(&answer[22..26], &[0, 0, 0, 0xb]);
    let reason = String::from_utf8_lossy(&answer[26..]);
    assert!(
        reason.contains("too many connections") && reason.contains('3'),
        "{reason}"
    );
    // A real gRPC client over the cap fails instead of hanging.
    let url = broker.grpc_url();
    let refused = block_on(async {
        let mut q = ringwatch_proto::query_client::QueryClient::connect(url.clone()).await?;
        q.hosts(ringwatch_proto::HostsRequest {}).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    assert!(refused.is_err(), "a client over the cap was served");

    // Admin HTTP: two half-sent requests hold the two slots; the next one gets a 503 saying why.
    let admin_held: Vec<TcpStream> = (0..2).map(|_| connect(&admin, b"GET /")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = http_get(&admin, "/metrics");
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many connections")),
        "{body}"
    );

    // Below the caps again, both serve.
    drop(admin_held);
    drop(held);
    let m = wait_for("admin serving again", Duration::from_secs(10), || {
        let (s, b) = http_get(&admin, "/metrics");
        (s == 200).then_some(b)
    });
    assert!(
        metric(
            &m,
            "ringwatch_broker_connections_closed_by_limit_total{listener=\"grpc\",reason=\"max_connections\""
        ) >= 2.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "ringwatch_broker_connections_closed_by_limit_total{listener=\"admin\",reason=\"max_connections\""
        ) >= 1.0,
        "{m}"
    );
    wait_for("gRPC serving again", Duration::from_secs(10), || {
        block_on(async {
            let mut q = ringwatch_proto::query_client::QueryClient::connect(url.clone())
                .await
                .ok()?;
            q.hosts(ringwatch_proto::HostsRequest {}).await.ok()
        })
        .map(|_| ())
    });
}

#[test]
fn viz_and_the_agent_cap_their_http_listeners_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let viz = viz(&[&url], &["--no-auth", "--max-connections", "1"]);
    let http = viz.addr("http");
    let held = connect(&http, b"GET /");
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = http_get(&http, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many connections"), "{body}");
    drop(held);
    wait_for("viz serving again", Duration::from_secs(10), || {
        (http_get(&http, "/health").0 == 200).then_some(())
    });
    // An upgraded WebSocket keeps its place under the cap for as long as it is open.
    // (The slot of the last request is freed just after its client read the answer: retry.)
    let ws = wait_for("a WebSocket", Duration::from_secs(10), || {
        block_on(tokio_tungstenite::connect_async(format!("ws://{http}/ws")))
            .ok()
            .map(|(ws, _)| ws)
    });
    assert_eq!(http_get(&http, "/health").0, 503);
    drop(ws);
    let m = wait_for("viz serving again", Duration::from_secs(10), || {
        let (s, b) = http_get(&http, "/metrics");
        (s == 200).then_some(b)
    });
    assert!(
        metric(
            &m,
            "ringwatch_viz_connections_closed_by_limit_total{listener=\"http\",reason=\"max_connections\""
        ) >= 1.0,
        "{m}"
    );

    let agent = agent(&[&url], &["--metrics-max-connections", "1"]);
    let metrics = agent.addr("metrics");
    let held = connect(&metrics, b"GET /");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http_get(&metrics, "/metrics").0, 503);
    drop(held);
    wait_for(
        "the agent's /metrics again",
        Duration::from_secs(10),
        || (http_get(&metrics, "/metrics").0 == 200).then_some(()),
    );
}

#[test]
fn refusals_are_all_counted_but_logged_at_a_bounded_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let viz = viz(&[&url], &["--jwt-secret", &"s".repeat(40)]);
    let http = viz.addr("http");
    for _ in 0..200 {
        assert_eq!(http_get(&http, "/api/dashboard/summary").0, 401);
    }
    let m = scrape(&http);
    assert_eq!(
        metric(&m, "ringwatch_viz_auth_unauthorized_total"),
        200.0,
        "{m}"
    );
    let log = std::fs::read_to_string(&viz.log).expect("viz log");
    let lines = log.matches("request refused").count();
    // One line, and one more for each 10 s the 200 requests took.
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for 200 refusals:\n{log}"
    );
    assert!(log.contains("not_logged_since_last"), "{log}");
}

#[test]
fn a_grpc_client_that_stops_answering_keepalive_pings_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(
        dir.path(),
        &["--keepalive-secs", "1", "--keepalive-timeout-secs", "1"],
    );
    // A well-formed HTTP/2 start (preface and empty SETTINGS), then silence: the server's pings
    // go unanswered.
    let mut s = connect(&broker.addr("grpc"), PREFACE);
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).expect("settings");
    let got = read_until_closed(&mut s, Duration::from_secs(15))
        .expect("closed after the keepalive timeout, not held open");
    // It was pinged first: a PING frame (type 6) is among what the server sent.
    let mut i = 0;
    let mut pinged = false;
    while i + 9 <= got.len() {
        let len =
            (usize::from(got[i]) << 16) | (usize::from(got[i + 1]) << 8) | usize::from(got[i + 2]);
        pinged |= got[i + 3] == 6;
        i += 9 + len;
    }
    assert!(pinged, "{got:?}");
    // And a client that answers is still served.
    let url = broker.grpc_url();
    block_on(async {
        let mut q = ringwatch_proto::query_client::QueryClient::connect(url)
            .await
            .expect("connect");
        q.hosts(ringwatch_proto::HostsRequest {})
            .await
            .expect("hosts");
    });
}
