//! The HTTP API (axum). Dashboard endpoints answer from memory; detail queries go to brokers.
//! Every error is JSON `{"error": reason}` with the right status: 400 bad parameters, 401 no or
//! a bad token, 403 too small a role, 404 unknown host, 413 too much data, 503 no broker answered.
//!
//! The routes and their OpenAPI document come from one list (`api`): each handler's
//! `#[utoipa::path]` gives its path, parameters and responses, and `routes!` registers the same
//! handler on the router, so the document served at `/api/openapi.json` cannot drift from it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ringwatch_proto::{RangeChunk, RangeRequest, Unit};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::analysis::{Bucket, buckets, trend_of};
use crate::auth::{Identity, Role};
use crate::brokers::BrokerStatus;
use crate::dashboard::{HostDetail, HostRow, Summary, TopEntry, now_ms};
use crate::push::ws::BEARER_PROTOCOL_PREFIX;
use crate::state::{AppState, PushState};

type Shared = State<Arc<AppState>>;

/// An API error: status and reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, reason.into())
    }
}

/// The body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Why, in words.
    #[schema(example = "missing parameter host_id")]
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ErrorBody { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let code = match s.code() {
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
            tonic::Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(code, s.message().to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

type ApiRouter = OpenApiRouter<Arc<AppState>>;

/// The security scheme guarded routes name.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ringwatch viz API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Live host metrics from memory, history and analysis from the brokers, and push over WebSocket.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme, &ConfigSchema),
    tags(
        (name = "service", description = "Health, Prometheus metrics, this document"),
        (name = "auth", description = "Whether tokens are needed, and who a token is"),
        (name = "dashboard", description = "The live dashboard, from viz's memory"),
        (name = "metrics", description = "Stored history, from the brokers"),
        (name = "analysis", description = "Trends and Top-K"),
        (name = "push", description = "Live snapshots over WebSocket"),
        (name = "admin", description = "viz's own configuration (role admin)"),
    )
)]
struct ApiDoc;

struct BearerScheme;

/// viz's config schema, as its own types derive it (schemars), under `VizConfig`: the body of
/// `/api/admin/config` and the shape of viz's YAML file.
struct ConfigSchema;

impl utoipa::Modify for ConfigSchema {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let generator = schemars::generate::SchemaSettings::openapi3()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        let mut schema = serde_json::to_value(generator.into_root_schema_for::<crate::Config>())
            .unwrap_or_default();
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
        }
        match serde_json::from_value::<utoipa::openapi::schema::Schema>(schema) {
            Ok(s) => {
                doc.components
                    .get_or_insert_with(Default::default)
                    .schemas
                    .insert("VizConfig".into(), s.into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "viz's config schema left out of the OpenAPI document")
            }
        }
    }
}

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An HS256 JWT with role viewer or admin (mint one with `ringwatch token`). \
                         Not needed when viz runs with --no-auth.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route of the API with its OpenAPI operation, from one list. The routes behind a
/// guard are marked in the document from that guard: bearer token, 401 (and 403 for admin).
/// With no `state` the guards themselves are left out: that router only yields the document.
fn api(state: Option<&Arc<AppState>>) -> ApiRouter {
    let viewer = ApiRouter::default()
        .routes(routes!(whoami))
        .routes(routes!(dashboard_all))
        .routes(routes!(summary))
        .routes(routes!(hosts))
        .routes(routes!(dashboard_topk))
        .routes(routes!(cluster))
        .routes(routes!(range))
        .routes(routes!(host))
        .routes(routes!(aggregate))
        .routes(routes!(trend))
        .routes(routes!(analysis_topk))
        .routes(routes!(ws));
    let admin = ApiRouter::default().routes(routes!(admin_config));
    let (viewer, admin) = match state {
        Some(st) => (
            viewer.route_layer(middleware::from_fn_with_state(st.clone(), require_viewer)),
            admin.route_layer(middleware::from_fn_with_state(st.clone(), require_admin)),
        ),
        None => (viewer, admin),
    };
    ApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(auth_info))
        .routes(routes!(openapi_json))
        .merge(guarded(viewer, Role::Viewer))
        .merge(guarded(admin, Role::Admin))
}

/// Marks every operation of `r` as needing a bearer token with role `need`.
fn guarded(mut r: ApiRouter, need: Role) -> ApiRouter {
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
            .build()
    };
    let unauthorized = ResponseBuilder::from(error(
        "No token, or a bad or expired one (only when viz runs with --jwt-secret)",
    ))
    .header(
        "WWW-Authenticate",
        utoipa::openapi::header::HeaderBuilder::new()
            .schema(String::schema())
            .description(Some("Bearer"))
            .build(),
    )
    .build();
    let forbidden = error("The token's role is viewer; this needs admin");
    for item in r.get_openapi_mut().paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            let responses = &mut op.responses.responses;
            responses.insert("401".into(), unauthorized.clone().into());
            if need == Role::Admin {
                responses.insert("403".into(), forbidden.clone().into());
            }
        }
    }
    r
}

pub fn router(state: Arc<AppState>) -> Router {
    // Built (and checked) once, before the first request.
    openapi_body();
    Router::from(api(Some(&state)))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// The OpenAPI document of `router`, built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| api(None).into_openapi())
}

/// The document as JSON, serialized once.
fn openapi_body() -> axum::body::Bytes {
    static BODY: OnceLock<axum::body::Bytes> = OnceLock::new();
    BODY.get_or_init(|| {
        serde_json::to_vec(openapi())
            .expect("the OpenAPI document serializes")
            .into()
    })
    .clone()
}

/// The paths the API router serves, read from a router built from the same list as `router`
/// (for tests that hold the document to the router).
pub fn served_paths() -> BTreeSet<String> {
    route_paths(&Router::from(api(None)))
}

/// The paths `router` serves, read from the router itself: axum has no way to list its routes
/// but its `Debug` output, whose path table holds each route's path (the fallback's are left out).
pub fn route_paths<S>(router: &Router<S>) -> BTreeSet<String> {
    let dbg = format!("{router:?}");
    let table = dbg.split("fallback_router").next().unwrap_or_default();
    table
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/') && !s.contains("__private__axum"))
        .map(str::to_string)
        .collect()
}

/// The token of a request: `Authorization: Bearer …`, or for `/ws` (browsers cannot set
/// headers on a WebSocket) a `ringwatch.bearer.<token>` subprotocol or a `token` query
/// parameter.
fn request_token(req: &Request) -> Result<Option<String>, crate::auth::AuthError> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        let h = h
            .to_str()
            .map_err(|_| crate::auth::AuthError::Invalid("the header is not text".into()))?;
        return crate::auth::bearer(h)
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| {
                crate::auth::AuthError::Invalid(
                    "use the Bearer scheme: Authorization: Bearer <token>".into(),
                )
            });
    }
    if req.uri().path() == "/ws" {
        // Browsers: a subprotocol "ringwatch.bearer.<token>" (kept out of URLs and logs), or
        // the `token` query parameter.
        let offered = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX));
        if let Some(t) = offered {
            return Ok(Some(t.to_string()));
        }
        let q: Query<HashMap<String, String>> = Query::try_from_uri(req.uri())
            .map_err(|_| crate::auth::AuthError::Invalid("bad query string".into()))?;
        return Ok(q.0.get("token").cloned());
    }
    Ok(None)
}

async fn guard(st: &AppState, need: Role, mut req: Request, next: Next) -> Response {
    let checked = request_token(&req).and_then(|t| st.auth.check(t.as_deref(), need));
    match checked {
        Ok(id) => {
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        Err(e) => {
            let status = if e.status() == 403 {
                st.metrics.auth_forbidden.inc();
                StatusCode::FORBIDDEN
            } else {
                st.metrics.auth_unauthorized.inc();
                StatusCode::UNAUTHORIZED
            };
            if let Some(unlogged) = st.refusal_log.allow() {
                tracing::info!(path = req.uri().path(), status = status.as_u16(), reason = %e, not_logged_since_last = unlogged, "request refused");
            }
            ApiError(status, e.to_string()).into_response()
        }
    }
}

async fn require_viewer(State(st): Shared, req: Request, next: Next) -> Response {
    guard(&st, Role::Viewer, req, next).await
}

async fn require_admin(State(st): Shared, req: Request, next: Next) -> Response {
    guard(&st, Role::Admin, req, next).await
}

/// Parameter descriptions shared by several operations.
const HOST_ID: &str = "The host's id: 1–253 characters of [A-Za-z0-9._-].";
const METRIC: &str = "One metric name, e.g. cpu.usage: 1–200 characters of [A-Za-z0-9._:-].";
const START_TIME: &str = "Start of the range, an RFC 3339 time (e.g. 2026-11-23T10:00:00Z); \
     default an hour before end_time. The range is at most viz's --max-range-hours long \
     (default 168).";
const END_TIME: &str =
    "End of the range, an RFC 3339 time (e.g. 2026-11-23T11:00:00Z); default now.";
const K: &str = "How many hosts, 1..=1000; default viz's --topk (10).";
const WINDOW: &str = "Leave out hosts whose newest value is older than this: a duration like 60s, \
     5m or 1h; default, and at most, viz's --topk-ttl-secs (1h).";
const TOPK_METRIC: &str = "The metric to rank by, e.g. mem.used_percent: 1–200 characters of \
     [A-Za-z0-9._:-]; default cpu.usage.";

/// viz is up.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "Always, while viz serves", body = HealthBody)))]
async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

/// viz is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Whether the API needs a token.
#[utoipa::path(get, path = "/api/auth", tag = "auth",
    responses((status = 200, description = "Whether tokens are checked", body = AuthInfo)))]
async fn auth_info(State(st): Shared) -> Json<AuthInfo> {
    Json(AuthInfo {
        required: st.auth.required(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthInfo {
    /// True when viz runs with --jwt-secret; false with --no-auth (everyone is an admin).
    pub required: bool,
}

/// This document.
///
/// OpenAPI, generated from the code that serves the routes. Public.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", body = Object,
        content_type = "application/json")))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_body()).into_response()
}

/// Who the token is.
#[utoipa::path(get, path = "/api/auth/whoami", tag = "auth",
    responses((status = 200, description = "The caller (anonymous admin with --no-auth)", body = Identity)))]
async fn whoami(Extension(id): Extension<Identity>) -> Json<Identity> {
    Json(id)
}

/// viz's configuration.
#[utoipa::path(get, path = "/api/admin/config", tag = "admin",
    responses((status = 200, description = "The configuration as its YAML file would hold it \
        (schema `VizConfig`), every secret shown as `<redacted>`", body = serde_json::Value)))]
async fn admin_config(State(st): Shared) -> Json<serde_json::Value> {
    Json(st.admin_config.clone())
}

/// Prometheus metrics of viz itself.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "OpenMetrics text 1.0.0", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(st): Shared) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, ringwatch_net::METRICS_CONTENT_TYPE)],
        st.metrics.render(&st.dashboard, &st.push.ws, &st.push.quic),
    )
}

/// The fleet at a glance.
#[utoipa::path(get, path = "/api/dashboard/summary", tag = "dashboard",
    responses((status = 200, description = "Host counts and averages", body = Summary)))]
async fn summary(State(st): Shared) -> Json<Summary> {
    Json(st.dashboard.summary(now_ms()))
}

/// Every host's row.
#[utoipa::path(get, path = "/api/dashboard/hosts", tag = "dashboard",
    responses((status = 200, description = "One row per known host, by host id", body = Vec<HostRow>)))]
async fn hosts(State(st): Shared) -> Json<Vec<HostRow>> {
    Json(st.dashboard.hosts(now_ms()))
}

/// The brokers as viz sees them.
#[utoipa::path(get, path = "/api/dashboard/cluster", tag = "dashboard",
    responses((status = 200, description = "Brokers, their health and the live feed", body = ClusterBody)))]
async fn cluster(State(st): Shared) -> Json<ClusterBody> {
    Json(cluster_body(&st))
}

/// The brokers as viz sees them, and what feeds the dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterBody {
    /// Every configured broker, in configuration order.
    pub brokers: Vec<BrokerStatus>,
    /// How many of them are healthy.
    pub healthy_brokers: usize,
    /// Whether live push from a broker feeds the dashboard now (false: fallback pull).
    pub live_push: bool,
    /// The brokers streaming to viz now.
    pub sources: Vec<String>,
    /// The broker cluster's leader (its node id): null until a broker has reported one.
    #[schema(required)]
    pub leader: Option<String>,
    /// The Raft term: null until a broker in a Raft cluster has reported it.
    #[schema(required)]
    pub term: Option<u64>,
    /// The ring's epoch: null until a broker has reported it.
    #[schema(required)]
    pub ring_epoch: Option<u64>,
}

fn cluster_body(st: &AppState) -> ClusterBody {
    let summary = st.dashboard.summary(now_ms());
    let brokers = st.pool.status();
    let healthy = brokers.iter().filter(|b| b.healthy).count();
    let cluster = st.pool.cluster();
    ClusterBody {
        brokers,
        healthy_brokers: healthy,
        live_push: summary.live_push,
        sources: summary.sources,
        leader: cluster
            .as_ref()
            .filter(|c| c.raft)
            .map(|c| c.leader.clone())
            .filter(|l| !l.is_empty()),
        term: cluster.as_ref().filter(|c| c.raft).map(|c| c.term),
        ring_epoch: cluster.as_ref().map(|c| c.ring_epoch),
    }
}

/// The whole dashboard in one answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardBody {
    pub summary: Summary,
    pub hosts: Vec<HostRow>,
    pub topk: DashboardTopK,
    pub cluster: ClusterBody,
}

/// The dashboard's Top-Ks (viz's --topk hosts, within --topk-ttl-secs).
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardTopK {
    #[serde(rename = "cpu.usage")]
    pub cpu_usage: Vec<TopEntry>,
    #[serde(rename = "mem.used_percent")]
    pub mem_used_percent: Vec<TopEntry>,
}

/// The whole dashboard: summary, hosts, Top-K of CPU and memory, cluster.
///
/// Rendered once per dashboard change and reused for up to a second.
#[utoipa::path(get, path = "/api/dashboard", tag = "dashboard",
    responses((status = 200, description = "The dashboard", body = DashboardBody)))]
async fn dashboard_all(State(st): Shared) -> Response {
    // Host states and the brokers' health move with time, so a render is never older than a
    // second.
    let now = now_ms();
    let version = st.dashboard.version();
    let cached = st.dashboard_cache.lock().ok().and_then(|c| {
        c.as_ref()
            .filter(|(v, at, _)| *v == version && now - *at < 1000)
            .map(|(_, _, body)| body.clone())
    });
    let body = match cached {
        Some(b) => b,
        None => {
            let b = match serde_json::to_vec(&render_dashboard(&st, now)) {
                Ok(b) => axum::body::Bytes::from(b),
                Err(e) => {
                    return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                        .into_response();
                }
            };
            if let Ok(mut c) = st.dashboard_cache.lock() {
                *c = Some((version, now, b.clone()));
            }
            b
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn render_dashboard(st: &AppState, now: i64) -> DashboardBody {
    DashboardBody {
        summary: st.dashboard.summary(now),
        hosts: st.dashboard.hosts(now),
        topk: DashboardTopK {
            cpu_usage: st.dashboard.topk("cpu.usage", st.topk, st.topk_ttl_ms, now),
            mem_used_percent: st
                .dashboard
                .topk("mem.used_percent", st.topk, st.topk_ttl_ms, now),
        },
        cluster: cluster_body(st),
    }
}

// The session itself is in `push/ws.rs` and `push/session.rs`; this is the route and its
// document.
/// Live push over a WebSocket.
///
/// Upgrades to a WebSocket of JSON text messages. The server sends
/// `{"type":"snapshot","hosts":[…]}` with every host's newest values, then
/// `{"type":"update","host_id":…,"timestamp_ms":…,"metrics":{name:{"value":…,"unit":…}}}` for
/// each new snapshot, `{"type":"downsampled","skipped":n}` when the client reads too slowly, and
/// `{"type":"error","error":…}` (with `"status":401` when the token expires; the socket closes).
/// A browser page from another origin is refused. The client may send
/// `{"type":"subscribe","hosts":[…],"metrics":["cpu.",…]}` (empty lists: everything). Browsers
/// cannot set headers on a WebSocket, so the token may come as the `token` query parameter.
#[utoipa::path(get, path = "/ws", tag = "push",
    params(("token" = Option<String>, Query,
        description = "The bearer token (JWT), for clients that cannot set the Authorization header")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request (plain text from the upgrade check)",
            body = String, content_type = "text/plain; charset=utf-8"),
        (status = 403, description = "A browser page from another origin", body = ErrorBody),
        (status = 503, description = "Too many WebSocket clients", body = ErrorBody),
    ))]
async fn ws(
    upgrade: WebSocketUpgrade,
    st: State<PushState>,
    who: Extension<Identity>,
    headers: axum::http::HeaderMap,
) -> Response {
    crate::push::ws::handler(upgrade, st, who, headers).await
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    p.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad(format!("missing parameter {name}")))
}

fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn time_param(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => humantime::parse_rfc3339_weak(v)
            .map(|t| Some(ms_of(t)))
            .map_err(|_| {
                ApiError::bad(format!(
                    "{name} {v:?} is not an RFC 3339 time (e.g. 2026-11-23T10:00:00Z)"
                ))
            }),
    }
}

/// (start, end) from `start_time` / `end_time`, default the last hour, bounded.
fn time_range(p: &HashMap<String, String>, max_range_ms: i64) -> Result<(i64, i64), ApiError> {
    let end = time_param(p, "end_time")?.unwrap_or_else(now_ms);
    let start = time_param(p, "start_time")?.unwrap_or(end - 3_600_000);
    if start > end {
        return Err(ApiError::bad("start_time is after end_time"));
    }
    if end - start > max_range_ms {
        return Err(ApiError::bad(format!(
            "the range is longer than the maximum of {} hours",
            max_range_ms / 3_600_000
        )));
    }
    Ok((start, end))
}

fn host_param(p: &HashMap<String, String>) -> Result<String, ApiError> {
    let h = param(p, "host_id")?;
    if h.len() > 253
        || !h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ApiError::bad(
            "host_id must be 1–253 characters of [A-Za-z0-9._-]",
        ));
    }
    Ok(h.to_string())
}

fn metric_list(p: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let Some(v) = p.get("metrics").filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if names.len() > 256 {
        return Err(ApiError::bad("at most 256 metric names"));
    }
    for n in &names {
        let bare = n.strip_suffix('*').unwrap_or(n);
        if bare.len() > 200
            || !bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        {
            return Err(ApiError::bad(format!(
                "metric name {n:?} must be characters of [A-Za-z0-9._:-], optionally ending in *"
            )));
        }
    }
    Ok(names)
}

/// A host's range from the brokers.
async fn fetch(
    st: &AppState,
    host: &str,
    start: i64,
    end: i64,
    names: Vec<String>,
    step_ms: i64,
) -> Result<Vec<RangeChunk>, ApiError> {
    let limit = st.max_points as u32;
    let chunks = st
        .pool
        .call(st.pool.for_host(host), |mut c| {
            let req = RangeRequest {
                host_id: host.to_string(),
                start_ms: start,
                end_ms: end,
                metric_names: names.clone(),
                limit,
                sparse_ok: true,
                step_ms,
            };
            async move {
                let mut stream = c.range(req).await?.into_inner();
                let mut chunks = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    chunks.push(chunk);
                }
                Ok(chunks)
            }
        })
        .await?;
    Ok(chunks)
}

/// One metric over the range.
#[derive(Debug, Serialize, Default, ToSchema)]
pub struct Series {
    pub name: String,
    /// The unit's name (percent, bytes, …; empty when unspecified).
    pub unit: &'static str,
    /// One per timestamp; null where the host did not report the metric. With a step of whole
    /// minutes: each bucket's average.
    pub values: Vec<Option<f64>>,
    /// With a step of whole minutes (read from the stored rollups): each bucket's lowest and
    /// highest raw value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub min: Vec<Option<f64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub max: Vec<Option<f64>>,
}

/// A host's history: one timestamp column and a series per metric, aligned.
#[derive(Debug, Serialize, Default, ToSchema)]
pub struct RangeBody {
    pub host_id: String,
    /// RFC 3339, milliseconds.
    #[schema(format = DateTime)]
    pub start_time: String,
    /// RFC 3339, milliseconds.
    #[schema(format = DateTime)]
    pub end_time: String,
    /// Unix ms, oldest first (with `step`: each bucket's start).
    pub timestamps: Vec<i64>,
    pub series: Vec<Series>,
    /// The bucket width when `step` was given; absent for raw points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<i64>,
    /// With `step`: the snapshots averaged into each bucket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<u32>,
    /// True when the range held more than one query returns (viz's --max-points, or the
    /// broker's limit of values per answer): only the oldest were read; ask for a shorter
    /// range or fewer metrics.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Brokers that hold part of this range and did not answer (a cluster member down): the
    /// rows they hold are missing until they are back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_brokers: Vec<String>,
}

/// `body` averaged into buckets of `step_ms` aligned to `start`: one timestamp per bucket that
/// has rows (the bucket's start), and per series the mean of the values it has there (null
/// where it has none).
pub fn downsample(mut body: RangeBody, start: i64, step_ms: i64) -> RangeBody {
    // Row ranges of each bucket; timestamps arrive in order.
    let mut bounds: Vec<(i64, usize, usize)> = Vec::new();
    for (i, &t) in body.timestamps.iter().enumerate() {
        let b = start + (t - start).div_euclid(step_ms) * step_ms;
        match bounds.last_mut() {
            Some((last, _, end)) if *last == b => *end = i + 1,
            _ => bounds.push((b, i, i + 1)),
        }
    }
    for s in &mut body.series {
        s.values = bounds
            .iter()
            .map(|&(_, from, to)| {
                let (sum, n) = s.values[from..to]
                    .iter()
                    .flatten()
                    .fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
                (n > 0).then(|| sum / f64::from(n))
            })
            .collect();
    }
    body.timestamps = bounds.iter().map(|&(b, _, _)| b).collect();
    body.rows = bounds
        .iter()
        .map(|&(_, from, to)| (to - from) as u32)
        .collect();
    body.step_ms = Some(step_ms);
    body
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// Column chunks joined into one set of series over all timestamps, at most `max_cells`
/// values in all (timestamps × series, nulls included): past it only the oldest rows are kept
/// and the body says `truncated`. The size is settled before anything is padded, so a host with
/// thousands of sparse series costs this answer no more than the bound.
pub fn join(
    host: &str,
    start: i64,
    end: i64,
    chunks: &[RangeChunk],
    max_cells: usize,
) -> RangeBody {
    let mut body = RangeBody {
        host_id: host.into(),
        start_time: rfc3339(start),
        end_time: rfc3339(end),
        ..Default::default()
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    for c in chunks {
        body.missing_brokers
            .extend(c.missing_brokers.iter().cloned());
        for col in &c.columns {
            index.entry(col.name.as_str()).or_insert_with(|| {
                body.series.push(Series {
                    name: col.name.clone(),
                    unit: Unit::try_from(col.unit)
                        .unwrap_or(Unit::Unspecified)
                        .as_name(),
                    ..Series::default()
                });
                body.series.len() - 1
            });
        }
    }
    let total: usize = chunks.iter().map(|c| c.timestamps_ms.len()).sum();
    let rows = match body.series.len() {
        0 => total,
        n => total.min((max_cells / n).max(1)),
    };
    body.truncated = rows < total;
    let rollups = chunks
        .iter()
        .any(|c| c.columns.iter().any(|col| !col.count.is_empty()));
    for s in &mut body.series {
        s.values = vec![None; rows];
        if rollups {
            s.min = vec![None; rows];
            s.max = vec![None; rows];
        }
    }
    if rollups {
        body.rows = vec![0; rows];
    }
    let mut offset = 0;
    for c in chunks {
        if offset >= rows {
            break;
        }
        let take = c.timestamps_ms.len().min(rows - offset);
        body.timestamps.extend_from_slice(&c.timestamps_ms[..take]);
        for col in &c.columns {
            let s = &mut body.series[index[col.name.as_str()]];
            let sparse = !col.rows.is_empty();
            for (i, &v) in col.values.iter().enumerate() {
                let row = if sparse {
                    col.rows.get(i).map_or(usize::MAX, |&r| r as usize)
                } else {
                    i
                };
                if v.is_nan() || row >= take {
                    continue;
                }
                s.values[offset + row] = Some(v);
                if rollups {
                    s.min[offset + row] = col.min.get(i).copied();
                    s.max[offset + row] = col.max.get(i).copied();
                    let n = col.count.get(i).copied().unwrap_or(0);
                    let slot = &mut body.rows[offset + row];
                    *slot = (*slot).max(n);
                }
            }
        }
        offset += take;
    }
    body
}

/// A host's stored history.
///
/// At most viz's --max-points (default 100000) snapshots.
#[utoipa::path(get, path = "/api/metrics", tag = "metrics",
    params(
        ("host_id" = String, Query, description = HOST_ID, max_length = 253, pattern = "^[A-Za-z0-9._-]+$"),
        ("metrics" = Option<String>, Query, description = "Comma-separated metric names, at most \
            256, each up to 200 characters of [A-Za-z0-9._:-] optionally ending in * (a prefix), \
            e.g. cpu.usage,mem.*; default every metric.", example = "cpu.usage,mem.*"),
        ("start_time" = Option<String>, Query, format = DateTime, description = START_TIME),
        ("end_time" = Option<String>, Query, format = DateTime, description = END_TIME),
        ("step" = Option<String>, Query, description = "Average into buckets of this width (a \
            duration like 30s or 5m; at least 1s; at most 10000 buckets) — one request for a long \
            range of several series; default: every point.", example = "30s"),
    ),
    responses(
        (status = 200, description = "The series over the range", body = RangeBody),
        (status = 400, description = "A missing or bad parameter, or a range too long", body = ErrorBody),
        (status = 404, description = "Unknown host", body = ErrorBody),
        (status = 413, description = "More data than a broker returns at once", body = ErrorBody),
        (status = 503, description = "No broker answered", body = ErrorBody),
    ))]
async fn range(State(st): Shared, Query(p): Params) -> Result<Response, ApiError> {
    let slot = tokio::time::timeout(
        Duration::from_secs(10),
        st.range_slots.clone().acquire_owned(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{RANGE_SLOTS} range answers are being built or sent; retry in a moment"),
        )
    })?;
    let host = host_param(&p)?;
    let (start, end) = time_range(&p, st.max_range_ms)?;
    let names = metric_list(&p)?;
    let step_ms = match p.get("step").filter(|v| !v.is_empty()) {
        None => None,
        Some(_) => Some(step_param(&st, &p, start, end)?),
    };
    // A step of whole minutes reads the brokers' stored rollups (one row per bucket, with min
    // and max); a shorter one averages the raw points here.
    let rollup_step = step_ms.filter(|s| s % ringwatch_proto::ROLLUP_MS == 0);
    let chunks = fetch(&st, &host, start, end, names, rollup_step.unwrap_or(0)).await?;
    let mut body = join(&host, start, end, &chunks, st.max_cells);
    // Past viz's --max-points or --max-cells, or the broker's limit of values per answer.
    body.truncated |= (rollup_step.is_none() && body.timestamps.len() >= st.max_points)
        || chunks.last().is_some_and(|c| c.truncated);
    Ok(stream_json(
        match (step_ms, rollup_step) {
            (Some(step), None) => downsample(body, start, step),
            (_, Some(step)) => {
                body.step_ms = Some(step);
                body
            }
            (None, None) => body,
        },
        slot,
    ))
}

/// Range answers built or sent at once.
pub const RANGE_SLOTS: usize = 16;

/// A JSON body written as it is serialized, 64 KiB at a time on a blocking thread, so a large
/// answer is never held whole as text (and a client that goes away stops the serializing).
/// `hold` is kept until the last byte is handed over (or the client is gone).
fn stream_json<T: Serialize + Send + 'static>(value: T, hold: impl Send + 'static) -> Response {
    struct Chunks {
        buf: Vec<u8>,
        tx: tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>,
    }
    impl Chunks {
        fn send(&mut self) -> std::io::Result<()> {
            let chunk = axum::body::Bytes::from(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(STREAM_CHUNK),
            ));
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
        }
    }
    impl std::io::Write for Chunks {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.buf.extend_from_slice(data);
            if self.buf.len() >= STREAM_CHUNK {
                self.send()?;
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if self.buf.is_empty() {
                Ok(())
            } else {
                self.send()
            }
        }
    }
    const STREAM_CHUNK: usize = 64 << 10;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            buf: Vec::with_capacity(STREAM_CHUNK),
            tx,
        };
        if let Err(e) = serde_json::to_writer(&mut out, &value)
            .map_err(std::io::Error::from)
            .and_then(|()| std::io::Write::flush(&mut out))
        {
            tracing::debug!(error = %e, "a streamed JSON answer ended early");
        }
        drop(hold);
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// `step` as milliseconds: at least 1 s, at most the longest range, at most 10000 buckets.
fn step_param(
    st: &AppState,
    p: &HashMap<String, String>,
    start: i64,
    end: i64,
) -> Result<i64, ApiError> {
    let step = duration_param(p, "step", Duration::from_secs(60))?;
    if step < Duration::from_secs(1) {
        return Err(ApiError::bad("step must be at least 1s"));
    }
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if step_ms > st.max_range_ms {
        return Err(ApiError::bad("step is longer than the longest range"));
    }
    if (end - start) / step_ms > 10_000 {
        return Err(ApiError::bad("more than 10000 buckets; use a larger step"));
    }
    Ok(step_ms)
}

/// A host's newest values, from memory.
#[utoipa::path(get, path = "/api/metrics/host/{id}", tag = "metrics",
    params(("id" = String, Path, description = "The host's id")),
    responses(
        (status = 200, description = "The host and all its newest values", body = HostDetail),
        (status = 404, description = "Unknown host", body = ErrorBody),
    ))]
async fn host(
    State(st): Shared,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult<HostDetail> {
    // A plain reason in JSON, not the path parser's own words in text.
    let bad =
        || ApiError::bad("the host id in the path must be 1–253 characters of [A-Za-z0-9._-]");
    let Path(id) = id.map_err(|_| bad())?;
    if id.is_empty()
        || id.len() > 253
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad());
    }
    st.dashboard
        .host(&id, now_ms())
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown host {id:?}")))
}

fn metric_param(p: &HashMap<String, String>) -> Result<String, ApiError> {
    let m = param(p, "metric")?;
    if m.len() > 200
        || !m
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
    {
        return Err(ApiError::bad(format!(
            "metric {m:?} must be 1–200 characters of [A-Za-z0-9._:-]"
        )));
    }
    Ok(m.to_string())
}

fn duration_param(
    p: &HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, ApiError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v).map_err(|_| {
            ApiError::bad(format!("{name} {v:?} is not a duration (e.g. 60s, 5m, 1h)"))
        }),
    }
}

/// A metric of a host in buckets.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateBody {
    pub host_id: String,
    pub metric: String,
    pub step_ms: i64,
    #[schema(format = DateTime)]
    pub start_time: String,
    #[schema(format = DateTime)]
    pub end_time: String,
    pub buckets: Vec<Bucket>,
}

/// A metric's least-squares trend.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendBody {
    pub host_id: String,
    pub metric: String,
    #[schema(format = DateTime)]
    pub start_time: String,
    #[schema(format = DateTime)]
    pub end_time: String,
    /// Points in the range (at least 2).
    pub points: usize,
    /// The oldest value.
    pub first: f64,
    /// The newest value.
    pub last: f64,
    /// Least-squares slope, in the metric's unit per hour.
    pub slope_per_hour: f64,
    /// rising, falling or flat (a change within 1 % of the range's spread is flat).
    #[schema(example = "flat")]
    pub direction: &'static str,
}

/// The hosts with the highest newest value of a metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopKBody {
    pub metric: String,
    pub k: usize,
    /// The window used (ms), capped at viz's --topk-ttl-secs.
    pub window_ms: i64,
    pub entries: Vec<TopEntry>,
}

/// One metric's points of the host `p` names, over `start..=end`: (host, metric, points).
async fn points(
    st: &AppState,
    p: &HashMap<String, String>,
    (start, end): (i64, i64),
) -> Result<(String, String, Vec<(i64, f64)>), ApiError> {
    let host = host_param(p)?;
    let metric = metric_param(p)?;
    let chunks = fetch(st, &host, start, end, vec![metric.clone()], 0).await?;
    let mut pts = Vec::new();
    for c in &chunks {
        if let Some(col) = c.columns.iter().find(|col| col.name == metric) {
            pts.extend(
                col.present()
                    .filter_map(|(row, v)| Some((*c.timestamps_ms.get(row)?, v))),
            );
        }
    }
    Ok((host, metric, pts))
}

/// A metric of a host in time buckets: count, sum, avg, min, max and percentiles.
#[utoipa::path(get, path = "/api/metrics/aggregate", tag = "metrics",
    params(
        ("host_id" = String, Query, description = HOST_ID, max_length = 253, pattern = "^[A-Za-z0-9._-]+$"),
        ("metric" = String, Query, description = METRIC, max_length = 200, pattern = "^[A-Za-z0-9._:-]+$"),
        ("step" = Option<String>, Query, description = "Bucket width: a duration like 60s, 5m or \
            1h; default 1m, at least 1s, at most the longest range; at most 10000 buckets.",
            example = "5m"),
        ("start_time" = Option<String>, Query, format = DateTime, description = START_TIME),
        ("end_time" = Option<String>, Query, format = DateTime, description = END_TIME),
    ),
    responses(
        (status = 200, description = "The buckets that have points, oldest first", body = AggregateBody),
        (status = 400, description = "A missing or bad parameter, a range too long, or too many buckets", body = ErrorBody),
        (status = 404, description = "Unknown host", body = ErrorBody),
        (status = 413, description = "More data than a broker returns at once", body = ErrorBody),
        (status = 503, description = "No broker answered", body = ErrorBody),
    ))]
async fn aggregate(State(st): Shared, Query(p): Params) -> ApiResult<AggregateBody> {
    let (start, end) = time_range(&p, st.max_range_ms)?;
    let step_ms = step_param(&st, &p, start, end)?;
    let (host, metric, pts) = points(&st, &p, (start, end)).await?;
    Ok(Json(AggregateBody {
        buckets: buckets(&pts, start, step_ms),
        host_id: host,
        metric,
        step_ms,
        start_time: rfc3339(start),
        end_time: rfc3339(end),
    }))
}

/// Whether a metric of a host rises, falls or stays flat over the range.
#[utoipa::path(get, path = "/api/analysis/trend", tag = "analysis",
    params(
        ("host_id" = String, Query, description = HOST_ID, max_length = 253, pattern = "^[A-Za-z0-9._-]+$"),
        ("metric" = String, Query, description = METRIC, max_length = 200, pattern = "^[A-Za-z0-9._:-]+$"),
        ("start_time" = Option<String>, Query, format = DateTime, description = START_TIME),
        ("end_time" = Option<String>, Query, format = DateTime, description = END_TIME),
    ),
    responses(
        (status = 200, description = "The trend", body = TrendBody),
        (status = 400, description = "A missing or bad parameter, or a range too long", body = ErrorBody),
        (status = 404, description = "Unknown host, or fewer than 2 points of the metric in the range", body = ErrorBody),
        (status = 413, description = "More data than a broker returns at once", body = ErrorBody),
        (status = 503, description = "No broker answered", body = ErrorBody),
    ))]
async fn trend(State(st): Shared, Query(p): Params) -> ApiResult<TrendBody> {
    let (start, end) = time_range(&p, st.max_range_ms)?;
    let (host, metric, pts) = points(&st, &p, (start, end)).await?;
    let Some((slope, direction)) = trend_of(&pts) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("fewer than 2 points of {metric} for {host} in the range"),
        ));
    };
    Ok(Json(TrendBody {
        host_id: host,
        metric,
        start_time: rfc3339(start),
        end_time: rfc3339(end),
        points: pts.len(),
        first: pts[0].1,
        last: pts[pts.len() - 1].1,
        slope_per_hour: slope,
        direction,
    }))
}

/// Top-K on the dashboard: the hosts with the highest newest value of a metric, from memory.
#[utoipa::path(get, path = "/api/dashboard/topk", tag = "dashboard",
    params(
        ("metric" = Option<String>, Query, description = TOPK_METRIC, max_length = 200, pattern = "^[A-Za-z0-9._:-]+$"),
        ("k" = Option<u32>, Query, description = K, minimum = 1, maximum = 1000),
        ("window" = Option<String>, Query, description = WINDOW, example = "10m"),
    ),
    responses(
        (status = 200, description = "The Top-K, highest first", body = TopKBody),
        (status = 400, description = "A bad metric, k or window", body = ErrorBody),
    ))]
async fn dashboard_topk(st: Shared, p: Params) -> ApiResult<TopKBody> {
    topk(st, p).await
}

/// Top-K analysis: the hosts with the highest newest value of a metric, from memory.
#[utoipa::path(get, path = "/api/analysis/topk", tag = "analysis",
    params(
        ("metric" = Option<String>, Query, description = TOPK_METRIC, max_length = 200, pattern = "^[A-Za-z0-9._:-]+$"),
        ("k" = Option<u32>, Query, description = K, minimum = 1, maximum = 1000),
        ("window" = Option<String>, Query, description = WINDOW, example = "10m"),
    ),
    responses(
        (status = 200, description = "The Top-K, highest first", body = TopKBody),
        (status = 400, description = "A bad metric, k or window", body = ErrorBody),
    ))]
async fn analysis_topk(st: Shared, p: Params) -> ApiResult<TopKBody> {
    topk(st, p).await
}

async fn topk(State(st): Shared, Query(p): Params) -> ApiResult<TopKBody> {
    let metric = match p.get("metric").filter(|m| !m.is_empty()) {
        Some(_) => metric_param(&p)?,
        None => "cpu.usage".to_string(),
    };
    let k = match p.get("k") {
        None => st.topk,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=1000).contains(k))
            .ok_or_else(|| ApiError::bad(format!("k {v:?} must be 1..=1000")))?,
    };
    let window = duration_param(&p, "window", Duration::from_millis(st.topk_ttl_ms as u64))?;
    let window_ms = i64::try_from(window.as_millis())
        .unwrap_or(i64::MAX)
        .min(st.topk_ttl_ms);
    Ok(Json(TopKBody {
        entries: st.dashboard.topk(&metric, k, window_ms, now_ms()),
        metric,
        k,
        window_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Auth;
    use crate::brokers::BrokerPool;
    use crate::metrics::VizMetrics;
    use ringwatch_proto::Column;

    /// The API's state with one broker that is not there (needs a Tokio runtime).
    fn test_state() -> Arc<AppState> {
        let pool = Arc::new(
            BrokerPool::new(
                &["http://127.0.0.1:1".to_string()],
                &ringwatch_net::client::Connector::plain(),
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let dashboard: Arc<crate::dashboard::Dashboard> = Arc::default();
        let metrics = Arc::new(VizMetrics::new(Arc::default(), pool.clone()));
        let auth = Arc::new(Auth::new(None));
        let push = PushState::new(
            dashboard.clone(),
            auth.clone(),
            Duration::from_secs(30),
            Default::default(),
            metrics.auth_unauthorized.clone(),
        );
        Arc::new(AppState {
            dashboard,
            metrics,
            pool,
            topk: 10,
            topk_ttl_ms: 3_600_000,
            max_range_ms: 3_600_000,
            max_points: 1000,
            max_cells: 2_000_000,
            range_slots: Arc::new(tokio::sync::Semaphore::new(RANGE_SLOTS)),
            dashboard_cache: Default::default(),
            auth,
            admin_config: crate::Config::default().shown(),
            refusal_log: ringwatch_net::Throttle::default(),
            push,
        })
    }

    #[test]
    fn downsample_averages_each_series_per_bucket() {
        let body = RangeBody {
            host_id: "h".into(),
            timestamps: vec![1000, 2000, 31_000, 32_000, 95_000],
            series: vec![
                Series {
                    name: "a".into(),
                    unit: "percent",
                    values: vec![Some(1.0), Some(3.0), None, Some(10.0), None],
                    ..Default::default()
                },
                Series {
                    name: "b".into(),
                    unit: "",
                    values: vec![None, None, Some(5.0), Some(7.0), Some(1.0)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let d = downsample(body, 0, 30_000);
        // Buckets 0, 30 s and 90 s have rows; 60 s has none and is left out.
        assert_eq!(d.timestamps, vec![0, 30_000, 90_000]);
        assert_eq!(d.series[0].values, vec![Some(2.0), Some(10.0), None]);
        assert_eq!(d.series[1].values, vec![None, Some(6.0), Some(1.0)]);
        assert_eq!(d.step_ms, Some(30_000));
        assert_eq!(d.rows, vec![2, 2, 1]);
    }

    #[test]
    fn the_openapi_document_builds_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_slice(&openapi_body()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        assert_eq!(doc["info"]["title"], "Ringwatch viz API");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        let paths = doc["paths"].as_object().unwrap();
        let documented: BTreeSet<String> = paths.keys().cloned().collect();
        assert_eq!(
            documented,
            served_paths(),
            "the document against the router"
        );
        let public = ["/health", "/metrics", "/api/auth", "/api/openapi.json"];
        let guarded = [
            "/api/auth/whoami",
            "/api/dashboard",
            "/api/dashboard/summary",
            "/api/dashboard/hosts",
            "/api/dashboard/topk",
            "/api/dashboard/cluster",
            "/api/metrics",
            "/api/metrics/host/{id}",
            "/api/metrics/aggregate",
            "/api/analysis/trend",
            "/api/analysis/topk",
            "/ws",
            "/api/admin/config",
        ];
        let named: BTreeSet<String> = public
            .iter()
            .chain(&guarded)
            .map(|p| p.to_string())
            .collect();
        assert_eq!(documented, named);
        let error_ref = "#/components/schemas/ErrorBody";
        for (path, item) in paths {
            let op = &item["get"];
            assert!(op.is_object(), "{path}: a GET");
            let security = op["security"].as_array();
            if public.contains(&path.as_str()) {
                assert!(security.is_none(), "{path} is public: {op}");
            } else {
                assert_eq!(
                    security.unwrap(),
                    &vec![serde_json::json!({ BEARER: [] })],
                    "{path}"
                );
                assert_eq!(
                    op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                    error_ref,
                    "{path}"
                );
            }
            // 403: too small a role (admin routes), or a page from another origin (/ws).
            assert_eq!(
                op["responses"]["403"].is_object(),
                path.starts_with("/api/admin") || path == "/ws",
                "{path}: 403 only for admin and /ws"
            );
            let ok = if path == "/ws" { "101" } else { "200" };
            let ok = &op["responses"][ok];
            assert!(ok.is_object(), "{path}: {op}");
            if path != "/ws" {
                let content = ok["content"].as_object().unwrap();
                assert!(
                    content.values().all(|c| c["schema"].is_object()),
                    "{path}: {ok}"
                );
            }
            for (code, r) in op["responses"].as_object().unwrap() {
                if (code.starts_with('4') || code.starts_with('5'))
                    && let Some(json) = r["content"].get("application/json")
                {
                    assert_eq!(json["schema"]["$ref"], error_ref, "{path} {code}");
                }
            }
        }
        let params = |path: &str| paths[path]["get"]["parameters"].as_array().unwrap().clone();
        let p = params("/api/metrics/aggregate");
        let host = p.iter().find(|p| p["name"] == "host_id").unwrap();
        assert_eq!(
            (host["in"].as_str(), host["required"].as_bool()),
            (Some("query"), Some(true))
        );
        let start = p.iter().find(|p| p["name"] == "start_time").unwrap();
        assert_eq!(start["required"], false);
        assert!(start["description"].as_str().unwrap().contains("RFC 3339"));
        assert_eq!(params("/api/metrics/host/{id}")[0]["in"], "path");
        assert_eq!(params("/ws")[0]["name"], "token");
        for name in [
            "TrendBody",
            "AggregateBody",
            "DashboardBody",
            "ClusterBody",
            "VizConfig",
        ] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    #[tokio::test]
    async fn the_router_serves_exactly_the_documented_paths() {
        let served = route_paths(&router(test_state()));
        assert!(served.contains("/api/metrics/host/{id}"), "{served:?}");
        let documented: BTreeSet<String> = openapi().paths.paths.keys().cloned().collect();
        assert_eq!(served, documented);
    }

    #[test]
    fn chunks_join_into_aligned_series() {
        let chunks = vec![
            RangeChunk {
                timestamps_ms: vec![1, 2],
                columns: vec![Column {
                    name: "a".into(),
                    unit: 1,
                    values: vec![1.0, f64::NAN],
                    rows: vec![],
                    ..Default::default()
                }],
                truncated: false,
                missing_brokers: vec![],
            },
            RangeChunk {
                timestamps_ms: vec![3],
                columns: vec![
                    Column {
                        name: "b".into(),
                        unit: 2,
                        values: vec![7.0],
                        rows: vec![],
                        ..Default::default()
                    },
                    Column {
                        name: "a".into(),
                        unit: 1,
                        values: vec![3.0],
                        rows: vec![],
                        ..Default::default()
                    },
                ],
                truncated: false,
                missing_brokers: vec![],
            },
        ];
        let body = join("h", 0, 10, &chunks, usize::MAX);
        assert_eq!(body.timestamps, vec![1, 2, 3]);
        assert_eq!(body.series[0].values, vec![Some(1.0), None, Some(3.0)]);
        assert_eq!(body.series[1].values, vec![None, None, Some(7.0)]);
        assert_eq!(body.series[1].unit, "bytes");
        assert!(!body.truncated);
        // At most 4 values: 2 series × 2 rows, the oldest, said to be cut short.
        let cut = join("h", 0, 10, &chunks, 4);
        assert_eq!(cut.timestamps, vec![1, 2]);
        assert_eq!(cut.series[0].values, vec![Some(1.0), None]);
        assert_eq!(cut.series[1].values, vec![None, None]);
        assert!(cut.truncated);
        // A sparse column (only row 1 of 3) lands on its row.
        let sparse = vec![RangeChunk {
            timestamps_ms: vec![5, 6, 7],
            columns: vec![Column {
                name: "s".into(),
                unit: 0,
                values: vec![9.0],
                rows: vec![1],
                ..Default::default()
            }],
            truncated: false,
            missing_brokers: vec![],
        }];
        let body = join("h", 0, 10, &sparse, usize::MAX);
        assert_eq!(body.series[0].values, vec![None, Some(9.0), None]);
    }

    #[test]
    fn parameters_are_checked() {
        let p = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert!(host_param(&p(&[])).is_err());
        assert!(host_param(&p(&[("host_id", "a b")])).is_err());
        assert!(time_range(&p(&[("start_time", "yesterday")]), 1 << 40).is_err());
        assert!(
            time_range(
                &p(&[
                    ("start_time", "2026-11-23T10:00:00Z"),
                    ("end_time", "2026-11-23T09:00:00Z")
                ]),
                1 << 40
            )
            .is_err()
        );
        let (s, e) = time_range(
            &p(&[
                ("start_time", "2026-11-23T10:00:00Z"),
                ("end_time", "2026-11-23T11:00:00Z"),
            ]),
            1 << 40,
        )
        .unwrap();
        assert_eq!(e - s, 3_600_000);
        assert!(
            time_range(
                &p(&[
                    ("start_time", "2026-11-01T10:00:00Z"),
                    ("end_time", "2026-11-23T11:00:00Z")
                ]),
                3_600_000
            )
            .is_err()
        );
        assert!(metric_list(&p(&[("metrics", "cpu.*,mem.used")])).is_ok());
        assert!(metric_list(&p(&[("metrics", "cpu usage")])).is_err());
    }
}
