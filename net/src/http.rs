//! Serves an axum router over HTTP/1.1 with limits: at most `max_connections` open (past it a 503 with a JSON
//! reason, then close), request headers within `header_timeout`, and no connection idle past
//! `idle_timeout`. On shutdown it stops accepting, lets every connection finish its request
//! (HTTP/1) or drain (HTTP/2), and returns once all are closed or `drain` has passed.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gate::Gate;
use crate::idle::IdleIo;
use crate::{HttpLimits, Listener};

/// Serves `router` on `listener` until `shutdown`, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    counted: Listener,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let gate = Gate::new(
        limits.max_connections,
        counted.clone(),
        refusal(limits.max_connections),
    );
    // HTTP/1 only: browsers speak HTTP/2 only over TLS, and a version sniff before HTTP/1
    // starts would wait for bytes with no deadline.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    while let Some((stream, peer, slot)) = gate.admit(&listener, shutdown.cancelled()).await {
        let io = TokioIo::new(IdleIo::new(
            stream,
            limits.idle_timeout,
            counted.clone(),
            Some(peer),
            Some(slot),
        ));
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let counted = counted.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                // hyper's only timeout here is the request headers'.
                if e.is_timeout() {
                    counted.closed("header_timeout", Some(peer));
                } else {
                    tracing::debug!(listener = counted.name(), %peer, error = %e, "connection ended with an error");
                }
            }
        });
    }
    // Every connection (an upgraded one too) holds a slot until it ends.
    gate.drain(drain).await;
}

/// A short 503 with a JSON reason.
fn refusal(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!("too many connections: this listener takes at most {max} at once; retry later"),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
