#!/usr/bin/env bash
# callrelay storage benchmark, one command: installs what is missing, builds the release binary as
# it ships (static Swift stdlib), then runs bench/storage.py: outbox footprint against
# storage.max_bytes, bytes written per webhook and per delivery mark, and a large backlog (ingest
# rate, RSS, `callrelay status`, restart, drain), all with the broker down and then a local
# mosquitto (set_tcp_nodelay true) started on the agent's broker port. Prints one markdown table
# per phase and writes bench/results/<date>-storage[-TAG].md (+ .json). Method: bench/storage.py.
#
#   bench/storage.sh                  # full run: 30 s footprint, 20 s write, 1,000,000 backlog (~10-15 min + build)
#   bench/storage.sh --quick          # 20 s footprint, 10 s write, 200,000 backlog (~3-4 min)
#   bench/storage.sh --no-build ...   # reuse $BENCH_SCRATCH/release/callrelay
#   bench/storage.sh --tag after --label "my branch" --phases footprint,write,backlog \
#                    --footprint-cap-mib 64 --footprint-seconds 30 --write-seconds 20 \
#                    --backlog-n 1000000 --backlog-cap-mib 16384 --note "..." --keep
#   (every option after the storage.sh ones goes to bench/storage.py; see bench/storage.py --help)
#
# Environment: BENCH_SCRATCH (build dir, default .build-bench), BENCH_TMP (where the outboxes live;
# must be a real disk, not tmpfs; the write phase may write several GB; default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) args+=("$1") ;;  # --quick is handled by storage.py
  esac
  shift
done

. bench/build-release.sh

echo "==> uptime: $(uptime)" >&2
echo "==> disk free in ${BENCH_TMP:-/tmp}: $(df -h --output=avail "${BENCH_TMP:-/tmp}" | tail -1)" >&2
exec python3 bench/storage.py --binary "$stripped" "${args[@]}"
