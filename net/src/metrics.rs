//! What the listeners count: connections open, and connections refused or closed by a limit.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::throttle::Throttle;

/// The content type of every service's `/metrics`: prometheus-client writes OpenMetrics text
/// (with `# EOF`, counters' `_total`, and HELP and TYPE for each family).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `/metrics` answer from an encoded registry: the text with [`CONTENT_TYPE`], or a 500 with
/// the encoder's error.
pub fn metrics_response(encoded: Result<String, std::fmt::Error>) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    match encoded {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The listeners' figures of one service, registered into its registry.
#[derive(Clone, Default, Debug)]
pub struct ListenMetrics {
    closed: Family<Labels2, Counter>,
    open: Family<Labels1, Gauge>,
}

impl ListenMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_closed_by_limit",
            "Connections refused or closed by a listener limit, by listener and reason \
             (max_connections, handshake_timeout, header_timeout, idle_timeout, bad_preface, \
             plaintext_on_tls, tls_on_plaintext, tls_handshake_failed)",
            self.closed.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open, by listener",
            self.open.clone(),
        );
    }

    /// The handle one listener counts and logs with; `name` is its label (`grpc`, `http`, …).
    pub fn listener(&self, name: &'static str) -> Listener {
        Listener {
            name,
            metrics: self.clone(),
            log: Arc::new(Throttle::new(Duration::from_secs(10))),
        }
    }

    /// Connections `listener` closed for `reason` so far.
    pub fn closed(&self, listener: &'static str, reason: &'static str) -> u64 {
        self.closed
            .get_or_create(&[("listener", listener), ("reason", reason)])
            .get()
    }

    /// Connections open on `listener`.
    pub fn open(&self, listener: &'static str) -> i64 {
        self.open.get_or_create(&[("listener", listener)]).get()
    }
}

/// One listener's counters and log throttle.
#[derive(Clone, Debug)]
pub struct Listener {
    name: &'static str,
    metrics: ListenMetrics,
    log: Arc<Throttle>,
}

impl Listener {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counts a connection closed for `reason` and logs it: a refusal or a failed handshake as a
    /// warning, at most one line per 10 s; a quiet connection closed (`header_timeout`, which
    /// also ends idle keep-alive connections, and `idle_timeout`) at debug level only.
    pub fn closed(&self, reason: &'static str, peer: Option<std::net::SocketAddr>) {
        self.metrics
            .closed
            .get_or_create(&[("listener", self.name), ("reason", reason)])
            .inc();
        if matches!(reason, "header_timeout" | "idle_timeout") {
            tracing::debug!(listener = self.name, reason, peer = ?peer, "quiet connection closed");
            return;
        }
        if let Some(unlogged) = self.log.allow() {
            tracing::warn!(
                listener = self.name,
                reason,
                peer = ?peer,
                not_logged_since_last = unlogged,
                "connection closed by a listener limit (all are counted in \
                 connections_closed_by_limit_total)"
            );
        }
    }

    pub(crate) fn gauge(&self) -> Gauge {
        self.metrics
            .open
            .get_or_create(&[("listener", self.name)])
            .clone()
    }
}
