//! One simulated host: the agent's streaming protocol, snapshot by snapshot.
//!
//! As the agent (`ringwatch_agent::sender`): `Register` first on every stream, then batches
//! numbered by `seq` from 1, at most `max_in_flight` unacknowledged, a `Heartbeat` every
//! period; an `Ack` settles its batch (snapshots it names as refused are counted as rejected,
//! the rest are recorded in the ledger), a `Reject` drops the batch (counted); a stream error,
//! a closed stream or no ack within the ack timeout counts a reconnect, sleeps the agent's
//! back-off (1 s, 2 s, 4 s … capped) and moves to the next broker, where everything
//! unacknowledged is sent again in order.
//!
//! A host keeps no snapshot bodies: snapshot `k` is rebuilt from (host, timestamp) whenever it
//! is sent, so a host costs a few hundred bytes plus the indices it has not had acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ringwatch_agent::backoff::Backoff;
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{
    AgentMessage, Batch, BrokerMessage, Heartbeat, Register, Snapshot, agent_message,
    broker_message,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::brokers::{Brokers, ChannelError};
use crate::ledger::{Header, LedgerWriter};
use crate::now_ms;
use crate::stats::Stats;
use crate::values::{self, MetricDef};

/// What every host of a run shares.
pub struct Plan {
    pub grid: Header,
    pub defs: Vec<MetricDef>,
    pub window: bool,
    /// Backfill: every snapshot is due at once. Live: snapshot `k` is due at its timestamp.
    pub backfill: bool,
    pub labels: Vec<(String, String)>,
    pub max_batch: usize,
    pub max_in_flight: usize,
    pub buffer_capacity: usize,
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    pub heartbeat: Duration,
    pub backoff_max: Duration,
    /// Move a host's stream to the owner a broker names (as the agent does).
    pub follow_owner: bool,
    /// No host sends or waits after this (the drain deadline).
    pub deadline: Instant,
}

/// Everything a host task needs.
pub struct Ctx {
    pub plan: Plan,
    pub brokers: Brokers,
    pub ledger: LedgerWriter,
    pub stats: Stats,
    /// Cancelled by a signal: stop at once.
    pub stop: CancellationToken,
}

/// One host's place in its snapshot sequence.
#[derive(Debug)]
pub(crate) struct Sim {
    h: u32,
    /// The next snapshot index to produce.
    next_k: u64,
    end_k: u64,
    /// Produced and not yet settled, oldest first.
    pending: VecDeque<u64>,
    /// `pending[..sent]` went out on the current stream.
    sent: usize,
}

impl Sim {
    pub(crate) fn new(h: u32, end_k: u64) -> Sim {
        Sim {
            h,
            next_k: 0,
            end_k,
            pending: VecDeque::new(),
            sent: 0,
        }
    }

    /// Produces the snapshots due by `now_ms`: in live mode those whose timestamp has come
    /// (beyond `capacity`, dropping the oldest not yet sent, counted; one in flight may still be
    /// acknowledged, so it stays), in backfill mode as many as the in-flight window can take.
    /// Returns how many were dropped.
    pub(crate) fn produce(&mut self, plan: &Plan, now_ms: i64) -> u64 {
        let mut dropped = 0;
        if plan.backfill {
            let window = plan.max_batch * plan.max_in_flight;
            while self.next_k < self.end_k && self.pending.len() < window {
                self.pending.push_back(self.next_k);
                self.next_k += 1;
            }
            return 0;
        }
        while self.next_k < self.end_k && plan.grid.ts(self.h, self.next_k) <= now_ms {
            self.pending.push_back(self.next_k);
            self.next_k += 1;
            if self.pending.len() > plan.buffer_capacity && self.sent < self.pending.len() {
                self.pending.remove(self.sent);
                dropped += 1;
            }
        }
        dropped
    }

    /// How long until the next snapshot is due (live mode), if one is left.
    pub(crate) fn next_due(&self, plan: &Plan, now_ms: i64) -> Option<Duration> {
        if plan.backfill || self.next_k >= self.end_k {
            return None;
        }
        let wait = plan.grid.ts(self.h, self.next_k) - now_ms;
        Some(Duration::from_millis(wait.max(0) as u64))
    }

    /// The next batch to send: up to `max` unsent snapshot indices.
    pub(crate) fn next_batch(&mut self, max: usize) -> Vec<u64> {
        let n = (self.pending.len() - self.sent).min(max);
        let batch: Vec<u64> = self
            .pending
            .range(self.sent..self.sent + n)
            .copied()
            .collect();
        self.sent += n;
        batch
    }

    /// Settles the snapshots of a batch (acknowledged or rejected): they leave the buffer.
    pub(crate) fn settle(&mut self, ks: &[u64]) {
        let before = self.pending.len();
        self.pending.retain(|k| ks.binary_search(k).is_err());
        self.sent = self.sent.saturating_sub(before - self.pending.len());
    }

    /// A new stream: everything unacknowledged goes out again.
    pub(crate) fn rewind(&mut self) {
        self.sent = 0;
    }

    /// Every snapshot produced and settled.
    pub(crate) fn finished(&self) -> bool {
        self.next_k >= self.end_k && self.pending.is_empty()
    }

    /// Produced and not settled.
    pub(crate) fn unsettled(&self) -> usize {
        self.pending.len()
    }
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("broker answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("the broker closed the stream")]
    Closed,
    #[error("no ack for batch {0} within the ack timeout")]
    AckTimeout(u64),
}

/// A batch sent and not yet answered.
struct InFlight {
    seq: u64,
    ks: Vec<u64>,
    sent_at: Instant,
}

/// Counts the host as connected while it lives.
struct Connected<'a>(&'a Stats);

impl<'a> Connected<'a> {
    fn new(stats: &'a Stats) -> Self {
        stats
            .connected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Connected(stats)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0
            .connected
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs host `h` until all its snapshots are settled, the deadline passes or the run is
/// stopped; returns how many it produced and never had settled.
pub async fn run(ctx: Arc<Ctx>, h: u32) -> usize {
    let plan = &ctx.plan;
    let host_id = plan.grid.host_id(h);
    let mut sim = Sim::new(h, plan.grid.snapshots_per_host);
    let mut backoff = Backoff::new(plan.backoff_max);
    let mut order: VecDeque<usize> = VecDeque::new();
    loop {
        if sim.finished() || ctx.stop.is_cancelled() || Instant::now() >= plan.deadline {
            break;
        }
        if order.is_empty() {
            order = ctx.brokers.order(h).await.into();
        }
        let Some(b) = order.pop_front() else {
            break;
        };
        match stream(&ctx, &host_id, &mut sim, b, &mut backoff).await {
            Ok(Ended::Done) => break,
            Ok(Ended::Moved(owner)) => {
                ctx.stats.moved();
                order.push_front(owner);
            }
            Err(e) => {
                ctx.stats.stream_failed(
                    &host_id,
                    ctx.brokers.url(b),
                    &e.to_string(),
                    matches!(e, StreamError::AckTimeout(_)),
                );
                let delay = backoff.next_delay();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = tokio::time::sleep_until(plan.deadline) => {}
                    () = ctx.stop.cancelled() => {}
                }
            }
        }
    }
    // Whatever was produced in the meantime counts as unsettled too.
    ctx.stats.dropped(sim.produce(plan, now_ms()));
    sim.unsettled()
}

fn register(plan: &Plan, host_id: &str) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Register(Register {
            host_id: host_id.to_string(),
            labels: plan.labels.iter().cloned().collect(),
            agent_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).to_string(),
            interval_ms: u32::try_from(plan.grid.interval_ms).unwrap_or(u32::MAX),
        })),
    }
}

fn snapshots(plan: &Plan, host_id: &str, h: u32, ks: &[u64]) -> Vec<Snapshot> {
    ks.iter()
        .map(|&k| {
            let ts = plan.grid.ts(h, k);
            Snapshot {
                host_id: host_id.to_string(),
                timestamp_ms: ts,
                metrics: values::snapshot_metrics(h, ts, &plan.defs, plan.window),
            }
        })
        .collect()
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn send(
    tx: &mpsc::Sender<AgentMessage>,
    body: agent_message::Body,
    timeout: Duration,
) -> Result<(), StreamError> {
    let msg = AgentMessage { body: Some(body) };
    match tokio::time::timeout(timeout, tx.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(StreamError::Closed),
        Err(_) => Err(StreamError::Timeout("sending")),
    }
}

/// One stream to broker `b`; `Ok` when the host is done (or stopped), `Err` to reconnect.
async fn stream(
    ctx: &Ctx,
    host_id: &str,
    sim: &mut Sim,
    b: usize,
    backoff: &mut Backoff,
) -> Result<Ended, StreamError> {
    let plan = &ctx.plan;
    // The owner (a configured broker) an Ack named: the stream moves there once nothing is in
    // flight.
    let mut owner: Option<usize> = None;
    let channel = ctx.brokers.channel(b, sim.h).await?;
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel(plan.max_in_flight + 2);
    tx.try_send(register(plan, host_id))
        .map_err(|_| StreamError::Closed)?;
    let response =
        tokio::time::timeout(plan.connect_timeout, client.stream(ReceiverStream::new(rx)))
            .await
            .map_err(|_| StreamError::Timeout("opening the stream"))??;
    let mut inbound = response.into_inner();
    let _connected = Connected::new(&ctx.stats);
    sim.rewind();
    let mut seq = 0u64;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + plan.heartbeat, plan.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = now_ms();
        ctx.stats.dropped(sim.produce(plan, now));
        if in_flight.is_empty()
            && let Some(o) = owner
        {
            return Ok(Ended::Moved(o));
        }
        while owner.is_none() && in_flight.len() < plan.max_in_flight {
            let ks = sim.next_batch(plan.max_batch);
            if ks.is_empty() {
                break;
            }
            seq += 1;
            let batch = Batch {
                seq,
                snapshots: snapshots(plan, host_id, sim.h, &ks),
            };
            send(&tx, agent_message::Body::Batch(batch), plan.ack_timeout).await?;
            ctx.stats.sent(ks.len() as u64);
            in_flight.push_back(InFlight {
                seq,
                ks,
                sent_at: Instant::now(),
            });
        }
        if sim.finished() {
            return Ok(Ended::Done);
        }
        let ack_deadline = in_flight
            .front()
            .map(|f| (f.seq, f.sent_at + plan.ack_timeout));
        let room = in_flight.len() < plan.max_in_flight;
        let due = if room { sim.next_due(plan, now) } else { None };
        tokio::select! {
            biased;
            () = ctx.stop.cancelled() => return Ok(Ended::Done),
            () = tokio::time::sleep_until(plan.deadline) => return Ok(Ended::Done),
            msg = inbound.message() => match msg? {
                Some(m) => {
                    let named = settle(ctx, sim, m, &mut in_flight, backoff);
                    if plan.follow_owner
                        && let Some(url) = named
                        && let Some(o) = ctx.brokers.index_of(&url)
                        && o != b
                    {
                        owner = Some(o);
                    }
                }
                None => return Err(StreamError::Closed),
            },
            () = sleep_opt(due) => {}
            _ = heartbeat.tick() => {
                let hb = Heartbeat { timestamp_ms: now_ms() };
                send(&tx, agent_message::Body::Heartbeat(hb), plan.ack_timeout).await?;
            }
            () = sleep_opt(ack_deadline.map(|(_, d)| d.saturating_duration_since(Instant::now()))) => {
                return Err(StreamError::AckTimeout(ack_deadline.map_or(0, |(s, _)| s)));
            }
        }
    }
}

fn take(in_flight: &mut VecDeque<InFlight>, seq: u64) -> Option<InFlight> {
    let pos = in_flight.iter().position(|f| f.seq == seq)?;
    in_flight.remove(pos)
}

/// How a stream ended without an error.
enum Ended {
    /// Every snapshot settled, or the run is over.
    Done,
    /// To move to the host's owner, this configured broker.
    Moved(usize),
}

/// Settles an answer; returns the host's owner when an `Ack` names one.
fn settle(
    ctx: &Ctx,
    sim: &mut Sim,
    msg: BrokerMessage,
    in_flight: &mut VecDeque<InFlight>,
    backoff: &mut Backoff,
) -> Option<String> {
    let plan = &ctx.plan;
    match msg.body {
        Some(broker_message::Body::Ack(ack)) => {
            let Some(f) = take(in_flight, ack.seq) else {
                tracing::warn!(seq = ack.seq, "ack for an unknown batch");
                return None;
            };
            let mut refused = 0;
            for &k in &f.ks {
                if ack.rejected_timestamps_ms.contains(&plan.grid.ts(sim.h, k)) {
                    refused += 1;
                } else {
                    ctx.ledger.mark(sim.h, k);
                }
            }
            if refused > 0 {
                ctx.stats.rejected(refused, false, &ack.reject_reason);
            }
            ctx.stats.acked(
                f.ks.len() as u64 - refused,
                u64::from(ack.duplicates),
                f.sent_at.elapsed(),
            );
            sim.settle(&f.ks);
            backoff.reset();
            (!ack.owner_url.is_empty()).then_some(ack.owner_url)
        }
        Some(broker_message::Body::Reject(rej)) => {
            let Some(f) = take(in_flight, rej.seq) else {
                tracing::warn!(seq = rej.seq, reason = %rej.reason, "reject for an unknown batch");
                return None;
            };
            ctx.stats.rejected(f.ks.len() as u64, true, &rej.reason);
            sim.settle(&f.ks);
            None
        }
        None => {
            tracing::warn!("broker message without a body");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(backfill: bool, capacity: usize) -> Plan {
        Plan {
            grid: Header {
                host_prefix: "h-".into(),
                host_digits: 1,
                hosts: 2,
                start_ms: 1_000_000,
                interval_ms: 1000,
                snapshots_per_host: 10,
                metrics: 3,
                values_version: values::VALUES_VERSION,
                created_ms: 0,
                mode: "live".into(),
            },
            defs: values::metric_defs(3),
            window: true,
            backfill,
            labels: vec![],
            max_batch: 2,
            max_in_flight: 2,
            buffer_capacity: capacity,
            ack_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
            follow_owner: true,
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    #[test]
    fn live_snapshots_come_due_at_their_timestamps() {
        let p = plan(false, 100);
        let mut s = Sim::new(1, 10);
        // Host 1 of 2 is offset by half an interval: its snapshot 0 is at 1_000_500.
        assert_eq!(s.produce(&p, 1_000_499), 0);
        assert_eq!(s.unsettled(), 0);
        assert_eq!(s.next_due(&p, 1_000_499), Some(Duration::from_millis(1)));
        s.produce(&p, 1_002_500);
        assert_eq!(s.unsettled(), 3);
        assert_eq!(s.next_batch(2), vec![0, 1]);
        assert_eq!(s.next_batch(2), vec![2]);
        assert!(s.next_batch(2).is_empty());
        s.settle(&[0, 1]);
        assert_eq!(s.unsettled(), 1);
        // A reconnect sends what is unsettled again.
        s.rewind();
        assert_eq!(s.next_batch(5), vec![2]);
        s.produce(&p, 2_000_000);
        assert_eq!(s.next_due(&p, 2_000_000), None, "all 10 produced");
        assert_eq!(s.next_batch(100), (3..10).collect::<Vec<_>>());
        s.settle(&[2]);
        s.settle(&(3..10).collect::<Vec<_>>());
        assert!(s.finished());
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_unsent_and_counts_them() {
        let p = plan(false, 3);
        let mut s = Sim::new(0, 10);
        s.produce(&p, 1_001_000);
        assert_eq!(s.next_batch(1), vec![0]);
        // Eight more come due with room for three: snapshot 0 is in flight and stays (its ack
        // may still come); of the rest, the oldest unsent go, seven of them.
        assert_eq!(s.produce(&p, 1_009_000), 7);
        assert_eq!(s.unsettled(), 3);
        assert_eq!(s.next_batch(10), vec![8, 9]);
        s.settle(&[0]);
        assert_eq!(s.unsettled(), 2);
    }

    #[test]
    fn backfill_produces_only_what_the_window_can_take() {
        let p = plan(true, 1);
        let mut s = Sim::new(0, 10);
        s.produce(&p, 0);
        assert_eq!(s.unsettled(), 4, "max_batch × max_in_flight");
        assert_eq!(s.next_due(&p, 0), None);
        let b = s.next_batch(2);
        s.settle(&b);
        s.produce(&p, 0);
        assert_eq!(s.unsettled(), 4);
        assert_eq!(s.next_batch(10), vec![2, 3, 4, 5]);
    }

    #[test]
    fn snapshots_carry_the_grid_timestamps_and_the_value_function() {
        let p = plan(false, 10);
        let snaps = snapshots(&p, "h-1", 1, &[0, 2]);
        assert_eq!(snaps[0].timestamp_ms, 1_000_500);
        assert_eq!(snaps[1].timestamp_ms, 1_002_500);
        assert_eq!(snaps[1].metrics.len(), 3);
        assert_eq!(
            snaps[1].metrics[0].value,
            values::value(1, 1_002_500, 0, p.defs[0].unit)
        );
        assert!(snaps[1].metrics[0].window.is_some());
    }
}
