//! Every service's `/metrics` is valid for the content type it declares: broker (a Raft cluster
//! member, so the cluster's and the forward queue's families are there too), agent and viz,
//! each serving real traffic, are scraped and their bodies parsed by the OpenMetrics parser of
//! Python's `prometheus_client` (Debian's `python3-prometheus-client`, which
//! `scripts/test.sh` installs), the reference a scraper reads them with.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Python that has `prometheus_client` (`RINGWATCH_TEST_PYTHON`, else Debian's).
fn python() -> String {
    std::env::var("RINGWATCH_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// GET `path`; returns (status, content type, body).
fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let kind = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, kind, body.to_string())
}

/// Parses `body` as OpenMetrics text; returns the families' names and types, or the parser's
/// complaint.
fn parse_openmetrics(body: &str) -> Result<Vec<String>, String> {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   assert f.documentation, 'no help text for ' + f.name\n\
        \x20   print(f.name, f.type)\n";
    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} not found ({e}): install it with `apt-get install -y python3-prometheus-client` \
                 or set RINGWATCH_TEST_PYTHON",
                python()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named"),
        "{stderr}: install it with `apt-get install -y python3-prometheus-client`"
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    } else {
        Err(stderr.into_owned())
    }
}

#[test]
fn the_parser_refuses_what_is_not_openmetrics() {
    // The check can fail: text format 0.0.4 without `# EOF`, and a counter sample without its
    // `_total`, are refused.
    assert!(parse_openmetrics("# TYPE a counter\n# HELP a help\na_total 1\n").is_err());
    assert!(parse_openmetrics("# TYPE a counter\n# HELP a help\na 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a counter\n# HELP a help\na_total 1\n# EOF\n").is_ok());
}

#[test]
fn every_service_s_metrics_parse_as_the_openmetrics_they_declare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker_named("scrape-broker", dir.path(), &["--raft", "--bootstrap"]);
    let admin = broker.addr("admin");
    wait_for("the broker ready", Duration::from_secs(20), || {
        (http_get(&admin, "/ready").0 == 200).then_some(())
    });
    let url = broker.grpc_url();
    let agent = agent(&[&url], &["--host-id", "scrape-host"]);
    let viz = viz(&[&url], &["--no-auth"]);
    wait_for(
        "the broker to store a batch",
        Duration::from_secs(30),
        || {
            (metric(&scrape(&admin), "ringwatch_broker_snapshots_stored_total") >= 2.0)
                .then_some(())
        },
    );
    // Some traffic at viz, so its request families have samples.
    let http = viz.addr("http");
    wait_for("viz to see the host", Duration::from_secs(30), || {
        let (status, body) = http_get(&http, "/api/dashboard/summary");
        (status == 200 && body.contains("\"hosts\":1")).then_some(())
    });

    for (who, addr, must) in [
        (
            "broker",
            admin.as_str(),
            "ringwatch_broker_forward_queue_batches gauge",
        ),
        ("agent", &agent.addr("metrics"), "ringwatch_agent_"),
        ("viz", &http, "ringwatch_viz_"),
    ] {
        let (status, kind, body) = get(addr, "/metrics");
        assert_eq!(status, 200, "{who}: {body}");
        assert_eq!(kind, OPENMETRICS, "{who} declares OpenMetrics");
        let families = parse_openmetrics(&body)
            .unwrap_or_else(|e| panic!("{who}'s /metrics is not valid OpenMetrics: {e}\n{body}"));
        assert!(
            families.iter().any(|f| f.starts_with(must)),
            "{who}: no {must} in {families:?}"
        );
        assert!(families.len() >= 10, "{who}: {families:?}");
    }
}
