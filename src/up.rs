//! `ringwatch up`: the main job. A local Ringwatch in one process: a broker with the embedded
//! store on loopback, an agent collecting this machine's real metrics, and viz with
//! the dashboard (web UI, API, WebSocket and QUIC push). Stops on Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ringwatch_broker::config::StoreKind;
use ringwatch_net::client::BrokerClientConfig;
use ringwatch_net::tls::LocalCa;
use ringwatch_net::token::Role;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// How many brokers: more than one form a Raft cluster (the first starts it, the others
    /// join and are promoted; hosts are spread over them by the ring). 1 with --ephemeral.
    #[arg(long, default_value_t = 3)]
    pub brokers: usize,
    /// Broker gRPC address (of the first broker; the others take the next ports).
    #[arg(long, default_value = "127.0.0.1:9093")]
    pub grpc: SocketAddr,
    /// Broker admin HTTP address (of the first broker; the others take the next ports).
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
    /// Where the broker's TLS certificates, its auth secret and the credentials for the CLI
    /// are generated at each start (keys readable by the owner only).
    #[arg(long, default_value = ".ringwatch/secrets")]
    pub secrets_dir: PathBuf,
    /// Serve gRPC in plaintext with no credentials (anyone who reaches the port reads and
    /// writes everything).
    #[arg(long)]
    pub insecure_grpc: bool,
}

/// What `up` generated so its broker needs TLS and credentials and its agent and viz have them.
struct LocalSecurity {
    ca: LocalCa,
    auth_secret: PathBuf,
    ingest_token: PathBuf,
    query_token: PathBuf,
}

/// A fresh CA and broker certificate for `dial` (and localhost), a random auth secret, and
/// an ingest and a query credential signed with it, in `dir`.
fn generate_security(dir: &Path, dial: IpAddr) -> anyhow::Result<LocalSecurity> {
    let names = vec!["localhost".to_string(), dial.to_string()];
    let ca = ringwatch_net::tls::write_local_ca(dir, &names)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let auth_secret = write_private(&dir.join("auth-secret"), &secret)?;
    let ttl = std::time::Duration::from_secs(30 * 24 * 3600);
    let mint = |role: Role, who: &str| ringwatch_net::token::mint(&secret, who, &[role], ttl);
    let ingest_token = write_private(
        &dir.join("ingest.token"),
        &mint(Role::Ingest, "local-agent")?,
    )?;
    let query_token = write_private(&dir.join("query.token"), &mint(Role::Query, "local-cli")?)?;
    Ok(LocalSecurity {
        ca,
        auth_secret,
        ingest_token,
        query_token,
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    ringwatch_net::tls::write_file(path, text, true)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Every listener shares this process's open files: the caps split them (half to the
    // broker's gRPC, a quarter to viz), so a flood meets a cap's clear refusal, not a failed
    // accept.
    let files = ringwatch_net::open_file_limit().map_or(1024, |l| l.min(1 << 20) as usize);
    // The address the agent and viz dial (an unspecified bind is reached on loopback).
    let dial = if args.grpc.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        args.grpc.ip()
    };
    let security = if args.insecure_grpc {
        None
    } else {
        Some(generate_security(&args.secrets_dir, dial)?)
    };
    let client = |token: fn(&LocalSecurity) -> &PathBuf| {
        security
            .as_ref()
            .map(|s| BrokerClientConfig {
                tls_ca: Some(s.ca.ca.clone()),
                token_file: Some(token(s).clone()),
                ..Default::default()
            })
            .unwrap_or_default()
    };
    let count = if args.ephemeral { 1 } else { args.brokers };
    if count == 0 || count > 9 {
        anyhow::bail!("--brokers {}: 1 to 9", args.brokers);
    }
    let cluster = count > 1;
    let next = |a: SocketAddr, i: usize| {
        if a.port() == 0 {
            a
        } else {
            SocketAddr::new(a.ip(), a.port() + i as u16)
        }
    };
    let mut brokers = Vec::with_capacity(count);
    for i in 0..count {
        let data_dir = if i == 0 {
            args.data_dir.clone()
        } else {
            let mut name = args.data_dir.as_os_str().to_owned();
            name.push(format!("-broker-{i}"));
            PathBuf::from(name)
        };
        let mut broker_cfg = ringwatch_broker::Config::default();
        broker_cfg.grpc.listen = next(args.grpc, i);
        broker_cfg.admin.listen = next(args.admin, i);
        broker_cfg.node.data_dir = data_dir;
        broker_cfg.node.ephemeral = args.ephemeral;
        broker_cfg.node.id = Some(if cluster {
            format!("local-broker-{i}")
        } else {
            "local-broker".into()
        });
        // form_cluster starts the cluster through the first broker (no bootstrap).
        broker_cfg.cluster.enabled = cluster;
        broker_cfg.storage.kind = if args.redis.is_some() {
            StoreKind::Redis
        } else {
            StoreKind::Embedded
        };
        broker_cfg.storage.redis.urls = args.redis.iter().cloned().collect();
        broker_cfg.grpc.max_connections = (files / 2 / count).max(64);
        broker_cfg.admin.max_connections = 64;
        broker_cfg.grpc.tls.cert = security.as_ref().map(|s| s.ca.server_cert.clone());
        broker_cfg.grpc.tls.key = security.as_ref().map(|s| s.ca.server_key.clone());
        broker_cfg.cluster.peer_tls_ca = security.as_ref().map(|s| s.ca.ca.clone());
        broker_cfg.grpc.auth.secret_file = security.as_ref().map(|s| s.auth_secret.clone());
        brokers.push(ringwatch_broker::Broker::bind(broker_cfg).await?);
    }
    let scheme = if security.is_some() { "https" } else { "http" };
    let urls: Vec<String> = brokers
        .iter()
        .map(|b| format!("{scheme}://{}", SocketAddr::new(dial, b.grpc_addr().port())))
        .collect();
    let grpc = brokers[0].grpc_addr();
    let admin = brokers[0].admin_addr();
    let grpc_url = urls[0].clone();
    let planes: Vec<_> = brokers.iter().filter_map(|b| b.control()).collect();
    let broker_token = CancellationToken::new();
    let broker_tasks: Vec<_> = brokers
        .into_iter()
        .map(|b| tokio::spawn(b.run(broker_token.clone())))
        .collect();
    if let Some((first, rest)) = planes.split_first() {
        form_cluster(first, rest).await?;
    }
    let mut agent_cfg = ringwatch_agent::Config::default();
    agent_cfg.brokers.endpoints = urls.clone();
    agent_cfg.brokers.client = client(|s| &s.ingest_token);
    agent_cfg.collect.interval = std::time::Duration::from_secs(args.interval_secs);
    agent_cfg.metrics.listen = args.agent_metrics;
    let agent = ringwatch_agent::Agent::bind(agent_cfg).await?;
    let host = agent.host_id().to_string();
    let agent_metrics = agent.metrics_addr();
    let mut viz_cfg = ringwatch_viz::Config::default();
    viz_cfg.http.listen = args.viz;
    viz_cfg.http.max_connections = (files / 4).max(64);
    viz_cfg.brokers.endpoints = urls.clone();
    viz_cfg.brokers.client = client(|s| &s.query_token);
    viz_cfg.push.quic.listen = args.quic;
    viz_cfg.auth.no_auth = args.jwt_secret.is_none() && args.jwt_secret_file.is_none();
    viz_cfg.auth.jwt_secret = args.jwt_secret.clone().map(ringwatch_core::Secret::from);
    viz_cfg.auth.jwt_secret_file = args.jwt_secret_file.clone();
    let viz = ringwatch_viz::Viz::bind(viz_cfg).await?;
    let viz_addr = viz.addr();

    let store = match (&args.redis, args.ephemeral) {
        (Some(url), _) => format!("redis {}", ringwatch_broker::store::redis_conn::redact(url)),
        (None, true) => "embedded, memory only".to_string(),
        (None, false) => format!("embedded, {}", args.data_dir.display()),
    };
    println!("Ringwatch is up.");
    println!("  broker gRPC     {grpc_url}");
    println!("  broker admin    http://{admin}   (/health /ready /api/cluster /metrics)");
    if cluster {
        println!(
            "  cluster         {count} brokers agreeing through Raft, hosts spread by the ring: {}",
            urls.join(" ")
        );
    }
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
        println!("  dashboard auth  tokens required: ringwatch token --role viewer");
    } else {
        println!(
            "  dashboard auth  OFF: anyone who can reach the dashboard, /ws or QUIC reads everything"
        );
    }
    match &security {
        Some(s) => {
            println!(
                "  gRPC security   TLS (CA {}) and credentials (ingest: {}, query: {}); \
                 generated in {}",
                s.ca.ca.display(),
                s.ingest_token.display(),
                s.query_token.display(),
                args.secrets_dir.display()
            );
            println!(
                "  query           ringwatch query latest --broker {grpc_url} --broker-tls-ca {} --broker-token-file {}",
                s.ca.ca.display(),
                s.query_token.display()
            );
        }
        None => {
            println!(
                "  gRPC security   OFF (--insecure-grpc): anyone who can reach {grpc} reads and writes"
            );
            println!("  query           ringwatch query latest --broker {grpc_url}");
        }
    }
    println!("Press Ctrl-C to stop.");

    // The agent stops first (handing what it holds to the brokers); then viz and the brokers.
    let viz_task = tokio::spawn(viz.run(broker_token.clone()));
    let agent_result = agent.run(shutdown).await;
    broker_token.cancel();
    let viz_result = viz_task.await?;
    let mut broker_result = Ok(());
    for t in broker_tasks {
        let r = t.await?;
        if broker_result.is_ok() {
            broker_result = r;
        }
    }
    agent_result?;
    viz_result?;
    broker_result?;
    println!("Ringwatch stopped.");
    Ok(())
}

/// Forms the local cluster: `first` starts it (it was given --bootstrap), each of `rest` joins
/// as a learner and is promoted once caught up. A restart finds them members already.
async fn form_cluster(
    first: &std::sync::Arc<ringwatch_broker::control::ControlPlane>,
    rest: &[std::sync::Arc<ringwatch_broker::control::ControlPlane>],
) -> anyhow::Result<()> {
    use ringwatch_broker::control::ControlOp;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match first
            .bootstrap(ringwatch_broker::config::ClusterConfig::default().vnodes)
            .await
        {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the first broker to lead");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!("the local cluster did not start: {e}"),
        }
    }
    for plane in rest {
        let node = plane.me().clone();
        let id = node.name.clone();
        first
            .execute(ControlOp::Join { node })
            .await
            .with_context(|| format!("{id} could not join the local cluster"))?;
        first
            .execute(ControlOp::Promote { id: id.clone() })
            .await
            .with_context(|| format!("{id} could not be promoted"))?;
    }
    Ok(())
}
