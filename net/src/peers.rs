//! One pool of brokers for every client (the agent's sender, viz, loadgen): each broker by node
//! id with its endpoint, its health and round-trip time from gRPC health checks, and an order to
//! try them in: healthy ones first, nearest first, then configuration order; unhealthy last.
//!
//! Two ways to hold connections ([`Connections`]):
//! - **Kept**: one lazily connected channel per broker, shared by every call (HTTP/2
//!   multiplexing) and reconnected by tonic after a failure. viz and loadgen's probes use it.
//! - **PerUse**: every [`PeerPool::connect`] and every probe dials a connection of its own and
//!   drops it after; an agent holds one stream to one broker, so it keeps no idle connection to
//!   the others (10,000 agents would otherwise hold 30,000 connections on three brokers).
//!
//! A failed call marks its broker unhealthy ([`PeerPool::mark_failed`]); the next probe or
//! health check that succeeds marks it healthy again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ringwatch_core::NodeId;
use tokio::time::Instant;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client::{ClientError, Connector, GrpcChannel};

/// How a pool holds its connections (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    Kept,
    PerUse,
}

/// Why a connection to a broker could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("no broker {0} in the pool")]
    Unknown(NodeId),
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Connect(#[source] tonic::transport::Error),
}

/// What the pool knows of one broker, for status pages.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerStatus {
    pub id: String,
    /// The broker's gRPC endpoint.
    pub url: String,
    /// Whether its last health check or call succeeded.
    pub healthy: bool,
    /// The last health check's round trip, in milliseconds (null: none succeeded yet).
    pub rtt_ms: Option<f64>,
    /// Why it is unhealthy (the last error); null when healthy.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct Health {
    healthy: bool,
    rtt: Option<Duration>,
    last_error: Option<String>,
}

struct Peer {
    url: String,
    endpoint: Endpoint,
    /// The kept channel (`Connections::Kept`).
    kept: Option<GrpcChannel>,
    health: Mutex<Health>,
}

pub struct PeerPool {
    peers: HashMap<NodeId, Peer>,
    /// The same ids in configuration order.
    ids: Vec<NodeId>,
    connector: Connector,
    connections: Connections,
    timeout: Duration,
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

impl std::fmt::Debug for PeerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPool")
            .field("ids", &self.ids)
            .field("connections", &self.connections)
            .finish()
    }
}

impl PeerPool {
    /// A pool of the brokers at `urls` (blank ones skipped), each with its URL as its node id.
    pub fn from_urls(
        urls: &[String],
        connector: &Connector,
        connections: Connections,
        timeout: Duration,
    ) -> Result<PeerPool, ClientError> {
        let nodes = urls
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(|u| (NodeId::from(u), u.to_string()));
        PeerPool::new(nodes, connector, connections, timeout)
    }

    /// A pool of `(node id, URL)` brokers, in that order; an id given twice is kept once (the
    /// first). `timeout` bounds a connect and a health check.
    pub fn new(
        nodes: impl IntoIterator<Item = (NodeId, String)>,
        connector: &Connector,
        connections: Connections,
        timeout: Duration,
    ) -> Result<PeerPool, ClientError> {
        let mut peers = HashMap::new();
        let mut ids = Vec::new();
        for (id, url) in nodes {
            if peers.contains_key(&id) {
                tracing::warn!(broker = %id, "broker listed twice; using it once");
                continue;
            }
            let endpoint = connector
                .endpoint(&url)?
                .connect_timeout(timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .initial_stream_window_size(Some(1 << 20))
                .initial_connection_window_size(Some(4 << 20));
            let kept = (connections == Connections::Kept)
                .then(|| connector.channel(endpoint.connect_lazy()));
            let peer = Peer {
                url,
                endpoint,
                kept,
                // Optimistic until the first check says otherwise.
                health: Mutex::new(Health {
                    healthy: true,
                    rtt: None,
                    last_error: None,
                }),
            };
            peers.insert(id.clone(), peer);
            ids.push(id);
        }
        Ok(PeerPool {
            peers,
            ids,
            connector: connector.clone(),
            connections,
            timeout,
        })
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
        self.peers.contains_key(id)
    }

    /// The gRPC endpoint of broker `id`.
    pub fn url(&self, id: &NodeId) -> Option<&str> {
        self.peers.get(id).map(|p| p.url.as_str())
    }

    fn health(&self, id: &NodeId) -> Option<Health> {
        let p = self.peers.get(id)?;
        p.health.lock().ok().map(|h| h.clone())
    }

    /// Whether broker `id`'s last health check or call succeeded.
    pub fn healthy(&self, id: &NodeId) -> Option<bool> {
        self.health(id).map(|h| h.healthy)
    }

    /// Broker `id`'s last measured round trip.
    pub fn rtt(&self, id: &NodeId) -> Option<Duration> {
        self.health(id).and_then(|h| h.rtt)
    }

    /// The kept channel to broker `id` (`None` for an unknown id or a `PerUse` pool).
    pub fn kept(&self, id: &NodeId) -> Option<GrpcChannel> {
        self.peers.get(id).and_then(|p| p.kept.clone())
    }

    /// A channel to broker `id`: the kept one, or (`PerUse`) a new connection, dialled within
    /// the pool's timeout.
    pub async fn connect(&self, id: &NodeId) -> Result<GrpcChannel, PeerError> {
        let peer = self
            .peers
            .get(id)
            .ok_or_else(|| PeerError::Unknown(id.clone()))?;
        if let Some(kept) = &peer.kept {
            return Ok(kept.clone());
        }
        let channel = tokio::time::timeout(self.timeout, peer.endpoint.connect())
            .await
            .map_err(|_| PeerError::Timeout)?
            .map_err(PeerError::Connect)?;
        Ok(self.connector.channel(channel))
    }

    /// Broker ids to try: healthy ones first, by round trip (unmeasured after measured), then
    /// configuration order; unhealthy ones last, in configuration order.
    pub fn order(&self) -> Vec<NodeId> {
        let mut keyed: Vec<(bool, Option<Duration>, usize, NodeId)> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let h = self.health(id);
                let healthy = h.as_ref().is_some_and(|h| h.healthy);
                let rtt = h.and_then(|h| h.rtt).filter(|_| healthy);
                (!healthy, rtt, i, id.clone())
            })
            .collect();
        keyed.sort_by_key(|(unhealthy, rtt, i, _)| (*unhealthy, rtt.is_none(), *rtt, *i));
        keyed.into_iter().map(|(_, _, _, id)| id).collect()
    }

    /// How many brokers are healthy now.
    pub fn healthy_count(&self) -> usize {
        self.ids
            .iter()
            .filter(|id| self.healthy(id) == Some(true))
            .count()
    }

    fn set(&self, id: &NodeId, healthy: bool, rtt: Option<Duration>, error: Option<String>) {
        let Some(p) = self.peers.get(id) else {
            return;
        };
        let Ok(mut h) = p.health.lock() else {
            return;
        };
        if h.healthy != healthy {
            if healthy {
                tracing::info!(broker = %id, url = %p.url, "broker healthy");
            } else {
                tracing::warn!(broker = %id, url = %p.url, error = ?error, "broker unhealthy");
            }
        }
        h.healthy = healthy;
        if rtt.is_some() {
            h.rtt = rtt;
        }
        h.last_error = error;
    }

    /// A call to broker `id` failed in a way another broker may not: it goes last until a
    /// health check finds it serving.
    pub fn mark_failed(&self, id: &NodeId, error: impl Into<String>) {
        self.set(id, false, None, Some(error.into()));
    }

    /// A call to broker `id` succeeded.
    pub fn mark_ok(&self, id: &NodeId) {
        self.set(id, true, None, None);
    }

    /// Checks one broker's gRPC health (`Check` with service ""), recording the outcome and
    /// round trip; true when serving.
    pub async fn check(&self, id: &NodeId) -> bool {
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.check_once(id)).await;
        let rtt = start.elapsed();
        match outcome {
            Ok(Ok(())) => {
                self.set(id, true, Some(rtt), None);
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(broker = %id, error = %e, "health check failed");
                self.set(id, false, None, Some(e));
                false
            }
            Err(_) => {
                self.set(id, false, None, Some("health check timed out".into()));
                false
            }
        }
    }

    async fn check_once(&self, id: &NodeId) -> Result<(), String> {
        let channel = self.connect(id).await.map_err(|e| e.to_string())?;
        let mut client = HealthClient::new(channel);
        let r = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| s.message().to_string())?;
        if r.get_ref().status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("not serving".into())
        }
    }

    /// Checks every broker at once and returns the order to try them in.
    pub async fn probe(&self) -> Vec<NodeId> {
        futures_util::future::join_all(self.ids.iter().map(|id| self.check(id))).await;
        let order = self.order();
        for id in &order {
            tracing::debug!(broker = %id, rtt = ?self.rtt(id), healthy = self.healthy(id), "broker probed");
        }
        order
    }

    /// Calls `op` on the brokers in `order` until one answers; an error a retry can fix marks
    /// that broker unhealthy and moves on; any other error is the answer. An id the pool does
    /// not hold is skipped.
    pub async fn call<T, F, Fut>(&self, order: Vec<NodeId>, mut op: F) -> Result<T, Status>
    where
        F: FnMut(GrpcChannel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut last = Status::unavailable("no broker configured");
        for id in order {
            let channel = match self.connect(&id).await {
                Ok(c) => c,
                Err(PeerError::Unknown(_)) => continue,
                Err(e) => {
                    self.mark_failed(&id, e.to_string());
                    last = Status::unavailable(e.to_string());
                    continue;
                }
            };
            match op(channel).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(&s) => {
                    tracing::debug!(broker = %id, error = %s, "broker call failed; trying the next");
                    self.mark_failed(&id, s.message());
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

    /// Every broker, in configuration order.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.ids
            .iter()
            .filter_map(|id| {
                let p = self.peers.get(id)?;
                let h = self.health(id)?;
                Some(PeerStatus {
                    id: id.to_string(),
                    url: p.url.clone(),
                    healthy: h.healthy,
                    rtt_ms: h.rtt.map(|d| d.as_secs_f64() * 1e3),
                    last_error: h.last_error,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio_util::sync::CancellationToken;
    use tonic_health::server::health_reporter;

    /// A real gRPC server with only the health service, reporting `serving`.
    async fn health_server(serving: bool, stop: CancellationToken) -> SocketAddr {
        let (reporter, service) = health_reporter();
        if !serving {
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            // Keep the reporter alive as long as the server.
            let _reporter = reporter;
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled())
                .await;
        });
        addr
    }

    fn pool(nodes: &[(&str, String)], connections: Connections) -> PeerPool {
        PeerPool::new(
            nodes.iter().map(|(id, u)| (NodeId::from(*id), u.clone())),
            &Connector::plain(),
            connections,
            Duration::from_millis(500),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn probes_order_serving_brokers_first_and_the_rest_last_in_configuration_order() {
        let stop = CancellationToken::new();
        let up = health_server(true, stop.clone()).await;
        let not_serving = health_server(false, stop.clone()).await;
        for connections in [Connections::Kept, Connections::PerUse] {
            let p = pool(
                &[
                    ("dead", "http://127.0.0.1:1".into()),
                    ("sick", format!("http://{not_serving}")),
                    ("up", format!("http://{up}")),
                    ("up", "http://127.0.0.1:2".into()),
                ],
                connections,
            );
            // An id given twice is kept once, the first URL.
            assert_eq!(p.len(), 3);
            assert_eq!(p.url(&"up".into()), Some(format!("http://{up}").as_str()));
            let ids = |v: Vec<NodeId>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
            // Before any check every broker counts as healthy: configuration order.
            assert_eq!(ids(p.order()), ["dead", "sick", "up"]);
            assert_eq!(
                ids(p.probe().await),
                ["up", "dead", "sick"],
                "{connections:?}"
            );
            assert_eq!(p.healthy_count(), 1);
            assert!(p.rtt(&"up".into()).is_some());
            let status = p.status();
            assert_eq!(status.len(), 3);
            assert!(!status[0].healthy && status[0].last_error.is_some());
            assert_eq!(status[1].last_error.as_deref(), Some("not serving"));
            assert!(status[2].healthy && status[2].rtt_ms.is_some());
            assert_eq!(
                p.kept(&"up".into()).is_some(),
                connections == Connections::Kept
            );
            // A failed call sends a healthy broker last until a check finds it serving.
            p.mark_failed(&"up".into(), "stream reset");
            assert_eq!(ids(p.order()), ["dead", "sick", "up"]);
            assert!(p.check(&"up".into()).await);
            assert_eq!(ids(p.order())[0], "up");
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn calls_fail_over_on_retryable_errors_and_stop_on_others() {
        let stop = CancellationToken::new();
        let up = health_server(true, stop.clone()).await;
        let p = pool(
            &[
                ("a", "http://127.0.0.1:1".into()),
                ("b", format!("http://{up}")),
            ],
            Connections::PerUse,
        );
        // a does not listen (the connect fails), b answers.
        let mut tried = 0;
        let r = p
            .call(vec!["a".into(), "nope".into(), "b".into()], |c| {
                tried += 1;
                async move {
                    HealthClient::new(c)
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .map(|r| r.into_inner().status)
                }
            })
            .await;
        assert_eq!(r.unwrap(), ServingStatus::Serving as i32);
        assert_eq!(tried, 1, "only b was reached; the unknown id was skipped");
        assert_eq!(p.healthy(&"a".into()), Some(false));
        // Every broker failing retryably: UNAVAILABLE naming the last error.
        let r: Result<(), Status> = p
            .call(p.ids().to_vec(), |_| async {
                Err(Status::unavailable("busy"))
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("no broker answered: busy"), "{e:?}");
        // A non-retryable answer is the answer, without trying further.
        let mut n = 0;
        let r: Result<(), Status> = p
            .call(vec!["b".into(), "a".into()], |_| {
                n += 1;
                async { Err(Status::not_found("unknown host")) }
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
        assert_eq!(n, 1);
        assert!(
            PeerPool::from_urls(
                &["not a url".into()],
                &Connector::plain(),
                Connections::Kept,
                Duration::from_secs(1)
            )
            .is_err()
        );
        stop.cancel();
    }
}
