//! The reconciler: kube's runtime `Controller` over MonitorClusters and what they own.
//!
//! One reconcile, under the `ringwatch.dev/teardown` finalizer:
//! 1. reads the credentials back from their Secrets (generating what is missing);
//! 2. reads the broker pods and asks a broker's admin API for the cluster's view, and lets
//!    [`membership::decide`] name one step, which it takes (an admin call, or deleting one
//!    outdated pod);
//! 3. applies every child ([`children::build`]) with server-side apply under one field manager
//!    (while brokers are being replaced, the agents' and viz's workloads wait: one tier at a
//!    time), and deletes the children it owns that are no longer built;
//! 4. writes the status (phase, conditions, counts, leader, ring) and an Event for each change.
//!
//! A failure is written to the status (Degraded, with the reason) and retried with back-off.
//! On deletion it stops the agents, viz and brokers in that order; the owner references remove
//! the rest (volumes are kept: `whenDeleted: Retain`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Client, Resource, ResourceExt};
use ringwatch_net::admin_client::AdminClient;
use ringwatch_net::token::{Role, mint};

use crate::children::{self, BrokerPlan, Capabilities, Kind};
use crate::crd::{MonitorCluster, ReadyCounts};
use crate::material::{Existing, Material};
use crate::membership::{self, ClusterView, PodView, Step};
use crate::metrics::Metrics;
use crate::names::{BROKER_ADMIN_PORT, BROKER_GRPC_PORT, FIELD_MANAGER, FINALIZER, Names, Tier};
use crate::status::{self, Observed};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the spec cannot be built: {0}")]
    Build(#[from] children::BuildError),
    #[error("credentials: {0}")]
    Material(#[from] crate::material::MaterialError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("the MonitorCluster has no namespace")]
    NoNamespace,
}

impl Error {
    /// The reason counted in `/metrics` and written to the Degraded condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Api { .. } => "ApiError",
            Error::Build(_) | Error::NoNamespace => "InvalidSpec",
            Error::Material(_) => "CredentialsFailed",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }
}

/// Every Kubernetes API call the operator makes, as RBAC sees it: (API group, resource, verb).
/// The chart must grant each (`tests/chart.rs`); the reconcile tests fail on a call not listed.
/// `list` and `watch` of the owned kinds are the runtime Controller's; `create` of children is
/// what server-side apply needs to make one; leases are the leader election's.
pub const API_CALLS: &[(&str, &str, &str)] = &[
    ("ringwatch.dev", "monitorclusters", "get"),
    ("ringwatch.dev", "monitorclusters", "list"),
    ("ringwatch.dev", "monitorclusters", "watch"),
    ("ringwatch.dev", "monitorclusters", "patch"),
    ("ringwatch.dev", "monitorclusters/status", "patch"),
    ("", "secrets", "get"),
    ("", "pods", "list"),
    ("", "pods", "delete"),
    ("apps", "statefulsets", "get"),
    ("apps", "daemonsets", "get"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "patch"),
    // Every child kind: applied (patch, create), listed for orphans, deleted, watched.
    ("", "secrets", "patch"),
    ("", "secrets", "create"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("", "secrets", "delete"),
    ("", "configmaps", "patch"),
    ("", "configmaps", "create"),
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
    ("", "configmaps", "delete"),
    ("", "serviceaccounts", "patch"),
    ("", "serviceaccounts", "create"),
    ("", "serviceaccounts", "list"),
    ("", "serviceaccounts", "delete"),
    ("", "services", "patch"),
    ("", "services", "create"),
    ("", "services", "list"),
    ("", "services", "watch"),
    ("", "services", "delete"),
    ("apps", "statefulsets", "patch"),
    ("apps", "statefulsets", "create"),
    ("apps", "statefulsets", "list"),
    ("apps", "statefulsets", "watch"),
    ("apps", "statefulsets", "delete"),
    ("apps", "daemonsets", "patch"),
    ("apps", "daemonsets", "create"),
    ("apps", "daemonsets", "list"),
    ("apps", "daemonsets", "watch"),
    ("apps", "daemonsets", "delete"),
    ("policy", "poddisruptionbudgets", "patch"),
    ("policy", "poddisruptionbudgets", "create"),
    ("policy", "poddisruptionbudgets", "list"),
    ("policy", "poddisruptionbudgets", "delete"),
    ("networking.k8s.io", "networkpolicies", "patch"),
    ("networking.k8s.io", "networkpolicies", "create"),
    ("networking.k8s.io", "networkpolicies", "list"),
    ("networking.k8s.io", "networkpolicies", "delete"),
    ("monitoring.coreos.com", "podmonitors", "patch"),
    ("monitoring.coreos.com", "podmonitors", "create"),
    ("monitoring.coreos.com", "podmonitors", "list"),
    ("monitoring.coreos.com", "podmonitors", "delete"),
];

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// Where the operator reaches a broker's admin port.
#[derive(Debug, Clone)]
pub enum AdminReach {
    /// `<pod>.<headless service>.<namespace>.svc:9097`, as in a cluster.
    Dns,
    /// Every broker at this one address (tests, or a port-forward).
    Fixed(String),
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub admin: AdminReach,
    /// Consecutive failures per MonitorCluster, for the back-off.
    failures: Mutex<HashMap<String, u32>>,
    /// How long an admin call may take before the broker counts as not answering.
    pub admin_timeout: Duration,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        identity: &str,
        admin: AdminReach,
    ) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.into()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            admin,
            failures: Mutex::new(HashMap::new()),
            admin_timeout: Duration::from_secs(5),
        }
    }

    fn admin_addr(&self, names: &Names, pod: &str) -> String {
        match &self.admin {
            AdminReach::Dns => format!("{}:{BROKER_ADMIN_PORT}", names.broker_host(pod)),
            AdminReach::Fixed(a) => a.clone(),
        }
    }

    fn failure_count(&self, key: &str, failed: bool) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failed {
            let n = f.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        } else {
            f.remove(key);
            0
        }
    }
}

/// The requeue after `n` consecutive failures: 5 s doubling to 5 min.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

fn key(mc: &MonitorCluster) -> String {
    format!("{}/{}", mc.namespace().unwrap_or_default(), mc.name_any())
}

/// The controller's reconcile: [`apply`] or [`cleanup`] under the finalizer.
#[tracing::instrument(skip_all, fields(mc = %key(&mc)))]
pub async fn reconcile(mc: Arc<MonitorCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = mc.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<MonitorCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let started = Instant::now();
    let result = finalizer(&api, FINALIZER, mc.clone(), |event| async {
        match event {
            Finalizer::Apply(mc) => apply(mc, ctx.clone()).await,
            Finalizer::Cleanup(mc) => cleanup(mc, ctx.clone()).await,
        }
    })
    .await;
    ctx.metrics.reconciled(started.elapsed().as_secs_f64());
    let result = result.map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    if result.is_ok() {
        ctx.failure_count(&key(&mc), false);
    }
    result
}

/// After a failed reconcile: counted, logged, retried with back-off.
pub fn error_policy(mc: Arc<MonitorCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.reason());
    let n = ctx.failure_count(&key(&mc), true);
    let wait = backoff(n);
    tracing::warn!(mc = %key(&mc), %error, failures = n, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Makes the cluster what `mc` says.
async fn apply(mc: Arc<MonitorCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = mc.namespace().ok_or(Error::NoNamespace)?;
    let names = Names::new(&mc.name_any(), &ns);
    let mut observed = Observed {
        generation: mc.metadata.generation,
        ..Observed::default()
    };
    let result = converge(&mc, &ctx, &names, &mut observed).await;
    if let Err(e) = &result {
        observed.error = Some((e.reason().to_string(), e.to_string()));
    }
    let status = status::compute(&observed, mc.status.as_ref());
    let phase_changed = mc.status.as_ref().and_then(|s| s.phase) != status.phase;
    let api: Api<MonitorCluster> = Api::namespaced(ctx.client.clone(), &ns);
    // A merge patch keeps what it leaves out: what is no longer known is written as null.
    let mut written = serde_json::to_value(&status).unwrap_or_default();
    if let Some(fields) = written.as_object_mut() {
        for key in [
            "phase",
            "brokers",
            "leader",
            "term",
            "ringEpoch",
            "observedGeneration",
            "membership",
        ] {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({"status": written});
    api.patch_status(
        &mc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(api_err("writing the status"))?;
    if phase_changed && let Some(phase) = status.phase {
        let warning = matches!(
            phase,
            crate::crd::Phase::Degraded | crate::crd::Phase::Failed
        );
        publish(
            &ctx,
            &mc,
            warning,
            &format!("{phase:?}"),
            "Phase",
            status_note(&status),
        )
        .await;
    }
    let step = result?;
    Ok(match step {
        Step::Done => Action::requeue(Duration::from_secs(60)),
        _ => Action::requeue(Duration::from_secs(5)),
    })
}

fn status_note(s: &crate::crd::MonitorClusterStatus) -> String {
    s.conditions
        .iter()
        .filter(|c| c.status == "True")
        .map(|c| format!("{}: {}", c.type_, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Steps 1–3 of a reconcile; fills `observed` as it goes.
async fn converge(
    mc: &MonitorCluster,
    ctx: &Context,
    names: &Names,
    observed: &mut Observed,
) -> Result<Step, Error> {
    let client = &ctx.client;
    let ns = &names.namespace;

    // 1. Credentials.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut existing = Existing::new();
    let generated = [
        names.auth_secret(),
        names.token_secret(Tier::Agent),
        names.token_secret(Tier::Viz),
        names.viz_auth_secret(),
        names.tls_secret(),
    ];
    for name in generated
        .into_iter()
        .chain(crate::material::spec_secret_refs(mc))
    {
        if let Some(s) = secrets
            .get_opt(&name)
            .await
            .map_err(api_err(format!("reading Secret {name}")))?
        {
            let data: BTreeMap<String, String> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
                .collect();
            existing.insert(name, data);
        }
    }
    let material = Material::resolve(mc, names, &existing)?;
    let caps = Capabilities {
        pod_monitor: has_pod_monitor(client).await,
    };

    // 2. Brokers and membership.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let broker_sts = sts_api
        .get_opt(&names.tier(Tier::Broker))
        .await
        .map_err(api_err("reading the broker StatefulSet"))?;
    let current_replicas = broker_sts
        .as_ref()
        .and_then(|s| s.spec.replicas)
        .unwrap_or(0)
        .max(0) as u32;
    let update_revision = broker_sts
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = names
        .selector(Tier::Broker)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_err("listing broker pods"))?;
    let views: Vec<PodView> = pods
        .items
        .iter()
        .filter_map(|p| pod_view(names, p, update_revision.as_deref()))
        .collect();
    let token = mint(
        material.signing_secret(),
        "ringwatch-operator",
        &[Role::Admin, Role::Query],
        Duration::from_secs(3600),
    )
    .map_err(|e| crate::material::MaterialError::Mint(e.to_string()))?;
    let cluster = cluster_view(ctx, names, &views, &token).await;
    let desired = mc.spec.broker.replicas.max(1) as u32;
    let decision = membership::decide(
        names,
        desired,
        current_replicas,
        &views,
        cluster.as_ref().map(|(_, c)| c),
    );
    observed.cluster = cluster.as_ref().map(|(_, c)| c.clone());
    observed.step = Some(decision.step.clone());
    take_step(
        mc,
        ctx,
        names,
        &decision.step,
        cluster.as_ref().map(|(a, _)| a.as_str()),
        &token,
    )
    .await?;

    // What runs now (before this pass's changes land), so a failure below still reports it.
    observed.ready = ready_counts(ctx, names, mc).await?;

    // 3. Children.
    let plan = BrokerPlan {
        replicas: decision.replicas as i32,
    };
    let built = children::build(mc, &material, plan, caps)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // One tier at a time: while the brokers move to a new template (this pass's, or one their
    // pods do not run yet), the agents and viz keep theirs, and the config and credentials they
    // read; those reach them once every broker is done.
    let brokers_rolling = broker_template_moves(broker_sts.as_ref(), &built, names)
        || views.iter().any(|p| !p.current);
    let client_tiers = [
        (Kind::DaemonSet, names.tier(Tier::Agent)),
        (Kind::StatefulSet, names.tier(Tier::Viz)),
        (Kind::ConfigMap, names.tier(Tier::Agent)),
        (Kind::ConfigMap, names.tier(Tier::Viz)),
        (Kind::Secret, names.token_secret(Tier::Agent)),
        (Kind::Secret, names.token_secret(Tier::Viz)),
        (Kind::Secret, names.viz_auth_secret()),
    ];
    let held = |c: &children::Child| {
        brokers_rolling
            && client_tiers
                .iter()
                .any(|(k, n)| *k == c.kind && *n == c.name)
    };
    for child in built.iter().filter(|c| !held(c)) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &child.kind.api_resource());
        api.patch(&child.name, &params, &Patch::Apply(&child.object))
            .await
            .map_err(api_err(format!(
                "applying {} {}",
                child.kind.kind(),
                child.name
            )))?;
    }
    delete_orphans(mc, ctx, names, &built, caps).await?;
    Ok(decision.step)
}

/// Whether the broker StatefulSet is moving to a new template: the one built now differs from
/// the live one (config hash or image), or its controller has not caught up with it yet.
fn broker_template_moves(
    live: Option<&StatefulSet>,
    built: &[children::Child],
    names: &Names,
) -> bool {
    let Some(live) = live else { return false };
    let Some(built) = built
        .iter()
        .find(|c| c.kind == Kind::StatefulSet && c.name == names.tier(Tier::Broker))
    else {
        return false;
    };
    let live_template = serde_json::to_value(&live.spec.template).unwrap_or_default();
    let built_template = &built.object["spec"]["template"];
    let differs = |path: &[&str]| {
        let pick = |v: &serde_json::Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
        pick(&live_template) != pick(built_template)
    };
    let behind = live
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .zip(live.metadata.generation)
        .is_some_and(|(seen, now)| seen < now);
    differs(&["metadata", "annotations", crate::names::CONFIG_HASH])
        || live_template["spec"]["containers"][0]["image"]
            != built_template["spec"]["containers"][0]["image"]
        || behind
}

/// A broker pod as membership reads it.
fn pod_view(names: &Names, pod: &Pod, update_revision: Option<&str>) -> Option<PodView> {
    let ordinal = names.broker_ordinal(&pod.name_any())?;
    let status = pod.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let started = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .is_some_and(|c| c.started == Some(true));
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let revision = pod
        .labels()
        .get("controller-revision-hash")
        .map(String::as_str);
    Some(PodView {
        ordinal,
        alive: running && started && pod.metadata.deletion_timestamp.is_none(),
        ready,
        current: update_revision.is_none() || revision == update_revision,
    })
}

/// `/api/cluster` from every live broker, at once; the view that knows a leader and the most
/// members wins (a broker that lost its volume and started a cluster of its own is outvoted by
/// the others' view), with its admin address.
async fn cluster_view(
    ctx: &Context,
    names: &Names,
    pods: &[PodView],
    token: &str,
) -> Option<(String, ClusterView)> {
    let asks = pods.iter().filter(|p| p.alive).map(|p| {
        let addr = ctx.admin_addr(names, &names.broker_pod(p.ordinal));
        let client = AdminClient::new(&addr, Some(token.to_string()))
            .with_timeouts(ctx.admin_timeout, ctx.admin_timeout);
        async move {
            match client.cluster().await {
                Ok(v) => Some((addr, ClusterView::from_json(&v))),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "broker admin API not answering");
                    None
                }
            }
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .max_by_key(|(_, c)| {
            let members = c.members.iter().filter(|m| m.state != "left").count();
            (c.leader.is_some(), members, c.term.unwrap_or(0))
        })
}

/// Takes a membership step: an admin call through the broker that answered, or deleting one
/// outdated pod. A refused step is logged and retried next pass.
async fn take_step(
    mc: &MonitorCluster,
    ctx: &Context,
    names: &Names,
    step: &Step,
    admin: Option<&str>,
    token: &str,
) -> Result<(), Error> {
    if !step.is_change() {
        return Ok(());
    }
    ctx.metrics.step(step.action());
    let outcome = match step {
        Step::Roll { id } => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            pods.delete(id, &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => match admin {
            Some(addr) => {
                let client = AdminClient::new(addr, Some(token.to_string()));
                let scheme = if mc.spec.tls.enabled { "https" } else { "http" };
                let grpc =
                    |id: &str| format!("{scheme}://{}:{BROKER_GRPC_PORT}", names.broker_host(id));
                let admin_addr =
                    |id: &str| format!("{}:{BROKER_ADMIN_PORT}", names.broker_host(id));
                membership::apply(&client, step, grpc, admin_addr)
                    .await
                    .map_err(|e| e.to_string())
            }
            None => Err("no broker answers".into()),
        },
    };
    match outcome {
        Ok(()) => {
            tracing::info!(step = %step.describe(), "membership step taken");
            publish(
                ctx,
                mc,
                false,
                capitalised(step.action()),
                "Membership",
                step.describe(),
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(step = %step.describe(), error = %e, "membership step refused; retrying");
            publish(
                ctx,
                mc,
                true,
                "StepRefused",
                "Membership",
                format!("{}: {e}", step.describe()),
            )
            .await;
        }
    }
    Ok(())
}

fn capitalised(s: &str) -> &'static str {
    match s {
        "join" => "Join",
        "promote" => "Promote",
        "drain" => "Drain",
        "remove" => "Remove",
        "roll" => "Roll",
        _ => "Membership",
    }
}

/// Whether prometheus-operator's PodMonitor is served.
async fn has_pod_monitor(client: &Client) -> bool {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.kind == "PodMonitor"),
        Err(_) => false,
    }
}

/// Deletes what this MonitorCluster owns that was not built this time.
async fn delete_orphans(
    mc: &MonitorCluster,
    ctx: &Context,
    names: &Names,
    built: &[children::Child],
    caps: Capabilities,
) -> Result<(), Error> {
    let mut keep: BTreeSet<(Kind, String)> =
        built.iter().map(|c| (c.kind, c.name.clone())).collect();
    // A Secret the spec names is the user's, even where the operator once made it.
    keep.extend(
        crate::material::spec_secret_refs(mc)
            .into_iter()
            .map(|n| (Kind::Secret, n)),
    );
    let uid = mc.metadata.uid.as_deref();
    for kind in Kind::ALL {
        if kind == Kind::PodMonitor && !caps.pod_monitor {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &names.namespace, &kind.api_resource());
        let list = api
            .list(&ListParams::default().labels(&names.owned_selector()))
            .await
            .map_err(api_err(format!("listing {}s", kind.kind())))?;
        for obj in list.items {
            let name = obj.name_any();
            let ours = obj
                .owner_references()
                .iter()
                .any(|o| Some(o.uid.as_str()) == uid && o.controller == Some(true));
            if ours && !keep.contains(&(kind, name.clone())) {
                api.delete(&name, &DeleteParams::default())
                    .await
                    .map_err(api_err(format!("deleting {} {name}", kind.kind())))?;
                tracing::info!(kind = kind.kind(), %name, "deleted: no longer in the spec");
                publish(
                    ctx,
                    mc,
                    false,
                    "Deleted",
                    "Cleanup",
                    format!("{} {name}: no longer in the spec", kind.kind()),
                )
                .await;
            }
        }
    }
    Ok(())
}

/// Ready and desired pods per tier, from the workloads' status.
async fn ready_counts(
    ctx: &Context,
    names: &Names,
    mc: &MonitorCluster,
) -> Result<ReadyCounts, Error> {
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let ds: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let ready_of = |s: Option<StatefulSet>| {
        s.and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    let broker = sts
        .get_opt(&names.tier(Tier::Broker))
        .await
        .map_err(api_err("reading the broker StatefulSet"))?;
    let viz = sts
        .get_opt(&names.tier(Tier::Viz))
        .await
        .map_err(api_err("reading the viz StatefulSet"))?;
    let agent = ds
        .get_opt(&names.tier(Tier::Agent))
        .await
        .map_err(api_err("reading the agent DaemonSet"))?
        .and_then(|d| d.status);
    Ok(ReadyCounts {
        agents_ready: agent.as_ref().map_or(0, |s| s.number_ready),
        agents_desired: agent.as_ref().map_or(0, |s| s.desired_number_scheduled),
        brokers_ready: ready_of(broker),
        brokers_desired: mc.spec.broker.replicas,
        viz_ready: ready_of(viz),
        viz_desired: mc.spec.viz.replicas,
    })
}

/// On deletion: agents first (they stop sending), then viz, then the brokers.
async fn cleanup(mc: Arc<MonitorCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = mc.namespace().ok_or(Error::NoNamespace)?;
    let names = Names::new(&mc.name_any(), &ns);
    let ds: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let gone = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    };
    gone(
        ds.delete(&names.tier(Tier::Agent), &DeleteParams::default())
            .await
            .map(|_| ()),
    )
    .map_err(api_err("deleting the agent DaemonSet"))?;
    for tier in [Tier::Viz, Tier::Broker] {
        gone(
            sts.delete(&names.tier(tier), &DeleteParams::default())
                .await
                .map(|_| ()),
        )
        .map_err(api_err(format!(
            "deleting the {} StatefulSet",
            tier.as_str()
        )))?;
    }
    publish(
        &ctx,
        &mc,
        false,
        "Deleted",
        "Teardown",
        "agents, viz and brokers stopped; the broker volumes are kept".into(),
    )
    .await;
    Ok(Action::await_change())
}

/// Publishes an Event on `mc` (a failure to publish is logged, never fatal).
async fn publish(
    ctx: &Context,
    mc: &MonitorCluster,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = KubeEvent {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &mc.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests;
