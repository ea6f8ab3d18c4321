//! The operator's `/metrics`: reconciles, their durations, failures by reason, membership steps
//! and whether this replica leads; and its `/health` and `/ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<ReasonLabels, Counter>,
    duration: Histogram,
    steps: Family<ActionLabels, Counter>,
    leader: Gauge,
    pub listen: ringwatch_net::ListenMetrics,
    /// Set once the controller runs (this replica leads) or stands by ready to.
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringwatch_operator");
        let reconciles = Counter::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let steps = Family::<ActionLabels, Counter>::default();
        let leader = Gauge::default();
        let listen = ringwatch_net::ListenMetrics::default();
        registry.register(
            "reconciles",
            "MonitorCluster reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason (api, build, credentials, finalizer)",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            duration.clone(),
        );
        registry.register(
            "membership_steps",
            "Membership steps taken, by action (join, promote, drain, remove, roll)",
            steps.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controller",
            leader.clone(),
        );
        listen.register(&mut registry);
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            steps,
            leader,
            listen,
            ready: AtomicBool::new(false),
        }
    }

    pub fn reconciled(&self, seconds: f64) {
        self.reconciles.inc();
        self.duration.observe(seconds);
    }

    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn failures(&self, reason: &str) -> u64 {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .get()
    }

    pub fn step(&self, action: &str) {
        self.steps
            .get_or_create(&ActionLabels {
                action: action.into(),
            })
            .inc();
    }

    pub fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics`, `/health` (the process answers) and `/ready` (it runs the controller or
/// stands by for the Lease).
pub fn router(metrics: Arc<Metrics>) -> Router {
    let m = metrics.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = m.clone();
                async move { ringwatch_net::metrics_response(metrics.encode()) }
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || {
                let ready = metrics.ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
}
