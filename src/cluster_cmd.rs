//! `ringwatch cluster status|join|promote|drain|remove`: the broker cluster's admin API
//! (`/api/cluster` on a broker's admin port) from the command line. Every change needs the
//! admin credential (`ringwatch broker-token --role admin`) when the brokers run with auth.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ringwatch_net::admin_client::{AdminAnswer, AdminClient};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// A broker's admin address (host:port); any member answers and changes go to the leader.
    #[arg(
        long,
        env = "RINGWATCH_ADMIN",
        default_value = "127.0.0.1:9097",
        global = true
    )]
    admin: String,
    /// The admin credential (prefer RINGWATCH_ADMIN_TOKEN or --token-file: a flag shows in
    /// `ps`).
    #[arg(
        long,
        env = "RINGWATCH_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the admin credential.
    #[arg(
        long,
        env = "RINGWATCH_ADMIN_TOKEN_FILE",
        conflicts_with = "token",
        global = true
    )]
    token_file: Option<PathBuf>,
    /// Print the broker's JSON answer as it is.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ClusterCommand {
    /// Members with their ring state and Raft role, the leader, term, ring epoch, hosts per
    /// owner and hand-offs.
    Status,
    /// Add a broker as a learner (`joining`); with --promote, a voter in the ring once caught up.
    Join {
        /// The new broker's node id.
        #[arg(long)]
        id: String,
        /// Its gRPC URL, as the other brokers reach it (http://host:port).
        #[arg(long)]
        grpc: String,
        /// Its admin address (host:port).
        #[arg(long = "admin-addr")]
        admin_addr: String,
        #[arg(long)]
        promote: bool,
    },
    /// Make a caught-up learner a voter and put it in the ring.
    Promote { id: String },
    /// Take a broker out of the ring; it hands its hosts' data off to their new owners.
    Drain {
        id: String,
        /// Wait until its hand-off is done (progress on stderr).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Remove a broker from the cluster and Raft's voters: once drained, or with --force.
    Remove {
        id: String,
        /// Remove it whatever its state (a dead broker's data is lost unless it comes back).
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading --token-file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        _ => None,
    };
    let api = Api {
        client: AdminClient::new(&args.admin, token),
        json: args.json,
    };
    let member = AdminClient::member_path;
    match args.command {
        ClusterCommand::Status => {
            let body = api.call("GET", "/api/cluster", None).await?.ok()?;
            if args.json {
                println!("{body:#}");
            } else {
                print!("{}", render_status(&body));
            }
        }
        ClusterCommand::Join {
            id,
            grpc,
            admin_addr,
            promote,
        } => {
            let req = serde_json::json!({"id": id, "grpc_addr": grpc, "admin_addr": admin_addr});
            api.change(
                "POST",
                "/api/cluster/join",
                Some(req),
                &format!("{id} joined as a learner"),
            )
            .await?;
            if promote {
                api.promote(&id, &member(&id, "/promote")).await?;
            }
        }
        ClusterCommand::Promote { id } => api.promote(&id, &member(&id, "/promote")).await?,
        ClusterCommand::Drain { id, wait, timeout } => {
            let done = format!("{id} draining: out of the ring, handing its hosts off");
            api.change("POST", &member(&id, "/drain"), None, &done)
                .await?;
            if wait {
                wait_drained(&api, &id, timeout).await?;
            }
        }
        ClusterCommand::Remove { id, force } => {
            let path = member(&id, if force { "?force=true" } else { "" });
            let done = format!("{id} removed from the cluster");
            api.change("DELETE", &path, None, &done).await?;
        }
    }
    Ok(())
}

/// Waits until `id` is drained, printing its hand-off's progress.
async fn wait_drained(api: &Api, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let c = api.call("GET", "/api/cluster", None).await?.ok()?;
        let m = c["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == id))
            .cloned()
            .with_context(|| format!("no member {id:?}"))?;
        let state = m["state"].as_str().unwrap_or_default().to_string();
        let h = &m["handoff"];
        let line = if h.is_null() {
            format!("{id}: {state}")
        } else {
            format!(
                "{id}: {state}, {} of {} hosts and {} of {} bytes left to hand off",
                h["hosts_left"], h["hosts_total"], h["bytes_left"], h["bytes_total"]
            )
        };
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        match state.as_str() {
            "drained" | "left" => {
                println!("{id} drained: its hosts' data is at their new owners; remove it now");
                return Ok(());
            }
            "draining" => {}
            other => bail!("{id} is {other}, not draining"),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{id} is not drained after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The status as a table.
fn render_status(c: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        v => v.to_string(),
    };
    out.push_str(&format!(
        "leader {}  term {}  ring epoch {}  mode {}\n",
        s(&c["leader"]),
        s(&c["term"]),
        s(&c["ring_epoch"]),
        s(&c["mode"])
    ));
    out.push_str(&format!(
        "{:<20} {:<9} {:<8} {:>6}  {:<26} {}\n",
        "MEMBER", "STATE", "ROLE", "HOSTS", "HAND-OFF", "GRPC"
    ));
    for m in c["members"].as_array().into_iter().flatten() {
        let id = s(&m["id"]);
        let hosts = c["hosts_per_owner"][&id]
            .as_u64()
            .map_or("—".into(), |n| n.to_string());
        let h = &m["handoff"];
        let handoff = if h.is_null() {
            "—".to_string()
        } else if h["done"] == true {
            format!("done ({} hosts)", s(&h["hosts_total"]))
        } else {
            format!(
                "{} hosts, {} B left",
                s(&h["hosts_left"]),
                s(&h["bytes_left"])
            )
        };
        out.push_str(&format!(
            "{:<20} {:<9} {:<8} {:>6}  {:<26} {}\n",
            id,
            s(&m["state"]),
            s(&m["role"]),
            hosts,
            handoff,
            s(&m["grpc_addr"])
        ));
    }
    out
}

struct Api {
    client: AdminClient,
    /// Print answers as the broker's JSON.
    json: bool,
}

impl Api {
    /// A change through the admin API: the broker's JSON answer, or `done` and the ring epoch.
    async fn change(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        done: &str,
    ) -> anyhow::Result<()> {
        let body = self.call(method, path, body).await?.ok()?;
        if self.json {
            println!("{body}");
        } else {
            let epoch = body["epoch"]
                .as_u64()
                .map_or(String::new(), |e| format!(" (ring epoch {e})"));
            println!("{done}{epoch}");
        }
        Ok(())
    }

    async fn promote(&self, id: &str, path: &str) -> anyhow::Result<()> {
        let done = format!("{id} promoted: a voter, in the ring");
        self.change("POST", path, None, &done).await
    }

    /// One request to the broker's admin port; its status and JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<AdminAnswer> {
        Ok(self.client.call(method, path, body).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_names_each_member_with_its_state_role_hosts_and_hand_off() {
        let c = serde_json::json!({
            "leader": "b0", "term": 3, "ring_epoch": 5, "mode": "raft",
            "hosts_per_owner": {"b0": 12, "b1": 9},
            "members": [
                {"id": "b0", "state": "active", "role": "leader", "grpc_addr": "http://a:1", "handoff": null},
                {"id": "b2", "state": "draining", "role": "voter", "grpc_addr": "http://c:1",
                 "handoff": {"done": false, "hosts_left": 4, "bytes_left": 1000, "hosts_total": 8}}
            ]
        });
        let t = render_status(&c);
        assert!(
            t.starts_with("leader b0  term 3  ring epoch 5  mode raft\n"),
            "{t}"
        );
        let b0 = t.lines().find(|l| l.starts_with("b0 ")).unwrap();
        assert!(
            b0.contains("active") && b0.contains("leader") && b0.contains(" 12 "),
            "{b0}"
        );
        let b2 = t.lines().find(|l| l.starts_with("b2 ")).unwrap();
        assert!(
            b2.contains("4 hosts, 1000 B left") && b2.contains(" — "),
            "{b2}"
        );
    }
}
