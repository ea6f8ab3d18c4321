//! One live-push session, whatever carries it (WebSocket in `ws.rs`, QUIC in
//! `quic_server.rs`): a client subscribes by host ids and metric-name prefixes (kept in a radix
//! tree), gets a snapshot of the newest values, then every newer update. Each client reads the
//! dashboard's broadcast through its own bounded queue: one that reads too slowly skips ahead
//! to the newest (down-sampled, and told how many updates it skipped); one that stops reading
//! (a send does not complete in 5 s) is dropped — never allowed to stall the others.
//!
//! Client → server: `{"type":"subscribe","hosts":[…],"metrics":["cpu.",…]}` (empty = all; over
//! QUIC the first one also carries `"token"`).
//! Server → client: `{"type":"snapshot","hosts":[update…]}`, then
//! `{"type":"update", host_id, timestamp_ms, metrics:{name:{value,unit}}}`,
//! `{"type":"downsampled","skipped":n}`, `{"type":"error","error":…}`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use radix_trie::Trie;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::dashboard::{HostUpdate, update_json};
use crate::state::PushState;

fn text(v: serde_json::Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// Largest message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// A send that takes longer than this drops the client.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of one push transport, read by /metrics.
#[derive(Debug, Default)]
pub struct PushCounters {
    pub clients: AtomicU64,
    pub updates_sent: AtomicU64,
    pub downsampled: AtomicU64,
    pub dropped_clients: AtomicU64,
    /// Client messages refused: not JSON, not a subscribe, too long.
    pub bad_messages: AtomicU64,
    /// Clients refused before a session: too many, a foreign page, a bad first message.
    pub refused: AtomicU64,
    /// Refusals and bad messages are all counted, but logged at most once per 10 s.
    pub log: ringwatch_net::Throttle,
    /// Subscribes held back by the per-session budget (each answered later, coalesced).
    pub subscribes_deferred: AtomicU64,
    /// QUIC only: Retry packets sent to make a new client prove its address first.
    pub retries: AtomicU64,
}

/// Subscribes a session may send at once before the budget applies.
const SUBSCRIBE_BURST: u32 = 3;
/// After the burst, one subscribe (and so one whole snapshot) per this long.
const SUBSCRIBE_EVERY: Duration = Duration::from_secs(2);

/// A token bucket for one session's subscribes, kept as time credit (exact, no float drift):
/// each subscribe costs a whole snapshot (1 MB for 2,000 hosts), so a client repeating them is
/// slowed to one per `SUBSCRIBE_EVERY`; the filter asked for last is applied when the budget
/// allows, so a person clicking through the UI loses nothing.
struct SubscribeBudget {
    credit: Duration,
    at: Instant,
}

impl SubscribeBudget {
    fn new(now: Instant) -> SubscribeBudget {
        SubscribeBudget {
            credit: SUBSCRIBE_EVERY * SUBSCRIBE_BURST,
            at: now,
        }
    }

    /// Takes one subscribe's worth if there is one.
    fn take(&mut self, now: Instant) -> bool {
        self.credit = (self.credit + now.saturating_duration_since(self.at))
            .min(SUBSCRIBE_EVERY * SUBSCRIBE_BURST);
        self.at = now;
        if self.credit >= SUBSCRIBE_EVERY {
            self.credit -= SUBSCRIBE_EVERY;
            true
        } else {
            false
        }
    }

    /// When the next subscribe's worth will be there.
    fn next(&self) -> Instant {
        self.at + SUBSCRIBE_EVERY.saturating_sub(self.credit)
    }
}

/// Most push clients at once, per transport.
pub const MAX_CLIENTS: u64 = 10_000;

/// Counts a connected client for as long as it lives, however its session ends.
struct Connected<'a>(&'a AtomicU64);

impl<'a> Connected<'a> {
    fn new(n: &'a AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Connected(n)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    metrics: Vec<String>,
    /// The API token, for transports without request headers (QUIC).
    #[serde(default)]
    pub token: Option<String>,
}

/// What a client asked for.
#[derive(Default, Debug)]
pub struct Filter {
    hosts: HashSet<String>,
    prefixes: Option<Trie<String, ()>>,
}

impl Filter {
    pub fn new(hosts: Vec<String>, prefixes: Vec<String>) -> Filter {
        let prefixes = (!prefixes.is_empty()).then(|| {
            let mut t = Trie::new();
            for p in prefixes {
                // "cpu.*" and "cpu." mean the same prefix.
                let p = p.strip_suffix('*').unwrap_or(&p).to_string();
                t.insert(p, ());
            }
            t
        });
        Filter {
            hosts: hosts.into_iter().collect(),
            prefixes,
        }
    }

    pub fn host(&self, h: &str) -> bool {
        self.hosts.is_empty() || self.hosts.contains(h)
    }

    /// Whether every metric is wanted (no prefix given).
    pub fn all_metrics(&self) -> bool {
        self.prefixes.is_none()
    }

    pub fn metric(&self, name: &str) -> bool {
        match &self.prefixes {
            None => true,
            // The longest subscribed prefix that `name` starts with, if any.
            Some(t) => t.get_ancestor_value(name).is_some(),
        }
    }
}

/// A subscribe message, checked; the filter it asks for and the token it carries.
pub fn parse_subscribe(text: &str) -> Result<(Filter, Option<String>), String> {
    let s: Subscribe = serde_json::from_str(text).map_err(|e| format!("bad message: {e}"))?;
    if s.kind != "subscribe" {
        return Err(format!(
            "unknown message type {:?}; send {{\"type\":\"subscribe\",…}}",
            s.kind
        ));
    }
    if s.hosts.len() > 10_000 || s.metrics.len() > 1_000 {
        return Err("at most 10000 hosts and 1000 metric prefixes".into());
    }
    if let Some(p) = s.metrics.iter().find(|p| p.len() > 200) {
        let shown: String = p.chars().take(32).collect();
        return Err(format!(
            "metric prefix {shown:?}… is longer than 200 characters"
        ));
    }
    Ok((Filter::new(s.hosts, s.metrics), s.token))
}

/// What a client sent.
pub enum Incoming {
    Text(String),
    /// Something that is not a JSON text message.
    Unusable,
    /// A message the transport refused (too long, broken framing); the session ends.
    Bad(String),
    /// A sign of life with nothing to act on (a pong).
    Alive,
    Closed,
}

/// A carrier of one push session. `recv` must be cancel-safe.
pub trait Transport: Send {
    /// Sends one message (UTF-8 JSON); false when the client is gone or did not take it
    /// within 5 s.
    fn send(&mut self, text: Bytes) -> impl Future<Output = bool> + Send;
    fn recv(&mut self) -> impl Future<Output = Incoming> + Send;
    /// A heartbeat; false when the client is gone.
    fn ping(&mut self) -> impl Future<Output = bool> + Send;
    /// Whether a client silent for two heartbeats is closed here (QUIC's own keep-alive and
    /// idle timeout do that job for it).
    const SILENCE_CLOSES: bool;
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

async fn snapshot<T: Transport>(
    t: &mut T,
    st: &PushState,
    filter: &Filter,
    last: &mut HashMap<String, i64>,
) -> bool {
    let hosts: Vec<HostUpdate> = st
        .dashboard
        .current(|h| filter.host(h), |m| filter.metric(m));
    last.clear();
    for h in &hosts {
        last.insert(h.host_id.clone(), h.timestamp_ms);
    }
    t.send(text(json!({"type": "snapshot", "hosts": hosts})))
        .await
}

fn bad_message(c: &PushCounters, reason: &str) {
    c.bad_messages.fetch_add(1, Ordering::Relaxed);
    if let Some(unlogged) = c.log.allow() {
        tracing::info!(
            reason,
            not_logged_since_last = unlogged,
            "a push client sent a bad message"
        );
    }
}

/// Runs one client's session until it leaves, is dropped, its token expires (`expires_ms`,
/// Unix ms), or viz stops.
pub async fn serve<T: Transport>(
    mut t: T,
    st: &PushState,
    c: &PushCounters,
    mut filter: Filter,
    expires_ms: Option<i64>,
) {
    let _connected = Connected::new(&c.clients);
    let expiry = async {
        match expires_ms {
            Some(at) => {
                let left = (at - crate::dashboard::now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(left)).await
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    // Subscribed before the snapshot is taken: nothing falls between the two.
    let mut rx = st.dashboard.subscribe();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut ping = tokio::time::interval(st.heartbeat);
    ping.tick().await;
    let mut heard = Instant::now();
    let mut ok = snapshot(&mut t, st, &filter, &mut last).await;
    let mut budget = SubscribeBudget::new(Instant::now());
    let mut pending: Option<Filter> = None;
    while ok {
        let next_subscribe = tokio::time::Instant::from_std(budget.next());
        tokio::select! {
            _ = st.shutdown.cancelled() => {
                t.close().await;
                break;
            }
            _ = &mut expiry => {
                tracing::info!("a push client's token expired; closed");
                let _ = t.send(text(json!({"type": "error", "status": 401, "error": "the token expired; sign in again"}))).await;
                t.close().await;
                break;
            }
            r = rx.recv() => match r {
                Ok(p) => {
                    let s = &p.snapshot;
                    if !filter.host(&s.host_id) || s.timestamp_ms <= last.get(&s.host_id).copied().unwrap_or(0) {
                        continue;
                    }
                    last.insert(s.host_id.clone(), s.timestamp_ms);
                    let update = if filter.all_metrics() {
                        p.full_update()
                    } else {
                        update_json(s, |m| filter.metric(m))
                    };
                    ok = t.send(update).await;
                    if ok {
                        c.updates_sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tracing::warn!("a push client did not take an update within 5 s; dropped");
                        c.dropped_clients.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // Reading too slowly: skip ahead to the newest and say so.
                    c.downsampled.fetch_add(n, Ordering::Relaxed);
                    tracing::debug!(skipped = n, "a push client fell behind; down-sampled");
                    ok = t.send(text(json!({"type": "downsampled", "skipped": n}))).await;
                    if !ok {
                        tracing::warn!("a push client did not take a message within 5 s; dropped");
                        c.dropped_clients.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(RecvError::Closed) => break,
            },
            m = t.recv() => {
                heard = Instant::now();
                match m {
                    Incoming::Text(message) => match parse_subscribe(&message) {
                        Ok((f, _)) if pending.is_none() && budget.take(Instant::now()) => {
                            filter = f;
                            ok = snapshot(&mut t, st, &filter, &mut last).await;
                        }
                        Ok((f, _)) => {
                            // Over the budget: the newest filter waits for the next token.
                            c.subscribes_deferred.fetch_add(1, Ordering::Relaxed);
                            pending = Some(f);
                        }
                        Err(e) => {
                            bad_message(c, &e);
                            ok = t.send(text(json!({"type": "error", "error": e}))).await;
                        }
                    },
                    Incoming::Unusable => {
                        bad_message(c, "not a text message");
                        ok = t.send(text(json!({"type": "error", "error": "send JSON text messages"}))).await;
                    }
                    Incoming::Bad(reason) => {
                        bad_message(c, &reason);
                        break;
                    }
                    Incoming::Alive => {}
                    Incoming::Closed => break,
                }
            }
            _ = tokio::time::sleep_until(next_subscribe), if pending.is_some() => {
                if budget.take(Instant::now()) && let Some(f) = pending.take() {
                    filter = f;
                    ok = snapshot(&mut t, st, &filter, &mut last).await;
                }
            }
            _ = ping.tick() => {
                if T::SILENCE_CLOSES && heard.elapsed() > st.heartbeat * 2 {
                    tracing::info!("a push client went silent; closed");
                    break;
                }
                ok = t.ping().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_come_three_at_once_then_one_per_two_seconds() {
        let t0 = Instant::now();
        let mut b = SubscribeBudget::new(t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert_eq!(b.next(), t0 + SUBSCRIBE_EVERY);
        assert!(!b.take(t0 + Duration::from_millis(1900)));
        assert!(b.take(t0 + Duration::from_millis(2000)));
        assert!(!b.take(t0 + Duration::from_millis(2100)));
        // A quiet minute refills the burst, no more.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }

    #[test]
    fn prefixes_select_metrics_and_hosts_select_hosts() {
        let f = Filter::new(
            vec!["a".into()],
            vec!["cpu.".into(), "net.eth0*".into(), "mem.used".into()],
        );
        assert!(f.metric("cpu.usage"));
        assert!(f.metric("cpu.core.3.usage"));
        assert!(f.metric("net.eth0.rx_bytes_per_sec"));
        assert!(f.metric("mem.used_percent"));
        assert!(!f.metric("mem.total"));
        assert!(!f.metric("net.eth1.rx_bytes_per_sec"));
        assert!(!f.metric("cp"));
        assert!(f.host("a") && !f.host("b"));
        let all = Filter::default();
        assert!(all.metric("anything") && all.host("anyone"));
    }

    #[test]
    fn subscribe_messages_are_checked() {
        assert!(
            parse_subscribe(r#"{"type":"subscribe","hosts":["h"],"metrics":["cpu."]}"#).is_ok()
        );
        assert!(parse_subscribe(r#"{"type":"subscribe"}"#).is_ok());
        let (_, token) = parse_subscribe(r#"{"type":"subscribe","token":"t"}"#).unwrap();
        assert_eq!(token.as_deref(), Some("t"));
        assert!(
            parse_subscribe("not json")
                .err()
                .unwrap()
                .contains("bad message")
        );
        assert!(
            parse_subscribe(r#"{"type":"hello"}"#)
                .err()
                .unwrap()
                .contains("unknown message type")
        );
        assert!(parse_subscribe(r#"{"type":"subscribe","extra":1}"#).is_err());
        // A long prefix of multi-byte characters is refused, not cut mid-character.
        let long = format!(
            r#"{{"type":"subscribe","metrics":["{}"]}}"#,
            "é".repeat(150)
        );
        assert!(
            parse_subscribe(&long)
                .err()
                .unwrap()
                .contains("longer than 200")
        );
    }

    use std::sync::Arc;

    use prometheus_client::metrics::counter::Counter;
    use ringwatch_proto::{Metric, Snapshot, Unit};
    use serde_json::Value;
    use tokio::sync::{Semaphore, mpsc};

    use crate::auth::Auth;

    /// A client as a test holds it: every message the session sends arrives on `out` as JSON.
    /// Each send first takes a permit from `gate` (a reader that is not reading holds none), and
    /// after `accept` sends every further one fails, as the real transports' sends do when the
    /// client takes nothing within `SEND_TIMEOUT`.
    struct Fake {
        out: mpsc::UnboundedSender<Value>,
        gate: Arc<Semaphore>,
        accept: usize,
    }

    impl Transport for Fake {
        const SILENCE_CLOSES: bool = false;

        async fn send(&mut self, text: Bytes) -> bool {
            if self.accept == 0 {
                return false;
            }
            self.accept -= 1;
            match self.gate.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return false,
            }
            self.out
                .send(serde_json::from_slice(&text).unwrap())
                .is_ok()
        }

        async fn recv(&mut self) -> Incoming {
            std::future::pending().await
        }

        async fn ping(&mut self) -> bool {
            true
        }

        async fn close(&mut self) {}
    }

    fn push_state() -> PushState {
        PushState::new(
            Arc::default(),
            Arc::new(Auth::new(None)),
            Duration::from_secs(30),
            Default::default(),
            Counter::default(),
        )
    }

    fn snap(host: &str, ts: i64) -> Snapshot {
        let metric = |name: &str, value: f64| Metric {
            name: name.into(),
            value,
            unit: Unit::Percent as i32,
            window: None,
        };
        Snapshot {
            host_id: host.into(),
            timestamp_ms: ts,
            metrics: vec![
                metric("cpu.usage", ts as f64),
                metric("cpu.core.0.usage", 1.0),
                metric("mem.used_percent", 2.0),
            ],
        }
    }

    /// Starts a session with `filter` on a fake client; its messages, the gate its sends pass,
    /// and the session's task.
    fn start(
        st: &PushState,
        filter: Filter,
        permits: usize,
        accept: usize,
    ) -> (
        mpsc::UnboundedReceiver<Value>,
        Arc<Semaphore>,
        tokio::task::JoinHandle<()>,
    ) {
        let (out, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(permits));
        let t = Fake {
            out,
            gate: gate.clone(),
            accept,
        };
        let st = st.clone();
        let task = tokio::spawn(async move { serve(t, &st, &st.ws, filter, None).await });
        (rx, gate, task)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a message within 5 s")
            .expect("the session is still sending")
    }

    fn names(metrics: &Value) -> Vec<&str> {
        metrics
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[tokio::test]
    async fn a_subscription_gets_its_snapshot_first_then_only_matching_updates() {
        let st = push_state();
        st.dashboard.apply(&snap("a", 1000));
        st.dashboard.apply(&snap("b", 1000));
        let filter = Filter::new(vec!["a".into()], vec!["cpu.".into()]);
        let (mut rx, _gate, task) = start(&st, filter, 1 << 20, usize::MAX);
        // The snapshot: host a only, its cpu.* metrics only.
        let first = next(&mut rx).await;
        assert_eq!(first["type"], "snapshot", "{first}");
        let hosts = first["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 1, "{first}");
        assert_eq!(hosts[0]["host_id"], "a");
        assert_eq!(hosts[0]["timestamp_ms"], 1000);
        assert_eq!(
            names(&hosts[0]["metrics"]),
            ["cpu.core.0.usage", "cpu.usage"]
        );
        // Another host's update is not sent; the subscribed host's is, filtered.
        assert!(st.dashboard.apply(&snap("b", 2000)));
        assert!(st.dashboard.apply(&snap("a", 2000)));
        let update = next(&mut rx).await;
        assert_eq!(update["type"], "update", "{update}");
        assert_eq!(update["host_id"], "a", "{update}");
        assert_eq!(update["timestamp_ms"], 2000);
        assert_eq!(names(&update["metrics"]), ["cpu.core.0.usage", "cpu.usage"]);
        assert_eq!(update["metrics"]["cpu.usage"]["value"], 2000.0);
        assert_eq!(st.ws.updates_sent.load(Ordering::Relaxed), 1);
        assert_eq!(st.ws.clients.load(Ordering::Relaxed), 1);
        // viz stopping ends the session, with nothing more sent.
        st.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(rx.recv().await.is_none());
        assert_eq!(st.ws.clients.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_skips_to_the_newest_and_is_told_how_many() {
        let st = push_state();
        st.dashboard.apply(&snap("a", 1));
        // One permit: the snapshot goes out, then the client stops reading.
        let (mut rx, gate, task) = start(&st, Filter::default(), 1, usize::MAX);
        assert_eq!(next(&mut rx).await["type"], "snapshot");
        // Far more updates than a client's queue holds (the dashboard's hub: 1024).
        let n: i64 = 5000;
        for ts in 2..2 + n {
            assert!(st.dashboard.apply(&snap("a", ts)));
        }
        gate.add_permits(n as usize + 10);
        let (mut updates, mut skipped, mut newest) = (0u64, 0u64, 0i64);
        while newest != 1 + n {
            let m = next(&mut rx).await;
            match m["type"].as_str() {
                Some("update") => {
                    updates += 1;
                    let ts = m["timestamp_ms"].as_i64().unwrap();
                    assert!(ts > newest, "updates in order: {ts} after {newest}");
                    newest = ts;
                }
                Some("downsampled") => skipped += m["skipped"].as_u64().unwrap(),
                other => panic!("unexpected {other:?}: {m}"),
            }
        }
        assert!(skipped > 0, "{updates} updates and no down-sampling");
        // Every update was either sent or counted as skipped; the client stays connected.
        assert_eq!(updates + skipped, n as u64);
        assert_eq!(st.ws.downsampled.load(Ordering::Relaxed), skipped);
        assert_eq!(st.ws.updates_sent.load(Ordering::Relaxed), updates);
        assert_eq!(st.ws.dropped_clients.load(Ordering::Relaxed), 0);
        assert!(!task.is_finished());
        st.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_reader_that_takes_nothing_is_dropped_and_the_others_go_on() {
        let st = push_state();
        st.dashboard.apply(&snap("a", 1));
        // The stalled client takes its snapshot, then nothing more.
        let (mut stalled, _g1, stalled_task) = start(&st, Filter::default(), 1 << 20, 1);
        let (mut healthy, _g2, healthy_task) = start(&st, Filter::default(), 1 << 20, usize::MAX);
        assert_eq!(next(&mut stalled).await["type"], "snapshot");
        assert_eq!(next(&mut healthy).await["type"], "snapshot");
        assert!(st.dashboard.apply(&snap("a", 2)));
        // The stalled session ends by itself, counted as dropped.
        tokio::time::timeout(Duration::from_secs(5), stalled_task)
            .await
            .expect("the stalled client is dropped")
            .unwrap();
        assert!(stalled.recv().await.is_none());
        assert_eq!(st.ws.dropped_clients.load(Ordering::Relaxed), 1);
        // The other client got the update and is still served.
        let update = next(&mut healthy).await;
        assert_eq!(
            (update["type"].as_str(), update["timestamp_ms"].as_i64()),
            (Some("update"), Some(2))
        );
        assert_eq!(st.ws.updates_sent.load(Ordering::Relaxed), 1);
        assert_eq!(st.ws.clients.load(Ordering::Relaxed), 1);
        st.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), healthy_task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.ws.clients.load(Ordering::Relaxed), 0);
    }
}
