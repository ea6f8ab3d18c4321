#!/usr/bin/env bash
# Soak (outside CI): runs every fault test N times with the CPU loaded by busy processes and
# prints passes and failures per test, with the acknowledged snapshots each run checked.
#
#   scripts/soak.sh [N=20] [FILTER]   e.g. scripts/soak.sh 20 sentinel (FILTER: part of a test name)
#
# Logs of failed runs are kept in target/soak/; a summary table goes to target/soak/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
filter="${2:-}"
busy="${SOAK_BUSY:-$(nproc)}" # busy processes; default one per core

source scripts/need.sh
need_apt redis-server redis-server redis-sentinel redis-tools
need_apt redis-sentinel redis-server redis-sentinel redis-tools
need_apt redis-cli redis-server redis-sentinel redis-tools

out=target/soak
mkdir -p "$out"
rm -f "$out"/*.log "$out"/results.tsv

# Build once; the soak runs the test binaries directly, so nothing rebuilds under load.
cargo build --tests --test faults_broker --test faults_redis --message-format=json \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep -E '/faults_(broker|redis)-' > "$out/binaries"
cargo build --bin ringwatch

busy_pids=()
cleanup() { for p in "${busy_pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in $(seq 1 "$busy"); do
  (while :; do :; done) &
  busy_pids+=($!)
done
echo "soak: $runs runs of each fault test with $busy busy processes loading the CPU"

declare -A pass fail acked lost
tests=()
while read -r bin; do
  while read -r t; do
    [ -n "$t" ] || continue
    if [ -n "$filter" ] && [[ "$t" != *"$filter"* ]]; then continue; fi
    tests+=("$bin::$t")
  done < <("$bin" --list 2>/dev/null | sed -n 's/: test$//p')
done < "$out/binaries"

for i in $(seq 1 "$runs"); do
  for bt in "${tests[@]}"; do
    bin="${bt%%::*}"
    t="${bt#*::}"
    log="$out/${t}-$i.log"
    start=$(date +%s)
    if "$bin" --exact "$t" --nocapture > "$log" 2>&1; then
      pass[$t]=$(( ${pass[$t]:-0} + 1 ))
      verdict=pass
    else
      fail[$t]=$(( ${fail[$t]:-0} + 1 ))
      verdict=FAIL
    fi
    # Each proof of no loss prints a `soak:` line with what it checked.
    a=$(sed -n 's/.*soak: acknowledged=\([0-9]*\) lost=\([0-9]*\).*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    l=$(sed -n 's/.*soak: acknowledged=\([0-9]*\) lost=\([0-9]*\).*/\2/p' "$log" | awk '{s+=$1} END {print s+0}')
    acked[$t]=$(( ${acked[$t]:-0} + ${a:-0} ))
    lost[$t]=$(( ${lost[$t]:-0} + ${l:-0} ))
    printf '%s\t%s\t%s\t%s\t%s\t%ss\n' "$i" "$t" "$verdict" "${a:-0}" "${l:-0}" "$(( $(date +%s) - start ))" | tee -a "$out/results.tsv"
    [ "$verdict" = pass ] && rm -f "$log"
  done
done

{
  echo "| test | runs | passed | failed | acknowledged snapshots checked | lost |"
  echo "|---|---|---|---|---|---|"
  total_a=0; total_l=0; total_f=0
  for bt in "${tests[@]}"; do
    t="${bt#*::}"
    echo "| \`$t\` | $runs | ${pass[$t]:-0} | ${fail[$t]:-0} | ${acked[$t]:-0} | ${lost[$t]:-0} |"
    total_a=$(( total_a + ${acked[$t]:-0} )); total_l=$(( total_l + ${lost[$t]:-0} )); total_f=$(( total_f + ${fail[$t]:-0} ))
  done
  echo
  echo "$runs runs × ${#tests[@]} fault tests, $busy busy processes: $total_a acknowledged snapshots checked, $total_l lost, $total_f failed runs."
} | tee "$out/summary.md"
