//! The connection stream a tonic server is given: at most `max_connections` open (past it the
//! client is told with an HTTP/2 GOAWAY, ENHANCE_YOUR_CALM, whose debug data says why), and a
//! new connection must send the HTTP/2 preface within `handshake_timeout`, and nothing else
//! (a wrong first byte closes it at once). Checks run per
//! connection, off the accept loop, so a slow client delays no one else.
//! (HTTP/2 keepalive and streams per connection are the tonic server's own settings.)

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::gate::{Gate, Slot};
use crate::{GrpcLimits, Listener};

/// What every HTTP/2 client sends first.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection that passed the checks; its slot is freed when tonic drops it. The preface
/// it sent was read to check it and is given back to the server first.
pub struct Conn {
    stream: TcpStream,
    preface_left: usize,
    _slot: Slot,
}

/// Accepts on `listener` until `shutdown`; hands tonic the connections that pass.
pub fn incoming(
    listener: TcpListener,
    limits: GrpcLimits,
    counted: Listener,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(accept_loop(listener, limits, counted, shutdown, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    limits: GrpcLimits,
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
        let (tx, counted) = (tx.clone(), counted.clone());
        let timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let mut stream = stream;
            match preface(&mut stream, timeout).await {
                Preface::Sent => {
                    let _ = tx
                        .send(Ok(Conn {
                            stream,
                            preface_left: PREFACE.len(),
                            _slot: slot,
                        }))
                        .await;
                }
                Preface::Late => counted.closed("handshake_timeout", Some(peer)),
                Preface::Wrong => counted.closed("bad_preface", Some(peer)),
                Preface::Gone => {}
            }
        });
    }
}

enum Preface {
    Sent,
    Late,
    Wrong,
    Gone,
}

/// Reads the client's first 24 bytes, which must be the HTTP/2 preface: a wrong byte ends it at
/// once; a client that sends less within `timeout` is too late. (Reads wait for data: a client
/// trickling bytes costs a wake-up per segment, not a poll loop.)
async fn preface(stream: &mut TcpStream, timeout: Duration) -> Preface {
    let read = async {
        let mut buf = [0u8; 24];
        let mut got = 0;
        while got < buf.len() {
            match stream.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => return Preface::Gone,
                Ok(n) => got += n,
            }
            if buf[..got] != PREFACE[..got] {
                return Preface::Wrong;
            }
        }
        Preface::Sent
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Preface::Late)
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
        self.stream.connect_info()
    }
}

impl Conn {
    pub fn peer(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

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
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
