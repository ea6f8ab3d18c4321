//! Serves an axum router over HTTP/1.1 with limits: at most `max_connections` open (past it a 503 with a JSON
//! reason, then close), request headers within `header_timeout`, and no connection idle past
//! `idle_timeout`. On shutdown it stops accepting, lets every connection finish its request
//! (HTTP/1) or drain (HTTP/2), and returns once all are closed or `drain` has passed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::idle::IdleIo;
use crate::{ACCEPT_ERROR_PAUSE, HttpLimits, Listener, MAX_REFUSALS_IN_FLIGHT, Slot};

/// Serves `router` on `listener` until `shutdown`, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    counted: Listener,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    // HTTP/1 only: browsers speak HTTP/2 only over TLS, and a version sniff before HTTP/1
    // starts would wait for bytes with no deadline.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&counted, &e);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counted.closed("max_connections", Some(peer));
            if let Ok(r) = refusals.clone().try_acquire_owned() {
                let max = limits.max_connections;
                tokio::spawn(async move {
                    refuse(stream, max).await;
                    drop(r);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleIo::new(
            stream,
            limits.idle_timeout,
            counted.clone(),
            Some(peer),
            Some(Slot::new(slot, &counted)),
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
    // Every connection (an upgraded one too) holds a slot until it ends: wait for all of them,
    // for at most `drain`.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!(
            listener = counted.name(),
            open = limits.max_connections - slots.available_permits(),
            "connections still open after the drain period; closing"
        );
    }
}

pub(crate) fn accept_failed(counted: &Listener, e: &io::Error) {
    // Running out of file descriptors is the usual cause; the cap should keep us below it.
    tracing::warn!(listener = counted.name(), error = %e, "accept failed; pausing briefly");
}

/// A short 503 with a JSON reason, then close.
async fn refuse(stream: TcpStream, max: usize) {
    let body = serde_json::json!({
        "error": format!("too many connections: this listener takes at most {max} at once; retry later"),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    crate::refuse(stream, response.as_bytes()).await;
}
