//! `ringwatch operator run`: the operator process. It serves `/metrics`, `/health` and `/ready`
//! at once, stands by until it holds the leader Lease (so two replicas are safe), then runs the
//! controller over MonitorClusters and what they own. Losing the Lease ends the process (the
//! Deployment restarts it as a standby), so two leaders never reconcile at once; so does not
//! being able to show its renewals land (cut off from the API server, it stops within two
//! thirds of the Lease's duration, before a standby may take it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::controller::{AdminReach, Context, error_policy, reconcile};
use crate::crd::MonitorCluster;
use crate::metrics::Metrics;
use crate::names::{FIELD_MANAGER, MANAGED_BY};

/// The operator's configuration (flags, env, YAML file; defaults run in a cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `/metrics`, `/health`, `/ready`.
    pub listen: SocketAddr,
    /// Watch MonitorClusters in this namespace only (default: every namespace).
    pub namespace: Option<String>,
    pub lease: LeaseConfig,
    /// This replica's name in the Lease (default: `POD_NAME`, then the hostname).
    pub identity: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            namespace: None,
            lease: LeaseConfig::default(),
            identity: None,
        }
    }
}

/// Leader election.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    pub name: String,
    /// Where the Lease lives (default: `POD_NAMESPACE`, then `default`).
    pub namespace: Option<String>,
    /// How long a leader holds the Lease without renewing it.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub duration: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            name: "ringwatch-operator".into(),
            namespace: None,
            duration: Duration::from_secs(15),
        }
    }
}

/// The flags (each overrides the file).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Where /metrics, /health and /ready are served [default: 0.0.0.0:8090].
    #[arg(long, env = "RINGWATCH_OPERATOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Watch MonitorClusters in this namespace only [default: every namespace].
    #[arg(long, env = "RINGWATCH_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// The leader Lease's namespace [default: POD_NAMESPACE, then default].
    #[arg(long, env = "RINGWATCH_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease [default: POD_NAME, then the hostname].
    #[arg(long, env = "RINGWATCH_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
}

impl Args {
    pub fn apply(self, c: &mut Config) {
        ringwatch_core::config::overlay(&mut c.listen, self.listen);
        ringwatch_core::config::overlay_opt(&mut c.namespace, self.namespace);
        ringwatch_core::config::overlay_opt(&mut c.lease.namespace, self.lease_namespace);
        ringwatch_core::config::overlay_opt(&mut c.identity, self.identity);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("no Kubernetes API: {0} (in a pod: the ServiceAccount's token; outside: KUBECONFIG)")]
    Kube(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader Lease; exiting so a standby can lead")]
    LostLease,
}

impl Config {
    pub fn from_yaml_value(v: serde_json::Value) -> Result<Config, RunError> {
        serde_json::from_value(v).map_err(|e| RunError::Config(format!("config file: {e}")))
    }

    pub fn validate(&self) -> Result<(), RunError> {
        if self.lease.name.is_empty() {
            return Err(RunError::Config("lease.name: must not be empty".into()));
        }
        if self.lease.duration < Duration::from_secs(5) {
            return Err(RunError::Config("lease.duration: at least 5s".into()));
        }
        if self.namespace.as_deref() == Some("") {
            return Err(RunError::Config(
                "namespace: must not be empty (omit it for every namespace)".into(),
            ));
        }
        Ok(())
    }

    fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(hostname)
            .unwrap_or_else(|| "ringwatch-operator".into())
    }

    fn lease_namespace(&self) -> String {
        self.lease
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Runs until `shutdown` (or the Lease is lost).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RunError::Listen {
            addr: config.listen,
            reason: e.to_string(),
        })?;
    let limits = ringwatch_net::HttpLimits {
        max_connections: 256,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(ringwatch_net::http::serve(
        listener,
        crate::metrics::router(metrics.clone()),
        limits,
        metrics.listen.listener("http"),
        server_stop.clone(),
        Duration::from_secs(2),
    ));
    let result = lead(&config, metrics, shutdown).await;
    server_stop.cancel();
    let _ = server.await;
    result
}

async fn lead(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let client = Client::try_default()
        .await
        .map_err(|e| RunError::Kube(e.to_string()))?;
    let identity = config.identity();
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease.name)
        .with_namespace(config.lease_namespace())
        .with_identity(identity.clone())
        .with_duration(config.lease.duration.as_secs())
        .with_grace((config.lease.duration.as_secs() / 3).max(1))
        // One field manager per replica: server-side apply's conflict between two managers
        // is what keeps a second replica from taking a held Lease.
        .with_field_manager(format!("{FIELD_MANAGER}-{identity}"))
        .build()
        .await
        .map_err(|e| RunError::Lease(e.to_string()))?;
    let (mut leading, _lease_task) = lease.watch().await;
    // A standby is ready: it serves and waits to lead.
    metrics.set_ready(true);
    tracing::info!(%identity, lease = %config.lease.name, "operator standing by for the leader Lease");
    while !*leading.borrow_and_update() {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = leading.changed() => {
                if changed.is_err() {
                    return Err(RunError::Lease("the Lease watcher stopped".into()));
                }
            }
        }
    }
    metrics.set_leader(true);
    tracing::info!(%identity, namespace = ?config.namespace, "leading: reconciling MonitorClusters");

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        &identity,
        AdminReach::Dns,
    ));
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
    macro_rules! api {
        ($t:ty) => {
            match &config.namespace {
                Some(ns) => Api::<$t>::namespaced(client.clone(), ns),
                None => Api::<$t>::all(client.clone()),
            }
        };
    }
    let stop = shutdown.clone();
    let controller = Controller::new(api!(MonitorCluster), watcher::Config::default())
        .owns(api!(StatefulSet), owned.clone())
        .owns(api!(DaemonSet), owned.clone())
        .owns(api!(Service), owned.clone())
        .owns(api!(ConfigMap), owned.clone())
        .owns(api!(Secret), owned)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(mc = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not run"),
            }
        });
    let lost = async {
        loop {
            if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                return;
            }
        }
    };
    let fenced = fence(
        Api::namespaced(client.clone(), &config.lease_namespace()),
        &config.lease.name,
        &identity,
        config.lease.duration,
    );
    tokio::select! {
        () = controller => Ok(()),
        () = lost => {
            metrics.set_leader(false);
            Err(RunError::LostLease)
        }
        () = fenced => {
            metrics.set_leader(false);
            Err(RunError::LostLease)
        }
    }
}

/// Returns once this replica cannot show it still holds the Lease: another holds it, or its
/// own renewals have not landed for two thirds of the Lease's duration (cut off from the API
/// server, it stops before a standby may take over, rather than reconcile beside it).
async fn fence(
    leases: Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
) {
    let deadline = duration * 2 / 3;
    let mut last_held = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(duration / 6).await;
        match leases.get(name).await {
            Ok(lease) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity) {
                    tracing::warn!(holder = ?spec.holder_identity, "the leader Lease is held by another");
                    return;
                }
                let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
                let fresh = spec.renew_time.is_some_and(|t| {
                    now - t.0.as_millisecond()
                        < i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX)
                });
                if fresh {
                    last_held = tokio::time::Instant::now();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the leader Lease"),
        }
        if last_held.elapsed() > deadline {
            tracing::error!(
                ?deadline,
                "the leader Lease was not renewed in time; stepping down"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_values_are_refused() {
        let mut c = Config::from_yaml_value(serde_json::json!({
            "listen": "127.0.0.1:9000",
            "lease": {"duration": "30s"}
        }))
        .unwrap();
        Args {
            namespace: Some("obs".into()),
            ..Args::default()
        }
        .apply(&mut c);
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(c.namespace.as_deref(), Some("obs"));
        assert_eq!(c.lease.duration, Duration::from_secs(30));
        c.validate().unwrap();
        c.lease.duration = Duration::from_secs(1);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("lease.duration")
        );
        let unknown = Config::from_yaml_value(serde_json::json!({"leese": {}})).unwrap_err();
        assert!(unknown.to_string().contains("leese"), "{unknown}");
    }

    #[tokio::test]
    async fn metrics_health_and_ready_are_served() {
        let metrics = Arc::new(Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = crate::metrics::router(metrics.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let get = |path: &'static str| {
            let addr = addr.clone();
            async move {
                let c = ringwatch_net::admin_client::AdminClient::new(&addr, None);
                c.call("GET", path, None).await.unwrap()
            }
        };
        assert_eq!(get("/health").await.status, 200);
        assert_eq!(
            get("/ready").await.status,
            503,
            "not ready before it stands by"
        );
        metrics.set_ready(true);
        metrics.reconciled(0.02);
        assert_eq!(get("/ready").await.status, 200);
        let text = get("/metrics").await.body["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            text.contains("ringwatch_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(text.contains("ringwatch_operator_leader 0"), "{text}");
    }

    /// A Lease API answering every GET with what `lease` makes at that moment.
    fn leases(
        lease: impl Fn() -> serde_json::Value + Send + 'static,
    ) -> Api<k8s_openapi::api::coordination::v1::Lease> {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((_, send)) = handle.next_request().await {
                let body = serde_json::to_vec(&lease()).unwrap();
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(body))
                        .unwrap(),
                );
            }
        });
        Api::namespaced(Client::new(service, "ns"), "ns")
    }

    fn lease(holder: &str, renewed_ms_ago: i64) -> serde_json::Value {
        let t = k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::from_millis(renewed_ms_ago);
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "ringwatch-operator", "namespace": "ns"},
            "spec": {"holderIdentity": holder, "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(t), "leaseDurationSeconds": 15}
        })
    }

    #[tokio::test]
    async fn the_leader_steps_down_when_another_holds_the_lease_or_its_renewals_do_not_land() {
        let d = Duration::from_millis(600);
        // Another holds it: down at the first look.
        let started = std::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(5),
            fence(leases(|| lease("other", 0)), "ringwatch-operator", "me", d),
        )
        .await
        .expect("steps down");
        assert!(started.elapsed() < Duration::from_secs(1));
        // Held by me, but the last renewal is old: down once the deadline passes.
        tokio::time::timeout(
            Duration::from_secs(5),
            fence(
                leases(|| lease("me", 60_000)),
                "ringwatch-operator",
                "me",
                d,
            ),
        )
        .await
        .expect("steps down");
        // Held by me and renewed at every look: it keeps leading.
        let kept = tokio::time::timeout(
            Duration::from_millis(1500),
            fence(leases(|| lease("me", 0)), "ringwatch-operator", "me", d),
        )
        .await;
        assert!(kept.is_err(), "a leader whose renewals land keeps leading");
    }
}
