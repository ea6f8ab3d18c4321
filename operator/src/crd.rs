//! The `MonitorCluster` custom resource (group `ringwatch.dev`, version `v1alpha1`, short name
//! `mc`): one object describes a whole Ringwatch — the agent on every node, the broker cluster
//! and its storage, viz — and its status says whether it is all well.
//!
//! Its schema derives from these types; the parts that configure a component are that
//! component's own config types (the broker's [`RaftConfig`] and [`DetectionConfig`], the
//! agent's [`CollectConfig`], the Redis [`RedisMode`]), so a field means the same in the CRD,
//! the YAML file and the flags. Every field has a default: an empty spec is a working cluster
//! (three brokers on the embedded store). Cross-field rules are CEL (`x-kubernetes-validations`),
//! checked by the API server.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use ringwatch_agent::config::CollectConfig;
use ringwatch_broker::config::{DetectionConfig, RaftConfig};
use ringwatch_broker::store::RedisMode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The image every component runs by default: this build's.
pub const DEFAULT_IMAGE: &str = concat!("ringwatch:", env!("CARGO_PKG_VERSION"));

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ringwatch.dev",
    version = "v1alpha1",
    kind = "MonitorCluster",
    plural = "monitorclusters",
    shortname = "mc",
    namespaced,
    status = "MonitorClusterStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Brokers","type":"string","jsonPath":".status.brokers","description":"ready/desired"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.leader"}"#,
    printcolumn = r#"{"name":"Ring epoch","type":"integer","jsonPath":".status.ringEpoch"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40").message("metadata.name: lower-case letters, digits and '-', starting with a letter, at most 40 characters (children are named <name>-broker-ingest, <name>-broker-N)")
)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitorClusterSpec {
    pub agent: AgentSpec,
    pub broker: BrokerSpec,
    pub viz: VizSpec,
    /// TLS between agents, viz and brokers, and among brokers: on by default, with a CA and a
    /// broker certificate the operator generates.
    pub tls: TlsSpec,
    /// How Prometheus finds the components' `/metrics`.
    pub monitoring: MonitoringSpec,
    pub network_policy: NetworkPolicySpec,
}

/// NetworkPolicies: the brokers' ingest port admits this cluster's agents, viz and brokers;
/// their Raft and admin port only the brokers, the operator and Prometheus.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicySpec {
    pub enabled: bool,
    /// Where the nodes' addresses are: agents use the host's network, so a policy sees them
    /// as node addresses, not as pods (default: the private ranges).
    pub node_cidrs: Vec<String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            node_cidrs: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// TLS on the brokers' gRPC port.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsSpec {
    /// Chosen when the cluster is made: the brokers' advertised addresses carry the scheme.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "tls.enabled is chosen when the cluster is made and cannot change (the brokers' addresses carry the scheme)"}]))]
    pub enabled: bool,
    /// A Secret with `tls.crt`, `tls.key` and `ca.crt` for the brokers (e.g. issued by
    /// cert-manager for the names `*.<name>-broker.<namespace>.svc` and
    /// `<name>-broker-ingest.<namespace>.svc`); default: generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            enabled: true,
            secret_ref: None,
        }
    }
}

/// Scraping: pods carry `prometheus.io/*` annotations; with prometheus-operator installed a
/// PodMonitor is made as well.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitoringSpec {
    /// Make a PodMonitor when its CRD (monitoring.coreos.com) exists.
    pub pod_monitor: bool,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        MonitoringSpec { pod_monitor: true }
    }
}

/// The agent DaemonSet: one on every node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentSpec {
    pub image: String,
    /// What the agent collects and how often (the agent's own config type).
    pub collect: CollectConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Tolerations in addition to the default, which tolerates every taint (an agent runs on
    /// every node, control plane included).
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            image: DEFAULT_IMAGE.into(),
            collect: CollectConfig::default(),
            resources: None,
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
            priority_class_name: None,
        }
    }
}

/// The broker StatefulSet: a Raft cluster sharding hosts by the ring.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerSpec {
    /// Brokers (Raft voters once caught up). Odd counts tolerate the most failures.
    #[schemars(range(min = 1, max = 99))]
    pub replicas: i32,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Raft's timings (the broker's own config type).
    pub raft: RaftConfig,
    /// When a silent broker is marked down (the broker's own config type).
    pub detection: DetectionConfig,
    /// Points per broker on the consistent-hash ring: more spread hosts more evenly and cost
    /// memory; set when the cluster is made.
    #[schemars(range(min = 1, max = 1000))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "broker.vnodes is set when the cluster is made and cannot change (the ring's points are where hosts live)"}]))]
    pub vnodes: u32,
    /// How long samples are kept.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retention: Duration,
    pub storage: StorageSpec,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            replicas: 3,
            image: DEFAULT_IMAGE.into(),
            resources: None,
            raft: RaftConfig::default(),
            detection: DetectionConfig::default(),
            vnodes: 50,
            retention: Duration::from_secs(7 * 86_400),
            storage: StorageSpec::default(),
        }
    }
}

/// Where brokers store samples: the embedded store on a volume each (the default), or an
/// external Redis; one of the two, chosen when the cluster is made (the brokers' volumes are
/// made from it once: a StatefulSet's volume templates cannot change).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.embedded) && has(self.redis))").message("storage: embedded or redis, not both"))]
#[x_kube(validation = Rule::new("has(self.embedded) == has(oldSelf.embedded) && has(self.redis) == has(oldSelf.redis)").message("storage: embedded or redis is chosen when the cluster is made and cannot change (the brokers' volumes are made once)"))]
pub struct StorageSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStorage>,
}

/// The embedded store: a PersistentVolumeClaim per broker, made once (grow a volume through
/// its PersistentVolumeClaim, where the storage class allows it).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("storage.embedded cannot change once the cluster exists: the brokers' volumes are made once"))]
pub struct EmbeddedStorage {
    /// The volume's size (a Kubernetes quantity).
    #[serde(default = "default_volume_size")]
    pub size: String,
    /// The StorageClass (default: the cluster's default class).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for EmbeddedStorage {
    fn default() -> Self {
        EmbeddedStorage {
            size: default_volume_size(),
            storage_class_name: None,
        }
    }
}

fn default_volume_size() -> String {
    "10Gi".into()
}

/// An external Redis every broker shares.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'sentinel' || (has(self.masterName) && self.masterName != '')").message("redis: sentinel mode needs masterName"))]
#[x_kube(validation = Rule::new("size(self.addresses) > 0").message("redis: at least one address (redis:// or rediss://)"))]
pub struct RedisStorage {
    #[serde(default)]
    pub mode: RedisMode,
    /// The server, the sentinels, or cluster seed nodes: `redis://host:port` (`rediss://` for
    /// TLS).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The sentinel master name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
    /// A Secret with the credentials and CA: keys `username` and `password` (each optional),
    /// and `ca.crt`, read when the addresses are `rediss://` (standalone or cluster mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A Secret in the MonitorCluster's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
}

/// viz: the dashboard, its API and live push.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VizSpec {
    #[schemars(range(min = 0, max = 99))]
    pub replicas: i32,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    pub service_type: ServiceType,
    /// A Secret whose key `jwt-secret` signs API tokens (default: one the operator generates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretRef>,
    /// A `kubernetes.io/tls` Secret for viz's QUIC push (default: a generated certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<SecretRef>,
}

impl Default for VizSpec {
    fn default() -> Self {
        VizSpec {
            replicas: 1,
            image: DEFAULT_IMAGE.into(),
            resources: None,
            service_type: ServiceType::ClusterIP,
            auth_secret_ref: None,
            tls_secret_ref: None,
        }
    }
}

/// How viz's Service is exposed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Where the cluster is, as `kubectl get mc` shows it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Progressing,
    Running,
    Degraded,
    Failed,
}

/// What the operator last saw.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitorClusterStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Available, Progressing and Degraded, with reasons.
    pub conditions: Vec<Condition>,
    /// Brokers ready/desired (the printer column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    pub ready: ReadyCounts,
    /// The Raft leader's node id, and its term.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_epoch: Option<u64>,
    /// Ring members and their state (joining, active, draining, drained, down, left).
    pub members: Vec<MemberStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The membership change in progress (join, promote, drain, remove, roll), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipStatus>,
}

/// A membership change in progress.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MembershipStatus {
    /// join, promote, drain, remove or roll.
    pub action: String,
    pub member: String,
    pub message: String,
}

/// Ready and desired pods per tier.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ReadyCounts {
    pub agents_ready: i32,
    pub agents_desired: i32,
    pub brokers_ready: i32,
    pub brokers_desired: i32,
    pub viz_ready: i32,
    pub viz_desired: i32,
}

/// One ring member.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MemberStatus {
    pub id: String,
    pub state: String,
    /// leader, follower, learner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_names_group_version_kind_short_name_and_printer_columns() {
        let crd = serde_json::to_value(MonitorCluster::crd()).unwrap();
        assert_eq!(crd["spec"]["group"], "ringwatch.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "mc");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert!(v["subresources"]["status"].is_object());
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Phase", "Brokers", "Leader", "Ring epoch", "Age"]);
        let text = crd.to_string();
        assert!(
            text.contains("x-kubernetes-validations"),
            "CEL rules are in"
        );
        assert!(
            text.contains("election_timeout"),
            "the broker's own Raft type"
        );
        assert!(
            !text.contains("\"$ref\""),
            "a structural schema has no references"
        );
    }

    #[test]
    fn an_empty_spec_is_a_working_cluster() {
        let spec: MonitorClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(spec.broker.replicas, 3);
        assert_eq!(spec.broker.raft, RaftConfig::default());
        assert_eq!(spec.agent.collect.interval, Duration::from_secs(5));
        assert_eq!(spec.broker.retention, Duration::from_secs(7 * 86_400));
        assert!(spec.broker.storage.embedded.is_none() && spec.broker.storage.redis.is_none());
        let written = serde_json::to_value(&spec).unwrap();
        assert_eq!(written["broker"]["raft"]["heartbeat"], "500ms");
        assert_eq!(written["agent"]["collect"]["interval"], "5s");
        assert_eq!(written["viz"]["serviceType"], "ClusterIP");
    }
}
