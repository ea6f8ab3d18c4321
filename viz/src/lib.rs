//! Ringwatch viz (SPEC S5): keeps the dashboard snapshot in memory, fed by live push from
//! brokers (with the incremental pull as fallback), and serves the HTTP API.
//!
//! Push to clients over WebSocket and QUIC, one session logic (`push/`); the state handlers
//! share (`state.rs`); the detail queries' maths (`analysis.rs`); tokens (`auth.rs`); the web
//! UI from the binary (`web.rs`).

pub mod analysis;
pub mod api;
pub mod auth;
pub mod brokers;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod feed;
pub mod metrics;
pub mod push;
pub mod state;
pub mod web;

/// QUIC push under the path `ringwatch watch` and the tests import it from; it lives in
/// `push/` (`quic_server.rs`, `quic_client.rs`).
pub mod quic {
    pub use crate::error::QuicError;
    pub use crate::push::quic_client::{Client, ClientTrust};
    pub use crate::push::quic_server::QuicServer;
    pub use crate::push::quic_tls::ALPN;
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::VizError;

/// viz with its HTTP port bound.
pub struct Viz {
    config: Config,
    listener: TcpListener,
    addr: SocketAddr,
    quic: push::QuicServer,
}

impl Viz {
    pub async fn bind(mut config: Config) -> Result<Viz, VizError> {
        config.load_secrets()?;
        config.validate()?;
        let listen = config.http.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| VizError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| VizError::Bind {
            addr: listen,
            source,
        })?;
        let q = &config.push.quic;
        let files = q.cert.as_deref().zip(q.key.as_deref());
        let quic = push::QuicServer::bind(
            q.listen,
            files,
            q.cert_out.as_deref(),
            config.push.ws_heartbeat,
        )?;
        Ok(Viz {
            config,
            listener,
            addr,
            quic,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The QUIC push address (UDP).
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic.addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), VizError> {
        let Viz {
            config,
            listener,
            addr,
            quic,
        } = self;
        let pool = Arc::new(brokers::BrokerPool::new(
            &config.brokers.endpoints,
            &config.connector()?,
            Duration::from_secs(3),
        )?);
        let dashboard = Arc::new(dashboard::Dashboard::default());
        let counters = Arc::new(feed::FeedCounters::default());
        let health = pool.spawn_health(config.brokers.health_interval, shutdown.clone());
        let feed = feed::Feed {
            pool: pool.clone(),
            dashboard: dashboard.clone(),
            pull_every: config.dashboard.pull_interval,
            window: config.dashboard.fallback_window,
            counters: counters.clone(),
        };
        let feed_task = tokio::spawn(feed.run(shutdown.clone()));
        let metrics = Arc::new(metrics::VizMetrics::new(counters, pool.clone()));
        let listen = metrics.listen.clone();
        let auth = Arc::new(auth::Auth::new(
            config
                .auth
                .jwt_secret
                .as_ref()
                .map(ringwatch_core::Secret::expose),
        ));
        let push = state::PushState::new(
            dashboard.clone(),
            auth.clone(),
            config.push.ws_heartbeat,
            shutdown.clone(),
            metrics.auth_unauthorized.clone(),
        );
        let state = Arc::new(state::AppState {
            dashboard,
            metrics,
            pool,
            topk: config.dashboard.topk,
            topk_ttl_ms: config.dashboard.topk_ttl.as_millis() as i64,
            max_range_ms: config.query.max_range.as_millis() as i64,
            max_points: config.query.max_points,
            max_cells: config.query.max_cells,
            range_slots: Arc::new(tokio::sync::Semaphore::new(api::RANGE_SLOTS)),
            dashboard_cache: std::sync::Mutex::new(None),
            auth,
            admin_config: config.shown(),
            refusal_log: ringwatch_net::Throttle::default(),
            push,
        });
        if !state.auth.required() {
            tracing::warn!(
                "AUTH IS OFF (--no-auth): anyone who can reach {addr} reads every host's metrics; \
                 set --jwt-secret for anything but a local run"
            );
        }
        let quic_addr = quic.addr();
        let quic_task = tokio::spawn(quic.run(state.push.clone(), shutdown.clone()));
        tracing::info!(%addr, quic = %quic_addr, brokers = ?config.brokers.endpoints, "viz serving");
        let stop = shutdown.clone();
        let app = api::router(state).merge(web::router(web::WebAssets::new(
            config.http.web_dir.clone(),
        )));
        ringwatch_net::warn_if_few_files(config.http.max_connections);
        ringwatch_net::http::serve(
            listener,
            app,
            config.http_limits(),
            listen.listener("http"),
            stop,
            Duration::from_secs(5),
        )
        .await;
        shutdown.cancel();
        let _ = feed_task.await;
        let _ = quic_task.await;
        let _ = health.await;
        tracing::info!("viz stopped");
        Ok(())
    }
}
