//! Admin HTTP: `/health` (liveness), `/ready` (readiness), `/api/cluster`, `/metrics`, and in a
//! Raft cluster the membership operations: `POST /api/cluster/join`,
//! `POST /api/cluster/members/{id}/promote`, `POST /api/cluster/members/{id}/drain`,
//! `DELETE /api/cluster/members/{id}` (`?force=true` for a member not drained). Each is
//! idempotent (asking again for what is so answers 200 and changes nothing), runs on the
//! leader (a follower forwards it), and with auth on needs a credential with the admin role;
//! without one it answers 401 and changes nothing. Bad input answers 4xx with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ringwatch_core::MemberState;
use ringwatch_net::token::{Role, Verifier};
use serde::Deserialize;
use serde_json::json;

use crate::control::{BrokerNode, ControlError, ControlOp, ControlPlane};
use crate::metrics::BrokerMetrics;
use crate::store::Store;

/// The largest admin request body.
const MAX_BODY: usize = 16 << 10;

pub(crate) struct AdminState {
    pub router: Arc<crate::router::Router>,
    /// The members and the ring of a broker alone (`--raft` off: itself, one active member).
    pub view: ringwatch_core::ClusterView,
    pub metrics: Arc<BrokerMetrics>,
    pub node_id: String,
    /// True while the gRPC server serves (false before start and during shutdown).
    pub serving: Arc<AtomicBool>,
    /// Samples stored over time, for the capacity figures.
    pub rate: Arc<crate::capacity::Rate>,
    pub retention: std::time::Duration,
    /// The Raft control plane (`--raft`); `None` for a cluster of one.
    pub control: Option<Arc<ControlPlane>>,
    /// Checks admin credentials; `None` when auth is off.
    pub verifier: Option<Verifier>,
}

pub(crate) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/api/cluster", get(cluster))
        .route("/api/cluster/join", post(join))
        .route("/api/cluster/members/{id}/promote", post(promote))
        .route("/api/cluster/members/{id}/drain", post(drain))
        .route("/api/cluster/members/{id}", delete(remove))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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
    if let Some(control) = &st.control {
        let state = control.state();
        let mine = state.view.member(&st.node_id).map(|m| m.state);
        let leader = control.status().leader;
        let reason = match (mine, leader) {
            (_, None) => Some("no Raft leader known".to_string()),
            (Some(MemberState::Active), Some(_)) => None,
            (None, _) => {
                Some("not a member of the cluster yet (join it through the admin API)".into())
            }
            (Some(s), _) => Some(format!("{} in the ring, not active", s.as_str())),
        };
        if let Some(reason) = reason {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ready": false, "reason": reason})),
            )
                .into_response();
        }
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
    if let Some(control) = &st.control {
        return Json(raft_cluster(&st, control));
    }
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

/// `/api/cluster` of a Raft cluster member: the replicated view as this broker has applied it,
/// with its Raft view (leader, term, log) and each member's Raft role.
fn raft_cluster(st: &AdminState, control: &ControlPlane) -> serde_json::Value {
    let state = control.state();
    let raft = control.status();
    let ring = state.view.ring();
    let hosts_per_owner = state.hosts_per_owner();
    let members: Vec<serde_json::Value> = state
        .view
        .members()
        .map(|m| {
            let role = raft_role(&raft, &m.id);
            json!({
                "id": m.id,
                "grpc_addr": m.grpc_addr,
                "admin_addr": m.admin_addr,
                "state": m.state.as_str(),
                "role": role,
                "handoff": state.handoffs.get(&m.id),
            })
        })
        .collect();
    json!({
        "mode": "raft",
        "node_id": st.node_id,
        "leader": raft.leader,
        "term": raft.term,
        "raft": raft,
        "ring_epoch": state.view.epoch(),
        "vnodes": ring.vnodes(),
        "members": members,
        "hosts_per_owner": hosts_per_owner,
        "registered_hosts": state.hosts.len(),
        "epochs": state.epochs,
        "config": state.config,
        "capacity": crate::capacity::capacity(
            &st.router.stats(),
            st.rate.per_sec(),
            crate::capacity::resident_bytes(),
            st.retention,
        ),
    })
}

/// Member `id`'s Raft role as `raft` sees it: leader, voter, learner or none.
pub(crate) fn raft_role(raft: &crate::control::RaftStatus, id: &str) -> &'static str {
    if raft.leader.as_deref() == Some(id) {
        "leader"
    } else if raft.voters.iter().any(|v| v == id) {
        "voter"
    } else if raft.learners.iter().any(|l| l == id) {
        "learner"
    } else {
        "none"
    }
}

/// A 4xx/5xx answer with the reason as JSON.
fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    refusal(status, reason).into_response()
}

/// A refusal before any work: its status and JSON reason.
type Refusal = (StatusCode, Json<serde_json::Value>);

fn refusal(status: StatusCode, reason: impl Into<String>) -> Refusal {
    (status, Json(json!({"error": reason.into()})))
}

/// Checks the admin credential (auth on) and that this broker runs Raft.
fn admin_gate<'a>(st: &'a AdminState, headers: &HeaderMap) -> Result<&'a ControlPlane, Refusal> {
    if let Some(v) = &st.verifier {
        let token = ringwatch_net::grpc_auth::bearer(headers)
            .map_err(|e| refusal(StatusCode::UNAUTHORIZED, e.to_string()))?;
        if let Err(e) = v.check(token, Role::Admin) {
            st.metrics.admin_refused(e.reason());
            tracing::warn!(reason = e.reason(), "admin request refused");
            let status = match e {
                ringwatch_net::token::TokenError::WrongRole { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            return Err(refusal(status, e.to_string()));
        }
    }
    st.control.as_deref().ok_or_else(|| {
        refusal(
            StatusCode::CONFLICT,
            "this broker is a cluster of one (started without --raft): there is no membership to change",
        )
    })
}

async fn run_op(control: &ControlPlane, op: ControlOp) -> Response {
    let what = format!("{op:?}");
    match control.execute(op).await {
        Ok(r) => Json(json!({"ok": true, "result": r})).into_response(),
        Err(e) => {
            tracing::warn!(op = %what, error = %e, "cluster operation refused");
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = match &e {
                ControlError::BadRequest(_) => "bad_request",
                ControlError::NotFound(_) => "not_found",
                ControlError::Refused(_) => "refused",
                ControlError::NoLeader => "no_leader",
                ControlError::Forward(_) => "forward",
                ControlError::Timeout(_) => "timeout",
                ControlError::Raft(_) => "raft",
            };
            (status, Json(json!({"error": e.to_string(), "kind": kind}))).into_response()
        }
    }
}

/// `POST /api/cluster/join`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    id: String,
    grpc_addr: String,
    admin_addr: String,
}

async fn join(State(st): State<Arc<AdminState>>, headers: HeaderMap, body: Bytes) -> Response {
    let control = match admin_gate(&st, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let body: JoinBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON {{\"id\", \"grpc_addr\", \"admin_addr\"}}: {e}"),
            );
        }
    };
    let node = BrokerNode {
        name: body.id,
        grpc_addr: body.grpc_addr,
        admin_addr: body.admin_addr,
    };
    run_op(control, ControlOp::Join { node }).await
}

async fn promote(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match admin_gate(&st, &headers) {
        Ok(c) => run_op(c, ControlOp::Promote { id }).await,
        Err(r) => r.into_response(),
    }
}

async fn drain(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match admin_gate(&st, &headers) {
        Ok(c) => run_op(c, ControlOp::Drain { id }).await,
        Err(r) => r.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let control = match admin_gate(&st, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let force = match query {
        Ok(Query(q)) => q.force,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("query: {e} (only force=true|false)"),
            );
        }
    };
    run_op(control, ControlOp::Remove { id, force }).await
}

async fn metrics(State(st): State<Arc<AdminState>>) -> impl IntoResponse {
    if let Some(control) = &st.control {
        st.metrics.set_cluster(&control.status(), &control.state());
    }
    let body = st.metrics.render(st.router.stats());
    (
        [(header::CONTENT_TYPE, ringwatch_net::METRICS_CONTENT_TYPE)],
        body,
    )
}
