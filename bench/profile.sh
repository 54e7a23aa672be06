#!/usr/bin/env bash
# Where a webhook's time goes: builds callrelay (release, static stdlib, with -g for symbols and
# DWARF unwinding) in its own scratch dir, then runs bench/profile.py: callrelay under wrk -c64
# with per-thread /proc sampling, perf record -a, and perf --call-graph dwarf classified into
# pipeline stages. Needs perf (apt-get install linux-perf). Output: a markdown summary on stdout,
# raw data under /tmp/callrelay-profile. Options go to bench/profile.py (--connections, --window,
# --stock-broker, --no-dwarf, --out).
set -euo pipefail
cd "$(dirname "$0")/.."
CALLRELAY_BENCH=1 scripts/install-deps.sh
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
scratch=${BENCH_PROFILE_SCRATCH:-.build-bench-prof}
swift build -c release --static-swift-stdlib --product callrelay --scratch-path "$scratch" -Xswiftc -g 2>&1 | tail -n 1 >&2
exec python3 bench/profile.py --binary "$scratch/release/callrelay" "$@"
