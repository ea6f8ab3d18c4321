//! viz's shared state as the handlers take it. `AppState` is what the HTTP API needs;
//! `PushState` is the part live push (WebSocket and QUIC) needs, an axum sub-state the `/ws`
//! route takes out of `AppState` (`FromRef`) and the QUIC server gets on its own, so the push
//! side never depends on the HTTP layer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::brokers::BrokerPool;
use crate::dashboard::Dashboard;
use crate::metrics::VizMetrics;
use crate::push::PushCounters;

/// Everything the HTTP API answers from.
pub struct AppState {
    pub dashboard: Arc<Dashboard>,
    pub pool: Arc<BrokerPool>,
    pub metrics: Arc<VizMetrics>,
    pub topk: usize,
    pub topk_ttl_ms: i64,
    pub max_range_ms: i64,
    pub max_points: usize,
    /// Most values (timestamps × series) one range answer holds.
    pub max_cells: usize,
    /// Range answers being built or sent at once (each may hold up to `max_cells` values and a
    /// blocking thread while a slow client reads it).
    pub range_slots: Arc<tokio::sync::Semaphore>,
    /// The last `/api/dashboard` render: (dashboard version, when, body).
    pub dashboard_cache: std::sync::Mutex<Option<(u64, i64, axum::body::Bytes)>>,
    pub auth: Arc<Auth>,
    /// viz's configuration as an admin may read it (the secret left out).
    /// The config as `/api/admin/config` shows it (secrets redacted).
    pub admin_config: serde_json::Value,
    /// Refused requests are all counted, but logged at most once per 10 s.
    pub refusal_log: ringwatch_net::Throttle,
    /// What live push needs; the same dashboard and token check as above.
    pub push: PushState,
}

/// What a live-push session needs of viz, whatever carries it. Cheap to clone (shared parts
/// behind `Arc`s): the `/ws` route takes one per upgrade, the QUIC server one per connection.
#[derive(Clone)]
pub struct PushState {
    /// Where snapshots and updates come from.
    pub dashboard: Arc<Dashboard>,
    /// Checks the token a QUIC client sends in its first message (`/ws` is checked by the
    /// API's guard before the upgrade).
    pub auth: Arc<Auth>,
    /// Counters of the WebSocket clients, read by /metrics.
    pub ws: Arc<PushCounters>,
    /// Counters of the QUIC clients, read by /metrics.
    pub quic: Arc<PushCounters>,
    /// Ping period of a session (`--ws-heartbeat-secs`).
    pub heartbeat: Duration,
    /// Cancelled when viz stops: every session closes.
    pub shutdown: CancellationToken,
    /// viz's count of clients refused for a missing, bad or expired token, the same counter
    /// the HTTP guard adds to.
    pub unauthorized: Counter,
}

impl PushState {
    /// Push state with no client counted yet.
    pub fn new(
        dashboard: Arc<Dashboard>,
        auth: Arc<Auth>,
        heartbeat: Duration,
        shutdown: CancellationToken,
        unauthorized: Counter,
    ) -> PushState {
        PushState {
            dashboard,
            auth,
            ws: Arc::default(),
            quic: Arc::default(),
            heartbeat,
            shutdown,
            unauthorized,
        }
    }
}

impl FromRef<Arc<AppState>> for PushState {
    fn from_ref(st: &Arc<AppState>) -> PushState {
        st.push.clone()
    }
}
