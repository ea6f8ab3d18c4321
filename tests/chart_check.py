"""The Helm chart checked with a real Helm engine (helm-python-sdk) and Kubernetes' own schemas
(kubernetes-validate), for tests/chart.rs: it prints facts, one a line, that the Rust test
asserts on. No API server and no helm binary are needed.

    chart_check.py lint
    chart_check.py render VALUES_JSON [--name R] [--namespace NS] [--api-versions A,B]
    chart_check.py reject VALUES_JSON
    chart_check.py schema

render prints, for every rendered object, `doc <Kind>/<name> ns=<namespace>`, then every leaf
as `<Kind>/<name> <dotted.path>=<compact JSON>` (a list of scalars as one JSON list), a
`rule <Kind>/<name> groups=.. resources=.. verbs=..` line per RBAC rule, `notes <line>` per
NOTES.txt line, the standard-label check, the MonitorCluster checked against the CRD's schema
(`crd-check`), and every other object through `kubernetes-validate --strict` on 1.30.0 and
1.37.0 (`validate <version>: <its output line>`, `validate <version> rc=<code>`).

Exit 3 when the Python packages are missing (the install command is printed).
"""

import json
import os
import subprocess
import sys
import tempfile

INSTALL = (
    "/usr/bin/python3 -m pip install --target target/pytools --break-system-packages "
    "kubernetes-validate helm-python-sdk"
)

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate  # noqa: F401  (run below as a module; imported to fail early)
    import yaml
    from helm_python import _native
except ImportError as e:  # pragma: no cover
    print(f"IMPORT FAILED: {e}\ninstall: {INSTALL} (scripts/test.sh runs it)")
    sys.exit(3)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "ringwatch")
VERSIONS = ["1.30.0", "1.37.0"]
# kubernetes-validate knows only built-in kinds: these two are checked otherwise.
CUSTOM_KINDS = {"MonitorCluster", "PodMonitor"}
STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
]


def compact(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def flatten(prefix, value, out):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            flatten(f"{prefix}.{i}", v, out)
    else:
        out.append(f"{prefix}={compact(value)}")


def render(values, name, namespace, api_versions):
    chart = helm.Chart.load(CHART)
    if not api_versions:
        return chart.render(values, name=name, namespace=namespace)
    # Chart.render does not expose .Capabilities; the C library's render options do
    # (helm-c-sdk's `api_versions`, the CLI's --api-versions).
    opts = {"name": name, "namespace": namespace, "api_versions": api_versions}
    raw = _native.call_string(
        "helm_render", chart._raw(), json.dumps(values), json.dumps(opts)
    )
    return json.loads(raw)


def crd_schema():
    with open(os.path.join(CHART, "crds", "monitorcluster.yaml")) as f:
        crd = yaml.safe_load(f)
    version = crd["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value, schema, path):
    """Fields the API server would drop (or refuse with strict field validation)."""
    found = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                found += unknown_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                found += unknown_fields(v, extra, f"{path}.{k}")
            elif props is not None or extra is False:
                found.append(f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            found += unknown_fields(v, schema["items"], f"{path}[{i}]")
    return found


def check_monitorcluster(doc, ident):
    schema = crd_schema()
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in jsonschema.Draft7Validator(schema["properties"]["spec"]).iter_errors(
            doc.get("spec")
        )
    ]
    spec_schema = schema["properties"]["spec"]
    errors += [f"unknown field {f}" for f in unknown_fields(doc.get("spec"), spec_schema, "spec")]
    if doc.get("apiVersion") != "ringwatch.dev/v1alpha1":
        errors.append(f"apiVersion {doc.get('apiVersion')}")
    print(f"crd-check {ident}: " + ("ok" if not errors else "; ".join(errors)))


def kubernetes_validate_all(docs):
    if not docs:
        print("validate: nothing to validate")
        return
    with tempfile.TemporaryDirectory(prefix="ringwatch-chart-") as tmp:
        path = os.path.join(tmp, "chart.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        for version in VERSIONS:
            proc = subprocess.run(
                [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, path],
                capture_output=True,
                text=True,
            )
            for line in (proc.stdout + proc.stderr).splitlines():
                print(f"validate {version}: {line}")
            print(f"validate {version} rc={proc.returncode}")


def cmd_render(args):
    values = json.loads(args[0])
    name, namespace, api_versions = "ringwatch", "monitoring", []
    rest = args[1:]
    while rest:
        flag, val, rest = rest[0], rest[1], rest[2:]
        if flag == "--name":
            name = val
        elif flag == "--namespace":
            namespace = val
        elif flag == "--api-versions":
            api_versions = [v for v in val.split(",") if v]
        else:
            raise SystemExit(f"unknown flag {flag}")
    files = render(values, name, namespace, api_versions)
    validate, labelled = [], 0
    for path in sorted(files):
        text = files[path]
        if path.endswith("NOTES.txt"):
            for line in text.splitlines():
                print(f"notes {line}")
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            ident = f"{doc['kind']}/{doc['metadata']['name']}"
            print(f"file {path} {ident}")
            print(f"doc {ident} ns={doc['metadata'].get('namespace', '')}")
            leaves = []
            flatten("", doc, leaves)
            for leaf in leaves:
                print(f"{ident} {leaf}")
            for rule in doc.get("rules") or []:
                # Sorted, so the Rust test compares sets of groups, resources and verbs.
                print(
                    f"rule {ident} groups={compact(sorted(rule.get('apiGroups') or []))} "
                    f"resources={compact(sorted(rule.get('resources') or []))} "
                    f"verbs={compact(sorted(rule.get('verbs') or []))}"
                )
            labels = doc["metadata"].get("labels") or {}
            missing = [label for label in STANDARD_LABELS if label not in labels]
            if missing or labels.get("app.kubernetes.io/managed-by") != "Helm":
                print(f"labels-missing {ident}: {missing} managed-by={labels.get('app.kubernetes.io/managed-by')}")
            labelled += 1
            if doc["kind"] == "MonitorCluster":
                check_monitorcluster(doc, ident)
            if doc["kind"] not in CUSTOM_KINDS:
                validate.append(doc)
    print(f"standard-labels checked {labelled}")
    kubernetes_validate_all(validate)


def cmd_lint():
    report = helm.lint(CHART, strict=True)
    print(f"lint charts={report.get('total_charts_linted')} errors={len(report.get('errors') or [])}")
    for m in report.get("messages") or []:
        print(f"lint message severity={m.get('severity')} path={m.get('path')}: {m.get('error')}")
    for e in report.get("errors") or []:
        print(f"lint error {e!r}")


def cmd_reject(args):
    values = json.loads(args[0])
    try:
        helm.Chart.load(CHART).render(values, name="ringwatch", namespace="monitoring")
        print("render accepted")
    except helm.HelmError as e:
        print(f"render rejected {type(e).__name__}: {' | '.join(str(e).splitlines())}")
    report = helm.lint(CHART, values, strict=True)
    errors = report.get("errors") or []
    if errors:
        print(f"lint rejected: {' | '.join(' | '.join(e.splitlines()) for e in errors)}")
    else:
        print("lint accepted")


def untyped(schema, path, out):
    if not any(k in schema for k in ("type", "$ref", "anyOf", "oneOf", "enum")):
        out.append(path)
    for k, sub in (schema.get("properties") or {}).items():
        untyped(sub, f"{path}.{k}", out)
    if isinstance(schema.get("items"), dict):
        untyped(schema["items"], f"{path}[]", out)


def cmd_schema():
    chart = helm.Chart.load(CHART)
    schema = chart.schema
    print(f"schema draft={schema.get('$schema')}")
    print(f"schema top additionalProperties={compact(schema.get('additionalProperties'))}")
    print(f"schema top keys={compact(sorted(schema['properties']))}")
    print(f"values top keys={compact(sorted(chart.values))}")
    closed = sorted(
        k for k, v in schema["properties"].items() if v.get("additionalProperties") is False
    )
    print(f"schema closed objects={compact(closed)}")
    missing = []
    untyped(schema, "", missing)
    print(f"schema untyped={compact(missing)}")
    spec = schema["properties"]["monitorCluster"]["properties"]["spec"]
    print(f"schema monitorCluster.spec keys={compact(sorted(spec['properties']))}")
    crd_spec = crd_schema()["properties"]["spec"]
    print(f"crd spec keys={compact(sorted(crd_spec['properties']))}")
    print(f"chart metadata={compact(chart.metadata)}")
    print(f"chart crds={compact(sorted(c['name'] for c in chart.crds))}")


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "lint":
        cmd_lint()
    elif cmd == "render":
        cmd_render(args)
    elif cmd == "reject":
        cmd_reject(args)
    elif cmd == "schema":
        cmd_schema()
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
