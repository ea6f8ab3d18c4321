//! The web UI, served from the binary: our own page, styles and script (`viz/web/src`; the script
//! is native ES modules the browser loads as they are, no build step) and the chart library
//! (uPlot, committed under `viz/web/vendor/uplot/`). Each file is at `/assets/<path under viz/web/src>`,
//! the page also at `/`. With `web_dir` set, our own files are read from that folder on every
//! request instead (for working on the UI without a rebuild); only the files listed here are
//! served either way.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// uPlot, committed with its licence and version under `web/vendor/uplot/`
/// (`scripts/refresh-uplot.sh` refreshes it from npm): the build needs no network.
const UPLOT_JS: &[u8] = include_bytes!("../web/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &[u8] = include_bytes!("../web/vendor/uplot/uPlot.min.css");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// (path under `viz/web/src`, content type, the file as built in) for each of our own files.
macro_rules! own_files {
    ($($path:literal => $kind:expr),* $(,)?) => {
        &[$(($path, $kind, include_str!(concat!("../web/src/", $path)))),*]
    };
}

/// Our own files. A new module needs a line here and a `modulepreload` link in index.html (the
/// tests below check both).
const OWN: &[(&str, &str, &str)] = own_files![
    "index.html" => HTML,
    "app.css" => CSS,
    "main.js" => JS,
    "api.js" => JS,
    "bus.js" => JS,
    "chart.js" => JS,
    "clock.js" => JS,
    "dom.js" => JS,
    "feeds.js" => JS,
    "format.js" => JS,
    "live.js" => JS,
    "model.js" => JS,
    "poll.js" => JS,
    "router.js" => JS,
    "shell.js" => JS,
    "spark.js" => JS,
    "status.js" => JS,
    "storage.js" => JS,
    "theme.js" => JS,
    "widgets.js" => JS,
    "views/cluster.js" => JS,
    "views/host-charts.js" => JS,
    "views/host.js" => JS,
    "views/login.js" => JS,
    "views/notfound.js" => JS,
    "views/overview-table.js" => JS,
    "views/overview-topk.js" => JS,
    "views/overview.js" => JS,
];

/// Where the UI's own files come from.
#[derive(Clone, Default)]
pub struct WebAssets {
    dir: Option<Arc<PathBuf>>,
}

impl WebAssets {
    pub fn new(dir: Option<PathBuf>) -> Self {
        WebAssets {
            dir: dir.map(Arc::new),
        }
    }

    /// (content type, body) of an asset by its path under /assets/.
    async fn get(&self, name: &str) -> Option<(&'static str, Vec<u8>)> {
        match name {
            "uPlot.iife.min.js" => return Some((JS, UPLOT_JS.to_vec())),
            "uPlot.min.css" => return Some((CSS, UPLOT_CSS.to_vec())),
            _ => {}
        }
        let &(_, kind, embedded) = OWN.iter().find(|(path, _, _)| *path == name)?;
        if let Some(dir) = &self.dir {
            match tokio::fs::read(dir.join(name)).await {
                Ok(b) => return Some((kind, b)),
                Err(e) => {
                    tracing::warn!(file = name, error = %e, "web_dir: cannot read; serving the built-in copy")
                }
            }
        }
        Some((kind, embedded.as_bytes().to_vec()))
    }
}

pub fn router(assets: WebAssets) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*name}", get(asset))
        .with_state(assets)
}

fn respond(kind: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            // Small files, and the binary may change under the same URL: revalidate each time.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(a): State<WebAssets>) -> Response {
    match a.get("index.html").await {
        Some((kind, body)) => respond(kind, body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(State(a): State<WebAssets>, Path(name): Path<String>) -> Response {
    match a.get(&name).await {
        Some((kind, body)) => respond(kind, body),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": format!("no asset {name:?}")})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_vendored_uplot_is_the_version_the_lockfile_pins_with_its_licence() {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let read = |p: &str| std::fs::read_to_string(web.join(p)).expect(p);
        let lock: serde_json::Value =
            serde_json::from_str(&read("package-lock.json")).expect("lockfile");
        let pinned = lock["packages"]["node_modules/uplot"]["version"]
            .as_str()
            .expect("uplot in the lockfile");
        assert_eq!(
            read("vendor/uplot/VERSION").trim(),
            pinned,
            "run scripts/refresh-uplot.sh"
        );
        assert!(read("vendor/uplot/LICENSE").contains("MIT"));
        assert!(
            String::from_utf8_lossy(UPLOT_JS).contains(pinned),
            "the bundle names its version"
        );
    }

    use super::*;
    use std::collections::BTreeSet;

    fn modules() -> BTreeSet<&'static str> {
        OWN.iter()
            .filter(|(_, kind, _)| *kind == JS)
            .map(|(path, _, _)| *path)
            .collect()
    }

    fn file(path: &str) -> &'static str {
        OWN.iter()
            .find(|(p, _, _)| *p == path)
            .unwrap_or_else(|| panic!("{path} is not served"))
            .2
    }

    /// `spec` imported by the module at `from`, as a path under viz/web/src; None when it leaves
    /// the folder.
    fn resolve(from: &str, spec: &str) -> Option<String> {
        let mut parts: Vec<&str> = from.split('/').collect();
        parts.pop();
        for seg in spec.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop()?;
                }
                s => parts.push(s),
            }
        }
        Some(parts.join("/"))
    }

    /// The specifiers a module imports: `import … from '…'`, `} from '…'` (the end of an import
    /// over several lines), `export … from '…'` and `import '…'`.
    fn imports(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim_start) {
            let spec = if line.starts_with("import '") {
                line.strip_prefix("import ")
            } else if line.starts_with("import ")
                || line.starts_with("export ")
                || line.starts_with("} from ")
            {
                line.split_once(" from ").map(|(_, s)| s)
            } else {
                None
            };
            if let Some(s) = spec.and_then(|s| s.strip_prefix('\'')) {
                out.push(s.split('\'').next().unwrap_or_default());
            }
        }
        out
    }

    #[test]
    fn every_import_is_a_module_served_here() {
        let served = modules();
        for m in &served {
            for spec in imports(file(m)) {
                assert!(
                    spec.starts_with("./") || spec.starts_with("../"),
                    "{m} imports {spec:?}: without a bundler only relative imports load"
                );
                let target = resolve(m, spec)
                    .unwrap_or_else(|| panic!("{m} imports {spec:?}, outside viz/web/src"));
                assert!(
                    served.contains(target.as_str()),
                    "{m} imports {spec:?} ({target}), which web.rs does not serve: add it to OWN"
                );
            }
        }
        // And nothing served is left unreachable from the entry.
        let mut seen = BTreeSet::from(["main.js".to_string()]);
        let mut todo = vec!["main.js".to_string()];
        while let Some(m) = todo.pop() {
            for spec in imports(file(&m)) {
                let t = resolve(&m, spec).expect("checked above");
                if seen.insert(t.clone()) {
                    todo.push(t);
                }
            }
        }
        let reached: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(
            reached, served,
            "modules main.js does not import (or not served)"
        );
    }

    #[test]
    fn the_page_loads_the_entry_as_a_module_and_preloads_every_module() {
        let html = file("index.html");
        assert!(
            html.contains(r#"<script type="module" src="/assets/main.js"></script>"#),
            "index.html must load main.js as a module"
        );
        let uplot = html
            .find("/assets/uPlot.iife.min.js")
            .expect("uPlot script");
        let entry = html.find(r#"src="/assets/main.js""#).expect("entry");
        assert!(
            uplot < entry,
            "uPlot (a global) must load before the modules run"
        );
        let preloaded: BTreeSet<&str> = html
            .split(r#"<link rel="modulepreload" href="/assets/"#)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default())
            .collect();
        assert_eq!(preloaded, modules(), "modulepreload links in index.html");
    }

    /// GET `path` from a server on `addr` (HTTP/1.0): (status, content type, body).
    async fn get_raw(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&resp[..split]).to_string();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let kind = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_string)
            })
            .unwrap_or_default();
        (status, kind, resp[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn serves_every_module_as_javascript_and_nothing_else() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(WebAssets::default()))
                .await
                .unwrap()
        });
        for m in modules() {
            let (status, kind, body) = get_raw(addr, &format!("/assets/{m}")).await;
            assert_eq!(status, 200, "/assets/{m}");
            assert_eq!(kind, JS, "/assets/{m}");
            assert_eq!(body, file(m).as_bytes(), "/assets/{m}");
        }
        let (status, kind, _) = get_raw(addr, "/").await;
        assert_eq!((status, kind.as_str()), (200, HTML));
        let (status, kind, _) = get_raw(addr, "/assets/uPlot.iife.min.js").await;
        assert_eq!((status, kind.as_str()), (200, JS));
        for path in [
            "/assets/app.js",
            "/assets/nope.js",
            "/assets/views/nope.js",
            "/assets/views/../main.js",
            "/assets/views",
        ] {
            let (status, _, body) = get_raw(addr, path).await;
            assert_eq!(status, 404, "{path}");
            assert!(
                String::from_utf8_lossy(&body).contains("no asset"),
                "{path}"
            );
        }
        server.abort();
    }
}
