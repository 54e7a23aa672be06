#!/usr/bin/env bash
# callrelay benchmark, one command: installs what is missing, builds the release binary as it ships
# (static Swift stdlib), reports its stripped size, then runs bench/bench.py: three systems under
# the same wrk load, against a local mosquitto started twice (stock config, then set_tcp_nodelay
# true):
#   callrelay   durable (SQLite outbox), 2xx after the commit
#   mq-bridge   not durable: Rust http -> mqtt route (bench/mqbridge/), 202 after the broker's PUBACK;
#               no drain run (it persists nothing)
#   python peer durable: Flask + gunicorn + SQLite + paho-mqtt (bench/peer/)
# Prints issue 13's comparison (system | durable | broker | c16 req/s | c64 req/s | c64 p99 |
# CPU per webhook | idle RSS, with callrelay's ratios to mq-bridge and to the peer), then the
# detailed tables, and writes them to bench/results/<date>.md. CPU per webhook = the system's
# process-tree utime+stime during a wrk phase / its 2xx answers. Method: docs/benchmarks.md.
# Installs the peer's and mq-bridge's Python requirements (pip) when they are missing and selected.
#
#   bench/run.sh                 # full run: 3 repetitions, all three systems (about 12 minutes on 2 cores, plus a 1.5-2.5 min build)
#   bench/run.sh --quick         # 1 repetition, 6 s phases, smaller drains (about 3 minutes)
#   bench/run.sh --no-build ...  # reuse .build-bench/release/callrelay
#   bench/run.sh --reps 5 --duration 15 --connections 16,64 --brokers stock,nodelay \
#                --drain-n 50000 --peer-drain-n 10000 --systems callrelay,mqbridge,peer --keep
#   (every option after the run.sh ones goes to bench/bench.py; see bench/bench.py --help)
#
# Environment: BENCH_SCRATCH (build dir, default .build-bench), BENCH_TMP (where the outboxes and
# brokers live; must be a real disk, not tmpfs, or fsync is free; default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=1
args=()
systems=callrelay,mqbridge,peer  # bench.py's default; only used here to install what is selected
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --quick) args+=(--reps 1 --duration 6 --warmup 2 --drain-n 20000 --peer-drain-n 3000) ;;
    -h|--help) awk 'NR > 1 { if (/^#/) print; else exit }' "$0"; exit 0 ;;
    --systems) args+=("$1"); [ $# -gt 1 ] && { systems=$2; args+=("$2"); shift; } ;;
    --systems=*) systems=${1#--systems=}; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done

. bench/build-release.sh
case ",$systems," in *,peer,*)
  if ! python3 -c 'import flask, gunicorn, paho.mqtt' 2>/dev/null; then
    python3 -m pip install --quiet -r bench/peer/requirements.txt
  fi ;;
esac
case ",$systems," in *,mqbridge,*|*,mq-bridge,*)
  if ! python3 -c 'import mq_bridge' 2>/dev/null; then
    python3 -m pip install --quiet -r bench/mqbridge/requirements.txt
  fi ;;
esac

size=$(stat -c %s "$stripped")
echo "==> stripped binary: $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f MB, %.2f MiB", s/1e6, s/1048576}')); unstripped $(stat -c %s "$bin") bytes" >&2
echo "    dynamic dependencies: $(ldd "$bin" | awk '{print $1}' | grep -v -e vdso -e ld-linux | tr '\n' ' ')" >&2

echo "==> uptime: $(uptime)" >&2
exec python3 bench/bench.py --binary "$stripped" --unstripped-bytes "$(stat -c %s "$bin")" "${args[@]}"
