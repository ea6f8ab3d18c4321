//! The HTTP API (axum). Dashboard endpoints answer from memory; detail queries go to brokers.
//! Every error is JSON `{"error": reason}` with the right status: 400 bad parameters, 404
//! unknown host, 503 no broker answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ringwatch_proto::{RangeChunk, RangeRequest, Unit};
use serde::Serialize;
use serde_json::json;

use crate::auth::{Auth, Identity, Role};
use crate::brokers::BrokerPool;
use crate::dashboard::{Dashboard, now_ms};
use crate::metrics::VizMetrics;

pub struct AppState {
    pub dashboard: Arc<Dashboard>,
    pub pool: Arc<BrokerPool>,
    pub metrics: Arc<VizMetrics>,
    pub topk: usize,
    pub topk_ttl_ms: i64,
    pub max_range_ms: i64,
    pub max_points: usize,
    pub ws: crate::push::PushCounters,
    pub quic: crate::push::PushCounters,
    pub ws_heartbeat: Duration,
    /// The last `/api/dashboard` render: (dashboard version, when, body).
    pub dashboard_cache: std::sync::Mutex<Option<(u64, i64, axum::body::Bytes)>>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub auth: Auth,
    /// viz's configuration as an admin may read it (the secret left out).
    pub admin_config: serde_json::Value,
}

type Shared = State<Arc<AppState>>;

/// An API error: status and reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, reason.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({"error": self.1}))).into_response();
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

pub fn router(state: Arc<AppState>) -> Router {
    let viewer = Router::new()
        .route("/api/auth/whoami", get(whoami))
        .route("/api/dashboard", get(dashboard_all))
        .route("/api/dashboard/summary", get(summary))
        .route("/api/dashboard/hosts", get(hosts))
        .route("/api/dashboard/topk", get(topk))
        .route("/api/dashboard/cluster", get(cluster))
        .route("/api/metrics", get(range))
        .route("/api/metrics/host/{id}", get(host))
        .route("/api/metrics/aggregate", get(aggregate))
        .route("/api/analysis/trend", get(trend))
        .route("/api/analysis/topk", get(topk))
        .route("/ws", get(crate::ws::handler))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_viewer,
        ));
    let admin = Router::new()
        .route("/api/admin/config", get(admin_config))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/api/auth", get(auth_info))
        .merge(viewer)
        .merge(admin)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// The token of a request: `Authorization: Bearer …`, or for `/ws` (browsers cannot set
/// headers on a WebSocket) a `token` query parameter.
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
            tracing::info!(path = req.uri().path(), status = status.as_u16(), reason = %e, "request refused");
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

async fn auth_info(State(st): Shared) -> Json<serde_json::Value> {
    Json(json!({"required": st.auth.required()}))
}

async fn whoami(Extension(id): Extension<Identity>) -> Json<Identity> {
    Json(id)
}

async fn admin_config(State(st): Shared) -> Json<serde_json::Value> {
    Json(st.admin_config.clone())
}

async fn metrics(State(st): Shared) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&st.dashboard, &st.ws, &st.quic),
    )
}

async fn summary(State(st): Shared) -> Json<crate::dashboard::Summary> {
    Json(st.dashboard.summary(now_ms()))
}

async fn hosts(State(st): Shared) -> Json<Vec<crate::dashboard::HostRow>> {
    Json(st.dashboard.hosts(now_ms()))
}

async fn cluster(State(st): Shared) -> Json<serde_json::Value> {
    Json(cluster_json(&st))
}

fn cluster_json(st: &AppState) -> serde_json::Value {
    let summary = st.dashboard.summary(now_ms());
    let brokers = st.pool.status();
    let healthy = brokers.iter().filter(|b| b.healthy).count();
    json!({
        "brokers": brokers,
        "healthy_brokers": healthy,
        "live_push": summary.live_push,
        "sources": summary.sources,
        // The broker cluster (leader, ring epoch) arrives with the Raft control plane.
        "leader": null,
        "ring_epoch": null,
    })
}

/// `/api/dashboard`, rendered once per dashboard change and reused for up to a second (host
/// states and the brokers' health move with time, so a render is never older than that).
async fn dashboard_all(State(st): Shared) -> Response {
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
            let b = axum::body::Bytes::from(render_dashboard(&st, now).to_string());
            if let Ok(mut c) = st.dashboard_cache.lock() {
                *c = Some((version, now, b.clone()));
            }
            b
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn render_dashboard(st: &AppState, now: i64) -> serde_json::Value {
    json!({
        "summary": st.dashboard.summary(now),
        "hosts": st.dashboard.hosts(now),
        "topk": {
            "cpu.usage": st.dashboard.topk("cpu.usage", st.topk, st.topk_ttl_ms, now),
            "mem.used_percent": st.dashboard.topk("mem.used_percent", st.topk, st.topk_ttl_ms, now),
        },
        "cluster": cluster_json(st),
    })
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

#[derive(Debug, Serialize, Default)]
pub struct Series {
    pub name: String,
    pub unit: &'static str,
    /// One per timestamp; null where the host did not report the metric.
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, Default)]
pub struct RangeBody {
    pub host_id: String,
    pub start_time: String,
    pub end_time: String,
    pub timestamps: Vec<i64>,
    pub series: Vec<Series>,
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// Column chunks joined into one set of series over all timestamps.
pub fn join(host: &str, start: i64, end: i64, chunks: &[RangeChunk]) -> RangeBody {
    let mut body = RangeBody {
        host_id: host.into(),
        start_time: rfc3339(start),
        end_time: rfc3339(end),
        ..Default::default()
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    for c in chunks {
        let offset = body.timestamps.len();
        body.timestamps.extend_from_slice(&c.timestamps_ms);
        for col in &c.columns {
            let i = *index.entry(col.name.as_str()).or_insert_with(|| {
                body.series.push(Series {
                    name: col.name.clone(),
                    unit: Unit::try_from(col.unit)
                        .unwrap_or(Unit::Unspecified)
                        .as_name(),
                    values: Vec::new(),
                });
                body.series.len() - 1
            });
            let values = &mut body.series[i].values;
            values.resize(offset, None);
            values.extend(col.values.iter().map(|v| (!v.is_nan()).then_some(*v)));
        }
    }
    let n = body.timestamps.len();
    for s in &mut body.series {
        s.values.resize(n, None);
    }
    body
}

async fn range(State(st): Shared, Query(p): Params) -> ApiResult<RangeBody> {
    let host = host_param(&p)?;
    let (start, end) = time_range(&p, st.max_range_ms)?;
    let names = metric_list(&p)?;
    let chunks = fetch(&st, &host, start, end, names).await?;
    Ok(Json(join(&host, start, end, &chunks)))
}

async fn host(
    State(st): Shared,
    Path(id): Path<String>,
) -> ApiResult<crate::dashboard::HostDetail> {
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

/// One bucket of an aggregate.
#[derive(Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub count: usize,
    pub sum: f64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// (timestamp, value) points into buckets of `step_ms` aligned to `start`.
pub fn buckets(points: &[(i64, f64)], start: i64, step_ms: i64) -> Vec<Bucket> {
    let mut groups: std::collections::BTreeMap<i64, Vec<f64>> = std::collections::BTreeMap::new();
    for &(t, v) in points {
        let b = start + (t - start).div_euclid(step_ms) * step_ms;
        groups.entry(b).or_default().push(v);
    }
    groups
        .into_iter()
        .map(|(b, mut vals)| {
            vals.sort_by(f64::total_cmp);
            let sum: f64 = vals.iter().sum();
            Bucket {
                start: b,
                count: vals.len(),
                sum,
                avg: sum / vals.len() as f64,
                min: vals[0],
                max: vals[vals.len() - 1],
                p50: percentile(&vals, 0.50),
                p90: percentile(&vals, 0.90),
                p99: percentile(&vals, 0.99),
            }
        })
        .collect()
}

async fn points(
    st: &AppState,
    p: &HashMap<String, String>,
) -> Result<(String, String, i64, i64, Vec<(i64, f64)>), ApiError> {
    let host = host_param(p)?;
    let metric = metric_param(p)?;
    let (start, end) = time_range(p, st.max_range_ms)?;
    let chunks = fetch(st, &host, start, end, vec![metric.clone()]).await?;
    let mut pts = Vec::new();
    for c in &chunks {
        if let Some(col) = c.columns.iter().find(|col| col.name == metric) {
            pts.extend(
                c.timestamps_ms
                    .iter()
                    .zip(&col.values)
                    .filter(|(_, v)| !v.is_nan())
                    .map(|(t, v)| (*t, *v)),
            );
        }
    }
    Ok((host, metric, start, end, pts))
}

async fn aggregate(State(st): Shared, Query(p): Params) -> ApiResult<serde_json::Value> {
    let step = duration_param(&p, "step", Duration::from_secs(60))?;
    if step < Duration::from_secs(1) {
        return Err(ApiError::bad("step must be at least 1s"));
    }
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if step_ms > st.max_range_ms {
        return Err(ApiError::bad("step is longer than the longest range"));
    }
    let (host, metric, start, end, pts) = points(&st, &p).await?;
    if (end - start) / step_ms > 10_000 {
        return Err(ApiError::bad("more than 10000 buckets; use a larger step"));
    }
    Ok(Json(json!({
        "host_id": host, "metric": metric, "step_ms": step_ms,
        "start_time": rfc3339(start), "end_time": rfc3339(end),
        "buckets": buckets(&pts, start, step_ms),
    })))
}

/// Least-squares slope per hour, and a direction with a 1 %-of-range dead band.
pub fn trend_of(pts: &[(i64, f64)]) -> Option<(f64, &'static str)> {
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let t0 = pts[0].0 as f64;
    let xs: Vec<f64> = pts
        .iter()
        .map(|(t, _)| (*t as f64 - t0) / 3_600_000.0)
        .collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = pts.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, (_, y)) in xs.iter().zip(pts) {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        return None;
    }
    let slope = num / den;
    let span_h = xs[xs.len() - 1].max(1e-9);
    let (lo, hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
            (a.min(*v), b.max(*v))
        });
    let band = ((hi - lo).abs().max(my.abs()) * 0.01).max(f64::EPSILON);
    let direction = if slope * span_h > band {
        "rising"
    } else if slope * span_h < -band {
        "falling"
    } else {
        "flat"
    };
    Some((slope, direction))
}

async fn trend(State(st): Shared, Query(p): Params) -> ApiResult<serde_json::Value> {
    let (host, metric, start, end, pts) = points(&st, &p).await?;
    let Some((slope, direction)) = trend_of(&pts) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("fewer than 2 points of {metric} for {host} in the range"),
        ));
    };
    Ok(Json(json!({
        "host_id": host, "metric": metric,
        "start_time": rfc3339(start), "end_time": rfc3339(end),
        "points": pts.len(),
        "first": pts[0].1, "last": pts[pts.len() - 1].1,
        "slope_per_hour": slope, "direction": direction,
    })))
}

async fn topk(State(st): Shared, Query(p): Params) -> ApiResult<serde_json::Value> {
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
    Ok(Json(json!({
        "metric": metric, "k": k, "window_ms": window_ms,
        "entries": st.dashboard.topk(&metric, k, window_ms, now_ms()),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::Column;

    #[test]
    fn buckets_hold_the_right_statistics() {
        let pts: Vec<(i64, f64)> = (0..120).map(|i| (i * 1000, i as f64)).collect();
        let b = buckets(&pts, 0, 60_000);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].count, 60);
        assert_eq!((b[0].min, b[0].max), (0.0, 59.0));
        assert_eq!(b[0].avg, 29.5);
        assert_eq!(b[0].sum, (0..60).sum::<i32>() as f64);
        assert_eq!(b[0].p50, 29.0);
        assert_eq!(b[0].p90, 53.0);
        assert_eq!(b[0].p99, 59.0);
        assert_eq!(b[1].start, 60_000);
    }

    #[test]
    fn trends_have_a_sign_and_a_dead_band() {
        let up: Vec<(i64, f64)> = (0..60).map(|i| (i * 60_000, 10.0 + i as f64)).collect();
        let (slope, dir) = trend_of(&up).unwrap();
        assert!((slope - 60.0).abs() < 1e-6, "{slope}");
        assert_eq!(dir, "rising");
        let down: Vec<(i64, f64)> = up.iter().map(|(t, v)| (*t, 100.0 - v)).collect();
        assert_eq!(trend_of(&down).unwrap().1, "falling");
        let flat: Vec<(i64, f64)> = (0..60)
            .map(|i| (i * 1000, 50.0 + if i % 2 == 0 { 0.01 } else { -0.01 }))
            .collect();
        assert_eq!(trend_of(&flat).unwrap().1, "flat");
        assert!(trend_of(&up[..1]).is_none());
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
                }],
            },
            RangeChunk {
                timestamps_ms: vec![3],
                columns: vec![
                    Column {
                        name: "b".into(),
                        unit: 2,
                        values: vec![7.0],
                    },
                    Column {
                        name: "a".into(),
                        unit: 1,
                        values: vec![3.0],
                    },
                ],
            },
        ];
        let body = join("h", 0, 10, &chunks);
        assert_eq!(body.timestamps, vec![1, 2, 3]);
        assert_eq!(body.series[0].values, vec![Some(1.0), None, Some(3.0)]);
        assert_eq!(body.series[1].values, vec![None, None, Some(7.0)]);
        assert_eq!(body.series[1].unit, "bytes");
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
