//! `ringwatch query`: latest values of every host, the host registry, or a host's range, as
//! readable tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{HostState, HostsRequest, LatestRequest, RangeRequest, Snapshot, Unit};

#[derive(Debug, clap::Args)]
#[command(mut_args(|a| a.global(true)))]
pub struct QueryArgs {
    /// Broker gRPC endpoint.
    #[arg(
        long,
        env = "RINGWATCH_BROKER",
        default_value = "http://127.0.0.1:9093",
        global = true
    )]
    pub broker: String,
    /// TLS and the credential (`--broker-tls-ca`, `--broker-token-file`, …); the `query` role.
    #[command(flatten)]
    pub client: ringwatch_net::client::BrokerClientConfig,
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// The newest values of every host.
    Latest {
        /// Metric names to show (a trailing '*' is a prefix); default: a summary set.
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
    },
    /// Every host the broker knows, with state and labels.
    Hosts,
    /// One host's snapshots over a time range.
    Range {
        #[arg(long)]
        host: String,
        /// How far back from now (e.g. 90s, 10m, 2h); ignored when --start is given.
        #[arg(long, default_value = "5m")]
        since: String,
        /// Start as RFC 3339 (e.g. 2026-11-23T10:00:00Z).
        #[arg(long)]
        start: Option<String>,
        /// End as RFC 3339 (default now).
        #[arg(long)]
        end: Option<String>,
        /// Metric names to show (a trailing '*' is a prefix); default: a summary set.
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// Most rows.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

const SUMMARY: &[&str] = &[
    "cpu.usage",
    "mem.used_percent",
    "load.1",
    "disk.used_percent",
    "net.rx_bytes_per_sec",
    "net.tx_bytes_per_sec",
    "system.processes",
];

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn time_of(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn human(value: f64, unit: Unit) -> String {
    let scaled = |v: f64, suffix: &str| {
        let units = ["", "K", "M", "G", "T", "P"];
        let mut v = v;
        let mut i = 0;
        while v.abs() >= 1024.0 && i < units.len() - 1 {
            v /= 1024.0;
            i += 1;
        }
        format!("{v:.1} {}{suffix}", units[i])
    };
    match unit {
        Unit::Bytes => scaled(value, "B"),
        Unit::BytesPerSecond => scaled(value, "B/s"),
        Unit::Percent => format!("{value:.1}%"),
        Unit::Seconds if value >= 3600.0 => format!("{:.1} h", value / 3600.0),
        Unit::Count if value.fract() == 0.0 => format!("{value:.0}"),
        u => format!("{value:.2}{}", u.suffix()),
    }
}

/// A plain text table with columns padded to their widest cell.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header);
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

fn columns(requested: &[String], snaps: &[Snapshot]) -> Vec<String> {
    if !requested.is_empty() {
        let mut cols: Vec<String> = Vec::new();
        for s in snaps {
            for m in &s.metrics {
                if !cols.contains(&m.name) {
                    cols.push(m.name.clone());
                }
            }
        }
        return cols;
    }
    SUMMARY.iter().map(|s| s.to_string()).collect()
}

fn cells(cols: &[String], s: &Snapshot) -> Vec<String> {
    cols.iter()
        .map(|c| {
            s.metrics
                .iter()
                .find(|m| &m.name == c)
                .map_or("-".into(), |m| {
                    human(m.value, Unit::try_from(m.unit).unwrap_or(Unit::Unspecified))
                })
        })
        .collect()
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let connector = ringwatch_net::client::Connector::new(&args.client)?;
    let channel = connector
        .endpoint(&args.broker)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to broker {}", args.broker))?;
    let mut client = QueryClient::new(connector.channel(channel));
    match args.what {
        What::Latest { metrics } => {
            let snaps = client
                .latest(LatestRequest {
                    metric_names: metrics.clone(),
                })
                .await?
                .into_inner()
                .snapshots;
            let cols = columns(&metrics, &snaps);
            let header: Vec<String> = ["host".to_string(), "time".to_string()]
                .into_iter()
                .chain(cols.iter().cloned())
                .collect();
            let rows: Vec<Vec<String>> = snaps
                .iter()
                .map(|s| {
                    [s.host_id.clone(), time_of(s.timestamp_ms)]
                        .into_iter()
                        .chain(cells(&cols, s))
                        .collect()
                })
                .collect();
            print!("{}", table(&header, &rows));
            if rows.is_empty() {
                println!("(no hosts have reported yet)");
            }
        }
        What::Hosts => {
            let hosts = client.hosts(HostsRequest {}).await?.into_inner().hosts;
            let header: Vec<String> = ["host", "state", "last seen", "interval", "agent", "labels"]
                .map(String::from)
                .to_vec();
            let rows: Vec<Vec<String>> = hosts
                .iter()
                .map(|h| {
                    let state = HostState::try_from(h.state).unwrap_or(HostState::Unspecified);
                    let mut labels: Vec<String> =
                        h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    vec![
                        h.host_id.clone(),
                        format!("{state:?}").to_lowercase(),
                        time_of(h.last_seen_ms),
                        format!("{}s", h.interval_ms as f64 / 1000.0),
                        h.agent_version.clone(),
                        labels.join(","),
                    ]
                })
                .collect();
            print!("{}", table(&header, &rows));
        }
        What::Range {
            host,
            since,
            start,
            end,
            metrics,
            limit,
        } => {
            let end_ms = match end {
                Some(e) => ms(humantime::parse_rfc3339_weak(&e)
                    .with_context(|| format!("--end {e:?} is not RFC 3339"))?),
                None => ms(SystemTime::now()),
            };
            let start_ms = match start {
                Some(s) => ms(humantime::parse_rfc3339_weak(&s)
                    .with_context(|| format!("--start {s:?} is not RFC 3339"))?),
                None => {
                    end_ms
                        - humantime::parse_duration(&since)
                            .with_context(|| {
                                format!("--since {since:?} is not a duration like 10m")
                            })?
                            .as_millis() as i64
                }
            };
            let mut stream = client
                .range(RangeRequest {
                    host_id: host.clone(),
                    start_ms,
                    end_ms,
                    metric_names: metrics.clone(),
                    limit,
                    sparse_ok: true,
                    step_ms: 0,
                })
                .await?
                .into_inner();
            let mut snaps = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = stream.message().await? {
                truncated |= chunk.truncated;
                snaps.extend(chunk.to_snapshots(&host));
            }
            let cols = columns(&metrics, &snaps);
            let header: Vec<String> = std::iter::once("time".to_string())
                .chain(cols.iter().cloned())
                .collect();
            let rows: Vec<Vec<String>> = snaps
                .iter()
                .map(|s| {
                    std::iter::once(time_of(s.timestamp_ms))
                        .chain(cells(&cols, s))
                        .collect()
                })
                .collect();
            print!("{}", table(&header, &rows));
            println!("({} snapshots)", rows.len());
            if truncated {
                println!(
                    "(cut short by the broker's limit of values per answer: ask from after {} for the rest)",
                    snaps
                        .last()
                        .map_or_else(String::new, |s| time_of(s.timestamp_ms))
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["a".into(), "bb".into()],
            &[vec!["long".into(), "x".into()]],
        );
        assert_eq!(t, "a     bb\nlong  x\n");
    }

    #[test]
    fn values_read_like_a_person_writes_them() {
        assert_eq!(human(1536.0, Unit::Bytes), "1.5 KB");
        assert_eq!(human(42.123, Unit::Percent), "42.1%");
        assert_eq!(human(7.0, Unit::Count), "7");
        assert_eq!(human(2048.0 * 1024.0, Unit::BytesPerSecond), "2.0 MB/s");
    }
}
