//! viz's brokers: the shared peer pool (`ringwatch_net::peers`, one kept channel per broker,
//! health-checked in the background) with query clients on it. Calls go to healthy brokers
//! first, nearest first, and fail over to the next on errors a retry can fix. Brokers are kept
//! by node id, so the pool can follow cluster membership; until brokers say their own ids, a
//! broker's configured URL is its id. `for_host` is the routing seam: any broker serves any
//! host, and the host's owner by the ring the cluster reports is asked first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use ringwatch_core::NodeId;
use ringwatch_net::client::{Connector, GrpcChannel};
use ringwatch_net::peers::{Connections, PeerPool};
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{ClusterInfo, ClusterRequest};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::VizError;

/// What viz knows of one broker, for the cluster view.
#[derive(Debug, Clone, serde::Serialize, PartialEq, utoipa::ToSchema)]
pub struct BrokerStatus {
    /// The broker's node id (its id in the cluster once a broker has said so; until then its
    /// configured URL).
    pub node_id: String,
    /// Its ring state (joining, active, draining, drained, down, left) as the cluster reports it.
    #[schema(required)]
    pub ring_state: Option<String>,
    /// Its Raft role (leader, voter, learner, none) as the cluster reports it.
    #[schema(required)]
    pub raft_role: Option<String>,
    /// Registered hosts the ring gives it; null outside a Raft cluster view.
    #[schema(required)]
    pub hosts_owned: Option<u64>,
    /// Its hand-off while draining or once drained; null otherwise.
    #[schema(required)]
    pub handoff: Option<HandoffStatus>,
    /// The broker's gRPC endpoint.
    pub url: String,
    /// Whether its last health check or call succeeded.
    pub healthy: bool,
    /// The last health check's round trip in milliseconds; null until one succeeded.
    #[schema(required)]
    pub rtt_ms: Option<f64>,
    /// Why it is unhealthy (the last error); null when healthy.
    #[schema(required)]
    pub last_error: Option<String>,
}

/// A draining broker's hand-off of its hosts' data to their new owners.
#[derive(Debug, Clone, serde::Serialize, PartialEq, utoipa::ToSchema)]
pub struct HandoffStatus {
    pub hosts_left: u64,
    pub bytes_left: u64,
    /// Every section sent and verified by its new owner (the broker is drained).
    pub done: bool,
}

/// Query clients are allowed answers this large (a week of a host's rows at full resolution).
const MAX_ANSWER_BYTES: usize = 64 << 20;

pub struct BrokerPool {
    peers: Arc<PeerPool>,
    /// The cluster as a broker last reported it.
    cluster: Arc<Mutex<Option<ClusterInfo>>>,
    /// Its ring (a Raft cluster's), and each ring member's gRPC URL: who owns a host.
    ring: Arc<Mutex<Option<OwnerRing>>>,
}

/// The ring a cluster reported, to ask a host's owner first.
struct OwnerRing {
    ring: ringwatch_core::Ring,
    urls: std::collections::HashMap<String, String>,
}

impl OwnerRing {
    /// The ring of a Raft cluster's view (its active members); none for a broker alone.
    fn of(info: &ClusterInfo) -> Option<OwnerRing> {
        if !info.raft || info.vnodes == 0 {
            return None;
        }
        let active = info.members.iter().filter(|m| m.state == "active");
        let urls = active
            .clone()
            .map(|m| (m.id.clone(), m.grpc_addr.clone()))
            .collect();
        let ring =
            ringwatch_core::Ring::new(info.ring_epoch, active.map(|m| m.id.clone()), info.vnodes);
        Some(OwnerRing { ring, urls })
    }

    fn owner_url(&self, host: &str) -> Option<&str> {
        let id = self.ring.owners(host, 1).into_iter().next()?;
        self.urls.get(id).map(String::as_str)
    }
}

impl BrokerPool {
    /// A pool of the brokers at `urls`, each with its URL as its node id.
    pub fn new(
        urls: &[String],
        connector: &Connector,
        timeout: Duration,
    ) -> Result<BrokerPool, VizError> {
        let peers = PeerPool::from_urls(urls, connector, Connections::Kept, timeout)
            .map_err(|e| VizError::Config(format!("brokers: {e}")))?;
        Ok(BrokerPool {
            peers: Arc::new(peers),
            cluster: Arc::default(),
            ring: Arc::default(),
        })
    }

    /// A pool of `(node id, URL)` brokers, in that order; an id given twice is kept once (the
    /// first).
    pub fn with_nodes(
        nodes: impl IntoIterator<Item = (NodeId, String)>,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<BrokerPool, VizError> {
        let peers = PeerPool::new(nodes, connector, Connections::Kept, timeout)
            .map_err(|e| VizError::Config(format!("brokers: {e}")))?;
        Ok(BrokerPool {
            peers: Arc::new(peers),
            cluster: Arc::default(),
            ring: Arc::default(),
        })
    }

    /// The pool underneath (ids, health, order).
    pub fn peers(&self) -> &PeerPool {
        &self.peers
    }

    /// The gRPC endpoint of broker `id`.
    pub fn url(&self, id: &NodeId) -> Option<&str> {
        self.peers.url(id)
    }

    /// Every broker's id, in configuration order.
    pub fn ids(&self) -> &[NodeId] {
        self.peers.ids()
    }

    /// A query client on broker `id`'s channel.
    pub fn query(&self, id: &NodeId) -> Option<QueryClient<GrpcChannel>> {
        let channel = self.peers.kept(id)?;
        Some(QueryClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES))
    }

    /// The brokers to ask for `host`'s data, best first: its owner by the ring the cluster
    /// reported, when viz has it and it is healthy (it answers from its own store, with no
    /// hop), then the others, healthy and nearest first. Any broker answers for any host, so
    /// a stale ring costs a hop, not an error.
    pub fn for_host(&self, host: &str) -> Vec<NodeId> {
        let mut order = self.peers.order();
        let owner_url = self.ring.lock().ok().and_then(|r| {
            r.as_ref()
                .and_then(|r| r.owner_url(host).map(str::to_string))
        });
        if let Some(url) = owner_url
            && let Some(at) = order.iter().position(|id| {
                self.peers.url(id) == Some(url.as_str()) && self.peers.healthy(id) == Some(true)
            })
        {
            let owner = order.remove(at);
            order.insert(0, owner);
        }
        order
    }

    /// Calls `op` with a query client on the brokers in `order` until one answers (see
    /// `PeerPool::call`).
    pub async fn call<T, F, Fut>(&self, order: Vec<NodeId>, mut op: F) -> Result<T, Status>
    where
        F: FnMut(QueryClient<GrpcChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.peers
            .call(order, |c| {
                op(QueryClient::new(c).max_decoding_message_size(MAX_ANSWER_BYTES))
            })
            .await
    }

    /// The cluster as a broker last reported it (members, leader, term, ring epoch).
    pub fn cluster(&self) -> Option<ClusterInfo> {
        self.cluster.lock().ok().and_then(|c| c.clone())
    }

    /// Asks the brokers, best first, for the cluster as they have applied it.
    pub async fn refresh_cluster(&self) {
        let info = self
            .call(self.peers.order(), |mut c| async move {
                c.cluster(ClusterRequest {}).await.map(|r| r.into_inner())
            })
            .await;
        match info {
            Ok(info) => {
                if let Ok(mut r) = self.ring.lock() {
                    *r = OwnerRing::of(&info);
                }
                if let Ok(mut c) = self.cluster.lock() {
                    *c = Some(info);
                }
            }
            Err(e) => tracing::debug!(error = %e.message(), "cluster view not refreshed"),
        }
    }

    /// Every broker as the cluster view shows it, in configuration order.
    pub fn status(&self) -> Vec<BrokerStatus> {
        let cluster = self.cluster();
        let member = |url: &str| {
            cluster
                .as_ref()
                .and_then(|c| c.members.iter().find(|m| m.grpc_addr == url).cloned())
        };
        self.peers
            .status()
            .into_iter()
            .map(|p| {
                let m = member(&p.url);
                BrokerStatus {
                    node_id: m.as_ref().map_or(p.id, |m| m.id.clone()),
                    ring_state: m.as_ref().map(|m| m.state.clone()),
                    raft_role: m.as_ref().map(|m| m.role.clone()),
                    hosts_owned: m
                        .as_ref()
                        .filter(|_| cluster.as_ref().is_some_and(|c| c.raft))
                        .map(|m| m.hosts_owned),
                    handoff: m.as_ref().filter(|m| m.handing_off).map(|m| HandoffStatus {
                        hosts_left: m.handoff_hosts_left,
                        bytes_left: m.handoff_bytes_left,
                        done: m.handoff_done,
                    }),
                    url: p.url,
                    healthy: p.healthy,
                    rtt_ms: p.rtt_ms,
                    last_error: p.last_error,
                }
            })
            .collect()
    }

    /// Checks every broker's gRPC health, and asks for the cluster view, every `every` until
    /// `shutdown`.
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
                pool.peers.probe().await;
                pool.refresh_cluster().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_fail_over_with_query_clients_and_status_names_every_broker() {
        // Nothing listens on these ports: every call is UNAVAILABLE.
        let node = |id: &str, port: u16| (NodeId::from(id), format!("http://127.0.0.1:{port}"));
        let pool = BrokerPool::with_nodes(
            [node("b-1", 1), node("b-2", 2)],
            &Connector::plain(),
            Duration::from_millis(200),
        )
        .unwrap();
        assert!(pool.query(&"b-9".into()).is_none());
        let mut tried = 0;
        let r: Result<(), Status> = pool
            .call(pool.for_host("any"), |mut c| {
                tried += 1;
                async move { c.hosts(ringwatch_proto::HostsRequest {}).await.map(|_| ()) }
            })
            .await;
        let err = r.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("no broker answered"));
        assert_eq!(tried, 2, "both brokers tried");
        let status = pool.status();
        let ids: Vec<&str> = status.iter().map(|b| b.node_id.as_str()).collect();
        assert_eq!(ids, ["b-1", "b-2"]);
        assert!(status.iter().all(|b| !b.healthy && b.last_error.is_some()));
        assert!(
            BrokerPool::new(
                &["not a url".into()],
                &Connector::plain(),
                Duration::from_secs(1)
            )
            .is_err()
        );
    }
}
