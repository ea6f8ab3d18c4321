//! Which broker a simulated host streams to, and over which connection.
//!
//! Brokers are probed with the peer pool the agent uses (`ringwatch_net::peers`, a connection
//! per probe as an agent dials) and ordered as the agent orders them: healthy by round-trip
//! time, unhealthy last. The probe
//! result is shared by every host for a second, so a fleet reconnecting at once probes once,
//! not once per host. Hosts spread over the healthy brokers (host `h` starts at healthy broker
//! `h mod n`), as a fleet whose nodes sit nearer different brokers does.
//!
//! Connections: by default each host dials its own connection for each stream, as an agent
//! does. With `--connections N` (N < hosts), each broker gets N lazily-connected channels and
//! host `h` opens its stream on channel `h mod N` (HTTP/2 multiplexing; the channel reconnects
//! by itself after a failure).

use std::time::Duration;

use ringwatch_net::client::{ClientError, Connector, GrpcChannel};
use ringwatch_net::peers::{Connections, PeerPool};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// How long one probe result is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

pub struct Brokers {
    urls: Vec<String>,
    endpoints: Vec<Endpoint>,
    /// Per broker, the shared channels (empty: one connection per host).
    shared: Vec<Vec<Channel>>,
    connect_timeout: Duration,
    connector: Connector,
    /// The brokers probed for health and round trip.
    pool: PeerPool,
    /// The last probe: when, and broker indices healthy first (by RTT), with how many are healthy.
    probed: Mutex<Option<(Instant, Vec<usize>, usize)>>,
}

impl Brokers {
    /// `connections` < `hosts` shares channels; otherwise each host dials its own.
    pub fn new(
        urls: &[String],
        hosts: u32,
        connections: u32,
        connect_timeout: Duration,
        connector: Connector,
    ) -> Result<Brokers, ClientError> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let endpoints = urls
            .iter()
            .map(|u| {
                Ok(connector
                    .endpoint(u)?
                    .connect_timeout(connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_timeout(Duration::from_secs(10)))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let shared = if connections < hosts {
            endpoints
                .iter()
                .map(|e| (0..connections).map(|_| e.connect_lazy()).collect())
                .collect()
        } else {
            Vec::new()
        };
        let pool = PeerPool::from_urls(&urls, &connector, Connections::PerUse, connect_timeout)?;
        Ok(Brokers {
            pool,
            urls,
            endpoints,
            shared,
            connect_timeout,
            connector,
            probed: Mutex::new(None),
        })
    }

    /// The index of the broker at `url`, if it is one of the configured brokers.
    pub fn index_of(&self, url: &str) -> Option<usize> {
        self.urls.iter().position(|u| u == url)
    }

    pub fn url(&self, b: usize) -> &str {
        self.urls.get(b).map_or("", String::as_str)
    }

    /// The order in which host `h` tries the brokers.
    pub async fn order(&self, h: u32) -> Vec<usize> {
        let mut probed = self.probed.lock().await;
        let fresh = probed
            .as_ref()
            .is_some_and(|(at, _, _)| at.elapsed() < PROBE_TTL);
        if !fresh {
            let order: Vec<usize> = self
                .pool
                .probe()
                .await
                .iter()
                .filter_map(|id| self.urls.iter().position(|u| u == id.as_str()))
                .collect();
            let healthy = self.pool.healthy_count();
            *probed = Some((Instant::now(), order, healthy));
        }
        let Some((_, order, healthy)) = probed.as_ref() else {
            return (0..self.urls.len()).collect();
        };
        let mut out = order.clone();
        if *healthy > 1 {
            out[..*healthy].rotate_left(h as usize % healthy);
        }
        out
    }

    /// A channel to broker `b` for host `h`: a shared one, or a new connection (with the
    /// connect timeout).
    pub async fn channel(&self, b: usize, h: u32) -> Result<GrpcChannel, ChannelError> {
        if let Some(slots) = self.shared.get(b)
            && !slots.is_empty()
        {
            return Ok(self
                .connector
                .channel(slots[h as usize % slots.len()].clone()));
        }
        let endpoint = self.endpoints.get(b).ok_or(ChannelError::NoBroker)?;
        let channel = tokio::time::timeout(self.connect_timeout, endpoint.connect())
            .await
            .map_err(|_| ChannelError::Timeout)?
            .map_err(ChannelError::Connect)?;
        Ok(self.connector.channel(channel))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("no such broker")]
    NoBroker,
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Connect(#[source] tonic::transport::Error),
}
