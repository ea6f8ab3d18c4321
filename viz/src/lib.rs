//! Ringwatch viz (SPEC S5): keeps the dashboard snapshot in memory, fed by live push from
//! brokers (with the incremental pull as fallback), and serves the HTTP API.
//!
//! Push to clients over WebSocket (`ws.rs`) and QUIC (`quic.rs`), one session logic
//! (`push.rs`); tokens (`auth.rs`); the web UI from the binary (`web.rs`).

pub mod api;
pub mod auth;
pub mod brokers;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod feed;
pub mod metrics;
pub mod push;
pub mod quic;
pub mod web;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::VizError;

/// viz with its HTTP port bound.
pub struct Viz {
    config: Config,
    listener: TcpListener,
    addr: SocketAddr,
    quic: quic::QuicServer,
}

impl Viz {
    pub async fn bind(mut config: Config) -> Result<Viz, VizError> {
        config.load_secrets()?;
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| VizError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| VizError::Bind {
            addr: config.listen,
            source,
        })?;
        let files = config.quic_cert.as_deref().zip(config.quic_key.as_deref());
        let quic = quic::QuicServer::bind(
            config.quic_listen,
            files,
            config.quic_cert_out.as_deref(),
            Duration::from_secs(config.ws_heartbeat_secs),
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
            &config.brokers,
            &config.connector()?,
            Duration::from_secs(3),
        )?);
        let dashboard = Arc::new(dashboard::Dashboard::default());
        let counters = Arc::new(feed::FeedCounters::default());
        let health = pool.spawn_health(Duration::from_secs(config.health_secs), shutdown.clone());
        let feed = feed::Feed {
            pool: pool.clone(),
            dashboard: dashboard.clone(),
            pull_every: Duration::from_secs(config.pull_secs),
            window: Duration::from_secs(config.fallback_window_secs),
            counters: counters.clone(),
        };
        let feed_task = tokio::spawn(feed.run(shutdown.clone()));
        let metrics = Arc::new(metrics::VizMetrics::new(counters, pool.clone()));
        let listen = metrics.listen.clone();
        let state = Arc::new(api::AppState {
            dashboard,
            metrics,
            pool,
            topk: config.topk,
            topk_ttl_ms: config.topk_ttl_secs as i64 * 1000,
            max_range_ms: config.max_range_hours as i64 * 3_600_000,
            max_points: config.max_points,
            max_cells: config.max_cells,
            range_slots: Arc::new(tokio::sync::Semaphore::new(api::RANGE_SLOTS)),
            ws: push::PushCounters::default(),
            quic: push::PushCounters::default(),
            ws_heartbeat: Duration::from_secs(config.ws_heartbeat_secs),
            dashboard_cache: std::sync::Mutex::new(None),
            shutdown: shutdown.clone(),
            auth: auth::Auth::new(config.jwt_secret.as_deref()),
            admin_config: api::AdminConfig::from(&config),
            refusal_log: ringwatch_net::Throttle::default(),
        });
        if !state.auth.required() {
            tracing::warn!(
                "AUTH IS OFF (--no-auth): anyone who can reach {addr} reads every host's metrics; \
                 set --jwt-secret for anything but a local run"
            );
        }
        let quic_addr = quic.addr();
        let quic_task = tokio::spawn(quic.run(state.clone(), shutdown.clone()));
        tracing::info!(%addr, quic = %quic_addr, brokers = ?config.brokers, "viz serving");
        let stop = shutdown.clone();
        let app =
            api::router(state).merge(web::router(web::WebAssets::new(config.web_dir.clone())));
        ringwatch_net::warn_if_few_files(config.max_connections);
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
