//! Listeners with limits, shared by every Ringwatch service: a cap on open connections, a
//! deadline for a new connection's first request (HTTP headers, the HTTP/2 preface on gRPC), an
//! idle timeout on HTTP, all counted in `/metrics` and logged at a bounded rate.
//!
//! - [`http::serve`] serves an axum router (admin ports, viz, the agent's /metrics).
//! - [`grpc::incoming`] is the connection stream a tonic server is given (TLS optional).
//! - [`grpc_auth`] checks the credential of every gRPC call; [`token`] mints and verifies
//!   credentials; [`client`] is how clients reach brokers (TLS, credential); [`tls`] reads the
//!   TLS material; [`peers`] is the pool of brokers every client keeps (health, order, fail-over);
//!   [`admin_client`] speaks to a broker's admin API.

pub mod admin_client;
pub mod client;
mod gate;
pub mod grpc;
pub mod grpc_auth;
pub mod http;
mod idle;
mod metrics;
pub mod peers;
mod throttle;
pub mod tls;
pub mod token;

pub use metrics::{
    CONTENT_TYPE as METRICS_CONTENT_TYPE, ListenMetrics, Listener, metrics_response,
};
pub use throttle::Throttle;

use std::time::Duration;

/// Limits of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once; past it a new one gets a 503 and is closed.
    pub max_connections: usize,
    /// A connection must send a request's headers within this.
    pub header_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (WebSocket clients stay
    /// busy with their heartbeats).
    pub idle_timeout: Duration,
}

/// Limits of one gRPC listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Most connections open at once; past it a new one is told so (HTTP/2 GOAWAY) and closed.
    pub max_connections: usize,
    /// A connection must finish its TLS handshake (on a TLS port) and send the HTTP/2 preface
    /// within this.
    pub handshake_timeout: Duration,
}

/// This process's soft limit on open files (`ulimit -n`), where the system says (Linux).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Warns when the connection caps add up to more than the process may open: past the limit a
/// connection fails at accept, unanswered, instead of getting the cap's clear refusal.
pub fn warn_if_few_files(connections: usize) {
    let need = connections as u64 + 64;
    if let Some(limit) = open_file_limit()
        && limit < need
    {
        tracing::warn!(
            open_file_limit = limit,
            connection_caps = connections,
            "the open-file limit is below the connection caps: past {limit} files new \
             connections fail unanswered; raise it (ulimit -n {}) or lower the caps",
            need.next_power_of_two()
        );
    }
}
