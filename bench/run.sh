#!/usr/bin/env bash
# callrelay benchmark, one command: installs what is missing, builds the release binary as it ships
# (static Swift stdlib), reports its stripped size, then runs bench/bench.py: callrelay and the
# durable Python peer (bench/peer/) under the same wrk load, against a local mosquitto started
# twice (stock config, then set_tcp_nodelay true). Prints one markdown table and writes it to
# bench/results/<date>.md. Method and results: docs/benchmarks.md.
#
#   bench/run.sh                 # full run: 3 repetitions (about 9 minutes on 2 cores, plus a 1.5-2.5 min build)
#   bench/run.sh --quick         # 1 repetition, 6 s phases, smaller drains (about 2 minutes)
#   bench/run.sh --no-build ...  # reuse .build-bench/release/callrelay
#   bench/run.sh --reps 5 --duration 15 --connections 16,64 --brokers stock,nodelay \
#                --drain-n 50000 --peer-drain-n 10000 --systems callrelay,peer --keep
#   (every option after the run.sh ones goes to bench/bench.py; see bench/bench.py --help)
#
# Environment: BENCH_SCRATCH (build dir, default .build-bench), BENCH_TMP (where the outboxes and
# brokers live; must be a real disk, not tmpfs, or fsync is free; default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --quick) args+=(--reps 1 --duration 6 --warmup 2 --drain-n 20000 --peer-drain-n 3000) ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done

. bench/build-release.sh
if ! python3 -c 'import flask, gunicorn, paho.mqtt' 2>/dev/null; then
  python3 -m pip install --quiet -r bench/peer/requirements.txt
fi

size=$(stat -c %s "$stripped")
echo "==> stripped binary: $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f MB, %.2f MiB", s/1e6, s/1048576}')); unstripped $(stat -c %s "$bin") bytes" >&2
echo "    dynamic dependencies: $(ldd "$bin" | awk '{print $1}' | grep -v -e vdso -e ld-linux | tr '\n' ' ')" >&2

echo "==> uptime: $(uptime)" >&2
exec python3 bench/bench.py --binary "$stripped" --unstripped-bytes "$(stat -c %s "$bin")" "${args[@]}"
