#!/usr/bin/env bash
# Drain of a backlog, one figure, quick (~40 s): callrelay (the release binary from
# bench/build-release.sh) takes c64 webhooks for FILL seconds with its broker down, then a
# mosquitto with set_tcp_nodelay starts on its port; prints pending rows ÷ seconds from the
# first delivery to pending 0, and the CPU per row of callrelay and of mosquitto over the same
# time. bench/storage.sh measures the same over a million rows.
#
#   bench/drain.sh                          # MQTT 5 (the default)
#   bench/drain.sh 'protocol = "3.1.1"'     # extra [mqtt] lines
#   FILL=30 bench/drain.sh                  # seconds of load before the drain (default 15)
# Environment: BENCH_SCRATCH (build dir, default .build-bench), BENCH_TMP (default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BENCH_SCRATCH:-.build-bench}/release/callrelay
[ -x "$bin" ] || { echo "no binary at $bin: run bench/storage.sh or bench/run.sh once" >&2; exit 1; }
dir=$(mktemp -d "${BENCH_TMP:-/tmp}/callrelay-drain.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); mqtt=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nset_tcp_nodelay true\n' "$mqtt" > "$dir/m.conf"
printf '[http]\nlisten = "127.0.0.1:%s"\n[mqtt]\nhost = "127.0.0.1"\nport = %s\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n%s\n[storage]\npath = "%s/outbox.sqlite3"\n[log]\nlevel = "warning"\n' \
  "$http" "$mqtt" "${1:-}" "$dir" > "$dir/c.toml"
pending() { curl -s "http://127.0.0.1:$http/metrics" | awk '/^callrelay_outbox_pending_events/{print $2}'; }
"$bin" run --config "$dir/c.toml" > "$dir/agent.log" 2>&1 & agent=$!
broker=""
trap 'kill $agent $broker 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$http/readyz" && break; sleep 0.05; done
wrk -t1 -c64 -d"${FILL:-15}"s -s bench/live-events.lua "http://127.0.0.1:$http/webhooks/piopiy/live" | grep Requests/sec
p0=$(pending)
mosquitto -c "$dir/m.conf" > "$dir/mosquitto.log" 2>&1 & broker=$!
for _ in $(seq 400); do [ "$(pending)" != "$p0" ] && break; sleep 0.05; done
t1=$(date +%s.%N)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, clock ticks
a1=$(cpu $agent); b1=$(cpu $broker)
for _ in $(seq 3000); do [ "$(pending)" = "0" ] && break; sleep 0.1; done
t2=$(date +%s.%N)
a2=$(cpu $agent); b2=$(cpu $broker); tck=$(getconf CLK_TCK)
# CPU per row moves far less between runs than the rate does on a shared 2-core machine.
python3 -c "print(f'drain: {$p0:,} rows in {$t2-$t1:.1f} s = {$p0/($t2-$t1):,.0f} rows/s ' + f'(${1:-MQTT 5}); CPU per row: callrelay {($a2-$a1)/$tck/$p0*1e6:.1f} us, mosquitto {($b2-$b1)/$tck/$p0*1e6:.1f} us')"
