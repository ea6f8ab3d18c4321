//! The names, labels and ports of a MonitorCluster's children: one place, so the builders, the
//! reconciler and the membership driver agree on `<mc>-broker-2` and its DNS name.

use std::collections::BTreeMap;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "ringwatch-operator";
/// The finalizer on a MonitorCluster.
pub const FINALIZER: &str = "ringwatch.dev/teardown";
/// The label that ties a child to its MonitorCluster.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The pod-template annotation that holds a checksum of the tier's config and credentials:
/// changing either rolls the tier.
pub const CONFIG_HASH: &str = "ringwatch.dev/config-hash";

pub const BROKER_GRPC_PORT: u16 = 9093;
pub const BROKER_ADMIN_PORT: u16 = 9097;
pub const VIZ_HTTP_PORT: u16 = 8080;
pub const VIZ_QUIC_PORT: u16 = 8081;
pub const AGENT_METRICS_PORT: u16 = 9102;

/// A tier of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Agent,
    Broker,
    Viz,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Agent => "agent",
            Tier::Broker => "broker",
            Tier::Viz => "viz",
        }
    }
}

/// Names derived from a MonitorCluster's name and namespace.
#[derive(Debug, Clone)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn new(cluster: &str, namespace: &str) -> Names {
        Names {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// `<mc>-<tier>`: the workload, its ServiceAccount and ConfigMap.
    pub fn tier(&self, tier: Tier) -> String {
        format!("{}-{}", self.cluster, tier.as_str())
    }

    /// The brokers' headless Service (stable pod DNS names, published before ready so Raft can
    /// form).
    pub fn broker_peers(&self) -> String {
        self.tier(Tier::Broker)
    }

    /// The Service agents and viz connect to (any ready broker; the ring sends them on).
    pub fn broker_ingest(&self) -> String {
        format!("{}-broker-ingest", self.cluster)
    }

    /// Broker pod `ordinal`'s name, which is also its node id.
    pub fn broker_pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.tier(Tier::Broker))
    }

    /// The ordinal of a broker pod or node id of this cluster.
    pub fn broker_ordinal(&self, pod: &str) -> Option<u32> {
        pod.strip_prefix(&self.tier(Tier::Broker))?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// A broker pod's DNS name through the headless Service.
    pub fn broker_host(&self, pod: &str) -> String {
        format!("{pod}.{}.{}.svc", self.broker_peers(), self.namespace)
    }

    /// The gRPC URL of the broker ingest Service.
    pub fn ingest_url(&self, tls: bool) -> String {
        format!(
            "{}://{}.{}.svc:{BROKER_GRPC_PORT}",
            if tls { "https" } else { "http" },
            self.broker_ingest(),
            self.namespace
        )
    }

    /// The Secret holding the brokers' token secret.
    pub fn auth_secret(&self) -> String {
        format!("{}-broker-auth", self.cluster)
    }

    /// The Secret holding a tier's broker credential.
    pub fn token_secret(&self, tier: Tier) -> String {
        format!("{}-{}-token", self.cluster, tier.as_str())
    }

    /// The generated CA and broker certificates.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }

    /// The generated secret that signs viz's API tokens.
    pub fn viz_auth_secret(&self) -> String {
        format!("{}-viz-auth", self.cluster)
    }

    /// The labels every child carries.
    pub fn labels(&self, tier: Option<Tier>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "ringwatch".to_string(),
            ),
            (INSTANCE.to_string(), self.cluster.clone()),
            (MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
        ]);
        if let Some(t) = tier {
            l.insert(COMPONENT.to_string(), t.as_str().to_string());
        }
        l
    }

    /// The labels that select a tier's pods (a subset of [`Names::labels`], stable forever:
    /// a selector cannot change).
    pub fn selector(&self, tier: Tier) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "ringwatch".to_string(),
            ),
            (INSTANCE.to_string(), self.cluster.clone()),
            (COMPONENT.to_string(), tier.as_str().to_string()),
        ])
    }

    /// A label selector string for everything this cluster's operator made.
    pub fn owned_selector(&self) -> String {
        format!("{INSTANCE}={},{MANAGED_BY}={FIELD_MANAGER}", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_pods_are_node_ids_with_ordinals_and_dns_names() {
        let n = Names::new("mon", "obs");
        assert_eq!(n.broker_pod(2), "mon-broker-2");
        assert_eq!(n.broker_ordinal("mon-broker-2"), Some(2));
        assert_eq!(n.broker_ordinal("mon-broker-ingest"), None);
        assert_eq!(n.broker_ordinal("other-broker-1"), None);
        assert_eq!(
            n.broker_host("mon-broker-0"),
            "mon-broker-0.mon-broker.obs.svc"
        );
        assert_eq!(n.ingest_url(true), "https://mon-broker-ingest.obs.svc:9093");
    }
}
