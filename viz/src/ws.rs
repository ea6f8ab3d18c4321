//! WebSocket push (`/ws`): the push session of `push.rs` over a WebSocket, with a ping every
//! heartbeat; a client silent for two heartbeats is closed. The token arrives with the upgrade
//! request (checked by the API's guard), as `?token=` since browsers cannot set headers here.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;

use crate::api::AppState;
use crate::push::{Filter, Incoming, MAX_CLIENT_MESSAGE, SEND_TIMEOUT, Transport};

pub async fn handler(ws: WebSocketUpgrade, State(st): State<Arc<AppState>>) -> Response {
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            crate::push::serve(WsTransport(socket), &st, &st.ws, Filter::default()).await
        })
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
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Incoming::Closed,
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
