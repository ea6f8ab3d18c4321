//! The agent's error type.

use std::net::SocketAddr;

/// Everything that can go wrong when configuring or running the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration value is out of range or malformed.
    #[error("invalid configuration `{field}`: {message}")]
    Config {
        /// The config field (snake_case, as in the YAML file and the flag id).
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Neither `host_id`, `NODE_NAME` nor the hostname gave a usable host id.
    #[error("cannot determine the host id: {0}")]
    HostId(String),
    /// The /metrics listener could not be bound.
    #[error("cannot bind the metrics listener on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The system collectors could not be initialised.
    #[error("cannot initialise the system collectors: {0}")]
    Collector(String),
    /// An internal task failed (panicked or was cancelled).
    #[error("internal task failed: {0}")]
    Task(String),
}

impl AgentError {
    /// Shorthand for a [`AgentError::Config`] error.
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        AgentError::Config {
            field,
            message: message.into(),
        }
    }
}
