//! The broker client pool: one lazily connected channel per broker, health-checked in the
//! background; calls go to healthy brokers first and fail over to the next on errors a retry
//! can fix. Brokers are kept by node id (`NodeId`), so the pool can follow cluster membership
//! later; until brokers say their own ids, a broker's configured URL is its id. `for_host` is
//! the routing seam: today any broker serves any host; with the ring it returns the host's
//! owners first.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringwatch_net::client::{Connector, GrpcChannel};
use ringwatch_proto::query_client::QueryClient;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::VizError;

/// A broker's id in the cluster: the name membership and the ring will know it by (the ring's
/// members are ids of the same kind, `Arc<str>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(id: impl Into<Arc<str>>) -> NodeId {
        NodeId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> NodeId {
        NodeId::new(id)
    }
}

struct Broker {
    url: String,
    channel: GrpcChannel,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// What viz knows of one broker, for the cluster view.
#[derive(Debug, Clone, serde::Serialize, PartialEq, utoipa::ToSchema)]
pub struct BrokerStatus {
    /// The broker's gRPC endpoint.
    pub url: String,
    /// Whether its last health check or call succeeded.
    pub healthy: bool,
    /// Why it is unhealthy (the last error); null when healthy.
    #[schema(required)]
    pub last_error: Option<String>,
}

pub struct BrokerPool {
    /// Every broker, by node id.
    brokers: HashMap<NodeId, Broker>,
    /// The same ids in configuration order: brokers equally healthy are tried in it.
    ids: Vec<NodeId>,
}

/// Errors worth trying on another broker.
pub fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal
    )
}

impl BrokerPool {
    /// A pool of the brokers at `urls`, each with its URL as its node id.
    pub fn new(
        urls: &[String],
        connector: &Connector,
        timeout: Duration,
    ) -> Result<BrokerPool, VizError> {
        let nodes = urls.iter().map(|u| (NodeId::from(u.as_str()), u.clone()));
        BrokerPool::with_nodes(nodes, connector, timeout)
    }

    /// A pool of `(node id, URL)` brokers, in that order; an id given twice is kept once (the
    /// first).
    pub fn with_nodes(
        nodes: impl IntoIterator<Item = (NodeId, String)>,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<BrokerPool, VizError> {
        let mut brokers = HashMap::new();
        let mut ids = Vec::new();
        for (id, url) in nodes {
            if brokers.contains_key(&id) {
                tracing::warn!(broker = %id, "broker listed twice; using it once");
                continue;
            }
            let endpoint = connector
                .endpoint(&url)
                .map_err(|e| VizError::Config(format!("brokers: {e}")))?
                .connect_timeout(timeout)
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(1 << 20))
                .initial_connection_window_size(Some(4 << 20));
            let broker = Broker {
                url,
                channel: connector.channel(endpoint.connect_lazy()),
                // Optimistic until the first check says otherwise.
                healthy: AtomicBool::new(true),
                last_error: Mutex::new(None),
            };
            brokers.insert(id.clone(), broker);
            ids.push(id);
        }
        Ok(BrokerPool { brokers, ids })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every broker's id, in configuration order.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.brokers.contains_key(id)
    }

    /// The gRPC endpoint of broker `id`.
    pub fn url(&self, id: &NodeId) -> Option<&str> {
        self.brokers.get(id).map(|b| b.url.as_str())
    }

    /// Whether broker `id`'s last health check or call succeeded.
    pub fn healthy(&self, id: &NodeId) -> Option<bool> {
        self.brokers
            .get(id)
            .map(|b| b.healthy.load(Ordering::Relaxed))
    }

    /// A query client on broker `id`'s channel.
    pub fn query(&self, id: &NodeId) -> Option<QueryClient<GrpcChannel>> {
        let b = self.brokers.get(id)?;
        Some(QueryClient::new(b.channel.clone()).max_decoding_message_size(64 << 20))
    }

    /// The brokers with their ids, in configuration order.
    fn members(&self) -> impl Iterator<Item = (&NodeId, &Broker)> {
        self.ids
            .iter()
            .filter_map(|id| self.brokers.get(id).map(|b| (id, b)))
    }

    /// Broker ids, healthy ones first, each group in configuration order.
    pub fn order(&self) -> Vec<NodeId> {
        let mut ids = self.ids.clone();
        ids.sort_by_key(|id| self.healthy(id) != Some(true));
        ids
    }

    /// The brokers to ask for `host`'s data, best first (the ring slots in here).
    pub fn for_host(&self, _host: &str) -> Vec<NodeId> {
        self.order()
    }

    fn mark(&self, id: &NodeId, healthy: bool, error: Option<String>) {
        let Some(b) = self.brokers.get(id) else {
            return;
        };
        let was = b.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(broker = %b.url, "broker healthy");
            } else {
                tracing::warn!(broker = %b.url, error = ?error, "broker unhealthy");
            }
        }
        if let Ok(mut e) = b.last_error.lock() {
            *e = error;
        }
    }

    /// Calls `op` on the brokers in `order` until one answers; an error a retry can fix marks
    /// that broker unhealthy and moves on; any other error is the answer.
    /// An id the pool does not hold is skipped.
    pub async fn call<T, F, Fut>(&self, order: Vec<NodeId>, mut op: F) -> Result<T, Status>
    where
        F: FnMut(QueryClient<GrpcChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut last = Status::unavailable("no broker configured");
        for id in order {
            let Some(client) = self.query(&id) else {
                continue;
            };
            match op(client).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(&s) => {
                    tracing::debug!(broker = %id, error = %s, "broker call failed; trying the next");
                    self.mark(&id, false, Some(s.message().to_string()));
                    last = s;
                }
                Err(s) => return Err(s),
            }
        }
        Err(Status::unavailable(format!(
            "no broker answered: {}",
            last.message()
        )))
    }

    /// Every broker as the cluster view shows it, in configuration order.
    pub fn status(&self) -> Vec<BrokerStatus> {
        self.members()
            .map(|(_, b)| BrokerStatus {
                url: b.url.clone(),
                healthy: b.healthy.load(Ordering::Relaxed),
                last_error: b.last_error.lock().ok().and_then(|e| e.clone()),
            })
            .collect()
    }

    /// Checks every broker's gRPC health every `every` until `shutdown`.
    pub fn spawn_health(
        self: &Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for (id, b) in pool.members() {
                    let mut client = HealthClient::new(b.channel.clone());
                    let check = client.check(HealthCheckRequest {
                        service: String::new(),
                    });
                    let result =
                        tokio::time::timeout(every.max(Duration::from_secs(1)), check).await;
                    match result {
                        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => {
                            pool.mark(id, true, None)
                        }
                        Ok(Ok(_)) => pool.mark(id, false, Some("not serving".into())),
                        Ok(Err(s)) => pool.mark(id, false, Some(s.message().to_string())),
                        Err(_) => pool.mark(id, false, Some("health check timed out".into())),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_fail_over_and_unhealthy_brokers_go_last() {
        // Nothing listens on these ports: every call is UNAVAILABLE.
        let urls = vec![
            "http://127.0.0.1:1".to_string(),
            "http://127.0.0.1:2".to_string(),
        ];
        let pool = BrokerPool::new(&urls, &Connector::plain(), Duration::from_millis(200)).unwrap();
        let ids: Vec<NodeId> = urls.iter().map(|u| NodeId::from(u.as_str())).collect();
        assert_eq!(pool.order(), ids);
        let mut tried = Vec::new();
        let r: Result<(), Status> = pool
            .call(pool.order(), |mut c| {
                tried.push(());
                async move { c.hosts(ringwatch_proto::HostsRequest {}).await.map(|_| ()) }
            })
            .await;
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("no broker answered"));
        assert_eq!(tried.len(), 2, "both brokers tried");
        assert!(
            pool.status()
                .iter()
                .all(|b| !b.healthy && b.last_error.is_some())
        );
        // A non-retryable answer is returned as it is, without trying further.
        let mut n = 0;
        let r: Result<(), Status> = pool
            .call(ids.clone(), |_| {
                n += 1;
                async { Err(Status::not_found("unknown host")) }
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
        assert_eq!(n, 1);
        assert!(
            BrokerPool::new(
                &["not a url".to_string()],
                &Connector::plain(),
                Duration::from_secs(1)
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn brokers_are_looked_up_by_node_id_and_ordered_by_health() {
        let node = |id: &str, port: u16| (NodeId::from(id), format!("http://127.0.0.1:{port}"));
        let pool = BrokerPool::with_nodes(
            [
                node("b-1", 1),
                node("b-2", 2),
                node("b-1", 3),
                node("b-3", 4),
            ],
            &Connector::plain(),
            Duration::from_millis(200),
        )
        .unwrap();
        let (b1, b2, b3) = (
            NodeId::from("b-1"),
            NodeId::from("b-2"),
            NodeId::from("b-3"),
        );
        // An id given twice is kept once, the first URL.
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.ids(), [b1.clone(), b2.clone(), b3.clone()]);
        assert_eq!(pool.url(&b1), Some("http://127.0.0.1:1"));
        assert_eq!(pool.url(&b3), Some("http://127.0.0.1:4"));
        let gone = NodeId::from("b-9");
        assert!(pool.contains(&b2) && !pool.contains(&gone));
        assert!(pool.url(&gone).is_none() && pool.query(&gone).is_none());
        // Healthy brokers first, each group in configuration order; for_host follows.
        pool.mark(&b1, false, Some("down".into()));
        assert_eq!(pool.healthy(&b1), Some(false));
        assert_eq!(pool.order(), vec![b2.clone(), b3.clone(), b1.clone()]);
        assert_eq!(pool.for_host("any-host"), pool.order());
        pool.mark(&b1, true, None);
        assert_eq!(pool.order(), vec![b1.clone(), b2.clone(), b3.clone()]);
        // A call skips an id the pool does not hold.
        let mut tried = 0;
        let r: Result<(), Status> = pool
            .call(vec![gone, b2], |_| {
                tried += 1;
                async { Err(Status::not_found("unknown host")) }
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
        assert_eq!(tried, 1);
        // The cluster view lists brokers in configuration order.
        let urls: Vec<String> = pool.status().into_iter().map(|b| b.url).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:4"
            ]
        );
    }
}
