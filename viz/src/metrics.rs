//! viz's Prometheus metrics, read at scrape time from the dashboard, the feed and the pool.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::brokers::BrokerPool;
use crate::dashboard::{Dashboard, now_ms};
use crate::feed::FeedCounters;

pub struct VizMetrics {
    registry: Registry,
    feed: Arc<FeedCounters>,
    pool: Arc<BrokerPool>,
    hosts: Gauge,
    live_hosts: Gauge,
    live_push: Gauge,
    healthy_brokers: Gauge,
    pushed: Counter,
    pulled: Counter,
    duplicates: Counter,
    subscriptions: Counter,
    lagged: Counter,
    ws_clients: Gauge,
    ws_updates: Counter,
    ws_downsampled: Counter,
    ws_dropped: Counter,
    quic_clients: Gauge,
    quic_updates: Counter,
    quic_downsampled: Counter,
    quic_dropped: Counter,
    quic_refused: Counter,
    quic_bad: Counter,
    ws_refused: Counter,
    ws_bad: Counter,
    ws_deferred: Counter,
    quic_retries: Counter,
    quic_deferred: Counter,
    /// Requests refused for a missing, bad or expired token.
    pub auth_unauthorized: Counter,
    /// Requests refused for too small a role.
    pub auth_forbidden: Counter,
    /// Connections open and closed by a limit on the HTTP listener.
    pub listen: ringwatch_net::ListenMetrics,
}

impl VizMetrics {
    pub fn new(feed: Arc<FeedCounters>, pool: Arc<BrokerPool>) -> Self {
        let mut r = Registry::with_prefix("ringwatch_viz");
        let m = VizMetrics {
            registry: Registry::default(),
            feed,
            pool,
            hosts: Gauge::default(),
            live_hosts: Gauge::default(),
            live_push: Gauge::default(),
            healthy_brokers: Gauge::default(),
            pushed: Counter::default(),
            pulled: Counter::default(),
            duplicates: Counter::default(),
            subscriptions: Counter::default(),
            lagged: Counter::default(),
            ws_clients: Gauge::default(),
            ws_updates: Counter::default(),
            ws_downsampled: Counter::default(),
            ws_dropped: Counter::default(),
            quic_clients: Gauge::default(),
            quic_updates: Counter::default(),
            quic_downsampled: Counter::default(),
            quic_dropped: Counter::default(),
            quic_refused: Counter::default(),
            quic_bad: Counter::default(),
            ws_refused: Counter::default(),
            ws_bad: Counter::default(),
            ws_deferred: Counter::default(),
            quic_retries: Counter::default(),
            quic_deferred: Counter::default(),
            auth_unauthorized: Counter::default(),
            auth_forbidden: Counter::default(),
            listen: ringwatch_net::ListenMetrics::default(),
        };
        m.listen.register(&mut r);
        r.register("hosts", "Hosts on the dashboard", m.hosts.clone());
        r.register(
            "live_hosts",
            "Hosts reporting within three intervals",
            m.live_hosts.clone(),
        );
        r.register(
            "live_push",
            "1 while a broker's live stream feeds the dashboard, 0 on fallback pull",
            m.live_push.clone(),
        );
        r.register(
            "healthy_brokers",
            "Brokers passing health checks",
            m.healthy_brokers.clone(),
        );
        r.register(
            "snapshots_pushed",
            "Snapshots applied from live push",
            m.pushed.clone(),
        );
        r.register(
            "snapshots_pulled",
            "Snapshots applied from range reads (fallback pull and gap fill)",
            m.pulled.clone(),
        );
        r.register(
            "snapshots_duplicate",
            "Snapshots ignored as already shown",
            m.duplicates.clone(),
        );
        r.register(
            "subscriptions",
            "Live subscriptions started",
            m.subscriptions.clone(),
        );
        r.register(
            "lagged_snapshots",
            "Snapshots a live stream skipped (then read with Range)",
            m.lagged.clone(),
        );
        r.register(
            "ws_clients",
            "Connected WebSocket clients",
            m.ws_clients.clone(),
        );
        r.register(
            "ws_updates_sent",
            "Updates sent to WebSocket clients",
            m.ws_updates.clone(),
        );
        r.register(
            "ws_downsampled_updates",
            "Updates slow WebSocket clients skipped",
            m.ws_downsampled.clone(),
        );
        r.register(
            "ws_dropped_clients",
            "WebSocket clients dropped for being too slow",
            m.ws_dropped.clone(),
        );
        r.register(
            "quic_clients",
            "Connected QUIC push clients",
            m.quic_clients.clone(),
        );
        r.register(
            "quic_updates_sent",
            "Updates sent to QUIC clients",
            m.quic_updates.clone(),
        );
        r.register(
            "quic_downsampled_updates",
            "Updates slow QUIC clients skipped",
            m.quic_downsampled.clone(),
        );
        r.register(
            "quic_dropped_clients",
            "QUIC clients dropped for being too slow",
            m.quic_dropped.clone(),
        );
        r.register(
            "quic_refused_connections",
            "QUIC connections refused (too many clients, failed handshake, bad or missing subscribe)",
            m.quic_refused.clone(),
        );
        r.register(
            "quic_bad_messages",
            "Messages from QUIC clients refused (not JSON, not a subscribe, too long)",
            m.quic_bad.clone(),
        );
        r.register(
            "ws_refused_upgrades",
            "WebSocket upgrades refused (too many clients, a page from another origin)",
            m.ws_refused.clone(),
        );
        r.register(
            "ws_bad_messages",
            "Messages from WebSocket clients refused (not JSON, not a subscribe, too long)",
            m.ws_bad.clone(),
        );
        r.register(
            "ws_subscribes_deferred",
            "WebSocket subscribes held back by the per-session budget (3 at once, then one per 2 s; the newest is applied when allowed)",
            m.ws_deferred.clone(),
        );
        r.register(
            "quic_retries_sent",
            "QUIC Retry packets sent: a new client proves its address before viz answers more",
            m.quic_retries.clone(),
        );
        r.register(
            "quic_subscribes_deferred",
            "QUIC subscribes held back by the per-session budget (3 at once, then one per 2 s; the newest is applied when allowed)",
            m.quic_deferred.clone(),
        );
        r.register(
            "auth_unauthorized",
            "Requests and push clients refused for a missing, bad or expired token (401)",
            m.auth_unauthorized.clone(),
        );
        r.register(
            "auth_forbidden",
            "Requests refused for too small a role (403)",
            m.auth_forbidden.clone(),
        );
        VizMetrics { registry: r, ..m }
    }

    pub fn render(
        &self,
        dashboard: &Dashboard,
        ws: &crate::push::PushCounters,
        quic: &crate::push::PushCounters,
    ) -> String {
        let s = dashboard.summary(now_ms());
        self.hosts.set(s.hosts as i64);
        self.live_hosts.set(s.live as i64);
        self.live_push.set(i64::from(s.live_push));
        self.healthy_brokers
            .set(self.pool.status().iter().filter(|b| b.healthy).count() as i64);
        let set = |c: &Counter, v: u64| c.inner().store(v, Ordering::Relaxed);
        set(&self.pushed, self.feed.pushed.load(Ordering::Relaxed));
        set(&self.pulled, self.feed.pulled.load(Ordering::Relaxed));
        set(&self.duplicates, dashboard.counts().1);
        set(
            &self.subscriptions,
            self.feed.subscriptions.load(Ordering::Relaxed),
        );
        set(&self.lagged, self.feed.lagged.load(Ordering::Relaxed));
        self.ws_clients
            .set(ws.clients.load(Ordering::Relaxed) as i64);
        set(&self.ws_updates, ws.updates_sent.load(Ordering::Relaxed));
        set(&self.ws_downsampled, ws.downsampled.load(Ordering::Relaxed));
        set(&self.ws_dropped, ws.dropped_clients.load(Ordering::Relaxed));
        self.quic_clients
            .set(quic.clients.load(Ordering::Relaxed) as i64);
        set(
            &self.quic_updates,
            quic.updates_sent.load(Ordering::Relaxed),
        );
        set(
            &self.quic_downsampled,
            quic.downsampled.load(Ordering::Relaxed),
        );
        set(
            &self.quic_dropped,
            quic.dropped_clients.load(Ordering::Relaxed),
        );
        set(&self.quic_refused, quic.refused.load(Ordering::Relaxed));
        set(&self.quic_bad, quic.bad_messages.load(Ordering::Relaxed));
        set(&self.ws_refused, ws.refused.load(Ordering::Relaxed));
        set(&self.ws_bad, ws.bad_messages.load(Ordering::Relaxed));
        set(
            &self.ws_deferred,
            ws.subscribes_deferred.load(Ordering::Relaxed),
        );
        set(&self.quic_retries, quic.retries.load(Ordering::Relaxed));
        set(
            &self.quic_deferred,
            quic.subscribes_deferred.load(Ordering::Relaxed),
        );
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
