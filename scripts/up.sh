#!/usr/bin/env bash
# Runs a local Ringwatch (3 brokers in a Raft cluster + embedded store + agent + viz) and prints
# the dashboard URL.
# The web UI's chart library comes from npm at build time, so Node.js and npm are installed
# first when missing. Arguments go to `ringwatch up` (see `cargo run --release -- up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/need.sh
need_apt npm nodejs npm
exec cargo run --release -- up "$@"
