#!/usr/bin/env bash
# Runs a local Ringwatch (3 brokers in a Raft cluster + embedded store + agent + viz) and prints
# the dashboard URL.
# Arguments go to `ringwatch up` (see `cargo run --release -- up --help`). The build needs
# only the Rust toolchain (the web UI's chart library is committed under viz/web/vendor/).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -- up "$@"
