//! A TCP proxy to put between two components (agent↔broker, broker↔Redis, later
//! broker↔broker) and tell to misbehave:
//! - `delay(d)`: every chunk of bytes waits `d` before it is passed on (both directions);
//! - `blackhole()`: nothing passes and new connections hang (the kernel completes their
//!   handshake, nothing answers), as in a network partition: bytes are held, not dropped, and
//!   flow again after `heal()` unless a side gave up on its connection meanwhile;
//! - `reset_all()`: every open connection is closed with a TCP reset (both sides);
//! - `refuse()`: every open connection is reset, and every new one reset at once, as a host
//!   whose firewall rejects (the client learns at once, not by a timeout);
//! - `heal()`: back to passing everything at once.
//!
//! It runs on its own thread with its own tokio runtime, so it works from plain `#[test]`s.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    Delay(Duration),
    Blackhole,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    mode: Mode,
    /// Bumped by `reset_all`: connections of an older epoch are reset.
    epoch: u64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy addr");
        let (state, rx) = watch::channel(State {
            mode: Mode::Pass,
            epoch: 0,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                tokio::select! {
                    () = accept_loop(listener, target, rx) => {}
                    _ = stopped => {}
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        Proxy {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://addr`, for gRPC clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `redis://addr`, for Redis clients.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn set(&self, mode: Mode) {
        self.state.send_modify(|s| s.mode = mode);
    }

    pub fn delay(&self, d: Duration) {
        self.set(Mode::Delay(d));
    }

    pub fn blackhole(&self) {
        self.set(Mode::Blackhole);
    }

    pub fn heal(&self) {
        self.set(Mode::Pass);
    }

    pub fn reset_all(&self) {
        self.state.send_modify(|s| s.epoch += 1);
    }

    pub fn refuse(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Refuse;
            s.epoch += 1;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: watch::Receiver<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut state = state.clone();
        tokio::spawn(async move {
            let epoch = state.borrow().epoch;
            // A black hole: the client's handshake is done, nothing answers until healed.
            let Some(now) = until(&mut state, |s| {
                s.mode != Mode::Blackhole || s.epoch != epoch
            })
            .await
            else {
                return;
            };
            if now.epoch != epoch || now.mode == Mode::Refuse {
                let _ = client.set_zero_linger();
                return;
            }
            let Ok(upstream) = TcpStream::connect(target).await else {
                let _ = client.set_zero_linger();
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            tokio::spawn(pump(cr, uw, state.clone(), epoch));
            tokio::spawn(pump(ur, cw, state, epoch));
        });
    }
}

/// Waits until `f` holds for the state; the state then (None once the proxy is gone).
async fn until(rx: &mut watch::Receiver<State>, f: impl FnMut(&State) -> bool) -> Option<State> {
    rx.wait_for(f).await.ok().map(|s| *s)
}

/// Resets both sockets this pump holds a half of: with zero linger, closing sends RST. The write
/// half is forgotten rather than dropped (dropping it would send FIN first); each socket closes
/// when the other pump drops its read half, which it does on the same reset.
fn reset(src: OwnedReadHalf, dst: OwnedWriteHalf) {
    let _ = src.as_ref().set_zero_linger();
    let _ = dst.as_ref().set_zero_linger();
    dst.forget();
    drop(src);
}

async fn pump(
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    epoch: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = dst.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = until(&mut state, |s| s.epoch != epoch) => return reset(src, dst),
        };
        // Held while black-holed (a chunk read just before `blackhole()` may still pass);
        // delayed while delaying; a reset ends it at any point.
        let Some(s) = until(&mut state, |s| {
            s.mode != Mode::Blackhole || s.epoch != epoch
        })
        .await
        else {
            return;
        };
        if s.epoch != epoch {
            return reset(src, dst);
        }
        let delay = match s.mode {
            Mode::Delay(d) => d,
            _ => Duration::ZERO,
        };
        let sent = tokio::select! {
            r = async {
                tokio::time::sleep(delay).await;
                dst.write_all(&buf[..n]).await
            } => r.is_ok(),
            _ = until(&mut state, |s| s.epoch != epoch) => return reset(src, dst),
        };
        if !sent {
            return;
        }
    }
}
