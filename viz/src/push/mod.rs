//! Live push to clients (SPEC S5): one session logic (`session.rs`: subscribe by host and
//! metric prefix, snapshot then updates, bounded queue, slow readers down-sampled, stalled ones
//! dropped) carried by a WebSocket (`ws.rs`, the `/ws` route) or by QUIC (`quic_server.rs`).
//! `quic_client.rs` is the client behind `ringwatch watch --quic`; `quic_tls.rs` is what both
//! QUIC ends share. Nothing here depends on the HTTP API: a session takes `state::PushState`.

pub mod quic_client;
pub mod quic_server;
pub mod quic_tls;
pub mod session;
pub mod ws;

pub use crate::error::QuicError;
pub use quic_client::{Client, ClientTrust};
pub use quic_server::QuicServer;
pub use quic_tls::ALPN;
pub use session::{
    Filter, Incoming, MAX_CLIENT_MESSAGE, MAX_CLIENTS, PushCounters, SEND_TIMEOUT, Subscribe,
    Transport, parse_subscribe, serve,
};
pub use ws::{BEARER_PROTOCOL_PREFIX, PROTOCOL};
