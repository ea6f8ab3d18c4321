//! Ringwatch broker (SPEC S3): ingest → router → store, query, admin HTTP.
//!
//! `Broker::bind` validates the config, opens the store and binds both ports; `Broker::run`
//! serves until the shutdown token is cancelled, then ends ingest streams, stops serving and
//! flushes the store so everything acknowledged is durable.

// The services' futures hold the store's (an enum of the embedded store's and Redis's), which
// nest deeper than the compiler's default layout query depth.
#![recursion_limit = "256"]

pub mod access;
pub mod admin;
pub mod capacity;
pub mod config;
pub mod control;
pub mod error;
mod failpoint;
pub mod forward;
pub mod forward_queue;
pub mod handoff;
pub mod ingest;
pub mod legacy;
pub mod live;
pub mod metrics;
pub mod peer_service;
pub mod query;
pub mod redeliver;
pub mod router;
pub mod store;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::{BrokerError, StoreError};

use crate::config::StoreKind;
use crate::metrics::BrokerMetrics;
use crate::store::{AnyStore, EmbeddedStore, RedisStore, Store};

/// A broker with its ports bound, ready to run.
pub struct Broker {
    config: Config,
    node_id: String,
    grpc: TcpListener,
    admin: TcpListener,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    store: AnyStore,
    security: Security,
    /// The Raft control plane (`--raft`).
    control: Option<Arc<control::ControlPlane>>,
    /// A cluster member's forward queue on disk.
    queue: Option<Arc<forward_queue::ForwardQueue>>,
}

/// The gRPC port's TLS and credential check, read at bind.
struct Security {
    tls: Option<Arc<ringwatch_net::tls::ServerConfig>>,
    secrets: Option<Vec<String>>,
}

struct Ports {
    grpc: TcpListener,
    admin: TcpListener,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    security: Security,
}

impl Broker {
    /// Validates the config, opens the store (the embedded one replays its log; Redis is
    /// connected lazily) and binds the ports.
    pub async fn bind(config: Config) -> Result<Broker, BrokerError> {
        config.validate()?;
        let security = Security {
            tls: config.server_tls()?,
            secrets: config.auth_secrets()?,
        };
        let store = match config.storage.kind {
            StoreKind::Embedded => AnyStore::Embedded(EmbeddedStore::open(config.embedded())?),
            StoreKind::Redis => AnyStore::Redis(RedisStore::open(config.redis())?),
        };
        let grpc = TcpListener::bind(config.grpc.listen)
            .await
            .map_err(|source| BrokerError::Bind {
                what: "gRPC",
                addr: config.grpc.listen,
                source,
            })?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| BrokerError::Bind {
                what: "admin HTTP",
                addr: config.admin.listen,
                source,
            })?;
        let grpc_addr = grpc.local_addr().map_err(|source| BrokerError::Bind {
            what: "gRPC",
            addr: config.grpc.listen,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| BrokerError::Bind {
            what: "admin HTTP",
            addr: config.admin.listen,
            source,
        })?;
        let node_id = config.resolved_node_id();
        let control = if config.cluster.enabled {
            let (grpc_url, admin_url) = config.advertised(grpc_addr, admin_addr);
            let me = control::BrokerNode {
                name: node_id.clone(),
                grpc_addr: grpc_url,
                admin_addr: admin_url,
            };
            let connector = config.peer_connector(security.secrets.as_deref())?;
            let plane = control::ControlPlane::start(
                &config.node.data_dir.join("raft"),
                me,
                config.raft_timings(),
                connector,
                config.peer_routes()?,
            )
            .await
            .map_err(|e| BrokerError::Config(format!("raft: {e}")))?;
            Some(plane)
        } else {
            None
        };
        let queue = match &control {
            Some(_) => {
                let dir = config.node.data_dir.join("forward-queue");
                let (queue, opened) =
                    forward_queue::ForwardQueue::open(&dir, config.forward_queue_limits())
                        .map_err(|e| BrokerError::Config(e.to_string()))?;
                if opened.batches > 0 || opened.corrupt > 0 {
                    tracing::info!(
                        batches = opened.batches,
                        bytes = opened.bytes,
                        corrupt = opened.corrupt,
                        "forward queue read back; delivering it"
                    );
                }
                Some(Arc::new(queue))
            }
            None => None,
        };
        Ok(Broker {
            node_id,
            config,
            grpc,
            admin,
            grpc_addr,
            admin_addr,
            store,
            security,
            control,
            queue,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The broker's control plane (with `--raft`): a local stack forms its cluster through it.
    pub fn control(&self) -> Option<Arc<control::ControlPlane>> {
        self.control.clone()
    }

    /// Serves until `shutdown` is cancelled; then drains and flushes.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let Broker {
            config,
            node_id,
            grpc,
            admin,
            grpc_addr,
            admin_addr,
            store,
            security,
            control,
            queue,
        } = self;
        let ports = Ports {
            grpc,
            admin,
            grpc_addr,
            admin_addr,
            security,
        };
        let maintenance = store.spawn_maintenance(shutdown.clone());
        let cluster = control.zip(queue);
        let result = serve(config, node_id, ports, Arc::new(store), cluster, shutdown).await;
        if let Some(m) = maintenance {
            let _ = m.await;
        }
        result
    }
}

async fn serve(
    config: Config,
    node_id: String,
    ports: Ports,
    shared: Arc<AnyStore>,
    cluster: Option<(Arc<control::ControlPlane>, Arc<forward_queue::ForwardQueue>)>,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let control = cluster.as_ref().map(|(plane, _)| plane.clone());
    let queue = cluster.map(|(_, queue)| queue);
    let Ports {
        grpc,
        admin,
        grpc_addr,
        admin_addr,
        security,
    } = ports;
    let metrics = Arc::new(BrokerMetrics::new());
    let serving = Arc::new(AtomicBool::new(false));

    let live = Arc::new(live::Live::new());
    let mut router = router::Router::new(
        node_id.clone(),
        shared.clone(),
        live.clone(),
        metrics.clone(),
    );
    if let (Some(plane), Some(queue)) = (&control, &queue) {
        router = router.with_cluster(router::Cluster {
            state: plane.subscribe(),
            peers: forward::Peers::new(plane.clone(), Duration::from_secs(10)),
            control: plane.clone(),
            queue: queue.clone(),
        });
    }
    let router = Arc::new(router);
    let peer_service = control.as_ref().map(|_| {
        peer_service::PeerService {
            router: router.clone(),
            max_snapshots: config.limits.query_max_snapshots,
            max_cells: config.limits.query_max_cells,
            max_batch_snapshots: config.limits.max_batch_snapshots,
        }
        .server()
    });
    let streams_done = CancellationToken::new();
    let limits = validate::Limits {
        max_batch_snapshots: config.limits.max_batch_snapshots,
        max_metrics_per_snapshot: config.limits.max_metrics_per_snapshot,
        max_future_skew_ms: config.limits.max_future_skew.as_millis() as i64,
        retention_ms: config.retention().as_millis() as i64,
    };
    let legacy = legacy::LegacyService {
        router: router.clone(),
        metrics: metrics.clone(),
        limits,
        max_snapshots: config.limits.query_max_snapshots,
        max_cells: config.limits.query_max_cells,
    };
    let ingest = ingest::IngestService {
        router: router.clone(),
        metrics: metrics.clone(),
        limits,
        streams: Arc::new(Semaphore::new(config.grpc.max_streams)),
        shutdown: streams_done.clone(),
    };
    let query = query::QueryService {
        router: router.clone(),
        metrics: metrics.clone(),
        max_snapshots: config.limits.query_max_snapshots,
        max_cells: config.limits.query_max_cells,
        stale_after_intervals: config.hosts.stale_after_intervals,
        gone_after_ms: config.hosts.gone_after.as_millis() as i64,
        live,
        shutdown: streams_done.clone(),
        control: control.clone(),
        grpc_url: config.advertised(grpc_addr, admin_addr).0,
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ringwatch_proto::ingest_server::IngestServer<ingest::IngestService>>()
        .await;
    health_reporter
        .set_serving::<ringwatch_proto::query_server::QueryServer<query::QueryService>>()
        .await;

    let max = config.grpc.max_message_bytes;
    let grpc_shutdown = shutdown.clone();
    let grpc_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(config.grpc.keepalive))
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20))
        .http2_keepalive_timeout(Some(config.grpc.keepalive_timeout))
        .max_concurrent_streams(Some(config.grpc.max_streams_per_connection))
        .layer(ringwatch_net::grpc_auth::AuthLayer::new(
            security
                .secrets
                .as_deref()
                .map(ringwatch_net::token::Verifier::new),
            access::routes,
            metrics.auth.clone(),
        ))
        .add_service(health_service)
        .add_optional_service(control.clone().map(control::RaftService::server))
        .add_optional_service(peer_service)
        .add_service(
            ringwatch_proto::ingest_server::IngestServer::new(ingest)
                .max_decoding_message_size(max),
        )
        .add_service(
            ringwatch_proto::query_server::QueryServer::new(query).max_decoding_message_size(max),
        )
        .add_service(
            ringwatch_proto::monitor::monitor_service_server::MonitorServiceServer::new(legacy)
                .max_decoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            ringwatch_net::grpc::incoming(
                grpc,
                config.grpc_limits(),
                security.tls.clone(),
                metrics.listen.listener("grpc"),
                shutdown.clone(),
            ),
            async move {
                grpc_shutdown.cancelled().await;
            },
        );

    let rate = Arc::new(capacity::Rate::default());
    let admin_state = Arc::new(admin::AdminState {
        view: ringwatch_core::ClusterView::single(
            &node_id,
            &grpc_addr.to_string(),
            &admin_addr.to_string(),
            ringwatch_core::ring::DEFAULT_VNODES,
        ),
        router: router.clone(),
        metrics: metrics.clone(),
        node_id: node_id.clone(),
        serving: serving.clone(),
        rate: rate.clone(),
        retention: config.retention(),
        control: control.clone(),
        verifier: security
            .secrets
            .as_deref()
            .map(ringwatch_net::token::Verifier::new),
    });
    capacity::log(
        &capacity::capacity(
            &shared.stats(),
            None,
            capacity::resident_bytes(),
            config.retention(),
        ),
        "start",
    );
    let capacity_task = {
        let (store, metrics, rate, retention) = (
            shared.clone(),
            metrics.clone(),
            rate.clone(),
            config.retention(),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            let started = tokio::time::Instant::now();
            let (mut first_logged, mut last_log) = (false, started);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                rate.record(metrics.samples_stored.get());
                let due = if !first_logged {
                    started.elapsed() >= Duration::from_secs(60)
                } else {
                    last_log.elapsed() >= Duration::from_secs(3600)
                };
                if due {
                    let c = capacity::capacity(
                        &store.stats(),
                        rate.per_sec(),
                        capacity::resident_bytes(),
                        retention,
                    );
                    capacity::log(
                        &c,
                        if first_logged {
                            "hourly"
                        } else {
                            "first minute"
                        },
                    );
                    first_logged = true;
                    last_log = tokio::time::Instant::now();
                }
            }
        })
    };
    let admin_server = ringwatch_net::http::serve(
        admin,
        admin::router(admin_state),
        config.admin_limits(),
        metrics.listen.listener("admin"),
        shutdown.clone(),
        Duration::from_secs(5),
    );
    ringwatch_net::warn_if_few_files(config.grpc.max_connections + config.admin.max_connections);

    let tls = if security.tls.is_some() {
        if config.grpc.tls.client_ca.is_some() {
            "mutual"
        } else {
            "on"
        }
    } else {
        "off"
    };
    let auth = security.secrets.is_some();
    if !auth {
        tracing::warn!(
            grpc = %grpc_addr,
            "gRPC authentication is OFF: anyone who can reach {grpc_addr} can read every host \
             and write as any host; give --auth-secret-file (README: Security)"
        );
    }
    tracing::info!(%node_id, grpc = %grpc_addr, admin = %admin_addr, tls, auth, "broker serving");
    serving.store(true, Ordering::Relaxed);
    let grpc_task = tokio::spawn(grpc_server);
    let admin_task = tokio::spawn(admin_server);
    let handoff = control
        .as_ref()
        .map(|_| tokio::spawn(handoff::run(router.clone(), shutdown.clone())));
    let redeliver =
        queue.map(|q| tokio::spawn(redeliver::run(router.clone(), q, shutdown.clone())));
    let detector = control.clone().map(|plane| {
        tokio::spawn(control::detector::run(
            plane,
            config.detection(),
            shutdown.clone(),
        ))
    });
    let vnodes = config.cluster.vnodes;
    let bootstraps = config.cluster.bootstrap
        || config.cluster.bootstrap_node.as_deref() == Some(node_id.as_str());
    if let Some(plane) = control.clone().filter(|_| bootstraps) {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // Until it works: the first election takes a moment, and a restart finds the
            // cluster it already belongs to.
            loop {
                match plane.bootstrap(vnodes).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster bootstrap not done yet; retrying")
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    shutdown.cancelled().await;
    serving.store(false, Ordering::Relaxed);
    // Probing agents see NOT_SERVING and prefer another broker.
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    tracing::info!("broker shutting down: ending ingest streams");
    // Streams finish the batch in hand (acknowledged batches are stored) and then end.
    streams_done.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(10), grpc_task).await;
    let grpc_result = match drained {
        Ok(Ok(r)) => r.map_err(BrokerError::from),
        Ok(Err(join)) => {
            tracing::error!(error = %join, "gRPC server task failed");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("gRPC server did not drain within 10 s; closing");
            Ok(())
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), admin_task).await;
    let _ = capacity_task.await;
    if let Some(d) = detector {
        let _ = d.await;
    }
    if let Some(h) = handoff {
        let _ = h.await;
    }
    if let Some(r) = redeliver {
        let _ = r.await;
    }
    if let Some(plane) = &control {
        plane.shutdown().await;
    }
    shared.flush().await?;
    tracing::info!("broker stopped; store flushed");
    grpc_result
}
