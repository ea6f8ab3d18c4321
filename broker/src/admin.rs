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

pub(crate) struct AdminState {
    pub router: Arc<crate::router::Router>,
    /// The members and the ring (one active member until the cluster's control plane lands).
    pub view: ringwatch_core::ClusterView,
    pub metrics: Arc<BrokerMetrics>,
    pub node_id: String,
    /// True while the gRPC server serves (false before start and during shutdown).
    pub serving: Arc<AtomicBool>,
    /// Samples stored over time, for the capacity figures.
    pub rate: Arc<crate::capacity::Rate>,
    pub retention: std::time::Duration,
}

pub(crate) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/api/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))) })
        .with_state(state)
}

async fn ready(State(st): State<Arc<AdminState>>) -> Response {
    if !st.serving.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "gRPC server not serving"})),
        )
            .into_response();
    }
    match st.router.store().check().await {
        Ok(()) => Json(json!({"ready": true})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": format!("store unreachable: {e}")})),
        )
            .into_response(),
    }
}

async fn cluster(State(st): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let serving = st.serving.load(Ordering::Relaxed);
    let members: Vec<serde_json::Value> = st
        .view
        .members()
        .map(|m| {
            json!({
                "id": m.id,
                "grpc_addr": m.grpc_addr,
                "admin_addr": m.admin_addr,
                "state": m.state.as_str(),
                "role": "leader",
                "serving": serving,
            })
        })
        .collect();
    Json(json!({
        "mode": "single",
        "node_id": st.node_id,
        "leader": st.node_id,
        "term": 0,
        "ring_epoch": st.view.epoch(),
        "vnodes": st.view.ring().vnodes(),
        "members": members,
        "ownership": {st.node_id.clone(): 1.0},
        "capacity": crate::capacity::capacity(
            &st.router.stats(),
            st.rate.per_sec(),
            crate::capacity::resident_bytes(),
            st.retention,
        ),
    }))
}

async fn metrics(State(st): State<Arc<AdminState>>) -> impl IntoResponse {
    let body = st.metrics.render(st.router.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
