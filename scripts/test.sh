#!/usr/bin/env bash
# Runs every test of Ringwatch: format, lints, unit and end-to-end tests (real processes on
# loopback). Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_component() {
  if ! cargo "$1" --version >/dev/null 2>&1; then
    echo "installing the $2 toolchain component"
    rustup component add "$2"
  fi
}
need_component fmt rustfmt
need_component clippy clippy

source scripts/need.sh
# Real Redis servers (standalone, sentinel, cluster) for the storage tests.
need_apt redis-server redis-server redis-sentinel redis-tools
need_apt redis-sentinel redis-server redis-sentinel redis-tools
need_apt redis-cli redis-server redis-sentinel redis-tools
# Node.js and npm drive the browser test (viz/web/tests/ui.mjs, playwright-core); Debian's
# Chromium is the browser. (The build needs neither: uPlot is committed under viz/web/vendor/.)
need_apt npm nodejs npm
need_apt chromium chromium
# Python's prometheus_client parses every /metrics as the OpenMetrics it declares (tests/scrape.rs).
if ! /usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "installing python3-prometheus-client"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-prometheus-client
fi
# kubernetes-validate (PyPI) checks the CRD and every generated manifest against Kubernetes' own
# schemas (tests/crd.rs); helm-python-sdk is the real Helm engine for the chart (tests/chart.rs).
if ! PYTHONPATH=target/pytools /usr/bin/python3 -c 'import kubernetes_validate, helm_python' >/dev/null 2>&1; then
  if ! /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip
  fi
  echo "installing kubernetes-validate and helm-python-sdk into target/pytools"
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --upgrade --target target/pytools --break-system-packages kubernetes-validate helm-python-sdk
fi
if [ ! -d viz/web/node_modules/playwright-core ]; then
  (cd viz/web && npm ci --no-audit --no-fund)
fi

# A test run builds from scratch on CI: incremental state would only double the disk it needs
# (a clean run once filled a CI machine's disk). Set CARGO_INCREMENTAL=1 to keep it locally.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast
fi
