//! Reconcile against a mocked API server (no Kubernetes API server can run here): a
//! `tower_test` mock service answered by a small in-memory fake that keeps objects by path,
//! applies server-side-apply, merge and JSON patches, lists by label, deletes, and records
//! every request, so a test asserts what the operator asked for and what the cluster holds
//! after. Failures are injected per method and path. A broker's admin API, where a test needs
//! one, is a real HTTP server on loopback.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::*;
use crate::crd::{MonitorCluster, MonitorClusterSpec};

const NS: &str = "obs";
const MC_PATH: &str = "/apis/ringwatch.dev/v1alpha1/namespaces/obs/monitorclusters/mon";

#[derive(Debug, Clone)]
struct Req {
    method: Method,
    path: String,
    query: String,
    body: Value,
}

#[derive(Default)]
struct Fake {
    objects: Mutex<BTreeMap<String, Value>>,
    requests: Mutex<Vec<Req>>,
    /// Requests before the last `clear_requests`.
    earlier: Mutex<Vec<Req>>,
    /// (method, path) answered with this status.
    failures: Mutex<Vec<(Method, String, u16)>>,
}

impl Fake {
    fn put(&self, path: &str, v: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), v);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn clear_requests(&self) {
        let drained: Vec<Req> = self.requests.lock().unwrap().drain(..).collect();
        self.earlier.lock().unwrap().extend(drained);
    }

    /// Every request since the start, cleared or not.
    fn every_request(&self) -> Vec<Req> {
        let mut all = self.earlier.lock().unwrap().clone();
        all.extend(self.requests());
        all
    }

    fn fail(&self, method: Method, path: &str, status: u16) {
        self.failures
            .lock()
            .unwrap()
            .push((method, path.into(), status));
    }

    fn heal(&self) {
        self.failures.lock().unwrap().clear();
    }

    fn mc(&self) -> MonitorCluster {
        serde_json::from_value(self.get(MC_PATH).expect("the MonitorCluster")).unwrap()
    }

    fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
        (
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": reason, "code": code}),
        )
    }

    fn serve(&self, req: Req) -> (u16, Value) {
        self.requests.lock().unwrap().push(req.clone());
        let failure = self
            .failures
            .lock()
            .unwrap()
            .iter()
            .find(|(m, p, _)| *m == req.method && *p == req.path)
            .map(|(_, _, s)| *s);
        if let Some(code) = failure {
            return Fake::status(code, "InternalError", "injected failure");
        }
        let mut objects = self.objects.lock().unwrap();
        match req.method {
            Method::GET => {
                if let Some(o) = objects.get(&req.path) {
                    return (200, o.clone());
                }
                if req.path.starts_with("/apis/monitoring.coreos.com") {
                    return Fake::status(404, "NotFound", "no such group");
                }
                // A collection: its direct children matching the label selector.
                let prefix = format!("{}/", req.path);
                let selector = query_param(&req.query, "labelSelector");
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                    .filter(|(_, o)| matches_labels(o, selector.as_deref()))
                    .map(|(_, o)| o.clone())
                    .collect();
                let collection = req.path.rsplit('/').next().unwrap_or_default();
                let known = [
                    "secrets",
                    "configmaps",
                    "serviceaccounts",
                    "services",
                    "statefulsets",
                    "daemonsets",
                    "poddisruptionbudgets",
                    "networkpolicies",
                    "podmonitors",
                    "pods",
                ];
                if known.contains(&collection) {
                    return (
                        200,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                    );
                }
                Fake::status(404, "NotFound", "not found")
            }
            Method::PATCH => {
                let content = req.query.clone();
                if let Some(base) = req.path.strip_suffix("/status") {
                    let Some(o) = objects.get_mut(base) else {
                        return Fake::status(404, "NotFound", "not found");
                    };
                    merge(&mut o["status"], &req.body["status"]);
                    return (200, o.clone());
                }
                if content.contains("fieldManager=") && req.body.get("apiVersion").is_some() {
                    // Server-side apply: the applied object, with what the server adds.
                    let mut o = req.body.clone();
                    o["metadata"]["uid"] = json!(format!("uid-{}", req.path.len()));
                    o["metadata"]["resourceVersion"] = json!("1");
                    if let Some(old) = objects.get(&req.path)
                        && let Some(status) = old.get("status")
                    {
                        o["status"] = status.clone();
                    }
                    objects.insert(req.path.clone(), o.clone());
                    return (200, o);
                }
                let Some(o) = objects.get_mut(&req.path) else {
                    return Fake::status(404, "NotFound", "not found");
                };
                if let Some(ops) = req.body.as_array() {
                    json_patch(o, ops);
                } else {
                    merge(o, &req.body);
                }
                (200, o.clone())
            }
            Method::POST => (201, req.body.clone()),
            Method::DELETE => match objects.remove(&req.path) {
                Some(o) => (200, o),
                None => Fake::status(404, "NotFound", "not found"),
            },
            _ => Fake::status(405, "MethodNotAllowed", "no"),
        }
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches_labels(o: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        o["metadata"]["labels"][k] == json!(v)
    })
}

fn merge(into: &mut Value, patch: &Value) {
    match (into.as_object_mut(), patch.as_object()) {
        (Some(a), Some(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *into = patch.clone(),
    }
}

/// The JSON patch operations the finalizer helper sends.
fn json_patch(o: &mut Value, ops: &[Value]) {
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        match (op["op"].as_str(), path) {
            (Some("add"), "/metadata/finalizers") => {
                o["metadata"]["finalizers"] = op["value"].clone()
            }
            (Some("add"), "/metadata/finalizers/-") => {
                let list = o["metadata"]["finalizers"].as_array_mut();
                if let Some(l) = list {
                    l.push(op["value"].clone());
                } else {
                    o["metadata"]["finalizers"] = json!([op["value"].clone()]);
                }
            }
            (Some("remove"), p) if p.starts_with("/metadata/finalizers/") => {
                let i: usize = p
                    .rsplit('/')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                if let Some(l) = o["metadata"]["finalizers"].as_array_mut()
                    && i < l.len()
                {
                    l.remove(i);
                }
            }
            _ => {}
        }
    }
}

/// A recorded request as RBAC sees it: (API group, resource, verb); `None` for discovery.
fn rbac_of(r: &Req) -> Option<(String, String, String)> {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let verb = match (r.method.clone(), named) {
        (Method::GET, true) => "get",
        (Method::GET, false) if r.query.contains("watch=true") => "watch",
        (Method::GET, false) => "list",
        (Method::PATCH, _) => "patch",
        (Method::POST, _) => "create",
        (Method::DELETE, _) => "delete",
        (Method::PUT, _) => "update",
        _ => return None,
    };
    Some((group, resource, verb.to_string()))
}

/// Every call `fake` saw is one `API_CALLS` lists (so the chart grants it).
fn assert_declared(fake: &Fake) {
    for r in fake.every_request() {
        let Some((g, res, v)) = rbac_of(&r) else {
            continue;
        };
        assert!(
            API_CALLS
                .iter()
                .any(|(ag, ar, av)| *ag == g && *ar == res && *av == v),
            "{v} {g}/{res} ({} {}) is not in API_CALLS",
            r.method,
            r.path
        );
    }
}

/// A client whose API server is `fake`.
fn client(fake: Arc<Fake>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let req = Req {
                method: parts.method.clone(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body,
            };
            let (status, answer) = fake.serve(req);
            let response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    Client::new(service, NS)
}

fn context(fake: &Arc<Fake>, admin: AdminReach) -> Arc<Context> {
    let mut ctx = Context::new(
        client(fake.clone()),
        Arc::new(Metrics::new()),
        "test",
        admin,
    );
    ctx.admin_timeout = Duration::from_millis(500);
    Arc::new(ctx)
}

/// A fake holding one MonitorCluster with `spec`.
fn with_cluster(spec: MonitorClusterSpec) -> Arc<Fake> {
    let fake = Arc::new(Fake::default());
    let mut mc = MonitorCluster::new("mon", spec);
    mc.metadata.namespace = Some(NS.into());
    mc.metadata.uid = Some("mc-uid".into());
    mc.metadata.generation = Some(1);
    fake.put(MC_PATH, serde_json::to_value(&mc).unwrap());
    fake
}

fn nowhere() -> AdminReach {
    // A closed port: no broker answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    AdminReach::Fixed(l.local_addr().unwrap().to_string())
}

async fn reconcile_once(fake: &Arc<Fake>, ctx: &Arc<Context>) -> Result<Action, Error> {
    reconcile(Arc::new(fake.mc()), ctx.clone()).await
}

/// The first reconcile adds the finalizer (and nothing else); the second makes everything.
async fn created(fake: &Arc<Fake>, ctx: &Arc<Context>) {
    assert_eq!(
        reconcile_once(fake, ctx).await.unwrap(),
        Action::await_change()
    );
    assert_eq!(fake.mc().finalizers(), [FINALIZER]);
    reconcile_once(fake, ctx).await.unwrap();
}

const STS_BROKER: &str = "/apis/apps/v1/namespaces/obs/statefulsets/mon-broker";
const STS_VIZ: &str = "/apis/apps/v1/namespaces/obs/statefulsets/mon-viz";
const DS_AGENT: &str = "/apis/apps/v1/namespaces/obs/daemonsets/mon-agent";

#[tokio::test]
async fn the_first_reconcile_adds_the_finalizer_then_applies_every_child_and_writes_the_status() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let ctx = context(&fake, nowhere());
    assert_eq!(
        reconcile_once(&fake, &ctx).await.unwrap(),
        Action::await_change()
    );
    let first = fake.requests();
    assert_eq!(first.len(), 1, "only the finalizer: {first:?}");
    assert_eq!(
        (first[0].method.clone(), first[0].path.as_str()),
        (Method::PATCH, MC_PATH)
    );
    fake.clear_requests();

    let action = reconcile_once(&fake, &ctx).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "no broker answers yet: soon again"
    );
    let applied: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == Method::PATCH && r.query.contains("fieldManager=ringwatch-operator")
        })
        .inspect(|r| assert!(r.query.contains("force=true"), "{r:?}"))
        .map(|r| r.path)
        .collect();
    for path in [
        "/api/v1/namespaces/obs/secrets/mon-broker-auth",
        "/api/v1/namespaces/obs/secrets/mon-tls",
        "/api/v1/namespaces/obs/configmaps/mon-broker",
        "/api/v1/namespaces/obs/serviceaccounts/mon-agent",
        "/api/v1/namespaces/obs/services/mon-broker",
        "/api/v1/namespaces/obs/services/mon-broker-ingest",
        STS_BROKER,
        STS_VIZ,
        DS_AGENT,
        "/apis/policy/v1/namespaces/obs/poddisruptionbudgets/mon-broker",
        "/apis/networking.k8s.io/v1/namespaces/obs/networkpolicies/mon-broker",
    ] {
        assert!(
            applied.iter().any(|p| p == path),
            "{path} not applied: {applied:?}"
        );
    }
    let sts = fake.get(STS_BROKER).unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "mc-uid");

    let mc = fake.mc();
    let status = mc.status.expect("a status");
    assert_eq!(status.phase, Some(crate::crd::Phase::Pending));
    assert_eq!(status.brokers.as_deref(), Some("0/3"));
    assert_eq!(status.observed_generation, Some(1));
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Available", "Progressing", "Degraded"]);
    let events: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/events"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.body["reason"] == "Pending" && e.body["regarding"]["name"] == "mon"),
        "{events:?}"
    );

    // Credentials are read back, not made again.
    let secret = |fake: &Fake| {
        fake.get("/api/v1/namespaces/obs/secrets/mon-broker-auth")
            .unwrap()["data"]["secret"]
            .clone()
    };
    let before = secret(&fake);
    assert!(before.is_string());
    reconcile_once(&fake, &ctx).await.unwrap();
    assert_eq!(secret(&fake), before);
    assert_declared(&fake);
}

#[tokio::test]
async fn replica_and_image_changes_reach_the_workloads_and_a_shrink_waits_for_the_brokers() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let ctx = context(&fake, nowhere());
    created(&fake, &ctx).await;
    let mut mc = fake.mc();
    mc.spec.broker.replicas = 5;
    mc.spec.broker.image = "ringwatch:2".into();
    mc.spec.viz.replicas = 2;
    mc.spec.agent.image = "ringwatch:2".into();
    mc.metadata.generation = Some(2);
    fake.put(MC_PATH, serde_json::to_value(&mc).unwrap());
    reconcile_once(&fake, &ctx).await.unwrap();
    // The brokers' template moved this pass: viz and the agents follow on the next one (no
    // broker pods run here, so none is left to roll).
    assert_eq!(fake.get(STS_VIZ).unwrap()["spec"]["replicas"], 1);
    reconcile_once(&fake, &ctx).await.unwrap();
    let sts = fake.get(STS_BROKER).unwrap();
    assert_eq!(sts["spec"]["replicas"], 5);
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "ringwatch:2"
    );
    assert_eq!(fake.get(STS_VIZ).unwrap()["spec"]["replicas"], 2);
    assert_eq!(
        fake.get(DS_AGENT).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "ringwatch:2"
    );
    assert_eq!(fake.mc().status.unwrap().observed_generation, Some(2));

    // Back to 3 with no broker answering: the StatefulSet keeps 5 (shrinking without draining
    // would lose the hosts of the brokers cut off).
    let mut mc = fake.mc();
    mc.spec.broker.replicas = 3;
    fake.put(MC_PATH, serde_json::to_value(&mc).unwrap());
    reconcile_once(&fake, &ctx).await.unwrap();
    assert_eq!(fake.get(STS_BROKER).unwrap()["spec"]["replicas"], 5);
    assert_declared(&fake);
}

#[tokio::test]
async fn deletion_runs_the_finalizer_stopping_agents_viz_then_brokers() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let ctx = context(&fake, nowhere());
    created(&fake, &ctx).await;
    let mut mc = serde_json::to_value(fake.mc()).unwrap();
    mc["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
    fake.put(MC_PATH, mc);
    fake.clear_requests();
    assert_eq!(
        reconcile_once(&fake, &ctx).await.unwrap(),
        Action::await_change()
    );
    let deletes: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::DELETE)
        .map(|r| r.path)
        .collect();
    assert_eq!(deletes, [DS_AGENT, STS_VIZ, STS_BROKER]);
    assert!(fake.get(STS_BROKER).is_none());
    assert!(
        fake.mc().finalizers().is_empty(),
        "the finalizer is removed once cleaned up"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.body["reason"] == "Deleted")
    );
    assert_declared(&fake);
}

#[tokio::test]
async fn api_errors_show_in_the_conditions_and_are_retried_with_back_off() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let ctx = context(&fake, nowhere());
    created(&fake, &ctx).await;
    fake.fail(Method::PATCH, STS_BROKER, 500);
    let err = reconcile_once(&fake, &ctx).await.unwrap_err();
    assert_eq!(err.reason(), "ApiError");
    assert!(
        err.to_string().contains("applying StatefulSet mon-broker"),
        "{err}"
    );
    let status = fake.mc().status.unwrap();
    assert_eq!(status.phase, Some(crate::crd::Phase::Degraded));
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ApiError")
    );
    assert!(
        degraded.message.contains("mon-broker"),
        "{}",
        degraded.message
    );

    let mc = Arc::new(fake.mc());
    assert_eq!(
        error_policy(mc.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(mc.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        error_policy(mc.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(20))
    );
    assert_eq!(ctx.metrics.failures("ApiError"), 3);
    assert!(
        ctx.metrics
            .encode()
            .unwrap()
            .contains("ringwatch_operator_reconcile_failures_total{reason=\"ApiError\"} 3")
    );

    // Healed: the next reconcile succeeds, Degraded clears, and the back-off starts over.
    fake.heal();
    reconcile_once(&fake, &ctx).await.unwrap();
    let status = fake.mc().status.unwrap();
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "False");
    assert_eq!(
        error_policy(mc, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        backoff(20),
        Duration::from_secs(300),
        "at most five minutes"
    );
    assert_declared(&fake);
}

#[tokio::test]
async fn children_no_longer_in_the_spec_are_deleted_and_others_objects_kept() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let ctx = context(&fake, nowhere());
    created(&fake, &ctx).await;
    // Someone else's object with the same labels: not ours to delete.
    let foreign = "/apis/networking.k8s.io/v1/namespaces/obs/networkpolicies/other";
    let mut other = fake
        .get("/apis/networking.k8s.io/v1/namespaces/obs/networkpolicies/mon-viz")
        .unwrap();
    other["metadata"]["name"] = json!("other");
    other["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    fake.put(foreign, other);

    let mut mc = fake.mc();
    mc.spec.network_policy.enabled = false;
    fake.put(MC_PATH, serde_json::to_value(&mc).unwrap());
    fake.clear_requests();
    reconcile_once(&fake, &ctx).await.unwrap();
    let deleted: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::DELETE)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        deleted,
        [
            "/apis/networking.k8s.io/v1/namespaces/obs/networkpolicies/mon-broker",
            "/apis/networking.k8s.io/v1/namespaces/obs/networkpolicies/mon-viz",
        ]
    );
    assert!(fake.get(foreign).is_some());

    // The spec now names the generated certificate's Secret as its own: it is the user's now,
    // not deleted although the operator no longer makes it.
    let mut mc = fake.mc();
    mc.spec.tls.secret_ref = Some(crate::crd::SecretRef {
        name: "mon-tls".into(),
    });
    fake.put(MC_PATH, serde_json::to_value(&mc).unwrap());
    reconcile_once(&fake, &ctx).await.unwrap();
    assert!(fake.get("/api/v1/namespaces/obs/secrets/mon-tls").is_some());
    assert_declared(&fake);
}

/// A broker's admin API on loopback answering `/api/cluster` with `cluster`, recording the
/// membership calls it gets.
async fn admin_server(cluster: Value) -> (String, Arc<Mutex<Vec<(String, String, Value)>>>) {
    use axum::routing::{get, post};
    let seen: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new()
        .route(
            "/api/cluster",
            get(move || async move { axum::Json(cluster) }),
        )
        .route(
            "/api/cluster/join",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    record.lock().unwrap().push(("join".into(), auth, body));
                    axum::Json(json!({"ok": true}))
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

fn broker_pod(ordinal: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("mon-broker-{ordinal}"), "namespace": NS, "labels": {
            "app.kubernetes.io/name": "ringwatch", "app.kubernetes.io/instance": "mon",
            "app.kubernetes.io/component": "broker", "controller-revision-hash": "rev-1"}},
        "status": {"phase": "Running",
                   "containerStatuses": [{"name": "broker", "image": "x", "imageID": "", "ready": true,
                                          "restartCount": 0, "started": true}],
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

#[tokio::test]
async fn a_started_broker_pod_is_joined_through_the_admin_api_and_the_status_says_so() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let (addr, seen) = admin_server(json!({
        "leader": "mon-broker-0", "term": 3, "ring_epoch": 2,
        "members": [{"id": "mon-broker-0", "state": "active", "role": "leader"}]
    }))
    .await;
    let ctx = context(&fake, AdminReach::Fixed(addr));
    created(&fake, &ctx).await;
    for o in 0..3 {
        fake.put(
            &format!("/api/v1/namespaces/obs/pods/mon-broker-{o}"),
            broker_pod(o),
        );
    }
    reconcile_once(&fake, &ctx).await.unwrap();
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (what, auth, body) = &calls[0];
    assert_eq!(what, "join");
    assert!(
        auth.starts_with("Bearer "),
        "the operator's admin credential: {auth}"
    );
    assert_eq!(body["id"], "mon-broker-1");
    assert_eq!(
        body["grpc_addr"],
        "https://mon-broker-1.mon-broker.obs.svc:9093"
    );
    assert_eq!(body["admin_addr"], "mon-broker-1.mon-broker.obs.svc:9097");
    let status = fake.mc().status.unwrap();
    let m = status.membership.expect("the step in progress");
    assert_eq!(
        (m.action.as_str(), m.member.as_str()),
        ("join", "mon-broker-1")
    );
    assert_eq!(status.leader.as_deref(), Some("mon-broker-0"));
    assert_eq!(status.term, Some(3));
    assert!(fake.requests().iter().any(|r| r.body["reason"] == "Join"));
    // The credential is the operator's admin one, signed by the brokers' secret.
    let data = fake
        .get("/api/v1/namespaces/obs/secrets/mon-broker-auth")
        .unwrap();
    let secret = String::from_utf8(
        serde_json::from_value::<k8s_openapi::ByteString>(data["data"]["secret"].clone())
            .unwrap()
            .0,
    )
    .unwrap();
    let verifier = ringwatch_net::token::Verifier::new(&[secret]);
    verifier
        .check(
            auth.strip_prefix("Bearer "),
            ringwatch_net::token::Role::Admin,
        )
        .expect("an admin credential");

    // The brokers gone from sight: what was known is cleared, not left standing.
    for o in 0..3 {
        fake.objects
            .lock()
            .unwrap()
            .remove(&format!("/api/v1/namespaces/obs/pods/mon-broker-{o}"));
    }
    reconcile_once(&fake, &ctx).await.unwrap();
    let status = fake.mc().status.unwrap();
    assert!(status.membership.is_none(), "{status:?}");
    assert!(
        status.leader.is_none() && status.term.is_none(),
        "{status:?}"
    );
    assert!(
        ctx.metrics
            .encode()
            .unwrap()
            .contains("ringwatch_operator_membership_steps_total{action=\"join\"} 1")
    );
    assert_declared(&fake);
}

#[tokio::test]
async fn while_brokers_roll_the_agents_and_viz_keep_their_template() {
    let fake = with_cluster(MonitorClusterSpec::default());
    let (addr, _seen) = admin_server(json!({
        "leader": "mon-broker-0", "term": 3, "ring_epoch": 2,
        "members": [
            {"id": "mon-broker-0", "state": "active", "role": "leader"},
            {"id": "mon-broker-1", "state": "active", "role": "voter"},
            {"id": "mon-broker-2", "state": "active", "role": "voter"}
        ]
    }))
    .await;
    let ctx = context(&fake, AdminReach::Fixed(addr));
    created(&fake, &ctx).await;
    for o in 0..3 {
        fake.put(
            &format!("/api/v1/namespaces/obs/pods/mon-broker-{o}"),
            broker_pod(o),
        );
    }
    // A new image everywhere: this pass moves the broker template; the agents and viz wait.
    let mut mc = fake.mc();
    mc.spec.broker.image = "ringwatch:2".into();
    mc.spec.agent.image = "ringwatch:2".into();
    mc.spec.viz.image = "ringwatch:2".into();
    fake.put(MC_PATH, serde_json::to_value(&mc).unwrap());
    let image = |path: &str| {
        fake.get(path).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    reconcile_once(&fake, &ctx).await.unwrap();
    assert_eq!(image(STS_BROKER), "ringwatch:2");
    assert_ne!(
        image(DS_AGENT),
        "ringwatch:2",
        "the agents wait for the brokers"
    );
    assert_ne!(image(STS_VIZ), "ringwatch:2", "viz waits for the brokers");

    // The StatefulSet controller sees the new template: the pods are outdated, one is replaced.
    let mut sts = fake.get(STS_BROKER).unwrap();
    sts["status"] = json!({"replicas": 3, "readyReplicas": 3, "updateRevision": "rev-2"});
    fake.put(STS_BROKER, sts);
    fake.clear_requests();
    reconcile_once(&fake, &ctx).await.unwrap();
    let deleted: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::DELETE)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        deleted,
        ["/api/v1/namespaces/obs/pods/mon-broker-2"],
        "one broker replaced"
    );
    assert_ne!(image(DS_AGENT), "ringwatch:2");
    assert_ne!(image(STS_VIZ), "ringwatch:2");
    assert_eq!(fake.mc().status.unwrap().membership.unwrap().action, "roll");

    // Every broker on the new revision: the agents and viz follow.
    for o in 0..3 {
        let mut pod = broker_pod(o);
        pod["metadata"]["labels"]["controller-revision-hash"] = json!("rev-2");
        fake.put(&format!("/api/v1/namespaces/obs/pods/mon-broker-{o}"), pod);
    }
    reconcile_once(&fake, &ctx).await.unwrap();
    assert_eq!(image(DS_AGENT), "ringwatch:2");
    assert_eq!(image(STS_VIZ), "ringwatch:2");
    assert_declared(&fake);
}
