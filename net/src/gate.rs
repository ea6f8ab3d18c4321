//! The accept side every listener shares: a cap on open connections (each admitted one holds a
//! `Slot` for as long as its I/O lives), a refusal written to a connection over the cap (at most
//! `MAX_REFUSALS_IN_FLIGHT` at once; past that it is closed unanswered), counted and logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Listener;

/// Most refusals being written at once; past it an extra connection is closed unanswered.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// Pause after an accept error (such as running out of file descriptors) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long a refused connection gets to read the refusal before it is closed.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// A connection's place under its listener's cap, held by the connection's I/O for as long as
/// it is open (an upgraded WebSocket too); counted in `connections_open`.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    max: usize,
    counted: Listener,
    /// What a connection over the cap is told (a 503, or an HTTP/2 GOAWAY).
    answer: Arc<[u8]>,
}

impl Gate {
    pub(crate) fn new(max: usize, counted: Listener, answer: Vec<u8>) -> Gate {
        Gate {
            slots: Arc::new(Semaphore::new(max)),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
            max,
            counted,
            answer: answer.into(),
        }
    }

    /// The next connection under the cap, with its slot (`TCP_NODELAY` set: small acks and
    /// range chunks must not wait on Nagle's algorithm); `None` once `stop` completes.
    pub(crate) async fn admit(
        &self,
        listener: &TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<(TcpStream, SocketAddr, Slot)> {
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut stop => return None,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Running out of file descriptors is the usual cause; the cap should
                        // keep us below it.
                        tracing::warn!(listener = self.counted.name(), error = %e, "accept failed; pausing briefly");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.refuse(stream, peer);
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let open = self.counted.gauge();
            open.inc();
            let slot = Slot {
                _permit: permit,
                open,
            };
            return Some((stream, peer, slot));
        }
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr) {
        self.counted.closed("max_connections", Some(peer));
        if let Ok(r) = self.refusals.clone().try_acquire_owned() {
            let answer = self.answer.clone();
            tokio::spawn(async move {
                write_refusal(stream, &answer).await;
                drop(r);
            });
        }
    }

    /// Waits until every admitted connection has ended, for at most `within`.
    pub(crate) async fn drain(&self, within: Duration) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        if tokio::time::timeout(within, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::info!(
                listener = self.counted.name(),
                open = self.max - self.slots.available_permits(),
                "connections still open after the drain period; closing"
            );
        }
    }
}

/// Writes `answer` to a refused connection, ends the sending side, and reads until the client
/// closes (for at most `REFUSAL_WRITE` in all): closing with the client's request unread would
/// reset the connection and could discard the answer before the client reads it.
async fn write_refusal(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
