//! The `ringwatch` command line as a person uses it: `up` starts a local stack and stops on
//! SIGTERM, `query` prints tables, and bad configuration is refused with the field named.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run ringwatch");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_files_and_flags_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.yaml");
    std::fs::write(&file, "storage: {retention: 0s}\n").unwrap();
    let (ok, _, err) = run(&[
        "broker",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("storage.retention"), "{err}");

    // The old flat keys are refused by name (the file is nested now).
    std::fs::write(&file, "retention_hours: 5\n").unwrap();
    let (ok, _, err) = run(&["broker", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("unknown field") && err.contains("retention_hours"),
        "{err}"
    );

    std::fs::write(&file, "- just\n- a list\n").unwrap();
    let (ok, _, err) = run(&["broker", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("mapping"), "{err}");

    let (ok, _, err) = run(&["agent", "--interval-secs", "0"]);
    assert!(!ok);
    assert!(err.contains("collect.interval"), "{err}");
}

#[test]
fn a_config_file_sets_fields_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.yaml");
    // The file's interval would be 3 s and its host id "from-file"; the flag overrides the id.
    std::fs::write(
        &file,
        "collect: {interval: 1s}\nhost: {id: from-file, labels: {team: infra}}\n",
    )
    .unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let agent = Proc::start(&[
        "agent",
        "--config",
        file.to_str().unwrap(),
        "--broker",
        &url,
        "--metrics-listen",
        "127.0.0.1:0",
        "--host-id",
        "from-flag",
    ]);
    assert_eq!(agent.ready["host_id"], "from-flag");
    let hosts = block_on(async {
        let mut q = ringwatch_proto::query_client::QueryClient::connect(url.clone())
            .await
            .unwrap();
        let mut hosts = Vec::new();
        for _ in 0..100 {
            hosts = q
                .hosts(ringwatch_proto::HostsRequest {})
                .await
                .unwrap()
                .into_inner()
                .hosts;
            if !hosts.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        hosts
    });
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].host_id, "from-flag");
    assert_eq!(hosts[0].interval_ms, 1000, "interval from the file");
    assert_eq!(
        hosts[0].labels.get("team").map(String::as_str),
        Some("infra")
    );
}

#[test]
fn viz_reads_a_nested_config_file_that_flags_override_and_shows_it_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("viz.yaml");
    let secret = "v".repeat(40);
    std::fs::write(
        &file,
        format!(
            "http: {{listen: \"127.0.0.1:0\"}}\n\
             push: {{quic: {{listen: \"127.0.0.1:0\"}}, ws_heartbeat: 20s}}\n\
             dashboard: {{topk: 3, topk_ttl: 30m}}\n\
             auth: {{jwt_secret: {secret}}}\n"
        ),
    )
    .unwrap();
    let viz = Proc::start(&["viz", "--config", file.to_str().unwrap(), "--topk", "4"]);
    let http = viz.addr("http");
    let admin = format!(
        "Bearer {}",
        run(&["token", "--role", "admin", "--jwt-secret", &secret])
            .1
            .trim()
    );
    let (status, body) = http_get_with(&http, "/api/admin/config", &[("Authorization", &admin)]);
    assert_eq!(status, 200, "{body}");
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["dashboard"]["topk"], 4, "the flag wins: {cfg}");
    assert_eq!(cfg["dashboard"]["topk_ttl"], "30m", "from the file: {cfg}");
    assert_eq!(cfg["push"]["ws_heartbeat"], "20s", "{cfg}");
    assert_eq!(cfg["auth"]["jwt_secret"], "<redacted>", "{cfg}");
    assert!(!body.contains(&secret));

    // A flat key of the old layout, or a bad duration, is refused by name.
    for (text, named) in [
        ("topk: 3\n", "topk"),
        ("dashboard: {topk_ttl: soon}\n", "soon"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (ok, _, err) = run(&["viz", "--config", file.to_str().unwrap(), "--no-auth"]);
        assert!(!ok && err.contains(named), "{text}: {err}");
    }
}

#[test]
fn up_runs_a_local_stack_that_query_reads_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start(&["--data-dir", data.to_str().unwrap()]);
    let (grpc, banner) = (up.grpc.clone(), up.banner.clone());
    assert!(banner.contains("store           embedded"), "{banner}");
    assert!(banner.contains("agent"), "{banner}");
    // Three brokers by default, in one Raft cluster: the banner lists them.
    let cluster = banner
        .lines()
        .find(|l| l.trim_start().starts_with("cluster"))
        .unwrap_or_else(|| panic!("no cluster line: {banner}"));
    assert!(cluster.contains("3 brokers"), "{banner}");
    assert_eq!(cluster.matches("https://").count(), 3, "{banner}");
    // gRPC is TLS with credentials, generated with no setup; the banner says how to read.
    assert!(grpc.starts_with("https://"), "{banner}");
    assert!(banner.contains("--broker-token-file"), "{banner}");
    #[cfg(unix)]
    for secret in [
        "auth-secret",
        "query.token",
        "ingest.token",
        "broker-key.pem",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(up.secrets.path().join(secret))
            .unwrap_or_else(|e| panic!("{secret}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others: {mode:o}");
    }
    let creds = up.query_args();
    let creds: Vec<&str> = creds.iter().map(String::as_str).collect();
    let (ok, _, err) = run(&["query", "hosts", "--broker", &grpc]);
    assert!(!ok, "no CA, no credential: refused");
    assert!(!err.is_empty());
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(creds.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run_with = |args: &[&str]| {
        let all = with(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&all)
    };

    let table = wait_for("a row in `query latest`", Duration::from_secs(30), || {
        let (ok, out, _) = run_with(&["query", "latest", "--broker", &grpc]);
        (ok && out.lines().count() >= 2 && !out.contains("no hosts")).then_some(out)
    });
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("host")
            && header.contains("cpu.usage")
            && header.contains("mem.used_percent"),
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().contains('%'), "{table}");

    let host = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (ok, out, err) = run_with(&[
        "query",
        "range",
        "--broker",
        &grpc,
        "--host",
        &host,
        "--since",
        "10m",
        "--metrics",
        "cpu.usage,load.1",
    ]);
    assert!(ok, "{err}");
    assert!(out.lines().next().unwrap().contains("cpu.usage"), "{out}");
    assert!(out.contains("snapshots)"), "{out}");
    let (ok, out, _) = run_with(&["query", "hosts", "--broker", &grpc]);
    assert!(ok && out.contains(&host) && out.contains("live"), "{out}");
    let (ok, _, err) = run_with(&[
        "query",
        "range",
        "--broker",
        &grpc,
        "--host",
        &host,
        "--since",
        "ten minutes",
    ]);
    assert!(!ok && err.contains("--since"), "{err}");

    let (ok, rest) = up.stop();
    assert!(ok, "up exits 0 on SIGTERM");
    assert!(
        rest.iter().any(|l| l.contains("Ringwatch stopped")),
        "{rest:?}"
    );
    assert!(
        data.read_dir().unwrap().count() >= 1,
        "the embedded store's log is on disk"
    );
}

#[test]
fn secrets_come_from_files_and_a_secret_flag_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jwt");
    let secret = "f".repeat(40);
    std::fs::write(&file, format!("{secret}\n")).expect("write secret");
    let file = file.to_str().expect("utf-8 path");
    // A token minted from the file is the one minted from the same secret as a flag (same
    // claims but iat/exp may differ by a second: compare what a viz with that secret accepts).
    let (ok, from_file, err) = run(&["token", "--jwt-secret-file", file]);
    assert!(ok, "{err}");
    assert!(
        !err.contains("command line"),
        "no warning for a file: {err}"
    );
    let (ok, _, err) = run(&["token", "--jwt-secret", &secret]);
    assert!(ok, "{err}");
    assert!(
        err.contains("--jwt-secret") && err.contains("command line"),
        "a secret flag is warned about: {err}"
    );
    let broker = broker(dir.path(), &[]);
    let viz = viz(&[&broker.grpc_url()], &["--jwt-secret-file", file]);
    let http = viz.addr("http");
    let (status, body) = http_get_with(
        &http,
        "/api/auth/whoami",
        &[("Authorization", &format!("Bearer {}", from_file.trim()))],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_get(&http, "/api/auth/whoami").0, 401);
    // Both at once, or a missing file: refused by name.
    let (ok, _, err) = run(&["token", "--jwt-secret-file", file, "--jwt-secret", &secret]);
    assert!(!ok && err.contains("jwt-secret"), "{err}");
    let (ok, _, err) = run(&["token", "--jwt-secret-file", "/nonexistent/secret"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
}
