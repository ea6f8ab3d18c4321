//! An I/O wrapper that fails once no byte has been read or written for a while, so the HTTP
//! server closes the connection: a client that connects and goes quiet, or stops reading what
//! it asked for, does not hold a connection (and a file descriptor) for ever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::Listener;
use crate::gate::Slot;

pub(crate) struct IdleIo<T> {
    inner: T,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    listener: Listener,
    peer: Option<std::net::SocketAddr>,
    fired: bool,
    /// The connection's place under the cap, released when the I/O is dropped (after an
    /// upgrade, when the WebSocket ends).
    _slot: Option<Slot>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(
        inner: T,
        idle: Duration,
        listener: Listener,
        peer: Option<std::net::SocketAddr>,
        slot: Option<Slot>,
    ) -> IdleIo<T> {
        let now = Instant::now();
        IdleIo {
            inner,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            listener,
            peer,
            fired: false,
            _slot: slot,
        }
    }

    fn active(&mut self) {
        // The timer is moved lazily, when it fires: activity costs a clock read, not a timer
        // update.
        self.last = Instant::now();
    }

    /// Called when the inner I/O is not ready: an error once the connection has been idle for
    /// the whole period, otherwise pending (the timer wakes the task to look again).
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.fired {
                return Poll::Ready(timed_out());
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let due = self.last + self.idle;
                    if Instant::now() >= due {
                        self.fired = true;
                        self.listener.closed("idle_timeout", self.peer);
                    } else {
                        self.timer.as_mut().reset(due);
                    }
                }
            }
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection idle past the idle timeout",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ListenMetrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn quiet_past_the_period_fails_and_activity_keeps_it_open() {
        let metrics = ListenMetrics::default();
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(
            a,
            Duration::from_secs(10),
            metrics.listener("t"),
            None,
            None,
        );
        let mut buf = [0u8; 8];
        // Bytes every 6 s keep it open past 10 s.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        // Then quiet: the read fails after 10 s, and it is counted once.
        let start = Instant::now();
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed().as_secs(), 10);
        assert_eq!(metrics.closed("t", "idle_timeout"), 1);
        assert!(io.read(&mut buf).await.is_err());
        assert_eq!(metrics.closed("t", "idle_timeout"), 1);
    }
}
