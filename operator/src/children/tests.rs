use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::Value;

use super::*;
use crate::crd::{MonitorClusterSpec, RedisStorage, SecretRef};
use crate::material::Existing;

fn cluster(spec: MonitorClusterSpec) -> MonitorCluster {
    let mut mc = MonitorCluster::new("mon", spec);
    mc.metadata.namespace = Some("obs".into());
    mc.metadata.uid = Some("1234".into());
    mc
}

fn built(mc: &MonitorCluster) -> Vec<Child> {
    let names = Names::new("mon", "obs");
    let material = Material::resolve(mc, &names, &Existing::new()).unwrap();
    let plan = BrokerPlan {
        replicas: mc.spec.broker.replicas,
    };
    build(mc, &material, plan, Capabilities::default()).unwrap()
}

fn find<'a>(children: &'a [Child], kind: Kind, name: &str) -> &'a Value {
    &children
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
        .object
}

fn config_of(children: &[Child], tier: &str) -> Value {
    let cm = find(children, Kind::ConfigMap, &format!("mon-{tier}"));
    let text = cm["data"][format!("{tier}.yaml")].as_str().unwrap();
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn an_empty_spec_makes_every_child_labelled_and_owned_in_apply_order() {
    let mc = cluster(MonitorClusterSpec::default());
    let children = built(&mc);
    let got: Vec<(Kind, &str)> = children.iter().map(|c| (c.kind, c.name.as_str())).collect();
    for want in [
        (Kind::Secret, "mon-broker-auth"),
        (Kind::Secret, "mon-agent-token"),
        (Kind::Secret, "mon-viz-token"),
        (Kind::Secret, "mon-viz-auth"),
        (Kind::Secret, "mon-tls"),
        (Kind::ConfigMap, "mon-broker"),
        (Kind::ConfigMap, "mon-agent"),
        (Kind::ConfigMap, "mon-viz"),
        (Kind::ServiceAccount, "mon-agent"),
        (Kind::Service, "mon-broker"),
        (Kind::Service, "mon-broker-ingest"),
        (Kind::Service, "mon-viz"),
        (Kind::StatefulSet, "mon-broker"),
        (Kind::StatefulSet, "mon-viz"),
        (Kind::DaemonSet, "mon-agent"),
        (Kind::PodDisruptionBudget, "mon-broker"),
        (Kind::NetworkPolicy, "mon-broker"),
    ] {
        assert!(got.contains(&want), "{want:?} missing from {got:?}");
    }
    assert!(
        !got.iter().any(|(k, _)| *k == Kind::PodMonitor),
        "no PodMonitor without its CRD"
    );
    let order: Vec<usize> = children
        .iter()
        .map(|c| Kind::ALL.iter().position(|k| *k == c.kind).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "secrets and config first"
    );
    for c in &children {
        let meta = &c.object["metadata"];
        assert_eq!(meta["namespace"], "obs");
        assert_eq!(meta["labels"]["app.kubernetes.io/instance"], "mon");
        assert_eq!(meta["ownerReferences"][0]["uid"], "1234");
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
    }
    // Each reads as its Kubernetes type.
    let typed = |k: Kind, n: &str| find(&children, k, n).clone();
    let sts: StatefulSet = serde_json::from_value(typed(Kind::StatefulSet, "mon-broker")).unwrap();
    let ds: DaemonSet = serde_json::from_value(typed(Kind::DaemonSet, "mon-agent")).unwrap();
    let _: Service = serde_json::from_value(typed(Kind::Service, "mon-broker")).unwrap();
    let _: PodDisruptionBudget =
        serde_json::from_value(typed(Kind::PodDisruptionBudget, "mon-broker")).unwrap();
    let _: NetworkPolicy =
        serde_json::from_value(typed(Kind::NetworkPolicy, "mon-broker")).unwrap();
    let _: Secret = serde_json::from_value(typed(Kind::Secret, "mon-tls")).unwrap();
    let _: ConfigMap = serde_json::from_value(typed(Kind::ConfigMap, "mon-broker")).unwrap();

    // Selectors select the templates' pods.
    for (selector, labels) in [
        (
            sts.spec.selector.match_labels.clone(),
            sts.spec.template.metadata.as_ref().unwrap().labels.clone(),
        ),
        (
            ds.spec.selector.match_labels.clone(),
            ds.spec.template.metadata.as_ref().unwrap().labels.clone(),
        ),
    ] {
        let (selector, labels) = (selector.unwrap(), labels.unwrap());
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    }
}

#[test]
fn the_broker_statefulset_is_operator_rolled_parallel_and_persistent() {
    let mc = cluster(MonitorClusterSpec::default());
    let children = built(&mc);
    let sts = find(&children, Kind::StatefulSet, "mon-broker");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["updateStrategy"]["type"], "OnDelete");
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    assert_eq!(spec["serviceName"], "mon-broker");
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env["RINGWATCH_BROKER_NODE_ID"], "$(POD_NAME)");
    assert_eq!(
        env["RINGWATCH_BROKER_ADVERTISE_GRPC"],
        "https://$(POD_NAME).mon-broker.obs.svc:9093"
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    let pdb = find(&children, Kind::PodDisruptionBudget, "mon-broker");
    assert_eq!(
        pdb["spec"]["minAvailable"], 2,
        "a majority of three stays up"
    );
    let headless = find(&children, Kind::Service, "mon-broker");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);

    // The plan, not the spec, sets the replicas (a scale-down keeps draining pods).
    let names = Names::new("mon", "obs");
    let material = Material::resolve(&mc, &names, &Existing::new()).unwrap();
    let held = build(
        &mc,
        &material,
        BrokerPlan { replicas: 5 },
        Capabilities::default(),
    )
    .unwrap();
    assert_eq!(
        find(&held, Kind::StatefulSet, "mon-broker")["spec"]["replicas"],
        5
    );
}

#[test]
fn the_agent_sees_the_host_read_only_on_every_node() {
    let mut spec = MonitorClusterSpec::default();
    spec.agent.priority_class_name = Some("system-node-critical".into());
    spec.agent.node_selector = BTreeMap::from([("kubernetes.io/os".into(), "linux".into())]);
    let children = built(&cluster(spec));
    let pod = &find(&children, Kind::DaemonSet, "mon-agent")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["tolerations"][0]["operator"], "Exists");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    let c = &pod["containers"][0];
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    for path in ["/host/proc", "/host/sys", "/host/root"] {
        let m = mounts.iter().find(|m| m["mountPath"] == path).unwrap();
        assert_eq!(m["readOnly"], true, "{path}");
    }
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
}

#[test]
fn each_tier_config_is_read_by_the_component_itself() {
    for tls in [true, false] {
        let mut spec = MonitorClusterSpec::default();
        spec.tls.enabled = tls;
        let children = built(&cluster(spec));
        let broker =
            ringwatch_broker::config::Config::from_yaml_value(config_of(&children, "broker"))
                .unwrap();
        broker.validate().unwrap();
        assert!(broker.cluster.enabled);
        assert_eq!(
            broker.cluster.bootstrap_node.as_deref(),
            Some("mon-broker-0")
        );
        assert_eq!(broker.cluster.vnodes, 50);
        assert_eq!(broker.grpc.tls.cert.is_some(), tls);
        let agent = ringwatch_agent::config::Config::from_yaml_value(config_of(&children, "agent"))
            .unwrap();
        // (validate() would read the mounted CA and token, absent here.)
        let scheme = if tls { "https" } else { "http" };
        assert_eq!(
            agent.brokers.endpoints,
            [format!("{scheme}://mon-broker-ingest.obs.svc:9093")]
        );
        assert!(agent.brokers.client.token_file.is_some());
        let viz =
            ringwatch_viz::config::Config::from_yaml_value(config_of(&children, "viz")).unwrap();
        assert_eq!(viz.brokers.endpoints, agent.brokers.endpoints);
        assert!(viz.auth.jwt_secret_file.is_some());
    }
}

#[test]
fn redis_storage_reaches_the_broker_config_and_its_credentials_come_from_the_secret() {
    let mut spec = MonitorClusterSpec::default();
    spec.broker.storage.redis = Some(RedisStorage {
        mode: ringwatch_broker::store::RedisMode::Sentinel,
        addresses: vec!["redis://sentinel-0:26379".into()],
        master_name: Some("mymaster".into()),
        secret_ref: Some(SecretRef {
            name: "redis-creds".into(),
        }),
    });
    let children = built(&cluster(spec));
    let broker =
        ringwatch_broker::config::Config::from_yaml_value(config_of(&children, "broker")).unwrap();
    broker.validate().unwrap();
    assert_eq!(broker.storage.redis.master_name, "mymaster");
    assert_eq!(broker.storage.redis.urls, ["redis://sentinel-0:26379"]);
    assert!(broker.storage.redis.ca_file.is_none());
    let sts = find(&children, Kind::StatefulSet, "mon-broker");
    let env = sts["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("RINGWATCH_BROKER_REDIS_PASSWORD") && env.contains("redis-creds"));
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "1Gi",
        "only the Raft log on the volume"
    );

    // A standalone Redis over TLS reads its CA from the Secret.
    let mut spec = MonitorClusterSpec::default();
    spec.broker.storage.redis = Some(RedisStorage {
        mode: ringwatch_broker::store::RedisMode::Standalone,
        addresses: vec!["rediss://redis:6380".into()],
        master_name: None,
        secret_ref: Some(SecretRef {
            name: "redis-creds".into(),
        }),
    });
    let children = built(&cluster(spec));
    let broker =
        ringwatch_broker::config::Config::from_yaml_value(config_of(&children, "broker")).unwrap();
    // (validate() would read the mounted CA, absent here.)
    assert_eq!(
        broker.storage.redis.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ringwatch/redis/ca.crt"))
    );
}

#[test]
fn a_changed_credential_or_config_changes_only_the_tiers_that_read_it() {
    let mc = cluster(MonitorClusterSpec::default());
    let names = Names::new("mon", "obs");
    let material = Material::resolve(&mc, &names, &Existing::new()).unwrap();
    let plan = BrokerPlan { replicas: 3 };
    let hashes = |mc: &MonitorCluster, m: &Material| -> Vec<Value> {
        let c = build(mc, m, plan, Capabilities::default()).unwrap();
        [
            (Kind::StatefulSet, "mon-broker"),
            (Kind::StatefulSet, "mon-viz"),
            (Kind::DaemonSet, "mon-agent"),
        ]
        .iter()
        .map(|(k, n)| {
            find(&c, *k, n)["spec"]["template"]["metadata"]["annotations"]
                [crate::names::CONFIG_HASH]
                .clone()
        })
        .collect()
    };
    let before = hashes(&mc, &material);
    assert_eq!(before, hashes(&mc, &material), "stable");
    let mut rotated = material.clone();
    rotated.agent_token = "another".into();
    let after = hashes(&mc, &rotated);
    assert_eq!(
        (before[0].clone(), before[1].clone()),
        (after[0].clone(), after[1].clone())
    );
    assert_ne!(before[2], after[2], "the agents roll");
    let mut slower = mc.clone();
    slower.spec.broker.raft.heartbeat = std::time::Duration::from_secs(1);
    let after = hashes(&slower, &material);
    assert_ne!(before[0], after[0], "the brokers roll");
    assert_eq!(before[2], after[2]);
}

#[test]
fn policies_and_the_pod_monitor_follow_the_spec() {
    let mut spec = MonitorClusterSpec::default();
    spec.network_policy.enabled = false;
    let mc = cluster(spec);
    let names = Names::new("mon", "obs");
    let material = Material::resolve(&mc, &names, &Existing::new()).unwrap();
    let plan = BrokerPlan { replicas: 3 };
    let children = build(&mc, &material, plan, Capabilities { pod_monitor: true }).unwrap();
    assert!(!children.iter().any(|c| c.kind == Kind::NetworkPolicy));
    assert!(children.iter().any(|c| c.kind == Kind::PodMonitor));

    let children = built(&cluster(MonitorClusterSpec::default()));
    let policy = find(&children, Kind::NetworkPolicy, "mon-broker");
    let admin = &policy["spec"]["ingress"][1];
    assert_eq!(admin["ports"][0]["port"], 9097);
    let from = admin["from"].to_string();
    assert!(from.contains("ringwatch-operator") && !from.contains("ipBlock"));
    let grpc = policy["spec"]["ingress"][0]["from"].to_string();
    assert!(grpc.contains("ipBlock") && grpc.contains("\"agent\""));
}

#[test]
fn a_renewed_certificate_the_user_brings_rolls_every_tier_that_mounts_it() {
    let mut spec = MonitorClusterSpec::default();
    spec.tls.secret_ref = Some(SecretRef {
        name: "cm-cert".into(),
    });
    let mc = cluster(spec);
    let names = Names::new("mon", "obs");
    let held = |crt: &str| {
        let mut e = Existing::new();
        e.insert(
            "cm-cert".into(),
            BTreeMap::from([("tls.crt".to_string(), crt.to_string())]),
        );
        Material::resolve(&mc, &names, &e).unwrap()
    };
    let hashes = |m: &Material| -> Vec<Value> {
        let c = build(&mc, m, BrokerPlan { replicas: 3 }, Capabilities::default()).unwrap();
        [
            (Kind::StatefulSet, "mon-broker"),
            (Kind::StatefulSet, "mon-viz"),
            (Kind::DaemonSet, "mon-agent"),
        ]
        .iter()
        .map(|(k, n)| {
            find(&c, *k, n)["spec"]["template"]["metadata"]["annotations"]
                [crate::names::CONFIG_HASH]
                .clone()
        })
        .collect()
    };
    let mut before = held("one");
    let mut after = held("two");
    // The generated credentials differ between two resolves from nothing; keep them equal so
    // only the certificate differs.
    after.broker_auth = before.broker_auth.clone();
    after.agent_token = before.agent_token.clone();
    after.viz_token = before.viz_token.clone();
    after.viz_jwt = before.viz_jwt.clone();
    let (b, a) = (hashes(&before), hashes(&after));
    for i in 0..3 {
        assert_ne!(b[i], a[i], "tier {i} rolls");
    }
    before.referenced.clear();
    assert!(
        material_secret_names(&mc).contains(&"cm-cert".to_string()),
        "read by the reconciler"
    );
}

fn material_secret_names(mc: &MonitorCluster) -> Vec<String> {
    crate::material::spec_secret_refs(mc)
}
