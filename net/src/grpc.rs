//! The connection stream a tonic server is given: at most `max_connections` open (past it the
//! client is told with an HTTP/2 GOAWAY, ENHANCE_YOUR_CALM, whose debug data says why), and a
//! new connection must finish its TLS handshake (when the port has TLS) and send the HTTP/2
//! preface within `handshake_timeout`, and nothing else (a wrong first byte closes it at once;
//! a plaintext HTTP/2 client on a TLS port is told, in a GOAWAY, to use TLS). Checks run per
//! connection, off the accept loop, so a slow client delays no one else.
//! (HTTP/2 keepalive and streams per connection are the tonic server's own settings.)

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::gate::{Gate, Slot};
use crate::{GrpcLimits, Listener};

/// What every HTTP/2 client sends first.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// A connection that passed the checks; its slot is freed when tonic drops it. The preface
/// it sent was read to check it and is given back to the server first.
pub struct Conn {
    io: Io,
    info: TcpConnectInfo,
    preface_left: usize,
    _slot: Slot,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Accepts on `listener` until `shutdown`; hands tonic the connections that pass. With `tls`,
/// every connection must be TLS (and show a client certificate when the config asks for one).
pub fn incoming(
    listener: TcpListener,
    limits: GrpcLimits,
    tls: Option<Arc<ServerConfig>>,
    counted: Listener,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(256);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(accept_loop(listener, limits, tls, counted, shutdown, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    limits: GrpcLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    counted: Listener,
    shutdown: CancellationToken,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let reason = format!(
        "too many connections: this broker takes at most {} at once",
        limits.max_connections
    );
    let gate = Gate::new(
        limits.max_connections,
        counted.clone(),
        goaway_frames(reason.as_bytes()),
    );
    loop {
        let stop = async {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tx.closed() => {}
            }
        };
        let Some((stream, peer, slot)) = gate.admit(&listener, stop).await else {
            return;
        };
        let (tx, counted, tls) = (tx.clone(), counted.clone(), tls.clone());
        let deadline = Instant::now() + limits.handshake_timeout;
        tokio::spawn(async move {
            let info = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            match handshake(stream, tls, deadline).await {
                Ok(io) => {
                    let _ = tx
                        .send(Ok(Conn {
                            io,
                            info,
                            preface_left: PREFACE.len(),
                            _slot: slot,
                        }))
                        .await;
                }
                Err(Refused::Gone) => {}
                Err(Refused::Because(reason)) => counted.closed(reason, Some(peer)),
            }
        });
    }
}

enum Refused {
    /// The client went away.
    Gone,
    /// Closed, counted under this reason.
    Because(&'static str),
}

/// TLS (when the port has it) and the preface, both before `deadline`.
async fn handshake(
    mut stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    deadline: Instant,
) -> Result<Io, Refused> {
    let work = async {
        let Some(acceptor) = tls else {
            return match preface(&mut stream).await {
                Preface::Sent => Ok(Io::Plain(stream)),
                Preface::Gone => Err(Refused::Gone),
                Preface::Wrong(TLS_HANDSHAKE) => Err(Refused::Because("tls_on_plaintext")),
                Preface::Wrong(_) => Err(Refused::Because("bad_preface")),
            };
        };
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return Err(Refused::Gone),
            Ok(_) => {}
        }
        if first[0] != TLS_HANDSHAKE {
            if first[0] == PREFACE[0] {
                // A plaintext HTTP/2 client: tell it why, in words it can read.
                let goaway = goaway_frames(b"this broker requires TLS: connect with https://");
                let _ = stream.write_all(&goaway).await;
                let _ = stream.shutdown().await;
                return Err(Refused::Because("plaintext_on_tls"));
            }
            return Err(Refused::Because("bad_preface"));
        }
        let mut tls = match acceptor.accept(stream).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return Err(Refused::Because("tls_handshake_failed"));
            }
        };
        match preface(&mut tls).await {
            Preface::Sent => Ok(Io::Tls(Box::new(tls))),
            Preface::Gone => Err(Refused::Gone),
            Preface::Wrong(_) => Err(Refused::Because("bad_preface")),
        }
    };
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or(Err(Refused::Because("handshake_timeout")))
}

enum Preface {
    Sent,
    /// The first byte that differs.
    Wrong(u8),
    Gone,
}

/// Reads the client's first 24 bytes, which must be the HTTP/2 preface: a wrong byte ends it at
/// once. (Reads wait for data: a client trickling bytes costs a wake-up per segment, not a poll
/// loop; the caller bounds the time.)
async fn preface<S: AsyncRead + Unpin>(stream: &mut S) -> Preface {
    let mut buf = [0u8; 24];
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return Preface::Gone,
            Ok(n) => got += n,
        }
        if let Some(i) = (0..got).find(|&i| buf[i] != PREFACE[i]) {
            return Preface::Wrong(buf[i]);
        }
    }
    Preface::Sent
}

/// What a client over the cap is told: the server's (empty) SETTINGS, then a GOAWAY (last
/// stream 0, ENHANCE_YOUR_CALM) carrying `debug`, the reason.
pub fn goaway_frames(debug: &[u8]) -> Vec<u8> {
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let mut out = Vec::with_capacity(9 + 9 + 8 + debug.len());
    // SETTINGS: length 0, type 0x4, no flags, stream 0.
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let len = 8 + debug.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0]);
    out.extend_from_slice(&0u32.to_be_bytes()); // stream 0
    out.extend_from_slice(&0u32.to_be_bytes()); // last stream id
    out.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    out.extend_from_slice(debug);
    out
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl Conn {
    pub fn peer(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

impl Io {
    fn pin(&mut self) -> Pin<&mut dyn AsyncReadWrite> {
        match self {
            Io::Plain(s) => Pin::new(s),
            Io::Tls(s) => Pin::new(s.as_mut()),
        }
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.preface_left > 0 {
            let from = PREFACE.len() - self.preface_left;
            let n = self.preface_left.min(buf.remaining());
            buf.put_slice(&PREFACE[from..from + n]);
            self.preface_left -= n;
            return Poll::Ready(Ok(()));
        }
        self.io.pin().poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io.pin().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io.pin().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.pin().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.pin().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goaway_frames_are_well_formed() {
        let f = goaway_frames(b"why");
        assert_eq!(&f[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..14], &[0, 0, 11, 7, 0]);
        assert_eq!(&f[14..18], &[0, 0, 0, 0]);
        assert_eq!(&f[18..22], &[0, 0, 0, 0]);
        assert_eq!(&f[22..26], &[0, 0, 0, 0xb]);
        assert_eq!(&f[26..], b"why");
    }
}
