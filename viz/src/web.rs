//! The web UI, served from the binary: our own page, script and styles (`viz/web/src`) and the
//! chart library (uPlot, bundled from npm by `build.rs`). With `web_dir` set, our own files are
//! read from that folder on every request instead (for working on the UI without a rebuild).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../web/src/index.html");
const APP_JS: &str = include_str!("../web/src/app.js");
const APP_CSS: &str = include_str!("../web/src/app.css");
const UPLOT_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js"));
const UPLOT_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.min.css"));

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

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

    /// (content type, body) of an asset by file name.
    async fn get(&self, name: &str) -> Option<(&'static str, Vec<u8>)> {
        let (kind, embedded): (&'static str, &[u8]) = match name {
            "index.html" => (HTML, INDEX.as_bytes()),
            "app.js" => (JS, APP_JS.as_bytes()),
            "app.css" => (CSS, APP_CSS.as_bytes()),
            "uPlot.iife.min.js" => return Some((JS, UPLOT_JS.to_vec())),
            "uPlot.min.css" => return Some((CSS, UPLOT_CSS.to_vec())),
            _ => return None,
        };
        if let Some(dir) = &self.dir {
            match tokio::fs::read(dir.join(name)).await {
                Ok(b) => return Some((kind, b)),
                Err(e) => {
                    tracing::warn!(file = name, error = %e, "web_dir: cannot read; serving the built-in copy")
                }
            }
        }
        Some((kind, embedded.to_vec()))
    }
}

pub fn router(assets: WebAssets) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
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
