//! Live data: every snapshot the broker stores is published to subscribers (viz) as it is
//! stored. Each subscriber has a bounded queue; one that reads too slowly skips ahead and is
//! told how many snapshots it missed (`lagged`), so it can read them with Range, and it never
//! slows ingest or the other subscribers.

use std::sync::Arc;

use ringwatch_proto::{LiveUpdate, Snapshot, SubscribeRequest, name_selected};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Snapshots held for slow subscribers before they lag.
const CAPACITY: usize = 8192;
/// Snapshots per update at most.
const MAX_PER_UPDATE: usize = 256;

pub struct Live {
    tx: broadcast::Sender<Arc<Snapshot>>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        Live {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// Publishes stored snapshots (a no-op without subscribers).
    pub fn publish(&self, snapshots: Vec<Snapshot>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for s in snapshots {
            let _ = self.tx.send(Arc::new(s));
        }
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A stream of updates matching `req`, ending at `shutdown` or when the client goes away.
    pub fn subscribe(
        &self,
        req: SubscribeRequest,
        shutdown: CancellationToken,
    ) -> ReceiverStream<Result<LiveUpdate, Status>> {
        let mut rx = self.tx.subscribe();
        let (out, stream) = mpsc::channel(16);
        tokio::spawn(async move {
            let wanted =
                |s: &Snapshot| req.host_ids.is_empty() || req.host_ids.contains(&s.host_id);
            let shape = |s: &Snapshot| {
                if req.metric_names.is_empty() {
                    return s.clone();
                }
                Snapshot {
                    host_id: s.host_id.clone(),
                    timestamp_ms: s.timestamp_ms,
                    metrics: s
                        .metrics
                        .iter()
                        .filter(|m| name_selected(&req.metric_names, &m.name))
                        .cloned()
                        .collect(),
                }
            };
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = out.send(Err(Status::unavailable("broker is shutting down; subscribe to another broker"))).await;
                        return;
                    }
                    _ = out.closed() => return,
                    r = rx.recv() => r,
                };
                let mut update = LiveUpdate::default();
                match first {
                    Ok(s) => {
                        if wanted(&s) {
                            update.snapshots.push(shape(&s));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => update.lagged = n,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                // Whatever else is already waiting goes in the same update.
                while update.snapshots.len() < MAX_PER_UPDATE {
                    match rx.try_recv() {
                        Ok(s) => {
                            if wanted(&s) {
                                update.snapshots.push(shape(&s));
                            }
                        }
                        Err(broadcast::error::TryRecvError::Lagged(n)) => update.lagged += n,
                        Err(_) => break,
                    }
                }
                if update.snapshots.is_empty() && update.lagged == 0 {
                    continue;
                }
                if update.lagged > 0 {
                    tracing::warn!(
                        lagged = update.lagged,
                        "a live subscriber fell behind; it skips ahead"
                    );
                }
                if out.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        });
        ReceiverStream::new(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::Metric;
    use tokio_stream::StreamExt;

    fn snap(host: &str, ts: i64) -> Snapshot {
        Snapshot {
            host_id: host.into(),
            timestamp_ms: ts,
            metrics: vec![
                Metric {
                    name: "cpu.usage".into(),
                    value: 1.0,
                    unit: 1,
                    window: None,
                },
                Metric {
                    name: "mem.used".into(),
                    value: 2.0,
                    unit: 2,
                    window: None,
                },
            ],
        }
    }

    #[tokio::test]
    async fn subscribers_get_what_they_asked_for_in_order() {
        let live = Live::new();
        live.publish(vec![snap("a", 0)]); // nobody listens yet: dropped, no error
        let stop = CancellationToken::new();
        let mut all = live.subscribe(SubscribeRequest::default(), stop.clone());
        let mut only_b_cpu = live.subscribe(
            SubscribeRequest {
                host_ids: vec!["b".into()],
                metric_names: vec!["cpu.*".into()],
            },
            stop.clone(),
        );
        assert_eq!(live.subscribers(), 2);
        live.publish(vec![snap("a", 1), snap("b", 2), snap("a", 3)]);
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let u = all.next().await.unwrap().unwrap();
            seen.extend(u.snapshots.iter().map(|s| s.timestamp_ms));
        }
        assert_eq!(seen, vec![1, 2, 3]);
        let u = only_b_cpu.next().await.unwrap().unwrap();
        assert_eq!(u.snapshots.len(), 1);
        assert_eq!(u.snapshots[0].host_id, "b");
        assert_eq!(u.snapshots[0].metrics.len(), 1);
        stop.cancel();
        let end = all.next().await.unwrap();
        assert_eq!(end.unwrap_err().code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let live = Live::new();
        let stop = CancellationToken::new();
        let mut slow = live.subscribe(SubscribeRequest::default(), stop.clone());
        // Far more than the queue holds, published before the subscriber reads anything.
        for chunk in 0..(CAPACITY as i64 * 3 / 100) {
            live.publish((0..100).map(|i| snap("a", chunk * 100 + i)).collect());
        }
        let mut lagged = 0;
        let mut got = 0;
        while let Some(Ok(u)) =
            tokio::time::timeout(std::time::Duration::from_millis(500), slow.next())
                .await
                .ok()
                .flatten()
        {
            lagged += u.lagged;
            got += u.snapshots.len() as u64;
        }
        assert!(lagged > 0, "the subscriber learns it lagged");
        assert_eq!(
            lagged + got,
            (CAPACITY as u64 * 3 / 100) * 100,
            "every snapshot is either delivered or counted as missed"
        );
    }
}
