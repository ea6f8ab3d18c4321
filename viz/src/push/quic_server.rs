//! QUIC push, server side (SPEC S5): the same messages as `/ws`, one JSON text per line on a
//! bidirectional stream the client opens. The client's first line is a subscribe that also
//! carries its token; a missing or bad token gets an error line and the connection is closed
//! with code 401. TLS 1.3 with the configured certificate, or a self-signed one generated at
//! start (written to `quic_cert_out` for clients to trust). The client is `quic_client.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use super::quic_tls::{ALPN, provider, tls_err};
use super::session::{
    Incoming, MAX_CLIENT_MESSAGE, MAX_CLIENTS, SEND_TIMEOUT, Transport, parse_subscribe, serve,
};
use crate::auth::Role;
use crate::error::QuicError;
use crate::state::PushState;

/// Time for a client to finish the handshake and send its subscribe, in all.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and key: read from PEM files, or generated (self-signed for
/// localhost, 127.0.0.1, ::1 and this machine's name), with the generated PEM returned.
fn certificate(
    files: Option<(&Path, &Path)>,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        Option<String>,
    ),
    QuicError,
> {
    if let Some((cert, key)) = files {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_err(format!("{}: {e}", cert.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(tls_err(format!("{}: no certificate in it", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls_err(format!("{}: {e}", key.display())))?;
        return Ok((chain, key, None));
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = hostname_of_machine() {
        names.push(h);
    }
    let generated = rcgen::generate_simple_self_signed(names).map_err(tls_err)?;
    let pem = generated.cert.pem();
    let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    Ok((vec![generated.cert.der().clone()], key.into(), Some(pem)))
}

fn hostname_of_machine() -> Result<String, std::io::Error> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let h = h.trim();
    if h.is_empty() || h.parse::<std::net::IpAddr>().is_ok() {
        return Err(std::io::Error::other("no usable hostname"));
    }
    Ok(h.to_string())
}

/// A bound QUIC endpoint, not yet serving.
pub struct QuicServer {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
}

impl QuicServer {
    pub fn bind(
        listen: SocketAddr,
        files: Option<(&Path, &Path)>,
        cert_out: Option<&Path>,
        heartbeat: Duration,
    ) -> Result<QuicServer, QuicError> {
        let (chain, key, generated) = certificate(files)?;
        if let Some(pem) = &generated {
            match cert_out {
                Some(path) => std::fs::write(path, pem).map_err(|source| QuicError::CertOut {
                    path: path.to_path_buf(),
                    source,
                })?,
                None => tracing::info!(
                    "QUIC uses a self-signed certificate generated at start; set --quic-cert-out to hand it to clients (--ca), or give --quic-cert/--quic-key"
                ),
            }
        }
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_err)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls).map_err(tls_err)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(1u32.into())
            .max_concurrent_uni_streams(0u32.into())
            .keep_alive_interval(Some(heartbeat))
            .max_idle_timeout(
                quinn::IdleTimeout::try_from(heartbeat * 2 + Duration::from_secs(5)).ok(),
            );
        server.transport_config(Arc::new(transport));
        let endpoint =
            quinn::Endpoint::server(server, listen).map_err(|source| QuicError::Bind {
                addr: listen,
                source,
            })?;
        let addr = endpoint.local_addr().map_err(|source| QuicError::Bind {
            addr: listen,
            source,
        })?;
        Ok(QuicServer { endpoint, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts clients until `shutdown`. Every connection holds one of `MAX_CLIENTS` places
    /// from its first packet to its end (handshakes and silent clients included).
    pub async fn run(self, st: PushState, shutdown: CancellationToken) {
        let endpoint = self.endpoint;
        let places = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS as usize));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    // Address validation first: until a client has echoed a Retry token, it
                    // gets one small Retry packet and nothing more, so a forged source address
                    // cannot turn viz into an amplifier (a handshake answers 1,200 bytes with
                    // about 3,800).
                    if !incoming.remote_address_validated() {
                        st.quic.retries.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = incoming.retry() {
                            e.into_incoming().ignore();
                        }
                        continue;
                    }
                    let Ok(place) = places.clone().try_acquire_owned() else {
                        st.quic.refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(unlogged) = st.quic.log.allow() {
                            tracing::warn!(peer = %incoming.remote_address(), max = MAX_CLIENTS, not_logged_since_last = unlogged, "QUIC client refused: too many clients");
                        }
                        incoming.refuse();
                        continue;
                    };
                    let st = st.clone();
                    tasks.spawn(async move {
                        client(incoming, st).await;
                        drop(place);
                    });
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "a QUIC session task failed");
                    }
                }
            }
        }
        // Sessions see the same shutdown and close their streams; then the endpoint goes.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        endpoint.close(0u32.into(), b"viz stopping");
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    }
}

struct QuicTransport {
    conn: quinn::Connection,
    send: quinn::SendStream,
    lines: FramedRead<quinn::RecvStream, LinesCodec>,
    /// The client finished its side of the stream: no more subscribes, updates go on.
    input_done: bool,
}

impl Transport for QuicTransport {
    const SILENCE_CLOSES: bool = false;

    async fn send(&mut self, text: bytes::Bytes) -> bool {
        let write = async {
            self.send.write_chunk(text).await?;
            self.send.write_all(b"\n").await
        };
        matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
    }

    async fn recv(&mut self) -> Incoming {
        if self.input_done {
            return std::future::pending().await;
        }
        match self.lines.next().await {
            Some(Ok(line)) => Incoming::Text(line),
            Some(Err(e)) => Incoming::Bad(e.to_string()),
            None => {
                // A half-close (the usual end of a request); the connection stays up.
                self.input_done = true;
                Incoming::Alive
            }
        }
    }

    async fn ping(&mut self) -> bool {
        // QUIC keeps the connection alive and times it out by itself.
        self.conn.close_reason().is_none()
    }

    async fn close(&mut self) {
        let _ = self.send.finish();
        // Let what was written (a last error line) arrive before the close overtakes it.
        let _ = tokio::time::timeout(Duration::from_millis(500), self.send.stopped()).await;
        self.conn.close(0u32.into(), b"session ended");
    }
}

/// Refuses a client with an error line and a close code.
async fn refuse(
    st: &PushState,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: u32,
    reason: &str,
) {
    st.quic.refused.fetch_add(1, Ordering::Relaxed);
    if code == 401 {
        st.unauthorized.inc();
    }
    if let Some(unlogged) = st.quic.log.allow() {
        tracing::info!(peer = %conn.remote_address(), code, reason, not_logged_since_last = unlogged, "QUIC client refused");
    }
    let line = format!(
        "{}\n",
        json!({"type": "error", "status": code, "error": reason})
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), send.write_all(line.as_bytes())).await;
    let _ = send.finish();
    // Give the error line a moment to leave before the close overtakes it.
    let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    conn.close(code.into(), reason.as_bytes());
}

async fn client(incoming: quinn::Incoming, st: PushState) {
    let peer = incoming.remote_address();
    // One deadline for the handshake, the stream and the subscribe.
    let deadline = tokio::time::Instant::now() + FIRST_MESSAGE_TIMEOUT;
    let opened = tokio::time::timeout_at(deadline, async {
        let conn = incoming.await.map_err(|e| e.to_string())?;
        let (send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, send, recv))
    })
    .await;
    let (conn, mut send, recv) = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            st.quic.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(unlogged) = st.quic.log.allow() {
                tracing::info!(%peer, error = %e, not_logged_since_last = unlogged, "QUIC client did not connect");
            }
            return;
        }
        Err(_) => {
            st.quic.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(unlogged) = st.quic.log.allow() {
                tracing::info!(%peer, not_logged_since_last = unlogged, "QUIC client did not open a stream within 10 s");
            }
            return;
        }
    };
    let mut lines = FramedRead::new(recv, LinesCodec::new_with_max_length(MAX_CLIENT_MESSAGE));
    let first = match tokio::time::timeout_at(deadline, lines.next()).await {
        Ok(Some(Ok(line))) => line,
        Ok(Some(Err(e))) => {
            let reason = format!("bad first message: {e}");
            return refuse(&st, &conn, &mut send, 400, &reason).await;
        }
        Ok(None) => {
            st.quic.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(unlogged) = st.quic.log.allow() {
                tracing::info!(%peer, not_logged_since_last = unlogged, "QUIC client closed its stream before subscribing");
            }
            return;
        }
        Err(_) => {
            let reason = "send a subscribe message first, within 10 s";
            return refuse(&st, &conn, &mut send, 408, reason).await;
        }
    };
    let (filter, token) = match parse_subscribe(&first) {
        Ok(f) => f,
        Err(e) => return refuse(&st, &conn, &mut send, 400, &e).await,
    };
    let who = match st.auth.check(token.as_deref(), Role::Viewer) {
        Ok(who) => who,
        Err(e) => return refuse(&st, &conn, &mut send, e.status().into(), &e.to_string()).await,
    };
    let t = QuicTransport {
        conn,
        send,
        lines,
        input_done: false,
    };
    serve(t, &st, &st.quic, filter, who.expires_ms).await;
}
