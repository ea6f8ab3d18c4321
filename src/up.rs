//! `ringwatch up`: the main job. A local Ringwatch in one process: a broker with the embedded
//! store on loopback, an agent collecting this machine's real metrics, and viz with
//! the dashboard (web UI, API, WebSocket and QUIC push). Stops on Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use ringwatch_broker::config::StoreKind;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Broker gRPC address.
    #[arg(long, default_value = "127.0.0.1:9093")]
    pub grpc: SocketAddr,
    /// Broker admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9097")]
    pub admin: SocketAddr,
    /// viz HTTP address (dashboard API).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub viz: SocketAddr,
    /// Agent /metrics address.
    #[arg(long, default_value = "127.0.0.1:9102")]
    pub agent_metrics: SocketAddr,
    /// Where the embedded store keeps its log.
    #[arg(long, default_value = ".ringwatch/data")]
    pub data_dir: PathBuf,
    /// Keep data in memory only.
    #[arg(long)]
    pub ephemeral: bool,
    /// Collection interval in seconds (1–3600).
    #[arg(long, default_value_t = 5)]
    pub interval_secs: u64,
    /// Store in this Redis server (e.g. redis://127.0.0.1:6379) instead of the embedded store.
    #[arg(long)]
    pub redis: Option<String>,
    /// viz QUIC push address (UDP).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub quic: SocketAddr,
    /// Require tokens signed with this HS256 secret (mint them with `ringwatch token`); without
    /// it the dashboard is open to anyone who can reach it, which suits a local run only.
    #[arg(long, env = "RINGWATCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The same secret from a file (one trailing newline is ignored).
    #[arg(long, env = "RINGWATCH_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
}

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Every listener shares this process's open files: the caps split them (half to the
    // broker's gRPC, a quarter to viz), so a flood meets a cap's clear refusal, not a failed
    // accept.
    let files = ringwatch_net::open_file_limit().map_or(1024, |l| l.min(1 << 20) as usize);
    let broker_cfg = ringwatch_broker::Config {
        listen: args.grpc,
        admin_listen: args.admin,
        data_dir: args.data_dir.clone(),
        ephemeral: args.ephemeral,
        node_id: Some("local-broker".into()),
        store: if args.redis.is_some() {
            StoreKind::Redis
        } else {
            StoreKind::Embedded
        },
        redis_urls: args.redis.iter().cloned().collect(),
        max_connections: (files / 2).max(64),
        admin_max_connections: 64,
        ..Default::default()
    };
    let broker = ringwatch_broker::Broker::bind(broker_cfg).await?;
    let grpc = broker.grpc_addr();
    let admin = broker.admin_addr();
    let agent_cfg = ringwatch_agent::Config {
        brokers: vec![format!("http://{grpc}")],
        interval_secs: args.interval_secs,
        metrics_listen: args.agent_metrics,
        ..Default::default()
    };
    let agent = ringwatch_agent::Agent::bind(agent_cfg).await?;
    let host = agent.host_id().to_string();
    let agent_metrics = agent.metrics_addr();
    let viz_cfg = ringwatch_viz::Config {
        listen: args.viz,
        brokers: vec![format!("http://{grpc}")],
        quic_listen: args.quic,
        no_auth: args.jwt_secret.is_none() && args.jwt_secret_file.is_none(),
        jwt_secret: args.jwt_secret.clone(),
        jwt_secret_file: args.jwt_secret_file.clone(),
        max_connections: (files / 4).max(64),
        ..Default::default()
    };
    let viz = ringwatch_viz::Viz::bind(viz_cfg).await?;
    let viz_addr = viz.addr();

    let store = match (&args.redis, args.ephemeral) {
        (Some(url), _) => format!("redis {}", ringwatch_broker::store::redis_conn::redact(url)),
        (None, true) => "embedded, memory only".to_string(),
        (None, false) => format!("embedded, {}", args.data_dir.display()),
    };
    println!("Ringwatch is up.");
    println!("  broker gRPC     http://{grpc}");
    println!("  broker admin    http://{admin}   (/health /ready /api/cluster /metrics)");
    println!("  store           {store}");
    println!(
        "  agent           host {host}, every {}s, /metrics at http://{agent_metrics}/metrics",
        args.interval_secs
    );
    println!("  dashboard       http://{viz_addr}/");
    println!("  dashboard API   http://{viz_addr}/api/dashboard   (OpenAPI: /api/openapi.json)");
    println!(
        "  live push       ws://{viz_addr}/ws   and QUIC {q}   (ringwatch watch --quic {q} --insecure)",
        q = viz.quic_addr()
    );
    if args.jwt_secret.is_some() || args.jwt_secret_file.is_some() {
        println!("  auth            tokens required: ringwatch token --role viewer");
    } else {
        println!("  auth            OFF: anyone who can reach these ports can read everything");
    }
    println!("  query           ringwatch query latest --broker http://{grpc}");
    println!("Press Ctrl-C to stop.");

    // The agent stops first (handing what it holds to the broker); then viz and the broker.
    let broker_token = CancellationToken::new();
    let broker_task = tokio::spawn(broker.run(broker_token.clone()));
    let viz_task = tokio::spawn(viz.run(broker_token.clone()));
    let agent_result = agent.run(shutdown).await;
    broker_token.cancel();
    let viz_result = viz_task.await?;
    let broker_result = broker_task.await?;
    agent_result?;
    viz_result?;
    broker_result?;
    println!("Ringwatch stopped.");
    Ok(())
}
