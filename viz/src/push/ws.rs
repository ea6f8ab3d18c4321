//! WebSocket push (`/ws`): the push session of `session.rs` over a WebSocket, with a ping every
//! heartbeat; a client silent for two heartbeats is closed. The token arrives with the upgrade
//! request (checked by the API's guard): browsers cannot set headers here, so it comes as a
//! subprotocol `ringwatch.bearer.<token>` next to `ringwatch` (or as `?token=`);
//! the session ends when the token expires. A browser page from another origin is refused.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::session::{
    Filter, Incoming, MAX_CLIENT_MESSAGE, MAX_CLIENTS, SEND_TIMEOUT, Transport, serve,
};
use crate::auth::Identity;
use crate::state::PushState;

/// The subprotocol viz speaks; a client may offer it with `ringwatch.bearer.<token>`.
pub const PROTOCOL: &str = "ringwatch";
/// The prefix of the subprotocol that carries a browser's token.
pub const BEARER_PROTOCOL_PREFIX: &str = "ringwatch.bearer.";

pub async fn handler(
    ws: WebSocketUpgrade,
    State(st): State<PushState>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
) -> Response {
    if let Err(reason) = same_origin(&headers) {
        return refuse(&st, StatusCode::FORBIDDEN, reason);
    }
    if st.ws.clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
        return refuse(
            &st,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("viz serves at most {MAX_CLIENTS} WebSocket clients"),
        );
    }
    let expires = who.expires_ms;
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| async move {
            serve(WsTransport(socket), &st, &st.ws, Filter::default(), expires).await
        })
}

fn refuse(st: &PushState, status: StatusCode, reason: String) -> Response {
    st.ws.refused.fetch_add(1, Ordering::Relaxed);
    if let Some(unlogged) = st.ws.log.allow() {
        tracing::info!(
            status = status.as_u16(),
            reason,
            not_logged_since_last = unlogged,
            "WebSocket upgrade refused"
        );
    }
    (status, Json(json!({"error": reason}))).into_response()
}

/// A browser says which page opened the socket: only a page viz served itself may (so a page
/// elsewhere cannot read the metrics through the visitor's browser, tokens or not). Clients
/// that are not browsers send no Origin and pass.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        let shown: String = origin.chars().take(100).collect();
        Err(format!(
            "a page from {shown:?} may not open this WebSocket; only pages viz serves (Host {host:?})"
        ))
    }
}

struct WsTransport(WebSocket);

impl Transport for WsTransport {
    const SILENCE_CLOSES: bool = true;

    async fn send(&mut self, text: Bytes) -> bool {
        let Ok(text) = Utf8Bytes::try_from(text) else {
            return true; // never: every message is serialized JSON
        };
        let m = Message::Text(text);
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, self.0.send(m)).await,
            Ok(Ok(()))
        )
    }

    async fn recv(&mut self) -> Incoming {
        match self.0.recv().await {
            Some(Ok(Message::Text(t))) => Incoming::Text(t.as_str().to_string()),
            Some(Ok(Message::Binary(_))) => Incoming::Unusable,
            Some(Ok(Message::Close(_))) | None => Incoming::Closed,
            Some(Err(e)) => Incoming::Bad(e.to_string()),
            Some(Ok(_)) => Incoming::Alive,
        }
    }

    async fn ping(&mut self) -> bool {
        let ping = self.0.send(Message::Ping(Default::default()));
        matches!(tokio::time::timeout(SEND_TIMEOUT, ping).await, Ok(Ok(())))
    }

    async fn close(&mut self) {
        let _ = self.0.send(Message::Close(None)).await;
    }
}
