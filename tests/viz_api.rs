//! viz against real brokers and agents: every API endpoint (good answers, 400 with a reason,
//! 404), live push into the in-memory dashboard, an honest stale marker while the broker is
//! down, no gap and no duplicate after it returns, and fail-over to a second broker.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// viz without auth, pulling every second while a broker does not stream.
fn open_viz(brokers: &[&str]) -> Proc {
    viz(brokers, &["--pull-secs", "1", "--no-auth"])
}

fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    let v =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, v)
}

fn host_row(addr: &str, host: &str) -> Option<Value> {
    let (_, hosts) = get_json(addr, "/api/dashboard/hosts");
    hosts
        .as_array()?
        .iter()
        .find(|h| h["host_id"] == host)
        .cloned()
}

#[test]
fn every_endpoint_answers_or_refuses_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let _agent = agent(&[&url], &["--host-id", "api-host", "--zone", "z9"]);
    let viz = open_viz(&[&url]);
    let http = viz.addr("http");
    wait_for(
        "the host on the dashboard, by live push",
        Duration::from_secs(30),
        || {
            let (_, s) = get_json(&http, "/api/dashboard/summary");
            (s["hosts"] == 1 && s["live"] == 1 && s["live_push"] == true).then_some(())
        },
    );
    let row = wait_for("3 points of history", Duration::from_secs(30), || {
        host_row(&http, "api-host")
            .filter(|r| r["spark_ts"].as_array().is_some_and(|a| a.len() >= 3))
    });
    assert!(
        row["cpu"]
            .as_f64()
            .is_some_and(|c| (0.0..=100.0).contains(&c)),
        "{row}"
    );
    assert_eq!(row["state"], "live");
    assert_eq!(row["labels"]["zone"], "z9");

    let (s, all) = get_json(&http, "/api/dashboard");
    assert_eq!(s, 200);
    assert_eq!(all["topk"]["cpu.usage"][0]["host_id"], "api-host");
    assert_eq!(all["cluster"]["healthy_brokers"], 1);
    let (s, top) = get_json(&http, "/api/dashboard/topk?metric=mem.used_percent&k=1");
    assert_eq!(s, 200);
    assert_eq!(top["entries"].as_array().unwrap().len(), 1);
    assert_eq!(top["entries"][0]["unit"], "percent");

    let (s, m) = get_json(
        &http,
        "/api/metrics?host_id=api-host&metrics=cpu.usage,mem.*",
    );
    assert_eq!(s, 200, "{m}");
    let n = m["timestamps"].as_array().unwrap().len();
    assert!(n >= 3);
    let names: Vec<&str> = m["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"cpu.usage") && names.contains(&"mem.total"),
        "{names:?}"
    );
    assert!(
        m["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["values"].as_array().unwrap().len() == n)
    );

    // A step of whole minutes reads the broker's rollups: over the same range, buckets of two
    // hours (at multiples of two hours: one, or two if the range crosses one) hold every row,
    // with the mean, the lowest and the highest raw value.
    let (from, to) = (
        m["start_time"].as_str().unwrap(),
        m["end_time"].as_str().unwrap(),
    );
    let (s, avg) = get_json(
        &http,
        &format!(
            "/api/metrics?host_id=api-host&metrics=cpu.usage&step=2h&start_time={from}&end_time={to}"
        ),
    );
    assert_eq!(s, 200, "{avg}");
    assert_eq!(avg["step_ms"], 7_200_000);
    let raw_cpu: Vec<f64> = m["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "cpu.usage")
        .unwrap()["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let rows: u64 = avg["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .sum();
    assert_eq!(rows, n as u64, "{avg}");
    let buckets = avg["timestamps"].as_array().unwrap();
    assert!((1..=2).contains(&buckets.len()), "{avg}");
    assert!(buckets.iter().all(|t| t.as_i64().unwrap() % 7_200_000 == 0));
    let column = |k: &str| -> Vec<f64> {
        avg["series"][0][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let weights: Vec<f64> = avg["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    let mean = column("values")
        .iter()
        .zip(&weights)
        .map(|(v, w)| v * w)
        .sum::<f64>()
        / weights.iter().sum::<f64>();
    let expected = raw_cpu.iter().sum::<f64>() / raw_cpu.len() as f64;
    assert!((mean - expected).abs() < 1e-6, "{mean} vs {expected}");
    let lowest = column("min").into_iter().fold(f64::INFINITY, f64::min);
    let highest = column("max").into_iter().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(
        lowest,
        raw_cpu.iter().copied().fold(f64::INFINITY, f64::min)
    );
    assert_eq!(
        highest,
        raw_cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    // A step that is not whole minutes is averaged by viz from the raw points, aligned to the
    // range's start: one bucket.
    let (s, raw_avg) = get_json(
        &http,
        &format!(
            "/api/metrics?host_id=api-host&metrics=cpu.usage&step=7199s&start_time={from}&end_time={to}"
        ),
    );
    assert_eq!(s, 200, "{raw_avg}");
    assert_eq!(
        raw_avg["timestamps"].as_array().unwrap().len(),
        1,
        "{raw_avg}"
    );
    assert!(raw_avg["series"][0].get("min").is_none(), "{raw_avg}");
    for bad in ["0s", "abc", "1000000h"] {
        let (s, e) = get_json(&http, &format!("/api/metrics?host_id=api-host&step={bad}"));
        assert_eq!(s, 400, "step={bad}: {e}");
    }

    let (s, d) = get_json(&http, "/api/metrics/host/api-host");
    assert_eq!(s, 200);
    assert_eq!(d["metrics"]["cpu.usage"]["unit"], "percent");
    let (s, agg) = get_json(
        &http,
        "/api/metrics/aggregate?host_id=api-host&metric=cpu.usage&step=1h",
    );
    assert_eq!(s, 200, "{agg}");
    let b = &agg["buckets"][0];
    assert!(
        b["count"].as_u64().unwrap() >= 3
            && b["min"].as_f64() <= b["p50"].as_f64()
            && b["p50"].as_f64() <= b["max"].as_f64(),
        "{agg}"
    );
    let (s, t) = get_json(
        &http,
        "/api/analysis/trend?host_id=api-host&metric=mem.total",
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["direction"], "flat", "memory size does not change: {t}");
    let (s, t) = get_json(&http, "/api/analysis/topk?metric=cpu.usage&k=5&window=10m");
    assert_eq!(s, 200);
    assert_eq!(t["entries"][0]["host_id"], "api-host");

    for (path, status, words) in [
        ("/api/metrics", 400, "host_id"),
        ("/api/metrics?host_id=a%20b", 400, "host_id"),
        (
            "/api/metrics?host_id=api-host&start_time=yesterday",
            400,
            "RFC 3339",
        ),
        (
            "/api/metrics?host_id=api-host&start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z",
            400,
            "after",
        ),
        (
            "/api/metrics?host_id=api-host&start_time=2020-01-01T00:00:00Z&end_time=2026-01-01T00:00:00Z",
            400,
            "maximum",
        ),
        (
            "/api/metrics?host_id=api-host&metrics=bad%20name",
            400,
            "metric name",
        ),
        ("/api/metrics?host_id=nobody", 404, "unknown host"),
        ("/api/metrics/host/nobody", 404, "unknown host"),
        // Not UTF-8, or not a host id: a plain reason, in JSON like every other error.
        ("/api/metrics/host/%ff", 400, "host id in the path"),
        ("/api/metrics/host/a%20b", 400, "host id in the path"),
        (
            "/api/metrics/aggregate?host_id=api-host&metric=cpu.usage&step=0s",
            400,
            "step",
        ),
        (
            "/api/metrics/aggregate?host_id=api-host&metric=cpu.usage&step=100000000h",
            400,
            "longest range",
        ),
        ("/api/metrics/aggregate?host_id=api-host", 400, "metric"),
        (
            "/api/analysis/trend?host_id=api-host&metric=no.such.metric",
            404,
            "fewer than 2 points",
        ),
        ("/api/analysis/topk?k=0", 400, "k"),
        ("/api/analysis/topk?window=forever", 400, "duration"),
        ("/api/nothing/here", 404, "no such endpoint"),
    ] {
        let (s, e) = get_json(&http, path);
        assert_eq!(s, status, "{path}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|r| r.contains(words)),
            "{path}: {e} should mention {words}"
        );
    }
    let (s, _) = http_get(&http, "/health");
    assert_eq!(s, 200);
    let metrics = scrape(&http);
    assert_eq!(
        metric(&metrics, "ringwatch_viz_live_push"),
        1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "ringwatch_viz_snapshots_pushed_total") >= 1.0);
}

#[test]
fn a_killed_broker_shows_stale_then_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut b1 = broker(dir.path(), &[]);
    let (grpc, admin) = (b1.addr("grpc"), b1.addr("admin"));
    let url = b1.grpc_url();
    let _agent = agent(&[&url], &["--host-id", "outage-host"]);
    let viz = open_viz(&[&url]);
    let http = viz.addr("http");
    wait_for("live", Duration::from_secs(30), || {
        host_row(&http, "outage-host").filter(|r| r["state"] == "live")
    });
    b1.kill9();
    wait_for(
        "the outage to show: live push off, the host stale",
        Duration::from_secs(30),
        || {
            let (_, s) = get_json(&http, "/api/dashboard/summary");
            let row = host_row(&http, "outage-host")?;
            (s["live_push"] == false && row["state"] == "stale").then_some(())
        },
    );
    let b2 = broker_on(&grpc, &admin, dir.path(), &[]);
    let row = wait_for(
        "live again, with the buffered data",
        Duration::from_secs(60),
        || {
            let (_, s) = get_json(&http, "/api/dashboard/summary");
            let row = host_row(&http, "outage-host")?;
            (s["live_push"] == true
                && row["state"] == "live"
                && row["spark_ts"].as_array()?.len() >= 8)
                .then_some(row)
        },
    );
    // What viz shows is exactly what the broker stored over the same span.
    let shown: Vec<i64> = row["spark_ts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert!(
        shown.windows(2).all(|w| w[0] < w[1]),
        "no duplicate, in order: {shown:?}"
    );
    let stored: Vec<i64> = block_on(range_all(&b2.grpc_url(), "outage-host"))
        .iter()
        .map(|s| s.timestamp_ms)
        .filter(|t| *t >= shown[0] && *t <= *shown.last().unwrap())
        .collect();
    assert_eq!(
        shown, stored,
        "no gap: every stored snapshot in the span is shown"
    );
}

#[test]
fn viz_fails_over_to_a_second_broker() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut b1 = broker(d1.path(), &[]);
    let b2 = broker(d2.path(), &[]);
    let (u1, u2) = (b1.grpc_url(), b2.grpc_url());
    let _agent = agent(&[&u1, &u2], &["--host-id", "failover-host"]);
    let viz = open_viz(&[&u1, &u2]);
    let http = viz.addr("http");
    wait_for("live", Duration::from_secs(30), || {
        host_row(&http, "failover-host").filter(|r| r["state"] == "live")
    });
    let (_, before) = get_json(&http, "/api/dashboard/cluster");
    assert_eq!(before["healthy_brokers"], 2);
    b1.kill9();
    let killed_at = now_ms();
    // The agent moves to the second broker; viz, subscribed to both, shows what it stores: data
    // collected after the kill reaches the dashboard through the second broker.
    wait_for(
        "fresh data through the second broker",
        Duration::from_secs(60),
        || {
            let (_, s) = get_json(&http, "/api/dashboard/summary");
            let row = host_row(&http, "failover-host")?;
            let fresh = row["last_seen_ms"].as_i64()? > killed_at + 1000;
            (s["sources"] == serde_json::json!([u2.as_str()]) && row["state"] == "live" && fresh)
                .then_some(())
        },
    );
    assert!(
        !block_on(range_all(&u2, "failover-host")).is_empty(),
        "the data went through the second broker"
    );
    let (_, after) = get_json(&http, "/api/dashboard/cluster");
    assert_eq!(after["healthy_brokers"], 1, "{after}");
}

#[test]
fn tokens_guard_the_api_and_websocket_by_role() {
    let secret = "a-test-secret-that-is-long-enough-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let _agent = agent(&[&url], &["--host-id", "auth-host"]);
    let viz = viz(&[&url], &["--jwt-secret", secret]);
    let http = viz.addr("http");
    let viewer = format!("Bearer {}", token(secret, "viewer"));
    let admin = format!("Bearer {}", token(secret, "admin"));
    let stranger = format!(
        "Bearer {}",
        token("another-secret-entirely-0123456789abcdef", "admin")
    );
    let get = |path: &str, auth: Option<&str>| {
        let (status, body) = match auth {
            Some(a) => http_get_with(&http, path, &[("Authorization", a)]),
            None => http_get(&http, path),
        };
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    // Public: health, metrics, whether auth is on, the UI.
    assert_eq!(get("/health", None).0, 200);
    assert_eq!(get("/api/auth", None).1["required"], true);
    assert_eq!(http_get(&http, "/").0, 200);
    wait_for(
        "3 points of the host's data",
        Duration::from_secs(30),
        || {
            (get(
                "/api/analysis/trend?host_id=auth-host&metric=cpu.usage",
                Some(&viewer),
            )
            .0 == 200)
                .then_some(())
        },
    );
    let guarded = [
        "/api/dashboard",
        "/api/dashboard/summary",
        "/api/dashboard/hosts",
        "/api/dashboard/topk?metric=cpu.usage",
        "/api/dashboard/cluster",
        "/api/metrics?host_id=auth-host",
        "/api/metrics/host/auth-host",
        "/api/metrics/aggregate?host_id=auth-host&metric=cpu.usage&step=1m",
        "/api/analysis/trend?host_id=auth-host&metric=cpu.usage",
        "/api/analysis/topk?metric=cpu.usage",
        "/api/auth/whoami",
        "/api/admin/config",
    ];
    for path in guarded {
        let (s, b) = get(path, None);
        assert_eq!(s, 401, "{path} without a token: {b}");
        assert!(
            b["error"].as_str().unwrap().contains("token is required"),
            "{b}"
        );
        let (s, b) = get(path, Some("Bearer not.a.jwt"));
        assert_eq!(s, 401, "{path} with garbage: {b}");
        assert!(
            b["error"].as_str().unwrap().contains("invalid token"),
            "{b}"
        );
        assert_eq!(get(path, Some(&stranger)).0, 401, "{path}, another secret");
        assert_eq!(
            get(path, Some("Basic dXNlcjpwdw==")).0,
            401,
            "{path}, basic auth"
        );
        let (s, b) = get(path, Some(&viewer));
        if path.starts_with("/api/admin") {
            assert_eq!(s, 403, "{path} as viewer: {b}");
            assert!(b["error"].as_str().unwrap().contains("needs admin"), "{b}");
        } else {
            assert_eq!(s, 200, "{path} as viewer: {b}");
        }
        assert_eq!(get(path, Some(&admin)).0, 200, "{path} as admin");
    }
    let (_, me) = get("/api/auth/whoami", Some(&viewer));
    assert_eq!(
        (me["subject"].as_str(), me["role"].as_str()),
        (Some("tester"), Some("viewer"))
    );
    let (_, cfg) = get("/api/admin/config", Some(&admin));
    assert_eq!(
        cfg["auth"]["jwt_secret"], "<redacted>",
        "the secret never leaves viz: {cfg}"
    );

    // The WebSocket: refused without a good token, served with one in the query.
    block_on(async {
        let ws = format!("ws://{http}/ws");
        assert_eq!(
            ws_refusal(ws.as_str(), "a WebSocket without a token").await,
            401
        );
        let bad = format!("{ws}?token=forged");
        assert_eq!(
            ws_refusal(bad.as_str(), "a WebSocket with a forged token").await,
            401
        );
        let good = format!("{ws}?token={}", viewer.trim_start_matches("Bearer "));
        let (mut c, _) = tokio_tungstenite::connect_async(good.as_str())
            .await
            .expect("connect with a token");
        use futures_util::StreamExt;
        let first = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a snapshot in time")
            .expect("a message")
            .expect("a good frame");
        let v: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
        assert_eq!(v["type"], "snapshot");
        // As the web UI does it: the token in the subprotocol list, not the URL.
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let offer = |token: &str| {
            let mut req = ws.as_str().into_client_request().unwrap();
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                format!("ringwatch, ringwatch.bearer.{token}")
                    .parse()
                    .unwrap(),
            );
            req
        };
        let (mut c, resp) =
            tokio_tungstenite::connect_async(offer(viewer.trim_start_matches("Bearer ")))
                .await
                .expect("connect with the token as a subprotocol");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("ringwatch"),
            "viz answers with its protocol, never echoing the token"
        );
        let first = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a snapshot in time")
            .expect("a message")
            .expect("a good frame");
        assert!(first.to_text().unwrap().contains("snapshot"));
        assert_eq!(
            ws_refusal(offer("forged"), "a forged subprotocol token").await,
            401
        );
    });
    let m = scrape(&http);
    assert!(
        metric(&m, "ringwatch_viz_auth_unauthorized_total") >= 50.0,
        "{m}"
    );
    assert!(
        metric(&m, "ringwatch_viz_auth_forbidden_total") >= 1.0,
        "{m}"
    );
}

/// `path` with its `{…}` parameters and required query parameters filled in from the
/// operation's parameters: host ids with `host`, metrics with cpu.usage.
fn example_url(path: &str, op: &Value, host: &str) -> String {
    let mut url = path.to_string();
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap();
        let value = match name {
            "id" | "host_id" => host,
            "metric" => "cpu.usage",
            other => {
                assert_ne!(
                    p["required"], true,
                    "{path}: no example value for the required parameter {other}"
                );
                continue;
            }
        };
        match p["in"].as_str() {
            Some("path") => url = url.replace(&format!("{{{name}}}"), value),
            Some("query") if p["required"] == true => query.push(format!("{name}={value}")),
            _ => {}
        }
    }
    assert!(!url.contains('{'), "{path}: a path parameter left unfilled");
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    url
}

/// The component schema `r` points to (`#/components/schemas/Name`), or `r` itself.
fn resolve<'a>(doc: &'a Value, r: &'a Value) -> &'a Value {
    match r["$ref"].as_str() {
        Some(name) => {
            &doc["components"]["schemas"][name.trim_start_matches("#/components/schemas/")]
        }
        None => r,
    }
}

/// Every property `schema` requires is in `body`, one level down into objects and arrays.
fn check_required(doc: &Value, schema: &Value, body: &Value, what: &str, depth: u32) {
    let schema = resolve(doc, schema);
    if let Some(items) = schema.get("items") {
        if let Some(first) = body.as_array().and_then(|a| a.first()) {
            check_required(doc, items, first, what, depth);
        }
        return;
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        assert!(
            body.get(name).is_some(),
            "{what}: {name} is required by the document but missing: {body}"
        );
        if depth > 0 {
            let property = &schema["properties"][name];
            check_required(doc, property, &body[name], what, depth - 1);
        }
    }
}

#[test]
fn the_openapi_document_is_public_and_describes_every_route_as_served() {
    let secret = "a-test-secret-that-is-long-enough-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let _agent = agent(&[&url], &["--host-id", "openapi-host"]);
    let viz = viz(&[&url], &["--jwt-secret", secret]);
    let http = viz.addr("http");
    let admin = format!("Bearer {}", token(secret, "admin"));

    // Public: no token.
    let (s, body) = http_get(&http, "/api/openapi.json");
    assert_eq!(s, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("the document parses");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Ringwatch viz API");
    assert!(
        doc["info"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let routes = ringwatch_viz::api::served_paths();
    assert_eq!(paths.len(), routes.len(), "one path per route");
    assert_eq!(
        paths
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        routes
    );

    // Wait for enough data that every route has something to answer with.
    wait_for(
        "3 points of the host's data",
        Duration::from_secs(30),
        || {
            let (s, _) = http_get_with(
                &http,
                "/api/analysis/trend?host_id=openapi-host&metric=cpu.usage",
                &[("Authorization", &admin)],
            );
            (s == 200).then_some(())
        },
    );

    let public = ["/health", "/metrics", "/api/auth", "/api/openapi.json"];
    for (path, item) in paths {
        let methods: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(methods, ["get"], "{path}: only GET is served");
        let op = &item["get"];
        let guarded = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        assert_eq!(
            guarded,
            !public.contains(&path.as_str()),
            "{path}: bearer security requirement"
        );
        let responses = op["responses"].as_object().unwrap();
        if path == "/ws" {
            assert!(responses.contains_key("101"), "/ws upgrades: {op}");
        } else {
            let ok = &responses["200"]["content"];
            assert!(
                ok.as_object()
                    .is_some_and(|c| !c.is_empty() && c.values().all(|m| m["schema"].is_object())),
                "{path}: the 200 response has a schema: {op}"
            );
        }
        for (code, r) in responses {
            if let Some(json) = r["content"].get("application/json")
                && (code.starts_with('4') || code.starts_with('5'))
            {
                assert_eq!(
                    json["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{path} {code}"
                );
            }
        }

        let target = example_url(path, op, "openapi-host");
        // Without a token: 401 exactly where the document says a token is needed.
        let (s, b) = http_get(&http, &target);
        if guarded {
            assert_eq!(s, 401, "{target} without a token: {b}");
            assert!(responses.contains_key("401"), "{path}: 401 documented");
        } else {
            assert_ne!(s, 401, "{target} is public: {b}");
            assert_ne!(s, 404, "{target}: {b}");
        }
        // With one: a documented answer, and never the router's fallback.
        let (s, b) = http_get_with(&http, &target, &[("Authorization", &admin)]);
        let fallback = s == 404
            && serde_json::from_str::<Value>(&b).is_ok_and(|v| v["error"] == "no such endpoint");
        assert!(!fallback, "{target} fell through to the fallback");
        assert!(
            responses.contains_key(&s.to_string()),
            "{target} answered {s}, which the document does not list: {b}"
        );
        if path == "/ws" {
            // A plain GET is not an upgrade; the upgrade itself is tested with a real client
            // in tokens_guard_the_api_and_websocket_by_role.
            assert_eq!(s, 400, "{target}: {b}");
            continue;
        }
        assert_eq!(s, 200, "{target}: {b}");
        let content = responses["200"]["content"].as_object().unwrap();
        if let Some(json) = content.get("application/json") {
            let body: Value =
                serde_json::from_str(&b).unwrap_or_else(|e| panic!("{target}: not JSON ({e})"));
            check_required(&doc, &json["schema"], &body, &target, 2);
        } else {
            assert!(
                content.keys().all(|k| k.starts_with("text/plain")
                    || k.starts_with("application/openmetrics-text")),
                "{path}: {content:?}"
            );
        }
    }
}
