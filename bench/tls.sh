#!/usr/bin/env bash
# What HTTPS costs: builds the release binary as it ships (bench/build-release.sh), prints its
# stripped size, then runs bench/tls.py (plain HTTP vs HTTPS, keep-alive and a handshake per
# request, nodelay mosquitto). Results: docs/benchmarks.md, "HTTPS".
#   bench/tls.sh [--no-build] [--duration 10] [--reps 2]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    *) args+=("$1") ;;
  esac
  shift
done
. bench/build-release.sh
echo "==> stripped binary: $(stat -c %s "$stripped") bytes" >&2
mkdir -p bench/results
exec python3 bench/tls.py --binary "$stripped" --out "bench/results/$(date +%F)-tls.md" "${args[@]}"
