//! `ringwatch watch --quic ADDR`: live updates from viz over QUIC, printed as they arrive.

use std::path::PathBuf;

use anyhow::Context;
use ringwatch_viz::quic::{Client, ClientTrust};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// viz's QUIC address, host:port (e.g. 127.0.0.1:8081).
    #[arg(long)]
    pub quic: String,
    /// API token (from `ringwatch token`); not needed when viz runs with --no-auth.
    #[arg(long, env = "RINGWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificate to trust (viz's --quic-cert, or the one it wrote to --quic-cert-out).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Trust any certificate (a self-signed one on a local run): encrypted, not authenticated.
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// Only these hosts (repeat; default all).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only metrics with these name prefixes (repeat, e.g. cpu. mem.; default all).
    #[arg(long = "metric")]
    pub metrics: Vec<String>,
    /// Print each message as the JSON line viz sent.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many updates (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let (host, _) = args
        .quic
        .rsplit_once(':')
        .with_context(|| format!("--quic {:?}: use host:port", args.quic))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host(&args.quic)
        .await
        .with_context(|| format!("cannot resolve {}", args.quic))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.quic))?;
    if args.insecure && args.token.is_some() && !addr.ip().is_loopback() {
        eprintln!(
            "warning: --insecure sends your token to {addr} without checking who answers; use --ca with viz's certificate"
        );
    }
    let trust = ClientTrust {
        ca: args.ca.clone(),
        insecure: args.insecure,
    };
    let mut client = Client::subscribe(
        addr,
        host,
        &trust,
        args.token.as_deref(),
        &args.hosts,
        &args.metrics,
    )
    .await?;
    let mut updates = 0u64;
    while let Some(msg) = client.next().await {
        let v = msg?;
        if args.json {
            println!("{v}");
        } else {
            print_human(&v);
        }
        if v["type"] == "update" {
            updates += 1;
            if args.count > 0 && updates >= args.count {
                return Ok(());
            }
        }
    }
    anyhow::bail!("viz closed the stream")
}

fn print_human(v: &serde_json::Value) {
    match v["type"].as_str() {
        Some("snapshot") => {
            let hosts = v["hosts"].as_array().map_or(&[][..], Vec::as_slice);
            println!("snapshot: {} hosts", hosts.len());
            for h in hosts {
                println!("  {}", line(h));
            }
        }
        Some("update") => println!("{}", line(v)),
        Some("downsampled") => println!("(fell behind: {} updates skipped)", v["skipped"]),
        _ => println!("{v}"),
    }
}

/// `12:00:05 host-a  cpu.usage 12.3%  mem.used_percent 40.1%  …` (the first few metrics).
fn line(u: &serde_json::Value) -> String {
    let ts = u["timestamp_ms"].as_i64().unwrap_or(0).max(0) as u64;
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts),
    )
    .to_string();
    let time = at.get(11..19).unwrap_or(&at).to_string();
    let mut out = format!("{time} {}", u["host_id"].as_str().unwrap_or("?"));
    let preferred = ["cpu.usage", "mem.used_percent", "load.1"];
    let metrics = u["metrics"].as_object();
    let mut shown = 0;
    if let Some(m) = metrics {
        let names = preferred
            .iter()
            .map(|s| s.to_string())
            .filter(|n| m.contains_key(n))
            .chain(
                m.keys()
                    .filter(|k| !preferred.contains(&k.as_str()))
                    .cloned(),
            );
        for name in names.take(6) {
            let val = &m[&name];
            let unit = val["unit"].as_str().unwrap_or("");
            let num = val["value"].as_f64().unwrap_or(f64::NAN);
            out.push_str(&format!("  {name} {}", human(num, unit)));
            shown += 1;
        }
        if m.len() > shown {
            out.push_str(&format!("  (+{} more)", m.len() - shown));
        }
    }
    out
}

/// A value for a person: `12.3%`, `1.5 GiB`, `200.0 KiB/s`, `0.42`.
fn human(v: f64, unit: &str) -> String {
    let bytes = |v: f64| {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = v;
        let mut i = 0;
        while v.abs() >= 1024.0 && i < units.len() - 1 {
            v /= 1024.0;
            i += 1;
        }
        format!("{v:.1} {}", units[i])
    };
    match unit {
        "percent" => format!("{v:.1}%"),
        "bytes" => bytes(v),
        "bytes_per_second" => format!("{}/s", bytes(v)),
        "per_second" => format!("{v:.1}/s"),
        "seconds" => format!("{v:.0} s"),
        "hertz" => format!("{:.0} MHz", v / 1e6),
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn values_read_like_a_person_wrote_them() {
        assert_eq!(human(12.34, "percent"), "12.3%");
        assert_eq!(human(24_266_899_456.0, "bytes"), "22.6 GiB");
        assert_eq!(human(2048.0, "bytes_per_second"), "2.0 KiB/s");
        assert_eq!(human(2.0, "count"), "2");
        assert_eq!(human(0.4219, "load"), "0.42");
    }
}
