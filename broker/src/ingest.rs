//! The agent ingest stream: register, batches acknowledged once stored, heartbeats.
//!
//! Bad input in a batch gets a `Reject` with a reason and the stream stays open; a malformed or
//! oversized message ends that stream with the decoder's status (other streams are untouched);
//! a store failure ends the stream with UNAVAILABLE so the agent keeps the batch and resends it.

use std::pin::Pin;
use std::sync::Arc;

use ringwatch_proto::ingest_server::Ingest;
use ringwatch_proto::{Ack, AgentMessage, BrokerMessage, Reject, agent_message, broker_message};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::metrics::BrokerMetrics;
use crate::router::Router;
use crate::store::HostRecord;
use crate::validate::{self, Limits, Rejection};

pub(crate) use ringwatch_core::now_ms;

pub struct IngestService {
    pub(crate) router: Arc<Router>,
    pub(crate) metrics: Arc<BrokerMetrics>,
    pub(crate) limits: Limits,
    pub(crate) streams: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
}

/// The replies of one ingest stream, produced as hyper asks for them.
type Replies = Pin<Box<dyn Stream<Item = Result<BrokerMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = Replies;

    async fn stream(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            self.metrics
                .rejected
                .get_or_create(&[("reason", "too_many_streams")])
                .inc();
            if let Some(n) = self.metrics.refusal_log.allow() {
                tracing::warn!(
                    not_logged_since_last = n,
                    "ingest stream refused: too many open streams"
                );
            }
            Status::resource_exhausted(
                "too many open ingest streams on this broker; try another broker",
            )
        })?;
        self.metrics.ingest_streams.inc();
        // The session is the response stream itself: it reads, stores and answers in the task
        // hyper already runs for this HTTP/2 stream, so a connected agent costs no task and no
        // queue of its own (a broker holds one stream per agent).
        let peer = req.remote_addr();
        // Every line this stream logs carries the broker and, once it registers, the host.
        let span = tracing::info_span!(
            "ingest",
            node_id = %self.router.node_id(),
            ?peer,
            host = tracing::field::Empty
        );
        let session = Session {
            span,
            handler: StreamHandler {
                router: self.router.clone(),
                metrics: self.metrics.clone(),
                limits: self.limits,
                host: None,
            },
            peer,
            inbound: req.into_inner(),
            shutdown: self.shutdown.clone(),
            ended: false,
            _permit: permit,
        };
        let replies = futures_util::stream::unfold(session, |mut s| async move {
            let span = s.span.clone();
            let reply = s.next_reply().instrument(span).await?;
            Some((reply, s))
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

/// One agent's stream: what it has said so far and where its replies go.
struct Session {
    span: tracing::Span,
    handler: StreamHandler,
    peer: Option<std::net::SocketAddr>,
    inbound: Streaming<AgentMessage>,
    shutdown: CancellationToken,
    /// An error ended the stream: nothing more is read or answered.
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.handler.metrics.ingest_streams.dec();
    }
}

impl Session {
    /// Reads messages until one has a reply (an ack, a reject, or an error that ends the
    /// stream); `None` once the agent is done or the stream has ended.
    async fn next_reply(&mut self) -> Option<Result<BrokerMessage, Status>> {
        if self.ended {
            return None;
        }
        let reply = self
            .handler
            .next_reply(&mut self.inbound, &self.shutdown, self.peer)
            .await;
        if matches!(reply, Some(Err(_))) {
            self.ended = true;
        }
        reply
    }
}

struct StreamHandler {
    router: Arc<Router>,
    metrics: Arc<BrokerMetrics>,
    limits: Limits,
    host: Option<String>,
}

impl StreamHandler {
    async fn next_reply(
        &mut self,
        inbound: &mut Streaming<AgentMessage>,
        shutdown: &CancellationToken,
        peer: Option<std::net::SocketAddr>,
    ) -> Option<Result<BrokerMessage, Status>> {
        loop {
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    return Some(Err(Status::unavailable("broker is shutting down; reconnect to another broker")));
                }
                m = inbound.message() => m,
            };
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(status) => {
                    let kind = match status.code() {
                        tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => "oversized",
                        tonic::Code::Internal | tonic::Code::InvalidArgument => "malformed",
                        _ => "transport",
                    };
                    self.metrics
                        .stream_errors
                        .get_or_create(&[("kind", kind)])
                        .inc();
                    // A client that goes away (a fleet reconnecting, a killed process) is normal
                    // and counted; only bad input is worth a line each.
                    if kind == "transport" {
                        tracing::debug!(?peer, host = ?self.host, code = ?status.code(), message = status.message(), "ingest stream ended by a transport error");
                    } else {
                        if let Some(n) = self.metrics.refusal_log.allow() {
                            tracing::warn!(?peer, host = ?self.host, code = ?status.code(), message = status.message(), not_logged_since_last = n, "ingest stream ended by bad input");
                        }
                    }
                    return Some(Err(status));
                }
            };
            let reply = match msg.body {
                None => Err(self.reject(
                    0,
                    Rejection {
                        code: tonic::Code::InvalidArgument,
                        label: "empty_message",
                        reason: "message has no body (register, batch or heartbeat)".into(),
                    },
                )),
                Some(agent_message::Body::Register(r)) => {
                    if let Err(rej) = validate::check_register(&r) {
                        self.count(&rej);
                        if let Some(n) = self.metrics.refusal_log.allow() {
                            tracing::warn!(?peer, reason = %rej.reason, not_logged_since_last = n, "registration refused");
                        }
                        return Some(Err(rej.status()));
                    }
                    let record = HostRecord {
                        host_id: r.host_id.clone(),
                        labels: r.labels.into_iter().collect(),
                        agent_version: r.agent_version,
                        interval_ms: r.interval_ms,
                        last_seen_ms: now_ms(),
                    };
                    if let Err(e) = self.router.register(record).await {
                        tracing::error!(error = %e, "store failed to register a host");
                        return Some(Err(Status::from(e)));
                    }
                    tracing::Span::current().record("host", r.host_id.as_str());
                    tracing::info!(host = %r.host_id, ?peer, "agent registered");
                    self.host = Some(r.host_id);
                    Ok(None)
                }
                Some(agent_message::Body::Heartbeat(_)) => {
                    if let Some(h) = &self.host
                        && let Err(e) = self.router.touch(h, now_ms()).await
                    {
                        tracing::warn!(error = %e, "heartbeat not recorded");
                    }
                    Ok(None)
                }
                Some(agent_message::Body::Batch(b)) => self.batch(b).await,
            };
            match reply {
                Ok(None) => continue,
                Ok(Some(ack)) => return Some(Ok(ack)),
                Err(Ok(reject)) => return Some(Ok(reject)),
                Err(Err(status)) => return Some(Err(status)),
            }
        }
    }

    fn count(&self, rej: &Rejection) {
        self.metrics
            .rejected
            .get_or_create(&[("reason", rej.label)])
            .inc();
    }

    fn reject(&self, seq: u64, rej: Rejection) -> Result<BrokerMessage, Status> {
        self.count(&rej);
        if let Some(n) = self.metrics.refusal_log.allow() {
            tracing::warn!(host = ?self.host, seq, reason = %rej.reason, not_logged_since_last = n, "batch rejected");
        }
        Ok(BrokerMessage {
            body: Some(broker_message::Body::Reject(Reject {
                seq,
                code: rej.code as i32,
                reason: rej.reason,
            })),
        })
    }

    /// Ok(Some(ack)), Err(Ok(reject)) keeping the stream, or Err(Err(status)) ending it.
    async fn batch(
        &self,
        b: ringwatch_proto::Batch,
    ) -> Result<Option<BrokerMessage>, Result<BrokerMessage, Status>> {
        self.metrics.batches_received.inc();
        let started = std::time::Instant::now();
        let reply = self.batch_inner(b).await;
        if let Ok(Some(_)) = &reply {
            self.metrics
                .ack_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        reply
    }

    async fn batch_inner(
        &self,
        b: ringwatch_proto::Batch,
    ) -> Result<Option<BrokerMessage>, Result<BrokerMessage, Status>> {
        let Some(host) = &self.host else {
            return Err(self.reject(
                b.seq,
                Rejection {
                    code: tonic::Code::FailedPrecondition,
                    label: "not_registered",
                    reason: "send Register before the first batch".into(),
                },
            ));
        };
        if let Err(rej) = validate::check_batch_shape(&b.snapshots, &self.limits) {
            return Err(self.reject(b.seq, rej));
        }
        // Each snapshot on its own: the good ones are stored, the bad ones refused by
        // timestamp in the Ack. Only a batch with nothing good is rejected whole.
        let now = now_ms();
        let (mut good, mut refused) = (Vec::with_capacity(b.snapshots.len()), Vec::new());
        for s in b.snapshots {
            match validate::check_snapshot(&s, host, &self.limits, now) {
                Ok(()) => good.push(s),
                Err(rej) => refused.push((s.timestamp_ms, rej)),
            }
        }
        if good.is_empty() {
            let (_, first) = refused.swap_remove(0);
            return Err(self.reject(b.seq, first));
        }
        let mut reject_reason = String::new();
        if let Some((_, first)) = refused.first() {
            for (_, rej) in &refused {
                self.metrics
                    .rejected_snapshots
                    .get_or_create(&[("reason", rej.label)])
                    .inc();
            }
            if let Some(n) = self.metrics.refusal_log.allow() {
                tracing::warn!(host, seq = b.seq, refused = refused.len(), stored = good.len(), reason = %first.reason, not_logged_since_last = n, "snapshots refused; the rest of the batch is stored");
            }
            reject_reason = first.reason.clone();
        }
        // In a task of its own: if the agent goes away meanwhile, hyper drops this session, and
        // a write cancelled halfway (a Redis retry abandoned, the live push skipped) would leave
        // what it did unannounced. The task finishes the write whatever happens to the stream.
        let router = self.router.clone();
        let good_ts: Vec<i64> = good.iter().map(|s| s.timestamp_ms).collect();
        let written = tokio::spawn(async move { router.write(good).await })
            .await
            .unwrap_or_else(|e| {
                Err(crate::store::StoreError::Unavailable(format!(
                    "the store write stopped: {e}"
                )))
            });
        match written {
            Ok(out) => {
                self.metrics.stored(&out);
                let mut rejected: Vec<i64> = refused.iter().map(|(ts, _)| *ts).collect();
                // The store's own refusals (a host past its bound of metric names): named in
                // the same Ack, so the agent drops them instead of resending.
                if let Some((_, reason)) = out.refused.first() {
                    self.metrics
                        .rejected_snapshots
                        .get_or_create(&[("reason", "too_many_metric_names")])
                        .inc_by(out.refused.len() as u64);
                    rejected.extend(out.refused.iter().filter_map(|(i, _)| good_ts.get(*i)));
                    if let Some(n) = self.metrics.refusal_log.allow() {
                        tracing::warn!(host, seq = b.seq, refused = out.refused.len(), %reason, not_logged_since_last = n, "snapshots refused by the store");
                    }
                    if reject_reason.is_empty() {
                        reject_reason = reason.clone();
                    }
                }
                Ok(Some(BrokerMessage {
                    body: Some(broker_message::Body::Ack(Ack {
                        seq: b.seq,
                        stored: out.stored,
                        duplicates: out.duplicates,
                        rejected_timestamps_ms: rejected,
                        reject_reason,
                        owner_url: self.router.owner_url(host).unwrap_or_default(),
                    })),
                }))
            }
            Err(e) => {
                self.metrics.store_write_errors.inc();
                tracing::error!(host, seq = b.seq, error = %e, "store write failed; batch not acknowledged, the agent keeps it");
                let s = Status::from(e);
                Err(Err(Status::with_metadata(
                    s.code(),
                    format!(
                        "store write failed, batch {} not stored: {}",
                        b.seq,
                        s.message()
                    ),
                    s.metadata().clone(),
                )))
            }
        }
    }
}
