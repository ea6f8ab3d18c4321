//! What both ends of QUIC push share: the application protocol they name in the handshake and
//! the TLS they speak (TLS 1.3 only, rustls with the ring provider).

use std::sync::Arc;

use quinn::rustls;

use crate::error::QuicError;

/// The application protocol both ends name in the TLS handshake.
pub const ALPN: &[u8] = b"ringwatch-push/1";

/// The crypto both ends build their TLS configuration with.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS setup failure, in words.
pub(crate) fn tls_err(e: impl std::fmt::Display) -> QuicError {
    QuicError::Tls(e.to_string())
}
