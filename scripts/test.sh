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

# Real Redis servers (standalone, sentinel, cluster) for the storage tests.
missing=()
for bin in redis-server redis-sentinel redis-cli; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing redis-server redis-sentinel redis-tools (missing: ${missing[*]})"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-sentinel redis-tools
fi

# Node.js and npm build the web UI's chart bundle (viz/build.rs runs `npm ci`) and drive the
# browser test; Debian's Chromium is the browser (tests/viz_ui.rs).
apt_missing=()
command -v npm >/dev/null 2>&1 || apt_missing+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "installing ${apt_missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}"
fi
if [ ! -d viz/web/node_modules/playwright-core ]; then
  (cd viz/web && npm ci --no-audit --no-fund)
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast
fi
