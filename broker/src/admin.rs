//! Admin HTTP: `/health` (liveness), `/ready` (readiness), `/api/cluster`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::BrokerMetrics;
use crate::store::Store;

pub(crate) struct AdminState<S> {
    pub store: Arc<S>,
    pub metrics: Arc<BrokerMetrics>,
    pub node_id: String,
    pub grpc_addr: std::net::SocketAddr,
    /// True while the gRPC server serves (false before start and during shutdown).
    pub serving: Arc<AtomicBool>,
    /// Samples stored over time, for the capacity figures.
    pub rate: Arc<crate::capacity::Rate>,
    pub retention: std::time::Duration,
}

pub(crate) fn router<S: Store>(state: Arc<AdminState<S>>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready::<S>))
        .route("/api/cluster", get(cluster::<S>))
        .route("/metrics", get(metrics::<S>))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))) })
        .with_state(state)
}

async fn ready<S: Store>(State(st): State<Arc<AdminState<S>>>) -> Response {
    if !st.serving.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "gRPC server not serving"})),
        )
            .into_response();
    }
    match st.store.check().await {
        Ok(()) => Json(json!({"ready": true})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": format!("store unreachable: {e}")})),
        )
            .into_response(),
    }
}

async fn cluster<S: Store>(State(st): State<Arc<AdminState<S>>>) -> Json<serde_json::Value> {
    Json(json!({
        "mode": "single",
        "node_id": st.node_id,
        "leader": st.node_id,
        "term": 0,
        "ring_epoch": 0,
        "members": [{"id": st.node_id, "grpc_addr": st.grpc_addr.to_string(), "role": "leader", "serving": st.serving.load(Ordering::Relaxed)}],
        "ownership": {st.node_id.clone(): 1.0},
        "capacity": crate::capacity::capacity(
            &st.store.stats(),
            st.rate.per_sec(),
            crate::capacity::resident_bytes(),
            st.retention,
        ),
    }))
}

async fn metrics<S: Store>(State(st): State<Arc<AdminState<S>>>) -> impl IntoResponse {
    let body = st.metrics.render(st.store.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
