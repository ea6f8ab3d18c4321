#!/usr/bin/env bash
# Refreshes the web UI's chart library, uPlot, committed under viz/web/vendor/uplot/ (so that
# `cargo build` needs neither npm nor the network): installs the version viz/web/package.json
# pins with npm, then copies the two files viz serves, its licence and its version. Bump the
# version in viz/web/package.json (and its lockfile: `npm install --prefix viz/web`) first.
set -euo pipefail
cd "$(dirname "$0")/../viz/web"
npm ci --no-audit --no-fund --omit=dev --ignore-scripts
vendor=vendor/uplot
mkdir -p "$vendor"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$vendor/"
cp node_modules/uplot/LICENSE "$vendor/LICENSE"
node -p 'require("./node_modules/uplot/package.json").version' > "$vendor/VERSION"
echo "viz/web/$vendor: uPlot $(cat "$vendor/VERSION")"
