//! Every object a MonitorCluster owns, built from its spec, the resolved credentials and the
//! membership plan: one pure function ([`build`]) the reconciler applies with server-side apply
//! and `ringwatch operator render` prints. Each child carries the cluster's labels and an owner
//! reference, so what is no longer built is found and deleted, and deleting the MonitorCluster
//! removes them all.

mod agent;
mod broker;
mod config;
mod network;
mod secrets;
mod viz;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::crd::MonitorCluster;
use crate::material::Material;
use crate::names::{Names, Tier};

/// What the membership driver decides about the brokers, beyond the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerPlan {
    /// The StatefulSet's replicas: the spec's, except while a scale-down drains brokers (they
    /// keep their pods until drained and removed).
    pub replicas: i32,
}

/// The kinds of child, with their API group and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
    ServiceAccount,
    Service,
    StatefulSet,
    DaemonSet,
    PodDisruptionBudget,
    NetworkPolicy,
    PodMonitor,
}

impl Kind {
    /// Every kind, in the order they are applied (credentials and config before the pods
    /// that mount them).
    pub const ALL: [Kind; 9] = [
        Kind::Secret,
        Kind::ConfigMap,
        Kind::ServiceAccount,
        Kind::Service,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::PodDisruptionBudget,
        Kind::NetworkPolicy,
        Kind::PodMonitor,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Service => "Service",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::PodMonitor => "PodMonitor",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::Secret | Kind::ConfigMap | Kind::ServiceAccount | Kind::Service => "",
            Kind::StatefulSet | Kind::DaemonSet => "apps",
            Kind::PodDisruptionBudget => "policy",
            Kind::NetworkPolicy => "networking.k8s.io",
            Kind::PodMonitor => "monitoring.coreos.com",
        }
    }

    pub fn version(self) -> &'static str {
        "v1"
    }

    pub fn api_version(self) -> String {
        match self.group() {
            "" => self.version().to_string(),
            g => format!("{g}/{}", self.version()),
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Service => "services",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::PodDisruptionBudget => "poddisruptionbudgets",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::PodMonitor => "podmonitors",
        }
    }

    pub fn api_resource(self) -> kube::core::ApiResource {
        kube::core::ApiResource {
            group: self.group().into(),
            version: self.version().into(),
            api_version: self.api_version(),
            kind: self.kind().into(),
            plural: self.plural().into(),
        }
    }
}

/// One child object.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub kind: Kind,
    pub name: String,
    /// The whole object, as applied.
    pub object: Value,
}

/// What the build needs to know about the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// prometheus-operator's PodMonitor CRD exists.
    pub pod_monitor: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the MonitorCluster has no {0}")]
    Missing(&'static str),
    #[error("cannot write the {tier} config: {reason}")]
    Config { tier: &'static str, reason: String },
}

/// Everything `mc` owns, in apply order.
pub fn build(
    mc: &MonitorCluster,
    material: &Material,
    plan: BrokerPlan,
    caps: Capabilities,
) -> Result<Vec<Child>, BuildError> {
    let name = mc
        .metadata
        .name
        .as_deref()
        .ok_or(BuildError::Missing("name"))?;
    let namespace = mc
        .metadata
        .namespace
        .as_deref()
        .ok_or(BuildError::Missing("namespace"))?;
    let ctx = Ctx {
        mc,
        names: Names::new(name, namespace),
        owner: owner_reference(mc)?,
        material,
    };
    let mut out = Vec::new();
    out.extend(secrets::build(&ctx));
    let configs = config::build(&ctx)?;
    let hash = |tier: Tier| config::tier_hash(&ctx, &configs, tier);
    out.extend(configs.iter().map(|c| c.child.clone()));
    for tier in [Tier::Agent, Tier::Broker, Tier::Viz] {
        out.push(ctx.object(
            Kind::ServiceAccount,
            &ctx.names.tier(tier),
            Some(tier),
            json!({"automountServiceAccountToken": false}),
        ));
    }
    out.extend(broker::build(&ctx, plan, &hash(Tier::Broker)));
    out.extend(viz::build(&ctx, &hash(Tier::Viz)));
    out.extend(agent::build(&ctx, &hash(Tier::Agent)));
    if mc.spec.network_policy.enabled {
        out.extend(network::build(&ctx));
    }
    if mc.spec.monitoring.pod_monitor && caps.pod_monitor {
        out.push(network::pod_monitor(&ctx));
    }
    out.sort_by_key(|c| Kind::ALL.iter().position(|k| *k == c.kind));
    Ok(out)
}

/// What every builder reads.
pub(crate) struct Ctx<'a> {
    pub mc: &'a MonitorCluster,
    pub names: Names,
    pub owner: OwnerReference,
    pub material: &'a Material,
}

impl Ctx<'_> {
    /// A child with the cluster's labels and owner reference; `rest` holds everything but
    /// `apiVersion`, `kind` and `metadata`.
    pub fn object(&self, kind: Kind, name: &str, tier: Option<Tier>, rest: Value) -> Child {
        let mut object = json!({
            "apiVersion": kind.api_version(),
            "kind": kind.kind(),
            "metadata": {
                "name": name,
                "namespace": self.names.namespace,
                "labels": self.names.labels(tier),
                "ownerReferences": [self.owner],
            },
        });
        if let (Some(obj), Value::Object(rest)) = (object.as_object_mut(), rest) {
            obj.extend(rest);
        }
        Child {
            kind,
            name: name.to_string(),
            object,
        }
    }

    pub fn tls_on(&self) -> bool {
        self.mc.spec.tls.enabled
    }

    /// The Secret with the brokers' `tls.crt`, `tls.key` and `ca.crt`.
    pub fn tls_secret_name(&self) -> String {
        match &self.mc.spec.tls.secret_ref {
            Some(r) => r.name.clone(),
            None => self.names.tls_secret(),
        }
    }
}

fn owner_reference(mc: &MonitorCluster) -> Result<OwnerReference, BuildError> {
    use kube::Resource;
    Ok(OwnerReference {
        api_version: MonitorCluster::api_version(&()).into_owned(),
        kind: MonitorCluster::kind(&()).into_owned(),
        name: mc
            .metadata
            .name
            .clone()
            .ok_or(BuildError::Missing("name"))?,
        uid: mc.metadata.uid.clone().ok_or(BuildError::Missing("uid"))?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The restricted security context every container but the agent's runs with.
pub(crate) fn restricted() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// `spec`'s resources, or the default for the tier.
pub(crate) fn resources(
    given: &Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    cpu: &str,
    memory: &str,
    memory_limit: &str,
) -> Value {
    match given {
        Some(r) => serde_json::to_value(r).unwrap_or_else(|_| json!({})),
        None => json!({
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"memory": memory_limit},
        }),
    }
}

/// An HTTP probe on `port` at `path`.
pub(crate) fn probe(path: &str, port: u16, period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    })
}

/// Pod annotations: the config hash and where Prometheus scrapes.
pub(crate) fn pod_annotations(hash: &str, metrics_port: u16) -> Value {
    json!({
        crate::names::CONFIG_HASH: hash,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": metrics_port.to_string(),
        "prometheus.io/path": "/metrics",
    })
}

#[cfg(test)]
mod tests;
