//! Streams buffered snapshots to brokers over gRPC with acknowledgements (SPEC S2).
//!
//! Broker choice: every configured broker is probed with the gRPC health service (the shared
//! peer pool, `ringwatch_net::peers`, dialling a connection per use: an agent keeps no idle
//! connection to the brokers it is not streaming to) and tried in order of round-trip time,
//! unhealthy ones last; after a full cycle they are probed again. In a broker cluster an `Ack`
//! may name the host's owner (`owner_url`): once nothing is in flight the agent ends the stream
//! and opens the next one there, so its batches stop costing a forward; if the owner cannot be
//! reached it goes back to the usual order.
//! On a stream the agent sends `Register` first, then batches with increasing `seq`, at most
//! `max_in_flight` unacknowledged, and a `Heartbeat` every `heartbeat` period. An `Ack` removes
//! the batch's snapshots from the buffer (those it lists as refused are counted as dropped,
//! reason `rejected`); a `Reject` drops them all (counted the same way).
//! A stream error, a transport error or a missing ack within `ack_timeout` counts a reconnect,
//! sleeps the next back-off delay and moves on to the next broker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ringwatch_core::NodeId;
use ringwatch_net::client::{ClientError, Connector, GrpcChannel};
use ringwatch_net::peers::{Connections, PeerError, PeerPool};
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{
    AgentMessage, Batch, BrokerMessage, Heartbeat, Register, agent_message, broker_message,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::collect::now_ms;
use crate::config::Config;
use crate::metrics::DropReason;
use crate::shared::SharedBuffer;

/// Settings of the sender, derived from [`Config`].
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Broker endpoints.
    pub brokers: Vec<String>,
    /// Connect (and probe) timeout.
    pub connect_timeout: Duration,
    /// Reconnect when the oldest unacked batch is older than this.
    pub ack_timeout: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Snapshots per batch.
    pub max_batch: usize,
    /// Unacknowledged batches per stream.
    pub max_in_flight: usize,
    /// Back-off cap.
    pub backoff_max: Duration,
    /// The registration sent first on every stream.
    pub register: Register,
    /// TLS and the credential for the brokers.
    pub connector: Connector,
}

impl SenderConfig {
    /// Builds the sender settings for `host_id` with its `labels`.
    pub fn from_config(
        config: &Config,
        host_id: &str,
        labels: std::collections::BTreeMap<String, String>,
        connector: Connector,
    ) -> Self {
        SenderConfig {
            connector,
            brokers: config
                .brokers
                .endpoints
                .iter()
                .map(|b| b.trim().to_string())
                .collect(),
            connect_timeout: config.send.connect_timeout,
            ack_timeout: config.send.ack_timeout,
            heartbeat: config.send.heartbeat,
            max_batch: config.send.max_batch.max(1),
            max_in_flight: config.send.max_in_flight.max(1),
            backoff_max: config.send.backoff_max,
            register: Register {
                host_id: host_id.to_string(),
                labels: labels.into_iter().collect(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                interval_ms: config.interval_ms(),
            },
        }
    }
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Connect(#[from] PeerError),
    #[error("the host's owner: {0}")]
    Owner(String),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("broker answered {0}")]
    Status(#[from] tonic::Status),
    #[error("the broker closed the stream")]
    Closed,
    #[error("no ack for batch {0} within the ack timeout")]
    AckTimeout(u64),
}

/// A batch sent and not yet answered.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    first_ms: i64,
    last_ms: i64,
    snapshots: u64,
    sent_at: Instant,
}

/// The streaming half of the agent.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    shared: Arc<SharedBuffer>,
    brokers: PeerPool,
}

impl Sender {
    /// A sender draining `shared`; fails on a broker URL that is not one.
    pub fn new(config: SenderConfig, shared: Arc<SharedBuffer>) -> Result<Self, ClientError> {
        let brokers = PeerPool::from_urls(
            &config.brokers,
            &config.connector,
            Connections::PerUse,
            config.connect_timeout,
        )?;
        Ok(Sender {
            config,
            shared,
            brokers,
        })
    }

    /// Streams until `shutdown` is cancelled and everything buffered is acknowledged, or
    /// until `hard_stop` is cancelled, whichever comes first.
    pub async fn run(self, shutdown: CancellationToken, hard_stop: CancellationToken) {
        let mut backoff = Backoff::new(self.config.backoff_max);
        tokio::select! {
            biased;
            () = hard_stop.cancelled() => {
                let left = self.shared.with(|b| b.len());
                if left > 0 {
                    tracing::warn!(snapshots = left, "shutting down with unacknowledged snapshots");
                }
            }
            () = self.run_inner(&shutdown, &mut backoff) => {}
        }
        self.shared.metrics.connected.set(0);
    }

    async fn run_inner(&self, shutdown: &CancellationToken, backoff: &mut Backoff) {
        let mut order: VecDeque<NodeId> = VecDeque::new();
        // The host's owner, as the last broker named it.
        let mut owner: Option<String> = None;
        loop {
            if shutdown.is_cancelled() && self.shared.with(|b| b.is_empty()) {
                return;
            }
            if let Some(url) = owner.take() {
                match self.stream(Target::Url(&url), shutdown, backoff).await {
                    Ok(Ended::Drained) => return,
                    Ok(Ended::Moved(next)) => {
                        owner = (next != url).then_some(next);
                        continue;
                    }
                    Err(e) => {
                        self.shared.metrics.connected.set(0);
                        tracing::warn!(owner = %url, error = %e, "cannot stream to the host's owner; back to the usual order");
                    }
                }
            }
            if order.is_empty() {
                order = self.brokers.probe().await.into();
                tracing::debug!(?order, "broker order by health and latency");
            }
            let Some(broker) = order.pop_front() else {
                return;
            };
            let result = self.stream(Target::Pool(&broker), shutdown, backoff).await;
            self.shared.metrics.connected.set(0);
            match result {
                Ok(Ended::Drained) => return,
                Ok(Ended::Moved(url)) => {
                    tracing::info!(from = %broker, to = %url, "moving the stream to the host's owner");
                    self.shared.metrics.moves.inc();
                    owner = Some(url);
                }
                Err(e) => {
                    self.shared.metrics.reconnects.inc();
                    self.brokers.mark_failed(&broker, e.to_string());
                    let delay = backoff.next_delay();
                    tracing::warn!(%broker, error = %e, retry_in = ?delay, "broker stream failed");
                    if shutdown.is_cancelled() {
                        // Draining: try the next broker right away (bounded by the hard stop).
                        tokio::time::sleep(delay.min(Duration::from_millis(100))).await;
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                }
            }
        }
    }

    /// A channel to `target`, within the connect timeout.
    async fn connect(&self, target: Target<'_>) -> Result<GrpcChannel, StreamError> {
        match target {
            Target::Pool(id) => Ok(self.brokers.connect(id).await?),
            Target::Url(url) => {
                let endpoint = self
                    .config
                    .connector
                    .endpoint(url)
                    .map_err(|e| StreamError::Owner(e.to_string()))?
                    .connect_timeout(self.config.connect_timeout)
                    .tcp_nodelay(true);
                let channel = tokio::time::timeout(self.config.connect_timeout, endpoint.connect())
                    .await
                    .map_err(|_| StreamError::Timeout("connect"))?
                    .map_err(|e| StreamError::Owner(e.to_string()))?;
                Ok(self.config.connector.channel(channel))
            }
        }
    }

    /// One stream to `target`; ends `Ok` when drained after shutdown, or to move to the owner.
    async fn stream(
        &self,
        target: Target<'_>,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Ended, StreamError> {
        let timeout = self.config.connect_timeout;
        let broker = target.to_string();
        let mut client = IngestClient::new(self.connect(target).await?);
        let (tx, rx) = mpsc::channel(self.config.max_in_flight + 2);
        let register = AgentMessage {
            body: Some(agent_message::Body::Register(self.config.register.clone())),
        };
        tx.try_send(register).map_err(|_| StreamError::Closed)?;
        let response = tokio::time::timeout(timeout, client.stream(ReceiverStream::new(rx)))
            .await
            .map_err(|_| StreamError::Timeout("opening the stream"))??;
        let mut inbound = response.into_inner();
        tracing::info!(%broker, "streaming to broker");
        self.shared.metrics.connected.set(1);
        let lost = self.shared.with(|b| b.reset_cursor());
        if !lost.is_empty() {
            self.shared
                .metrics
                .record_drop(DropReason::BufferFull, lost);
            tracing::warn!(
                detail_samples = lost.detail_samples,
                snapshots = lost.snapshots,
                "data shed from unacknowledged snapshots while the buffer was full is lost: they are sent again without it"
            );
        }
        self.pump(&tx, &mut inbound, shutdown, backoff).await
    }

    async fn send(
        &self,
        tx: &mpsc::Sender<AgentMessage>,
        body: agent_message::Body,
    ) -> Result<(), StreamError> {
        let msg = AgentMessage { body: Some(body) };
        match tokio::time::timeout(self.config.ack_timeout, tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StreamError::Closed),
            Err(_) => Err(StreamError::Timeout("sending")),
        }
    }

    async fn pump(
        &self,
        tx: &mpsc::Sender<AgentMessage>,
        inbound: &mut tonic::Streaming<BrokerMessage>,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Ended, StreamError> {
        let cfg = &self.config;
        // The owner an Ack named: the stream moves there once nothing is in flight.
        let mut owner: Option<String> = None;
        let host_id = cfg.register.host_id.as_str();
        let mut seq = 0u64;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut heartbeat = tokio::time::interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut draining = shutdown.is_cancelled();
        loop {
            // Once an owner is named, nothing more is sent here: the stream moves when the
            // batches in flight are answered (draining at shutdown, it stays and finishes).
            while owner.is_none() && in_flight.len() < cfg.max_in_flight {
                let snapshots = self.shared.with(|b| b.next_batch(cfg.max_batch, host_id));
                let (Some(first), Some(last)) = (snapshots.first(), snapshots.last()) else {
                    break;
                };
                seq += 1;
                let entry = InFlight {
                    seq,
                    first_ms: first.timestamp_ms,
                    last_ms: last.timestamp_ms,
                    snapshots: snapshots.len() as u64,
                    sent_at: Instant::now(),
                };
                self.send(tx, agent_message::Body::Batch(Batch { seq, snapshots }))
                    .await?;
                self.shared.metrics.batches_sent.inc();
                in_flight.push_back(entry);
            }
            if draining && in_flight.is_empty() && self.shared.with(|b| b.is_empty()) {
                tracing::info!("everything buffered is acknowledged");
                return Ok(Ended::Drained);
            }
            if !draining
                && in_flight.is_empty()
                && let Some(url) = owner.take()
            {
                return Ok(Ended::Moved(url));
            }
            let ack_deadline = in_flight
                .front()
                .map(|f| (f.seq, f.sent_at + cfg.ack_timeout));
            let room = in_flight.len() < cfg.max_in_flight;
            tokio::select! {
                msg = inbound.message() => match msg? {
                    Some(m) => {
                        let named = self.handle(m, &mut in_flight, backoff);
                        if !draining && let Some(url) = named {
                            owner = Some(url);
                        }
                    }
                    None => return Err(StreamError::Closed),
                },
                () = self.shared.notify.notified(), if room && !draining && owner.is_none() => {}
                _ = heartbeat.tick() => {
                    let hb = Heartbeat { timestamp_ms: now_ms() };
                    self.send(tx, agent_message::Body::Heartbeat(hb)).await?;
                }
                () = sleep_until_opt(ack_deadline.map(|d| d.1)), if ack_deadline.is_some() => {
                    return Err(StreamError::AckTimeout(ack_deadline.map_or(0, |d| d.0)));
                }
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    owner = None;
                }
            }
        }
    }

    /// Settles an answer; returns the host's owner when an `Ack` names one.
    fn handle(
        &self,
        msg: BrokerMessage,
        in_flight: &mut VecDeque<InFlight>,
        backoff: &mut Backoff,
    ) -> Option<String> {
        let metrics = &self.shared.metrics;
        match msg.body {
            Some(broker_message::Body::Ack(ack)) => {
                let Some(f) = take(in_flight, ack.seq) else {
                    tracing::warn!(seq = ack.seq, "ack for an unknown batch");
                    return None;
                };
                let refused = &ack.rejected_timestamps_ms;
                let dropped = self.shared.with(|b| {
                    let dropped = b.measure(refused);
                    b.settle(f.first_ms, f.last_ms, true);
                    b.remove_range(f.first_ms, f.last_ms);
                    dropped
                });
                if !refused.is_empty() {
                    metrics.record_drop(DropReason::Rejected, dropped);
                    tracing::warn!(
                        seq = ack.seq,
                        refused = refused.len(),
                        reason = %ack.reject_reason,
                        dropped_snapshots = dropped.snapshots,
                        "broker refused some snapshots of a batch; they are dropped, the rest is stored"
                    );
                }
                metrics.batches_acked.inc();
                metrics
                    .snapshots_acked
                    .inc_by(f.snapshots.saturating_sub(refused.len() as u64));
                metrics.duplicates_acked.inc_by(u64::from(ack.duplicates));
                backoff.reset();
                tracing::trace!(
                    seq = ack.seq,
                    stored = ack.stored,
                    duplicates = ack.duplicates,
                    "batch acknowledged"
                );
                (!ack.owner_url.is_empty()).then_some(ack.owner_url)
            }
            Some(broker_message::Body::Reject(rej)) => {
                let Some(f) = take(in_flight, rej.seq) else {
                    tracing::warn!(seq = rej.seq, reason = %rej.reason, "reject for an unknown batch");
                    return None;
                };
                let (dropped, shed) = self.shared.with(|b| {
                    let shed = b.settle(f.first_ms, f.last_ms, false);
                    (b.remove_range(f.first_ms, f.last_ms), shed)
                });
                if !shed.is_empty() {
                    metrics.record_drop(DropReason::BufferFull, shed);
                }
                metrics.batches_rejected.inc();
                metrics.record_drop(DropReason::Rejected, dropped);
                tracing::warn!(
                    seq = rej.seq,
                    code = rej.code,
                    reason = %rej.reason,
                    dropped_snapshots = dropped.snapshots,
                    dropped_detail_samples = dropped.detail_samples,
                    dropped_total_samples = dropped.total_samples,
                    "broker rejected a batch; its snapshots are dropped"
                );
                None
            }
            None => {
                tracing::debug!("empty broker message");
                None
            }
        }
    }
}

/// Where a stream goes.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A configured broker.
    Pool(&'a NodeId),
    /// The host's owner, as a broker named it.
    Url(&'a str),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Pool(id) => write!(f, "{id}"),
            Target::Url(url) => f.write_str(url),
        }
    }
}

/// How a stream ended without an error.
enum Ended {
    /// Shut down with everything acknowledged.
    Drained,
    /// To move to the host's owner at this URL.
    Moved(String),
}

fn take(in_flight: &mut VecDeque<InFlight>, seq: u64) -> Option<InFlight> {
    let pos = in_flight.iter().position(|f| f.seq == seq)?;
    in_flight.remove(pos)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::buffer::Buffer;
    use crate::collect::{Priority, Samples};
    use crate::metrics::AgentMetrics;
    use ringwatch_proto::Unit;
    use ringwatch_proto::ingest_server::{Ingest, IngestServer};
    use ringwatch_proto::{Ack, Reject};
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status, Streaming};

    /// A tiny in-test broker: records every message, acks batches except those in `reject`.
    #[derive(Clone, Default)]
    pub(crate) struct TestBroker {
        pub log: Arc<Mutex<Vec<AgentMessage>>>,
        pub reject: Vec<u64>,
        /// Batches whose first snapshot is refused (the rest stored).
        pub refuse_first: Vec<u64>,
        /// Named in every Ack as the host's owner (empty: none).
        pub owner_url: String,
    }

    #[tonic::async_trait]
    impl Ingest for TestBroker {
        type StreamStream = ReceiverStream<Result<BrokerMessage, Status>>;

        async fn stream(
            &self,
            request: Request<Streaming<AgentMessage>>,
        ) -> Result<Response<Self::StreamStream>, Status> {
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(16);
            let this = self.clone();
            tokio::spawn(async move {
                while let Ok(Some(msg)) = inbound.message().await {
                    this.log.lock().expect("log").push(msg.clone());
                    let Some(agent_message::Body::Batch(b)) = msg.body else {
                        continue;
                    };
                    let body = if this.reject.contains(&b.seq) {
                        broker_message::Body::Reject(Reject {
                            seq: b.seq,
                            code: 3,
                            reason: "test says no".into(),
                        })
                    } else {
                        let refused: Vec<i64> = if this.refuse_first.contains(&b.seq) {
                            b.snapshots.iter().take(1).map(|s| s.timestamp_ms).collect()
                        } else {
                            Vec::new()
                        };
                        broker_message::Body::Ack(Ack {
                            seq: b.seq,
                            stored: (b.snapshots.len() - refused.len()) as u32,
                            duplicates: 0,
                            reject_reason: if refused.is_empty() {
                                String::new()
                            } else {
                                "test refuses one".into()
                            },
                            rejected_timestamps_ms: refused,
                            owner_url: this.owner_url.clone(),
                        })
                    };
                    if tx
                        .send(Ok(BrokerMessage { body: Some(body) }))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        }
    }

    /// Serves `broker` (and the health service) on an ephemeral port until `stop`.
    pub(crate) async fn serve(broker: TestBroker, stop: CancellationToken) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(IngestServer::new(broker))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .expect("serve");
        });
        addr
    }

    fn sender_config(addr: SocketAddr) -> SenderConfig {
        SenderConfig {
            brokers: vec![format!("http://{addr}")],
            connector: Connector::plain(),
            connect_timeout: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            max_batch: 2,
            max_in_flight: 2,
            backoff_max: Duration::from_secs(1),
            register: Register {
                host_id: "test-host".into(),
                labels: [("zone".to_string(), "z1".to_string())].into(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                interval_ms: 1000,
            },
        }
    }

    fn shared_with(n: i64) -> Arc<SharedBuffer> {
        let shared = Arc::new(SharedBuffer::new(
            Buffer::new(100),
            Arc::new(AgentMetrics::new()),
        ));
        for ts in 1..=n {
            let mut s = Samples {
                timestamp_ms: ts,
                ..Samples::default()
            };
            s.total("cpu.usage", ts as f64, Unit::Percent);
            s.detail("cpu.core.0.usage", ts as f64, Unit::Percent);
            shared.with(|b| b.push(s));
        }
        shared
    }

    async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn batches(log: &[AgentMessage]) -> Vec<Batch> {
        log.iter()
            .filter_map(|m| match &m.body {
                Some(agent_message::Body::Batch(b)) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn streams_registers_first_and_acks_empty_the_buffer() {
        let stop = CancellationToken::new();
        let broker = TestBroker::default();
        let addr = serve(broker.clone(), stop.clone()).await;
        let shared = shared_with(5);
        let shutdown = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let task = tokio::spawn(
            Sender::new(sender_config(addr), shared.clone())
                .expect("sender")
                .run(shutdown.clone(), hard_stop),
        );
        wait_until("the buffer to empty", || shared.with(|b| b.is_empty())).await;
        let m = &shared.metrics;
        wait_until("three acks", || m.batches_acked.get() == 3).await;
        assert_eq!(m.snapshots_acked.get(), 5);
        assert_eq!(m.batches_sent.get(), 3);
        assert_eq!(m.connected.get(), 1);
        assert_eq!(m.buffer_snapshots.get(), 0);

        let log = broker.log.lock().expect("log").clone();
        match &log[0].body {
            Some(agent_message::Body::Register(r)) => {
                assert_eq!(r.host_id, "test-host");
                assert_eq!(r.labels.get("zone").map(String::as_str), Some("z1"));
                assert_eq!(r.interval_ms, 1000);
            }
            other => panic!("first message is not Register: {other:?}"),
        }
        let b = batches(&log);
        let seqs: Vec<u64> = b.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        let ts: Vec<i64> = b
            .iter()
            .flat_map(|b| b.snapshots.iter().map(|s| s.timestamp_ms))
            .collect();
        assert_eq!(ts, vec![1, 2, 3, 4, 5]);
        assert!(b.iter().all(|b| b.snapshots.len() <= 2));
        assert!(
            b[0].snapshots[0]
                .metrics
                .iter()
                .all(|m| m.value.is_finite())
        );
        assert_eq!(b[0].snapshots[0].host_id, "test-host");

        // New data after the first round is streamed too.
        shared.with(|b| {
            let mut s = Samples {
                timestamp_ms: 10,
                ..Samples::default()
            };
            s.total("cpu.usage", 1.0, Unit::Percent);
            b.push(s)
        });
        shared.notify.notify_one();
        wait_until("the fourth ack", || m.batches_acked.get() == 4).await;
        assert!(shared.with(|b| b.is_empty()));

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("sender stops promptly")
            .expect("join");
        assert_eq!(m.connected.get(), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn snapshots_refused_within_an_acked_batch_are_counted_as_dropped() {
        let stop = CancellationToken::new();
        let broker = TestBroker {
            refuse_first: vec![1],
            ..TestBroker::default()
        };
        let addr = serve(broker.clone(), stop.clone()).await;
        let shared = shared_with(3);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            Sender::new(sender_config(addr), shared.clone())
                .expect("sender")
                .run(shutdown.clone(), CancellationToken::new()),
        );
        let m = &shared.metrics;
        wait_until("the buffer to empty", || shared.with(|b| b.is_empty())).await;
        wait_until("two acks", || m.batches_acked.get() == 2).await;
        // Batch 1 held snapshots 1 and 2; the broker refused snapshot 1 and stored 2.
        assert_eq!(m.batches_rejected.get(), 0);
        assert_eq!(m.snapshots_acked.get(), 2);
        assert_eq!(m.dropped_snapshots(DropReason::Rejected), 1);
        assert_eq!(m.dropped_samples(Priority::Detail, DropReason::Rejected), 1);
        assert_eq!(m.dropped_samples(Priority::Total, DropReason::Rejected), 1);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("sender stops promptly")
            .expect("join");
        stop.cancel();
    }

    #[tokio::test]
    async fn rejected_batches_are_dropped_and_counted() {
        let stop = CancellationToken::new();
        let broker = TestBroker {
            reject: vec![1],
            ..TestBroker::default()
        };
        let addr = serve(broker.clone(), stop.clone()).await;
        let shared = shared_with(3);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            Sender::new(sender_config(addr), shared.clone())
                .expect("sender")
                .run(shutdown.clone(), CancellationToken::new()),
        );
        let m = &shared.metrics;
        wait_until("the buffer to empty", || shared.with(|b| b.is_empty())).await;
        wait_until("the ack", || m.batches_acked.get() == 1).await;
        assert_eq!(m.batches_rejected.get(), 1);
        assert_eq!(m.snapshots_acked.get(), 1);
        assert_eq!(m.dropped_samples(Priority::Detail, DropReason::Rejected), 2);
        assert_eq!(m.dropped_samples(Priority::Total, DropReason::Rejected), 2);
        assert_eq!(m.dropped_snapshots(DropReason::Rejected), 2);
        assert_eq!(m.dropped_snapshots(DropReason::BufferFull), 0);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("sender stops promptly")
            .expect("join");
        stop.cancel();
    }

    #[tokio::test]
    async fn unreachable_brokers_count_reconnects_and_order_by_health() {
        // Nothing listens on this port.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let stop = CancellationToken::new();
        let live = serve(TestBroker::default(), stop.clone()).await;
        let urls = [format!("http://{dead}"), format!("http://{live}")];
        let pool = PeerPool::from_urls(
            &urls,
            &Connector::plain(),
            Connections::PerUse,
            Duration::from_secs(1),
        )
        .expect("pool");
        let order: Vec<String> = pool.probe().await.iter().map(|id| id.to_string()).collect();
        assert_eq!(order, [urls[1].clone(), urls[0].clone()]);

        let shared = shared_with(1);
        let mut cfg = sender_config(dead);
        cfg.connect_timeout = Duration::from_millis(500);
        let shutdown = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let task = tokio::spawn(
            Sender::new(cfg, shared.clone())
                .expect("sender")
                .run(shutdown.clone(), hard_stop.clone()),
        );
        wait_until("a reconnect", || shared.metrics.reconnects.get() >= 1).await;
        assert_eq!(shared.metrics.connected.get(), 0);
        assert_eq!(
            shared.with(|b| b.len()),
            1,
            "nothing is lost while unreachable"
        );
        shutdown.cancel();
        hard_stop.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("hard stop ends the sender")
            .expect("join");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_named_owner_takes_the_stream_once_nothing_is_in_flight_and_nothing_is_lost() {
        let stop = CancellationToken::new();
        let owner = TestBroker::default();
        let owner_addr = serve(owner.clone(), stop.clone()).await;
        // The configured broker stores each batch and names another broker as the owner.
        let first = TestBroker {
            owner_url: format!("http://{owner_addr}"),
            ..TestBroker::default()
        };
        let first_addr = serve(first.clone(), stop.clone()).await;
        let shared = shared_with(9);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            Sender::new(sender_config(first_addr), shared.clone())
                .expect("sender")
                .run(shutdown.clone(), CancellationToken::new()),
        );
        wait_until("the buffer to empty", || shared.with(|b| b.is_empty())).await;
        let m = &shared.metrics;
        assert_eq!(m.moves.get(), 1, "moved once");
        assert_eq!(m.reconnects.get(), 0, "a move is not a failure");
        assert_eq!(m.snapshots_acked.get(), 9);
        let at_first = batches(&first.log.lock().expect("log"));
        let at_owner = owner.log.lock().expect("log").clone();
        // The owner got a Register first, then the rest; no snapshot went to both.
        assert!(matches!(
            at_owner[0].body,
            Some(agent_message::Body::Register(_))
        ));
        let ts = |b: &[Batch]| -> Vec<i64> {
            b.iter()
                .flat_map(|b| b.snapshots.iter().map(|s| s.timestamp_ms))
                .collect()
        };
        let (a, b) = (ts(&at_first), ts(&batches(&at_owner)));
        assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");
        let mut all = [a, b].concat();
        all.sort();
        assert_eq!(all, (1..=9).collect::<Vec<i64>>());
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("sender stops promptly")
            .expect("join");
        stop.cancel();
    }
}
