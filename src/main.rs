//! `ringwatch`: one binary, one container image. Dispatches the components (`agent`,
//! `broker`, `viz`), the local stack (`up`), the clients (`query`, `watch`, `token`) and the
//! load generator and its checker (`loadgen`, `verify`).

mod cluster_cmd;
mod config_file;
mod memory;
mod query_cmd;
mod up;
mod watch;

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "ringwatch",
    version,
    about = "Kubernetes-native real-time host metrics"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax); also RUST_LOG.
    #[arg(long, env = "RINGWATCH_LOG", default_value = "info", global = true)]
    log: String,
    /// Log format: text or json.
    #[arg(
        long,
        env = "RINGWATCH_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of its largest variant costs nothing.
/// What `ringwatch operator` does.
#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Run the operator: reconcile MonitorClusters (needs a Kubernetes API: in a pod its
    /// ServiceAccount, outside KUBECONFIG); /metrics, /health and /ready on --listen.
    Run {
        /// YAML config file (`listen`, `namespace`, `lease: {name, namespace, duration}`,
        /// `identity`); flags and env variables win over it.
        #[arg(long, env = "RINGWATCH_OPERATOR_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: ringwatch_operator::run::Args,
    },
    /// Print the MonitorCluster CustomResourceDefinition (`crds/monitorcluster.yaml` holds it).
    Crd,
    /// Print every object the operator would make for a MonitorCluster (with freshly generated
    /// credentials), to read or validate; `-` reads standard input.
    Render {
        /// The MonitorCluster's YAML file.
        file: PathBuf,
        /// The namespace, when the file names none.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker: ingest, storage, query, admin HTTP.
    Broker {
        /// YAML config file, nested (e.g. `storage: {retention: 1d}`, `cluster: {raft:
        /// {heartbeat: 100ms}}`); flags and env variables win over it.
        #[arg(long, env = "RINGWATCH_BROKER_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: ringwatch_broker::Args,
    },
    /// Run the node agent: collect this host's metrics and stream them to brokers.
    Agent {
        /// YAML config file, nested (e.g. `collect: {interval: 1s}`, `host: {labels: {team:
        /// infra}}`); flags and env variables win over it.
        #[arg(long, env = "RINGWATCH_AGENT_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: ringwatch_agent::Args,
    },
    /// Run viz: the dashboard snapshot and the HTTP API.
    Viz {
        /// YAML config file, nested as `/api/admin/config` shows it (e.g. `dashboard: {topk:
        /// 20, topk_ttl: 30m}`); flags and env variables win over it.
        #[arg(long, env = "RINGWATCH_VIZ_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: ringwatch_viz::Args,
    },
    /// Run a local Ringwatch: a broker with the embedded store and an agent for this machine.
    Up(up::UpArgs),
    /// Read from a broker: latest values, hosts, a host's range.
    Query(query_cmd::QueryArgs),
    /// The broker cluster's admin API: status, join, promote, drain (with hand-off), remove.
    Cluster(cluster_cmd::ClusterArgs),
    /// The operator: `ringwatch operator crd` prints the MonitorCluster CRD (YAML).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Watch live updates from viz over QUIC.
    Watch(watch::WatchArgs),
    /// Simulate many hosts streaming to brokers as agents do, and record every acknowledged
    /// snapshot in a ledger (for capacity planning and for `verify`).
    Loadgen {
        /// YAML config file (e.g. `hosts: 10000`, `interval: 1s`, `broker_client: {tls_ca:
        /// ca.pem}`); flags and env variables win over it.
        #[arg(long, env = "RINGWATCH_LOADGEN_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: ringwatch_loadgen::LoadgenArgs,
    },
    /// Read every host of a loadgen ledger back from the brokers and check that nothing
    /// acknowledged is lost, duplicated, wrong or out of order; exits 0 only then.
    Verify(ringwatch_loadgen::VerifyConfig),
    /// Mint a credential for the brokers' gRPC services (HS256, signed with the brokers'
    /// auth secret); prints it.
    BrokerToken {
        /// What it may do: ingest (agents, loadgen), query (viz, `query`, `verify`), peer
        /// (another broker: everything), admin (the cluster admin API: join, promote, drain,
        /// remove; the operator). Repeat for several.
        #[arg(long = "role", value_enum, required = true)]
        roles: Vec<ringwatch_net::token::Role>,
        /// The brokers' secret file (the first secret in it signs).
        #[arg(
            long,
            env = "RINGWATCH_BROKER_AUTH_SECRET_FILE",
            required_unless_present = "auth_secret"
        )]
        auth_secret_file: Option<PathBuf>,
        /// The secret itself (prefer RINGWATCH_BROKER_AUTH_SECRET or --auth-secret-file).
        #[arg(
            long,
            env = "RINGWATCH_BROKER_AUTH_SECRET",
            hide_env_values = true,
            conflicts_with = "auth_secret_file"
        )]
        auth_secret: Option<String>,
        /// Who the credential is for (the `sub` claim, in the brokers' logs).
        #[arg(long, default_value = "ringwatch-cli")]
        subject: String,
        /// How long it is valid (e.g. 24h, 365d; at most 3653 days).
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Mint an API token for viz (HS256, signed with the secret viz runs with); prints it.
    Token {
        /// viewer reads dashboards, metrics and live push; admin also reads viz's config.
        #[arg(long, value_enum, default_value = "viewer")]
        role: ringwatch_viz::auth::Role,
        /// The secret viz was given (prefer RINGWATCH_JWT_SECRET or --jwt-secret-file: a flag
        /// shows in `ps`).
        #[arg(
            long,
            env = "RINGWATCH_JWT_SECRET",
            hide_env_values = true,
            required_unless_present = "jwt_secret_file"
        )]
        jwt_secret: Option<String>,
        /// A file holding the secret (one trailing newline is ignored).
        #[arg(long, env = "RINGWATCH_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
        jwt_secret_file: Option<PathBuf>,
        /// Who the token is for (the `sub` claim; shown in the dashboard).
        #[arg(long, default_value = "ringwatch-cli")]
        subject: String,
        /// How long the token is valid (e.g. 1h, 7d; at most 366 days).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

fn init_logging(filter: &str, format: &str) -> anyhow::Result<()> {
    // openraft logs every failed replication to a peer that is down at ERROR, twice a second;
    // the broker's failure detection says it once (`broker silent: marking it down`). Its own
    // errors still show; name openraft in the filter to see more.
    let filter = if filter.contains("openraft") {
        filter.to_string()
    } else {
        format!("{filter},openraft=error,openraft::replication=off")
    };
    let filter = filter.as_str();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .with_context(|| format!("bad log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format {other:?}: use text or json"),
    }
    Ok(())
}

/// A token cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

/// One machine-readable line on stdout when a component is ready (tests and scripts read it).
pub fn announce(value: serde_json::Value) {
    println!("{value}");
}

/// A secret given as a flag can be read by anyone on the machine (`ps`, `/proc/PID/cmdline`):
/// say so, and where to put it instead.
fn warn_secrets_on_command_line(m: &ArgMatches) {
    let Some((command, sub)) = m.subcommand() else {
        return;
    };
    for (id, flag, instead) in [
        (
            "jwt_secret",
            "--jwt-secret",
            "--jwt-secret-file or RINGWATCH_JWT_SECRET",
        ),
        (
            "redis_password",
            "--redis-password",
            "RINGWATCH_BROKER_REDIS_PASSWORD",
        ),
        (
            "auth_secret",
            "--auth-secret",
            "--auth-secret-file or RINGWATCH_BROKER_AUTH_SECRET",
        ),
        (
            "token",
            "--broker-token",
            "--broker-token-file or RINGWATCH_CLIENT_TOKEN",
        ),
    ] {
        let given = sub.try_get_raw(id).ok().flatten().is_some();
        if given && sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            tracing::warn!(
                command,
                flag,
                "a secret was given on the command line, where anyone on this machine can read \
                 it (ps); use {instead}"
            );
        }
    }
}

/// mimalloc rather than the system's malloc: after a block cut the broker's memory goes back
/// to what it holds (see `memory.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    memory::configure();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.exit())
        .unwrap_or_else(|never| never);
    init_logging(&cli.log, &cli.log_format)?;
    warn_secrets_on_command_line(&matches);
    match cli.command {
        Command::Broker { config, args } => {
            let mut cfg = match config.as_deref().map(config_file::read_yaml).transpose()? {
                Some(file) => ringwatch_broker::Config::from_yaml_value(file)?,
                None => ringwatch_broker::Config::default(),
            };
            args.apply(&mut cfg);
            let broker = ringwatch_broker::Broker::bind(cfg).await?;
            announce(
                serde_json::json!({"event": "ready", "component": "broker", "node_id": broker.node_id(), "grpc": broker.grpc_addr().to_string(), "admin": broker.admin_addr().to_string()}),
            );
            broker.run(shutdown_on_signals()).await?;
        }
        Command::Agent { config, args } => {
            let mut cfg = match config.as_deref().map(config_file::read_yaml).transpose()? {
                Some(file) => ringwatch_agent::Config::from_yaml_value(file)?,
                None => ringwatch_agent::Config::default(),
            };
            args.apply(&mut cfg)?;
            let agent = ringwatch_agent::Agent::bind(cfg).await?;
            announce(
                serde_json::json!({"event": "ready", "component": "agent", "host_id": agent.host_id(), "metrics": agent.metrics_addr().to_string()}),
            );
            let s = agent.run(shutdown_on_signals()).await?;
            announce(
                serde_json::json!({"event": "stopped", "component": "agent", "snapshots_collected": s.snapshots_collected, "snapshots_acked": s.snapshots_acked, "snapshots_dropped": s.snapshots_dropped, "snapshots_buffered": s.snapshots_buffered}),
            );
        }
        Command::Viz { config, args } => {
            let mut cfg = match config.as_deref().map(config_file::read_yaml).transpose()? {
                Some(file) => ringwatch_viz::Config::from_yaml_value(file)?,
                None => ringwatch_viz::Config::default(),
            };
            args.apply(&mut cfg);
            let viz = ringwatch_viz::Viz::bind(cfg).await?;
            announce(
                serde_json::json!({"event": "ready", "component": "viz", "http": viz.addr().to_string(), "quic": viz.quic_addr().to_string()}),
            );
            viz.run(shutdown_on_signals()).await?;
        }
        Command::Loadgen { config, args } => {
            let mut cfg = match config.as_deref().map(config_file::read_yaml).transpose()? {
                Some(file) => ringwatch_loadgen::LoadgenConfig::from_yaml_value(file)?,
                None => ringwatch_loadgen::LoadgenConfig::default(),
            };
            args.apply(&mut cfg);
            let json = cfg.json;
            let summary = ringwatch_loadgen::run(cfg, shutdown_on_signals()).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                print!("{}", summary.text());
            }
        }
        Command::Verify(cfg) => {
            let report = ringwatch_loadgen::verify::run(&cfg).await?;
            if cfg.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.text());
            }
            if !report.ok {
                std::process::exit(1);
            }
        }
        Command::Up(args) => up::run(args, shutdown_on_signals()).await?,
        Command::Query(args) => query_cmd::run(args).await?,
        Command::Cluster(args) => cluster_cmd::run(args).await?,
        Command::Operator(OperatorCommand::Crd) => print!("{}", ringwatch_operator::crd_yaml()?),
        Command::Operator(OperatorCommand::Run { config, args }) => {
            let mut cfg = match config.as_deref().map(config_file::read_yaml).transpose()? {
                Some(file) => ringwatch_operator::run::Config::from_yaml_value(file)?,
                None => ringwatch_operator::run::Config::default(),
            };
            args.apply(&mut cfg);
            ringwatch_operator::run::run(cfg, shutdown_on_signals()).await?;
        }
        Command::Operator(OperatorCommand::Render { file, namespace }) => {
            let yaml = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            print!("{}", ringwatch_operator::render(&yaml, &namespace)?);
        }
        Command::Watch(args) => watch::run(args).await?,
        Command::BrokerToken {
            roles,
            auth_secret_file,
            auth_secret,
            subject,
            ttl,
        } => {
            let secrets = ringwatch_net::token::load_secrets(
                auth_secret.as_deref(),
                auth_secret_file.as_deref(),
            )?
            .context("give --auth-secret-file or RINGWATCH_BROKER_AUTH_SECRET")?;
            let secret = secrets.first().context("the secret is empty")?;
            println!(
                "{}",
                ringwatch_net::token::mint(secret, &subject, &roles, ttl)?
            );
        }
        Command::Token {
            role,
            jwt_secret,
            jwt_secret_file,
            subject,
            ttl,
        } => {
            let secret = match (jwt_secret, jwt_secret_file) {
                (Some(s), _) => s,
                (None, Some(path)) => ringwatch_core::read_secret_file(&path)
                    .with_context(|| format!("cannot read --jwt-secret-file {}", path.display()))?
                    .expose()
                    .to_string(),
                (None, None) => anyhow::bail!("give --jwt-secret-file or RINGWATCH_JWT_SECRET"),
            };
            println!(
                "{}",
                ringwatch_viz::auth::mint(&secret, &subject, role, ttl)?
            )
        }
    }
    Ok(())
}
