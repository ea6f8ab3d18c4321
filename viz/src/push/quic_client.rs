//! QUIC push, client side: subscribes to viz's QUIC push (`quic_server.rs`) and reads its
//! messages line by line. It serves `ringwatch watch --quic`, the tests and the benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::quic_tls::{ALPN, provider, tls_err};
use crate::error::QuicError;

/// Time a client waits for the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest line the client takes from a server.
const MAX_SERVER_MESSAGE: usize = 64 << 20;

/// How a client trusts the server.
#[derive(Debug, Clone, Default)]
pub struct ClientTrust {
    /// PEM certificates to trust (e.g. the one viz wrote to --quic-cert-out).
    pub ca: Option<PathBuf>,
    /// Trust any certificate (a self-signed one on a local run); the connection is still
    /// encrypted but not authenticated.
    pub insecure: bool,
}

/// A live subscription over QUIC.
pub struct Client {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    lines: FramedRead<quinn::RecvStream, LinesCodec>,
}

impl Client {
    /// Connects to `addr` (`server_name` is checked against the certificate) and subscribes.
    pub async fn subscribe(
        addr: SocketAddr,
        server_name: &str,
        trust: &ClientTrust,
        token: Option<&str>,
        hosts: &[String],
        metrics: &[String],
    ) -> Result<Client, QuicError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?;
        let mut tls = if trust.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth()
        } else {
            let Some(ca) = &trust.ca else {
                return Err(tls_err(
                    "give --ca with the server's certificate, or --insecure for a self-signed one",
                ));
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| tls_err(format!("{}: {e}", ca.display())))?
            {
                roots
                    .add(cert.map_err(|e| tls_err(format!("{}: {e}", ca.display())))?)
                    .map_err(tls_err)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(tls_err)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        config.transport_config(Arc::new(transport));
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint =
            quinn::Endpoint::client(local).map_err(|e| QuicError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(addr, server_name)
            .map_err(|e| QuicError::Connect(e.to_string()))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| QuicError::Connect(format!("no answer from {addr} within 10 s")))?
            .map_err(|e| QuicError::Connect(e.to_string()))?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| QuicError::Connect(e.to_string()))?;
        let mut hello = json!({"type": "subscribe", "hosts": hosts, "metrics": metrics});
        if let Some(t) = token {
            hello["token"] = json!(t);
        }
        send.write_all(format!("{hello}\n").as_bytes())
            .await
            .map_err(|e| QuicError::Connect(e.to_string()))?;
        Ok(Client {
            _endpoint: endpoint,
            conn,
            send,
            lines: FramedRead::new(recv, LinesCodec::new_with_max_length(MAX_SERVER_MESSAGE)),
        })
    }

    /// Tells the server no more subscribes follow (finishes this side of the stream); updates
    /// keep coming.
    pub fn done_subscribing(&mut self) {
        let _ = self.send.finish();
    }

    /// The next message; an error line from the server (a refusal) becomes `Refused`; None
    /// when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<serde_json::Value, QuicError>> {
        match self.lines.next().await? {
            Ok(line) => Some(match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) if v["type"] == "error" && v.get("status").is_some() => {
                    Err(QuicError::Refused(format!(
                        "{} {}",
                        v["status"],
                        v["error"].as_str().unwrap_or("")
                    )))
                }
                Ok(v) => Ok(v),
                Err(e) => Err(QuicError::Connect(format!("bad line from the server: {e}"))),
            }),
            Err(e) => Some(Err(QuicError::Connect(match self.conn.close_reason() {
                Some(r) => r.to_string(),
                None => e.to_string(),
            }))),
        }
    }
}

/// Accepts any server certificate (for `--insecure` only); signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
