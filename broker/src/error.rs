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
    /// The store's server (Redis) failed; its error is kept as the source.
    #[error("{what}: {source}")]
    Backend {
        what: &'static str,
        /// Whether trying again may succeed (not for a refused password, say).
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// This broker does not own the host at the ring's epoch: ask `owner`.
    #[error("this broker does not own {host} at ring epoch {epoch}; its owner is {owner}")]
    NotOwner {
        host: String,
        epoch: u64,
        owner: String,
    },
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

    /// Whether the same request may succeed later (or elsewhere): what fail-over and retries
    /// decide by. A full disk frees up, an unreachable server comes back, the owner takes the
    /// write; a corrupt section, a query too large or a refused password stay so.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { .. }
            | StoreError::Unavailable(_)
            | StoreError::DiskFull { .. }
            | StoreError::NotOwner { .. } => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::Closed | StoreError::TooLarge(_) | StoreError::Corrupt { .. } => false,
        }
    }
}

/// The one conversion of a store error to a gRPC status: its message once, and a code a
/// client can act on. Retryable errors are `UNAVAILABLE` (the agent keeps the batch and sends
/// it again); `NotOwner` also names the owner and epoch in the metadata
/// (`ringwatch-owner`, `ringwatch-ring-epoch`).
impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> tonic::Status {
        let message = e.to_string();
        match &e {
            StoreError::TooLarge(_) => tonic::Status::resource_exhausted(message),
            StoreError::Corrupt { .. } => tonic::Status::data_loss(message),
            StoreError::NotOwner { epoch, owner, .. } => {
                let mut s = tonic::Status::unavailable(message);
                if let Ok(v) = owner.parse() {
                    s.metadata_mut().insert("ringwatch-owner", v);
                }
                s.metadata_mut().insert(
                    "ringwatch-ring-epoch",
                    tonic::metadata::MetadataValue::from(*epoch),
                );
                s
            }
            _ if e.is_retryable() => tonic::Status::unavailable(message),
            _ => tonic::Status::failed_precondition(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_becomes_one_status_with_its_message_once() {
        let s = tonic::Status::from(StoreError::Unavailable("redis: connection refused".into()));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.message(), "store unavailable: redis: connection refused");
        let io = std::io::Error::other("NOAUTH Authentication required");
        let e = StoreError::Backend {
            what: "redis",
            retryable: false,
            source: Box::new(io),
        };
        assert!(!e.is_retryable());
        assert!(std::error::Error::source(&e).is_some(), "source kept");
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.message(), "redis: NOAUTH Authentication required");
        let s = tonic::Status::from(StoreError::TooLarge("3 M cells".into()));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let e = StoreError::NotOwner {
            host: "h".into(),
            epoch: 7,
            owner: "broker-2".into(),
        };
        assert!(e.is_retryable());
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.metadata().get("ringwatch-owner").unwrap(), "broker-2");
        assert_eq!(s.metadata().get("ringwatch-ring-epoch").unwrap(), "7");
        let full = StoreError::DiskFull {
            path: "/d".into(),
            free_bytes: 1,
            reserve_bytes: 2,
        };
        assert!(full.is_retryable());
        assert_eq!(tonic::Status::from(full).code(), tonic::Code::Unavailable);
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
