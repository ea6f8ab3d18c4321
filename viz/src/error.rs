//! Errors of the viz library.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum VizError {
    #[error("invalid viz config: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Quic(#[from] crate::quic::QuicError),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}
