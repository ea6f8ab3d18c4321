//! Errors of the viz library.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    Quic(#[from] QuicError),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Errors of QUIC push, on the server (setup) and the client (`ringwatch watch --quic`) side.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("QUIC TLS setup: {0}")]
    Tls(String),
    #[error("cannot bind QUIC on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the generated certificate to {path}: {source}")]
    CertOut {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QUIC connection: {0}")]
    Connect(String),
    #[error("the server refused: {0}")]
    Refused(String),
}
