//! The web UI in a real browser: a broker, an agent at a 1 s interval and viz with JWT auth on;
//! `viz/web/tests/ui.mjs` drives Debian's Chromium through playwright-core — signs in with a
//! viewer token minted by `ringwatch token`, sees the host's row and its sparkline move, opens
//! the host, sees the four charts drawn and one grow live, switches range and theme, and fails
//! on any console or page error; then, with the broker killed (-9), sees the host turn stale
//! with its marker and the delay banner (`outage.mjs`), and live again once the broker is back.
//! Screenshots land in `target/ui-artifacts`.
//!
//! Needs node, /usr/bin/chromium and `viz/web/node_modules` (the build already needs the last);
//! when they are missing this test fails and says how to install them — it never skips.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL: &str = "apt-get install -y chromium nodejs npm && npm ci --prefix viz/web";
const HOST: &str = "ui-host-1";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A random secret of 40 hex characters.
fn secret() -> String {
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fails loudly (never skips) when the browser tooling is missing.
fn require_tools() {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "node is needed for the UI test and is missing ({other:?}); install it: {INSTALL}"
        ),
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is needed for the UI test and is missing; install it: {INSTALL}"
    );
    let pw = root().join("viz/web/node_modules/playwright-core/package.json");
    assert!(
        pw.exists(),
        "{} is missing; install it: {INSTALL}",
        pw.display()
    );
}

/// `ringwatch token --role viewer --jwt-secret …` from the built binary.
fn mint(secret: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "--role",
            "viewer",
            "--subject",
            "ui-test",
            "--ttl",
            "1h",
            "--jwt-secret",
            secret,
        ])
        .output()
        .expect("run ringwatch token");
    assert!(
        out.status.success(),
        "ringwatch token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8 token")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    token
}

/// Runs `node viz/web/tests/<script>` with `env`, up to `limit`; (exit success, output).
fn run_node(script: &str, env: &[(&str, &str)], limit: Duration) -> (bool, String) {
    let script = root().join("viz/web/tests").join(script);
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(root().join("viz/web"))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait node") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {limit:?})")),
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("screenshot {} is missing: {e}", path.display()));
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG screenshot ({} bytes)",
        path.display(),
        bytes.len()
    );
}

#[test]
fn the_dashboard_signs_in_and_shows_a_host_live_in_a_real_browser() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let (grpc, admin) = (broker.addr("grpc"), broker.addr("admin"));
    let url = broker.grpc_url();
    let _agent = agent(&[&url], &["--host-id", HOST, "--label", "role=web"]);
    let _other = agent(&[&url], &["--host-id", "ui-host-2", "--label", "role=db"]);
    let secret = secret();
    let viz = viz(&[&url], &["--jwt-secret", &secret]);
    let http = viz.addr("http");
    let (status, body) = http_get(&http, "/api/auth");
    assert_eq!(status, 200, "/api/auth: {body}");
    assert!(body.contains("\"required\":true"), "/api/auth: {body}");
    let token = mint(&secret);
    // Some seconds of history before the browser looks, so the charts and screenshots show lines.
    wait_for(
        "both hosts live on the dashboard with 10 samples",
        Duration::from_secs(40),
        || {
            let hosts = get_with_token(&http, "/api/dashboard/hosts", &token)?;
            let rows = hosts.as_array()?;
            let ready = rows.len() == 2
                && rows.iter().all(|r| {
                    r["state"] == "live"
                        && r["spark_ts"].as_array().is_some_and(|ts| ts.len() >= 10)
                });
            ready.then_some(())
        },
    );

    let artifacts = root().join("target/ui-artifacts");
    // Screenshots of an earlier run must not pass for this one's.
    if let Ok(entries) = std::fs::read_dir(&artifacts) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "png") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let dashboard = format!("http://{http}/");
    let env = [
        ("RINGWATCH_URL", dashboard.as_str()),
        ("RINGWATCH_TOKEN", token.as_str()),
        ("RINGWATCH_HOST", HOST),
        (
            "RINGWATCH_ARTIFACTS",
            artifacts.to_str().expect("utf-8 path"),
        ),
    ];
    let (ok, output) = run_node("ui.mjs", &env, Duration::from_secs(240));
    println!("---- ui.mjs ----\n{output}");
    assert!(
        ok,
        "the UI check failed (screenshots in {}):\n{output}\n---- viz log ----\n{}",
        artifacts.display(),
        viz.logs()
    );
    assert_png(&artifacts.join("overview.png"));
    assert_png(&artifacts.join("host.png"));

    // The outage, honestly: kill -9 the broker viz streams from; the page shows the host stale
    // with its marker and says the data may be delayed. Then the broker comes back on the same
    // address and store, and the page goes back to live with neither.
    broker.kill9();
    let check = |expect: &str| {
        let mut env = env.to_vec();
        env.push(("RINGWATCH_EXPECT", expect));
        let (ok, output) = run_node("outage.mjs", &env, Duration::from_secs(120));
        println!("---- outage.mjs ({expect}) ----\n{output}");
        assert!(
            ok,
            "the {expect} check failed:\n{output}\n---- viz log ----\n{}",
            viz.logs()
        );
        assert_png(&artifacts.join(format!("{expect}.png")));
    };
    check("outage");
    let _back = broker_on(&grpc, &admin, dir.path(), &[]);
    check("recovered");
}

/// GET with a bearer token over plain HTTP/1.0; the JSON body on 200.
fn get_with_token(addr: &str, path: &str, token: &str) -> Option<serde_json::Value> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    if head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    serde_json::from_str(body).ok()
}
