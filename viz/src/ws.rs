//! WebSocket push (`/ws`): a client subscribes by host ids and metric-name prefixes (kept in a
//! radix tree), gets a snapshot of the newest values, then every newer update. Each client
//! reads the dashboard's broadcast through its own bounded queue: one that reads too slowly
//! skips ahead to the newest (down-sampled, and told how many updates it skipped); one that
//! stops reading (a send does not complete in 5 s) is dropped — never allowed to stall the
//! others. Ping every heartbeat; a client
//! silent for two heartbeats is closed.
//!
//! Client → server: `{"type":"subscribe","hosts":[…],"metrics":["cpu.",…]}` (empty = all).
//! Server → client: `{"type":"snapshot","hosts":[update…]}`, then
//! `{"type":"update", host_id, timestamp_ms, metrics:{name:{value,unit}}}`,
//! `{"type":"downsampled","skipped":n}`, `{"type":"error","error":…}`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use radix_trie::Trie;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::api::AppState;
use crate::dashboard::HostUpdate;

/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// A send that takes longer than this drops the client.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct WsCounters {
    pub clients: AtomicU64,
    pub updates_sent: AtomicU64,
    pub downsampled: AtomicU64,
    pub dropped_clients: AtomicU64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    metrics: Vec<String>,
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

    pub fn metric(&self, name: &str) -> bool {
        match &self.prefixes {
            None => true,
            // The longest subscribed prefix that `name` starts with, if any.
            Some(t) => t.get_ancestor_value(name).is_some(),
        }
    }
}

fn parse_subscribe(text: &str) -> Result<Filter, String> {
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
    Ok(Filter::new(s.hosts, s.metrics))
}

pub async fn handler(ws: WebSocketUpgrade, State(st): State<Arc<AppState>>) -> Response {
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| client(socket, st))
}

async fn send(socket: &mut WebSocket, value: serde_json::Value) -> bool {
    let text = Utf8Bytes::from(value.to_string());
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

async fn snapshot(
    socket: &mut WebSocket,
    st: &AppState,
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
    send(socket, json!({"type": "snapshot", "hosts": hosts})).await
}

async fn client(mut socket: WebSocket, st: Arc<AppState>) {
    let c = &st.ws;
    c.clients.fetch_add(1, Ordering::Relaxed);
    // Subscribed before the snapshot is taken: nothing falls between the two.
    let mut rx = st.dashboard.subscribe();
    let mut filter = Filter::default();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut ping = tokio::time::interval(st.ws_heartbeat);
    ping.tick().await;
    let mut heard = Instant::now();
    let mut ok = snapshot(&mut socket, &st, &filter, &mut last).await;
    while ok {
        tokio::select! {
            _ = st.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            r = rx.recv() => match r {
                Ok(s) => {
                    if !filter.host(&s.host_id) || s.timestamp_ms <= last.get(&s.host_id).copied().unwrap_or(0) {
                        continue;
                    }
                    last.insert(s.host_id.clone(), s.timestamp_ms);
                    let mut update = serde_json::to_value(HostUpdate::of(&s, |m| filter.metric(m))).unwrap_or_default();
                    update["type"] = json!("update");
                    ok = send(&mut socket, update).await;
                    if ok {
                        c.updates_sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tracing::warn!("a WebSocket client did not take an update within 5 s; dropped");
                        c.dropped_clients.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // Reading too slowly: skip ahead to the newest and say so.
                    c.downsampled.fetch_add(n, Ordering::Relaxed);
                    tracing::debug!(skipped = n, "a WebSocket client fell behind; down-sampled");
                    ok = send(&mut socket, json!({"type": "downsampled", "skipped": n})).await;
                    if !ok {
                        c.dropped_clients.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(RecvError::Closed) => break,
            },
            m = socket.recv() => {
                heard = Instant::now();
                match m {
                    Some(Ok(Message::Text(t))) => match parse_subscribe(t.as_str()) {
                        Ok(f) => {
                            filter = f;
                            ok = snapshot(&mut socket, &st, &filter, &mut last).await;
                        }
                        Err(e) => ok = send(&mut socket, json!({"type": "error", "error": e})).await,
                    },
                    Some(Ok(Message::Binary(_))) => {
                        ok = send(&mut socket, json!({"type": "error", "error": "send JSON text messages"})).await;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > st.ws_heartbeat * 2 {
                    tracing::info!("a WebSocket client went silent; closed");
                    break;
                }
                ok = matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Default::default()))).await, Ok(Ok(())));
            }
        }
    }
    c.clients.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            parse_subscribe("not json")
                .unwrap_err()
                .contains("bad message")
        );
        assert!(
            parse_subscribe(r#"{"type":"hello"}"#)
                .unwrap_err()
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
                .unwrap_err()
                .contains("longer than 200")
        );
    }
}
