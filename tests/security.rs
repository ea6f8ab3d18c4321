//! TLS and credentials on real processes: every gRPC service (ingest, query, the legacy
//! `monitor.MonitorService`) refuses calls with no credential, a wrong one, an expired one, one
//! not valid yet, and one of the wrong role; a plaintext client on a TLS port (and a TLS client
//! on a plaintext port) is refused and counted; mutual TLS refuses clients without a
//! certificate from the CA; and the whole pipeline (agent, viz, loadgen, verify, query) runs
//! with TLS, mutual TLS and credentials on.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::loadgen::{Loadgen, n, verify_with};
use common::secure::Secure;
use common::*;
use ringwatch_net::client::Connector;
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::monitor::monitor_service_client::MonitorServiceClient;
use ringwatch_proto::monitor::{MetricsData, MetricsRequest};
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{
    AgentMessage, HostsRequest, LatestRequest, RangeRequest, Register, SubscribeRequest,
    agent_message,
};
use tonic::Code;

const CALLS: [&str; 7] = [
    "Ingest.Stream",
    "Query.Range",
    "Query.Latest",
    "Query.Hosts",
    "Query.Subscribe",
    "Monitor.SendMetrics",
    "Monitor.GetMetrics",
];

fn writes(call: &str) -> bool {
    matches!(call, "Ingest.Stream" | "Monitor.SendMetrics")
}

/// Makes `call` on the broker at `url`; the status it ends with (Ok when it was let through).
async fn call(connector: &Connector, url: &str, call: &str) -> Result<(), tonic::Status> {
    let endpoint = connector
        .endpoint(url)
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let ch = connector.channel(channel);
    let now = now_ms();
    match call {
        "Ingest.Stream" => {
            let register = AgentMessage {
                body: Some(agent_message::Body::Register(Register {
                    host_id: "sec-host".into(),
                    interval_ms: 1000,
                    ..Default::default()
                })),
            };
            IngestClient::new(ch)
                .stream(tokio_stream::iter(vec![register]))
                .await
                .map(|_| ())
        }
        "Query.Range" => QueryClient::new(ch)
            .range(RangeRequest {
                host_id: "sec-host".into(),
                start_ms: now - 60_000,
                end_ms: now,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "Query.Latest" => QueryClient::new(ch)
            .latest(LatestRequest::default())
            .await
            .map(|_| ()),
        "Query.Hosts" => QueryClient::new(ch)
            .hosts(HostsRequest {})
            .await
            .map(|_| ()),
        "Query.Subscribe" => QueryClient::new(ch)
            .subscribe(SubscribeRequest::default())
            .await
            .map(|_| ()),
        "Monitor.SendMetrics" => MonitorServiceClient::new(ch)
            .send_metrics(tokio_stream::iter(Vec::<MetricsData>::new()))
            .await
            .map(|_| ()),
        "Monitor.GetMetrics" => MonitorServiceClient::new(ch)
            .get_metrics(MetricsRequest {
                host_id: "sec-host".into(),
                start_time: now / 1000 - 60,
                end_time: now / 1000,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        other => panic!("no call {other}"),
    }
}

/// Asserts `c` with `token` ends with `code` and a message saying `says`.
async fn refused(sec: &Secure, url: &str, c: &str, token: Option<&str>, code: Code, says: &str) {
    match call(&sec.connector(token, false), url, c).await {
        Err(s) if s.code() == code && s.message().contains(says) => {}
        other => panic!("{c} with {token:?}: want {code:?} saying {says:?}, got {other:?}"),
    }
}

/// Passed the credential check: succeeded, or failed for a reason that is not about auth.
fn let_through(r: &Result<(), tonic::Status>) -> bool {
    !matches!(r, Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied | Code::Unavailable))
}

#[test]
fn every_grpc_service_refuses_missing_wrong_expired_early_and_wrong_role_credentials() {
    let sec = Secure::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = sec.broker_args(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = broker(dir.path(), &args);
    let url = format!("https://{}", b.addr("grpc"));
    let now = now_ms() / 1000;
    let ingest = sec.token(&["ingest"]);
    let query = sec.token(&["query"]);
    let peer = sec.token(&["peer"]);
    let both = sec.token(&["ingest", "query"]);
    let claims = |iat: i64, nbf: i64, exp: i64| {
        serde_json::json!({"sub": "t", "roles": ["ingest", "query"], "aud": "ringwatch-broker",
            "iat": iat, "nbf": nbf, "exp": exp})
    };
    let wrong = Secure::crafted(
        "some-other-secret-of-thirty-two-bytes-or-more",
        claims(now, now, now + 3600),
    );
    let expired = Secure::crafted(&sec.secret, claims(now - 7200, now - 7200, now - 3600));
    let early = Secure::crafted(&sec.secret, claims(now, now + 3600, now + 7200));
    // A viz dashboard token signed with the same secret is not a broker credential.
    let viz = Secure::crafted(
        &sec.secret,
        serde_json::json!({"sub": "t", "role": "admin", "iat": now, "exp": now + 3600}),
    );

    block_on(async {
        for c in CALLS {
            refused(
                &sec,
                &url,
                c,
                None,
                Code::Unauthenticated,
                "a credential is required",
            )
            .await;
            refused(
                &sec,
                &url,
                c,
                Some(&wrong),
                Code::Unauthenticated,
                "signature does not match",
            )
            .await;
            refused(
                &sec,
                &url,
                c,
                Some(&expired),
                Code::Unauthenticated,
                "expired",
            )
            .await;
            refused(
                &sec,
                &url,
                c,
                Some(&early),
                Code::Unauthenticated,
                "not valid yet",
            )
            .await;
            refused(
                &sec,
                &url,
                c,
                Some(&viz),
                Code::Unauthenticated,
                "invalid credential",
            )
            .await;
            let (right, other_role) = if writes(c) {
                (&ingest, &query)
            } else {
                (&query, &ingest)
            };
            refused(
                &sec,
                &url,
                c,
                Some(other_role),
                Code::PermissionDenied,
                "needs the",
            )
            .await;
            for good in [right, &peer, &both] {
                let r = call(&sec.connector(Some(good), false), &url, c).await;
                assert!(let_through(&r), "{c} with a good credential: {r:?}");
            }
        }
        // Health checks are open: they say only whether the broker serves.
        let connector = sec.connector(None, false);
        let ch = connector.channel(connector.endpoint(&url).unwrap().connect().await.unwrap());
        let health = tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health without a credential");
        assert_eq!(health.into_inner().status, 1, "SERVING");
    });

    let m = scrape(&b.addr("admin"));
    let per_call = CALLS.len() as f64;
    for (reason, count) in [
        ("missing", per_call),
        ("expired", per_call),
        ("not_yet_valid", per_call),
        ("invalid", 2.0 * per_call),
        ("wrong_role", per_call),
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("ringwatch_broker_grpc_auth_refused_total{{reason=\"{reason}\"}}")
            ),
            count,
            "{reason}\n{m}"
        );
    }
    assert!(
        b.logs().contains("refused by the credential check"),
        "refusals are logged"
    );
}

#[test]
fn plaintext_on_a_tls_port_and_tls_on_a_plaintext_port_are_refused_and_counted() {
    let sec = Secure::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = sec.broker_args(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tls = broker(dir.path(), &args);
    let token = sec.token(&["query"]);

    // A plaintext HTTP/2 client is told why, in a GOAWAY it can read.
    let mut s = std::net::TcpStream::connect(tls.addr("grpc")).expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("preface");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        String::from_utf8_lossy(&got).contains("this broker requires TLS"),
        "{got:?}"
    );
    // And a plaintext gRPC client with a good credential gets nothing.
    let plain = Connector::new(&ringwatch_net::client::BrokerClientConfig {
        token: Some(token.clone().into()),
        ..Default::default()
    })
    .unwrap();
    let r = block_on(call(
        &plain,
        &format!("http://{}", tls.addr("grpc")),
        "Query.Hosts",
    ));
    assert!(r.is_err(), "{r:?}");
    // The raw client, and the gRPC client (which may try more than once); counted when the
    // broker closes the connection, which the client may see first.
    wait_for("both refusals counted", Duration::from_secs(10), || {
        let m = scrape(&tls.addr("admin"));
        (metric(
            &m,
            "ringwatch_broker_connections_closed_by_limit_total{listener=\"grpc\",reason=\"plaintext_on_tls\"}",
        ) >= 2.0)
            .then_some(())
    });

    // A TLS client on a plaintext broker.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let plain_broker = broker(dir2.path(), &[]);
    let r = block_on(call(
        &sec.connector(Some(&token), false),
        &format!("https://{}", plain_broker.addr("grpc")),
        "Query.Hosts",
    ));
    assert!(r.is_err(), "{r:?}");
    // Counted when the broker closes the connection, which the client may see first.
    wait_for("the refusal counted", Duration::from_secs(10), || {
        let m = scrape(&plain_broker.addr("admin"));
        (metric(
            &m,
            "ringwatch_broker_connections_closed_by_limit_total{listener=\"grpc\",reason=\"tls_on_plaintext\"}",
        ) >= 1.0)
            .then_some(())
    });
    assert!(
        plain_broker.logs().contains("gRPC authentication is OFF"),
        "a broker without credentials says so"
    );
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() {
    let sec = Secure::new();
    let stranger = Secure::new(); // another CA
    let dir = tempfile::tempdir().expect("tempdir");
    let args = sec.broker_args(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = broker(dir.path(), &args);
    let url = format!("https://{}", b.addr("grpc"));
    let token = sec.token(&["query"]);
    block_on(async {
        let r = call(&sec.connector(Some(&token), false), &url, "Query.Hosts").await;
        assert!(r.is_err(), "no client certificate: {r:?}");
        // The stranger's client certificate, trusting the broker's CA.
        let c = Connector::new(&ringwatch_net::client::BrokerClientConfig {
            tls_ca: Some(sec.ca.ca.clone()),
            tls_cert: Some(stranger.ca.client_cert.clone()),
            tls_key: Some(stranger.ca.client_key.clone()),
            token: Some(token.clone().into()),
            ..Default::default()
        })
        .unwrap();
        let r = call(&c, &url, "Query.Hosts").await;
        assert!(r.is_err(), "a certificate from another CA: {r:?}");
        let r = call(&sec.connector(Some(&token), true), &url, "Query.Hosts").await;
        assert!(r.is_ok(), "the CA's client certificate: {r:?}");
    });
    let m = scrape(&b.addr("admin"));
    assert!(
        metric(
            &m,
            "ringwatch_broker_connections_closed_by_limit_total{listener=\"grpc\",reason=\"tls_handshake_failed\"}"
        ) >= 2.0,
        "{m}"
    );
}

#[test]
fn the_whole_pipeline_runs_with_mutual_tls_and_credentials() {
    let sec = Secure::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = sec.broker_args(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = broker(dir.path(), &args);
    let url = format!("https://{}", b.addr("grpc"));
    let ingest = sec.token(&["ingest"]);
    let query = sec.token(&["query"]);

    let agent_args = sec.client_args(&ingest);
    let mut a: Vec<&str> = vec!["--host-id", "tls-agent"];
    a.extend(agent_args.iter().map(String::as_str));
    let _agent = agent(&[&url], &a);

    let viz_args = sec.client_args(&query);
    let mut v: Vec<&str> = vec!["--no-auth"];
    v.extend(viz_args.iter().map(String::as_str));
    let viz = viz(&[&url], &v);
    wait_for("viz to show the agent", Duration::from_secs(30), || {
        let (status, body) = http_get(&viz.addr("http"), "/api/dashboard/hosts");
        (status == 200 && body.contains("tls-agent")).then_some(())
    });

    let mut l: Vec<&str> = vec!["--hosts", "20", "--interval", "500ms", "--duration", "3s"];
    let lg_args = sec.client_args(&ingest);
    l.extend(lg_args.iter().map(String::as_str));
    let lg = Loadgen::start(&[&url], &l);
    let summary = lg.finish(Duration::from_secs(60));
    assert!(n(&summary, "snapshots_acked") >= 20 * 4, "{summary}");
    let verify_args = sec.client_args(&query);
    let verify_args: Vec<&str> = verify_args.iter().map(String::as_str).collect();
    let (ok, report) = verify_with(&lg.ledger, &[&url], &verify_args);
    assert!(ok, "{report}");
    assert_eq!(n(&report, "lost"), 0, "{report}");
    assert_eq!(n(&report, "acknowledged"), n(&summary, "snapshots_acked"));
    // verify with the ingest credential may not read.
    let wrong = sec.client_args(&ingest);
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let (ok, report) = verify_with(&lg.ledger, &[&url], &wrong);
    assert!(!ok, "{report}");

    // The CLI reads with the query credential, and says why without one.
    let q = sec.client_args(&query);
    let mut cmd = vec!["query", "hosts", "--broker", &url];
    cmd.extend(q.iter().map(String::as_str));
    let out = std::process::Command::new(BIN).args(&cmd).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("tls-agent"), "{text}");
    let out = std::process::Command::new(BIN)
        .args([
            "query",
            "hosts",
            "--broker",
            &url,
            "--broker-tls-ca",
            sec.ca.ca.to_str().unwrap(),
            "--broker-tls-cert",
            sec.ca.client_cert.to_str().unwrap(),
            "--broker-tls-key",
            sec.ca.client_key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("a credential is required"),
        "{err}"
    );
}
