//! The broker client pool: one lazily connected channel per configured broker, health-checked
//! in the background; calls go to healthy brokers first and fail over to the next on errors a
//! retry can fix. `for_host` is the routing seam: today any broker serves any host; with the
//! ring it returns the host's owners first.

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
    brokers: Vec<Broker>,
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
    pub fn new(
        urls: &[String],
        connector: &Connector,
        timeout: Duration,
    ) -> Result<BrokerPool, VizError> {
        let brokers = urls
            .iter()
            .map(|u| {
                let endpoint = connector
                    .endpoint(u)
                    .map_err(|e| VizError::Config(format!("brokers: {e}")))?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true)
                    .initial_stream_window_size(Some(1 << 20))
                    .initial_connection_window_size(Some(4 << 20));
                Ok(Broker {
                    url: u.clone(),
                    channel: connector.channel(endpoint.connect_lazy()),
                    // Optimistic until the first check says otherwise.
                    healthy: AtomicBool::new(true),
                    last_error: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, VizError>>()?;
        Ok(BrokerPool { brokers })
    }

    pub fn len(&self) -> usize {
        self.brokers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.brokers.is_empty()
    }

    pub fn url(&self, i: usize) -> &str {
        &self.brokers[i].url
    }

    pub fn query(&self, i: usize) -> QueryClient<GrpcChannel> {
        QueryClient::new(self.brokers[i].channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// Broker indexes, healthy ones first, each group in configuration order.
    pub fn order(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.brokers.len()).collect();
        idx.sort_by_key(|&i| !self.brokers[i].healthy.load(Ordering::Relaxed));
        idx
    }

    /// The brokers to ask for `host`'s data, best first (the ring slots in here).
    pub fn for_host(&self, _host: &str) -> Vec<usize> {
        self.order()
    }

    fn mark(&self, i: usize, healthy: bool, error: Option<String>) {
        let was = self.brokers[i].healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(broker = %self.brokers[i].url, "broker healthy");
            } else {
                tracing::warn!(broker = %self.brokers[i].url, error = ?error, "broker unhealthy");
            }
        }
        if let Ok(mut e) = self.brokers[i].last_error.lock() {
            *e = error;
        }
    }

    /// Calls `op` on the brokers in `order` until one answers; an error a retry can fix marks
    /// that broker unhealthy and moves on; any other error is the answer.
    pub async fn call<T, F, Fut>(&self, order: Vec<usize>, mut op: F) -> Result<T, Status>
    where
        F: FnMut(QueryClient<GrpcChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut last = Status::unavailable("no broker configured");
        for i in order {
            match op(self.query(i)).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(&s) => {
                    tracing::debug!(broker = %self.brokers[i].url, error = %s, "broker call failed; trying the next");
                    self.mark(i, false, Some(s.message().to_string()));
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

    pub fn status(&self) -> Vec<BrokerStatus> {
        self.brokers
            .iter()
            .map(|b| BrokerStatus {
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
                for i in 0..pool.brokers.len() {
                    let mut client = HealthClient::new(pool.brokers[i].channel.clone());
                    let check = client.check(HealthCheckRequest {
                        service: String::new(),
                    });
                    let result =
                        tokio::time::timeout(every.max(Duration::from_secs(1)), check).await;
                    match result {
                        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => {
                            pool.mark(i, true, None)
                        }
                        Ok(Ok(_)) => pool.mark(i, false, Some("not serving".into())),
                        Ok(Err(s)) => pool.mark(i, false, Some(s.message().to_string())),
                        Err(_) => pool.mark(i, false, Some("health check timed out".into())),
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
        assert_eq!(pool.order(), vec![0, 1]);
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
            .call(vec![0, 1], |_| {
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
}
