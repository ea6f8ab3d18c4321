//! Errors of the broker library.

use std::net::SocketAddr;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store is closed")]
    Closed,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("query too large: {0}")]
    TooLarge(String),
    #[error("corrupt data at {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "disk full: {free_bytes} bytes free under {path}, below the reserve of {reserve_bytes} \
         (--disk-reserve-mib); ingest resumes when space is freed"
    )]
    DiskFull {
        path: String,
        free_bytes: u64,
        reserve_bytes: u64,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Errors from starting or running a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid broker config: {0}")]
    Config(String),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("admin HTTP server failed: {0}")]
    Admin(std::io::Error),
}
